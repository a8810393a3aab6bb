/* The validation split of a run and the further data sets scored with it (see train_run.h).
 *
 * data.val_fraction holds a share of the training examples out of training: per class, from the
 * examples whose label the run may see (after label_mask, label_fraction, labels_per_class), so a
 * low-label run chooses its best checkpoint with labels it was allowed, and its validation labels
 * come out of that budget (labels_hold_out). No step sees a held-out example, not even through a
 * teacher. data.val names a split of the data set instead; its labels are all read (those its
 * label_mask marks 0 excepted), apart from the run's label budget.
 *
 * data.eval_sets are other data sets with the run's label set: their classes are matched onto the
 * run's by name when both name them (labels_match_names), else their labels must be among the
 * run's classes. */
#include "distill/train_run.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "distill/labels.h"

/* The validation examples: held out of the training split, or the examples of data.val its
 * label_mask keeps. */
static xd_status setup_val_examples(train_run *R, xd_err *e)
{
    const recipe_data *d = &R->r->data;
    xd_status s;
    if (d->val_fraction > 0.0f) {
        R->held = xd_bits_new(R->n_train);
        s = labels_hold_out(R->ytrain, R->sel, R->n_train, R->n_classes, d->val_fraction,
                            (uint64_t)R->seed, R->held, &R->n_held, e);
        if (s != XD_OK) return xd_err_prefix(e, "%s", d->path);
        if (R->n_held == 0)
            return xd_fail(e, XD_EARG, "%s: data.val_fraction %g holds out no example: no class has "
                                       "two training examples whose label the run may see",
                           d->path, (double)d->val_fraction);
        R->n_sel -= R->n_held;
        R->val = (ex_set){.n = R->n_train, .bits = R->held, .members = R->n_held};
        R->yval = R->ytrain;
        R->val_masks = R->seg.on ? R->seg.train_mask : NULL;
    } else if (d->val) {
        const size_t n = R->models[0].val.n;
        if ((s = train_open_labels(R, d->val, &R->yval, n, e)) != XD_OK) return s;
        char mname[IO_DATASET_NAME_MAX + 1];
        snprintf(mname, sizeof mname, "%s/label_mask", d->val);
        const io_tensor *mt = io_dataset_find(R->ds, mname);
        if (mt && (mt->dtype != IO_U8 || mt->ndim != 1 || (size_t)mt->shape[0] != n))
            return xd_fail(e, XD_EFORMAT, "%s: %s is not u8 (%zu)", io_dataset_path(R->ds), mname, n);
        const uint8_t *known = mt ? mt->data : NULL;
        R->val = (ex_set){.n = n, .mask = known};
        for (size_t i = 0; i < n; i++) R->val.members += !known || known[i];
        if (R->val.members == 0)
            return xd_fail(e, XD_EARG, "%s: validation split '%s' has no labelled example",
                           io_dataset_path(R->ds), d->val);
        if (R->seg.on) {
            int n_classes;
            if ((s = seg_masks(R->ds, d->val, n, R->seg.H, R->seg.W, &R->val_masks, &n_classes,
                               e)) != XD_OK)
                return s;
        }
    }
    R->has_val = R->val.members > 0;
    return XD_OK;
}

/* Eval set i: its data set, its labels as the run's classes, each model's view of it. */
static xd_status setup_eval_set(train_run *R, int i, const char *const *run_names, xd_err *e)
{
    const recipe *r = R->r;
    const recipe_eval_set *es = &r->data.eval_sets[i];
    xd_status s = io_dataset_open_verified(es->path, &R->eval_ds[i], e);
    if (s != XD_OK) return xd_err_prefix(e, "data.eval_sets.%d (%s)", i, es->name);
    io_dataset *ds = R->eval_ds[i];
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/%s", es->split, r->data.label);
    const io_tensor *t;
    if ((s = io_dataset_require(ds, name, IO_I32, 1, &t, e)) != XD_OK) return s;
    const size_t n = (size_t)t->shape[0];
    const int32_t *y = t->data;
    /* the set's class k is the run's class map[k] */
    const io_strings *cls = labels_class_table(ds, r->data.label);
    const size_t k_set = cls ? cls->n : (size_t)R->n_classes;
    int32_t *map = xd_xmalloc(sizeof(int32_t) * (k_set ? k_set : 1));
    for (size_t k = 0; k < k_set; k++) map[k] = (int32_t)k;
    if (cls && run_names) {
        const char **names = labels_table_names(cls);
        char what[512], what_run[512];
        snprintf(what, sizeof what, "%s: %s", es->path, cls->name);
        snprintf(what_run, sizeof what_run, "the classes of %s", r->data.path);
        s = labels_match_names(names, cls->n, what, run_names, (size_t)R->n_classes, what_run,
                               map, NULL, e);
        free(names);
    } else if (k_set > (size_t)R->n_classes) {
        s = xd_fail(e, XD_ESHAPE, "%s: %s has %zu classes, the run's data set %s %d", es->path,
                    cls ? cls->name : name, k_set, r->data.path, R->n_classes);
    }
    R->eval_y[i] = xd_xmalloc(sizeof(int32_t) * (n ? n : 1));
    for (size_t j = 0; j < n && s == XD_OK; j++) {
        if (y[j] < 0 || (size_t)y[j] >= k_set)
            s = xd_fail(e, XD_EFORMAT, "%s: %s[%zu] = %d, outside its %zu classes", es->path, name,
                        j, y[j], k_set);
        else
            R->eval_y[i][j] = map[y[j]];
    }
    free(map);
    for (int k = 0; k < R->n_models && s == XD_OK; k++) {
        model_rt *mk = &R->models[k];
        s = models_open_feed(mk, r, ds, es->split, &mk->eval_feeds[i], e);
        if (s == XD_OK && mk->eval_feeds[i].n != n)
            s = xd_fail(e, XD_EFORMAT, "%s: %s has %zu labels for %zu examples", es->path, name, n,
                        mk->eval_feeds[i].n);
        if (s == XD_OK && mk->eval_feeds[i].n == 0)
            s = xd_fail(e, XD_EARG, "%s: split '%s' has no examples to score", es->path, es->split);
    }
    if (s != XD_OK) xd_err_prefix(e, "data.eval_sets.%d (%s)", i, es->name);
    return s;
}

xd_status train_setup_val(train_run *R, xd_err *e)
{
    const recipe *r = R->r;
    xd_status s = setup_val_examples(R, e);
    if (s != XD_OK) return s;
    const int n_sets = r->data.n_eval_sets;
    if (n_sets && R->seg.on)
        return xd_fail(e, XD_EARG, "%s: data.eval_sets scores classifiers; task segment has none",
                       r->file ? r->file : r->name);
    R->eval_ds = xd_xcalloc((size_t)(n_sets ? n_sets : 1), sizeof *R->eval_ds);
    R->eval_y = xd_xcalloc((size_t)(n_sets ? n_sets : 1), sizeof *R->eval_y);
    for (int k = 0; k < R->n_models; k++) {
        model_rt *mk = &R->models[k];
        mk->n_eval = n_sets;
        mk->eval_feeds = xd_xcalloc((size_t)(n_sets ? n_sets : 1), sizeof *mk->eval_feeds);
        mk->eval_acc = xd_xcalloc((size_t)(n_sets ? n_sets : 1), sizeof *mk->eval_acc);
        mk->eval_bacc = xd_xcalloc((size_t)(n_sets ? n_sets : 1), sizeof *mk->eval_bacc);
    }
    /* the run's class names, matched against each eval set's */
    const io_strings *cls = labels_class_table(R->ds, r->data.label);
    const char **names = cls ? labels_table_names(cls) : NULL;
    for (int i = 0; i < n_sets && s == XD_OK; i++) s = setup_eval_set(R, i, names, e);
    free(names);
    return s;
}

void train_free_val(train_run *R)
{
    for (int i = 0; R->eval_ds && i < R->r->data.n_eval_sets; i++) {
        if (R->eval_ds[i]) io_dataset_close(R->eval_ds[i]);
        free(R->eval_y[i]);
    }
    free(R->eval_ds);
    free(R->eval_y);
    free(R->held);
}
