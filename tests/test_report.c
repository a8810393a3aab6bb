/* report/ and distill/scores: the HTML building blocks (escaping, data: URIs), confusion
 * matrices and per-row predictions (the same accuracy trainer_evaluate gives), and
 * `xdistill report` end to end on tiny runs this test trains with the program itself: the
 * table's figures are the runs' summaries, every recipe has its curves, the per-recipe
 * evaluation shows class names and the teacher, strings are escaped, folders that are no runs
 * get one line naming them, `--compare` prints the table. Runs of several models have a row,
 * curves and an evaluation per model; pipeline runs come in the pipeline's order; segment runs
 * show mIoU curves, a per-pixel confusion matrix that gives the run's mIoU, per-class IoU and
 * the overlays; every seed has its evaluation. A page holding every kind renders in headless
 * Chromium (a screenshot that is not blank, no console message) when chromium is installed. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "distill/feed.h"
#include "distill/scores.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/png.h"
#include "nn/model.h"
#include "report/html.h"
#include "report/runs.h"
#include "tests/support/sceneset.h"
#include "tests/support/tinyset.h"

#define MLP_MODEL                                                                                \
    "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu name=feat; linear out=4 "          \
    "name=logits head"
#define TEXT_MODEL                                                                               \
    "input tokens=64; embbag vocab=512 out=16 mode=mean name=emb; linear out=4 name=logits head"

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
    check_predict(MLP_MODEL, "image");
    check_predict(TEXT_MODEL, "text.*");
}

/* ---------------------------------------------------------------------------------------------
 * `xdistill report` end to end */

static char bin[PATH_MAX];

/* the program beside this test's folder: BUILD/xdistill for BUILD/tests/test_report */
static void find_bin(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    snprintf(bin, sizeof bin, "%s/../xdistill", dirname(self));
    assert_int_equal(access(bin, X_OK), 0);
}

/* runs `xdistill ARGS > out 2> err`; returns the exit status */
static int xd(const char *args)
{
    char *cmd = tu_fmt("'%s' %s > out.txt 2> err.txt", bin, args);
    int rc = system(cmd);
    free(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path)
{
    size_t n;
    return tu_read_file(path, &n);
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

#define TEACHER                                                                                  \
    "name: tiny-teacher\ndata: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"                      \
    "train: {epochs: 3, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"            \
    "losses:\n  - kind: ce\n"
#define STUDENT                                                                                  \
    "name: tiny-student\ndata: {path: toy.xds, label_fraction: 0.05}\nmodel: \"" MLP_MODEL "\"\n" \
    "teachers:\n  - {name: t, checkpoint: \"runs/x<i>&'q/teacher/seed-1/best.safetensors\"}\n"   \
    "train: {epochs: 2, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.001}}\n"           \
    "losses:\n  - kind: ce\n  - {kind: kd, teacher: t, temperature: 2}\n"

/* data-mean / data-std of the table row of run name */
static void row_figures(const char *page, const char *name, double *mean, double *std)
{
    char *tag = tu_fmt("<tr data-run=\"%s\"", name);
    const char *p = strstr(page, tag);
    if (!p) {
        free(tag);
        tag = tu_fmt("<tr class=\"best\" data-run=\"%s\"", name);
        p = strstr(page, tag);
    }
    if (!p) fail_msg("no table row for %s", name);
    p = strstr(p, "data-mean=\"");
    assert_non_null(p);
    *mean = strtod(p + 11, NULL);
    p = strstr(p, "data-std=\"");
    assert_non_null(p);
    *std = strtod(p + 10, NULL);
    free(tag);
}

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

/* the <figure> of a chart key, as a new string */
static char *figure(const char *page, const char *key)
{
    char *tag = tu_fmt("<figure class=\"chart\" data-key=\"%s\">", key);
    const char *p = strstr(page, tag);
    free(tag);
    if (!p) return NULL;
    const char *end = strstr(p, "</figure>");
    assert_non_null(end);
    return strndup(p, (size_t)(end - p));
}

/* the page in headless Chromium: a screenshot that is not blank, and no console message (the page
 * has no script, so any message, an error or a failed load, is a fault); a page with a script
 * error must be caught the same way, or the check would prove nothing */
static int chromium_console(const char *page, const char *png, int expected)
{
    char *cmd = tu_fmt("chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                    "--disable-background-networking --disable-component-update --disable-sync "
                    "--user-data-dir=\"$PWD/chrome-profile\" --enable-logging=stderr --v=0 "
                    "--window-size=1200,2000 --screenshot='%s' 'file://%s' > chrome.out "
                    "2> chrome.err", png, page);
    int rc = system(cmd);
    free(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    char *err = slurp("chrome.err");
    int found = 0;
    for (char *l = strtok(err, "\n"); l; l = strtok(NULL, "\n"))
        if (strstr(l, "CONSOLE") || strstr(l, "Uncaught")) {
            print_message("chromium console%s: %s\n", expected ? " (expected)" : "", l);
            found++;
        }
    free(err);
    return found;
}

static void check_render(const char *name)
{
    if (system("command -v chromium > /dev/null 2>&1") != 0) {
        print_message("SKIPPED: rendering the report needs Debian's chromium "
                      "(scripts/setup.sh installs it); not found on PATH\n");
        return;
    }
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *page = tu_fmt("%s/%s", cwd, name), *bad = tu_fmt("%s/broken.html", cwd);
    const char *broken = "<!DOCTYPE html><html><body><p>x</p><script>no_such_function();"
                         "</script></body></html>";
    tu_write_file("broken.html", broken, strlen(broken));
    assert_true(chromium_console(bad, "broken.png", 1) > 0);
    assert_int_equal(chromium_console(page, "shot.png", 0), 0);
    io_image img;
    TU_OK(io_png_read("shot.png", NULL, &img, NULL));
    assert_true(img.w >= 1000 && img.h >= 1000);
    /* not blank: a good share of the pixels are not the background's colour */
    size_t n = (size_t)img.w * img.h, ink = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img.px + i * (size_t)img.c;
        ink += p[0] < 235 || p[1] < 235 || p[2] < 235;
    }
    print_message("screenshot %dx%d: %.1f%% of the pixels drawn\n", img.w, img.h, 100.0 * ink / n);
    assert_true(ink > n / 50);
    io_image_free(&img);
    free(page);
    free(bad);
}

/* the tiny data set and, once, the runs of a teacher and its student, 2 seeds each, in a folder
 * name the page must escape */
static void classify_runs(void)
{
    static int done;
    if (done) return;
    find_bin();
    tiny_spec sp = tiny_default();
    tiny_write("toy.xds", &sp);
    tu_write_file("teacher.yaml", TEACHER, strlen(TEACHER));
    tu_write_file("student.yaml", STUDENT, strlen(STUDENT));
    assert_int_equal(xd("train teacher.yaml --seeds 2 --quiet --out \"runs/x<i>&'q/teacher\""), 0);
    assert_int_equal(xd("train student.yaml --seeds 2 --quiet --out \"runs/x<i>&'q/student\""), 0);
    done = 1;
}

static void test_report_command(void **state)
{
    (void)state;
    classify_runs();

    assert_int_equal(xd("report runs --out report.html"), 0);
    char *page = slurp("report.html");
    /* the table's figures are the --seeds summaries' */
    static const char *const names[] = {"tiny-teacher", "tiny-student"};
    static const char *const dirs[] = {"runs/x<i>&'q/teacher", "runs/x<i>&'q/student"};
    for (int i = 0; i < 2; i++) {
        double m, s, sm, ss;
        row_figures(page, names[i], &m, &s);
        summary_figures(dirs[i], &sm, &ss);
        if (fabs(m - sm) > 1e-7 || fabs(s - ss) > 1e-7)
            fail_msg("%s: table %.10g +- %.10g, summary %.10g +- %.10g", names[i], m, s, sm, ss);
    }
    /* every recipe has its curves, and every loss component has a chart */
    static const char *const keys[] = {"test_acc", "train_acc", "loss", "loss.0.ce"};
    for (int k = 0; k < 4; k++) {
        char *f = figure(page, keys[k]);
        if (!f) fail_msg("no chart of %s", keys[k]);
        for (int i = 0; i < 2; i++) {
            char *run = tu_fmt("data-run=\"%s\" d=\"M", names[i]);
            if (!strstr(f, run)) fail_msg("chart %s has no line of %s", keys[k], names[i]);
            free(run);
        }
        free(f);
    }
    char *kd = figure(page, "loss.1.kd");
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
    assert_int_equal(xd("report --compare \"runs/x<i>&'q/teacher\" \"runs/x<i>&'q/student\""), 0);
    char *out = slurp("out.txt");
    double m, s;
    summary_figures("runs/x<i>&'q/student", &m, &s);
    char *want = tu_fmt("%.2f +- %.2f%%", 100 * m, 100 * s);
    assert_non_null(strstr(out, "tiny-teacher"));
    assert_non_null(strstr(out, want));
    assert_int_equal(lines(out), 3);
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
        assert_int_equal(xd(bad[i].args), bad[i].rc);
        char *err = slurp("err.txt");
        if (!strstr(err, bad[i].says)) fail_msg("%s: stderr '%s'", bad[i].args, err);
        assert_int_equal(lines(err), 1);
        free(err);
        assert_int_equal(access("bad.html", F_OK), -1);
    }
}

/* The evaluation's class names are those the checkpoint stores, before the data set's; a list
 * that does not fit the model is noted, and the data set's names stand. */
static void test_report_stored_names(void **state)
{
    (void)state;
    classify_runs();
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
        assert_int_equal(xd("report named --out named.html"), 0);
        char *page = slurp("named.html");
        if (!strstr(page, cases[i].shown)) fail_msg("case %zu: no %s on the page", i, cases[i].shown);
        if (cases[i].note) assert_non_null(strstr(page, cases[i].note));
        else assert_null(strstr(page, ">bottom-right<"));
        free(page);
    }
}

/* ---------------------------------------------------------------------------------------------
 * runs of several models, pipelines, segment runs */

/* a JSON file's number at a path of object keys and array indices (NULL-terminated), NAN when
 * absent */
static double json_at(const char *path, ...)
{
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) fail_msg("cannot read %s", path);
    va_list ap;
    va_start(ap, path);
    const json_t *o = j;
    for (const char *k; (k = va_arg(ap, const char *));)
        o = json_is_array(o) ? json_array_get(o, strtoul(k, NULL, 10)) : json_object_get(o, k);
    va_end(ap);
    double v = json_is_number(o) ? json_number_value(o) : NAN;
    json_decref(j);
    return v;
}

/* the page's table row of name shows mean and std (a summary's figures) */
static void check_row(const char *page, const char *name, double mean, double std)
{
    double m, sd;
    row_figures(page, name, &m, &sd);
    if (fabs(m - mean) > 1e-7 || fabs(sd - std) > 1e-7)
        fail_msg("%s: table %.10g +- %.10g, summary %.10g +- %.10g", name, m, sd, mean, std);
}

/* 1 when chart key has a line of run name */
static int has_line(const char *page, const char *key, const char *name)
{
    char *f = figure(page, key), *tag = tu_fmt("data-run=\"%s\" d=\"M", name);
    int yes = f && strstr(f, tag);
    free(f);
    free(tag);
    return yes;
}

/* the value a chart's point gives for run name at epoch t (its <title>) */
static double point(const char *page, const char *key, const char *name, int t)
{
    char *f = figure(page, key), *tag = tu_fmt("<title>%s, epoch %d: ", name, t);
    if (!f) fail_msg("no chart of %s", key);
    const char *p = strstr(f, tag);
    if (!p) fail_msg("chart %s has no point of %s at epoch %d", key, name, t);
    double v = strtod(p + strlen(tag), NULL);
    free(f);
    free(tag);
    return v;
}

/* the <section> of recipe name (from its heading on), as a new string */
static char *section(const char *page, const char *name)
{
    char *want = tu_fmt("data-run=\"%s\"><h3>", name);
    const char *p = strstr(page, want);
    if (!p) fail_msg("no section of %s", name);
    free(want);
    const char *end = strstr(p, "</section>");
    assert_non_null(end);
    return strndup(p, (size_t)(end - p));
}

/* a metrics.jsonl key at epoch t */
static double metric(const char *dir, int t, const char *key)
{
    char *path = tu_fmt("%s/metrics.jsonl", dir);
    char *text = slurp(path);
    double v = NAN;
    int line = 0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n"))
        if (++line == t) {
            json_t *j = json_loads(l, 0, NULL);
            v = json_number_value(json_object_get(j, key));
            json_decref(j);
        }
    free(text);
    free(path);
    return v;
}

/* An image model and a text model learning from each other: every model has its row with the
 * scores of summary.json "models", its curves (accuracy, its own loss components, and its loss:
 * the weighted sum of those), and its own evaluation beside the peer's answers, for every seed. */
#define DML                                                                                      \
    "name: tiny-dml\ndata: {path: toy.xds, text: \"buckets=512\", label_fraction: 0.2}\n"          \
    "models:\n  - {name: img, model: \"" MLP_MODEL "\"}\n"                                       \
    "  - {name: txt, model: \"" TEXT_MODEL "\", view: text.*}\n"                                   \
    "train: {epochs: 3, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"            \
    "losses:\n  - {kind: ce, model: img}\n  - {kind: ce, model: txt}\n"                         \
    "  - {kind: kd, from: txt, to: img, temperature: 1, weight: 0.5}\n"                            \
    "  - {kind: kd, from: img, to: txt, temperature: 1}\n"

static void model_runs(void)
{
    static int done;
    if (done) return;
    classify_runs();
    tu_write_file("dml.yaml", DML, strlen(DML));
    assert_int_equal(xd("train dml.yaml --seeds 2 --quiet --out runs/dml"), 0);
    done = 1;
}

static void test_report_models(void **state)
{
    (void)state;
    model_runs();
    assert_int_equal(xd("report runs/dml --out dml.html"), 0);
    char *page = slurp("dml.html");
    static const char *const models[] = {"img", "txt"};
    for (int k = 0; k < 2; k++) {
        char *row = tu_fmt("tiny-dml/%s", models[k]);
        const char *all = "runs/dml/summary.json";
        check_row(page, row, json_at(all, "models", models[k], "final_test_acc", "mean", NULL),
                  json_at(all, "models", models[k], "final_test_acc", "std", NULL));
        if (!has_line(page, "test_acc", row) || !has_line(page, "train_acc", row) ||
            !has_line(page, "loss", row))
            fail_msg("%s: no accuracy or loss curves", row);
        /* its own components only: 0 and 2 train img, 1 and 3 txt */
        static const char *const comp[] = {"loss.0.ce", "loss.1.ce", "loss.2.kd", "loss.3.kd"};
        for (int c = 0; c < 4; c++)
            if (has_line(page, comp[c], row) != (c % 2 == k))
                fail_msg("chart %s: a line of %s is %s", comp[c], row,
                         c % 2 == k ? "missing" : "there");
        /* its loss is the weighted sum of its components (the mean over the seeds at epoch 1) */
        double want = 0;
        for (int seed = 1; seed <= 2; seed++) {
            char *dir = tu_fmt("runs/dml/seed-%d", seed);
            want += k == 0 ? metric(dir, 1, "loss.0.ce") + 0.5 * metric(dir, 1, "loss.2.kd")
                           : metric(dir, 1, "loss.1.ce") + metric(dir, 1, "loss.3.kd");
            free(dir);
        }
        double got = point(page, "loss", row, 1);
        if (fabs(got - want / 2) > 1e-3 * fabs(want / 2))
            fail_msg("%s loss %g, want %g", row, got, want / 2);
        /* every seed's evaluation of its own checkpoint: the accuracy of its best epoch */
        char *sec = section(page, row);
        for (int seed = 1; seed <= 2; seed++) {
            char *sum = tu_fmt("runs/dml/seed-%d/summary.json", seed);
            char *ev = tu_fmt("Evaluated (seed %d): <code>runs/dml/seed-%d/%s.best.safetensors</code>",
                              seed, seed, models[k]);
            const char *p = strstr(sec, ev);
            if (!p) fail_msg("no %s", ev);
            char *acc = tu_fmt("Accuracy %.2f%%",
                               100 * json_at(sum, "models", models[k], "best_test_acc", NULL));
            if (!strstr(p, acc) || strstr(p, acc) > strstr(p, "</p>")) fail_msg("%s: want %s", ev, acc);
            free(acc);
            free(ev);
            free(sum);
        }
        assert_non_null(strstr(sec, "<details class=\"seed\"><summary>seed 2: accuracy"));
        char *peer = tu_fmt("Peer &#39;%s&#39; (runs/dml/seed-1/%s.best.safetensors)", models[1 - k],
                            models[1 - k]);
        if (!strstr(sec, peer)) fail_msg("%s: no %s", row, peer);
        free(peer);
        free(sec);
        free(row);
    }
    /* a summary of several models without its recipe, or without a model's scores: one line
     * naming it, no page */
    static const char *const drop[][2] = {{"recipe", NULL}, {"models", "txt"}};
    static const char *const says[] = {"bad/summary.json: a run of several models without its "
                                       "\"recipe\"",
                                       "bad/summary.json: no \"models\" entry of model 'txt'"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(system("rm -rf bad && cp -r runs/dml/seed-1 bad"), 0);
        json_t *j = json_load_file("bad/summary.json", 0, NULL);
        assert_non_null(j);
        if (drop[i][1]) json_object_del(json_object_get(j, drop[i][0]), drop[i][1]);
        else json_object_del(j, drop[i][0]);
        assert_int_equal(json_dump_file(j, "bad/summary.json", 0), 0);
        json_decref(j);
        assert_int_equal(xd("report bad --out bad.html"), 1);
        char *err = slurp("err.txt");
        if (!strstr(err, says[i]) || lines(err) != 1) fail_msg("stderr '%s', want %s", err, says[i]);
        free(err);
        assert_int_equal(access("bad.html", F_OK), -1);
    }
    /* the text model's rows are (example, language) pairs; the peer answers beside its mistakes */
    char *sec = section(page, "tiny-dml/txt");
    assert_non_null(strstr(sec, "(example, language) pairs"));
    const char *gal = strstr(sec, "<div class=\"gallery\">");
    assert_non_null(gal);
    assert_non_null(strstr(gal, "peer: "));
    free(sec);
    free(page);
}

/* A pipeline folder: its steps' runs in the pipeline's order (not the folders' names'), each
 * student beside the teacher of its own seed. */
#define CHAIN_TEACHER                                                                            \
    "name: chain-teacher\ndata: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"                      \
    "train: {epochs: 2, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"            \
    "losses:\n  - kind: ce\n"
#define CHAIN_STUDENT                                                                            \
    "name: chain-student\ndata: {path: toy.xds, label_fraction: 0.05}\nmodel: \"" MLP_MODEL "\"\n" \
    "teachers:\n  - {name: t, checkpoint: \"step:teach\"}\n"                                    \
    "train: {epochs: 2, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.001}}\n"           \
    "losses:\n  - kind: ce\n  - {kind: kd, teacher: t, temperature: 2}\n"
#define CHAIN                                                                                    \
    "name: tiny-chain\nsteps:\n  - {name: teach, recipe: chain-teacher.yaml}\n"                  \
    "  - {name: learn, recipe: chain-student.yaml}\n"

static void pipeline_runs(void)
{
    static int done;
    if (done) return;
    classify_runs();
    tu_write_file("chain-teacher.yaml", CHAIN_TEACHER, strlen(CHAIN_TEACHER));
    tu_write_file("chain-student.yaml", CHAIN_STUDENT, strlen(CHAIN_STUDENT));
    tu_write_file("chain.yaml", CHAIN, strlen(CHAIN));
    assert_int_equal(xd("run chain.yaml --seeds 2 --quiet --out runs/chain"), 0);
    done = 1;
}

static void test_report_pipeline(void **state)
{
    (void)state;
    pipeline_runs();
    assert_int_equal(xd("report runs/chain --out chain.html"), 0);
    char *page = slurp("chain.html");
    static const char *const names[] = {"chain-teacher", "chain-student"};
    const char *at[2];
    for (int i = 0; i < 2; i++) {
        char *idx = tu_fmt("%d", i);
        check_row(page, names[i],
                  json_at("runs/chain/summary.json", "steps", idx, "final_test_acc", "mean", NULL),
                  json_at("runs/chain/summary.json", "steps", idx, "final_test_acc", "std", NULL));
        free(idx);
        char *tag = tu_fmt("data-run=\"%s\"><td>", names[i]);
        at[i] = strstr(page, tag);
        assert_non_null(at[i]);
        free(tag);
    }
    /* step teach first, as in the pipeline, although "learn" sorts before it */
    assert_true(at[0] < at[1]);
    char *sec = section(page, "chain-student");
    assert_non_null(strstr(sec, "Teacher &#39;t&#39; (runs/chain/seed-1/teach/best.safetensors)"));
    const char *seed2 = strstr(sec, "<summary>seed 2:");
    assert_non_null(seed2);
    assert_non_null(strstr(seed2, "Teacher &#39;t&#39; (runs/chain/seed-2/teach/best.safetensors)"));
    free(sec);
    free(page);
}

#define SEG_STUDENT                                                                              \
    "input h=16 w=16 c=1; conv2d out=8 k=3 pad=1; relu name=r1; maxpool k=2; conv2d out=8 k=3 "   \
    "pad=1; relu; upsample factor=2; add with=r1; conv2d out=3 k=1 name=logits head"
#define ITEMS                                                                                    \
    "name: tiny-items\ndata: {path: items.xds, augment: \"mean=0.5 std=0.25\"}\n"                \
    "model: \"input h=8 w=8 c=1; flatten; linear out=2 name=logits head\"\n"                     \
    "train: {epochs: 10, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.05}}\n"           \
    "losses: [{kind: ce}]\n"
#define SEG                                                                                      \
    "name: tiny-seg\ntask: segment\n"                                                          \
    "data: {path: scenes.xds, augment: \"mean=0.2 std=0.3\", labels_per_class: 1}\n"             \
    "model: \"" SEG_STUDENT "\"\n"                                                              \
    "teachers: [{name: cls, checkpoint: items-teacher/best.safetensors}]\n"                      \
    "train: {epochs: 3, batch: 8, threads: 1, optimizer: {kind: adamw, lr: 0.02}}\n"             \
    "losses: [{kind: ce}, {kind: dense, windows: blobs}]\n"

static void segment_runs(void)
{
    static int done;
    if (done) return;
    find_bin();
    scene_write("scenes.xds");
    scene_write_items("items.xds");
    tu_write_file("items.yaml", ITEMS, strlen(ITEMS));
    tu_write_file("seg.yaml", SEG, strlen(SEG));
    assert_int_equal(xd("train items.yaml --seed 1 --quiet --out items-teacher"), 0);
    assert_int_equal(xd("train seg.yaml --seeds 2 --quiet --out runs/seg"), 0);
    done = 1;
}

/* the labels of the confusion matrix's drawing fit in it (at HEAT_CHAR_W, 6.5 px a character) */
static void check_heat_labels(const char *sec)
{
    const char *svg = strstr(sec, "<svg class=\"heat\" viewBox=\"0 0 ");
    assert_non_null(svg);
    double W = strtod(svg + strlen("<svg class=\"heat\" viewBox=\"0 0 "), NULL);
    const char *end = strstr(svg, "</svg>");
    int n = 0;
    static const char tag[] = "class=\"collab\" transform=\"translate(";
    for (const char *p = svg; (p = strstr(p, tag)) && p < end; p++) {
        char *q;
        double x = strtod(p + strlen(tag), &q);
        double y = strtod(q, NULL);
        const char *t = strchr(p, '>') + 1;
        double len = 6.5 * (double)(strchr(t, '<') - t);
        /* rotated by -60 degrees: it ends 0.5 len to the right and 0.87 len above */
        if (x + 0.5 * len > W || y - 0.87 * len < 0)
            fail_msg("column label at (%g, %g), %g px long, leaves the %g px wide drawing", x, y,
                     len, W);
        n++;
    }
    assert_true(n > 0);
}

/* A segment run: mIoU curves, the per-pixel confusion matrix of each seed's best checkpoint
 * (its mIoU is the run's best), per-class IoU, the overlays, the dense loss's teacher. */
static void test_report_segment(void **state)
{
    (void)state;
    segment_runs();
    assert_int_equal(xd("report runs/seg --out seg.html"), 0);
    char *page = slurp("seg.html");
    check_row(page, "tiny-seg", json_at("runs/seg/summary.json", "final_test_miou", "mean", NULL),
              json_at("runs/seg/summary.json", "final_test_miou", "std", NULL));
    /* the pixel accuracy cell follows the score's */
    const char *row = strstr(page, "data-run=\"tiny-seg\"");
    const char *pix = strstr(strstr(row, "data-mean=") + 1, "data-mean=\"");
    assert_non_null(pix);
    double pm = strtod(pix + strlen("data-mean=\""), NULL);
    double pixel = json_at("runs/seg/summary.json", "final_test_pixel_acc", "mean", NULL);
    assert_true(fabs(pm - pixel) < 1e-7);
    assert_non_null(strstr(page, "final test mIoU"));
    static const char *const keys[] = {"test_miou", "test_pixel_acc", "train_acc", "loss",
                                       "loss.0.ce", "loss.1.dense"};
    for (int k = 0; k < 6; k++)
        if (!has_line(page, keys[k], "tiny-seg")) fail_msg("chart %s has no line of tiny-seg", keys[k]);
    assert_null(figure(page, "test_acc"));
    char *sec = section(page, "tiny-seg");
    for (int seed = 1; seed <= 2; seed++) {
        char *sum = tu_fmt("runs/seg/seed-%d/summary.json", seed);
        char *ev = tu_fmt("Evaluated (seed %d): <code>runs/seg/seed-%d/best.safetensors</code>",
                          seed, seed);
        const char *p = strstr(sec, ev);
        if (!p) fail_msg("no %s", ev);
        char *miou = tu_fmt(" mIoU %.2f%%", 100 * json_at(sum, "best_test_miou", NULL));
        if (!strstr(p, miou) || strstr(p, miou) > strstr(p, "</p>")) fail_msg("%s: want%s", ev, miou);
        free(miou);
        free(ev);
        free(sum);
    }
    assert_non_null(strstr(sec, "<summary>seed 2: mIoU "));
    /* per pixel, the mask's class names, IoU per class, every seed's eight overlays */
    assert_non_null(strstr(sec, "<th>pixels</th>"));
    assert_non_null(strstr(sec, "<th>IoU</th>"));
    assert_non_null(strstr(sec, ">background<"));
    int ov = 0;
    for (const char *p = sec; (p = strstr(p, "<img class=\"ov\"")); p++) ov++;
    assert_int_equal(ov, 2 * 8);
    assert_non_null(strstr(sec, "Teacher &#39;cls&#39; (items-teacher/best.safetensors)"));
    check_heat_labels(sec);
    for (const char *p = sec; (p = strstr(p, "<text class=\"count")); p++) {
        const char *t = strchr(p, '>') + 1;
        if (strchr(t, '<') - t > 4) fail_msg("a count wider than its cell: %.20s", t);
    }
    free(sec);
    free(page);
}

/* Runs of one recipe name trained two ways (a --set changes the recipe) are two rows, each named
 * after its --seeds folder with the figures of its own summary; a seed of the first found again
 * under another folder joins its row. */
static void test_report_variants(void **state)
{
    (void)state;
    classify_runs();
    assert_int_equal(xd("train student.yaml --seeds 2 --quiet --set train.batch=8 --out runs2/b8"),
                     0);
    assert_int_equal(xd("report \"runs/x<i>&'q/student\" runs2/b8 --out variants.html"), 0);
    char *page = slurp("variants.html");
    check_row(page, "tiny-student (student)",
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "mean", NULL),
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "std", NULL));
    check_row(page, "tiny-student (b8)", json_at("runs2/b8/summary.json", "final_test_acc", "mean", NULL),
              json_at("runs2/b8/summary.json", "final_test_acc", "std", NULL));
    assert_null(strstr(page, "data-run=\"tiny-student\""));
    free(page);
    /* the same recipe met twice, once as its --seeds folder and once as one seed: one row */
    assert_int_equal(xd("report \"runs/x<i>&'q/student/seed-1\" \"runs/x<i>&'q/student/seed-2\" "
                        "--out same.html"), 0);
    page = slurp("same.html");
    check_row(page, "tiny-student",
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "mean", NULL),
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "std", NULL));
    free(page);
    /* another thread count changes no result: a third seed so trained joins the row */
    assert_int_equal(xd("train student.yaml --seed 3 --quiet --set train.threads=2 --out runs3/t2"),
                     0);
    assert_int_equal(xd("report \"runs/x<i>&'q/student\" runs3/t2 --out threads.html"), 0);
    page = slurp("threads.html");
    assert_non_null(strstr(page, "<tr class=\"best\" data-run=\"tiny-student\""));
    assert_null(strstr(page, "tiny-student ("));
    free(page);
}

/* A score that moves by hundredths of a percent: no two ticks of its axis read the same. */
static void test_report_ticks(void **state)
{
    (void)state;
    find_bin();
    mkdir("flat", 0755);
    const char *sum = "{\"name\": \"flat\", \"seed\": 1, \"epochs\": 3, \"finished\": true, "
                      "\"final_test_acc\": 0.0186, \"best_test_acc\": 0.019, \"best_epoch\": 2}\n";
    const char *met = "{\"epoch\": 1, \"test_acc\": 0.0182, \"loss\": 2.44}\n"
                      "{\"epoch\": 2, \"test_acc\": 0.0190, \"loss\": 2.43}\n"
                      "{\"epoch\": 3, \"test_acc\": 0.0186, \"loss\": 2.42}\n";
    tu_write_file("flat/summary.json", sum, strlen(sum));
    tu_write_file("flat/metrics.jsonl", met, strlen(met));
    assert_int_equal(xd("report flat --no-eval --out flat.html"), 0);
    char *page = slurp("flat.html"), *f = figure(page, "test_acc");
    assert_non_null(f);
    char ticks[16][16];
    int n = 0;
    for (const char *p = f; (p = strstr(p, "<text class=\"ytick\"")) && n < 16; p++) {
        const char *t = strchr(p, '>') + 1;
        snprintf(ticks[n], sizeof ticks[n], "%.*s", (int)(strchr(t, '<') - t), t);
        for (int i = 0; i < n; i++)
            if (strcmp(ticks[i], ticks[n]) == 0) fail_msg("two ticks read %s", ticks[n]);
        n++;
    }
    assert_true(n >= 3);
    free(f);
    free(page);
}

/* A run whose best epoch was chosen on a validation split has no best_test_acc: its best score
 * is the test score at that epoch (test_acc_at_best); one chosen on the test split keeps its
 * best_test_acc. */
static void test_report_best_on_val(void **state)
{
    (void)state;
    const char *met = "{\"epoch\": 1, \"test_acc\": 0.5, \"val_acc\": 0.7}\n"
                      "{\"epoch\": 2, \"test_acc\": 0.6, \"val_acc\": 0.6}\n";
    const char *sums[2] = {
        "{\"name\": \"val\", \"seed\": 1, \"epochs\": 2, \"finished\": true, \"best_on\": "
        "\"val\", \"final_test_acc\": 0.6, \"best_val_acc\": 0.7, \"test_acc_at_best\": 0.5, "
        "\"best_epoch\": 1}\n",
        "{\"name\": \"test\", \"seed\": 1, \"epochs\": 2, \"finished\": true, \"best_on\": "
        "\"test\", \"final_test_acc\": 0.6, \"best_test_acc\": 0.6, \"best_epoch\": 2}\n"};
    const char *dirs[2] = {"byval", "bytest"};
    for (int i = 0; i < 2; i++) {
        mkdir(dirs[i], 0755);
        char *p = tu_fmt("%s/summary.json", dirs[i]);
        tu_write_file(p, sums[i], strlen(sums[i]));
        free(p);
        p = tu_fmt("%s/metrics.jsonl", dirs[i]);
        tu_write_file(p, met, strlen(met));
        free(p);
    }
    rp_set set;
    xd_err e;
    TU_OK(rp_set_load(dirs, 2, &set, &e));
    assert_int_equal(set.n_runs, 2);
    assert_true(set.runs[0].best_on_val);
    assert_true(fabs(set.runs[0].best_score - 0.5) < 1e-12);
    assert_int_equal(set.runs[0].best_epoch, 1);
    assert_false(set.runs[1].best_on_val);
    assert_true(fabs(set.runs[1].best_score - 0.6) < 1e-12);
    rp_set_free(&set);
}

/* Every kind of run on one page: it renders without a console message. */
static void test_report_renders(void **state)
{
    (void)state;
    classify_runs();
    model_runs();
    pipeline_runs();
    segment_runs();
    assert_int_equal(xd("report runs --out all.html"), 0);
    char *page = slurp("all.html");
    static const char *const rows[] = {"tiny-teacher", "tiny-dml/img", "tiny-dml/txt",
                                       "chain-student", "tiny-seg"};
    for (int i = 0; i < 5; i++) {
        char *sec = section(page, rows[i]);
        free(sec);
    }
    free(page);
    check_render("all.html");
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
        cmocka_unit_test(test_report_models),
        cmocka_unit_test(test_report_pipeline),
        cmocka_unit_test(test_report_segment),
        cmocka_unit_test(test_report_ticks),
        cmocka_unit_test(test_report_variants),
        cmocka_unit_test(test_report_best_on_val),
        cmocka_unit_test(test_report_renders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
