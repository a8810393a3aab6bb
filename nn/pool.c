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

/* the argmax a of a window whose maximum is m, flagged where m is not positive (layers.h) */
static inline int32_t not_positive(int32_t a, float m)
{
    return m > 0.0f ? a : (int32_t)((uint32_t)a | (uint32_t)NN_POOL_NOT_POSITIVE);
}

/* Channels are innermost, so each window position is one contiguous row of C values and the
 * comparison runs across channels (vectorisable), not across the window. Strict '>' keeps the
 * first maximum, as PyTorch does; a NaN wins and stays (v != v). relu: of the ReLU of inp,
 * computed on the way: no NaN survives a ReLU, so only '>' decides there, and the window's first
 * maximum wins as it does over the ReLU's written output. argmax NULL: the maximum alone. */
static inline __attribute__((always_inline)) void
maxpool_row_of(float *out, int32_t *argmax, const float *img, const nn_pool_shape *s, int b,
               int oy, int relu)
{
    const int C = s->C;
    for (int ox = 0; ox < s->OW; ox++) {
        size_t o = (((size_t)b * s->OH + oy) * s->OW + ox) * C;
        float *best = out + o;
        int32_t *at = argmax ? argmax + o : NULL;
        for (int ky = 0; ky < s->k; ky++)
            for (int kx = 0; kx < s->k; kx++) {
                const int32_t base = ((oy * s->stride + ky) * s->W + ox * s->stride + kx) * C;
                const float *p = img + base;
                if (ky == 0 && kx == 0) {
                    for (int c = 0; c < C; c++) {
                        best[c] = relu && !(p[c] > 0.0f) ? 0.0f : p[c];
                        if (at) at[c] = base + c;
                    }
                    continue;
                }
                for (int c = 0; c < C; c++) {
                    float v = relu && !(p[c] > 0.0f) ? 0.0f : p[c];
                    int take = (v > best[c]) | ((v != v) & (best[c] == best[c]));
                    best[c] = take ? v : best[c];
                    if (at) at[c] = take ? base + c : at[c];
                }
            }
        for (int c = 0; at && c < C; c++) at[c] = not_positive(at[c], best[c]);
    }
}

static void maxpool_row(float *out, int32_t *argmax, const float *img, const nn_pool_shape *s,
                        int b, int oy)
{
    maxpool_row_of(out, argmax, img, s, b, oy, 0);
}

/* maxpool_row_of over the ReLU of inp; the usual pool (2 x 2, stride 2) with the window unrolled,
 * in a loop that vectorises. keep: argmax is given (a constant where inlined). */
static inline __attribute__((always_inline)) void
relu_maxpool_row_of(float *out, int32_t *argmax, const float *img, const nn_pool_shape *s, int b,
                    int oy, int keep)
{
    if (s->k != 2 || s->stride != 2) {
        maxpool_row_of(out, keep ? argmax : NULL, img, s, b, oy, 1);
        return;
    }
    const int C = s->C, W = s->W;
    const float *r0 = img + (size_t)2 * oy * W * C, *r1 = r0 + (size_t)W * C;
    const size_t o = ((size_t)b * s->OH + oy) * s->OW * C;
    float *restrict best = out + o;
    int32_t *restrict at = keep ? argmax + o : NULL;
    for (int ox = 0; ox < s->OW; ox++, r0 += 2 * C, r1 += 2 * C, best += C) {
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
            if (keep) at[(size_t)ox * C + c] = not_positive(a, m);
        }
    }
}

static void relu_maxpool_row(float *out, int32_t *argmax, const float *img,
                             const nn_pool_shape *s, int b, int oy)
{
    relu_maxpool_row_of(out, argmax, img, s, b, oy, 1);
}

/* Inference, no argmax: the maximum alone */
static void relu_maxpool_row_plain(float *out, const float *img, const nn_pool_shape *s, int b,
                                   int oy)
{
    relu_maxpool_row_of(out, NULL, img, s, b, oy, 0);
}

void nn_maxpool_forward(float *out, int32_t *argmax, const float *inp, const nn_pool_shape *s)
{
#pragma omp parallel for collapse(2)
    for (int b = 0; b < s->B; b++)
        for (int oy = 0; oy < s->OH; oy++)
            maxpool_row(out, argmax, inp + (size_t)b * s->H * s->W * s->C, s, b, oy);
}

/* Pool rows oy0..oy1 of image b, x its input, r its ReLU as written (or NULL) */
static void relu_maxpool_rows(const nn_relu_pool *j, int b, const float *x, const float *r,
                              int oy0, int oy1)
{
    for (int oy = oy0; oy < oy1; oy++) {
        if (!j->argmax) relu_maxpool_row_plain(j->out, x, j->s, b, oy);
        else if (r) maxpool_row(j->out, j->argmax, r, j->s, b, oy);
        else relu_maxpool_row(j->out, j->argmax, x, j->s, b, oy);
    }
}

void nn_relu_maxpool_rows_at(const nn_relu_pool *j, int b, const float *x, int oy0, int oy1)
{
    XD_ASSERT(!j->relu_out);
    relu_maxpool_rows(j, b, x, NULL, oy0, oy1);
}

/* One image: its ReLU is written (when relu_out is given) and then pooled while it is still in
 * cache, instead of the pool reading the whole batch back from memory. */
void nn_relu_maxpool_image_at(const nn_relu_pool *j, int b, const float *x)
{
    const size_t per_in = (size_t)j->s->H * j->s->W * j->s->C;
    float *r = j->relu_out ? j->relu_out + (size_t)b * per_in : NULL;
    if (r)
        for (size_t i = 0; i < per_in; i++) r[i] = x[i] > 0.0f ? x[i] : 0.0f;
    relu_maxpool_rows(j, b, x, r, 0, j->s->OH);
}

void nn_relu_maxpool_image(const nn_relu_pool *j, int b)
{
    nn_relu_maxpool_image_at(j, b, j->inp + (size_t)b * j->s->H * j->s->W * j->s->C);
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

void nn_maxpool_grad_rows(float *restrict dst, const nn_pool_grad *g, int b, int y, int x0, int n,
                          int o0, int oc)
{
    const nn_pool_shape *ps = g->ps;
    const int C = ps->C, k = ps->k, qy = y / k;
    /* through the ReLU a flagged argmax matches no offset; else the offset alone is compared */
    const int32_t keep = g->relu ? -1 : NN_POOL_OFFSET;
    /* x's window qx and place rx in it, stepped along the row (no division a pixel) */
    int qx = x0 / k, rx = x0 % k;
    for (int i = 0; i < n; i++, dst += oc) {
        const int x = x0 + i;
        if (qy >= ps->OH || qx >= ps->OW) { /* the ragged edge no window covers */
            memset(dst, 0, sizeof(float) * (size_t)oc);
        } else {
            const size_t q = (((size_t)b * ps->OH + qy) * ps->OW + qx) * C + o0;
            const int32_t base = (y * ps->W + x) * C + o0;
            const int32_t *restrict am = g->argmax + q;
            const float *restrict d = g->dout + q;
            /* d[c]'s bits where the argmax matches, else +0's, by a mask and not a branch (a
             * scalar loop with a branch that goes either way where there are no masked vector
             * stores: 11% of the teacher's float32 step on an AVX2 CPU); + 0.0f makes -0 +0,
             * as the ReLU's backward leaves it */
            for (int c = 0; c < oc; c++) {
                uint32_t bits;
                memcpy(&bits, d + c, sizeof bits);
                bits &= -(uint32_t)((am[c] & keep) == base + c);
                float v;
                memcpy(&v, &bits, sizeof v);
                dst[c] = 0.0f + v;
            }
        }
        if (++rx == k) {
            rx = 0;
            qx++;
        }
    }
}

/* first: each image is zeroed just before its scatter, while it is in cache, instead of a
 * separate pass over the whole batch; the sums are the same. relu: the pool read a ReLU's output,
 * and the gradient goes through that ReLU too. A window's maximum relu(x[argmax]) is positive
 * exactly when x[argmax] is, so the argmax's NN_POOL_NOT_POSITIVE bit tells without reading x. A
 * position whose input is not positive then adds +0 at each of its windows and ends +0, as
 * ReLU's backward would leave it; any other position gets the same sum the pool's own backward
 * would give it. */
static void maxpool_backward(float *dinp, const float *dout, const int32_t *argmax, int relu,
                             const nn_pool_shape *s, int first)
{
    const size_t per_out = (size_t)s->OH * s->OW * s->C, per_in = (size_t)s->H * s->W * s->C;
    const nn_pool_grad g = {dout, argmax, s, relu};
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) {
        float *img = dinp + (size_t)b * per_in;
        const float *d = dout + b * per_out;
        const int32_t *am = argmax + b * per_out;
        if (first && s->k == s->stride) { /* each position written once, row by row */
            for (int r = 0; r < s->H; r++)
                nn_maxpool_grad_rows(img + (size_t)r * s->W * s->C, &g, b, r, 0, s->W, 0, s->C);
            continue;
        }
        if (first) memset(img, 0, sizeof(float) * per_in);
        /* through the ReLU a flagged window adds +0; else every window adds its gradient */
        const int32_t stop = relu ? NN_POOL_NOT_POSITIVE : 0;
        for (size_t i = 0; i < per_out; i++)
            img[am[i] & NN_POOL_OFFSET] += am[i] & stop ? 0.0f : d[i];
    }
}

void nn_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                         const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, 0, s, 0);
}

void nn_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                               const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, 0, s, 1);
}

void nn_relu_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                                    const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, 1, s, 1);
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
