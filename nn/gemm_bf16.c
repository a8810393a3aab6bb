/* bf16 matrix products with float32 sums (see gemm_bf16.h): the choice of kernel, packing, the
 * portable kernel (the AVX2, AVX512_BF16 and AMX ones are in nn/gemm_bf16_tile.c), the products and the
 * split over threads (the layers' choice of precision: nn/mm.c).
 *
 * The shape of nn_sgemm's kernel (gemm.c), on pairs: op(B) is packed a block of KQ pairs of k by
 * NC columns at a time into panels of NR columns, op(A) a block of MC rows by KQ pairs at a time
 * (into panels of MR rows, or as rows of pairs when its rows lie side by side), each element a
 * 32-bit word holding the bf16 values of k = 2q (low half) and 2q + 1 (high half), zero past the
 * end of K. An MR x NR micro-kernel keeps its block of C in float32 registers while it runs over
 * the pairs: one broadcast word of A and two vectors of B per row and pair. Rounding the operands
 * is a pass over them that the float32 kernel (which reads op(A) in place) does not pay; on thin
 * products it costs as much as the products (BENCHMARKS.md). */
#include "nn/gemm_bf16.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bf16.h"
#include "nn/gemm_bf16_tile.h"
#include "nn/transpose.h"
#ifdef NN_AMX
#include <sys/syscall.h>
#include <unistd.h>
#endif
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pack_pairs writes pairs as two halves");

#include "core/mem.h"
#include "core/runtime.h"
#include "core/status.h"

#define KQ 192       /* pairs of k per block (at most); blocks are equal in size */
#define MC (MR * 16) /* rows of op(A) per packed block */
#define NC (NR * 64) /* columns of op(B) per packed block */
#define MIN_ROWS NN_GEMM_MIN_ROWS
#define OWN_PACK_MAX (128 * 1024) /* op(B)'s values, at most, for each thread to pack its own */
#define AWHOLE_MAX (128 * 1024)  /* op(A)'s pairs, at most, to be rounded whole (gemm_packed) */
#define PAIR_ROWS_BYTES (32 * 1024) /* the L1's: source rows packed at a time (pack_pairs) */

static const char *const isa_names[] = {
    [NN_BISA_PORTABLE] = "portable",
    [NN_BISA_AVX2] = "AVX2",
    [NN_BISA_AVX512BF16] = "AVX512_BF16",
    [NN_BISA_AMX] = "AMX_BF16",
};
static_assert(sizeof isa_names / sizeof isa_names[0] == NN_BISA_COUNT,
              "isa_names must name every nn_bisa");

const char *nn_bisa_name(nn_bisa isa) { return isa < NN_BISA_COUNT ? isa_names[isa] : "?"; }

#ifdef NN_AMX
/* The CPU's AMX tiles with the bf16 product, and Linux's leave to use them: a process asks for
 * the tiles' state once (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA; granted to all its
 * threads, and asking again is harmless), and a kernel that has not heard of AMX refuses. The
 * answer is kept: 1 yes, 2 no. */
static int amx_usable(void)
{
    static int state; /* 0: not asked yet */
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (!s) {
        enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
        unsigned a, b, c, d;
        __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
        int cpu = 0;
        if (a >= 7) { /* leaf 7 exists */
            __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
            cpu = (d >> 22 & 1) && (d >> 24 & 1); /* AMX-BF16 and AMX-TILE */
        }
        s = cpu && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 1 : 2;
        __atomic_store_n(&state, s, __ATOMIC_RELEASE);
    }
    return s == 1;
}
#endif

static int isa_runs(nn_bisa isa)
{
    switch (isa) {
    case NN_BISA_PORTABLE: return 1;
#ifdef BGEMM_X86
    case NN_BISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case NN_BISA_AVX512BF16:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#endif
#ifdef NN_AMX
    case NN_BISA_AMX: return amx_usable();
#endif
    default: return 0;
    }
}

nn_bisa nn_bgemm_best(void)
{
    for (int isa = NN_BISA_COUNT - 1; isa > NN_BISA_PORTABLE; isa--)
        if (isa_runs((nn_bisa)isa)) return (nn_bisa)isa;
    return NN_BISA_PORTABLE;
}

static int chosen = NN_BISA_COUNT; /* NN_BISA_COUNT: the best */

nn_bisa nn_bgemm_isa(void) { return chosen == NN_BISA_COUNT ? nn_bgemm_best() : (nn_bisa)chosen; }

nn_bisa nn_bgemm_use(nn_bisa isa)
{
    if (isa < NN_BISA_COUNT && !isa_runs(isa)) isa = NN_BISA_PORTABLE;
    chosen = isa;
    return nn_bgemm_isa();
}

uint16_t nn_bf16_round(float x) { return (uint16_t)(nn_bf16_bits(x) >> 16); }

float nn_bf16_float(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

// ----------------------------------------------------------------------------------------------
// packing

#if defined(__AVX512F__)
/* 16 rows (ld apart) by 16 pairs of a row-major X, from s, into a panel: pair q's 16 words at
 * dst + q * R, the 16 x 16 words transposed in registers. */
static void panel_16x16(const float *s, size_t ld, uint32_t *dst, size_t R)
{
    __m512i a[16];
    for (int r = 0; r < 16; r++) a[r] = nn_bf16_halves32(s + (size_t)r * ld);
    nn_transpose_16x16(a);
    for (int q = 0; q < 16; q++) _mm512_storeu_si512((void *)(dst + (size_t)q * R), a[q]);
}
#endif

/* Packs rows i0..i0+mc and the pairs q0..q0+nq of X (K columns; X[i][k] = t ? src[k * ld + i] :
 * src[i * ld + k]) into panels of R rows, zeros past the last row and past K. Panel p holds, for
 * each pair q, its R words (word of row r at q * R + r); or, with rowwise, each row's nq words in
 * turn (at r * nq + q), which is how a row-major X's pairs already lie (no transposition). */
static void pack_pairs(int t, int R, int rowwise, const float *src, int ld, int i0, int mc, int q0,
                       int nq, int K, uint32_t *dst)
{
    XD_ASSERT(!rowwise || !t);
    const size_t sr = rowwise ? (size_t)nq : 1, sq = rowwise ? 1 : (size_t)R;
    if (t) {
        /* A pair's values lie along two rows of the source: those are read in order, a few
         * pairs' rows at a time (as many as fit in PAIR_ROWS_BYTES) across all the panels, so
         * that each panel gets those pairs' words side by side and the rows are read from the
         * L1 after the first panel. (A panel at a time would read a short piece of every row in
         * turn; a pair at a time across all the panels wrote a line to each panel in turn, 8 KB
         * apart for a linear layer's input of 128 x 784, at half the speed.) */
        const size_t group = PAIR_ROWS_BYTES / (2 * sizeof(float) * (size_t)(mc > 0 ? mc : 1));
        const int G = group < 1 ? 1 : group > (size_t)nq ? nq : (int)group;
        for (int g0 = 0; g0 < nq; g0 += G)
            for (int ib = 0; ib < mc; ib += R)
                for (int q = g0; q < g0 + G && q < nq; q++) {
                    const int k = 2 * (q0 + q);
                    const float *s0 = src + (size_t)k * ld + i0, *s1 = s0 + ld;
                    const int rows = mc - ib < R ? mc - ib : R;
                    uint32_t *d = dst + (size_t)ib * nq + (size_t)q * R;
                    if (k + 1 < K) {
                        int r = 0;
#if defined(__AVX512F__)
                        for (; r + 16 <= rows; r += 16)
                            _mm512_storeu_si512(
                                (void *)(d + r),
                                nn_bf16_pair16(_mm512_loadu_si512((const void *)(s0 + ib + r)),
                                               _mm512_loadu_si512((const void *)(s1 + ib + r))));
#endif
                        for (; r < rows; r++) d[r] = nn_bf16_pair(s0[ib + r], s1[ib + r]);
                    } else
                        for (int r = 0; r < rows; r++) d[r] = nn_bf16_pair(s0[ib + r], 0.0f);
                }
    }
    for (int ib = 0; ib < mc; ib += R, dst += (size_t)nq * R) {
        const int rows = mc - ib < R ? mc - ib : R;
        if (!t) { /* each row's values lie side by side: its pairs are neighbours */
            const int kend = 2 * (q0 + nq) <= K ? nq : nq - 1; /* pairs wholly inside K */
            int r0 = 0, qv = 0; /* rows and pairs already written in blocks of 16 x 16 */
#if defined(__AVX512F__)
            if (!rowwise && R % 16 == 0) {
                qv = kend / 16 * 16;
                r0 = qv ? rows / 16 * 16 : 0;
                for (int rb = 0; rb < r0; rb += 16)
                    for (int q = 0; q < qv; q += 16)
                        panel_16x16(src + (size_t)(i0 + ib + rb) * ld + 2 * (size_t)(q0 + q),
                                    (size_t)ld, dst + (size_t)q * R + rb, (size_t)R);
            }
#endif
            for (int r = 0; r < rows; r++) {
                const float *s = src + (size_t)(i0 + ib + r) * ld + 2 * (size_t)q0;
                uint32_t *d = dst + (size_t)r * sr;
                if (rowwise) { /* the row's words are its values' bf16 halves in order */
                    nn_bf16_halves((uint16_t *)d, s, 2 * (size_t)kend);
                } else {
                    for (int q = r < r0 ? qv : 0; q < kend; q++)
                        d[q * sq] = nn_bf16_pair(s[2 * q], s[2 * q + 1]);
                }
                if (kend < nq) d[kend * sq] = nn_bf16_pair(s[2 * kend], 0.0f);
            }
        }
        for (int r = rows; r < R; r++)
            for (int q = 0; q < nq; q++) dst[r * sr + q * sq] = 0;
    }
}

static long pad_to(int n, int r) { return ((long)n + r - 1) / r * r; }

static int k_pairs(int K) { return (K + 1) / 2; }

static int q_blocks(int K) { return (k_pairs(K) + KQ - 1) / KQ; }

/* block qb of qbs: pairs q0..q0+nq (a function of K alone) */
static void q_block(int K, int qbs, int qb, int *q0, int *nq)
{
    const long n = k_pairs(K);
    *q0 = (int)(n * qb / qbs);
    *nq = (int)(n * (qb + 1) / qbs) - *q0;
}

/* The blocks of op(B) in the order the product and a pre-packed op(B) take them: columns j0..
 * (nc of them, NC at most), within those pair block qb (pairs q0.., nq of them). */
#define FOR_B_BLOCKS(N, K, j0, nc, qb, q0, nq)                                                   \
    for (int j0 = 0, nc; j0 < (N) && (nc = (N) - j0 < NC ? (N) - j0 : NC, 1); j0 += nc)         \
        for (int qb = 0, q0, nq, qbs_ = q_blocks(K);                                             \
             qb < qbs_ && (q_block((K), qbs_, qb, &q0, &nq), 1); qb++)

/* The AMX kernel's K blocks: the same pairs, each block padded with zero pairs to bp pairs, the
 * longest block's length rounded up to whole tile steps (16 pairs); the other kernels' blocks are
 * not padded (bp 0). */
static int amx_block_pairs(int K)
{
    const int qbs = q_blocks(K);
    return (int)pad_to((int)((k_pairs(K) + qbs - 1) / qbs), 16);
}

/* where a whole pre-packed op(B) keeps the panels of column block j0 (nc columns), pair block qb
 * (starting at pair q0): bp as above */
static size_t packed_at(int K, int bp, int j0, int nc, int qb, int q0)
{
    const size_t kp = bp ? (size_t)q_blocks(K) * bp : (size_t)k_pairs(K);
    return (size_t)j0 * kp + (bp ? (size_t)qb * bp : (size_t)q0) * (size_t)pad_to(nc, NR);
}

static size_t packed_size(int N, int K, int bp)
{
    return (size_t)pad_to(N, NR) * (bp ? (size_t)q_blocks(K) * bp : (size_t)k_pairs(K));
}

/* The panels of op(B)'s columns j0.. (nc of them) and pairs q0.. (nq), each panel np pairs long
 * (np >= nq; zero pairs past nq). */
static void pack_b_block(int trans_b, const float *B, int ldb, int j0, int nc, int q0, int nq,
                         int np, int K, uint32_t *dst)
{
    if (np == nq) {
        pack_pairs(!trans_b, NR, 0, B, ldb, j0, nc, q0, nq, K, dst);
        return;
    }
    for (int jb = 0; jb < nc; jb += NR, dst += (size_t)np * NR) {
        pack_pairs(!trans_b, NR, 0, B, ldb, j0 + jb, nc - jb < NR ? nc - jb : NR, q0, nq, K, dst);
        memset(dst + (size_t)nq * NR, 0, sizeof(uint32_t) * (size_t)(np - nq) * NR);
    }
}

/* The whole of op(B) packed once for row blocks to share (in the blocks FOR_B_BLOCKS visits, at
 * packed_at), a panel of NR columns at a time, the panels shared among the threads */
static void pack_b(int trans_b, int N, int K, int bp, const float *B, int ldb, uint32_t *Bp)
{
    const int panels = (int)(pad_to(N, NR) / NR), qbs = q_blocks(K);
#pragma omp parallel for schedule(static) if (xd_threads_split(panels > 1))
    for (int p = 0; p < panels; p++) {
        const int j = p * NR, j0 = j / NC * NC, nc = N - j0 < NC ? N - j0 : NC;
        for (int qb = 0, q0, nq; qb < qbs; qb++) {
            q_block(K, qbs, qb, &q0, &nq);
            const int np = bp ? bp : nq;
            pack_b_block(trans_b, B, ldb, j, N - j < NR ? N - j : NR, q0, nq, np, K,
                         Bp + packed_at(K, bp, j0, nc, qb, q0) + (size_t)(j - j0) * np);
        }
    }
}

/* Rows i0.. (mc of them) of op(A) (X[i][k] = t ? src[k * ld + i] : src[i * ld + k]), pairs q0..
 * (nq of them), row r's pairs side by side at dst + r * np, zero pairs past nq up to np and zero
 * rows past mc up to a multiple of 16: the AMX kernel's A tiles. */
static void pack_a_rows(int t, const float *src, int ld, int i0, int mc, int q0, int nq, int np,
                        int K, uint32_t *dst)
{
    if (!t) {
        for (int r = 0; r < mc; r++)
            pack_pairs(0, 1, 1, src, ld, i0 + r, 1, q0, nq, K, dst + (size_t)r * np);
    } else {
        for (int q = 0; q < nq; q++) {
            const int k = 2 * (q0 + q);
            const float *s0 = src + (size_t)k * ld + i0, *s1 = s0 + ld;
            uint32_t *d = dst + q;
            if (k + 1 < K)
                for (int r = 0; r < mc; r++) d[(size_t)r * np] = nn_bf16_pair(s0[r], s1[r]);
            else
                for (int r = 0; r < mc; r++) d[(size_t)r * np] = nn_bf16_pair(s0[r], 0.0f);
        }
    }
    if (np > nq)
        for (int r = 0; r < mc; r++)
            memset(dst + (size_t)r * np + nq, 0, sizeof(uint32_t) * (size_t)(np - nq));
    const int rows = (int)pad_to(mc, 16);
    memset(dst + (size_t)mc * np, 0, sizeof(uint32_t) * (size_t)(rows - mc) * np);
}

// ----------------------------------------------------------------------------------------------
// the micro-kernels: acc (rows of NR) = sum over pairs q < nq of a[q * MR + i] . b[q * NR + j]
//
// Each runs over the segments of pairs that g describes (see nn_btile_seg in bf16.h; a product's
// K block is one segment), with the pairs of a row of a sq words apart: 1 where a's rows lie
// side by side, MR in a packed panel (where g->sa is 1). The AVX512_BF16 and AMX kernels are in
// nn/gemm_bf16_tile.c.

static const size_t no_offset[1] = {0}; /* the one segment of a product's K block */

/* In the order of the instruction's definition (the high half first); each product of two bf16
 * values is exact in float, so every step is one float32 rounding. */
static inline void tile_portable(int mr, int nr, size_t sq, const uint32_t *restrict a,
                                 const uint32_t *restrict b, const nn_btile_seg *g,
                                 float *restrict acc)
{
    const int nc = nr <= 16 ? 16 : NR;
    for (int i = 0; i < mr && !g->load; i++)
        for (int j = 0; j < nc; j++) acc[i * g->ldc + j] = 0.0f;
    for (int s = 0; s < g->ns; s++) {
        const uint32_t *as = a + g->aoff[s], *bs = b + g->boff[s];
        for (int q = 0; q < g->nq; q++, as += sq, bs += g->sb) {
            float b0[NR], b1[NR];
            for (int j = 0; j < nc; j++) {
                const uint32_t w = j < 16 ? bs[j] : bs[g->b1 + (size_t)j - 16];
                b0[j] = nn_bf16_float((uint16_t)w);
                b1[j] = nn_bf16_float((uint16_t)(w >> 16));
            }
            for (int i = 0; i < mr; i++) {
                const float a0 = nn_bf16_float((uint16_t)as[i * g->sa]);
                const float a1 = nn_bf16_float((uint16_t)(as[i * g->sa] >> 16));
                float *c = acc + i * g->ldc;
                for (int j = 0; j < nc; j++) {
                    float x = c[j] + a1 * b1[j];
                    c[j] = x + a0 * b0[j];
                }
            }
        }
    }
    for (int i = 0; i < mr && g->bias; i++)
        for (int j = 0; j < nc; j++) acc[i * g->ldc + j] += j < nr ? g->bias[j] : 0.0f;
}

/* tile_portable with g->add: the sums apart, then added to acc's values */
static void tile_portable_add(int mr, int nr, size_t sq, const uint32_t *restrict a,
                              const uint32_t *restrict b, const nn_btile_seg *g,
                              float *restrict acc)
{
    float sums[NN_BTILE_ROWS * NR];
    nn_btile_seg h = *g;
    h.ldc = NR;
    h.add = 0;
    tile_portable(mr, nr, sq, a, b, &h, sums);
    const int nc = nr <= 16 ? 16 : NR;
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nc; j++) acc[i * g->ldc + j] += sums[i * NR + j];
}

/* The vector tile of kernel isa (AVX512_BF16 or AVX2; AMX's blocks run in gemm_amx), else the
 * portable one; panel: a packed in panels (g->sa 1, pairs MR apart), else rows of pairs */
static void btile(nn_bisa isa, int mr, int nr, int panel, const uint32_t *restrict a,
                  const uint32_t *restrict b, const nn_btile_seg *g, float *restrict acc)
{
#ifdef BGEMM_X86
    if (isa == NN_BISA_AVX512BF16) {
        nn_btile_avx512(mr, nr, panel, a, b, g, acc);
        return;
    }
    if (isa == NN_BISA_AVX2) {
        nn_btile_avx2(mr, nr, panel, a, b, g, acc);
        return;
    }
#endif
    (void)isa;
    if (g->add) tile_portable_add(mr, nr, panel ? MR : 1, a, b, g, acc);
    else tile_portable(mr, nr, panel ? MR : 1, a, b, g, acc);
}

/* C tile (mr, nr) at c, element (i, j) at c[i * rs + j * cs]: first K block C = beta * C +
 * alpha * acc (C not read when beta is 0), later blocks C += alpha * acc. */
static void write_tile(const float *acc, int mr, int nr, float alpha, float beta, int first,
                       float *c, size_t rs, size_t cs)
{
    const int add = !first || beta == 1.0f;
    for (int i = 0; i < mr; i++) {
        const float *a = acc + i * NR;
        float *d = c + i * rs;
        if (cs == 1 && alpha == 1.0f && (add || beta == 0.0f)) { /* the common cases, in loops
                                                                    * that vectorise */
            if (add)
                for (int j = 0; j < nr; j++) d[j] += a[j];
            else
                for (int j = 0; j < nr; j++) d[j] = a[j];
            continue;
        }
        for (int j = 0; j < nr; j++) {
            const float v = alpha != 1.0f ? a[j] * alpha : a[j];
            float *e = d + j * cs;
            *e = add ? *e + v : beta != 0.0f ? beta * *e + v : v;
        }
    }
}

// ----------------------------------------------------------------------------------------------
// the single-threaded product

/* C (M, N) = alpha * op(A) @ op(B) + beta * C, element (i, j) at C[i * rs + j * cs]; M, N, K > 0.
 * Bp: op(B) pre-packed (pack_b), or NULL. */
static void gemm_packed(int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, const uint32_t *Bp,
                        float beta, float *C, size_t rs, size_t cs)
{
    /* A row-major op(A) whose rows all fit one block and whose rounded rows are small is
     * rounded whole, in one pass down its rows, before the first product: read once in order
     * (a layer's input, not in the cache yet, streams from memory at its full rate), its K
     * blocks then taken from that copy in place. */
    const int whole = !trans_a && M <= MC && N <= NC && q_blocks(K) > 1 &&
                      (size_t)pad_to(M, MR) * k_pairs(K) <= AWHOLE_MAX;
    const int qmax = whole ? k_pairs(K) : k_pairs(K) < KQ ? k_pairs(K) : KQ;
    const size_t na = (size_t)pad_to(M < MC ? M : MC, MR) * qmax,
                 nb = (size_t)pad_to(N < NC ? N : NC, NR) * qmax;
    uint32_t *apack = nn_thread_buf(NN_BUF_BGEMM_A, sizeof(uint32_t) * na);
    uint32_t *bbuf = Bp ? NULL : nn_thread_buf(NN_BUF_BGEMM_B, sizeof(uint32_t) * nb);
    float acc[MR * NR] __attribute__((aligned(64)));
    const nn_bisa isa = nn_bgemm_isa();
    const int vec = isa == NN_BISA_AVX512BF16 || isa == NN_BISA_AVX2;
    FOR_B_BLOCKS(N, K, j0, nc, qb, q0, nq) {
        const uint32_t *bpack = Bp ? Bp + packed_at(K, 0, j0, nc, qb, q0) : bbuf;
        if (!Bp) pack_b_block(trans_b, B, ldb, j0, nc, q0, nq, nq, K, bbuf);
        /* the block's one segment: op(A) in panels (pairs MR apart) or rows of pairs (arow
         * words apart) */
        const size_t arow = whole ? (size_t)qmax : (size_t)nq;
        const nn_btile_seg seg = {1, nq, no_offset, no_offset, trans_a ? 1 : arow, NR, 16, NR, 0,
                                  NULL, 0};
        /* Whole-vector tiles (16 or 32 columns) go straight into C where write_tile would
         * only store them (C = acc: the first block, beta 0) or add them (C += acc: later
         * blocks, or beta 1), alpha 1, and this product has C's rows whole (rs == N): where
         * another thread writes the rest of each row (a split by columns) the direct adds were
         * slower at two threads (fc1's forward in the MLP, 53-59 -> 69-72 us), not faster. */
        nn_btile_seg direct = seg;
        direct.ldc = rs;
        direct.add = qb > 0 || beta != 0.0f;
        const int store = vec && cs == 1 && rs == (size_t)N && alpha == 1.0f &&
                          (qb > 0 || beta == 0.0f || beta == 1.0f);
        for (int i0 = 0, mc; i0 < M; i0 += mc) {
            mc = M - i0 < MC ? M - i0 : MC;
            if (!whole) pack_pairs(trans_a, MR, !trans_a, A, lda, i0, mc, q0, nq, K, apack);
            else if (qb == 0) pack_pairs(0, MR, 1, A, lda, 0, M, 0, qmax, K, apack);
            const uint32_t *ablock = whole ? apack + q0 : apack;
            for (int jb = 0; jb < nc; jb += NR) {
                const int nr = nc - jb < NR ? nc - jb : NR;
                const uint32_t *bp = bpack + (size_t)jb * nq;
                for (int ib = 0; ib < mc; ib += MR) {
                    const int mr = mc - ib < MR ? mc - ib : MR;
                    const uint32_t *ap = ablock + (size_t)ib * arow;
                    float *c = C + (size_t)(i0 + ib) * rs + (size_t)(j0 + jb) * cs;
                    if (store && (nr == 16 || nr == NR)) {
                        btile(isa, mr, nr, trans_a, ap, bp, &direct, c);
                        continue;
                    }
                    btile(isa, mr, nr, trans_a, ap, bp, &seg, acc);
                    write_tile(acc, mr, nr, alpha, beta, qb == 0, c, rs, cs);
                }
            }
        }
    }
}

#ifdef NN_AMX
#define MA 256 /* rows of op(A) per packed block for the AMX kernel */

/* As gemm_packed, with the AMX kernel: op(A) packed as rows of pairs (pack_a_rows), each K block
 * padded to whole tile steps; Bp pre-packed with those blocks (pack_b with amx_block_pairs). */
static void gemm_amx(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, const uint32_t *Bp, float beta, float *C,
                     size_t rs, size_t cs)
{
    const int bp = amx_block_pairs(K);
    uint32_t *apack =
        nn_thread_buf(NN_BUF_BGEMM_A, sizeof(uint32_t) * (size_t)pad_to(M < MA ? M : MA, AM) * bp);
    uint32_t *bbuf = Bp ? NULL
                        : nn_thread_buf(NN_BUF_BGEMM_B,
                                        sizeof(uint32_t) * (size_t)pad_to(N < NC ? N : NC, NR) * bp);
    float acc[AM * NR] __attribute__((aligned(64)));
    nn_amx_configure();
    FOR_B_BLOCKS(N, K, j0, nc, qb, q0, nq) {
        const int np = (int)pad_to(nq, AQ); /* the pairs worth multiplying (bp at most) */
        const uint32_t *bpack = Bp ? Bp + packed_at(K, bp, j0, nc, qb, q0) : bbuf;
        if (!Bp) pack_b_block(trans_b, B, ldb, j0, nc, q0, nq, bp, K, bbuf);
        for (int i0 = 0, mc; i0 < M; i0 += mc) {
            mc = M - i0 < MA ? M - i0 : MA;
            pack_a_rows(trans_a, A, lda, i0, mc, q0, nq, bp, K, apack);
            for (int jb = 0; jb < nc; jb += NR) {
                const int nr = nc - jb < NR ? nc - jb : NR;
                const uint32_t *b = bpack + (size_t)jb * bp;
                for (int ib = 0; ib < mc; ib += AM) {
                    const int mr = mc - ib < AM ? mc - ib : AM;
                    nn_btile_amx(mr, nr, np, apack + (size_t)ib * bp, (size_t)bp, b, acc);
                    write_tile(acc, mr, nr, alpha, beta, qb == 0,
                               C + (size_t)(i0 + ib) * rs + (size_t)(j0 + jb) * cs, rs, cs);
                }
            }
        }
    }
    nn_amx_release();
}
#endif

static void bgemm_single(int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, const void *Bp,
                         float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (nn_gemm_trivial(M, N, K, alpha, beta, C, ldc)) return;
#ifdef NN_AMX
    if (nn_bgemm_amx()) { /* 32 x 32 blocks: no side is better padded than the other */
        gemm_amx(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C, (size_t)ldc, 1);
        return;
    }
#endif
    /* not with op(B) pre-packed: its panels are NR wide */
    if (!Bp && nn_gemm_transposes(M, N, MR, NR))
        gemm_packed(!trans_b, !trans_a, N, M, K, alpha, B, ldb, A, lda, NULL, beta, C, 1,
                    (size_t)ldc);
    else
        gemm_packed(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C, (size_t)ldc,
                    1);
}

size_t nn_bgemm_packed_size(int N, int K)
{
    return packed_size(N, K, nn_bgemm_amx() ? amx_block_pairs(K) : 0);
}

void nn_bgemm_pack_b(int trans_b, int N, int K, const float *B, int ldb, uint32_t *Bp)
{
    if (N > 0 && K > 0) pack_b(trans_b, N, K, nn_bgemm_amx() ? amx_block_pairs(K) : 0, B, ldb, Bp);
}

void nn_bgemm_packed(int M, int N, int K, float alpha, const float *A, int lda, const uint32_t *Bp,
                     float beta, float *C, int ldc)
{
    const int nb = nn_sgemm_thread_blocks(M, N, K);
    nn_gemm_split(bgemm_single, 0, 0, M, N, K, alpha, A, lda, NULL, 0, Bp, beta, C, ldc, nb, 1,
                  NULL, NULL, NULL);
}

/* The product in nb blocks of C's rows (by_rows; op(B) then packed once for all of them) or
 * columns, run in parallel (nn_gemm_split); before and after as nn_sgemm_rows. */
static void bgemm_split(int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc, int nb, int by_rows, nn_sgemm_rows_fn before,
                        nn_sgemm_rows_fn after, void *ctx)
{
    uint32_t *Bp = NULL;
    if (nb > 1 && by_rows && K > 0) {
        Bp = xd_xmalloc_aligned(sizeof(uint32_t) * nn_bgemm_packed_size(N, K));
        nn_bgemm_pack_b(trans_b, N, K, B, ldb, Bp);
    }
    nn_gemm_split(bgemm_single, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C,
                  ldc, nb, by_rows, before, after, ctx);
    free(Bp);
}

void nn_bgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    const int nb = nn_sgemm_thread_blocks(M, N, K);
    /* rows when C is at least as tall as wide: op(B) is then rounded once, its panels shared
     * among the threads, where blocks of columns would each round all of op(A). But columns
     * when it is as wide as tall and op(A) small (at most AWHOLE_MAX pairs): each thread then
     * rounds op(A) and its own part of op(B), and reads no panel the other core wrote. fc1's
     * forward in the MLP's step at two threads (128 x 128 x 784; fifteen interleaved runs of a
     * driver, medians): 95.7 us by rows, 79.8 us by columns. The teacher's fc1 (K 3136), whose
     * op(A) is four times larger, is slower by columns. */
    const int cols = M == N && (size_t)M * k_pairs(K) <= AWHOLE_MAX;
    bgemm_split(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nb,
                M >= N && !cols, NULL, NULL, NULL);
}

void nn_bgemm_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc,
                   nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx)
{
    bgemm_split(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                nn_sgemm_blocks(M, N, K), M >= N, before, after, ctx);
}

void nn_bgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                const float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (double)nn_bf16_float(nn_bf16_round(a)) * nn_bf16_float(nn_bf16_round(b));
            }
            float *d = C + (size_t)i * ldc + j;
            *d = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *d));
        }
}

/* The product by rows where each thread packs all of op(B) (nn_bgemm_param_rows), in one region:
 * each thread of the team packs op(B) whole into its own buffer, then takes blocks of rows (a
 * tile's height) in runs (xd_runs_take), its own run first, then those of a slower thread that it
 * has not begun; rows split in halves instead left the faster core waiting for the slower one
 * (the thread that also runs the layers between the regions, its cache the colder) at the end of
 * every weight gradient. A block's rows meet the same words whoever takes it: the bits of any
 * split. */
static void bgemm_rows_own(int trans_a, int trans_b, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta, float *C,
                           int ldc, int nb)
{
    const int bp = nn_bgemm_amx() ? amx_block_pairs(K) : 0;
#ifdef NN_AMX
    const int unit = nn_bgemm_amx() ? AM : MR;
#else
    const int unit = MR;
#endif
    xd_runs runs;
    xd_runs_init(&runs, nb, (M + unit - 1) / unit);
#pragma omp parallel num_threads(nb)
    {
        const int t = xd_thread_num();
        /* the B slot: bgemm_single asks for it only when op(B) is not packed already */
        uint32_t *Bp = nn_thread_buf(NN_BUF_BGEMM_B, sizeof(uint32_t) * packed_size(N, K, bp));
        FOR_B_BLOCKS(N, K, j0, nc, qb, q0, nq) /* a block's rows read once across its panels */
        pack_b_block(trans_b, B, ldb, j0, nc, q0, nq, bp ? bp : nq, K,
                     Bp + packed_at(K, bp, j0, nc, qb, q0));
        for (int k = 0, i; (i = xd_runs_take(&runs, t, &k)) >= 0;) {
            const int r0 = i * unit, r1 = r0 + unit < M ? r0 + unit : M;
            bgemm_single(trans_a, trans_b, r1 - r0, N, K, alpha,
                         trans_a ? A + r0 : A + (size_t)r0 * lda, lda, B, ldb, Bp, beta,
                         C + (size_t)r0 * ldc, ldc);
        }
    }
    xd_runs_free(&runs);
}

void nn_bgemm_param_rows(int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc)
{
    /* By rows also when C is wider than tall, if each thread gets MIN_ROWS of them and op(B) is
     * small enough for each to pack all of it: blocks of columns each write a part of every row
     * of C, and at two threads the cores then get in each other's way on C's lines. Rows cost
     * the packing once per thread and save more (a linear layer's weight gradient;
     * BENCHMARKS.md), and each thread's rows are then about the ones that AdamW, which splits
     * every parameter's values between the threads in the same order, updates on the same core. */
    const int nb = nn_sgemm_thread_blocks(M, N, K);
    const int own = M < N && M / nb >= MIN_ROWS && (long long)K * N <= OWN_PACK_MAX;
    if (own && nb > 1) /* inside another team's region, its one thread takes every block */
        bgemm_rows_own(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nb);
    else
        bgemm_split(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nb, M >= N,
                    NULL, NULL, NULL);
}

void nn_btile_segments(int mr, int nr, const uint32_t *a, const uint32_t *b,
                       const nn_btile_seg *g, float *acc)
{
    XD_ASSERT(mr >= 1 && mr <= NN_BTILE_ROWS && nr >= 1 && nr <= NN_BTILE_COLS);
    XD_ASSERT(g->ldc >= (size_t)(nr <= 16 ? 16 : NN_BTILE_COLS));
    XD_ASSERT(!(g->load && g->add));
    nn_bisa isa = nn_bgemm_isa(); /* with AMX, AVX512_BF16's tile */
    if (isa == NN_BISA_AMX)
        isa = isa_runs(NN_BISA_AVX512BF16) ? NN_BISA_AVX512BF16 : NN_BISA_PORTABLE;
    btile(isa, mr, nr, 0, a, b, g, acc);
}
