/* Finding and reading run folders (see runs.h). */
#include "report/runs.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "io/file.h"

/* Longest metrics.jsonl / summary.json read; a run's files are far smaller. */
#define RP_MAX_FILE (256u << 20)
/* More epochs than this in metrics.jsonl is not a run we wrote. */
#define RP_MAX_EPOCHS 1000000

const char *rp_score_key(int segment) { return segment ? "test_miou" : "test_acc"; }

void rp_mean_std(const double *v, int n, double *mean, double *std)
{
    double s = 0.0, q = 0.0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *std = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

static int is_file(const char *dir, const char *name)
{
    char *p = io_path_join(dir, name);
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

static double num_or_nan(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

static xd_status read_summary(rp_run *r, xd_err *e)
{
    char *path = io_path_join(r->dir, "summary.json");
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    xd_status s = XD_OK;
    if (!j) {
        s = xd_fail(e, XD_EFORMAT, "%s:%d: not JSON: %s", path, je.line, je.text);
    } else if (!json_is_string(json_object_get(j, "name"))) {
        s = xd_fail(e, XD_EFORMAT, "%s: no \"name\" (not a run's summary.json)", path);
    } else {
        r->name = xd_xstrdup(json_string_value(json_object_get(j, "name")));
        r->seed = (long)json_integer_value(json_object_get(j, "seed"));
        r->finished = json_is_true(json_object_get(j, "finished"));
        r->segment = json_object_get(j, "final_test_miou") != NULL;
        const char *fin = r->segment ? "final_test_miou" : "final_test_acc";
        const char *best = r->segment ? "best_test_miou" : "best_test_acc";
        r->final_score = num_or_nan(json_object_get(j, fin));
        r->best_score = num_or_nan(json_object_get(j, best));
        r->final_pixel_acc = num_or_nan(json_object_get(j, "final_test_pixel_acc"));
        r->best_epoch = (int)json_integer_value(json_object_get(j, "best_epoch"));
        r->epochs = (int)json_integer_value(json_object_get(j, "epochs"));
        r->seconds = num_or_nan(json_object_get(j, "train_seconds"));
        r->images_per_s = num_or_nan(json_object_get(j, "images_per_s"));
        if (!r->finished) r->final_score = NAN;
    }
    json_decref(j);
    free(path);
    return s;
}

static rp_series *series_of(rp_run *r, const char *key)
{
    for (int i = 0; i < r->n_series; i++)
        if (strcmp(r->series[i].key, key) == 0) return &r->series[i];
    r->series = xd_xrealloc(r->series, sizeof *r->series * (size_t)(r->n_series + 1));
    rp_series *s = &r->series[r->n_series++];
    s->key = xd_xstrdup(key);
    s->v = NULL;
    return s;
}

/* one line per epoch; numbers and nulls of every key become series */
static xd_status read_metrics(rp_run *r, xd_err *e)
{
    char *path = io_path_join(r->dir, "metrics.jsonl");
    void *data;
    size_t n;
    xd_status s = io_read_all(path, RP_MAX_FILE, &data, &n, e);
    int cap = 0, line = 0;
    for (char *p = data, *end; s == XD_OK && p && *p; p = end ? end + 1 : NULL) {
        end = strchr(p, '\n');
        if (end) *end = '\0';
        line++;
        if (!*p) continue;
        json_error_t je;
        json_t *j = json_loads(p, 0, &je);
        if (!json_is_object(j)) {
            json_decref(j);
            s = xd_fail(e, XD_EFORMAT, "%s:%d: not a JSON object", path, line);
            break;
        }
        json_int_t ep = json_integer_value(json_object_get(j, "epoch"));
        if (ep < 1 || ep > RP_MAX_EPOCHS) {
            json_decref(j);
            s = xd_fail(e, XD_EFORMAT, "%s:%d: no epoch number", path, line);
            break;
        }
        if (ep > r->n_epochs) {
            if (ep > cap) {
                int old = cap;
                while (cap < ep) cap = cap ? 2 * cap : 16;
                for (int k = 0; k < r->n_series; k++) {
                    r->series[k].v = xd_xrealloc(r->series[k].v, sizeof(double) * (size_t)cap);
                    for (int q = old; q < cap; q++) r->series[k].v[q] = NAN;
                }
            }
            r->n_epochs = (int)ep;
        }
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) {
            if (!json_is_number(v) && !json_is_null(v)) continue;
            rp_series *sr = series_of(r, key);
            if (!sr->v) {
                sr->v = xd_xmalloc(sizeof(double) * (size_t)cap);
                for (int q = 0; q < cap; q++) sr->v[q] = NAN;
            }
            sr->v[ep - 1] = num_or_nan(v);
        }
        json_decref(j);
    }
    if (s == XD_OK && r->n_epochs == 0) s = xd_fail(e, XD_EFORMAT, "%s: no epoch in it", path);
    free(data);
    free(path);
    return s;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* dir and the folders below it: a run is read, anything else searched */
static xd_status walk(rp_set *set, const char *dir, xd_err *e)
{
    int has_metrics = is_file(dir, "metrics.jsonl");
    if (is_file(dir, "summary.json") && has_metrics) {
        set->runs = xd_xrealloc(set->runs, sizeof *set->runs * (size_t)(set->n_runs + 1));
        rp_run *r = &set->runs[set->n_runs++];
        memset(r, 0, sizeof *r);
        r->dir = xd_xstrdup(dir);
        xd_status s = read_summary(r, e);
        return s == XD_OK ? read_metrics(r, e) : s;
    }
    if (has_metrics)
        return xd_fail(e, XD_EFORMAT, "%s: a run without summary.json (metrics.jsonl but no "
                                      "summary: still running, or stopped?)", dir);
    struct dirent **list;
    int n = scandir(dir, &list, NULL, by_name);
    if (n < 0) return xd_fail(e, XD_EIO, "%s: cannot read the folder", dir);
    xd_status s = XD_OK;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        if (s == XD_OK && nm[0] != '.') {
            char *sub = io_path_join(dir, nm);
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) s = walk(set, sub, e);
            free(sub);
        }
        free(list[i]);
    }
    free(list);
    return s;
}

static int by_seed(const void *a, const void *b)
{
    const rp_run *x = *(rp_run *const *)a, *y = *(rp_run *const *)b;
    return (x->seed > y->seed) - (x->seed < y->seed);
}

static void group_runs(rp_set *set)
{
    set->groups = xd_xcalloc((size_t)set->n_runs, sizeof *set->groups);
    for (int i = 0; i < set->n_runs; i++) {
        rp_run *r = &set->runs[i];
        rp_group *g = NULL;
        for (int k = 0; k < set->n_groups && !g; k++)
            if (strcmp(set->groups[k].name, r->name) == 0) g = &set->groups[k];
        if (!g) {
            g = &set->groups[set->n_groups++];
            g->name = xd_xstrdup(r->name);
            g->segment = r->segment;
            g->runs = xd_xcalloc((size_t)set->n_runs, sizeof *g->runs);
        }
        g->runs[g->n_runs++] = r;
    }
    double *v = xd_xcalloc((size_t)set->n_runs + 1, sizeof *v);
    double *pv = xd_xcalloc((size_t)set->n_runs + 1, sizeof *pv);
    for (int k = 0; k < set->n_groups; k++) {
        rp_group *g = &set->groups[k];
        qsort(g->runs, (size_t)g->n_runs, sizeof *g->runs, by_seed);
        double ips = 0.0, secs = 0.0;
        g->n_finished = 0;
        for (int i = 0; i < g->n_runs; i++) {
            const rp_run *r = g->runs[i];
            ips += r->images_per_s;
            secs += r->seconds;
            if (!r->finished) continue;
            v[g->n_finished] = r->final_score;
            pv[g->n_finished++] = r->final_pixel_acc;
        }
        rp_mean_std(v, g->n_finished, &g->mean, &g->std);
        rp_mean_std(pv, g->n_finished, &g->pixel_mean, &g->pixel_std);
        g->images_per_s = ips / g->n_runs;
        g->seconds = secs / g->n_runs;
    }
    free(v);
    free(pv);
}

xd_status rp_set_load(const char *const *dirs, int n, rp_set *set, xd_err *e)
{
    memset(set, 0, sizeof *set);
    xd_status s = XD_OK;
    for (int i = 0; i < n && s == XD_OK; i++) {
        struct stat st;
        int before = set->n_runs;
        if (stat(dirs[i], &st) != 0)
            s = xd_fail(e, XD_EIO, "%s: no such folder", dirs[i]);
        else if (!S_ISDIR(st.st_mode))
            s = xd_fail(e, XD_EARG, "%s: not a folder (give run folders)", dirs[i]);
        else if ((s = walk(set, dirs[i], e)) == XD_OK && set->n_runs == before)
            s = xd_fail(e, XD_EARG, "%s: no run in it (a run folder holds summary.json and "
                                    "metrics.jsonl)", dirs[i]);
    }
    if (s == XD_OK) group_runs(set);
    else rp_set_free(set);
    return s;
}

void rp_set_free(rp_set *set)
{
    for (int i = 0; i < set->n_runs; i++) {
        rp_run *r = &set->runs[i];
        for (int k = 0; k < r->n_series; k++) {
            free(r->series[k].key);
            free(r->series[k].v);
        }
        free(r->series);
        free(r->dir);
        free(r->name);
    }
    for (int k = 0; k < set->n_groups; k++) {
        free(set->groups[k].name);
        free(set->groups[k].runs);
    }
    free(set->runs);
    free(set->groups);
    memset(set, 0, sizeof *set);
}

const rp_series *rp_run_series(const rp_run *r, const char *key)
{
    for (int i = 0; i < r->n_series; i++)
        if (strcmp(r->series[i].key, key) == 0) return &r->series[i];
    return NULL;
}
