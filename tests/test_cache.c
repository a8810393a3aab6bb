/* distill/cache: teacher outputs written once beside a tiny dataset, read back without running the
 * teacher, rebuilt when the key changes (teacher parameters, dataset, split, k, tap) or a file is
 * bad (truncated, wrong shape, flipped byte, broken checksum list, crafted values), and top-k
 * files with ties broken by the lower index. Errors and other teachers are in
 * test_cache_teachers.c. */
#include "tests/support/testutil.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "distill/cache.h"
#include "io/npy.h"
#include "nn/model.h"
#include "tests/support/cachefix.h"

/* ---------------------------------------------------------------------------------------------
 * fixtures */

/* FNV-1a 64, written again from the header's description */
static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Writes c's checksum file again for whatever its arrays now hold (a forger's view). */
static void rewrite_sum(const kd_cache *c, const char *labels[KD_PART_COUNT])
{
    char text[2048];
    int len = snprintf(text, sizeof text, "xdistill teacher cache 1\nkey %s\n", c->key);
    for (int p = 0; p < KD_PART_COUNT; p++) {
        if (!c->path[p]) continue;
        size_t n;
        unsigned char *d = tu_read_file(c->path[p], &n);
        io_npy a;
        xd_err e;
        if (io_npy_open(c->path[p], &a, &e)) fail_msg("%s", e.msg);
        size_t bytes;
        io_tensor_bytes(&a.t, &bytes);
        len += snprintf(text + len, sizeof text - (size_t)len, "%s %zu %016llx\n", labels[p], bytes,
                        (unsigned long long)fnv(d + a.data_offset, bytes));
        io_npy_close(&a);
        free(d);
    }
    tu_write_file(c->sum_path, text, (size_t)len);
}

/* ---------------------------------------------------------------------------------------------
 * tests */

static void test_build_then_reuse(void **state)
{
    (void)state;
    nn_model m;
    cf_feeder f;
    kd_cache_spec sp;
    cf_fixture("reuse", &m, &f, &sp);
    kd_cache c;
    cf_open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 0);
    assert_int_equal(f.calls, 3); /* 4 + 4 + 2 */
    assert_int_equal(c.K, KC);
    assert_int_equal(c.k, 0);
    assert_int_equal(c.feat_dim, HID);
    assert_int_equal(strlen(c.key), 16);
    assert_null(c.topk_val);

    float want[N * KC], wfeat[N * HID];
    cf_reference(&m, &f, want, wfeat);
    tu_assert_close(c.logits, want, N * KC, 1e-6, 1e-7, "cached logits");
    tu_assert_close(c.feat, wfeat, N * HID, 1e-6, 1e-7, "cached feature");

    /* the files: beside the dataset, named by the key, loadable as plain .npy */
    char path[128];
    snprintf(path, sizeof path, "./cache/%s.logits.npy", c.key);
    assert_string_equal(c.path[KD_PART_LOGITS], path);
    snprintf(path, sizeof path, "./cache/%s.feat_feat.npy", c.key);
    assert_string_equal(c.path[KD_PART_FEAT], path);
    snprintf(path, sizeof path, "./cache/%s.sum", c.key);
    assert_true(tu_exists(path));
    io_npy a;
    xd_err e;
    TU_OK(io_npy_open(c.path[KD_PART_LOGITS], &a, &e));
    assert_int_equal(a.t.dtype, IO_F32);
    assert_int_equal(a.t.ndim, 2);
    assert_true(a.t.shape[0] == N && a.t.shape[1] == KC);
    assert_memory_equal(a.t.data, want, sizeof want);
    io_npy_close(&a);
    /* the checksum list is exactly the documented text */
    const char *labels[KD_PART_COUNT] = {"logits", NULL, NULL, NULL, "feat_feat"};
    size_t n0;
    char *sum0 = tu_read_file(c.sum_path, &n0);
    rewrite_sum(&c, labels);
    size_t n1;
    char *sum1 = tu_read_file(c.sum_path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(sum0, sum1, n0);
    free(sum0);
    free(sum1);
    char key[17];
    snprintf(key, sizeof key, "%s", c.key);
    kd_cache_close(&c);

    /* second run: same key, read from the files, the teacher never runs */
    f.forbid = 1;
    f.calls = 0;
    cf_open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 0);
    assert_int_equal(c.rebuilt, 0);
    assert_int_equal(f.calls, 0);
    assert_string_equal(c.key, key);
    tu_assert_close(c.logits, want, N * KC, 0, 0, "reused logits");
    tu_assert_close(c.feat, wfeat, N * HID, 0, 0, "reused feature");
    kd_cache_close(&c);
    /* also without any fill function */
    TU_OK(kd_cache_load_or_build(&sp, &m, NULL, NULL, &c, &e));
    assert_int_equal(c.built, 0);
    kd_cache_close(&c);

    /* a separately built teacher with the same parameters has the same key */
    nn_model m2;
    cf_build_teacher(&m2, 3);
    char key2[17];
    TU_OK(kd_cache_key(&sp, &m2, key2, &e));
    assert_string_equal(key2, key);
    nn_model_free(&m2);
    nn_model_free(&m);
}

static void test_key_changes(void **state)
{
    (void)state;
    nn_model m;
    cf_feeder f;
    kd_cache_spec sp;
    cf_fixture("keyA", &m, &f, &sp);
    kd_cache c;
    cf_open_ok(&sp, &m, &f, &c);
    char key[17];
    snprintf(key, sizeof key, "%s", c.key);
    kd_cache_close(&c);

    kd_cache_spec v = sp;
    v.split = "test";
    cf_expect_new_key(&v, &m, key, "the split");
    v = sp;
    v.view = "text.en";
    cf_expect_new_key(&v, &m, key, "the view");
    v = sp;
    v.n = N - 1;
    cf_expect_new_key(&v, &m, key, "n");
    v = sp;
    v.topk = 2;
    cf_expect_new_key(&v, &m, key, "k");
    v = sp;
    v.tap = "hid";
    cf_expect_new_key(&v, &m, key, "the tap");
    v = sp;
    v.tap = NULL;
    cf_expect_new_key(&v, &m, key, "no tap");
    v = sp;
    v.head = "hid";
    cf_expect_new_key(&v, &m, key, "the head");
    v = sp;
    v.augment = "mean=0.5 std=0.5";
    cf_expect_new_key(&v, &m, key, "the inputs' augment options");
    { /* the same options in another order and with other separators: the same key */
        char k3[17], k4[17];
        xd_err oe;
        TU_OK(kd_cache_key(&v, &m, k3, &oe));
        v.augment = " std=0.5;mean=0.5\t";
        TU_OK(kd_cache_key(&v, &m, k4, &oe));
        assert_string_equal(k3, k4);
        v.augment = "mean=0.5 std=0.25";
        cf_expect_new_key(&v, &m, k3, "another value of an option");
    }
    v = sp;
    v.text = "buckets=64";
    cf_expect_new_key(&v, &m, key, "the inputs' text options");
    /* the head named explicitly is the default head: same key */
    v = sp;
    v.head = "logits";
    char k2[17];
    xd_err e;
    TU_OK(kd_cache_key(&v, &m, k2, &e));
    assert_string_equal(k2, key);

    /* one parameter nudged: new key, and the cache is built again (a new set, no warning) */
    float keep = m.param[0];
    m.param[0] += 1e-3f;
    cf_expect_new_key(&sp, &m, key, "a parameter");
    m.param[0] = keep;
    nn_model_init_params(&m, 4);
    f.calls = 0;
    cf_open_ok(&sp, &m, &f, &c);
    assert_true(strcmp(c.key, key) != 0);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 0);
    assert_int_equal(f.calls, 3);
    float want[N * KC];
    cf_reference(&m, &f, want, NULL);
    tu_assert_close(c.logits, want, N * KC, 1e-6, 1e-7, "logits of the new teacher");
    kd_cache_close(&c);
    nn_model_init_params(&m, 3);

    /* the dataset: another modification time, then other metadata */
    struct timespec ts[2] = {{1000000000, 5}, {1000000000, 5}};
    assert_int_equal(utimensat(AT_FDCWD, "d.xds", ts, 0), 0);
    cf_expect_new_key(&sp, &m, key, "the dataset's modification time");
    TU_OK(kd_cache_key(&sp, &m, k2, &e));
    ts[0].tv_nsec = ts[1].tv_nsec = 6; /* nanoseconds count too */
    assert_int_equal(utimensat(AT_FDCWD, "d.xds", ts, 0), 0);
    cf_expect_new_key(&sp, &m, k2, "the dataset's modification time in nanoseconds");
    TU_OK(kd_cache_key(&sp, &m, k2, &e));
    cf_write_dataset("d.xds", "keyB");
    assert_int_equal(utimensat(AT_FDCWD, "d.xds", ts, 0), 0); /* same size and time */
    cf_expect_new_key(&sp, &m, k2, "the dataset's metadata");
    nn_model_free(&m);
}

/* Builds the cache, damages it with `damage`, and checks the rebuild and its warning. */
typedef void (*damage_fn)(kd_cache *c);

static void expect_rebuild(damage_fn damage, const char *substr1, const char *substr2)
{
    nn_model m;
    cf_feeder f;
    kd_cache_spec sp;
    cf_fixture("bad", &m, &f, &sp);
    kd_cache c;
    cf_open_ok(&sp, &m, &f, &c);
    damage(&c);
    kd_cache_close(&c);
    f.calls = 0;
    cf_open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 1);
    assert_int_equal(f.calls, 3);
    if (!strstr(c.warning, substr1) || (substr2 && !strstr(c.warning, substr2)))
        fail_msg("warning '%s' does not mention '%s' and '%s'", c.warning, substr1,
                 substr2 ? substr2 : "");
    float want[N * KC], wfeat[N * HID];
    cf_reference(&m, &f, want, wfeat);
    tu_assert_close(c.logits, want, N * KC, 1e-6, 1e-7, "rebuilt logits");
    tu_assert_close(c.feat, wfeat, N * HID, 1e-6, 1e-7, "rebuilt feature");
    kd_cache_close(&c);
    /* and the rebuilt set is trusted again */
    f.forbid = 1;
    cf_open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 0);
    assert_int_equal(c.rebuilt, 0);
    kd_cache_close(&c);
    nn_model_free(&m);
}

static void truncate_logits(kd_cache *c)
{
    size_t n;
    char *d = tu_read_file(c->path[KD_PART_LOGITS], &n);
    tu_write_file(c->path[KD_PART_LOGITS], d, n - 7);
    free(d);
}

static void flip_feature_byte(kd_cache *c)
{
    size_t n;
    unsigned char *d = tu_read_file(c->path[KD_PART_FEAT], &n);
    d[n - 3] ^= 0x10;
    tu_write_file(c->path[KD_PART_FEAT], d, n);
    free(d);
}

static void wrong_shape(kd_cache *c)
{
    float x[N * 4] = {0};
    const int64_t shape[2] = {N, 4};
    io_tensor t;
    io_tensor_set(&t, "x", IO_F32, 2, shape, x);
    xd_err e;
    TU_OK(io_npy_write(c->path[KD_PART_LOGITS], &t, &e));
}

static void wrong_dtype(kd_cache *c)
{
    double x[N * KC] = {0};
    const int64_t shape[2] = {N, KC};
    io_tensor t;
    io_tensor_set(&t, "x", IO_F64, 2, shape, x);
    xd_err e;
    TU_OK(io_npy_write(c->path[KD_PART_LOGITS], &t, &e));
}

static void garbage_sum(kd_cache *c) { tu_write_file(c->sum_path, "hello\n", 6); }

static void not_npy(kd_cache *c) { tu_write_file(c->path[KD_PART_FEAT], "PK\3\4 zip", 9); }

/* a NaN with a checksum list that matches it: only the value check can catch it */
static void forged_nan(kd_cache *c)
{
    float x[N * KC];
    memcpy(x, c->logits, sizeof x);
    x[2 * KC + 1] = NAN;
    const int64_t shape[2] = {N, KC};
    io_tensor t;
    io_tensor_set(&t, "x", IO_F32, 2, shape, x);
    xd_err e;
    TU_OK(io_npy_write(c->path[KD_PART_LOGITS], &t, &e));
    const char *labels[KD_PART_COUNT] = {"logits", NULL, NULL, NULL, "feat_feat"};
    rewrite_sum(c, labels);
}

static void test_rebuild_when_bad(void **state)
{
    (void)state;
    expect_rebuild(truncate_logits, ".logits.npy", "truncated");
    expect_rebuild(flip_feature_byte, ".sum", "line 4: expected 'feat_feat 240 ");
    expect_rebuild(wrong_shape, ".logits.npy", "expected <f4 (10, 5)");
    expect_rebuild(wrong_dtype, ".logits.npy", "<f8");
    expect_rebuild(garbage_sum, ".sum", "line 1: expected 'xdistill teacher cache 1'");
    expect_rebuild(not_npy, ".feat_feat.npy", NULL);
    expect_rebuild(forged_nan, ".logits.npy", "example 2");
}

static void test_missing_sum_is_plain_build(void **state)
{
    (void)state;
    nn_model m;
    cf_feeder f;
    kd_cache_spec sp;
    cf_fixture("nosum", &m, &f, &sp);
    kd_cache c;
    cf_open_ok(&sp, &m, &f, &c);
    assert_int_equal(unlink(c.sum_path), 0); /* as after an interrupted build */
    kd_cache_close(&c);
    f.calls = 0;
    cf_open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 0);
    assert_int_equal(f.calls, 3);

    /* a rebuild that fails drops the old checksum list first: the set no longer claims to be
     * complete, and the next run builds it afresh without a warning */
    flip_feature_byte(&c);
    char sum[64];
    snprintf(sum, sizeof sum, "%s", c.sum_path);
    kd_cache_close(&c);
    f.fail_with = XD_EIO;
    f.next = 0;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(kd_cache_load_or_build(&sp, &m, cf_fill, &f, &c, &e), XD_EIO);
    kd_cache_close(&c);
    assert_false(tu_exists(sum));
    f.fail_with = XD_OK;
    f.next = 0;
    cf_open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 0);
    kd_cache_close(&c);
    nn_model_free(&m);
}

/* top-k with ties: outputs 1 and 3 share weights and bias, so their logits are equal */
static void tie_teacher(nn_model *m)
{
    cf_build_teacher(m, 9);
    const nn_param *w = nn_model_param(m, "logits.weight"), *b = nn_model_param(m, "logits.bias");
    assert_non_null(w);
    assert_non_null(b);
    float *wd = nn_model_param_data(m, w), *bd = nn_model_param_data(m, b);
    memcpy(wd + 3 * HID, wd + 1 * HID, sizeof(float) * HID);
    bd[3] = bd[1];
}

static void test_topk_files(void **state)
{
    (void)state;
    cf_write_dataset("d.xds", "topk");
    nn_model m;
    tie_teacher(&m);
    cf_feeder f;
    cf_make_feeder(&f);
    float logits[N * KC];
    cf_reference(&m, &f, logits, NULL);
    for (int i = 0; i < N; i++) assert_true(logits[i * KC + 1] == logits[i * KC + 3]);

    const int ks[2] = {3, KC};
    for (int t = 0; t < 2; t++) {
        const int k = ks[t];
        kd_cache_spec sp = cf_base_spec();
        sp.topk = k;
        sp.tap = NULL;
        kd_cache c;
        cf_open_ok(&sp, &m, &f, &c);
        assert_int_equal(c.k, k);
        assert_null(c.logits);
        assert_null(c.feat);
        assert_non_null(c.path[KD_PART_TOPK_IDX]);
        assert_non_null(strstr(c.path[KD_PART_TOPK_IDX], ".topk_idx.npy"));
        int ties_seen = 0;
        for (int i = 0; i < N; i++) {
            const float *row = logits + i * KC;
            /* the test's own selection: repeatedly the first maximum among the unused */
            int used[KC] = {0};
            double m_drop = -INFINITY, s_drop = 0.0;
            for (int j = 0; j < k; j++) {
                int best = -1;
                for (int q = 0; q < KC; q++)
                    if (!used[q] && (best < 0 || row[q] > row[best])) best = q;
                used[best] = 1;
                assert_int_equal(c.topk_idx[i * k + j], best);
                assert_true(c.topk_val[i * k + j] == row[best]);
                if (j > 0 && c.topk_val[i * k + j] == c.topk_val[i * k + j - 1]) {
                    assert_true(c.topk_idx[i * k + j - 1] == 1 && best == 3);
                    ties_seen++;
                }
            }
            if (k < KC) {
                for (int q = 0; q < KC; q++)
                    if (!used[q]) m_drop = fmax(m_drop, row[q]);
                for (int q = 0; q < KC; q++)
                    if (!used[q]) s_drop += exp(row[q] - m_drop);
                double rest = m_drop + log(s_drop / (KC - k));
                assert_true(fabs(c.topk_rest[i] - rest) <= 1e-6 * fmax(1.0, fabs(rest)));
            } else {
                assert_true(c.topk_rest[i] == c.topk_val[i * k + k - 1]);
            }
        }
        if (k == KC) assert_int_equal(ties_seen, N); /* every row keeps both tied classes */
        kd_cache_close(&c);
        /* reused */
        f.forbid = 1;
        cf_open_ok(&sp, &m, &f, &c);
        assert_int_equal(c.built, 0);
        kd_cache_close(&c);
        f.forbid = 0;
    }
    nn_model_free(&m);
}

/* crafted top-k files with matching checksums: each refused for its values */
static void test_topk_forged(void **state)
{
    (void)state;
    cf_write_dataset("d.xds", "forged");
    nn_model m;
    tie_teacher(&m);
    cf_feeder f;
    cf_make_feeder(&f);
    kd_cache_spec sp = cf_base_spec();
    sp.topk = 3;
    sp.tap = NULL;
    const char *labels[KD_PART_COUNT] = {NULL, "topk_val", "topk_idx", "topk_rest", NULL};
    const char *why[4] = {"outside [0, 5)", "appears twice", "descending order", "above"};
    for (int kind = 0; kind < 4; kind++) {
        kd_cache c;
        cf_open_ok(&sp, &m, &f, &c);
        int32_t idx[N * 3];
        float val[N * 3], rest[N];
        memcpy(idx, c.topk_idx, sizeof idx);
        memcpy(val, c.topk_val, sizeof val);
        memcpy(rest, c.topk_rest, sizeof rest);
        if (kind == 0) idx[4 * 3 + 2] = 5;
        if (kind == 1) idx[4 * 3 + 2] = idx[4 * 3];
        if (kind == 2) {
            float t = val[4 * 3];
            val[4 * 3] = val[4 * 3 + 1];
            val[4 * 3 + 1] = t;
        }
        if (kind == 3) rest[4] = val[4 * 3 + 2] + 1.0f;
        const int64_t s2[2] = {N, 3}, s1[1] = {N};
        io_tensor t;
        xd_err e;
        io_tensor_set(&t, "i", IO_I32, 2, s2, idx);
        TU_OK(io_npy_write(c.path[KD_PART_TOPK_IDX], &t, &e));
        io_tensor_set(&t, "v", IO_F32, 2, s2, val);
        TU_OK(io_npy_write(c.path[KD_PART_TOPK_VAL], &t, &e));
        io_tensor_set(&t, "r", IO_F32, 1, s1, rest);
        TU_OK(io_npy_write(c.path[KD_PART_TOPK_REST], &t, &e));
        rewrite_sum(&c, labels);
        kd_cache_close(&c);
        f.calls = 0;
        cf_open_ok(&sp, &m, &f, &c);
        assert_int_equal(c.rebuilt, 1);
        assert_int_equal(f.calls, 3);
        if (!strstr(c.warning, why[kind]) || !strstr(c.warning, "example 4"))
            fail_msg("warning '%s' does not say '%s' for example 4", c.warning, why[kind]);
        kd_cache_close(&c);
    }
    nn_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_then_reuse),
        cmocka_unit_test(test_key_changes),
        cmocka_unit_test(test_rebuild_when_bad),
        cmocka_unit_test(test_missing_sum_is_plain_build),
        cmocka_unit_test(test_topk_files),
        cmocka_unit_test(test_topk_forged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
