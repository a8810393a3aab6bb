/* Run folders after the trainer (see runs.h). */
#include "distill/runs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "modalities/text/utf8.h"

/* "final_test_acc", "best_val_miou", "test_acc_at_best", "best_test_acc": the summary key of a
 * run's score: final, best (on the validation split, which chose the best checkpoint), at_best
 * (the best checkpoint's test score), old_best (an older summary's best epoch chosen on the test
 * split, read as its at_best) */
static const char *score_key(const train_result *res, const char *which)
{
    static char key[32];
    const char *score = res->segment ? "miou" : "acc";
    if (strcmp(which, "at_best") == 0)
        snprintf(key, sizeof key, "test_%s_at_best", score);
    else if (strcmp(which, "best") == 0)
        snprintf(key, sizeof key, "best_val_%s", score);
    else
        snprintf(key, sizeof key, "%s_test_%s", strcmp(which, "old_best") ? which : "best", score);
    return key;
}

/* The test score at the best epoch: test_*_at_best, or in an older summary without it best_test_*
 * (its best epoch chosen on the test split). */
static double at_best(const train_result *res, const json_t *o)
{
    const json_t *v = json_object_get(o, score_key(res, "at_best"));
    return json_real_value(v ? v : json_object_get(o, score_key(res, "old_best")));
}

/* The score that chose the best checkpoint: on the validation split, else none (its test score). */
static double best_score(const train_result *res, const json_t *o)
{
    return res->val ? json_real_value(json_object_get(o, score_key(res, "best"))) : at_best(res, o);
}

int runs_read_finished(const char *dir, train_result *res)
{
    char *path = io_path_join(dir, "summary.json");
    json_t *j = json_load_file(path, 0, NULL);
    free(path);
    if (!j) return 0;
    int ok = json_is_true(json_object_get(j, "finished"));
    if (ok) {
        /* a segment run's scores are its mIoU, with the pixel accuracy beside them */
        res->segment = json_object_get(j, "final_test_miou") != NULL;
        const char *on = json_string_value(json_object_get(j, "best_on"));
        res->val = on && strcmp(on, "val") == 0;
        res->test_at_best = at_best(res, j);
        res->final_bacc = json_real_value(json_object_get(j, "final_test_bacc"));
        res->seed = (long)json_integer_value(json_object_get(j, "seed"));
        res->final_acc = json_real_value(json_object_get(j, score_key(res, "final")));
        res->best_acc = best_score(res, j);
        res->final_pixel_acc = json_real_value(json_object_get(j, "final_test_pixel_acc"));
        res->best_epoch = (int)json_integer_value(json_object_get(j, "best_epoch"));
        res->seconds = json_real_value(json_object_get(j, "train_seconds"));
        res->images_per_s = json_real_value(json_object_get(j, "images_per_s"));
        res->epochs_done = (int)json_integer_value(json_object_get(j, "epochs"));
        res->finished = 1;
        /* a run of several models: each one's scores */
        const char *name;
        json_t *o;
        res->n_models = 0;
        json_object_foreach(json_object_get(j, "models"), name, o) {
            if (res->n_models == RECIPE_MAX_MODELS) break;
            train_model_result *mr = &res->models[res->n_models++];
            snprintf(mr->name, sizeof mr->name, "%s", name);
            mr->final_acc = json_real_value(json_object_get(o, score_key(res, "final")));
            mr->best_acc = best_score(res, o);
            mr->best_epoch = (int)json_integer_value(json_object_get(o, "best_epoch"));
            mr->test_at_best = at_best(res, o);
            mr->final_bacc = json_real_value(json_object_get(o, "final_test_bacc"));
        }
        /* a model with early exits: each exit's scores */
        res->n_exits = 0;
        json_object_foreach(json_object_get(j, "exits"), name, o) {
            if (res->n_exits == EXITS_MAX) break;
            train_exit_result *x = &res->exits[res->n_exits++];
            snprintf(x->name, sizeof x->name, "%s", name);
            x->final_acc = json_real_value(json_object_get(o, "final_test_acc"));
        }
    }
    json_decref(j);
    return ok;
}

void runs_mean_std(const double *v, int n, double *mean, double *std)
{
    double s = 0.0, q = 0.0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *std = n > 1 ? sqrt(q / (n - 1)) : 0.0; /* sample standard deviation */
}

void runs_print_result(FILE *f, const char *name, const train_result *res)
{
    if (res->val) {
        /* best chosen on the validation split: its score there and its test score */
        const char *what = res->segment ? "mIoU" : "accuracy";
        fprintf(f, "%s seed %ld:", name, res->seed);
        for (int k = 0; k < res->n_models; k++) {
            const train_model_result *mr = &res->models[k];
            fprintf(f, "%s%s%s test %s %.2f%% (best on validation %.2f%% at epoch %d: test %.2f%%)",
                    k ? "," : "", res->n_models > 1 ? " " : "", res->n_models > 1 ? mr->name : "",
                    what, 100.0 * mr->final_acc, 100.0 * mr->best_acc, mr->best_epoch,
                    100.0 * mr->test_at_best);
        }
        fprintf(f, ", %.1f s, %.0f img/s\n", res->seconds, res->images_per_s);
    } else if (res->n_models > 1) {
        /* a run of several models: each model's final accuracy (no validation split: nothing
         * chose a best epoch, so none is shown) */
        fprintf(f, "%s seed %ld:", name, res->seed);
        for (int k = 0; k < res->n_models; k++)
            fprintf(f, "%s %s test accuracy %.2f%%", k ? "," : "", res->models[k].name,
                    100.0 * res->models[k].final_acc);
        fprintf(f, ", %.1f s, %.0f img/s\n", res->seconds, res->images_per_s);
    } else if (res->segment)
        fprintf(f, "%s seed %ld: test mIoU %.2f%%, pixel accuracy %.2f%%, %.1f s, %.0f img/s\n",
                name, res->seed, 100.0 * res->final_acc, 100.0 * res->final_pixel_acc,
                res->seconds, res->images_per_s);
    else
        fprintf(f, "%s seed %ld: test accuracy %.2f%%, %.1f s, %.0f img/s\n", name, res->seed,
                100.0 * res->final_acc, res->seconds, res->images_per_s);
    for (int x = 0; x < res->n_exits; x++)
        fprintf(f, "%s%s %.2f%%%s", x ? ", " : "  exits: ", res->exits[x].name,
                100.0 * res->exits[x].final_acc, x == res->n_exits - 1 ? "\n" : "");
}

/* The score of res over the seeds that mean_std and the summaries take. */
typedef enum { SC_FINAL, SC_BEST, SC_PIXEL, SC_AT_BEST } score_which;

/* which score of each res[i]: exit x's (k <= -2, x = -2 - k), model k's (k >= 0, of a run of
 * several models) or the run's (k = -1) */
static double score_of(const train_result *res, int k, score_which which)
{
    if (k <= -2) return res->exits[-2 - k].final_acc;
    if (k >= 0)
        return which == SC_BEST      ? res->models[k].best_acc
               : which == SC_AT_BEST ? res->models[k].test_at_best
                                     : res->models[k].final_acc;
    return which == SC_BEST      ? res->best_acc
           : which == SC_PIXEL   ? res->final_pixel_acc
           : which == SC_AT_BEST ? res->test_at_best
                                 : res->final_acc;
}

/* mean and std of that score over res[0..n) */
static void score_mean_std(const train_result *res, int n, int k, score_which which, double *m,
                           double *sd)
{
    double v[64];
    XD_ASSERT(n >= 1 && n <= 64);
    for (int i = 0; i < n; i++) v[i] = score_of(&res[i], k, which);
    runs_mean_std(v, n, m, sd);
}

void runs_print_seeds(FILE *f, const char *name, const train_result *res, int n)
{
    double m, sd, pm, psd;
    score_mean_std(res, n, -1, SC_FINAL, &m, &sd);
    if (res[0].n_models > 1) {
        for (int k = 0; k < res[0].n_models; k++) {
            score_mean_std(res, n, k, SC_FINAL, &m, &sd);
            fprintf(f, "%s %s: test accuracy %.2f +- %.2f%% over %d seed%s\n", name,
                    res[0].models[k].name, 100.0 * m, 100.0 * sd, n, n == 1 ? "" : "s");
        }
    } else if (res[0].segment) {
        score_mean_std(res, n, -1, SC_PIXEL, &pm, &psd);
        fprintf(f, "%s: test mIoU %.2f +- %.2f%%, pixel accuracy %.2f +- %.2f%% over %d seed%s\n",
                name, 100.0 * m, 100.0 * sd, 100.0 * pm, 100.0 * psd, n, n == 1 ? "" : "s");
    } else {
        fprintf(f, "%s: test accuracy %.2f +- %.2f%% over %d seed%s\n", name, 100.0 * m,
                100.0 * sd, n, n == 1 ? "" : "s");
    }
    for (int x = 0; x < res[0].n_exits; x++) {
        score_mean_std(res, n, -2 - x, SC_FINAL, &m, &sd);
        fprintf(f, "%s exit %s: test accuracy %.2f +- %.2f%% over %d seed%s\n", name,
                res[0].exits[x].name, 100.0 * m, 100.0 * sd, n, n == 1 ? "" : "s");
    }
}

static json_t *mean_std_json(const train_result *res, int n, int k, score_which which)
{
    double m, sd;
    score_mean_std(res, n, k, which, &m, &sd);
    json_t *o = json_object();
    json_object_set_new(o, "mean", json_real(m));
    json_object_set_new(o, "std", json_real(sd));
    return o;
}

json_t *runs_seeds_json(const char *name, const train_result *res, int n)
{
    XD_ASSERT(n >= 1 && n <= 64);
    json_t *runs = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "seed", json_integer(res[i].seed));
        json_object_set_new(o, score_key(&res[i], "final"), json_real(res[i].final_acc));
        if (res[i].segment)
            json_object_set_new(o, "final_test_pixel_acc", json_real(res[i].final_pixel_acc));
        if (res[i].val) {
            json_object_set_new(o, score_key(&res[i], "best"), json_real(res[i].best_acc));
            json_object_set_new(o, score_key(&res[i], "at_best"), json_real(res[i].test_at_best));
        }
        json_object_set_new(o, "best_epoch", json_integer(res[i].best_epoch));
        json_object_set_new(o, "train_seconds", json_real(res[i].seconds));
        json_array_append_new(runs, o);
    }
    json_t *j = json_object();
    json_object_set_new(j, "name", txt_json_string(name));
    json_object_set_new(j, "seeds", json_integer(n));
    json_object_set_new(j, "runs", runs);
    json_object_set_new(j, score_key(&res[0], "final"), mean_std_json(res, n, -1, SC_FINAL));
    if (res[0].val) {
        json_object_set_new(j, score_key(&res[0], "best"), mean_std_json(res, n, -1, SC_BEST));
        json_object_set_new(j, score_key(&res[0], "at_best"), mean_std_json(res, n, -1, SC_AT_BEST));
    }
    if (res[0].segment)
        json_object_set_new(j, "final_test_pixel_acc", mean_std_json(res, n, -1, SC_PIXEL));
    if (res[0].n_models > 1) {
        /* "models": each model's final score over the seeds, and with a validation split its
         * best there and the test score at that best */
        json_t *all = json_object();
        for (int k = 0; k < res[0].n_models; k++) {
            json_t *o = json_object();
            json_object_set_new(o, score_key(&res[0], "final"), mean_std_json(res, n, k, SC_FINAL));
            if (res[0].val) {
                json_object_set_new(o, score_key(&res[0], "best"), mean_std_json(res, n, k, SC_BEST));
                json_object_set_new(o, score_key(&res[0], "at_best"),
                                    mean_std_json(res, n, k, SC_AT_BEST));
            }
            json_object_set_new(all, res[0].models[k].name, o);
        }
        json_object_set_new(j, "models", all);
    }
    if (res[0].n_exits) {
        /* "exits": each early exit's final accuracy over the seeds */
        json_t *all = json_object();
        for (int x = 0; x < res[0].n_exits; x++) {
            json_t *o = json_object();
            json_object_set_new(o, "final_test_acc", mean_std_json(res, n, -2 - x, SC_FINAL));
            json_object_set_new(all, res[0].exits[x].name, o);
        }
        json_object_set_new(j, "exits", all);
    }
    return j;
}

xd_status runs_write_json(const char *path, const json_t *j, xd_err *e)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    io_atomic w;
    xd_status s = io_atomic_open(&w, path, e);
    if (s == XD_OK && (s = io_atomic_write(&w, text, strlen(text), e)) == XD_OK &&
        (s = io_atomic_write(&w, "\n", 1, e)) == XD_OK)
        s = io_atomic_commit(&w, e);
    else if (s != XD_OK && w.f)
        io_atomic_abort(&w);
    free(text);
    return s;
}

xd_status runs_write_seeds_summary(const char *dir, const recipe *r, const train_result *res,
                                   int n, xd_err *e)
{
    json_t *j = runs_seeds_json(r->name, res, n);
    char *yaml = recipe_to_yaml(r);
    json_object_set_new(j, "recipe", txt_json_string(yaml));
    free(yaml);
    char *path = io_path_join(dir, "summary.json");
    xd_status s = runs_write_json(path, j, e);
    free(path);
    json_decref(j);
    return s;
}
