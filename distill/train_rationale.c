/* A rationale loss (distilling step by step): a decoder (nn/seqdec.h) reads the student's tap and
 * learns, with teacher forcing, the rationale of every training example whose label the run
 * sees; its gradient flows into the tap, so the student's representation learns to hold what the
 * rationale says. The loss is the mean token cross-entropy, times the loss's weight (lambda in
 * L = L_label + lambda L_rationale).
 *
 * The vocabulary comes from those training rationales only (distill/rationale.h). At each
 * evaluation the decoder's token accuracy on the test rationales (teacher-forced, every non-pad
 * position, over every (example, language) pair a text.* view scores) goes to metrics.jsonl as
 * rationale_acc; the decoder is saved beside the student's checkpoints as
 * last.rationale.safetensors and best.rationale.safetensors (with the same epoch's student). */
#include "distill/train_run.h"

#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/mem.h"
#include "distill/rationale.h"

struct rationale_rt {
    nn_seqdec d;
    rat_vocab rv;
    int L;             /* tokens per row */
    int32_t *train;    /* (n_train, L) target rows */
    int32_t *test;     /* (n_test, L) target rows, or NULL when the test split has no rationales */
    size_t n_test;
    int32_t *yb;       /* (max_batch, L) the batch's rows */
    uint8_t *present;  /* (max_batch) */
    double acc;        /* the last evaluation's token accuracy */
};

/* The target rows of a split's rationales (n of them). */
static xd_status encode_split(rationale_rt *t, const io_strings *s, size_t n, int32_t *rows,
                              const char *where, const char *name, xd_err *e)
{
    int32_t *ids = xd_xmalloc(sizeof(int32_t) * (size_t)t->L);
    xd_status st = XD_OK;
    for (size_t i = 0; i < n && st == XD_OK; i++) {
        size_t len;
        int k;
        st = rat_encode(&t->rv, io_strings_get(s, i, &len), ids, t->L - 1, &k, e);
        if (st != XD_OK) xd_err_prefix(e, "%s: %s[%zu]", where, name, i);
        else nn_seqdec_target(ids, k, t->L, rows + i * (size_t)t->L);
    }
    free(ids);
    return st;
}

xd_status train_rationale_setup(train_run *R, loss_rt *l, int stage, int i, xd_err *e)
{
    const recipe *r = R->r;
    const recipe_loss *L = l->L;
    nn_model *sm = &R->models[L->model].m;
    l->t_node = -1;
    /* its token mean is over each rank's own rationale tokens, not the global batch's, and its
     * decoder's gradients are not summed: not (yet) a data-parallel loss */
    if (dist_size() > 1)
        return xd_fail(e, XD_EUNSUPPORTED, "%s: the rationale loss runs in one process; it does "
                                           "not run over %d ranks of mpirun", l->where, dist_size());
    l->s_node = nn_model_find(sm, L->student_tap);
    if (l->s_node < 0)
        return xd_fail(e, XD_EARG, "%s: the student has no node '%s'", l->where, L->student_tap);
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/rationale", r->data.train);
    const io_strings *tr = io_dataset_find_strings(R->ds, name);
    if (!tr || tr->n != R->n_train)
        return xd_fail(e, XD_EFORMAT, "%s: %s has no %s for its %zu training examples (prepare "
                                      "rationales, or prepare emoji --rationales, makes one)",
                       l->where, io_dataset_path(R->ds), name, R->n_train);
    rationale_rt *t = l->rat = xd_xcalloc(1, sizeof *t);
    t->L = L->max_len;
    /* the words of the rationales the run may see: labelled, not held out for validation */
    const char **texts = xd_xmalloc((R->n_train + 1) * sizeof *texts);
    uint8_t *use = xd_xmalloc(R->n_train + 1);
    for (size_t j = 0; j < R->n_train; j++) {
        size_t len;
        texts[j] = io_strings_get(tr, j, &len);
        use[j] = xd_bit(R->sel, j) && !(R->held && xd_bit(R->held, j));
    }
    xd_status s = rat_vocab_build(texts, R->n_train, use, L->max_words, &t->rv, e);
    free(texts);
    free(use);
    if (s != XD_OK) return xd_err_prefix(e, "%s: %s", l->where, name);
    t->train = xd_xmalloc(sizeof(int32_t) * R->n_train * (size_t)t->L + 1);
    if ((s = encode_split(t, tr, R->n_train, t->train, l->where, name, e)) != XD_OK) return s;
    snprintf(name, sizeof name, "%s/rationale", r->data.test);
    const io_strings *te = io_dataset_find_strings(R->ds, name);
    const model_rt *mk = &R->models[L->model];
    if (te && te->n == mk->test.n) {
        t->n_test = te->n;
        t->test = xd_xmalloc(sizeof(int32_t) * t->n_test * (size_t)t->L + 1);
        if ((s = encode_split(t, te, t->n_test, t->test, l->where, name, e)) != XD_OK) return s;
    }
    const nn_node *sn = nn_model_node(sm, l->s_node);
    s = nn_seqdec_init(&t->d, (int)sn->act_n, L->hidden, L->embed, rat_vocab_size(&t->rv), t->L,
                       sm->max_batch, (uint64_t)R->seed * 1000003u + 7919u * (uint64_t)(stage * 64 + i),
                       e);
    if (s != XD_OK) return xd_err_prefix(e, "%s", l->where);
    t->yb = xd_xmalloc(sizeof(int32_t) * (size_t)sm->max_batch * (size_t)t->L);
    t->present = xd_xmalloc((size_t)sm->max_batch);
    nn_opt_config oc = r->train.opt;
    return nn_opt_init(&l->popt, &oc, t->d.n_param, e);
}

void train_rationale_free(loss_rt *l)
{
    rationale_rt *t = l->rat;
    if (!t) return;
    nn_seqdec_free(&t->d);
    rat_vocab_free(&t->rv);
    free(t->train);
    free(t->test);
    free(t->yb);
    free(t->present);
    free(t);
    l->rat = NULL;
}

double train_rationale_apply(train_run *R, loss_rt *l, int B, float w)
{
    rationale_rt *t = l->rat;
    nn_model *sm = &R->models[l->L->model].m;
    const size_t L = (size_t)t->L;
    /* the rationale of an example counts where its label does */
    for (int b = 0; b < B; b++)
        if (R->mb[b]) memcpy(t->yb + b * L, t->train + R->idx[b] * L, L * sizeof(int32_t));
        else nn_seqdec_target(NULL, -1, t->L, t->yb + b * L);
    memset(t->d.grad, 0, t->d.n_param * sizeof(float));
    const double v = nn_seqdec_forward(&t->d, nn_model_out(sm, l->s_node), t->yb, B, NULL, NULL);
    nn_seqdec_backward(&t->d, nn_model_dout(sm, l->s_node), w);
    return v;
}

void train_rationale_after_step(loss_rt *l, float lr)
{
    rationale_rt *t = l->rat;
    nn_opt_step(&l->popt, t->d.param, t->d.grad, t->d.segs, NN_SEQ_TENSORS, lr);
}

float *train_rationale_params(loss_rt *l, size_t *n)
{
    *n = l->rat->d.n_param;
    return l->rat->d.param;
}

/* The decoder's token accuracy on the test rationales, the student in eval mode. */
static xd_status test_accuracy(train_run *R, loss_rt *l, double *acc, xd_err *e)
{
    rationale_rt *t = l->rat;
    model_rt *mk = &R->models[l->L->model];
    nn_model *m = &mk->m;
    feed *f = &mk->test;
    const int B = m->max_batch, multi = f->kind == FEED_TEXT && f->n_langs > 1;
    const size_t L = (size_t)t->L;
    uint32_t *idx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
    long right = 0, count = 0;
    xd_status s = XD_OK;
    for (size_t i0 = 0; i0 < t->n_test && s == XD_OK; i0 += (size_t)B) {
        const int n = t->n_test - i0 < (size_t)B ? (int)(t->n_test - i0) : B;
        for (int b = 0; b < n; b++) idx[b] = (uint32_t)(i0 + (size_t)b);
        for (int lang = 0; lang < (multi ? f->n_langs : 1) && s == XD_OK; lang++) {
            if (multi) {
                s = feed_fill_lang(f, idx, n, lang, mk->eval_input, t->present, e);
            } else {
                s = feed_fill(f, idx, n, 0, 0, 0, mk->eval_input, e);
                memset(t->present, 1, (size_t)n);
            }
            if (s != XD_OK) break;
            nn_model_forward(m, mk->eval_input, n, NULL);
            for (int b = 0; b < n; b++)
                if (t->present[b]) memcpy(t->yb + b * L, t->test + idx[b] * L, L * sizeof(int32_t));
                else nn_seqdec_target(NULL, -1, t->L, t->yb + b * L);
            int c, k;
            nn_seqdec_forward(&t->d, nn_model_out(m, l->s_node), t->yb, n, &c, &k);
            right += c;
            count += k;
        }
    }
    free(idx);
    *acc = count ? (double)right / (double)count : 0.0;
    return s;
}

xd_status train_rationale_epoch(train_run *R, int epoch, int evaluated, json_t *j, xd_err *e)
{
    for (int i = 0; i < R->n_losses; i++) {
        loss_rt *l = &R->losses[i];
        rationale_rt *t = l->rat;
        if (!t) continue;
        xd_status s;
        const int scored = evaluated && t->test;
        if (scored && (s = test_accuracy(R, l, &t->acc, e)) != XD_OK) return s;
        json_object_set_new(j, "rationale_acc", scored ? json_real(t->acc) : json_null());
        const model_rt *mk = &R->models[l->L->model];
        const char *files[2] = {"last.rationale.safetensors", "best.rationale.safetensors"};
        for (int k = 0; k < 2; k++) {
            if (k == 1 && mk->best_epoch != epoch + 1) continue; /* the student's best is older */
            char *path = train_path(R, files[k]);
            s = rat_save(path, &t->d, &t->rv, l->L->student_tap, e);
            free(path);
            if (s != XD_OK) return s;
        }
    }
    return XD_OK;
}
