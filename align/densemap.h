/* Dense maps: from a classifier's per-window answers to per-pixel segmentation targets.
 *
 * A teacher that only classifies (say, 28x28 Fashion-MNIST items) can still teach a segmentation
 * student: run it on windows of a scene (the item boxes, or a grid of sliding windows), then give
 * each foreground pixel the class distribution of the windows that cover it. The targets are
 * (H, W, K+1): the teacher's K classes, then background at index K (the convention of
 * modalities/dense scenes, whose background label is the last class).
 *
 * Rules, per pixel (foreground = fg > threshold, the rule that labels scenes):
 *  - background pixel: one-hot background; mask 1 (the intensity rule is certain there);
 *  - foreground pixel covered by windows w = 1..m with distributions p_w and weights c_w:
 *      target[k] = sum_w c_w p_w[k] / sum_w c_w  (k < K),  target[K] = 0
 *    with c_w = 1 (ALIGN_DENSE_UNIFORM) or c_w = max_k p_w[k], the teacher's confidence in that
 *    window (ALIGN_DENSE_CONFIDENCE), so an unsure window overlapping a sure one counts less;
 *    mask 1 when max_k target[k] >= min_conf, else 0 (too ambiguous to teach);
 *  - foreground pixel that no window covers: all-zero target, mask 0 (nothing is known there).
 * So every masked-in row sums to 1 and a per-pixel soft cross-entropy over rows = B*H*W
 * (kd_soft_ce_forward in distill/, with this mask) is the matching loss; no separate
 * segmentation loss is needed.
 *
 * Windows and probabilities come from the caller's data and are validated (inside the canvas,
 * finite, each row a distribution), with a message naming the window. */
#ifndef XD_ALIGN_DENSEMAP_H
#define XD_ALIGN_DENSEMAP_H

#include <stdint.h>

#include "core/status.h"

/* A window: top-left corner (x, y) and size, in pixels (same order as dense_box). */
typedef struct {
    int x, y, w, h;
} align_box;

typedef enum {
    ALIGN_DENSE_UNIFORM,    /* c_w = 1 */
    ALIGN_DENSE_CONFIDENCE, /* c_w = max_k p_w[k] */
    ALIGN_DENSE_WEIGHT_COUNT
} align_dense_weight;
extern const char *const align_dense_weight_names[ALIGN_DENSE_WEIGHT_COUNT]; /* "uniform", ... */

/* A config word ("uniform", "confidence") to its value; XD_EARG listing the words otherwise. */
xd_status align_dense_weight_parse(const char *word, align_dense_weight *out, xd_err *e);

typedef struct {
    float threshold;           /* foreground where fg > threshold */
    align_dense_weight weight; /* how overlapping windows are averaged */
    float min_conf;            /* in [0, 1]: foreground pixels whose top probability is below
                                * this are masked out */
} align_dense_opts;

/* threshold 25 (the scenes' default on 0..255 grey), uniform weights, min_conf 0 */
align_dense_opts align_dense_default_opts(void);

/* target (H, W, K+1), mask (H, W) as in the rules above. fg (H, W) foreground measure (e.g. grey
 * values); win (nwin) windows inside the H x W canvas; probs (nwin, K) one distribution per
 * window (entries >= 0, summing to 1 within 1e-3). nwin may be 0 (every foreground pixel is then
 * unknown). */
xd_status align_dense_targets(float *target, uint8_t *mask, const float *fg, int H, int W,
                              const align_box *win, const float *probs, int nwin, int K,
                              const align_dense_opts *o, xd_err *e);

/* Sliding windows wh x ww with the given stride over an H x W canvas, rows of windows top to
 * bottom: offsets 0, stride, 2 stride, ... and a last one flush with the far edge, so every pixel
 * is covered. Writes up to cap boxes; returns how many there are (call with cap 0 to count), or
 * -1 when the window does not fit or stride < 1. */
int align_dense_grid(align_box *boxes, int cap, int H, int W, int wh, int ww, int stride);

/* out (box.h, box.w, C) = img (H, W, C) inside the box, e.g. a window for the teacher to
 * classify. XD_EARG when the box leaves the canvas. */
xd_status align_dense_crop(float *out, const float *img, int H, int W, int C, align_box box,
                           xd_err *e);

#endif
