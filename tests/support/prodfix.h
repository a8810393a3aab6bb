/* Operands of a float product for the kernel tests (test_gemm, test_gemm_bf16): op(A) (M, K),
 * op(B) (K, N) and C (M, N) filled from a seed, with their transposes and leading dimensions. */
#ifndef XD_TESTS_PRODFIX_H
#define XD_TESTS_PRODFIX_H

#include <stdint.h>

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float *A, *B, *C;
} prod;

/* pad: leading dimensions past the logical widths (strides other than the widths are
 * exercised); else exact ones in allocations of exactly rows x width, so that a read past a
 * matrix's end is out of bounds (and caught by the sanitizer build), and op(B) can be in a
 * kernel's panel layout as it is (N equal to the panel width). Values uniform in [-1, 1). */
prod prod_make_ld(int ta, int tb, int M, int N, int K, uint64_t seed, int pad);
/* prod_make_ld with padded leading dimensions */
prod prod_make(int ta, int tb, int M, int N, int K, uint64_t seed);
void prod_free(prod *p);
/* A copy of p's C (M rows of ldc), to free. */
float *prod_copy_c(const prod *p);

#endif
