/* Palette and overlay renderer (see overlay.h). */
#include "modalities/dense/overlay.h"

#include <math.h>
#include <stddef.h>

/* Ten well-separated hues, none of them grey, so they stay visible on a grey canvas. */
const uint8_t dense_palette[DENSE_CLASSES][3] = {
    {31, 119, 180},  /* T-shirt/top: blue */
    {255, 127, 14},  /* Trouser: orange */
    {44, 160, 44},   /* Pullover: green */
    {214, 39, 40},   /* Dress: red */
    {148, 103, 189}, /* Coat: purple */
    {140, 86, 75},   /* Sandal: brown */
    {227, 119, 194}, /* Shirt: pink */
    {188, 189, 34},  /* Sneaker: olive */
    {23, 190, 207},  /* Bag: cyan */
    {255, 215, 0},   /* Ankle boot: gold */
    {0, 0, 0},       /* background: not blended */
};

xd_status dense_overlay(const uint8_t *grey, const uint8_t *labels, int h, int w, float alpha,
                        uint8_t *rgb, xd_err *e)
{
    if (h < 0 || w < 0) return xd_fail(e, XD_EARG, "overlay size %dx%d is negative", h, w);
    if (!(alpha >= 0.0f && alpha <= 1.0f))
        return xd_fail(e, XD_EARG, "overlay alpha %g must be in [0, 1]", (double)alpha);
    size_t n = (size_t)h * (size_t)w;
    for (size_t i = 0; i < n; i++)
        if (labels[i] > DENSE_BACKGROUND)
            return xd_fail(e, XD_EARG, "label %u at pixel (%zu, %zu) is not a class in 0..%d",
                           labels[i], i / (size_t)w, i % (size_t)w, DENSE_BACKGROUND);
    unsigned a = (unsigned)lrintf(alpha * 256.0f);
    for (size_t i = 0; i < n; i++) {
        unsigned g = grey[i];
        uint8_t *out = rgb + 3 * i;
        if (labels[i] == DENSE_BACKGROUND) {
            out[0] = out[1] = out[2] = (uint8_t)g;
            continue;
        }
        const uint8_t *col = dense_palette[labels[i]];
        for (int ch = 0; ch < 3; ch++)
            out[ch] = (uint8_t)((g * (256 - a) + col[ch] * a + 128) >> 8);
    }
    return XD_OK;
}
