/* The trainer's set-up (see train_run.h): the data set and labels, the teachers (their feeds and
 * output caches), the step's buffers, and per stage the losses (their ends, label maps, projectors
 * and their closed-form initialisation) and the segments each model may train. */
#include "distill/train_run.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/clip.h"
#include "align/linmap.h"
#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/labels.h"
#include "io/file.h"

// ----------------------------------------------------------------------------------------------
// set-up

xd_status train_open_labels(train_run *R, const char *split, const int32_t **y, size_t n,
                            xd_err *e)
{
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/%s", split, R->r->data.label);
    const io_tensor *t;
    xd_status s = io_dataset_require(R->ds, name, IO_I32, 1, &t, e);
    if (s != XD_OK) return s;
    if ((size_t)t->shape[0] != n)
        return xd_fail(e, XD_EFORMAT, "%s: %s has %lld labels for %zu examples",
                       io_dataset_path(R->ds), name, (long long)t->shape[0], n);
    *y = t->data;
    for (size_t i = 0; i < n; i++)
        if ((*y)[i] < 0 || (*y)[i] >= R->n_classes)
            return xd_fail(e, XD_EFORMAT, "%s: %s[%zu] = %d, outside the %d classes",
                           io_dataset_path(R->ds), name, i, (*y)[i], R->n_classes);
    return XD_OK;
}

static int head_of(const nn_model *m, const char *name)
{
    return name ? nn_model_find(m, name) : nn_model_default_head(m);
}

/* True when image option words draw random crops or flips for a model input of h x w
 * (normalisation alone does not; resizing above the input size does, since the crop is then
 * drawn). */
static int spatial_augment(const char *words, int h, int w)
{
    if (!words || !*words) return 0;
    img_opts o;
    img_opts_default(&o);
    o.pad = 0;
    o.flip = 0.0f;
    xd_err e;
    if (img_opts_parse(&o, words, &e) != XD_OK) return 1; /* reported when the feed opens */
    return o.pad > 0 || o.flip > 0.0f || o.size_h > h || o.size_w > w;
}

xd_status train_setup_data(train_run *R, xd_err *e)
{
    const recipe *r = R->r;
    xd_status s = io_dataset_open_verified(r->data.path, &R->ds, e);
    if (s != XD_OK) return s;
    nn_model *student = &R->models[0].m;
    R->spatial = spatial_augment(r->data.augment, student->h, student->w);
    for (int k = 0; k < R->n_models; k++)
        if ((s = models_open_feeds(&R->models[k], r, R->ds, e)) != XD_OK) return s;
    R->n_train = R->models[0].train.n;
    if (R->models[0].test.n == 0) /* a score on no examples would read as 0.00% */
        return xd_fail(e, XD_EARG, "%s: split '%s' has no test examples, so no test score can be "
                                   "given (prepare the set with a test fraction above 0)",
                       io_dataset_path(R->ds), r->data.test);
    /* classes: the data set's table for this label, else the student head's width */
    const io_strings *cls = labels_class_table(R->ds, r->data.label);
    int head = nn_model_default_head(student);
    R->n_classes = cls ? (int)cls->n : nn_model_node(student, head)->c;
    if ((s = train_open_labels(R, r->data.train, &R->ytrain, R->n_train, e)) != XD_OK) return s;
    if ((s = train_open_labels(R, r->data.test, &R->ytest, R->models[0].test.n, e)) != XD_OK) return s;
    /* the data set's own label mask, then the recipe's low-label selection */
    char mname[IO_DATASET_NAME_MAX + 1];
    snprintf(mname, sizeof mname, "%s/label_mask", r->data.train);
    const io_tensor *mt = io_dataset_find(R->ds, mname);
    R->known = NULL;
    if (mt) {
        if (mt->dtype != IO_U8 || mt->ndim != 1 || (size_t)mt->shape[0] != R->n_train)
            return xd_fail(e, XD_EFORMAT, "%s: %s is not u8 (%zu)", io_dataset_path(R->ds), mname,
                           R->n_train);
        R->known = mt->data;
    }
    R->sel = xd_bits_new(R->n_train);
    s = labels_select(R->ytrain, R->known, R->n_train, R->n_classes, r->data.label_fraction,
                      r->data.labels_per_class, (uint64_t)R->seed, R->sel, &R->n_sel, e);
    if (s != XD_OK) return xd_err_prefix(e, "%s", r->data.path);
    /* a segment task selects whole scenes (stratified by their label) and reads their masks */
    if (r->task == RECIPE_TASK_SEGMENT) {
        if ((s = seg_open(&R->seg, R->ds, r->data.train, r->data.test, student, r->train.batch,
                          e)) != XD_OK)
            return s;
        /* the default head is what training accuracy and evaluation read */
        const nn_node *hn = nn_model_node(student, head);
        if (hn->h != R->seg.H || hn->w != R->seg.W || hn->c != R->seg.n_classes)
            return xd_fail(e, XD_ESHAPE, "the student's default head '%s' is %dx%dx%d; task segment "
                                         "needs %dx%dx%d (the scenes' height x width x classes; "
                                         "the first node marked head is the default)",
                           hn->name, hn->h, hn->w, hn->c, R->seg.H, R->seg.W, R->seg.n_classes);
    }
    return train_setup_val(R, e);
}

static xd_status cache_fill(void *ctx, size_t i0, size_t i1, void *input, xd_err *e)
{
    teacher_rt *t = ctx;
    size_t n = i1 - i0;
    XD_ASSERT(n <= (size_t)t->m.max_batch);
    for (size_t i = 0; i < n; i++) t->idx[i] = (uint32_t)(i0 + i);
    return feed_fill(&t->f, t->idx, (int)n, 0, 0, 0, input, e);
}

/* The cache holds one deterministic output per example: usable when the teacher's view never
 * changes between epochs and every loss on this teacher reads the logits of one head. */
static int cache_usable(const train_run *R, int ti, const char *view)
{
    const recipe *r = R->r;
    if (!r->teachers[ti].cache) return 0;
    if (strcmp(view, "image") == 0 && R->spatial) return 0;
    if (strcmp(view, "text.*") == 0) return 0;
    const char *head = NULL;
    int seen = 0;
    for (int s = 0; s < r->n_stages; s++)
        for (int l = 0; l < r->stages[s].n_losses; l++) {
            const recipe_loss *L = &r->stages[s].losses[l];
            if (!recipe_loss_reads_teacher(L, ti)) continue;
            if (L->kind != RECIPE_LOSS_KD && L->kind != RECIPE_LOSS_HINTON) return 0;
            /* one cache holds one head's outputs */
            const char *h = L->teacher_head ? L->teacher_head : "";
            if (seen && strcmp(h, head) != 0) return 0;
            head = h;
            seen = 1;
        }
    return 1;
}

static int same_words(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The label set whose classes teacher ti's outputs are: the one a label map names, none to check
 * for a list map (the list says the teacher's classes), else the one it was trained on. */
static const char *teacher_label(const recipe *r, int ti, const char *trained)
{
    for (int s = 0; s < r->n_stages; s++)
        for (int l = 0; l < r->stages[s].n_losses; l++) {
            const recipe_loss *L = &r->stages[s].losses[l];
            if (L->teacher != ti) {
                for (int m = 0; m < L->n_members; m++) {
                    if (L->members[m].teacher != ti) continue;
                    if (L->members[m].label_map) return L->members[m].label_map;
                    if (L->members[m].n_label_table) return NULL;
                }
                continue;
            }
            if (L->label_map) return L->label_map;
            if (L->n_label_table) return NULL;
        }
    return trained;
}

/* Teacher i's own feed (for its view, or for filling its cache: without augmentation) where the
 * student's input batch does not serve it, and its output cache where one can stand in for it;
 * aug and text: what its inputs are made with. */
static xd_status teacher_feed_and_cache(train_run *R, int i, const char *view, const char *aug,
                                        const char *text, xd_err *e)
{
    const recipe *r = R->r;
    teacher_rt *t = &R->teachers[i];
    const recipe_teacher *rt = &r->teachers[i];
    const int B = r->train.batch;
    xd_status s;
    if (!t->shares || cache_usable(R, i, view)) {
        s = feed_open(&t->f, R->ds, r->data.train, view, &t->m, aug, text, e);
        if (s != XD_OK) return xd_err_prefix(e, "teacher '%s'", rt->name);
        if (t->f.n != R->n_train)
            return xd_fail(e, XD_ESHAPE, "teacher '%s': view %s has %zu examples, the student's %zu",
                           rt->name, view, t->f.n, R->n_train);
        t->input = xd_xmalloc_aligned(feed_example_bytes(&t->f) * (size_t)B);
        t->idx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
    }
    if (!cache_usable(R, i, view)) return XD_OK;
    const char *head = NULL;
    for (int sI = 0; sI < r->n_stages; sI++)
        for (int l = 0; l < r->stages[sI].n_losses; l++)
            if (recipe_loss_reads_teacher(&r->stages[sI].losses[l], i))
                head = r->stages[sI].losses[l].teacher_head;
    kd_cache_spec spec = {.dataset_path = r->data.path, .dataset = R->ds, .augment = aug,
                          .text = text, .split = r->data.train, .view = view, .n = R->n_train,
                          .head = head, .topk = 0, .tap = NULL,
                          .log = R->o->quiet ? NULL : R->log};
    if ((s = kd_cache_load_or_build(&spec, &t->m, cache_fill, t, &t->cache, e)) != XD_OK)
        return xd_err_prefix(e, "teacher '%s' cache", rt->name);
    t->cached = 1;
    if (t->cache.rebuilt && !R->o->quiet) fprintf(R->log, "warning: %s\n", t->cache.warning);
    return XD_OK;
}

/* Teacher ti names its classes in another order than the data set's label set `label`: its
 * class_table maps each of its classes onto the run's by name (its kd and hinton losses read it
 * as a label map). Every class of the teacher must be one of the run's, and its label set the
 * run's own (a label_map over another label set says the order itself). */
static xd_status teacher_class_table(train_run *R, int ti, const char *label, xd_err *e)
{
    teacher_rt *t = &R->teachers[ti];
    const char *ckpt = R->r->teachers[ti].checkpoint;
    int32_t *map;
    xd_status s = ckpt_class_map(ckpt, &t->m, R->ds, label, &map, e);
    if (s != XD_OK || !map) return s;
    const io_strings *cls = labels_class_table(R->ds, label);
    const size_t kt = nn_model_node(&t->m, nn_model_default_head(&t->m))->act_n;
    if (strcmp(label, R->r->data.label) != 0 || cls->n != kt) {
        free(map);
        return xd_fail(e, XD_EARG, "%s: its %zu classes are not those of %s in the same order "
                                   "(%s has %zu); a label_map list gives each teacher class its "
                                   "class", ckpt, kt, io_dataset_path(R->ds), cls->name, cls->n);
    }
    t->class_table = xd_xmalloc(sizeof(int32_t) * kt);
    for (size_t d = 0; d < cls->n; d++) t->class_table[map[d]] = (int32_t)d;
    free(map);
    return XD_OK;
}

xd_status train_setup_teachers(train_run *R, xd_err *e)
{
    const recipe *r = R->r;
    const int B = r->train.batch;
    R->teachers = xd_xcalloc((size_t)(r->n_teachers ? r->n_teachers : 1), sizeof *R->teachers);
    for (int i = 0; i < r->n_teachers; i++) {
        teacher_rt *t = &R->teachers[i];
        const recipe_teacher *rt = &r->teachers[i];
        xd_status s;
        if (R->seg.on) {
            /* dense losses read window logits computed once, not the teacher at every step */
            s = seg_teacher_windows(&R->seg, r, i, R->ds, r->data.path, r->data.train,
                                    R->o->quiet ? NULL : R->log, e);
            if (s != XD_OK) return xd_err_prefix(e, "teacher '%s'", rt->name);
            if (seg_teacher_dense_only(r, i)) continue;
        }
        s = ckpt_load(rt->checkpoint, B, &t->m, e);
        if (s != XD_OK) return xd_err_prefix(e, "teacher '%s'", rt->name);
        t->m.eval_precision = rt->precision; /* its forwards are evaluation forwards */
        t->reads = xd_xcalloc((size_t)t->m.n_nodes, 1);
        const char *view = rt->view ? rt->view : r->data.student_view;
        char *taug, *ttext;
        if ((s = ckpt_preprocessing(rt->checkpoint, &taug, &ttext, e)) != XD_OK)
            return xd_err_prefix(e, "teacher '%s'", rt->name);
        const char *aug = taug ? taug : r->data.augment, *text = ttext ? ttext : r->data.text;
        char *tlabel;
        if ((s = ckpt_trained_label(rt->checkpoint, &tlabel, e)) == XD_OK) {
            const char *label = teacher_label(r, i, tlabel);
            s = ckpt_check_fit(rt->checkpoint, &t->m, R->ds, r->data.train, view, aug, label, e);
            if (s == XD_OK && label) s = teacher_class_table(R, i, label, e);
            free(tlabel);
        }
        if (s != XD_OK) {
            free(taug);
            free(ttext);
            return xd_err_prefix(e, "teacher '%s'", rt->name);
        }
        /* the student's input batch serves the teacher only when it is exactly what the teacher
         * would have made itself */
        t->average = rt->languages == RECIPE_LANGS_AVERAGE;
        const nn_model *student = &R->models[0].m;
        t->shares = !t->average && strcmp(view, R->models[0].rm->view) == 0 &&
                    t->m.tokens == student->tokens && t->m.h == student->h &&
                    t->m.w == student->w && t->m.c == student->c &&
                    same_words(aug, r->data.augment) && same_words(text, r->data.text);
        if (t->average) {
            t->avg = xd_xcalloc((size_t)t->m.n_nodes, sizeof *t->avg);
            t->present = xd_xmalloc((size_t)B);
            t->count = xd_xmalloc(sizeof(float) * (size_t)B);
        }
        s = teacher_feed_and_cache(R, i, view, aug, text, e);
        free(taug);
        free(ttext);
        if (s != XD_OK) return s;
    }
    return XD_OK;
}

xd_status train_setup_buffers(train_run *R)
{
    const int B = R->r->train.batch;
    /* a stored shuffle's array of the examples; a keyed one reads its order where it needs it */
    if (R->r->train.shuffle == RECIPE_SHUFFLE_STORED)
        R->pool = xd_xmalloc(sizeof(uint32_t) * (R->n_train ? R->n_train : 1));
    R->idx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
    R->yb = xd_xmalloc(sizeof(int32_t) * (size_t)B);
    R->mb = xd_xmalloc((size_t)B);
    R->exb = xd_xmalloc(sizeof(uint64_t) * (size_t)B);
    /* counted once, on the training labels the run sees (held-out validation labels excluded) */
    int weighted = 0;
    for (int s = 0; s < R->r->n_stages; s++)
        for (int i = 0; i < R->r->stages[s].n_losses; i++)
            weighted |= R->r->stages[s].losses[i].class_weight == RECIPE_CLASS_WEIGHT_BALANCED;
    if (weighted) {
        R->class_w = xd_xmalloc(sizeof(float) * (size_t)R->n_classes);
        labels_balanced_weights(R->ytrain, R->sel, R->n_train, R->n_classes, R->class_w);
        R->wb = xd_xmalloc(sizeof(float) * (size_t)B);
    }
    int kmax = 1;
    for (int i = 0; i < R->r->n_teachers; i++)
        if (R->teachers[i].cached && R->teachers[i].cache.K > kmax) kmax = R->teachers[i].cache.K;
    R->tlogits = xd_xmalloc(sizeof(float) * (size_t)B * kmax);
    return XD_OK;
}

// ----------------------------------------------------------------------------------------------
// stages and losses

void train_free_losses(train_run *R)
{
    for (int i = 0; i < R->n_losses; i++) {
        loss_rt *l = &R->losses[i];
        if (l->has_proj) nn_model_free(&l->proj);
        if (l->has_proj || l->rat) nn_opt_free(&l->popt);
        train_rationale_free(l);
        free(l->a);
        free(l->b);
        free(l->c);
        free(l->ones);
        free(l->tq);
        free(l->clip);
        if (l->mapped) align_labelmap_free(&l->lm);
        nn_opt_free(&l->topt);
        train_zoo_free(l);
        train_free_ensemble(l);
    }
    free(R->losses);
    R->losses = NULL;
    R->n_losses = 0;
}

/* A label map (a kd / hinton loss's, or an ensemble member's): the recipe's list, or the
 * co-occurrence of the data set's label set `label.NAME` (the teacher's classes) with the run's
 * label on the training split. Counting reads every training example's two labels, so it stands
 * for a taxonomy the data set ships (subgroup -> group), not for labels of the run: the rows are
 * the share of each teacher class's examples in each student class, and a teacher class with no
 * training example spreads evenly. by_name (when the recipe gives no map): the teacher's classes
 * in another order, matched by name (teacher_class_table). */
xd_status train_label_map(train_run *R, const char *where, const char *map, const int32_t *table,
                          int n_table, const int32_t *by_name, int kt, int ks, align_labelmap *lm,
                          xd_err *e)
{
    xd_status s;
    if (table) {
        if (n_table != kt)
            return xd_fail(e, XD_ESHAPE, "%s: label_map lists %d teacher classes, the teacher's "
                                         "head has %d", where, n_table, kt);
        s = align_labelmap_from_table(lm, table, kt, ks, e);
    } else if (by_name) {
        s = align_labelmap_from_table(lm, by_name, kt, ks, e);
    } else {
        if (ks != R->n_classes)
            return xd_fail(e, XD_ESHAPE, "%s: label_map %s maps onto the run's %d classes, the "
                                         "student's head has %d outputs", where, map,
                           R->n_classes, ks);
        char name[IO_DATASET_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s/%s", R->r->data.train, map);
        const io_tensor *t;
        if ((s = io_dataset_require(R->ds, name, IO_I32, 1, &t, e)) != XD_OK)
            return xd_err_prefix(e, "%s: label_map", where);
        if ((size_t)t->shape[0] != R->n_train)
            return xd_fail(e, XD_EFORMAT, "%s: %s has %lld labels for %zu examples",
                           io_dataset_path(R->ds), name, (long long)t->shape[0], R->n_train);
        const int32_t *yt = t->data;
        /* rows the data set marks unlabelled (label_mask 0) hold no label of either set */
        const uint8_t *known = R->known;
        double *cnt = xd_xcalloc((size_t)kt * (size_t)ks, sizeof *cnt);
        for (size_t j = 0; j < R->n_train && s == XD_OK; j++) {
            if (known && !known[j]) continue;
            if (yt[j] < 0 || yt[j] >= kt)
                s = xd_fail(e, XD_EFORMAT, "%s: %s[%zu] = %d, outside the teacher's %d classes",
                            io_dataset_path(R->ds), name, j, yt[j], kt);
            else
                cnt[(size_t)yt[j] * ks + (size_t)R->ytrain[j]] += 1.0;
        }
        float *m = xd_xmalloc(sizeof(float) * (size_t)kt * (size_t)ks);
        for (int c = 0; c < kt && s == XD_OK; c++) {
            double row = 0.0;
            for (int k = 0; k < ks; k++) row += cnt[(size_t)c * ks + k];
            for (int k = 0; k < ks; k++)
                m[(size_t)c * ks + k] = row > 0 ? (float)(cnt[(size_t)c * ks + k] / row) : 1.0f / (float)ks;
        }
        if (s == XD_OK) s = align_labelmap_from_matrix(lm, m, kt, ks, 1e-4f, e);
        free(m);
        free(cnt);
    }
    if (s != XD_OK) return xd_err_prefix(e, "%s: label_map", where);
    return XD_OK;
}

/* A loss's own label_map (or its teacher's classes by name), and its buffer of teacher
 * probabilities. */
static xd_status setup_label_map(train_run *R, loss_rt *l, const int32_t *by_name, int kt, int ks,
                                 xd_err *e)
{
    const recipe_loss *L = l->L;
    xd_status s = train_label_map(R, l->where, L->label_map, L->label_table, L->n_label_table,
                                  by_name, kt, ks, &l->lm, e);
    if (s != XD_OK) return s;
    l->mapped = 1;
    l->tq = xd_xmalloc(sizeof(float) * (size_t)R->r->train.batch * (size_t)kt);
    return XD_OK;
}

/* The network at a loss's from end: a teacher's, or another trainable model's. */
nn_model *train_from_net(train_run *R, const recipe_loss *L)
{
    return L->from_model >= 0 ? &R->models[L->from_model].m : &R->teachers[L->teacher].m;
}

/* For messages: "teacher 'NAME' (CHECKPOINT)" for a teacher (teacher >= 0), else "model 'NAME'"
 * for a model of a models: list, "the student" for the one-student form's. */
const char *train_end_name(const train_run *R, int teacher, int model, char *buf, size_t n)
{
    if (teacher >= 0)
        snprintf(buf, n, "teacher '%s' (%s)", R->r->teachers[teacher].name,
                 R->r->teachers[teacher].checkpoint);
    else if (R->r->listed)
        snprintf(buf, n, "model '%s'", R->r->models[model].name);
    else
        snprintf(buf, n, "the student");
    return buf;
}

xd_status train_setup_losses(train_run *R, int stage, xd_err *e)
{
    const recipe *r = R->r;
    const recipe_stage *st = &r->stages[stage];
    const int B = r->train.batch;
    train_free_losses(R);
    for (int t = 0; t < r->n_teachers; t++) {
        R->teachers[t].used = 0;
        for (int l = 0; l < st->n_losses; l++)
            R->teachers[t].used |= recipe_loss_reads_teacher(&st->losses[l], t) &&
                                   st->losses[l].kind != RECIPE_LOSS_DENSE;
    }
    R->losses = xd_xcalloc((size_t)st->n_losses, sizeof *R->losses);
    R->n_losses = st->n_losses;
    for (int i = 0; i < st->n_losses; i++) {
        loss_rt *l = &R->losses[i];
        const recipe_loss *L = &st->losses[i];
        l->L = L;
        recipe_loss_where(r, stage, i, 1, l->where, sizeof l->where);
        if (train_zoo_kind(L->kind) || L->kind == RECIPE_LOSS_RATIONALE) {
            xd_status s = L->kind == RECIPE_LOSS_RATIONALE ? train_rationale_setup(R, l, stage, i, e)
                                                           : train_zoo_setup(R, l, stage, i, e);
            if (s != XD_OK) return s;
            continue;
        }
        const char *kname = recipe_loss_kind_names[L->kind];
        const int is_logit = L->kind == RECIPE_LOSS_CE || L->kind == RECIPE_LOSS_KD ||
                             L->kind == RECIPE_LOSS_HINTON || L->kind == RECIPE_LOSS_DENSE;
        nn_model *sm = &R->models[L->model].m;
        l->s_node = is_logit ? head_of(sm, L->head) : nn_model_find(sm, L->student_tap);
        char to[RECIPE_MAX_NAME + 32], from[RECIPE_MAX_NAME + 320];
        train_end_name(R, -1, L->model, to, sizeof to);
        if (l->s_node < 0)
            return xd_fail(e, XD_EARG, "%s: %s has no node '%s'", l->where, to,
                           is_logit ? L->head : L->student_tap);
        const nn_node *sn = nn_model_node(sm, l->s_node);
        size_t width = sn->act_n;
        if (R->seg.on && (L->kind == RECIPE_LOSS_CE || L->kind == RECIPE_LOSS_DENSE)) {
            /* per-pixel losses keep their buffers in the segment run */
            xd_status s = seg_check_head(&R->seg, sn, i, kname, e);
            if (s != XD_OK) return s;
            l->t_node = -1;
            continue;
        }
        if ((L->kind == RECIPE_LOSS_CE || L->kind == RECIPE_LOSS_HINTON) && (int)sn->act_n != R->n_classes)
            return xd_fail(e, XD_ESHAPE, "%s: head '%s' has %zu outputs for the %d classes of "
                                         "%s", l->where, sn->name, sn->act_n, R->n_classes,
                           r->data.path);
        if (L->n_members) {
            xd_status s = train_setup_ensemble(R, l, sn, e);
            if (s != XD_OK) return s;
            l->t_node = -1;
        } else if (L->teacher >= 0 || L->from_model >= 0) {
            teacher_rt *t = L->teacher >= 0 ? &R->teachers[L->teacher] : NULL;
            nn_model *fm = train_from_net(R, L);
            train_end_name(R, L->teacher, L->from_model, from, sizeof from);
            l->t_node = is_logit ? head_of(fm, L->teacher_head) : nn_model_find(fm, L->teacher_tap);
            if (l->t_node < 0)
                return xd_fail(e, XD_EARG, "%s: %s has no node '%s'", l->where, from,
                               is_logit ? (L->teacher_head ? L->teacher_head : "(default head)") : L->teacher_tap);
            const nn_node *tn = nn_model_node(fm, l->t_node);
            if (t) train_teacher_reads(R, t, l->t_node);
            /* the names apply to the head they were stored for */
            const int32_t *by_name = t && is_logit && l->t_node == nn_model_default_head(fm)
                                         ? t->class_table : NULL;
            if (L->label_map || L->label_table || by_name) {
                xd_status s = setup_label_map(R, l, by_name, (int)tn->act_n, (int)sn->act_n, e);
                if (s != XD_OK) return s;
            } else if (is_logit && tn->act_n != sn->act_n)
                return xd_fail(e, XD_ESHAPE, "%s: the head '%s' of %s has %zu outputs, the head "
                                             "'%s' of %s has %zu outputs (a label_map maps one onto "
                                             "the other)", l->where, tn->name, from, tn->act_n,
                               sn->name, to, sn->act_n);
            if (!is_logit && (tn->h != sn->h || tn->w != sn->w))
                return xd_fail(e, XD_ESHAPE, "%s: student tap '%s' is %dx%dx%d, teacher tap '%s' "
                                             "%dx%dx%d: the spatial sizes must match", l->where,
                               sn->name, sn->h, sn->w, sn->c, tn->name, tn->h, tn->w, tn->c);
            if (L->kind == RECIPE_LOSS_FEATURE || L->kind == RECIPE_LOSS_HINT ||
                L->kind == RECIPE_LOSS_CONTRASTIVE) {
                int want = L->projector == RECIPE_PROJ_LINEAR || L->projector == RECIPE_PROJ_CONV1X1 ||
                           L->projector == RECIPE_PROJ_MLP ||
                           (L->projector == RECIPE_PROJ_AUTO && tn->c != sn->c);
                if (!want && tn->c != sn->c)
                    return xd_fail(e, XD_ESHAPE, "%s: widths differ (%d vs %d) and projector is none",
                                       l->where, sn->c, tn->c);
                if (want) {
                    /* a linear map over channels: a 1x1 convolution on feature maps; the MLP puts
                     * a hidden layer as wide as the wider side before it */
                    char desc[256];
                    if (L->projector == RECIPE_PROJ_MLP)
                        snprintf(desc, sizeof desc, "input h=%d w=%d c=%d; linear out=%d name=hidden; "
                                 "relu; linear out=%d name=proj head", sn->h, sn->w, sn->c,
                                 sn->c > tn->c ? sn->c : tn->c, tn->c);
                    else
                        snprintf(desc, sizeof desc, "input h=%d w=%d c=%d; linear out=%d name=proj head",
                                 sn->h, sn->w, sn->c, tn->c);
                    if (L->projector == RECIPE_PROJ_MLP && L->projector_init != RECIPE_INIT_RANDOM)
                        return xd_fail(e, XD_EARG, "%s: projector_init %s fits a linear map; an mlp "
                                                   "projector starts at random",
                                       l->where, recipe_proj_init_names[L->projector_init]);
                    xd_status s = nn_model_build(&l->proj, desc, B,
                                                 (uint64_t)R->seed * 1000003u + 7919u * (uint64_t)(stage * 64 + i), e);
                    if (s != XD_OK) return s;
                    l->has_proj = 1;
                    nn_model_enable_input_grad(&l->proj);
                    nn_opt_config pc = r->train.opt;
                    if ((s = nn_opt_init(&l->popt, &pc, l->proj.n_param, e)) != XD_OK) return s;
                } else if (L->projector_init != RECIPE_INIT_RANDOM) {
                    return xd_fail(e, XD_EARG, "%s: projector_init %s, but the widths are equal and "
                                               "no projector is made (set projector: linear)",
                                   l->where, recipe_proj_init_names[L->projector_init]);
                }
                width = tn->act_n;
            }
            if (L->kind == RECIPE_LOSS_CONTRASTIVE) {
                if (B > 1 && tn->act_n > (size_t)1 << 24)
                    return xd_fail(e, XD_ESHAPE, "%s: tap '%s' has %zu values per example, too many "
                                                 "to compare", l->where, tn->name, tn->act_n);
                l->clip = xd_xmalloc(sizeof(double) * align_clip_save_len(B, (int)tn->act_n));
                l->theta[0] = (float)align_clip_theta(L->temperature);
                /* a learned temperature lives in CLIP's range; a fixed one is what the recipe says */
                if (L->learn_temperature) align_clip_clamp_theta(l->theta);
                if (L->learn_temperature) {
                    /* the scale learns with the run's optimizer, without weight decay */
                    nn_opt_config tc = r->train.opt;
                    tc.weight_decay = 0.0f;
                    tc.clip_norm = 0.0f;
                    xd_status s = nn_opt_init(&l->topt, &tc, 1, e);
                    if (s != XD_OK) return s;
                }
            }
            if (L->kind == RECIPE_LOSS_ATTENTION && sn->h * sn->w <= 0)
                return xd_fail(e, XD_ESHAPE, "%s: tap '%s' is not a feature map", l->where,
                               sn->name);
        } else {
            l->t_node = -1;
        }
        l->a = xd_xmalloc(sizeof(float) * (size_t)B * width);
        l->b = xd_xmalloc(sizeof(float) * (size_t)B * width);
        l->c = xd_xmalloc(sizeof(float) * (size_t)B * width);
        l->ones = xd_xmalloc(sizeof(int32_t) * (size_t)B);
        for (int b = 0; b < B; b++) l->ones[b] = 1;
    }
    return XD_OK;
}

/* Marks nodes of model k the stage may train: train_until and everything it reads from. */
static void model_segments(train_run *R, int stage, int k)
{
    model_rt *mk = &R->models[k];
    nn_model *m = &mk->m;
    const recipe_stage *st = &R->r->stages[stage];
    const char *until = st->until_model == k ? st->train_until : NULL;
    uint8_t *keep = xd_xcalloc((size_t)m->n_nodes, 1);
    if (!until) {
        memset(keep, 1, (size_t)m->n_nodes);
    } else {
        int u = nn_model_find(m, until);
        XD_ASSERT(u >= 0);
        keep[u] = 1;
        for (int i = u; i >= 0; i--) {
            if (!keep[i]) continue;
            const nn_node *nd = nn_model_node(m, i);
            if (nd->in >= 0) keep[nd->in] = 1;
            if (nd->kind == NN_ADD && nd->in2 >= 0) keep[nd->in2] = 1;
        }
    }
    for (int s = 0; s < m->n_segs; s++) {
        mk->segs[s] = m->segs[s];
        for (int i = 0; i < m->n_nodes; i++) {
            const nn_node *nd = nn_model_node(m, i);
            if ((nd->w_n && nd->w_off == m->segs[s].offset) || (nd->b_n && nd->b_off == m->segs[s].offset))
                mk->segs[s].frozen = !keep[i];
        }
    }
    free(keep);
}

void train_stage_segments(train_run *R, int stage)
{
    for (int k = 0; k < R->n_models; k++) model_segments(R, stage, k);
}

/* Most rows (examples x positions) a projector's closed-form fit reads. */
#define PROJ_FIT_ROWS 65536

/* Fits the map of one projector on paired rows: X the student tap (rows, dx), Y the teacher's
 * (rows, dy); written into the projector's linear node. */
static xd_status fit_projector(loss_rt *l, const float *X, const float *Y, int rows, int dx, int dy,
                               xd_err *e)
{
    align_map map = {0};
    xd_status s;
    if (l->L->projector_init == RECIPE_INIT_PROCRUSTES) {
        align_procrustes_opts po = {.center = 1, .scale = 1, .refine = 200};
        s = align_procrustes_fit(&map, X, Y, rows, dx, dy, &po, NULL, e);
    } else {
        align_cca c = {0};
        s = align_cca_fit(&c, X, Y, rows, dx, dy, 0, 1e-3, e);
        if (s == XD_OK) s = align_cca_regression_map(&map, &c, c.k, e);
        align_cca_free(&c);
    }
    if (s == XD_OK) s = align_map_init_linear(&l->proj, "proj", &map, e);
    align_map_free(&map);
    return s;
}

/* The first training example at or after *at that the run trains on (none held out for
 * validation); *at moves past it. */
static uint32_t next_trained(const train_run *R, size_t *at)
{
    while (R->held && xd_bit(R->held, *at)) ++*at;
    return (uint32_t)(*at)++;
}

/* Projectors with projector_init procrustes or cca start from a map fitted on the student's and
 * the teacher's taps over the first training examples (in order, no augmentation, eval mode; the
 * validation ones left out), so the student starts from where the two spaces already agree. */
xd_status train_init_projectors(train_run *R, xd_err *e)
{
    const int B = R->r->train.batch;
    xd_status s = XD_OK;
    for (int i = 0; i < R->n_losses && s == XD_OK; i++) {
        loss_rt *l = &R->losses[i];
        if (!l->has_proj || l->L->projector_init == RECIPE_INIT_RANDOM) continue;
        teacher_rt *t = &R->teachers[l->L->teacher];
        model_rt *mk = &R->models[l->L->model];
        const nn_node *sn = nn_model_node(&mk->m, l->s_node);
        const nn_node *tn = nn_model_node(&t->m, l->t_node);
        const int pos = sn->h * sn->w > 0 ? sn->h * sn->w : 1; /* rows per example */
        const size_t n_trained = R->n_train - R->n_held;
        size_t n_ex = n_trained < (size_t)(PROJ_FIT_ROWS / pos) ? n_trained : (size_t)(PROJ_FIT_ROWS / pos);
        if (n_ex == 0) n_ex = 1;
        size_t at = 0;
        const int rows = (int)n_ex * pos;
        float *X = xd_xmalloc(sizeof(float) * (size_t)rows * (size_t)sn->c);
        float *Y = xd_xmalloc(sizeof(float) * (size_t)rows * (size_t)tn->c);
        for (size_t i0 = 0; i0 < n_ex && s == XD_OK; i0 += (size_t)B) {
            int n = n_ex - i0 < (size_t)B ? (int)(n_ex - i0) : B;
            for (int b = 0; b < n; b++) R->idx[b] = next_trained(R, &at);
            /* a teacher that shares reads the first model's batch */
            if (t->shares && mk != &R->models[0] &&
                (s = feed_fill(&R->models[0].train, R->idx, n, 0, 0, 0, R->models[0].input, e)))
                break;
            if ((s = feed_fill(&mk->train, R->idx, n, 0, 0, 0, mk->input, e)) != XD_OK) break;
            nn_model_forward(&mk->m, mk->input, n, NULL);
            if ((s = train_teacher_forward(R, t, R->idx, n, 0, 0, e)) != XD_OK) break;
            memcpy(X + i0 * pos * sn->c, nn_model_out(&mk->m, l->s_node),
                   sizeof(float) * (size_t)n * sn->act_n);
            memcpy(Y + i0 * pos * tn->c, train_teacher_out(R, l->L->teacher, l->t_node, n),
                   sizeof(float) * (size_t)n * tn->act_n);
        }
        if (s == XD_OK) s = fit_projector(l, X, Y, rows, sn->c, tn->c, e);
        if (s != XD_OK)
            xd_err_prefix(e, "%s: projector_init %s", l->where,
                          recipe_proj_init_names[l->L->projector_init]);
        free(X);
        free(Y);
    }
    return s;
}
