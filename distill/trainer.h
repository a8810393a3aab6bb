/* The trainer: runs a recipe (distill/recipe.h) on a data set, for a teacher, a student, or any
 * mix of distillation losses, stage by stage.
 *
 * Per step: each trainable model (distill/models.h: the student, or every model of a `models:`
 * list) reads its view of a batch and runs forward (training mode); each teacher a loss needs
 * sees its own view of the same examples (eval mode), or its outputs come from the teacher-output
 * cache; each loss adds its weighted gradient into the end that learns (feature losses through a
 * learned projector), and into its from end too when that is another model and the loss is not
 * detached; then every model's backward and every optimizer step. So a peer's targets are the
 * other peers' predictions of the same step, made before any of them is updated. Per epoch: an
 * evaluation on the test split (and on the validation split and the eval sets when the recipe has
 * them), a line in DIR/metrics.jsonl, DIR/last.safetensors and DIR/best.safetensors (when the
 * validation score improved; without a validation split at every evaluation, as the test split
 * chooses nothing), and
 * DIR/resume.safetensors, from which `--resume` continues exactly as if the run had not stopped.
 * Every file is written atomically.
 *
 * A run holds the lock of its folder (distill/runlock.h) while it lives. Resuming checks that the
 * recipe is the folder's (DIR/recipe.yaml; only recipe_resume_keys may differ, and a difference
 * there is written back to DIR/recipe.yaml); a run whose summary.json says it finished is left
 * untouched, and one stopped after its last epoch but before its summary gets the summary of the
 * weights its resume state holds.
 *
 * Which examples a stage walks: all training examples when one of its losses can learn from
 * unlabelled ones (it reads a teacher), else only the examples whose label the run may see. */
#ifndef XD_DISTILL_TRAINER_H
#define XD_DISTILL_TRAINER_H

#include <stdio.h>

#include "core/status.h"
#include "distill/exits.h"
#include "distill/feed.h"
#include "distill/progress.h"
#include "distill/recipe.h"
#include "nn/model.h"

/* The identity of every file a run reads besides its recipe, recorded in its resume state so that
 * a resume reads the same ones, and in a pipeline step's stamp (distill/pipeline.h): the data
 * set's and each data.eval_sets entry's (io_dataset_identity: base name, size, modification
 * time, metadata; no pass over the data), and the hash of the bytes of each teacher checkpoint
 * and `init` checkpoint (io_file_hash). */
typedef struct {
    uint64_t data;
    uint64_t eval[RECIPE_MAX_EVAL_SETS];
    uint64_t teacher[RECIPE_MAX_TEACHERS];
    uint64_t init[RECIPE_MAX_MODELS]; /* 0 for a model without `init:` */
} train_inputs;

/* The identities of the files r names now (those train_input_paths lists, in its order). */
xd_status trainer_read_inputs(const recipe *r, train_inputs *in, xd_err *e);

typedef struct {
    const char *out_dir;  /* created when missing, and removed again (with what the run put in
                           * it) when the run fails, or SIGINT/SIGTERM stops it, before its first
                           * epoch ends */
    int resume;           /* continue from out_dir/resume.safetensors (or find it finished) */
    int stop_after;       /* > 0: stop once this many epochs are done (resume later) */
    /* the identities of the files the recipe reads, as the caller read them just before (a
     * pipeline step's stamp), so that the run does not read them again; NULL: the run reads them */
    const train_inputs *inputs;
    int quiet;            /* no progress output */
    FILE *log;            /* progress bar and epoch lines; NULL = stderr */
    const progress_span *span; /* not NULL: this run is a share of a longer job (progress.h) */
    /* Called once, by the rank that writes, just before the run first changes out_dir: files of
     * the caller's that should appear only once the run has something to keep (a multi-seed
     * run's recipe). A failure fails the run. NULL: none. */
    xd_status (*before_write)(void *ctx, xd_err *e);
    /* Called once the run has an epoch to resume from (its folder is kept from then on, on a
     * failure or a signal too): the caller's files kept with it from then on. NULL: none. */
    void (*kept)(void *ctx);
    void *ctx;
} train_opts;

/* One trainable model's scores (accuracy; for a segment task the mIoU). best_acc is the score that
 * chose its best checkpoint on the validation split when the run has one; without one nothing is
 * chosen (the best is the last evaluated epoch) and best_acc is its test score. test_at_best is
 * the best checkpoint's test score. */
typedef struct {
    char name[RECIPE_MAX_NAME];
    double final_acc, best_acc, test_at_best;
    double final_bacc;          /* balanced accuracy at the end (classify) */
    int best_epoch;
} train_model_result;

/* One early exit's scores (distill/exits.h), named as in metrics.jsonl: "EXIT", or
 * "MODEL.EXIT" in a run of several models. */
typedef struct {
    char name[RECIPE_MAX_NAME + NN_NAME_LEN + 2];
    double final_acc;
} train_exit_result;

typedef struct {
    long seed;
    int epochs_done, finished;
    int unchanged;              /* resumed a run that had finished: nothing was run or written */
    double final_acc, best_acc; /* the first model's scores (as train_model_result's) */
    double test_at_best, final_bacc;
    int best_epoch;
    int val;                    /* best checkpoints were chosen on a validation split (else the
                                 * best is the last evaluated epoch) */
    int n_models;               /* every trainable model's scores */
    train_model_result models[RECIPE_MAX_MODELS];
    int segment;                /* task segment: the scores are mIoU, with pixel accuracy */
    double final_pixel_acc;
    double seconds, images_per_s;
    int n_exits;                /* the exits of models with several heads */
    train_exit_result exits[EXITS_MAX];
} train_result;

xd_status trainer_run(const recipe *r, long seed, const train_opts *o, train_result *res,
                      xd_err *e);

/* Accuracy of node `head` of m over all n examples of a feed (eval mode, batches of the model's
 * max_batch); for a text.* feed, over every (example, language) pair that has a text. input:
 * scratch for one batch of the feed's inputs. */
xd_status trainer_evaluate(nn_model *m, int head, feed *f, const int32_t *labels, void *input,
                           double *acc, xd_err *e);

#endif
