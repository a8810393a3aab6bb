/* The layers' products in the calling thread's precision (see mm.h). */
#include "nn/mm.h"

#include <assert.h>

#include "core/status.h"
#include "nn/gemm_bf16.h"

const char *const nn_precision_names[] = {
    [NN_PREC_FLOAT32] = "float32",
    [NN_PREC_BF16] = "bf16",
};
static_assert(sizeof nn_precision_names / sizeof nn_precision_names[0] == NN_PREC_COUNT,
              "nn_precision_names must name every nn_precision");

static _Thread_local nn_precision mm_precision = NN_PREC_FLOAT32;

nn_precision nn_mm_precision_set(nn_precision p)
{
    XD_ASSERT(p < NN_PREC_COUNT);
    const nn_precision old = mm_precision;
    mm_precision = p;
    return old;
}

nn_precision nn_mm_precision(void) { return mm_precision; }

void nn_mm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc)
{
    if (mm_precision == NN_PREC_BF16)
        nn_bgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        nn_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void nn_mm_param_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (mm_precision == NN_PREC_BF16)
        nn_bgemm_param_rows(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        nn_sgemm_param_rows(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void nn_mm_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, const float *Bp, float beta, float *C, int ldc,
                nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx)
{
    if (mm_precision == NN_PREC_BF16 && !Bp)
        nn_bgemm_rows(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, before,
                      after, ctx);
    else
        nn_sgemm_rows(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C, ldc, before,
                      after, ctx);
}
