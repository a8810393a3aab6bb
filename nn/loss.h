/* Basic losses as forward/backward pairs: softmax cross-entropy (with a label mask) and MSE.
 * Distillation losses (KD, feature, hint, contrastive, ...) live in distill/ and build on these.
 *
 * Reductions follow PyTorch's defaults ("mean"), so values match its golden numbers. Forward
 * returns the scalar loss; backward ADDS weight * d(loss)/d(input) into the gradient buffer. */
#ifndef XD_NN_LOSS_H
#define XD_NN_LOSS_H

#include <stdint.h>

/* Rows that count: those with mask[b] set, or all B when mask is NULL. */
int nn_mask_count(const uint8_t *mask, int B);
/* Row weights (the _w forms): rw (B) weights each row's term and the mean becomes
 * sum_b rw_b l_b / sum_b rw_b over the rows that count, as PyTorch's CrossEntropyLoss(weight=)
 * reduces; rw NULL is the plain mean, bit for bit. The sum of the counted rows' weights (the
 * count when rw is NULL); a sum of 0 gives loss 0 and no gradient. */
double nn_row_weight_sum(const uint8_t *mask, const float *rw, int B);

/* CE = (1/M) sum_{b: mask[b]} -log softmax(logits_b)[y_b], M = number of labelled rows.
 * mask NULL = every row labelled; M == 0 gives loss 0 and no gradient.
 * probs (B, K) is filled with softmax(logits) for backward (and for accuracy).
 * Stable for logits of any finite size (log-sum-exp with the row max subtracted). */
float nn_ce_forward(float *probs, const float *logits, const int32_t *labels, const uint8_t *mask,
                    int B, int K);
/* dlogits += weight * (probs - onehot(y)) / M on labelled rows */
void nn_ce_backward(float *dlogits, const float *probs, const int32_t *labels,
                    const uint8_t *mask, int B, int K, float weight);
/* The same with row weights rw (see nn_row_weight_sum). */
float nn_ce_forward_w(float *probs, const float *logits, const int32_t *labels,
                      const uint8_t *mask, const float *rw, int B, int K);
void nn_ce_backward_w(float *dlogits, const float *probs, const int32_t *labels,
                      const uint8_t *mask, const float *rw, int B, int K, float weight);

/* MSE = (1/n) sum (a - b)^2 */
float nn_mse_forward(const float *a, const float *b, int64_t n);
/* da += weight * 2 (a - b) / n */
void nn_mse_backward(float *da, const float *a, const float *b, int64_t n, float weight);

/* The index of a row's largest score (ties: the first maximum). */
int nn_argmax(const float *scores, int K);

/* Number of rows whose argmax equals the label (ties: the first maximum). */
int nn_count_correct(const float *scores, const int32_t *labels, int B, int K);

#endif
