/* nn/conv_wino: Winograd's F(2x2, 3x3) for float32 evaluation forwards (nn_wino_*). The forward
 * bit for bit against the algorithm composed from its parts (the per-channel transforms of
 * conv_wino.h and nn_sgemm's products, which the float32 kernel's packed products match), and
 * against the direct convolution in double within float32's rounding bound of the algorithm's
 * sums and within twice the direct float32 kernel's worst error; shapes with odd outputs, no padding, channel counts off the vectors, outputs off the
 * panels, no bias; the bits at 1, 2 and 3 threads, each image handed on once; the ReLU and max pool
 * made tile by tile; the input tile's vector path against the per-channel transform. What it
 * takes, and that a float32 model runs it in its forwards, training and evaluation, and in
 * inference (packed, and not where a batch norm is folded into the packed weights); the input
 * gradient by it where the backward writes one (the turned convolution's bits, its error against
 * the direct kernel's), the direct kernel's where it adds into one; the weight gradient by
 * F(3x3, 2x2) (its error against the direct kernel's, its bits at 1 to 3 threads, added into dw,
 * its transforms); the gradients of a training forward and backward by them: test_model_grad. */
#include "tests/support/testutil.h"
#include "tests/support/convfix.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "nn/conv_wino.h"
#include "nn/gemm.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/mm.h"

static size_t out_index(const nn_conv_shape *s, int b, int oy, int ox, int n)
{
    return (((size_t)b * s->OH + oy) * s->OW + ox) * s->OC + n;
}

/* The forward as conv_wino.h composes it, from the per-channel transforms and nn_sgemm: per
 * image, V_e (tiles x C) and U_e (C x OC), M_e = V_e U_e, each tile's 2 x 2 outputs + the bias */
static void composed(float *out, const conv3_case *k)
{
    const nn_conv_shape *s = &k->s;
    const int C = s->C, OC = s->OC, TH = (s->OH + 1) / 2, TW = (s->OW + 1) / 2, T = TH * TW;
    float *V = xd_xmalloc(sizeof(float) * 16 * (size_t)T * C);
    float *U = xd_xmalloc(sizeof(float) * 16 * (size_t)C * OC);
    float *M = xd_xmalloc(sizeof(float) * 16 * (size_t)T * OC);
    for (int n = 0; n < OC; n++)
        for (int c = 0; c < C; c++) {
            float g[9], u[16];
            for (int t = 0; t < 9; t++) g[t] = k->w[((size_t)n * 9 + t) * C + c];
            nn_bwino_weight_transform(u, g);
            for (int e = 0; e < 16; e++) U[((size_t)e * C + c) * OC + n] = u[e];
        }
    for (int b = 0; b < s->B; b++) {
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                float d[16], v[16];
                for (int i = 0; i < 16; i++)
                    d[i] = conv3_in_at(k, b, 2 * (t / TW) - s->pad + i / 4,
                                       2 * (t % TW) - s->pad + i % 4, c);
                nn_bwino_input_transform(v, d);
                for (int e = 0; e < 16; e++) V[((size_t)e * T + t) * C + c] = v[e];
            }
        for (int e = 0; e < 16; e++)
            nn_sgemm(0, 0, T, OC, C, 1.0f, V + (size_t)e * T * C, C, U + (size_t)e * C * OC, OC,
                     0.0f, M + (size_t)e * T * OC, OC);
        for (int t = 0; t < T; t++)
            for (int n = 0; n < OC; n++) {
                float m[16], y[4];
                for (int e = 0; e < 16; e++) m[e] = M[((size_t)e * T + t) * OC + n];
                nn_bwino_output_transform(y, m);
                for (int q = 0; q < 4; q++) {
                    const int oy = 2 * (t / TW) + q / 2, ox = 2 * (t % TW) + q % 2;
                    if (oy < s->OH && ox < s->OW)
                        out[out_index(s, b, oy, ox, n)] = k->b ? y[q] + k->b[n] : y[q];
                }
            }
    }
    free(V);
    free(U);
    free(M);
}

/* The direct convolution at (b, oy, ox, n) in double, and float32's rounding bound of the
 * algorithm's sums there: each rounding of a transform's sums (2 for V, 4 for U, 4 for the output,
 * 1 for the bias) and of the chain over C channels is at most 2^-24 of the magnitudes it sums;
 * the magnitudes: the algorithm run on |d| and |g| with |B'|, |G|, |A'| (each transform's terms
 * taken positive), which bounds every partial sum along the way. */
static void direct(const conv3_case *k, int b, int oy, int ox, int n, double *val, double *bound)
{
    static const double BTa[4][4] = {{1, 0, 1, 0}, {0, 1, 1, 0}, {0, 1, 1, 0}, {0, 1, 0, 1}};
    static const double Ga[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}, {0, 0, 1}};
    static const double ATa[2][4] = {{1, 1, 1, 0}, {0, 1, 1, 1}};
    const nn_conv_shape *s = &k->s;
    const int ty = oy / 2, tx = ox / 2, ay = oy % 2, ax = ox % 2;
    double sum = 0.0, mabs[16] = {0};
    for (int c = 0; c < s->C; c++) {
        double d[16], g[9], v[16] = {0}, u[16] = {0};
        for (int i = 0; i < 16; i++)
            d[i] = fabs(conv3_in_at(k, b, 2 * ty - s->pad + i / 4, 2 * tx - s->pad + i % 4, c));
        for (int t = 0; t < 9; t++) g[t] = fabs(k->w[((size_t)n * 9 + t) * s->C + c]);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int a = 0; a < 4; a++)
                    for (int q = 0; q < 4; q++) v[4 * i + j] += BTa[i][a] * d[4 * a + q] * BTa[j][q];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int a = 0; a < 3; a++)
                    for (int q = 0; q < 3; q++) u[4 * i + j] += Ga[i][a] * g[3 * a + q] * Ga[j][q];
        for (int e = 0; e < 16; e++) mabs[e] += u[e] * v[e];
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++)
                sum += (double)k->w[((size_t)n * 9 + ky * 3 + kx) * s->C + c] *
                       conv3_in_at(k, b, oy - s->pad + ky, ox - s->pad + kx, c);
    }
    double yabs = 0.0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) yabs += ATa[ay][i] * ATa[ax][j] * mabs[4 * i + j];
    const double bias = k->b ? k->b[n] : 0.0;
    *val = sum + bias;
    *bound = 0x1p-24 * ((double)(s->C + 11) * yabs + fabs(bias)) + 1e-30;
}

static void count_image(void *ctx, int b) { ((int *)ctx)[b]++; }

static void test_forward(void **state)
{
    (void)state;
    static const int shapes[][7] = {
        /* B, H, W, C, OC, pad, bias */
        {3, 14, 14, 32, 64, 1, 1}, /* the teacher's second convolution */
        {2, 7, 9, 16, 16, 1, 1},   /* odd outputs: half-empty tiles */
        {1, 6, 5, 18, 40, 0, 0},   /* no padding, 18 channels (past the vectors), 40 outputs (a
                                    * partial panel), no bias */
        {3, 4, 4, 20, 33, 2, 1},   /* padding 2 (a 6 x 6 output), 33 outputs */
    };
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int *q = shapes[si];
        conv3_case k = conv3_case_make(q[0], q[1], q[2], q[3], q[4], q[5], q[6], 140 + si);
        const nn_conv_shape *s = &k.s;
        assert_true(nn_wino_takes(s));
        float *out = xd_xmalloc(sizeof(float) * k.n_out), *want = xd_xmalloc(sizeof(float) * k.n_out);
        float *wpk = xd_xmalloc_aligned(sizeof(float) * nn_wino_packed_size(s));
        nn_wino_pack(wpk, k.w, s);
        int *seen = xd_xcalloc((size_t)s->B, sizeof(int));
        nn_wino_forward(out, k.inp, k.w, wpk, k.b, s, count_image, seen, NULL);
        for (int b = 0; b < s->B; b++) assert_int_equal(seen[b], 1);
        composed(want, &k);
        if (memcmp(out, want, sizeof(float) * k.n_out) != 0)
            fail_msg("shape %zu: the bits differ from the composed algorithm's", si);
        /* the direct kernel's float32 outputs (a training forward's), for their error */
        nn_conv_shape sd = *s;
        sd.winograd = 0;
        float *dk = xd_xmalloc(sizeof(float) * k.n_out);
        float *cols = xd_xmalloc(sizeof(float) * (nn_conv_cols_size(&sd) + 1));
        float *wext = xd_xmalloc(sizeof(float) * (nn_conv_wext_size(&sd) + 1));
        nn_conv2d_forward(dk, cols, wext, k.inp, k.w, NULL, NULL, k.b, &sd);
        double worst = 0.0, worst_abs = 0.0, worst_direct = 0.0;
        for (int b = 0; b < s->B; b++)
            for (int oy = 0; oy < s->OH; oy++)
                for (int ox = 0; ox < s->OW; ox++)
                    for (int n = 0; n < s->OC; n++) {
                        double val, bound;
                        direct(&k, b, oy, ox, n, &val, &bound);
                        const double got = out[out_index(s, b, oy, ox, n)], err = fabs(got - val);
                        if (err > bound)
                            fail_msg("shape %zu, (%d, %d, %d, %d): %.9g, direct %.9g (bound %.3g)",
                                     si, b, oy, ox, n, got, val, bound);
                        if (err / bound > worst) worst = err / bound;
                        if (err > worst_abs) worst_abs = err;
                        const double de = fabs(dk[out_index(s, b, oy, ox, n)] - val);
                        if (de > worst_direct) worst_direct = de;
                    }
        print_message("shape %zu: worst error %.3g (%.3f of the bound), the direct kernel's %.3g\n",
                      si, worst_abs, worst, worst_direct);
        /* about as accurate as the direct kernel (here more: its chains are C long, not 9 C) */
        if (worst_abs > 2.0 * worst_direct)
            fail_msg("shape %zu: worst error %.3g, over twice the direct kernel's %.3g", si,
                     worst_abs, worst_direct);
        free(dk);
        free(cols);
        free(wext);
        /* unpacked weights: packed for the call, the same bits */
        nn_wino_forward(want, k.inp, k.w, NULL, k.b, s, NULL, NULL, NULL);
        assert_memory_equal(want, out, sizeof(float) * k.n_out);
        free(seen);
        free(wpk);
        free(out);
        free(want);
        conv3_case_free(&k);
    }
    nn_mm_precision_set(prec);
}

/* The input gradient of a float32 convolution whose forward may run Winograd's (s->winograd):
 * where dinp is written (its first gradient), Winograd's forward of the output gradient with the
 * turned kernel, its bits nn_wino_forward's on those, within twice the direct kernel's worst
 * error of the exact gradient (in double); added into dinp, the direct kernel's bits. */
static void test_input_gradient(void **state)
{
    (void)state;
    static const int shapes[][7] = {
        /* B, H, W, C, OC, pad, bias */
        {3, 14, 14, 32, 64, 1, 1}, /* the teacher's second convolution */
        {2, 7, 9, 16, 16, 1, 0},   /* odd sides: half-empty tiles */
        {1, 8, 7, 18, 40, 0, 1},   /* no padding: the turned convolution pads by 2 */
    };
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int *q = shapes[si];
        conv3_case k = conv3_case_make(q[0], q[1], q[2], q[3], q[4], q[5], q[6], 160 + si);
        const nn_conv_shape *s = &k.s;
        nn_conv_shape sd = *s;
        sd.winograd = 0;
        const int C = s->C, OC = s->OC;
        const size_t n_in = (size_t)s->B * s->H * s->W * C, n_w = (size_t)OC * 9 * C;
        float *dout = xd_xmalloc(sizeof(float) * k.n_out), *y = xd_xmalloc(sizeof(float) * k.n_out);
        tu_fill_uniform(dout, k.n_out, -1.0f, 1.0f, 170 + si);
        float *cols = xd_xmalloc(sizeof(float) * (nn_conv_cols_size(s) + 1));
        float *dcols = xd_xmalloc(sizeof(float) * (nn_conv_cols_size(s) + 1));
        float *wext = xd_xmalloc(sizeof(float) * (nn_conv_wext_size(s) + 1));
        float *dw = xd_xcalloc(n_w, sizeof(float)), *db = xd_xcalloc((size_t)OC, sizeof(float));
        const int unfolded = nn_conv2d_forward(y, cols, wext, k.inp, k.w, NULL, NULL, k.b, &sd);
        float *wino = xd_xmalloc(sizeof(float) * n_in), *dk = xd_xmalloc(sizeof(float) * n_in);
        nn_conv2d_backward_first(wino, dw, db, dcols, wext, dout, cols, unfolded, k.inp, k.w, s);
        nn_conv2d_backward_first(dk, dw, db, dcols, wext, dout, cols, unfolded, k.inp, k.w, &sd);
        assert_memory_not_equal(wino, dk, sizeof(float) * n_in);

        /* the turned convolution: from the output gradient's OC channels to the input's C */
        nn_conv_shape t = {.B = s->B, .H = s->OH, .W = s->OW, .C = OC, .OC = C, .KH = 3, .KW = 3,
                           .stride = 1, .pad = 2 - s->pad, .winograd = 1};
        assert_int_equal(nn_conv_shape_init(&t), 0);
        assert_true(nn_wino_takes(&t));
        float *wt = xd_xmalloc(sizeof(float) * n_w), *want = xd_xmalloc(sizeof(float) * n_in);
        for (int c = 0; c < C; c++)
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    for (int o = 0; o < OC; o++)
                        wt[(((size_t)c * 3 + ky) * 3 + kx) * OC + o] =
                            k.w[(((size_t)o * 3 + 2 - ky) * 3 + 2 - kx) * C + c];
        nn_wino_forward(want, dout, wt, NULL, NULL, &t, NULL, NULL, NULL);
        assert_memory_equal(wino, want, sizeof(float) * n_in);

        double worst = 0.0, worst_direct = 0.0;
        for (int b = 0; b < s->B; b++)
            for (int iy = 0; iy < s->H; iy++)
                for (int ix = 0; ix < s->W; ix++)
                    for (int c = 0; c < C; c++) {
                        double exact = 0.0;
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                const int oy = iy + s->pad - ky, ox = ix + s->pad - kx;
                                if (oy < 0 || oy >= s->OH || ox < 0 || ox >= s->OW) continue;
                                for (int o = 0; o < OC; o++)
                                    exact += (double)dout[out_index(s, b, oy, ox, o)] *
                                             k.w[(((size_t)o * 3 + ky) * 3 + kx) * C + c];
                            }
                        const size_t at = (((size_t)b * s->H + iy) * s->W + ix) * C + c;
                        const double e = fabs(wino[at] - exact), d = fabs(dk[at] - exact);
                        if (e > worst) worst = e;
                        if (d > worst_direct) worst_direct = d;
                    }
        print_message("shape %zu: the input gradient's worst error %.3g, the direct kernel's %.3g\n",
                      si, worst, worst_direct);
        if (!(worst <= 2.0 * worst_direct))
            fail_msg("shape %zu: worst error %.3g, over twice the direct kernel's %.3g", si, worst,
                     worst_direct);

        /* added into dinp: the direct kernel's bits */
        tu_fill_uniform(wino, n_in, -1.0f, 1.0f, 180 + si);
        memcpy(dk, wino, sizeof(float) * n_in);
        nn_conv2d_backward(wino, dw, db, dcols, wext, dout, cols, unfolded, k.inp, k.w, s);
        nn_conv2d_backward(dk, dw, db, dcols, wext, dout, cols, unfolded, k.inp, k.w, &sd);
        assert_memory_equal(wino, dk, sizeof(float) * n_in);
        free(wt);
        free(want);
        free(wino);
        free(dk);
        free(dw);
        free(db);
        free(cols);
        free(dcols);
        free(wext);
        free(dout);
        free(y);
        conv3_case_free(&k);
    }
    nn_mm_precision_set(prec);
}

/* got (r x r) is L x L' within 1e-6, L (r x k, row-major), x (k x k) */
static void assert_sandwich(const float *got, const double *L, int r, int k, const float *x)
{
    for (int a = 0; a < r; a++)
        for (int b = 0; b < r; b++) {
            double want = 0.0;
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) want += L[a * k + i] * x[i * k + j] * L[b * k + j];
            assert_float_equal(got[a * r + b], want, 1e-6);
        }
}

/* The weight gradient by Winograd's F(3x3, 2x2) where s->winograd (nn_wino_dw_takes): its
 * gradient of the weights and the bias within twice the direct kernel's worst error of the exact
 * one (in double), the same bits at 1, 2 and 3 threads, added into dw (no bias: beta 1) as dw +
 * its value; the per-channel transforms against their matrices. */
static void test_weight_gradient(void **state)
{
    (void)state;
    static const int shapes[][7] = {
        /* B, H, W, C, OC, pad, bias */
        {12, 14, 14, 32, 64, 1, 1}, /* the teacher's second convolution: chunks of 5, 5, 2 images */
        {3, 7, 9, 16, 16, 1, 0},    /* odd sides: half-empty tiles; no bias */
        {2, 8, 7, 18, 40, 0, 1},    /* no padding, channels and outputs off the vectors */
    };
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    const int threads = xd_threads_get();
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int *q = shapes[si];
        conv3_case k = conv3_case_make(q[0], q[1], q[2], q[3], q[4], q[5], q[6], 190 + si);
        const nn_conv_shape *s = &k.s;
        assert_true(nn_wino_dw_takes(s));
        nn_conv_shape sd = *s;
        sd.winograd = 0;
        const int C = s->C, OC = s->OC, K = 9 * C;
        const size_t n_w = (size_t)OC * K;
        float *dout = xd_xmalloc(sizeof(float) * k.n_out), *y = xd_xmalloc(sizeof(float) * k.n_out);
        tu_fill_uniform(dout, k.n_out, -1.0f, 1.0f, 200 + si);
        float *cols = xd_xmalloc(sizeof(float) * (nn_conv_cols_size(s) + 1));
        float *wext = xd_xmalloc(sizeof(float) * (nn_conv_wext_size(s) + 1));
        const int unfolded = nn_conv2d_forward(y, cols, wext, k.inp, k.w, NULL, NULL, k.b, &sd);
        float *dw[4], *db[4];
        for (int v = 0; v < 4; v++) { /* Winograd's at 1, 2 and 3 threads, the direct kernel */
            dw[v] = xd_xcalloc(n_w, sizeof(float));
            db[v] = xd_xcalloc((size_t)OC, sizeof(float));
            xd_threads_set(v < 3 ? v + 1 : threads);
            nn_conv2d_backward_first(NULL, dw[v], db[v], NULL, wext, dout, cols, unfolded, k.inp,
                                     k.w, v < 3 ? s : &sd);
        }
        xd_threads_set(threads);
        for (int v = 1; v < 3; v++) {
            assert_memory_equal(dw[v], dw[0], sizeof(float) * n_w);
            assert_memory_equal(db[v], db[0], sizeof(float) * OC);
        }
        assert_memory_not_equal(dw[0], dw[3], sizeof(float) * n_w);
        double worst = 0.0, worst_direct = 0.0;
        for (int o = 0; o < OC; o++) {
            for (int t = 0; t < 9; t++)
                for (int c = 0; c < C; c++) {
                    double exact = 0.0;
                    for (int b = 0; b < s->B; b++)
                        for (int oy = 0; oy < s->OH; oy++)
                            for (int ox = 0; ox < s->OW; ox++)
                                exact += (double)dout[out_index(s, b, oy, ox, o)] *
                                         conv3_in_at(&k, b, oy - s->pad + t / 3,
                                                     ox - s->pad + t % 3, c);
                    const size_t at = (size_t)o * K + (size_t)t * C + c;
                    const double e = fabs(dw[0][at] - exact), d = fabs(dw[3][at] - exact);
                    if (e > worst) worst = e;
                    if (d > worst_direct) worst_direct = d;
                }
            if (!s->bias) continue;
            double exact = 0.0;
            for (size_t i = (size_t)o; i < k.n_out; i += (size_t)OC) exact += dout[i];
            const double e = fabs(db[0][o] - exact), d = fabs(db[3][o] - exact);
            if (e > worst) worst = e;
            if (d > worst_direct) worst_direct = d;
        }
        print_message("shape %zu: the weight gradient's worst error %.3g, the direct kernel's "
                      "%.3g\n", si, worst, worst_direct);
        if (!(worst <= 2.0 * worst_direct))
            fail_msg("shape %zu: worst error %.3g, over twice the direct kernel's %.3g", si, worst,
                     worst_direct);
        if (!s->bias) { /* added into dw: dw + the gradient */
            float *base = xd_xmalloc(sizeof(float) * n_w);
            tu_fill_uniform(base, n_w, -1.0f, 1.0f, 210 + si);
            memcpy(dw[1], base, sizeof(float) * n_w);
            nn_conv2d_backward(NULL, dw[1], NULL, NULL, wext, dout, cols, unfolded, k.inp, k.w, s);
            for (size_t i = 0; i < n_w; i++) {
                const float want = base[i] + dw[0][i];
                if (memcmp(&dw[1][i], &want, sizeof want) != 0)
                    fail_msg("shape %zu: added at %zu: %.9g, want %.9g", si, i, dw[1][i], want);
            }
            free(base);
        }
        for (int v = 0; v < 4; v++) {
            free(dw[v]);
            free(db[v]);
        }
        free(cols);
        free(wext);
        free(dout);
        free(y);
        conv3_case_free(&k);
    }
    /* the transforms against G' = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1], A as the forward's */
    static const double Gt[3][4] = {{1, 0.5, 0.5, 0}, {0, 0.5, -0.5, 0}, {0, 0.5, 0.5, 1}};
    static const double A[4][2] = {{1, 0}, {1, 1}, {1, -1}, {0, -1}};
    float m[16], h[4], got[16];
    for (int i = 0; i < 16; i++) m[i] = (float)(i * 7 % 11) - 4.25f;
    for (int i = 0; i < 4; i++) h[i] = (float)(3 * i) - 2.5f;
    nn_wino_dw_transform(got, m);
    assert_sandwich(got, &Gt[0][0], 3, 4, m);
    nn_wino_dout_transform(got, h);
    assert_sandwich(got, &A[0][0], 4, 2, h);
    nn_mm_precision_set(prec);
}

static void wino(float *out, const conv3_case *k, const nn_relu_pool *pool)
{
    nn_wino_forward(out, k->inp, k->w, NULL, k->b, &k->s, NULL, NULL, pool);
}

static void test_bits_at_one_two_and_three_threads(void **state)
{
    (void)state;
    conv3_check_threads(wino, "float32");
}

static void test_pooled(void **state)
{
    (void)state;
    conv3_check_pooled(wino, "float32");
}

/* The input tile's vector path and tail give the per-channel transform's bits */
static void test_input_tile(void **state)
{
    (void)state;
    static const int channels[] = {16, 19, 48};
    for (size_t ci = 0; ci < sizeof channels / sizeof channels[0]; ci++) {
        const int C = channels[ci];
        float *in = xd_xmalloc(sizeof(float) * 16 * (size_t)C);
        tu_fill_uniform(in, 16 * (size_t)C, -2.0f, 2.0f, 330 + ci);
        for (int i = 0; i < 16 * C; i++) in[i] /= 3.0f; /* full mantissas */
        const float *src[16];
        for (int q = 0; q < 16; q++) src[q] = in + (size_t)q * C;
        const size_t ldv = (size_t)C + 5;
        float *v = xd_xcalloc(16 * ldv, sizeof(float));
        nn_wino_input_tile(v, ldv, src, C);
        for (int c = 0; c < C; c++) {
            float d[16], want[16];
            for (int q = 0; q < 16; q++) d[q] = src[q][c];
            nn_bwino_input_transform(want, d);
            for (int e = 0; e < 16; e++)
                if (memcmp(&v[e * ldv + (size_t)c], &want[e], sizeof(float)) != 0)
                    fail_msg("%d channels: position %d, channel %d: %.9g, want %.9g", C, e, c,
                             v[e * ldv + (size_t)c], want[e]);
        }
        free(v);
        free(in);
    }
}

static void test_what_it_takes(void **state)
{
    (void)state;
    nn_conv_shape s = {.B = 2, .H = 8, .W = 8, .C = 16, .OC = 16, .KH = 3, .KW = 3, .stride = 1,
                       .pad = 1, .bias = 1, .winograd = 1};
    assert_int_equal(nn_conv_shape_init(&s), 0);
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    assert_true(nn_wino_takes(&s));
    static const int off[][4] = {/* winograd, stride, k, C */
                                 {0, 1, 3, 16}, {1, 2, 3, 16}, {1, 1, 5, 16}, {1, 1, 3, 15}};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
        nn_conv_shape t = s;
        t.winograd = off[i][0];
        t.stride = off[i][1];
        t.KH = t.KW = off[i][2];
        t.C = off[i][3];
        assert_false(nn_wino_takes(&t));
    }
    nn_conv_shape t = s;
    t.OC = 15;
    assert_false(nn_wino_takes(&t));
    nn_mm_precision_set(NN_PREC_BF16);
    assert_false(nn_wino_takes(&s));
    nn_mm_precision_set(prec);
}

/* A float32 model: its evaluation and training forwards' convolution gives nn_wino_forward's
 * bits, inference on the packed model too (Winograd's weights packed then), a bf16 training
 * forward other bits; with a batch norm folded into the packed weights inference keeps the direct
 * kernel. */
static void test_models(void **state)
{
    (void)state;
    enum { B = 5 };
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    const size_t nx = (size_t)B * 81 * 16, ny = (size_t)B * 81 * 32;
    float *x = xd_xmalloc(sizeof(float) * nx), *want = xd_xmalloc(sizeof(float) * ny),
          *eval = xd_xmalloc(sizeof(float) * ny);
    tu_fill_uniform(x, nx, -1.0f, 1.0f, 15);
    nn_conv_shape s = {.B = B, .H = 9, .W = 9, .C = 16, .OC = 32, .KH = 3, .KW = 3, .stride = 1,
                       .pad = 1, .bias = 1, .winograd = 1};
    assert_int_equal(nn_conv_shape_init(&s), 0);
    xd_err e;
    nn_model m;
    TU_OK(nn_model_build(&m, "input h=9 w=9 c=16; conv2d name=c out=32 k=3 pad=1; flatten; "
                             "linear out=3 head",
                         B, 4, &e));
    const int c = nn_model_find(&m, "c");
    assert_true(c >= 0);
    const float *w = m.param + m.nodes[c].w_off, *bias = m.param + m.nodes[c].b_off;
    nn_wino_forward(want, x, w, NULL, bias, &s, NULL, NULL, NULL);
    nn_model_forward(&m, x, B, NULL);
    memcpy(eval, nn_model_out(&m, c), sizeof(float) * ny);
    assert_memory_equal(eval, want, sizeof(float) * ny);
    const nn_run train = {.training = 1};
    nn_model_forward(&m, x, B, &train); /* a float32 training forward too */
    assert_memory_equal(nn_model_out(&m, c), want, sizeof(float) * ny);
    s.winograd = 0;
    nn_conv2d_forward_ref(want, x, w, bias, &s);
    tu_assert_close(eval, want, ny, 1e-5, 1e-5, "evaluation forward");
    /* in bf16 the training forward keeps the direct kernels (test_conv_wino): not these bits */
    m.precision = NN_PREC_BF16;
    nn_model_forward(&m, x, B, &train);
    assert_memory_not_equal(nn_model_out(&m, c), eval, sizeof(float) * ny);
    m.precision = NN_PREC_FLOAT32;
    TU_OK(nn_model_pack_exact(&m, &e));
    assert_non_null(m.nodes[c].wpb); /* Winograd's transformed weights */
    nn_model_infer(&m, x, B, NULL);
    assert_memory_equal(nn_model_out(&m, c), eval, sizeof(float) * ny);
    nn_model_unpack(&m);
    nn_model_free(&m);

    /* a norm folded into the packed weights: inference reads them, by the direct kernel */
    TU_OK(nn_model_build(&m, "input h=9 w=9 c=16; conv2d name=c out=32 k=3 pad=1; "
                             "batchnorm name=n; flatten; linear out=3 head",
                         B, 4, &e));
    const int n = nn_model_find(&m, "n");
    for (int i = 0; i < 32; i++) m.state[m.nodes[n].s_off + 32 + (size_t)i] = 2.0f; /* var */
    nn_model_forward(&m, x, B, NULL);
    memcpy(eval, nn_model_out(&m, n), sizeof(float) * ny);
    TU_OK(nn_model_pack(&m, &e));
    assert_int_equal(m.nodes[c].bn_fold, n);
    assert_null(m.nodes[c].wpb);
    nn_model_infer(&m, x, B, NULL);
    tu_assert_close(nn_model_out(&m, n), eval, ny, 1e-5, 1e-5, "folded norm");
    nn_model_free(&m);
    free(x);
    free(want);
    free(eval);
    nn_mm_precision_set(prec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward),        cmocka_unit_test(test_bits_at_one_two_and_three_threads),
        cmocka_unit_test(test_pooled),         cmocka_unit_test(test_input_tile),
        cmocka_unit_test(test_what_it_takes),  cmocka_unit_test(test_models),
        cmocka_unit_test(test_input_gradient), cmocka_unit_test(test_weight_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
