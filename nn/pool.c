/* Pooling layers (see layers.h for the conventions): max pooling, the ReLU and max pool pair in
 * one pass per image (the convolution in front of it calls that pass as each image's rows come out
 * of its product, nn/conv.c), average pooling and global average pooling. */
#include "nn/layers.h"

#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "core/status.h"

int nn_pool_shape_init(nn_pool_shape *s)
{
    if (s->B <= 0 || s->H <= 0 || s->W <= 0 || s->C <= 0 || s->k <= 0 || s->stride <= 0 ||
        s->k > s->H || s->k > s->W)
        return -1;
    s->OH = (s->H - s->k) / s->stride + 1;
    s->OW = (s->W - s->k) / s->stride + 1;
    return 0;
}

/* Channels are innermost, so each window position is one contiguous row of C values and the
 * comparison runs across channels (vectorisable), not across the window. Strict '>' keeps the
 * first maximum, as PyTorch does; a NaN wins and stays (v != v). */
static inline __attribute__((always_inline)) void
maxpool_row_of(float *out, int32_t *argmax, const float *inp, const nn_pool_shape *s, int b,
               int oy, int relu)
{
    const int C = s->C;
    const float *img = inp + (size_t)b * s->H * s->W * C;
    for (int ox = 0; ox < s->OW; ox++) {
        size_t o = (((size_t)b * s->OH + oy) * s->OW + ox) * C;
        float *best = out + o;
        int32_t *at = argmax + o;
        for (int ky = 0; ky < s->k; ky++)
            for (int kx = 0; kx < s->k; kx++) {
                const int32_t base = ((oy * s->stride + ky) * s->W + ox * s->stride + kx) * C;
                const float *p = img + base;
                if (ky == 0 && kx == 0) {
                    for (int c = 0; c < C; c++) {
                        best[c] = relu && !(p[c] > 0.0f) ? 0.0f : p[c];
                        at[c] = base + c;
                    }
                    continue;
                }
                for (int c = 0; c < C; c++) {
                    float v = relu && !(p[c] > 0.0f) ? 0.0f : p[c];
                    int take = (v > best[c]) | ((v != v) & (best[c] == best[c]));
                    best[c] = take ? v : best[c];
                    at[c] = take ? base + c : at[c];
                }
            }
    }
}

/* maxpool_row of inp, or (relu_maxpool_row) of the ReLU of inp, computed on the way: no NaN
 * survives a ReLU, so only '>' decides there, and the window's first maximum wins as it does
 * over the ReLU's written output */
static void maxpool_row(float *out, int32_t *argmax, const float *inp, const nn_pool_shape *s,
                        int b, int oy)
{
    maxpool_row_of(out, argmax, inp, s, b, oy, 0);
}

static void relu_maxpool_row(float *out, int32_t *argmax, const float *inp,
                             const nn_pool_shape *s, int b, int oy)
{
    if (s->k != 2 || s->stride != 2) {
        maxpool_row_of(out, argmax, inp, s, b, oy, 1);
        return;
    }
    /* the usual pool: the same steps with the window unrolled, in a loop that vectorises */
    const int C = s->C, W = s->W;
    const float *r0 = inp + ((size_t)b * s->H + 2 * oy) * W * C, *r1 = r0 + (size_t)W * C;
    const size_t o = ((size_t)b * s->OH + oy) * s->OW * C;
    float *restrict best = out + o;
    int32_t *restrict at = argmax + o;
    for (int ox = 0; ox < s->OW; ox++, r0 += 2 * C, r1 += 2 * C, best += C, at += C) {
        const int32_t a0 = (2 * oy * W + 2 * ox) * C, a2 = a0 + W * C;
        for (int c = 0; c < C; c++) {
            const float v0 = r0[c] > 0.0f ? r0[c] : 0.0f, v1 = r0[C + c] > 0.0f ? r0[C + c] : 0.0f,
                        v2 = r1[c] > 0.0f ? r1[c] : 0.0f, v3 = r1[C + c] > 0.0f ? r1[C + c] : 0.0f;
            float m = v0;
            int32_t a = a0 + c;
            a = v1 > m ? a0 + C + c : a;
            m = v1 > m ? v1 : m;
            a = v2 > m ? a2 + c : a;
            m = v2 > m ? v2 : m;
            a = v3 > m ? a2 + C + c : a;
            m = v3 > m ? v3 : m;
            best[c] = m;
            at[c] = a;
        }
    }
}

void nn_maxpool_forward(float *out, int32_t *argmax, const float *inp, const nn_pool_shape *s)
{
#pragma omp parallel for collapse(2)
    for (int b = 0; b < s->B; b++)
        for (int oy = 0; oy < s->OH; oy++) maxpool_row(out, argmax, inp, s, b, oy);
}


/* Inference, no argmax: the maximum of the ReLU over each window, straight from the input. The
 * values pooling the ReLU's output gives: no NaN survives a ReLU, so only '>' decides. */
static void relu_maxpool_plain(const nn_relu_pool *j, int b)
{
    const nn_pool_shape *s = j->s;
    const int C = s->C;
    const float *img = j->inp + (size_t)b * s->H * s->W * C;
    if (s->k == 2 && s->stride == 2) { /* the usual pool: the same steps with the window unrolled */
        for (int oy = 0; oy < s->OH; oy++) {
            const float *r0 = img + (size_t)2 * oy * s->W * C, *r1 = r0 + (size_t)s->W * C;
            float *best = j->out + ((size_t)b * s->OH + oy) * s->OW * C;
            for (int ox = 0; ox < s->OW; ox++, r0 += 2 * C, r1 += 2 * C, best += C)
                for (int c = 0; c < C; c++) {
                    const float v0 = r0[c] > 0.0f ? r0[c] : 0.0f,
                                v1 = r0[C + c] > 0.0f ? r0[C + c] : 0.0f,
                                v2 = r1[c] > 0.0f ? r1[c] : 0.0f,
                                v3 = r1[C + c] > 0.0f ? r1[C + c] : 0.0f;
                    const float m1 = v1 > v0 ? v1 : v0, m2 = v2 > m1 ? v2 : m1;
                    best[c] = v3 > m2 ? v3 : m2;
                }
        }
        return;
    }
    for (int oy = 0; oy < s->OH; oy++)
        for (int ox = 0; ox < s->OW; ox++) {
            float *best = j->out + (((size_t)b * s->OH + oy) * s->OW + ox) * C;
            for (int ky = 0; ky < s->k; ky++)
                for (int kx = 0; kx < s->k; kx++) {
                    const float *p =
                        img + ((size_t)(oy * s->stride + ky) * s->W + ox * s->stride + kx) * C;
                    if (ky == 0 && kx == 0) {
                        for (int c = 0; c < C; c++) best[c] = p[c] > 0.0f ? p[c] : 0.0f;
                        continue;
                    }
                    for (int c = 0; c < C; c++) {
                        const float v = p[c] > 0.0f ? p[c] : 0.0f;
                        best[c] = v > best[c] ? v : best[c];
                    }
                }
        }
}

/* One image: its ReLU is written (when relu_out is given) and then pooled while it is still in
 * cache, instead of the pool reading the whole batch back from memory. */
void nn_relu_maxpool_image(const nn_relu_pool *j, int b)
{
    const size_t per_in = (size_t)j->s->H * j->s->W * j->s->C;
    const float *x = j->inp + (size_t)b * per_in;
    if (j->relu_out) {
        float *r = j->relu_out + (size_t)b * per_in;
        for (size_t i = 0; i < per_in; i++) r[i] = x[i] > 0.0f ? x[i] : 0.0f;
    }
    if (!j->argmax) {
        relu_maxpool_plain(j, b);
        return;
    }
    for (int oy = 0; oy < j->s->OH; oy++) {
        if (j->relu_out) maxpool_row(j->out, j->argmax, j->relu_out, j->s, b, oy);
        else relu_maxpool_row(j->out, j->argmax, j->inp, j->s, b, oy);
    }
}

void nn_relu_maxpool_forward(float *relu_out, float *out, int32_t *argmax, const float *inp,
                             const nn_pool_shape *s)
{
    nn_relu_pool j = {relu_out, out, argmax, inp, s};
    if (!xd_threads_split(s->B > 1)) {
        for (int b = 0; b < s->B; b++) nn_relu_maxpool_image(&j, b);
        return;
    }
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) nn_relu_maxpool_image(&j, b);
}

/* One image of a first-write backward whose windows tile the input without overlap (k ==
 * stride): every position belongs to at most one window, so it is written once, 0 + g with g its
 * gradient or 0, in a pass over the windows that vectorises across channels; the ragged edge no
 * window covers gets zeros. y as relu_out below (or NULL). */
static void maxpool_backward_tiles(float *img, const float *d, const int32_t *am, const float *y,
                                   const nn_pool_shape *s)
{
    const int C = s->C, k = s->k;
    for (int oy = 0; oy < s->OH; oy++) {
        for (int ox = 0; ox < s->OW; ox++) {
            const size_t o = ((size_t)oy * s->OW + ox) * C;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    const int32_t base = ((oy * k + ky) * s->W + ox * k + kx) * C;
                    float *p = img + base;
                    for (int c = 0; c < C; c++) {
                        float g = am[o + c] == base + c ? d[o + c] : 0.0f;
                        if (y) g = y[o + c] > 0.0f ? g : 0.0f;
                        p[c] = 0.0f + g;
                    }
                }
        }
        if (s->OW * k < s->W) /* columns right of the last window, in this band of rows */
            for (int ky = 0; ky < k; ky++)
                memset(img + ((size_t)(oy * k + ky) * s->W + s->OW * k) * C, 0,
                       sizeof(float) * (s->W - s->OW * k) * C);
    }
    memset(img + (size_t)s->OH * k * s->W * C, 0, sizeof(float) * (s->H - s->OH * k) * s->W * C);
}

/* first: each image is zeroed just before its scatter, while it is in cache, instead of a
 * separate pass over the whole batch; the sums are the same. relu_out (or NULL): the pool read a
 * ReLU's output, and the gradient goes through that ReLU too. A window's maximum relu(x[argmax])
 * is positive exactly when x[argmax] is, so the pool's output (relu_out, (B, OH, OW, C)) tells
 * without reading x. A position whose input is not positive then adds +0 at each of its windows
 * and ends +0, as ReLU's backward would leave it; any other position gets the same sum the pool's
 * own backward would give it. */
static void maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                             const float *relu_out, const nn_pool_shape *s, int first)
{
    const size_t per_out = (size_t)s->OH * s->OW * s->C, per_in = (size_t)s->H * s->W * s->C;
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) {
        float *img = dinp + (size_t)b * per_in;
        const float *d = dout + b * per_out;
        const int32_t *am = argmax + b * per_out;
        const float *y = relu_out ? relu_out + b * per_out : NULL;
        if (first && s->k == s->stride) {
            maxpool_backward_tiles(img, d, am, y, s);
            continue;
        }
        if (first) memset(img, 0, sizeof(float) * per_in);
        if (y) {
            for (size_t i = 0; i < per_out; i++) img[am[i]] += y[i] > 0.0f ? d[i] : 0.0f;
        } else {
            for (size_t i = 0; i < per_out; i++) img[am[i]] += d[i];
        }
    }
}

void nn_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                         const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, NULL, s, 0);
}

void nn_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                               const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, NULL, s, 1);
}

void nn_relu_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                                    const float *out, const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, out, s, 1);
}

void nn_avgpool_forward(float *out, const float *inp, const nn_pool_shape *s)
{
    const float inv = 1.0f / (float)(s->k * s->k);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < s->B; b++)
        for (int oy = 0; oy < s->OH; oy++) {
            const float *img = inp + (size_t)b * s->H * s->W * s->C;
            for (int ox = 0; ox < s->OW; ox++) {
                float *o = out + (((size_t)b * s->OH + oy) * s->OW + ox) * s->C;
                for (int c = 0; c < s->C; c++) o[c] = 0.0f;
                for (int ky = 0; ky < s->k; ky++)
                    for (int kx = 0; kx < s->k; kx++) {
                        const float *p = img + ((size_t)(oy * s->stride + ky) * s->W +
                                                ox * s->stride + kx) * s->C;
                        for (int c = 0; c < s->C; c++) o[c] += p[c];
                    }
                for (int c = 0; c < s->C; c++) o[c] *= inv;
            }
        }
}

void nn_avgpool_backward(float *dinp, const float *dout, const nn_pool_shape *s)
{
    const float inv = 1.0f / (float)(s->k * s->k);
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) {
        float *img = dinp + (size_t)b * s->H * s->W * s->C;
        for (int oy = 0; oy < s->OH; oy++)
            for (int ox = 0; ox < s->OW; ox++) {
                const float *d = dout + (((size_t)b * s->OH + oy) * s->OW + ox) * s->C;
                for (int ky = 0; ky < s->k; ky++)
                    for (int kx = 0; kx < s->k; kx++) {
                        float *p = img + ((size_t)(oy * s->stride + ky) * s->W + ox * s->stride + kx) *
                                             s->C;
                        for (int c = 0; c < s->C; c++) p[c] += d[c] * inv;
                    }
            }
    }
}

/* Each channel's sum over the positions in order, 16 channels at a time in a local array (in
 * registers: stores to o, which may alias inp as far as the compiler knows, would make each add
 * wait for the one before through memory). */
static void gap_one(float *o, const float *inp, int HW, int C)
{
    enum { CB = 16 };
    const float inv = 1.0f / (float)HW;
    for (int c0 = 0; c0 < C; c0 += CB) {
        float s[CB] = {0};
        const float *x = inp + c0;
        if (C - c0 >= CB) {
            for (int i = 0; i < HW; i++, x += C)
                for (int j = 0; j < CB; j++) s[j] += x[j];
            for (int j = 0; j < CB; j++) o[c0 + j] = s[j] * inv;
        } else {
            const int n = C - c0;
            for (int i = 0; i < HW; i++, x += C)
                for (int j = 0; j < n; j++) s[j] += x[j];
            for (int j = 0; j < n; j++) o[c0 + j] = s[j] * inv;
        }
    }
}

void nn_gap_forward(float *out, const float *inp, int B, int HW, int C)
{
    const size_t per = (size_t)HW * C;
    if (!xd_threads_split((size_t)B * per > NN_PAR_MIN)) {
        for (int b = 0; b < B; b++) gap_one(out + (size_t)b * C, inp + b * per, HW, C);
        return;
    }
#pragma omp parallel for
    for (int b = 0; b < B; b++) gap_one(out + (size_t)b * C, inp + b * per, HW, C);
}

void nn_gap_backward(float *dinp, const float *dout, int B, int HW, int C)
{
    const float inv = 1.0f / (float)HW;
#pragma omp parallel for if ((size_t)B * HW * C > NN_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < HW; i++) {
            float *p = dinp + ((size_t)b * HW + i) * C;
            for (int c = 0; c < C; c++) p[c] += dout[(size_t)b * C + c] * inv;
        }
}
