/* Our packed sgemm, split over threads without changing a bit (see gemm.h). */
#include "nn/gemm.h"

#include "core/mem.h"
#include "core/runtime.h"
#include "core/status.h"

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

/* Enough blocks to balance a few threads; not so many that blocks get thin (<64 rows, but where
 * split_blocks halves them) or that a small product pays for a parallel region. */
#define MAX_BLOCKS 16
#define MIN_ROWS NN_GEMM_MIN_ROWS
#define MIN_FLOPS 4.0e6

int nn_sgemm_blocks(int M, int N, int K)
{
    double flops = 2.0 * M * N * K;
    if (flops < MIN_FLOPS) return 1;
    int len = M >= N ? M : N;
    int nb = len / MIN_ROWS;
    if (nb > MAX_BLOCKS) nb = MAX_BLOCKS;
    return nb < 1 ? 1 : nb;
}

// ----------------------------------------------------------------------------------------------
// the single-threaded product: our own packed kernel
//
// BLIS-style: op(B) is packed a (KC x NC) block at a time into panels of NR columns (or, when it
// is untransposed and its K blocks are short, its whole panels are read in place), op(A) an
// (MC x KC) block at a time into panels of MR rows (or read in place when few column panels use
// it), and an MR x NR micro-kernel keeps its block of C in registers while it runs over k.
// Written with GCC vector extensions, so one source gives AVX-512 code (MR 12, NR 32: 24
// accumulators) on a CPU that has it, AVX2 + FMA (6 x 16) or SSE elsewhere, whatever OpenBLAS
// kernel the library would pick.
//
// Every element of C is one chain c = fma(a_k, b_k, c) over k in order inside each K block,
// and K blocks are added into C in order. The blocks along K are a function of K alone, so an
// element's bits do not depend on where it falls in a tile, on the row or column range a call
// covers, or on the thread count. That is what lets nn_sgemm_rows split C freely.

#include "nn/gemm_simd.h"
#include "nn/transpose.h"

/* acc = sum over k < kc of a[.., k] (R rows) outer bp[k * sb] (NR per panel, P panels ps floats
 * apart, of which the first V vectors of VW: 1 when the columns fit one; sb: NR in a packed
 * panel, B's row stride when op(B) is read in place); element (i, k) of A
 * at a[i * si + k * sk], or at a[i * si + koff[k]] when koff is given (a gathered operand: a
 * convolution's windows read from the image itself); row i of panel p goes to
 * acc[p * MR * NR + i * ld] (ld: NR in the tile buffer, or C's row stride when the tile is
 * stored straight into C). R, P, V and whether koff is NULL are constants where it is inlined
 * (R * P <= MR), so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void
kernel_body(int R, int P, int V, int kc, const float *restrict a, size_t si, size_t sk,
            const int *restrict koff, const float *restrict bp, size_t ps, size_t sb,
            float *restrict acc, size_t ld)
{
    vf c0[MR], c1[MR]; /* row i of panel p at [i * P + p] */
    /* Every loop over the sums unrolled: a loop here became a call to memset of the arrays
     * (gcc 12), each tile's; and with any of them a loop, the sums stay in registers only
     * inside the loop over k, zeroed on the stack before it and copied through it after
     * (about a fifth of a 6 x 16 tile's time at k = 32). */
#pragma GCC unroll 12
    for (int i = 0; i < R * P; i++) c0[i] = c1[i] = (vf){0};
    for (int k = 0; k < kc; k++) {
#pragma GCC unroll 12
        for (int p = 0; p < P; p++) {
            const vf b0 = vload(bp + p * ps), b1 = V == 2 ? vload(bp + p * ps + VW) : b0;
            const float *ak = koff ? a + koff[k] : a;
#pragma GCC unroll 12
            for (int i = 0; i < R; i++) {
                const vf av = vset1(ak[i * si]);
                c0[i * P + p] = vfma(av, b0, c0[i * P + p]);
                if (V == 2) c1[i * P + p] = vfma(av, b1, c1[i * P + p]);
            }
        }
        if (!koff) a += sk;
        bp += sb;
    }
#pragma GCC unroll 12
    for (int p = 0; p < P; p++)
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            vstore(acc + p * MR * NR + i * ld, c0[i * P + p]);
            if (V == 2) vstore(acc + p * MR * NR + i * ld + VW, c1[i * P + p]);
        }
}

/* The kernel for a tile of mr rows (1..MR) and nr columns (1..NR): only those rows, and one
 * vector of columns when they fit it, are computed (the others of acc are left as they were).
 * Row i goes to acc[i * ld]. */
#define TILE_ROWS(r)                                                                              \
    case r:                                                                                       \
        if (koff && half)                                                                        \
            kernel_body((r) < MR ? (r) : MR, 1, 1, kc, a, si, 0, koff, bp, 0, sb, acc, ld);     \
        else if (koff)                                                                           \
            kernel_body((r) < MR ? (r) : MR, 1, 2, kc, a, si, 0, koff, bp, 0, sb, acc, ld);     \
        else if (half)                                                                           \
            kernel_body((r) < MR ? (r) : MR, 1, 1, kc, a, si, sk, NULL, bp, 0, sb, acc, ld);    \
        else                                                                                     \
            kernel_body((r) < MR ? (r) : MR, 1, 2, kc, a, si, sk, NULL, bp, 0, sb, acc, ld);    \
        break;
static void kernel_tile(int mr, int nr, int kc, const float *restrict a, size_t si, size_t sk,
                        const int *restrict koff, const float *restrict bp, size_t sb,
                        float *restrict acc, size_t ld)
{
    static_assert(MR <= 12, "kernel_tile has cases for up to 12 rows");
    const int half = nr <= VW;
    switch (mr) {
        TILE_ROWS(1) TILE_ROWS(2) TILE_ROWS(3) TILE_ROWS(4) TILE_ROWS(5) TILE_ROWS(6)
        TILE_ROWS(7) TILE_ROWS(8) TILE_ROWS(9) TILE_ROWS(10) TILE_ROWS(11) TILE_ROWS(12)
    default: XD_ASSERT(0);
    }
}
#undef TILE_ROWS

/* One row of A (element k at a[k * sk]) against ROW_PANELS panels ps floats apart: a
 * matrix-vector product, with enough independent accumulators to keep the FMA units busy. The
 * same chain per element as the tile kernels, so the same bits. */
#define ROW_PANELS 4
static_assert(ROW_PANELS <= MR, "the row kernel's accumulators fit the tile kernel's");
static void kernel_row4(int kc, const float *restrict a, size_t sk, const float *restrict bp,
                        size_t ps, size_t sb, float *restrict acc)
{
    kernel_body(1, ROW_PANELS, 2, kc, a, 0, sk, NULL, bp, ps, sb, acc, NR);
}

typedef float v4 __attribute__((vector_size(4 * sizeof(float))));

/* d[k * ld_d + r] = s[r * ld_s + k] for r, k < 4 */
static inline void transpose4(const float *s, size_t ld_s, float *d, size_t ld_d)
{
    v4 a, b, c, e;
    memcpy(&a, s, sizeof a);
    memcpy(&b, s + ld_s, sizeof b);
    memcpy(&c, s + 2 * ld_s, sizeof c);
    memcpy(&e, s + 3 * ld_s, sizeof e);
    const v4 t0 = __builtin_shufflevector(a, b, 0, 4, 1, 5),
             t1 = __builtin_shufflevector(a, b, 2, 6, 3, 7),
             t2 = __builtin_shufflevector(c, e, 0, 4, 1, 5),
             t3 = __builtin_shufflevector(c, e, 2, 6, 3, 7);
    const v4 r0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5),
             r1 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7),
             r2 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5),
             r3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
    memcpy(d, &r0, sizeof r0);
    memcpy(d + ld_d, &r1, sizeof r1);
    memcpy(d + 2 * ld_d, &r2, sizeof r2);
    memcpy(d + 3 * ld_d, &r3, sizeof r3);
}

#if defined(__AVX512F__)
/* Whole 16 x 16 blocks, where a vector holds 16 floats: 64 shuffles for 256 values, where 4 x 4
 * blocks take 128. d[k * ld_d + r] = s[r * ld_s + k] for r, k < 16. */
#define TRANSPOSE_BLOCK 16
static void transpose16(const float *s, size_t ld_s, float *d, size_t ld_d)
{
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512((const void *)(s + (size_t)i * ld_s));
    nn_transpose_16x16(r);
    for (int i = 0; i < 16; i++) _mm512_storeu_si512((void *)(d + (size_t)i * ld_d), r[i]);
}
#else
#define TRANSPOSE_BLOCK 0 /* 4 x 4 blocks only */
#endif

/* Packs rows i0..i0+mc, columns p0..p0+kc of X (X[i][k] = t ? src[k * ld + i] : src[i * ld + k])
 * into panels of R rows: panel p holds, for each k, its R values (zeros past the last row). */
static void pack_panels(int t, int R, const float *src, int ld, int i0, int mc, int p0, int kc,
                        float *dst)
{
    for (int ib = 0; ib < mc; ib += R, dst += (size_t)kc * R) {
        const int rows = mc - ib < R ? mc - ib : R;
        if (t) {
            /* the panel's R values of one k lie side by side in the source */
            for (int k = 0; k < kc; k++) {
                const float *s = src + (size_t)(p0 + k) * ld + i0 + ib;
                float *d = dst + (size_t)k * R;
                for (int r = 0; r < rows; r++) d[r] = s[r];
                for (int r = rows; r < R; r++) d[r] = 0.0f;
            }
        } else {
            /* each row's k values lie side by side: 16 x 16 blocks (where a vector holds 16
             * floats), then 4 x 4 blocks transposed in registers, the rest one value at a time */
            const int rows4 = rows & ~3, kc4 = kc & ~3;
            /* the first r16 rows' first kc16 k in whole 16 x 16 blocks; the 4 x 4 loop then
             * takes the k past those, and every k of the rows after */
            int r16 = 0, kc16 = 0;
#if TRANSPOSE_BLOCK
            r16 = rows - rows % TRANSPOSE_BLOCK;
            kc16 = kc - kc % TRANSPOSE_BLOCK;
            for (int r = 0; r < r16; r += TRANSPOSE_BLOCK) {
                const float *s = src + (size_t)(i0 + ib + r) * ld + p0;
                for (int k = 0; k < kc16; k += TRANSPOSE_BLOCK)
                    transpose16(s + k, (size_t)ld, dst + (size_t)k * R + r, (size_t)R);
            }
#endif
            for (int r = 0; r < rows4; r += 4) {
                const float *s = src + (size_t)(i0 + ib + r) * ld + p0;
                for (int k = r < r16 ? kc16 : 0; k < kc4; k += 4)
                    transpose4(s + k, (size_t)ld, dst + (size_t)k * R + r, (size_t)R);
                for (int k = kc4; k < kc; k++)
                    for (int q = 0; q < 4; q++) dst[(size_t)k * R + r + q] = s[(size_t)q * ld + k];
            }
            for (int r = rows4; r < R; r++) {
                if (r >= rows) {
                    for (int k = 0; k < kc; k++) dst[(size_t)k * R + r] = 0.0f;
                    continue;
                }
                const float *s = src + (size_t)(i0 + ib + r) * ld + p0;
                for (int k = 0; k < kc; k++) dst[(size_t)k * R + r] = s[k];
            }
        }
    }
}

/* C tile (mr, nr) at c, element (i, j) at c[i * rs + j * cs]: first K block C = beta * C +
 * alpha * acc (C not read when beta is 0), later blocks C += alpha * acc. */
static void write_tile(const float *acc, int mr, int nr, float alpha, float beta, int first,
                       float *c, size_t rs, size_t cs)
{
    const int add = !first || beta == 1.0f;
    if (nr == NR && cs == 1) {
        for (int i = 0; i < mr; i++) {
            float *d = c + (size_t)i * rs;
            for (int h = 0; h < NR; h += VW) {
                vf v = *(const vf *)(acc + i * NR + h);
                if (alpha != 1.0f) v *= alpha;
                if (add) v += vload(d + h);
                else if (beta != 0.0f) v += beta * vload(d + h);
                vstore(d + h, v);
            }
        }
        return;
    }
    if (cs == 1) { /* rows of nr side by side: the same operations, in loops that vectorise */
        for (int i = 0; i < mr; i++) {
            const float *a = acc + i * NR;
            float *d = c + (size_t)i * rs;
            if (alpha == 1.0f && add)
                for (int j = 0; j < nr; j++) d[j] += a[j];
            else if (alpha == 1.0f && beta == 0.0f)
                for (int j = 0; j < nr; j++) d[j] = a[j];
            else
                for (int j = 0; j < nr; j++) {
                    const float v = alpha != 1.0f ? a[j] * alpha : a[j];
                    d[j] = add ? d[j] + v : beta != 0.0f ? beta * d[j] + v : v;
                }
        }
        return;
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float v = acc[i * NR + j];
            if (alpha != 1.0f) v *= alpha;
            float *d = c + i * rs + j * cs;
            if (add) *d += v;
            else if (beta != 0.0f) *d = beta * *d + v;
            else *d = v;
        }
}

/* nn_thread_buf's slots of one thread */
typedef struct {
    void *p[NN_BUF_COUNT];
    size_t n[NN_BUF_COUNT];
} thread_bufs;

static _Thread_local thread_bufs *bufs;
static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;

static void bufs_free(void *p)
{
    thread_bufs *tb = p;
    for (int i = 0; i < NN_BUF_COUNT; i++) free(tb->p[i]);
    free(tb);
}

static void bufs_key_make(void)
{
    if (pthread_key_create(&bufs_key, bufs_free) != 0) {
        fprintf(stderr, "xdistill: cannot create the matrix product's thread key\n");
        abort();
    }
}

void *nn_thread_buf(int slot, size_t bytes)
{
    XD_ASSERT(slot >= 0 && slot < NN_BUF_COUNT);
    if (!bufs) {
        pthread_once(&bufs_once, bufs_key_make);
        thread_bufs *tb = calloc(1, sizeof *tb);
        if (!tb || pthread_setspecific(bufs_key, tb) != 0) {
            fprintf(stderr, "xdistill: out of memory for the matrix product's buffers\n");
            abort();
        }
        bufs = tb;
    }
    if (bufs->n[slot] < bytes) {
        const size_t n = (bytes + 63) / 64 * 64;
        free(bufs->p[slot]);
        bufs->p[slot] = aligned_alloc(64, n);
        bufs->n[slot] = n;
        if (!bufs->p[slot]) {
            fprintf(stderr, "xdistill: out of memory for the matrix product's buffers\n");
            abort();
        }
    }
    return bufs->p[slot];
}

static long pad_to(int n, int r) { return ((long)n + r - 1) / r * r; }

/* K block kb of kblocks: columns p0..p0+kc of op(A) (a function of K alone, see above) */
static void k_block(int K, int kblocks, int kb, int *p0, int *kc)
{
    *p0 = (int)((long)K * kb / kblocks);
    *kc = (int)((long)K * (kb + 1) / kblocks) - *p0;
}

static int k_blocks(int K) { return (int)(((long)K + KC - 1) / KC); }

int nn_sgemm_k_blocks(int K) { return k_blocks(K); }

void nn_sgemm_k_block(int K, int kb, int *p0, int *kc) { k_block(K, k_blocks(K), kb, p0, kc); }

/* The blocks of op(B) (K, N) in the order both the product and a pre-packed operand take them:
 * columns j0.. (nc of them, NC at most), and within those K block kb (rows p0.., kc of them). */
#define FOR_B_BLOCKS(N, K, j0, nc, kb, p0, kc)                                                   \
    for (int j0 = 0, nc; j0 < (N) && (nc = (N) - j0 < NC ? (N) - j0 : NC, 1); j0 += nc)         \
        for (int kb = 0, p0, kc, kbs_ = k_blocks(K);                                              \
             kb < kbs_ && (k_block((K), kbs_, kb, &p0, &kc), 1); kb++)

/* Where a whole pre-packed op(B) (nn_sgemm_pack_b) keeps the panels of column block j0 (nc
 * columns) and the K block starting at p0: blocks of NC columns one after the other, each its K
 * blocks in order, each as pack_panels lays it out. */
static size_t packed_at(int K, int j0, int nc, int p0)
{
    return (size_t)j0 * (size_t)K + (size_t)p0 * (size_t)pad_to(nc, NR);
}

/* the longest K block */
static size_t k_block_most(int K) { return (size_t)((K + k_blocks(K) - 1) / k_blocks(K)); }

/* Whether an untransposed op(B) (row k's columns side by side, ldb apart) is read in place rather
 * than packed: when the K block is short. A panel's kc rows of NR then stay in L1 across the row
 * tiles that use it, and packing would read and write all of op(B) once more (each thread all of
 * it, when C is split by rows): a linear layer's weight gradient, 128 x 784 x 128, 90 -> 78 us
 * for half its rows; with long K blocks the scattered rows cost more than packing saves (a 1024^3
 * product 144 -> 103 GFLOP/s). Or when op(B) is one panel already packed (NR columns, ldb NR). */
#define B_IN_PLACE_KC 256
static int b_in_place(int trans_b, int kc, int nc, int ldb)
{
    return !trans_b && (kc <= B_IN_PLACE_KC || (nc == NR && ldb == NR));
}

/* C (M, N) = alpha * op(A) @ op(B) + beta * C, element (i, j) at C[i * rs + j * cs]; M, N, K > 0.
 * Bp: op(B) pre-packed by nn_sgemm_pack_b (B and ldb unused), or NULL. koff: op(A) gathered,
 * element (i, k) at A[i * lda + koff[k]] (trans_a 0), or NULL. */
static void gemm_packed(int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const int *koff, const float *B, int ldb,
                        const float *Bp, float beta, float *C, size_t rs, size_t cs)
{
    float *const pack_a_buf = nn_thread_buf(NN_BUF_SGEMM_A, sizeof(float) * MC * KC);
    float *const pack_b_buf = nn_thread_buf(NN_BUF_SGEMM_B, sizeof(float) * KC * NC);
    float acc[ROW_PANELS * MR * NR] __attribute__((aligned(64)));
    FOR_B_BLOCKS(N, K, j0, nc, kb, p0, kc) {
        /* op(B) pre-packed, or read in place (its whole panels: a row of NR of them at a
         * time, ldb apart), or packed here; a last panel of fewer columns is packed */
        const int b_inplace = !Bp && b_in_place(trans_b, kc, nc, ldb);
        const int b_whole = b_inplace ? nc / NR * NR : 0; /* columns read in place */
        const float *bpack = Bp ? Bp + packed_at(K, j0, nc, p0) : pack_b_buf;
        if (!Bp && b_whole < nc)
            pack_panels(!trans_b, NR, B, ldb, j0 + b_whole, nc - b_whole, p0, kc, pack_b_buf);
        /* Few column panels: A's rows are read in place (packing would cost as much as the
         * products that use them); many: packed once, in cache and free of stride conflicts
         * for every panel. */
        const int a_direct = nc <= 4 * NR || M == 1 || koff;
        for (int i0 = 0, mc; i0 < M; i0 += mc) {
            mc = M - i0 < MC ? M - i0 : MC;
            if (!a_direct) pack_panels(trans_a, MR, A, lda, i0, mc, p0, kc, pack_a_buf);
            for (int jb = 0, np; jb < nc; jb += np * NR) {
                const int nr = nc - jb < NR ? nc - jb : NR;
                const int in_place = jb < b_whole;
                const float *bp = in_place ? B + (size_t)p0 * ldb + j0 + jb
                                           : bpack + (size_t)(jb - b_whole) * kc;
                const size_t sb = in_place ? (size_t)ldb : NR;
                np = 1;
                if (M == 1 && !koff) {
                    /* a matrix-vector product: one row against several panels at once */
                    const float *a = trans_a ? A + (size_t)p0 * lda : A + p0;
                    const size_t sk = trans_a ? (size_t)lda : 1;
                    if ((in_place ? b_whole : nc) - jb >= ROW_PANELS * NR) {
                        np = ROW_PANELS;
                        kernel_row4(kc, a, sk, bp, in_place ? NR : (size_t)kc * NR, sb, acc);
                    } else {
                        kernel_tile(1, nr, kc, a, 0, sk, NULL, bp, sb, acc, NR);
                    }
                    for (int p = 0; p < np; p++) {
                        const int j = jb + p * NR, w = nc - j < NR ? nc - j : NR;
                        write_tile(acc + (size_t)p * MR * NR, 1, w, alpha, beta, kb == 0,
                                   C + (size_t)(j0 + j) * cs, rs, cs);
                    }
                    continue;
                }
                /* Rows read in place (a convolution's output row at inference, Winograd's
                 * tiles of two images) are cut into tiles of nearly equal rows (14: 7 + 7, not
                 * 12 + 2, whose 2-row tile would wait on the latency of its few chains; the
                 * first mc % tiles of them a row longer; packed rows come in panels of MR); a
                 * tile C takes as it is (one K block, C = acc, whole vectors of columns) is
                 * stored there from the registers */
                const int tiles = (mc + MR - 1) / MR, base = mc / tiles, extra = mc % tiles;
                const int store = k_blocks(K) == 1 && alpha == 1.0f && beta == 0.0f && cs == 1 &&
                                  (nr == NR || nr == VW);
                const size_t tile_ld = store ? rs : NR;
                for (int t = 0, ib = 0, mr; ib < mc; t++, ib += mr) {
                    mr = !a_direct ? (mc - ib < MR ? mc - ib : MR) : base + (t < extra);
                    const int i = i0 + ib;
                    float *c = C + (size_t)i * rs + (size_t)(j0 + jb) * cs;
                    float *const to = store ? c : acc;
                    /* A packed (MR values per k), transposed in memory (A[k * lda + i]) or
                     * row-major (A[i * lda + k]) */
                    if (!a_direct)
                        kernel_tile(mr, nr, kc, pack_a_buf + (size_t)ib * kc, 1, MR, NULL, bp, sb,
                                    to, tile_ld);
                    else if (koff)
                        kernel_tile(mr, nr, kc, A + (size_t)i * lda, (size_t)lda, 0, koff + p0, bp,
                                    sb, to, tile_ld);
                    else if (trans_a)
                        kernel_tile(mr, nr, kc, A + (size_t)p0 * lda + i, 1, (size_t)lda, NULL, bp,
                                    sb, to, tile_ld);
                    else
                        kernel_tile(mr, nr, kc, A + (size_t)i * lda + p0, (size_t)lda, 1, NULL, bp,
                                    sb, to, tile_ld);
                    if (!store) write_tile(acc, mr, nr, alpha, beta, kb == 0, c, rs, cs);
                }
            }
        }
    }
}

size_t nn_sgemm_packed_size(int N, int K) { return (size_t)pad_to(N, NR) * (size_t)K; }

void nn_sgemm_pack_b(int trans_b, int N, int K, const float *B, int ldb, float *Bp)
{
    FOR_B_BLOCKS(N, K, j0, nc, kb, p0, kc)
        pack_panels(!trans_b, NR, B, ldb, j0, nc, p0, kc, Bp + packed_at(K, j0, nc, p0));
}

int nn_gemm_trivial(int M, int N, int K, float alpha, float beta, float *C, int ldc)
{
    if (K > 0 && alpha != 0.0f) return 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float *d = C + (size_t)i * ldc + j;
            *d = beta == 0.0f ? 0.0f : beta * *d;
        }
    return 1;
}

int nn_gemm_transposes(int M, int N, int mr, int nr)
{
    return 8 * pad_to(N, mr) * pad_to(M, nr) < 7 * pad_to(M, mr) * pad_to(N, nr);
}

/* Bp: op(B) pre-packed (nn_sgemm_pack_b), or NULL */
static void sgemm_single(int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, const void *Bp,
                         float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (nn_gemm_trivial(M, N, K, alpha, beta, C, ldc)) return;
    /* not with op(B) pre-packed: its panels are NR wide */
    if (!Bp && nn_gemm_transposes(M, N, MR, NR))
        gemm_packed(!trans_b, !trans_a, N, M, K, alpha, B, ldb, NULL, A, lda, NULL, beta, C, 1,
                    (size_t)ldc);
    else
        gemm_packed(trans_a, trans_b, M, N, K, alpha, A, lda, NULL, B, ldb, Bp, beta, C,
                    (size_t)ldc, 1);
}

const char *nn_sgemm_kernel(void) { return ISA ", " STR(MR) "x" STR(NR) " tiles"; }

/* Twelve chains: more than the kernel's accumulators need to hide the FMA latency on a core that
 * starts two FMAs a cycle with a latency of up to 6; b < 1 keeps every chain bounded and clear of
 * subnormals. The empty asm keeps each chain in a register and stops the compiler from folding
 * rounds together: every round is 12 FMAs. */
#define PEAK_FMA(x)                                                                        \
    do {                                                                                   \
        x = vfma(x, b, d);                                                                 \
        __asm__ volatile("" : "+x"(x));                                                    \
    } while (0)
float nn_sgemm_peak_run(long rounds, double *flops)
{
    const vf b = vset1(0.5f), d = vset1(1.0f);
    vf c0 = vset1(0), c1 = vset1(1), c2 = vset1(2), c3 = vset1(3), c4 = vset1(4), c5 = vset1(5),
       c6 = vset1(6), c7 = vset1(7), c8 = vset1(8), c9 = vset1(9), c10 = vset1(10),
       c11 = vset1(11);
    for (long r = 0; r < rounds; r++) {
        PEAK_FMA(c0); PEAK_FMA(c1); PEAK_FMA(c2); PEAK_FMA(c3); PEAK_FMA(c4); PEAK_FMA(c5);
        PEAK_FMA(c6); PEAK_FMA(c7); PEAK_FMA(c8); PEAK_FMA(c9); PEAK_FMA(c10); PEAK_FMA(c11);
    }
    *flops = 2.0 * VW * 12 * (double)rounds;
    const vf s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    return s[0];
}
#undef PEAK_FMA

void nn_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (double)(trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                     (trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            float *d = C + (size_t)i * ldc + j;
            *d = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *d));
        }
}

int nn_sgemm_thread_blocks(int M, int N, int K)
{
    const int nb = nn_sgemm_blocks(M, N, K), threads = xd_threads_get();
    return nb < threads ? nb : threads;
}

int nn_sgemm_row_blocks(int M, int N, int K)
{
    return M >= N ? nn_sgemm_blocks(M, N, K) : 1;
}

void nn_sgemm_block_range(int len, int nb, int i, int *r0, int *r1)
{
    *r0 = (int)((long)len * i / nb);
    *r1 = (int)((long)len * (i + 1) / nb);
}

/* nn_gemm_split's call: its arguments */
typedef struct {
    nn_gemm_single_fn single;
    int trans_a, trans_b, M, N, K;
    float alpha, beta;
    const float *A, *B;
    int lda, ldb, ldc;
    const void *Bp;
    float *C;
    int nb, by_rows;
    nn_sgemm_rows_fn before, after;
    void *ctx;
} split_job;

static void split_block(const split_job *j, int i)
{
    int r0, r1;
    nn_sgemm_block_range(j->by_rows ? j->M : j->N, j->nb, i, &r0, &r1);
    if (j->by_rows) {
        /* rows r0..r1 of C come from rows of op(A): A's rows, or A's columns if transposed */
        const float *a = j->trans_a ? j->A + r0 : j->A + (size_t)r0 * j->lda;
        if (j->before) j->before(j->ctx, r0, r1);
        j->single(j->trans_a, j->trans_b, r1 - r0, j->N, j->K, j->alpha, a, j->lda, j->B, j->ldb,
                  j->Bp, j->beta, j->C + (size_t)r0 * j->ldc, j->ldc);
        if (j->after) j->after(j->ctx, r0, r1);
    } else {
        /* columns r0..r1 of C come from columns of op(B) */
        const float *b = j->trans_b ? j->B + (size_t)r0 * j->ldb : j->B + r0;
        j->single(j->trans_a, j->trans_b, j->M, r1 - r0, j->K, j->alpha, j->A, j->lda, b, j->ldb,
                  NULL, j->beta, j->C + r0, j->ldc);
    }
}

/* before for rows i of nb of C, where C is split by columns: every before ahead of the products */
static void before_rows(const split_job *j, int i)
{
    int r0, r1;
    nn_sgemm_block_range(j->M, j->nb, i, &r0, &r1);
    j->before(j->ctx, r0, r1);
}

/* More blocks than T threads: in runs, one a thread, that a thread done with its own takes over
 * from a slower one (xd_runs_take); the bits are the same whoever computes a block. */
static void split_runs(const split_job *j, int T)
{
    xd_runs runs;
    xd_runs_init(&runs, T, j->nb);
#pragma omp parallel num_threads(T)
    for (int k = 0, i, t = xd_thread_num(); (i = xd_runs_take(&runs, t, &k)) >= 0;)
        split_block(j, i);
    xd_runs_free(&runs);
}

void nn_gemm_split(nn_gemm_single_fn single, int trans_a, int trans_b, int M, int N, int K,
                   float alpha, const float *A, int lda, const float *B, int ldb, const void *Bp,
                   float beta, float *C, int ldc, int nb, int by_rows, nn_sgemm_rows_fn before,
                   nn_sgemm_rows_fn after, void *ctx)
{
    XD_ASSERT(!Bp || by_rows || nb == 1);
    if (nb == 1) {
        if (before) before(ctx, 0, M);
        single(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C, ldc);
        if (after) after(ctx, 0, M);
        return;
    }
    const int threads = xd_threads_get();
    const split_job j = {single, trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc,
                         Bp, C, nb, by_rows, before, after, ctx};
    if (before && !by_rows && threads == 1) {
        for (int i = 0; i < nb; i++) before_rows(&j, i);
    } else if (before && !by_rows) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; i++) before_rows(&j, i);
    }
    if (threads == 1) { /* no region: see xd_threads_split */
        for (int i = 0; i < nb; i++) split_block(&j, i);
    } else if (nb <= threads) { /* a block a thread */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; i++) split_block(&j, i);
    } else {
        split_runs(&j, threads);
    }
    if (after && !by_rows) after(ctx, 0, M);
}

/* nn_gemm_split with our float32 kernel */
static void sgemm_split(int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, const float *Bp,
                        float beta, float *C, int ldc, int nb, int by_rows,
                        nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx)
{
    nn_gemm_split(sgemm_single, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C,
                  ldc, nb, by_rows, before, after, ctx);
}

void nn_sgemm_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, const float *Bp, float beta, float *C,
                   int ldc, nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx)
{
    /* a pre-packed op(B) is not split by columns: one block then (nn_sgemm_row_blocks says 1) */
    const int by_rows = M >= N;
    sgemm_split(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C, ldc,
                by_rows || !Bp ? nn_sgemm_blocks(M, N, K) : 1, by_rows, before, after, ctx);
}

/* How many blocks nn_gemm_split gets for nb blocks, one for each of the threads: twice as many,
 * for a thread done early to take over from a slower one, where the smaller blocks cost no more
 * work: none computed transposed (its op(A) would become a packed side), and none packing an
 * operand the others pack too. So columns in whole panels whose blocks read op(A) in place (at
 * most 4 panels wide; op(B)'s panels are each packed by one block anyway), rows whose blocks read
 * op(B) in place. Otherwise nb; and nb when the shape gave fewer blocks than threads (thinner
 * blocks would only go to more threads, not be taken over). */
static int split_blocks(int M, int N, int K, int trans_b, int nb, int by_rows)
{
    if (nb == 1 || nb != xd_threads_get()) return nb;
    const int half = (by_rows ? M : N) / (2 * nb);
    if (nn_gemm_transposes(by_rows ? half : M, by_rows ? N : half, MR, NR)) return nb;
    const int rows = !trans_b && k_block_most(K) <= B_IN_PLACE_KC;
    const int cols = N / nb <= 4 * NR && N % (2 * nb * NR) == 0;
    return (by_rows ? rows : cols) ? 2 * nb : nb;
}

/* nn_sgemm, or with rows_first (nn_sgemm_param_rows) C split by rows whenever each block gets
 * MIN_ROWS of them and op(B) is read in place (each row block would pack all of it otherwise) */
static void sgemm_threads(int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc, int rows_first)
{
    /* No work around the blocks, so a block a thread (twice that where smaller blocks cost
     * nothing more: split_blocks); a block may pack its own copy of the operand all share. */
    const int nb = nn_sgemm_thread_blocks(M, N, K);
    /* Row blocks each pack all of op(B); column blocks each read all of op(A), in place while
     * their columns are few. Columns then, unless C is taller than wide (blocks are at least
     * MIN_ROWS wide, half that where split_blocks doubles them: never narrower than a tile). */
    const int by_rows = M > N || (rows_first && M / nb >= MIN_ROWS && !trans_b &&
                                  k_block_most(K) <= B_IN_PLACE_KC);
    sgemm_split(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc,
                split_blocks(M, N, K, trans_b, nb, by_rows), by_rows, NULL, NULL, NULL);
}

void nn_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    sgemm_threads(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 0);
}

void nn_sgemm_param_rows(int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc)
{
    sgemm_threads(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
}

int nn_sgemm_k_most(int K) { return (int)k_block_most(K); }

void nn_sgemm_gather_rows(int M, int ones, int N, int K, const float *A, const int *roff,
                          const int *koff, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M + ones <= 0 || N <= 0) return;
    if (nn_gemm_trivial(M + ones, N, K, 1.0f, beta, C, ldc)) return;
    XD_ASSERT(K <= KC && M >= 0 && ones >= 0);
    static const float one = 1.0f;
    float *const pack_b_buf = nn_thread_buf(NN_BUF_SGEMM_B, sizeof(float) * KC * NC);
    float acc[MR * NR] __attribute__((aligned(64)));
    for (int j0 = 0, nc; j0 < N; j0 += nc) {
        nc = N - j0 < NC ? N - j0 : NC;
        const int b_whole = b_in_place(0, K, nc, ldb) ? nc / NR * NR : 0; /* read in place */
        if (b_whole < nc)
            pack_panels(1, NR, B, ldb, j0 + b_whole, nc - b_whole, 0, K, pack_b_buf);
        for (int i = 0, mr; i < M + ones; i += mr) {
            /* a tile: rows whose offsets run on, each value of a k beside the last; or ones */
            const float *a = &one;
            size_t si = 0;
            const int *ko = NULL;
            if (i < M) {
                for (mr = 1; mr < MR && i + mr < M && roff[i + mr] == roff[i] + mr; mr++) {}
                a = A + roff[i];
                si = 1;
                ko = koff;
            } else {
                mr = M + ones - i < MR ? M + ones - i : MR;
            }
            for (int jb = 0; jb < nc; jb += NR) {
                const int nr = nc - jb < NR ? nc - jb : NR, in_place = jb < b_whole;
                const float *bp = in_place ? B + j0 + jb : pack_b_buf + (size_t)(jb - b_whole) * K;
                kernel_tile(mr, nr, K, a, si, 0, ko, bp, in_place ? (size_t)ldb : NR, acc, NR);
                write_tile(acc, mr, nr, 1.0f, beta, 1, C + (size_t)i * ldc + j0 + jb,
                           (size_t)ldc, 1);
            }
        }
    }
}

void nn_sgemm_gather(int M, int N, int K, const float *A, int lda, const int *koff,
                     const float *Bp, float *C, int ldc)
{
    if (M > 0 && N > 0 && K > 0)
        gemm_packed(0, 0, M, N, K, 1.0f, A, lda, koff, NULL, 0, Bp, 0.0f, C, (size_t)ldc, 1);
}

void nn_sgemm_packed_serial(int trans_a, int M, int N, int K, float alpha, const float *A,
                            int lda, const float *Bp, float beta, float *C, int ldc)
{
    sgemm_single(trans_a, 0, M, N, K, alpha, A, lda, NULL, 0, Bp, beta, C, ldc);
}

void nn_sgemm_packed(int trans_a, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *Bp, float beta, float *C, int ldc)
{
    /* Row blocks: none packs op(B) now, and each holds at least a few tiles. */
    int nb = nn_sgemm_thread_blocks(M, N, K);
    if (nb > M / (2 * MR)) nb = M / (2 * MR) > 0 ? M / (2 * MR) : 1;
    sgemm_split(trans_a, 0, M, N, K, alpha, A, lda, NULL, 0, Bp, beta, C, ldc, nb, 1, NULL, NULL,
                NULL);
}
