/* The resume state (see train_run.h): everything that makes the next epoch the same as in an
 * uninterrupted run, in DIR/resume.safetensors. */
#include "distill/train_run.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/mem.h"
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

/* Every model's parameters and state first (a stage boundary restores only those), then their
 * optimizers' moments, then the losses' projectors and temperatures. */
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
    char im[3][64];
    snprintf(im[0], sizeof im[0], "%.17g", R->images);
    snprintf(im[1], sizeof im[1], "%.17g", R->train_seconds);
    snprintf(im[2], sizeof im[2], "%d", R->threads);
    io_kv meta[11 + 3 * RECIPE_MAX_MODELS + 2 * EXITS_MAX] = {
        {"epochs_done", v[0]}, {"global_step", v[1]}, {"opt_step", v[2]},
        {"best_acc", v[3]},    {"best_epoch", v[4]},  {"seed", v[5]},
        {"images", im[0]},     {"train_seconds", im[1]}, {"threads", im[2]}};
    /* with several models, each one's best score (the plain keys are the first model's) */
    char keys[2 * RECIPE_MAX_MODELS][RECIPE_MAX_NAME + 16], vals[2 * RECIPE_MAX_MODELS][64];
    size_t n_meta = 9;
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
    train_exits_kv exits_kv;
    n_meta = train_exits_save_meta(R, &exits_kv, meta, n_meta);
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

static int meta_long(io_st_file *f, const char *key, long *out)
{
    const char *v = io_st_meta(f, key);
    char *end;
    if (!v) return -1;
    errno = 0;
    *out = strtol(v, &end, 10);
    return errno || *end ? -1 : 0;
}

xd_status train_load_resume(train_run *R, int what, xd_err *e)
{
    char *path = train_path(R, "resume.safetensors");
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    free(path);
    if (s != XD_OK) return s;
    long epochs, gstep, ostep, best_epoch, seed;
    const char *best = io_st_meta(f, "best_acc"), *imgs = io_st_meta(f, "images"),
               *secs = io_st_meta(f, "train_seconds");
    if (meta_long(f, "epochs_done", &epochs) || meta_long(f, "global_step", &gstep) ||
        meta_long(f, "opt_step", &ostep) || meta_long(f, "best_epoch", &best_epoch) ||
        meta_long(f, "seed", &seed) || !best || !imgs || !secs) {
        s = xd_fail(e, XD_EFORMAT, "%s: resume state is missing counters", io_st_path(f));
        goto out;
    }
    if (seed != R->seed) {
        s = xd_fail(e, XD_EARG, "%s: the run used seed %ld, not %ld", io_st_path(f), seed, R->seed);
        goto out;
    }
    /* the same seed and ranks give the same bytes: another count would continue another run */
    long ranks = 1;
    if (io_st_meta(f, "ranks") && (meta_long(f, "ranks", &ranks) || ranks < 2)) {
        s = xd_fail(e, XD_EFORMAT, "%s: resume state's \"ranks\" is not a rank count of 2 or more",
                    io_st_path(f));
        goto out;
    }
    if (ranks != dist_size()) {
        s = xd_fail(e, XD_EARG, "%s: the run was trained on %ld rank%s, not %d: resume it with "
                    "mpirun -np %ld%s", io_st_path(f), ranks, ranks == 1 ? "" : "s", dist_size(),
                    ranks, ranks == 1 ? " or without mpirun" : "");
        goto out;
    }
    if (what == TRAIN_RESUME_COUNTERS) {
        R->epochs_done = (int)epochs;
        R->global_step = gstep;
        R->models[0].best_acc = strtod(best, NULL);
        R->models[0].best_epoch = (int)best_epoch;
        R->images = strtod(imgs, NULL);
        R->train_seconds = strtod(secs, NULL);
        long threads;
        if (meta_long(f, "threads", &threads) == 0) R->threads = (int)threads; /* absent: older runs */
        for (int k = 0; k < R->n_models && R->n_models > 1; k++) {
            char key[RECIPE_MAX_NAME + 16];
            long be;
            state_name(R, k, "best_acc", key, sizeof key);
            const char *ba = io_st_meta(f, key);
            state_name(R, k, "best_epoch", key, sizeof key);
            if (!ba || meta_long(f, key, &be)) {
                s = xd_fail(e, XD_EFORMAT, "%s: resume state has no best score of model '%s'",
                            io_st_path(f), R->models[k].rm->name);
                goto out;
            }
            R->models[k].best_acc = strtod(ba, NULL);
            R->models[k].best_epoch = (int)be;
        }
        for (int k = 0; k < R->n_models; k++) {
            char key[RECIPE_MAX_NAME + 16];
            state_name(R, k, "test_at_best", key, sizeof key);
            const char *tb = R->has_val ? io_st_meta(f, key) : NULL;
            if (R->has_val && !tb) {
                s = xd_fail(e, XD_EFORMAT, "%s: resume state has no test score at the best epoch "
                                           "(%s)", io_st_path(f), key);
                goto out;
            }
            R->models[k].test_at_best = tb ? strtod(tb, NULL) : R->models[k].best_acc;
        }
        s = train_exits_load_meta(R, f, e);
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
