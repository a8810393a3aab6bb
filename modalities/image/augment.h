/* Image preprocessing options, per-example augmentation and batch assembly.
 *
 * One example goes: 8-bit (H, W, C) -> channel conversion -> resize to size_h x size_w (float,
 * values in [0, 255]) -> a crop_h x crop_w window (training: at a random offset that may reach
 * `pad` pixels past each edge, padded with zeros or edge pixels, then a horizontal flip with
 * probability `flip`; evaluation: the centre) -> (x/255 - mean[c]) / std[c].
 * Padding happens before normalisation, so zero padding is black in pixel space.
 *
 * The random choices of an example come from its own counter-based stream (img_aug_rng), keyed
 * by the seed, the example index and the epoch: a batch is bit-identical at any thread count and
 * in any order, and each epoch sees a fresh draw. img_aug_sample exposes the draw, so masks and
 * other views of the same example can follow the same geometry.
 *
 * Options come from code (img_opts_default, then fields) or from recipe words "key=value"
 * (img_opts_set / img_opts_parse, a table of keys; unknown keys and bad values are errors that
 * name the key and list the known ones). */
#ifndef XD_MODALITIES_IMAGE_AUGMENT_H
#define XD_MODALITIES_IMAGE_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/status.h"
#include "modalities/image/ops.h"

/* Most channels the batch path produces (per-channel mean and std are kept for this many). */
#define IMG_OPTS_MAX_CH 3

typedef struct {
    /* preprocessing, training and evaluation */
    int size_h, size_w;    /* resize target; 0 = the source size */
    int crop_h, crop_w;    /* output window; 0 = the resized size */
    int channels;          /* output: 1 = grey, 3 = RGB, 0 = as the source without its alpha */
    uint8_t background[3]; /* RGB that alpha is composited over */
    int n_mean, n_std;     /* how many values were given (1 = same for every channel) */
    float mean[IMG_OPTS_MAX_CH]; /* applied to x/255 */
    float std[IMG_OPTS_MAX_CH];
    /* augmentation, training only */
    int pad; /* the window may reach this many pixels past each edge */
    img_pad_mode pad_mode;
    float flip; /* probability of a horizontal flip */
} img_opts;

/* Defaults: keep size and channels, white background, mean 0, std 1 (so x/255), pad 4 with
 * zeros, flip 0.5 (the common "pad 4, random crop, flip" recipe). */
void img_opts_default(img_opts *o);
/* Checks ranges and combinations that do not depend on the image (used by the batcher too). */
xd_status img_opts_check(const img_opts *o, xd_err *e);

/* One option from text. Keys: size (N or HxW), crop (N or HxW), channels (0|1|3),
 * background (R,G,B), mean (v or v,v,v), std (v or v,v,v), pad (pixels), pad_mode (zero|edge),
 * flip (probability). XD_EARG names the key and the reason; unknown keys list the known ones. */
xd_status img_opts_set(img_opts *o, const char *key, const char *value, xd_err *e);
/* Several "key=value" words separated by spaces or ';', e.g. "size=32 pad=4 flip=0.5". */
xd_status img_opts_parse(img_opts *o, const char *text, xd_err *e);
/* The key names, for help texts: i-th name, or NULL past the end. */
const char *img_opts_key(int i);

/* ---------------------------------------------------------------------------------------------
 * per-example augmentation */

/* The window and flip chosen for one example. */
typedef struct {
    int y0, x0; /* top-left of the crop in the resized image (negative = into the padding) */
    int flip;   /* 1 = mirror left-right after cropping */
} img_aug;

/* Stream of an example in an epoch: xd_rng_make(seed, example ^ mix(epoch), XD_RNG_AUGMENT). */
xd_rng img_aug_rng(uint64_t seed, uint64_t example, uint64_t epoch);
/* Training draw for an (h, w) image cropped to (ch, cw): y0 uniform in [-pad, h + pad - ch], same
 * for x0, then flip with probability o->flip. Needs ch <= h + 2 pad (else the offset is -pad). */
img_aug img_aug_sample(const img_opts *o, int h, int w, int ch, int cw, uint64_t seed,
                       uint64_t example, uint64_t epoch);
/* Evaluation: the centre window, no flip. */
img_aug img_aug_centre(int h, int w, int ch, int cw);

/* ---------------------------------------------------------------------------------------------
 * batch assembly */

typedef struct img_batcher img_batcher;

/* A batcher for source images (h, w, c), c in 1..4 (grey, grey+alpha, RGB, RGBA). It owns the
 * resize plan and per-thread scratch, so filling batches does not allocate (unless the OpenMP
 * thread count grew since the last call). XD_EARG on bad sizes, or a crop larger than the resized
 * image plus padding. */
xd_status img_batcher_make(img_batcher **out, int h, int w, int c, const img_opts *o, xd_err *e);
void img_batcher_free(img_batcher *b);
/* Shape of one output example: (oh, ow, oc). */
void img_batcher_shape(const img_batcher *b, int *oh, int *ow, int *oc);

/* Whether the evaluation view (augment 0) of an image is its pixels normalised one by one (no
 * resize, crop, flip or channel conversion: the source images have the output's shape); then
 * values (256 * oc) gets what that view makes of 8-bit value p in channel ch, at [p * oc + ch],
 * by the same arithmetic (returns 1), else it returns 0. */
int img_batcher_pixel_values(const img_batcher *b, float *values);

/* out (count, oh, ow, oc) from images (n, h, w, c) (contiguous, e.g. a memory-mapped dataset;
 * the caller vouches that it holds n images) at the example indices idx[0..count), each < n.
 * augment = 0 gives the evaluation view (centre window, no flip). Parallel over examples inside;
 * the result depends only on the arguments, never on the thread count. A batcher serves one
 * caller at a time (its scratch is shared by the calls). */
xd_status img_batcher_fill(img_batcher *b, const uint8_t *images, size_t n, const uint32_t *idx,
                           int count, int augment, uint64_t seed, uint64_t epoch, float *out,
                           xd_err *e);

#endif
