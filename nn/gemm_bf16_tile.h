/* What nn/gemm_bf16.c shares with nn/gemm_bf16_tile.c, its x86 kernels: the tile sizes and the
 * kernels' entries. Internal to nn/. */
#ifndef XD_NN_GEMM_BF16_TILE_H
#define XD_NN_GEMM_BF16_TILE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BGEMM_X86 1
#endif
#include "nn/bf16.h"
#include "nn/gemm_bf16.h" /* before MR and NR: gemm.h names parameters so */

#define MR 12
#define NR 32        /* two vectors of 16 float32 lanes */

#ifdef BGEMM_X86
/* acc (rows of NR) = the sums over the segments of pairs that g describes, with AVX512_BF16: mr
 * rows, nr columns; a packed in panels (panel: g->sa 1, the pairs MR apart) or rows of pairs
 * (g->sa the row length, pairs side by side) */
void nn_btile_avx512(int mr, int nr, int panel, const uint32_t *restrict a,
                     const uint32_t *restrict b, const nn_btile_seg *g, float *restrict acc);
/* The same with AVX2 and FMA, in tile_portable's order (the same bits) */
void nn_btile_avx2(int mr, int nr, int panel, const uint32_t *restrict a,
                   const uint32_t *restrict b, const nn_btile_seg *g, float *restrict acc);
#endif

#ifdef NN_AMX
#define AQ 16 /* pairs per tile step */
#define AM 32 /* rows of C per block */

/* acc (AM rows of NR) = the sum over the np pairs (a multiple of AQ) of a's rows (row r at
 * a + r * sa words, zero past the product's rows) times b (pair q at b + q * NR), with AMX: mr
 * rows, nr columns */
void nn_btile_amx(int mr, int nr, int np, const uint32_t *a, size_t sa, const uint32_t *b,
                  float *acc);
#endif

#endif
