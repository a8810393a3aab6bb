/* align/: closed-form maps (Procrustes and CCA recovering known maps, their defining identities,
 * bad inputs) and writing a map into a model's linear node. The contrastive loss, label maps and
 * dense targets are in test_align_targets.c. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>

#include "align/linmap.h"
#include "core/mem.h"
#include "core/rng.h"
#include "nn/model.h"

/* ---------------------------------------------------------------------------------------------
 * helpers (double reference arithmetic, written independently of the library) */

static void fill_normal(float *x, size_t n, uint64_t seed)
{
    xd_rng r = xd_rng_make(seed, 0, XD_RNG_USER);
    for (size_t i = 0; i < n; i++) x[i] = xd_rng_normal(&r);
}

/* Q (d, d) orthogonal: Gram-Schmidt (twice, for accuracy) on a seeded normal matrix, by columns */
static void random_orthogonal(double *Q, int d, uint64_t seed)
{
    float *g = xd_xmalloc((size_t)d * d * sizeof(float));
    fill_normal(g, (size_t)d * d, seed);
    for (int t = 0; t < d * d; t++) Q[t] = g[t];
    free(g);
    for (int c = 0; c < d; c++)
        for (int pass = 0; pass < 2; pass++) {
            for (int p = 0; p < c; p++) {
                double dot = 0.0;
                for (int r = 0; r < d; r++) dot += Q[r * d + c] * Q[r * d + p];
                for (int r = 0; r < d; r++) Q[r * d + c] -= dot * Q[r * d + p];
            }
            double nn = 0.0;
            for (int r = 0; r < d; r++) nn += Q[r * d + c] * Q[r * d + c];
            for (int r = 0; r < d; r++) Q[r * d + c] /= sqrt(nn);
        }
}

/* C (n, m) = A (n, k) B (k, m), A float, B double, C float */
static void matmul_fd(float *C, const float *A, const double *B, int n, int k, int m)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            double s = 0.0;
            for (int l = 0; l < k; l++) s += (double)A[i * k + l] * B[l * m + j];
            C[i * m + j] = (float)s;
        }
}

/* ---------------------------------------------------------------------------------------------
 * Procrustes */

enum { PN = 40, PD = 6 };

static void test_procrustes_recovers_rotation(void **state)
{
    (void)state;
    float X[PN * PD], Y[PN * PD], noise[PN * PD];
    double Q[PD * PD];
    fill_normal(X, PN * PD, 1);
    random_orthogonal(Q, PD, 2);
    matmul_fd(Y, X, Q, PN, PD, PD);
    tu_fill_uniform(noise, PN * PD, -1e-6f, 1e-6f, 3);
    for (int t = 0; t < PN * PD; t++) Y[t] += noise[t];
    align_map m;
    align_procrustes_info info;
    xd_err e;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, PD, NULL, &info, &e));
    assert_int_equal(m.din, PD);
    assert_int_equal(m.dout, PD);
    for (int t = 0; t < PD * PD; t++) tu_assert_near(m.w[t], Q[t], 1e-4, "W vs Q");
    for (int j = 0; j < PD; j++) assert_true(m.b[j] == 0.0f);
    assert_int_equal(info.rank, PD);
    tu_assert_near(info.scale, 1.0, 0.0, "scale without scaling");
    assert_true(info.resid < 1e-5);
    /* W^T W = I */
    for (int a = 0; a < PD; a++)
        for (int b = 0; b < PD; b++) {
            double s = 0.0;
            for (int r = 0; r < PD; r++) s += (double)m.w[r * PD + a] * m.w[r * PD + b];
            tu_assert_near(s, a == b, 1e-5, "W^T W");
        }
    align_map_free(&m);
}

static void test_procrustes_center_scale(void **state)
{
    (void)state;
    float X[PN * PD], Y[PN * PD];
    double Q[PD * PD];
    const float c[PD] = {3.0f, -1.0f, 0.5f, 2.0f, -4.0f, 1.5f};
    fill_normal(X, PN * PD, 4);
    for (int t = 0; t < PN * PD; t++) X[t] += 2.0f; /* off-centre data: centring matters */
    random_orthogonal(Q, PD, 5);
    matmul_fd(Y, X, Q, PN, PD, PD);
    for (int i = 0; i < PN; i++)
        for (int j = 0; j < PD; j++) Y[i * PD + j] = 2.5f * Y[i * PD + j] + c[j];
    align_procrustes_opts o = {.center = 1, .scale = 1};
    align_procrustes_info info;
    align_map m;
    xd_err e;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, PD, &o, &info, &e));
    tu_assert_near(info.scale, 2.5, 1e-5, "scale");
    for (int t = 0; t < PD * PD; t++) tu_assert_near(m.w[t], 2.5 * Q[t], 2.5e-4, "W = s Q");
    for (int j = 0; j < PD; j++) tu_assert_near(m.b[j], c[j], 1e-4, "bias");
    assert_true(info.resid < 1e-5);
    /* the map reproduces Y */
    float out[PN * PD];
    align_map_apply(out, X, &m, PN);
    tu_assert_close(out, Y, PN * PD, 1e-4, 1e-4, "X W + b");
    align_map_free(&m);
    /* centring alone cannot find the scale: the rotation is still right, the residual is not 0 */
    o.scale = 0;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, PD, &o, &info, &e));
    for (int t = 0; t < PD * PD; t++) tu_assert_near(m.w[t], Q[t], 1e-4, "W with centring only");
    assert_true(info.resid > 0.1);
    align_map_free(&m);
    /* no centring on off-centre data: the fit is visibly worse */
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, PD, NULL, &info, &e));
    assert_true(info.resid > 0.1);
    align_map_free(&m);
}

/* dx != dy: W = a block of an orthogonal matrix is recovered, with orthonormal columns / rows */
static void test_procrustes_semi_orthogonal(void **state)
{
    (void)state;
    enum { DS = 4 };
    float X[PN * PD], Y[PN * PD], Xs[PN * DS];
    double Q[PD * PD], Qc[PD * DS], Qr[DS * PD];
    fill_normal(X, PN * PD, 6);
    random_orthogonal(Q, PD, 7);
    for (int i = 0; i < PD; i++)
        for (int j = 0; j < DS; j++) Qc[i * DS + j] = Q[i * PD + j];   /* first 4 columns */
    for (int i = 0; i < DS; i++)
        for (int j = 0; j < PD; j++) Qr[i * PD + j] = Q[i * PD + j];   /* first 4 rows */
    align_map m;
    align_procrustes_info info;
    xd_err e;
    /* 6 -> 4: the closed form U V^T has orthonormal columns but misses Q (X^T X is not a
     * multiple of I); refinement finds it */
    matmul_fd(Y, X, Qc, PN, PD, DS);
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, DS, NULL, &info, &e));
    const double closed = info.resid;
    assert_true(closed > 1e-3);
    assert_int_equal(info.iters, 0);
    for (int a = 0; a < DS; a++)
        for (int b = 0; b < DS; b++) {
            double s = 0.0;
            for (int i = 0; i < PD; i++) s += (double)m.w[i * DS + a] * m.w[i * DS + b];
            tu_assert_near(s, a == b, 1e-5, "W^T W (closed form)");
        }
    align_map_free(&m);
    align_procrustes_opts ref = {.center = 0, .scale = 0, .refine = 500};
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, DS, &ref, &info, &e));
    for (int t = 0; t < PD * DS; t++) tu_assert_near(m.w[t], Qc[t], 1e-4, "W (6 -> 4, refined)");
    assert_true(info.resid < 1e-5 && info.iters > 0 && info.iters < 500);
    align_map_free(&m);
    /* refined with centring and scale on shifted, scaled data */
    for (int t = 0; t < PN * DS; t++) Y[t] = 0.5f * Y[t] - 2.0f;
    ref.center = ref.scale = 1;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, DS, &ref, &info, &e));
    for (int t = 0; t < PD * DS; t++)
        tu_assert_near(m.w[t], 0.5 * Qc[t], 1e-4, "W (refined, s = 0.5)");
    tu_assert_near(info.scale, 0.5, 1e-5, "refined scale");
    assert_true(info.resid < 1e-5);
    align_map_free(&m);
    /* 4 -> 6 */
    for (int i = 0; i < PN; i++)
        for (int j = 0; j < DS; j++) Xs[i * DS + j] = X[i * PD + j];
    matmul_fd(Y, Xs, Qr, PN, DS, PD);
    TU_OK(align_procrustes_fit(&m, Xs, Y, PN, DS, PD, NULL, &info, &e));
    for (int t = 0; t < DS * PD; t++) tu_assert_near(m.w[t], Qr[t], 1e-4, "W (4 -> 6)");
    for (int a = 0; a < DS; a++)
        for (int b = 0; b < DS; b++) {
            double s = 0.0;
            for (int j = 0; j < PD; j++) s += (double)m.w[a * PD + j] * m.w[b * PD + j];
            tu_assert_near(s, a == b, 1e-5, "W W^T");
        }
    align_map_free(&m);
}

/* On data without an exact map, no nearby orthogonal matrix does better than the fit. */
static void test_procrustes_is_optimal(void **state)
{
    (void)state;
    float X[PN * PD], Y[PN * PD], XW[PN * PD];
    fill_normal(X, PN * PD, 8);
    fill_normal(Y, PN * PD, 9);
    align_map m;
    xd_err e;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, PD, NULL, NULL, &e));
    double W[PD * PD];
    for (int t = 0; t < PD * PD; t++) W[t] = m.w[t];
    matmul_fd(XW, X, W, PN, PD, PD);
    double best = 0.0;
    for (int t = 0; t < PN * PD; t++) best += ((double)XW[t] - Y[t]) * ((double)XW[t] - Y[t]);
    for (int trial = 0; trial < 8; trial++) {
        /* R = orthonormalised (I + 0.05 N): a rotation near the identity */
        double R[PD * PD], WR[PD * PD];
        float g[PD * PD];
        fill_normal(g, PD * PD, 100 + trial);
        for (int i = 0; i < PD; i++)
            for (int j = 0; j < PD; j++) R[i * PD + j] = (i == j) + 0.05 * g[i * PD + j];
        for (int c = 0; c < PD; c++) {
            for (int p = 0; p < c; p++) {
                double dot = 0.0;
                for (int r = 0; r < PD; r++) dot += R[r * PD + c] * R[r * PD + p];
                for (int r = 0; r < PD; r++) R[r * PD + c] -= dot * R[r * PD + p];
            }
            double nn = 0.0;
            for (int r = 0; r < PD; r++) nn += R[r * PD + c] * R[r * PD + c];
            for (int r = 0; r < PD; r++) R[r * PD + c] /= sqrt(nn);
        }
        for (int i = 0; i < PD; i++)
            for (int j = 0; j < PD; j++) {
                double s = 0.0;
                for (int l = 0; l < PD; l++) s += W[i * PD + l] * R[l * PD + j];
                WR[i * PD + j] = s;
            }
        matmul_fd(XW, X, WR, PN, PD, PD);
        double other = 0.0;
        for (int t = 0; t < PN * PD; t++) other += ((double)XW[t] - Y[t]) * ((double)XW[t] - Y[t]);
        if (!(other > best))
            fail_msg("trial %d: perturbed W gives %.9g <= fitted %.9g", trial, other, best);
    }
    align_map_free(&m);
}

static void test_procrustes_bad_inputs(void **state)
{
    (void)state;
    float X[PN * PD], Y[PN * PD];
    fill_normal(X, PN * PD, 10);
    fill_normal(Y, PN * PD, 11);
    align_map m;
    xd_err e;
    align_procrustes_opts center = {.center = 1, .scale = 0};
    /* too few pairs */
    assert_int_equal(align_procrustes_fit(&m, X, Y, 5, PD, PD, NULL, NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "5 pairs");
    assert_int_equal(align_procrustes_fit(&m, X, Y, 6, PD, PD, &center, NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "need at least 7");
    assert_int_equal(align_procrustes_fit(&m, X, Y, PN, 0, PD, NULL, NULL, &e), XD_EARG);
    /* NaN and Inf, named by matrix, row and column */
    X[2 * PD + 3] = NAN;
    assert_int_equal(align_procrustes_fit(&m, X, Y, PN, PD, PD, NULL, NULL, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "X[2][3]");
    X[2 * PD + 3] = 0.0f;
    Y[7 * PD + 1] = INFINITY;
    assert_int_equal(align_procrustes_fit(&m, X, Y, PN, PD, PD, NULL, NULL, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "Y[7][1]");
    Y[7 * PD + 1] = 0.0f;
    /* a constant column: the map is not unique */
    for (int i = 0; i < PN; i++) X[i * PD + 4] = 3.0f;
    assert_int_equal(align_procrustes_fit(&m, X, Y, PN, PD, PD, &center, NULL, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "X column 4 has zero variance");
    assert_null(m.w);
    /* Y with no variance at all */
    fill_normal(X, PN * PD, 10);
    for (int t = 0; t < PN * PD; t++) Y[t] = 1.0f;
    assert_int_equal(align_procrustes_fit(&m, X, Y, PN, PD, PD, &center, NULL, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "rank 0");
    /* collinear columns without a zero variance */
    fill_normal(Y, PN * PD, 11);
    for (int i = 0; i < PN; i++) X[i * PD + 5] = X[i * PD + 0] + X[i * PD + 1];
    assert_int_equal(align_procrustes_fit(&m, X, Y, PN, PD, PD, NULL, NULL, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "collinear");
}

/* ---------------------------------------------------------------------------------------------
 * writing a map into a model */

static void test_map_init_linear(void **state)
{
    (void)state;
    enum { DI = 6, DO = 4, N = 8 };
    float X[PN * DI], Y[PN * DO];
    double Q[DI * DI], Qc[DI * DO];
    fill_normal(X, PN * DI, 12);
    random_orthogonal(Q, DI, 13);
    for (int i = 0; i < DI; i++)
        for (int j = 0; j < DO; j++) Qc[i * DO + j] = Q[i * DI + j];
    matmul_fd(Y, X, Qc, PN, DI, DO);
    for (int t = 0; t < PN * DO; t++) Y[t] += 1.0f;
    align_procrustes_opts o = {.center = 1, .scale = 0, .refine = 500};
    align_map m;
    xd_err e;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, DI, DO, &o, NULL, &e));
    float want[N * DO];
    align_map_apply(want, X, &m, N);
    tu_assert_close(want, Y, N * DO, 1e-4, 1e-4, "apply vs Y");

    nn_model lin, conv, nob;
    TU_OK(nn_model_build(&lin, "input h=1 w=1 c=6; linear out=4 name=proj head", N, 1, &e));
    TU_OK(align_map_init_linear(&lin, "proj", &m, &e));
    nn_run run = {0};
    nn_model_forward(&lin, X, N, &run);
    tu_assert_close(nn_model_out(&lin, nn_model_default_head(&lin)), want, N * DO, 1e-5, 1e-5,
                    "linear node");
    /* a 1x1 convolution over 2 x 2 pixels: the same map per pixel (8 pixels = 2 images) */
    TU_OK(nn_model_build(&conv, "input h=2 w=2 c=6; conv2d out=4 k=1 name=pc head", 2, 1, &e));
    TU_OK(align_map_init_linear(&conv, "pc", &m, &e));
    nn_model_forward(&conv, X, 2, &run);
    tu_assert_close(nn_model_out(&conv, nn_model_default_head(&conv)), want, N * DO, 1e-5, 1e-5,
                    "1x1 conv node");
    /* errors */
    assert_int_equal(align_map_init_linear(&lin, "nope", &m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no node 'nope'");
    nn_model_free(&lin);
    TU_OK(nn_model_build(&lin, "input h=1 w=1 c=6; linear out=5 name=proj; relu name=act", N, 1,
                         &e));
    assert_int_equal(align_map_init_linear(&lin, "proj", &m, &e), XD_ESHAPE);
    tu_assert_err(&e, XD_ESHAPE, "6 -> 5");
    assert_int_equal(align_map_init_linear(&lin, "act", &m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "is a relu");
    TU_OK(nn_model_build(&nob, "input h=1 w=1 c=6; linear out=4 bias=0 name=proj", N, 1, &e));
    assert_int_equal(align_map_init_linear(&nob, "proj", &m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "has no bias");
    /* without centring the offset is zero and a bias-less node takes the map */
    align_map_free(&m);
    matmul_fd(Y, X, Qc, PN, DI, DO);
    o.center = 0;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, DI, DO, &o, NULL, &e));
    TU_OK(align_map_init_linear(&nob, "proj", &m, &e));
    nn_model_forward(&nob, X, N, &run);
    tu_assert_close(nn_model_out(&nob, 0), Y, N * DO, 1e-4, 1e-4, "bias-less node");
    nn_model_free(&lin);
    nn_model_free(&conv);
    nn_model_free(&nob);
    align_map_free(&m);
}

/* ---------------------------------------------------------------------------------------------
 * CCA */

enum { CN = 300 };

/* column means, then covariance (1/(n-1)) of float columns, in double */
static void cov(double *C, const float *A, int n, int da, const float *B, int db)
{
    double ma[8] = {0}, mb[8] = {0};
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < da; j++) ma[j] += A[i * da + j] / (double)n;
        for (int j = 0; j < db; j++) mb[j] += B[i * db + j] / (double)n;
    }
    for (int a = 0; a < da; a++)
        for (int b = 0; b < db; b++) {
            double s = 0.0;
            for (int i = 0; i < n; i++) s += (A[i * da + a] - ma[a]) * (B[i * db + b] - mb[b]);
            C[a * db + b] = s / (n - 1);
        }
}

/* P^T C R for P (d1, k), C (d1, d2), R (d2, k): the k x k result into out */
static void sandwich(double *out, const float *P, const double *C, const float *R, int d1, int d2,
                     int k)
{
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++) {
            double s = 0.0;
            for (int i = 0; i < d1; i++)
                for (int j = 0; j < d2; j++)
                    s += (double)P[i * k + a] * C[i * d2 + j] * R[j * k + b];
            out[a * k + b] = s;
        }
}

static void test_cca_invertible_map(void **state)
{
    (void)state;
    enum { D = 5 };
    static float X[CN * D], Y[CN * D], pred[CN * D];
    float g[D * D];
    double M[D * D];
    fill_normal(X, CN * D, 20);
    fill_normal(g, D * D, 21);
    /* 3 I + noise: invertible and well conditioned */
    for (int t = 0; t < D * D; t++) M[t] = g[t] + (t % (D + 1) == 0 ? 3.0 : 0.0);
    matmul_fd(Y, X, M, CN, D, D);
    for (int t = 0; t < CN * D; t++) Y[t] += 0.5f;
    align_cca c;
    xd_err e;
    TU_OK(align_cca_fit(&c, X, Y, CN, D, D, 0, 0.0, &e));
    assert_int_equal(c.k, D);
    for (int l = 0; l < D; l++) tu_assert_near(c.corr[l], 1.0, 1e-5, "corr of Y = X M");
    /* the defining identities: A^T Cxx A = I, B^T Cyy B = I, A^T Cxy B = diag(corr) */
    double Cxx[D * D], Cyy[D * D], Cxy[D * D], out[D * D];
    cov(Cxx, X, CN, D, X, D);
    cov(Cyy, Y, CN, D, Y, D);
    cov(Cxy, X, CN, D, Y, D);
    sandwich(out, c.a, Cxx, c.a, D, D, D);
    for (int t = 0; t < D * D; t++) tu_assert_near(out[t], t % (D + 1) == 0, 1e-4, "A^T Cxx A");
    sandwich(out, c.b, Cyy, c.b, D, D, D);
    for (int t = 0; t < D * D; t++) tu_assert_near(out[t], t % (D + 1) == 0, 1e-4, "B^T Cyy B");
    sandwich(out, c.a, Cxy, c.b, D, D, D);
    for (int t = 0; t < D * D; t++)
        tu_assert_near(out[t], t % (D + 1) == 0 ? c.corr[t / D] : 0.0, 1e-4, "A^T Cxy B");
    /* the sign convention */
    for (int l = 0; l < D; l++) {
        int arg = 0;
        for (int i = 1; i < D; i++)
            if (fabsf(c.a[i * D + l]) > fabsf(c.a[arg * D + l])) arg = i;
        assert_true(c.a[arg * D + l] > 0.0f);
    }
    /* the regression map through all pairs reproduces Y */
    align_map m;
    TU_OK(align_cca_regression_map(&m, &c, D, &e));
    align_map_apply(pred, X, &m, CN);
    tu_assert_close(pred, Y, CN * D, 1e-3, 1e-3, "CCA regression of Y = X M + 0.5");
    align_map_free(&m);
    align_cca_free(&c);
}

/* Only the first pair is related: corr_0 near its population value, the rest small. */
static void test_cca_partial_and_independent(void **state)
{
    (void)state;
    enum { N = 2000, DX = 4, DY = 3 };
    static float X[N * DX], Y[N * DY], noise[N], ZX[N * 2], ZY[N * 2];
    fill_normal(X, N * DX, 30);
    fill_normal(Y, N * DY, 31);
    align_cca c;
    align_map px, py;
    xd_err e;
    /* independent: every sample canonical correlation is small (~ (sqrt 4 + sqrt 3) / sqrt N) */
    TU_OK(align_cca_fit(&c, X, Y, N, DX, DY, 0, 0.0, &e));
    assert_int_equal(c.k, DY);
    for (int l = 0; l < DY; l++) {
        assert_true(c.corr[l] >= 0.0f && c.corr[l] < 0.15f);
        if (l) assert_true(c.corr[l] <= c.corr[l - 1]);
    }
    align_cca_free(&c);
    /* Y1 = X2 + 0.5 noise: population correlation 1 / sqrt(1.25) */
    fill_normal(noise, N, 32);
    for (int i = 0; i < N; i++) Y[i * DY + 1] = X[i * DX + 2] + 0.5f * noise[i];
    TU_OK(align_cca_fit(&c, X, Y, N, DX, DY, 2, 0.0, &e));
    assert_int_equal(c.k, 2);
    tu_assert_near(c.corr[0], 1.0 / sqrt(1.25), 0.02, "related pair");
    assert_true(c.corr[1] < 0.15f);
    /* the first directions pick the related columns */
    for (int i = 0; i < DX; i++)
        if (i != 2) assert_true(fabsf(c.a[i * 2]) < 0.1f * fabsf(c.a[2 * 2]));
    for (int i = 0; i < DY; i++)
        if (i != 1) assert_true(fabsf(c.b[i * 2]) < 0.1f * fabsf(c.b[1 * 2]));
    /* projection maps give canonical variates: unit variance, pair correlation = corr */
    TU_OK(align_cca_project_map(&px, &c, ALIGN_SIDE_X, 2, &e));
    TU_OK(align_cca_project_map(&py, &c, ALIGN_SIDE_Y, 2, &e));
    align_map_apply(ZX, X, &px, N);
    align_map_apply(ZY, Y, &py, N);
    for (int l = 0; l < 2; l++) {
        double sx = 0.0, sy = 0.0, mx = 0.0, vx = 0.0, vy = 0.0, cxy = 0.0;
        for (int i = 0; i < N; i++) {
            sx += ZX[i * 2 + l];
            sy += ZY[i * 2 + l];
        }
        mx = sx / N;
        tu_assert_near(mx, 0.0, 1e-4, "variate mean");
        tu_assert_near(sy / N, 0.0, 1e-4, "variate mean of Y");
        for (int i = 0; i < N; i++) {
            vx += ZX[i * 2 + l] * (double)ZX[i * 2 + l];
            vy += ZY[i * 2 + l] * (double)ZY[i * 2 + l];
            cxy += ZX[i * 2 + l] * (double)ZY[i * 2 + l];
        }
        tu_assert_near(vx / (N - 1), 1.0, 1e-4, "variance of X variate");
        tu_assert_near(vy / (N - 1), 1.0, 1e-4, "variance of Y variate");
        tu_assert_near(cxy / (N - 1), c.corr[l], 1e-4, "variate correlation");
    }
    align_map_free(&px);
    assert_int_equal(align_cca_project_map(&px, &c, ALIGN_SIDE_X, 3, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "pairs 1..2");
    align_map_free(&py);
    align_cca_free(&c);
}

/* Solves A x = b (d <= 8) by Gaussian elimination with partial pivoting, in place. */
static void gauss_solve(double *A, double *b, int d, int nrhs)
{
    for (int c = 0; c < d; c++) {
        int p = c;
        for (int r = c + 1; r < d; r++)
            if (fabs(A[r * d + c]) > fabs(A[p * d + c])) p = r;
        for (int j = 0; j < d; j++) {
            double t = A[c * d + j];
            A[c * d + j] = A[p * d + j];
            A[p * d + j] = t;
        }
        for (int j = 0; j < nrhs; j++) {
            double t = b[c * nrhs + j];
            b[c * nrhs + j] = b[p * nrhs + j];
            b[p * nrhs + j] = t;
        }
        for (int r = 0; r < d; r++) {
            if (r == c) continue;
            double f = A[r * d + c] / A[c * d + c];
            for (int j = 0; j < d; j++) A[r * d + j] -= f * A[c * d + j];
            for (int j = 0; j < nrhs; j++) b[r * nrhs + j] -= f * b[c * nrhs + j];
        }
    }
    for (int r = 0; r < d; r++)
        for (int j = 0; j < nrhs; j++) b[r * nrhs + j] /= A[r * d + r];
}

/* With a ridge: the full-rank regression map is ridge regression (Cxx + rI)^-1 Cxy, the
 * correlations shrink, and fewer pairs than dimensions are fine. */
static void test_cca_ridge(void **state)
{
    (void)state;
    enum { N = 30, DX = 3, DY = 2 };
    float X[N * DX], Y[N * DY];
    fill_normal(X, N * DX, 40);
    fill_normal(Y, N * DY, 41);
    for (int i = 0; i < N; i++) Y[i * DY] += X[i * DX] - 0.5f * X[i * DX + 1];
    const double r = 0.2;
    align_cca c0, c;
    align_map m;
    xd_err e;
    TU_OK(align_cca_fit(&c0, X, Y, N, DX, DY, 0, 0.0, &e));
    TU_OK(align_cca_fit(&c, X, Y, N, DX, DY, 0, r, &e));
    for (int l = 0; l < DY; l++) assert_true(c.corr[l] < c0.corr[l]);
    TU_OK(align_cca_regression_map(&m, &c, DY, &e));
    double Cxx[DX * DX], Cxy[DX * DY];
    cov(Cxx, X, N, DX, X, DX);
    cov(Cxy, X, N, DX, Y, DY);
    for (int i = 0; i < DX; i++) Cxx[i * DX + i] += r;
    gauss_solve(Cxx, Cxy, DX, DY);
    for (int t = 0; t < DX * DY; t++) tu_assert_near(m.w[t], Cxy[t], 1e-5, "ridge regression W");
    align_map_free(&m);
    align_cca_free(&c0);
    align_cca_free(&c);
    /* n < dims is fine with a ridge */
    TU_OK(align_cca_fit(&c, X, Y, 2, DX, DY, 0, 0.1, &e));
    for (int l = 0; l < DY; l++) assert_true(isfinite(c.corr[l]) && c.corr[l] < 1.0f);
    align_cca_free(&c);
}

static void test_cca_bad_inputs(void **state)
{
    (void)state;
    enum { N = 20, DX = 3, DY = 4 };
    float X[N * DX], Y[N * DY];
    fill_normal(X, N * DX, 50);
    fill_normal(Y, N * DY, 51);
    align_cca c;
    align_map m;
    xd_err e;
    assert_int_equal(align_cca_fit(&c, X, Y, 4, DX, DY, 0, 0.0, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "more pairs than dimensions");
    assert_int_equal(align_cca_fit(&c, X, Y, 1, DX, DY, 0, 0.5, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "at least 2");
    assert_int_equal(align_cca_fit(&c, X, Y, N, DX, DY, 4, 0.0, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "k = 4");
    assert_int_equal(align_cca_fit(&c, X, Y, N, DX, DY, 0, -1.0, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "ridge");
    Y[3 * DY + 2] = NAN;
    assert_int_equal(align_cca_fit(&c, X, Y, N, DX, DY, 0, 0.0, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "Y[3][2]");
    for (int i = 0; i < N; i++) Y[i * DY + 2] = -7.0f;
    assert_int_equal(align_cca_fit(&c, X, Y, N, DX, DY, 0, 0.0, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "Y column 2 has zero variance");
    assert_null(c.a);
    /* a ridge makes the same data well posed */
    TU_OK(align_cca_fit(&c, X, Y, N, DX, DY, 0, 0.1, &e));
    align_cca_free(&c);
    fill_normal(Y, N * DY, 51);
    for (int i = 0; i < N; i++) X[i * DX + 2] = X[i * DX] - 2.0f * X[i * DX + 1];
    assert_int_equal(align_cca_fit(&c, X, Y, N, DX, DY, 0, 0.0, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "covariance of X is not positive definite: column 2");
    /* maps of an unfitted CCA */
    assert_int_equal(align_cca_regression_map(&m, &c, 1, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "not been fitted");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_procrustes_recovers_rotation),
        cmocka_unit_test(test_procrustes_center_scale),
        cmocka_unit_test(test_procrustes_semi_orthogonal),
        cmocka_unit_test(test_procrustes_is_optimal),
        cmocka_unit_test(test_procrustes_bad_inputs),
        cmocka_unit_test(test_map_init_linear),
        cmocka_unit_test(test_cca_invertible_map),
        cmocka_unit_test(test_cca_partial_and_independent),
        cmocka_unit_test(test_cca_ridge),
        cmocka_unit_test(test_cca_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
