/* cli: `xdistill train` and `xdistill eval` as a user runs them (the program built next to this
 * test, build/xdistill), on the tiny data set of tests/support/tinyset.h: every option missing its
 * value says so; --seed N writes runs/NAME/seed-N like --seeds; --set with --resume changes only
 * the keys that may change; a finished run is left as it is and says so in one line; another
 * recipe cannot continue a run; a multi-seed run's folder is locked while it runs; what inspect says
 * about the files a run writes, truncated files and folders. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <math.h>

#include "distill/runlock.h"
#include "tests/support/dirsnap.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

#define RECIPE_BODY                                                                              \
    "data: {path: toy.xds}\n"                                                                    \
    "model: \"input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; linear out=4 "           \
    "name=logits head\"\n"                                                                       \
    "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"                        \
    "losses:\n  - kind: ce\n"
#define RECIPE "name: c\n" RECIPE_BODY

static int setup(void **state)
{
    (void)state;
    if (!exists("toy.xds")) {
        tiny_spec s = tiny_default();
        s.texts = 0;
        tiny_write("toy.xds", &s);
        tu_write_file("c.yaml", RECIPE, strlen(RECIPE));
    }
    return 0;
}

/* `xdistill CMD FIRST OPT`, OPT given last without its value: a usage error that says so. */
static void expect_needs_value(const char *cmd, const char *first, const char *opt)
{
    char *err, want[64];
    assert_int_equal(tu_run_cli(NULL, &err, cmd, first, opt, NULL), 2);
    snprintf(want, sizeof want, "%s needs a value", opt);
    if (!strstr(err, want)) fail_msg("%s %s: '%s' does not say '%s'", cmd, opt, err, want);
    free(err);
}

/* Every option that takes a value, given without one, says so (not "unknown option"). */
static void test_options_missing_their_value(void **state)
{
    (void)state;
    const char *train[] = {"--out", "--set", "--resume", "--seed", "--seeds", "--stop-after"};
    for (size_t i = 0; i < sizeof train / sizeof train[0]; i++)
        expect_needs_value("train", "c.yaml", train[i]);
    const char *eval[] = {"--model", "--data", "--split", "--view", "--label", "--exit",
                          "--predictions", "--precision"};
    for (size_t i = 0; i < sizeof eval / sizeof eval[0]; i++)
        expect_needs_value("eval", "--json", eval[i]);
}

/* An option with a value given twice is a usage error naming both values (which one was
 * meant?), as is one --set key given twice; a value that looks like an option is no option. */
static void test_options_given_twice(void **state)
{
    (void)state;
    static const struct {
        const char *cmd, *a[6], *says;
    } cases[] = {
        {"train", {"c.yaml", "--seed", "1", "--seed", "2"}, "--seed is given twice ('1' and '2')"},
        {"train", {"c.yaml", "--set", "train.epochs=1", "--set", "train.epochs=3"},
         "--set train.epochs is given twice ('train.epochs=1' and 'train.epochs=3')"},
        {"run", {"p.yaml", "--seeds", "2", "--seeds", "1"}, "--seeds is given twice ('2' and '1')"},
        {"run", {"p.yaml", "--set", "a.b=1", "--set", "a.b=2"}, "--set a.b is given twice"},
        {"eval", {"--model", "a", "--model", "b"}, "--model is given twice ('a' and 'b')"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *err;
        const char *const *a = cases[i].a;
        assert_int_equal(tu_run_cli(NULL, &err, cases[i].cmd, a[0], a[1], a[2], a[3], a[4], a[5]),
                         2);
        if (!strstr(err, cases[i].says)) fail_msg("%s: '%s', want '%s'", cases[i].cmd, err,
                                                  cases[i].says);
        free(err);
    }
    /* --set of two keys, and a --out whose folder is named like an option, are fine */
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--quiet", "--stop-after", "1",
                                "--set", "train.epochs=2", "--set", "train.batch=16", "--out",
                                "--seed", NULL),
                     0);
    assert_true(exists("--seed/metrics.jsonl"));
}

/* --seed N without --out writes runs/NAME/seed-N, as --seeds does; --out DIR is DIR exactly. */
static void test_seed_folder(void **state)
{
    (void)state;
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--seed", "3", "--stop-after", "1",
                             "--quiet", NULL), 0);
    assert_true(exists("runs/c/seed-3/metrics.jsonl"));
    assert_false(exists("runs/c/metrics.jsonl"));
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--seed", "4", "--out", "exact",
                             "--stop-after", "1", "--quiet", NULL), 0);
    assert_true(exists("exact/metrics.jsonl"));
    assert_false(exists("exact/seed-4"));
}

/* With --resume, --set may change only the keys of recipe_resume_keys; an allowed one is applied
 * and recorded in the run's recipe.yaml. */
static void test_resume_overrides(void **state)
{
    (void)state;
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--out", "ov", "--stop-after", "1",
                             "--quiet", NULL), 0);
    dirsnap *before = dirsnap_take("ov");
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "train", "--resume", "ov", "--set", "train.epochs=5",
                             "--quiet", NULL), 2);
    assert_non_null(strstr(err, "'train.epochs' cannot change when a run is resumed"));
    assert_non_null(strstr(err, "train.threads"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--resume", "ov", "--set",
                             "train.batch=8", "--quiet", NULL), 2);
    assert_non_null(strstr(err, "'train.batch' cannot change"));
    free(err);
    dirsnap_assert_same(before, "ov");
    dirsnap_free(before);
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "--resume", "ov", "--set", "train.threads=1",
                             "--quiet", NULL), 0);
    size_t n;
    char *yaml = tu_read_file("ov/recipe.yaml", &n);
    yaml = realloc(yaml, n + 1);
    yaml[n] = '\0';
    assert_non_null(strstr(yaml, "threads: 1\n"));
    free(yaml);
    assert_true(exists("ov/summary.json"));
}

/* A finished run, resumed: one line, exit 0, not a byte or a time changed; the same for a
 * multi-seed run. Another recipe cannot resume it. */
static void test_resume_finished(void **state)
{
    (void)state;
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--out", "done", "--quiet", NULL), 0);
    dirsnap *one = dirsnap_take("done");
    char *out;
    assert_int_equal(tu_run_cli(&out, NULL, "train", "--resume", "done", NULL), 0);
    assert_non_null(strstr(out, "done: already finished"));
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1); /* one line */
    free(out);
    dirsnap_assert_same(one, "done");

    const char *other = "name: other\n" RECIPE_BODY;
    tu_write_file("other.yaml", other, strlen(other));
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "train", "other.yaml", "--resume", "done", NULL), 1);
    assert_non_null(strstr(err, "other.yaml (recipe 'other')"));
    assert_non_null(strstr(err, "recipe 'c'"));
    free(err);
    dirsnap_assert_same(one, "done");
    dirsnap_free(one);

    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--seeds", "2", "--out", "many",
                             "--quiet", NULL), 0);
    dirsnap *top = dirsnap_take("many"), *s1 = dirsnap_take("many/seed-1"),
            *s2 = dirsnap_take("many/seed-2");
    assert_int_equal(tu_run_cli(&out, NULL, "train", "--resume", "many", NULL), 0);
    assert_non_null(strstr(out, "many: already finished (2 seeds)"));
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
    free(out);
    dirsnap_assert_same(top, "many");
    dirsnap_assert_same(s1, "many/seed-1");
    dirsnap_assert_same(s2, "many/seed-2");
    dirsnap_free(top);
    dirsnap_free(s1);
    dirsnap_free(s2);
}

/* A multi-seed run stops at once when its folder is held by another run, naming its pid. */
static void test_seeds_folder_locked(void **state)
{
    (void)state;
    assert_int_equal(mkdir("held", 0755), 0);
    runlock l;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(runlock_take(&l, "held", &e));
    dirsnap *before = dirsnap_take("held");
    char *err, want[64];
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--seeds", "2", "--out", "held",
                             "--quiet", NULL), 1);
    snprintf(want, sizeof want, "held: another run (pid %ld)", (long)getpid());
    if (!strstr(err, want)) fail_msg("'%s' does not say '%s'", err, want);
    free(err);
    dirsnap_assert_same(before, "held");
    dirsnap_free(before);
    runlock_release(&l);
}

/* `xdistill inspect PATH` exits with rc and says want (on stdout or stderr). */
static void expect(const char *path, int rc, const char *want)
{
    char *out, *err;
    int got = tu_run_cli(&out, &err, "inspect", path, NULL);
    if (got != rc || (!strstr(out, want) && !strstr(err, want)))
        fail_msg("xdistill inspect %s: exit %d, output:\n%s%s\nexpected exit %d and '%s'", path,
                 got, out, err, rc, want);
    free(out);
    free(err);
}

/* inspect shows what a run writes (it once said "unknown format"), names a truncated
 * safetensors file with its sizes, and a folder as a folder (it once said "empty file"). */
static void test_inspect_run_files(void **state)
{
    (void)state;
    const char *summary = "{\n  \"name\": \"t\",\n  \"epochs\": 2,\n  \"final_test_acc\": 0.5,\n"
                          "  \"best_epoch\": 1,\n  \"recipe\": \"name: t\\nseed: 1\\n\"\n}\n";
    const char *metrics = "{\"epoch\": 1, \"loss\": 0.5, \"test_acc\": null}\n"
                          "{\"epoch\": 2, \"loss\": 0.25, \"test_acc\": 0.75}\n";
    const char *recipe = "name: r\ndata: {path: nowhere.xds}\n"
                         "model: \"input h=2 w=2 c=1; flatten; linear out=3 name=logits head\"\n"
                         "train: {epochs: 4, batch: 8}\nlosses: [{kind: ce}]\n";
    mkdir("run", 0777);
    tu_write_file("run/summary.json", summary, strlen(summary));
    tu_write_file("run/metrics.jsonl", metrics, strlen(metrics));
    tu_write_file("run/recipe.yaml", recipe, strlen(recipe));
    expect("run/summary.json", 0, "run/summary.json: JSON object (run summary)");
    expect("run/summary.json", 0, "final_test_acc         0.5");
    expect("run/summary.json", 0, "recipe                 (text of 16 bytes)");
    expect("run/metrics.jsonl", 0, "2 records (metrics, one per epoch)");
    expect("run/metrics.jsonl", 0, "test_acc               0.75");
    expect("run/recipe.yaml", 0, "run/recipe.yaml: recipe 'r', valid");
    expect("run/recipe.yaml", 0, "model     2 nodes, 15 parameters, default head 'logits'");
    expect("run/recipe.yaml", 0, "stage 1   4 epochs: ce");
    tu_write_file("run/bad.yaml", "name: r\nmodel: 3\n", 17);
    expect("run/bad.yaml", 1, "not a valid recipe: run/bad.yaml");

    /* a safetensors file cut short: 500 bytes of header announced, 8 + 7 there */
    unsigned char cut[15] = {0xF4, 0x01, 0, 0, 0, 0, 0, 0, '{', '"', 'a', '"', ':', '1', '}'};
    tu_write_file("cut.safetensors", cut, sizeof cut);
    expect("cut.safetensors", 1, "cut.safetensors: truncated safetensors file: its header "
                                         "says 500 bytes of JSON follow the 8-byte length, the "
                                         "file has 15 bytes in all");
    expect("run", 1, "run: is a run folder; inspect one of its files: summary.json, "
                             "metrics.jsonl, recipe.yaml");
    mkdir("empty", 0777);
    expect("empty", 1, "empty: is a folder");
}

/* eval --exit NAME scores an early exit: the score the run's summary gives it; a name that is no
 * node, or a node that is no exit, is an error naming the checkpoint. */
static void test_eval_exit(void **state)
{
    (void)state;
    static const char *const recipe =
        "data: {path: toy.xds}\n"
        "model: \"input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; relu; maxpool k=2 name=b1; flatten; "
        "linear out=16 name=fc1; relu; linear out=4 name=logits head; gap from=b1; linear out=4 "
        "name=exit1 head\"\n"
        "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
        "losses:\n  - {kind: ce}\n  - {kind: ce, head: exit1}\n"
        "  - {kind: kd, from: student.logits, head: exit1, temperature: 3}\n";
    tu_write_file("ex.yaml", recipe, strlen(recipe));
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "ex.yaml", "--out", "ex", "--quiet", NULL), 0);
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, NULL, "eval", "--model", "ex/last.safetensors", "--data",
                             "toy.xds", "--exit", "exit1", "--json", NULL), 0);
    json_t *j = json_loads(out, 0, NULL), *s = json_load_file("ex/summary.json", 0, NULL);
    assert_non_null(j);
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(j, "exit")), "exit1");
    double want = json_real_value(json_object_get(json_object_get(json_object_get(s, "exits"),
                                                                  "exit1"), "final_test_acc"));
    assert_true(fabs(json_real_value(json_object_get(j, "accuracy")) - want) < 1e-6);
    json_decref(j);
    json_decref(s);
    free(out);
    assert_int_equal(tu_run_cli(NULL, &err, "eval", "--model", "ex/last.safetensors", "--data",
                             "toy.xds", "--exit", "exit2", NULL), 1);
    assert_non_null(strstr(err, "ex/last.safetensors: the model has no node 'exit2' (its exits: "
                                "logits or exit1)"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "eval", "--model", "ex/last.safetensors", "--data",
                             "toy.xds", "--exit", "fc1", NULL), 1);
    assert_non_null(strstr(err, "ex/last.safetensors: node 'fc1' is not an exit"));
    free(err);
}

/* A tiny model trained once for the eval tests. */
static void ensure_eval_model(void)
{
    if (exists("evr/best.safetensors")) return;
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--out", "evr", "--quiet", NULL), 0);
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) fail_msg("not JSON (%s): %s", je.text, text);
    return j;
}

static json_t *eval_json(const char *data)
{
    char *out, *err;
    int rc = tu_run_cli(&out, &err, "eval", "--model", "evr/best.safetensors", "--data", data,
                     "--json", NULL);
    if (rc != 0) fail_msg("eval --json on %s: exit %d: %s", data, rc, err);
    json_t *j = parse(out);
    free(out);
    free(err);
    return j;
}

static double jnum(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) fail_msg("'%s' is missing or not a number", key);
    return json_number_value(v);
}

/* eval --json: its figures agree with its own confusion matrix (accuracy its trace, balanced
 * accuracy the mean recall, precision per column) and the class names; --predictions has one
 * line per test example whose answers give that accuracy and whose probabilities give that
 * calibration error (15 bins, computed here anew); a data set with the classes in reverse order
 * scores the same, matched by name, and one with an unknown class is an error listing both. */
static void test_eval_report(void **state)
{
    (void)state;
    ensure_eval_model();
    json_t *j = eval_json("toy.xds");
    assert_int_equal((int)jnum(j, "examples"), 100);
    json_t *cm = json_object_get(j, "confusion"), *cls = json_object_get(j, "classes");
    assert_int_equal(json_array_size(cm), 4);
    static const char *const names[4] = {"top-left", "top-right", "bottom-left", "bottom-right"};
    double trace = 0.0, recall_sum = 0.0;
    for (int t = 0; t < 4; t++) {
        double row = 0.0, col = 0.0;
        for (int p = 0; p < 4; p++) {
            row += (double)json_integer_value(json_array_get(json_array_get(cm, (size_t)t), (size_t)p));
            col += (double)json_integer_value(json_array_get(json_array_get(cm, (size_t)p), (size_t)t));
        }
        double tp = (double)json_integer_value(json_array_get(json_array_get(cm, (size_t)t), (size_t)t));
        assert_int_equal((int)row, 25);
        trace += tp;
        recall_sum += tp / row;
        json_t *c = json_array_get(cls, (size_t)t);
        assert_string_equal(json_string_value(json_object_get(c, "name")), names[t]);
        assert_true(fabs(jnum(c, "recall") - tp / row) < 1e-6);
        if (col > 0) assert_true(fabs(jnum(c, "precision") - tp / col) < 1e-6);
    }
    const double acc = jnum(j, "accuracy"), ece = jnum(j, "ece");
    assert_true(fabs(acc - trace / 100.0) < 1e-9);
    assert_true(fabs(jnum(j, "balanced_accuracy") - recall_sum / 4.0) < 1e-6);

    /* --predictions */
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "eval", "--model", "evr/best.safetensors", "--data",
                             "toy.xds", "--predictions", "p.jsonl", NULL), 0);
    assert_non_null(strstr(out, "balanced accuracy"));
    assert_non_null(strstr(out, "expected calibration error"));
    assert_non_null(strstr(out, "confusion matrix"));
    free(out);
    free(err);
    size_t n;
    char *text = tu_read_file("p.jsonl", &n);
    int lines = 0, right = 0;
    double bin_n[15] = {0}, bin_right[15] = {0}, bin_conf[15] = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_t *l = parse(line);
        const int idx = (int)jnum(l, "index"), label = (int)jnum(l, "label");
        const int pred = (int)jnum(l, "prediction");
        assert_int_equal(idx, lines);
        assert_int_equal(label, lines % 4);
        assert_string_equal(json_string_value(json_object_get(l, "label_name")), names[label]);
        json_t *p = json_object_get(l, "probabilities");
        assert_int_equal(json_array_size(p), 4);
        double sum = 0.0, best = -1.0;
        int arg = -1;
        for (int k = 0; k < 4; k++) {
            double v = json_number_value(json_array_get(p, (size_t)k));
            sum += v;
            if (v > best) best = v, arg = k;
        }
        assert_true(fabs(sum - 1.0) < 1e-4);
        assert_int_equal(arg, pred);
        right += label == pred;
        int b = (int)ceil(best * 15.0) - 1;
        b = b < 0 ? 0 : b > 14 ? 14 : b;
        bin_n[b]++;
        bin_right[b] += label == pred;
        bin_conf[b] += best;
        json_decref(l);
    }
    free(text);
    assert_int_equal(lines, 100);
    assert_true(fabs(right / 100.0 - acc) < 1e-9);
    double want = 0.0;
    for (int b = 0; b < 15; b++)
        if (bin_n[b] > 0) want += bin_n[b] / 100.0 * fabs(bin_right[b] / bin_n[b] - bin_conf[b] / bin_n[b]);
    if (fabs(want - ece) > 1e-4) fail_msg("ECE %.6f, from the predictions %.6f", ece, want);

    /* the same examples, classes stored in reverse order: matched by name */
    tiny_spec rs = tiny_default();
    rs.texts = 0;
    rs.reversed = 1;
    tiny_write("reversed.xds", &rs);
    json_t *r = eval_json("reversed.xds");
    assert_true(fabs(jnum(r, "accuracy") - acc) < 1e-12);
    assert_true(json_equal(json_object_get(r, "confusion"), cm));
    json_decref(r);
    json_decref(j);
    /* an unknown class */
    rs.reversed = 0;
    rs.class0 = "middle";
    tiny_write("middle.xds", &rs);
    assert_int_equal(tu_run_cli(NULL, &err, "eval", "--model", "evr/best.safetensors", "--data",
                             "middle.xds", NULL), 1);
    if (!strstr(err, "'middle'") || !strstr(err, "top-left, top-right, bottom-left, bottom-right"))
        fail_msg("eval on a set with an unknown class: %s", err);
    free(err);
    /* a predictions file that cannot be written: exit 1, nothing left behind */
    assert_int_equal(tu_run_cli(NULL, &err, "eval", "--model", "evr/best.safetensors", "--data",
                             "toy.xds", "--predictions", "no/such/folder/p.jsonl", NULL), 1);
    assert_non_null(strstr(err, "no/such/folder"));
    free(err);
}

/* The probabilities of a --predictions file, in order (rows x 4) */
static double *read_probabilities(const char *path, int rows)
{
    size_t n;
    char *text = tu_read_file(path, &n);
    double *p = calloc((size_t)rows * 4, sizeof(double));
    assert_non_null(p);
    int r = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), r++) {
        assert_true(r < rows);
        json_t *l = parse(line);
        for (int k = 0; k < 4; k++)
            p[r * 4 + k] = json_number_value(json_array_get(json_object_get(l, "probabilities"),
                                                            (size_t)k));
        json_decref(l);
    }
    assert_int_equal(r, rows);
    free(text);
    return p;
}

/* eval --precision bf16 runs the products in bf16: the JSON says so, the text line too, the
 * probabilities move (within what bf16's rounding allows) and float32 is the default; an unknown
 * precision is a usage error. */
static void test_eval_precision(void **state)
{
    (void)state;
    ensure_eval_model();
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "eval", "--model", "evr/best.safetensors", "--data",
                             "toy.xds", "--precision", "bf16", "--json", NULL), 0);
    json_t *j = parse(out);
    assert_string_equal(json_string_value(json_object_get(j, "precision")), "bf16");
    assert_int_equal((int)jnum(j, "examples"), 100);
    json_decref(j);
    free(out);
    free(err);
    json_t *f = eval_json("toy.xds");
    assert_string_equal(json_string_value(json_object_get(f, "precision")), "float32");
    json_decref(f);
    assert_int_equal(tu_run_cli(&out, &err, "eval", "--model", "evr/best.safetensors", "--data",
                             "toy.xds", "--precision", "bf16", "--predictions", "pb.jsonl", NULL),
                     0);
    assert_non_null(strstr(out, ", bf16 products): accuracy"));
    free(out);
    free(err);
    assert_int_equal(tu_run_cli(&out, &err, "eval", "--model", "evr/best.safetensors", "--data",
                             "toy.xds", "--precision", "float32", "--predictions", "pf.jsonl",
                             NULL),
                     0);
    assert_null(strstr(out, "bf16"));
    free(out);
    free(err);
    double *pb = read_probabilities("pb.jsonl", 100), *pf = read_probabilities("pf.jsonl", 100);
    double most = 0.0;
    for (int i = 0; i < 400; i++) most = fmax(most, fabs(pb[i] - pf[i]));
    print_message("bf16 against float32: probabilities at most %.2e apart\n", most);
    assert_true(most > 0.0 && most < 0.05);
    free(pb);
    free(pf);
    assert_int_equal(tu_run_cli(NULL, &err, "eval", "--model", "evr/best.safetensors", "--data",
                             "toy.xds", "--precision", "half", NULL),
                     2);
    assert_non_null(strstr(err, "--precision: unknown value 'half' (expected float32 or bf16)"));
    free(err);
}

/* train says when best.safetensors is chosen on the test split, and not when a validation split
 * chooses it. */
static void test_train_validation_note(void **state)
{
    (void)state;
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--out", "note1", "--stop-after", "1",
                             NULL), 0);
    assert_non_null(strstr(err, "note: no validation split"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--out", "note2", "--stop-after", "1",
                             "--set", "data.val_fraction=0.2", NULL), 0);
    assert_null(strstr(err, "note: no validation split"));
    free(err);
}

/* inspect --split lists a split: its first rows, all of them with --all, as JSON with --json
 * (each label with its class name). */
static void test_inspect_split(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "inspect", "toy.xds", "--split", "test", NULL), 0);
    assert_non_null(strstr(out, "split 'test', 100 examples (the first listed"));
    assert_non_null(strstr(out, "  5  1 (top-right)  0 (top)"));
    assert_null(strstr(out, "\n  20  "));
    free(out);
    free(err);
    assert_int_equal(tu_run_cli(&out, &err, "inspect", "toy.xds", "--split", "test", "--all",
                             "--json", NULL), 0);
    json_t *j = parse(out);
    json_t *rows = json_object_get(j, "rows");
    assert_int_equal(json_array_size(rows), 100);
    for (size_t i = 0; i < 100; i++) {
        json_t *row = json_array_get(rows, i);
        assert_int_equal((int)jnum(row, "index"), (int)i);
        assert_int_equal((int)jnum(row, "label"), tiny_label((int)i));
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 99), "label_class")),
                        "bottom-right");
    json_decref(j);
    free(out);
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "inspect", "toy.xds", "--split", "val", NULL), 1);
    assert_non_null(strstr(err, "no split 'val'"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, NULL, "inspect", "toy.xds", "--all", NULL), 2);
}

/* A seed the recipe allows, paired on the command line with a count whose last seed overflows: a
 * usage error before anything is made (it trained a negative seed's folder). */
static void test_seeds_overflow(void **state)
{
    (void)state;
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--set",
                                "seed=9223372036854775807", "--seeds", "2", "--out", "over", NULL),
                     2);
    assert_non_null(strstr(err, "seed 9223372036854775807 with --seeds 2: the last seed"));
    free(err);
    assert_false(exists("over"));
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--seed", "2000000000000", NULL), 2);
    assert_non_null(strstr(err, "--seed takes a number in 0..1099511627776"));
    free(err);
}

/* A decaying schedule whose steps the run works out must end after its warmup: 2 epochs of 13
 * steps cannot warm up over 1000 (it trained at the warmup's first rates throughout); one whose
 * total_steps is given must not end before the run at a learning rate of 0. */
static void test_warmup_longer_than_run(void **state)
{
    (void)state;
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--quiet", "--set",
                                "train.schedule.kind=cosine", "--set",
                                "train.schedule.warmup_steps=1000", "--out", "warm", NULL),
                     1);
    assert_non_null(strstr(err, "warmup_steps 1000 is not shorter than the run's 26 steps"));
    free(err);
    assert_false(exists("warm"));
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--quiet", "--set",
                                "train.schedule.kind=cosine", "--set",
                                "train.schedule.warmup_steps=25", "--out", "warm", NULL),
                     0);
    /* total_steps given, shorter than the run: a decay to 0 that leaves the last steps at 0 is
     * refused; to a floor above 0, or as long as the run, it runs */
    assert_int_equal(tu_run_cli(NULL, &err, "train", "c.yaml", "--quiet", "--set",
                                "train.schedule.kind=linear", "--set",
                                "train.schedule.total_steps=1", "--out", "short", NULL),
                     1);
    assert_non_null(strstr(err, "total_steps 1 is shorter than the run's 26 steps, so the "
                                "learning rate would be 0 (min_lr) for its last 25"));
    free(err);
    assert_false(exists("short"));
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--quiet", "--set",
                                "train.schedule.kind=cosine", "--set",
                                "train.schedule.total_steps=10", "--set",
                                "train.schedule.min_lr=0.0001", "--out", "short", NULL),
                     0);
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "c.yaml", "--quiet", "--set",
                                "train.schedule.kind=cosine", "--set",
                                "train.schedule.total_steps=26", "--out", "short26", NULL),
                     0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_options_missing_their_value, setup),
        cmocka_unit_test_setup(test_options_given_twice, setup),
        cmocka_unit_test_setup(test_seed_folder, setup),
        cmocka_unit_test_setup(test_resume_overrides, setup),
        cmocka_unit_test_setup(test_resume_finished, setup),
        cmocka_unit_test_setup(test_seeds_folder_locked, setup),
        cmocka_unit_test(test_inspect_run_files),
        cmocka_unit_test_setup(test_eval_exit, setup),
        cmocka_unit_test_setup(test_eval_report, setup),
        cmocka_unit_test_setup(test_eval_precision, setup),
        cmocka_unit_test_setup(test_train_validation_note, setup),
        cmocka_unit_test_setup(test_inspect_split, setup),
        cmocka_unit_test_setup(test_seeds_overflow, setup),
        cmocka_unit_test_setup(test_warmup_longer_than_run, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
