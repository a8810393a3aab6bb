/* Recipe binding (see recipe.h; every key is in docs/RECIPES.md).
 *
 * Binding walks the YAML tree top-down. Each mapping's keys are checked against the keys it may
 * hold before any is read (io_yaml_check_keys), so a typo is reported as an unknown key with a
 * suggestion rather than as the required key it was meant to be. Enum words go through name
 * tables. The optimizer and schedule mappings are handed key by key to nn_opt_config_set /
 * nn_sched_config_set, so the recipe accepts exactly the keys nn/optim.h knows.
 *
 * This file holds the name tables, parsing (the --set overrides applied, then the tree bound),
 * freeing and the resume check; the key tables and the top-level sections are in
 * recipe_sections.c, losses and stages in recipe_losses.c, printing in recipe_print.c, the shared
 * helpers in recipe_bind.c (recipe_bind.h). */
#include "distill/recipe.h"
#include "distill/recipe_bind.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/hash.h"
#include "core/mem.h"
#include "align/densemap.h"
#include "io/file.h"
#include "io/yaml.h"
#include "nn/model.h"


const char *const recipe_shuffle_names[RECIPE_SHUFFLE_COUNT] = {"stored", "keyed"};

const char *const recipe_loss_kind_names[RECIPE_LOSS_COUNT] = {
    [RECIPE_LOSS_CE] = "ce",
    [RECIPE_LOSS_KD] = "kd",
    [RECIPE_LOSS_HINTON] = "hinton",
    [RECIPE_LOSS_FEATURE] = "feature",
    [RECIPE_LOSS_HINT] = "hint",
    [RECIPE_LOSS_ATTENTION] = "attention",
    [RECIPE_LOSS_DENSE] = "dense",
    [RECIPE_LOSS_CONTRASTIVE] = "contrastive",
    [RECIPE_LOSS_RATIONALE] = "rationale",
    [RECIPE_LOSS_DKD] = "dkd",
    [RECIPE_LOSS_RKD] = "rkd",
    [RECIPE_LOSS_SP] = "sp",
    [RECIPE_LOSS_PKT] = "pkt",
    [RECIPE_LOSS_CC] = "cc",
    [RECIPE_LOSS_NST] = "nst",
    [RECIPE_LOSS_FSP] = "fsp",
    [RECIPE_LOSS_VID] = "vid",
    [RECIPE_LOSS_CRD] = "crd",
    [RECIPE_LOSS_AB] = "ab",
    [RECIPE_LOSS_OFD] = "ofd",
};
static_assert(COUNT_OF(recipe_loss_kind_names) == RECIPE_LOSS_COUNT, "name every loss kind");

const char *const recipe_metric_names[RECIPE_METRIC_COUNT] = {
    [RECIPE_METRIC_MSE] = "mse",
    [RECIPE_METRIC_COSINE] = "cosine",
};
static_assert(COUNT_OF(recipe_metric_names) == RECIPE_METRIC_COUNT, "name every metric");

const char *const recipe_class_weight_names[RECIPE_CLASS_WEIGHT_COUNT] = {
    [RECIPE_CLASS_WEIGHT_NONE] = "none",
    [RECIPE_CLASS_WEIGHT_BALANCED] = "balanced",
};
static_assert(COUNT_OF(recipe_class_weight_names) == RECIPE_CLASS_WEIGHT_COUNT,
              "name every class weighting");

const char *const recipe_projector_names[RECIPE_PROJ_COUNT] = {
    [RECIPE_PROJ_AUTO] = "auto",
    [RECIPE_PROJ_NONE] = "none",
    [RECIPE_PROJ_LINEAR] = "linear",
    [RECIPE_PROJ_CONV1X1] = "conv1x1",
    [RECIPE_PROJ_MLP] = "mlp",
};
static_assert(COUNT_OF(recipe_projector_names) == RECIPE_PROJ_COUNT, "name every projector");

const char *const recipe_proj_init_names[RECIPE_INIT_COUNT] = {
    [RECIPE_INIT_RANDOM] = "random",
    [RECIPE_INIT_PROCRUSTES] = "procrustes",
    [RECIPE_INIT_CCA] = "cca",
};
static_assert(COUNT_OF(recipe_proj_init_names) == RECIPE_INIT_COUNT, "name every projector init");

const char *const recipe_langs_names[RECIPE_LANGS_COUNT] = {
    [RECIPE_LANGS_SAMPLE] = "sample",
    [RECIPE_LANGS_AVERAGE] = "average",
};
static_assert(COUNT_OF(recipe_langs_names) == RECIPE_LANGS_COUNT, "name every language mode");

const char *const recipe_combine_names[RECIPE_COMBINE_COUNT] = {
    [RECIPE_COMBINE_MEAN] = "mean",
    [RECIPE_COMBINE_WEIGHTS] = "weights",
    [RECIPE_COMBINE_ENTROPY] = "entropy",
};
static_assert(COUNT_OF(recipe_combine_names) == RECIPE_COMBINE_COUNT, "name every combination");

const char *const recipe_task_names[RECIPE_TASK_COUNT] = {
    [RECIPE_TASK_CLASSIFY] = "classify",
    [RECIPE_TASK_SEGMENT] = "segment",
};
static_assert(COUNT_OF(recipe_task_names) == RECIPE_TASK_COUNT, "name every task");

const char *const recipe_windows_names[RECIPE_WINDOWS_COUNT] = {
    [RECIPE_WINDOWS_GRID] = "grid",
    [RECIPE_WINDOWS_BLOBS] = "blobs",
    [RECIPE_WINDOWS_BOXES] = "boxes",
};
static_assert(COUNT_OF(recipe_windows_names) == RECIPE_WINDOWS_COUNT, "name every window kind");

const char *const recipe_view_kind_names[RECIPE_VIEW_COUNT] = {
    [RECIPE_VIEW_IMAGE] = "image",
    [RECIPE_VIEW_TEXT] = "text",
};
static_assert(COUNT_OF(recipe_view_kind_names) == RECIPE_VIEW_COUNT, "name every view kind");

// ----------------------------------------------------------------------------------------------
// parsing

/* The keys that take a kind word as short for a mapping: `schedule: cosine` is `schedule: {kind:
 * cosine}`. */
static const char *const kind_word_keys[] = {"train.optimizer", "train.schedule"};

/* An override of one key of such a mapping (--set train.schedule.warmup_steps=100) on a recipe
 * that gives the short form turns the word into the mapping first, its kind kept (and still
 * reported at the file's line), so both forms take the same overrides. */
static xd_status expand_kind_word(io_yaml_doc *d, const char *arg, xd_err *e)
{
    for (int k = 0; k < COUNT_OF(kind_word_keys); k++) {
        const char *key = kind_word_keys[k];
        size_t len = strlen(key);
        if (strncmp(arg, key, len) != 0 || arg[len] != '.') continue;
        io_yaml_node *n = io_yaml_find(d, NULL, key);
        if (!n || n->kind != IO_YAML_SCALAR || io_yaml_is_null(n)) return XD_OK;
        char *word = n->str, path[64];
        const int plain = n->plain, line = n->line, col = n->col;
        n->str = NULL;
        snprintf(path, sizeof path, "%s.kind", key);
        xd_status s = io_yaml_set(d, key, "", e); /* null: a path may go through it */
        if (s == XD_OK) s = io_yaml_set(d, path, "", e);
        io_yaml_node *kind = s == XD_OK ? io_yaml_find(d, NULL, path) : NULL;
        if (!kind) {
            free(word);
            return s;
        }
        free(kind->str);
        kind->str = word;
        kind->plain = plain;
        kind->line = line;
        kind->col = col;
        free(kind->origin);
        kind->origin = NULL;
        return XD_OK;
    }
    return XD_OK;
}

xd_status recipe_parse(const char *name, const char *text, size_t n, const char *const *sets,
                       int n_sets, unsigned flags, recipe *r, xd_err *e)
{
    memset(r, 0, sizeof *r);
    io_yaml_doc d;
    xd_status s = io_yaml_parse(&d, name, text, n, e);
    if (s != XD_OK) return s;
    for (int i = 0; i < n_sets && s == XD_OK; i++) {
        if ((s = expand_kind_word(&d, sets[i], e)) == XD_OK) s = io_yaml_set_arg(&d, sets[i], e);
    }
    r->file = xd_xstrdup(name);
    binder b = {.d = &d, .flags = flags, .r = r, .e = e};
    if (s == XD_OK) s = rb_bind_recipe(&b);
    for (int i = 0; i < b.built; i++) nn_model_free(&b.nets[i]);
    io_yaml_free(&d);
    if (s != XD_OK) recipe_free(r);
    return s;
}

xd_status recipe_load(const char *path, const char *const *sets, int n_sets, recipe *r,
                      xd_err *e)
{
    memset(r, 0, sizeof *r);
    void *text;
    size_t n;
    xd_status s = io_read_all(path, IO_YAML_MAX_BYTES, &text, &n, e);
    if (s != XD_OK) return s;
    s = recipe_parse(path, text, n, sets, n_sets, 0, r, e);
    free(text);
    return s;
}

static void loss_free(recipe_loss *l)
{
    free(l->head);
    free(l->teacher_head);
    free(l->student_tap);
    free(l->teacher_tap);
    for (int k = 0; k < 2; k++) {
        free(l->student_taps[k]);
        free(l->teacher_taps[k]);
    }
    free(l->label_map);
    free(l->label_table);
    for (int i = 0; i < l->n_members; i++) {
        free(l->members[i].label_map);
        free(l->members[i].label_table);
    }
    free(l->members);
}

void recipe_free(recipe *r)
{
    if (!r) return;
    free(r->file);
    free(r->name);
    free(r->data.path);
    free(r->data.train);
    free(r->data.test);
    free(r->data.label);
    free(r->data.student_view);
    free(r->data.augment);
    free(r->data.text);
    free(r->data.val);
    for (int i = 0; i < r->data.n_eval_sets; i++) {
        free(r->data.eval_sets[i].name);
        free(r->data.eval_sets[i].path);
        free(r->data.eval_sets[i].split);
    }
    free(r->data.eval_sets);
    free(r->model);
    for (int i = 0; i < r->n_models; i++) {
        free(r->models[i].name);
        free(r->models[i].model);
        free(r->models[i].view);
        free(r->models[i].init);
    }
    free(r->models);
    for (int i = 0; i < r->n_teachers; i++) {
        free(r->teachers[i].name);
        free(r->teachers[i].checkpoint);
        free(r->teachers[i].view);
    }
    free(r->teachers);
    for (int i = 0; i < r->n_stages; i++) {
        for (int j = 0; j < r->stages[i].n_losses; j++) loss_free(&r->stages[i].losses[j]);
        free(r->stages[i].losses);
        free(r->stages[i].train_until);
    }
    free(r->stages);
    memset(r, 0, sizeof *r);
}

// ----------------------------------------------------------------------------------------------
// printing


// ----------------------------------------------------------------------------------------------
// resuming

/* The thread count does not change a bit of the numbers (nn/gemm.h), and evaluating at other
 * epochs reads the model without changing it; anything else would make the continued run another
 * run than the one its first epochs belong to. */
const char *const recipe_resume_keys[] = {"train.threads", "train.eval_every"};
const int recipe_n_resume_keys = COUNT_OF(recipe_resume_keys);
/* where each of them lives (int fields) */
static const size_t resume_key_offsets[] = {offsetof(recipe, train.threads),
                                            offsetof(recipe, train.eval_every)};
static_assert(COUNT_OF(recipe_resume_keys) == COUNT_OF(resume_key_offsets), "place every resume key");

int recipe_is_resume_key(const char *path)
{
    return rb_name_index(recipe_resume_keys, recipe_n_resume_keys, path) >= 0;
}

/* The line of text that starts at p, cut at its end, for a message. */
static int line_len(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? (int)(nl - p) : (int)strlen(p);
}

/* to's resume keys set to from's */
static void copy_resume_keys(recipe *to, const recipe *from)
{
    for (int i = 0; i < recipe_n_resume_keys; i++)
        memcpy((char *)to + resume_key_offsets[i], (const char *)from + resume_key_offsets[i],
               sizeof(int));
}

uint64_t recipe_resume_digest(const recipe *r)
{
    static const recipe zero;
    recipe same = *r;
    copy_resume_keys(&same, &zero);
    char *yaml = recipe_to_yaml(&same);
    const uint64_t h = xd_fnv_bytes(XD_FNV_OFFSET, yaml, strlen(yaml));
    free(yaml);
    return h;
}

xd_status recipe_check_resume(const recipe *given, const recipe *stored, xd_err *e)
{
    /* compared as effective recipes, the resume keys taken from the given one */
    recipe same = *stored;
    copy_resume_keys(&same, given);
    char *a = recipe_to_yaml(given), *b = recipe_to_yaml(&same);
    const char *p = a, *q = b;
    while (*p && *p == *q) {
        p++;
        q++;
    }
    xd_status s = XD_OK;
    if (*p || *q) {
        while (p > a && p[-1] != '\n') p--;
        while (q > b && q[-1] != '\n') q--;
        while (*p == ' ') p++;
        while (*q == ' ') q++;
        s = xd_fail(e, XD_EARG, "%s (recipe '%s') is not the recipe of the run it resumes (%s, "
                                "recipe '%s'): it has '%.*s' where the run has '%.*s'",
                    given->file ? given->file : "the recipe", given->name,
                    stored->file ? stored->file : "its recipe", stored->name,
                    line_len(p) > 80 ? 80 : line_len(p), p, line_len(q) > 80 ? 80 : line_len(q), q);
    }
    free(a);
    free(b);
    return s;
}

