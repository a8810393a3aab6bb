/* nn/model: the text description (errors, round trip), a toy problem learnt to ~100%,
 * bit-identical runs, clearing gradients, the layer limit. Gradients through a graph:
 * test_model_grad.c. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include "core/runtime.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "nn/loss.h"
#include "nn/model.h"
#include "nn/optim.h"

/* The allocation-failure test asks for more than any address space holds: under the address
 * sanitizer that must be a NULL from malloc, as without it, not a report. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void expect_build_error(const char *desc, xd_status code, const char *substr)
{
    nn_model m;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(nn_model_build(&m, desc, 4, 1, &e), code);
    tu_assert_err(&e, code, substr);
}

static void test_description_errors(void **state)
{
    (void)state;
    expect_build_error("linear out=3; relu", XD_EARG, "first statement must be 'input'");
    expect_build_error("input h=2 w=2; relu", XD_EARG, "needs h, w and c");
    expect_build_error("input h=2 w=2 c=1; convolution out=3", XD_EARG, "unknown layer 'convolution'");
    expect_build_error("input h=2 w=2 c=1; conv2d out=3 kernel=3", XD_EARG, "unknown key 'kernel'");
    expect_build_error("input h=2 w=2 c=1; relu p=0.5", XD_EARG, "layer 1 'relu': unknown key 'p'");
    expect_build_error("input h=2 w=2 c=1; linear out=x", XD_EARG, "bad value 'x' for 'out'");
    expect_build_error("input h=2 w=2 c=1; linear out=3; relu from=nothing", XD_EARG,
                       "no earlier node");
    expect_build_error("input h=2 w=2 c=1; linear out=3 name=a; relu name=a", XD_EARG, "already used");
    /* a given name that a later layer would get by default (found by fuzzing: the canonical
     * description of such a model did not build again) */
    expect_build_error("input h=2 w=2 c=1; linear out=3 name=relu1; relu", XD_EARG,
                       "layer 2 'relu': its default name 'relu1' is already taken");
    expect_build_error("input h=2 w=2 c=1; conv2d out=3 k=5", XD_ESHAPE, "do not fit");
    /* padding whose padded extent overflowed an int (found by fuzzing): the option limit stops
     * it first now */
    expect_build_error("input h=28 w=28 c=1; conv2d out=4 k=3 pad=2147483647", XD_EARG,
                       "bad value");
    expect_build_error("input h=4 w=4 c=1; linear out=3 name=a; maxpool k=2; add with=a", XD_ESHAPE,
                       "same shape");
    expect_build_error("input tokens=5; linear out=3", XD_ESHAPE, "token-id input");
    expect_build_error("input h=2 w=2 c=1; dropout p=1.5", XD_ESHAPE, "p must be in");
    expect_build_error("input h=2 w=2 c=1; linear out=3 head=1", XD_EARG, "takes no value");
}

/* \f and \v are blanks like ' ' (they once ended a word without being skipped: an endless loop
 * of empty words). The alarm turns a hang into a failure. */
static void test_all_blanks_separate_words(void **state)
{
    (void)state;
    static const char *const descs[] = {
        "input h=2 w=2 c=1;\f linear out=3",
        "input\vh=2\fw=2 c=1\n\vlinear\fout=3\v",
        "\f",
    };
    alarm(10);
    nn_model ref;
    xd_err e;
    TU_OK(nn_model_build(&ref, "input h=2 w=2 c=1; linear out=3", 2, 1, &e));
    for (int i = 0; i < 2; i++) {
        nn_model m;
        if (nn_model_build(&m, descs[i], 2, 1, &e) != XD_OK) fail_msg("%d: %s", i, e.msg);
        assert_string_equal(m.desc, ref.desc);
        nn_model_free(&m);
    }
    expect_build_error(descs[2], XD_EARG, "needs an 'input' statement");
    nn_model_free(&ref);
    alarm(0);
}

/* Sizes are checked before anything is allocated, without overflow, against the stated limits;
 * a plan has names, heads and sizes but no memory. */
static void test_limits_before_memory(void **state)
{
    (void)state;
    /* 784 x 10^6 weights: past NN_MAX_PARAMS (it once allocated 6 GB, then went on) */
    expect_build_error("input h=28 w=28 c=1; flatten; linear out=1000000", XD_ESHAPE,
                       "passes the limit");
    /* products that overflow 64 bits */
    expect_build_error("input h=2 w=2 c=1; conv2d out=268435456 k=268435456 pad=134217728",
                       XD_ESHAPE, "passes the limit");
    expect_build_error("input h=1048576 w=1048576 c=1048576; relu", XD_ESHAPE, "values per example");
    expect_build_error("input h=2 w=2 c=1; linear out=268435457", XD_EARG, "bad value");
    expect_build_error("input h=2 w=2 c=1; conv2d out=1 k=1 pad=2147483647", XD_EARG, "bad value");
    /* 120 x 2^21 per example: activations and gradients of one conv fit, five of them do not */
    expect_build_error("input h=1024 w=2048 c=1; conv2d out=30 k=1; conv2d out=30 k=1; "
                       "conv2d out=30 k=1; conv2d out=30 k=1; conv2d out=30 k=1",
                       XD_ESHAPE, "memory per example");

    /* planning a model of 2^28 - 2^20 parameters takes no memory for them */
    nn_model m;
    xd_err e;
    TU_OK(nn_model_plan(&m, "input h=1 w=1 c=255; linear out=1048576 bias=0 name=big head", 64, &e));
    assert_int_equal(m.n_param, ((size_t)1 << 28) - ((size_t)1 << 20));
    assert_null(m.param);
    assert_null(m.act_block);
    assert_int_equal(nn_model_find(&m, "big"), 0);
    assert_int_equal(nn_model_default_head(&m), 0);
    nn_model_free(&m);
}

/* Memory that cannot be had is XD_ENOMEM with the block and its size, never an abort: 2^26 floats
 * of activations per example times 2^20 rows is 2^48 floats, past any address space. */
static void test_allocation_failure_is_an_error(void **state)
{
    (void)state;
    nn_model m;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(nn_model_build(&m, "input h=8192 w=8192 c=1; relu", NN_MAX_BATCH, 1, &e),
                     XD_ENOMEM);
    tu_assert_err(&e, XD_ENOMEM, "cannot allocate 281474976710656 bytes for the activations");
    assert_null(m.param);
}

static void test_description_round_trip(void **state)
{
    (void)state;
    const char *desc = "input h=28 w=28 c=1\n"
                       "conv2d name=conv1 out=8 k=3 pad=1; relu; maxpool k=2  # comment\n"
                       "conv2d out=16 k=3 pad=1 stride=2; batchnorm; relu name=feat\n"
                       "flatten; dropout p=0.2; linear out=10 name=logits head";
    nn_model a, b;
    xd_err e;
    TU_OK(nn_model_build(&a, desc, 8, 42, &e));
    TU_OK(nn_model_build(&b, a.desc, 8, 42, &e));
    assert_string_equal(a.desc, b.desc);
    assert_int_equal(a.n_param, b.n_param);
    assert_memory_equal(a.param, b.param, a.n_param * sizeof(float));
    /* shapes: 28 -> conv 28 -> pool 14 -> conv stride 2 -> 7 */
    const nn_node *feat = nn_model_node(&a, nn_model_find(&a, "feat"));
    assert_int_equal(feat->h, 7);
    assert_int_equal(feat->w, 7);
    assert_int_equal(feat->c, 16);
    assert_int_equal(nn_model_default_head(&a), nn_model_find(&a, "logits"));
    /* parameter table: names, shapes, decay flags; segments tile the block */
    const nn_param *w = nn_model_param(&a, "conv1.weight");
    assert_non_null(w);
    assert_int_equal(w->ndim, 4);
    assert_true(w->shape[0] == 8 && w->shape[1] == 3 && w->shape[2] == 3 && w->shape[3] == 1);
    assert_int_equal(w->decay, 1);
    assert_int_equal(nn_model_param(&a, "conv1.bias")->decay, 0);
    assert_int_equal(nn_model_param(&a, "batchnorm4.running_var")->state, 1);
    TU_OK(nn_param_segs_check(a.segs, a.n_segs, a.n_param, &e));
    assert_int_equal(a.n_param, 8 * 9 + 8 + 16 * 9 * 8 + 16 + 16 + 16 + 10 * 7 * 7 * 16 + 10);
    /* init bound 1/sqrt(fan_in) */
    for (size_t i = 0; i < w->n; i++) assert_true(fabsf(a.param[w->off + i]) <= 1.0f / 3.0f);
    /* another seed gives other weights */
    nn_model c;
    TU_OK(nn_model_build(&c, desc, 8, 43, &e));
    assert_memory_not_equal(a.param, c.param, a.n_param * sizeof(float));
    nn_model_free(&a);
    nn_model_free(&b);
    nn_model_free(&c);
}

// ----------------------------------------------------------------------------------------------
// learning a toy problem

/* Two interleaved spirals: not linearly separable. */
static void make_spirals(float *x, int32_t *y, int n, uint64_t seed)
{
    xd_rng r = xd_rng_make(seed, 0, XD_RNG_USER);
    for (int i = 0; i < n; i++) {
        int cls = i % 2;
        float t = 0.5f + 3.0f * xd_rng_uniform(&r);
        float ang = t * 2.0f + (float)cls * 3.14159265f;
        x[2 * i] = t * cosf(ang) / 3.5f + 0.02f * xd_rng_normal(&r);
        x[2 * i + 1] = t * sinf(ang) / 3.5f + 0.02f * xd_rng_normal(&r);
        y[i] = cls;
    }
}

static float train_spirals(nn_model *m, const float *x, const int32_t *y, int n, int steps)
{
    xd_err e;
    nn_opt_config cfg = nn_opt_defaults(NN_OPT_ADAMW);
    cfg.lr = 0.01f;
    cfg.weight_decay = 0.0f;
    nn_optimizer opt;
    TU_OK(nn_opt_init(&opt, &cfg, m->n_param, &e));
    const int B = 64;
    int head = nn_model_default_head(m);
    float bx[64 * 2], probs[64 * 2];
    int32_t by[64];
    uint32_t *order = malloc(sizeof(uint32_t) * n);
    for (int i = 0; i < n; i++) order[i] = (uint32_t)i;
    for (int s = 0; s < steps; s++) {
        int start = (s * B) % n;
        if (start == 0) {
            xd_rng r = xd_rng_make(3, (uint64_t)s, XD_RNG_SHUFFLE);
            xd_rng_shuffle(&r, order, (uint32_t)n);
        }
        for (int b = 0; b < B; b++) {
            uint32_t i = order[(start + b) % n];
            bx[2 * b] = x[2 * i];
            bx[2 * b + 1] = x[2 * i + 1];
            by[b] = y[i];
        }
        nn_run run = {.training = 1, .seed = 3, .step = (uint64_t)s};
        nn_model_forward(m, bx, B, &run);
        nn_ce_forward(probs, nn_model_out(m, head), by, NULL, B, 2);
        nn_model_zero_grad(m);
        nn_ce_backward(nn_model_dout(m, head), probs, by, NULL, B, 2, 1.0f);
        nn_model_backward(m);
        nn_opt_step(&opt, m->param, m->grad, m->segs, m->n_segs, cfg.lr);
    }
    free(order);
    nn_opt_free(&opt);
    /* accuracy on the training points, eval mode */
    int correct = 0;
    for (int s = 0; s < n; s += B) {
        int bs = n - s < B ? n - s : B;
        nn_model_forward(m, x + 2 * s, bs, NULL);
        correct += nn_count_correct(nn_model_out(m, head), y + s, bs, 2);
    }
    return (float)correct / (float)n;
}

static void test_learns_spirals(void **state)
{
    (void)state;
    enum { N = 512 };
    float x[N * 2];
    int32_t y[N];
    make_spirals(x, y, N, 11);
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, "input h=1 w=1 c=2; linear out=64; tanh; linear out=64; relu;"
                             "linear out=2 name=logits head", 64, 1, &e));
    /* an untrained model is near chance */
    int head = nn_model_default_head(&m);
    int correct = 0;
    for (int s = 0; s < N; s += 64) {
        nn_model_forward(&m, x + 2 * s, 64, NULL);
        correct += nn_count_correct(nn_model_out(&m, head), y + s, 64, 2);
    }
    assert_true(correct < N * 0.7);
    float acc = train_spirals(&m, x, y, N, 1500);
    print_message("spirals: train accuracy %.4f after 1500 steps\n", (double)acc);
    assert_true(acc >= 0.98f);
    nn_model_free(&m);
}

/* A conv net big enough that the parallel paths run, trained at 1 and at 2 threads. */
static void train_cnn(float *out_params, size_t *n_out, int threads)
{
    xd_threads_set(threads);
    nn_model m;
    xd_err e;
    const int B = 32, HW = 12;
    TU_OK(nn_model_build(&m, "input h=12 w=12 c=3; conv2d out=16 k=3 pad=1; batchnorm; relu;"
                             "maxpool k=2; conv2d out=32 k=3 pad=1; relu; gap; dropout p=0.2;"
                             "linear out=4 name=logits head", B, 7, &e));
    nn_opt_config cfg = nn_opt_defaults(NN_OPT_SGD);
    cfg.lr = 0.05f;
    cfg.momentum = 0.9f;
    cfg.weight_decay = 1e-4f;
    cfg.clip_norm = 5.0f;
    nn_optimizer opt;
    TU_OK(nn_opt_init(&opt, &cfg, m.n_param, &e));
    float *x = malloc(sizeof(float) * B * HW * HW * 3), probs[32 * 4];
    int32_t y[32];
    uint64_t ex[32];
    for (int s = 0; s < 6; s++) {
        tu_fill_uniform(x, (size_t)B * HW * HW * 3, -1, 1, 100 + (uint64_t)s);
        for (int b = 0; b < B; b++) {
            y[b] = (b + s) % 4;
            ex[b] = (uint64_t)(s * B + b);
        }
        nn_run run = {.training = 1, .seed = 7, .step = (uint64_t)s, .example = ex};
        nn_model_forward(&m, x, B, &run);
        int head = nn_model_default_head(&m);
        nn_ce_forward(probs, nn_model_out(&m, head), y, NULL, B, 4);
        nn_model_zero_grad(&m);
        nn_ce_backward(nn_model_dout(&m, head), probs, y, NULL, B, 4, 1.0f);
        nn_model_backward(&m);
        nn_opt_step(&opt, m.param, m.grad, m.segs, m.n_segs, cfg.lr);
    }
    memcpy(out_params, m.param, sizeof(float) * m.n_param);
    memcpy(out_params + m.n_param, m.state, sizeof(float) * m.n_state);
    *n_out = m.n_param + m.n_state;
    free(x);
    nn_opt_free(&opt);
    nn_model_free(&m);
}

static void test_bit_identical_runs(void **state)
{
    (void)state;
    static float a[20000], b[20000], c[20000];
    size_t na, nb, nc;
    train_cnn(a, &na, 1);
    train_cnn(b, &nb, 1);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof(float)); /* same seed, same weights */
    train_cnn(c, &nc, 2);
    assert_memory_equal(a, c, na * sizeof(float)); /* and the same at 2 threads */
    xd_threads_set(2);
}

/* nn_model_clear_grad then backward gives nn_model_zero_grad's gradients bit for bit, whatever
 * grad held (no sum here underflows to a signed zero): linear layers written (with a bias), a
 * convolution and a batch norm cleared before they add, a head no gradient reaches cleared; a
 * second backward in the step adds; both precisions, one and two threads. */
static void test_clear_grad_same_bits(void **state)
{
    (void)state;
    static const char *desc =
        "input h=6 w=6 c=2; conv2d out=4 k=3 pad=1; batchnorm; relu name=r; maxpool k=2; "
        "flatten; linear out=9 name=h; relu; linear out=3 name=out head; "
        "gap from=r; linear out=2 name=spare head";
    enum { B = 5 };
    float x[B * 6 * 6 * 2], r[B * 3];
    tu_fill_uniform(x, sizeof x / sizeof x[0], -1, 1, 11);
    tu_fill_uniform(r, B * 3, -1, 1, 12);
    const nn_run train = {.training = 1, .seed = 1};
    const int threads0 = xd_threads_get();
    for (int prec = 0; prec < 2; prec++)
        for (int t = 1; t <= 2; t++) {
            xd_threads_set(t);
            nn_model m[2];
            xd_err e;
            for (int k = 0; k < 2; k++) {
                TU_OK(nn_model_build(&m[k], desc, B, 3, &e));
                m[k].precision = prec ? NN_PREC_BF16 : NN_PREC_FLOAT32;
            }
            for (int twice = 1; twice <= 2; twice++) {
                for (int k = 0; k < 2; k++) {
                    nn_model_forward(&m[k], x, B, &train);
                    for (size_t i = 0; i < m[k].n_param; i++) m[k].grad[i] = NAN;
                    if (k == 0) nn_model_zero_grad(&m[k]);
                    else nn_model_clear_grad(&m[k]);
                    for (int n = 0; n < twice; n++) {
                        memcpy(nn_model_dout(&m[k], nn_model_find(&m[k], "out")), r, sizeof r);
                        nn_model_backward(&m[k]);
                    }
                }
                if (memcmp(m[0].grad, m[1].grad, sizeof(float) * m[0].n_param) != 0)
                    fail_msg("precision %d, %d threads, %d backward(s): gradients differ", prec,
                             t, twice);
                const nn_param *sp = nn_model_param(&m[1], "spare.weight");
                assert_non_null(sp);
                assert_true(m[1].grad[sp->off] == 0.0f); /* reached by nothing: cleared */
            }
            for (int k = 0; k < 2; k++) nn_model_free(&m[k]);
        }
    xd_threads_set(threads0);
}

/* Every gradient is cleared, at 1 and 2 threads (big enough to be shared among them; an odd count,
 * which two equal shares do not cover) */
/* NN_MAX_NODES layers parse (at once), one more is refused before any name is checked */
static void test_layer_limit(void **state)
{
    (void)state;
    for (int extra = 0; extra < 2; extra++) {
        const int relus = NN_MAX_NODES - 2 + extra; /* flatten and linear make up the rest */
        char *desc = malloc(64 + 6 * (size_t)relus), *p = desc;
        assert_non_null(desc);
        p += sprintf(p, "input h=2 w=2 c=1; ");
        for (int i = 0; i < relus; i++) p += sprintf(p, "relu; ");
        sprintf(p, "flatten; linear out=2 head");
        nn_model m;
        xd_err e;
        xd_status s = nn_model_plan(&m, desc, 1, &e);
        if (!extra) assert_int_equal(m.n_nodes, NN_MAX_NODES);
        if (extra) tu_assert_err(&e, XD_EARG, "4097 layers, more than the 4096 a model may have");
        if (!s) nn_model_free(&m);
        free(desc);
    }
}

static void test_zero_grad_clears_all(void **state)
{
    (void)state;
    nn_model m;
    xd_err e;
    /* segments of odd lengths (the optimizer's shares, which zero_grad keeps to) */
    assert_int_equal(nn_model_build(&m, "input h=1 w=1 c=300; flatten; linear out=201; relu; "
                                        "linear out=7", 2, 1, &e),
                     XD_OK);
    assert_true(m.n_segs == 4);
    for (int t = 1; t <= 2; t++) {
        xd_threads_set(t);
        for (size_t i = 0; i < m.n_param; i++) m.grad[i] = 1.0f;
        nn_model_zero_grad(&m);
        for (size_t i = 0; i < m.n_param; i++) assert_true(m.grad[i] == 0.0f);
    }
    nn_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_description_errors),
        cmocka_unit_test(test_all_blanks_separate_words),
        cmocka_unit_test(test_limits_before_memory),
        cmocka_unit_test(test_allocation_failure_is_an_error),
        cmocka_unit_test(test_description_round_trip),
        cmocka_unit_test(test_learns_spirals),
        cmocka_unit_test(test_bit_identical_runs),
        cmocka_unit_test(test_zero_grad_clears_all),
        cmocka_unit_test(test_clear_grad_same_bits),
        cmocka_unit_test(test_layer_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
