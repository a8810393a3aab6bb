/* Blocked, thread-count independent sgemm (see gemm.h). */
#include "nn/gemm.h"

#include <cblas.h>
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Enough blocks to balance a few threads; not so many that blocks get thin (<64 rows) or that a
 * small product pays for a parallel region. */
#define MAX_BLOCKS 16
#define MIN_ROWS 64
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

/* OpenBLAS's OpenMP build sizes its team from omp_get_max_threads() at every call made outside
 * an active parallel region (openblas_set_num_threads(1) does not stick), so a call made there runs
 * with the OpenMP count lowered to one for its duration. */
static void sgemm_single(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                         float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                         float *C, int ldc)
{
#ifdef _OPENMP
    int n = omp_get_max_threads();
    if (n != 1) omp_set_num_threads(1);
#endif
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#ifdef _OPENMP
    if (n != 1) omp_set_num_threads(n);
#endif
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

void nn_sgemm_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc,
                   nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx)
{
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    const enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    const int nb = nn_sgemm_blocks(M, N, K);
    if (nb == 1) {
        if (before) before(ctx, 0, M);
        sgemm_single(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        if (after) after(ctx, 0, M);
        return;
    }
    const int by_rows = M >= N;
    if (before && !by_rows) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; i++) {
            int r0, r1;
            nn_sgemm_block_range(M, nb, i, &r0, &r1);
            before(ctx, r0, r1);
        }
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb; i++) {
        int r0, r1;
        nn_sgemm_block_range(by_rows ? M : N, nb, i, &r0, &r1);
        if (by_rows) {
            /* rows r0..r1 of C come from rows of op(A): A's rows, or A's columns if transposed */
            const float *a = trans_a ? A + r0 : A + (size_t)r0 * lda;
            if (before) before(ctx, r0, r1);
            cblas_sgemm(CblasRowMajor, ta, tb, r1 - r0, N, K, alpha, a, lda, B, ldb, beta,
                        C + (size_t)r0 * ldc, ldc);
            if (after) after(ctx, r0, r1);
        } else {
            /* columns r0..r1 of C come from columns of op(B) */
            const float *b = trans_b ? B + (size_t)r0 * ldb : B + r0;
            cblas_sgemm(CblasRowMajor, ta, tb, M, r1 - r0, K, alpha, A, lda, b, ldb, beta, C + r0,
                        ldc);
        }
    }
    if (after && !by_rows) after(ctx, 0, M);
}

void nn_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    nn_sgemm_rows(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, NULL,
                  NULL);
}
