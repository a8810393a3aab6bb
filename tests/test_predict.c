/* predict: `xdistill predict` (and so the inference API under it) on models this test trains on
 * the tiny data set of tests/support/tinyset.h:
 *   - on test images saved as PNG files, the top-K classes and probabilities of every image are
 *     those of eval's own path (the feed of the data set, the model's forward pass, softmax), the
 *     labels the data set's class names, and the top-1 the prediction and confidence of
 *     scores_predict;
 *   - a text model reads lines of standard input, as eval's text feed reads the data set;
 *   - a checkpoint without stored class names or image size (earlier versions) gives the same
 *     probabilities with class numbers as labels;
 *   - a segmentation model writes each image's mask: the argmax class of every position of its
 *     forward pass; two images of the same file name cannot both have theirs;
 *   - bad inputs: an image that does not decode among good ones (reported, skipped, exit 3;
 *     --strict: exit 1), a file that is not an xdistill checkpoint, a checkpoint of a later
 *     version, a text model given images: one line naming the file;
 *   - the exported ONNX files of the image and text students give predict's probabilities in ONNX
 *     Runtime (onnx.checker accepting them);
 *   - `make install` into a temporary PREFIX: examples/classify.c, built with pkg-config against
 *     it, gives what predict gives; the man page has a section for every command; `make
 *     uninstall` leaves no file behind. */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "distill/scores.h"
#include "io/dataset.h"
#include "include/xdistill/xdistill.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "tests/support/onnxrun.h"
#include "tests/support/predictfix.h"
#include "tests/support/trainrun.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"

#define N_IMAGES PF_IMAGES

static int setup(void **state)
{
    (void)state;
    pf_setup();
    return 0;
}

/* eval's probabilities of the first n examples of the test split's view: the data set's feed,
 * with the checkpoint's own preprocessing, the forward pass and a softmax in double.
 * p (n, K); *K the classes. Also checks scores_predict's top-1 against them. save_input (may be
 * NULL) receives the model's input, the feed's floats or token ids. */
static double *eval_probs(const char *ckpt, const char *view, int n, int *K, const char *save_input)
{
    xd_err e;
    nn_model m;
    TU_OK(ckpt_load(ckpt, 64, &m, &e));
    char *aug, *text;
    TU_OK(ckpt_preprocessing(ckpt, &aug, &text, &e));
    io_dataset *ds;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    feed f;
    TU_OK(feed_open(&f, ds, "test", view, &m, aug, text, &e));
    void *input = xd_xmalloc_aligned(feed_example_bytes(&f) * 64);
    uint32_t idx[64];
    for (int i = 0; i < n; i++) idx[i] = (uint32_t)i;
    TU_OK(feed_fill(&f, idx, n, 0, 0, 0, input, &e));
    if (save_input) tu_write_file(save_input, input, feed_example_bytes(&f) * (size_t)n);
    const int head = nn_model_default_head(&m);
    *K = (int)nn_model_node(&m, head)->act_n;
    nn_model_forward(&m, input, n, NULL);
    const float *out = nn_model_out(&m, head);
    double *p = xd_xmalloc(sizeof(double) * (size_t)n * (size_t)*K);
    for (int i = 0; i < n; i++) {
        double mx = out[i * *K], z = 0.0;
        for (int k = 1; k < *K; k++) mx = fmax(mx, out[i * *K + k]);
        for (int k = 0; k < *K; k++) z += exp(out[i * *K + k] - mx);
        for (int k = 0; k < *K; k++) p[i * *K + k] = exp(out[i * *K + k] - mx) / z;
    }
    int32_t *pred = xd_xmalloc(sizeof(int32_t) * f.n);
    float *conf = xd_xmalloc(sizeof(float) * f.n);
    TU_OK(scores_predict(&m, head, &f, 0, input, pred, conf, &e));
    for (int i = 0; i < n; i++)
        if (fabs(conf[i] - p[i * *K + pred[i]]) > 1e-5)
            fail_msg("example %d: scores_predict's confidence %g, the softmax %g", i, conf[i],
                     p[i * *K + pred[i]]);
    free(pred);
    free(conf);
    free(input);
    free(aug);
    free(text);
    feed_close(&f);
    io_dataset_close(ds);
    nn_model_free(&m);
    return p;
}

/* Checks predict's JSON lines (out) against eval's probabilities p (n, K): inputs in order, the
 * top k in order of falling probability, each p within 1e-5, labels names[class] (or the class
 * number when names is NULL). */
static void check_lines(const char *out, const char *const *inputs, const double *p, int n, int K,
                        int k, const char *const *names)
{
    const char *line = out;
    for (int i = 0; i < n; i++) {
        const char *nl = strchr(line, '\n');
        if (!nl) fail_msg("line %d missing in:\n%s", i + 1, out);
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &je);
        if (!j) fail_msg("line %d is not JSON: %s", i + 1, je.text);
        assert_string_equal(json_string_value(json_object_get(j, "input")), inputs[i]);
        json_t *top = json_object_get(j, "top");
        assert_int_equal(json_array_size(top), k);
        double last = 2.0;
        for (int r = 0; r < k; r++) {
            json_t *o = json_array_get(top, (size_t)r);
            int c = (int)json_integer_value(json_object_get(o, "class"));
            double pr = json_real_value(json_object_get(o, "p"));
            assert_true(c >= 0 && c < K);
            if (fabs(pr - p[i * K + c]) > 1e-5)
                fail_msg("input %s rank %d class %d: p %g, eval %g", inputs[i], r, c, pr, p[i * K + c]);
            /* falling order, and no class left out ranks above the last one kept */
            assert_true(pr <= last);
            last = pr;
            char num[16];
            snprintf(num, sizeof num, "%d", c);
            assert_string_equal(json_string_value(json_object_get(o, "label")),
                                names ? names[c] : num);
        }
        for (int c = 0; c < K; c++) {
            int listed = 0;
            for (int r = 0; r < k; r++)
                listed |= json_integer_value(json_object_get(json_array_get(top, (size_t)r),
                                                             "class")) == c;
            if (!listed && p[i * K + c] > last + 1e-6)
                fail_msg("input %s: class %d (p %g) is left out of the top %d", inputs[i], c,
                         p[i * K + c], k);
        }
        json_decref(j);
        line = nl + 1;
    }
    assert_string_equal(line, "");
}

static const char *const class_names[TINY_CLASSES] = {"top-left", "top-right", "bottom-left",
                                                      "bottom-right"};

static void test_images_match_eval(void **state)
{
    (void)state;
    int K;
    double *p = eval_probs("img/best.safetensors", "image", N_IMAGES, &K, NULL);
    assert_int_equal(K, TINY_CLASSES);
    char *out, *err;
    /* a batch of 5 makes the last batch a partial one */
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "img0.png",
                                "img1.png", "img2.png", "img3.png", "img4.png", "img5.png",
                                "img6.png", "img7.png", "img8.png", "img9.png", "img10.png",
                                "img11.png", "--top", "3", "--batch", "5", NULL), 0);
    assert_string_equal(err, "");
    const char *inputs[N_IMAGES];
    char names[N_IMAGES][16];
    for (int i = 0; i < N_IMAGES; i++) {
        snprintf(names[i], sizeof names[i], "img%d.png", i);
        inputs[i] = names[i];
    }
    check_lines(out, inputs, p, N_IMAGES, K, 3, class_names);
    free(out);
    free(err);
    /* the same inputs through a manifest */
    FILE *f = fopen("list.tsv", "w");
    fprintf(f, "image_path\ttext\tlabel\n");
    for (int i = 0; i < N_IMAGES; i++) fprintf(f, "img%d.png\tx\t%d\n", i, i % TINY_CLASSES);
    fclose(f);
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "list.tsv",
                                "--top", "9", NULL), 0);
    /* every class when K exceeds their count */
    check_lines(out, inputs, p, N_IMAGES, K, K, class_names);
    free(out);
    free(err);
    /* a manifest whose name ends in upper case */
    assert_int_equal(rename("list.tsv", "LIST.TSV"), 0);
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "LIST.TSV",
                                "--top", "9", NULL), 0);
    check_lines(out, inputs, p, N_IMAGES, K, K, class_names);
    free(out);
    free(err);
    free(p);
}

static void test_text_lines(void **state)
{
    (void)state;
    int K;
    double *p = eval_probs("txt/best.safetensors", "text.en", 6, &K, NULL);
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    const io_strings *texts = io_dataset_find_strings(ds, "test/text.en");
    assert_non_null(texts);
    FILE *f = fopen("lines.txt", "w");
    const char *inputs[6];
    for (int i = 0; i < 6; i++) {
        inputs[i] = io_strings_get(texts, (size_t)i, NULL);
        fprintf(f, "%s\n", inputs[i]);
    }
    fclose(f);
    char *out, *err;
    assert_int_equal(tu_run_cli_in("lines.txt", &out, &err, "predict", "txt/best.safetensors",
                                   "--top", "2", NULL), 0);
    assert_string_equal(err, "");
    check_lines(out, inputs, p, 6, K, 2, class_names);
    free(out);
    free(err);
    io_dataset_close(ds);
    free(p);
}

static void test_old_checkpoint(void **state)
{
    (void)state;
    tu_rewrite_meta("img/best.safetensors", "a.safetensors", "xdistill.classes", NULL);
    tu_rewrite_meta("a.safetensors", "old.safetensors", "xdistill.images", NULL);
    int K;
    double *p = eval_probs("img/best.safetensors", "image", 4, &K, NULL);
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "predict", "old.safetensors", "img0.png", "img1.png",
                                "img2.png", "img3.png", "--top", "2", NULL), 0);
    const char *inputs[4] = {"img0.png", "img1.png", "img2.png", "img3.png"};
    check_lines(out, inputs, p, 4, K, 2, NULL);
    free(out);
    free(err);
    free(p);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    tu_write_file("broken.png", "\x89PNG\r\n\x1a\nnot really", 18);
    char *out, *err;
    /* skipped among good ones: the others are predicted, exit 3 */
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "img0.png",
                                "broken.png", "img1.png", NULL), 3);
    tu_expect_line(err, "broken.png", "skipped");
    assert_non_null(strstr(out, "\"img0.png\""));
    assert_non_null(strstr(out, "\"img1.png\""));
    assert_null(strstr(out, "broken"));
    free(out);
    free(err);
    /* --strict: fatal */
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "broken.png",
                                "img0.png", "--strict", NULL), 1);
    tu_expect_line(err, "broken.png", NULL);
    assert_string_equal(out, "");
    free(out);
    free(err);
    /* a safetensors file that is no xdistill checkpoint */
    const float v[2] = {1, 2};
    io_tensor t;
    const int64_t shape[1] = {2};
    io_tensor_set(&t, "w", IO_F32, 1, shape, v);
    xd_err e;
    TU_OK(io_st_write("other.safetensors", &t, 1, NULL, 0, &e));
    assert_int_equal(tu_run_cli(&out, &err, "predict", "other.safetensors", "img0.png", NULL), 1);
    tu_expect_line(err, "other.safetensors", "not an xdistill checkpoint");
    free(out);
    free(err);
    /* a checkpoint of a later version */
    tu_rewrite_meta("img/best.safetensors", "later.safetensors", "xdistill.version", "99.0.0");
    assert_int_equal(tu_run_cli(&out, &err, "predict", "later.safetensors", "img0.png", NULL), 1);
    tu_expect_line(err, "later.safetensors", "xdistill 99.0.0");
    free(out);
    free(err);
    /* a text model given an image */
    assert_int_equal(tu_run_cli(&out, &err, "predict", "txt/best.safetensors", "img0.png", NULL),
                     3);
    tu_expect_line(err, "img0.png", "reads texts");
    assert_string_equal(out, "");
    free(out);
    free(err);
}

static void test_segmentation_masks(void **state)
{
    (void)state;
    /* a map head of 3 classes over 8x8 grey images, as initialised, saved without a recipe */
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, "input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; relu; "
                             "conv2d name=logits out=3 k=1 head", 2, 5, &e));
    TU_OK(ckpt_save("seg.safetensors", &m, NULL, 0, &e));
    mkdir("other", 0777);
    rename("img1.png", "other/img0.png");
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "predict", "seg.safetensors", "img0.png",
                                "other/img0.png", "img2.png", "--out", "masks", NULL), 3);
    tu_expect_line(err, "other/img0.png", "masks/img0.png");
    assert_string_equal(out, "{\"input\":\"img0.png\",\"mask\":\"masks/img0.png\"}\n"
                             "{\"input\":\"img2.png\",\"mask\":\"masks/img2.png\"}\n");
    rename("other/img0.png", "img1.png");
    free(out);
    free(err);
    for (int i = 0; i <= 2; i += 2) {
        char src[32], mask[32];
        snprintf(src, sizeof src, "img%d.png", i);
        snprintf(mask, sizeof mask, "masks/img%d.png", i);
        io_image img = {0}, got = {0};
        TU_OK(io_png_read(src, NULL, &img, &e));
        TU_OK(io_png_read(mask, NULL, &got, &e));
        assert_int_equal(got.w * got.h * got.c, 64);
        float x[64];
        for (int k = 0; k < 64; k++) x[k] = img.px[k] / 255.0f;
        nn_model_forward(&m, x, 1, NULL);
        const float *o = nn_model_out(&m, nn_model_default_head(&m));
        for (int k = 0; k < 64; k++) {
            int best = 0;
            for (int c = 1; c < 3; c++)
                if (o[k * 3 + c] > o[k * 3 + best]) best = c;
            if (got.px[k] != best)
                fail_msg("%s pixel %d: class %d, the forward pass %d", mask, k, got.px[k], best);
        }
        io_image_free(&img);
        io_image_free(&got);
    }
    nn_model_free(&m);
    /* without --out: a usage error */
    assert_int_equal(tu_run_cli(NULL, &err, "predict", "seg.safetensors", "img0.png", NULL), 2);
    tu_expect_line(err, "seg.safetensors", "--out");
    free(err);
}

/* predict's probabilities of every class, (n, K) by class, from its JSON lines with --top K. */
static float *predict_probs(const char *out, int n, int K)
{
    float *p = xd_xcalloc((size_t)n * (size_t)K, sizeof *p);
    const char *line = out;
    for (int i = 0; i < n; i++) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)(strchr(line, '\n') - line), 0, &je);
        assert_non_null(j);
        json_t *top = json_object_get(j, "top");
        assert_int_equal(json_array_size(top), K);
        for (int r = 0; r < K; r++) {
            json_t *o = json_array_get(top, (size_t)r);
            p[i * K + json_integer_value(json_object_get(o, "class"))] =
                (float)json_real_value(json_object_get(o, "p"));
        }
        json_decref(j);
        line = strchr(line, '\n') + 1;
    }
    return p;
}

/* The exported models of the trained image and text students give predict's probabilities in
 * ONNX Runtime, fed the inputs eval's feeds make of the same test images and texts (the image
 * student's batch norm folded into fc1 by predict's engine, not by the exported graph). */
static void test_onnx_matches_predict(void **state)
{
    (void)state;
    char *out, *err;
    int K;
    free(eval_probs("img/best.safetensors", "image", N_IMAGES, &K, "img.f32"));
    assert_int_equal(tu_run_cli(NULL, NULL, "export", "img/best.safetensors", "--onnx", "img.onnx",
                                NULL), 0);
    tu_onnx_check("img.onnx");
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "img0.png",
                                "img1.png", "img2.png", "img3.png", "img4.png", "img5.png",
                                "img6.png", "img7.png", "img8.png", "img9.png", "img10.png",
                                "img11.png", "--top", "4", NULL), 0);
    float *want = predict_probs(out, N_IMAGES, K);
    char dims[64];
    snprintf(dims, sizeof dims, "%d %d %d 1", N_IMAGES, TINY_SIDE, TINY_SIDE);
    tu_onnx_compare("img.onnx", "img.f32", dims, want, (size_t)N_IMAGES * (size_t)K);
    free(want);
    free(out);
    free(err);
    /* the text student on the first test texts, one per line */
    free(eval_probs("txt/best.safetensors", "text.en", 6, &K, "txt.i32"));
    assert_int_equal(tu_run_cli(NULL, NULL, "export", "txt/best.safetensors", "--onnx", "txt.onnx",
                                NULL), 0);
    tu_onnx_check("txt.onnx");
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    const io_strings *texts = io_dataset_find_strings(ds, "test/text.en");
    FILE *f = fopen("six.txt", "w");
    for (int i = 0; i < 6; i++) fprintf(f, "%s\n", io_strings_get(texts, (size_t)i, NULL));
    fclose(f);
    io_dataset_close(ds);
    assert_int_equal(tu_run_cli_in("six.txt", &out, &err, "predict", "txt/best.safetensors",
                                   "--top", "4", NULL), 0);
    want = predict_probs(out, 6, K);
    tu_onnx_compare("txt.onnx", "txt.i32", "6 16", want, 6 * (size_t)K);
    free(want);
    free(out);
    free(err);
}

/* Runs a shell command, its output into log; fails the test (showing the log) when it fails. */
static void shell(const char *cmd, const char *log)
{
    char *full = tu_fmt("%s > %s 2>&1", cmd, log);
    int rc = system(full);
    free(full);
    if (rc != 0) {
        size_t n;
        char *text = tu_read_file(log, &n);
        fail_msg("'%s' failed:\n%.*s", cmd, (int)n, text);
    }
}

/* Regular files and links under dir, counted. */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char *p = tu_fmt("%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0) n += S_ISDIR(st.st_mode) ? count_files(p) : 1;
        free(p);
    }
    closedir(d);
    return n;
}

static void test_installed_library(void **state)
{
    (void)state;
    /* build/tests/test_predict -> build (build/san with sanitizers: the same folder) */
    char self[PATH_MAX], cwd[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = '\0';
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *build = xd_xstrdup(dirname(dirname(self)));
    char *root = realpath(tu_src_path("."), NULL);
    assert_non_null(root);
    /* the build is complete: installing copies it (-o: its flags are not checked again) */
    char *cmd = tu_fmt("env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C %s -o %s/cflags.txt "
                       "install PREFIX=%s/prefix BUILD=%s", root, build, cwd, build);
    shell(cmd, "install.log");
    free(cmd);
#if defined(__SANITIZE_ADDRESS__)
    const char *san = "-fsanitize=address,undefined";
#else
    const char *san = "";
#endif
    cmd = tu_fmt("cc -std=c17 -Wall -Wextra -Werror -pedantic %s %s/examples/classify.c "
                 "$(PKG_CONFIG_PATH=%s/prefix/lib/pkgconfig pkg-config --cflags --libs xdistill) "
                 "-o classify", san, root, cwd);
    shell(cmd, "cc.log");
    free(cmd);
    cmd = tu_fmt("LD_LIBRARY_PATH=%s/prefix/lib ./classify img/best.safetensors img5.png 3", cwd);
    shell(cmd, "classify.out");
    free(cmd);
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "img5.png",
                                "--top", "3", NULL), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    size_t n;
    char *got = tu_read_file("classify.out", &n);
    got = realloc(got, n + 1);
    got[n] = '\0';
    const char *line = got;
    for (size_t r = 0; r < 3; r++) {
        json_t *o = json_array_get(json_object_get(j, "top"), r);
        char name[64];
        double p;
        if (sscanf(line, "%63[^\t]\t%lf", name, &p) != 2) fail_msg("classify printed '%s'", got);
        assert_string_equal(name, json_string_value(json_object_get(o, "label")));
        assert_true(fabs(p - json_real_value(json_object_get(o, "p"))) < 1e-6);
        line = strchr(line, '\n') + 1;
    }
    assert_string_equal(line, "");
    json_decref(j);
    free(got);
    free(out);
    free(err);
    /* every command of `xdistill --help` has its section in the installed man page */
    assert_int_equal(tu_run_cli(&out, &err, "--help", NULL), 0);
    char *man = tu_read_file("prefix/share/man/man1/xdistill.1", &n);
    man = realloc(man, n + 1);
    man[n] = '\0';
    const char *p = strstr(out, "commands:\n");
    assert_non_null(p);
    int commands = 0;
    for (p = strchr(p, '\n') + 1; p[0] == ' ' && p[1] == ' ' && p[2] != '-'; commands++) {
        char word[32], want[64];
        assert_int_equal(sscanf(p, " %31s", word), 1);
        snprintf(want, sizeof want, ".SS \"xdistill %s ", word);
        if (!strstr(man, want)) fail_msg("the man page has no section '%s'", want);
        p = strchr(p, '\n') + 1;
    }
    assert_true(commands >= 8);
    free(man);
    free(out);
    free(err);
    assert_true(count_files("prefix") >= 8);
    cmd = tu_fmt("env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C %s uninstall PREFIX=%s/prefix "
                 "BUILD=%s", root, cwd, build);
    shell(cmd, "uninstall.log");
    free(cmd);
    assert_int_equal(count_files("prefix"), 0);
    free(root);
    free(build);
}

/* A mask is at the size of its image: a 12x20 image of a model trained on square 8x8 images with
 * a 4x4 map; its centre 12x12 square is what the model sees, each pixel there takes the class of
 * the map cell it falls in, and the columns left and right of it those of the nearest cell. */
static void test_mask_at_image_size(void **state)
{
    (void)state;
    xd_err e;
    tu_save_model("seg4.safetensors", "input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; relu; "
                                      "maxpool k=2; conv2d name=logits out=3 k=1 head", 1, 7);
    enum { H = 12, W = 20, S = 12, X0 = 4, MAP = 4, K = 3 };
    uint8_t px[H * W];
    for (int i = 0; i < H * W; i++) px[i] = (uint8_t)((i * 37 + (i / W) * 11) % 256);
    io_image img = {.w = W, .h = H, .c = 1, .px = px};
    TU_OK(io_png_write("wide.png", &img, &e));
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "predict", "seg4.safetensors", "wide.png", "--out",
                                "masks4", NULL), 0);
    free(out);
    free(err);
    /* the map's probabilities, from the library */
    xdistill_model *x;
    xdistill_error xe;
    assert_int_equal(xdistill_load("seg4.safetensors", 1, &x, &xe), XDISTILL_OK);
    xdistill_batch *b = xdistill_batch_new(x);
    assert_int_equal(xdistill_batch_set_image_file(b, 0, "wide.png", &xe), XDISTILL_OK);
    float probs[MAP * MAP * K];
    assert_int_equal(xdistill_outputs(x), MAP * MAP * K);
    assert_int_equal(xdistill_predict(x, b, 1, probs, &xe), XDISTILL_OK);
    io_image got = {0};
    TU_OK(io_png_read("masks4/wide.png", NULL, &got, &e));
    assert_int_equal(got.h, H);
    assert_int_equal(got.w, W);
    assert_int_equal(got.c, 1);
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            const int u = j < X0 ? 0 : j >= X0 + S ? S - 1 : j - X0;
            const int cell = (i * MAP / S) * MAP + u * MAP / S;
            int best = 0;
            for (int c = 1; c < K; c++)
                if (probs[cell * K + c] > probs[cell * K + best]) best = c;
            if (got.px[i * W + j] != best)
                fail_msg("pixel (%d, %d): class %d, its map cell %d has %d", i, j,
                         got.px[i * W + j], cell, best);
        }
    io_image_free(&got);
    xdistill_batch_free(b);
    xdistill_free(x);
}

/* --exit HEAD: the probabilities of an early exit (the softmax of that head in the whole model's
 * forward pass); a name that is no exit is one line naming the exits. */
static void test_predict_exit(void **state)
{
    (void)state;
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, "input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; relu name=trunk; gap; "
                             "linear out=3 name=exit1 head; conv2d from=trunk out=4 k=3 "
                             "stride=2; relu; flatten; linear out=5 name=exit2 head", 1, 9, &e));
    TU_OK(ckpt_save("exits.safetensors", &m, NULL, 0, &e));
    io_image img = {0};
    TU_OK(io_png_read("img0.png", NULL, &img, &e));
    float x[64];
    for (int k = 0; k < 64; k++) x[k] = img.px[k] / 255.0f;
    io_image_free(&img);
    nn_model_forward(&m, x, 1, NULL);
    const char *const exits[] = {"exit1", "exit2"};
    for (int i = 0; i < 2; i++) {
        const int node = nn_model_find(&m, exits[i]);
        const int K = (int)nn_model_node(&m, node)->act_n;
        float want[5];
        nn_softmax_forward(want, nn_model_out(&m, node), 1, K);
        char *out, *err, top[8];
        snprintf(top, sizeof top, "%d", K);
        assert_int_equal(tu_run_cli(&out, &err, "predict", "exits.safetensors", "img0.png",
                                    "--exit", exits[i], "--top", top, NULL), 0);
        json_error_t je;
        json_t *j = json_loads(out, 0, &je);
        assert_non_null(j);
        json_t *t = json_object_get(j, "top");
        assert_int_equal(json_array_size(t), K);
        for (int k = 0; k < K; k++) {
            json_t *o = json_array_get(t, (size_t)k);
            const int c = (int)json_integer_value(json_object_get(o, "class"));
            assert_true(fabs(want[c] - json_real_value(json_object_get(o, "p"))) < 1e-6);
        }
        json_decref(j);
        free(out);
        free(err);
    }
    nn_model_free(&m);
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "predict", "exits.safetensors", "img0.png", "--exit",
                                "trunk", NULL), 1);
    tu_expect_line(err, "exits.safetensors", "its exits: exit1 or exit2");
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_images_match_eval, setup),
        cmocka_unit_test_setup(test_text_lines, setup),
        cmocka_unit_test_setup(test_old_checkpoint, setup),
        cmocka_unit_test_setup(test_bad_inputs, setup),
        cmocka_unit_test_setup(test_segmentation_masks, setup),
        cmocka_unit_test_setup(test_mask_at_image_size, setup),
        cmocka_unit_test_setup(test_predict_exit, setup),
        cmocka_unit_test_setup(test_installed_library, setup),
        cmocka_unit_test_setup(test_onnx_matches_predict, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
