/* io/safetensors: round trip, the exact bytes of a small header, the shape check against a model,
 * corrupt files (each refused with a message naming the file), and the tensors' checksums. */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/dtype.h"
#include "io/safetensors.h"

/* A safetensors file with the given header text (length as given, no padding) and data_len bytes
 * of data counting up from 0. */
static void make_st(const char *path, const char *header, size_t data_len)
{
    size_t hlen = strlen(header), n = 8 + hlen + data_len;
    unsigned char *b = malloc(n);
    io_le_put_u64(b, hlen);
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (unsigned char)i;
    tu_write_file(path, b, n);
    free(b);
}

static void expect_open_fails(const char *path, xd_status code, const char *what)
{
    io_st_file *f = (io_st_file *)1;
    xd_err e;
    xd_err_clear(&e);
    if (io_st_open(path, &f, &e) == XD_OK) fail_msg("%s opened; expected '%s'", path, what);
    assert_null(f);
    tu_assert_err(&e, code, what);
    char named[64];
    snprintf(named, sizeof named, "%s: ", path);
    tu_assert_err(&e, code, named);
}

static int no_temp_files(void)
{
    DIR *d = opendir(".");
    struct dirent *de;
    int clean = 1;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) clean = 0;
    closedir(d);
    return clean;
}

static void test_st_roundtrip(void **state)
{
    (void)state;
    float w[6] = {0.5f, -1.0f, 2.0f, 3.25f, -4.5f, 1e-3f};
    int64_t ids[4] = {-1, 0, (int64_t)1 << 50, 7};
    unsigned char m[3] = {1, 0, 255};
    const int64_t s23[] = {2, 3}, s4[] = {4}, s3[] = {3};
    io_tensor ts[3];
    io_tensor_set(&ts[0], "encoder.fc1.weight", IO_F32, 2, s23, w);
    io_tensor_set(&ts[1], "ids", IO_I64, 1, s4, ids);
    io_tensor_set(&ts[2], "mask", IO_U8, 1, s3, m);
    const io_kv meta[] = {{"recipe", "kind: kd\ntemperature: 4\n"}, {"model", "mlp 784-128-10"}};
    xd_err e;
    xd_err_clear(&e);
    if (io_st_write("m.safetensors", ts, 3, meta, 2, &e)) fail_msg("write: %s", e.msg);

    io_st_file *f;
    if (io_st_open("m.safetensors", &f, &e)) fail_msg("open: %s", e.msg);
    assert_string_equal(io_st_path(f), "m.safetensors");
    assert_int_equal(io_st_count(f), 3);
    for (size_t i = 0; i < 3; i++) {
        const io_tensor *t = io_st_tensor(f, i);
        assert_string_equal(t->name, ts[i].name); /* header order kept */
        assert_ptr_equal(io_st_find(f, ts[i].name), t);
        assert_int_equal(t->dtype, ts[i].dtype);
        assert_int_equal(t->ndim, ts[i].ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], ts[i].shape[d]);
        size_t bytes;
        io_tensor_bytes(t, &bytes);
        assert_memory_equal(t->data, ts[i].data, bytes);
    }
    assert_null(io_st_tensor(f, 3));
    assert_null(io_st_find(f, "nope"));
    assert_int_equal(io_st_meta_count(f), 2);
    assert_string_equal(io_st_meta(f, "recipe"), "kind: kd\ntemperature: 4\n");
    assert_string_equal(io_st_meta_at(f, 1)->key, "model");
    assert_null(io_st_meta(f, "seed"));
    TU_OK(io_st_check(f, ts, 3, &e));

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    io_st_describe(f, out);
    fclose(out);
    assert_non_null(strstr(text, "m.safetensors: safetensors, 3 tensors, 59 bytes of data"));
    assert_non_null(strstr(text, "    recipe = kind: kd\\ntemperature: 4\\n\n"));
    char line[128];
    snprintf(line, sizeof line, "  encoder.fc1.weight: F32 (2, 3), 24 bytes at data offset 0, "
             "crc32 %08x\n", (unsigned)io_crc32(0, w, sizeof w));
    assert_non_null(strstr(text, line));
    snprintf(line, sizeof line, "  mask: U8 (3,), 3 bytes at data offset 56, crc32 %08x\n    min 0, "
             "max 255", (unsigned)io_crc32(0, m, sizeof m));
    assert_non_null(strstr(text, line));
    free(text);
    io_st_close(f);

    /* no tensors, no metadata: "{}" padded to 8 */
    TU_OK(io_st_write("empty.safetensors", NULL, 0, NULL, 0, &e));
    size_t n;
    unsigned char *b = tu_read_file("empty.safetensors", &n);
    assert_int_equal(n, 16);
    assert_memory_equal(b, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(b);
    TU_OK(io_st_open("empty.safetensors", &f, &e));
    assert_int_equal(io_st_count(f), 0);
    io_st_close(f);
}

/* The exact bytes we write for a small file. */
/* The reader on bytes in memory: the same tensors as from the file, the given name in messages. */
static void test_st_open_mem(void **state)
{
    (void)state;
    float w[4] = {1, -2, 3, -4};
    io_tensor t;
    io_tensor_set(&t, "w", IO_F32, 2, (int64_t[]){2, 2}, w);
    io_kv meta = {"k", "v"};
    xd_err e;
    TU_OK(io_st_write("m.safetensors", &t, 1, &meta, 1, &e));
    size_t n;
    void *bytes = tu_read_file("m.safetensors", &n);
    io_st_file *f;
    TU_OK(io_st_open_mem(bytes, n, "buffer", &f, &e));
    assert_string_equal(io_st_path(f), "buffer");
    assert_string_equal(io_st_meta(f, "k"), "v");
    const io_tensor *got = io_st_find(f, "w");
    assert_non_null(got);
    assert_memory_equal(got->data, w, sizeof w);
    io_st_close(f);
    assert_int_equal(io_st_open_mem(bytes, n - 1, "buffer", &f, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "buffer: ");
    assert_null(f);
    free(bytes);
}

static void test_st_header_bytes(void **state)
{
    (void)state;
    float a[2] = {1.0f, 2.0f};
    unsigned char b[3] = {7, 8, 9};
    const int64_t s2[] = {2}, s3[] = {3};
    io_tensor ts[2];
    io_tensor_set(&ts[0], "a", IO_F32, 1, s2, a);
    io_tensor_set(&ts[1], "b/x", IO_U8, 1, s3, b);
    const io_kv meta[] = {{"k", "v \"q\""}};
    xd_err e;
    TU_OK(io_st_write("h.safetensors", ts, 2, meta, 1, &e));
    size_t n;
    unsigned char *f = tu_read_file("h.safetensors", &n);
    /* the checksums: CRC-32 of each tensor's bytes, as Python's zlib.crc32 gives them */
    const char *json = "{\"__metadata__\":{\"k\":\"v \\\"q\\\"\",\"crc32.a\":\"2e3fa576\","
                       "\"crc32.b/x\":\"4b0bfd3b\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b/x\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}";
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    assert_int_equal(jl, 184);
    assert_int_equal(padded, 184);
    uint64_t hl;
    memcpy(&hl, f, 8);
    assert_int_equal(hl, padded); /* little-endian on this host; checked byte by byte too */
    assert_int_equal(f[0], 184);
    for (int i = 1; i < 8; i++) assert_int_equal(f[i], 0);
    assert_memory_equal(f + 8, json, jl);
    for (size_t i = jl; i < padded; i++) assert_int_equal(f[8 + i], ' ');
    assert_int_equal((8 + padded) % 8, 0);
    assert_int_equal(n, 8 + padded + 11);
    assert_memory_equal(f + 8 + padded, a, 8);
    assert_memory_equal(f + 8 + padded + 8, b, 3);
    free(f);
}

static void test_st_check_against_model(void **state)
{
    (void)state;
    float *w = calloc(128 * 784, sizeof *w);
    float bias[128] = {0};
    const int64_t sw[] = {128, 784}, sb[] = {128};
    io_tensor file_ts[2];
    io_tensor_set(&file_ts[0], "fc1.weight", IO_F32, 2, sw, w);
    io_tensor_set(&file_ts[1], "fc1.bias", IO_F32, 1, sb, bias);
    xd_err e;
    TU_OK(io_st_write("model.safetensors", file_ts, 2, NULL, 0, &e));
    free(w);
    io_st_file *f;
    TU_OK(io_st_open("model.safetensors", &f, &e));

    const int64_t want_w[] = {128, 3136}, s10[] = {10};
    io_tensor want[3];
    io_tensor_set(&want[0], "fc1.weight", IO_F32, 2, want_w, NULL);
    io_tensor_set(&want[1], "fc1.bias", IO_F32, 1, sb, NULL);
    xd_err_clear(&e);
    assert_int_equal(io_st_check(f, want, 2, &e), XD_ESHAPE);
    assert_string_equal(e.msg, "model.safetensors: tensor 'fc1.weight' has shape (128, 784), "
                               "expected (128, 3136)");

    io_tensor_set(&want[0], "fc1.weight", IO_F32, 2, sw, NULL);
    io_tensor_set(&want[2], "fc2.bias", IO_F32, 1, s10, NULL);
    assert_int_equal(io_st_check(f, want, 3, &e), XD_ESHAPE);
    assert_string_equal(e.msg, "model.safetensors: tensor 'fc2.bias' is missing");

    assert_int_equal(io_st_check(f, want, 1, &e), XD_ESHAPE);
    assert_string_equal(e.msg, "model.safetensors: unexpected tensor 'fc1.bias'");

    io_tensor_set(&want[1], "fc1.bias", IO_F64, 1, sb, NULL);
    assert_int_equal(io_st_check(f, want, 2, &e), XD_ESHAPE);
    assert_string_equal(e.msg, "model.safetensors: tensor 'fc1.bias' has dtype F32, expected F64");

    /* several problems: the first is named, the rest counted */
    io_tensor_set(&want[0], "fc1.weight", IO_F32, 2, want_w, NULL);
    assert_int_equal(io_st_check(f, want, 3, &e), XD_ESHAPE);
    assert_string_equal(e.msg, "model.safetensors: tensor 'fc1.weight' has shape (128, 784), "
                               "expected (128, 3136) (and 2 more problems)");

    io_tensor_set(&want[0], "fc1.weight", IO_F32, 2, sw, NULL);
    io_tensor_set(&want[1], "fc1.bias", IO_F32, 1, sb, NULL);
    TU_OK(io_st_check(f, want, 2, &e));
    io_st_close(f);
}

typedef struct {
    const char *header;
    size_t data_len;
    const char *what;
} bad_st;

static void test_st_rejects_bad_headers(void **state)
{
    (void)state;
    static const bad_st cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8,
         "invalid JSON header"},
        {"[1, 2]", 0, "does not start with '{'"},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "tensor 'a': unknown dtype 'F33'"},
        {"{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is not a string"},
        /* shape says 3 floats, offsets hold 2 */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         "tensor 'a': data_offsets [0, 8] hold 8 bytes, but F32 (3,) needs 12"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8,
         "data_offsets [0, 16] out of range (the data area has 8 bytes)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "out of range"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
         "tensors 'a' [0, 8] and 'b' [4, 12] overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
         "data bytes [4, 8)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         "the data area has 8 bytes but the tensors cover 4"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
         "shape entry 0 is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
         "shape entry 0 is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "9 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
         4, "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
         "data_offsets is not a pair"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing field 'data_offsets'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
         "unexpected field 'x'"},
        {"{\"a\":[1]}", 0, "tensor 'a': entry is not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "duplicate object key"},
        {"{\"__metadata__\":{\"seed\":7}}", 0, "metadata 'seed' is not a string"},
        {"{\"__metadata__\":[\"x\"]}", 0, "'__metadata__' is not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[32];
        snprintf(path, sizeof path, "bad%zu.safetensors", i);
        make_st(path, cases[i].header, cases[i].data_len);
        expect_open_fails(path, XD_EFORMAT, cases[i].what);
    }
    /* the JSON error names the file offset of the problem */
    make_st("badjson.safetensors", "{\"a\":}", 0);
    expect_open_fails("badjson.safetensors", XD_EFORMAT, "offset 13: invalid JSON header");
}

static void test_st_rejects_bad_lengths(void **state)
{
    (void)state;
    float a[4] = {1, 2, 3, 4};
    const int64_t s[] = {2, 2};
    io_tensor t;
    io_tensor_set(&t, "a", IO_F32, 2, s, a);
    xd_err e;
    TU_OK(io_st_write("ok.safetensors", &t, 1, NULL, 0, &e));
    size_t n;
    unsigned char *b = tu_read_file("ok.safetensors", &n);
    uint64_t hl = io_le_u64(b);
    /* truncated anywhere: in the length, in the header, in the data */
    const size_t cuts[] = {0, 1, 7, 8, 9, 8 + hl / 2, 8 + hl - 1, 8 + hl, 8 + hl + 1, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tu_write_file("cut.safetensors", b, cuts[i]);
        expect_open_fails("cut.safetensors", XD_EFORMAT, "");
    }
    /* header length larger than the file, and absurdly large */
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    io_le_put_u64(c, n);
    tu_write_file("long.safetensors", c, n);
    expect_open_fails("long.safetensors", XD_EFORMAT, "offset 0: header length");
    expect_open_fails("long.safetensors", XD_EFORMAT, "runs past the end of the file");
    io_le_put_u64(c, (uint64_t)1 << 62);
    tu_write_file("huge.safetensors", c, n);
    expect_open_fails("huge.safetensors", XD_EFORMAT, "over the 104857600-byte limit");
    /* bytes appended after the data */
    memcpy(c, b, n);
    FILE *f = fopen("extra.safetensors", "wb");
    fwrite(c, 1, n, f);
    fwrite("xyz", 1, 3, f);
    fclose(f);
    expect_open_fails("extra.safetensors", XD_EFORMAT, "tensors cover 16");
    free(c);
    free(b);
}

/* A file from another writer may put a float tensor at an odd offset: we hand out an aligned copy. */
static void test_st_unaligned_tensor(void **state)
{
    (void)state;
    const char *h = "{\"m\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}";
    size_t hl = strlen(h);
    unsigned char buf[256];
    io_le_put_u64(buf, hl);
    memcpy(buf + 8, h, hl);
    unsigned char *d = buf + 8 + hl;
    d[0] = 1, d[1] = 2, d[2] = 3;
    float w[2] = {1.5f, -2.0f};
    memcpy(d + 3, w, 8);
    tu_write_file("odd.safetensors", buf, 8 + hl + 11);
    io_st_file *f;
    xd_err e;
    TU_OK(io_st_open("odd.safetensors", &f, &e));
    const io_tensor *t = io_st_find(f, "w");
    assert_non_null(t);
    assert_true(((uintptr_t)t->data & 3) == 0);
    tu_assert_close(t->data, w, 2, 0, 0, "w");
    assert_memory_equal(io_st_find(f, "m")->data, "\x01\x02\x03", 3);
    io_st_close(f);
}

static void test_st_write_errors(void **state)
{
    (void)state;
    float a[2] = {1, 2};
    const int64_t s[] = {2};
    io_tensor ts[2];
    io_tensor_set(&ts[0], "a", IO_F32, 1, s, a);
    io_tensor_set(&ts[1], "a", IO_F32, 1, s, a);
    xd_err e;
    struct stat st;
    xd_err_clear(&e);
    assert_int_equal(io_st_write("dup.safetensors", ts, 2, NULL, 0, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "dup.safetensors: tensor name 'a' given twice");
    io_tensor_set(&ts[1], "__metadata__", IO_F32, 1, s, a);
    assert_int_equal(io_st_write("res.safetensors", ts, 2, NULL, 0, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "reserved");
    io_tensor_set(&ts[1], "b", IO_F32, 1, s, NULL);
    assert_int_equal(io_st_write("nodata.safetensors", ts, 2, NULL, 0, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "tensor 'b' has no data");
    const io_kv meta[] = {{"k", "1"}, {"k", "2"}};
    assert_int_equal(io_st_write("meta.safetensors", ts, 1, meta, 2, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "metadata key 'k' given twice");
    const io_kv bad_utf8[] = {{"k", "\xff\xfe"}};
    assert_int_equal(io_st_write("utf.safetensors", ts, 1, bad_utf8, 1, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "not valid UTF-8");
    assert_int_not_equal(stat("dup.safetensors", &st), 0);
    assert_int_not_equal(stat("res.safetensors", &st), 0);
    assert_int_not_equal(stat("nodata.safetensors", &st), 0);
    assert_int_not_equal(stat("meta.safetensors", &st), 0);
    assert_true(no_temp_files());
}

/* Every tensor's data is checked against the CRC-32 the writer stored; one flipped byte makes the
 * file refuse to open, naming the tensor; files without checksums still open. */
static void test_st_checksums(void **state)
{
    (void)state;
    float w[4] = {-0.0125f, 0.5f, 2.0f, -3.0f};
    unsigned char b[3] = {7, 8, 9};
    const int64_t s4[] = {4}, s3[] = {3};
    io_tensor ts[2];
    io_tensor_set(&ts[0], "b", IO_U8, 1, s3, b);
    io_tensor_set(&ts[1], "fc.weight", IO_F32, 1, s4, w);
    xd_err e;
    TU_OK(io_st_write("c.safetensors", ts, 2, NULL, 0, &e));
    io_st_file *f;
    TU_OK(io_st_open("c.safetensors", &f, &e));
    assert_true(io_st_has_sums(f));
    for (size_t i = 0; i < 2; i++) assert_int_equal(io_st_tensor_sum(f, i), IO_SUM_OK);
    assert_int_equal(io_st_meta_count(f), 0); /* checksums are not listed as metadata */
    io_st_close(f);

    /* one byte of fc.weight's first value flipped */
    size_t n;
    unsigned char *raw = tu_read_file("c.safetensors", &n);
    raw[n - 16 + 3] ^= 0x7f;
    tu_write_file("bad.safetensors", raw, n);
    expect_open_fails("bad.safetensors", XD_EFORMAT,
                      "tensor 'fc.weight': checksum does not match, the data is damaged");
    TU_OK(io_st_open_unverified("bad.safetensors", &f, &e));
    assert_int_equal(io_st_tensor_sum(f, 0), IO_SUM_OK);
    assert_int_equal(io_st_tensor_sum(f, 1), IO_SUM_DAMAGED);
    io_st_close(f);
    free(raw);

    /* written by another tool (or an older build): no checksums, opened as it is */
    make_st("plain.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    TU_OK(io_st_open("plain.safetensors", &f, &e));
    assert_false(io_st_has_sums(f));
    assert_int_equal(io_st_tensor_sum(f, 0), IO_SUM_NONE);
    io_st_close(f);

    /* checksum entries that do not add up */
    make_st("some.safetensors", "{\"__metadata__\":{\"crc32.x\":\"d202ef8d\"},"
            "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
            "\"y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    expect_open_fails("some.safetensors", XD_EFORMAT, "tensor 'y' has no checksum");
    make_st("stray.safetensors", "{\"__metadata__\":{\"crc32.z\":\"00000000\"},"
            "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    expect_open_fails("stray.safetensors", XD_EFORMAT, "metadata 'crc32.z' is the checksum of no tensor");
    make_st("hex.safetensors", "{\"__metadata__\":{\"crc32.x\":\"12g4\"},"
            "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    expect_open_fails("hex.safetensors", XD_EFORMAT, "= '12g4' is not 8 hex digits");

    /* the key space is the writer's */
    const io_kv meta[] = {{"crc32.b", "00000000"}};
    assert_int_equal(io_st_write("r.safetensors", ts, 2, meta, 1, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "reserved for checksums");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_roundtrip),
        cmocka_unit_test(test_st_open_mem),
        cmocka_unit_test(test_st_header_bytes),
        cmocka_unit_test(test_st_check_against_model),
        cmocka_unit_test(test_st_rejects_bad_headers),
        cmocka_unit_test(test_st_rejects_bad_lengths),
        cmocka_unit_test(test_st_unaligned_tensor),
        cmocka_unit_test(test_st_write_errors),
        cmocka_unit_test(test_st_checksums),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
