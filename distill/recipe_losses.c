/* Recipe losses (see recipe.h, docs/RECIPES.md): which keys each loss kind takes, binding a stage's
 * loss items and their ends (from, to, taps, heads), and the checks that need the whole recipe
 * (every teacher used, losses that suit the task, something to learn from). */
#include "distill/recipe_bind.h"

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
#include "io/file.h"
#include "io/yaml.h"
#include "nn/model.h"

#include "align/densemap.h"
#include "distill/crd.h"
#include "distill/zoo.h"
#include "modalities/image/augment.h"

static const char *const stage_keys[] = {"epochs", "losses", "train_until"};

#define BIT(k) (1u << (k))
#define ALL_LOSSES (BIT(RECIPE_LOSS_COUNT) - 1u)
#define TEACHER_LOSSES (ALL_LOSSES & ~BIT(RECIPE_LOSS_CE) & ~BIT(RECIPE_LOSS_RATIONALE))
#define LOGIT_LOSSES (BIT(RECIPE_LOSS_KD) | BIT(RECIPE_LOSS_HINTON))
#define TAP_LOSSES                                                                                 \
    (BIT(RECIPE_LOSS_FEATURE) | BIT(RECIPE_LOSS_HINT) | BIT(RECIPE_LOSS_ATTENTION) |               \
     BIT(RECIPE_LOSS_CONTRASTIVE))
#define PROJ_LOSSES (BIT(RECIPE_LOSS_FEATURE) | BIT(RECIPE_LOSS_HINT) | BIT(RECIPE_LOSS_CONTRASTIVE))
/* the standard methods that read one tap per side (FSP reads two: student_taps, teacher_taps) */
#define ZOO_TAP_LOSSES                                                                             \
    (BIT(RECIPE_LOSS_RKD) | BIT(RECIPE_LOSS_SP) | BIT(RECIPE_LOSS_PKT) | BIT(RECIPE_LOSS_CC) |     \
     BIT(RECIPE_LOSS_NST) | BIT(RECIPE_LOSS_VID) | BIT(RECIPE_LOSS_CRD) | BIT(RECIPE_LOSS_AB) |    \
     BIT(RECIPE_LOSS_OFD))
/* a projector on the student's side: cc's when the widths differ, vid's regressor, the
 * connector of ab and ofd */
#define ZOO_PROJ_LOSSES                                                                            \
    (BIT(RECIPE_LOSS_CC) | BIT(RECIPE_LOSS_VID) | BIT(RECIPE_LOSS_AB) | BIT(RECIPE_LOSS_OFD))


const char *const rb_loss_key_names[LK_COUNT] = {
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
    [LK_BETA] = "beta",
    [LK_DISTANCE_WEIGHT] = "distance_weight",
    [LK_ANGLE_WEIGHT] = "angle_weight",
    [LK_INIT_VAR] = "init_var",
    [LK_EMBED_DIM] = "embed_dim",
    [LK_NEGATIVES] = "negatives",
    [LK_MOMENTUM] = "momentum",
    [LK_MARGIN] = "margin",
    [LK_STUDENT_TAPS] = "student_taps",
    [LK_TEACHER_TAPS] = "teacher_taps",
    [LK_TEACHERS] = "teachers",
    [LK_COMBINE] = "combine",
    [LK_WEIGHTS] = "weights",
    [LK_ENTROPY_TAU] = "entropy_tau",
    [LK_CLASS_WEIGHT] = "class_weight",
    [LK_HIDDEN] = "hidden",
    [LK_EMBED] = "embed",
    [LK_MAX_LEN] = "max_len",
    [LK_MAX_WORDS] = "max_words",
};
static_assert(COUNT_OF(rb_loss_key_names) == LK_COUNT, "name every loss key");

static const unsigned loss_key_kinds[LK_COUNT] = {
    [LK_KIND] = ALL_LOSSES,
    [LK_WEIGHT] = ALL_LOSSES,
    [LK_TEACHER] = TEACHER_LOSSES,
    [LK_TEMPERATURE] = LOGIT_LOSSES | BIT(RECIPE_LOSS_DENSE) | BIT(RECIPE_LOSS_CONTRASTIVE) |
                       BIT(RECIPE_LOSS_DKD) | BIT(RECIPE_LOSS_CRD),
    [LK_ALPHA] = BIT(RECIPE_LOSS_HINTON) | BIT(RECIPE_LOSS_DKD),
    [LK_HEAD] = BIT(RECIPE_LOSS_CE) | LOGIT_LOSSES | BIT(RECIPE_LOSS_DENSE) | BIT(RECIPE_LOSS_DKD),
    [LK_TEACHER_HEAD] = LOGIT_LOSSES | BIT(RECIPE_LOSS_DENSE) | BIT(RECIPE_LOSS_DKD),
    [LK_STUDENT_TAP] = TAP_LOSSES | ZOO_TAP_LOSSES | BIT(RECIPE_LOSS_RATIONALE),
    [LK_TEACHER_TAP] = TAP_LOSSES | ZOO_TAP_LOSSES,
    [LK_METRIC] = BIT(RECIPE_LOSS_FEATURE),
    [LK_PROJECTOR] = PROJ_LOSSES | ZOO_PROJ_LOSSES,
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
    [LK_BETA] = BIT(RECIPE_LOSS_DKD),
    [LK_DISTANCE_WEIGHT] = BIT(RECIPE_LOSS_RKD),
    [LK_ANGLE_WEIGHT] = BIT(RECIPE_LOSS_RKD),
    [LK_INIT_VAR] = BIT(RECIPE_LOSS_VID),
    [LK_EMBED_DIM] = BIT(RECIPE_LOSS_CRD),
    [LK_NEGATIVES] = BIT(RECIPE_LOSS_CRD),
    [LK_MOMENTUM] = BIT(RECIPE_LOSS_CRD),
    [LK_MARGIN] = BIT(RECIPE_LOSS_AB),
    [LK_STUDENT_TAPS] = BIT(RECIPE_LOSS_FSP),
    [LK_TEACHER_TAPS] = BIT(RECIPE_LOSS_FSP),
    [LK_TEACHERS] = LOGIT_LOSSES,
    [LK_COMBINE] = LOGIT_LOSSES,
    [LK_WEIGHTS] = LOGIT_LOSSES,
    [LK_ENTROPY_TAU] = LOGIT_LOSSES,
    [LK_CLASS_WEIGHT] = BIT(RECIPE_LOSS_CE) | LOGIT_LOSSES,
    [LK_HIDDEN] = BIT(RECIPE_LOSS_RATIONALE),
    [LK_EMBED] = BIT(RECIPE_LOSS_RATIONALE),
    [LK_MAX_LEN] = BIT(RECIPE_LOSS_RATIONALE),
    [LK_MAX_WORDS] = BIT(RECIPE_LOSS_RATIONALE),
};
static_assert(COUNT_OF(loss_key_kinds) == LK_COUNT, "give every loss key its kinds");

int rb_applies(loss_key k, recipe_loss_kind kind)
{
    return (loss_key_kinds[k] & BIT(kind)) != 0;
}

int recipe_loss_needs_teacher(recipe_loss_kind k)
{
    return k >= 0 && k < RECIPE_LOSS_COUNT && rb_applies(LK_TEACHER, k);
}

int recipe_loss_reads_teacher(const recipe_loss *l, int t)
{
    if (l->teacher == t) return 1;
    for (int i = 0; i < l->n_members; i++)
        if (l->members[i].teacher == t) return 1;
    return 0;
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
/* The standard methods' published defaults (distill/zoo.h, distill/crd.h): DKD's alpha and beta
 * (mdistiller), RKD's weights, AB's margin. Most CRD negatives and embedding width a recipe may
 * ask for. */
#define DKD_ALPHA 1.0f
#define DKD_BETA 8.0f
#define RKD_DISTANCE_WEIGHT 25.0f
#define RKD_ANGLE_WEIGHT 50.0f
#define AB_MARGIN 1.0f
#define CRD_MAX_NEGATIVES (1 << 24)
#define CRD_MAX_DIM 65536
/* A rationale decoder's defaults: a GRU of 128 over 64-wide word embeddings, rationales of up
 * to 23 words and the end token, the 4000 most frequent words; and the largest it may be. */
#define RATIONALE_HIDDEN 128
#define RATIONALE_EMBED 64
#define RATIONALE_MAX_LEN 24
#define RATIONALE_MAX_WORDS 4000
#define RATIONALE_MAX_WIDTH 65536
#define RATIONALE_MAX_TOKENS 1024
/* Most entries of a label_map list (the teacher's class count). */
#define MAX_LABEL_TABLE 100000

/* projector_init, projector_frozen, learn_temperature, label_map: the alignment keys. */
static xd_status bind_align_keys(binder *b, io_yaml_node *it, recipe_loss *l)
{
    int v = l->projector_init;
    xd_status s = rb_get_enum(b, it, "projector_init", recipe_proj_init_names, RECIPE_INIT_COUNT, &v);
    if (s != XD_OK) return s;
    l->projector_init = v;
    if ((s = io_yaml_get_bool(b->d, it, "projector_frozen", &l->projector_frozen, b->e)) != XD_OK)
        return s;
    io_yaml_node *n = rb_present(b, it, "projector_frozen");
    if (n && l->projector_frozen && l->projector_init == RECIPE_INIT_RANDOM)
        return rb_bad(b, n, "a frozen projector needs projector_init: procrustes or cca (a fixed "
                         "random map teaches nothing)");
    if (n && l->projector == RECIPE_PROJ_NONE)
        return rb_bad(b, n, "there is no projector (projector: none)");
    if ((s = io_yaml_get_bool(b->d, it, "learn_temperature", &l->learn_temperature, b->e)))
        return s;
    n = rb_present(b, it, "label_map");
    if (!n) return XD_OK;
    return rb_bind_label_map(b, n, &l->label_map, &l->label_table, &l->n_label_table);
}

xd_status rb_bind_label_map(binder *b, io_yaml_node *n, char **map, int32_t **table, int *n_table)
{
    char q[XD_EXCERPT_BUF]; /* input quoted in a message */
    xd_status s;
    io_yaml_mark_tree(n);
    if (n->kind == IO_YAML_SCALAR) {
        if (strcmp(n->str, "label") != 0 &&
            (strncmp(n->str, "label.", 6) != 0 || !rb_word_ok(n->str + 6, "-_")))
            return rb_bad(b, n, "'%s': expected a label section of the data set (label or "
                             "label.NAME) or a list of student classes", xd_excerpt(n->str, q));
        *map = xd_xstrdup(n->str);
        return XD_OK;
    }
    if ((s = rb_need_kind(b, n, IO_YAML_SEQUENCE, "label.NAME or a list of student classes")))
        return s;
    if (n->n < 1 || n->n > MAX_LABEL_TABLE)
        return rb_bad(b, n, "%d entries; a label map lists 1 to %d teacher classes", n->n,
                   MAX_LABEL_TABLE);
    *table = xd_xmalloc(sizeof(int32_t) * (size_t)n->n);
    *n_table = n->n;
    for (int i = 0; i < n->n; i++) {
        int c;
        if ((s = io_yaml_as_int(b->d, n->items[i], 0, INT_MAX, &c, b->e)) != XD_OK) return s;
        (*table)[i] = c;
    }
    return XD_OK;
}

/* fsp's student_taps or teacher_taps: two node names, the lower map first. */
static xd_status bind_tap_pair(binder *b, io_yaml_node *it, const char *key, int model,
                               char *out[2])
{
    io_yaml_node *n;
    xd_status s = io_yaml_require(b->d, it, key, &n, b->e);
    if (s != XD_OK) return s;
    io_yaml_mark_tree(n);
    if ((s = rb_need_kind(b, n, IO_YAML_SEQUENCE, "a list of two nodes [LOWER, UPPER]")))
        return s;
    if (n->n != 2)
        return rb_bad(b, n, "%d nodes; fsp compares two maps of each network: [LOWER, UPPER]",
                      n->n);
    for (int k = 0; k < 2; k++) {
        io_yaml_node *v = n->items[k];
        if ((s = rb_need_kind(b, v, IO_YAML_SCALAR, "a node name")) != XD_OK) return s;
        if (model >= 0 && (s = rb_check_model_node(b, v, model, v->str)) != XD_OK) return s;
        if (model < 0 && !rb_word_ok(v->str, "-_."))
            return rb_bad(b, v, "'%s' is not a node name", v->str);
        out[k] = xd_xstrdup(v->str);
    }
    return XD_OK;
}

/* The keys of the standard methods (each only applies to its kind, checked before). */
static xd_status bind_zoo_keys(binder *b, io_yaml_node *it, recipe_loss *l)
{
    xd_status s;
    if ((s = rb_get_float(b, it, "beta", R_GE0, &l->beta)) != XD_OK) return s;
    if ((s = rb_get_float(b, it, "distance_weight", R_GE0, &l->distance_weight))) return s;
    if ((s = rb_get_float(b, it, "angle_weight", R_GE0, &l->angle_weight))) return s;
    if ((s = rb_get_float(b, it, "init_var", R_GT0, &l->init_var)) != XD_OK) return s;
    if ((s = rb_get_float(b, it, "margin", R_GE0, &l->margin)) != XD_OK) return s;
    if ((s = io_yaml_get_int(b->d, it, "embed_dim", 1, CRD_MAX_DIM, &l->embed_dim, b->e)))
        return s;
    if ((s = io_yaml_get_int(b->d, it, "negatives", 1, CRD_MAX_NEGATIVES, &l->negatives, b->e)))
        return s;
    if ((s = rb_get_float(b, it, "momentum", R_UNIT, &l->momentum)) != XD_OK) return s;
    io_yaml_node *n = rb_present(b, it, "momentum");
    if (n && l->momentum >= 1.0f)
        return rb_bad(b, n, "must be below 1 (a momentum of 1 never moves the bank)");
    if (l->kind != RECIPE_LOSS_FSP) return XD_OK;
    if (l->head || l->teacher_head)
        return rb_bad(b, it, "fsp names its nodes in student_taps and teacher_taps (to and from "
                             "name the models only)");
    if ((s = bind_tap_pair(b, it, "student_taps", l->model, l->student_taps)) != XD_OK) return s;
    return bind_tap_pair(b, it, "teacher_taps", l->from_model, l->teacher_taps);
}

/* The keys of a rationale loss (each only applies to that kind, checked before). */
static xd_status bind_rationale_keys(binder *b, io_yaml_node *it, recipe_loss *l)
{
    xd_status s;
    if ((s = io_yaml_get_int(b->d, it, "hidden", 1, RATIONALE_MAX_WIDTH, &l->hidden, b->e)))
        return s;
    if ((s = io_yaml_get_int(b->d, it, "embed", 1, RATIONALE_MAX_WIDTH, &l->embed, b->e)))
        return s;
    if ((s = io_yaml_get_int(b->d, it, "max_len", 2, RATIONALE_MAX_TOKENS, &l->max_len, b->e)))
        return s;
    return io_yaml_get_int(b->d, it, "max_words", 1, 1 << 20, &l->max_words, b->e);
}

/* The keys of a dense loss (each only applies to that kind, checked before). */
static xd_status bind_dense_keys(binder *b, io_yaml_node *it, recipe_loss *l)
{
    int v = l->windows;
    xd_status s = rb_get_enum(b, it, "windows", recipe_windows_names, RECIPE_WINDOWS_COUNT, &v);
    if (s != XD_OK) return s;
    l->windows = v;
    if ((s = io_yaml_get_int(b->d, it, "stride", 1, DENSE_MAX_STRIDE, &l->stride, b->e)))
        return s;
    io_yaml_node *n = rb_present(b, it, "stride");
    if (n && l->windows != RECIPE_WINDOWS_GRID)
        return rb_bad(b, n, "only applies to windows: grid (blobs and boxes follow the items)");
    if ((s = rb_get_enum(b, it, "weighting", align_dense_weight_names, ALIGN_DENSE_WEIGHT_COUNT,
                      &l->weighting)))
        return s;
    if ((s = rb_get_float(b, it, "min_conf", R_UNIT, &l->min_conf)) != XD_OK) return s;
    if ((s = rb_get_float(b, it, "threshold", R_GE0, &l->threshold)) != XD_OK) return s;
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
        rb_name_list(names, r->n_models, models, sizeof models);
        for (int i = 0; i < r->n_teachers; i++) names[i] = r->teachers[i].name;
        rb_name_list(names, r->n_teachers, teachers, sizeof teachers);
        return rb_bad(b, n, "'%s' names no model or teacher (models: %s; teachers: %s)", text, models,
                   r->n_teachers ? teachers : "none");
    }
    /* only the one-student form lets a teacher share its model's name ("student") */
    for (int i = 0; i < r->n_teachers && *model >= 0; i++)
        if (strlen(r->teachers[i].name) == best && strncmp(text, r->teachers[i].name, best) == 0)
            return rb_bad(b, n, "'%s' names both the student and teacher '%s' (rename the teacher)",
                          text, r->teachers[i].name);
    *node = NULL;
    if (text[best] == '.') {
        if (!rb_word_ok(text + best + 1, "-_.")) return rb_bad(b, n, "'%s' is not a node name", text + best + 1);
        *node = xd_xstrdup(text + best + 1);
    }
    return XD_OK;
}

/* Which end of a tap loss or logit loss a node key fills. */
static char **end_node(recipe_loss *l, int from)
{
    const int tap = rb_applies(LK_STUDENT_TAP, l->kind);
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
        for (int k = 1; k < 4 && clash[e][k] && rb_present(b, it, clash[e][0]); k++) {
            io_yaml_node *n = rb_present(b, it, clash[e][k]);
            if (!n) continue;
            io_yaml_mark_used(n);
            return rb_bad(b, n, "give %s or %s, not both", clash[e][0], clash[e][k]);
        }
    io_yaml_node *n;
    char *text = NULL, *node = NULL;
    int model, teacher;
    xd_status s = rb_get_string(b, it, "model", NULL, &text, &n);
    if (s == XD_OK && text) {
        if ((s = resolve_end(b, n, text, &model, &teacher, &node)) == XD_OK && model < 0)
            s = rb_bad(b, n, "'%s' is a teacher; ce trains a model of the recipe", text);
        if (s == XD_OK && node)
            s = rb_bad(b, n, "'%s': a model's name, without a node (head names the node)", text);
        l->model = model;
        free(node);
    }
    free(text);
    text = NULL;
    if (s == XD_OK) s = rb_get_string(b, it, "to", NULL, &text, &n);
    if (s == XD_OK && text) {
        if ((s = resolve_end(b, n, text, &model, &teacher, &node)) == XD_OK && model < 0)
            s = rb_bad(b, n, "'%s' is a teacher; the end that learns is a trainable model", text);
        if (s == XD_OK && node) s = rb_check_model_node(b, n, model, node);
        if (s == XD_OK && !node && rb_applies(LK_STUDENT_TAP, l->kind))
            s = rb_bad(b, n, "kind '%s' needs a node: MODEL.NODE", kname);
        l->model = model;
        char **at = end_node(l, 0);
        free(*at);
        *at = node;
    }
    free(text);
    text = NULL;
    io_yaml_node *fn = NULL;
    if (s == XD_OK) s = rb_get_string(b, it, "from", NULL, &text, &fn);
    if (s == XD_OK && text) {
        if ((s = resolve_end(b, fn, text, &model, &teacher, &node)) == XD_OK && model >= 0 && node)
            s = rb_check_model_node(b, fn, model, node);
        if (s == XD_OK && !node && rb_applies(LK_TEACHER_TAP, l->kind))
            s = rb_bad(b, fn, "kind '%s' needs a node: NAME.NODE", kname);
        if (s == XD_OK && model >= 0 && l->kind == RECIPE_LOSS_DENSE)
            s = rb_bad(b, fn, "a dense loss reads a teacher's windows; '%s' is a trainable model",
                    text);
        l->from_model = model;
        l->teacher = teacher;
        char **at = end_node(l, 1);
        free(*at);
        *at = node;
    }
    free(text);
    if (s == XD_OK && rb_applies(LK_TEACHERS, l->kind)) s = rb_bind_ensemble(b, it, fn, l);
    if (s != XD_OK) return s;
    if (rb_applies(LK_TEACHER, l->kind) && !fn && !l->n_members) {
        char *tname = NULL;
        if ((s = rb_get_string(b, it, "teacher", NULL, &tname, &n)) != XD_OK) return s;
        if (tname) {
            s = rb_find_teacher(b, n, tname, &l->teacher);
            free(tname);
            if (s != XD_OK) return s;
        } else if (r->n_teachers == 1) {
            l->teacher = 0;
        } else if (r->n_teachers == 0) {
            return rb_bad(b, it, "kind '%s' needs a teacher, and the recipe lists none%s", kname,
                       r->listed ? " (or 'from' naming another model)" : "");
        } else {
            return rb_bad(b, it, "kind '%s' needs 'teacher': the recipe lists %d teachers", kname,
                       r->n_teachers);
        }
    }
    if ((s = io_yaml_get_bool(b->d, it, "detach", &l->detach, b->e)) != XD_OK) return s;
    if (!l->detach && l->teacher >= 0)
        return rb_bad(b, rb_present(b, it, "detach"), "teacher '%s' is frozen: detach: false needs a "
                   "trainable model at the from end", r->teachers[l->teacher].name);
    return XD_OK;
}

/* A loss whose from end is the model that learns (self-distillation: a deep exit teaching a
 * shallow one) reads two different nodes of it; one node cannot be its own target. */
static xd_status check_self_end(binder *b, io_yaml_node *it, recipe_loss *l)
{
    if (l->from_model < 0 || l->from_model != l->model) return XD_OK;
    const nn_model *m = &b->nets[l->model];
    const char *to = *end_node(l, 0), *from = *end_node(l, 1);
    const int ti = to ? nn_model_find(m, to) : nn_model_default_head(m);
    const int fi = from ? nn_model_find(m, from) : nn_model_default_head(m);
    if (ti != fi) return XD_OK;
    io_yaml_node *fn = rb_present(b, it, "from");
    return rb_bad(b, fn, "'%s' is the end that learns too; from and to are different models or "
                         "different nodes of one", fn->str);
}

static xd_status bind_loss(binder *b, io_yaml_node *it, recipe_loss *l)
{
    xd_status s;
    io_yaml_node *n;
    io_yaml_mark_used(it);
    if ((s = rb_need_kind(b, it, IO_YAML_MAPPING, "a mapping (kind, weight, ...)")) != XD_OK)
        return s;
    if ((s = io_yaml_check_keys(b->d, it, rb_loss_key_names, LK_COUNT, b->e)) != XD_OK) return s;
    if ((s = io_yaml_require(b->d, it, "kind", &n, b->e)) != XD_OK) return s;
    int kind = 0;
    if ((s = rb_get_enum(b, it, "kind", recipe_loss_kind_names, RECIPE_LOSS_COUNT, &kind)))
        return s;
    *l = (recipe_loss){.kind = kind, .weight = 1.0f, .teacher = -1, .from_model = -1, .detach = 1,
                       .temperature = kind == RECIPE_LOSS_DENSE         ? DENSE_TEMPERATURE
                                      : kind == RECIPE_LOSS_CONTRASTIVE ? CONTRASTIVE_TEMPERATURE
                                      : kind == RECIPE_LOSS_CRD         ? (float)KD_CRD_T
                                                                        : DEFAULT_TEMPERATURE,
                       .alpha = kind == RECIPE_LOSS_DKD ? DKD_ALPHA : DEFAULT_ALPHA,
                       .beta = DKD_BETA, .distance_weight = RKD_DISTANCE_WEIGHT,
                       .angle_weight = RKD_ANGLE_WEIGHT, .init_var = (float)KD_VID_INIT_VAR,
                       .embed_dim = KD_CRD_DIM, .negatives = KD_CRD_NEGATIVES,
                       .momentum = (float)KD_CRD_MOMENTUM, .margin = AB_MARGIN,
                       .windows = RECIPE_WINDOWS_BLOBS,
                       .stride = DENSE_STRIDE, .weighting = ALIGN_DENSE_CONFIDENCE,
                       .threshold = DENSE_THRESHOLD, .hidden = RATIONALE_HIDDEN,
                       .embed = RATIONALE_EMBED, .max_len = RATIONALE_MAX_LEN,
                       .max_words = RATIONALE_MAX_WORDS, .line = io_yaml_key_line(it)};
    const char *kname = recipe_loss_kind_names[kind];
    for (int i = 0; i < it->n; i++) {
        int k = rb_name_index(rb_loss_key_names, LK_COUNT, it->pairs[i].key);
        XD_ASSERT(k >= 0); /* io_yaml_check_keys passed */
        if (rb_applies(k, l->kind)) continue;
        const char *only[RECIPE_LOSS_COUNT];
        int n_only = 0;
        for (int j = 0; j < RECIPE_LOSS_COUNT; j++)
            if (rb_applies(k, j)) only[n_only++] = recipe_loss_kind_names[j];
        char list[128];
        io_yaml_mark_used(it->pairs[i].value);
        return rb_bad(b, it->pairs[i].value, "does not apply to kind '%s' (only to %s)", kname,
                   rb_name_list(only, n_only, list, sizeof list));
    }

    if ((s = rb_get_float(b, it, "weight", R_GE0, &l->weight)) != XD_OK) return s;
    if ((s = bind_ends(b, it, l)) != XD_OK) return s;
    if ((s = rb_get_float(b, it, "temperature", R_GT0, &l->temperature)) != XD_OK) return s;
    if ((s = rb_get_float(b, it, "alpha", kind == RECIPE_LOSS_DKD ? R_GE0 : R_UNIT, &l->alpha)))
        return s;
    /* `to` and `from` give the nodes themselves; head, student_tap, teacher_head and teacher_tap
     * are the one-student form's spelling of the same */
    const int to = rb_present(b, it, "to") != NULL, from = rb_present(b, it, "from") != NULL;
    if (!to) {
        if ((s = rb_get_string(b, it, "head", NULL, &l->head, &n)) != XD_OK) return s;
        if (l->head && (s = rb_check_model_node(b, n, l->model, l->head)) != XD_OK) return s;
    }
    if (!from) {
        if ((s = rb_get_string(b, it, "teacher_head", NULL, &l->teacher_head, &n)) != XD_OK) return s;
        if (l->teacher_head && !rb_word_ok(l->teacher_head, "-_."))
            return rb_bad(b, n, "'%s' is not a node name", l->teacher_head);
    }
    if (rb_applies(LK_STUDENT_TAP, l->kind) && !to) {
        if ((s = io_yaml_require(b->d, it, "student_tap", &n, b->e)) != XD_OK) return s;
        if ((s = rb_get_string(b, it, "student_tap", NULL, &l->student_tap, &n)) != XD_OK) return s;
        if ((s = rb_check_model_node(b, n, l->model, l->student_tap)) != XD_OK) return s;
    }
    if (rb_applies(LK_TEACHER_TAP, l->kind) && !from) {
        if ((s = io_yaml_require(b->d, it, "teacher_tap", &n, b->e)) != XD_OK) return s;
        if ((s = rb_get_string(b, it, "teacher_tap", NULL, &l->teacher_tap, &n)) != XD_OK) return s;
        if (!rb_word_ok(l->teacher_tap, "-_."))
            return rb_bad(b, n, "'%s' is not a node name", l->teacher_tap);
    }
    int v = l->metric;
    if ((s = rb_get_enum(b, it, "metric", recipe_metric_names, RECIPE_METRIC_COUNT, &v))) return s;
    l->metric = v;
    v = l->class_weight;
    if ((s = rb_get_enum(b, it, "class_weight", recipe_class_weight_names,
                         RECIPE_CLASS_WEIGHT_COUNT, &v)))
        return s;
    l->class_weight = v;
    v = l->projector;
    if ((s = rb_get_enum(b, it, "projector", recipe_projector_names, RECIPE_PROJ_COUNT, &v)))
        return s;
    l->projector = v;
    if ((s = bind_align_keys(b, it, l)) != XD_OK) return s;
    if ((s = bind_zoo_keys(b, it, l)) != XD_OK) return s;
    if ((s = bind_dense_keys(b, it, l)) != XD_OK) return s;
    if ((s = bind_rationale_keys(b, it, l)) != XD_OK) return s;
    return check_self_end(b, it, l);
}

static xd_status bind_losses(binder *b, io_yaml_node *list, recipe_stage *st)
{
    io_yaml_mark_used(list);
    xd_status s = rb_need_kind(b, list, IO_YAML_SEQUENCE, "a list of losses");
    if (s != XD_OK) return s;
    if (list->n == 0) return rb_bad(b, list, "the list of losses is empty");
    if (list->n > RECIPE_MAX_LOSSES)
        return rb_bad(b, list, "%d losses, more than the %d allowed", list->n, RECIPE_MAX_LOSSES);
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
    if (b->r->n_models == 1) return rb_check_model_node(b, n, 0, st->train_until);
    int model, teacher;
    char *node = NULL;
    xd_status s = resolve_end(b, n, st->train_until, &model, &teacher, &node);
    if (s == XD_OK && (model < 0 || !node))
        s = rb_bad(b, n, "'%s': with several models, train_until is MODEL.NODE", st->train_until);
    if (s == XD_OK) s = rb_check_model_node(b, n, model, node);
    if (s == XD_OK) {
        free(st->train_until);
        st->train_until = node;
        st->until_model = model;
    } else {
        free(node);
    }
    return s;
}

xd_status rb_bind_stages(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    io_yaml_node *stages = rb_present(b, root, "stages"), *n;
    io_yaml_node *train = rb_present(b, root, "train");
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
    if ((n = rb_present(b, train, "epochs"))) {
        io_yaml_mark_used(n);
        return rb_bad(b, n, "not allowed together with stages (each stage has its own epochs)");
    }
    if ((n = rb_present(b, root, "losses"))) {
        io_yaml_mark_used(n);
        return rb_bad(b, n, "not allowed together with stages (each stage lists its own losses)");
    }
    io_yaml_mark_used(stages);
    r->staged = 1;
    if ((s = rb_need_kind(b, stages, IO_YAML_SEQUENCE, "a list of stages")) != XD_OK) return s;
    if (stages->n == 0) return rb_bad(b, stages, "the list of stages is empty");
    if (stages->n > RECIPE_MAX_STAGES)
        return rb_bad(b, stages, "%d stages, more than the %d allowed", stages->n,
                   RECIPE_MAX_STAGES);
    r->stages = xd_xcalloc((size_t)stages->n, sizeof *r->stages);
    for (int i = 0; i < stages->n; i++) {
        io_yaml_node *it = stages->items[i];
        recipe_stage *st = &r->stages[i];
        r->n_stages = i + 1;
        io_yaml_mark_used(it);
        if ((s = rb_need_kind(b, it, IO_YAML_MAPPING, "a mapping (epochs, losses, train_until)")))
            return s;
        if ((s = io_yaml_check_keys(b->d, it, stage_keys, COUNT_OF(stage_keys), b->e)))
            return s;
        if ((s = io_yaml_require(b->d, it, "epochs", &n, b->e)) != XD_OK) return s;
        if ((s = io_yaml_as_int(b->d, n, 1, MAX_EPOCHS, &st->epochs, b->e)) != XD_OK) return s;
        if ((s = io_yaml_require(b->d, it, "losses", &n, b->e)) != XD_OK) return s;
        if ((s = bind_losses(b, n, st)) != XD_OK) return s;
        if ((s = rb_get_string(b, it, "train_until", NULL, &st->train_until, &n)) != XD_OK) return s;
        if (st->train_until && (s = bind_train_until(b, n, st)) != XD_OK) return s;
        if (r->train.epochs > MAX_EPOCHS - st->epochs)
            return rb_bad(b, it, "the stages add up to more than %d epochs", MAX_EPOCHS);
        r->train.epochs += st->epochs;
    }
    return XD_OK;
}

/* A teacher that no loss reads would cost a forward pass per step for nothing. */
xd_status rb_check_teachers_used(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    for (int t = 0; t < r->n_teachers; t++) {
        int used = 0;
        for (int i = 0; i < r->n_stages && !used; i++)
            for (int j = 0; j < r->stages[i].n_losses && !used; j++)
                used = recipe_loss_reads_teacher(&r->stages[i].losses[j], t);
        if (!used) {
            io_yaml_node *it = io_yaml_find(b->d, root, "teachers");
            return rb_bad(b, it->items[t], "no loss uses teacher '%s'", r->teachers[t].name);
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
    io_yaml_node *list = rb_present(b, root, "stages");
    list = list ? io_yaml_find(b->d, list->items[i], "losses") : io_yaml_find(b->d, root, "losses");
    return list->items[j];
}

xd_status rb_check_task(binder *b, io_yaml_node *root)
{
    recipe *r = b->r;
    const int seg = r->task == RECIPE_TASK_SEGMENT;
    if (seg && r->n_models > 1)
        return rb_bad(b, io_yaml_find(b->d, root, "models"), "task: segment trains one model");
    for (int i = 0; i < r->n_stages; i++)
        for (int j = 0; j < r->stages[i].n_losses; j++) {
            recipe_loss_kind k = r->stages[i].losses[j].kind;
            if (seg && r->stages[i].losses[j].class_weight != RECIPE_CLASS_WEIGHT_NONE)
                return rb_bad(b, io_yaml_find(b->d, loss_node(b, root, i, j), "class_weight"),
                              "does not apply to task: segment (the labels are per pixel)");
            const int bad_kind =
                seg ? (BIT(k) & (LOGIT_LOSSES | BIT(RECIPE_LOSS_DKD) | BIT(RECIPE_LOSS_RATIONALE))) != 0
                    : k == RECIPE_LOSS_DENSE;
            if (!bad_kind) continue;
            return rb_bad(b, loss_node(b, root, i, j), "kind '%s' %s", recipe_loss_kind_names[k],
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
        return rb_bad(b, n, "task: segment takes no random crops or flips (the masks would not "
                         "follow); keep normalisation only");
    if ((o.size_h && o.size_h != b->nets[0].h) || (o.size_w && o.size_w != b->nets[0].w))
        return rb_bad(b, n, "task: segment reads the scenes at the model's input size (%dx%d); a "
                         "resize would not move the masks", b->nets[0].h, b->nets[0].w);
    return XD_OK;
}

/* Checks across keys, so that a run never starts (and never clears an output folder) to fail on
 * what the recipe alone decides. */
xd_status rb_check_losses(binder *b, io_yaml_node *root)
{
    const recipe *r = b->r;
    for (int i = 0; i < r->n_stages; i++) {
        int teaches = 0;
        for (int j = 0; j < r->stages[i].n_losses; j++) {
            const recipe_loss *l = &r->stages[i].losses[j];
            teaches |= l->teacher >= 0 || l->from_model >= 0 || l->n_members > 0;
            if (l->from_model >= 0 && l->projector_init != RECIPE_INIT_RANDOM)
                return rb_bad(b, loss_node(b, root, i, j), "projector_init %s fits on a teacher's "
                           "taps; with another model at the from end it starts at random",
                           recipe_proj_init_names[l->projector_init]);
            if (!l->detach && (l->label_map || l->label_table))
                return rb_bad(b, loss_node(b, root, i, j), "detach: false does not combine with "
                           "label_map (the map's gradient is not sent back)");
            if (l->projector == RECIPE_PROJ_MLP && l->projector_init != RECIPE_INIT_RANDOM)
                return rb_bad(b, loss_node(b, root, i, j), "projector_init %s fits a linear map; an "
                           "mlp projector starts at random", recipe_proj_init_names[l->projector_init]);
            if (!l->detach && l->kind >= RECIPE_LOSS_DKD)
                return rb_bad(b, loss_node(b, root, i, j), "kind '%s' sends no gradient to the "
                           "from end (detach: false applies to the other kinds)",
                           recipe_loss_kind_names[l->kind]);
            if (l->kind == RECIPE_LOSS_RATIONALE && r->listed)
                return rb_bad(b, loss_node(b, root, i, j), "a rationale loss trains the one "
                           "student of a recipe with model: (not a models: list)");
            if (l->kind == RECIPE_LOSS_CONTRASTIVE && r->train.batch < 2)
                return rb_bad(b, loss_node(b, root, i, j), "a contrastive loss needs batches of 2 or "
                           "more (the other examples of a batch are its negatives); batch is %d",
                           r->train.batch);
        }
        if (r->data.label_fraction == 0.0f && r->data.labels_per_class == 0 && !teaches)
            return rb_bad(b, io_yaml_find(b->d, root, "data.label_fraction"),
                       "no label is kept, and %s has no loss that reads a teacher: nothing to "
                       "learn from", r->n_stages > 1 ? "a stage" : "the recipe");
    }
    return XD_OK;
}

