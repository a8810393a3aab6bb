/* The trainer's side of teacher ensembles (see train_run.h, distill/ensemble.h): a kd / hinton
 * loss with `teachers:` gets each member's head and label map when its stage starts, and at every
 * step turns the members' outputs of the batch (computed, cached or averaged over languages, as
 * for any teacher) into one combined, detached target. */
#include "distill/train_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

xd_status train_setup_ensemble(train_run *R, loss_rt *l, const nn_node *sn, xd_err *e)
{
    const recipe_loss *L = l->L;
    const int B = R->r->train.batch, K = (int)sn->act_n, n = L->n_members;
    ensemble_rt *en = xd_xcalloc(1, sizeof *en);
    l->ens = en;
    en->n = n;
    en->node = xd_xmalloc(sizeof(int) * (size_t)n);
    en->lm = xd_xcalloc((size_t)n, sizeof *en->lm);
    en->mapped = xd_xcalloc((size_t)n, 1);
    en->m = xd_xcalloc((size_t)n, sizeof *en->m);
    en->fixed = xd_xmalloc(sizeof(float) * (size_t)n);
    en->rows = xd_xcalloc((size_t)n, sizeof *en->rows);
    int kt_max = 1;
    for (int m = 0; m < n; m++) {
        const recipe_member *rm = &L->members[m];
        teacher_rt *t = &R->teachers[rm->teacher];
        char from[RECIPE_MAX_NAME + 320];
        train_end_name(R, rm->teacher, -1, from, sizeof from);
        en->node[m] = L->teacher_head ? nn_model_find(&t->m, L->teacher_head)
                                      : nn_model_default_head(&t->m);
        if (en->node[m] < 0)
            return xd_fail(e, XD_EARG, "%s: %s has no node '%s'", l->where, from, L->teacher_head);
        const nn_node *tn = nn_model_node(&t->m, en->node[m]);
        const int kt = (int)tn->act_n;
        train_teacher_reads(R, t, en->node[m]);
        /* the names apply to the head they were stored for */
        const int32_t *by_name = en->node[m] == nn_model_default_head(&t->m) ? t->class_table : NULL;
        if (rm->label_map || rm->label_table || by_name) {
            char where[sizeof l->where + 32];
            snprintf(where, sizeof where, "%s: teachers.%d", l->where, m);
            xd_status s = train_label_map(R, where, rm->label_map, rm->label_table,
                                          rm->n_label_table, by_name, kt, K, &en->lm[m], e);
            if (s != XD_OK) return s;
            en->mapped[m] = 1;
        } else if (kt != K) {
            return xd_fail(e, XD_ESHAPE, "%s: the head '%s' of %s has %d outputs, the student's "
                                         "'%s' has %d (a label_map in its teachers entry maps one "
                                         "onto the other)", l->where, tn->name, from, kt,
                           sn->name, K);
        }
        en->m[m] = (ensemble_member){.kt = kt, .lm = en->mapped[m] ? &en->lm[m] : NULL};
        kt_max = kt > kt_max ? kt : kt_max;
        en->fixed[m] = rm->weight;
        if (t->cached) en->rows[m] = xd_xmalloc(sizeof(float) * (size_t)B * tn->act_n);
    }
    ensemble_buf_init(&en->buf, n, B, K, kt_max);
    return XD_OK;
}

void train_free_ensemble(loss_rt *l)
{
    ensemble_rt *en = l->ens;
    if (!en) return;
    for (int m = 0; m < en->n; m++) {
        if (en->mapped[m]) align_labelmap_free(&en->lm[m]);
        free(en->rows[m]);
    }
    ensemble_buf_free(&en->buf);
    free(en->node);
    free(en->lm);
    free(en->mapped);
    free(en->m);
    free(en->fixed);
    free(en->rows);
    free(en);
    l->ens = NULL;
}

void train_ensemble_target(train_run *R, loss_rt *l, int B)
{
    const recipe_loss *L = l->L;
    ensemble_rt *en = l->ens;
    for (int m = 0; m < en->n; m++) {
        const int ti = L->members[m].teacher;
        const float *out = train_teacher_out(R, ti, en->node[m], B);
        /* every cached teacher gathers its rows into one buffer: keep a copy of this one's */
        if (en->rows[m]) {
            memcpy(en->rows[m], out, sizeof(float) * (size_t)B * (size_t)en->m[m].kt);
            out = en->rows[m];
        }
        en->m[m].logits = out;
    }
    ensemble_target(l->c, en->m, B, L->temperature, L->combine, en->fixed, L->entropy_tau,
                    &en->buf);
}

int train_ensemble_blame(train_run *R, const loss_rt *l, int B, char *buf, size_t size)
{
    const ensemble_rt *en = l->ens;
    for (int m = 0; en && m < en->n; m++) {
        const int ti = l->L->members[m].teacher;
        const nn_node *tn = nn_model_node(&R->teachers[ti].m, en->node[m]);
        const float *out = train_teacher_out(R, ti, en->node[m], B);
        for (size_t i = 0; i < (size_t)B * tn->act_n; i++)
            if (!isfinite(out[i])) {
                snprintf(buf, size, "teacher '%s' (%s) gives a non-finite output at '%s'",
                         R->r->teachers[ti].name, R->r->teachers[ti].checkpoint, tn->name);
                return 1;
            }
    }
    return 0;
}
