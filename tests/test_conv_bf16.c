/* nn/conv_bf16: the bf16 convolution that reads its windows in place, through the layer's own
 * entry points (nn_conv2d_forward, nn_conv2d_backward and _first) under bf16 products: the
 * forward, the input gradient and the weight and bias gradients against double-precision sums of the bf16-rounded operands,
 * within the float32 summation bound, on shapes with odd channel counts, kernels of 2x2 to 5x5,
 * padding 0 to 2, outputs wider than a tile and images shorter than one; the bits at 1, 2 and 3
 * threads; what the layer hands it and what it leaves to the other products. Each with the AMX
 * kernel and the AVX512_BF16 one, where the CPU (and for AMX the system) runs them; skipped
 * where it runs neither. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "nn/conv_bf16.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
#include "nn/layers.h"

static double bf(float x) { return (double)nn_bf16_float(nn_bf16_round(x)); }

typedef struct {
    nn_conv_shape s;
    float *inp, *w, *b, *dout;
    float *cols, *wext, *dcols, *dw, *db;
} conv_case;

static conv_case case_make(int B, int H, int W, int C, int OC, int KH, int KW, int pad, int bias,
                           uint64_t seed)
{
    conv_case k;
    memset(&k, 0, sizeof k);
    k.s = (nn_conv_shape){.B = B, .H = H, .W = W, .C = C, .OC = OC, .KH = KH, .KW = KW,
                          .stride = 1, .pad = pad, .bias = bias};
    assert_int_equal(nn_conv_shape_init(&k.s), 0);
    const size_t n_in = (size_t)B * H * W * C, n_w = (size_t)OC * KH * KW * C,
                 n_out = (size_t)B * k.s.OH * k.s.OW * OC;
    k.inp = xd_xmalloc(sizeof(float) * n_in);
    k.w = xd_xmalloc(sizeof(float) * n_w);
    k.b = bias ? xd_xmalloc(sizeof(float) * OC) : NULL;
    k.dout = xd_xmalloc(sizeof(float) * n_out);
    tu_fill_uniform(k.inp, n_in, -1.0f, 1.0f, seed);
    tu_fill_uniform(k.w, n_w, -0.5f, 0.5f, seed + 1);
    if (bias) tu_fill_uniform(k.b, OC, -0.5f, 0.5f, seed + 2);
    tu_fill_uniform(k.dout, n_out, -1.0f, 1.0f, seed + 3);
    k.cols = xd_xmalloc(sizeof(float) * (nn_conv_cols_size(&k.s) + 1));
    k.wext = xd_xmalloc(sizeof(float) * (nn_conv_wext_size(&k.s) + 1));
    k.dcols = xd_xmalloc(sizeof(float) * (nn_conv_cols_size(&k.s) + 1));
    k.dw = xd_xcalloc(n_w, sizeof(float));
    k.db = xd_xcalloc((size_t)OC, sizeof(float));
    return k;
}

static void case_free(conv_case *k)
{
    free(k->inp);
    free(k->w);
    free(k->b);
    free(k->dout);
    free(k->cols);
    free(k->wext);
    free(k->dcols);
    free(k->dw);
    free(k->db);
}

/* Each output element against the double sum of the rounded operands (+ the float bias): the
 * products are exact in float32, so the error is the float32 sum's, at most (K + 4) u times the
 * sum of the terms' sizes (u = 2^-24; see test_gemm_bf16). Returns the elements outside. */
static int forward_outside(const conv_case *k, const float *out)
{
    const nn_conv_shape *s = &k->s;
    const int K = s->KH * s->KW * s->C;
    int bad = 0;
    for (int n = 0; n < s->B; n++)
        for (int oy = 0; oy < s->OH; oy++)
            for (int ox = 0; ox < s->OW; ox++)
                for (int o = 0; o < s->OC; o++) {
                    double sum = 0.0, size = 0.0;
                    for (int ky = 0; ky < s->KH; ky++)
                        for (int kx = 0; kx < s->KW; kx++) {
                            const int iy = oy - s->pad + ky, ix = ox - s->pad + kx;
                            if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W) continue;
                            for (int c = 0; c < s->C; c++) {
                                const double t =
                                    bf(k->w[((size_t)(o * s->KH + ky) * s->KW + kx) * s->C + c]) *
                                    bf(k->inp[(((size_t)n * s->H + iy) * s->W + ix) * s->C + c]);
                                sum += t;
                                size += fabs(t);
                            }
                        }
                    if (k->b) {
                        sum += k->b[o];
                        size += fabs(k->b[o]);
                    }
                    const double got =
                        out[(((size_t)n * s->OH + oy) * s->OW + ox) * s->OC + o];
                    if (!(fabs(got - sum) <= (K + 4) * 0x1p-24 * size + 1e-30)) bad++;
                }
    return bad;
}

/* The input gradient against its double sum (+ what dinp held before: base) */
static int dinp_outside(const conv_case *k, const float *dinp, const float *base)
{
    const nn_conv_shape *s = &k->s;
    const int K = s->KH * s->KW * s->OC;
    int bad = 0;
    for (int n = 0; n < s->B; n++)
        for (int iy = 0; iy < s->H; iy++)
            for (int ix = 0; ix < s->W; ix++)
                for (int c = 0; c < s->C; c++) {
                    double sum = 0.0, size = 0.0;
                    for (int ky = 0; ky < s->KH; ky++)
                        for (int kx = 0; kx < s->KW; kx++) {
                            const int oy = iy + s->pad - ky, ox = ix + s->pad - kx;
                            if (oy < 0 || oy >= s->OH || ox < 0 || ox >= s->OW) continue;
                            for (int o = 0; o < s->OC; o++) {
                                const double t =
                                    bf(k->w[((size_t)(o * s->KH + ky) * s->KW + kx) * s->C + c]) *
                                    bf(k->dout[(((size_t)n * s->OH + oy) * s->OW + ox) * s->OC + o]);
                                sum += t;
                                size += fabs(t);
                            }
                        }
                    const size_t at = (((size_t)n * s->H + iy) * s->W + ix) * s->C + c;
                    if (base) {
                        sum += base[at];
                        size += fabs(base[at]);
                    }
                    if (!(fabs((double)dinp[at] - sum) <= (K + 4) * 0x1p-24 * size + 1e-30)) bad++;
                }
    return bad;
}

/* The weight and bias gradients (+ what they held before: wbase, bbase) against their double sums
 * over the batch's output positions: dw of the rounded operands, db of dout as it is */
static int dw_outside(const conv_case *k, const float *wbase, const float *bbase)
{
    const nn_conv_shape *s = &k->s;
    const int P = s->B * s->OH * s->OW;
    int bad = 0;
    for (int o = 0; o < s->OC; o++) {
        for (int ky = 0; ky < s->KH; ky++)
            for (int kx = 0; kx < s->KW; kx++)
                for (int c = 0; c < s->C; c++) {
                    const size_t at = ((size_t)(o * s->KH + ky) * s->KW + kx) * s->C + c;
                    double sum = wbase[at], size = fabs(wbase[at]);
                    for (int n = 0; n < s->B; n++)
                        for (int oy = 0; oy < s->OH; oy++)
                            for (int ox = 0; ox < s->OW; ox++) {
                                const int iy = oy - s->pad + ky, ix = ox - s->pad + kx;
                                if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W) continue;
                                const double t =
                                    bf(k->dout[(((size_t)n * s->OH + oy) * s->OW + ox) * s->OC + o]) *
                                    bf(k->inp[(((size_t)n * s->H + iy) * s->W + ix) * s->C + c]);
                                sum += t;
                                size += fabs(t);
                            }
                    if (!(fabs((double)k->dw[at] - sum) <= (P + 4) * 0x1p-24 * size + 1e-30)) bad++;
                }
        if (!k->b) continue;
        double sum = bbase[o], size = fabs(bbase[o]);
        for (int p = 0; p < P; p++) {
            sum += k->dout[(size_t)p * s->OC + o];
            size += fabs(k->dout[(size_t)p * s->OC + o]);
        }
        if (!(fabs((double)k->db[o] - sum) <= (P + 4) * 0x1p-24 * size + 1e-30)) bad++;
    }
    return bad;
}

/* The bf16 kernels the convolution has, in turn (tu_next_bisa): each that runs here chosen and
 * its name in *name; 0 after the last (the best chosen again). Start with *i = 0. */
static int next_kernel(int *i, const char **name)
{
    static const nn_bisa kernels[] = {NN_BISA_AVX2, NN_BISA_AVX512BF16, NN_BISA_AMX};
    return tu_next_bisa(i, kernels, 3, name);
}

/* A test's teardown: the best kernel again, whatever a failed test left chosen */
static int best_kernel(void **state)
{
    (void)state;
    nn_bgemm_use(NN_BISA_COUNT);
    return 0;
}

/* Whether the CPU runs a kernel the convolution has */
static int have_kernel(void)
{
    int i = 0;
    const char *name;
    const int any = next_kernel(&i, &name);
    nn_bgemm_use(NN_BISA_COUNT);
    return any;
}

static const int shapes[][8] = {
    /* B, H, W, C, OC, KH, KW, pad */
    {2, 5, 7, 16, 16, 3, 3, 1},  {3, 14, 14, 32, 64, 3, 3, 1}, {1, 9, 4, 17, 20, 3, 3, 0},
    {2, 7, 8, 40, 33, 5, 5, 2},  {2, 4, 5, 16, 48, 2, 2, 1},   {1, 3, 40, 24, 16, 1, 3, 0},
    {2, 11, 3, 31, 70, 3, 2, 1},
    /* more output channels than the weight gradient turns in one group (8 blocks of 16): a second
     * group of two blocks, the last of 6 channels */
    {2, 6, 5, 16, 150, 3, 3, 1},
    /* images large enough that the weight gradient takes one image per chunk: its sums carried
     * from chunk to chunk, in each half of the batch; then 2 images a chunk, halves of 2 and 3
     * images (the first half's last step has none), with an odd count of 16-channel column
     * vectors (9: AMX's last column tile, and a tile of one vector on AVX512_BF16, carried) */
    {3, 40, 40, 64, 32, 3, 3, 1}, {5, 40, 40, 16, 32, 3, 3, 1},
};

/* every shape with and without a bias, on the kernel chosen now (named kernel) */
static void forward_and_dinp(const char *kernel)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int bias = 0; bias < 2; bias++) {
            const int *v = shapes[i];
            conv_case k = case_make(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], bias,
                                    50 + 7 * i + bias);
            assert_true(nn_bconv_forward_takes(&k.s));
            assert_true(nn_bconv_dinp_takes(&k.s));
            const size_t n_out = (size_t)k.s.B * k.s.OH * k.s.OW * k.s.OC,
                         n_in = (size_t)k.s.B * k.s.H * k.s.W * k.s.C;
            float *out = xd_xmalloc(sizeof(float) * n_out);
            const int unfolded =
                nn_conv2d_forward(out, k.cols, k.wext, k.inp, k.w, NULL, NULL, k.b, &k.s);
            assert_int_equal(unfolded, 0); /* nothing unfolded: backward unfolds for dw */
            int bad = forward_outside(&k, out);
            if (bad)
                fail_msg("%s forward: %d elements past the bound (shape %zu, bias %d)", kernel,
                         bad, i, bias);
            /* the check can fail: one element moved past its bound (at most some 3e-3 here) */
            out[n_out / 2] += 0.05f;
            assert_int_equal(forward_outside(&k, out), 1);

            float *dinp = xd_xmalloc(sizeof(float) * n_in), *base = xd_xmalloc(sizeof(float) * n_in);
            tu_fill_uniform(dinp, n_in, -2.0f, 2.0f, 99 + i);
            memcpy(base, dinp, sizeof(float) * n_in);
            const size_t n_w = (size_t)k.s.OC * k.s.KH * k.s.KW * k.s.C;
            float *wbase = xd_xcalloc(n_w, sizeof(float)), *bbase = xd_xcalloc(k.s.OC, sizeof(float));
            nn_conv2d_backward_first(dinp, k.dw, k.db, k.dcols, k.wext, k.dout, k.cols, 0, k.inp,
                                     k.w, &k.s);
            bad = dinp_outside(&k, dinp, NULL);
            if (bad)
                fail_msg("%s dinp written: %d elements past the bound (shape %zu)", kernel, bad, i);
            bad = dw_outside(&k, wbase, bbase);
            if (bad)
                fail_msg("%s dw: %d elements past the bound (shape %zu, bias %d)", kernel, bad, i,
                         bias);
            /* added to what the gradients hold */
            tu_fill_uniform(wbase, n_w, -1.0f, 1.0f, 7 + i);
            tu_fill_uniform(bbase, k.s.OC, -1.0f, 1.0f, 8 + i);
            memcpy(k.dw, wbase, sizeof(float) * n_w);
            memcpy(k.db, bbase, sizeof(float) * k.s.OC);
            memcpy(dinp, base, sizeof(float) * n_in);
            nn_conv2d_backward(dinp, k.dw, k.db, k.dcols, k.wext, k.dout, k.cols, 0, k.inp, k.w,
                               &k.s);
            bad = dinp_outside(&k, dinp, base);
            if (bad)
                fail_msg("%s dinp added: %d elements past the bound (shape %zu)", kernel, bad, i);
            bad = dw_outside(&k, wbase, bbase);
            if (bad)
                fail_msg("%s dw added: %d elements past the bound (shape %zu, bias %d)", kernel,
                         bad, i, bias);
            k.dw[n_w / 2] += 2.0f; /* past the bound of a sum over the whole batch (some 0.4) */
            assert_int_equal(dw_outside(&k, wbase, bbase), 1);
            free(wbase);
            free(bbase);
            dinp[n_in / 3] += 1e-2f;
            assert_int_equal(dinp_outside(&k, dinp, base), 1);
            free(dinp);
            free(base);
            free(out);
            case_free(&k);
        }
}

static void test_forward_and_dinp_against_ref(void **state)
{
    (void)state;
    if (!have_kernel()) skip();
    const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
    const char *kernel;
    for (int ki = 0; next_kernel(&ki, &kernel);) forward_and_dinp(kernel);
    nn_mm_precision_set(prec);
}

static void bits_case(conv_case k)
{
    const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
    const int threads = xd_threads_get();
    const size_t n_out = (size_t)k.s.B * k.s.OH * k.s.OW * k.s.OC,
                 n_in = (size_t)k.s.B * k.s.H * k.s.W * k.s.C;
    float *o1 = xd_xmalloc(sizeof(float) * n_out), *o2 = xd_xmalloc(sizeof(float) * n_out);
    float *d1 = xd_xcalloc(n_in, sizeof(float)), *d2 = xd_xcalloc(n_in, sizeof(float));
    xd_threads_set(1);
    nn_conv2d_forward(o1, k.cols, k.wext, k.inp, k.w, NULL, NULL, k.b, &k.s);
    nn_conv2d_backward(d1, k.dw, k.db, k.dcols, k.wext, k.dout, k.cols, 0, k.inp, k.w, &k.s);
    xd_threads_set(2);
    nn_conv2d_forward(o2, k.cols, k.wext, k.inp, k.w, NULL, NULL, k.b, &k.s);
    nn_conv2d_backward(d2, k.dw, k.db, k.dcols, k.wext, k.dout, k.cols, 0, k.inp, k.w, &k.s);
    assert_memory_equal(o1, o2, sizeof(float) * n_out);
    assert_memory_equal(d1, d2, sizeof(float) * n_in);
    /* the weight gradient: twice at one thread above, so again from zero at each; at three
     * threads the batch's halves share a thread */
    const size_t n_w = (size_t)k.s.OC * k.s.KH * k.s.KW * k.s.C;
    float *w1 = xd_xmalloc(sizeof(float) * n_w);
    for (int t = 1; t <= 3; t++) {
        xd_threads_set(t);
        memset(k.dw, 0, sizeof(float) * n_w);
        nn_conv2d_backward(d1, k.dw, k.db, k.dcols, k.wext, k.dout, k.cols, 0, k.inp, k.w, &k.s);
        if (t == 1) memcpy(w1, k.dw, sizeof(float) * n_w);
        else assert_memory_equal(w1, k.dw, sizeof(float) * n_w);
    }
    free(w1);
    xd_threads_set(threads);
    free(o1);
    free(o2);
    free(d1);
    free(d2);
    case_free(&k);
    nn_mm_precision_set(prec);
}

/* Each image by one thread, the same way, and the weight gradient's chunks in order within each
 * half of the batch, the halves added in order: the bits at 1, 2 and 3 threads, with one chunk of
 * images and with several, with halves of equal and unequal sizes, and a batch of one (its first
 * half empty: its blocks shared among the threads) */
static void test_bits_at_one_two_and_three_threads(void **state)
{
    (void)state;
    if (!have_kernel()) skip();
    const char *kernel;
    for (int ki = 0; next_kernel(&ki, &kernel);) {
        bits_case(case_make(5, 14, 14, 32, 64, 3, 3, 1, 1, 321));
        bits_case(case_make(3, 40, 40, 64, 32, 3, 3, 1, 1, 322));
        bits_case(case_make(1, 14, 14, 32, 64, 3, 3, 1, 1, 323));
    }
}

/* The weight gradient of a batch of two is each image's own (a batch of one each) added: the two
 * halves of the batch summed apart, then added (nn_bconv_dw). One sum carried over both images
 * gives other bits (the build before this design fails it). */
static void test_dw_halves_added(void **state)
{
    (void)state;
    if (!have_kernel()) skip();
    const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
    const char *kernel;
    for (int ki = 0; next_kernel(&ki, &kernel);) {
        conv_case k = case_make(2, 14, 14, 32, 64, 3, 3, 1, 0, 331);
        nn_conv_shape one = k.s;
        one.B = 1;
        const int K = k.s.KH * k.s.KW * k.s.C;
        const size_t n_w = (size_t)k.s.OC * K, in1 = (size_t)k.s.H * k.s.W * k.s.C,
                     out1 = (size_t)k.s.OH * k.s.OW * k.s.OC;
        float *both = xd_xmalloc(sizeof(float) * n_w), *sum = xd_xmalloc(sizeof(float) * n_w);
        nn_bconv_dw(both, K, 0.0f, k.dout, k.inp, &k.s);
        nn_bconv_dw(sum, K, 0.0f, k.dout, k.inp, &one);
        nn_bconv_dw(sum, K, 1.0f, k.dout + out1, k.inp + in1, &one);
        if (memcmp(both, sum, sizeof(float) * n_w) != 0)
            fail_msg("%s: a batch of two is not its images' weight gradients added", kernel);
        free(both);
        free(sum);
        case_free(&k);
    }
    nn_mm_precision_set(prec);
}

/* What goes elsewhere: float32 products, strides past 1, one input channel (too few pairs to
 * fill a tile step: the first convolution keeps its own kernels), an input gradient whose
 * padding reaches the kernel's size or, on AVX512_BF16 or AVX2, of fewer than 16 channels, or the
 * portable kernel. */
static void test_what_it_takes(void **state)
{
    (void)state;
    if (!have_kernel()) skip();
    nn_conv_shape s = {.B = 2, .H = 8, .W = 8, .C = 32, .OC = 32, .KH = 3, .KW = 3, .stride = 1,
                       .pad = 1, .bias = 1};
    assert_int_equal(nn_conv_shape_init(&s), 0);
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    assert_false(nn_bconv_forward_takes(&s) || nn_bconv_dinp_takes(&s) || nn_bconv_dw_takes(&s));
    nn_mm_precision_set(NN_PREC_BF16);
    assert_true(nn_bconv_forward_takes(&s) && nn_bconv_dinp_takes(&s) && nn_bconv_dw_takes(&s));
    nn_conv_shape t = s;
    t.stride = 2;
    assert_false(nn_bconv_forward_takes(&t) || nn_bconv_dinp_takes(&t) || nn_bconv_dw_takes(&t));
    t = s;
    t.C = 1;
    assert_false(nn_bconv_forward_takes(&t) || nn_bconv_dw_takes(&t));
    t = s;
    t.OC = 8;
    assert_true(nn_bconv_forward_takes(&t) && !nn_bconv_dinp_takes(&t));
    t = s;
    t.pad = 3;
    assert_true(nn_bconv_forward_takes(&t) && !nn_bconv_dinp_takes(&t));
    const char *kernel;
    for (int ki = 0; next_kernel(&ki, &kernel);) {
        assert_true(nn_bconv_forward_takes(&s) && nn_bconv_dinp_takes(&s) && nn_bconv_dw_takes(&s));
        /* an input gradient of 8 channels: AVX512_BF16's and AVX2's tiles would be half empty */
        t = s;
        t.C = 8;
        assert_int_equal(nn_bconv_dinp_takes(&t), nn_bgemm_isa() == NN_BISA_AMX);
    }
    nn_bgemm_use(NN_BISA_PORTABLE);
    assert_false(nn_bconv_forward_takes(&s) || nn_bconv_dinp_takes(&s) || nn_bconv_dw_takes(&s));
    nn_bgemm_use(NN_BISA_COUNT);
    nn_mm_precision_set(prec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_forward_and_dinp_against_ref, best_kernel),
        cmocka_unit_test_teardown(test_bits_at_one_two_and_three_threads, best_kernel),
        cmocka_unit_test_teardown(test_dw_halves_added, best_kernel),
        cmocka_unit_test_teardown(test_what_it_takes, best_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
