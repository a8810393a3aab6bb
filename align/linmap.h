/* Closed-form linear maps between two representation spaces, fitted on paired features.
 *
 * X (n, dx) and Y (n, dy) hold the same n examples seen by two models (say a teacher's tap and a
 * student's tap). A fit returns an affine map y = x W + b (align_map), which can be applied as a
 * fixed map (align_map_apply) or written into a linear / 1x1-conv node of an nn_model to start a
 * learned projector from it (align_map_init_linear). Which side is X is the caller's choice: the
 * trainer's projectors read the student's tap and predict the teacher's, so they are fitted with
 * X = student features, Y = teacher features.
 *
 * Two fits:
 *  - orthogonal Procrustes (rotation, optionally centred and scaled), for spaces of the same
 *    meaning up to a rotation, e.g. two encoders trained on the same task;
 *  - CCA with ridge, which finds the directions along which the two spaces co-vary, and from it a
 *    reduced-rank regression map from X to Y.
 * All sums, covariances and decompositions run in double (LAPACK inside OpenBLAS); the results are
 * stored in float, the precision of the features and weights they meet.
 *
 * The inputs are untrusted (features of unknown models): NaN/Inf, too few pairs for the
 * dimensions, and degenerate data (zero variance, rank deficiency) are reported with a status and
 * a message naming the matrix, row and column, never an assert. */
#ifndef XD_ALIGN_LINMAP_H
#define XD_ALIGN_LINMAP_H

#include "core/status.h"
#include "nn/model.h"

/* Most features per side a fit takes: the (dx + dy)^2 covariance in double stays under 2 GiB. */
#define ALIGN_MAX_DIM 8192

/* An affine map y = x W + b from din to dout dimensions. */
typedef struct {
    int din, dout;
    float *w; /* (din, dout) row-major */
    float *b; /* (dout) */
} align_map;

void align_map_free(align_map *m);

/* out = x W + b; x (n, din), out (n, dout). Sums in double, in parallel over rows. */
void align_map_apply(float *out, const float *x, const align_map *m, int n);

/* Writes the map into node `node` of model `m`: a linear node (weight (OC, C) = W^T, so that
 * out = x w^T + bias = x W + b) or a 1x1 conv2d with stride 1 and no padding (same weight
 * layout). The node's input width must be din and its output width dout. A node without a bias
 * accepts only a map whose b is exactly zero (e.g. Procrustes without centring). */
xd_status align_map_init_linear(nn_model *m, const char *node, const align_map *map, xd_err *e);

/* ---------------------------------------------------------------------------------------------
 * Orthogonal Procrustes:  W = argmin_{W semi-orthogonal} ||s (X - mx) W + my - Y||_F
 *
 * With M = (X - mx)^T (Y - my) = U S V^T (thin SVD, k = min(dx, dy)), W = U V^T: it maximises
 * tr(W^T M) over W with orthonormal columns (dx >= dy) or rows (dx <= dy). For dx <= dy that is
 * the exact least-squares minimiser (||X W||_F = ||X||_F for every such W). For dx > dy it is
 * not (||X W||_F depends on W; even Y = X Q exactly is recovered only when X^T X is a multiple
 * of I), and the least-squares problem has no closed form: `refine` > 0 then improves U V^T by
 * majorisation (Kiers 1990; Koschat & Swayne 1991),
 *   W <- polar(M / s + (rho I - Cxx) W),  rho = lambda_max(Cxx),  polar(G) = U V^T of G's SVD
 * each step lowering the residual, until it stops falling or `refine` steps are done.
 * center: mx, my are the column means (else 0); the map's bias puts Y's mean back,
 *         b = my - s mx W. scale: s = tr(W^T M) / ||(X - mx) W||_F^2, the least-squares factor for
 *         that W (= tr S / ||X - mx||_F^2 when W is square, as in Umeyama's method); else s = 1.
 * The returned map has w = s W. */
typedef struct {
    int center; /* subtract column means (and put Y's back through the bias) */
    int scale;  /* fit one global scale factor s */
    int refine; /* dx > dy only: most majorisation steps after U V^T (0 = the closed form; the
                 * rate is about 1 - lambda_min/lambda_max of Cxx per step, so a few hundred) */
} align_procrustes_opts;

typedef struct {
    double scale;  /* s (1 when not fitted) */
    double resid;  /* ||X w + b - Y||_F / ||Y - my||_F (relative residual, my = 0 uncentred) */
    int rank;      /* numerical rank of M (equals min(dx, dy) on success) */
    int iters;     /* refinement steps taken */
} align_procrustes_info;

/* X (n, dx), Y (n, dy); o NULL = no centring, no scaling; info may be NULL. Needs
 * n >= min(dx, dy) pairs (one more with centring) and M of full rank k, else the map is not
 * unique (XD_ENUM, naming a zero-variance column when there is one). */
xd_status align_procrustes_fit(align_map *map, const float *X, const float *Y, int n, int dx,
                               int dy, const align_procrustes_opts *o, align_procrustes_info *info,
                               xd_err *e);

/* ---------------------------------------------------------------------------------------------
 * CCA with ridge r:  max corr(X a, Y b) over pairs of directions, orthogonal in Cxx and Cyy.
 *
 *   Cxx = Xc^T Xc / (n-1) + r I,  Cyy = Yc^T Yc / (n-1) + r I,  Cxy = Xc^T Yc / (n-1)
 *   Cxx = Lx Lx^T, Cyy = Ly Ly^T (Cholesky),  Lx^-1 Cxy Ly^-T = U S V^T
 *   A = Lx^-T U,  B = Ly^-T V,  corr = S (descending)
 * so A^T Cxx A = I, B^T Cyy B = I and A^T Cxy B = diag(corr): the canonical variates Xc A and
 * Yc B have unit (regularised) variance and pair i correlates with corr_i. r > 0 shrinks the
 * correlations and makes the fit well posed with few pairs or constant columns; r = 0 needs
 * n > max(dx, dy) and no zero-variance column. Signs: each column of A has its largest-magnitude
 * entry positive (the matching column of B flips with it). */
typedef struct {
    int dx, dy, k;
    double ridge;
    float *a;    /* (dx, k) canonical directions of X */
    float *b;    /* (dy, k) canonical directions of Y */
    float *gy;   /* (k, dy) B^T Cyy: maps canonical variates back to Y (see regression map) */
    float *corr; /* (k) canonical correlations, descending */
    float *mx;   /* (dx) column means of X */
    float *my;   /* (dy) column means of Y */
} align_cca;

typedef enum { ALIGN_SIDE_X, ALIGN_SIDE_Y } align_side;

/* k in [0, min(dx, dy)]: pairs to keep, 0 = min(dx, dy). ridge >= 0. */
xd_status align_cca_fit(align_cca *c, const float *X, const float *Y, int n, int dx, int dy, int k,
                        double ridge, xd_err *e);
void align_cca_free(align_cca *c);

/* Projection onto the first k canonical directions of one side: z = (x - m) A_k, an affine map
 * din -> k (W = A_k, b = -m A_k); for the Y side B_k and my. 1 <= k <= c->k. */
xd_status align_cca_project_map(align_map *map, const align_cca *c, align_side side, int k,
                                xd_err *e);

/* Reduced-rank regression of Y on X through k canonical pairs:
 *   y = my + (x - mx) A_k diag(corr_k) B_k^T Cyy
 * With k = min(dx, dy) this equals ridge regression, W = Cxx^-1 Cxy (Cxx with its ridge).
 * Map dx -> dy. 1 <= k <= c->k. */
xd_status align_cca_regression_map(align_map *map, const align_cca *c, int k, xd_err *e);

#endif
