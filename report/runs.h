/* Run folders as a report sees them: found under any folder given, read from their summary.json
 * and metrics.jsonl, grouped by recipe.
 *
 * A run is a folder holding summary.json and metrics.jsonl (what `xdistill train` writes). A
 * `--seeds` folder holds its runs in seed-N/ subfolders, a pipeline folder holds run folders at
 * any depth: both are searched recursively (symbolic links are not followed; below a pipeline's
 * summary.json the step folders are taken in the pipeline's order, other folders by name).
 *
 * A run of several models that learn together (summary.json "models") becomes one rp_run per
 * model, named "RECIPE/MODEL", so that every model has its row, its curves and its evaluation:
 * its scores are its own (summary "models"), its series test_acc and train_acc are the run's
 * test_acc.MODEL and train_acc.MODEL, its loss components the run's components whose learning
 * end is the model (in the stage of each epoch, from the recipe stored in summary.json), and its
 * "loss" the weighted sum of those.
 *
 * Runs with the same name and the same recipe but for its seed form a group, its runs ordered by
 * seed (runs of one name whose recipes differ otherwise, say trained with and without a `--set`,
 * are groups of their own, each named "NAME (FOLDER)" after the folder of its first run, the
 * `--seeds` folder for a seed-N run); a group's score is the mean and
 * sample standard deviation of its finished runs' final test score (accuracy, or mIoU for segment
 * runs), the figures a `--seeds` summary.json gives. */
#ifndef XD_REPORT_RUNS_H
#define XD_REPORT_RUNS_H

#include "core/status.h"

/* One metrics.jsonl key over the epochs: v[epoch - 1], NAN where the line lacks it or holds null. */
typedef struct {
    char *key; /* "test_acc", "train_acc", "loss", "loss.0.ce", ... */
    double *v;
} rp_series;

typedef struct {
    char *dir;   /* the run folder as found */
    char *name;  /* the recipe's name (summary.json "name"); "RECIPE/MODEL" for a model of several */
    char *model; /* that model's name, in a run of several models; else NULL */
    char *variant; /* the stored recipe without its seed and seeds lines (NULL when none) */
    int model_index; /* its index in the recipe's models (0 in a run of one model) */
    long seed;
    int finished, segment;
    int best_on_val; /* best epoch chosen on a validation split (summary.json "best_on": "val") */
    /* test accuracy (segment: mIoU) after the last epoch (NAN when unfinished) and at the best
     * epoch (on the validation split, or else the test split) */
    double final_score, best_score;
    double final_pixel_acc;         /* segment runs; NAN otherwise */
    int best_epoch, epochs;
    double seconds, images_per_s;
    int n_epochs;                   /* epochs in metrics.jsonl */
    int n_series;
    rp_series *series;
} rp_run;

typedef struct {
    char *name;
    int segment;
    int n_runs;
    rp_run **runs;     /* by seed */
    int n_finished;
    double mean, std;  /* of the finished runs' final score */
    double pixel_mean, pixel_std; /* segment groups */
    double images_per_s, seconds; /* means over the runs */
} rp_group;

typedef struct {
    int n_runs;
    rp_run *runs;
    int n_groups;
    rp_group *groups; /* in the order their first run was found */
} rp_set;

/* Finds and reads every run under dirs[0..n). A folder holding no run, a folder with a
 * metrics.jsonl but no summary.json, a file that does not parse, or a run of several models whose
 * summary lacks a model's scores or a recipe that parses is an error naming it. */
xd_status rp_set_load(const char *const *dirs, int n, rp_set *set, xd_err *e);
void rp_set_free(rp_set *set);

/* The series of key, or NULL. */
const rp_series *rp_run_series(const rp_run *r, const char *key);
/* Mean and sample standard deviation (n - 1; 0 for one value) of v[0..n). */
void rp_mean_std(const double *v, int n, double *mean, double *std);
/* The score's metrics.jsonl key: "test_miou" for segment runs, else "test_acc". */
const char *rp_score_key(int segment);

#endif
