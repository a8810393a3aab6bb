/* The vector type and operations our float32 kernels are written in (nn/gemm.c, nn/gemm_conv.c):
 * GCC vector extensions, so one source gives AVX-512 code on a CPU that has it, AVX2 + FMA or SSE
 * elsewhere; and the tile and block sizes they share. Internal to nn/. */
#ifndef XD_NN_GEMM_SIMD_H
#define XD_NN_GEMM_SIMD_H

#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define MR 12
#define NR 32
#elif defined(__AVX__)
#define MR 6
#define NR 16
#else
#define MR 4
#define NR 8
#endif
#define VW (NR / 2) /* floats per vector: a tile row is two vectors */
#if defined(__AVX512F__)
#define ISA "AVX-512"
#elif defined(__AVX__) && defined(__FMA__)
#define ISA "AVX2 + FMA"
#elif defined(__AVX__)
#define ISA "AVX"
#else
#define ISA "portable"
#endif
#define STR_(x) #x
#define STR(x) STR_(x)
#define KC 384        /* K per block (at most); blocks are equal in size */
#define MC (MR * 16)  /* rows of op(A) per packed block */
#define NC (NR * 64)  /* columns of op(B) per packed block */

typedef float vf __attribute__((vector_size(VW * sizeof(float))));

/* x in every lane */
static inline vf vset1(float x)
{
#if defined(__AVX512F__)
    return (vf)_mm512_set1_ps(x);
#elif defined(__AVX__)
    return (vf)_mm256_set1_ps(x);
#else
    return (vf){x, x, x, x};
#endif
}

/* a * b + c with one rounding where the CPU has FMA (ISO C mode does not contract a * b + c) */
static inline vf vfma(vf a, vf b, vf c)
{
#if defined(__AVX512F__)
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__AVX__) && defined(__FMA__)
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

static inline vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

#endif
