/* Evaluation forwards of 3 x 3 convolutions by Winograd's F(2x2, 3x3), in bf16 (nn_bwino_*) and
 * in float32 (nn_wino_*, below), and float32 training forwards and gradients (for nn/conv.c,
 * nn/conv_dw.c and the model's packing; the teacher-output cache names them in its keys).
 *
 * Each 2 x 2 block of output positions (a tile) is computed from the 4 x 4 window of the input
 * under it as Y = A' [(G g G') . (B' d B)] A, over 16 transformed positions e = (r, c) of 4 x 4:
 * per e one product of the tiles' transformed inputs (tiles x C) by the transformed weights (C x
 * OC), 2.25 times fewer multiplications than the direct convolution's 9 taps. With
 *   B' = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A' = [1 1 1 0; 0 1 -1 -1],
 * the transforms run in float32 in the order nn_bwino_input_transform, nn_bwino_weight_transform
 * and nn_bwino_output_transform give (the tests' reference calls the same), the transformed
 * inputs and weights are rounded to bf16 (nn_bf16_bits), their products summed in float32 by the
 * AVX512_BF16 tile of nn/bf16.h (pairs of channels in order), and the bias added after the output
 * transform. So it is not the direct kernel's arithmetic: the transformed operands carry their
 * own rounding (each a sum of up to 4 inputs or 9 weights), about 2^-9 of their size, where the
 * direct kernel rounds each input and weight alone. Within a run the bits are fixed: each image is
 * computed by one thread the same way at any thread count.
 *
 * In bf16 only evaluation forwards use it (s->winograd set, as an evaluation forward sets it:
 * inference, a teacher's forward, validation), never a training forward, whose backward and
 * checkpoints keep the direct kernels' bits (the rounding of the transformed operands to bf16 is
 * coarser than the direct kernel's). In float32 a training forward uses it too (the model sets
 * s->winograd then), and so does its backward: the weight gradient by F(3x3, 2x2) (nn_wino_dw,
 * below), the input gradient, where the backward writes it (not where it adds into one), as
 * Winograd's forward of the output gradient with the turned kernel (nn/conv.c: the input
 * gradient of a stride-1 convolution is a forward convolution of the output gradient, padded by
 * 2 - pad, with the kernel turned by half a turn and its channels swapped).
 *
 * In float32 the same transforms run in float32 and nothing is rounded to bf16: V and U are the
 * transforms' float32 values, each M_e = V_e U_e by the float32 kernel (nn/gemm.h: one FMA chain
 * over the C input channels per value), the output transform and the bias as above. Not the
 * direct kernel's bits, but about as close to the exact convolution: its chains are C long where
 * the direct kernel's are 9 C, beside a few sums of the transforms (the tests measure its worst
 * error at 0.35 to 0.7 times the direct kernel's on their shapes, and bound it by float32's
 * rounding of the algorithm's sums). */
#ifndef XD_NN_CONV_WINO_H
#define XD_NN_CONV_WINO_H

#include <stddef.h>
#include <stdint.h>

#include "nn/layers.h"

/* Whether nn_bwino_forward computes s now: s->winograd, bf16 products on AVX512_BF16 (AMX keeps
 * the direct tiles, which run there at many times the dot products' rate), a 3 x 3 kernel at
 * stride 1, 16 input channels at least, an even count of them, and 16 outputs at least. The
 * scratch is a round's (one or two images') transformed inputs and products, per thread: 16
 * times the output's tiles by (C / 2 + OC rounded up to 32) words an image (200 KiB for a 14 x 14
 * output of 32 to 64 channels; it grows with the image, as the direct kernel's grid does). */
int nn_bwino_takes(const nn_conv_shape *s);
/* Whether nn_wino_forward computes s now: s->winograd (any float32 forward of a model but one
 * through a folded norm), float32 products, a 3 x 3 kernel at
 * stride 1, 16 input channels and 16 outputs at least (on every build: the float32 kernel is the
 * one nn/gemm.c was built with). Its scratch is as nn_bwino_takes says, with C words for C / 2. */
int nn_wino_takes(const nn_conv_shape *s);
/* How bf16 evaluation forwards compute the 3 x 3 convolutions nn_bwino_takes describes, and
 * those of one channel (nn/conv_bfirst.h), on the bf16 kernel in use: Winograd's and by pairs,
 * or "direct" (the direct product and float32; part of a teacher-output cache's key,
 * distill/cache.h, as their bits differ; the versions count changes to their arithmetic) */
const char *nn_bwino_eval_convolutions(void);
/* The same for float32 evaluation forwards (nn_wino_takes), on every build: "winograd F(2x2,
 * 3x3) float32 v1" (the version counts changes to their arithmetic) */
const char *nn_wino_eval_convolutions(void);

/* out (B, OH, OW, OC) = s's convolution of inp with w (+ b when s->bias) as above; image(ctx, b),
 * when given, runs on each image once its rows are final, by the thread that computed them.
 * wpk: the weights transformed and packed once by nn_bwino_pack, or NULL: for this call. pool
 * (or NULL, else nn_bwino_pools(s, pool)): pool->out is also written, as nn_relu_maxpool_image
 * would write it from out (the same bits), each window from its tile's outputs as they are made;
 * then out may be NULL, where nothing else reads the outputs.
 * Runs on the bf16 kernel in use (nn_bgemm_isa(): AVX512_BF16, or the portable loop in the same
 * order). */
void nn_bwino_forward(float *out, const float *inp, const float *w, const uint32_t *wpk,
                      const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                      void *image_ctx, const nn_relu_pool *pool);
/* nn_bwino_forward in float32 as above: wpk packed by nn_wino_pack, or NULL (packed for the
 * call); the same bits at any thread count, each image computed by one thread. */
void nn_wino_forward(float *out, const float *inp, const float *w, const float *wpk,
                     const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                     void *image_ctx, const nn_relu_pool *pool);
/* Whether nn_bwino_forward (or nn_wino_forward) can pool for pool: inference's ReLU and max pool (neither the ReLU's
 * output nor an argmax wanted), 2 x 2 at stride 2 over the whole of an even OH x OW output, whose
 * windows are then its tiles. */
int nn_bwino_pools(const nn_conv_shape *s, const nn_relu_pool *pool);
/* The words of the packed transformed weights of s (batch aside), and the packing */
size_t nn_bwino_packed_size(const nn_conv_shape *s);
void nn_bwino_pack(uint32_t *wpk, const float *w, const nn_conv_shape *s);
/* The floats of the float32 transformed weights (nn/gemm.h's packing of each U_e), and that */
size_t nn_wino_packed_size(const nn_conv_shape *s);
void nn_wino_pack(float *wpk, const float *w, const nn_conv_shape *s);

/* The kernel's own tile code, exposed for the tests (its vector paths against the transforms
 * below, bit for bit). _input_tile: the input transform of the window whose 16 positions'
 * channels are at src (C floats each, C even), each position e's values rounded to bf16 in pairs
 * (nn_bf16_round), C / 2 words at v + e * ldv. _output_tile: dst[k] (OC floats each, k = 2 y +
 * x) = the output transform of the tile's 16 values per output at m (estride apart) + bias (or
 * NULL), and pooled (or NULL) the largest of their ReLUs (x > 0 ? x : 0) in that order. */
void nn_bwino_input_tile(uint32_t *v, size_t ldv, const float *const src[16], int C);
void nn_bwino_output_tile(float *const dst[4], float *pooled, const float *m, size_t estride,
                          const float *bias, int OC);
/* The float32 input tile (nn_wino_forward's; its output tile is nn_bwino_output_tile): the input
 * transform of the window's C channels, position e's values at v + e * ldv. */
void nn_wino_input_tile(float *v, size_t ldv, const float *const src[16], int C);

/* The float32 weight gradient by Winograd's F(3x3, 2x2) (conv_wino.c), where nn_wino_dw_takes s:
 * nn_wino_takes, and at most 1024 tiles of 2 x 2 outputs an image (its scratch grows with a chunk
 * of the batch, per thread: 16 x about 256 tiles x (C + OC) floats, and with the image past
 * that; and with the batch: OC floats an image). As the
 * direct weight gradient's product: C (OC, N) = dout' (OC, B OH OW) [cols | 1] + beta C, with N
 * = 9 C (no bias column) or 9 C + 1 (the bias's gradient last), each row's (ky, kx, c) in the
 * weights' order. Not the direct kernel's bits; the same at any thread count. */
int nn_wino_dw_takes(const nn_conv_shape *s);
void nn_wino_dw(float *C, int N, float beta, const float *dout, const float *inp,
                const nn_conv_shape *s);

/* The transforms, per channel: v (16, row-major 4 x 4) = B' d B of the window d (16); u (16) =
 * G g G' of the kernel g (9, row-major 3 x 3); y (4, row-major 2 x 2) = A' m A of m (16). */
void nn_bwino_input_transform(float v[16], const float d[16]);
void nn_bwino_weight_transform(float u[16], const float g[9]);
void nn_bwino_output_transform(float y[4], const float m[16]);
/* The weight gradient's: u (16) = A h A' of a tile's output gradients h (row-major 2 x 2); y (9,
 * row-major 3 x 3) = G' m G of m (16). */
void nn_wino_dout_transform(float u[16], const float h[4]);
void nn_wino_dw_transform(float y[9], const float m[16]);

#endif
