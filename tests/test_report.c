/* report/ and distill/scores: the HTML building blocks (escaping, data: URIs), confusion
 * matrices and per-row predictions (the same accuracy trainer_evaluate gives), and `xdistill
 * report` end to end on tiny runs this test trains with the program itself: the table's figures
 * are the runs' summaries, every recipe has its curves, the per-recipe evaluation shows class
 * names and the teacher, strings are escaped, folders that are no runs get one line naming them,
 * `--compare` prints the table, stored names are kept. Runs of several models, pipelines, segment
 * runs and the rendering are in test_report_runs.c. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "distill/scores.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/png.h"
#include "nn/model.h"
#include "report/html.h"
#include "tests/support/reportfix.h"
#include "tests/support/tinyset.h"

/* ---------------------------------------------------------------------------------------------
 * building blocks */

static void test_escape(void **state)
{
    (void)state;
    rp_buf b = {0};
    rp_escape(&b, "a<b>&\"c'd");
    assert_string_equal(b.s, "a&lt;b&gt;&amp;&quot;c&#39;d");
    rp_buf_free(&b);
    rp_escape(&b, "plain text, no entity");
    assert_string_equal(b.s, "plain text, no entity");
    rp_buf_free(&b);
}

static void test_data_uri(void **state)
{
    (void)state;
    static const char *const in[] = {"", "M", "Ma", "Man", "Many hands"};
    static const char *const want[] = {"", "TQ==", "TWE=", "TWFu", "TWFueSBoYW5kcw=="};
    for (int i = 0; i < 5; i++) {
        rp_buf b = {0};
        rp_data_uri(&b, "text/plain", in[i], strlen(in[i]));
        char *w = tu_fmt("data:text/plain;base64,%s", want[i]);
        assert_string_equal(b.s, w);
        free(w);
        rp_buf_free(&b);
    }
}

/* counts of a confusion matrix's cells (pixels run to millions) in at most four characters */
static void test_short_count(void **state)
{
    (void)state;
    static const struct {
        uint64_t c;
        const char *want;
    } cases[] = {{0, "0"},         {7720, "7720"},      {9999, "9999"},
                 {10000, "10k"},   {133612, "134k"},    {999499, "999k"},
                 {999500, "1.0M"}, {1635798, "1.6M"},   {9949999, "9.9M"},
                 {9950000, "10M"}, {2048000000, "2.0G"}, {UINT64_MAX, "18E"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_buf b = {0};
        rp_short_count(&b, cases[i].c);
        if (strcmp(b.s, cases[i].want) != 0)
            fail_msg("%llu: '%s', want '%s'", (unsigned long long)cases[i].c, b.s, cases[i].want);
        assert_true(strlen(b.s) <= 4);
        rp_buf_free(&b);
    }
}

static void test_png_encode_roundtrip(void **state)
{
    (void)state;
    uint8_t px[5 * 3 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);
    io_image img = {.w = 5, .h = 3, .c = 3, .px = px}, back;
    void *png;
    size_t n;
    TU_OK(io_png_encode(&img, "mem", &png, &n, NULL));
    TU_OK(io_png_read_mem(png, n, "mem", NULL, &back, NULL));
    assert_int_equal(back.w, 5);
    assert_int_equal(back.h, 3);
    assert_int_equal(back.c, 3);
    assert_memory_equal(back.px, px, sizeof px);
    io_image_free(&back);
    free(png);
    xd_err e;
    io_image bad = {.w = 2, .h = 2, .c = 2, .px = px};
    assert_int_equal(io_png_encode(&bad, "two.png", &png, &n, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "two.png");
}

static void test_scores_confusion(void **state)
{
    (void)state;
    /* truth 0 0 0 1 1 2, predictions 0 1 0 1 -1(none) 1; a row of class 5 is out of range */
    const int32_t truth[] = {0, 0, 0, 1, 1, 2, 5};
    const int32_t pred[] = {0, 1, 0, 1, -1, 1, 0};
    scores s;
    scores_init(&s, 3);
    scores_add(&s, pred, truth, 7);
    assert_int_equal(s.total, 5);
    assert_int_equal(s.correct, 3);
    assert_int_equal(s.count[0 * 3 + 0], 2);
    assert_int_equal(s.count[0 * 3 + 1], 1);
    assert_int_equal(s.count[1 * 3 + 1], 1);
    assert_int_equal(s.count[2 * 3 + 1], 1);
    assert_true(fabs(scores_accuracy(&s) - 0.6) < 1e-12);
    assert_true(fabs(scores_class_accuracy(&s, 0) - 2.0 / 3.0) < 1e-12);
    assert_true(fabs(scores_class_accuracy(&s, 1) - 1.0) < 1e-12);
    assert_true(fabs(scores_class_accuracy(&s, 2) - 0.0) < 1e-12);
    assert_true(fabs(scores_balanced_accuracy(&s) - (2.0 / 3.0 + 1.0 + 0.0) / 3.0) < 1e-12);
    /* class 1: 1 true positive, predicted 3 times, true once: IoU 1 / 3 */
    assert_true(fabs(scores_class_iou(&s, 1) - 1.0 / 3.0) < 1e-12);
    assert_int_equal(scores_support(&s, 0), 3);
    scores_free(&s);
    /* a class with no row counts in no mean */
    scores_init(&s, 4);
    scores_add(&s, pred, truth, 4);
    assert_true(scores_class_accuracy(&s, 3) < 0);
    assert_true(scores_class_iou(&s, 3) < 0);
    assert_true(fabs(scores_balanced_accuracy(&s) - (2.0 / 3.0 + 1.0) / 2.0) < 1e-12);
    scores_free(&s);
}

/* scores_predict's rows give the accuracy trainer_evaluate reports, for an image feed and a
 * text.* feed scored on every (example, language) pair */
static void check_predict(const char *model, const char *view)
{
    io_dataset *ds;
    TU_OK(io_dataset_open("toy.xds", &ds, NULL));
    nn_model m;
    TU_OK(nn_model_build(&m, model, 16, 3, NULL));
    feed f;
    memset(&f, 0, sizeof f);
    TU_OK(feed_open(&f, ds, "test", view, &m, "", "buckets=512", NULL));
    const io_tensor *lt = io_dataset_find(ds, "test/label");
    assert_non_null(lt);
    const int32_t *y = lt->data;
    void *input = xd_xmalloc_aligned(feed_example_bytes(&f) * 16);
    int head = nn_model_default_head(&m);
    double acc;
    TU_OK(trainer_evaluate(&m, head, &f, y, input, &acc, NULL));
    size_t rows = scores_rows(&m, head, &f, 1);
    assert_int_equal(rows, f.n * (size_t)(f.kind == FEED_TEXT ? f.n_langs : 1));
    int32_t *pred = xd_xmalloc(sizeof(int32_t) * rows), *truth = xd_xmalloc(sizeof(int32_t) * rows);
    float *conf = xd_xmalloc(sizeof(float) * rows);
    TU_OK(scores_predict(&m, head, &f, 1, input, pred, conf, NULL));
    for (size_t r = 0; r < rows; r++) {
        truth[r] = y[r % f.n];
        if (pred[r] >= 0) assert_true(conf[r] >= 0.25f - 1e-6f && conf[r] <= 1.0f);
    }
    scores s;
    scores_init(&s, 4);
    scores_add(&s, pred, truth, rows);
    assert_true(s.total > 0);
    assert_true(fabs(scores_accuracy(&s) - acc) < 1e-12);
    /* one row per example when languages are not all scored */
    assert_int_equal(scores_rows(&m, head, &f, 0), f.n);
    scores_free(&s);
    free(pred);
    free(truth);
    free(conf);
    free(input);
    feed_close(&f);
    nn_model_free(&m);
    io_dataset_close(ds);
}

static void test_scores_predict(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    tiny_write("toy.xds", &sp);
    check_predict(RP_MLP_MODEL, "image");
    check_predict(RP_TEXT_MODEL, "text.*");
}

/* ---------------------------------------------------------------------------------------------
 * `xdistill report` end to end */

/* the summary.json of a --seeds folder: mean and std of the final test accuracy */
static void summary_figures(const char *dir, double *mean, double *std)
{
    char *path = tu_fmt("%s/summary.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) fail_msg("cannot read %s", path);
    json_t *f = json_object_get(j, "final_test_acc");
    *mean = json_real_value(json_object_get(f, "mean"));
    *std = json_real_value(json_object_get(f, "std"));
    json_decref(j);
    free(path);
}

static void test_report_command(void **state)
{
    (void)state;
    rp_classify_runs();

    assert_int_equal(rp_xd("report runs --out report.html"), 0);
    char *page = rp_slurp("report.html");
    /* the table's figures are the --seeds summaries' */
    static const char *const names[] = {"tiny-teacher", "tiny-student"};
    static const char *const dirs[] = {"runs/x<i>&'q/teacher", "runs/x<i>&'q/student"};
    for (int i = 0; i < 2; i++) {
        double m, s, sm, ss;
        rp_row_figures(page, names[i], &m, &s);
        summary_figures(dirs[i], &sm, &ss);
        if (fabs(m - sm) > 1e-7 || fabs(s - ss) > 1e-7)
            fail_msg("%s: table %.10g +- %.10g, summary %.10g +- %.10g", names[i], m, s, sm, ss);
    }
    /* every recipe has its curves, and every loss component has a chart */
    static const char *const keys[] = {"test_acc", "train_acc", "loss", "loss.0.ce"};
    for (int k = 0; k < 4; k++) {
        char *f = rp_figure(page, keys[k]);
        if (!f) fail_msg("no chart of %s", keys[k]);
        for (int i = 0; i < 2; i++) {
            char *run = tu_fmt("data-run=\"%s\" d=\"M", names[i]);
            if (!strstr(f, run)) fail_msg("chart %s has no line of %s", keys[k], names[i]);
            free(run);
        }
        free(f);
    }
    char *kd = rp_figure(page, "loss.1.kd");
    assert_non_null(kd);
    assert_non_null(strstr(kd, "data-run=\"tiny-student\""));
    assert_null(strstr(kd, "data-run=\"tiny-teacher\""));
    free(kd);
    /* seeds drawn as a band */
    assert_non_null(strstr(page, "class=\"band\""));
    /* the evaluation: class names in the confusion matrix, the teacher beside the mistakes */
    assert_non_null(strstr(page, "Confusion matrix"));
    assert_non_null(strstr(page, ">bottom-right<"));
    assert_non_null(strstr(page, "balanced accuracy"));
    assert_non_null(strstr(page, "The recipe has no teacher."));
    assert_non_null(strstr(page, "Teacher &#39;t&#39;"));
    /* the student's mistakes (a weak student makes some), each beside the teacher's answer */
    const char *gal = strstr(page, "<div class=\"gallery\">");
    assert_non_null(gal);
    assert_non_null(strstr(gal, "<img class=\"thumb\""));
    assert_non_null(strstr(gal, "teacher: "));
    /* escaped, never raw */
    assert_non_null(strstr(page, "x&lt;i&gt;&amp;&#39;q"));
    assert_null(strstr(page, "x<i>"));
    /* self-contained: nothing fetched */
    assert_null(strstr(page, "<script"));
    assert_null(strstr(page, "http://"));
    assert_null(strstr(page, "https://"));
    assert_null(strstr(page, "src=\"file"));
    free(page);

    /* --compare: the same table as text */
    assert_int_equal(
        rp_xd("report --compare \"runs/x<i>&'q/teacher\" \"runs/x<i>&'q/student\""), 0);
    char *out = rp_slurp("out.txt");
    double m, s;
    summary_figures("runs/x<i>&'q/student", &m, &s);
    char *want = tu_fmt("%.2f +- %.2f%%", 100 * m, 100 * s);
    assert_non_null(strstr(out, "tiny-teacher"));
    assert_non_null(strstr(out, want));
    assert_int_equal(rp_lines(out), 3);
    free(want);
    free(out);

    /* folders that are no runs: one line naming them, nothing written */
    mkdir("empty", 0755);
    mkdir("half", 0755);
    tu_write_file("half/metrics.jsonl", "{\"epoch\": 1}\n", 13);
    static const struct {
        const char *args, *says;
        int rc;
    } bad[] = {
        {"report nowhere --out bad.html", "nowhere: no such folder", 1},
        {"report empty --out bad.html", "empty: no run in it", 1},
        {"report half --out bad.html", "half: a run without summary.json", 1},
        {"report toy.xds --out bad.html", "toy.xds: not a folder", 1},
        {"report --out bad.html", "give one or more run folders", 2},
        {"report --compare runs --out bad.html", "two or more", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rp_xd(bad[i].args), bad[i].rc);
        char *err = rp_slurp("err.txt");
        if (!strstr(err, bad[i].says)) fail_msg("%s: stderr '%s'", bad[i].args, err);
        assert_int_equal(rp_lines(err), 1);
        free(err);
        assert_int_equal(access("bad.html", F_OK), -1);
    }
}

/* The evaluation's class names are those the checkpoint stores, before the data set's; a list
 * that does not fit the model is noted, and the data set's names stand. */
static void test_report_stored_names(void **state)
{
    (void)state;
    rp_classify_runs();
    const char *src = "runs/x<i>&'q/student/seed-1/best.safetensors";
    static const struct {
        const char *classes, *shown, *note;
    } cases[] = {
        {"[\"TL-stored\",\"TR-stored\",\"BL-stored\",\"BR-stored\"]", ">BR-stored<", NULL},
        {"[\"TL-stored\"]", ">bottom-right<", "names 1 classes for the 4 outputs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(system("rm -rf named && cp -r \"runs/x<i>&'q/student/seed-1\" named"), 0);
        tu_rewrite_meta(src, "named/best.safetensors", "xdistill.classes", cases[i].classes);
        /* a noted problem is on the page and in the exit status */
        assert_int_equal(rp_xd("report named --out named.html"), cases[i].note ? 1 : 0);
        char *page = rp_slurp("named.html");
        if (!strstr(page, cases[i].shown)) fail_msg("case %zu: no %s on the page", i, cases[i].shown);
        if (cases[i].note) assert_non_null(strstr(page, cases[i].note));
        else assert_null(strstr(page, ">bottom-right<"));
        free(page);
    }
}

/* A checkpoint that cannot be read: the page is written whole, saying why that run has no
 * evaluation, and the command says so on standard error and exits 1; --no-eval runs none. */
static void test_report_unreadable_checkpoint(void **state)
{
    (void)state;
    rp_classify_runs();
    assert_int_equal(system("rm -rf cut && cp -r \"runs/x<i>&'q/student/seed-1\" cut && "
                            "truncate -s 1000 cut/best.safetensors"), 0);
    assert_int_equal(rp_xd("report cut --out cut.html"), 1);
    char *page = rp_slurp("cut.html"), *err = rp_slurp("err.txt");
    assert_non_null(strstr(page, "Not evaluated: cut/best.safetensors"));
    assert_non_null(strstr(page, "</html>"));
    if (!strstr(err, "cut/best.safetensors") || !strstr(err, "1 run with a problem") ||
        rp_lines(err) != 2)
        fail_msg("stderr '%s'", err);
    free(page);
    free(err);
    assert_int_equal(rp_xd("report cut --no-eval --out cut.html"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_data_uri),
        cmocka_unit_test(test_short_count),
        cmocka_unit_test(test_png_encode_roundtrip),
        cmocka_unit_test(test_scores_confusion),
        cmocka_unit_test(test_scores_predict),
        cmocka_unit_test(test_report_command),
        cmocka_unit_test(test_report_stored_names),
        cmocka_unit_test(test_report_unreadable_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
