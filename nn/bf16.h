/* bf16 rounding and pairs, inline for the loops that pack operands (nn/gemm_bf16.c, the
 * convolutions of nn/conv_bf16.c), the AVX512_BF16 tile on operands read in place and the AMX
 * tile set-up they share. Internal to nn/. */
#ifndef XD_NN_BF16_H
#define XD_NN_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#define NN_AMX 1 /* the AMX kernels are built (they run where nn_bgemm_isa() says so) */
#define NN_AMX_TARGET __attribute__((target("amx-tile,amx-bf16")))
#endif

/* The bits of x rounded to bf16, in the top half (the bottom half is garbage): branch-free, so
 * the packing loops vectorise. Adding 0x7fff plus the lowest kept bit carries into the kept bits
 * exactly when the dropped ones are past half, or half with an odd kept part; Inf (dropped bits
 * 0) is unchanged; a NaN gets its quiet bit set instead. */
static inline uint32_t nn_bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const uint32_t r = u + 0x7fffu + ((u >> 16) & 1u);
    return (u & 0x7fffffffu) > 0x7f800000u ? u | 0x00400000u : r;
}

/* the pair (x0 at k = 2q, x1 at 2q + 1) as one word */
static inline uint32_t nn_bf16_pair(float x0, float x1)
{
    return nn_bf16_bits(x0) >> 16 | (nn_bf16_bits(x1) & 0xffff0000u);
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* nn_bf16_bits of the 16 floats whose bits are u */
static inline __m512i nn_bf16_bits16(__m512i u)
{
    const __m512i r = _mm512_add_epi32(
        u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                            _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
}

/* nn_bf16_bits' top halves of the 16 floats whose bits are u, in order */
static inline __m256i nn_bf16_halves16(__m512i u)
{
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(nn_bf16_bits16(u), 16));
}

/* The lanes of the 16 floats whose bits are x that are subnormal */
static inline __mmask16 nn_bf16_subnormal16(__m512i x)
{
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), one = _mm512_set1_epi32(1),
                  sub = _mm512_set1_epi32(0x007fffff); /* |bits| - 1 below it: subnormal */
    return _mm512_cmplt_epu32_mask(_mm512_sub_epi32(_mm512_and_si512(x, abs), one), sub);
}

#if defined(__AVX512BF16__)
/* AVX512_BF16's conversion (VCVTNE2PS2BF16) rounds as nn_bf16_bits does, NaN and infinities
 * included, but for subnormal floats, which it makes zeros: where either vector holds one, the
 * integer rounding runs instead (in training they are rare; the bits are the same either way). */
static inline int nn_bf16_cvt_exact(__m512i x0, __m512i x1)
{
    return !(nn_bf16_subnormal16(x0) | nn_bf16_subnormal16(x1));
}
#endif

/* nn_bf16_pair of 16 pairs: word i holds x0[i] and x1[i] (as float bits) */
static inline __m512i nn_bf16_pair16(__m512i x0, __m512i x1)
{
#if defined(__AVX512BF16__)
    if (nn_bf16_cvt_exact(x0, x1)) {
        /* x0's 16 halves then x1's, interleaved into words */
        const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10,
                                               25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                               18, 2, 17, 1, 16, 0);
        const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(x1),
                                                       _mm512_castsi512_ps(x0));
        return _mm512_permutexvar_epi16(order, h);
    }
#endif
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    return _mm512_or_si512(_mm512_srli_epi32(nn_bf16_bits16(x0), 16),
                           _mm512_and_si512(nn_bf16_bits16(x1), high));
}

/* The 32 floats at s as bf16 halves in order (nn_bf16_bits' top halves): 16 neighbouring pairs'
 * words. */
static inline __m512i nn_bf16_halves32(const float *s)
{
    const __m512i x0 = _mm512_loadu_si512((const void *)s),
                  x1 = _mm512_loadu_si512((const void *)(s + 16));
#if defined(__AVX512BF16__)
    if (nn_bf16_cvt_exact(x0, x1))
        return (__m512i)_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(x1), _mm512_castsi512_ps(x0));
#endif
    return _mm512_inserti64x4(_mm512_castsi256_si512(nn_bf16_halves16(x0)), nn_bf16_halves16(x1),
                              1);
}
#endif

/* h[k] = the bf16 half of s[k] (nn_bf16_bits' top half) for k < n: a row-major operand's pairs
 * as they lie, two values to a word (little-endian: the low half first) */
static inline void nn_bf16_halves(uint16_t *restrict h, const float *restrict s, size_t n)
{
    size_t k = 0;
#if defined(__AVX512F__)
    for (; k + 32 <= n; k += 32) _mm512_storeu_si512((void *)(h + k), nn_bf16_halves32(s + k));
#endif
    for (; k < n; k++) h[k] = (uint16_t)(nn_bf16_bits(s[k]) >> 16);
}

/* The bf16 micro-kernel (AVX512_BF16's or AVX2's) on operands read where they lie, for the
 * convolutions of nn/conv_bf16.c: acc (mr rows, ldc floats apart; nr columns, mr <=
 * NN_BTILE_ROWS, nr <= NN_BTILE_COLS) = (load ? acc : 0) + the sum over segments s < ns in
 * order, and within each over pairs q < nq in order, of the bf16 pair products of a[aoff[s] + i *
 * sa + q] (row i) and, for columns j < 16, b[boff[s] + q * sb + j], for j >= 16 b[boff[s] + b1 +
 * q * sb + j - 16]. The sums of one element are one float32 chain in that order (the
 * instruction's own order within a pair). With bias, column j < nr of each row is then that
 * chain's sum + bias[j] (one more rounding; columns past nr + 0). With add (and not load), each
 * value is then added to acc's as it is stored (one more rounding: a product's later blocks of
 * pairs, as C += block). With AMX in use, AVX512_BF16's tile; where the kernel in use is the
 * portable one (nn_bgemm_isa()), a C loop in the same order. Each row of acc is written 16
 * columns wide when nr <= 16, else 32 wide, so ldc must leave that room (asserted). */
enum { NN_BTILE_ROWS = 14, NN_BTILE_COLS = 32 };
typedef struct {
    int ns, nq;                /* segments, of nq pairs each */
    const size_t *aoff, *boff; /* each segment's first pair in a and in b, in words */
    size_t sa;                 /* a's rows, words apart (each row's pairs side by side) */
    size_t sb, b1;             /* b's pairs, words apart; its columns 16-31 past 0-15 */
    size_t ldc;                /* acc's rows, floats apart */
    int load;                  /* the sums go on from acc's (else from zero) */
    const float *bias;         /* nr values added to each row as it is stored, or NULL */
    int add;                   /* the sums (from zero) are added to acc's as they are stored */
} nn_btile_seg;
void nn_btile_segments(int mr, int nr, const uint32_t *a, const uint32_t *b,
                       const nn_btile_seg *g, float *acc);

#ifdef NN_AMX
#include <immintrin.h>

/* Configures the calling thread's eight AMX tiles as 16 rows of 64 bytes each, and releases
 * them; only where nn_bgemm_isa() is NN_BISA_AMX. */
void nn_amx_configure(void);
void nn_amx_release(void);

/* The kernels' block of sums: tiles 0-3 are rows 0-15 / 16-31 by columns 0-15 / 16-31 of a
 * 32 x 32 block of float32 at c, rows ld floats apart; r2, c2: the second tile of rows, of
 * columns, in use. Zeroed, or stored. */
NN_AMX_TARGET static inline void nn_amx_zero_block(void)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

NN_AMX_TARGET static inline void nn_amx_store_block(float *c, size_t ld, int r2, int c2)
{
    const size_t rc = sizeof(float) * ld;
    _tile_stored(0, c, rc);
    if (c2) _tile_stored(1, c + 16, rc);
    if (r2) _tile_stored(2, c + 16 * ld, rc);
    if (r2 && c2) _tile_stored(3, c + 16 * ld + 16, rc);
}
#endif

#endif
