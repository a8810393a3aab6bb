/* Evaluation forwards in bf16 of a first convolution: one input channel, 3 x 3 windows, stride 1
 * (nn/conv.c runs it image by image and row by row, as its float32 direct kernel; the model's
 * packing packs its weights).
 *
 * A convolution of fewer than 16 channels otherwise keeps float32 (nn_precision_of_conv): with
 * K = 9 values a window, unfolding it into pairs for bf16's products costs more than they save.
 * Here nothing is unfolded. Each zero-padded image a is rounded to bf16 once (nn_bf16_bits, value
 * by value), into three images of pairs, words of two halves, row-major:
 *   P[y][x] = (a[y][x], a[y][x + 1]),  V[y][x] = (a[y][x], a[y + 1][x]),  Z[y][x] = (a[y][x], 0),
 * and output (oy, ox)'s window is five of them, in this order: P at (oy, ox), (oy + 1, ox) and
 * (oy + 2, ox) (taps kx = 0, 1 of each window row), V at (oy, ox + 2) (taps (0, 2) and (1, 2)), Z
 * at (oy + 2, ox + 2) (tap (2, 2)). Neighbouring outputs' pairs are neighbouring words, so the
 * AVX512_BF16 tile of nn/bf16.h takes them in place: five dot products against each output's
 * weights in the same pairs (rounded to bf16; the sixth weight 0), summed in float32 in that
 * order, then + bias, for nine multiply-adds in float32. The sums are not float32's: the image
 * and the weights are rounded to bf16, as every other convolution's of a bf16 forward are.
 *
 * Only evaluation forwards use it (s->winograd set: inference, a teacher's forward, validation),
 * on the AVX512_BF16 kernel, as nn/conv_wino.c; a training forward keeps such a layer float32. */
#ifndef XD_NN_CONV_BFIRST_H
#define XD_NN_CONV_BFIRST_H

#include <stddef.h>
#include <stdint.h>

#include "nn/layers.h"

/* Whether s is a convolution this kernel computes in an evaluation forward in bf16:
 * s->winograd, the AVX512_BF16 kernel in use, one input channel, a 3 x 3 kernel at stride 1, a
 * multiple of 16 outputs (nn_precision_of_conv then leaves it bf16). */
int nn_bfirst_shape(const nn_conv_shape *s);
/* Whether it computes s now: nn_bfirst_shape and bf16 products */
int nn_bfirst_takes(const nn_conv_shape *s);

/* The packed weights: words, and the packing of w (OC, 3, 3, 1) */
size_t nn_bfirst_packed_size(const nn_conv_shape *s);
void nn_bfirst_pack(uint32_t *wpk, const float *w, const nn_conv_shape *s);

/* Floats of scratch for one image's pairs (4-byte words each; 64-byte aligned when scratch is) */
size_t nn_bfirst_scratch(const nn_conv_shape *s);
/* Image b of inp (B, H, W, 1) padded and rounded into its pairs in scratch */
void nn_bfirst_image(float *scratch, const float *inp, const nn_conv_shape *s, int b);
/* Output row oy of that image: out (OW rows of OC floats) = the products of its windows with the
 * packed weights, + bias (OC, or NULL) */
void nn_bfirst_row(float *out, const float *scratch, const uint32_t *wpk, const float *bias,
                   const nn_conv_shape *s, int oy);
/* Whether nn_bfirst_pooled_row can pool for pool: inference's ReLU and max pool (neither the
 * ReLU's output nor an argmax wanted), 2 x 2 at stride 2, over 4 output columns at least. */
int nn_bfirst_pools(const nn_conv_shape *s, const nn_relu_pool *pool);
/* Output rows oy and oy + 1, their ReLU max-pooled 2 x 2 at stride 2 as nn_relu_maxpool_image
 * pools them (the same bits), without the rows themselves: pooled (OW / 2 windows of OC
 * floats). */
void nn_bfirst_pooled_row(float *pooled, const float *scratch, const uint32_t *wpk,
                          const float *bias, const nn_conv_shape *s, int oy);

#endif
