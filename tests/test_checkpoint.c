/* distill/checkpoint: round trip, model rebuilt from metadata, mismatches, corrupt files and
 * non-finite values rejected with messages naming the file. */
#include "tests/support/testutil.h"

#include <math.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>
#include <unistd.h>

#include "distill/checkpoint.h"
#include "io/safetensors.h"

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

static void test_mismatch_and_corruption(void **state)
{
    (void)state;
    nn_model a, other;
    xd_err e;
    TU_OK(nn_model_build(&a, DESC, 4, 7, &e));
    TU_OK(ckpt_save("m.safetensors", &a, NULL, 0, &e));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_mismatch_and_corruption),
        cmocka_unit_test(test_tensors_checked_before_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
