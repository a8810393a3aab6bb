/* Run folders after the trainer: a finished run's numbers read back from its summary.json, the
 * one-line report of a run, and the mean and standard deviation over several seeds (the
 * multi-seed summary.json of `xdistill train --seeds K`, and each step of `xdistill run`). A run
 * of several models (a `models:` list) has each model's scores too: its report line names every
 * model, and its summaries add "models": {NAME: {final_test_*, ...}}. */
#ifndef XD_DISTILL_RUNS_H
#define XD_DISTILL_RUNS_H

#include <jansson.h>
#include <stdio.h>

#include "core/status.h"
#include "distill/recipe.h"
#include "distill/trainer.h"

/* 1 and res filled when dir/summary.json says the run finished; else 0 (res untouched). */
int runs_read_finished(const char *dir, train_result *res);

/* Mean and sample standard deviation (0 for one value). */
void runs_mean_std(const double *v, int n, double *mean, double *std);

/* "NAME seed N: test accuracy ..." (or mIoU and pixel accuracy), one line to f. */
void runs_print_result(FILE *f, const char *name, const train_result *res);
/* "NAME: test accuracy M +- S% over K seeds" (or mIoU and pixel accuracy), one line to f. */
void runs_print_seeds(FILE *f, const char *name, const train_result *res, int n);

/* {name, seeds, runs: [per seed], final_test_*: {mean, std}} for n finished runs (n >= 1), with a
 * validation split also best_val_* and test_*_at_best: {mean, std}; the caller owns the object. */
json_t *runs_seeds_json(const char *name, const train_result *res, int n);
/* runs_seeds_json plus the recipe, as dir/summary.json. */
xd_status runs_write_seeds_summary(const char *dir, const recipe *r, const train_result *res,
                                   int n, xd_err *e);
/* j as indented JSON and a newline, written to path atomically. */
xd_status runs_write_json(const char *path, const json_t *j, xd_err *e);

#endif
