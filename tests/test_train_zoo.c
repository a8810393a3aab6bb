/* The standard methods as recipe kinds (dkd, rkd, sp, pkt, cc, nst, fsp, vid, crd, ab, ofd) in
 * whole runs on the tiny synthetic data set and its teacher (tests/support/trainrun.h): each
 * trains two steps next to CE, with finite losses and weights that differ from CE alone; DKD
 * learns from examples without a label (around the teacher's top class); a CRD run stopped and
 * resumed ends byte for byte where the straight run does (its memory bank, heads and their
 * moments are resume state). Their recipes print back to themselves, and each family of recipe
 * error (a missing key, a key of another kind, a value out of range, a tap of the wrong shape, a
 * node of the wrong kind) stops at load or at set-up with the file, line and key path. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/recipe.h"
#include "distill/trainer.h"
#include "io/safetensors.h"
#include "tests/support/trainrun.h"

/* The student: trainrun's teacher without its hidden layer (conv1, pre-ReLU, and r1 are 8x8x8 on
 * both sides). */
#define STUDENT_MODEL                                                                            \
    "input h=8 w=8 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu name=r1; maxpool k=2 "           \
    "name=pool1; flatten; linear out=4 name=logits head"
enum { SEED = 3 };

/* Writes text to NAME.yaml and loads it; returns the status, e holds the message. */
static xd_status load_text(const char *name, const char *text, recipe *r, xd_err *e)
{
    char *path = tu_fmt("%s.yaml", name);
    tu_write_file(path, text, strlen(text));
    xd_err_clear(e);
    xd_status s = recipe_load(path, NULL, 0, r, e);
    free(path);
    return s;
}

/* A student recipe with CE and the given loss items (and the teacher when there are some),
 * `steps` steps of 16 examples per epoch. The items start at line 8. */
static char *student_text(int epochs, int steps, const char *losses)
{
    return tu_fmt("data: {path: toy.xds}\n"
                  "model: \"" STUDENT_MODEL "\"\n"
                  "%s"
                  "train: {epochs: %d, batch: 16, steps_per_epoch: %d, "
                  "optimizer: {kind: adamw, lr: 0.01}}\n"
                  "losses:\n  - {kind: ce}\n%s",
                  *losses ? TEACHERS : "",
                  epochs, steps, losses);
}

/* One item per kind, with the keys that the tiny models need (smaller CRD bank and heads). */
static const struct {
    const char *kind, *item;
} zoo_items[] = {
    {"dkd", "  - {kind: dkd}\n"},
    {"rkd", "  - {kind: rkd, student_tap: pool1, teacher_tap: feat}\n"},
    {"sp", "  - {kind: sp, student_tap: pool1, teacher_tap: feat, weight: 100}\n"},
    {"pkt", "  - {kind: pkt, student_tap: pool1, teacher_tap: feat}\n"},
    {"cc", "  - {kind: cc, student_tap: pool1, teacher_tap: feat}\n"},
    {"nst", "  - {kind: nst, student_tap: r1, teacher_tap: r1, weight: 10}\n"},
    {"fsp", "  - {kind: fsp, student_taps: [conv1, r1], teacher_taps: [conv1, r1]}\n"},
    {"vid", "  - {kind: vid, student_tap: r1, teacher_tap: r1}\n"},
    {"crd", "  - {kind: crd, student_tap: pool1, teacher_tap: feat, embed_dim: 16, "
            "negatives: 64}\n"},
    {"ab", "  - {kind: ab, student_tap: conv1, teacher_tap: conv1}\n"},
    {"ofd", "  - {kind: ofd, student_tap: conv1, teacher_tap: conv1}\n"},
};
enum { N_ZOO = sizeof zoo_items / sizeof zoo_items[0] };

/* Every kind trains two steps next to CE: its loss is finite and the student ends elsewhere than
 * CE alone takes it. */
static void test_each_kind_trains(void **state)
{
    (void)state;
    ensure_teacher();
    char *ce = student_text(2, 1, "");
    run_ok("zce", ce, "zce", SEED, 0, 0);
    for (int i = 0; i < N_ZOO; i++) {
        char *text = student_text(2, 1, zoo_items[i].item);
        char *dir = tu_fmt("z-%s", zoo_items[i].kind), *key = tu_fmt("loss.1.%s", zoo_items[i].kind);
        run_ok(dir, text, dir, SEED, 0, 0);
        json_t *m = read_metrics(dir);
        const double v = num(json_array_get(m, 0), key);
        json_decref(m);
        print_message("%-4s first epoch's loss %.6g\n", zoo_items[i].kind, v);
        if (!isfinite(v)) fail_msg("%s: loss %g", zoo_items[i].kind, v);
        char *last = tu_fmt("%s/last.safetensors", dir);
        if (tu_same_file(last, "zce/last.safetensors"))
            fail_msg("%s: the student ends where CE alone takes it", zoo_items[i].kind);
        free(last);
        free(key);
        free(dir);
        free(text);
    }
    free(ce);
}

/* DKD splits an example's distribution around its target class. On an example without a label
 * that is the teacher's top class: a run whose examples have no label at all still learns from
 * DKD (its loss is positive, and the student ends elsewhere than at weight 0, where nothing
 * moves it). */
static void test_dkd_unlabelled(void **state)
{
    (void)state;
    ensure_teacher();
    const char *dir[2] = {"zdkd-nolabel", "zdkd-nolabel-w0"}, *weight[2] = {"1", "0"};
    for (int i = 0; i < 2; i++) {
        char *text = tu_fmt("data: {path: toy.xds, label_fraction: 0}\n"
                            "model: \"" STUDENT_MODEL "\"\n" TEACHERS
                            "train: {epochs: 1, batch: 16, steps_per_epoch: 2, "
                            "optimizer: {kind: adamw, lr: 0.01}}\n"
                            "losses:\n  - {kind: dkd, weight: %s}\n",
                            weight[i]);
        run_ok(dir[i], text, dir[i], SEED, 0, 0);
        free(text);
    }
    json_t *m = read_metrics(dir[0]);
    const double v = num(json_array_get(m, 0), "loss.0.dkd");
    json_decref(m);
    if (!(isfinite(v) && v > 0.0)) fail_msg("dkd on unlabelled examples: loss %g", v);
    if (tu_same_file("zdkd-nolabel/last.safetensors", "zdkd-nolabel-w0/last.safetensors"))
        fail_msg("dkd on unlabelled examples: the student did not move");
}

/* Every tensor of two safetensors files is the same, byte for byte (a resume state's metadata
 * holds the training time, which differs between runs). */
static void assert_same_tensors(const char *a, const char *b)
{
    io_st_file *fa, *fb;
    xd_err e;
    TU_OK(io_st_open(a, &fa, &e));
    TU_OK(io_st_open(b, &fb, &e));
    assert_int_equal(io_st_count(fa), io_st_count(fb));
    for (size_t i = 0; i < io_st_count(fa); i++) {
        const io_tensor *x = io_st_tensor(fa, i), *y = io_st_find(fb, x->name);
        if (!y) fail_msg("%s has no tensor '%s'", b, x->name);
        size_t nx, ny;
        assert_int_equal(io_tensor_bytes(x, &nx), 0);
        assert_int_equal(io_tensor_bytes(y, &ny), 0);
        if (nx != ny || memcmp(x->data, y->data, nx) != 0)
            fail_msg("tensor '%s' of %s differs from %s's", x->name, b, a);
    }
    io_st_close(fa);
    io_st_close(fb);
}

/* A CRD run stopped after one epoch and resumed ends byte for byte where the straight run ends. */
static void test_crd_resume_exact(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = student_text(3, 4, "  - {kind: crd, student_tap: pool1, teacher_tap: feat, "
                                     "embed_dim: 16, negatives: 64}\n");
    run_ok("zcrd", text, "zcrd-full", SEED, 0, 0);
    run_ok("zcrd", text, "zcrd-part", SEED, 1, 0);
    run_ok("zcrd", text, "zcrd-part", SEED, 0, 1);
    if (!tu_same_file("zcrd-full/last.safetensors", "zcrd-part/last.safetensors"))
        fail_msg("a resumed CRD run: last.safetensors differs from the straight run's");
    /* the bank, both heads and their moments */
    assert_same_tensors("zcrd-full/resume.safetensors", "zcrd-part/resume.safetensors");
    free(text);
}

/* Every kind's keys print back to the same recipe, which prints the same again. */
static void test_round_trip(void **state)
{
    (void)state;
    ensure_teacher();
    char items[4096] = "";
    for (int i = 0; i < N_ZOO; i++) strcat(items, zoo_items[i].item);
    strcat(items, "  - {kind: dkd, alpha: 2, beta: 4, temperature: 2}\n"
                  "  - {kind: rkd, student_tap: pool1, teacher_tap: feat, distance_weight: 1, "
                  "angle_weight: 0}\n"
                  "  - {kind: vid, student_tap: r1, teacher_tap: r1, init_var: 2, projector: none}\n"
                  "  - {kind: crd, student_tap: pool1, teacher_tap: feat, momentum: 0.9, "
                  "temperature: 0.1}\n"
                  "  - {kind: ab, student_tap: conv1, teacher_tap: conv1, margin: 0.5}\n");
    char *text = student_text(1, 1, items);
    recipe a, b;
    xd_err e;
    if (load_text("zrt", text, &a, &e) != XD_OK) fail_msg("%s", e.msg);
    char *yaml = recipe_to_yaml(&a);
    for (int i = 0; i < N_ZOO; i++) {
        char *k = tu_fmt("kind: %s\n", zoo_items[i].kind);
        if (!strstr(yaml, k)) fail_msg("the printed recipe has no %s", k);
        free(k);
    }
    const char *keys[] = {"beta: 4", "distance_weight: 1", "angle_weight: 0", "init_var: 2",
                          "momentum: 0.9", "margin: 0.5", "embed_dim: 16", "negatives: 64",
                          "student_taps: [\"conv1\", \"r1\"]", "negatives: 16384",
                          "beta: 8", "distance_weight: 25", "init_var: 5", "temperature: 0.07"};
    for (int i = 0; i < (int)(sizeof keys / sizeof keys[0]); i++)
        if (!strstr(yaml, keys[i])) fail_msg("the printed recipe has no '%s':\n%s", keys[i], yaml);
    if (load_text("zprinted", yaml, &b, &e) != XD_OK)
        fail_msg("printed recipe does not load: %s\n%s", e.msg, yaml);
    /* printing is a fixed point */
    char *again = recipe_to_yaml(&b);
    recipe_free(&b);
    recipe_free(&a);
    free(text);
    assert_string_equal(yaml, again);
    free(again);
    free(yaml);
}

/* Recipe errors, each with the file, the line and the key path: found when the recipe loads (a
 * missing key, a key of another kind, a value out of range, a student node that does not exist),
 * or, for what the teacher's nodes decide (a tap of the wrong shape, a node of the wrong kind, a
 * missing node), at set-up before the first step, with nothing written. */
static void test_recipe_errors(void **state)
{
    (void)state;
    ensure_teacher();
    const struct {
        int at_setup;
        const char *item, *msg;
    } cases[] = {
        {0, "  - {kind: rkd, teacher_tap: feat}\n",
         "zbad.yaml:8: key 'losses.1': missing required key 'student_tap'"},
        {0, "  - {kind: fsp, student_taps: [conv1, r1]}\n",
         "zbad.yaml:8: key 'losses.1': missing required key 'teacher_taps'"},
        {0, "  - {kind: rkd, student_tap: pool1, teacher_tap: feat, beta: 2}\n",
         "zbad.yaml:8: losses.1.beta: does not apply to kind 'rkd' (only to dkd)"},
        {0, "  - {kind: dkd, student_tap: pool1}\n", "zbad.yaml:8: losses.1.student_tap: does not apply"},
        {0, "  - {kind: crd, student_tap: pool1, teacher_tap: feat, momentum: 1}\n",
         "zbad.yaml:8: losses.1.momentum: must be below 1"},
        {0, "  - {kind: crd, student_tap: pool1, teacher_tap: feat, negatives: 0}\n",
         "zbad.yaml:8: key 'losses.1.negatives': 0 is out of range"},
        {0, "  - {kind: vid, student_tap: r1, teacher_tap: r1, init_var: 0}\n",
         "zbad.yaml:8: losses.1.init_var: must be > 0"},
        {0, "  - {kind: fsp, student_taps: [conv1, r1, pool1], teacher_taps: [conv1, r1]}\n",
         "zbad.yaml:8: losses.1.student_taps: 3 nodes; fsp compares two maps"},
        {0, "  - {kind: fsp, student_taps: [conv1, nope], teacher_taps: [conv1, r1]}\n",
         "zbad.yaml:8: losses.1.student_taps.1: "},
        {0, "  - {kind: nst, student_tap: nope, teacher_tap: r1}\n",
         "zbad.yaml:8: losses.1.student_tap: "},
        {0, "  - {kind: ofd, student_tap: conv1, teacher_tap: conv1, detach: false}\n",
         "zbad.yaml:8: "},
        {1, "  - {kind: nst, student_tap: pool1, teacher_tap: r1}\n",
         "zbad.yaml:8: losses.1 (nst): student tap 'pool1' is 4x4x8, teacher tap 'r1' 8x8x8: the "
         "spatial sizes must match"},
        {1, "  - {kind: vid, student_tap: r1, teacher_tap: feat}\n",
         "zbad.yaml:8: losses.1 (vid): student tap 'r1' is 8x8x8, teacher tap 'feat' 1x1x32: the "
         "spatial sizes must match"},
        {1, "  - {kind: ab, student_tap: conv1, teacher_tap: r1}\n",
         "zbad.yaml:8: losses.1 (ab): teacher tap 'r1' is a relu node; ab reads the values before "
         "the ReLU"},
        {1, "  - {kind: ofd, student_tap: pool1, teacher_tap: pool1}\n",
         "zbad.yaml:8: losses.1 (ofd): teacher tap 'pool1' is a maxpool node"},
        {1, "  - {kind: fsp, student_taps: [conv1, pool1], teacher_taps: [conv1, r1]}\n",
         "zbad.yaml:8: losses.1 (fsp): student_taps 'conv1' 8x8x8 and 'pool1' 4x4x8"},
        {1, "  - {kind: cc, student_tap: pool1, teacher_tap: feat, projector: none}\n",
         "zbad.yaml:8: losses.1 (cc): widths differ (128 vs 32) and projector is none"},
        {1, "  - {kind: rkd, student_tap: pool1, teacher_tap: nope}\n",
         "zbad.yaml:8: losses.1 (rkd): teacher 'cnn' (" TEACHER_CKPT ") has no node 'nope'"},
        {1, "  - {kind: dkd, teacher_head: feat}\n",
         "zbad.yaml:8: losses.1 (dkd): dkd compares heads over the 4 classes; the student's "
         "'logits' has 4 outputs, the teacher's 'feat' 32"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        char *text = student_text(1, 1, cases[i].item);
        recipe r;
        xd_err e;
        xd_status s = load_text("zbad", text, &r, &e);
        if (s == XD_OK && cases[i].at_setup) {
            recipe_free(&r);
            train_result res;
            s = run_text("zbad", text, "zbad-out", SEED, 0, 0, &res, &e);
            if (exists("zbad-out/metrics.jsonl")) fail_msg("%s: a run started", cases[i].item);
        } else if (s == XD_OK) {
            fail_msg("loaded: %s", cases[i].item);
        }
        if (s == XD_OK) fail_msg("ran: %s", cases[i].item);
        if (!strstr(e.msg, cases[i].msg)) fail_msg("'%s'\n  does not say '%s'", e.msg, cases[i].msg);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_kind_trains),
        cmocka_unit_test(test_crd_resume_exact),
        cmocka_unit_test(test_dkd_unlabelled),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_recipe_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
