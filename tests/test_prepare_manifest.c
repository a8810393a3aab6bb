/* modalities/sets: `xdistill prepare manifest` on manifests and odd images the tests write
 * themselves: good files, file:line errors, --classes, --split-from (and sets_split_from on its
 * own) and the command line as a user gives it. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/jpeg.h"
#include "io/png.h"
#include "modalities/sets/common.h"
#include "tests/support/dsread.h"
#include "tests/support/runcli.h"

// ----------------------------------------------------------------------------------------------
// manifests

static void write_rgb_png(const char *path, int w, int h, int c, const uint8_t *colour)
{
    io_image img = {.w = w, .h = h, .c = c};
    img.px = malloc((size_t)w * (size_t)h * (size_t)c);
    for (int i = 0; i < w * h; i++)
        for (int k = 0; k < c; k++) img.px[i * c + k] = colour[k];
    xd_err e;
    TU_OK(io_png_write(path, &img, &e));
    free(img.px);
}

static int manifest_setup(void **state)
{
    (void)state;
    mkdir("mf", 0777);
    mkdir("mf/img", 0777);
    /* 40x20 RGB: left half red, right half blue; the centre square is 20x20 in the middle */
    io_image img = {.w = 40, .h = 20, .c = 3};
    img.px = malloc(40 * 20 * 3);
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 40; x++) {
            uint8_t *p = img.px + (y * 40 + x) * 3;
            p[0] = x < 20 ? 255 : 0;
            p[1] = 0;
            p[2] = x < 20 ? 0 : 255;
        }
    xd_err e;
    TU_OK(io_png_write("mf/img/wide.png", &img, &e));
    free(img.px);
    /* 17x33 grey JPEG of one value (JPEG keeps flat areas nearly exact) */
    io_image g = {.w = 17, .h = 33, .c = 1};
    g.px = malloc(17 * 33);
    memset(g.px, 90, 17 * 33);
    TU_OK(io_jpeg_write("mf/img/tall.jpg", &g, 95, &e));
    free(g.px);
    write_rgb_png("mf/img/tiny.png", 3, 3, 4, (const uint8_t[]){0, 0, 0, 0});
    /* c0.png .. c15.png: 3x3 of one colour each, sixteen different images */
    for (int i = 0; i < 16; i++) {
        char path[32];
        snprintf(path, sizeof path, "mf/img/c%d.png", i);
        write_rgb_png(path, 3, 3, 3, (const uint8_t[]){(uint8_t)(16 * i), 7, 200});
    }
    tu_write_text("mf/img/bad.png", "this is not an image");
    tu_write_text("mf/img/bad2.png", "neither is this");
    return 0;
}

static void test_manifest_good(void **state)
{
    (void)state;
    tu_write_text("mf/pairs.tsv",
               "image_path\ttext\tlabel\n"
               "img/wide.png\ta red and blue flag\tflag\n"
               "\n"
               "img/tall.jpg\t\xEA\xB3\xA0\xEC\x96\x91\xEC\x9D\xB4 cat\tcat\n"
               "img/tiny.png\tnothing\tflag\n");
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = "mf/pairs.tsv";
    o.out = "mf_out/pairs.xds";
    o.size = 10;
    o.test_fraction = 0.0;
    o.lang = "mixed";
    sets_summary sum;
    xd_err e;
    xd_status s = sets_manifest(&o, &sum, &e);
    if (s) fail_msg("%s", e.msg);
    assert_int_equal(sum.n[0], 3);
    assert_int_equal(sum.n[1], 0);
    assert_int_equal(sum.n_classes, 2);
    assert_string_equal(sum.classes[0], "cat"); /* class names in byte order */
    sets_summary_free(&sum);
    io_dataset *ds = tu_open_ds("mf_out/pairs.xds");
    assert_string_equal(io_dataset_meta(ds, "name"), "pairs");
    const io_tensor *img = tu_need(ds, "train/image", IO_U8, 4);
    assert_int_equal(img->shape[0], 3);
    assert_int_equal(img->shape[1], 10);
    assert_int_equal(img->shape[3], 3);
    const uint8_t *px = img->data;
    /* wide: the centre 20x20 covers x in [10, 30): left half red, right half blue, shrunk 2x */
    assert_int_equal(px[(5 * 10 + 0) * 3 + 0], 255);
    assert_int_equal(px[(5 * 10 + 0) * 3 + 2], 0);
    assert_int_equal(px[(5 * 10 + 9) * 3 + 0], 0);
    assert_int_equal(px[(5 * 10 + 9) * 3 + 2], 255);
    /* tall grey JPEG: grey repeated in RGB, about 90 */
    const uint8_t *t = px + 300;
    assert_true(abs(t[0] - 90) <= 2 && t[0] == t[1] && t[1] == t[2]);
    /* tiny transparent PNG grown to 10x10: white */
    assert_int_equal(px[600 + 150], 255);
    size_t len;
    const io_strings *tx = tu_need_str(ds, "train/text.mixed");
    assert_string_equal(io_strings_get(tx, 1, &len), "\xEA\xB3\xA0\xEC\x96\x91\xEC\x9D\xB4 cat");
    const int32_t *y = tu_need(ds, "train/label", IO_I32, 1)->data;
    assert_int_equal(y[0], 1);
    assert_int_equal(y[1], 0);
    assert_int_equal(y[2], 1);
    assert_string_equal(io_strings_get(tu_need_str(ds, "languages"), 0, &len), "mixed");
    io_dataset_close(ds);

    /* an existing folder as --out gets dataset.xds; JSONL works the same way */
    mkdir("mf_dir", 0777);
    tu_write_text("mf/pairs.jsonl",
               "{\"image\":\"img/wide.png\",\"text\":\"flag\",\"label\":1}\n"
               "{\"image\":\"img/tiny.png\",\"text\":\"dot\",\"label\":0}\n");
    o.manifest = "mf/pairs.jsonl";
    o.out = "mf_dir";
    o.test_fraction = 1.0;
    TU_OK(sets_manifest(&o, &sum, &e));
    assert_int_equal(sum.n[1], 2);
    sets_summary_free(&sum);
    assert_true(tu_exists("mf_dir/dataset.xds"));

    /* a path ending in '/' names a folder: it is made, with dataset.xds inside */
    o.out = "mf_new/a/";
    TU_OK(sets_manifest(&o, &sum, &e));
    sets_summary_free(&sum);
    assert_true(tu_exists("mf_new/a/dataset.xds"));
    /* a write that fails there takes the folders it made away again */
    o.out = "mf_gone/a/";
    tu_limit_file_size(64);
    s = sets_manifest(&o, &sum, &e);
    tu_limit_file_size(-1);
    assert_int_equal(s, XD_EIO);
    tu_assert_err(&e, XD_EIO, "mf_gone/a/dataset.xds: write failed");
    assert_false(tu_exists("mf_gone"));
}

static void expect_manifest_error(const char *text, const char *ext, const char *where,
                                  const char *why)
{
    char path[64];
    snprintf(path, sizeof path, "mf/bad.%s", ext);
    tu_write_text(path, text);
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = path;
    o.out = "mf_bad_out.xds";
    sets_summary sum;
    xd_err e;
    xd_status s = sets_manifest(&o, &sum, &e);
    if (s == XD_OK) fail_msg("%s was accepted, expected '%s'", path, why);
    tu_assert_err(&e, s, where);
    tu_assert_err(&e, s, why);
    assert_false(tu_exists("mf_bad_out.xds"));
    tu_assert_nothing_left(".", "mf_bad_out");
}

static void test_manifest_errors(void **state)
{
    (void)state;
    expect_manifest_error("image_path\ttext\tlabel\nimg/wide.png\ta\t1\n\nimg/nope.png\tb\t0\n",
                          "tsv", "mf/bad.tsv:4", "nope.png");
    expect_manifest_error("image_path\ttext\tlabel\nimg/wide.png\ta\t1\nimg/wide.png\tb\t2.5\n",
                          "tsv", "mf/bad.tsv:3", "2.5");
    expect_manifest_error("image_path\ttext\tlabel\nimg/wide.png\ta\xFF\t1\n", "tsv", "mf/bad.tsv:2",
                          "UTF-8");
    expect_manifest_error("{\"image\":\"img/wide.png\",\"text\":\"a\",\"label\":true}\n", "jsonl",
                          "mf/bad.jsonl:1", "label");
    /* undecodable images: the lowest line wins, whatever thread saw it first (three examples a
     * class, so that the split, decided first, has test examples) */
    expect_manifest_error("\r\nimage_path\ttext\tlabel\r\nimg/c0.png\ta\tx\r\n\r\n"
                          "img/bad.png\tb\ty\r\nimg/c1.png\tc\tx\r\nimg/bad2.png\td\ty\r\n"
                          "img/c2.png\te\tx\r\nimg/c3.png\tf\ty\r\n",
                          "tsv", "mf/bad.tsv:5: column image_path", "not a PNG or JPEG");
    expect_manifest_error("{\"image\":\"img/tall.jpg\",\"text\":\"a\",\"label\":\"x\"}\n\n\n"
                          "{\"image\":\"img/bad2.png\",\"text\":\"a\",\"label\":\"x\"}\n"
                          "{\"image\":\"img/c4.png\",\"text\":\"a\",\"label\":\"x\"}\n",
                          "jsonl", "mf/bad.jsonl:4: column image", "bad2.png");
    /* the kind comes from the end of the file name, in any case: lines and columns named */
    expect_manifest_error("image_path\ttext\tlabel\nimg/wide.png\ta\tx\n\nimg/bad.png\tb\tx\n"
                          "img/c5.png\tc\tx\n",
                          "TSV", "mf/bad.TSV:4: column image_path: ", "not a PNG or JPEG");
    expect_manifest_error("{\"image\":\"img/bad2.png\",\"text\":\"a\",\"label\":\"x\"}\n"
                          "{\"image\":\"img/tall.jpg\",\"text\":\"a\",\"label\":\"x\"}\n"
                          "{\"image\":\"img/c6.png\",\"text\":\"a\",\"label\":\"x\"}\n",
                          "JSONL", "mf/bad.JSONL:1: column image: ", "bad2.png");
    mkdir("mf/bad.jsonl.d", 0777);
    expect_manifest_error("image_path\ttext\tlabel\n../img/bad.png\ta\tx\n../img/wide.png\ta\tx\n"
                          "../img/c7.png\ta\tx\n",
                          "jsonl.d/x.tsv", "mf/bad.jsonl.d/x.tsv:2: column image_path: ",
                          "not a PNG or JPEG");
    /* nothing to prepare, or nothing left to test on: errors, not an empty set or split */
    expect_manifest_error("image_path\ttext\tlabel\n", "tsv", "mf/bad.tsv", "no examples");
    expect_manifest_error("image_path\ttext\tlabel\nimg/wide.png\ta\tx\nimg/tall.jpg\tb\ty\n"
                          "img/tiny.png\tc\tx\nimg/wide.png\td\ty\n", "tsv", "mf/bad.tsv",
                          "4 examples (3 different images) in 2 classes give no test example at test fraction 0.2");
    /* the split needs only the labels: decided before any image is decoded, a bad one unread */
    expect_manifest_error("image_path\ttext\tlabel\nimg/bad.png\ta\tx\nimg/wide.png\tb\ty\n",
                          "tsv", "mf/bad.tsv: 2 examples in 2 classes give no test example",
                          "--test-fraction 0");

    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = "mf/bad.tsv";
    o.out = "mf_bad_out.xds";
    o.lang = "a/b";
    sets_summary sum;
    xd_err e;
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "language 'a/b'");
}

/* The ids of one split of a data set file, as a 0/1 table over 0..n-1. */
static void split_ids(const char *path, const char *split, uint8_t *in, size_t n)
{
    memset(in, 0, n);
    io_dataset *ds = tu_open_ds(path);
    char name[32];
    snprintf(name, sizeof name, "%s/id", split);
    const io_tensor *t = tu_need(ds, name, IO_I32, 1);
    const int32_t *id = t->data;
    for (int64_t i = 0; i < t->shape[0]; i++) {
        assert_true(id[i] >= 0 && (size_t)id[i] < n);
        in[id[i]] = 1;
    }
    io_dataset_close(ds);
}

/* A manifest of n rows (n <= 16), each its own image c0.png, c1.png, ..., labels x and y
 * alternating. */
static void write_rows(const char *path, int n)
{
    char text[4096] = "image_path\ttext\tlabel\n";
    XD_ASSERT(n <= 16);
    for (int i = 0; i < n; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "img/c%d.png\trow %d\t%s\n", i,
                 i, i % 2 ? "y" : "x");
    tu_write_text(path, text);
}

/* Options for manifest -> out, images size x size, half of each class to test. */
static sets_manifest_opts half_to_test(const char *manifest, const char *out, int size)
{
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = manifest;
    o.out = out;
    o.size = size;
    o.test_fraction = 0.5;
    return o;
}

/* Rows that show one example land on one side of the split: the same image file named twice, a
 * copy of its bytes under another name, or (rationale records) the same input text. */
static void test_manifest_same_example_one_side(void **state)
{
    (void)state;
    enum { N = 8 }; /* images c0 .. c7, each on three rows: itself twice and a copy */
    char text[4096] = "image_path\ttext\tlabel\n";
    for (int i = 0; i < N; i++) {
        char from[32], to[32];
        snprintf(from, sizeof from, "mf/img/c%d.png", i);
        snprintf(to, sizeof to, "mf/img/copy%d.png", i);
        tu_copy_file(from, to);
    }
    for (int r = 0; r < 3 * N; r++) { /* row r shows image r % N, labels by image */
        const int i = r % N;
        snprintf(text + strlen(text), sizeof text - strlen(text), "img/%s%d.png\trow %d\t%s\n",
                 r / N == 2 ? "copy" : "c", i, r, i % 2 ? "y" : "x");
    }
    tu_write_text("mf/same.tsv", text);
    sets_manifest_opts o = half_to_test("mf/same.tsv", "mf_same.xds", 4);
    sets_summary sum;
    xd_err e;
    TU_OK(sets_manifest(&o, &sum, &e));
    /* per class four images, two to test: six rows */
    assert_int_equal(sum.n[SETS_TEST], 12);
    sets_summary_free(&sum);
    uint8_t test[3 * N];
    split_ids("mf_same.xds", "test", test, 3 * N);
    for (int r = N; r < 3 * N; r++)
        if (test[r] != test[r % N]) fail_msg("row %d and row %d show one image, split apart", r, r % N);

    /* rationale records: the same input on two lines is one example */
    tu_write_text("mf/same.jsonl",
                  "{\"input\": \"a\", \"label\": \"x\", \"rationale\": \"r1\"}\n"
                  "{\"input\": \"b\", \"label\": \"x\", \"rationale\": \"r2\"}\n"
                  "{\"input\": \"a\", \"label\": \"x\", \"rationale\": \"r3\"}\n"
                  "{\"input\": \"c\", \"label\": \"y\", \"rationale\": \"r4\"}\n"
                  "{\"input\": \"d\", \"label\": \"y\", \"rationale\": \"r5\"}\n"
                  "{\"input\": \"c\", \"label\": \"y\", \"rationale\": \"r6\"}\n");
    o.manifest = "mf/same.jsonl";
    o.out = "mf_same_r.xds";
    int apart = 0; /* seeds that send input a to one side and b to the other */
    for (uint64_t seed = 1; seed <= 8; seed++) {
        o.seed = seed;
        o.force = 1;
        TU_OK(sets_rationales(&o, &sum, &e));
        sets_summary_free(&sum);
        uint8_t in[6];
        split_ids("mf_same_r.xds", "test", in, 6);
        assert_int_equal(in[0], in[2]);
        assert_int_equal(in[3], in[5]);
        /* per class two inputs, one of them to test */
        assert_int_equal(in[0] + in[1], 1);
        assert_int_equal(in[3] + in[4], 1);
        apart += in[0];
    }
    assert_true(apart > 0 && apart < 8); /* the seed decides which */
}

/* --classes: the file's names and order, a class without examples kept; labels checked. */
static void test_manifest_classes(void **state)
{
    (void)state;
    write_rows("mf/rows.tsv", 6);
    tu_write_text("mf/classes.txt", "y\nz\nx\n");
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = "mf/rows.tsv";
    o.out = "mf_cls.xds";
    o.size = 4;
    o.classes = "mf/classes.txt";
    sets_summary sum;
    xd_err e;
    TU_OK(sets_manifest(&o, &sum, &e));
    assert_int_equal(sum.n_classes, 3);
    assert_string_equal(sum.classes[1], "z");
    assert_int_equal(sum.class_n[1 * SETS_SPLIT_COUNT + SETS_TRAIN], 0);
    sets_summary_free(&sum);
    io_dataset *ds = tu_open_ds("mf_cls.xds");
    size_t len;
    const io_strings *cls = tu_need_str(ds, "classes");
    assert_int_equal(cls->n, 3);
    assert_string_equal(io_strings_get(cls, 2, &len), "x");
    assert_string_equal(io_dataset_meta(ds, "classes_file"), "mf/classes.txt");
    io_dataset_close(ds);

    /* a label the file lacks, or a bad classes file: the line, nothing written */
    tu_write_text("mf/classes.txt", "y\nz\n");
    o.out = "mf_cls_bad.xds";
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "mf/rows.tsv:2: column label: 'x' is not a class of "
                                  "mf/classes.txt");
    tu_write_text("mf/classes.txt", "y\nx\ny\n");
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "mf/classes.txt:3: class 'y' is already on line 1");
    assert_false(tu_exists("mf_cls_bad.xds"));
}

/* --split-from: the same examples made another way get exactly the other set's split. */
static void test_manifest_split_from(void **state)
{
    (void)state;
    enum { N = 12 };
    write_rows("mf/rows.tsv", N);
    sets_manifest_opts o = half_to_test("mf/rows.tsv", "mf_a.xds", 6);
    sets_summary sum;
    xd_err e;
    TU_OK(sets_manifest(&o, &sum, &e));
    sets_summary_free(&sum);
    uint8_t a_train[N], a_test[N], b_train[N], b_test[N];
    split_ids("mf_a.xds", "train", a_train, N);
    split_ids("mf_a.xds", "test", a_test, N);

    /* another size and seed: on its own the split differs ... */
    o.out = "mf_b.xds";
    o.size = 4;
    o.seed = 5;
    TU_OK(sets_manifest(&o, &sum, &e));
    sets_summary_free(&sum);
    split_ids("mf_b.xds", "test", b_test, N);
    assert_memory_not_equal(a_test, b_test, N);
    /* ... and from A it is A's: equal splits, disjoint and complete */
    o.out = "mf_c.xds";
    o.split_from = "mf_a.xds";
    o.test_fraction = 0.0; /* unused with a split from elsewhere */
    TU_OK(sets_manifest(&o, &sum, &e));
    size_t a_n_test = 0;
    for (int i = 0; i < N; i++) a_n_test += a_test[i];
    assert_int_equal(sum.n[SETS_TEST], a_n_test);
    assert_int_equal(sum.n[SETS_TRAIN], N - a_n_test);
    sets_summary_free(&sum);
    split_ids("mf_c.xds", "train", b_train, N);
    split_ids("mf_c.xds", "test", b_test, N);
    assert_memory_equal(a_train, b_train, N);
    assert_memory_equal(a_test, b_test, N);
    for (int i = 0; i < N; i++) assert_int_equal(b_train[i] + b_test[i], 1);
    /* and in A's order, whatever the seed would have drawn */
    io_dataset *da = tu_open_ds("mf_a.xds"), *dc = tu_open_ds("mf_c.xds");
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s/id", sets_split_names[k]);
        const io_tensor *ia = tu_need(da, name, IO_I32, 1), *ic = tu_need(dc, name, IO_I32, 1);
        assert_int_equal(ia->shape[0], ic->shape[0]);
        assert_memory_equal(ia->data, ic->data, (size_t)ia->shape[0] * sizeof(int32_t));
    }
    io_dataset_close(da);
    io_dataset_close(dc);
    io_dataset *ds = tu_open_ds("mf_c.xds");
    assert_string_equal(io_dataset_meta(ds, "split_from"), "mf_a.xds");
    /* the rows moved with their texts and images: row i's text is "row i" */
    const io_tensor *id = tu_need(ds, "test/id", IO_I32, 1);
    const io_strings *tx = tu_need_str(ds, "test/text.und");
    const uint8_t *px = tu_need(ds, "test/image", IO_U8, 4)->data;
    for (int64_t j = 0; j < id->shape[0]; j++) {
        int32_t r = ((const int32_t *)id->data)[j];
        char want[32];
        snprintf(want, sizeof want, "row %d", r);
        assert_string_equal(io_strings_get(tx, (size_t)j, NULL), want);
        assert_int_equal(px[j * 4 * 4 * 3], 16 * r); /* cR.png: red 16 R */
    }
    io_dataset_close(ds);

    /* rows A does not have: their count and the first ids, nothing written */
    write_rows("mf/rows.tsv", N + 2);
    o.out = "mf_d.xds";
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "--split-from mf_a.xds: 2 of this set's 14 examples are not in it "
                               "(id 12, id 13)");
    assert_false(tu_exists("mf_d.xds"));

    /* a damaged or missing OTHER */
    write_rows("mf/rows.tsv", N);
    size_t n;
    uint8_t *bytes = tu_read_file("mf_a.xds", &n);
    bytes[n - 1] ^= 0x40;
    tu_write_file("mf_bad.xds", bytes, n);
    free(bytes);
    o.split_from = "mf_bad.xds";
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "--split-from: mf_bad.xds");
    o.split_from = "mf_none.xds";
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "mf_none.xds");
    assert_false(tu_exists("mf_d.xds"));
}

/* The options as a user gives them: the summary, one line on failure, an option of another set. */
static void test_manifest_cli(void **state)
{
    (void)state;
    write_rows("mf/rows.tsv", 8);
    tu_write_text("mf/classes.txt", "y\nz\nx\n");
    char *out = NULL, *err = NULL;
    int rc = tu_run_cli(&out, &err, "prepare", "manifest", "mf/rows.tsv", "--out", "cli_a.xds",
                        "--size", "4", "--classes", "mf/classes.txt", "--test-fraction", "0.5",
                        NULL);
    if (rc != 0) fail_msg("exit %d: %s", rc, err);
    assert_non_null(strstr(out, "class (3):"));
    assert_non_null(strstr(out, "    z                           0        0\n"));
    free(out);
    free(err);
    rc = tu_run_cli(&out, &err, "prepare", "manifest", "mf/rows.tsv", "--out", "cli_b.xds",
                    "--size", "6", "--classes", "mf/classes.txt", "--split-from", "cli_a.xds",
                    NULL);
    if (rc != 0) fail_msg("exit %d: %s", rc, err);
    free(out);
    free(err);
    uint8_t a[8], b[8];
    split_ids("cli_a.xds", "test", a, 8);
    split_ids("cli_b.xds", "test", b, 8);
    assert_memory_equal(a, b, 8);
    write_rows("mf/rows.tsv", 9);
    rc = tu_run_cli(&out, &err, "prepare", "manifest", "mf/rows.tsv", "--out", "cli_c.xds",
                    "--split-from", "cli_a.xds", NULL);
    assert_int_equal(rc, 1);
    assert_string_equal(err, "xdistill prepare: --split-from cli_a.xds: 1 of this set's 9 examples "
                             "are not in it (id 8); the split of another set needs them all\n");
    assert_false(tu_exists("cli_c.xds"));
    free(out);
    free(err);
    rc = tu_run_cli(&out, &err, "prepare", "fashion-mnist", "--out", "f", "--split-from",
                    "cli_a.xds", NULL);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "--split-from is not an option of prepare fashion-mnist"));
    free(out);
    free(err);
}

/* sets_split_from on its own: matching by code, every per-example array regrouped, and a key in
 * both splits of the other set. */
static void test_split_from_codes(void **state)
{
    (void)state;
    /* the other set: codes C A in train, B D in test (ids that do not match on purpose) */
    io_dataset_writer *w;
    xd_err e;
    TU_OK(io_dataset_writer_open("other.xds", 8, &w, &e));
    const char *tr_code[] = {"C", "A"}, *te_code[] = {"B", "D"};
    int32_t tr_id[] = {9, 9}, te_id[] = {9, 8};
    io_tensor t;
    io_tensor_set(&t, "train/id", IO_I32, 1, (const int64_t[]){2}, tr_id);
    TU_OK(io_dataset_add(w, &t, &e));
    io_tensor_set(&t, "test/id", IO_I32, 1, (const int64_t[]){2}, te_id);
    TU_OK(io_dataset_add(w, &t, &e));
    TU_OK(io_dataset_add_strings(w, "train/code", tr_code, 2, &e));
    TU_OK(io_dataset_add_strings(w, "test/code", te_code, 2, &e));
    TU_OK(io_dataset_finish(w, &e));

    /* this set: A B in train, C in test; 1x1x1 images, a label.sub, texts in one language */
    const char *code0[] = {"A", "B"}, *code1[] = {"C"}, *txt0[] = {"a", "b"}, *txt1[] = {"c"};
    const char *const *tx0[] = {txt0}, *const *tx1[] = {txt1};
    const char *lang = "en";
    uint8_t img0[] = {10, 20}, img1[] = {30}, m0[] = {1, 0}, m1[] = {1};
    int32_t y0[] = {0, 1}, y1[] = {2}, id0[] = {0, 1}, id1[] = {2}, x0[] = {5, 6}, x1[] = {7};
    sets_split sp[SETS_SPLIT_COUNT] = {
        {.n = 2, .h = 1, .w = 1, .c = 1, .image = img0, .label = y0, .label_mask = m0, .id = id0,
         .extra_name = {"sub"}, .extra = {x0}, .code = code0, .n_langs = 1, .langs = &lang,
         .texts = tx0},
        {.n = 1, .h = 1, .w = 1, .c = 1, .image = img1, .label = y1, .label_mask = m1, .id = id1,
         .extra_name = {"sub"}, .extra = {x1}, .code = code1, .n_langs = 1, .langs = &lang,
         .texts = tx1},
    };
    sets_regroup rg;
    TU_OK(sets_split_from("other.xds", sp, &rg, &e));
    assert_int_equal(sp[SETS_TRAIN].n, 2); /* C, A: in the other set's order */
    assert_int_equal(sp[SETS_TEST].n, 1);  /* B */
    assert_string_equal(sp[SETS_TRAIN].code[0], "C");
    assert_int_equal(sp[SETS_TRAIN].image[0], 30);
    assert_int_equal(sp[SETS_TRAIN].label[0], 2);
    assert_int_equal(sp[SETS_TRAIN].extra[0][0], 7);
    assert_int_equal(sp[SETS_TRAIN].id[0], 2);
    assert_string_equal(sp[SETS_TRAIN].texts[0][0], "c");
    assert_string_equal(sp[SETS_TRAIN].code[1], "A");
    assert_int_equal(sp[SETS_TRAIN].image[1], 10);
    assert_string_equal(sp[SETS_TEST].code[0], "B");
    assert_int_equal(sp[SETS_TEST].image[0], 20);
    assert_int_equal(sp[SETS_TEST].label_mask[0], 0);
    assert_string_equal(sp[SETS_TEST].texts[0][0], "b");
    sets_regroup_free(&rg);

    /* without codes the ids decide: id 9 is in both splits of the other set */
    sp[0].code = sp[1].code = NULL;
    id0[0] = 9;
    sp[0].id = id0;
    assert_int_equal(sets_split_from("other.xds", sp, &rg, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "--split-from other.xds: id 9 is in both its train and test");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_manifest_good, manifest_setup),
        cmocka_unit_test_setup(test_manifest_errors, manifest_setup),
        cmocka_unit_test_setup(test_manifest_classes, manifest_setup),
        cmocka_unit_test_setup(test_manifest_split_from, manifest_setup),
        cmocka_unit_test(test_split_from_codes),
        cmocka_unit_test_setup(test_manifest_same_example_one_side, manifest_setup),
        cmocka_unit_test_setup(test_manifest_cli, manifest_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
