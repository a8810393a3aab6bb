/* Suite `scale`: the teacher CNN's training step (bench/train.h) against batch size.
 *
 * Images/s of forward + CE + backward + AdamW at batch 32, 64, 128, 256 and 512, at each thread
 * count, with the speed-up over the first thread count at the same batch. Small batches show the
 * fixed cost per step (the optimizer pass over all parameters, per-layer overheads, thread
 * start-up); large ones what the layers reach when the products are big. */
#include "bench/bench.h"
#include "bench/train.h"
#include "core/runtime.h"

static const int batches[] = {32, 64, 128, 256, 512};

enum { MAX_BATCH = 512, MIN_STEPS = 10 };

int bench_scale(const bench_opts *o)
{
    FILE *f = o->out;
    bench_images d;
    if (bench_images_open(&d)) return 1;
    xd_err e;
    bench_trainer t;
    if (bench_trainer_make(&t, BENCH_TEACHER_DESC, MAX_BATCH, &d, &e) != XD_OK) {
        fprintf(stderr, "xdistill bench: teacher: %s\n", e.msg);
        bench_images_free(&d);
        return 1;
    }
    if (!o->json) {
        fprintf(f, "\nteacher CNN training step vs batch size; images/s median [min-max] of "
                   "repeated steps\n");
        bench_images_note(&d, f);
        fprintf(f, "%5s %3s %24s %10s %9s %8s\n", "batch", "thr", "images/s", "step ms", "s/epoch",
                "speed-up");
    } else if (!d.real) {
        bench_images_note(&d, stderr);
    }
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        const int B = batches[bi];
        t.B = B;
        double first = 0.0;
        for (int ti = 0; ti < o->n_threads; ti++) {
            int th = o->threads[ti];
            xd_threads_set(th);
            bench_time tm = bench_run(bench_train_step, &t, o->min_seconds, MIN_STEPS, 100000);
            double ips = B / tm.median;
            if (ti == 0) first = ips;
            if (o->json) {
                fprintf(f, "{\"suite\":\"scale\",\"case\":\"teacher_cnn\",\"data\":\"%s\","
                           "\"batch\":%d,\"threads\":%d,\"step_s\":%.6f,\"min_s\":%.6f,"
                           "\"max_s\":%.6f,\"reps\":%d,\"images_per_s\":%.1f,\"epoch_s\":%.3f,"
                           "\"speedup_vs_first\":%.3f,\"first_threads\":%d}\n",
                        bench_images_kind(&d), B, th, tm.median, tm.min, tm.max, tm.reps, ips,
                        BENCH_EPOCH / ips, ips / first, o->threads[0]);
            } else {
                char r[48];
                snprintf(r, sizeof r, "%.0f [%.0f-%.0f]", ips, B / tm.max, B / tm.min);
                fprintf(f, "%5d %3d %24s %10.2f %9.2f %7.2fx\n", B, th, r, 1e3 * tm.median,
                        BENCH_EPOCH / ips, ips / first);
            }
        }
    }
    bench_trainer_free(&t);
    bench_images_free(&d);
    return 0;
}
