/* `xdistill report` on the runs of the other kinds, trained by this test with the program itself:
 * runs of several models have a row, curves and an evaluation per model; pipeline runs come in
 * the pipeline's order; segment runs show mIoU curves, a per-pixel confusion matrix that gives
 * the run's mIoU, per-class IoU and the overlays; every seed has its evaluation; a recipe trained
 * two ways is two rows, another thread count none; axis ticks stay apart; the best checkpoint
 * chosen on a validation split is said. A page holding every kind renders in headless Chromium
 * (a screenshot that is not blank, no console message) when chromium is installed. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report/runs.h"
#include "tests/support/reportfix.h"
#include "tests/support/sceneset.h"

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
    rp_row_figures(page, name, &m, &sd);
    if (fabs(m - mean) > 1e-7 || fabs(sd - std) > 1e-7)
        fail_msg("%s: table %.10g +- %.10g, summary %.10g +- %.10g", name, m, sd, mean, std);
}

/* 1 when chart key has a line of run name */
static int has_line(const char *page, const char *key, const char *name)
{
    char *f = rp_figure(page, key), *tag = tu_fmt("data-run=\"%s\" d=\"M", name);
    int yes = f && strstr(f, tag);
    free(f);
    free(tag);
    return yes;
}

/* the value a chart's point gives for run name at epoch t (its <title>) */
static double point(const char *page, const char *key, const char *name, int t)
{
    char *f = rp_figure(page, key), *tag = tu_fmt("<title>%s, epoch %d: ", name, t);
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
    char *text = rp_slurp(path);
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
    "name: tiny-dml\ndata: {path: toy.xds, text: \"buckets=512\", label_fraction: 0.2}\n"        \
    "models:\n  - {name: img, model: \"" RP_MLP_MODEL "\"}\n"                                    \
    "  - {name: txt, model: \"" RP_TEXT_MODEL "\", view: text.*}\n"                              \
    "train: {epochs: 3, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"            \
    "losses:\n  - {kind: ce, model: img}\n  - {kind: ce, model: txt}\n"                         \
    "  - {kind: kd, from: txt, to: img, temperature: 1, weight: 0.5}\n"                          \
    "  - {kind: kd, from: img, to: txt, temperature: 1}\n"

static void model_runs(void)
{
    static int done;
    if (done) return;
    rp_classify_runs();
    tu_write_file("dml.yaml", DML, strlen(DML));
    assert_int_equal(rp_xd("train dml.yaml --seeds 2 --quiet --out runs/dml"), 0);
    done = 1;
}

static void test_report_models(void **state)
{
    (void)state;
    model_runs();
    assert_int_equal(rp_xd("report runs/dml --out dml.html"), 0);
    char *page = rp_slurp("dml.html");
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
                               100 * json_at(sum, "models", models[k], "test_acc_at_best", NULL));
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
        assert_int_equal(rp_xd("report bad --out bad.html"), 1);
        char *err = rp_slurp("err.txt");
        if (!strstr(err, says[i]) || rp_lines(err) != 1) fail_msg("stderr '%s', want %s", err, says[i]);
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
    "name: chain-teacher\ndata: {path: toy.xds}\nmodel: \"" RP_MLP_MODEL "\"\n"                  \
    "train: {epochs: 2, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"            \
    "losses:\n  - kind: ce\n"
#define CHAIN_STUDENT                                                                            \
    "name: chain-student\ndata: {path: toy.xds, label_fraction: 0.05}\n"                         \
    "model: \"" RP_MLP_MODEL "\"\n"                                                              \
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
    rp_classify_runs();
    tu_write_file("chain-teacher.yaml", CHAIN_TEACHER, strlen(CHAIN_TEACHER));
    tu_write_file("chain-student.yaml", CHAIN_STUDENT, strlen(CHAIN_STUDENT));
    tu_write_file("chain.yaml", CHAIN, strlen(CHAIN));
    assert_int_equal(rp_xd("run chain.yaml --seeds 2 --quiet --out runs/chain"), 0);
    done = 1;
}

static void test_report_pipeline(void **state)
{
    (void)state;
    pipeline_runs();
    assert_int_equal(rp_xd("report runs/chain --out chain.html"), 0);
    char *page = rp_slurp("chain.html");
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
    "input h=16 w=16 c=1; conv2d out=8 k=3 pad=1; relu name=r1; maxpool k=2; conv2d out=8 k=3 "  \
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
    scene_write("scenes.xds");
    scene_write_items("items.xds");
    tu_write_file("items.yaml", ITEMS, strlen(ITEMS));
    tu_write_file("seg.yaml", SEG, strlen(SEG));
    assert_int_equal(rp_xd("train items.yaml --seed 1 --quiet --out items-teacher"), 0);
    assert_int_equal(rp_xd("train seg.yaml --seeds 2 --quiet --out runs/seg"), 0);
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
    assert_int_equal(rp_xd("report runs/seg --out seg.html"), 0);
    char *page = rp_slurp("seg.html");
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
    assert_null(rp_figure(page, "test_acc"));
    char *sec = section(page, "tiny-seg");
    for (int seed = 1; seed <= 2; seed++) {
        char *sum = tu_fmt("runs/seg/seed-%d/summary.json", seed);
        char *ev = tu_fmt("Evaluated (seed %d): <code>runs/seg/seed-%d/best.safetensors</code>",
                          seed, seed);
        const char *p = strstr(sec, ev);
        if (!p) fail_msg("no %s", ev);
        char *miou = tu_fmt(" mIoU %.2f%%", 100 * json_at(sum, "test_miou_at_best", NULL));
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
    rp_classify_runs();
    assert_int_equal(
        rp_xd("train student.yaml --seeds 2 --quiet --set train.batch=8 --out runs2/b8"), 0);
    assert_int_equal(rp_xd("report \"runs/x<i>&'q/student\" runs2/b8 --out variants.html"), 0);
    char *page = rp_slurp("variants.html");
    check_row(page, "tiny-student (student)",
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "mean", NULL),
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "std", NULL));
    check_row(page, "tiny-student (b8)", json_at("runs2/b8/summary.json", "final_test_acc", "mean", NULL),
              json_at("runs2/b8/summary.json", "final_test_acc", "std", NULL));
    assert_null(strstr(page, "data-run=\"tiny-student\""));
    free(page);
    /* the same recipe met twice, once as its --seeds folder and once as one seed: one row */
    assert_int_equal(rp_xd("report \"runs/x<i>&'q/student/seed-1\" \"runs/x<i>&'q/student/seed-2\" "
                        "--out same.html"), 0);
    page = rp_slurp("same.html");
    check_row(page, "tiny-student",
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "mean", NULL),
              json_at("runs/x<i>&'q/student/summary.json", "final_test_acc", "std", NULL));
    free(page);
    /* another thread count changes no result: a third seed so trained joins the row */
    assert_int_equal(
        rp_xd("train student.yaml --seed 3 --quiet --set train.threads=2 --out runs3/t2"), 0);
    assert_int_equal(rp_xd("report \"runs/x<i>&'q/student\" runs3/t2 --out threads.html"), 0);
    page = rp_slurp("threads.html");
    assert_non_null(strstr(page, "<tr class=\"best\" data-run=\"tiny-student\""));
    assert_null(strstr(page, "tiny-student ("));
    free(page);
}

/* A score that moves by hundredths of a percent: no two ticks of its axis read the same. */
static void test_report_ticks(void **state)
{
    (void)state;
    mkdir("flat", 0755);
    const char *sum = "{\"name\": \"flat\", \"seed\": 1, \"epochs\": 3, \"finished\": true, "
                      "\"final_test_acc\": 0.0186, \"best_test_acc\": 0.019, \"best_epoch\": 2}\n";
    const char *met = "{\"epoch\": 1, \"test_acc\": 0.0182, \"loss\": 2.44}\n"
                      "{\"epoch\": 2, \"test_acc\": 0.0190, \"loss\": 2.43}\n"
                      "{\"epoch\": 3, \"test_acc\": 0.0186, \"loss\": 2.42}\n";
    tu_write_file("flat/summary.json", sum, strlen(sum));
    tu_write_file("flat/metrics.jsonl", met, strlen(met));
    assert_int_equal(rp_xd("report flat --no-eval --out flat.html"), 0);
    char *page = rp_slurp("flat.html"), *f = rp_figure(page, "test_acc");
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
    rp_classify_runs();
    model_runs();
    pipeline_runs();
    segment_runs();
    assert_int_equal(rp_xd("report runs --out all.html"), 0);
    char *page = rp_slurp("all.html");
    static const char *const rows[] = {"tiny-teacher", "tiny-dml/img", "tiny-dml/txt",
                                       "chain-student", "tiny-seg"};
    for (int i = 0; i < 5; i++) {
        char *sec = section(page, rows[i]);
        free(sec);
    }
    free(page);
    rp_check_render("all.html");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
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
