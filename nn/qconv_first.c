/* The first convolution's integer kernel (nn_qgemm_conv_first, see nn/qgemm.h): a few input
 * channels, pixels in lanes; and the tables that turn 8-bit pixels into its input codes
 * (nn_qpixel_codes). */
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "nn/qgemm.h"
#include "nn/qvnni.h"

/* the largest window nn_qgemm_conv_first takes */
enum { FIRST_MAXK = 7 };

#ifdef QGEMM_X86
/* Whether the byte-permutation kernels below run: the VNNI kernel in use on a CPU with VBMI. */
static int vbmi_runs(void)
{
    return nn_qgemm_isa() == NN_QISA_AVX512VNNI && __builtin_cpu_supports("avx512vbmi");
}

/* nn_qgemm_conv_first's kernel: output rows y and y + 1, pixels x0..x0+16 (16 lanes), outputs
 * n0..n0+8 in a0 and a1. Each padded row from y on serves both (window row r of y, r - 1 of
 * y + 1): for each group g of it (tg pixels' ic codes, 4 bytes, zero weights past the window),
 * one load at the group's first pixel and a byte permutation give each lane its pixel's 4 bytes,
 * which each output's broadcast weights then take. */
QTARGET_VBMI static inline __attribute__((always_inline)) void
first_rows(__m512i a0[8], __m512i a1[8], const uint8_t *img, const nn_qfirst *f, int G, int tg,
           int y, int x0, int n0, __m512i perm, const int N)
{
    const int k = f->k;
    for (int n = 0; n < 8; n++) a0[n] = a1[n] = _mm512_setzero_si512();
    for (int r = 0; r <= k; r++) {
        const uint8_t *row = img + (size_t)(y + r) * f->row_bytes;
        for (int g = 0; g < G; g++) {
            const __m512i a = _mm512_permutexvar_epi8(
                perm, _mm512_loadu_si512((const void *)(row + (size_t)f->ic * (x0 + g * tg))));
            /* the weights of window row r, group g, outputs n0.. (and of row r - 1) */
            const int32_t *w = f->w4 + ((size_t)r * G + g) * N + n0, *wu = w - (size_t)G * N;
            if (r < k)
                for (int n = 0; n < 8; n++)
                    a0[n] = _mm512_dpbusd_epi32(a0[n], a, _mm512_set1_epi32(w[n]));
            if (r > 0)
                for (int n = 0; n < 8; n++)
                    a1[n] = _mm512_dpbusd_epi32(a1[n], a, _mm512_set1_epi32(wu[n]));
        }
    }
}

/* The pooled sums of outputs 2q, 2q + 1 over 8 pooled pixels in one register (lanes 0..8 and
 * 8..16), the epilogue in lanes to match: each field of p's block permuted so. */
QTARGET_VBMI static void first_pairs(vparams *pp, const struct vplan *p, int N)
{
    for (int q = 0; q < N / 2; q++) {
        const __m512i idx = _mm512_mask_set1_epi32(_mm512_set1_epi32(2 * q), 0xFF00, 2 * q + 1);
        const vparams *v = &p->blk[0];
        pp[q].zws = _mm512_permutexvar_epi32(idx, v->zws);
        pp[q].mult = _mm512_permutexvar_ps(idx, v->mult);
        pp[q].bias = _mm512_permutexvar_ps(idx, v->bias);
        if (p->bn) {
            pp[q].gamma = _mm512_permutexvar_ps(idx, v->gamma);
            pp[q].mean = _mm512_permutexvar_ps(idx, v->mean);
            pp[q].sd = _mm512_permutexvar_ps(idx, v->sd);
            pp[q].beta = _mm512_permutexvar_ps(idx, v->beta);
        }
    }
}

/* The pooled sums of outputs n0..n0+8 of pooled pixels x0 / 2.. of row oy, outputs 2q and 2q + 1
 * in pair[q] (lanes 0..8 and 8..16). */
QTARGET_VBMI static inline __attribute__((always_inline)) void
first_pooled(__m512i pair[4], const uint8_t *img, const nn_qfirst *f, int G, int tg, int oy,
             int x0, int n0, __m512i perm, const __mmask16 *falls, const int N)
{
    __m512i a0[8], a1[8];
    first_rows(a0, a1, img, f, G, tg, 2 * oy, x0, n0, perm, N);
    const __m512i evens =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (int n = 0; n < 8; n++) {
        const __m512i v = vnni_pick(a0[n], a1[n], falls[n0 + n]);
        /* lanes 2j and 2j + 1 pooled into lane 2j */
        a0[n] = vnni_pick(v, _mm512_shuffle_epi32(v, _MM_PERM_CDAB), falls[n0 + n]);
    }
    for (int q = 0; q < 4; q++) pair[q] = _mm512_permutex2var_epi32(a0[2 * q], evens, a0[2 * q + 1]);
}

/* four registers' codes side by side */
QTARGET_VBMI static inline __m512i first_join(const __m128i c[4])
{
    return _mm512_inserti32x4(
        _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(c[0]), c[1], 1), c[2], 2),
        c[3], 3);
}

QTARGET_VBMI static inline __attribute__((always_inline)) void
vnni_first_n(const uint8_t *img, const nn_qfirst *f, const nn_qweights *W, const nn_qepilogue *ep,
             const int N)
{
    const int ic = f->ic, tg = ic == 3 ? 1 : 4 / ic, G = (f->k + tg - 1) / tg;
    const int OH = f->h / 2, OW = f->w / 2;
    const __m512i perm = _mm512_loadu_si512((const void *)f->lanes);
    const __m512i t0 = _mm512_loadu_si512((const void *)f->pixel_major),
                  t1 = _mm512_loadu_si512((const void *)(f->pixel_major + 64));
    struct vplan plan;
    vparams room[1], pp[8];
    nn_qvnni_plan(&plan, room, 1, ep, W);
    first_pairs(pp, &plan, N);
    __mmask16 falls[16];
    for (int n = 0; n < N; n++) falls[n] = ep->falls && (ep->falls[0] >> n & 1) ? 0xFFFF : 0;
    /* Eight pair registers go through the epilogue together, so that its chains of dependent
     * operations overlap: two pieces (a row's 16 pixels) of 8 outputs, or one of 16 (the
     * last piece of 8 outputs alone: done twice). */
    const int nx = (2 * OW + 15) / 16, pieces = OH * nx, step = N == 8 ? 2 : 1;
    for (int u0 = 0; u0 < pieces; u0 += step) {
        __m512i pv[8];
        int oy[2], x0[2];
        for (int i = 0; i < step; i++) {
            const int u = u0 + i < pieces ? u0 + i : u0;
            oy[i] = u / nx, x0[i] = u % nx * 16;
            first_pooled(pv + 4 * i, img, f, G, tg, oy[i], x0[i], 0, perm, falls, N);
        }
        if (N == 16) first_pooled(pv + 4, img, f, G, tg, oy[0], x0[0], 8, perm, falls, N);
        __m128i c[8];
        for (int q = 0; q < 8; q++)
            c[q] = vnni_codes(&plan, vnni_value(&plan, &pp[N == 8 ? q % 4 : q], pv[q]));
        for (int i = 0; i < step && u0 + i < pieces; i++) {
            const int px = OW - x0[i] / 2 < 8 ? OW - x0[i] / 2 : 8;
            uint8_t *out = plan.codes + ((size_t)oy[i] * OW + (size_t)x0[i] / 2) * (size_t)plan.ldc;
            const __m512i z0 = first_join(c + 4 * i);
            if (N == 8) {
                _mm512_mask_storeu_epi8(out, px == 8 ? ~0ull : (1ull << (8 * px)) - 1,
                                        _mm512_permutexvar_epi8(t0, z0));
                continue;
            }
            const __m512i z1 = first_join(c + 4);
            const int lo = px < 4 ? px : 4, hi = px - lo;
            /* output byte j * 16 + c: z0's c * 8 + j (c < 8), else z1's (c - 8) * 8 + j */
            _mm512_mask_storeu_epi8(out, lo == 4 ? ~0ull : (1ull << (16 * lo)) - 1,
                                    _mm512_permutex2var_epi8(z0, t0, z1));
            if (hi)
                _mm512_mask_storeu_epi8(out + 64, hi == 4 ? ~0ull : (1ull << (16 * hi)) - 1,
                                        _mm512_permutex2var_epi8(z0, t1, z1));
        }
    }
}

QTARGET_VBMI static void vnni_first(const uint8_t *img, const nn_qfirst *f, const nn_qweights *W,
                               const nn_qepilogue *ep)
{
    if (W->N == 8) vnni_first_n(img, f, W, ep, 8);
    else vnni_first_n(img, f, W, ep, 16);
}
#endif

int nn_qgemm_conv_first(const uint8_t *img, const nn_qfirst *f, const nn_qweights *W,
                        const nn_qepilogue *ep)
{
    /* w4 is made for shapes nn_qfirst_fits takes only */
    if (!f->w4 || !ep->codes || ep->ldc != W->N) return 0;
#ifdef QGEMM_X86
    if (vbmi_runs()) {
        vnni_first(img, f, W, ep);
        return 1;
    }
#endif
    (void)img;
    return 0;
}

void nn_qfirst_pack(nn_qfirst *f, const nn_qweights *W)
{
    const int ic = f->ic, k = f->k, K = W->K, tg = ic == 3 ? 1 : 4 / ic, G = (k + tg - 1) / tg;
    XD_ASSERT(nn_qfirst_fits(f, W->N) && K == k * k * ic);
    free(f->w4);
    f->w4 = xd_xmalloc(sizeof(int32_t) * (size_t)W->N * k * G);
    /* lane i's four bytes from a load at its group's first pixel: pixel i's (ic apart) */
    for (int i = 0; i < 16; i++)
        for (int b = 0; b < 4; b++) f->lanes[4 * i + b] = (uint8_t)(ic * i + b);
    /* codes output-major (output c's 8 pixels at 8 c) to pixel-major (pixel j's N at N j) */
    memset(f->pixel_major, 0, sizeof f->pixel_major);
    for (int j = 0; j < 8; j++)
        for (int c = 0; c < W->N; c++) f->pixel_major[j * W->N + c] = (uint8_t)(c * 8 + j);
    for (int n = 0; n < W->N; n++)
        for (int ky = 0; ky < k; ky++)
            for (int g = 0; g < G; g++) {
                const int taps = k - g * tg < tg ? k - g * tg : tg;
                int8_t b4[4] = {0, 0, 0, 0};
                for (int b = 0; b < ic * taps; b++)
                    b4[b] = W->w[(size_t)n * K + ((size_t)ky * k + g * tg + b / ic) * ic + b % ic];
                memcpy(&f->w4[((size_t)ky * G + g) * W->N + n], b4, 4);
            }
}

void nn_qfirst_free(nn_qfirst *f)
{
    free(f->w4);
    memset(f, 0, sizeof *f);
}

int nn_qfirst_fits(const nn_qfirst *f, int N)
{
    return f->ic >= 1 && f->ic <= 4 && f->k >= 1 && f->k <= FIRST_MAXK && (N == 8 || N == 16) &&
           f->h >= 2 && f->w >= 2;
}

#ifdef QGEMM_X86
/* One channel's table of 256 codes in four registers, applied to 64 values: the low 7 bits pick
 * from the first or the second half, bit 7 which half. */
QTARGET_VBMI static inline __m512i vbmi_table(const __m512i t[4], __m512i x, __mmask64 high)
{
    return _mm512_mask_blend_epi8(high, _mm512_permutex2var_epi8(t[0], x, t[1]),
                                  _mm512_permutex2var_epi8(t[2], x, t[3]));
}

QTARGET_VBMI static void vbmi_pixel_codes(uint8_t *dst, const uint8_t *src, size_t n,
                                          const uint8_t *lut, int c)
{
    __m512i t[4][4];
    for (int ch = 0; ch < c; ch++)
        for (int q = 0; q < 4; q++)
            t[ch][q] = _mm512_loadu_si512((const void *)(lut + 256 * ch + 64 * q));
    /* the lanes l with l % c == 0; a run of 64 values from value k0 (k0 % c = phase) has channel
     * ch in those shifted up by (ch - phase) mod c */
    static const unsigned long long every[5] = {0, ~0ull, 0x5555555555555555ull,
                                                0x9249249249249249ull, 0x1111111111111111ull};
    __mmask64 lanes[4][4];
    for (int phase = 0; phase < c; phase++)
        for (int ch = 0; ch < c; ch++) lanes[phase][ch] = every[c] << (ch - phase + c) % c;
    const int step = 64 % c;
    for (size_t k0 = 0, phase = 0; k0 < n; k0 += 64) {
        const __mmask64 in = n - k0 >= 64 ? ~0ull : (1ull << (n - k0)) - 1;
        const __m512i x = _mm512_maskz_loadu_epi8(in, src + k0);
        const __mmask64 high = _mm512_movepi8_mask(x);
        __m512i y = vbmi_table(t[0], x, high);
        for (int ch = 1; ch < c; ch++)
            y = _mm512_mask_mov_epi8(y, lanes[phase][ch], vbmi_table(t[ch], x, high));
        _mm512_mask_storeu_epi8(dst + k0, in, y);
        phase += (size_t)step;
        if (phase >= (size_t)c) phase -= (size_t)c;
    }
}
#endif

void nn_qpixel_codes(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *lut, int c)
{
    XD_ASSERT(c >= 1 && c <= 4);
#ifdef QGEMM_X86
    if (vbmi_runs()) {
        vbmi_pixel_codes(dst, src, n, lut, c);
        return;
    }
#endif
    for (size_t k = 0; k < n; k++) dst[k] = lut[(k % (size_t)c) * 256 + src[k]];
}
