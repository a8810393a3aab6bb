/* The standard methods in a run (see train_run.h): the set-up of a dkd, rkd, sp, pkt, cc, nst,
 * fsp, vid, crd, ab or ofd loss (its nodes and their shapes, projectors, learned parts, CRD's
 * memory bank), its forward and backward in a step, the optimizer steps of its learned parts and
 * its share of the resume state. The losses themselves are distill/zoo.h and distill/crd.h.
 *
 * Each loss computes its value and its gradient in one call (the zoo's backward returns the
 * loss), so nothing is computed twice. The from end of these losses is always detached (the
 * recipe checks it). */
#include "distill/train_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/mem.h"
#include "core/rng.h"
#include "distill/crd.h"
#include "distill/zoo.h"
#include "nn/loss.h"

struct zoo_rt {
    int s_nodes[2], t_nodes[2]; /* fsp: the student's and the teacher's two maps */
    int Ds, Dt;                 /* values per example of the two taps */
    int HW, Cs, Ct;             /* positions and channels of map taps (Cs after a projector) */
    double *work;               /* rkd, sp, pkt, nst, fsp scratch; crd's save buffer */
    /* vid: the per-channel variance's parameter, its gradient and optimizer */
    float *log_scale, *dlog_scale;
    nn_optimizer lopt;
    /* ofd: the margin of each teacher channel */
    float *margin;
    /* crd: the teacher's embedding head (the student's is the loss's projector), its optimizer,
     * the memory bank, the drawn bank rows and the batch's example indices */
    nn_model thead;
    nn_optimizer thopt;
    kd_crd_bank bank;
    int32_t *idx, *ex;
    /* dkd: each example's target class, its label or, unlabelled, the teacher's top class */
    int32_t *target;
};

int train_zoo_kind(recipe_loss_kind k)
{
    return k >= RECIPE_LOSS_DKD && k < RECIPE_LOSS_COUNT;
}

/* Methods that compare maps position by position (spatial sizes must match). */
static int zoo_spatial(recipe_loss_kind k)
{
    return k == RECIPE_LOSS_NST || k == RECIPE_LOSS_VID || k == RECIPE_LOSS_AB ||
           k == RECIPE_LOSS_OFD || k == RECIPE_LOSS_FSP;
}

/* A linear head on the student's (or the teacher's) tap: over the channels of a map at each
 * position (flat = 0), or over the flattened values (flat = 1); its optimizer is the run's. */
static xd_status build_head(train_run *R, nn_model *m, nn_optimizer *o, const nn_node *in,
                            int flat, int out, uint64_t seed, int input_grad, xd_err *e)
{
    char desc[256];
    if (flat)
        snprintf(desc, sizeof desc, "input h=1 w=1 c=%zu; linear out=%d name=proj head", in->act_n,
                 out);
    else
        snprintf(desc, sizeof desc, "input h=%d w=%d c=%d; linear out=%d name=proj head", in->h,
                 in->w, in->c, out);
    xd_status s = nn_model_build(m, desc, R->r->train.batch, seed, e);
    if (s != XD_OK) return s;
    if (input_grad) nn_model_enable_input_grad(m);
    nn_opt_config c = R->r->train.opt;
    return nn_opt_init(o, &c, m->n_param, e);
}

/* Node `name` of the from end, which must exist; for a teacher that averages its languages, room
 * for its averaged output. */
static xd_status from_node(train_run *R, loss_rt *l, const char *name, int *node, xd_err *e)
{
    const recipe_loss *L = l->L;
    nn_model *fm = train_from_net(R, L);
    char from[RECIPE_MAX_NAME + 320];
    *node = nn_model_find(fm, name);
    if (*node < 0)
        return xd_fail(e, XD_EARG, "%s: %s has no node '%s'", l->where,
                       train_end_name(R, L->teacher, L->from_model, from, sizeof from), name);
    teacher_rt *t = L->teacher >= 0 ? &R->teachers[L->teacher] : NULL;
    if (t) train_teacher_reads(R, t, *node);
    return XD_OK;
}

static const float *from_node_out(train_run *R, const loss_rt *l, int node, int B)
{
    const recipe_loss *L = l->L;
    if (L->from_model >= 0) return nn_model_out(&R->models[L->from_model].m, node);
    return train_teacher_out(R, L->teacher, node, B);
}

static xd_status bad_shape(const loss_rt *l, const nn_node *sn, const nn_node *tn,
                           const char *why, xd_err *e)
{
    return xd_fail(e, XD_ESHAPE, "%s: student tap '%s' is %dx%dx%d, teacher tap '%s' %dx%dx%d: %s",
                   l->where, sn->name, sn->h, sn->w, sn->c, tn->name, tn->h, tn->w, tn->c, why);
}

static int is_map(const nn_node *n)
{
    return n->h * n->w > 0 && (size_t)n->h * n->w * n->c == n->act_n;
}

/* fsp: the two maps of each side at one spatial size, the same channels on both sides. */
static xd_status setup_fsp(train_run *R, loss_rt *l, zoo_rt *z, xd_err *e)
{
    const recipe_loss *L = l->L;
    nn_model *sm = &R->models[L->model].m, *fm = train_from_net(R, L);
    const nn_node *n[4];
    for (int k = 0; k < 2; k++) {
        z->s_nodes[k] = nn_model_find(sm, L->student_taps[k]);
        if (z->s_nodes[k] < 0)
            return xd_fail(e, XD_EARG, "%s: the student has no node '%s'", l->where,
                           L->student_taps[k]);
        xd_status s = from_node(R, l, L->teacher_taps[k], &z->t_nodes[k], e);
        if (s != XD_OK) return s;
        n[k] = nn_model_node(sm, z->s_nodes[k]);
        n[2 + k] = nn_model_node(fm, z->t_nodes[k]);
    }
    for (int k = 0; k < 4; k++)
        if (!is_map(n[k]) || n[k]->h != n[0]->h || n[k]->w != n[0]->w)
            return xd_fail(e, XD_ESHAPE, "%s: student_taps '%s' %dx%dx%d and '%s' %dx%dx%d, "
                                         "teacher_taps '%s' %dx%dx%d and '%s' %dx%dx%d: fsp needs "
                                         "four maps of one spatial size",
                           l->where, n[0]->name, n[0]->h, n[0]->w, n[0]->c, n[1]->name, n[1]->h,
                           n[1]->w, n[1]->c, n[2]->name, n[2]->h, n[2]->w, n[2]->c, n[3]->name,
                           n[3]->h, n[3]->w, n[3]->c);
    if (n[0]->c != n[2]->c || n[1]->c != n[3]->c)
        return xd_fail(e, XD_ESHAPE, "%s: the student's maps have %d and %d channels, the "
                                     "teacher's %d and %d: fsp compares Gram matrices of the same "
                                     "size", l->where, n[0]->c, n[1]->c, n[2]->c, n[3]->c);
    z->HW = n[0]->h * n[0]->w;
    z->Cs = n[0]->c;
    z->Ct = n[1]->c;
    z->work = xd_xmalloc(sizeof(double) * kd_fsp_work_len(z->HW, z->Cs, z->Ct));
    return XD_OK;
}

/* crd: the embedding heads on both sides and the bank over the training examples. */
static xd_status setup_crd(train_run *R, loss_rt *l, zoo_rt *z, const nn_node *sn,
                           const nn_node *tn, uint64_t seed, xd_err *e)
{
    const recipe_loss *L = l->L;
    const int B = R->r->train.batch, F = L->embed_dim;
    /* each rank would move its own bank with its own share of the batch: the ranks would hold
     * different banks, and a resumed run another one */
    if (dist_size() > 1)
        return xd_fail(e, XD_EUNSUPPORTED, "%s: crd's memory bank follows every batch in one "
                                           "process; it does not run over %d ranks of mpirun",
                       l->where, dist_size());
    if (R->n_train < 2)
        return xd_fail(e, XD_EARG, "%s: crd draws its negatives from the other training "
                                   "examples, and the training split has %zu", l->where,
                       R->n_train);
    int k = L->negatives;
    if ((size_t)k > R->n_train - 1) {
        k = (int)(R->n_train - 1);
        if (!R->o->quiet)
            fprintf(R->log, "note: %s: negatives %d clamped to %d (the training examples - 1)\n",
                    l->where, L->negatives, k);
    }
    xd_status s = build_head(R, &l->proj, &l->popt, sn, 1, F, seed, 1, e);
    if (s != XD_OK) return s;
    l->has_proj = 1;
    if ((s = build_head(R, &z->thead, &z->thopt, tn, 1, F, seed + 1, 0, e)) != XD_OK) return s;
    s = kd_crd_bank_init(&z->bank, (int)R->n_train, F, k, L->temperature, L->momentum,
                         (uint64_t)R->seed, e);
    if (s != XD_OK) return xd_err_prefix(e, "%s", l->where);
    z->work = xd_xmalloc(sizeof(double) * kd_crd_save_len(B, F, k));
    z->idx = xd_xmalloc(sizeof(int32_t) * (size_t)B * (size_t)(k + 1));
    z->ex = xd_xmalloc(sizeof(int32_t) * (size_t)B);
    return XD_OK;
}

xd_status train_zoo_setup(train_run *R, loss_rt *l, int stage, int i, xd_err *e)
{
    const recipe_loss *L = l->L;
    const int B = R->r->train.batch;
    zoo_rt *z = l->zoo = xd_xcalloc(1, sizeof *z);
    const uint64_t seed = (uint64_t)R->seed * 1000003u + 7919u * (uint64_t)(stage * 64 + i);
    nn_model *sm = &R->models[L->model].m;
    char to[RECIPE_MAX_NAME + 32];
    train_end_name(R, -1, L->model, to, sizeof to);
    if (L->kind == RECIPE_LOSS_FSP) return setup_fsp(R, l, z, e);
    const int logit = L->kind == RECIPE_LOSS_DKD;
    const char *sname = logit ? L->head : L->student_tap;
    l->s_node = sname ? nn_model_find(sm, sname) : nn_model_default_head(sm);
    if (l->s_node < 0) return xd_fail(e, XD_EARG, "%s: %s has no node '%s'", l->where, to, sname);
    nn_model *fm = train_from_net(R, L);
    const char *tname = logit ? L->teacher_head : L->student_tap ? L->teacher_tap : NULL;
    xd_status s;
    if (tname) {
        if ((s = from_node(R, l, tname, &l->t_node, e)) != XD_OK) return s;
    } else {
        l->t_node = nn_model_default_head(fm);
    }
    const nn_node *sn = nn_model_node(sm, l->s_node), *tn = nn_model_node(fm, l->t_node);
    z->Ds = (int)sn->act_n;
    z->Dt = (int)tn->act_n;
    if (logit) {
        if (sn->act_n != tn->act_n || (int)sn->act_n != R->n_classes)
            return xd_fail(e, XD_ESHAPE, "%s: dkd compares heads over the %d classes; the "
                                         "student's '%s' has %zu outputs, the teacher's '%s' %zu",
                           l->where, R->n_classes, sn->name, sn->act_n, tn->name, tn->act_n);
        z->target = xd_xmalloc(sizeof(int32_t) * (size_t)B);
        return XD_OK;
    }
    if (zoo_spatial(L->kind)) {
        if (!is_map(sn) || !is_map(tn)) return bad_shape(l, sn, tn, "both must be feature maps", e);
        if (sn->h != tn->h || sn->w != tn->w)
            return bad_shape(l, sn, tn, "the spatial sizes must match", e);
        z->HW = sn->h * sn->w;
        z->Cs = sn->c;
        z->Ct = tn->c;
    }
    if (L->kind == RECIPE_LOSS_AB || L->kind == RECIPE_LOSS_OFD) {
        /* the margins read the sign of the teacher's values: after a ReLU every value is >= 0 */
        if (tn->kind != NN_CONV2D && tn->kind != NN_LINEAR && tn->kind != NN_BATCHNORM &&
            tn->kind != NN_ADD)
            return xd_fail(e, XD_EARG, "%s: teacher tap '%s' is a %s node; %s reads the values "
                                       "before the ReLU (a conv2d, linear, batchnorm or add node)",
                           l->where, tn->name, nn_kind_name(tn->kind),
                           recipe_loss_kind_names[L->kind]);
    }
    /* the student side's projector: cc's when the widths differ, vid's regressor, the connector
     * of ab and ofd (auto is linear for those three) */
    if (L->kind == RECIPE_LOSS_CC || L->kind == RECIPE_LOSS_VID || L->kind == RECIPE_LOSS_AB ||
        L->kind == RECIPE_LOSS_OFD) {
        const int flat = L->kind == RECIPE_LOSS_CC;
        const int sw = flat ? z->Ds : sn->c, tw = flat ? z->Dt : tn->c;
        const int want = L->projector != RECIPE_PROJ_NONE &&
                         (L->kind != RECIPE_LOSS_CC || L->projector != RECIPE_PROJ_AUTO || sw != tw);
        if (L->projector == RECIPE_PROJ_MLP)
            return xd_fail(e, XD_EARG, "%s: %s takes a linear or conv1x1 projector", l->where,
                           recipe_loss_kind_names[L->kind]);
        if (!want && sw != tw)
            return xd_fail(e, XD_ESHAPE, "%s: widths differ (%d vs %d) and projector is none",
                           l->where, sw, tw);
        if (want) {
            if ((s = build_head(R, &l->proj, &l->popt, sn, flat, tw, seed, 1, e)) != XD_OK)
                return s;
            l->has_proj = 1;
        }
        z->Cs = tw;
    }
    switch (L->kind) {
    case RECIPE_LOSS_RKD:
        z->work = xd_xmalloc(sizeof(double) * kd_rkd_work_len(B, z->Ds, z->Dt));
        break;
    case RECIPE_LOSS_SP:
        z->work = xd_xmalloc(sizeof(double) * kd_sp_work_len(B, z->Ds, z->Dt));
        break;
    case RECIPE_LOSS_PKT:
        z->work = xd_xmalloc(sizeof(double) * kd_pkt_work_len(B, z->Ds, z->Dt));
        break;
    case RECIPE_LOSS_NST:
        z->work = xd_xmalloc(sizeof(double) * kd_nst_work_len(z->HW, z->Cs, z->Ct));
        break;
    case RECIPE_LOSS_VID: {
        z->log_scale = xd_xmalloc(sizeof(float) * (size_t)z->Ct);
        z->dlog_scale = xd_xcalloc((size_t)z->Ct, sizeof(float));
        kd_vid_init(z->log_scale, z->Ct, L->init_var);
        nn_opt_config c = R->r->train.opt;
        c.weight_decay = 0.0f; /* a variance has no prior towards 0 */
        if ((s = nn_opt_init(&z->lopt, &c, (size_t)z->Ct, e)) != XD_OK) return s;
        break;
    }
    case RECIPE_LOSS_OFD:
        z->margin = xd_xmalloc(sizeof(float) * (size_t)z->Ct);
        break;
    case RECIPE_LOSS_CRD:
        return setup_crd(R, l, z, sn, tn, seed, e);
    default:
        break;
    }
    return XD_OK;
}

/* The student's values the loss reads (through its projector when it has one), and where their
 * gradient goes. */
static float *student_side(loss_rt *l, float *s, int B, const nn_run *nr, float **ds,
                           float *s_dout)
{
    if (!l->has_proj) {
        *ds = s_dout;
        return s;
    }
    nn_model_forward(&l->proj, s, B, nr);
    nn_model_zero_grad(&l->proj);
    const int ph = nn_model_default_head(&l->proj);
    *ds = nn_model_dout(&l->proj, ph);
    return nn_model_out(&l->proj, ph);
}

double train_zoo_apply(train_run *R, loss_rt *l, int B, const nn_run *nr)
{
    const recipe_loss *L = l->L;
    zoo_rt *z = l->zoo;
    nn_model *sm = &R->models[L->model].m;
    const float w = L->weight;
    if (L->kind == RECIPE_LOSS_FSP) {
        const float *t1 = from_node_out(R, l, z->t_nodes[0], B),
                    *t2 = from_node_out(R, l, z->t_nodes[1], B);
        return kd_fsp_backward(nn_model_dout(sm, z->s_nodes[0]), nn_model_dout(sm, z->s_nodes[1]),
                               z->work, nn_model_out(sm, z->s_nodes[0]),
                               nn_model_out(sm, z->s_nodes[1]), t1, t2, B, z->HW, z->Cs, z->Ct, w);
    }
    float *s_dout = nn_model_dout(sm, l->s_node), *ds;
    const float *t = from_node_out(R, l, l->t_node, B);
    float *x = student_side(l, nn_model_out(sm, l->s_node), B, nr, &ds, s_dout);
    double v = 0.0;
    switch (L->kind) {
    case RECIPE_LOSS_DKD:
        /* every example, as KD: an unlabelled one is split around the teacher's top class */
        for (int b = 0; b < B; b++)
            z->target[b] = R->mb[b] ? R->yb[b] : nn_argmax(t + (size_t)b * z->Ds, z->Ds);
        v = kd_dkd_backward(ds, x, t, z->target, NULL, B, z->Ds, L->temperature, L->alpha,
                            L->beta, w);
        break;
    case RECIPE_LOSS_RKD:
        v = kd_rkd_backward(ds, z->work, x, t, B, z->Ds, z->Dt, L->distance_weight,
                            L->angle_weight, w);
        break;
    case RECIPE_LOSS_SP: v = kd_sp_backward(ds, z->work, x, t, B, z->Ds, z->Dt, w); break;
    case RECIPE_LOSS_PKT: v = kd_pkt_backward(ds, z->work, x, t, B, z->Ds, z->Dt, w); break;
    case RECIPE_LOSS_CC: v = kd_cc_backward(ds, x, t, B, z->Dt, w); break;
    case RECIPE_LOSS_NST:
        v = kd_nst_backward(ds, z->work, x, t, B, z->HW, z->Cs, z->Ct, w);
        break;
    case RECIPE_LOSS_VID:
        memset(z->dlog_scale, 0, sizeof(float) * (size_t)z->Ct);
        v = kd_vid_backward(ds, z->dlog_scale, x, t, z->log_scale, (int64_t)B * z->HW, z->Ct, w);
        break;
    case RECIPE_LOSS_AB:
        v = kd_ab_backward(ds, x, t, B, (int64_t)z->HW * z->Ct, L->margin, w);
        break;
    case RECIPE_LOSS_OFD:
        /* the margins from this batch's teacher values (zoo.h: kd_ofd_margin) */
        kd_ofd_margin(z->margin, t, (int64_t)B * z->HW, z->Ct);
        v = kd_ofd_backward(ds, x, t, z->margin, B, z->HW, z->Ct, w);
        break;
    case RECIPE_LOSS_CRD: {
        for (int b = 0; b < B; b++) z->ex[b] = (int32_t)R->idx[b];
        /* the negatives of a step come from (seed, step): a resumed run draws the same */
        xd_rng rng = xd_rng_make((uint64_t)R->seed, 2u + (uint64_t)R->global_step, XD_RNG_BANK);
        kd_crd_sample(z->idx, z->ex, B, &z->bank, &rng);
        nn_model_forward(&z->thead, t, B, nr);
        nn_model_zero_grad(&z->thead);
        const int th = nn_model_default_head(&z->thead);
        const float *et = nn_model_out(&z->thead, th);
        v = kd_crd_forward(z->work, &z->bank, x, et, z->idx, B);
        kd_crd_backward(ds, nn_model_dout(&z->thead, th), z->work, &z->bank, z->idx, B, w);
        nn_model_backward(&z->thead);
        /* the bank moves towards this batch's embeddings (computed before the update) */
        kd_crd_bank_update(&z->bank, z->work, z->ex, B);
        break;
    }
    default:
        XD_ASSERT(0);
    }
    if (l->has_proj) {
        nn_model_backward(&l->proj);
        nn_add_inplace(s_dout, nn_model_dinput(&l->proj),
                       (size_t)B * nn_model_node(sm, l->s_node)->act_n);
    }
    return v;
}

void train_zoo_sum_grads(loss_rt *l, float share)
{
    zoo_rt *z = l->zoo;
    if (z->log_scale) dist_sum_floats(z->dlog_scale, (size_t)z->Ct, share);
    if (z->thead.n_param) dist_sum_floats(z->thead.grad, z->thead.n_param, share);
}

void train_zoo_after_step(loss_rt *l, float lr)
{
    zoo_rt *z = l->zoo;
    if (z->log_scale) nn_opt_step(&z->lopt, z->log_scale, z->dlog_scale, NULL, 0, lr);
    if (z->thead.n_param)
        nn_opt_step(&z->thopt, z->thead.param, z->thead.grad, z->thead.segs, z->thead.n_segs, lr);
}

/* A learned part's values and its optimizer's moments as "lossI.WHAT", ".m", ".v". */
static int part_tensors(int i, const char *what, const float *v, const nn_optimizer *o, size_t n,
                        io_tensor *t, char names[][64])
{
    const float *data[3] = {v, o->m, o->v};
    static const char *const suffix[3] = {"", ".m", ".v"};
    const int64_t shp[1] = {(int64_t)n};
    int k = 0;
    for (int j = 0; j < 3; j++) {
        if (!data[j]) continue;
        snprintf(names[k], 64, "loss%d.%s%s", i, what, suffix[j]);
        io_tensor_set(&t[k], names[k], IO_F32, 1, shp, data[j]);
        k++;
    }
    return k;
}

int train_zoo_tensors(loss_rt *l, int i, io_tensor *t, char names[][64])
{
    zoo_rt *z = l->zoo;
    int n = 0;
    if (z->log_scale)
        n += part_tensors(i, "log_scale", z->log_scale, &z->lopt, (size_t)z->Ct, t, names);
    if (z->thead.n_param) {
        n += part_tensors(i, "teacher_head", z->thead.param, &z->thopt, z->thead.n_param, t + n,
                          names + n);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "loss%d.bank", i);
        kd_crd_bank_tensors(&z->bank, prefix, t + n, names + n);
        n += KD_CRD_TENSORS;
    }
    return n;
}

void train_zoo_set_step(loss_rt *l, long step)
{
    l->zoo->lopt.step = step;
    l->zoo->thopt.step = step;
}

void train_zoo_free(loss_rt *l)
{
    zoo_rt *z = l->zoo;
    if (!z) return;
    free(z->work);
    free(z->log_scale);
    free(z->dlog_scale);
    nn_opt_free(&z->lopt);
    free(z->margin);
    nn_model_free(&z->thead);
    nn_opt_free(&z->thopt);
    kd_crd_bank_free(&z->bank);
    free(z->idx);
    free(z->ex);
    free(z->target);
    free(z);
    l->zoo = NULL;
}
