/* Shared by the trainer's tests (see trainrun.h). */
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
#include "distill/runlock.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/safetensors.h"
#include "nn/model.h"
#include "tests/support/dirsnap.h"
#include "tests/support/imgfix.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

const char *const teacher_recipe =
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

train_result teacher_res;

int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Writes text to NAME.yaml and loads it. */
void load_recipe(const char *name, const char *text, recipe *r)
{
    char *path = tu_fmt("%s.yaml", name);
    tu_write_file(path, text, strlen(text));
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load(path, NULL, 0, r, &e) != XD_OK) fail_msg("recipe %s: %s", path, e.msg);
    free(path);
}

/* One trainer run of a recipe text; returns the status, e holds the message. */
xd_status run_text(const char *name, const char *text, const char *out, long seed,
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

train_result run_ok(const char *name, const char *text, const char *out, long seed,
                           int stop_after, int resume)
{
    train_result res;
    xd_err e;
    if (run_text(name, text, out, seed, stop_after, resume, &res, &e) != XD_OK)
        fail_msg("run %s -> %s failed: %s", name, out, e.msg);
    return res;
}

char *path2(const char *dir, const char *name) { return tu_fmt("%s/%s", dir, name); }

/* DIR/metrics.jsonl as a JSON array of its lines (each must parse as an object). */
json_t *read_metrics(const char *dir)
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

double num(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v || !json_is_number(v)) fail_msg("metrics: '%s' is missing or not a number", key);
    return json_number_value(v);
}

/* The metrics of two runs agree line by line on everything but the timing fields. */
void assert_same_metrics(const char *dir_a, const char *dir_b)
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

void load_ckpt(const char *path, nn_model *m)
{
    xd_err e;
    xd_err_clear(&e);
    if (ckpt_load(path, BATCH, m, &e) != XD_OK) fail_msg("ckpt_load %s: %s", path, e.msg);
}

void open_split(split_feed *sf, const char *data, const char *split, const char *view,
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

void close_split(split_feed *sf)
{
    free(sf->input);
    feed_close(&sf->f);
    io_dataset_close(sf->ds);
}

double accuracy(nn_model *m, const char *data, const char *view, const char *augment,
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

void copy_data_with(const char *src, const char *dst, const io_tensor *extra, int n_extra)
{
    io_dataset *ds;
    io_dataset_writer *w;
    xd_err e;
    TU_OK(io_dataset_open(src, &ds, &e));
    TU_OK(io_dataset_writer_open(dst, io_dataset_count(ds) + (size_t)n_extra, &w, &e));
    for (size_t i = 0; i < io_dataset_meta_count(ds); i++) {
        const io_kv *kv = io_dataset_meta_at(ds, i);
        TU_OK(io_dataset_set_meta(w, kv->key, kv->value, &e));
    }
    for (size_t i = 0; i < io_dataset_count(ds); i++) {
        const char *name = io_dataset_section_name(ds, i);
        if (strcmp(name, "__metadata__") == 0) continue;
        if (io_dataset_section_kind(ds, i) == IO_SECTION_STRINGS) {
            const io_strings *st = io_dataset_find_strings(ds, name);
            const char **v = xd_xmalloc((st->n + 1) * sizeof *v);
            for (size_t k = 0; k < st->n; k++) v[k] = io_strings_get(st, k, NULL);
            TU_OK(io_dataset_add_strings(w, name, v, st->n, &e));
            free(v);
            continue;
        }
        TU_OK(io_dataset_add(w, io_dataset_find(ds, name), &e));
    }
    for (int i = 0; i < n_extra; i++) TU_OK(io_dataset_add(w, &extra[i], &e));
    TU_OK(io_dataset_finish(w, &e));
    io_dataset_close(ds);
}

/* The data set and the teacher, made once and shared by the tests that need them. */
void ensure_data(void)
{
    if (exists("toy.xds")) return;
    tiny_spec s = tiny_default();
    tiny_write("toy.xds", &s);
}

void ensure_teacher(void)
{
    ensure_data();
    if (teacher_res.finished) return;
    teacher_res = run_ok("teacher", teacher_recipe, "teacher", 1, 0, 0);
}

/* A student recipe: header lines (data, model, teachers) + train + losses. */
char *student_recipe(const char *data_extra, const char *model, const char *teachers,
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

/* Runs text straight into DIR-full, and into DIR-N stopping after each N of stops (then resuming
 * to the end); every interrupted run must end byte for byte like the straight one. */
void check_resume(const char *name, const char *text, int epochs, const int *stops,
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

/* A small run of 3 epochs for the tests of finished, stopped and locked runs. */
char *small_recipe(int epochs, int threads)
{
    return tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
               "train: {epochs: %d, batch: 16, threads: %d, optimizer: {kind: adamw, lr: 0.01}}\n"
               "losses:\n  - kind: ce\n", epochs, threads);
}

json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fail_msg("%s: %s", path, je.text);
    return j;
}

/* Every checkpoint a failed run left behind must still load (ckpt_load refuses non-finite). */
void assert_checkpoints_load(const char *dir)
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

void expect_error(const char *name, const char *text, const char *want, const char *want2)
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
    /* the run made the folder: failed before its first epoch ended, it leaves none */
    assert_false(exists(dir));
    free(dir);
}

/* A text teacher on toy.xds reading `view`, trained into dir; it must learn the task. */
void train_text_teacher(const char *dir, const char *view)
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

/* A recipe that must not load; the message names the key. */
void expect_recipe_error(const char *name, const char *text, const char *want)
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


char *stable_yaml(const recipe *r)
{
    char *yaml = recipe_to_yaml(r);
    recipe r2;
    xd_err e;
    xd_err_clear(&e);
    if (recipe_parse("stable.yaml", yaml, strlen(yaml), NULL, 0, 0, &r2, &e) != XD_OK)
        fail_msg("the effective recipe does not read back: %s", e.msg);
    char *yaml2 = recipe_to_yaml(&r2);
    assert_string_equal(yaml, yaml2);
    free(yaml2);
    recipe_free(&r2);
    return yaml;
}
