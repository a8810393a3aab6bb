/* Windows, flips, channel conversions and normalisation (see ops.h).
 *
 * Windows and flips move whole pixels, so they work on bytes: a pixel is c * elem_size bytes, and
 * a zero float is all-zero bytes, so zero padding is a memset for both element types. */
#include "modalities/image/ops.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "modalities/image/resize.h"

static const char *const pad_names[] = {
    [IMG_PAD_ZERO] = "zero",
    [IMG_PAD_EDGE] = "edge",
};
static_assert(sizeof pad_names / sizeof pad_names[0] == IMG_PAD_COUNT,
              "pad_names must name every img_pad_mode");

const char *img_pad_name(img_pad_mode m)
{
    return (m >= 0 && m < IMG_PAD_COUNT) ? pad_names[m] : "unknown";
}

/* ---------------------------------------------------------------------------------------------
 * checks */

static xd_status check_image(const char *op, const void *p, int h, int w, int c, xd_err *e)
{
    if (!p) return xd_fail(e, XD_EARG, "%s: NULL image buffer", op);
    if (h < 1 || w < 1 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG, "%s: image size %dx%d outside [1, %d]", op, h, w, IMG_MAX_SIDE);
    if (c < 1 || c > IMG_MAX_CHANNELS)
        return xd_fail(e, XD_EARG, "%s: channel count %d outside [1, %d]", op, c, IMG_MAX_CHANNELS);
    return XD_OK;
}

static xd_status check_window(const char *op, const void *dst, int y0, int x0, int oh, int ow,
                              img_pad_mode pad, xd_err *e)
{
    if (!dst) return xd_fail(e, XD_EARG, "%s: NULL output buffer", op);
    if (oh < 1 || ow < 1 || oh > IMG_MAX_SIDE || ow > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG, "%s: output size %dx%d outside [1, %d]", op, oh, ow,
                       IMG_MAX_SIDE);
    /* keeps y + y0 and x + x0 far from int overflow */
    if (y0 < -IMG_MAX_SIDE || y0 > IMG_MAX_SIDE || x0 < -IMG_MAX_SIDE || x0 > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG, "%s: offset (%d, %d) outside +-%d", op, y0, x0, IMG_MAX_SIDE);
    if (pad < 0 || pad >= IMG_PAD_COUNT)
        return xd_fail(e, XD_EARG, "%s: unknown pad mode %d", op, (int)pad);
    return XD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * windows */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Byte-level window; pb = bytes per pixel. Each output row is three spans: left pad, the part
 * inside the image (one memcpy), right pad. */
static void window_bytes(const uint8_t *src, int h, int w, size_t pb, int y0, int x0, int oh,
                         int ow, img_pad_mode pad, uint8_t *dst)
{
    /* output columns [in_lo, in_hi) read source columns inside [0, w) */
    int in_lo = clampi(-x0, 0, ow), in_hi = clampi(w - x0, 0, ow);
    if (in_hi < in_lo) in_hi = in_lo;
    for (int y = 0; y < oh; y++) {
        uint8_t *o = dst + (size_t)y * ow * pb;
        int sy = y + y0;
        if ((sy < 0 || sy >= h) && pad == IMG_PAD_ZERO) {
            memset(o, 0, (size_t)ow * pb);
            continue;
        }
        const uint8_t *row = src + (size_t)clampi(sy, 0, h - 1) * w * pb;
        if (in_hi > in_lo)
            memcpy(o + (size_t)in_lo * pb, row + (size_t)(in_lo + x0) * pb,
                   (size_t)(in_hi - in_lo) * pb);
        if (pad == IMG_PAD_ZERO) {
            memset(o, 0, (size_t)in_lo * pb);
            memset(o + (size_t)in_hi * pb, 0, (size_t)(ow - in_hi) * pb);
        } else {
            for (int x = 0; x < in_lo; x++) memcpy(o + (size_t)x * pb, row, pb);
            for (int x = in_hi; x < ow; x++)
                memcpy(o + (size_t)x * pb, row + (size_t)clampi(x + x0, 0, w - 1) * pb, pb);
        }
    }
}

static xd_status window_any(const char *op, const void *src, int h, int w, int c, size_t es, int y0,
                            int x0, int oh, int ow, img_pad_mode pad, void *dst, xd_err *e)
{
    xd_status s = check_image(op, src, h, w, c, e);
    if (!s) s = check_window(op, dst, y0, x0, oh, ow, pad, e);
    if (s) return s;
    window_bytes(src, h, w, (size_t)c * es, y0, x0, oh, ow, pad, dst);
    return XD_OK;
}

xd_status img_window_u8(const uint8_t *src, int h, int w, int c, int y0, int x0, int oh, int ow,
                        img_pad_mode pad, uint8_t *dst, xd_err *e)
{
    return window_any("window", src, h, w, c, 1, y0, x0, oh, ow, pad, dst, e);
}

xd_status img_window_f32(const float *src, int h, int w, int c, int y0, int x0, int oh, int ow,
                         img_pad_mode pad, float *dst, xd_err *e)
{
    return window_any("window", src, h, w, c, sizeof(float), y0, x0, oh, ow, pad, dst, e);
}

static xd_status crop_centre_any(const void *src, int h, int w, int c, size_t es, int oh, int ow,
                                 void *dst, xd_err *e)
{
    xd_status s = check_image("centre crop", src, h, w, c, e);
    if (s) return s;
    if (oh > h || ow > w)
        return xd_fail(e, XD_EARG, "centre crop: crop %dx%d larger than image %dx%d", oh, ow, h, w);
    return window_any("centre crop", src, h, w, c, es, (h - oh) / 2, (w - ow) / 2, oh, ow,
                      IMG_PAD_ZERO, dst, e);
}

xd_status img_crop_centre_u8(const uint8_t *src, int h, int w, int c, int oh, int ow, uint8_t *dst,
                             xd_err *e)
{
    return crop_centre_any(src, h, w, c, 1, oh, ow, dst, e);
}

xd_status img_crop_centre_f32(const float *src, int h, int w, int c, int oh, int ow, float *dst,
                              xd_err *e)
{
    return crop_centre_any(src, h, w, c, sizeof(float), oh, ow, dst, e);
}

static xd_status pad_any(const void *src, int h, int w, int c, size_t es, int top, int bottom,
                         int left, int right, img_pad_mode pad, void *dst, xd_err *e)
{
    if (top < 0 || bottom < 0 || left < 0 || right < 0 || top > IMG_MAX_SIDE ||
        bottom > IMG_MAX_SIDE || left > IMG_MAX_SIDE || right > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG,
                       "pad: border (top %d, bottom %d, left %d, right %d) outside [0, %d]", top,
                       bottom, left, right, IMG_MAX_SIDE);
    return window_any("pad", src, h, w, c, es, -top, -left, h + top + bottom, w + left + right, pad,
                      dst, e);
}

xd_status img_pad_u8(const uint8_t *src, int h, int w, int c, int top, int bottom, int left,
                     int right, img_pad_mode pad, uint8_t *dst, xd_err *e)
{
    return pad_any(src, h, w, c, 1, top, bottom, left, right, pad, dst, e);
}

xd_status img_pad_f32(const float *src, int h, int w, int c, int top, int bottom, int left,
                      int right, img_pad_mode pad, float *dst, xd_err *e)
{
    return pad_any(src, h, w, c, sizeof(float), top, bottom, left, right, pad, dst, e);
}

/* ---------------------------------------------------------------------------------------------
 * flips */

static xd_status flip_any(void *x, int h, int w, int c, size_t es, xd_err *e)
{
    xd_status s = check_image("flip", x, h, w, c, e);
    if (s) return s;
    const size_t pb = (size_t)c * es;
    uint8_t tmp[IMG_MAX_CHANNELS * sizeof(float)]; /* the largest pixel */
    for (int y = 0; y < h; y++) {
        uint8_t *row = (uint8_t *)x + (size_t)y * w * pb;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            memcpy(tmp, row + (size_t)i * pb, pb);
            memcpy(row + (size_t)i * pb, row + (size_t)j * pb, pb);
            memcpy(row + (size_t)j * pb, tmp, pb);
        }
    }
    return XD_OK;
}

xd_status img_flip_h_u8(uint8_t *x, int h, int w, int c, xd_err *e)
{
    return flip_any(x, h, w, c, 1, e);
}

xd_status img_flip_h_f32(float *x, int h, int w, int c, xd_err *e)
{
    return flip_any(x, h, w, c, sizeof(float), e);
}

/* ---------------------------------------------------------------------------------------------
 * channel conversions */

/* Y = 0.299 R + 0.587 G + 0.114 B, rounded to nearest */
static uint8_t luma(unsigned r, unsigned g, unsigned b)
{
    return (uint8_t)((299 * r + 587 * g + 114 * b + 500) / 1000);
}

/* (a*fg + (255-a)*bg) / 255, rounded; 255 is odd, so there are no ties */
static uint8_t over(unsigned fg, unsigned a, unsigned bg)
{
    return (uint8_t)((a * fg + (255 - a) * bg + 127) / 255);
}

xd_status img_convert_u8(const uint8_t *src, size_t npix, int c_in, uint8_t *dst, int c_out,
                         const uint8_t bg[3], xd_err *e)
{
    if (!src || !dst)
        return xd_fail(e, XD_EARG, "convert: NULL %s buffer", src ? "output" : "input");
    if (npix == 0) return xd_fail(e, XD_EARG, "convert: no pixels");
    if (c_in < 1 || c_in > 4)
        return xd_fail(e, XD_EARG, "convert: input channel count %d not in 1..4", c_in);
    if (c_out != c_in && c_out != 1 && c_out != 3)
        return xd_fail(e, XD_EARG, "convert: cannot make %d channels from %d (outputs: 1, 3)",
                       c_out, c_in);
    if (c_out == c_in) {
        memcpy(dst, src, npix * (size_t)c_in);
        return XD_OK;
    }
    const uint8_t black[3] = {0, 0, 0};
    if (!bg) bg = black;
    const uint8_t bg_grey = luma(bg[0], bg[1], bg[2]);
    for (size_t i = 0; i < npix; i++) {
        const uint8_t *s = src + i * (size_t)c_in;
        uint8_t *d = dst + i * (size_t)c_out;
        unsigned r, g, b;
        switch (c_in) {
        case 1:
            r = g = b = s[0];
            break;
        case 2:
            r = g = b = over(s[0], s[1], bg_grey);
            break;
        case 3:
            r = s[0], g = s[1], b = s[2];
            break;
        default:
            r = over(s[0], s[3], bg[0]), g = over(s[1], s[3], bg[1]), b = over(s[2], s[3], bg[2]);
            break;
        }
        if (c_out == 1) {
            /* grey sources stay exact rather than go through the luma rounding */
            d[0] = c_in <= 2 ? (uint8_t)r : luma(r, g, b);
        } else {
            d[0] = (uint8_t)r, d[1] = (uint8_t)g, d[2] = (uint8_t)b;
        }
    }
    return XD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * normalisation */

/* y = x * scale[ch] + shift[ch], scale = 1 / (255 std), shift = -mean / std */
static xd_status norm_coeffs(size_t npix, int c, const float *mean, const float *std, float *scale,
                             float *shift, xd_err *e)
{
    if (!mean || !std) return xd_fail(e, XD_EARG, "normalise: NULL %s", mean ? "std" : "mean");
    if (npix == 0) return xd_fail(e, XD_EARG, "normalise: no pixels");
    if (c < 1 || c > IMG_MAX_CHANNELS)
        return xd_fail(e, XD_EARG, "normalise: channel count %d outside [1, %d]", c,
                       IMG_MAX_CHANNELS);
    for (int ch = 0; ch < c; ch++) {
        if (!isfinite(mean[ch]))
            return xd_fail(e, XD_EARG, "normalise: mean[%d] = %g is not finite", ch,
                           (double)mean[ch]);
        if (!(std[ch] > 0) || !isfinite(std[ch]))
            return xd_fail(e, XD_EARG, "normalise: std[%d] = %g must be positive and finite", ch,
                           (double)std[ch]);
        scale[ch] = (float)(1.0 / (255.0 * std[ch]));
        shift[ch] = (float)(-(double)mean[ch] / std[ch]);
    }
    return XD_OK;
}

/* dst[k] = src[k] * sc[k % n] + sh[k % n] over all values, in runs of n; inlined with n a
 * constant, a run is whole vectors (with n a variable the compiler's vector loop leaves part of
 * each run to scalar code: 48 values of RGB to 32 + 16) */
static inline __attribute__((always_inline)) void
normalise_runs(const uint8_t *restrict src, size_t all, size_t n, const float *restrict sc,
               const float *restrict sh, float *restrict dst)
{
    size_t k0 = 0;
    for (; k0 + n <= all; k0 += n)
        for (size_t k = 0; k < n; k++) dst[k0 + k] = (float)src[k0 + k] * sc[k] + sh[k];
    for (size_t k = k0; k < all; k++) dst[k] = (float)src[k] * sc[k - k0] + sh[k - k0];
}

xd_status img_normalise_u8(const uint8_t *src, size_t npix, int c, const float *mean,
                           const float *std, float *dst, xd_err *e)
{
    if (!src || !dst)
        return xd_fail(e, XD_EARG, "normalise: NULL %s buffer", src ? "output" : "input");
    float scale[IMG_MAX_CHANNELS], shift[IMG_MAX_CHANNELS];
    xd_status s = norm_coeffs(npix, c, mean, std, scale, shift, e);
    if (s) return s;
    if (c == 1) { /* the same arithmetic in a loop the compiler vectorises */
        const float a = scale[0], b = shift[0];
        for (size_t i = 0; i < npix; i++) dst[i] = (float)src[i] * a + b;
        return XD_OK;
    }
    /* the coefficients repeated over a run of pixels, so that the runs vectorise */
    enum { RUN = 16 };
    float sc[RUN * IMG_MAX_CHANNELS], sh[RUN * IMG_MAX_CHANNELS];
    const size_t n = (size_t)RUN * (size_t)c, all = npix * (size_t)c;
    for (size_t k = 0; k < n; k++) {
        sc[k] = scale[k % (size_t)c];
        sh[k] = shift[k % (size_t)c];
    }
    if (c == 3) /* RGB, the usual */
        normalise_runs(src, all, RUN * 3, sc, sh, dst);
    else
        normalise_runs(src, all, n, sc, sh, dst);
    return XD_OK;
}

xd_status img_normalise_f32(float *x, size_t npix, int c, const float *mean, const float *std,
                            xd_err *e)
{
    if (!x) return xd_fail(e, XD_EARG, "normalise: NULL image buffer");
    float scale[IMG_MAX_CHANNELS], shift[IMG_MAX_CHANNELS];
    xd_status s = norm_coeffs(npix, c, mean, std, scale, shift, e);
    if (s) return s;
    if (c == 1) { /* the same arithmetic in a loop the compiler vectorises */
        const float a = scale[0], b = shift[0];
        for (size_t i = 0; i < npix; i++) x[i] = x[i] * a + b;
        return XD_OK;
    }
    for (size_t i = 0; i < npix; i++)
        for (int ch = 0; ch < c; ch++) {
            size_t k = i * (size_t)c + ch;
            x[k] = x[k] * scale[ch] + shift[ch];
        }
    return XD_OK;
}
