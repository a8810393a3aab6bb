/* The optimizers' and learning-rate schedules' key=value configuration (see optim.h): the kinds'
 * names, a table of keys (type, field, range, the kinds that use each), and checking, setting,
 * parsing and formatting a configuration through it. */
#include "nn/optim.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------------------------
// names (sized by their initialisers, so the static_asserts catch a missing name)

const char *const nn_opt_kind_names[] = {"sgd", "adamw"};
static_assert(sizeof nn_opt_kind_names / sizeof nn_opt_kind_names[0] == NN_OPT_COUNT,
              "optimizer name table out of date");

const char *const nn_sched_kind_names[] = {"constant", "step", "cosine", "linear"};
static_assert(sizeof nn_sched_kind_names / sizeof nn_sched_kind_names[0] == NN_SCHED_COUNT,
              "schedule name table out of date");

/* "a, b, c" into buf, for messages that list the valid words. */
static const char *join_names(const char *const *names, int n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

static int name_index(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

static xd_status kind_from_name(const char *what, const char *const *names, int n,
                                const char *name, int *out, xd_err *e)
{
    int i = name ? name_index(names, n, name) : -1;
    if (i < 0) {
        char list[256], q[XD_EXCERPT_BUF];
        return xd_fail(e, XD_EARG, "unknown %s '%s' (valid: %s)", what,
                       name ? xd_excerpt(name, q) : "(null)",
                       join_names(names, n, list, sizeof list));
    }
    *out = i;
    return XD_OK;
}

xd_status nn_opt_kind_from_name(const char *name, nn_opt_kind *out, xd_err *e)
{
    int k = 0;
    xd_status s = kind_from_name("optimizer", nn_opt_kind_names, NN_OPT_COUNT, name, &k, e);
    if (s == XD_OK) *out = (nn_opt_kind)k;
    return s;
}

xd_status nn_sched_kind_from_name(const char *name, nn_sched_kind *out, xd_err *e)
{
    int k = 0;
    xd_status s = kind_from_name("schedule", nn_sched_kind_names, NN_SCHED_COUNT, name, &k, e);
    if (s == XD_OK) *out = (nn_sched_kind)k;
    return s;
}

// ----------------------------------------------------------------------------------------------
// configuration tables: key name -> type -> field offset, range, and the kinds that use it

typedef enum { KEY_KIND, KEY_FLOAT, KEY_LONG, KEY_BOOL } key_type;

typedef struct {
    const char *name;
    key_type type;
    size_t offset;
    double lo, hi;        /* allowed range of numbers */
    int lo_open, hi_open; /* 1: the bound itself is excluded */
    unsigned kinds;       /* bit k set: kind k uses this key */
} cfg_key;

typedef struct {
    const char *what; /* "optimizer", "schedule" */
    const cfg_key *keys;
    int n_keys;
    const char *const *kind_names;
    int n_kinds;
    int (*get_kind)(const void *cfg);
    void (*reset)(void *cfg, int kind); /* defaults of that kind */
} cfg_schema;

#define ALL_KINDS 0xffffffffu
#define BIT(k) (1u << (k))

static const cfg_key opt_keys[] = {
    {"kind", KEY_KIND, offsetof(nn_opt_config, kind), 0, 0, 0, 0, ALL_KINDS},
    {"lr", KEY_FLOAT, offsetof(nn_opt_config, lr), 0, INFINITY, 0, 1, ALL_KINDS},
    /* momentum 1 or more never forgets a gradient: the buffer grows without bound */
    {"momentum", KEY_FLOAT, offsetof(nn_opt_config, momentum), 0, 1, 0, 1, BIT(NN_OPT_SGD)},
    {"weight_decay", KEY_FLOAT, offsetof(nn_opt_config, weight_decay), 0, INFINITY, 0, 1,
     ALL_KINDS},
    /* beta = 1 makes the bias correction 1 - beta^t zero */
    {"beta1", KEY_FLOAT, offsetof(nn_opt_config, beta1), 0, 1, 0, 1, BIT(NN_OPT_ADAMW)},
    {"beta2", KEY_FLOAT, offsetof(nn_opt_config, beta2), 0, 1, 0, 1, BIT(NN_OPT_ADAMW)},
    /* eps = 0 turns a parameter that never sees a gradient into 0/0 = NaN */
    {"eps", KEY_FLOAT, offsetof(nn_opt_config, eps), 0, INFINITY, 1, 1, BIT(NN_OPT_ADAMW)},
    {"nesterov", KEY_BOOL, offsetof(nn_opt_config, nesterov), 0, 1, 0, 0, BIT(NN_OPT_SGD)},
    {"clip_norm", KEY_FLOAT, offsetof(nn_opt_config, clip_norm), 0, INFINITY, 0, 1, ALL_KINDS},
};

#define SCHED_DECAYS (BIT(NN_SCHED_COSINE) | BIT(NN_SCHED_LINEAR))

static const cfg_key sched_keys[] = {
    {"kind", KEY_KIND, offsetof(nn_sched_config, kind), 0, 0, 0, 0, ALL_KINDS},
    {"base_lr", KEY_FLOAT, offsetof(nn_sched_config, base_lr), 0, INFINITY, 0, 1, ALL_KINDS},
    {"step_size", KEY_LONG, offsetof(nn_sched_config, step_size), 1, (double)LONG_MAX, 0, 0,
     BIT(NN_SCHED_STEP)},
    {"gamma", KEY_FLOAT, offsetof(nn_sched_config, gamma), 0, 1, 1, 0, BIT(NN_SCHED_STEP)},
    {"total_steps", KEY_LONG, offsetof(nn_sched_config, total_steps), 1, (double)LONG_MAX, 0, 0,
     SCHED_DECAYS},
    {"min_lr", KEY_FLOAT, offsetof(nn_sched_config, min_lr), 0, INFINITY, 0, 1, SCHED_DECAYS},
    {"warmup_steps", KEY_LONG, offsetof(nn_sched_config, warmup_steps), 0, (double)LONG_MAX, 0, 0,
     ALL_KINDS},
    {"warmup_start", KEY_FLOAT, offsetof(nn_sched_config, warmup_start), 0, 1, 0, 0, ALL_KINDS},
};

static int opt_get_kind(const void *cfg) { return (int)((const nn_opt_config *)cfg)->kind; }
static void opt_reset(void *cfg, int kind) { *(nn_opt_config *)cfg = nn_opt_defaults(kind); }
static int sched_get_kind(const void *cfg) { return (int)((const nn_sched_config *)cfg)->kind; }
static void sched_reset(void *cfg, int kind) { *(nn_sched_config *)cfg = nn_sched_defaults(kind); }

static const cfg_schema opt_schema = {"optimizer", opt_keys, sizeof opt_keys / sizeof opt_keys[0],
                                      nn_opt_kind_names, NN_OPT_COUNT, opt_get_kind, opt_reset};
static const cfg_schema sched_schema = {
    "schedule",         sched_keys,     sizeof sched_keys / sizeof sched_keys[0],
    nn_sched_kind_names, NN_SCHED_COUNT, sched_get_kind,
    sched_reset};

static int key_applies(const cfg_key *k, int kind) { return (k->kinds & BIT(kind)) != 0; }

static double key_get(const cfg_key *k, const void *cfg)
{
    const char *f = (const char *)cfg + k->offset;
    switch (k->type) {
    case KEY_FLOAT: return *(const float *)f;
    case KEY_LONG: return (double)*(const long *)f;
    case KEY_BOOL: return *(const int *)f;
    case KEY_KIND: break;
    }
    return 0;
}

static int in_range(const cfg_key *k, double x)
{
    if (isnan(x)) return 0;
    if (k->lo_open ? !(x > k->lo) : !(x >= k->lo)) return 0;
    if (k->hi_open ? !(x < k->hi) : !(x <= k->hi)) return 0;
    return 1;
}

/* "0 <= lr < inf" style, for messages. */
static const char *range_text(const cfg_key *k, char *buf, size_t size)
{
    if (k->type == KEY_BOOL) {
        snprintf(buf, size, "0, 1, true or false");
    } else if (k->hi == INFINITY) {
        snprintf(buf, size, "a finite number %s %.9g", k->lo_open ? ">" : ">=", k->lo);
    } else if (k->type == KEY_LONG) {
        snprintf(buf, size, "an integer >= %.0f", k->lo);
    } else {
        snprintf(buf, size, "a number in %s%.9g, %.9g%s", k->lo_open ? "(" : "[", k->lo, k->hi,
                 k->hi_open ? ")" : "]");
    }
    return buf;
}

static const cfg_key *key_find(const cfg_schema *s, const char *name)
{
    for (int i = 0; i < s->n_keys; i++)
        if (strcmp(s->keys[i].name, name) == 0) return &s->keys[i];
    return NULL;
}

static xd_status cfg_set(const cfg_schema *s, void *cfg, const char *key, const char *value,
                         xd_err *e)
{
    const cfg_key *k = key_find(s, key);
    if (!k) {
        char list[256], q[XD_EXCERPT_BUF];
        size_t used = 0;
        list[0] = '\0';
        for (int i = 0; i < s->n_keys && used < sizeof list; i++) {
            int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                             s->keys[i].name);
            if (w < 0) break;
            used += (size_t)w;
        }
        return xd_fail(e, XD_EARG, "unknown %s key '%s' (valid: %s)", s->what,
                       xd_excerpt(key, q), list);
    }
    if (k->type == KEY_KIND) {
        int kind = 0;
        xd_status st = kind_from_name(s->what, s->kind_names, s->n_kinds, value, &kind, e);
        if (st != XD_OK) {
            xd_err_prefix(e, "%s key '%s'", s->what, key);
            return st;
        }
        s->reset(cfg, kind);
        return XD_OK;
    }
    int kind = s->get_kind(cfg);
    if (!key_applies(k, kind)) {
        char list[256];
        size_t used = 0;
        list[0] = '\0';
        for (int i = 0; i < s->n_kinds && used < sizeof list; i++) {
            if (!key_applies(k, i)) continue;
            int w = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "",
                             s->kind_names[i]);
            if (w < 0) break;
            used += (size_t)w;
        }
        return xd_fail(e, XD_EARG, "%s key '%s' does not apply to %s (only to: %s)", s->what, key,
                       s->kind_names[kind], list);
    }

    char want[96];
    char *end = NULL;
    char *field = (char *)cfg + k->offset;
    /* strtod/strtol skip leading blanks; a value with blanks around it is a typo, not a number */
    if (!value || !value[0] || isspace((unsigned char)value[0])) goto bad;
    errno = 0;
    switch (k->type) {
    case KEY_FLOAT: {
        double x = strtod(value, &end);
        if (*end || errno == ERANGE || !in_range(k, x)) goto bad;
        /* a double in range may still overflow a float */
        float f = (float)x;
        if (!isfinite(f) || !in_range(k, f)) goto bad;
        *(float *)field = f;
        break;
    }
    case KEY_LONG: {
        long x = strtol(value, &end, 10);
        if (*end || errno == ERANGE || !in_range(k, (double)x)) goto bad;
        *(long *)field = x;
        break;
    }
    case KEY_BOOL: {
        static const char *const words[] = {"0", "1", "false", "true"};
        int i = name_index(words, 4, value);
        if (i < 0) goto bad;
        *(int *)field = i & 1;
        break;
    }
    case KEY_KIND: break;
    }
    return XD_OK;
bad:;
    char q[XD_EXCERPT_BUF];
    return xd_fail(e, XD_EARG, "%s key '%s': bad value '%s' (expected %s)", s->what, key,
                   value ? xd_excerpt(value, q) : "(null)", range_text(k, want, sizeof want));
}

/* Every number in range for the kind; cross-field rules are the caller's. */
static xd_status cfg_check(const cfg_schema *s, const void *cfg, xd_err *e)
{
    int kind = s->get_kind(cfg);
    if (kind < 0 || kind >= s->n_kinds)
        return xd_fail(e, XD_EARG, "%s: kind %d out of range", s->what, kind);
    for (int i = 0; i < s->n_keys; i++) {
        const cfg_key *k = &s->keys[i];
        if (k->type == KEY_KIND || !key_applies(k, kind)) continue;
        double x = key_get(k, cfg);
        if (!in_range(k, x)) {
            char want[96];
            return xd_fail(e, XD_EARG, "%s %s: %s = %.9g is out of range (expected %s)", s->what,
                           s->kind_names[kind], k->name, x, range_text(k, want, sizeof want));
        }
    }
    return XD_OK;
}

#define WORD_MAX 256

/* Copies the next word of text (separated by commas or blanks) into word; returns the position
 * after it, or NULL at the end of the text. */
static const char *next_word(const char *text, char *word, size_t *len)
{
    while (*text == ',' || isspace((unsigned char)*text)) text++;
    if (!*text) return NULL;
    size_t n = 0;
    while (text[n] && text[n] != ',' && !isspace((unsigned char)text[n])) n++;
    *len = n;
    if (n < WORD_MAX) {
        memcpy(word, text, n);
        word[n] = '\0';
    }
    return text + n;
}

static xd_status apply_word(const cfg_schema *s, void *cfg, char *word, size_t len, int want_kind,
                            xd_err *e)
{
    if (len >= WORD_MAX)
        return xd_fail(e, XD_EARG, "%s setting of %zu characters is too long", s->what, len);
    char *eq = strchr(word, '=');
    if (!eq || eq == word)
        return xd_fail(e, XD_EARG, "%s setting '%s': expected key=value", s->what, word);
    *eq = '\0';
    int is_kind = strcmp(word, "kind") == 0;
    if (is_kind != want_kind) return XD_OK;
    return cfg_set(s, cfg, word, eq + 1, e);
}

static xd_status cfg_parse(const cfg_schema *s, void *cfg, const char *text, xd_err *e)
{
    char word[WORD_MAX];
    size_t len = 0;
    /* the kind resets the other fields, so it goes first wherever it stands */
    int kinds = 0;
    for (const char *p = text; (p = next_word(p, word, &len));) {
        if (len < WORD_MAX && strncmp(word, "kind=", 5) == 0 && ++kinds > 1)
            return xd_fail(e, XD_EARG, "%s key 'kind' given twice", s->what);
    }
    for (int pass = 1; pass >= 0; pass--) {
        for (const char *p = text; (p = next_word(p, word, &len));) {
            xd_status st = apply_word(s, cfg, word, len, pass, e);
            if (st != XD_OK) return st;
        }
    }
    return XD_OK;
}

static int cfg_format(const cfg_schema *s, const void *cfg, char *buf, size_t size)
{
    int kind = s->get_kind(cfg);
    size_t total = 0;
    if (size) buf[0] = '\0';
    for (int i = 0; i < s->n_keys; i++) {
        const cfg_key *k = &s->keys[i];
        if (!key_applies(k, kind)) continue;
        char val[64];
        const char *f = (const char *)cfg + k->offset;
        switch (k->type) {
        case KEY_KIND:
            snprintf(val, sizeof val, "%s",
                     kind >= 0 && kind < s->n_kinds ? s->kind_names[kind] : "?");
            break;
        case KEY_FLOAT: snprintf(val, sizeof val, "%.9g", (double)*(const float *)f); break;
        case KEY_LONG: snprintf(val, sizeof val, "%ld", *(const long *)f); break;
        case KEY_BOOL: snprintf(val, sizeof val, "%d", *(const int *)f ? 1 : 0); break;
        }
        size_t at = total < size ? total : size;
        char *dst = at < size ? buf + at : NULL; /* past the end: only count */
        int w = snprintf(dst, size - at, "%s%s=%s", total ? " " : "", k->name, val);
        if (w < 0) break;
        total += (size_t)w;
    }
    return (int)total;
}

// ----------------------------------------------------------------------------------------------
// optimizer configuration

nn_opt_config nn_opt_defaults(nn_opt_kind kind)
{
    nn_opt_config c = {.kind = kind, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if (kind == NN_OPT_ADAMW) c.weight_decay = 1e-2f;
    return c;
}

xd_status nn_opt_config_check(const nn_opt_config *cfg, xd_err *e)
{
    xd_status s = cfg_check(&opt_schema, cfg, e);
    if (s != XD_OK) return s;
    if (cfg->kind == NN_OPT_SGD && cfg->nesterov && !(cfg->momentum > 0))
        return xd_fail(e, XD_EARG, "optimizer sgd: nesterov needs momentum > 0");
    return XD_OK;
}

xd_status nn_opt_config_set(nn_opt_config *cfg, const char *key, const char *value, xd_err *e)
{
    return cfg_set(&opt_schema, cfg, key, value, e);
}

xd_status nn_opt_config_parse(nn_opt_config *cfg, const char *text, xd_err *e)
{
    return cfg_parse(&opt_schema, cfg, text, e);
}

int nn_opt_config_format(const nn_opt_config *cfg, char *buf, size_t size)
{
    return cfg_format(&opt_schema, cfg, buf, size);
}

// ----------------------------------------------------------------------------------------------
// schedules

nn_sched_config nn_sched_defaults(nn_sched_kind kind)
{
    return (nn_sched_config){.kind = kind, .base_lr = 1e-3f, .gamma = 0.1f};
}

xd_status nn_sched_config_check(const nn_sched_config *cfg, xd_err *e)
{
    if (cfg->kind >= 0 && cfg->kind < NN_SCHED_COUNT) {
        const char *name = nn_sched_kind_names[cfg->kind];
        if (cfg->kind == NN_SCHED_STEP && cfg->step_size <= 0)
            return xd_fail(e, XD_EARG, "schedule step: step_size must be set (>= 1)");
        if ((cfg->kind == NN_SCHED_COSINE || cfg->kind == NN_SCHED_LINEAR) &&
            cfg->total_steps <= 0)
            return xd_fail(e, XD_EARG, "schedule %s: total_steps must be set (>= 1)", name);
    }
    xd_status s = cfg_check(&sched_schema, cfg, e);
    if (s != XD_OK) return s;
    if (cfg->kind == NN_SCHED_COSINE || cfg->kind == NN_SCHED_LINEAR) {
        const char *name = nn_sched_kind_names[cfg->kind];
        if (cfg->total_steps <= cfg->warmup_steps)
            return xd_fail(e, XD_EARG,
                           "schedule %s: total_steps %ld must exceed warmup_steps %ld", name,
                           cfg->total_steps, cfg->warmup_steps);
        if (cfg->min_lr > cfg->base_lr)
            return xd_fail(e, XD_EARG, "schedule %s: min_lr %.9g is above base_lr %.9g", name,
                           (double)cfg->min_lr, (double)cfg->base_lr);
    }
    return XD_OK;
}

xd_status nn_sched_config_set(nn_sched_config *cfg, const char *key, const char *value,
                              xd_err *e)
{
    return cfg_set(&sched_schema, cfg, key, value, e);
}

xd_status nn_sched_config_parse(nn_sched_config *cfg, const char *text, xd_err *e)
{
    return cfg_parse(&sched_schema, cfg, text, e);
}

int nn_sched_config_format(const nn_sched_config *cfg, char *buf, size_t size)
{
    return cfg_format(&sched_schema, cfg, buf, size);
}
