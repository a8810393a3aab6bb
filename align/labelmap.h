/* Label-space maps: teacher classes -> student classes.
 *
 * A teacher trained on finer (or just different) classes than the student can still teach it if
 * each teacher class says how its probability splits over the student's classes. The map is a
 * row-stochastic matrix M (Kt, Ks) and a teacher distribution p (Kt) becomes q = p M (Ks): mass
 * moves, none is made or lost, so q sums to what p sums to and a soft-target loss
 * (kd_soft_ce_forward in distill/) can take q directly. A teacher's logits are turned into p
 * first (kd_soft_targets, with its temperature); map probabilities, never logits.
 *
 * Two ways to build one:
 *  - many-to-one, an int table: teacher class c belongs to student class table[c] (emoji
 *    subgroup -> group, fine -> coarse); applied as a sparse sum;
 *  - a general matrix, e.g. a teacher class that is half one student class and half another.
 * Both are validated when built (tables and matrices come from recipes and files), with a message
 * naming the entry; applying a built map cannot fail. */
#ifndef XD_ALIGN_LABELMAP_H
#define XD_ALIGN_LABELMAP_H

#include <stdint.h>

#include "core/status.h"

/* Largest class count on either side (a sanity limit, far above any real label set). */
#define ALIGN_LABELMAP_MAX_CLASSES 1000000

typedef struct {
    int kt, ks;
    float *m;       /* (kt, ks) row-stochastic: m[c][k] = share of teacher class c in class k */
    int32_t *table; /* (kt) student class of each teacher class, or NULL for a general matrix */
} align_labelmap;

/* M[c][table[c]] = 1. Every entry of table (kt) must be in [0, ks). Not every student class
 * needs a teacher class (such a class simply gets q = 0). */
xd_status align_labelmap_from_table(align_labelmap *lm, const int32_t *table, int kt, int ks,
                                    xd_err *e);

/* M = m (kt, ks), copied. Entries finite (else XD_ENUM) and >= 0, every row summing to 1 within
 * tol (say 1e-4; else XD_EARG naming the row and its sum). */
xd_status align_labelmap_from_matrix(align_labelmap *lm, const float *m, int kt, int ks, float tol,
                                     xd_err *e);

void align_labelmap_free(align_labelmap *lm);

/* q = p M:  q[b][k] = sum_c p[b][c] M[c][k];  p (B, kt), q (B, ks). A matrix sums in double; a
 * table adds each teacher probability into its one student class. */
void align_labelmap_apply(float *q, const float *p, const align_labelmap *lm, int B);

/* Hard labels through a many-to-one map: ys[i] = table[yt[i]], or -1 where yt[i] is outside
 * [0, kt) (e.g. -1 for unlabelled). XD_EARG for a general matrix, which has no single image. */
xd_status align_labelmap_labels(int32_t *ys, const int32_t *yt, int n, const align_labelmap *lm,
                                xd_err *e);

#endif
