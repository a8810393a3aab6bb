/* Scores beyond one accuracy: a model's prediction for every row of a split (an example, an
 * (example, language) pair of a text.* view, or a pixel of a segmentation map), and the confusion
 * matrix, per-class accuracy and balanced accuracy of predictions against true classes.
 *
 * Predictions are the argmax of the head's scores (ties: the lower class, as nn_count_correct
 * and the segmentation scores take them), so the accuracy of scores_predict's rows is the
 * accuracy trainer_evaluate and seg_evaluate report. */
#ifndef XD_DISTILL_SCORES_H
#define XD_DISTILL_SCORES_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "distill/feed.h"
#include "nn/model.h"

/* Confusion counts of K classes: count[t * K + p] rows with true class t predicted as p. */
typedef struct {
    int K;
    uint64_t *count; /* (K, K) */
    uint64_t total, correct;
} scores;

void scores_init(scores *s, int K);
void scores_free(scores *s);
/* Adds n rows; a row with pred < 0 (no prediction: a pair without text) or a true class outside
 * 0..K-1 is skipped. */
void scores_add(scores *s, const int32_t *pred, const int32_t *truth, size_t n);
double scores_accuracy(const scores *s);
/* Share of class k's rows predicted as k; -1 when the class has no row. */
double scores_class_accuracy(const scores *s, int k);
/* Intersection over union of class k (segmentation's per-class figure); -1 when k is neither
 * true nor predicted anywhere. */
double scores_class_iou(const scores *s, int k);
/* Mean per-class accuracy over the classes that have rows. */
double scores_balanced_accuracy(const scores *s);
/* Rows of true class k. */
uint64_t scores_support(const scores *s, int k);

/* Rows scores_predict fills for node head of m on feed f: examples x (all_langs and a text feed
 * of several languages: its languages) x the head's positions (h * w; 1 for a classifier). */
size_t scores_rows(const nn_model *m, int head, const feed *f, int all_langs);

/* Runs the layers of m that head needs (eval mode, batches of max_batch; an early exit without
 * the layers after it) over every example of f and writes the argmax class of each row of head
 * to pred and its softmax probability to conf (may be NULL). all_langs = 1
 * on a text feed of several languages: language-major rows (lang * n + i) for every pair, pred
 * -1 where the example has no text in that language; 0: one row per example from its first
 * language. Row order within an example: its positions, row-major. input: scratch for one batch. */
xd_status scores_predict(nn_model *m, int head, feed *f, int all_langs, void *input,
                         int32_t *pred, float *conf, xd_err *e);

#endif
