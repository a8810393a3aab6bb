/* Pixel moves and value maps on interleaved (H, W, C) images: windows (crop and pad in one),
 * horizontal flips, channel conversions and per-channel normalisation.
 *
 * The window is the one geometric primitive: out(y, x) = in(y + y0, x + x0) where that lies inside
 * the image, else a pad value (zero, or the nearest edge pixel). A centre crop, a pad, and the
 * "pad 4 then crop back" augmentation are all windows. Crops, pads and flips only move pixels, so
 * one implementation serves 8-bit and float images. Outputs must not overlap inputs (flips are in
 * place). Every function checks its arguments and returns XD_EARG with a message. */
#ifndef XD_MODALITIES_IMAGE_OPS_H
#define XD_MODALITIES_IMAGE_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum {
    IMG_PAD_ZERO, /* pixels outside the image are 0 */
    IMG_PAD_EDGE, /* pixels outside the image repeat the nearest edge pixel */
    IMG_PAD_COUNT
} img_pad_mode;

/* "zero", "edge" */
const char *img_pad_name(img_pad_mode m);

/* dst (oh, ow, c) = window of src (h, w, c) whose top-left corner is at (y0, x0) of src;
 * y0, x0 may be negative or reach past the far edge (those pixels are padded). */
xd_status img_window_u8(const uint8_t *src, int h, int w, int c, int y0, int x0, int oh, int ow,
                        img_pad_mode pad, uint8_t *dst, xd_err *e);
xd_status img_window_f32(const float *src, int h, int w, int c, int y0, int x0, int oh, int ow,
                         img_pad_mode pad, float *dst, xd_err *e);

/* dst (oh, ow, c) = the centre of src; top-left at ((h-oh)/2, (w-ow)/2), rounded down.
 * XD_EARG when the crop is larger than the image. */
xd_status img_crop_centre_u8(const uint8_t *src, int h, int w, int c, int oh, int ow, uint8_t *dst,
                             xd_err *e);
xd_status img_crop_centre_f32(const float *src, int h, int w, int c, int oh, int ow, float *dst,
                              xd_err *e);

/* dst (h+top+bottom, w+left+right, c) = src with a border. */
xd_status img_pad_u8(const uint8_t *src, int h, int w, int c, int top, int bottom, int left,
                     int right, img_pad_mode pad, uint8_t *dst, xd_err *e);
xd_status img_pad_f32(const float *src, int h, int w, int c, int top, int bottom, int left,
                      int right, img_pad_mode pad, float *dst, xd_err *e);

/* In place: x(y, j) <-> x(y, w-1-j). */
xd_status img_flip_h_u8(uint8_t *x, int h, int w, int c, xd_err *e);
xd_status img_flip_h_f32(float *x, int h, int w, int c, xd_err *e);

/* dst (npix, c_out) from src (npix, c_in), 8-bit. Channel layouts: 1 grey, 2 grey+alpha, 3 RGB,
 * 4 RGBA; outputs 1 or 3 (or c_in itself, a copy).
 *   grey -> RGB: repeated; RGB -> grey: Y = 0.299 R + 0.587 G + 0.114 B (BT.601), rounded;
 *   alpha: composited over bg (RGB; grey sources use its luma): v = (a*fg + (255-a)*bg) / 255,
 *   rounded, then converted as above. bg may be NULL for black. */
xd_status img_convert_u8(const uint8_t *src, size_t npix, int c_in, uint8_t *dst, int c_out,
                         const uint8_t bg[3], xd_err *e);

/* dst = (src/255 - mean[ch]) / std[ch] for (npix, c) pixels; std > 0 and finite. The f32
 * version works in place on values in [0, 255] (for example a resized 8-bit image). */
xd_status img_normalise_u8(const uint8_t *src, size_t npix, int c, const float *mean,
                           const float *std, float *dst, xd_err *e);
xd_status img_normalise_f32(float *x, size_t npix, int c, const float *mean, const float *std,
                            xd_err *e);

#endif
