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

#include "align/labelmap.h"
#include "distill/recipe.h"

/* One teacher's outputs on the batch. */
typedef struct {
    const float *logits;      /* (B, kt) */
    int kt;                   /* its classes: K unless it has a map */
    const align_labelmap *lm; /* its classes onto the student's K (kt, K), or NULL */
} ensemble_member;

/* Buffers of ensemble_target for n members, B examples, K student classes, kt up to kt_max. */
typedef struct {
    int n, B, K;
    float *p;   /* (n, B, K) each member's distribution at T */
    float *r;   /* (n, B, K) at temperature 1: entropy weights with T != 1 */
    float *tq;  /* (B, kt_max) a distribution before its map */
    float *w;   /* (n, B) the weights */
} ensemble_buf;

void ensemble_buf_init(ensemble_buf *eb, int n, int B, int K, int kt_max);
void ensemble_buf_free(ensemble_buf *eb);

/* q (B, K): the combined target of the n = eb->n members' logits on B <= eb->B examples at
 * temperature T, for combine c (fixed: the n weights of combine weights; tau: entropy's); the
 * weights stay in eb->w (w[t * B + b]). */
void ensemble_target(float *q, const ensemble_member *m, int B, float T, recipe_combine c,
                     const float *fixed, float tau, ensemble_buf *eb);

/* The steps of ensemble_target, for distributions already on the student's classes:
 * the weights w (n, B), w[t * B + b] (fixed: combine weights' n values >= 0 with a positive sum;
 * r: combine entropy's n distributions (B, K) whose entropy sets the weights, tau > 0; unused
 * arguments may be NULL), computed in double; */
void ensemble_weights(float *w, recipe_combine c, const float *fixed, const float *const *r,
                      float tau, int n, int B, int K);
/* and q (B, K) = sum_t w[t * B + b] p[t] (B, K) row by row, summed in double in member order. */
void ensemble_combine(float *q, const float *const *p, const float *w, int n, int B, int K);

#endif
