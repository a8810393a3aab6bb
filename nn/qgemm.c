/* Integer matrix products (see qgemm.h): the AVX-512 VNNI kernel and the portable one. */
#include "nn/qgemm.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QGEMM_X86 1
#endif

#include "core/mem.h"
#include "core/status.h"

/* products smaller than this many multiply-adds run on one thread */
#define QPAR_MIN (1 << 18)

static const char *const isa_names[] = {
    [NN_QISA_PORTABLE] = "portable",
    [NN_QISA_AVX512VNNI] = "AVX-512 VNNI",
};
static_assert(sizeof isa_names / sizeof isa_names[0] == NN_QISA_COUNT,
              "isa_names must name every nn_qisa");

const char *nn_qisa_name(nn_qisa isa) { return isa < NN_QISA_COUNT ? isa_names[isa] : "?"; }

nn_qisa nn_qgemm_best(void)
{
#ifdef QGEMM_X86
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"))
        return NN_QISA_AVX512VNNI;
#endif
    return NN_QISA_PORTABLE;
}

static int chosen = NN_QISA_COUNT; /* NN_QISA_COUNT: the best */

nn_qisa nn_qgemm_isa(void) { return chosen == NN_QISA_COUNT ? nn_qgemm_best() : (nn_qisa)chosen; }

nn_qisa nn_qgemm_use(nn_qisa isa)
{
    if (isa == NN_QISA_AVX512VNNI && nn_qgemm_best() != NN_QISA_AVX512VNNI) isa = NN_QISA_PORTABLE;
    chosen = isa;
    return nn_qgemm_isa();
}

void nn_qweights_pack(nn_qweights *p, const int8_t *w, int N, int K)
{
    XD_ASSERT(N > 0 && K > 0 && K <= NN_QGEMM_MAX_K);
    const size_t kg = ((size_t)K + 3) / 4, nb = ((size_t)N + 15) / 16;
    p->N = N;
    p->K = K;
    p->w = xd_xmalloc((size_t)N * K);
    memcpy(p->w, w, (size_t)N * K);
    p->packed = xd_xcalloc(nb * kg * 64, 1);
    p->wsum = xd_xcalloc((size_t)N, sizeof *p->wsum);
    for (int n = 0; n < N; n++) {
        int8_t *blk = p->packed + (size_t)(n / 16) * kg * 64;
        for (int k = 0; k < K; k++) {
            blk[(size_t)(k / 4) * 64 + (n % 16) * 4 + k % 4] = w[(size_t)n * K + k];
            p->wsum[n] += w[(size_t)n * K + k];
        }
    }
}

void nn_qweights_free(nn_qweights *p)
{
    free(p->w);
    free(p->packed);
    free(p->wsum);
    memset(p, 0, sizeof *p);
}

static void qgemm_portable(int32_t *C, int ldc, const uint8_t *A, int lda, int M,
                           const nn_qweights *W)
{
    const int N = W->N, K = W->K;
#pragma omp parallel for if ((size_t)M * N * K > QPAR_MIN)
    for (int m = 0; m < M; m++) {
        const uint8_t *a = A + (size_t)m * lda;
        for (int n = 0; n < N; n++) {
            const int8_t *w = W->w + (size_t)n * K;
            int32_t s = 0;
            for (int k = 0; k < K; k++) s += (int32_t)a[k] * (int32_t)w[k];
            C[(size_t)m * ldc + n] = s;
        }
    }
}

#ifdef QGEMM_X86
/* Four rows of A at a time against 16 weight rows: each step broadcasts four bytes of a row and
 * adds their products with a packed 64-byte block (16 rows x 4 k) into 16 int32 lanes. */
__attribute__((target("avx512f,avx512vnni"))) static void
vnni_rows4(int32_t *C, int ldc, const uint8_t *A, int lda, int m0, const nn_qweights *W)
{
    const int N = W->N, K = W->K, full = K / 4, kg = (K + 3) / 4, nb = (N + 15) / 16;
    const uint8_t *a[4];
    int32_t tail[4] = {0, 0, 0, 0}; /* the last K % 4 bytes of each row, zero-filled */
    for (int r = 0; r < 4; r++) {
        a[r] = A + (size_t)(m0 + r) * lda;
        if (full < kg) memcpy(&tail[r], a[r] + 4 * full, (size_t)(K - 4 * full));
    }
    for (int b = 0; b < nb; b++) {
        const int8_t *wp = W->packed + (size_t)b * kg * 64;
        __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int g = 0; g < full; g++) {
            const __m512i w = _mm512_loadu_si512((const void *)(wp + (size_t)g * 64));
            int32_t v0, v1, v2, v3;
            memcpy(&v0, a[0] + 4 * g, 4);
            memcpy(&v1, a[1] + 4 * g, 4);
            memcpy(&v2, a[2] + 4 * g, 4);
            memcpy(&v3, a[3] + 4 * g, 4);
            acc0 = _mm512_dpbusd_epi32(acc0, _mm512_set1_epi32(v0), w);
            acc1 = _mm512_dpbusd_epi32(acc1, _mm512_set1_epi32(v1), w);
            acc2 = _mm512_dpbusd_epi32(acc2, _mm512_set1_epi32(v2), w);
            acc3 = _mm512_dpbusd_epi32(acc3, _mm512_set1_epi32(v3), w);
        }
        if (full < kg) {
            const __m512i w = _mm512_loadu_si512((const void *)(wp + (size_t)full * 64));
            acc0 = _mm512_dpbusd_epi32(acc0, _mm512_set1_epi32(tail[0]), w);
            acc1 = _mm512_dpbusd_epi32(acc1, _mm512_set1_epi32(tail[1]), w);
            acc2 = _mm512_dpbusd_epi32(acc2, _mm512_set1_epi32(tail[2]), w);
            acc3 = _mm512_dpbusd_epi32(acc3, _mm512_set1_epi32(tail[3]), w);
        }
        const int n0 = b * 16, nn = N - n0 < 16 ? N - n0 : 16;
        const __mmask16 mask = (__mmask16)((1u << nn) - 1);
        _mm512_mask_storeu_epi32(C + (size_t)m0 * ldc + n0, mask, acc0);
        _mm512_mask_storeu_epi32(C + (size_t)(m0 + 1) * ldc + n0, mask, acc1);
        _mm512_mask_storeu_epi32(C + (size_t)(m0 + 2) * ldc + n0, mask, acc2);
        _mm512_mask_storeu_epi32(C + (size_t)(m0 + 3) * ldc + n0, mask, acc3);
    }
}

/* One row against up to four blocks of 16 weight rows: each broadcast feeds four products (a
 * batch of one, and the rows left over by vnni_rows4). */
__attribute__((target("avx512f,avx512vnni"))) static void
vnni_row(int32_t *c, const uint8_t *a, const nn_qweights *W)
{
    const int N = W->N, K = W->K, full = K / 4, kg = (K + 3) / 4, nb = (N + 15) / 16;
    int32_t tail = 0;
    if (full < kg) memcpy(&tail, a + 4 * full, (size_t)(K - 4 * full));
    for (int b0 = 0; b0 < nb; b0 += 4) {
        const int nbl = nb - b0 < 4 ? nb - b0 : 4;
        __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                          _mm512_setzero_si512()};
        for (int g = 0; g < kg; g++) {
            int32_t v = tail;
            if (g < full) memcpy(&v, a + 4 * g, 4);
            const __m512i av = _mm512_set1_epi32(v);
            for (int j = 0; j < nbl; j++)
                acc[j] = _mm512_dpbusd_epi32(acc[j], av, _mm512_loadu_si512(
                    (const void *)(W->packed + ((size_t)(b0 + j) * kg + (size_t)g) * 64)));
        }
        for (int j = 0; j < nbl; j++) {
            const int n0 = (b0 + j) * 16, nn = N - n0 < 16 ? N - n0 : 16;
            _mm512_mask_storeu_epi32(c + n0, (__mmask16)((1u << nn) - 1), acc[j]);
        }
    }
}

static void qgemm_vnni(int32_t *C, int ldc, const uint8_t *A, int lda, int M, const nn_qweights *W)
{
    const int M4 = M / 4 * 4;
#pragma omp parallel for if ((size_t)M * W->N * W->K > QPAR_MIN)
    for (int m0 = 0; m0 < M4; m0 += 4) vnni_rows4(C, ldc, A, lda, m0, W);
    for (int m = M4; m < M; m++) vnni_row(C + (size_t)m * ldc, A + (size_t)m * lda, W);
}
#endif

void nn_qgemm(int32_t *C, int ldc, const uint8_t *A, int lda, int M, const nn_qweights *W)
{
    XD_ASSERT(lda >= W->K && ldc >= W->N && M >= 0);
#ifdef QGEMM_X86
    if (nn_qgemm_isa() == NN_QISA_AVX512VNNI) {
        qgemm_vnni(C, ldc, A, lda, M, W);
        return;
    }
#endif
    qgemm_portable(C, ldc, A, lda, M, W);
}
