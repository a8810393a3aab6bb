/* distill/trainer, evaluation a user can trust: a validation split picks the best checkpoint
 * (held out of every training step, teacher step and projector fit), further data sets are scored
 * at every evaluation, and teachers and data sets are matched by class name. */
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
#include "distill/runs.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/safetensors.h"
#include "nn/model.h"
#include "tests/support/dirsnap.h"
#include "tests/support/imgfix.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

/* How often "KEY" occurs in the header of the safetensors file path, read as raw bytes (the
 * reader would refuse a key given twice rather than count it). */
static int header_key_count(const char *path, const char *key)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    assert_non_null(b);
    assert_true(n >= 8);
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | b[i];
    assert_true(len <= n - 8);
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    b[8 + len] = '\0'; /* the header alone (tu_read_file leaves a byte after the file) */
    int count = 0;
    for (const char *p = strstr((char *)b + 8, quoted); p; p = strstr(p + 1, quoted)) count++;
    free(b);
    return count;
}

/* data.val_fraction: a fifth of each class's 50 labelled examples held out (40), training walks
 * the other 160 (10 batches of 16); every evaluation has val_acc, val_bacc, test_bacc; best is the
 * epoch of the best validation score, and the summary gives its test score next to the last one.
 * The checkpoints store the class names, once. */
static void test_validation_fraction(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  val_fraction: 0.2\n", MLP_MODEL, "", 4,
                                "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    train_result r = run_ok("valfrac", text, "valfrac", 3, 0, 0);
    assert_true(r.val);
    json_t *sum = load_json("valfrac/summary.json");
    assert_string_equal(json_string_value(json_object_get(sum, "best_on")), "val");
    assert_int_equal((int)num(sum, "val_examples"), 40);
    assert_int_equal((int)num(sum, "labels_used"), 160);
    assert_null(json_object_get(sum, "best_test_acc"));
    json_t *m = read_metrics("valfrac");
    assert_int_equal(json_array_size(m), 4);
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 10);
    int best = 0;
    for (int i = 0; i < 4; i++) {
        json_t *l = json_array_get(m, (size_t)i);
        assert_true(num(l, "val_bacc") >= 0.0 && num(l, "test_bacc") >= 0.0);
        if (num(l, "val_acc") > num(json_array_get(m, (size_t)best), "val_acc")) best = i;
    }
    json_t *bl = json_array_get(m, (size_t)best);
    assert_int_equal((int)num(sum, "best_epoch"), best + 1);
    assert_true(fabs(num(sum, "best_val_acc") - num(bl, "val_acc")) < 1e-6);
    assert_true(fabs(num(sum, "test_acc_at_best") - num(bl, "test_acc")) < 1e-6);
    assert_true(fabs(num(sum, "final_test_acc") - num(json_array_get(m, 3), "test_acc")) < 1e-6);
    assert_true(fabs(num(sum, "final_test_bacc") - num(json_array_get(m, 3), "test_bacc")) < 1e-6);
    char *ep = NULL, *cls = NULL;
    xd_err e;
    TU_OK(ckpt_read_meta("valfrac/best.safetensors", "epoch", &ep, &e));
    assert_int_equal(atoi(ep), best + 1);
    TU_OK(ckpt_read_meta("valfrac/best.safetensors", CKPT_META_CLASSES, &cls, &e));
    assert_string_equal(cls, "[\"top-left\",\"top-right\",\"bottom-left\",\"bottom-right\"]");
    /* one writer: each checkpoint names its classes (and its images) once */
    assert_int_equal(header_key_count("valfrac/best.safetensors", CKPT_META_CLASSES), 1);
    assert_int_equal(header_key_count("valfrac/last.safetensors", CKPT_META_CLASSES), 1);
    assert_int_equal(header_key_count("valfrac/best.safetensors", "xdistill.images"), 1);
    free(ep);
    free(cls);
    json_decref(m);
    json_decref(sum);
    /* a low-label run validates on its own labels: 10 per class seen, 3 of them held out */
    free(text);
    text = student_recipe("  label_fraction: 0.2\n  val_fraction: 0.25\n", MLP_MODEL, "", 1,
                          "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    run_ok("vallow", text, "vallow", 3, 0, 0);
    sum = load_json("vallow/summary.json");
    assert_int_equal((int)num(sum, "val_examples"), 12);
    assert_int_equal((int)num(sum, "labels_used"), 28);
    json_decref(sum);
    /* without a validation split nothing is chosen: the best is the last epoch, and the test
     * split gives no best score */
    ensure_teacher();
    sum = load_json("teacher/summary.json");
    assert_string_equal(json_string_value(json_object_get(sum, "best_on")), "last");
    assert_null(json_object_get(sum, "best_test_acc"));
    assert_true(num(sum, "test_acc_at_best") == num(sum, "final_test_acc"));
    assert_true(num(sum, "best_epoch") == num(sum, "epochs"));
    json_decref(sum);
    free(text);
}

/* A stage with a teacher walks every training example but the held-out ones: 200 - 40 = 160
 * (10 batches) instead of 13; the run is the same for the same seed, and another seed holds out
 * other examples (another run). */
static void test_validation_excluded_from_teacher_steps(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = student_recipe("  val_fraction: 0.2\n", MLP_MODEL, TEACHERS, 1,
                                "{kind: adamw, lr: 0.01}",
                                "  - {kind: kd, teacher: cnn, temperature: 4}\n");
    run_ok("valkd", text, "valkd-a", 3, 0, 0);
    run_ok("valkd", text, "valkd-b", 3, 0, 0);
    json_t *m = read_metrics("valkd-a");
    assert_int_equal((long)num(json_array_get(m, 0), "step"), 10);
    json_decref(m);
    assert_true(tu_same_file("valkd-a/last.safetensors", "valkd-b/last.safetensors"));
    free(text);
}

/* data.val names a split of its own (100 validation examples); it may be neither the training
 * nor the test split, and those two may not be one split. */
static void test_validation_named_split(void **state)
{
    (void)state;
    ensure_data();
    tiny_spec sp = tiny_default();
    sp.n_val = 100;
    tiny_write("val.xds", &sp);
    char *text = student_recipe("  val: val\n", MLP_MODEL, "", 2, "{kind: adamw, lr: 0.01}",
                                "  - kind: ce\n");
    memcpy(strstr(text, "toy.xds"), "val.xds", 7);
    run_ok("valnamed", text, "valnamed", 1, 0, 0);
    json_t *sum = load_json("valnamed/summary.json");
    assert_int_equal((int)num(sum, "val_examples"), 100);
    assert_string_equal(json_string_value(json_object_get(sum, "best_on")), "val");
    json_decref(sum);
    free(text);
    xd_err e;
    text = student_recipe("  val: test\n", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                          "  - kind: ce\n");
    recipe r;
    tu_write_file("valbad.yaml", text, strlen(text));
    assert_int_equal(recipe_load("valbad.yaml", NULL, 0, &r, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "neither the training nor the test split");
    free(text);
    static const char *const same[] = {"  test: train\n", "  train: test\n"};
    for (int i = 0; i < 2; i++) {
        text = student_recipe(same[i], MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                              "  - kind: ce\n");
        tu_write_file("same.yaml", text, strlen(text));
        assert_int_equal(recipe_load("same.yaml", NULL, 0, &r, &e), XD_EARG);
        tu_assert_err(&e, XD_EARG, "the training and the test split are both");
        free(text);
    }
}

/* The same examples with the classes in reverse order (names and labels): an eval set of it
 * scores exactly what the test split scores, because its classes are matched by name. */
static void ensure_reversed(void)
{
    if (exists("reversed.xds")) return;
    tiny_spec s = tiny_default();
    s.reversed = 1;
    tiny_write("reversed.xds", &s);
}

/* The tiny set with a class named "middle" instead of "top-left". */
static void ensure_middle(void)
{
    if (exists("middle.xds")) return;
    tiny_spec s = tiny_default();
    s.class0 = "middle";
    tiny_write("middle.xds", &s);
}

static void test_eval_sets(void **state)
{
    (void)state;
    ensure_data();
    ensure_reversed();
    char *text = student_recipe("  eval_sets:\n"
                                "    - {name: same, path: toy.xds}\n"
                                "    - {name: rev, path: reversed.xds, split: test}\n",
                                MLP_MODEL, "", 2, "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    run_ok("evalsets", text, "evalsets", 1, 0, 0);
    json_t *m = read_metrics("evalsets");
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *l = json_array_get(m, i);
        assert_true(fabs(num(l, "eval.same.acc") - num(l, "test_acc")) < 1e-9);
        assert_true(fabs(num(l, "eval.same.bacc") - num(l, "test_bacc")) < 1e-9);
        assert_true(fabs(num(l, "eval.rev.acc") - num(l, "test_acc")) < 1e-9);
        assert_true(fabs(num(l, "eval.rev.bacc") - num(l, "test_bacc")) < 1e-9);
    }
    json_decref(m);
    free(text);
    /* a class the run does not have: an error naming both sets */
    ensure_middle();
    text = student_recipe("  eval_sets: [{name: mid, path: middle.xds}]\n", MLP_MODEL, "", 1,
                          "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    train_result res;
    xd_err e;
    assert_int_equal(run_text("evalmid", text, "evalmid", 1, 0, 0, &res, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'middle'");
    tu_assert_err(&e, XD_EARG, "top-left, top-right, bottom-left, bottom-right");
    free(text);
    /* images of another size: refused as the run's own splits are, unless data.augment converts
     * them */
    tiny_spec big = tiny_default();
    big.side = 12;
    tiny_write("big.xds", &big);
    static const char *const aug[] = {"", "  augment: \"size=8x8\"\n"};
    for (int i = 0; i < 2; i++) {
        char *extra = tu_fmt("%s  eval_sets: [{name: big, path: big.xds}]\n", aug[i]);
        text = student_recipe(extra, MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                              "  - kind: ce\n");
        const xd_status s = run_text("evalbig", text, i ? "evalbig-size" : "evalbig", 1, 0, 0,
                                     &res, &e);
        if (i) {
            TU_OK(s);
        } else {
            assert_int_equal(s, XD_ESHAPE);
            tu_assert_err(&e, XD_ESHAPE, "the model reads 8x8x1 images; big.xds: test/image holds "
                                         "12x12x1");
        }
        free(extra);
        free(text);
    }
}

/* A teacher trained on the classes in reverse order teaches a student of the usual order through
 * their names: a KD-only student without a label learns the right classes (read in the stored
 * order, every answer would be another class). A teacher with a class the data set lacks is an
 * error listing both sets. */
static void test_teacher_classes_by_name(void **state)
{
    (void)state;
    ensure_data();
    ensure_reversed();
    const char *rev_teacher = "name: revteacher\nseed: 1\ndata: {path: reversed.xds}\n"
                              "model: \"" TEACHER_MODEL "\"\n"
                              "train: {epochs: 4, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                              "losses:\n  - kind: ce\n";
    run_ok("revteacher", rev_teacher, "revteacher", 1, 0, 0);
    char *text = student_recipe("  label_fraction: 0\n", MLP_MODEL,
                                "teachers:\n  - {name: rev, checkpoint: revteacher/best.safetensors}\n",
                                6, "{kind: adamw, lr: 0.01}",
                                "  - {kind: kd, teacher: rev, temperature: 2}\n");
    train_result r = run_ok("revstudent", text, "revstudent", 1, 0, 0);
    if (r.final_acc < 0.8) fail_msg("student taught through the names: %.2f", r.final_acc);
    free(text);
    ensure_middle();
    const char *mid_teacher = "name: midteacher\nseed: 1\ndata: {path: middle.xds}\n"
                              "model: \"" MLP_MODEL "\"\n"
                              "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                              "losses:\n  - kind: ce\n";
    run_ok("midteacher", mid_teacher, "midteacher", 1, 0, 0);
    text = student_recipe("", MLP_MODEL,
                          "teachers:\n  - {name: mid, checkpoint: midteacher/best.safetensors}\n",
                          1, "{kind: adamw, lr: 0.01}", "  - {kind: kd, teacher: mid}\n");
    train_result res;
    xd_err e;
    assert_int_equal(run_text("midstudent", text, "midstudent", 1, 0, 0, &res, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'top-left'");
    tu_assert_err(&e, XD_EARG, "middle, top-right");
    free(text);
}

/* Several models each choose their best checkpoint on the validation split: per model its
 * val_acc.NAME in the metrics, and its best epoch and test score there in the summary. */
static void test_validation_models(void **state)
{
    (void)state;
    ensure_data();
    const char *text = "data: {path: toy.xds, val_fraction: 0.2}\n"
                       "models:\n"
                       "  - {name: a, model: \"" MLP_MODEL "\"}\n"
                       "  - {name: b, model: \"" CNN_MODEL "\"}\n"
                       "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n  - {kind: ce, model: a}\n  - {kind: ce, model: b}\n";
    train_result r = run_ok("valmodels", text, "valmodels", 2, 0, 0);
    assert_int_equal(r.n_models, 2);
    json_t *m = read_metrics("valmodels"), *sum = load_json("valmodels/summary.json");
    const char *names[2] = {"a", "b"};
    for (int k = 0; k < 2; k++) {
        char key[32], tkey[32];
        snprintf(key, sizeof key, "val_acc.%s", names[k]);
        snprintf(tkey, sizeof tkey, "test_acc.%s", names[k]);
        int best = 0;
        for (int i = 0; i < 3; i++) {
            json_t *l = json_array_get(m, (size_t)i);
            assert_true(num(l, tkey) >= 0.0);
            if (num(l, key) > num(json_array_get(m, (size_t)best), key)) best = i;
        }
        json_t *o = json_object_get(json_object_get(sum, "models"), names[k]);
        assert_string_equal(json_string_value(json_object_get(o, "best_on")), "val");
        assert_int_equal((int)num(o, "best_epoch"), best + 1);
        assert_int_equal(r.models[k].best_epoch, best + 1);
        assert_true(fabs(num(o, "best_val_acc") - num(json_array_get(m, (size_t)best), key)) < 1e-6);
        assert_true(fabs(num(o, "test_acc_at_best") - num(json_array_get(m, (size_t)best), tkey)) < 1e-6);
        char *file = tu_fmt("valmodels/%s.best.safetensors", names[k]), *ep = NULL;
        xd_err e;
        TU_OK(ckpt_read_meta(file, "epoch", &ep, &e));
        assert_int_equal(atoi(ep), best + 1);
        free(ep);
        free(file);
    }
    json_decref(sum);
    json_decref(m);
}

/* A projector fitted at the start (projector_init) sees no validation example: frozen, its map
 * in a run holding a fifth of the examples out is not the map fitted on all of them. */
static void test_validation_excluded_from_projector_fit(void **state)
{
    (void)state;
    ensure_teacher();
    const char *losses = "  - {kind: feature, student_tap: feat, teacher_tap: feat, projector: linear,"
                         " projector_init: procrustes, projector_frozen: true}\n";
    char *with = student_recipe("  val_fraction: 0.2\n", MLP_MODEL, TEACHERS, 1,
                                "{kind: sgd, lr: 0.000001}", losses);
    char *without = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: sgd, lr: 0.000001}", losses);
    run_ok("pfit-val", with, "pfit-val", 1, 0, 0);
    run_ok("pfit-all", without, "pfit-all", 1, 0, 0);
    io_st_file *fa = NULL, *fb = NULL;
    xd_err e;
    if (io_st_open("pfit-val/resume.safetensors", &fa, &e) != XD_OK ||
        io_st_open("pfit-all/resume.safetensors", &fb, &e) != XD_OK)
        fail_msg("%s", e.msg);
    const io_tensor *ta = io_st_find(fa, "proj0.param"), *tb = io_st_find(fb, "proj0.param");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(ta->shape[0], tb->shape[0]);
    assert_true(memcmp(ta->data, tb->data, sizeof(float) * (size_t)ta->shape[0]) != 0);
    io_st_close(fa);
    io_st_close(fb);
    free(with);
    free(without);
}

/* A copy of toy.xds whose training labels are imbalanced (a label_mask added): every example of
 * class 0 keeps its label, of the others only every fifth. */
static void write_imbalanced(const char *path)
{
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    const int32_t *y = io_dataset_find(ds, "train/label")->data;
    uint8_t mask[N_TRAIN];
    for (int k = 0; k < N_TRAIN; k++) mask[k] = y[k] == 0 || k % 5 == 0;
    io_dataset_close(ds);
    io_tensor t;
    io_tensor_set(&t, "train/label_mask", IO_U8, 1, (const int64_t[]){N_TRAIN}, mask);
    copy_data_with("toy.xds", path, &t, 1);
}

/* 1 when the two checkpoints hold the same parameters, bit for bit. */
static int same_params(const char *a, const char *b)
{
    nn_model ma, mb;
    load_ckpt(a, &ma);
    load_ckpt(b, &mb);
    int same = ma.n_param == mb.n_param &&
               memcmp(ma.param, mb.param, ma.n_param * sizeof(float)) == 0;
    nn_model_free(&ma);
    nn_model_free(&mb);
    return same;
}

/* class_weight: balanced. On labels where every class has as many, each weight is 1 and the run
 * is the unweighted one bit for bit; on imbalanced labels the ce and hinton steps change. */
static void test_class_weight(void **state)
{
    (void)state;
    ensure_data();
    ensure_teacher();
    const char *plain = "  - {kind: ce}\n", *weighted = "  - {kind: ce, class_weight: balanced}\n";
    char *a = student_recipe("", MLP_MODEL, "", 2, "{kind: adamw, lr: 0.01}", plain);
    char *b = student_recipe("", MLP_MODEL, "", 2, "{kind: adamw, lr: 0.01}", weighted);
    run_ok("cw_a", a, "cw_a", 3, 0, 0);
    run_ok("cw_b", b, "cw_b", 3, 0, 0);
    assert_true(same_params("cw_a/last.safetensors", "cw_b/last.safetensors"));
    size_t n;
    char *yaml = tu_read_file("cw_b/recipe.yaml", &n);
    assert_non_null(strstr(yaml, "class_weight: balanced"));
    free(yaml);
    free(a);
    free(b);

    write_imbalanced("skew.xds");
    static const char *const losses[2][2] = {
        {"  - {kind: ce}\n", "  - {kind: ce, class_weight: balanced}\n"},
        {"  - {kind: hinton, alpha: 0.5}\n", "  - {kind: hinton, alpha: 0.5, class_weight: balanced}\n"},
    };
    for (int k = 0; k < 2; k++) {
        char *run[2];
        for (int j = 0; j < 2; j++) {
            char *text = student_recipe("", MLP_MODEL, k ? TEACHERS : "", 2,
                                        "{kind: adamw, lr: 0.01}", losses[k][j]);
            char *skew = tu_fmt("data:\n  path: skew.xds\n%s", strstr(text, "\n") + 1 +
                                                                   strlen("  path: toy.xds\n"));
            run[j] = tu_fmt("cw_skew_%d_%d", k, j);
            run_ok(run[j], skew, run[j], 3, 0, 0);
            free(skew);
            free(text);
        }
        char *pa = path2(run[0], "last.safetensors"), *pb = path2(run[1], "last.safetensors");
        assert_false(same_params(pa, pb));
        char *sp = path2(run[1], "summary.json");
        json_t *sum = load_json(sp);
        free(sp);
        assert_int_equal((int)num(sum, "labels_used"), 50 + 30);
        json_decref(sum);
        free(pa);
        free(pb);
        free(run[0]);
        free(run[1]);
    }
}

/* A finished run's scores read back from its summary.json (a --seeds run resumed, a pipeline
 * step): with a validation split its best there and the test score at it; without one, the test
 * score of its last epoch, and no best score in the seeds' summary; an older summary whose best
 * epoch was chosen on the test split (best_test_acc) still reads, as that epoch's test score. */
static void test_summary_read_back(void **state)
{
    (void)state;
    static const char *const sums[] = {
        "{\"name\": \"v\", \"seed\": 1, \"epochs\": 3, \"finished\": true, \"best_on\": \"val\", "
        "\"final_test_acc\": 0.5, \"best_val_acc\": 0.75, \"test_acc_at_best\": 0.625, "
        "\"best_epoch\": 2}",
        /* test_acc_at_best apart from final_test_acc (in a real run they are equal), so that
         * the key read is seen */
        "{\"name\": \"l\", \"seed\": 1, \"epochs\": 3, \"finished\": true, \"best_on\": \"last\", "
        "\"final_test_acc\": 0.5, \"test_acc_at_best\": 0.4375, \"best_epoch\": 3}",
        "{\"name\": \"o\", \"seed\": 1, \"epochs\": 3, \"finished\": true, \"best_on\": \"test\", "
        "\"final_test_acc\": 0.5, \"best_test_acc\": 0.875, \"best_epoch\": 1}"};
    const double best[] = {0.75, 0.4375, 0.875}, at_best[] = {0.625, 0.4375, 0.875};
    for (int i = 0; i < 3; i++) {
        char *dir = tu_fmt("sum-%d", i), *path = tu_fmt("sum-%d/summary.json", i);
        if (mkdir(dir, 0777) != 0) fail_msg("cannot create %s", dir);
        tu_write_file(path, sums[i], strlen(sums[i]));
        train_result res;
        memset(&res, 0, sizeof res);
        assert_int_equal(runs_read_finished(dir, &res), 1);
        assert_int_equal(res.val, i == 0);
        assert_true(res.final_acc == 0.5);
        assert_true(res.best_acc == best[i]);
        assert_true(res.test_at_best == at_best[i]);
        json_t *j = runs_seeds_json("x", &res, 1);
        assert_int_equal(json_object_get(j, "best_val_acc") != NULL, i == 0);
        assert_int_equal(json_object_get(j, "test_acc_at_best") != NULL, i == 0);
        assert_null(json_object_get(j, "best_test_acc"));
        assert_non_null(json_object_get(j, "final_test_acc"));
        json_decref(j);
        free(path);
        free(dir);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_fraction),
        cmocka_unit_test(test_validation_excluded_from_teacher_steps),
        cmocka_unit_test(test_validation_named_split),
        cmocka_unit_test(test_eval_sets),
        cmocka_unit_test(test_teacher_classes_by_name),
        cmocka_unit_test(test_validation_models),
        cmocka_unit_test(test_validation_excluded_from_projector_fit),
        cmocka_unit_test(test_class_weight),
        cmocka_unit_test(test_summary_read_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
