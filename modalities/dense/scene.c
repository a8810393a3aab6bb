/* Scene layout and rendering (see scene.h).
 *
 * The order of random draws is part of the contract (it fixes which scene a seed gives):
 * k, then per layout attempt and per item its pool index followed by up to max_tries (x, y)
 * pairs. */
#include "modalities/dense/scene.h"

#include <assert.h>
#include <string.h>

#include "core/rng.h"

const char *const dense_class_names[DENSE_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress",      "Coat",       "Sandal",
    "Shirt",       "Sneaker", "Bag",      "Ankle boot", "background",
};
static_assert(DENSE_BACKGROUND == DENSE_ITEM_CLASSES && DENSE_CLASSES == DENSE_ITEM_CLASSES + 1,
              "background is the class after the item classes");

dense_scene_cfg dense_scene_default_cfg(void)
{
    return (dense_scene_cfg){.canvas = 64,
                             .kmin = 1,
                             .kmax = 4,
                             .seed = 0,
                             .threshold = DENSE_DEFAULT_THRESHOLD,
                             .max_tries = 100,
                             .max_layouts = 16};
}

static xd_status check_cfg(const dense_pool *pool, const dense_scene_cfg *cfg, xd_err *e)
{
    if (cfg->canvas < DENSE_ITEM || cfg->canvas > DENSE_MAX_CANVAS)
        return xd_fail(e, XD_EARG, "scene canvas %d must be in %d..%d", cfg->canvas, DENSE_ITEM,
                       DENSE_MAX_CANVAS);
    if (cfg->kmin < 0 || cfg->kmin > cfg->kmax || cfg->kmax > DENSE_MAX_ITEMS)
        return xd_fail(e, XD_EARG, "scene item count %d-%d must satisfy 0 <= min <= max <= %d",
                       cfg->kmin, cfg->kmax, DENSE_MAX_ITEMS);
    if (cfg->threshold < 0 || cfg->threshold > 255)
        return xd_fail(e, XD_EARG, "scene threshold %d must be in 0..255", cfg->threshold);
    if (cfg->max_tries < 1 || cfg->max_layouts < 1)
        return xd_fail(e, XD_EARG, "scene placement tries %d and layouts %d must be at least 1",
                       cfg->max_tries, cfg->max_layouts);
    if (cfg->kmax > 0 && (pool->n == 0 || !pool->images || !pool->labels))
        return xd_fail(e, XD_EARG, "scene item pool is empty");
    if (pool->n > UINT32_MAX)
        return xd_fail(e, XD_EARG, "scene item pool of %zu items is too large", pool->n);
    return XD_OK;
}

static xd_status check_item(const dense_pool *pool, size_t i, xd_err *e)
{
    if (pool->labels[i] >= DENSE_ITEM_CLASSES)
        return xd_fail(e, XD_EARG, "scene item %zu has class %u, expected 0..%d", i,
                       pool->labels[i], DENSE_ITEM_CLASSES - 1);
    return XD_OK;
}

xd_status dense_scene_check(const dense_pool *pool, const dense_scene_cfg *cfg, xd_err *e)
{
    xd_status s = check_cfg(pool, cfg, e);
    for (size_t i = 0; s == XD_OK && cfg->kmax > 0 && i < pool->n; i++) s = check_item(pool, i, e);
    return s;
}

/* Boxes [x, x+w) x [y, y+h) intersect iff they overlap on both axes. */
static int boxes_intersect(const dense_box *a, int x, int y)
{
    return x < a->x + a->w && a->x < x + DENSE_ITEM && y < a->y + a->h && a->y < y + DENSE_ITEM;
}

/* One attempt: draw k items and place each with up to max_tries positions; stops at the first item
 * that finds no free place. */
static void layout_attempt(const dense_pool *pool, const dense_scene_cfg *cfg, xd_rng *r, int k,
                           dense_layout *lay)
{
    memset(lay, 0, sizeof *lay);
    lay->k_wanted = k;
    uint32_t span = (uint32_t)(cfg->canvas - DENSE_ITEM + 1);
    for (int i = 0; i < k; i++) {
        uint32_t item = xd_rng_below(r, (uint32_t)pool->n);
        int placed = 0;
        for (int t = 0; t < cfg->max_tries && !placed; t++) {
            int x = (int)xd_rng_below(r, span), y = (int)xd_rng_below(r, span);
            int free_spot = 1;
            for (int j = 0; j < lay->k_placed && free_spot; j++)
                free_spot = !boxes_intersect(&lay->boxes[j], x, y);
            if (!free_spot) continue;
            lay->boxes[lay->k_placed++] = (dense_box){.x = x,
                                                      .y = y,
                                                      .w = DENSE_ITEM,
                                                      .h = DENSE_ITEM,
                                                      .cls = pool->labels[item],
                                                      .item = item};
            placed = 1;
        }
        if (!placed) return;
    }
}

/* Early items can block the rest (one item in the middle of a 64 canvas leaves no room for a
 * second), so a layout that falls short is drawn again, up to max_layouts times, from the same
 * stream; the first complete one, else the first with the most items, is kept. */
static void scene_layout(const dense_pool *pool, const dense_scene_cfg *cfg, uint64_t index,
                         dense_layout *lay)
{
    xd_rng r = xd_rng_make(cfg->seed, index, XD_RNG_SCENE);
    int k = cfg->kmin + (int)xd_rng_below(&r, (uint32_t)(cfg->kmax - cfg->kmin + 1));
    dense_layout tryout;
    layout_attempt(pool, cfg, &r, k, lay);
    for (int a = 1; a < cfg->max_layouts && lay->k_placed < k; a++) {
        layout_attempt(pool, cfg, &r, k, &tryout);
        if (tryout.k_placed > lay->k_placed) *lay = tryout;
    }
}

/* label(p) = cls if item(p) > threshold else background, inside each box; background elsewhere */
static void scene_render(const dense_pool *pool, const dense_scene_cfg *cfg,
                         const dense_layout *lay, uint8_t *image, uint8_t *labels)
{
    size_t S = (size_t)cfg->canvas;
    memset(image, 0, S * S);
    memset(labels, DENSE_BACKGROUND, S * S);
    for (int b = 0; b < lay->k_placed; b++) {
        const dense_box *bx = &lay->boxes[b];
        const uint8_t *src = pool->images + (size_t)bx->item * DENSE_ITEM * DENSE_ITEM;
        for (int y = 0; y < DENSE_ITEM; y++) {
            uint8_t *img = image + (size_t)(bx->y + y) * S + (size_t)bx->x;
            uint8_t *lab = labels + (size_t)(bx->y + y) * S + (size_t)bx->x;
            for (int x = 0; x < DENSE_ITEM; x++) {
                uint8_t v = src[y * DENSE_ITEM + x];
                img[x] = v;
                lab[x] = v > cfg->threshold ? (uint8_t)bx->cls : DENSE_BACKGROUND;
            }
        }
    }
}

xd_status dense_scene_make(const dense_pool *pool, const dense_scene_cfg *cfg, uint64_t scene_index,
                           uint8_t *image, uint8_t *labels, dense_layout *layout, xd_err *e)
{
    xd_status s = check_cfg(pool, cfg, e);
    if (s != XD_OK) return s;
    scene_layout(pool, cfg, scene_index, layout);
    /* the class was copied from an unchecked label: check the items this scene used */
    for (int b = 0; b < layout->k_placed; b++) {
        s = check_item(pool, layout->boxes[b].item, e);
        if (s != XD_OK) return s;
    }
    scene_render(pool, cfg, layout, image, labels);
    return XD_OK;
}

xd_status dense_scenes_make(const dense_pool *pool, const dense_scene_cfg *cfg, uint64_t first,
                            size_t n, uint8_t *images, uint8_t *labels, dense_layout *layouts,
                            xd_err *e)
{
    /* Everything that can fail is checked here, so the parallel loop cannot. */
    xd_status s = dense_scene_check(pool, cfg, e);
    if (s != XD_OK) return s;
    size_t plane = (size_t)cfg->canvas * (size_t)cfg->canvas;
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t i = 0; i < n; i++) {
        scene_layout(pool, cfg, first + i, &layouts[i]);
        scene_render(pool, cfg, &layouts[i], images + i * plane, labels + i * plane);
    }
    return XD_OK;
}
