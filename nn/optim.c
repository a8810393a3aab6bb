/* Optimizers (SGD, AdamW), gradient clipping and learning-rate schedules (see optim.h; their
 * key=value configuration: optim_config.c).
 *
 * A step updates the flat parameter block elementwise, in blocks of its segments that the
 * threads of one OpenMP region share out (each thread's own blocks first, then those of a slower
 * one): every element is written by exactly one thread and no value is reduced (only the flags
 * of values over nn_norm_finite's bound are OR-ed, in any order), so a step gives the same bits
 * at any thread count. The gradient norm is the one reduction of values; it is summed in double
 * over fixed chunks whose partial sums are added in chunk order, which makes it independent of
 * the thread count too. Per-step scalars (bias corrections, decay factors) are computed in double
 * and rounded once, as PyTorch does with its Python-float hyperparameters. */
#include "nn/optim.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"

/* Below this many floats a step or a norm runs on one thread: forking costs more than it saves. */
#define PAR_MIN 32768

static const double PI = 3.14159265358979323846;

// ----------------------------------------------------------------------------------------------
// optimizer state

xd_status nn_param_segs_check(const nn_param_seg *segs, int n_segs, size_t n, xd_err *e)
{
    if (n_segs < 0) return xd_fail(e, XD_ESHAPE, "parameter segments: count %d < 0", n_segs);
    if (n_segs > 0 && !segs) return xd_fail(e, XD_ESHAPE, "parameter segments: table is NULL");
    size_t at = 0;
    for (int i = 0; i < n_segs; i++) {
        if (segs[i].offset != at)
            return xd_fail(e, XD_ESHAPE,
                           "parameter segment %d starts at %zu, expected %zu (segments must "
                           "cover the block in order, without gaps or overlaps)",
                           i, segs[i].offset, at);
        if (segs[i].count > n - at)
            return xd_fail(e, XD_ESHAPE, "parameter segment %d (%zu + %zu) runs past the %zu "
                           "parameters", i, segs[i].offset, segs[i].count, n);
        at += segs[i].count;
    }
    if (n_segs > 0 && at != n)
        return xd_fail(e, XD_ESHAPE, "parameter segments cover %zu of %zu parameters", at, n);
    return XD_OK;
}

static float *zeroed_floats(size_t n)
{
    float *p = xd_xmalloc_aligned(n * sizeof(float));
    memset(p, 0, n * sizeof(float));
    return p;
}

xd_status nn_opt_init(nn_optimizer *o, const nn_opt_config *cfg, size_t n, xd_err *e)
{
    memset(o, 0, sizeof *o);
    xd_status s = nn_opt_config_check(cfg, e);
    if (s != XD_OK) return s;
    if (n == 0) return xd_fail(e, XD_EARG, "optimizer: no parameters to optimise");
    if (n > SIZE_MAX / sizeof(float))
        return xd_fail(e, XD_ENOMEM, "optimizer: %zu parameters do not fit in memory", n);
    o->cfg = *cfg;
    o->n = n;
    if (cfg->kind == NN_OPT_ADAMW) {
        o->m = zeroed_floats(n);
        o->v = zeroed_floats(n);
    } else if (cfg->momentum > 0) {
        o->m = zeroed_floats(n);
    }
    return XD_OK;
}

void nn_opt_free(nn_optimizer *o)
{
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

void nn_opt_reset(nn_optimizer *o)
{
    if (o->m) memset(o->m, 0, o->n * sizeof(float));
    if (o->v) memset(o->v, 0, o->n * sizeof(float));
    o->step = 0;
    o->grad_norm = 0;
}

// ----------------------------------------------------------------------------------------------
// gradient norm and clipping

#define NORM_CHUNK 8192  /* floats summed by one task */
#define NORM_ROUND 256   /* chunks whose partial sums are kept at once (2 KB on the stack) */
#define NORM_LANES 8

/* sum g_i^2 in double, in NORM_LANES fixed lanes (so the loop vectorises without reordering). */
static double chunk_sumsq(const float *g, size_t n)
{
    double acc[NORM_LANES] = {0};
    size_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int j = 0; j < NORM_LANES; j++) {
            double x = g[i + j];
            acc[j] += x * x;
        }
    for (int j = 0; i < n; i++, j++) {
        double x = g[i];
        acc[j] += x * x;
    }
    double s = 0;
    for (int j = 0; j < NORM_LANES; j++) s += acc[j];
    return s;
}

/* ||g||_2 = sqrt(sum_i g_i^2) */
float nn_grad_norm(const float *g, size_t n)
{
    double total = 0;
    double part[NORM_ROUND];
    for (size_t base = 0; base < n;) {
        size_t left = n - base;
        size_t n_chunks = (left + NORM_CHUNK - 1) / NORM_CHUNK;
        if (n_chunks > NORM_ROUND) n_chunks = NORM_ROUND;
        long nc = (long)n_chunks;
#pragma omp parallel for schedule(static) if (left >= PAR_MIN)
        for (long c = 0; c < nc; c++) {
            size_t at = base + (size_t)c * NORM_CHUNK;
            size_t cnt = n - at < NORM_CHUNK ? n - at : NORM_CHUNK;
            part[c] = chunk_sumsq(g + at, cnt);
        }
        for (long c = 0; c < nc; c++) total += part[c];
        base += n_chunks * NORM_CHUNK;
    }
    return (float)sqrt(total);
}

static void scale_floats(float *g, size_t n, float c)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) g[i] *= c;
}

float nn_norm_finite_bound(size_t n)
{
    return n ? (float)(FLT_MAX / (2.0 * sqrt((double)n))) : INFINITY;
}

/* x is NaN, infinite or above most (NaN compares false) */
static inline int over(float x, float most) { return !(fabsf(x) <= most); }

int nn_norm_finite(const float *g, size_t n)
{
    const float most = nn_norm_finite_bound(n);
    int over_any = 0;
#pragma omp parallel for schedule(static) reduction(| : over_any) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) over_any |= over(g[i], most);
    return !over_any || isfinite(nn_grad_norm(g, n));
}

/* c = max / (||g|| + 1e-6); g *= c when c < 1 (torch clamps c to 1, a no-op multiply) */
float nn_clip_grad_norm(float *g, size_t n, float max_norm)
{
    float norm = nn_grad_norm(g, n);
    if (!(max_norm > 0) || !isfinite(norm)) return norm;
    /* torch computes the coefficient in the gradient's precision */
    float c = max_norm / (norm + 1e-6f);
    if (c < 1.0f) scale_floats(g, n, c);
    return norm;
}

// ----------------------------------------------------------------------------------------------
// optimizer step

typedef struct {
    float lr, mu;
    int first, nesterov;
} sgd_args;

/* A moment that has decayed below the smallest normal float is kept as zero. A parameter whose
 * gradient stays 0 (a weight on a pixel that is 0 in every image) has its moments shrink by the
 * beta or momentum every step, and after some hundreds of steps they would be subnormal: many
 * CPUs take a slow path (a microcode assist, some hundred cycles) for every operation that makes
 * or reads one, which made a whole training step several times slower. At zero they stay zero
 * at full speed. What they would have added to a parameter is below 1e-30 of the learning rate,
 * lost in its rounding anyway. */
static inline float moment(float x) { return fabsf(x) < FLT_MIN ? 0.0f : x; }

/* A thread's share of a step: whether a gradient it read, or a parameter as it left it, is over
 * the bound (over(), for the whole block: nn_opt_step's o->grads_over, o->params_over) */
typedef struct {
    float most;
    int *grads, *params;
} step_over;

/* g = grad + wd*p; buf = mu*buf + g (buf = g at first); g = nesterov ? g + mu*buf : buf;
 * p -= lr*g, for the n values at p, g, m (a block of a segment) */
static void sgd_block(float *p, const float *g, float *m, size_t n, float wd, sgd_args a,
                      step_over ov)
{
    int og = 0, op = 0;
    const float most = ov.most;
    /* on the first step the buffer starts as the gradient itself, as in torch */
    float mu_buf = a.first ? 0.0f : a.mu;
    if (!m) {
        for (size_t i = 0; i < n; i++) {
            og |= over(g[i], most);
            p[i] -= a.lr * (g[i] + wd * p[i]);
            op |= over(p[i], most);
        }
    } else if (a.nesterov) {
        for (size_t i = 0; i < n; i++) {
            og |= over(g[i], most);
            float d = g[i] + wd * p[i];
            float b = moment(mu_buf * m[i] + d);
            m[i] = b;
            p[i] -= a.lr * (d + a.mu * b);
            op |= over(p[i], most);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            og |= over(g[i], most);
            float d = g[i] + wd * p[i];
            float b = moment(mu_buf * m[i] + d);
            m[i] = b;
            p[i] -= a.lr * b;
            op |= over(p[i], most);
        }
    }
    *ov.grads |= og;
    *ov.params |= op;
}

/* A block of a frozen segment: not updated, but its values are looked at as an updated one's */
static void frozen_block(const float *p, const float *g, size_t n, step_over ov)
{
    int og = 0, op = 0;
    for (size_t i = 0; i < n; i++) {
        og |= over(g[i], ov.most);
        op |= over(p[i], ov.most);
    }
    *ov.grads |= og;
    *ov.params |= op;
}

typedef struct {
    float b1, b2, one_b1, one_b2; /* betas and 1 - betas */
    float step_size;              /* lr / (1 - b1^t) */
    float bc2_sqrt;               /* sqrt(1 - b2^t) */
    float eps;
} adamw_args;

/* p *= keep (= 1 - lr*wd); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 * p -= step_size * m / (sqrt(v)/bc2_sqrt + eps), for the n values at p, g, m, v */
static void adamw_block(float *p, const float *g, float *m, float *v, size_t n, float keep,
                        adamw_args a, step_over ov)
{
    int og = 0, op = 0;
    const float most = ov.most;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        og |= over(gi, most);
        float mi = moment(a.b1 * m[i] + a.one_b1 * gi);
        float vi = moment(a.b2 * v[i] + a.one_b2 * gi * gi);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / a.bc2_sqrt + a.eps;
        /* decoupled decay acts on the parameter before the update, as torch orders it */
        p[i] = p[i] * keep - a.step_size * (mi / denom);
        op |= over(p[i], most);
    }
    *ov.grads |= og;
    *ov.params |= op;
}

/* One optimizer step: its segments and the arguments of its kind's update. Its values are
 * updated in blocks, handed out in runs (xd_runs_take): run t holds thread t's share of every
 * segment (the values [n t / T, n (t + 1) / T) of a segment of n: about the rows of a linear
 * layer's weight gradient that thread t wrote, nn_mm_param_rows, when neither took over the
 * other's), each share cut into blocks of
 * equal length (STEP_BLOCK at most), as many for every run; a thread done with its run takes
 * blocks of a slower thread's that it has not begun. The update of a value does not depend on
 * the others, so the bits are the same whoever does a block. */
typedef struct {
    const nn_optimizer *o;
    float *params;
    const float *grads;
    const nn_param_seg *segs;
    int n_segs;
    float most;
    sgd_args sgd;
    adamw_args adamw;
    float keep_decay;
    int T;            /* the runs */
    const int *first; /* a run's blocks of segment s: first[s] .. first[s + 1] - 1 */
    int per_run;      /* first[n_segs] */
    xd_runs *runs;
} step_job;

enum { STEP_BLOCK = 4096 }; /* values of a block, at most: 16 KB of each array */

/* Block b of run t: segment *s, its values [*lo, *hi) */
static void step_block_range(const step_job *j, int t, int b, int *s, size_t *lo, size_t *hi)
{
    int k = 0, top = j->n_segs - 1; /* the last segment whose first block is at most b */
    while (k < top) {
        const int mid = k + (top - k + 1) / 2;
        if (j->first[mid] <= b) k = mid;
        else top = mid - 1;
    }
    const uint64_t n = j->segs[k].count, T = (uint64_t)j->T;
    const uint64_t r0 = n * (uint64_t)t / T, r1 = n * (uint64_t)(t + 1) / T;
    const uint64_t nb = (uint64_t)(j->first[k + 1] - j->first[k]), i = (uint64_t)(b - j->first[k]);
    *s = k;
    *lo = (size_t)(r0 + (r1 - r0) * i / nb);
    *hi = (size_t)(r0 + (r1 - r0) * (i + 1) / nb);
}

static void step_block(const step_job *j, int s, size_t lo, size_t n, step_over ov)
{
    const nn_optimizer *o = j->o;
    const size_t off = j->segs[s].offset + lo;
    if (n == 0) return;
    if (j->segs[s].frozen) {
        frozen_block(j->params + off, j->grads + off, n, ov);
    } else if (o->cfg.kind == NN_OPT_SGD) {
        float *m = o->cfg.momentum > 0 ? o->m + off : NULL;
        sgd_block(j->params + off, j->grads + off, m, n,
                  j->segs[s].decay ? o->cfg.weight_decay : 0.0f, j->sgd, ov);
    } else {
        adamw_block(j->params + off, j->grads + off, o->m + off, o->v + off, n,
                    j->segs[s].decay ? j->keep_decay : 1.0f, j->adamw, ov);
    }
}

/* The calling thread's blocks (without runs, where xd_threads_split keeps the step on the
 * calling thread: every segment whole, in order); grads_over, params_over: step_over's, for this
 * thread. */
static void step_blocks(const step_job *j, int *grads_over, int *params_over)
{
    const step_over ov = {j->most, grads_over, params_over};
    if (!j->runs) {
        for (int s = 0; s < j->n_segs; s++) step_block(j, s, 0, j->segs[s].count, ov);
        return;
    }
    for (int k = 0, i, t = xd_thread_num(); (i = xd_runs_take(j->runs, t, &k)) >= 0;) {
        int s;
        size_t lo, hi;
        step_block_range(j, i / j->per_run, i % j->per_run, &s, &lo, &hi);
        step_block(j, s, lo, hi - lo, ov);
    }
}

void nn_opt_step(nn_optimizer *o, float *params, float *grads, const nn_param_seg *segs,
                 int n_segs, float lr)
{
    XD_ASSERT(nn_param_segs_check(segs, n_segs, o->n, NULL) == XD_OK);
    XD_ASSERT(lr >= 0 && isfinite(lr));
    const nn_opt_config *c = &o->cfg;
    nn_param_seg all = {0, o->n, 1, 0};
    if (n_segs == 0) {
        segs = &all;
        n_segs = 1;
    }
    o->grad_norm = c->clip_norm > 0 ? nn_clip_grad_norm(grads, o->n, c->clip_norm) : 0.0f;
    o->step++;
    const float most = nn_norm_finite_bound(o->n);
    int grads_over = 0, params_over = 0;

    step_job j = {.o = o, .params = params, .grads = grads, .segs = segs, .n_segs = n_segs,
                  .most = most};
    if (c->kind == NN_OPT_SGD) {
        XD_ASSERT(!(c->momentum > 0) || o->m);
        j.sgd = (sgd_args){lr, c->momentum, o->step == 1, c->nesterov};
    } else {
        XD_ASSERT(c->kind == NN_OPT_ADAMW && o->m && o->v);
        double t = (double)o->step;
        j.adamw = (adamw_args){
            .b1 = c->beta1,
            .b2 = c->beta2,
            .one_b1 = (float)(1.0 - c->beta1),
            .one_b2 = (float)(1.0 - c->beta2),
            .step_size = (float)((double)lr / (1.0 - pow(c->beta1, t))),
            .bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, t)),
            .eps = c->eps,
        };
        j.keep_decay = (float)(1.0 - (double)lr * c->weight_decay);
    }
    /* On one thread, or inside another's team where regions do not nest, the blocks run on the
     * calling thread in order (see xd_threads_split). A run's first blocks: on the stack for up
     * to 64 segments, so that a step of most models allocates nothing. */
    if (xd_threads_split(o->n >= PAR_MIN)) {
        j.T = xd_threads_get();
        int room[65];
        int *first = n_segs < 65 ? room : xd_xmalloc(sizeof(int) * ((size_t)n_segs + 1));
        j.first = first;
        first[0] = 0;
        for (int s = 0; s < n_segs; s++) { /* at least one block, maybe empty, a segment */
            const size_t share = (segs[s].count + (size_t)j.T - 1) / (size_t)j.T;
            const size_t nb = share > STEP_BLOCK ? (share + STEP_BLOCK - 1) / STEP_BLOCK : 1;
            XD_ASSERT(nb <= (size_t)(INT_MAX / j.T - first[s]));
            first[s + 1] = first[s] + (int)nb;
        }
        j.per_run = first[n_segs];
        xd_runs runs;
        xd_runs_init(&runs, j.T, j.T * j.per_run);
        j.runs = &runs;
#pragma omp parallel num_threads(j.T) reduction(| : grads_over, params_over)
        step_blocks(&j, &grads_over, &params_over);
        xd_runs_free(&runs);
        if (first != room) free(first);
    } else {
        step_blocks(&j, &grads_over, &params_over);
    }
    o->grads_over = grads_over;
    o->params_over = params_over;
}

// ----------------------------------------------------------------------------------------------
// schedules

float nn_sched_lr(const nn_sched_config *cfg, long step)
{
    double base = cfg->base_lr, lo = cfg->min_lr;
    long t = step < 0 ? 0 : step, w = cfg->warmup_steps;
    if (t < w) {
        /* lr = base * (s + (1 - s) * t / W) */
        double s = cfg->warmup_start;
        return (float)(base * (s + (1.0 - s) * (double)t / (double)w));
    }
    t -= w;
    switch (cfg->kind) {
    case NN_SCHED_CONSTANT: return (float)base;
    case NN_SCHED_STEP: {
        /* lr = base * gamma^floor(t / step_size) */
        long k = cfg->step_size > 0 ? t / cfg->step_size : 0;
        return (float)(base * pow(cfg->gamma, (double)k));
    }
    case NN_SCHED_COSINE:
    case NN_SCHED_LINEAR: {
        long T = cfg->total_steps - w;
        if (T <= 0 || t >= T) return (float)lo;
        double x = (double)t / (double)T;
        /* cosine: lo + (base - lo) * (1 + cos(pi x)) / 2;  linear: lo + (base - lo) * (1 - x) */
        double f = cfg->kind == NN_SCHED_COSINE ? 0.5 * (1.0 + cos(PI * x)) : 1.0 - x;
        return (float)(lo + (base - lo) * f);
    }
    case NN_SCHED_COUNT: break;
    }
    return (float)base;
}
