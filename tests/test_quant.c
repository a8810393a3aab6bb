/* nn/quant and nn/qgemm: fake quantisation forward and backward, moving ranges, the quantised form
 * of a description, and the integer kernels (VNNI and the portable one, each forced) against a
 * plain reference, their sums and their requantising epilogue. The integer engine and int8
 * checkpoints: test_qengine.c. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_forward_backward),
        cmocka_unit_test(test_weights_per_channel),
        cmocka_unit_test(test_model_fake_forward_backward),
        cmocka_unit_test(test_quant_desc),
        cmocka_unit_test(test_qgemm_kernels),
        cmocka_unit_test(test_qgemm_requant_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
