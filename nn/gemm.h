/* Matrix products for the layers: C = alpha * op(A) @ op(B) + beta * C, row-major.
 *
 * OpenBLAS runs single-threaded here; the product is cut into a fixed number of blocks along the
 * longer side of C (a function of the shape only) and the blocks are spread over our OpenMP
 * threads. Each element of C is then computed by one sgemm call whose work does not depend on the
 * thread count, so results are bit-identical at 1, 2 or more threads, and OpenBLAS's own threads
 * never compete with ours for the cores. */
#ifndef XD_NN_GEMM_H
#define XD_NN_GEMM_H

void nn_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* Blocks nn_sgemm uses for an M x N x K product (exposed for tests and benchmarks). */
int nn_sgemm_blocks(int M, int N, int K);

#endif
