/* Teacher ensembles: one soft target per example from several teachers' distributions over the
 * student's classes (You et al., "Learning from Multiple Teacher Networks", KDD 2017, distil the
 * average of the teachers' softened outputs; fixed and entropy weights generalise the average).
 *
 * For n teachers, B examples and K classes, with p_t,b the distribution of teacher t on example b
 * (softmax of its logits at the loss's temperature T, moved onto the student's classes by its
 * label map when it has one):
 *
 *   q_b = sum_t w_t,b p_t,b,   w_t,b >= 0,  sum_t w_t,b = 1
 *
 *   mean:     w_t,b = 1 / n                                      (You et al.)
 *   weights:  w_t,b = c_t / sum_u c_u                            (the recipe's c, fixed)
 *   entropy:  w_t,b = exp(-H_t,b / tau) / sum_u exp(-H_u,b / tau)
 *             H_t,b = -sum_k r_t,b,k log r_t,b,k  (nats; 0 log 0 = 0)
 *
 * where r_t,b is teacher t's distribution at temperature 1 on the student's classes (its own
 * confidence, not flattened by T; r = p when T = 1). A teacher that is sure of an example counts
 * more on that example; tau sets how much (tau -> infinity gives the mean). The targets are
 * constants: no gradient reaches any teacher, and the loss on q is the ordinary KD of kd.h. */
#ifndef XD_DISTILL_ENSEMBLE_H
#define XD_DISTILL_ENSEMBLE_H

#include "distill/recipe.h"

/* The weights w (n, B): w[t * B + b]. fixed (n; combine weights) holds c >= 0 with a positive
 * sum; r (n pointers to (B, K); combine entropy) the distributions whose entropy sets the
 * weights, tau > 0. Unused arguments may be NULL. Computed in double. */
void ensemble_weights(float *w, recipe_combine c, const float *fixed, const float *const *r,
                      float tau, int n, int B, int K);

/* q (B, K) = sum_t w[t * B + b] p[t] (B, K) row by row, summed in double in teacher order. */
void ensemble_combine(float *q, const float *const *p, const float *w, int n, int B, int K);

#endif
