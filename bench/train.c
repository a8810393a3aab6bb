/* Suite `train`: seconds per Fashion-MNIST epoch for the teacher CNN and the MLP student.
 *
 * One step is forward + cross-entropy + backward + AdamW at batch 128 (bench/train.h). At each
 * thread count it times repeated steps (not a whole epoch) and reports the median step with min
 * and max, its median CPU time (on a shared machine, at one thread, the step's cost without the
 * waits for a free core), images/s, the epoch time extrapolated to 60000 images, and the speed-up
 * over the first thread count. A model's rows (thread counts and precisions) are timed a round at
 * a time in turn (ROUNDS), so that the speed-ups compare the same spells of a shared machine.
 * At the largest thread count n of at most CAPACITY_MAX that the cores run, n copies of the model
 * taking one-thread steps side by side give the cores' capacity for the work, against which n
 * threads on one model are set (capacity()); before each of a model's rounds the cores' handoff
 * (bench_handoff: how far apart two threads' cores are, which on a virtual machine can change
 * from one minute to the next) is measured, and its median and range over the rounds printed
 * beside the capacity. Memory: the models run in increasing order of size;
 * before each is built the process's peak RSS is reset to the current RSS (Linux), so each
 * model's figure is the peak reached while it was built and trained, and the growth is what it
 * added over the process before it (code, libraries, the image pool). Where the reset is refused,
 * the figure is the process high-water mark and the growth is how much that mark rose, which
 * still means something because the smaller model ran first.
 *
 * Each model also runs with its products in bf16 (train.precision: bf16, nn/gemm_bf16.h), timed
 * right after float32 at each thread count: rows NAME_bf16, with their speed against float32.
 *
 * Rows teacher_cnn_fwd time the teacher's forward alone at batch 256 as a teacher-output cache
 * is built (distill/cache.c): the inference engine (nn_model_infer) on weights packed once without
 * folding (nn_model_pack_exact), what a cache costs per image; teacher_cnn_fwd_bf16 the same with
 * bf16 products, which is how a teacher with `precision: bf16` builds its cache.
 * JSON rows say "step": "train" or "forward".
 *
 * This file also holds the workload shared with the `distill` and `scale` suites. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/train.h"
#include "core/dist.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/kd.h"
#include "io/dataset.h"
#include "nn/loss.h"

// ----------------------------------------------------------------------------------------------
// the image pool

static void images_random(bench_images *d)
{
    xd_rng r = xd_rng_make(1, 0, XD_RNG_USER);
    for (size_t i = 0; i < (size_t)d->n * BENCH_PIXELS; i++) d->x[i] = xd_rng_uniform(&r);
    for (int i = 0; i < d->n; i++) d->y[i] = (int32_t)xd_rng_below(&r, BENCH_CLASSES);
    d->real = 0;
}

xd_status bench_images_load(bench_images *d, xd_err *e)
{
    memset(d, 0, sizeof *d);
    d->n = BENCH_POOL;
    d->x = xd_xmalloc_aligned(sizeof(float) * (size_t)d->n * BENCH_PIXELS);
    d->y = xd_xmalloc(sizeof(int32_t) * (size_t)d->n);
    struct stat st;
    if (stat(BENCH_DATA_PATH, &st) != 0) {
        images_random(d);
        return XD_OK;
    }
    io_dataset *ds;
    xd_status s = io_dataset_open(BENCH_DATA_PATH, &ds, e);
    if (s != XD_OK) goto fail;
    const io_tensor *img, *lab;
    if ((s = io_dataset_require(ds, "train/image", IO_U8, 4, &img, e)) != XD_OK ||
        (s = io_dataset_require(ds, "train/label", IO_I32, 1, &lab, e)) != XD_OK)
        goto close;
    if (img->shape[1] != 28 || img->shape[2] != 28 || img->shape[3] != 1 ||
        lab->shape[0] != img->shape[0] || img->shape[0] < d->n) {
        s = xd_fail(e, XD_ESHAPE,
                    "%s: section train/image: expected at least %d images of 28x28x1 with as many "
                    "labels, found (%lld, %lld, %lld, %lld) and %lld labels",
                    BENCH_DATA_PATH, d->n, (long long)img->shape[0], (long long)img->shape[1],
                    (long long)img->shape[2], (long long)img->shape[3], (long long)lab->shape[0]);
        goto close;
    }
    const uint8_t *px = img->data;
    const int32_t *y = lab->data;
    for (int i = 0; i < d->n; i++) {
        if (y[i] < 0 || y[i] >= BENCH_CLASSES) {
            s = xd_fail(e, XD_EFORMAT, "%s: section train/label: label %d of example %d is not in "
                        "0..%d", BENCH_DATA_PATH, (int)y[i], i, BENCH_CLASSES - 1);
            goto close;
        }
        d->y[i] = y[i];
    }
    for (size_t i = 0; i < (size_t)d->n * BENCH_PIXELS; i++) d->x[i] = (float)px[i] / 255.0f;
    d->real = 1;
close:
    io_dataset_close(ds); /* unmapped: its pages no longer count in the RSS figures */
    if (s == XD_OK) return XD_OK;
fail:
    bench_images_free(d);
    return s;
}

void bench_images_free(bench_images *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

const char *bench_images_kind(const bench_images *d) { return d->real ? "fashion-mnist" : "random"; }

void bench_images_note(const bench_images *d, FILE *out)
{
    if (d->real)
        fprintf(out, "data: the first %d Fashion-MNIST training images of %s\n", d->n,
                BENCH_DATA_PATH);
    else
        fprintf(out, "data: RANDOM pixels and labels (%d images of 28x28x1): %s not found; run "
                     "`xdistill prepare fashion-mnist --out data/fashion-mnist` for real images\n",
                d->n, BENCH_DATA_PATH);
}

// ----------------------------------------------------------------------------------------------
// one training step

xd_status bench_trainer_make(bench_trainer *t, const char *desc, int max_batch,
                             const bench_images *d, xd_err *e)
{
    memset(t, 0, sizeof *t);
    xd_status s = nn_model_build(&t->m, desc, max_batch, 1, e);
    if (s != XD_OK) return s;
    nn_opt_config cfg = nn_opt_defaults(NN_OPT_ADAMW);
    cfg.lr = 1e-3f;
    cfg.weight_decay = 0.0f;
    if ((s = nn_opt_init(&t->opt, &cfg, t->m.n_param, e)) != XD_OK) {
        nn_model_free(&t->m);
        return s;
    }
    t->head = nn_model_default_head(&t->m);
    t->K = (int)nn_model_node(&t->m, t->head)->act_n;
    t->B = max_batch;
    t->data = d;
    t->loss = BENCH_LOSS_CE;
    size_t nk = (size_t)max_batch * (size_t)t->K;
    t->probs = xd_xmalloc(sizeof(float) * nk);
    t->ps = xd_xmalloc(sizeof(float) * nk);
    t->q = xd_xmalloc(sizeof(float) * nk);
    return XD_OK;
}

void bench_trainer_free(bench_trainer *t)
{
    nn_model_free(&t->m);
    nn_opt_free(&t->opt);
    free(t->probs);
    free(t->ps);
    free(t->q);
    memset(t, 0, sizeof *t);
}

/* The pool row where the next batch of t->B starts (batches wrap around the pool). */
static int next_batch(bench_trainer *t)
{
    if (t->next + t->B > t->data->n) t->next = 0;
    int i0 = t->next;
    t->next += t->B;
    return i0;
}

enum { KD_T = 4 };
#define KD_ALPHA 0.9f

void bench_train_step(void *ctx)
{
    bench_trainer *t = ctx;
    const int B = t->B, K = t->K, i0 = next_batch(t);
    const float *x = t->data->x + (size_t)i0 * BENCH_PIXELS;
    const int32_t *y = t->data->y + i0;
    nn_run run = {.training = 1, .seed = 1, .step = (uint64_t)t->step};
    nn_model_forward(&t->m, x, B, &run);
    const float *tl = NULL;
    if (t->loss == BENCH_LOSS_KD_ONLINE) {
        nn_model_forward(t->teacher, x, B, NULL);
        tl = nn_model_out(t->teacher, t->teacher_head);
    } else if (t->loss == BENCH_LOSS_KD_CACHED) {
        tl = t->cache + (size_t)i0 * (size_t)K;
    }
    nn_model_clear_grad(&t->m); /* the backward below writes the gradients whole */
    const float *s = nn_model_out(&t->m, t->head);
    float *ds = nn_model_dout(&t->m, t->head);
    double loss;
    if (tl) {
        kd_soft_targets(t->q, tl, B, K, (float)KD_T);
        loss = kd_hinton_forward(t->ps, t->probs, s, t->q, y, NULL, B, K, (float)KD_T, KD_ALPHA);
        kd_hinton_backward(ds, t->ps, t->probs, t->q, y, NULL, B, K, (float)KD_T, KD_ALPHA, 1.0f);
    } else {
        loss = nn_ce_forward(t->probs, s, y, NULL, B, K);
        nn_ce_backward(ds, t->probs, y, NULL, B, K, 1.0f);
    }
    nn_model_backward(&t->m);
    /* under mpirun (the scale suite's ranks rows): the gradient of the mean over the ranks'
     * batches, as training sums it (even shares: the suite's batches divide by the ranks) */
    dist_sum_floats(t->m.grad, t->m.n_param, 1.0f / (float)dist_size());
    nn_opt_step(&t->opt, t->m.param, t->m.grad, t->m.segs, t->m.n_segs, 1e-3f);
    t->loss_sum += loss;
    t->step++;
}

void bench_forward_step(void *ctx)
{
    bench_trainer *t = ctx;
    int i0 = next_batch(t);
    const float *x = t->data->x + (size_t)i0 * BENCH_PIXELS;
    /* the teacher-output cache's path: packed, the inference engine (in bf16 for the bf16 rows) */
    if (t->m.packed) {
        nn_model_infer(&t->m, x, t->B, NULL);
        return;
    }
    nn_model_forward(&t->m, x, t->B, NULL);
}

// ----------------------------------------------------------------------------------------------
// memory

double bench_rss_now_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0.0;
    unsigned long size = 0, resident = 0;
    int ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
    fclose(f);
    return ok ? (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0) : 0.0;
}

int bench_rss_reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

// ----------------------------------------------------------------------------------------------
// the suite

/* ROUNDS: each row's steps are taken in this many rounds, every row of a model a round in turn
 * (thread counts, then precisions), so that the rows compared in the speed-up and vs-f32 columns
 * are timed over the same spells of a shared machine, whose speed drifts by tens of percent from
 * one minute to the next; MIN_STEPS: the steps each row takes at least, over all its rounds;
 * MAX_STEPS: at most, over all its rounds. */
enum { BATCH = 128, FWD_BATCH = 256, MIN_STEPS = 20, MAX_STEPS = 100000, ROUNDS = 5 };
/* the most copies the capacity is measured with (each a whole model and its buffers) */
enum { CAPACITY_MAX = 8 };

typedef struct {
    const char *name, *desc;
    int batch;
    void (*step)(void *ctx); /* bench_train_step or bench_forward_step */
} model_case;

/* smaller model first: see the memory note at the top */
static const model_case models[] = {
    {"mlp_student", BENCH_STUDENT_DESC, BATCH, bench_train_step},
    {"teacher_cnn", BENCH_TEACHER_DESC, BATCH, bench_train_step},
    {"teacher_cnn_fwd", BENCH_TEACHER_DESC, FWD_BATCH, bench_forward_step},
};

/* One round of a row's steps into s: the model in precision p (the bf16 forward rows: a teacher in
 * bf16, whose inference runs bf16), the forward rows on weights packed for the inference engine
 * as a teacher-output cache packs them. */
static xd_status row_round(const model_case *mc, bench_trainer *t, int p, double seconds,
                           bench_samples *s, xd_err *e)
{
    t->m.precision = t->m.eval_precision = (nn_precision)p;
    const int cache_path = mc->step == bench_forward_step;
    xd_status st;
    if (cache_path && (st = nn_model_pack_exact(&t->m, e)) != XD_OK) return st;
    bench_samples_run(s, mc->step, t, seconds, (MIN_STEPS + ROUNDS - 1) / ROUNDS,
                      MAX_STEPS / ROUNDS);
    if (cache_path) nn_model_unpack(&t->m);
    return XD_OK;
}

/* The copies' side of capacity(): copy k's round of one-thread steps, and the size of the team it
 * ran in (the copies ran side by side only if that is all of them). */
typedef struct {
    const model_case *mc;
    bench_trainer *t; /* the n copies */
    bench_samples *s; /* each copy's samples */
    int p;
    double seconds;
    xd_status *st; /* each copy's */
    xd_err *e;     /* each copy's */
    int *team;     /* each copy's */
} copies_job;

static void copy_steps(void *ctx, int k)
{
    copies_job *j = ctx;
    j->team[k] = xd_team_size();
    /* one thread each: the region's threads start with the count of the thread that entered it */
    j->st[k] = row_round(j->mc, &j->t[k], j->p, j->seconds, &j->s[k], &j->e[k]);
}

typedef struct {
    double cap[NN_PREC_COUNT];     /* the copies' summed rate over one copy alone; 0: not measured */
    double threads[NN_PREC_COUNT]; /* n threads on one copy over one copy alone, the same rounds */
} capacity_figures;

/* The cores' capacity for a model's steps on n threads: n copies of the model (each its own
 * weights, batches and buffers) taking one-thread steps side by side, one on each thread, against
 * one copy alone: what n threads of one model would reach if splitting a step cost nothing. The
 * copy alone, the copies side by side and n threads on the one copy are timed a round at a time
 * in turn, so that the n threads' speed-up and the capacity see the same spells. t0 is the first
 * copy (its training goes on); n - 1 more are built and freed. Nothing is measured (zeros) where
 * n threads cannot run side by side (no OpenMP, or a team smaller than asked for) or a copy
 * cannot be built or run (said on stderr). Leaves the thread count at one. */
static capacity_figures capacity(const model_case *mc, bench_trainer *t0, int n, bench_images *d,
                                 double seconds)
{
    capacity_figures f = {{0}, {0}};
    if (xd_threads_set(n) != n) {
        xd_threads_set(1);
        return f;
    }
    bench_trainer *t = xd_xcalloc((size_t)n, sizeof *t);
    bench_samples *side = xd_xcalloc((size_t)n * NN_PREC_COUNT, sizeof *side);
    bench_samples alone[NN_PREC_COUNT] = {{0}}, together[NN_PREC_COUNT] = {{0}};
    xd_status *st = xd_xcalloc((size_t)n, sizeof *st);
    xd_err *e = xd_xcalloc((size_t)n, sizeof *e);
    int *team = xd_xcalloc((size_t)n, sizeof *team);
    int made = 1, bad = -1; /* bad: the copy whose error e holds */
    const char *why = NULL;
    t[0] = *t0;
    for (; made < n; made++)
        if (bench_trainer_make(&t[made], mc->desc, mc->batch, d, &e[made]) != XD_OK) {
            bad = made;
            break;
        }
    for (int r = 0; r < ROUNDS && bad < 0 && !why; r++)
        for (int p = 0; p < NN_PREC_COUNT && bad < 0 && !why; p++) {
            xd_threads_set(1);
            if (row_round(mc, &t[0], p, seconds / ROUNDS, &alone[p], &e[0]) != XD_OK) {
                bad = 0;
                break;
            }
            xd_threads_set(n);
            if (row_round(mc, &t[0], p, seconds / ROUNDS, &together[p], &e[0]) != XD_OK) {
                bad = 0;
                break;
            }
            xd_threads_set(1);
            copies_job j = {.mc = mc, .t = t, .s = side + (size_t)p * n, .p = p,
                            .seconds = seconds / ROUNDS, .st = st, .e = e, .team = team};
            xd_threads_each(n, copy_steps, &j);
            for (int k = 0; k < n && bad < 0; k++) {
                if (st[k] != XD_OK) bad = k;
                else if (team[k] != n) why = "the copies did not get a thread each";
            }
        }
    xd_threads_set(1);
    for (int p = 0; p < NN_PREC_COUNT; p++) {
        const bench_time a = bench_samples_time(&alone[p]), w = bench_samples_time(&together[p]);
        for (int k = 0; k < n; k++) {
            const bench_time c = bench_samples_time(&side[(size_t)p * n + k]);
            if (c.median > 0.0) f.cap[p] += a.median / c.median;
            bench_samples_free(&side[(size_t)p * n + k]);
        }
        f.threads[p] = w.median > 0.0 ? a.median / w.median : 0.0;
        bench_samples_free(&alone[p]);
        bench_samples_free(&together[p]);
    }
    if (bad >= 0 || why) {
        fprintf(stderr, "xdistill bench: %s: no capacity figure: %s\n", mc->name,
                why ? why : e[bad].msg);
        f = (capacity_figures){{0}, {0}};
    }
    *t0 = t[0]; /* the first copy's state as its steps left it */
    for (int k = 1; k < made; k++) bench_trainer_free(&t[k]);
    free(t);
    free(side);
    free(st);
    free(e);
    free(team);
    return f;
}

/* The thread count of opts whose rows get the capacity: the largest above one of at most
 * CAPACITY_MAX that the cores run side by side; -1 when there is none. */
static int capacity_threads(const bench_opts *o)
{
    int cap_ti = -1;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (int ti = 0; ti < o->n_threads; ti++)
        if (o->threads[ti] > 1 && o->threads[ti] <= cores && o->threads[ti] <= CAPACITY_MAX &&
            (cap_ti < 0 || o->threads[ti] > o->threads[cap_ti]))
            cap_ti = ti;
    return cap_ti;
}

/* The thread count of opts whose rows get the cores' handoff (measured with two threads): two,
 * where the cores run two side by side; -1 otherwise. */
static int handoff_threads(const bench_opts *o)
{
    for (int ti = 0; ti < o->n_threads; ti++)
        if (o->threads[ti] == 2 && sysconf(_SC_NPROCESSORS_ONLN) >= 2) return ti;
    return -1;
}

/* The cores' handoff (bench_handoff) before each of a model's rounds: on a virtual machine it
 * follows where the host runs the virtual cores, which a model's rounds may see change. */
typedef struct {
    double rt[ROUNDS], other[ROUNDS], own[ROUNDS]; /* each round's bench_handoff */
    int n;      /* rounds measured */
    int failed; /* rounds not measured */
} handoff_figures;

static void handoff_round(handoff_figures *hf, const char *name, int quick)
{
    bench_handoff h;
    const int rc = bench_handoff_measure(&h, quick);
    if (rc == 0) {
        hf->rt[hf->n] = h.round_trip_ns;
        hf->other[hf->n] = h.other_gbs;
        hf->own[hf->n++] = h.own_gbs;
    } else if (hf->failed++ == 0) { /* said once for the model */
        fprintf(stderr, "xdistill bench: %s: no handoff figure: %s\n", name,
                rc == -1 ? "two threads did not run side by side"
                         : "a read did not return what the other thread wrote");
    }
}

/* the median, least and most of n > 0 values */
typedef struct {
    double mid, lo, hi;
} spread;

static spread spread_of(const double *values, int n)
{
    double v[ROUNDS];
    memcpy(v, values, sizeof *v * (size_t)n);
    const double mid = bench_median(v, n);
    return (spread){mid, v[0], v[n - 1]};
}

static void handoff_json(const handoff_figures *hf, char *out, size_t size)
{
    const spread rt = spread_of(hf->rt, hf->n);
    snprintf(out, size,
             ",\"handoff_rounds\":%d,\"handoff_round_trip_ns\":%.1f,"
             "\"handoff_round_trip_min_ns\":%.1f,\"handoff_round_trip_max_ns\":%.1f,"
             "\"handoff_other_gbs\":%.2f,\"handoff_own_gbs\":%.2f",
             hf->n, rt.mid, rt.lo, rt.hi, spread_of(hf->other, hf->n).mid,
             spread_of(hf->own, hf->n).mid);
}

static void handoff_print(const handoff_figures *hf, const char *name, FILE *f)
{
    const spread rt = spread_of(hf->rt, hf->n), other = spread_of(hf->other, hf->n);
    fprintf(f, "  %s: the cores' handoff before its rounds: a cache line's round trip between two "
               "threads %.0f ns [%.0f-%.0f]; a 512 KiB block the other core wrote read at %.1f "
               "GB/s [%.1f-%.1f], one the reader wrote at %.1f\n",
            name, rt.mid, rt.lo, rt.hi, other.mid, other.lo, other.hi,
            spread_of(hf->own, hf->n).mid);
}

int bench_images_open(bench_images *d)
{
    xd_err e;
    if (bench_images_load(d, &e) == XD_OK) return 0;
    fprintf(stderr, "xdistill bench: %s\n", e.msg);
    return 1;
}

int bench_train(const bench_opts *o)
{
    FILE *f = o->out;
    bench_images d;
    if (bench_images_open(&d)) return 1;
    xd_err e;
    if (!o->json) {
        fprintf(f, "\ntraining step (forward + CE + backward + AdamW), batch %d; step time median "
                   "[min-max] of repeated steps, a model's rows timed in %d rounds in turn; median "
                   "CPU time of a step (all threads); epoch = %d images at the median\n"
                   "teacher_cnn_fwd: the forward alone, batch %d, as the teacher-output cache runs "
                   "it: the inference engine (bf16: with bf16 products, a teacher with precision: "
                   "bf16)\n",
                BATCH, ROUNDS, BENCH_EPOCH, FWD_BATCH);
        bench_images_note(&d, f);
        fprintf(f, "%-20s %3s %24s %8s %10s %9s %8s %8s\n", "model", "thr", "step ms", "cpu ms",
                "images/s", "s/epoch", "speed-up", "vs f32");
    } else if (!d.real) {
        bench_images_note(&d, stderr);
    }
    int rc = 0;
    double prev_peak = bench_max_rss_mib();
    for (size_t mi = 0; mi < sizeof models / sizeof models[0] && rc == 0; mi++) {
        const model_case *mc = &models[mi];
        const int B = mc->batch, train = mc->step == bench_train_step;
        int scoped = bench_rss_reset_peak() == 0;
        double base = bench_rss_now_mib(), before = scoped ? base : prev_peak;
        bench_trainer t;
        if (bench_trainer_make(&t, mc->desc, B, &d, &e) != XD_OK) {
            fprintf(stderr, "xdistill bench: %s: %s\n", mc->name, e.msg);
            rc = 1;
            break;
        }
        double flops = nn_model_flops(&t.m), first = 0.0;
        bench_time times[NN_PREC_COUNT][4];
        bench_samples samples[NN_PREC_COUNT][4] = {{{0}}};
        /* the capacity at the largest thread count of at most CAPACITY_MAX that the cores run
         * side by side; the cores' handoff before each round where two threads run */
        const int cap_ti = capacity_threads(o), hand_ti = handoff_threads(o);
        handoff_figures hand = {0};
        /* every thread count and precision a round at a time (see ROUNDS) */
        for (int r = 0; r < ROUNDS && rc == 0; r++) {
            if (hand_ti >= 0) handoff_round(&hand, mc->name, o->quick);
            for (int ti = 0; ti < o->n_threads && rc == 0; ti++) {
                xd_threads_set(o->threads[ti]);
                for (int p = 0; p < NN_PREC_COUNT && rc == 0; p++)
                    if (row_round(mc, &t, p, o->min_seconds / ROUNDS, &samples[p][ti], &e) !=
                        XD_OK) {
                        fprintf(stderr, "xdistill bench: %s: %s\n", mc->name, e.msg);
                        rc = 1;
                    }
            }
        }
        for (int ti = 0; ti < o->n_threads; ti++)
            for (int p = 0; p < NN_PREC_COUNT; p++) {
                times[p][ti] = bench_samples_time(&samples[p][ti]);
                bench_samples_free(&samples[p][ti]);
            }
        double peak = bench_max_rss_mib();
        /* the capacity (after the peak: its copies are not this model's memory) */
        capacity_figures cap = {{0}, {0}};
        if (cap_ti >= 0 && rc == 0) cap = capacity(mc, &t, o->threads[cap_ti], &d, o->min_seconds);
        xd_threads_set(o->threads[0]);
        t.m.precision = NN_PREC_FLOAT32;
        if (!isfinite(t.loss_sum))
            fprintf(stderr, "xdistill bench: %s: the loss became non-finite; the figures are not "
                            "meaningful\n", mc->name);
        for (int p = 0; p < NN_PREC_COUNT && rc == 0; p++) {
            for (int ti = 0; ti < o->n_threads; ti++) {
                bench_time tm = times[p][ti];
                double ips = B / tm.median, vs32 = times[NN_PREC_FLOAT32][ti].median / tm.median;
                char name[64];
                snprintf(name, sizeof name, "%s%s", mc->name, p ? "_bf16" : "");
                if (ti == 0) first = ips;
                char capf[384] = "";
                size_t at = 0;
                if (ti == cap_ti && cap.cap[p] > 0.0)
                    at += (size_t)snprintf(capf, sizeof capf,
                                           ",\"capacity_copies\":%d,\"capacity\":%.3f,"
                                           "\"capacity_threads_speedup\":%.3f",
                                           o->threads[ti], cap.cap[p], cap.threads[p]);
                if (at >= sizeof capf) at = sizeof capf - 1;
                if (ti == hand_ti && hand.n > 0)
                    handoff_json(&hand, capf + at, sizeof capf - at);
                if (o->json) {
                    fprintf(f, "{\"suite\":\"train\",\"case\":\"%s\",\"data\":\"%s\",\"batch\":%d,"
                               "\"threads\":%d,\"params\":%zu,\"step_s\":%.6f,\"min_s\":%.6f,"
                               "\"max_s\":%.6f,\"cpu_s\":%.6f,\"reps\":%d,\"images_per_s\":%.1f,\"epoch_s\":%.3f,"
                               "\"epoch_min_s\":%.3f,\"epoch_max_s\":%.3f,\"speedup_vs_first\":%.3f,"
                               "\"first_threads\":%d,\"approx_gflops\":%.2f,\"peak_rss_mib\":%.1f,"
                               "\"rss_before_mib\":%.1f,\"rss_growth_mib\":%.1f,\"rss_scope\":\"%s\","
                               "\"precision\":\"%s\",\"speedup_vs_float32\":%.3f,"
                               "\"cpu_speedup_vs_float32\":%.3f,\"step\":\"%s\"%s}\n",
                            name, bench_images_kind(&d), B, o->threads[ti], t.m.n_param,
                            tm.median, tm.min, tm.max, tm.cpu_median, tm.reps, ips, BENCH_EPOCH / ips,
                            BENCH_EPOCH * tm.min / B, BENCH_EPOCH * tm.max / B, ips / first,
                            o->threads[0], (train ? 3.0 : 1.0) * flops * ips / 1e9, peak, before, peak - before,
                            scoped ? "model" : "process", nn_precision_names[p], vs32,
                            times[NN_PREC_FLOAT32][ti].cpu_median / tm.cpu_median,
                            train ? "train" : "forward", capf);
                } else {
                    char st[48];
                    snprintf(st, sizeof st, "%.2f [%.2f-%.2f]", 1e3 * tm.median, 1e3 * tm.min,
                             1e3 * tm.max);
                    fprintf(f, "%-20s %3d %24s %8.2f %10.0f %9.2f %7.2fx %7.2fx\n", name,
                            o->threads[ti], st, 1e3 * tm.cpu_median, ips, BENCH_EPOCH / ips,
                            ips / first, vs32);
                }
            }
        }
        if (!o->json) {
            for (int p = 0; p < NN_PREC_COUNT && cap_ti >= 0; p++)
                if (cap.cap[p] > 0.0)
                    fprintf(f, "  %s%s: %d one-thread copies side by side ran at %.2fx one alone "
                               "(the cores' capacity for this work), %d threads on one at %.2fx "
                               "(%.0f%% of it), in the same rounds\n",
                            mc->name, p ? "_bf16" : "", o->threads[cap_ti], cap.cap[p],
                            o->threads[cap_ti], cap.threads[p],
                            100.0 * cap.threads[p] / cap.cap[p]);
            if (hand.n > 0) handoff_print(&hand, mc->name, f);
            if (scoped)
                fprintf(f, "  %s: %zu parameters; peak RSS %.1f MiB while built and run, "
                           "+%.1f MiB over the %.1f MiB before it\n",
                        mc->name, t.m.n_param, peak, peak - before, before);
            else
                fprintf(f, "  %s: %zu parameters; process peak RSS %.1f MiB (could not reset "
                           "the peak: the mark rose %.1f MiB while this model ran)\n",
                        mc->name, t.m.n_param, peak, peak - before);
        }
        bench_trainer_free(&t);
        prev_peak = bench_max_rss_mib(); /* with the capacity's copies */
    }
    bench_images_free(&d);
    return rc;
}
