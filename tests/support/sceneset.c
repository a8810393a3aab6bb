/* Tiny synthetic scenes and items for segment-task tests (see sceneset.h). */
#include "tests/support/sceneset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/dataset.h"
#include "tests/support/testutil.h"

#define S SCENE_SIDE
#define ITEM SCENE_ITEM
#define NCLS SCENE_CLASSES

static void add(io_dataset_writer *w, const char *split, const char *what, io_dtype t, int nd,
                const int64_t *shp, const void *data)
{
    char name[64];
    snprintf(name, sizeof name, "%s/%s", split, what);
    io_tensor x;
    io_tensor_set(&x, name, t, nd, shp, data);
    xd_err e;
    if (io_dataset_add(w, &x, &e) != XD_OK) fail_msg("%s", e.msg);
}

static int item_grey(int cls, xd_rng *r) { return (cls ? 220 : 100) - 10 + (int)xd_rng_below(r, 21); }

/* n scenes: image, mask, label, label_mask, boxes (one box and a row of -1 per scene) */
static void scenes_split(io_dataset_writer *w, const char *split, int n, uint64_t stream)
{
    uint8_t *img = calloc((size_t)n * S * S, 1), *mask = malloc((size_t)n * S * S);
    uint8_t *lm = malloc((size_t)n);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)n), *box = malloc(sizeof(int32_t) * (size_t)n * 10);
    xd_rng r = xd_rng_make(11, stream, XD_RNG_USER);
    memset(mask, NCLS, (size_t)n * S * S);
    for (int i = 0; i < n; i++) {
        int cls = i % NCLS, x = (int)xd_rng_below(&r, S - ITEM + 1), y = (int)xd_rng_below(&r, S - ITEM + 1);
        for (int yy = y; yy < y + ITEM; yy++)
            for (int xx = x; xx < x + ITEM; xx++) {
                /* a dark corner pixel in each item: foreground is decided per pixel */
                int dark = yy == y && xx == x;
                img[(size_t)i * S * S + (size_t)yy * S + xx] = (uint8_t)(dark ? 5 : item_grey(cls, &r));
                if (!dark) mask[(size_t)i * S * S + (size_t)yy * S + xx] = (uint8_t)cls;
            }
        lab[i] = cls;
        lm[i] = 1;
        int32_t row[10] = {x, y, ITEM, ITEM, cls, -1, -1, -1, -1, -1};
        memcpy(box + (size_t)i * 10, row, sizeof row);
    }
    int64_t shp[4] = {n, S, S, 1};
    add(w, split, "image", IO_U8, 4, shp, img);
    add(w, split, "mask", IO_U8, 3, shp, mask);
    add(w, split, "label", IO_I32, 1, shp, lab);
    add(w, split, "label_mask", IO_U8, 1, shp, lm);
    int64_t bshp[3] = {n, 2, 5};
    add(w, split, "boxes", IO_I32, 3, bshp, box);
    free(img);
    free(mask);
    free(lm);
    free(lab);
    free(box);
}

void scene_write(const char *path)
{
    xd_err e;
    io_dataset_writer *w;
    if (io_dataset_writer_open(path, 16, &w, &e) != XD_OK) fail_msg("%s", e.msg);
    scenes_split(w, "train", 96, 1);
    scenes_split(w, "test", 40, 2);
    static const char *const cls[NCLS] = {"dim", "bright"};
    static const char *const mcls[NCLS + 1] = {"dim", "bright", "background"};
    if (io_dataset_add_strings(w, "classes", cls, NCLS, &e) != XD_OK ||
        io_dataset_add_strings(w, "classes.mask", mcls, NCLS + 1, &e) != XD_OK ||
        io_dataset_finish(w, &e) != XD_OK)
        fail_msg("%s", e.msg);
}

/* single 8x8 items for the teacher */
void scene_write_items(const char *path)
{
    xd_err e;
    io_dataset_writer *w;
    if (io_dataset_writer_open(path, 8, &w, &e) != XD_OK) fail_msg("%s", e.msg);
    const char *splits[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        const int n = 64;
        uint8_t *img = malloc((size_t)n * ITEM * ITEM);
        int32_t *lab = malloc(sizeof(int32_t) * n);
        xd_rng r = xd_rng_make(5, (uint64_t)s, XD_RNG_USER);
        for (int i = 0; i < n; i++) {
            lab[i] = i % NCLS;
            for (int p = 0; p < ITEM * ITEM; p++) img[(size_t)i * ITEM * ITEM + p] = (uint8_t)item_grey(lab[i], &r);
        }
        int64_t shp[4] = {n, ITEM, ITEM, 1};
        add(w, splits[s], "image", IO_U8, 4, shp, img);
        add(w, splits[s], "label", IO_I32, 1, shp, lab);
        free(img);
        free(lab);
    }
    static const char *const cls[NCLS] = {"dim", "bright"};
    if (io_dataset_add_strings(w, "classes", cls, NCLS, &e) != XD_OK || io_dataset_finish(w, &e) != XD_OK)
        fail_msg("%s", e.msg);
}

