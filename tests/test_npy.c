/* io/npy: round trips, the exact header numpy writes, hand-made headers numpy accepts, and every
 * kind of broken file (each refused with the file name and an offset). */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/dtype.h"
#include "io/npy.h"

/* An .npy file: magic, version, header length, the header text (padded with spaces and a '\n'
 * to a multiple of 64 when pad is set), then data_len bytes counting up from 0. */
static void make_npy(const char *path, int major, const char *header, int pad, size_t data_len)
{
    size_t pre = major == 1 ? 10 : 12, hlen = strlen(header);
    size_t total = hlen;
    if (pad) total = hlen + 1 + (64 - (pre + hlen + 1) % 64) % 64;
    size_t n = pre + total + data_len;
    unsigned char *b = calloc(1, n);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    if (major == 1) {
        b[8] = (unsigned char)(total & 0xff);
        b[9] = (unsigned char)(total >> 8);
    } else {
        io_le_put_u32(b + 8, (uint32_t)total);
    }
    memcpy(b + pre, header, hlen);
    if (pad) {
        memset(b + pre + hlen, ' ', total - hlen);
        b[pre + total - 1] = '\n';
    }
    for (size_t i = 0; i < data_len; i++) b[pre + total + i] = (unsigned char)i;
    tu_write_file(path, b, n);
    free(b);
}

static void expect_open_fails(const char *path, xd_status code, const char *what)
{
    io_npy a;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = io_npy_open(path, &a, &e);
    if (s == XD_OK) fail_msg("%s: opened, expected failure mentioning '%s'", path, what);
    tu_assert_err(&e, code, what);
    tu_assert_err(&e, code, path);
    assert_null(a.t.data);
}

static void test_npy_roundtrip_dtypes(void **state)
{
    (void)state;
    float f[12];
    for (int i = 0; i < 12; i++) f[i] = (float)i * 0.5f - 2.0f;
    unsigned char u[5] = {0, 1, 127, 200, 255};
    int32_t i32[8] = {-5, 0, 7, INT32_MAX, INT32_MIN, 1, 2, 3};
    int64_t i64[1] = {(int64_t)1 << 40};
    const int64_t s34[] = {3, 4}, s5[] = {5}, s222[] = {2, 2, 2};
    io_tensor ts[4];
    io_tensor_set(&ts[0], "f", IO_F32, 2, s34, f);
    io_tensor_set(&ts[1], "u", IO_U8, 1, s5, u);
    io_tensor_set(&ts[2], "i", IO_I32, 3, s222, i32);
    io_tensor_set(&ts[3], "l", IO_I64, 0, NULL, i64);
    for (int k = 0; k < 4; k++) {
        xd_err e;
        xd_err_clear(&e);
        if (io_npy_write("a.npy", &ts[k], &e) != XD_OK) fail_msg("write: %s", e.msg);
        io_npy a;
        if (io_npy_open("a.npy", &a, &e) != XD_OK) fail_msg("open: %s", e.msg);
        assert_int_equal(a.version, 1);
        assert_string_equal(a.t.name, "a.npy");
        assert_int_equal(a.t.dtype, ts[k].dtype);
        assert_int_equal(a.t.ndim, ts[k].ndim);
        for (int d = 0; d < ts[k].ndim; d++) assert_int_equal(a.t.shape[d], ts[k].shape[d]);
        assert_int_equal(a.data_offset % 64, 0);
        assert_ptr_equal(a.t.data, (const char *)a.map.data + a.data_offset); /* no copy */
        assert_int_equal(((const char *)a.map.data)[a.data_offset - 1], '\n');
        size_t bytes;
        assert_int_equal(io_tensor_bytes(&ts[k], &bytes), 0);
        assert_int_equal(a.map.size, a.data_offset + bytes);
        assert_memory_equal(a.t.data, ts[k].data, bytes);
        io_npy_close(&a);
    }
}

/* numpy 1.24 writes exactly these 128 header bytes for np.save of a (3, 4) float32 array. */
/* The reader on bytes in memory: the same array as from the file, the given name in messages. */
static void test_npy_open_mem(void **state)
{
    (void)state;
    float f[6] = {1, 2, 3, 4, 5, 6};
    io_tensor t;
    io_tensor_set(&t, NULL, IO_F32, 2, (int64_t[]){2, 3}, f);
    xd_err e;
    TU_OK(io_npy_write("m.npy", &t, &e));
    size_t n;
    void *bytes = tu_read_file("m.npy", &n);
    io_npy a;
    TU_OK(io_npy_open_mem(bytes, n, "buffer", &a, &e));
    assert_string_equal(a.t.name, "buffer");
    assert_int_equal(a.t.ndim, 2);
    assert_int_equal(a.t.shape[1], 3);
    assert_memory_equal(a.t.data, f, sizeof f);
    io_npy_close(&a);
    assert_int_equal(io_npy_open_mem(bytes, n - 1, "buffer", &a, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "buffer: offset");
    io_npy_close(&a);
    free(bytes);
}

static void test_npy_header_matches_numpy(void **state)
{
    (void)state;
    float f[12] = {0};
    const int64_t s34[] = {3, 4};
    io_tensor t;
    io_tensor_set(&t, NULL, IO_F32, 2, s34, f);
    xd_err e;
    TU_OK(io_npy_write("h.npy", &t, &e));
    size_t n;
    unsigned char *b = tu_read_file("h.npy", &n);
    assert_int_equal(n, 128 + 48);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    unsigned char want[128];
    memcpy(want, "\x93NUMPY\x01\x00\x76\x00", 10); /* header length 118 */
    memset(want + 10, ' ', 117);
    memcpy(want + 10, dict, strlen(dict));
    want[127] = '\n';
    assert_memory_equal(b, want, 128);
    free(b);

    /* a 1-d u8 array: "(5,)" and '|u1' */
    unsigned char u[5] = {1, 2, 3, 4, 5};
    const int64_t s5[] = {5};
    io_tensor_set(&t, NULL, IO_U8, 1, s5, u);
    TU_OK(io_npy_write("u.npy", &t, &e));
    b = tu_read_file("u.npy", &n);
    assert_int_equal(n, 133);
    const char *dict5 = "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }";
    assert_memory_equal(b + 10, dict5, strlen(dict5));
    for (size_t i = 10 + strlen(dict5); i < 127; i++) assert_int_equal(b[i], ' ');
    assert_int_equal(b[127], '\n');
    assert_memory_equal(b + 128, u, 5);
    free(b);
}

static void test_npy_reads_other_headers(void **state)
{
    (void)state;
    xd_err e;
    io_npy a;
    /* version 2, keys in another order, double quotes, spacing, trailing commas, a newline */
    make_npy("v2.npy", 2, "{ \"shape\" : ( 2 ,3 , ) ,\n 'fortran_order':False,'descr':'<i8',}", 1,
             48);
    if (io_npy_open("v2.npy", &a, &e) != XD_OK) fail_msg("open: %s", e.msg);
    assert_int_equal(a.version, 2);
    assert_int_equal(a.t.dtype, IO_I64);
    assert_int_equal(a.t.ndim, 2);
    assert_int_equal(a.t.shape[0], 2);
    assert_int_equal(a.t.shape[1], 3);
    int64_t first;
    memcpy(&first, a.t.data, 8);
    assert_int_equal(first, 0x0706050403020100LL);
    io_npy_close(&a);

    /* a header that leaves the data at an odd offset: the reader hands out an aligned copy */
    make_npy("odd.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 0, 8);
    if (io_npy_open("odd.npy", &a, &e) != XD_OK) fail_msg("open: %s", e.msg);
    assert_int_equal(a.data_offset, 10 + 55);
    assert_true(((uintptr_t)a.t.data & 3) == 0);
    assert_memory_equal(a.t.data, "\x00\x01\x02\x03\x04\x05\x06\x07", 8);
    io_npy_close(&a);

    /* one-byte types: '<u1' and '|i1' are read too; 0-d and empty arrays */
    make_npy("i1.npy", 1, "{'descr': '|i1', 'fortran_order': False, 'shape': (0, 4), }", 1, 0);
    if (io_npy_open("i1.npy", &a, &e) != XD_OK) fail_msg("open: %s", e.msg);
    assert_int_equal(a.t.dtype, IO_I8);
    assert_int_equal(a.t.shape[0], 0);
    io_npy_close(&a);
    make_npy("s.npy", 1, "{'descr': '<u1', 'fortran_order': False, 'shape': ()}", 1, 1);
    if (io_npy_open("s.npy", &a, &e) != XD_OK) fail_msg("open: %s", e.msg);
    assert_int_equal(a.t.dtype, IO_U8);
    assert_int_equal(a.t.ndim, 0);
    io_npy_close(&a);
}

typedef struct {
    const char *header;
    size_t data_len;
    xd_status code;
    const char *what;
} bad_header;

static void test_npy_rejects_bad_headers(void **state)
{
    (void)state;
    static const bad_header cases[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, XD_EUNSUPPORTED,
         "fortran_order True"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", 16, XD_EUNSUPPORTED,
         "big-endian"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, XD_EUNSUPPORTED,
         "unsupported dtype '<c8'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, XD_EFORMAT,
         "structured"},
        {"{'descr': '<f4', 'fortran_order': False, }", 0, XD_EFORMAT, "no 'shape' key"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4,
         XD_EFORMAT, "appears twice"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1, }", 4, XD_EFORMAT,
         "unexpected key 'x'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5), }", 20, XD_EFORMAT,
         "not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", 0, XD_EFORMAT,
         "negative dimension"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (02,), }", 8, XD_EFORMAT,
         "leading zero"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }", 8, XD_EFORMAT,
         "expected ',' or ')' in 'shape', found '.'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2x,), }", 8, XD_EFORMAT,
         "expected a dimension in 'shape', found 'x'"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8, XD_EFORMAT,
         "True or False"},
        {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,), }", 8, XD_EFORMAT,
         "True or False"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }", 8, XD_EFORMAT,
         "expected ',' or '}'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", 8, XD_EFORMAT,
         "after the end of the header"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }", 8, XD_EFORMAT,
         "expected ',' or '}' in the header, found 'f'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2,), }", 8, XD_EFORMAT,
         "expected ':' after a key"},
        {"{'descr': '<f4\\', 'fortran_order': False, 'shape': (2,), }", 8, XD_EFORMAT,
         "unexpected '\\' inside a string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8, XD_EFORMAT,
         "expected ',' or '}'"},
        {"['descr', '<f4']", 8, XD_EFORMAT, "expected '{'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4, 5, 6, 7, 8, 9), }", 0,
         XD_EFORMAT, "more than 8 dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 0,
         XD_EFORMAT, "does not fit in 64 bits"},
        /* 2^32 * 2^32 elements overflow 64 bits */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 0,
         XD_EFORMAT, "too large"},
        /* the header lies: it promises 12 floats, the file holds 10 */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 40, XD_EFORMAT,
         "truncated"},
        /* or 2 floats, and the file holds more */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, XD_EFORMAT,
         "4 bytes after the data"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[32];
        snprintf(path, sizeof path, "bad%zu.npy", i);
        make_npy(path, 1, cases[i].header, 1, cases[i].data_len);
        expect_open_fails(path, cases[i].code, cases[i].what);
        expect_open_fails(path, cases[i].code, "offset");
    }
}

static void test_npy_rejects_bad_preamble(void **state)
{
    (void)state;
    tu_write_file("empty.npy", "", 0);
    expect_open_fails("empty.npy", XD_EFORMAT, "too short");
    tu_write_file("magic.npy", "\x93NUMPZ\x01\x00\x10\x00{}              ", 26);
    expect_open_fails("magic.npy", XD_EFORMAT, "offset 0: not an NPY file (bad magic)");
    tu_write_file("ver.npy", "\x93NUMPY\x04\x00\x10\x00{}              ", 26);
    expect_open_fails("ver.npy", XD_EUNSUPPORTED, "offset 6: unsupported NPY version 4.0");
    tu_write_file("long.npy", "\x93NUMPY\x01\x00\xff\x00{}              ", 26);
    expect_open_fails("long.npy", XD_EFORMAT, "offset 8: header length 255 runs past the end");
    tu_write_file("v2short.npy", "\x93NUMPY\x02\x00\x10\x00\x00", 11);
    expect_open_fails("v2short.npy", XD_EFORMAT, "too short");
}

static void test_npy_truncated_at_every_length(void **state)
{
    (void)state;
    float f[6] = {1, 2, 3, 4, 5, 6};
    const int64_t s[] = {2, 3};
    io_tensor t;
    io_tensor_set(&t, NULL, IO_F32, 2, s, f);
    xd_err e;
    TU_OK(io_npy_write("full.npy", &t, &e));
    size_t n;
    unsigned char *b = tu_read_file("full.npy", &n);
    assert_int_equal(n, 128 + 24);
    for (size_t len = 0; len < n; len++) {
        tu_write_file("cut.npy", b, len);
        io_npy a;
        xd_err_clear(&e);
        if (io_npy_open("cut.npy", &a, &e) == XD_OK) fail_msg("prefix of %zu bytes opened", len);
        tu_assert_err(&e, XD_EFORMAT, "cut.npy: ");
    }
    free(b);
}

static void test_npy_write_errors_leave_nothing(void **state)
{
    (void)state;
    uint16_t h[2] = {0, 0};
    const int64_t s[] = {2};
    io_tensor t;
    io_tensor_set(&t, NULL, IO_BF16, 1, s, h);
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(io_npy_write("bf.npy", &t, &e), XD_EUNSUPPORTED);
    tu_assert_err(&e, XD_EUNSUPPORTED, "no type for BF16");
    struct stat st;
    assert_int_not_equal(stat("bf.npy", &st), 0);
    io_tensor_set(&t, NULL, IO_F32, 1, s, NULL);
    assert_int_equal(io_npy_write("nodata.npy", &t, &e), XD_EARG);
    assert_int_not_equal(stat("nodata.npy", &st), 0);
    io_tensor_set(&t, NULL, IO_U16, 1, s, h);
    assert_int_equal(io_npy_write("no/such/dir/x.npy", &t, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "no/such/dir/x.npy");
}

static void test_npy_describe(void **state)
{
    (void)state;
    int32_t v[6] = {3, -1, 4, 1, -5, 9};
    const int64_t s[] = {2, 3};
    io_tensor t;
    io_tensor_set(&t, NULL, IO_I32, 2, s, v);
    xd_err e;
    TU_OK(io_npy_write("d.npy", &t, &e));
    io_npy a;
    TU_OK(io_npy_open("d.npy", &a, &e));
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    io_npy_describe(&a, out);
    fclose(out);
    io_npy_close(&a);
    assert_non_null(strstr(text, "d.npy: NumPy array (.npy version 1.0)"));
    assert_non_null(strstr(text, "dtype <i4 (I32), shape (2, 3), 6 elements, 24 bytes"));
    assert_non_null(strstr(text, "min -5, max 9, mean 1.83333"));
    assert_non_null(strstr(text, "first values: 3 -1 4 1 -5 9\n"));
    free(text);
}

static void test_dtype_table(void **state)
{
    (void)state;
    io_dtype t;
    for (int i = 0; i < IO_DTYPE_COUNT; i++) {
        assert_int_equal(io_dtype_from_name(io_dtype_name((io_dtype)i), &t), 0);
        assert_int_equal(t, i);
        const char *d = io_dtype_npy_descr((io_dtype)i);
        if (d) {
            assert_int_equal(io_dtype_from_npy_descr(d, &t), 0);
            assert_int_equal(t, i);
            /* the descr's digit is the element size */
            assert_int_equal((size_t)(d[2] - '0'), io_dtype_size((io_dtype)i));
        }
    }
    assert_int_equal(io_dtype_from_name("F33", &t), -1);
    assert_int_equal(io_dtype_from_npy_descr(">f4", &t), -1);
    size_t n;
    const int64_t ok[] = {3, 0, INT64_MAX}, big[] = {INT64_MAX, 2}, neg[] = {3, -1};
    assert_int_equal(io_shape_elements(3, ok, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(io_shape_elements(2, big, &n), -1);
    assert_int_equal(io_shape_elements(2, neg, &n), -1);
    assert_int_equal(io_shape_elements(9, ok, &n), -1);
    const int64_t half[] = {(int64_t)1 << 61};
    assert_int_equal(io_shape_bytes(IO_F32, 1, half, &n), -1); /* 2^63 bytes */
    assert_int_equal(io_shape_bytes(IO_U16, 1, half, &n), 0);
    assert_int_equal(n, (size_t)1 << 62);
    char buf[64];
    io_shape_format(0, NULL, buf, sizeof buf);
    assert_string_equal(buf, "()");
    io_shape_format(1, half, buf, sizeof buf);
    assert_string_equal(buf, "(2305843009213693952,)");
    io_shape_format(2, neg, buf, 6);
    assert_string_equal(buf, "(3, -");
    /* F16 1.0 = 0x3c00, -2.5 = 0xc100; BF16 1.0 = 0x3f80 */
    uint16_t h[3] = {0x3c00, 0xc100, 0x0001};
    assert_true(io_dtype_load(IO_F16, h, 0) == 1.0);
    assert_true(io_dtype_load(IO_F16, h, 1) == -2.5);
    assert_true(io_dtype_load(IO_F16, h, 2) == 1.0 / 16777216.0); /* smallest subnormal */
    uint16_t bf = 0x3f80;
    assert_true(io_dtype_load(IO_BF16, &bf, 0) == 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_npy_roundtrip_dtypes),
        cmocka_unit_test(test_npy_open_mem),
        cmocka_unit_test(test_npy_header_matches_numpy),
        cmocka_unit_test(test_npy_reads_other_headers),
        cmocka_unit_test(test_npy_rejects_bad_headers),
        cmocka_unit_test(test_npy_rejects_bad_preamble),
        cmocka_unit_test(test_npy_truncated_at_every_length),
        cmocka_unit_test(test_npy_write_errors_leave_nothing),
        cmocka_unit_test(test_npy_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
