/* Run folders after the trainer (see runs.h). */
#include "distill/runs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

/* "final_test_acc", "best_test_miou", ...: the summary key of a run's score */
static const char *score_key(const train_result *res, const char *which)
{
    static char key[32];
    snprintf(key, sizeof key, "%s_test_%s", which, res->segment ? "miou" : "acc");
    return key;
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
        res->seed = (long)json_integer_value(json_object_get(j, "seed"));
        res->final_acc = json_real_value(json_object_get(j, score_key(res, "final")));
        res->best_acc = json_real_value(json_object_get(j, score_key(res, "best")));
        res->final_pixel_acc = json_real_value(json_object_get(j, "final_test_pixel_acc"));
        res->best_epoch = (int)json_integer_value(json_object_get(j, "best_epoch"));
        res->seconds = json_real_value(json_object_get(j, "train_seconds"));
        res->images_per_s = json_real_value(json_object_get(j, "images_per_s"));
        res->epochs_done = (int)json_integer_value(json_object_get(j, "epochs"));
        res->finished = 1;
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
    if (res->segment)
        fprintf(f, "%s seed %ld: test mIoU %.2f%%, pixel accuracy %.2f%% (best mIoU %.2f%% at "
                   "epoch %d), %.1f s, %.0f img/s\n", name, res->seed, 100.0 * res->final_acc,
                100.0 * res->final_pixel_acc, 100.0 * res->best_acc, res->best_epoch,
                res->seconds, res->images_per_s);
    else
        fprintf(f, "%s seed %ld: test accuracy %.2f%% (best %.2f%% at epoch %d), %.1f s, %.0f "
                   "img/s\n", name, res->seed, 100.0 * res->final_acc, 100.0 * res->best_acc,
                res->best_epoch, res->seconds, res->images_per_s);
}

/* mean and std of res[i].final_acc (pixel = 0) or res[i].final_pixel_acc (pixel = 1) */
static void final_mean_std(const train_result *res, int n, int pixel, double *m, double *sd)
{
    double v[64];
    XD_ASSERT(n >= 1 && n <= 64);
    for (int i = 0; i < n; i++) v[i] = pixel ? res[i].final_pixel_acc : res[i].final_acc;
    runs_mean_std(v, n, m, sd);
}

void runs_print_seeds(FILE *f, const char *name, const train_result *res, int n)
{
    double m, sd, pm, psd;
    final_mean_std(res, n, 0, &m, &sd);
    if (res[0].segment) {
        final_mean_std(res, n, 1, &pm, &psd);
        fprintf(f, "%s: test mIoU %.2f +- %.2f%%, pixel accuracy %.2f +- %.2f%% over %d seed%s\n",
                name, 100.0 * m, 100.0 * sd, 100.0 * pm, 100.0 * psd, n, n == 1 ? "" : "s");
    } else {
        fprintf(f, "%s: test accuracy %.2f +- %.2f%% over %d seed%s\n", name, 100.0 * m,
                100.0 * sd, n, n == 1 ? "" : "s");
    }
}

static json_t *mean_std_json(const double *v, int n)
{
    double m, sd;
    runs_mean_std(v, n, &m, &sd);
    json_t *o = json_object();
    json_object_set_new(o, "mean", json_real(m));
    json_object_set_new(o, "std", json_real(sd));
    return o;
}

json_t *runs_seeds_json(const char *name, const train_result *res, int n)
{
    double fin[64], best[64], pix[64];
    XD_ASSERT(n >= 1 && n <= 64);
    json_t *runs = json_array();
    for (int i = 0; i < n; i++) {
        fin[i] = res[i].final_acc;
        best[i] = res[i].best_acc;
        pix[i] = res[i].final_pixel_acc;
        json_t *o = json_object();
        json_object_set_new(o, "seed", json_integer(res[i].seed));
        json_object_set_new(o, score_key(&res[i], "final"), json_real(res[i].final_acc));
        if (res[i].segment)
            json_object_set_new(o, "final_test_pixel_acc", json_real(res[i].final_pixel_acc));
        json_object_set_new(o, score_key(&res[i], "best"), json_real(res[i].best_acc));
        json_object_set_new(o, "best_epoch", json_integer(res[i].best_epoch));
        json_object_set_new(o, "train_seconds", json_real(res[i].seconds));
        json_array_append_new(runs, o);
    }
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(name));
    json_object_set_new(j, "seeds", json_integer(n));
    json_object_set_new(j, "runs", runs);
    json_object_set_new(j, score_key(&res[0], "final"), mean_std_json(fin, n));
    json_object_set_new(j, score_key(&res[0], "best"), mean_std_json(best, n));
    if (res[0].segment) json_object_set_new(j, "final_test_pixel_acc", mean_std_json(pix, n));
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
    json_object_set_new(j, "recipe", json_string(yaml));
    free(yaml);
    char *path = io_path_join(dir, "summary.json");
    xd_status s = runs_write_json(path, j, e);
    free(path);
    json_decref(j);
    return s;
}
