/* Model: parsing the text description, shapes, memory, initialisation and lookups (see model.h);
 * the forward passes (training, evaluation, inference and its packing) are in model_forward.c,
 * backward in model_backward.c. */
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
#include "core/rng.h"
#include "nn/quant.h"
#include "core/runtime.h"

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

// ----------------------------------------------------------------------------------------------
// shapes and parameters

static xd_status layer_error(xd_err *e, int i, const nn_node *nd, const char *msg)
{
    return xd_fail(e, XD_ESHAPE, "model description: layer %d '%s' (%s): %s", i + 1,
                   kind_names[nd->kind], nd->name, msg);
}

nn_pool_shape nn_node_pool_shape(const nn_node *nd, int B)
{
    nn_pool_shape ps = {.B = B, .H = nd->ih, .W = nd->iw, .C = nd->ic, .k = nd->k,
                        .stride = nd->stride};
    nn_pool_shape_init(&ps);
    return ps;
}

nn_conv_shape nn_node_conv_shape(const nn_node *nd, int B)
{
    nn_conv_shape cs = {.B = B, .H = nd->ih, .W = nd->iw, .C = nd->ic, .OC = nd->units, .KH = nd->k,
                        .KW = nd->k, .stride = nd->stride, .pad = nd->pad, .bias = nd->bias};
    nn_conv_shape_init(&cs);
    return cs;
}

/* Adds a parameter (or state) entry; -1 when its size, or the model's total with it, would pass
 * NN_MAX_PARAMS (checked before any product can overflow). */
static int add_param(nn_model *m, const nn_node *nd, const char *suffix, int ndim,
                     const int64_t *shape, int decay, int state, size_t *off)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (xd_mul_size(n, (size_t)shape[d], &n) || n > NN_MAX_PARAMS) return -1;
    if (n > NN_MAX_PARAMS - m->n_param - m->n_state) return -1;
    nn_param *p = &m->params[m->n_params++];
    snprintf(p->name, sizeof p->name, "%s.%s", nd->name, suffix);
    p->ndim = ndim;
    for (int d = 0; d < ndim; d++) p->shape[d] = shape[d];
    p->n = n;
    p->decay = decay;
    p->state = state;
    if (state) {
        p->off = m->n_state;
        m->n_state += n;
    } else {
        p->off = m->n_param;
        m->n_param += n;
    }
    *off = p->off;
    return 0;
}

/* A pruning mask: state of the weight's shape (shape[0] is the output count still). */
static int add_mask(nn_model *m, nn_node *nd, int ndim, const int64_t *shape)
{
    if (add_param(m, nd, "mask", ndim, shape, 0, 1, &nd->s_off)) return -1;
    nd->s_n = nd->w_n;
    return 0;
}

/* Working memory in floats: per example of a batch (multiplied by max_batch when allocated) and
 * fixed. Every per-example figure, and their sum `example`, stays within NN_MAX_EXAMPLE. */
typedef struct {
    size_t act;     /* every node's output (and as much again for the gradients) */
    size_t save;    /* values kept for backward: conv columns, dropout masks, layernorm stats */
    size_t isave;   /* maxpool argmax indices (int32) */
    size_t scratch; /* the largest conv's column gradient, taken from the arena in backward */
    size_t fixed;   /* batchnorm statistics and conv [w | b] copies, whatever the batch */
    size_t example; /* input + 2 act + save + isave + scratch */
} model_sizes;

/* Adds n floats per example to *field and to the total; -1 past NN_MAX_EXAMPLE. */
static int add_example(model_sizes *z, size_t *field, size_t n)
{
    if (n > NN_MAX_EXAMPLE - z->example) return -1;
    z->example += n;
    *field += n;
    return 0;
}

static xd_status too_big(xd_err *e, int i, const nn_node *nd, const char *what)
{
    return xd_fail(e, XD_ESHAPE,
                   "model description: layer %d '%s' (%s): %s passes the limit (%zu parameters, "
                   "%zu floats of memory per example)",
                   i + 1, kind_names[nd->kind], nd->name, what, NN_MAX_PARAMS, NN_MAX_EXAMPLE);
}

/* Room a conv2d keeps for its weights packed by each float32 forward outside inference (see
 * forward_node): none for a pointwise one, which reads its input in place anyway. */
static size_t conv_train_packed_size(const nn_conv_shape *s)
{
    return nn_conv_cols_size(s) ? nn_conv_packed_size(s) : 0;
}

/* Fills output shapes, the parameter table and the sizes of every block; checks, before anything
 * is allocated and without overflow, that everything fits the limits (model.h). */
static xd_status infer(nn_model *m, model_sizes *z, xd_err *e)
{
    memset(z, 0, sizeof *z);
    size_t in_n = m->tokens ? (size_t)m->tokens : (size_t)m->h * m->w * m->c;
    if (in_n > NN_MAX_EXAMPLE)
        return xd_fail(e, XD_ESHAPE, "model description: input: %zu values per example, more "
                                     "than the %zu allowed", in_n, NN_MAX_EXAMPLE);
    z->example = in_n;
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        if (nd->in == NN_INPUT) {
            nd->ih = m->tokens ? 1 : m->h;
            nd->iw = m->tokens ? m->tokens : m->w;
            nd->ic = m->tokens ? 1 : m->c;
            if (m->tokens && nd->kind != NN_EMBBAG)
                return layer_error(e, i, nd, "token-id input can only feed an embbag layer");
        } else {
            const nn_node *src = &m->nodes[nd->in];
            nd->ih = src->h;
            nd->iw = src->w;
            nd->ic = src->c;
        }
        if (nd->kind == NN_EMBBAG && !(nd->in == NN_INPUT && m->tokens))
            return layer_error(e, i, nd, "embbag reads the token-id input (use an 'input tokens=L' model)");
        nd->h = nd->ih;
        nd->w = nd->iw;
        nd->c = nd->ic;
        int64_t shp[4];
        if (nd->wbits && (nd->wbits < 2 || nd->wbits > 8))
            return layer_error(e, i, nd, "wbits must be 2..8");
        switch (nd->kind) {
        case NN_LINEAR:
            if (nd->units <= 0) return layer_error(e, i, nd, "needs out=N > 0");
            nd->c = nd->units;
            shp[0] = nd->units;
            shp[1] = nd->ic;
            if (add_param(m, nd, "weight", 2, shp, 1, 0, &nd->w_off))
                return too_big(e, i, nd, "its weight");
            nd->w_n = (size_t)nd->units * nd->ic;
            if (nd->bias) {
                if (add_param(m, nd, "bias", 1, shp, 0, 0, &nd->b_off))
                    return too_big(e, i, nd, "its bias");
                nd->b_n = (size_t)nd->units;
            }
            if (nd->prune && add_mask(m, nd, 2, shp)) return too_big(e, i, nd, "its mask");
            break;
        case NN_CONV2D: {
            if (nd->units <= 0 || nd->k <= 0) return layer_error(e, i, nd, "needs out=N and k=K > 0");
            nn_conv_shape cs = {.B = 1, .H = nd->ih, .W = nd->iw, .C = nd->ic, .OC = nd->units,
                                .KH = nd->k, .KW = nd->k, .stride = nd->stride, .pad = nd->pad,
                                .bias = nd->bias};
            if (nn_conv_shape_init(&cs))
                return layer_error(e, i, nd, "window, stride or padding do not fit the input");
            nd->h = cs.OH;
            nd->w = cs.OW;
            nd->c = nd->units;
            shp[0] = nd->units;
            shp[1] = shp[2] = nd->k;
            shp[3] = nd->ic;
            if (add_param(m, nd, "weight", 4, shp, 1, 0, &nd->w_off))
                return too_big(e, i, nd, "its weight");
            nd->w_n = (size_t)nd->units * nd->k * nd->k * nd->ic;
            if (nd->bias) {
                if (add_param(m, nd, "bias", 1, shp, 0, 0, &nd->b_off))
                    return too_big(e, i, nd, "its bias");
                nd->b_n = (size_t)nd->units;
            }
            if (nd->prune && add_mask(m, nd, 4, shp)) return too_big(e, i, nd, "its mask");
            /* nn_conv_cols_size computes OH * OW * (k * k * ic + bias) unchecked: this bound on
             * it must not overflow first */
            size_t row, cols;
            if (xd_mul3_size((size_t)nd->k, (size_t)nd->k, (size_t)nd->ic, &row) ||
                xd_mul3_size((size_t)cs.OH, (size_t)cs.OW, row + 1, &cols))
                return too_big(e, i, nd, "its input columns");
            cols = nn_conv_cols_size(&cs);
            if (add_example(z, &z->save, cols)) return too_big(e, i, nd, "its input columns");
            if (cols > z->scratch) {
                if (add_example(z, &z->scratch, cols - z->scratch))
                    return too_big(e, i, nd, "its column gradient");
            }
            z->fixed += nn_conv_wext_size(&cs); /* a copy of weight and bias, within the limit */
            z->fixed += conv_train_packed_size(&cs); /* the same packed, not much more */
            break;
        }
        case NN_MAXPOOL:
        case NN_AVGPOOL: {
            nn_pool_shape ps = {.B = 1, .H = nd->ih, .W = nd->iw, .C = nd->ic, .k = nd->k,
                                .stride = nd->stride};
            if (nn_pool_shape_init(&ps)) return layer_error(e, i, nd, "needs k=K that fits the input");
            nd->h = ps.OH;
            nd->w = ps.OW;
            break;
        }
        case NN_GAP:
            nd->h = nd->w = 1;
            break;
        case NN_FLATTEN:
            if ((size_t)nd->ih * nd->iw * nd->ic > NN_MAX_EXAMPLE)
                return too_big(e, i, nd, "its output");
            nd->c = nd->ih * nd->iw * nd->ic;
            nd->h = nd->w = 1;
            break;
        case NN_BATCHNORM:
        case NN_LAYERNORM:
            if (!(nd->eps > 0.0f)) return layer_error(e, i, nd, "eps must be > 0");
            shp[0] = nd->ic;
            if (add_param(m, nd, "weight", 1, shp, 0, 0, &nd->w_off) ||
                add_param(m, nd, "bias", 1, shp, 0, 0, &nd->b_off))
                return too_big(e, i, nd, "its parameters");
            nd->w_n = nd->b_n = (size_t)nd->ic;
            if (nd->kind == NN_BATCHNORM) {
                size_t dummy;
                if (add_param(m, nd, "running_mean", 1, shp, 0, 1, &nd->s_off) ||
                    add_param(m, nd, "running_var", 1, shp, 0, 1, &dummy))
                    return too_big(e, i, nd, "its running statistics");
                nd->s_n = 2 * (size_t)nd->ic;
                z->fixed += 2 * (size_t)nd->ic;
            } else if (add_example(z, &z->save, 2 * (size_t)nd->ih * nd->iw)) {
                return too_big(e, i, nd, "its statistics");
            }
            break;
        case NN_DROPOUT:
            if (!(nd->p >= 0.0f && nd->p < 1.0f)) return layer_error(e, i, nd, "p must be in [0, 1)");
            if (add_example(z, &z->save, (size_t)nd->ih * nd->iw * nd->ic))
                return too_big(e, i, nd, "its mask");
            break;
        case NN_EMBBAG:
            if (nd->vocab <= 0 || nd->units <= 0) return layer_error(e, i, nd, "needs vocab=V and out=D > 0");
            nd->h = nd->w = 1;
            nd->c = nd->units;
            shp[0] = nd->vocab;
            shp[1] = nd->units;
            if (add_param(m, nd, "weight", 2, shp, 1, 0, &nd->w_off))
                return too_big(e, i, nd, "its weight");
            nd->w_n = (size_t)nd->vocab * nd->units;
            break;
        case NN_UPSAMPLE:
            if (nd->factor < 1 || nd->factor > 64) return layer_error(e, i, nd, "factor must be 1..64");
            if ((size_t)nd->ih * nd->factor * nd->iw * nd->factor * nd->ic > NN_MAX_EXAMPLE)
                return too_big(e, i, nd, "its output");
            nd->h = nd->ih * nd->factor;
            nd->w = nd->iw * nd->factor;
            break;
        case NN_FAKEQUANT:
            if (nd->bits < 2 || nd->bits > 16) return layer_error(e, i, nd, "bits must be 2..16");
            if (!(nd->ema >= 0.0f && nd->ema <= 1.0f)) return layer_error(e, i, nd, "ema must be in [0, 1]");
            if (nd->usign && nd->ema == 0.0f) return layer_error(e, i, nd, "unsigned needs ema=M > 0");
            if (nd->ema > 0.0f) {
                shp[0] = 1;
                if (add_param(m, nd, "range", 1, shp, 0, 1, &nd->s_off))
                    return too_big(e, i, nd, "its range");
                nd->s_n = 1;
            }
            break;
        case NN_ADD: {
            if (nd->in2 == -2) return layer_error(e, i, nd, "needs with=NAME (the second input)");
            int h2 = nd->in2 == NN_INPUT ? m->h : m->nodes[nd->in2].h;
            int w2 = nd->in2 == NN_INPUT ? m->w : m->nodes[nd->in2].w;
            int c2 = nd->in2 == NN_INPUT ? m->c : m->nodes[nd->in2].c;
            if (m->tokens && nd->in2 == NN_INPUT) return layer_error(e, i, nd, "cannot add token ids");
            if (h2 != nd->ih || w2 != nd->iw || c2 != nd->ic)
                return layer_error(e, i, nd, "both inputs must have the same shape");
            break;
        }
        case NN_RELU: case NN_GELU: case NN_TANH: case NN_SIGMOID:
        case NN_SOFTMAX: case NN_LOGSOFTMAX:
            break;
        case NN_KIND_COUNT:
            XD_ASSERT(0);
        }
        z->fixed += nd->wbits ? nd->w_n : 0; /* the fake-quantised weights */
        XD_ASSERT(nd->h > 0 && nd->w > 0 && nd->c > 0);
        if (xd_mul3_size((size_t)nd->h, (size_t)nd->w, (size_t)nd->c, &nd->act_n) ||
            add_example(z, &z->act, nd->act_n) || nd->act_n > NN_MAX_EXAMPLE - z->example)
            return too_big(e, i, nd, "its output");
        z->example += nd->act_n; /* and its gradient */
        if (nd->kind == NN_MAXPOOL && add_example(z, &z->isave, nd->act_n))
            return too_big(e, i, nd, "its argmax indices");
    }
    return XD_OK;
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

int nn_node_only_reader(const nn_model *m, int idx)
{
    int readers = 0, reader = -1;
    for (int i = idx + 1; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        int reads = (nd->in == idx) + (nd->kind == NN_ADD && nd->in2 == idx);
        readers += reads;
        if (reads) reader = i;
    }
    return readers == 1 ? reader : -1;
}

/* relu -> maxpool, with nothing else reading the relu, runs as one pass per image (see
 * nn_relu_maxpool_forward): the pool reads the ReLU's output while it is in cache, and backward
 * writes the ReLU's input gradient straight from the pool's. When a conv2d feeds that relu and
 * nothing else, the pass runs inside the convolution's product, image by image as its rows come
 * out (nn_conv2d_relu_maxpool_forward). */
static void plan_fusion(nn_model *m)
{
    for (int r = 0; r < m->n_nodes; r++) {
        nn_node *relu = &m->nodes[r];
        if (relu->kind != NN_RELU) continue;
        int pool = nn_node_only_reader(m, r);
        relu->relu_pool = pool >= 0 && m->nodes[pool].kind == NN_MAXPOOL;
        if (relu->relu_pool && relu->in >= 0 && m->nodes[relu->in].kind == NN_CONV2D &&
            nn_node_only_reader(m, relu->in) == r)
            m->nodes[relu->in].pool_in_conv = pool;
    }
}

// ----------------------------------------------------------------------------------------------
// build, init, free

/* Parses, infers and checks: everything but the blocks (see nn_model_plan). */
static xd_status plan(nn_model *m, const char *desc, int max_batch, model_sizes *z, xd_err *e)
{
    memset(m, 0, sizeof *m);
    if (max_batch <= 0 || max_batch > NN_MAX_BATCH)
        return xd_fail(e, XD_EARG, "batch size %d out of range (1..%d)", max_batch, NN_MAX_BATCH);
    m->max_batch = max_batch;
    stmt *st;
    int n = split_statements(desc, &st);
    xd_status s = XD_OK;
    if (n < 2) {
        s = xd_fail(e, XD_EARG, "model description: needs an 'input' statement and at least one layer");
        goto out;
    }
    if ((s = parse_input(m, &st[0], e)) != XD_OK) goto out;
    m->n_nodes = n - 1;
    m->nodes = xd_xcalloc((size_t)m->n_nodes, sizeof *m->nodes);
    m->params = xd_xcalloc((size_t)m->n_nodes * 4, sizeof *m->params);
    for (int i = 0; i < m->n_nodes; i++)
        if ((s = parse_layer(m, i, &st[i + 1], e)) != XD_OK) goto out;
    if ((s = infer(m, z, e)) != XD_OK) goto out;
    plan_fusion(m);
    m->desc = nn_model_describe(m);
out:
    free_statements(st, n);
    if (s != XD_OK) nn_model_free(m);
    return s;
}

xd_status nn_model_plan(nn_model *m, const char *desc, int max_batch, xd_err *e)
{
    model_sizes z;
    return plan(m, desc, max_batch, &z, e);
}

/* One of the model's blocks, count * size bytes (count = per_example * max_batch + fixed),
 * 64-byte aligned; XD_ENOMEM naming the block and its size when memory cannot be had. The counts
 * are within the limits, so none of this overflows. */
static xd_status take(const nn_model *m, void **p, size_t per_example, size_t fixed, size_t size,
                      const char *what, xd_err *e)
{
    size_t bytes = (per_example * (size_t)m->max_batch + fixed) * size;
    *p = xd_try_alloc_aligned(bytes);
    if (*p) return XD_OK;
    return xd_fail(e, XD_ENOMEM, "model description: cannot allocate %zu bytes for %s (batches "
                                 "of up to %d examples)", bytes, what, m->max_batch);
}

xd_status nn_model_build(nn_model *m, const char *desc, int max_batch, uint64_t seed, xd_err *e)
{
    model_sizes z;
    xd_status s = plan(m, desc, max_batch, &z, e);
    if (s != XD_OK) return s;
    const size_t F = sizeof(float);
    if ((s = take(m, (void **)&m->param, 0, m->n_param, F, "the parameters", e)) ||
        (s = take(m, (void **)&m->grad, 0, m->n_param, F, "the gradients", e)) ||
        (s = take(m, (void **)&m->state, 0, m->n_state, F, "the running statistics", e)) ||
        (s = take(m, (void **)&m->act_block, z.act, 0, F, "the activations", e)) ||
        (s = take(m, (void **)&m->dact_block, z.act, 0, F, "the activation gradients", e)) ||
        (s = take(m, (void **)&m->save_block, z.save, z.fixed, F, "the values kept for backward", e)) ||
        (s = take(m, (void **)&m->isave_block, z.isave, 0, sizeof(int32_t), "the pooling indices", e))) {
        nn_model_free(m);
        return s;
    }
    if (xd_arena_init(&m->scratch, z.scratch * (size_t)max_batch * F)) {
        s = xd_fail(e, XD_ENOMEM, "model description: cannot allocate %zu bytes for the "
                                  "convolution scratch (batches of up to %d examples)",
                    z.scratch * (size_t)max_batch * F, max_batch);
        nn_model_free(m);
        return s;
    }
    size_t a = 0, sv = 0, isv = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        nd->out = m->act_block + a;
        nd->dout = m->dact_block + a;
        a += (size_t)max_batch * nd->act_n;
        nd->save = m->save_block + sv;
        nd->isave = m->isave_block + isv;
        switch (nd->kind) {
        case NN_CONV2D: {
            nn_conv_shape cs = nn_node_conv_shape(nd, max_batch);
            sv += nn_conv_cols_size(&cs) + nn_conv_wext_size(&cs);
            nd->wpk = conv_train_packed_size(&cs) ? m->save_block + sv : NULL;
            sv += conv_train_packed_size(&cs);
            break;
        }
        case NN_BATCHNORM: sv += 2 * (size_t)nd->ic; break;
        case NN_LAYERNORM: sv += 2 * (size_t)max_batch * nd->ih * nd->iw; break;
        case NN_DROPOUT: sv += (size_t)max_batch * nd->act_n; break;
        case NN_MAXPOOL: isv += (size_t)max_batch * nd->act_n; break;
        default: break;
        }
        if (nd->wbits) {
            nd->wq = m->save_block + sv;
            sv += nd->w_n;
        }
    }
    XD_ASSERT(sv == z.save * (size_t)max_batch + z.fixed && isv == z.isave * (size_t)max_batch);
    m->segs = xd_xcalloc((size_t)m->n_params, sizeof *m->segs);
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].state)
            m->segs[m->n_segs++] = (nn_param_seg){m->params[i].off, m->params[i].n, m->params[i].decay, 0};
    nn_model_init_params(m, seed);
    nn_model_zero_grad(m);
    return XD_OK;
}

void nn_model_init_params(nn_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        xd_rng r = xd_rng_make(seed, (uint64_t)i, XD_RNG_INIT);
        float *w = m->param + nd->w_off, *b = m->param + nd->b_off;
        switch (nd->kind) {
        case NN_LINEAR:
        case NN_CONV2D: {
            /* PyTorch default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
            float bound = 1.0f / sqrtf((float)(nd->w_n / (size_t)nd->units));
            for (size_t j = 0; j < nd->w_n; j++) w[j] = (2.0f * xd_rng_uniform(&r) - 1.0f) * bound;
            for (size_t j = 0; j < nd->b_n; j++) b[j] = (2.0f * xd_rng_uniform(&r) - 1.0f) * bound;
            for (size_t j = 0; j < nd->s_n; j++) m->state[nd->s_off + j] = 1.0f; /* nothing pruned */
            break;
        }
        case NN_BATCHNORM:
        case NN_LAYERNORM:
            for (size_t j = 0; j < nd->w_n; j++) w[j] = 1.0f;
            for (size_t j = 0; j < nd->b_n; j++) b[j] = 0.0f;
            if (nd->kind == NN_BATCHNORM) {
                float *s = m->state + nd->s_off;
                for (int c = 0; c < nd->ic; c++) {
                    s[c] = 0.0f;
                    s[nd->ic + c] = 1.0f;
                }
            }
            break;
        case NN_EMBBAG:
            for (size_t j = 0; j < nd->w_n; j++) w[j] = xd_rng_normal(&r);
            break;
        case NN_FAKEQUANT:
            if (nd->s_n) m->state[nd->s_off] = 0.0f; /* a moving range: not calibrated yet */
            break;
        default:
            break;
        }
    }
}

void nn_model_free(nn_model *m)
{
    nn_qengine_free(m->qengine);
    free(m->nodes);
    free(m->params);
    free(m->segs);
    free(m->param);
    free(m->grad);
    free(m->state);
    free(m->act_block);
    free(m->dact_block);
    free(m->save_block);
    free(m->isave_block);
    free(m->dinput);
    xd_arena_free(&m->scratch);
    free(m->packed);
    free(m->desc);
    memset(m, 0, sizeof *m);
}

void nn_model_zero_grad(nn_model *m)
{
    memset(m->grad, 0, sizeof(float) * (m->n_param ? m->n_param : 1));
}

// ----------------------------------------------------------------------------------------------
// access

int nn_model_find(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0) return i;
    return -1;
}

int nn_model_param_node(const nn_model *m, const char *param_name)
{
    char node[NN_NAME_LEN + 16];
    snprintf(node, sizeof node, "%s", param_name);
    char *dot = strrchr(node, '.');
    if (dot) *dot = '\0';
    return nn_model_find(m, node);
}

const nn_node *nn_model_node(const nn_model *m, int idx) { return &m->nodes[idx]; }

float *nn_model_out(nn_model *m, int idx)
{
    nn_node *nd = &m->nodes[idx];
    if (nd->stale) { /* see nn_node.stale */
        const float *x = nn_node_input(m, nd->in);
        const size_t n = (size_t)m->batch * nd->act_n;
        if (nd->kind == NN_FLATTEN) memcpy(nd->out, x, sizeof(float) * n);
        else nn_relu_forward(nd->out, x, n);
        nd->stale = 0;
    }
    return nd->out;
}

float *nn_model_dout(nn_model *m, int idx)
{
    nn_node *nd = &m->nodes[idx];
    if (!nd->touched) {
        memset(nd->dout, 0, sizeof(float) * (size_t)m->batch * nd->act_n);
        nd->touched = 1;
    }
    return nd->dout;
}

int nn_model_default_head(const nn_model *m)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].head) return i;
    return m->n_nodes - 1;
}

int nn_model_heads(const nn_model *m, int *heads)
{
    int n = 0;
    const int first = nn_model_default_head(m);
    heads[n++] = first;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].head && i != first) heads[n++] = i;
    return n;
}

const nn_param *nn_model_param(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

float *nn_model_param_data(nn_model *m, const nn_param *p)
{
    return (p->state ? m->state : m->param) + p->off;
}

double nn_model_flops(const nn_model *m)
{
    double f = 0.0;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (nd->kind == NN_LINEAR) f += 2.0 * nd->ih * nd->iw * nd->ic * nd->units;
        if (nd->kind == NN_CONV2D) f += 2.0 * nd->h * nd->w * nd->units * nd->k * nd->k * nd->ic;
    }
    return f;
}
