/* distill/pipeline: `xdistill run` on a tiny synthetic data set (tests/support/tinyset.h) that
 * the tests write themselves. Mistakes in a pipeline (a reference to no earlier step, a cycle,
 * two steps with one name, an unknown key, an override of the seeds or a step's name) are
 * reported with file, line and key path before anything runs. A two-step chain (a CNN teacher,
 * then a student taught by the teacher step's checkpoint of the same seed) runs into ordinary run
 * folders with stamps; running it again skips both steps and leaves every file's bytes as they
 * were; another override of the first step runs both again; a chain missing its second step
 * runs only that one; an interrupted step resumes and ends byte for byte where an uninterrupted
 * chain does, unless its inputs changed; a finished step whose checkpoint is gone runs again;
 * several seeds make one chain each. */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hash.h"
#include "distill/pipeline.h"
#include "distill/recipe.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"

#define TEACHER_MODEL                                                                            \
    "input h=8 w=8 c=1; conv2d name=conv1 out=4 k=3 pad=1; relu; maxpool k=2; flatten; "        \
    "linear out=16 name=fc1; relu name=feat; linear out=4 name=logits head"
#define STUDENT_MODEL                                                                            \
    "input h=8 w=8 c=1; flatten; linear out=8 name=fc1; relu name=feat; linear out=4 "           \
    "name=logits head"

static void write_text(const char *path, const char *text)
{
    tu_write_file(path, text, strlen(text));
}

static int present(const char *path) { return access(path, F_OK) == 0; }

/* The data set and two recipes: a teacher (2 epochs), a student that reads `step:teacher`. */
static void ensure_files(void)
{
    if (!present("toy.xds")) {
        tiny_spec s = tiny_default();
        tiny_write("toy.xds", &s);
    }
    write_text("teacher.yaml", "name: t\n"
                               "data: {path: toy.xds}\n"
                               "model: \"" TEACHER_MODEL "\"\n"
                               "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                               "losses:\n"
                               "  - kind: ce\n");
    write_text("student.yaml", "name: s\n"
                               "data: {path: toy.xds}\n"
                               "model: \"" STUDENT_MODEL "\"\n"
                               "teachers:\n"
                               "  - {name: cnn, checkpoint: \"step:teacher\"}\n"
                               "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                               "losses:\n"
                               "  - {kind: hinton, alpha: 0.5, temperature: 2}\n");
}

/* A chain file: teacher (with `teacher_set` as its set: mapping, may be "") then student. */
static void write_chain(const char *path, const char *teacher_set)
{
    char text[512];
    snprintf(text, sizeof text,
             "name: chain\n"
             "steps:\n"
             "  - name: teacher\n"
             "    recipe: teacher.yaml\n"
             "%s"
             "  - name: student\n"
             "    recipe: student.yaml\n",
             teacher_set);
    write_text(path, text);
}

static void load_ok(const char *path, pipeline *p)
{
    xd_err e;
    xd_err_clear(&e);
    if (pipeline_load(path, NULL, 0, p, &e) != XD_OK) fail_msg("pipeline_load %s: %s", path, e.msg);
}

/* Runs path into out (seeds as given, 0 = the file's); the lines it printed in *log (freed by the
 * caller, may be NULL). */
static pipeline_result run_chain(const char *path, const char *out, int seeds, int stop_after,
                                 char **log)
{
    pipeline p;
    load_ok(path, &p);
    FILE *f = tmpfile();
    assert_non_null(f);
    pipeline_opts o = {.out_dir = out, .seed = -1, .seeds = seeds, .stop_after = stop_after,
                       .quiet = 1, .out = f};
    pipeline_result res;
    xd_err e;
    xd_err_clear(&e);
    if (pipeline_run(&p, &o, &res, &e) != XD_OK) fail_msg("pipeline_run %s: %s", path, e.msg);
    pipeline_free(&p);
    long n = ftell(f);
    rewind(f);
    char *text = calloc((size_t)n + 1, 1);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (log) *log = text;
    else free(text);
    return res;
}

static void assert_actions(const pipeline_result *r, int seed, pipeline_action a0,
                           pipeline_action a1)
{
    const pipeline_action *a = &r->action[seed * r->n_steps];
    if (a[0] != a0 || a[1] != a1)
        fail_msg("seed index %d: steps %s, %s; expected %s, %s", seed, pipeline_action_names[a[0]],
                 pipeline_action_names[a[1]], pipeline_action_names[a0], pipeline_action_names[a1]);
}

static void assert_contains(const char *text, const char *what)
{
    if (!strstr(text, what)) fail_msg("'%s' is not in:\n%s", what, text);
}

static uint64_t file_fnv(const char *path)
{
    size_t n;
    void *b = tu_read_file(path, &n);
    uint64_t h = xd_fnv_bytes(XD_FNV_OFFSET, b, n);
    free(b);
    return h;
}

/* Every file of a folder tree with its bytes' hash, "path hash\n" in sorted order, into acc. */
static void list_tree(const char *dir, FILE *acc)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        struct stat st;
        if (names[i]->d_name[0] != '.' && stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                list_tree(path, acc);
            else
                fprintf(acc, "%s %016llx\n", path, (unsigned long long)file_fnv(path));
        }
        free(names[i]);
    }
    free(names);
}

static char *tree(const char *dir)
{
    char *text;
    size_t n;
    FILE *f = open_memstream(&text, &n);
    assert_non_null(f);
    list_tree(dir, f);
    fclose(f);
    return text;
}

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fail_msg("%s: %s", path, je.text);
    return j;
}

/* ---------------------------------------------------------------------------------------------
 * mistakes, before anything runs */

#define PARTS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *name, const char *text, xd_status code,
                         const char *const *parts)
{
    write_text(name, text);
    pipeline p;
    xd_err e;
    xd_err_clear(&e);
    if (pipeline_load(name, NULL, 0, &p, &e) == XD_OK) fail_msg("%s loaded", name);
    for (const char *const *s = parts; *s; s++) tu_assert_err(&e, code, *s);
    pipeline_free(&p);
}

static void test_errors(void **state)
{
    (void)state;
    ensure_files();
    /* a reference to no step: the student recipe's line and key path, the step's line */
    write_text("lost.yaml", "data: {path: toy.xds}\n"
                            "model: \"" STUDENT_MODEL "\"\n"
                            "teachers:\n"
                            "  - name: cnn\n"
                            "    checkpoint: step:teachr\n"
                            "train: {epochs: 1}\n"
                            "losses: [{kind: kd}]\n");
    expect_error("p1.yaml",
                 "steps:\n"
                 "  - {name: teacher, recipe: teacher.yaml}\n"
                 "  - {name: student, recipe: lost.yaml}\n",
                 XD_EARG, PARTS("p1.yaml:3: step 'student': lost.yaml:5: teachers.0.checkpoint: "
                                "'step:teachr' names no step of p1.yaml"));
    /* a cycle: a reads b, b reads a */
    write_text("a.yaml", "data: {path: toy.xds}\nmodel: \"" STUDENT_MODEL "\"\n"
                         "teachers: [{name: t, checkpoint: \"step:b\"}]\n"
                         "train: {epochs: 1}\nlosses: [{kind: kd}]\n");
    write_text("b.yaml", "data: {path: toy.xds}\nmodel: \"" STUDENT_MODEL "\"\n"
                         "teachers: [{name: t, checkpoint: \"step:a/last\"}]\n"
                         "train: {epochs: 1}\nlosses: [{kind: kd}]\n");
    expect_error("p2.yaml",
                 "steps:\n"
                 "  - {name: a, recipe: a.yaml}\n"
                 "  - {name: b, recipe: b.yaml}\n",
                 XD_EARG, PARTS("p2.yaml:2: step 'a': a.yaml:3: teachers.0.checkpoint",
                                "in a cycle (a -> b -> a)"));
    /* a later step that does not read back: list it first */
    expect_error("p3.yaml",
                 "steps:\n"
                 "  - {name: a, recipe: a.yaml}\n"
                 "  - {name: b, recipe: teacher.yaml}\n",
                 XD_EARG, PARTS("'step:b' names a later step (p3.yaml:3)"));
    /* a step reading itself (from its recipe, or from its set:), an unknown checkpoint word */
    expect_error("p4.yaml", "steps:\n  - {name: b, recipe: a.yaml}\n", XD_EARG,
                 PARTS("a.yaml:3: teachers.0.checkpoint: 'step:b' is this step"));
    expect_error("p5.yaml",
                 "steps:\n  - {name: a, recipe: a.yaml, set: {teachers.0.checkpoint: step:a}}\n",
                 XD_EARG, PARTS("p5.yaml:2: step 'a': --set teachers.0.checkpoint: 'step:a' is "
                                "this step"));
    expect_error("p6.yaml",
                 "steps:\n  - {name: t, recipe: teacher.yaml}\n"
                 "  - {name: a, recipe: a.yaml, set: {teachers.0.checkpoint: step:t/first}}\n",
                 XD_EARG, PARTS("expected step:NAME, step:NAME/best or step:NAME/last"));
    /* two steps with one name */
    expect_error("p7.yaml",
                 "steps:\n"
                 "  - name: teacher\n"
                 "    recipe: teacher.yaml\n"
                 "  - name: teacher\n"
                 "    recipe: student.yaml\n",
                 XD_EARG, PARTS("p7.yaml:4: steps.1.name: two steps named 'teacher' (the first at "
                                "p7.yaml:2)"));
    /* unknown keys, at the top and in a step */
    expect_error("p8.yaml", "seed: 1\nstep:\n  - {name: t, recipe: teacher.yaml}\n", XD_EARG,
                 PARTS("p8.yaml:2: unknown key 'step' (did you mean 'steps'?)"));
    expect_error("p9.yaml", "steps:\n  - name: t\n    recipes: teacher.yaml\n", XD_EARG,
                 PARTS("p9.yaml:3: unknown key 'steps.0.recipes' (did you mean 'recipe'?)"));
    /* a mistake in a step's overrides, a missing recipe, no steps */
    expect_error("p10.yaml", "steps:\n  - {name: t, recipe: teacher.yaml, set: {train.epochs: x}}",
                 XD_EARG, PARTS("p10.yaml:2: step 't': --set train.epochs",
                                "expected an integer, got 'x'"));
    expect_error("p11.yaml", "steps:\n  - {name: t, recipe: nothing.yaml}\n", XD_EIO,
                 PARTS("p11.yaml:2: step 't': nothing.yaml"));
    expect_error("p12.yaml", "steps: []\n", XD_EARG,
                 PARTS("p12.yaml:1: steps: expected a list of steps"));

    /* `train` cannot resolve a step reference and says what to do */
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    assert_int_not_equal(recipe_load("student.yaml", NULL, 0, &r, &e), XD_OK);
    tu_assert_err(&e, XD_EARG, "student.yaml:5: teachers.0.checkpoint: 'step:teacher' is the "
                               "checkpoint of a pipeline step; run the pipeline");
    recipe_free(&r);
}

/* Overrides keep their meaning: quoted values stay strings, the caller's come after the step's. */
static void test_overrides(void **state)
{
    (void)state;
    ensure_files();
    pipeline p;
    xd_err e;
    xd_err_clear(&e);
    write_text("o.yaml", "steps:\n"
                         "  - name: t\n"
                         "    recipe: teacher.yaml\n"
                         "    set: {train.epochs: 3, data.augment: 'mean=0.5 std=0.25', "
                         "train.batch: 8}\n");
    const char *extra[] = {"train.batch=4"};
    if (pipeline_load("o.yaml", extra, 1, &p, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_int_equal(p.n_steps, 1);
    assert_string_equal(p.name, "o");
    assert_int_equal(p.steps[0].r.stages[0].epochs, 3);
    assert_string_equal(p.steps[0].r.data.augment, "mean=0.5 std=0.25");
    assert_int_equal(p.steps[0].r.train.batch, 4);
    assert_int_equal(p.steps[0].n_sets, 4);
    assert_string_equal(p.steps[0].sets[0], "train.epochs=3");
    assert_string_equal(p.steps[0].sets[1], "data.augment=\"mean=0.5 std=0.25\"");
    assert_string_equal(p.steps[0].sets[3], "train.batch=4");
    pipeline_free(&p);
}

/* The keys the pipeline decides (every step's seeds, a step's folder) are refused in a step's
 * `set:` and in run --set, saying how to give them; nothing runs. */
static void test_fixed_keys(void **state)
{
    (void)state;
    ensure_files();
    expect_error("f1.yaml", "steps:\n  - {name: t, recipe: teacher.yaml, set: {seed: 5}}\n",
                 XD_EARG, PARTS("f1.yaml:2: steps.0.set.seed: ", "run --seed N"));
    expect_error("f2.yaml",
                 "steps:\n  - name: t\n    recipe: teacher.yaml\n    set: {train.epochs: 3, "
                 "seeds: 3}\n",
                 XD_EARG, PARTS("f2.yaml:4: steps.0.set.seeds: ", "run --seeds K"));
    expect_error("f3.yaml", "steps:\n  - {name: t, recipe: teacher.yaml, set: {name: other}}\n",
                 XD_EARG, PARTS("f3.yaml:2: steps.0.set.name: ", "its step name"));
    write_chain("chain.yaml", "");
    const char *extra[] = {"train.threads=1", "seeds=3"};
    pipeline p;
    xd_err e;
    xd_err_clear(&e);
    assert_int_not_equal(pipeline_load("chain.yaml", extra, 2, &p, &e), XD_OK);
    tu_assert_err(&e, XD_EARG, "--set seeds=3: ");
    pipeline_free(&p);

    /* run: a usage error (exit 2) for --set, an error in the file (exit 1) for set:; no folder */
    static const char *const sets[][2] = {
        {"seed=5", "run --seed N"}, {"seeds=3", "run --seeds K"}, {"name=other", "--out DIR"}};
    for (int i = 0; i < 3; i++) {
        char *err;
        assert_int_equal(tu_run_cli(NULL, &err, "run", "chain.yaml", "--out", "fixed", "--set",
                                    sets[i][0], NULL),
                         2);
        char want[64];
        snprintf(want, sizeof want, "--set %s: ", sets[i][0]);
        tu_expect_line(err, want, sets[i][1]);
        free(err);
    }
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "run", "f2.yaml", "--out", "fixed", NULL), 1);
    tu_expect_line(err, "f2.yaml:4: steps.0.set.seeds: ", "run --seeds K");
    free(err);
    assert_false(present("fixed"));
}

/* ---------------------------------------------------------------------------------------------
 * runs */

static void test_chain_runs_and_skips(void **state)
{
    (void)state;
    ensure_files();
    write_chain("chain.yaml", "");
    char *log;
    pipeline_result r = run_chain("chain.yaml", "out", 0, 0, &log);
    assert_true(r.finished);
    assert_actions(&r, 0, PIPELINE_RAN, PIPELINE_RAN);
    pipeline_result_free(&r);
    assert_contains(log, "step teacher (seed 1): running\n");
    assert_contains(log, "student seed 1: test accuracy");
    free(log);

    /* ordinary run folders */
    const char *files[] = {"metrics.jsonl", "summary.json", "best.safetensors",
                           "last.safetensors", "recipe.yaml", "step.json"};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 6; i++) {
            char path[128];
            snprintf(path, sizeof path, "out/seed-1/%s/%s", s ? "student" : "teacher", files[i]);
            if (!present(path)) fail_msg("%s is missing", path);
        }
    /* the student's teacher is the teacher step's best checkpoint: in its stamp (path and the
     * bytes' hash) and in the recipe it ran */
    json_t *st = load_json("out/seed-1/student/step.json");
    json_t *t0 = json_array_get(json_object_get(st, "teachers"), 0);
    assert_string_equal(json_string_value(json_object_get(t0, "checkpoint")),
                        "out/seed-1/teacher/best.safetensors");
    char h[17];
    snprintf(h, sizeof h, "%016llx",
             (unsigned long long)file_fnv("out/seed-1/teacher/best.safetensors"));
    assert_string_equal(json_string_value(json_object_get(t0, "hash")), h);
    assert_true(json_is_true(json_object_get(st, "finished")));
    json_decref(st);
    size_t n;
    char *yaml = tu_read_file("out/seed-1/student/recipe.yaml", &n);
    assert_contains(yaml, "checkpoint: \"out/seed-1/teacher/best.safetensors\"");
    free(yaml);
    json_t *sum = load_json("out/summary.json");
    assert_int_equal(json_integer_value(json_object_get(sum, "seeds")), 1);
    assert_int_equal(json_array_size(json_object_get(sum, "steps")), 2);
    json_decref(sum);

    /* again: both skipped, with the reason, every file as it was */
    char *before = tree("out");
    assert_contains(before, "out/seed-1/student/best.safetensors ");
    r = run_chain("chain.yaml", "out", 0, 0, &log);
    assert_true(r.finished);
    assert_actions(&r, 0, PIPELINE_SKIPPED, PIPELINE_SKIPPED);
    pipeline_result_free(&r);
    assert_contains(log, "step teacher (seed 1): skipped, unchanged since ");
    assert_contains(log, "step student (seed 1): skipped, unchanged since ");
    assert_contains(log, "(recipe, data, teachers, eval sets, init checkpoints and seed are the "
                         "same)");
    free(log);
    char *after = tree("out");
    assert_string_equal(before, after);
    free(after);

    /* the second step missing (an interrupted chain): only it runs, to the same bytes */
    const char *ckpts[] = {"out/seed-1/student/best.safetensors",
                           "out/seed-1/student/last.safetensors"};
    uint64_t h0[2];
    for (int i = 0; i < 2; i++) h0[i] = file_fnv(ckpts[i]);
    io_remove_tree("out/seed-1/student");
    r = run_chain("chain.yaml", "out", 0, 0, NULL);
    assert_actions(&r, 0, PIPELINE_SKIPPED, PIPELINE_RAN);
    pipeline_result_free(&r);
    for (int i = 0; i < 2; i++)
        if (file_fnv(ckpts[i]) != h0[i]) fail_msg("%s differs from the first run's", ckpts[i]);
    free(before);

    /* another override of the first step: both run again */
    write_chain("chain.yaml", "    set: {train.optimizer.lr: 0.02}\n");
    r = run_chain("chain.yaml", "out", 0, 0, &log);
    assert_actions(&r, 0, PIPELINE_RAN, PIPELINE_RAN);
    pipeline_result_free(&r);
    assert_contains(log, "step teacher (seed 1): running (the recipe changed)");
    assert_contains(log, "step student (seed 1): running (teacher 'cnn' changed: "
                         "out/seed-1/teacher/best.safetensors)");
    free(log);

    /* a new data set file (same contents, another modification time): both run again */
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, "toy.xds", ts, 0), 0);
    r = run_chain("chain.yaml", "out", 0, 0, &log);
    assert_actions(&r, 0, PIPELINE_RAN, PIPELINE_RAN);
    pipeline_result_free(&r);
    assert_contains(log, "step teacher (seed 1): running (the data set changed)");
    free(log);
}

/* An interrupted step resumes and ends where the uninterrupted chain does; with other inputs it
 * starts over instead. */
static void test_resume(void **state)
{
    (void)state;
    ensure_files();
    write_chain("chain.yaml", "");
    /* (into the same folder both times: the checkpoints hold the recipe, teacher paths included) */
    /* stop_after 1: the chain stops after the teacher's first epoch */
    char *log;
    pipeline_result r = run_chain("chain.yaml", "x", 0, 1, &log);
    assert_false(r.finished);
    assert_int_equal(r.res[0].epochs_done, 1);
    assert_false(present("x/seed-1/student"));
    assert_false(present("x/summary.json"));
    pipeline_result_free(&r);
    assert_contains(log, "step teacher (seed 1): stopped after 1 of 2 epochs");
    free(log);
    r = run_chain("chain.yaml", "x", 0, 0, &log);
    assert_true(r.finished);
    assert_actions(&r, 0, PIPELINE_RESUMED, PIPELINE_RAN);
    pipeline_result_free(&r);
    assert_contains(log, "step teacher (seed 1): resuming the interrupted run");
    free(log);
    const char *same[] = {"x/seed-1/teacher/best.safetensors", "x/seed-1/teacher/last.safetensors",
                          "x/seed-1/student/best.safetensors", "x/seed-1/student/last.safetensors"};
    uint64_t parts[4];
    for (int i = 0; i < 4; i++) parts[i] = file_fnv(same[i]);
    io_remove_tree("x");
    r = run_chain("chain.yaml", "x", 0, 0, NULL);
    assert_actions(&r, 0, PIPELINE_RAN, PIPELINE_RAN);
    pipeline_result_free(&r);
    for (int i = 0; i < 4; i++)
        if (file_fnv(same[i]) != parts[i])
            fail_msg("%s: the resumed and the straight run differ", same[i]);

    /* interrupted, then the recipe changes: no resume from the other recipe's state */
    r = run_chain("chain.yaml", "changed", 0, 1, NULL);
    pipeline_result_free(&r);
    write_chain("chain2.yaml", "    set: {train.optimizer.lr: 0.02}\n");
    r = run_chain("chain2.yaml", "changed", 0, 0, NULL);
    assert_actions(&r, 0, PIPELINE_RAN, PIPELINE_RAN);
    assert_int_equal(r.res[0].epochs_done, 2);
    pipeline_result_free(&r);
}

/* A finished step whose checkpoint is gone runs again from the start (its resume state is of a
 * finished run, which the trainer leaves as it is), to the same bytes, and its reader then finds
 * the checkpoint it read and is skipped. */
static void test_missing_outputs(void **state)
{
    (void)state;
    ensure_files();
    write_chain("chain.yaml", "    set: {train.epochs: 3}\n");
    pipeline_result r = run_chain("chain.yaml", "gone", 0, 0, NULL);
    assert_true(r.finished);
    pipeline_result_free(&r);
    const char *best = "gone/seed-1/teacher/best.safetensors";
    assert_true(present("gone/seed-1/teacher/resume.safetensors"));
    uint64_t h = file_fnv(best);
    assert_int_equal(unlink(best), 0);
    char *log;
    r = run_chain("chain.yaml", "gone", 0, 0, &log);
    assert_true(r.finished);
    assert_actions(&r, 0, PIPELINE_RAN, PIPELINE_SKIPPED);
    assert_int_equal(r.res[0].epochs_done, 3);
    pipeline_result_free(&r);
    assert_contains(log, "step teacher (seed 1): running again (the earlier run's outputs are "
                         "missing)\n");
    free(log);
    if (file_fnv(best) != h) fail_msg("%s differs from the first run's", best);
}

/* The stamp covers the files a step reads besides its data set and teachers: a data.eval_sets
 * entry's identity and an init checkpoint's bytes. Changed, the step runs again and says why;
 * unchanged, it is skipped. */
static void test_stamp_eval_sets_and_init(void **state)
{
    (void)state;
    ensure_files();
    /* two init checkpoints: the teacher of a one-step chain after two epochs and after one */
    write_text("one.yaml", "name: one\nsteps:\n  - name: teacher\n    recipe: teacher.yaml\n");
    write_text("one1.yaml", "name: one\nsteps:\n  - name: teacher\n    recipe: teacher.yaml\n"
                            "    set: {train.epochs: 1}\n");
    pipeline_result r = run_chain("one.yaml", "i0", 0, 0, NULL);
    pipeline_result_free(&r);
    r = run_chain("one1.yaml", "i1", 0, 0, NULL);
    pipeline_result_free(&r);
    tu_copy_file("i0/seed-1/teacher/last.safetensors", "init.safetensors");
    tu_copy_file("toy.xds", "toy2.xds");
    write_text("warm.yaml", "name: w\n"
                            "data: {path: toy.xds, eval_sets: [{name: other, path: toy2.xds}]}\n"
                            "model: \"" TEACHER_MODEL "\"\n"
                            "init: init.safetensors\n"
                            "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                            "losses:\n"
                            "  - kind: ce\n");
    write_text("warm-chain.yaml", "name: wc\nsteps:\n  - name: warm\n    recipe: warm.yaml\n");
    char *log;
    r = run_chain("warm-chain.yaml", "w", 0, 0, NULL);
    assert_int_equal(r.action[0], PIPELINE_RAN);
    pipeline_result_free(&r);
    json_t *st = load_json("w/seed-1/warm/step.json");
    const json_t *e0 = json_array_get(json_object_get(st, "eval_sets"), 0);
    assert_non_null(e0);
    assert_string_equal(json_string_value(json_object_get(e0, "name")), "other");
    const json_t *i0 = json_array_get(json_object_get(st, "inits"), 0);
    assert_non_null(i0);
    char h[17];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)file_fnv("init.safetensors"));
    assert_string_equal(json_string_value(json_object_get(i0, "hash")), h);
    /* the run's resume state records the identities the stamp has (the run took them from it) */
    io_st_file *f;
    xd_err e;
    TU_OK(io_st_open("w/seed-1/warm/resume.safetensors", &f, &e));
    assert_string_equal(io_st_meta(f, "init_hash.student"), h);
    assert_string_equal(io_st_meta(f, "eval_identity.other"),
                        json_string_value(json_object_get(e0, "identity")));
    assert_string_equal(io_st_meta(f, "data_identity"), json_string_value(json_object_get(st, "data")));
    io_st_close(f);
    json_decref(st);
    r = run_chain("warm-chain.yaml", "w", 0, 0, NULL);
    assert_int_equal(r.action[0], PIPELINE_SKIPPED);
    pipeline_result_free(&r);

    /* the eval set replaced (same bytes, another modification time) */
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, "toy2.xds", ts, 0), 0);
    r = run_chain("warm-chain.yaml", "w", 0, 0, &log);
    assert_int_equal(r.action[0], PIPELINE_RAN);
    pipeline_result_free(&r);
    assert_contains(log, "step warm (seed 1): running (data.eval_sets 'other' changed: toy2.xds)");
    free(log);

    /* another init checkpoint under the same name */
    tu_copy_file("i1/seed-1/teacher/last.safetensors", "init.safetensors");
    r = run_chain("warm-chain.yaml", "w", 0, 0, &log);
    assert_int_equal(r.action[0], PIPELINE_RAN);
    pipeline_result_free(&r);
    assert_contains(log, "step warm (seed 1): running (model 'student' init changed: "
                         "init.safetensors)");
    free(log);
    r = run_chain("warm-chain.yaml", "w", 0, 0, NULL);
    assert_int_equal(r.action[0], PIPELINE_SKIPPED);
    pipeline_result_free(&r);
}

static void test_seeds(void **state)
{
    (void)state;
    ensure_files();
    write_chain("chain.yaml", "");
    char *log;
    pipeline_result r = run_chain("chain.yaml", "two", 2, 0, &log);
    assert_true(r.finished);
    assert_int_equal(r.n_seeds, 2);
    assert_actions(&r, 0, PIPELINE_RAN, PIPELINE_RAN);
    assert_actions(&r, 1, PIPELINE_RAN, PIPELINE_RAN);
    assert_int_equal(r.res[2].seed, 2);
    pipeline_result_free(&r);
    assert_contains(log, "teacher: test accuracy ");
    assert_contains(log, " over 2 seeds\n");
    free(log);
    /* each seed's student reads its own seed's teacher */
    json_t *st = load_json("two/seed-2/student/step.json");
    json_t *t0 = json_array_get(json_object_get(st, "teachers"), 0);
    assert_string_equal(json_string_value(json_object_get(t0, "checkpoint")),
                        "two/seed-2/teacher/best.safetensors");
    assert_int_equal(json_integer_value(json_object_get(st, "seed")), 2);
    json_decref(st);
    if (file_fnv("two/seed-1/teacher/best.safetensors") ==
        file_fnv("two/seed-2/teacher/best.safetensors"))
        fail_msg("the two seeds' teachers are the same");
    /* the summary: each step over both seeds, its mean the mean of the runs */
    json_t *sum = load_json("two/summary.json");
    assert_int_equal(json_integer_value(json_object_get(sum, "seeds")), 2);
    json_t *s1 = json_array_get(json_object_get(sum, "steps"), 1);
    assert_string_equal(json_string_value(json_object_get(s1, "name")), "student");
    json_t *runs = json_object_get(s1, "runs");
    assert_int_equal(json_array_size(runs), 2);
    double a = json_real_value(json_object_get(json_array_get(runs, 0), "final_test_acc"));
    double b = json_real_value(json_object_get(json_array_get(runs, 1), "final_test_acc"));
    double mean = json_real_value(json_object_get(json_object_get(s1, "final_test_acc"), "mean"));
    assert_true(fabs(mean - (a + b) / 2) < 1e-6);
    json_decref(sum);
}

/* A step of several models: `step:NAME` reads its first model's checkpoint, as the trainer
 * names it (NAME.best.safetensors, not best.safetensors). */
static void test_step_of_several_models(void **state)
{
    (void)state;
    ensure_files();
    write_text("peers.yaml", "name: p\n"
                             "data: {path: toy.xds}\n"
                             "models:\n"
                             "  - {name: cnn, model: \"" TEACHER_MODEL "\"}\n"
                             "  - {name: mlp, model: \"" STUDENT_MODEL "\"}\n"
                             "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                             "losses:\n"
                             "  - {kind: ce, model: cnn}\n"
                             "  - {kind: ce, model: mlp}\n");
    write_text("peers-chain.yaml", "name: peers\n"
                                   "steps:\n"
                                   "  - name: teacher\n"
                                   "    recipe: peers.yaml\n"
                                   "  - name: student\n"
                                   "    recipe: student.yaml\n");
    pipeline_result r = run_chain("peers-chain.yaml", "pc", 1, 0, NULL);
    assert_true(r.finished);
    pipeline_result_free(&r);
    assert_true(present("pc/seed-1/teacher/cnn.best.safetensors"));
    json_t *st = load_json("pc/seed-1/student/step.json");
    json_t *t0 = json_array_get(json_object_get(st, "teachers"), 0);
    assert_string_equal(json_string_value(json_object_get(t0, "checkpoint")),
                        "pc/seed-1/teacher/cnn.best.safetensors");
    json_decref(st);
}

/* Runs path into out; the run must fail in step 'bad'. */
static void run_fails(const char *path, const char *out)
{
    pipeline p;
    load_ok(path, &p);
    pipeline_opts o = {.out_dir = out, .seed = -1, .quiet = 1};
    pipeline_result res;
    xd_err e;
    xd_err_clear(&e);
    assert_int_not_equal(pipeline_run(&p, &o, &res, &e), XD_OK);
    print_message("%s\n", e.msg);
    assert_non_null(strstr(e.msg, "step 'bad'"));
    pipeline_result_free(&res);
    pipeline_free(&p);
}

/* A step that fails before its first epoch ends leaves what `train` leaves: nothing of its own
 * (no step.json, no folder made for it), and a folder of an earlier run of the step as it was. */
static void test_failed_step_leaves_nothing(void **state)
{
    (void)state;
    ensure_files();
    /* the first epoch's loss is not finite */
    write_text("bad.yaml", "name: b\n"
                           "data: {path: toy.xds}\n"
                           "model: \"" STUDENT_MODEL "\"\n"
                           "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 1e30}}\n"
                           "losses:\n"
                           "  - kind: ce\n");
    write_text("bad-first.yaml", "name: bf\n"
                                 "steps:\n"
                                 "  - name: bad\n"
                                 "    recipe: bad.yaml\n");
    run_fails("bad-first.yaml", "fail-new/out");
    assert_false(present("fail-new"));
    static const char *const chain = "name: bm\n"
                                     "steps:\n"
                                     "  - name: teacher\n"
                                     "    recipe: teacher.yaml\n"
                                     "  - name: bad\n"
                                     "    recipe: %s\n"
                                     "  - name: student\n"
                                     "    recipe: student.yaml\n";
    char text[512];
    snprintf(text, sizeof text, chain, "bad.yaml");
    write_text("bad-middle.yaml", text);
    run_fails("bad-middle.yaml", "fail-mid");
    assert_true(present("fail-mid/seed-1/teacher/step.json"));
    assert_false(present("fail-mid/seed-1/bad"));
    assert_false(present("fail-mid/seed-1/student"));
    /* the same chain with a step 'bad' that works, then the failing one over it */
    snprintf(text, sizeof text, chain, "teacher.yaml");
    write_text("good-middle.yaml", text);
    pipeline_result r = run_chain("good-middle.yaml", "fail-old", 1, 0, NULL);
    assert_true(r.finished);
    pipeline_result_free(&r);
    char *before = tree("fail-old/seed-1/bad");
    run_fails("bad-middle.yaml", "fail-old");
    char *after = tree("fail-old/seed-1/bad");
    assert_string_equal(after, before);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_fixed_keys),
        cmocka_unit_test(test_chain_runs_and_skips),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_missing_outputs),
        cmocka_unit_test(test_stamp_eval_sets_and_init),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_step_of_several_models),
        cmocka_unit_test(test_failed_step_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
