/* The parts of a training run (trainer_run, distill/trainer.h), one file each, in the order a
 * run meets them:
 *   train_setup.c   the data set, the teachers, the buffers; per stage the losses and segments
 *   train_step.c    one step: forwards, losses, backwards, checks, optimizer steps
 *   train_epoch.c   the epoch loop: order, steps, evaluation, checkpoints, metrics line
 *   train_resume.c  the resume state written after each epoch, and reading it back
 *   train_val.c     the validation split (held out of train, or a split of its own), the
 *                   further data sets scored with it (data.eval_sets), the run's class names
 *   train_eval.c    accuracy on a split; the scores of an evaluation, one of which picks a
 *                   model's best checkpoint
 *   train_ensemble.c  a loss's ensemble of teachers: its members and the combined target
 *   train_exits.c   the early exits of a model with several heads, scored at each evaluation
 *   trainer.c       trainer_run: resume checks, the stages, the summary
 * Internal to distill/: nothing outside the trainer includes this. */
#ifndef XD_DISTILL_TRAIN_RUN_H
#define XD_DISTILL_TRAIN_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "align/labelmap.h"
#include "core/bits.h"
#include "core/status.h"
#include "distill/cache.h"
#include "distill/ensemble.h"
#include "distill/exits.h"
#include "distill/feed.h"
#include "distill/models.h"
#include "distill/recipe.h"
#include "distill/runlock.h"
#include "distill/segment.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/safetensors.h"
#include "nn/model.h"
#include "nn/optim.h"

/* Examples a score counts: those of [0, n) in the set of bits (NULL: all) and in the byte mask
 * (NULL: all), members of them. Walked in order where they are read, so a split's examples need no
 * index of their own. */
typedef struct {
    size_t n;
    const uint64_t *bits;
    const uint8_t *mask;
    size_t members;
} ex_set;

/* every example of [0, n) */
static inline ex_set ex_all(size_t n) { return (ex_set){.n = n, .members = n}; }

typedef struct {
    nn_model m;
    uint32_t *idx;   /* (max_batch) example indices while filling the cache */
    feed f;          /* its view of the training split (unused when it shares the student's) */
    int shares;      /* reads the student's input batch as is */
    int cached;      /* outputs come from the teacher-output cache */
    kd_cache cache;
    void *input;
    int used;        /* a loss of the current stage reads it */
    int average;     /* text.* with languages: average: every language of an example, averaged */
    float **avg;     /* average: (n_nodes) the averaged outputs (max_batch, act_n) of the nodes
                      * losses read, NULL for the others */
    uint8_t *reads;  /* (n_nodes) 1 for the nodes losses read (train_teacher_reads) */
    uint8_t *present; /* average: (max_batch) which examples have the language in hand */
    float *count;    /* average: (max_batch) languages summed per example */
    int32_t *class_table; /* (its head's classes) the run's class of each of its classes, matched
                           * by name when it names them in another order; NULL otherwise */
} teacher_rt;

typedef struct zoo_rt zoo_rt; /* a standard method's state (train_zoo.c) */
typedef struct rationale_rt rationale_rt; /* a rationale loss's decoder (train_rationale.c) */
/* A kd / hinton loss's ensemble of teachers (train_ensemble.c). */
typedef struct {
    int n;                /* members */
    int *node;            /* (n) each member's head */
    align_labelmap *lm;   /* (n) each member's label map */
    uint8_t *mapped;      /* (n) it has one */
    ensemble_member *m;   /* (n) the batch's outputs of each */
    float *fixed;         /* (n) combine: weights: the recipe's */
    float **rows;         /* (n) a cached member's rows of the batch (B, kt), else NULL */
    ensemble_buf buf;
} ensemble_rt;

typedef struct {
    const recipe_loss *L;
    char where[256]; /* "FILE:LINE: losses.I (KIND)", for messages */
    int s_node, t_node; /* the node of the end that learns, of the from end */
    int has_proj;
    nn_model proj;
    nn_optimizer popt;
    float *a, *b, *c; /* per-loss scratch (B, width) each */
    int32_t *ones;    /* cosine targets */
    double sum;       /* loss summed over the epoch's steps */
    /* kd, hinton with a label map: teacher classes -> student classes */
    int mapped;
    align_labelmap lm;
    float *tq;        /* (B, kt) teacher probabilities before the map */
    ensemble_rt *ens; /* kd, hinton with several teachers, else NULL */
    /* contrastive */
    double *clip;     /* align_clip_save_len(B, D) */
    float theta[1], dtheta[1]; /* log(1 / temperature), and its gradient when learned */
    nn_optimizer topt;
    zoo_rt *zoo;      /* dkd ... ofd: their nodes, scratch and learned parts; else NULL */
    rationale_rt *rat; /* rationale: its decoder (its optimizer is popt); else NULL */
} loss_rt;

/* One early exit that a run scores (distill/exits.h): node `node` of model k. */
typedef struct {
    int model, node;
    char key[RECIPE_MAX_NAME + NN_NAME_LEN + 2]; /* "EXIT", or "MODEL.EXIT" with several models */
    double acc;                                 /* the last evaluation */
} train_exit;

typedef struct {
    const recipe *r;
    long seed;
    const train_opts *o;
    FILE *log;
    io_dataset *ds;
    model_rt *models; /* the trainable models; models[0] is the one-student form's student */
    int n_models;
    size_t n_train;   /* examples in the training split */
    const int32_t *ytrain, *ytest;
    int n_classes;
    int spatial;      /* the student's images get random crops or flips */
    const uint8_t *known; /* (ntrain) the data set's label_mask, NULL = every label is known */
    uint64_t *sel;    /* (ntrain bits, core/bits.h) labels the run may see */
    size_t n_sel;
    teacher_rt *teachers;
    float *tlogits;   /* gathered cached logits (B, K) */
    uint32_t *pool, *order, *idx; /* pool and order: train.shuffle stored only */
    size_t order_cap;
    int32_t *yb;
    uint8_t *mb;
    float *class_w;   /* (n_classes) balanced class weights when a loss asks for them, else NULL */
    float *wb;        /* (max_batch) the batch's row weights from class_w: its class's weight for
                       * a row whose label the run sees, 1 (the weights' mean) for the others */
    uint64_t *exb;
    float share;      /* this rank's part of the step's global batch (its rows / the batch's): 1
                       * for a single process */
    loss_rt *losses;
    int n_losses;
    long global_step;
    double images, train_seconds;
    int epochs_done;
    char *yaml;       /* the effective recipe, stored in every checkpoint and the summary */
    uint64_t digest;  /* its recipe_resume_digest, which the resume state records */
    train_inputs inputs; /* which the resume state records too */
    seg_run seg;      /* task segment: masks, per-pixel losses, the dense teachers' windows */
    int threads;      /* threads of the last epoch run (in this process, or as the resume state
                       * recorded it) */
    runlock lock;     /* of the run folder, held while the run lives */
    int wrote;        /* the run changed something in its folder (the lock aside): a failure
                       * before that leaves the folder as the run found it */
    train_exit *exits; /* every exit of the models with several (train_exits.c) */
    int n_exits;
    /* validation and further data sets (train_val.c) */
    int has_val;      /* best checkpoints are chosen on the validation split; without one the
                       * best is the last evaluated epoch (the test split chooses nothing) */
    uint64_t *held;   /* (n_train bits) data.val_fraction: the training examples held out for
                       * validation (no step sees them); NULL otherwise */
    size_t n_held;
    ex_set val;       /* the validation examples: of the training split's feed (val_fraction, the
                       * bits of held) or of data.val's (its label_mask) */
    const int32_t *yval;       /* labels of that feed */
    const uint8_t *val_masks;  /* segment: the masks of that feed */
    io_dataset **eval_ds;      /* (data.n_eval_sets) */
    int32_t **eval_y;          /* (data.n_eval_sets) each set's labels as the run's classes */
} train_run;


/* trainer.c: DIR/name of the run's folder (a new string); a whole text file written atomically. */
char *train_path(const train_run *R, const char *name);
xd_status train_write_text(const char *path, const char *text, xd_err *e);
/* Every rank, before the run's first change to its folder (a fresh run's first epoch's files, a
 * resume's first write); nothing after the first call: the caller's o->before_write, then for a
 * fresh run the files of an earlier run cleared and recipe.yaml written. */
xd_status train_first_write(train_run *R, xd_err *e);

/* train_setup.c */
/* The labels of split of the run's data set (n examples, each one of the run's classes). */
xd_status train_open_labels(train_run *R, const char *split, const int32_t **y, size_t n,
                            xd_err *e);
xd_status train_setup_data(train_run *R, xd_err *e);
xd_status train_setup_teachers(train_run *R, xd_err *e);
xd_status train_setup_buffers(train_run *R);
/* A label map of kt teacher classes onto ks student classes, from a list (table), the label set
 * `map` of the data set, or else by_name (the teacher's classes by name); where names the loss in
 * messages. */
xd_status train_label_map(train_run *R, const char *where, const char *map, const int32_t *table,
                          int n_table, const int32_t *by_name, int kt, int ks, align_labelmap *lm,
                          xd_err *e);
/* The losses of stage `stage` (freeing the previous stage's). */
xd_status train_setup_losses(train_run *R, int stage, xd_err *e);
void train_free_losses(train_run *R);
/* Each model's trainable segments in stage `stage` (train_until). */
void train_stage_segments(train_run *R, int stage);
xd_status train_init_projectors(train_run *R, xd_err *e);
nn_model *train_from_net(train_run *R, const recipe_loss *L);
const char *train_end_name(const train_run *R, int teacher, int model, char *buf, size_t n);

/* train_step.c */
/* The teacher's forward on examples idx[0..n) of the training split. The outputs
 * of the nodes losses read must be finite, as its cache's must: XD_ENUM names the teacher and the
 * example otherwise. */
xd_status train_teacher_forward(train_run *R, teacher_rt *t, const uint32_t *idx, int n, int aug,
                                uint64_t epoch, xd_err *e);
/* A loss reads node `node` of teacher t: its output is checked at every forward, and a teacher
 * that averages its languages gets room for the node's averaged output. */
void train_teacher_reads(train_run *R, teacher_rt *t, int node);
const float *train_teacher_out(train_run *R, int ti, int node, int B);
/* One step of stage `stage` on the batch R->idx, R->yb, R->mb, R->exb [0..n) at learning rate lr
 * (the schedule's): *loss is the weighted total of the losses. */
xd_status train_step(train_run *R, int stage, int epoch, int n, float lr, double *loss, xd_err *e);

/* train_ensemble.c: a loss's ensemble (its members' heads, label maps, buffers), the combined
 * target of a batch into l->c, and where a non-finite member output came from (1 if one did). */
xd_status train_setup_ensemble(train_run *R, loss_rt *l, const nn_node *sn, xd_err *e);
void train_free_ensemble(loss_rt *l);
void train_ensemble_target(train_run *R, loss_rt *l, int B);
int train_ensemble_blame(train_run *R, const loss_rt *l, int B, char *buf, size_t size);

/* train_epoch.c */
xd_status train_epoch(train_run *R, int stage, int epoch, xd_err *e);
xd_status train_trim_metrics(train_run *R, xd_err *e);
/* A decaying schedule whose total_steps the run works out (the recipe gave none) must end after
 * its warmup: the steps of all the stages' epochs on this data, more than warmup_steps. */
xd_status train_check_schedule(const train_run *R, xd_err *e);
/* What the first `epochs` epochs of the run count, whether run at once or resumed: its global
 * steps, the steps of the optimizer of the stage the last of them belongs to, and the examples
 * stepped over (R->images). Known once the data is set up. */
typedef struct {
    long global_step, opt_step;
    double images;
} train_counts;
train_counts train_counts_after(const train_run *R, int epochs);

/* train_resume.c */
/* What train_load_resume reads: the counters (first, before anything is built), then either the
 * model alone (a run resumed at a stage boundary: the new stage starts a fresh optimizer) or
 * everything (resumed inside a stage, once its optimizer and projectors exist). */
enum { TRAIN_RESUME_COUNTERS, TRAIN_RESUME_MODEL, TRAIN_RESUME_ALL };
xd_status train_save_resume(train_run *R, xd_err *e);
/* The most files a run reads besides its recipe: its data set, eval sets, teachers, inits. */
enum { TRAIN_MAX_INPUTS = 1 + RECIPE_MAX_EVAL_SETS + RECIPE_MAX_TEACHERS + RECIPE_MAX_MODELS };
/* The paths of the files a run of r reads besides its recipe (those trainer_read_inputs names, in
 * its order), into paths (room for TRAIN_MAX_INPUTS); returns how many. */
int train_input_paths(const recipe *r, const char **paths);
/* Resuming, before anything is built from the files: R->inputs (trainer_read_inputs) must be those
 * the resume state records, else XD_EARG naming the file that changed. A state of a build that
 * recorded none resumes as before. */
xd_status train_check_inputs(train_run *R, xd_err *e);
/* Every metadata value it reads is checked first (the metadata has no checksum): XD_EFORMAT
 * naming the file and the key when one is missing, malformed or out of its range. */
xd_status train_load_resume(train_run *R, int what, xd_err *e);
/* The check of a best score in [0, 1] with its epoch in [0, epochs_done]. */
xd_status train_meta_best(io_st_file *f, const char *acc_key, const char *epoch_key,
                          int epochs_done, double *acc, int *epoch, xd_err *e);

/* train_zoo.c: losses of the standard methods (dkd, rkd, sp, pkt, cc, nst, fsp, vid, crd, ab,
 * ofd). */
int train_zoo_kind(recipe_loss_kind k);
/* Loss i of stage `stage` (l->L, l->where set): its nodes, shapes, projector, learned parts. */
xd_status train_zoo_setup(train_run *R, loss_rt *l, int stage, int i, xd_err *e);
/* Its value on the batch of B, gradients added into the models' douts (and into its own learned
 * parts); CRD's bank moves towards the batch. */
double train_zoo_apply(train_run *R, loss_rt *l, int B, const nn_run *nr);
/* With several ranks, before the optimizer steps: its learned parts' gradients summed over the
 * ranks, each weighed by its share of the batch (dist_sum_floats). */
void train_zoo_sum_grads(loss_rt *l, float share);
/* After the models' optimizer steps: the steps of its learned parts at learning rate lr. */
void train_zoo_after_step(loss_rt *l, float lr);
/* Its learned parts and CRD's bank as resume tensors "lossI.*" into t and names (at most
 * TRAIN_ZOO_TENSORS); returns how many. */
enum { TRAIN_ZOO_TENSORS = 9 };
int train_zoo_tensors(loss_rt *l, int i, io_tensor *t, char names[][64]);
/* A resumed run's optimizer step count. */
void train_zoo_set_step(loss_rt *l, long step);
void train_zoo_free(loss_rt *l);
/* train_rationale.c: a rationale loss (distilling step by step). */
/* Its tap, the data set's rationales as target rows, the vocabulary, the decoder and popt. */
xd_status train_rationale_setup(train_run *R, loss_rt *l, int stage, int i, xd_err *e);
void train_rationale_free(loss_rt *l);
/* Its value on the batch of B (weighted by w in the gradients), into the tap's gradient. */
double train_rationale_apply(train_run *R, loss_rt *l, int B, float w);
void train_rationale_after_step(loss_rt *l, float lr);
/* The decoder's parameters (resume state). */
float *train_rationale_params(loss_rt *l, size_t *n);
/* After an epoch's evaluation and checkpoints: rationale_acc into the metrics line j, the
 * decoder files. */
xd_status train_rationale_epoch(train_run *R, int epoch, int evaluated, json_t *j, xd_err *e);

/* train_val.c */
/* After the training labels are chosen and every model's feeds are open: the validation
 * examples, the eval sets (data sets, labels, each model's feeds), the class names. */
xd_status train_setup_val(train_run *R, xd_err *e);
void train_free_val(train_run *R);

/* train_eval.c */
/* Accuracy and balanced accuracy (bacc may be NULL) of node head of m over the examples of x
 * (examples of f) against labels indexed by example. */
xd_status train_score(nn_model *m, int head, feed *f, const ex_set *x, const int32_t *labels,
                      void *input, double *acc, double *bacc, xd_err *e);
/* Model k's test score (accuracy, or a segment task's mIoU) into *acc and mk->acc, with mk->bacc
 * (mk->pixel_acc). */
xd_status train_evaluate_test(train_run *R, int k, double *acc, xd_err *e);
/* Model k's scores on the validation split (mk->val_*) and on each eval set (mk->eval_*). */
xd_status train_evaluate_val(train_run *R, int k, xd_err *e);

/* train_exits.c: the exits of every model with several heads (a classify task), scored at each
 * evaluation beside the default head. */
void train_exits_setup(train_run *R);
/* Scores model k's exits on the test split, after train_evaluate_test (whose score is the
 * default head's). No checkpoint is chosen by these scores. */
xd_status train_exits_evaluate(train_run *R, int k, xd_err *e);
/* metrics.jsonl: test_acc.KEY of every exit (null when not evaluated). */
void train_exits_metrics(const train_run *R, json_t *j, int evaluated);
/* The exits' final scores into the run's result. */
void train_exits_result(const train_run *R, train_result *res);
void train_exits_free(train_run *R);

#endif
