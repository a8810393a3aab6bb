/* Recipe sections (see recipe_bind.h; every key is in docs/RECIPES.md): the keys each top-level
 * mapping may hold, and the binding of the top-level sections in the order they depend on each
 * other: name, seed(s) and task, data (splits, labels, views, validation and eval sets), the
 * trainable models (one student or a models: list; model, model_file or init), quantize,
 * teachers, train (the optimizer and schedule mappings are handed key by key to
 * nn_opt_config_set / nn_sched_config_set), each model's optimizer, then the stages
 * (recipe_losses.c), prune, and the checks that need the whole recipe. rb_bind_recipe walks them;
 * recipe_parse (recipe.c) calls it. */
#include "distill/recipe.h"
#include "distill/recipe_bind.h"

#include <assert.h>
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "distill/checkpoint.h"
#include "io/file.h"
#include "io/yaml.h"
#include "modalities/image/augment.h"
#include "modalities/text/config.h"
#include "nn/model.h"
#include "nn/prune.h"
#include "nn/quant.h"

// ----------------------------------------------------------------------------------------------
// key tables

static const char *const top_keys[] = {"name",       "seed",     "seeds", "task",   "data",  "model",
                                       "model_file", "models",   "teachers", "train", "losses",
                                       "stages",     "quantize", "prune", "init"};
static const char *const data_keys[] = {"path",           "train",            "test",
                                        "label",          "label_fraction",   "labels_per_class",
                                        "student_view",   "augment",          "text",
                                        "val_fraction",   "val",              "eval_sets"};
static const char *const eval_set_keys[] = {"name", "path", "split"};
static const char *const teacher_keys[] = {"name",  "checkpoint", "view",
                                           "cache", "languages",  "precision"};
static const char *const model_keys[] = {"name", "model", "model_file", "view", "optimizer",
                                         "init"};
static const char *const quantize_keys[] = {"ema"};
static const char *const prune_keys[] = {"sparsity", "scope", "steps", "start_epoch", "end_epoch"};
static const char *const train_keys[] = {"epochs",     "batch",   "steps_per_epoch", "optimizer",
                                         "schedule",   "eval_every", "threads", "precision",
                                         "shuffle"};

/* Defaults and bounds of the other keys. */
#define DEFAULT_BATCH 128
#define MAX_BATCH 65536
#define MAX_SEEDS 64

// ----------------------------------------------------------------------------------------------
// sections

static xd_status bind_name(binder *b, io_yaml_node *root)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    recipe *r = b->r;
    io_yaml_node *n;
    xd_status s = rb_get_string(b, root, "name", NULL, &r->name, &n);
    if (s != XD_OK) return s;
    /* the name is a folder under runs/: "." and ".." would be another folder */
    if (n) {
        if (!rb_word_ok(r->name, "-_.") || strcmp(r->name, ".") == 0 || strcmp(r->name, "..") == 0)
            return rb_bad(b, n, "'%s' is not a usable name (letters, digits, '-', '_', '.'; up to "
                          "%d; not . or ..)", xd_excerpt(r->name, q), RECIPE_MAX_NAME - 1);
        return XD_OK;
    }
    /* the file's base name without its extension, other characters made '-' */
    const char *base = strrchr(b->d->file, '/');
    base = base ? base + 1 : b->d->file;
    char name[RECIPE_MAX_NAME];
    snprintf(name, sizeof name, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    for (char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_.", *c)) *c = '-';
    r->name = xd_xstrdup(name[0] && strcmp(name, ".") && strcmp(name, "..") ? name : "recipe");
    return XD_OK;
}

/* A split name: letters, digits, '-', '_', '.'. */
static xd_status check_split_name(binder *b, io_yaml_node *n, const char *split)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    if (rb_word_ok(split, "-_.")) return XD_OK;
    return rb_bad(b, n, "'%s' is not a split name (letters, digits, '-', '_', '.')",
                  xd_excerpt(split, q));
}

/* data.eval_sets: a list of {name, path, split}. */
static xd_status bind_eval_sets(binder *b, io_yaml_node *data)
{
    recipe_data *dt = &b->r->data;
    io_yaml_node *list = rb_present(b, data, "eval_sets"), *n;
    if (!list) return XD_OK;
    xd_status s = rb_need_kind(b, list, IO_YAML_SEQUENCE, "a list of data sets (name, path, split)");
    if (s != XD_OK) return s;
    if (list->n > RECIPE_MAX_EVAL_SETS)
        return rb_bad(b, list, "%d eval sets, more than the %d allowed", list->n,
                      RECIPE_MAX_EVAL_SETS);
    dt->eval_sets = xd_xcalloc((size_t)(list->n ? list->n : 1), sizeof *dt->eval_sets);
    for (int i = 0; i < list->n; i++) {
        io_yaml_node *it = list->items[i];
        recipe_eval_set *es = &dt->eval_sets[i];
        dt->n_eval_sets = i + 1;
        io_yaml_mark_used(it);
        if ((s = rb_need_kind(b, it, IO_YAML_MAPPING, "a mapping (name, path, split)")) != XD_OK ||
            (s = io_yaml_check_keys(b->d, it, eval_set_keys, COUNT_OF(eval_set_keys), b->e)) ||
            (s = io_yaml_require(b->d, it, "name", &n, b->e)) != XD_OK ||
            (s = rb_get_string(b, it, "name", NULL, &es->name, &n)) != XD_OK)
            return s;
        /* no '.': the metrics keys are eval.NAME.acc */
        if (!rb_word_ok(es->name, "-_"))
            return rb_bad(b, n, "'%s' is not a usable name (letters, digits, '-', '_')", es->name);
        for (int j = 0; j < i; j++)
            if (strcmp(dt->eval_sets[j].name, es->name) == 0)
                return rb_bad(b, n, "eval set name '%s' is already used by data.eval_sets.%d",
                              es->name, j);
        if ((s = io_yaml_require(b->d, it, "path", &n, b->e)) != XD_OK ||
            (s = rb_get_string(b, it, "path", NULL, &es->path, &n)) != XD_OK ||
            (s = rb_check_file(b, n, es->path)) != XD_OK ||
            (s = rb_get_string(b, it, "split", "test", &es->split, &n)) != XD_OK ||
            (s = check_split_name(b, n, es->split)) != XD_OK)
            return s;
    }
    return XD_OK;
}

/* The validation split: data.val_fraction of the labelled training examples, or data.val, a
 * split of its own; and the further data sets scored with it. */
static xd_status bind_validation(binder *b, io_yaml_node *data)
{
    recipe_data *dt = &b->r->data;
    io_yaml_node *n;
    dt->val_fraction = 0.0f;
    xd_status s = rb_get_float(b, data, "val_fraction", R_UNIT, &dt->val_fraction);
    if (s != XD_OK) return s;
    if (dt->val_fraction >= 1.0f)
        return rb_bad(b, rb_present(b, data, "val_fraction"),
                      "must be below 1 (the share of the labelled training examples held out)");
    if ((s = rb_get_string(b, data, "val", NULL, &dt->val, &n)) != XD_OK) return s;
    if (n && (s = check_split_name(b, n, dt->val)) != XD_OK) return s;
    if (n && dt->val_fraction > 0.0f)
        return rb_bad(b, n, "give val (a split) or val_fraction (held out of train), not both");
    if (n && (strcmp(dt->val, dt->train) == 0 || strcmp(dt->val, dt->test) == 0))
        return rb_bad(b, n, "the validation split must be neither the training nor the test split "
                            "('%s'); val_fraction holds examples out of the training split",
                      dt->val);
    return bind_eval_sets(b, data);
}

static xd_status bind_data(binder *b, io_yaml_node *root)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    recipe_data *dt = &b->r->data;
    io_yaml_node *data, *n;
    xd_status s = io_yaml_require(b->d, root, "data", &data, b->e);
    if (s == XD_OK) s = rb_need_kind(b, data, IO_YAML_MAPPING, "a mapping of data settings");
    if (s == XD_OK) s = io_yaml_check_keys(b->d, data, data_keys, COUNT_OF(data_keys), b->e);
    if (s != XD_OK) return s;

    if ((s = io_yaml_require(b->d, data, "path", &n, b->e)) != XD_OK) return s;
    if ((s = rb_get_string(b, data, "path", NULL, &dt->path, &n)) != XD_OK) return s;
    if ((s = rb_check_file(b, n, dt->path)) != XD_OK) return s;

    const char *split_keys[2] = {"train", "test"};
    char **splits[2] = {&dt->train, &dt->test};
    for (int i = 0; i < 2; i++) {
        if ((s = rb_get_string(b, data, split_keys[i], split_keys[i], splits[i], &n)) != XD_OK ||
            (s = check_split_name(b, n, *splits[i])) != XD_OK)
            return s;
    }
    if (strcmp(dt->train, dt->test) == 0)
        return rb_bad(b, rb_present(b, data, "test") ? rb_present(b, data, "test")
                                                     : rb_present(b, data, "train"),
                      "the training and the test split are both '%s': the test score would be of "
                      "examples the model learned from", dt->test);
    if ((s = rb_get_string(b, data, "label", "label", &dt->label, &n)) != XD_OK) return s;
    if (strcmp(dt->label, "label") != 0 &&
        !(strncmp(dt->label, "label.", 6) == 0 && rb_word_ok(dt->label + 6, "-_")))
        return rb_bad(b, n, "'%s' is not a label section (expected label or label.NAME)",
                   xd_excerpt(dt->label, q));

    dt->label_fraction = 1.0f;
    dt->labels_per_class = 0;
    if ((s = rb_get_float(b, data, "label_fraction", R_UNIT, &dt->label_fraction)) != XD_OK)
        return s;
    if ((s = io_yaml_get_int(b->d, data, "labels_per_class", 0, INT_MAX, &dt->labels_per_class,
                             b->e)) != XD_OK)
        return s;
    if (dt->labels_per_class > 0 && dt->label_fraction != 1.0f)
        return rb_bad(b, rb_present(b, data, "labels_per_class"),
                   "give label_fraction or labels_per_class, not both");

    if ((s = rb_get_string(b, data, "student_view", "image", &dt->student_view, &n)) != XD_OK)
        return s;
    if (!rb_view_ok(dt->student_view))
        return rb_bad(b, n, "unknown view '%s' (expected image, text.LANG or text.*)",
                   dt->student_view);

    if ((s = rb_get_string(b, data, "augment", "", &dt->augment, &n)) != XD_OK) return s;
    img_opts io;
    img_opts_default(&io);
    if (n && (s = img_opts_parse(&io, dt->augment, b->e)) != XD_OK) return rb_wrap(b, n, s);

    if ((s = rb_get_string(b, data, "text", "", &dt->text, &n)) != XD_OK) return s;
    if (n) {
        txt_config tc = txt_config_default();
        if ((s = txt_config_parse_words(&tc, dt->text, b->e)) != XD_OK) return rb_wrap(b, n, s);
    }
    return bind_validation(b, data);
}

/* `init:` of map into *init (NULL when absent): a float checkpoint the model starts from; with
 * no model or model_file beside it, its stored description becomes *desc. */
static xd_status bind_init(binder *b, io_yaml_node *map, int has_model, char **init, char **desc)
{
    io_yaml_node *n = rb_present(b, map, "init");
    if (!n) return XD_OK;
    xd_status s = rb_get_string(b, map, "init", NULL, init, &n);
    if (s != XD_OK) return s;
    if (strncmp(*init, RECIPE_STEP_PREFIX, strlen(RECIPE_STEP_PREFIX)) == 0)
        return rb_bad(b, n, "init reads a checkpoint file, not a pipeline step's ('%s')", *init);
    if (has_model) return rb_check_file(b, n, *init);
    if (b->flags & RECIPE_NO_FILE_CHECKS)
        return rb_bad(b, n, "init without model names its model in the checkpoint, which is not "
                            "read here; give the model too");
    char *quant = NULL;
    if ((s = ckpt_read_meta(*init, CKPT_META_QUANT, &quant, b->e)) == XD_OK && quant) {
        free(quant);
        return rb_bad(b, n, "%s: an int8 checkpoint cannot start training (give the float or "
                            "fake-quant checkpoint it was made from)", *init);
    }
    if (s == XD_OK && (s = ckpt_read_meta(*init, CKPT_META_MODEL, desc, b->e)) == XD_OK && !*desc)
        return rb_bad(b, n, "%s: not an xdistill checkpoint (no stored model)", *init);
    return s == XD_OK ? XD_OK : rb_wrap(b, n, s);
}

/* A model description from `model` (inline), `model_file` or the checkpoint `init` names, of map
 * into *out (and init's path into *init), planned into net to check it and that view feeds what
 * it reads. */
static xd_status bind_model_text(binder *b, io_yaml_node *map, const char *view, char **out,
                                 char **init, nn_model *net)
{
    io_yaml_node *m = rb_present(b, map, "model"), *mf = rb_present(b, map, "model_file");
    xd_status s;
    if (m && mf) {
        io_yaml_mark_used(mf);
        return rb_bad(b, mf, "give model or model_file, not both");
    }
    if ((s = bind_init(b, map, m || mf, init, out)) != XD_OK) return s;
    if (!m && !mf && !*out)
        return io_yaml_fail(b->d, map, b->e, XD_EARG,
                            "missing required key 'model' (or 'model_file', or 'init')");
    io_yaml_node *at = m ? m : mf ? mf : rb_present(b, map, "init");
    if (m) {
        if ((s = rb_get_string(b, map, "model", NULL, out, NULL)) != XD_OK) return s;
    } else if (mf) {
        char *path = NULL;
        if ((s = rb_get_string(b, map, "model_file", NULL, &path, NULL)) != XD_OK) return s;
        void *text;
        size_t n;
        s = io_read_all(path, RECIPE_MAX_MODEL_BYTES, &text, &n, b->e);
        free(path);
        if (s != XD_OK) return rb_wrap(b, mf, s);
        if (strlen(text) != n) {
            free(text);
            return rb_bad(b, mf, "the model file holds a NUL byte");
        }
        *out = text;
    }
    /* names, heads and sizes checked without taking the model's memory */
    if ((s = nn_model_plan(net, *out, 1, b->e)) != XD_OK) return rb_wrap(b, at, s);
    b->built++;
    /* the checkpoint init names must fit the model, before any folder is made */
    if (*init && !(b->flags & RECIPE_NO_FILE_CHECKS) && (s = ckpt_check_init(*init, net, b->e)))
        return rb_wrap(b, rb_present(b, map, "init"), s);
    /* token ids and images are different inputs: the view must feed what the model reads */
    int text_view = strncmp(view, "text.", 5) == 0;
    if (text_view != (net->tokens > 0))
        return rb_bad(b, at, "the model reads %s but %s is '%s'",
                   net->tokens > 0 ? "token ids (input tokens=...)" : "images",
                   b->r->listed ? "its view" : "data.student_view", view);
    return XD_OK;
}

/* One item of a models: list (its optimizer is bound later, once train.optimizer is known). */
static xd_status bind_model_item(binder *b, io_yaml_node *list, int i)
{
    recipe *r = b->r;
    io_yaml_node *it = list->items[i], *n;
    recipe_model *rm = &r->models[i];
    io_yaml_mark_used(it);
    xd_status s = rb_need_kind(b, it, IO_YAML_MAPPING, "a mapping (name, model, view, ...)");
    if (s != XD_OK) return s;
    if ((s = io_yaml_check_keys(b->d, it, model_keys, COUNT_OF(model_keys), b->e))) return s;
    if ((s = io_yaml_require(b->d, it, "name", &n, b->e)) != XD_OK) return s;
    if ((s = rb_get_string(b, it, "name", NULL, &rm->name, &n)) != XD_OK) return s;
    /* no '.': a loss end is MODEL.NODE */
    if (!rb_word_ok(rm->name, "-_"))
        return rb_bad(b, n, "'%s' is not a usable name (letters, digits, '-', '_')", rm->name);
    for (int j = 0; j < i; j++) {
        if (strcmp(r->models[j].name, rm->name) != 0) continue;
        char where[320];
        io_yaml_where(b->d, io_yaml_find(b->d, list->items[j], "name"), where, sizeof where);
        return rb_bad(b, n, "model name '%s' is already used by models.%d (%s)", rm->name, j, where);
    }
    if ((s = rb_get_string(b, it, "view", r->data.student_view, &rm->view, &n)) != XD_OK) return s;
    if (!rb_view_ok(rm->view))
        return rb_bad(b, n, "unknown view '%s' (expected image, text.LANG or text.*)", rm->view);
    b->model_items[i] = it;
    return bind_model_text(b, it, rm->view, &rm->model, &rm->init, &b->nets[i]);
}

/* The trainable models: the one-student form's top-level model (named "student"), or a models:
 * list. */
static xd_status bind_models(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    io_yaml_node *list = rb_present(b, root, "models");
    xd_status s;
    if (!list) {
        r->models = xd_xcalloc(1, sizeof *r->models);
        r->n_models = 1;
        r->models[0].name = xd_xstrdup("student");
        r->models[0].view = xd_xstrdup(r->data.student_view);
        if ((s = bind_model_text(b, root, r->data.student_view, &r->model, &r->models[0].init,
                                 &b->nets[0])))
            return s;
        r->models[0].model = xd_xstrdup(r->model);
        return XD_OK;
    }
    io_yaml_mark_used(list);
    io_yaml_node *other = rb_present(b, root, "model") ? rb_present(b, root, "model")
                                                    : rb_present(b, root, "model_file");
    if (other) {
        io_yaml_mark_used(other);
        return rb_bad(b, other, "give model (one student) or models (several), not both");
    }
    if ((other = rb_present(b, root, "init"))) {
        io_yaml_mark_used(other);
        return rb_bad(b, other, "with a models: list each model gives its own init");
    }
    if ((s = rb_need_kind(b, list, IO_YAML_SEQUENCE, "a list of models")) != XD_OK) return s;
    if (list->n == 0) return rb_bad(b, list, "the list of models is empty");
    if (list->n > RECIPE_MAX_MODELS)
        return rb_bad(b, list, "%d models, more than the %d allowed", list->n, RECIPE_MAX_MODELS);
    r->listed = 1;
    r->models = xd_xcalloc((size_t)list->n, sizeof *r->models);
    for (int i = 0; i < list->n; i++) {
        r->n_models = i + 1;
        if ((s = bind_model_item(b, list, i)) != XD_OK) return s;
    }
    return XD_OK;
}

static xd_status bind_teachers(binder *b, io_yaml_node *root)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    recipe *r = b->r;
    io_yaml_node *list = rb_present(b, root, "teachers");
    if (!list) return XD_OK;
    io_yaml_mark_used(list);
    xd_status s = rb_need_kind(b, list, IO_YAML_SEQUENCE, "a list of teachers");
    if (s != XD_OK) return s;
    if (list->n > RECIPE_MAX_TEACHERS)
        return rb_bad(b, list, "%d teachers, more than the %d allowed", list->n, RECIPE_MAX_TEACHERS);
    r->teachers = xd_xcalloc((size_t)(list->n ? list->n : 1), sizeof *r->teachers);
    for (int i = 0; i < list->n; i++) {
        io_yaml_node *it = list->items[i], *n;
        recipe_teacher *t = &r->teachers[i];
        r->n_teachers = i + 1;
        io_yaml_mark_used(it);
        if ((s = rb_need_kind(b, it, IO_YAML_MAPPING, "a mapping (name, checkpoint, ...)")) != XD_OK)
            return s;
        if ((s = io_yaml_check_keys(b->d, it, teacher_keys, COUNT_OF(teacher_keys), b->e)))
            return s;
        if ((s = io_yaml_require(b->d, it, "name", &n, b->e)) != XD_OK) return s;
        if ((s = rb_get_string(b, it, "name", NULL, &t->name, &n)) != XD_OK) return s;
        if (!rb_word_ok(t->name, "-_."))
            return rb_bad(b, n, "'%s' is not a usable name (letters, digits, '-', '_', '.')",
                       xd_excerpt(t->name, q));
        for (int j = 0; j < i; j++) {
            if (strcmp(r->teachers[j].name, t->name) == 0) {
                io_yaml_node *first = io_yaml_find(b->d, list->items[j], "name");
                char where[320];
                io_yaml_where(b->d, first, where, sizeof where);
                return rb_bad(b, n, "teacher name '%s' is already used by teachers.%d (%s)",
                           t->name, j, where);
            }
        }
        for (int j = 0; j < r->n_models && r->listed; j++) {
            if (strcmp(r->models[j].name, t->name) != 0) continue;
            char where[320];
            io_yaml_where(b->d, io_yaml_find(b->d, b->model_items[j], "name"), where, sizeof where);
            return rb_bad(b, n, "teacher name '%s' is already the name of models.%d (%s)", t->name, j,
                       where);
        }
        if ((s = io_yaml_require(b->d, it, "checkpoint", &n, b->e)) != XD_OK) return s;
        if ((s = rb_get_string(b, it, "checkpoint", NULL, &t->checkpoint, &n)) != XD_OK) return s;
        if (strncmp(t->checkpoint, RECIPE_STEP_PREFIX, strlen(RECIPE_STEP_PREFIX)) == 0) {
            /* another step's checkpoint: it exists only once that step has run */
            if (!(b->flags & RECIPE_STEP_REFS))
                return rb_bad(b, n, "'%s' is the checkpoint of a pipeline step; run the pipeline "
                                 "(xdistill run PIPELINE.yaml)", t->checkpoint);
        } else if ((s = rb_check_file(b, n, t->checkpoint)) != XD_OK) {
            return s;
        }
        if ((s = rb_get_string(b, it, "view", r->data.student_view, &t->view, &n)) != XD_OK)
            return s;
        if (!rb_view_ok(t->view))
            return rb_bad(b, n, "unknown view '%s' (expected image, text.LANG or text.*)", t->view);
        t->cache = 1;
        if ((s = io_yaml_get_bool(b->d, it, "cache", &t->cache, b->e)) != XD_OK) return s;
        int prec = NN_PREC_FLOAT32;
        if ((s = rb_get_enum(b, it, "precision", nn_precision_names, NN_PREC_COUNT, &prec)))
            return s;
        t->precision = prec;
        int lm = RECIPE_LANGS_SAMPLE;
        if ((s = rb_get_enum(b, it, "languages", recipe_langs_names, RECIPE_LANGS_COUNT, &lm)))
            return s;
        t->languages = lm;
        if (t->languages == RECIPE_LANGS_AVERAGE && strcmp(t->view, "text.*") != 0)
            return rb_bad(b, rb_present(b, it, "languages"),
                       "'average' needs the view text.* (this teacher reads '%s')", t->view);
    }
    return XD_OK;
}

/* Optimizer or schedule: a kind word, or a mapping of keys for set() with `kind` applied first
 * (setting the kind resets the other keys). *given gets a bit per key index in `watch`. */
typedef xd_status (*cfg_set_fn)(void *cfg, const char *key, const char *value, xd_err *e);

xd_status rb_set_opt(void *cfg, const char *key, const char *value, xd_err *e)
{
    return nn_opt_config_set(cfg, key, value, e);
}
xd_status rb_set_sched(void *cfg, const char *key, const char *value, xd_err *e)
{
    return nn_sched_config_set(cfg, key, value, e);
}

xd_status rb_bind_cfg(binder *b, io_yaml_node *n, void *cfg, cfg_set_fn set,
                          const char *what)
{
    xd_status s;
    const char *v;
    if (n->kind == IO_YAML_SCALAR) {
        if ((s = io_yaml_as_str(b->d, n, &v, b->e)) != XD_OK) return s;
        if ((s = set(cfg, "kind", v, b->e)) != XD_OK) return rb_wrap(b, n, s);
        return XD_OK;
    }
    if (n->kind != IO_YAML_MAPPING) return rb_need_kind(b, n, IO_YAML_MAPPING, what);
    io_yaml_mark_used(n);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n->n; i++) {
            io_yaml_pair *p = &n->pairs[i];
            if ((strcmp(p->key, "kind") == 0) != (pass == 0)) continue;
            if ((s = io_yaml_as_str(b->d, p->value, &v, b->e)) != XD_OK) return s;
            if ((s = set(cfg, p->key, v, b->e)) != XD_OK) return rb_wrap(b, p->value, s);
        }
    }
    return XD_OK;
}

static xd_status bind_train(binder *b, io_yaml_node *root)
{
    recipe_train *t = &b->r->train;
    io_yaml_node *train = rb_present(b, root, "train");
    xd_status s;
    if (train) {
        io_yaml_mark_used(train);
        if ((s = rb_need_kind(b, train, IO_YAML_MAPPING, "a mapping of training settings")))
            return s;
        if ((s = io_yaml_check_keys(b->d, train, train_keys, COUNT_OF(train_keys), b->e)))
            return s;
    }
    t->batch = DEFAULT_BATCH;
    t->steps_per_epoch = 0;
    t->eval_every = 1;
    t->threads = 0;
    t->precision = NN_PREC_FLOAT32;
    t->shuffle = RECIPE_SHUFFLE_STORED;
    if (train) {
        if ((s = io_yaml_get_int(b->d, train, "batch", 1, MAX_BATCH, &t->batch, b->e))) return s;
        if ((s = io_yaml_get_int(b->d, train, "steps_per_epoch", 0, 1 << 24, &t->steps_per_epoch,
                                 b->e)))
            return s;
        if ((s = io_yaml_get_int(b->d, train, "eval_every", 0, MAX_EPOCHS, &t->eval_every,
                                 b->e)))
            return s;
        if ((s = io_yaml_get_int(b->d, train, "threads", 0, RECIPE_MAX_THREADS, &t->threads, b->e)))
            return s;
        int prec = NN_PREC_FLOAT32;
        if ((s = rb_get_enum(b, train, "precision", nn_precision_names, NN_PREC_COUNT, &prec)))
            return s;
        t->precision = prec;
        int shuffle = RECIPE_SHUFFLE_STORED;
        if ((s = rb_get_enum(b, train, "shuffle", recipe_shuffle_names, RECIPE_SHUFFLE_COUNT,
                             &shuffle)))
            return s;
        t->shuffle = shuffle;
    }

    t->opt = nn_opt_defaults(NN_OPT_ADAMW);
    io_yaml_node *o = rb_present(b, train, "optimizer");
    if (o) {
        if ((s = rb_bind_cfg(b, o, &t->opt, rb_set_opt, "a mapping of optimizer settings"))) return s;
        if ((s = nn_opt_config_check(&t->opt, b->e)) != XD_OK) return rb_wrap(b, o, s);
    }

    t->sched = nn_sched_defaults(NN_SCHED_CONSTANT);
    io_yaml_node *sc = rb_present(b, train, "schedule");
    int base_given = 0, total_given = 0;
    if (sc) {
        if ((s = rb_bind_cfg(b, sc, &t->sched, rb_set_sched, "a mapping of schedule settings")))
            return s;
        base_given = sc->kind == IO_YAML_MAPPING && io_yaml_find(b->d, sc, "base_lr");
        total_given = sc->kind == IO_YAML_MAPPING && io_yaml_find(b->d, sc, "total_steps");
    }
    /* the optimizer's lr is the one users set; the schedule starts from it */
    if (!base_given) t->sched.base_lr = t->opt.lr;
    int decays = t->sched.kind == NN_SCHED_COSINE || t->sched.kind == NN_SCHED_LINEAR;
    t->sched_auto_steps = decays && !total_given;
    nn_sched_config check = t->sched;
    if (t->sched_auto_steps) check.total_steps = check.warmup_steps + 1;
    if ((s = nn_sched_config_check(&check, b->e)) != XD_OK)
        return rb_wrap(b, sc ? sc : (train ? train : root), s);
    return XD_OK;
}


/* Model k's description becomes desc (taken), as a section that rewrites the models (at) says. */
static xd_status replace_model(binder *b, io_yaml_node *at, int k, char *desc)
{
    recipe *r = b->r;
    free(r->models[k].model);
    r->models[k].model = desc;
    if (!r->listed) {
        free(r->model);
        r->model = xd_xstrdup(desc);
    }
    nn_model_free(&b->nets[k]);
    xd_status s = nn_model_plan(&b->nets[k], desc, 1, b->e);
    return s == XD_OK ? s : rb_wrap(b, at, s);
}

/* quantize: every trainable model trains in its quantised form (nn_quant_desc), which the
 * recipe's models then are: their descriptions are rewritten here, once. */
static xd_status bind_quantize(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    io_yaml_node *q = rb_present(b, root, "quantize");
    if (!q) return XD_OK;
    io_yaml_mark_used(q);
    xd_status s;
    if ((s = rb_need_kind(b, q, IO_YAML_MAPPING, "a mapping of quantisation settings"))) return s;
    if ((s = io_yaml_check_keys(b->d, q, quantize_keys, COUNT_OF(quantize_keys), b->e))) return s;
    r->quantize_ema = 0.01f;
    if ((s = rb_get_float(b, q, "ema", R_GT0, &r->quantize_ema)) != XD_OK) return s;
    if (r->quantize_ema > 1.0f) return rb_bad(b, io_yaml_find(b->d, q, "ema"), "must be in (0, 1]");
    for (int k = 0; k < r->n_models; k++) {
        char *desc;
        if ((s = nn_quant_desc(r->models[k].model, r->quantize_ema, &desc, b->e)) != XD_OK)
            return rb_wrap(b, q, s);
        if ((s = replace_model(b, q, k, desc)) != XD_OK) return s;
    }
    return XD_OK;
}

/* prune: every trainable model's linear and conv2d layers carry masks (nn_prune_desc), which the
 * schedule fills as the epochs go; the descriptions are rewritten here, once. After the stages,
 * which fix the number of epochs. */
static xd_status bind_prune(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    io_yaml_node *q = rb_present(b, root, "prune");
    if (!q) return XD_OK;
    io_yaml_mark_used(q);
    xd_status s;
    if ((s = rb_need_kind(b, q, IO_YAML_MAPPING, "a mapping of pruning settings"))) return s;
    if ((s = io_yaml_check_keys(b->d, q, prune_keys, COUNT_OF(prune_keys), b->e))) return s;
    nn_prune_plan *p = &r->prune;
    io_yaml_node *sp;
    if ((s = io_yaml_require(b->d, q, "sparsity", &sp, b->e)) != XD_OK) return s;
    if ((s = rb_get_float(b, q, "sparsity", R_GT0, &p->sparsity)) != XD_OK) return s;
    if (p->sparsity >= 1.0f) return rb_bad(b, sp, "must be in (0, 1)");
    int scope = NN_PRUNE_LAYER;
    if ((s = rb_get_enum(b, q, "scope", nn_prune_scope_names, NN_PRUNE_SCOPE_COUNT, &scope)))
        return s;
    p->scope = scope;
    const int E = r->train.epochs;
    p->start_epoch = 1;
    if ((s = io_yaml_get_int(b->d, q, "start_epoch", 1, E, &p->start_epoch, b->e))) return s;
    p->end_epoch = E;
    if ((s = io_yaml_get_int(b->d, q, "end_epoch", p->start_epoch, E, &p->end_epoch, b->e)))
        return s;
    p->steps = p->end_epoch - p->start_epoch + 1;
    if ((s = io_yaml_get_int(b->d, q, "steps", 1, p->steps, &p->steps, b->e))) return s;
    for (int k = 0; k < r->n_models; k++) {
        char *desc;
        if ((s = nn_prune_desc(r->models[k].model, &desc, b->e)) != XD_OK) return rb_wrap(b, q, s);
        if ((s = replace_model(b, q, k, desc)) != XD_OK) return s;
    }
    return XD_OK;
}

/* Each listed model's optimizer: train.optimizer, with the item's keys over it. */
static xd_status bind_model_opts(binder *b)
{
    recipe *r = b->r;
    for (int i = 0; i < r->n_models; i++) {
        recipe_model *rm = &r->models[i];
        rm->opt = r->train.opt;
        io_yaml_node *o = b->model_items[i] ? rb_present(b, b->model_items[i], "optimizer") : NULL;
        if (!o) continue;
        xd_status s = rb_bind_cfg(b, o, &rm->opt, rb_set_opt, "a mapping of optimizer settings");
        if (s != XD_OK) return s;
        if ((s = nn_opt_config_check(&rm->opt, b->e)) != XD_OK) return rb_wrap(b, o, s);
        rm->own_opt = 1;
    }
    return XD_OK;
}

/* A model that no loss trains would only cost its forward pass. */
static xd_status check_models_trained(binder *b)
{
    recipe *r = b->r;
    for (int k = 0; k < r->n_models && r->listed; k++) {
        int used = 0;
        for (int i = 0; i < r->n_stages && !used; i++)
            for (int j = 0; j < r->stages[i].n_losses && !used; j++) {
                const recipe_loss *l = &r->stages[i].losses[j];
                used = l->model == k || (l->from_model == k && !l->detach);
            }
        if (!used)
            return rb_bad(b, io_yaml_find(b->d, b->model_items[k], "name"),
                       "no loss trains model '%s' (ce with model: %s, or a loss with to: %s)",
                       r->models[k].name, r->models[k].name, r->models[k].name);
    }
    return XD_OK;
}

xd_status rb_bind_recipe(binder *b)
{
    io_yaml_node *root = b->d->root;
    xd_status s;
    if (root->kind != IO_YAML_MAPPING)
        return io_yaml_fail(b->d, root, b->e, XD_EARG,
                            "a recipe is a mapping of keys (name, data, model, ...), not a %s",
                            io_yaml_kind_names[root->kind]);
    io_yaml_mark_used(root);
    if ((s = io_yaml_check_keys(b->d, root, top_keys, COUNT_OF(top_keys), b->e))) return s;
    if ((s = bind_name(b, root)) != XD_OK) return s;
    b->r->seed = 1;
    b->r->seeds = 1;
    if ((s = io_yaml_get_long(b->d, root, "seed", 0, LONG_MAX, &b->r->seed, b->e))) return s;
    if ((s = io_yaml_get_int(b->d, root, "seeds", 1, MAX_SEEDS, &b->r->seeds, b->e))) return s;
    if (b->r->seed > LONG_MAX - (b->r->seeds - 1))
        return rb_bad(b, io_yaml_find(b->d, root, "seed"), "seed + seeds - 1 overflows");
    int task = RECIPE_TASK_CLASSIFY;
    if ((s = rb_get_enum(b, root, "task", recipe_task_names, RECIPE_TASK_COUNT, &task))) return s;
    b->r->task = task;
    if ((s = bind_data(b, root)) != XD_OK) return s;
    if ((s = bind_models(b, root)) != XD_OK) return s;
    if ((s = bind_quantize(b, root)) != XD_OK) return s;
    if ((s = bind_teachers(b, root)) != XD_OK) return s;
    if ((s = bind_train(b, root)) != XD_OK) return s;
    if ((s = bind_model_opts(b)) != XD_OK) return s;
    if ((s = rb_bind_stages(b, root)) != XD_OK) return s;
    if ((s = bind_prune(b, root)) != XD_OK) return s;
    if ((s = rb_check_teachers_used(b, root)) != XD_OK) return s;
    if ((s = check_models_trained(b)) != XD_OK) return s;
    if ((s = rb_check_task(b, root)) != XD_OK) return s;
    if ((s = rb_check_losses(b, root)) != XD_OK) return s;
    return io_yaml_check_unused(b->d, b->e);
}
