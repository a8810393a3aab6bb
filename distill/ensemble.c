/* Teacher ensembles (see ensemble.h): per-example weights of the teachers and the weighted sum of
 * their distributions, in double over a fixed order (teachers, then classes), so the targets do
 * not depend on the thread count. */
#include "distill/ensemble.h"

#include <math.h>
#include <stddef.h>

#include "core/status.h"

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
