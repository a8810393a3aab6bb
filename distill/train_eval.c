/* Evaluation (see trainer.h, train_run.h): a model's accuracy on a feed, and the test score of
 * each trainable model that picks its best checkpoint. */
#include "distill/train_run.h"

#include <stdlib.h>

#include "core/mem.h"
#include "distill/scores.h"

xd_status trainer_evaluate(nn_model *m, int head, feed *f, const int32_t *labels, void *input,
                           double *acc, xd_err *e)
{
    /* a text.* feed is scored on every (example, language) pair that has a text: the accuracy
     * over all languages, not over the first one */
    const int all_langs = f->kind == FEED_TEXT && f->n_langs > 1;
    const size_t rows = scores_rows(m, head, f, all_langs);
    int32_t *pred = xd_xmalloc(sizeof(int32_t) * (rows ? rows : 1));
    xd_status s = scores_predict(m, head, f, all_langs, input, pred, NULL, e);
    const nn_node *hn = nn_model_node(m, head);
    const size_t per = (size_t)hn->h * (size_t)hn->w; /* rows of one example: 1 for a classifier */
    size_t correct = 0, scored = 0;
    for (size_t r = 0; r < rows && s == XD_OK; r++) {
        if (pred[r] < 0) continue; /* a pair without text */
        scored++;
        correct += pred[r] == labels[r / per % f->n];
    }
    free(pred);
    *acc = scored ? (double)correct / (double)scored : 0.0;
    return s;
}

/* The score on the test split that picks model k's best checkpoint: accuracy, or for a segment
 * task the mIoU (its pixel accuracy goes to pixel_acc). Stored in the model's acc too. */
xd_status train_evaluate_test(train_run *R, int k, double *acc, xd_err *e)
{
    model_rt *mk = &R->models[k];
    const int head = nn_model_default_head(&mk->m);
    xd_status s;
    if (!R->seg.on) {
        s = trainer_evaluate(&mk->m, head, &mk->test, R->ytest, mk->eval_input, acc, e);
    } else {
        seg_scores sc;
        s = seg_evaluate(&mk->m, head, &mk->test, R->seg.test_mask, R->seg.n_classes,
                         mk->eval_input, &sc, e);
        *acc = sc.miou;
        mk->pixel_acc = sc.pixel_acc;
    }
    mk->acc = *acc;
    return s;
}
