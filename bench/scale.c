/* Suite `scale`: the teacher CNN's training step (bench/train.h) against batch size.
 *
 * Images/s of forward + CE + backward + AdamW at batch 32, 64, 128, 256 and 512, at each thread
 * count, with the speed-up over the first thread count at the same batch. Small batches show the
 * fixed cost per step (the optimizer pass over all parameters, per-layer overheads, thread
 * start-up); large ones what the layers reach when the products are big.
 *
 * Under mpirun (N ranks) the same global batches are split over the ranks, each step's gradients
 * summed over them (core/dist.h, as training does) before the optimizer step: steps/s and
 * images/s of the whole job, the time of the gradient sum alone and the bytes it sums per step,
 * to set against one process at 1 and N threads. Every rank runs the same number of steps. */
#include <stdlib.h>

#include "bench/bench.h"
#include "bench/train.h"
#include "core/dist.h"
#include "core/mem.h"
#include "core/runtime.h"

static const int batches[] = {32, 64, 128, 256, 512};

enum { MAX_BATCH = 512, MIN_STEPS = 10, RANK_STEPS = 40 };

/* The gradient sum alone, on a copy of the gradient's size (a bench_run callback). */
typedef struct {
    float *g;
    size_t n;
} reduce_job;

static void reduce_step(void *ctx)
{
    reduce_job *r = ctx;
    dist_sum_floats(r->g, r->n, 1.0f / (float)dist_size());
}

static void scale_ranks(const bench_opts *o, bench_trainer *t)
{
    FILE *f = o->out;
    const int N = dist_size(), steps = o->quick ? 3 : RANK_STEPS;
    const size_t bytes = sizeof(float) * t->m.n_param;
    reduce_job rj = {xd_xcalloc(t->m.n_param, sizeof(float)), t->m.n_param};
    if (!o->json) {
        fprintf(f, "\nthe same over %d ranks (mpirun): each rank a 1/%d share of the batch, the "
                   "gradients (%zu bytes) summed every step; %d steps per row\n", N, N, bytes, steps);
        fprintf(f, "%5s %5s %3s %10s %10s %10s %10s %12s\n", "batch", "ranks", "thr", "steps/s",
                "images/s", "step ms", "sum ms", "sum bytes");
    }
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        const int B = batches[bi];
        size_t lo, hi;
        dist_slice((size_t)B, dist_rank(), &lo, &hi);
        t->B = (int)(hi - lo);
        for (int ti = 0; ti < o->n_threads; ti++) {
            const int th = o->threads[ti];
            xd_threads_set(th);
            bench_time tm = bench_run(bench_train_step, t, 0.0, steps, steps);
            bench_time rt = bench_run(reduce_step, &rj, 0.0, steps, steps);
            if (o->json)
                fprintf(f, "{\"suite\":\"scale\",\"case\":\"teacher_cnn_ranks\",\"ranks\":%d,"
                           "\"batch\":%d,\"threads\":%d,\"step_s\":%.6f,\"steps_per_s\":%.2f,"
                           "\"images_per_s\":%.1f,\"sum_s\":%.6f,\"sum_bytes\":%zu,\"reps\":%d}\n",
                        N, B, th, tm.median, 1.0 / tm.median, B / tm.median, rt.median, bytes,
                        tm.reps);
            else
                fprintf(f, "%5d %5d %3d %10.1f %10.0f %10.2f %10.3f %12zu\n", B, N, th,
                        1.0 / tm.median, B / tm.median, 1e3 * tm.median, 1e3 * rt.median, bytes);
        }
    }
    free(rj.g);
}

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
    if (dist_size() > 1) {
        bench_images_note(&d, f);
        scale_ranks(o, &t);
        bench_trainer_free(&t);
        bench_images_free(&d);
        return 0;
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
            if (bi == sizeof batches / sizeof batches[0] - 1 && ti == o->n_threads - 1 && !o->json)
                fprintf(f, "(steps/s = 1000 / step ms; under mpirun the suite adds the rows over "
                           "the ranks, summing %zu bytes of gradients per step)\n",
                        sizeof(float) * t.m.n_param);
        }
    }
    bench_trainer_free(&t);
    bench_images_free(&d);
    return 0;
}
