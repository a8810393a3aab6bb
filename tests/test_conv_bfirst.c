/* nn/conv_bfirst: a first convolution (one channel, 3 x 3) in bf16 evaluation forwards. The
 * convolution against a double-precision reference over the bf16-rounded image and weights,
 * within the float32 summation bound of its five pair products and bias, on shapes with rows
 * shorter than a tile, overlapped tiles, no padding and padding 2, 16 to 64 outputs, no bias; the
 * same bits with weights packed for the call or once, at 1, 2 and 3 threads; the ReLU and max
 * pool made as the windows are, with the pool's bits (odd sizes, a NaN pixel); what it takes and
 * that a training forward keeps float32; and a model's inference, its evaluation forward and
 * what it leaves unwritten (made when asked for). */
#include "tests/support/testutil.h"
#include "tests/support/convfix.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "nn/conv_bfirst.h"
#include "nn/gemm_bf16.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/mm.h"

static double bf(float x) { return (double)nn_bf16_float(nn_bf16_round(x)); }

/* Whether the AVX512_BF16 kernel runs here (it is then the one in use); else the test skips */
static int use_avx512bf16(void)
{
    if (nn_bgemm_use(NN_BISA_AVX512BF16) == NN_BISA_AVX512BF16) return 1;
    nn_bgemm_use(NN_BISA_COUNT);
    return 0;
}

/* nn_conv2d_forward of k as an evaluation forward in bf16 (cols and wext its own), wpb packed
 * once or NULL */
static void forward(const conv3_case *k, const uint32_t *wpb, float *out)
{
    const size_t nc = nn_conv_cols_size(&k->s), nw = nn_conv_wext_size(&k->s);
    float *cols = xd_xmalloc(sizeof(float) * (nc ? nc : 1)),
          *wext = xd_xmalloc(sizeof(float) * (nw ? nw : 1));
    const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
    nn_conv2d_forward(out, cols, wext, k->inp, k->w, NULL, wpb, k->b, &k->s);
    nn_mm_precision_set(prec);
    free(cols);
    free(wext);
}

static const int shapes[][6] = {
    /* B, H, W, OC, pad, bias */
    {3, 28, 28, 32, 1, 1}, /* the Fashion teacher's first convolution */
    {2, 9, 13, 16, 0, 0},  /* no padding: rows of 11, shorter than a tile; 16 outputs; no bias */
    {2, 5, 20, 48, 2, 1},  /* padding 2: rows of 22 (the last tile overlaps); 32 + 16 outputs */
    {1, 12, 31, 64, 1, 1}, /* rows of 31, odd; 64 outputs */
};
enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };

static void test_forward_against_ref(void **state)
{
    (void)state;
    if (!use_avx512bf16()) skip();
    for (int si = 0; si < N_SHAPES; si++) {
        const int *q = shapes[si];
        conv3_case k = conv3_case_make(q[0], q[1], q[2], 1, q[3], q[4], q[5], 60 + (uint64_t)si);
        const nn_conv_shape *s = &k.s;
        float *out = xd_xmalloc(sizeof(float) * k.n_out);
        forward(&k, NULL, out);
        double worst = 0.0;
        for (int b = 0; b < s->B; b++)
            for (int oy = 0; oy < s->OH; oy++)
                for (int ox = 0; ox < s->OW; ox++)
                    for (int n = 0; n < s->OC; n++) {
                        const double bias = k.b ? k.b[n] : 0.0;
                        double ref = bias, mag = fabs(bias);
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                const double t =
                                    bf(k.w[(size_t)n * 9 + ky * 3 + kx]) *
                                    bf(conv3_in_at(&k, b, oy - s->pad + ky, ox - s->pad + kx, 0));
                                ref += t;
                                mag += fabs(t);
                            }
                        /* five pair products (two roundings each at most) after the bias */
                        const double bound = 10 * 0x1p-24 * mag + 1e-30;
                        const double got =
                            out[(((size_t)b * s->OH + oy) * s->OW + ox) * s->OC + n];
                        if (fabs(got - ref) > bound)
                            fail_msg("shape %d, (%d, %d, %d, %d): %.9g, reference %.9g (bound "
                                     "%.3g)",
                                     si, b, oy, ox, n, got, ref, bound);
                        if (fabs(got - ref) / bound > worst) worst = fabs(got - ref) / bound;
                    }
        print_message("shape %d: worst error %.3f of the summation bound\n", si, worst);
        /* packed once: the same bits */
        uint32_t *wpb = xd_xmalloc(sizeof(uint32_t) * nn_bfirst_packed_size(s));
        nn_bfirst_pack(wpb, k.w, s);
        float *again = xd_xmalloc(sizeof(float) * k.n_out);
        forward(&k, wpb, again);
        assert_memory_equal(again, out, sizeof(float) * k.n_out);
        /* and at 2 and 3 threads */
        const int threads = xd_threads_get();
        for (int t = 2; t <= 3; t++) {
            xd_threads_set(t);
            memset(again, 0, sizeof(float) * k.n_out);
            forward(&k, t == 2 ? NULL : wpb, again);
            assert_memory_equal(again, out, sizeof(float) * k.n_out);
        }
        xd_threads_set(threads);
        free(again);
        free(wpb);
        free(out);
        conv3_case_free(&k);
    }
    nn_bgemm_use(NN_BISA_COUNT);
}

/* The ReLU and 2 x 2 max pool of inference (no ReLU output, no argmax) made row pair by row
 * pair: nn_relu_maxpool_forward's bits over the convolution's output, which is then left as it
 * was (keep_out 0); odd output sizes (the last row or column no window covers), and a NaN pixel
 * (its windows' outputs NaN, pooled as 0 after the ReLU). At 1 and 2 threads. */
static void test_pooled_as_made(void **state)
{
    (void)state;
    if (!use_avx512bf16()) skip();
    const int threads = xd_threads_get();
    for (int si = 0; si < N_SHAPES; si++)
        for (int t = 1; t <= 2; t++) {
            const int *q = shapes[si];
            conv3_case k =
                conv3_case_make(q[0], q[1], q[2], 1, q[3], q[4], q[5], 70 + (uint64_t)si);
            const nn_conv_shape *s = &k.s;
            if (si == 1) k.inp[5 * s->W + 4] = NAN;
            nn_pool_shape ps = {.B = s->B, .H = s->OH, .W = s->OW, .C = s->OC, .k = 2,
                                .stride = 2};
            assert_int_equal(nn_pool_shape_init(&ps), 0);
            const size_t n_pool = (size_t)s->B * ps.OH * ps.OW * s->OC;
            float *out = xd_xmalloc(sizeof(float) * k.n_out),
                  *want = xd_xmalloc(sizeof(float) * n_pool),
                  *got = xd_xmalloc(sizeof(float) * n_pool);
            xd_threads_set(t);
            forward(&k, NULL, out);
            nn_relu_maxpool_forward(NULL, want, NULL, out, &ps);
            const size_t nc = nn_conv_cols_size(s), nw = nn_conv_wext_size(s);
            float *cols = xd_xmalloc(sizeof(float) * nc),
                  *wext = xd_xmalloc(sizeof(float) * (nw ? nw : 1));
            float *kept = xd_xmalloc(sizeof(float) * k.n_out);
            for (size_t i = 0; i < k.n_out; i++) kept[i] = -7.0f;
            const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
            const nn_relu_pool pool = {NULL, got, NULL, NULL, &ps};
            assert_true(nn_bfirst_pools(s, &pool));
            int written = -1;
            nn_conv2d_relu_maxpool_forward(kept, cols, wext, k.inp, k.w, NULL, NULL, k.b, s, NULL,
                                           got, NULL, &ps, 0, &written);
            nn_mm_precision_set(prec);
            /* pooled as made, the output left as it was; at 2 threads, where cols has not the
             * room for the images' pairs and a thread's, the output is written and pooled after */
            if (t == 1) assert_int_equal(written, 0);
            if (written) assert_memory_equal(kept, out, sizeof(float) * k.n_out);
            else
                for (size_t i = 0; i < k.n_out; i++) assert_true(kept[i] == -7.0f);
            if (memcmp(got, want, sizeof(float) * n_pool) != 0)
                fail_msg("shape %d, %d threads: not nn_relu_maxpool_forward's bits", si, t);
            if (si == 1) { /* the NaN reached the output, and the pool made it 0 */
                int nans = 0;
                for (size_t i = 0; i < k.n_out; i++) nans += isnan(out[i]);
                assert_true(nans > 0);
                for (size_t i = 0; i < n_pool; i++) assert_false(isnan(got[i]));
            }
            free(kept);
            free(cols);
            free(wext);
            free(got);
            free(want);
            free(out);
            conv3_case_free(&k);
        }
    xd_threads_set(threads);
    nn_bgemm_use(NN_BISA_COUNT);
}

static void test_what_it_takes(void **state)
{
    (void)state;
    nn_conv_shape s = {.B = 2, .H = 8, .W = 8, .C = 1, .OC = 32, .KH = 3, .KW = 3, .stride = 1,
                       .pad = 1, .bias = 1, .winograd = 1};
    assert_int_equal(nn_conv_shape_init(&s), 0);
    /* what it does not take: a training forward (float32 then, as before), 2 channels, outputs
     * not a multiple of 16, stride 2, a 5 x 5 kernel */
    static const int others[][5] = {
        /* winograd, C, OC, stride, K */
        {0, 1, 32, 1, 3}, {1, 2, 32, 1, 3}, {1, 1, 24, 1, 3}, {1, 1, 32, 2, 3}, {1, 1, 32, 1, 5},
    };
    const nn_precision prec = nn_mm_precision_set(NN_PREC_FLOAT32);
    if (nn_bgemm_use(NN_BISA_AVX512BF16) == NN_BISA_AVX512BF16) {
        assert_true(nn_bfirst_shape(&s));
        assert_false(nn_bfirst_takes(&s)); /* float32 products now */
        assert_int_equal(nn_precision_of_conv(&s, NN_PREC_BF16), NN_PREC_BF16);
        nn_mm_precision_set(NN_PREC_BF16);
        assert_true(nn_bfirst_takes(&s));
        assert_int_equal(nn_bfirst_packed_size(&s), 5 * 32);
        for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
            nn_conv_shape t = s;
            t.winograd = others[i][0];
            t.C = others[i][1];
            t.OC = others[i][2];
            t.stride = others[i][3];
            t.KH = t.KW = others[i][4];
            assert_int_equal(nn_conv_shape_init(&t), 0);
            assert_false(nn_bfirst_takes(&t));
            assert_int_equal(nn_precision_of_conv(&t, NN_PREC_BF16), NN_PREC_FLOAT32);
        }
    }
    nn_mm_precision_set(NN_PREC_BF16);
    nn_bgemm_use(NN_BISA_PORTABLE);
    assert_false(nn_bfirst_takes(&s));
    assert_int_equal(nn_precision_of_conv(&s, NN_PREC_BF16), NN_PREC_FLOAT32);
    if (nn_bgemm_use(NN_BISA_AMX) == NN_BISA_AMX) assert_false(nn_bfirst_takes(&s));
    nn_bgemm_use(NN_BISA_COUNT);
    nn_mm_precision_set(prec);
}

/* A model whose evaluation runs in bf16: inference (packed, pooled as made, the convolution and
 * its ReLU left unwritten) gives its evaluation forward's bits (unpacked, rows written) at 1 and
 * 2 threads; asked for after inference, the convolution's output is made as the evaluation
 * forward makes it (bf16, not a training forward's float32), and so is its ReLU's, both when
 * inference left it unwritten and once it was asked for (written whole from then on, though
 * inference takes the images in chunks); a training forward keeps float32. */
static void test_model(void **state)
{
    (void)state;
    if (!use_avx512bf16()) skip();
    enum { B = 7, H = 28, W = 26, OC = 32 }; /* inference takes these images in chunks */
    xd_err e;
    nn_model m;
    TU_OK(nn_model_build(&m,
                         "input h=28 w=26 c=1; conv2d name=c out=32 k=3 pad=1; relu name=r; "
                         "maxpool k=2; flatten; linear out=5 name=l head",
                         B, 4, &e));
    m.precision = m.eval_precision = NN_PREC_BF16;
    const int c = nn_model_find(&m, "c"), r = nn_model_find(&m, "r"), l = nn_model_find(&m, "l");
    const size_t nx = (size_t)B * H * W, ny = (size_t)B * 5, nc = (size_t)B * H * W * OC;
    float *x = xd_xmalloc(sizeof(float) * nx), *want = xd_xmalloc(sizeof(float) * ny),
          *f32 = xd_xmalloc(sizeof(float) * nc), *ev = xd_xmalloc(sizeof(float) * nc);
    tu_fill_uniform(x, nx, -1.0f, 1.0f, 9);
    /* the training forward's convolution: float32's */
    const nn_run train = {.training = 1};
    nn_model_forward(&m, x, B, &train);
    memcpy(f32, nn_model_out(&m, c), sizeof(float) * nc);
    nn_conv_shape s = {.B = B, .H = H, .W = W, .C = 1, .OC = OC, .KH = 3, .KW = 3, .stride = 1,
                       .pad = 1, .bias = 1};
    assert_int_equal(nn_conv_shape_init(&s), 0);
    float *ref = xd_xmalloc(sizeof(float) * nc);
    nn_conv2d_forward_ref(ref, x, m.param + m.nodes[c].w_off, m.param + m.nodes[c].b_off, &s);
    for (size_t i = 0; i < nc; i++) assert_true(fabsf(f32[i] - ref[i]) <= 1e-5f);
    /* the evaluation forward's: bf16's, asked for once it ran */
    m.nodes[c].asked = 0;
    nn_model_forward(&m, x, B, NULL);
    memcpy(want, nn_model_out(&m, l), sizeof(float) * ny);
    memcpy(ev, nn_model_out(&m, c), sizeof(float) * nc);
    assert_memory_not_equal(ev, f32, sizeof(float) * nc);
    nn_model_forward(&m, x, B, NULL); /* asked for: written now, the same bits */
    assert_false(m.nodes[c].stale);
    assert_memory_equal(nn_model_out(&m, c), ev, sizeof(float) * nc);
    const int threads = xd_threads_get();
    for (int t = 1; t <= 2; t++)
        for (int asked = 0; asked < 2; asked++) {
            xd_threads_set(t);
            m.nodes[c].asked = asked;
            TU_OK(nn_model_pack_exact(&m, &e));
            assert_non_null(m.nodes[c].wpb);
            nn_model_infer(&m, x, B, NULL);
            assert_int_equal(m.nodes[c].stale, !asked);
            assert_true(m.nodes[r].stale);
            if (memcmp(nn_model_out(&m, l), want, sizeof(float) * ny) != 0)
                fail_msg("%d threads: inference is not the evaluation forward's bits", t);
            assert_memory_equal(nn_model_out(&m, c), ev, sizeof(float) * nc);
            const float *relu = nn_model_out(&m, r);
            for (size_t i = 0; i < nc; i++) assert_true(relu[i] == (ev[i] > 0.0f ? ev[i] : 0.0f));
            nn_model_unpack(&m);
        }
    xd_threads_set(threads);
    free(x);
    free(want);
    free(f32);
    free(ev);
    free(ref);
    nn_model_free(&m);
    nn_bgemm_use(NN_BISA_COUNT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_against_ref),
        cmocka_unit_test(test_pooled_as_made),
        cmocka_unit_test(test_what_it_takes),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
