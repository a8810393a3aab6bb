/* The x86 kernels of the bf16 products (see gemm_bf16.h; packing, the portable kernel and the
 * products themselves are in nn/gemm_bf16.c): the AVX512_BF16 tile, with a case for each row count
 * and the row distances of a convolution's grid, the AVX2 + FMA tile on the same operands, the AMX
 * tile with its set-up, and the loops that measure each one's peak rate. Each kernel is built
 * whatever the build's -march, and runs where nn_bgemm_isa() says so. */
#include "nn/gemm_bf16.h"
#include "nn/gemm_bf16_tile.h"

#include <assert.h>
#include <string.h>

#include "core/status.h"

#ifdef BGEMM_X86
#define BF16_TARGET __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))

/* R rows, V vectors of columns (1 when the tile's columns fit one; the first nr take g->bias),
 * a's rows sa and its pairs sq words apart: constants where inlined, so the 2 * R accumulators
 * stay in registers */
BF16_TARGET static inline __attribute__((always_inline)) void
tile_body(int R, int V, size_t sa, size_t sq, int nr, const uint32_t *restrict a,
          const uint32_t *restrict b, const nn_btile_seg *g, float *restrict acc)
{
    __m512 c0[NN_BTILE_ROWS], c1[NN_BTILE_ROWS];
    const size_t ldc = g->ldc;
    /* unrolled, else the compiler zeroes both arrays with a call of memset at every tile and
     * loads them back (a short tile's cost: Winograd's products have C / 2 pairs, 16 for the
     * teacher's conv2) */
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) {
        c0[i] = g->load ? _mm512_loadu_ps(acc + i * ldc) : _mm512_setzero_ps();
        c1[i] = g->load && V == 2 ? _mm512_loadu_ps(acc + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (int s = 0; s < g->ns; s++) {
        const uint32_t *as = a + g->aoff[s], *bs = b + g->boff[s];
        for (int q = 0; q < g->nq; q++, as += sq, bs += g->sb) {
            const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)bs);
            const __m512bh b1 =
                V == 2 ? (__m512bh)_mm512_loadu_si512((const void *)(bs + g->b1)) : b0;
            for (int i = 0; i < R; i++) {
                const __m512bh av = (__m512bh)_mm512_set1_epi32((int)as[i * sa]);
                c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
                if (V == 2) c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
            }
        }
    }
    if (g->bias) { /* nr columns of it: the rest + 0, as tile_portable */
        const __m512 u0 = _mm512_maskz_loadu_ps((__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1),
                                                g->bias);
        const __m512 u1 = V == 2 ? _mm512_maskz_loadu_ps(
                                       (__mmask16)(nr >= 32 ? 0xffff : (1u << (nr - 16)) - 1),
                                       g->bias + 16)
                                 : u0;
        for (int i = 0; i < R; i++) {
            c0[i] = _mm512_add_ps(c0[i], u0);
            if (V == 2) c1[i] = _mm512_add_ps(c1[i], u1);
        }
    }
    if (g->add)
        for (int i = 0; i < R; i++) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_loadu_ps(acc + i * ldc));
            if (V == 2) c1[i] = _mm512_add_ps(c1[i], _mm512_loadu_ps(acc + i * ldc + 16));
        }
    for (int i = 0; i < R; i++) {
        _mm512_storeu_ps(acc + i * ldc, c0[i]);
        if (V == 2) _mm512_storeu_ps(acc + i * ldc + 16, c1[i]);
    }
}

#define TILE_ROWS(r)                                                                              \
    case r:                                                                                       \
        if (half && panel) tile_body(r, 1, 1, MR, nr, a, b, g, acc);                              \
        else if (panel) tile_body(r, 2, 1, MR, nr, a, b, g, acc);                                 \
        else if (half) tile_body(r, 1, g->sa, 1, nr, a, b, g, acc);                               \
        else tile_body(r, 2, g->sa, 1, nr, a, b, g, acc);                                         \
        break;
#define GRID_TILE(k)                                                                              \
    case k:                                                                                       \
        if (half) tile_body(NN_BTILE_ROWS, 1, 16 * (k), 1, nr, a, b, g, acc);                     \
        else tile_body(NN_BTILE_ROWS, 2, 16 * (k), 1, nr, a, b, g, acc);                          \
        return;
/* a: packed in panels (panel: g->sa 1, the pairs MR apart) or rows of pairs (g->sa the row
 * length, pairs side by side) */
BF16_TARGET void nn_btile_avx512(int mr, int nr, int panel, const uint32_t *restrict a,
                                 const uint32_t *restrict b, const nn_btile_seg *g,
                                 float *restrict acc)
{
    static_assert(MR <= NN_BTILE_ROWS && NN_BTILE_ROWS == 14, "nn_btile_avx512 has cases for 14 rows");
    const int half = nr <= 16;
    /* A whole tile whose rows are 16, 32, 48 or 64 words apart (a convolution's grid of up to 128
     * channels, a small image's weight gradient): with the distance a constant each row's
     * broadcast is an offset from one register; held in a register each, the 14 rows' addresses
     * do not fit the 15 there are and spill (8-12% slower). */
    if (mr == NN_BTILE_ROWS && !panel && g->sa % 16 == 0 && g->sa <= 64) {
        switch (g->sa / 16) {
            GRID_TILE(1) GRID_TILE(2) GRID_TILE(3) GRID_TILE(4)
        default: break;
        }
    }
    switch (mr) {
        TILE_ROWS(1) TILE_ROWS(2) TILE_ROWS(3) TILE_ROWS(4) TILE_ROWS(5) TILE_ROWS(6)
        TILE_ROWS(7) TILE_ROWS(8) TILE_ROWS(9) TILE_ROWS(10) TILE_ROWS(11) TILE_ROWS(12)
        TILE_ROWS(13) TILE_ROWS(14)
    default: XD_ASSERT(0);
    }
}
#undef TILE_ROWS
#undef GRID_TILE

/* The peak loops: twelve independent chains (c0 ... c11 of vector type V, from z), each a round
 * x = F(x), one instruction, with an empty asm that keeps x in a register and the rounds apart;
 * sum (of type V) is their sum by ADD, for the caller to return one lane of. */
#define PEAK_STEP(F, x)                                                                           \
    do {                                                                                          \
        x = F(x);                                                                                 \
        __asm__ volatile("" : "+v"(x));                                                           \
    } while (0)
#define PEAK_CHAINS(V, z, F, ADD, rounds, sum)                                                    \
    do {                                                                                          \
        V c0 = (z), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0,      \
          c9 = c0, c10 = c0, c11 = c0;                                                            \
        for (long r = 0; r < (rounds); r++) {                                                     \
            PEAK_STEP(F, c0); PEAK_STEP(F, c1); PEAK_STEP(F, c2); PEAK_STEP(F, c3);               \
            PEAK_STEP(F, c4); PEAK_STEP(F, c5); PEAK_STEP(F, c6); PEAK_STEP(F, c7);               \
            PEAK_STEP(F, c8); PEAK_STEP(F, c9); PEAK_STEP(F, c10); PEAK_STEP(F, c11);             \
        }                                                                                         \
        sum = ADD(ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7))),              \
                  ADD(ADD(c8, c9), ADD(c10, c11)));                                               \
    } while (0)

/* VDPBF16PS in 12 independent chains, as nn_sgemm_peak_run does for the float32 FMA: 16 lanes of
 * two products and two sums per instruction. The inputs are 1.0 and 0.0 pairs: each chain adds
 * exactly 1 a round, exact in float32 up to 2^24 rounds and bounded after. */
#define PEAK_DP(x) _mm512_dpbf16_ps(x, one, one)
BF16_TARGET static float peak_avx512(long rounds)
{
    /* bf16 1.0 is 0x3f80: pairs (1.0, 0.0) times (1.0, 0.0) */
    const __m512bh one = (__m512bh)_mm512_set1_epi32(0x3f80);
    __m512 s;
    PEAK_CHAINS(__m512, _mm512_setzero_ps(), PEAK_DP, _mm512_add_ps, rounds, s);
    return _mm512_cvtss_f32(s);
}
#undef PEAK_DP

/* The AVX2 + FMA tile, for CPUs without a bf16 instruction: each pair's words are split into
 * their two float32 values (the high half masked, the low half shifted up) and multiplied in
 * float32 FMAs, the high half first, as the instruction's definition and tile_portable order
 * them. A product of two bf16 values is exact in float32, so FMA(a, b, c) rounds once as
 * tile_portable's c + a * b does: the same bits (short of products below float32's normal range,
 * which neither kernel of a CPU with the instruction keeps). Sixteen registers hold R <= 4 rows by
 * 16 columns: 8 sums, the 4 halves of two vectors of b, a's two halves and the mask. */
#define AVX2_TARGET __attribute__((target("avx2,fma")))
enum { AVX2_ROWS = 4 };

/* acc's R rows, 16 columns from column h of the tile (b: that half's first pair), sums over
 * g's segments with a's rows sa and its pairs sq words apart; bias: the 16 values to add (the
 * columns past nr 0), or NULL */
AVX2_TARGET static inline __attribute__((always_inline)) void
avx2_body(int R, size_t sa, size_t sq, const uint32_t *restrict a, const uint32_t *restrict b,
          const nn_btile_seg *g, const float *bias, float *restrict acc)
{
    __m256 c0[AVX2_ROWS], c1[AVX2_ROWS];
    const size_t ldc = g->ldc;
    const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
    for (int i = 0; i < R; i++) {
        c0[i] = g->load ? _mm256_loadu_ps(acc + i * ldc) : _mm256_setzero_ps();
        c1[i] = g->load ? _mm256_loadu_ps(acc + i * ldc + 8) : _mm256_setzero_ps();
    }
    for (int s = 0; s < g->ns; s++) {
        const uint32_t *as = a + g->aoff[s], *bs = b + g->boff[s];
        for (int q = 0; q < g->nq; q++, as += sq, bs += g->sb) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)bs),
                          w1 = _mm256_loadu_si256((const __m256i *)(bs + 8));
            const __m256 b0h = _mm256_castsi256_ps(_mm256_and_si256(w0, high)),
                         b0l = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)),
                         b1h = _mm256_castsi256_ps(_mm256_and_si256(w1, high)),
                         b1l = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
            for (int i = 0; i < R; i++) {
                const __m256i w = _mm256_set1_epi32((int)as[i * sa]);
                const __m256 ah = _mm256_castsi256_ps(_mm256_and_si256(w, high)),
                             al = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
                c0[i] = _mm256_fmadd_ps(al, b0l, _mm256_fmadd_ps(ah, b0h, c0[i]));
                c1[i] = _mm256_fmadd_ps(al, b1l, _mm256_fmadd_ps(ah, b1h, c1[i]));
            }
        }
    }
    if (bias) {
        const __m256 u0 = _mm256_loadu_ps(bias), u1 = _mm256_loadu_ps(bias + 8);
        for (int i = 0; i < R; i++) {
            c0[i] = _mm256_add_ps(c0[i], u0);
            c1[i] = _mm256_add_ps(c1[i], u1);
        }
    }
    if (g->add)
        for (int i = 0; i < R; i++) {
            c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(acc + i * ldc));
            c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(acc + i * ldc + 8));
        }
    for (int i = 0; i < R; i++) {
        _mm256_storeu_ps(acc + i * ldc, c0[i]);
        _mm256_storeu_ps(acc + i * ldc + 8, c1[i]);
    }
}

#define AVX2_ROWS_CASE(r)                                                                        \
    case r:                                                                                       \
        if (panel) avx2_body(r, 1, MR, ar, bh, g, bias, acc_r);                                   \
        else avx2_body(r, g->sa, 1, ar, bh, g, bias, acc_r);                                      \
        break;
AVX2_TARGET void nn_btile_avx2(int mr, int nr, int panel, const uint32_t *restrict a,
                               const uint32_t *restrict b, const nn_btile_seg *g,
                               float *restrict acc)
{
    const size_t sa = panel ? 1 : g->sa;
    for (int h = 0; h < (nr > 16 ? 2 : 1); h++) {
        float u[16]; /* this half's bias, 0 past nr (as tile_portable) */
        const float *bias = NULL;
        if (g->bias) {
            for (int j = 0; j < 16; j++) u[j] = 16 * h + j < nr ? g->bias[16 * h + j] : 0.0f;
            bias = u;
        }
        const uint32_t *bh = h ? b + g->b1 : b;
        for (int i0 = 0; i0 < mr; i0 += AVX2_ROWS) {
            const uint32_t *ar = a + (size_t)i0 * sa;
            float *acc_r = acc + (size_t)i0 * g->ldc + 16 * h;
            switch (mr - i0 < AVX2_ROWS ? mr - i0 : AVX2_ROWS) {
                AVX2_ROWS_CASE(1) AVX2_ROWS_CASE(2) AVX2_ROWS_CASE(3) AVX2_ROWS_CASE(4)
            default: XD_ASSERT(0);
            }
        }
    }
}
#undef AVX2_ROWS_CASE

/* 256-bit FMAs in 12 independent chains: the ceiling of nn_btile_avx2, whose pairs are two of
 * them (every pair's two products and two sums a lane) */
#define PEAK_FMA(x) _mm256_fmadd_ps(x, one, zero)
AVX2_TARGET static float peak_avx2(long rounds)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    __m256 s;
    PEAK_CHAINS(__m256, one, PEAK_FMA, _mm256_add_ps, rounds, s);
    return _mm256_cvtss_f32(s);
}
#undef PEAK_FMA
#endif

#ifdef NN_AMX
/* The AMX kernel works on blocks of C of up to 32 x 32: four 16 x 16 float32 tiles (tmm0-3,
 * rows 0-15 and 16-31 by columns 0-15 and 16-31), fed by two tiles of A (tmm4-5: 16 rows of 16
 * pairs, a row being one row of op(A)'s pairs) and two of B (tmm6-7: 16 pairs of 16 columns,
 * which is a B panel's layout read 16 words of its 32 at a time). Every tile is 16 rows of 64
 * bytes, configured once per call. */

NN_AMX_TARGET void nn_amx_configure(void)
{
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } __attribute__((aligned(64))) cfg;
    static_assert(sizeof cfg == 64, "the tile configuration is 64 bytes");
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    /* the compiler does not see that the instruction reads all 64 bytes (gcc 12 dropped the
     * stores of the rows and widths): say so */
    __asm__ volatile("" : : "m"(cfg) : "memory");
    _tile_loadconfig(&cfg);
}

NN_AMX_TARGET void nn_amx_release(void) { _tile_release(); }

/* acc (AM rows of NR) = the sum over the np pairs (a multiple of AQ) of a's rows (row r at
 * a + r * sa words, zero past the product's rows) times b (pair q at b + q * NR); R2, C2: the
 * second tile of rows (rows 16-31), of columns (16-31) in use. Constants where inlined. */
NN_AMX_TARGET static inline __attribute__((always_inline)) void
amx_body(int R2, int C2, int np, const uint32_t *a, size_t sa, const uint32_t *b, float *acc)
{
    const size_t ra = sa * sizeof(uint32_t), rb = NR * sizeof(uint32_t);
    nn_amx_zero_block();
    for (int q = 0; q < np; q += AQ) {
        _tile_loadd(6, b + (size_t)q * NR, rb);
        if (C2) _tile_loadd(7, b + (size_t)q * NR + 16, rb);
        _tile_loadd(4, a + q, ra);
        _tile_dpbf16ps(0, 4, 6);
        if (C2) _tile_dpbf16ps(1, 4, 7);
        if (R2) {
            _tile_loadd(5, a + 16 * sa + q, ra);
            _tile_dpbf16ps(2, 5, 6);
            if (C2) _tile_dpbf16ps(3, 5, 7);
        }
    }
    nn_amx_store_block(acc, NR, R2, C2);
}

NN_AMX_TARGET void nn_btile_amx(int mr, int nr, int np, const uint32_t *a, size_t sa,
                                const uint32_t *b, float *acc)
{
    const int r2 = mr > 16, c2 = nr > 16;
    if (r2 && c2) amx_body(1, 1, np, a, sa, b, acc);
    else if (r2) amx_body(1, 0, np, a, sa, b, acc);
    else if (c2) amx_body(0, 1, np, a, sa, b, acc);
    else amx_body(0, 0, np, a, sa, b, acc);
}

/* TDPBF16PS into six tiles in turn (the other two hold (1.0, 0.0) pairs): 16 x 16 x 16 pairs, two
 * flops each, an instruction. Each element adds 16 a round, exact up to 2^24 / 16 rounds. */
NN_AMX_TARGET static float peak_amx(long rounds)
{
    uint32_t one[16 * 16] __attribute__((aligned(64)));
    float out[16 * 16] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 16; i++) one[i] = 0x3f80;
    nn_amx_configure();
    _tile_loadd(6, one, 64);
    _tile_loadd(7, one, 64);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); _tile_zero(4); _tile_zero(5);
    for (long r = 0; r < rounds; r++) {
        _tile_dpbf16ps(0, 6, 7); _tile_dpbf16ps(1, 6, 7); _tile_dpbf16ps(2, 6, 7);
        _tile_dpbf16ps(3, 6, 7); _tile_dpbf16ps(4, 6, 7); _tile_dpbf16ps(5, 6, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}
#endif

float nn_bgemm_peak_run(long rounds, double *flops)
{
#ifdef NN_AMX
    if (nn_bgemm_isa() == NN_BISA_AMX) {
        *flops = 2.0 * 16 * 16 * 32 * 6 * (double)rounds;
        return peak_amx(rounds);
    }
#endif
#ifdef BGEMM_X86
    if (nn_bgemm_isa() == NN_BISA_AVX512BF16) {
        *flops = 4.0 * 16 * 12 * (double)rounds;
        return peak_avx512(rounds);
    }
    if (nn_bgemm_isa() == NN_BISA_AVX2) {
        *flops = 2.0 * 8 * 12 * (double)rounds;
        return peak_avx2(rounds);
    }
#endif
    (void)rounds;
    *flops = 0.0;
    return 0.0f;
}
