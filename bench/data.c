/* Suite `data`: how fast data gets ready for training.
 *
 * At each thread count, in one run: PNG decoding (images/s) of the cached emoji PNGs, or of 64x64
 * RGBA PNGs written into a temporary folder when the cache is absent; batch assembly through the
 * image batcher (resize, pad-4 random crop, flip, normalise; images/s); fashion-scene generation
 * (scenes/s); and `prepare emoji` end to end (all languages) when the packages are cached. The
 * 1-thread figure is each case's baseline; the speed-up column is against it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "io/file.h"
#include "io/png.h"
#include "modalities/dense/scene.h"
#include "modalities/image/augment.h"
#include "modalities/sets/sets.h"

enum { PNG_MAX = 1024, PNG_FAKE = 256, BATCH_POOL = 4096, BATCH = 256, SCENES = 2000, POOL = 1000 };

typedef struct {
    size_t n;
    void **data;
    size_t *size;
} png_set;

static void png_set_free(png_set *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->data[i]);
    free(p->data);
    free(p->size);
    memset(p, 0, sizeof *p);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Up to PNG_MAX .png files of dir (sorted by name), read into memory. */
static void png_set_load(png_set *p, const char *dir)
{
    memset(p, 0, sizeof *p);
    DIR *d = opendir(dir);
    if (!d) return;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".png") != 0) continue;
        names = xd_xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = xd_xstrdup(de->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_name);
    p->data = xd_xcalloc(PNG_MAX, sizeof *p->data);
    p->size = xd_xcalloc(PNG_MAX, sizeof *p->size);
    for (size_t i = 0; i < n; i++) {
        char *path = io_path_join(dir, names[i]);
        xd_err e;
        if (p->n < PNG_MAX &&
            io_read_all(path, (size_t)1 << 24, &p->data[p->n], &p->size[p->n], &e) == XD_OK)
            p->n++;
        free(path);
        free(names[i]);
    }
    free(names);
}

/* PNG_FAKE smooth 64x64 RGBA images (a disc over transparency, like an emoji) in tmp. */
static void png_set_fake(png_set *p, const char *tmp)
{
    io_image img = {.w = 64, .h = 64, .c = 4};
    img.px = xd_xmalloc(64 * 64 * 4);
    for (int k = 0; k < PNG_FAKE; k++) {
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) {
                uint8_t *q = img.px + (y * 64 + x) * 4;
                int dx = x - 32, dy = y - 32, in = dx * dx + dy * dy < 28 * 28;
                q[0] = (uint8_t)(k * 7 + x * 3);
                q[1] = (uint8_t)(k * 13 + y * 3);
                q[2] = (uint8_t)(x * y / 16 + k);
                q[3] = in ? 255 : 0;
            }
        char name[32];
        snprintf(name, sizeof name, "%03d.png", k);
        char *path = io_path_join(tmp, name);
        xd_err e;
        io_png_write(path, &img, &e);
        free(path);
    }
    free(img.px);
    png_set_load(p, tmp);
}

static void run_png(void *ctx)
{
    const png_set *p = ctx;
    io_image_opts opt = {.channels = 3, .bg = {255, 255, 255}};
#pragma omp parallel for schedule(dynamic, 8)
    for (size_t i = 0; i < p->n; i++) {
        io_image img;
        xd_err e;
        if (io_png_read_mem(p->data[i], p->size[i], NULL, &opt, &img, &e) == XD_OK)
            io_image_free(&img);
    }
}

typedef struct {
    img_batcher *b;
    uint8_t *images;
    uint32_t idx[BATCH];
    float *out;
    uint64_t epoch;
} batch_ctx;

static void run_batch(void *ctx)
{
    batch_ctx *c = ctx;
    xd_err e;
    img_batcher_fill(c->b, c->images, BATCH_POOL, c->idx, BATCH, 1, 1, c->epoch++, c->out, &e);
}

typedef struct {
    dense_pool pool;
    dense_scene_cfg cfg;
    uint8_t *image, *label;
    dense_layout *lay;
} scene_ctx;

static void run_scenes(void *ctx)
{
    scene_ctx *c = ctx;
    xd_err e;
    dense_scenes_make(&c->pool, &c->cfg, 0, SCENES, c->image, c->label, c->lay, &e);
}

typedef struct {
    sets_emoji_opts o;
    int failed;
} emoji_ctx;

static void run_emoji(void *ctx)
{
    emoji_ctx *c = ctx;
    sets_summary sum;
    xd_err e;
    if (sets_emoji(&c->o, &sum, &e) == XD_OK)
        sets_summary_free(&sum);
    else
        c->failed = 1;
}

/* Times fn at every thread count and prints one row per count. */
static void measure(const bench_opts *o, const char *name, const char *unit, double items,
                    void (*fn)(void *), void *ctx, int min_reps, int max_reps)
{
    double base = 0.0;
    for (int ti = 0; ti < o->n_threads; ti++) {
        int th = o->threads[ti];
        xd_threads_set(th);
        bench_time t = bench_run(fn, ctx, o->min_seconds, min_reps, max_reps);
        double rate = items / t.median;
        if (ti == 0) base = rate;
        if (o->json)
            fprintf(o->out, "{\"suite\":\"data\",\"case\":\"%s\",\"threads\":%d,\"items\":%.0f,"
                            "\"unit\":\"%s\",\"per_s\":%.1f,\"median_s\":%.6f,\"min_s\":%.6f,"
                            "\"max_s\":%.6f,\"reps\":%d,\"speedup_vs_first\":%.3f}\n",
                    name, th, items, unit, rate, t.median, t.min, t.max, t.reps, rate / base);
        else
            fprintf(o->out, "%-22s %3d %12.1f %-9s [%.1f-%.1f]  %8.4f s  %5.2fx\n", name, th, rate,
                    unit, items / t.max, items / t.min, t.median, rate / base);
    }
}

int bench_data(const bench_opts *o)
{
    int all = xd_threads_get();
    const char *cache = sets_cache_dir(NULL);
    char *pkg = io_path_join(cache, SETS_EMOJI_IMAGES_PKG "-" SETS_EMOJI_IMAGES_VERSION);
    char *img_dir = io_path_join(pkg, "img/google/64");
    png_set pngs;
    png_set_load(&pngs, img_dir);
    int cached = pngs.n > 0;
    char tmp[256] = "";
    if (!cached) {
        if (bench_temp_dir("data", tmp, sizeof tmp)) {
            free(pkg);
            free(img_dir);
            return 1;
        }
        png_set_fake(&pngs, tmp);
    }
    if (!o->json)
        fprintf(o->out, "\ndata preparation; rate median [min-max] of repeated runs, speed-up vs "
                        "the first thread count\n%-22s %3s %12s %-9s\n",
                "case", "thr", "rate", "unit");
    char name[64];
    snprintf(name, sizeof name, "png_decode_%s", cached ? "emoji" : "synthetic");
    measure(o, name, "images/s", (double)pngs.n, run_png, &pngs, 5, 10000);

    /* batch assembly: 32x32 RGB sources (the emoji set's shape), training augmentation */
    batch_ctx bc = {0};
    img_opts io;
    img_opts_default(&io);
    io.channels = 3;
    xd_err e;
    if (img_batcher_make(&bc.b, 32, 32, 3, &io, &e) == XD_OK) {
        bc.images = xd_xmalloc((size_t)BATCH_POOL * 32 * 32 * 3);
        xd_rng r = xd_rng_make(1, 0, XD_RNG_USER);
        for (size_t i = 0; i < (size_t)BATCH_POOL * 32 * 32 * 3; i++)
            bc.images[i] = (uint8_t)xd_rng_below(&r, 256);
        for (int i = 0; i < BATCH; i++) bc.idx[i] = xd_rng_below(&r, BATCH_POOL);
        int oh, ow, oc;
        img_batcher_shape(bc.b, &oh, &ow, &oc);
        bc.out = xd_xmalloc(sizeof(float) * BATCH * (size_t)oh * (size_t)ow * (size_t)oc);
        measure(o, "batch_32x32x3_aug", "images/s", BATCH, run_batch, &bc, 10, 100000);
        free(bc.out);
        free(bc.images);
        img_batcher_free(bc.b);
    }

    /* fashion scenes from a synthetic pool (layout and paste cost do not depend on content) */
    scene_ctx sc = {.cfg = dense_scene_default_cfg()};
    uint8_t *items = xd_xmalloc((size_t)POOL * 784), *labels = xd_xmalloc(POOL);
    xd_rng r = xd_rng_make(2, 0, XD_RNG_USER);
    for (size_t i = 0; i < (size_t)POOL * 784; i++) items[i] = (uint8_t)xd_rng_below(&r, 256);
    for (int i = 0; i < POOL; i++) labels[i] = (uint8_t)(i % 10);
    sc.pool = (dense_pool){items, labels, POOL};
    sc.cfg.seed = 1;
    size_t plane = (size_t)sc.cfg.canvas * (size_t)sc.cfg.canvas;
    sc.image = xd_xmalloc(SCENES * plane);
    sc.label = xd_xmalloc(SCENES * plane);
    sc.lay = xd_xmalloc(SCENES * sizeof *sc.lay);
    measure(o, "scenes_64_1-4", "scenes/s", SCENES, run_scenes, &sc, 5, 10000);
    free(sc.image);
    free(sc.label);
    free(sc.lay);
    free(items);
    free(labels);

    /* prepare emoji end to end, when the packages are cached */
    char *texts = io_path_join(cache, SETS_EMOJI_TEXTS_PKG "-" SETS_EMOJI_TEXTS_VERSION);
    struct stat st;
    if (cached && stat(texts, &st) == 0) {
        char out[256];
        if (bench_temp_dir("emoji", out, sizeof out) == 0) {
            emoji_ctx ec = {.o = sets_emoji_defaults()};
            ec.o.cache = cache;
            ec.o.out = out;
            measure(o, "prepare_emoji_28_langs", "runs/s", 1, run_emoji, &ec, 3, 5);
            if (ec.failed) fprintf(o->out, "  (prepare emoji failed; figures are not meaningful)\n");
            io_remove_tree(out);
        }
    } else if (!o->json) {
        fprintf(o->out, "prepare_emoji: skipped (packages not in %s; run xdistill prepare emoji "
                        "once)\n", cache);
    }
    free(texts);
    png_set_free(&pngs);
    if (tmp[0]) io_remove_tree(tmp);
    free(pkg);
    free(img_dir);
    xd_threads_set(all);
    return 0;
}
