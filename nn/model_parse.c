/* Model descriptions: the text a model is built from, parsed into its nodes (nn_model_parse, for
 * nn_model_build), and the canonical text of a built model (nn_model_describe); the options each
 * layer statement takes are one table that both use. */
#include "nn/model.h"
#include "nn/model_internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/words.h"

static const char *const kind_names[] = {
    [NN_LINEAR] = "linear",       [NN_CONV2D] = "conv2d",       [NN_MAXPOOL] = "maxpool",
    [NN_AVGPOOL] = "avgpool",     [NN_GAP] = "gap",             [NN_RELU] = "relu",
    [NN_GELU] = "gelu",           [NN_TANH] = "tanh",           [NN_SIGMOID] = "sigmoid",
    [NN_SOFTMAX] = "softmax",     [NN_LOGSOFTMAX] = "logsoftmax", [NN_BATCHNORM] = "batchnorm",
    [NN_LAYERNORM] = "layernorm", [NN_DROPOUT] = "dropout",     [NN_EMBBAG] = "embbag",
    [NN_UPSAMPLE] = "upsample",   [NN_FLATTEN] = "flatten",     [NN_FAKEQUANT] = "fakequant",
    [NN_ADD] = "add",
};
static_assert(sizeof kind_names / sizeof kind_names[0] == NN_KIND_COUNT,
              "kind_names must name every nn_kind");

const char *nn_kind_name(nn_kind k) { return k < NN_KIND_COUNT ? kind_names[k] : "?"; }

// ----------------------------------------------------------------------------------------------
// options table: which keys a layer statement takes

#define K(kind) (1u << (kind))
#define ALL_KINDS ((1u << NN_KIND_COUNT) - 1)
#define POOLS (K(NN_MAXPOOL) | K(NN_AVGPOOL))

typedef enum { OPT_INT, OPT_FLOAT, OPT_NAME, OPT_FROM, OPT_FROM2, OPT_FLAG, OPT_MODE } opt_type;

typedef struct {
    const char *key;
    opt_type type;
    size_t off;
    uint32_t kinds;
    const char *help;
    int omit_zero;   /* left out of the canonical description when 0 (options added later, so
                      * that descriptions written before them stay as they were) */
} opt_def;

#define OFF(f) offsetof(nn_node, f)
static const opt_def opts[] = {
    {"name", OPT_NAME, OFF(name), ALL_KINDS, "node name (tap)", 0},
    {"from", OPT_FROM, OFF(in), ALL_KINDS, "input node (default: the previous one)", 0},
    {"with", OPT_FROM2, OFF(in2), K(NN_ADD), "second input of add", 0},
    {"head", OPT_FLAG, OFF(head), ALL_KINDS, "marks an output", 0},
    {"out", OPT_INT, OFF(units), K(NN_LINEAR) | K(NN_CONV2D) | K(NN_EMBBAG), "output width", 0},
    {"k", OPT_INT, OFF(k), K(NN_CONV2D) | POOLS, "window size", 0},
    {"stride", OPT_INT, OFF(stride), K(NN_CONV2D) | POOLS, "stride", 0},
    {"pad", OPT_INT, OFF(pad), K(NN_CONV2D), "zero padding", 0},
    {"bias", OPT_INT, OFF(bias), K(NN_LINEAR) | K(NN_CONV2D), "1 = with bias", 0},
    {"p", OPT_FLOAT, OFF(p), K(NN_DROPOUT), "drop probability", 0},
    {"eps", OPT_FLOAT, OFF(eps), K(NN_BATCHNORM) | K(NN_LAYERNORM), "variance epsilon", 0},
    {"momentum", OPT_FLOAT, OFF(momentum), K(NN_BATCHNORM), "running-stat momentum", 0},
    {"mode", OPT_MODE, OFF(mode), K(NN_EMBBAG), "mean or sum", 0},
    {"vocab", OPT_INT, OFF(vocab), K(NN_EMBBAG), "number of token ids", 0},
    {"bits", OPT_INT, OFF(bits), K(NN_FAKEQUANT), "quantisation bits", 0},
    {"ema", OPT_FLOAT, OFF(ema), K(NN_FAKEQUANT), "moving range: the momentum of its average", 1},
    {"unsigned", OPT_FLAG, OFF(usign), K(NN_FAKEQUANT), "moving range: levels 0..2^bits-1", 0},
    {"wbits", OPT_INT, OFF(wbits), K(NN_LINEAR) | K(NN_CONV2D),
     "weights fake-quantised per output channel to this many bits", 1},
    {"prune", OPT_FLAG, OFF(prune), K(NN_LINEAR) | K(NN_CONV2D),
     "weights carry a pruning mask (state NAME.mask, nn/prune.h)", 0},
    {"factor", OPT_INT, OFF(factor), K(NN_UPSAMPLE), "upsampling factor", 0},
};
#undef OFF

static const char *const mode_names[] = {[NN_BAG_MEAN] = "mean", [NN_BAG_SUM] = "sum"};

static int find_kind(const char *w)
{
    for (int k = 0; k < NN_KIND_COUNT; k++)
        if (strcmp(w, kind_names[k]) == 0) return k;
    return -1;
}

static const opt_def *find_opt(const char *key)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strcmp(key, opts[i].key) == 0) return &opts[i];
    return NULL;
}

static void list_keys(char *buf, size_t n, nn_kind kind)
{
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (!(opts[i].kinds & K(kind))) continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", opts[i].key);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}

static void list_kinds(char *buf, size_t n)
{
    buf[0] = '\0';
    size_t used = 0;
    for (int k = 0; k < NN_KIND_COUNT; k++) {
        int w = snprintf(buf + used, n - used, "%s%s", k ? ", " : "", kind_names[k]);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < INT_MIN || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

// ----------------------------------------------------------------------------------------------
// parsing

typedef struct {
    char **words;
    int n;
} stmt;

/* Blanks between words: every byte isspace() takes in the C locale except the newline, which
 * ends a statement. Skipping and word ends use this one test, so no byte is both (a byte that
 * ends a word but is not skipped would give empty words forever). */
static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Splits text into statements (';' or newline) of blank-separated words. '#' starts a comment
 * to the end of the line. */
static int split_statements(const char *text, stmt **out)
{
    int cap = 8, n = 0;
    stmt *st = xd_xcalloc((size_t)cap, sizeof *st);
    const char *p = text;
    stmt cur = {NULL, 0};
    int wcap = 0;
    for (;;) {
        while (is_blank(*p)) p++;
        if (*p == '#') {
            while (*p && *p != '\n') p++;
        }
        if (*p == ';' || *p == '\n' || *p == '\0') {
            if (cur.n) {
                if (n == cap) {
                    cap *= 2;
                    st = xd_xrealloc(st, (size_t)cap * sizeof *st);
                }
                st[n++] = cur;
                cur.words = NULL;
                cur.n = 0;
                wcap = 0;
            }
            if (!*p) break;
            p++;
            continue;
        }
        const char *b = p;
        while (*p && !is_blank(*p) && *p != '\n' && *p != ';' && *p != '#') p++;
        XD_ASSERT(p > b); /* every byte is a blank, a separator or part of a word */
        if (cur.n == wcap) {
            wcap = wcap ? 2 * wcap : 8;
            cur.words = xd_xrealloc(cur.words, (size_t)wcap * sizeof(char *));
        }
        size_t len = (size_t)(p - b);
        char *w = xd_xmalloc(len + 1);
        memcpy(w, b, len);
        w[len] = '\0';
        cur.words[cur.n++] = w;
    }
    *out = st;
    return n;
}

static void free_statements(stmt *st, int n)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < st[i].n; j++) free(st[i].words[j]);
        free(st[i].words);
    }
    free(st);
}

static int node_by_name(const nn_model *m, int upto, const char *name)
{
    if (strcmp(name, "input") == 0) return NN_INPUT;
    for (int i = 0; i < upto; i++)
        if (strcmp(m->nodes[i].name, name) == 0) return i;
    return -2;
}

static void node_defaults(nn_node *nd, nn_kind kind, int index)
{
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    snprintf(nd->name, sizeof nd->name, "%s%d", kind_names[kind], index);
    nd->in = index - 1; /* previous node, or NN_INPUT for the first */
    nd->in2 = -2;
    nd->bias = 1;
    nd->p = 0.5f;
    nd->eps = 1e-5f;
    nd->momentum = 0.1f;
    nd->mode = NN_BAG_MEAN;
    nd->bits = 8;
    nd->factor = 2;
}

static xd_status parse_input(nn_model *m, const stmt *s, xd_err *e)
{
    char q[XD_EXCERPT_BUF];
    if (strcmp(s->words[0], "input") != 0)
        return xd_fail(e, XD_EARG, "model description: the first statement must be 'input' "
                                   "(e.g. 'input h=28 w=28 c=1' or 'input tokens=64'), not '%s'",
                       xd_excerpt(s->words[0], q));
    for (int i = 1; i < s->n; i++) {
        if (xd_word_key_repeats((const char *const *)s->words + 1, i - 1, s->words[i]))
            return xd_fail(e, XD_EARG, "model description: input: '%.*s' given twice",
                           (int)xd_word_key_len(s->words[i]), s->words[i]);
        char *eq = strchr(s->words[i], '=');
        int v;
        if (!eq || parse_int(eq + 1, &v) || v <= 0 || v > NN_MAX_INPUT)
            return xd_fail(e, XD_EARG, "model description: input: '%s' is not key=integer "
                                       "in 1..%d", xd_excerpt(s->words[i], q), NN_MAX_INPUT);
        *eq = '\0';
        const char *key = s->words[i];
        if (strcmp(key, "h") == 0) m->h = v;
        else if (strcmp(key, "w") == 0) m->w = v;
        else if (strcmp(key, "c") == 0) m->c = v;
        else if (strcmp(key, "tokens") == 0) m->tokens = v;
        else {
            *eq = '=';
            return xd_fail(e, XD_EARG, "model description: input: unknown key in '%s' "
                                       "(valid: h, w, c, tokens)", xd_excerpt(s->words[i], q));
        }
        *eq = '=';
    }
    int image = m->h || m->w || m->c;
    if (m->tokens && image)
        return xd_fail(e, XD_EARG, "model description: input: give either tokens or h/w/c, not both");
    if (!m->tokens && !(m->h && m->w && m->c))
        return xd_fail(e, XD_EARG, "model description: input: needs h, w and c (or tokens)");
    return XD_OK;
}

static xd_status parse_layer(nn_model *m, int index, const stmt *s, xd_err *e)
{
    nn_node *nd = &m->nodes[index];
    int kind = find_kind(s->words[0]);
    if (kind < 0) {
        char kinds[512];
        list_kinds(kinds, sizeof kinds);
        char q[XD_EXCERPT_BUF];
        return xd_fail(e, XD_EARG, "model description: layer %d: unknown layer '%s' (valid: %s)",
                       index + 1, xd_excerpt(s->words[0], q), kinds);
    }
    node_defaults(nd, (nn_kind)kind, index);
    int stride_given = 0, name_given = 0;
    for (int i = 1; i < s->n; i++) {
        char *word = s->words[i];
        if (xd_word_key_repeats((const char *const *)s->words + 1, i - 1, word))
            return xd_fail(e, XD_EARG, "model description: layer %d '%s': '%.*s' given twice",
                           index + 1, kind_names[kind], (int)xd_word_key_len(word), word);
        char *eq = strchr(word, '=');
        if (eq) *eq = '\0';
        const char *val = eq ? eq + 1 : NULL;
        const opt_def *o = find_opt(word);
        xd_status st = XD_OK;
        if (!o || !(o->kinds & K(kind))) {
            char keys[256];
            list_keys(keys, sizeof keys, (nn_kind)kind);
            char q[XD_EXCERPT_BUF];
            st = xd_fail(e, XD_EARG, "model description: layer %d '%s': unknown key '%s' (valid: %s)",
                         index + 1, kind_names[kind], xd_excerpt(word, q), keys);
        } else if ((o->type == OPT_FLAG) != (val == NULL)) {
            st = xd_fail(e, XD_EARG, "model description: layer %d '%s': '%s' %s", index + 1,
                         kind_names[kind], word, o->type == OPT_FLAG ? "takes no value" : "needs =value");
        } else {
            char *field = (char *)nd + o->off;
            int bad = 0;
            switch (o->type) {
            case OPT_INT:
                bad = parse_int(val, (int *)field) || *(int *)field < 0 ||
                      *(int *)field > NN_MAX_OPTION;
                break;
            case OPT_FLOAT: bad = parse_float(val, (float *)field); break;
            case OPT_FLAG: *(int *)field = 1; break;
            case OPT_NAME:
                bad = !*val || strlen(val) >= NN_NAME_LEN || node_by_name(m, index, val) != -2;
                if (!bad) snprintf(nd->name, sizeof nd->name, "%s", val);
                break;
            case OPT_FROM:
            case OPT_FROM2: {
                int src = node_by_name(m, index, val);
                bad = src == -2;
                if (!bad) *(int *)field = src;
                break;
            }
            case OPT_MODE:
                bad = 1;
                for (int k = 0; k < 2; k++)
                    if (strcmp(val, mode_names[k]) == 0) {
                        nd->mode = (nn_bag_mode)k;
                        bad = 0;
                    }
                break;
            }
            char q[XD_EXCERPT_BUF];
            if (bad)
                st = xd_fail(e, XD_EARG, "model description: layer %d '%s': bad value '%s' for '%s'%s",
                             index + 1, kind_names[kind], xd_excerpt(val ? val : "", q), word,
                             o->type == OPT_NAME ? " (empty, too long or already used)"
                             : (o->type == OPT_FROM || o->type == OPT_FROM2) ? " (no earlier node of that name)"
                             : o->type == OPT_MODE ? " (mean or sum)" : "");
            if (o->type == OPT_INT && strcmp(o->key, "stride") == 0) stride_given = 1;
            if (o->type == OPT_NAME) name_given = 1;
        }
        if (eq) *eq = '=';
        if (st != XD_OK) return st;
    }
    if (!stride_given) nd->stride = (kind == NN_MAXPOOL || kind == NN_AVGPOOL) ? nd->k : 1;
    /* an earlier node may have been given the name this one gets by default ("relu1"): two nodes
     * of one name would make taps ambiguous and the canonical description unbuildable */
    if (!name_given && node_by_name(m, index, nd->name) != -2)
        return xd_fail(e, XD_EARG, "model description: layer %d '%s': its default name '%s' is "
                       "already taken by an earlier layer; give it another with name=",
                       index + 1, kind_names[kind], nd->name);
    return XD_OK;
}

xd_status nn_model_parse(nn_model *m, const char *desc, xd_err *e)
{
    stmt *st;
    int n = split_statements(desc, &st);
    xd_status s = XD_OK;
    if (n < 2) {
        s = xd_fail(e, XD_EARG, "model description: needs an 'input' statement and at least one layer");
        goto out;
    }
    if (n - 1 > NN_MAX_NODES) {
        s = xd_fail(e, XD_EARG, "model description: %d layers, more than the %d a model may have",
                    n - 1, NN_MAX_NODES);
        goto out;
    }
    if ((s = parse_input(m, &st[0], e)) != XD_OK) goto out;
    m->n_nodes = n - 1;
    m->nodes = xd_xcalloc((size_t)m->n_nodes, sizeof *m->nodes);
    m->params = xd_xcalloc((size_t)m->n_nodes * 4, sizeof *m->params);
    for (int i = 0; i < m->n_nodes; i++)
        if ((s = parse_layer(m, i, &st[i + 1], e)) != XD_OK) goto out;
out:
    free_statements(st, n);
    return s;
}

char *nn_model_describe(const nn_model *m)
{
    size_t cap = 256 + (size_t)m->n_nodes * 256, used = 0;
    char *s = xd_xmalloc(cap);
#define PUT(...) used += (size_t)snprintf(s + used, cap - used, __VA_ARGS__)
    if (m->tokens) PUT("input tokens=%d", m->tokens);
    else PUT("input h=%d w=%d c=%d", m->h, m->w, m->c);
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        PUT("; %s name=%s", kind_names[nd->kind], nd->name);
        if (nd->in != i - 1) PUT(" from=%s", nd->in == NN_INPUT ? "input" : m->nodes[nd->in].name);
        for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
            const opt_def *od = &opts[o];
            if (!(od->kinds & K(nd->kind))) continue;
            const char *field = (const char *)nd + od->off;
            switch (od->type) {
            case OPT_INT:
                if (*(const int *)field || !od->omit_zero) PUT(" %s=%d", od->key, *(const int *)field);
                break;
            case OPT_FLOAT:
                if (*(const float *)field != 0.0f || !od->omit_zero)
                    PUT(" %s=%.9g", od->key, (double)*(const float *)field);
                break;
            case OPT_MODE: PUT(" %s=%s", od->key, mode_names[nd->mode]); break;
            case OPT_FROM2:
                PUT(" %s=%s", od->key, nd->in2 == NN_INPUT ? "input" : m->nodes[nd->in2].name);
                break;
            case OPT_FLAG: if (*(const int *)field) PUT(" %s", od->key); break;
            case OPT_NAME: case OPT_FROM: break;
            }
        }
    }
#undef PUT
    XD_ASSERT(used < cap);
    return s;
}
