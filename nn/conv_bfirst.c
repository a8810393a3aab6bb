/* A first convolution's evaluation forward in bf16: one channel, 3 x 3 windows, by pairs of
 * neighbouring values (see conv_bfirst.h). */
#include "nn/conv_bfirst.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include "core/status.h"
#include "nn/bf16.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"

/* the pairs of a window; words a row of pairs is rounded up to; outputs of a row a tile */
enum { TAPS = 5, LANES = 16, TILE = 14 };

int nn_bfirst_shape(const nn_conv_shape *s)
{
    return s->winograd && nn_bgemm_isa() == NN_BISA_AVX512BF16 && s->C == 1 && s->KH == 3 &&
           s->KW == 3 && s->stride == 1 && s->OC % 16 == 0;
}

int nn_bfirst_takes(const nn_conv_shape *s)
{
    return nn_mm_precision() == NN_PREC_BF16 && nn_bfirst_shape(s);
}

size_t nn_bfirst_packed_size(const nn_conv_shape *s) { return (size_t)TAPS * s->OC; }

void nn_bfirst_pack(uint32_t *wpk, const float *w, const nn_conv_shape *s)
{
    const int OC = s->OC;
    for (int o = 0; o < OC; o++) {
        const float *g = w + (size_t)o * 9; /* (ky, kx) at 3 ky + kx */
        wpk[o] = nn_bf16_pair(g[0], g[1]);
        wpk[OC + o] = nn_bf16_pair(g[3], g[4]);
        wpk[2 * OC + o] = nn_bf16_pair(g[6], g[7]);
        wpk[3 * OC + o] = nn_bf16_pair(g[2], g[5]);
        wpk[4 * OC + o] = nn_bf16_pair(g[8], 0.0f);
    }
}

/* The padded image's rows and columns; a row of pairs (LP words) and of the staged floats (LF,
 * with room for the pair past the last column) */
typedef struct {
    int Hp, Wp;
    size_t LP, LF, pairs; /* pairs: the first word of P, past the staged floats */
} geom;

static geom geometry(const nn_conv_shape *s)
{
    geom g = {s->H + 2 * s->pad, s->W + 2 * s->pad, 0, 0, 0};
    g.LP = ((size_t)g.Wp + LANES - 1) / LANES * LANES;
    g.LF = g.LP + LANES;
    g.pairs = ((size_t)g.Hp + 1) * g.LF; /* one more row of zeros, for V's last */
    return g;
}

size_t nn_bfirst_scratch(const nn_conv_shape *s)
{
    const geom g = geometry(s);
    return g.pairs + 3 * (size_t)g.Hp * g.LP;
}

void nn_bfirst_image(float *scratch, const float *inp, const nn_conv_shape *s, int b)
{
    const geom g = geometry(s);
    const int H = s->H, W = s->W, pad = s->pad;
    float *F = scratch;
    uint32_t *P = (uint32_t *)(scratch + g.pairs), *V = P + (size_t)g.Hp * g.LP,
             *Z = V + (size_t)g.Hp * g.LP;
    memset(F, 0, sizeof(float) * g.pairs);
    for (int y = 0; y < H; y++)
        memcpy(F + (size_t)(y + pad) * g.LF + pad, inp + ((size_t)b * H + y) * W,
               sizeof(float) * (size_t)W);
    for (int y = 0; y < g.Hp; y++) {
        const float *f = F + (size_t)y * g.LF, *d = f + g.LF; /* the row, the row below */
        uint32_t *p = P + (size_t)y * g.LP, *v = V + (size_t)y * g.LP, *z = Z + (size_t)y * g.LP;
        size_t x = 0;
#if defined(__AVX512F__)
        for (; x < g.LP; x += LANES) {
            const __m512i a = _mm512_loadu_si512((const void *)(f + x)),
                          r = _mm512_loadu_si512((const void *)(f + x + 1)),
                          u = _mm512_loadu_si512((const void *)(d + x));
            _mm512_storeu_si512((void *)(p + x), nn_bf16_pair16(a, r));
            _mm512_storeu_si512((void *)(v + x), nn_bf16_pair16(a, u));
            _mm512_storeu_si512((void *)(z + x), nn_bf16_pair16(a, _mm512_setzero_si512()));
        }
#endif
        for (; x < g.LP; x++) {
            p[x] = nn_bf16_pair(f[x], f[x + 1]);
            v[x] = nn_bf16_pair(f[x], d[x]);
            z[x] = nn_bf16_pair(f[x], 0.0f);
        }
    }
}

#if defined(__x86_64__)
#define BFIRST_TARGET __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))

/* The sums of R outputs (R and the rest constants where inlined: the 2 R sums stay in
 * registers), V vectors of 16 channels: c0[i] (and c1[i]) from the bias (or 0), then tap t's
 * pair for output i, at a[t][i / n * lp + i % n] (rows of n outputs, lp words apart), against
 * the tap's weights at w + t * OC, in tap order. */
BFIRST_TARGET static inline __attribute__((always_inline)) void
tap_sums(int R, int V, int n, size_t lp, const uint32_t *const a[TAPS], const uint32_t *w, int OC,
         const float *bias, __m512 c0[TILE], __m512 c1[TILE])
{
    const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps(),
                 b1 = bias && V == 2 ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (int i = 0; i < TILE; i++) { /* all of them (R <= TILE): none is read unset */
        c0[i] = b0;
        c1[i] = b1;
    }
#pragma GCC unroll 5
    for (int t = 0; t < TAPS; t++) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(w + (size_t)t * OC)),
                       w1 = V == 2 ? (__m512bh)_mm512_loadu_si512(
                                         (const void *)(w + (size_t)t * OC + 16))
                                   : w0;
#pragma GCC unroll 14
        for (int i = 0; i < R; i++) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[t][i / n * lp + i % n]);
            c0[i] = _mm512_dpbf16_ps(c0[i], x, w0);
            if (V == 2) c1[i] = _mm512_dpbf16_ps(c1[i], x, w1);
        }
    }
}

/* R outputs of a row (tap_sums), stored to out's rows, OC floats apart */
BFIRST_TARGET static inline __attribute__((always_inline)) void
first_tile(int R, int V, const uint32_t *const a[TAPS], const uint32_t *w, int OC,
           const float *bias, float *out)
{
    __m512 c0[TILE], c1[TILE];
    tap_sums(R, V, TILE, 0, a, w, OC, bias, c0, c1);
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) {
        _mm512_storeu_ps(out + (size_t)i * OC, c0[i]);
        if (V == 2) _mm512_storeu_ps(out + (size_t)i * OC + 16, c1[i]);
    }
}

/* The largest of the ReLUs (max(x, 0): NaN gives 0) of a 2 x 2 window's outputs, as
 * nn_relu_maxpool_image takes them (among values that are not NaN and not below +0 the order
 * does not matter) */
BFIRST_TARGET static inline __m512 relu_max4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    const __m512 zero = _mm512_setzero_ps();
    return _mm512_max_ps(_mm512_max_ps(_mm512_max_ps(a, zero), _mm512_max_ps(b, zero)),
                         _mm512_max_ps(_mm512_max_ps(c, zero), _mm512_max_ps(d, zero)));
}

/* 4 outputs of two rows (tap_sums; the second's taps lp words on), pooled 2 x 2 (relu_max4):
 * 2 outputs to pooled, OC floats apart. */
BFIRST_TARGET static inline __attribute__((always_inline)) void
first_pooled_tile(int V, const uint32_t *const a[TAPS], size_t lp, const uint32_t *w, int OC,
                  const float *bias, float *pooled)
{
    __m512 c0[TILE], c1[TILE];
    tap_sums(8, V, 4, lp, a, w, OC, bias, c0, c1);
#pragma GCC unroll 2
    for (int q = 0; q < 2; q++) {
        const int k = 2 * q;
        _mm512_storeu_ps(pooled + (size_t)q * OC,
                         relu_max4(c0[k], c0[k + 1], c0[4 + k], c0[5 + k]));
        if (V == 2)
            _mm512_storeu_ps(pooled + (size_t)q * OC + 16,
                             relu_max4(c1[k], c1[k + 1], c1[4 + k], c1[5 + k]));
    }
}

BFIRST_TARGET static void first_pooled_tiles(const uint32_t *const a[TAPS], size_t lp,
                                             const uint32_t *wpk, const float *bias, int OC,
                                             int PW, float *pooled)
{
    /* tiles of 2 windows along the row, the last ending at the row's end (as first_tiles) */
    for (int p0 = 0;; p0 += 2) {
        const int p = p0 + 2 > PW ? PW - 2 : p0, x = 2 * p;
        const uint32_t *const at[TAPS] = {a[0] + x, a[1] + x, a[2] + x, a[3] + x, a[4] + x};
        float *o = pooled + (size_t)p * OC;
        int j = 0;
        for (; j + 32 <= OC; j += 32)
            first_pooled_tile(2, at, lp, wpk + j, OC, bias ? bias + j : NULL, o + j);
        if (j < OC) first_pooled_tile(1, at, lp, wpk + j, OC, bias ? bias + j : NULL, o + j);
        if (p + 2 >= PW) break;
    }
}

/* R outputs of a row (first_tile) over all OC channels: 32 at a time, then 16 */
BFIRST_TARGET static inline __attribute__((always_inline)) void
first_channels(int R, const uint32_t *const a[TAPS], const uint32_t *wpk, const float *bias,
               int OC, float *out)
{
    int j = 0;
    for (; j + 32 <= OC; j += 32) first_tile(R, 2, a, wpk + j, OC, bias ? bias + j : NULL, out + j);
    if (j < OC) first_tile(R, 1, a, wpk + j, OC, bias ? bias + j : NULL, out + j);
}

BFIRST_TARGET static void first_tiles(const uint32_t *const a[TAPS], const uint32_t *wpk,
                                      const float *bias, int OC, int OW, float *out)
{
    /* tiles of TILE outputs along the row, the last ending at the row's end (overlapping the one
     * before: those outputs are computed twice, to the same bits). A shorter row is one tile
     * (its sums in memory, in the same order). */
    if (OW < TILE) {
        first_channels(OW, a, wpk, bias, OC, out);
        return;
    }
    for (int x0 = 0;; x0 += TILE) {
        const int x = x0 + TILE > OW ? OW - TILE : x0;
        const uint32_t *const at[TAPS] = {a[0] + x, a[1] + x, a[2] + x, a[3] + x, a[4] + x};
        first_channels(TILE, at, wpk, bias, OC, out + (size_t)x * OC);
        if (x + TILE >= OW) break;
    }
}
#endif

/* Where output row oy's taps start: P at rows oy, oy + 1, oy + 2; V at (oy, 2); Z at (oy + 2, 2)
 * (each + ox for output ox) */
static void taps_of_row(const uint32_t *a[TAPS], const float *scratch, const geom *g, int oy)
{
    const size_t np = (size_t)g->Hp * g->LP, lp = g->LP;
    const uint32_t *row = (const uint32_t *)(scratch + g->pairs) + (size_t)oy * lp;
    a[0] = row;
    a[1] = row + lp;
    a[2] = row + 2 * lp;
    a[3] = row + np + 2;
    a[4] = row + 2 * np + 2 * lp + 2;
}

void nn_bfirst_row(float *out, const float *scratch, const uint32_t *wpk, const float *bias,
                   const nn_conv_shape *s, int oy)
{
    const geom g = geometry(s);
    const uint32_t *a[TAPS];
    taps_of_row(a, scratch, &g, oy);
#if defined(__x86_64__)
    first_tiles(a, wpk, bias, s->OC, s->OW, out);
#else
    (void)a, (void)out, (void)wpk, (void)bias;
    XD_ASSERT(!"nn_bfirst_row runs on AVX512_BF16 alone (nn_bfirst_shape)");
#endif
}

int nn_bfirst_pools(const nn_conv_shape *s, const nn_relu_pool *pool)
{
    return pool && !pool->relu_out && !pool->argmax && pool->s->k == 2 && pool->s->stride == 2 &&
           s->OW >= 4;
}

void nn_bfirst_pooled_row(float *pooled, const float *scratch, const uint32_t *wpk,
                          const float *bias, const nn_conv_shape *s, int oy)
{
    const geom g = geometry(s);
    const uint32_t *a[TAPS];
    taps_of_row(a, scratch, &g, oy);
#if defined(__x86_64__)
    first_pooled_tiles(a, g.LP, wpk, bias, s->OC, s->OW / 2, pooled);
#else
    (void)a, (void)pooled, (void)wpk, (void)bias;
    XD_ASSERT(!"nn_bfirst_pooled_row runs on AVX512_BF16 alone (nn_bfirst_shape)");
#endif
}
