/* Symmetric InfoNCE between paired embeddings (see clip.h). Everything past the float inputs is
 * double; parallel loops write disjoint rows (or columns) and every reduction runs serially in a
 * fixed order, so results do not depend on the thread count. */
#include "align/clip.h"

#include <math.h>

#include "core/status.h"

/* F.normalize's epsilon */
#define CLIP_EPS 1e-12

/* the save buffer cut into its parts */
typedef struct {
    double *an, *bn; /* (B, D) normalised rows */
    double *na, *nb; /* (B) norms before the clamp */
    double *z;       /* (B, B) logits */
    double *P, *Q;   /* (B, B) row and column softmax of z */
    double *s;       /* logit scale exp(theta) */
} clip_parts;

static clip_parts parts(const double *save, int B, int D)
{
    double *p = (double *)save;
    const size_t bd = (size_t)B * D, bb = (size_t)B * B;
    return (clip_parts){p, p + bd, p + 2 * bd, p + 2 * bd + B, p + 2 * bd + 2 * B,
                        p + 2 * bd + 2 * B + bb, p + 2 * bd + 2 * B + 2 * bb,
                        p + 2 * bd + 2 * B + 3 * bb};
}

double align_clip_theta(double tau)
{
    XD_ASSERT(tau > 0.0);
    return -log(tau);
}

void align_clip_clamp_theta(float *theta)
{
    if (!(*theta >= 0.0f)) *theta = 0.0f; /* also catches NaN */
    if (*theta > (float)ALIGN_CLIP_THETA_MAX) *theta = (float)ALIGN_CLIP_THETA_MAX;
}

size_t align_clip_save_len(int B, int D)
{
    return 2 * (size_t)B * D + 2 * (size_t)B + 3 * (size_t)B * B + 1;
}

/* out = x / max(|x|, eps) per row; n = |x| */
static void normalize_rows(double *out, double *n, const float *x, int B, int D)
{
#pragma omp parallel for
    for (int i = 0; i < B; i++) {
        const float *xi = x + (size_t)i * D;
        double ss = 0.0;
        for (int d = 0; d < D; d++) ss += (double)xi[d] * xi[d];
        n[i] = sqrt(ss);
        const double inv = 1.0 / fmax(n[i], CLIP_EPS);
        for (int d = 0; d < D; d++) out[(size_t)i * D + d] = xi[d] * inv;
    }
}

/* L = (1/2B) sum_i (lse_j z_ij - z_ii) + (1/2B) sum_j (lse_i z_ij - z_jj),  z = s a_n b_n^T */
double align_clip_forward(double *save, const float *a, const float *b, int B, int D, float theta)
{
    XD_ASSERT(B >= 1 && D >= 1);
    clip_parts c = parts(save, B, D);
    const double s = exp((double)theta);
    *c.s = s;
    normalize_rows(c.an, c.na, a, B, D);
    normalize_rows(c.bn, c.nb, b, B, D);
#pragma omp parallel for
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            const double *ai = c.an + (size_t)i * D, *bj = c.bn + (size_t)j * D;
            double dot = 0.0;
            for (int d = 0; d < D; d++) dot += ai[d] * bj[d];
            c.z[(size_t)i * B + j] = s * dot;
        }
    double total = 0.0;
    for (int i = 0; i < B; i++) { /* rows: a_i against every b */
        const double *zi = c.z + (size_t)i * B;
        double m = zi[0], sum = 0.0;
        for (int j = 1; j < B; j++) m = fmax(m, zi[j]);
        for (int j = 0; j < B; j++) sum += exp(zi[j] - m);
        const double lse = m + log(sum);
        for (int j = 0; j < B; j++) c.P[(size_t)i * B + j] = exp(zi[j] - lse);
        total += lse - zi[i];
    }
    for (int j = 0; j < B; j++) { /* columns: b_j against every a */
        double m = c.z[j], sum = 0.0;
        for (int i = 1; i < B; i++) m = fmax(m, c.z[(size_t)i * B + j]);
        for (int i = 0; i < B; i++) sum += exp(c.z[(size_t)i * B + j] - m);
        const double lse = m + log(sum);
        for (int i = 0; i < B; i++) c.Q[(size_t)i * B + j] = exp(c.z[(size_t)i * B + j] - lse);
        total += lse - c.z[(size_t)j * B + j];
    }
    return total / (2.0 * B);
}

/* dL/dz_ij = (P_ij + Q_ij - 2 [i == j]) / 2B */
static inline double grad_z(const clip_parts *c, int B, int i, int j)
{
    const size_t t = (size_t)i * B + j;
    return (c->P[t] + c->Q[t] - (i == j ? 2.0 : 0.0)) / (2.0 * B);
}

/* Gradient of one side: dx_r += w (g_r - x_n_r (x_n_r . g_r)) / |x_r|. For side a (rows)
 * g_i = s sum_j G_ij b_n_j and a_n_i . g_i = sum_j G_ij z_ij; for side b (columns) the same with
 * i and j swapped. */
static void side_backward(float *dx, const clip_parts *c, int B, int D, int by_column, double w)
{
    const double *xn = by_column ? c->bn : c->an, *yn = by_column ? c->an : c->bn;
    const double *norm = by_column ? c->nb : c->na;
    const double s = *c->s;
#pragma omp parallel for
    for (int r = 0; r < B; r++) {
        double dot = 0.0;
        for (int o = 0; o < B; o++) {
            const int i = by_column ? o : r, j = by_column ? r : o;
            dot += grad_z(c, B, i, j) * c->z[(size_t)i * B + j];
        }
        float *dr = dx + (size_t)r * D;
        const double *xr = xn + (size_t)r * D;
        /* one component of g at a time: no per-row buffer needed */
        for (int d = 0; d < D; d++) {
            double g = 0.0;
            for (int o = 0; o < B; o++) {
                const int i = by_column ? o : r, j = by_column ? r : o;
                g += grad_z(c, B, i, j) * yn[(size_t)o * D + d];
            }
            g *= s;
            if (norm[r] < CLIP_EPS) dr[d] += (float)(w * g / CLIP_EPS);
            else dr[d] += (float)(w * (g - xr[d] * dot) / norm[r]);
        }
    }
}

void align_clip_backward(float *da, float *db, float *dtheta, const double *save, int B, int D,
                         float weight)
{
    clip_parts c = parts(save, B, D);
    if (dtheta) {
        double t = 0.0;
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++) t += grad_z(&c, B, i, j) * c.z[(size_t)i * B + j];
        *dtheta += (float)(weight * t);
    }
    if (da) side_backward(da, &c, B, D, 0, weight);
    if (db) side_backward(db, &c, B, D, 1, weight);
}
