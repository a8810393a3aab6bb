/* distill/trainer: whole runs of recipes on a tiny synthetic data set (tests/support/tinyset.h)
 * that the tests write themselves. A CNN teacher learns the toy task; its run folder holds the
 * metrics, summary, checkpoints and effective recipe, and they agree with each other. Runs are
 * bit-reproducible per seed and thread count, and a run stopped and resumed (inside a stage or at
 * a stage boundary) ends byte for byte where the uninterrupted run does. Students learn from the
 * teacher (KD, Hinton, feature losses with projectors, FitNets hint stages with frozen upper
 * layers, attention transfer, two teachers), through the teacher-output cache, and across
 * modalities (a text student taught by an image teacher without a single label, an image student
 * taught by a text teacher). Numerical blow-ups stop the run with the epoch, the step and the
 * layer, keeping the last good checkpoint; bad recipes get messages that name the problem; the
 * schedule, eval_every, label_fraction and the preprocessing words do what docs/RECIPES.md says.
 * Runs that could crash (buffer bounds) run in a child process of this program. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "align/clip.h"
#include "core/mem.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "distill/kd.h"
#include "distill/recipe.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/safetensors.h"
#include "nn/model.h"
#include "distill/runlock.h"
#include "tests/support/dirsnap.h"
#include "tests/support/imgfix.h"
#include "tests/support/tinyset.h"

/* ---------------------------------------------------------------------------------------------
 * models (8x8 grey input, 4 classes) */

#define TEACHER_MODEL                                                                            \
    "input h=8 w=8 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu name=r1; maxpool k=2 name=pool1; " \
    "flatten; linear out=32 name=fc1; relu name=feat; linear out=4 name=logits head"
#define MLP_MODEL                                                                                \
    "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu name=feat; linear out=4 "          \
    "name=logits head"
#define CNN_MODEL                                                                                \
    "input h=8 w=8 c=1; conv2d name=conv1 out=4 k=3 pad=1; relu name=r1; maxpool k=2 "           \
    "name=pool1; flatten; linear out=4 name=logits head"
#define TEXT_MODEL                                                                               \
    "input tokens=64; embbag vocab=512 out=16 mode=mean name=emb; linear out=4 name=logits head"

#define TEACHER_CKPT "teacher/best.safetensors"
enum { N_TRAIN = 200, N_TEST = 100, BATCH = 16, STEPS = (N_TRAIN + BATCH - 1) / BATCH };

/* ---------------------------------------------------------------------------------------------
 * helpers */

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Writes text to NAME.yaml and loads it. */
static void load_recipe(const char *name, const char *text, recipe *r)
{
    char *path = tu_fmt("%s.yaml", name);
    tu_write_file(path, text, strlen(text));
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load(path, NULL, 0, r, &e) != XD_OK) fail_msg("recipe %s: %s", path, e.msg);
    free(path);
}

/* One trainer run of a recipe text; returns the status, e holds the message. */
static xd_status run_text(const char *name, const char *text, const char *out, long seed,
                          int stop_after, int resume, train_result *res, xd_err *e)
{
    recipe r;
    load_recipe(name, text, &r);
    train_opts o = {.out_dir = out, .resume = resume, .stop_after = stop_after, .quiet = 1};
    xd_err_clear(e);
    xd_status s = trainer_run(&r, seed, &o, res, e);
    recipe_free(&r);
    return s;
}

static train_result run_ok(const char *name, const char *text, const char *out, long seed,
                           int stop_after, int resume)
{
    train_result res;
    xd_err e;
    if (run_text(name, text, out, seed, stop_after, resume, &res, &e) != XD_OK)
        fail_msg("run %s -> %s failed: %s", name, out, e.msg);
    return res;
}

static char *path2(const char *dir, const char *name) { return tu_fmt("%s/%s", dir, name); }

/* DIR/metrics.jsonl as a JSON array of its lines (each must parse as an object). */
static json_t *read_metrics(const char *dir)
{
    char *path = path2(dir, "metrics.jsonl");
    size_t n;
    char *text = tu_read_file(path, &n);
    json_t *all = json_array();
    int line = 0;
    for (char *p = text, *next; p && *p; p = next) {
        next = strchr(p, '\n');
        if (!next) fail_msg("%s: line %d does not end in a newline", path, line + 1);
        *next++ = '\0';
        line++;
        json_error_t je;
        json_t *j = json_loads(p, 0, &je);
        if (!j || !json_is_object(j)) fail_msg("%s:%d: not a JSON object: %s", path, line, je.text);
        json_array_append_new(all, j);
    }
    free(text);
    free(path);
    return all;
}

static double num(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v || !json_is_number(v)) fail_msg("metrics: '%s' is missing or not a number", key);
    return json_number_value(v);
}

/* The metrics of two runs agree line by line on everything but the timing fields. */
static void assert_same_metrics(const char *dir_a, const char *dir_b)
{
    json_t *a = read_metrics(dir_a), *b = read_metrics(dir_b);
    if (json_array_size(a) != json_array_size(b))
        fail_msg("%s has %zu metric lines, %s %zu", dir_a, json_array_size(a), dir_b,
                 json_array_size(b));
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *x = json_deep_copy(json_array_get(a, i)), *y = json_deep_copy(json_array_get(b, i));
        const char *timing[] = {"seconds", "images_per_s"};
        for (int k = 0; k < 2; k++) {
            assert_non_null(json_object_get(x, timing[k]));
            json_object_del(x, timing[k]);
            json_object_del(y, timing[k]);
        }
        if (!json_equal(x, y)) {
            char *sx = json_dumps(x, JSON_SORT_KEYS), *sy = json_dumps(y, JSON_SORT_KEYS);
            fail_msg("metrics line %zu differs:\n  %s: %s\n  %s: %s", i + 1, dir_a, sx, dir_b, sy);
        }
        json_decref(x);
        json_decref(y);
    }
    json_decref(a);
    json_decref(b);
}

static void load_ckpt(const char *path, nn_model *m)
{
    xd_err e;
    xd_err_clear(&e);
    if (ckpt_load(path, BATCH, m, &e) != XD_OK) fail_msg("ckpt_load %s: %s", path, e.msg);
}

/* A split of a data set opened for a model, with its labels and a batch buffer. */
typedef struct {
    io_dataset *ds;
    feed f;
    const int32_t *y;
    void *input;
} split_feed;

static void open_split(split_feed *sf, const char *data, const char *split, const char *view,
                       const nn_model *m, const char *augment, const char *text)
{
    xd_err e;
    xd_err_clear(&e);
    if (io_dataset_open(data, &sf->ds, &e) != XD_OK) fail_msg("%s", e.msg);
    if (feed_open(&sf->f, sf->ds, split, view, m, augment, text, &e) != XD_OK) fail_msg("%s", e.msg);
    char name[64];
    snprintf(name, sizeof name, "%s/label", split);
    const io_tensor *t = io_dataset_find(sf->ds, name);
    assert_non_null(t);
    sf->y = t->data;
    sf->input = xd_xmalloc_aligned(feed_example_bytes(&sf->f) * (size_t)m->max_batch);
}

static void close_split(split_feed *sf)
{
    free(sf->input);
    feed_close(&sf->f);
    io_dataset_close(sf->ds);
}

static double accuracy(nn_model *m, const char *data, const char *view, const char *augment,
                       const char *text)
{
    split_feed sf;
    open_split(&sf, data, "test", view, m, augment, text);
    xd_err e;
    xd_err_clear(&e);
    double acc = -1.0;
    if (trainer_evaluate(m, nn_model_default_head(m), &sf.f, sf.y, sf.input, &acc, &e) != XD_OK)
        fail_msg("trainer_evaluate: %s", e.msg);
    close_split(&sf);
    return acc;
}

/* The data set and the teacher, made once and shared by the tests that need them. */
static void ensure_data(void)
{
    if (exists("toy.xds")) return;
    tiny_spec s = tiny_default();
    tiny_write("toy.xds", &s);
}

static const char *const teacher_recipe =
    "name: teacher\n"
    "seed: 1\n"
    "data: {path: toy.xds}\n"
    "model: \"" TEACHER_MODEL "\"\n"
    "train:\n"
    "  epochs: 4\n"
    "  batch: 16\n"
    "  optimizer: {kind: adamw, lr: 0.01}\n"
    "losses:\n"
    "  - kind: ce\n";

static train_result teacher_res;

static void ensure_teacher(void)
{
    ensure_data();
    if (teacher_res.finished) return;
    teacher_res = run_ok("teacher", teacher_recipe, "teacher", 1, 0, 0);
}

/* A student recipe: header lines (data, model, teachers) + train + losses. */
static char *student_recipe(const char *data_extra, const char *model, const char *teachers,
                            int epochs, const char *optimizer, const char *losses)
{
    return tu_fmt("data:\n"
               "  path: toy.xds\n"
               "%s"
               "model: \"%s\"\n"
               "%s"
               "train:\n"
               "  epochs: %d\n"
               "  batch: 16\n"
               "  optimizer: %s\n"
               "losses:\n"
               "%s",
               data_extra, model, teachers, epochs, optimizer, losses);
}

#define TEACHERS "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT "}\n"

/* ---------------------------------------------------------------------------------------------
 * 1. a teacher learns the task; its run folder is complete and consistent */

static void test_teacher_run_folder(void **state)
{
    (void)state;
    ensure_teacher();
    const train_result *res = &teacher_res;
    assert_int_equal(res->epochs_done, 4);
    assert_int_equal(res->finished, 1);
    assert_int_equal(res->seed, 1);
    if (!(res->final_acc >= 0.95)) fail_msg("teacher test accuracy %.3f < 0.95", res->final_acc);
    assert_true(res->best_acc >= res->final_acc);
    assert_true(res->best_epoch >= 1 && res->best_epoch <= 4);

    /* metrics: one line per epoch, in order, with the test accuracy */
    json_t *m = read_metrics("teacher");
    assert_int_equal(json_array_size(m), 4);
    double best = -1.0;
    int best_epoch = 0;
    for (int i = 0; i < 4; i++) {
        json_t *l = json_array_get(m, (size_t)i);
        assert_int_equal((int)num(l, "epoch"), i + 1);
        assert_int_equal((int)num(l, "stage"), 1);
        assert_int_equal((long)num(l, "step"), (long)(i + 1) * STEPS);
        double acc = num(l, "test_acc"), loss = num(l, "loss"), ce = num(l, "loss.0.ce");
        assert_true(acc >= 0.0 && acc <= 1.0);
        assert_true(isfinite(loss) && loss > 0.0);
        assert_true(fabs(loss - ce) < 1e-6); /* one loss of weight 1 */
        assert_true(json_is_number(json_object_get(l, "train_acc")));
        if (acc > best) {
            best = acc;
            best_epoch = i + 1;
        }
    }
    /* learning happened: the last epoch's loss is well below the first */
    assert_true(num(json_array_get(m, 3), "loss") < 0.5 * num(json_array_get(m, 0), "loss"));
    assert_true(fabs(best - res->best_acc) < 1e-7);
    assert_int_equal(best_epoch, res->best_epoch);
    assert_true(fabs(num(json_array_get(m, 3), "test_acc") - res->final_acc) < 1e-7);
    json_decref(m);

    /* summary */
    json_error_t je;
    json_t *s = json_load_file("teacher/summary.json", 0, &je);
    if (!s) fail_msg("summary.json: %s", je.text);
    assert_true(json_is_true(json_object_get(s, "finished")));
    assert_true(fabs(num(s, "final_test_acc") - res->final_acc) < 1e-7);
    assert_true(fabs(num(s, "best_test_acc") - res->best_acc) < 1e-7);
    assert_int_equal((int)num(s, "best_epoch"), res->best_epoch);
    assert_int_equal((int)num(s, "epochs"), 4);
    assert_int_equal((int)num(s, "seed"), 1);
    assert_int_equal((int)num(s, "labels_used"), N_TRAIN);
    json_decref(s);

    /* files */
    const char *files[] = {"last.safetensors", "best.safetensors", "resume.safetensors",
                           "recipe.yaml"};
    for (int i = 0; i < 4; i++) {
        char *p = path2("teacher", files[i]);
        if (!exists(p)) fail_msg("%s is missing", p);
        free(p);
    }

    /* the stored recipe is the effective one */
    recipe a, b;
    load_recipe("teacher", teacher_recipe, &a);
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load("teacher/recipe.yaml", NULL, 0, &b, &e) != XD_OK) fail_msg("%s", e.msg);
    char *ya = recipe_to_yaml(&a), *yb = recipe_to_yaml(&b);
    assert_string_equal(ya, yb);
    free(ya);
    free(yb);
    recipe_free(&a);
    recipe_free(&b);

    /* best.safetensors gives the best accuracy again; last.safetensors the final one */
    nn_model t;
    load_ckpt(TEACHER_CKPT, &t);
    assert_true(accuracy(&t, "toy.xds", "image", "", "") == res->best_acc);
    char *ep;
    TU_OK(ckpt_read_meta(TEACHER_CKPT, "epoch", &ep, &e));
    assert_non_null(ep);
    assert_int_equal(atoi(ep), res->best_epoch);
    free(ep);
    nn_model_free(&t);
    load_ckpt("teacher/last.safetensors", &t);
    assert_true(accuracy(&t, "toy.xds", "image", "", "") == res->final_acc);
    nn_model_free(&t);
}

/* ---------------------------------------------------------------------------------------------
 * 2. reproducibility */

static void assert_params_differ(const char *a, const char *b)
{
    nn_model x, y;
    load_ckpt(a, &x);
    load_ckpt(b, &y);
    assert_int_equal(x.n_param, y.n_param);
    size_t diff = 0;
    for (size_t i = 0; i < x.n_param; i++) diff += x.param[i] != y.param[i];
    if (diff < x.n_param / 2)
        fail_msg("%s and %s share %zu of %zu parameters", a, b, x.n_param - diff, x.n_param);
    nn_model_free(&x);
    nn_model_free(&y);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  augment: \"pad=1 flip=0.5\"\n",
                                "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; "
                                "dropout p=0.25; linear out=4 name=logits head",
                                "", 2, "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    train_result a = run_ok("repro", text, "repro-a", 3, 0, 0);
    train_result b = run_ok("repro", text, "repro-b", 3, 0, 0);
    train_result c = run_ok("repro", text, "repro-c", 4, 0, 0);
    assert_true(tu_same_file("repro-a/last.safetensors", "repro-b/last.safetensors"));
    assert_true(tu_same_file("repro-a/best.safetensors", "repro-b/best.safetensors"));
    assert_true(a.final_acc == b.final_acc && a.best_epoch == b.best_epoch);
    assert_same_metrics("repro-a", "repro-b");
    assert_int_equal(c.epochs_done, 2);
    assert_params_differ("repro-a/last.safetensors", "repro-c/last.safetensors");
    free(text);
}

/* The thread count does not change the numbers (each run sets its own). */
static void test_threads_do_not_change_results(void **state)
{
    (void)state;
    ensure_data();
    int before = xd_threads_get();
    char *one = tu_fmt("data: {path: toy.xds}\nmodel: \"" CNN_MODEL "\"\n"
                    "train: {epochs: 1, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"
                    "losses:\n  - kind: ce\n");
    char *two = tu_fmt("data: {path: toy.xds}\nmodel: \"" CNN_MODEL "\"\n"
                    "train: {epochs: 1, batch: 16, threads: 2, optimizer: {kind: adamw, lr: 0.01}}\n"
                    "losses:\n  - kind: ce\n");
    run_ok("thr1", one, "thr1", 5, 0, 0);
    run_ok("thr2", two, "thr2", 5, 0, 0);
    xd_threads_set(before);
    nn_model x, y;
    load_ckpt("thr1/last.safetensors", &x);
    load_ckpt("thr2/last.safetensors", &y);
    assert_int_equal(x.n_param, y.n_param);
    assert_memory_equal(x.param, y.param, sizeof(float) * x.n_param);
    nn_model_free(&x);
    nn_model_free(&y);
    free(one);
    free(two);
}

/* ---------------------------------------------------------------------------------------------
 * 3. resume exactness */

/* Runs text straight into DIR-full, and into DIR-N stopping after each N of stops (then resuming
 * to the end); every interrupted run must end byte for byte like the straight one. */
static void check_resume(const char *name, const char *text, int epochs, const int *stops,
                         int n_stops)
{
    char *full = tu_fmt("%s-full", name);
    train_result ref = run_ok(name, text, full, 11, 0, 0);
    assert_int_equal(ref.epochs_done, epochs);
    char *ref_last = path2(full, "last.safetensors"), *ref_best = path2(full, "best.safetensors");
    for (int i = 0; i < n_stops; i++) {
        char *dir = tu_fmt("%s-%d", name, stops[i]);
        train_result part = run_ok(name, text, dir, 11, stops[i], 0);
        assert_int_equal(part.epochs_done, stops[i]);
        assert_int_equal(part.finished, 0);
        json_t *m = read_metrics(dir);
        assert_int_equal(json_array_size(m), stops[i]);
        json_decref(m);
        /* a second stop further on, then the rest */
        int at = stops[i];
        if (at + 1 < epochs) {
            part = run_ok(name, text, dir, 11, at + 1, 1);
            assert_int_equal(part.epochs_done, at + 1);
        }
        train_result fin = run_ok(name, text, dir, 11, 0, 1);
        assert_int_equal(fin.epochs_done, epochs);
        assert_int_equal(fin.finished, 1);
        char *last = path2(dir, "last.safetensors"), *best = path2(dir, "best.safetensors");
        if (!tu_same_file(ref_last, last))
            fail_msg("%s: stopped after %d epoch(s) and resumed, last.safetensors differs from %s",
                     name, stops[i], ref_last);
        assert_true(tu_same_file(ref_best, best));
        assert_true(fin.final_acc == ref.final_acc);
        assert_true(fin.best_acc == ref.best_acc);
        assert_true(fin.test_at_best == ref.test_at_best);
        assert_int_equal(fin.best_epoch, ref.best_epoch);
        assert_same_metrics(full, dir);
        free(last);
        free(best);
        free(dir);
    }
    free(ref_last);
    free(ref_best);
    free(full);
}

static void test_resume_single_stage(void **state)
{
    (void)state;
    ensure_data();
    /* augmentation, dropout and adamw moments: every kind of state a resume must restore */
    char *text = tu_fmt("data: {path: toy.xds, augment: \"pad=1 flip=0.5\"}\n"
                     "model: \"input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; "
                     "dropout p=0.25; linear out=4 name=logits head\"\n"
                     "train:\n"
                     "  epochs: 3\n"
                     "  batch: 16\n"
                     "  optimizer: {kind: adamw, lr: 0.01}\n"
                     "  schedule: {kind: cosine, warmup_steps: 5}\n"
                     "losses:\n  - kind: ce\n");
    const int stops[] = {1};
    check_resume("res1", text, 3, stops, 1);
    free(text);
}

static void test_resume_two_stages(void **state)
{
    (void)state;
    ensure_teacher();
    /* stage 1: hint through a projector (its parameters and moments are resume state) with the
     * upper layers frozen; stage 2: Hinton KD. Stops inside stage 1, at the boundary, inside 2. */
    char *text = tu_fmt("data: {path: toy.xds, augment: \"pad=1 flip=0.5\"}\n"
                     "model: \"" MLP_MODEL "\"\n" TEACHERS
                     "train:\n"
                     "  batch: 16\n"
                     "  optimizer: {kind: adamw, lr: 0.01}\n"
                     "  schedule: {kind: cosine}\n"
                     "stages:\n"
                     "  - epochs: 2\n"
                     "    train_until: feat\n"
                     "    losses:\n"
                     "      - {kind: hint, student_tap: feat, teacher_tap: feat}\n"
                     "  - epochs: 2\n"
                     "    losses:\n"
                     "      - {kind: hinton, alpha: 0.8, temperature: 3}\n");
    const int stops[] = {1, 2, 3};
    check_resume("res2", text, 4, stops, 3);
    free(text);
}

/* A small run of 3 epochs for the tests of finished, stopped and locked runs. */
static char *small_recipe(int epochs, int threads)
{
    return tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
               "train: {epochs: %d, batch: 16, threads: %d, optimizer: {kind: adamw, lr: 0.01}}\n"
               "losses:\n  - kind: ce\n", epochs, threads);
}

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fail_msg("%s: %s", path, je.text);
    return j;
}

/* Resuming a run that finished changes nothing and reports its numbers. */
static void test_resume_finished_changes_nothing(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(2, 0);
    train_result ref = run_ok("fin", text, "fin", 1, 0, 0);
    dirsnap *before = dirsnap_take("fin");
    train_result again = run_ok("fin", text, "fin", 1, 0, 1);
    dirsnap_assert_same(before, "fin");
    assert_int_equal(again.unchanged, 1);
    assert_int_equal(again.finished, 1);
    assert_int_equal(again.epochs_done, 2);
    assert_true(again.final_acc == ref.final_acc);
    assert_true(again.best_acc == ref.best_acc);
    assert_int_equal(again.best_epoch, ref.best_epoch);
    dirsnap_free(before);
    free(text);
}

/* A run stopped after its last epoch but before its summary: the summary a resume writes is the
 * trained model's (the same as the uninterrupted run's), with the thread count its epochs ran
 * at, not the resuming process's. */
static void test_resume_after_last_epoch_writes_summary(void **state)
{
    (void)state;
    ensure_data();
    int before = xd_threads_get();
    char *text = small_recipe(2, 0);
    xd_threads_set(2);
    const int used = xd_threads_get();
    train_result ref = run_ok("sum", text, "sum", 1, 0, 0);
    json_t *full = load_json("sum/summary.json");
    assert_int_equal((int)num(full, "threads"), used);
    remove("sum/summary.json");
    xd_threads_set(1);
    train_result res = run_ok("sum", text, "sum", 1, 0, 1);
    xd_threads_set(before);
    assert_int_equal(res.unchanged, 0);
    assert_true(res.finished);
    assert_true(res.final_acc == ref.final_acc);
    json_t *j = load_json("sum/summary.json");
    assert_true(num(j, "final_test_acc") == num(full, "final_test_acc"));
    assert_true(num(j, "best_test_acc") == num(full, "best_test_acc"));
    assert_int_equal((int)num(j, "threads"), used);
    json_t *m = read_metrics("sum");
    assert_int_equal(json_array_size(m), 2);
    json_decref(m);
    json_decref(j);
    json_decref(full);
    free(text);
}

/* Another recipe given for a run's folder is an error naming both; nothing changes. */
static void test_resume_other_recipe(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(3, 0), *other = small_recipe(4, 0);
    run_ok("mine", text, "mine", 1, 1, 0);
    dirsnap *before = dirsnap_take("mine");
    train_result r;
    xd_err e;
    assert_int_equal(run_text("theirs", other, "mine", 1, 0, 1, &r, &e), XD_EARG);
    print_message("%s\n", e.msg);
    tu_assert_err(&e, XD_EARG, "theirs.yaml (recipe 'theirs')");
    tu_assert_err(&e, XD_EARG, "mine/recipe.yaml, recipe 'mine'");
    dirsnap_assert_same(before, "mine");
    /* the same recipe with another thread count continues, and records it */
    char *threads = small_recipe(3, 1);
    train_result fin = run_ok("mine", threads, "mine", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    recipe rr;
    xd_err_clear(&e);
    if (recipe_load("mine/recipe.yaml", NULL, 0, &rr, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_int_equal(rr.train.threads, 1);
    recipe_free(&rr);
    dirsnap_free(before);
    free(threads);
    free(text);
    free(other);
}

/* The disk fills while an epoch's metrics line is written: the resume state must not say the
 * epoch is done, so that a resume runs it again and the line is there in the end. */
static void test_metrics_line_not_lost(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(3, 0);
    run_ok("ml", text, "ml-full", 1, 0, 0);
    run_ok("ml", text, "ml", 1, 1, 0);
    /* epoch 1's line padded so that metrics.jsonl alone outgrows a file size limit the
     * checkpoints stay under */
    size_t n;
    char *line1 = tu_read_file("ml/metrics.jsonl", &n);
    enum { PAD = 1 << 16 };
    char *padded = malloc(n + PAD + 32);
    int at = snprintf(padded, n + 32, "%.*s,\"pad\":\"", (int)(n - 2), line1);
    memset(padded + at, 'x', PAD);
    snprintf(padded + at + PAD, 32, "\"}\n");
    tu_write_file("ml/metrics.jsonl", padded, strlen(padded));
    train_result r;
    xd_err e;
    ifx_file_size_limit((long)strlen(padded) + 16);
    xd_status s = run_text("ml", text, "ml", 1, 2, 1, &r, &e);
    ifx_file_size_unlimit();
    assert_int_equal(s, XD_EIO);
    print_message("%s\n", e.msg);
    /* the first line as it was (the half-written second one stays for the resume to drop) */
    size_t m;
    char *now = tu_read_file("ml/metrics.jsonl", &m);
    assert_true(m > strlen(padded) && m < strlen(padded) + 200);
    char *restored = malloc(n + (m - strlen(padded)) + 1);
    memcpy(restored, line1, n);
    memcpy(restored + n, now + strlen(padded), m - strlen(padded));
    tu_write_file("ml/metrics.jsonl", restored, n + (m - strlen(padded)));
    train_result fin = run_ok("ml", text, "ml", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    assert_same_metrics("ml-full", "ml");
    assert_true(tu_same_file("ml-full/last.safetensors", "ml/last.safetensors"));
    free(restored);
    free(now);
    free(padded);
    free(line1);
    free(text);
}

/* A second run into a folder a run holds stops at once, naming the holder's pid. */
static void test_run_folder_lock(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(1, 0);
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(mkdir("locked", 0755), 0);
    runlock held;
    TU_OK(runlock_take(&held, "locked", &e));
    dirsnap *before = dirsnap_take("locked");
    train_result r;
    assert_int_equal(run_text("locked", text, "locked", 1, 0, 0, &r, &e), XD_EIO);
    print_message("%s\n", e.msg);
    char *pid = tu_fmt("pid %ld", (long)getpid());
    tu_assert_err(&e, XD_EIO, pid);
    dirsnap_assert_same(before, "locked");
    runlock_release(&held);
    run_ok("locked", text, "locked", 1, 0, 0);
    dirsnap_free(before);
    free(pid);
    free(text);
}

/* ---------------------------------------------------------------------------------------------
 * 4. knowledge distillation from the teacher's checkpoint */

static void test_kd_students(void **state)
{
    (void)state;
    ensure_teacher();
    const char *few = "  labels_per_class: 2\n";
    char *ce = student_recipe(few, MLP_MODEL, "", 3, "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    char *kd = student_recipe(few, MLP_MODEL, TEACHERS, 3, "{kind: adamw, lr: 0.01}",
                              "  - kind: ce\n  - {kind: kd, temperature: 4}\n");
    char *hin = student_recipe(few, MLP_MODEL, TEACHERS, 3, "{kind: adamw, lr: 0.01}",
                               "  - {kind: hinton, alpha: 0.9, temperature: 4}\n");
    train_result rce = run_ok("kd-ce", ce, "kd-ce", 2, 0, 0);
    train_result rkd = run_ok("kd-kd", kd, "kd-kd", 2, 0, 0);
    train_result rhin = run_ok("kd-hinton", hin, "kd-hinton", 2, 0, 0);

    /* the loss components are logged per epoch, finite and of the right sizes */
    json_t *m = read_metrics("kd-kd");
    assert_int_equal(json_array_size(m), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *l = json_array_get(m, i);
        double c = num(l, "loss.0.ce"), k = num(l, "loss.1.kd");
        assert_true(isfinite(c) && c >= 0.0 && isfinite(k) && k >= 0.0);
        assert_true(fabs(num(l, "loss") - (c + k)) < 1e-5 * (1.0 + c + k));
    }
    /* KD is learnt: the student's KD loss falls */
    assert_true(num(json_array_get(m, 2), "loss.1.kd") < num(json_array_get(m, 0), "loss.1.kd"));
    json_decref(m);
    m = read_metrics("kd-hinton");
    for (size_t i = 0; i < 3; i++) {
        double h = num(json_array_get(m, i), "loss.0.hinton");
        assert_true(isfinite(h) && h > 0.0);
    }
    assert_null(json_object_get(json_array_get(m, 0), "loss.0.ce"));
    json_decref(m);

    /* 8 labels: the KD students see all 200 examples through the teacher, CE only its 8 */
    json_error_t je;
    json_t *s = json_load_file("kd-kd/summary.json", 0, &je);
    assert_non_null(s);
    assert_int_equal((int)num(s, "labels_used"), 2 * TINY_CLASSES);
    json_decref(s);
    json_t *mce = read_metrics("kd-ce"), *mkd = read_metrics("kd-kd");
    assert_int_equal((long)num(json_array_get(mce, 2), "step"), 3); /* 8 examples: 1 step/epoch */
    assert_int_equal((long)num(json_array_get(mkd, 2), "step"), 3 * STEPS);
    json_decref(mce);
    json_decref(mkd);

    print_message("low-label accuracy: ce %.3f, kd %.3f, hinton %.3f (teacher %.3f)\n",
                  rce.final_acc, rkd.final_acc, rhin.final_acc, teacher_res.final_acc);
    assert_true(rkd.final_acc >= 0.9);
    assert_true(rhin.final_acc >= 0.9);
    assert_true(rkd.final_acc > rce.final_acc + 0.1);
    assert_true(rhin.final_acc > rce.final_acc + 0.1);
    free(ce);
    free(kd);
    free(hin);
}

/* ---------------------------------------------------------------------------------------------
 * 5. the teacher-output cache */

/* Files in dir whose name ends in suffix; the last one found goes to last (may be NULL). */
static int count_files(const char *dir, const char *suffix, char **last)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    size_t ls = strlen(suffix);
    for (struct dirent *de; (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l >= ls && strcmp(de->d_name + l - ls, suffix) == 0) {
            n++;
            if (last) {
                free(*last);
                *last = path2(dir, de->d_name);
            }
        }
    }
    closedir(d);
    return n;
}

static void test_teacher_cache(void **state)
{
    (void)state;
    ensure_teacher();
    if (mkdir("c5", 0777) != 0) fail_msg("cannot create the folder c5");
    tiny_spec sp = tiny_default();
    tiny_write("c5/toy.xds", &sp);
    const char *losses = "  - kind: ce\n  - {kind: kd, temperature: 2}\n";
    char *cached = tu_fmt("data: {path: c5/toy.xds, labels_per_class: 5}\nmodel: \"" MLP_MODEL "\"\n"
                       TEACHERS "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n%s", losses);
    char *online = tu_fmt("data: {path: c5/toy.xds, labels_per_class: 5}\nmodel: \"" MLP_MODEL "\"\n"
                       "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT ", cache: false}\n"
                       "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n%s", losses);
    assert_false(exists("c5/cache"));
    train_result a = run_ok("cache", cached, "cache-a", 3, 0, 0);
    char *npy = NULL;
    assert_int_equal(count_files("c5/cache", ".logits.npy", &npy), 1);
    assert_int_equal(count_files("c5/cache", ".sum", NULL), 1);
    /* the second run reads the files: they are not written again */
    struct stat s1, s2;
    assert_int_equal(stat(npy, &s1), 0);
    train_result b = run_ok("cache", cached, "cache-b", 3, 0, 0);
    assert_int_equal(stat(npy, &s2), 0);
    assert_true(s1.st_ino == s2.st_ino && s1.st_mtim.tv_sec == s2.st_mtim.tv_sec &&
                s1.st_mtim.tv_nsec == s2.st_mtim.tv_nsec);
    assert_int_equal(count_files("c5/cache", ".logits.npy", NULL), 1);
    free(npy);
    assert_true(tu_same_file("cache-a/last.safetensors", "cache-b/last.safetensors"));
    assert_true(a.final_acc == b.final_acc);
    assert_same_metrics("cache-a", "cache-b");

    /* the cache holds what the teacher computes: a run without it trains the same student (up to
     * the rounding of other batch compositions in the teacher's forward) */
    train_result c = run_ok("cache-off", online, "cache-c", 3, 0, 0);
    nn_model x, y;
    load_ckpt("cache-a/last.safetensors", &x);
    load_ckpt("cache-c/last.safetensors", &y);
    tu_assert_close(y.param, x.param, x.n_param, 1e-3, 1e-4, "student without cache");
    nn_model_free(&x);
    nn_model_free(&y);
    assert_true(fabs(c.final_acc - a.final_acc) <= 0.011);
    free(cached);
    free(online);
}

/* ---------------------------------------------------------------------------------------------
 * 6. feature losses with projectors; hint training with frozen upper layers */

static void test_feature_loss_projector(void **state)
{
    (void)state;
    ensure_teacher();
    const char *metrics[] = {"mse", "cosine"};
    for (int k = 0; k < 2; k++) {
        char *losses = tu_fmt("  - kind: ce\n"
                           "  - {kind: feature, student_tap: feat, teacher_tap: feat, metric: %s}\n",
                           metrics[k]);
        char *text = student_recipe("", MLP_MODEL, TEACHERS, 3, "{kind: adamw, lr: 0.01}", losses);
        char *dir = tu_fmt("feat-%s", metrics[k]);
        train_result r = run_ok(dir, text, dir, 2, 0, 0);
        assert_true(r.final_acc >= 0.9);
        json_t *m = read_metrics(dir);
        double f1 = num(json_array_get(m, 0), "loss.1.feature"),
               f3 = num(json_array_get(m, 2), "loss.1.feature");
        print_message("feature (%s): %.4f -> %.4f\n", metrics[k], f1, f3);
        assert_true(isfinite(f1) && f1 > 0.0);
        if (k == 1) assert_true(f1 <= 2.0);
        if (!(f3 < 0.8 * f1)) fail_msg("feature loss (%s) %.4f -> %.4f did not fall", metrics[k], f1, f3);
        json_decref(m);
        /* the projector (16 -> 32 channels) is part of the resume state */
        char *rp = path2(dir, "resume.safetensors");
        io_st_file *f;
        xd_err e;
        xd_err_clear(&e);
        if (io_st_open(rp, &f, &e) != XD_OK) fail_msg("%s", e.msg);
        const io_tensor *t = io_st_find(f, "proj1.param");
        assert_non_null(t);
        assert_int_equal(t->shape[0], 16 * 32 + 32);
        io_st_close(f);
        free(rp);
        free(dir);
        free(text);
        free(losses);
    }
    /* feature maps through a 1x1 convolution projector: student r1 (8x8x4), teacher r1 (8x8x8) */
    char *text = student_recipe("", CNN_MODEL, TEACHERS, 2, "{kind: adamw, lr: 0.01}",
                                "  - {kind: hint, student_tap: r1, teacher_tap: r1, "
                                "projector: conv1x1}\n");
    run_ok("feat-conv", text, "feat-conv", 2, 0, 0);
    json_t *m = read_metrics("feat-conv");
    assert_true(num(json_array_get(m, 1), "loss.0.hint") < num(json_array_get(m, 0), "loss.0.hint"));
    json_decref(m);
    free(text);
}

static int node_of_param(const char *pname, const char *node)
{
    size_t n = strlen(node);
    return strncmp(pname, node, n) == 0 && pname[n] == '.';
}

static void test_hint_stage_freezes_upper_layers(void **state)
{
    (void)state;
    ensure_teacher();
    /* adamw with weight decay: a frozen layer must not even decay */
    char *text = tu_fmt("data: {path: toy.xds}\n"
                     "model: \"" MLP_MODEL "\"\n" TEACHERS
                     "train:\n"
                     "  batch: 16\n"
                     "  optimizer: {kind: adamw, lr: 0.01, weight_decay: 0.1}\n"
                     "stages:\n"
                     "  - epochs: 1\n"
                     "    train_until: feat\n"
                     "    losses:\n"
                     "      - {kind: hint, student_tap: feat, teacher_tap: feat}\n"
                     "  - epochs: 1\n"
                     "    losses:\n"
                     "      - kind: ce\n");
    const long seed = 9;
    train_result r = run_ok("hint", text, "hint", seed, 1, 0);
    assert_int_equal(r.epochs_done, 1);
    recipe rc;
    load_recipe("hint", text, &rc);
    nn_model init, after;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&init, rc.model, BATCH, (uint64_t)seed, &e) != XD_OK) fail_msg("%s", e.msg);
    load_ckpt("hint/last.safetensors", &after);
    assert_int_equal(init.n_params, after.n_params);
    for (int i = 0; i < init.n_params; i++) {
        const nn_param *p = &init.params[i];
        const nn_param *q = nn_model_param(&after, p->name);
        assert_non_null(q);
        const float *x = nn_model_param_data(&init, p), *y = nn_model_param_data(&after, q);
        size_t diff = 0;
        for (size_t j = 0; j < p->n; j++) diff += x[j] != y[j];
        if (node_of_param(p->name, "logits") && diff)
            fail_msg("stage 1 trains up to 'feat', but %zu values of %s changed", diff, p->name);
        if (node_of_param(p->name, "fc1") && diff < p->n / 2)
            fail_msg("%s should have been trained in stage 1 (%zu of %zu changed)", p->name, diff, p->n);
    }
    nn_model_free(&init);
    nn_model_free(&after);
    /* the second stage then trains the head too */
    r = run_ok("hint", text, "hint", seed, 0, 1);
    assert_int_equal(r.finished, 1);
    json_t *m = read_metrics("hint");
    assert_int_equal(json_array_size(m), 2);
    assert_int_equal((int)num(json_array_get(m, 0), "stage"), 1);
    assert_int_equal((int)num(json_array_get(m, 1), "stage"), 2);
    assert_true(json_is_number(json_object_get(json_array_get(m, 0), "loss.0.hint")));
    assert_true(json_is_number(json_object_get(json_array_get(m, 1), "loss.0.ce")));
    json_decref(m);
    recipe_free(&rc);
    free(text);
}

/* ---------------------------------------------------------------------------------------------
 * 7. attention transfer */

/* Mean attention-transfer distance between the student's and the teacher's r1 maps over the test
 * split. */
static double at_distance(nn_model *s, nn_model *t)
{
    split_feed sf;
    open_split(&sf, "toy.xds", "test", "image", s, "", "");
    int ns = nn_model_find(s, "r1"), nt = nn_model_find(t, "r1");
    assert_true(ns >= 0 && nt >= 0);
    const nn_node *a = nn_model_node(s, ns), *b = nn_model_node(t, nt);
    double sum = 0.0;
    int batches = 0;
    xd_err e;
    xd_err_clear(&e);
    for (size_t i0 = 0; i0 < sf.f.n; i0 += BATCH) {
        uint32_t idx[BATCH];
        int n = sf.f.n - i0 < BATCH ? (int)(sf.f.n - i0) : BATCH;
        for (int i = 0; i < n; i++) idx[i] = (uint32_t)(i0 + (size_t)i);
        TU_OK(feed_fill(&sf.f, idx, n, 0, 0, 0, sf.input, &e));
        nn_model_forward(s, sf.input, n, NULL);
        nn_model_forward(t, sf.input, n, NULL);
        sum += kd_at_forward(nn_model_out(s, ns), nn_model_out(t, nt), NULL, n, a->h * a->w, a->c,
                             b->c);
        batches++;
    }
    close_split(&sf);
    return sum / batches;
}

static void test_attention_transfer(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = student_recipe("", CNN_MODEL, TEACHERS, 2, "{kind: adamw, lr: 0.01}",
                                "  - {kind: attention, student_tap: r1, teacher_tap: r1, weight: 10}\n");
    const long seed = 4;
    run_ok("att", text, "att", seed, 0, 0);
    json_t *m = read_metrics("att");
    double a1 = num(json_array_get(m, 0), "loss.0.attention"),
           a2 = num(json_array_get(m, 1), "loss.0.attention");
    assert_true(isfinite(a1) && a1 > 0.0 && a1 <= 2.0); /* unit maps: distance at most 2 */
    assert_true(a2 < a1);
    json_decref(m);
    recipe rc;
    load_recipe("att", text, &rc);
    nn_model init, after, teacher;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&init, rc.model, BATCH, (uint64_t)seed, &e) != XD_OK) fail_msg("%s", e.msg);
    load_ckpt("att/last.safetensors", &after);
    load_ckpt(TEACHER_CKPT, &teacher);
    double before = at_distance(&init, &teacher), now = at_distance(&after, &teacher);
    print_message("attention distance to the teacher: %.4f -> %.4f\n", before, now);
    if (!(now < 0.5 * before)) fail_msg("attention distance %.4f -> %.4f: not halved", before, now);
    nn_model_free(&init);
    nn_model_free(&after);
    nn_model_free(&teacher);
    recipe_free(&rc);
    free(text);
}

/* ---------------------------------------------------------------------------------------------
 * 8. numerical blow-ups */

/* Every checkpoint a failed run left behind must still load (ckpt_load refuses non-finite). */
static void assert_checkpoints_load(const char *dir)
{
    const char *names[] = {"last.safetensors", "best.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *p = path2(dir, names[i]);
        if (exists(p)) {
            nn_model m;
            xd_err e;
            xd_err_clear(&e);
            if (ckpt_load(p, BATCH, &m, &e) != XD_OK)
                fail_msg("the failed run left a bad checkpoint: %s", e.msg);
            nn_model_free(&m);
        }
        free(p);
    }
}

static void test_nan_absurd_lr(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("", MLP_MODEL, "", 2, "{kind: sgd, lr: 1e30}", "  - kind: ce\n");
    train_result r;
    xd_err e;
    assert_int_equal(run_text("nan1", text, "nan1", 1, 0, 0, &r, &e), XD_ENUM);
    /* the first step is fine; the update it makes breaks the second */
    tu_assert_err(&e, XD_ENUM, "epoch 1, step 2:");
    /* which loss, and the student's layer where the values first stop being finite */
    tu_assert_err(&e, XD_ENUM, "losses.0 (ce)");
    tu_assert_err(&e, XD_ENUM, "the first non-finite output is the student's layer 'logits' (linear)");
    assert_false(exists("nan1/last.safetensors"));
    assert_checkpoints_load("nan1");
    free(text);
}

static void test_nan_in_second_epoch_keeps_first(void **state)
{
    (void)state;
    ensure_data();
    /* the loss weight of stage 2 makes the first update of epoch 2 blow up */
    char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {batch: 16, optimizer: {kind: sgd, lr: 0.1}}\n"
                     "stages:\n"
                     "  - {epochs: 1, losses: [{kind: ce}]}\n"
                     "  - {epochs: 1, losses: [{kind: ce, weight: 1e30}]}\n");
    run_ok("nan2", text, "nan2-ref", 1, 1, 0);
    train_result r;
    xd_err e;
    assert_int_equal(run_text("nan2", text, "nan2", 1, 0, 0, &r, &e), XD_ENUM);
    char *want = tu_fmt("epoch 2, step %d:", STEPS + 2);
    tu_assert_err(&e, XD_ENUM, want);
    free(want);
    assert_true(strstr(e.msg, "loss") || strstr(e.msg, "gradient"));
    /* last.safetensors is epoch 1's, exactly as a run stopped there wrote it */
    assert_checkpoints_load("nan2");
    assert_true(tu_same_file("nan2/last.safetensors", "nan2-ref/last.safetensors"));
    json_t *m = read_metrics("nan2");
    assert_int_equal(json_array_size(m), 1);
    json_decref(m);
    free(text);
}

static void test_nan_gradient_names_layer(void **state)
{
    (void)state;
    ensure_data();
    /* inputs scaled by 1000 and a loss weight near the float limit: the loss (summed in double)
     * stays finite, the first layer's weight gradient overflows */
    char *text = student_recipe("  augment: \"std=0.001\"\n", MLP_MODEL, "", 1,
                                "{kind: sgd, lr: 0.001}", "  - {kind: ce, weight: 3e38}\n");
    train_result r;
    xd_err e;
    assert_int_equal(run_text("nan3", text, "nan3", 1, 0, 0, &r, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "epoch 1, step 1: the gradient of the student's 'fc1.weight' (layer "
                               "'fc1', linear) is not finite");
    assert_false(exists("nan3/last.safetensors"));
    free(text);
}

/* An update that makes the parameters infinite at the last step of an epoch (one step per epoch
 * here) must not be saved as the "last good" checkpoint. */
static void test_nan_update_not_saved(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  labels_per_class: 2\n", MLP_MODEL, "", 2,
                                "{kind: sgd, lr: 1e30, weight_decay: 1e30}", "  - kind: ce\n");
    train_result r;
    xd_err e;
    xd_status s = run_text("nan4", text, "nan4", 1, 0, 0, &r, &e);
    assert_int_equal(s, XD_ENUM);
    print_message("%s\n", e.msg);
    assert_checkpoints_load("nan4");
    free(text);
}

/* ---------------------------------------------------------------------------------------------
 * 9. errors with clear messages */

static void expect_error(const char *name, const char *text, const char *want, const char *want2)
{
    train_result r;
    xd_err e;
    char *dir = tu_fmt("err-%s", name);
    xd_status s = run_text(name, text, dir, 1, 0, 0, &r, &e);
    if (s == XD_OK) fail_msg("%s: the run succeeded, expected an error mentioning '%s'", name, want);
    print_message("%s: %s\n", name, e.msg);
    if (!strstr(e.msg, want) || (want2 && !strstr(e.msg, want2)))
        fail_msg("%s: message '%s' does not mention '%s'%s%s", name, e.msg, want,
                 want2 ? " and " : "", want2 ? want2 : "");
    char *last = path2(dir, "last.safetensors");
    assert_false(exists(last));
    free(last);
    free(dir);
}

static void test_errors(void **state)
{
    (void)state;
    ensure_teacher();
    /* a view the data set does not have: for the student, and for a teacher */
    char *t1 = student_recipe("  student_view: text.xx\n  text: \"buckets=512\"\n", TEXT_MODEL, "",
                              1, "adamw", "  - kind: ce\n");
    expect_error("view-student", t1, "text.xx", NULL);
    char *t2 = student_recipe("", MLP_MODEL,
                              "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT
                              ", view: text.xx}\n",
                              1, "adamw", "  - kind: kd\n");
    expect_error("view-teacher", t2, "text.xx", NULL);

    /* a teacher with 5 outputs for a 4-class student */
    nn_model five;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(nn_model_build(&five, "input h=8 w=8 c=1; flatten; linear out=5 name=out5 head", 4, 3, &e));
    TU_OK(ckpt_save("five.safetensors", &five, NULL, 0, &e));
    nn_model_free(&five);
    char *t3 = student_recipe("", MLP_MODEL,
                              "teachers:\n  - {name: five, checkpoint: five.safetensors}\n", 1,
                              "adamw", "  - kind: kd\n");
    expect_error("head-width", t3, "5", "4");
    {
        train_result r;
        assert_int_equal(run_text("head-width", t3, "err-head-width", 1, 0, 0, &r, &e), XD_ESHAPE);
        /* the teacher's file, its head and the data set's label set */
        assert_non_null(strstr(e.msg, "five.safetensors: the model has 5 classes (head 'out5')"));
        assert_non_null(strstr(e.msg, "label has 4"));
    }

    /* feature maps of different spatial sizes: student r1 is 8x8, teacher pool1 4x4 */
    char *t4 = student_recipe("", CNN_MODEL, TEACHERS, 1, "adamw",
                              "  - {kind: feature, student_tap: r1, teacher_tap: pool1}\n");
    expect_error("spatial", t4, "spatial", "pool1");
    char *t4b = student_recipe("", CNN_MODEL, TEACHERS, 1, "adamw",
                               "  - {kind: attention, student_tap: r1, teacher_tap: pool1}\n");
    expect_error("spatial-at", t4b, "spatial", "pool1");

    /* a teacher node that does not exist */
    char *t5 = student_recipe("", MLP_MODEL, TEACHERS, 1, "adamw",
                              "  - {kind: hint, student_tap: feat, teacher_tap: nosuch}\n");
    expect_error("teacher-node", t5, "nosuch", NULL);

    /* a label section that is not there, with a label fraction */
    char *t6 = student_recipe("  label: label.sub\n  label_fraction: 0.5\n", MLP_MODEL, "", 1,
                              "adamw", "  - kind: ce\n");
    expect_error("label-section", t6, "label.sub", NULL);
    tiny_spec sp = tiny_default();
    sp.train_labels = 0;
    tiny_write("nolabels.xds", &sp);
    char *t7 = tu_fmt("data: {path: nolabels.xds, label_fraction: 0.5}\nmodel: \"" MLP_MODEL "\"\n"
                   "train: {epochs: 1, batch: 16}\nlosses:\n  - kind: ce\n");
    expect_error("no-train-labels", t7, "train/label", "nolabels.xds");

    free(t1);
    free(t2);
    free(t3);
    free(t4);
    free(t4b);
    free(t5);
    free(t6);
    free(t7);
}

/* A recipe whose only loss needs labels, on a split where the run may see none, has nothing to
 * train on: an error, not a run of empty epochs. */
static void test_no_usable_labels_is_an_error(void **state)
{
    (void)state;
    ensure_data();
    if (!exists("unlab.xds")) {
        tiny_spec sp = tiny_default();
        sp.unlabelled = 1;
        tiny_write("unlab.xds", &sp);
    }
    char *text = tu_fmt("data: {path: unlab.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 1, batch: 16}\nlosses:\n  - kind: ce\n");
    expect_error("ce-no-labels", text, "label", NULL);
    free(text);
}

/* No test examples: an error saying so, never "test accuracy 0.00%". */
static void test_no_test_examples_is_an_error(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    sp.n_test = 0;
    tiny_write("notest.xds", &sp);
    char *text = tu_fmt("data: {path: notest.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 1, batch: 16}\nlosses:\n  - kind: ce\n");
    expect_error("no-test", text, "notest.xds: split 'test' has no test examples", NULL);
    free(text);
}

/* ---------------------------------------------------------------------------------------------
 * preprocessing words apply to evaluation too */

static void test_normalisation_applies_to_evaluation(void **state)
{
    (void)state;
    /* mean/std are preprocessing, not augmentation: the evaluation must see the inputs the model
     * was trained on. Classes by grey level make the absolute input values matter. */
    tiny_spec sp = tiny_default();
    sp.brightness = 1;
    sp.texts = 0;
    tiny_write("grey.xds", &sp);
    const char *words = "mean=0.5 std=0.25";
    char *text = tu_fmt("data: {path: grey.xds, augment: \"%s\"}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.02}}\n"
                     "losses:\n  - kind: ce\n", words);
    train_result r = run_ok("norm", text, "norm", 2, 0, 0);
    nn_model m;
    load_ckpt("norm/last.safetensors", &m);
    double acc = accuracy(&m, "grey.xds", "image", words, ""), raw = accuracy(&m, "grey.xds", "image", "", "");
    print_message("normalised student: trainer says %.3f; evaluated with its inputs %.3f, "
                  "without normalisation %.3f\n", r.final_acc, acc, raw);
    assert_true(acc >= 0.9);
    assert_true(raw < 0.8); /* the data set tells the two apart */
    assert_true(r.final_acc == acc);
    nn_model_free(&m);
    free(text);
}

/* A teacher reads its inputs the way it was trained (its recipe's normalisation is stored in its
 * checkpoint), not the way the student's recipe prepares the student's inputs. */
static void test_teacher_reads_its_own_preprocessing(void **state)
{
    (void)state;
    if (!exists("grey.xds")) {
        tiny_spec sp = tiny_default();
        sp.brightness = 1;
        sp.texts = 0;
        tiny_write("grey.xds", &sp);
    }
    char *tt = tu_fmt("data: {path: grey.xds, augment: \"mean=0.5 std=0.25\"}\n"
                   "model: \"" MLP_MODEL "\"\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.02}}\n"
                   "losses:\n  - kind: ce\n");
    run_ok("greyteacher", tt, "greyteacher", 2, 0, 0);
    nn_model t;
    load_ckpt("greyteacher/last.safetensors", &t);
    double tacc = accuracy(&t, "grey.xds", "image", "mean=0.5 std=0.25", "");
    nn_model_free(&t);
    assert_true(tacc >= 0.9);
    /* the student normalises differently (std 0.5) and learns from the teacher alone; a teacher
     * fed the student's inputs (half its contrast) would confuse the grey levels */
    char *st = tu_fmt("data: {path: grey.xds, augment: \"mean=0.5 std=0.5\"}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: g, checkpoint: greyteacher/last.safetensors}\n"
                   "train: {epochs: 30, batch: 16, optimizer: {kind: adamw, lr: 0.02}}\n"
                   "losses:\n  - {kind: kd, temperature: 1}\n");
    train_result r = run_ok("greystudent", st, "greystudent", 2, 0, 0);
    print_message("teacher %.3f (own inputs), KD-only student %.3f\n", tacc, r.final_acc);
    assert_true(r.final_acc >= 0.85);
    free(tt);
    free(st);
}

/* eval_every: epochs without an evaluation log a null test accuracy and never write best */
static void test_eval_every(void **state)
{
    (void)state;
    ensure_data();
    for (int every = 0; every <= 2; every += 2) {
        char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                         "train: {epochs: 3, batch: 16, eval_every: %d, "
                         "optimizer: {kind: adamw, lr: 0.01}}\n"
                         "losses:\n  - kind: ce\n", every);
        char *dir = tu_fmt("every-%d", every);
        train_result r = run_ok(dir, text, dir, 3, 0, 0);
        json_t *m = read_metrics(dir);
        assert_int_equal(json_array_size(m), 3);
        for (int i = 0; i < 3; i++) {
            int evaluated = i == 2 || (every && (i + 1) % every == 0);
            json_t *acc = json_object_get(json_array_get(m, (size_t)i), "test_acc");
            assert_non_null(acc);
            assert_int_equal(json_is_number(acc), evaluated);
            assert_int_equal(json_is_null(acc), !evaluated);
        }
        json_decref(m);
        if (every == 0) {
            /* the only evaluated epoch is the last: best is last */
            assert_int_equal(r.best_epoch, 3);
            assert_true(tu_same_file("every-0/best.safetensors", "every-0/last.safetensors"));
        } else {
            assert_true(r.best_epoch == 2 || r.best_epoch == 3);
        }
        assert_true(r.best_acc >= r.final_acc);
        free(text);
        free(dir);
    }
}

/* label_fraction keeps round(fraction * count) labels per class; a CE-only run walks only those */
static void test_label_fraction(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  label_fraction: 0.1\n", MLP_MODEL, "", 1,
                                "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    run_ok("frac", text, "frac", 1, 0, 0);
    json_error_t je;
    json_t *s = json_load_file("frac/summary.json", 0, &je);
    assert_non_null(s);
    assert_int_equal((int)num(s, "labels_used"), 4 * 5); /* 10% of 50 per class */
    json_decref(s);
    json_t *m = read_metrics("frac");
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 2); /* 20 examples, batch 16 */
    json_decref(m);
    free(text);
}

/* steps_per_epoch cycles through a small labelled pool: 20 labels, 7 batches of 16 per epoch */
static void test_steps_per_epoch(void **state)
{
    (void)state;
    ensure_data();
    char *text = tu_fmt("data: {path: toy.xds, label_fraction: 0.1}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 2, batch: 16, steps_per_epoch: 7, optimizer: {kind: adamw, lr: 0.01}}\n"
                     "losses:\n  - kind: ce\n");
    run_ok("spe", text, "spe", 1, 0, 0);
    json_t *m = read_metrics("spe");
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 7);
    assert_int_equal((long)num(json_array_get(m, 1), "step"), 14);
    json_decref(m);
    /* the same with a stop and resume in between */
    run_ok("spe", text, "spe-r", 1, 1, 0);
    run_ok("spe", text, "spe-r", 1, 0, 1);
    size_t na, nb;
    char *a = tu_read_file("spe/last.safetensors", &na), *b = tu_read_file("spe-r/last.safetensors", &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    free(text);
}

/* Two teachers in one stage: one cached for KD, one run online for a hint. */
static void test_two_teachers(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = tu_fmt("data: {path: toy.xds, labels_per_class: 5}\nmodel: \"" MLP_MODEL "\"\n"
                     "teachers:\n"
                     "  - {name: a, checkpoint: " TEACHER_CKPT "}\n"
                     "  - {name: b, checkpoint: teacher/last.safetensors}\n"
                     "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                     "losses:\n"
                     "  - {kind: kd, teacher: a}\n"
                     "  - {kind: hint, teacher: b, student_tap: feat, teacher_tap: feat, weight: 0.5}\n");
    train_result r = run_ok("two", text, "two", 1, 0, 0);
    assert_true(r.final_acc >= 0.9);
    json_t *m = read_metrics("two");
    json_t *l = json_array_get(m, 1);
    double kd = num(l, "loss.0.kd"), hint = num(l, "loss.1.hint");
    assert_true(fabs(num(l, "loss") - (kd + 0.5 * hint)) < 1e-5 * (1.0 + kd + hint));
    json_decref(m);
    free(text);
}

/* A schedule without total_steps spans the whole run (docs/RECIPES.md), stages included. */
static void test_auto_total_steps_span_the_run(void **state)
{
    (void)state;
    ensure_data();
    char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {batch: 16, optimizer: {kind: sgd, lr: 0.01}, schedule: cosine}\n"
                     "stages:\n"
                     "  - {epochs: 1, losses: [{kind: ce}]}\n"
                     "  - {epochs: 1, losses: [{kind: ce}]}\n");
    run_ok("cos", text, "cos", 1, 0, 0);
    json_t *m = read_metrics("cos");
    /* after STEPS of 2 * STEPS steps, cosine is at half its base */
    double lr = num(json_array_get(m, 0), "lr");
    if (fabs(lr - 0.005) > 1e-6) fail_msg("lr after the first of two epochs: %g, expected 0.005", lr);
    json_decref(m);
    free(text);
}

/* The schedule's own base_lr is the rate a run uses (the optimizer's lr is only its default). */
static void test_schedule_base_lr(void **state)
{
    (void)state;
    ensure_data();
    char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train:\n  epochs: 1\n  batch: 16\n  optimizer: {kind: sgd, lr: 0.001}\n"
                     "  schedule: {kind: constant, base_lr: 0.05}\n"
                     "losses:\n  - kind: ce\n");
    run_ok("sched", text, "sched", 1, 0, 0);
    json_t *m = read_metrics("sched");
    double lr = num(json_array_get(m, 0), "lr");
    if (fabs(lr - 0.05) > 1e-7) fail_msg("the run used lr %g, the schedule says 0.05", lr);
    json_decref(m);
    free(text);
}

/* ---------------------------------------------------------------------------------------------
 * runs that could crash the process run in a child process (this program with --child), so that a
 * crash fails one test instead of ending the whole program */

static void run_child(const char *name, const char *text, train_result *res, xd_err *e)
{
    char *yaml = tu_fmt("%s.yaml", name), *out = tu_fmt("child-%s", name), *st = tu_fmt("%s.status", out);
    tu_write_file(yaml, text, strlen(text));
    remove(st);
    char *argv[] = {"test_trainer", "--child", yaml, out, NULL};
    extern char **environ;
    pid_t pid;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0)
        fail_msg("cannot start a child process");
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    if (WIFSIGNALED(ws)) fail_msg("%s: the trainer crashed (signal %d)", name, WTERMSIG(ws));
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("%s: the trainer died (exit status %d)", name, WEXITSTATUS(ws));
    FILE *f = fopen(st, "rb");
    assert_non_null(f);
    int code = -1;
    memset(res, 0, sizeof *res);
    xd_err_clear(e);
    if (fscanf(f, "%d %lf %d\n", &code, &res->final_acc, &res->epochs_done) != 3)
        fail_msg("%s: bad child status", name);
    size_t n = fread(e->msg, 1, sizeof e->msg - 1, f);
    e->msg[n] = '\0';
    e->code = (xd_status)code;
    fclose(f);
    free(yaml);
    free(out);
    free(st);
}

/* The child's side: load the recipe, train with seed 1, write "status acc epochs\nmessage". */
static int child_main(const char *yaml, const char *out)
{
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    train_result res = {0};
    xd_status s = recipe_load(yaml, NULL, 0, &r, &e);
    if (s == XD_OK) {
        train_opts o = {.out_dir = out, .quiet = 1};
        s = trainer_run(&r, 1, &o, &res, &e);
        recipe_free(&r);
    }
    char *st = tu_fmt("%s.status", out);
    FILE *f = fopen(st, "wb");
    if (!f) return 3;
    fprintf(f, "%d %.17g %d\n%s", (int)s, res.final_acc, res.epochs_done, s == XD_OK ? "" : e.msg);
    fclose(f);
    free(st);
    return 0;
}

/* Hinton's CE part indexes the head's row by label: a head narrower than the classes is an error
 * (as for ce), never a read past the row. */
static void test_hinton_head_narrower_than_classes(void **state)
{
    (void)state;
    ensure_data();
    nn_model three;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(nn_model_build(&three, "input h=8 w=8 c=1; flatten; linear out=3 name=out3 head", 16, 3, &e));
    TU_OK(ckpt_save("three.safetensors", &three, NULL, 0, &e));
    nn_model_free(&three);
    char *text = student_recipe("", "input h=8 w=8 c=1; flatten; linear out=3 name=logits head",
                                "teachers:\n  - {name: t3, checkpoint: three.safetensors}\n", 1,
                                "adamw", "  - {kind: hinton, label_map: [0, 1, 2]}\n");
    train_result r;
    run_child("hinton3", text, &r, &e);
    if (e.code == XD_OK) fail_msg("a 3-output head trained on 4 classes with hinton");
    tu_assert_err(&e, XD_ESHAPE, "4 classes");
    free(text);
}

/* Batches larger than any fixed buffer: a cached teacher over 4200 examples in one batch. */
static void test_cache_with_a_large_batch(void **state)
{
    (void)state;
    ensure_teacher();
    tiny_spec sp = tiny_default();
    sp.n_train = 4200;
    sp.n_test = 20;
    sp.texts = 0;
    tiny_write("big.xds", &sp);
    char *text = tu_fmt("data: {path: big.xds}\nmodel: \"" MLP_MODEL "\"\n" TEACHERS
                     "train: {epochs: 1, batch: 4200}\nlosses:\n  - kind: kd\n");
    train_result r;
    xd_err e;
    run_child("bigbatch", text, &r, &e);
    if (e.code != XD_OK) fail_msg("bigbatch: %s", e.msg);
    assert_int_equal(r.epochs_done, 1);
    free(text);
}

/* Two KD losses on two heads of one teacher read each head's outputs, cached or not. */
static void test_cache_two_teacher_heads(void **state)
{
    (void)state;
    ensure_data();
    nn_model two;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(nn_model_build(&two, "input h=8 w=8 c=1; flatten; linear out=16 name=fc; relu name=f; "
                               "linear out=4 name=early head; linear out=4 name=late from=f head",
                         16, 5, &e));
    TU_OK(ckpt_save("twoheads.safetensors", &two, NULL, 0, &e));
    nn_model_free(&two);
    const char *losses = "losses:\n"
                         "  - {kind: kd, teacher_head: early, temperature: 1}\n"
                         "  - {kind: kd, teacher_head: late, temperature: 1}\n";
    char *on = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: t, checkpoint: twoheads.safetensors}\n"
                   "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n%s", losses);
    char *off = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                    "teachers:\n  - {name: t, checkpoint: twoheads.safetensors, cache: false}\n"
                    "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n%s", losses);
    run_ok("heads-on", on, "heads-on", 1, 0, 0);
    run_ok("heads-off", off, "heads-off", 1, 0, 0);
    json_t *a = read_metrics("heads-on"), *b = read_metrics("heads-off");
    for (int l = 0; l < 2; l++) {
        char key[32];
        snprintf(key, sizeof key, "loss.%d.kd", l);
        double x = num(json_array_get(a, 0), key), y = num(json_array_get(b, 0), key);
        if (fabs(x - y) > 1e-3 * (1.0 + fabs(y)))
            fail_msg("%s: %.6f with the cache, %.6f without", key, x, y);
    }
    json_decref(a);
    json_decref(b);
    free(on);
    free(off);
}

/* ---------------------------------------------------------------------------------------------
 * 10. across modalities */

static void test_text_student_from_image_teacher(void **state)
{
    (void)state;
    ensure_teacher();
    if (!exists("unlab.xds")) {
        tiny_spec sp = tiny_default();
        sp.unlabelled = 1;
        tiny_write("unlab.xds", &sp);
    }
    /* no training label at all: the image teacher's outputs on each example's image are the only
     * signal for the text student reading the same example's English text */
    char *text = tu_fmt("data:\n  path: unlab.xds\n  student_view: text.en\n  text: \"buckets=512\"\n"
                     "model: \"" TEXT_MODEL "\"\n"
                     "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT ", view: image}\n"
                     "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.05}}\n"
                     "losses:\n  - {kind: kd, temperature: 2}\n");
    train_result r = run_ok("xmodal", text, "xmodal", 1, 0, 0);
    print_message("text student taught by the image teacher: %.3f (chance 0.25)\n", r.final_acc);
    assert_true(r.final_acc >= 0.8);
    json_error_t je;
    json_t *s = json_load_file("xmodal/summary.json", 0, &je);
    assert_non_null(s);
    assert_int_equal((int)num(s, "labels_used"), 0);
    json_decref(s);
    /* and the German texts work the same way */
    char *de = tu_fmt("data:\n  path: unlab.xds\n  student_view: text.de\n  text: \"buckets=512\"\n"
                   "model: \"" TEXT_MODEL "\"\n"
                   "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT ", view: image}\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.05}}\n"
                   "losses:\n  - {kind: kd, temperature: 2}\n");
    r = run_ok("xmodal-de", de, "xmodal-de", 1, 0, 0);
    assert_true(r.final_acc >= 0.8);
    free(text);
    free(de);
}

/* A text teacher on toy.xds reading `view`, trained into dir; it must learn the task. */
static void train_text_teacher(const char *dir, const char *view)
{
    ensure_data();
    char *tt = tu_fmt("data: {path: toy.xds, student_view: %s, text: \"buckets=512\"}\n"
                   "model: \"" TEXT_MODEL "\"\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.05}}\n"
                   "losses:\n  - kind: ce\n", view);
    train_result t = run_ok(dir, tt, dir, 1, 0, 0);
    assert_true(t.final_acc >= 0.9);
    free(tt);
}

/* A text teacher (trained with its own text settings) teaches an image student whose recipe says
 * nothing about text: the teacher must read the ids it was trained on. */
static void test_image_student_from_text_teacher(void **state)
{
    (void)state;
    train_text_teacher("textteacher", "text.de");
    char *st = tu_fmt("data: {path: toy.xds, labels_per_class: 2}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: txt, checkpoint: textteacher/best.safetensors, "
                   "view: text.de}\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                   "losses:\n  - kind: ce\n  - {kind: kd, temperature: 2}\n");
    train_result r = run_ok("fromtext", st, "fromtext", 1, 0, 0);
    assert_true(r.final_acc >= 0.9);
    free(st);
}

/* ---------------------------------------------------------------------------------------------
 * alignment: label maps, averaged languages, contrastive losses, fitted projectors */

/* A recipe that must not load; the message names the key. */
static void expect_recipe_error(const char *name, const char *text, const char *want)
{
    char *path = tu_fmt("%s.yaml", name);
    tu_write_file(path, text, strlen(text));
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load(path, NULL, 0, &r, &e) == XD_OK) fail_msg("%s: the recipe loaded", name);
    print_message("%s: %s\n", name, e.msg);
    if (!strstr(e.msg, want)) fail_msg("%s: message '%s' does not mention '%s'", name, e.msg, want);
    free(path);
}

/* A label map moves the teacher's probability onto the student's classes: with no student label
 * at all, a student taught through the map [1, 2, 3, 0] learns the shifted classes (so it is
 * wrong on almost every test example), through the identity the right ones. */
static void test_label_map_list(void **state)
{
    (void)state;
    ensure_teacher();
    const char *maps[2] = {"[0, 1, 2, 3]", "[1, 2, 3, 0]"};
    double acc[2];
    for (int k = 0; k < 2; k++) {
        char *losses = tu_fmt("  - {kind: kd, temperature: 2, label_map: %s}\n", maps[k]);
        char *text = student_recipe("  label_fraction: 0\n", MLP_MODEL, TEACHERS, 3,
                                    "{kind: adamw, lr: 0.01}", losses);
        char *dir = tu_fmt("lmap-%d", k);
        acc[k] = run_ok(dir, text, dir, 1, 0, 0).final_acc;
        free(dir);
        free(text);
        free(losses);
    }
    print_message("label map: identity %.3f, shifted %.3f\n", acc[0], acc[1]);
    assert_true(acc[0] >= 0.9);
    assert_true(acc[1] <= 0.1);
    /* a list that does not fit the teacher, and a class the student does not have */
    char *t1 = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: adamw, lr: 0.01}",
                              "  - {kind: kd, label_map: [0, 1, 2]}\n");
    expect_error("lmap-short", t1, "label_map lists 3 teacher classes", "has 4");
    char *t2 = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: adamw, lr: 0.01}",
                              "  - {kind: kd, label_map: [0, 1, 2, 4]}\n");
    expect_error("lmap-range", t2, "label_map", "4");
    free(t1);
    free(t2);
}

/* label_map: label — the teacher knows the 4 quadrants, the student (no label of its own) the 2
 * rows of the data set's label.row; the map comes from how the two label sets co-occur. */
static void test_label_map_from_data(void **state)
{
    (void)state;
    ensure_teacher();
    const char *row_model = "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu name=feat; "
                            "linear out=2 name=logits head";
    char *text = student_recipe("  label: label.row\n  label_fraction: 0\n", row_model, TEACHERS, 3,
                                "{kind: adamw, lr: 0.01}",
                                "  - {kind: kd, temperature: 2, label_map: label}\n");
    train_result r = run_ok("lmap-data", text, "lmap-data", 1, 0, 0);
    print_message("rows learnt from a quadrant teacher: %.3f (chance 0.5)\n", r.final_acc);
    assert_true(r.final_acc >= 0.9);
    /* a run that cannot start leaves the folder's earlier results alone */
    char *missing = student_recipe("  label: label.row\n  label_fraction: 0\n", row_model, TEACHERS, 3,
                                   "{kind: adamw, lr: 0.01}",
                                   "  - {kind: kd, temperature: 2, label_map: label.nosuch}\n");
    train_result rr;
    xd_err e;
    assert_int_not_equal(run_text("lmap-missing", missing, "lmap-data", 1, 0, 0, &rr, &e), XD_OK);
    print_message("lmap-missing: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "label.nosuch"));
    assert_true(exists("lmap-data/summary.json"));
    assert_true(exists("lmap-data/best.safetensors"));
    free(missing);
    /* without the map the widths differ, and the message says what would fix it */
    char *bad = student_recipe("  label: label.row\n", row_model, TEACHERS, 1,
                               "{kind: adamw, lr: 0.01}", "  - {kind: kd}\n");
    expect_error("lmap-none", bad, "2 outputs", "label_map");
    free(text);
    free(bad);
}

/* A text teacher that reads every language of an example and averages its outputs teaches an image
 * student without labels; `average` needs the text.* view. */
static void test_languages_average(void **state)
{
    (void)state;
    train_text_teacher("avgteacher", "text.*");
    char *st = tu_fmt("data: {path: toy.xds, label_fraction: 0}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: txt, checkpoint: avgteacher/best.safetensors, "
                   "view: text.*, languages: average}\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                   "losses:\n  - {kind: kd, temperature: 2}\n"
                   "  - {kind: feature, student_tap: feat, teacher_tap: emb, weight: 0.1}\n");
    train_result a = run_ok("avgstudent", st, "avgstudent", 1, 0, 0);
    run_ok("avgstudent", st, "avgstudent-2", 1, 0, 0);
    print_message("image student from the averaged text teacher: %.3f\n", a.final_acc);
    assert_true(a.final_acc >= 0.9);
    assert_true(tu_same_file("avgstudent/last.safetensors", "avgstudent-2/last.safetensors"));
    char *bad = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                    "teachers:\n  - {name: txt, checkpoint: avgteacher/best.safetensors, "
                    "view: text.de, languages: average}\n"
                    "train: {epochs: 1, batch: 16, optimizer: sgd}\n"
                    "losses:\n  - {kind: kd}\n");
    expect_recipe_error("avg-view", bad, "teachers.0.languages: 'average' needs the view text.*");
    free(st);
    free(bad);

    /* The targets are the mean of the teacher's logits over the languages: with a learning rate so
     * small that the student stays where it starts, the first epoch's KD loss is the KD of the
     * untrained student against those means, which the test recomputes from both languages'
     * logits. Batches of 20 split the 200 examples evenly, so the order does not matter. */
    enum { B20 = 20 };
    char *probe = tu_fmt("data: {path: toy.xds, label_fraction: 0}\nmodel: \"" MLP_MODEL "\"\n"
                      "teachers:\n  - {name: txt, checkpoint: avgteacher/best.safetensors, "
                      "view: text.*, languages: average}\n"
                      "train: {epochs: 1, batch: %d, optimizer: {kind: sgd, lr: 0.000000001}}\n"
                      "losses:\n  - {kind: kd, temperature: 2}\n", B20);
    run_ok("avgprobe", probe, "avgprobe", 1, 0, 0);
    json_t *m = read_metrics("avgprobe");
    const double got = num(json_array_get(m, 0), "loss.0.kd");
    json_decref(m);
    nn_model t, stu;
    xd_err e;
    xd_err_clear(&e);
    if (ckpt_load("avgteacher/best.safetensors", B20, &t, &e) != XD_OK) fail_msg("%s", e.msg);
    if (nn_model_build(&stu, MLP_MODEL, B20, 1, &e) != XD_OK) fail_msg("%s", e.msg);
    split_feed tf, sf;
    open_split(&tf, "toy.xds", "train", "text.*", &t, "", "buckets=512");
    open_split(&sf, "toy.xds", "train", "image", &stu, "", "");
    const int K = TINY_CLASSES;
    float avg[B20 * TINY_CLASSES], en[B20 * TINY_CLASSES], q[B20 * TINY_CLASSES], ps[B20 * TINY_CLASSES];
    uint8_t present[B20];
    uint32_t idx[B20];
    double want = 0.0, want_en = 0.0;
    for (int i0 = 0; i0 < N_TRAIN; i0 += B20) {
        for (int b = 0; b < B20; b++) idx[b] = (uint32_t)(i0 + b);
        memset(avg, 0, sizeof avg);
        for (int lang = 0; lang < 2; lang++) {
            TU_OK(feed_fill_lang(&tf.f, idx, B20, lang, tf.input, present, &e));
            nn_model_forward(&t, tf.input, B20, NULL);
            const float *out = nn_model_out(&t, nn_model_default_head(&t));
            for (int j = 0; j < B20 * K; j++) avg[j] += 0.5f * out[j];
            if (lang == 0) memcpy(en, out, sizeof en);
        }
        TU_OK(feed_fill(&sf.f, idx, B20, 0, 0, 0, sf.input, &e));
        nn_model_forward(&stu, sf.input, B20, NULL);
        const float *s_out = nn_model_out(&stu, nn_model_default_head(&stu));
        kd_soft_targets(q, avg, B20, K, 2.0f);
        want += kd_forward(ps, s_out, q, NULL, B20, K, 2.0f);
        kd_soft_targets(q, en, B20, K, 2.0f);
        want_en += kd_forward(ps, s_out, q, NULL, B20, K, 2.0f);
    }
    want /= N_TRAIN / B20;
    want_en /= N_TRAIN / B20;
    print_message("first-epoch KD %.6f; from averaged logits %.6f, from English alone %.6f\n", got,
                  want, want_en);
    assert_true(fabs(got - want) <= 1e-4 * fabs(want));
    assert_true(fabs(want_en - want) > 1e-2 * fabs(want));
    close_split(&tf);
    close_split(&sf);
    nn_model_free(&t);
    nn_model_free(&stu);
    free(probe);
}

/* A text.* feed is scored on every (example, language) pair: with both languages present for every
 * example, exactly the mean of the two single-language accuracies. A model trained on English only
 * scores differently on German, so the two parts are not the same number. */
static void test_text_eval_every_language(void **state)
{
    (void)state;
    train_text_teacher("en-only", "text.en");
    nn_model m;
    load_ckpt("en-only/best.safetensors", &m);
    const char *text = "buckets=512";
    double en = accuracy(&m, "toy.xds", "text.en", "", text),
           de = accuracy(&m, "toy.xds", "text.de", "", text),
           all = accuracy(&m, "toy.xds", "text.*", "", text);
    print_message("english-trained text model: en %.3f, de %.3f, every language %.3f\n", en, de, all);
    assert_true(en >= 0.9);
    assert_true(fabs(en - de) > 0.05);
    assert_true(fabs(all - 0.5 * (en + de)) < 1e-12);
    nn_model_free(&m);
    /* feed_fill_lang: a row per example in the language asked for, and which ones have a text */
    split_feed sf;
    nn_model t;
    load_ckpt("en-only/best.safetensors", &t);
    open_split(&sf, "toy.xds", "test", "text.*", &t, "", text);
    uint32_t idx[3] = {0, 5, 99};
    int32_t rows[3 * 64];
    uint8_t present[3];
    xd_err e;
    xd_err_clear(&e);
    TU_OK(feed_fill_lang(&sf.f, idx, 3, 1, rows, present, &e));
    for (int b = 0; b < 3; b++) {
        assert_int_equal(present[b], 1);
        assert_memory_equal(rows + b * sf.f.L, sf.f.ids + ((size_t)sf.f.n + idx[b]) * sf.f.L,
                            sizeof(int32_t) * (size_t)sf.f.L);
    }
    assert_int_equal(feed_fill_lang(&sf.f, idx, 3, 2, rows, present, &e), XD_EARG);
    idx[1] = 100;
    assert_int_equal(feed_fill_lang(&sf.f, idx, 3, 0, rows, present, &e), XD_EARG);
    close_split(&sf);
    nn_model_free(&t);
}

static float resume_scalar(const char *dir, const char *name)
{
    char *rp = path2(dir, "resume.safetensors");
    io_st_file *f;
    xd_err e;
    xd_err_clear(&e);
    if (io_st_open(rp, &f, &e) != XD_OK) fail_msg("%s", e.msg);
    const io_tensor *t = io_st_find(f, name);
    if (!t) fail_msg("%s: no '%s'", rp, name);
    float v = ((const float *)t->data)[0];
    io_st_close(f);
    free(rp);
    return v;
}

/* Contrastive alignment of the student's features with the teacher's, with a learned
 * temperature: the loss falls, the temperature moves and is clamped, a resumed run is exact. */
static void test_contrastive(void **state)
{
    (void)state;
    ensure_teacher();
    const char *losses = "  - kind: ce\n"
                         "  - {kind: contrastive, student_tap: feat, teacher_tap: feat, "
                         "temperature: 0.2, learn_temperature: true}\n";
    char *text = student_recipe("  labels_per_class: 5\n", MLP_MODEL, TEACHERS, 3,
                                "{kind: adamw, lr: 0.01}", losses);
    train_result r = run_ok("clip", text, "clip", 1, 0, 0);
    json_t *m = read_metrics("clip");
    double c1 = num(json_array_get(m, 0), "loss.1.contrastive"),
           c3 = num(json_array_get(m, 2), "loss.1.contrastive");
    print_message("contrastive %.4f -> %.4f, accuracy %.3f\n", c1, c3, r.final_acc);
    /* B = 16: a batch of unrelated pairs starts near log 16 = 2.77 */
    assert_true(c1 > 0.5 && c1 < 3.5);
    if (!(c3 < 0.8 * c1)) fail_msg("contrastive loss %.4f -> %.4f did not fall", c1, c3);
    json_decref(m);
    float theta = resume_scalar("clip", "loss1.theta");
    print_message("theta %.4f (start %.4f)\n", theta, log(1.0 / 0.2));
    assert_true(fabs(theta - log(1.0 / 0.2)) > 1e-3);
    assert_true(theta >= 0.0f && theta <= (float)ALIGN_CLIP_THETA_MAX);
    int stops[] = {1};
    check_resume("clip-resume", text, 3, stops, 1);
    /* a fixed temperature stays out of the resume state */
    char *fixed = student_recipe("  labels_per_class: 5\n", MLP_MODEL, TEACHERS, 1,
                                 "{kind: adamw, lr: 0.01}",
                                 "  - {kind: contrastive, student_tap: feat, teacher_tap: feat}\n");
    run_ok("clip-fixed", fixed, "clip-fixed", 1, 0, 0);
    char *rp = path2("clip-fixed", "resume.safetensors");
    io_st_file *f;
    xd_err e;
    xd_err_clear(&e);
    if (io_st_open(rp, &f, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_null(io_st_find(f, "loss0.theta"));
    io_st_close(f);
    free(rp);
    free(fixed);
    /* a fixed temperature is used as given, outside CLIP's clamp too */
    double at[2];
    const char *temps[2] = {"1", "2"};
    for (int k = 0; k < 2; k++) {
        char *losses_t = tu_fmt("  - {kind: contrastive, student_tap: feat, teacher_tap: feat, "
                             "temperature: %s}\n", temps[k]);
        char *tt = student_recipe("  labels_per_class: 5\n", MLP_MODEL, TEACHERS, 1,
                                  "{kind: adamw, lr: 0.01}", losses_t);
        char *dir = tu_fmt("clip-t%s", temps[k]);
        run_ok(dir, tt, dir, 1, 0, 0);
        json_t *mt = read_metrics(dir);
        at[k] = num(json_array_get(mt, 0), "loss.0.contrastive");
        json_decref(mt);
        free(dir);
        free(tt);
        free(losses_t);
    }
    print_message("contrastive at T=1 %.5f, T=2 %.5f\n", at[0], at[1]);
    assert_true(fabs(at[0] - at[1]) > 1e-3);
    free(text);
}

/* A projector started from a map fitted on the two models' taps (Procrustes, CCA) matches the
 * teacher's features better at once than a random one; a frozen one keeps its map. */
static void test_projector_init(void **state)
{
    (void)state;
    ensure_teacher();
    const char *inits[3] = {"random", "procrustes", "cca"};
    double first[3];
    for (int k = 0; k < 3; k++) {
        /* lr so small that the first epoch's loss is the starting map's */
        char *losses = tu_fmt("  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                           "projector: linear, projector_init: %s, projector_frozen: %s}\n",
                           inits[k], k ? "true" : "false");
        char *text = student_recipe("", MLP_MODEL, TEACHERS, 2, "{kind: sgd, lr: 0.000001}", losses);
        char *dir = tu_fmt("pinit-%s", inits[k]);
        run_ok(dir, text, dir, 1, 0, 0);
        json_t *m = read_metrics(dir);
        first[k] = num(json_array_get(m, 0), "loss.0.feature");
        json_decref(m);
        if (k) {
            /* frozen: the map in the resume state after 1 and after 2 epochs is the same */
            char *d1 = tu_fmt("%s-1", dir);
            run_ok(dir, text, d1, 1, 1, 0);
            char *a = path2(d1, "resume.safetensors"), *b = path2(dir, "resume.safetensors");
            io_st_file *fa = NULL, *fb = NULL;
            xd_err e;
            xd_err_clear(&e);
            if (io_st_open(a, &fa, &e) != XD_OK || io_st_open(b, &fb, &e) != XD_OK)
                fail_msg("%s", e.msg);
            const io_tensor *ta = io_st_find(fa, "proj0.param"), *tb = io_st_find(fb, "proj0.param");
            assert_non_null(ta);
            assert_non_null(tb);
            assert_memory_equal(ta->data, tb->data, sizeof(float) * (size_t)ta->shape[0]);
            io_st_close(fa);
            io_st_close(fb);
            free(a);
            free(b);
            free(d1);
        }
        free(dir);
        free(text);
        free(losses);
    }
    print_message("first-epoch feature loss: random %.4f, procrustes %.4f, cca %.4f\n", first[0],
                  first[1], first[2]);
    assert_true(first[1] < 0.7 * first[0]);
    assert_true(first[2] < 0.7 * first[0]);
    /* cca is a least-squares fit: no worse than the rotation */
    assert_true(first[2] <= first[1] * 1.05);
    char *bad = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: sgd, lr: 0.1}",
                               "  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                               "projector_frozen: true}\n");
    expect_recipe_error("pinit-frozen", bad, "losses.0.projector_frozen: a frozen projector needs "
                                             "projector_init");
    free(bad);
    /* an MLP projector learns; it has no closed-form start */
    char *mlp = student_recipe("", MLP_MODEL, TEACHERS, 3, "{kind: adamw, lr: 0.01}",
                               "  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                               "projector: mlp}\n");
    run_ok("pmlp", mlp, "pmlp", 1, 0, 0);
    json_t *m = read_metrics("pmlp");
    double f1 = num(json_array_get(m, 0), "loss.0.feature"), f3 = num(json_array_get(m, 2), "loss.0.feature");
    print_message("mlp projector: feature loss %.4f -> %.4f\n", f1, f3);
    assert_true(f3 < 0.8 * f1);
    json_decref(m);
    char *mlp_init = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: sgd, lr: 0.1}",
                                    "  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                                    "projector: mlp, projector_init: cca}\n");
    expect_recipe_error("pmlp-init", mlp_init, "losses.0: projector_init cca fits a linear map");
    free(mlp);
    free(mlp_init);
}

/* ---------------------------------------------------------------------------------------------
 * validation split, eval sets, class names */

/* How often "KEY" occurs in the header of the safetensors file path, read as raw bytes (the
 * reader would refuse a key given twice rather than count it). */
static int header_key_count(const char *path, const char *key)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    assert_non_null(b);
    assert_true(n >= 8);
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | b[i];
    assert_true(len <= n - 8);
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    b[8 + len] = '\0'; /* the header alone (tu_read_file leaves a byte after the file) */
    int count = 0;
    for (const char *p = strstr((char *)b + 8, quoted); p; p = strstr(p + 1, quoted)) count++;
    free(b);
    return count;
}

/* data.val_fraction: a fifth of each class's 50 labelled examples held out (40), training walks
 * the other 160 (10 batches of 16); every evaluation has val_acc, val_bacc, test_bacc; best is the
 * epoch of the best validation score, and the summary gives its test score next to the last one.
 * The checkpoints store the class names, once. */
static void test_validation_fraction(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  val_fraction: 0.2\n", MLP_MODEL, "", 4,
                                "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    train_result r = run_ok("valfrac", text, "valfrac", 3, 0, 0);
    assert_true(r.val);
    json_t *sum = load_json("valfrac/summary.json");
    assert_string_equal(json_string_value(json_object_get(sum, "best_on")), "val");
    assert_int_equal((int)num(sum, "val_examples"), 40);
    assert_int_equal((int)num(sum, "labels_used"), 160);
    assert_null(json_object_get(sum, "best_test_acc"));
    json_t *m = read_metrics("valfrac");
    assert_int_equal(json_array_size(m), 4);
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 10);
    int best = 0;
    for (int i = 0; i < 4; i++) {
        json_t *l = json_array_get(m, (size_t)i);
        assert_true(num(l, "val_bacc") >= 0.0 && num(l, "test_bacc") >= 0.0);
        if (num(l, "val_acc") > num(json_array_get(m, (size_t)best), "val_acc")) best = i;
    }
    json_t *bl = json_array_get(m, (size_t)best);
    assert_int_equal((int)num(sum, "best_epoch"), best + 1);
    assert_true(fabs(num(sum, "best_val_acc") - num(bl, "val_acc")) < 1e-6);
    assert_true(fabs(num(sum, "test_acc_at_best") - num(bl, "test_acc")) < 1e-6);
    assert_true(fabs(num(sum, "final_test_acc") - num(json_array_get(m, 3), "test_acc")) < 1e-6);
    assert_true(fabs(num(sum, "final_test_bacc") - num(json_array_get(m, 3), "test_bacc")) < 1e-6);
    char *ep = NULL, *cls = NULL;
    xd_err e;
    TU_OK(ckpt_read_meta("valfrac/best.safetensors", "epoch", &ep, &e));
    assert_int_equal(atoi(ep), best + 1);
    TU_OK(ckpt_read_meta("valfrac/best.safetensors", CKPT_META_CLASSES, &cls, &e));
    assert_string_equal(cls, "[\"top-left\",\"top-right\",\"bottom-left\",\"bottom-right\"]");
    /* one writer: each checkpoint names its classes (and its images) once */
    assert_int_equal(header_key_count("valfrac/best.safetensors", CKPT_META_CLASSES), 1);
    assert_int_equal(header_key_count("valfrac/last.safetensors", CKPT_META_CLASSES), 1);
    assert_int_equal(header_key_count("valfrac/best.safetensors", "xdistill.images"), 1);
    free(ep);
    free(cls);
    json_decref(m);
    json_decref(sum);
    /* a low-label run validates on its own labels: 10 per class seen, 3 of them held out */
    free(text);
    text = student_recipe("  label_fraction: 0.2\n  val_fraction: 0.25\n", MLP_MODEL, "", 1,
                          "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    run_ok("vallow", text, "vallow", 3, 0, 0);
    sum = load_json("vallow/summary.json");
    assert_int_equal((int)num(sum, "val_examples"), 12);
    assert_int_equal((int)num(sum, "labels_used"), 28);
    json_decref(sum);
    /* without a validation split the summary says best was chosen on the test split */
    ensure_teacher();
    sum = load_json("teacher/summary.json");
    assert_string_equal(json_string_value(json_object_get(sum, "best_on")), "test");
    assert_non_null(json_object_get(sum, "best_test_acc"));
    json_decref(sum);
    free(text);
}

/* A stage with a teacher walks every training example but the held-out ones: 200 - 40 = 160
 * (10 batches) instead of 13; the run is the same for the same seed, and another seed holds out
 * other examples (another run). */
static void test_validation_excluded_from_teacher_steps(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = student_recipe("  val_fraction: 0.2\n", MLP_MODEL, TEACHERS, 1,
                                "{kind: adamw, lr: 0.01}",
                                "  - {kind: kd, teacher: cnn, temperature: 4}\n");
    run_ok("valkd", text, "valkd-a", 3, 0, 0);
    run_ok("valkd", text, "valkd-b", 3, 0, 0);
    json_t *m = read_metrics("valkd-a");
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 10);
    json_decref(m);
    assert_true(tu_same_file("valkd-a/last.safetensors", "valkd-b/last.safetensors"));
    free(text);
}

/* data.val names a split: here the test split validates while the training split is scored as
 * the test (100 validation examples). */
static void test_validation_named_split(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  test: train\n  val: test\n", MLP_MODEL, "", 2,
                                "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    run_ok("valnamed", text, "valnamed", 1, 0, 0);
    json_t *sum = load_json("valnamed/summary.json");
    assert_int_equal((int)num(sum, "val_examples"), 100);
    assert_string_equal(json_string_value(json_object_get(sum, "best_on")), "val");
    json_decref(sum);
    free(text);
    xd_err e;
    text = student_recipe("  val: test\n", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                          "  - kind: ce\n");
    recipe r;
    tu_write_file("valbad.yaml", text, strlen(text));
    assert_int_equal(recipe_load("valbad.yaml", NULL, 0, &r, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "neither the training nor the test split");
    free(text);
}

/* The same examples with the classes in reverse order (names and labels): an eval set of it
 * scores exactly what the test split scores, because its classes are matched by name. */
static void ensure_reversed(void)
{
    if (exists("reversed.xds")) return;
    tiny_spec s = tiny_default();
    s.reversed = 1;
    tiny_write("reversed.xds", &s);
}

/* The tiny set with a class named "middle" instead of "top-left". */
static void ensure_middle(void)
{
    if (exists("middle.xds")) return;
    tiny_spec s = tiny_default();
    s.class0 = "middle";
    tiny_write("middle.xds", &s);
}

static void test_eval_sets(void **state)
{
    (void)state;
    ensure_data();
    ensure_reversed();
    char *text = student_recipe("  eval_sets:\n"
                                "    - {name: same, path: toy.xds}\n"
                                "    - {name: rev, path: reversed.xds, split: test}\n",
                                MLP_MODEL, "", 2, "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    run_ok("evalsets", text, "evalsets", 1, 0, 0);
    json_t *m = read_metrics("evalsets");
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *l = json_array_get(m, i);
        assert_true(fabs(num(l, "eval.same.acc") - num(l, "test_acc")) < 1e-9);
        assert_true(fabs(num(l, "eval.same.bacc") - num(l, "test_bacc")) < 1e-9);
        assert_true(fabs(num(l, "eval.rev.acc") - num(l, "test_acc")) < 1e-9);
        assert_true(fabs(num(l, "eval.rev.bacc") - num(l, "test_bacc")) < 1e-9);
    }
    json_decref(m);
    free(text);
    /* a class the run does not have: an error naming both sets */
    ensure_middle();
    text = student_recipe("  eval_sets: [{name: mid, path: middle.xds}]\n", MLP_MODEL, "", 1,
                          "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    train_result res;
    xd_err e;
    assert_int_equal(run_text("evalmid", text, "evalmid", 1, 0, 0, &res, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'middle'");
    tu_assert_err(&e, XD_EARG, "top-left, top-right, bottom-left, bottom-right");
    free(text);
}

/* A teacher trained on the classes in reverse order teaches a student of the usual order through
 * their names: a KD-only student without a label learns the right classes (read in the stored
 * order, every answer would be another class). A teacher with a class the data set lacks is an
 * error listing both sets. */
static void test_teacher_classes_by_name(void **state)
{
    (void)state;
    ensure_data();
    ensure_reversed();
    const char *rev_teacher = "name: revteacher\nseed: 1\ndata: {path: reversed.xds}\n"
                              "model: \"" TEACHER_MODEL "\"\n"
                              "train: {epochs: 4, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                              "losses:\n  - kind: ce\n";
    run_ok("revteacher", rev_teacher, "revteacher", 1, 0, 0);
    char *text = student_recipe("  label_fraction: 0\n", MLP_MODEL,
                                "teachers:\n  - {name: rev, checkpoint: revteacher/best.safetensors}\n",
                                6, "{kind: adamw, lr: 0.01}",
                                "  - {kind: kd, teacher: rev, temperature: 2}\n");
    train_result r = run_ok("revstudent", text, "revstudent", 1, 0, 0);
    if (r.final_acc < 0.8) fail_msg("student taught through the names: %.2f", r.final_acc);
    free(text);
    ensure_middle();
    const char *mid_teacher = "name: midteacher\nseed: 1\ndata: {path: middle.xds}\n"
                              "model: \"" MLP_MODEL "\"\n"
                              "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                              "losses:\n  - kind: ce\n";
    run_ok("midteacher", mid_teacher, "midteacher", 1, 0, 0);
    text = student_recipe("", MLP_MODEL,
                          "teachers:\n  - {name: mid, checkpoint: midteacher/best.safetensors}\n",
                          1, "{kind: adamw, lr: 0.01}", "  - {kind: kd, teacher: mid}\n");
    train_result res;
    xd_err e;
    assert_int_equal(run_text("midstudent", text, "midstudent", 1, 0, 0, &res, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'top-left'");
    tu_assert_err(&e, XD_EARG, "middle, top-right");
    free(text);
}

/* A run with a validation split stopped and resumed ends where the uninterrupted one does, its
 * best validation score and that epoch's test score included. A slow learner, so that the best
 * epoch comes before a stop and its test score differs from its validation score: the resume
 * state must carry both. */
static void test_validation_resume(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  val_fraction: 0.25\n", MLP_MODEL, "", 4,
                                "{kind: sgd, lr: 0.01}", "  - kind: ce\n");
    const int stops[] = {1, 2};
    check_resume("valres", text, 4, stops, 2);
    json_t *sum = load_json("valres-full/summary.json");
    assert_true(num(sum, "best_epoch") <= 2);
    assert_true(num(sum, "test_acc_at_best") != num(sum, "best_val_acc"));
    json_decref(sum);
    free(text);
}

/* Several models each choose their best checkpoint on the validation split: per model its
 * val_acc.NAME in the metrics, and its best epoch and test score there in the summary. */
static void test_validation_models(void **state)
{
    (void)state;
    ensure_data();
    const char *text = "data: {path: toy.xds, val_fraction: 0.2}\n"
                       "models:\n"
                       "  - {name: a, model: \"" MLP_MODEL "\"}\n"
                       "  - {name: b, model: \"" CNN_MODEL "\"}\n"
                       "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n  - {kind: ce, model: a}\n  - {kind: ce, model: b}\n";
    train_result r = run_ok("valmodels", text, "valmodels", 2, 0, 0);
    assert_int_equal(r.n_models, 2);
    json_t *m = read_metrics("valmodels"), *sum = load_json("valmodels/summary.json");
    const char *names[2] = {"a", "b"};
    for (int k = 0; k < 2; k++) {
        char key[32], tkey[32];
        snprintf(key, sizeof key, "val_acc.%s", names[k]);
        snprintf(tkey, sizeof tkey, "test_acc.%s", names[k]);
        int best = 0;
        for (int i = 0; i < 3; i++) {
            json_t *l = json_array_get(m, (size_t)i);
            assert_true(num(l, tkey) >= 0.0);
            if (num(l, key) > num(json_array_get(m, (size_t)best), key)) best = i;
        }
        json_t *o = json_object_get(json_object_get(sum, "models"), names[k]);
        assert_string_equal(json_string_value(json_object_get(o, "best_on")), "val");
        assert_int_equal((int)num(o, "best_epoch"), best + 1);
        assert_int_equal(r.models[k].best_epoch, best + 1);
        assert_true(fabs(num(o, "best_val_acc") - num(json_array_get(m, (size_t)best), key)) < 1e-6);
        assert_true(fabs(num(o, "test_acc_at_best") - num(json_array_get(m, (size_t)best), tkey)) < 1e-6);
        char *file = tu_fmt("valmodels/%s.best.safetensors", names[k]), *ep = NULL;
        xd_err e;
        TU_OK(ckpt_read_meta(file, "epoch", &ep, &e));
        assert_int_equal(atoi(ep), best + 1);
        free(ep);
        free(file);
    }
    json_decref(sum);
    json_decref(m);
}

/* A projector fitted at the start (projector_init) sees no validation example: frozen, its map
 * in a run holding a fifth of the examples out is not the map fitted on all of them. */
static void test_validation_excluded_from_projector_fit(void **state)
{
    (void)state;
    ensure_teacher();
    const char *losses = "  - {kind: feature, student_tap: feat, teacher_tap: feat, projector: linear,"
                         " projector_init: procrustes, projector_frozen: true}\n";
    char *with = student_recipe("  val_fraction: 0.2\n", MLP_MODEL, TEACHERS, 1,
                                "{kind: sgd, lr: 0.000001}", losses);
    char *without = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: sgd, lr: 0.000001}", losses);
    run_ok("pfit-val", with, "pfit-val", 1, 0, 0);
    run_ok("pfit-all", without, "pfit-all", 1, 0, 0);
    io_st_file *fa = NULL, *fb = NULL;
    xd_err e;
    if (io_st_open("pfit-val/resume.safetensors", &fa, &e) != XD_OK ||
        io_st_open("pfit-all/resume.safetensors", &fb, &e) != XD_OK)
        fail_msg("%s", e.msg);
    const io_tensor *ta = io_st_find(fa, "proj0.param"), *tb = io_st_find(fb, "proj0.param");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(ta->shape[0], tb->shape[0]);
    assert_true(memcmp(ta->data, tb->data, sizeof(float) * (size_t)ta->shape[0]) != 0);
    io_st_close(fa);
    io_st_close(fb);
    free(with);
    free(without);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child") == 0) return child_main(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_teacher_run_folder),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_threads_do_not_change_results),
        cmocka_unit_test(test_resume_single_stage),
        cmocka_unit_test(test_resume_two_stages),
        cmocka_unit_test(test_resume_finished_changes_nothing),
        cmocka_unit_test(test_resume_after_last_epoch_writes_summary),
        cmocka_unit_test(test_resume_other_recipe),
        cmocka_unit_test(test_metrics_line_not_lost),
        cmocka_unit_test(test_run_folder_lock),
        cmocka_unit_test(test_kd_students),
        cmocka_unit_test(test_teacher_cache),
        cmocka_unit_test(test_feature_loss_projector),
        cmocka_unit_test(test_hint_stage_freezes_upper_layers),
        cmocka_unit_test(test_attention_transfer),
        cmocka_unit_test(test_nan_absurd_lr),
        cmocka_unit_test(test_nan_in_second_epoch_keeps_first),
        cmocka_unit_test(test_nan_gradient_names_layer),
        cmocka_unit_test(test_nan_update_not_saved),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_no_usable_labels_is_an_error),
        cmocka_unit_test(test_no_test_examples_is_an_error),
        cmocka_unit_test(test_normalisation_applies_to_evaluation),
        cmocka_unit_test(test_teacher_reads_its_own_preprocessing),
        cmocka_unit_test(test_eval_every),
        cmocka_unit_test(test_label_fraction),
        cmocka_unit_test(test_steps_per_epoch),
        cmocka_unit_test(test_two_teachers),
        cmocka_unit_test(test_auto_total_steps_span_the_run),
        cmocka_unit_test(test_schedule_base_lr),
        cmocka_unit_test(test_hinton_head_narrower_than_classes),
        cmocka_unit_test(test_cache_with_a_large_batch),
        cmocka_unit_test(test_cache_two_teacher_heads),
        cmocka_unit_test(test_text_student_from_image_teacher),
        cmocka_unit_test(test_image_student_from_text_teacher),
        cmocka_unit_test(test_label_map_list),
        cmocka_unit_test(test_label_map_from_data),
        cmocka_unit_test(test_languages_average),
        cmocka_unit_test(test_text_eval_every_language),
        cmocka_unit_test(test_contrastive),
        cmocka_unit_test(test_projector_init),
        cmocka_unit_test(test_validation_fraction),
        cmocka_unit_test(test_validation_excluded_from_teacher_steps),
        cmocka_unit_test(test_validation_named_split),
        cmocka_unit_test(test_eval_sets),
        cmocka_unit_test(test_teacher_classes_by_name),
        cmocka_unit_test(test_validation_resume),
        cmocka_unit_test(test_validation_models),
        cmocka_unit_test(test_validation_excluded_from_projector_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
