/* nn/gemm: our packed product against the plain one (summed in double) over every transpose,
 * edge and blocking case the kernel has, BLAS semantics of alpha, beta and K = 0, and the bits:
 * the same at 1 and 2 threads, whatever rows or columns a call covers and whichever way round
 * the kernel computes C. */
#include "tests/support/testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "nn/gemm.h"
#include "tests/support/prodfix.h"

/* C = alpha op(A) op(B) + beta C by nn_sgemm, or (packed) by nn_sgemm_packed from op(B) packed
 * with nn_sgemm_pack_b */
static void product(const prod *p, int packed, float alpha, float beta, float *C)
{
    if (!packed) {
        nn_sgemm(p->ta, p->tb, p->M, p->N, p->K, alpha, p->A, p->lda, p->B, p->ldb, beta, C,
                 p->ldc);
        return;
    }
    const size_t n = nn_sgemm_packed_size(p->N, p->K);
    float *bp = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(bp);
    nn_sgemm_pack_b(p->tb, p->N, p->K, p->B, p->ldb, bp);
    nn_sgemm_packed(p->ta, p->M, p->N, p->K, alpha, p->A, p->lda, bp, beta, C, p->ldc);
    free(bp);
}

/* Checks C = alpha op(A) op(B) + beta C0 elementwise within the error bound of a float sum of K
 * products: |err| <= 2 (K + 2) u (|alpha| sum_k |a_ik b_kj| + |beta c0_ij|), u = 2^-24. */
static void check_product(const prod *p, int packed, float alpha, float beta, const char *what)
{
    float *got = prod_copy_c(p), *want = prod_copy_c(p);
    product(p, packed, alpha, beta, got);
    nn_sgemm_ref(p->ta, p->tb, p->M, p->N, p->K, alpha, p->A, p->lda, p->B, p->ldb, beta, want,
                 p->ldc);
    const double u = FLT_EPSILON / 2;
    for (int i = 0; i < p->M; i++)
        for (int j = 0; j < p->N; j++) {
            double mag = 0.0;
            for (int k = 0; k < p->K; k++)
                mag += fabs((double)(p->ta ? p->A[(size_t)k * p->lda + i]
                                           : p->A[(size_t)i * p->lda + k]) *
                            (p->tb ? p->B[(size_t)j * p->ldb + k] : p->B[(size_t)k * p->ldb + j]));
            const double c0 = beta == 0.0f ? 0.0 : fabs((double)beta * p->C[(size_t)i * p->ldc + j]);
            const double bound = 2.0 * (p->K + 2) * u * (fabs(alpha) * mag + c0);
            const double err = fabs((double)got[(size_t)i * p->ldc + j] - want[(size_t)i * p->ldc + j]);
            if (!(err <= bound))
                fail_msg("%s: ta %d tb %d %dx%dx%d alpha %g beta %g: C[%d][%d] = %.9g, reference "
                         "%.9g (error %.3g over the bound %.3g)",
                         what, p->ta, p->tb, p->M, p->N, p->K, alpha, beta, i, j,
                         got[(size_t)i * p->ldc + j], want[(size_t)i * p->ldc + j], err, bound);
        }
    /* the padding columns of C are not written */
    for (int i = 0; i < p->M; i++)
        for (int j = p->N; j < p->ldc; j++)
            assert_true(got[(size_t)i * p->ldc + j] == p->C[(size_t)i * p->ldc + j]);
    free(got);
    free(want);
}

/* Shapes that reach each path: tiles with and without edges, a few columns (C computed
 * transposed), many columns (op(A) packed, in blocks of rows when it is tall) and few (read in
 * place), K in one block and several, C wider than one packed block of op(B), one row, one
 * column; then exact leading dimensions, with op(B) one panel wide for each kernel width (8, 16
 * and 32 columns), so that it is used in place. */
static void check_against_ref(const prod *p, float alpha, float beta, const char *what)
{
    check_product(p, 0, alpha, beta, what);
}

static void test_against_reference(void **state)
{
    (void)state;
    static const int shapes[][3] = {
        {1, 1, 1},    {5, 7, 3},     {12, 32, 16},  {13, 33, 17},  {24, 64, 385},
        {100, 10, 50}, {3, 200, 40},  {37, 150, 800}, {64, 289, 700}, {200, 9, 1000},
        {30, 2100, 20}, {250, 40, 9}, {1, 300, 33},  {300, 1, 33},  {200, 130, 400},
        {400, 300, 50},
    };
    uint64_t seed = 100;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            prod p = prod_make(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], seed += 3);
            check_against_ref(&p, 1.0f, 0.0f, "plain");
            check_against_ref(&p, 1.0f, 1.0f, "accumulate");
            check_against_ref(&p, -0.5f, 0.75f, "alpha and beta");
            prod_free(&p);
        }
    static const int exact[][3] = {{100, 32, 50}, {100, 16, 50}, {100, 8, 50}, {7, 32, 800},
                                   {300, 32, 9}, {13, 5, 3}};
    for (size_t s = 0; s < sizeof exact / sizeof exact[0]; s++)
        for (int t = 0; t < 4; t++) {
            prod p = prod_make_ld(t & 1, t >> 1, exact[s][0], exact[s][1], exact[s][2],
                                  seed += 3, 0);
            check_against_ref(&p, 1.0f, 0.0f, "exact strides");
            check_against_ref(&p, 1.0f, 1.0f, "exact strides, accumulate");
            prod_free(&p);
        }
}

/* beta = 0 ignores what C held (NaN included); K = 0 leaves beta * C. */
static void test_beta_and_empty_k(void **state)
{
    (void)state;
    prod p = prod_make(0, 1, 20, 40, 30, 7);
    for (size_t i = 0; i < (size_t)p.M * p.ldc; i++) p.C[i] = NAN;
    nn_sgemm(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, p.C, p.ldc);
    for (int i = 0; i < p.M; i++)
        for (int j = 0; j < p.N; j++) assert_false(isnan(p.C[(size_t)i * p.ldc + j]));
    prod_free(&p);

    prod q = prod_make(0, 0, 6, 5, 0, 8);
    float *c0 = prod_copy_c(&q);
    nn_sgemm(0, 0, 6, 5, 0, 1.0f, q.A, q.lda, q.B, q.ldb, 0.5f, q.C, q.ldc);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++)
            assert_true(q.C[(size_t)i * q.ldc + j] == 0.5f * c0[(size_t)i * q.ldc + j]);
    for (size_t i = 0; i < (size_t)q.M * q.ldc; i++) q.C[i] = NAN;
    nn_sgemm(0, 0, 6, 5, 0, 1.0f, q.A, q.lda, q.B, q.ldb, 0.0f, q.C, q.ldc);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++) assert_true(q.C[(size_t)i * q.ldc + j] == 0.0f);
    /* alpha 0: A and B are not read (an infinity there would make NaN) */
    q.A[0] = INFINITY;
    for (size_t i = 0; i < (size_t)q.M * q.ldc; i++) q.C[i] = 2.0f;
    nn_sgemm(0, 0, 6, 5, 3, 0.0f, q.A, 3, q.B, q.ldb, 1.0f, q.C, q.ldc);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++) assert_true(q.C[(size_t)i * q.ldc + j] == 2.0f);
    free(c0);
    prod_free(&q);
}

static void assert_same_bits(const float *a, const float *b, int M, int N, int lda, int ldb,
                             const char *what)
{
    for (int i = 0; i < M; i++)
        if (memcmp(a + (size_t)i * lda, b + (size_t)i * ldb, sizeof(float) * N) != 0)
            fail_msg("%s: row %d differs", what, i);
}

/* The bits of an element do not depend on the thread count, on the rows or columns one call
 * covers, on the shape-fixed blocks of nn_sgemm_rows, on nn_sgemm_param_rows's split by rows of a
 * C wider than tall (130 x 500 and 128 x 784: 65 and 64 rows a thread at 2 threads, in four blocks
 * that the threads take from each other; the others fall back to nn_sgemm's split), on columns in
 * twice as many blocks as threads where op(A) is still read in place (128 x 128 x 784, a linear
 * layer's forward, in the AVX-512 and AVX2 builds), or on whether the kernel computes C or C^T,
 * with alpha and beta as training uses them (beta 1: biases and accumulated gradients) and
 * others. */
static void test_bits_independent_of_split(void **state)
{
    (void)state;
    const int threads = xd_threads_get();
    static const int shapes[][3] = {{700, 64, 289}, {64, 289, 2000}, {3000, 10, 200},
                                    {40, 3000, 64},  {130, 500, 70}, {128, 784, 128},
                                    {128, 128, 784}};
    static const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.5f, 0.75f}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t v = 0; v < sizeof ab / sizeof ab[0]; v++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            const float alpha = ab[v][0], beta = ab[v][1];
            prod p = prod_make(s & 1, (s >> 1) & 1, M, N, K, 40 + s);
            float *one = prod_copy_c(&p), *two = prod_copy_c(&p), *part = prod_copy_c(&p);
            xd_threads_set(1);
            nn_sgemm(p.ta, p.tb, M, N, K, alpha, p.A, p.lda, p.B, p.ldb, beta, one, p.ldc);
            xd_threads_set(2);
            nn_sgemm(p.ta, p.tb, M, N, K, alpha, p.A, p.lda, p.B, p.ldb, beta, two, p.ldc);
            assert_same_bits(one, two, M, N, p.ldc, p.ldc, "1 and 2 threads");
            memcpy(two, p.C, sizeof(float) * (size_t)M * p.ldc);
            nn_sgemm_rows(p.ta, p.tb, M, N, K, alpha, p.A, p.lda, p.B, p.ldb, NULL, beta, two,
                          p.ldc, NULL, NULL, NULL);
            assert_same_bits(one, two, M, N, p.ldc, p.ldc, "nn_sgemm_rows");
            memcpy(two, p.C, sizeof(float) * (size_t)M * p.ldc);
            nn_sgemm_param_rows(p.ta, p.tb, M, N, K, alpha, p.A, p.lda, p.B, p.ldb, beta, two,
                                p.ldc);
            assert_same_bits(one, two, M, N, p.ldc, p.ldc, "nn_sgemm_param_rows");

            /* rows in three uneven calls, then columns in three uneven calls */
            const int rcut[4] = {0, M / 3 + 1, M / 2 + 2, M}, ccut[4] = {0, 5, N / 2 + 1, N};
            for (int c = 0; c < 3; c++) {
                const int r0 = rcut[c], r1 = rcut[c + 1];
                const float *a = p.ta ? p.A + r0 : p.A + (size_t)r0 * p.lda;
                nn_sgemm(p.ta, p.tb, r1 - r0, N, K, alpha, a, p.lda, p.B, p.ldb, beta,
                         part + (size_t)r0 * p.ldc, p.ldc);
            }
            assert_same_bits(one, part, M, N, p.ldc, p.ldc, "row blocks");
            memcpy(part, p.C, sizeof(float) * (size_t)M * p.ldc);
            for (int c = 0; c < 3; c++) {
                const int c0 = ccut[c], c1 = ccut[c + 1];
                const float *b = p.tb ? p.B + (size_t)c0 * p.ldb : p.B + c0;
                nn_sgemm(p.ta, p.tb, M, c1 - c0, K, alpha, p.A, p.lda, b, p.ldb, beta, part + c0,
                         p.ldc);
            }
            assert_same_bits(one, part, M, N, p.ldc, p.ldc, "column blocks");

            /* C^T = op(B)^T op(A)^T from the transposed start, then transposed back */
            float *ct = malloc(sizeof(float) * (size_t)N * M),
                  *back = malloc(sizeof(float) * (size_t)M * N);
            assert_non_null(ct);
            assert_non_null(back);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) ct[(size_t)j * M + i] = p.C[(size_t)i * p.ldc + j];
            nn_sgemm(!p.tb, !p.ta, N, M, K, alpha, p.B, p.ldb, p.A, p.lda, beta, ct, M);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) back[(size_t)i * N + j] = ct[(size_t)j * M + i];
            assert_same_bits(one, back, M, N, p.ldc, N, "C^T");
            free(ct);
            free(back);
            free(one);
            free(two);
            free(part);
            prod_free(&p);
        }
    xd_threads_set(threads);
}

/* An untransposed op(B) whose K blocks are short is read in place, its whole panels straight from
 * B (ldb apart) and a narrower last one packed; a transposed one is packed. The same values given
 * both ways give the same bits, at 1 and 2 threads, by nn_sgemm and by nn_sgemm_param_rows: one
 * row (the matrix-vector kernel, with whole and partial groups of panels), edges in both
 * directions, a K block just past the in-place length, K in two blocks that are each read in
 * place, K in one block read in place and one packed (513: 256 + 257), C split by rows at 2
 * threads (130 x 600), C computed transposed (100 x 10, op(A) then read in place as the B side),
 * columns past one packed block (2100), padded and exact leading dimensions (a read past B's end
 * is out of bounds under the sanitizers). */
static void test_b_in_place(void **state)
{
    (void)state;
    const int threads = xd_threads_get();
    static const int shapes[][3] = {{1, 200, 100},  {1, 130, 256}, {5, 33, 17},   {64, 784, 128},
                                    {13, 96, 257},  {40, 100, 300}, {30, 70, 512}, {128, 64, 9},
                                    {130, 600, 100}, {100, 10, 50}, {96, 300, 513}, {3, 2100, 20}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int pad = 0; pad <= 1; pad++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = (int)(s & 1);
            prod p = prod_make_ld(ta, 0, M, N, K, 900 + s, pad);
            float *bt = malloc(sizeof(float) * (size_t)N * K); /* op(B)^T, N x K */
            assert_non_null(bt);
            for (int k = 0; k < K; k++)
                for (int j = 0; j < N; j++) bt[(size_t)j * K + k] = p.B[(size_t)k * p.ldb + j];
            for (int th = 1; th <= 2; th++) {
                xd_threads_set(th);
                float *direct = prod_copy_c(&p), *packed = prod_copy_c(&p),
                      *rows = prod_copy_c(&p);
                nn_sgemm(ta, 0, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, direct, p.ldc);
                nn_sgemm_param_rows(ta, 0, M, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 1.0f, rows,
                                    p.ldc);
                nn_sgemm(ta, 1, M, N, K, 1.0f, p.A, p.lda, bt, K, 1.0f, packed, p.ldc);
                assert_same_bits(packed, direct, M, N, p.ldc, p.ldc, "op(B) in place");
                assert_same_bits(packed, rows, M, N, p.ldc, p.ldc, "op(B) in place, param rows");
                free(direct);
                free(packed);
                free(rows);
            }
            check_against_ref(&p, 1.0f, 1.0f, "op(B) in place");
            free(bt);
            prod_free(&p);
        }
    xd_threads_set(threads);
}

/* op(B) packed once (nn_sgemm_pack_b) and given to nn_sgemm_packed: within the error bound of
 * the plain product, and bit for bit what nn_sgemm gives, at 1 and 2 threads, on shapes with
 * edges on every side: one row (the matrix-vector path, with 1 to 5 panels of columns), a few
 * rows, K in one and several blocks, N past one packed block of columns. */
static void test_packed_b(void **state)
{
    (void)state;
    const int threads = xd_threads_get();
    static const int shapes[][3] = {
        {1, 1, 1},     {1, 128, 784},  {1, 129, 3136}, {1, 10, 128},  {1, 161, 7},
        {1, 33, 385},  {5, 7, 3},      {13, 33, 17},   {64, 128, 784}, {64, 10, 128},
        {100, 64, 289}, {37, 150, 800}, {30, 2100, 20}, {250, 40, 9},  {3, 200, 1000},
    };
    static const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.5f, 0.75f}};
    uint64_t seed = 500;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            prod p = prod_make(t & 1, t >> 1, M, N, K, seed += 3);
            check_product(&p, 1, 1.0f, 0.0f, "packed");
            for (size_t v = 0; v < sizeof ab / sizeof ab[0]; v++) {
                float *want = prod_copy_c(&p), *got = prod_copy_c(&p);
                product(&p, 0, ab[v][0], ab[v][1], want);
                for (int th = 1; th <= 2; th++) {
                    xd_threads_set(th);
                    memcpy(got, p.C, sizeof(float) * (size_t)M * p.ldc);
                    product(&p, 1, ab[v][0], ab[v][1], got);
                    assert_same_bits(want, got, M, N, p.ldc, p.ldc, "packed against nn_sgemm");
                }
                free(want);
                free(got);
            }
            prod_free(&p);
        }
    xd_threads_set(threads);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_beta_and_empty_k),
        cmocka_unit_test(test_bits_independent_of_split),
        cmocka_unit_test(test_packed_b),
        cmocka_unit_test(test_b_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
