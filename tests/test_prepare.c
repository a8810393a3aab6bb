/* modalities/sets: the data-set builders behind `xdistill prepare` for Fashion-MNIST, fashion
 * scenes and rationales, on tiny sources the tests write themselves (fake IDX files, text and
 * rationale records). Checks layouts, labels, file:line errors, no outputs after a failure, and
 * byte-identical files for the same seed. The emoji sets are in test_prepare_emoji.c, manifests
 * in test_prepare_manifest.c. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/idx.h"
#include "io/png.h"
#include "modalities/sets/common.h"
#include "tests/support/dsread.h"

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

    io_dataset *ds = tu_open_ds("fm_out/dataset.xds");
    assert_string_equal(io_dataset_meta(ds, "kind"), "classification");
    assert_string_equal(io_dataset_meta(ds, "name"), "fashion-mnist");
    assert_non_null(strstr(io_dataset_meta(ds, "preparer"), "xdistill "));
    const io_tensor *img = tu_need(ds, "test/image", IO_U8, 4);
    assert_int_equal(img->shape[0], 20);
    assert_int_equal(img->shape[1], 28);
    assert_int_equal(img->shape[3], 1);
    const uint8_t *px = img->data;
    assert_int_equal(px[784 * 2 + 5], 30 + (5 * 7 + 2) % 98); /* item 2, pixel 5 */
    const int32_t *y = tu_need(ds, "test/label", IO_I32, 1)->data;
    const int32_t *id = tu_need(ds, "test/id", IO_I32, 1)->data;
    assert_int_equal(y[7], 0);
    assert_int_equal(id[7], 7);
    const uint8_t *m = tu_need(ds, "train/label_mask", IO_U8, 1)->data;
    assert_int_equal(m[49], 1);
    size_t len;
    const io_strings *cls = tu_need_str(ds, "classes");
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
    tu_assert_nothing_left(".", "fm_bad_out");

    o.source = "no_such_folder";
    s = sets_fashion_mnist(&o, &sum, &e);
    assert_int_equal(s, XD_EIO);
    tu_assert_err(&e, XD_EIO, "no_such_folder/train-images-idx3-ubyte");
    tu_assert_nothing_left(".", "fm_bad_out");
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
    assert_true(tu_exists("sc_out/preview/scene_0.png"));
    assert_true(tu_exists("sc_out/preview/scene_1.png"));
    assert_false(tu_exists("sc_out/preview/scene_2.png"));
    io_image prev;
    TU_OK(io_png_read("sc_out/preview/scene_1.png", NULL, &prev, &e));
    assert_int_equal(prev.w, 2 * 60 * 4);
    assert_int_equal(prev.h, 60 * 4);
    io_image_free(&prev);

    io_dataset *ds = tu_open_ds("sc_out/dataset.xds");
    assert_string_equal(io_dataset_meta(ds, "kind"), "scenes");
    assert_int_equal(tu_need_str(ds, "classes.mask")->n, 11);
    for (int split = 0; split < 2; split++) {
        char nm[64];
        const char *sp = split ? "test" : "train";
        size_t n = split ? 9 : 24, S = 60;
#define SEC(x, t, d) (snprintf(nm, sizeof nm, "%s/%s", sp, x), tu_need(ds, nm, t, d))
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
    tu_write_text("sc_out/notes.txt", "mine");
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
    assert_true(tu_exists("sc_out/notes.txt"));
    tu_assert_nothing_left(".", "sc_out.");

    o2.kmax = 99;
    o2.out = "sc_bad";
    assert_int_equal(sets_fashion_scenes(&o2, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "items 1-99");
    tu_assert_nothing_left(".", "sc_bad");
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
    tu_write_text("rat/r.jsonl", text);
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
    assert_false(tu_exists("rat/out.xds"));
    /* Unicode white space alone (ideographic and no-break spaces) is as blank as "" */
    char spaces[1024];
    snprintf(spaces, sizeof spaces,
             "%s{\"input\":\"x\",\"label\":\"dog\",\"rationale\":\"\\u3000\\u00a0\"}\n", good);
    tu_write_text("rat/r.jsonl", spaces);
    assert_int_equal(sets_rationales(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "rat/r.jsonl:5: column rationale: empty rationale");
    snprintf(spaces, sizeof spaces,
             "%s{\"input\":\" \u2003\\u2028\",\"label\":\"dog\",\"rationale\":\"x\"}\n", good);
    tu_write_text("rat/r.jsonl", spaces);
    assert_int_equal(sets_rationales(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "rat/r.jsonl:5: column input: empty input");
    assert_false(tu_exists("rat/out.xds"));
    tu_write_text("rat/r.jsonl", text);
    o.skip_bad = 1;
    TU_OK(sets_rationales(&o, &sum, &e));
    assert_int_equal(sum.n_skipped, 1);
    assert_non_null(strstr(sum.first_skipped, "rat/r.jsonl:5:"));
    assert_int_equal(sum.n[SETS_TRAIN], 2);
    assert_int_equal(sum.n[SETS_TEST], 2);
    sets_summary_free(&sum);
    io_dataset *ds = tu_open_ds("rat/out.xds");
    const io_tensor *img = tu_need(ds, "train/image", IO_U8, 4);
    assert_int_equal(img->shape[1] * img->shape[2] * img->shape[3], 1);
    const int32_t *id = tu_need(ds, "train/id", IO_I32, 1)->data;
    const int32_t *y = tu_need(ds, "train/label", IO_I32, 1)->data;
    const io_strings *in = tu_need_str(ds, "train/text.en"), *r = tu_need_str(ds, "train/rationale");
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
