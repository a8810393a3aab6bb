/* Recipe binding and printing (see recipe.h; every key is in docs/RECIPES.md).
 *
 * Binding walks the YAML tree top-down. Each mapping's keys are checked against the keys it may
 * hold before any is read (io_yaml_check_keys), so a typo is reported as an unknown key with a
 * suggestion rather than as the required key it was meant to be. Enum words go through name
 * tables. The optimizer and schedule mappings are handed key by key to nn_opt_config_set /
 * nn_sched_config_set, so the recipe accepts exactly the keys nn/optim.h knows. */
#include "distill/recipe.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "align/densemap.h"
#include "io/file.h"
#include "io/yaml.h"
#include "modalities/image/augment.h"
#include "modalities/text/config.h"
#include "nn/model.h"

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *const recipe_loss_kind_names[RECIPE_LOSS_COUNT] = {
    [RECIPE_LOSS_CE] = "ce",
    [RECIPE_LOSS_KD] = "kd",
    [RECIPE_LOSS_HINTON] = "hinton",
    [RECIPE_LOSS_FEATURE] = "feature",
    [RECIPE_LOSS_HINT] = "hint",
    [RECIPE_LOSS_ATTENTION] = "attention",
    [RECIPE_LOSS_DENSE] = "dense",
    [RECIPE_LOSS_CONTRASTIVE] = "contrastive",
};
static_assert(COUNT_OF(recipe_loss_kind_names) == RECIPE_LOSS_COUNT, "name every loss kind");

const char *const recipe_metric_names[RECIPE_METRIC_COUNT] = {
    [RECIPE_METRIC_MSE] = "mse",
    [RECIPE_METRIC_COSINE] = "cosine",
};
static_assert(COUNT_OF(recipe_metric_names) == RECIPE_METRIC_COUNT, "name every metric");

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
// key tables

static const char *const top_keys[] = {"name",       "seed",     "seeds", "task",   "data",  "model",
                                       "model_file", "models",   "teachers", "train", "losses",
                                       "stages"};
static const char *const data_keys[] = {"path",           "train",            "test",
                                        "label",          "label_fraction",   "labels_per_class",
                                        "student_view",   "augment",          "text"};
static const char *const teacher_keys[] = {"name", "checkpoint", "view", "cache", "languages"};
static const char *const model_keys[] = {"name", "model", "model_file", "view", "optimizer"};
static const char *const train_keys[] = {"epochs",     "batch",   "steps_per_epoch", "optimizer",
                                         "schedule",   "eval_every", "threads"};
static const char *const stage_keys[] = {"epochs", "losses", "train_until"};

#define BIT(k) (1u << (k))
#define ALL_LOSSES (BIT(RECIPE_LOSS_COUNT) - 1u)
#define TEACHER_LOSSES (ALL_LOSSES & ~BIT(RECIPE_LOSS_CE))
#define LOGIT_LOSSES (BIT(RECIPE_LOSS_KD) | BIT(RECIPE_LOSS_HINTON))
#define TAP_LOSSES                                                                                 \
    (BIT(RECIPE_LOSS_FEATURE) | BIT(RECIPE_LOSS_HINT) | BIT(RECIPE_LOSS_ATTENTION) |               \
     BIT(RECIPE_LOSS_CONTRASTIVE))
#define PROJ_LOSSES (BIT(RECIPE_LOSS_FEATURE) | BIT(RECIPE_LOSS_HINT) | BIT(RECIPE_LOSS_CONTRASTIVE))

/* The keys of a loss item and the kinds each applies to. Attention transfer compares
 * channel-summed maps, which have no width to project, so it takes no projector. */
typedef enum {
    LK_KIND,
    LK_WEIGHT,
    LK_TEACHER,
    LK_TEMPERATURE,
    LK_ALPHA,
    LK_HEAD,
    LK_TEACHER_HEAD,
    LK_STUDENT_TAP,
    LK_TEACHER_TAP,
    LK_METRIC,
    LK_PROJECTOR,
    LK_WINDOWS,
    LK_STRIDE,
    LK_WEIGHTING,
    LK_MIN_CONF,
    LK_THRESHOLD,
    LK_PROJECTOR_INIT,
    LK_PROJECTOR_FROZEN,
    LK_LEARN_TEMPERATURE,
    LK_LABEL_MAP,
    LK_FROM,
    LK_TO,
    LK_DETACH,
    LK_MODEL,
    LK_COUNT
} loss_key;

static const char *const loss_key_names[LK_COUNT] = {
    [LK_KIND] = "kind",
    [LK_WEIGHT] = "weight",
    [LK_TEACHER] = "teacher",
    [LK_TEMPERATURE] = "temperature",
    [LK_ALPHA] = "alpha",
    [LK_HEAD] = "head",
    [LK_TEACHER_HEAD] = "teacher_head",
    [LK_STUDENT_TAP] = "student_tap",
    [LK_TEACHER_TAP] = "teacher_tap",
    [LK_METRIC] = "metric",
    [LK_PROJECTOR] = "projector",
    [LK_WINDOWS] = "windows",
    [LK_STRIDE] = "stride",
    [LK_WEIGHTING] = "weighting",
    [LK_MIN_CONF] = "min_conf",
    [LK_THRESHOLD] = "threshold",
    [LK_PROJECTOR_INIT] = "projector_init",
    [LK_PROJECTOR_FROZEN] = "projector_frozen",
    [LK_LEARN_TEMPERATURE] = "learn_temperature",
    [LK_LABEL_MAP] = "label_map",
    [LK_FROM] = "from",
    [LK_TO] = "to",
    [LK_DETACH] = "detach",
    [LK_MODEL] = "model",
};
static_assert(COUNT_OF(loss_key_names) == LK_COUNT, "name every loss key");

static const unsigned loss_key_kinds[LK_COUNT] = {
    [LK_KIND] = ALL_LOSSES,
    [LK_WEIGHT] = ALL_LOSSES,
    [LK_TEACHER] = TEACHER_LOSSES,
    [LK_TEMPERATURE] = LOGIT_LOSSES | BIT(RECIPE_LOSS_DENSE) | BIT(RECIPE_LOSS_CONTRASTIVE),
    [LK_ALPHA] = BIT(RECIPE_LOSS_HINTON),
    [LK_HEAD] = BIT(RECIPE_LOSS_CE) | LOGIT_LOSSES | BIT(RECIPE_LOSS_DENSE),
    [LK_TEACHER_HEAD] = LOGIT_LOSSES | BIT(RECIPE_LOSS_DENSE),
    [LK_STUDENT_TAP] = TAP_LOSSES,
    [LK_TEACHER_TAP] = TAP_LOSSES,
    [LK_METRIC] = BIT(RECIPE_LOSS_FEATURE),
    [LK_PROJECTOR] = PROJ_LOSSES,
    [LK_WINDOWS] = BIT(RECIPE_LOSS_DENSE),
    [LK_STRIDE] = BIT(RECIPE_LOSS_DENSE),
    [LK_WEIGHTING] = BIT(RECIPE_LOSS_DENSE),
    [LK_MIN_CONF] = BIT(RECIPE_LOSS_DENSE),
    [LK_THRESHOLD] = BIT(RECIPE_LOSS_DENSE),
    [LK_PROJECTOR_INIT] = PROJ_LOSSES,
    [LK_PROJECTOR_FROZEN] = PROJ_LOSSES,
    [LK_LEARN_TEMPERATURE] = BIT(RECIPE_LOSS_CONTRASTIVE),
    [LK_LABEL_MAP] = LOGIT_LOSSES,
    [LK_FROM] = TEACHER_LOSSES,
    [LK_TO] = TEACHER_LOSSES,
    [LK_DETACH] = TEACHER_LOSSES,
    [LK_MODEL] = BIT(RECIPE_LOSS_CE),
};
static_assert(COUNT_OF(loss_key_kinds) == LK_COUNT, "give every loss key its kinds");

static int applies(loss_key k, recipe_loss_kind kind)
{
    return (loss_key_kinds[k] & BIT(kind)) != 0;
}

int recipe_loss_needs_teacher(recipe_loss_kind k)
{
    return k >= 0 && k < RECIPE_LOSS_COUNT && applies(LK_TEACHER, k);
}

int recipe_loss_where(const recipe *r, int s, int i, int with_file, char *buf, size_t size)
{
    const recipe_loss *l = &r->stages[s].losses[i];
    char at[128] = "", key[48];
    if (with_file && l->line > 0)
        snprintf(at, sizeof at, "%.100s:%d: ", r->file ? r->file : "recipe", l->line);
    else if (with_file)
        snprintf(at, sizeof at, "%.100s: ", r->file ? r->file : "recipe");
    if (r->staged)
        snprintf(key, sizeof key, "stages.%d.losses.%d", s, i);
    else
        snprintf(key, sizeof key, "losses.%d", i);
    return snprintf(buf, size, "%s%s (%s)", at, key, recipe_loss_kind_names[l->kind]);
}

/* Defaults of a loss item. */
#define DEFAULT_TEMPERATURE 4.0f
/* CLIP's starting temperature */
#define CONTRASTIVE_TEMPERATURE 0.07f
#define DEFAULT_ALPHA 0.9f
/* A dense loss spreads the teacher's probabilities as they are (T = 1), from windows on the
 * image's foreground blobs (grid windows every 4 pixels when asked for), weighted by the teacher's
 * confidence; foreground is the scenes' own rule (grey > 25). */
#define DENSE_TEMPERATURE 1.0f
#define DENSE_STRIDE 4
#define DENSE_MAX_STRIDE 4096
#define DENSE_THRESHOLD 25.0f
/* Defaults and bounds of the other keys. */
#define DEFAULT_BATCH 128
#define MAX_BATCH 65536
#define MAX_EPOCHS 1000000
#define MAX_SEEDS 64
#define MAX_THREADS 4096

static int name_index(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0) return i;
    return -1;
}

/* "a, b or c" into buf. */
static const char *name_list(const char *const *names, int n, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && at < size; i++) {
        const char *sep = i == 0 ? "" : i == n - 1 ? " or " : ", ";
        int w = snprintf(buf + at, size - at, "%s%s", sep, names[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
    return buf;
}

/* Letters, digits and the characters in extra; 1 to RECIPE_MAX_NAME - 1 bytes. */
static int word_ok(const char *s, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n >= RECIPE_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i])) return 0;
    return 1;
}

/* "image", "text.LANG" or "text.*". */
static int view_ok(const char *s)
{
    const char *dot = strchr(s, '.');
    size_t len = dot ? (size_t)(dot - s) : strlen(s);
    char kind[16];
    if (len >= sizeof kind) return 0;
    memcpy(kind, s, len);
    kind[len] = '\0';
    switch ((recipe_view_kind)name_index(recipe_view_kind_names, RECIPE_VIEW_COUNT, kind)) {
    case RECIPE_VIEW_IMAGE: return dot == NULL;
    case RECIPE_VIEW_TEXT: return dot && (strcmp(dot + 1, "*") == 0 || word_ok(dot + 1, "-_"));
    default: return 0;
    }
}

// ----------------------------------------------------------------------------------------------
// binding context and messages

typedef struct {
    io_yaml_doc *d;
    unsigned flags;
    recipe *r;
    nn_model nets[RECIPE_MAX_MODELS]; /* each model planned from its description once, to
                                       * check node names */
    int built;                        /* nets planned */
    io_yaml_node *model_items[RECIPE_MAX_MODELS]; /* models: items, NULL in the one-student form */
    xd_err *e;
} binder;

/* "FILE:LINE: PATH: reason" */
static xd_status bad(binder *b, const io_yaml_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static xd_status bad(binder *b, const io_yaml_node *n, const char *fmt, ...)
{
    char path[256], reason[XD_ERR_LEN];
    io_yaml_path(n, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    xd_vformat(reason, fmt, ap);
    va_end(ap);
    if (!path[0]) return io_yaml_fail(b->d, n, b->e, XD_EARG, "%s", reason);
    return io_yaml_fail(b->d, n, b->e, XD_EARG, "%s: %s", path, reason);
}

/* Puts "FILE:LINE: PATH: " before a message another module wrote into b->e. */
static xd_status wrap(binder *b, const io_yaml_node *n, xd_status s)
{
    char where[320], path[256];
    io_yaml_where(b->d, n, where, sizeof where);
    io_yaml_path(n, path, sizeof path);
    if (path[0])
        xd_err_prefix(b->e, "%s: %s", where, path);
    else
        xd_err_prefix(b->e, "%s", where);
    return s;
}

/* The value at key of map when it is there and not null (marked used), else NULL. */
static io_yaml_node *present(binder *b, io_yaml_node *map, const char *key)
{
    io_yaml_node *n = map ? io_yaml_find(b->d, map, key) : NULL;
    if (n && io_yaml_is_null(n)) {
        io_yaml_mark_used(n);
        return NULL;
    }
    return n;
}

static xd_status need_kind(binder *b, io_yaml_node *n, io_yaml_kind kind, const char *what)
{
    if (n->kind == kind) return XD_OK;
    io_yaml_mark_used(n);
    return bad(b, n, "expected %s, got a %s", what, io_yaml_kind_names[n->kind]);
}

typedef enum { R_GT0, R_GE0, R_UNIT } frange; /* > 0, >= 0, [0, 1] */

static xd_status get_float(binder *b, io_yaml_node *map, const char *key, frange range,
                           float *inout)
{
    io_yaml_node *n = present(b, map, key);
    if (!n) return XD_OK;
    float v;
    xd_status s = io_yaml_as_float(b->d, n, &v, b->e);
    if (s != XD_OK) return s;
    switch (range) {
    case R_GT0:
        if (!(v > 0)) return bad(b, n, "must be > 0 (got %s)", n->str);
        break;
    case R_GE0:
        if (!(v >= 0)) return bad(b, n, "must be >= 0 (got %s)", n->str);
        break;
    case R_UNIT:
        if (!(v >= 0 && v <= 1)) return bad(b, n, "must be in [0, 1] (got %s)", n->str);
        break;
    }
    *inout = v;
    return XD_OK;
}

/* A copy of the string at key (or of def when absent); *node gets the value's node or NULL. */
static xd_status get_string(binder *b, io_yaml_node *map, const char *key, const char *def,
                            char **out, io_yaml_node **node)
{
    io_yaml_node *n = present(b, map, key);
    if (node) *node = n;
    const char *s = def;
    if (n) {
        xd_status st = io_yaml_as_str(b->d, n, &s, b->e);
        if (st != XD_OK) return st;
    }
    free(*out);
    *out = s ? xd_xstrdup(s) : NULL;
    return XD_OK;
}

static xd_status get_enum(binder *b, io_yaml_node *map, const char *key, const char *const *names,
                          int n_names, int *inout)
{
    io_yaml_node *n = present(b, map, key);
    if (!n) return XD_OK;
    const char *s;
    xd_status st = io_yaml_as_str(b->d, n, &s, b->e);
    if (st != XD_OK) return st;
    int i = name_index(names, n_names, s);
    if (i < 0) {
        char list[256];
        return bad(b, n, "unknown value '%s' (expected %s)", s,
                   name_list(names, n_names, list, sizeof list));
    }
    *inout = i;
    return XD_OK;
}

static xd_status check_file(binder *b, const io_yaml_node *n, const char *path)
{
    if (!path[0]) return bad(b, n, "the path is empty");
    if (b->flags & RECIPE_NO_FILE_CHECKS) return XD_OK;
    struct stat st;
    char q[XD_EXCERPT_BUF];
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return bad(b, n, "%s: no such file", xd_excerpt(path, q));
        return bad(b, n, "%s: %s", xd_excerpt(path, q), strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return bad(b, n, "%s: is a folder, not a file", xd_excerpt(path, q));
    return XD_OK;
}

/* name must be a node of trainable model k ("the student model" in the one-student form). */
static xd_status check_model_node(binder *b, const io_yaml_node *n, int k, const char *name)
{
    if (nn_model_find(&b->nets[k], name) >= 0) return XD_OK;
    if (!b->r->listed) return bad(b, n, "the student model has no node '%s'", name);
    return bad(b, n, "model '%s' has no node '%s'", b->r->models[k].name, name);
}

// ----------------------------------------------------------------------------------------------
// sections

static xd_status bind_name(binder *b, io_yaml_node *root)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    recipe *r = b->r;
    io_yaml_node *n;
    xd_status s = get_string(b, root, "name", NULL, &r->name, &n);
    if (s != XD_OK) return s;
    if (n) {
        if (!word_ok(r->name, "-_."))
            return bad(b, n, "'%s' is not a usable name (letters, digits, '-', '_', '.'; up to %d)",
                       xd_excerpt(r->name, q), RECIPE_MAX_NAME - 1);
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
    r->name = xd_xstrdup(name[0] ? name : "recipe");
    return XD_OK;
}

static xd_status bind_data(binder *b, io_yaml_node *root)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    recipe_data *dt = &b->r->data;
    io_yaml_node *data, *n;
    xd_status s = io_yaml_require(b->d, root, "data", &data, b->e);
    if (s == XD_OK) s = need_kind(b, data, IO_YAML_MAPPING, "a mapping of data settings");
    if (s == XD_OK) s = io_yaml_check_keys(b->d, data, data_keys, COUNT_OF(data_keys), b->e);
    if (s != XD_OK) return s;

    if ((s = io_yaml_require(b->d, data, "path", &n, b->e)) != XD_OK) return s;
    if ((s = get_string(b, data, "path", NULL, &dt->path, &n)) != XD_OK) return s;
    if ((s = check_file(b, n, dt->path)) != XD_OK) return s;

    const char *split_keys[2] = {"train", "test"};
    char **splits[2] = {&dt->train, &dt->test};
    for (int i = 0; i < 2; i++) {
        if ((s = get_string(b, data, split_keys[i], split_keys[i], splits[i], &n)) != XD_OK)
            return s;
        if (!word_ok(*splits[i], "-_."))
            return bad(b, n, "'%s' is not a split name (letters, digits, '-', '_', '.')",
                       xd_excerpt(*splits[i], q));
    }
    if ((s = get_string(b, data, "label", "label", &dt->label, &n)) != XD_OK) return s;
    if (strcmp(dt->label, "label") != 0 &&
        !(strncmp(dt->label, "label.", 6) == 0 && word_ok(dt->label + 6, "-_")))
        return bad(b, n, "'%s' is not a label section (expected label or label.NAME)",
                   xd_excerpt(dt->label, q));

    dt->label_fraction = 1.0f;
    dt->labels_per_class = 0;
    if ((s = get_float(b, data, "label_fraction", R_UNIT, &dt->label_fraction)) != XD_OK)
        return s;
    if ((s = io_yaml_get_int(b->d, data, "labels_per_class", 0, INT_MAX, &dt->labels_per_class,
                             b->e)) != XD_OK)
        return s;
    if (dt->labels_per_class > 0 && dt->label_fraction != 1.0f)
        return bad(b, present(b, data, "labels_per_class"),
                   "give label_fraction or labels_per_class, not both");

    if ((s = get_string(b, data, "student_view", "image", &dt->student_view, &n)) != XD_OK)
        return s;
    if (!view_ok(dt->student_view))
        return bad(b, n, "unknown view '%s' (expected image, text.LANG or text.*)",
                   dt->student_view);

    if ((s = get_string(b, data, "augment", "", &dt->augment, &n)) != XD_OK) return s;
    img_opts io;
    img_opts_default(&io);
    if (n && (s = img_opts_parse(&io, dt->augment, b->e)) != XD_OK) return wrap(b, n, s);

    if ((s = get_string(b, data, "text", "", &dt->text, &n)) != XD_OK) return s;
    if (n) {
        txt_config tc = txt_config_default();
        if ((s = txt_config_parse_words(&tc, dt->text, b->e)) != XD_OK) return wrap(b, n, s);
    }
    return XD_OK;
}

/* A model description from `model` (inline) or `model_file` of map into *out, planned into net to
 * check it and that view feeds what it reads. */
static xd_status bind_model_text(binder *b, io_yaml_node *map, const char *view, char **out,
                                 nn_model *net)
{
    io_yaml_node *m = present(b, map, "model"), *mf = present(b, map, "model_file");
    xd_status s;
    if (m && mf) {
        io_yaml_mark_used(mf);
        return bad(b, mf, "give model or model_file, not both");
    }
    if (!m && !mf)
        return io_yaml_fail(b->d, map, b->e, XD_EARG,
                            "missing required key 'model' (or 'model_file')");
    io_yaml_node *at = m ? m : mf;
    if (m) {
        if ((s = get_string(b, map, "model", NULL, out, NULL)) != XD_OK) return s;
    } else {
        char *path = NULL;
        if ((s = get_string(b, map, "model_file", NULL, &path, NULL)) != XD_OK) return s;
        void *text;
        size_t n;
        s = io_read_all(path, RECIPE_MAX_MODEL_BYTES, &text, &n, b->e);
        free(path);
        if (s != XD_OK) return wrap(b, mf, s);
        if (strlen(text) != n) {
            free(text);
            return bad(b, mf, "the model file holds a NUL byte");
        }
        *out = text;
    }
    /* names, heads and sizes checked without taking the model's memory */
    if ((s = nn_model_plan(net, *out, 1, b->e)) != XD_OK) return wrap(b, at, s);
    b->built++;
    /* token ids and images are different inputs: the view must feed what the model reads */
    int text_view = strncmp(view, "text.", 5) == 0;
    if (text_view != (net->tokens > 0))
        return bad(b, at, "the model reads %s but %s is '%s'",
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
    xd_status s = need_kind(b, it, IO_YAML_MAPPING, "a mapping (name, model, view, ...)");
    if (s != XD_OK) return s;
    if ((s = io_yaml_check_keys(b->d, it, model_keys, COUNT_OF(model_keys), b->e))) return s;
    if ((s = io_yaml_require(b->d, it, "name", &n, b->e)) != XD_OK) return s;
    if ((s = get_string(b, it, "name", NULL, &rm->name, &n)) != XD_OK) return s;
    /* no '.': a loss end is MODEL.NODE */
    if (!word_ok(rm->name, "-_"))
        return bad(b, n, "'%s' is not a usable name (letters, digits, '-', '_')", rm->name);
    for (int j = 0; j < i; j++) {
        if (strcmp(r->models[j].name, rm->name) != 0) continue;
        char where[320];
        io_yaml_where(b->d, io_yaml_find(b->d, list->items[j], "name"), where, sizeof where);
        return bad(b, n, "model name '%s' is already used by models.%d (%s)", rm->name, j, where);
    }
    if ((s = get_string(b, it, "view", r->data.student_view, &rm->view, &n)) != XD_OK) return s;
    if (!view_ok(rm->view))
        return bad(b, n, "unknown view '%s' (expected image, text.LANG or text.*)", rm->view);
    b->model_items[i] = it;
    return bind_model_text(b, it, rm->view, &rm->model, &b->nets[i]);
}

/* The trainable models: the one-student form's top-level model (named "student"), or a models:
 * list. */
static xd_status bind_models(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    io_yaml_node *list = present(b, root, "models");
    xd_status s;
    if (!list) {
        r->models = xd_xcalloc(1, sizeof *r->models);
        r->n_models = 1;
        r->models[0].name = xd_xstrdup("student");
        r->models[0].view = xd_xstrdup(r->data.student_view);
        if ((s = bind_model_text(b, root, r->data.student_view, &r->model, &b->nets[0])))
            return s;
        r->models[0].model = xd_xstrdup(r->model);
        return XD_OK;
    }
    io_yaml_mark_used(list);
    io_yaml_node *other = present(b, root, "model") ? present(b, root, "model")
                                                    : present(b, root, "model_file");
    if (other) {
        io_yaml_mark_used(other);
        return bad(b, other, "give model (one student) or models (several), not both");
    }
    if ((s = need_kind(b, list, IO_YAML_SEQUENCE, "a list of models")) != XD_OK) return s;
    if (list->n == 0) return bad(b, list, "the list of models is empty");
    if (list->n > RECIPE_MAX_MODELS)
        return bad(b, list, "%d models, more than the %d allowed", list->n, RECIPE_MAX_MODELS);
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
    io_yaml_node *list = present(b, root, "teachers");
    if (!list) return XD_OK;
    io_yaml_mark_used(list);
    xd_status s = need_kind(b, list, IO_YAML_SEQUENCE, "a list of teachers");
    if (s != XD_OK) return s;
    if (list->n > RECIPE_MAX_TEACHERS)
        return bad(b, list, "%d teachers, more than the %d allowed", list->n, RECIPE_MAX_TEACHERS);
    r->teachers = xd_xcalloc((size_t)(list->n ? list->n : 1), sizeof *r->teachers);
    for (int i = 0; i < list->n; i++) {
        io_yaml_node *it = list->items[i], *n;
        recipe_teacher *t = &r->teachers[i];
        r->n_teachers = i + 1;
        io_yaml_mark_used(it);
        if ((s = need_kind(b, it, IO_YAML_MAPPING, "a mapping (name, checkpoint, ...)")) != XD_OK)
            return s;
        if ((s = io_yaml_check_keys(b->d, it, teacher_keys, COUNT_OF(teacher_keys), b->e)))
            return s;
        if ((s = io_yaml_require(b->d, it, "name", &n, b->e)) != XD_OK) return s;
        if ((s = get_string(b, it, "name", NULL, &t->name, &n)) != XD_OK) return s;
        if (!word_ok(t->name, "-_."))
            return bad(b, n, "'%s' is not a usable name (letters, digits, '-', '_', '.')",
                       xd_excerpt(t->name, q));
        for (int j = 0; j < i; j++) {
            if (strcmp(r->teachers[j].name, t->name) == 0) {
                io_yaml_node *first = io_yaml_find(b->d, list->items[j], "name");
                char where[320];
                io_yaml_where(b->d, first, where, sizeof where);
                return bad(b, n, "teacher name '%s' is already used by teachers.%d (%s)",
                           t->name, j, where);
            }
        }
        for (int j = 0; j < r->n_models && r->listed; j++) {
            if (strcmp(r->models[j].name, t->name) != 0) continue;
            char where[320];
            io_yaml_where(b->d, io_yaml_find(b->d, b->model_items[j], "name"), where, sizeof where);
            return bad(b, n, "teacher name '%s' is already the name of models.%d (%s)", t->name, j,
                       where);
        }
        if ((s = io_yaml_require(b->d, it, "checkpoint", &n, b->e)) != XD_OK) return s;
        if ((s = get_string(b, it, "checkpoint", NULL, &t->checkpoint, &n)) != XD_OK) return s;
        if (strncmp(t->checkpoint, RECIPE_STEP_PREFIX, strlen(RECIPE_STEP_PREFIX)) == 0) {
            /* another step's checkpoint: it exists only once that step has run */
            if (!(b->flags & RECIPE_STEP_REFS))
                return bad(b, n, "'%s' is the checkpoint of a pipeline step; run the pipeline "
                                 "(xdistill run PIPELINE.yaml)", t->checkpoint);
        } else if ((s = check_file(b, n, t->checkpoint)) != XD_OK) {
            return s;
        }
        if ((s = get_string(b, it, "view", r->data.student_view, &t->view, &n)) != XD_OK)
            return s;
        if (!view_ok(t->view))
            return bad(b, n, "unknown view '%s' (expected image, text.LANG or text.*)", t->view);
        t->cache = 1;
        if ((s = io_yaml_get_bool(b->d, it, "cache", &t->cache, b->e)) != XD_OK) return s;
        int lm = RECIPE_LANGS_SAMPLE;
        if ((s = get_enum(b, it, "languages", recipe_langs_names, RECIPE_LANGS_COUNT, &lm)))
            return s;
        t->languages = lm;
        if (t->languages == RECIPE_LANGS_AVERAGE && strcmp(t->view, "text.*") != 0)
            return bad(b, present(b, it, "languages"),
                       "'average' needs the view text.* (this teacher reads '%s')", t->view);
    }
    return XD_OK;
}

/* Optimizer or schedule: a kind word, or a mapping of keys for set() with `kind` applied first
 * (setting the kind resets the other keys). *given gets a bit per key index in `watch`. */
typedef xd_status (*cfg_set_fn)(void *cfg, const char *key, const char *value, xd_err *e);

static xd_status set_opt(void *cfg, const char *key, const char *value, xd_err *e)
{
    return nn_opt_config_set(cfg, key, value, e);
}
static xd_status set_sched(void *cfg, const char *key, const char *value, xd_err *e)
{
    return nn_sched_config_set(cfg, key, value, e);
}

static xd_status bind_cfg(binder *b, io_yaml_node *n, void *cfg, cfg_set_fn set,
                          const char *what)
{
    xd_status s;
    const char *v;
    if (n->kind == IO_YAML_SCALAR) {
        if ((s = io_yaml_as_str(b->d, n, &v, b->e)) != XD_OK) return s;
        if ((s = set(cfg, "kind", v, b->e)) != XD_OK) return wrap(b, n, s);
        return XD_OK;
    }
    if (n->kind != IO_YAML_MAPPING) return need_kind(b, n, IO_YAML_MAPPING, what);
    io_yaml_mark_used(n);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n->n; i++) {
            io_yaml_pair *p = &n->pairs[i];
            if ((strcmp(p->key, "kind") == 0) != (pass == 0)) continue;
            if ((s = io_yaml_as_str(b->d, p->value, &v, b->e)) != XD_OK) return s;
            if ((s = set(cfg, p->key, v, b->e)) != XD_OK) return wrap(b, p->value, s);
        }
    }
    return XD_OK;
}

static xd_status bind_train(binder *b, io_yaml_node *root)
{
    recipe_train *t = &b->r->train;
    io_yaml_node *train = present(b, root, "train");
    xd_status s;
    if (train) {
        io_yaml_mark_used(train);
        if ((s = need_kind(b, train, IO_YAML_MAPPING, "a mapping of training settings")))
            return s;
        if ((s = io_yaml_check_keys(b->d, train, train_keys, COUNT_OF(train_keys), b->e)))
            return s;
    }
    t->batch = DEFAULT_BATCH;
    t->steps_per_epoch = 0;
    t->eval_every = 1;
    t->threads = 0;
    if (train) {
        if ((s = io_yaml_get_int(b->d, train, "batch", 1, MAX_BATCH, &t->batch, b->e))) return s;
        if ((s = io_yaml_get_int(b->d, train, "steps_per_epoch", 0, 1 << 24, &t->steps_per_epoch,
                                 b->e)))
            return s;
        if ((s = io_yaml_get_int(b->d, train, "eval_every", 0, MAX_EPOCHS, &t->eval_every,
                                 b->e)))
            return s;
        if ((s = io_yaml_get_int(b->d, train, "threads", 0, MAX_THREADS, &t->threads, b->e)))
            return s;
    }

    t->opt = nn_opt_defaults(NN_OPT_ADAMW);
    io_yaml_node *o = present(b, train, "optimizer");
    if (o) {
        if ((s = bind_cfg(b, o, &t->opt, set_opt, "a mapping of optimizer settings"))) return s;
        if ((s = nn_opt_config_check(&t->opt, b->e)) != XD_OK) return wrap(b, o, s);
    }

    t->sched = nn_sched_defaults(NN_SCHED_CONSTANT);
    io_yaml_node *sc = present(b, train, "schedule");
    int base_given = 0, total_given = 0;
    if (sc) {
        if ((s = bind_cfg(b, sc, &t->sched, set_sched, "a mapping of schedule settings")))
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
        return wrap(b, sc ? sc : (train ? train : root), s);
    return XD_OK;
}

/* The keys of a dense loss (each only applies to that kind, checked before). */
/* Most entries of a label_map list (the teacher's class count). */
#define MAX_LABEL_TABLE 100000

/* projector_init, projector_frozen, learn_temperature, label_map: the alignment keys. */
static xd_status bind_align_keys(binder *b, io_yaml_node *it, recipe_loss *l)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    int v = l->projector_init;
    xd_status s = get_enum(b, it, "projector_init", recipe_proj_init_names, RECIPE_INIT_COUNT, &v);
    if (s != XD_OK) return s;
    l->projector_init = v;
    if ((s = io_yaml_get_bool(b->d, it, "projector_frozen", &l->projector_frozen, b->e)) != XD_OK)
        return s;
    io_yaml_node *n = present(b, it, "projector_frozen");
    if (n && l->projector_frozen && l->projector_init == RECIPE_INIT_RANDOM)
        return bad(b, n, "a frozen projector needs projector_init: procrustes or cca (a fixed "
                         "random map teaches nothing)");
    if (n && l->projector == RECIPE_PROJ_NONE)
        return bad(b, n, "there is no projector (projector: none)");
    if ((s = io_yaml_get_bool(b->d, it, "learn_temperature", &l->learn_temperature, b->e)))
        return s;
    n = present(b, it, "label_map");
    if (!n) return XD_OK;
    io_yaml_mark_tree(n);
    if (n->kind == IO_YAML_SCALAR) {
        if (strcmp(n->str, "label") != 0 &&
            (strncmp(n->str, "label.", 6) != 0 || !word_ok(n->str + 6, "-_")))
            return bad(b, n, "'%s': expected a label section of the data set (label or "
                             "label.NAME) or a list of student classes", xd_excerpt(n->str, q));
        l->label_map = xd_xstrdup(n->str);
        return XD_OK;
    }
    if ((s = need_kind(b, n, IO_YAML_SEQUENCE, "label.NAME or a list of student classes")))
        return s;
    if (n->n < 1 || n->n > MAX_LABEL_TABLE)
        return bad(b, n, "%d entries; a label map lists 1 to %d teacher classes", n->n,
                   MAX_LABEL_TABLE);
    l->label_table = xd_xmalloc(sizeof(int32_t) * (size_t)n->n);
    l->n_label_table = n->n;
    for (int i = 0; i < n->n; i++) {
        int c;
        if ((s = io_yaml_as_int(b->d, n->items[i], 0, INT_MAX, &c, b->e)) != XD_OK) return s;
        l->label_table[i] = c;
    }
    return XD_OK;
}

static xd_status bind_dense_keys(binder *b, io_yaml_node *it, recipe_loss *l)
{
    int v = l->windows;
    xd_status s = get_enum(b, it, "windows", recipe_windows_names, RECIPE_WINDOWS_COUNT, &v);
    if (s != XD_OK) return s;
    l->windows = v;
    if ((s = io_yaml_get_int(b->d, it, "stride", 1, DENSE_MAX_STRIDE, &l->stride, b->e)))
        return s;
    io_yaml_node *n = present(b, it, "stride");
    if (n && l->windows != RECIPE_WINDOWS_GRID)
        return bad(b, n, "only applies to windows: grid (blobs and boxes follow the items)");
    if ((s = get_enum(b, it, "weighting", align_dense_weight_names, ALIGN_DENSE_WEIGHT_COUNT,
                      &l->weighting)))
        return s;
    if ((s = get_float(b, it, "min_conf", R_UNIT, &l->min_conf)) != XD_OK) return s;
    if ((s = get_float(b, it, "threshold", R_GE0, &l->threshold)) != XD_OK) return s;
    return XD_OK;
}

/* A loss end "NAME" or "NAME.NODE": NAME a trainable model (*model = its index) or a teacher
 * (*teacher), the longest name that fits (teacher names may hold '.'); *node the rest or NULL. */
static xd_status resolve_end(binder *b, const io_yaml_node *n, const char *text, int *model,
                             int *teacher, char **node)
{
    const recipe *r = b->r;
    size_t best = 0;
    *model = *teacher = -1;
    for (int pass = 0; pass < 2; pass++) {
        const int count = pass == 0 ? r->n_models : r->n_teachers;
        for (int i = 0; i < count; i++) {
            const char *name = pass == 0 ? r->models[i].name : r->teachers[i].name;
            size_t len = strlen(name);
            if (len <= best || strncmp(text, name, len) != 0) continue;
            if (text[len] != '\0' && text[len] != '.') continue;
            best = len;
            *model = pass == 0 ? i : -1;
            *teacher = pass == 1 ? i : -1;
        }
    }
    if (!best) {
        char models[256], teachers[256];
        const char *names[RECIPE_MAX_MODELS > RECIPE_MAX_TEACHERS ? RECIPE_MAX_MODELS
                                                                  : RECIPE_MAX_TEACHERS];
        for (int i = 0; i < r->n_models; i++) names[i] = r->models[i].name;
        name_list(names, r->n_models, models, sizeof models);
        for (int i = 0; i < r->n_teachers; i++) names[i] = r->teachers[i].name;
        name_list(names, r->n_teachers, teachers, sizeof teachers);
        return bad(b, n, "'%s' names no model or teacher (models: %s; teachers: %s)", text, models,
                   r->n_teachers ? teachers : "none");
    }
    *node = NULL;
    if (text[best] == '.') {
        if (!word_ok(text + best + 1, "-_.")) return bad(b, n, "'%s' is not a node name", text + best + 1);
        *node = xd_xstrdup(text + best + 1);
    }
    return XD_OK;
}

/* Which end of a tap loss or logit loss a node key fills. */
static char **end_node(recipe_loss *l, int from)
{
    const int tap = applies(LK_STUDENT_TAP, l->kind);
    if (from) return tap ? &l->teacher_tap : &l->teacher_head;
    return tap ? &l->student_tap : &l->head;
}

/* The two ends of a loss: `model` (ce) or `to` (the end that learns, a trainable model), `from`
 * (a teacher or another model; the one-student form's `teacher`), and `detach`. */
static xd_status bind_ends(binder *b, io_yaml_node *it, recipe_loss *l)
{
    recipe *r = b->r;
    const char *kname = recipe_loss_kind_names[l->kind];
    static const char *const clash[2][4] = {{"to", "head", "student_tap", NULL},
                                            {"from", "teacher", "teacher_head", "teacher_tap"}};
    for (int e = 0; e < 2; e++)
        for (int k = 1; k < 4 && clash[e][k] && present(b, it, clash[e][0]); k++) {
            io_yaml_node *n = present(b, it, clash[e][k]);
            if (!n) continue;
            io_yaml_mark_used(n);
            return bad(b, n, "give %s or %s, not both", clash[e][0], clash[e][k]);
        }
    io_yaml_node *n;
    char *text = NULL, *node = NULL;
    int model, teacher;
    xd_status s = get_string(b, it, "model", NULL, &text, &n);
    if (s == XD_OK && text) {
        if ((s = resolve_end(b, n, text, &model, &teacher, &node)) == XD_OK && model < 0)
            s = bad(b, n, "'%s' is a teacher; ce trains a model of the recipe", text);
        if (s == XD_OK && node)
            s = bad(b, n, "'%s': a model's name, without a node (head names the node)", text);
        l->model = model;
        free(node);
    }
    free(text);
    text = NULL;
    if (s == XD_OK) s = get_string(b, it, "to", NULL, &text, &n);
    if (s == XD_OK && text) {
        if ((s = resolve_end(b, n, text, &model, &teacher, &node)) == XD_OK && model < 0)
            s = bad(b, n, "'%s' is a teacher; the end that learns is a trainable model", text);
        if (s == XD_OK && node) s = check_model_node(b, n, model, node);
        if (s == XD_OK && !node && applies(LK_STUDENT_TAP, l->kind))
            s = bad(b, n, "kind '%s' needs a node: MODEL.NODE", kname);
        l->model = model;
        char **at = end_node(l, 0);
        free(*at);
        *at = node;
    }
    free(text);
    text = NULL;
    io_yaml_node *fn = NULL;
    if (s == XD_OK) s = get_string(b, it, "from", NULL, &text, &fn);
    if (s == XD_OK && text) {
        if ((s = resolve_end(b, fn, text, &model, &teacher, &node)) == XD_OK && model >= 0 && node)
            s = check_model_node(b, fn, model, node);
        if (s == XD_OK && !node && applies(LK_TEACHER_TAP, l->kind))
            s = bad(b, fn, "kind '%s' needs a node: NAME.NODE", kname);
        if (s == XD_OK && model == l->model)
            s = bad(b, fn, "'%s' is the end that learns too; from and to are different models",
                    text);
        if (s == XD_OK && model >= 0 && l->kind == RECIPE_LOSS_DENSE)
            s = bad(b, fn, "a dense loss reads a teacher's windows; '%s' is a trainable model",
                    text);
        l->from_model = model;
        l->teacher = teacher;
        char **at = end_node(l, 1);
        free(*at);
        *at = node;
    }
    free(text);
    if (s != XD_OK) return s;
    if (applies(LK_TEACHER, l->kind) && !fn) {
        char *tname = NULL;
        if ((s = get_string(b, it, "teacher", NULL, &tname, &n)) != XD_OK) return s;
        if (tname) {
            for (int j = 0; j < r->n_teachers && l->teacher < 0; j++)
                if (strcmp(r->teachers[j].name, tname) == 0) l->teacher = j;
            if (l->teacher < 0) {
                char list[256];
                const char *names[RECIPE_MAX_TEACHERS];
                for (int j = 0; j < r->n_teachers; j++) names[j] = r->teachers[j].name;
                s = r->n_teachers
                        ? bad(b, n, "no teacher named '%s' (teachers: %s)", tname,
                              name_list(names, r->n_teachers, list, sizeof list))
                        : bad(b, n, "no teacher named '%s' (the recipe lists no teachers)",
                              tname);
                free(tname);
                return s;
            }
            free(tname);
        } else if (r->n_teachers == 1) {
            l->teacher = 0;
        } else if (r->n_teachers == 0) {
            return bad(b, it, "kind '%s' needs a teacher, and the recipe lists none%s", kname,
                       r->listed ? " (or 'from' naming another model)" : "");
        } else {
            return bad(b, it, "kind '%s' needs 'teacher': the recipe lists %d teachers", kname,
                       r->n_teachers);
        }
    }
    if ((s = io_yaml_get_bool(b->d, it, "detach", &l->detach, b->e)) != XD_OK) return s;
    if (!l->detach && l->teacher >= 0)
        return bad(b, present(b, it, "detach"), "teacher '%s' is frozen: detach: false needs a "
                   "trainable model at the from end", r->teachers[l->teacher].name);
    return XD_OK;
}

static xd_status bind_loss(binder *b, io_yaml_node *it, recipe_loss *l)
{
    xd_status s;
    io_yaml_node *n;
    io_yaml_mark_used(it);
    if ((s = need_kind(b, it, IO_YAML_MAPPING, "a mapping (kind, weight, ...)")) != XD_OK)
        return s;
    if ((s = io_yaml_check_keys(b->d, it, loss_key_names, LK_COUNT, b->e)) != XD_OK) return s;
    if ((s = io_yaml_require(b->d, it, "kind", &n, b->e)) != XD_OK) return s;
    int kind = 0;
    if ((s = get_enum(b, it, "kind", recipe_loss_kind_names, RECIPE_LOSS_COUNT, &kind)))
        return s;
    *l = (recipe_loss){.kind = kind, .weight = 1.0f, .teacher = -1, .from_model = -1, .detach = 1,
                       .temperature = kind == RECIPE_LOSS_DENSE         ? DENSE_TEMPERATURE
                                      : kind == RECIPE_LOSS_CONTRASTIVE ? CONTRASTIVE_TEMPERATURE
                                                                        : DEFAULT_TEMPERATURE,
                       .alpha = DEFAULT_ALPHA, .windows = RECIPE_WINDOWS_BLOBS,
                       .stride = DENSE_STRIDE, .weighting = ALIGN_DENSE_CONFIDENCE,
                       .threshold = DENSE_THRESHOLD, .line = io_yaml_key_line(it)};
    const char *kname = recipe_loss_kind_names[kind];
    for (int i = 0; i < it->n; i++) {
        int k = name_index(loss_key_names, LK_COUNT, it->pairs[i].key);
        XD_ASSERT(k >= 0); /* io_yaml_check_keys passed */
        if (applies(k, l->kind)) continue;
        const char *only[RECIPE_LOSS_COUNT];
        int n_only = 0;
        for (int j = 0; j < RECIPE_LOSS_COUNT; j++)
            if (applies(k, j)) only[n_only++] = recipe_loss_kind_names[j];
        char list[128];
        io_yaml_mark_used(it->pairs[i].value);
        return bad(b, it->pairs[i].value, "does not apply to kind '%s' (only to %s)", kname,
                   name_list(only, n_only, list, sizeof list));
    }

    if ((s = get_float(b, it, "weight", R_GE0, &l->weight)) != XD_OK) return s;
    if ((s = bind_ends(b, it, l)) != XD_OK) return s;
    if ((s = get_float(b, it, "temperature", R_GT0, &l->temperature)) != XD_OK) return s;
    if ((s = get_float(b, it, "alpha", R_UNIT, &l->alpha)) != XD_OK) return s;
    /* `to` and `from` give the nodes themselves; head, student_tap, teacher_head and teacher_tap
     * are the one-student form's spelling of the same */
    const int to = present(b, it, "to") != NULL, from = present(b, it, "from") != NULL;
    if (!to) {
        if ((s = get_string(b, it, "head", NULL, &l->head, &n)) != XD_OK) return s;
        if (l->head && (s = check_model_node(b, n, l->model, l->head)) != XD_OK) return s;
    }
    if (!from) {
        if ((s = get_string(b, it, "teacher_head", NULL, &l->teacher_head, &n)) != XD_OK) return s;
        if (l->teacher_head && !word_ok(l->teacher_head, "-_."))
            return bad(b, n, "'%s' is not a node name", l->teacher_head);
    }
    if (applies(LK_STUDENT_TAP, l->kind) && !to) {
        if ((s = io_yaml_require(b->d, it, "student_tap", &n, b->e)) != XD_OK) return s;
        if ((s = get_string(b, it, "student_tap", NULL, &l->student_tap, &n)) != XD_OK) return s;
        if ((s = check_model_node(b, n, l->model, l->student_tap)) != XD_OK) return s;
    }
    if (applies(LK_TEACHER_TAP, l->kind) && !from) {
        if ((s = io_yaml_require(b->d, it, "teacher_tap", &n, b->e)) != XD_OK) return s;
        if ((s = get_string(b, it, "teacher_tap", NULL, &l->teacher_tap, &n)) != XD_OK) return s;
        if (!word_ok(l->teacher_tap, "-_."))
            return bad(b, n, "'%s' is not a node name", l->teacher_tap);
    }
    int v = l->metric;
    if ((s = get_enum(b, it, "metric", recipe_metric_names, RECIPE_METRIC_COUNT, &v))) return s;
    l->metric = v;
    v = l->projector;
    if ((s = get_enum(b, it, "projector", recipe_projector_names, RECIPE_PROJ_COUNT, &v)))
        return s;
    l->projector = v;
    if ((s = bind_align_keys(b, it, l)) != XD_OK) return s;
    return bind_dense_keys(b, it, l);
}

static xd_status bind_losses(binder *b, io_yaml_node *list, recipe_stage *st)
{
    io_yaml_mark_used(list);
    xd_status s = need_kind(b, list, IO_YAML_SEQUENCE, "a list of losses");
    if (s != XD_OK) return s;
    if (list->n == 0) return bad(b, list, "the list of losses is empty");
    if (list->n > RECIPE_MAX_LOSSES)
        return bad(b, list, "%d losses, more than the %d allowed", list->n, RECIPE_MAX_LOSSES);
    st->losses = xd_xcalloc((size_t)list->n, sizeof *st->losses);
    for (int i = 0; i < list->n; i++) {
        st->n_losses = i + 1;
        if ((s = bind_loss(b, list->items[i], &st->losses[i])) != XD_OK) return s;
    }
    return XD_OK;
}

/* train_until: a node of the student, or with several models MODEL.NODE. */
static xd_status bind_train_until(binder *b, io_yaml_node *n, recipe_stage *st)
{
    if (b->r->n_models == 1) return check_model_node(b, n, 0, st->train_until);
    int model, teacher;
    char *node = NULL;
    xd_status s = resolve_end(b, n, st->train_until, &model, &teacher, &node);
    if (s == XD_OK && (model < 0 || !node))
        s = bad(b, n, "'%s': with several models, train_until is MODEL.NODE", st->train_until);
    if (s == XD_OK) s = check_model_node(b, n, model, node);
    if (s == XD_OK) {
        free(st->train_until);
        st->train_until = node;
        st->until_model = model;
    } else {
        free(node);
    }
    return s;
}

static xd_status bind_stages(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    io_yaml_node *stages = present(b, root, "stages"), *n;
    io_yaml_node *train = present(b, root, "train");
    xd_status s;
    if (!stages) {
        if ((s = io_yaml_require(b->d, root, "train.epochs", &n, b->e)) != XD_OK) return s;
        r->stages = xd_xcalloc(1, sizeof *r->stages);
        r->n_stages = 1;
        if ((s = io_yaml_as_int(b->d, n, 1, MAX_EPOCHS, &r->stages[0].epochs, b->e))) return s;
        if ((s = io_yaml_require(b->d, root, "losses", &n, b->e)) != XD_OK) return s;
        if ((s = bind_losses(b, n, &r->stages[0])) != XD_OK) return s;
        r->train.epochs = r->stages[0].epochs;
        return XD_OK;
    }
    if ((n = present(b, train, "epochs"))) {
        io_yaml_mark_used(n);
        return bad(b, n, "not allowed together with stages (each stage has its own epochs)");
    }
    if ((n = present(b, root, "losses"))) {
        io_yaml_mark_used(n);
        return bad(b, n, "not allowed together with stages (each stage lists its own losses)");
    }
    io_yaml_mark_used(stages);
    r->staged = 1;
    if ((s = need_kind(b, stages, IO_YAML_SEQUENCE, "a list of stages")) != XD_OK) return s;
    if (stages->n == 0) return bad(b, stages, "the list of stages is empty");
    if (stages->n > RECIPE_MAX_STAGES)
        return bad(b, stages, "%d stages, more than the %d allowed", stages->n,
                   RECIPE_MAX_STAGES);
    r->stages = xd_xcalloc((size_t)stages->n, sizeof *r->stages);
    for (int i = 0; i < stages->n; i++) {
        io_yaml_node *it = stages->items[i];
        recipe_stage *st = &r->stages[i];
        r->n_stages = i + 1;
        io_yaml_mark_used(it);
        if ((s = need_kind(b, it, IO_YAML_MAPPING, "a mapping (epochs, losses, train_until)")))
            return s;
        if ((s = io_yaml_check_keys(b->d, it, stage_keys, COUNT_OF(stage_keys), b->e)))
            return s;
        if ((s = io_yaml_require(b->d, it, "epochs", &n, b->e)) != XD_OK) return s;
        if ((s = io_yaml_as_int(b->d, n, 1, MAX_EPOCHS, &st->epochs, b->e)) != XD_OK) return s;
        if ((s = io_yaml_require(b->d, it, "losses", &n, b->e)) != XD_OK) return s;
        if ((s = bind_losses(b, n, st)) != XD_OK) return s;
        if ((s = get_string(b, it, "train_until", NULL, &st->train_until, &n)) != XD_OK) return s;
        if (st->train_until && (s = bind_train_until(b, n, st)) != XD_OK) return s;
        if (r->train.epochs > MAX_EPOCHS - st->epochs)
            return bad(b, it, "the stages add up to more than %d epochs", MAX_EPOCHS);
        r->train.epochs += st->epochs;
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
        io_yaml_node *o = b->model_items[i] ? present(b, b->model_items[i], "optimizer") : NULL;
        if (!o) continue;
        xd_status s = bind_cfg(b, o, &rm->opt, set_opt, "a mapping of optimizer settings");
        if (s != XD_OK) return s;
        if ((s = nn_opt_config_check(&rm->opt, b->e)) != XD_OK) return wrap(b, o, s);
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
            return bad(b, io_yaml_find(b->d, b->model_items[k], "name"),
                       "no loss trains model '%s' (ce with model: %s, or a loss with to: %s)",
                       r->models[k].name, r->models[k].name, r->models[k].name);
    }
    return XD_OK;
}

/* A teacher that no loss reads would cost a forward pass per step for nothing. */
static xd_status check_teachers_used(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    for (int t = 0; t < r->n_teachers; t++) {
        int used = 0;
        for (int i = 0; i < r->n_stages && !used; i++)
            for (int j = 0; j < r->stages[i].n_losses && !used; j++)
                used = r->stages[i].losses[j].teacher == t;
        if (!used) {
            io_yaml_node *it = io_yaml_find(b->d, root, "teachers");
            return bad(b, it->items[t], "no loss uses teacher '%s'", r->teachers[t].name);
        }
    }
    return XD_OK;
}

/* Losses that suit the task: a dense loss makes per-pixel targets, so it needs a segment task;
 * kd and hinton match one distribution per example, which a segment head does not have. A segment
 * task's masks cannot follow random crops or flips of the images. */
/* The node of loss j of stage i, for messages. */
static io_yaml_node *loss_node(binder *b, io_yaml_node *root, int i, int j)
{
    io_yaml_node *list = present(b, root, "stages");
    list = list ? io_yaml_find(b->d, list->items[i], "losses") : io_yaml_find(b->d, root, "losses");
    return list->items[j];
}

static xd_status check_task(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    const int seg = r->task == RECIPE_TASK_SEGMENT;
    if (seg && r->n_models > 1)
        return bad(b, io_yaml_find(b->d, root, "models"), "task: segment trains one model");
    for (int i = 0; i < r->n_stages; i++)
        for (int j = 0; j < r->stages[i].n_losses; j++) {
            recipe_loss_kind k = r->stages[i].losses[j].kind;
            const int bad_kind = seg ? (BIT(k) & LOGIT_LOSSES) != 0 : k == RECIPE_LOSS_DENSE;
            if (!bad_kind) continue;
            return bad(b, loss_node(b, root, i, j), "kind '%s' %s", recipe_loss_kind_names[k],
                       seg ? "does not apply to task: segment (its per-pixel loss is 'dense')"
                           : "needs task: segment (per-pixel labels)");
        }
    if (!seg || !r->data.augment[0]) return XD_OK;
    img_opts o;
    img_opts_default(&o);
    o.pad = 0;
    o.flip = 0.0f;
    io_yaml_node *n = io_yaml_find(b->d, root, "data.augment");
    if (img_opts_parse(&o, r->data.augment, b->e) == XD_OK && (o.pad > 0 || o.flip > 0.0f))
        return bad(b, n, "task: segment takes no random crops or flips (the masks would not "
                         "follow); keep normalisation only");
    if ((o.size_h && o.size_h != b->nets[0].h) || (o.size_w && o.size_w != b->nets[0].w))
        return bad(b, n, "task: segment reads the scenes at the model's input size (%dx%d); a "
                         "resize would not move the masks", b->nets[0].h, b->nets[0].w);
    return XD_OK;
}

/* Checks across keys, so that a run never starts (and never clears an output folder) to fail on
 * what the recipe alone decides. */
static xd_status check_losses(binder *b, io_yaml_node *root)
{
    const recipe *r = b->r;
    for (int i = 0; i < r->n_stages; i++) {
        int teaches = 0;
        for (int j = 0; j < r->stages[i].n_losses; j++) {
            const recipe_loss *l = &r->stages[i].losses[j];
            teaches |= l->teacher >= 0 || l->from_model >= 0;
            if (l->from_model >= 0 && l->projector_init != RECIPE_INIT_RANDOM)
                return bad(b, loss_node(b, root, i, j), "projector_init %s fits on a teacher's "
                           "taps; with another model at the from end it starts at random",
                           recipe_proj_init_names[l->projector_init]);
            if (!l->detach && (l->label_map || l->label_table))
                return bad(b, loss_node(b, root, i, j), "detach: false does not combine with "
                           "label_map (the map's gradient is not sent back)");
            if (l->projector == RECIPE_PROJ_MLP && l->projector_init != RECIPE_INIT_RANDOM)
                return bad(b, loss_node(b, root, i, j), "projector_init %s fits a linear map; an "
                           "mlp projector starts at random", recipe_proj_init_names[l->projector_init]);
            if (l->kind == RECIPE_LOSS_CONTRASTIVE && r->train.batch < 2)
                return bad(b, loss_node(b, root, i, j), "a contrastive loss needs batches of 2 or "
                           "more (the other examples of a batch are its negatives); batch is %d",
                           r->train.batch);
        }
        if (r->data.label_fraction == 0.0f && r->data.labels_per_class == 0 && !teaches)
            return bad(b, io_yaml_find(b->d, root, "data.label_fraction"),
                       "no label is kept, and %s has no loss that reads a teacher: nothing to "
                       "learn from", r->n_stages > 1 ? "a stage" : "the recipe");
    }
    return XD_OK;
}

static xd_status bind(binder *b)
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
        return bad(b, io_yaml_find(b->d, root, "seed"), "seed + seeds - 1 overflows");
    int task = RECIPE_TASK_CLASSIFY;
    if ((s = get_enum(b, root, "task", recipe_task_names, RECIPE_TASK_COUNT, &task))) return s;
    b->r->task = task;
    if ((s = bind_data(b, root)) != XD_OK) return s;
    if ((s = bind_models(b, root)) != XD_OK) return s;
    if ((s = bind_teachers(b, root)) != XD_OK) return s;
    if ((s = bind_train(b, root)) != XD_OK) return s;
    if ((s = bind_model_opts(b)) != XD_OK) return s;
    if ((s = bind_stages(b, root)) != XD_OK) return s;
    if ((s = check_teachers_used(b, root)) != XD_OK) return s;
    if ((s = check_models_trained(b)) != XD_OK) return s;
    if ((s = check_task(b, root)) != XD_OK) return s;
    if ((s = check_losses(b, root)) != XD_OK) return s;
    return io_yaml_check_unused(b->d, b->e);
}

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
    if (s == XD_OK) s = bind(&b);
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
    free(l->label_map);
    free(l->label_table);
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
    free(r->model);
    for (int i = 0; i < r->n_models; i++) {
        free(r->models[i].name);
        free(r->models[i].model);
        free(r->models[i].view);
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

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        XD_ASSERT(w >= 0);
        if (b->s && (size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        b->cap = 2 * (b->cap + (size_t)w + 64);
        b->s = xd_xrealloc(b->s, b->cap);
    }
}

/* A YAML double-quoted string: '"', '\' and control characters escaped, UTF-8 kept. */
static void sb_quoted(sbuf *b, const char *s)
{
    sb_add(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sb_add(b, "\\\""); break;
        case '\\': sb_add(b, "\\\\"); break;
        case '\n': sb_add(b, "\\n"); break;
        case '\t': sb_add(b, "\\t"); break;
        case '\r': sb_add(b, "\\r"); break;
        default:
            if (*p < 0x20 || *p == 0x7F)
                sb_add(b, "\\x%02X", *p);
            else
                sb_add(b, "%c", *p);
        }
    }
    sb_add(b, "\"");
}

/* The shortest %g text that reads back as the same float. */
static const char *fmt_float(float v, char *buf, size_t size)
{
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, size, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return buf;
}

/* key=value words from nn_*_config_format as a flow mapping, floats shortened; skip names a key
 * left out. */
static void sb_words(sbuf *b, const char *words, const char *skip)
{
    char *copy = xd_xstrdup(words), *save = NULL;
    int first = 1;
    sb_add(b, "{");
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(w, '=');
        XD_ASSERT(eq);
        *eq = '\0';
        const char *v = eq + 1;
        if (skip && strcmp(w, skip) == 0) continue;
        char num[32], *end;
        /* only numbers with a fraction or exponent: whole step counts would round as floats */
        float x = strtof(v, &end);
        if (end != v && !*end && strpbrk(v, ".eE")) v = fmt_float(x, num, sizeof num);
        sb_add(b, "%s%s: %s", first ? "" : ", ", w, v);
        first = 0;
    }
    sb_add(b, "}");
    free(copy);
}

/* "NAME" or "NAME.NODE" of a loss end, quoted. */
static void sb_end(sbuf *b, const char *name, const char *node)
{
    char text[2 * RECIPE_MAX_NAME + 2];
    snprintf(text, sizeof text, "%s%s%s", name, node ? "." : "", node ? node : "");
    sb_quoted(b, text);
}

/* A loss's ends in the models: form: ce's model, else from, to and detach. */
static void print_ends(sbuf *b, const recipe *r, const recipe_loss *l, const char *ind)
{
    if (l->kind == RECIPE_LOSS_CE) {
        sb_add(b, "%s  model: ", ind);
        sb_quoted(b, r->models[l->model].name);
        sb_add(b, "\n");
        return;
    }
    const int tap = applies(LK_STUDENT_TAP, l->kind);
    sb_add(b, "%s  from: ", ind);
    sb_end(b, l->from_model >= 0 ? r->models[l->from_model].name : r->teachers[l->teacher].name,
           tap ? l->teacher_tap : l->teacher_head);
    sb_add(b, "\n%s  to: ", ind);
    sb_end(b, r->models[l->model].name, tap ? l->student_tap : l->head);
    sb_add(b, "\n%s  detach: %s\n", ind, l->detach ? "true" : "false");
}

static void print_loss(sbuf *b, const recipe *r, const recipe_loss *l, const char *ind)
{
    char f[32];
    sb_add(b, "%s- kind: %s\n", ind, recipe_loss_kind_names[l->kind]);
    sb_add(b, "%s  weight: %s\n", ind, fmt_float(l->weight, f, sizeof f));
    if (r->listed) {
        print_ends(b, r, l, ind);
    } else if (applies(LK_TEACHER, l->kind) && l->teacher >= 0 && l->teacher < r->n_teachers) {
        sb_add(b, "%s  teacher: ", ind);
        sb_quoted(b, r->teachers[l->teacher].name);
        sb_add(b, "\n");
    }
    if (applies(LK_TEMPERATURE, l->kind))
        sb_add(b, "%s  temperature: %s\n", ind, fmt_float(l->temperature, f, sizeof f));
    if (applies(LK_ALPHA, l->kind))
        sb_add(b, "%s  alpha: %s\n", ind, fmt_float(l->alpha, f, sizeof f));
    const struct {
        loss_key key;
        const char *value;
    } strs[] = {{LK_HEAD, l->head},
                {LK_TEACHER_HEAD, l->teacher_head},
                {LK_STUDENT_TAP, l->student_tap},
                {LK_TEACHER_TAP, l->teacher_tap}};
    for (int i = 0; i < COUNT_OF(strs); i++) {
        if (!strs[i].value || !applies(strs[i].key, l->kind)) continue;
        /* with a models: list the ends carry the nodes (ce keeps its head) */
        if (r->listed && !(strs[i].key == LK_HEAD && l->kind == RECIPE_LOSS_CE)) continue;
        sb_add(b, "%s  %s: ", ind, loss_key_names[strs[i].key]);
        sb_quoted(b, strs[i].value);
        sb_add(b, "\n");
    }
    if (applies(LK_METRIC, l->kind))
        sb_add(b, "%s  metric: %s\n", ind, recipe_metric_names[l->metric]);
    if (applies(LK_PROJECTOR, l->kind)) {
        sb_add(b, "%s  projector: %s\n", ind, recipe_projector_names[l->projector]);
        sb_add(b, "%s  projector_init: %s\n", ind, recipe_proj_init_names[l->projector_init]);
        if (l->projector != RECIPE_PROJ_NONE)
            sb_add(b, "%s  projector_frozen: %s\n", ind, l->projector_frozen ? "true" : "false");
    }
    if (applies(LK_LEARN_TEMPERATURE, l->kind))
        sb_add(b, "%s  learn_temperature: %s\n", ind, l->learn_temperature ? "true" : "false");
    if (l->label_map) {
        sb_add(b, "%s  label_map: ", ind);
        sb_quoted(b, l->label_map);
        sb_add(b, "\n");
    }
    if (l->label_table) {
        sb_add(b, "%s  label_map: [", ind);
        for (int i = 0; i < l->n_label_table; i++)
            sb_add(b, "%s%d", i ? ", " : "", l->label_table[i]);
        sb_add(b, "]\n");
    }
    if (applies(LK_WINDOWS, l->kind)) {
        sb_add(b, "%s  windows: %s\n", ind, recipe_windows_names[l->windows]);
        if (l->windows == RECIPE_WINDOWS_GRID) sb_add(b, "%s  stride: %d\n", ind, l->stride);
        sb_add(b, "%s  weighting: %s\n", ind, align_dense_weight_names[l->weighting]);
        sb_add(b, "%s  min_conf: %s\n", ind, fmt_float(l->min_conf, f, sizeof f));
        sb_add(b, "%s  threshold: %s\n", ind, fmt_float(l->threshold, f, sizeof f));
    }
}

char *recipe_to_yaml(const recipe *r)
{
    sbuf b = {0};
    char f[32], words[512];
    sb_add(&b, "# xdistill recipe, every default filled in\nname: ");
    sb_quoted(&b, r->name ? r->name : "recipe");
    sb_add(&b, "\nseed: %ld\nseeds: %d\ntask: %s\n", r->seed, r->seeds,
           recipe_task_names[r->task]);

    const recipe_data *dt = &r->data;
    sb_add(&b, "data:\n");
    const char *data_strs[][2] = {{"path", dt->path},   {"train", dt->train},
                                  {"test", dt->test},   {"label", dt->label}};
    for (int i = 0; i < COUNT_OF(data_strs); i++) {
        sb_add(&b, "  %s: ", data_strs[i][0]);
        sb_quoted(&b, data_strs[i][1] ? data_strs[i][1] : "");
        sb_add(&b, "\n");
    }
    if (dt->labels_per_class > 0)
        sb_add(&b, "  labels_per_class: %d\n", dt->labels_per_class);
    else
        sb_add(&b, "  label_fraction: %s\n", fmt_float(dt->label_fraction, f, sizeof f));
    const char *view_strs[][2] = {{"student_view", dt->student_view},
                                  {"augment", dt->augment},
                                  {"text", dt->text}};
    for (int i = 0; i < COUNT_OF(view_strs); i++) {
        sb_add(&b, "  %s: ", view_strs[i][0]);
        sb_quoted(&b, view_strs[i][1] ? view_strs[i][1] : "");
        sb_add(&b, "\n");
    }

    if (r->listed) {
        sb_add(&b, "models:\n");
        for (int i = 0; i < r->n_models; i++) {
            const recipe_model *m = &r->models[i];
            sb_add(&b, "  - name: ");
            sb_quoted(&b, m->name);
            sb_add(&b, "\n    model: ");
            sb_quoted(&b, m->model);
            sb_add(&b, "\n    view: ");
            sb_quoted(&b, m->view);
            sb_add(&b, "\n");
            if (m->own_opt) {
                sb_add(&b, "    optimizer: ");
                nn_opt_config_format(&m->opt, words, sizeof words);
                sb_words(&b, words, NULL);
                sb_add(&b, "\n");
            }
        }
    } else {
        sb_add(&b, "model: ");
        sb_quoted(&b, r->model ? r->model : "");
        sb_add(&b, "\n");
    }

    if (r->n_teachers) sb_add(&b, "teachers:\n");
    for (int i = 0; i < r->n_teachers; i++) {
        const recipe_teacher *t = &r->teachers[i];
        sb_add(&b, "  - name: ");
        sb_quoted(&b, t->name);
        sb_add(&b, "\n    checkpoint: ");
        sb_quoted(&b, t->checkpoint);
        sb_add(&b, "\n    view: ");
        sb_quoted(&b, t->view);
        sb_add(&b, "\n    cache: %s\n", t->cache ? "true" : "false");
        sb_add(&b, "    languages: %s\n", recipe_langs_names[t->languages]);
    }

    /* one stage over the whole model is the plain form: train.epochs + losses */
    int implicit = r->n_stages == 1 && !r->stages[0].train_until;
    const recipe_train *t = &r->train;
    sb_add(&b, "train:\n");
    if (implicit) sb_add(&b, "  epochs: %d\n", r->stages[0].epochs);
    sb_add(&b, "  batch: %d\n  steps_per_epoch: %d\n  optimizer: ", t->batch, t->steps_per_epoch);
    nn_opt_config_format(&t->opt, words, sizeof words);
    sb_words(&b, words, NULL);
    sb_add(&b, "\n  schedule: ");
    nn_sched_config_format(&t->sched, words, sizeof words);
    sb_words(&b, words, t->sched_auto_steps ? "total_steps" : NULL);
    sb_add(&b, "\n  eval_every: %d\n  threads: %d\n", t->eval_every, t->threads);

    if (implicit) {
        sb_add(&b, "losses:\n");
        for (int j = 0; j < r->stages[0].n_losses; j++)
            print_loss(&b, r, &r->stages[0].losses[j], "  ");
    } else {
        sb_add(&b, "stages:\n");
        for (int i = 0; i < r->n_stages; i++) {
            const recipe_stage *st = &r->stages[i];
            sb_add(&b, "  - epochs: %d\n", st->epochs);
            if (st->train_until) {
                sb_add(&b, "    train_until: ");
                if (r->n_models > 1)
                    sb_end(&b, r->models[st->until_model].name, st->train_until);
                else
                    sb_quoted(&b, st->train_until);
                sb_add(&b, "\n");
            }
            sb_add(&b, "    losses:\n");
            for (int j = 0; j < st->n_losses; j++) print_loss(&b, r, &st->losses[j], "      ");
        }
    }
    return b.s;
}

xd_status recipe_save(const recipe *r, const char *path, xd_err *e)
{
    char *text = recipe_to_yaml(r);
    io_atomic w;
    xd_status s = io_atomic_open(&w, path, e);
    if (s != XD_OK) {
        free(text);
        return s;
    }
    s = io_atomic_write(&w, text, strlen(text), e);
    if (s == XD_OK) s = io_atomic_commit(&w, e);
    if (s != XD_OK) io_atomic_abort(&w);
    free(text);
    return s;
}

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
    return name_index(recipe_resume_keys, recipe_n_resume_keys, path) >= 0;
}

/* The line of text that starts at p, cut at its end, for a message. */
static int line_len(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? (int)(nl - p) : (int)strlen(p);
}

xd_status recipe_check_resume(const recipe *given, const recipe *stored, xd_err *e)
{
    /* compared as effective recipes, the resume keys taken from the given one */
    recipe same = *stored;
    for (int i = 0; i < recipe_n_resume_keys; i++)
        memcpy((char *)&same + resume_key_offsets[i], (const char *)given + resume_key_offsets[i],
               sizeof(int));
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
