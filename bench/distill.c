/* Suite `distill`: what knowledge distillation costs over plain training, for the MLP student.
 *
 * In one run and at each thread count, the student's training step at batch 128 (bench/train.h)
 * with three losses: cross-entropy on the labels (the baseline); Hinton KD (alpha 0.9, T 4) with
 * the teacher CNN running forward on every batch (online); and the same KD loss reading teacher
 * logits from an array computed once before timing (what a teacher-output cache gives). The
 * teacher's forward pass alone is timed too, since it is what separates the first two KD figures.
 * Ratios are step times over the CE step's. */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/train.h"
#include "core/mem.h"
#include "core/runtime.h"

enum { BATCH = 128, MIN_STEPS = 20 };

typedef struct {
    const char *name, *what;
    bench_loss loss;  /* BENCH_LOSS_COUNT: the teacher forward alone */
} distill_case;

static const distill_case cases[] = {
    {"ce", "student CE step (baseline)", BENCH_LOSS_CE},
    {"kd_online", "student KD step, teacher forward each step", BENCH_LOSS_KD_ONLINE},
    {"kd_cached", "student KD step, cached teacher logits", BENCH_LOSS_KD_CACHED},
    {"teacher_fwd", "teacher forward alone (eval)", BENCH_LOSS_COUNT},
};

/* Teacher logits for every pool image, in batches, as a cache would hold them. */
static float *teacher_logits(bench_trainer *teacher, const bench_images *d)
{
    float *c = xd_xmalloc(sizeof(float) * (size_t)d->n * (size_t)teacher->K);
    for (int i0 = 0; i0 < d->n; i0 += BATCH) {
        int n = d->n - i0 < BATCH ? d->n - i0 : BATCH;
        nn_model_forward(&teacher->m, d->x + (size_t)i0 * BENCH_PIXELS, n, NULL);
        memcpy(c + (size_t)i0 * teacher->K, nn_model_out(&teacher->m, teacher->head),
               sizeof(float) * (size_t)n * (size_t)teacher->K);
    }
    return c;
}

int bench_distill(const bench_opts *o)
{
    FILE *f = o->out;
    bench_images d;
    if (bench_images_open(&d)) return 1;
    xd_err e;
    bench_trainer st, te;
    if (bench_trainer_make(&st, BENCH_STUDENT_DESC, BATCH, &d, &e) != XD_OK) {
        fprintf(stderr, "xdistill bench: student: %s\n", e.msg);
        bench_images_free(&d);
        return 1;
    }
    if (bench_trainer_make(&te, BENCH_TEACHER_DESC, BATCH, &d, &e) != XD_OK) {
        fprintf(stderr, "xdistill bench: teacher: %s\n", e.msg);
        bench_trainer_free(&st);
        bench_images_free(&d);
        return 1;
    }
    xd_threads_set(o->threads[o->n_threads - 1]);
    float *cache = teacher_logits(&te, &d);
    st.teacher = &te.m;
    st.teacher_head = te.head;
    st.cache = cache;
    if (!o->json) {
        fprintf(f, "\ndistillation overhead, MLP student, batch %d; images/s median [min-max] of "
                   "repeated steps; ratio = step time / CE step time\n", BATCH);
        bench_images_note(&d, f);
        fprintf(f, "%-12s %3s %24s %8s  %s\n", "case", "thr", "images/s", "x CE", "what");
    } else if (!d.real) {
        bench_images_note(&d, stderr);
    }
    for (int ti = 0; ti < o->n_threads; ti++) {
        int th = o->threads[ti];
        xd_threads_set(th);
        double ce = 0.0;
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            bench_time t;
            if (cases[ci].loss == BENCH_LOSS_COUNT) {
                t = bench_run(bench_forward_step, &te, o->min_seconds, MIN_STEPS, 100000);
            } else {
                st.loss = cases[ci].loss;
                t = bench_run(bench_train_step, &st, o->min_seconds, MIN_STEPS, 100000);
            }
            if (ci == 0) ce = t.median;
            double ips = BATCH / t.median;
            if (o->json) {
                fprintf(f, "{\"suite\":\"distill\",\"case\":\"%s\",\"data\":\"%s\",\"batch\":%d,"
                           "\"threads\":%d,\"step_s\":%.6f,\"min_s\":%.6f,\"max_s\":%.6f,"
                           "\"reps\":%d,\"images_per_s\":%.1f,\"epoch_s\":%.3f,"
                           "\"time_over_ce\":%.3f}\n",
                        cases[ci].name, bench_images_kind(&d), BATCH, th, t.median, t.min, t.max,
                        t.reps, ips, BENCH_EPOCH / ips, t.median / ce);
            } else {
                char r[48];
                snprintf(r, sizeof r, "%.0f [%.0f-%.0f]", ips, BATCH / t.max, BATCH / t.min);
                fprintf(f, "%-12s %3d %24s %7.2fx  %s\n", cases[ci].name, th, r, t.median / ce,
                        cases[ci].what);
            }
        }
    }
    free(cache);
    bench_trainer_free(&te);
    bench_trainer_free(&st);
    bench_images_free(&d);
    return 0;
}
