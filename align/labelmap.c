/* Label-space maps (see labelmap.h). */
#include "align/labelmap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static xd_status check_sizes(int kt, int ks, xd_err *e)
{
    if (kt < 1 || ks < 1 || kt > ALIGN_LABELMAP_MAX_CLASSES || ks > ALIGN_LABELMAP_MAX_CLASSES)
        return xd_fail(e, XD_EARG, "label map: %d teacher and %d student classes, each must be in "
                       "[1, %d]", kt, ks, ALIGN_LABELMAP_MAX_CLASSES);
    size_t n;
    if (xd_mul3_size((size_t)kt, (size_t)ks, sizeof(float), &n) || n > ((size_t)1 << 32))
        return xd_fail(e, XD_EARG, "label map: a %d x %d matrix is too large", kt, ks);
    return XD_OK;
}

void align_labelmap_free(align_labelmap *lm)
{
    if (!lm) return;
    free(lm->m);
    free(lm->table);
    memset(lm, 0, sizeof *lm);
}

/* M[c][k] = [k == table[c]] */
xd_status align_labelmap_from_table(align_labelmap *lm, const int32_t *table, int kt, int ks,
                                    xd_err *e)
{
    memset(lm, 0, sizeof *lm);
    xd_status st = check_sizes(kt, ks, e);
    if (st != XD_OK) return st;
    for (int c = 0; c < kt; c++)
        if (table[c] < 0 || table[c] >= ks)
            return xd_fail(e, XD_EARG,
                           "label map: table[%d] = %d is not a student class (0..%d)", c,
                           (int)table[c], ks - 1);
    lm->kt = kt;
    lm->ks = ks;
    lm->table = xd_xmalloc((size_t)kt * sizeof(int32_t));
    memcpy(lm->table, table, (size_t)kt * sizeof(int32_t));
    lm->m = xd_xcalloc((size_t)kt * ks, sizeof(float));
    for (int c = 0; c < kt; c++) lm->m[(size_t)c * ks + table[c]] = 1.0f;
    return XD_OK;
}

/* M = m after checking m >= 0, finite, |sum_k m[c][k] - 1| <= tol */
xd_status align_labelmap_from_matrix(align_labelmap *lm, const float *m, int kt, int ks, float tol,
                                     xd_err *e)
{
    memset(lm, 0, sizeof *lm);
    xd_status st = check_sizes(kt, ks, e);
    if (st != XD_OK) return st;
    if (!(tol >= 0.0f) || !isfinite(tol))
        return xd_fail(e, XD_EARG, "label map: tolerance %g must be finite and >= 0", (double)tol);
    for (int c = 0; c < kt; c++) {
        const float *row = m + (size_t)c * ks;
        double sum = 0.0;
        for (int k = 0; k < ks; k++) {
            if (!isfinite(row[k]))
                return xd_fail(e, XD_ENUM, "label map: M[%d][%d] = %g is not finite", c, k,
                               (double)row[k]);
            if (row[k] < 0.0f)
                return xd_fail(e, XD_EARG, "label map: M[%d][%d] = %g is negative", c, k,
                               (double)row[k]);
            sum += row[k];
        }
        if (!(fabs(sum - 1.0) <= tol))
            return xd_fail(e, XD_EARG,
                           "label map: row %d (teacher class %d) sums to %.6g, not 1 "
                           "(tolerance %g)",
                           c, c, sum, (double)tol);
    }
    lm->kt = kt;
    lm->ks = ks;
    lm->m = xd_xmalloc((size_t)kt * ks * sizeof(float));
    memcpy(lm->m, m, (size_t)kt * ks * sizeof(float));
    return XD_OK;
}

/* q = p M (a sparse sum for a table) */
void align_labelmap_apply(float *q, const float *p, const align_labelmap *lm, int B)
{
    const int kt = lm->kt, ks = lm->ks;
#pragma omp parallel for
    for (int b = 0; b < B; b++) {
        const float *pb = p + (size_t)b * kt;
        float *qb = q + (size_t)b * ks;
        if (lm->table) {
            /* few classes per student class: accumulate in place, then nothing to convert */
            for (int k = 0; k < ks; k++) qb[k] = 0.0f;
            for (int c = 0; c < kt; c++) qb[lm->table[c]] += pb[c];
            continue;
        }
        for (int k = 0; k < ks; k++) {
            double s = 0.0;
            for (int c = 0; c < kt; c++) s += (double)pb[c] * lm->m[(size_t)c * ks + k];
            qb[k] = (float)s;
        }
    }
}

/* ys = table[yt] (or -1) */
xd_status align_labelmap_labels(int32_t *ys, const int32_t *yt, int n, const align_labelmap *lm,
                                xd_err *e)
{
    if (!lm->table)
        return xd_fail(e, XD_EARG, "label map: a general matrix maps a class to several classes, "
                       "so hard labels have no single image (use a many-to-one table)");
    for (int i = 0; i < n; i++) ys[i] = yt[i] >= 0 && yt[i] < lm->kt ? lm->table[yt[i]] : -1;
    return XD_OK;
}
