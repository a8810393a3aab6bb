/* Magnitude pruning: masks as model state, their schedule, and keeping pruned weights at zero
 * (see prune.h). */
#include "nn/prune.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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
