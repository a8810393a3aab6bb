/* modalities/sets: the data-set builders behind `xdistill prepare`, on tiny sources the tests
 * write themselves (fake IDX files, a fake emoji package tree, manifests with odd images).
 * Checks layouts, labels, texts, the split-by-emoji rule, file:line errors, no outputs after a
 * failure, and byte-identical files for the same seed. */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/dataset.h"
#include "io/idx.h"
#include "io/jpeg.h"
#include "io/png.h"
#include "modalities/sets/common.h"
#include "modalities/sets/sets.h"
#include "tests/support/runcli.h"

static void write_text(const char *path, const char *s) { tu_write_file(path, s, strlen(s)); }

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* No NAME.tmp-* or NAME itself next to where an output would have gone. */
static void assert_nothing_left(const char *dir_of, const char *name)
{
    DIR *d = opendir(dir_of);
    assert_non_null(d);
    struct dirent *de;
    size_t n = strlen(name);
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, name, n) == 0 && (de->d_name[n] == '\0' || de->d_name[n] == '.'))
            fail_msg("left behind: %s/%s", dir_of, de->d_name);
    closedir(d);
}

static io_dataset *open_ds(const char *path)
{
    io_dataset *ds = NULL;
    xd_err e;
    if (io_dataset_open(path, &ds, &e) != XD_OK) fail_msg("%s", e.msg);
    return ds;
}

static const io_tensor *need(const io_dataset *ds, const char *name, io_dtype t, int ndim)
{
    const io_tensor *x = NULL;
    xd_err e;
    if (io_dataset_require(ds, name, t, ndim, &x, &e) != XD_OK) fail_msg("%s", e.msg);
    return x;
}

static const io_strings *need_str(const io_dataset *ds, const char *name)
{
    const io_strings *s = NULL;
    xd_err e;
    if (io_dataset_require_strings(ds, name, &s, &e) != XD_OK) fail_msg("%s", e.msg);
    return s;
}

// ----------------------------------------------------------------------------------------------
// fake Fashion-MNIST

/* Train items have pixels in 128..255, test items in 30..127, so a scene shows where its items
 * came from. Labels are i % 10 (train) and (i + 3) % 10 (test). */
static void write_fmnist(const char *dir, uint32_t n_train, uint32_t n_test, int bad_label)
{
    mkdir(dir, 0777);
    static const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                   "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int s = 0; s < 2; s++) {
        uint32_t n = s ? n_test : n_train;
        uint8_t *img = malloc((size_t)n * 784), *lab = malloc(n);
        for (uint32_t i = 0; i < n; i++) {
            lab[i] = (uint8_t)((i + (s ? 3 : 0)) % 10);
            for (int p = 0; p < 784; p++)
                img[(size_t)i * 784 + (size_t)p] =
                    (uint8_t)(s ? 30 + (p * 7 + i) % 98 : 128 + (p * 5 + i) % 128);
        }
        if (bad_label && s == 1) lab[n - 1] = 12;
        io_idx a = {.type = IO_IDX_U8, .ndim = 3, .dims = {n, 28, 28}, .count = (size_t)n * 784,
                    .data = img};
        io_idx b = {.type = IO_IDX_U8, .ndim = 1, .dims = {n}, .count = n, .data = lab};
        char p[256];
        xd_err e;
        snprintf(p, sizeof p, "%s/%s", dir, names[2 * s]);
        TU_OK(io_idx_write(p, &a, IO_IDX_GZIP, &e));
        snprintf(p, sizeof p, "%s/%s", dir, names[2 * s + 1]);
        TU_OK(io_idx_write(p, &b, s ? IO_IDX_PLAIN : IO_IDX_GZIP, &e)); /* plain works too */
        if (s) { /* the reader finds NAME without .gz as well */
            char gz[300];
            snprintf(gz, sizeof gz, "%s/%s", dir, names[3]);
            char plain[300];
            snprintf(plain, sizeof plain, "%s/t10k-labels-idx1-ubyte", dir);
            assert_int_equal(rename(gz, plain), 0);
        }
        free(img);
        free(lab);
    }
}

static void test_fashion_mnist(void **state)
{
    (void)state;
    write_fmnist("fm_src", 50, 20, 0);
    sets_fmnist_opts o = {.out = "fm_out", .source = "fm_src", .seed = 1};
    sets_summary sum;
    xd_err e;
    xd_status s = sets_fashion_mnist(&o, &sum, &e);
    if (s) fail_msg("%s", e.msg);
    assert_int_equal(sum.n[0], 50);
    assert_int_equal(sum.n[1], 20);
    assert_int_equal(sum.class_n[3 * 2 + 0], 5); /* class 3: train items 3, 13, ... */
    assert_int_equal(sum.class_n[3 * 2 + 1], 2);
    sets_summary_free(&sum);

    io_dataset *ds = open_ds("fm_out/dataset.xds");
    assert_string_equal(io_dataset_meta(ds, "kind"), "classification");
    assert_string_equal(io_dataset_meta(ds, "name"), "fashion-mnist");
    assert_non_null(strstr(io_dataset_meta(ds, "preparer"), "xdistill "));
    const io_tensor *img = need(ds, "test/image", IO_U8, 4);
    assert_int_equal(img->shape[0], 20);
    assert_int_equal(img->shape[1], 28);
    assert_int_equal(img->shape[3], 1);
    const uint8_t *px = img->data;
    assert_int_equal(px[784 * 2 + 5], 30 + (5 * 7 + 2) % 98); /* item 2, pixel 5 */
    const int32_t *y = need(ds, "test/label", IO_I32, 1)->data;
    const int32_t *id = need(ds, "test/id", IO_I32, 1)->data;
    assert_int_equal(y[7], 0);
    assert_int_equal(id[7], 7);
    const uint8_t *m = need(ds, "train/label_mask", IO_U8, 1)->data;
    assert_int_equal(m[49], 1);
    size_t len;
    const io_strings *cls = need_str(ds, "classes");
    assert_int_equal(cls->n, 10);
    assert_string_equal(io_strings_get(cls, 9, &len), "Ankle boot");
    assert_string_equal(io_strings_get(cls, 0, &len), "T-shirt/top");
    io_dataset_close(ds);
}

static void test_fashion_mnist_errors(void **state)
{
    (void)state;
    write_fmnist("fm_bad", 20, 10, 1);
    sets_fmnist_opts o = {.out = "fm_bad_out", .source = "fm_bad", .seed = 1};
    sets_summary sum;
    xd_err e;
    xd_status s = sets_fashion_mnist(&o, &sum, &e);
    assert_int_equal(s, XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "fm_bad/t10k-labels-idx1-ubyte");
    tu_assert_err(&e, XD_EFORMAT, "label 12 of item 9");
    assert_nothing_left(".", "fm_bad_out");

    o.source = "no_such_folder";
    s = sets_fashion_mnist(&o, &sum, &e);
    assert_int_equal(s, XD_EIO);
    tu_assert_err(&e, XD_EIO, "no_such_folder/train-images-idx3-ubyte");
    assert_nothing_left(".", "fm_bad_out");
}

// ----------------------------------------------------------------------------------------------
// fashion scenes

static void test_fashion_scenes(void **state)
{
    (void)state;
    write_fmnist("sc_src", 40, 15, 0);
    sets_scenes_opts o = sets_scenes_defaults();
    o.out = "sc_out";
    o.source = "sc_src";
    o.canvas = 60;
    o.kmin = 1;
    o.kmax = 3;
    o.n_train = 24;
    o.n_test = 9;
    o.previews = 2;
    sets_summary sum;
    xd_err e;
    xd_status s = sets_fashion_scenes(&o, &sum, &e);
    if (s) fail_msg("%s", e.msg);
    assert_int_equal(sum.n_previews, 2);
    sets_summary_free(&sum);
    assert_true(exists("sc_out/preview/scene_0.png"));
    assert_true(exists("sc_out/preview/scene_1.png"));
    assert_false(exists("sc_out/preview/scene_2.png"));
    io_image prev;
    TU_OK(io_png_read("sc_out/preview/scene_1.png", NULL, &prev, &e));
    assert_int_equal(prev.w, 2 * 60 * 4);
    assert_int_equal(prev.h, 60 * 4);
    io_image_free(&prev);

    io_dataset *ds = open_ds("sc_out/dataset.xds");
    assert_string_equal(io_dataset_meta(ds, "kind"), "scenes");
    assert_int_equal(need_str(ds, "classes.mask")->n, 11);
    for (int split = 0; split < 2; split++) {
        char nm[64];
        const char *sp = split ? "test" : "train";
        size_t n = split ? 9 : 24, S = 60;
#define SEC(x, t, d) (snprintf(nm, sizeof nm, "%s/%s", sp, x), need(ds, nm, t, d))
        const io_tensor *img = SEC("image", IO_U8, 4);
        assert_int_equal(img->shape[0], (int64_t)n);
        assert_int_equal(img->shape[1], 60);
        const uint8_t *im = img->data, *mask = SEC("mask", IO_U8, 3)->data;
        const int32_t *boxes = SEC("boxes", IO_I32, 3)->data, *items = SEC("items", IO_I32, 2)->data;
        const int32_t *label = SEC("label", IO_I32, 1)->data;
        const uint8_t *n_items = SEC("n_items", IO_U8, 1)->data;
        assert_int_equal(SEC("boxes", IO_I32, 3)->shape[1], 3);
#undef SEC
        for (size_t i = 0; i < n; i++) {
            assert_true(n_items[i] >= 1 && n_items[i] <= 3);
            size_t fg[10] = {0};
            for (int k = 0; k < 3; k++) {
                const int32_t *b = boxes + (i * 3 + (size_t)k) * 5;
                if (k >= n_items[i]) {
                    for (int j = 0; j < 5; j++) assert_int_equal(b[j], -1);
                    assert_int_equal(items[i * 3 + (size_t)k], -1);
                    continue;
                }
                int32_t item = items[i * 3 + (size_t)k];
                /* test scenes use test items only: item labels follow the pool's rule */
                assert_true(item >= 0 && item < (split ? 15 : 40));
                assert_int_equal(b[4], (item + (split ? 3 : 0)) % 10);
                assert_int_equal(b[2], 28);
                for (int y = 0; y < 28; y++)
                    for (int x = 0; x < 28; x++) {
                        size_t p = i * S * S + (size_t)(b[1] + y) * S + (size_t)(b[0] + x);
                        int v = split ? 30 + ((y * 28 + x) * 7 + item) % 98
                                      : 128 + ((y * 28 + x) * 5 + item) % 128;
                        assert_int_equal(im[p], v);
                        assert_int_equal(mask[p], v > 25 ? b[4] : 10);
                        if (v > 25) fg[b[4]]++;
                    }
            }
            int best = 0;
            for (int c = 1; c < 10; c++)
                if (fg[c] > fg[best]) best = c;
            assert_int_equal(label[i], best);
        }
    }
    io_dataset_close(ds);

    /* same seed, same bytes; into the existing folder, which keeps a file of the user's */
    write_text("sc_out/notes.txt", "mine");
    sets_scenes_opts o2 = o;
    o2.out = "sc_out2";
    TU_OK(sets_fashion_scenes(&o2, &sum, &e));
    sets_summary_free(&sum);
    assert_true(tu_same_file("sc_out/dataset.xds", "sc_out2/dataset.xds"));
    assert_true(tu_same_file("sc_out/preview/scene_1.png", "sc_out2/preview/scene_1.png"));
    o2.out = "sc_out";
    o2.seed = 2;
    assert_int_equal(sets_fashion_scenes(&o2, &sum, &e), XD_EARG); /* another seed: not silently */
    tu_assert_err(&e, XD_EARG, "sc_out: holds a data set made with seed=1, this run makes seed=2");
    o2.force = 1;
    TU_OK(sets_fashion_scenes(&o2, &sum, &e));
    sets_summary_free(&sum);
    assert_false(tu_same_file("sc_out/dataset.xds", "sc_out2/dataset.xds"));
    assert_true(exists("sc_out/notes.txt"));
    assert_nothing_left(".", "sc_out.");

    o2.kmax = 99;
    o2.out = "sc_bad";
    assert_int_equal(sets_fashion_scenes(&o2, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "items 1-99");
    assert_nothing_left(".", "sc_bad");
}

// ----------------------------------------------------------------------------------------------
// fake emoji packages

#define IMG_DIR "cache/emoji-datasource-google-16.0.0"
#define TXT_DIR "cache/emojibase-data-17.0.0"

/* A uniform 64x64 RGBA image of colour (r, g, b, a). */
static void write_emoji_png(const char *name, int r, int g, int b, int a)
{
    io_image img = {.w = 64, .h = 64, .c = 4};
    img.px = malloc(64 * 64 * 4);
    for (int i = 0; i < 64 * 64; i++) {
        img.px[4 * i] = (uint8_t)r;
        img.px[4 * i + 1] = (uint8_t)g;
        img.px[4 * i + 2] = (uint8_t)b;
        img.px[4 * i + 3] = (uint8_t)a;
    }
    char p[256];
    snprintf(p, sizeof p, IMG_DIR "/img/google/64/%s", name);
    xd_err e;
    TU_OK(io_png_write(p, &img, &e));
    free(img.px);
}

/* Six emoji in four groups (plus a Component that is left out); waving hand has two skin tones,
 * thumbs up one. emoji.json is deliberately not in sort order. */
static const char *emoji_json =
    "[\n"
    " {\"unified\":\"1F44B\",\"image\":\"1f44b.png\",\"category\":\"People & Body\","
    "\"subcategory\":\"hand-fingers-open\",\"sort_order\":10,\"skin_variations\":{"
    "\"1F3FC\":{\"unified\":\"1F44B-1F3FC\",\"image\":\"1f44b-1f3fc.png\"},"
    "\"1F3FB\":{\"unified\":\"1F44B-1F3FB\",\"image\":\"1f44b-1f3fb.png\"}}},\n"
    " {\"unified\":\"1F600\",\"image\":\"1f600.png\",\"category\":\"Smileys & Emotion\","
    "\"subcategory\":\"face-smiling\",\"sort_order\":1},\n"
    " {\"unified\":\"1F3FB\",\"image\":\"1f3fb.png\",\"category\":\"Component\","
    "\"subcategory\":\"skin-tone\",\"sort_order\":50},\n"
    " {\"unified\":\"2764-FE0F\",\"image\":\"2764-fe0f.png\",\"category\":\"Symbols\","
    "\"subcategory\":\"heart\",\"sort_order\":5},\n"
    " {\"unified\":\"1F44D\",\"image\":\"1f44d.png\",\"category\":\"People & Body\","
    "\"subcategory\":\"hand-fingers-closed\",\"sort_order\":11,\"skin_variations\":{"
    "\"1F3FB\":{\"unified\":\"1F44D-1F3FB\",\"image\":\"1f44d-1f3fb.png\"}}},\n"
    " {\"unified\":\"1F603\",\"image\":\"1f603.png\",\"category\":\"Smileys & Emotion\","
    "\"subcategory\":\"face-smiling\",\"sort_order\":2},\n"
    " {\"unified\":\"1F34E\",\"image\":\"1f34e.png\",\"category\":\"Food & Drink\","
    "\"subcategory\":\"food-fruit\",\"sort_order\":20}\n"
    "]\n";

static const char *en_json =
    "[\n"
    " {\"label\":\"grinning face\",\"hexcode\":\"1F600\",\"tags\":[\"face\",\"grin\"]},\n"
    " {\"label\":\"grinning face with big eyes\",\"hexcode\":\"1F603\",\"tags\":[\"mouth\"]},\n"
    " {\"label\":\"waving hand\",\"hexcode\":\"1F44B\",\"tags\":[\"hand\",\"wave\"],\"skins\":["
    "{\"label\":\"waving hand: light skin tone\",\"hexcode\":\"1F44B-1F3FB\"}]},\n"
    " {\"label\":\"thumbs up\",\"hexcode\":\"1F44D\"},\n"
    " {\"label\":\"red heart\",\"hexcode\":\"2764\",\"tags\":[\"heart\"]},\n"
    " {\"label\":\"red apple\",\"hexcode\":\"1F34E\",\"tags\":[\"apple\",\"fruit\"]}\n"
    "]\n";

static const char *ko_json =
    "[\n"
    " {\"label\":\"\xEC\x9B\x83\xEB\x8A\x94 \xEC\x96\xBC\xEA\xB5\xB4\",\"hexcode\":\"1F600\","
    "\"tags\":[\"\xEC\x96\xBC\xEA\xB5\xB4\"]},\n"
    " {\"label\":\"\xEC\x86\x90\",\"hexcode\":\"1f44b\",\"skins\":[{\"label\":\"\xEC\x86\x90: "
    "\xEB\xB0\x9D\xEC\x9D\x80\",\"hexcode\":\"1f44b-1f3fc\",\"tags\":[\"\xED\x94\xBC\xEB\xB6\x80\"]}]}\n"
    "]\n";

static void write_emoji_tree(void)
{
    mkdir("cache", 0777);
    mkdir(IMG_DIR, 0777);
    mkdir(IMG_DIR "/img", 0777);
    mkdir(IMG_DIR "/img/google", 0777);
    mkdir(IMG_DIR "/img/google/64", 0777);
    mkdir(TXT_DIR, 0777);
    mkdir(TXT_DIR "/en", 0777);
    mkdir(TXT_DIR "/ko", 0777);
    mkdir(TXT_DIR "/meta", 0777); /* no data.json: not a language */
    write_text(IMG_DIR "/emoji.json", emoji_json);
    write_text(TXT_DIR "/en/data.json", en_json);
    write_text(TXT_DIR "/ko/data.json", ko_json);
    write_emoji_png("1f44b.png", 200, 0, 0, 255);
    write_emoji_png("1f44b-1f3fb.png", 210, 0, 0, 255);
    write_emoji_png("1f44b-1f3fc.png", 220, 0, 0, 255);
    write_emoji_png("1f600.png", 0, 100, 0, 128);
    write_emoji_png("1f3fb.png", 1, 1, 1, 255);
    write_emoji_png("2764-fe0f.png", 0, 0, 60, 255);
    write_emoji_png("1f44d.png", 10, 10, 10, 255);
    write_emoji_png("1f44d-1f3fb.png", 20, 20, 20, 255);
    write_emoji_png("1f603.png", 30, 30, 30, 0);
    write_emoji_png("1f34e.png", 40, 40, 40, 255);
}

static int emoji_setup(void **state)
{
    (void)state;
    write_emoji_tree();
    return 0;
}

/* Index of the example with code `code` in a split's code table, or -1. */
static long find_code(const io_strings *codes, const char *code)
{
    size_t len;
    for (size_t i = 0; i < codes->n; i++)
        if (strcmp(io_strings_get(codes, i, &len), code) == 0) return (long)i;
    return -1;
}

static void test_emoji_key_and_text(void **state)
{
    (void)state;
    char k[64];
    assert_int_equal(sets_emoji_key("2764-fe0f", k, sizeof k), 0);
    assert_string_equal(k, "2764");
    assert_int_equal(sets_emoji_key("1f469-200D-2764-FE0F-200d-1F468", k, sizeof k), 0);
    assert_string_equal(k, "1F469-200D-2764-200D-1F468");
    assert_int_equal(sets_emoji_key("FE0F", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("12G4", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("1234567", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("1F600--1F3FB", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("", k, sizeof k), -1);
    const char *tags[] = {"face", "grin"};
    char *t = sets_emoji_text("grinning face", tags, 2);
    assert_string_equal(t, "grinning face; face, grin");
    free(t);
    t = sets_emoji_text("thumbs up", NULL, 0);
    assert_string_equal(t, "thumbs up");
    free(t);
    t = sets_emoji_text("", tags, 2);
    assert_string_equal(t, "");
    free(t);
}

static void test_emoji_set(void **state)
{
    (void)state;
    sets_emoji_opts o = sets_emoji_defaults();
    o.out = "emo_out";
    o.cache = "cache";
    o.size = 8;
    o.test_fraction = 0.5;
    sets_summary sum;
    xd_err e;
    xd_status s = sets_emoji(&o, &sum, &e);
    if (s) fail_msg("%s", e.msg);
    assert_int_equal(sum.n[0] + sum.n[1], 9); /* 6 emoji + 3 skin variants, no Component */
    assert_int_equal(sum.n_classes, 4);
    /* groups ordered by their first sort_order */
    assert_string_equal(sum.classes[0], "Smileys & Emotion");
    assert_string_equal(sum.classes[1], "Symbols");
    assert_string_equal(sum.classes[2], "People & Body");
    assert_string_equal(sum.classes[3], "Food & Drink");
    assert_int_equal(sum.n_langs, 2);
    assert_string_equal(sum.langs[0], "en");
    assert_string_equal(sum.langs[1], "ko");
    /* ko lacks 1F603, 2764, 1F44D (+ skin), 1F34E: 5 of 9 missing */
    assert_int_equal(sum.missing[1 * 2 + 0] + sum.missing[1 * 2 + 1], 5);
    assert_int_equal(sum.missing[0 * 2 + 0] + sum.missing[0 * 2 + 1], 0);
    assert_int_equal(sum.n_extra_classes, 5);
    sets_summary_free(&sum);

    io_dataset *ds = open_ds("emo_out/dataset.xds");
    assert_string_equal(io_dataset_meta(ds, "kind"), "paired");
    assert_string_equal(io_dataset_meta(ds, "languages"), "en,ko");
    assert_string_equal(io_dataset_meta(ds, "size"), "8");
    int found[16] = {0};
    size_t len, n_test_emoji = 0;
    int in_split[2000];
    memset(in_split, -1, sizeof in_split);
    for (int split = 0; split < 2; split++) {
        const char *sp = split ? "test" : "train";
        char nm[64];
        snprintf(nm, sizeof nm, "%s/code", sp);
        const io_strings *codes = need_str(ds, nm);
        snprintf(nm, sizeof nm, "%s/text.en", sp);
        const io_strings *en = need_str(ds, nm);
        snprintf(nm, sizeof nm, "%s/text.ko", sp);
        const io_strings *ko = need_str(ds, nm);
        snprintf(nm, sizeof nm, "%s/image", sp);
        const io_tensor *img = need(ds, nm, IO_U8, 4);
        snprintf(nm, sizeof nm, "%s/id", sp);
        const int32_t *id = need(ds, nm, IO_I32, 1)->data;
        snprintf(nm, sizeof nm, "%s/label", sp);
        const int32_t *y = need(ds, nm, IO_I32, 1)->data;
        snprintf(nm, sizeof nm, "%s/label.subgroup", sp);
        const int32_t *sub = need(ds, nm, IO_I32, 1)->data;
        assert_int_equal(img->shape[1], 8);
        assert_int_equal(img->shape[2], 8);
        assert_int_equal(img->shape[3], 3);
        assert_int_equal((size_t)img->shape[0], codes->n);
        const uint8_t *px = img->data;
        for (size_t i = 0; i < codes->n; i++) {
            /* the split-by-emoji rule: an emoji id lives in one split only */
            if (in_split[id[i]] == -1) {
                in_split[id[i]] = split;
                if (split) n_test_emoji++;
            }
            assert_int_equal(in_split[id[i]], split);
        }
        long k;
        if ((k = find_code(codes, "1F600")) >= 0) {
            found[0]++;
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "grinning face; face, grin");
            assert_string_equal(io_strings_get(ko, (size_t)k, &len),
                                "\xEC\x9B\x83\xEB\x8A\x94 \xEC\x96\xBC\xEA\xB5\xB4; "
                                "\xEC\x96\xBC\xEA\xB5\xB4");
            assert_int_equal(y[k], 0);
            assert_int_equal(id[k], 1);
            /* (0,100,0) at alpha 128 over white: (128 c + 127 * 255) / 255, rounded */
            const uint8_t *p = px + (size_t)k * 192;
            assert_int_equal(p[0], 127);
            assert_int_equal(p[1], 177);
            assert_int_equal(p[2], 127);
            assert_int_equal(p[191], 127);
        }
        if ((k = find_code(codes, "1F603")) >= 0) {
            found[1]++;
            assert_string_equal(io_strings_get(ko, (size_t)k, &len), "");
            assert_int_equal(px[(size_t)k * 192 + 100], 255); /* fully transparent: white */
        }
        if ((k = find_code(codes, "1F44B-1F3FB")) >= 0) {
            found[2]++;
            /* the skin's own label, with the base's tags */
            assert_string_equal(io_strings_get(en, (size_t)k, &len),
                                "waving hand: light skin tone; hand, wave");
            assert_string_equal(io_strings_get(ko, (size_t)k, &len), "\xEC\x86\x90");
            assert_int_equal(y[k], 2);
            assert_int_equal(id[k], 0);
            assert_int_equal(px[(size_t)k * 192], 210);
        }
        if ((k = find_code(codes, "1F44B-1F3FC")) >= 0) {
            found[3]++;
            /* no en skin entry: the base emoji's text; ko has the skin with its own tags */
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "waving hand; hand, wave");
            assert_string_equal(io_strings_get(ko, (size_t)k, &len),
                                "\xEC\x86\x90: \xEB\xB0\x9D\xEC\x9D\x80; \xED\x94\xBC\xEB\xB6\x80");
            assert_int_equal(px[(size_t)k * 192], 220);
        }
        if ((k = find_code(codes, "2764-FE0F")) >= 0) {
            found[4]++; /* joined with emojibase's 2764 */
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "red heart; heart");
            assert_int_equal(y[k], 1);
        }
        if ((k = find_code(codes, "1F44D")) >= 0) {
            found[5]++;
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "thumbs up");
        }
        if ((k = find_code(codes, "1F34E")) >= 0) {
            found[6]++;
            assert_int_equal(y[k], 3);
            const io_strings *subs = need_str(ds, "classes.subgroup");
            assert_string_equal(io_strings_get(subs, (size_t)sub[k], &len), "food-fruit");
        }
        assert_int_equal(find_code(codes, "1F3FB"), -1); /* Component left out */
    }
    for (int i = 0; i < 7; i++) assert_int_equal(found[i], 1);
    /* stratified at 0.5: 1 of 2 smileys, 1 of 1 symbol, 1 of 2 hands, 1 of 1 food */
    assert_int_equal(n_test_emoji, 4);
    io_dataset_close(ds);

    /* same seed: same bytes (run in the existing folder too) */
    sets_emoji_opts o2 = o;
    o2.out = "emo_out2";
    TU_OK(sets_emoji(&o2, &sum, &e));
    sets_summary_free(&sum);
    assert_true(tu_same_file("emo_out/dataset.xds", "emo_out2/dataset.xds"));
    TU_OK(sets_emoji(&o2, &sum, &e));
    sets_summary_free(&sum);
    assert_true(tu_same_file("emo_out/dataset.xds", "emo_out2/dataset.xds"));

    /* other options never silently replace a data set (the README's 3-language command once
     * overwrote the 28-language set): an error naming the folder and the option, untouched
     * file; --force replaces it */
    o2.langs = "ko";
    assert_int_equal(sets_emoji(&o2, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "emo_out2: holds a data set made with languages=");
    tu_assert_err(&e, XD_EARG, "this run makes languages=ko; give another --out, or --force");
    assert_true(tu_same_file("emo_out/dataset.xds", "emo_out2/dataset.xds"));
    o2.langs = NULL;
    o2.size = 4;
    assert_int_equal(sets_emoji(&o2, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "made with size=8, this run makes size=4");
    o2.size = o.size;
    sets_manifest_opts mo = sets_manifest_defaults();
    write_text("emo_pairs.tsv", "image_path\ttext\tlabel\n");
    mo.manifest = "emo_pairs.tsv";
    mo.out = "emo_out2";
    assert_int_equal(sets_manifest(&mo, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "emo_out2: holds the 'emoji' data set, this run makes 'emo_pairs'");
    o2.force = 1;

    /* other seeds keep every emoji in one split, and do change the split */
    int grinning_in[2] = {0, 0};
    for (uint64_t seed = 2; seed < 12; seed++) {
        o2.seed = seed;
        o2.langs = "ko";
        TU_OK(sets_emoji(&o2, &sum, &e));
        assert_int_equal(sum.n_langs, 1);
        sets_summary_free(&sum);
        ds = open_ds("emo_out2/dataset.xds");
        const io_tensor *a = need(ds, "train/id", IO_I32, 1), *b = need(ds, "test/id", IO_I32, 1);
        const int32_t *ia = a->data, *ib = b->data;
        for (int64_t i = 0; i < a->shape[0]; i++)
            for (int64_t j = 0; j < b->shape[0]; j++) assert_int_not_equal(ia[i], ib[j]);
        for (int64_t j = 0; j < b->shape[0]; j++)
            if (ib[j] == 1) grinning_in[1]++; /* 1F600 is entry 1 of emoji.json */
        for (int64_t i = 0; i < a->shape[0]; i++)
            if (ia[i] == 1) grinning_in[0]++;
        assert_true(b->shape[0] > 0);
        assert_null(io_dataset_find_strings(ds, "train/text.en"));
        io_dataset_close(ds);
    }
    assert_int_equal(grinning_in[0] + grinning_in[1], 10);
    assert_true(grinning_in[0] > 0 && grinning_in[1] > 0);
}

static void test_emoji_errors(void **state)
{
    (void)state;
    sets_emoji_opts o = sets_emoji_defaults();
    o.out = "emo_bad";
    o.cache = "cache";
    sets_summary sum;
    xd_err e;

    o.langs = "en,xx";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no language 'xx'");
    o.langs = "en,en";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "twice");
    o.langs = NULL;

    /* invalid UTF-8 in a language file: file, line and byte */
    write_text(TXT_DIR "/ko/data.json", "[\n {\"label\":\"\xC3\x28\",\"hexcode\":\"1F600\"}\n]\n");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, TXT_DIR "/ko/data.json:2: byte 11");
    /* broken JSON: line and column */
    write_text(TXT_DIR "/ko/data.json", "[\n {\"label\":\"x\",\n \"hexcode\" 1F600}\n]\n");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, TXT_DIR "/ko/data.json:3:");
    /* a tag that is not a string */
    write_text(TXT_DIR "/ko/data.json", "[{\"label\":\"x\",\"hexcode\":\"1F600\",\"tags\":[1]}]");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "tag 0 is not a string");
    write_text(TXT_DIR "/ko/data.json", ko_json);

    /* an image name that leaves the folder */
    write_text(IMG_DIR "/emoji.json",
               "[{\"unified\":\"1F600\",\"image\":\"../x.png\",\"category\":\"A\","
               "\"subcategory\":\"b\"}]");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "not a plain .png file name");
    write_text(IMG_DIR "/emoji.json", emoji_json);

    /* a truncated PNG: the emoji is named */
    size_t n;
    void *png = tu_read_file(IMG_DIR "/img/google/64/1f34e.png", &n);
    tu_write_file(IMG_DIR "/img/google/64/1f34e.png", png, n / 2);
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "emoji 1F34E");
    tu_assert_err(&e, XD_EFORMAT, "1f34e.png");
    tu_write_file(IMG_DIR "/img/google/64/1f34e.png", png, n);
    free(png);
    assert_nothing_left(".", "emo_bad");

    /* nothing in the cache and no way to fetch: we never reach the network in tests */
    o.cache = "empty_cache";
    mkdir("empty_cache", 0777);
    mkdir("empty_cache/" SETS_EMOJI_IMAGES_PKG "-" SETS_EMOJI_IMAGES_VERSION, 0777);
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "emoji.json");
}

// ----------------------------------------------------------------------------------------------
// emoji styles

#define APPLE_DIR "cache/emoji-datasource-apple-16.0.0"

/* emoji_json where apple lacks 1F603 and the 1F44B-1F3FC skin (has_img_apple false), as every
 * package of the family ships it. */
static char *styled_emoji_json(void)
{
    const char *miss[] = {"\"image\":\"1f44b-1f3fc.png\"", "\"image\":\"1f603.png\""}; /* file order */
    const char *add = ",\"has_img_apple\":false";
    size_t cap = strlen(emoji_json) + 2 * strlen(add) + 1, at = 0;
    char *out = malloc(cap);
    const char *r = emoji_json;
    for (int i = 0; i < 2; i++) {
        const char *hit = strstr(r, miss[i]);
        assert_non_null(hit);
        size_t upto = (size_t)(hit - r) + strlen(miss[i]);
        at += (size_t)snprintf(out + at, cap - at, "%.*s%s", (int)upto, r, add);
        r += upto;
    }
    snprintf(out + at, cap - at, "%s", r);
    return out;
}

/* The apple package: the same emoji.json, every image it has in (77, 10 + i, 0). */
static void write_apple_tree(void)
{
    char *json = styled_emoji_json();
    mkdir(APPLE_DIR, 0777);
    mkdir(APPLE_DIR "/img", 0777);
    mkdir(APPLE_DIR "/img/apple", 0777);
    mkdir(APPLE_DIR "/img/apple/64", 0777);
    write_text(APPLE_DIR "/emoji.json", json);
    write_text(IMG_DIR "/emoji.json", json);
    free(json);
    const char *have[] = {"1f44b.png", "1f44b-1f3fb.png", "1f600.png", "1f3fb.png",
                          "2764-fe0f.png", "1f44d.png", "1f44d-1f3fb.png", "1f34e.png"};
    io_image img = {.w = 64, .h = 64, .c = 3};
    img.px = malloc(64 * 64 * 3);
    for (int i = 0; i < 8; i++) {
        for (int p = 0; p < 64 * 64; p++) {
            img.px[3 * p] = 77;
            img.px[3 * p + 1] = (uint8_t)(10 + i);
            img.px[3 * p + 2] = 0;
        }
        char path[256];
        snprintf(path, sizeof path, APPLE_DIR "/img/apple/64/%s", have[i]);
        xd_err e;
        TU_OK(io_png_write(path, &img, &e));
    }
    free(img.px);
}

/* One split of a made set, by emoji code point: split, style and first pixel of each example. */
typedef struct {
    const io_strings *code, *en;
    const int32_t *id, *y, *style;
    const uint8_t *px, *mask;
    size_t n;
} style_split;

static style_split read_style_split(const io_dataset *ds, const char *sp)
{
    char nm[64];
    style_split r;
    snprintf(nm, sizeof nm, "%s/code", sp);
    r.code = need_str(ds, nm);
    snprintf(nm, sizeof nm, "%s/text.en", sp);
    r.en = need_str(ds, nm);
    snprintf(nm, sizeof nm, "%s/id", sp);
    r.id = need(ds, nm, IO_I32, 1)->data;
    snprintf(nm, sizeof nm, "%s/label", sp);
    r.y = need(ds, nm, IO_I32, 1)->data;
    snprintf(nm, sizeof nm, "%s/label_mask", sp);
    r.mask = need(ds, nm, IO_U8, 1)->data;
    snprintf(nm, sizeof nm, "%s/label.style", sp);
    const io_tensor *st = io_dataset_find(ds, nm);
    r.style = st ? st->data : NULL;
    snprintf(nm, sizeof nm, "%s/image", sp);
    r.px = need(ds, nm, IO_U8, 4)->data;
    r.n = r.code->n;
    return r;
}

static void test_emoji_styles(void **state)
{
    (void)state;
    write_apple_tree();
    sets_emoji_opts o = sets_emoji_defaults();
    o.cache = "cache";
    o.size = 4;
    o.test_fraction = 0.5;
    o.langs = "en";
    sets_summary sum;
    xd_err e;
    size_t len;

    /* google (the default) and apple alone */
    o.out = "st_google";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 9);
    assert_int_equal(sum.n_no_image, 0);
    sets_summary_free(&sum);
    o.out = "st_apple";
    o.styles = "apple";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 7); /* 9 less the two apple lacks, counted */
    assert_int_equal(sum.n_no_image, 2);
    sets_summary_free(&sum);
    o.out = "st_both";
    o.styles = "google,apple";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 16);
    assert_int_equal(sum.n_styles, 2);
    assert_int_equal(sum.n_unlabelled[0], 0);
    sets_summary_free(&sum);

    io_dataset *g = open_ds("st_google/dataset.xds"), *a = open_ds("st_apple/dataset.xds"),
               *b = open_ds("st_both/dataset.xds");
    assert_string_equal(io_dataset_meta(a, "source.images"), "emoji-datasource-apple@16.0.0");
    assert_string_equal(io_dataset_meta(b, "source.images"),
                        "emoji-datasource-google@16.0.0,emoji-datasource-apple@16.0.0");
    assert_null(io_dataset_find(g, "train/label.style"));
    assert_null(io_dataset_find_strings(a, "classes.style"));
    const io_strings *names = need_str(b, "classes.style");
    assert_int_equal(names->n, 2);
    assert_string_equal(io_strings_get(names, 0, &len), "google");
    assert_string_equal(io_strings_get(names, 1, &len), "apple");
    int split_of[16];
    memset(split_of, -1, sizeof split_of);
    for (int k = 0; k < 2; k++) {
        style_split sg = read_style_split(g, sets_split_names[k]);
        for (size_t i = 0; i < sg.n; i++) split_of[sg.id[i]] = k;
    }
    for (int k = 0; k < 2; k++) {
        style_split sg = read_style_split(g, sets_split_names[k]);
        style_split sa = read_style_split(a, sets_split_names[k]);
        style_split sb = read_style_split(b, sets_split_names[k]);
        /* --style apple: apple's pictures only, none of the two it lacks */
        for (size_t i = 0; i < sa.n; i++) {
            assert_int_equal(sa.px[i * 48], 77);
            assert_int_equal(split_of[sa.id[i]], k); /* the same split by emoji */
        }
        assert_int_equal(find_code(sa.code, "1F603"), -1);
        assert_int_equal(find_code(sa.code, "1F44B-1F3FC"), -1);
        /* --styles google,apple: each (emoji, style) once, the same texts and labels */
        assert_non_null(sb.style);
        size_t per_style[2] = {0, 0};
        for (size_t i = 0; i < sb.n; i++) {
            const char *code = io_strings_get(sb.code, i, &len);
            assert_int_equal(split_of[sb.id[i]], k);
            assert_true(sb.style[i] == 0 || sb.style[i] == 1);
            per_style[sb.style[i]]++;
            style_split *one = sb.style[i] ? &sa : &sg;
            long j = find_code(one->code, code);
            assert_true(j >= 0);
            assert_string_equal(io_strings_get(sb.en, i, &len),
                                io_strings_get(one->en, (size_t)j, &len));
            assert_int_equal(sb.y[i], one->y[j]);
            assert_memory_equal(sb.px + i * 48, one->px + (size_t)j * 48, 48);
            for (size_t i2 = 0; i2 < i; i2++)
                if (strcmp(io_strings_get(sb.code, i2, &len), code) == 0)
                    assert_int_not_equal(sb.style[i2], sb.style[i]);
        }
        assert_int_equal(per_style[0], sg.n);
        assert_int_equal(per_style[1], sa.n);
    }
    io_dataset_close(g);
    io_dataset_close(a);
    io_dataset_close(b);

    /* --split-from: another seed and two styles keep google's split, emoji by emoji */
    o.out = "st_from";
    o.seed = 9;
    o.split_from = "st_google/dataset.xds";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 16);
    sets_summary_free(&sum);
    b = open_ds("st_from/dataset.xds");
    assert_string_equal(io_dataset_meta(b, "split_from"), "st_google/dataset.xds");
    for (int k = 0; k < 2; k++) {
        style_split sb = read_style_split(b, sets_split_names[k]);
        for (size_t i = 0; i < sb.n; i++) assert_int_equal(split_of[sb.id[i]], k);
    }
    io_dataset_close(b);
    o.seed = sets_emoji_defaults().seed;
    o.split_from = NULL;

    /* labels of google only: apple's training examples lose theirs, the test keeps every one */
    o.out = "st_lab";
    o.labelled_styles = "google";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n_unlabelled[1], 0);
    size_t n_unlab = sum.n_unlabelled[0];
    sets_summary_free(&sum);
    b = open_ds("st_lab/dataset.xds");
    assert_string_equal(io_dataset_meta(b, "labelled_styles"), "google");
    for (int k = 0; k < 2; k++) {
        style_split sb = read_style_split(b, sets_split_names[k]);
        size_t n_apple = 0;
        for (size_t i = 0; i < sb.n; i++) {
            assert_int_equal(sb.mask[i], k == 1 || sb.style[i] == 0);
            n_apple += sb.style[i] == 1;
        }
        if (k == 0) assert_int_equal(n_unlab, n_apple);
    }
    io_dataset_close(b);
    /* other styles never silently replace a data set */
    o.labelled_styles = NULL;
    o.out = "st_apple";
    o.styles = NULL;
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "made with source.images=emoji-datasource-apple@16.0.0");

    /* unknown, repeated and unmade styles: clear errors, nothing written, nothing fetched */
    o.out = "st_bad";
    o.styles = "google,comic";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "unknown emoji style 'comic' (known: google, apple, facebook, "
                               "twitter)");
    assert_int_equal(sets_emoji_fetch("st_no_cache", "comic", NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "unknown emoji style 'comic'");
    assert_false(exists("st_no_cache"));
    o.styles = "apple,apple";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "emoji style 'apple' is asked for twice");
    o.styles = "google";
    o.labelled_styles = "apple";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "labelled style 'apple' is not one of the styles made");
    /* a has_img flag that is not a boolean names the entry */
    o.labelled_styles = NULL;
    write_text(IMG_DIR "/emoji.json",
               "[{\"unified\":\"1F600\",\"image\":\"1f600.png\",\"category\":\"A\","
               "\"subcategory\":\"b\",\"has_img_google\":1}]");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "'has_img_google' must be true or false");
    assert_nothing_left(".", "st_bad");
}

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
    write_text("mf/img/bad.png", "this is not an image");
    write_text("mf/img/bad2.png", "neither is this");
    return 0;
}

static void test_manifest_good(void **state)
{
    (void)state;
    write_text("mf/pairs.tsv",
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
    io_dataset *ds = open_ds("mf_out/pairs.xds");
    assert_string_equal(io_dataset_meta(ds, "name"), "pairs");
    const io_tensor *img = need(ds, "train/image", IO_U8, 4);
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
    const io_strings *tx = need_str(ds, "train/text.mixed");
    assert_string_equal(io_strings_get(tx, 1, &len), "\xEA\xB3\xA0\xEC\x96\x91\xEC\x9D\xB4 cat");
    const int32_t *y = need(ds, "train/label", IO_I32, 1)->data;
    assert_int_equal(y[0], 1);
    assert_int_equal(y[1], 0);
    assert_int_equal(y[2], 1);
    assert_string_equal(io_strings_get(need_str(ds, "languages"), 0, &len), "mixed");
    io_dataset_close(ds);

    /* an existing folder as --out gets dataset.xds; JSONL works the same way */
    mkdir("mf_dir", 0777);
    write_text("mf/pairs.jsonl",
               "{\"image\":\"img/wide.png\",\"text\":\"flag\",\"label\":1}\n"
               "{\"image\":\"img/tiny.png\",\"text\":\"dot\",\"label\":0}\n");
    o.manifest = "mf/pairs.jsonl";
    o.out = "mf_dir";
    o.test_fraction = 1.0;
    TU_OK(sets_manifest(&o, &sum, &e));
    assert_int_equal(sum.n[1], 2);
    sets_summary_free(&sum);
    assert_true(exists("mf_dir/dataset.xds"));
}

static void expect_manifest_error(const char *text, const char *ext, const char *where,
                                  const char *why)
{
    char path[64];
    snprintf(path, sizeof path, "mf/bad.%s", ext);
    write_text(path, text);
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = path;
    o.out = "mf_bad_out.xds";
    sets_summary sum;
    xd_err e;
    xd_status s = sets_manifest(&o, &sum, &e);
    if (s == XD_OK) fail_msg("%s was accepted, expected '%s'", path, why);
    tu_assert_err(&e, s, where);
    tu_assert_err(&e, s, why);
    assert_false(exists("mf_bad_out.xds"));
    assert_nothing_left(".", "mf_bad_out");
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
    /* undecodable images: the lowest line wins, whatever thread saw it first */
    expect_manifest_error("\r\nimage_path\ttext\tlabel\r\nimg/wide.png\ta\tx\r\n\r\n"
                          "img/bad.png\tb\ty\r\nimg/wide.png\tc\tx\r\nimg/bad2.png\td\ty\r\n",
                          "tsv", "mf/bad.tsv:5: column image_path", "not a PNG or JPEG");
    expect_manifest_error("{\"image\":\"img/tall.jpg\",\"text\":\"a\",\"label\":\"x\"}\n\n\n"
                          "{\"image\":\"img/bad2.png\",\"text\":\"a\",\"label\":\"x\"}\n",
                          "jsonl", "mf/bad.jsonl:4: column image", "bad2.png");
    /* nothing to prepare, or nothing left to test on: errors, not an empty set or split */
    expect_manifest_error("image_path\ttext\tlabel\n", "tsv", "mf/bad.tsv", "no examples");
    expect_manifest_error("image_path\ttext\tlabel\nimg/wide.png\ta\tx\nimg/tall.jpg\tb\ty\n"
                          "img/tiny.png\tc\tx\nimg/wide.png\td\ty\n", "tsv", "mf/bad.tsv",
                          "4 examples in 2 classes give no test example at test fraction 0.2");

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
    io_dataset *ds = open_ds(path);
    char name[32];
    snprintf(name, sizeof name, "%s/id", split);
    const io_tensor *t = need(ds, name, IO_I32, 1);
    const int32_t *id = t->data;
    for (int64_t i = 0; i < t->shape[0]; i++) {
        assert_true(id[i] >= 0 && (size_t)id[i] < n);
        in[id[i]] = 1;
    }
    io_dataset_close(ds);
}

/* A manifest of n rows over the three images, labels x and y alternating. */
static void write_rows(const char *path, int n)
{
    static const char *const img[] = {"img/wide.png", "img/tall.jpg", "img/tiny.png"};
    char text[4096] = "image_path\ttext\tlabel\n";
    for (int i = 0; i < n; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "%s\trow %d\t%s\n", img[i % 3],
                 i, i % 2 ? "y" : "x");
    write_text(path, text);
}

/* --classes: the file's names and order, a class without examples kept; labels checked. */
static void test_manifest_classes(void **state)
{
    (void)state;
    write_rows("mf/rows.tsv", 6);
    write_text("mf/classes.txt", "y\nz\nx\n");
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
    io_dataset *ds = open_ds("mf_cls.xds");
    size_t len;
    const io_strings *cls = need_str(ds, "classes");
    assert_int_equal(cls->n, 3);
    assert_string_equal(io_strings_get(cls, 2, &len), "x");
    assert_string_equal(io_dataset_meta(ds, "classes_file"), "mf/classes.txt");
    io_dataset_close(ds);

    /* a label the file lacks, or a bad classes file: the line, nothing written */
    write_text("mf/classes.txt", "y\nz\n");
    o.out = "mf_cls_bad.xds";
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "mf/rows.tsv:2: column label: 'x' is not a class of "
                                  "mf/classes.txt");
    write_text("mf/classes.txt", "y\nx\ny\n");
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "mf/classes.txt:3: class 'y' is already on line 1");
    assert_false(exists("mf_cls_bad.xds"));
}

/* --split-from: the same examples made another way get exactly the other set's split. */
static void test_manifest_split_from(void **state)
{
    (void)state;
    enum { N = 12 };
    write_rows("mf/rows.tsv", N);
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = "mf/rows.tsv";
    o.out = "mf_a.xds";
    o.size = 6;
    o.test_fraction = 0.5;
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
    io_dataset *da = open_ds("mf_a.xds"), *dc = open_ds("mf_c.xds");
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s/id", sets_split_names[k]);
        const io_tensor *ia = need(da, name, IO_I32, 1), *ic = need(dc, name, IO_I32, 1);
        assert_int_equal(ia->shape[0], ic->shape[0]);
        assert_memory_equal(ia->data, ic->data, (size_t)ia->shape[0] * sizeof(int32_t));
    }
    io_dataset_close(da);
    io_dataset_close(dc);
    io_dataset *ds = open_ds("mf_c.xds");
    assert_string_equal(io_dataset_meta(ds, "split_from"), "mf_a.xds");
    /* the rows moved with their texts and images: row i's text is "row i" */
    const io_tensor *id = need(ds, "test/id", IO_I32, 1);
    const io_strings *tx = need_str(ds, "test/text.und");
    const uint8_t *px = need(ds, "test/image", IO_U8, 4)->data;
    for (int64_t j = 0; j < id->shape[0]; j++) {
        int32_t r = ((const int32_t *)id->data)[j];
        char want[32];
        snprintf(want, sizeof want, "row %d", r);
        assert_string_equal(io_strings_get(tx, (size_t)j, NULL), want);
        if (r % 3 == 2) assert_int_equal(px[j * 4 * 4 * 3], 255); /* tiny.png: white */
    }
    io_dataset_close(ds);

    /* rows A does not have: their count and the first ids, nothing written */
    write_rows("mf/rows.tsv", N + 2);
    o.out = "mf_d.xds";
    assert_int_equal(sets_manifest(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "--split-from mf_a.xds: 2 of this set's 14 examples are not in it "
                               "(id 12, id 13)");
    assert_false(exists("mf_d.xds"));

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
    assert_false(exists("mf_d.xds"));
}

/* The options as a user gives them: the summary, one line on failure, an option of another set. */
static void test_manifest_cli(void **state)
{
    (void)state;
    write_rows("mf/rows.tsv", 8);
    write_text("mf/classes.txt", "y\nz\nx\n");
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
    assert_false(exists("cli_c.xds"));
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

/* prepare rationales: the inputs as text.LANG, the rationales as S/rationale (split with their
 * examples), 1x1 blank images; bad records stop it (nothing written) or, with skip_bad, are
 * counted. */
static void test_rationales(void **state)
{
    (void)state;
    mkdir("rat", 0777);
    const char *good = "{\"input\":\"purring\",\"label\":\"cat\",\"rationale\":\"cats purr\"}\n"
                       "{\"input\":\"woof\",\"label\":\"dog\",\"rationale\":\"dogs bark\"}\n"
                       "{\"input\":\"meow\",\"label\":\"cat\",\"rationale\":\"cats meow\"}\n"
                       "{\"input\":\"growl\",\"label\":\"dog\",\"rationale\":\"dogs growl\"}\n";
    char text[1024];
    snprintf(text, sizeof text, "%s{\"input\":\"x\",\"label\":\"dog\",\"rationale\":\"\"}\n", good);
    write_text("rat/r.jsonl", text);
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = "rat/r.jsonl";
    o.out = "rat/out.xds";
    o.test_fraction = 0.5;
    o.lang = "en";
    sets_summary sum;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(sets_rationales(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "rat/r.jsonl:5: column rationale: empty rationale");
    assert_false(exists("rat/out.xds"));
    o.skip_bad = 1;
    TU_OK(sets_rationales(&o, &sum, &e));
    assert_int_equal(sum.n_skipped, 1);
    assert_non_null(strstr(sum.first_skipped, "rat/r.jsonl:5:"));
    assert_int_equal(sum.n[SETS_TRAIN], 2);
    assert_int_equal(sum.n[SETS_TEST], 2);
    sets_summary_free(&sum);
    io_dataset *ds = open_ds("rat/out.xds");
    const io_tensor *img = need(ds, "train/image", IO_U8, 4);
    assert_int_equal(img->shape[1] * img->shape[2] * img->shape[3], 1);
    const int32_t *id = need(ds, "train/id", IO_I32, 1)->data;
    const int32_t *y = need(ds, "train/label", IO_I32, 1)->data;
    const io_strings *in = need_str(ds, "train/text.en"), *r = need_str(ds, "train/rationale");
    const char *rows[][2] = {{"purring", "cats purr"}, {"woof", "dogs bark"},
                             {"meow", "cats meow"}, {"growl", "dogs growl"}};
    size_t len;
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(io_strings_get(in, i, &len), rows[id[i]][0]);
        assert_string_equal(io_strings_get(r, i, &len), rows[id[i]][1]);
        assert_int_equal(y[i], id[i] % 2);
    }
    assert_non_null(io_dataset_find_strings(ds, "test/rationale"));
    io_dataset_close(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_rationales),
        cmocka_unit_test(test_fashion_mnist_errors),
        cmocka_unit_test(test_fashion_scenes),
        cmocka_unit_test(test_emoji_key_and_text),
        cmocka_unit_test_setup(test_emoji_set, emoji_setup),
        cmocka_unit_test_setup(test_emoji_errors, emoji_setup),
        cmocka_unit_test_setup(test_emoji_styles, emoji_setup),
        cmocka_unit_test_setup(test_manifest_good, manifest_setup),
        cmocka_unit_test_setup(test_manifest_errors, manifest_setup),
        cmocka_unit_test_setup(test_manifest_classes, manifest_setup),
        cmocka_unit_test_setup(test_manifest_split_from, manifest_setup),
        cmocka_unit_test(test_split_from_codes),
        cmocka_unit_test_setup(test_manifest_cli, manifest_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
