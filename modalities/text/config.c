/* Text settings: defaults, the key table, parsing and describing (see config.h). */
#include "modalities/text/config.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/words.h"

const char *const txt_unit_names[] = {
    [TXT_UNIT_GRAPHEME] = "grapheme",
    [TXT_UNIT_CODEPOINT] = "codepoint",
};
static_assert(sizeof txt_unit_names / sizeof txt_unit_names[0] == TXT_UNIT_COUNT,
              "txt_unit_names must name every unit");

txt_config txt_config_default(void)
{
    return (txt_config){
        .norm = txt_norm_defaults(),
        .seg = {.bigrams = true, .keep_punct = false},
        .buckets = 1u << 16,
        .nmin = 2,
        .nmax = 4,
        .unit = TXT_UNIT_GRAPHEME,
        .min_count = 2,
        .max_vocab = 100000,
        .max_ids = 256,
    };
}

typedef enum { KEY_BOOL, KEY_U32, KEY_UNIT, KEY_KIND_COUNT } key_kind;

typedef struct {
    const char *name;
    key_kind kind;
    size_t offset;
    uint32_t lo, hi; /* KEY_U32 range */
} key_spec;

#define KEY(name, kind, field, lo, hi) {name, kind, offsetof(txt_config, field), lo, hi}
static const key_spec keys[] = {
    KEY("nfkc", KEY_BOOL, norm.compat, 0, 1),
    KEY("casefold", KEY_BOOL, norm.casefold, 0, 1),
    KEY("strip_accents", KEY_BOOL, norm.strip_accents, 0, 1),
    KEY("collapse_space", KEY_BOOL, norm.collapse_space, 0, 1),
    KEY("replace_invalid", KEY_BOOL, norm.replace_invalid, 0, 1),
    KEY("bigrams", KEY_BOOL, seg.bigrams, 0, 1),
    KEY("keep_punct", KEY_BOOL, seg.keep_punct, 0, 1),
    KEY("buckets", KEY_U32, buckets, 0, TXT_MAX_BUCKETS),
    KEY("nmin", KEY_U32, nmin, 1, TXT_MAX_NGRAM),
    KEY("nmax", KEY_U32, nmax, 1, TXT_MAX_NGRAM),
    KEY("unit", KEY_UNIT, unit, 0, 0),
    KEY("min_count", KEY_U32, min_count, 1, UINT32_MAX),
    KEY("max_vocab", KEY_U32, max_vocab, 0, TXT_VOCAB_MAX),
    KEY("max_ids", KEY_U32, max_ids, 1, 1u << 20),
};
#undef KEY
#define N_KEYS (sizeof keys / sizeof keys[0])

typedef struct {
    const char *word;
    bool value;
} bool_word;
static const bool_word bool_words[] = {
    {"1", true}, {"true", true}, {"yes", true}, {"on", true},
    {"0", false}, {"false", false}, {"no", false}, {"off", false},
};

static const key_spec *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static xd_status unknown_key(const char *key, xd_err *e)
{
    char known[512];
    size_t used = 0;
    known[0] = '\0';
    for (size_t i = 0; i < N_KEYS && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                 keys[i].name);
    return xd_fail(e, XD_EARG, "unknown text option '%s' (known: %s)", key, known);
}

xd_status txt_config_set(txt_config *c, const char *key, const char *value, xd_err *e)
{
    const key_spec *k = find_key(key);
    if (!k) return unknown_key(key, e);
    void *field = (char *)c + k->offset;
    switch (k->kind) {
    case KEY_BOOL:
        for (size_t i = 0; i < sizeof bool_words / sizeof bool_words[0]; i++)
            if (strcmp(bool_words[i].word, value) == 0) {
                *(bool *)field = bool_words[i].value;
                return XD_OK;
            }
        return xd_fail(e, XD_EARG, "text option %s=%s: expected true/false, yes/no, on/off or 1/0",
                       key, value);
    case KEY_U32: {
        /* digits only: strtoull would take "-1", "+5", " 5" and "0x10" */
        if (!*value || strspn(value, "0123456789") != strlen(value))
            return xd_fail(e, XD_EARG, "text option %s=%s: expected a whole number", key, value);
        errno = 0;
        unsigned long long v = strtoull(value, NULL, 10);
        if (errno == ERANGE || v < k->lo || v > k->hi)
            return xd_fail(e, XD_EARG, "text option %s=%s: must be in [%u, %u]", key, value,
                           (unsigned)k->lo, (unsigned)k->hi);
        *(uint32_t *)field = (uint32_t)v;
        return XD_OK;
    }
    case KEY_UNIT:
        for (int u = 0; u < TXT_UNIT_COUNT; u++)
            if (strcmp(txt_unit_names[u], value) == 0) {
                *(txt_unit *)field = (txt_unit)u;
                return XD_OK;
            }
        return xd_fail(e, XD_EARG, "text option %s=%s: expected %s or %s", key, value,
                       txt_unit_names[0], txt_unit_names[1]);
    case KEY_KIND_COUNT:
        break;
    }
    XD_ASSERT(!"unhandled key kind");
    return XD_EARG;
}

xd_status txt_config_parse(txt_config *c, const char *const *items, size_t n, xd_err *e)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(items[i], '=');
        char q[XD_EXCERPT_BUF];
        if (!eq || eq == items[i])
            return xd_fail(e, XD_EARG, "text option '%s': expected key=value",
                           xd_excerpt(items[i], q));
        if (xd_word_key_repeats(items, (int)i, items[i]))
            return xd_fail(e, XD_EARG, "text option '%.*s' given twice", (int)(eq - items[i]),
                           items[i]);
        char key[64];
        size_t klen = (size_t)(eq - items[i]);
        if (klen >= sizeof key) {
            return xd_fail(e, XD_EARG, "unknown text option '%.*s...'", (int)(sizeof key - 1),
                           items[i]);
        }
        memcpy(key, items[i], klen);
        key[klen] = '\0';
        xd_status st = txt_config_set(c, key, eq + 1, e);
        if (st) return st;
    }
    return txt_config_check(c, e);
}

xd_status txt_config_parse_words(txt_config *c, const char *words, xd_err *e)
{
    char *copy = xd_xstrdup(words ? words : ""), *save = NULL;
    size_t n = 0, cap = 8;
    const char **items = xd_xmalloc(cap * sizeof *items);
    for (char *w = strtok_r(copy, TXT_CONFIG_SEPS, &save); w;
         w = strtok_r(NULL, TXT_CONFIG_SEPS, &save)) {
        if (n == cap) items = xd_xrealloc(items, (cap *= 2) * sizeof *items);
        items[n++] = w;
    }
    xd_status s = txt_config_parse(c, items, n, e);
    free(items);
    free(copy);
    return s;
}

xd_status txt_config_check(const txt_config *c, xd_err *e)
{
    if (c->nmin < 1 || c->nmax > TXT_MAX_NGRAM || c->nmin > c->nmax)
        return xd_fail(e, XD_EARG, "text options: need 1 <= nmin <= nmax <= %u, got nmin=%u nmax=%u",
                       TXT_MAX_NGRAM, (unsigned)c->nmin, (unsigned)c->nmax);
    if (c->buckets > TXT_MAX_BUCKETS || c->max_vocab > TXT_VOCAB_MAX || c->unit >= TXT_UNIT_COUNT ||
        c->unit < 0 || c->max_ids < 1 || c->min_count < 1)
        return xd_fail(e, XD_EARG, "text options: a value is out of range");
    return XD_OK;
}

size_t txt_config_describe(const txt_config *c, char *buf, size_t cap)
{
    size_t need = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const void *field = (const char *)c + keys[i].offset;
        char value[32];
        switch (keys[i].kind) {
        case KEY_BOOL: snprintf(value, sizeof value, "%s", *(const bool *)field ? "true" : "false"); break;
        case KEY_U32: snprintf(value, sizeof value, "%u", (unsigned)*(const uint32_t *)field); break;
        case KEY_UNIT: {
            txt_unit u = *(const txt_unit *)field;
            snprintf(value, sizeof value, "%s", u >= 0 && u < TXT_UNIT_COUNT ? txt_unit_names[u] : "?");
            break;
        }
        case KEY_KIND_COUNT: value[0] = '\0'; break;
        }
        int w = snprintf(cap > need ? buf + need : NULL, cap > need ? cap - need : 0, "%s%s=%s",
                         i ? " " : "", keys[i].name, value);
        need += (size_t)w;
    }
    if (cap && need >= cap) buf[cap - 1] = '\0';
    return need;
}
