/* distill/cache: teacher outputs written once beside a tiny dataset, read back without running the
 * teacher, rebuilt when the key changes (teacher parameters, dataset, split, k, tap) or a file is
 * bad (truncated, wrong shape, flipped byte, broken checksum list, crafted values), top-k files
 * with ties broken by the lower index, and every error path with its message. */
#include "tests/support/testutil.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/runtime.h"
#include "distill/cache.h"
#include "io/dataset.h"
#include "io/npy.h"
#include "nn/model.h"

enum { N = 10, IN = 4, HID = 6, KC = 5, MB = 4 };

static const char *const DESC =
    "input h=1 w=1 c=4; linear out=6 name=hid; relu name=feat; linear out=5 name=logits head";

/* ---------------------------------------------------------------------------------------------
 * fixtures */

static void write_dataset(const char *path, const char *seed)
{
    io_dataset_writer *w;
    xd_err e;
    xd_err_clear(&e);
    if (io_dataset_writer_open(path, 4, &w, &e)) fail_msg("%s", e.msg);
    int32_t label[N] = {0};
    const int64_t shape[1] = {N};
    io_tensor t;
    io_tensor_set(&t, "train/label", IO_I32, 1, shape, label);
    TU_OK(io_dataset_add(w, &t, &e));
    TU_OK(io_dataset_set_meta(w, "name", "tiny", &e));
    TU_OK(io_dataset_set_meta(w, "seed", seed, &e));
    if (io_dataset_finish(w, &e)) fail_msg("%s", e.msg);
}

typedef struct {
    float x[N * IN];      /* the fake split, in memory */
    int calls;
    size_t next;          /* batches must come in order */
    int forbid;           /* fail the test if called */
    xd_status fail_with;  /* return this instead of filling */
} feeder;

static xd_status fill(void *ctx, size_t i0, size_t i1, void *input, xd_err *e)
{
    feeder *f = ctx;
    if (f->forbid) fail_msg("the teacher ran although the cache should have been used");
    assert_true(i0 == f->next && i1 > i0 && i1 - i0 <= MB && i1 <= N);
    f->next = i1 == N ? 0 : i1;
    f->calls++;
    if (f->fail_with) return xd_fail(e, f->fail_with, "feeder: example %zu cannot be decoded", i0);
    memcpy(input, f->x + i0 * IN, sizeof(float) * (i1 - i0) * IN);
    return XD_OK;
}

static void make_feeder(feeder *f)
{
    memset(f, 0, sizeof *f);
    tu_fill_uniform(f->x, N * IN, -2.0f, 2.0f, 5);
}

static void build_teacher(nn_model *m, uint64_t seed)
{
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(m, DESC, MB, seed, &e)) fail_msg("%s", e.msg);
}

static kd_cache_spec base_spec(void)
{
    return (kd_cache_spec){.dataset_path = "d.xds", .split = "train", .view = "image", .n = N,
                           .head = NULL, .topk = 0, .tap = "feat"};
}

/* The common start of a test: the data set d.xds (its identity from tag), the teacher with seed 3,
 * its inputs and the base spec. */
static void fixture(const char *tag, nn_model *m, feeder *f, kd_cache_spec *sp)
{
    write_dataset("d.xds", tag);
    build_teacher(m, 3);
    make_feeder(f);
    *sp = base_spec();
}

/* The teacher's outputs computed here, one example at a time: (N, KC) logits, (N, HID) feature. */
static void reference(nn_model *m, const feeder *f, float *logits, float *feat)
{
    int head = nn_model_find(m, "logits"), tap = nn_model_find(m, "feat");
    for (int i = 0; i < N; i++) {
        nn_model_forward(m, f->x + i * IN, 1, NULL);
        memcpy(logits + i * KC, nn_model_out(m, head), sizeof(float) * KC);
        if (feat) memcpy(feat + i * HID, nn_model_out(m, tap), sizeof(float) * HID);
    }
}

static void open_ok(const kd_cache_spec *sp, nn_model *m, feeder *f, kd_cache *c)
{
    xd_err e;
    xd_err_clear(&e);
    if (kd_cache_load_or_build(sp, m, fill, f, c, &e)) fail_msg("%s", e.msg);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

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
    feeder f;
    kd_cache_spec sp;
    fixture("reuse", &m, &f, &sp);
    kd_cache c;
    open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 0);
    assert_int_equal(f.calls, 3); /* 4 + 4 + 2 */
    assert_int_equal(c.K, KC);
    assert_int_equal(c.k, 0);
    assert_int_equal(c.feat_dim, HID);
    assert_int_equal(strlen(c.key), 16);
    assert_null(c.topk_val);

    float want[N * KC], wfeat[N * HID];
    reference(&m, &f, want, wfeat);
    tu_assert_close(c.logits, want, N * KC, 1e-6, 1e-7, "cached logits");
    tu_assert_close(c.feat, wfeat, N * HID, 1e-6, 1e-7, "cached feature");

    /* the files: beside the dataset, named by the key, loadable as plain .npy */
    char path[128];
    snprintf(path, sizeof path, "./cache/%s.logits.npy", c.key);
    assert_string_equal(c.path[KD_PART_LOGITS], path);
    snprintf(path, sizeof path, "./cache/%s.feat_feat.npy", c.key);
    assert_string_equal(c.path[KD_PART_FEAT], path);
    snprintf(path, sizeof path, "./cache/%s.sum", c.key);
    assert_true(file_exists(path));
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
    open_ok(&sp, &m, &f, &c);
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
    build_teacher(&m2, 3);
    char key2[17];
    TU_OK(kd_cache_key(&sp, &m2, key2, &e));
    assert_string_equal(key2, key);
    nn_model_free(&m2);
    nn_model_free(&m);
}

static void expect_new_key(const kd_cache_spec *sp, nn_model *m, const char *old, const char *why)
{
    char key[17];
    xd_err e;
    xd_err_clear(&e);
    if (kd_cache_key(sp, m, key, &e)) fail_msg("%s", e.msg);
    if (strcmp(key, old) == 0) fail_msg("the key did not change with %s", why);
}

static void test_key_changes(void **state)
{
    (void)state;
    nn_model m;
    feeder f;
    kd_cache_spec sp;
    fixture("keyA", &m, &f, &sp);
    kd_cache c;
    open_ok(&sp, &m, &f, &c);
    char key[17];
    snprintf(key, sizeof key, "%s", c.key);
    kd_cache_close(&c);

    kd_cache_spec v = sp;
    v.split = "test";
    expect_new_key(&v, &m, key, "the split");
    v = sp;
    v.view = "text.en";
    expect_new_key(&v, &m, key, "the view");
    v = sp;
    v.n = N - 1;
    expect_new_key(&v, &m, key, "n");
    v = sp;
    v.topk = 2;
    expect_new_key(&v, &m, key, "k");
    v = sp;
    v.tap = "hid";
    expect_new_key(&v, &m, key, "the tap");
    v = sp;
    v.tap = NULL;
    expect_new_key(&v, &m, key, "no tap");
    v = sp;
    v.head = "hid";
    expect_new_key(&v, &m, key, "the head");
    v = sp;
    v.augment = "mean=0.5 std=0.5";
    expect_new_key(&v, &m, key, "the inputs' augment options");
    { /* the same options in another order and with other separators: the same key */
        char k3[17], k4[17];
        xd_err oe;
        TU_OK(kd_cache_key(&v, &m, k3, &oe));
        v.augment = " std=0.5;mean=0.5\t";
        TU_OK(kd_cache_key(&v, &m, k4, &oe));
        assert_string_equal(k3, k4);
        v.augment = "mean=0.5 std=0.25";
        expect_new_key(&v, &m, k3, "another value of an option");
    }
    v = sp;
    v.text = "buckets=64";
    expect_new_key(&v, &m, key, "the inputs' text options");
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
    expect_new_key(&sp, &m, key, "a parameter");
    m.param[0] = keep;
    nn_model_init_params(&m, 4);
    f.calls = 0;
    open_ok(&sp, &m, &f, &c);
    assert_true(strcmp(c.key, key) != 0);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 0);
    assert_int_equal(f.calls, 3);
    float want[N * KC];
    reference(&m, &f, want, NULL);
    tu_assert_close(c.logits, want, N * KC, 1e-6, 1e-7, "logits of the new teacher");
    kd_cache_close(&c);
    nn_model_init_params(&m, 3);

    /* the dataset: another modification time, then other metadata */
    struct timespec ts[2] = {{1000000000, 5}, {1000000000, 5}};
    assert_int_equal(utimensat(AT_FDCWD, "d.xds", ts, 0), 0);
    expect_new_key(&sp, &m, key, "the dataset's modification time");
    TU_OK(kd_cache_key(&sp, &m, k2, &e));
    ts[0].tv_nsec = ts[1].tv_nsec = 6; /* nanoseconds count too */
    assert_int_equal(utimensat(AT_FDCWD, "d.xds", ts, 0), 0);
    expect_new_key(&sp, &m, k2, "the dataset's modification time in nanoseconds");
    TU_OK(kd_cache_key(&sp, &m, k2, &e));
    write_dataset("d.xds", "keyB");
    assert_int_equal(utimensat(AT_FDCWD, "d.xds", ts, 0), 0); /* same size and time */
    expect_new_key(&sp, &m, k2, "the dataset's metadata");
    nn_model_free(&m);
}

/* Builds the cache, damages it with `damage`, and checks the rebuild and its warning. */
typedef void (*damage_fn)(kd_cache *c);

static void expect_rebuild(damage_fn damage, const char *substr1, const char *substr2)
{
    nn_model m;
    feeder f;
    kd_cache_spec sp;
    fixture("bad", &m, &f, &sp);
    kd_cache c;
    open_ok(&sp, &m, &f, &c);
    damage(&c);
    kd_cache_close(&c);
    f.calls = 0;
    open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 1);
    assert_int_equal(f.calls, 3);
    if (!strstr(c.warning, substr1) || (substr2 && !strstr(c.warning, substr2)))
        fail_msg("warning '%s' does not mention '%s' and '%s'", c.warning, substr1,
                 substr2 ? substr2 : "");
    float want[N * KC], wfeat[N * HID];
    reference(&m, &f, want, wfeat);
    tu_assert_close(c.logits, want, N * KC, 1e-6, 1e-7, "rebuilt logits");
    tu_assert_close(c.feat, wfeat, N * HID, 1e-6, 1e-7, "rebuilt feature");
    kd_cache_close(&c);
    /* and the rebuilt set is trusted again */
    f.forbid = 1;
    open_ok(&sp, &m, &f, &c);
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
    feeder f;
    kd_cache_spec sp;
    fixture("nosum", &m, &f, &sp);
    kd_cache c;
    open_ok(&sp, &m, &f, &c);
    assert_int_equal(unlink(c.sum_path), 0); /* as after an interrupted build */
    kd_cache_close(&c);
    f.calls = 0;
    open_ok(&sp, &m, &f, &c);
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
    assert_int_equal(kd_cache_load_or_build(&sp, &m, fill, &f, &c, &e), XD_EIO);
    kd_cache_close(&c);
    assert_false(file_exists(sum));
    f.fail_with = XD_OK;
    f.next = 0;
    open_ok(&sp, &m, &f, &c);
    assert_int_equal(c.built, 1);
    assert_int_equal(c.rebuilt, 0);
    kd_cache_close(&c);
    nn_model_free(&m);
}

/* top-k with ties: outputs 1 and 3 share weights and bias, so their logits are equal */
static void tie_teacher(nn_model *m)
{
    build_teacher(m, 9);
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
    write_dataset("d.xds", "topk");
    nn_model m;
    tie_teacher(&m);
    feeder f;
    make_feeder(&f);
    float logits[N * KC];
    reference(&m, &f, logits, NULL);
    for (int i = 0; i < N; i++) assert_true(logits[i * KC + 1] == logits[i * KC + 3]);

    const int ks[2] = {3, KC};
    for (int t = 0; t < 2; t++) {
        const int k = ks[t];
        kd_cache_spec sp = base_spec();
        sp.topk = k;
        sp.tap = NULL;
        kd_cache c;
        open_ok(&sp, &m, &f, &c);
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
        open_ok(&sp, &m, &f, &c);
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
    write_dataset("d.xds", "forged");
    nn_model m;
    tie_teacher(&m);
    feeder f;
    make_feeder(&f);
    kd_cache_spec sp = base_spec();
    sp.topk = 3;
    sp.tap = NULL;
    const char *labels[KD_PART_COUNT] = {NULL, "topk_val", "topk_idx", "topk_rest", NULL};
    const char *why[4] = {"outside [0, 5)", "appears twice", "descending order", "above"};
    for (int kind = 0; kind < 4; kind++) {
        kd_cache c;
        open_ok(&sp, &m, &f, &c);
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
        open_ok(&sp, &m, &f, &c);
        assert_int_equal(c.rebuilt, 1);
        assert_int_equal(f.calls, 3);
        if (!strstr(c.warning, why[kind]) || !strstr(c.warning, "example 4"))
            fail_msg("warning '%s' does not say '%s' for example 4", c.warning, why[kind]);
        kd_cache_close(&c);
    }
    nn_model_free(&m);
}

static void expect_error(const kd_cache_spec *sp, nn_model *m, feeder *f, xd_status code,
                         const char *substr)
{
    kd_cache c;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(kd_cache_load_or_build(sp, m, fill, f, &c, &e), code);
    tu_assert_err(&e, code, substr);
    assert_null(c.path[KD_PART_LOGITS]); /* left empty */
    kd_cache_close(&c);
}

static void test_errors(void **state)
{
    (void)state;
    nn_model m;
    feeder f;
    kd_cache_spec sp;
    fixture("errors", &m, &f, &sp);
    sp.tap = "nope";
    expect_error(&sp, &m, &f, XD_EARG, "no node 'nope' to tap");
    sp = base_spec();
    sp.head = "nope";
    expect_error(&sp, &m, &f, XD_EARG, "no node 'nope' for the logits");
    sp = base_spec();
    sp.topk = KC + 1;
    expect_error(&sp, &m, &f, XD_EARG, "top-k 6 is outside [0, 5]");
    sp = base_spec();
    sp.n = 0;
    expect_error(&sp, &m, &f, XD_EARG, "no examples");
    sp = base_spec();
    sp.dataset_path = "missing.xds";
    expect_error(&sp, &m, &f, XD_EIO, "missing.xds");
    tu_write_file("bad.xds", "not a dataset", 13);
    sp.dataset_path = "bad.xds";
    expect_error(&sp, &m, &f, XD_EFORMAT, "bad.xds");

    /* the feeder's error comes back as it is, and no checksum file claims a complete set */
    sp = base_spec();
    f.fail_with = XD_EFORMAT;
    expect_error(&sp, &m, &f, XD_EFORMAT, "feeder: example 0 cannot be decoded");
    char key[17], path[64];
    xd_err e;
    TU_OK(kd_cache_key(&sp, &m, key, &e));
    snprintf(path, sizeof path, "cache/%s.sum", key);
    assert_false(file_exists(path));
    f.fail_with = XD_OK;
    f.next = 0;

    /* a teacher that outputs NaN */
    const nn_param *b = nn_model_param(&m, "logits.bias");
    nn_model_param_data(&m, b)[2] = NAN;
    expect_error(&sp, &m, &f, XD_ENUM, "not finite");
    f.next = 0;
    /* and no fill function when the files are missing */
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
    write_dataset("data/d.xds", "1");
    nn_model m;
    build_teacher(&m, 3);
    feeder f;
    make_feeder(&f);
    kd_cache_spec sp = base_spec();
    sp.dataset_path = "data/d.xds";
    kd_cache c;
    open_ok(&sp, &m, &f, &c);
    assert_true(strncmp(c.path[KD_PART_LOGITS], "data/cache/", 11) == 0);
    kd_cache_close(&c);
    sp.cache_dir = "elsewhere/teacher";
    open_ok(&sp, &m, &f, &c);
    assert_true(strncmp(c.sum_path, "elsewhere/teacher/", 18) == 0);
    assert_true(file_exists(c.sum_path));
    kd_cache_close(&c);
    nn_model_free(&m);
}

/* A build says that the teacher runs and how long it took; reading the files says nothing. */
static void test_build_is_announced(void **state)
{
    (void)state;
    nn_model m;
    feeder f;
    kd_cache_spec sp;
    fixture("announce", &m, &f, &sp);
    for (int round = 0; round < 2; round++) {
        FILE *log = tmpfile();
        assert_non_null(log);
        sp.log = log;
        kd_cache c;
        open_ok(&sp, &m, &f, &c);
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
    write_dataset("d.xds", tag);
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
    write_dataset("d.xds", "bf16");
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
    feeder f;
    kd_cache_spec sp;
    fixture("keyO", &m, &f, &sp);
    TU_OK(kd_cache_key(&sp, &m, key, &e));
    TU_OK(io_dataset_open("d.xds", &ds, &e));
    kd_cache_spec v = sp;
    v.dataset = ds;
    TU_OK(kd_cache_key(&v, &m, opened, &e));
    assert_string_equal(opened, key);
    write_dataset("d.xds.new", "keyO prepared again");
    assert_int_equal(rename("d.xds.new", "d.xds"), 0);
    expect_new_key(&sp, &m, key, "the set prepared again under its name");
    TU_OK(kd_cache_key(&v, &m, opened, &e));
    assert_string_equal(opened, key);
    io_dataset_close(ds);
    nn_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_then_reuse), cmocka_unit_test(test_key_changes),
        cmocka_unit_test(test_rebuild_when_bad), cmocka_unit_test(test_missing_sum_is_plain_build),
        cmocka_unit_test(test_topk_files),       cmocka_unit_test(test_topk_forged),
        cmocka_unit_test(test_errors),           cmocka_unit_test(test_cache_dir),
        cmocka_unit_test(test_build_is_announced), cmocka_unit_test(test_conv_teacher_exact),
        cmocka_unit_test(test_bf16_teacher),     cmocka_unit_test(test_tap_inside_chunks),
        cmocka_unit_test(test_key_of_open_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
