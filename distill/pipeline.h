/* Pipelines: recipes run one after another, a later step taught by an earlier step's checkpoint
 * (teacher-assistant chains, Mirzadeh et al. 2020), over one or several seeds.
 *
 * A pipeline file lists named steps, each a recipe (path relative to the current folder, like
 * every path in a recipe) with optional overrides (`set:`, the meaning of `train --set`). A
 * step's recipe names an earlier step's checkpoint as a teacher with `checkpoint: step:NAME`
 * (its best checkpoint), `step:NAME/best` or `step:NAME/last`; the run of seed N reads the
 * checkpoint of that step's run of seed N.
 *
 * pipeline_load parses the file and binds every step's recipe (RECIPE_STEP_REFS), so a mistake in
 * any of them, a reference to no earlier step, a cycle, two steps with one name or an unknown key
 * is reported with file, line and key path before anything runs.
 *
 * pipeline_run runs seed after seed, and in each the steps in file order, into
 * OUT/seed-N/STEP/, an ordinary `xdistill train` run folder, plus OUT/seed-N/STEP/step.json, the
 * stamp. The stamp holds hashes (FNV-1a 64) of what decides the step's result: the effective
 * recipe as it runs (teacher paths resolved, its seed; train.threads left out, since the thread
 * count does not change results), the bytes of every teacher checkpoint, the data set's identity
 * (io_dataset_identity) and the seed, and whether the step finished. Per step:
 *   - same inputs, finished, its summary and checkpoints there: skipped, and said so;
 *   - same inputs, not finished, a resume state there: resumed, which ends exactly where an
 *     uninterrupted run does (the trainer's resume, distill/trainer.h);
 *   - otherwise run from the start (any resume state removed first, so that it cannot be taken
 *     for the new inputs').
 * A step whose teacher step ran again sees other checkpoint bytes and runs again too; an earlier
 * step that ran again to the same bytes leaves its readers skipped. The stamp is written
 * atomically with the step's first files (unfinished) and again when it finishes, so a step that
 * fails before its first epoch ends leaves no stamp, as it leaves no folder it made. */
#ifndef XD_DISTILL_PIPELINE_H
#define XD_DISTILL_PIPELINE_H

#include <stdio.h>

#include "core/status.h"
#include "distill/recipe.h"
#include "distill/trainer.h"

#define PIPELINE_MAX_STEPS 64
#define PIPELINE_MAX_SEEDS 64

/* Which checkpoint of a step another step reads. */
typedef enum { PIPELINE_CKPT_BEST, PIPELINE_CKPT_LAST, PIPELINE_CKPT_COUNT } pipeline_ckpt;
extern const char *const pipeline_ckpt_names[PIPELINE_CKPT_COUNT]; /* "best", "last" */

typedef struct {
    int teacher;        /* index into the step's recipe teachers */
    int step;           /* the earlier step it reads */
    pipeline_ckpt which;
} pipeline_ref;

typedef struct {
    char *name;         /* unique; the step's folder */
    char *recipe_path;  /* relative to the current folder */
    int line;           /* of the step in the pipeline file */
    char **sets;        /* "key.path=value", from `set:` and then the caller's */
    int n_sets;
    recipe r;           /* bound; the checkpoints of refs still read "step:..." */
    int n_refs;
    pipeline_ref refs[RECIPE_MAX_TEACHERS];
} pipeline_step;

typedef struct {
    char *file;
    char *name;         /* default: the file's base name without its extension */
    long seed;          /* first seed (default 1) */
    int seeds;          /* runs with seed, seed + 1, ... (default 1) */
    int n_steps;
    pipeline_step *steps;
} pipeline;

/* Parses and checks path; sets ("key.path=value", as `train --set` takes them) apply to every
 * step's recipe after its own `set:`. On failure p is empty (pipeline_free is safe) and e says
 * "FILE:LINE: key.path: reason". Neither sets nor a step's `set:` may name a key the pipeline
 * decides (pipeline_fixed_key). */
xd_status pipeline_load(const char *path, const char *const *sets, int n_sets, pipeline *p,
                        xd_err *e);
void pipeline_free(pipeline *p);

/* For an override of a key the pipeline decides, why it cannot be set and how to give it
 * instead: `seed`, `seeds` (every step runs with the pipeline's seeds) and `name` (a step's run
 * folder is its step name); NULL for any other key. arg is a key path or "key.path=value". */
const char *pipeline_fixed_key(const char *arg);

typedef enum { PIPELINE_RAN, PIPELINE_RESUMED, PIPELINE_SKIPPED, PIPELINE_ACTION_COUNT } pipeline_action;
extern const char *const pipeline_action_names[PIPELINE_ACTION_COUNT]; /* "ran", "resumed", ... */

typedef struct {
    const char *out_dir; /* NULL: runs/NAME */
    long seed;           /* < 0: the pipeline's */
    int seeds;           /* 0: the pipeline's */
    int stop_after;      /* > 0: a step stops once it has done this many epochs, and the chain
                          * with it (run again to continue) */
    int quiet;           /* no training progress */
    FILE *log;           /* training progress; NULL = stderr */
    FILE *out;           /* one line per step (skipped, resumed, run and its result) and the
                          * means over seeds; NULL = none */
} pipeline_opts;

typedef struct {
    int n_seeds, n_steps;
    train_result *res;        /* [seed * n_steps + step] */
    pipeline_action *action;  /* [seed * n_steps + step] */
    int finished;             /* every step of every seed finished */
} pipeline_result;

/* Runs (or skips) every step of every seed; with everything finished, writes OUT/summary.json:
 * per step, each seed's scores and the mean and standard deviation over seeds. */
xd_status pipeline_run(const pipeline *p, const pipeline_opts *o, pipeline_result *res,
                       xd_err *e);
void pipeline_result_free(pipeline_result *res);

#endif
