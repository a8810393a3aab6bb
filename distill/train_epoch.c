/* The epoch loop (see train_run.h): the epoch's order of examples, its steps, then the
 * evaluation, each model's checkpoints, the metrics line and the resume state. */
#include "distill/train_run.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dist.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "io/file.h"
#include "nn/prune.h"

/* The line is on the disk before the resume state of its epoch is written (train_epoch): the two
 * move together, since a resume drops the lines past the state's epoch (train_trim_metrics) and runs
 * that epoch again. A stop between the two (or a full disk) thus costs the epoch's rerun, never
 * its line; a half-written line does not parse and is dropped the same way. */
static xd_status append_metrics(train_run *R, json_t *line, xd_err *e)
{
    char *path = train_path(R, "metrics.jsonl");
    char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(8));
    FILE *f = fopen(path, "a");
    xd_status s = XD_OK;
    int bad = !f || fprintf(f, "%s\n", text) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    if ((f && fclose(f) != 0) || bad)
        s = xd_fail(e, XD_EIO, "%s: cannot append: %s", path, strerror(errno));
    free(text);
    free(path);
    return s;
}

/* On resume: keep only the lines of epochs that the resume state covers. */
xd_status train_trim_metrics(train_run *R, xd_err *e)
{
    char *path = train_path(R, "metrics.jsonl");
    void *data;
    size_t n;
    xd_status s = io_read_all(path, (size_t)1 << 30, &data, &n, e);
    if (s != XD_OK) {
        free(path);
        xd_err_clear(e);
        return XD_OK; /* none yet */
    }
    char *out = xd_xmalloc(n + 1);
    size_t used = 0;
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        json_t *j = json_loads(line, 0, NULL);
        json_t *ep = j ? json_object_get(j, "epoch") : NULL;
        if (ep && json_is_integer(ep) && json_integer_value(ep) <= R->epochs_done) {
            size_t len = strlen(line);
            memcpy(out + used, line, len);
            out[used + len] = '\n';
            used += len + 1;
        }
        json_decref(j);
    }
    out[used] = '\0';
    s = train_write_text(path, out, e);
    free(out);
    free(data);
    free(path);
    return s;
}

/* A loss that reads a teacher or another model can learn from unlabelled examples. */
static int stage_needs_teacher(const recipe_stage *st)
{
    for (int i = 0; i < st->n_losses; i++)
        if (st->losses[i].teacher >= 0 || st->losses[i].from_model >= 0 || st->losses[i].n_members)
            return 1;
    return 0;
}

/* Examples a stage walks each epoch: all of them but the validation ones held out when a teacher
 * can teach unlabelled ones, else those whose label the run may see. */
static size_t stage_pool(const train_run *R, int stage)
{
    return stage_needs_teacher(&R->r->stages[stage]) ? R->n_train - R->n_held : R->n_sel;
}

/* Batches per epoch of a stage. */
static int stage_steps(const train_run *R, int stage)
{
    const size_t B = (size_t)R->r->train.batch;
    if (R->r->train.steps_per_epoch > 0) return R->r->train.steps_per_epoch;
    return (int)((stage_pool(R, stage) + B - 1) / B);
}

/* Examples a stage's epoch steps over: steps_per_epoch whole batches, else its pool once. */
static size_t stage_examples(const train_run *R, int stage)
{
    if (R->r->train.steps_per_epoch > 0)
        return (size_t)stage_steps(R, stage) * (size_t)R->r->train.batch;
    return stage_pool(R, stage);
}

train_counts train_counts_after(const train_run *R, int epochs)
{
    train_counts c = {0, 0, 0.0};
    for (int st = 0, epoch0 = 0; st < R->r->n_stages && epoch0 < epochs; st++) {
        const int n = R->r->stages[st].epochs < epochs - epoch0 ? R->r->stages[st].epochs
                                                                : epochs - epoch0;
        c.global_step += (long)stage_steps(R, st) * n;
        /* each stage starts a fresh optimizer */
        c.opt_step = (long)stage_steps(R, st) * n;
        c.images += (double)stage_examples(R, st) * n;
        epoch0 += R->r->stages[st].epochs;
    }
    return c;
}

/* The learning-rate schedule runs over the whole run (all stages), on the global step. */
static nn_sched_config run_schedule(const train_run *R)
{
    nn_sched_config sched = R->r->train.sched;
    if (R->r->train.sched_auto_steps) {
        const long total = train_counts_after(R, R->r->train.epochs).global_step;
        sched.total_steps = total > 0 ? total : 1;
    }
    return sched;
}

xd_status train_check_schedule(const train_run *R, xd_err *e)
{
    const nn_sched_config sched = run_schedule(R);
    const char *file = R->r->file ? R->r->file : "the recipe";
    if (!R->r->train.sched_auto_steps) {
        /* a decay that ends before the run, at a learning rate of 0: the steps after it learn
         * nothing */
        const long run = train_counts_after(R, R->r->train.epochs).global_step;
        const int decays = sched.kind == NN_SCHED_COSINE || sched.kind == NN_SCHED_LINEAR;
        if (!decays || !(sched.min_lr <= 0.0f) || sched.total_steps >= run) return XD_OK;
        return xd_fail(e, XD_EARG, "%s: train.schedule: total_steps %ld is shorter than the run's "
                       "%ld steps, so the learning rate would be 0 (min_lr) for its last %ld; give "
                       "total_steps of at least %ld, leave it out (the run's steps), or a min_lr "
                       "above 0", file, sched.total_steps, run, run - sched.total_steps, run);
    }
    if (sched.total_steps > sched.warmup_steps) return XD_OK;
    return xd_fail(e, XD_EARG, "%s: train.schedule: warmup_steps %ld is not shorter than the run's "
                   "%ld steps (its epochs' steps on this data), so the learning rate would never "
                   "leave the warmup; give fewer warmup_steps or more epochs",
                   file, sched.warmup_steps, sched.total_steps);
}

/* Model k's last checkpoint, and its best: with a validation split, when this epoch's evaluation
 * improved the score there; without one nothing is chosen, and the best is the last evaluated
 * epoch (the test split picks no checkpoint). */
static xd_status save_checkpoints(train_run *R, int k, int epoch, int evaluated, xd_err *e)
{
    model_rt *mk = &R->models[k];
    char ep[16], sd[24], ac[32], va[32];
    snprintf(ep, sizeof ep, "%d", epoch + 1);
    snprintf(sd, sizeof sd, "%ld", R->seed);
    snprintf(ac, sizeof ac, "%.6f", mk->acc);
    snprintf(va, sizeof va, "%.6f", mk->val_acc);
    io_kv meta[6] = {{"xdistill.recipe", R->yaml}, {"epoch", ep}, {"seed", sd}, {"test_acc", ac}};
    size_t n_meta = 4;
    /* with several models, each checkpoint says which one it holds */
    if (R->n_models > 1) meta[n_meta++] = (io_kv){"xdistill.model_name", mk->rm->name};
    if (R->has_val) meta[n_meta++] = (io_kv){"val_acc", va};
    /* rank 0 alone writes (every rank holds the same model) */
    const int writes = dist_rank() == 0;
    char *name = models_file(R->r, k, "last"), *last = train_path(R, name);
    xd_status s = !writes ? XD_OK : ckpt_save_trained(last, &mk->m, meta, n_meta, &mk->train,
                                                      R->ds, R->r->data.label, e);
    free(last);
    free(name);
    const int better = !R->has_val || mk->best_epoch == 0 || mk->val_acc > mk->best_acc;
    if (s == XD_OK && evaluated && better) {
        mk->best_acc = R->has_val ? mk->val_acc : mk->acc;
        mk->test_at_best = mk->acc;
        mk->best_epoch = epoch + 1;
        name = models_file(R->r, k, "best");
        char *best = train_path(R, name);
        if (writes)
            s = ckpt_save_trained(best, &mk->m, meta, n_meta, &mk->train, R->ds,
                                  R->r->data.label, e);
        free(best);
        free(name);
    }
    return s;
}

/* A score that an evaluation gave, else null. */
static json_t *score_json(int evaluated, double v) { return evaluated ? json_real(v) : json_null(); }

/* A metrics line's scores of model k under KEY (one model) or KEY.NAME (several): test and
 * validation accuracy and balanced accuracy (a segment task: mIoU and pixel accuracy), each eval
 * set's as eval.SET.acc, eval.SET.bacc. */
static void epoch_model_metrics(const train_run *R, int k, json_t *j, int evaluated)
{
    const model_rt *mk = &R->models[k];
    const char *seg[4] = {"test_miou", "test_pixel_acc", "val_miou", "val_pixel_acc"};
    const char *cls[4] = {"test_acc", "test_bacc", "val_acc", "val_bacc"};
    const double v[4] = {mk->acc, R->seg.on ? mk->pixel_acc : mk->bacc, mk->val_acc,
                         R->seg.on ? mk->val_pixel_acc : mk->val_bacc};
    char key[RECIPE_MAX_NAME * 2 + 32], suffix[RECIPE_MAX_NAME + 1] = "";
    if (R->n_models > 1) snprintf(suffix, sizeof suffix, ".%s", mk->rm->name);
    for (int i = 0; i < (R->has_val ? 4 : 2); i++) {
        snprintf(key, sizeof key, "%s%s", (R->seg.on ? seg : cls)[i], suffix);
        json_object_set_new(j, key, score_json(evaluated, v[i]));
    }
    for (int i = 0; i < mk->n_eval; i++) {
        const char *set = R->r->data.eval_sets[i].name;
        snprintf(key, sizeof key, "eval.%s.acc%s", set, suffix);
        json_object_set_new(j, key, score_json(evaluated, mk->eval_acc[i]));
        snprintf(key, sizeof key, "eval.%s.bacc%s", set, suffix);
        json_object_set_new(j, key, score_json(evaluated, mk->eval_bacc[i]));
    }
}

/* "81.20%", or with several models "a 81.20%, b 79.02%" (val: the validation scores), into buf. */
static const char *models_scores(const train_run *R, int val, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int k = 0; k < R->n_models && at < size; k++) {
        const model_rt *mk = &R->models[k];
        const double v = 100.0 * (val ? mk->val_acc : mk->acc);
        if (R->n_models == 1)
            at += (size_t)snprintf(buf + at, size - at, "%.2f%%", v);
        else
            at += (size_t)snprintf(buf + at, size - at, "%s%s %.2f%%", k ? ", " : "",
                                   mk->rm->name, v);
    }
    return buf;
}

/* Several ranks, after an epoch's steps: the figures each rank summed over its shards (the
 * loss, each loss's, the training accuracy's counts) summed over the ranks; returns the loss. */
static double sum_epoch_figures(train_run *R, double loss_sum)
{
    double *v = xd_xmalloc(sizeof(double) * (size_t)(1 + R->n_losses));
    v[0] = loss_sum;
    for (int l = 0; l < R->n_losses; l++) v[1 + l] = R->losses[l].sum;
    dist_sum_doubles(v, (size_t)(1 + R->n_losses));
    for (int l = 0; l < R->n_losses; l++) R->losses[l].sum = v[1 + l];
    loss_sum = v[0];
    free(v);
    for (int k = 0; k < R->n_models; k++) {
        uint64_t c[2] = {R->models[k].correct, R->models[k].labelled};
        dist_sum_counts(c, 2);
        R->models[k].correct = c[0];
        R->models[k].labelled = c[1];
    }
    return loss_sum;
}

/* An epoch's order: n_order positions, passes over the pool (every example not held out when a
 * teacher can teach it, else the ones whose label the run sees), each pass reshuffled by the
 * stream (seed, epoch + pass << 32, XD_RNG_SHUFFLE).
 *
 * train.shuffle stored: a Fisher-Yates shuffle of the pool's array (R->pool); an epoch of one
 * pass (the usual one) walks it in place, several are copied out into R->order.
 * train.shuffle keyed: position t is member xd_perm_at(pass t / n_pool)(t % n_pool) of the pool,
 * found by a select over its bits: no array of the examples. */
typedef struct {
    const uint32_t *order;    /* stored */
    xd_select pool;           /* keyed: over sel, or over the examples not held out */
    int all_pool;             /* keyed: the pool is every training example */
    xd_perm perm;             /* keyed: the pass perm_pass draws */
    size_t n_pool, perm_pass;
    uint64_t seed;
    int epoch;
} epoch_order;

/* the key of a pass's shuffle, stored or keyed: (seed, epoch + pass << 32, XD_RNG_SHUFFLE) */
static uint64_t pass_key(int epoch, size_t pass)
{
    return (uint64_t)epoch + ((uint64_t)pass << 32);
}

static xd_perm pass_perm(const epoch_order *o, size_t pass)
{
    return xd_perm_make(o->n_pool, o->seed, pass_key(o->epoch, pass), XD_RNG_SHUFFLE);
}

static void epoch_order_init(epoch_order *o, train_run *R, int all, size_t n_pool, size_t n_order,
                             int epoch)
{
    memset(o, 0, sizeof *o);
    o->n_pool = n_pool;
    o->seed = (uint64_t)R->seed;
    o->epoch = epoch;
    if (R->r->train.shuffle == RECIPE_SHUFFLE_KEYED) {
        o->all_pool = n_pool == R->n_train; /* every example: the permutation's own values */
        if (!o->all_pool) xd_select_init(&o->pool, all ? R->held : R->sel, R->n_train, all);
        XD_ASSERT(o->all_pool || o->pool.members == n_pool);
        o->perm = pass_perm(o, 0);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < R->n_train; i++)
        if (all ? !(R->held && xd_bit(R->held, i)) : xd_bit(R->sel, i)) R->pool[n++] = (uint32_t)i;
    XD_ASSERT(n == n_pool);
    const int passes = n_order > n_pool;
    if (passes && n_order > R->order_cap) {
        R->order = xd_xrealloc(R->order, sizeof(uint32_t) * n_order);
        R->order_cap = n_order;
    }
    for (size_t done = 0, pass = 0; done < n_order; pass++) {
        xd_rng order = xd_rng_make(o->seed, pass_key(epoch, pass), XD_RNG_SHUFFLE);
        xd_rng_shuffle(&order, R->pool, (uint32_t)n_pool);
        size_t take = n_order - done < n_pool ? n_order - done : n_pool;
        if (passes) memcpy(R->order + done, R->pool, sizeof(uint32_t) * take);
        done += take;
    }
    o->order = passes ? R->order : R->pool;
}

/* The example at position t of the epoch (positions are read in increasing order). */
static uint32_t epoch_order_at(epoch_order *o, size_t t)
{
    if (o->order) return o->order[t];
    const size_t pass = t / o->n_pool;
    if (pass != o->perm_pass) {
        o->perm = pass_perm(o, pass);
        o->perm_pass = pass;
    }
    const size_t r = (size_t)xd_perm_at(&o->perm, t % o->n_pool);
    return (uint32_t)(o->all_pool ? r : xd_select_at(&o->pool, r));
}

static void epoch_order_free(epoch_order *o)
{
    if (!o->order && !o->all_pool) xd_select_free(&o->pool);
}

xd_status train_epoch(train_run *R, int stage, int epoch, xd_err *e)
{
    const recipe *r = R->r;
    const recipe_stage *st = &r->stages[stage];
    const int B = r->train.batch;
    /* the pool: every example when a teacher can teach it, else the labelled ones */
    const int all = stage_needs_teacher(st);
    const size_t n_pool = stage_pool(R, stage);
    if (n_pool == 0)
        return xd_fail(e, XD_EARG, "%s: stage %d has no example to learn from: none of the training "
                                   "examples has a label the run may see (label_mask, label_fraction, "
                                   "labels_per_class) and no loss reads a teacher",
                       r->data.path, stage + 1);
    /* the epoch's order: passes over the pool, each reshuffled, until the steps are filled */
    const int steps = stage_steps(R, stage);
    const size_t n_order = stage_examples(R, stage);
    epoch_order eo;
    epoch_order_init(&eo, R, all, n_pool, n_order, epoch);
    /* a pruning step: new masks from the weights as the last epoch left them */
    const float sparsity = nn_prune_at(&r->prune, epoch);
    for (int k = 0; k < R->n_models && sparsity >= 0.0f; k++) {
        nn_prune_update(&R->models[k].m, sparsity, r->prune.scope);
        nn_prune_apply(&R->models[k].m, &R->models[k].opt);
    }
    const nn_sched_config sched = run_schedule(R);
    for (int i = 0; i < R->n_losses; i++) R->losses[i].sum = 0.0;
    R->threads = xd_threads_get();

    progress pg;
    progress_init(&pg, R->log, R->o->quiet || dist_rank() > 0, R->o->span);
    char label[64];
    snprintf(label, sizeof label, "%s", r->name);
    progress_epoch(&pg, label, epoch + 1, r->train.epochs, steps);
    double t0 = progress_now(), loss_sum = 0.0;
    for (int k = 0; k < R->n_models; k++) R->models[k].correct = R->models[k].labelled = 0;
    for (int step = 0; step < steps; step++) {
        size_t i0 = (size_t)step * (size_t)B;
        int n = n_order - i0 < (size_t)B ? (int)(n_order - i0) : B;
        /* this rank's rows of the global batch (all of them in a single process) */
        size_t lo, hi;
        dist_slice((size_t)n, dist_rank(), &lo, &hi);
        for (size_t b = 0; b < hi - lo; b++) {
            uint32_t i = epoch_order_at(&eo, i0 + lo + b);
            R->idx[b] = i;
            R->yb[b] = R->ytrain[i];
            R->mb[b] = (uint8_t)xd_bit(R->sel, i);
            R->exb[b] = i;
        }
        if (dist_size() > 1) R->share = (float)(hi - lo) / (float)n;
        double loss;
        xd_status s = train_step(R, stage, epoch, (int)(hi - lo), nn_sched_lr(&sched, R->global_step),
                                 &loss, e);
        if (s != XD_OK) {
            epoch_order_free(&eo);
            return s;
        }
        loss_sum += R->share * loss;
        R->global_step++;
        R->images += n;
        progress_step(&pg, step + 1, loss_sum / (step + 1), (double)(i0 + (size_t)n));
    }
    double secs = progress_now() - t0;
    epoch_order_free(&eo);
    R->train_seconds += secs;
    if (dist_size() > 1) loss_sum = sum_epoch_figures(R, loss_sum);

    /* evaluate, save, log */
    int evaluate = r->train.eval_every > 0 ? ((epoch + 1) % r->train.eval_every == 0) : 0;
    evaluate |= epoch + 1 == r->train.epochs;
    R->epochs_done = epoch + 1;
    xd_status s = XD_OK;
    for (int k = 0; k < R->n_models; k++) {
        double acc = 0.0;
        if (evaluate && ((s = train_evaluate_test(R, k, &acc, e)) != XD_OK ||
                         (s = train_evaluate_val(R, k, e)) != XD_OK))
            return s;
        if (evaluate && (s = train_exits_evaluate(R, k, e)) != XD_OK) return s;
        R->models[k].acc = acc;
    }
    /* the first epoch's files are the run's first change to its folder: an evaluation that
     * fails leaves an earlier run's files as they were */
    if ((s = train_first_write(R, e)) != XD_OK) return s;
    for (int k = 0; k < R->n_models && s == XD_OK; k++)
        s = save_checkpoints(R, k, epoch, evaluate, e);
    if ((s = dist_agree(s, e)) != XD_OK) return s;

    const double acc = R->models[0].acc;
    json_t *j = json_object();
    json_object_set_new(j, "epoch", json_integer(epoch + 1));
    json_object_set_new(j, "stage", json_integer(stage + 1));
    json_object_set_new(j, "step", json_integer(R->global_step));
    json_object_set_new(j, "lr", json_real(nn_sched_lr(&sched, R->global_step)));
    json_object_set_new(j, "loss", json_real(steps ? loss_sum / steps : 0.0));
    for (int l = 0; l < R->n_losses; l++) {
        char key[48];
        snprintf(key, sizeof key, "loss.%d.%s", l, recipe_loss_kind_names[R->losses[l].L->kind]);
        json_object_set_new(j, key, json_real(steps ? R->losses[l].sum / steps : 0.0));
    }
    for (int k = 0; k < R->n_models; k++) {
        const model_rt *mk = &R->models[k];
        char key[RECIPE_MAX_NAME + 16];
        snprintf(key, sizeof key, "train_acc%s%s", R->n_models > 1 ? "." : "",
                 R->n_models > 1 ? mk->rm->name : "");
        json_object_set_new(j, key, mk->labelled ? json_real((double)mk->correct / mk->labelled)
                                                 : json_null());
        if (r->prune.sparsity > 0.0f) {
            snprintf(key, sizeof key, "sparsity%s%s", R->n_models > 1 ? "." : "",
                     R->n_models > 1 ? mk->rm->name : "");
            json_object_set_new(j, key, json_real(nn_prune_sparsity(&mk->m)));
        }
        epoch_model_metrics(R, k, j, evaluate);
    }
    train_exits_metrics(R, j, evaluate);
    if ((s = train_rationale_epoch(R, epoch, evaluate, j, e)) != XD_OK) {
        json_decref(j);
        return s;
    }
    json_object_set_new(j, "seconds", json_real(secs));
    json_object_set_new(j, "images_per_s", json_real(secs > 0 ? (double)n_order / secs : 0.0));
    json_object_set_new(j, "threads", json_integer(R->threads));
    /* the line first, then the state that says the epoch is done (see append_metrics) */
    if (dist_rank() == 0) s = append_metrics(R, j, e);
    json_decref(j);
    if (s == XD_OK && dist_rank() == 0) s = train_save_resume(R, e);
    s = dist_agree(s, e);
    char line[256 + 2 * RECIPE_MAX_MODELS * (RECIPE_MAX_NAME + 16)];
    char test_txt[RECIPE_MAX_MODELS * (RECIPE_MAX_NAME + 16)], val_txt[sizeof test_txt];
    const double loss_avg = steps ? loss_sum / steps : 0.0, ips = secs > 0 ? (double)n_order / secs : 0.0;
    if (evaluate && R->seg.on && R->has_val)
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, val mIoU %.2f%%, test mIoU %.2f%%, "
                 "pixel accuracy %.2f%%, %.1f s, %.0f img/s", r->name, epoch + 1, r->train.epochs,
                 loss_avg, 100.0 * R->models[0].val_acc, 100.0 * acc,
                 100.0 * R->models[0].pixel_acc, secs, ips);
    else if (evaluate && R->seg.on)
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, test mIoU %.2f%%, pixel accuracy "
                 "%.2f%%, %.1f s, %.0f img/s", r->name, epoch + 1, r->train.epochs, loss_avg,
                 100.0 * acc, 100.0 * R->models[0].pixel_acc, secs, ips);
    else if (evaluate && R->has_val)
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, val accuracy %s, test accuracy %s, "
                 "%.1f s, %.0f img/s", r->name, epoch + 1, r->train.epochs, loss_avg,
                 models_scores(R, 1, val_txt, sizeof val_txt),
                 models_scores(R, 0, test_txt, sizeof test_txt), secs, ips);
    else if (evaluate)
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, test accuracy %s, %.1f s, %.0f img/s",
                 r->name, epoch + 1, r->train.epochs, loss_avg,
                 models_scores(R, 0, test_txt, sizeof test_txt), secs, ips);
    else
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, %.1f s", r->name, epoch + 1,
                 r->train.epochs, loss_avg, secs);
    progress_done(&pg, line);
    return s;
}
