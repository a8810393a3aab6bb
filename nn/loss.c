/* Basic losses (see loss.h). Sums run in double over a fixed order, so they are exact enough to
 * match float64 references and do not depend on the thread count. */
#include "nn/loss.h"

#include <math.h>
#include <stddef.h>

#include "core/runtime.h"
#include "nn/layers.h"

int nn_mask_count(const uint8_t *mask, int B)
{
    if (!mask) return B;
    int m = 0;
    for (int b = 0; b < B; b++) m += mask[b] != 0;
    return m;
}

double nn_row_weight_sum(const uint8_t *mask, const float *rw, int B)
{
    if (!rw) return nn_mask_count(mask, B);
    double w = 0.0;
    for (int b = 0; b < B; b++)
        if (!mask || mask[b]) w += rw[b];
    return w;
}

/* Below this many logits the rows run on one thread: their softmax takes about 4.5 ns a logit
 * (1280 of them 6 us at one thread, 6.3 us at two), and a parallel region costs a few
 * microseconds. Rows go a chunk at a time, in pieces (nn_softmax_piece), one a thread at a
 * time. */
enum { CE_PAR_MIN = 2560, CE_CHUNK = 2048 };

/* rows b0 + i .. of a chunk of n, at most piece of them: their softmax and log-sum-exps */
static void softmax_piece(float *probs, double *lse, const float *logits, int b0, int i, int n,
                          int piece, int K)
{
    const size_t at = (size_t)(b0 + i) * K;
    nn_softmax_rows(probs + at, lse + i, logits + at, n - i < piece ? n - i : piece, K, 1.0);
}

float nn_ce_forward_w(float *probs, const float *logits, const int32_t *labels,
                      const uint8_t *mask, const float *rw, int B, int K)
{
    /* a chunk's rows side by side on the threads (when there are enough logits), their losses
     * summed after in row order: the same bits at any thread count */
    const int par = xd_threads_split((size_t)B * K >= CE_PAR_MIN);
    double total = 0.0, lse[CE_CHUNK];
    for (int b0 = 0; b0 < B; b0 += CE_CHUNK) {
        const int n = B - b0 < CE_CHUNK ? B - b0 : CE_CHUNK, piece = nn_softmax_piece(n, par);
        if (par) {
#pragma omp parallel for schedule(static)
            for (int i = 0; i < n; i += piece) softmax_piece(probs, lse, logits, b0, i, n, piece, K);
        } else { /* no region: see xd_threads_split */
            for (int i = 0; i < n; i += piece) softmax_piece(probs, lse, logits, b0, i, n, piece, K);
        }
        for (int i = 0; i < n; i++) { /* a masked row's loss is 0, its label not read */
            const int b = b0 + i;
            if (!mask || mask[b])
                total += (rw ? rw[b] : 1.0) * (lse[i] - logits[(size_t)b * K + labels[b]]);
        }
    }
    const double W = nn_row_weight_sum(mask, rw, B);
    return W > 0.0 ? (float)(total / W) : 0.0f;
}

void nn_ce_backward_w(float *dlogits, const float *probs, const int32_t *labels,
                      const uint8_t *mask, const float *rw, int B, int K, float weight)
{
    const double W = nn_row_weight_sum(mask, rw, B);
    if (!(W > 0.0)) return;
    const float scale = weight / (float)W;
    for (int b = 0; b < B; b++) {
        if (mask && !mask[b]) continue;
        const float *p = probs + (size_t)b * K;
        float *d = dlogits + (size_t)b * K;
        const float sb = rw ? (float)((double)weight * rw[b] / W) : scale;
        for (int k = 0; k < K; k++) d[k] += sb * (p[k] - (k == labels[b] ? 1.0f : 0.0f));
    }
}

float nn_ce_forward(float *probs, const float *logits, const int32_t *labels, const uint8_t *mask,
                    int B, int K)
{
    return nn_ce_forward_w(probs, logits, labels, mask, NULL, B, K);
}

void nn_ce_backward(float *dlogits, const float *probs, const int32_t *labels,
                    const uint8_t *mask, int B, int K, float weight)
{
    nn_ce_backward_w(dlogits, probs, labels, mask, NULL, B, K, weight);
}

float nn_mse_forward(const float *a, const float *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return n ? (float)(s / (double)n) : 0.0f;
}

void nn_mse_backward(float *da, const float *a, const float *b, int64_t n, float weight)
{
    if (!n) return;
    const float scale = 2.0f * weight / (float)n;
    for (int64_t i = 0; i < n; i++) da[i] += scale * (a[i] - b[i]);
}

int nn_argmax(const float *scores, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (scores[k] > scores[best]) best = k;
    return best;
}

int nn_count_correct(const float *scores, const int32_t *labels, int B, int K)
{
    int c = 0;
    for (int b = 0; b < B; b++) c += nn_argmax(scores + (size_t)b * K, K) == labels[b];
    return c;
}
