/* Segmentation runs (see segment.h). */
#include "distill/segment.h"

#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/kd.h"
#include "io/file.h"
#include "io/png.h"
#include "modalities/dense/metrics.h"
#include "modalities/dense/overlay.h"
#include "modalities/dense/scene.h"
#include "nn/loss.h"

/* The teacher classifies windows in batches of this many (its own batch, not the student's). */
#define SEG_TEACHER_BATCH 256
/* Overlay pictures are enlarged this many times (canvases up to 256 pixels). */
#define SEG_ZOOM 4
#define SEG_ZOOM_MAX_SIDE 256
/* Opacity of the class colours over the grey scene. */
#define SEG_ALPHA 0.5f

// ----------------------------------------------------------------------------------------------
// data

static xd_status split_images(const io_dataset *ds, const char *split, const io_tensor **t,
                              xd_err *e)
{
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/image", split);
    return io_dataset_require(ds, name, IO_U8, 4, t, e);
}

xd_status seg_masks(const io_dataset *ds, const char *split, size_t n, int H, int W,
                    const uint8_t **masks, int *n_classes, xd_err *e)
{
    const io_strings *cls = io_dataset_find_strings(ds, "classes.mask");
    if (!cls)
        return xd_fail(e, XD_EFORMAT, "%s: no classes.mask table: a segment task needs per-pixel "
                       "labels (xdistill prepare fashion-scenes writes them)", io_dataset_path(ds));
    if (cls->n < 2 || cls->n > 256)
        return xd_fail(e, XD_EFORMAT, "%s: classes.mask has %zu classes (2..256)",
                       io_dataset_path(ds), cls->n);
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/mask", split);
    const io_tensor *t;
    xd_status s = io_dataset_require(ds, name, IO_U8, 3, &t, e);
    if (s != XD_OK) return s;
    if ((size_t)t->shape[0] != n || t->shape[1] != H || t->shape[2] != W)
        return xd_fail(e, XD_ESHAPE, "%s: %s is (%lld, %lld, %lld); the images are (%zu, %d, %d)",
                       io_dataset_path(ds), name, (long long)t->shape[0], (long long)t->shape[1],
                       (long long)t->shape[2], n, H, W);
    const uint8_t *m = t->data;
    const size_t total = n * (size_t)H * (size_t)W;
    for (size_t i = 0; i < total; i++)
        if (m[i] >= cls->n)
            return xd_fail(e, XD_EFORMAT, "%s: %s: pixel %zu of example %zu is class %u, outside "
                           "the %zu of classes.mask", io_dataset_path(ds), name,
                           i % ((size_t)H * W), i / ((size_t)H * W), m[i], cls->n);
    *masks = m;
    *n_classes = (int)cls->n;
    return XD_OK;
}

xd_status seg_open(seg_run *g, const io_dataset *ds, const char *train, const char *test,
                   const nn_model *student, int B, xd_err *e)
{
    memset(g, 0, sizeof *g);
    const io_tensor *ti, *tt;
    xd_status s = split_images(ds, train, &ti, e);
    if (s == XD_OK) s = split_images(ds, test, &tt, e);
    if (s != XD_OK) return s;
    g->H = (int)ti->shape[1];
    g->W = (int)ti->shape[2];
    g->C = (int)ti->shape[3];
    if (tt->shape[1] != g->H || tt->shape[2] != g->W || tt->shape[3] != g->C)
        return xd_fail(e, XD_ESHAPE, "%s: %s/image and %s/image have different sizes",
                       io_dataset_path(ds), train, test);
    /* predictions are per pixel of the scene: the student must see the scene unscaled */
    if (student->tokens || student->h != g->H || student->w != g->W)
        return xd_fail(e, XD_ESHAPE, "task segment: the student reads %dx%d inputs, the scenes of "
                       "%s are %dx%d; give the model `input h=%d w=%d`", student->h, student->w,
                       io_dataset_path(ds), g->H, g->W, g->H, g->W);
    g->n_train = (size_t)ti->shape[0];
    g->n_test = (size_t)tt->shape[0];
    g->train_image = ti->data;
    g->test_image = tt->data;
    int c2;
    if ((s = seg_masks(ds, train, g->n_train, g->H, g->W, &g->train_mask, &g->n_classes, e)))
        return s;
    if ((s = seg_masks(ds, test, g->n_test, g->H, g->W, &g->test_mask, &c2, e))) return s;
    const size_t px = (size_t)B * g->H * g->W;
    g->B = B;
    g->lab = xd_xmalloc(sizeof(int32_t) * px);
    g->lmask = xd_xmalloc(px);
    g->p = xd_xmalloc(sizeof(float) * px * (size_t)g->n_classes);
    g->target = xd_xmalloc(sizeof(float) * px * (size_t)g->n_classes);
    g->fg = xd_xmalloc(sizeof(float) * (size_t)g->H * g->W);
    g->pred = xd_xmalloc((size_t)g->H * g->W);
    g->on = 1;
    return XD_OK;
}

void seg_close(seg_run *g)
{
    for (int i = 0; i < g->n_tables; i++) {
        kd_cache_close(&g->tables[i].cache);
        free(g->tables[i].grid);
        free(g->tables[i].own);
    }
    free(g->lab);
    free(g->lmask);
    free(g->p);
    free(g->target);
    free(g->fg);
    free(g->pred);
    free(g->wprob);
    free(g->wbox);
    memset(g, 0, sizeof *g);
}

xd_status seg_check_head(const seg_run *g, const nn_node *head, int loss, const char *kind,
                         xd_err *e)
{
    if (head->h == g->H && head->w == g->W && head->c == g->n_classes) return XD_OK;
    return xd_fail(e, XD_ESHAPE, "loss %d (%s): head '%s' is %dx%dx%d; task segment needs %dx%dx%d "
                   "(the scenes' height x width x the %d classes of classes.mask)", loss, kind,
                   head->name, head->h, head->w, head->c, g->H, g->W, g->n_classes, g->n_classes);
}

// ----------------------------------------------------------------------------------------------
// the teacher's windows

int seg_teacher_dense_only(const recipe *r, int ti)
{
    int dense = 0;
    for (int s = 0; s < r->n_stages; s++)
        for (int l = 0; l < r->stages[s].n_losses; l++) {
            const recipe_loss *L = &r->stages[s].losses[l];
            if (L->teacher != ti) continue;
            if (L->kind != RECIPE_LOSS_DENSE) return 0;
            dense = 1;
        }
    return dense;
}

static int same_head(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

static seg_windows *find_table(seg_run *g, const recipe_loss *L)
{
    for (int i = 0; i < g->n_tables; i++) {
        seg_windows *w = &g->tables[i];
        if (w->teacher == L->teacher && w->windows == L->windows && same_head(w->head, L->teacher_head) &&
            (L->windows != RECIPE_WINDOWS_GRID || w->stride == L->stride) &&
            (L->windows != RECIPE_WINDOWS_BLOBS || w->threshold == L->threshold))
            return w;
    }
    return NULL;
}

/* What the cache fill reads: the scenes, the windows and a batcher that preprocesses a window
 * exactly as an image feed would for the teacher. */
typedef struct {
    const seg_run *g;
    const seg_windows *w;
    img_batcher *batcher;
    uint8_t *crops;          /* (SEG_TEACHER_BATCH, wh, ww, C) */
    uint32_t *idx;
} window_fill;

/* Window j of scene i: the grid's, or the scene's box j (an unused slot gives the corner window,
 * whose logits are never read). */
static align_box window_at(const seg_windows *w, size_t i, int j)
{
    if (w->grid) return w->grid[j];
    const int32_t *b = w->boxes + ((size_t)i * w->nwin + (size_t)j) * 5;
    if (b[0] < 0) return (align_box){0, 0, w->ww, w->wh};
    return (align_box){b[0], b[1], b[2], b[3]};
}

static xd_status fill_windows(void *ctx, size_t i0, size_t i1, void *input, xd_err *e)
{
    window_fill *f = ctx;
    const seg_run *g = f->g;
    const seg_windows *w = f->w;
    const size_t row = (size_t)w->ww * g->C, plane = row * w->wh;
    const int n = (int)(i1 - i0);
    for (int k = 0; k < n; k++) {
        const size_t r = i0 + (size_t)k, scene = r / (size_t)w->nwin;
        const align_box b = window_at(w, scene, (int)(r % (size_t)w->nwin));
        const uint8_t *img = g->train_image + scene * (size_t)g->H * g->W * g->C;
        for (int y = 0; y < w->wh; y++)
            memcpy(f->crops + (size_t)k * plane + (size_t)y * row,
                   img + ((size_t)(b.y + y) * g->W + (size_t)b.x) * g->C, row);
        f->idx[k] = (uint32_t)k;
    }
    return img_batcher_fill(f->batcher, f->crops, (size_t)n, f->idx, n, 0, 0, 0, input, e);
}

/* Boxes must be the teacher's window size and inside the canvas: the data set is input. */
static xd_status check_boxes(const seg_run *g, const io_dataset *ds, const char *split,
                             seg_windows *w, xd_err *e)
{
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/boxes", split);
    const io_tensor *t;
    xd_status s = io_dataset_require(ds, name, IO_I32, 3, &t, e);
    if (s != XD_OK) return s;
    if ((size_t)t->shape[0] != g->n_train || t->shape[2] != 5 || t->shape[1] < 1 ||
        t->shape[1] > DENSE_MAX_ITEMS)
        return xd_fail(e, XD_ESHAPE, "%s: %s is (%lld, %lld, %lld), not (%zu, K, 5)",
                       io_dataset_path(ds), name, (long long)t->shape[0], (long long)t->shape[1],
                       (long long)t->shape[2], g->n_train);
    w->nwin = (int)t->shape[1];
    w->boxes = t->data;
    for (size_t i = 0; i < g->n_train * (size_t)w->nwin; i++) {
        const int32_t *b = w->boxes + i * 5;
        if (b[0] < 0) continue;
        const align_box a = {b[0], b[1], b[2], b[3]};
        if (a.w != w->ww || a.h != w->wh || a.x < 0 || a.y < 0 || a.x > g->W - a.w ||
            a.y > g->H - a.h)
            return xd_fail(e, XD_EFORMAT, "%s: %s: box %zu of scene %zu (x=%d y=%d w=%d h=%d) is "
                           "not a %dx%d window inside the %dx%d canvas", io_dataset_path(ds), name,
                           i % (size_t)w->nwin, i / (size_t)w->nwin, a.x, a.y, a.w, a.h, w->ww,
                           w->wh, g->W, g->H);
    }
    return XD_OK;
}

/* Blob windows of one scene: 8-connected components of pixels above threshold (grey: the mean of
 * the channels), largest first (ties: first found in raster order); per blob a window centred on
 * its bounding box, or, when the box is wider or taller than a window, windows flush with each of
 * its sides, all clamped into the canvas. out (max, 5) gets x, y, w, h, -1, rows of -1 after the
 * last. lab (H*W) and stack (H*W) are scratch. */
static void blob_windows(const uint8_t *img, int H, int W, int C, float threshold, int wh, int ww,
                         int32_t *out, int max, int32_t *lab, int32_t *stack)
{
    enum { MAXB = 64 };
    struct blob {
        int n, x0, y0, x1, y1;
    } blob[MAXB];
    int nb = 0;
    const size_t hw = (size_t)H * W;
    for (size_t p = 0; p < hw; p++) {
        int sum = 0;
        for (int c = 0; c < C; c++) sum += img[p * (size_t)C + (size_t)c];
        lab[p] = (float)sum / (float)C > threshold ? -1 : -2; /* -1: unvisited foreground */
    }
    for (size_t p0 = 0; p0 < hw && nb < MAXB; p0++) {
        if (lab[p0] != -1) continue;
        int top = 0, n = 0, x0 = W, y0 = H, x1 = -1, y1 = -1;
        stack[top++] = (int32_t)p0;
        lab[p0] = nb;
        while (top) {
            const int p = stack[--top], y = p / W, x = p % W;
            n++;
            x0 = x < x0 ? x : x0;
            x1 = x > x1 ? x : x1;
            y0 = y < y0 ? y : y0;
            y1 = y > y1 ? y : y1;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    const int yy = y + dy, xx = x + dx;
                    if (yy < 0 || yy >= H || xx < 0 || xx >= W || lab[yy * W + xx] != -1) continue;
                    lab[yy * W + xx] = nb;
                    stack[top++] = yy * W + xx;
                }
        }
        blob[nb].n = n;
        blob[nb].x0 = x0;
        blob[nb].y0 = y0;
        blob[nb].x1 = x1;
        blob[nb].y1 = y1;
        nb++;
    }
    /* largest first; a stable insertion sort keeps raster order among equals */
    for (int i = 1; i < nb; i++)
        for (int j = i; j > 0 && blob[j].n > blob[j - 1].n; j--) {
            const struct blob t = blob[j];
            blob[j] = blob[j - 1];
            blob[j - 1] = t;
        }
    int k = 0;
    for (int i = 0; i < nb && k < max; i++) {
        const int bw = blob[i].x1 - blob[i].x0 + 1, bh = blob[i].y1 - blob[i].y0 + 1;
        int xs[2], ys[2], nx = 1, ny = 1;
        xs[0] = bw <= ww ? blob[i].x0 + bw / 2 - ww / 2 : blob[i].x0;
        ys[0] = bh <= wh ? blob[i].y0 + bh / 2 - wh / 2 : blob[i].y0;
        if (bw > ww) xs[nx++] = blob[i].x1 + 1 - ww;
        if (bh > wh) ys[ny++] = blob[i].y1 + 1 - wh;
        for (int a = 0; a < ny; a++)
            for (int b = 0; b < nx && k < max; b++, k++) {
                const int x = xs[b] < 0 ? 0 : xs[b] > W - ww ? W - ww : xs[b];
                const int y = ys[a] < 0 ? 0 : ys[a] > H - wh ? H - wh : ys[a];
                const int32_t row[5] = {x, y, ww, wh, -1};
                memcpy(out + (size_t)k * 5, row, sizeof row);
            }
    }
    for (; k < max; k++)
        for (int c = 0; c < 5; c++) out[(size_t)k * 5 + (size_t)c] = -1;
}

/* Blob windows of every training scene, in parallel over scenes (each scene's own scratch). */
static void blob_table(const seg_run *g, seg_windows *w, float threshold)
{
    w->nwin = SEG_MAX_BLOB_WINDOWS;
    w->own = xd_xmalloc(sizeof(int32_t) * g->n_train * (size_t)w->nwin * 5);
    w->boxes = w->own;
    const size_t hw = (size_t)g->H * g->W;
#pragma omp parallel
    {
        int32_t *lab = xd_xmalloc(sizeof(int32_t) * hw), *stack = xd_xmalloc(sizeof(int32_t) * hw);
#pragma omp for schedule(static)
        for (long i = 0; i < (long)g->n_train; i++)
            blob_windows(g->train_image + (size_t)i * hw * (size_t)g->C, g->H, g->W, g->C, threshold,
                         w->wh, w->ww, w->own + (size_t)i * w->nwin * 5, w->nwin, lab, stack);
        free(lab);
        free(stack);
    }
}

static xd_status build_table(seg_run *g, const recipe *r, const recipe_loss *L, nn_model *t,
                             const char *augment, const io_dataset *ds, const char *dataset_path,
                             const char *split, FILE *log, xd_err *e)
{
    const char *tname = r->teachers[L->teacher].name;
    int head = L->teacher_head ? nn_model_find(t, L->teacher_head) : nn_model_default_head(t);
    if (head < 0)
        return xd_fail(e, XD_EARG, "dense loss: teacher '%s' has no node '%s'", tname,
                       L->teacher_head);
    const nn_node *hn = nn_model_node(t, head);
    if (t->tokens || t->c != g->C || t->h > g->H || t->w > g->W)
        return xd_fail(e, XD_ESHAPE, "dense loss: teacher '%s' reads %dx%dx%d inputs; its windows "
                       "must fit the %dx%dx%d scenes", tname, t->h, t->w, t->c, g->H, g->W, g->C);
    if ((int)hn->act_n + 1 != g->n_classes)
        return xd_fail(e, XD_ESHAPE, "dense loss: teacher '%s' head '%s' has %zu classes; the "
                       "masks have %d (the teacher's classes, then background)", tname, hn->name,
                       hn->act_n, g->n_classes);
    XD_ASSERT(g->n_tables < SEG_MAX_TABLES);
    seg_windows *w = &g->tables[g->n_tables];
    memset(w, 0, sizeof *w);
    w->teacher = L->teacher;
    w->windows = L->windows;
    w->stride = L->stride;
    w->threshold = L->threshold;
    w->head = L->teacher_head;
    w->wh = t->h;
    w->ww = t->w;
    w->K = (int)hn->act_n;
    xd_status s = XD_OK;
    if (L->windows == RECIPE_WINDOWS_GRID) {
        w->nwin = align_dense_grid(NULL, 0, g->H, g->W, w->wh, w->ww, L->stride);
        XD_ASSERT(w->nwin > 0); /* the window fits (checked above) and stride >= 1 (recipe) */
        w->grid = xd_xmalloc(sizeof(align_box) * (size_t)w->nwin);
        align_dense_grid(w->grid, w->nwin, g->H, g->W, w->wh, w->ww, L->stride);
    } else if (L->windows == RECIPE_WINDOWS_BLOBS) {
        blob_table(g, w, L->threshold);
    } else if ((s = check_boxes(g, ds, split, w, e)) != XD_OK) {
        return s;
    }
    char view[96];
    if (L->windows == RECIPE_WINDOWS_GRID)
        snprintf(view, sizeof view, "image windows=grid size=%dx%d stride=%d", w->wh, w->ww,
                 L->stride);
    else if (L->windows == RECIPE_WINDOWS_BLOBS)
        snprintf(view, sizeof view, "image windows=blobs size=%dx%d threshold=%.9g", w->wh, w->ww,
                 (double)L->threshold);
    else
        snprintf(view, sizeof view, "image windows=boxes size=%dx%d", w->wh, w->ww);
    window_fill f = {.g = g, .w = w};
    img_opts o;
    if ((s = feed_image_opts(&o, augment, t, e)) == XD_OK &&
        (s = img_batcher_make(&f.batcher, w->wh, w->ww, g->C, &o, e)) == XD_OK) {
        f.crops = xd_xmalloc((size_t)SEG_TEACHER_BATCH * w->wh * w->ww * g->C);
        f.idx = xd_xmalloc(sizeof(uint32_t) * SEG_TEACHER_BATCH);
        kd_cache_spec spec = {.dataset_path = dataset_path, .dataset = ds, .augment = augment,
                              .split = split, .view = view,
                              .n = g->n_train * (size_t)w->nwin, .head = L->teacher_head,
                              .log = log};
        s = kd_cache_load_or_build(&spec, t, fill_windows, &f, &w->cache, e);
        if (s == XD_OK && w->cache.rebuilt && log) fprintf(log, "warning: %s\n", w->cache.warning);
    }
    if (f.batcher) img_batcher_free(f.batcher);
    free(f.crops);
    free(f.idx);
    if (s != XD_OK) {
        free(w->grid);
        free(w->own);
        return xd_err_prefix(e, "dense loss: teacher '%s' windows", tname);
    }
    g->n_tables++;
    if (w->nwin > g->wcap) {
        g->wcap = w->nwin;
        g->wprob = xd_xrealloc(g->wprob, sizeof(float) * (size_t)g->wcap * (size_t)w->K);
        g->wbox = xd_xrealloc(g->wbox, sizeof(align_box) * (size_t)g->wcap);
    }
    return XD_OK;
}

xd_status seg_teacher_windows(seg_run *g, const recipe *r, int ti, const io_dataset *ds,
                              const char *dataset_path, const char *split, FILE *log, xd_err *e)
{
    const recipe_teacher *rt = &r->teachers[ti];
    nn_model t;
    int loaded = 0;
    char *augment = NULL, *text = NULL;
    xd_status s = XD_OK;
    for (int st = 0; st < r->n_stages && s == XD_OK; st++)
        for (int l = 0; l < r->stages[st].n_losses && s == XD_OK; l++) {
            const recipe_loss *L = &r->stages[st].losses[l];
            if (L->teacher != ti || L->kind != RECIPE_LOSS_DENSE || find_table(g, L)) continue;
            if (!loaded) {
                if ((s = ckpt_load(rt->checkpoint, SEG_TEACHER_BATCH, &t, e)) != XD_OK) break;
                loaded = 1;
                t.eval_precision = rt->precision; /* its window logits too */
                if ((s = ckpt_preprocessing(rt->checkpoint, &augment, &text, e)) != XD_OK) break;
            }
            /* the teacher reads windows the way it was trained; without a stored recipe, plain x/255 */
            s = build_table(g, r, L, &t, augment ? augment : "", ds, dataset_path, split, log, e);
        }
    if (loaded) nn_model_free(&t);
    free(augment);
    free(text);
    return s;
}

// ----------------------------------------------------------------------------------------------
// losses

/* lab, lmask (B, H, W) from the masks of scenes idx; rows of unselected scenes do not count. */
static void batch_labels(seg_run *g, const uint32_t *idx, const uint8_t *sel, int B)
{
    const size_t hw = (size_t)g->H * g->W;
    for (int b = 0; b < B; b++) {
        const uint8_t *m = g->train_mask + (size_t)idx[b] * hw;
        int32_t *lab = g->lab + (size_t)b * hw;
        for (size_t i = 0; i < hw; i++) lab[i] = m[i];
        memset(g->lmask + (size_t)b * hw, sel ? sel[b] != 0 : 1, hw);
    }
}

double seg_ce(seg_run *g, const float *s, float *ds, const uint32_t *idx, const uint8_t *sel,
              int B, float weight)
{
    batch_labels(g, idx, sel, B);
    const int rows = B * g->H * g->W;
    double v = nn_ce_forward(g->p, s, g->lab, g->lmask, rows, g->n_classes);
    nn_ce_backward(ds, g->p, g->lab, g->lmask, rows, g->n_classes, weight);
    return v;
}

/* Targets of scene i into target (H, W, n_classes), mask (H, W). */
static void scene_targets(seg_run *g, const seg_windows *w, const recipe_loss *L, size_t i,
                          float *target, uint8_t *mask)
{
    const size_t hw = (size_t)g->H * g->W;
    const uint8_t *img = g->train_image + i * hw * (size_t)g->C;
    /* foreground measure: the grey value (the mean of the channels for colour scenes) */
    for (size_t p = 0; p < hw; p++) {
        int sum = 0;
        for (int c = 0; c < g->C; c++) sum += img[p * (size_t)g->C + (size_t)c];
        g->fg[p] = (float)sum / (float)g->C;
    }
    int nv = 0;
    for (int j = 0; j < w->nwin; j++) {
        if (!w->grid && w->boxes[(i * (size_t)w->nwin + (size_t)j) * 5] < 0) continue;
        g->wbox[nv] = window_at(w, i, j);
        kd_soft_targets(g->wprob + (size_t)nv * w->K,
                        w->cache.logits + (i * (size_t)w->nwin + (size_t)j) * (size_t)w->K, 1,
                        w->K, L->temperature);
        nv++;
    }
    align_dense_opts o = {.threshold = L->threshold, .weight = (align_dense_weight)L->weighting,
                          .min_conf = L->min_conf};
    xd_err e;
    xd_status s = align_dense_targets(target, mask, g->fg, g->H, g->W, g->wbox, g->wprob, nv, w->K,
                                      &o, &e);
    /* windows were checked when the table was built, and softmax rows are distributions */
    XD_ASSERT(s == XD_OK);
}

double seg_dense(seg_run *g, const recipe_loss *L, const float *s, float *ds, const uint32_t *idx,
                 int B, float weight)
{
    const seg_windows *w = find_table(g, L);
    XD_ASSERT(w);
    const size_t hw = (size_t)g->H * g->W;
    for (int b = 0; b < B; b++)
        scene_targets(g, w, L, idx[b], g->target + (size_t)b * hw * g->n_classes,
                      g->lmask + (size_t)b * hw);
    const int rows = B * g->H * g->W;
    double v = kd_soft_ce_forward(g->p, s, g->target, g->lmask, rows, g->n_classes);
    kd_soft_ce_backward(ds, g->p, g->target, g->lmask, rows, g->n_classes, weight);
    return v;
}

/* argmax over the C scores of each of n pixels (ties: the lower class) */
static void argmax_pixels(const float *s, size_t n, int C, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        const float *r = s + i * (size_t)C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (r[c] > r[best]) best = c;
        out[i] = (uint8_t)best;
    }
}

size_t seg_count_correct(seg_run *g, const float *s, const uint32_t *idx, const uint8_t *sel,
                         int B, size_t *pixels)
{
    const size_t hw = (size_t)g->H * g->W;
    size_t correct = 0;
    *pixels = 0;
    uint8_t *pred = g->pred;
    for (int b = 0; b < B; b++) {
        if (sel && !sel[b]) continue;
        argmax_pixels(s + (size_t)b * hw * g->n_classes, hw, g->n_classes, pred);
        const uint8_t *m = g->train_mask + (size_t)idx[b] * hw;
        for (size_t i = 0; i < hw; i++) correct += pred[i] == m[i];
        *pixels += hw;
    }
    return correct;
}

// ----------------------------------------------------------------------------------------------
// evaluation and pictures

xd_status seg_evaluate_at(nn_model *m, int head, feed *f, const uint32_t *at, size_t n_ex,
                          const uint8_t *masks, int n_classes, void *input, seg_scores *out,
                          xd_err *e)
{
    const nn_node *hn = nn_model_node(m, head);
    const int B = m->max_batch, C = hn->c;
    const size_t hw = (size_t)hn->h * hn->w;
    if (hn->h != f->h || hn->w != f->w)
        return xd_fail(e, XD_ESHAPE, "head '%s' is %dx%d, the scenes %dx%d", hn->name, hn->h, hn->w,
                       f->h, f->w);
    if (C != n_classes || C > 256)
        return xd_fail(e, XD_ESHAPE, "head '%s' has %d channels for %d mask classes", hn->name, C,
                       n_classes);
    uint32_t *idx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
    uint8_t *pred = xd_xmalloc(hw * (size_t)B);
    /* the batch's masks, gathered when the examples are not consecutive */
    uint8_t *truth = at ? xd_xmalloc(hw * (size_t)B) : NULL;
    dense_confusion cm;
    dense_confusion_init(&cm, n_classes);
    xd_status s = XD_OK;
    for (size_t i0 = 0; i0 < n_ex && s == XD_OK; i0 += (size_t)B) {
        int n = n_ex - i0 < (size_t)B ? (int)(n_ex - i0) : B;
        for (int b = 0; b < n; b++) {
            idx[b] = at ? at[i0 + (size_t)b] : (uint32_t)(i0 + (size_t)b);
            if (at) memcpy(truth + (size_t)b * hw, masks + (size_t)idx[b] * hw, hw);
        }
        if ((s = feed_fill(f, idx, n, 0, 0, 0, input, e)) != XD_OK) break;
        nn_model_forward(m, input, n, NULL);
        s = nn_check_finite(nn_model_out(m, head), (size_t)n, hw * (size_t)C, idx, 0,
                            "the model's output", e);
        if (s != XD_OK) break;
        argmax_pixels(nn_model_out(m, head), hw * (size_t)n, C, pred);
        s = dense_confusion_add(&cm, pred, at ? truth : masks + i0 * hw, hw * (size_t)n, e);
    }
    /* with several ranks, each scored its slice: the counts are summed */
    if ((s = dist_agree(s, e)) == XD_OK) {
        uint64_t pixels = hw * n_ex;
        dist_sum_counts(cm.counts, (size_t)n_classes * (size_t)n_classes);
        dist_sum_counts(&pixels, 1);
        out->miou = dense_mean_iou(&cm, NULL, NULL);
        out->pixel_acc = dense_pixel_accuracy(&cm);
        out->pixels = pixels;
    }
    dense_confusion_free(&cm);
    free(truth);
    free(pred);
    free(idx);
    return s;
}

xd_status seg_evaluate(nn_model *m, int head, feed *f, const uint8_t *masks, int n_classes,
                       void *input, seg_scores *out, xd_err *e)
{
    return seg_evaluate_at(m, head, f, NULL, f->n, masks, n_classes, input, out, e);
}

xd_status seg_write_overlays(nn_model *m, int head, feed *f, const uint8_t *images,
                             const uint8_t *masks, int n, const char *dir, xd_err *e)
{
    const nn_node *hn = nn_model_node(m, head);
    const int H = hn->h, W = hn->w, C = hn->c, ch = f->c;
    const int Z = H <= SEG_ZOOM_MAX_SIDE && W <= SEG_ZOOM_MAX_SIDE ? SEG_ZOOM : 1;
    const size_t hw = (size_t)H * W;
    if ((size_t)n > f->n) n = (int)f->n;
    xd_status s = io_mkdir_p(dir, e);
    if (s != XD_OK || n <= 0) return s;
    uint8_t *grey = xd_xmalloc(hw), *pred = xd_xmalloc(hw);
    uint8_t *panel[3] = {xd_xmalloc(hw * 3), xd_xmalloc(hw * 3), xd_xmalloc(hw * 3)};
    void *input = xd_xmalloc_aligned(feed_example_bytes(f));
    io_image img = {.w = 3 * W * Z, .h = H * Z, .c = 3};
    img.px = xd_xmalloc((size_t)img.w * img.h * 3);
    for (int i = 0; i < n && s == XD_OK; i++) {
        uint32_t one = (uint32_t)i;
        if ((s = feed_fill(f, &one, 1, 0, 0, 0, input, e)) != XD_OK) break;
        nn_model_forward(m, input, 1, NULL);
        argmax_pixels(nn_model_out(m, head), hw, C, pred);
        const uint8_t *im = images + (size_t)i * hw * (size_t)ch;
        for (size_t p = 0; p < hw; p++) {
            int sum = 0;
            for (int c = 0; c < ch; c++) sum += im[p * (size_t)ch + (size_t)c];
            grey[p] = (uint8_t)(sum / ch);
            for (int k = 0; k < 3; k++) panel[0][p * 3 + (size_t)k] = grey[p];
        }
        if ((s = dense_overlay(grey, masks + (size_t)i * hw, H, W, SEG_ALPHA, panel[1], e)) ||
            (s = dense_overlay(grey, pred, H, W, SEG_ALPHA, panel[2], e)))
            break;
        /* three panels side by side, each pixel a Z x Z block */
        for (int y = 0; y < img.h; y++)
            for (int x = 0; x < img.w; x++) {
                const int k = x / (W * Z), sx = (x % (W * Z)) / Z, sy = y / Z;
                memcpy(img.px + ((size_t)y * img.w + (size_t)x) * 3,
                       panel[k] + ((size_t)sy * W + (size_t)sx) * 3, 3);
            }
        char name[64];
        snprintf(name, sizeof name, "scene_%d.png", i);
        char *path = io_path_join(dir, name);
        s = io_png_write(path, &img, e);
        free(path);
    }
    free(img.px);
    free(input);
    for (int k = 0; k < 3; k++) free(panel[k]);
    free(pred);
    free(grey);
    return s;
}
