/* The trainer (see trainer.h). */
#include "distill/trainer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "align/clip.h"
#include "align/labelmap.h"
#include "align/linmap.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "nn/gemm.h"
#include "distill/cache.h"
#include "distill/checkpoint.h"
#include "distill/kd.h"
#include "distill/labels.h"
#include "distill/models.h"
#include "distill/progress.h"
#include "distill/runs.h"
#include "distill/scores.h"
#include "distill/runlock.h"
#include "distill/segment.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/yaml.h"
#include "nn/loss.h"

typedef struct {
    nn_model m;
    uint32_t *idx;   /* (max_batch) example indices while filling the cache */
    feed f;          /* its view of the training split (unused when it shares the student's) */
    int shares;      /* reads the student's input batch as is */
    int cached;      /* outputs come from the teacher-output cache */
    kd_cache cache;
    void *input;
    int used;        /* a loss of the current stage reads it */
    int average;     /* text.* with languages: average: every language of an example, averaged */
    float **avg;     /* average: (n_nodes) the averaged outputs (max_batch, act_n) of the nodes
                      * losses read, NULL for the others */
    uint8_t *present; /* average: (max_batch) which examples have the language in hand */
    float *count;    /* average: (max_batch) languages summed per example */
} teacher_rt;

typedef struct {
    const recipe_loss *L;
    char where[256]; /* "FILE:LINE: losses.I (KIND)", for messages */
    int s_node, t_node; /* the node of the end that learns, of the from end */
    int has_proj;
    nn_model proj;
    nn_optimizer popt;
    float *a, *b, *c; /* per-loss scratch (B, width) each */
    int32_t *ones;    /* cosine targets */
    double sum;       /* loss summed over the epoch's steps */
    /* kd, hinton with a label map: teacher classes -> student classes */
    int mapped;
    align_labelmap lm;
    float *tq;        /* (B, kt) teacher probabilities before the map */
    /* contrastive */
    double *clip;     /* align_clip_save_len(B, D) */
    float theta[1], dtheta[1]; /* log(1 / temperature), and its gradient when learned */
    nn_optimizer topt;
} loss_rt;

typedef struct {
    const recipe *r;
    long seed;
    const train_opts *o;
    FILE *log;
    io_dataset *ds;
    model_rt *models; /* the trainable models; models[0] is the one-student form's student */
    int n_models;
    size_t n_train;   /* examples in the training split */
    const int32_t *ytrain, *ytest;
    int n_classes;
    int spatial;      /* the student's images get random crops or flips */
    const uint8_t *known; /* (ntrain) the data set's label_mask, NULL = every label is known */
    uint8_t *sel;     /* (ntrain) labels the run may see */
    size_t n_sel;
    teacher_rt *teachers;
    float *tlogits;   /* gathered cached logits (B, K) */
    uint32_t *pool, *order, *idx;
    size_t order_cap;
    int32_t *yb;
    uint8_t *mb;
    uint64_t *exb;
    loss_rt *losses;
    int n_losses;
    long global_step;
    double images, train_seconds;
    int epochs_done;
    char *yaml;       /* the effective recipe, stored in every checkpoint and the summary */
    seg_run seg;      /* task segment: masks, per-pixel losses, the dense teachers' windows */
    int threads;      /* threads of the last epoch run (in this process, or as the resume state
                       * recorded it) */
    runlock lock;     /* of the run folder, held while the run lives */
} run;

// ----------------------------------------------------------------------------------------------
// paths and files

static char *out_path(const run *R, const char *name) { return io_path_join(R->o->out_dir, name); }

static xd_status write_text(const char *path, const char *text, xd_err *e)
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

// ----------------------------------------------------------------------------------------------
// set-up

static xd_status open_labels(run *R, const char *split, const int32_t **y, size_t n, xd_err *e)
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

static xd_status setup_data(run *R, xd_err *e)
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
    const char *lab = r->data.label;
    char cname[IO_DATASET_NAME_MAX + 1];
    snprintf(cname, sizeof cname, "classes%s", lab + strlen("label"));
    const io_strings *cls = io_dataset_find_strings(R->ds, cname);
    int head = nn_model_default_head(student);
    R->n_classes = cls ? (int)cls->n : nn_model_node(student, head)->c;
    if ((s = open_labels(R, r->data.train, &R->ytrain, R->n_train, e)) != XD_OK) return s;
    if ((s = open_labels(R, r->data.test, &R->ytest, R->models[0].test.n, e)) != XD_OK) return s;
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
    R->sel = xd_xmalloc(R->n_train ? R->n_train : 1);
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
    return XD_OK;
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
static int cache_usable(const run *R, int ti, const char *view)
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
            if (L->teacher != ti) continue;
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
            if (L->teacher != ti) continue;
            if (L->label_map) return L->label_map;
            if (L->n_label_table) return NULL;
        }
    return trained;
}

static xd_status setup_teachers(run *R, xd_err *e)
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
        const char *view = rt->view ? rt->view : r->data.student_view;
        char *taug, *ttext;
        if ((s = ckpt_preprocessing(rt->checkpoint, &taug, &ttext, e)) != XD_OK)
            return xd_err_prefix(e, "teacher '%s'", rt->name);
        const char *aug = taug ? taug : r->data.augment, *text = ttext ? ttext : r->data.text;
        char *tlabel;
        if ((s = ckpt_trained_label(rt->checkpoint, &tlabel, e)) == XD_OK) {
            s = ckpt_check_fit(rt->checkpoint, &t->m, R->ds, r->data.train, view, aug,
                               teacher_label(r, i, tlabel), e);
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
        if (!t->shares || cache_usable(R, i, view)) {
            /* its own feed: for its view, or for filling the cache without augmentation */
            s = feed_open(&t->f, R->ds, r->data.train, view, &t->m, aug, text, e);
            free(taug);
            free(ttext);
            if (s != XD_OK) return xd_err_prefix(e, "teacher '%s'", rt->name);
            if (t->f.n != R->n_train)
                return xd_fail(e, XD_ESHAPE, "teacher '%s': view %s has %zu examples, the student's %zu",
                               rt->name, view, t->f.n, R->n_train);
            t->input = xd_xmalloc_aligned(feed_example_bytes(&t->f) * (size_t)B);
            t->idx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
        } else {
            free(taug);
            free(ttext);
        }
        if (cache_usable(R, i, view)) {
            const char *head = NULL;
            for (int sI = 0; sI < r->n_stages; sI++)
                for (int l = 0; l < r->stages[sI].n_losses; l++)
                    if (r->stages[sI].losses[l].teacher == i) head = r->stages[sI].losses[l].teacher_head;
            kd_cache_spec spec = {.dataset_path = r->data.path, .split = r->data.train, .view = view,
                                  .n = R->n_train, .head = head, .topk = 0, .tap = NULL,
                                  .log = R->o->quiet ? NULL : R->log};
            if ((s = kd_cache_load_or_build(&spec, &t->m, cache_fill, t, &t->cache, e)) != XD_OK)
                return xd_err_prefix(e, "teacher '%s' cache", rt->name);
            t->cached = 1;
            if (t->cache.rebuilt && !R->o->quiet) fprintf(R->log, "warning: %s\n", t->cache.warning);
        }
    }
    return XD_OK;
}

static xd_status setup_buffers(run *R)
{
    const int B = R->r->train.batch;
    R->pool = xd_xmalloc(sizeof(uint32_t) * (R->n_train ? R->n_train : 1));
    R->idx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
    R->yb = xd_xmalloc(sizeof(int32_t) * (size_t)B);
    R->mb = xd_xmalloc((size_t)B);
    R->exb = xd_xmalloc(sizeof(uint64_t) * (size_t)B);
    int kmax = 1;
    for (int i = 0; i < R->r->n_teachers; i++)
        if (R->teachers[i].cached && R->teachers[i].cache.K > kmax) kmax = R->teachers[i].cache.K;
    R->tlogits = xd_xmalloc(sizeof(float) * (size_t)B * kmax);
    return XD_OK;
}

// ----------------------------------------------------------------------------------------------
// stages and losses

static void free_losses(run *R)
{
    for (int i = 0; i < R->n_losses; i++) {
        loss_rt *l = &R->losses[i];
        if (l->has_proj) {
            nn_model_free(&l->proj);
            nn_opt_free(&l->popt);
        }
        free(l->a);
        free(l->b);
        free(l->c);
        free(l->ones);
        free(l->tq);
        free(l->clip);
        if (l->mapped) align_labelmap_free(&l->lm);
        nn_opt_free(&l->topt);
    }
    free(R->losses);
    R->losses = NULL;
    R->n_losses = 0;
}

/* A kd / hinton loss's label map: the recipe's list, or the co-occurrence of the data set's label
 * set `label.NAME` (the teacher's classes) with the run's label on the training split. Counting
 * reads every training example's two labels, so it stands for a taxonomy the data set ships
 * (subgroup -> group), not for labels of the run: the rows are the share of each teacher class's
 * examples in each student class, and a teacher class with no training example spreads evenly. */
static xd_status setup_label_map(run *R, loss_rt *l, int kt, int ks, xd_err *e)
{
    const recipe_loss *L = l->L;
    xd_status s;
    if (L->label_table) {
        if (L->n_label_table != kt)
            return xd_fail(e, XD_ESHAPE, "%s: label_map lists %d teacher classes, the teacher's "
                                         "head has %d", l->where, L->n_label_table, kt);
        s = align_labelmap_from_table(&l->lm, L->label_table, kt, ks, e);
    } else {
        if (ks != R->n_classes)
            return xd_fail(e, XD_ESHAPE, "%s: label_map %s maps onto the run's %d classes, the "
                                         "student's head has %d outputs", l->where, L->label_map,
                           R->n_classes, ks);
        char name[IO_DATASET_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s/%s", R->r->data.train, L->label_map);
        const io_tensor *t;
        if ((s = io_dataset_require(R->ds, name, IO_I32, 1, &t, e)) != XD_OK)
            return xd_err_prefix(e, "%s: label_map", l->where);
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
        if (s == XD_OK) s = align_labelmap_from_matrix(&l->lm, m, kt, ks, 1e-4f, e);
        free(m);
        free(cnt);
    }
    if (s != XD_OK) return xd_err_prefix(e, "%s: label_map", l->where);
    l->mapped = 1;
    l->tq = xd_xmalloc(sizeof(float) * (size_t)R->r->train.batch * (size_t)kt);
    return XD_OK;
}

/* The network at a loss's from end: a teacher's, or another trainable model's. */
static nn_model *from_net(run *R, const recipe_loss *L)
{
    return L->from_model >= 0 ? &R->models[L->from_model].m : &R->teachers[L->teacher].m;
}

/* For messages: "teacher 'NAME' (CHECKPOINT)" for a teacher (teacher >= 0), else "model 'NAME'"
 * for a model of a models: list, "the student" for the one-student form's. */
static const char *end_name(const run *R, int teacher, int model, char *buf, size_t n)
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

static xd_status setup_losses(run *R, int stage, xd_err *e)
{
    const recipe *r = R->r;
    const recipe_stage *st = &r->stages[stage];
    const int B = r->train.batch;
    free_losses(R);
    for (int t = 0; t < r->n_teachers; t++) {
        R->teachers[t].used = 0;
        for (int l = 0; l < st->n_losses; l++)
            R->teachers[t].used |= st->losses[l].teacher == t && st->losses[l].kind != RECIPE_LOSS_DENSE;
    }
    R->losses = xd_xcalloc((size_t)st->n_losses, sizeof *R->losses);
    R->n_losses = st->n_losses;
    for (int i = 0; i < st->n_losses; i++) {
        loss_rt *l = &R->losses[i];
        const recipe_loss *L = &st->losses[i];
        l->L = L;
        recipe_loss_where(r, stage, i, 1, l->where, sizeof l->where);
        const char *kname = recipe_loss_kind_names[L->kind];
        const int is_logit = L->kind == RECIPE_LOSS_CE || L->kind == RECIPE_LOSS_KD ||
                             L->kind == RECIPE_LOSS_HINTON || L->kind == RECIPE_LOSS_DENSE;
        nn_model *sm = &R->models[L->model].m;
        l->s_node = is_logit ? head_of(sm, L->head) : nn_model_find(sm, L->student_tap);
        char to[RECIPE_MAX_NAME + 32], from[RECIPE_MAX_NAME + 320];
        end_name(R, -1, L->model, to, sizeof to);
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
        if (L->teacher >= 0 || L->from_model >= 0) {
            teacher_rt *t = L->teacher >= 0 ? &R->teachers[L->teacher] : NULL;
            nn_model *fm = from_net(R, L);
            end_name(R, L->teacher, L->from_model, from, sizeof from);
            l->t_node = is_logit ? head_of(fm, L->teacher_head) : nn_model_find(fm, L->teacher_tap);
            if (l->t_node < 0)
                return xd_fail(e, XD_EARG, "%s: %s has no node '%s'", l->where, from,
                               is_logit ? (L->teacher_head ? L->teacher_head : "(default head)") : L->teacher_tap);
            const nn_node *tn = nn_model_node(fm, l->t_node);
            if (t && t->average && !t->avg[l->t_node])
                t->avg[l->t_node] = xd_xmalloc(sizeof(float) * (size_t)B * tn->act_n);
            if (L->label_map || L->label_table) {
                xd_status s = setup_label_map(R, l, (int)tn->act_n, (int)sn->act_n, e);
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
static void model_segments(run *R, int stage, int k)
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

static void stage_segments(run *R, int stage)
{
    for (int k = 0; k < R->n_models; k++) model_segments(R, stage, k);
}

/* The teacher's forward on examples idx[0..n) of the training split, in eval mode. aug: draw the
 * random crops, flips and languages of (seed, example, epoch), as the student's batch did. */
static xd_status teacher_forward(run *R, teacher_rt *t, const uint32_t *idx, int n, int aug,
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

static const float *teacher_out(run *R, int ti, int node, int B)
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

/* Projectors with projector_init procrustes or cca start from a map fitted on the student's and
 * the teacher's taps over the first training examples (in order, no augmentation, eval mode), so
 * the student starts from where the two spaces already agree. */
static xd_status init_projectors(run *R, xd_err *e)
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
        size_t n_ex = R->n_train < (size_t)(PROJ_FIT_ROWS / pos) ? R->n_train : (size_t)(PROJ_FIT_ROWS / pos);
        if (n_ex == 0) n_ex = 1;
        const int rows = (int)n_ex * pos;
        float *X = xd_xmalloc(sizeof(float) * (size_t)rows * (size_t)sn->c);
        float *Y = xd_xmalloc(sizeof(float) * (size_t)rows * (size_t)tn->c);
        for (size_t i0 = 0; i0 < n_ex && s == XD_OK; i0 += (size_t)B) {
            int n = n_ex - i0 < (size_t)B ? (int)(n_ex - i0) : B;
            for (int b = 0; b < n; b++) R->idx[b] = (uint32_t)(i0 + (size_t)b);
            /* a teacher that shares reads the first model's batch */
            if (t->shares && mk != &R->models[0] &&
                (s = feed_fill(&R->models[0].train, R->idx, n, 0, 0, 0, R->models[0].input, e)))
                break;
            if ((s = feed_fill(&mk->train, R->idx, n, 0, 0, 0, mk->input, e)) != XD_OK) break;
            nn_model_forward(&mk->m, mk->input, n, NULL);
            if ((s = teacher_forward(R, t, R->idx, n, 0, 0, e)) != XD_OK) break;
            memcpy(X + i0 * pos * sn->c, nn_model_out(&mk->m, l->s_node),
                   sizeof(float) * (size_t)n * sn->act_n);
            memcpy(Y + i0 * pos * tn->c, teacher_out(R, l->L->teacher, l->t_node, n),
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

/* The output of a loss's from end: a teacher's (cached, averaged or computed), or another
 * trainable model's from this step's forward. */
static const float *from_out(run *R, const loss_rt *l, int B)
{
    const recipe_loss *L = l->L;
    if (L->from_model >= 0) return nn_model_out(&R->models[L->from_model].m, l->t_node);
    return teacher_out(R, L->teacher, l->t_node, B);
}

/* Where the gradient of a loss's from end goes: NULL when it is detached (a teacher always is). */
static float *from_dout(run *R, const loss_rt *l)
{
    const recipe_loss *L = l->L;
    if (L->from_model < 0 || L->detach) return NULL;
    return nn_model_dout(&R->models[L->from_model].m, l->t_node);
}

/* Forward of every loss, gradient into the end that learns of each (and into the from end of a
 * loss that is not detached); returns the weighted total. */
static double apply_losses(run *R, int B, const nn_run *nr)
{
    double total = 0.0;
    for (int i = 0; i < R->n_losses; i++) {
        loss_rt *l = &R->losses[i];
        const recipe_loss *L = l->L;
        nn_model *sm = &R->models[L->model].m;
        const nn_node *sn = nn_model_node(sm, l->s_node);
        const int K = (int)sn->act_n;
        float *s = nn_model_out(sm, l->s_node);
        float w = L->weight;
        double v = 0.0;
        switch (L->kind) {
        case RECIPE_LOSS_CE:
            if (R->seg.on) {
                v = seg_ce(&R->seg, s, nn_model_dout(sm, l->s_node), R->idx, R->mb, B, w);
                break;
            }
            v = nn_ce_forward(l->a, s, R->yb, R->mb, B, K);
            nn_ce_backward(nn_model_dout(sm, l->s_node), l->a, R->yb, R->mb, B, K, w);
            break;
        case RECIPE_LOSS_KD:
        case RECIPE_LOSS_HINTON: {
            const float *t = from_out(R, l, B);
            if (l->mapped) {
                /* the teacher's distribution over its own classes, moved onto the student's */
                kd_soft_targets(l->tq, t, B, l->lm.kt, L->temperature);
                align_labelmap_apply(l->c, l->tq, &l->lm, B);
            } else {
                kd_soft_targets(l->c, t, B, K, L->temperature);
            }
            float *ds = nn_model_dout(sm, l->s_node);
            float *dt = from_dout(R, l);
            if (L->kind == RECIPE_LOSS_KD) {
                v = kd_forward(l->a, s, l->c, NULL, B, K, L->temperature);
                kd_backward(ds, l->a, l->c, NULL, B, K, L->temperature, w);
                if (dt) kd_backward_target(dt, t, s, NULL, B, K, L->temperature, w);
            } else {
                v = kd_hinton_forward(l->a, l->b, s, l->c, R->yb, R->mb, B, K, L->temperature, L->alpha);
                kd_hinton_backward(ds, l->a, l->b, l->c, R->yb, R->mb, B, K, L->temperature, L->alpha, w);
                /* the CE part does not depend on the from end */
                if (dt) kd_backward_target(dt, t, s, NULL, B, K, L->temperature, w * L->alpha);
            }
            break;
        }
        case RECIPE_LOSS_FEATURE:
        case RECIPE_LOSS_HINT:
        case RECIPE_LOSS_CONTRASTIVE: {
            const float *t = from_out(R, l, B);
            const nn_node *tn = nn_model_node(from_net(R, L), l->t_node);
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
            const nn_node *tn = nn_model_node(from_net(R, L), l->t_node);
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
        case RECIPE_LOSS_COUNT:
            XD_ASSERT(0);
        }
        l->sum += v;
        total += w * v;
    }
    return total;
}

// ----------------------------------------------------------------------------------------------
// evaluation

xd_status trainer_evaluate(nn_model *m, int head, feed *f, const int32_t *labels, void *input,
                           double *acc, xd_err *e)
{
    /* a text.* feed is scored on every (example, language) pair that has a text: the accuracy
     * over all languages, not over the first one */
    const int all_langs = f->kind == FEED_TEXT && f->n_langs > 1;
    const size_t rows = scores_rows(m, head, f, all_langs);
    int32_t *pred = xd_xmalloc(sizeof(int32_t) * (rows ? rows : 1));
    xd_status s = scores_predict(m, head, f, all_langs, input, pred, NULL, e);
    const nn_node *hn = nn_model_node(m, head);
    const size_t per = (size_t)hn->h * (size_t)hn->w; /* rows of one example: 1 for a classifier */
    size_t correct = 0, scored = 0;
    for (size_t r = 0; r < rows && s == XD_OK; r++) {
        if (pred[r] < 0) continue; /* a pair without text */
        scored++;
        correct += pred[r] == labels[r / per % f->n];
    }
    free(pred);
    *acc = scored ? (double)correct / (double)scored : 0.0;
    return s;
}

// ----------------------------------------------------------------------------------------------
// resume state: everything that makes the next epoch the same as in an uninterrupted run

typedef struct {
    io_tensor *t;
    int n, cap;
    char **names;
} tlist;

static void tl_add(tlist *l, const char *name, const float *data, size_t n)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->t = xd_xrealloc(l->t, sizeof *l->t * (size_t)l->cap);
        l->names = xd_xrealloc(l->names, sizeof *l->names * (size_t)l->cap);
    }
    l->names[l->n] = xd_xstrdup(name);
    int64_t shp[1] = {(int64_t)n};
    io_tensor_set(&l->t[l->n], l->names[l->n], IO_F32, 1, shp, data);
    l->n++;
}

static void tl_free(tlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->t);
}

/* Tensor names of model k's state: "what" alone in a one-model run, "NAME.what" with several. */
static void state_name(const run *R, int k, const char *what, char *name, size_t size)
{
    if (R->n_models > 1)
        snprintf(name, size, "%s.%s", R->models[k].rm->name, what);
    else
        snprintf(name, size, "%s", what);
}

/* Every model's parameters and state first (a stage boundary restores only those), then their
 * optimizers' moments, then the losses' projectors and temperatures. */
static void collect_state(run *R, tlist *l)
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
        if (!lr->has_proj) continue;
        snprintf(name, sizeof name, "proj%d.param", i);
        tl_add(l, name, lr->proj.param, lr->proj.n_param);
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

static xd_status save_resume(run *R, xd_err *e)
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
    io_kv meta[9 + 2 * RECIPE_MAX_MODELS] = {
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
    char *path = out_path(R, "resume.safetensors");
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

/* What load_resume reads: the counters (first, before anything is built), then either the model
 * alone (a run resumed at a stage boundary: the new stage starts a fresh optimizer) or everything
 * (resumed inside a stage, once its optimizer and projectors exist). */
enum { RESUME_COUNTERS, RESUME_MODEL, RESUME_ALL };

static xd_status load_resume(run *R, int what, xd_err *e)
{
    char *path = out_path(R, "resume.safetensors");
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
    if (what == RESUME_COUNTERS) {
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
        goto out;
    }
    tlist want = {0};
    collect_state(R, &want);
    /* a stage boundary restores the models only: their model.param and model.state come first */
    const int n_load = what == RESUME_MODEL ? 2 * R->n_models : want.n;
    for (int i = 0; i < n_load && s == XD_OK; i++) {
        const io_tensor *t = io_st_find(f, want.t[i].name);
        if (!t || t->dtype != IO_F32 || t->ndim != 1 || t->shape[0] != want.t[i].shape[0])
            s = xd_fail(e, XD_ESHAPE, "%s: '%s' is missing or does not fit this recipe's models",
                        io_st_path(f), want.t[i].name);
    }
    if (s == XD_OK) {
        for (int i = 0; i < n_load; i++) {
            const io_tensor *t = io_st_find(f, want.t[i].name);
            memcpy((void *)want.t[i].data, t->data, sizeof(float) * (size_t)t->shape[0]);
        }
        if (what == RESUME_ALL) {
            for (int k = 0; k < R->n_models; k++) R->models[k].opt.step = ostep;
            for (int i = 0; i < R->n_losses; i++) {
                if (R->losses[i].has_proj) R->losses[i].popt.step = ostep;
                R->losses[i].topt.step = ostep;
            }
        }
    }
    tl_free(&want);
out:
    io_st_close(f);
    return s;
}

// ----------------------------------------------------------------------------------------------
// metrics

/* The line is on the disk before the resume state of its epoch is written (run_epoch): the two
 * move together, since a resume drops the lines past the state's epoch (trim_metrics) and runs
 * that epoch again. A stop between the two (or a full disk) thus costs the epoch's rerun, never
 * its line; a half-written line does not parse and is dropped the same way. */
static xd_status append_metrics(run *R, json_t *line, xd_err *e)
{
    char *path = out_path(R, "metrics.jsonl");
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
static xd_status trim_metrics(run *R, xd_err *e)
{
    char *path = out_path(R, "metrics.jsonl");
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
    s = write_text(path, out, e);
    free(out);
    free(data);
    free(path);
    return s;
}

// ----------------------------------------------------------------------------------------------
// the run

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
static xd_status stop_nonfinite(run *R, int epoch, const char *what, xd_err *e)
{
    return xd_fail(e, XD_ENUM, "epoch %d, step %ld: %s; stopped (the last good checkpoint is kept)",
                   epoch + 1, R->global_step + 1, what);
}

/* buf (model k's gradients or parameters, in the parameter layout) must be finite; the message
 * names the first parameter that is not, its layer and model, `how` saying what made it so (with
 * %s for "the student's 'NAME' (layer 'L', KIND)", or "'NAME' of model 'M' (...)" when there are
 * several), and otherwise `overflow` (the norm overflowed with every value finite). */
static xd_status check_buffer(run *R, int k, int epoch, const float *buf, const char *how,
                              const char *overflow, xd_err *e)
{
    nn_model *m = &R->models[k].m;
    if (isfinite(nn_grad_norm(buf, m->n_param))) return XD_OK;
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
static void blame_nonfinite(run *R, int stage, int n, char *buf, size_t size)
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
                     end_name(R, -1, k, who, sizeof who), nd->name, nn_kind_name(nd->kind));
            return;
        }
    }
    for (int l = 0; l < R->n_losses; l++) {
        loss_rt *lr = &R->losses[l];
        if (lr->t_node >= 0 && lr->L->teacher >= 0) { /* a peer's outputs were checked above */
            const int t = lr->L->teacher;
            const nn_node *tn = nn_model_node(&R->teachers[t].m, lr->t_node);
            if (!all_finite(teacher_out(R, t, lr->t_node, n), (size_t)n * tn->act_n)) {
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

/* After a step's forward and backward on n examples of stage `stage`: the losses and every
 * model's gradients must be finite. */
static xd_status check_finite(run *R, int stage, int epoch, int n, double loss, xd_err *e)
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
    xd_status s = XD_OK;
    for (int k = 0; k < R->n_models && s == XD_OK; k++)
        s = check_buffer(R, k, epoch, R->models[k].m.grad, "the gradient of %s is not finite",
                         "the gradient norm overflows", e);
    return s;
}

/* After an optimizer step: a non-finite parameter stops the run before anything is saved. */
static xd_status check_params(run *R, int epoch, xd_err *e)
{
    xd_status s = XD_OK;
    for (int k = 0; k < R->n_models && s == XD_OK; k++)
        s = check_buffer(R, k, epoch, R->models[k].m.param, "the update made %s non-finite",
                         "the parameters overflow", e);
    return s;
}

/* The score on the test split that picks model k's best checkpoint: accuracy, or for a segment
 * task the mIoU (its pixel accuracy goes to pixel_acc). Stored in the model's acc too. */
static xd_status evaluate_test(run *R, int k, double *acc, xd_err *e)
{
    model_rt *mk = &R->models[k];
    const int head = nn_model_default_head(&mk->m);
    xd_status s;
    if (!R->seg.on) {
        s = trainer_evaluate(&mk->m, head, &mk->test, R->ytest, mk->eval_input, acc, e);
    } else {
        seg_scores sc;
        s = seg_evaluate(&mk->m, head, &mk->test, R->seg.test_mask, R->seg.n_classes,
                         mk->eval_input, &sc, e);
        *acc = sc.miou;
        mk->pixel_acc = sc.pixel_acc;
    }
    mk->acc = *acc;
    return s;
}

/* A loss that reads a teacher or another model can learn from unlabelled examples. */
static int stage_needs_teacher(const recipe_stage *st)
{
    for (int i = 0; i < st->n_losses; i++)
        if (st->losses[i].teacher >= 0 || st->losses[i].from_model >= 0) return 1;
    return 0;
}

/* Examples a stage walks each epoch: all of them when a teacher can teach unlabelled ones, else
 * those whose label the run may see. */
static size_t stage_pool(const run *R, int stage)
{
    return stage_needs_teacher(&R->r->stages[stage]) ? R->n_train : R->n_sel;
}

/* Batches per epoch of a stage. */
static int stage_steps(const run *R, int stage)
{
    const size_t B = (size_t)R->r->train.batch;
    if (R->r->train.steps_per_epoch > 0) return R->r->train.steps_per_epoch;
    return (int)((stage_pool(R, stage) + B - 1) / B);
}

/* The learning-rate schedule runs over the whole run (all stages), on the global step. */
static nn_sched_config run_schedule(const run *R)
{
    nn_sched_config sched = R->r->train.sched;
    if (R->r->train.sched_auto_steps) {
        long total = 0;
        for (int st = 0; st < R->r->n_stages; st++)
            total += (long)stage_steps(R, st) * R->r->stages[st].epochs;
        sched.total_steps = total > 0 ? total : 1;
    }
    return sched;
}

/* Each model reads its view of the batch R->idx[0..n) (augmented from (seed, example, epoch)) and
 * runs forward in training mode; model k > 0 draws its dropout from its own seed. */
static xd_status models_forward(run *R, int n, int epoch, xd_err *e)
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
static float model_lr(const run *R, int k, float lr)
{
    const recipe_model *rm = R->models[k].rm;
    if (!rm->own_opt) return lr;
    return (float)((double)lr * rm->opt.lr / R->r->train.opt.lr);
}

/* Training accuracy on the labelled rows of the batch, from model k's default head. */
static void count_train_correct(run *R, int k, int n)
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

/* Model k's last checkpoint, and its best when this epoch's evaluation (mk->acc) improved. */
static xd_status save_checkpoints(run *R, int k, int epoch, int evaluated, xd_err *e)
{
    model_rt *mk = &R->models[k];
    char ep[16], sd[24], ac[32];
    snprintf(ep, sizeof ep, "%d", epoch + 1);
    snprintf(sd, sizeof sd, "%ld", R->seed);
    snprintf(ac, sizeof ac, "%.6f", mk->acc);
    /* with several models, each checkpoint says which one it holds */
    io_kv meta[5] = {{"xdistill.recipe", R->yaml}, {"epoch", ep}, {"seed", sd}, {"test_acc", ac},
                     {"xdistill.model_name", mk->rm->name}};
    const size_t n_meta = R->n_models > 1 ? 5 : 4;
    char *name = models_file(R->r, k, "last"), *last = out_path(R, name);
    xd_status s = ckpt_save_trained(last, &mk->m, meta, n_meta, &mk->train, R->ds,
                                    R->r->data.label, e);
    free(last);
    free(name);
    if (s == XD_OK && evaluated && (mk->best_epoch == 0 || mk->acc > mk->best_acc)) {
        mk->best_acc = mk->acc;
        mk->best_epoch = epoch + 1;
        name = models_file(R->r, k, "best");
        char *best = out_path(R, name);
        s = ckpt_save_trained(best, &mk->m, meta, n_meta, &mk->train, R->ds,
                              R->r->data.label, e);
        free(best);
        free(name);
    }
    return s;
}

/* A metrics line's scores of every model of a run with several: train_acc.NAME, test_acc.NAME. */
static void epoch_model_metrics(const run *R, json_t *j, int evaluated)
{
    for (int k = 0; k < R->n_models; k++) {
        const model_rt *mk = &R->models[k];
        char key[RECIPE_MAX_NAME + 16];
        snprintf(key, sizeof key, "train_acc.%s", mk->rm->name);
        json_object_set_new(j, key, mk->labelled ? json_real((double)mk->correct / mk->labelled)
                                                 : json_null());
        snprintf(key, sizeof key, "test_acc.%s", mk->rm->name);
        json_object_set_new(j, key, evaluated ? json_real(mk->acc) : json_null());
    }
}

/* "81.20%", or with several models "a 81.20%, b 79.02%" (best: each one's best score), in a
 * static buffer. */
static const char *models_scores(const run *R, int best)
{
    static char buf[RECIPE_MAX_MODELS * (RECIPE_MAX_NAME + 16)];
    size_t at = 0;
    buf[0] = '\0';
    for (int k = 0; k < R->n_models; k++) {
        const model_rt *mk = &R->models[k];
        const double v = 100.0 * (best ? mk->best_acc : mk->acc);
        if (R->n_models == 1)
            at += (size_t)snprintf(buf + at, sizeof buf - at, "%.2f%%", v);
        else
            at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s %.2f%%", k ? ", " : "",
                                   mk->rm->name, v);
    }
    return buf;
}

static xd_status run_epoch(run *R, int stage, int epoch, xd_err *e)
{
    const recipe *r = R->r;
    const recipe_stage *st = &r->stages[stage];
    const int B = r->train.batch;
    /* the pool: every example when a teacher can teach it, else the labelled ones */
    size_t n_pool = 0;
    int all = stage_needs_teacher(st);
    for (size_t i = 0; i < R->n_train; i++)
        if (all || R->sel[i]) R->pool[n_pool++] = (uint32_t)i;
    XD_ASSERT(n_pool == stage_pool(R, stage));
    if (n_pool == 0)
        return xd_fail(e, XD_EARG, "%s: stage %d has no example to learn from: none of the training "
                                   "examples has a label the run may see (label_mask, label_fraction, "
                                   "labels_per_class) and no loss reads a teacher",
                       r->data.path, stage + 1);
    /* the epoch's order: passes over the pool, each reshuffled, until the steps are filled */
    const int steps = stage_steps(R, stage);
    const size_t n_order = r->train.steps_per_epoch > 0 ? (size_t)steps * (size_t)B : n_pool;
    if (n_order > R->order_cap) {
        R->order = xd_xrealloc(R->order, sizeof(uint32_t) * n_order);
        R->order_cap = n_order;
    }
    for (size_t done = 0, pass = 0; done < n_order; pass++) {
        xd_rng order = xd_rng_make((uint64_t)R->seed, (uint64_t)epoch + (pass << 32), XD_RNG_SHUFFLE);
        xd_rng_shuffle(&order, R->pool, (uint32_t)n_pool);
        size_t take = n_order - done < n_pool ? n_order - done : n_pool;
        memcpy(R->order + done, R->pool, sizeof(uint32_t) * take);
        done += take;
    }
    const nn_sched_config sched = run_schedule(R);
    for (int i = 0; i < R->n_losses; i++) R->losses[i].sum = 0.0;
    R->threads = xd_threads_get();

    progress pg;
    progress_init(&pg, R->log, R->o->quiet, R->o->span);
    char label[64];
    snprintf(label, sizeof label, "%s", r->name);
    progress_epoch(&pg, label, epoch + 1, r->train.epochs, steps);
    double t0 = progress_now(), loss_sum = 0.0;
    for (int k = 0; k < R->n_models; k++) R->models[k].correct = R->models[k].labelled = 0;
    for (int step = 0; step < steps; step++) {
        size_t i0 = (size_t)step * (size_t)B;
        int n = n_order - i0 < (size_t)B ? (int)(n_order - i0) : B;
        for (int b = 0; b < n; b++) {
            uint32_t i = R->order[i0 + (size_t)b];
            R->idx[b] = i;
            R->yb[b] = R->ytrain[i];
            R->mb[b] = R->sel[i];
            R->exb[b] = i;
        }
        /* every model's forward before any loss or update: a peer's targets are the other's
         * predictions of this very step */
        xd_status s = models_forward(R, n, epoch, e);
        if (s != XD_OK) return s;
        for (int t = 0; t < r->n_teachers; t++) {
            teacher_rt *tr = &R->teachers[t];
            if (!tr->used || tr->cached) continue;
            /* random crops and flips only when the student gets them too (same stream) */
            int aug = R->spatial || tr->f.kind == FEED_TEXT;
            if ((s = teacher_forward(R, tr, R->idx, n, aug, (uint64_t)epoch, e)) != XD_OK) return s;
        }
        for (int k = 0; k < R->n_models; k++) nn_model_zero_grad(&R->models[k].m);
        nn_run nr = {.training = 1, .seed = R->models[0].seed, .step = (uint64_t)R->global_step,
                     .example = R->exb};
        double loss = apply_losses(R, n, &nr);
        for (int k = 0; k < R->n_models; k++) nn_model_backward(&R->models[k].m);
        if ((s = check_finite(R, stage, epoch, n, loss, e)) != XD_OK) return s;
        float lr = nn_sched_lr(&sched, R->global_step);
        for (int k = 0; k < R->n_models; k++) {
            model_rt *mk = &R->models[k];
            nn_opt_step(&mk->opt, mk->m.param, mk->m.grad, mk->segs, mk->m.n_segs, model_lr(R, k, lr));
        }
        if ((s = check_params(R, epoch, e)) != XD_OK) return s;
        for (int l = 0; l < R->n_losses; l++) {
            loss_rt *lr_ = &R->losses[l];
            if (lr_->has_proj && !lr_->L->projector_frozen)
                nn_opt_step(&lr_->popt, lr_->proj.param, lr_->proj.grad, lr_->proj.segs,
                            lr_->proj.n_segs, lr);
            if (lr_->L->kind == RECIPE_LOSS_CONTRASTIVE && lr_->L->learn_temperature) {
                nn_opt_step(&lr_->topt, lr_->theta, lr_->dtheta, NULL, 0, lr);
                align_clip_clamp_theta(lr_->theta);
            }
        }
        for (int k = 0; k < R->n_models; k++) count_train_correct(R, k, n);
        loss_sum += loss;
        R->global_step++;
        R->images += n;
        progress_step(&pg, step + 1, loss_sum / (step + 1), (double)(i0 + (size_t)n));
    }
    double secs = progress_now() - t0;
    R->train_seconds += secs;

    /* evaluate, save, log */
    int evaluate = r->train.eval_every > 0 ? ((epoch + 1) % r->train.eval_every == 0) : 0;
    evaluate |= epoch + 1 == r->train.epochs;
    R->epochs_done = epoch + 1;
    xd_status s = XD_OK;
    for (int k = 0; k < R->n_models && s == XD_OK; k++) {
        double acc = 0.0;
        if (evaluate && (s = evaluate_test(R, k, &acc, e)) != XD_OK) return s;
        R->models[k].acc = acc;
        s = save_checkpoints(R, k, epoch, evaluate, e);
    }
    if (s != XD_OK) return s;

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
    if (R->n_models > 1) {
        epoch_model_metrics(R, j, evaluate);
    } else {
        const model_rt *m0 = &R->models[0];
        json_object_set_new(j, "train_acc", m0->labelled ? json_real((double)m0->correct / m0->labelled)
                                                         : json_null());
        if (R->seg.on) {
            json_object_set_new(j, "test_miou", evaluate ? json_real(acc) : json_null());
            json_object_set_new(j, "test_pixel_acc", evaluate ? json_real(m0->pixel_acc) : json_null());
        } else {
            json_object_set_new(j, "test_acc", evaluate ? json_real(acc) : json_null());
        }
    }
    json_object_set_new(j, "seconds", json_real(secs));
    json_object_set_new(j, "images_per_s", json_real(secs > 0 ? (double)n_order / secs : 0.0));
    json_object_set_new(j, "threads", json_integer(R->threads));
    /* the line first, then the state that says the epoch is done (see append_metrics) */
    s = append_metrics(R, j, e);
    json_decref(j);
    if (s == XD_OK) s = save_resume(R, e);
    char line[256 + RECIPE_MAX_MODELS * (RECIPE_MAX_NAME + 16)];
    if (evaluate && R->seg.on)
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, test mIoU %.2f%%, pixel accuracy "
                 "%.2f%%, %.1f s, %.0f img/s", r->name, epoch + 1, r->train.epochs,
                 steps ? loss_sum / steps : 0.0, 100.0 * acc, 100.0 * R->models[0].pixel_acc, secs,
                 secs > 0 ? (double)n_order / secs : 0.0);
    else if (evaluate)
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, test accuracy %s, %.1f s, %.0f img/s",
                 r->name, epoch + 1, r->train.epochs, steps ? loss_sum / steps : 0.0,
                 models_scores(R, 0), secs, secs > 0 ? (double)n_order / secs : 0.0);
    else
        snprintf(line, sizeof line, "%s epoch %d/%d: loss %.4f, %.1f s", r->name, epoch + 1,
                 r->train.epochs, steps ? loss_sum / steps : 0.0, secs);
    progress_done(&pg, line);
    return s;
}

/* With several models, summary.json's "models": each one's final and best score and best epoch
 * (the top-level scores are the first model's). */
static void summary_models(json_t *j, const train_result *res, const char *score)
{
    json_t *all = json_object();
    for (int k = 0; k < res->n_models; k++) {
        const train_model_result *mr = &res->models[k];
        json_t *o = json_object();
        char key[48];
        snprintf(key, sizeof key, "final_%s", score);
        json_object_set_new(o, key, res->finished ? json_real(mr->final_acc) : json_null());
        snprintf(key, sizeof key, "best_%s", score);
        json_object_set_new(o, key, json_real(mr->best_acc));
        json_object_set_new(o, "best_epoch", json_integer(mr->best_epoch));
        json_object_set_new(all, mr->name, o);
    }
    json_object_set_new(j, "models", all);
}

static xd_status write_summary(run *R, const train_result *res, xd_err *e)
{
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(R->r->name));
    json_object_set_new(j, "seed", json_integer(R->seed));
    json_object_set_new(j, "epochs", json_integer(res->epochs_done));
    json_object_set_new(j, "finished", json_boolean(res->finished));
    /* a segment task's score is the mIoU; its pixel accuracy comes with it */
    const char *score = R->seg.on ? "test_miou" : "test_acc";
    char key[32];
    snprintf(key, sizeof key, "final_%s", score);
    json_object_set_new(j, key, res->finished ? json_real(res->final_acc) : json_null());
    if (R->seg.on)
        json_object_set_new(j, "final_test_pixel_acc",
                            res->finished ? json_real(res->final_pixel_acc) : json_null());
    snprintf(key, sizeof key, "best_%s", score);
    json_object_set_new(j, key, json_real(res->best_acc));
    json_object_set_new(j, "best_epoch", json_integer(res->best_epoch));
    if (R->n_models > 1) summary_models(j, res, key + strlen("best_"));
    json_object_set_new(j, "train_seconds", json_real(res->seconds));
    json_object_set_new(j, "images_per_s", json_real(res->images_per_s));
    json_object_set_new(j, "labels_used", json_integer((json_int_t)R->n_sel));
    json_object_set_new(j, "threads", json_integer(R->threads));
    json_object_set_new(j, "gemm_kernel", json_string(nn_sgemm_kernel()));
    json_object_set_new(j, "blas_kernel", json_string(xd_blas_kernel()));
    json_object_set_new(j, "recipe", json_string(R->yaml));
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    size_t len = strlen(text);
    text = xd_xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    char *path = out_path(R, "summary.json");
    xd_status s = write_text(path, text, e);
    free(path);
    free(text);
    json_decref(j);
    return s;
}

/* Resuming: the folder's run must be the one `as_run` describes, up to the keys that may change
 * on resume; *changed tells whether such a key did (the folder's recipe.yaml is then rewritten,
 * so the run records what it continued with). */
static xd_status check_resume_recipe(run *R, const recipe *as_run, int *changed, xd_err *e)
{
    char *path = out_path(R, "recipe.yaml");
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

/* A fresh run, once its first stage is set up (so a recipe that cannot run leaves the folder as
 * it was): nothing of an earlier run in the folder may be taken for this one's. */
static xd_status start_fresh(run *R, xd_err *e)
{
    static const char *const old[] = {"metrics.jsonl", "summary.json", "best.safetensors",
                                      "last.safetensors", "resume.safetensors"};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) {
        char *p = out_path(R, old[i]);
        remove(p);
        free(p);
    }
    static const char *const per_model[] = {"best", "last"};
    for (int k = 0; k < R->n_models && R->n_models > 1; k++)
        for (int i = 0; i < 2; i++) {
            char *name = models_file(R->r, k, per_model[i]);
            char *p = out_path(R, name);
            remove(p);
            free(p);
            free(name);
        }
    char *ypath = out_path(R, "recipe.yaml");
    xd_status s = write_text(ypath, R->yaml, e);
    free(ypath);
    return s;
}

static void run_free(run *R)
{
    free_losses(R);
    for (int i = 0; i < R->r->n_teachers && R->teachers; i++) {
        teacher_rt *t = &R->teachers[i];
        if (t->cached) kd_cache_close(&t->cache);
        free(t->idx);
        for (int k = 0; t->avg && k < t->m.n_nodes; k++) free(t->avg[k]);
        free(t->avg);
        free(t->present);
        free(t->count);
        nn_model_free(&t->m);
        feed_close(&t->f);
        free(t->input);
    }
    free(R->teachers);
    for (int k = 0; k < R->n_models; k++) models_close(&R->models[k]);
    free(R->models);
    if (R->ds) io_dataset_close(R->ds);
    free(R->sel);
    free(R->tlogits);
    free(R->pool);
    free(R->order);
    free(R->idx);
    free(R->yb);
    free(R->mb);
    free(R->exb);
    free(R->yaml);
    seg_close(&R->seg);
}

xd_status trainer_run(const recipe *r, long seed, const train_opts *o, train_result *res,
                      xd_err *e)
{
    run R;
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
    R.lock.fd = -1;
    res->seed = seed;
    const int threads_before = xd_threads_get();
    if (r->train.threads > 0) xd_threads_set(r->train.threads);
    R.threads = xd_threads_get();
    xd_status s = XD_OK;
    int recipe_changed = 0;
    /* another recipe's folder is an error; a finished run stays exactly as it is */
    if (o->resume && ((s = check_resume_recipe(&R, &as_run, &recipe_changed, e)) != XD_OK ||
                      (res->unchanged = runs_read_finished(o->out_dir, res))))
        goto out;
    if ((s = io_mkdir_p(o->out_dir, e)) != XD_OK) goto out;
    if ((s = runlock_take(&R.lock, o->out_dir, e)) != XD_OK) goto out;
    R.models = xd_xcalloc((size_t)r->n_models, sizeof *R.models);
    R.n_models = r->n_models;
    for (int k = 0; k < r->n_models; k++)
        if ((s = models_build(&R.models[k], r, k, seed, e)) != XD_OK) goto out;
    if ((s = setup_data(&R, e)) != XD_OK) goto out;
    if ((s = setup_teachers(&R, e)) != XD_OK) goto out;
    if ((s = setup_buffers(&R)) != XD_OK) goto out;
    if (o->resume) {
        if ((s = load_resume(&R, RESUME_COUNTERS, e)) != XD_OK) goto out;
        if ((s = trim_metrics(&R, e)) != XD_OK) goto out;
        if (recipe_changed) {
            char *ypath = out_path(&R, "recipe.yaml");
            s = write_text(ypath, R.yaml, e);
            free(ypath);
            if (s != XD_OK) goto out;
        }
        /* every epoch done, the summary not yet written: it is made from the trained weights */
        if (R.epochs_done >= r->train.epochs && (s = load_resume(&R, RESUME_MODEL, e)) != XD_OK)
            goto out;
    }

    int epoch0 = 0;
    for (int stage = 0; stage < r->n_stages && s == XD_OK; stage++) {
        const int stage_end = epoch0 + r->stages[stage].epochs;
        if (R.epochs_done >= stage_end) {
            epoch0 = stage_end;
            continue;
        }
        if ((s = setup_losses(&R, stage, e)) != XD_OK) break;
        stage_segments(&R, stage);
        for (int k = 0; k < R.n_models && s == XD_OK; k++) {
            model_rt *mk = &R.models[k];
            nn_opt_free(&mk->opt);
            s = nn_opt_init(&mk->opt, &mk->rm->opt, mk->m.n_param, e);
        }
        if (s != XD_OK) break;
        if (o->resume && R.epochs_done > epoch0) {
            /* resuming inside this stage: its optimizer and projectors come back too */
            if ((s = load_resume(&R, RESUME_ALL, e)) != XD_OK) break;
        } else if (o->resume && R.epochs_done == epoch0 && epoch0 > 0) {
            if ((s = load_resume(&R, RESUME_MODEL, e)) != XD_OK) break;
        }
        if (!(o->resume && R.epochs_done > epoch0) && (s = init_projectors(&R, e)) != XD_OK) break;
        if (!o->resume && stage == 0 && (s = start_fresh(&R, e)) != XD_OK) break;
        for (int ep = R.epochs_done > epoch0 ? R.epochs_done : epoch0; ep < stage_end; ep++) {
            if (o->stop_after > 0 && R.epochs_done >= o->stop_after) goto stopped;
            if ((s = run_epoch(&R, stage, ep, e)) != XD_OK) break;
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
            mr->best_epoch = R.models[k].best_epoch;
            if (res->finished) s = evaluate_test(&R, k, &mr->final_acc, e);
        }
        res->final_acc = res->models[0].final_acc;
        res->best_acc = res->models[0].best_acc;
        res->best_epoch = res->models[0].best_epoch;
        res->segment = R.seg.on;
        res->final_pixel_acc = R.models[0].pixel_acc;
        if (s == XD_OK && res->finished && R.seg.on) {
            char *dir = out_path(&R, "overlays");
            model_rt *m0 = &R.models[0];
            s = seg_write_overlays(&m0->m, nn_model_default_head(&m0->m), &m0->test,
                                   R.seg.test_image, R.seg.test_mask, SEG_OVERLAYS, dir, e);
            free(dir);
        }
        if (s == XD_OK) s = write_summary(&R, res, e);
    }
out:
    run_free(&R);
    runlock_release(&R.lock);
    if (r->train.threads > 0) xd_threads_set(threads_before);
    return s;
}
