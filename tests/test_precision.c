/* train.precision: bf16: a model's training forward and backward in bf16 products are close to the
 * float32 ones and not the same (the bf16 products really run); its evaluation forward is float32
 * to the bit; a bf16 run stopped and resumed ends byte for byte where the uninterrupted one does;
 * the recipe key, its default and its errors; a teacher's precision (key, and evaluation forwards
 * in bf16). */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "distill/recipe.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
#include "nn/model.h"
#include "tests/support/trainrun.h"

/* every product the layers have: conv2d with bias, without bias, pointwise, linear; input
 * gradient too. Smooth activations: a ReLU or a max pool would turn the tiny differences of the
 * forward into a different mask or argmax now and then, whole gradients routed elsewhere (the
 * trainings below go through those). */
#define CNN "input h=8 w=8 c=3; conv2d name=c1 out=8 k=3 pad=1; gelu; avgpool k=2; " \
            "conv2d name=c2 out=16 k=3 pad=1 bias=0; tanh; conv2d name=pw out=8 k=1; gelu; " \
            "flatten; linear name=fc out=10 head"

static const nn_run train_run = {.training = 1, .seed = 9, .step = 3, .example = NULL};

/* |a - b| / |b| over n values */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / s);
}

/* The model's head output, parameter gradients and input gradient after a training forward and
 * a backward from dout r, at precision p. */
static void step(nn_model *m, nn_precision p, const float *x, const float *r, int B)
{
    m->precision = p;
    nn_model_forward(m, x, B, &train_run);
    nn_model_zero_grad(m);
    const int head = nn_model_default_head(m);
    float *d = nn_model_dout(m, head);
    for (size_t i = 0; i < (size_t)B * nn_model_node(m, head)->act_n; i++) d[i] = r[i];
    nn_model_backward(m);
}

/* The bound: bf16 keeps 8 bits of mantissa, so each operand is off by at most 2^-9 relatively and
 * each product term by 2^-8; through the at most four products in series from the input to the
 * head (and back), normwise relative differences stay within a few times 4 * 2^-8; 2^-4 leaves room
 * for cancellation. Measured here: about 2^-8. A wrong layout or a missing rounding gives O(1),
 * float32 products 0. */
static void test_step_close_not_equal(void **state)
{
    (void)state;
    const int B = 16;
    nn_model f, h;
    xd_err e;
    TU_OK(nn_model_build(&f, CNN, B, 5, &e));
    TU_OK(nn_model_build(&h, CNN, B, 5, &e));
    nn_model_enable_input_grad(&f);
    nn_model_enable_input_grad(&h);
    const size_t nx = (size_t)B * 8 * 8 * 3, ny = (size_t)B * 10;
    float *x = malloc(sizeof(float) * nx), *r = malloc(sizeof(float) * ny);
    assert_non_null(x);
    assert_non_null(r);
    tu_fill_uniform(x, nx, -1, 1, 3);
    tu_fill_uniform(r, ny, -1, 1, 4);
    step(&f, NN_PREC_FLOAT32, x, r, B);
    step(&h, NN_PREC_BF16, x, r, B);
    const int head = nn_model_default_head(&f);
    const double d_out = rel_diff(nn_model_out(&h, head), nn_model_out(&f, head), ny);
    const double d_in = rel_diff(nn_model_dinput(&h), nn_model_dinput(&f), nx);
    print_message("bf16 against float32: output %.2e, input gradient %.2e\n", d_out, d_in);
    assert_true(d_out > 0.0 && d_out < 0x1p-4);
    assert_true(d_in > 0.0 && d_in < 0x1p-4);
    for (int i = 0; i < f.n_params; i++) {
        const nn_param *p = &f.params[i];
        if (p->state) continue;
        const double d = rel_diff(h.grad + p->off, f.grad + p->off, p->n);
        print_message("  %s gradient %.2e\n", p->name, d);
        /* a bias's gradient without a product in between (the head's) is the same sum */
        if (!(d < 0x1p-4 && (d > 0.0 || !p->decay)))
            fail_msg("%s: gradients differ by %g", p->name, d);
    }
    /* evaluation runs in float32 whatever the model trains in */
    nn_model_forward(&f, x, B, NULL);
    nn_model_forward(&h, x, B, NULL);
    assert_memory_equal(nn_model_out(&f, head), nn_model_out(&h, head), sizeof(float) * ny);
    /* and the precision does not leak to the thread once the model is done */
    float *o = malloc(sizeof(float) * ny);
    assert_non_null(o);
    memcpy(o, nn_model_out(&f, head), sizeof(float) * ny);
    nn_model_forward(&f, x, B, &train_run);
    h.precision = NN_PREC_FLOAT32;
    nn_model_forward(&h, x, B, &train_run);
    assert_memory_equal(nn_model_out(&f, head), nn_model_out(&h, head), sizeof(float) * ny);
    free(o);
    free(x);
    free(r);
    nn_model_free(&f);
    nn_model_free(&h);
}

#define RECIPE(prec)                                                                              \
    "data: {path: toy.xds}\n"                                                                   \
    "model: \"" TEACHER_MODEL "\"\n"                                                             \
    "train:\n"                                                                                    \
    "  epochs: 4\n"                                                                               \
    "  batch: 16\n"                                                                               \
    "  precision: " prec "\n"                                                                     \
    "  optimizer: {kind: adamw, lr: 0.01}\n"                                                      \
    "losses:\n  - kind: ce\n"

/* A bf16 run resumes byte for byte, learns as the float32 one does, and ends with other weights. */
static void test_bf16_resume(void **state)
{
    (void)state;
    ensure_data();
    const int stops[] = {1};
    check_resume("bf16", RECIPE("bf16"), 4, stops, 1);
    train_result f = run_ok("f32", RECIPE("float32"), "f32", 11, 0, 0);
    train_result h = run_ok("bf16", RECIPE("bf16"), "bf16-again", 11, 0, 0);
    print_message("final accuracy: float32 %.3f, bf16 %.3f\n", f.final_acc, h.final_acc);
    assert_true(f.final_acc >= 0.9 && h.final_acc >= 0.9);
    /* the weights themselves differ (not just the recipe stored beside them) */
    nn_model a, b;
    load_ckpt("f32/last.safetensors", &a);
    load_ckpt("bf16-again/last.safetensors", &b);
    assert_int_equal(a.n_param, b.n_param);
    const double d = rel_diff(b.param, a.param, a.n_param);
    print_message("weights after training: relative difference %.2e\n", d);
    assert_true(d > 0.0);
    nn_model_free(&a);
    nn_model_free(&b);
}

static void test_recipe_key(void **state)
{
    (void)state;
    ensure_data();
    xd_err e;
    recipe r;
    TU_OK(recipe_parse("p.yaml", RECIPE("bf16"), strlen(RECIPE("bf16")), NULL, 0, 0, &r, &e));
    assert_int_equal(r.train.precision, NN_PREC_BF16);
    char *printed = recipe_to_yaml(&r);
    assert_non_null(strstr(printed, "  precision: bf16\n"));
    free(printed);
    recipe_free(&r);
    /* the default: float32, and not printed, so float32 runs' recipes read as they always have */
    const char *plain = "data: {path: toy.xds}\nmodel: \"input h=8 w=8 c=1; flatten; linear out=4 "
                        "head\"\ntrain: {epochs: 1}\nlosses:\n  - kind: ce\n";
    TU_OK(recipe_parse("d.yaml", plain, strlen(plain), NULL, 0, 0, &r, &e));
    assert_int_equal(r.train.precision, NN_PREC_FLOAT32);
    printed = recipe_to_yaml(&r);
    assert_null(strstr(printed, "precision"));
    free(printed);
    recipe_free(&r);
    assert_int_equal(recipe_parse("b.yaml", RECIPE("fp16"), strlen(RECIPE("fp16")), NULL, 0, 0, &r, &e),
                     XD_EARG);
    tu_assert_err(&e, XD_EARG, "train.precision: unknown value 'fp16' (expected float32 or bf16)");
}

/* A teacher's precision: the recipe key (default float32, printed only when set, its errors),
 * and an evaluation forward that runs bf16 products when the model's eval_precision says so,
 * close to float32's and not the same, without leaking to the thread. */
static void test_teacher_precision(void **state)
{
    (void)state;
    ensure_data();
    xd_err e;
    recipe r;
#define TREC(extra)                                                                               \
    "data: {path: toy.xds}\nmodel: \"input h=8 w=8 c=1; flatten; linear out=4 head\"\n"          \
    "teachers: [{name: t, checkpoint: toy.xds" extra "}]\ntrain: {epochs: 1}\n"                  \
    "losses:\n  - {kind: hinton, teacher: t}\n"
    TU_OK(recipe_parse("t.yaml", TREC(", precision: bf16"), strlen(TREC(", precision: bf16")),
                       NULL, 0, 0, &r, &e));
    assert_int_equal(r.teachers[0].precision, NN_PREC_BF16);
    char *printed = recipe_to_yaml(&r);
    assert_non_null(strstr(printed, "    precision: bf16\n"));
    free(printed);
    recipe_free(&r);
    TU_OK(recipe_parse("t.yaml", TREC(""), strlen(TREC("")), NULL, 0, 0, &r, &e));
    assert_int_equal(r.teachers[0].precision, NN_PREC_FLOAT32);
    printed = recipe_to_yaml(&r);
    assert_null(strstr(printed, "precision"));
    free(printed);
    recipe_free(&r);
    assert_int_equal(recipe_parse("t.yaml", TREC(", precision: half"), strlen(TREC(", precision: half")),
                                  NULL, 0, 0, &r, &e),
                     XD_EARG);
    tu_assert_err(&e, XD_EARG, "precision: unknown value 'half' (expected float32 or bf16)");
#undef TREC

    nn_model m;
    if (nn_model_build(&m, CNN, 4, 5, &e)) fail_msg("%s", e.msg);
    const size_t nx = (size_t)4 * 8 * 8 * 3, ny = (size_t)4 * 10;
    float *x = malloc(sizeof(float) * nx), *f = malloc(sizeof(float) * ny);
    assert_non_null(x);
    assert_non_null(f);
    tu_fill_uniform(x, nx, -1.0f, 1.0f, 6);
    const int head = nn_model_default_head(&m);
    nn_model_forward(&m, x, 4, NULL);
    memcpy(f, nn_model_out(&m, head), sizeof(float) * ny);
    m.eval_precision = NN_PREC_BF16;
    nn_model_forward(&m, x, 4, NULL);
    const double d = rel_diff(nn_model_out(&m, head), f, ny);
    print_message("bf16 against float32 evaluation forward: %.2e\n", d);
    assert_true(d > 0.0 && d < 0x1p-5);
    assert_int_equal(nn_mm_precision(), NN_PREC_FLOAT32);
    free(x);
    free(f);
    nn_model_free(&m);
}

/* Inference (nn_model_infer) with eval_precision bf16 gives the eval forward's bits, and not
 * float32's: convolutions with a ReLU and pool fused (a thin first one that stays float32, one
 * in nn/conv_bf16.c on AMX, or by Winograd's in nn/conv_wino.c on AVX512_BF16, pooled there,
 * with weights packed for it), a linear layer on
 * weights packed for the bf16 kernel, at 1 and 2 threads over several shares; with a strided
 * convolution nn/conv_bf16.c does not take (the engine then runs it unpacked, on one thread);
 * with another bf16 kernel chosen after packing (nothing packed for the first is used); and with
 * AVX512_BF16 chosen before packing (where the best is AMX: its own layout of packed weights). */
static void test_infer_bf16(void **state)
{
    (void)state;
    static const char *const descs[] = {
        "input h=12 w=12 c=1; conv2d out=16 k=3 pad=1; relu; maxpool k=2; conv2d out=32 k=3 "
        "pad=1; relu; maxpool k=2; flatten; linear out=24; relu; linear out=10 head",
        "input h=12 w=12 c=1; conv2d out=16 k=3 pad=1; relu; maxpool k=2; conv2d out=32 k=3 "
        "stride=2 pad=1; relu; flatten; linear out=10 head",
    };
    enum { B = 37 };
    const int threads = xd_threads_get();
    for (size_t di = 0; di < sizeof descs / sizeof descs[0]; di++)
        for (int isa = 0; isa < 3; isa++)
            for (int t = 1; t <= 2; t++) {
                xd_err e;
                nn_model m;
                if (nn_model_build(&m, descs[di], B, 3, &e)) fail_msg("%s", e.msg);
                const size_t nx = (size_t)B * 144, ny = (size_t)B * 10;
                float *x = malloc(sizeof(float) * nx), *f32 = malloc(sizeof(float) * ny);
                assert_true(x && f32);
                tu_fill_uniform(x, nx, 0.0f, 1.0f, 8);
                const int head = nn_model_default_head(&m);
                xd_threads_set(t);
                TU_OK(nn_model_pack_exact(&m, &e));
                nn_model_infer(&m, x, B, NULL);
                memcpy(f32, nn_model_out(&m, head), sizeof(float) * ny);
                nn_model_unpack(&m);
                m.eval_precision = NN_PREC_BF16;
                if (isa == 2) nn_bgemm_use(NN_BISA_AVX512BF16); /* packed for it (or portable) */
                TU_OK(nn_model_pack_exact(&m, &e));
                if (isa == 1) nn_bgemm_use(NN_BISA_PORTABLE); /* another kernel than packed for */
                nn_model_infer(&m, x, B, NULL);
                const float *got = nn_model_out(&m, head);
                assert_true(rel_diff(got, f32, ny) > 0.0);
                memcpy(f32, got, sizeof(float) * ny);
                nn_model_unpack(&m);
                nn_model_forward(&m, x, B, NULL);
                if (memcmp(f32, nn_model_out(&m, head), sizeof(float) * ny) != 0)
                    fail_msg("model %zu, kernel %s, %d threads: not the eval forward's bits", di,
                             nn_bisa_name(nn_bgemm_isa()), t);
                nn_bgemm_use(NN_BISA_COUNT);
                assert_int_equal(nn_mm_precision(), NN_PREC_FLOAT32);
                free(x);
                free(f32);
                nn_model_free(&m);
            }
    xd_threads_set(threads);
}

/* the cache sets (one .sum file each) in the toy set's cache folder */
static int cache_sets(void) { return tu_count_files("cache", ".sum"); }

/* The recipe's teacher precision reaches the run: a KD run with the teacher in bf16 builds a
 * cache of its own beside the float32 teacher's, and its student ends elsewhere. */
static void test_teacher_precision_run(void **state)
{
    (void)state;
    ensure_teacher();
#define KD(extra)                                                                                 \
    "data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"                                         \
    "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT extra "}\n"                           \
    "train: {epochs: 1, batch: 16}\nlosses:\n  - kind: kd\n"
    run_ok("kd32", KD(""), "kd32", 3, 0, 0);
    const int sets = cache_sets();
    assert_true(sets >= 1);
    run_ok("kd16", KD(", precision: bf16"), "kd16", 3, 0, 0);
    assert_int_equal(cache_sets(), sets + 1);
    run_ok("kd16b", KD(", precision: bf16"), "kd16b", 3, 0, 0); /* found again: no new set */
    assert_int_equal(cache_sets(), sets + 1);
#undef KD
    nn_model a, b;
    load_ckpt("kd32/last.safetensors", &a);
    load_ckpt("kd16/last.safetensors", &b);
    assert_true(rel_diff(b.param, a.param, a.n_param) > 0.0);
    nn_model_free(&a);
    nn_model_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_close_not_equal),
        cmocka_unit_test(test_bf16_resume),
        cmocka_unit_test(test_recipe_key),
        cmocka_unit_test(test_teacher_precision),
        cmocka_unit_test(test_teacher_precision_run),
        cmocka_unit_test(test_infer_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
