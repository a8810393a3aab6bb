/* Colours for dense labels and an overlay of a label map on its grey canvas, so a person can look
 * at predicted (or true) masks. Produces an RGB buffer; writing it as PNG is done by io/.
 *
 * out = grey for background pixels; for a class c pixel
 * out = (grey * (256 - a) + colour_c * a + 128) >> 8 per channel, with a = round(alpha * 256). */
#ifndef XD_DENSE_OVERLAY_H
#define XD_DENSE_OVERLAY_H

#include <stdint.h>

#include "core/status.h"
#include "modalities/dense/scene.h"

/* One colour per class; the background entry (black) is never blended. */
extern const uint8_t dense_palette[DENSE_CLASSES][3];

/* grey, labels (h, w); rgb (h, w, 3). alpha in [0, 1]. Labels must be 0..DENSE_BACKGROUND. */
xd_status dense_overlay(const uint8_t *grey, const uint8_t *labels, int h, int w, float alpha,
                        uint8_t *rgb, xd_err *e);

#endif
