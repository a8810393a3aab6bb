/* The trainable models of a run: the one-student form's student, or every model of a recipe's
 * `models:` list, each with its own view of the training and test splits, its own input buffers,
 * optimizer, trainable segments and scores. The trainer (distill/trainer.c) runs them all in every
 * step: every forward first, then the losses, every backward and every optimizer step.
 *
 * Model 0 is built from the run's seed, so a one-student recipe starts where it always did; model
 * k > 0 from a seed derived from (seed, k), so that two peers of one architecture start apart.
 * Its files are named after it (DIR/NAME.best.safetensors) when a run has several models, and
 * carry today's names (DIR/best.safetensors) when it has one. */
#ifndef XD_DISTILL_MODELS_H
#define XD_DISTILL_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "distill/feed.h"
#include "distill/recipe.h"
#include "io/dataset.h"
#include "nn/model.h"
#include "nn/optim.h"

typedef struct {
    const recipe_model *rm;
    nn_model m;
    feed train, test;        /* its view of the two splits */
    feed val;                /* its view of data.val (a validation split of its own); else unused */
    void *input, *eval_input; /* one batch of each */
    uint64_t seed;           /* initialisation and dropout streams */
    nn_optimizer opt;
    nn_param_seg *segs;      /* the stage's trainable segments (train_until) */
    double acc, pixel_acc;   /* the last evaluation (a segment task: mIoU and pixel accuracy) */
    double bacc;             /* and its balanced accuracy (classify) */
    double val_acc, val_bacc, val_pixel_acc; /* the last evaluation on the validation split */
    double *eval_acc, *eval_bacc; /* (n_eval) the last evaluation on each eval set */
    feed *eval_feeds;        /* (n_eval) its view of each eval set (data.eval_sets) */
    int n_eval;
    double best_acc;         /* the score that picked the best checkpoint: on the validation split
                              * when the run has one; else (nothing picked: the best is the last
                              * evaluated epoch) its test score */
    double test_at_best;     /* the test score of the best checkpoint */
    int best_epoch;
    size_t correct, labelled; /* training accuracy over the current epoch */
} model_rt;

/* The seed model k of a run starts from. */
uint64_t models_seed(long seed, int k);

/* Builds model k of r for batches of r->train.batch (errors prefixed with "model" or
 * "model 'NAME'"). */
xd_status models_build(model_rt *mr, const recipe *r, int k, long seed, xd_err *e);

/* Opens its view of split of ds (a split of the run's data set, or of a data.eval_sets set) into
 * f: images of another size or channel count than the model's are an error unless data.augment
 * converts them (size=, channels=), but in a segment task. */
xd_status models_open_feed(const model_rt *mr, const recipe *r, const io_dataset *ds,
                           const char *split, feed *f, xd_err *e);
/* Opens its views of the train and test splits (and data.val's when given) and its batch
 * buffers. */
xd_status models_open_feeds(model_rt *mr, const recipe *r, const io_dataset *ds, xd_err *e);

void models_close(model_rt *mr);

/* DIR-relative file name of model k's `what` ("best", "last") in a run of r: "best.safetensors",
 * or "NAME.best.safetensors" when r has several models; a new string. */
char *models_file(const recipe *r, int k, const char *what);

#endif
