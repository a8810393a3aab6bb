/* io/dataset: round trip of arrays, streamed sections, string tables and metadata; the documented
 * byte layout; writer misuse; corrupt files, each refused with the file name; the checksums of the
 * table and of every section, version-1 files, and the record of a verified file. */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "io/dataset.h"
#include "io/dtype.h"

/* The layout from dataset.h, written out again here so the test checks the documented format. */
enum { HDR = 32, ENT = 160, F_KIND = 64, F_DTYPE = 68, F_NDIM = 72, F_SHAPE = 80, F_OFF = 144, F_LEN = 152 };

static size_t entry_at(size_t i) { return HDR + i * ENT; }

/* The table checksum of a version-2 file: CRC-32 of bytes [0, 24) and of the table. */
static uint32_t table_crc(const unsigned char *b)
{
    uLong c = crc32(0L, b, 24);
    return (uint32_t)crc32(c, b + HDR, (uInt)(io_le_u32(b + 12) * ENT));
}

/* Stores the table checksum again after a test changed the table on purpose, so that the reader's
 * other checks are the ones that answer. */
static void reseal(unsigned char *b) { io_le_put_u32(b + 24, table_crc(b)); }

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
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

static void expect_open_fails(const char *path, xd_status code, const char *what)
{
    io_dataset *ds = (io_dataset *)1;
    xd_err e;
    xd_err_clear(&e);
    if (io_dataset_open(path, &ds, &e) == XD_OK) fail_msg("%s opened; expected '%s'", path, what);
    assert_null(ds);
    tu_assert_err(&e, code, what);
    char named[64];
    snprintf(named, sizeof named, "%s: ", path);
    tu_assert_err(&e, code, named);
}

static void test_dataset_roundtrip(void **state)
{
    (void)state;
    enum { N = 4 };
    static unsigned char img[N * 28 * 28];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (unsigned char)(i * 7);
    int32_t label[N] = {3, 1, 4, 1};
    unsigned char mask[N] = {1, 1, 0, 1};
    float feat[15];
    for (int i = 0; i < 15; i++) feat[i] = (float)i / 3.0f;
    const char *classes[] = {"T-shirt/top", "", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 text",
                             "emoji \xf0\x9f\x98\x80"};
    const int64_t s_img[] = {N, 28, 28, 1}, s_n[] = {N}, s_feat[] = {3, 5}, s_empty[] = {0, 3};

    io_dataset_writer *w;
    xd_err e;
    xd_err_clear(&e);
    if (io_dataset_writer_open("d.xds", 8, &w, &e)) fail_msg("%s", e.msg);
    io_tensor t;
    io_tensor_set(&t, "train/image", IO_U8, 4, s_img, img);
    TU_OK(io_dataset_add(w, &t, &e));
    io_tensor_set(&t, "train/label", IO_I32, 1, s_n, label);
    TU_OK(io_dataset_add(w, &t, &e));
    io_tensor_set(&t, "train/label_mask", IO_U8, 1, s_n, mask);
    TU_OK(io_dataset_add(w, &t, &e));
    /* streamed in pieces that do not follow element boundaries */
    TU_OK(io_dataset_begin(w, "train/feat", IO_F32, 2, s_feat, &e));
    TU_OK(io_dataset_write(w, feat, 7, &e));
    TU_OK(io_dataset_write(w, (const char *)feat + 7, 30, &e));
    TU_OK(io_dataset_write(w, (const char *)feat + 37, sizeof feat - 37, &e));
    TU_OK(io_dataset_end(w, &e));
    TU_OK(io_dataset_add_strings(w, "classes", classes, 4, &e));
    io_tensor_set(&t, "empty", IO_F32, 2, s_empty, NULL);
    TU_OK(io_dataset_add(w, &t, &e));
    TU_OK(io_dataset_add_strings(w, "none", NULL, 0, &e));
    TU_OK(io_dataset_set_meta(w, "name", "fashion-mnist", &e));
    TU_OK(io_dataset_set_meta(w, "seed", "1", &e));
    TU_OK(io_dataset_set_meta(w, "preparer", "xdistill 0.1.0", &e));
    TU_OK(io_dataset_set_meta(w, "seed", "42", &e)); /* replaces */
    if (io_dataset_finish(w, &e)) fail_msg("%s", e.msg);
    assert_true(no_temp_files());

    io_dataset *ds;
    if (io_dataset_open("d.xds", &ds, &e)) fail_msg("%s", e.msg);
    assert_string_equal(io_dataset_path(ds), "d.xds");
    assert_int_equal(io_dataset_count(ds), 8); /* 7 + the metadata table */
    assert_string_equal(io_dataset_section_name(ds, 4), "classes");
    assert_int_equal(io_dataset_section_kind(ds, 4), IO_SECTION_STRINGS);
    assert_int_equal(io_dataset_section_kind(ds, 0), IO_SECTION_ARRAY);
    assert_null(io_dataset_section_name(ds, 8));

    const io_tensor *v = io_dataset_find(ds, "train/image");
    assert_non_null(v);
    assert_int_equal(v->dtype, IO_U8);
    assert_int_equal(v->ndim, 4);
    for (int d = 0; d < 4; d++) assert_int_equal(v->shape[d], s_img[d]);
    assert_memory_equal(v->data, img, sizeof img);
    assert_true(((uintptr_t)v->data & 63) == 0);
    v = io_dataset_find(ds, "train/label");
    assert_memory_equal(v->data, label, sizeof label);
    assert_true(((uintptr_t)v->data & 63) == 0);
    assert_memory_equal(io_dataset_find(ds, "train/label_mask")->data, mask, sizeof mask);
    v = io_dataset_find(ds, "train/feat");
    tu_assert_close(v->data, feat, 15, 0, 0, "train/feat");
    v = io_dataset_find(ds, "empty");
    assert_int_equal(v->shape[0], 0);
    assert_int_equal(v->shape[1], 3);
    assert_null(io_dataset_find(ds, "classes")); /* a string table, not an array */
    assert_null(io_dataset_find(ds, "train/text"));

    const io_strings *cs = io_dataset_find_strings(ds, "classes");
    assert_non_null(cs);
    assert_int_equal(cs->n, 4);
    for (size_t i = 0; i < 4; i++) {
        size_t len;
        const char *str = io_strings_get(cs, i, &len);
        assert_string_equal(str, classes[i]);
        assert_int_equal(len, strlen(classes[i]));
    }
    assert_null(io_strings_get(cs, 4, NULL));
    assert_int_equal(io_dataset_find_strings(ds, "none")->n, 0);
    assert_null(io_dataset_find_strings(ds, "train/label"));

    assert_int_equal(io_dataset_meta_count(ds), 3);
    assert_string_equal(io_dataset_meta(ds, "name"), "fashion-mnist");
    assert_string_equal(io_dataset_meta(ds, "seed"), "42");
    assert_string_equal(io_dataset_meta_at(ds, 2)->key, "preparer");
    assert_null(io_dataset_meta(ds, "version"));

    const io_tensor *rt;
    TU_OK(io_dataset_require(ds, "train/label", IO_I32, 1, &rt, &e));
    assert_ptr_equal(rt, io_dataset_find(ds, "train/label"));
    TU_OK(io_dataset_require(ds, "train/image", IO_U8, -1, &rt, &e));
    xd_err_clear(&e);
    assert_int_equal(io_dataset_require(ds, "train/label", IO_I64, 1, &rt, &e), XD_EFORMAT);
    assert_string_equal(e.msg, "d.xds: section 'train/label' has dtype I32, expected I64");
    assert_null(rt);
    assert_int_equal(io_dataset_require(ds, "train/label", IO_I32, 2, &rt, &e), XD_EFORMAT);
    assert_string_equal(e.msg, "d.xds: section 'train/label' has 1 dimensions, expected 2");
    assert_int_equal(io_dataset_require(ds, "test/label", IO_I32, 1, &rt, &e), XD_EFORMAT);
    assert_string_equal(e.msg, "d.xds: no section 'test/label'");
    assert_int_equal(io_dataset_require(ds, "classes", IO_U8, 1, &rt, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "not an array");
    const io_strings *rs;
    TU_OK(io_dataset_require_strings(ds, "classes", &rs, &e));
    assert_ptr_equal(rs, cs);
    assert_int_equal(io_dataset_require_strings(ds, "train/label", &rs, &e), XD_EFORMAT);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    io_dataset_describe(ds, out);
    fclose(out);
    assert_non_null(strstr(text, "d.xds: xdistill dataset, format version 2, 8 sections"));
    assert_non_null(strstr(text, "    seed = 42\n"));
    assert_non_null(strstr(text, "  train/image: U8 (4, 28, 28, 1), 3136 bytes at offset "));
    assert_non_null(strstr(text, "  train/label: I32 (4,), 16 bytes"));
    assert_non_null(strstr(text, "    min 1, max 4, mean 2.25\n"));
    assert_non_null(strstr(text, "  classes: 4 strings, "));
    assert_non_null(strstr(text, "    first: \"T-shirt/top\", \"\", \"\xed\x95\x9c"));
    assert_null(strstr(text, "__metadata__"));
    free(text);
    io_dataset_close(ds);
}

/* Header and table bytes as dataset.h documents them. */
/* The reader on bytes in memory: the same sections as from the file, the given name in messages. */
static void test_dataset_open_mem(void **state)
{
    (void)state;
    xd_err e;
    io_dataset_writer *w;
    TU_OK(io_dataset_writer_open("m.xds", 2, &w, &e));
    int32_t v[3] = {7, 8, 9};
    io_tensor t;
    io_tensor_set(&t, "v", IO_I32, 1, (int64_t[]){3}, v);
    TU_OK(io_dataset_add(w, &t, &e));
    const char *names[2] = {"a", "bc"};
    TU_OK(io_dataset_add_strings(w, "names", names, 2, &e));
    TU_OK(io_dataset_finish(w, &e));
    size_t n;
    void *bytes = tu_read_file("m.xds", &n);
    io_dataset *ds;
    TU_OK(io_dataset_open_mem(bytes, n, "buffer", &ds, &e));
    assert_string_equal(io_dataset_path(ds), "buffer");
    const io_tensor *got = io_dataset_find(ds, "v");
    assert_non_null(got);
    assert_memory_equal(got->data, v, sizeof v);
    assert_string_equal(io_strings_get(io_dataset_find_strings(ds, "names"), 1, NULL), "bc");
    io_dataset_close(ds);
    assert_int_equal(io_dataset_open_mem(bytes, n - 1, "buffer", &ds, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "buffer: offset 16");
    assert_null(ds);
    free(bytes);
}

static void test_dataset_layout(void **state)
{
    (void)state;
    int64_t v[3] = {-1, 2, 3};
    const int64_t s3[] = {3};
    const char *strs[] = {"ab", "c"};
    io_dataset_writer *w;
    xd_err e;
    TU_OK(io_dataset_writer_open("l.xds", 2, &w, &e));
    io_tensor t;
    io_tensor_set(&t, "v", IO_I64, 1, s3, v);
    TU_OK(io_dataset_add(w, &t, &e));
    TU_OK(io_dataset_add_strings(w, "s", strs, 2, &e));
    TU_OK(io_dataset_finish(w, &e));
    size_t n;
    unsigned char *b = tu_read_file("l.xds", &n);
    assert_memory_equal(b, "XDSET\0\0\0", 8);
    assert_int_equal(io_le_u32(b + 8), 2);
    assert_int_equal(io_le_u32(b + 12), 2);
    assert_int_equal(io_le_u64(b + 16), n);
    assert_int_equal(io_le_u32(b + 24), table_crc(b));
    assert_int_equal(io_le_u32(b + 28), 0);
    const unsigned char *e0 = b + entry_at(0), *e1 = b + entry_at(1);
    assert_string_equal((const char *)e0, "v");
    for (int i = 1; i < 64; i++) assert_int_equal(e0[i], 0);
    assert_int_equal(io_le_u32(e0 + F_KIND), IO_SECTION_ARRAY);
    assert_int_equal(io_le_u32(e0 + F_DTYPE), IO_I64);
    assert_int_equal(io_le_u32(e0 + F_NDIM), 1);
    assert_int_equal(io_le_u64(e0 + F_SHAPE), 3);
    uint64_t off0 = io_le_u64(e0 + F_OFF);
    assert_int_equal(off0 % 64, 0);
    assert_true(off0 >= entry_at(3)); /* after the reserved table of 2 + 1 entries */
    assert_int_equal(io_le_u64(e0 + F_LEN), 24);
    assert_memory_equal(b + off0, v, 24);
    assert_int_equal(io_le_u32(e0 + 76), (uint32_t)crc32(0L, b + off0, 24));
    assert_string_equal((const char *)e1, "s");
    assert_int_equal(io_le_u32(e1 + F_KIND), IO_SECTION_STRINGS);
    assert_int_equal(io_le_u32(e1 + F_DTYPE), IO_U8);
    assert_int_equal(io_le_u64(e1 + F_SHAPE), 2);
    uint64_t off1 = io_le_u64(e1 + F_OFF);
    assert_int_equal(off1, off0 + 64);
    assert_int_equal(io_le_u64(e1 + F_LEN), 3 * 8 + 5);
    assert_int_equal(io_le_u64(b + off1), 0);
    assert_int_equal(io_le_u64(b + off1 + 8), 3);
    assert_int_equal(io_le_u64(b + off1 + 16), 5);
    assert_memory_equal(b + off1 + 24, "ab\0c\0", 5);
    assert_int_equal(io_le_u32(e1 + 76), (uint32_t)crc32(0L, b + off1, 29));
    assert_int_equal(n, off1 + 29);
    free(b);
}

/* Base file for the corruption tests: "a" I32 (4), "s" strings {"ab", "c"}, metadata k = v. */
static unsigned char *make_base(size_t *n)
{
    int32_t a[4] = {10, 20, 30, 40};
    const int64_t s4[] = {4};
    const char *strs[] = {"ab", "c"};
    io_dataset_writer *w;
    xd_err e;
    TU_OK(io_dataset_writer_open("base.xds", 4, &w, &e));
    io_tensor t;
    io_tensor_set(&t, "a", IO_I32, 1, s4, a);
    TU_OK(io_dataset_add(w, &t, &e));
    TU_OK(io_dataset_add_strings(w, "s", strs, 2, &e));
    TU_OK(io_dataset_set_meta(w, "k", "v", &e));
    TU_OK(io_dataset_finish(w, &e));
    return tu_read_file("base.xds", n);
}

static void put_u32(unsigned char *b, size_t at, uint32_t v) { io_le_put_u32(b + at, v); }
static void put_u64(unsigned char *b, size_t at, uint64_t v) { io_le_put_u64(b + at, v); }

static void test_dataset_rejects_bad_header(void **state)
{
    (void)state;
    size_t n;
    unsigned char *base = make_base(&n);
    unsigned char *b = malloc(n + 64);
    {
        io_dataset *ds;
        xd_err e;
        TU_OK(io_dataset_open("base.xds", &ds, &e));
        io_dataset_close(ds);
    }
    memcpy(b, base, n);
    b[4] = 'Y';
    tu_write_file("magic.xds", b, n);
    expect_open_fails("magic.xds", XD_EFORMAT, "offset 0: not an xdistill dataset file (bad magic)");

    memcpy(b, base, n);
    put_u32(b, 8, 3);
    tu_write_file("ver.xds", b, n);
    expect_open_fails("ver.xds", XD_EUNSUPPORTED,
                      "offset 8: dataset format version 3 is not supported (this build reads "
                      "versions 1 to 2)");

    memcpy(b, base, n);
    memset(b + n, 0, 64);
    tu_write_file("append.xds", b, n + 5);
    expect_open_fails("append.xds", XD_EFORMAT, "bytes appended");

    memcpy(b, base, n);
    put_u32(b, 12, 1000);
    tu_write_file("count.xds", b, n);
    expect_open_fails("count.xds", XD_EFORMAT, "offset 12: the table of 1000 sections ends at");
    put_u32(b, 12, 70000);
    tu_write_file("count2.xds", b, n);
    expect_open_fails("count2.xds", XD_EFORMAT, "more than the limit");

    memcpy(b, base, n);
    put_u32(b, 28, 1);
    tu_write_file("res.xds", b, n);
    expect_open_fails("res.xds", XD_EFORMAT, "offset 28: reserved field is not zero");

    /* any change to the header or the table that the other checks let through */
    memcpy(b, base, n);
    b[entry_at(0) + F_SHAPE + 1] ^= 0x01;
    tu_write_file("table.xds", b, n);
    expect_open_fails("table.xds", XD_EFORMAT, "offset 24: the section table's checksum does not "
                      "match");

    /* truncated at every length */
    for (size_t len = 0; len < n; len++) {
        tu_write_file("cut.xds", base, len);
        expect_open_fails("cut.xds", XD_EFORMAT, len < 32 ? "too short" : "truncated");
    }
    free(b);
    free(base);
}

typedef struct {
    size_t entry;     /* table entry to patch */
    size_t field;     /* byte offset in the entry */
    int width;        /* 4, 8, or 0 to fill the 64-byte name with 'x' */
    uint64_t value;   /* new value; UINT64_MAX: "the file size" */
    int rel;          /* value is added to the old one */
    const char *what; /* expected in the message */
} entry_patch;

static void test_dataset_rejects_bad_entries(void **state)
{
    (void)state;
    size_t n;
    unsigned char *base = make_base(&n);
    uint64_t off_a = io_le_u64(base + entry_at(0) + F_OFF);
    const entry_patch cases[] = {
        {0, F_OFF, 8, UINT64_MAX, 0, "runs past the end of the file"},
        {0, F_OFF, 8, 8, 1, "is not a multiple of 64"},
        {0, F_OFF, 8, 0, 0, "inside the header or the section table"},
        {0, F_LEN, 8, 12, 0, "section 'a': length 12 bytes, but I32 (4,) needs 16"},
        {0, F_LEN, 8, (uint64_t)1 << 62, 0, "runs past the end of the file"},
        {0, F_SHAPE, 8, 5, 0, "needs 20"},
        {0, F_SHAPE, 8, (uint64_t)-3, 0, "dimension 0 is negative"},
        {0, F_SHAPE + 8, 8, 1, 0, "unused dimension 1 is not zero"},
        {0, F_DTYPE, 4, 99, 0, "unknown dtype code 99"},
        {0, F_KIND, 4, 7, 0, "unknown section kind 7"},
        {0, F_NDIM, 4, 9, 0, "9 dimensions"},
        {0, 0, 0, 0, 0, "non-NUL-terminated name"},
        {0, 0, 1, 0, 0, "empty name"},
        {1, 0, 1, 'a', 0, "section name 'a' appears twice"},
        {1, F_OFF, 8, off_a, 0, "sections 'a' and 's' overlap"},
        {1, F_DTYPE, 4, IO_I32, 0, "a string table must be U8 with one dimension"},
        {1, F_SHAPE, 8, 1000, 0, "string table 's' of 1000 strings needs 8008 bytes of offsets"},
        /* the metadata table must hold pairs */
        {2, F_SHAPE, 8, 1, 0, "string table '__metadata__'"},
    };
    unsigned char *b = malloc(n);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const entry_patch *c = &cases[i];
        memcpy(b, base, n);
        size_t at = entry_at(c->entry) + c->field;
        uint64_t val = c->value == UINT64_MAX ? ((n + 63) / 64) * 64 : c->value;
        if (c->width == 8) put_u64(b, at, val + (c->rel ? io_le_u64(b + at) : 0));
        else if (c->width == 4) put_u32(b, at, (uint32_t)val);
        else if (c->width == 1) b[at] = (unsigned char)val;
        else memset(b + at, 'x', 64);
        reseal(b);
        char path[32];
        snprintf(path, sizeof path, "entry%zu.xds", i);
        tu_write_file(path, b, n);
        expect_open_fails(path, XD_EFORMAT, c->what);
        expect_open_fails(path, XD_EFORMAT, "offset ");
    }
    free(b);
    free(base);
}

static void test_dataset_rejects_bad_strings(void **state)
{
    (void)state;
    size_t n;
    unsigned char *base = make_base(&n);
    size_t s = (size_t)io_le_u64(base + entry_at(1) + F_OFF); /* offsets 0, 3, 5; "ab\0c\0" */
    unsigned char *b = malloc(n);
    struct {
        size_t at;
        uint64_t value;
        int width;
        const char *what;
    } cases[] = {
        {s + 16, 1000, 8, "string 1 ends at byte 1000, past the 5 bytes of string data"},
        {s + 8, (uint64_t)-1, 8, "string 0 ends at byte 18446744073709551615, past the 5"},
        {s + 8, 0, 8, "string 0 ends at byte 0, not after its start 0"},
        {s + 0, 1, 8, "string 0 starts at 1, not 0"},
        {s + 16, 4, 8, "string 1 is not NUL-terminated"},
        {s + 24 + 2, 'x', 1, "string 0 is not NUL-terminated"},
        {s + 24 + 0, 0, 1, "string 0 has a NUL byte inside"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, base, n);
        if (cases[i].width == 8) put_u64(b, cases[i].at, cases[i].value);
        else b[cases[i].at] = (unsigned char)cases[i].value;
        char path[32];
        snprintf(path, sizeof path, "str%zu.xds", i);
        tu_write_file(path, b, n);
        expect_open_fails(path, XD_EFORMAT, cases[i].what);
        expect_open_fails(path, XD_EFORMAT, "string table 's'");
    }
    /* a section 8 bytes longer than its strings */
    memcpy(b, base, n);
    put_u64(b, entry_at(1) + F_LEN, io_le_u64(b + entry_at(1) + F_LEN) + 8);
    reseal(b);
    tu_write_file("strlen.xds", b, n);
    expect_open_fails("strlen.xds", XD_EFORMAT,
                      "string table 's': the strings end at byte 5, but the section has 13 bytes");
    free(b);
    free(base);

    /* a metadata table with a repeated key, and an array posing as the metadata */
    const char *kv[] = {"k", "1", "k", "2"};
    io_dataset_writer *w;
    xd_err e;
    TU_OK(io_dataset_writer_open("meta.xds", 2, &w, &e));
    TU_OK(io_dataset_add_strings(w, "__metadata_x", kv, 4, &e));
    int32_t a[1] = {0};
    const int64_t s1[] = {1};
    io_tensor t;
    io_tensor_set(&t, "__metadata_z", IO_I32, 1, s1, a);
    TU_OK(io_dataset_add(w, &t, &e));
    TU_OK(io_dataset_finish(w, &e));
    base = tu_read_file("meta.xds", &n);
    base[entry_at(0) + 11] = '_';
    reseal(base);
    tu_write_file("meta1.xds", base, n);
    expect_open_fails("meta1.xds", XD_EFORMAT, "metadata key 'k' appears twice");
    base[entry_at(0) + 11] = 'x';
    base[entry_at(1) + 11] = '_';
    reseal(base);
    tu_write_file("meta2.xds", base, n);
    expect_open_fails("meta2.xds", XD_EFORMAT, "'__metadata__' must be a string table");
    free(base);
}

static void test_dataset_writer_misuse(void **state)
{
    (void)state;
    int32_t a[2] = {1, 2};
    const int64_t s2[] = {2};
    io_tensor t;
    io_tensor_set(&t, "a", IO_I32, 1, s2, a);
    io_dataset_writer *w;
    xd_err e;
    xd_err_clear(&e);

    /* each failure stops the writer: finish fails and nothing is left behind */
    TU_OK(io_dataset_writer_open("cap.xds", 1, &w, &e));
    TU_OK(io_dataset_add(w, &t, &e));
    io_tensor_set(&t, "b", IO_I32, 1, s2, a);
    assert_int_equal(io_dataset_add(w, &t, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "cap.xds: more than the 1 sections");
    assert_int_equal(io_dataset_finish(w, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "an earlier error stopped this dataset writer");
    assert_false(file_exists("cap.xds"));

    TU_OK(io_dataset_writer_open("dup.xds", 4, &w, &e));
    TU_OK(io_dataset_add(w, &t, &e));
    assert_int_equal(io_dataset_add(w, &t, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "section 'b' added twice");
    io_dataset_writer_abort(w);
    assert_false(file_exists("dup.xds"));

    TU_OK(io_dataset_writer_open("name.xds", 4, &w, &e));
    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = '\0';
    io_tensor_set(&t, longname, IO_I32, 1, s2, a);
    assert_int_equal(io_dataset_add(w, &t, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "must have 1 to 63 bytes");
    io_dataset_writer_abort(w);
    TU_OK(io_dataset_writer_open("name.xds", 4, &w, &e));
    io_tensor_set(&t, "__metadata__", IO_I32, 1, s2, a);
    assert_int_equal(io_dataset_add(w, &t, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "reserved");
    assert_int_equal(io_dataset_finish(w, &e), XD_EARG);
    assert_false(file_exists("name.xds"));

    /* streamed sections: too many bytes, too few, never ended */
    TU_OK(io_dataset_writer_open("s1.xds", 4, &w, &e));
    TU_OK(io_dataset_begin(w, "x", IO_I32, 1, s2, &e));
    assert_int_equal(io_dataset_write(w, a, 12, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "12 bytes written, more than the 8 its shape needs");
    assert_int_equal(io_dataset_finish(w, &e), XD_EARG);
    TU_OK(io_dataset_writer_open("s2.xds", 4, &w, &e));
    TU_OK(io_dataset_begin(w, "x", IO_I32, 1, s2, &e));
    TU_OK(io_dataset_write(w, a, 4, &e));
    assert_int_equal(io_dataset_end(w, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "4 bytes written, its shape needs 8");
    assert_int_equal(io_dataset_finish(w, &e), XD_EARG);
    TU_OK(io_dataset_writer_open("s3.xds", 4, &w, &e));
    TU_OK(io_dataset_begin(w, "x", IO_I32, 1, s2, &e));
    assert_int_equal(io_dataset_finish(w, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "section 'x' is still open");
    TU_OK(io_dataset_writer_open("s4.xds", 4, &w, &e));
    assert_int_equal(io_dataset_write(w, a, 4, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "without an open section");
    io_dataset_writer_abort(w);
    const int64_t neg[] = {-2};
    TU_OK(io_dataset_writer_open("s5.xds", 4, &w, &e));
    assert_int_equal(io_dataset_begin(w, "x", IO_I32, 1, neg, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "invalid dtype or shape");
    io_dataset_writer_abort(w);
    for (int i = 1; i <= 5; i++) {
        char p[16];
        snprintf(p, sizeof p, "s%d.xds", i);
        assert_false(file_exists(p));
    }
    assert_true(no_temp_files());

    xd_err_clear(&e);
    assert_int_equal(io_dataset_writer_open("no/such/dir/d.xds", 4, &w, &e), XD_EIO);
    assert_null(w);
    tu_assert_err(&e, XD_EIO, "no/such/dir/d.xds");
}

/* A flipped byte in a section's data: the table is fine, so the file opens, and verification names
 * the section; every other section is ok. */
static void test_dataset_checksums(void **state)
{
    (void)state;
    size_t n;
    unsigned char *b = make_base(&n);
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open("base.xds", &ds, &e));
    assert_int_equal(io_dataset_version(ds), 2);
    TU_OK(io_dataset_verify(ds, NULL, &e));
    for (size_t i = 0; i < io_dataset_count(ds); i++)
        assert_int_equal(io_dataset_section_sum(ds, i), IO_SUM_OK);
    io_dataset_close(ds);

    b[io_le_u64(b + entry_at(0) + F_OFF) + 5] ^= 0x20; /* a value of section 'a' */
    tu_write_file("flip.xds", b, n);
    TU_OK(io_dataset_open("flip.xds", &ds, &e));
    assert_int_equal(io_dataset_section_sum(ds, 0), IO_SUM_DAMAGED);
    assert_int_equal(io_dataset_section_sum(ds, 1), IO_SUM_OK);
    xd_err_clear(&e);
    assert_int_equal(io_dataset_verify(ds, NULL, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "flip.xds: section 'a': checksum does not match");
    io_dataset_close(ds);
    ds = (io_dataset *)1;
    assert_int_equal(io_dataset_open_verified("flip.xds", &ds, &e), XD_EFORMAT);
    assert_null(ds);
    tu_assert_err(&e, XD_EFORMAT, "flip.xds: section 'a': checksum does not match");
    free(b);
}

/* Version 1 (older builds): offset 24 a u64 0, no checksum in the entries. Read as before. */
static void test_dataset_version1(void **state)
{
    (void)state;
    size_t n;
    unsigned char *b = make_base(&n);
    put_u32(b, 8, 1);
    put_u64(b, 24, 0);
    for (uint32_t i = 0; i < io_le_u32(b + 12); i++) put_u32(b, entry_at(i) + 76, 0);
    tu_write_file("v1.xds", b, n);
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open_verified("v1.xds", &ds, &e));
    assert_int_equal(io_dataset_version(ds), 1);
    assert_int_equal(io_dataset_section_sum(ds, 0), IO_SUM_NONE);
    TU_OK(io_dataset_verify(ds, NULL, &e));
    const io_tensor *t = io_dataset_find(ds, "a");
    assert_non_null(t);
    assert_int_equal(((const int32_t *)t->data)[3], 40);
    assert_string_equal(io_dataset_meta(ds, "k"), "v");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    io_dataset_describe(ds, out);
    fclose(out);
    assert_non_null(strstr(text, "format version 1 (no checksums)"));
    free(text);
    io_dataset_close(ds);
    /* in version 1 the field is reserved */
    put_u32(b, entry_at(0) + 76, 1);
    tu_write_file("v1res.xds", b, n);
    expect_open_fails("v1res.xds", XD_EFORMAT, "section 'a': reserved field is not zero");
    put_u32(b, entry_at(0) + 76, 0);
    put_u32(b, 28, 7);
    tu_write_file("v1res24.xds", b, n);
    expect_open_fails("v1res24.xds", XD_EFORMAT, "offset 24: reserved field is not zero");
    free(b);
}

static void set_mtime(const char *path, time_t when)
{
    struct timeval tv[2] = {{when, 0}, {when, 0}};
    assert_int_equal(utimes(path, tv), 0);
}

/* open_verified reads the whole file once per state of the file: the record in cache/ says which
 * size, times and inode were verified; a changed file is verified again, even when its
 * modification time was set back; a folder where the
 * record cannot be written only means verifying every time. */
static void test_dataset_verified_record(void **state)
{
    (void)state;
    size_t n;
    unsigned char *b = make_base(&n);
    mkdir("d", 0777);
    tu_write_file("d/set.xds", b, n);
    time_t past = time(NULL) - 100;
    set_mtime("d/set.xds", past);
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open_verified("d/set.xds", &ds, &e));
    io_dataset_close(ds);
    struct stat st;
    assert_int_equal(stat("d/cache/set.xds.verified", &st), 0);

    /* changed in place, its size and modification time put back as they were: the status
     * change time moved, so it is verified again, and refused */
    unsigned char *flip = malloc(n);
    memcpy(flip, b, n);
    flip[io_le_u64(flip + entry_at(0) + F_OFF) + 5] ^= 0x20;
    tu_write_file("d/set.xds", flip, n);
    set_mtime("d/set.xds", past);
    assert_int_equal(io_dataset_open_verified("d/set.xds", &ds, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "d/set.xds: section 'a': checksum does not match");
    /* a file put in the verified one's place, the same bytes and times: another inode */
    tu_write_file("d/set.xds", b, n);
    set_mtime("d/set.xds", past);
    TU_OK(io_dataset_open_verified("d/set.xds", &ds, &e));
    io_dataset_close(ds);
    assert_int_equal(stat("d/set.xds", &st), 0);
    char *rec = tu_read_file("d/cache/set.xds.verified", &(size_t){0});
    assert_int_equal(rename("d/set.xds", "d/moved.xds"), 0);
    tu_write_file("d/set.xds", flip, n);
    set_mtime("d/set.xds", past);
    /* the record's text for the damaged file as it is now: trusted without reading it (this is
     * what the record saves), which shows the record is what decides */
    struct stat now;
    assert_int_equal(stat("d/set.xds", &now), 0);
    assert_true(now.st_ino != st.st_ino);
    char *forged = tu_fmt("xdistill dataset verified 2\nsize %zu\nmtime %lld.%09lld\n"
                          "ctime %lld.%09lld\nfile %llu:%llu\ntable %08x\n",
                          n, (long long)now.st_mtim.tv_sec, (long long)now.st_mtim.tv_nsec,
                          (long long)now.st_ctim.tv_sec, (long long)now.st_ctim.tv_nsec,
                          (unsigned long long)now.st_dev, (unsigned long long)now.st_ino,
                          (unsigned)io_le_u32(flip + 24));
    assert_int_equal(io_dataset_open_verified("d/set.xds", &ds, &e), XD_EFORMAT);
    assert_null(strstr(rec, "verified 1"));
    tu_write_text("d/cache/set.xds.verified", forged);
    TU_OK(io_dataset_open_verified("d/set.xds", &ds, &e));
    io_dataset_close(ds);
    free(forged);
    free(rec);

    /* a file modified just now is verified but not recorded (its time may not move again) */
    mkdir("fresh", 0777);
    tu_write_file("fresh/set.xds", b, n);
    TU_OK(io_dataset_open_verified("fresh/set.xds", &ds, &e));
    io_dataset_close(ds);
    assert_int_not_equal(stat("fresh/cache/set.xds.verified", &st), 0);

    /* a folder that cannot be written (root may write anyway; the verification must pass both
     * ways) */
    mkdir("ro", 0777);
    tu_write_file("ro/set.xds", b, n);
    set_mtime("ro/set.xds", past);
    chmod("ro", 0555);
    TU_OK(io_dataset_open_verified("ro/set.xds", &ds, &e));
    io_dataset_close(ds);
    chmod("ro", 0755);
    free(flip);
    free(b);
}

/* The writer's temporary file (NAME.tmp.PID.XXXXXX in "."): its size on disk, -1 if none. */
static long temp_size(const char *name)
{
    DIR *d = opendir(".");
    assert_non_null(d);
    struct dirent *de;
    long size = -1;
    const size_t len = strlen(name);
    while ((de = readdir(d)))
        if (strncmp(de->d_name, name, len) == 0 && strncmp(de->d_name + len, ".tmp.", 5) == 0) {
            struct stat st;
            assert_int_equal(stat(de->d_name, &st), 0);
            size = (long)st.st_size;
        }
    closedir(d);
    return size;
}

/* The writer writes in whole blocks of 2 MiB (IO_HUGE_BLOCK): after 1 MiB of a section nothing is
 * in the file yet, after 2.5 MiB exactly 2 MiB; the section reads back whole. */
static void test_dataset_writes_blocks(void **state)
{
    (void)state;
    const size_t mib = (size_t)1 << 20, total = 3 * mib;
    unsigned char *v = malloc(total);
    assert_non_null(v);
    for (size_t i = 0; i < total; i++) v[i] = (unsigned char)(i * 13 + i / 4093);
    io_dataset_writer *w;
    xd_err e;
    TU_OK(io_dataset_writer_open("big.xds", 0, &w, &e));
    const int64_t shape[1] = {(int64_t)total};
    TU_OK(io_dataset_begin(w, "v", IO_U8, 1, shape, &e));
    TU_OK(io_dataset_write(w, v, mib, &e));
    assert_int_equal(temp_size("big.xds"), 0);
    TU_OK(io_dataset_write(w, v + mib, mib + mib / 2, &e));
    assert_int_equal(temp_size("big.xds"), 2 * (long)mib);
    TU_OK(io_dataset_write(w, v + 5 * mib / 2, mib / 2, &e));
    TU_OK(io_dataset_end(w, &e));
    TU_OK(io_dataset_finish(w, &e));
    assert_int_equal(temp_size("big.xds"), -1);
    io_dataset *ds;
    TU_OK(io_dataset_open("big.xds", &ds, &e));
    TU_OK(io_dataset_verify(ds, NULL, &e));
    const io_tensor *t = io_dataset_find(ds, "v");
    assert_non_null(t);
    assert_memory_equal(t->data, v, total);
    io_dataset_close(ds);
    free(v);
}

/* A write that fails while the writer's buffered bytes go out (a full disk; here the file size
 * limit, which fails the same way without a file system to fill) is reported as the failed write
 * with its reason, not as a failed seek, and leaves no temporary file. */
static void test_dataset_write_fails(void **state)
{
    (void)state;
    const size_t n = (size_t)1 << 20;
    unsigned char *v = calloc(1, n);
    assert_non_null(v);
    tu_limit_file_size(64 << 10);
    io_dataset_writer *w = NULL;
    xd_err e;
    xd_status s = io_dataset_writer_open("full.xds", 0, &w, &e);
    const int64_t shape[1] = {(int64_t)n};
    if (!s) s = io_dataset_begin(w, "v", IO_U8, 1, shape, &e);
    if (!s) s = io_dataset_write(w, v, n, &e);
    if (!s) s = io_dataset_end(w, &e);
    if (!s) s = io_dataset_finish(w, &e);
    else io_dataset_writer_abort(w);
    tu_limit_file_size(-1);
    free(v);
    tu_assert_err(&e, XD_EIO, "full.xds: write failed: File too large");
    tu_assert_nothing_left(".", "full.xds");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset_roundtrip),
        cmocka_unit_test(test_dataset_open_mem),
        cmocka_unit_test(test_dataset_layout),
        cmocka_unit_test(test_dataset_rejects_bad_header),
        cmocka_unit_test(test_dataset_rejects_bad_entries),
        cmocka_unit_test(test_dataset_rejects_bad_strings),
        cmocka_unit_test(test_dataset_writer_misuse),
        cmocka_unit_test(test_dataset_checksums),
        cmocka_unit_test(test_dataset_version1),
        cmocka_unit_test(test_dataset_verified_record),
        cmocka_unit_test(test_dataset_writes_blocks),
        cmocka_unit_test(test_dataset_write_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
