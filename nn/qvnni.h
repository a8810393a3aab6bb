/* The AVX-512 VNNI kernels' shared pieces (nn/qgemm.c, nn/qconv_first.c): the requantisation
 * epilogue of nn_qepilogue in lanes, made once per product, and the pooling of sums. Internal to
 * nn/. */
#ifndef XD_NN_QVNNI_H
#define XD_NN_QVNNI_H

#include "nn/qgemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QGEMM_X86 1

#define QTARGET __attribute__((target("avx512f,avx512vnni,avx512bw,avx512vl"), aligned(64)))
/* the VNNI kernel's target with AVX-512 VBMI's byte permutations (nn/qconv_first.c), for CPUs
 * that have both */
#define QTARGET_VBMI                                                                               \
    __attribute__((target("avx512f,avx512vnni,avx512bw,avx512vl,avx512vbmi"), aligned(64)))

/* An epilogue's per-output values in lanes, for a block of 16 outputs (the lanes past N: 0, sd 1):
 * zero * wsum, mult, bias, and the batch norm's. */
typedef struct {
    __m512i zws;
    __m512 mult, bias, gamma, mean, sd, beta;
} vparams;

/* The epilogue in lanes, made once per product (nn_qvnni_plan): each block's values and ep's
 * scalars, loaded once, aligned. */
struct vplan {
    const vparams *blk;
    __m512 scale, lo, hi;
    __m512i code_zero, floor;
    float *y, *gap_sum;
    uint8_t *codes;
    int ldy, ldc, bn, relu;
};

/* The plan p of epilogue ep for W's outputs: its blocks in room (room_n of them) when they fit,
 * else in memory it returns (to free); N <= 8: one block, the outputs twice (see vnni_pairs). */
QTARGET vparams *nn_qvnni_plan(struct vplan *p, vparams *room, int room_n,
                              const nn_qepilogue *ep, const nn_qweights *W);

/* the blocks of a plan kept on the stack (outputs up to 16 times this) */
enum { VPLAN_ROOM = 8 };

/* requant_row's operations on the 16 sums acc, in the same order: the value, its batch norm when
 * bn, and the relu when relu. */
QTARGET static inline __attribute__((always_inline)) __m512 vnni_value_of(const vparams *v,
                                                                          __m512i acc, int bn,
                                                                          int relu)
{
    __m512 y = _mm512_add_ps(
        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, v->zws)), v->mult), v->bias);
    if (bn)
        y = _mm512_add_ps(
            _mm512_div_ps(_mm512_mul_ps(v->gamma, _mm512_sub_ps(y, v->mean)), v->sd), v->beta);
    return relu ? _mm512_max_ps(y, _mm512_setzero_ps()) : y;
}

/* vnni_value_of as plan p says: the floats (relu applied), or, when p writes codes, the values
 * they are made of. */
QTARGET static inline __m512 vnni_value(const struct vplan *p, const vparams *v, __m512i acc)
{
    return vnni_value_of(v, acc, p->bn, p->relu && !p->codes);
}

QTARGET static inline __m128i vnni_codes(const struct vplan *p, __m512 y)
{
    __m512 q = _mm512_roundscale_ps(_mm512_div_ps(y, p->scale),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_min_ps(_mm512_max_ps(q, p->lo), p->hi);
    const __m512i c =
        _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(q), p->code_zero), p->floor);
    __m128i r = _mm512_cvtusepi32_epi8(c);
    /* narrowed in a register, then stored: the narrowing store (which the compiler would make of
     * the two) is slow on some CPUs */
    __asm__("" : "+v"(r));
    return r;
}

/* a and b pooled: the larger, or the smaller in the lanes of falls */
QTARGET static inline __m512i vnni_pick(__m512i a, __m512i b, __mmask16 falls)
{
    return _mm512_mask_blend_epi32(falls, _mm512_max_epi32(a, b), _mm512_min_epi32(a, b));
}

#endif
#endif
