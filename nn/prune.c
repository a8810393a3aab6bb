/* Magnitude pruning: masks as model state, their schedule, and keeping pruned weights at zero
 * (see prune.h). */
#include "nn/prune.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

const char *const nn_prune_scope_names[] = {"layer", "global"};
static_assert(sizeof nn_prune_scope_names / sizeof *nn_prune_scope_names == NN_PRUNE_SCOPE_COUNT,
              "name every scope");

float nn_prune_at(const nn_prune_plan *p, int epoch)
{
    if (!(p->sparsity > 0.0f)) return -1.0f;
    const int N = p->steps, start = p->start_epoch - 1, span = p->end_epoch - p->start_epoch;
    for (int j = 1; j <= N; j++) {
        /* round((j - 1) * span / (N - 1)), half up, in integers */
        const int at = N == 1 ? start : start + ((j - 1) * span * 2 + (N - 1)) / (2 * (N - 1));
        if (at != epoch) continue;
        const double left = 1.0 - (double)j / N;
        return (float)(p->sparsity * (1.0 - left * left * left));
    }
    return -1.0f;
}

static int is_layer(nn_kind k) { return k == NN_LINEAR || k == NN_CONV2D; }

xd_status nn_prune_desc(const char *desc, char **out, xd_err *e)
{
    *out = NULL;
    nn_model m;
    xd_status s = nn_model_plan(&m, desc, 1, e);
    if (s != XD_OK) return s;
    int layers = 0;
    for (int i = 0; i < m.n_nodes; i++)
        if (is_layer(m.nodes[i].kind)) {
            m.nodes[i].prune = 1;
            layers++;
        }
    if (layers) *out = nn_model_describe(&m);
    else s = xd_fail(e, XD_EARG, "prune: the model has no linear or conv2d layer");
    nn_model_free(&m);
    return s;
}

int nn_prune_model_has(const nn_model *m)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].prune) return 1;
    return 0;
}

/* A masked weight by the order it is pruned in: pruned ones first (key -1), then by magnitude,
 * then by position. */
typedef struct {
    float key;
    int node;
    size_t j;
} ranked;

static int ranked_cmp(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->node != y->node) return x->node < y->node ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* Ranks the weights of nodes lo..hi-1 that carry masks into r; returns their count. */
static size_t rank_weights(const nn_model *m, int lo, int hi, ranked *r)
{
    size_t n = 0;
    for (int i = lo; i < hi; i++) {
        const nn_node *nd = &m->nodes[i];
        if (!nd->prune) continue;
        const float *w = m->param + nd->w_off, *mask = m->state + nd->s_off;
        for (size_t j = 0; j < nd->w_n; j++)
            r[n++] = (ranked){mask[j] == 0.0f ? -1.0f : fabsf(w[j]), i, j};
    }
    qsort(r, n, sizeof *r, ranked_cmp);
    return n;
}

/* Prunes the first round(sparsity * n) of the n ranked weights and keeps the rest. */
static void mask_ranked(nn_model *m, const ranked *r, size_t n, float sparsity)
{
    const size_t cut = (size_t)llround((double)sparsity * (double)n);
    for (size_t t = 0; t < n; t++) {
        const nn_node *nd = &m->nodes[r[t].node];
        m->state[nd->s_off + r[t].j] = t < cut ? 0.0f : 1.0f;
    }
}

void nn_prune_update(nn_model *m, float sparsity, nn_prune_scope scope)
{
    size_t total = 0;
    for (int i = 0; i < m->n_nodes; i++) total += m->nodes[i].prune ? m->nodes[i].w_n : 0;
    ranked *r = xd_xmalloc((total ? total : 1) * sizeof *r);
    if (scope == NN_PRUNE_GLOBAL) {
        mask_ranked(m, r, rank_weights(m, 0, m->n_nodes, r), sparsity);
    } else {
        for (int i = 0; i < m->n_nodes; i++)
            if (m->nodes[i].prune) mask_ranked(m, r, rank_weights(m, i, i + 1, r), sparsity);
    }
    free(r);
    nn_prune_apply(m, NULL);
}

void nn_prune_apply(nn_model *m, nn_optimizer *o)
{
    XD_ASSERT(!o || o->n == m->n_param);
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (!nd->prune) continue;
        const float *mask = m->state + nd->s_off;
        float *w = m->param + nd->w_off;
        float *om = o && o->m ? o->m + nd->w_off : NULL, *ov = o && o->v ? o->v + nd->w_off : NULL;
        for (size_t j = 0; j < nd->w_n; j++) {
            if (mask[j] != 0.0f) continue;
            w[j] = 0.0f;
            if (om) om[j] = 0.0f;
            if (ov) ov[j] = 0.0f;
        }
    }
}

double nn_prune_sparsity(const nn_model *m)
{
    size_t n = 0, pruned = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (!nd->prune) continue;
        n += nd->w_n;
        for (size_t j = 0; j < nd->w_n; j++) pruned += m->state[nd->s_off + j] == 0.0f;
    }
    return n ? (double)pruned / (double)n : 0.0;
}

// ----------------------------------------------------------------------------------------------
// structured (channel) pruning

/* Kinds whose output channel c is computed from input channel c alone. */
static int channelwise(nn_kind k)
{
    switch (k) {
    case NN_RELU: case NN_GELU: case NN_TANH: case NN_SIGMOID: case NN_MAXPOOL: case NN_AVGPOOL:
    case NN_GAP: case NN_BATCHNORM: case NN_DROPOUT: case NN_UPSAMPLE: case NN_FAKEQUANT:
        return 1;
    default:
        return 0;
    }
}

/* The one node that reads node i, or -1 when none or several do. */
static int sole_reader(const nn_model *m, int i)
{
    int r = -1, n = 0;
    for (int j = i + 1; j < m->n_nodes; j++)
        if (m->nodes[j].in == i || (m->nodes[j].kind == NN_ADD && m->nodes[j].in2 == i)) {
            r = j;
            n++;
        }
    return n == 1 ? r : -1;
}

/* Whether conv2d i's output reaches one conv2d or linear and nothing else (see prune.h). */
static int channels_can_go(const nn_model *m, int i)
{
    for (int at = i;;) {
        if (m->nodes[at].head) return 0;
        const int j = sole_reader(m, at);
        if (j < 0) return 0;
        const nn_kind k = m->nodes[j].kind;
        if (k == NN_CONV2D) return m->nodes[at].kind != NN_FLATTEN;
        if (k == NN_LINEAR) return 1;
        if (!channelwise(k) && k != NN_FLATTEN) return 0;
        if (m->nodes[at].kind == NN_FLATTEN) return 0; /* a flatten is read by the layer only */
        at = j;
    }
}

/* The kept output channels of conv2d nd, by filter L1 norm, in channel order; returns the count. */
static int keep_channels(const nn_model *m, const nn_node *nd, float fraction, int *keep)
{
    const int OC = nd->units;
    const size_t per = nd->w_n / (size_t)OC;
    ranked *r = xd_xmalloc(sizeof *r * (size_t)OC);
    for (int c = 0; c < OC; c++) {
        double l1 = 0.0;
        for (size_t j = 0; j < per; j++) l1 += fabsf(m->param[nd->w_off + (size_t)c * per + j]);
        /* largest first; a later channel goes before an earlier one of the same norm */
        r[c] = (ranked){(float)-l1, 0, (size_t)(OC - 1 - c)};
    }
    qsort(r, (size_t)OC, sizeof *r, ranked_cmp);
    int n = OC - (int)llround((double)fraction * OC);
    if (n < 1) n = 1;
    uint8_t *kept = xd_xcalloc((size_t)OC, 1);
    for (int t = 0; t < n; t++) kept[OC - 1 - (int)r[t].j] = 1;
    for (int c = 0, k = 0; c < OC; c++)
        if (kept[c]) keep[k++] = c;
    free(kept);
    free(r);
    return n;
}

/* dst = src (n0, n1, n2) with only the l0 (k0 of them; NULL: all) of the first index and the l2
 * of the last. */
static void copy_kept(float *dst, const float *src, size_t n0, const int *l0, size_t k0, size_t n1,
                      size_t n2, const int *l2, size_t k2)
{
    for (size_t a = 0; a < (l0 ? k0 : n0); a++) {
        const float *s0 = src + (size_t)(l0 ? (size_t)l0[a] : a) * n1 * n2;
        for (size_t b = 0; b < n1; b++)
            for (size_t c = 0; c < (l2 ? k2 : n2); c++)
                *dst++ = s0[b * n2 + (l2 ? (size_t)l2[c] : c)];
    }
}

xd_status nn_prune_channels(nn_model *out, const nn_model *src, float fraction, int max_batch,
                            int *n_pruned, xd_err *e)
{
    if (!(fraction >= 0.0f && fraction < 1.0f))
        return xd_fail(e, XD_EARG, "prune: the share of channels must be in [0, 1), not %g",
                       (double)fraction);
    const int N = src->n_nodes;
    int **ch = xd_xcalloc((size_t)N, sizeof *ch); /* each node's kept output channels, NULL: all */
    int *nch = xd_xcalloc((size_t)N, sizeof *nch);
    uint8_t *own = xd_xcalloc((size_t)N, 1);
    nn_node *nodes = xd_xmalloc(sizeof *nodes * (size_t)N);
    memcpy(nodes, src->nodes, sizeof *nodes * (size_t)N);
    *n_pruned = 0;
    for (int i = 0; i < N; i++) {
        const nn_node *nd = &src->nodes[i];
        const int in = nd->in;
        if (nd->kind == NN_CONV2D && fraction > 0.0f && channels_can_go(src, i)) {
            ch[i] = xd_xmalloc(sizeof(int) * (size_t)nd->units);
            nch[i] = keep_channels(src, nd, fraction, ch[i]);
            own[i] = 1;
            nodes[i].units = nch[i];
            ++*n_pruned;
        } else if (in >= 0 && ch[in] && channelwise(nd->kind)) {
            ch[i] = ch[in];
            nch[i] = nch[in];
        } else if (in >= 0 && ch[in] && nd->kind == NN_FLATTEN) {
            /* position p's kept channels at p * c + channel */
            const int P = nd->ih * nd->iw;
            ch[i] = xd_xmalloc(sizeof(int) * (size_t)P * (size_t)nch[in]);
            nch[i] = P * nch[in];
            own[i] = 1;
            for (int p = 0, k = 0; p < P; p++)
                for (int c = 0; c < nch[in]; c++) ch[i][k++] = p * nd->ic + ch[in][c];
        }
    }
    nn_model shape = *src;
    shape.nodes = nodes;
    char *desc = nn_model_describe(&shape);
    xd_status s = nn_model_build(out, desc, max_batch, 0, e);
    free(desc);
    for (int i = 0; i < N && s == XD_OK; i++) {
        const nn_node *nd = &src->nodes[i];
        const int *li = nd->in >= 0 ? ch[nd->in] : NULL;
        const size_t ki = nd->in >= 0 ? (size_t)nch[nd->in] : 0;
        for (int t = 0; t < src->n_params; t++) {
            const nn_param *p = &src->params[t];
            if (nn_model_param_node(src, p->name) != i) continue;
            const nn_param *q = nn_model_param(out, p->name);
            XD_ASSERT(q);
            float *dst = nn_model_param_data(out, q);
            const float *from = nn_model_param_data((nn_model *)src, p);
            const int layer = nd->kind == NN_CONV2D || nd->kind == NN_LINEAR;
            if (layer && p->ndim > 1) /* weight, mask: (OC, ..., IC) */
                copy_kept(dst, from, (size_t)nd->units, ch[i], (size_t)nch[i],
                          p->n / ((size_t)nd->units * (size_t)nd->ic), (size_t)nd->ic, li, ki);
            else if (layer) /* bias */
                copy_kept(dst, from, (size_t)nd->units, ch[i], (size_t)nch[i], 1, 1, NULL, 0);
            else if (li && p->n == (size_t)nd->ic) /* batch norm: one per channel */
                copy_kept(dst, from, 1, NULL, 0, 1, p->n, li, ki);
            else
                memcpy(dst, from, sizeof(float) * p->n);
        }
    }
    for (int i = 0; i < N; i++)
        if (own[i]) free(ch[i]);
    free(ch);
    free(nch);
    free(own);
    free(nodes);
    return s;
}
