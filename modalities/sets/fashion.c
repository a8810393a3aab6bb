/* Fashion-MNIST and the fashion scenes made from it.
 *
 * Both read the four gzipped IDX files of Debian's dataset-fashion-mnist package (or a folder the
 * user names), check them (types, 28x28 items, matching counts, labels 0..9) and write one dataset
 * folder. Scenes come from modalities/dense/scene.h: train scenes from train items only, test
 * scenes from test items only, so no test item is ever seen in training. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "io/dataset.h"
#include "io/file.h"
#include "io/idx.h"
#include "io/png.h"
#include "modalities/dense/overlay.h"
#include "modalities/dense/scene.h"
#include "modalities/sets/common.h"

#define FMNIST_DEB_DIR "/usr/share/datasets/fashion-mnist"

static const char *const fmnist_names[4] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",  "t10k-labels-idx1-ubyte",
};

void sets_fmnist_files_free(sets_fmnist_files *f)
{
    for (int i = 0; i < 4; i++) {
        free(f->path[i]);
        f->path[i] = NULL;
    }
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* NAME.gz or NAME in dir; NULL if neither is there. */
static char *find_in(const char *dir, const char *name)
{
    char gz[256];
    snprintf(gz, sizeof gz, "%s.gz", name);
    char *p = io_path_join(dir, gz);
    if (is_file(p)) return p;
    free(p);
    p = io_path_join(dir, name);
    if (is_file(p)) return p;
    free(p);
    return NULL;
}

/* The line of a `dpkg -L` listing whose last component is NAME.gz or NAME. */
static char *find_in_listing(const char *listing, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *line = listing; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *base = line + len;
        while (base > line && base[-1] != '/') base--;
        size_t blen = (size_t)(line + len - base);
        if (base > line && memcmp(base, name, blen < nlen ? blen : nlen) == 0 &&
            (blen == nlen || (blen == nlen + 3 && memcmp(base + nlen, ".gz", 3) == 0))) {
            char *p = xd_xmalloc(len + 1);
            memcpy(p, line, len);
            p[len] = '\0';
            if (is_file(p)) return p;
            free(p);
        }
        line = end ? end + 1 : line + len;
    }
    return NULL;
}

xd_status sets_fmnist_find(const char *source, sets_fmnist_files *f, xd_err *e)
{
    memset(f, 0, sizeof *f);
    if (source) {
        for (int i = 0; i < 4; i++) {
            f->path[i] = find_in(source, fmnist_names[i]);
            if (!f->path[i]) {
                sets_fmnist_files_free(f);
                return xd_fail(e, XD_EIO, "%s/%s.gz: not found (nor without .gz)", source,
                               fmnist_names[i]);
            }
        }
        return XD_OK;
    }
    char *listing = NULL;
    xd_err ignored;
    char *argv[] = {"dpkg", "-L", "dataset-fashion-mnist", NULL};
    if (sets_run(argv, NULL, &listing, &ignored) == XD_OK) {
        for (int i = 0; i < 4; i++) f->path[i] = find_in_listing(listing, fmnist_names[i]);
    }
    free(listing);
    for (int i = 0; i < 4; i++) {
        if (!f->path[i]) f->path[i] = find_in(FMNIST_DEB_DIR, fmnist_names[i]);
        if (!f->path[i]) {
            sets_fmnist_files_free(f);
            return xd_fail(e, XD_EIO,
                           "%s/%s.gz: not found; install the Debian package dataset-fashion-mnist "
                           "or give --source DIR",
                           FMNIST_DEB_DIR, fmnist_names[i]);
        }
    }
    return XD_OK;
}

/* Both splits: images (n, 28, 28) u8 and labels (n) u8 in 0..9. */
typedef struct {
    io_idx img[SETS_SPLIT_COUNT], lbl[SETS_SPLIT_COUNT];
    size_t n[SETS_SPLIT_COUNT];
} fmnist;

static void fmnist_free(fmnist *d)
{
    for (int s = 0; s < SETS_SPLIT_COUNT; s++) {
        io_idx_free(&d->img[s]);
        io_idx_free(&d->lbl[s]);
    }
}

static xd_status fmnist_check(fmnist *d, const sets_fmnist_files *f, int s, xd_err *e)
{
    const char *pi = f->path[2 * s], *pl = f->path[2 * s + 1];
    xd_status st = io_idx_expect(&d->img[s], IO_IDX_U8, 3, pi, e);
    if (!st) st = io_idx_expect(&d->lbl[s], IO_IDX_U8, 1, pl, e);
    if (st) return st;
    if (d->img[s].dims[1] != DENSE_ITEM || d->img[s].dims[2] != DENSE_ITEM)
        return xd_fail(e, XD_EFORMAT, "%s: items are %ux%u, expected %dx%d", pi, d->img[s].dims[1],
                       d->img[s].dims[2], DENSE_ITEM, DENSE_ITEM);
    if (d->img[s].dims[0] != d->lbl[s].dims[0])
        return xd_fail(e, XD_EFORMAT, "%s: %u labels for the %u images of %s", pl,
                       d->lbl[s].dims[0], d->img[s].dims[0], pi);
    const uint8_t *y = d->lbl[s].data;
    for (size_t i = 0; i < d->lbl[s].count; i++)
        if (y[i] >= DENSE_ITEM_CLASSES)
            return xd_fail(e, XD_EFORMAT, "%s: label %u of item %zu (byte offset %zu) is not a "
                           "class 0..%d", pl, y[i], i, 8 + i, DENSE_ITEM_CLASSES - 1);
    d->n[s] = d->lbl[s].count;
    return XD_OK;
}

/* Reads and checks the four files, decompressing them in parallel. */
static xd_status fmnist_load(const char *source, fmnist *d, xd_err *e)
{
    memset(d, 0, sizeof *d);
    sets_fmnist_files f;
    xd_status s = sets_fmnist_find(source, &f, e);
    if (s) return s;
    xd_err errs[4];
    xd_status st[4];
    io_idx *dst[4] = {&d->img[0], &d->lbl[0], &d->img[1], &d->lbl[1]};
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < 4; i++) st[i] = io_idx_read(f.path[i], 0, dst[i], &errs[i]);
    for (int i = 0; i < 4 && !s; i++)
        if (st[i]) {
            *e = errs[i];
            s = st[i];
        }
    for (int sp = 0; sp < SETS_SPLIT_COUNT && !s; sp++) s = fmnist_check(d, &f, sp, e);
    sets_fmnist_files_free(&f);
    if (s) fmnist_free(d);
    return s;
}

// ----------------------------------------------------------------------------------------------
// Fashion-MNIST

static xd_status fmnist_meta(io_dataset_writer *w, const void *ctx, xd_err *e)
{
    (void)ctx;
    xd_status s = io_dataset_set_meta(w, "source", "Fashion-MNIST (Debian dataset-fashion-mnist)", e);
    if (!s) s = sets_write_meta_int(w, "size", DENSE_ITEM, e);
    return s;
}

xd_status sets_fashion_mnist(const sets_fmnist_opts *o, sets_summary *sum, xd_err *e)
{
    memset(sum, 0, sizeof *sum);
    double t0 = sets_now();
    fmnist d;
    xd_status s = sets_check_replace(o->out, NULL, "fashion-mnist", o->seed, NULL, 0, o->force, e);
    if (!s) s = fmnist_load(o->source, &d, e);
    if (s) return s;
    double t1 = sets_now();
    sets_split sp[SETS_SPLIT_COUNT];
    int32_t *lab[SETS_SPLIT_COUNT], *ids[SETS_SPLIT_COUNT];
    uint8_t *mask[SETS_SPLIT_COUNT];
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        size_t n = d.n[k];
        lab[k] = xd_xmalloc((n + 1) * sizeof(int32_t));
        ids[k] = xd_xmalloc((n + 1) * sizeof(int32_t));
        mask[k] = xd_xmalloc(n + 1);
        const uint8_t *y = d.lbl[k].data;
        for (size_t i = 0; i < n; i++) {
            lab[k][i] = y[i];
            ids[k][i] = (int32_t)i;
        }
        memset(mask[k], 1, n);
        sp[k] = (sets_split){.n = n, .h = DENSE_ITEM, .w = DENSE_ITEM, .c = 1,
                             .image = d.img[k].data, .label = lab[k], .label_mask = mask[k],
                             .id = ids[k]};
    }
    sets_outdir od;
    char *file = NULL;
    s = sets_outdir_open(&od, o->out, e);
    if (!s) {
        file = sets_outdir_path(&od, SETS_DATASET_FILE);
        sets_write wr = {"fashion-mnist", SETS_CLASSIFICATION, o->seed, sp, DENSE_ITEM_CLASSES,
                        dense_class_names};
        s = sets_write_dataset(file, &wr, fmnist_meta, NULL, e);
        if (!s) s = sets_outdir_commit(&od, e);
        else sets_outdir_abort(&od);
    }
    if (!s) {
        char *final = io_path_join(o->out, SETS_DATASET_FILE);
        sum->t_read = t1 - t0;
        sum->t_write = sets_now() - t1;
        sets_summary_fill(sum, SETS_CLASSIFICATION, final, sp, DENSE_ITEM_CLASSES,
                          dense_class_names);
        free(final);
    }
    free(file);
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        free(lab[k]);
        free(ids[k]);
        free(mask[k]);
    }
    fmnist_free(&d);
    return s;
}

// ----------------------------------------------------------------------------------------------
// fashion scenes

/* Test scenes take their streams from this index on, so their layouts never depend on how many
 * train scenes there are. */
#define SCENES_TEST_FIRST ((uint64_t)1 << 40)
#define PREVIEW_ZOOM 4

sets_scenes_opts sets_scenes_defaults(void)
{
    return (sets_scenes_opts){.canvas = 64, .kmin = 1, .kmax = 4, .n_train = 20000,
                              .n_test = 2000, .threshold = DENSE_DEFAULT_THRESHOLD, .seed = 1,
                              .previews = 8};
}

typedef struct {
    uint8_t *image, *mask, *label_mask, *n_items;
    int32_t *label, *id, *boxes, *items;
    dense_layout *lay;
} scene_bufs;

static void scene_bufs_free(scene_bufs *b)
{
    free(b->image);
    free(b->mask);
    free(b->label_mask);
    free(b->n_items);
    free(b->label);
    free(b->id);
    free(b->boxes);
    free(b->items);
    free(b->lay);
    memset(b, 0, sizeof *b);
}

/* Main label of a scene: the item class with the most foreground pixels (ties: the lower class);
 * label_mask 0 for a scene without items. */
static void scene_tables(const sets_scenes_opts *o, const scene_bufs *b, size_t i, int64_t first)
{
    size_t plane = (size_t)o->canvas * (size_t)o->canvas;
    size_t count[DENSE_CLASSES] = {0};
    const uint8_t *m = b->mask + i * plane;
    for (size_t p = 0; p < plane; p++) count[m[p]]++;
    int best = 0;
    for (int c = 1; c < DENSE_ITEM_CLASSES; c++)
        if (count[c] > count[best]) best = c;
    const dense_layout *lay = &b->lay[i];
    b->label[i] = lay->k_placed ? best : 0;
    b->label_mask[i] = lay->k_placed ? 1 : 0;
    b->n_items[i] = (uint8_t)lay->k_placed;
    b->id[i] = (int32_t)(first + (int64_t)i);
    for (int k = 0; k < o->kmax; k++) {
        int32_t *row = b->boxes + (i * (size_t)o->kmax + (size_t)k) * 5;
        int32_t *item = b->items + i * (size_t)o->kmax + (size_t)k;
        if (k < lay->k_placed) {
            const dense_box *bx = &lay->boxes[k];
            row[0] = bx->x;
            row[1] = bx->y;
            row[2] = bx->w;
            row[3] = bx->h;
            row[4] = bx->cls;
            *item = (int32_t)bx->item;
        } else {
            for (int j = 0; j < 5; j++) row[j] = -1;
            *item = -1;
        }
    }
}

static xd_status scenes_make(const sets_scenes_opts *o, const fmnist *d, int split, scene_bufs *b,
                             xd_err *e)
{
    size_t n = split == SETS_TRAIN ? o->n_train : o->n_test;
    size_t plane = (size_t)o->canvas * (size_t)o->canvas, bytes;
    if (xd_mul_size(n, plane, &bytes) != 0)
        return xd_fail(e, XD_EARG, "%zu scenes of %dx%d are too many", n, o->canvas, o->canvas);
    memset(b, 0, sizeof *b);
    b->image = xd_try_alloc(bytes + 1);
    b->mask = xd_try_alloc(bytes + 1);
    b->lay = xd_try_alloc((n + 1) * sizeof *b->lay);
    b->boxes = xd_try_alloc((n * (size_t)o->kmax + 1) * 5 * sizeof(int32_t));
    b->items = xd_try_alloc((n * (size_t)o->kmax + 1) * sizeof(int32_t));
    b->label = xd_try_alloc((n + 1) * sizeof(int32_t));
    b->id = xd_try_alloc((n + 1) * sizeof(int32_t));
    b->label_mask = xd_try_alloc(n + 1);
    b->n_items = xd_try_alloc(n + 1);
    if (!b->image || !b->mask || !b->lay || !b->boxes || !b->items || !b->label || !b->id ||
        !b->label_mask || !b->n_items) {
        scene_bufs_free(b);
        return xd_fail(e, XD_ENOMEM, "no memory for %zu scenes of %dx%d", n, o->canvas, o->canvas);
    }
    dense_pool pool = {d->img[split].data, d->lbl[split].data, d->n[split]};
    dense_scene_cfg cfg = dense_scene_default_cfg();
    cfg.canvas = o->canvas;
    cfg.kmin = o->kmin;
    cfg.kmax = o->kmax;
    cfg.seed = o->seed;
    cfg.threshold = o->threshold;
    uint64_t first = split == SETS_TRAIN ? 0 : SCENES_TEST_FIRST;
    xd_status s = dense_scenes_make(&pool, &cfg, first, n, b->image, b->mask, b->lay, e);
    if (s) {
        scene_bufs_free(b);
        return s;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) scene_tables(o, b, i, 0);
    return XD_OK;
}

/* preview/scene_K.png: the grey scene and its mask overlay side by side, zoomed PREVIEW_ZOOM x. */
static xd_status write_previews(const sets_scenes_opts *o, const scene_bufs *b, size_t n,
                                const sets_outdir *od, size_t *written, xd_err *e)
{
    *written = 0;
    if (n == 0) return XD_OK;
    char *dir = sets_outdir_path(od, "preview");
    xd_status s = io_mkdir_p(dir, e);
    int S = o->canvas, Z = S <= 256 ? PREVIEW_ZOOM : 1;
    size_t plane = (size_t)S * (size_t)S;
    uint8_t *ov = xd_xmalloc(plane * 3);
    io_image img = {.w = 2 * S * Z, .h = S * Z, .c = 3};
    img.px = xd_xmalloc((size_t)img.w * (size_t)img.h * 3);
    for (size_t i = 0; i < n && !s; i++) {
        const uint8_t *grey = b->image + i * plane;
        s = dense_overlay(grey, b->mask + i * plane, S, S, 0.5f, ov, e);
        if (s) break;
        for (int y = 0; y < img.h; y++)
            for (int x = 0; x < img.w; x++) {
                int sx = (x / Z) % S, sy = y / Z, right = x >= S * Z;
                uint8_t *px = img.px + ((size_t)y * (size_t)img.w + (size_t)x) * 3;
                for (int k = 0; k < 3; k++)
                    px[k] = right ? ov[((size_t)sy * (size_t)S + (size_t)sx) * 3 + (size_t)k]
                                  : grey[(size_t)sy * (size_t)S + (size_t)sx];
            }
        char name[64];
        snprintf(name, sizeof name, "scene_%zu.png", i);
        char *path = io_path_join(dir, name);
        s = io_png_write(path, &img, e);
        free(path);
        if (!s) (*written)++;
    }
    free(img.px);
    free(ov);
    free(dir);
    return s;
}

/* The options a scenes set records, as metadata pairs. */
typedef struct {
    char size[16], items[32], threshold[16], train[24], test[24];
    io_kv kv[5];
} scenes_options;

static void scenes_opts_kv(const sets_scenes_opts *o, scenes_options *p)
{
    snprintf(p->size, sizeof p->size, "%d", o->canvas);
    snprintf(p->items, sizeof p->items, "%d-%d", o->kmin, o->kmax);
    snprintf(p->threshold, sizeof p->threshold, "%d", o->threshold);
    snprintf(p->train, sizeof p->train, "%zu", o->n_train);
    snprintf(p->test, sizeof p->test, "%zu", o->n_test);
    p->kv[0] = (io_kv){"size", p->size};
    p->kv[1] = (io_kv){"items", p->items};
    p->kv[2] = (io_kv){"threshold", p->threshold};
    p->kv[3] = (io_kv){"train_scenes", p->train};
    p->kv[4] = (io_kv){"test_scenes", p->test};
}

static xd_status scenes_meta(io_dataset_writer *w, const void *ctx, xd_err *e)
{
    const scenes_options *p = ctx;
    xd_status s = io_dataset_set_meta(w, "source", "Fashion-MNIST (Debian dataset-fashion-mnist)", e);
    if (!s) s = sets_write_meta_kv(w, p->kv, 5, e);
    if (!s) s = io_dataset_add_strings(w, "classes.mask", dense_class_names, DENSE_CLASSES, e);
    return s;
}

static xd_status scenes_check(const sets_scenes_opts *o, xd_err *e)
{
    if (o->canvas < DENSE_ITEM || o->canvas > DENSE_MAX_CANVAS)
        return xd_fail(e, XD_EARG, "canvas %d is not in %d..%d", o->canvas, DENSE_ITEM,
                       DENSE_MAX_CANVAS);
    if (o->kmin < 0 || o->kmin > o->kmax || o->kmax > DENSE_MAX_ITEMS)
        return xd_fail(e, XD_EARG, "items %d-%d: need 0 <= min <= max <= %d", o->kmin, o->kmax,
                       DENSE_MAX_ITEMS);
    if (o->threshold < 0 || o->threshold > 255)
        return xd_fail(e, XD_EARG, "threshold %d is not in 0..255", o->threshold);
    if (o->n_train > INT32_MAX || o->n_test > INT32_MAX)
        return xd_fail(e, XD_EARG, "too many scenes (at most %d per split)", INT32_MAX);
    return XD_OK;
}

xd_status sets_fashion_scenes(const sets_scenes_opts *o, sets_summary *sum, xd_err *e)
{
    memset(sum, 0, sizeof *sum);
    xd_status s = scenes_check(o, e);
    scenes_options opt;
    scenes_opts_kv(o, &opt);
    if (!s) s = sets_check_replace(o->out, NULL, "fashion-scenes", o->seed, opt.kv, 5, o->force, e);
    if (s) return s;
    double t0 = sets_now();
    fmnist d;
    s = fmnist_load(o->source, &d, e);
    if (s) return s;
    double t1 = sets_now();
    scene_bufs b[SETS_SPLIT_COUNT];
    memset(b, 0, sizeof b);
    for (int k = 0; k < SETS_SPLIT_COUNT && !s; k++) s = scenes_make(o, &d, k, &b[k], e);
    double t2 = sets_now();
    sets_split sp[SETS_SPLIT_COUNT];
    for (int k = 0; k < SETS_SPLIT_COUNT; k++)
        sp[k] = (sets_split){.n = k == SETS_TRAIN ? o->n_train : o->n_test, .h = o->canvas,
                             .w = o->canvas, .c = 1, .image = b[k].image, .label = b[k].label,
                             .label_mask = b[k].label_mask, .id = b[k].id, .k = o->kmax,
                             .mask = b[k].mask, .boxes = b[k].boxes, .items = b[k].items,
                             .n_items = b[k].n_items};
    sets_outdir od = {0};
    char *file = NULL;
    size_t previews = 0;
    if (!s) s = sets_outdir_open(&od, o->out, e);
    if (!s) {
        size_t np = (size_t)(o->previews > 0 ? o->previews : 0);
        s = write_previews(o, &b[SETS_TRAIN], np < o->n_train ? np : o->n_train, &od, &previews, e);
        file = sets_outdir_path(&od, SETS_DATASET_FILE);
        sets_write wr = {"fashion-scenes", SETS_SCENES, o->seed, sp, DENSE_ITEM_CLASSES,
                        dense_class_names};
        if (!s) s = sets_write_dataset(file, &wr, scenes_meta, &opt, e);
        if (!s) s = sets_outdir_commit(&od, e);
        else sets_outdir_abort(&od);
    }
    if (!s) {
        char *final = io_path_join(o->out, SETS_DATASET_FILE);
        sum->t_read = t1 - t0;
        sum->t_decode = t2 - t1;
        sum->t_write = sets_now() - t2;
        sum->n_previews = previews;
        sets_summary_fill(sum, SETS_SCENES, final, sp, DENSE_ITEM_CLASSES, dense_class_names);
        free(final);
    }
    free(file);
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) scene_bufs_free(&b[k]);
    fmnist_free(&d);
    return s;
}
