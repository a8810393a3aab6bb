/* The parts of a training run (trainer_run, distill/trainer.h), one file each, in the order a
 * run meets them:
 *   train_setup.c   the data set, the teachers, the buffers; per stage the losses and segments
 *   train_step.c    one step: forwards, losses, backwards, checks, optimizer steps
 *   train_epoch.c   the epoch loop: order, steps, evaluation, checkpoints, metrics line
 *   train_resume.c  the resume state written after each epoch, and reading it back
 *   train_eval.c    accuracy on a split; the test score that picks a model's best checkpoint
 *   trainer.c       trainer_run: resume checks, the stages, the summary
 * Internal to distill/: nothing outside the trainer includes this. */
#ifndef XD_DISTILL_TRAIN_RUN_H
#define XD_DISTILL_TRAIN_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "align/labelmap.h"
#include "core/status.h"
#include "distill/cache.h"
#include "distill/feed.h"
#include "distill/models.h"
#include "distill/recipe.h"
#include "distill/runlock.h"
#include "distill/segment.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "nn/model.h"
#include "nn/optim.h"

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
    uint8_t *present; /* average: (max_batch) which examples have the language in hand */
    float *count;    /* average: (max_batch) languages summed per example */
} teacher_rt;

typedef struct zoo_rt zoo_rt; /* a standard method's state (train_zoo.c) */

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
    /* contrastive */
    double *clip;     /* align_clip_save_len(B, D) */
    float theta[1], dtheta[1]; /* log(1 / temperature), and its gradient when learned */
    nn_optimizer topt;
    zoo_rt *zoo;      /* dkd ... ofd: their nodes, scratch and learned parts; else NULL */
} loss_rt;

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
    uint8_t *sel;     /* (ntrain) labels the run may see */
    size_t n_sel;
    teacher_rt *teachers;
    float *tlogits;   /* gathered cached logits (B, K) */
    uint32_t *pool, *order, *idx;
    size_t order_cap;
    int32_t *yb;
    uint8_t *mb;
    uint64_t *exb;
    loss_rt *losses;
    int n_losses;
    long global_step;
    double images, train_seconds;
    int epochs_done;
    char *yaml;       /* the effective recipe, stored in every checkpoint and the summary */
    seg_run seg;      /* task segment: masks, per-pixel losses, the dense teachers' windows */
    int threads;      /* threads of the last epoch run (in this process, or as the resume state
                       * recorded it) */
    runlock lock;     /* of the run folder, held while the run lives */
} train_run;


/* trainer.c: DIR/name of the run's folder (a new string); a whole text file written atomically. */
char *train_path(const train_run *R, const char *name);
xd_status train_write_text(const char *path, const char *text, xd_err *e);

/* train_setup.c */
xd_status train_setup_data(train_run *R, xd_err *e);
xd_status train_setup_teachers(train_run *R, xd_err *e);
xd_status train_setup_buffers(train_run *R);
/* The losses of stage `stage` (freeing the previous stage's). */
xd_status train_setup_losses(train_run *R, int stage, xd_err *e);
void train_free_losses(train_run *R);
/* Each model's trainable segments in stage `stage` (train_until). */
void train_stage_segments(train_run *R, int stage);
xd_status train_init_projectors(train_run *R, xd_err *e);
nn_model *train_from_net(train_run *R, const recipe_loss *L);
const char *train_end_name(const train_run *R, int teacher, int model, char *buf, size_t n);

/* train_step.c */
xd_status train_teacher_forward(train_run *R, teacher_rt *t, const uint32_t *idx, int n, int aug,
                                uint64_t epoch, xd_err *e);
const float *train_teacher_out(train_run *R, int ti, int node, int B);
/* One step of stage `stage` on the batch R->idx, R->yb, R->mb, R->exb [0..n) at learning rate lr
 * (the schedule's): *loss is the weighted total of the losses. */
xd_status train_step(train_run *R, int stage, int epoch, int n, float lr, double *loss, xd_err *e);

/* train_epoch.c */
xd_status train_epoch(train_run *R, int stage, int epoch, xd_err *e);
xd_status train_trim_metrics(train_run *R, xd_err *e);

/* train_resume.c */
/* What train_load_resume reads: the counters (first, before anything is built), then either the
 * model alone (a run resumed at a stage boundary: the new stage starts a fresh optimizer) or
 * everything (resumed inside a stage, once its optimizer and projectors exist). */
enum { TRAIN_RESUME_COUNTERS, TRAIN_RESUME_MODEL, TRAIN_RESUME_ALL };
xd_status train_save_resume(train_run *R, xd_err *e);
xd_status train_load_resume(train_run *R, int what, xd_err *e);

/* train_zoo.c: losses of the standard methods (dkd, rkd, sp, pkt, cc, nst, fsp, vid, crd, ab,
 * ofd). */
int train_zoo_kind(recipe_loss_kind k);
/* Loss i of stage `stage` (l->L, l->where set): its nodes, shapes, projector, learned parts. */
xd_status train_zoo_setup(train_run *R, loss_rt *l, int stage, int i, xd_err *e);
/* Its value on the batch of B, gradients added into the models' douts (and into its own learned
 * parts); CRD's bank moves towards the batch. */
double train_zoo_apply(train_run *R, loss_rt *l, int B, const nn_run *nr);
/* After the models' optimizer steps: the steps of its learned parts at learning rate lr. */
void train_zoo_after_step(loss_rt *l, float lr);
/* Its learned parts and CRD's bank as resume tensors "lossI.*" into t and names (at most
 * TRAIN_ZOO_TENSORS); returns how many. */
enum { TRAIN_ZOO_TENSORS = 9 };
int train_zoo_tensors(loss_rt *l, int i, io_tensor *t, char names[][64]);
/* A resumed run's optimizer step count. */
void train_zoo_set_step(loss_rt *l, long step);
void train_zoo_free(loss_rt *l);

/* train_eval.c */
xd_status train_evaluate_test(train_run *R, int k, double *acc, xd_err *e);

#endif
