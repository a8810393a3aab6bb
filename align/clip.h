/* Contrastive alignment of paired embeddings (InfoNCE, symmetric as in CLIP).
 *
 * Row i of a and row i of b are two views of example i (a caption and an image, a teacher's and a
 * student's embedding); every other row of the batch is a negative. With a_n, b_n the rows
 * L2-normalised (F.normalize: x / max(|x|, 1e-12)) and s = exp(theta) the logit scale:
 *   z_ij = s a_n_i . b_n_j
 *   L    = (1/2B) sum_i [ lse_j z_ij - z_ii ]  +  (1/2B) sum_j [ lse_i z_ij - z_jj ]
 * i.e. the mean of the row-wise cross-entropy (a -> b, targets on the diagonal) and the
 * column-wise one (b -> a). A batch of one gives L = 0.
 *
 * Temperature: theta = log(1/tau) is the parameter, as in CLIP (initialised at log(1/0.07) and
 * clamped to [0, log 100] after each optimiser step, align_clip_clamp_theta). A learnable
 * temperature passes dtheta to the backward; a fixed one passes theta = log(1/tau) and
 * dtheta = NULL.
 *
 * Precision: the normalised rows, logits, softmaxes and every sum are double, kept in a save
 * buffer the caller owns (align_clip_save_len doubles), so values do not depend on the thread
 * count and finite differences of the loss are clean. Forward parallelises the logits over rows;
 * the softmaxes are O(B^2), next to the O(B^2 D) logits. Backward ADDS weight * gradient. */
#ifndef XD_ALIGN_CLIP_H
#define XD_ALIGN_CLIP_H

#include <stddef.h>

/* CLIP's starting value log(1/0.07) and upper clamp log(100) for theta */
#define ALIGN_CLIP_THETA_INIT 2.6592600369327779
#define ALIGN_CLIP_THETA_MAX  4.6051701859880914

/* theta = log(1/tau), tau > 0 */
double align_clip_theta(double tau);
/* theta <- min(max(theta, 0), log 100) */
void align_clip_clamp_theta(float *theta);

/* Doubles the save buffer needs:
 * 2 B D (normalised rows) + 2 B (norms) + 3 B^2 (z, P, Q) + 1 (s). */
size_t align_clip_save_len(int B, int D);

/* L as above; a, b (B, D); save (align_clip_save_len(B, D)) is filled for backward. */
double align_clip_forward(double *save, const float *a, const float *b, int B, int D,
                          float theta);

/* With G = dL/dz = (P + Q - 2I) / (2B), P the row softmax of z and Q the column softmax:
 *   da_i += weight * (g_i - a_n_i (a_n_i . g_i)) / |a_i|,  g_i = s sum_j G_ij b_n_j
 *   db_j += weight * (h_j - b_n_j (b_n_j . h_j)) / |b_j|,  h_j = s sum_i G_ij a_n_i
 *   dtheta += weight * sum_ij G_ij z_ij                    (dz/dtheta = z)
 * (|x| below 1e-12 divides by 1e-12 without the projection, as F.normalize's clamp does).
 * Any of da, db, dtheta may be NULL. */
void align_clip_backward(float *da, float *db, float *dtheta, const double *save, int B, int D,
                         float weight);

#endif
