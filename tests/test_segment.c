/* Segment tasks (distill/segment.h): per-pixel CE on the scenes a run may see, the dense loss from a
 * classifier teacher's windows (checked against the same pipeline assembled by hand from tested
 * pieces, and against finite differences), mIoU evaluation, recipe errors, and small end-to-end
 * runs that learn, reproduce at 1 and 2 threads, resume exactly and draw overlays.
 *
 * The data are made here (tests/support/sceneset.h): 16x16 scenes with one 8x8 item each, class 0
 * dim (grey ~100) or class 1 bright (~220), at a random place on a black canvas; per-pixel classes
 * 0, 1 and 2 = background. A classifier teacher on single 8x8 items learns the two classes from
 * the brightness. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "align/densemap.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/kd.h"
#include "distill/recipe.h"
#include "distill/segment.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/png.h"
#include "modalities/dense/metrics.h"
#include "nn/loss.h"
#include "tests/support/sceneset.h"
#include "tests/support/testutil.h"

#define S SCENE_SIDE      /* canvas side */
#define ITEM SCENE_ITEM   /* item side = the teacher's window */
#define NCLS SCENE_CLASSES /* item classes; background is NCLS */

static const char *const scenes_path = "scenes.xds";
static const char *const items_path = "items.xds";
static const char *const teacher_dir = "teacher";

static int ready;

/* The data sets and a trained teacher (normalised inputs, so its checkpoint's preprocessing
 * matters), made once per test binary. */
static void ensure_setup(void)
{
    if (ready) return;
    scene_write(scenes_path);
    scene_write_items(items_path);
    const char *text = "name: t\ndata: {path: items.xds, augment: \"mean=0.5 std=0.25\"}\n"
                       "model: \"input h=8 w=8 c=1; flatten; linear out=2 name=logits head\"\n"
                       "train: {epochs: 10, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.05}}\n"
                       "losses: [{kind: ce}]\n";
    tu_write_file("teacher.yaml", text, strlen(text));
    recipe r;
    xd_err e;
    if (recipe_load("teacher.yaml", NULL, 0, &r, &e) != XD_OK) fail_msg("%s", e.msg);
    train_opts o = {.out_dir = teacher_dir, .quiet = 1};
    train_result res;
    if (trainer_run(&r, 1, &o, &res, &e) != XD_OK) fail_msg("teacher: %s", e.msg);
    recipe_free(&r);
    if (res.final_acc < 0.99) fail_msg("the teacher learns brightness (%g)", res.final_acc);
    ready = 1;
}

// ----------------------------------------------------------------------------------------------
// recipes

static const char *const student =
    "input h=16 w=16 c=1; conv2d out=8 k=3 pad=1; relu name=r1; maxpool k=2;"
    " conv2d out=8 k=3 pad=1; relu; upsample factor=2; add with=r1; conv2d out=3 k=1 name=logits head";

/* A segment recipe: extra data keys, losses (YAML flow list items), epochs. */
static char *seg_recipe(const char *data_extra, const char *losses, int epochs)
{
    char *s = NULL;
    if (asprintf(&s,
                 "name: seg\ntask: segment\n"
                 "data: {path: scenes.xds, augment: \"mean=0.2 std=0.3\"%s}\n"
                 "model: \"%s\"\n"
                 "teachers: [{name: cls, checkpoint: teacher/best.safetensors}]\n"
                 "train: {epochs: %d, batch: 8, threads: 1, optimizer: {kind: adamw, lr: 0.02}}\n"
                 "losses: [%s]\n",
                 data_extra, student, epochs, losses) < 0)
        fail_msg("out of memory");
    return s;
}

/* Loads text (no teacher line when the losses name none: the recipe refuses unused teachers). */
static xd_status parse(const char *text, recipe *r, xd_err *e)
{
    char *copy = strdup(text);
    if (!strstr(copy, "kind: dense") && !strstr(copy, "kind: kd")) {
        char *t = strstr(copy, "teachers:");
        char *end = strchr(t, '\n');
        memmove(t, end + 1, strlen(end + 1) + 1);
    }
    xd_err_clear(e);
    xd_status s = recipe_parse("seg.yaml", copy, strlen(copy), NULL, 0, 0, r, e);
    free(copy);
    return s;
}

static train_result run(const char *text, const char *out, int stop_after, int resume)
{
    recipe r;
    xd_err e;
    if (parse(text, &r, &e) != XD_OK) fail_msg("recipe: %s", e.msg);
    train_opts o = {.out_dir = out, .quiet = 1, .stop_after = stop_after, .resume = resume};
    train_result res;
    if (trainer_run(&r, 3, &o, &res, &e) != XD_OK) fail_msg("run %s: %s", out, e.msg);
    recipe_free(&r);
    return res;
}

/* The same parameters and state, bit for bit (the metadata holds the recipe, threads included). */
static int same_model(const char *a, const char *b)
{
    nn_model x, y;
    xd_err e;
    TU_OK(ckpt_load(a, 1, &x, &e));
    TU_OK(ckpt_load(b, 1, &y, &e));
    int same = x.n_param == y.n_param && x.n_state == y.n_state &&
               memcmp(x.param, y.param, sizeof(float) * x.n_param) == 0 &&
               memcmp(x.state, y.state, sizeof(float) * x.n_state) == 0;
    nn_model_free(&x);
    nn_model_free(&y);
    return same;
}

// ----------------------------------------------------------------------------------------------
// a segment run opened by hand, for the loss tests

typedef struct {
    recipe r;
    io_dataset *ds;
    nn_model m;
    seg_run g;
} fixture;

static void fixture_open(fixture *f, const char *losses)
{
    ensure_setup();
    char *text = seg_recipe("", losses, 1);
    xd_err e;
    if (parse(text, &f->r, &e) != XD_OK) fail_msg("%s", e.msg);
    free(text);
    TU_OK(io_dataset_open(scenes_path, &f->ds, &e));
    TU_OK(nn_model_build(&f->m, student, 4, 1, &e));
    if (seg_open(&f->g, f->ds, "train", "test", &f->m, 4, &e) != XD_OK) fail_msg("%s", e.msg);
    if (f->r.n_teachers &&
        seg_teacher_windows(&f->g, &f->r, 0, f->ds, scenes_path, "train", NULL, &e) != XD_OK)
        fail_msg("%s", e.msg);
}

static void fixture_close(fixture *f)
{
    seg_close(&f->g);
    nn_model_free(&f->m);
    io_dataset_close(f->ds);
    recipe_free(&f->r);
}

enum { B = 2, ROWS = B * S * S, C = NCLS + 1 };

/* Per-pixel CE counts exactly the pixels of the selected scenes: the same value and gradient as
 * nn_ce over those scenes' pixels alone, and no gradient on the others. */
static void test_ce_masks_scenes(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, "{kind: ce}");
    static float s[ROWS * C], ds[ROWS * C], p[ROWS * C], ref[ROWS * C];
    tu_fill_uniform(s, ROWS * C, -2, 2, 3);
    const uint32_t idx[B] = {5, 17};
    const uint8_t sel[B] = {0, 1};
    memset(ds, 0, sizeof ds);
    double v = seg_ce(&f.g, s, ds, idx, sel, B, 0.5f);
    /* scene 17 alone */
    int32_t lab[S * S];
    const uint8_t *m = f.g.train_mask + 17 * S * S;
    for (int i = 0; i < S * S; i++) lab[i] = m[i];
    memset(ref, 0, sizeof ref);
    double want = nn_ce_forward(p, s + S * S * C, lab, NULL, S * S, C);
    nn_ce_backward(ref + S * S * C, p, lab, NULL, S * S, C, 0.5f);
    assert_true(fabs(v - want) < 1e-6);
    tu_assert_close(ds, ref, ROWS * C, 1e-6, 1e-7, "ce gradient");
    /* nothing selected: no loss, no gradient */
    const uint8_t none[B] = {0, 0};
    memset(ds, 0, sizeof ds);
    assert_true(seg_ce(&f.g, s, ds, idx, none, B, 1.0f) == 0.0);
    for (int i = 0; i < ROWS * C; i++) assert_true(ds[i] == 0.0f);
    fixture_close(&f);
}

/* The dense loss equals the pipeline assembled by hand: the teacher run on each grid window with
 * its checkpoint's normalisation, softmax at T, align_dense_targets, kd_soft_ce. */
static void test_dense_matches_pieces(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, "{kind: dense, windows: grid, stride: 3, temperature: 2, weighting: confidence, min_conf: 0.3}");
    const recipe_loss *L = &f.r.stages[0].losses[0];
    static float s[ROWS * C], ds[ROWS * C], target[ROWS * C], p[ROWS * C];
    uint8_t mask[ROWS];
    tu_fill_uniform(s, ROWS * C, -2, 2, 4);
    const uint32_t idx[B] = {3, 40};
    memset(ds, 0, sizeof ds);
    double v = seg_dense(&f.g, L, s, ds, idx, B, 1.0f);

    nn_model t;
    xd_err e;
    TU_OK(ckpt_load("teacher/best.safetensors", 64, &t, &e));
    align_box win[64];
    const int nwin = align_dense_grid(win, 64, S, S, ITEM, ITEM, 3);
    assert_int_equal(nwin, 16); /* offsets 0, 3, 6 and 8 (flush with the edge) on each axis */
    float *x = malloc(sizeof(float) * (size_t)nwin * ITEM * ITEM), probs[64 * NCLS], fg[S * S];
    align_dense_opts o = {.threshold = 25, .weight = ALIGN_DENSE_CONFIDENCE, .min_conf = 0.3f};
    for (int b = 0; b < B; b++) {
        const uint8_t *img = f.g.train_image + (size_t)idx[b] * S * S;
        for (int w = 0; w < nwin; w++)
            for (int y = 0; y < ITEM; y++)
                for (int xx = 0; xx < ITEM; xx++)
                    x[(size_t)w * ITEM * ITEM + y * ITEM + xx] =
                        (img[(win[w].y + y) * S + win[w].x + xx] / 255.0f - 0.5f) / 0.25f;
        nn_model_forward(&t, x, nwin, NULL);
        kd_soft_targets(probs, nn_model_out(&t, nn_model_default_head(&t)), nwin, NCLS, 2.0f);
        for (int i = 0; i < S * S; i++) fg[i] = img[i];
        TU_OK(align_dense_targets(target + (size_t)b * S * S * C, mask + b * S * S, fg, S, S, win,
                                  probs, nwin, NCLS, &o, &e));
    }
    double want = kd_soft_ce_forward(p, s, target, mask, ROWS, C);
    assert_true(fabs(v - want) < 1e-5 * (1 + fabs(want)));
    /* background pixels are one-hot background, and every scene has taught pixels */
    assert_true(target[0 * C + NCLS] == 1.0f || f.g.train_mask[3 * S * S] != NCLS);
    int taught = 0;
    for (int i = 0; i < ROWS; i++) taught += mask[i] && target[(size_t)i * C + NCLS] == 0.0f;
    assert_true(taught > 40);
    free(x);
    nn_model_free(&t);
    fixture_close(&f);
}

typedef struct {
    fixture *f;
    float *s;
    const uint32_t *idx;
} dense_ctx;

static double dense_loss(void *ctx)
{
    dense_ctx *c = ctx;
    static float scratch[ROWS * C];
    return seg_dense(&c->f->g, &c->f->r.stages[0].losses[0], c->s, scratch, c->idx, B, 1.0f);
}

/* The dense loss's gradient against central finite differences. */
static void test_dense_gradient(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, "{kind: dense, windows: boxes}");
    static float s[ROWS * C], ds[ROWS * C];
    tu_fill_uniform(s, ROWS * C, -1, 1, 5);
    const uint32_t idx[B] = {8, 9};
    memset(ds, 0, sizeof ds);
    seg_dense(&f.g, &f.r.stages[0].losses[0], s, ds, idx, B, 1.0f);
    dense_ctx c = {&f, s, idx};
    /* a slice of rows across both scenes keeps the check quick */
    const size_t off = (size_t)(S * S - 24) * C;
    tu_check_grad("dense", s + off, 48 * C, ds + off, dense_loss, &c, 1e-2, 2e-2, 1e-5);
    fixture_close(&f);
}

/* On these scenes a blob is one whole item, so the blob windows are the item boxes: the same
 * targets and loss as windows: boxes, found from the image alone. */
static void test_blobs_find_the_items(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, "{kind: dense, windows: blobs}, {kind: dense, windows: boxes}");
    static float s[ROWS * C], d1[ROWS * C], d2[ROWS * C];
    tu_fill_uniform(s, ROWS * C, -1, 1, 6);
    const uint32_t idx[B] = {0, 77};
    memset(d1, 0, sizeof d1);
    memset(d2, 0, sizeof d2);
    double a = seg_dense(&f.g, &f.r.stages[0].losses[0], s, d1, idx, B, 1.0f);
    double b = seg_dense(&f.g, &f.r.stages[0].losses[1], s, d2, idx, B, 1.0f);
    assert_true(a == b);
    assert_memory_equal(d1, d2, sizeof d1);
    /* one window per scene, the item's box; the other slots are unused */
    const seg_windows *w = &f.g.tables[0];
    assert_int_equal(w->windows, RECIPE_WINDOWS_BLOBS);
    for (size_t i = 0; i < f.g.n_train; i++) {
        const int32_t *got = w->boxes + i * (size_t)w->nwin * 5;
        const int32_t *want = f.g.tables[1].boxes + i * 2 * 5;
        assert_memory_equal(got, want, 4 * sizeof(int32_t));
        assert_int_equal(got[5], -1);
    }
    fixture_close(&f);
}

// ----------------------------------------------------------------------------------------------
// evaluation

/* seg_evaluate agrees with a confusion matrix built from the model's own argmax. */
static void test_evaluate_miou(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, "{kind: ce}");
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, student, 16, 2, &e));
    feed fd;
    TU_OK(feed_open(&fd, f.ds, "test", "image", &m, "", "", &e));
    float *in = malloc(feed_example_bytes(&fd) * 16);
    seg_scores sc;
    TU_OK(seg_evaluate(&m, nn_model_default_head(&m), &fd, f.g.test_mask, C, in, &sc, &e));
    dense_confusion cm;
    dense_confusion_init(&cm, C);
    for (uint32_t i = 0; i < fd.n; i++) {
        TU_OK(feed_fill(&fd, &i, 1, 0, 0, 0, in, &e));
        nn_model_forward(&m, in, 1, NULL);
        const float *o = nn_model_out(&m, nn_model_default_head(&m));
        uint8_t pred[S * S];
        for (int px = 0; px < S * S; px++) {
            int best = 0;
            for (int k = 1; k < C; k++)
                if (o[px * C + k] > o[px * C + best]) best = k;
            pred[px] = (uint8_t)best;
        }
        TU_OK(dense_confusion_add(&cm, pred, f.g.test_mask + (size_t)i * S * S, S * S, &e));
    }
    assert_true(fabs(sc.miou - dense_mean_iou(&cm, NULL, NULL)) < 1e-12);
    assert_true(fabs(sc.pixel_acc - dense_pixel_accuracy(&cm)) < 1e-12);
    assert_int_equal(sc.pixels, fd.n * S * S);
    /* the same scenes listed in reverse order (their masks gathered) score the same */
    uint32_t *rev = malloc(sizeof(uint32_t) * fd.n);
    for (size_t i = 0; i < fd.n; i++) rev[i] = (uint32_t)(fd.n - 1 - i);
    seg_scores sr;
    TU_OK(seg_evaluate_at(&m, nn_model_default_head(&m), &fd, rev, fd.n, f.g.test_mask, C, in, &sr,
                          &e));
    assert_true(fabs(sr.miou - sc.miou) < 1e-12);
    assert_true(fabs(sr.pixel_acc - sc.pixel_acc) < 1e-12);
    free(rev);
    dense_confusion_free(&cm);
    free(in);
    feed_close(&fd);
    nn_model_free(&m);
    fixture_close(&f);
}

// ----------------------------------------------------------------------------------------------
// recipe and set-up errors

static void expect_recipe_error(const char *text, const char *want)
{
    recipe r;
    xd_err e;
    xd_status s = parse(text, &r, &e);
    if (s == XD_OK) {
        /* errors that need the data set come from the trainer */
        train_opts o = {.out_dir = "bad-run", .quiet = 1};
        train_result res;
        xd_err_clear(&e);
        s = trainer_run(&r, 1, &o, &res, &e);
        recipe_free(&r);
    }
    if (s == XD_OK) fail_msg("expected an error with '%s'", want);
    if (!strstr(e.msg, want)) fail_msg("message '%s' lacks '%s'", e.msg, want);
}

/* text with the first `old` replaced by `new`, in a new string */
static char *replaced(const char *text, const char *old, const char *with)
{
    const char *at = strstr(text, old);
    if (!at) fail_msg("'%s' not in the recipe", old);
    const size_t head = (size_t)(at - text), nw = strlen(with), rest = strlen(at + strlen(old));
    char *out = malloc(head + nw + rest + 1);
    memcpy(out, text, head);
    memcpy(out + head, with, nw);
    memcpy(out + head + nw, at + strlen(old), rest + 1);
    return out;
}

static void test_errors(void **state)
{
    (void)state;
    ensure_setup();
    char *dense = seg_recipe("", "{kind: dense}", 1), *ce = seg_recipe("", "{kind: ce}", 1);
    const struct {
        const char *base, *old, *with, *want;
    } cases[] = {
        /* a dense loss on a classify task */
        {dense, "task: segment", "task: classify", "needs task: segment"},
        /* kd on a segment task */
        {dense, "kind: dense", "kind: kd", "does not apply to task: segment"},
        /* random flips would leave the masks behind */
        {ce, "mean=0.2", "flip=0.5 mean=0.2", "no random crops or flips"},
        /* stride with boxes */
        {dense, "kind: dense", "kind: dense, windows: boxes, stride: 2", "only applies to windows: grid"},
        /* a head that is not a per-pixel map of the mask classes */
        {ce, "out=3 k=1 name=logits", "out=4 k=1 name=logits", "task segment needs 16x16x3"},
        /* a data set whose scenes are not the student's input size */
        {ce, "scenes.xds", "items.xds", "scenes of items.xds are 8x8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = replaced(cases[i].base, cases[i].old, cases[i].with);
        expect_recipe_error(t, cases[i].want);
        free(t);
    }
    free(dense);
    free(ce);
}

// ----------------------------------------------------------------------------------------------
// end to end

static double last_miou(const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    size_t n;
    char *text = tu_read_file(path, &n);
    const char *k = strstr(text, "\"final_test_miou\":");
    if (!k) fail_msg("%s has no final_test_miou", path);
    double v = strtod(k + strlen("\"final_test_miou\":"), NULL);
    free(text);
    return v;
}

/* Masks on every scene: the student learns to segment; summary and overlays are there. */
static void test_ce_run_learns(void **state)
{
    (void)state;
    ensure_setup();
    char *t = seg_recipe("", "{kind: ce}", 4);
    train_result res = run(t, "ce-run", 0, 0);
    assert_true(res.segment);
    assert_true(res.final_acc > 0.8);
    assert_true(res.final_pixel_acc > 0.9);
    assert_true(fabs(last_miou("ce-run") - res.final_acc) < 1e-6);
    io_image img;
    xd_err e;
    TU_OK(io_png_read("ce-run/overlays/scene_7.png", NULL, &img, &e));
    assert_int_equal(img.w, 3 * S * 4);
    assert_int_equal(img.h, S * 4);
    free(img.px);
    free(t);
}

/* A validation split held out of the scenes: val_miou and val_pixel_acc at every evaluation, the
 * best epoch the best validation mIoU, its test mIoU in the summary. */
static void test_validation_miou(void **state)
{
    (void)state;
    ensure_setup();
    char *t = seg_recipe(", val_fraction: 0.2", "{kind: ce}", 3);
    train_result res = run(t, "val-run", 0, 0);
    assert_true(res.val);
    char *text;
    size_t n;
    text = tu_read_file("val-run/metrics.jsonl", &n);
    text = realloc(text, n + 1);
    text[n] = '\0';
    double best = -1.0, test_at = -1.0;
    int best_epoch = 0, epoch = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        epoch++;
        const char *v = strstr(line, "\"val_miou\":"), *p = strstr(line, "\"val_pixel_acc\":");
        const char *tm = strstr(line, "\"test_miou\":");
        if (!v || !p || !tm) fail_msg("metrics line without val_miou, val_pixel_acc: %s", line);
        double vm = strtod(v + strlen("\"val_miou\":"), NULL);
        if (vm > best) {
            best = vm;
            best_epoch = epoch;
            test_at = strtod(tm + strlen("\"test_miou\":"), NULL);
        }
    }
    free(text);
    assert_int_equal(res.best_epoch, best_epoch);
    assert_true(fabs(res.best_acc - best) < 1e-6);
    assert_true(fabs(res.test_at_best - test_at) < 1e-6);
    text = tu_read_file("val-run/summary.json", &n);
    text = realloc(text, n + 1);
    text[n] = '\0';
    assert_non_null(strstr(text, "\"best_on\": \"val\""));
    assert_non_null(strstr(text, "\"best_val_miou\":"));
    assert_non_null(strstr(text, "\"test_miou_at_best\":"));
    free(text);
    free(t);
}

/* One mask per class and the teacher's windows (grid or blobs) teach the student to segment far
 * better than the masks alone. */
static void test_dense_run_learns(void **state)
{
    (void)state;
    ensure_setup();
    char *few = seg_recipe(", labels_per_class: 1", "{kind: ce}", 4);
    train_result a = run(few, "few-run", 0, 0);
    char *grid = seg_recipe(", labels_per_class: 1", "{kind: dense, windows: grid, stride: 2}", 4);
    train_result b = run(grid, "grid-run", 0, 0);
    char *blobs = seg_recipe(", labels_per_class: 1", "{kind: dense, windows: blobs}", 4);
    train_result c = run(blobs, "blobs-run", 0, 0);
    assert_true(b.final_acc > 0.7);
    assert_true(c.final_acc > 0.7);
    assert_true(b.final_acc > a.final_acc + 0.1);
    assert_true(c.final_acc > a.final_acc + 0.1);
    free(few);
    free(grid);
    free(blobs);
}

/* The same run at 1 and 2 threads, and stopped and resumed, gives the same bytes. */
static void test_threads_and_resume(void **state)
{
    (void)state;
    ensure_setup();
    char *t1 = seg_recipe(", label_fraction: 0.1", "{kind: ce}, {kind: dense, windows: grid, stride: 4}", 2);
    run(t1, "thr1", 0, 0);
    char *t2 = strdup(t1);
    memcpy(strstr(t2, "threads: 1"), "threads: 2", 10);
    run(t2, "thr2", 0, 0);
    assert_true(same_model("thr1/last.safetensors", "thr2/last.safetensors"));
    run(t1, "res", 1, 0);
    run(t1, "res", 0, 1);
    assert_true(same_model("thr1/last.safetensors", "res/last.safetensors"));
    free(t1);
    free(t2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ce_masks_scenes),
        cmocka_unit_test(test_dense_matches_pieces),
        cmocka_unit_test(test_dense_gradient),
        cmocka_unit_test(test_blobs_find_the_items),
        cmocka_unit_test(test_evaluate_miou),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_ce_run_learns),
        cmocka_unit_test(test_validation_miou),
        cmocka_unit_test(test_dense_run_learns),
        cmocka_unit_test(test_threads_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
