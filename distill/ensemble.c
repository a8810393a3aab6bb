/* Teacher ensembles (see ensemble.h): per-example weights of the teachers and the weighted sum of
 * their distributions, in double over a fixed order (teachers, then classes), so the targets do
 * not depend on the thread count. */
#include "distill/ensemble.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "core/mem.h"
#include "core/status.h"
#include "distill/kd.h"

/* -sum_k r_k log r_k of one row, 0 log 0 = 0 */
static double entropy(const float *r, int K)
{
    double h = 0.0;
    for (int k = 0; k < K; k++)
        if (r[k] > 0.0f) h -= (double)r[k] * log((double)r[k]);
    return h;
}

void ensemble_weights(float *w, recipe_combine c, const float *fixed, const float *const *r,
                      float tau, int n, int B, int K)
{
    XD_ASSERT(n >= 1);
    switch (c) {
    case RECIPE_COMBINE_MEAN:
        for (int i = 0; i < n * B; i++) w[i] = (float)(1.0 / n);
        return;
    case RECIPE_COMBINE_WEIGHTS: {
        double sum = 0.0;
        for (int t = 0; t < n; t++) sum += fixed[t];
        XD_ASSERT(sum > 0.0);
        for (int t = 0; t < n; t++)
            for (int b = 0; b < B; b++) w[(size_t)t * B + b] = (float)(fixed[t] / sum);
        return;
    }
    case RECIPE_COMBINE_ENTROPY:
        XD_ASSERT(tau > 0.0f);
        for (int b = 0; b < B; b++) {
            /* a softmax over the teachers of -H / tau, shifted by the smallest entropy */
            double h[RECIPE_MAX_TEACHERS], hmin = INFINITY, sum = 0.0;
            XD_ASSERT(n <= RECIPE_MAX_TEACHERS);
            for (int t = 0; t < n; t++) {
                h[t] = entropy(r[t] + (size_t)b * K, K);
                hmin = h[t] < hmin ? h[t] : hmin;
            }
            for (int t = 0; t < n; t++) sum += h[t] = exp(-(h[t] - hmin) / tau);
            for (int t = 0; t < n; t++) w[(size_t)t * B + b] = (float)(h[t] / sum);
        }
        return;
    case RECIPE_COMBINE_COUNT:
        break;
    }
    XD_ASSERT(0);
}

void ensemble_combine(float *q, const float *const *p, const float *w, int n, int B, int K)
{
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            double v = 0.0;
            for (int t = 0; t < n; t++) v += (double)w[(size_t)t * B + b] * p[t][(size_t)b * K + k];
            q[(size_t)b * K + k] = (float)v;
        }
}

void ensemble_buf_init(ensemble_buf *eb, int n, int B, int K, int kt_max)
{
    XD_ASSERT(n >= 1 && n <= RECIPE_MAX_TEACHERS && B >= 1 && K >= 1 && kt_max >= 1);
    const size_t nbk = (size_t)n * (size_t)B * (size_t)K;
    *eb = (ensemble_buf){.n = n, .B = B, .K = K};
    eb->p = xd_xmalloc(sizeof(float) * nbk);
    eb->r = xd_xmalloc(sizeof(float) * nbk);
    eb->tq = xd_xmalloc(sizeof(float) * (size_t)B * (size_t)kt_max);
    eb->w = xd_xmalloc(sizeof(float) * (size_t)n * (size_t)B);
}

void ensemble_buf_free(ensemble_buf *eb)
{
    free(eb->p);
    free(eb->r);
    free(eb->tq);
    free(eb->w);
    *eb = (ensemble_buf){0};
}

/* out (B, K) = softmax(logits / T) of one member, through its map */
static void member_dist(float *out, const ensemble_member *m, float *tq, int B, int K, float T)
{
    if (!m->lm) {
        XD_ASSERT(m->kt == K);
        kd_soft_targets(out, m->logits, B, K, T);
        return;
    }
    XD_ASSERT(m->lm->kt == m->kt && m->lm->ks == K);
    kd_soft_targets(tq, m->logits, B, m->kt, T);
    align_labelmap_apply(out, tq, m->lm, B);
}

void ensemble_target(float *q, const ensemble_member *m, int B, float T, recipe_combine c,
                     const float *fixed, float tau, ensemble_buf *eb)
{
    const int n = eb->n, K = eb->K;
    XD_ASSERT(B >= 1 && B <= eb->B);
    /* confidence is read at temperature 1: softening the targets does not flatten the weights */
    const int own_r = c == RECIPE_COMBINE_ENTROPY && T != 1.0f;
    const float *p[RECIPE_MAX_TEACHERS], *r[RECIPE_MAX_TEACHERS];
    for (int t = 0; t < n; t++) {
        float *pt = eb->p + (size_t)t * B * K, *rt = eb->r + (size_t)t * B * K;
        member_dist(pt, &m[t], eb->tq, B, K, T);
        if (own_r) member_dist(rt, &m[t], eb->tq, B, K, 1.0f);
        p[t] = pt;
        r[t] = own_r ? rt : pt;
    }
    ensemble_weights(eb->w, c, fixed, r, tau, n, B, K);
    ensemble_combine(q, p, eb->w, n, B, K);
}
