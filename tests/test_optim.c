/* nn/optim: SGD and AdamW against hand-written double-precision references (and a few numbers
 * worked out by hand), weight decay per segment, gradient clipping, the norm, non-finite values,
 * and thread-count independence. Schedules and the key=value configuration are in
 * test_optim_config.c. */
#include "tests/support/testutil.h"

#include <float.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include "core/runtime.h"
#endif

#include "nn/optim.h"

#define N 6
#define STEPS 3

/* Starting parameters, one gradient vector per step (signs change, sizes differ) and the
 * learning rate in force at each step (a schedule would hand these in). */
static const float P0[N] = {1.0f, -0.5f, 2.0f, 0.75f, -1.5f, 0.3f};
static const float G[STEPS][N] = {
    {0.5f, -0.2f, 0.1f, 1.5f, -0.05f, 0.02f},
    {-0.25f, 0.4f, 0.3f, -1.0f, 0.2f, -0.01f},
    {1.0f, -0.1f, -0.6f, 0.5f, 0.7f, 0.03f},
};
static const float LR[STEPS] = {0.1f, 0.05f, 0.1f};

/* decay on [0,3) and [4,6); element 3 is a "bias" without decay */
static const nn_param_seg SEGS[] = {{0, 3, 1, 0}, {3, 1, 0, 0}, {4, 2, 1, 0}};
static const int DECAY[N] = {1, 1, 1, 0, 1, 1};

// ----------------------------------------------------------------------------------------------
// references, written from the formulas, element by element in double

static void ref_sgd(double p[N], const nn_opt_config *c, const int decay[N])
{
    double mu = c->momentum, wd = c->weight_decay;
    for (int i = 0; i < N; i++) {
        double buf = 0;
        p[i] = P0[i];
        for (int t = 0; t < STEPS; t++) {
            double g = G[t][i];
            if (decay[i]) g += wd * p[i];
            if (mu > 0) {
                buf = t == 0 ? g : mu * buf + g;
                g = c->nesterov ? g + mu * buf : buf;
            }
            p[i] -= (double)LR[t] * g;
        }
    }
}

static void ref_adamw(double p[N], const nn_opt_config *c, const int decay[N])
{
    double b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
    for (int i = 0; i < N; i++) {
        double m = 0, v = 0;
        p[i] = P0[i];
        for (int t = 1; t <= STEPS; t++) {
            double g = G[t - 1][i], lr = LR[t - 1];
            if (decay[i]) p[i] *= 1.0 - lr * wd;
            m = b1 * m + (1 - b1) * g;
            v = b2 * v + (1 - b2) * g * g;
            double mhat = m / (1 - pow(b1, t)), vhat = v / (1 - pow(b2, t));
            p[i] -= lr * mhat / (sqrt(vhat) + eps);
        }
    }
}

/* Runs STEPS steps of the optimizer; returns the parameters in p. */
static void run_opt(const nn_opt_config *cfg, const nn_param_seg *segs, int n_segs, float p[N])
{
    nn_optimizer o;
    xd_err e;
    TU_OK(nn_opt_init(&o, cfg, N, &e));
    memcpy(p, P0, sizeof P0);
    for (int t = 0; t < STEPS; t++) {
        float g[N];
        memcpy(g, G[t], sizeof g);
        nn_opt_step(&o, p, g, segs, n_segs, LR[t]);
        /* weight decay never leaks into the gradient buffer */
        for (int i = 0; i < N; i++) assert_true(g[i] == G[t][i]);
    }
    assert_int_equal(o.step, STEPS);
    nn_opt_free(&o);
}

static void expect_close(const float got[N], const double want[N], const char *what)
{
    float w[N];
    for (int i = 0; i < N; i++) w[i] = (float)want[i];
    tu_assert_close(got, w, N, 1e-6, 1e-7, what);
}

static nn_opt_config sgd_config(float momentum, float wd, int nesterov)
{
    nn_opt_config c = nn_opt_defaults(NN_OPT_SGD);
    c.lr = 7.0f; /* never used: the step's own lr wins */
    c.momentum = momentum;
    c.weight_decay = wd;
    c.nesterov = nesterov;
    return c;
}

// ----------------------------------------------------------------------------------------------
// SGD

static void test_sgd_plain(void **state)
{
    (void)state;
    nn_opt_config c = sgd_config(0, 0, 0);
    float p[N];
    double want[N];
    run_opt(&c, NULL, 0, p);
    ref_sgd(want, &c, DECAY);
    expect_close(p, want, "sgd");
    /* by hand: 1 - 0.1*0.5 + 0.05*0.25 - 0.1*1.0 = 0.8625 */
    assert_float_equal(p[0], 0.8625, 1e-6);
}

static void test_sgd_momentum(void **state)
{
    (void)state;
    nn_opt_config c = sgd_config(0.9f, 0, 0);
    float p[N];
    double want[N];
    run_opt(&c, NULL, 0, p);
    ref_sgd(want, &c, DECAY);
    expect_close(p, want, "sgd momentum");
    /* by hand: buf = 0.5, 0.2, 1.18; p = 1 - 0.05 - 0.01 - 0.118 = 0.822 */
    assert_float_equal(p[0], 0.822, 1e-6);
}

static void test_sgd_nesterov(void **state)
{
    (void)state;
    nn_opt_config c = sgd_config(0.9f, 0, 1);
    float p[N];
    double want[N];
    run_opt(&c, NULL, 0, p);
    ref_sgd(want, &c, DECAY);
    expect_close(p, want, "sgd nesterov");
    /* by hand: g = 0.95, -0.07, 2.062; p = 1 - 0.095 + 0.0035 - 0.2062 = 0.7023 */
    assert_float_equal(p[0], 0.7023, 1e-6);
}

static void test_sgd_weight_decay_segments(void **state)
{
    (void)state;
    nn_opt_config c = sgd_config(0.9f, 0.1f, 0);
    float p[N], plain[N];
    double want[N];
    run_opt(&c, SEGS, 3, p);
    ref_sgd(want, &c, DECAY);
    expect_close(p, want, "sgd decay");
    /* element 3 (decay 0) moves exactly as without any decay; the others do not */
    nn_opt_config c0 = sgd_config(0.9f, 0, 0);
    run_opt(&c0, SEGS, 3, plain);
    assert_true(p[3] == plain[3]);
    for (int i = 0; i < N; i++)
        if (i != 3) assert_true(fabsf(p[i] - plain[i]) > 1e-4f);
    /* no segments at all: decay everywhere */
    static const int all[N] = {1, 1, 1, 1, 1, 1};
    run_opt(&c, NULL, 0, p);
    ref_sgd(want, &c, all);
    expect_close(p, want, "sgd decay everywhere");
}

// ----------------------------------------------------------------------------------------------
// AdamW

static nn_opt_config adamw_config(float wd)
{
    nn_opt_config c = nn_opt_defaults(NN_OPT_ADAMW);
    c.lr = 7.0f;
    c.weight_decay = wd;
    c.beta1 = 0.8f;
    c.beta2 = 0.95f;
    c.eps = 1e-2f; /* large enough that a misplaced eps shows */
    return c;
}

static void test_adamw(void **state)
{
    (void)state;
    nn_opt_config c = adamw_config(0);
    float p[N];
    double want[N];
    run_opt(&c, NULL, 0, p);
    ref_adamw(want, &c, DECAY);
    expect_close(p, want, "adamw");

    /* one step by hand: mhat = g, vhat = g^2, p = 1 - 0.1 * 0.5 / (0.5 + 0.01) = 0.90196078 */
    nn_optimizer o;
    xd_err e;
    TU_OK(nn_opt_init(&o, &c, 1, &e));
    float p1 = 1.0f, g1 = 0.5f;
    nn_opt_step(&o, &p1, &g1, NULL, 0, 0.1f);
    assert_float_equal(p1, 1.0 - 0.05 / 0.51, 1e-7);
    nn_opt_free(&o);
}

/* A parameter whose gradient stops: its moments decay towards 0 and are kept at 0 rather than
 * going subnormal (slow on many CPUs). They never hold a subnormal, and the first moment reaches
 * exactly 0 in about the steps its decay needs to pass FLT_MIN (0.9^t: some 820; 0.5^t: some
 * 125), not before. */
static void test_moments_never_subnormal(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) { /* AdamW, SGD momentum, SGD Nesterov */
        nn_opt_config c = nn_opt_defaults(kind == 0 ? NN_OPT_ADAMW : NN_OPT_SGD);
        if (kind > 0) {
            c.momentum = 0.5f;
            c.nesterov = kind == 2;
        }
        nn_optimizer o;
        xd_err e;
        TU_OK(nn_opt_init(&o, &c, 2, &e));
        float p[2] = {1.0f, -2.0f}, g[2] = {0.25f, -1e-3f};
        double ref_m[2] = {0, 0}, before = 0.0, at_zero = 0.0;
        int zero_at = -1;
        for (int t = 0; t < 3000; t++) {
            nn_opt_step(&o, p, g, NULL, 0, 1e-3f);
            const double prev = ref_m[0];
            for (int i = 0; i < 2; i++) {
                assert_true(o.m[i] == 0.0f || fabsf(o.m[i]) >= FLT_MIN);
                if (kind == 0) assert_true(o.v[i] == 0.0f || o.v[i] >= FLT_MIN);
                /* the first moment's exact decay, in double */
                ref_m[i] = (kind == 0 ? c.beta1 : c.momentum) * ref_m[i] +
                           (kind == 0 ? 1.0 - c.beta1 : 1.0) * g[i];
            }
            if (o.m[0] == 0.0f && zero_at < 0) {
                zero_at = t;
                before = prev;
                at_zero = ref_m[0];
            }
            g[0] = g[1] = 0.0f;
        }
        /* 0 exactly when the decay passes FLT_MIN (within the float chain's drift from the
         * double one), not before */
        assert_true(zero_at > 0 && zero_at < (kind == 0 ? 900 : 140));
        assert_true(fabs(at_zero) < 1.01 * FLT_MIN && fabs(before) > 0.99 * FLT_MIN);
        nn_opt_free(&o);
    }
}

static void test_adamw_weight_decay_segments(void **state)
{
    (void)state;
    nn_opt_config c = adamw_config(0.5f); /* lr*wd = 0.05: ordering mistakes show */
    float p[N], plain[N];
    double want[N];
    run_opt(&c, SEGS, 3, p);
    ref_adamw(want, &c, DECAY);
    expect_close(p, want, "adamw decay");
    nn_opt_config c0 = adamw_config(0);
    run_opt(&c0, SEGS, 3, plain);
    assert_true(p[3] == plain[3]);
    for (int i = 0; i < N; i++)
        if (i != 3) assert_true(fabsf(p[i] - plain[i]) > 1e-3f);
    /* decay applied to the parameter before the update: p = 1*(1 - 0.1*0.5) - 0.1*0.5/0.51 */
    nn_optimizer o;
    xd_err e;
    TU_OK(nn_opt_init(&o, &c, 1, &e));
    float p1 = 1.0f, g1 = 0.5f;
    nn_opt_step(&o, &p1, &g1, NULL, 0, 0.1f);
    assert_float_equal(p1, 0.95 - 0.05 / 0.51, 1e-7);
    nn_opt_free(&o);
}

static void test_opt_state(void **state)
{
    (void)state;
    nn_optimizer o;
    xd_err e;
    nn_opt_config c = nn_opt_defaults(NN_OPT_SGD);
    TU_OK(nn_opt_init(&o, &c, 10, &e));
    assert_null(o.m); /* plain sgd keeps no state */
    assert_null(o.v);
    nn_opt_free(&o);

    c = adamw_config(0);
    TU_OK(nn_opt_init(&o, &c, N, &e));
    assert_non_null(o.m);
    assert_non_null(o.v);
    float p[N], g[N];
    memcpy(p, P0, sizeof p);
    memcpy(g, G[0], sizeof g);
    nn_opt_step(&o, p, g, NULL, 0, 0.1f);
    assert_true(o.m[0] != 0 && o.v[0] != 0);
    /* a reset optimizer repeats the first step exactly (bias correction restarts at t = 1) */
    float again[N];
    memcpy(again, P0, sizeof again);
    nn_opt_reset(&o);
    assert_int_equal(o.step, 0);
    nn_opt_step(&o, again, g, NULL, 0, 0.1f);
    assert_memory_equal(again, p, sizeof p);
    nn_opt_free(&o);

    /* bad configurations and sizes */
    c = nn_opt_defaults(NN_OPT_SGD);
    assert_int_equal(nn_opt_init(&o, &c, 0, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no parameters");
    c.nesterov = 1;
    assert_int_equal(nn_opt_init(&o, &c, 4, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "nesterov");
    c = nn_opt_defaults(NN_OPT_ADAMW);
    c.beta2 = 1.0f;
    assert_int_equal(nn_opt_init(&o, &c, 4, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "beta2");
    c = nn_opt_defaults(NN_OPT_ADAMW);
    c.lr = NAN;
    assert_int_equal(nn_opt_init(&o, &c, 4, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "lr");
    c.lr = 1e-3f;
    c.eps = 0;
    assert_int_equal(nn_opt_init(&o, &c, 4, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "eps");
    c = nn_opt_defaults(NN_OPT_SGD);
    c.kind = NN_OPT_COUNT;
    assert_int_equal(nn_opt_init(&o, &c, 4, &e), XD_EARG);
}

static void test_param_segments(void **state)
{
    (void)state;
    xd_err e;
    TU_OK(nn_param_segs_check(SEGS, 3, N, &e));
    TU_OK(nn_param_segs_check(NULL, 0, N, &e));
    const nn_param_seg gap[] = {{0, 3, 1, 0}, {4, 2, 1, 0}};
    assert_int_equal(nn_param_segs_check(gap, 2, N, &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "segment 1 starts at 4, expected 3");
    const nn_param_seg overlap[] = {{0, 3, 1, 0}, {2, 4, 1, 0}};
    assert_int_equal(nn_param_segs_check(overlap, 2, N, &e), XD_ESHAPE);
    const nn_param_seg past[] = {{0, 3, 1, 0}, {3, 4, 1, 0}};
    assert_int_equal(nn_param_segs_check(past, 2, N, &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "runs past");
    const nn_param_seg huge[] = {{0, 3, 1, 0}, {3, (size_t)-2, 1, 0}};
    assert_int_equal(nn_param_segs_check(huge, 2, N, &e), XD_ESHAPE);
    assert_int_equal(nn_param_segs_check(SEGS, 2, N, &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "cover 4 of 6");
}

/* A frozen segment keeps its exact values (no step, no weight decay) while the others move. */
static void test_frozen_segments(void **state)
{
    (void)state;
    const nn_param_seg segs[] = {{0, 3, 1, 1}, {3, 3, 1, 0}};
    for (int kind = 0; kind < NN_OPT_COUNT; kind++) {
        nn_opt_config cfg = nn_opt_defaults((nn_opt_kind)kind);
        cfg.lr = 0.1f;
        cfg.weight_decay = 0.1f;
        if (kind == NN_OPT_SGD) cfg.momentum = 0.9f;
        nn_optimizer o;
        xd_err e;
        TU_OK(nn_opt_init(&o, &cfg, 6, &e));
        float p[6] = {1, 2, 3, 4, 5, 6}, g[6] = {1, 1, 1, 1, 1, 1};
        for (int step = 0; step < 3; step++) nn_opt_step(&o, p, g, segs, 2, 0.1f);
        assert_true(p[0] == 1.0f && p[1] == 2.0f && p[2] == 3.0f);
        assert_true(p[3] < 4.0f && p[4] < 5.0f && p[5] < 6.0f);
        nn_opt_free(&o);
    }
}

// ----------------------------------------------------------------------------------------------
// clipping and the norm

static void test_clip_grad_norm(void **state)
{
    (void)state;
    float g[2] = {3.0f, 4.0f};
    assert_float_equal(nn_grad_norm(g, 2), 5.0, 1e-7);
    /* below the threshold: untouched */
    assert_float_equal(nn_clip_grad_norm(g, 2, 10.0f), 5.0, 1e-7);
    assert_true(g[0] == 3.0f && g[1] == 4.0f);
    /* above: scaled by max / (norm + 1e-6), the norm before clipping returned */
    assert_float_equal(nn_clip_grad_norm(g, 2, 1.0f), 5.0, 1e-7);
    double c = 1.0 / (5.0 + 1e-6);
    assert_float_equal(g[0], 3.0 * c, 1e-7);
    assert_float_equal(g[1], 4.0 * c, 1e-7);
    assert_float_equal(nn_grad_norm(g, 2), 1.0, 1e-6);
    /* max <= 0 only measures */
    float h[3] = {1.0f, 2.0f, 2.0f};
    assert_float_equal(nn_clip_grad_norm(h, 3, 0.0f), 3.0, 1e-7);
    assert_true(h[0] == 1.0f && h[1] == 2.0f && h[2] == 2.0f);
    /* a NaN norm comes back for the caller to report; the gradient is left as it was */
    float bad[3] = {1.0f, NAN, 2.0f};
    assert_true(isnan(nn_clip_grad_norm(bad, 3, 1.0f)));
    assert_true(bad[0] == 1.0f && bad[2] == 2.0f);
    assert_float_equal(nn_grad_norm(bad, 0), 0.0, 0.0);

    /* many small squares after large ones: a float running sum would drop them all
     * (1 + 1e-8 == 1 in float), the double sum keeps them */
    const size_t n = 200000;
    float *big = test_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) big[i] = i < 8 ? 1.0f : 1e-4f;
    double want = sqrt(8.0 + (double)(n - 8) * (double)1e-4f * (double)1e-4f);
    assert_true(fabs(nn_grad_norm(big, n) - want) <= 1e-6 * want);
    test_free(big);

    /* the optimizer clips before its update when clip_norm is set */
    nn_opt_config cfg = nn_opt_defaults(NN_OPT_SGD);
    cfg.clip_norm = 1.0f;
    nn_optimizer o;
    xd_err e;
    TU_OK(nn_opt_init(&o, &cfg, 2, &e));
    float p[2] = {0, 0}, dp[2] = {3.0f, 4.0f};
    nn_opt_step(&o, p, dp, NULL, 0, 1.0f);
    assert_float_equal(o.grad_norm, 5.0, 1e-7);
    assert_float_equal(p[0], -3.0 * c, 1e-7);
    assert_float_equal(p[1], -4.0 * c, 1e-7);
    nn_opt_free(&o);
}

/* nn_norm_finite says what isfinite(nn_grad_norm) says, in its fast pass and past it */
static void test_norm_finite(void **state)
{
    (void)state;
    const size_t n = 40000; /* past the size at which the pass is shared among threads */
    float *g = test_malloc(n * sizeof(float));
    const float most = nn_norm_finite_bound(n);
    assert_true(most > 0.0f && isfinite(most));
    assert_true(isinf(nn_norm_finite_bound(0)));
    /* the bound is what it claims: every value at it (either sign) gives a finite norm, about
     * FLT_MAX / 2; a bound twice as high would give FLT_MAX, three times an overflow */
    const size_t sizes[] = {1, 2, 3, 7, 40000, 1000000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t m = sizes[s];
        float *x = test_malloc(m * sizeof(float));
        const float b = nn_norm_finite_bound(m);
        for (size_t i = 0; i < m; i++) x[i] = i % 2 ? -b : b;
        const float norm = nn_grad_norm(x, m);
        assert_true(isfinite(norm));
        assert_float_equal(norm, FLT_MAX / 2.0, 1e-5 * FLT_MAX);
        assert_true(nn_norm_finite(x, m));
        for (size_t i = 0; i < m; i++) x[i] *= 3.0f;
        assert_false(isfinite(nn_grad_norm(x, m)));
        assert_false(nn_norm_finite(x, m));
        test_free(x);
    }
    assert_true(nn_norm_finite(g, 0));
    /* cases: every value small; one NaN; one infinite; one above the bound with a finite norm
     * (the exact norm decides); all of them above it, whose norm overflows a float */
    const float big = most * 1.5f, huge = FLT_MAX / 100.0f;
    for (int c = 0; c < 5; c++) {
        for (size_t i = 0; i < n; i++) g[i] = c == 4 ? huge : (float)(i % 7) - 3.0f;
        if (c == 1) g[n / 2] = NAN;
        if (c == 2) g[n - 1] = -INFINITY;
        if (c == 3) g[123] = -big;
        const int want = isfinite(nn_grad_norm(g, n));
        assert_int_equal(want, c == 0 || c == 3);
        assert_int_equal(nn_norm_finite(g, n), want);
    }
    test_free(g);
}

/* The optimizer's step looks at what it reads and writes: grads_over and params_over are set
 * for a gradient or a parameter that is NaN, infinite or above the bound (a frozen segment's
 * too), and only then; for every update loop, on a block small enough for one thread and on one
 * the threads share */
static void test_step_over(void **state)
{
    (void)state;
    /* SGD plain, with momentum, with Nesterov momentum; AdamW */
    for (int variant = 0; variant < 4; variant++)
        for (int big = 0; big < 2; big++)
            for (int c = 0; c < 6; c++) {
                const size_t n = big ? 40000 : 6, h = n / 2;
                const nn_param_seg segs[] = {{0, h, 1, 1}, {h, n - h, 1, 0}}; /* first frozen */
                nn_opt_config cfg = nn_opt_defaults(variant < 3 ? NN_OPT_SGD : NN_OPT_ADAMW);
                if (variant == 1 || variant == 2) cfg.momentum = 0.9f;
                cfg.nesterov = variant == 2;
                nn_optimizer o;
                xd_err e;
                TU_OK(nn_opt_init(&o, &cfg, n, &e));
                float *p = test_malloc(n * sizeof(float)), *g = test_malloc(n * sizeof(float));
                for (size_t i = 0; i < n; i++) {
                    p[i] = (float)(i % 5) + 1.0f;
                    g[i] = (float)(i % 3) - 1.0f;
                }
                const float most = nn_norm_finite_bound(n);
                /* 1: a NaN gradient (its parameter ends NaN too); 2: an infinite gradient in the
                 * frozen segment; 3: a frozen parameter above the bound; 4: a gradient above
                 * it, which SGD carries into its parameter (AdamW's step stays small); 5: a
                 * parameter above it */
                if (c == 1) g[n - 2] = NAN;
                if (c == 2) g[1] = INFINITY;
                if (c == 3) p[0] = -most * 2.0f;
                if (c == 4) g[n - 1] = most * 4.0f;
                if (c == 5) p[h] = most * 2.0f;
                nn_opt_step(&o, p, g, segs, 2, 1.0f);
                assert_int_equal(o.grads_over, c == 1 || c == 2 || c == 4);
                assert_int_equal(o.params_over,
                                 c == 1 || c == 3 || c == 5 || (c == 4 && variant < 3));
                test_free(p);
                test_free(g);
                nn_opt_free(&o);
            }
}

static void set_threads(int n)
{
#ifdef _OPENMP
    xd_threads_set(n);
#else
    (void)n;
#endif
}

static void test_thread_count_independence(void **state)
{
    (void)state;
    /* large enough to run in parallel and span several norm chunks; not a multiple of a chunk */
    const size_t n = 1000003;
    float *g = test_malloc(n * sizeof(float));
    float *p1 = test_malloc(n * sizeof(float)), *p2 = test_malloc(n * sizeof(float));
    unsigned long long x = 88172645463325252ull;
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* magnitudes from 1e-4 to 1e2, so the summation order matters in float */
        double u = (double)(x >> 11) / 9007199254740992.0;
        g[i] = (float)((u - 0.5) * pow(10.0, (double)(i % 7) - 4.0));
        p1[i] = p2[i] = (float)(u * 2 - 1);
        ref += (double)g[i] * g[i];
    }
    ref = sqrt(ref);
#ifdef _OPENMP
    int saved = xd_threads_get();
#endif
    set_threads(1);
    float a = nn_grad_norm(g, n);
    set_threads(2);
    float b = nn_grad_norm(g, n);
    assert_memory_equal(&a, &b, sizeof a);
    assert_true(fabs(a - ref) <= 1e-6 * ref);

    /* an AdamW step with decay segments gives the same bits at 1 and 2 threads */
    nn_param_seg segs[3] = {{0, 500000, 1, 0}, {500000, 3, 0, 0}, {500003, n - 500003, 1, 0}};
    nn_opt_config cfg = nn_opt_defaults(NN_OPT_ADAMW);
    nn_optimizer o1, o2;
    xd_err e;
    TU_OK(nn_opt_init(&o1, &cfg, n, &e));
    TU_OK(nn_opt_init(&o2, &cfg, n, &e));
    for (int t = 0; t < 2; t++) {
        set_threads(1);
        nn_opt_step(&o1, p1, g, segs, 3, 1e-2f);
        set_threads(2);
        nn_opt_step(&o2, p2, g, segs, 3, 1e-2f);
    }
    assert_memory_equal(p1, p2, n * sizeof(float));
    assert_memory_equal(o1.v, o2.v, n * sizeof(float));
#ifdef _OPENMP
    xd_threads_set(saved);
#endif
    nn_opt_free(&o1);
    nn_opt_free(&o2);
    test_free(g);
    test_free(p1);
    test_free(p2);
}

/* A step's values go to the threads in blocks of each thread's share of every segment, blocks a
 * thread done early takes over from a slower one: whatever the team (1 to 3 threads, and 9, past
 * the runs kept on the stack) and the segments (shorter than a team, empty, a frozen one, shares
 * of several blocks, more segments than the step keeps on the stack: 64), every value is updated
 * once, as one thread updates it, both moments too; and a value over the bound is seen whichever
 * thread updates it. */
static void test_step_blocks_any_team(void **state)
{
    (void)state;
    enum { N_SEGS = 70 };
    nn_param_seg segs[N_SEGS];
    static const size_t counts[] = {1, 2, 12295, 700, 0, 3, 57000};
    size_t n = 0;
    for (int k = 0; k < N_SEGS; k++) {
        const size_t c = k < 7 ? counts[k] : (size_t)(k * 37 % 101);
        segs[k] = (nn_param_seg){n, c, k % 3 != 1, k == 3}; /* segment 3 frozen */
        n += c;
    }
    float *g = test_malloc(n * sizeof(float)), *p0 = test_malloc(n * sizeof(float));
    float *p = test_malloc(n * sizeof(float));
    tu_fill_uniform(g, n, -1.0f, 1.0f, 41);
    tu_fill_uniform(p0, n, -1.0f, 1.0f, 42);
    const size_t frozen = segs[3].offset;
#ifdef _OPENMP
    const int saved = xd_threads_get();
#endif
    static const int teams[] = {1, 2, 3, 9};
    for (int kind = 0; kind < 2; kind++)
        for (int bad = 0; bad < 2; bad++) { /* bad: a NaN gradient in the middle of a share */
            nn_opt_config cfg = nn_opt_defaults(kind ? NN_OPT_ADAMW : NN_OPT_SGD);
            cfg.momentum = kind ? cfg.momentum : 0.9f;
            cfg.weight_decay = 0.01f;
            const size_t nan_at = segs[6].offset + 30001;
            const float g_was = g[nan_at];
            if (bad) g[nan_at] = NAN;
            float *want = test_malloc(n * sizeof(float)), *want_m = test_malloc(n * sizeof(float));
            float *want_v = test_malloc(n * sizeof(float));
            for (size_t t = 0; t < sizeof teams / sizeof teams[0]; t++) {
                set_threads(teams[t]);
                nn_optimizer o;
                xd_err e;
                TU_OK(nn_opt_init(&o, &cfg, n, &e));
                memcpy(p, p0, n * sizeof(float));
                for (int step = 0; step < 3; step++) nn_opt_step(&o, p, g, segs, N_SEGS, 1e-2f);
                assert_int_equal(o.grads_over, bad);
                assert_int_equal(o.params_over, bad);
                if (t == 0) {
                    memcpy(want, p, n * sizeof(float));
                    memcpy(want_m, o.m, n * sizeof(float));
                    if (kind) memcpy(want_v, o.v, n * sizeof(float));
                    /* the frozen segment kept its values, the others moved */
                    assert_memory_equal(p + frozen, p0 + frozen, 700 * sizeof(float));
                    assert_true(p[0] != p0[0] && p[13000] != p0[13000] && p[n - 1] != p0[n - 1]);
                } else {
                    assert_memory_equal(p, want, n * sizeof(float));
                    assert_memory_equal(o.m, want_m, n * sizeof(float));
                    if (kind) assert_memory_equal(o.v, want_v, n * sizeof(float));
                }
                nn_opt_free(&o);
            }
            g[nan_at] = g_was;
            test_free(want);
            test_free(want_m);
            test_free(want_v);
        }
#ifdef _OPENMP
    xd_threads_set(saved);
#endif
    test_free(g);
    test_free(p0);
    test_free(p);
}

/* A step taken by one thread of a running team (as a worker of a parallel job may) updates every
 * parameter, as one taken outside: there it runs every segment on the calling thread (or in a
 * team of its own where regions nest), never waiting for the caller's team, which does not reach
 * it. */
static void test_step_inside_a_team(void **state)
{
    (void)state;
    const size_t n = 100003; /* over the size where a step would use the threads */
    float *g = test_malloc(n * sizeof(float));
    float *p1 = test_malloc(n * sizeof(float)), *p2 = test_malloc(n * sizeof(float));
    tu_fill_uniform(g, n, -1.0f, 1.0f, 31);
    tu_fill_uniform(p1, n, -1.0f, 1.0f, 32);
    memcpy(p2, p1, n * sizeof(float));
    nn_param_seg segs[2] = {{0, 60000, 1, 0}, {60000, n - 60000, 0, 0}};
    for (int kind = 0; kind < 2; kind++) {
        nn_opt_config cfg = nn_opt_defaults(kind ? NN_OPT_ADAMW : NN_OPT_SGD);
        cfg.momentum = kind ? cfg.momentum : 0.9f;
        cfg.weight_decay = 0.01f;
        nn_optimizer o1, o2;
        xd_err e;
        TU_OK(nn_opt_init(&o1, &cfg, n, &e));
        TU_OK(nn_opt_init(&o2, &cfg, n, &e));
        for (int t = 0; t < 2; t++) {
            nn_opt_step(&o1, p1, g, segs, 2, 1e-2f);
#pragma omp parallel num_threads(2)
            {
#pragma omp master
                nn_opt_step(&o2, p2, g, segs, 2, 1e-2f);
            }
        }
        assert_memory_equal(p1, p2, n * sizeof(float));
        assert_memory_equal(o1.m, o2.m, n * sizeof(float));
        nn_opt_free(&o1);
        nn_opt_free(&o2);
    }
    test_free(g);
    test_free(p1);
    test_free(p2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_sgd_weight_decay_segments),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_adamw_weight_decay_segments),
        cmocka_unit_test(test_moments_never_subnormal),
        cmocka_unit_test(test_opt_state),
        cmocka_unit_test(test_param_segments),
        cmocka_unit_test(test_frozen_segments),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_norm_finite),
        cmocka_unit_test(test_step_over),
        cmocka_unit_test(test_thread_count_independence),
        cmocka_unit_test(test_step_blocks_any_team),
        cmocka_unit_test(test_step_inside_a_team),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
