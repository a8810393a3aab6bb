/* Recipes: the YAML file that describes one `xdistill train` run, bound into a typed struct.
 *
 * recipe_load reads the file into an io_yaml tree, applies the command line's --set overrides,
 * and binds every key into a recipe: defaults filled in, ranges checked, enum words looked up in
 * name tables, the student model built once to check its description and the node names that
 * losses and stages refer to, paths checked to exist. Every error names the file, the line and
 * the key path ("recipe.yaml:12: losses.1.temperature: must be > 0"); a key that nothing reads
 * is an error with the nearest known key as a suggestion. docs/RECIPES.md lists every key.
 *
 * A recipe always has at least one stage: the top-level `train.epochs` and `losses` form one
 * implicit stage, `stages:` lists several (FitNets-style hint training, then the rest).
 *
 * A recipe trains one student (top-level `model:`, named "student") or several models that learn
 * together (`models:`); each loss names the end knowledge flows from (a teacher or a model) and
 * the end that learns (a model), and whether the from end is detached.
 *
 * recipe_to_yaml prints the effective recipe (defaults included) back as YAML; parsing that text
 * gives the same struct. Checkpoints and run summaries store it. */
#ifndef XD_DISTILL_RECIPE_H
#define XD_DISTILL_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
#include "nn/optim.h"
#include "nn/prune.h"

/* Program-chosen bounds, so that a recipe cannot ask for unbounded tables. */
#define RECIPE_MAX_TEACHERS 16
#define RECIPE_MAX_MODELS 16
#define RECIPE_MAX_STAGES 16
#define RECIPE_MAX_LOSSES 32
#define RECIPE_MAX_NAME 64
/* train.threads (and the thread count a resume state records) */
#define RECIPE_MAX_THREADS 4096
/* Largest model_file read. */
#define RECIPE_MAX_MODEL_BYTES ((size_t)1 << 20)

typedef enum {
    RECIPE_LOSS_CE,        /* cross-entropy on the hard labels */
    RECIPE_LOSS_KD,        /* T^2 KL(softmax(t/T) || softmax(s/T)) */
    RECIPE_LOSS_HINTON,    /* alpha KD + (1 - alpha) CE */
    RECIPE_LOSS_FEATURE,   /* metric(proj(student tap), teacher tap) */
    RECIPE_LOSS_HINT,      /* FitNets: MSE(proj(student tap), teacher tap) */
    RECIPE_LOSS_ATTENTION, /* attention transfer: || a_s/|a_s| - a_t/|a_t| ||^2, a = sum_c f_c^2 */
    RECIPE_LOSS_DENSE,     /* segment task: per-pixel soft CE with a classifier teacher's window
                            * distributions spread over foreground pixels (align/densemap.h) */
    RECIPE_LOSS_CONTRASTIVE, /* symmetric InfoNCE between proj(student tap) and teacher tap
                              * (align/clip.h), with a fixed or learned temperature */
    RECIPE_LOSS_RATIONALE, /* distilling step by step: a decoder (nn/seqdec.h) reading a student
                            * tap learns each labelled example's rationale (distill/rationale.h) */
    /* the standard methods of the public benchmark suites (distill/zoo.h, distill/crd.h) */
    RECIPE_LOSS_DKD, /* decoupled KD on the heads: alpha TCKD + beta NCKD */
    RECIPE_LOSS_RKD, /* relational KD: distances and angles within the batch */
    RECIPE_LOSS_SP,  /* similarity-preserving: the batch's similarity matrices */
    RECIPE_LOSS_PKT, /* probabilistic knowledge transfer: cosine-similarity distributions */
    RECIPE_LOSS_CC,  /* correlation congruence */
    RECIPE_LOSS_NST, /* neuron selectivity transfer: polynomial-kernel MMD between channels */
    RECIPE_LOSS_FSP, /* flow of solution procedure: Gram matrices between two maps */
    RECIPE_LOSS_VID, /* variational information distillation: regressor and learned variance */
    RECIPE_LOSS_CRD, /* contrastive representation distillation with a memory bank */
    RECIPE_LOSS_AB,  /* activation boundaries on the teacher's pre-ReLU values */
    RECIPE_LOSS_OFD, /* overhaul of feature distillation: margin ReLU, partial L2 */
    RECIPE_LOSS_COUNT
} recipe_loss_kind;
extern const char *const recipe_loss_kind_names[RECIPE_LOSS_COUNT]; /* "ce", "kd", ... */

typedef enum { RECIPE_METRIC_MSE, RECIPE_METRIC_COSINE, RECIPE_METRIC_COUNT } recipe_metric;
extern const char *const recipe_metric_names[RECIPE_METRIC_COUNT];

/* How ce, kd and hinton weight each example's term (distill/labels.h labels_balanced_weights):
 * all alike, or by the inverse frequency of its class on the training labels. */
typedef enum { RECIPE_CLASS_WEIGHT_NONE, RECIPE_CLASS_WEIGHT_BALANCED, RECIPE_CLASS_WEIGHT_COUNT }
recipe_class_weight;
extern const char *const recipe_class_weight_names[RECIPE_CLASS_WEIGHT_COUNT]; /* "none", ... */

typedef enum {
    RECIPE_PROJ_AUTO,    /* linear when the widths differ, none otherwise (decided by the trainer,
                          * which knows the teacher's width) */
    RECIPE_PROJ_NONE,
    RECIPE_PROJ_LINEAR,
    RECIPE_PROJ_CONV1X1,
    RECIPE_PROJ_MLP,     /* linear, ReLU, linear (hidden width: the wider of the two sides) */
    RECIPE_PROJ_COUNT
} recipe_projector;
extern const char *const recipe_projector_names[RECIPE_PROJ_COUNT];

/* How a projector starts: random weights, or a closed-form map fitted on paired taps of the
 * student and the teacher over the training split (align/linmap.h) when the stage begins. */
typedef enum {
    RECIPE_INIT_RANDOM,
    RECIPE_INIT_PROCRUSTES, /* centred, scaled orthogonal Procrustes */
    RECIPE_INIT_CCA,        /* ridge regression through every canonical pair */
    RECIPE_INIT_COUNT
} recipe_proj_init;
extern const char *const recipe_proj_init_names[RECIPE_INIT_COUNT];

/* How a teacher reading `text.*` sees an example's languages: one drawn per example per epoch
 * (sample), or every language the example has, the teacher's outputs averaged (average). */
typedef enum { RECIPE_LANGS_SAMPLE, RECIPE_LANGS_AVERAGE, RECIPE_LANGS_COUNT } recipe_langs;
extern const char *const recipe_langs_names[RECIPE_LANGS_COUNT];

/* What a run learns: one class per example (classify), or one class per pixel of the split's
 * `mask` section (segment; the student's head is an (H, W, classes) map). */
typedef enum { RECIPE_TASK_CLASSIFY, RECIPE_TASK_SEGMENT, RECIPE_TASK_COUNT } recipe_task;
extern const char *const recipe_task_names[RECIPE_TASK_COUNT];

/* Where a dense loss's teacher looks: sliding windows of its input size over the whole canvas, or
 * windows centred on the image's foreground blobs (both need nothing but the image), or the item
 * boxes the data set stores (S/boxes). */
typedef enum {
    RECIPE_WINDOWS_GRID,
    RECIPE_WINDOWS_BLOBS,
    RECIPE_WINDOWS_BOXES,
    RECIPE_WINDOWS_COUNT
} recipe_windows;
extern const char *const recipe_windows_names[RECIPE_WINDOWS_COUNT];

/* Which view of an example a model reads: "image", "text.LANG", or "text.*" (every language,
 * one drawn per example per epoch). */
typedef enum { RECIPE_VIEW_IMAGE, RECIPE_VIEW_TEXT, RECIPE_VIEW_COUNT } recipe_view_kind;
extern const char *const recipe_view_kind_names[RECIPE_VIEW_COUNT];

/* How a kd / hinton loss with several `teachers:` combines their distributions per example
 * (distill/ensemble.h): their mean, fixed weights, or weights from each teacher's entropy. */
typedef enum {
    RECIPE_COMBINE_MEAN,
    RECIPE_COMBINE_WEIGHTS,
    RECIPE_COMBINE_ENTROPY,
    RECIPE_COMBINE_COUNT
} recipe_combine;
extern const char *const recipe_combine_names[RECIPE_COMBINE_COUNT];

typedef struct {
    char *name;       /* unique among the teachers */
    char *checkpoint; /* safetensors file */
    char *view;       /* default: the student's view */
    int cache;        /* use the teacher-output cache */
    nn_precision precision; /* of its forward's products, online and for its cache */
    recipe_langs languages; /* text.* view: sample or average the languages */
} recipe_teacher;

/* A trainable model. The one-student form (top-level `model:`) has one, named "student"; a
 * `models:` list names several, which train together in every step. */
typedef struct {
    char *name;        /* unique among models and teachers */
    char *model;       /* its description (nn/model.h) */
    char *view;        /* what it reads; default data.student_view */
    char *init;        /* `init:`: the float checkpoint its values start from (NULL: random) */
    nn_opt_config opt; /* its optimizer; default train.optimizer */
    int own_opt;       /* 1: the item gave its own optimizer */
} recipe_model;

/* A teacher of a loss's ensemble. */
typedef struct {
    int teacher;               /* index into recipe.teachers */
    float weight;              /* combine: weights: its weight as given (>= 0; normalised over
                                * the members when the run starts) */
    char *label_map;           /* its classes onto the student's, as recipe_loss.label_map */
    int32_t *label_table;      /* or as recipe_loss.label_table */
    int n_label_table;
} recipe_member;

typedef struct {
    recipe_loss_kind kind;
    float weight;              /* factor on this loss in the total, >= 0 */
    int teacher;               /* index into recipe.teachers; -1 for ce and for a peer's end */
    int model;                 /* the end that learns (`to`, ce's `model`): index into
                                * recipe.models */
    int from_model;            /* the end knowledge flows from when it is a trainable model
                                * (index into recipe.models), else -1 (a teacher, or labels) */
    int detach;                /* 1: the from end gets no gradient; 0 (peers only): gradient of
                                * the loss into both ends */
    float temperature;         /* kd, hinton: > 0 */
    float alpha;               /* hinton: in [0, 1]; dkd: the TCKD weight, >= 0 */
    float beta;                /* dkd: the NCKD weight */
    float distance_weight, angle_weight; /* rkd */
    float init_var;            /* vid: the variance each channel starts at */
    int embed_dim;             /* crd: width of the embedding heads */
    int negatives;             /* crd: bank negatives per example (clamped to the training
                                * examples - 1 by the trainer) */
    float momentum;            /* crd: share of the old bank row in an update */
    float margin;              /* ab */
    char *student_taps[2];     /* fsp: the two maps of the student (lower, upper) */
    char *teacher_taps[2];     /* fsp: the two maps of the teacher */
    char *head;                /* ce, kd, hinton: node of the learning end; NULL = default head */
    char *teacher_head;        /* kd, hinton: node of the from end; NULL = its default head */
    char *student_tap;         /* feature, hint, attention: node of the learning end */
    char *teacher_tap;         /* feature, hint, attention: node of the from end */
    recipe_metric metric;      /* feature */
    recipe_class_weight class_weight; /* ce, kd, hinton */
    recipe_projector projector; /* feature, hint, contrastive, cc; vid (its regressor), ab and
                                 * ofd (their connector), where auto means linear */
    recipe_proj_init projector_init; /* feature, hint, contrastive */
    int projector_frozen;      /* 1: the projector keeps its initial map (a fixed map) */
    int learn_temperature;     /* contrastive: theta = log(1/T) is a trained parameter */
    char *label_map;           /* kd, hinton: "label[.NAME]": the teacher's classes are that label
                                * set of the data set; its classes map onto the run's label by
                                * their co-occurrence on the training split (align/labelmap.h) */
    int32_t *label_table;      /* kd, hinton: or a list: teacher class c -> student class [c] */
    int n_label_table;
    recipe_windows windows;    /* dense */
    int stride;                /* dense, grid windows: pixels between window offsets, >= 1 */
    int weighting;             /* dense: an align_dense_weight */
    float min_conf;            /* dense: in [0, 1] */
    float threshold;           /* dense: foreground where grey > threshold (0..255) */
    /* kd, hinton with `teachers:` (then teacher is -1): the target is the per-example
     * combination of the members' distributions */
    int n_members;
    recipe_member *members;
    recipe_combine combine;
    float entropy_tau;         /* combine: entropy: temperature of the weights, > 0 */
    int hidden, embed;         /* rationale: the decoder's state and token embedding widths */
    int max_len;               /* rationale: tokens per rationale, the end token included */
    int max_words;             /* rationale: most words in its vocabulary */
    int line;                  /* of the item in the recipe file, for messages; 0 = unknown */
} recipe_loss;

typedef struct {
    int epochs;
    int n_losses;
    recipe_loss *losses;
    char *train_until; /* NULL = the whole student; else only nodes up to this one (+ projectors) */
    int until_model;   /* the model train_until limits (index into recipe.models) */
} recipe_stage;

/* A further data set scored at every evaluation (data.eval_sets): the run's label set, checked
 * by class name. */
typedef struct {
    char *name;           /* unique among the eval sets; metrics.jsonl keys eval.NAME.* */
    char *path;           /* dataset container */
    char *split;          /* default "test" */
} recipe_eval_set;

/* Most data.eval_sets. */
#define RECIPE_MAX_EVAL_SETS 16

typedef struct {
    char *path;           /* dataset container, relative to the current folder */
    char *train, *test;   /* split prefixes */
    char *label;          /* "label" or "label.NAME" */
    float label_fraction; /* [0, 1] of the training labels, stratified by class (0: none, every
                           * loss then reads a teacher) */
    int labels_per_class; /* > 0: exactly this many per class instead of label_fraction */
    char *student_view;
    char *augment;        /* img_opts words, "" = none */
    char *text;           /* txt_config words, "" = defaults */
    float val_fraction;   /* [0, 1): share of the labelled training examples held out (stratified,
                           * seeded) as the validation split that picks best checkpoints; 0 = none */
    char *val;            /* or a split of the data set as the validation split; NULL = none */
    int n_eval_sets;
    recipe_eval_set *eval_sets;
} recipe_data;

/* An epoch's order: a Fisher-Yates shuffle of an array of the examples it walks (4 bytes an
 * example), or a keyed permutation computed where it is read (core/rng.h xd_perm; no array of
 * the examples, another order for the same seed). */
typedef enum { RECIPE_SHUFFLE_STORED, RECIPE_SHUFFLE_KEYED, RECIPE_SHUFFLE_COUNT } recipe_shuffle;
extern const char *const recipe_shuffle_names[RECIPE_SHUFFLE_COUNT]; /* "stored", "keyed" */

typedef struct {
    int epochs;           /* sum over the stages */
    int batch;
    int steps_per_epoch;  /* 0 = one pass over the examples a stage walks; else this many batches,
                           * cycling through them (reshuffled at every pass) */
    nn_opt_config opt;
    nn_sched_config sched;
    int sched_auto_steps; /* 1: total_steps was omitted; the trainer fills it from the run */
    int eval_every;       /* epochs between evaluations; 0 = only at the end */
    int threads;          /* 0 = all cores */
    nn_precision precision; /* of the trained models' products (nn/gemm_bf16.h) */
    recipe_shuffle shuffle; /* how an epoch's order is drawn */
} recipe_train;

typedef struct {
    char *file;           /* the file (or name) it was read from, for messages */
    char *name;
    long seed;
    int seeds;            /* runs with seed, seed + 1, ... */
    recipe_task task;
    recipe_data data;
    char *model;          /* one-student form: the student's description (nn/model.h); NULL with
                           * a models: list */
    int n_models;         /* >= 1; models[0] is the one-student form's student */
    recipe_model *models;
    int listed;           /* 1: the recipe gives a models: list (losses print their ends) */
    int n_teachers;
    recipe_teacher *teachers;
    recipe_train train;
    int n_stages;         /* >= 1 */
    recipe_stage *stages;
    int staged;           /* the losses stand under `stages:` (their key paths say so) */
    float quantize_ema;   /* > 0: `quantize:`: the models train int8 fake-quantised (nn/quant.h),
                           * their moving ranges averaged with this momentum; 0: float */
    nn_prune_plan prune;  /* `prune:`: masks on the models' weights, pruned on this schedule
                           * (nn/prune.h); sparsity 0: none */
} recipe;

/* Skip the checks that files named in the recipe exist (data.path, checkpoints): for reading a
 * recipe back from a checkpoint's metadata on another machine. */
#define RECIPE_NO_FILE_CHECKS 1u

/* Keep teacher checkpoints written "step:NAME..." as they are: the checkpoint of another step of
 * a pipeline (distill/pipeline.h), which resolves them before the run. Without this flag such a
 * checkpoint is an error that says to run the pipeline. */
#define RECIPE_STEP_REFS 2u
#define RECIPE_STEP_PREFIX "step:"

/* Loads path, applies sets ("key.path=value", as --set gives them, in order) and binds. On
 * failure r is left empty (recipe_free is safe) and e names file, line and key path. */
xd_status recipe_load(const char *path, const char *const *sets, int n_sets, recipe *r,
                      xd_err *e);
/* The same from n bytes of text; name stands for the file in messages and gives the default
 * recipe name (its base name without the extension). */
xd_status recipe_parse(const char *name, const char *text, size_t n, const char *const *sets,
                       int n_sets, unsigned flags, recipe *r, xd_err *e);
void recipe_free(recipe *r);

/* The effective recipe as YAML (every key, defaults included), in a new string; parsing it gives
 * the same recipe. */
char *recipe_to_yaml(const recipe *r);
/* recipe_to_yaml written to path atomically. */
xd_status recipe_save(const recipe *r, const char *path, xd_err *e);

/* 1 if losses of this kind read a teacher. */
int recipe_loss_needs_teacher(recipe_loss_kind k);
/* 1 if loss l reads teacher t: its one teacher, or a member of its ensemble. */
int recipe_loss_reads_teacher(const recipe_loss *l, int t);

/* "FILE:LINE: losses.I (KIND)" (or "stages.S.losses.I"), without "FILE:LINE: " when with_file is
 * 0: where loss i of stage s stands, for messages about it. Returns the length snprintf would. */
int recipe_loss_where(const recipe *r, int s, int i, int with_file, char *buf, size_t size);

/* Keys that may differ when a run is resumed (--set with --resume, or the recipe given with it):
 * they change neither the numbers training computes nor the shape of the run. Everything else
 * must be what the run was started with. */
extern const char *const recipe_resume_keys[];
extern const int recipe_n_resume_keys;
/* 1 when the dotted key path is one of recipe_resume_keys. */
int recipe_is_resume_key(const char *path);
/* given is about to continue the run that stored was read from: XD_EARG naming both files and
 * the first line of their effective recipes that differs, when they differ in more than the
 * resume keys. */
xd_status recipe_check_resume(const recipe *given, const recipe *stored, xd_err *e);
/* FNV-1a 64 of the effective recipe (recipe_to_yaml) with the resume keys taken as 0: the resume
 * state records it, so that a resume tells the recipe its run started with from an edited one. */
uint64_t recipe_resume_digest(const recipe *r);

#endif
