/* io/manifest: TSV and JSONL manifests, the label rule, and one error per bad line; rationale
 * records and their bad lines. */
#include "tests/support/testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/manifest.h"

static void write_text(const char *path, const char *s)
{
    tu_write_file(path, s, strlen(s));
}

/* data/ with three (empty) image files; the manifests live in data/. */
static int setup_images(void **state)
{
    (void)state;
    mkdir("data", 0777);
    mkdir("data/img", 0777);
    write_text("data/img/a.png", "a");
    write_text("data/img/b.png", "b");
    write_text("data/img/c.png", "c");
    return 0;
}

static void expect_fail(const char *path, xd_status code, const char *substr)
{
    io_manifest m;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = io_manifest_read(path, NULL, &m, &e);
    if (s == XD_OK) fail_msg("%s was accepted, expected an error mentioning '%s'", path, substr);
    tu_assert_err(&e, code, path);
    tu_assert_err(&e, code, substr);
    assert_int_equal(m.n, 0);
    assert_null(m.paths);
}

static void test_tsv_names_crlf_reordered_columns(void **state)
{
    (void)state;
    char cwd[PATH_MAX], abs_c[PATH_MAX + 32];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(abs_c, sizeof abs_c, "%s/data/img/c.png", cwd);
    char text[PATH_MAX + 256];
    snprintf(text, sizeof text,
             "\xEF\xBB\xBFlabel\tnote\ttext\timage_path\r\n"
             "cat\tx\ta grey cat\timg/a.png\r\n"
             "\r\n"
             "dog\t\t\xEA\xB0\x9C \xE7\x8A\xAC\timg/b.png\r\n"
             "cat\ty\tanother cat\t%s\n"
             "\n",
             abs_c);
    write_text("data/m.tsv", text);
    io_manifest m;
    xd_err e;
    TU_OK(io_manifest_read("data/m.tsv", NULL, &m, &e));
    assert_int_equal(m.n, 3);
    assert_string_equal(m.paths[0], "data/img/a.png");
    assert_string_equal(m.paths[1], "data/img/b.png");
    assert_string_equal(m.paths[2], abs_c);
    assert_string_equal(m.texts[0], "a grey cat");
    assert_string_equal(m.texts[1], "\xEA\xB0\x9C \xE7\x8A\xAC");
    assert_string_equal(m.texts[2], "another cat");
    assert_int_equal(m.labels_are_names, 1);
    assert_int_equal(m.n_classes, 2);
    assert_string_equal(m.class_names[0], "cat");
    assert_string_equal(m.class_names[1], "dog");
    assert_int_equal(m.labels[0], 0);
    assert_int_equal(m.labels[1], 1);
    assert_int_equal(m.labels[2], 0);
    io_manifest_free(&m);
    assert_int_equal(m.n, 0);
}

static void test_tsv_numeric_ids_and_mixed_names(void **state)
{
    (void)state;
    write_text("data/ids.tsv", "image_path\ttext\tlabel\n"
                               "img/a.png\tone\t2\n"
                               "img/b.png\ttwo\t0\n"
                               "img/c.png\tthree\t1\n");
    io_manifest m;
    xd_err e;
    TU_OK(io_manifest_read_tsv("data/ids.tsv", NULL, &m, &e));
    assert_int_equal(m.labels_are_names, 0);
    assert_int_equal(m.n_classes, 3);
    assert_string_equal(m.class_names[2], "2");
    assert_int_equal(m.labels[0], 2);
    assert_int_equal(m.labels[1], 0);
    assert_int_equal(m.labels[2], 1);
    io_manifest_free(&m);

    /* one word among numbers makes every label a name, "7" included */
    write_text("data/mixed.tsv", "image_path\ttext\tlabel\n"
                                 "img/a.png\tone\t7\n"
                                 "img/b.png\ttwo\tshoe\n"
                                 "img/c.png\tthree\t7\n");
    TU_OK(io_manifest_read("data/mixed.tsv", NULL, &m, &e));
    assert_int_equal(m.labels_are_names, 1);
    assert_int_equal(m.n_classes, 2);
    assert_string_equal(m.class_names[0], "7");
    assert_string_equal(m.class_names[1], "shoe");
    assert_int_equal(m.labels[2], 0);
    io_manifest_free(&m);
}

/* Labels never make classes without examples: numeric ids must be 0..K-1, all used (99999 once
 * made 100000 classes); names are sorted, so their ids do not depend on the row order; a header
 * without rows is an error, not an empty data set. */
static void test_labels_and_empty_files(void **state)
{
    (void)state;
    write_text("data/gap.tsv", "image_path\ttext\tlabel\n"
                               "img/a.png\tone\t0\n"
                               "img/b.png\ttwo\t99999\n"
                               "img/c.png\tthree\t1\n");
    expect_fail("data/gap.tsv", XD_EFORMAT,
                "data/gap.tsv:3: column label: class id 99999, but no example has id 2");
    write_text("data/gap.jsonl", "{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": 3}\n");
    expect_fail("data/gap.jsonl", XD_EFORMAT, "data/gap.jsonl:1: column label: class id 3, but no "
                                              "example has id 0");

    write_text("data/order.tsv", "image_path\ttext\tlabel\n"
                                 "img/a.png\tone\tzebra\n"
                                 "img/b.png\ttwo\tant\n"
                                 "img/c.png\tthree\tmoth\n");
    io_manifest m;
    xd_err e;
    TU_OK(io_manifest_read("data/order.tsv", NULL, &m, &e));
    assert_int_equal(m.n_classes, 3);
    assert_string_equal(m.class_names[0], "ant");
    assert_string_equal(m.class_names[1], "moth");
    assert_string_equal(m.class_names[2], "zebra");
    assert_int_equal(m.labels[0], 2);
    assert_int_equal(m.labels[1], 0);
    assert_int_equal(m.labels[2], 1);
    io_manifest_free(&m);

    /* one spelling: "Café" composed (U+00E9) and decomposed (e, U+0301), "cat", " cat  " and
     * "c\u00ADat" (a soft hyphen) are two classes, named in NFC without the space and hyphen;
     * case is kept */
    write_text("data/spell.tsv", "image_path\ttext\tlabel\n"
                                 "img/a.png\tone\tCaf\xC3\xA9\n"
                                 "img/b.png\ttwo\tCafe\xCC\x81\n"
                                 "img/c.png\tthree\tcat\n"
                                 "img/a.png\tfour\t cat  \n"
                                 "img/b.png\tfive\tc\xC2\xAD" "at\n"
                                 "img/c.png\tsix\tCat\n");
    TU_OK(io_manifest_read("data/spell.tsv", NULL, &m, &e));
    assert_int_equal(m.n_classes, 3);
    assert_string_equal(m.class_names[0], "Caf\xC3\xA9");
    assert_string_equal(m.class_names[1], "Cat");
    assert_string_equal(m.class_names[2], "cat");
    const int32_t want[] = {0, 0, 2, 2, 2, 1};
    for (int i = 0; i < 6; i++) assert_int_equal(m.labels[i], want[i]);
    io_manifest_free(&m);
    /* nothing but invisible characters and white space is no label */
    write_text("data/spell.tsv", "image_path\ttext\tlabel\nimg/a.png\tone\t\xE2\x80\x8B\xC2\xAD\n");
    expect_fail("data/spell.tsv", XD_EFORMAT, "data/spell.tsv:2: column label: empty label");

    write_text("data/header.tsv", "image_path\ttext\tlabel\n\n");
    expect_fail("data/header.tsv", XD_EFORMAT, "data/header.tsv: no examples (nothing but the header)");
    write_text("data/blank.jsonl", "\n\n");
    expect_fail("data/blank.jsonl", XD_EFORMAT, "data/blank.jsonl: no examples");
}

static void test_tsv_bad_lines(void **state)
{
    (void)state;
    write_text("data/nolabel.tsv", "\nimage_path\ttext\tlabelx\nimg/a.png\tt\t1\n");
    expect_fail("data/nolabel.tsv", XD_EFORMAT, "data/nolabel.tsv:2: the header has no 'label'");
    write_text("data/twice.tsv", "text\timage_path\ttext\tlabel\n");
    expect_fail("data/twice.tsv", XD_EFORMAT, ":1: column text: named twice");
    write_text("data/fields.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t1\nimg/b.png\tt\n");
    expect_fail("data/fields.tsv", XD_EFORMAT, "data/fields.tsv:3: 2 fields, the header has 3");
    write_text("data/extra.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t1\t\n");
    expect_fail("data/extra.tsv", XD_EFORMAT, ":2: 4 fields, the header has 3");
    write_text("data/empty_path.tsv",
               "image_path\ttext\tlabel\r\nimg/a.png\tt\t1\r\n\r\n\tt\t1\r\n");
    expect_fail("data/empty_path.tsv", XD_EFORMAT,
                "data/empty_path.tsv:4: column image_path: empty image path");
    write_text("data/neg.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t0\nimg/b.png\tt\t-1\n");
    expect_fail("data/neg.tsv", XD_EFORMAT, "data/neg.tsv:3: column label: '-1' is not a class id");
    write_text("data/frac.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t2.5\nimg/b.png\tt\t1\n");
    expect_fail("data/frac.tsv", XD_EFORMAT, "data/frac.tsv:2: column label: '2.5'");
    write_text("data/big.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t100000\n");
    expect_fail("data/big.tsv", XD_EFORMAT,
                ":2: column label: '100000' is not a class id in 0..99999");
    write_text("data/nolbl.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t\n");
    expect_fail("data/nolbl.tsv", XD_EFORMAT, ":2: column label: empty label");
    /* blank, nothing but white space (U+3000, U+00A0 too), is empty: not a class */
    write_text("data/splbl.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\tx\nimg/b.png\tt\t   \n");
    expect_fail("data/splbl.tsv", XD_EFORMAT, "data/splbl.tsv:3: column label: empty label");
    write_text("data/splbl.jsonl", "{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": "
                                   "\"\xE3\x80\x80\xC2\xA0\"}\n");
    expect_fail("data/splbl.jsonl", XD_EFORMAT, "data/splbl.jsonl:1: column label: empty label");
    write_text("data/utf8.tsv",
               "image_path\ttext\tlabel\nimg/a.png\tok\t1\nimg/b.png\tbad \xC3\x28\t1\n");
    expect_fail("data/utf8.tsv", XD_EFORMAT,
                "data/utf8.tsv:3: column text: invalid UTF-8 at byte 4");
    write_text("data/utf8b.tsv", "image_path\tnote\ttext\tlabel\nimg/a.png\t\xED\xA0\x80\tok\t1\n");
    expect_fail("data/utf8b.tsv", XD_EFORMAT, ":2: column note: invalid UTF-8 at byte 0");
    write_text("data/utf8h.tsv", "image_path\ttext\tlabel\xF5\nimg/a.png\tok\t1\n");
    expect_fail("data/utf8h.tsv", XD_EFORMAT,
                "data/utf8h.tsv:1: invalid UTF-8 at byte 21 of the line");
    write_text("data/overlong.tsv", "image_path\ttext\tlabel\nimg/a.png\t\xC0\xAF\t1\n");
    expect_fail("data/overlong.tsv", XD_EFORMAT, ":2: column text: invalid UTF-8");
    const char nul[] = "image_path\ttext\tlabel\nimg/a.png\ta\0b\t1\n";
    tu_write_file("data/nul.tsv", nul, sizeof nul - 1);
    expect_fail("data/nul.tsv", XD_EFORMAT,
                ":2: column text: invalid UTF-8 at byte 1 of the field (0x00)");
    write_text("data/missing.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t1\nimg/zz.png\tt\t1\n");
    expect_fail(
        "data/missing.tsv", XD_EIO,
        "data/missing.tsv:3: column image_path: image file 'data/img/zz.png': does not exist");
    write_text("data/dir.tsv", "image_path\ttext\tlabel\nimg\tt\t1\n");
    expect_fail("data/dir.tsv", XD_EIO,
                ":2: column image_path: image file 'data/img': is not a regular");
    write_text("data/empty.tsv", "\r\n\n");
    expect_fail("data/empty.tsv", XD_EFORMAT, "empty manifest");
    expect_fail("data/absent.tsv", XD_EIO, "cannot open");
}

static void test_limits(void **state)
{
    (void)state;
    io_manifest_limits lim = io_manifest_default_limits();
    lim.max_rows = 2;
    write_text("data/rows.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t1\nimg/b.png\tt\t1\n\n"
                                "img/c.png\tt\t1\n");
    io_manifest m;
    xd_err e;
    assert_int_equal(io_manifest_read("data/rows.tsv", &lim, &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "data/rows.tsv:5: more than the 2 examples allowed");
    lim = io_manifest_default_limits();
    lim.max_line = 22; /* the header is 21 bytes */
    write_text("data/long.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\t0\n"
                                "img/b.png\ta long text here\t0\n");
    assert_int_equal(io_manifest_read("data/long.tsv", &lim, &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "data/long.tsv:3: line of 28 bytes, more than the 22 allowed");
    lim.max_line = 28;
    TU_OK(io_manifest_read("data/long.tsv", &lim, &m, &e));
    io_manifest_free(&m);
    lim.max_bytes = 10;
    assert_int_equal(io_manifest_read("data/long.tsv", &lim, &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "data/long.tsv");
}

static void test_jsonl(void **state)
{
    (void)state;
    write_text("data/m.jsonl",
               "{\"text\": \"a cat\", \"image\": \"img/a.png\", \"label\": 1, \"extra\": [1]}\r\n"
               "\n"
               "{\"image\": \"img/b.png\", \"text\": \"\\u732b \xE2\x9C\x93\", \"label\": 0}\n");
    io_manifest m;
    xd_err e;
    TU_OK(io_manifest_read("data/m.jsonl", NULL, &m, &e));
    assert_int_equal(m.n, 2);
    assert_string_equal(m.paths[1], "data/img/b.png");
    assert_string_equal(m.texts[1], "\xE7\x8C\xAB \xE2\x9C\x93");
    assert_int_equal(m.labels_are_names, 0);
    assert_int_equal(m.n_classes, 2);
    assert_int_equal(m.labels[0], 1);
    assert_int_equal(m.labels[1], 0);
    io_manifest_free(&m);

    write_text("data/names.jsonl",
               "{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": \"7\"}\n"
               "{\"image\": \"img/b.png\", \"text\": \"t\", \"label\": \"boot\"}\n"
               "{\"image\": \"img/c.png\", \"text\": \"t\", \"label\": \"7\"}\n");
    TU_OK(io_manifest_read_jsonl("data/names.jsonl", NULL, &m, &e));
    assert_int_equal(m.labels_are_names, 1);
    assert_int_equal(m.n_classes, 2);
    assert_string_equal(m.class_names[0], "7");
    assert_int_equal(m.labels[0], 0);
    assert_int_equal(m.labels[1], 1);
    assert_int_equal(m.labels[2], 0);
    io_manifest_free(&m);
}

static void test_jsonl_bad_lines(void **state)
{
    (void)state;
    const char *ok = "{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": 1}\n";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s\n{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": 1\n", ok);
    write_text("data/syntax.jsonl", buf);
    expect_fail("data/syntax.jsonl", XD_EFORMAT, "data/syntax.jsonl:3: invalid JSON");
    snprintf(buf, sizeof buf, "%s{\"image\": \"img/a.png\", \"label\": 1}\n", ok);
    write_text("data/nokey.jsonl", buf);
    expect_fail("data/nokey.jsonl", XD_EFORMAT, "data/nokey.jsonl:2: column text: missing key");
    snprintf(buf, sizeof buf, "%s{\"image\": 5, \"text\": \"t\", \"label\": 1}\n", ok);
    write_text("data/type.jsonl", buf);
    expect_fail("data/type.jsonl", XD_EFORMAT, ":2: column image: must be a string");
    snprintf(buf, sizeof buf, "%s%s{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": \"x\"}\n",
             ok, ok);
    write_text("data/mix.jsonl", buf);
    expect_fail("data/mix.jsonl", XD_EFORMAT,
                ":3: column label: a class name, but line 1 gave a class id");
    snprintf(buf, sizeof buf, "%s{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": -2}\n", ok);
    write_text("data/neg.jsonl", buf);
    expect_fail("data/neg.jsonl", XD_EFORMAT, ":2: column label: class id -2 is not in 0..99999");
    snprintf(buf, sizeof buf, "%s{\"image\": \"img/a.png\", \"text\": \"t\", \"label\": 1.5}\n",
             ok);
    write_text("data/real.jsonl", buf);
    expect_fail("data/real.jsonl", XD_EFORMAT, ":2: column label: must be an integer");
    write_text("data/array.jsonl", "[1, 2]\n");
    expect_fail("data/array.jsonl", XD_EFORMAT, "data/array.jsonl:1:");
    snprintf(buf, sizeof buf, "%s{\"image\": \"img/a.png\", \"text\": \"\xFF\", \"label\": 1}\n",
             ok);
    write_text("data/utf8.jsonl", buf);
    expect_fail("data/utf8.jsonl", XD_EFORMAT, ":2: invalid UTF-8 at byte 32 of the line");
    snprintf(buf, sizeof buf, "%s{\"image\": \"\", \"text\": \"t\", \"label\": 1}\n", ok);
    write_text("data/emptyimg.jsonl", buf);
    expect_fail("data/emptyimg.jsonl", XD_EFORMAT, ":2: column image: empty image path");
    snprintf(buf, sizeof buf, "%s{\"image\": \"img/q.png\", \"text\": \"t\", \"label\": 1}\n", ok);
    write_text("data/noimg.jsonl", buf);
    expect_fail("data/noimg.jsonl", XD_EIO, ":2: column image: image file 'data/img/q.png'");
    snprintf(buf, sizeof buf,
             "{\"image\": \"img/a.png\", \"image\": \"img/b.png\", \"text\": \"t\", "
             "\"label\": 1}\n");
    write_text("data/dup.jsonl", buf);
    expect_fail("data/dup.jsonl", XD_EFORMAT, "data/dup.jsonl:1: invalid JSON");
    write_text("data/m.csv", "image_path,text,label\n");
    io_manifest m;
    xd_err e;
    assert_int_equal(io_manifest_read("data/m.csv", NULL, &m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "must end in .tsv or .jsonl");
}

/* A classes file: its names in its order, a class without examples kept, every label checked. */
static void test_classes_file(void **state)
{
    (void)state;
    io_manifest_classes c;
    xd_err e;
    /* "7" is a name here, "b" has no example, CRLF and a BOM are fine */
    write_text("data/cls.txt", "\xEF\xBB\xBF" "dog\r\nb\n7\ncat\n");
    TU_OK(io_manifest_classes_read("data/cls.txt", &c, &e));
    assert_int_equal(c.n, 4);
    write_text("data/c.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\tcat\nimg/b.png\tt\t7\n"
                             "img/c.png\tt\tdog\n");
    io_manifest m;
    TU_OK(io_manifest_read_classes("data/c.tsv", NULL, &c, &m, &e));
    assert_int_equal(m.n_classes, 4);
    const char *want[] = {"dog", "b", "7", "cat"};
    for (int k = 0; k < 4; k++) assert_string_equal(m.class_names[k], want[k]);
    assert_int_equal(m.labels[0], 3);
    assert_int_equal(m.labels[1], 2);
    assert_int_equal(m.labels[2], 0);
    io_manifest_free(&m);
    /* JSONL integers are ids into the file's list, strings are names */
    write_text("data/c.jsonl", "{\"image\":\"img/a.png\",\"text\":\"t\",\"label\":3}\n");
    TU_OK(io_manifest_read_classes("data/c.jsonl", NULL, &c, &m, &e));
    assert_int_equal(m.labels[0], 3);
    io_manifest_free(&m);
    write_text("data/c4.jsonl", "{\"image\":\"img/a.png\",\"text\":\"t\",\"label\":4}\n");
    assert_int_equal(io_manifest_read_classes("data/c4.jsonl", NULL, &c, &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "data/c4.jsonl:1: column label: class id 4, but the classes "
                                  "file data/cls.txt has 4 classes");
    /* a name in the file and a label match in any spelling: "cat" and " cat", "Café" decomposed
     * in the file and composed in the manifest */
    write_text("data/cls2.txt", " cat\nCafe\xCC\x81\n");
    io_manifest_classes c2;
    TU_OK(io_manifest_classes_read("data/cls2.txt", &c2, &e));
    write_text("data/c2.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\tCaf\xC3\xA9\nimg/b.png\tt\tcat\n");
    TU_OK(io_manifest_read_classes("data/c2.tsv", NULL, &c2, &m, &e));
    assert_string_equal(m.class_names[0], "cat");
    assert_string_equal(m.class_names[1], "Caf\xC3\xA9");
    assert_int_equal(m.labels[0], 1);
    assert_int_equal(m.labels[1], 0);
    io_manifest_free(&m);
    io_manifest_classes_free(&c2);
    /* a label the file does not have: the manifest's line and the label */
    write_text("data/c.tsv", "image_path\ttext\tlabel\nimg/a.png\tt\tcat\n\nimg/b.png\tt\tcow\n");
    assert_int_equal(io_manifest_read_classes("data/c.tsv", NULL, &c, &m, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "data/c.tsv:4: column label: 'cow' is not a class of data/cls.txt");
    assert_null(m.labels);
    io_manifest_classes_free(&c);

    /* bad classes files: file:line and the reason, nothing kept */
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"a\nb\na\n", "data/bad.txt:3: class 'a' is already on line 1"},
        {"Caf\xC3\xA9\nb\nCafe\xCC\x81\n", "data/bad.txt:3: class 'Cafe\xCC\x81' is already on line 1"},
        {"a\n\xE2\x80\x8B\n", "data/bad.txt:2: empty class name"},
        {"a\n\nb\n", "data/bad.txt:2: empty class name"},
        {"a\nb\n\n", "data/bad.txt:3: empty class name"},
        {"a\n \xE3\x80\x80\nb\n", "data/bad.txt:2: empty class name"},
        {"a\nb\xFF\n", "data/bad.txt:2: invalid UTF-8 at byte 1 (0xff)"},
        {"", "data/bad.txt: no class names"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text("data/bad.txt", bad[i].text);
        assert_int_equal(io_manifest_classes_read("data/bad.txt", &c, &e), XD_EFORMAT);
        tu_assert_err(&e, XD_EFORMAT, bad[i].why);
        assert_int_equal(c.n, 0);
        assert_null(c.names);
    }
    assert_int_equal(io_manifest_classes_read("data/absent.txt", &c, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "data/absent.txt");
}

/* Rationale records: input, label, rationale; any script; other keys ignored. */
static void test_rationales(void **state)
{
    (void)state;
    write_text("data/r.jsonl",
               "{\"input\": \"a grey cat\", \"label\": \"cat\", \"rationale\": \"whiskers; meows\", "
               "\"source\": \"x\"}\n"
               "\n"
               "{\"input\": \"\xEA\xB0\x9C\", \"label\": \"dog\", \"rationale\": \"\xE7\x8A\xAC barks\"}\n");
    io_manifest m;
    xd_err e;
    TU_OK(io_manifest_read_rationales("data/r.jsonl", NULL, NULL, 0, &m, &e));
    assert_int_equal(m.n, 2);
    assert_null(m.paths);
    assert_string_equal(m.texts[0], "a grey cat");
    assert_string_equal(m.rationales[0], "whiskers; meows");
    assert_string_equal(m.rationales[1], "\xE7\x8A\xAC barks");
    assert_int_equal(m.labels[1], 1);
    assert_string_equal(m.class_names[1], "dog");
    assert_int_equal(m.skipped, 0);
    io_manifest_free(&m);
}

static void expect_rationale_fail(const char *text, const char *substr)
{
    write_text("data/bad.jsonl", text);
    io_manifest m;
    xd_err e;
    xd_err_clear(&e);
    if (io_manifest_read_rationales("data/bad.jsonl", NULL, NULL, 0, &m, &e) == XD_OK)
        fail_msg("accepted, expected an error mentioning '%s'", substr);
    tu_assert_err(&e, XD_EFORMAT, substr);
    assert_int_equal(m.n, 0);
    assert_null(m.rationales);
}

/* Each bad record is an error naming its line; with skip_bad every one is left out and counted,
 * the first message kept, and the good records read. */
static void test_rationales_bad_records(void **state)
{
    (void)state;
    const char *ok = "{\"input\": \"i\", \"label\": \"a\", \"rationale\": \"r\"}\n";
    const char *bad[] = {
        "{\"input\": \"i\", \"label\": \"a\", \"rationale\": \"r\"\n",
        "{\"input\": \"i\", \"label\": \"a\"}\n",
        "{\"input\": \"i\", \"label\": \"a\", \"rationale\": \" \\t\"}\n",
        "{\"input\": \"i\", \"label\": \"a\", \"rationale\": \"\xC3\x28\"}\n",
        "{\"input\": \"\", \"label\": \"a\", \"rationale\": \"r\"}\n",
        "{\"label\": \"a\", \"rationale\": \"r\"}\n",
        "{\"input\": \"i\", \"label\": \"a\", \"rationale\": 3}\n",
        "{\"input\": \"i\", \"label\": \" \", \"rationale\": \"r\"}\n",
    };
    const char *why[] = {
        "data/bad.jsonl:2: invalid JSON",
        "data/bad.jsonl:2: column rationale: missing key",
        "data/bad.jsonl:2: column rationale: empty rationale",
        "data/bad.jsonl:2: invalid UTF-8 at byte",
        "data/bad.jsonl:2: column input: empty input",
        "data/bad.jsonl:2: column input: missing key",
        "data/bad.jsonl:2: column rationale: must be a string",
        "data/bad.jsonl:2: column label: empty label",
    };
    const size_t n_bad = sizeof bad / sizeof bad[0];
    char buf[4096];
    for (size_t i = 0; i < n_bad; i++) {
        snprintf(buf, sizeof buf, "%s%s%s", ok, bad[i], ok);
        expect_rationale_fail(buf, why[i]);
    }
    /* --skip-bad: all of them left out, in one file */
    size_t at = (size_t)snprintf(buf, sizeof buf, "%s", ok);
    for (size_t i = 0; i < n_bad; i++) at += (size_t)snprintf(buf + at, sizeof buf - at, "%s", bad[i]);
    snprintf(buf + at, sizeof buf - at, "%s", ok);
    write_text("data/skip.jsonl", buf);
    io_manifest m;
    xd_err e;
    TU_OK(io_manifest_read_rationales("data/skip.jsonl", NULL, NULL, 1, &m, &e));
    assert_int_equal(m.n, 2);
    assert_int_equal(m.skipped, n_bad);
    assert_non_null(strstr(m.first_skipped, "data/skip.jsonl:2: invalid JSON"));
    io_manifest_free(&m);
    /* a label the classes file lacks: an error on its line, left out with skip_bad */
    write_text("data/cls-ab.txt", "a\nb\n");
    io_manifest_classes c;
    TU_OK(io_manifest_classes_read("data/cls-ab.txt", &c, &e));
    snprintf(buf, sizeof buf, "%s{\"input\": \"i\", \"label\": \"zebra\", \"rationale\": \"r\"}\n%s", ok,
             ok);
    write_text("data/unknown.jsonl", buf);
    assert_int_equal(io_manifest_read_rationales("data/unknown.jsonl", NULL, &c, 0, &m, &e),
                     XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "data/unknown.jsonl:2: column label: 'zebra' is not a class of");
    xd_err_clear(&e);
    TU_OK(io_manifest_read_rationales("data/unknown.jsonl", NULL, &c, 1, &m, &e));
    assert_int_equal(m.n, 2);
    assert_int_equal(m.skipped, 1);
    assert_int_equal(m.labels[0], 0);
    assert_int_equal(m.labels[1], 0);
    io_manifest_free(&m);
    io_manifest_classes_free(&c);
    /* nothing but bad records is still an error */
    write_text("data/allbad.jsonl", bad[1]);
    xd_err_clear(&e);
    assert_int_equal(io_manifest_read_rationales("data/allbad.jsonl", NULL, NULL, 1, &m, &e),
                     XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "no examples (nothing but bad records)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tsv_names_crlf_reordered_columns),
        cmocka_unit_test(test_tsv_numeric_ids_and_mixed_names),
        cmocka_unit_test(test_labels_and_empty_files),
        cmocka_unit_test(test_tsv_bad_lines),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_jsonl_bad_lines),
        cmocka_unit_test(test_classes_file),
        cmocka_unit_test(test_rationales),
        cmocka_unit_test(test_rationales_bad_records),
    };
    return cmocka_run_group_tests(tests, setup_images, NULL);
}
