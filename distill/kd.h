/* Distillation losses as forward/backward pairs over raw float buffers, in the style of
 * nn/loss.h: forward returns the scalar loss (summed in double over a fixed order, so the value
 * does not depend on threads and matches float64 references to float precision); backward ADDS
 * weight * d(loss)/d(student input) into the student's gradient buffer.
 *
 * Logits are rows of (B, K). Every softmax subtracts the row maximum and works in double, so logits
 * of +-1000 (at any temperature T > 0) give finite losses and gradients. An optional per-example
 * mask (NULL = every row) selects the rows that count; the mean is over the M selected rows and
 * M == 0 gives loss 0 and no gradient.
 *
 * Soft targets are computed once per batch by the caller (kd_soft_targets or kd_topk_targets) and
 * passed in, so a teacher-output cache can hold either logits or the probabilities themselves.
 * Feature MSE is nn_mse_forward / nn_mse_backward from nn/loss.h (not repeated here). */
#ifndef XD_DISTILL_KD_H
#define XD_DISTILL_KD_H

#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * soft targets */

/* q = softmax(t / T) per row; q, t (B, K). T > 0. */
void kd_soft_targets(float *q, const float *t, int B, int K, float T);

/* Teacher distribution rebuilt from the k largest of K logits (a top-k cache): the row of K
 * logits is val[j] at class idx[j] (j < k) and rest[b] at each of the K - k other classes, and
 * q = softmax(row / T). So the kept classes keep their exact relative odds and the remaining mass
 * is spread uniformly over the K - k other classes.
 * rest[b] is the log-mean-exp of the logits that were not kept, log((1/(K-k)) sum exp(t_c)),
 * which makes q exact at T = 1 (and at every T when the dropped logits are equal); rest == NULL
 * uses the smallest kept logit instead (an upper bound on the dropped mass). With k == K there
 * is nothing to spread and q equals kd_soft_targets of the full row bit for bit.
 * val, idx (B, k); rest (B) or NULL; q (B, K); idx entries distinct and in [0, K) (the cache
 * checks this when it loads a file). */
void kd_topk_targets(float *q, const float *val, const int32_t *idx, const float *rest, int B,
                     int K, int k, float T);

/* ---------------------------------------------------------------------------------------------
 * KD (Hinton et al. 2015):
 *   KD = T^2 (1/M) sum_{b in mask} KL(q_b || softmax(s_b / T)),  q_b = softmax(t_b / T)
 * with 0 log 0 = 0 (classes whose target probability underflowed contribute nothing).
 * ps (B, K) is filled with softmax(s / T) for backward. */
float kd_forward(float *ps, const float *s, const float *q, const uint8_t *mask, int B, int K,
                 float T);
/* ds += weight * (T / M) (ps - q) on selected rows */
void kd_backward(float *ds, const float *ps, const float *q, const uint8_t *mask, int B, int K,
                 float T, float weight);

/* The gradient of the same KD with respect to the target's logits t (q = softmax(t / T)), for a
 * target that learns too (a peer that is not detached):
 *   dt += weight * (T / M) q (log q - log softmax(s / T) - KL_b)   on selected rows
 * computed in double from both rows of logits. */
void kd_backward_target(float *dt, const float *t, const float *s, const uint8_t *mask, int B,
                        int K, float T, float weight);

/* Hinton's total: L = alpha KD + (1 - alpha) CE, CE = nn_ce_forward on the hard labels.
 * KD counts every row (a teacher has soft targets for unlabelled examples too); label_mask
 * (NULL = all labelled) only selects the rows of CE. ps and probs (B, K) are filled for backward
 * (softmax(s / T) and softmax(s)). */
float kd_hinton_forward(float *ps, float *probs, const float *s, const float *q,
                        const int32_t *labels, const uint8_t *label_mask, int B, int K, float T,
                        float alpha);
/* ds += weight * (alpha dKD/ds + (1 - alpha) dCE/ds) */
void kd_hinton_backward(float *ds, const float *ps, const float *probs, const float *q,
                        const int32_t *labels, const uint8_t *label_mask, int B, int K, float T,
                        float alpha, float weight);

/* KD, its target gradient and Hinton's total with row weights rw (B), as nn_ce_forward_w (see
 * nn_row_weight_sum): each row's term is weighted by rw_b and the mean becomes the weighted mean
 * over the rows that count (every row for KD, the labelled rows for Hinton's CE part). rw NULL
 * gives the functions above bit for bit. */
float kd_forward_w(float *ps, const float *s, const float *q, const uint8_t *mask, const float *rw,
                   int B, int K, float T);
void kd_backward_w(float *ds, const float *ps, const float *q, const uint8_t *mask,
                   const float *rw, int B, int K, float T, float weight);
void kd_backward_target_w(float *dt, const float *t, const float *s, const uint8_t *mask,
                          const float *rw, int B, int K, float T, float weight);
float kd_hinton_forward_w(float *ps, float *probs, const float *s, const float *q,
                          const int32_t *labels, const uint8_t *label_mask, const float *rw, int B,
                          int K, float T, float alpha);
void kd_hinton_backward_w(float *ds, const float *ps, const float *probs, const float *q,
                          const int32_t *labels, const uint8_t *label_mask, const float *rw, int B,
                          int K, float T, float alpha, float weight);

/* ---------------------------------------------------------------------------------------------
 * Soft-target cross-entropy with given probabilities (targets from a label-space map):
 *   L = (1/M) sum_{b in mask} -sum_k q_bk log softmax(s_b)_k
 * q need not sum to 1. p (B, K) is filled with softmax(s) for backward. */
float kd_soft_ce_forward(float *p, const float *s, const float *q, const uint8_t *mask, int B,
                         int K);
/* ds += weight * (1/M) (p * sum_k q_k - q) on selected rows (= p - q when q sums to 1) */
void kd_soft_ce_backward(float *ds, const float *p, const float *q, const uint8_t *mask, int B,
                         int K, float weight);

/* ---------------------------------------------------------------------------------------------
 * Cosine embedding loss (PyTorch's CosineEmbeddingLoss, mean reduction) between rows of a
 * (student) and b (teacher), (B, D):
 *   cos = a.b / sqrt((|a|^2 + eps)(|b|^2 + eps)),  eps = 1e-12
 *   l_b = 1 - cos               for target +1
 *   l_b = max(0, cos - margin)  for target -1 (gradient passes where cos >= margin, as PyTorch)
 *   L   = (1/M) sum_{b in mask} l_b
 * target (B): > 0 means +1, anything else -1; NULL = all +1. */
float kd_cos_forward(const float *a, const float *b, const int32_t *target, const uint8_t *mask,
                     int B, int D, float margin);
/* da += weight dL/da and db += weight dL/db (either NULL when not needed):
 * dcos/da = b / sqrt(na nb) - cos a / na, na = |a|^2 + eps, nb = |b|^2 + eps */
void kd_cos_backward(float *da, float *db, const float *a, const float *b, const int32_t *target,
                     const uint8_t *mask, int B, int D, float margin, float weight);

/* ---------------------------------------------------------------------------------------------
 * Attention transfer (Zagoruyko & Komodakis 2017) between feature maps of the same spatial size
 * (NHWC; channel counts may differ): fs (B, HW, Cs), ft (B, HW, Ct), HW = H * W.
 *   Q(F)_p = sum_c F_pc^2,  A(F) = Q / max(|Q|_2, 1e-12)   (unit L2 norm per example)
 *   AT = (1/M) sum_{b in mask} |A(fs_b) - A(ft_b)|_2^2      (squared norm, mean over examples)
 * This is the reference code's (A_s - A_t).pow(2).mean() times HW (its mean also divides by the
 * HW positions). The maps are recomputed in backward rather than saved: no buffers to size. */
float kd_at_forward(const float *fs, const float *ft, const uint8_t *mask, int B, int HW, int Cs,
                    int Ct);
/* dfs += weight dAT/dfs:  dAT/dQ = (g - A (A.g)) / |Q|, g = (2/M)(A_s - A_t);  dQ/dF = 2 F
 * (below |Q| = 1e-12 the normalisation is a fixed division by 1e-12 and the projection drops) */
void kd_at_backward(float *dfs, const float *fs, const float *ft, const uint8_t *mask, int B,
                    int HW, int Cs, int Ct, float weight);

#endif
