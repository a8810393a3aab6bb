/* distill/cache: every error path with its message, the cache's folder, the build announced,
 * convolution teachers exact at every thread count, bf16 teachers with their own key, a tap
 * inside the chunks, and the key of an open data set. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/runtime.h"
#include "distill/cache.h"
#include "io/dataset.h"
#include "nn/model.h"
#include "tests/support/cachefix.h"

static void expect_error(const kd_cache_spec *sp, nn_model *m, cf_feeder *f, xd_status code,
                         const char *substr)
{
    kd_cache c;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(kd_cache_load_or_build(sp, m, cf_fill, f, &c, &e), code);
    tu_assert_err(&e, code, substr);
    assert_null(c.path[KD_PART_LOGITS]); /* left empty */
    kd_cache_close(&c);
}

static void test_errors(void **state)
{
    (void)state;
    nn_model m;
    cf_feeder f;
    kd_cache_spec sp;
    cf_fixture("errors", &m, &f, &sp);
    sp.tap = "nope";
    expect_error(&sp, &m, &f, XD_EARG, "no node 'nope' to tap");
    sp = cf_base_spec();
    sp.head = "nope";
    expect_error(&sp, &m, &f, XD_EARG, "no node 'nope' for the logits");
    sp = cf_base_spec();
    sp.topk = KC + 1;
    expect_error(&sp, &m, &f, XD_EARG, "top-k 6 is outside [0, 5]");
    sp = cf_base_spec();
    sp.n = 0;
    expect_error(&sp, &m, &f, XD_EARG, "no examples");
    sp = cf_base_spec();
    sp.dataset_path = "missing.xds";
    expect_error(&sp, &m, &f, XD_EIO, "missing.xds");
    tu_write_file("bad.xds", "not a dataset", 13);
    sp.dataset_path = "bad.xds";
    expect_error(&sp, &m, &f, XD_EFORMAT, "bad.xds");

    /* the cf_feeder's error comes back as it is, and no checksum file claims a complete set */
    sp = cf_base_spec();
    f.fail_with = XD_EFORMAT;
    expect_error(&sp, &m, &f, XD_EFORMAT, "feeder: example 0 cannot be decoded");
    char key[17], path[64];
    xd_err e;
    TU_OK(kd_cache_key(&sp, &m, key, &e));
    snprintf(path, sizeof path, "cache/%s.sum", key);
    assert_false(tu_exists(path));
    f.fail_with = XD_OK;
    f.next = 0;

    /* a teacher that outputs NaN */
    const nn_param *b = nn_model_param(&m, "logits.bias");
    nn_model_param_data(&m, b)[2] = NAN;
    expect_error(&sp, &m, &f, XD_ENUM, "not finite");
    f.next = 0;
    /* and no cf_fill function when the files are missing */
    nn_model_init_params(&m, 3);
    kd_cache c;
    xd_err_clear(&e);
    assert_int_equal(kd_cache_load_or_build(&sp, &m, NULL, NULL, &c, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no way to fill");
    kd_cache_close(&c);
    nn_model_free(&m);
}

/* a cache folder given explicitly, and a dataset in another folder */
static void test_cache_dir(void **state)
{
    (void)state;
    assert_int_equal(mkdir("data", 0755), 0);
    cf_write_dataset("data/d.xds", "1");
    nn_model m;
    cf_build_teacher(&m, 3);
    cf_feeder f;
    cf_make_feeder(&f);
    kd_cache_spec sp = cf_base_spec();
    sp.dataset_path = "data/d.xds";
    kd_cache c;
    cf_open_ok(&sp, &m, &f, &c);
    assert_true(strncmp(c.path[KD_PART_LOGITS], "data/cache/", 11) == 0);
    kd_cache_close(&c);
    sp.cache_dir = "elsewhere/teacher";
    cf_open_ok(&sp, &m, &f, &c);
    assert_true(strncmp(c.sum_path, "elsewhere/teacher/", 18) == 0);
    assert_true(tu_exists(c.sum_path));
    kd_cache_close(&c);
    nn_model_free(&m);
}

/* A build says that the teacher runs and how long it took; reading the files says nothing. */
static void test_build_is_announced(void **state)
{
    (void)state;
    nn_model m;
    cf_feeder f;
    kd_cache_spec sp;
    cf_fixture("announce", &m, &f, &sp);
    for (int round = 0; round < 2; round++) {
        FILE *log = tmpfile();
        assert_non_null(log);
        sp.log = log;
        kd_cache c;
        cf_open_ok(&sp, &m, &f, &c);
        char text[512] = {0};
        rewind(log);
        size_t n = fread(text, 1, sizeof text - 1, log);
        fclose(log);
        if (round == 0) {
            assert_int_equal(c.built, 1);
            assert_non_null(strstr(text, "teacher-output cache: running the teacher once over 10 "
                                         "examples (image, split train)"));
            assert_non_null(strstr(text, c.sum_path));
            assert_non_null(strstr(text, "teacher-output cache: built in "));
        } else {
            assert_int_equal(c.built, 0);
            assert_int_equal(n, 0);
        }
        kd_cache_close(&c);
    }
    nn_model_free(&m);
}

/* A convolutional teacher with a batch norm (its running statistics not the identity) and a
 * ReLU fused with its max pool: the cache is built through the inference engine, and must hold
 * the eval forward's bits, tap and logits, at one and two threads (a folded norm would differ). */
enum { CH = 6, CW = 6, CC = 2, CN = 9, CMB = 4, CF = 4 * CH * CW };
static const char *const CONV_DESC =
    "input h=6 w=6 c=2; conv2d out=4 k=3 pad=1 name=c1; batchnorm name=bn; relu name=r; "
    "maxpool k=2 name=p; flatten; linear out=5 name=logits head";

static float conv_x[CN * CH * CW * CC];

static xd_status conv_fill(void *ctx, size_t i0, size_t i1, void *input, xd_err *e)
{
    (void)ctx;
    (void)e;
    memcpy(input, conv_x + i0 * CH * CW * CC, sizeof(float) * (i1 - i0) * CH * CW * CC);
    return XD_OK;
}

/* A round of a test over variants and thread counts: the threads set, a data set of its own
 * (a new key), the teacher built */
static void round_start(const char *what, int v, int threads, nn_model *m, const char *desc,
                        int max_batch, uint64_t seed, xd_err *e)
{
    xd_threads_set(threads);
    char tag[32];
    snprintf(tag, sizeof tag, "%s%d-%d", what, v, threads);
    cf_write_dataset("d.xds", tag);
    xd_err_clear(e);
    if (nn_model_build(m, desc, max_batch, seed, e)) fail_msg("%s", e->msg);
}

static void test_conv_teacher_exact(void **state)
{
    (void)state;
    tu_fill_uniform(conv_x, CN * CH * CW * CC, -2.0f, 2.0f, 11);
    /* the logits and the norm's output; then a ReLU the engine pools without writing, as head */
    static const char *const heads[] = {NULL, "r"}, *const taps[] = {"bn", "bn"};
    for (int v = 0; v < 2; v++)
        for (int threads = 1; threads <= 2; threads++) {
            nn_model m;
            xd_err e;
            round_start("conv", v, threads, &m, CONV_DESC, CMB, 7, &e);
            const nn_node *bn = nn_model_node(&m, nn_model_find(&m, "bn"));
            tu_fill_uniform(m.state + bn->s_off, 4, -0.5f, 0.5f, 12);    /* running mean */
            tu_fill_uniform(m.state + bn->s_off + 4, 4, 0.5f, 2.0f, 13); /* running variance */
            tu_fill_uniform(m.param + bn->w_off, 4, -1.5f, 1.5f, 14);    /* gamma, some < 0 */
            kd_cache_spec sp = {.dataset_path = "d.xds", .split = "train", .view = "image",
                                .n = CN, .head = heads[v], .topk = 0, .tap = taps[v]};
            kd_cache c;
            if (kd_cache_load_or_build(&sp, &m, conv_fill, NULL, &c, &e)) fail_msg("%s", e.msg);
            assert_int_equal(c.built, 1);
            assert_int_equal(c.feat_dim, CF);
            assert_null(m.packed); /* the teacher reads its parameters again */
            const int head = nn_model_find(&m, heads[v] ? heads[v] : "logits"),
                      tap = nn_model_find(&m, taps[v]);
            const size_t K = nn_model_node(&m, head)->act_n;
            float *want = malloc(sizeof(float) * CN * K), wfeat[CN * CF];
            assert_non_null(want);
            for (int i = 0; i < CN; i++) {
                nn_model_forward(&m, conv_x + (size_t)i * CH * CW * CC, 1, NULL);
                memcpy(want + i * K, nn_model_out(&m, head), sizeof(float) * K);
                memcpy(wfeat + i * CF, nn_model_out(&m, tap), sizeof(float) * CF);
            }
            tu_assert_close(c.logits, want, CN * K, 0, 0, "cached head of the conv teacher");
            tu_assert_close(c.feat, wfeat, CN * CF, 0, 0, "cached batch-norm output");
            free(want);
            kd_cache_close(&c);
            nn_model_free(&m);
        }
    xd_threads_set(1);
}

/* A teacher whose forwards run bf16 products (a recipe teacher's precision: bf16): its cache has
 * its own key (float32's unchanged), is built by the eval forward with bf16 products, bit for
 * bit, and holds other numbers than the float32 teacher's, close to them. */
static void test_bf16_teacher(void **state)
{
    (void)state;
    tu_fill_uniform(conv_x, CN * CH * CW * CC, -2.0f, 2.0f, 21);
    cf_write_dataset("d.xds", "bf16");
    nn_model m;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&m, CONV_DESC, CMB, 7, &e)) fail_msg("%s", e.msg);
    kd_cache_spec sp = {.dataset_path = "d.xds", .split = "train", .view = "image", .n = CN};
    char k32[17], k16[17];
    TU_OK(kd_cache_key(&sp, &m, k32, &e));
    kd_cache c32, c16;
    if (kd_cache_load_or_build(&sp, &m, conv_fill, NULL, &c32, &e)) fail_msg("%s", e.msg);
    m.eval_precision = NN_PREC_BF16;
    TU_OK(kd_cache_key(&sp, &m, k16, &e));
    assert_string_not_equal(k32, k16);
    /* each bf16 kernel sums in its own order: its own key */
    char kp[17];
    const nn_bisa isa = nn_bgemm_isa();
    nn_bgemm_use(NN_BISA_PORTABLE);
    TU_OK(kd_cache_key(&sp, &m, kp, &e));
    nn_bgemm_use(NN_BISA_COUNT);
    if (isa != NN_BISA_PORTABLE) assert_string_not_equal(kp, k16);
    if (kd_cache_load_or_build(&sp, &m, conv_fill, NULL, &c16, &e)) fail_msg("%s", e.msg);
    assert_int_equal(c16.built, 1); /* not the float32 teacher's files */
    const size_t K = (size_t)c16.K;
    float *want = malloc(sizeof(float) * CN * K);
    assert_non_null(want);
    for (int i = 0; i < CN; i++) {
        nn_model_forward(&m, conv_x + (size_t)i * CH * CW * CC, 1, NULL);
        memcpy(want + i * K, nn_model_out(&m, nn_model_default_head(&m)), sizeof(float) * K);
    }
    tu_assert_close(c16.logits, want, CN * K, 0, 0, "bf16 teacher's cached logits");
    double d = 0.0, n = 0.0;
    for (size_t i = 0; i < CN * K; i++) {
        d += fabs((double)c16.logits[i] - c32.logits[i]);
        n += fabs((double)c32.logits[i]);
    }
    print_message("bf16 against float32 cached logits: mean relative difference %.2e\n", d / n);
    assert_true(d > 0.0 && d < 0x1p-5 * n);
    free(want);
    kd_cache_close(&c16);
    kd_cache_close(&c32);
    nn_model_free(&m);
}

/* A teacher whose images the engine takes a few at a time (a run of per-image layers bigger than
 * its cache share): a tap inside that run (the convolution, the fused ReLU) is cached whole, as
 * the eval forward gives it, in float32 and in bf16, at one and two threads. */
enum { GH = 28, GN = 10, GMB = 8, GOC = 16 };
static const char *const GREY_DESC =
    "input h=28 w=28 c=1; conv2d out=16 k=3 pad=1 name=c1; relu name=r; maxpool k=2; "
    "conv2d out=16 k=3 pad=1; relu; maxpool k=2; flatten; linear out=3 name=logits head";
static float grey_x[GN * GH * GH];

static xd_status grey_fill(void *ctx, size_t i0, size_t i1, void *input, xd_err *e)
{
    (void)ctx;
    (void)e;
    memcpy(input, grey_x + i0 * GH * GH, sizeof(float) * (i1 - i0) * GH * GH);
    return XD_OK;
}

static void test_tap_inside_chunks(void **state)
{
    (void)state;
    tu_fill_uniform(grey_x, GN * GH * GH, -1.0f, 1.0f, 31);
    static const char *const taps[] = {"c1", "r"};
    for (int v = 0; v < 4; v++)
        for (int threads = 1; threads <= 2; threads++) {
            nn_model m;
            xd_err e;
            round_start("grey", v, threads, &m, GREY_DESC, GMB, 8, &e);
            m.eval_precision = v >= 2 ? NN_PREC_BF16 : NN_PREC_FLOAT32;
            kd_cache_spec sp = {.dataset_path = "d.xds", .split = "train", .view = "image",
                                .n = GN, .head = NULL, .topk = 0, .tap = taps[v % 2]};
            kd_cache c;
            if (kd_cache_load_or_build(&sp, &m, grey_fill, NULL, &c, &e)) fail_msg("%s", e.msg);
            assert_int_equal(c.built, 1);
            const int tap = nn_model_find(&m, taps[v % 2]);
            assert_false(m.nodes[tap].head); /* as it was */
            const size_t F = (size_t)GH * GH * GOC;
            assert_int_equal(c.feat_dim, F);
            float *want = malloc(sizeof(float) * GN * F);
            assert_non_null(want);
            for (int i0 = 0; i0 < GN; i0 += GMB) {
                const int B = GN - i0 < GMB ? GN - i0 : GMB;
                nn_model_forward(&m, grey_x + (size_t)i0 * GH * GH, B, NULL);
                memcpy(want + (size_t)i0 * F, nn_model_out(&m, tap), sizeof(float) * B * F);
            }
            if (memcmp(c.feat, want, sizeof(float) * GN * F) != 0)
                fail_msg("tap %s, %s, %d threads: not the eval forward's", taps[v % 2],
                         v >= 2 ? "bf16" : "float32", threads);
            free(want);
            kd_cache_close(&c);
            nn_model_free(&m);
        }
    xd_threads_set(1);
}

/* The key of a data set the run has open is that of the file it opened (as the examples the
 * cache is filled with come from it), the same as its path's when nothing changed, and still the
 * same when the set is prepared again under its name meanwhile; the path's own is then new. */
static void test_key_of_open_set(void **state)
{
    (void)state;
    char key[17], opened[17];
    xd_err e;
    io_dataset *ds;
    nn_model m;
    cf_feeder f;
    kd_cache_spec sp;
    cf_fixture("keyO", &m, &f, &sp);
    TU_OK(kd_cache_key(&sp, &m, key, &e));
    TU_OK(io_dataset_open("d.xds", &ds, &e));
    kd_cache_spec v = sp;
    v.dataset = ds;
    TU_OK(kd_cache_key(&v, &m, opened, &e));
    assert_string_equal(opened, key);
    cf_write_dataset("d.xds.new", "keyO prepared again");
    assert_int_equal(rename("d.xds.new", "d.xds"), 0);
    cf_expect_new_key(&sp, &m, key, "the set prepared again under its name");
    TU_OK(kd_cache_key(&v, &m, opened, &e));
    assert_string_equal(opened, key);
    io_dataset_close(ds);
    nn_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cache_dir),
        cmocka_unit_test(test_build_is_announced),
        cmocka_unit_test(test_conv_teacher_exact),
        cmocka_unit_test(test_bf16_teacher),
        cmocka_unit_test(test_tap_inside_chunks),
        cmocka_unit_test(test_key_of_open_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
