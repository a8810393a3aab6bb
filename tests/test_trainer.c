/* distill/trainer: whole runs of recipes on a tiny synthetic data set (tests/support/tinyset.h)
 * that the tests write themselves. A CNN teacher learns the toy task; its run folder holds the
 * metrics, summary, checkpoints and effective recipe, and they agree with each other. Runs are
 * bit-reproducible per seed and thread count. Numerical blow-ups stop the run with the epoch, the
 * step and the layer, keeping the last good checkpoint, and a teacher whose outputs are not
 * finite stops it naming the teacher; bad recipes get messages that name the
 * problem; the schedule, eval_every, label_fraction and the preprocessing words do what
 * docs/RECIPES.md says. Runs that could crash (buffer bounds) run in a child process of this
 * program. Resume: test_resume.c; students: test_students.c; validation: test_validation.c. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "align/clip.h"
#include "core/mem.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "distill/kd.h"
#include "distill/recipe.h"
#include "distill/runlock.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/safetensors.h"
#include "nn/model.h"
#include "tests/support/dirsnap.h"
#include "tests/support/imgfix.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

static void test_teacher_run_folder(void **state)
{
    (void)state;
    ensure_teacher();
    const train_result *res = &teacher_res;
    assert_int_equal(res->epochs_done, 4);
    assert_int_equal(res->finished, 1);
    assert_int_equal(res->seed, 1);
    if (!(res->final_acc >= 0.95)) fail_msg("teacher test accuracy %.3f < 0.95", res->final_acc);
    /* no validation split: the test split chooses nothing, the best is the last epoch */
    assert_true(res->best_acc == res->final_acc);
    assert_int_equal(res->best_epoch, 4);

    /* metrics: one line per epoch, in order, with the test accuracy */
    json_t *m = read_metrics("teacher");
    assert_int_equal(json_array_size(m), 4);
    for (int i = 0; i < 4; i++) {
        json_t *l = json_array_get(m, (size_t)i);
        assert_int_equal((int)num(l, "epoch"), i + 1);
        assert_int_equal((int)num(l, "stage"), 1);
        assert_int_equal((long)num(l, "step"), (long)(i + 1) * STEPS);
        double acc = num(l, "test_acc"), loss = num(l, "loss"), ce = num(l, "loss.0.ce");
        assert_true(acc >= 0.0 && acc <= 1.0);
        assert_true(isfinite(loss) && loss > 0.0);
        assert_true(fabs(loss - ce) < 1e-6); /* one loss of weight 1 */
        assert_true(json_is_number(json_object_get(l, "train_acc")));
    }
    /* learning happened: the last epoch's loss is well below the first */
    assert_true(num(json_array_get(m, 3), "loss") < 0.5 * num(json_array_get(m, 0), "loss"));
    assert_true(fabs(num(json_array_get(m, 3), "test_acc") - res->final_acc) < 1e-7);
    json_decref(m);

    /* summary */
    json_error_t je;
    json_t *s = json_load_file("teacher/summary.json", 0, &je);
    if (!s) fail_msg("summary.json: %s", je.text);
    assert_true(json_is_true(json_object_get(s, "finished")));
    assert_true(fabs(num(s, "final_test_acc") - res->final_acc) < 1e-7);
    assert_string_equal(json_string_value(json_object_get(s, "best_on")), "last");
    assert_null(json_object_get(s, "best_test_acc"));
    assert_true(fabs(num(s, "test_acc_at_best") - res->final_acc) < 1e-7);
    assert_int_equal((int)num(s, "best_epoch"), 4);
    assert_int_equal((int)num(s, "epochs"), 4);
    assert_int_equal((int)num(s, "seed"), 1);
    assert_int_equal((int)num(s, "labels_used"), N_TRAIN);
    json_decref(s);

    /* files */
    const char *files[] = {"last.safetensors", "best.safetensors", "resume.safetensors",
                           "recipe.yaml"};
    for (int i = 0; i < 4; i++) {
        char *p = path2("teacher", files[i]);
        if (!exists(p)) fail_msg("%s is missing", p);
        free(p);
    }

    /* the stored recipe is the effective one */
    recipe a, b;
    load_recipe("teacher", teacher_recipe, &a);
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load("teacher/recipe.yaml", NULL, 0, &b, &e) != XD_OK) fail_msg("%s", e.msg);
    char *ya = recipe_to_yaml(&a), *yb = recipe_to_yaml(&b);
    assert_string_equal(ya, yb);
    free(ya);
    free(yb);
    recipe_free(&a);
    recipe_free(&b);

    /* best.safetensors (the last epoch here) gives its recorded score again, last.safetensors the
     * final one */
    nn_model t;
    load_ckpt(TEACHER_CKPT, &t);
    assert_true(accuracy(&t, "toy.xds", "image", "", "") == res->best_acc);
    char *ep;
    TU_OK(ckpt_read_meta(TEACHER_CKPT, "epoch", &ep, &e));
    assert_non_null(ep);
    assert_int_equal(atoi(ep), res->best_epoch);
    free(ep);
    nn_model_free(&t);
    load_ckpt("teacher/last.safetensors", &t);
    assert_true(accuracy(&t, "toy.xds", "image", "", "") == res->final_acc);
    nn_model_free(&t);
}

static void assert_params_differ(const char *a, const char *b)
{
    nn_model x, y;
    load_ckpt(a, &x);
    load_ckpt(b, &y);
    assert_int_equal(x.n_param, y.n_param);
    size_t diff = 0;
    for (size_t i = 0; i < x.n_param; i++) diff += x.param[i] != y.param[i];
    if (diff < x.n_param / 2)
        fail_msg("%s and %s share %zu of %zu parameters", a, b, x.n_param - diff, x.n_param);
    nn_model_free(&x);
    nn_model_free(&y);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  augment: \"pad=1 flip=0.5\"\n",
                                "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; "
                                "dropout p=0.25; linear out=4 name=logits head",
                                "", 2, "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    train_result a = run_ok("repro", text, "repro-a", 3, 0, 0);
    train_result b = run_ok("repro", text, "repro-b", 3, 0, 0);
    train_result c = run_ok("repro", text, "repro-c", 4, 0, 0);
    assert_true(tu_same_file("repro-a/last.safetensors", "repro-b/last.safetensors"));
    assert_true(tu_same_file("repro-a/best.safetensors", "repro-b/best.safetensors"));
    assert_true(a.final_acc == b.final_acc && a.best_epoch == b.best_epoch);
    assert_same_metrics("repro-a", "repro-b");
    assert_int_equal(c.epochs_done, 2);
    assert_params_differ("repro-a/last.safetensors", "repro-c/last.safetensors");
    free(text);
}

/* The thread count does not change the numbers (each run sets its own). */
static void test_threads_do_not_change_results(void **state)
{
    (void)state;
    ensure_data();
    int before = xd_threads_get();
    char *one = tu_fmt("data: {path: toy.xds}\nmodel: \"" CNN_MODEL "\"\n"
                    "train: {epochs: 1, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"
                    "losses:\n  - kind: ce\n");
    char *two = tu_fmt("data: {path: toy.xds}\nmodel: \"" CNN_MODEL "\"\n"
                    "train: {epochs: 1, batch: 16, threads: 2, optimizer: {kind: adamw, lr: 0.01}}\n"
                    "losses:\n  - kind: ce\n");
    run_ok("thr1", one, "thr1", 5, 0, 0);
    run_ok("thr2", two, "thr2", 5, 0, 0);
    xd_threads_set(before);
    nn_model x, y;
    load_ckpt("thr1/last.safetensors", &x);
    load_ckpt("thr2/last.safetensors", &y);
    assert_int_equal(x.n_param, y.n_param);
    assert_memory_equal(x.param, y.param, sizeof(float) * x.n_param);
    nn_model_free(&x);
    nn_model_free(&y);
    free(one);
    free(two);
}

static void test_nan_absurd_lr(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("", MLP_MODEL, "", 2, "{kind: sgd, lr: 1e30}", "  - kind: ce\n");
    train_result r;
    xd_err e;
    assert_int_equal(run_text("nan1", text, "nan1", 1, 0, 0, &r, &e), XD_ENUM);
    /* the first step is fine; the update it makes breaks the second */
    tu_assert_err(&e, XD_ENUM, "epoch 1, step 2:");
    /* which loss, and the student's layer where the values first stop being finite */
    tu_assert_err(&e, XD_ENUM, "losses.0 (ce)");
    tu_assert_err(&e, XD_ENUM, "the first non-finite output is the student's layer 'logits' (linear)");
    assert_false(exists("nan1/last.safetensors"));
    assert_checkpoints_load("nan1");
    free(text);
}

static void test_nan_in_second_epoch_keeps_first(void **state)
{
    (void)state;
    ensure_data();
    /* the loss weight of stage 2 makes the first update of epoch 2 blow up */
    char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {batch: 16, optimizer: {kind: sgd, lr: 0.1}}\n"
                     "stages:\n"
                     "  - {epochs: 1, losses: [{kind: ce}]}\n"
                     "  - {epochs: 1, losses: [{kind: ce, weight: 1e30}]}\n");
    run_ok("nan2", text, "nan2-ref", 1, 1, 0);
    train_result r;
    xd_err e;
    assert_int_equal(run_text("nan2", text, "nan2", 1, 0, 0, &r, &e), XD_ENUM);
    char *want = tu_fmt("epoch 2, step %d:", STEPS + 2);
    tu_assert_err(&e, XD_ENUM, want);
    free(want);
    assert_true(strstr(e.msg, "loss") || strstr(e.msg, "gradient"));
    /* last.safetensors is epoch 1's, exactly as a run stopped there wrote it */
    assert_checkpoints_load("nan2");
    assert_true(tu_same_file("nan2/last.safetensors", "nan2-ref/last.safetensors"));
    json_t *m = read_metrics("nan2");
    assert_int_equal(json_array_size(m), 1);
    json_decref(m);
    free(text);
}

static void test_nan_gradient_names_layer(void **state)
{
    (void)state;
    ensure_data();
    /* inputs scaled by 1000 and a loss weight near the float limit: the loss (summed in double)
     * stays finite, the first layer's weight gradient overflows */
    char *text = student_recipe("  augment: \"std=0.001\"\n", MLP_MODEL, "", 1,
                                "{kind: sgd, lr: 0.001}", "  - {kind: ce, weight: 3e38}\n");
    train_result r;
    xd_err e;
    assert_int_equal(run_text("nan3", text, "nan3", 1, 0, 0, &r, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "epoch 1, step 1: the gradient of the student's 'fc1.weight' (layer "
                               "'fc1', linear) is not finite");
    assert_false(exists("nan3/last.safetensors"));
    free(text);
}

/* An update that makes the parameters infinite at the last step of an epoch (one step per epoch
 * here) must not be saved as the "last good" checkpoint. */
static void test_nan_update_not_saved(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  labels_per_class: 2\n", MLP_MODEL, "", 2,
                                "{kind: sgd, lr: 1e30, weight_decay: 1e30}", "  - kind: ce\n");
    train_result r;
    xd_err e;
    xd_status s = run_text("nan4", text, "nan4", 1, 0, 0, &r, &e);
    assert_int_equal(s, XD_ENUM);
    print_message("%s\n", e.msg);
    assert_checkpoints_load("nan4");
    free(text);
}

/* A teacher whose weights are finite but overflow float in its forward (a layer's weights all
 * 3e38 over inputs >= 0) stops the run before the first step, naming it and the example: run at
 * every step (cache: false, or a tapped feature no cache holds) as when its cache is built. */
static void test_teacher_output_not_finite(void **state)
{
    (void)state;
    ensure_teacher();
    tu_rewrite_value(TEACHER_CKPT, "huge-logits.safetensors", "logits.weight", TU_ALL, 3e38f);
    tu_rewrite_value(TEACHER_CKPT, "huge-fc1.safetensors", "fc1.weight", TU_ALL, 3e38f);
    const struct {
        const char *name, *teacher, *loss, *want;
    } runs[] = {
        {"huge-online", "huge-logits.safetensors, cache: false", "  - kind: kd\n",
         "teacher 'cnn': the teacher's output for example "},
        {"huge-cached", "huge-logits.safetensors, cache: true", "  - kind: kd\n",
         "teacher 'cnn' cache: teacher cache: the teacher's output for example "},
        {"huge-tap", "huge-fc1.safetensors", "  - {kind: hint, student_tap: feat, teacher_tap: "
         "feat}\n", "teacher 'cnn': the teacher's output at 'feat' for example "},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char *teachers = tu_fmt("teachers:\n  - {name: cnn, checkpoint: %s}\n", runs[i].teacher);
        char *text = student_recipe("", MLP_MODEL, teachers, 1, "adamw", runs[i].loss);
        expect_error(runs[i].name, text, runs[i].want, "is not finite");
        free(text);
        free(teachers);
    }
}

static void test_errors(void **state)
{
    (void)state;
    ensure_teacher();
    /* a view the data set does not have: for the student, and for a teacher */
    char *t1 = student_recipe("  student_view: text.xx\n  text: \"buckets=512\"\n", TEXT_MODEL, "",
                              1, "adamw", "  - kind: ce\n");
    expect_error("view-student", t1, "text.xx", NULL);
    char *t2 = student_recipe("", MLP_MODEL,
                              "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT
                              ", view: text.xx}\n",
                              1, "adamw", "  - kind: kd\n");
    expect_error("view-teacher", t2, "text.xx", NULL);

    /* a teacher with 5 outputs for a 4-class student */
    nn_model five;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(nn_model_build(&five, "input h=8 w=8 c=1; flatten; linear out=5 name=out5 head", 4, 3, &e));
    TU_OK(ckpt_save("five.safetensors", &five, NULL, 0, &e));
    nn_model_free(&five);
    char *t3 = student_recipe("", MLP_MODEL,
                              "teachers:\n  - {name: five, checkpoint: five.safetensors}\n", 1,
                              "adamw", "  - kind: kd\n");
    expect_error("head-width", t3, "5", "4");
    {
        train_result r;
        assert_int_equal(run_text("head-width", t3, "err-head-width", 1, 0, 0, &r, &e), XD_ESHAPE);
        /* the teacher's file, its head and the data set's label set */
        assert_non_null(strstr(e.msg, "five.safetensors: the model has 5 classes (head 'out5')"));
        assert_non_null(strstr(e.msg, "label has 4"));
    }

    /* feature maps of different spatial sizes: student r1 is 8x8, teacher pool1 4x4 */
    char *t4 = student_recipe("", CNN_MODEL, TEACHERS, 1, "adamw",
                              "  - {kind: feature, student_tap: r1, teacher_tap: pool1}\n");
    expect_error("spatial", t4, "spatial", "pool1");
    char *t4b = student_recipe("", CNN_MODEL, TEACHERS, 1, "adamw",
                               "  - {kind: attention, student_tap: r1, teacher_tap: pool1}\n");
    expect_error("spatial-at", t4b, "spatial", "pool1");

    /* a teacher node that does not exist */
    char *t5 = student_recipe("", MLP_MODEL, TEACHERS, 1, "adamw",
                              "  - {kind: hint, student_tap: feat, teacher_tap: nosuch}\n");
    expect_error("teacher-node", t5, "nosuch", NULL);

    /* a label section that is not there, with a label fraction */
    char *t6 = student_recipe("  label: label.sub\n  label_fraction: 0.5\n", MLP_MODEL, "", 1,
                              "adamw", "  - kind: ce\n");
    expect_error("label-section", t6, "label.sub", NULL);
    tiny_spec sp = tiny_default();
    sp.train_labels = 0;
    tiny_write("nolabels.xds", &sp);
    char *t7 = tu_fmt("data: {path: nolabels.xds, label_fraction: 0.5}\nmodel: \"" MLP_MODEL "\"\n"
                   "train: {epochs: 1, batch: 16}\nlosses:\n  - kind: ce\n");
    expect_error("no-train-labels", t7, "train/label", "nolabels.xds");

    free(t1);
    free(t2);
    free(t3);
    free(t4);
    free(t4b);
    free(t5);
    free(t6);
    free(t7);
}

/* A recipe whose only loss needs labels, on a split where the run may see none, has nothing to
 * train on: an error, not a run of empty epochs. */
static void test_no_usable_labels_is_an_error(void **state)
{
    (void)state;
    ensure_data();
    if (!exists("unlab.xds")) {
        tiny_spec sp = tiny_default();
        sp.unlabelled = 1;
        tiny_write("unlab.xds", &sp);
    }
    char *text = tu_fmt("data: {path: unlab.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 1, batch: 16}\nlosses:\n  - kind: ce\n");
    expect_error("ce-no-labels", text, "label", NULL);
    free(text);
}

/* No test examples: an error saying so, never "test accuracy 0.00%". */
static void test_no_test_examples_is_an_error(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    sp.n_test = 0;
    tiny_write("notest.xds", &sp);
    char *text = tu_fmt("data: {path: notest.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 1, batch: 16}\nlosses:\n  - kind: ce\n");
    expect_error("no-test", text, "notest.xds: split 'test' has no test examples", NULL);
    free(text);
}

static void test_normalisation_applies_to_evaluation(void **state)
{
    (void)state;
    /* mean/std are preprocessing, not augmentation: the evaluation must see the inputs the model
     * was trained on. Classes by grey level make the absolute input values matter. */
    tiny_spec sp = tiny_default();
    sp.brightness = 1;
    sp.texts = 0;
    tiny_write("grey.xds", &sp);
    const char *words = "mean=0.5 std=0.25";
    char *text = tu_fmt("data: {path: grey.xds, augment: \"%s\"}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.02}}\n"
                     "losses:\n  - kind: ce\n", words);
    train_result r = run_ok("norm", text, "norm", 2, 0, 0);
    nn_model m;
    load_ckpt("norm/last.safetensors", &m);
    double acc = accuracy(&m, "grey.xds", "image", words, ""), raw = accuracy(&m, "grey.xds", "image", "", "");
    print_message("normalised student: trainer says %.3f; evaluated with its inputs %.3f, "
                  "without normalisation %.3f\n", r.final_acc, acc, raw);
    assert_true(acc >= 0.9);
    assert_true(raw < 0.8); /* the data set tells the two apart */
    assert_true(r.final_acc == acc);
    nn_model_free(&m);
    free(text);
}

/* A teacher reads its inputs the way it was trained (its recipe's normalisation is stored in its
 * checkpoint), not the way the student's recipe prepares the student's inputs. */
static void test_teacher_reads_its_own_preprocessing(void **state)
{
    (void)state;
    if (!exists("grey.xds")) {
        tiny_spec sp = tiny_default();
        sp.brightness = 1;
        sp.texts = 0;
        tiny_write("grey.xds", &sp);
    }
    char *tt = tu_fmt("data: {path: grey.xds, augment: \"mean=0.5 std=0.25\"}\n"
                   "model: \"" MLP_MODEL "\"\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.02}}\n"
                   "losses:\n  - kind: ce\n");
    run_ok("greyteacher", tt, "greyteacher", 2, 0, 0);
    nn_model t;
    load_ckpt("greyteacher/last.safetensors", &t);
    double tacc = accuracy(&t, "grey.xds", "image", "mean=0.5 std=0.25", "");
    nn_model_free(&t);
    assert_true(tacc >= 0.9);
    /* the student normalises differently (std 0.5) and learns from the teacher alone; a teacher
     * fed the student's inputs (half its contrast) would confuse the grey levels */
    char *st = tu_fmt("data: {path: grey.xds, augment: \"mean=0.5 std=0.5\"}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: g, checkpoint: greyteacher/last.safetensors}\n"
                   "train: {epochs: 30, batch: 16, optimizer: {kind: adamw, lr: 0.02}}\n"
                   "losses:\n  - {kind: kd, temperature: 1}\n");
    train_result r = run_ok("greystudent", st, "greystudent", 2, 0, 0);
    print_message("teacher %.3f (own inputs), KD-only student %.3f\n", tacc, r.final_acc);
    assert_true(r.final_acc >= 0.85);
    free(tt);
    free(st);
}

/* eval_every: epochs without an evaluation log a null test accuracy and never write best; without
 * a validation split best is the last evaluated epoch */
static void test_eval_every(void **state)
{
    (void)state;
    ensure_data();
    for (int every = 0; every <= 2; every += 2) {
        char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                         "train: {epochs: 3, batch: 16, eval_every: %d, "
                         "optimizer: {kind: adamw, lr: 0.01}}\n"
                         "losses:\n  - kind: ce\n", every);
        char *dir = tu_fmt("every-%d", every);
        train_result r = run_ok(dir, text, dir, 3, 0, 0);
        json_t *m = read_metrics(dir);
        assert_int_equal(json_array_size(m), 3);
        for (int i = 0; i < 3; i++) {
            int evaluated = i == 2 || (every && (i + 1) % every == 0);
            json_t *acc = json_object_get(json_array_get(m, (size_t)i), "test_acc");
            assert_non_null(acc);
            assert_int_equal(json_is_number(acc), evaluated);
            assert_int_equal(json_is_null(acc), !evaluated);
        }
        json_decref(m);
        /* no validation split: best is the last evaluated epoch, here the last */
        assert_int_equal(r.best_epoch, 3);
        char *best = tu_fmt("%s/best.safetensors", dir), *last = tu_fmt("%s/last.safetensors", dir);
        assert_true(tu_same_file(best, last));
        free(best);
        free(last);
        assert_true(r.best_acc == r.final_acc);
        free(text);
        free(dir);
    }
}

/* label_fraction keeps round(fraction * count) labels per class; a CE-only run walks only those */
static void test_label_fraction(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  label_fraction: 0.1\n", MLP_MODEL, "", 1,
                                "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    run_ok("frac", text, "frac", 1, 0, 0);
    json_error_t je;
    json_t *s = json_load_file("frac/summary.json", 0, &je);
    assert_non_null(s);
    assert_int_equal((int)num(s, "labels_used"), 4 * 5); /* 10% of 50 per class */
    json_decref(s);
    json_t *m = read_metrics("frac");
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 2); /* 20 examples, batch 16 */
    json_decref(m);
    free(text);
}

/* steps_per_epoch cycles through a small labelled pool: 20 labels, 7 batches of 16 per epoch */
static void test_steps_per_epoch(void **state)
{
    (void)state;
    ensure_data();
    char *text = tu_fmt("data: {path: toy.xds, label_fraction: 0.1}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {epochs: 2, batch: 16, steps_per_epoch: 7, optimizer: {kind: adamw, lr: 0.01}}\n"
                     "losses:\n  - kind: ce\n");
    run_ok("spe", text, "spe", 1, 0, 0);
    json_t *m = read_metrics("spe");
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 7);
    assert_int_equal((long)num(json_array_get(m, 1), "step"), 14);
    json_decref(m);
    /* the same with a stop and resume in between */
    run_ok("spe", text, "spe-r", 1, 1, 0);
    run_ok("spe", text, "spe-r", 1, 0, 1);
    size_t na, nb;
    char *a = tu_read_file("spe/last.safetensors", &na), *b = tu_read_file("spe-r/last.safetensors", &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    free(text);
}

/* train.shuffle keyed: the same run twice gives the same bytes, another order than the stored
 * shuffle's (so other weights), every batch full and the steps as stored's; a stop and resume ends
 * where the straight run does. Over a labelled pool with held-out validation examples, cycled. */
static void test_keyed_shuffle(void **state)
{
    (void)state;
    ensure_data();
    const char *fmt = "data: {path: toy.xds, label_fraction: 0.3, val_fraction: 0.2}\n"
                      "model: \"" MLP_MODEL "\"\n"
                      "train: {epochs: 2, batch: 16, steps_per_epoch: 5, shuffle: %s, "
                      "optimizer: {kind: adamw, lr: 0.01}}\nlosses:\n  - kind: ce\n";
    char *keyed = tu_fmt(fmt, "keyed"), *stored = tu_fmt(fmt, "stored");
    run_ok("kshuf", keyed, "kshuf-a", 1, 0, 0);
    run_ok("kshuf", keyed, "kshuf-b", 1, 0, 0);
    run_ok("kshuf", keyed, "kshuf-r", 1, 1, 0);
    run_ok("kshuf", keyed, "kshuf-r", 1, 0, 1);
    run_ok("sshuf", stored, "sshuf", 1, 0, 0);
    json_t *m = read_metrics("kshuf-a");
    assert_int_equal((long)num(json_array_get(m, 1), "step"), 10);
    json_decref(m);
    size_t na, nb, nr, ns;
    char *a = tu_read_file("kshuf-a/last.safetensors", &na), *b = tu_read_file("kshuf-b/last.safetensors", &nb);
    char *r = tu_read_file("kshuf-r/last.safetensors", &nr), *st = tu_read_file("sshuf/last.safetensors", &ns);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    assert_int_equal(na, nr);
    assert_memory_equal(a, r, na);
    assert_true(na != ns || memcmp(a, st, na) != 0);
    assert_same_metrics("kshuf-a", "kshuf-r");
    free(a);
    free(b);
    free(r);
    free(st);
    free(keyed);
    free(stored);
}

/* A schedule without total_steps spans the whole run (docs/RECIPES.md), stages included. */
static void test_auto_total_steps_span_the_run(void **state)
{
    (void)state;
    ensure_data();
    char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train: {batch: 16, optimizer: {kind: sgd, lr: 0.01}, schedule: cosine}\n"
                     "stages:\n"
                     "  - {epochs: 1, losses: [{kind: ce}]}\n"
                     "  - {epochs: 1, losses: [{kind: ce}]}\n");
    run_ok("cos", text, "cos", 1, 0, 0);
    json_t *m = read_metrics("cos");
    /* after STEPS of 2 * STEPS steps, cosine is at half its base */
    double lr = num(json_array_get(m, 0), "lr");
    if (fabs(lr - 0.005) > 1e-6) fail_msg("lr after the first of two epochs: %g, expected 0.005", lr);
    json_decref(m);
    free(text);
}

/* The schedule's own base_lr is the rate a run uses (the optimizer's lr is only its default). */
static void test_schedule_base_lr(void **state)
{
    (void)state;
    ensure_data();
    char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                     "train:\n  epochs: 1\n  batch: 16\n  optimizer: {kind: sgd, lr: 0.001}\n"
                     "  schedule: {kind: constant, base_lr: 0.05}\n"
                     "losses:\n  - kind: ce\n");
    run_ok("sched", text, "sched", 1, 0, 0);
    json_t *m = read_metrics("sched");
    double lr = num(json_array_get(m, 0), "lr");
    if (fabs(lr - 0.05) > 1e-7) fail_msg("the run used lr %g, the schedule says 0.05", lr);
    json_decref(m);
    free(text);
}

static void run_child(const char *name, const char *text, train_result *res, xd_err *e)
{
    char *yaml = tu_fmt("%s.yaml", name), *out = tu_fmt("child-%s", name), *st = tu_fmt("%s.status", out);
    tu_write_file(yaml, text, strlen(text));
    remove(st);
    char *argv[] = {"test_trainer", "--child", yaml, out, NULL};
    extern char **environ;
    pid_t pid;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0)
        fail_msg("cannot start a child process");
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    if (WIFSIGNALED(ws)) fail_msg("%s: the trainer crashed (signal %d)", name, WTERMSIG(ws));
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("%s: the trainer died (exit status %d)", name, WEXITSTATUS(ws));
    FILE *f = fopen(st, "rb");
    assert_non_null(f);
    int code = -1;
    memset(res, 0, sizeof *res);
    xd_err_clear(e);
    if (fscanf(f, "%d %lf %d\n", &code, &res->final_acc, &res->epochs_done) != 3)
        fail_msg("%s: bad child status", name);
    size_t n = fread(e->msg, 1, sizeof e->msg - 1, f);
    e->msg[n] = '\0';
    e->code = (xd_status)code;
    fclose(f);
    free(yaml);
    free(out);
    free(st);
}

/* The child's side: load the recipe, train with seed 1, write "status acc epochs\nmessage". */
static int child_main(const char *yaml, const char *out)
{
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    train_result res = {0};
    xd_status s = recipe_load(yaml, NULL, 0, &r, &e);
    if (s == XD_OK) {
        train_opts o = {.out_dir = out, .quiet = 1};
        s = trainer_run(&r, 1, &o, &res, &e);
        recipe_free(&r);
    }
    char *st = tu_fmt("%s.status", out);
    FILE *f = fopen(st, "wb");
    if (!f) return 3;
    fprintf(f, "%d %.17g %d\n%s", (int)s, res.final_acc, res.epochs_done, s == XD_OK ? "" : e.msg);
    fclose(f);
    free(st);
    return 0;
}

/* Hinton's CE part indexes the head's row by label: a head narrower than the classes is an error
 * (as for ce), never a read past the row. */
static void test_hinton_head_narrower_than_classes(void **state)
{
    (void)state;
    ensure_data();
    nn_model three;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(nn_model_build(&three, "input h=8 w=8 c=1; flatten; linear out=3 name=out3 head", 16, 3, &e));
    TU_OK(ckpt_save("three.safetensors", &three, NULL, 0, &e));
    nn_model_free(&three);
    char *text = student_recipe("", "input h=8 w=8 c=1; flatten; linear out=3 name=logits head",
                                "teachers:\n  - {name: t3, checkpoint: three.safetensors}\n", 1,
                                "adamw", "  - {kind: hinton, label_map: [0, 1, 2]}\n");
    train_result r;
    run_child("hinton3", text, &r, &e);
    if (e.code == XD_OK) fail_msg("a 3-output head trained on 4 classes with hinton");
    tu_assert_err(&e, XD_ESHAPE, "4 classes");
    free(text);
}

/* Batches larger than any fixed buffer: a cached teacher over 4200 examples in one batch. */
static void test_cache_with_a_large_batch(void **state)
{
    (void)state;
    ensure_teacher();
    tiny_spec sp = tiny_default();
    sp.n_train = 4200;
    sp.n_test = 20;
    sp.texts = 0;
    tiny_write("big.xds", &sp);
    char *text = tu_fmt("data: {path: big.xds}\nmodel: \"" MLP_MODEL "\"\n" TEACHERS
                     "train: {epochs: 1, batch: 4200}\nlosses:\n  - kind: kd\n");
    train_result r;
    xd_err e;
    run_child("bigbatch", text, &r, &e);
    if (e.code != XD_OK) fail_msg("bigbatch: %s", e.msg);
    assert_int_equal(r.epochs_done, 1);
    free(text);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child") == 0) return child_main(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_teacher_run_folder),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_threads_do_not_change_results),
        cmocka_unit_test(test_nan_absurd_lr),
        cmocka_unit_test(test_nan_in_second_epoch_keeps_first),
        cmocka_unit_test(test_nan_gradient_names_layer),
        cmocka_unit_test(test_nan_update_not_saved),
        cmocka_unit_test(test_teacher_output_not_finite),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_no_usable_labels_is_an_error),
        cmocka_unit_test(test_no_test_examples_is_an_error),
        cmocka_unit_test(test_normalisation_applies_to_evaluation),
        cmocka_unit_test(test_teacher_reads_its_own_preprocessing),
        cmocka_unit_test(test_eval_every),
        cmocka_unit_test(test_label_fraction),
        cmocka_unit_test(test_steps_per_epoch),
        cmocka_unit_test(test_keyed_shuffle),
        cmocka_unit_test(test_auto_total_steps_span_the_run),
        cmocka_unit_test(test_schedule_base_lr),
        cmocka_unit_test(test_hinton_head_narrower_than_classes),
        cmocka_unit_test(test_cache_with_a_large_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
