/* Evaluation (see trainer.h, train_run.h): a model's accuracy and balanced accuracy on a feed,
 * and each trainable model's scores at an evaluation: on the test split, on the validation split
 * (which then picks its best checkpoint) and on each eval set. */
#include "distill/train_run.h"

#include <stdlib.h>

#include "core/dist.h"
#include "core/mem.h"
#include "distill/scores.h"

static int ex_member(const ex_set *x, size_t i)
{
    return (!x->bits || xd_bit(x->bits, i)) && (!x->mask || x->mask[i]);
}

/* Up to cap members of x from example *at on into out (their numbers); *at moves past them. */
static size_t ex_take(const ex_set *x, size_t *at, uint32_t *out, size_t cap)
{
    size_t k = 0;
    for (; *at < x->n && k < cap; ++*at)
        if (ex_member(x, *at)) out[k++] = (uint32_t)*at;
    return k;
}

/* The members [lo, hi) of x that this rank scores: *at is set past the lo members before them
 * (ex_take finds the first from there). */
static void ex_slice(const ex_set *x, size_t *lo, size_t *hi, size_t *at)
{
    dist_slice(x->members, dist_rank(), lo, hi);
    *at = 0;
    size_t skip = *lo;
    for (; skip && *at < x->n; ++*at) skip -= (size_t)ex_member(x, *at);
    XD_ASSERT(skip == 0); /* x->members is no more than the members there are */
}

/* Rows a chunk of train_score's predictions holds: whole batches of the model, about this many
 * rows, so that scoring a split needs no memory that grows with it (the counts are sums). */
enum { SCORE_CHUNK_ROWS = 8192 };

xd_status train_score(nn_model *m, int head, feed *f, const ex_set *x, const int32_t *labels,
                      void *input, double *acc, double *bacc, xd_err *e)
{
    /* a text.* feed is scored on every (example, language) pair that has a text: the accuracy
     * over all languages, not over the first one */
    const int all_langs = f->kind == FEED_TEXT && f->n_langs > 1;
    /* a label beyond a narrower head is a wrong answer, not a row left out (every rank sees all
     * the labels, so all count the same classes) */
    int K = nn_model_node(m, head)->c;
    for (size_t i = 0; i < x->n; i++)
        if (ex_member(x, i) && labels[i] >= K) K = labels[i] + 1;
    /* with several ranks each scores its slice of the examples; the counts are summed */
    size_t lo, hi, at;
    ex_slice(x, &lo, &hi, &at);
    /* chunks of whole batches, each batch the examples it was before chunks (the same rows) */
    const size_t B = (size_t)m->max_batch, per_ex = scores_rows_at(m, head, f, 1, all_langs);
    size_t chunk = SCORE_CHUNK_ROWS / (B * (per_ex ? per_ex : 1)) * B;
    if (chunk == 0) chunk = B;
    const size_t rows_max = scores_rows_at(m, head, f, chunk, all_langs);
    int32_t *pred = xd_xmalloc(sizeof(int32_t) * (rows_max ? rows_max : 1));
    int32_t *truth = xd_xmalloc(sizeof(int32_t) * (rows_max ? rows_max : 1));
    uint32_t *idx = xd_xmalloc(sizeof(uint32_t) * chunk);
    scores sc;
    scores_init(&sc, K);
    xd_status s = XD_OK;
    for (size_t done = lo; done < hi && s == XD_OK;) {
        const size_t c = ex_take(x, &at, idx, hi - done < chunk ? hi - done : chunk);
        XD_ASSERT(c > 0);
        done += c;
        s = scores_predict_at(m, head, f, idx, c, all_langs, input, pred, NULL, NULL, e);
        if (s != XD_OK) break;
        scores_row_truth(m, head, f, idx, c, all_langs, labels, truth);
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
    free(idx);
    free(truth);
    free(pred);
    return s;
}

xd_status trainer_evaluate(nn_model *m, int head, feed *f, const int32_t *labels, void *input,
                           double *acc, xd_err *e)
{
    const ex_set all = ex_all(f->n);
    return train_score(m, head, f, &all, labels, input, acc, NULL, e);
}

/* Model k's score on feed f at the examples of x against labels, or masks for a segment task:
 * acc (or mIoU), bacc (or pixel accuracy). */
static xd_status score_split(train_run *R, int k, feed *f, const ex_set *x, const int32_t *labels,
                             const uint8_t *masks, void *input, double *acc, double *bacc,
                             xd_err *e)
{
    model_rt *mk = &R->models[k];
    const int head = nn_model_default_head(&mk->m);
    if (!R->seg.on) return train_score(&mk->m, head, f, x, labels, input, acc, bacc, e);
    /* a segment task's scores come from one pass over this rank's examples, listed */
    seg_scores sc = {0}; /* read below whether or not the pass succeeded */
    size_t lo, hi, at;
    ex_slice(x, &lo, &hi, &at);
    uint32_t *idx = xd_xmalloc(sizeof(uint32_t) * (hi - lo + 1));
    const size_t n = ex_take(x, &at, idx, hi - lo);
    XD_ASSERT(n == hi - lo);
    xd_status s = seg_evaluate_at(&mk->m, head, f, idx, n, masks, R->seg.n_classes, input, &sc, e);
    free(idx);
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
    const ex_set all = ex_all(mk->test.n);
    xd_status s = score_split(R, k, &mk->test, &all, R->ytest, R->seg.test_mask, mk->eval_input,
                              acc, &other, e);
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
        s = score_split(R, k, f, &R->val, R->yval, R->val_masks, mk->input, &mk->val_acc, &other,
                        e);
        if (R->seg.on) mk->val_pixel_acc = other;
        else mk->val_bacc = other;
    }
    for (int i = 0; i < mk->n_eval && s == XD_OK; i++) {
        feed *f = &mk->eval_feeds[i];
        const ex_set all = ex_all(f->n);
        s = train_score(&mk->m, nn_model_default_head(&mk->m), f, &all, R->eval_y[i],
                        mk->eval_input, &mk->eval_acc[i], &mk->eval_bacc[i], e);
    }
    return s;
}
