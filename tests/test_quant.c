/* nn/quant, nn/qgemm and int8 checkpoints: fake quantisation forward and backward, moving ranges,
 * the quantised form of a description, the integer kernels (VNNI and the portable one, each
 * forced) against a plain reference, the integer engine against the fake-quant forward on random
 * layers and whole models, int8 checkpoints (round trip, damaged scales and ranges, wrong dtypes),
 * the recipe's quantize: section, resuming a quantised run, and `xdistill quantize` with eval. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/recipe.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/qgemm.h"
#include "nn/quant.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

// ----------------------------------------------------------------------------------------------
// fake quantisation

static void test_act_forward_backward(void **state)
{
    (void)state;
    /* signed, range 1.27: s = 0.01, levels -128..127; unsigned, range 2.55: s = 0.01, 0..255 */
    const float x[6] = {0.123f, -0.456f, 2.0f, -2.0f, 0.004f, -0.3f};
    float y[6], g[6] = {0};
    uint8_t codes[6];
    nn_quant_act(codes, y, x, 6, 1.27f, 8, 0);
    const float want[6] = {0.12f, -0.46f, 1.27f, -1.28f, 0.0f, -0.30f};
    const uint8_t want_codes[6] = {140, 82, 255, 0, 128, 98};
    tu_assert_close(y, want, 6, 1e-6, 1e-7, "signed levels");
    assert_memory_equal(codes, want_codes, 6);
    nn_quant_act(codes, y, x, 6, 2.55f, 8, 1);
    const float want_u[6] = {0.12f, 0.0f, 2.0f, 0.0f, 0.0f, 0.0f};
    tu_assert_close(y, want_u, 6, 1e-6, 1e-7, "unsigned levels");
    assert_int_equal(codes[0], 12);
    assert_int_equal(codes[2], 200);
    assert_int_equal(codes[1], 0);
    /* clipped straight-through: the gradient passes inside [-1.28, 1.27] and stops outside */
    const float dy[6] = {1, 2, 3, 4, 5, 6};
    nn_quant_act_backward(g, dy, x, 6, 1.27f, 8, 0);
    const float want_g[6] = {1, 2, 0, 0, 5, 6};
    assert_memory_equal(g, want_g, sizeof g);
    /* not calibrated yet: values and gradients pass unchanged */
    nn_quant_act(NULL, y, x, 6, 0.0f, 8, 0);
    assert_memory_equal(y, x, sizeof y);
    /* ranges: the first batch sets it, later ones move it by ema; calibration keeps the max */
    const float b1[3] = {0.5f, -2.0f, 1.0f}, b2[2] = {4.0f, 0.0f};
    assert_true(nn_quant_range_update(0.0f, b1, 3, 0.1f) == 2.0f);
    assert_true(fabsf(nn_quant_range_update(2.0f, b2, 2, 0.1f) - 2.2f) < 1e-6f);
    assert_true(nn_quant_range_update(3.0f, b1, 3, 0.0f) == 3.0f);
    assert_true(nn_quant_range_update(1.0f, b2, 2, 0.0f) == 4.0f);
}

static void test_weights_per_channel(void **state)
{
    (void)state;
    const float w[3 * 4] = {0.5f, -1.27f, 0.01f, 0.3f,  /* max 1.27: s = 0.01 */
                            0.0f, 0.0f, 0.0f, 0.0f,     /* a zero row */
                            2.54f, -1.0f, 0.0f, 0.02f}; /* s = 0.02 */
    int8_t q[12];
    float scale[3], fake[12];
    nn_quant_weights(q, scale, w, 3, 4, 8);
    nn_quant_weights_fake(fake, w, 3, 4, 8);
    assert_true(fabsf(scale[0] - 0.01f) < 1e-8f && scale[1] == 1.0f && fabsf(scale[2] - 0.02f) < 1e-8f);
    const int8_t want[12] = {50, -127, 1, 30, 0, 0, 0, 0, 127, -50, 0, 1};
    assert_memory_equal(q, want, sizeof q);
    for (int i = 0; i < 12; i++) assert_true(fake[i] == scale[i / 4] * (float)q[i]);
}

/* A layer with wbits reads its weights fake-quantised, in forward and in backward, and passes
 * the weight gradient straight through: the same numbers as a float layer given those weights. */
static void test_model_fake_forward_backward(void **state)
{
    (void)state;
    const char *qd = "input h=5 w=5 c=3; fakequant name=q bits=8 ema=0.5; conv2d name=c out=4 k=3 "
                     "pad=1 wbits=8; relu; flatten; linear name=fc out=3 wbits=8 head";
    const char *fd = "input h=5 w=5 c=3; fakequant name=q bits=8 ema=0.5; conv2d name=c out=4 k=3 "
                     "pad=1; relu; flatten; linear name=fc out=3 head";
    nn_model a, b;
    xd_err e;
    TU_OK(nn_model_build(&a, qd, 4, 3, &e));
    TU_OK(nn_model_build(&b, fd, 4, 3, &e));
    assert_int_equal(a.n_param, b.n_param);
    const char *names[2] = {"c.weight", "fc.weight"};
    for (int k = 0; k < 2; k++) {
        const nn_param *p = nn_model_param(&b, names[k]);
        nn_quant_weights_fake(nn_model_param_data(&b, p), nn_model_param_data(&a, nn_model_param(&a, names[k])),
                              (int)p->shape[0], (int)(p->n / (size_t)p->shape[0]), 8);
    }
    float x[4 * 75];
    tu_fill_uniform(x, 4 * 75, -2.0f, 2.0f, 5);
    const nn_run train = {.training = 1};
    nn_model_forward(&a, x, 4, &train);
    nn_model_forward(&b, x, 4, &train);
    /* the first batch sets the range to max|x|; both models saw the same batch */
    assert_true(a.state[0] > 1.9f && a.state[0] == b.state[0]);
    const int h = nn_model_default_head(&a);
    assert_memory_equal(nn_model_out(&a, h), nn_model_out(&b, h), sizeof(float) * 12);
    float r[12];
    tu_fill_uniform(r, 12, -1.0f, 1.0f, 6);
    memcpy(nn_model_dout(&a, h), r, sizeof r);
    memcpy(nn_model_dout(&b, h), r, sizeof r);
    nn_model_backward(&a);
    nn_model_backward(&b);
    assert_memory_equal(a.grad, b.grad, sizeof(float) * a.n_param);
    /* the float weights themselves did not change, only what the products read */
    assert_memory_not_equal(a.param, b.param, sizeof(float) * a.n_param);
    /* evaluation keeps the range; a second training batch moves it by ema */
    const float r0 = a.state[0];
    for (int i = 0; i < 4 * 75; i++) x[i] *= 2.0f;
    nn_model_forward(&a, x, 4, NULL);
    assert_true(a.state[0] == r0);
    nn_model_forward(&a, x, 4, &train);
    assert_true(fabsf(a.state[0] - 1.5f * r0) < 1e-5f);
    nn_model_free(&a);
    nn_model_free(&b);
}

static void test_quant_desc(void **state)
{
    (void)state;
    xd_err e;
    char *q, *q2;
    const char *cnn = "input h=8 w=8 c=1; conv2d name=conv1 out=4 k=3 pad=1; relu name=r1; "
                      "maxpool k=2 name=pool1; flatten; dropout p=0.1; linear out=4 name=logits head";
    TU_OK(nn_quant_desc(cnn, 0.02f, &q, &e));
    assert_non_null(strstr(q, "fakequant name=conv1_in bits=8 ema=0.0199999996; conv2d name=conv1"));
    assert_non_null(strstr(q, "dropout name=dropout4 p=0.100000001; fakequant name=logits_in bits=8 "
                              "ema=0.0199999996 unsigned; linear name=logits"));
    assert_non_null(strstr(q, "wbits=8; relu name=r1"));
    /* the parameter names stay; applying it again changes nothing */
    nn_model m;
    TU_OK(nn_model_plan(&m, q, 1, &e));
    assert_non_null(nn_model_param(&m, "conv1.weight"));
    assert_non_null(nn_model_param(&m, "conv1_in.range"));
    nn_model_free(&m);
    TU_OK(nn_quant_desc(q, 0.5f, &q2, &e));
    assert_string_equal(q, q2);
    free(q2);
    free(q);
    /* a model quantised in part, or with nothing to quantise, is refused */
    assert_int_equal(nn_quant_desc("input h=2 w=2 c=1; flatten; linear out=2 wbits=8; linear out=2",
                                   0.1f, &q, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "in part");
    assert_int_equal(nn_quant_desc("input h=2 w=2 c=1; flatten; relu", 0.1f, &q, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no linear or conv2d");
    /* descriptions without the new options print as before */
    TU_OK(nn_model_plan(&m, "input h=2 w=2 c=1; fakequant bits=4; flatten; linear out=2", 1, &e));
    assert_null(strstr(m.desc, "ema"));
    assert_null(strstr(m.desc, "wbits"));
    nn_model_free(&m);
}

// ----------------------------------------------------------------------------------------------
// integer kernels

static void ref_qgemm(int32_t *C, const uint8_t *A, const int8_t *W, int M, int N, int K)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int64_t s = 0;
            for (int k = 0; k < K; k++) s += (int64_t)A[(size_t)m * K + k] * W[(size_t)n * K + k];
            C[(size_t)m * N + n] = (int32_t)s;
        }
}

static void test_qgemm_kernels(void **state)
{
    (void)state;
    const int shapes[][3] = {{1, 1, 1},   {1, 10, 784}, {3, 17, 5},  {4, 16, 4},
                             {5, 33, 71}, {9, 8, 72},   {64, 128, 784}, {7, 40, 3}};
    xd_rng r = xd_rng_make(9, 0, 0);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
        uint8_t *A = xd_xmalloc((size_t)M * K);
        int8_t *W = xd_xmalloc((size_t)N * K);
        int32_t *C = xd_xmalloc(sizeof(int32_t) * (size_t)M * N), *R = xd_xmalloc(sizeof(int32_t) * (size_t)M * N);
        /* extremes included: 255 x -127 everywhere in the first row */
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = i < (size_t)K ? 255 : (uint8_t)(xd_rng_u32(&r) & 255);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = i < (size_t)K ? -127 : (int8_t)((int)(xd_rng_u32(&r) % 255) - 127);
        ref_qgemm(R, A, W, M, N, K);
        nn_qweights p;
        nn_qweights_pack(&p, W, N, K);
        for (int isa = 0; isa < NN_QISA_COUNT; isa++) {
            if (nn_qgemm_use((nn_qisa)isa) != (nn_qisa)isa) continue; /* not on this CPU */
            memset(C, 0x55, sizeof(int32_t) * (size_t)M * N);
            nn_qgemm(C, N, A, K, M, &p);
            if (memcmp(C, R, sizeof(int32_t) * (size_t)M * N) != 0)
                fail_msg("%s kernel differs from the reference at M=%d N=%d K=%d",
                         nn_qisa_name((nn_qisa)isa), M, N, K);
        }
        nn_qgemm_use(NN_QISA_COUNT);
        nn_qweights_free(&p);
        free(A);
        free(W);
        free(C);
        free(R);
    }
    assert_int_equal(nn_qgemm_use(NN_QISA_PORTABLE), NN_QISA_PORTABLE);
    assert_int_equal(nn_qgemm_use(NN_QISA_COUNT), nn_qgemm_best());
    print_message("integer kernel on this CPU: %s\n", nn_qisa_name(nn_qgemm_best()));
}

/* The kernels' requantising epilogue (floats, and codes with and without the ReLU floor, signed
 * and unsigned levels) against the int32 product turned into floats and codes by plain loops:
 * every kernel gives exactly those bits. */
static void test_qgemm_requant_kernels(void **state)
{
    (void)state;
    const int shapes[][3] = {{1, 10, 784}, {3, 17, 5}, {4, 16, 4}, {5, 33, 71}, {9, 8, 9},
                             {64, 128, 784}, {7, 40, 3}, {13, 16, 72}};
    xd_rng r = xd_rng_make(19, 0, 0);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
        uint8_t *A = xd_xmalloc((size_t)M * K), *codes = xd_xmalloc((size_t)M * N),
                *want_codes = xd_xmalloc((size_t)M * N);
        int8_t *W = xd_xmalloc((size_t)N * K);
        int32_t *acc = xd_xmalloc(sizeof(int32_t) * (size_t)M * N);
        float *mult = xd_xmalloc(sizeof(float) * (size_t)N), *bias = xd_xmalloc(sizeof(float) * (size_t)N),
              *y = xd_xmalloc(sizeof(float) * (size_t)M * N), *want = xd_xmalloc(sizeof(float) * (size_t)M * N);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (uint8_t)(xd_rng_u32(&r) & 255);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (int8_t)((int)(xd_rng_u32(&r) % 255) - 127);
        tu_fill_uniform(mult, (size_t)N, 1e-5f, 1e-3f, 20 + t);
        tu_fill_uniform(bias, (size_t)N, -1.0f, 1.0f, 40 + t);
        nn_qweights p;
        nn_qweights_pack(&p, W, N, K);
        nn_qgemm_use(NN_QISA_PORTABLE);
        nn_qgemm(acc, N, A, K, M, &p);
        for (int variant = 0; variant < 4; variant++) {
            /* 0: floats; 1: unsigned codes; 2: signed codes; 3: signed codes after a relu */
            nn_qepilogue ep = {.mult = mult, .bias = bias, .zero = variant == 1 ? 0 : 128,
                               .scale = 0.02f, .lo = variant == 1 ? 0.0f : -128.0f,
                               .hi = variant == 1 ? 255.0f : 127.0f,
                               .code_zero = variant == 1 ? 0 : 128, .floor = variant == 3 ? 128 : 0};
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    const size_t i = (size_t)m * N + n;
                    want[i] = (float)(acc[i] - ep.zero * p.wsum[n]) * mult[n] + bias[n];
                    float q = nearbyintf(want[i] / ep.scale);
                    q = q < ep.lo ? ep.lo : q > ep.hi ? ep.hi : q;
                    const int c = (int)q + ep.code_zero;
                    want_codes[i] = (uint8_t)(c < ep.floor ? ep.floor : c);
                }
            for (int isa = 0; isa < NN_QISA_COUNT; isa++) {
                if (nn_qgemm_use((nn_qisa)isa) != (nn_qisa)isa) continue;
                if (variant == 0) {
                    ep.y = y;
                    ep.ldy = N;
                    memset(y, 0x55, sizeof(float) * (size_t)M * N);
                } else {
                    ep.codes = codes;
                    ep.ldc = N;
                    memset(codes, 0x55, (size_t)M * N);
                }
                nn_qgemm_requant(A, K, M, &p, &ep);
                if (variant == 0 ? memcmp(y, want, sizeof(float) * (size_t)M * N) != 0
                                 : memcmp(codes, want_codes, (size_t)M * N) != 0)
                    fail_msg("%s kernel, epilogue %d, M=%d N=%d K=%d: not the plain loops' values",
                             nn_qisa_name((nn_qisa)isa), variant, M, N, K);
            }
        }
        nn_qgemm_use(NN_QISA_COUNT);
        nn_qweights_free(&p);
        free(A);
        free(codes);
        free(want_codes);
        free(W);
        free(acc);
        free(mult);
        free(bias);
        free(y);
        free(want);
    }
}

// ----------------------------------------------------------------------------------------------
// the integer engine against the fake-quant forward

/* Builds desc (quantised), random weights (and batch norms: gamma of either sign, so that some
 * outputs fall as their sum grows), calibrates on x (B rows), and returns the fake-quant eval
 * outputs of the default head in fake (B * width). */
static void build_calibrated(nn_model *m, const char *desc, const float *x, int B, float *fake,
                             size_t width, uint64_t seed)
{
    xd_err e;
    char *q;
    TU_OK(nn_quant_desc(desc, 0.1f, &q, &e));
    TU_OK(nn_model_build(m, q, B, seed, &e));
    free(q);
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (nd->kind != NN_BATCHNORM) continue;
        const size_t C = (size_t)nd->ic;
        tu_fill_uniform(m->param + nd->w_off, C, -1.5f, 1.5f, seed + 10 + (uint64_t)i);
        tu_fill_uniform(m->param + nd->b_off, C, -0.5f, 0.5f, seed + 20 + (uint64_t)i);
        tu_fill_uniform(m->state + nd->s_off, C, -0.3f, 0.3f, seed + 30 + (uint64_t)i);
        tu_fill_uniform(m->state + nd->s_off + C, C, 0.5f, 2.0f, seed + 40 + (uint64_t)i);
    }
    const nn_run cal = {.calibrate = 1};
    nn_model_forward(m, x, B, &cal);
    nn_model_forward(m, x, B, NULL);
    memcpy(fake, nn_model_out(m, nn_model_default_head(m)), sizeof(float) * (size_t)B * width);
}

/* The engine's outputs against the fake-quant ones: every value within tol of its twin, and the
 * number of values further than 1e-4 apart (a requantisation that rounded the other way). */
static int compare_engine(nn_model *m, const float *x, int B, const float *fake, size_t width,
                          float tol, const char *what)
{
    int far = 0;
    for (int isa = 0; isa < NN_QISA_COUNT; isa++) {
        if (nn_qgemm_use((nn_qisa)isa) != (nn_qisa)isa) continue;
        nn_model_forward(m, x, B, NULL);
        const float *y = nn_model_out(m, nn_model_default_head(m));
        int f = 0;
        for (size_t i = 0; i < (size_t)B * width; i++) {
            const float d = fabsf(y[i] - fake[i]);
            if (d > tol) fail_msg("%s (%s): output %zu is %g, fake-quant %g", what,
                                  nn_qisa_name((nn_qisa)isa), i, (double)y[i], (double)fake[i]);
            f += d > 1e-4f;
        }
        far = f > far ? f : far;
    }
    nn_qgemm_use(NN_QISA_COUNT);
    return far;
}

/* A quantised form of desc with random weights, calibrated on B random inputs in [lo, hi) (*x),
 * its fake-quant outputs (*fake, B * *width), the engine attached and compared (compare_engine,
 * whose count it returns). */
static int engine_case(const char *desc, int B, float lo, float hi, uint64_t seed, float tol,
                       nn_model *m, float **x, float **fake, size_t *width)
{
    xd_err e;
    TU_OK(nn_model_plan(m, desc, 1, &e));
    const size_t in = (size_t)m->h * m->w * m->c;
    *width = m->nodes[m->n_nodes - 1].act_n;
    nn_model_free(m);
    *x = xd_xmalloc(sizeof(float) * in * (size_t)B);
    *fake = xd_xmalloc(sizeof(float) * *width * (size_t)B);
    tu_fill_uniform(*x, in * (size_t)B, lo, hi, seed);
    build_calibrated(m, desc, *x, B, *fake, *width, seed + 1);
    TU_OK(nn_qengine_attach(m, &e));
    return compare_engine(m, *x, B, *fake, *width, tol, desc);
}

static void test_engine_random_layers(void **state)
{
    (void)state;
    const char *layers[] = {
        "input h=1 w=1 c=37; flatten; linear out=19 head",
        "input h=1 w=1 c=784; flatten; linear out=128 head",
        "input h=7 w=6 c=3; conv2d out=5 k=3 pad=1 head",
        "input h=9 w=9 c=2; conv2d out=17 k=3 stride=2 head",
        "input h=8 w=8 c=8; conv2d out=16 k=1 head",
        "input h=6 w=6 c=4; conv2d out=8 k=5 pad=2 head",
    };
    for (size_t t = 0; t < sizeof layers / sizeof layers[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        /* one layer: the same input codes, an exact integer sum; only float rounding differs */
        engine_case(layers[t], 5, -3.0f, 3.0f, 100 + t, 1e-4f, &m, &x, &fake, &width);
        nn_model_free(&m);
        free(x);
        free(fake);
    }
}

static void test_engine_whole_models(void **state)
{
    (void)state;
    const char *models[] = {
        "input h=28 w=28 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu name=r1; maxpool k=2; "
        "conv2d name=conv2 out=16 k=3 pad=1; relu name=map; maxpool k=2; gap; linear out=10 head",
        "input h=28 w=28 c=1; flatten; linear name=fc1 out=128; relu name=feat; linear out=10 head",
        "input h=8 w=8 c=3; conv2d out=8 k=3 pad=1; batchnorm; relu; avgpool k=2; flatten; "
        "dropout p=0.2; linear out=6; tanh; linear out=4 head",
    };
    for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        const int B = 64;
        /* a value that crosses a rounding boundary of a later requantisation moves by one level
         * there, which the next layers pass on: small, and rare */
        int far = engine_case(models[t], B, -1.5f, 2.5f, 200 + t, 0.05f, &m, &x, &fake, &width);
        nn_model_forward(&m, x, B, NULL);
        const float *y = nn_model_out(&m, nn_model_default_head(&m));
        int agree = 0;
        for (int b = 0; b < B; b++) {
            int ai = 0, af = 0;
            for (size_t k = 1; k < width; k++) {
                if (y[b * width + k] > y[b * width + ai]) ai = (int)k;
                if (fake[b * width + k] > fake[b * width + af]) af = (int)k;
            }
            agree += ai == af;
        }
        print_message("model %zu: %d of %zu outputs more than 1e-4 from fake-quant, argmax agrees on "
                      "%d of %d\n", t, far, (size_t)B * width, agree, B);
        assert_true(agree >= B - 1);
        assert_true((size_t)far * 20 <= (size_t)B * width);
        nn_model_free(&m);
        free(x);
        free(fake);
    }
}

/* Inference (nn_model_infer: chunks of images, codes written by the layer before, relu and
 * max pooling on codes, requantisation in the kernel) gives every head's output bit for bit as
 * the node by node integer forward does, with each kernel, at 1 and 2 threads, for batches of
 * one, a few and many: the zoo CNN, the MLP, a model whose codes go through maxpool then relu,
 * flatten and dropout to signed levels (the relu's floor is then the code of 0), batch norm and avgpool
 * between (floats there), and an early exit read alone; batch norms in the epilogue, with
 * gammas of either sign, on codes through a max pool the product pools (k 2, odd sizes), one it
 * does not (stride 1), after a linear layer, before a tanh, and on floats (relu, then gap); and
 * convolutions of 8 outputs or fewer (two rows to a register), pooled and not, an odd number of
 * pooling windows. */
static void test_engine_infer_same_bits(void **state)
{
    (void)state;
    const char *models[] = {
        "input h=28 w=28 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu name=r1; maxpool k=2; "
        "conv2d name=conv2 out=16 k=3 pad=1; relu name=map; maxpool k=2; gap; linear out=10 head",
        "input h=28 w=28 c=1; flatten; linear name=fc1 out=128; relu name=feat; linear out=10 head",
        "input h=9 w=8 c=3; fakequant name=c1_in bits=8 ema=0.1; conv2d name=c1 out=20 k=3 "
        "pad=1 wbits=8; maxpool k=2 stride=1; relu; flatten; dropout p=0.3; fakequant name=l1_in "
        "bits=8 ema=0.1; linear name=l1 out=6 wbits=8; tanh; fakequant name=l2_in bits=8 ema=0.1; "
        "linear out=5 wbits=8 head",
        "input h=8 w=8 c=3; conv2d out=8 k=3 pad=1; batchnorm; relu; avgpool k=2; "
        "conv2d out=12 k=3 stride=2 name=c2; relu; conv2d out=6 k=1 name=exit head; "
        "flatten from=c2; linear out=4 head",
        "input h=10 w=10 c=3; conv2d out=20 k=3 pad=1; batchnorm; relu; maxpool k=2; "
        "conv2d out=12 k=3 pad=1; batchnorm; maxpool k=2 stride=1; relu; flatten; linear out=8; "
        "batchnorm; relu; linear out=6; batchnorm; tanh; linear out=5 head",
        "input h=10 w=7 c=2; conv2d out=6 k=3 pad=1; relu; maxpool k=2; "
        "conv2d out=24 k=3 pad=1 stride=2; batchnorm; relu; gap; linear out=3 head",
        "input h=6 w=6 c=1; conv2d out=5 k=3 pad=1; batchnorm; maxpool k=2 stride=2 name=p; "
        "relu; conv2d out=7 k=1; relu; flatten; linear out=2 head",
    };
    const int threads = xd_threads_get(), batches[] = {1, 5, 64};
    for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        engine_case(models[t], 64, -1.5f, 2.5f, 300 + t, 0.05f, &m, &x, &fake, &width);
        size_t most = 0;
        for (int i = 0; i < m.n_nodes; i++)
            if (m.nodes[i].head && m.nodes[i].act_n > most) most = m.nodes[i].act_n;
        float *ref = xd_xmalloc(sizeof(float) * 64 * most);
        uint8_t *need = xd_xcalloc((size_t)m.n_nodes, 1);
        const int exit = nn_model_find(&m, "exit");
        if (exit >= 0) nn_model_needs(&m, exit, need);
        for (int isa = 0; isa < NN_QISA_COUNT; isa++) {
            if (nn_qgemm_use((nn_qisa)isa) != (nn_qisa)isa) continue;
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
                for (int th = 1; th <= 2; th++) {
                    const int B = batches[bi];
                    xd_threads_set(th);
                    for (int i = 0; i < m.n_nodes; i++) {
                        if (!m.nodes[i].head) continue;
                        const size_t n = (size_t)B * m.nodes[i].act_n;
                        nn_model_forward(&m, x, B, NULL);
                        memcpy(ref, m.nodes[i].out, sizeof(float) * n);
                        memset(m.nodes[i].out, 0, sizeof(float) * n);
                        nn_model_infer(&m, x, B, i == exit ? need : NULL);
                        if (memcmp(ref, m.nodes[i].out, sizeof(float) * n) != 0)
                            fail_msg("model %zu (%s), batch %d, %d threads: head %s differs", t,
                                     nn_qisa_name((nn_qisa)isa), B, th, m.nodes[i].name);
                    }
                }
        }
        nn_qgemm_use(NN_QISA_COUNT);
        xd_threads_set(threads);
        free(ref);
        free(need);
        nn_model_free(&m);
        free(x);
        free(fake);
    }
}

static void test_engine_refuses(void **state)
{
    (void)state;
    nn_model m;
    xd_err e;
    /* not calibrated: the range is still 0 */
    TU_OK(nn_model_build(&m, "input h=1 w=1 c=4; fakequant name=q bits=8 ema=0.1; linear name=fc "
                             "out=2 wbits=8", 2, 1, &e));
    assert_int_equal(nn_qengine_attach(&m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'q' has no calibrated range");
    assert_null(m.qengine);
    nn_model_free(&m);
    /* a float model has nothing to run on integers */
    TU_OK(nn_model_build(&m, "input h=1 w=1 c=4; linear out=2", 2, 1, &e));
    assert_int_equal(nn_qengine_attach(&m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no layer can run on integers");
    nn_model_free(&m);
}

// ----------------------------------------------------------------------------------------------
// int8 checkpoints

#define CK_MODEL "input h=8 w=8 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu; maxpool k=2; flatten; " \
                 "linear name=fc1 out=32; relu; linear name=logits out=4 head"

static void make_int8(nn_model *m, float *x, int B)
{
    float *fake = xd_xmalloc(sizeof(float) * 4 * (size_t)B);
    tu_fill_uniform(x, (size_t)64 * B, -1.0f, 2.0f, 77);
    build_calibrated(m, CK_MODEL, x, B, fake, 4, 13);
    free(fake);
    xd_err e;
    TU_OK(nn_qengine_attach(m, &e));
}

static void test_int8_round_trip(void **state)
{
    (void)state;
    nn_model a, b;
    xd_err e;
    float x[8 * 64], ya[8 * 4];
    make_int8(&a, x, 8);
    nn_model_forward(&a, x, 8, NULL);
    memcpy(ya, nn_model_out(&a, nn_model_default_head(&a)), sizeof ya);
    io_kv meta[1] = {{"epoch", "3"}};
    TU_OK(ckpt_save_int8("q.safetensors", &a, meta, 1, &e));
    TU_OK(ckpt_save("f.safetensors", &a, NULL, 0, &e));
    TU_OK(ckpt_load("q.safetensors", 8, &b, &e));
    assert_non_null(b.qengine);
    assert_string_equal(a.desc, b.desc);
    nn_model_forward(&b, x, 8, NULL);
    assert_memory_equal(nn_model_out(&b, nn_model_default_head(&b)), ya, sizeof ya);
    for (int i = 0; i < a.n_nodes; i++) {
        const float *sa, *sb;
        const int8_t *qa = nn_qengine_weights(&a, i, &sa), *qb = nn_qengine_weights(&b, i, &sb);
        assert_true((qa == NULL) == (qb == NULL));
        if (!qa) continue;
        assert_memory_equal(qa, qb, a.nodes[i].w_n);
        assert_memory_equal(sa, sb, sizeof(float) * (size_t)a.nodes[i].units);
    }
    /* plain safetensors: I8 weights with their F32 scales, the ranges, the marker */
    io_st_file *f;
    TU_OK(io_st_open("q.safetensors", &f, &e));
    assert_int_equal(io_st_find(f, "fc1.weight")->dtype, IO_I8);
    assert_int_equal(io_st_find(f, "fc1.weight_scale")->shape[0], 32);
    assert_int_equal(io_st_find(f, "fc1.bias")->dtype, IO_F32);
    assert_int_equal(io_st_find(f, "fc1_in.range")->dtype, IO_F32);
    assert_string_equal(io_st_meta(f, CKPT_META_QUANT), "int8");
    assert_string_equal(io_st_meta(f, "epoch"), "3");
    io_st_close(f);
    /* fc1 (8 x 16 x 32 weights) dominates: nearly four times smaller */
    struct stat sq, sf;
    assert_int_equal(stat("q.safetensors", &sq), 0);
    assert_int_equal(stat("f.safetensors", &sf), 0);
    print_message("int8 checkpoint %lld bytes, float %lld\n", (long long)sq.st_size, (long long)sf.st_size);
    assert_true(sq.st_size * 2 < sf.st_size);
    nn_model_free(&a);
    nn_model_free(&b);
}

/* q.safetensors rewritten to dst with tensor `name` replaced by (dtype, data) of the same shape. */
static void rewrite_tensor(const char *dst, const char *name, io_dtype dtype, const void *data)
{
    io_st_file *f;
    xd_err e;
    TU_OK(io_st_open("q.safetensors", &f, &e));
    const size_t n = io_st_count(f), nm = io_st_meta_count(f);
    io_tensor *t = xd_xcalloc(n, sizeof *t);
    io_kv *meta = xd_xcalloc(nm, sizeof *meta);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        t[i] = *io_st_tensor(f, i);
        if (strcmp(t[i].name, name) == 0) {
            t[i].dtype = dtype;
            t[i].data = data;
            found = 1;
        }
    }
    assert_true(found);
    for (size_t i = 0; i < nm; i++) meta[i] = *io_st_meta_at(f, i);
    TU_OK(io_st_write(dst, t, n, meta, nm, &e));
    free(t);
    free(meta);
    io_st_close(f);
}

static void expect_load_error(const char *path, xd_status code, const char *want, const char *want2)
{
    nn_model m;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(ckpt_load(path, 4, &m, &e), code);
    tu_assert_err(&e, code, path);
    tu_assert_err(&e, code, want);
    tu_assert_err(&e, code, want2);
}

static void test_int8_damaged(void **state)
{
    (void)state;
    nn_model a;
    xd_err e;
    float x[8 * 64];
    make_int8(&a, x, 8);
    TU_OK(ckpt_save_int8("q.safetensors", &a, NULL, 0, &e));
    float scales[32];
    for (int i = 0; i < 32; i++) scales[i] = 0.01f;
    const float bad[3] = {0.0f, -0.5f, NAN};
    for (int k = 0; k < 3; k++) {
        scales[7] = bad[k];
        rewrite_tensor("bad_scale.safetensors", "fc1.weight_scale", IO_F32, scales);
        expect_load_error("bad_scale.safetensors", XD_EFORMAT, "'fc1.weight_scale'",
                          "index 7; a scale must be a finite number > 0");
    }
    const float zero_range = 0.0f;
    rewrite_tensor("bad_range.safetensors", "logits_in.range", IO_F32, &zero_range);
    expect_load_error("bad_range.safetensors", XD_EFORMAT, "'logits_in.range'", "finite number > 0");
    /* weights stored as floats, or scales as bytes: the dtype is named */
    float *wf = xd_xcalloc(32 * 128, sizeof *wf);
    rewrite_tensor("f32_weight.safetensors", "fc1.weight", IO_F32, wf);
    free(wf);
    expect_load_error("f32_weight.safetensors", XD_ESHAPE, "'fc1.weight'", "expected I8");
    int8_t w8[4 * 32];
    memset(w8, 1, sizeof w8);
    w8[5] = -128;
    rewrite_tensor("w128.safetensors", "logits.weight", IO_I8, w8);
    expect_load_error("w128.safetensors", XD_EFORMAT, "'logits.weight'", "-128");
    nn_model_free(&a);
    /* another quantisation is named */
    tu_rewrite_meta("q.safetensors", "int4.safetensors", CKPT_META_QUANT, "int4");
    expect_load_error("int4.safetensors", XD_EUNSUPPORTED, "'int4'", "int8");
}

// ----------------------------------------------------------------------------------------------
// recipes, training, the command line

static void test_recipe_quantize(void **state)
{
    (void)state;
    ensure_data();
    recipe r;
    char *text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                                "  - {kind: ce}\nquantize: {ema: 0.05}\n");
    load_recipe("rq", text, &r);
    assert_non_null(strstr(r.model, "fakequant name=fc1_in bits=8 ema=0.0500000007; linear name=fc1"));
    assert_non_null(strstr(r.models[0].model, "wbits=8"));
    /* the effective recipe reads back as the same recipe */
    char *yaml = stable_yaml(&r);
    assert_non_null(strstr(yaml, "quantize: {ema: 0.0500000007}"));
    free(yaml);
    recipe_free(&r);
    free(text);
    /* without the section nothing is said about it */
    text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}", "  - {kind: ce}\n");
    load_recipe("rf", text, &r);
    yaml = recipe_to_yaml(&r);
    assert_null(strstr(yaml, "quantize"));
    assert_null(strstr(yaml, "fakequant"));
    free(yaml);
    recipe_free(&r);
    free(text);
    text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                          "  - {kind: ce}\nquantize: {ema: 2}\n");
    expect_recipe_error("rbad", text, "quantize.ema");
    free(text);
    text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                          "  - {kind: ce}\nquantize: {bits: 4}\n");
    expect_recipe_error("rbad2", text, "bits");
    free(text);
}

#define QAT_RECIPE(epochs)                                                                       \
    student_recipe("  augment: \"pad=1 flip=0.5\"\n", CNN_MODEL, "", epochs,                     \
                   "{kind: adamw, lr: 0.01}", "  - {kind: ce}\nquantize: {ema: 0.1}\n")

/* The moving ranges are state: a quantised run stopped and resumed ends byte for byte where the
 * straight run does. */
static void test_qat_resume(void **state)
{
    (void)state;
    ensure_data();
    char *text = QAT_RECIPE(3);
    const int stops[] = {1, 2};
    check_resume("qat", text, 3, stops, 2);
    free(text);
}

static void test_cli_quantize_eval(void **state)
{
    (void)state;
    ensure_data();
    /* a quantised run learns the toy task; its int8 form scores what its fake-quant form does */
    char *text = student_recipe("", CNN_MODEL, "", 5, "{kind: adamw, lr: 0.01}",
                                "  - {kind: ce}\nquantize: {ema: 0.1}\n");
    train_result res = run_ok("qcli", text, "qat-run", 3, 0, 0);
    free(text);
    print_message("quantised run: test accuracy %.2f\n", res.final_acc);
    assert_true(res.final_acc > 0.6);
    char *out = NULL, *err = NULL;
    xd_err e;
    int rc = tu_run_cli(&out, &err, "quantize", "qat-run/last.safetensors", "--out", "qat8.safetensors", NULL);
    if (rc) fail_msg("quantize: %s", err);
    assert_non_null(strstr(out, "qat8.safetensors: int8, "));
    assert_non_null(strstr(out, "2 of 2 layers on integers"));
    assert_non_null(strstr(out, "ranges as trained"));
    free(out);
    free(err);
    char *fq = NULL, *i8 = NULL;
    assert_int_equal(tu_run_cli(&fq, NULL, "eval", "--model", "qat-run/last.safetensors", "--data", "toy.xds", "--json", NULL), 0);
    assert_int_equal(tu_run_cli(&i8, NULL, "eval", "--model", "qat8.safetensors", "--data", "toy.xds", "--json", NULL), 0);
    /* the same answers (the confidences differ in their last digits) */
    assert_non_null(strstr(fq, "\"accuracy\":"));
    assert_string_equal(strstr(fq, "\"confusion\":"), strstr(i8, "\"confusion\":"));
    *strstr(fq, ",\"ece\"") = *strstr(i8, ",\"ece\"") = '\0';
    assert_string_equal(strstr(fq, "\"accuracy\":"), strstr(i8, "\"accuracy\":"));
    free(fq);
    free(i8);
    /* predict reads the int8 file too: the same top classes for images of each class */
    char *args[4];
    for (int k = 0; k < 4; k++) {
        uint8_t px[64] = {0};
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 3; x++) px[(1 + 4 * (k / 2) + y) * 8 + 1 + 4 * (k % 2) + x] = 230;
        io_image img = {.w = 8, .h = 8, .c = 1, .px = px};
        args[k] = tu_fmt("q%d.png", k);
        TU_OK(io_png_write(args[k], &img, &e));
    }
    char *pf = NULL, *p8 = NULL;
    assert_int_equal(tu_run_cli(&pf, NULL, "predict", "qat-run/last.safetensors", args[0], args[1], args[2], args[3], "--top", "1", NULL), 0);
    assert_int_equal(tu_run_cli(&p8, NULL, "predict", "qat8.safetensors", args[0], args[1], args[2], args[3], "--top", "1", NULL), 0);
    const char *a = pf, *b = p8;
    for (int k = 0; k < 4; k++) {
        a = strstr(a, "\"class\":");
        b = strstr(b, "\"class\":");
        assert_true(a && b);
        assert_int_equal(atoi(a + 8), atoi(b + 8));
        assert_int_equal(atoi(b + 8), k); /* the square's quadrant */
        a++;
        b++;
        free(args[k]);
    }
    free(pf);
    free(p8);
    /* post-training: a float run calibrated on its training split */
    text = student_recipe("", CNN_MODEL, "", 3, "{kind: adamw, lr: 0.01}", "  - {kind: ce}\n");
    run_ok("fcli", text, "float-run", 3, 0, 0);
    free(text);
    rc = tu_run_cli(&out, &err, "quantize", "float-run/last.safetensors", "--calib", "toy.xds",
                    "--batches", "2", "--out", "ptq.safetensors", NULL);
    if (rc) fail_msg("quantize: %s", err);
    assert_non_null(strstr(out, "ranges calibrated on 128 examples of toy.xds (train)"));
    free(out);
    free(err);
    assert_int_equal(tu_run_cli(&out, NULL, "eval", "--model", "ptq.safetensors", "--data", "toy.xds", NULL), 0);
    assert_non_null(strstr(out, "accuracy"));
    free(out);
    /* mistakes: one line naming the file, exit 1, nothing written */
    assert_int_equal(tu_run_cli(NULL, &err, "quantize", "float-run/last.safetensors", "--out", "x.safetensors", NULL), 1);
    assert_non_null(strstr(err, "float-run/last.safetensors: a float checkpoint: give --calib"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "quantize", "qat8.safetensors", "--out", "x.safetensors", NULL), 1);
    assert_non_null(strstr(err, "an int8 checkpoint already"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "quantize", "qat-run/last.safetensors", "--calib", "toy.xds", "--out", "x.safetensors", NULL), 1);
    assert_non_null(strstr(err, "drop --calib"));
    free(err);
    assert_false(exists("x.safetensors"));
    /* both forms export (QDQ; tests/test_export.c runs them in ONNX Runtime) */
    assert_int_equal(tu_run_cli(NULL, NULL, "export", "qat-run/last.safetensors", "--onnx", "x.onnx", NULL), 0);
    assert_int_equal(tu_run_cli(NULL, NULL, "export", "qat8.safetensors", "--onnx", "y.onnx", NULL), 0);
    assert_true(exists("x.onnx") && exists("y.onnx"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_forward_backward),
        cmocka_unit_test(test_weights_per_channel),
        cmocka_unit_test(test_model_fake_forward_backward),
        cmocka_unit_test(test_quant_desc),
        cmocka_unit_test(test_qgemm_kernels),
        cmocka_unit_test(test_qgemm_requant_kernels),
        cmocka_unit_test(test_engine_random_layers),
        cmocka_unit_test(test_engine_whole_models),
        cmocka_unit_test(test_engine_infer_same_bits),
        cmocka_unit_test(test_engine_refuses),
        cmocka_unit_test(test_int8_round_trip),
        cmocka_unit_test(test_int8_damaged),
        cmocka_unit_test(test_recipe_quantize),
        cmocka_unit_test(test_qat_resume),
        cmocka_unit_test(test_cli_quantize_eval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
