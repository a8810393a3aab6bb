/* A 16 x 16 block of 32-bit words transposed in AVX-512 registers: the packing of both kernels
 * (float32 panels in nn/gemm.c, bf16 pairs in nn/gemm_bf16.c) turns rows of a row-major operand
 * into the columns of its panels with it. Internal to nn/. */
#ifndef XD_NN_TRANSPOSE_H
#define XD_NN_TRANSPOSE_H

#if defined(__AVX512F__)
#include <immintrin.h>

/* Word j of r[i] becomes word i of r[j]: pairs of rows interleaved by 32 bits, then groups of
 * four by 64 bits, then the 128-bit lanes of four groups; 64 shuffles. */
static inline void nn_transpose_16x16(__m512i r[16])
{
    __m512i b[16];
    for (int i = 0; i < 16; i += 2) {
        b[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        b[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* r[g + j], lane L: word 4L + j of rows g..g + 3 */
        r[g] = _mm512_unpacklo_epi64(b[g], b[g + 2]);
        r[g + 1] = _mm512_unpackhi_epi64(b[g], b[g + 2]);
        r[g + 2] = _mm512_unpacklo_epi64(b[g + 1], b[g + 3]);
        r[g + 3] = _mm512_unpackhi_epi64(b[g + 1], b[g + 3]);
    }
    for (int j = 0; j < 4; j++) {
        const __m512i d0 = _mm512_shuffle_i32x4(r[j], r[4 + j], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i d1 = _mm512_shuffle_i32x4(r[j], r[4 + j], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i d2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i d3 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(3, 2, 3, 2));
        b[j] = _mm512_shuffle_i32x4(d0, d2, _MM_SHUFFLE(2, 0, 2, 0));
        b[4 + j] = _mm512_shuffle_i32x4(d0, d2, _MM_SHUFFLE(3, 1, 3, 1));
        b[8 + j] = _mm512_shuffle_i32x4(d1, d3, _MM_SHUFFLE(2, 0, 2, 0));
        b[12 + j] = _mm512_shuffle_i32x4(d1, d3, _MM_SHUFFLE(3, 1, 3, 1));
    }
    for (int i = 0; i < 16; i++) r[i] = b[i];
}
#endif

#endif
