/* nn/conv_wino: Winograd's F(2x2, 3x3) for bf16 evaluation forwards. The transforms against
 * their matrices in double, and Winograd's identity (transformed product = the direct 3 x 3
 * convolution of a window); the forward against a double-precision reference of the same
 * algorithm (the transformed operands rounded to bf16 as the kernel rounds them, their products
 * summed in double) within the float32 summation bound, and against the direct convolution in
 * double within the bound that rounding allows; shapes with odd outputs, no padding, channel
 * counts off the vectors, partial column panels, no bias; the bits at 1, 2 and 3 threads and
 * each image handed on once; the ReLU and max pool made tile by tile, with the pool's bits;
 * with each bf16 kernel the CPU runs (AVX512_BF16 and the portable loop). The kernel's tile code
 * against the per-channel transforms, bit for bit. What it takes, and that only evaluation
 * forwards of a model run it (a training forward on a model packed for inference too). */
#include "tests/support/testutil.h"
#include "tests/support/convfix.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "nn/conv_bf16.h"
#include "nn/conv_wino.h"
#include "nn/gemm_bf16.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/mm.h"

static double bf(float x) { return (double)nn_bf16_float(nn_bf16_round(x)); }

/* B' d B, G g G', A' m A with the matrices of conv_wino.h, in double */
static const double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};

static void sandwich(double *out, const double *L, int lr, int lc, const double *x)
{
    /* out (lr x lr) = L x L', L lr x lc, x lc x lc */
    for (int i = 0; i < lr; i++)
        for (int j = 0; j < lr; j++) {
            double s = 0.0;
            for (int a = 0; a < lc; a++)
                for (int b = 0; b < lc; b++) s += L[i * lc + a] * x[a * lc + b] * L[j * lc + b];
            out[i * lr + j] = s;
        }
}

static void test_transforms(void **state)
{
    (void)state;
    float d[16], g[9], m[16], v[16], u[16], y[4];
    double dd[16], gd[9], md[16], vd[16], ud[16], yd[4], prod[16];
    for (int r = 0; r < 50; r++) {
        tu_fill_uniform(d, 16, -2.0f, 2.0f, 100 + (uint64_t)r);
        tu_fill_uniform(g, 9, -1.0f, 1.0f, 200 + (uint64_t)r);
        tu_fill_uniform(m, 16, -3.0f, 3.0f, 300 + (uint64_t)r);
        for (int i = 0; i < 16; i++) dd[i] = d[i], md[i] = m[i];
        for (int i = 0; i < 9; i++) gd[i] = g[i];
        nn_bwino_input_transform(v, d);
        nn_bwino_weight_transform(u, g);
        nn_bwino_output_transform(y, m);
        sandwich(vd, &BT[0][0], 4, 4, dd);
        sandwich(ud, &G[0][0], 4, 3, gd);
        sandwich(yd, &AT[0][0], 2, 4, md);
        /* each a sum of up to 4 (9) terms: float32's rounding of them */
        for (int i = 0; i < 16; i++) {
            assert_true(fabs(v[i] - vd[i]) <= 0x1p-21 * 8.0);
            assert_true(fabs(u[i] - ud[i]) <= 0x1p-22 * 9.0);
        }
        for (int i = 0; i < 4; i++) assert_true(fabs(y[i] - yd[i]) <= 0x1p-21 * 27.0);
        /* Winograd's identity: A' [(G g G') . (B' d B)] A is the 2 x 2 valid convolution */
        for (int i = 0; i < 16; i++) prod[i] = ud[i] * vd[i];
        sandwich(yd, &AT[0][0], 2, 4, prod);
        for (int oy = 0; oy < 2; oy++)
            for (int ox = 0; ox < 2; ox++) {
                double s = 0.0;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++)
                        s += gd[ky * 3 + kx] * dd[(oy + ky) * 4 + ox + kx];
                assert_true(fabs(yd[oy * 2 + ox] - s) <= 1e-12);
            }
    }
}

/* Output (b, oy, ox, n) of Winograd's algorithm as the kernel defines it, in double over the
 * bf16-rounded transformed operands (ref), with the float32 summation bound of its sums (sum),
 * and the direct convolution in double (direct) with the bound of the operands' rounding (err). */
static void reference(const conv3_case *k, int b, int oy, int ox, int n, double *ref, double *sum,
                      double *direct, double *err)
{
    const nn_conv_shape *s = &k->s;
    const int ty = oy / 2, tx = ox / 2, ay = oy % 2, ax = ox % 2;
    double mt[16] = {0}, mabs[16] = {0};
    for (int c = 0; c < s->C; c++) {
        float d[16], g[9], v[16], u[16];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                d[4 * i + j] = conv3_in_at(k, b, 2 * ty - s->pad + i, 2 * tx - s->pad + j, c);
        for (int t = 0; t < 9; t++) g[t] = k->w[((size_t)n * 9 + t) * s->C + c];
        nn_bwino_input_transform(v, d);
        nn_bwino_weight_transform(u, g);
        for (int e = 0; e < 16; e++) {
            mt[e] += bf(u[e]) * bf(v[e]);
            mabs[e] += fabs(bf(u[e]) * bf(v[e]));
        }
    }
    /* A' m A at (ay, ax): row ay of A' times column ax of A */
    double y = 0.0, yabs = 0.0, eabs = 0.0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            const double a = AT[ay][i] * AT[ax][j];
            y += a * mt[4 * i + j];
            yabs += fabs(a) * mabs[4 * i + j];
        }
    double dsum = 0.0;
    for (int c = 0; c < s->C; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const double t = (double)k->w[((size_t)n * 9 + ky * 3 + kx) * s->C + c] *
                                 conv3_in_at(k, b, oy - s->pad + ky, ox - s->pad + kx, c);
                dsum += t;
                eabs += fabs(t);
            }
    const double bias = k->b ? k->b[n] : 0.0;
    *ref = y + bias;
    *direct = dsum + bias;
    /* float32 chains of C / 2 pairs, then the output transform's 3 + 3 sums and the bias */
    *sum = 0x1p-23 * ((s->C / 2 + 8) * yabs + fabs(bias)) + 1e-30;
    /* each transformed operand within 2^-8 of itself after rounding: their product within
     * 2^-7, over the 16 terms' magnitudes (yabs), plus float32's own */
    *err = 0x1p-7 * yabs + 0x1p-20 * (eabs + fabs(bias));
}

static size_t out_index(const nn_conv_shape *s, int b, int oy, int ox, int n)
{
    return (((size_t)b * s->OH + oy) * s->OW + ox) * s->OC + n;
}

static void count_image(void *ctx, int b) { ((int *)ctx)[b]++; }

/* The kernels that run bf16 products here, AVX512_BF16 first; *ki the next to try */
static int next_kernel(int *ki, const char **name)
{
    static const nn_bisa order[] = {NN_BISA_AVX512BF16, NN_BISA_PORTABLE};
    return tu_next_bisa(ki, order, 2, name);
}

static void test_forward_against_ref(void **state)
{
    (void)state;
    static const int shapes[][7] = {
        /* B, H, W, C, OC, pad, bias */
        {3, 14, 14, 32, 64, 1, 1}, /* the teacher's second convolution */
        {2, 7, 9, 16, 16, 1, 1},   /* odd outputs: half-empty tiles; 16 columns */
        {1, 6, 5, 18, 40, 0, 0},   /* no padding, 18 channels (a pair past the vectors), 40
                                    * columns (a partial panel), no bias */
        {3, 4, 4, 48, 33, 2, 1},   /* padding 2 (a 6 x 6 output), 33 columns */
    };
    const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
    const char *kernel;
    for (int ki = 0; next_kernel(&ki, &kernel);)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int *q = shapes[si];
            conv3_case k = conv3_case_make(q[0], q[1], q[2], q[3], q[4], q[5], q[6], 40 + si);
            const nn_conv_shape *s = &k.s;
            float *out = xd_xmalloc(sizeof(float) * k.n_out);
            uint32_t *wpk = xd_xmalloc_aligned(sizeof(uint32_t) * nn_bwino_packed_size(s));
            nn_bwino_pack(wpk, k.w, s);
            int *seen = xd_xcalloc((size_t)s->B, sizeof(int));
            nn_bwino_forward(out, k.inp, k.w, wpk, k.b, s, count_image, seen, NULL);
            for (int b = 0; b < s->B; b++) assert_int_equal(seen[b], 1);
            double worst = 0.0, worst_direct = 0.0;
            for (int b = 0; b < s->B; b++)
                for (int oy = 0; oy < s->OH; oy++)
                    for (int ox = 0; ox < s->OW; ox++)
                        for (int n = 0; n < s->OC; n++) {
                            double ref, sum, direct, err;
                            reference(&k, b, oy, ox, n, &ref, &sum, &direct, &err);
                            const double got = out[out_index(s, b, oy, ox, n)];
                            if (fabs(got - ref) > sum || fabs(got - direct) > err)
                                fail_msg("%s, shape %zu, (%d, %d, %d, %d): %.9g, reference %.9g "
                                         "(bound %.3g), direct %.9g (bound %.3g)",
                                         kernel, si, b, oy, ox, n, got, ref, sum, direct, err);
                            if (fabs(got - ref) / sum > worst) worst = fabs(got - ref) / sum;
                            if (fabs(got - direct) / err > worst_direct)
                                worst_direct = fabs(got - direct) / err;
                        }
            print_message("%s, shape %zu: worst error %.3f of the summation bound, %.3f of the "
                          "rounding bound from the direct convolution\n",
                          kernel, si, worst, worst_direct);
            /* unpacked weights: packed for the call, the same bits */
            float *again = xd_xmalloc(sizeof(float) * k.n_out);
            nn_bwino_forward(again, k.inp, k.w, NULL, k.b, s, NULL, NULL, NULL);
            assert_memory_equal(again, out, sizeof(float) * k.n_out);
            free(again);
            free(seen);
            free(wpk);
            free(out);
            conv3_case_free(&k);
        }
    nn_mm_precision_set(prec);
}

static void bwino(float *out, const conv3_case *k, const nn_relu_pool *pool)
{
    nn_bwino_forward(out, k->inp, k->w, NULL, k->b, &k->s, NULL, NULL, pool);
}

static void test_bits_at_one_two_and_three_threads(void **state)
{
    (void)state;
    const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
    const char *kernel;
    for (int ki = 0; next_kernel(&ki, &kernel);) conv3_check_threads(bwino, kernel);
    nn_mm_precision_set(prec);
}

/* The pool made tile by tile: the bits nn_relu_maxpool_forward gives from the output, NaN and
 * negative windows included, at 1 and 2 threads; out written as without it. */
/* The kernel's tile code (its vector paths where built with AVX-512) gives the bits of the
 * per-channel transforms: the input transform rounded in pairs, subnormal values included (the
 * conversion's other path); the output transform + bias, and the pool of the ReLUs. */
static void test_tiles_bit_for_bit(void **state)
{
    (void)state;
    static const int channels[] = {16, 18, 48};
    for (size_t ci = 0; ci < sizeof channels / sizeof channels[0]; ci++)
        for (int tiny = 0; tiny < 2; tiny++) {
            const int C = channels[ci];
            float *in = xd_xmalloc(sizeof(float) * 16 * (size_t)C);
            tu_fill_uniform(in, 16 * (size_t)C, -2.0f, 2.0f, 300 + ci);
            /* full mantissas (the fill's values lie on a grid whose sums are exact, in any
             * order), and subnormal sums and differences */
            for (int i = 0; i < 16 * C; i++) in[i] = in[i] / 3.0f * (tiny ? 0x1p-127f : 1.0f);
            const float *src[16];
            for (int k = 0; k < 16; k++) src[k] = in + (size_t)k * C;
            const size_t ldv = (size_t)C / 2 + 3;
            uint32_t *v = xd_xcalloc(16 * ldv, sizeof(uint32_t));
            nn_bwino_input_tile(v, ldv, src, C);
            for (int c = 0; c < C; c += 2) {
                float d0[16], d1[16], v0[16], v1[16];
                for (int k = 0; k < 16; k++) d0[k] = src[k][c], d1[k] = src[k][c + 1];
                nn_bwino_input_transform(v0, d0);
                nn_bwino_input_transform(v1, d1);
                for (int e = 0; e < 16; e++) {
                    const uint32_t want = (uint32_t)nn_bf16_round(v0[e]) |
                                          (uint32_t)nn_bf16_round(v1[e]) << 16;
                    if (v[e * ldv + (size_t)c / 2] != want)
                        fail_msg("input tile, %d channels%s: position %d, pair %d: %08x, want %08x",
                                 C, tiny ? " (subnormal)" : "", e, c / 2,
                                 v[e * ldv + (size_t)c / 2], want);
                }
            }
            free(v);
            free(in);
        }
    for (int OC = 8; OC <= 40; OC += 16) /* a masked vector alone; two whole and a masked one */
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const size_t estride = (size_t)OC + 5;
            float *m = xd_xmalloc(sizeof(float) * 16 * estride);
            float *bias = xd_xmalloc(sizeof(float) * OC);
            float *out = xd_xmalloc(sizeof(float) * 4 * OC);
            float *pooled = xd_xmalloc(sizeof(float) * OC);
            tu_fill_uniform(m, 16 * estride, -1.0f, 1.0f, 400 + (uint64_t)OC);
            tu_fill_uniform(bias, (size_t)OC, -1.0f, 1.0f, 500 + (uint64_t)OC);
            for (size_t i = 0; i < 16 * estride; i++) m[i] /= 3.0f; /* full mantissas, above */
            m[3] = NAN;
            float *dst[4] = {out, out + OC, out + 2 * OC, out + 3 * OC};
            nn_bwino_output_tile(dst, pooled, m, estride, with_bias ? bias : NULL, OC);
            for (int n = 0; n < OC; n++) {
                float mv[16], y[4];
                for (int e = 0; e < 16; e++) mv[e] = m[e * estride + (size_t)n];
                nn_bwino_output_transform(y, mv);
                float best = 0.0f;
                for (int k = 0; k < 4; k++) {
                    if (with_bias) y[k] = y[k] + bias[n];
                    assert_memory_equal(&dst[k][n], &y[k], sizeof(float));
                    const float r = y[k] > 0.0f ? y[k] : 0.0f;
                    best = k == 0 || r > best ? r : best;
                }
                assert_memory_equal(&pooled[n], &best, sizeof(float));
            }
            free(m);
            free(bias);
            free(out);
            free(pooled);
        }
}

static void test_pooled_tile_by_tile(void **state)
{
    (void)state;
    const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
    const char *kernel;
    for (int ki = 0; next_kernel(&ki, &kernel);) conv3_check_pooled(bwino, kernel);
    nn_mm_precision_set(prec);
}

static void test_what_it_takes(void **state)
{
    (void)state;
    nn_conv_shape s = {.B = 2, .H = 8, .W = 8, .C = 32, .OC = 32, .KH = 3, .KW = 3, .stride = 1,
                       .pad = 1, .bias = 1, .winograd = 1};
    assert_int_equal(nn_conv_shape_init(&s), 0);
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    assert_false(nn_bwino_takes(&s));
    nn_mm_precision_set(NN_PREC_BF16);
    if (nn_bgemm_use(NN_BISA_AVX512BF16) == NN_BISA_AVX512BF16) {
        assert_true(nn_bwino_takes(&s));
        nn_conv_shape t = s;
        t.winograd = 0; /* a training forward */
        assert_false(nn_bwino_takes(&t));
        t = s;
        t.stride = 2;
        assert_false(nn_bwino_takes(&t));
        t = s;
        t.KH = t.KW = 5;
        assert_false(nn_bwino_takes(&t));
        t = s;
        t.C = 15;
        assert_false(nn_bwino_takes(&t));
        t = s;
        t.C = 8;
        assert_false(nn_bwino_takes(&t));
        t = s;
        t.OC = 8;
        assert_false(nn_bwino_takes(&t));
    }
    nn_bgemm_use(NN_BISA_PORTABLE);
    assert_false(nn_bwino_takes(&s));
    if (nn_bgemm_use(NN_BISA_AMX) == NN_BISA_AMX) assert_false(nn_bwino_takes(&s));
    nn_bgemm_use(NN_BISA_COUNT);
    nn_mm_precision_set(prec);
}

/* A model in bf16: its evaluation forward's convolution gives nn_bwino_forward's bits, its
 * training forward the direct kernel's (nn_bconv_forward), and the two differ. */
static void test_only_evaluation_forwards(void **state)
{
    (void)state;
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    if (nn_bgemm_use(NN_BISA_AVX512BF16) != NN_BISA_AVX512BF16) {
        nn_bgemm_use(NN_BISA_COUNT);
        nn_mm_precision_set(prec);
        skip();
    }
    enum { B = 5 };
    xd_err e;
    nn_model m;
    TU_OK(nn_model_build(&m, "input h=9 w=9 c=16; conv2d name=c out=32 k=3 pad=1; flatten; "
                             "linear out=3 head",
                         B, 4, &e));
    m.precision = m.eval_precision = NN_PREC_BF16;
    const int c = nn_model_find(&m, "c");
    assert_true(c >= 0);
    const nn_node *nd = &m.nodes[c];
    const size_t nx = (size_t)B * 81 * 16, ny = (size_t)B * 81 * 32;
    float *x = xd_xmalloc(sizeof(float) * nx), *want = xd_xmalloc(sizeof(float) * ny),
          *eval = xd_xmalloc(sizeof(float) * ny);
    tu_fill_uniform(x, nx, -1.0f, 1.0f, 5);
    nn_conv_shape s = {.B = B, .H = 9, .W = 9, .C = 16, .OC = 32, .KH = 3, .KW = 3, .stride = 1,
                       .pad = 1, .bias = 1, .winograd = 1};
    assert_int_equal(nn_conv_shape_init(&s), 0);
    nn_mm_precision_set(NN_PREC_BF16);
    assert_true(nn_bwino_takes(&s));
    nn_bwino_forward(want, x, m.param + nd->w_off, NULL, m.param + nd->b_off, &s, NULL, NULL,
                     NULL);
    nn_mm_precision_set(NN_PREC_FLOAT32);
    nn_model_forward(&m, x, B, NULL);
    memcpy(eval, nn_model_out(&m, c), sizeof(float) * ny);
    assert_memory_equal(eval, want, sizeof(float) * ny);
    const nn_run train = {.training = 1};
    nn_model_forward(&m, x, B, &train);
    s.winograd = 0;
    nn_mm_precision_set(NN_PREC_BF16);
    nn_bconv_forward(want, x, m.param + nd->w_off, NULL, m.param + nd->b_off, &s, NULL, NULL);
    nn_mm_precision_set(NN_PREC_FLOAT32);
    assert_memory_equal(nn_model_out(&m, c), want, sizeof(float) * ny);
    assert_memory_not_equal(eval, want, sizeof(float) * ny);
    /* packed for bf16 inference (Winograd's transformed weights): inference still gives the
     * eval forward's bits, and a training forward in bf16 the direct kernel's, not reading them */
    TU_OK(nn_model_pack_exact(&m, &e));
    assert_non_null(m.nodes[c].wpb);
    nn_model_infer(&m, x, B, NULL);
    nn_model_forward(&m, x, B, &train);
    assert_memory_equal(nn_model_out(&m, c), want, sizeof(float) * ny);
    nn_model_unpack(&m);
    free(x);
    free(want);
    free(eval);
    nn_model_free(&m);
    nn_bgemm_use(NN_BISA_COUNT);
    nn_mm_precision_set(prec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transforms),
        cmocka_unit_test(test_forward_against_ref),
        cmocka_unit_test(test_bits_at_one_two_and_three_threads),
        cmocka_unit_test(test_tiles_bit_for_bit),
        cmocka_unit_test(test_pooled_tile_by_tile),
        cmocka_unit_test(test_what_it_takes),
        cmocka_unit_test(test_only_evaluation_forwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
