/* align/: closed-form maps (Procrustes and CCA recovering known maps, their defining identities,
 * bad inputs), writing a map into a model's linear node, contrastive (CLIP) loss values computed
 * independently here in double and its gradients against central finite differences, label-space
 * maps, and dense targets on a hand-made 8x8 scene fed to distill's per-row soft CE. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/clip.h"
#include "align/densemap.h"
#include "align/labelmap.h"
#include "align/linmap.h"
#include "core/mem.h"
#include "core/rng.h"
#include "distill/kd.h"
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

static void assert_near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.9g, want %.9g (tol %.3g)", what, got, want, tol);
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
    for (int t = 0; t < PD * PD; t++) assert_near(m.w[t], Q[t], 1e-4, "W vs Q");
    for (int j = 0; j < PD; j++) assert_true(m.b[j] == 0.0f);
    assert_int_equal(info.rank, PD);
    assert_near(info.scale, 1.0, 0.0, "scale without scaling");
    assert_true(info.resid < 1e-5);
    /* W^T W = I */
    for (int a = 0; a < PD; a++)
        for (int b = 0; b < PD; b++) {
            double s = 0.0;
            for (int r = 0; r < PD; r++) s += (double)m.w[r * PD + a] * m.w[r * PD + b];
            assert_near(s, a == b, 1e-5, "W^T W");
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
    assert_near(info.scale, 2.5, 1e-5, "scale");
    for (int t = 0; t < PD * PD; t++) assert_near(m.w[t], 2.5 * Q[t], 2.5e-4, "W = s Q");
    for (int j = 0; j < PD; j++) assert_near(m.b[j], c[j], 1e-4, "bias");
    assert_true(info.resid < 1e-5);
    /* the map reproduces Y */
    float out[PN * PD];
    align_map_apply(out, X, &m, PN);
    tu_assert_close(out, Y, PN * PD, 1e-4, 1e-4, "X W + b");
    align_map_free(&m);
    /* centring alone cannot find the scale: the rotation is still right, the residual is not 0 */
    o.scale = 0;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, PD, &o, &info, &e));
    for (int t = 0; t < PD * PD; t++) assert_near(m.w[t], Q[t], 1e-4, "W with centring only");
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
            assert_near(s, a == b, 1e-5, "W^T W (closed form)");
        }
    align_map_free(&m);
    align_procrustes_opts ref = {.center = 0, .scale = 0, .refine = 500};
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, DS, &ref, &info, &e));
    for (int t = 0; t < PD * DS; t++) assert_near(m.w[t], Qc[t], 1e-4, "W (6 -> 4, refined)");
    assert_true(info.resid < 1e-5 && info.iters > 0 && info.iters < 500);
    align_map_free(&m);
    /* refined with centring and scale on shifted, scaled data */
    for (int t = 0; t < PN * DS; t++) Y[t] = 0.5f * Y[t] - 2.0f;
    ref.center = ref.scale = 1;
    TU_OK(align_procrustes_fit(&m, X, Y, PN, PD, DS, &ref, &info, &e));
    for (int t = 0; t < PD * DS; t++)
        assert_near(m.w[t], 0.5 * Qc[t], 1e-4, "W (refined, s = 0.5)");
    assert_near(info.scale, 0.5, 1e-5, "refined scale");
    assert_true(info.resid < 1e-5);
    align_map_free(&m);
    /* 4 -> 6 */
    for (int i = 0; i < PN; i++)
        for (int j = 0; j < DS; j++) Xs[i * DS + j] = X[i * PD + j];
    matmul_fd(Y, Xs, Qr, PN, DS, PD);
    TU_OK(align_procrustes_fit(&m, Xs, Y, PN, DS, PD, NULL, &info, &e));
    for (int t = 0; t < DS * PD; t++) assert_near(m.w[t], Qr[t], 1e-4, "W (4 -> 6)");
    for (int a = 0; a < DS; a++)
        for (int b = 0; b < DS; b++) {
            double s = 0.0;
            for (int j = 0; j < PD; j++) s += (double)m.w[a * PD + j] * m.w[b * PD + j];
            assert_near(s, a == b, 1e-5, "W W^T");
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
    for (int l = 0; l < D; l++) assert_near(c.corr[l], 1.0, 1e-5, "corr of Y = X M");
    /* the defining identities: A^T Cxx A = I, B^T Cyy B = I, A^T Cxy B = diag(corr) */
    double Cxx[D * D], Cyy[D * D], Cxy[D * D], out[D * D];
    cov(Cxx, X, CN, D, X, D);
    cov(Cyy, Y, CN, D, Y, D);
    cov(Cxy, X, CN, D, Y, D);
    sandwich(out, c.a, Cxx, c.a, D, D, D);
    for (int t = 0; t < D * D; t++) assert_near(out[t], t % (D + 1) == 0, 1e-4, "A^T Cxx A");
    sandwich(out, c.b, Cyy, c.b, D, D, D);
    for (int t = 0; t < D * D; t++) assert_near(out[t], t % (D + 1) == 0, 1e-4, "B^T Cyy B");
    sandwich(out, c.a, Cxy, c.b, D, D, D);
    for (int t = 0; t < D * D; t++)
        assert_near(out[t], t % (D + 1) == 0 ? c.corr[t / D] : 0.0, 1e-4, "A^T Cxy B");
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
    assert_near(c.corr[0], 1.0 / sqrt(1.25), 0.02, "related pair");
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
        assert_near(mx, 0.0, 1e-4, "variate mean");
        assert_near(sy / N, 0.0, 1e-4, "variate mean of Y");
        for (int i = 0; i < N; i++) {
            vx += ZX[i * 2 + l] * (double)ZX[i * 2 + l];
            vy += ZY[i * 2 + l] * (double)ZY[i * 2 + l];
            cxy += ZX[i * 2 + l] * (double)ZY[i * 2 + l];
        }
        assert_near(vx / (N - 1), 1.0, 1e-4, "variance of X variate");
        assert_near(vy / (N - 1), 1.0, 1e-4, "variance of Y variate");
        assert_near(cxy / (N - 1), c.corr[l], 1e-4, "variate correlation");
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
    for (int t = 0; t < DX * DY; t++) assert_near(m.w[t], Cxy[t], 1e-5, "ridge regression W");
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

/* ---------------------------------------------------------------------------------------------
 * contrastive (CLIP) loss */

/* independent reference: L = (1/2B) sum_i [-log softmax_j(z_i.)_i - log softmax_i(z_.i)_i] */
static double clip_ref(const float *a, const float *b, int B, int D, double theta)
{
    double an[64], bn[64], z[64];
    for (int i = 0; i < B; i++) {
        double na = 0.0, nb = 0.0;
        for (int d = 0; d < D; d++) {
            na += (double)a[i * D + d] * a[i * D + d];
            nb += (double)b[i * D + d] * b[i * D + d];
        }
        for (int d = 0; d < D; d++) {
            an[i * D + d] = a[i * D + d] / sqrt(na);
            bn[i * D + d] = b[i * D + d] / sqrt(nb);
        }
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double s = 0.0;
            for (int d = 0; d < D; d++) s += an[i * D + d] * bn[j * D + d];
            z[i * B + j] = exp(theta) * s;
        }
    double L = 0.0;
    for (int i = 0; i < B; i++) {
        double row = 0.0, col = 0.0;
        for (int j = 0; j < B; j++) {
            row += exp(z[i * B + j]);
            col += exp(z[j * B + i]);
        }
        L += -log(exp(z[i * B + i]) / row) - log(exp(z[i * B + i]) / col);
    }
    return L / (2.0 * B);
}

static void test_clip_values(void **state)
{
    (void)state;
    double save[64];
    /* by hand: a = b = I (2 x 2), s = 1: z = I, each of the four CEs is log(1 + e^-1) */
    const float I2[4] = {1, 0, 0, 1};
    assert_true(align_clip_save_len(2, 2) <= 64);
    assert_near(align_clip_forward(save, I2, I2, 2, 2, 0.0f), 0.31326168751822286, 1e-15,
                "identity");
    /* same, rows scaled (normalisation) and tau = 0.5 (s = 2): log(1 + e^-2) */
    const float a2[4] = {3, 0, 0, 0.25f};
    assert_near(align_clip_forward(save, a2, I2, 2, 2, (float)align_clip_theta(0.5)),
                0.12692801104297263, 1e-7, "tau 0.5");
    /* an asymmetric 3 x 2 case against the independent reference */
    const float a[6] = {1, 2, -1, 0.5f, 0.3f, -2}, b[6] = {0.5f, 1, 2, -1, 1, 1};
    assert_true(align_clip_save_len(3, 2) <= 64);
    const float th = 1.3f;
    double L = align_clip_forward(save, a, b, 3, 2, th);
    assert_near(L, clip_ref(a, b, 3, 2, th), 1e-12, "3 x 2 case");
    /* symmetric in a and b */
    assert_near(align_clip_forward(save, b, a, 3, 2, th), L, 1e-12, "swap a, b");
    /* one pair is zero loss */
    assert_near(align_clip_forward(save, a, b, 1, 2, th), 0.0, 0.0, "B = 1");
}

typedef struct {
    float *a, *b, *theta;
    int B, D;
    double *save;
} clip_ctx;

static double clip_loss(void *p)
{
    clip_ctx *c = p;
    return align_clip_forward(c->save, c->a, c->b, c->B, c->D, *c->theta);
}

static void test_clip_fd(void **state)
{
    (void)state;
    enum { B = 5, D = 4 };
    float a[B * D], b[B * D];
    tu_fill_uniform(a, B * D, -1.0f, 1.0f, 60);
    tu_fill_uniform(b, B * D, -1.0f, 1.0f, 61);
    for (int t = 0; t < B * D; t++) b[t] += 0.5f * a[t]; /* partly aligned pairs */
    double *save = xd_xmalloc(align_clip_save_len(B, D) * sizeof(double));
    const float thetas[2] = {0.5f, (float)ALIGN_CLIP_THETA_INIT};
    for (int k = 0; k < 2; k++) {
        float theta = thetas[k], da[B * D] = {0}, db[B * D] = {0}, dth = 0.0f;
        clip_ctx c = {a, b, &theta, B, D, save};
        align_clip_forward(save, a, b, B, D, theta);
        align_clip_backward(da, db, &dth, save, B, D, 1.0f);
        tu_check_grad("clip da", a, B * D, da, clip_loss, &c, 1e-3, 1e-3, 1e-6);
        tu_check_grad("clip db", b, B * D, db, clip_loss, &c, 1e-3, 1e-3, 1e-6);
        tu_check_grad("clip dtheta", &theta, 1, &dth, clip_loss, &c, 1e-3, 1e-3, 1e-6);
        /* the gradient of a normalised row is orthogonal to the row */
        for (int i = 0; i < B; i++) {
            double s = 0.0;
            for (int d = 0; d < D; d++) s += (double)da[i * D + d] * a[i * D + d];
            assert_near(s, 0.0, 1e-6, "a_i . da_i");
        }
        /* backward adds weight * gradient; NULL outputs are skipped (forward again: the checks
         * above left the save buffer at a perturbed input) */
        align_clip_forward(save, a, b, B, D, theta);
        float acc[B * D], th2 = 1.0f;
        for (int t = 0; t < B * D; t++) acc[t] = 1.0f;
        align_clip_backward(acc, NULL, &th2, save, B, D, 0.5f);
        for (int t = 0; t < B * D; t++) assert_near(acc[t], 1.0 + 0.5 * da[t], 1e-6, "accumulate");
        assert_near(th2, 1.0 + 0.5 * dth, 1e-6, "accumulate dtheta");
    }
    free(save);
}

static void test_clip_edges(void **state)
{
    (void)state;
    enum { B = 3, D = 3 };
    double save[64];
    float a[B * D] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, da[B * D] = {0}, db[B * D] = {0}, dth = 0.0f;
    /* aligned pairs at CLIP's largest scale: loss near 0 */
    assert_true(align_clip_forward(save, a, a, B, D, (float)ALIGN_CLIP_THETA_MAX) < 1e-6);
    /* a zero row stays finite, in value and gradient */
    float z[B * D] = {0, 0, 0, 0, 1, 0, 1, 1, 0};
    double L = align_clip_forward(save, z, a, B, D, 1.0f);
    assert_true(isfinite(L));
    align_clip_backward(da, db, &dth, save, B, D, 1.0f);
    for (int t = 0; t < B * D; t++) assert_true(isfinite(da[t]) && isfinite(db[t]));
    assert_true(isfinite(dth));
    /* clamp */
    float t1 = 10.0f, t2 = -1.0f, t3 = NAN, t4 = 2.0f;
    align_clip_clamp_theta(&t1);
    align_clip_clamp_theta(&t2);
    align_clip_clamp_theta(&t3);
    align_clip_clamp_theta(&t4);
    assert_near(t1, log(100.0), 1e-6, "clamp high");
    assert_true(t2 == 0.0f && t3 == 0.0f && t4 == 2.0f);
    assert_near(align_clip_theta(0.07), ALIGN_CLIP_THETA_INIT, 1e-12, "theta(0.07)");
}

/* ---------------------------------------------------------------------------------------------
 * label maps */

static void test_labelmap_table(void **state)
{
    (void)state;
    /* five subgroups -> two groups */
    const int32_t table[5] = {0, 0, 1, 1, 0};
    const float p[2 * 5] = {0.1f, 0.2f, 0.3f, 0.15f, 0.25f, 0.0f, 0.0f, 0.5f, 0.5f, 0.0f};
    const float want[2 * 2] = {0.55f, 0.45f, 0.0f, 1.0f};
    float q[4], qm[4];
    align_labelmap lm, mm;
    xd_err e;
    TU_OK(align_labelmap_from_table(&lm, table, 5, 2, &e));
    align_labelmap_apply(q, p, &lm, 2);
    tu_assert_close(q, want, 4, 1e-6, 1e-7, "q = p M (table)");
    /* the same map as a dense matrix gives the same q */
    TU_OK(align_labelmap_from_matrix(&mm, lm.m, 5, 2, 1e-6f, &e));
    align_labelmap_apply(qm, p, &mm, 2);
    tu_assert_close(qm, want, 4, 1e-6, 1e-7, "q = p M (matrix)");
    /* hard labels */
    const int32_t yt[4] = {4, 2, -1, 9};
    int32_t ys[4];
    TU_OK(align_labelmap_labels(ys, yt, 4, &lm, &e));
    assert_int_equal(ys[0], 0);
    assert_int_equal(ys[1], 1);
    assert_int_equal(ys[2], -1);
    assert_int_equal(ys[3], -1);
    assert_int_equal(align_labelmap_labels(ys, yt, 4, &mm, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "many-to-one");
    align_labelmap_free(&lm);
    align_labelmap_free(&mm);
    /* bad tables */
    const int32_t bad[5] = {0, 1, 1, 7, 0}, neg[2] = {0, -1};
    assert_int_equal(align_labelmap_from_table(&lm, bad, 5, 2, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "table[3] = 7");
    assert_int_equal(align_labelmap_from_table(&lm, neg, 2, 2, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "table[1] = -1");
    assert_int_equal(align_labelmap_from_table(&lm, table, 0, 2, &e), XD_EARG);
    assert_null(lm.m);
}

static void test_labelmap_matrix(void **state)
{
    (void)state;
    /* teacher class 1 is half of each student class */
    float M[3 * 2] = {1, 0, 0.5f, 0.5f, 0, 1};
    const float p[3] = {0.2f, 0.4f, 0.4f}, want[2] = {0.4f, 0.6f};
    float q[2];
    align_labelmap lm;
    xd_err e;
    TU_OK(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e));
    align_labelmap_apply(q, p, &lm, 1);
    tu_assert_close(q, want, 2, 1e-6, 1e-7, "q = p M");
    align_labelmap_free(&lm);
    M[2] = 0.4f; /* row 1 sums to 0.9 */
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "row 1 (teacher class 1) sums to 0.9");
    M[2] = 1.5f;
    M[3] = -0.5f;
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "M[1][1] = -0.5 is negative");
    M[2] = 0.5f;
    M[3] = NAN;
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "M[1][1]");
    M[3] = 0.5f;
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, NAN, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "tolerance");
}

/* ---------------------------------------------------------------------------------------------
 * dense maps */

enum { DH = 8, DW = 8, DK = 2, DK1 = DK + 1 };

/* Two 5x5 windows on an 8x8 canvas overlapping in the 2x2 block x, y in {3, 4}:
 *   A at (0, 0): p = (0.8, 0.2);   B at (3, 3): p = (0.1, 0.9)
 * Foreground (value 200, threshold 25): the 3x3 block x, y in 2..4 (in A, the overlap), the
 * pixel (6, 6) (in B only), the pixel (7, 0) (in no window); value 25 at (0, 0) is not above
 * the threshold, so background. */
static void dense_scene(float *fg, align_box *win, float *probs)
{
    for (int t = 0; t < DH * DW; t++) fg[t] = 0.0f;
    for (int y = 2; y <= 4; y++)
        for (int x = 2; x <= 4; x++) fg[y * DW + x] = 200.0f;
    fg[6 * DW + 6] = 200.0f;
    fg[0 * DW + 7] = 200.0f;
    fg[0] = 25.0f;
    win[0] = (align_box){0, 0, 5, 5};
    win[1] = (align_box){3, 3, 5, 5};
    probs[0] = 0.8f;
    probs[1] = 0.2f;
    probs[2] = 0.1f;
    probs[3] = 0.9f;
}

static const float *px(const float *t, int x, int y) { return t + ((size_t)y * DW + x) * DK1; }

static void test_dense_targets(void **state)
{
    (void)state;
    float fg[DH * DW], probs[2 * DK], t[DH * DW * DK1];
    uint8_t mask[DH * DW];
    align_box win[2];
    dense_scene(fg, win, probs);
    align_dense_opts o = align_dense_default_opts();
    xd_err e;
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e));
    const float bg[DK1] = {0, 0, 1}, inA[DK1] = {0.8f, 0.2f, 0}, inB[DK1] = {0.1f, 0.9f, 0};
    const float both[DK1] = {0.45f, 0.55f, 0}, none[DK1] = {0, 0, 0};
    tu_assert_close(px(t, 0, 0), bg, DK1, 0, 0, "(0,0) at the threshold: background");
    tu_assert_close(px(t, 5, 1), bg, DK1, 0, 0, "(5,1) background");
    tu_assert_close(px(t, 2, 2), inA, DK1, 1e-6, 1e-7, "(2,2) in A");
    tu_assert_close(px(t, 4, 2), inA, DK1, 1e-6, 1e-7, "(4,2) in A");
    tu_assert_close(px(t, 3, 3), both, DK1, 1e-6, 1e-7, "(3,3) in A and B");
    tu_assert_close(px(t, 4, 4), both, DK1, 1e-6, 1e-7, "(4,4) in A and B");
    tu_assert_close(px(t, 6, 6), inB, DK1, 1e-6, 1e-7, "(6,6) in B");
    tu_assert_close(px(t, 7, 0), none, DK1, 0, 0, "(7,0) foreground in no window");
    int masked = 0;
    for (int p = 0; p < DH * DW; p++) {
        masked += mask[p];
        const float *r = t + (size_t)p * DK1;
        double s = (double)r[0] + r[1] + r[2];
        if (mask[p]) assert_near(s, 1.0, 1e-6, "masked-in rows sum to 1");
    }
    assert_int_equal(mask[0 * DW + 7], 0);
    assert_int_equal(masked, DH * DW - 1);

    /* confidence weighting: c_A = 0.8, c_B = 0.9 in the overlap */
    o.weight = ALIGN_DENSE_CONFIDENCE;
    o.min_conf = 0.6f;
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e));
    const float conf[DK1] = {(float)((0.8 * 0.8 + 0.9 * 0.1) / 1.7),
                             (float)((0.8 * 0.2 + 0.9 * 0.9) / 1.7), 0};
    tu_assert_close(px(t, 3, 4), conf, DK1, 1e-6, 1e-7, "(3,4) confidence-weighted");
    tu_assert_close(px(t, 2, 3), inA, DK1, 1e-6, 1e-7, "(2,3) in A only");
    /* top probability 0.5706 < 0.6: the overlap is masked out, A-only pixels (0.8) stay */
    assert_int_equal(mask[3 * DW + 3], 0);
    assert_int_equal(mask[4 * DW + 4], 0);
    assert_int_equal(mask[2 * DW + 2], 1);
    assert_int_equal(mask[6 * DW + 6], 1);
    assert_int_equal(mask[1 * DW + 1], 1); /* background stays certain */

    /* no windows: every foreground pixel is unknown */
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 0, DK, &o, &e));
    assert_int_equal(mask[2 * DW + 2], 0);
    tu_assert_close(px(t, 2, 2), none, DK1, 0, 0, "no windows");
}

static void test_dense_bad_inputs(void **state)
{
    (void)state;
    float fg[DH * DW], probs[2 * DK], t[DH * DW * DK1];
    uint8_t mask[DH * DW];
    align_box win[2];
    dense_scene(fg, win, probs);
    align_dense_opts o = align_dense_default_opts();
    xd_err e;
    win[1] = (align_box){5, 5, 5, 5};
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "window 1 (x=5 y=5 w=5 h=5)");
    win[1] = (align_box){3, 3, 0, 5};
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    win[1] = (align_box){3, 3, 5, 5};
    probs[3] = NAN;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "window 1: probability of class 1");
    probs[3] = 0.4f;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "window 1: probabilities sum to 0.5");
    probs[2] = -0.1f;
    probs[3] = 1.1f;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "negative");
    probs[2] = 0.1f;
    probs[3] = 0.9f;
    fg[5 * DW + 2] = NAN;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "(x=2, y=5)");
    fg[5 * DW + 2] = 0.0f;
    o.min_conf = 1.5f;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "min_conf");
    /* config words */
    align_dense_weight w;
    TU_OK(align_dense_weight_parse("confidence", &w, &e));
    assert_int_equal(w, ALIGN_DENSE_CONFIDENCE);
    assert_int_equal(align_dense_weight_parse("confident", &w, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'confident'");
}

static void test_dense_grid_crop(void **state)
{
    (void)state;
    align_box b[32];
    /* 64 wide, 28 windows, stride 12: offsets 0 12 24 36 */
    assert_int_equal(align_dense_grid(NULL, 0, 64, 64, 28, 28, 12), 16);
    assert_int_equal(align_dense_grid(b, 32, 64, 64, 28, 28, 12), 16);
    assert_int_equal(b[3].x, 36);
    assert_int_equal(b[3].y, 0);
    assert_int_equal(b[15].x, 36);
    assert_int_equal(b[15].y, 36);
    /* stride 20: 0 20, then 36 flush with the edge */
    assert_int_equal(align_dense_grid(b, 32, 64, 64, 28, 28, 20), 9);
    assert_int_equal(b[1].x, 20);
    assert_int_equal(b[2].x, 36);
    assert_int_equal(b[8].y, 36);
    assert_true(b[8].w == 28 && b[8].h == 28);
    /* a window as big as the canvas, a window too big, a bad stride */
    assert_int_equal(align_dense_grid(b, 32, 28, 28, 28, 28, 5), 1);
    assert_int_equal(align_dense_grid(b, 32, 20, 64, 28, 28, 5), -1);
    assert_int_equal(align_dense_grid(b, 32, 64, 64, 28, 28, 0), -1);
    /* cap smaller than the count: only cap written, full count returned */
    b[2].x = -5;
    assert_int_equal(align_dense_grid(b, 2, 64, 64, 28, 28, 20), 9);
    assert_int_equal(b[2].x, -5);
    /* crop of a 2-channel 4x5 image */
    float img[4 * 5 * 2], out[2 * 3 * 2];
    for (int t = 0; t < 40; t++) img[t] = (float)t;
    xd_err e;
    TU_OK(align_dense_crop(out, img, 4, 5, 2, (align_box){2, 1, 3, 2}, &e));
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++)
            for (int ch = 0; ch < 2; ch++)
                assert_true(out[(r * 3 + c) * 2 + ch] == img[((1 + r) * 5 + 2 + c) * 2 + ch]);
    assert_int_equal(align_dense_crop(out, img, 4, 5, 2, (align_box){3, 1, 3, 2}, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "does not fit the 5x4 image");
}

/* The per-pixel loss is distill's soft CE with rows = pixels and the dense mask: zero logits give
 * log(K+1) on every masked-in pixel, and no gradient reaches masked-out pixels. */
static void test_dense_targets_with_soft_ce(void **state)
{
    (void)state;
    float fg[DH * DW], probs[2 * DK], t[DH * DW * DK1], s[DH * DW * DK1] = {0};
    float p[DH * DW * DK1], ds[DH * DW * DK1] = {0};
    uint8_t mask[DH * DW];
    align_box win[2];
    dense_scene(fg, win, probs);
    align_dense_opts o = align_dense_default_opts();
    xd_err e;
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e));
    assert_near(kd_soft_ce_forward(p, s, t, mask, DH * DW, DK1), log(3.0), 1e-6, "zero logits");
    kd_soft_ce_backward(ds, p, t, mask, DH * DW, DK1, 1.0f);
    const float *d7 = ds + (size_t)(0 * DW + 7) * DK1;
    assert_true(d7[0] == 0.0f && d7[1] == 0.0f && d7[2] == 0.0f);
    /* a background pixel: gradient (1/3 - onehot) / M */
    const int M = DH * DW - 1;
    const float *d1 = ds + (size_t)(1 * DW + 1) * DK1;
    assert_near(d1[2], (1.0 / 3 - 1.0) / M, 1e-7, "background pixel gradient");
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
        cmocka_unit_test(test_clip_values),
        cmocka_unit_test(test_clip_fd),
        cmocka_unit_test(test_clip_edges),
        cmocka_unit_test(test_labelmap_table),
        cmocka_unit_test(test_labelmap_matrix),
        cmocka_unit_test(test_dense_targets),
        cmocka_unit_test(test_dense_bad_inputs),
        cmocka_unit_test(test_dense_grid_crop),
        cmocka_unit_test(test_dense_targets_with_soft_ce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
