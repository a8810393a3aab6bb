/* nn/layers, the layers with weights or windows (conv2d, linear, pooling): every backward against
 * central finite differences, the fast convolution against the direct one (stride and padding
 * corners), the first-write backwards and fused forms bit for bit against the plain layers, and
 * packed weights. The other layers are in test_layers_pointwise.c. */
#include "tests/support/testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "nn/gemm.h"
#include "nn/layers.h"

#define STEP 1e-2
#define RTOL 1e-2
#define ATOL 1e-3

static float *alloc_f(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

// ----------------------------------------------------------------------------------------------
// conv2d

typedef struct {
    nn_conv_shape s;
    float *x, *w, *b, *y, *r, *cols, *wext;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    nn_conv2d_forward(c->y, c->cols, c->wext, c->x, c->w, NULL, NULL, c->b, &c->s);
    return tu_dot(c->y, c->r, (size_t)c->s.B * c->s.OH * c->s.OW * c->s.OC);
}

static void check_conv(int B, int Hh, int W, int C, int OC, int K, int stride, int pad, int bias)
{
    conv_ctx c = {.s = {.B = B, .H = Hh, .W = W, .C = C, .OC = OC, .KH = K, .KW = K,
                        .stride = stride, .pad = pad, .bias = bias}};
    assert_int_equal(nn_conv_shape_init(&c.s), 0);
    size_t nx = (size_t)B * Hh * W * C, nw = (size_t)OC * K * K * C,
           ny = (size_t)B * c.s.OH * c.s.OW * OC, nc = nn_conv_cols_size(&c.s);
    c.x = alloc_f(nx);
    c.w = alloc_f(nw);
    c.b = alloc_f(OC);
    c.y = alloc_f(ny);
    c.r = alloc_f(ny);
    c.cols = alloc_f(nc);
    c.wext = alloc_f(nn_conv_wext_size(&c.s));
    float *yref = alloc_f(ny), *dx = alloc_f(nx), *dw = alloc_f(nw), *db = alloc_f(OC),
          *dcols = alloc_f(nc);
    tu_fill_uniform(c.x, nx, -1, 1, 1);
    tu_fill_uniform(c.w, nw, -1, 1, 2);
    tu_fill_uniform(c.b, OC, -1, 1, 3);
    tu_fill_uniform(c.r, ny, -1, 1, 4);

    float *bias_buf = c.b;
    if (!bias) c.b = NULL;
    nn_conv2d_forward(c.y, c.cols, c.wext, c.x, c.w, NULL, NULL, c.b, &c.s);
    nn_conv2d_forward_ref(yref, c.x, c.w, c.b, &c.s);
    char what[128];
    snprintf(what, sizeof what, "conv B%d %dx%dx%d->%d k%d s%d p%d bias%d", B, Hh, W, C, OC, K,
             stride, pad, bias);
    tu_assert_close(c.y, yref, ny, 1e-5, 1e-5, what);

    /* backward adds: start from a known non-zero value and check it is kept */
    for (size_t i = 0; i < nx; i++) dx[i] = 0.5f;
    for (size_t i = 0; i < nw; i++) dw[i] = 0.25f;
    nn_conv2d_backward(dx, dw, c.b ? db : NULL, dcols, c.wext, c.r, c.cols, 1, c.x, c.w, &c.s);
    for (size_t i = 0; i < nx; i++) dx[i] -= 0.5f;
    for (size_t i = 0; i < nw; i++) dw[i] -= 0.25f;
    tu_check_grad(what, c.x, nx, dx, conv_loss, &c, STEP, RTOL, ATOL);
    tu_check_grad(what, c.w, nw, dw, conv_loss, &c, STEP, RTOL, ATOL);
    if (c.b) tu_check_grad(what, c.b, OC, db, conv_loss, &c, STEP, RTOL, ATOL);
    free(c.x); free(c.w); free(bias_buf); free(c.y); free(c.r); free(c.cols); free(c.wext);
    free(yref); free(dx); free(dw); free(db); free(dcols);
}

static void test_conv2d(void **state)
{
    (void)state;
    for (int bias = 0; bias < 2; bias++) {
        check_conv(2, 5, 5, 3, 4, 3, 1, 1, bias);   /* same padding */
        check_conv(2, 6, 5, 2, 3, 3, 2, 1, bias);   /* stride 2, odd width */
        check_conv(1, 7, 7, 1, 2, 3, 2, 0, bias);   /* no padding, one input channel */
        check_conv(2, 4, 6, 3, 5, 1, 1, 0, bias);   /* pointwise: no im2col */
        check_conv(1, 4, 4, 2, 3, 5, 1, 2, bias);   /* kernel wider than half the image */
        check_conv(1, 3, 3, 2, 1, 3, 3, 2, bias);   /* stride > 1, heavy padding: windows at edges */
        check_conv(1, 5, 5, 2, 2, 2, 2, 0, bias);   /* even kernel */
        check_conv(1, 2, 2, 1, 2, 5, 1, 2, bias);   /* kernel larger than the image */
    }
}

static void test_conv2d_rejects_bad_shapes(void **state)
{
    (void)state;
    nn_conv_shape s = {.B = 1, .H = 2, .W = 2, .C = 1, .OC = 1, .KH = 3, .KW = 3, .stride = 1};
    assert_int_equal(nn_conv_shape_init(&s), -1);
    s.pad = 1;
    assert_int_equal(nn_conv_shape_init(&s), 0);
    assert_int_equal(s.OH, 2);
    s.stride = 0;
    assert_int_equal(nn_conv_shape_init(&s), -1);
}

// ----------------------------------------------------------------------------------------------
// linear

typedef struct {
    int B, C, OC;
    float *x, *w, *b, *y, *r;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    nn_linear_forward(c->y, c->x, c->w, NULL, c->b, c->B, c->C, c->OC);
    return tu_dot(c->y, c->r, (size_t)c->B * c->OC);
}

static void test_linear(void **state)
{
    (void)state;
    lin_ctx c = {.B = 3, .C = 7, .OC = 4};
    c.x = alloc_f(21); c.w = alloc_f(28); c.b = alloc_f(4); c.y = alloc_f(12); c.r = alloc_f(12);
    float *dx = alloc_f(21), *dw = alloc_f(28), *db = alloc_f(4);
    tu_fill_uniform(c.x, 21, -1, 1, 5);
    tu_fill_uniform(c.w, 28, -1, 1, 6);
    tu_fill_uniform(c.b, 4, -1, 1, 7);
    tu_fill_uniform(c.r, 12, -1, 1, 8);
    lin_loss(&c);
    /* exact check of one output against the formula */
    double y0 = c.b[1];
    for (int k = 0; k < 7; k++) y0 += (double)c.x[7 + k] * c.w[7 + k];
    assert_true(fabs(c.y[4 + 1] - y0) < 1e-5);
    nn_linear_backward(dx, dw, db, c.r, c.x, c.w, 3, 7, 4);
    tu_check_grad("linear dx", c.x, 21, dx, lin_loss, &c, STEP, RTOL, ATOL);
    tu_check_grad("linear dw", c.w, 28, dw, lin_loss, &c, STEP, RTOL, ATOL);
    tu_check_grad("linear db", c.b, 4, db, lin_loss, &c, STEP, RTOL, ATOL);
    free(c.x); free(c.w); free(c.b); free(c.y); free(c.r); free(dx); free(dw); free(db);
}

// ----------------------------------------------------------------------------------------------
// pooling

typedef struct {
    nn_pool_shape s;
    int max;
    float *x, *y, *r;
    int32_t *am;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    if (c->max) nn_maxpool_forward(c->y, c->am, c->x, &c->s);
    else nn_avgpool_forward(c->y, c->x, &c->s);
    return tu_dot(c->y, c->r, (size_t)c->s.B * c->s.OH * c->s.OW * c->s.C);
}

static void check_pool(int max, int Hh, int W, int k, int stride, float shift)
{
    pool_ctx c = {.s = {.B = 2, .H = Hh, .W = W, .C = 3, .k = k, .stride = stride}, .max = max};
    assert_int_equal(nn_pool_shape_init(&c.s), 0);
    size_t nx = (size_t)2 * Hh * W * 3, ny = (size_t)2 * c.s.OH * c.s.OW * 3;
    c.x = alloc_f(nx); c.y = alloc_f(ny); c.r = alloc_f(ny);
    c.am = calloc(ny, sizeof(int32_t));
    float *dx = alloc_f(nx);
    /* distinct values at least 0.1 apart, shuffled, so no max is within h of a tie; shifted
     * below zero, windows whose maximum is not positive (flagged in the argmax) take their
     * gradient all the same */
    for (size_t i = 0; i < nx; i++) c.x[i] = 0.1f * (float)((i * 37) % nx) - shift;
    tu_fill_uniform(c.r, ny, -1, 1, 9);
    pool_loss(&c);
    int flagged = 0;
    for (size_t i = 0; max && i < ny; i++) flagged += c.am[i] < 0;
    if ((flagged > 0) != (max && shift > 0.0f))
        fail_msg("pool %dx%d k%d, shift %g: %d windows flagged", Hh, W, k, (double)shift, flagged);
    if (max) nn_maxpool_backward(dx, c.r, c.am, &c.s);
    else nn_avgpool_backward(dx, c.r, &c.s);
    tu_check_grad(max ? "maxpool" : "avgpool", c.x, nx, dx, pool_loss, &c, 1e-2, RTOL, ATOL);
    free(c.x); free(c.y); free(c.r); free(c.am); free(dx);
}

static void test_pooling(void **state)
{
    (void)state;
    check_pool(1, 4, 4, 2, 2, 0.0f);
    check_pool(1, 5, 7, 3, 2, 0.0f); /* overlapping windows, ragged edge */
    check_pool(1, 4, 4, 2, 2, 6.0f); /* most maxima negative */
    check_pool(1, 5, 7, 3, 2, 19.0f);
    check_pool(0, 4, 4, 2, 2, 0.0f);
    check_pool(0, 5, 7, 3, 2, 0.0f);
    /* max pool picks the right value */
    float x[4] = {1, 5, 3, 2}, y[1];
    int32_t am[1];
    nn_pool_shape s = {.B = 1, .H = 2, .W = 2, .C = 1, .k = 2, .stride = 2};
    nn_pool_shape_init(&s);
    nn_maxpool_forward(y, am, x, &s);
    assert_true(y[0] == 5.0f);
    assert_int_equal(am[0], 1);
    /* ties keep the first maximum; a NaN propagates */
    float t[4] = {2, 7, 7, 1}, n[4] = {1, NAN, 9, 2};
    nn_maxpool_forward(y, am, t, &s);
    assert_int_equal(am[0], 1);
    nn_maxpool_forward(y, am, n, &s);
    assert_true(isnan(y[0]));
    /* a maximum that is not positive (NaN, zero, negative) is flagged in its argmax */
    assert_int_equal(am[0], 1 | NN_POOL_NOT_POSITIVE);
    float z[4] = {-3, 0, -0.0f, -1}, neg[4] = {-3, -2, -1, -4};
    nn_maxpool_forward(y, am, z, &s);
    assert_int_equal(am[0], 1 | NN_POOL_NOT_POSITIVE);
    nn_maxpool_forward(y, am, neg, &s);
    assert_int_equal(am[0], 2 | NN_POOL_NOT_POSITIVE);
    assert_int_equal(am[0] & NN_POOL_OFFSET, 2);
}

// ----------------------------------------------------------------------------------------------
// first-write backwards and the fused relu -> maxpool, against the plain layers, bit for bit

static void assert_same_bits(const float *a, const float *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s: element %zu differs: %a against %a", what, i, (double)a[i], (double)b[i]);
}

/* Values that test the corners: exact zeros of both signs, ties, NaN-free. */
static void fill_corners(float *x, size_t n, uint64_t seed)
{
    tu_fill_uniform(x, n, -1, 1, seed);
    for (size_t i = 0; i < n; i += 7) x[i] = (i / 7) % 2 ? -0.0f : 0.0f;
    for (size_t i = 3; i < n; i += 11) x[i] = 0.5f;
}

/* Garbage, so a `_first` kernel that skips an element shows. */
static void fill_garbage(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = 1e30f;
}

/* The bias gradient summed a run of channels side by side: each channel's sum is still one chain
 * down its column in row order (the bits of a loop per channel), added into what db held; at one,
 * two and three threads, channel counts around the run length, the last four big enough to be
 * split among the threads. */
static void test_bias_grad_column_chains(void **state)
{
    (void)state;
    /* the last four split: at two threads into runs of 64 + 64 + 2, 32 + 32, 32 + 8 and 16 + 16
     * channels, at three into 48 + 48 + 34, 32 + 32, 16 + 16 + 8 and 16 + 16 */
    static const int shapes[][2] = {{1, 1},     {37, 10},  {5, 64},  {37, 65},  {2, 200},
                                    {300, 130}, {600, 64}, {900, 40}, {1100, 32}};
    const int threads0 = xd_threads_get();
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int B = shapes[t][0], OC = shapes[t][1];
        float *dy = alloc_f((size_t)B * OC), *db0 = alloc_f((size_t)OC), *ref = alloc_f((size_t)OC),
              *db = alloc_f((size_t)OC);
        tu_fill_uniform(dy, (size_t)B * OC, -1, 1, 11 + (unsigned)t);
        tu_fill_uniform(db0, (size_t)OC, -1, 1, 31 + (unsigned)t);
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int i = 0; i < B; i++) s += dy[(size_t)i * OC + o];
            ref[o] = db0[o] + s;
        }
        for (int threads = 1; threads <= 3; threads++) {
            xd_threads_set(threads);
            memcpy(db, db0, sizeof(float) * (size_t)OC);
            nn_bias_grad(db, dy, B, OC);
            assert_same_bits(db, ref, (size_t)OC, "bias gradient");
        }
        free(dy); free(db0); free(ref); free(db);
    }
    xd_threads_set(threads0);
}

/* shift: the inputs but the corners' zeros and ties moved down by it, so that larger windows
 * too have maxima that are not positive (the ReLU then passes no gradient there) */
static void check_pool_fused(int Hh, int W, int k, int stride, float shift)
{
    nn_pool_shape s = {.B = 3, .H = Hh, .W = W, .C = 5, .k = k, .stride = stride};
    assert_int_equal(nn_pool_shape_init(&s), 0);
    size_t nx = (size_t)s.B * Hh * W * s.C, ny = (size_t)s.B * s.OH * s.OW * s.C;
    float *x = alloc_f(nx), *r = alloc_f(nx), *r2 = alloc_f(nx), *y = alloc_f(ny),
          *y2 = alloc_f(ny), *dy = alloc_f(ny), *dr = alloc_f(nx), *dx = alloc_f(nx),
          *dx2 = alloc_f(nx);
    int32_t *am = calloc(ny, sizeof(int32_t)), *am2 = calloc(ny, sizeof(int32_t));
    fill_corners(x, nx, 31);
    for (size_t i = 0; i < nx; i++)
        if (x[i] != 0.0f && x[i] != 0.5f) x[i] -= shift;
    fill_corners(dy, ny, 32);
    char what[96];
    snprintf(what, sizeof what, "relu+maxpool %dx%d k%d s%d", Hh, W, k, stride);

    /* forward: relu then maxpool */
    nn_relu_forward(r, x, nx);
    nn_maxpool_forward(y, am, r, &s);
    nn_relu_maxpool_forward(r2, y2, am2, x, &s);
    assert_same_bits(r2, r, nx, what);
    assert_same_bits(y2, y, ny, what);
    assert_int_equal(memcmp(am2, am, ny * sizeof(int32_t)), 0);
    /* flagged exactly where the window's maximum is not positive (zero, some windows of each) */
    int flagged = 0;
    for (size_t i = 0; i < ny; i++) {
        assert_int_equal(am[i] < 0, !(y[i] > 0.0f));
        flagged += am[i] < 0;
    }
    assert_true(flagged > 0);
    /* the ReLU not written: the pool takes it from x, the same maximum and argmax */
    fill_garbage(y2, ny);
    memset(am2, 0xff, ny * sizeof(int32_t));
    nn_relu_maxpool_forward(NULL, y2, am2, x, &s);
    assert_same_bits(y2, y, ny, what);
    assert_int_equal(memcmp(am2, am, ny * sizeof(int32_t)), 0);

    /* maxpool's first write against zeroing and adding */
    memset(dr, 0, nx * sizeof(float));
    nn_maxpool_backward(dr, dy, am, &s);
    fill_garbage(dx2, nx);
    nn_maxpool_backward_first(dx2, dy, am, &s);
    assert_same_bits(dx2, dr, nx, what);

    /* relu's first write, then the fused pair, against the two plain backwards */
    memset(dx, 0, nx * sizeof(float));
    nn_relu_backward(dx, dr, x, nx);
    fill_garbage(dx2, nx);
    nn_relu_backward_first(dx2, dr, x, nx);
    assert_same_bits(dx2, dx, nx, what);
    fill_garbage(dx2, nx);
    nn_relu_maxpool_backward_first(dx2, dy, am, &s);
    assert_same_bits(dx2, dx, nx, what);
    free(x); free(r); free(r2); free(y); free(y2); free(dy); free(dr); free(dx); free(dx2);
    free(am); free(am2);
}

/* A forward with packed weights reads the windows in place and leaves cols unfolded (returns 0);
 * the weight gradient then reads them in place from padded copies of the images
 * (nn_sgemm_gather_rows), or, on one input channel, from the image (nn_sgemm_conv_dw_row), with
 * cols as its scratch: the same bits as nn_sgemm
 * over the plainly unfolded windows, with and without a bias (added into what dw held), at one
 * and two threads. */
static void check_conv_unfold_late(const nn_conv_shape *s0, const float *x, const float *w,
                                   const float *b, const float *dy)
{
    for (int bias = 1; bias >= 0; bias--) {
        nn_conv_shape s = *s0;
        s.bias = bias;
        const int M = s.B * s.OH * s.OW, K = s.KH * s.KW * s.C, N = K + bias;
        const size_t nw = (size_t)s.OC * K, ny = (size_t)M * s.OC;
        float *cols = alloc_f(nn_conv_cols_size(&s)), *wext = alloc_f(nn_conv_wext_size(&s) + 1),
              *wp = alloc_f(nn_conv_packed_size(&s)), *y = alloc_f(ny), *dw = alloc_f(nw),
              *db = alloc_f(s.OC), *g = alloc_f((size_t)s.OC * N), *dw0 = alloc_f(nw),
              *ref = alloc_f(nw), *dbref = alloc_f(s.OC);
        const float *bb = bias ? b : NULL;
        /* the reference: [dw | db] = dy^T @ [cols | 1] by nn_sgemm, added into dw0 */
        fill_corners(dw0, nw, 44);
        nn_im2col(cols, x, &s);
        nn_sgemm(1, 0, s.OC, N, M, 1.0f, dy, s.OC, cols, N, 0.0f, g, N);
        for (int o = 0; o < s.OC; o++) {
            for (int k = 0; k < K; k++)
                ref[(size_t)o * K + k] = dw0[(size_t)o * K + k] + g[(size_t)o * N + k];
            if (bias) dbref[o] = g[(size_t)o * N + K];
        }
        if (!bias) { /* no [dw | db] then: the product adds straight into dw */
            memcpy(ref, dw0, sizeof(float) * nw);
            nn_sgemm(1, 0, s.OC, K, M, 1.0f, dy, s.OC, cols, K, 1.0f, ref, K);
        }
        nn_conv_pack(wp, wext, w, bb, &s);
        const int threads0 = xd_threads_get();
        for (int threads = 1; threads <= 2; threads++) {
            xd_threads_set(threads);
            fill_garbage(cols, nn_conv_cols_size(&s));
            const int unfolded = nn_conv2d_forward(y, cols, wext, x, w, wp, NULL, bb, &s);
            assert_int_equal(unfolded, 0); /* the shapes here all fit a padded image in cols */
            memcpy(dw, dw0, sizeof(float) * nw);
            memset(db, 0, sizeof(float) * (size_t)s.OC);
            nn_conv2d_backward(NULL, dw, bias ? db : NULL, NULL, wext, dy, cols, unfolded, x, w,
                               &s);
            assert_same_bits(dw, ref, nw, "conv2d weight gradient, windows not unfolded");
            if (bias) assert_same_bits(db, dbref, (size_t)s.OC, "conv2d bias gradient");
        }
        xd_threads_set(threads0);
        free(cols); free(wext); free(wp); free(y); free(dw); free(db); free(g); free(dw0);
        free(ref); free(dbref);
    }
}

/* A stride-1 convolution's input gradient as the turned convolution gives it: the output
 * gradient zero-padded by KH - 1 - pad, its windows unfolded, times the turned weights (row
 * (ky, kx, o) is w[o][KH - 1 - ky][KW - 1 - kx][.]) by nn_sgemm. */
static void dinp_turned_ref(float *dx, const float *dy, const float *w, const nn_conv_shape *s)
{
    nn_conv_shape d = {.B = s->B, .H = s->OH, .W = s->OW, .C = s->OC, .OC = s->C, .KH = s->KH,
                       .KW = s->KW, .stride = 1, .pad = s->KH - 1 - s->pad};
    assert_int_equal(nn_conv_shape_init(&d), 0);
    assert_true(d.OH == s->H && d.OW == s->W);
    const int K = d.KH * d.KW * d.C, M = d.B * d.OH * d.OW, C = s->C;
    float *cols = alloc_f((size_t)M * K), *wt = alloc_f((size_t)K * C);
    for (int ky = 0, k = 0; ky < s->KH; ky++)
        for (int kx = 0; kx < s->KW; kx++)
            for (int o = 0; o < s->OC; o++, k++)
                for (int c = 0; c < C; c++)
                    wt[(size_t)k * C + c] = w[(((size_t)o * s->KH + (s->KH - 1 - ky)) * s->KW +
                                               (s->KW - 1 - kx)) * C + c];
    nn_im2col(cols, dy, &d);
    nn_sgemm(0, 0, M, C, K, 1.0f, cols, K, wt, C, 0.0f, dx, C);
    free(cols); free(wt);
}

static void test_first_write_and_fused(void **state)
{
    (void)state;
    check_pool_fused(4, 4, 2, 2, 0.0f);  /* windows tile the image */
    check_pool_fused(7, 5, 2, 2, 0.0f);  /* ragged edge: last row and column in no window */
    check_pool_fused(5, 7, 3, 2, 0.6f);  /* overlapping windows: scatter */
    check_pool_fused(6, 6, 3, 3, 0.6f);

    /* conv2d: unfolding and folding back in step with the products' row blocks (or, at stride
     * 1, the input gradient as a convolution with the turned kernel), and the first write (each
     * image zeroed just before its fold), against the plain im2col, col2im and zeroing.
     * Products large enough for several blocks, some cutting an image in two. */
    static const int shapes[][7] = {{2, 5, 5, 3, 4, 3, 1},    {2, 6, 5, 2, 3, 3, 2},
                                    {2, 4, 6, 3, 5, 1, 1},    {24, 14, 14, 8, 16, 3, 1},
                                    {32, 28, 28, 1, 8, 3, 1}, {5, 9, 11, 4, 40, 3, 2},
                                    {1, 8, 8, 16, 256, 3, 1},  /* one image, many outputs */
                                    {6, 28, 28, 1, 32, 3, 1}, {2, 5, 7, 1, 16, 3, 1},
                                    {3, 6, 6, 1, 48, 3, 1},  /* one channel: dw from the image */
                                    {1, 20, 20, 2, 8, 3, 1},  /* one image, two K blocks */
                                    {2, 7, 6, 3, 5, 5, 1}};   /* 5 x 5 windows, padded by 2 */
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int *q = shapes[t];
        nn_conv_shape s = {.B = q[0], .H = q[1], .W = q[2], .C = q[3], .OC = q[4], .KH = q[5],
                           .KW = q[5], .stride = q[6], .pad = q[5] / 2, .bias = 1};
        assert_int_equal(nn_conv_shape_init(&s), 0);
        size_t nx = (size_t)s.B * s.H * s.W * s.C, nw = (size_t)s.OC * s.KH * s.KW * s.C,
               ny = (size_t)s.B * s.OH * s.OW * s.OC, nc = nn_conv_cols_size(&s);
        float *x = alloc_f(nx), *w = alloc_f(nw), *b = alloc_f(s.OC), *y = alloc_f(ny),
              *dy = alloc_f(ny), *cols = alloc_f(nc), *dcols = alloc_f(nc),
              *wext = alloc_f(nn_conv_wext_size(&s)), *dx = alloc_f(nx), *dx2 = alloc_f(nx),
              *dw = alloc_f(nw), *db = alloc_f(s.OC);
        fill_corners(x, nx, 41);
        fill_corners(w, nw, 42);
        fill_corners(dy, ny, 43);
        nn_conv2d_forward(y, cols, wext, x, w, NULL, NULL, b, &s);
        if (nc) {
            /* unfolded block by block before each product: the plain im2col and one product */
            const int M = s.B * s.OH * s.OW, K = s.KH * s.KW * s.C;
            float *cols2 = alloc_f(nc), *y2 = alloc_f(ny);
            nn_im2col(cols2, x, &s);
            assert_same_bits(cols, cols2, nc, "conv2d unfolding");
            nn_sgemm(0, 1, M, s.OC, K + 1, 1.0f, cols2, K + 1, wext, K + 1, 0.0f, y2, s.OC);
            assert_same_bits(y, y2, ny, "conv2d forward");
            free(cols2); free(y2);
        }
        {
            /* conv, relu and max pooling in one: against the three layers */
            nn_pool_shape ps = {.B = s.B, .H = s.OH, .W = s.OW, .C = s.OC, .k = 2, .stride = 2};
            assert_int_equal(nn_pool_shape_init(&ps), 0);
            size_t np = (size_t)ps.B * ps.OH * ps.OW * ps.C;
            float *y2 = alloc_f(ny), *r = alloc_f(ny), *r2 = alloc_f(ny), *p = alloc_f(np),
                  *p2 = alloc_f(np);
            int32_t *am = calloc(np, sizeof(int32_t)), *am2 = calloc(np, sizeof(int32_t));
            nn_relu_forward(r, y, ny);
            nn_maxpool_forward(p, am, r, &ps);
            nn_conv2d_relu_maxpool_forward(y2, cols, wext, x, w, NULL, NULL, b, &s, r2, p2, am2, &ps, 1,
                                           NULL);
            assert_same_bits(y2, y, ny, "conv+relu+maxpool: conv");
            assert_same_bits(r2, r, ny, "conv+relu+maxpool: relu");
            assert_same_bits(p2, p, np, "conv+relu+maxpool: pool");
            assert_int_equal(memcmp(am2, am, np * sizeof(int32_t)), 0);
            free(y2); free(r); free(r2); free(p); free(p2); free(am); free(am2);
        }
        nn_conv2d_backward(dx, dw, db, dcols, wext, dy, cols, 1, x, w, &s);
        if (nc) check_conv_unfold_late(&s, x, w, b, dy);
        if (nc && s.stride == 1 && s.pad <= s.KH - 1) {
            /* stride 1: the turned convolution's windows read in place, against them unfolded */
            float *dx3 = alloc_f(nx), *dx4 = alloc_f(nx);
            dinp_turned_ref(dx3, dy, w, &s);
            assert_same_bits(dx, dx3, nx, "conv2d input gradient, turned kernel");
            /* added to what dinp holds */
            fill_corners(dx4, nx, 45);
            for (size_t i = 0; i < nx; i++) dx2[i] = dx4[i] + dx3[i];
            nn_conv2d_backward(dx4, dw, db, dcols, wext, dy, cols, 1, x, w, &s);
            assert_same_bits(dx4, dx2, nx, "conv2d input gradient added in");
            free(dx3); free(dx4);
        } else if (nc) {
            /* folded back block by block: one product, then the plain col2im */
            const int M = s.B * s.OH * s.OW, K = s.KH * s.KW * s.C;
            float *dcols2 = alloc_f((size_t)M * K), *dx3 = alloc_f(nx);
            nn_sgemm(0, 0, M, K, s.OC, 1.0f, dy, s.OC, w, K, 0.0f, dcols2, K);
            nn_col2im(dx3, dcols2, &s);
            assert_same_bits(dx, dx3, nx, "conv2d input gradient");
            free(dcols2); free(dx3);
        }
        fill_garbage(dx2, nx);
        nn_conv2d_backward_first(dx2, dw, db, dcols, wext, dy, cols, 1, x, w, &s);
        assert_same_bits(dx2, dx, nx, "conv2d first write");
        free(x); free(w); free(b); free(y); free(dy); free(cols); free(dcols); free(wext);
        free(dx); free(dx2); free(dw); free(db);
    }

    /* the input gradient at stride 1 with the other paddings the turned kernel takes (0 and
     * KH - 1), and, with windows that are not square or padded past KH - 1, folded back as
     * before: against the turned windows unfolded, or the plain col2im */
    static const int pads[][3] = {{3, 3, 0}, {3, 3, 2}, {5, 5, 0}, {5, 5, 4}, {3, 1, 1}, {3, 3, 3}};
    for (size_t t = 0; t < sizeof pads / sizeof pads[0]; t++) {
        nn_conv_shape s = {.B = 2, .H = 6, .W = 5, .C = 3, .OC = 4, .KH = pads[t][0],
                           .KW = pads[t][1], .stride = 1, .pad = pads[t][2], .bias = 1};
        assert_int_equal(nn_conv_shape_init(&s), 0);
        const int M = s.B * s.OH * s.OW, K = s.KH * s.KW * s.C;
        size_t nx = (size_t)s.B * s.H * s.W * s.C, nw = (size_t)s.OC * K, ny = (size_t)M * s.OC,
               nc = nn_conv_cols_size(&s);
        float *x = alloc_f(nx), *w = alloc_f(nw), *dy = alloc_f(ny), *cols = alloc_f(nc),
              *dcols = alloc_f(nc), *wext = alloc_f(nn_conv_wext_size(&s)), *dx = alloc_f(nx),
              *ref = alloc_f(nx), *dw = alloc_f(nw), *db = alloc_f(s.OC);
        fill_corners(x, nx, 51);
        fill_corners(w, nw, 52);
        fill_corners(dy, ny, 53);
        nn_im2col(cols, x, &s);
        fill_garbage(dx, nx);
        nn_conv2d_backward_first(dx, dw, db, dcols, wext, dy, cols, 1, x, w, &s);
        if (s.KH == s.KW && s.pad <= s.KH - 1) {
            dinp_turned_ref(ref, dy, w, &s);
        } else {
            float *d2 = alloc_f((size_t)M * K);
            nn_sgemm(0, 0, M, K, s.OC, 1.0f, dy, s.OC, w, K, 0.0f, d2, K);
            nn_col2im(ref, d2, &s);
            free(d2);
        }
        assert_same_bits(dx, ref, nx, "conv2d input gradient, other paddings");
        free(x); free(w); free(dy); free(cols); free(dcols); free(wext); free(dx); free(ref);
        free(dw); free(db);
    }

    /* add: 0 + src */
    float src[4] = {-0.0f, 0.0f, 1.5f, -2.0f}, dst[4] = {1e30f, 1e30f, 1e30f, 1e30f},
          ref[4] = {0};
    nn_add_inplace(ref, src, 4);
    nn_add_first(dst, src, 4);
    assert_same_bits(dst, ref, 4, "add first write");
}

static void test_packed_weights(void **state)
{
    (void)state;
    static const int convs[][9] = {
        /* B, H, W, C, OC, k, stride, pad, bias */
        {1, 28, 28, 1, 32, 3, 1, 1, 1}, {3, 14, 14, 32, 64, 3, 1, 1, 1},
        {2, 32, 32, 3, 16, 3, 1, 1, 1},  {2, 9, 11, 50, 40, 3, 2, 1, 0},
        {1, 1, 1, 5, 70, 3, 1, 1, 1},    {2, 7, 5, 2, 3, 5, 1, 2, 1},
        {2, 13, 12, 4, 9, 2, 3, 0, 1},   {2, 6, 7, 8, 33, 1, 1, 0, 1},
        {1, 8, 6, 3, 12, 3, 2, 0, 1},
        /* few input channels (nn_sgemm_conv_row): rows its tiles cut evenly or overlap, one or
         * two vectors of filters, without bias, rows narrower than a tile */
        {2, 10, 20, 2, 24, 3, 1, 1, 0}, {1, 6, 19, 4, 10, 3, 1, 1, 1},
        {1, 9, 9, 3, 20, 3, 1, 0, 1},   {2, 5, 18, 1, 7, 3, 1, 1, 0},
        {1, 4, 40, 4, 32, 3, 1, 1, 1},  {1, 5, 6, 2, 16, 3, 1, 1, 1},
    };
    int unwritten = 0; /* fused forwards that pooled from scratch, out not written */
    for (size_t t = 0; t < sizeof convs / sizeof convs[0]; t++) {
        const int *q = convs[t];
        nn_conv_shape s = {.B = q[0], .H = q[1], .W = q[2], .C = q[3], .OC = q[4], .KH = q[5],
                           .KW = q[5], .stride = q[6], .pad = q[7], .bias = q[8]};
        assert_int_equal(nn_conv_shape_init(&s), 0);
        size_t nx = (size_t)s.B * s.H * s.W * s.C, nw = (size_t)s.OC * s.KH * s.KW * s.C,
               ny = (size_t)s.B * s.OH * s.OW * s.OC, nc = nn_conv_cols_size(&s);
        float *x = alloc_f(nx), *w = alloc_f(nw), *b = s.bias ? alloc_f(s.OC) : NULL,
              *y = alloc_f(ny), *y2 = alloc_f(ny), *yref = alloc_f(ny), *cols = alloc_f(nc),
              *wext = alloc_f(nn_conv_wext_size(&s)), *wp = alloc_f(nn_conv_packed_size(&s));
        tu_fill_uniform(x, nx, -1, 1, 60 + t);
        tu_fill_uniform(w, nw, -1, 1, 70 + t);
        if (b) tu_fill_uniform(b, s.OC, -1, 1, 80 + t);
        char what[128];
        snprintf(what, sizeof what, "packed conv B%d %dx%dx%d->%d k%d s%d p%d bias%d", s.B, s.H,
                 s.W, s.C, s.OC, s.KH, s.stride, s.pad, s.bias);
        nn_conv2d_forward(y, cols, wext, x, w, NULL, NULL, b, &s);
        nn_conv_pack(wp, wext, w, b, &s);
        /* scratch that is not zero: the padding must be written, not found */
        for (size_t i = 0; i < nc; i++) cols[i] = NAN;
        nn_conv2d_forward(y2, cols, wext, x, w, wp, NULL, b, &s);
        assert_same_bits(y2, y, ny, what);
        nn_conv2d_forward_ref(yref, x, w, b, &s);
        tu_assert_close(y2, yref, ny, 1e-5, 1e-5, what);
        /* pools of 2 x 2 (the usual, unrolled), windows that overlap and that skip rows */
        static const int pools[][2] = {{2, 2}, {3, 2}, {3, 1}, {2, 3}};
        for (size_t pi = 0; pi < sizeof pools / sizeof pools[0]; pi++) {
            const int k = pools[pi][0];
            if (s.OH < k || s.OW < k) continue;
            nn_pool_shape ps = {.B = s.B, .H = s.OH, .W = s.OW, .C = s.OC, .k = k,
                                .stride = pools[pi][1]};
            assert_int_equal(nn_pool_shape_init(&ps), 0);
            size_t np = (size_t)ps.B * ps.OH * ps.OW * ps.C;
            float *r = alloc_f(ny), *r2 = alloc_f(ny), *p = alloc_f(np), *p2 = alloc_f(np);
            int32_t *am = calloc(np, sizeof(int32_t)), *am2 = calloc(np, sizeof(int32_t));
            nn_conv2d_relu_maxpool_forward(y, cols, wext, x, w, NULL, NULL, b, &s, r, p, am, &ps, 1, NULL);
            nn_conv2d_relu_maxpool_forward(y2, cols, wext, x, w, wp, NULL, b, &s, r2, p2, am2, &ps,
                                           1, NULL);
            assert_same_bits(y2, y, ny, what);
            assert_same_bits(r2, r, ny, what);
            assert_same_bits(p2, p, np, what);
            assert_int_equal(memcmp(am2, am, np * sizeof(int32_t)), 0);
            /* the convolution's output not wanted: pooled from scratch, at one and two threads,
             * out left as it was; the same ReLU, pool and argmax */
            const int threads0 = xd_threads_get();
            for (int threads = 1; threads <= 2; threads++) {
                xd_threads_set(threads);
                fill_garbage(y2, ny);
                memcpy(yref, y2, sizeof(float) * ny);
                fill_garbage(r2, ny);
                fill_garbage(p2, np);
                memset(am2, 0, np * sizeof(int32_t));
                int written = -1;
                nn_conv2d_relu_maxpool_forward(y2, cols, wext, x, w, wp, NULL, b, &s, r2, p2, am2,
                                               &ps, 0, &written);
                assert_true(written == 0 || written == 1);
                unwritten += !written; /* where cols has the room for a thread's image */
                assert_same_bits(y2, written ? y : yref, ny, what);
                assert_same_bits(r2, r, ny, what);
                assert_same_bits(p2, p, np, what);
                assert_int_equal(memcmp(am2, am, np * sizeof(int32_t)), 0);
            }
            xd_threads_set(threads0);
            /* inference: no argmax, no ReLU output kept */
            memset(p2, 0, sizeof(float) * np);
            nn_conv2d_relu_maxpool_forward(y2, cols, wext, x, w, wp, NULL, b, &s, NULL, p2, NULL, &ps,
                                           1, NULL);
            assert_same_bits(p2, p, np, what);
            memset(p2, 0, sizeof(float) * np);
            nn_relu_maxpool_forward(NULL, p2, NULL, y, &ps);
            assert_same_bits(p2, p, np, what);
            free(r); free(r2); free(p); free(p2); free(am); free(am2);
        }
        free(x); free(w); free(b); free(y); free(y2); free(yref); free(cols); free(wext); free(wp);
    }
    assert_true(unwritten >= 40); /* most shapes have the room, at both thread counts */
    static const int linears[][3] = {{1, 784, 128}, {3, 7, 5}, {64, 3136, 128}, {64, 128, 10},
                                     {1, 1, 1}, {17, 33, 161}};
    for (size_t t = 0; t < sizeof linears / sizeof linears[0]; t++) {
        const int B = linears[t][0], C = linears[t][1], OC = linears[t][2];
        float *x = alloc_f((size_t)B * C), *w = alloc_f((size_t)OC * C), *b = alloc_f(OC),
              *y = alloc_f((size_t)B * OC), *y2 = alloc_f((size_t)B * OC),
              *wp = alloc_f(nn_linear_packed_size(C, OC));
        tu_fill_uniform(x, (size_t)B * C, -1, 1, 90 + t);
        tu_fill_uniform(w, (size_t)OC * C, -1, 1, 95 + t);
        tu_fill_uniform(b, OC, -1, 1, 99 + t);
        nn_linear_pack(wp, w, C, OC);
        for (int with_b = 0; with_b < 2; with_b++) {
            nn_linear_forward(y, x, w, NULL, with_b ? b : NULL, B, C, OC);
            nn_linear_forward(y2, x, w, wp, with_b ? b : NULL, B, C, OC);
            assert_same_bits(y2, y, (size_t)B * OC, "packed linear");
            /* within the error bound of a float sum of C + 1 terms */
            for (int i = 0; i < B; i++)
                for (int o = 0; o < OC; o++) {
                    double acc = with_b ? b[o] : 0.0, mag = with_b ? fabs(b[o]) : 0.0;
                    for (int k = 0; k < C; k++) {
                        const double v = (double)x[(size_t)i * C + k] * w[(size_t)o * C + k];
                        acc += v;
                        mag += fabs(v);
                    }
                    if (!(fabs(y2[(size_t)i * OC + o] - acc) <= 2.0 * (C + 3) * FLT_EPSILON * mag))
                        fail_msg("packed linear %dx%d->%d: [%d][%d] = %.9g, reference %.9g", B, C,
                                 OC, i, o, y2[(size_t)i * OC + o], acc);
                }
        }
        free(x); free(w); free(b); free(y); free(y2); free(wp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv2d_rejects_bad_shapes),
        cmocka_unit_test(test_packed_weights),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_bias_grad_column_chains),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_first_write_and_fused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
