/* CRD with its memory bank (see crd.h). The two sides (the student's embedding against the
 * teacher's bank, the teacher's against the student's) are the same computation on swapped
 * arguments, so each step below is written once for one side. */
#include "distill/crd.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "distill/zoo.h"

/* the normalisation's clamp and NCE's epsilon (the reference code's) */
#define CRD_NORM_EPS 1e-12
#define CRD_NCE_EPS 1e-7
/* dense scores when one example's draws are at least 1/CRD_DENSE_SHARE of the bank */
#define CRD_DENSE_SHARE 16

xd_status kd_crd_bank_init(kd_crd_bank *bk, int n, int dim, int k, float T, float momentum,
                           uint64_t seed, xd_err *e)
{
    memset(bk, 0, sizeof *bk);
    if (n < 1 || dim < 1 || k < 1)
        return xd_fail(e, XD_EARG, "CRD memory bank: needs at least one example, width and "
                                   "negative (got %d, %d, %d)", n, dim, k);
    if (!(T > 0.0f) || !(momentum >= 0.0f && momentum < 1.0f))
        return xd_fail(e, XD_EARG, "CRD memory bank: temperature must be > 0 and momentum in "
                                   "[0, 1) (got %g, %g)", T, momentum);
    size_t bytes;
    if (xd_mul3_size((size_t)n, (size_t)dim, sizeof(float), &bytes) ||
        !(bk->mem_s = xd_try_alloc(bytes)) || !(bk->mem_t = xd_try_alloc(bytes))) {
        free(bk->mem_s);
        bk->mem_s = NULL;
        return xd_fail(e, XD_ENOMEM, "CRD memory bank: cannot allocate 2 x %d x %d floats", n, dim);
    }
    *bk = (kd_crd_bank){.n = n, .dim = dim, .k = k, .T = T, .momentum = momentum,
                        .mem_s = bk->mem_s, .mem_t = bk->mem_t, .z = {-1.0f, -1.0f}};
    bk->dense = (double)(k + 1) * CRD_DENSE_SHARE >= n;
    if (bk->dense && (xd_mul3_size((size_t)n, (size_t)dim, sizeof(double), &bytes) ||
                      !(bk->md[0] = xd_try_alloc(bytes)) || !(bk->md[1] = xd_try_alloc(bytes)))) {
        kd_crd_bank_free(bk);
        return xd_fail(e, XD_ENOMEM, "CRD memory bank: cannot allocate 2 x %d x %d doubles for "
                                     "its scores", n, dim);
    }
    const float stdv = (float)(1.0 / sqrt(dim / 3.0));
    float *mem[2] = {bk->mem_s, bk->mem_t};
    for (int side = 0; side < 2; side++) {
        xd_rng r = xd_rng_make(seed, (uint64_t)side, XD_RNG_BANK);
        for (size_t i = 0; i < (size_t)n * dim; i++)
            mem[side][i] = (2.0f * xd_rng_uniform(&r) - 1.0f) * stdv;
    }
    return XD_OK;
}

void kd_crd_bank_free(kd_crd_bank *bk)
{
    free(bk->mem_s);
    free(bk->mem_t);
    free(bk->md[0]);
    free(bk->md[1]);
    free(bk->sc);
    memset(bk, 0, sizeof *bk);
}

void kd_crd_sample(int32_t *idx, const int32_t *ex, int B, const kd_crd_bank *bk, xd_rng *r)
{
    const int k1 = bk->k + 1;
    for (int b = 0; b < B; b++) {
        XD_ASSERT(ex[b] >= 0 && ex[b] < bk->n);
        idx[(size_t)b * k1] = ex[b];
        for (int j = 1; j < k1; j++) idx[(size_t)b * k1 + j] = (int32_t)xd_rng_below(r, (uint32_t)bk->n);
    }
}

// ----------------------------------------------------------------------------------------------
// loss

/* the save buffer cut into its parts; side 0 is the student's embedding against the teacher's
 * bank, side 1 the reverse */
typedef struct {
    double *e[2];    /* (B, F) unit embeddings */
    double *norm[2]; /* (B) their norms before the clamp */
    double *p[2];    /* (B, K + 1) P */
    double *z;       /* (2) the Z each side used */
    double *g;       /* (B, F) backward's scratch */
} crd_parts;

size_t kd_crd_save_len(int B, int dim, int k)
{
    return 3 * (size_t)B * dim + 2 * (size_t)B + 2 * (size_t)B * (k + 1) + 2;
}

static crd_parts crd_cut(const double *save, int B, int dim, int k)
{
    double *w = (double *)save;
    const size_t bf = (size_t)B * dim, bk = (size_t)B * (k + 1);
    double *p = w + 2 * bf + 2 * B;
    return (crd_parts){{w, w + bf}, {w + 2 * bf, w + 2 * bf + B}, {p, p + bk}, p + 2 * bk,
                       p + 2 * bk + 2};
}

/* the bank a side's embeddings are scored against */
static const float *crd_bank_of(const kd_crd_bank *bk, int side)
{
    return side == 0 ? bk->mem_t : bk->mem_s;
}

/* one side's loss from its P (already divided by Z) */
static double crd_nce(const double *p, int B, const kd_crd_bank *bk)
{
    const int k1 = bk->k + 1;
    const double mpn = (double)bk->k / bk->n, c = mpn + CRD_NCE_EPS;
    double s = 0.0;
    for (int b = 0; b < B; b++) {
        const double *pb = p + (size_t)b * k1;
        s += log(pb[0] / (pb[0] + c));
        for (int j = 1; j < k1; j++) s += log(mpn / (pb[j] + c));
    }
    return -s / B;
}

double kd_crd_forward(double *save, kd_crd_bank *bk, const float *es, const float *et,
                      const int32_t *idx, int B)
{
    const int F = bk->dim, k1 = bk->k + 1;
    crd_parts c = crd_cut(save, B, F, bk->k);
    const float *in[2] = {es, et};
    double loss = 0.0;
    for (int side = 0; side < 2; side++) {
        double *e = c.e[side], *p = c.p[side];
        const float *mem = crd_bank_of(bk, side);
        for (int b = 0; b < B; b++) {
            const float *x = in[side] + (size_t)b * F;
            double ss = 0.0;
            for (int d = 0; d < F; d++) ss += (double)x[d] * x[d];
            c.norm[side][b] = sqrt(ss);
            const double inv = 1.0 / fmax(c.norm[side][b], CRD_NORM_EPS);
            for (int d = 0; d < F; d++) e[(size_t)b * F + d] = x[d] * inv;
        }
        if (bk->dense) {
            /* every score of the batch against the bank, then the drawn ones */
            const size_t N = (size_t)bk->n;
            double *md = bk->md[side];
            if (B > bk->sc_rows) {
                bk->sc = xd_xrealloc(bk->sc, sizeof(double) * (size_t)B * N);
                bk->sc_rows = B;
            }
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < N * F; i++) md[i] = mem[i];
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, (int)N, F, 1.0, e, F, md, F,
                        0.0, bk->sc, (int)N);
            for (int b = 0; b < B; b++)
                for (int j = 0; j < k1; j++)
                    p[(size_t)b * k1 + j] =
                        exp(bk->sc[(size_t)b * N + (size_t)idx[(size_t)b * k1 + j]] / bk->T);
        } else {
#pragma omp parallel for schedule(static) if ((double)B * k1 * F > 65536.0)
            for (int b = 0; b < B; b++)
                for (int j = 0; j < k1; j++) {
                    const float *w = mem + (size_t)idx[(size_t)b * k1 + j] * F;
                    double u = 0.0;
                    for (int d = 0; d < F; d++) u += (double)w[d] * e[(size_t)b * F + d];
                    p[(size_t)b * k1 + j] = exp(u / bk->T);
                }
        }
        /* Z: the bank's, or set by this first batch (a float, as the reference code's .item() of
         * a float32 tensor) and a constant for the gradient either way */
        double z = bk->z[side];
        if (z < 0.0) {
            double sum = 0.0;
            for (size_t i = 0; i < (size_t)B * k1; i++) sum += p[i];
            z = (float)(sum / ((double)B * k1) * bk->n);
        }
        c.z[side] = z;
        for (size_t i = 0; i < (size_t)B * k1; i++) p[i] /= z;
        loss += crd_nce(p, B, bk);
    }
    return loss;
}

/* dL/dP times dP/du = P / T for draw j of an example */
static double crd_coef(double pj, int j, double cc, int B, double T)
{
    const double dp = j == 0 ? -cc / (pj * (pj + cc)) : 1.0 / (pj + cc);
    return dp / B * pj / T;
}

void kd_crd_backward(float *des, float *det, double *save, const kd_crd_bank *bk,
                     const int32_t *idx, int B, float weight)
{
    const int F = bk->dim, k1 = bk->k + 1;
    crd_parts c = crd_cut(save, B, F, bk->k);
    const double mpn = (double)bk->k / bk->n, cc = mpn + CRD_NCE_EPS;
    float *out[2] = {des, det};
    for (int side = 0; side < 2; side++) {
        if (!out[side]) continue;
        const float *mem = crd_bank_of(bk, side);
        const double *p = c.p[side];
        if (bk->dense) {
            /* g = C md, C (B, N) holding each drawn row's coefficient (summed over repeats) */
            const size_t N = (size_t)bk->n;
            memset(bk->sc, 0, sizeof(double) * (size_t)B * N);
            for (int b = 0; b < B; b++)
                for (int j = 0; j < k1; j++)
                    bk->sc[(size_t)b * N + (size_t)idx[(size_t)b * k1 + j]] +=
                        crd_coef(p[(size_t)b * k1 + j], j, cc, B, bk->T);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, F, (int)N, 1.0, bk->sc,
                        (int)N, bk->md[side], F, 0.0, c.g, F);
        }
#pragma omp parallel for schedule(static) if ((double)B * k1 * F > 65536.0)
        for (int b = 0; b < B; b++) {
            double *g = c.g + (size_t)b * F;
            if (!bk->dense) {
                for (int d = 0; d < F; d++) g[d] = 0.0;
                for (int j = 0; j < k1; j++) {
                    const double coef = crd_coef(p[(size_t)b * k1 + j], j, cc, B, bk->T);
                    const float *w = mem + (size_t)idx[(size_t)b * k1 + j] * F;
                    for (int d = 0; d < F; d++) g[d] += coef * w[d];
                }
            }
            kd_unit_backward(g, c.e[side] + (size_t)b * F, g, c.norm[side][b], F, 1);
            for (int d = 0; d < F; d++) out[side][(size_t)b * F + d] += (float)(weight * g[d]);
        }
    }
}

void kd_crd_bank_update(kd_crd_bank *bk, const double *save, const int32_t *ex, int B)
{
    const int F = bk->dim;
    crd_parts c = crd_cut(save, B, F, bk->k);
    /* side 0's embeddings are the student's, kept in mem_s */
    float *mem[2] = {bk->mem_s, bk->mem_t};
    for (int side = 0; side < 2; side++) {
        if (bk->z[side] < 0.0f) bk->z[side] = (float)c.z[side];
        for (int b = 0; b < B; b++) {
            float *row = mem[side] + (size_t)ex[b] * F;
            const double *e = c.e[side] + (size_t)b * F;
            const double m = bk->momentum;
            double ss = 0.0;
            for (int d = 0; d < F; d++) {
                const double v = m * row[d] + (1.0 - m) * e[d];
                ss += v * v;
            }
            const double inv = 1.0 / fmax(sqrt(ss), CRD_NORM_EPS);
            for (int d = 0; d < F; d++) row[d] = (float)((m * row[d] + (1.0 - m) * e[d]) * inv);
        }
    }
}

// ----------------------------------------------------------------------------------------------
// resume state

void kd_crd_bank_tensors(const kd_crd_bank *bk, const char *prefix, io_tensor *t,
                         char names[KD_CRD_TENSORS][64])
{
    static const char *suffix[KD_CRD_TENSORS] = {"mem_s", "mem_t", "z"};
    const int64_t mem_shape[2] = {bk->n, bk->dim}, z_shape[1] = {2};
    const void *data[KD_CRD_TENSORS] = {bk->mem_s, bk->mem_t, bk->z};
    for (int i = 0; i < KD_CRD_TENSORS; i++) {
        snprintf(names[i], 64, "%s.%s", prefix, suffix[i]);
        io_tensor_set(&t[i], names[i], IO_F32, i < 2 ? 2 : 1, i < 2 ? mem_shape : z_shape,
                      data[i]);
    }
}

xd_status kd_crd_bank_load(kd_crd_bank *bk, const io_st_file *f, const char *prefix, xd_err *e)
{
    io_tensor want[KD_CRD_TENSORS];
    char names[KD_CRD_TENSORS][64];
    kd_crd_bank_tensors(bk, prefix, want, names);
    const io_tensor *got[KD_CRD_TENSORS];
    for (int i = 0; i < KD_CRD_TENSORS; i++) {
        got[i] = io_st_find(f, names[i]);
        if (!got[i]) return xd_fail(e, XD_EFORMAT, "%s: no tensor '%s'", io_st_path(f), names[i]);
        char have[64], need[64];
        io_shape_format(got[i]->ndim, got[i]->shape, have, sizeof have);
        io_shape_format(want[i].ndim, want[i].shape, need, sizeof need);
        if (got[i]->dtype != IO_F32 || strcmp(have, need) != 0)
            return xd_fail(e, XD_EFORMAT, "%s: tensor '%s' is %s %s, expected F32 %s",
                           io_st_path(f), names[i], io_dtype_name(got[i]->dtype), have, need);
        const float *v = got[i]->data;
        for (size_t j = 0; j < (size_t)want[i].shape[0] * (i < 2 ? (size_t)bk->dim : 1); j++)
            if (!isfinite(v[j]))
                return xd_fail(e, XD_EFORMAT, "%s: tensor '%s' holds a non-finite value at index %zu",
                               io_st_path(f), names[i], j);
    }
    memcpy(bk->mem_s, got[0]->data, sizeof(float) * (size_t)bk->n * bk->dim);
    memcpy(bk->mem_t, got[1]->data, sizeof(float) * (size_t)bk->n * bk->dim);
    memcpy(bk->z, got[2]->data, sizeof bk->z);
    return XD_OK;
}
