/* modalities/dense: scene layout and labels, determinism, parallel == serial, metrics, overlay. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include "core/runtime.h"
#endif

#include "core/rng.h"
#include "modalities/dense/metrics.h"
#include "modalities/dense/overlay.h"
#include "modalities/dense/scene.h"

enum { POOL = 30, IP = DENSE_ITEM * DENSE_ITEM };

/* Items with values spread over 0..255, including values right at the threshold (25 and 26). */
static uint8_t pool_images[POOL * IP];
static uint8_t pool_labels[POOL];

static int setup_pool(void **state)
{
    (void)state;
    xd_rng r = xd_rng_make(99, 0, XD_RNG_USER);
    for (int i = 0; i < POOL * IP; i++) {
        uint32_t u = xd_rng_below(&r, 4);
        pool_images[i] = u == 0   ? 0
                         : u == 1 ? (uint8_t)(24 + xd_rng_below(&r, 4))
                                  : (uint8_t)xd_rng_below(&r, 256);
    }
    for (int i = 0; i < POOL; i++) pool_labels[i] = (uint8_t)(i % 10);
    return 0;
}

static dense_pool the_pool(void)
{
    return (dense_pool){.images = pool_images, .labels = pool_labels, .n = POOL};
}

/* Recomputes a scene from its layout with the rule of scene.h and compares pixel by pixel. */
static void check_scene(const dense_scene_cfg *cfg, const uint8_t *image, const uint8_t *labels,
                        const dense_layout *lay)
{
    int S = cfg->canvas;
    assert_true(lay->k_wanted >= cfg->kmin && lay->k_wanted <= cfg->kmax);
    assert_true(lay->k_placed >= 0 && lay->k_placed <= lay->k_wanted);
    for (int b = 0; b < lay->k_placed; b++) {
        const dense_box *p = &lay->boxes[b];
        assert_int_equal(p->w, 28);
        assert_int_equal(p->h, 28);
        assert_true(p->x >= 0 && p->y >= 0 && p->x + p->w <= S && p->y + p->h <= S);
        assert_true(p->item < POOL);
        assert_int_equal(p->cls, pool_labels[p->item]);
        for (int q = 0; q < b; q++) {
            const dense_box *o = &lay->boxes[q];
            int apart = p->x + p->w <= o->x || o->x + o->w <= p->x || p->y + p->h <= o->y ||
                        o->y + o->h <= p->y;
            if (!apart) fail_msg("boxes %d and %d overlap", q, b);
        }
    }
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int want_v = 0, want_l = DENSE_BACKGROUND, owners = 0;
            for (int b = 0; b < lay->k_placed; b++) {
                const dense_box *p = &lay->boxes[b];
                if (x < p->x || x >= p->x + 28 || y < p->y || y >= p->y + 28) continue;
                owners++;
                want_v = pool_images[p->item * IP + (y - p->y) * 28 + (x - p->x)];
                want_l = want_v > cfg->threshold ? p->cls : DENSE_BACKGROUND;
            }
            assert_true(owners <= 1);
            if (image[y * S + x] != want_v || labels[y * S + x] != want_l)
                fail_msg("pixel (%d,%d): got value %d label %d, expected %d and %d", x, y,
                         image[y * S + x], labels[y * S + x], want_v, want_l);
        }
}

static void test_scenes_follow_the_rules(void **state)
{
    (void)state;
    dense_pool pool = the_pool();
    dense_scene_cfg cfg = dense_scene_default_cfg();
    cfg.seed = 5;
    assert_int_equal(cfg.threshold, 25);
    int S = cfg.canvas, seen_k[5] = {0}, fg = 0, placed_total = 0;
    uint8_t *img = malloc((size_t)S * S), *lab = malloc((size_t)S * S);
    for (uint64_t i = 0; i < 300; i++) {
        dense_layout lay;
        xd_err e;
        TU_OK(dense_scene_make(&pool, &cfg, i, img, lab, &lay, &e));
        check_scene(&cfg, img, lab, &lay);
        seen_k[lay.k_wanted]++;
        placed_total += lay.k_placed;
        for (int p = 0; p < S * S; p++) fg += lab[p] != DENSE_BACKGROUND;
    }
    assert_int_equal(seen_k[0], 0);
    for (int k = 1; k <= 4; k++) assert_true(seen_k[k] > 40); /* ~75 each */
    assert_true(placed_total > 300);
    assert_true(fg > 0);
    free(img);
    free(lab);
}

static void test_crowded_canvas_places_fewer(void **state)
{
    (void)state;
    dense_pool pool = the_pool();
    dense_scene_cfg cfg = dense_scene_default_cfg();
    cfg.canvas = 28; /* room for exactly one item */
    cfg.kmin = cfg.kmax = 3;
    cfg.max_tries = 5;
    uint8_t img[28 * 28], lab[28 * 28];
    for (uint64_t i = 0; i < 20; i++) {
        dense_layout lay;
        xd_err e;
        TU_OK(dense_scene_make(&pool, &cfg, i, img, lab, &lay, &e));
        assert_int_equal(lay.k_wanted, 3);
        assert_int_equal(lay.k_placed, 1);
        assert_int_equal(lay.boxes[0].x, 0);
        assert_int_equal(lay.boxes[0].y, 0);
        assert_int_equal(lay.boxes[1].w, 0); /* unused boxes stay zero */
        check_scene(&cfg, img, lab, &lay);
    }
    /* on a 64 canvas three items always fit somewhere: a layout whose first item blocks the
     * others is drawn again instead of giving up */
    cfg = dense_scene_default_cfg();
    cfg.kmin = cfg.kmax = 3;
    uint8_t img64[64 * 64], lab64[64 * 64];
    for (uint64_t i = 0; i < 200; i++) {
        dense_layout lay;
        xd_err e;
        TU_OK(dense_scene_make(&pool, &cfg, i, img64, lab64, &lay, &e));
        assert_int_equal(lay.k_placed, 3);
        check_scene(&cfg, img64, lab64, &lay);
    }
    cfg.canvas = 28;
    cfg.kmin = cfg.kmax = 0; /* an empty scene is all background */
    dense_layout lay;
    xd_err e;
    TU_OK(dense_scene_make(&pool, &cfg, 0, img, lab, &lay, &e));
    assert_int_equal(lay.k_placed, 0);
    for (int p = 0; p < 28 * 28; p++) {
        assert_int_equal(img[p], 0);
        assert_int_equal(lab[p], DENSE_BACKGROUND);
    }
}

static void test_deterministic_and_parallel_equals_serial(void **state)
{
    (void)state;
    dense_pool pool = the_pool();
    dense_scene_cfg cfg = dense_scene_default_cfg();
    cfg.seed = 11;
    cfg.kmax = 6;
    enum { N = 97, FIRST = 1000 };
    size_t plane = (size_t)cfg.canvas * cfg.canvas;
    uint8_t *pi = malloc(N * plane), *pl = malloc(N * plane);
    uint8_t *si = malloc(N * plane), *sl = malloc(N * plane);
    dense_layout *play = calloc(N, sizeof *play), *slay = calloc(N, sizeof *slay);
    xd_err e;
#ifdef _OPENMP
    xd_threads_set(2);
#endif
    TU_OK(dense_scenes_make(&pool, &cfg, FIRST, N, pi, pl, play, &e));
    for (size_t i = N; i-- > 0;) /* reverse order: a scene must not depend on the ones before */
        TU_OK(
            dense_scene_make(&pool, &cfg, FIRST + i, si + i * plane, sl + i * plane, &slay[i], &e));
    assert_memory_equal(pi, si, N * plane);
    assert_memory_equal(pl, sl, N * plane);
    assert_memory_equal(play, slay, N * sizeof *play);
    for (size_t i = 0; i < N; i++) check_scene(&cfg, pi + i * plane, pl + i * plane, &play[i]);

    /* another seed gives other scenes, the same seed the same ones */
    dense_layout a, b;
    uint8_t *img = malloc(plane), *lab = malloc(plane);
    cfg.seed = 12;
    TU_OK(dense_scene_make(&pool, &cfg, FIRST, img, lab, &a, &e));
    assert_true(memcmp(&a, &play[0], sizeof a) != 0);
    cfg.seed = 11;
    TU_OK(dense_scene_make(&pool, &cfg, FIRST, img, lab, &b, &e));
    assert_memory_equal(&b, &play[0], sizeof b);
    free(img);
    free(lab);
    free(pi);
    free(pl);
    free(si);
    free(sl);
    free(play);
    free(slay);
}

static void test_bad_configuration_and_pool(void **state)
{
    (void)state;
    dense_pool pool = the_pool();
    dense_scene_cfg cfg = dense_scene_default_cfg();
    uint8_t img[64 * 64], lab[64 * 64];
    dense_layout lay;
    xd_err e;
    cfg.kmin = 5, cfg.kmax = 2;
    assert_int_equal(dense_scene_make(&pool, &cfg, 0, img, lab, &lay, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "5-2");
    cfg = dense_scene_default_cfg();
    cfg.canvas = 27;
    assert_int_equal(dense_scene_make(&pool, &cfg, 0, img, lab, &lay, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "canvas 27");
    cfg = dense_scene_default_cfg();
    cfg.threshold = 300;
    assert_int_equal(dense_scene_check(&pool, &cfg, &e), XD_EARG);
    cfg = dense_scene_default_cfg();
    cfg.max_layouts = 0;
    assert_int_equal(dense_scene_check(&pool, &cfg, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "layouts 0");
    cfg = dense_scene_default_cfg();
    dense_pool empty = {0};
    assert_int_equal(dense_scene_check(&empty, &cfg, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "empty");
    uint8_t bad_labels[POOL];
    memcpy(bad_labels, pool_labels, POOL);
    bad_labels[17] = 12;
    dense_pool bad = {.images = pool_images, .labels = bad_labels, .n = POOL};
    assert_int_equal(dense_scenes_make(&bad, &cfg, 0, 1, img, lab, &lay, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "item 17 has class 12");
}

static void test_confusion_by_hand(void **state)
{
    (void)state;
    const uint8_t truth[8] = {0, 0, 1, 1, 2, 2, 0, 1};
    const uint8_t pred[8] = {0, 1, 1, 1, 2, 0, 0, 2};
    /* rows true, columns predicted:
     *   0: [2 1 0]   1: [0 2 1]   2: [1 0 1]
     * IoU0 = 2/(3+3-2) = 1/2, IoU1 = 2/(3+3-2) = 1/2, IoU2 = 1/(2+2-1) = 1/3 */
    const uint64_t want[9] = {2, 1, 0, 0, 2, 1, 1, 0, 1};
    dense_confusion c;
    dense_confusion_init(&c, 3);
    xd_err e;
    TU_OK(dense_confusion_add(&c, pred, truth, 8, &e));
    for (int i = 0; i < 9; i++) assert_int_equal(c.counts[i], want[i]);
    assert_true(fabs(dense_pixel_accuracy(&c) - 5.0 / 8.0) < 1e-12);
    double iou[3];
    int present;
    double m = dense_mean_iou(&c, iou, &present);
    assert_int_equal(present, 3);
    assert_true(fabs(iou[0] - 0.5) < 1e-12 && fabs(iou[1] - 0.5) < 1e-12);
    assert_true(fabs(iou[2] - 1.0 / 3.0) < 1e-12);
    assert_true(fabs(m - (0.5 + 0.5 + 1.0 / 3.0) / 3.0) < 1e-12);
    /* adding the same maps again doubles every count and keeps the ratios */
    TU_OK(dense_confusion_add(&c, pred, truth, 8, &e));
    assert_int_equal(c.counts[0], 4);
    assert_true(fabs(dense_mean_iou(&c, NULL, NULL) - m) < 1e-12);
    /* a bad label is rejected and nothing is added */
    const uint8_t badp[2] = {0, 3};
    assert_int_equal(dense_confusion_add(&c, badp, truth, 2, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "predicted label 3 at pixel 1");
    assert_int_equal(c.counts[0], 4);
    dense_confusion_reset(&c);
    assert_true(dense_pixel_accuracy(&c) == 0.0);
    dense_confusion_free(&c);
}

static void test_mean_iou_leaves_out_absent_classes(void **state)
{
    (void)state;
    /* 5 classes: 3 never appears (left out); 4 is predicted once but never true (IoU 0, kept) */
    const uint8_t truth[8] = {0, 0, 1, 1, 2, 2, 0, 1};
    const uint8_t pred[8] = {0, 1, 1, 1, 2, 0, 4, 2};
    dense_confusion c;
    dense_confusion_init(&c, 5);
    xd_err e;
    TU_OK(dense_confusion_add(&c, pred, truth, 8, &e));
    double iou[5];
    int present;
    double m = dense_mean_iou(&c, iou, &present);
    /* IoU0 = 1/(3+2-1) = 1/4, IoU1 = 2/(3+3-2) = 1/2, IoU2 = 1/(2+2-1) = 1/3, IoU4 = 0/(0+1) */
    assert_int_equal(present, 4);
    assert_true(isnan(iou[3]));
    assert_true(fabs(iou[0] - 0.25) < 1e-12);
    assert_true(iou[4] == 0.0);
    assert_true(fabs(m - (0.25 + 0.5 + 1.0 / 3.0 + 0.0) / 4.0) < 1e-12);
    assert_true(fabs(dense_pixel_accuracy(&c) - 4.0 / 8.0) < 1e-12);
    dense_confusion_free(&c);

    /* large maps take the parallel path: counts must match a plain count */
    enum { N = 300000 };
    uint8_t *t = malloc(N), *p = malloc(N);
    uint64_t ref[DENSE_CLASSES * DENSE_CLASSES] = {0};
    xd_rng r = xd_rng_make(3, 0, XD_RNG_USER);
    for (int i = 0; i < N; i++) {
        t[i] = (uint8_t)xd_rng_below(&r, DENSE_CLASSES);
        p[i] = xd_rng_below(&r, 3) ? t[i] : (uint8_t)xd_rng_below(&r, DENSE_CLASSES);
        ref[t[i] * DENSE_CLASSES + p[i]]++;
    }
    dense_confusion_init(&c, DENSE_CLASSES);
    TU_OK(dense_confusion_add(&c, p, t, N, &e));
    assert_memory_equal(c.counts, ref, sizeof ref);
    dense_confusion_free(&c);
    free(t);
    free(p);
}

static void test_overlay_colours(void **state)
{
    (void)state;
    /* every item colour is distinct and not grey */
    for (int a = 0; a < DENSE_ITEM_CLASSES; a++) {
        const uint8_t *c = dense_palette[a];
        assert_false(c[0] == c[1] && c[1] == c[2]);
        for (int b = 0; b < a; b++) assert_memory_not_equal(c, dense_palette[b], 3);
    }
    assert_string_equal(dense_class_names[3], "Dress");
    assert_string_equal(dense_class_names[DENSE_BACKGROUND], "background");
    const uint8_t grey[4] = {100, 100, 7, 255};
    const uint8_t labels[4] = {3, DENSE_BACKGROUND, 9, 0};
    uint8_t rgb[12];
    xd_err e;
    TU_OK(dense_overlay(grey, labels, 2, 2, 0.5f, rgb, &e));
    /* Dress = (214, 39, 40), a = 128: (100*128 + 214*128 + 128) >> 8 = 157, (..39..) = 70,
     * (..40..) = 70 */
    assert_int_equal(rgb[0], 157);
    assert_int_equal(rgb[1], 70);
    assert_int_equal(rgb[2], 70);
    for (int ch = 3; ch < 6; ch++) assert_int_equal(rgb[ch], 100); /* background stays grey */
    TU_OK(dense_overlay(grey, labels, 2, 2, 1.0f, rgb, &e));
    assert_memory_equal(rgb + 6, dense_palette[9], 3);
    assert_memory_equal(rgb + 9, dense_palette[0], 3);
    TU_OK(dense_overlay(grey, labels, 2, 2, 0.0f, rgb, &e));
    for (int ch = 0; ch < 3; ch++) {
        assert_int_equal(rgb[ch], 100);
        assert_int_equal(rgb[6 + ch], 7);
        assert_int_equal(rgb[9 + ch], 255);
    }
    const uint8_t bad[4] = {0, 11, 0, 0};
    assert_int_equal(dense_overlay(grey, bad, 2, 2, 0.5f, rgb, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "label 11 at pixel (0, 1)");
    assert_int_equal(dense_overlay(grey, labels, 2, 2, NAN, rgb, &e), XD_EARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenes_follow_the_rules),
        cmocka_unit_test(test_crowded_canvas_places_fewer),
        cmocka_unit_test(test_deterministic_and_parallel_equals_serial),
        cmocka_unit_test(test_bad_configuration_and_pool),
        cmocka_unit_test(test_confusion_by_hand),
        cmocka_unit_test(test_mean_iou_leaves_out_absent_classes),
        cmocka_unit_test(test_overlay_colours),
    };
    return cmocka_run_group_tests(tests, setup_pool, NULL);
}
