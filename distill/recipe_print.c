/* Recipe printing (see recipe.h): the effective recipe as YAML that parses back to the same
 * recipe, stored with every run and checkpoint. */
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

/* A label map's value: the label set's name, or the list of student classes. */
static void sb_label_map(sbuf *b, const char *map, const int32_t *table, int n)
{
    if (map) {
        sb_quoted(b, map);
        return;
    }
    sb_add(b, "[");
    for (int i = 0; i < n; i++) sb_add(b, "%s%d", i ? ", " : "", table[i]);
    sb_add(b, "]");
}

/* An ensemble's keys: teachers (each with its label map), combine and its settings. */
static void print_ensemble(sbuf *b, const recipe *r, const recipe_loss *l, const char *ind)
{
    char f[32];
    sb_add(b, "%s  teachers:\n", ind);
    for (int i = 0; i < l->n_members; i++) {
        const recipe_member *m = &l->members[i];
        sb_add(b, "%s    - {name: ", ind);
        sb_quoted(b, r->teachers[m->teacher].name);
        if (m->label_map || m->label_table) {
            sb_add(b, ", label_map: ");
            sb_label_map(b, m->label_map, m->label_table, m->n_label_table);
        }
        sb_add(b, "}\n");
    }
    sb_add(b, "%s  combine: %s\n", ind, recipe_combine_names[l->combine]);
    if (l->combine == RECIPE_COMBINE_WEIGHTS) {
        sb_add(b, "%s  weights: [", ind);
        for (int i = 0; i < l->n_members; i++)
            sb_add(b, "%s%s", i ? ", " : "", fmt_float(l->members[i].weight, f, sizeof f));
        sb_add(b, "]\n");
    }
    if (l->combine == RECIPE_COMBINE_ENTROPY)
        sb_add(b, "%s  entropy_tau: %s\n", ind, fmt_float(l->entropy_tau, f, sizeof f));
}

/* A loss's ends in the models: form: ce's model, else from (or an ensemble's teachers), to and
 * detach. */
static void print_ends(sbuf *b, const recipe *r, const recipe_loss *l, const char *ind)
{
    if (l->kind == RECIPE_LOSS_CE) {
        sb_add(b, "%s  model: ", ind);
        sb_quoted(b, r->models[l->model].name);
        sb_add(b, "\n");
        return;
    }
    const int tap = rb_applies(LK_STUDENT_TAP, l->kind);
    if (!l->n_members) {
        sb_add(b, "%s  from: ", ind);
        sb_end(b, l->from_model >= 0 ? r->models[l->from_model].name : r->teachers[l->teacher].name,
               tap ? l->teacher_tap : l->teacher_head);
        sb_add(b, "\n");
    } else if (l->teacher_head) { /* every member's node */
        sb_add(b, "%s  teacher_head: ", ind);
        sb_quoted(b, l->teacher_head);
        sb_add(b, "\n");
    }
    sb_add(b, "%s  to: ", ind);
    sb_end(b, r->models[l->model].name, tap ? l->student_tap : l->head);
    sb_add(b, "\n%s  detach: %s\n", ind, l->detach ? "true" : "false");
}

/* The standard methods' keys (each printed for the kinds it applies to). */
static void print_zoo_keys(sbuf *b, const recipe_loss *l, const char *ind)
{
    char f[32];
    const struct {
        loss_key key;
        float value;
    } floats[] = {{LK_BETA, l->beta},         {LK_DISTANCE_WEIGHT, l->distance_weight},
                  {LK_ANGLE_WEIGHT, l->angle_weight}, {LK_INIT_VAR, l->init_var},
                  {LK_MOMENTUM, l->momentum}, {LK_MARGIN, l->margin}};
    for (int i = 0; i < COUNT_OF(floats); i++)
        if (rb_applies(floats[i].key, l->kind))
            sb_add(b, "%s  %s: %s\n", ind, rb_loss_key_names[floats[i].key],
                   fmt_float(floats[i].value, f, sizeof f));
    if (rb_applies(LK_EMBED_DIM, l->kind))
        sb_add(b, "%s  embed_dim: %d\n%s  negatives: %d\n", ind, l->embed_dim, ind, l->negatives);
    if (!rb_applies(LK_STUDENT_TAPS, l->kind)) return;
    char *const *taps[2] = {l->student_taps, l->teacher_taps};
    for (int side = 0; side < 2; side++) {
        sb_add(b, "%s  %s: [", ind, rb_loss_key_names[side ? LK_TEACHER_TAPS : LK_STUDENT_TAPS]);
        sb_quoted(b, taps[side][0]);
        sb_add(b, ", ");
        sb_quoted(b, taps[side][1]);
        sb_add(b, "]\n");
    }
}

static void print_loss(sbuf *b, const recipe *r, const recipe_loss *l, const char *ind)
{
    char f[32];
    sb_add(b, "%s- kind: %s\n", ind, recipe_loss_kind_names[l->kind]);
    sb_add(b, "%s  weight: %s\n", ind, fmt_float(l->weight, f, sizeof f));
    /* the one-student form's loss whose from end is the student itself (self-distillation)
     * names that end: from carries its node, head or student_tap the other */
    const int self = !r->listed && l->from_model >= 0;
    if (r->listed) {
        print_ends(b, r, l, ind);
    } else if (self) {
        const int tap = rb_applies(LK_STUDENT_TAP, l->kind);
        sb_add(b, "%s  from: ", ind);
        sb_end(b, r->models[l->from_model].name, tap ? l->teacher_tap : l->teacher_head);
        sb_add(b, "\n%s  detach: %s\n", ind, l->detach ? "true" : "false");
    } else if (rb_applies(LK_TEACHER, l->kind) && l->teacher >= 0 && l->teacher < r->n_teachers) {
        sb_add(b, "%s  teacher: ", ind);
        sb_quoted(b, r->teachers[l->teacher].name);
        sb_add(b, "\n");
    }
    if (l->n_members) print_ensemble(b, r, l, ind);
    if (rb_applies(LK_TEMPERATURE, l->kind))
        sb_add(b, "%s  temperature: %s\n", ind, fmt_float(l->temperature, f, sizeof f));
    if (rb_applies(LK_ALPHA, l->kind))
        sb_add(b, "%s  alpha: %s\n", ind, fmt_float(l->alpha, f, sizeof f));
    const struct {
        loss_key key;
        const char *value;
    } strs[] = {{LK_HEAD, l->head},
                {LK_TEACHER_HEAD, l->teacher_head},
                {LK_STUDENT_TAP, l->student_tap},
                {LK_TEACHER_TAP, l->teacher_tap}};
    for (int i = 0; i < COUNT_OF(strs); i++) {
        if (!strs[i].value || !rb_applies(strs[i].key, l->kind)) continue;
        /* with a models: list the ends carry the nodes (ce keeps its head) */
        if (r->listed && !(strs[i].key == LK_HEAD && l->kind == RECIPE_LOSS_CE)) continue;
        if (self && (strs[i].key == LK_TEACHER_HEAD || strs[i].key == LK_TEACHER_TAP)) continue;
        sb_add(b, "%s  %s: ", ind, rb_loss_key_names[strs[i].key]);
        sb_quoted(b, strs[i].value);
        sb_add(b, "\n");
    }
    if (rb_applies(LK_METRIC, l->kind))
        sb_add(b, "%s  metric: %s\n", ind, recipe_metric_names[l->metric]);
    /* only when set: recipes that do not use it keep their text (and their checkpoints' bytes) */
    if (l->class_weight != RECIPE_CLASS_WEIGHT_NONE)
        sb_add(b, "%s  class_weight: %s\n", ind, recipe_class_weight_names[l->class_weight]);
    if (rb_applies(LK_PROJECTOR, l->kind))
        sb_add(b, "%s  projector: %s\n", ind, recipe_projector_names[l->projector]);
    if (rb_applies(LK_PROJECTOR_INIT, l->kind)) {
        sb_add(b, "%s  projector_init: %s\n", ind, recipe_proj_init_names[l->projector_init]);
        if (l->projector != RECIPE_PROJ_NONE)
            sb_add(b, "%s  projector_frozen: %s\n", ind, l->projector_frozen ? "true" : "false");
    }
    print_zoo_keys(b, l, ind);
    if (l->kind == RECIPE_LOSS_RATIONALE)
        sb_add(b, "%s  hidden: %d\n%s  embed: %d\n%s  max_len: %d\n%s  max_words: %d\n", ind,
               l->hidden, ind, l->embed, ind, l->max_len, ind, l->max_words);
    if (rb_applies(LK_LEARN_TEMPERATURE, l->kind))
        sb_add(b, "%s  learn_temperature: %s\n", ind, l->learn_temperature ? "true" : "false");
    if (l->label_map || l->label_table) {
        sb_add(b, "%s  label_map: ", ind);
        sb_label_map(b, l->label_map, l->label_table, l->n_label_table);
        sb_add(b, "\n");
    }
    if (rb_applies(LK_WINDOWS, l->kind)) {
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
    /* only when given, so that a recipe without them prints (and stores) what it always did */
    if (dt->val_fraction > 0.0f)
        sb_add(&b, "  val_fraction: %s\n", fmt_float(dt->val_fraction, f, sizeof f));
    if (dt->val) {
        sb_add(&b, "  val: ");
        sb_quoted(&b, dt->val);
        sb_add(&b, "\n");
    }
    if (dt->n_eval_sets) sb_add(&b, "  eval_sets:\n");
    for (int i = 0; i < dt->n_eval_sets; i++) {
        const recipe_eval_set *es = &dt->eval_sets[i];
        sb_add(&b, "    - name: ");
        sb_quoted(&b, es->name);
        sb_add(&b, "\n      path: ");
        sb_quoted(&b, es->path);
        sb_add(&b, "\n      split: ");
        sb_quoted(&b, es->split);
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
            if (m->init) {
                sb_add(&b, "\n    init: ");
                sb_quoted(&b, m->init);
            }
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
        if (r->models[0].init) {
            sb_add(&b, "init: ");
            sb_quoted(&b, r->models[0].init);
            sb_add(&b, "\n");
        }
    }

    if (r->quantize_ema > 0.0f) sb_add(&b, "quantize: {ema: %.9g}\n", (double)r->quantize_ema);
    if (r->prune.sparsity > 0.0f)
        sb_add(&b, "prune: {sparsity: %.9g, scope: %s, steps: %d, start_epoch: %d, end_epoch: %d}\n",
               (double)r->prune.sparsity, nn_prune_scope_names[r->prune.scope], r->prune.steps,
               r->prune.start_epoch, r->prune.end_epoch);
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
        if (t->precision != NN_PREC_FLOAT32) /* only when set: float32 recipes print as before */
            sb_add(&b, "    precision: %s\n", nn_precision_names[t->precision]);
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
    /* only when not the default, so the recipes (and checkpoints) of float32 runs stay as they were */
    if (t->precision != NN_PREC_FLOAT32)
        sb_add(&b, "  precision: %s\n", nn_precision_names[t->precision]);
    if (t->shuffle != RECIPE_SHUFFLE_STORED)
        sb_add(&b, "  shuffle: %s\n", recipe_shuffle_names[t->shuffle]);

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
