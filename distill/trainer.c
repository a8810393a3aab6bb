/* The trainer (see trainer.h): trainer_run, the run from its folder and recipe to its summary;
 * the parts of a run are in train_setup.c, train_step.c, train_epoch.c, train_resume.c and
 * train_eval.c (train_run.h). */
#include "distill/trainer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/mem.h"
#include "core/runtime.h"
#include "distill/runs.h"
#include "distill/train_run.h"
#include "io/file.h"
#include "io/yaml.h"
#include "modalities/text/utf8.h"
#include "nn/gemm.h"

// ----------------------------------------------------------------------------------------------
// paths and files

char *train_path(const train_run *R, const char *name) { return io_path_join(R->o->out_dir, name); }

xd_status train_write_text(const char *path, const char *text, xd_err *e)
{
    io_atomic w;
    xd_status s = io_atomic_open(&w, path, e);
    if (s != XD_OK) return s;
    if ((s = io_atomic_write(&w, text, strlen(text), e)) != XD_OK) {
        io_atomic_abort(&w);
        return s;
    }
    return io_atomic_commit(&w, e);
}

/* A model's scores in summary.json: final_test_* and final_test_bacc, the best epoch, what chose
 * it ("val", or "last": no validation split, so nothing was chosen and the best is the last
 * evaluated epoch) and its test score test_*_at_best; with a validation split best_val_*. */
static void summary_scores(json_t *o, const train_run *R, const train_result *res,
                           const train_model_result *mr)
{
    const char *score = R->seg.on ? "miou" : "acc";
    char key[48];
    snprintf(key, sizeof key, "final_test_%s", score);
    json_object_set_new(o, key, res->finished ? json_real(mr->final_acc) : json_null());
    if (!R->seg.on)
        json_object_set_new(o, "final_test_bacc", res->finished ? json_real(mr->final_bacc)
                                                                : json_null());
    json_object_set_new(o, "best_on", json_string(R->has_val ? "val" : "last"));
    if (R->has_val) {
        snprintf(key, sizeof key, "best_val_%s", score);
        json_object_set_new(o, key, json_real(mr->best_acc));
    }
    json_object_set_new(o, "best_epoch", json_integer(mr->best_epoch));
    snprintf(key, sizeof key, "test_%s_at_best", score);
    json_object_set_new(o, key, json_real(mr->test_at_best));
}

/* With several models, summary.json's "models": each one's scores (the top-level scores are the
 * first model's). */
static void summary_models(json_t *j, const train_run *R, const train_result *res)
{
    json_t *all = json_object();
    for (int k = 0; k < res->n_models; k++) {
        json_t *o = json_object();
        summary_scores(o, R, res, &res->models[k]);
        json_object_set_new(all, res->models[k].name, o);
    }
    json_object_set_new(j, "models", all);
}

/* With early exits, summary.json's "exits": each exit's final test accuracy (the top-level
 * scores are the default head's). */
static void summary_exits(json_t *j, const train_result *res)
{
    json_t *all = json_object();
    for (int i = 0; i < res->n_exits; i++) {
        const train_exit_result *x = &res->exits[i];
        json_t *o = json_object();
        json_object_set_new(o, "final_test_acc", res->finished ? json_real(x->final_acc) : json_null());
        json_object_set_new(all, x->name, o);
    }
    json_object_set_new(j, "exits", all);
}

static xd_status write_summary(train_run *R, const train_result *res, xd_err *e)
{
    json_t *j = json_object();
    json_object_set_new(j, "name", txt_json_string(R->r->name));
    json_object_set_new(j, "seed", json_integer(R->seed));
    json_object_set_new(j, "epochs", json_integer(res->epochs_done));
    json_object_set_new(j, "finished", json_boolean(res->finished));
    summary_scores(j, R, res, &res->models[0]);
    /* a segment task's score is the mIoU; its pixel accuracy comes with it */
    if (R->seg.on)
        json_object_set_new(j, "final_test_pixel_acc",
                            res->finished ? json_real(res->final_pixel_acc) : json_null());
    if (R->has_val)
        json_object_set_new(j, "val_examples", json_integer((json_int_t)R->val.members));
    if (R->n_models > 1) summary_models(j, R, res);
    if (res->n_exits) summary_exits(j, res);
    json_object_set_new(j, "train_seconds", json_real(res->seconds));
    json_object_set_new(j, "images_per_s", json_real(res->images_per_s));
    json_object_set_new(j, "labels_used", json_integer((json_int_t)R->n_sel));
    json_object_set_new(j, "threads", json_integer(R->threads));
    json_object_set_new(j, "gemm_kernel", json_string(nn_sgemm_kernel()));
    if (R->r->train.precision == NN_PREC_BF16) /* which bf16 kernel ran (float32 runs: none) */
        json_object_set_new(j, "bf16_kernel", json_string(nn_bisa_name(nn_bgemm_isa())));
    json_object_set_new(j, "blas_kernel", json_string(xd_blas_kernel()));
    json_object_set_new(j, "recipe", txt_json_string(R->yaml));
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    size_t len = strlen(text);
    text = xd_xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    char *path = train_path(R, "summary.json");
    xd_status s = train_write_text(path, text, e);
    free(path);
    free(text);
    json_decref(j);
    return s;
}

/* Resuming: the folder's run must be the one `as_run` describes, up to the keys that may change
 * on resume; *changed tells whether such a key did (the folder's recipe.yaml is then rewritten,
 * so the run records what it continued with). */
static xd_status check_resume_recipe(train_run *R, const recipe *as_run, int *changed, xd_err *e)
{
    char *path = train_path(R, "recipe.yaml");
    void *text = NULL;
    size_t n;
    xd_status s = io_read_all(path, IO_YAML_MAX_BYTES, &text, &n, e);
    if (s != XD_OK) {
        xd_err_prefix(e, "%s: not a run folder to resume", R->o->out_dir);
    } else {
        recipe stored;
        s = recipe_parse(path, text, n, NULL, 0, RECIPE_NO_FILE_CHECKS, &stored, e);
        if (s == XD_OK) {
            s = recipe_check_resume(as_run, &stored, e);
            recipe_free(&stored);
        }
        *changed = strlen(R->yaml) != n || memcmp(R->yaml, text, n) != 0;
    }
    free(text);
    free(path);
    return s;
}

/* What a run writes in its folder: the files a fresh run removes first (an earlier run's), then
 * those it writes over; with several models, each one's best and last. */
static const char *const run_files[] = {"metrics.jsonl", "summary.json", "best.safetensors",
                                        "last.safetensors", "resume.safetensors"};
static const char *const run_files_kept[] = {"recipe.yaml", "best.rationale.safetensors",
                                             "last.rationale.safetensors", RUNLOCK_FILE};

/* The names of those files for a run of r (run_files_kept too with kept), each a new string, in
 * a new array of *n. */
static char **run_file_names(const recipe *r, int kept, int *n)
{
    enum { N_FILES = sizeof run_files / sizeof run_files[0],
           N_KEPT = sizeof run_files_kept / sizeof run_files_kept[0] };
    char **names = xd_xcalloc(N_FILES + N_KEPT + 2 * (size_t)r->n_models, sizeof *names);
    int k = 0;
    for (int i = 0; i < N_FILES; i++) names[k++] = xd_xstrdup(run_files[i]);
    for (int i = 0; i < N_KEPT && kept; i++) names[k++] = xd_xstrdup(run_files_kept[i]);
    for (int m = 0; m < r->n_models && r->n_models > 1; m++) {
        names[k++] = models_file(r, m, "best");
        names[k++] = models_file(r, m, "last");
    }
    *n = k;
    return names;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* The files a run writes or removes in its folder may not be any file it reads (a teacher's or
 * an init checkpoint, a data set), which the run would destroy: train.yaml whose teacher is
 * runs/x/best.safetensors, trained into runs/x, is refused before anything is written. */
static xd_status check_outputs_not_inputs(const recipe *r, const char *dir, xd_err *e)
{
    const char *in[TRAIN_MAX_INPUTS];
    const int n_in = train_input_paths(r, in);
    int n;
    char **names = run_file_names(r, 1, &n);
    xd_status s = XD_OK;
    for (int i = 0; i < n && s == XD_OK; i++) {
        char *p = io_path_join(dir, names[i]);
        s = io_check_output(p, in, n_in, e);
        free(p);
    }
    free_names(names, n);
    return s;
}

/* A fresh run, as its first epoch's files are about to be written (so a run that fails before
 * leaves the folder as it was): nothing of an earlier run in the folder may be taken for this
 * one's. */
static xd_status start_fresh(train_run *R, xd_err *e)
{
    int n;
    char **names = run_file_names(R->r, 0, &n);
    for (int i = 0; i < n; i++) {
        char *p = train_path(R, names[i]);
        remove(p);
        free(p);
    }
    free_names(names, n);
    char *ypath = train_path(R, "recipe.yaml");
    xd_status s = train_write_text(ypath, R->yaml, e);
    free(ypath);
    return s;
}

xd_status train_first_write(train_run *R, xd_err *e)
{
    if (R->wrote) return XD_OK;
    R->wrote = 1;
    xd_status s = XD_OK;
    if (dist_rank() == 0 && R->o->before_write) s = R->o->before_write(R->o->ctx, e);
    if (s == XD_OK && dist_rank() == 0 && !R->o->resume) s = start_fresh(R, e);
    return dist_agree(s, e);
}

static void run_free(train_run *R)
{
    train_free_losses(R);
    for (int i = 0; i < R->r->n_teachers && R->teachers; i++) {
        teacher_rt *t = &R->teachers[i];
        if (t->cached) kd_cache_close(&t->cache);
        free(t->idx);
        for (int k = 0; t->avg && k < t->m.n_nodes; k++) free(t->avg[k]);
        free(t->avg);
        free(t->reads);
        free(t->present);
        free(t->count);
        free(t->class_table);
        nn_model_free(&t->m);
        feed_close(&t->f);
        free(t->input);
    }
    free(R->teachers);
    for (int k = 0; k < R->n_models; k++) models_close(&R->models[k]);
    free(R->models);
    train_free_val(R);
    if (R->ds) io_dataset_close(R->ds);
    free(R->sel);
    free(R->tlogits);
    free(R->pool);
    free(R->order);
    free(R->idx);
    free(R->yb);
    free(R->mb);
    free(R->class_w);
    free(R->wb);
    free(R->exb);
    free(R->yaml);
    seg_close(&R->seg);
    train_exits_free(R);
}

/* R->inputs: the caller's (o->inputs), else read now. */
static xd_status read_inputs(train_run *R, const train_opts *o, xd_err *e)
{
    if (!o->inputs) return trainer_read_inputs(R->r, &R->inputs, e);
    R->inputs = *o->inputs;
    return XD_OK;
}

xd_status trainer_run(const recipe *r, long seed, const train_opts *o, train_result *res,
                      xd_err *e)
{
    train_run R;
    memset(&R, 0, sizeof R);
    memset(res, 0, sizeof *res);
    R.r = r;
    R.seed = seed;
    R.o = o;
    R.log = o->log ? o->log : stderr;
    /* the recipe as this run ran it: its own seed, one seed (so --resume finds the seed) */
    recipe as_run = *r;
    as_run.seed = seed;
    as_run.seeds = 1;
    R.yaml = recipe_to_yaml(&as_run);
    R.digest = recipe_resume_digest(&as_run);
    R.lock.fd = -1;
    R.share = 1.0f;
    res->seed = seed;
    const int threads_before = xd_threads_get();
    if (r->train.threads > 0) xd_threads_set(r->train.threads);
    R.threads = xd_threads_get();
    xd_status s = XD_OK;
    int recipe_changed = 0;
    const int writes = dist_rank() == 0;
    char *made = NULL; /* the outermost folder made for the run's folder, if any */
    int ran = 0;       /* epochs run to their end in this call */
    int temp = -1;     /* what SIGINT/SIGTERM remove until the first epoch's files are written */
    if ((s = check_outputs_not_inputs(r, o->out_dir, e)) != XD_OK) goto out;
    /* another recipe's folder is an error; a finished run stays exactly as it is */
    if (o->resume && ((s = check_resume_recipe(&R, &as_run, &recipe_changed, e)) != XD_OK ||
                      (res->unchanged = runs_read_finished(o->out_dir, res))))
        goto out;
    /* the files it reads are the ones it started with, checked before anything is built of them */
    if (o->resume && ((s = read_inputs(&R, o, e)) != XD_OK ||
                      (s = train_check_inputs(&R, e)) != XD_OK))
        goto out;
    /* with several ranks, rank 0 alone holds the folder and writes into it */
    if (writes && (s = io_mkdir_made(o->out_dir, &made, e)) != XD_OK) goto out;
    if (writes && (s = runlock_take(&R.lock, o->out_dir, e)) != XD_OK) goto out;
    temp = runlock_temp_add(&R.lock, made);
    R.models = xd_xcalloc((size_t)r->n_models, sizeof *R.models);
    R.n_models = r->n_models;
    for (int k = 0; k < r->n_models; k++)
        if ((s = models_build(&R.models[k], r, k, seed, e)) != XD_OK) goto out;
    if ((s = train_setup_data(&R, e)) != XD_OK || (s = train_check_schedule(&R, e)) != XD_OK)
        goto out;
    train_exits_setup(&R);
    if ((s = train_setup_teachers(&R, e)) != XD_OK) goto out;
    /* a fresh run's, for its resume state (once every file is known to read) */
    if (!o->resume && (s = read_inputs(&R, o, e)) != XD_OK) goto out;
    if ((s = train_setup_buffers(&R)) != XD_OK) goto out;
    if (o->resume) {
        if ((s = train_load_resume(&R, TRAIN_RESUME_COUNTERS, e)) != XD_OK ||
            (s = train_first_write(&R, e)) != XD_OK)
            goto out;
        if (writes && (s = train_trim_metrics(&R, e)) != XD_OK) goto out;
        if (writes && recipe_changed) {
            char *ypath = train_path(&R, "recipe.yaml");
            s = train_write_text(ypath, R.yaml, e);
            free(ypath);
            if (s != XD_OK) goto out;
        }
        /* every epoch done, the summary not yet written: it is made from the trained weights */
        if (R.epochs_done >= r->train.epochs && (s = train_load_resume(&R, TRAIN_RESUME_MODEL, e)) != XD_OK)
            goto out;
    }

    int epoch0 = 0;
    for (int stage = 0; stage < r->n_stages && s == XD_OK; stage++) {
        const int stage_end = epoch0 + r->stages[stage].epochs;
        if (R.epochs_done >= stage_end) {
            epoch0 = stage_end;
            continue;
        }
        if ((s = train_setup_losses(&R, stage, e)) != XD_OK) break;
        train_stage_segments(&R, stage);
        for (int k = 0; k < R.n_models && s == XD_OK; k++) {
            model_rt *mk = &R.models[k];
            nn_opt_free(&mk->opt);
            s = nn_opt_init(&mk->opt, &mk->rm->opt, mk->m.n_param, e);
        }
        if (s != XD_OK) break;
        if (o->resume && R.epochs_done > epoch0) {
            /* resuming inside this stage: its optimizer and projectors come back too */
            if ((s = train_load_resume(&R, TRAIN_RESUME_ALL, e)) != XD_OK) break;
        } else if (o->resume && R.epochs_done == epoch0 && epoch0 > 0) {
            if ((s = train_load_resume(&R, TRAIN_RESUME_MODEL, e)) != XD_OK) break;
        }
        if (!(o->resume && R.epochs_done > epoch0) && (s = train_init_projectors(&R, e)) != XD_OK) break;
        /* every rank set up the stage (a rank that could not says so here, not in a step) */
        if ((s = dist_agree(s, e)) != XD_OK) break;
        for (int ep = R.epochs_done > epoch0 ? R.epochs_done : epoch0; ep < stage_end; ep++) {
            if (o->stop_after > 0 && R.epochs_done >= o->stop_after) goto stopped;
            if ((s = train_epoch(&R, stage, ep, e)) != XD_OK) break;
            ran++;
            io_temp_drop(temp); /* the run has an epoch to resume from: its folder stays */
            temp = -1;
            if (ran == 1 && o->kept) o->kept(o->ctx);
        }
        epoch0 = stage_end;
    }
stopped:
    if (s == XD_OK) {
        res->epochs_done = R.epochs_done;
        res->finished = R.epochs_done >= r->train.epochs;
        res->seconds = R.train_seconds;
        res->images_per_s = R.train_seconds > 0 ? R.images / R.train_seconds : 0.0;
        res->n_models = R.n_models;
        for (int k = 0; k < R.n_models && s == XD_OK; k++) {
            train_model_result *mr = &res->models[k];
            snprintf(mr->name, sizeof mr->name, "%s", R.models[k].rm->name);
            mr->best_acc = R.models[k].best_acc;
            mr->test_at_best = R.models[k].test_at_best;
            mr->best_epoch = R.models[k].best_epoch;
            if (res->finished) s = train_evaluate_test(&R, k, &mr->final_acc, e);
            mr->final_bacc = R.models[k].bacc;
            if (s == XD_OK && res->finished) s = train_exits_evaluate(&R, k, e);
        }
        train_exits_result(&R, res);
        res->final_acc = res->models[0].final_acc;
        res->best_acc = res->models[0].best_acc;
        res->test_at_best = res->models[0].test_at_best;
        res->final_bacc = res->models[0].final_bacc;
        res->best_epoch = res->models[0].best_epoch;
        res->val = R.has_val;
        res->segment = R.seg.on;
        res->final_pixel_acc = R.models[0].pixel_acc;
        if (s == XD_OK && res->finished && R.seg.on && writes) {
            char *dir = train_path(&R, "overlays");
            model_rt *m0 = &R.models[0];
            s = seg_write_overlays(&m0->m, nn_model_default_head(&m0->m), &m0->test,
                                   R.seg.test_image, R.seg.test_mask, SEG_OVERLAYS, dir, e);
            free(dir);
        }
        if (s == XD_OK && writes) s = write_summary(&R, res, e);
        s = dist_agree(s, e);
    }
out:
    io_temp_drop(temp);
    run_free(&R);
    /* a run that fails before it has an epoch to resume from leaves nothing of its own: not the
     * folder it made, nor a trace in a folder it found as long as it wrote nothing there */
    if (s != XD_OK && R.lock.fd >= 0) {
        if (made && !o->resume && ran == 0) io_unmake_dir(o->out_dir, made);
        else if (!R.wrote) runlock_give_back(&R.lock);
    }
    runlock_release(&R.lock);
    free(made);
    if (r->train.threads > 0) xd_threads_set(threads_before);
    return s;
}

