/* Segmentation runs (recipe `task: segment`): per-pixel labels from a data set's `S/mask`
 * section, per-pixel cross-entropy, the `dense` loss that turns a classifier teacher into
 * per-pixel soft targets, mIoU / pixel-accuracy evaluation and overlay pictures.
 *
 * The student's head is an (H, W, C) map over the scene (NHWC), C = the entries of `classes.mask`
 * (for fashion scenes 11: ten item classes, background last). Its logits are rows of C, so every
 * per-pixel loss is a row loss over B*H*W rows: `ce` is nn_ce over the pixels of the scenes whose
 * mask the run may see (the recipe's label_fraction / labels_per_class, stratified by the scene's
 * `label`), `dense` is kd_soft_ce over the pixels align_dense_targets gives a target.
 *
 * The dense loss: the teacher (a classifier with an h x w input, e.g. 28x28 Fashion-MNIST) looks
 * at windows of its own input size in every training scene: a sliding grid (`windows: grid`, every
 * `stride` pixels and flush with the far edges), windows centred on the foreground blobs of the
 * image (`windows: blobs`: 8-connected pixels above `threshold`; a blob wider or taller than a
 * window gets windows flush with each side of it), both from the image alone, or the item boxes
 * the data set stores (`windows: boxes`: the items' true positions, so the teacher is told where
 * the items are; only their classes come from it). Its window logits depend only on the
 * scene, so they are computed once (eval mode, with the preprocessing stored in its checkpoint)
 * and kept in the teacher-output cache (distill/cache.h) as (N * nwin, K) rows, keyed by the
 * teacher's weights, the data set and the windows; runs with other seeds or students reuse them.
 * Per batch: softmax(logits / T) per window, align_dense_targets (foreground = grey above
 * `threshold`, background pixels one-hot background, foreground pixels the weighted mean of the
 * covering windows' distributions, masked out when below `min_conf` or not covered), then the soft
 * cross-entropy. Everything depends only on the scene and the recipe, never on threads. */
#ifndef XD_DISTILL_SEGMENT_H
#define XD_DISTILL_SEGMENT_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "align/densemap.h"
#include "core/status.h"
#include "distill/cache.h"
#include "distill/feed.h"
#include "distill/recipe.h"
#include "io/dataset.h"
#include "nn/model.h"

/* Most window tables a run keeps (one per distinct teacher, windows, stride and head). */
#define SEG_MAX_TABLES RECIPE_MAX_LOSSES
/* Most blob windows of one scene (the largest blobs first). */
#define SEG_MAX_BLOB_WINDOWS 16
/* Test scenes drawn as overlays after a run. */
#define SEG_OVERLAYS 8

/* A teacher's logits for every window of every training scene. */
typedef struct {
    int teacher;             /* index into recipe.teachers */
    recipe_windows windows;
    int stride;              /* grid only */
    float threshold;         /* blobs only: foreground rule of the proposals */
    const char *head;        /* teacher head (NULL: default) */
    int nwin;                /* windows per scene; boxes: the most a scene holds */
    int wh, ww;              /* window size: the teacher's input */
    int K;                   /* teacher classes */
    align_box *grid;         /* (nwin) grid windows, the same in every scene; NULL otherwise */
    const int32_t *boxes;    /* blobs, boxes: (n, nwin, 5) x, y, w, h, class (-1 for blobs);
                              * rows with x = -1 are unused */
    int32_t *own;            /* blobs: the storage of boxes */
    kd_cache cache;          /* logits (n * nwin, K) */
} seg_windows;

typedef struct {
    int on;
    int H, W, C;             /* scene size and image channels */
    int n_classes;           /* per-pixel classes (classes.mask), background last */
    size_t n_train, n_test;
    const uint8_t *train_image;  /* (n_train, H, W, C) */
    const uint8_t *train_mask;   /* (n_train, H, W) */
    const uint8_t *test_image;   /* (n_test, H, W, C) */
    const uint8_t *test_mask;    /* (n_test, H, W) */
    int B;                   /* training batch */
    int32_t *lab;            /* (B, H, W) labels of a batch */
    uint8_t *lmask;          /* (B, H, W) which pixels count */
    float *p;                /* (B, H, W, n_classes) softmax of the student, for backward */
    float *target;           /* (B, H, W, n_classes) dense targets */
    float *fg;               /* (H, W) foreground measure of one scene */
    uint8_t *pred;           /* (H, W) predicted classes of one scene */
    float *wprob;            /* (nwin, K) window distributions of one scene */
    align_box *wbox;         /* (nwin) windows of one scene */
    int wcap;                /* capacity of wprob / wbox in windows */
    int n_tables;
    seg_windows tables[SEG_MAX_TABLES];
} seg_run;

/* Per-pixel scores of a model on a split. */
typedef struct {
    double miou;             /* mean IoU over present classes (modalities/dense/metrics.h) */
    double pixel_acc;
    size_t pixels;
} seg_scores;

/* The split's `S/mask` (u8 (n, H, W), values below n_classes) for n examples of H x W images, and
 * the number of mask classes (`classes.mask`; the data set must have it). Errors name the data
 * set and the section. */
xd_status seg_masks(const io_dataset *ds, const char *split, size_t n, int H, int W,
                    const uint8_t **masks, int *n_classes, xd_err *e);

/* Opens a segment run over the train and test splits for a student reading images of the
 * scenes' size, with batches of up to B. */
xd_status seg_open(seg_run *g, const io_dataset *ds, const char *train, const char *test,
                   const nn_model *student, int B, xd_err *e);
void seg_close(seg_run *g);

/* A student head for per-pixel losses must be (H, W, n_classes). loss: index for the message. */
xd_status seg_check_head(const seg_run *g, const nn_node *head, int loss, const char *kind,
                         xd_err *e);

/* Builds (or loads from the cache) the window logits of every dense loss of r on teacher ti:
 * loads the teacher from its checkpoint in eval mode with its own preprocessing. dataset_path is
 * the data set's file (the cache's identity); split the training split. A cache that had to be
 * rebuilt is reported on log (NULL: not at all). */
xd_status seg_teacher_windows(seg_run *g, const recipe *r, int ti, const io_dataset *ds,
                              const char *dataset_path, const char *split, FILE *log, xd_err *e);
/* 1 when only dense losses read teacher ti (no other loss needs it to run at every step). */
int seg_teacher_dense_only(const recipe *r, int ti);

/* Per-pixel CE over the B scenes idx: rows of scenes with sel[b] set count (NULL: all).
 * s (B, H, W, n_classes) logits; ds += weight dCE/ds. Returns CE. */
double seg_ce(seg_run *g, const float *s, float *ds, const uint32_t *idx, const uint8_t *sel,
              int B, float weight);
/* The dense loss L (its windows were built) on scenes idx: ds += weight dL/ds. Returns L. */
double seg_dense(seg_run *g, const recipe_loss *L, const float *s, float *ds, const uint32_t *idx,
                 int B, float weight);
/* Pixels of the scenes with sel[b] set whose argmax is the true class; *pixels gets how many
 * pixels were looked at. */
size_t seg_count_correct(seg_run *g, const float *s, const uint32_t *idx, const uint8_t *sel,
                         int B, size_t *pixels);

/* mIoU and pixel accuracy of head (H, W, n_classes) over every example of a feed (eval mode)
 * against masks (n, H, W); an output that is not finite is XD_ENUM naming the example
 * (nn_check_finite). input: scratch for one batch of the feed. */
xd_status seg_evaluate(nn_model *m, int head, feed *f, const uint8_t *masks, int n_classes,
                       void *input, seg_scores *out, xd_err *e);
/* The same over the examples at[0..n) of the feed (at NULL: the first n); masks (f->n, H, W). */
xd_status seg_evaluate_at(nn_model *m, int head, feed *f, const uint32_t *at, size_t n,
                          const uint8_t *masks, int n_classes, void *input, seg_scores *out,
                          xd_err *e);

/* dir/scene_K.png for the first n examples of a feed: the grey image | the true mask as a colour
 * overlay | the predicted mask as a colour overlay, enlarged for a person to look at. images
 * (n, H, W, C) the raw u8 scenes; masks (n, H, W). */
xd_status seg_write_overlays(nn_model *m, int head, feed *f, const uint8_t *images,
                             const uint8_t *masks, int n, const char *dir, xd_err *e);

#endif
