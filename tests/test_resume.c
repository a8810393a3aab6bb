/* distill/trainer, resuming: a run stopped and resumed (inside a stage or at a stage boundary)
 * ends byte for byte where the uninterrupted run does; a finished run is left as it is; another
 * recipe, an edited recipe, an edited resume state, or a data set or checkpoint changed since the
 * run started is refused; the metrics line of an epoch is never lost; a run folder is locked; a
 * run that fails, or is stopped by SIGINT or SIGTERM, before its first epoch ends leaves nothing
 * behind. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
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
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

static void test_resume_single_stage(void **state)
{
    (void)state;
    ensure_data();
    /* augmentation, dropout and adamw moments: every kind of state a resume must restore */
    char *text = tu_fmt("data: {path: toy.xds, augment: \"pad=1 flip=0.5\"}\n"
                     "model: \"input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; "
                     "dropout p=0.25; linear out=4 name=logits head\"\n"
                     "train:\n"
                     "  epochs: 3\n"
                     "  batch: 16\n"
                     "  optimizer: {kind: adamw, lr: 0.01}\n"
                     "  schedule: {kind: cosine, warmup_steps: 5}\n"
                     "losses:\n  - kind: ce\n");
    const int stops[] = {1};
    check_resume("res1", text, 3, stops, 1);
    free(text);
}

static void test_resume_two_stages(void **state)
{
    (void)state;
    ensure_teacher();
    /* stage 1: hint through a projector (its parameters and moments are resume state) with the
     * upper layers frozen; stage 2: Hinton KD. Stops inside stage 1, at the boundary, inside 2. */
    char *text = tu_fmt("data: {path: toy.xds, augment: \"pad=1 flip=0.5\"}\n"
                     "model: \"" MLP_MODEL "\"\n" TEACHERS
                     "train:\n"
                     "  batch: 16\n"
                     "  optimizer: {kind: adamw, lr: 0.01}\n"
                     "  schedule: {kind: cosine}\n"
                     "stages:\n"
                     "  - epochs: 2\n"
                     "    train_until: feat\n"
                     "    losses:\n"
                     "      - {kind: hint, student_tap: feat, teacher_tap: feat}\n"
                     "  - epochs: 2\n"
                     "    losses:\n"
                     "      - {kind: hinton, alpha: 0.8, temperature: 3}\n");
    const int stops[] = {1, 2, 3};
    check_resume("res2", text, 4, stops, 3);
    free(text);
}

/* train.shuffle keyed over a pool with held-out validation examples: a labelled stage, then a
 * KD stage over every example not held out (the pool as its own bits), cycled by steps_per_epoch. */
static const char keyed_recipe[] =
    "data: {path: toy.xds, label_fraction: 0.5, val_fraction: 0.2}\n"
    "model: \"" MLP_MODEL "\"\n" TEACHERS
    "train: {batch: 16, steps_per_epoch: 6, shuffle: keyed, optimizer: {kind: adamw, lr: 0.01}}\n"
    "stages:\n"
    "  - {epochs: 2, losses: [{kind: ce}]}\n"
    "  - {epochs: 2, losses: [{kind: hinton, alpha: 0.8, temperature: 3}]}\n";

static void test_resume_keyed_shuffle(void **state)
{
    (void)state;
    ensure_teacher();
    const int stops[] = {1, 3};
    check_resume("resk", keyed_recipe, 4, stops, 2);
}

/* Resuming a run that finished changes nothing and reports its numbers. */
static void test_resume_finished_changes_nothing(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(2, 0);
    train_result ref = run_ok("fin", text, "fin", 1, 0, 0);
    dirsnap *before = dirsnap_take("fin");
    train_result again = run_ok("fin", text, "fin", 1, 0, 1);
    dirsnap_assert_same(before, "fin");
    assert_int_equal(again.unchanged, 1);
    assert_int_equal(again.finished, 1);
    assert_int_equal(again.epochs_done, 2);
    assert_true(again.final_acc == ref.final_acc);
    assert_true(again.best_acc == ref.best_acc);
    assert_int_equal(again.best_epoch, ref.best_epoch);
    dirsnap_free(before);
    free(text);
}

/* A run stopped after its last epoch but before its summary: the summary a resume writes is the
 * trained model's (the same as the uninterrupted run's), with the thread count its epochs ran
 * at, not the resuming process's. */
static void test_resume_after_last_epoch_writes_summary(void **state)
{
    (void)state;
    ensure_data();
    int before = xd_threads_get();
    char *text = small_recipe(2, 0);
    xd_threads_set(2);
    const int used = xd_threads_get();
    train_result ref = run_ok("sum", text, "sum", 1, 0, 0);
    json_t *full = load_json("sum/summary.json");
    assert_int_equal((int)num(full, "threads"), used);
    remove("sum/summary.json");
    xd_threads_set(1);
    train_result res = run_ok("sum", text, "sum", 1, 0, 1);
    xd_threads_set(before);
    assert_int_equal(res.unchanged, 0);
    assert_true(res.finished);
    assert_true(res.final_acc == ref.final_acc);
    json_t *j = load_json("sum/summary.json");
    assert_true(num(j, "final_test_acc") == num(full, "final_test_acc"));
    assert_true(num(j, "test_acc_at_best") == num(full, "test_acc_at_best"));
    assert_int_equal((int)num(j, "threads"), used);
    json_t *m = read_metrics("sum");
    assert_int_equal(json_array_size(m), 2);
    json_decref(m);
    json_decref(j);
    json_decref(full);
    free(text);
}

/* Another recipe given for a run's folder is an error naming both; nothing changes. */
static void test_resume_other_recipe(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(3, 0), *other = small_recipe(4, 0);
    run_ok("mine", text, "mine", 1, 1, 0);
    dirsnap *before = dirsnap_take("mine");
    train_result r;
    xd_err e;
    assert_int_equal(run_text("theirs", other, "mine", 1, 0, 1, &r, &e), XD_EARG);
    print_message("%s\n", e.msg);
    tu_assert_err(&e, XD_EARG, "theirs.yaml (recipe 'theirs')");
    tu_assert_err(&e, XD_EARG, "mine/recipe.yaml, recipe 'mine'");
    dirsnap_assert_same(before, "mine");
    /* the same recipe with another thread count continues, and records it */
    char *threads = small_recipe(3, 1);
    train_result fin = run_ok("mine", threads, "mine", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    recipe rr;
    xd_err_clear(&e);
    if (recipe_load("mine/recipe.yaml", NULL, 0, &rr, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_int_equal(rr.train.threads, 1);
    recipe_free(&rr);
    dirsnap_free(before);
    free(threads);
    free(text);
    free(other);
}

/* The disk fills while an epoch's metrics line is written: the resume state must not say the
 * epoch is done, so that a resume runs it again and the line is there in the end. */
static void test_metrics_line_not_lost(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(3, 0);
    run_ok("ml", text, "ml-full", 1, 0, 0);
    run_ok("ml", text, "ml", 1, 1, 0);
    /* epoch 1's line padded so that metrics.jsonl alone outgrows a file size limit the
     * checkpoints stay under */
    size_t n;
    char *line1 = tu_read_file("ml/metrics.jsonl", &n);
    enum { PAD = 1 << 16 };
    char *padded = malloc(n + PAD + 32);
    int at = snprintf(padded, n + 32, "%.*s,\"pad\":\"", (int)(n - 2), line1);
    memset(padded + at, 'x', PAD);
    snprintf(padded + at + PAD, 32, "\"}\n");
    tu_write_file("ml/metrics.jsonl", padded, strlen(padded));
    train_result r;
    xd_err e;
    ifx_file_size_limit((long)strlen(padded) + 16);
    xd_status s = run_text("ml", text, "ml", 1, 2, 1, &r, &e);
    ifx_file_size_unlimit();
    assert_int_equal(s, XD_EIO);
    print_message("%s\n", e.msg);
    /* the first line as it was (the half-written second one stays for the resume to drop) */
    size_t m;
    char *now = tu_read_file("ml/metrics.jsonl", &m);
    assert_true(m > strlen(padded) && m < strlen(padded) + 200);
    char *restored = malloc(n + (m - strlen(padded)) + 1);
    memcpy(restored, line1, n);
    memcpy(restored + n, now + strlen(padded), m - strlen(padded));
    tu_write_file("ml/metrics.jsonl", restored, n + (m - strlen(padded)));
    train_result fin = run_ok("ml", text, "ml", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    assert_same_metrics("ml-full", "ml");
    assert_true(tu_same_file("ml-full/last.safetensors", "ml/last.safetensors"));
    free(restored);
    free(now);
    free(padded);
    free(line1);
    free(text);
}

/* A second run into a folder a run holds stops at once, naming the holder's pid. */
static void test_run_folder_lock(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(1, 0);
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(mkdir("locked", 0755), 0);
    runlock held;
    TU_OK(runlock_take(&held, "locked", &e));
    dirsnap *before = dirsnap_take("locked");
    train_result r;
    assert_int_equal(run_text("locked", text, "locked", 1, 0, 0, &r, &e), XD_EIO);
    print_message("%s\n", e.msg);
    char *pid = tu_fmt("pid %ld", (long)getpid());
    tu_assert_err(&e, XD_EIO, pid);
    dirsnap_assert_same(before, "locked");
    runlock_release(&held);
    run_ok("locked", text, "locked", 1, 0, 0);
    dirsnap_free(before);
    free(pid);
    free(text);
}

/* A run with a validation split stopped and resumed ends where the uninterrupted one does, its
 * best validation score and that epoch's test score included. A slow learner, so that the best
 * epoch comes before a stop and its test score differs from its validation score: the resume
 * state must carry both. */
static void test_validation_resume(void **state)
{
    (void)state;
    ensure_data();
    char *text = student_recipe("  val_fraction: 0.25\n", MLP_MODEL, "", 4,
                                "{kind: sgd, lr: 0.01}", "  - kind: ce\n");
    const int stops[] = {1, 2};
    check_resume("valres", text, 4, stops, 2);
    json_t *sum = load_json("valres-full/summary.json");
    assert_true(num(sum, "best_epoch") <= 2);
    assert_true(num(sum, "test_acc_at_best") != num(sum, "best_val_acc"));
    json_decref(sum);
    free(text);
}

/* The resume state's metadata has no checksum: every value a resume reads is checked against
 * the recipe and the data before anything runs. An edited one is an error naming the file and
 * the key, and the folder stays exactly as it was (its lock file included). */
static void test_resume_refuses_edited_state(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(3, 0);
    run_ok("edit", text, "edit", 1, 1, 0);
    rename("edit/resume.safetensors", "edit-resume.safetensors");
    static const char *const bad[][2] = {
        {"epochs_done", "100"}, {"epochs_done", "-5"}, {"epochs_done", "2"},
        {"epochs_done", "1x"},  {"global_step", "12"}, {"opt_step", "0"},
        {"best_acc", "nan"},    {"best_acc", "1.5"},   {"best_acc", "-0.25"},
        {"best_epoch", "2"},    {"best_epoch", "-1"},  {"images", "inf"},
        {"images", "1e9"},      {"train_seconds", "-1"}, {"threads", "0"},
        {"epochs_done", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_rewrite_meta("edit-resume.safetensors", "edit/resume.safetensors", bad[i][0], bad[i][1]);
        dirsnap *before = dirsnap_take("edit");
        train_result r;
        xd_err e;
        xd_status s = run_text("edit", text, "edit", 1, 0, 1, &r, &e);
        if (s == XD_OK)
            fail_msg("%s = %s: the resume ran (%d epochs)", bad[i][0], bad[i][1], r.epochs_done);
        print_message("%s\n", e.msg);
        char *key = tu_fmt("\"%s\"", bad[i][0]);
        tu_assert_err(&e, s, "edit/resume.safetensors");
        tu_assert_err(&e, s, key);
        dirsnap_assert_same(before, "edit");
        dirsnap_free(before);
        free(key);
    }
    /* the state as it was written resumes to the end */
    rename("edit-resume.safetensors", "edit/resume.safetensors");
    train_result fin = run_ok("edit", text, "edit", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    assert_true(fin.finished);
    assert_true(isfinite(fin.best_acc) && fin.best_acc > 0.0);
    free(text);
}

/* The tensors of a resume state are no safer than its metadata: a value that is not finite, a
 * negative second moment or running variance is refused, naming the file and the tensor, and
 * changes nothing in the folder. */
static void test_resume_refuses_edited_values(void **state)
{
    (void)state;
    ensure_data();
    const char *text = "data: {path: toy.xds}\n"
                       "model: \"input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; batchnorm; relu; "
                       "flatten; linear out=4 name=logits head\"\n"
                       "train: {epochs: 3, batch: 16, threads: 1, optimizer: {kind: adamw, "
                       "lr: 0.01}}\nlosses:\n  - kind: ce\n";
    run_ok("vals", text, "vals", 1, 1, 0);
    rename("vals/resume.safetensors", "vals-resume.safetensors");
    static const struct {
        const char *tensor;
        size_t at;
        float value;
        const char *says;
    } bad[] = {
        {"model.param", 0, NAN, "tensor 'conv2d0.weight' holds nan at index 0; values must be "
                                "finite"},
        {"opt.m", 3, INFINITY, "tensor 'opt.m' holds inf at index 3; values must be finite"},
        {"opt.v", 1, -1.0f, "tensor 'opt.v' holds -1 at index 1; a second moment must be >= 0"},
        {"model.state", TU_ALL, -1.0f, "running_var' holds -1 at index 0; a running variance "
                                       "must be >= 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_rewrite_value("vals-resume.safetensors", "vals/resume.safetensors", bad[i].tensor,
                         bad[i].at, bad[i].value);
        dirsnap *before = dirsnap_take("vals");
        train_result r;
        xd_err e;
        xd_status s = run_text("vals", text, "vals", 1, 0, 1, &r, &e);
        if (s == XD_OK) fail_msg("%s: the resume ran (%d epochs)", bad[i].tensor, r.epochs_done);
        tu_assert_err(&e, XD_ENUM, "vals/resume.safetensors");
        tu_assert_err(&e, XD_ENUM, bad[i].says);
        dirsnap_assert_same(before, "vals");
        dirsnap_free(before);
    }
    rename("vals-resume.safetensors", "vals/resume.safetensors");
    train_result fin = run_ok("vals", text, "vals", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
}

/* DIR/recipe.yaml with its first `from` replaced by `to`. */
static void edit_recipe(const char *dir, const char *from, const char *to)
{
    char *path = path2(dir, "recipe.yaml");
    size_t n;
    char *text = tu_read_file(path, &n), *at = strstr(text, from);
    if (!at) fail_msg("%s has no '%s':\n%s", path, from, text);
    char *edited = tu_fmt("%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    tu_write_text(path, edited);
    free(edited);
    free(text);
    free(path);
}

/* The recipe a resume continues with is the one the run started with: the resume state records
 * a digest of it, so an edited DIR/recipe.yaml is refused (saying what to do) and the folder stays
 * as it was; the keys that may change on resume are outside the digest; a state without one
 * (an older build's) resumes as before. */
static void test_resume_refuses_edited_recipe(void **state)
{
    (void)state;
    ensure_data();
    char *text = small_recipe(3, 0);
    run_ok("edrec", text, "edrec", 1, 1, 0);
    size_t n;
    char *yaml = tu_read_file("edrec/recipe.yaml", &n);
    edit_recipe("edrec", "lr: 0.01", "lr: 0.5");
    char *edited = tu_read_file("edrec/recipe.yaml", &n);
    dirsnap *before = dirsnap_take("edrec");
    train_result r;
    xd_err e;
    assert_int_equal(run_text("edrec-edited", edited, "edrec", 1, 0, 1, &r, &e), XD_EARG);
    print_message("%s\n", e.msg);
    tu_assert_err(&e, XD_EARG, "edrec/resume.safetensors");
    tu_assert_err(&e, XD_EARG, "not the recipe the run started with");
    tu_assert_err(&e, XD_EARG, "put back");
    dirsnap_assert_same(before, "edrec");
    dirsnap_free(before);
    /* the thread count may change: the run's own recipe with another one continues */
    tu_write_text("edrec/recipe.yaml", yaml);
    char *threads = small_recipe(3, 1);
    train_result two = run_ok("edrec", threads, "edrec", 1, 2, 1);
    assert_int_equal(two.epochs_done, 2);
    /* an older state without the digest trusts the folder's recipe, as before */
    tu_rewrite_meta("edrec/resume.safetensors", "edrec/resume.safetensors", "recipe_digest", NULL);
    edit_recipe("edrec", "lr: 0.01", "lr: 0.02");
    char *older = tu_read_file("edrec/recipe.yaml", &n);
    train_result fin = run_ok("edrec-older", older, "edrec", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    free(older);
    free(threads);
    free(edited);
    free(yaml);
    free(text);
}

/* A resume of DIR refused with code and a message that holds says; DIR unchanged. */
static void expect_resume_refused(const char *name, const char *text, const char *dir,
                                  xd_status code, const char *says)
{
    dirsnap *before = dirsnap_take(dir);
    train_result r;
    xd_err e;
    xd_status s = run_text(name, text, dir, 1, 0, 1, &r, &e);
    if (s == XD_OK) fail_msg("%s: the resume ran (%d epochs), expected '%s'", dir, r.epochs_done,
                             says);
    print_message("%s\n", e.msg);
    tu_assert_err(&e, code, says);
    dirsnap_assert_same(before, dir);
    dirsnap_free(before);
}

/* The data sets a resume reads are the ones the run started with: the resume state records their
 * identity, so the same number of examples with the classes in another order, fewer examples or
 * another further data set (data.eval_sets) is refused naming the file, and the folder stays as
 * it was; the files as they were continue to the uninterrupted run's bytes; a state of an earlier
 * build, which records no data set, resumes as before. */
static void test_resume_refuses_changed_data(void **state)
{
    (void)state;
    const tiny_spec same = tiny_default();
    tiny_spec reversed = tiny_default(), fewer = tiny_default();
    reversed.reversed = 1;
    fewer.n_train = 120;
    tiny_write("dch.xds", &same);
    tiny_write("dch-eval.xds", &same);
    const char *text = "data: {path: dch.xds, eval_sets: [{name: again, path: dch-eval.xds}]}\n"
                       "model: \"" MLP_MODEL "\"\n"
                       "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n  - kind: ce\n";
    run_ok("dch", text, "dch-full", 1, 0, 0);
    run_ok("dch", text, "dch", 1, 1, 0);
    run_ok("dch", text, "dch-old", 1, 1, 0);
    assert_int_equal(rename("dch.xds", "dch-orig.xds"), 0);
    const tiny_spec *other[] = {&reversed, &fewer};
    for (int i = 0; i < 2; i++) {
        tiny_write("dch.xds", other[i]);
        expect_resume_refused("dch", text, "dch", XD_EARG,
                              "dch: dch.xds changed since the run started (resume needs the same "
                              "data set; start a new run)");
    }
    /* a state of an earlier build: fewer examples are refused, the message saying it may be the
     * data set's doing */
    tu_rewrite_meta("dch-old/resume.safetensors", "dch-old/resume.safetensors", "data_identity",
                    NULL);
    tu_rewrite_meta("dch-old/resume.safetensors", "dch-old/resume.safetensors",
                    "eval_identity.again", NULL);
    expect_resume_refused("dch", text, "dch-old", XD_EFORMAT,
                          "or the data set changed since the run started");
    assert_int_equal(rename("dch-orig.xds", "dch.xds"), 0);
    assert_int_equal(rename("dch-eval.xds", "dch-eval-orig.xds"), 0);
    tiny_write("dch-eval.xds", &reversed);
    expect_resume_refused("dch", text, "dch", XD_EARG,
                          "dch: dch-eval.xds (data.eval_sets 'again') changed since the run "
                          "started");
    assert_int_equal(rename("dch-eval-orig.xds", "dch-eval.xds"), 0);
    train_result fin = run_ok("dch", text, "dch", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    assert_true(tu_same_file("dch-full/last.safetensors", "dch/last.safetensors"));
    assert_true(tu_same_file("dch-full/best.safetensors", "dch/best.safetensors"));
    assert_same_metrics("dch-full", "dch");
    /* the earlier build's state, on the data it started with */
    train_result old = run_ok("dch", text, "dch-old", 1, 0, 1);
    assert_int_equal(old.epochs_done, 3);
    assert_true(tu_same_file("dch-full/last.safetensors", "dch-old/last.safetensors"));
}

/* The same of the checkpoints a run reads: a teacher's or the `init` checkpoint replaced by
 * another (one weight changed) is refused naming it; put back, the run continues. */
static void test_resume_refuses_changed_checkpoints(void **state)
{
    (void)state;
    ensure_teacher();
    tu_copy_file(TEACHER_CKPT, "tch.safetensors");
    tu_copy_file(TEACHER_CKPT, "ini.safetensors");
    const char *text = "data: {path: toy.xds}\ninit: ini.safetensors\n"
                       "teachers:\n  - {name: cnn, checkpoint: tch.safetensors}\n"
                       "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n  - {kind: hinton, alpha: 0.8, temperature: 3}\n";
    run_ok("tch", text, "tch-full", 1, 0, 0);
    run_ok("tch", text, "tch", 1, 1, 0);
    static const struct {
        const char *file, *says;
    } changed[] = {
        {"tch.safetensors", "tch: tch.safetensors (teacher 'cnn') changed since the run started "
                            "(resume needs the same teacher checkpoints; start a new run)"},
        {"ini.safetensors", "tch: ini.safetensors (model 'student', init) changed since the run "
                            "started"},
    };
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        assert_int_equal(rename(changed[i].file, "tch-orig.safetensors"), 0);
        tu_rewrite_value("tch-orig.safetensors", changed[i].file, "logits.weight", 0, 0.5f);
        expect_resume_refused("tch", text, "tch", XD_EARG, changed[i].says);
        assert_int_equal(rename("tch-orig.safetensors", changed[i].file), 0);
    }
    train_result fin = run_ok("tch", text, "tch", 1, 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    assert_true(tu_same_file("tch-full/last.safetensors", "tch/last.safetensors"));
}

/* Recipes of runs that fail before their first epoch ends (n of them, each a new string): a data
 * file that is no data set, a label outside the classes, a head narrower than the classes, no
 * label the run may see, an augmentation size the images cannot give. */
static char **failing_recipes(int *n)
{
    ensure_data();
    tu_write_text("notdata.xds", "not a data set\n");
    int32_t train[N_TRAIN] = {0}, test[N_TEST] = {0};
    train[3] = 9;
    const int64_t ntr[1] = {N_TRAIN}, nte[1] = {N_TEST};
    io_tensor bad[2];
    io_tensor_set(&bad[0], "train/label.bad", IO_I32, 1, ntr, train);
    io_tensor_set(&bad[1], "test/label.bad", IO_I32, 1, nte, test);
    copy_data_with("toy.xds", "badlabel.xds", bad, 2);
    tiny_spec sp = tiny_default();
    sp.unlabelled = 1;
    tiny_write("unlab.xds", &sp);
    static const char *const data[] = {
        "{path: notdata.xds}", "{path: badlabel.xds, label: label.bad}", "{path: toy.xds}",
        "{path: unlab.xds}", "{path: toy.xds, augment: \"size=1\"}"};
    enum { N = sizeof data / sizeof data[0] };
    char **texts = calloc(N, sizeof *texts);
    for (int i = 0; i < N; i++)
        texts[i] = tu_fmt("data: %s\nmodel: \"input h=8 w=8 c=1; flatten; linear out=%d "
                          "name=logits head\"\ntrain: {epochs: 2, batch: 16}\nlosses:\n"
                          "  - kind: ce\n", data[i], i == 2 ? 3 : 4);
    *n = N;
    return texts;
}

/* A run that fails before its first epoch ends leaves nothing behind: not the folder it made
 * (nor the folders it made above it), and in a folder that was there (empty, or an earlier run's)
 * not a byte changed, its lock file included. */
static void test_failed_run_leaves_nothing(void **state)
{
    (void)state;
    int n;
    char **texts = failing_recipes(&n);
    char *ok = small_recipe(1, 0);
    run_ok("kept", ok, "kept", 1, 0, 0);
    assert_int_equal(mkdir("empty", 0755), 0);
    static const char *const found[] = {"kept", "empty"};
    for (int i = 0; i < n; i++) {
        train_result r;
        xd_err e;
        char *name = tu_fmt("fails%d", i);
        assert_int_not_equal(run_text(name, texts[i], "made/a/b", 1, 0, 0, &r, &e), XD_OK);
        print_message("%s\n", e.msg);
        assert_false(exists("made"));
        for (int k = 0; k < 2; k++) {
            dirsnap *before = dirsnap_take(found[k]);
            assert_int_not_equal(run_text(name, texts[i], found[k], 1, 0, 0, &r, &e), XD_OK);
            dirsnap_assert_same(before, found[k]);
            dirsnap_free(before);
        }
        free(name);
        free(texts[i]);
    }
    free(texts);
    free(ok);
}

/* The same for `train --seeds`: a new folder goes with its seed folders, and an earlier
 * multi-seed run's folder and seed folders keep exactly what they held. */
static void test_failed_seeds_run_leaves_nothing(void **state)
{
    (void)state;
    int n;
    char **texts = failing_recipes(&n);
    tu_write_text("bad-seeds.yaml", texts[0]);
    char *ok = small_recipe(1, 0);
    tu_write_text("ok-seeds.yaml", ok);
    char *err = NULL;
    assert_int_not_equal(tu_run_cli(NULL, &err, "train", "bad-seeds.yaml", "--out", "seeds-new",
                                    "--seeds", "2", "--quiet", NULL), 0);
    print_message("%s", err);
    assert_non_null(strstr(err, "notdata.xds"));
    assert_false(exists("seeds-new"));
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "ok-seeds.yaml", "--out", "seeds-old",
                                "--seeds", "2", "--seed", "5", "--quiet", NULL), 0);
    static const char *const dirs[] = {"seeds-old", "seeds-old/seed-5", "seeds-old/seed-6"};
    dirsnap *before[3];
    for (int k = 0; k < 3; k++) before[k] = dirsnap_take(dirs[k]);
    assert_int_not_equal(tu_run_cli(NULL, NULL, "train", "bad-seeds.yaml", "--out", "seeds-old",
                                    "--seeds", "2", "--seed", "5", "--quiet", NULL), 0);
    for (int k = 0; k < 3; k++) {
        dirsnap_assert_same(before[k], dirs[k]);
        dirsnap_free(before[k]);
    }
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(err);
    free(ok);
}

/* The hook of interrupted_run's child, called just before the first epoch's files are written:
 * the signal finds the run there. */
static int sig_ready_fd = -1;

static xd_status sig_say_and_wait(void *ctx, xd_err *e)
{
    (void)ctx;
    (void)e;
    tu_ready_wait(sig_ready_fd);
}

typedef struct {
    const recipe *r;
    const char *out;
} interrupted_ctx;

static void interrupted_child(void *ctx, int ready_fd)
{
    const interrupted_ctx *c = ctx;
    sig_ready_fd = ready_fd;
    train_opts o = {.out_dir = c->out, .quiet = 1, .before_write = sig_say_and_wait};
    train_result res;
    xd_err e;
    trainer_run(c->r, 1, &o, &res, &e);
}

/* Runs a one-epoch recipe into out in a child process that sig stops just before the first
 * epoch's files are written; the child must die by the signal. */
static void interrupted_run(int sig, const char *out)
{
    ensure_data();
    char *text = small_recipe(1, 1); /* one thread: the child must not need the parent's */
    recipe r;
    load_recipe("interrupted", text, &r);
    interrupted_ctx c = {&r, out};
    tu_kill_check(tu_fork_ready(sig, interrupted_child, &c), sig);
    recipe_free(&r);
    free(text);
}

/* SIGINT or SIGTERM before the first epoch's files are written leaves what a failure leaves: not
 * the folders the run made, not the lock file it made in an empty folder; an earlier run's
 * folder, whose lock the stopped run took, resumes (a lock whose holder is gone is free). */
static void test_interrupted_run_leaves_nothing(void **state)
{
    (void)state;
    interrupted_run(SIGINT, "sig-made/a/b");
    assert_false(exists("sig-made"));
    assert_int_equal(mkdir("sig-empty", 0755), 0);
    dirsnap *before = dirsnap_take("sig-empty");
    interrupted_run(SIGTERM, "sig-empty");
    dirsnap_assert_same(before, "sig-empty");
    dirsnap_free(before);
    char *two = small_recipe(2, 1);
    run_ok("sig-two", two, "sig-kept", 1, 1, 0);
    interrupted_run(SIGINT, "sig-kept");
    train_result res = run_ok("sig-two", two, "sig-kept", 1, 0, 1);
    assert_true(res.finished);
    free(two);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_single_stage),
        cmocka_unit_test(test_resume_two_stages),
        cmocka_unit_test(test_resume_keyed_shuffle),
        cmocka_unit_test(test_resume_finished_changes_nothing),
        cmocka_unit_test(test_resume_after_last_epoch_writes_summary),
        cmocka_unit_test(test_resume_other_recipe),
        cmocka_unit_test(test_metrics_line_not_lost),
        cmocka_unit_test(test_run_folder_lock),
        cmocka_unit_test(test_validation_resume),
        cmocka_unit_test(test_resume_refuses_edited_state),
        cmocka_unit_test(test_resume_refuses_edited_recipe),
        cmocka_unit_test(test_resume_refuses_edited_values),
        cmocka_unit_test(test_resume_refuses_changed_data),
        cmocka_unit_test(test_resume_refuses_changed_checkpoints),
        cmocka_unit_test(test_failed_run_leaves_nothing),
        cmocka_unit_test(test_failed_seeds_run_leaves_nothing),
        cmocka_unit_test(test_interrupted_run_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
