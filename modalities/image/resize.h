/* Image resizing for preprocessing: exact area averaging when shrinking, bilinear otherwise.
 *
 * Images are interleaved (H, W, C), row-major, 8-bit or float. The filter is separable and each
 * axis chooses its own kind:
 *   - an axis that shrinks (D < S) uses an exact box filter: output pixel d covers the source
 *     interval [d*S/D, (d+1)*S/D) and each source pixel is weighted by the fraction of it that it
 *     covers, so 64 -> 32 averages 2x2 blocks and 64 -> 28 keeps the image mean;
 *   - an axis that grows or keeps its size samples bilinearly at half-pixel centres,
 *     p = (d + 0.5) * S/D - 0.5 (the align_corners = false convention), clamped to [0, S-1].
 *
 * A plan holds the per-axis weight tables, so a batch of same-sized images computes them once and
 * runs without allocating (the caller hands in scratch). The planned passes run on one thread:
 * callers parallelise over images. img_resize_ref_f32 is the plain reference (each output pixel
 * straight from the 2-D weights, in double) that the tests hold the planned version against. */
#ifndef XD_MODALITIES_IMAGE_RESIZE_H
#define XD_MODALITIES_IMAGE_RESIZE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Largest image side and channel count the image functions accept (sizes come from files). */
#define IMG_MAX_SIDE 16384
#define IMG_MAX_CHANNELS 64

/* Weights of one axis: output d = sum_k w[d*taps + k] * in[first[d] + k], k < count[d]. */
typedef struct {
    int n_in, n_out, taps;
    int *first; /* (n_out) */
    int *count; /* (n_out) */
    float *w;   /* (n_out, taps) */
} img_axis;

typedef struct {
    int sh, sw, dh, dw;
    img_axis y, x;
} img_resize_plan;

/* Builds the tables for (sh, sw) -> (dh, dw). XD_EARG on sizes outside [1, IMG_MAX_SIDE]. */
xd_status img_resize_plan_make(img_resize_plan *p, int sh, int sw, int dh, int dw, xd_err *e);
void img_resize_plan_free(img_resize_plan *p);
/* Floats of scratch that img_resize_run_* need for c channels. */
size_t img_resize_scratch_floats(const img_resize_plan *p, int c);
/* src (sh, sw, c) -> dst (dh, dw, c); the u8 version writes unrounded floats in [0, 255]. */
void img_resize_run_f32(const img_resize_plan *p, const float *src, int c, float *dst,
                        float *scratch);
void img_resize_run_u8(const img_resize_plan *p, const uint8_t *src, int c, float *dst,
                       float *scratch);

/* One-off resizes (plan and scratch made and freed inside). The u8 -> u8 version rounds to the
 * nearest integer. XD_EARG on NULL buffers, zero or oversized sides, or bad channel counts. */
xd_status img_resize_f32(const float *src, int sh, int sw, int c, float *dst, int dh, int dw,
                         xd_err *e);
xd_status img_resize_u8(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh, int dw,
                        xd_err *e);

/* Plain reference of img_resize_f32: O(dh*dw*sh*sw*c), for tests only. */
xd_status img_resize_ref_f32(const float *src, int sh, int sw, int c, float *dst, int dh, int dw,
                             xd_err *e);

#endif
