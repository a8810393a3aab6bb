/* The standard distillation methods (see zoo.h). Each method is one static `*_eval` that computes
 * the loss and, given a gradient buffer, adds weight * its gradient; forward calls it without
 * one, so the two can never disagree on the definition. Everything past the float inputs is
 * double, reductions run serially in a fixed order, and Gram matrices are cblas_dgemm calls. */
#include "distill/zoo.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>

#include "core/status.h"
#include "nn/loss.h"

/* F.normalize's and the pairwise distances' clamp */
#define ZOO_EPS 1e-12
/* PKT's epsilon (its reference code's) */
#define PKT_EPS 1e-7
/* VID's floor on the variance */
#define VID_EPS 1e-5

static void to_double(double *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = in[i];
}

static void add_scaled(float *d, const double *g, size_t n, double w)
{
    for (size_t i = 0; i < n; i++) d[i] += (float)(w * g[i]);
}

static double dot(const double *a, const double *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* G = X X^T, X (B, D) row-major */
static void gram_rows(double *G, const double *X, int B, int D)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, B, D, 1.0, X, D, X, D, 0.0, G, B);
}

/* Backward of G = X X^T: dX = (dG + dG^T) X. dG (B, B) is made symmetric in place. */
static void gram_rows_backward(double *dX, double *dG, const double *X, int B, int D)
{
    for (int i = 0; i < B; i++)
        for (int j = i; j < B; j++) {
            const double v = dG[(size_t)i * B + j] + dG[(size_t)j * B + i];
            dG[(size_t)i * B + j] = dG[(size_t)j * B + i] = v;
        }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, B, 1.0, dG, B, X, D, 0.0, dX, D);
}

/* smooth L1 with beta 1 (F.smooth_l1_loss) and its derivative */
static double huber(double x) { return fabs(x) < 1.0 ? 0.5 * x * x : fabs(x) - 0.5; }
static double huber_grad(double x) { return x < -1.0 ? -1.0 : x > 1.0 ? 1.0 : x; }

void kd_unit_backward(double *dx, const double *xn, const double *g, double norm, int n,
                      int stride)
{
    if (norm < ZOO_EPS) {
        for (int i = 0; i < n; i++) dx[(size_t)i * stride] = g[(size_t)i * stride] / ZOO_EPS;
        return;
    }
    double p = 0.0;
    for (int i = 0; i < n; i++) p += xn[(size_t)i * stride] * g[(size_t)i * stride];
    for (int i = 0; i < n; i++)
        dx[(size_t)i * stride] = (g[(size_t)i * stride] - xn[(size_t)i * stride] * p) / norm;
}

// ----------------------------------------------------------------------------------------------
// DKD

/* one row's log-sum-exps of x / T: over every class and over the non-target ones */
typedef struct {
    double lse_all, lse_rest;
} dkd_row;

static dkd_row dkd_lse(const float *x, int K, int g, double T)
{
    double m = -INFINITY;
    for (int k = 0; k < K; k++)
        if (k != g) m = fmax(m, x[k] / T);
    double rest = 0.0;
    for (int k = 0; k < K; k++)
        if (k != g) rest += exp(x[k] / T - m);
    const double lse_rest = m + log(rest), zg = x[g] / T;
    /* log(exp(zg) + exp(lse_rest)) without overflow */
    const double hi = fmax(zg, lse_rest), lo = fmin(zg, lse_rest);
    return (dkd_row){hi + log1p(exp(lo - hi)), lse_rest};
}

static double dkd_eval(float *ds, const float *s, const float *t, const int32_t *y,
                       const uint8_t *mask, int B, int K, double T, double alpha, double beta,
                       double weight)
{
    const int M = nn_mask_count(mask, B);
    if (!M || K < 2) return 0.0;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        if (mask && !mask[b]) continue;
        const float *zs = s + (size_t)b * K, *zt = t + (size_t)b * K;
        const int g = y[b];
        XD_ASSERT(g >= 0 && g < K);
        dkd_row rs = dkd_lse(zs, K, g, T), rt = dkd_lse(zt, K, g, T);
        /* binary parts in logs: log p_g and log(1 - p_g) = lse_rest - lse_all */
        const double lps = zs[g] / T - rs.lse_all, lqs = zt[g] / T - rt.lse_all;
        const double lps1 = rs.lse_rest - rs.lse_all, lqs1 = rt.lse_rest - rt.lse_all;
        const double pg = exp(lps), qg = exp(lqs), qr = exp(lqs1);
        double tckd = qg * (lqs - lps) + qr * (lqs1 - lps1), nckd = 0.0;
        for (int k = 0; k < K; k++) {
            if (k == g) continue;
            const double lq = zt[k] / T - rt.lse_rest, lp = zs[k] / T - rs.lse_rest;
            nckd += exp(lq) * (lq - lp);
        }
        total += alpha * tckd + beta * nckd;
        if (!ds) continue;
        const double c = weight * T / M; /* T^2 from the loss, 1/T from z = s/T */
        float *d = ds + (size_t)b * K;
        for (int k = 0; k < K; k++) {
            double gk;
            if (k == g) gk = alpha * (pg - qg);
            else {
                const double ph = exp(zs[k] / T - rs.lse_rest), qh = exp(zt[k] / T - rt.lse_rest);
                /* p_k / (1 - p_g) is the non-target softmax ph */
                gk = -alpha * (pg - qg) * ph + beta * (ph - qh);
            }
            d[k] += (float)(c * gk);
        }
    }
    return T * T * total / M;
}

double kd_dkd_forward(const float *s, const float *t, const int32_t *y, const uint8_t *mask, int B,
                      int K, float T, float alpha, float beta)
{
    XD_ASSERT(T > 0.0f);
    return dkd_eval(NULL, s, t, y, mask, B, K, T, alpha, beta, 0.0);
}

double kd_dkd_backward(float *ds, const float *s, const float *t, const int32_t *y,
                     const uint8_t *mask, int B, int K, float T, float alpha, float beta,
                     float weight)
{
    XD_ASSERT(T > 0.0f);
    return dkd_eval(ds, s, t, y, mask, B, K, T, alpha, beta, weight);
}

// ----------------------------------------------------------------------------------------------
// RKD

/* the work buffer cut into its parts */
typedef struct {
    double *xs, *xt; /* (B, Ds), (B, Dt) inputs */
    double *ds, *dt; /* (B, B) distances divided by their mean */
    double *gs, *gt; /* (B, B) Gram matrices x_i . x_j */
    double *ls, *lt; /* (B, B) 1 / max(|x_j - x_i|, eps), 0 on the diagonal (u_ii = 0) */
    double *gg;      /* (B, B) gradient w.r.t. the student's Gram matrix */
    double *gc;      /* (B, B) coefficients of the student's differences x_j - x_i */
    double *de;      /* (B, Ds) gradient w.r.t. xs */
} rkd_parts;

size_t kd_rkd_work_len(int B, int Ds, int Dt)
{
    const size_t b = (size_t)B;
    return 2 * b * Ds + b * Dt + 8 * b * b;
}

static rkd_parts rkd_cut(double *w, int B, int Ds, int Dt)
{
    const size_t b = (size_t)B;
    rkd_parts p;
    p.xs = w, w += b * Ds;
    p.xt = w, w += b * Dt;
    p.ds = w, w += b * b;
    p.dt = w, w += b * b;
    p.gs = w, w += b * b;
    p.gt = w, w += b * b;
    p.ls = w, w += b * b;
    p.lt = w, w += b * b;
    p.gg = w, w += b * b;
    p.gc = w, w += b * b;
    p.de = w;
    return p;
}

/* the inverse clamped lengths 1 / max(|x_j - x_i|, eps) into il (0 on the diagonal), the
 * distances sqrt(max(|.|^2, eps)) divided by their mean off the diagonal into d (0 on it);
 * returns that mean */
static double rkd_dist(double *d, double *il, const double *x, int B, int D)
{
    double sum = 0.0;
    for (int i = 0; i < B; i++) {
        d[(size_t)i * B + i] = il[(size_t)i * B + i] = 0.0;
        for (int j = i + 1; j < B; j++) {
            double s2 = 0.0;
            for (int k = 0; k < D; k++) {
                const double v = x[(size_t)i * D + k] - x[(size_t)j * D + k];
                s2 += v * v;
            }
            const double v = sqrt(fmax(s2, ZOO_EPS));
            d[(size_t)i * B + j] = d[(size_t)j * B + i] = v;
            il[(size_t)i * B + j] = il[(size_t)j * B + i] = 1.0 / fmax(sqrt(s2), ZOO_EPS);
            sum += 2.0 * v;
        }
    }
    const double mean = sum / ((double)B * (B - 1));
    for (size_t i = 0; i < (size_t)B * B; i++) d[i] /= mean;
    return mean;
}

/* The angle term works from one Gram matrix per side (one dgemm, B^2 D) instead of a Gram of the
 * unit differences per anchor (B^3 D): the triples then cost B^3 scalar steps, and the gradient
 * goes back through the Gram matrix (one dgemm) and the lengths. */
static double rkd_eval(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                       int Dt, double w_dist, double w_angle, double weight)
{
    if (B < 2) return 0.0; /* no pair to relate */
    rkd_parts p = rkd_cut(work, B, Ds, Dt);
    const size_t bb = (size_t)B * B;
    to_double(p.xs, fs, (size_t)B * Ds);
    to_double(p.xt, ft, (size_t)B * Dt);
    if (dfs)
        for (size_t i = 0; i < bb; i++) p.gg[i] = p.gc[i] = 0.0;

    /* distance term: (1/B^2) sum h(d^s - d^t) over every (i, j), the diagonal giving 0 */
    const double mean_s = rkd_dist(p.ds, p.ls, p.xs, B, Ds);
    rkd_dist(p.dt, p.lt, p.xt, B, Dt);
    double loss_d = 0.0, c = 0.0;
    for (size_t i = 0; i < bb; i++) {
        loss_d += huber(p.ds[i] - p.dt[i]);
        c += huber_grad(p.ds[i] - p.dt[i]) * p.ds[i];
    }
    if (dfs) {
        /* d^s_ij = r_ij / mean: dL/dr_kl = (h'_kl - sum_ij h'_ij d^s_ij / N) / mean, N = B(B-1);
         * dr_ij/dx_j = (x_j - x_i) / r_ij */
        const double scale = w_dist / (double)bb, n_off = (double)B * (B - 1);
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++) {
                if (i == j) continue;
                const double r = p.ds[(size_t)i * B + j] * mean_s;
                if (r * r < ZOO_EPS) continue; /* the clamp holds: no gradient */
                p.gc[(size_t)i * B + j] +=
                    scale * (huber_grad(p.ds[(size_t)i * B + j] - p.dt[(size_t)i * B + j]) -
                             c / n_off) / mean_s / r;
            }
    }

    /* angle term: (1/B^3) sum h(a^s - a^t) */
    gram_rows(p.gs, p.xs, B, Ds);
    gram_rows(p.gt, p.xt, B, Dt);
    /* the angle at anchor i between j and k: u_ij . u_ik = (x_j - x_i) . (x_k - x_i) /
     * (max(l_ij, eps) max(l_ik, eps)), the numerator G_jk - G_ij - G_ik + G_ii; 0 when j or k
     * is the anchor (the inverse length is 0 there) */
    double loss_a = 0.0;
    const double ga = w_angle / ((double)bb * B);
    for (int i = 0; i < B; i++) {
        const double *gsi = p.gs + (size_t)i * B, *gti = p.gt + (size_t)i * B;
        const double *lsi = p.ls + (size_t)i * B, *lti = p.lt + (size_t)i * B;
        double diag = 0.0;
        for (int j = 0; j < B; j++) {
            const double *gsj = p.gs + (size_t)j * B, *gtj = p.gt + (size_t)j * B;
            const double bs = gsi[i] - gsi[j], bt = gti[i] - gti[j];
            const double ls = lsi[j], lt = lti[j];
            if (!dfs) {
                for (int k = 0; k < B; k++)
                    loss_a += huber((gsj[k] + bs - gsi[k]) * ls * lsi[k] -
                                    (gtj[k] + bt - gti[k]) * lt * lti[k]);
                continue;
            }
            double row = 0.0, len = 0.0;
            double *gg = p.gg + (size_t)j * B;
            for (int k = 0; k < B; k++) {
                const double as = (gsj[k] + bs - gsi[k]) * ls * lsi[k];
                const double x = as - (gtj[k] + bt - gti[k]) * lt * lti[k];
                loss_a += huber(x);
                /* a = N / (l_ij l_ik): dN, and the l_ij factor's share (the l_ik factor's is
                 * the (i, k, j) term's, the angle being symmetric in j and k) */
                const double h = ga * huber_grad(x), dn = h * ls * lsi[k];
                gg[k] += dn;
                row += dn;
                len += h * as;
            }
            /* N's -G_ij and -G_ik terms (equal sums by symmetry), and +G_ii; the length's
             * gradient -2 len / l_ij times dl_ij/dx_j = (x_j - x_i) / l_ij, none where the clamp
             * holds */
            p.gg[(size_t)i * B + j] -= 2.0 * row;
            diag += row;
            if (j != i && ls < 1.0 / ZOO_EPS) p.gc[(size_t)i * B + j] -= 2.0 * len * ls * ls;
        }
        p.gg[(size_t)i * B + i] += diag;
    }
    if (dfs) {
        /* coefficient c_ij of x_j - x_i (into dx_j, minus into dx_i): with S = c + c^T,
         * dX = diag(rowsum S) X - S X; folded into the Gram's gradient, which gram_rows_backward
         * symmetrises */
        for (int i = 0; i < B; i++) {
            double v = 0.0;
            for (int j = 0; j < B; j++) v += p.gc[(size_t)i * B + j] + p.gc[(size_t)j * B + i];
            for (int j = 0; j < B; j++) p.gg[(size_t)i * B + j] -= p.gc[(size_t)i * B + j];
            p.gg[(size_t)i * B + i] += 0.5 * v;
        }
        gram_rows_backward(p.de, p.gg, p.xs, B, Ds);
        add_scaled(dfs, p.de, (size_t)B * Ds, weight);
    }
    return w_dist * loss_d / (double)bb + w_angle * loss_a / ((double)bb * B);
}

double kd_rkd_forward(double *work, const float *fs, const float *ft, int B, int Ds, int Dt,
                      float w_dist, float w_angle)
{
    return rkd_eval(NULL, work, fs, ft, B, Ds, Dt, w_dist, w_angle, 0.0);
}

double kd_rkd_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                     int Dt, float w_dist, float w_angle, float weight)
{
    return rkd_eval(dfs, work, fs, ft, B, Ds, Dt, w_dist, w_angle, weight);
}

// ----------------------------------------------------------------------------------------------
// SP

size_t kd_sp_work_len(int B, int Ds, int Dt)
{
    const size_t b = (size_t)B;
    return 2 * b * Ds + b * Dt + 3 * b * b + b;
}

/* G = X X^T with each row divided by max(|row|, eps); the norms before the clamp go to n */
static void sp_gram(double *G, double *n, const double *X, int B, int D)
{
    gram_rows(G, X, B, D);
    for (int i = 0; i < B; i++) {
        double *g = G + (size_t)i * B;
        const double len = sqrt(dot(g, g, B)), inv = 1.0 / fmax(len, ZOO_EPS);
        if (n) n[i] = len;
        for (int j = 0; j < B; j++) g[j] *= inv;
    }
}

static double sp_eval(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                      int Dt, double weight)
{
    if (B < 2) return 0.0; /* a 1 x 1 similarity normalises to 1 on both sides */
    const size_t bb = (size_t)B * B;
    double *xs = work, *xt = xs + (size_t)B * Ds, *gs = xt + (size_t)B * Dt, *gt = gs + bb,
           *r = gt + bb, *ns = r + bb, *dx = ns + B;
    to_double(xs, fs, (size_t)B * Ds);
    to_double(xt, ft, (size_t)B * Dt);
    sp_gram(gs, ns, xs, B, Ds);
    sp_gram(gt, NULL, xt, B, Dt);
    double loss = 0.0;
    for (size_t i = 0; i < bb; i++) loss += (gt[i] - gs[i]) * (gt[i] - gs[i]);
    if (dfs) {
        /* dL/dG^ = 2 (G^s - G^t) / B^2, through the row normalisation, then G = X X^T */
        for (size_t i = 0; i < bb; i++) r[i] = 2.0 * (gs[i] - gt[i]) / (double)bb;
        for (int i = 0; i < B; i++)
            kd_unit_backward(r + (size_t)i * B, gs + (size_t)i * B, r + (size_t)i * B, ns[i], B,
                               1);
        gram_rows_backward(dx, r, xs, B, Ds);
        add_scaled(dfs, dx, (size_t)B * Ds, weight);
    }
    return loss / (double)bb;
}

double kd_sp_forward(double *work, const float *fs, const float *ft, int B, int Ds, int Dt)
{
    return sp_eval(NULL, work, fs, ft, B, Ds, Dt, 0.0);
}

double kd_sp_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                    int Dt, float weight)
{
    return sp_eval(dfs, work, fs, ft, B, Ds, Dt, weight);
}

// ----------------------------------------------------------------------------------------------
// PKT

size_t kd_pkt_work_len(int B, int Ds, int Dt)
{
    const size_t b = (size_t)B;
    return 2 * b * Ds + b * Dt + 3 * b * b + 2 * b;
}

/* rows to x / (|x| + eps) in place (norms to n), then P = row-normalised (x x^T + 1) / 2;
 * the row sums go to r */
static void pkt_dist(double *P, double *n, double *r, double *X, int B, int D)
{
    for (int i = 0; i < B; i++) {
        double *x = X + (size_t)i * D;
        const double len = sqrt(dot(x, x, D)), inv = 1.0 / (len + PKT_EPS);
        if (n) n[i] = len;
        for (int k = 0; k < D; k++) x[k] *= inv;
    }
    gram_rows(P, X, B, D);
    for (int i = 0; i < B; i++) {
        double *p = P + (size_t)i * B, sum = 0.0;
        for (int j = 0; j < B; j++) sum += p[j] = (p[j] + 1.0) / 2.0;
        if (r) r[i] = sum;
        for (int j = 0; j < B; j++) p[j] /= sum;
    }
}

static double pkt_eval(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                       int Dt, double weight)
{
    if (B < 2) return 0.0; /* a one-point distribution is 1 on both sides */
    const size_t bb = (size_t)B * B;
    double *xs = work, *xt = xs + (size_t)B * Ds, *P = xt + (size_t)B * Dt, *Q = P + bb,
           *c = Q + bb, *ns = c + bb, *rs = ns + B, *dx = rs + B;
    to_double(xs, fs, (size_t)B * Ds);
    to_double(xt, ft, (size_t)B * Dt);
    pkt_dist(P, ns, rs, xs, B, Ds);
    pkt_dist(Q, NULL, NULL, xt, B, Dt);
    double loss = 0.0;
    for (size_t i = 0; i < bb; i++) loss += Q[i] * log((Q[i] + PKT_EPS) / (P[i] + PKT_EPS));
    if (dfs) {
        /* a = dL/dP = -Q / (P + eps) / B^2; P = M / r: dL/dM_ij = (a_ij - sum_k a_ik P_ik) / r_i;
         * M = (S + 1) / 2 and S = X^ X^^T, so C = dL/dS = dL/dM / 2 */
        for (int i = 0; i < B; i++) {
            const double *p = P + (size_t)i * B, *q = Q + (size_t)i * B;
            double *ci = c + (size_t)i * B, ap = 0.0;
            for (int j = 0; j < B; j++) {
                ci[j] = -q[j] / (p[j] + PKT_EPS) / (double)bb;
                ap += ci[j] * p[j];
            }
            for (int j = 0; j < B; j++) ci[j] = (ci[j] - ap) / rs[i] / 2.0;
        }
        gram_rows_backward(dx, c, xs, B, Ds);
        /* x^ = x / (|x| + eps): dx = g / (|x| + eps) - x^ (x^ . g) / |x| */
        for (int i = 0; i < B; i++) {
            double *g = dx + (size_t)i * Ds;
            const double *xh = xs + (size_t)i * Ds, n = ns[i];
            const double xg = n > 0.0 ? dot(xh, g, Ds) / n : 0.0;
            for (int k = 0; k < Ds; k++) g[k] = g[k] / (n + PKT_EPS) - xh[k] * xg;
        }
        add_scaled(dfs, dx, (size_t)B * Ds, weight);
    }
    return loss / (double)bb;
}

double kd_pkt_forward(double *work, const float *fs, const float *ft, int B, int Ds, int Dt)
{
    return pkt_eval(NULL, work, fs, ft, B, Ds, Dt, 0.0);
}

double kd_pkt_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                     int Dt, float weight)
{
    return pkt_eval(dfs, work, fs, ft, B, Ds, Dt, weight);
}

// ----------------------------------------------------------------------------------------------
// CC

static double cc_eval(float *dfs, const float *fs, const float *ft, int B, int D, double weight)
{
    if (B < 2) return 0.0; /* no consecutive pair */
    double loss = 0.0;
    for (int b = 0; b + 1 < B; b++)
        for (int k = 0; k < D; k++) {
            const size_t i = (size_t)b * D + k, j = i + D;
            loss += fabs((double)fs[i] - ft[i]) * fabs((double)fs[j] - ft[j]);
        }
    if (dfs) {
        const double scale = weight / (B - 1);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < D; k++) {
                const size_t i = (size_t)b * D + k;
                /* row b pairs with b - 1 and b + 1 */
                double nb = 0.0;
                if (b > 0) nb += fabs((double)fs[i - D] - ft[i - D]);
                if (b + 1 < B) nb += fabs((double)fs[i + D] - ft[i + D]);
                const double v = (double)fs[i] - ft[i], sign = v > 0.0 ? 1.0 : v < 0.0 ? -1.0 : 0.0;
                dfs[i] += (float)(scale * sign * nb);
            }
    }
    return loss / (B - 1);
}

double kd_cc_forward(const float *fs, const float *ft, int B, int D)
{
    return cc_eval(NULL, fs, ft, B, D, 0.0);
}

double kd_cc_backward(float *dfs, const float *fs, const float *ft, int B, int D, float weight)
{
    return cc_eval(dfs, fs, ft, B, D, weight);
}

// ----------------------------------------------------------------------------------------------
// NST

size_t kd_nst_work_len(int HW, int Cs, int Ct)
{
    const size_t hw = (size_t)HW;
    return 2 * hw * Cs + hw * Ct + (size_t)Cs * Cs + (size_t)Cs * Ct + (size_t)Ct * Ct + Cs + Ct;
}

/* one example's map (HW, C) to double with each channel (a column) divided by max(|col|, eps);
 * the norms go to n */
static void nst_normalize(double *X, double *n, const float *f, int HW, int C)
{
    to_double(X, f, (size_t)HW * C);
    for (int c = 0; c < C; c++) {
        double s2 = 0.0;
        for (int p = 0; p < HW; p++) s2 += X[(size_t)p * C + c] * X[(size_t)p * C + c];
        n[c] = sqrt(s2);
        const double inv = 1.0 / fmax(n[c], ZOO_EPS);
        for (int p = 0; p < HW; p++) X[(size_t)p * C + c] *= inv;
    }
}

/* sum of the squared entries of A^T B, A (HW, Ca), B (HW, Cb), the product left in G */
static double nst_kernel(double *G, const double *A, const double *Bm, int HW, int Ca, int Cb)
{
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ca, Cb, HW, 1.0, A, Ca, Bm, Cb, 0.0, G,
                Cb);
    return dot(G, G, Ca * Cb);
}

static double nst_eval(float *dfs, double *work, const float *fs, const float *ft, int B, int HW,
                       int Cs, int Ct, double weight)
{
    const size_t hw = (size_t)HW;
    double *S = work, *T = S + hw * Cs, *gss = T + hw * Ct, *gst = gss + (size_t)Cs * Cs,
           *gtt = gst + (size_t)Cs * Ct, *ns = gtt + (size_t)Ct * Ct, *nt = ns + Cs,
           *dS = nt + Ct;
    const double a = 1.0 / ((double)B * Cs * Cs), c = 1.0 / ((double)B * Cs * Ct),
                 t = 1.0 / ((double)B * Ct * Ct);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        nst_normalize(S, ns, fs + (size_t)b * hw * Cs, HW, Cs);
        nst_normalize(T, nt, ft + (size_t)b * hw * Ct, HW, Ct);
        loss += t * nst_kernel(gtt, T, T, HW, Ct, Ct) + a * nst_kernel(gss, S, S, HW, Cs, Cs) -
                2.0 * c * nst_kernel(gst, S, T, HW, Cs, Ct);
        if (!dfs) continue;
        /* dL/dS^ = 4a S^ Gss - 4c T^ Gst^T, then through each channel's normalisation */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, HW, Cs, Cs, 4.0 * a, S, Cs, gss, Cs,
                    0.0, dS, Cs);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, HW, Cs, Ct, -4.0 * c, T, Ct, gst, Ct,
                    1.0, dS, Cs);
        for (int ch = 0; ch < Cs; ch++) kd_unit_backward(dS + ch, S + ch, dS + ch, ns[ch], HW, Cs);
        add_scaled(dfs + (size_t)b * hw * Cs, dS, hw * Cs, weight);
    }
    return loss;
}

double kd_nst_forward(double *work, const float *fs, const float *ft, int B, int HW, int Cs,
                      int Ct)
{
    return nst_eval(NULL, work, fs, ft, B, HW, Cs, Ct, 0.0);
}

double kd_nst_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int HW,
                     int Cs, int Ct, float weight)
{
    return nst_eval(dfs, work, fs, ft, B, HW, Cs, Ct, weight);
}

// ----------------------------------------------------------------------------------------------
// FSP

size_t kd_fsp_work_len(int HW, int C1, int C2)
{
    return 2 * (size_t)HW * (C1 + C2) + 2 * (size_t)C1 * C2;
}

/* G = (1/HW) top^T bot (C2, C1) of one example, both maps converted to double into x1, x2 */
static void fsp_gram(double *G, double *x1, double *x2, const float *bot, const float *top, int HW,
                     int C1, int C2)
{
    to_double(x1, bot, (size_t)HW * C1);
    to_double(x2, top, (size_t)HW * C2);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C2, C1, HW, 1.0 / HW, x2, C2, x1, C1, 0.0,
                G, C1);
}

static double fsp_eval(float *ds1, float *ds2, double *work, const float *s1, const float *s2,
                       const float *t1, const float *t2, int B, int HW, int C1, int C2,
                       double weight)
{
    const size_t hw = (size_t)HW, cc = (size_t)C1 * C2;
    double *a1 = work, *a2 = a1 + hw * C1, *b1 = a2 + hw * C2, *b2 = b1 + hw * C1, *gs = b2 + hw * C2,
           *gt = gs + cc;
    const double scale = 1.0 / ((double)B * cc);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        fsp_gram(gt, b1, b2, t1 + (size_t)b * hw * C1, t2 + (size_t)b * hw * C2, HW, C1, C2);
        fsp_gram(gs, a1, a2, s1 + (size_t)b * hw * C1, s2 + (size_t)b * hw * C2, HW, C1, C2);
        for (size_t i = 0; i < cc; i++) {
            loss += (gs[i] - gt[i]) * (gs[i] - gt[i]);
            gs[i] = 2.0 * scale * (gs[i] - gt[i]); /* dL/dG, reusing the teacher's maps below */
        }
        /* dbot = (1/HW) top R, dtop = (1/HW) bot R^T */
        if (ds1) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, HW, C1, C2, 1.0 / HW, a2, C2,
                        gs, C1, 0.0, b1, C1);
            add_scaled(ds1 + (size_t)b * hw * C1, b1, hw * C1, weight);
        }
        if (ds2) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, HW, C2, C1, 1.0 / HW, a1, C1, gs,
                        C1, 0.0, b2, C2);
            add_scaled(ds2 + (size_t)b * hw * C2, b2, hw * C2, weight);
        }
    }
    return loss * scale;
}

double kd_fsp_forward(double *work, const float *s1, const float *s2, const float *t1,
                      const float *t2, int B, int HW, int C1, int C2)
{
    return fsp_eval(NULL, NULL, work, s1, s2, t1, t2, B, HW, C1, C2, 0.0);
}

double kd_fsp_backward(float *ds1, float *ds2, double *work, const float *s1, const float *s2,
                     const float *t1, const float *t2, int B, int HW, int C1, int C2,
                     float weight)
{
    return fsp_eval(ds1, ds2, work, s1, s2, t1, t2, B, HW, C1, C2, weight);
}

// ----------------------------------------------------------------------------------------------
// VID

static double softplus(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

void kd_vid_init(float *log_scale, int C, double init_var)
{
    XD_ASSERT(init_var > VID_EPS);
    /* softplus^-1(v) = log(exp(v) - 1) = v + log(1 - exp(-v)) */
    const double v = init_var - VID_EPS, ls = v + log(-expm1(-v));
    for (int c = 0; c < C; c++) log_scale[c] = (float)ls;
}

static double vid_eval(float *dmu, float *dls, const float *mu, const float *t,
                       const float *log_scale, int64_t rows, int C, double weight)
{
    const double N = (double)rows * C;
    double loss = 0.0;
    for (int c = 0; c < C; c++) {
        const double ls = log_scale[c], var = softplus(ls) + VID_EPS, lv = log(var);
        double sq = 0.0; /* sum of (mu - t)^2 over the channel */
        for (int64_t r = 0; r < rows; r++) {
            const size_t i = (size_t)r * C + c;
            const double d = (double)mu[i] - t[i];
            sq += d * d;
            if (dmu) dmu[i] += (float)(weight * d / var / N);
        }
        loss += 0.5 * (sq / var + (double)rows * lv);
        /* dL/dvar = 0.5 (rows / var - sq / var^2) / N; dvar/dls = sigmoid(ls) */
        if (dls)
            dls[c] += (float)(weight * 0.5 * ((double)rows / var - sq / (var * var)) / N /
                              (1.0 + exp(-ls)));
    }
    return loss / N;
}

double kd_vid_forward(const float *mu, const float *t, const float *log_scale, int64_t rows,
                      int C)
{
    return vid_eval(NULL, NULL, mu, t, log_scale, rows, C, 0.0);
}

double kd_vid_backward(float *dmu, float *dlog_scale, const float *mu, const float *t,
                     const float *log_scale, int64_t rows, int C, float weight)
{
    return vid_eval(dmu, dlog_scale, mu, t, log_scale, rows, C, weight);
}

// ----------------------------------------------------------------------------------------------
// AB

static double ab_eval(float *ds, const float *s, const float *t, int B, int64_t n, double m,
                      double weight)
{
    const size_t len = (size_t)B * (size_t)n;
    double loss = 0.0;
    for (size_t i = 0; i < len; i++) {
        const double x = s[i];
        /* the teacher's side of 0 decides which boundary the student must clear by m */
        double d = 0.0;
        if (t[i] <= 0.0f && x > -m) d = x + m;
        else if (t[i] > 0.0f && x <= m) d = x - m;
        loss += d * d;
        if (ds) ds[i] += (float)(weight * 2.0 * d / B);
    }
    return loss / B;
}

double kd_ab_forward(const float *s, const float *t, int B, int64_t n, float margin)
{
    return ab_eval(NULL, s, t, B, n, margin, 0.0);
}

double kd_ab_backward(float *ds, const float *s, const float *t, int B, int64_t n, float margin,
                    float weight)
{
    return ab_eval(ds, s, t, B, n, margin, weight);
}

// ----------------------------------------------------------------------------------------------
// OFD

static double ofd_eval(float *ds, const float *s, const float *t, const float *margin, int B,
                       int HW, int C, double weight)
{
    const size_t rows = (size_t)B * HW;
    double loss = 0.0;
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) {
            const size_t i = r * C + c;
            const double tr = fmax((double)t[i], (double)margin[c]), x = s[i];
            /* below a negative target the student already gives the same ReLU output */
            if (!(x > tr || tr > 0.0)) continue;
            loss += (x - tr) * (x - tr);
            if (ds) ds[i] += (float)(weight * 2.0 * (x - tr) / B);
        }
    return loss / B;
}

double kd_ofd_forward(const float *s, const float *t, const float *margin, int B, int HW, int C)
{
    return ofd_eval(NULL, s, t, margin, B, HW, C, 0.0);
}

double kd_ofd_backward(float *ds, const float *s, const float *t, const float *margin, int B,
                     int HW, int C, float weight)
{
    return ofd_eval(ds, s, t, margin, B, HW, C, weight);
}

void kd_ofd_margin(float *margin, const float *t, int64_t rows, int C)
{
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t r = 0; r < rows; r++) sum += t[(size_t)r * C + c];
        const double mean = rows ? sum / (double)rows : 0.0;
        for (int64_t r = 0; r < rows; r++) {
            const double d = t[(size_t)r * C + c] - mean;
            sq += d * d;
        }
        const double sd = rows ? sqrt(sq / (double)rows) : 0.0;
        double m;
        if (!(sd > 0.0)) m = fmin(mean, 0.0);
        else {
            const double z = mean / sd, cdf = 0.5 * erfc(z / sqrt(2.0)); /* Phi(-z) */
            m = cdf > 0.001 ? mean - sd * exp(-z * z / 2.0) / sqrt(2.0 * M_PI) / cdf : -3.0 * sd;
        }
        margin[c] = (float)m;
    }
}
