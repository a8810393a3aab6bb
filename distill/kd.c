/* Distillation losses (see kd.h). Every reduction runs in double over a fixed order (rows, then
 * classes), so values match float64 references to float precision and do not depend on the
 * thread count; the only parallel loop (attention-transfer backward) writes disjoint rows. */
#include "distill/kd.h"

#include <math.h>
#include <stddef.h>

#include "core/status.h"
#include "nn/layers.h"
#include "nn/loss.h"

/* F.normalize's and CosineEmbeddingLoss's epsilon */
#define KD_EPS 1e-12

/* ---------------------------------------------------------------------------------------------
 * soft targets */

void kd_soft_targets(float *q, const float *t, int B, int K, float T)
{
    XD_ASSERT(T > 0.0f);
    nn_softmax_rows(q, NULL, t, B, K, T);
}

void kd_topk_targets(float *q, const float *val, const int32_t *idx, const float *rest, int B,
                     int K, int k, float T)
{
    XD_ASSERT(T > 0.0f && k >= 1 && k <= K);
    for (int b = 0; b < B; b++) {
        const float *v = val + (size_t)b * k;
        const int32_t *ix = idx + (size_t)b * k;
        float *row = q + (size_t)b * K;
        float fill = v[0];
        if (rest) fill = rest[b];
        else
            for (int j = 1; j < k; j++) fill = v[j] < fill ? v[j] : fill;
        /* the row of logits is built in q itself and turned into probabilities in place */
        for (int c = 0; c < K; c++) row[c] = fill;
        for (int j = 0; j < k; j++) {
            XD_ASSERT(ix[j] >= 0 && ix[j] < K);
            row[ix[j]] = v[j];
        }
        nn_softmax_row(row, row, K, T);
    }
}

/* ---------------------------------------------------------------------------------------------
 * KD */

float kd_forward_w(float *ps, const float *s, const float *q, const uint8_t *mask, const float *rw,
                   int B, int K, float T)
{
    XD_ASSERT(T > 0.0f);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *x = s + (size_t)b * K, *qb = q + (size_t)b * K;
        float *p = ps + (size_t)b * K;
        double lse = nn_logsumexp(x, K, T), kl = 0.0;
        for (int k = 0; k < K; k++) {
            double logp = (double)x[k] / T - lse;
            p[k] = (float)exp(logp);
            /* q log q -> 0 as q -> 0: an underflowed target class contributes nothing */
            if (qb[k] > 0.0f) kl += (double)qb[k] * (log((double)qb[k]) - logp);
        }
        if (!mask || mask[b]) total += (rw ? rw[b] : 1.0) * kl;
    }
    const double W = nn_row_weight_sum(mask, rw, B);
    return W > 0.0 ? (float)((double)T * T * total / W) : 0.0f;
}

float kd_forward(float *ps, const float *s, const float *q, const uint8_t *mask, int B, int K,
                 float T)
{
    return kd_forward_w(ps, s, q, mask, NULL, B, K, T);
}

void kd_backward_w(float *ds, const float *ps, const float *q, const uint8_t *mask,
                   const float *rw, int B, int K, float T, float weight)
{
    const double W = nn_row_weight_sum(mask, rw, B);
    if (!(W > 0.0)) return;
    const float scale = (float)((double)weight * T / W);
    for (int b = 0; b < B; b++) {
        if (mask && !mask[b]) continue;
        const float *p = ps + (size_t)b * K, *qb = q + (size_t)b * K;
        float *d = ds + (size_t)b * K;
        const float sb = rw ? (float)((double)weight * T * rw[b] / W) : scale;
        for (int k = 0; k < K; k++) d[k] += sb * (p[k] - qb[k]);
    }
}

void kd_backward(float *ds, const float *ps, const float *q, const uint8_t *mask, int B, int K,
                 float T, float weight)
{
    kd_backward_w(ds, ps, q, mask, NULL, B, K, T, weight);
}

void kd_backward_target_w(float *dt, const float *t, const float *s, const uint8_t *mask,
                          const float *rw, int B, int K, float T, float weight)
{
    const double W = nn_row_weight_sum(mask, rw, B);
    if (!(W > 0.0)) return;
    for (int b = 0; b < B; b++) {
        if (mask && !mask[b]) continue;
        const double scale = rw ? (double)weight * T * rw[b] / W : (double)weight * T / W;
        const float *tb = t + (size_t)b * K, *sb = s + (size_t)b * K;
        float *d = dt + (size_t)b * K;
        const double lt = nn_logsumexp(tb, K, T), ls = nn_logsumexp(sb, K, T);
        double kl = 0.0;
        for (int k = 0; k < K; k++) {
            const double logq = (double)tb[k] / T - lt;
            kl += exp(logq) * (logq - ((double)sb[k] / T - ls));
        }
        for (int k = 0; k < K; k++) {
            const double logq = (double)tb[k] / T - lt;
            d[k] += (float)(scale * exp(logq) * ((logq - ((double)sb[k] / T - ls)) - kl));
        }
    }
}

void kd_backward_target(float *dt, const float *t, const float *s, const uint8_t *mask, int B,
                        int K, float T, float weight)
{
    kd_backward_target_w(dt, t, s, mask, NULL, B, K, T, weight);
}

float kd_hinton_forward_w(float *ps, float *probs, const float *s, const float *q,
                          const int32_t *labels, const uint8_t *label_mask, const float *rw, int B,
                          int K, float T, float alpha)
{
    double kd = kd_forward_w(ps, s, q, NULL, rw, B, K, T);
    double ce = nn_ce_forward_w(probs, s, labels, label_mask, rw, B, K);
    return (float)(alpha * kd + (1.0 - alpha) * ce);
}

float kd_hinton_forward(float *ps, float *probs, const float *s, const float *q,
                        const int32_t *labels, const uint8_t *label_mask, int B, int K, float T,
                        float alpha)
{
    return kd_hinton_forward_w(ps, probs, s, q, labels, label_mask, NULL, B, K, T, alpha);
}

void kd_hinton_backward_w(float *ds, const float *ps, const float *probs, const float *q,
                          const int32_t *labels, const uint8_t *label_mask, const float *rw, int B,
                          int K, float T, float alpha, float weight)
{
    if (alpha != 0.0f) kd_backward_w(ds, ps, q, NULL, rw, B, K, T, weight * alpha);
    if (alpha != 1.0f)
        nn_ce_backward_w(ds, probs, labels, label_mask, rw, B, K, weight * (1.0f - alpha));
}

void kd_hinton_backward(float *ds, const float *ps, const float *probs, const float *q,
                        const int32_t *labels, const uint8_t *label_mask, int B, int K, float T,
                        float alpha, float weight)
{
    kd_hinton_backward_w(ds, ps, probs, q, labels, label_mask, NULL, B, K, T, alpha, weight);
}

/* ---------------------------------------------------------------------------------------------
 * soft-target cross-entropy */

float kd_soft_ce_forward(float *p, const float *s, const float *q, const uint8_t *mask, int B,
                         int K)
{
    enum { PIECE = 64 }; /* rows whose softmax is taken at once */
    double total = 0.0, lse[PIECE];
    for (int b0 = 0; b0 < B; b0 += PIECE) {
        const int n = B - b0 < PIECE ? B - b0 : PIECE;
        nn_softmax_rows(p + (size_t)b0 * K, lse, s + (size_t)b0 * K, n, K, 1.0);
        for (int i = 0; i < n; i++) {
            const int b = b0 + i;
            const float *x = s + (size_t)b * K, *qb = q + (size_t)b * K;
            double l = 0.0;
            for (int k = 0; k < K; k++) l += (double)qb[k] * (lse[i] - x[k]); /* -q log softmax */
            if (!mask || mask[b]) total += l;
        }
    }
    int M = nn_mask_count(mask, B);
    return M ? (float)(total / M) : 0.0f;
}

void kd_soft_ce_backward(float *ds, const float *p, const float *q, const uint8_t *mask, int B,
                         int K, float weight)
{
    int M = nn_mask_count(mask, B);
    if (!M) return;
    const double scale = (double)weight / M;
    for (int b = 0; b < B; b++) {
        if (mask && !mask[b]) continue;
        const float *pb = p + (size_t)b * K, *qb = q + (size_t)b * K;
        float *d = ds + (size_t)b * K;
        double sq = 0.0;
        for (int k = 0; k < K; k++) sq += qb[k];
        for (int k = 0; k < K; k++) d[k] += (float)(scale * ((double)pb[k] * sq - qb[k]));
    }
}

/* ---------------------------------------------------------------------------------------------
 * cosine embedding loss */

typedef struct {
    double cos, na, nb; /* na, nb: squared norms plus eps */
} cos_row;

static cos_row cos_of(const float *a, const float *b, int D)
{
    double dot = 0.0, na = 0.0, nb = 0.0;
    for (int i = 0; i < D; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    na += KD_EPS;
    nb += KD_EPS;
    return (cos_row){dot / sqrt(na * nb), na, nb};
}

float kd_cos_forward(const float *a, const float *b, const int32_t *target, const uint8_t *mask,
                     int B, int D, float margin)
{
    double total = 0.0;
    for (int r = 0; r < B; r++) {
        if (mask && !mask[r]) continue;
        double c = cos_of(a + (size_t)r * D, b + (size_t)r * D, D).cos;
        total += (!target || target[r] > 0) ? 1.0 - c : fmax(0.0, c - margin);
    }
    int M = nn_mask_count(mask, B);
    return M ? (float)(total / M) : 0.0f;
}

void kd_cos_backward(float *da, float *db, const float *a, const float *b, const int32_t *target,
                     const uint8_t *mask, int B, int D, float margin, float weight)
{
    int M = nn_mask_count(mask, B);
    if (!M) return;
    for (int r = 0; r < B; r++) {
        if (mask && !mask[r]) continue;
        const float *ar = a + (size_t)r * D, *br = b + (size_t)r * D;
        cos_row c = cos_of(ar, br, D);
        /* dl/dcos: -1 for similar pairs, +1 for dissimilar ones at or above the margin */
        double dl = (!target || target[r] > 0) ? -1.0 : (c.cos >= margin ? 1.0 : 0.0);
        if (dl == 0.0) continue;
        double g = (double)weight * dl / M, inv = 1.0 / sqrt(c.na * c.nb);
        if (da)
            for (int i = 0; i < D; i++)
                da[(size_t)r * D + i] += (float)(g * (br[i] * inv - c.cos * ar[i] / c.na));
        if (db)
            for (int i = 0; i < D; i++)
                db[(size_t)r * D + i] += (float)(g * (ar[i] * inv - c.cos * br[i] / c.nb));
    }
}

/* ---------------------------------------------------------------------------------------------
 * attention transfer */

/* Q_p = sum_c F_pc^2 at one position */
static double at_q(const float *f, int C)
{
    double s = 0.0;
    for (int c = 0; c < C; c++) s += (double)f[c] * f[c];
    return s;
}

/* max(|Q|_2, eps) of one example */
static double at_norm(const float *f, int HW, int C)
{
    double s = 0.0;
    for (int p = 0; p < HW; p++) {
        double q = at_q(f + (size_t)p * C, C);
        s += q * q;
    }
    return fmax(sqrt(s), KD_EPS);
}

float kd_at_forward(const float *fs, const float *ft, const uint8_t *mask, int B, int HW, int Cs,
                    int Ct)
{
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        if (mask && !mask[b]) continue;
        const float *xs = fs + (size_t)b * HW * Cs, *xt = ft + (size_t)b * HW * Ct;
        double ns = at_norm(xs, HW, Cs), nt = at_norm(xt, HW, Ct), d2 = 0.0;
        for (int p = 0; p < HW; p++) {
            double d = at_q(xs + (size_t)p * Cs, Cs) / ns - at_q(xt + (size_t)p * Ct, Ct) / nt;
            d2 += d * d;
        }
        total += d2;
    }
    int M = nn_mask_count(mask, B);
    return M ? (float)(total / M) : 0.0f;
}

void kd_at_backward(float *dfs, const float *fs, const float *ft, const uint8_t *mask, int B,
                    int HW, int Cs, int Ct, float weight)
{
    int M = nn_mask_count(mask, B);
    if (!M) return;
    const double g2 = 2.0 / M;
#pragma omp parallel for schedule(static) if ((double)B * HW * (Cs + Ct) > 65536.0)
    for (int b = 0; b < B; b++) {
        if (mask && !mask[b]) continue;
        const float *xs = fs + (size_t)b * HW * Cs, *xt = ft + (size_t)b * HW * Ct;
        float *d = dfs + (size_t)b * HW * Cs;
        double ag = 0.0, ns = at_norm(xs, HW, Cs), nt = at_norm(xt, HW, Ct);
        /* below eps the normalisation is a fixed division (max picks eps): no projection */
        int clamped = ns <= KD_EPS;
        for (int p = 0; p < HW; p++) {
            double as = at_q(xs + (size_t)p * Cs, Cs) / ns;
            ag += as * g2 * (as - at_q(xt + (size_t)p * Ct, Ct) / nt); /* A_s . g */
        }
        for (int p = 0; p < HW; p++) {
            const float *f = xs + (size_t)p * Cs;
            double as = at_q(f, Cs) / ns, g = g2 * (as - at_q(xt + (size_t)p * Ct, Ct) / nt);
            double dq = (clamped ? g : g - as * ag) / ns;
            double k2 = 2.0 * weight * dq;
            for (int c = 0; c < Cs; c++) d[(size_t)p * Cs + c] += (float)(k2 * f[c]);
        }
    }
}
