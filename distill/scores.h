/* Scores beyond one accuracy: a model's prediction for every row of a split (an example, an
 * (example, language) pair of a text.* view, or a pixel of a segmentation map), and the confusion
 * matrix, per-class recall (accuracy) and precision, balanced accuracy and expected calibration
 * error of predictions against true classes.
 *
 * Expected calibration error (Guo et al. 2017): the rows' confidences (the softmax probability of
 * the predicted class) fall into SCORES_ECE_BINS equal-width bins, bin b holding (b/M, (b+1)/M]
 * (confidence 0 in the first); ECE = sum over bins of (rows in b / rows) * |accuracy of b - mean
 * confidence of b|, 0 for a model whose confidence is its accuracy.
 *
 * Predictions are the argmax of the head's scores (ties: the lower class, as nn_count_correct
 * and the segmentation scores take them), so the accuracy of scores_predict's rows is the
 * accuracy trainer_evaluate and seg_evaluate report. */
#ifndef XD_DISTILL_SCORES_H
#define XD_DISTILL_SCORES_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "core/status.h"
#include "distill/feed.h"
#include "nn/model.h"

#define SCORES_ECE_BINS 15

/* Confusion counts of K classes: count[t * K + p] rows with true class t predicted as p; and the
 * calibration bins of the rows added with their confidence. */
typedef struct {
    int K;
    uint64_t *count; /* (K, K) */
    uint64_t total, correct;
    uint64_t bin_n[SCORES_ECE_BINS], bin_correct[SCORES_ECE_BINS];
    double bin_conf[SCORES_ECE_BINS]; /* confidences summed */
} scores;

void scores_init(scores *s, int K);
void scores_free(scores *s);
/* Adds n rows; a row with pred < 0 (no prediction: a pair without text) or a true class outside
 * 0..K-1 is skipped. */
void scores_add(scores *s, const int32_t *pred, const int32_t *truth, size_t n);
/* scores_add, and each counted row's confidence conf[i] (in [0, 1]) into the calibration bins. */
void scores_add_conf(scores *s, const int32_t *pred, const float *conf, const int32_t *truth,
                     size_t n);
double scores_accuracy(const scores *s);
/* Share of class k's rows predicted as k (its recall); -1 when the class has no row. */
double scores_class_accuracy(const scores *s, int k);
/* Share of the rows predicted as k that are of class k; -1 when no row is predicted as k. */
double scores_class_precision(const scores *s, int k);
/* Expected calibration error over the rows added with scores_add_conf; -1 when there were none. */
double scores_ece(const scores *s);
/* Intersection over union of class k (segmentation's per-class figure); -1 when k is neither
 * true nor predicted anywhere. */
double scores_class_iou(const scores *s, int k);
/* Mean per-class accuracy over the classes that have rows. */
double scores_balanced_accuracy(const scores *s);
/* Rows of true class k. */
uint64_t scores_support(const scores *s, int k);
/* Every figure as a new JSON object: rows, accuracy, balanced_accuracy, ece (null without
 * confidences), classes: [{name, support, precision, recall}] (null where a figure has no rows),
 * confusion: K rows (true class) of K counts (predicted class). names: the K class names, NULL
 * for "0", "1", ... */
json_t *scores_json(const scores *s, const char *const *names);

/* Rows scores_predict fills for node head of m on feed f: examples x (all_langs and a text feed
 * of several languages: its languages) x the head's positions (h * w; 1 for a classifier). */
size_t scores_rows(const nn_model *m, int head, const feed *f, int all_langs);
/* The same for n examples of f (scores_predict_at). */
size_t scores_rows_at(const nn_model *m, int head, const feed *f, size_t n, int all_langs);

/* Runs the layers of m that head needs (eval mode, batches of max_batch; an early exit without
 * the layers after it) over every example of f and writes the argmax class of each row of head
 * to pred and its softmax probability to conf (may be NULL); an output that is not finite is
 * XD_ENUM naming the example (nn_check_finite), never a class. all_langs = 1
 * on a text feed of several languages: language-major rows (lang * n + i) for every pair, pred
 * -1 where the example has no text in that language; 0: one row per example from its first
 * language. Row order within an example: its positions, row-major. input: scratch for one batch. */
xd_status scores_predict(nn_model *m, int head, feed *f, int all_langs, void *input,
                         int32_t *pred, float *conf, xd_err *e);
/* scores_predict over the n examples idx[0..n) of f (idx NULL: the first n, in order): rows
 * lang * n + j for example idx[j]; prob (rows, K), may be NULL, gets each row's softmax. */
xd_status scores_predict_at(nn_model *m, int head, feed *f, const uint32_t *idx, size_t n,
                            int all_langs, void *input, int32_t *pred, float *conf, float *prob,
                            xd_err *e);
/* The true class of each row scores_predict_at fills: labels[idx[j]] (labels indexed by the
 * example's place in f) for every row of example j. */
void scores_row_truth(const nn_model *m, int head, const feed *f, const uint32_t *idx, size_t n,
                      int all_langs, const int32_t *labels, int32_t *truth);

#endif
