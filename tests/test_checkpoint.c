/* distill/checkpoint: round trip, model rebuilt from metadata, mismatches, corrupt files, damaged
 * tensor data, non-finite values and negative running variances rejected with messages naming
 * the file. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>
#include <unistd.h>

#include "distill/checkpoint.h"
#include "io/safetensors.h"
#include "tests/support/tinyset.h"

static const char *DESC = "input h=6 w=6 c=2; conv2d name=c1 out=3 k=3 pad=1; batchnorm name=bn;"
                          "relu; flatten; linear out=4 name=logits head";

static void test_round_trip(void **state)
{
    (void)state;
    nn_model a, b;
    xd_err e;
    TU_OK(nn_model_build(&a, DESC, 4, 7, &e));
    /* make the state entries non-default so they are seen to travel */
    a.state[0] = 0.25f;
    a.state[a.n_state - 1] = 3.5f;
    io_kv meta[1] = {{"epoch", "3"}};
    TU_OK(ckpt_save("m.safetensors", &a, meta, 1, &e));
    TU_OK(ckpt_load("m.safetensors", 2, &b, &e));
    assert_string_equal(a.desc, b.desc);
    assert_int_equal(a.n_param, b.n_param);
    assert_memory_equal(a.param, b.param, sizeof(float) * a.n_param);
    assert_memory_equal(a.state, b.state, sizeof(float) * a.n_state);
    char *v;
    TU_OK(ckpt_read_meta("m.safetensors", "epoch", &v, &e));
    assert_string_equal(v, "3");
    free(v);
    TU_OK(ckpt_read_meta("m.safetensors", "xdistill.model", &v, &e));
    assert_string_equal(v, a.desc);
    free(v);
    /* the file is plain safetensors: names, dtypes and shapes readable by any loader */
    io_st_file *f;
    TU_OK(io_st_open("m.safetensors", &f, &e));
    const io_tensor *w = io_st_find(f, "c1.weight");
    assert_non_null(w);
    assert_int_equal(w->dtype, IO_F32);
    assert_int_equal(w->ndim, 4);
    assert_true(w->shape[0] == 3 && w->shape[1] == 3 && w->shape[2] == 3 && w->shape[3] == 2);
    assert_non_null(io_st_find(f, "bn.running_var"));
    io_st_close(f);
    nn_model_free(&a);
    nn_model_free(&b);
}

/* The model of DESC (seed 7) in a, saved as m.safetensors. */
static void save_m(nn_model *a)
{
    xd_err e;
    TU_OK(nn_model_build(a, DESC, 4, 7, &e));
    TU_OK(ckpt_save("m.safetensors", a, NULL, 0, &e));
}

static void test_mismatch_and_corruption(void **state)
{
    (void)state;
    nn_model a, other;
    xd_err e;
    save_m(&a);
    /* a model of another width refuses the file, naming the tensor */
    TU_OK(nn_model_build(&other, "input h=6 w=6 c=2; conv2d name=c1 out=5 k=3 pad=1; batchnorm name=bn;"
                                 "relu; flatten; linear out=4 name=logits head", 4, 1, &e));
    assert_int_equal(ckpt_load_into("m.safetensors", &other, &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "c1.weight");
    tu_assert_err(&e, XD_ESHAPE, "m.safetensors");
    nn_model_free(&other);

    /* truncated copies are refused, never half-loaded */
    size_t n;
    unsigned char *bytes = tu_read_file("m.safetensors", &n);
    const size_t cuts[] = {0, 7, 8, 20, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tu_write_file("cut.safetensors", bytes, cuts[i]);
        nn_model m;
        xd_err_clear(&e);
        xd_status s = ckpt_load("cut.safetensors", 2, &m, &e);
        assert_int_not_equal(s, XD_OK);
        tu_assert_err(&e, s, "cut.safetensors");
    }
    /* a model holding a NaN is never written, and a file holding one is never loaded */
    float nanv = NAN;
    float *lw = nn_model_param_data(&a, nn_model_param(&a, "logits.weight"));
    lw[2] = nanv;
    assert_int_equal(ckpt_save("nan.safetensors", &a, NULL, 0, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "logits.weight");
    assert_int_equal(access("nan.safetensors", F_OK), -1);
    io_st_file *f;
    TU_OK(io_st_open("m.safetensors", &f, &e));
    size_t nt = io_st_count(f);
    io_tensor *ts = calloc(nt, sizeof *ts);
    float *copies[64];
    for (size_t i = 0; i < nt; i++) {
        ts[i] = *io_st_tensor(f, i);
        size_t ne;
        io_tensor_elements(&ts[i], &ne);
        copies[i] = malloc(sizeof(float) * ne);
        memcpy(copies[i], ts[i].data, sizeof(float) * ne);
        if (strcmp(ts[i].name, "logits.weight") == 0) copies[i][2] = nanv;
        ts[i].data = copies[i];
    }
    io_kv meta[2] = {{"format", "xdistill"}, {"xdistill.model", a.desc}};
    TU_OK(io_st_write("nan.safetensors", ts, nt, meta, 2, &e));
    for (size_t i = 0; i < nt; i++) free(copies[i]);
    free(ts);
    io_st_close(f);
    nn_model m;
    assert_int_equal(ckpt_load("nan.safetensors", 2, &m, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "logits.weight");
    /* a safetensors file that is not ours */
    io_tensor t;
    float one = 1.0f;
    int64_t shp[1] = {1};
    io_tensor_set(&t, "x", IO_F32, 1, shp, &one);
    TU_OK(io_st_write("foreign.safetensors", &t, 1, NULL, 0, &e));
    assert_int_equal(ckpt_load("foreign.safetensors", 2, &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "not an xdistill checkpoint");
    assert_int_equal(ckpt_load("missing.safetensors", 2, &m, &e), XD_EIO);
    free(bytes);
    nn_model_free(&a);
}

/* A byte flipped in a weight (it becomes another finite number) is caught by the checksums, on
 * every load; the tensor bytes themselves are the model's floats, as before checksums. */
static void test_damaged_weights(void **state)
{
    (void)state;
    nn_model a, m;
    xd_err e;
    TU_OK(nn_model_build(&a, DESC, 4, 7, &e));
    float *lw = nn_model_param_data(&a, nn_model_param(&a, "logits.weight"));
    const float before = -0.0125f, after = 205.5f;
    lw[1] = before;
    TU_OK(ckpt_save("m.safetensors", &a, NULL, 0, &e));
    size_t n;
    unsigned char *b = tu_read_file("m.safetensors", &n);
    size_t data_at = 8 + (size_t)io_le_u64(b);
    /* the data area is every entry's floats in the model's order, nothing added */
    size_t at = data_at;
    for (int i = 0; i < a.n_params; i++) {
        const nn_param *p = &a.params[i];
        assert_memory_equal(b + at, (p->state ? a.state : a.param) + p->off, sizeof(float) * p->n);
        at += sizeof(float) * p->n;
    }
    assert_int_equal(at, n);
    unsigned char *hit = memmem(b + data_at, n - data_at, &before, sizeof before);
    assert_non_null(hit);
    memcpy(hit, &after, sizeof after);
    tu_write_file("bad.safetensors", b, n);
    assert_int_equal(ckpt_load("bad.safetensors", 2, &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "bad.safetensors: tensor 'logits.weight': checksum does not match");
    TU_OK(nn_model_build(&m, DESC, 4, 1, &e));
    assert_int_equal(ckpt_load_into("bad.safetensors", &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "logits.weight");
    nn_model_free(&m);

    /* a checkpoint of an older build (no checksum entries) still loads */
    json_t *root = json_loadb((const char *)b + 8, data_at - 8, 0, NULL);
    assert_non_null(root);
    json_t *meta = json_object_get(root, "__metadata__");
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(meta, tmp, key, v) if (strncmp(key, "crc32.", 6) == 0)
        json_object_del(meta, key);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t hl = strlen(text), old_n = 8 + hl + (n - data_at);
    unsigned char *old = malloc(old_n);
    io_le_put_u64(old, hl);
    memcpy(old + 8, text, hl);
    memcpy(old + 8 + hl, b + data_at, n - data_at);
    memcpy(old + 8 + hl + (hit - (b + data_at)), &before, sizeof before);
    tu_write_file("old.safetensors", old, old_n);
    TU_OK(ckpt_load("old.safetensors", 2, &m, &e));
    assert_memory_equal(m.param, a.param, sizeof(float) * a.n_param);
    nn_model_free(&m);
    free(old);
    free(text);
    free(b);
    nn_model_free(&a);
}

/* Values no trained model holds, in a crafted file whose checksums were recomputed: a negative
 * running variance (or NaN or Inf in it or in a weight) is refused by every loader, naming the
 * file and the tensor, and a model loaded into keeps every value it had. */
static void test_bad_values(void **state)
{
    (void)state;
    nn_model a, m;
    xd_err e;
    save_m(&a);
    const struct {
        const char *tensor;
        size_t at;
        float value;
        const char *why;
    } bad[] = {
        {"bn.running_var", 1, -0.5f, "-0.5 at index 1; a running variance must be >= 0"},
        {"bn.running_var", 2, NAN, "nan at index 2; values must be finite"},
        {"c1.weight", 5, INFINITY, "inf at index 5; values must be finite"},
        {"logits.bias", 0, -INFINITY, "-inf at index 0; values must be finite"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_rewrite_value("m.safetensors", "bad.safetensors", bad[i].tensor, bad[i].at, bad[i].value);
        char *want = tu_fmt("bad.safetensors: tensor '%s' holds %s", bad[i].tensor, bad[i].why);
        xd_err_clear(&e);
        assert_int_equal(ckpt_load("bad.safetensors", 2, &m, &e), XD_ENUM);
        tu_assert_err(&e, XD_ENUM, want);
        /* the checks of a recipe's init: and its loading */
        TU_OK(nn_model_build(&m, DESC, 4, 1, &e));
        nn_model before;
        TU_OK(nn_model_build(&before, DESC, 4, 1, &e));
        assert_int_equal(ckpt_check_init("bad.safetensors", &m, &e), XD_ENUM);
        tu_assert_err(&e, XD_ENUM, want);
        assert_int_equal(ckpt_load_init("bad.safetensors", &m, &e), XD_ENUM);
        tu_assert_err(&e, XD_ENUM, want);
        assert_int_equal(ckpt_load_into("bad.safetensors", &m, &e), XD_ENUM);
        tu_assert_err(&e, XD_ENUM, want);
        assert_memory_equal(m.param, before.param, sizeof(float) * m.n_param);
        assert_memory_equal(m.state, before.state, sizeof(float) * m.n_state);
        nn_model_free(&before);
        nn_model_free(&m);
        free(want);
    }
    /* a running variance of 0 is a channel that never varied: it loads (eps keeps it finite) */
    tu_rewrite_value("m.safetensors", "zero.safetensors", "bn.running_var", 0, 0.0f);
    TU_OK(ckpt_load("zero.safetensors", 2, &m, &e));
    nn_model_free(&m);
    nn_model_free(&a);
}

/* Checks one model description against the tiny data set (8x8 grey, 4 classes, no masks). */
static xd_status fit(const char *desc, const char *augment, const char *label, xd_err *e)
{
    nn_model m;
    TU_OK(nn_model_build(&m, desc, 2, 1, e));
    io_dataset *ds;
    TU_OK(io_dataset_open("tiny.xds", &ds, e));
    xd_err_clear(e);
    xd_status s = ckpt_check_fit("m.safetensors", &m, ds, "test", "image", augment, label, e);
    io_dataset_close(ds);
    nn_model_free(&m);
    return s;
}

/* A model scored on data it does not fit is an error naming both files and both values; an
 * explicit resize or channel conversion in the stored preprocessing is fine. */
static void test_check_fit(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    sp.n_train = 8;
    sp.n_test = 8;
    tiny_write("tiny.xds", &sp);
    xd_err e;
    const char *ok = "input h=8 w=8 c=1; flatten; linear out=4 name=logits head";
    TU_OK(fit(ok, "", "label", &e));
    /* the size: 28x28 input on 8x8 images */
    const char *big = "input h=28 w=28 c=1; flatten; linear out=4 name=logits head";
    assert_int_equal(fit(big, "mean=0.5", "label", &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "m.safetensors: the model reads 28x28x1 images; tiny.xds: "
                                 "test/image holds 8x8x1");
    TU_OK(fit(big, "size=28 mean=0.5", "label", &e));
    /* the channels */
    const char *rgb = "input h=8 w=8 c=3; flatten; linear out=4 name=logits head";
    assert_int_equal(fit(rgb, NULL, "label", &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "reads 8x8x3 images; tiny.xds: test/image holds 8x8x1");
    TU_OK(fit(rgb, "channels=3", "label", &e));
    /* the label set: 10 outputs, 4 classes; the other label set has 2 */
    const char *ten = "input h=8 w=8 c=1; flatten; linear out=10 name=logits head";
    assert_int_equal(fit(ten, NULL, "label", &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "m.safetensors: the model has 10 classes (head 'logits'); "
                                 "tiny.xds: label has 4 (classes)");
    assert_int_equal(fit(ok, NULL, "label.row", &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "label.row has 2 (classes.row)");
    TU_OK(fit(ten, NULL, NULL, &e));
    /* the task: a segmentation head on a data set without masks */
    const char *seg = "input h=8 w=8 c=1; conv2d out=5 k=1 name=maps head";
    assert_int_equal(fit(seg, NULL, "label", &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "m.safetensors: a segmentation model (head 'maps' gives 8x8x5 "
                                 "maps); tiny.xds: no test/mask");
}

/* A crafted checkpoint whose metadata describes a model of 2^28 - 2^20 parameters and holds one
 * tiny tensor: refused for the missing tensors before the model's memory is taken (the alarm
 * catches the gigabytes once allocated and filled first). */
static void test_tensors_checked_before_memory(void **state)
{
    (void)state;
    io_tensor t;
    float one = 1.0f;
    int64_t shp[1] = {1};
    io_tensor_set(&t, "x", IO_F32, 1, shp, &one);
    io_kv meta[2] = {{"format", "xdistill"},
                     {"xdistill.model", "input h=1 w=1 c=255; linear out=1048576 bias=0 name=big"}};
    xd_err e;
    TU_OK(io_st_write("crafted.safetensors", &t, 1, meta, 2, &e));
    nn_model m;
    alarm(2);
    assert_int_equal(ckpt_load("crafted.safetensors", 64, &m, &e), XD_ESHAPE);
    alarm(0);
    tu_assert_err(&e, XD_ESHAPE, "'big.weight' is missing");
}

/* A checkpoint that names its classes is checked by name: the data set's classes in another
 * order map onto its outputs, a data set of fewer of them fits, an unknown class is an error
 * listing both sets, and a list that does not match the head is a damaged file. Without names,
 * the counts are compared (test_check_fit). */
static void test_class_names(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    sp.n_train = 8;
    sp.n_test = 8;
    tiny_write("names.xds", &sp);
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open("names.xds", &ds, &e));
    nn_model m;
    TU_OK(nn_model_build(&m, "input h=8 w=8 c=1; flatten; linear out=5 name=logits head", 2, 1, &e));
    const char *five[] = {"bottom-right", "top-left", "extra", "bottom-left", "top-right"};
    char *json = ckpt_classes_json(five, 5);
    io_kv meta[1] = {{CKPT_META_CLASSES, json}};
    TU_OK(ckpt_save("named.safetensors", &m, meta, 1, &e));
    char **names;
    TU_OK(ckpt_class_names("named.safetensors", &m, &names, &e));
    assert_string_equal(names[2], "extra");
    assert_string_equal(names[4], "top-right");
    assert_null(names[5]);
    ckpt_class_names_free(names);
    /* the data set's top-left, top-right, bottom-left, bottom-right are outputs 1, 4, 3, 0 */
    TU_OK(ckpt_check_fit("named.safetensors", &m, ds, "test", "image", NULL, "label", &e));
    int32_t *map;
    TU_OK(ckpt_class_map("named.safetensors", &m, ds, "label", &map, &e));
    assert_non_null(map);
    const int32_t want[4] = {1, 4, 3, 0};
    assert_memory_equal(map, want, sizeof want);
    free(map);
    /* the label set `row` (top, bottom) is not among its names */
    assert_int_equal(ckpt_check_fit("named.safetensors", &m, ds, "test", "image", NULL,
                                    "label.row", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "class 'top' is not one of the classes of named.safetensors");
    tu_assert_err(&e, XD_EARG, "bottom-right, top-left, extra, bottom-left, top-right");
    /* the same order: no map */
    const char *same[] = {"top-left", "top-right", "bottom-left", "bottom-right"};
    nn_model m4;
    TU_OK(nn_model_build(&m4, "input h=8 w=8 c=1; flatten; linear out=4 name=logits head", 2, 1, &e));
    char *json4 = ckpt_classes_json(same, 4);
    io_kv meta4[1] = {{CKPT_META_CLASSES, json4}};
    TU_OK(ckpt_save("same.safetensors", &m4, meta4, 1, &e));
    TU_OK(ckpt_class_map("same.safetensors", &m4, ds, "label", &map, &e));
    assert_null(map);
    /* four names for a head of five outputs */
    TU_OK(ckpt_save("short.safetensors", &m, meta4, 1, &e));
    assert_int_equal(ckpt_check_fit("short.safetensors", &m, ds, "test", "image", NULL, "label", &e),
                     XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "names 4 classes for the 5 outputs");
    /* not a list of names */
    io_kv bad[1] = {{CKPT_META_CLASSES, "{\"a\": 1}"}};
    TU_OK(ckpt_save("bad.safetensors", &m, bad, 1, &e));
    assert_int_equal(ckpt_class_names("bad.safetensors", &m, &names, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "bad.safetensors: metadata 'xdistill.classes' is not");
    assert_null(names);
    /* names that are not UTF-8 keep their place in the list, each bad byte as U+FFFD */
    const char *odd[] = {"caf\xe9", "ok"};
    char *odd_json = ckpt_classes_json(odd, 2);
    assert_string_equal(odd_json, "[\"caf\\uFFFD\",\"ok\"]");
    free(odd_json);
    free(json);
    free(json4);
    nn_model_free(&m);
    nn_model_free(&m4);
    io_dataset_close(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_mismatch_and_corruption),
        cmocka_unit_test(test_damaged_weights),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_check_fit),
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_tensors_checked_before_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
