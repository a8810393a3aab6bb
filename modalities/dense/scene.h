/* Segmentation scenes made from classified items (Fashion-MNIST: 28x28 grey, classes 0..9).
 *
 * A scene is a black S x S canvas with k items (k uniform in [kmin, kmax]) pasted at random
 * positions whose 28x28 boxes never intersect. Each item's position is drawn up to max_tries times;
 * when an item finds no free place the whole layout is drawn again (up to max_layouts times, since
 * early items can block later ones), and if none holds all k items the scene keeps the attempt
 * with the most and records both counts.
 *
 * Per-pixel labels: 11 classes. An item's class id 0..9 where that item's pixel value is greater
 * than the threshold (default 25 of 255), DENSE_BACKGROUND = 10 everywhere else (the empty canvas
 * and the item's own dark pixels). Since boxes do not overlap, no pixel has two candidates.
 *
 * Items come from a pool the caller chooses (the train images for train scenes, the test images for
 * test scenes, so no test item ever appears in training). A scene depends only on (seed, scene
 * index): its random numbers come from xd_rng_make(seed, scene_index, XD_RNG_SCENE), so scenes made
 * in parallel are identical to scenes made one by one. */
#ifndef XD_DENSE_SCENE_H
#define XD_DENSE_SCENE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define DENSE_ITEM              28 /* item side in pixels */
#define DENSE_ITEM_CLASSES      10 /* item classes 0..9 */
#define DENSE_BACKGROUND        10 /* label of background pixels */
#define DENSE_CLASSES           11 /* item classes + background */
#define DENSE_DEFAULT_THRESHOLD 25
#define DENSE_MAX_ITEMS         16 /* most items one scene can ask for */
#define DENSE_MAX_CANVAS        4096

/* "T-shirt/top", ..., "Ankle boot", "background" (index DENSE_BACKGROUND) */
extern const char *const dense_class_names[DENSE_CLASSES];

typedef struct {
    const uint8_t *images; /* (n, 28, 28) */
    const uint8_t *labels; /* (n) item classes 0..9 */
    size_t n;
} dense_pool;

typedef struct {
    int canvas;     /* S, at least DENSE_ITEM */
    int kmin, kmax; /* 0 <= kmin <= kmax <= DENSE_MAX_ITEMS */
    uint64_t seed;
    int threshold;   /* foreground if pixel > threshold, 0..255 */
    int max_tries;   /* position draws per item before the layout gives up */
    int max_layouts; /* layout attempts before settling for fewer items */
} dense_scene_cfg;

typedef struct {
    int x, y, w, h; /* top-left corner and size (w = h = 28) */
    int cls;        /* item class 0..9 */
    uint32_t item;  /* index into the pool */
} dense_box;

typedef struct {
    int k_wanted; /* drawn from [kmin, kmax] */
    int k_placed; /* <= k_wanted; boxes[0..k_placed) are valid, the rest zero */
    dense_box boxes[DENSE_MAX_ITEMS];
} dense_layout;

/* canvas 64, 1..4 items, seed 0, threshold 25, 100 tries, 16 layouts */
dense_scene_cfg dense_scene_default_cfg(void);

/* Checks the configuration against the pool and every pool label (0..9). */
xd_status dense_scene_check(const dense_pool *pool, const dense_scene_cfg *cfg, xd_err *e);

/* One scene. image (S, S) grey, labels (S, S) class ids, layout the boxes. Checks the
 * configuration and the labels of the items it uses. */
xd_status dense_scene_make(const dense_pool *pool, const dense_scene_cfg *cfg, uint64_t scene_index,
                           uint8_t *image, uint8_t *labels, dense_layout *layout, xd_err *e);

/* Scenes first .. first+n-1, in parallel over scenes; images and labels (n, S, S), layouts (n).
 * Identical to n calls of dense_scene_make at any thread count. */
xd_status dense_scenes_make(const dense_pool *pool, const dense_scene_cfg *cfg, uint64_t first,
                            size_t n, uint8_t *images, uint8_t *labels, dense_layout *layouts,
                            xd_err *e);

#endif
