/* Dense maps (see densemap.h): window classifications to per-pixel targets. */
#include "align/densemap.h"

#include <assert.h>
#include <math.h>
#include <string.h>

const char *const align_dense_weight_names[ALIGN_DENSE_WEIGHT_COUNT] = {"uniform", "confidence"};
static_assert(ALIGN_DENSE_WEIGHT_COUNT == 2, "align_dense_weight_names out of date");

/* tolerance on a window's probabilities summing to 1 (softmax outputs stored in float) */
#define PROB_SUM_TOL 1e-3

xd_status align_dense_weight_parse(const char *word, align_dense_weight *out, xd_err *e)
{
    for (int i = 0; i < ALIGN_DENSE_WEIGHT_COUNT; i++)
        if (strcmp(word, align_dense_weight_names[i]) == 0) {
            *out = (align_dense_weight)i;
            return XD_OK;
        }
    return xd_fail(e, XD_EARG, "dense map: unknown window weighting '%s' (uniform or confidence)",
                   word);
}

align_dense_opts align_dense_default_opts(void)
{
    return (align_dense_opts){.threshold = 25.0f, .weight = ALIGN_DENSE_UNIFORM, .min_conf = 0.0f};
}

static int box_inside(align_box b, int H, int W)
{
    return b.w >= 1 && b.h >= 1 && b.x >= 0 && b.y >= 0 && b.x <= W - b.w && b.y <= H - b.h;
}

static xd_status check_inputs(const float *fg, int H, int W, const align_box *win,
                              const float *probs, int nwin, int K, const align_dense_opts *o,
                              xd_err *e)
{
    if (H < 1 || W < 1 || K < 1 || nwin < 0)
        return xd_fail(e, XD_EARG, "dense map: canvas %dx%d, %d classes, %d windows", H, W, K,
                       nwin);
    if (!isfinite(o->threshold) || !(o->min_conf >= 0.0f && o->min_conf <= 1.0f) ||
        (unsigned)o->weight >= ALIGN_DENSE_WEIGHT_COUNT)
        return xd_fail(e, XD_EARG,
                       "dense map: threshold %g must be finite, min_conf %g in [0, 1], weighting "
                       "one of uniform/confidence", (double)o->threshold, (double)o->min_conf);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (!isfinite(fg[(size_t)y * W + x]))
                return xd_fail(e, XD_ENUM, "dense map: foreground value at (x=%d, y=%d) is %g", x,
                               y, (double)fg[(size_t)y * W + x]);
    for (int i = 0; i < nwin; i++) {
        const align_box b = win[i];
        if (!box_inside(b, H, W))
            return xd_fail(e, XD_EARG,
                           "dense map: window %d (x=%d y=%d w=%d h=%d) is empty or leaves the "
                           "%dx%d canvas", i, b.x, b.y, b.w, b.h, W, H);
        const float *p = probs + (size_t)i * K;
        double sum = 0.0;
        for (int k = 0; k < K; k++) {
            if (!isfinite(p[k]))
                return xd_fail(e, XD_ENUM, "dense map: window %d: probability of class %d is %g",
                               i, k, (double)p[k]);
            if (p[k] < 0.0f)
                return xd_fail(e, XD_EARG, "dense map: window %d: probability of class %d is "
                               "negative (%g)", i, k, (double)p[k]);
            sum += p[k];
        }
        if (!(fabs(sum - 1.0) <= PROB_SUM_TOL))
            return xd_fail(e, XD_EARG, "dense map: window %d: probabilities sum to %.6g, not 1 "
                           "(pass softmax outputs, not logits)", i, sum);
    }
    return XD_OK;
}

/* t[k] = sum_w c_w p_w[k] / sum_w c_w over covering windows (foreground); one-hot K (background) */
xd_status align_dense_targets(float *target, uint8_t *mask, const float *fg, int H, int W,
                              const align_box *win, const float *probs, int nwin, int K,
                              const align_dense_opts *o, xd_err *e)
{
    xd_status st = check_inputs(fg, H, W, win, probs, nwin, K, o, e);
    if (st != XD_OK) return st;
    const int K1 = K + 1;
#pragma omp parallel for
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float *t = target + ((size_t)y * W + x) * K1;
            uint8_t *mk = mask + (size_t)y * W + x;
            for (int k = 0; k < K1; k++) t[k] = 0.0f;
            if (!(fg[(size_t)y * W + x] > o->threshold)) {
                t[K] = 1.0f;
                *mk = 1;
                continue;
            }
            double wsum = 0.0;
            for (int i = 0; i < nwin; i++) {
                const align_box b = win[i];
                if (x < b.x || x >= b.x + b.w || y < b.y || y >= b.y + b.h) continue;
                const float *p = probs + (size_t)i * K;
                double c = 1.0;
                if (o->weight == ALIGN_DENSE_CONFIDENCE) {
                    c = p[0];
                    for (int k = 1; k < K; k++) c = fmax(c, p[k]);
                }
                for (int k = 0; k < K; k++) t[k] += (float)(c * p[k]);
                wsum += c;
            }
            if (wsum == 0.0) { /* foreground that no window saw */
                *mk = 0;
                continue;
            }
            float top = 0.0f;
            for (int k = 0; k < K; k++) {
                t[k] = (float)(t[k] / wsum);
                top = fmaxf(top, t[k]);
            }
            *mk = top >= o->min_conf;
        }
    return XD_OK;
}

/* number of offsets 0, s, 2s, ... below n - w, plus the last one, n - w */
static int axis_count(int n, int w, int stride)
{
    return (int)(((long long)n - w + stride - 1) / stride + 1);
}

int align_dense_grid(align_box *boxes, int cap, int H, int W, int wh, int ww, int stride)
{
    if (wh < 1 || ww < 1 || wh > H || ww > W || stride < 1) return -1;
    const int ny = axis_count(H, wh, stride), nx = axis_count(W, ww, stride);
    if ((long long)ny * nx > 0x7fffffff) return -1;
    int n = 0;
    for (int iy = 0; iy < ny; iy++)
        for (int ix = 0; ix < nx; ix++, n++) {
            if (n >= cap) continue;
            /* offset i is min(i * stride, size - window) */
            const int y = iy * stride < H - wh ? iy * stride : H - wh;
            const int x = ix * stride < W - ww ? ix * stride : W - ww;
            boxes[n] = (align_box){x, y, ww, wh};
        }
    return n;
}

/* out[r][c][ch] = img[box.y + r][box.x + c][ch] */
xd_status align_dense_crop(float *out, const float *img, int H, int W, int C, align_box box,
                           xd_err *e)
{
    if (C < 1 || !box_inside(box, H, W))
        return xd_fail(e, XD_EARG, "dense map: crop (x=%d y=%d w=%d h=%d, %d channels) does not "
                       "fit the %dx%d image", box.x, box.y, box.w, box.h, C, W, H);
    for (int r = 0; r < box.h; r++)
        memcpy(out + (size_t)r * box.w * C, img + ((size_t)(box.y + r) * W + box.x) * C,
               (size_t)box.w * C * sizeof(float));
    return XD_OK;
}
