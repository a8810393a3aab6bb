/* Checkpoints (see checkpoint.h). */
#include "distill/checkpoint.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "distill/labels.h"
#include "distill/recipe.h"
#include "io/safetensors.h"
#include "modalities/image/augment.h"
#include "modalities/image/resize.h"
#include "modalities/text/utf8.h"
#include "nn/quant.h"

#define META_FORMAT "format"
#define META_VERSION "xdistill.version"
#define META_IMAGES "xdistill.images"

/* The model's entries as tensor descriptors (data pointing into the model, or NULL). */
static io_tensor *model_tensors(const nn_model *m, int with_data)
{
    io_tensor *t = xd_xcalloc((size_t)m->n_params, sizeof *t);
    for (int i = 0; i < m->n_params; i++) {
        const nn_param *p = &m->params[i];
        const float *data = (p->state ? m->state : m->param) + p->off;
        io_tensor_set(&t[i], p->name, IO_F32, p->ndim, p->shape, with_data ? data : NULL);
    }
    return t;
}

/* The metadata every checkpoint starts with, then the caller's: a new array of n_meta + 3 (+ 1
 * with quant, the "xdistill.quant" entry). */
static io_kv *base_meta(const nn_model *m, const char *quant, const io_kv *meta, size_t n_meta,
                        size_t *n)
{
    io_kv *all = xd_xcalloc(n_meta + 4, sizeof *all);
    *n = 0;
    all[(*n)++] = (io_kv){META_FORMAT, "xdistill"};
    all[(*n)++] = (io_kv){META_VERSION, XD_VERSION};
    all[(*n)++] = (io_kv){CKPT_META_MODEL, m->desc};
    if (quant) all[(*n)++] = (io_kv){CKPT_META_QUANT, quant};
    for (size_t i = 0; i < n_meta; i++) all[(*n)++] = meta[i];
    return all;
}

xd_status ckpt_save(const char *path, const nn_model *m, const io_kv *meta, size_t n_meta,
                    xd_err *e)
{
    for (int i = 0; i < m->n_params; i++) {
        const nn_param *p = &m->params[i];
        const float *v = (p->state ? m->state : m->param) + p->off;
        for (size_t j = 0; j < p->n; j++)
            if (!isfinite(v[j]))
                return xd_fail(e, XD_ENUM, "%s: not written: '%s' holds a non-finite value at index %zu",
                               path, p->name, j);
    }
    size_t n_all;
    io_kv *all = base_meta(m, NULL, meta, n_meta, &n_all);
    io_tensor *t = model_tensors(m, 1);
    xd_status s = io_st_write(path, t, (size_t)m->n_params, all, n_all, e);
    free(t);
    free(all);
    return s;
}

/* Whether m's default head is a map (H, W, classes): a segmentation model. */
static int head_is_map(const nn_model *m)
{
    return nn_node_is_map(nn_model_node(m, nn_model_default_head(m)));
}

int ckpt_head_classes(const nn_model *m, int head)
{
    const nn_node *hn = nn_model_node(m, head);
    return nn_node_is_map(hn) ? hn->c : (int)hn->act_n;
}

/* The number of classes of m's default head. */
static size_t head_classes(const nn_model *m)
{
    return (size_t)ckpt_head_classes(m, nn_model_default_head(m));
}

/* The data set's names of the classes of m's default head: classes.mask for a map, else those
 * of the label set `label` (labels_class_table); NULL when it has none. */
static const io_strings *head_class_table(const nn_model *m, const io_dataset *ds,
                                          const char *label)
{
    return head_is_map(m) ? io_dataset_find_strings(ds, "classes.mask")
                          : labels_class_table(ds, label);
}

xd_status ckpt_save_trained(const char *path, const nn_model *m, const io_kv *meta, size_t n_meta,
                            const feed *f, const io_dataset *ds, const char *label, xd_err *e)
{
    io_kv *all = xd_xcalloc(n_meta + 2, sizeof *all);
    size_t n = n_meta;
    if (n_meta) memcpy(all, meta, n_meta * sizeof *all);
    char images[64];
    if (f->kind == FEED_IMAGE) {
        snprintf(images, sizeof images, "%dx%dx%d", f->h, f->w, f->c);
        all[n++] = (io_kv){META_IMAGES, images};
    }
    const io_strings *cls = head_class_table(m, ds, label);
    char *names = NULL;
    if (cls) {
        const char **table = labels_table_names(cls);
        names = ckpt_classes_json(table, cls->n);
        free(table);
        if (!names) {
            free(all);
            return xd_fail(e, XD_ENOMEM, "%s: no memory for the class names", path);
        }
        all[n++] = (io_kv){CKPT_META_CLASSES, names};
    }
    xd_status s = ckpt_save(path, m, all, n, e);
    free(names);
    free(all);
    return s;
}

/* Every parameter of m is in f with its shape and type (m may be only planned). */
static xd_status check_in(io_st_file *f, const nn_model *m, xd_err *e)
{
    io_tensor *want = model_tensors(m, 0);
    xd_status s = io_st_check(f, want, (size_t)m->n_params, e);
    free(want);
    return s;
}

/* 1 when p's name ends in suffix (".running_var", ".range"). */
static int param_is(const nn_param *p, const char *suffix)
{
    const char *dot = strrchr(p->name, '.');
    return dot && strcmp(dot, suffix) == 0;
}

xd_status ckpt_param_values_ok(const char *file, const nn_param *p, const float *src, int int8,
                               xd_err *e)
{
    const int var = p->state && param_is(p, ".running_var");
    const int range = int8 && p->state && param_is(p, ".range");
    for (size_t j = 0; j < p->n; j++) {
        const char *rule = !isfinite(src[j])           ? "values must be finite"
                           : var && src[j] < 0.0f      ? "a running variance must be >= 0"
                           : range && !(src[j] > 0.0f) ? "a range must be a finite number > 0"
                                                       : NULL;
        if (rule)
            return xd_fail(e, int8 ? XD_EFORMAT : XD_ENUM, "%s: tensor '%s' holds %g at index "
                           "%zu; %s", file, p->name, (double)src[j], j, rule);
    }
    return XD_OK;
}

/* p's values in f (present, its shape and type checked) */
static xd_status values_ok(io_st_file *f, const nn_param *p, int int8, xd_err *e)
{
    return ckpt_param_values_ok(io_st_path(f), p, io_st_find(f, p->name)->data, int8, e);
}

static void values_copy(io_st_file *f, nn_model *m, const nn_param *p)
{
    memcpy(nn_model_param_data(m, p), io_st_find(f, p->name)->data, sizeof(float) * p->n);
}

/* Every entry of m from f, all checked before any is copied: a refused file leaves m as it was. */
static xd_status copy_in(io_st_file *f, nn_model *m, xd_err *e)
{
    xd_status s = check_in(f, m, e);
    for (int i = 0; i < m->n_params && s == XD_OK; i++) s = values_ok(f, &m->params[i], 0, e);
    for (int i = 0; i < m->n_params && s == XD_OK; i++) values_copy(f, m, &m->params[i]);
    return s;
}

xd_status ckpt_load_into(const char *path, nn_model *m, xd_err *e)
{
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    if (s != XD_OK) return s;
    s = copy_in(f, m, e);
    io_st_close(f);
    return s;
}

/* ckpt_load_init's checks, values included, and with copy its copying (m may be only planned
 * without) */
static xd_status init_from(const char *path, nn_model *m, int copy, xd_err *e)
{
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    if (s != XD_OK) return s;
    const char *fmt = io_st_meta(f, META_FORMAT);
    if (!fmt || strcmp(fmt, "xdistill") != 0)
        s = xd_fail(e, XD_EFORMAT, "%s: not an xdistill checkpoint (no metadata '%s')", path,
                    META_FORMAT);
    else if (io_st_meta(f, CKPT_META_QUANT))
        s = xd_fail(e, XD_EFORMAT, "%s: an int8 checkpoint cannot start training (give the float "
                                   "or fake-quant checkpoint it was made from)", path);
    for (int i = 0; i < m->n_params && s == XD_OK; i++) {
        const nn_param *p = &m->params[i];
        const io_tensor *t = io_st_find(f, p->name);
        int same = t && t->dtype == IO_F32 && t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!t && !p->state) {
            s = xd_fail(e, XD_EFORMAT, "%s: no tensor '%s' (every weight of the model must be in "
                                       "the checkpoint it starts from)", path, p->name);
        } else if (t && !same) {
            char got[256], want[256];
            io_shape_format(t->ndim, t->shape, got, sizeof got);
            io_shape_format(p->ndim, p->shape, want, sizeof want);
            s = xd_fail(e, XD_ESHAPE, "%s: tensor '%s' is %s %s, the model's is F32 %s", path,
                        p->name, io_dtype_name(t->dtype), got, want);
        } else if (t) {
            s = values_ok(f, p, 0, e);
        }
    }
    /* copied once all are checked, as copy_in */
    for (int i = 0; i < m->n_params && s == XD_OK && copy; i++)
        if (io_st_find(f, m->params[i].name)) values_copy(f, m, &m->params[i]);
    io_st_close(f);
    return s;
}

xd_status ckpt_check_init(const char *path, const nn_model *m, xd_err *e)
{
    return init_from(path, (nn_model *)m, 0, e);
}

xd_status ckpt_load_init(const char *path, nn_model *m, xd_err *e)
{
    return init_from(path, m, 1, e);
}

// ----------------------------------------------------------------------------------------------
// int8 checkpoints

/* The int8 tensors of a quantised model: every entry as in a float checkpoint, except that the
 * weight of a layer that runs on integers is I8 and is followed by "NAME.weight_scale" (F32, one
 * per output). names: room for the scale tensors' names. */
static io_tensor *int8_tensors(const nn_model *m, int with_data, char (*names)[NN_NAME_LEN + 32],
                               size_t *n)
{
    io_tensor *t = xd_xcalloc(2 * (size_t)m->n_params, sizeof *t), *fl = model_tensors(m, with_data);
    *n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const nn_param *p = &m->params[i];
        t[(*n)++] = fl[i];
        const int node = nn_model_param_node(m, p->name);
        if (p->state || node < 0 || !nn_quant_runs_int(m, node) ||
            strcmp(strrchr(p->name, '.'), ".weight") != 0)
            continue;
        const float *scale = NULL;
        const int8_t *q = with_data ? nn_qengine_weights(m, node, &scale) : NULL;
        io_tensor_set(&t[*n - 1], p->name, IO_I8, p->ndim, p->shape, q);
        snprintf(names[i], sizeof names[i], "%s_scale", p->name);
        const int64_t oc = p->shape[0];
        io_tensor_set(&t[(*n)++], names[i], IO_F32, 1, &oc, scale);
    }
    free(fl);
    return t;
}

xd_status ckpt_save_int8(const char *path, const nn_model *m, const io_kv *meta, size_t n_meta,
                         xd_err *e)
{
    XD_ASSERT(m->qengine);
    char(*names)[NN_NAME_LEN + 32] = xd_xcalloc((size_t)m->n_params, sizeof *names);
    size_t n, n_all;
    io_tensor *t = int8_tensors(m, 1, names, &n);
    io_kv *all = base_meta(m, CKPT_QUANT_INT8, meta, n_meta, &n_all);
    xd_status s = io_st_write(path, t, n, all, n_all, e);
    free(all);
    free(t);
    free(names);
    return s;
}

/* ckpt_save or (int8) ckpt_save_int8 with the metadata of source that is not about the model. */
static xd_status save_like(const char *path, const nn_model *m, const char *source, int int8,
                           xd_err *e)
{
    static const char *const own[] = {META_FORMAT, META_VERSION, CKPT_META_MODEL, CKPT_META_QUANT};
    io_st_file *f;
    xd_status s = io_st_open(source, &f, e);
    if (s != XD_OK) return s;
    io_kv *meta = xd_xcalloc(io_st_meta_count(f) + 1, sizeof *meta);
    size_t n = 0;
    for (size_t i = 0; i < io_st_meta_count(f); i++) {
        const io_kv *kv = io_st_meta_at(f, i);
        int skip = 0;
        for (size_t k = 0; k < sizeof own / sizeof own[0]; k++) skip |= strcmp(kv->key, own[k]) == 0;
        if (!skip) meta[n++] = *kv;
    }
    s = int8 ? ckpt_save_int8(path, m, meta, n, e) : ckpt_save(path, m, meta, n, e);
    free(meta);
    io_st_close(f);
    return s;
}

xd_status ckpt_save_int8_like(const char *path, const nn_model *m, const char *source, xd_err *e)
{
    return save_like(path, m, source, 1, e);
}

xd_status ckpt_save_like(const char *path, const nn_model *m, const char *source, xd_err *e)
{
    return save_like(path, m, source, 0, e);
}

/* A quantised layer's weights and scales from the file into the engine. */
static xd_status int8_weights_in(io_st_file *f, nn_model *m, int node, xd_err *e)
{
    const nn_node *nd = nn_model_node(m, node);
    char name[NN_NAME_LEN + 32];
    snprintf(name, sizeof name, "%s.weight_scale", nd->name);
    const float *scale = io_st_find(f, name)->data;
    for (int o = 0; o < nd->units; o++)
        if (!isfinite(scale[o]) || !(scale[o] > 0.0f))
            return xd_fail(e, XD_EFORMAT, "%s: tensor '%s' holds %g at index %d; a scale must be "
                           "a finite number > 0", io_st_path(f), name, (double)scale[o], o);
    snprintf(name, sizeof name, "%s.weight", nd->name);
    const int8_t *q = io_st_find(f, name)->data;
    for (size_t j = 0; j < nd->w_n; j++)
        if (q[j] < -127)
            return xd_fail(e, XD_EFORMAT, "%s: tensor '%s' holds -128 at index %zu, outside the "
                           "symmetric levels -127..127", io_st_path(f), name, j);
    nn_qengine_set_weights(m, node, q, scale);
    return XD_OK;
}

static xd_status load_int8(io_st_file *f, const char *desc, int max_batch, nn_model *m, xd_err *e)
{
    const char *path = io_st_path(f), *quant = io_st_meta(f, CKPT_META_QUANT);
    if (strcmp(quant, CKPT_QUANT_INT8) != 0) {
        char buf[XD_EXCERPT_BUF];
        return xd_fail(e, XD_EUNSUPPORTED, "%s: quantisation '%s' is not one this build reads "
                       "(%s)", path, xd_excerpt(quant, buf), CKPT_QUANT_INT8);
    }
    xd_status s = nn_model_build(m, desc, max_batch, 0, e);
    if (s != XD_OK) {
        xd_err_prefix(e, "%s: stored model", path);
        return s;
    }
    char(*names)[NN_NAME_LEN + 32] = xd_xcalloc((size_t)m->n_params, sizeof *names);
    size_t n;
    io_tensor *want = int8_tensors(m, 0, names, &n);
    s = io_st_check(f, want, n, e);
    /* the float entries first (the ranges: the engine reads them when it attaches) */
    for (size_t i = 0; i < n && s == XD_OK; i++) {
        const nn_param *p = nn_model_param(m, want[i].name);
        if (p && want[i].dtype == IO_F32 && (s = values_ok(f, p, 1, e)) == XD_OK)
            values_copy(f, m, p);
    }
    free(want);
    free(names);
    if (s == XD_OK && (s = nn_qengine_attach(m, e)) != XD_OK) xd_err_prefix(e, "%s", path);
    for (int i = 0; i < m->n_nodes && s == XD_OK; i++) {
        const float *scale;
        if (nn_qengine_weights(m, i, &scale)) s = int8_weights_in(f, m, i, e);
    }
    if (s != XD_OK) nn_model_free(m);
    return s;
}

/* 1 when version ("MAJOR.MINOR...") is of a later release than this build: such a file may hold
 * what this build cannot read, so it is refused by name rather than misread. */
static int newer_version(const char *version)
{
    int a, b, x, y;
    if (sscanf(version, "%d.%d", &a, &b) != 2 || sscanf(XD_VERSION, "%d.%d", &x, &y) != 2) return 0;
    return a > x || (a == x && b > y);
}

xd_status ckpt_load(const char *path, int max_batch, nn_model *m, xd_err *e)
{
    memset(m, 0, sizeof *m);
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    if (s != XD_OK) return s;
    const char *fmt = io_st_meta(f, META_FORMAT), *desc = io_st_meta(f, CKPT_META_MODEL);
    const char *version = io_st_meta(f, META_VERSION);
    if (!fmt || strcmp(fmt, "xdistill") != 0 || !desc) {
        s = xd_fail(e, XD_EFORMAT, "%s: not an xdistill checkpoint (metadata '%s' and '%s' missing)",
                    path, META_FORMAT, CKPT_META_MODEL);
    } else if (version && newer_version(version)) {
        char buf[XD_EXCERPT_BUF];
        s = xd_fail(e, XD_EUNSUPPORTED, "%s: a checkpoint of xdistill %s; this is xdistill %s, "
                    "which reads those of its own and earlier versions", path,
                    xd_excerpt(version, buf), XD_VERSION);
    } else if ((s = nn_model_plan(m, desc, max_batch, e)) != XD_OK) {
        xd_err_prefix(e, "%s: stored model", path);
    } else if (io_st_meta(f, CKPT_META_QUANT)) {
        nn_model_free(m);
        s = load_int8(f, desc, max_batch, m, e);
    } else {
        /* the tensors must all be there before the model's memory is taken */
        s = check_in(f, m, e);
        nn_model_free(m);
        if (s == XD_OK && (s = nn_model_build(m, desc, max_batch, 0, e)) != XD_OK)
            xd_err_prefix(e, "%s: stored model", path);
        else if (s == XD_OK && (s = copy_in(f, m, e)) != XD_OK)
            nn_model_free(m);
    }
    io_st_close(f);
    return s;
}

xd_status ckpt_read_meta(const char *path, const char *key, char **value, xd_err *e)
{
    *value = NULL;
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    if (s != XD_OK) return s;
    const char *v = io_st_meta(f, key);
    if (v) *value = xd_xstrdup(v);
    io_st_close(f);
    return XD_OK;
}

/* The recipe stored in the checkpoint; *found = 0 (and r untouched) when there is none. */
static xd_status stored_recipe(const char *path, recipe *r, int *found, xd_err *e)
{
    *found = 0;
    char *yaml;
    xd_status s = ckpt_read_meta(path, "xdistill.recipe", &yaml, e);
    if (s != XD_OK || !yaml) return s;
    s = recipe_parse(path, yaml, strlen(yaml), NULL, 0, RECIPE_NO_FILE_CHECKS, r, e);
    if (s == XD_OK) *found = 1;
    else xd_err_prefix(e, "%s: the recipe stored in the checkpoint", path);
    free(yaml);
    return s;
}

xd_status ckpt_preprocessing(const char *path, char **augment, char **text, xd_err *e)
{
    *augment = *text = NULL;
    recipe r;
    int found;
    xd_status s = stored_recipe(path, &r, &found, e);
    if (s != XD_OK || !found) return s;
    *augment = xd_xstrdup(r.data.augment ? r.data.augment : "");
    *text = xd_xstrdup(r.data.text ? r.data.text : "");
    recipe_free(&r);
    return XD_OK;
}

xd_status ckpt_trained_label(const char *path, char **label, xd_err *e)
{
    *label = NULL;
    recipe r;
    int found;
    xd_status s = stored_recipe(path, &r, &found, e);
    if (s != XD_OK) return s;
    *label = xd_xstrdup(found && r.data.label ? r.data.label : "label");
    if (found) recipe_free(&r);
    return XD_OK;
}

/* The image sizes: the model's input against the split's images (view image only). */
xd_status ckpt_check_images(const char *path, const nn_model *m, const io_dataset *ds,
                            const char *split, const char *augment, xd_err *e)
{
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/image", split);
    const io_tensor *t = io_dataset_find(ds, name);
    if (!t || t->ndim != 4 || m->tokens) return XD_OK; /* the feed says what is wrong */
    img_opts o;
    img_opts_default(&o);
    if (augment && *augment && img_opts_parse(&o, augment, NULL) != XD_OK) return XD_OK;
    const int h = (int)t->shape[1], w = (int)t->shape[2], c = (int)t->shape[3];
    /* grey+alpha and RGBA lose their alpha on the way in, which is no conversion of colour */
    const int c_in = c == 2 ? 1 : c == 4 ? 3 : c;
    const int resized = (h != m->h || w != m->w) && !o.size_h, converted = c_in != m->c && !o.channels;
    if (!resized && !converted) return XD_OK;
    return xd_fail(e, XD_ESHAPE, "%s: the model reads %dx%dx%d images; %s: %s holds %dx%dx%d "
                   "(only a recipe's explicit %s converts them)", path, m->h, m->w, m->c,
                   io_dataset_path(ds), name, h, w, c,
                   resized ? "size=HxW in data.augment" : "channels=N in data.augment");
}

/* The data set's classes cls (label set of ds) onto the model's stored names (as many as head
 * hn's outputs) by name: *map as ckpt_class_map gives it. */
static xd_status map_names(const char *path, const nn_node *hn, char **names,
                           const io_dataset *ds, const io_strings *cls, int32_t **map, xd_err *e)
{
    *map = NULL;
    char what_ds[512], what_m[512];
    snprintf(what_ds, sizeof what_ds, "%s: %s", io_dataset_path(ds), cls->name);
    snprintf(what_m, sizeof what_m, "the classes of %s", path);
    const char **ds_names = labels_table_names(cls);
    int32_t *out = xd_xmalloc(sizeof(int32_t) * (cls->n ? cls->n : 1));
    int same = 0;
    xd_status s = labels_match_names(ds_names, cls->n, what_ds, (const char *const *)names,
                                     hn->act_n, what_m, out, &same, e);
    free(ds_names);
    if (s != XD_OK || same) free(out);
    else *map = out;
    return s;
}

xd_status ckpt_check_fit(const char *path, const nn_model *m, const io_dataset *ds,
                         const char *split, const char *view, const char *augment,
                         const char *label, xd_err *e)
{
    const char *data = io_dataset_path(ds);
    xd_status s;
    if (strcmp(view, "image") == 0 &&
        (s = ckpt_check_images(path, m, ds, split, augment, e)) != XD_OK)
        return s;
    const nn_node *hn = nn_model_node(m, nn_model_default_head(m));
    char name[IO_DATASET_NAME_MAX + 1];
    if (head_is_map(m)) {
        snprintf(name, sizeof name, "%s/mask", split);
        const io_tensor *mt = io_dataset_find(ds, name);
        const io_strings *mc = io_dataset_find_strings(ds, "classes.mask");
        if (!mt || mt->ndim != 3 || !mc)
            return xd_fail(e, XD_ESHAPE, "%s: a segmentation model (head '%s' gives %dx%dx%d "
                           "maps); %s: no %s and classes.mask to score it against (a data set "
                           "of images with one label each)", path, hn->name, hn->h, hn->w, hn->c,
                           data, name);
        if (mt->shape[1] != hn->h || mt->shape[2] != hn->w || (int)mc->n != hn->c)
            return xd_fail(e, XD_ESHAPE, "%s: head '%s' gives %dx%d maps of %d classes; %s: %s "
                           "is %lldx%lld with %zu classes (classes.mask)", path, hn->name, hn->h,
                           hn->w, hn->c, data, name, (long long)mt->shape[1],
                           (long long)mt->shape[2], mc->n);
        return XD_OK;
    }
    if (!label) return XD_OK;
    const io_strings *cls = labels_class_table(ds, label);
    char **names;
    if ((s = ckpt_class_names(path, m, &names, e)) != XD_OK) return s;
    int32_t *map = NULL;
    if (names && cls) /* checked by name */
        s = map_names(path, hn, names, ds, cls, &map, e);
    else if (cls && cls->n != hn->act_n)
        s = xd_fail(e, XD_ESHAPE, "%s: the model has %zu classes (head '%s'); %s: %s has %zu (%s)",
                    path, hn->act_n, hn->name, data, label, cls->n, cls->name);
    free(map);
    ckpt_class_names_free(names);
    return s;
}

char *ckpt_classes_json(const char *const *names, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, txt_json_string(names[i]));
    char *text = json_dumps(a, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(a);
    return text;
}

xd_status ckpt_class_names(const char *path, const nn_model *m, char ***names, xd_err *e)
{
    *names = NULL;
    const size_t n_classes = head_classes(m);
    char *text;
    xd_status s = ckpt_read_meta(path, CKPT_META_CLASSES, &text, e);
    if (s != XD_OK || !text) return s;
    json_t *arr = json_loads(text, 0, NULL);
    free(text);
    if (!json_is_array(arr)) {
        s = xd_fail(e, XD_EFORMAT, "%s: metadata '%s' is not a JSON list of class names", path,
                    CKPT_META_CLASSES);
    } else if (json_array_size(arr) != n_classes) {
        s = xd_fail(e, XD_EFORMAT, "%s: metadata '%s' names %zu classes for the %zu outputs of the "
                    "model's head", path, CKPT_META_CLASSES, json_array_size(arr), n_classes);
    } else {
        *names = xd_xcalloc(n_classes + 1, sizeof **names);
        for (size_t i = 0; i < n_classes && s == XD_OK; i++) {
            const char *v = json_string_value(json_array_get(arr, i));
            if (v) (*names)[i] = xd_xstrdup(v);
            else s = xd_fail(e, XD_EFORMAT, "%s: metadata '%s': entry %zu is not a string", path,
                             CKPT_META_CLASSES, i);
        }
        if (s != XD_OK) {
            ckpt_class_names_free(*names);
            *names = NULL;
        }
    }
    json_decref(arr);
    return s;
}

void ckpt_class_names_free(char **names)
{
    for (size_t i = 0; names && names[i]; i++) free(names[i]);
    free(names);
}

xd_status ckpt_head_class_names(const char *path, const nn_model *m, int head, char ***names,
                                xd_err *e)
{
    const int K = ckpt_head_classes(m, head);
    if (K == ckpt_head_classes(m, nn_model_default_head(m)))
        return ckpt_class_names(path, m, names, e);
    *names = ckpt_class_numbers(K);
    return *names ? XD_OK : xd_fail(e, XD_ENOMEM, "%s: no memory for %d class names", path, K);
}

char **ckpt_class_numbers(int K)
{
    char **n = calloc((size_t)K + 1, sizeof *n);
    for (int k = 0; n && k < K; k++) {
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        if (!(n[k] = strdup(num))) {
            ckpt_class_names_free(n); /* NULL-terminated where it stopped */
            n = NULL;
        }
    }
    return n;
}

xd_status ckpt_class_map(const char *path, const nn_model *m, const io_dataset *ds,
                         const char *label, int32_t **map, xd_err *e)
{
    *map = NULL;
    const io_strings *cls = labels_class_table(ds, label);
    const nn_node *hn = nn_model_node(m, nn_model_default_head(m));
    char **names;
    xd_status s = ckpt_class_names(path, m, &names, e);
    if (s == XD_OK && names && cls) s = map_names(path, hn, names, ds, cls, map, e);
    ckpt_class_names_free(names);
    return s;
}

xd_status ckpt_trained_images(const char *path, int *h, int *w, int *c, xd_err *e)
{
    *h = *w = *c = 0;
    char *text;
    xd_status s = ckpt_read_meta(path, META_IMAGES, &text, e);
    if (s != XD_OK || !text) return s;
    int n = 0;
    if (sscanf(text, "%dx%dx%d%n", h, w, c, &n) != 3 || text[n] || *h < 1 || *w < 1 ||
        *h > IMG_MAX_SIDE || *w > IMG_MAX_SIDE || (*c != 1 && *c != 3))
        s = xd_fail(e, XD_EFORMAT, "%s: metadata '%s' = '%s' is not HxWxC (C 1 or 3)", path,
                    META_IMAGES, text);
    if (s != XD_OK) *h = *w = *c = 0;
    free(text);
    return s;
}
