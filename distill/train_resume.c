/* The resume state (see train_run.h): everything that makes the next epoch the same as in an
 * uninterrupted run, in DIR/resume.safetensors. */
#include "distill/train_run.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/hash.h"
#include "core/mem.h"
#include "distill/checkpoint.h"
#include "io/file.h"
#include "io/safetensors.h"

typedef struct {
    io_tensor *t;
    int n, cap;
    char **names;
} tlist;

/* An F32 tensor of any shape (a CRD bank is 2-D), its name copied. */
static void tl_add_tensor(tlist *l, const io_tensor *t)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->t = xd_xrealloc(l->t, sizeof *l->t * (size_t)l->cap);
        l->names = xd_xrealloc(l->names, sizeof *l->names * (size_t)l->cap);
    }
    l->names[l->n] = xd_xstrdup(t->name);
    io_tensor_set(&l->t[l->n], l->names[l->n], IO_F32, t->ndim, t->shape, t->data);
    l->n++;
}

static void tl_add(tlist *l, const char *name, const float *data, size_t n)
{
    io_tensor t;
    int64_t shp[1] = {(int64_t)n};
    io_tensor_set(&t, name, IO_F32, 1, shp, data);
    tl_add_tensor(l, &t);
}

static void tl_free(tlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->t);
}

/* Tensor names of model k's state: "what" alone in a one-model run, "NAME.what" with several. */
static void state_name(const train_run *R, int k, const char *what, char *name, size_t size)
{
    if (R->n_models > 1)
        snprintf(name, size, "%s.%s", R->models[k].rm->name, what);
    else
        snprintf(name, size, "%s", what);
}

/* A model's parameters or state, t (of k's size, else nothing is checked here: the copy refuses
 * it), as a checkpoint's are checked (ckpt_param_values_ok), entry by entry. */
static xd_status model_values_ok(io_st_file *f, nn_model *m, const io_tensor *t, size_t n,
                                 int state, xd_err *e)
{
    const float *base = state ? m->state : m->param;
    if (n != (state ? m->n_state : m->n_param)) return XD_OK;
    xd_status s = XD_OK;
    for (int i = 0; i < m->n_params && s == XD_OK; i++) {
        const nn_param *p = &m->params[i];
        if (p->state != state) continue;
        const size_t at = (size_t)(nn_model_param_data(m, p) - base);
        s = ckpt_param_values_ok(io_st_path(f), p, (const float *)t->data + at, 0, e);
    }
    return s;
}

/* The values of the state's tensor t, which no checksum guards against whoever edits the file:
 * a model's parameters and state as a checkpoint's; every other value finite, and a second moment
 * >= 0 (every name that ends in ".v" is one: see collect_state). */
static xd_status state_values_ok(train_run *R, io_st_file *f, const io_tensor *t, xd_err *e)
{
    if (t->dtype != IO_F32) return XD_OK;
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    for (int k = 0; k < R->n_models; k++)
        for (int state = 0; state < 2; state++) {
            char name[RECIPE_MAX_NAME + 32];
            state_name(R, k, state ? "model.state" : "model.param", name, sizeof name);
            if (strcmp(name, t->name) == 0)
                return model_values_ok(f, &R->models[k].m, t, n, state, e);
        }
    const size_t len = strlen(t->name);
    const int moment = len >= 2 && strcmp(t->name + len - 2, ".v") == 0;
    const float *v = t->data;
    for (size_t j = 0; j < n; j++)
        if (!isfinite(v[j]) || (moment && v[j] < 0.0f))
            return xd_fail(e, XD_ENUM, "%s: tensor '%s' holds %g at index %zu; %s", io_st_path(f),
                           t->name, (double)v[j], j,
                           isfinite(v[j]) ? "a second moment must be >= 0"
                                          : "values must be finite");
    return XD_OK;
}

/* Every model's parameters and state first (a stage boundary restores only those), then their
 * optimizers' moments, then the losses' projectors and temperatures. An optimizer's second
 * moments, and only those, have names that end in ".v" (state_values_ok checks them >= 0). */
static void collect_state(train_run *R, tlist *l)
{
    char name[RECIPE_MAX_NAME + 32];
    for (int k = 0; k < R->n_models; k++) {
        nn_model *m = &R->models[k].m;
        state_name(R, k, "model.param", name, sizeof name);
        tl_add(l, name, m->param, m->n_param);
        state_name(R, k, "model.state", name, sizeof name);
        tl_add(l, name, m->state, m->n_state);
    }
    for (int k = 0; k < R->n_models; k++) {
        const nn_optimizer *o = &R->models[k].opt;
        state_name(R, k, "opt.m", name, sizeof name);
        if (o->m) tl_add(l, name, o->m, o->n);
        state_name(R, k, "opt.v", name, sizeof name);
        if (o->v) tl_add(l, name, o->v, o->n);
    }
    for (int i = 0; i < R->n_losses; i++) {
        loss_rt *lr = &R->losses[i];
        if (lr->L->kind == RECIPE_LOSS_CONTRASTIVE && lr->L->learn_temperature) {
            snprintf(name, sizeof name, "loss%d.theta", i);
            tl_add(l, name, lr->theta, 1);
            const float *mv[2] = {lr->topt.m, lr->topt.v};
            for (int k = 0; k < 2; k++) {
                if (!mv[k]) continue;
                snprintf(name, sizeof name, "loss%d.theta.%c", i, "mv"[k]);
                tl_add(l, name, mv[k], 1);
            }
        }
        if (lr->zoo) {
            io_tensor zt[TRAIN_ZOO_TENSORS];
            char zn[TRAIN_ZOO_TENSORS][64];
            for (int k = 0, n = train_zoo_tensors(lr, i, zt, zn); k < n; k++) tl_add_tensor(l, &zt[k]);
        }
        if (lr->rat) {
            size_t n;
            float *p = train_rationale_params(lr, &n);
            snprintf(name, sizeof name, "rationale%d.param", i);
            tl_add(l, name, p, n);
        } else if (!lr->has_proj) {
            continue;
        } else {
            snprintf(name, sizeof name, "proj%d.param", i);
            tl_add(l, name, lr->proj.param, lr->proj.n_param);
        }
        if (lr->popt.m) {
            snprintf(name, sizeof name, "proj%d.m", i);
            tl_add(l, name, lr->popt.m, lr->popt.n);
        }
        if (lr->popt.v) {
            snprintf(name, sizeof name, "proj%d.v", i);
            tl_add(l, name, lr->popt.v, lr->popt.n);
        }
    }
}

// ----------------------------------------------------------------------------------------------
// the files the run reads

/* One file of R->inputs: its resume state key, path, what it is for messages ("teacher 'cnn'"),
 * what a resume needs the same of, and where its identity is kept. */
typedef struct {
    char key[RECIPE_MAX_NAME + 32], what[RECIPE_MAX_NAME + 32];
    const char *path, *needs;
    int dataset; /* io_dataset_identity, else io_file_hash */
    uint64_t *id;
} input_file;

/* The recipe's files with their identities' places in in (NULL: paths only). */
static int list_inputs(const recipe *r, train_inputs *in, input_file *l)
{
    int n = 0;
    l[n++] = (input_file){"data_identity", "", r->data.path, "data set", 1, in ? &in->data : NULL};
    for (int i = 0; i < r->data.n_eval_sets; i++, n++) {
        l[n] = (input_file){"", "", r->data.eval_sets[i].path, "data sets", 1,
                            in ? &in->eval[i] : NULL};
        snprintf(l[n].key, sizeof l[n].key, "eval_identity.%s", r->data.eval_sets[i].name);
        snprintf(l[n].what, sizeof l[n].what, " (data.eval_sets '%s')", r->data.eval_sets[i].name);
    }
    for (int i = 0; i < r->n_teachers; i++, n++) {
        l[n] = (input_file){"", "", r->teachers[i].checkpoint, "teacher checkpoints", 0,
                            in ? &in->teacher[i] : NULL};
        snprintf(l[n].key, sizeof l[n].key, "teacher_hash.%s", r->teachers[i].name);
        snprintf(l[n].what, sizeof l[n].what, " (teacher '%s')", r->teachers[i].name);
    }
    for (int k = 0; k < r->n_models; k++) {
        if (!r->models[k].init) continue;
        l[n] = (input_file){"", "", r->models[k].init, "init checkpoints", 0,
                            in ? &in->init[k] : NULL};
        snprintf(l[n].key, sizeof l[n].key, "init_hash.%s", r->models[k].name);
        snprintf(l[n].what, sizeof l[n].what, " (model '%s', init)", r->models[k].name);
        n++;
    }
    return n;
}

int train_input_paths(const recipe *r, const char **paths)
{
    input_file l[TRAIN_MAX_INPUTS];
    const int n = list_inputs(r, NULL, l);
    for (int i = 0; i < n; i++) paths[i] = l[i].path;
    return n;
}

xd_status trainer_read_inputs(const recipe *r, train_inputs *in, xd_err *e)
{
    input_file l[TRAIN_MAX_INPUTS];
    memset(in, 0, sizeof *in);
    xd_status s = XD_OK;
    for (int i = 0, n = list_inputs(r, in, l); i < n && s == XD_OK; i++) {
        *l[i].id = XD_FNV_OFFSET;
        s = l[i].dataset ? io_dataset_identity(l[i].path, l[i].id, e)
                         : io_file_hash(l[i].path, l[i].id, e);
    }
    return s;
}

xd_status train_save_resume(train_run *R, xd_err *e)
{
    tlist l = {0};
    collect_state(R, &l);
    char v[6][64];
    snprintf(v[0], sizeof v[0], "%d", R->epochs_done);
    snprintf(v[1], sizeof v[1], "%ld", R->global_step);
    snprintf(v[2], sizeof v[2], "%ld", R->models[0].opt.step);
    snprintf(v[3], sizeof v[3], "%.17g", R->models[0].best_acc);
    snprintf(v[4], sizeof v[4], "%d", R->models[0].best_epoch);
    snprintf(v[5], sizeof v[5], "%ld", R->seed);
    char im[4][64];
    snprintf(im[0], sizeof im[0], "%.17g", R->images);
    snprintf(im[1], sizeof im[1], "%.17g", R->train_seconds);
    snprintf(im[2], sizeof im[2], "%d", R->threads);
    snprintf(im[3], sizeof im[3], "%016llx", (unsigned long long)R->digest);
    io_kv meta[12 + 3 * RECIPE_MAX_MODELS + TRAIN_MAX_INPUTS] = {
        {"epochs_done", v[0]}, {"global_step", v[1]}, {"opt_step", v[2]},
        {"best_acc", v[3]},    {"best_epoch", v[4]},  {"seed", v[5]},
        {"images", im[0]},     {"train_seconds", im[1]}, {"threads", im[2]},
        {"recipe_digest", im[3]}};
    /* with several models, each one's best score (the plain keys are the first model's) */
    char keys[2 * RECIPE_MAX_MODELS][RECIPE_MAX_NAME + 16], vals[2 * RECIPE_MAX_MODELS][64];
    size_t n_meta = 10;
    for (int k = 0; k < R->n_models && R->n_models > 1; k++) {
        state_name(R, k, "best_acc", keys[2 * k], sizeof keys[0]);
        snprintf(vals[2 * k], sizeof vals[0], "%.17g", R->models[k].best_acc);
        state_name(R, k, "best_epoch", keys[2 * k + 1], sizeof keys[0]);
        snprintf(vals[2 * k + 1], sizeof vals[0], "%d", R->models[k].best_epoch);
        meta[n_meta++] = (io_kv){keys[2 * k], vals[2 * k]};
        meta[n_meta++] = (io_kv){keys[2 * k + 1], vals[2 * k + 1]};
    }
    /* best chosen on the validation split: the test score it had (else it is best_acc) */
    char tkeys[RECIPE_MAX_MODELS][RECIPE_MAX_NAME + 16], tvals[RECIPE_MAX_MODELS][64];
    for (int k = 0; k < R->n_models && R->has_val; k++) {
        state_name(R, k, "test_at_best", tkeys[k], sizeof tkeys[0]);
        snprintf(tvals[k], sizeof tvals[0], "%.17g", R->models[k].test_at_best);
        meta[n_meta++] = (io_kv){tkeys[k], tvals[k]};
    }
    /* the files it reads: a resume must read the same (train_check_inputs) */
    input_file in[TRAIN_MAX_INPUTS];
    char ids[TRAIN_MAX_INPUTS][17];
    for (int i = 0, n = list_inputs(R->r, &R->inputs, in); i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "%016llx", (unsigned long long)*in[i].id);
        meta[n_meta++] = (io_kv){in[i].key, ids[i]};
    }
    /* several ranks: how many (a single process's state stays as it was) */
    char ranks[16];
    snprintf(ranks, sizeof ranks, "%d", dist_size());
    if (dist_size() > 1) meta[n_meta++] = (io_kv){"ranks", ranks};
    char *path = train_path(R, "resume.safetensors");
    xd_status s = io_st_write(path, l.t, (size_t)l.n, meta, n_meta, e);
    free(path);
    tl_free(&l);
    return s;
}

// ----------------------------------------------------------------------------------------------
// reading the metadata back

/* The metadata is covered by no checksum, so every value a resume reads is checked against the
 * recipe and the data before the run counts on it: an edited or damaged one would otherwise
 * count epochs, steps or scores wrongly without a word. */
static xd_status bad_meta(io_st_file *f, const char *key, const char *v, const char *want,
                          xd_err *e)
{
    if (!v)
        return xd_fail(e, XD_EFORMAT, "%s: resume state has no \"%s\", expected %s",
                       io_st_path(f), key, want);
    return xd_fail(e, XD_EFORMAT, "%s: resume state's \"%s\" is '%.40s', expected %s: the file was "
                   "edited or damaged", io_st_path(f), key, v, want);
}

/* The checks: an integer in [lo, hi], a finite number in [lo, hi] (hi may be HUGE_VAL); `what`
 * says what the value is. */
static xd_status train_meta_int(io_st_file *f, const char *key, long lo, long hi,
                                const char *what, long *out, xd_err *e)
{
    const char *v = io_st_meta(f, key);
    char *end = NULL;
    errno = 0;
    const long x = v ? strtol(v, &end, 10) : 0;
    if (v && !errno && end != v && !*end && x >= lo && x <= hi) {
        *out = x;
        return XD_OK;
    }
    char want[192];
    if (lo == hi) snprintf(want, sizeof want, "%ld (%s)", lo, what);
    else snprintf(want, sizeof want, "%ld..%ld (%s)", lo, hi, what);
    return bad_meta(f, key, v, want, e);
}

static xd_status train_meta_num(io_st_file *f, const char *key, double lo, double hi,
                                const char *what, double *out, xd_err *e)
{
    const char *v = io_st_meta(f, key);
    char *end = NULL;
    const double x = v ? strtod(v, &end) : 0.0;
    if (v && end != v && !*end && isfinite(x) && x >= lo && x <= hi) {
        *out = x;
        return XD_OK;
    }
    char want[192];
    if (lo == hi) snprintf(want, sizeof want, "%.17g (%s)", lo, what);
    else if (isinf(hi)) snprintf(want, sizeof want, "a number >= %g (%s)", lo, what);
    else snprintf(want, sizeof want, "%g..%g (%s)", lo, hi, what);
    return bad_meta(f, key, v, want, e);
}

xd_status train_meta_best(io_st_file *f, const char *acc_key, const char *epoch_key,
                          int epochs_done, double *acc, int *epoch, xd_err *e)
{
    long be;
    xd_status s = train_meta_num(f, acc_key, 0.0, 1.0, "a score", acc, e);
    if (s == XD_OK)
        s = train_meta_int(f, epoch_key, 0, epochs_done, "the best epoch, 0 before any evaluation",
                           &be, e);
    if (s == XD_OK) *epoch = (int)be;
    return s;
}

/* 1 when v is 16 lower-case hex digits, as a digest or identity is written. */
static int is_hex16(const char *v)
{
    return strlen(v) == 16 && strspn(v, "0123456789abcdef") == 16;
}

/* The recipe is the one the run started with: recipe.yaml is a plain file in DIR, and a run
 * continued with other values would be neither run. A state without a digest (older builds) is
 * trusted as before. */
static xd_status check_digest(const train_run *R, io_st_file *f, xd_err *e)
{
    const char *v = io_st_meta(f, "recipe_digest");
    char mine[17];
    snprintf(mine, sizeof mine, "%016llx", (unsigned long long)R->digest);
    if (!v || strcmp(v, mine) == 0) return XD_OK;
    if (!is_hex16(v))
        return bad_meta(f, "recipe_digest", v, "16 hex digits (a digest of the run's recipe)", e);
    char keys[128] = "";
    for (int k = 0; k < recipe_n_resume_keys; k++)
        snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", k ? ", " : "",
                 recipe_resume_keys[k]);
    return xd_fail(e, XD_EARG, "%s: %s is not the recipe the run started with (its digest is %s, "
                   "the run's \"recipe_digest\" %s; only %s may change on resume): put back the "
                   "run's own recipe (every checkpoint in %s keeps it as its xdistill.recipe "
                   "metadata), or train the changed recipe into a new folder with --out",
                   io_st_path(f), R->r->file ? R->r->file : "the recipe", mine, v, keys,
                   R->o->out_dir);
}

/* The files the run reads are those it started with: a run continued on another data set (the
 * same number of examples in another order of classes, another split) or with another teacher
 * would be neither run, its best and last checkpoints of different data. A state without
 * "data_identity" (older builds) recorded none and is trusted as before; one with it has every
 * other key of the recipe's files too. */
xd_status train_check_inputs(train_run *R, xd_err *e)
{
    char *path = train_path(R, "resume.safetensors");
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    free(path);
    if (s != XD_OK) return s;
    input_file l[TRAIN_MAX_INPUTS];
    const int n = io_st_meta(f, "data_identity") ? list_inputs(R->r, &R->inputs, l) : 0;
    for (int i = 0; i < n && s == XD_OK; i++) {
        const char *v = io_st_meta(f, l[i].key);
        char mine[17], want[128];
        snprintf(mine, sizeof mine, "%016llx", (unsigned long long)*l[i].id);
        if (v && strcmp(v, mine) == 0) continue;
        if (!v || !is_hex16(v)) {
            snprintf(want, sizeof want, "16 hex digits (the identity of %s)", l[i].path);
            s = bad_meta(f, l[i].key, v, want, e);
        } else {
            s = xd_fail(e, XD_EARG, "%s: %s%s changed since the run started (resume needs the "
                        "same %s; start a new run)", R->o->out_dir, l[i].path, l[i].what,
                        l[i].needs);
        }
    }
    io_st_close(f);
    return s;
}

/* The counters and first model's scores of the state, each checked. */
typedef struct {
    long epochs, seed;
    train_counts c;
    double best_acc, seconds;
    int best_epoch;
} resume_meta;

static xd_status read_counters(const train_run *R, io_st_file *f, resume_meta *m, xd_err *e)
{
    char what[128];
    snprintf(what, sizeof what, "the epochs done of the recipe's %d", R->r->train.epochs);
    xd_status s = train_meta_int(f, "epochs_done", 0, R->r->train.epochs, what, &m->epochs, e);
    if (s != XD_OK) return s;
    /* the steps and images follow from the epochs done: the same recipe on the same data */
    const train_counts c = train_counts_after(R, (int)m->epochs);
    snprintf(what, sizeof what, "the steps of %ld epoch%s (\"epochs_done\") of this recipe on its "
             "data", m->epochs, m->epochs == 1 ? "" : "s");
    if ((s = train_meta_int(f, "global_step", c.global_step, c.global_step, what,
                            &m->c.global_step, e)) != XD_OK) {
        /* a state that records the data set (train_check_inputs) was of the same data */
        if (e && !io_st_meta(f, "data_identity")) {
            char msg[XD_ERR_LEN];
            snprintf(msg, sizeof msg, "%s", e->msg);
            xd_fail(e, s, "%s, or the data set changed since the run started (a resume state of "
                    "an earlier build does not record it)", msg);
        }
        return s;
    }
    snprintf(what, sizeof what, "the optimizer's steps in its stage after %ld epoch%s "
             "(\"epochs_done\")", m->epochs, m->epochs == 1 ? "" : "s");
    if ((s = train_meta_int(f, "opt_step", c.opt_step, c.opt_step, what, &m->c.opt_step, e)) !=
        XD_OK)
        return s;
    snprintf(what, sizeof what, "the examples stepped over in %ld epoch%s (\"epochs_done\")",
             m->epochs, m->epochs == 1 ? "" : "s");
    if ((s = train_meta_num(f, "images", c.images, c.images, what, &m->c.images, e)) != XD_OK ||
        (s = train_meta_num(f, "train_seconds", 0.0, HUGE_VAL, "seconds trained", &m->seconds,
                            e)) != XD_OK ||
        (s = train_meta_best(f, "best_acc", "best_epoch", (int)m->epochs, &m->best_acc,
                             &m->best_epoch, e)) != XD_OK)
        return s;
    return train_meta_int(f, "seed", LONG_MIN, LONG_MAX, "a seed", &m->seed, e);
}

/* The rest of the counters: thread count, each model's best, the test score at the best. */
static xd_status load_scores(train_run *R, io_st_file *f, xd_err *e)
{
    xd_status s = XD_OK;
    long threads;
    if (io_st_meta(f, "threads")) { /* absent: older runs */
        if ((s = train_meta_int(f, "threads", 1, RECIPE_MAX_THREADS, "a thread count", &threads,
                                e)) != XD_OK)
            return s;
        R->threads = (int)threads;
    }
    for (int k = 0; k < R->n_models && R->n_models > 1; k++) {
        char acc[RECIPE_MAX_NAME + 16], ep[RECIPE_MAX_NAME + 16];
        state_name(R, k, "best_acc", acc, sizeof acc);
        state_name(R, k, "best_epoch", ep, sizeof ep);
        model_rt *mk = &R->models[k];
        if ((s = train_meta_best(f, acc, ep, R->epochs_done, &mk->best_acc, &mk->best_epoch,
                                 e)) != XD_OK)
            return s;
    }
    for (int k = 0; k < R->n_models; k++) {
        char key[RECIPE_MAX_NAME + 16];
        state_name(R, k, "test_at_best", key, sizeof key);
        model_rt *mk = &R->models[k];
        mk->test_at_best = mk->best_acc;
        if (R->has_val &&
            (s = train_meta_num(f, key, 0.0, 1.0, "the test score at the best epoch",
                                &mk->test_at_best, e)) != XD_OK)
            return s;
    }
    return XD_OK;
}

xd_status train_load_resume(train_run *R, int what, xd_err *e)
{
    char *path = train_path(R, "resume.safetensors");
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    free(path);
    if (s != XD_OK) return s;
    resume_meta m;
    if ((s = check_digest(R, f, e)) != XD_OK || (s = read_counters(R, f, &m, e)) != XD_OK) goto out;
    if (m.seed != R->seed) {
        s = xd_fail(e, XD_EARG, "%s: the run used seed %ld, not %ld", io_st_path(f), m.seed,
                    R->seed);
        goto out;
    }
    /* the same seed and ranks give the same bytes: another count would continue another run */
    long ranks = 1;
    if (io_st_meta(f, "ranks") &&
        (s = train_meta_int(f, "ranks", 2, LONG_MAX, "a rank count", &ranks, e)) != XD_OK)
        goto out;
    if (ranks != dist_size()) {
        s = xd_fail(e, XD_EARG, "%s: the run was trained on %ld rank%s, not %d: resume it with "
                    "mpirun -np %ld%s", io_st_path(f), ranks, ranks == 1 ? "" : "s", dist_size(),
                    ranks, ranks == 1 ? " or without mpirun" : "");
        goto out;
    }
    if (what == TRAIN_RESUME_COUNTERS) {
        /* every value checked at the first reading, before the run writes anything */
        for (size_t i = 0; i < io_st_count(f) && s == XD_OK; i++)
            s = state_values_ok(R, f, io_st_tensor(f, i), e);
        if (s != XD_OK) goto out;
        R->epochs_done = (int)m.epochs;
        R->global_step = m.c.global_step;
        R->models[0].best_acc = m.best_acc;
        R->models[0].best_epoch = m.best_epoch;
        R->images = m.c.images;
        R->train_seconds = m.seconds;
        s = load_scores(R, f, e);
        goto out;
    }
    tlist want = {0};
    collect_state(R, &want);
    /* a stage boundary restores the models only: their model.param and model.state come first */
    const int n_load = what == TRAIN_RESUME_MODEL ? 2 * R->n_models : want.n;
    for (int i = 0; i < n_load && s == XD_OK; i++) {
        const io_tensor *t = io_st_find(f, want.t[i].name);
        int fits = t && t->dtype == IO_F32 && t->ndim == want.t[i].ndim;
        for (int d = 0; fits && d < t->ndim; d++) fits = t->shape[d] == want.t[i].shape[d];
        if (!fits)
            s = xd_fail(e, XD_ESHAPE, "%s: '%s' is missing or does not fit this recipe's models",
                        io_st_path(f), want.t[i].name);
    }
    if (s == XD_OK) {
        for (int i = 0; i < n_load; i++) {
            const io_tensor *t = io_st_find(f, want.t[i].name);
            size_t n = 1;
            for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
            memcpy((void *)want.t[i].data, t->data, sizeof(float) * n);
        }
        if (what == TRAIN_RESUME_ALL) {
            const long ostep = m.c.opt_step;
            for (int k = 0; k < R->n_models; k++) R->models[k].opt.step = ostep;
            for (int i = 0; i < R->n_losses; i++) {
                if (R->losses[i].has_proj || R->losses[i].rat) R->losses[i].popt.step = ostep;
                R->losses[i].topt.step = ostep;
                if (R->losses[i].zoo) train_zoo_set_step(&R->losses[i], ostep);
            }
        }
    }
    tl_free(&want);
out:
    io_st_close(f);
    return s;
}
