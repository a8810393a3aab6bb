/* io/idx: IDX round trips (plain and gzip, every element type) and headers that lie. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/idx.h"

/* Writes raw bytes as a gzip file (for files our writer would never produce). */
static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(g), Z_OK);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* A u8 IDX header with the given dims, followed by data_n bytes counting up. */
static size_t make_u8(uint8_t *buf, int ndim, const uint32_t *dims, size_t data_n)
{
    buf[0] = 0, buf[1] = 0, buf[2] = 0x08, buf[3] = (uint8_t)ndim;
    for (int d = 0; d < ndim; d++) put_be32(buf + 4 + 4 * d, dims[d]);
    size_t h = 4 + 4 * (size_t)ndim;
    for (size_t i = 0; i < data_n; i++) buf[h + i] = (uint8_t)(i * 7 + 1);
    return h + data_n;
}

static void expect_fail(const char *path, const char *substr)
{
    io_idx x;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = io_idx_read(path, 0, &x, &e);
    if (s == XD_OK) fail_msg("%s was accepted, expected an error mentioning '%s'", path, substr);
    tu_assert_err(&e, XD_EFORMAT, path);
    tu_assert_err(&e, XD_EFORMAT, substr);
    assert_null(x.data);
}

static void test_u8_plain_round_trip_and_layout(void **state)
{
    (void)state;
    uint8_t img[2 * 3 * 4];
    for (int i = 0; i < 24; i++) img[i] = (uint8_t)(i * 11);
    io_idx x = {.type = IO_IDX_U8, .ndim = 3, .dims = {2, 3, 4}, .count = 24, .data = img};
    xd_err e;
    TU_OK(io_idx_write("imgs.idx", &x, IO_IDX_PLAIN, &e));
    size_t n;
    uint8_t *raw = tu_read_file("imgs.idx", &n);
    assert_int_equal(n, 16 + 24);
    const uint8_t head[16] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
    assert_memory_equal(raw, head, 16);
    assert_memory_equal(raw + 16, img, 24);
    free(raw);

    io_idx y;
    TU_OK(io_idx_read("imgs.idx", 0, &y, &e));
    assert_int_equal(y.type, IO_IDX_U8);
    assert_int_equal(y.ndim, 3);
    assert_int_equal(y.dims[0], 2);
    assert_int_equal(y.dims[1], 3);
    assert_int_equal(y.dims[2], 4);
    assert_int_equal(y.dims[3], 0);
    assert_int_equal(y.count, 24);
    assert_memory_equal(y.data, img, 24);
    TU_OK(io_idx_expect(&y, IO_IDX_U8, 3, "imgs.idx", &e));
    xd_err_clear(&e);
    assert_int_equal(io_idx_expect(&y, IO_IDX_U8, 1, "imgs.idx", &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "2x3x4 u8, expected u8 with 1 dimension");
    io_idx_free(&y);
}

static void test_big_endian_on_disk(void **state)
{
    (void)state;
    int16_t v[2] = {0x0102, -2};
    io_idx x = {.type = IO_IDX_I16, .ndim = 1, .dims = {2}, .count = 2, .data = v};
    xd_err e;
    TU_OK(io_idx_write("s.idx", &x, IO_IDX_PLAIN, &e));
    size_t n;
    uint8_t *raw = tu_read_file("s.idx", &n);
    const uint8_t want[12] = {0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE};
    assert_int_equal(n, 12);
    assert_memory_equal(raw, want, 12);
    free(raw);
}

/* The reader on bytes in memory, plain and gzip: the same array, the given name in messages. */
static void test_read_mem(void **state)
{
    (void)state;
    int16_t v[4] = {-1, 2, -300, 4};
    io_idx x = {IO_IDX_I16, 2, {2, 2}, 4, v}, got;
    xd_err e;
    for (int gz = 0; gz < 2; gz++) {
        TU_OK(io_idx_write("m.idx", &x, gz ? IO_IDX_GZIP : IO_IDX_PLAIN, &e));
        size_t n;
        void *bytes = tu_read_file("m.idx", &n);
        TU_OK(io_idx_read_mem(bytes, n, "buffer", 0, &got, &e));
        assert_int_equal(got.count, 4);
        assert_memory_equal(got.data, v, sizeof v);
        io_idx_free(&got);
        assert_int_equal(io_idx_read_mem(bytes, n - 1, "buffer", 0, &got, &e), XD_EFORMAT);
        tu_assert_err(&e, XD_EFORMAT, "buffer: ");
        assert_null(got.data);
        free(bytes);
    }
}

static void test_every_type_round_trips_gzip_and_plain(void **state)
{
    (void)state;
    int8_t i8[6] = {-128, -1, 0, 1, 100, 127};
    int16_t i16[6] = {-32768, -300, 0, 1, 300, 32767};
    int32_t i32[6] = {INT32_MIN, -70000, 0, 1, 70000, INT32_MAX};
    float f32[6] = {-1.5f, 0.0f, 1e-30f, 3.25f, 1e30f, -0.0f};
    double f64[6] = {-1.25, 0.0, 1e-300, 3.5, 1e300, 2.0 / 3.0};
    struct {
        io_idx_type t;
        void *d;
        size_t esize;
    } cases[] = {{IO_IDX_I8, i8, 1},
                 {IO_IDX_I16, i16, 2},
                 {IO_IDX_I32, i32, 4},
                 {IO_IDX_F32, f32, 4},
                 {IO_IDX_F64, f64, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int gz = 0; gz < 2; gz++) {
            io_idx x = {.type = cases[c].t,
                        .ndim = 4,
                        .dims = {1, 2, 1, 3},
                        .count = 6,
                        .data = cases[c].d};
            xd_err e;
            TU_OK(io_idx_write("t.idx", &x, gz ? IO_IDX_GZIP : IO_IDX_PLAIN, &e));
            size_t n;
            uint8_t *raw = tu_read_file("t.idx", &n);
            assert_int_equal(raw[0] == 0x1f && raw[1] == 0x8b, gz);
            free(raw);
            io_idx y;
            TU_OK(io_idx_read("t.idx", 0, &y, &e));
            assert_int_equal(y.type, cases[c].t);
            assert_int_equal(y.ndim, 4);
            assert_int_equal(y.count, 6);
            assert_int_equal(y.dims[3], 3);
            assert_memory_equal(y.data, cases[c].d, 6 * cases[c].esize);
            io_idx_free(&y);
        }
    }
}

static void test_large_gzip_round_trip(void **state)
{
    (void)state;
    /* more than one 64 KiB chunk on both the write and the read side */
    enum { N = 300000 };
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) v[i] = (float)(i % 977) * 0.5f - 100.0f;
    io_idx x = {.type = IO_IDX_F32, .ndim = 2, .dims = {N / 100, 100}, .count = N, .data = v};
    xd_err e;
    TU_OK(io_idx_write("big.idx.gz", &x, IO_IDX_GZIP, &e));
    io_idx y;
    TU_OK(io_idx_read("big.idx.gz", 0, &y, &e));
    assert_int_equal(y.count, N);
    assert_memory_equal(y.data, v, N * sizeof *v);
    io_idx_free(&y);
    free(v);
}

static void test_count_larger_than_data(void **state)
{
    (void)state;
    uint8_t buf[64];
    uint32_t dims[1] = {10};
    size_t n = make_u8(buf, 1, dims, 5);
    tu_write_file("short.idx", buf, n);
    expect_fail("short.idx", "data ends at offset 13");
    write_gz("short.idx.gz", buf, n);
    expect_fail("short.idx.gz", "data ends at decompressed offset 13");
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    uint8_t buf[64];
    uint32_t dims[2] = {2, 3};
    size_t n = make_u8(buf, 2, dims, 9);
    tu_write_file("long.idx", buf, n);
    expect_fail("long.idx", "3 trailing bytes after offset 18");
    write_gz("long.idx.gz", buf, n);
    expect_fail("long.idx.gz", "trailing bytes after decompressed offset 18");
}

static void test_huge_dims(void **state)
{
    (void)state;
    uint8_t buf[64];
    uint32_t dims[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    size_t n = make_u8(buf, 3, dims, 4);
    tu_write_file("huge.idx", buf, n);
    expect_fail("huge.idx", "more than the 268435456 allowed");
    /* under the default limit but far more than a tiny gzip file can expand to */
    uint32_t d2[2] = {10000, 10000};
    n = make_u8(buf, 2, d2, 4);
    write_gz("bomb.idx.gz", buf, n);
    expect_fail("bomb.idx.gz", "gzip file can hold");
    /* a caller's own limit */
    uint32_t d3[1] = {8};
    n = make_u8(buf, 1, d3, 8);
    tu_write_file("eight.idx", buf, n);
    io_idx x;
    xd_err e;
    assert_int_equal(io_idx_read("eight.idx", 7, &x, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "8 u8 elements, more than the 7 allowed");
    TU_OK(io_idx_read("eight.idx", 8, &x, &e));
    io_idx_free(&x);
}

static void test_bad_magic_type_and_ndim(void **state)
{
    (void)state;
    const uint8_t zip[12] = {'P', 'K', 3, 4, 0, 0, 0, 1, 0, 0, 0, 0};
    tu_write_file("zip.idx", zip, sizeof zip);
    expect_fail("zip.idx", "bad magic 0x504b0304");
    const uint8_t type[9] = {0, 0, 0x0A, 1, 0, 0, 0, 1, 5};
    tu_write_file("type.idx", type, sizeof type);
    expect_fail("type.idx", "unknown IDX type code 0x0a");
    const uint8_t nd0[5] = {0, 0, 8, 0, 7};
    tu_write_file("nd0.idx", nd0, sizeof nd0);
    expect_fail("nd0.idx", "0 dimensions");
    const uint8_t nd5[8] = {0, 0, 8, 5, 0, 0, 0, 1};
    tu_write_file("nd5.idx", nd5, sizeof nd5);
    expect_fail("nd5.idx", "5 dimensions");
    const uint8_t cut[10] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0};
    tu_write_file("cut.idx", cut, sizeof cut);
    expect_fail("cut.idx", "header ends at offset 10, 3 dimensions need 16 bytes");
    tu_write_file("tiny.idx", cut, 3);
    expect_fail("tiny.idx", "too short");
    tu_write_file("empty.idx", cut, 0);
    expect_fail("empty.idx", "too short");
    io_idx x;
    xd_err e;
    assert_int_equal(io_idx_read("missing.idx", 0, &x, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "missing.idx");
}

static void test_truncated_and_corrupt_gzip(void **state)
{
    (void)state;
    enum { N = 5000 };
    uint8_t *v = malloc(N);
    for (int i = 0; i < N; i++) v[i] = (uint8_t)((i * 2654435761u) >> 24); /* poorly compressible */
    io_idx x = {.type = IO_IDX_U8, .ndim = 1, .dims = {N}, .count = N, .data = v};
    xd_err e;
    TU_OK(io_idx_write("ok.idx.gz", &x, IO_IDX_GZIP, &e));
    size_t n;
    uint8_t *raw = tu_read_file("ok.idx.gz", &n);
    assert_true(n > 1000);
    /* trailer cut: all data is there but the CRC / length check cannot happen */
    tu_write_file("notrailer.idx.gz", raw, n - 4);
    expect_fail("notrailer.idx.gz", "gzip stream truncated");
    tu_write_file("half.idx.gz", raw, n / 2);
    expect_fail("half.idx.gz", "gzip stream truncated");
    /* flip the stored CRC */
    raw[n - 8] ^= 0x55;
    tu_write_file("crc.idx.gz", raw, n);
    expect_fail("crc.idx.gz", "corrupt gzip data");
    raw[n - 8] ^= 0x55;
    /* junk after the stream */
    uint8_t *junk = malloc(n + 3);
    memcpy(junk, raw, n);
    memcpy(junk + n, "abc", 3);
    tu_write_file("junk.idx.gz", junk, n + 3);
    expect_fail("junk.idx.gz", "3 bytes that are not gzip");
    /* two gzip members are one valid stream */
    uint8_t head[8] = {0, 0, 8, 1, 0, 0, 0, 4}, body[4] = {9, 8, 7, 6};
    gzFile g = gzopen("two.idx.gz", "wb");
    gzwrite(g, head, 8);
    gzclose(g);
    size_t n1;
    uint8_t *m1 = tu_read_file("two.idx.gz", &n1);
    write_gz("b.gz", body, 4);
    size_t n2;
    uint8_t *m2 = tu_read_file("b.gz", &n2);
    uint8_t *both = malloc(n1 + n2);
    memcpy(both, m1, n1);
    memcpy(both + n1, m2, n2);
    tu_write_file("two.idx.gz", both, n1 + n2);
    io_idx y;
    TU_OK(io_idx_read("two.idx.gz", 0, &y, &e));
    assert_memory_equal(y.data, body, 4);
    io_idx_free(&y);
    free(both);
    free(m1);
    free(m2);
    free(junk);
    free(raw);
    free(v);
}

static void test_writer_rejects_inconsistent_arrays(void **state)
{
    (void)state;
    uint8_t d[6] = {0};
    io_idx x = {.type = IO_IDX_U8, .ndim = 2, .dims = {2, 3}, .count = 5, .data = d};
    xd_err e;
    assert_int_equal(io_idx_write("w.idx", &x, IO_IDX_PLAIN, &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "w.idx");
    x.count = 6;
    x.ndim = 0;
    assert_int_equal(io_idx_write("w.idx", &x, IO_IDX_PLAIN, &e), XD_EARG);
    FILE *f = fopen("w.idx", "rb");
    assert_null(f); /* nothing half-written left behind */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u8_plain_round_trip_and_layout),
        cmocka_unit_test(test_big_endian_on_disk),
        cmocka_unit_test(test_read_mem),
        cmocka_unit_test(test_every_type_round_trips_gzip_and_plain),
        cmocka_unit_test(test_large_gzip_round_trip),
        cmocka_unit_test(test_count_larger_than_data),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_huge_dims),
        cmocka_unit_test(test_bad_magic_type_and_ndim),
        cmocka_unit_test(test_truncated_and_corrupt_gzip),
        cmocka_unit_test(test_writer_rejects_inconsistent_arrays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
