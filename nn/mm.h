/* The layers' products (linear and conv2d, forward and backward): float32 (nn/gemm.h) or bf16
 * with float32 sums (nn/gemm_bf16.h), by the calling thread's precision. */
#ifndef XD_NN_MM_H
#define XD_NN_MM_H

#include "nn/gemm.h"

/* The precision of the layers' training products (linear and conv2d, forward and backward):
 * float32 (nn_sgemm) or bf16 (nn_bgemm). It belongs to the calling thread: a model's forward and
 * backward set their model's for their duration (nn_model.precision), so other models, evaluation
 * and inference are not affected. */
typedef enum { NN_PREC_FLOAT32, NN_PREC_BF16, NN_PREC_COUNT } nn_precision;

extern const char *const nn_precision_names[]; /* "float32", "bf16" */
/* Sets the calling thread's product precision; returns the one it replaces. */
nn_precision nn_mm_precision_set(nn_precision p);
nn_precision nn_mm_precision(void);

/* nn_sgemm, or nn_bgemm when the calling thread's precision is bf16. */
void nn_mm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc);
/* nn_sgemm_param_rows, or nn_bgemm_param_rows when the precision is bf16 */
void nn_mm_param_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* nn_sgemm_rows, or nn_bgemm_rows when the precision is bf16 and op(B) is not pre-packed (Bp, a
 * float operand packed for inference, keeps the float32 product). */
void nn_mm_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, const float *Bp, float beta, float *C, int ldc,
                nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx);

#endif
