/* Integer matrix products (see qgemm.h): the AVX-512 VNNI kernel and the portable one (the
 * first convolution's kernel is in nn/qconv_first.c). */
#include "nn/qgemm.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "nn/qvnni.h"

/* products smaller than this many multiply-adds run on one thread */
#define QPAR_MIN (1 << 18)

static const char *const isa_names[] = {
    [NN_QISA_PORTABLE] = "portable",
    [NN_QISA_AVX512VNNI] = "AVX-512 VNNI",
};
static_assert(sizeof isa_names / sizeof isa_names[0] == NN_QISA_COUNT,
              "isa_names must name every nn_qisa");

const char *nn_qisa_name(nn_qisa isa) { return isa < NN_QISA_COUNT ? isa_names[isa] : "?"; }

nn_qisa nn_qgemm_best(void)
{
#ifdef QGEMM_X86
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return NN_QISA_AVX512VNNI;
#endif
    return NN_QISA_PORTABLE;
}

static int chosen = NN_QISA_COUNT; /* NN_QISA_COUNT: the best */

nn_qisa nn_qgemm_isa(void) { return chosen == NN_QISA_COUNT ? nn_qgemm_best() : (nn_qisa)chosen; }

nn_qisa nn_qgemm_use(nn_qisa isa)
{
    if (isa == NN_QISA_AVX512VNNI && nn_qgemm_best() != NN_QISA_AVX512VNNI) isa = NN_QISA_PORTABLE;
    chosen = isa;
    return nn_qgemm_isa();
}

void nn_qweights_pack(nn_qweights *p, const int8_t *w, int N, int K)
{
    XD_ASSERT(N > 0 && K > 0 && K <= NN_QGEMM_MAX_K);
    const size_t kg = ((size_t)K + 3) / 4, nb = ((size_t)N + 15) / 16;
    p->N = N;
    p->K = K;
    p->w = xd_xmalloc((size_t)N * K);
    memcpy(p->w, w, (size_t)N * K);
    p->packed = xd_xcalloc(nb * kg * 64, 1);
    p->wsum = xd_xcalloc((size_t)N, sizeof *p->wsum);
    p->twice = N <= 8 ? xd_xcalloc(kg * 64, 1) : NULL;
    for (int n = 0; n < N; n++) {
        int8_t *blk = p->packed + (size_t)(n / 16) * kg * 64;
        for (int k = 0; k < K; k++) {
            const size_t at = (size_t)(k / 4) * 64 + (n % 16) * 4 + k % 4;
            blk[at] = w[(size_t)n * K + k];
            if (p->twice) p->twice[at] = p->twice[at + 32] = w[(size_t)n * K + k];
            p->wsum[n] += w[(size_t)n * K + k];
        }
    }
}

void nn_qweights_free(nn_qweights *p)
{
    free(p->w);
    free(p->packed);
    free(p->twice);
    free(p->wsum);
    memset(p, 0, sizeof *p);
}

/* Where a kernel's sums go: the int32 matrix C (ep NULL), or through the epilogue ep. */
typedef struct {
    int32_t *C;
    int ldc;
    const nn_qepilogue *ep;
    const struct vplan *vp; /* the VNNI kernels': ep in lanes, applied as they go (NULL: into C) */
} qout;

/* Up to QBLOCK sums of row m, outputs n0.., through the epilogue (see nn_qepilogue). Loops plain
 * enough to vectorise. */
enum { QBLOCK = 64 };

static void requant_row(const nn_qepilogue *ep, const int32_t *wsum, int m, int n0, int cnt,
                        const int32_t *acc)
{
    float y[QBLOCK];
    for (int j = 0; j < cnt; j++)
        y[j] = (float)(acc[j] - ep->zero * wsum[n0 + j]) * ep->mult[n0 + j] + ep->bias[n0 + j];
    if (ep->bn_mean)
        for (int j = 0; j < cnt; j++)
            y[j] = ep->bn_gamma[n0 + j] * (y[j] - ep->bn_mean[n0 + j]) / ep->bn_sd[n0 + j] +
                   ep->bn_beta[n0 + j];
    if (!ep->codes && ep->gap_sum) {
        float *sum = ep->gap_sum + n0;
        for (int j = 0; j < cnt; j++) sum[j] += ep->relu && !(y[j] > 0.0f) ? 0.0f : y[j];
        return;
    }
    if (!ep->codes) {
        float *out = ep->y + (size_t)m * ep->ldy + n0;
        if (ep->relu)
            for (int j = 0; j < cnt; j++) out[j] = y[j] > 0.0f ? y[j] : 0.0f;
        else
            memcpy(out, y, sizeof(float) * (size_t)cnt);
        return;
    }
    /* the fields in locals: out may alias ep as far as the compiler knows */
    const float scale = ep->scale, lo = ep->lo, hi = ep->hi;
    const int zero = ep->code_zero, floor = ep->floor;
    uint8_t *out = ep->codes + (size_t)m * ep->ldc + n0;
    for (int j = 0; j < cnt; j++) {
        const int c = (int)nn_quant_level(y[j], scale, lo, hi) + zero;
        out[j] = (uint8_t)(c < floor ? floor : c);
    }
}

/* Whether output n of a pooled epilogue takes its window's smallest sum (see nn_qepilogue). */
static int pool_falls(const nn_qepilogue *ep, int n)
{
    return ep && ep->falls && (ep->falls[n / 16] >> (n % 16) & 1);
}

/* best[j] and c[j] pooled: the larger, or the smaller for the outputs n0 + j that fall. */
static void pool_pick(int32_t *best, const int32_t *c, const nn_qepilogue *ep, int n0, int cnt)
{
    for (int j = 0; j < cnt; j++)
        best[j] = pool_falls(ep, n0 + j) ? (c[j] < best[j] ? c[j] : best[j])
                                         : (c[j] > best[j] ? c[j] : best[j]);
}

/* Where a kernel reads its rows of A: row m at A + m * lda, or, for convolution windows read in
 * place, at A + rowoff[m]; its four-byte groups as krows runs of kgroups, kstride bytes apart
 * (plain rows: one run of K / 4, and the K % 4 bytes after). pool: rows pooled per output. */
typedef struct {
    const uint8_t *A;
    int lda;
    const int32_t *rowoff;
    int krows, kgroups, kstride, pool;
} qsrc;

/* Whether a product is spread over the threads: an int32 matrix large enough (an epilogue's
 * callers run a chunk of images per thread). A product that is not never enters a parallel
 * region, whose cost (even of one thread, inside another region) is more than a small one's. */
static int qgemm_parallel(const qout *o, int M, const nn_qweights *W)
{
    return !o->ep && (size_t)M * W->N * W->K > QPAR_MIN;
}

static inline const uint8_t *src_row(const qsrc *a, int m)
{
    return a->rowoff ? a->A + a->rowoff[m] : a->A + (size_t)m * a->lda;
}

/* The groups of a window (krows runs of kgroups, kstride apart) gathered into one row. */
static void src_gather(uint8_t *row, const qsrc *a, const uint8_t *from)
{
    for (int kr = 0; kr < a->krows; kr++)
        memcpy(row + (size_t)kr * a->kgroups * 4, from + (size_t)kr * a->kstride,
               (size_t)a->kgroups * 4);
}

/* The portable kernel's outputs mo0..mo1; row: K bytes of room for a window (NULL: plain rows). */
static void portable_rows(const qout *o, const qsrc *src, int mo0, int mo1, const nn_qweights *W,
                          uint8_t *row)
{
    const int N = W->N, K = W->K, P = src->pool;
    for (int mo = mo0; mo < mo1; mo++)
            for (int n0 = 0; n0 < N; n0 += QBLOCK) {
                const int cnt = N - n0 < QBLOCK ? N - n0 : QBLOCK;
                int32_t acc[QBLOCK], best[QBLOCK];
                for (int r = 0; r < P; r++) {
                    const uint8_t *a = src_row(src, mo * P + r);
                    if (row) {
                        src_gather(row, src, a);
                        a = row;
                    }
                    for (int j = 0; j < cnt; j++) {
                        const int8_t *w = W->w + (size_t)(n0 + j) * K;
                        int32_t s = 0;
                        for (int k = 0; k < K; k++) s += (int32_t)a[k] * (int32_t)w[k];
                        acc[j] = s;
                    }
                    if (r) pool_pick(best, acc, o->ep, n0, cnt);
                    else memcpy(best, acc, sizeof(int32_t) * (size_t)cnt);
                }
                if (o->ep) requant_row(o->ep, W->wsum, mo, n0, cnt, best);
                else memcpy(o->C + (size_t)mo * o->ldc + n0, best, sizeof(int32_t) * (size_t)cnt);
            }
}

static void qgemm_portable(const qout *o, const qsrc *src, int M, const nn_qweights *W)
{
    /* a window read in place is first gathered into one row (K is a multiple of 4 then), so the
     * products run over contiguous bytes */
    enum { ROW_STACK = 4096 };
    const int MO = M / src->pool;
    if (!qgemm_parallel(o, M, W) && W->K <= ROW_STACK) {
        uint8_t row[ROW_STACK];
        portable_rows(o, src, 0, MO, W, src->rowoff ? row : NULL);
        return;
    }
#pragma omp parallel if (qgemm_parallel(o, M, W))
    {
        uint8_t *row = src->rowoff ? xd_xmalloc((size_t)W->K) : NULL;
#pragma omp for
        for (int mo = 0; mo < MO; mo++) portable_rows(o, src, mo, mo + 1, W, row);
        free(row);
    }
}

#ifdef QGEMM_X86
/* ep's values of outputs n0..n0+nn into v; twice: nn <= 8, and the same again in lanes 8.. */
QTARGET static void vnni_params(vparams *v, const nn_qepilogue *ep, const int32_t *wsum, int n0,
                                int nn, int twice)
{
    const __mmask16 mask = (__mmask16)((1u << nn) - 1);
#define VTWICE(x) (twice ? _mm512_shuffle_f32x4((x), (x), 0x44) : (x))
#define VLOAD(p) VTWICE(_mm512_maskz_loadu_ps(mask, p))
    __m512i ws = _mm512_maskz_loadu_epi32(mask, wsum + n0);
    if (twice) ws = _mm512_shuffle_i32x4(ws, ws, 0x44);
    v->zws = _mm512_mullo_epi32(_mm512_set1_epi32(ep->zero), ws);
    v->mult = VLOAD(ep->mult + n0);
    v->bias = VLOAD(ep->bias + n0);
    if (ep->bn_mean) {
        v->gamma = VLOAD(ep->bn_gamma + n0);
        v->mean = VLOAD(ep->bn_mean + n0);
        v->beta = VLOAD(ep->bn_beta + n0);
        /* masked lanes: 0 / 1, not 0 / 0 */
        v->sd = VTWICE(_mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), mask, ep->bn_sd + n0));
    }
#undef VLOAD
#undef VTWICE
}

/* The plan p of epilogue ep for W's outputs: its blocks in room (room_n of them) when they fit,
 * else in memory it returns (to free); N <= 8: one block, the outputs twice (see vnni_pairs). */
QTARGET vparams *nn_qvnni_plan(struct vplan *p, vparams *room, int room_n,
                              const nn_qepilogue *ep, const nn_qweights *W)
{
    const int N = W->N, nb = (N + 15) / 16, twice = N <= 8;
    vparams *heap = NULL, *blk = room;
    if (nb > room_n) heap = blk = xd_xmalloc_aligned(sizeof(vparams) * (size_t)nb);
    for (int b = 0; b < nb; b++)
        vnni_params(&blk[b], ep, W->wsum, b * 16, N - b * 16 < 16 ? N - b * 16 : 16, twice);
    *p = (struct vplan){.blk = blk, .y = ep->y, .gap_sum = ep->gap_sum, .codes = ep->codes,
                        .ldy = ep->ldy, .ldc = ep->ldc, .bn = ep->bn_mean != NULL,
                        .relu = ep->relu};
    if (ep->codes) {
        p->scale = _mm512_set1_ps(ep->scale);
        p->lo = _mm512_set1_ps(ep->lo);
        p->hi = _mm512_set1_ps(ep->hi);
        p->code_zero = _mm512_set1_epi32(ep->code_zero);
        p->floor = _mm512_set1_epi32(ep->floor);
    }
    return heap;
}

/* Floats y of row m, outputs n0.. in the lanes of mask: stored, or added to p's sums. */
QTARGET static inline void vnni_float_out(const struct vplan *p, int m, int n0, __mmask16 mask,
                                          __m512 y)
{
    if (p->gap_sum) {
        float *sum = p->gap_sum + n0;
        _mm512_mask_storeu_ps(sum, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, sum), y));
        return;
    }
    _mm512_mask_storeu_ps(p->y + (size_t)m * p->ldy + n0, mask, y);
}

/* The codes of values y of row m, outputs n0..n0+nn, stored. */
QTARGET static inline void vnni_codes_out(const struct vplan *p, int m, int n0, int nn, __m512 y)
{
    uint8_t *at = p->codes + (size_t)m * p->ldc + n0;
    if (nn == 16) _mm_storeu_si128((__m128i *)(void *)at, vnni_codes(p, y));
    else _mm_mask_storeu_epi8(at, (__mmask16)((1u << nn) - 1), vnni_codes(p, y));
}

/* The epilogue of the 16 sums acc of row m, block v of p at outputs n0..n0+nn, stored (floats:
 * or summed, see vnni_float_out). */
QTARGET static inline void vnni_put(const struct vplan *p, const vparams *v, int m, int n0, int nn,
                                    __m512i acc)
{
    const __m512 y = vnni_value(p, v, acc);
    if (p->codes) vnni_codes_out(p, m, n0, nn, y);
    else vnni_float_out(p, m, n0, (__mmask16)((1u << nn) - 1), y);
}

/* The epilogue of two rows' sums in one register (N <= 8, p made twice): row m's in lanes 0..N,
 * row m + 1's (when two) in lanes 8..8 + N, stored. */
QTARGET static inline void vnni_put_two(const struct vplan *p, int N, int m, int two, __m512i acc)
{
    const __mmask16 lo = (__mmask16)((1u << N) - 1), hi = two ? lo : 0;
    const __m512 y = vnni_value(p, &p->blk[0], acc);
    if (!p->codes) {
        vnni_float_out(p, m, 0, lo, y);
        if (hi) vnni_float_out(p, m + 1, 0, hi, _mm512_shuffle_f32x4(y, y, 0xEE));
        return;
    }
    const __m128i c = vnni_codes(p, y);
    if (N == 8 && p->ldc == 8 && two) { /* both rows' codes side by side */
        _mm_storeu_si128((__m128i *)(void *)(p->codes + (size_t)m * 8), c);
        return;
    }
    _mm_mask_storeu_epi8(p->codes + (size_t)m * p->ldc, lo, c);
    _mm_mask_storeu_epi8(p->codes + (size_t)(m + 1) * p->ldc, hi, _mm_srli_si128(c, 8));
}

/* The 16 sums acc of row m, outputs n0..n0+nn, into o's C or through its epilogue. */
QTARGET static inline void vnni_store(const qout *o, int m, int n0, int nn, __m512i acc)
{
    if (o->vp) {
        vnni_put(o->vp, &o->vp->blk[n0 / 16], m, n0, nn, acc);
        return;
    }
    _mm512_mask_storeu_epi32(o->C + (size_t)m * o->ldc + n0, (__mmask16)((1u << nn) - 1), acc);
}

/* Two rows' sums in one register (N <= 8): row m's in lanes 0..N, row m + 1's (when two) in
 * lanes 8..8 + N, into o's C, or through its epilogue. */
QTARGET static inline void vnni_pair_out(const qout *o, const nn_qweights *W, int m, int two,
                                         __m512i acc)
{
    if (o->vp) {
        vnni_put_two(o->vp, W->N, m, two, acc);
        return;
    }
    const __mmask16 lo = (__mmask16)((1u << W->N) - 1), hi = two ? lo : 0;
    _mm512_mask_storeu_epi32(o->C + (size_t)m * o->ldc, lo, acc);
    /* row m + 1's lanes moved down to 0.. */
    _mm512_mask_storeu_epi32(o->C + (size_t)(m + 1) * o->ldc, hi,
                             _mm512_shuffle_i32x4(acc, acc, 0xEE));
}

/* The epilogue of plan p on rows sums of each of blocks b0..b0+nb (block j's in v[j * rows..]),
 * output rows out0.., its mode (codes, bn, relu) constants where it is inlined: the plan's values
 * in registers for each block, the loop over rows plain. */
QTARGET static inline __attribute__((always_inline)) void
vnni_block_put(const struct vplan *p, const __m512i *v, int rows, int out0, int b0, int nb, int N,
               const int codes, const int bn, const int relu)
{
    for (int j = 0; j < nb; j++) {
        const int n0 = (b0 + j) * 16, nn = N - n0 < 16 ? N - n0 : 16;
        const __mmask16 mask = (__mmask16)((1u << nn) - 1);
        const vparams prm = p->blk[b0 + j];
        if (!codes && p->gap_sum) { /* the rows' sums in a register, in their order */
            float *at = p->gap_sum + n0;
            __m512 sum = _mm512_maskz_loadu_ps(mask, at);
            for (int r = 0; r < rows; r++)
                sum = _mm512_add_ps(sum, vnni_value_of(&prm, v[j * rows + r], bn, relu));
            _mm512_mask_storeu_ps(at, mask, sum);
            continue;
        }
        for (int r = 0; r < rows; r++) {
            const __m512 y = vnni_value_of(&prm, v[j * rows + r], bn, relu && !codes);
            if (codes) vnni_codes_out(p, out0 + r, n0, nn, y);
            else vnni_float_out(p, out0 + r, n0, mask, y);
        }
    }
}

/* vnni_block_put with the mode of plan vp, taken from a copy in registers (a store of outputs may
 * alias the plan as far as the compiler knows). */
QTARGET static void vnni_blocks_put(const struct vplan *vp, const __m512i *v, int rows, int out0,
                                    int b0, int nb, int N)
{
    const struct vplan p = *vp;
    if (p.codes) {
        if (p.bn) vnni_block_put(&p, v, rows, out0, b0, nb, N, 1, 1, 0);
        else vnni_block_put(&p, v, rows, out0, b0, nb, N, 1, 0, 0);
    } else if (p.bn) {
        if (p.relu) vnni_block_put(&p, v, rows, out0, b0, nb, N, 0, 1, 1);
        else vnni_block_put(&p, v, rows, out0, b0, nb, N, 0, 1, 0);
    } else {
        if (p.relu) vnni_block_put(&p, v, rows, out0, b0, nb, N, 0, 0, 1);
        else vnni_block_put(&p, v, rows, out0, b0, nb, N, 0, 0, 0);
    }
}

/* vnni_tile's sums acc of rows m0..m0+nr (pooled, each P rows give one output row) against blocks
 * b0..b0+NB, stored as o says: through the epilogue, pooled into a block-major array for
 * vnni_blocks_put, or (no epilogue, so no pool) as int32 sums into C. */
QTARGET static inline __attribute__((always_inline)) void
vnni_tile_store(const qout *o, int N, int P, int m0, int nr, int b0, const int NB,
                __m512i acc[16][4])
{
    if (o->vp) {
        __m512i v[16];
        const int rows = nr / P;
        for (int j = 0; j < NB; j++) {
            const __mmask16 falls = P > 1 && o->ep->falls ? o->ep->falls[b0 + j] : 0;
            for (int r = 0; r < rows; r++) {
                __m512i best = acc[r * P][j];
                for (int i = 1; i < P; i++) best = vnni_pick(best, acc[r * P + i][j], falls);
                v[j * rows + r] = best;
            }
        }
        vnni_blocks_put(o->vp, v, rows, m0 / P, b0, NB, N);
        return;
    }
    XD_ASSERT(P == 1);
    for (int j = 0; j < NB; j++) {
        const int b = b0 + j, nn = N - b * 16 < 16 ? N - b * 16 : 16;
        for (int r = 0; r < nr; r++) vnni_store(o, m0 + r, b * 16, nn, acc[r][j]);
    }
}

/* RB rows of A against NB blocks of 16 weight rows at a time (RB * NB independent sums keep the
 * dot-product unit busy): each step broadcasts four bytes of each row and adds their products
 * with a packed 64-byte block (16 rows x 4 k) of each block into 16 int32 lanes, so a broadcast
 * serves NB products and a block's load RB. Rows m0..m0+nr (nr <= RB) are stored (the rest
 * repeat row m0 and are dropped), outputs b0 * 16..; pooled, each src->pool rows give one
 * output. RB (<= 16) and NB (<= 4, RB * NB <= 16) are constants where it is inlined. */
QTARGET static inline __attribute__((always_inline)) void
vnni_tile(const qout *o, const qsrc *src, int m0, int nr, int b0, const nn_qweights *W,
          const int RB, const int NB)
{
    const int N = W->N, K = W->K, kg = (K + 3) / 4, P = src->pool;
    const int KR = src->krows, G = src->kgroups, full = KR * G;
    const size_t ks = (size_t)src->kstride;
    const uint8_t *a[16];
    int32_t tail[16]; /* plain rows: the last K % 4 bytes of each row, zero-filled */
    for (int r = 0; r < RB; r++) {
        a[r] = src_row(src, m0 + (r < nr ? r : 0));
        tail[r] = 0;
        if (full < kg) memcpy(&tail[r], a[r] + 4 * (size_t)full, (size_t)(K - 4 * full));
    }
    const int8_t *wp = W->packed + (size_t)b0 * kg * 64;
    __m512i acc[16][4];
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < NB; j++) acc[r][j] = _mm512_setzero_si512();
    for (int kr = 0; kr < KR; kr++) {
        const int8_t *wk = wp + (size_t)kr * G * 64;
        const size_t off = (size_t)kr * ks;
        /* two groups a step: half the row pointers' increments, which otherwise crowd the
         * products out of the instruction stream */
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) {
            __m512i w[4];
            for (int j = 0; j < NB; j++)
                w[j] = _mm512_loadu_si512((const void *)(wk + ((size_t)j * kg + (size_t)g) * 64));
            for (int r = 0; r < RB; r++) {
                int32_t v;
                memcpy(&v, a[r] + off + 4 * (size_t)g, 4);
                const __m512i av = _mm512_set1_epi32(v);
                for (int j = 0; j < NB; j++) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, w[j]);
            }
        }
    }
    if (full < kg)
        for (int j = 0; j < NB; j++) {
            const __m512i w = _mm512_loadu_si512((const void *)(wp + ((size_t)j * kg + full) * 64));
            for (int r = 0; r < RB; r++)
                acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], _mm512_set1_epi32(tail[r]), w);
        }
    /* a full tile's rows a constant count, so its sums stay in registers */
    if (nr == RB) vnni_tile_store(o, N, P, m0, RB, b0, NB, acc);
    else vnni_tile_store(o, N, P, m0, nr, b0, NB, acc);
}

/* The tiles' shapes: 16 rows of one block, 8 of two, 4 of four (16 sums: enough independent
 * ones that a short K's sums and the epilogue's chains of operations overlap). */
QTARGET static void vnni_tile_16x1(const qout *o, const qsrc *src, int m0, int nr, int b0,
                                   const nn_qweights *W)
{
    vnni_tile(o, src, m0, nr, b0, W, 16, 1);
}

QTARGET static void vnni_tile_8x2(const qout *o, const qsrc *src, int m0, int nr, int b0,
                                  const nn_qweights *W)
{
    vnni_tile(o, src, m0, nr, b0, W, 8, 2);
}

QTARGET static void vnni_tile_4x4(const qout *o, const qsrc *src, int m0, int nr, int b0,
                                  const nn_qweights *W)
{
    vnni_tile(o, src, m0, nr, b0, W, 4, 4);
}

/* N <= 8 windows (no K % 4 tail), M rows 16 at a time, two in each register: row 2p's four bytes
 * broadcast to lanes 0..8 and row 2p + 1's to lanes 8..16, against the weights twice over, so
 * every lane works. Pooled (pool 2, 4 or 8: pool / 2 registers a window), two windows' results
 * share a register: the halves of each window's picked, then paired. */
QTARGET static void vnni_pairs(const qout *out, const qsrc *src, int M, const nn_qweights *W)
{
    const int P = src->pool, KR = src->krows, G = src->kgroups;
    const size_t ks = (size_t)src->kstride;
    /* the plan's values in locals: a store of codes may alias them as far as the compiler knows */
    struct vplan pl;
    vparams v;
    qout ol = *out;
    if (out->vp) {
        pl = *out->vp;
        v = pl.blk[0];
        pl.blk = &v;
        ol.vp = &pl;
    }
    const qout *o = &ol;
    const __mmask16 falls =
        o->ep && o->ep->falls ? (__mmask16)((o->ep->falls[0] & 0xFF) * 0x101u) : 0;
    for (int m0 = 0; m0 < M; m0 += 16) {
        const int nr = M - m0 < 16 ? M - m0 : 16;
        const uint8_t *a[16];
        for (int r = 0; r < 16; r++) a[r] = src_row(src, m0 + (r < nr ? r : 0));
        __m512i acc[8];
        for (int p = 0; p < 8; p++) acc[p] = _mm512_setzero_si512();
        for (int kr = 0; kr < KR; kr++) {
            const int8_t *wk = W->twice + (size_t)kr * G * 64;
            const size_t off = (size_t)kr * ks;
            for (int g = 0; g < G; g++) {
                const __m512i w = _mm512_loadu_si512((const void *)(wk + (size_t)g * 64));
                for (int p = 0; p < 8; p++) {
                    int32_t v0, v1;
                    memcpy(&v0, a[2 * p] + off + 4 * (size_t)g, 4);
                    memcpy(&v1, a[2 * p + 1] + off + 4 * (size_t)g, 4);
                    const __m512i av = _mm512_mask_set1_epi32(_mm512_set1_epi32(v0), 0xFF00, v1);
                    acc[p] = _mm512_dpbusd_epi32(acc[p], av, w);
                }
            }
        }
        if (P == 1) {
            for (int p = 0; 2 * p < nr; p++)
                vnni_pair_out(o, W, m0 + 2 * p, 2 * p + 1 < nr, acc[p]);
            continue;
        }
        const int V = P / 2, windows = nr / P;
        for (int w0 = 0; w0 < windows; w0 += 2) {
            const int w1 = w0 + 1 < windows ? w0 + 1 : w0;
            __m512i x = acc[w0 * V], y = acc[w1 * V];
            for (int i = 1; i < V; i++) {
                x = vnni_pick(x, acc[w0 * V + i], falls);
                y = vnni_pick(y, acc[w1 * V + i], falls);
            }
            /* [x's halves' first, y's halves' first] against [x's second, y's second] */
            const __m512i best =
                vnni_pick(_mm512_shuffle_i64x2(x, y, _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_i64x2(x, y, _MM_SHUFFLE(3, 2, 3, 2)), falls);
            vnni_pair_out(o, W, m0 / P + w0, w0 + 1 < windows, best);
        }
    }
}

/* QROWS rows from m0 (nr of them stored, see vnni_tile) against every block of weight rows: four
 * blocks at a time by four rows, two by eight, then one by sixteen; a pooling window never spans
 * two tiles (pool divides 4, or is 8). */
enum { QROWS = 16 };

QTARGET static void vnni_rows(const qout *o, const qsrc *src, int m0, int nr, const nn_qweights *W)
{
    const int nb = (W->N + 15) / 16;
    int b = 0;
    if (src->pool <= 4)
        for (; b + 4 <= nb; b += 4)
            for (int r = 0; r < nr; r += 4) vnni_tile_4x4(o, src, m0 + r, nr - r < 4 ? nr - r : 4, b, W);
    for (; b + 2 <= nb; b += 2)
        for (int r = 0; r < nr; r += 8) vnni_tile_8x2(o, src, m0 + r, nr - r < 8 ? nr - r : 8, b, W);
    for (; b < nb; b++) vnni_tile_16x1(o, src, m0, nr, b, W);
}

/* Row a (kg four-byte groups side by side) against NBL (<= 4, a constant where it is inlined)
 * blocks of 16 weight rows from block b0: each broadcast feeds NBL products, and each block has
 * two sums, of the even and of the odd groups (exact integers: the same total), so that its
 * chain of dependent products is half as long. */
QTARGET static inline __attribute__((always_inline)) void
vnni_row_blocks(const qout *o, const uint8_t *a, int m, const nn_qweights *W, int b0, const int NBL)
{
    const int N = W->N, kg = (W->K + 3) / 4;
    const int8_t *wp = W->packed + (size_t)b0 * kg * 64;
    __m512i even[4], odd[4];
    for (int j = 0; j < NBL; j++) even[j] = odd[j] = _mm512_setzero_si512();
    int g = 0;
    for (; g + 1 < kg; g += 2) {
        int32_t v0, v1;
        memcpy(&v0, a + 4 * (size_t)g, 4);
        memcpy(&v1, a + 4 * (size_t)g + 4, 4);
        const __m512i a0 = _mm512_set1_epi32(v0), a1 = _mm512_set1_epi32(v1);
        for (int j = 0; j < NBL; j++) {
            const int8_t *w = wp + ((size_t)j * kg + (size_t)g) * 64;
            even[j] = _mm512_dpbusd_epi32(even[j], a0, _mm512_loadu_si512((const void *)w));
            odd[j] = _mm512_dpbusd_epi32(odd[j], a1, _mm512_loadu_si512((const void *)(w + 64)));
        }
    }
    if (g < kg) {
        int32_t v;
        memcpy(&v, a + 4 * (size_t)g, 4);
        for (int j = 0; j < NBL; j++)
            even[j] = _mm512_dpbusd_epi32(even[j], _mm512_set1_epi32(v), _mm512_loadu_si512(
                (const void *)(wp + ((size_t)j * kg + (size_t)g) * 64)));
    }
    for (int j = 0; j < NBL; j++) {
        const int n0 = (b0 + j) * 16;
        vnni_store(o, m, n0, N - n0 < 16 ? N - n0 : 16, _mm512_add_epi32(even[j], odd[j]));
    }
}

/* One row against every block of weight rows, four at a time (a batch of one, and the rows left
 * over by vnni_rows); a window's runs, or a row with a K % 4 tail, first gathered into one row
 * of whole groups (the tail zero-filled). */
QTARGET static void vnni_row(const qout *o, const qsrc *src, int m, const nn_qweights *W)
{
    enum { ROW_ROOM = 4096 };
    const int K = W->K, kg = (K + 3) / 4, nb = (W->N + 15) / 16;
    const uint8_t *a = src_row(src, m);
    uint8_t room[ROW_ROOM], *heap = NULL;
    if (src->rowoff || K % 4) {
        uint8_t *row = 4 * (size_t)kg <= ROW_ROOM ? room : (heap = xd_xmalloc(4 * (size_t)kg));
        if (src->rowoff) src_gather(row, src, a); /* whole groups: no tail */
        else {
            memcpy(row, a, (size_t)K);
            memset(row + K, 0, 4 * (size_t)kg - (size_t)K);
        }
        a = row;
    }
    for (int b0 = 0; b0 < nb; b0 += 4) switch (nb - b0 < 4 ? nb - b0 : 4) {
        case 4: vnni_row_blocks(o, a, m, W, b0, 4); break;
        case 3: vnni_row_blocks(o, a, m, W, b0, 3); break;
        case 2: vnni_row_blocks(o, a, m, W, b0, 2); break;
        default: vnni_row_blocks(o, a, m, W, b0, 1); break;
        }
    free(heap);
}

/* nn_qpool_requant, 16 outputs at a time through vnni_put. */
QTARGET static void vnni_pool(const nn_qepilogue *ep, const int32_t *C, int OH, int OW, int Wd,
                              int k, int stride, const nn_qweights *W)
{
    struct vplan plan;
    vparams room[VPLAN_ROOM];
    vparams *heap = nn_qvnni_plan(&plan, room, VPLAN_ROOM, ep, W);
    const int N = W->N;
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++)
            for (int n0 = 0; n0 < N; n0 += 16) {
                const int nn = N - n0 < 16 ? N - n0 : 16;
                const __mmask16 mask = (__mmask16)((1u << nn) - 1);
                const __mmask16 falls = ep->falls ? ep->falls[n0 / 16] : 0;
                const int32_t *c0 = C + ((size_t)oy * stride * Wd + (size_t)ox * stride) * N + n0;
                __m512i best = _mm512_maskz_loadu_epi32(mask, c0);
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        best = vnni_pick(best, _mm512_maskz_loadu_epi32(
                                                   mask, c0 + ((size_t)ky * Wd + kx) * N), falls);
                vnni_put(&plan, &plan.blk[n0 / 16], oy * OW + ox, n0, nn, best);
            }
    free(heap);
}

/* The product of M rows of src, its (pooled) sums stored as o says. */
QTARGET static void vnni_sums(const qout *o, const qsrc *src, int M, const nn_qweights *W)
{
    if (W->twice && src->rowoff && (src->pool == 1 || src->pool % 2 == 0)) {
        vnni_pairs(o, src, M, W);
        return;
    }
    const int MR = M / QROWS * QROWS;
    if (qgemm_parallel(o, M, W)) {
#pragma omp parallel for
        for (int m0 = 0; m0 < MR; m0 += QROWS) vnni_rows(o, src, m0, QROWS, W);
    } else {
        for (int m0 = 0; m0 < MR; m0 += QROWS) vnni_rows(o, src, m0, QROWS, W);
    }
    if (src->pool > 1 && MR < M) vnni_rows(o, src, MR, M - MR, W);
    else
        for (int m = MR; m < M; m++) vnni_row(o, src, m, W);
}

/* vnni_sums, with o's epilogue (if any) in lanes once for the whole product. */
QTARGET static void qgemm_vnni(const qout *o, const qsrc *src, int M, const nn_qweights *W)
{
    if (!o->ep) {
        vnni_sums(o, src, M, W);
        return;
    }
    struct vplan plan;
    vparams room[VPLAN_ROOM];
    vparams *heap = nn_qvnni_plan(&plan, room, VPLAN_ROOM, o->ep, W);
    const qout po = {.ep = o->ep, .vp = &plan};
    vnni_sums(&po, src, M, W);
    free(heap);
}
#endif

static void qgemm_run(const qout *o, const qsrc *src, int M, const nn_qweights *W)
{
#ifdef QGEMM_X86
    if (nn_qgemm_isa() == NN_QISA_AVX512VNNI) {
        qgemm_vnni(o, src, M, W);
        return;
    }
#endif
    qgemm_portable(o, src, M, W);
}

/* Plain rows of A (lda apart): one run of the K / 4 whole groups. */
static qsrc plain_rows(const uint8_t *A, int lda, const nn_qweights *W)
{
    return (qsrc){.A = A, .lda = lda, .krows = 1, .kgroups = W->K / 4, .pool = 1};
}

void nn_qgemm(int32_t *C, int ldc, const uint8_t *A, int lda, int M, const nn_qweights *W)
{
    XD_ASSERT(lda >= W->K && ldc >= W->N && M >= 0);
    const qout o = {.C = C, .ldc = ldc};
    const qsrc src = plain_rows(A, lda, W);
    qgemm_run(&o, &src, M, W);
}

void nn_qgemm_requant(const uint8_t *A, int lda, int M, const nn_qweights *W,
                      const nn_qepilogue *ep)
{
    XD_ASSERT(lda >= W->K && M >= 0 && (ep->codes ? ep->ldc : ep->ldy) >= W->N);
    const qout o = {.ep = ep};
    const qsrc src = plain_rows(A, lda, W);
    qgemm_run(&o, &src, M, W);
}

void nn_qgemm_conv(int32_t *C, const uint8_t *img, const nn_qwindows *win, int M,
                   const nn_qweights *W, const nn_qepilogue *ep)
{
    const int P = win->pool;
    XD_ASSERT(win->krows > 0 && W->K % (4 * win->krows) == 0 && M >= 0 && P >= 1 && M % P == 0);
    XD_ASSERT(P == 1 || (ep && (P == 2 || P == 4 || P == 8)));
    XD_ASSERT(!ep || (ep->codes ? ep->ldc : ep->ldy) >= W->N);
    const qout o = {.C = C, .ldc = W->N, .ep = ep};
    const qsrc src = {.A = img, .rowoff = win->rowoff, .krows = win->krows,
                      .kgroups = W->K / 4 / win->krows, .kstride = win->kstride, .pool = P};
    qgemm_run(&o, &src, M, W);
}

void nn_qpool_requant(const int32_t *C, int H, int Wd, int k, int stride, const nn_qweights *W,
                      const nn_qepilogue *ep)
{
#ifdef QGEMM_X86
    if (nn_qgemm_isa() == NN_QISA_AVX512VNNI) {
        vnni_pool(ep, C, (H - k) / stride + 1, (Wd - k) / stride + 1, Wd, k, stride, W);
        return;
    }
#endif
    const int N = W->N, OH = (H - k) / stride + 1, OW = (Wd - k) / stride + 1;
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++)
            for (int n0 = 0; n0 < N; n0 += QBLOCK) {
                const int cnt = N - n0 < QBLOCK ? N - n0 : QBLOCK;
                const int32_t *c0 = C + ((size_t)oy * stride * Wd + (size_t)ox * stride) * N + n0;
                int32_t best[QBLOCK];
                memcpy(best, c0, sizeof(int32_t) * (size_t)cnt);
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        pool_pick(best, c0 + ((size_t)ky * Wd + kx) * N, ep, n0, cnt);
                requant_row(ep, W->wsum, oy * OW + ox, n0, cnt, best);
            }
}
