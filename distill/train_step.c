/* One training step (see train_run.h): every model's forward, the teachers' outputs, every loss
 * with its gradients, every backward, the checks for non-finite values that name their source,
 * and every optimizer step. */
#include "distill/train_run.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/clip.h"
#include "core/dist.h"
#include "core/mem.h"
#include "distill/kd.h"
#include "nn/loss.h"
#include "nn/prune.h"

/* The teacher's forward on examples idx[0..n) of the training split, in eval mode. aug: draw the
 * random crops, flips and languages of (seed, example, epoch), as the student's batch did. */
static xd_status teacher_forward(train_run *R, teacher_rt *t, const uint32_t *idx, int n, int aug,
                                 uint64_t epoch, xd_err *e)
{
    xd_status s;
    if (t->shares) {
        nn_model_forward(&t->m, R->models[0].input, n, NULL);
        return XD_OK;
    }
    if (!t->average) {
        if ((s = feed_fill(&t->f, idx, n, aug, (uint64_t)R->seed, epoch, t->input, e)) != XD_OK)
            return s;
        nn_model_forward(&t->m, t->input, n, NULL);
        return XD_OK;
    }
    /* every language an example has: out = (1 / count) sum over its languages of the outputs */
    for (int k = 0; k < t->m.n_nodes; k++)
        if (t->avg[k]) memset(t->avg[k], 0, sizeof(float) * (size_t)n * nn_model_node(&t->m, k)->act_n);
    memset(t->count, 0, sizeof(float) * (size_t)n);
    for (int lang = 0; lang < t->f.n_langs; lang++) {
        if ((s = feed_fill_lang(&t->f, idx, n, lang, t->input, t->present, e)) != XD_OK) return s;
        int any = 0;
        for (int b = 0; b < n; b++) any |= t->present[b];
        if (!any) continue;
        nn_model_forward(&t->m, t->input, n, NULL);
        for (int b = 0; b < n; b++) t->count[b] += t->present[b];
        for (int k = 0; k < t->m.n_nodes; k++) {
            if (!t->avg[k]) continue;
            const size_t w = nn_model_node(&t->m, k)->act_n;
            const float *out = nn_model_out(&t->m, k);
            for (int b = 0; b < n; b++)
                if (t->present[b]) nn_add_inplace(t->avg[k] + (size_t)b * w, out + (size_t)b * w, w);
        }
    }
    for (int k = 0; k < t->m.n_nodes; k++) {
        if (!t->avg[k]) continue;
        const size_t w = nn_model_node(&t->m, k)->act_n;
        for (int b = 0; b < n; b++) {
            /* an example without any text keeps zeros: the teacher has nothing to say of it */
            const float inv = t->count[b] > 0 ? 1.0f / t->count[b] : 0.0f;
            for (size_t j = 0; j < w; j++) t->avg[k][(size_t)b * w + j] *= inv;
        }
    }
    return XD_OK;
}

xd_status train_teacher_forward(train_run *R, teacher_rt *t, const uint32_t *idx, int n, int aug,
                                uint64_t epoch, xd_err *e)
{
    xd_status s = teacher_forward(R, t, idx, n, aug, epoch, e);
    /* what a cached teacher's cache is checked for when it is built, at every step: weights whose
     * products overflow give NaN, which the losses would teach the student */
    const int ti = (int)(t - R->teachers), head = nn_model_default_head(&t->m);
    for (int k = 0; k < t->m.n_nodes && s == XD_OK; k++) {
        if (!t->reads[k]) continue;
        const nn_node *nd = nn_model_node(&t->m, k);
        char what[NN_NAME_LEN + 32] = "the teacher's output";
        if (k != head) snprintf(what, sizeof what, "the teacher's output at '%s'", nd->name);
        s = nn_check_finite(train_teacher_out(R, ti, k, n), (size_t)n, nd->act_n, idx, 0, what, e);
        if (s != XD_OK) xd_err_prefix(e, "teacher '%s'", R->r->teachers[ti].name);
    }
    return s;
}

void train_teacher_reads(train_run *R, teacher_rt *t, int node)
{
    t->reads[node] = 1;
    if (t->average && !t->avg[node])
        t->avg[node] = xd_xmalloc(sizeof(float) * (size_t)R->r->train.batch *
                                  nn_model_node(&t->m, node)->act_n);
}

const float *train_teacher_out(train_run *R, int ti, int node, int B)
{
    teacher_rt *t = &R->teachers[ti];
    if (t->average) return t->avg[node];
    if (t->cached) {
        const int K = t->cache.K;
        for (int b = 0; b < B; b++)
            memcpy(R->tlogits + (size_t)b * K, t->cache.logits + (size_t)R->idx[b] * K, sizeof(float) * K);
        return R->tlogits;
    }
    return nn_model_out(&t->m, node);
}

/* The output of a loss's from end: a teacher's (cached, averaged or computed), or another
 * trainable model's from this step's forward. */
static const float *from_out(train_run *R, const loss_rt *l, int B)
{
    const recipe_loss *L = l->L;
    if (L->from_model >= 0) return nn_model_out(&R->models[L->from_model].m, l->t_node);
    return train_teacher_out(R, L->teacher, l->t_node, B);
}

/* Where the gradient of a loss's from end goes: NULL when it is detached (a teacher always is). */
static float *from_dout(train_run *R, const loss_rt *l)
{
    const recipe_loss *L = l->L;
    if (L->from_model < 0 || L->detach) return NULL;
    return nn_model_dout(&R->models[L->from_model].m, l->t_node);
}

/* Forward of every loss, gradient into the end that learns of each (and into the from end of a
 * loss that is not detached); returns the weighted total. */
static double apply_losses(train_run *R, int B, const nn_run *nr)
{
    double total = 0.0;
    if (R->class_w)
        for (int b = 0; b < B; b++) R->wb[b] = R->mb[b] ? R->class_w[R->yb[b]] : 1.0f;
    for (int i = 0; i < R->n_losses; i++) {
        loss_rt *l = &R->losses[i];
        const recipe_loss *L = l->L;
        nn_model *sm = &R->models[L->model].m;
        const nn_node *sn = nn_model_node(sm, l->s_node);
        const int K = (int)sn->act_n;
        float *s = nn_model_out(sm, l->s_node);
        float w = L->weight;
        const float *rw = L->class_weight == RECIPE_CLASS_WEIGHT_BALANCED ? R->wb : NULL;
        double v = 0.0;
        switch (L->kind) {
        case RECIPE_LOSS_CE:
            if (R->seg.on) {
                v = seg_ce(&R->seg, s, nn_model_dout(sm, l->s_node), R->idx, R->mb, B, w);
                break;
            }
            v = nn_ce_forward_w(l->a, s, R->yb, R->mb, rw, B, K);
            nn_ce_backward_w(nn_model_dout(sm, l->s_node), l->a, R->yb, R->mb, rw, B, K, w);
            break;
        case RECIPE_LOSS_KD:
        case RECIPE_LOSS_HINTON: {
            const float *t = l->ens ? NULL : from_out(R, l, B);
            if (l->ens) {
                train_ensemble_target(R, l, B);
            } else if (l->mapped) {
                /* the teacher's distribution over its own classes, moved onto the student's */
                kd_soft_targets(l->tq, t, B, l->lm.kt, L->temperature);
                align_labelmap_apply(l->c, l->tq, &l->lm, B);
            } else {
                kd_soft_targets(l->c, t, B, K, L->temperature);
            }
            float *ds = nn_model_dout(sm, l->s_node);
            float *dt = from_dout(R, l);
            if (L->kind == RECIPE_LOSS_KD) {
                v = kd_forward_w(l->a, s, l->c, NULL, rw, B, K, L->temperature);
                kd_backward_w(ds, l->a, l->c, NULL, rw, B, K, L->temperature, w);
                if (dt) kd_backward_target_w(dt, t, s, NULL, rw, B, K, L->temperature, w);
            } else {
                v = kd_hinton_forward_w(l->a, l->b, s, l->c, R->yb, R->mb, rw, B, K,
                                        L->temperature, L->alpha);
                kd_hinton_backward_w(ds, l->a, l->b, l->c, R->yb, R->mb, rw, B, K, L->temperature,
                                     L->alpha, w);
                /* the CE part does not depend on the from end */
                if (dt) kd_backward_target_w(dt, t, s, NULL, rw, B, K, L->temperature, w * L->alpha);
            }
            break;
        }
        case RECIPE_LOSS_FEATURE:
        case RECIPE_LOSS_HINT:
        case RECIPE_LOSS_CONTRASTIVE: {
            const float *t = from_out(R, l, B);
            const nn_node *tn = nn_model_node(train_from_net(R, L), l->t_node);
            float *dt = from_dout(R, l);
            const float *x = s;
            float *dx;
            int ph = 0;
            if (l->has_proj) {
                nn_model_forward(&l->proj, s, B, nr);
                nn_model_zero_grad(&l->proj);
                ph = nn_model_default_head(&l->proj);
                x = nn_model_out(&l->proj, ph);
                dx = nn_model_dout(&l->proj, ph);
            } else {
                dx = nn_model_dout(sm, l->s_node);
            }
            const int64_t n = (int64_t)B * (int64_t)tn->act_n;
            if (L->kind == RECIPE_LOSS_CONTRASTIVE) {
                v = align_clip_forward(l->clip, x, t, B, (int)tn->act_n, l->theta[0]);
                l->dtheta[0] = 0.0f;
                align_clip_backward(dx, dt, L->learn_temperature ? l->dtheta : NULL, l->clip, B,
                                    (int)tn->act_n, w);
            } else if (L->kind == RECIPE_LOSS_FEATURE && L->metric == RECIPE_METRIC_COSINE) {
                v = kd_cos_forward(x, t, l->ones, NULL, B, (int)tn->act_n, 0.0f);
                kd_cos_backward(dx, dt, x, t, l->ones, NULL, B, (int)tn->act_n, 0.0f, w);
            } else {
                v = nn_mse_forward(x, t, n);
                nn_mse_backward(dx, x, t, n, w);
                if (dt) nn_mse_backward(dt, t, x, n, w);
            }
            if (l->has_proj) {
                nn_model_backward(&l->proj);
                nn_add_inplace(nn_model_dout(sm, l->s_node), nn_model_dinput(&l->proj),
                               (size_t)B * sn->act_n);
            }
            break;
        }
        case RECIPE_LOSS_ATTENTION: {
            const nn_node *tn = nn_model_node(train_from_net(R, L), l->t_node);
            const float *t = from_out(R, l, B);
            float *dt = from_dout(R, l);
            v = kd_at_forward(s, t, NULL, B, sn->h * sn->w, sn->c, tn->c);
            kd_at_backward(nn_model_dout(sm, l->s_node), s, t, NULL, B, sn->h * sn->w, sn->c,
                           tn->c, w);
            /* the distance is symmetric in its two maps */
            if (dt) kd_at_backward(dt, t, s, NULL, B, sn->h * sn->w, tn->c, sn->c, w);
            break;
        }
        case RECIPE_LOSS_DENSE:
            v = seg_dense(&R->seg, L, s, nn_model_dout(sm, l->s_node), R->idx, B, w);
            break;
        case RECIPE_LOSS_RATIONALE:
            v = train_rationale_apply(R, l, B, w);
            break;
        default:
            v = train_zoo_apply(R, l, B, nr);
        }
        l->sum += R->share * v; /* its part of the mean over the global batch */
        total += w * v;
    }
    return total;
}

// ----------------------------------------------------------------------------------------------
// non-finite values

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* The layer of model m that holds parameter p. */
static const nn_node *param_layer(const nn_model *m, const nn_param *p)
{
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = nn_model_node(m, i);
        if ((nd->w_n && nd->w_off == p->off) || (nd->b_n && nd->b_off == p->off)) return nd;
    }
    return NULL;
}

/* A stop on a non-finite value: "epoch E, step S: WHAT; stopped (...)", WHAT naming the model,
 * the layer or parameter and the loss. */
static xd_status stop_nonfinite(train_run *R, int epoch, const char *what, xd_err *e)
{
    return xd_fail(e, XD_ENUM, "epoch %d, step %ld: %s; stopped (the last good checkpoint is kept)",
                   epoch + 1, R->global_step + 1, what);
}

/* buf (model k's gradients or parameters, in the parameter layout) must be finite; the message
 * names the first parameter that is not, its layer and model, `how` saying what made it so (with
 * %s for "the student's 'NAME' (layer 'L', KIND)", or "'NAME' of model 'M' (...)" when there are
 * several), and otherwise `overflow` (the norm overflowed with every value finite). */
static xd_status check_buffer(train_run *R, int k, int epoch, const float *buf, const char *how,
                              const char *overflow, xd_err *e)
{
    nn_model *m = &R->models[k].m;
    if (nn_norm_finite(buf, m->n_param)) return XD_OK;
    char name[320], what[480];
    for (int i = 0; i < m->n_params; i++) {
        const nn_param *p = &m->params[i];
        if (p->state || all_finite(buf + p->off, p->n)) continue;
        const nn_node *nd = param_layer(m, p);
        if (R->r->listed)
            snprintf(name, sizeof name, "'%s' of model '%s' (layer '%s', %s)", p->name,
                     R->models[k].rm->name, nd ? nd->name : "?", nd ? nn_kind_name(nd->kind) : "?");
        else
            snprintf(name, sizeof name, "the student's '%s' (layer '%s', %s)", p->name,
                     nd ? nd->name : "?", nd ? nn_kind_name(nd->kind) : "?");
        snprintf(what, sizeof what, how, name);
        return stop_nonfinite(R, epoch, what, e);
    }
    return stop_nonfinite(R, epoch, overflow, e);
}

/* Where the first non-finite value of a batch of n came from, once a loss is not finite: the
 * first layer of a trainable model whose output holds one, else an output of a teacher or of a
 * projector that a loss read. */
static void blame_nonfinite(train_run *R, int stage, int n, char *buf, size_t size)
{
    const char *ours = R->r->listed ? "the models' layers" : "the student's layers";
    for (int k = 0; k < R->n_models; k++) {
        nn_model *m = &R->models[k].m;
        for (int i = 0; i < m->n_nodes; i++) {
            const nn_node *nd = nn_model_node(m, i);
            if (nd->relu_pool) continue; /* its pool keeps its output */
            if (all_finite(nn_model_out(m, i), (size_t)n * nd->act_n)) continue;
            char who[RECIPE_MAX_NAME + 32];
            snprintf(buf, size, "the first non-finite output is %s's layer '%s' (%s)",
                     train_end_name(R, -1, k, who, sizeof who), nd->name, nn_kind_name(nd->kind));
            return;
        }
    }
    for (int l = 0; l < R->n_losses; l++) {
        loss_rt *lr = &R->losses[l];
        char member[400];
        if (train_ensemble_blame(R, lr, n, member, sizeof member)) {
            snprintf(buf, size, "%s are finite; %s", ours, member);
            return;
        }
        if (lr->t_node >= 0 && lr->L->teacher >= 0) { /* a peer's outputs were checked above */
            const int t = lr->L->teacher;
            const nn_node *tn = nn_model_node(&R->teachers[t].m, lr->t_node);
            if (!all_finite(train_teacher_out(R, t, lr->t_node, n), (size_t)n * tn->act_n)) {
                snprintf(buf, size, "%s are finite; teacher '%s' (%s) gives a non-finite output "
                         "at '%s'", ours, R->r->teachers[t].name, R->r->teachers[t].checkpoint,
                         tn->name);
                return;
            }
        }
        if (lr->has_proj) {
            const int ph = nn_model_default_head(&lr->proj);
            if (!all_finite(nn_model_out(&lr->proj, ph),
                            (size_t)n * nn_model_node(&lr->proj, ph)->act_n)) {
                char key[96];
                recipe_loss_where(R->r, stage, l, 0, key, sizeof key);
                snprintf(buf, size, "%s are finite; the projector of %s gives a non-finite output",
                         ours, key);
                return;
            }
        }
    }
    snprintf(buf, size, "every layer's output is finite: the loss itself overflows");
}

/* After a step's forward and backward on n examples of stage `stage`: the losses must be finite
 * (the gradients are checked by check_step, after the optimizer's step has looked at them). */
static xd_status check_loss(train_run *R, int stage, int epoch, int n, double loss, xd_err *e)
{
    if (!isfinite(loss)) {
        char key[96] = "", blame[512], what[640];
        int first = 0;
        while (first < R->n_losses && isfinite(R->losses[first].sum)) first++;
        if (first < R->n_losses) recipe_loss_where(R->r, stage, first, 0, key, sizeof key);
        blame_nonfinite(R, stage, n, blame, sizeof blame);
        snprintf(what, sizeof what, "the loss is %g%s%s%s; %s", loss, key[0] ? " (first in " : "",
                 key, key[0] ? ")" : "", blame);
        return stop_nonfinite(R, epoch, what, e);
    }
    return XD_OK;
}

/* After the optimizer's steps: a gradient that is not finite, then a parameter that the update
 * made so, stops the run before anything is saved. Each step looked at the gradients it read
 * (after clipping, which leaves a gradient whose norm is not finite as it was) and the
 * parameters it left on its way through them (nn_optimizer's grads_over, params_over), so the
 * buffers are gone through again only when it saw a value that could make the norm non-finite.
 * Under mpirun these are the ranks' summed gradients, as one process would check the whole
 * batch's. */
static xd_status check_step(train_run *R, int epoch, xd_err *e)
{
    xd_status s = XD_OK;
    for (int k = 0; k < R->n_models && s == XD_OK; k++)
        if (R->models[k].opt.grads_over)
            s = check_buffer(R, k, epoch, R->models[k].m.grad, "the gradient of %s is not finite",
                             "the gradient norm overflows", e);
    for (int k = 0; k < R->n_models && s == XD_OK; k++)
        if (R->models[k].opt.params_over)
            s = check_buffer(R, k, epoch, R->models[k].m.param, "the update made %s non-finite",
                             "the parameters overflow", e);
    return s;
}

/* Each model reads its view of the batch R->idx[0..n) (augmented from (seed, example, epoch)) and
 * runs forward in training mode; model k > 0 draws its dropout from its own seed. */
static xd_status models_forward(train_run *R, int n, int epoch, xd_err *e)
{
    for (int k = 0; k < R->n_models; k++) {
        model_rt *mk = &R->models[k];
        xd_status s = feed_fill(&mk->train, R->idx, n, 1, (uint64_t)R->seed, (uint64_t)epoch,
                                mk->input, e);
        if (s != XD_OK) return s;
        nn_run nr = {.training = 1, .seed = mk->seed, .step = (uint64_t)R->global_step,
                     .example = R->exb};
        nn_model_forward(&mk->m, mk->input, n, &nr);
    }
    return XD_OK;
}

/* Model k's learning rate at a step whose schedule gives lr: a model with its own optimizer
 * scales the run's schedule by its lr over train.optimizer's. */
static float model_lr(const train_run *R, int k, float lr)
{
    const recipe_model *rm = R->models[k].rm;
    if (!rm->own_opt) return lr;
    return (float)((double)lr * rm->opt.lr / R->r->train.opt.lr);
}

/* Training accuracy on the labelled rows of the batch, from model k's default head. */
static void count_train_correct(train_run *R, int k, int n)
{
    model_rt *mk = &R->models[k];
    const int head = nn_model_default_head(&mk->m);
    const int K = (int)nn_model_node(&mk->m, head)->act_n;
    const float *out = nn_model_out(&mk->m, head);
    if (R->seg.on) {
        size_t px;
        mk->correct += seg_count_correct(&R->seg, out, R->idx, R->mb, n, &px);
        mk->labelled += px;
        return;
    }
    for (int b = 0; b < n; b++) {
        if (!R->mb[b]) continue;
        mk->labelled++;
        mk->correct += (size_t)nn_count_correct(out + (size_t)b * K, &R->yb[b], 1, K);
    }
}

/* This rank's part of a step on its n examples: forwards, losses, backwards and the losses'
 * check. A rank whose share of a short last batch is empty only clears its gradients. */
static xd_status local_step(train_run *R, int stage, int epoch, int n, double *loss, xd_err *e)
{
    const recipe *r = R->r;
    *loss = 0.0;
    for (int k = 0; k < R->n_models && n == 0; k++) nn_model_zero_grad(&R->models[k].m);
    if (n == 0) return XD_OK;
    /* every model's forward before any loss or update: a peer's targets are the other's
     * predictions of this very step */
    xd_status s = models_forward(R, n, epoch, e);
    if (s != XD_OK) return s;
    for (int t = 0; t < r->n_teachers; t++) {
        teacher_rt *tr = &R->teachers[t];
        if (!tr->used || tr->cached) continue;
        /* random crops and flips only when the student gets them too (same stream) */
        int aug = R->spatial || tr->f.kind == FEED_TEXT;
        if ((s = train_teacher_forward(R, tr, R->idx, n, aug, (uint64_t)epoch, e)) != XD_OK) return s;
    }
    /* every model's backward follows the losses: each writes its gradients whole */
    for (int k = 0; k < R->n_models; k++) nn_model_clear_grad(&R->models[k].m);
    nn_run nr = {.training = 1, .seed = R->models[0].seed, .step = (uint64_t)R->global_step,
                 .example = R->exb};
    *loss = apply_losses(R, n, &nr);
    for (int k = 0; k < R->n_models; k++) nn_model_backward(&R->models[k].m);
    return check_loss(R, stage, epoch, n, *loss, e);
}

/* Several ranks: every gradient a step applies becomes the sum over the ranks of each one's
 * gradient weighed by its share of the global batch, i.e. the gradient of the loss's mean over
 * the whole batch (dist.h: in rank order, the same bytes everywhere). */
static void sum_grads(train_run *R)
{
    for (int k = 0; k < R->n_models; k++)
        dist_sum_floats(R->models[k].m.grad, R->models[k].m.n_param, R->share);
    for (int l = 0; l < R->n_losses; l++) {
        loss_rt *lr = &R->losses[l];
        if (lr->has_proj && !lr->L->projector_frozen)
            dist_sum_floats(lr->proj.grad, lr->proj.n_param, R->share);
        if (lr->L->kind == RECIPE_LOSS_CONTRASTIVE && lr->L->learn_temperature)
            dist_sum_floats(lr->dtheta, 1, R->share);
        if (lr->zoo) train_zoo_sum_grads(lr, R->share);
    }
}

/* Several ranks: the models' state (batch-norm running statistics, moving ranges), which each
 * rank's forward moved with its own examples, becomes rank 0's on every rank, so that all ranks
 * hold one model. */
static void share_state(train_run *R)
{
    for (int k = 0; k < R->n_models; k++)
        dist_bcast_floats(R->models[k].m.state, R->models[k].m.n_state, 0);
    for (int l = 0; l < R->n_losses; l++)
        if (R->losses[l].has_proj)
            dist_bcast_floats(R->losses[l].proj.state, R->losses[l].proj.n_state, 0);
}

xd_status train_step(train_run *R, int stage, int epoch, int n, float lr, double *loss, xd_err *e)
{
    const recipe *r = R->r;
    xd_status s = dist_agree(local_step(R, stage, epoch, n, loss, e), e);
    if (s != XD_OK) return s;
    if (dist_size() > 1) sum_grads(R);
    for (int k = 0; k < R->n_models; k++) {
        model_rt *mk = &R->models[k];
        nn_opt_step(&mk->opt, mk->m.param, mk->m.grad, mk->segs, mk->m.n_segs, model_lr(R, k, lr));
        if (r->prune.sparsity > 0.0f) nn_prune_apply(&mk->m, &mk->opt);
    }
    if (dist_size() > 1) share_state(R);
    /* the same bytes on every rank: the same verdict, reported once */
    if ((s = dist_same(check_step(R, epoch, e))) != XD_OK) return s;
    for (int l = 0; l < R->n_losses; l++) {
        loss_rt *lr_ = &R->losses[l];
        if (lr_->has_proj && !lr_->L->projector_frozen)
            nn_opt_step(&lr_->popt, lr_->proj.param, lr_->proj.grad, lr_->proj.segs,
                        lr_->proj.n_segs, lr);
        if (lr_->L->kind == RECIPE_LOSS_CONTRASTIVE && lr_->L->learn_temperature) {
            nn_opt_step(&lr_->topt, lr_->theta, lr_->dtheta, NULL, 0, lr);
            align_clip_clamp_theta(lr_->theta);
        }
        if (lr_->zoo) train_zoo_after_step(lr_, lr);
        if (lr_->rat) train_rationale_after_step(lr_, lr);
    }
    for (int k = 0; k < R->n_models && n > 0; k++) count_train_correct(R, k, n);
    return XD_OK;
}
