/* Evaluation (see trainer.h, train_run.h): a model's accuracy and balanced accuracy on a feed,
 * and each trainable model's scores at an evaluation: on the test split, on the validation split
 * (which then picks its best checkpoint) and on each eval set. */
#include "distill/train_run.h"

#include <stdlib.h>

#include "core/dist.h"
#include "core/mem.h"
#include "distill/scores.h"

/* The examples this rank scores, [lo, hi) of n, as indices (a new array when idx is NULL). */
static const uint32_t *eval_slice(const uint32_t *idx, size_t n, size_t *lo, size_t *hi,
                                  uint32_t **own)
{
    dist_slice(n, dist_rank(), lo, hi);
    *own = NULL;
    if (idx) return idx + *lo;
    if (dist_size() == 1) return NULL;
    *own = xd_xmalloc(sizeof(uint32_t) * (*hi - *lo + 1));
    for (size_t i = *lo; i < *hi; i++) (*own)[i - *lo] = (uint32_t)i;
    return *own;
}

/* Rows a chunk of train_score's predictions holds: whole batches of the model, about this many
 * rows, so that scoring a split needs no memory that grows with it (the counts are sums). */
enum { SCORE_CHUNK_ROWS = 8192 };

xd_status train_score(nn_model *m, int head, feed *f, const uint32_t *idx, size_t n,
                      const int32_t *labels, void *input, double *acc, double *bacc, xd_err *e)
{
    /* a text.* feed is scored on every (example, language) pair that has a text: the accuracy
     * over all languages, not over the first one */
    const int all_langs = f->kind == FEED_TEXT && f->n_langs > 1;
    /* a label beyond a narrower head is a wrong answer, not a row left out (every rank sees all
     * the labels, so all count the same classes) */
    int K = nn_model_node(m, head)->c;
    for (size_t i = 0; i < n; i++)
        if (labels[idx ? idx[i] : i] >= K) K = labels[idx ? idx[i] : i] + 1;
    /* with several ranks each scores its slice of the examples; the counts are summed */
    size_t lo, hi;
    dist_slice(n, dist_rank(), &lo, &hi);
    /* chunks of whole batches, each batch the examples it was before chunks (the same rows) */
    const size_t B = (size_t)m->max_batch, per_ex = scores_rows_at(m, head, f, 1, all_langs);
    size_t chunk = SCORE_CHUNK_ROWS / (B * (per_ex ? per_ex : 1)) * B;
    if (chunk == 0) chunk = B;
    const size_t rows_max = scores_rows_at(m, head, f, chunk, all_langs);
    int32_t *pred = xd_xmalloc(sizeof(int32_t) * (rows_max ? rows_max : 1));
    int32_t *truth = xd_xmalloc(sizeof(int32_t) * (rows_max ? rows_max : 1));
    uint32_t *at = xd_xmalloc(sizeof(uint32_t) * chunk);
    scores sc;
    scores_init(&sc, K);
    xd_status s = XD_OK;
    for (size_t c0 = lo; c0 < hi && s == XD_OK; c0 += chunk) {
        const size_t c = hi - c0 < chunk ? hi - c0 : chunk;
        for (size_t j = 0; j < c; j++) at[j] = idx ? idx[c0 + j] : (uint32_t)(c0 + j);
        s = scores_predict_at(m, head, f, at, c, all_langs, input, pred, NULL, NULL, e);
        if (s != XD_OK) break;
        scores_row_truth(m, head, f, at, c, all_langs, labels, truth);
        scores_add(&sc, pred, truth, scores_rows_at(m, head, f, c, all_langs));
    }
    if ((s = dist_agree(s, e)) == XD_OK) {
        dist_sum_counts(sc.count, (size_t)K * (size_t)K);
        dist_sum_counts(&sc.total, 1);
        dist_sum_counts(&sc.correct, 1);
        *acc = scores_accuracy(&sc);
        if (bacc) *bacc = scores_balanced_accuracy(&sc);
    }
    scores_free(&sc);
    free(at);
    free(truth);
    free(pred);
    return s;
}

xd_status trainer_evaluate(nn_model *m, int head, feed *f, const int32_t *labels, void *input,
                           double *acc, xd_err *e)
{
    return train_score(m, head, f, NULL, f->n, labels, input, acc, NULL, e);
}

/* Model k's score on feed f at the examples idx[0..n) (NULL: all) against labels, or masks for
 * a segment task: acc (or mIoU), bacc (or pixel accuracy). */
static xd_status score_split(train_run *R, int k, feed *f, const uint32_t *idx, size_t n,
                             const int32_t *labels, const uint8_t *masks, void *input, double *acc,
                             double *bacc, xd_err *e)
{
    model_rt *mk = &R->models[k];
    const int head = nn_model_default_head(&mk->m);
    if (!R->seg.on) return train_score(&mk->m, head, f, idx, n, labels, input, acc, bacc, e);
    seg_scores sc;
    size_t lo, hi;
    uint32_t *own;
    const uint32_t *at = eval_slice(idx, n, &lo, &hi, &own);
    xd_status s = seg_evaluate_at(&mk->m, head, f, at, hi - lo, masks, R->seg.n_classes, input,
                                  &sc, e);
    free(own);
    *acc = sc.miou;
    *bacc = sc.pixel_acc;
    return s;
}

/* The score on the test split: accuracy (with its balanced accuracy in bacc), or for a segment
 * task the mIoU (its pixel accuracy goes to pixel_acc). Stored in the model's acc too. */
xd_status train_evaluate_test(train_run *R, int k, double *acc, xd_err *e)
{
    model_rt *mk = &R->models[k];
    double other = 0.0;
    xd_status s = score_split(R, k, &mk->test, NULL, mk->test.n, R->ytest, R->seg.test_mask,
                              mk->eval_input, acc, &other, e);
    mk->acc = *acc;
    if (R->seg.on) mk->pixel_acc = other;
    else mk->bacc = other;
    return s;
}

xd_status train_evaluate_val(train_run *R, int k, xd_err *e)
{
    model_rt *mk = &R->models[k];
    xd_status s = XD_OK;
    if (R->has_val) {
        /* held out of train: scored through the training feed, without augmentation */
        feed *f = R->held ? &mk->train : &mk->val;
        double other = 0.0;
        s = score_split(R, k, f, R->val_idx, R->n_val, R->yval, R->val_masks, mk->input,
                        &mk->val_acc, &other, e);
        if (R->seg.on) mk->val_pixel_acc = other;
        else mk->val_bacc = other;
    }
    for (int i = 0; i < mk->n_eval && s == XD_OK; i++) {
        feed *f = &mk->eval_feeds[i];
        s = train_score(&mk->m, nn_model_default_head(&mk->m), f, NULL, f->n, R->eval_y[i],
                        mk->eval_input, &mk->eval_acc[i], &mk->eval_bacc[i], e);
    }
    return s;
}
