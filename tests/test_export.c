/* export: `xdistill export MODEL --onnx OUT.onnx` on small models this test makes, one layer
 * kind after another (linear, conv2d with stride and padding, batch norm with running statistics,
 * max and average pools, global average pooling, relu, gelu, tanh, sigmoid, dropout, add,
 * flatten, layer norm, bilinear upsampling, embedding bags over token ids with padding; a
 * classifier and a segmentation head, grey and RGB images, texts; fake quantisation; each exit
 * of an early-exit model; the model of every recipe in recipes/):
 *   - each file passes onnx.checker with full shape inference (python3-onnx);
 *   - ONNX Runtime (onnxruntime-node, which scripts/setup.sh installs into cache/onnxruntime)
 *     gives the probabilities of our own forward pass, the one `xdistill predict` runs, within
 *     1e-4 relative, on a batch of random inputs; without it the test says so and skips that;
 *   - a file that is no checkpoint, or none at all, or whose class names do not fit its head,
 *     gives one line naming it, and no output file. */
#include "tests/support/testutil.h"

#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/recipe.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/quant.h"
#include "tests/support/onnxrun.h"
#include "tests/support/runcli.h"

#define BATCH 3

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Exports ckpt (m's checkpoint; the outputs of head exit, NULL: the default head) to NAME.onnx,
 * checks the file and compares ONNX Runtime's probabilities on random inputs with m's forward
 * pass at that head. */
static void export_compare(const char *name, const char *ckpt, nn_model *m, const char *exit,
                           uint64_t seed)
{
    char *onnx = tu_fmt("%s.onnx", name), *err;
    if (tu_run_cli(NULL, &err, "export", ckpt, "--onnx", onnx, exit ? "--exit" : NULL, exit,
                   NULL) != 0)
        fail_msg("export %s: %s", name, err);
    free(err);
    tu_onnx_check(onnx);
    /* our probabilities on random inputs: pixels, or ids with padding (-1) among them */
    const size_t in_n = (size_t)BATCH * (m->tokens ? (size_t)m->tokens : (size_t)m->h * m->w * m->c);
    float *x = xd_xmalloc(sizeof(float) * in_n);
    tu_fill_uniform(x, in_n, -1.0f, 2.0f, seed ^ 0x77);
    const char *input = m->tokens ? "input.i32" : "input.f32";
    char *dims = m->tokens ? tu_fmt("%d %d", BATCH, m->tokens)
                           : tu_fmt("%d %d %d %d", BATCH, m->h, m->w, m->c);
    if (m->tokens) {
        const int vocab = m->nodes[0].vocab;
        int32_t *ids = (int32_t *)x;
        for (size_t i = 0; i < in_n; i++) ids[i] = (int32_t)floorf(x[i] * (float)vocab / 2.0f);
        for (int j = 0; j < m->tokens; j++) ids[j] = -1; /* a row without any id */
    }
    tu_write_file(input, x, sizeof(float) * in_n);
    const int head = exit ? nn_model_find(m, exit) : nn_model_default_head(m);
    const nn_node *hn = nn_model_node(m, head);
    const int K = hn->c > 1 || hn->h > 1 || hn->w > 1 ? hn->c : (int)hn->act_n;
    const size_t rows = (size_t)BATCH * hn->act_n / (size_t)K;
    nn_model_forward(m, x, BATCH, NULL);
    float *want = xd_xmalloc(sizeof(float) * rows * (size_t)K);
    nn_softmax_forward(want, nn_model_out(m, head), (int)rows, K);
    tu_onnx_compare(onnx, input, dims, want, rows * (size_t)K);
    free(want);
    free(x);
    free(dims);
    free(onnx);
}

/* Random values for m's biases and state (running variances positive; moving ranges left as
 * they are, to be calibrated). */
static void fill_random(nn_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_params; i++) {
        const nn_param *p = &m->params[i];
        float *v = nn_model_param_data(m, p);
        const int var = strstr(p->name, "running_var") != NULL;
        if (strstr(p->name, ".range")) continue;
        if (p->state || strstr(p->name, "bias"))
            tu_fill_uniform(v, p->n, var ? 0.5f : -0.5f, var ? 2.0f : 0.5f, seed + (uint64_t)i);
    }
}

/* Builds desc with random values, saves it, exports it (the outputs of head exit; NULL: the
 * default head), checks the file and compares ONNX Runtime with the forward pass. */
static void check_exit(const char *name, const char *desc, const char *exit, uint64_t seed)
{
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, desc, BATCH, seed, &e));
    fill_random(&m, seed);
    char *ckpt = tu_fmt("%s.safetensors", name);
    TU_OK(ckpt_save(ckpt, &m, NULL, 0, &e));
    export_compare(name, ckpt, &m, exit, seed);
    free(ckpt);
    nn_model_free(&m);
}

static void check_model(const char *name, const char *desc, uint64_t seed)
{
    check_exit(name, desc, NULL, seed);
}

/* An early-exit model: each exit on its own, the first one without the layers after it. */
static void test_early_exits(void **state)
{
    (void)state;
    const char *desc = "input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; relu name=trunk; gap; "
                       "linear out=3 name=exit1 head; conv2d from=trunk out=4 k=3 stride=2; "
                       "relu; flatten; linear out=3 name=exit2 head";
    check_exit("first", desc, "exit1", 9);
    check_exit("second", desc, "exit2", 9);
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "export", "first.safetensors", "--onnx", "x.onnx",
                                "--exit", "trunk", NULL), 1);
    if (!strstr(err, "first.safetensors: node 'trunk' is not an exit") ||
        !strstr(err, "its exits: exit1 or exit2"))
        fail_msg("'%s'", err);
    assert_false(exists("x.onnx"));
    free(err);
}

/* 1 if the file at path holds the bytes of s. */
static int file_holds(const char *path, const char *s)
{
    size_t n;
    char *b = tu_read_file(path, &n);
    const int found = memmem(b, n, s, strlen(s)) != NULL;
    free(b);
    return found;
}

/* The stored class names are the default head's: an exit of as many classes keeps them, one of
 * another number gets its class numbers (as predict --exit names them). */
static void test_exit_class_names(void **state)
{
    (void)state;
    tu_save_model("names0.safetensors",
                  "input h=4 w=4 c=1; flatten name=f; linear out=3 name=main head; "
                  "linear from=f out=3 name=same head; linear from=f out=5 name=aux head",
                  BATCH, 3);
    tu_rewrite_meta("names0.safetensors", "names.safetensors", "xdistill.classes",
                    "[\"ant\",\"bee\",\"cat\"]");
    static const struct {
        const char *exit, *has, *lacks;
    } cases[] = {{NULL, "\"cat\"", "\"2\""}, {"same", "\"cat\"", "\"2\""},
                 {"aux", "\"4\"", "\"cat\""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(tu_run_cli(NULL, NULL, "export", "names.safetensors", "--onnx", "n.onnx",
                                    cases[i].exit ? "--exit" : NULL, cases[i].exit, NULL),
                         0);
        if (!file_holds("n.onnx", cases[i].has) || file_holds("n.onnx", cases[i].lacks))
            fail_msg("exit %s: want %s, not %s", cases[i].exit ? cases[i].exit : "(default)",
                     cases[i].has, cases[i].lacks);
    }
}

static void test_mlp(void **state)
{
    (void)state;
    check_model("mlp", "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; "
                       "dropout p=0.5; linear out=4 name=logits head", 1);
}

static void test_cnn(void **state)
{
    (void)state;
    check_model("cnn", "input h=12 w=10 c=1; conv2d out=4 k=3 pad=1; batchnorm; relu; "
                       "maxpool k=2; conv2d out=6 k=3 stride=2 pad=1 bias=0; gelu; avgpool k=3; "
                       "flatten; linear out=5 name=logits head", 2);
    /* a linear layer on a map: the same weights at every position */
    check_model("pw", "input h=6 w=5 c=2; conv2d out=4 k=3 pad=1 name=c1; linear out=3 name=pw; "
                      "relu; flatten; linear out=4 name=logits head", 6);
}

static void test_rgb_residual(void **state)
{
    (void)state;
    check_model("res", "input h=8 w=8 c=3; conv2d name=a out=4 k=3 pad=1; tanh; "
                       "conv2d out=4 k=1; add with=a; sigmoid; gap; batchnorm; "
                       "linear out=3 head", 3);
}

static void test_segmentation(void **state)
{
    (void)state;
    check_model("seg", "input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; relu; "
                       "conv2d out=3 k=1 name=logits head", 4);
}

static void test_upsample_layernorm(void **state)
{
    (void)state;
    check_model("up", "input h=6 w=6 c=2; conv2d name=a out=4 k=3 pad=1; relu; maxpool k=2; "
                      "layernorm; upsample factor=2; add with=a; conv2d out=3 k=1 name=logits head",
                5);
}

static void test_text(void **state)
{
    (void)state;
    check_model("text", "input tokens=6; embbag vocab=20 out=8 mode=mean; layernorm; "
                        "linear out=4 head", 6);
    check_model("sum", "input tokens=5; embbag vocab=9 out=4 mode=sum; linear out=3 head", 7);
}

static void test_fakequant(void **state)
{
    (void)state;
    check_model("quant", "input h=4 w=4 c=1; flatten; fakequant bits=4; linear out=6; relu; "
                         "fakequant bits=8; linear out=3 head", 8);
}

/* int8 models as QuantizeLinear/DequantizeLinear pairs: the quantised form of desc with random
 * values, calibrated on random inputs, exported as its fake-quant checkpoint (ONNX Runtime
 * against the fake-quant forward) and as its int8 checkpoint (against the integer engine). */
static void check_int8(const char *name, const char *desc, uint64_t seed)
{
    nn_model m;
    xd_err e;
    char *q;
    TU_OK(nn_quant_desc(desc, 0.1f, &q, &e));
    TU_OK(nn_model_build(&m, q, BATCH, seed, &e));
    free(q);
    fill_random(&m, seed);
    const size_t in_n = (size_t)BATCH * m.h * m.w * m.c;
    float *x = xd_xmalloc(sizeof(float) * in_n);
    tu_fill_uniform(x, in_n, -1.0f, 2.0f, seed);
    const nn_run cal = {.calibrate = 1};
    nn_model_forward(&m, x, BATCH, &cal);
    free(x);
    char *fq = tu_fmt("%s-fq", name), *i8 = tu_fmt("%s-int8", name);
    char *fq_ckpt = tu_fmt("%s.safetensors", fq), *i8_ckpt = tu_fmt("%s.safetensors", i8);
    TU_OK(ckpt_save(fq_ckpt, &m, NULL, 0, &e));
    export_compare(fq, fq_ckpt, &m, NULL, seed);
    TU_OK(nn_qengine_attach(&m, &e));
    TU_OK(ckpt_save_int8(i8_ckpt, &m, NULL, 0, &e));
    nn_model_free(&m);
    TU_OK(ckpt_load(i8_ckpt, BATCH, &m, &e));
    export_compare(i8, i8_ckpt, &m, NULL, seed);
    nn_model_free(&m);
    free(fq);
    free(i8);
    free(fq_ckpt);
    free(i8_ckpt);
}

static void test_int8(void **state)
{
    (void)state;
    check_int8("q-mlp", "input h=6 w=6 c=1; flatten; linear out=12 name=fc1; relu; "
                        "linear out=4 name=logits head", 21);
    check_int8("q-pw", "input h=6 w=6 c=2; conv2d out=4 k=3 pad=1 name=c1; relu; "
                       "linear out=5 name=pw; relu; flatten; linear out=4 name=logits head", 23);
    check_int8("q-cnn", "input h=8 w=8 c=3; conv2d out=6 k=3 pad=1 name=c1; batchnorm; relu; "
                        "maxpool k=2; conv2d out=8 k=3 pad=1 name=c2; relu; gap; "
                        "linear out=5 name=logits head", 22);
}

/* The models of every recipe in recipes/ (pipelines and init: aside), each once. */
static void test_recipe_models(void **state)
{
    (void)state;
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    /* model_file paths are relative to the source tree */
    assert_int_equal(chdir(tu_src_path(".")), 0);
    glob_t gl;
    assert_int_equal(glob("recipes/*/*.yaml", 0, NULL, &gl), 0);
    char **descs = xd_xcalloc(gl.gl_pathc * 8 + 1, sizeof *descs);
    size_t n = 0;
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        size_t len;
        char *text = tu_read_file(gl.gl_pathv[i], &len);
        text = realloc(text, len + 1);
        text[len] = '\0';
        recipe r;
        xd_err e;
        /* a pipeline: its steps are recipes of their own; a model from init: is the model of
         * a checkpoint another recipe makes */
        if (strstr(text, "\nsteps:") || strstr(text, "\ninit:")) {
            free(text);
            continue;
        }
        if (recipe_parse(gl.gl_pathv[i], text, len, NULL, 0,
                         RECIPE_NO_FILE_CHECKS | RECIPE_STEP_REFS, &r, &e) != XD_OK) {
            /* back to the test's folder first: the later tests write there */
            assert_int_equal(chdir(cwd), 0);
            fail_msg("%s", e.msg);
        }
        for (int k = 0; k < r.n_models; k++) {
            int seen = 0;
            for (size_t j = 0; j < n; j++) seen |= strcmp(descs[j], r.models[k].model) == 0;
            if (!seen) descs[n++] = xd_xstrdup(r.models[k].model);
        }
        recipe_free(&r);
        free(text);
    }
    globfree(&gl);
    assert_int_equal(chdir(cwd), 0);
    assert_true(n >= 5);
    for (size_t j = 0; j < n; j++) {
        char name[32];
        snprintf(name, sizeof name, "recipe%zu", j);
        check_model(name, descs[j], 100 + j);
        free(descs[j]);
    }
    free(descs);
}

static void test_not_a_checkpoint(void **state)
{
    (void)state;
    const char *files[3] = {"nothing.safetensors", "missing.safetensors", "names.safetensors"};
    const char *says[3] = {"header length", "cannot open", "names 1 classes for the 4 outputs"};
    tu_write_file("nothing.safetensors", "not a checkpoint", 16);
    /* class names that do not fit the model's head */
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, "input h=4 w=4 c=1; flatten; linear out=4 name=logits head", 1, 1, &e));
    const io_kv meta[1] = {{CKPT_META_CLASSES, "[\"one\"]"}};
    TU_OK(ckpt_save("names.safetensors", &m, meta, 1, &e));
    nn_model_free(&m);
    for (int i = 0; i < 3; i++) {
        char *err;
        assert_int_equal(tu_run_cli(NULL, &err, "export", files[i], "--onnx", "out.onnx", NULL), 1);
        const char *nl = strchr(err, '\n');
        if (!nl || nl[1] || !strstr(err, files[i]) || !strstr(err, says[i]))
            fail_msg("export %s: '%s' is not one line naming it and saying '%s'", files[i], err,
                     says[i]);
        assert_false(exists("out.onnx"));
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_cnn),
        cmocka_unit_test(test_rgb_residual),
        cmocka_unit_test(test_segmentation),
        cmocka_unit_test(test_upsample_layernorm),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_fakequant),
        cmocka_unit_test(test_int8),
        cmocka_unit_test(test_early_exits),
        cmocka_unit_test(test_exit_class_names),
        cmocka_unit_test(test_recipe_models),
        cmocka_unit_test(test_not_a_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
