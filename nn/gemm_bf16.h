/* Matrix products in bfloat16 with float32 accumulation, for mixed-precision training
 * (train.precision: bf16): C = alpha * op(A) @ op(B) + beta * C, row-major, float in and out.
 *
 * Both operands are rounded to bf16 (the top 16 bits of a float: 8 bits of mantissa, the float's
 * exponent range) to nearest, ties to even; Inf stays Inf, a finite value that rounds past the
 * largest bf16 becomes Inf, and a NaN stays a NaN (made quiet, its sign kept). They are packed two
 * k at a time, the layout the CPU's bf16 dot product wants (AVX512_BF16's vdpbf16ps: each float32
 * lane adds the products of one pair). The products of bf16 values are exact in float32, so the
 * only rounding is the float32 sum, the same chain over k for every element (k in order within
 * blocks along K that depend on K alone, blocks added in order): as with nn_sgemm, the bits do not
 * depend on the thread count or on how C is cut up.
 *
 * Which kernel runs is decided at run time (CPUID, and for AMX the system's leave), whatever the
 * build's -march: AMX_BF16 (the tile unit's TDPBF16PS: 16 x 16 float32 sums of 16 pairs an
 * instruction, many times the FMA units' rate) where the CPU and Linux allow it, else AVX512_BF16
 * where the CPU has it, else a portable C loop over the same pairs. Their chains differ in order
 * (AMX sums the 16 pairs of a tile step on its own, odd and even k apart, then adds that to the
 * running sum), so they agree up to float32 rounding, not in bits; each is the same at any thread
 * count. The instructions treat subnormal bf16 inputs and results as zero. The tests force each
 * one the CPU runs. */
#ifndef XD_NN_GEMM_BF16_H
#define XD_NN_GEMM_BF16_H

#include <stdint.h>

#include "nn/gemm.h"

/* In order of preference: the best one the CPU (and, for AMX, the system) runs is the default. */
typedef enum {
    NN_BISA_PORTABLE,
    NN_BISA_AVX2,       /* AVX2 + FMA: the pairs split into float32 (no bf16 instruction) */
    NN_BISA_AVX512BF16,
    NN_BISA_AMX,
    NN_BISA_COUNT
} nn_bisa;

const char *nn_bisa_name(nn_bisa isa);
/* The best kernel this CPU runs. */
nn_bisa nn_bgemm_best(void);
/* The kernel in use: nn_bgemm_best unless nn_bgemm_use chose another. */
nn_bisa nn_bgemm_isa(void);
/* Whether the bf16 products run on AMX tiles now. */
static inline int nn_bgemm_amx(void) { return nn_bgemm_isa() == NN_BISA_AMX; }
/* Makes nn_bgemm run kernel isa (one the CPU cannot run falls back to the portable one); returns
 * the one it will run. NN_BISA_COUNT goes back to the best. */
nn_bisa nn_bgemm_use(nn_bisa isa);
/* The bf16 kernel's arithmetic ceiling on one core, as nn_sgemm_peak_run: `rounds` rounds of 12
 * independent chains of the bf16 dot product (AVX512_BF16: 64 flops an instruction, counted as
 * the float32 flops they stand for; AVX2: 256-bit float32 FMAs, two a pair). *flops is 0 for the
 * portable kernel, which has no such instruction to measure. */
float nn_bgemm_peak_run(long rounds, double *flops);

/* x rounded to bf16 (as above), and back (exact). */
uint16_t nn_bf16_round(float x);
float nn_bf16_float(uint16_t h);

/* As nn_sgemm, in bf16 with float32 sums; split over the OpenMP threads in blocks of rows when C
 * is at least as tall as wide (op(B) then rounded once for all), else of columns, and of columns
 * too when C is square and op(A) small (each thread then reads no packing the other wrote). */
void nn_bgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* As nn_sgemm_rows (the same row blocks, before and after), in bf16, op(B) packed once for all
 * blocks. */
void nn_bgemm_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc,
                   nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx);
/* op(B) (K, N) packed once for many products by the kernel that runs now (nn_bgemm_isa(), which
 * nn_bgemm_packed must still be): its words, and the packing. */
size_t nn_bgemm_packed_size(int N, int K);
void nn_bgemm_pack_b(int trans_b, int N, int K, const float *B, int ldb, uint32_t *Bp);
/* nn_bgemm(0, ., M, N, K, ...) with op(B) pre-packed by nn_bgemm_pack_b: the same bits, split by
 * rows over the threads. */
void nn_bgemm_packed(int M, int N, int K, float alpha, const float *A, int lda, const uint32_t *Bp,
                     float beta, float *C, int ldc);
/* The reference the kernels are tested against: the product of the bf16-rounded operands, summed
 * in double. */
void nn_bgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* nn_bgemm split between the threads by rows of C when it is at least as tall as wide (op(B)
 * packed once, shared), and also when it is wider, if each thread gets at least 64 rows and op(B)
 * has at most 128 K values: each thread then packs op(B) itself and writes whole rows of C (a
 * parameter's gradient, whose rows the optimizer's threads then update in about the same
 * shares), taking blocks of a tile's height in runs, a slower thread's last ones too. The same
 * bits either way. */
void nn_bgemm_param_rows(int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc);

#endif
