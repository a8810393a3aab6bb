/* Closed-form linear maps (see linmap.h): Procrustes and CCA, computed in double with LAPACK's
 * SVD and Cholesky from OpenBLAS, stored in float. Matrices here are row-major; LAPACK's are
 * column-major, so each call copies its input across and its output back (the matrices are
 * feature-by-feature, small next to the n x d data). */
#include "align/linmap.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "nn/gemm.h"

/* LAPACK (Fortran, LP64) from OpenBLAS; the trailing size_t are the hidden lengths of the
 * character arguments that gfortran passes. */
void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info, size_t ljobu, size_t ljobvt);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t luplo);
void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
            double *work, const int *lwork, int *info, size_t ljobz, size_t luplo);

/* Procrustes: singular values of X^T Y below this fraction of the largest are at the level of
 * float rounding of the data (2^-24 = 6e-8), so the direction they belong to is not determined */
#define SVD_RANK_TOL 1e-7
/* CCA: a Cholesky pivot below this fraction of its diagonal entry means the column is a linear
 * combination of the earlier ones up to 1e-5 of its standard deviation (float data cannot tell
 * that apart from exact collinearity); dpotrf alone only catches pivots that reach zero */
#define CHOL_PIVOT_TOL 1e-10

void align_map_free(align_map *m)
{
    if (!m) return;
    free(m->w);
    free(m->b);
    m->w = m->b = NULL;
    m->din = m->dout = 0;
}

static void map_alloc(align_map *m, int din, int dout)
{
    m->din = din;
    m->dout = dout;
    m->w = xd_xcalloc((size_t)din * dout, sizeof(float));
    m->b = xd_xcalloc((size_t)dout, sizeof(float));
}

/* out = x W + b: one float GEMM, then the bias */
void align_map_apply(float *out, const float *x, const align_map *m, int n)
{
    if (n <= 0) return;
    nn_sgemm(0, 0, n, m->dout, m->din, 1.0f, x, m->din, m->w, m->dout, 0.0f, out, m->dout);
#pragma omp parallel for
    for (int i = 0; i < n; i++)
        for (int o = 0; o < m->dout; o++) out[(size_t)i * m->dout + o] += m->b[o];
}

/* weight (OC, C) = W^T, bias = b */
xd_status align_map_init_linear(nn_model *m, const char *node, const align_map *map, xd_err *e)
{
    int idx = nn_model_find(m, node);
    if (idx < 0) return xd_fail(e, XD_EARG, "align: the model has no node '%s'", node);
    const nn_node *nd = nn_model_node(m, idx);
    int conv1x1 = nd->kind == NN_CONV2D && nd->k == 1 && nd->stride == 1 && nd->pad == 0;
    if (nd->kind != NN_LINEAR && !conv1x1)
        return xd_fail(e, XD_EARG,
                       "align: node '%s' is a %s; a map can initialise a linear or a 1x1 conv2d "
                       "(stride 1, no padding)",
                       node, nn_kind_name(nd->kind));
    if (nd->ic != map->din || nd->units != map->dout)
        return xd_fail(e, XD_ESHAPE, "align: node '%s' maps %d -> %d features, the map %d -> %d",
                       node, nd->ic, nd->units, map->din, map->dout);
    if (nd->b_n == 0)
        for (int o = 0; o < map->dout; o++)
            if (map->b[o] != 0.0f)
                return xd_fail(e, XD_EARG,
                               "align: node '%s' has no bias but the map has an offset (b[%d] = "
                               "%g); fit without centring or give the node a bias",
                               node, o, (double)map->b[o]);
    float *w = m->param + nd->w_off;
    for (int o = 0; o < map->dout; o++)
        for (int i = 0; i < map->din; i++)
            w[(size_t)o * map->din + i] = map->w[(size_t)i * map->dout + o];
    if (nd->b_n) memcpy(m->param + nd->b_off, map->b, (size_t)map->dout * sizeof(float));
    return XD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * shared pieces */

static xd_status check_finite(const float *x, int n, int d, const char *what, const char *fit,
                              xd_err *e)
{
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(x[i]))
            return xd_fail(e, XD_ENUM, "%s: %s[%zu][%zu] = %g is not finite", fit, what,
                           i / (size_t)d, i % (size_t)d, (double)x[i]);
    return XD_OK;
}

static xd_status check_args(const float *X, const float *Y, int n, int dx, int dy,
                            const char *fit, xd_err *e)
{
    if (!X || !Y) return xd_fail(e, XD_EARG, "%s: no data (X or Y is NULL)", fit);
    if (n < 1 || dx < 1 || dy < 1)
        return xd_fail(e, XD_EARG, "%s: sizes n = %d, dx = %d, dy = %d must be positive", fit, n,
                       dx, dy);
    if (dx > ALIGN_MAX_DIM || dy > ALIGN_MAX_DIM)
        return xd_fail(e, XD_EARG, "%s: dx = %d, dy = %d: at most %d features per side", fit, dx,
                       dy, ALIGN_MAX_DIM);
    size_t cells;
    if (xd_mul_size((size_t)n, (size_t)dx + dy, &cells) ||
        xd_mul_size(cells, sizeof(double), &cells))
        return xd_fail(e, XD_EARG, "%s: %d x %d features are too many", fit, n, dx + dy);
    xd_status s = check_finite(X, n, dx, "X", fit, e);
    return s != XD_OK ? s : check_finite(Y, n, dy, "Y", fit, e);
}

/* Z = [X - mx | Y - my] (n, d = dx + dy) and C = Z^T Z (d, d), in double. With center == 0 the
 * means are still returned but not subtracted. */
static double *joint_moments(const float *X, const float *Y, int n, int dx, int dy, int center,
                             double *mx, double *my)
{
    const int d = dx + dy;
    for (int j = 0; j < dx; j++) mx[j] = 0.0;
    for (int j = 0; j < dy; j++) my[j] = 0.0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < dx; j++) mx[j] += X[(size_t)i * dx + j];
        for (int j = 0; j < dy; j++) my[j] += Y[(size_t)i * dy + j];
    }
    for (int j = 0; j < dx; j++) mx[j] /= n;
    for (int j = 0; j < dy; j++) my[j] /= n;
    double *Z = xd_xmalloc((size_t)n * d * sizeof(double));
#pragma omp parallel for
    for (int i = 0; i < n; i++) {
        double *z = Z + (size_t)i * d;
        for (int j = 0; j < dx; j++) z[j] = X[(size_t)i * dx + j] - (center ? mx[j] : 0.0);
        for (int j = 0; j < dy; j++) z[dx + j] = Y[(size_t)i * dy + j] - (center ? my[j] : 0.0);
    }
    double *C = xd_xmalloc((size_t)d * d * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, n, 1.0, Z, d, Z, d, 0.0, C, d);
    free(Z);
    return C;
}

/* First column (of X, then of Y) whose diagonal entry in C is zero: writes "X column 3" into buf,
 * or returns 0 when there is none. */
static int zero_variance_column(const double *C, int dx, int dy, char *buf, size_t cap)
{
    const int d = dx + dy;
    for (int j = 0; j < d; j++)
        if (!(C[(size_t)j * d + j] > 0.0)) {
            snprintf(buf, cap, "%s column %d", j < dx ? "X" : "Y", j < dx ? j : j - dx);
            return 1;
        }
    return 0;
}

/* Thin SVD of row-major M (m, n) = U diag(S) Vt: U (m, k), S (k), Vt (k, n), k = min(m, n).
 * Returns LAPACK's info (0 = converged). */
static int svd_thin(const double *M, int m, int n, double *U, double *S, double *Vt)
{
    const int k = m < n ? m : n;
    double *a = xd_xmalloc((size_t)m * n * sizeof(double));
    double *uc = xd_xmalloc((size_t)m * k * sizeof(double));
    double *vc = xd_xmalloc((size_t)k * n * sizeof(double));
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) a[i + (size_t)j * m] = M[(size_t)i * n + j];
    int info = 0, lwork = -1;
    double wq = 0.0;
    dgesvd_("S", "S", &m, &n, a, &m, S, uc, &m, vc, &k, &wq, &lwork, &info, 1, 1);
    if (info == 0) {
        lwork = (int)wq;
        double *work = xd_xmalloc((size_t)lwork * sizeof(double));
        dgesvd_("S", "S", &m, &n, a, &m, S, uc, &m, vc, &k, work, &lwork, &info, 1, 1);
        free(work);
    }
    for (int i = 0; i < m; i++)
        for (int l = 0; l < k; l++) U[(size_t)i * k + l] = uc[i + (size_t)l * m];
    for (int l = 0; l < k; l++)
        for (int j = 0; j < n; j++) Vt[(size_t)l * n + j] = vc[l + (size_t)j * k];
    free(a);
    free(uc);
    free(vc);
    return info;
}

/* A = L L^T for symmetric positive definite A (d, d): L written row-major lower into L.
 * Returns 0, or the 1-based index of the first column whose pivot is not positive or is below
 * CHOL_PIVOT_TOL of its diagonal entry. */
static int cholesky(const double *A, int d, double *L)
{
    double *a = xd_xmalloc((size_t)d * d * sizeof(double));
    memcpy(a, A, (size_t)d * d * sizeof(double)); /* symmetric: row- and column-major agree */
    int info = 0;
    dpotrf_("L", &d, a, &d, &info, 1);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) L[(size_t)i * d + j] = j <= i ? a[i + (size_t)j * d] : 0.0;
    free(a);
    if (info == 0)
        for (int j = 0; j < d; j++) {
            const double piv = L[(size_t)j * d + j] * L[(size_t)j * d + j];
            if (!(piv > CHOL_PIVOT_TOL * A[(size_t)j * d + j])) return j + 1;
        }
    return info;
}

/* B <- L^-1 B for lower-triangular L (d, d) and B (d, m): forward substitution by rows */
static void solve_lower(const double *L, int d, double *B, int m)
{
    for (int i = 0; i < d; i++) {
        double *bi = B + (size_t)i * m;
        for (int j = 0; j < i; j++) {
            const double l = L[(size_t)i * d + j], *bj = B + (size_t)j * m;
            for (int c = 0; c < m; c++) bi[c] -= l * bj[c];
        }
        for (int c = 0; c < m; c++) bi[c] /= L[(size_t)i * d + i];
    }
}

/* B <- L^-T B for lower-triangular L (d, d) and B (d, m): back substitution by rows */
static void solve_lower_t(const double *L, int d, double *B, int m)
{
    for (int i = d - 1; i >= 0; i--) {
        double *bi = B + (size_t)i * m;
        for (int j = i + 1; j < d; j++) {
            const double l = L[(size_t)j * d + i], *bj = B + (size_t)j * m;
            for (int c = 0; c < m; c++) bi[c] -= l * bj[c];
        }
        for (int c = 0; c < m; c++) bi[c] /= L[(size_t)i * d + i];
    }
}

/* ---------------------------------------------------------------------------------------------
 * Procrustes */

/* Largest eigenvalue of symmetric A (d, d). */
static double max_eigenvalue(const double *A, int d)
{
    double *a = xd_xmalloc((size_t)d * d * sizeof(double));
    double *w = xd_xmalloc((size_t)d * sizeof(double));
    memcpy(a, A, (size_t)d * d * sizeof(double));
    int info = 0, lwork = -1;
    double wq = 0.0;
    dsyev_("N", "L", &d, a, &d, w, &wq, &lwork, &info, 1, 1);
    double top = 0.0;
    if (info == 0) {
        lwork = (int)wq;
        double *work = xd_xmalloc((size_t)lwork * sizeof(double));
        dsyev_("N", "L", &d, a, &d, w, work, &lwork, &info, 1, 1);
        free(work);
        top = w[d - 1]; /* ascending */
    }
    if (info != 0) { /* not expected for a finite symmetric matrix; the trace bounds it anyway */
        top = 0.0;
        for (int i = 0; i < d; i++) top += A[(size_t)i * d + i];
    }
    free(a);
    free(w);
    return top;
}

/* W = U V^T for G = U S V^T (m, n), the semi-orthogonal matrix nearest G (its polar factor).
 * Scratch U (m, k), S (k), Vt (k, n). Returns LAPACK's info. */
static int polar(const double *G, int m, int n, double *W, double *U, double *S, double *Vt)
{
    const int k = m < n ? m : n;
    int info = svd_thin(G, m, n, U, S, Vt);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, U, k, Vt, n, 0.0, W, n);
    return info;
}

/* CW = Cxx W (Cxx the top-left dx x dx block of C, row stride d); returns tr(W^T Cxx W) */
static double quad_form(double *CW, const double *C, int d, const double *W, int dx, int dy)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dx, dy, dx, 1.0, C, d, W, dy, 0.0, CW,
                dy);
    double q = 0.0;
    for (size_t t = 0; t < (size_t)dx * dy; t++) q += W[t] * CW[t];
    return q;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t t = 0; t < n; t++) s += a[t] * b[t];
    return s;
}

/* W = U V^T from M = U S V^T;  s = tr(W^T M) / ||Xc W||^2;  b = my - s mx W; for dx > dy
 * optionally W <- polar(M / s + (rho I - Cxx) W) (majorisation, rho = lambda_max(Cxx)) */
xd_status align_procrustes_fit(align_map *map, const float *X, const float *Y, int n, int dx,
                               int dy, const align_procrustes_opts *o, align_procrustes_info *info,
                               xd_err *e)
{
    static const char fit[] = "procrustes";
    memset(map, 0, sizeof *map);
    if (info) memset(info, 0, sizeof *info);
    xd_status st = check_args(X, Y, n, dx, dy, fit, e);
    if (st != XD_OK) return st;
    const int center = o && o->center, scale = o && o->scale, d = dx + dy;
    const int refine = o && dx > dy ? o->refine : 0;
    const int k = dx < dy ? dx : dy;
    if (n < k + center)
        return xd_fail(e, XD_EARG,
                       "%s: %d pairs for min(dx, dy) = %d dimensions: need at least %d%s", fit, n,
                       k, k + center, center ? " (centring uses one)" : "");

    double *mx = xd_xmalloc((size_t)d * sizeof(double)), *my = mx + dx;
    double *C = joint_moments(X, Y, n, dx, dy, center, mx, my);
    const size_t wn = (size_t)dx * dy;
    double *M = xd_xmalloc(wn * sizeof(double));
    for (int i = 0; i < dx; i++)
        for (int j = 0; j < dy; j++) M[(size_t)i * dy + j] = C[(size_t)i * d + dx + j];
    double *U = xd_xmalloc((size_t)dx * k * sizeof(double));
    double *S = xd_xmalloc((size_t)k * sizeof(double));
    double *Vt = xd_xmalloc((size_t)k * dy * sizeof(double));
    double *W = xd_xmalloc(wn * sizeof(double));
    double *CW = xd_xmalloc(wn * sizeof(double));
    double *G = xd_xmalloc(wn * sizeof(double));

    if (polar(M, dx, dy, W, U, S, Vt) != 0) {
        st = xd_fail(e, XD_ENUM, "%s: the SVD of X^T Y did not converge", fit);
        goto done;
    }
    int rank = 0;
    for (int l = 0; l < k; l++) rank += S[l] > SVD_RANK_TOL * S[0];
    if (info) info->rank = rank;
    if (rank < k) {
        char col[64];
        int zv = zero_variance_column(C, dx, dy, col, sizeof col);
        st = xd_fail(e, XD_ENUM, "%s: X^T Y has rank %d < min(dx, dy) = %d, so the map is not "
                     "unique (%s%s)", fit, rank, k, zv ? col : "collinear columns or too few "
                     "independent pairs", zv ? " has zero variance" : "");
        goto done;
    }
    double y2 = 0.0;
    for (int j = 0; j < dy; j++) y2 += C[(size_t)(dx + j) * d + dx + j];
    double xw2 = quad_form(CW, C, d, W, dx, dy), tr = dot(W, M, wn);
    double s = scale ? tr / xw2 : 1.0;
    /* ||s Xc W - Yc||^2 = s^2 tr(W^T Cxx W) - 2 s tr(W^T M) + tr Cyy */
    double f = s * s * xw2 - 2.0 * s * tr + y2;
    int it = 0;
    double rho = 0.0;
    if (refine > 0) { /* rho >= lambda_max(Cxx) makes (Cxx - rho I) negative semi-definite */
        double *cxx = xd_xmalloc((size_t)dx * dx * sizeof(double));
        for (int i = 0; i < dx; i++)
            memcpy(cxx + (size_t)i * dx, C + (size_t)i * d, (size_t)dx * sizeof(double));
        rho = max_eigenvalue(cxx, dx);
        free(cxx);
    }
    for (; it < refine && s > 0.0; it++) { /* s > 0 always holds for data with full rank */
        for (size_t t = 0; t < wn; t++) G[t] = M[t] / s + rho * W[t] - CW[t];
        if (polar(G, dx, dy, W, U, S, Vt) != 0) {
            st = xd_fail(e, XD_ENUM, "%s: an SVD did not converge while refining", fit);
            goto done;
        }
        xw2 = quad_form(CW, C, d, W, dx, dy);
        tr = dot(W, M, wn);
        if (scale) s = tr / xw2;
        const double f_new = s * s * xw2 - 2.0 * s * tr + y2;
        const double gain = f - f_new;
        f = f_new;
        if (gain <= 1e-13 * y2) { /* each step lowers f; stop once it no longer does */
            it++;
            break;
        }
    }

    map_alloc(map, dx, dy);
    for (size_t t = 0; t < wn; t++) map->w[t] = (float)(s * W[t]);
    if (center)
        for (int j = 0; j < dy; j++) {
            double mw = 0.0;
            for (int i = 0; i < dx; i++) mw += mx[i] * W[(size_t)i * dy + j];
            map->b[j] = (float)(my[j] - s * mw);
        }
    if (info) {
        info->scale = s;
        info->resid = sqrt(fmax(0.0, f) / y2);
        info->iters = it;
    }
done:
    free(mx);
    free(C);
    free(M);
    free(U);
    free(S);
    free(Vt);
    free(W);
    free(CW);
    free(G);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * CCA */

void align_cca_free(align_cca *c)
{
    if (!c) return;
    free(c->a);
    free(c->b);
    free(c->gy);
    free(c->corr);
    free(c->mx);
    free(c->my);
    memset(c, 0, sizeof *c);
}

/* Lx^-1 Cxy Ly^-T = U S V^T;  A = Lx^-T U, B = Ly^-T V, gy = V^T Ly^T */
xd_status align_cca_fit(align_cca *c, const float *X, const float *Y, int n, int dx, int dy, int k,
                        double ridge, xd_err *e)
{
    static const char fit[] = "cca";
    memset(c, 0, sizeof *c);
    xd_status st = check_args(X, Y, n, dx, dy, fit, e);
    if (st != XD_OK) return st;
    const int kk = dx < dy ? dx : dy, dmax = dx > dy ? dx : dy, d = dx + dy;
    if (k < 0 || k > kk)
        return xd_fail(e, XD_EARG, "%s: k = %d pairs asked, must be in [0, min(dx, dy) = %d]", fit,
                       k, kk);
    if (k == 0) k = kk;
    if (!(ridge >= 0.0) || !isfinite(ridge))
        return xd_fail(e, XD_EARG, "%s: ridge %g must be finite and >= 0", fit, ridge);
    if (n < 2) return xd_fail(e, XD_EARG, "%s: %d pair(s): covariances need at least 2", fit, n);
    if (ridge == 0.0 && n <= dmax)
        return xd_fail(e, XD_EARG,
                       "%s: %d pairs for max(dx, dy) = %d dimensions: with ridge 0 CCA needs more "
                       "pairs than dimensions (or give a ridge > 0)",
                       fit, n, dmax);

    double *mx = xd_xmalloc((size_t)d * sizeof(double)), *my = mx + dx;
    double *C = joint_moments(X, Y, n, dx, dy, 1, mx, my);
    double *Cxx = xd_xmalloc((size_t)dx * dx * sizeof(double));
    double *Cyy = xd_xmalloc((size_t)dy * dy * sizeof(double));
    double *Lx = xd_xmalloc((size_t)dx * dx * sizeof(double));
    double *Ly = xd_xmalloc((size_t)dy * dy * sizeof(double));
    double *Z = xd_xmalloc((size_t)dy * dx * sizeof(double));
    double *T = xd_xmalloc((size_t)dx * dy * sizeof(double));
    double *U = xd_xmalloc((size_t)dx * kk * sizeof(double));
    double *S = xd_xmalloc((size_t)kk * sizeof(double));
    double *Vt = xd_xmalloc((size_t)kk * dy * sizeof(double));
    double *V = xd_xmalloc((size_t)dy * kk * sizeof(double));
    char col[64];

    if (ridge == 0.0 && zero_variance_column(C, dx, dy, col, sizeof col)) {
        st = xd_fail(e, XD_ENUM,
                     "%s: %s has zero variance, so its covariance is singular (drop the column "
                     "or give a ridge > 0)", fit, col);
        goto done;
    }
    const double inv = 1.0 / (n - 1);
    for (int i = 0; i < dx; i++)
        for (int j = 0; j < dx; j++)
            Cxx[(size_t)i * dx + j] = C[(size_t)i * d + j] * inv + (i == j ? ridge : 0.0);
    for (int i = 0; i < dy; i++)
        for (int j = 0; j < dy; j++)
            Cyy[(size_t)i * dy + j] =
                C[(size_t)(dx + i) * d + dx + j] * inv + (i == j ? ridge : 0.0);
    int bad = cholesky(Cxx, dx, Lx);
    const char *side = "X";
    if (!bad) {
        bad = cholesky(Cyy, dy, Ly);
        side = "Y";
    }
    if (bad) {
        st = xd_fail(e, XD_ENUM,
                     "%s: the covariance of %s is not positive definite: column %d is "
                     "(numerically) a linear combination of the columns before it; give a "
                     "ridge > 0", fit, side, bad - 1);
        goto done;
    }
    /* Z = Ly^-1 Cyx, T = Lx^-1 Z^T = Lx^-1 Cxy Ly^-T */
    for (int i = 0; i < dy; i++)
        for (int j = 0; j < dx; j++) Z[(size_t)i * dx + j] = C[(size_t)j * d + dx + i] * inv;
    solve_lower(Ly, dy, Z, dx);
    for (int i = 0; i < dx; i++)
        for (int j = 0; j < dy; j++) T[(size_t)i * dy + j] = Z[(size_t)j * dx + i];
    solve_lower(Lx, dx, T, dy);
    if (svd_thin(T, dx, dy, U, S, Vt) != 0) {
        st = xd_fail(e, XD_ENUM, "%s: the SVD of the whitened cross-covariance did not converge",
                     fit);
        goto done;
    }
    for (int r = 0; r < dy; r++)
        for (int l = 0; l < kk; l++) V[(size_t)r * kk + l] = Vt[(size_t)l * dy + r];
    /* gy = V^T Ly^T (before V is overwritten by B): gy[l][c] = sum_{r <= c} V[r][l] Ly[c][r] */
    c->gy = xd_xmalloc((size_t)k * dy * sizeof(float));
    double *gy = xd_xcalloc((size_t)k * dy, sizeof(double));
    for (int l = 0; l < k; l++)
        for (int cc = 0; cc < dy; cc++) {
            double g = 0.0;
            for (int r = 0; r <= cc; r++) g += V[(size_t)r * kk + l] * Ly[(size_t)cc * dy + r];
            gy[(size_t)l * dy + cc] = g;
        }
    solve_lower_t(Lx, dx, U, kk); /* U <- A */
    solve_lower_t(Ly, dy, V, kk); /* V <- B */

    c->dx = dx;
    c->dy = dy;
    c->k = k;
    c->ridge = ridge;
    c->a = xd_xmalloc((size_t)dx * k * sizeof(float));
    c->b = xd_xmalloc((size_t)dy * k * sizeof(float));
    c->corr = xd_xmalloc((size_t)k * sizeof(float));
    c->mx = xd_xmalloc((size_t)dx * sizeof(float));
    c->my = xd_xmalloc((size_t)dy * sizeof(float));
    for (int l = 0; l < k; l++) {
        /* sign: the largest-magnitude entry of A's column is positive */
        int arg = 0;
        for (int i = 1; i < dx; i++)
            if (fabs(U[(size_t)i * kk + l]) > fabs(U[(size_t)arg * kk + l])) arg = i;
        const double sg = U[(size_t)arg * kk + l] < 0.0 ? -1.0 : 1.0;
        for (int i = 0; i < dx; i++) c->a[(size_t)i * k + l] = (float)(sg * U[(size_t)i * kk + l]);
        for (int i = 0; i < dy; i++) c->b[(size_t)i * k + l] = (float)(sg * V[(size_t)i * kk + l]);
        for (int cc = 0; cc < dy; cc++)
            c->gy[(size_t)l * dy + cc] = (float)(sg * gy[(size_t)l * dy + cc]);
        c->corr[l] = (float)S[l];
    }
    for (int i = 0; i < dx; i++) c->mx[i] = (float)mx[i];
    for (int i = 0; i < dy; i++) c->my[i] = (float)my[i];
    free(gy);
done:
    free(mx);
    free(C);
    free(Cxx);
    free(Cyy);
    free(Lx);
    free(Ly);
    free(Z);
    free(T);
    free(U);
    free(S);
    free(Vt);
    free(V);
    if (st != XD_OK) align_cca_free(c);
    return st;
}

static xd_status check_k(const align_cca *c, int k, const char *what, xd_err *e)
{
    if (!c->a) return xd_fail(e, XD_EARG, "%s: the CCA has not been fitted", what);
    if (k < 1 || k > c->k)
        return xd_fail(e, XD_EARG, "%s: k = %d, the fit has pairs 1..%d", what, k, c->k);
    return XD_OK;
}

/* z = (x - m) A_k:  W = A_k, b = -m A_k */
xd_status align_cca_project_map(align_map *map, const align_cca *c, align_side side, int k,
                                xd_err *e)
{
    memset(map, 0, sizeof *map);
    xd_status st = check_k(c, k, "cca projection", e);
    if (st != XD_OK) return st;
    const int din = side == ALIGN_SIDE_X ? c->dx : c->dy;
    const float *A = side == ALIGN_SIDE_X ? c->a : c->b;
    const float *m = side == ALIGN_SIDE_X ? c->mx : c->my;
    map_alloc(map, din, k);
    for (int l = 0; l < k; l++) {
        double mb = 0.0;
        for (int i = 0; i < din; i++) {
            map->w[(size_t)i * k + l] = A[(size_t)i * c->k + l];
            mb += (double)m[i] * A[(size_t)i * c->k + l];
        }
        map->b[l] = (float)-mb;
    }
    return XD_OK;
}

/* W = A_k diag(corr_k) gy_k,  b = my - mx W */
xd_status align_cca_regression_map(align_map *map, const align_cca *c, int k, xd_err *e)
{
    memset(map, 0, sizeof *map);
    xd_status st = check_k(c, k, "cca regression", e);
    if (st != XD_OK) return st;
    map_alloc(map, c->dx, c->dy);
    for (int i = 0; i < c->dx; i++)
        for (int j = 0; j < c->dy; j++) {
            double w = 0.0;
            for (int l = 0; l < k; l++)
                w += (double)c->a[(size_t)i * c->k + l] * c->corr[l] * c->gy[(size_t)l * c->dy + j];
            map->w[(size_t)i * c->dy + j] = (float)w;
        }
    for (int j = 0; j < c->dy; j++) {
        double mw = 0.0;
        for (int i = 0; i < c->dx; i++) mw += (double)c->mx[i] * map->w[(size_t)i * c->dy + j];
        map->b[j] = (float)(c->my[j] - mw);
    }
    return XD_OK;
}
