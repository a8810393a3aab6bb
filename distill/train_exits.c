/* Early exits in a run (see train_run.h, exits.h): every exit of a model with several heads is
 * scored on the test split at each evaluation, each with only the layers it reads; its scores go
 * to metrics.jsonl, summary.json and the resume state. A model with one head adds nothing, so
 * other runs' files stay as they were. */
#include "distill/train_run.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void train_exits_setup(train_run *R)
{
    if (R->seg.on) return; /* a segment head is scored by mIoU, as the default head alone */
    for (int k = 0; k < R->n_models; k++) {
        const nn_model *m = &R->models[k].m;
        int *heads = xd_xmalloc(sizeof(int) * (size_t)m->n_nodes);
        const int n = nn_model_heads(m, heads);
        for (int i = 0; i < n && n > 1 && R->n_exits < EXITS_MAX; i++) {
            if (!R->exits) R->exits = xd_xcalloc(EXITS_MAX, sizeof *R->exits);
            train_exit *x = &R->exits[R->n_exits++];
            x->model = k;
            x->node = heads[i];
            const char *name = nn_model_node(m, heads[i])->name;
            if (R->n_models > 1)
                snprintf(x->key, sizeof x->key, "%s.%s", R->models[k].rm->name, name);
            else
                snprintf(x->key, sizeof x->key, "%s", name);
        }
        free(heads);
    }
}

void train_exits_free(train_run *R)
{
    free(R->exits);
    R->exits = NULL;
    R->n_exits = 0;
}

xd_status train_exits_evaluate(train_run *R, int k, xd_err *e)
{
    model_rt *mk = &R->models[k];
    for (int i = 0; i < R->n_exits; i++) {
        train_exit *x = &R->exits[i];
        if (x->model != k) continue;
        if (x->node == nn_model_default_head(&mk->m)) {
            x->acc = mk->acc; /* train_evaluate_test scored it */
        } else {
            xd_status s = trainer_evaluate(&mk->m, x->node, &mk->test, R->ytest, mk->eval_input,
                                           &x->acc, e);
            if (s != XD_OK) return s;
        }
    }
    return XD_OK;
}

void train_exits_metrics(const train_run *R, json_t *j, int evaluated)
{
    for (int i = 0; i < R->n_exits; i++) {
        char key[sizeof R->exits[i].key + 16];
        snprintf(key, sizeof key, "test_acc.%s", R->exits[i].key);
        json_object_set_new(j, key, evaluated ? json_real(R->exits[i].acc) : json_null());
    }
}

void train_exits_result(const train_run *R, train_result *res)
{
    res->n_exits = R->n_exits;
    for (int i = 0; i < R->n_exits; i++) {
        train_exit_result *x = &res->exits[i];
        snprintf(x->name, sizeof x->name, "%s", R->exits[i].key);
        x->final_acc = R->exits[i].acc;
    }
}

