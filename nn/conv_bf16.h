/* Convolutions in bf16 with their windows read in place (internal to nn/conv.c).
 *
 * While a model trains in bf16 (nn_mm_precision() is NN_PREC_BF16) on a CPU whose bf16 products
 * run on AMX tiles, AVX512_BF16's dot products or AVX2's FMAs (nn_bgemm_isa() is not
 * NN_BISA_PORTABLE), a stride-1 convolution's forward and its input gradient need no unfolded
 * windows: each image is copied once into bf16 pairs of channels, zero-padded, and a tile of 16
 * (AMX) or up to 14 (AVX512_BF16, AVX2) output positions at one tap of the kernel is as many
 * consecutive positions of that copy, read in place a position apart. The input gradient
 * is the same product over the output gradient padded by the kernel's size less one less the
 * padding, with the kernel turned half a turn and its channel axes swapped; the weight gradient
 * is a third product (nn_bconv_dw). Sums are float32 over the taps in order, channel pairs within
 * a tap in order (one chain per element, in the kernel's order within a pair or a tile step, see
 * gemm_bf16.h: AMX's bits differ from the others'); the bias is added to the sum in float32. Each
 * image is computed by one thread the same way, so the bits do not depend on the thread count. */
#ifndef XD_NN_CONV_BF16_H
#define XD_NN_CONV_BF16_H

#include "nn/layers.h"

/* Whether nn_bconv_forward (nn_bconv_dinp) computes s now: bf16 products on AMX, AVX512_BF16 or
 * AVX2, stride 1, a kernel of more than one tap, and enough channels of what the windows read to
 * fill half a tile step at least (16: the input's C for the forward, the output's OC for the input
 * gradient, whose padding must also be less than the kernel; without AMX the input gradient
 * also wants 16 input channels at least, its tiles' columns). */
int nn_bconv_forward_takes(const nn_conv_shape *s);
int nn_bconv_dinp_takes(const nn_conv_shape *s);
/* Whether nn_bconv_dw computes s's weight gradient now: as the forward. */
int nn_bconv_dw_takes(const nn_conv_shape *s);

/* out (B, OH, OW, OC) = the convolution of inp with w (and + b when s->bias); image(ctx, b), when
 * given, runs on each image once its rows are final, by the thread that computed them. wpk: w
 * packed once by nn_bconv_pack (many calls on the same weights), or NULL: packed for this call. */
void nn_bconv_forward(float *out, const float *inp, const float *w, const uint32_t *wpk,
                      const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                      void *image_ctx);
/* The words of nn_bconv_forward's packed weights for s (batch aside), and the packing */
size_t nn_bconv_packed_size(const nn_conv_shape *s);
void nn_bconv_pack(uint32_t *wpk, const float *w, const nn_conv_shape *s);

/* dinp (B, H, W, C) = the input gradient of dout (B, OH, OW, OC) through w, written (first) or
 * added to dinp. */
void nn_bconv_dinp(float *dinp, const float *dout, const float *w, const nn_conv_shape *s,
                   int first);

/* The weight gradient as the layer's product makes it: C (OC, N) = [dw | db] (N = K + 1 with a
 * bias, K = KH KW C, dw in w's layout) written (beta 0) or added (beta 1). dw's sums run over the
 * batch's output positions in pairs: per image, the output gradient as rows of pairs of
 * positions per channel (the A operand), and the image on its grid as words holding one channel
 * at two neighbouring positions (so that B's pairs of a tap are position pairs two grid rows
 * apart, read in place); the batch in two halves (its first floor(B / 2) images, then the rest),
 * each in chunks of images whose copies stay in cache, each tile of sums carried from chunk to
 * chunk, and the two halves' sums added at the end (so a batch of two gives each image's own sums
 * added). db is the float32 column sum of dout in position order. */
void nn_bconv_dw(float *C, int N, float beta, const float *dout, const float *inp,
                 const nn_conv_shape *s);

#endif
