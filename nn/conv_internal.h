/* What nn/conv.c shares with nn/conv_dw.c: padding an image, the offsets of a window's elements
 * in a padded image, whether the weight gradient is read from the image, and the weight
 * gradient's product. Not part of the layer's interface. */
#ifndef XD_NN_CONV_INTERNAL_H
#define XD_NN_CONV_INTERNAL_H

#include <stddef.h>
#include <string.h>

#include "nn/gemm.h"
#include "nn/layers.h"
#include "nn/mm.h"

/* Image b of inp zero-padded into P: H + 2 pad rows of (W + 2 pad) C floats. Only the padding is
 * zeroed, around the rows copied in. The sizes are copied out of s first: its fields could alias
 * the floats written here, which would keep those loops from vectorising. */
static inline void pad_image(float *P, const float *inp, const nn_conv_shape *s, int b)
{
    const int C = s->C, H = s->H, W = s->W, pad = s->pad;
    const size_t rp = (size_t)(W + 2 * pad) * C, edge = (size_t)pad * C; /* a row; its margin */
    const size_t n_img = (size_t)(H + 2 * pad) * rp;
    memset(P, 0, sizeof(float) * (pad * rp + edge));
    for (int y = 0; y < H; y++) {
        float *r = P + (size_t)(y + pad) * rp;
        memcpy(r + edge, inp + (((size_t)b * H + y) * W) * C, sizeof(float) * W * C);
        memset(r + edge + (size_t)W * C, 0, sizeof(float) * 2 * edge); /* and the next's left */
    }
    memset(P + (size_t)(H + pad) * rp, 0, sizeof(float) * (n_img - (size_t)(H + pad) * rp));
}

/* off[k] for window element k = (ky, kx, c): where it lies from the window's first value in a
 * zero-padded image of s (rows of W + 2 pad positions of C channels) */
static inline void window_offsets(int *off, const nn_conv_shape *s)
{
    const int Wp = s->W + 2 * s->pad;
    for (int ky = 0, k = 0; ky < s->KH; ky++)
        for (int kx = 0; kx < s->KW; kx++)
            for (int c = 0; c < s->C; c++) off[k++] = (ky * Wp + kx) * s->C + c;
}

/* Whether the weight gradient of a first convolution on one channel is read from the image */
static inline int dw_from_image(const nn_conv_shape *s)
{
    return nn_mm_precision() == NN_PREC_FLOAT32 && s->stride == 1 &&
           nn_sgemm_conv_dw_takes(s->OC, s->C, s->KH, s->KW);
}

/* The weight gradient's product, C (OC, N) = dout^T (OC, M) @ cols (M, N) + beta * C
 * (nn/conv_dw.c) */
void nn_conv2d_dw(float *C, int N, float beta, const float *dout, const nn_pool_grad *pg,
                  float *cols, int unfolded, const float *inp, const nn_conv_shape *s);

#endif
