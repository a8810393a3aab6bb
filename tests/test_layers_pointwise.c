/* nn/layers without windows: element-wise layers, softmax (rows, extremes, inference), exp,
 * normalisation, dropout, the embedding bag and fake-quant; every backward against central finite
 * differences, and exact checks where the maths gives exact values. */
#include "tests/support/testutil.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "nn/layers.h"

#define STEP 1e-2
#define RTOL 1e-2
#define ATOL 1e-3

static float *alloc_f(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

// ----------------------------------------------------------------------------------------------
// elementwise, softmax, gap

typedef enum { E_RELU, E_GELU, E_TANH, E_SIGMOID, E_SOFTMAX, E_LOGSOFTMAX, E_GAP, E_UPSAMPLE } ekind;
typedef struct {
    ekind k;
    float *x, *y, *r;
    size_t n, ny;
} elt_ctx;

enum { ER = 3, EK = 8 }; /* rows and width for softmax; gap as (3, 4 pixels, 2 channels) */

static double elt_loss(void *p)
{
    elt_ctx *c = p;
    switch (c->k) {
    case E_RELU: nn_relu_forward(c->y, c->x, c->n); break;
    case E_GELU: nn_gelu_forward(c->y, c->x, c->n); break;
    case E_TANH: nn_tanh_forward(c->y, c->x, c->n); break;
    case E_SIGMOID: nn_sigmoid_forward(c->y, c->x, c->n); break;
    case E_SOFTMAX: nn_softmax_forward(c->y, c->x, ER, EK); break;
    case E_LOGSOFTMAX: nn_logsoftmax_forward(c->y, c->x, ER, EK); break;
    case E_GAP: nn_gap_forward(c->y, c->x, ER, 4, 2); break;
    case E_UPSAMPLE: nn_upsample_forward(c->y, c->x, 1, 3, 4, 2, 2); break;
    }
    return tu_dot(c->y, c->r, c->ny);
}

static void test_elementwise(void **state)
{
    (void)state;
    static const char *names[] = {"relu", "gelu", "tanh", "sigmoid", "softmax", "logsoftmax",
                                  "gap", "upsample"};
    for (int k = E_RELU; k <= E_UPSAMPLE; k++) {
        elt_ctx c = {.k = (ekind)k, .n = ER * EK};
        c.ny = k == E_GAP ? ER * 2 : k == E_UPSAMPLE ? 1 * 6 * 8 * 2 : c.n;
        c.x = alloc_f(c.n); c.y = alloc_f(c.ny); c.r = alloc_f(c.ny);
        float *dx = alloc_f(c.n);
        tu_fill_uniform(c.x, c.n, -3, 3, 10 + k);
        /* keep relu inputs away from the kink at 0 */
        if (k == E_RELU)
            for (size_t i = 0; i < c.n; i++) c.x[i] += c.x[i] >= 0 ? 0.1f : -0.1f;
        tu_fill_uniform(c.r, c.ny, -1, 1, 20 + k);
        elt_loss(&c);
        switch (c.k) {
        case E_RELU: nn_relu_backward(dx, c.r, c.x, c.n); break;
        case E_GELU: nn_gelu_backward(dx, c.r, c.x, c.n); break;
        case E_TANH: nn_tanh_backward(dx, c.r, c.y, c.n); break;
        case E_SIGMOID: nn_sigmoid_backward(dx, c.r, c.y, c.n); break;
        case E_SOFTMAX: nn_softmax_backward(dx, c.r, c.y, ER, EK); break;
        case E_LOGSOFTMAX: nn_logsoftmax_backward(dx, c.r, c.y, ER, EK); break;
        case E_GAP: nn_gap_backward(dx, c.r, ER, 4, 2); break;
        case E_UPSAMPLE: nn_upsample_backward(dx, c.r, 1, 3, 4, 2, 2); break;
        }
        tu_check_grad(names[k], c.x, c.n, dx, elt_loss, &c, 1e-2, RTOL, ATOL);
        free(c.x); free(c.y); free(c.r); free(dx);
    }
}

/* Inference's float softmax against the double one: each probability p within a few float ulp,
 * plus the rounding of x - max in float, an ulp of |log p| (as exp carries it into p), rows
 * summing to 1, the extremes as exact. */
static void test_softmax_infer(void **state)
{
    (void)state;
    enum { R = 64, K = 37 };
    float x[R * K], want[R * K], got[R * K];
    tu_fill_uniform(x, R * K, -30.0f, 30.0f, 5);
    for (int k = 0; k < K; k++) x[K + k] = 1e-3f * (float)k; /* a row of near ties */
    nn_softmax_forward(want, x, R, K);
    nn_softmax_infer(got, x, R, K);
    for (int r = 0; r < R; r++) {
        double sum = 0.0;
        for (int k = 0; k < K; k++) {
            const float w = want[r * K + k], g = got[r * K + k];
            if (!(fabsf(g - w) <= (8.0f + fabsf(logf(w))) * FLT_EPSILON * w))
                fail_msg("row %d, class %d: %.9g against %.9g", r, k, (double)g, (double)w);
            sum += g;
        }
        assert_true(fabs(sum - 1.0) < 1e-5);
    }
    const float ex[6] = {1000, 0, -1000, 50, 50, 50};
    float y[6];
    nn_softmax_infer(y, ex, 2, 3);
    assert_true(y[0] == 1.0f && y[1] == 0.0f && y[2] == 0.0f);
    for (int i = 3; i < 6; i++) assert_true(fabsf(y[i] - 1.0f / 3.0f) < 1e-7f);
}

/* The vector exp against libm: within 1.1 ulp over the range it computes, libm's own bits
 * outside it (underflow, overflow, infinities, NaN), and at most a few floats in a million that
 * round differently from libm's value. */
static void test_exp_many(void **state)
{
    (void)state;
    enum { N = 200003 };
    double *v = malloc(sizeof(double) * N), *e = malloc(sizeof(double) * N);
    assert_non_null(v);
    assert_non_null(e);
    for (int i = 0; i < N; i++) v[i] = -750.0 + 1470.0 * i / (N - 1); /* -750 .. 720 */
    const double special[] = {0.0,     -0.0,      -708.0,   nextafter(-708.0, -1e9), 709.0,
                              nextafter(709.0, 1e9), -745.2, 709.9,     INFINITY,    -INFINITY,
                              NAN,     1e-300,    -1e-17,   0.5 * M_LN2, -0.5 * M_LN2};
    const int ns = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < ns; i++) v[i * 997] = special[i];
    for (int i = 0; i < 4000; i++) v[N - 1 - i] = -10.0 + 10.0 * i / 4000.0; /* softmax's terms */
    nn_exp_many(e, v, N);
    int float_diff = 0;
    for (int i = 0; i < N; i++) {
        const double want = exp(v[i]);
        if (!(v[i] >= -708.0 && v[i] <= 709.0)) {
            if (memcmp(&want, &e[i], sizeof want) != 0)
                fail_msg("exp(%.17g) = %.17g, libm %.17g", v[i], e[i], want);
            continue;
        }
        if (!(fabs(e[i] - want) <= 1.1 * DBL_EPSILON * want))
            fail_msg("exp(%.17g) = %.17g, libm %.17g", v[i], e[i], want);
        float_diff += (float)e[i] != (float)want;
    }
    assert_true(float_diff <= N / 100000);
    free(v);
    free(e);
}

/* Rows taken many at a time give each row's own softmax and lse bits, at any width (one row
 * wider than a group of rows too), temperature, and in place. */
static void test_softmax_rows(void **state)
{
    (void)state;
    const int Ks[] = {1, 3, 10, 37, 256, 300}, Rs[] = {1, 7, 130};
    const double Ts[] = {1.0, 4.0};
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 3; b++)
            for (int t = 0; t < 2; t++) {
                const int K = Ks[a], R = Rs[b];
                const size_t n = (size_t)R * K;
                float *x = malloc(sizeof(float) * n), *p = malloc(sizeof(float) * n),
                      *q = malloc(sizeof(float) * n);
                double *lse = malloc(sizeof(double) * R);
                assert_true(x && p && q && lse);
                tu_fill_uniform(x, n, -40.0f, 40.0f, (unsigned)(7 + a + 10 * b + 100 * t));
                nn_softmax_rows(p, lse, x, R, K, Ts[t]);
                for (int r = 0; r < R; r++) {
                    const double l = nn_softmax_row(q + (size_t)r * K, x + (size_t)r * K, K, Ts[t]);
                    if (l != lse[r]) fail_msg("K %d R %d row %d: lse %.17g, alone %.17g", K, R, r,
                                              lse[r], l);
                    /* against libm, independently: softmax in double, one float rounding */
                    double m = -INFINITY, s = 0.0;
                    for (int k = 0; k < K; k++) m = fmax(m, x[(size_t)r * K + k] / Ts[t]);
                    for (int k = 0; k < K; k++) s += exp(x[(size_t)r * K + k] / Ts[t] - m);
                    for (int k = 0; k < K; k++) {
                        const double w = exp(x[(size_t)r * K + k] / Ts[t] - m) / s;
                        if (!(fabs(p[(size_t)r * K + k] - w) <= 1e-15 + FLT_EPSILON * w))
                            fail_msg("K %d row %d class %d: %.9g, libm %.9g", K, r, k,
                                     (double)p[(size_t)r * K + k], w);
                    }
                }
                assert_memory_equal(p, q, sizeof(float) * n);
                nn_softmax_rows(x, NULL, x, R, K, Ts[t]); /* in place */
                assert_memory_equal(x, q, sizeof(float) * n);
                free(x); free(p); free(q); free(lse);
            }
    /* rows with a NaN, an Inf, all -Inf: as each row alone (NaNs where it gives NaNs) */
    float xs[4 * 3] = {1, NAN, 2, INFINITY, 0, -1, -INFINITY, -INFINITY, -INFINITY, 3, 4, 5};
    float ps[12], qs[12];
    double ls[4];
    nn_softmax_rows(ps, ls, xs, 4, 3, 1.0);
    for (int r = 0; r < 4; r++) {
        const double l = nn_softmax_row(qs + 3 * r, xs + 3 * r, 3, 1.0);
        assert_true(l == ls[r] || (isnan(l) && isnan(ls[r])));
        for (int k = 0; k < 3; k++)
            assert_true(ps[3 * r + k] == qs[3 * r + k] ||
                        (isnan(ps[3 * r + k]) && isnan(qs[3 * r + k])));
    }
    assert_true(ps[9] > 0.0f && ps[11] > ps[10] && ps[10] > ps[9]);
    nn_softmax_rows(ps, ls, xs, 2, 0, 1.0); /* no classes: the log of an empty sum */
    assert_true(ls[0] == -INFINITY && ls[1] == -INFINITY);
    /* a few long rows on two threads, each thread a piece of them: one thread's bits */
    enum { LR = 20, LK = 3000 };
    float *lx = malloc(sizeof(float) * LR * LK), *l1 = malloc(sizeof(float) * LR * LK),
          *l2 = malloc(sizeof(float) * LR * LK);
    assert_true(lx && l1 && l2);
    tu_fill_uniform(lx, (size_t)LR * LK, -20.0f, 20.0f, 21);
    const int threads0 = xd_threads_get();
    xd_threads_set(1);
    nn_softmax_forward(l1, lx, LR, LK);
    xd_threads_set(2);
    assert_true(nn_softmax_piece(LR, 1) == LR / 2);
    nn_softmax_forward(l2, lx, LR, LK);
    xd_threads_set(threads0);
    assert_memory_equal(l1, l2, sizeof(float) * LR * LK);
    free(lx); free(l1); free(l2);
}

static void test_softmax_extremes(void **state)
{
    (void)state;
    float x[6] = {1000, 0, -1000, 50, 50, 50}, y[6], ly[6];
    nn_softmax_forward(y, x, 2, 3);
    nn_logsoftmax_forward(ly, x, 2, 3);
    assert_true(y[0] == 1.0f && y[1] == 0.0f && y[2] == 0.0f);
    for (int i = 3; i < 6; i++) assert_true(fabsf(y[i] - 1.0f / 3.0f) < 1e-7f);
    assert_true(ly[0] == 0.0f && ly[2] == -2000.0f);
    for (int i = 0; i < 6; i++) assert_true(isfinite(ly[i]));
    /* gelu at known points: gelu(1) = 0.8413447, gelu(-1) = -0.1586553 */
    float g[2], gx[2] = {1, -1};
    nn_gelu_forward(g, gx, 2);
    assert_true(fabsf(g[0] - 0.8413447f) < 1e-6f && fabsf(g[1] + 0.1586553f) < 1e-6f);
    /* bilinear upsample x2 of a 1x2 row: half-pixel centres give 1, 1.25, 1.75, 2 */
    float row[2] = {1, 2}, up[8];
    nn_upsample_forward(up, row, 1, 1, 2, 1, 2);
    float want[8] = {1, 1.25f, 1.75f, 2, 1, 1.25f, 1.75f, 2};
    tu_assert_close(up, want, 8, 0, 1e-7, "upsample");
}

// ----------------------------------------------------------------------------------------------
// normalisation

typedef struct {
    int N, C, layer;
    float *x, *g, *b, *y, *r, *mean, *rstd;
} norm_ctx;

static double norm_loss(void *p)
{
    norm_ctx *c = p;
    if (c->layer)
        nn_layernorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, c->N, c->C, 1e-5f);
    else
        nn_batchnorm_forward_train(c->y, c->mean, c->rstd, NULL, NULL, c->x, c->g, c->b, c->N,
                                   c->C, 1e-5f, 0.1f);
    return tu_dot(c->y, c->r, (size_t)c->N * c->C);
}

static void check_norm(int layer)
{
    norm_ctx c = {.N = 6, .C = 4, .layer = layer};
    size_t n = 24, stats = layer ? 6 : 4;
    c.x = alloc_f(n); c.y = alloc_f(n); c.r = alloc_f(n); c.g = alloc_f(4); c.b = alloc_f(4);
    c.mean = alloc_f(stats); c.rstd = alloc_f(stats);
    float *dx = alloc_f(n), *dg = alloc_f(4), *dbeta = alloc_f(4);
    tu_fill_uniform(c.x, n, -2, 2, 30);
    tu_fill_uniform(c.g, 4, 0.5f, 1.5f, 31);
    tu_fill_uniform(c.b, 4, -1, 1, 32);
    tu_fill_uniform(c.r, n, -1, 1, 33);
    norm_loss(&c);
    if (layer) nn_layernorm_backward(dx, dg, dbeta, c.r, c.x, c.mean, c.rstd, c.g, c.N, c.C);
    else nn_batchnorm_backward(dx, dg, dbeta, c.r, c.x, c.mean, c.rstd, c.g, c.N, c.C);
    const char *w = layer ? "layernorm" : "batchnorm(train)";
    tu_check_grad(w, c.x, n, dx, norm_loss, &c, 1e-2, RTOL, ATOL);
    tu_check_grad(w, c.g, 4, dg, norm_loss, &c, 1e-2, RTOL, ATOL);
    tu_check_grad(w, c.b, 4, dbeta, norm_loss, &c, 1e-2, RTOL, ATOL);
    free(c.x); free(c.y); free(c.r); free(c.g); free(c.b); free(c.mean); free(c.rstd);
    free(dx); free(dg); free(dbeta);
}

static void test_norms(void **state)
{
    (void)state;
    check_norm(0);
    check_norm(1);
    /* running statistics: momentum 0.1, unbiased variance, as PyTorch */
    float x[4] = {1, 2, 3, 6}, y[4], mean[1], rstd[1], rm[1] = {0}, rv[1] = {1}, g[1] = {1},
          b[1] = {0};
    nn_batchnorm_forward_train(y, mean, rstd, rm, rv, x, g, b, 4, 1, 1e-5f, 0.1f);
    assert_true(fabsf(mean[0] - 3.0f) < 1e-6f);
    assert_true(fabsf(rm[0] - 0.3f) < 1e-6f);
    /* biased var = 3.5, unbiased = 14/3 */
    assert_true(fabsf(rv[0] - (0.9f + 0.1f * 14.0f / 3.0f)) < 1e-6f);
    assert_true(fabsf(rstd[0] - 1.0f / sqrtf(3.5f + 1e-5f)) < 1e-6f);
    float ye[4];
    nn_batchnorm_forward_eval(ye, x, g, b, rm, rv, 4, 1, 1e-5f);
    assert_true(fabsf(ye[0] - (1.0f - 0.3f) / sqrtf(rv[0] + 1e-5f)) < 1e-6f);
}

// ----------------------------------------------------------------------------------------------
// dropout, embedding bag, fake-quant

static void test_dropout(void **state)
{
    (void)state;
    enum { B = 64, D = 100 };
    float *x = alloc_f(B * D), *y = alloc_f(B * D), *mask = alloc_f(B * D), *dx = alloc_f(B * D),
          *y2 = alloc_f(B * D), *mask2 = alloc_f(B * D);
    tu_fill_uniform(x, B * D, -1, 1, 40);
    uint64_t ex[B];
    for (int i = 0; i < B; i++) ex[i] = 1000 + (uint64_t)i;
    nn_dropout_forward(y, mask, x, B, D, 0.25f, 7, ex, 3, 1);
    int zeros = 0;
    for (int i = 0; i < B * D; i++) {
        assert_true(mask[i] == 0.0f || fabsf(mask[i] - 1.0f / 0.75f) < 1e-6f);
        assert_true(y[i] == x[i] * mask[i]);
        zeros += mask[i] == 0.0f;
    }
    assert_true(zeros > 1400 && zeros < 1800); /* 25% of 6400 = 1600 */
    /* the same example in another row position gets the same mask */
    uint64_t ex2[B];
    for (int i = 0; i < B; i++) ex2[i] = ex[(i + 5) % B];
    nn_dropout_forward(y2, mask2, x, B, D, 0.25f, 7, ex2, 3, 1);
    assert_memory_equal(mask2, mask + 5 * D, sizeof(float) * D);
    nn_dropout_backward(dx, x, mask, B * D);
    for (int i = 0; i < B * D; i++) assert_true(dx[i] == x[i] * mask[i]);
    free(x); free(y); free(mask); free(dx); free(y2); free(mask2);
}

typedef struct {
    int32_t ids[3 * 4];
    float *table, *y, *r;
    nn_bag_mode mode;
} bag_ctx;

static double bag_loss(void *p)
{
    bag_ctx *c = p;
    nn_embbag_forward(c->y, c->ids, c->table, 3, 4, 5, c->mode);
    return tu_dot(c->y, c->r, 15);
}

static void test_embbag(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        bag_ctx c = {.ids = {0, 3, 3, -1, 5, -1, -1, -1, -1, -1, -1, -1}, .mode = (nn_bag_mode)mode};
        c.table = alloc_f(6 * 5); c.y = alloc_f(15); c.r = alloc_f(15);
        float *dt = alloc_f(30);
        tu_fill_uniform(c.table, 30, -1, 1, 50);
        tu_fill_uniform(c.r, 15, -1, 1, 51);
        bag_loss(&c);
        /* row 0 = (t0 + 2 t3) / 3 in mean mode; row 2 (all padding) = 0 */
        float sc = mode == NN_BAG_MEAN ? 1.0f / 3.0f : 1.0f;
        for (int d = 0; d < 5; d++) {
            assert_true(fabsf(c.y[d] - sc * (c.table[d] + 2 * c.table[15 + d])) < 1e-6f);
            assert_true(c.y[10 + d] == 0.0f);
        }
        nn_embbag_backward(dt, c.r, c.ids, 3, 4, 5, c.mode);
        tu_check_grad("embbag", c.table, 30, dt, bag_loss, &c, 1e-2, RTOL, ATOL);
        free(c.table); free(c.y); free(c.r); free(dt);
    }
}

static void test_fakequant(void **state)
{
    (void)state;
    float x[5] = {-1.0f, 0.5f, 0.26f, 0.0f, 0.9f}, y[5], d[5] = {0}, g[5] = {1, 2, 3, 4, 5};
    float s = nn_fakequant_forward(y, x, 5, 2); /* 2 bits: levels -1, 0, 1 times scale 1 */
    assert_true(s == 1.0f);
    float want[5] = {-1, 0, 0, 0, 1};
    tu_assert_close(y, want, 5, 0, 0, "fakequant 2 bits");
    s = nn_fakequant_forward(y, x, 5, 8);
    assert_true(fabsf(s - 1.0f / 127.0f) < 1e-9f);
    for (int i = 0; i < 5; i++) assert_true(fabsf(y[i] - x[i]) <= 0.5f * s + 1e-7f);
    nn_fakequant_backward(d, g, 5);
    tu_assert_close(d, g, 5, 0, 0, "fakequant straight-through");
}

/* Weights packed once for inference (nn_linear_pack, nn_conv_pack): the same bits as the layers
 * that pack them on every call, and the plain loops' values; convolutions through the windows
 * read in place (one input channel, a few, many with K in two blocks; strides, paddings, maps of
 * one pixel, more filters than one panel, with and without bias; the kernel for few input
 * channels on the shapes it takes and declines), one whose padded image does not
 * fit its scratch (unfolded as before), a pointwise one, and the fused ReLU and pooling (also
 * without the argmax and the ReLU's output, as inference runs it). */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_exp_many),
        cmocka_unit_test(test_softmax_rows),
        cmocka_unit_test(test_softmax_extremes),
        cmocka_unit_test(test_softmax_infer),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_embbag),
        cmocka_unit_test(test_fakequant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
