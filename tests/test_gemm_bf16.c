/* nn/gemm_bf16: rounding to bf16; every kernel the CPU runs (AMX_BF16 and AVX512_BF16 where it
 * has them, and the portable one), each forced, against the float64 product of the bf16-rounded
 * operands on shapes with tails in M, N and odd K, over every transpose, alpha and beta, with an
 * error bound derived from K and float32 summation (and checks that the bound is tight enough to
 * catch float32 operands or a perturbed result); the bits at 1 and 2 threads and through
 * nn_bgemm_rows and nn_mm_param_rows; the convolutions' tile over segments of operands read in
 * place (nn_btile_segments); NaN and Inf; the layers' precision switch. */
#include "tests/support/testutil.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "nn/bf16.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
#include "tests/support/prodfix.h"

static void test_round(void **state)
{
    (void)state;
    /* 1 + 2^-8 lies halfway between 1 and the next bf16 (1 + 2^-7): the even one, 1;
     * 1 + 3 * 2^-8 halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up */
    assert_int_equal(nn_bf16_round(1.0f), 0x3f80);
    assert_int_equal(nn_bf16_round(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(nn_bf16_round(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(nn_bf16_round(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    assert_int_equal(nn_bf16_round(-1.0f - 0x1p-8f - 0x1p-20f), 0xbf81);
    assert_int_equal(nn_bf16_round(INFINITY), 0x7f80);
    assert_int_equal(nn_bf16_round(-INFINITY), 0xff80);
    assert_int_equal(nn_bf16_round(FLT_MAX), 0x7f80); /* past the largest bf16: Inf */
    assert_int_equal(nn_bf16_round(-0.0f), 0x8000);
    const uint32_t snan = 0x7f800001u, nnan = 0xff800001u; /* their top halves look like Inf */
    float f;
    memcpy(&f, &snan, sizeof f);
    assert_int_equal(nn_bf16_round(f), 0x7fc0);
    memcpy(&f, &nnan, sizeof f);
    assert_int_equal(nn_bf16_round(f), 0xffc0);
    assert_true(isnan(nn_bf16_float(nn_bf16_round(NAN))));
    /* random floats: the nearer of the two bf16 around it (either at a tie) */
    float x[4096];
    tu_fill_uniform(x, 4096, -3.0f, 3.0f, 7);
    for (int i = 0; i < 4096; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        const float lo = nn_bf16_float((uint16_t)(u >> 16)),
                    hi = nn_bf16_float((uint16_t)((u >> 16) + 1));
        const float r = nn_bf16_float(nn_bf16_round(x[i]));
        assert_true(r == lo || r == hi);
        assert_true(fabsf(r - x[i]) <= fabsf((r == lo ? hi : lo) - x[i]));
    }
}

/* The vector roundings the packing uses (AVX512_BF16's conversion where the build has it, which
 * flushes subnormals, so those take the integer path) give nn_bf16_round's bits: ties, the
 * carry into Inf, NaNs of both signs and kinds, zeros, subnormals, and random floats, in vectors
 * with and without a subnormal. */
static void test_vector_rounding(void **state)
{
    (void)state;
#if defined(__AVX512F__)
    static const uint32_t special[] = {
        0x3f808000u, 0x3f818000u, 0x3f808001u, 0xbf818000u, /* ties and just past */
        0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u, 0x7f7f7fffu, /* to Inf, or not */
        0x7f800000u, 0xff800000u, 0x7f800001u, 0xff800001u, /* Inf, signalling NaNs */
        0x7fc00000u, 0xffffffffu, 0x00000000u, 0x80000000u, /* quiet NaNs, zeros */
        0x00800000u, 0x80800000u, 0x00810000u, 0x0080ffffu, /* the smallest normals */
    };
    static const uint32_t subnormal[] = {0x00000001u, 0x807fffffu, 0x00008000u, 0x00018000u};
    enum { NS = sizeof special / sizeof special[0] };
    float x[64];
    for (int round = 0; round < 200; round++) {
        tu_fill_uniform(x, 64, -3.0f, 3.0f, (uint64_t)round + 1);
        for (int i = 0; i < 64; i++) x[i] *= exp2f((float)(round % 40) - 20.0f);
        for (int i = 0; i < NS; i++) memcpy(&x[(i * 7 + round) % 64], &special[i], 4);
        if (round % 2) /* one subnormal somewhere: the integer path */
            memcpy(&x[(round * 13) % 64], &subnormal[round % 4], 4);
        uint16_t want[64], got[64];
        for (int i = 0; i < 64; i++) want[i] = nn_bf16_round(x[i]);
        for (int h = 0; h < 2; h++)
            _mm512_storeu_si512((void *)(got + 32 * h), nn_bf16_halves32(x + 32 * h));
        if (memcmp(got, want, sizeof want) != 0) fail_msg("round %d: halves differ", round);
        uint16_t all[61]; /* nn_bf16_halves: vectors and a tail */
        nn_bf16_halves(all, x + 3, 61);
        if (memcmp(all, want + 3, sizeof all) != 0) fail_msg("round %d: nn_bf16_halves", round);
        uint32_t pairs[16];
        _mm512_storeu_si512((void *)pairs, nn_bf16_pair16(_mm512_loadu_si512((void *)x),
                                                          _mm512_loadu_si512((void *)(x + 16))));
        for (int i = 0; i < 16; i++)
            if (pairs[i] != (uint32_t)want[i] + ((uint32_t)want[16 + i] << 16))
                fail_msg("round %d: pair %d is %08x", round, i, pairs[i]);
    }
#else
    skip();
#endif
}

static float a_at(const prod *p, int i, int k)
{
    return p->ta ? p->A[(size_t)k * p->lda + i] : p->A[(size_t)i * p->lda + k];
}

static float b_at(const prod *p, int k, int j)
{
    return p->tb ? p->B[(size_t)j * p->ldb + k] : p->B[(size_t)k * p->ldb + j];
}

static float bf(float x) { return nn_bf16_float(nn_bf16_round(x)); }

/* The bound on |C - ref| for each element: the products of bf16 values are exact in float32, so
 * the error is that of summing K terms in float32, at most (K - 1) u sum_k |a_k b_k| to first
 * order (u = 2^-24), plus the roundings of alpha * sum, of beta * C and of their sum, and of
 * adding the blocks along K (one more each); K + 4 covers all of them. */
static void bounds(const prod *p, float alpha, float beta, double *bound)
{
    for (int i = 0; i < p->M; i++)
        for (int j = 0; j < p->N; j++) {
            double s = 0.0;
            for (int k = 0; k < p->K; k++) s += fabs((double)bf(a_at(p, i, k)) * bf(b_at(p, k, j)));
            const double c = beta == 0.0f ? 0.0 : fabs((double)beta * p->C[(size_t)i * p->ldc + j]);
            bound[(size_t)i * p->N + j] = (p->K + 4) * 0x1p-24 * (fabs(alpha) * s + c) + 1e-35;
        }
}

/* how many elements of got lie further from want than their bound */
static int n_outside(const prod *p, const float *got, const float *want, const double *bound)
{
    int bad = 0;
    for (int i = 0; i < p->M; i++)
        for (int j = 0; j < p->N; j++) {
            const size_t at = (size_t)i * p->ldc + j;
            if (!(fabs((double)got[at] - want[at]) <= bound[(size_t)i * p->N + j])) bad++;
        }
    return bad;
}

/* how many of C's padding columns (past N, up to ldc) got no longer holds as p->C does */
static int pad_changed(const prod *p, const float *got)
{
    int bad = 0;
    for (int i = 0; i < p->M; i++)
        for (int j = p->N; j < p->ldc; j++)
            bad += memcmp(&got[(size_t)i * p->ldc + j], &p->C[(size_t)i * p->ldc + j], 4) != 0;
    return bad;
}

static void assert_same_bits(const float *a, const float *b, const prod *p, const char *what)
{
    for (int i = 0; i < p->M; i++)
        if (memcmp(a + (size_t)i * p->ldc, b + (size_t)i * p->ldc, sizeof(float) * p->N) != 0)
            fail_msg("%s: row %d differs (%dx%dx%d, ta %d tb %d)", what, i, p->M, p->N, p->K,
                     p->ta, p->tb);
}

/* Each kernel the CPU runs, on every transpose and (alpha, beta): within the bound of the float64
 * product of the rounded operands (C's rows padded and not), C's padding past N untouched; the
 * float32 product of the unrounded ones, and the kernel's result with one element moved by twice
 * its bound, are not (the check can fail). Shapes: tails of the 12 x 32 tile in M and N (96 x 60
 * into rows of C that are not padded: a tile 32 wide stored straight into C, then one 28 wide
 * that must go through write_tile), odd K, K over several blocks of pairs, M over several packed
 * blocks, products large enough to be split over threads by rows and by columns. */
static void test_kernels_against_ref(void **state)
{
    (void)state;
    static const int shapes[][3] = {
        {1, 1, 1},    {1, 1, 2},     {5, 7, 3},     {12, 32, 16},  {13, 33, 17}, {11, 31, 9},
        {1, 65, 129}, {37, 16, 385}, {3, 100, 1001}, {200, 45, 77}, {64, 10, 288}, {300, 40, 501},
        {40, 300, 501}, {96, 60, 40},
    };
    static const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.5f, 0.75f}};
    const int threads = xd_threads_get();
    int ran[NN_BISA_COUNT] = {0};
    for (int isa = 0; isa < NN_BISA_COUNT; isa++) {
        if (nn_bgemm_use((nn_bisa)isa) != (nn_bisa)isa) continue; /* not on this CPU */
        ran[isa] = 1;
        uint64_t seed = 100;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int t = 0; t < 4; t++)
                for (size_t v = 0; v < sizeof ab / sizeof ab[0]; v++) {
                    const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    const float alpha = ab[v][0], beta = ab[v][1];
                    /* C's rows padded or not: tiles go straight into C only where its rows
                     * are whole (ldc == N) */
                    prod p =
                        prod_make_ld(t & 1, t >> 1, M, N, K, seed += 3, (int)(t + v + s) % 2);
                    double *bound = malloc(sizeof(double) * (size_t)M * N);
                    assert_non_null(bound);
                    bounds(&p, alpha, beta, bound);
                    float *want = prod_copy_c(&p), *got = prod_copy_c(&p), *f32 = prod_copy_c(&p);
                    nn_bgemm_ref(p.ta, p.tb, M, N, K, alpha, p.A, p.lda, p.B, p.ldb, beta, want,
                                 p.ldc);
                    xd_threads_set(2);
                    nn_bgemm(p.ta, p.tb, M, N, K, alpha, p.A, p.lda, p.B, p.ldb, beta, got, p.ldc);
                    const int bad = n_outside(&p, got, want, bound);
                    if (pad_changed(&p, got)) /* no tile's store reaches past N */
                        fail_msg("%s kernel: wrote past column %d (%dx%dx%d, ta %d tb %d)",
                                 nn_bisa_name((nn_bisa)isa), N, M, N, K, p.ta, p.tb);
                    if (bad)
                        fail_msg("%s kernel: %d elements past the bound (%dx%dx%d, ta %d tb %d, "
                                 "alpha %g beta %g)",
                                 nn_bisa_name((nn_bisa)isa), bad, M, N, K, p.ta, p.tb, alpha, beta);
                    /* the bound is far tighter than bf16's rounding of the operands */
                    if (K >= 16) {
                        nn_sgemm(p.ta, p.tb, M, N, K, alpha, p.A, p.lda, p.B, p.ldb, beta, f32,
                                 p.ldc);
                        assert_true(n_outside(&p, f32, want, bound) > 0);
                    }
                    const size_t mid = (size_t)(M / 2) * p.ldc + N / 2;
                    got[mid] += 2.0f * (float)bound[(size_t)(M / 2) * N + N / 2];
                    assert_int_equal(n_outside(&p, got, want, bound), 1);
                    free(bound);
                    free(want);
                    free(got);
                    free(f32);
                    prod_free(&p);
                }
    }
    assert_true(ran[NN_BISA_PORTABLE] && ran[nn_bgemm_best()]); /* the fallback, and the best */
    nn_bgemm_use(NN_BISA_COUNT);
    xd_threads_set(threads);
}

/* Tiles stored or added straight into C (its rows not padded: ldc == N) give the bits of the
 * stack block and write_tile (C's rows padded), at one thread: the first block with beta 0 and 1,
 * later blocks added, in products of one, two and three blocks of pairs, every transpose. */
static void test_direct_stores_same_bits(void **state)
{
    (void)state;
    static const int shapes[][3] = {{96, 64, 40}, {96, 64, 400}, {128, 128, 784}, {30, 48, 129}};
    const int threads = xd_threads_get();
    xd_threads_set(1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int beta = 0; beta <= 1; beta++) {
                const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ld = N + 3;
                prod p = prod_make_ld(t & 1, t >> 1, M, N, K, 70 + s * 8 + (size_t)t * 2 + beta, 0);
                float *padded = malloc(sizeof(float) * (size_t)M * ld);
                assert_non_null(padded);
                for (int i = 0; i < M; i++)
                    memcpy(padded + (size_t)i * ld, p.C + (size_t)i * N, sizeof(float) * N);
                nn_bgemm(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, (float)beta, p.C, N);
                nn_bgemm(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, (float)beta, padded,
                         ld);
                for (int i = 0; i < M; i++)
                    if (memcmp(p.C + (size_t)i * N, padded + (size_t)i * ld, sizeof(float) * N))
                        fail_msg("row %d differs (%dx%dx%d, ta %d tb %d, beta %d)", i, M, N, K,
                                 p.ta, p.tb, beta);
                free(padded);
                prod_free(&p);
            }
    xd_threads_set(threads);
}

/* Split by rows with op(B) wider than a block of columns and longer than a block of pairs, its
 * panels packed by the threads together, each into its place in the shared buffer: the bits of
 * one thread (which packs each block as it goes, the path test_kernels_against_ref checks), with
 * op(B) transposed (a panel's words turned in 16 x 16 blocks) and not; and the transposed one
 * gives the bits of the same op(B) laid out untransposed (read row by row), which share no
 * packing code. */
static void test_wide_rows(void **state)
{
    (void)state;
    const int threads = xd_threads_get(), M = 2060, N = 2049, K = 401;
    for (int tb = 0; tb < 2; tb++) {
        prod p = prod_make(0, tb, M, N, K, 90 + (uint64_t)tb);
        float *one = prod_copy_c(&p), *two = prod_copy_c(&p);
        xd_threads_set(1);
        nn_bgemm(0, tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, one, p.ldc);
        xd_threads_set(2);
        nn_bgemm(0, tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, two, p.ldc);
        assert_same_bits(one, two, &p, "1 and 2 threads, wide op(B)");
        if (tb) { /* the same op(B) laid out untransposed: the same words packed, the same bits */
            float *bt = malloc(sizeof(float) * (size_t)K * N);
            assert_non_null(bt);
            for (int k = 0; k < K; k++)
                for (int j = 0; j < N; j++) bt[(size_t)k * N + j] = p.B[(size_t)j * p.ldb + k];
            nn_bgemm(0, 0, M, N, K, 1.0f, p.A, p.lda, bt, N, 0.0f, one, p.ldc);
            assert_same_bits(one, two, &p, "op(B) transposed and not");
            free(bt);
        }
        free(one);
        free(two);
        prod_free(&p);
    }
    xd_threads_set(threads);
}

/* The bits: the same at 1 and 2 threads, through nn_bgemm_rows (row blocks with their work around
 * them, op(B) packed once for all), through nn_mm_param_rows in bf16 at 2 and 3 threads (each
 * thread packing all of op(B), then taking row blocks in runs) and in calls over row ranges; the
 * two kernels agree within twice the bound. */
static atomic_int rows_seen; /* the threads' row blocks call count_rows side by side */
static void count_rows(void *ctx, int r0, int r1)
{
    (void)ctx;
    atomic_fetch_add(&rows_seen, r1 - r0);
}

static void test_bits_and_kernels_agree(void **state)
{
    (void)state;
    const int threads = xd_threads_get();
    /* the last four (every transpose): nn_mm_param_rows splits them by rows at 2 threads, each
     * thread packing op(B) itself; the first four it splits as nn_bgemm does */
    static const int shapes[][3] = {{700, 64, 289}, {64, 289, 2000}, {3000, 10, 27},
                                    {40, 900, 64},  {130, 700, 96},  {128, 784, 128},
                                    {129, 600, 150}, {140, 500, 200}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        prod p = prod_make(s & 1, (s >> 1) & 1, M, N, K, 40 + s);
        float *one = prod_copy_c(&p), *two = prod_copy_c(&p), *rows = prod_copy_c(&p), *port = prod_copy_c(&p);
        xd_threads_set(1);
        nn_bgemm(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, one, p.ldc);
        xd_threads_set(2);
        nn_bgemm(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, two, p.ldc);
        assert_same_bits(one, two, &p, "1 and 2 threads");
        memcpy(two, p.C, sizeof(float) * (size_t)M * p.ldc);
        const nn_precision prec = nn_mm_precision_set(NN_PREC_BF16);
        nn_mm_param_rows(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, two, p.ldc);
        nn_mm_precision_set(prec);
        assert_same_bits(one, two, &p, "nn_mm_param_rows at 2 threads");
        /* three threads: the row blocks in three runs, one of them taken over when a thread
         * waits for a core */
        memcpy(two, p.C, sizeof(float) * (size_t)M * p.ldc);
        xd_threads_set(3);
        nn_mm_precision_set(NN_PREC_BF16);
        nn_mm_param_rows(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, two, p.ldc);
        nn_mm_precision_set(prec);
        xd_threads_set(2);
        assert_same_bits(one, two, &p, "nn_mm_param_rows at 3 threads");
        /* inside another team's region (regions do not nest): each of its threads runs the
         * whole product, every block on its one thread */
        float *inner[2] = {prod_copy_c(&p), prod_copy_c(&p)};
        int team = 1; /* 1 without OpenMP */
#pragma omp parallel num_threads(2)
        {
            const int t = xd_thread_num();
            if (t == 0) team = xd_team_size();
            nn_mm_precision_set(NN_PREC_BF16);
            nn_mm_param_rows(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, inner[t],
                             p.ldc);
            nn_mm_precision_set(prec);
        }
        for (int t = 0; t < team; t++) {
            assert_same_bits(one, inner[t], &p, "nn_mm_param_rows inside a region");
        }
        free(inner[0]);
        free(inner[1]);
        atomic_store(&rows_seen, 0);
        nn_bgemm_rows(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, rows, p.ldc,
                      NULL, count_rows, NULL);
        assert_int_equal(atomic_load(&rows_seen), M);
        assert_same_bits(one, rows, &p, "nn_bgemm_rows");
        memcpy(rows, p.C, sizeof(float) * (size_t)M * p.ldc);
        const int cut = M / 3 + 1;
        nn_bgemm(p.ta, p.tb, cut, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, rows, p.ldc);
        nn_bgemm(p.ta, p.tb, M - cut, N, K, 1.0f, p.ta ? p.A + cut : p.A + (size_t)cut * p.lda,
                 p.lda, p.B, p.ldb, 1.0f, rows + (size_t)cut * p.ldc, p.ldc);
        assert_same_bits(one, rows, &p, "two calls over row ranges");
        nn_bgemm_use(NN_BISA_PORTABLE);
        nn_bgemm(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, port, p.ldc);
        /* the AVX2 kernel runs the portable kernel's chains, stored straight into C or not */
        if (nn_bgemm_use(NN_BISA_AVX2) == NN_BISA_AVX2) {
            memcpy(rows, p.C, sizeof(float) * (size_t)M * p.ldc);
            nn_bgemm(p.ta, p.tb, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, rows, p.ldc);
            assert_same_bits(port, rows, &p, "the AVX2 and the portable kernel");
        }
        nn_bgemm_use(NN_BISA_COUNT);
        double *bound = malloc(sizeof(double) * (size_t)M * N);
        assert_non_null(bound);
        bounds(&p, 1.0f, 1.0f, bound);
        for (size_t i = 0; i < (size_t)M * N; i++) bound[i] *= 2.0;
        assert_int_equal(n_outside(&p, port, one, bound), 0);
        free(bound);
        free(one);
        free(two);
        free(rows);
        free(port);
        prod_free(&p);
    }
    xd_threads_set(threads);
}

/* The elements of nn_btile_segments' acc (mr x nr, rows ldc apart, init its values before the
 * call when g->load) outside the float32 bound of the double sums of the same pairs: each pair
 * adds two exact products, so at most (2 ns nq + 4) u times the terms' sizes. */
static int segments_outside(int mr, int nr, const uint32_t *a, const uint32_t *b,
                            const nn_btile_seg *g, const float *init, const float *acc)
{
    int bad = 0;
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const double from = g->load || g->add ? init[i * g->ldc + j] : 0.0;
            double sum = from, size = fabs(from);
            for (int s = 0; s < g->ns; s++)
                for (int q = 0; q < g->nq; q++) {
                    const uint32_t wa = a[g->aoff[s] + i * g->sa + q];
                    const uint32_t wb =
                        b[g->boff[s] + q * g->sb + (j < 16 ? (size_t)j : g->b1 + (size_t)j - 16)];
                    for (int h = 0; h < 2; h++) {
                        const double t = (double)nn_bf16_float((uint16_t)(wa >> 16 * h)) *
                                         nn_bf16_float((uint16_t)(wb >> 16 * h));
                        sum += t;
                        size += fabs(t);
                    }
                }
            if (g->bias) { /* added to the chain's sum as it is stored */
                sum += g->bias[j];
                size += fabs(g->bias[j]);
            }
            const double bound = (2.0 * g->ns * g->nq + 4) * 0x1p-24 * size + 1e-30;
            if (!(fabs(acc[i * g->ldc + j] - sum) <= bound)) bad++;
        }
    return bad;
}

/* nn_btile_segments, the convolutions' tile on operands read where they lie: three segments at
 * scattered offsets, a's rows and b's pairs at strides of their own, b's columns 16-31 elsewhere,
 * sums from zero, carried on from acc's or added to acc's as they are stored, 1 to 14 rows and 9
 * to 32 columns, a's rows 41 words apart or 16 to 64 (a convolution grid's, whose whole tiles
 * take the distance as a constant), with and without a bias added as the rows are stored, with
 * each kernel the CPU runs (AVX2 and AVX512_BF16 with the portable kernel's bits); columns past
 * 16 (when nr <= 16) and past 32 are left as they were. */
static void test_tile_segments(void **state)
{
    (void)state;
    enum { WORDS = 4096, LDC = 35 };
    uint32_t *a = malloc(sizeof(uint32_t) * WORDS), *b = malloc(sizeof(uint32_t) * WORDS);
    float *x = malloc(sizeof(float) * 2 * WORDS);
    assert_true(a && b && x);
    tu_fill_uniform(x, 2 * WORDS, -1.0f, 1.0f, 5);
    for (int i = 0; i < WORDS; i++) a[i] = nn_bf16_pair(x[2 * i], x[2 * i + 1]);
    tu_fill_uniform(x, 2 * WORDS, -2.0f, 2.0f, 6);
    for (int i = 0; i < WORDS; i++) b[i] = nn_bf16_pair(x[2 * i], x[2 * i + 1]);
    static const size_t aoff[] = {3, 1100, 500}, boff[] = {17, 2100, 900};
    enum { STRIDES = 5, CASES = 3 * STRIDES * 3 * 4 * 2 };
    float bias[NN_BTILE_COLS];
    tu_fill_uniform(bias, NN_BTILE_COLS, -3.0f, 3.0f, 8);
    float init[NN_BTILE_ROWS * LDC], acc[NN_BTILE_ROWS * LDC];
    static float first[CASES][NN_BTILE_ROWS * LDC]; /* the portable kernel's sums */
    tu_fill_uniform(init, NN_BTILE_ROWS * LDC, -4.0f, 4.0f, 7);
    static const nn_bisa kernels[] = {NN_BISA_PORTABLE, NN_BISA_AVX2, NN_BISA_AVX512BF16};
    int ran = 0;
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
        if (nn_bgemm_use(kernels[k]) != kernels[k]) continue;
        ran++;
        for (int c = 0; c < CASES; c++) {
            /* the sums from zero, carried on from acc's, or from zero and added to acc's */
            const int load = c % 3 == 1, add = c % 3 == 2, ni = c / 3 % 4, mi = c / 12 % 3,
                      si = c / 36 % STRIDES, biased = c / (36 * STRIDES);
            const int mr = (int[]){1, 7, NN_BTILE_ROWS}[mi],
                      nr = (int[]){9, 16, 17, NN_BTILE_COLS}[ni];
            const size_t sa = (size_t[]){41, 16, 32, 48, 64}[si];
            /* a bias of nr values, the one past them a NaN the kernel must not read */
            float *bv = biased ? malloc(sizeof(float) * (size_t)(nr + 1)) : NULL;
            if (biased) {
                assert_non_null(bv);
                memcpy(bv, bias, sizeof(float) * (size_t)nr);
                bv[nr] = NAN;
            }
            const nn_btile_seg g = {3, 19, aoff, boff, sa, 43, 150, LDC, load, bv, add};
            memcpy(acc, init, sizeof acc);
            nn_btile_segments(mr, nr, a, b, &g, acc);
            const int bad = segments_outside(mr, nr, a, b, &g, init, acc);
            if (bad)
                fail_msg("%s: %d of %d x %d past the bound (rows %zu apart, load %d, add %d, "
                         "bias %d)",
                         nn_bisa_name(kernels[k]), bad, mr, nr, sa, load, add, biased);
            for (int i = 0; i < mr; i++) /* what it must not write */
                for (int j = nr <= 16 ? 16 : 32; j < LDC; j++)
                    assert_true(acc[i * LDC + j] == init[i * LDC + j]);
            /* the same chains as the portable kernel's, so the same bits */
            if (k == 0) memcpy(first[c], acc, sizeof acc);
            else assert_memory_equal(first[c], acc, sizeof acc);
            acc[(mr - 1) * LDC + nr - 1] += 1e-3f; /* the check can fail */
            assert_int_equal(segments_outside(mr, nr, a, b, &g, init, acc), 1);
            free(bv);
        }
    }
    nn_bgemm_use(NN_BISA_COUNT);
    assert_true(ran >= 1);
    free(a);
    free(b);
    free(x);
}

/* A NaN operand makes its row NaN; an Inf one Inf of the right signs, in both kernels. */
static void test_nan_inf(void **state)
{
    (void)state;
    for (int isa = 0; isa < NN_BISA_COUNT; isa++) {
        if (nn_bgemm_use((nn_bisa)isa) != (nn_bisa)isa) continue;
        prod p = prod_make(0, 0, 3, 20, 5, 9);
        for (int k = 0; k < 5; k++)
            for (int j = 0; j < 20; j++) p.B[(size_t)k * p.ldb + j] = 0.5f;
        p.A[0] = NAN;
        p.A[p.lda] = INFINITY;
        p.A[2 * p.lda] = -INFINITY;
        nn_bgemm(0, 0, 3, 20, 5, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, p.C, p.ldc);
        for (int j = 0; j < 20; j++) {
            assert_true(isnan(p.C[j]));
            assert_true(isinf(p.C[p.ldc + j]) && p.C[p.ldc + j] > 0);
            assert_true(isinf(p.C[2 * p.ldc + j]) && p.C[2 * p.ldc + j] < 0);
        }
        prod_free(&p);
    }
    nn_bgemm_use(NN_BISA_COUNT);
}

/* nn_mm follows the calling thread's precision: nn_sgemm's bits in float32, nn_bgemm's in bf16. */
static void test_precision_switch(void **state)
{
    (void)state;
    prod p = prod_make(1, 0, 30, 20, 50, 3);
    float *s = prod_copy_c(&p), *b = prod_copy_c(&p), *got = prod_copy_c(&p);
    nn_sgemm(1, 0, 30, 20, 50, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, s, p.ldc);
    nn_bgemm(1, 0, 30, 20, 50, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, b, p.ldc);
    assert_int_equal(nn_mm_precision_set(NN_PREC_BF16), NN_PREC_FLOAT32);
    nn_mm(1, 0, 30, 20, 50, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, got, p.ldc);
    assert_same_bits(b, got, &p, "nn_mm in bf16");
    assert_int_equal(nn_mm_precision_set(NN_PREC_FLOAT32), NN_PREC_BF16);
    memcpy(got, p.C, sizeof(float) * (size_t)30 * p.ldc);
    nn_mm(1, 0, 30, 20, 50, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, got, p.ldc);
    assert_same_bits(s, got, &p, "nn_mm in float32");
    assert_true(memcmp(s, b, sizeof(float) * (size_t)30 * p.ldc) != 0);
    free(s);
    free(b);
    free(got);
    prod_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round),
        cmocka_unit_test(test_vector_rounding),
        cmocka_unit_test(test_kernels_against_ref),
        cmocka_unit_test(test_direct_stores_same_bits),
        cmocka_unit_test(test_bits_and_kernels_agree),
        cmocka_unit_test(test_wide_rows),
        cmocka_unit_test(test_tile_segments),
        cmocka_unit_test(test_nan_inf),
        cmocka_unit_test(test_precision_switch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
