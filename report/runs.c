/* Finding and reading run folders (see runs.h). */
#include "report/runs.h"

#include <ctype.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "distill/recipe.h"
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

/* the scores of a summary object (the whole summary, or one model's entry in "models"); the best
 * epoch's test score is under test_*_at_best (an older summary without it chose its best epoch on
 * the test split and has it under best_test_*) */
static void read_scores(rp_run *r, const json_t *o)
{
    const char *fin = r->segment ? "final_test_miou" : "final_test_acc";
    const json_t *best = json_object_get(o, r->segment ? "test_miou_at_best" : "test_acc_at_best");
    if (!best) best = json_object_get(o, r->segment ? "best_test_miou" : "best_test_acc");
    r->final_score = r->finished ? num_or_nan(json_object_get(o, fin)) : NAN;
    r->best_score = num_or_nan(best);
    r->best_epoch = (int)json_integer_value(json_object_get(o, "best_epoch"));
}

/* The stored recipe yaml as the runs of one --seeds folder (or pipeline) share it, NULL for NULL:
 * without its top-level "seed:" and "seeds:" lines and its "threads:" line (which changes no
 * result), and with every "seed-DIGITS" (a seed's folder
 * in a path, say of a pipeline step's teacher) as "seed-N". */
static char *recipe_without_seed(const char *yaml)
{
    if (!yaml) return NULL;
    char *out = xd_xmalloc(strlen(yaml) + 1), *o = out;
    for (const char *p = yaml; *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) + 1 : strlen(p);
        const int skip = strncmp(p, "seed:", 5) == 0 || strncmp(p, "seeds:", 6) == 0 ||
                         strncmp(p, "  threads:", 10) == 0;
        for (size_t i = 0; i < n && !skip;) {
            *o++ = p[i++];
            const int seed_dir = i >= 5 && strncmp(p + i - 5, "seed-", 5) == 0;
            if (seed_dir && i < n && isdigit((unsigned char)p[i])) {
                *o++ = 'N';
                while (i < n && isdigit((unsigned char)p[i])) i++;
            }
        }
        p += n;
    }
    *o = '\0';
    return out;
}

/* r's summary.json, kept in *out for the models of a run of several */
static xd_status read_summary(rp_run *r, json_t **out, xd_err *e)
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
        const char *on = json_string_value(json_object_get(j, "best_on"));
        r->best_on_val = on && strcmp(on, "val") == 0;
        read_scores(r, j);
        r->final_pixel_acc = num_or_nan(json_object_get(j, "final_test_pixel_acc"));
        r->epochs = (int)json_integer_value(json_object_get(j, "epochs"));
        r->seconds = num_or_nan(json_object_get(j, "train_seconds"));
        r->images_per_s = num_or_nan(json_object_get(j, "images_per_s"));
        r->variant = recipe_without_seed(json_string_value(json_object_get(j, "recipe")));
    }
    if (s == XD_OK) *out = j;
    else json_decref(j);
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

static void run_free(rp_run *r)
{
    for (int k = 0; k < r->n_series; k++) {
        free(r->series[k].key);
        free(r->series[k].v);
    }
    free(r->series);
    free(r->dir);
    free(r->name);
    free(r->model);
    free(r->variant);
    memset(r, 0, sizeof *r);
}

static rp_run *push_run(rp_set *set)
{
    set->runs = xd_xrealloc(set->runs, sizeof *set->runs * (size_t)(set->n_runs + 1));
    return &set->runs[set->n_runs++];
}

/* a copy of v[0..r->n_epochs) as r's series key */
static void add_series(rp_run *r, const char *key, const double *v)
{
    rp_series *sr = series_of(r, key);
    sr->v = xd_xmalloc(sizeof(double) * (size_t)r->n_epochs);
    memcpy(sr->v, v, sizeof(double) * (size_t)r->n_epochs);
}

/* "PREFIX.NAME" is a per-model key of a run of several models */
static int per_model_key(const char *key)
{
    return strncmp(key, "test_acc.", 9) == 0 || strncmp(key, "train_acc.", 10) == 0;
}

/* Model k of a run of several models (whole, read from its folder) as a run of its own (see
 * runs.h). */
static xd_status model_run(const rp_run *whole, const json_t *summary, const recipe *rc, int k,
                           rp_run *m, xd_err *e)
{
    const char *name = rc->models[k].name;
    const json_t *o = json_object_get(json_object_get(summary, "models"), name);
    if (!json_is_object(o))
        return xd_fail(e, XD_EFORMAT, "%s/summary.json: no \"models\" entry of model '%s'",
                       whole->dir, name);
    memset(m, 0, sizeof *m);
    m->dir = xd_xstrdup(whole->dir);
    size_t n = strlen(whole->name) + strlen(name) + 2;
    m->name = xd_xmalloc(n);
    snprintf(m->name, n, "%s/%s", whole->name, name);
    m->model = xd_xstrdup(name);
    m->model_index = k;
    m->variant = whole->variant ? xd_xstrdup(whole->variant) : NULL;
    m->seed = whole->seed;
    m->finished = whole->finished;
    m->segment = whole->segment;
    m->best_on_val = whole->best_on_val;
    read_scores(m, o);
    m->final_pixel_acc = NAN;
    m->epochs = whole->epochs;
    m->seconds = whole->seconds;
    m->images_per_s = whole->images_per_s;
    m->n_epochs = whole->n_epochs;
    const int T = whole->n_epochs;
    const rp_series *stage = rp_run_series(whole, "stage");
    double *v = xd_xmalloc(sizeof(double) * (size_t)T);
    double *loss = xd_xmalloc(sizeof(double) * (size_t)T);
    for (int t = 0; t < T; t++) loss[t] = NAN;
    for (int i = 0; i < whole->n_series; i++) {
        const rp_series *sr = &whole->series[i];
        const char *dot = strchr(sr->key, '.');
        int l;
        if (per_model_key(sr->key)) {
            if (strcmp(dot + 1, name) != 0) continue;
            /* "test_acc.NAME" -> "test_acc" */
            char key[16];
            snprintf(key, sizeof key, "%.*s", (int)(dot - sr->key), sr->key);
            add_series(m, key, sr->v);
        } else if (sscanf(sr->key, "loss.%d.", &l) == 1) {
            /* a component counts where the epoch's stage has it learn into this model */
            int any = 0;
            for (int t = 0; t < T; t++) {
                int st = stage && isfinite(stage->v[t]) ? (int)stage->v[t] : 1;
                const recipe_stage *S = st >= 1 && st <= rc->n_stages ? &rc->stages[st - 1] : NULL;
                int mine = S && l >= 0 && l < S->n_losses && S->losses[l].model == k;
                v[t] = mine ? sr->v[t] : NAN;
                if (!mine || !isfinite(v[t])) continue;
                any = 1;
                loss[t] = (isfinite(loss[t]) ? loss[t] : 0.0) + S->losses[l].weight * v[t];
            }
            if (any) add_series(m, sr->key, v);
        } else if (strcmp(sr->key, "loss") != 0) {
            add_series(m, sr->key, sr->v);
        }
    }
    add_series(m, "loss", loss);
    free(v);
    free(loss);
    return XD_OK;
}

/* The run in dir: one rp_run, or one per model of a run of several models. */
static xd_status read_run(rp_set *set, const char *dir, xd_err *e)
{
    rp_run r;
    memset(&r, 0, sizeof r);
    r.dir = xd_xstrdup(dir);
    json_t *summary = NULL;
    xd_status s = read_summary(&r, &summary, e);
    if (s == XD_OK) s = read_metrics(&r, e);
    if (s == XD_OK && !json_is_object(json_object_get(summary, "models"))) {
        *push_run(set) = r;
        json_decref(summary);
        return XD_OK;
    }
    /* several models: the recipe tells which loss component trains which model */
    const char *yaml = json_string_value(json_object_get(summary, "recipe"));
    char *where = io_path_join(dir, "summary.json");
    recipe rc;
    memset(&rc, 0, sizeof rc);
    if (s == XD_OK && !yaml)
        s = xd_fail(e, XD_EFORMAT, "%s: a run of several models without its \"recipe\"", where);
    else if (s == XD_OK)
        s = recipe_parse(where, yaml, strlen(yaml), NULL, 0,
                         RECIPE_NO_FILE_CHECKS | RECIPE_STEP_REFS, &rc, e);
    for (int k = 0; s == XD_OK && k < rc.n_models; k++) {
        rp_run m;
        if ((s = model_run(&r, summary, &rc, k, &m, e)) == XD_OK) *push_run(set) = m;
    }
    recipe_free(&rc);
    free(where);
    run_free(&r);
    json_decref(summary);
    return s;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* the steps of a pipeline's summary.json in dir (NULL when dir holds none), a new reference */
static json_t *pipeline_steps(const char *dir)
{
    if (!is_file(dir, "summary.json")) return NULL;
    char *path = io_path_join(dir, "summary.json");
    json_t *j = json_load_file(path, 0, NULL);
    json_t *steps = json_incref(json_object_get(j, "steps"));
    json_decref(j);
    free(path);
    if (json_is_array(steps)) return steps;
    json_decref(steps);
    return NULL;
}

static int is_step(const json_t *steps, const char *name)
{
    size_t i;
    const json_t *st;
    json_array_foreach(steps, i, st) {
        const char *n = json_string_value(json_object_get(st, "name"));
        if (n && strcmp(n, name) == 0) return 1;
    }
    return 0;
}

static xd_status walk(rp_set *set, const char *dir, const json_t *steps, xd_err *e);

/* dir/name when it is a folder (not a link) */
static xd_status walk_sub(rp_set *set, const char *dir, const char *name, const json_t *steps,
                          xd_err *e)
{
    char *sub = io_path_join(dir, name);
    struct stat st;
    xd_status s = XD_OK;
    if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) s = walk(set, sub, steps, e);
    free(sub);
    return s;
}

/* dir and the folders below it: a run is read, anything else searched; steps: the step list of
 * the pipeline dir is in, which orders the folders of its steps */
static xd_status walk(rp_set *set, const char *dir, const json_t *steps, xd_err *e)
{
    int has_metrics = is_file(dir, "metrics.jsonl");
    if (is_file(dir, "summary.json") && has_metrics) return read_run(set, dir, e);
    if (has_metrics)
        return xd_fail(e, XD_EFORMAT, "%s: a run without summary.json (metrics.jsonl but no "
                                      "summary: still running, or stopped?)", dir);
    struct dirent **list;
    int n = scandir(dir, &list, NULL, by_name);
    if (n < 0) return xd_fail(e, XD_EIO, "%s: cannot read the folder", dir);
    json_t *own = pipeline_steps(dir);
    if (own) steps = own;
    xd_status s = XD_OK;
    size_t i;
    const json_t *st;
    /* the steps in the pipeline's order, then the rest by name */
    json_array_foreach(steps, i, st) {
        const char *name = json_string_value(json_object_get(st, "name"));
        for (int k = 0; k < n && s == XD_OK && name; k++)
            if (strcmp(list[k]->d_name, name) == 0 && name[0] != '.')
                s = walk_sub(set, dir, name, steps, e);
    }
    for (int k = 0; k < n; k++) {
        const char *nm = list[k]->d_name;
        if (s == XD_OK && nm[0] != '.' && !(steps && is_step(steps, nm)))
            s = walk_sub(set, dir, nm, steps, e);
        free(list[k]);
    }
    free(list);
    json_decref(own);
    return s;
}

static int by_seed(const void *a, const void *b)
{
    const rp_run *x = *(rp_run *const *)a, *y = *(rp_run *const *)b;
    return (x->seed > y->seed) - (x->seed < y->seed);
}

static int same_variant(const rp_run *a, const rp_run *b)
{
    return (!a->variant && !b->variant) ||
           (a->variant && b->variant && strcmp(a->variant, b->variant) == 0);
}

/* the folder a run's group is named after: its --seeds folder for a seed-N run, else its own */
static char *folder_label(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    if (strncmp(dir + b, "seed-", 5) == 0 && b > 1) {
        n = b - 1;
        while (n > 1 && dir[n - 1] == '/') n--;
        b = n;
        while (b > 0 && dir[b - 1] != '/') b--;
    }
    char *s = xd_xmalloc(n - b + 1);
    memcpy(s, dir + b, n - b);
    s[n - b] = '\0';
    return s;
}

/* groups that share a name with another: "NAME (FOLDER)" */
static void name_variants(rp_set *set)
{
    int *clash = xd_xcalloc((size_t)set->n_groups + 1, sizeof *clash);
    for (int a = 0; a < set->n_groups; a++)
        for (int b = a + 1; b < set->n_groups; b++)
            if (strcmp(set->groups[a].name, set->groups[b].name) == 0) clash[a] = clash[b] = 1;
    for (int k = 0; k < set->n_groups; k++) {
        if (!clash[k]) continue;
        rp_group *g = &set->groups[k];
        char *folder = folder_label(g->runs[0]->dir);
        size_t n = strlen(g->name) + strlen(folder) + 4;
        char *name = xd_xmalloc(n);
        snprintf(name, n, "%s (%s)", g->name, folder);
        free(folder);
        free(g->name);
        g->name = name;
    }
    free(clash);
}

static void group_runs(rp_set *set)
{
    set->groups = xd_xcalloc((size_t)set->n_runs, sizeof *set->groups);
    for (int i = 0; i < set->n_runs; i++) {
        rp_run *r = &set->runs[i];
        rp_group *g = NULL;
        for (int k = 0; k < set->n_groups && !g; k++)
            if (strcmp(set->groups[k].name, r->name) == 0 && same_variant(set->groups[k].runs[0], r))
                g = &set->groups[k];
        if (!g) {
            g = &set->groups[set->n_groups++];
            g->name = xd_xstrdup(r->name);
            g->segment = r->segment;
            g->runs = xd_xcalloc((size_t)set->n_runs, sizeof *g->runs);
        }
        g->runs[g->n_runs++] = r;
    }
    name_variants(set);
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
        else if ((s = walk(set, dirs[i], NULL, e)) == XD_OK && set->n_runs == before)
            s = xd_fail(e, XD_EARG, "%s: no run in it (a run folder holds summary.json and "
                                    "metrics.jsonl)", dirs[i]);
    }
    if (s == XD_OK) group_runs(set);
    else rp_set_free(set);
    return s;
}

void rp_set_free(rp_set *set)
{
    for (int i = 0; i < set->n_runs; i++) run_free(&set->runs[i]);
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
