/* Image resizing: area averaging when shrinking, bilinear otherwise (see resize.h).
 *
 * The planned version runs two passes: rows first (sh, sw, c) -> (sh, dw, c) into scratch, then
 * columns (sh, dw, c) -> (dh, dw, c), each a short weighted sum from the axis tables. The
 * reference version computes every output pixel straight from the 2-D weights, with the weights
 * written in a different form (interval overlap in real numbers, and a tent kernel), so the two
 * share no code that could hide a common mistake. */
#include "modalities/image/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

/* ---------------------------------------------------------------------------------------------
 * argument checks */

static xd_status check_side(const char *what, int v, xd_err *e)
{
    if (v < 1 || v > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG, "resize: %s %d outside [1, %d]", what, v, IMG_MAX_SIDE);
    return XD_OK;
}

static xd_status check_args(const void *src, int sh, int sw, int c, const void *dst, int dh, int dw,
                            xd_err *e)
{
    if (!src || !dst)
        return xd_fail(e, XD_EARG, "resize: NULL %s buffer", src ? "output" : "input");
    xd_status s;
    if ((s = check_side("source height", sh, e)) || (s = check_side("source width", sw, e)) ||
        (s = check_side("output height", dh, e)) || (s = check_side("output width", dw, e)))
        return s;
    if (c < 1 || c > IMG_MAX_CHANNELS)
        return xd_fail(e, XD_EARG, "resize: channel count %d outside [1, %d]", c, IMG_MAX_CHANNELS);
    return XD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * axis tables */

/* Box filter, in integer units where a source pixel is D long and an output pixel S long:
 * output d covers [d*S, (d+1)*S), source i covers [i*D, (i+1)*D), w = overlap / S. */
static void axis_area(img_axis *a)
{
    const int64_t S = a->n_in, D = a->n_out;
    for (int d = 0; d < a->n_out; d++) {
        int64_t lo = d * S, hi = (d + 1) * S;
        int first = (int)(lo / D), last = (int)((hi - 1) / D);
        a->first[d] = first;
        a->count[d] = last - first + 1;
        for (int k = 0; k <= last - first; k++) {
            int64_t i = first + k;
            int64_t ov_lo = i * D > lo ? i * D : lo;
            int64_t ov_hi = (i + 1) * D < hi ? (i + 1) * D : hi;
            a->w[(size_t)d * a->taps + k] = (float)((double)(ov_hi - ov_lo) / (double)S);
        }
    }
}

/* Bilinear at half-pixel centres: p = ((2d+1)*S - D) / (2D), clamped to [0, S-1]. */
static void axis_bilinear(img_axis *a)
{
    const int S = a->n_in, D = a->n_out;
    for (int d = 0; d < D; d++) {
        double p = ((double)(2 * (int64_t)d + 1) * S - D) / (2.0 * D);
        if (p < 0) p = 0;
        int x0 = (int)p;
        double f = p - x0;
        if (x0 >= S - 1) {
            x0 = S - 1;
            f = 0;
        }
        a->first[d] = x0;
        a->w[(size_t)d * a->taps] = (float)(1.0 - f);
        a->w[(size_t)d * a->taps + 1] = (float)f;
        a->count[d] = f > 0 ? 2 : 1;
    }
}

static void axis_make(img_axis *a, int n_in, int n_out)
{
    a->n_in = n_in;
    a->n_out = n_out;
    /* a box of length S/D touches at most ceil(S/D) + 1 source pixels */
    a->taps = n_out < n_in ? (n_in + n_out - 1) / n_out + 1 : 2;
    a->first = xd_xmalloc((size_t)n_out * sizeof *a->first);
    a->count = xd_xmalloc((size_t)n_out * sizeof *a->count);
    a->w = xd_xcalloc((size_t)n_out * (size_t)a->taps, sizeof *a->w);
    if (n_out < n_in)
        axis_area(a);
    else
        axis_bilinear(a);
}

static void axis_free(img_axis *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
    memset(a, 0, sizeof *a);
}

xd_status img_resize_plan_make(img_resize_plan *p, int sh, int sw, int dh, int dw, xd_err *e)
{
    if (!p) return xd_fail(e, XD_EARG, "resize: NULL plan");
    memset(p, 0, sizeof *p);
    xd_status s;
    if ((s = check_side("source height", sh, e)) || (s = check_side("source width", sw, e)) ||
        (s = check_side("output height", dh, e)) || (s = check_side("output width", dw, e)))
        return s;
    *p = (img_resize_plan){.sh = sh, .sw = sw, .dh = dh, .dw = dw};
    axis_make(&p->y, sh, dh);
    axis_make(&p->x, sw, dw);
    return XD_OK;
}

void img_resize_plan_free(img_resize_plan *p)
{
    if (!p) return;
    axis_free(&p->y);
    axis_free(&p->x);
}

size_t img_resize_scratch_floats(const img_resize_plan *p, int c)
{
    /* (sh, dw, c) after the row pass, plus one source row converted to float */
    return ((size_t)p->sh * p->dw + (size_t)p->sw) * (size_t)c;
}

/* ---------------------------------------------------------------------------------------------
 * planned passes */

/* row (sw, c) -> out (dw, c) */
static void pass_row(const img_axis *ax, const float *row, int c, float *out)
{
    for (int d = 0; d < ax->n_out; d++) {
        float *o = out + (size_t)d * c;
        const float *w = ax->w + (size_t)d * ax->taps;
        const float *in = row + (size_t)ax->first[d] * c;
        for (int ch = 0; ch < c; ch++) o[ch] = 0.0f;
        for (int k = 0; k < ax->count[d]; k++)
            for (int ch = 0; ch < c; ch++) o[ch] += w[k] * in[(size_t)k * c + ch];
    }
}

/* tmp (sh, dw, c) -> dst (dh, dw, c), one output row at a time over whole rows (vectorises) */
static void pass_cols(const img_resize_plan *p, const float *tmp, int c, float *dst)
{
    const size_t n = (size_t)p->dw * c;
    const img_axis *ay = &p->y;
    for (int d = 0; d < p->dh; d++) {
        float *o = dst + (size_t)d * n;
        const float *w = ay->w + (size_t)d * ay->taps;
        memset(o, 0, n * sizeof *o);
        for (int k = 0; k < ay->count[d]; k++) {
            const float *in = tmp + (size_t)(ay->first[d] + k) * n;
            const float wk = w[k];
            for (size_t i = 0; i < n; i++) o[i] += wk * in[i];
        }
    }
}

void img_resize_run_f32(const img_resize_plan *p, const float *src, int c, float *dst,
                        float *scratch)
{
    const size_t in_row = (size_t)p->sw * c, out_row = (size_t)p->dw * c;
    for (int y = 0; y < p->sh; y++)
        pass_row(&p->x, src + (size_t)y * in_row, c, scratch + (size_t)y * out_row);
    pass_cols(p, scratch, c, dst);
}

void img_resize_run_u8(const img_resize_plan *p, const uint8_t *src, int c, float *dst,
                       float *scratch)
{
    const size_t in_row = (size_t)p->sw * c, out_row = (size_t)p->dw * c;
    float *row = scratch + (size_t)p->sh * out_row;
    for (int y = 0; y < p->sh; y++) {
        const uint8_t *s = src + (size_t)y * in_row;
        for (size_t i = 0; i < in_row; i++) row[i] = (float)s[i];
        pass_row(&p->x, row, c, scratch + (size_t)y * out_row);
    }
    pass_cols(p, scratch, c, dst);
}

/* ---------------------------------------------------------------------------------------------
 * one-off resizes */

xd_status img_resize_f32(const float *src, int sh, int sw, int c, float *dst, int dh, int dw,
                         xd_err *e)
{
    xd_status s = check_args(src, sh, sw, c, dst, dh, dw, e);
    if (s) return s;
    img_resize_plan p;
    if ((s = img_resize_plan_make(&p, sh, sw, dh, dw, e))) return s;
    float *scratch = xd_try_alloc(img_resize_scratch_floats(&p, c) * sizeof(float));
    if (!scratch) {
        img_resize_plan_free(&p);
        return xd_fail(e, XD_ENOMEM, "resize: no memory for %dx%dx%d -> %dx%d", sh, sw, c, dh, dw);
    }
    img_resize_run_f32(&p, src, c, dst, scratch);
    free(scratch);
    img_resize_plan_free(&p);
    return XD_OK;
}

xd_status img_resize_u8(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh, int dw,
                        xd_err *e)
{
    xd_status s = check_args(src, sh, sw, c, dst, dh, dw, e);
    if (s) return s;
    img_resize_plan p;
    if ((s = img_resize_plan_make(&p, sh, sw, dh, dw, e))) return s;
    const size_t n_out = (size_t)dh * dw * c;
    float *buf = xd_try_alloc((img_resize_scratch_floats(&p, c) + n_out) * sizeof(float));
    if (!buf) {
        img_resize_plan_free(&p);
        return xd_fail(e, XD_ENOMEM, "resize: no memory for %dx%dx%d -> %dx%d", sh, sw, c, dh, dw);
    }
    float *out = buf + img_resize_scratch_floats(&p, c);
    img_resize_run_u8(&p, src, c, out, buf);
    for (size_t i = 0; i < n_out; i++) {
        float v =
            out[i] + 0.5f; /* the weights are convex, so v stays in [0.5, 255.5] up to rounding */
        dst[i] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
    }
    free(buf);
    img_resize_plan_free(&p);
    return XD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * reference */

/* Weight of source pixel i in output pixel d along an axis of S -> D pixels. */
static double ref_weight(int S, int D, int d, int i)
{
    if (D < S) {
        /* output d covers [d*s, (d+1)*s) in source pixels; overlap with [i, i+1), over s */
        double s = (double)S / D, lo = d * s, hi = (d + 1) * s;
        double ov = fmin(hi, i + 1.0) - fmax(lo, (double)i);
        return ov > 0 ? ov / s : 0.0;
    }
    /* tent kernel around the clamped sample position */
    double p = (d + 0.5) * ((double)S / D) - 0.5;
    p = fmin(fmax(p, 0.0), S - 1.0);
    double t = 1.0 - fabs(p - i);
    return t > 0 ? t : 0.0;
}

xd_status img_resize_ref_f32(const float *src, int sh, int sw, int c, float *dst, int dh, int dw,
                             xd_err *e)
{
    xd_status s = check_args(src, sh, sw, c, dst, dh, dw, e);
    if (s) return s;
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int ch = 0; ch < c; ch++) {
                double acc = 0;
                for (int i = 0; i < sh; i++) {
                    double wy = ref_weight(sh, dh, y, i);
                    if (wy == 0) continue;
                    for (int j = 0; j < sw; j++) {
                        double wx = ref_weight(sw, dw, x, j);
                        if (wx != 0) acc += wy * wx * src[((size_t)i * sw + j) * c + ch];
                    }
                }
                dst[((size_t)y * dw + x) * c + ch] = (float)acc;
            }
    return XD_OK;
}
