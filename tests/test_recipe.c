/* distill/recipe: binding a full recipe, defaults, --set overrides, every class of error with its
 * line and key path, and the print-back round trip. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distill/recipe.h"
#include "modalities/text/config.h"

#define MODEL                                                                                    \
    "input h=4 w=4 c=1; conv2d name=conv1 out=2 k=3 pad=1; relu name=r1; flatten; "             \
    "linear out=8; relu name=feat; linear out=3 name=logits head"

/* Files the recipes name; their contents do not matter at bind time. */
static int fixture_setup(void **state)
{
    (void)state;
    tu_write_file("d.xds", "x", 1);
    tu_write_file("cnn.safetensors", "x", 1);
    tu_write_file("txt.safetensors", "x", 1);
    return 0;
}

/* Writes text to r.yaml and loads it with sets. */
static xd_status load(const char *text, const char *const *sets, int n_sets, recipe *r, xd_err *e)
{
    tu_write_file("r.yaml", text, strlen(text));
    xd_err_clear(e);
    return recipe_load("r.yaml", sets, n_sets, r, e);
}

static void load_ok(const char *text, const char *const *sets, int n_sets, recipe *r)
{
    xd_err e;
    if (load(text, sets, n_sets, r, &e) != XD_OK) fail_msg("recipe_load failed: %s", e.msg);
}

/* The recipe must fail with XD_EARG (or code) and a message holding want. */
static void load_bad(const char *text, const char *const *sets, int n_sets, xd_status code,
                     const char *want)
{
    recipe r;
    xd_err e;
    xd_status s = load(text, sets, n_sets, &r, &e);
    if (s == XD_OK) fail_msg("recipe loaded, expected an error mentioning '%s'", want);
    tu_assert_err(&e, code, want);
    assert_null(r.name); /* nothing half-bound is handed out */
    assert_int_equal(r.n_stages, 0);
    recipe_free(&r);
}

static const char *const full_recipe =
    "name: fashion-kd\n"                                    /* 1 */
    "seed: 5\n"                                             /* 2 */
    "seeds: 3\n"                                            /* 3 */
    "data:\n"                                               /* 4 */
    "  path: d.xds\n"                                       /* 5 */
    "  train: tr\n"                                         /* 6 */
    "  test: te\n"                                          /* 7 */
    "  label: label.sub\n"                                  /* 8 */
    "  labels_per_class: 60\n"                              /* 9 */
    "  student_view: image\n"                               /* 10 */
    "  augment: \"pad=2 flip=0.5\"\n"                       /* 11 */
    "  text: \"buckets=1024 nmax=3\"\n"                     /* 12 */
    "model: \"" MODEL "\"\n"                                /* 13 */
    "teachers:\n"                                           /* 14 */
    "  - name: cnn\n"                                       /* 15 */
    "    checkpoint: cnn.safetensors\n"                     /* 16 */
    "  - name: txt\n"                                       /* 17 */
    "    checkpoint: txt.safetensors\n"                     /* 18 */
    "    view: text.*\n"                                    /* 19 */
    "    cache: false\n"                                    /* 20 */
    "train:\n"                                              /* 21 */
    "  batch: 32\n"                                         /* 22 */
    "  optimizer: {lr: 0.05, kind: sgd, momentum: 0.9, nesterov: true}\n" /* 23 */
    "  schedule: {kind: cosine, warmup_steps: 10, min_lr: 0.001}\n"       /* 24 */
    "  eval_every: 2\n"                                     /* 25 */
    "  threads: 1\n"                                        /* 26 */
    "stages:\n"                                             /* 27 */
    "  - epochs: 2\n"                                       /* 28 */
    "    train_until: feat\n"                               /* 29 */
    "    losses:\n"                                         /* 30 */
    "      - kind: hint\n"                                  /* 31 */
    "        teacher: cnn\n"                                /* 32 */
    "        student_tap: feat\n"                           /* 33 */
    "        teacher_tap: fc1\n"                            /* 34 */
    "        projector: conv1x1\n"                          /* 35 */
    "  - epochs: 5\n"                                       /* 36 */
    "    losses:\n"                                         /* 37 */
    "      - kind: ce\n"                                    /* 38 */
    "        weight: 0.25\n"                                /* 39 */
    "        head: logits\n"                                /* 40 */
    "      - kind: kd\n"                                    /* 41 */
    "        teacher: txt\n"                                /* 42 */
    "        temperature: 2\n"                              /* 43 */
    "        teacher_head: out\n"                           /* 44 */
    "      - kind: hinton\n"                                /* 45 */
    "        teacher: cnn\n"                                /* 46 */
    "        alpha: 0.7\n"                                  /* 47 */
    "      - kind: feature\n"                               /* 48 */
    "        teacher: cnn\n"                                /* 49 */
    "        student_tap: r1\n"                             /* 50 */
    "        teacher_tap: conv2\n"                          /* 51 */
    "        metric: cosine\n"                              /* 52 */
    "        projector: linear\n"                           /* 53 */
    "      - kind: attention\n"                             /* 54 */
    "        teacher: cnn\n"                                /* 55 */
    "        student_tap: conv1\n"                          /* 56 */
    "        teacher_tap: conv1\n"                          /* 57 */
    "        weight: 100\n";                                /* 58 */

static void test_full_recipe(void **state)
{
    (void)state;
    recipe r;
    load_ok(full_recipe, NULL, 0, &r);
    assert_string_equal(r.name, "fashion-kd");
    assert_int_equal(r.seed, 5);
    assert_int_equal(r.seeds, 3);
    assert_string_equal(r.data.path, "d.xds");
    assert_string_equal(r.data.train, "tr");
    assert_string_equal(r.data.test, "te");
    assert_string_equal(r.data.label, "label.sub");
    assert_int_equal(r.data.labels_per_class, 60);
    assert_true(r.data.label_fraction == 1.0f);
    assert_string_equal(r.data.student_view, "image");
    assert_string_equal(r.data.augment, "pad=2 flip=0.5");
    assert_string_equal(r.data.text, "buckets=1024 nmax=3");
    assert_string_equal(r.model, MODEL);
    assert_int_equal(r.n_teachers, 2);
    assert_string_equal(r.teachers[0].name, "cnn");
    assert_string_equal(r.teachers[0].checkpoint, "cnn.safetensors");
    assert_string_equal(r.teachers[0].view, "image"); /* the student's view */
    assert_int_equal(r.teachers[0].cache, 1);
    assert_string_equal(r.teachers[1].view, "text.*");
    assert_int_equal(r.teachers[1].cache, 0);
    /* train: the kind applies first although lr stands before it */
    assert_int_equal(r.train.batch, 32);
    assert_int_equal(r.train.opt.kind, NN_OPT_SGD);
    assert_true(r.train.opt.lr == 0.05f);
    assert_true(r.train.opt.momentum == 0.9f);
    assert_int_equal(r.train.opt.nesterov, 1);
    assert_int_equal(r.train.sched.kind, NN_SCHED_COSINE);
    assert_true(r.train.sched.base_lr == 0.05f); /* from the optimizer */
    assert_true(r.train.sched.min_lr == 0.001f);
    assert_int_equal(r.train.sched.warmup_steps, 10);
    assert_int_equal(r.train.sched_auto_steps, 1);
    assert_int_equal(r.train.sched.total_steps, 0);
    assert_int_equal(r.train.eval_every, 2);
    assert_int_equal(r.train.threads, 1);
    assert_int_equal(r.train.epochs, 7);
    /* stages */
    assert_int_equal(r.n_stages, 2);
    recipe_stage *s0 = &r.stages[0], *s1 = &r.stages[1];
    assert_int_equal(s0->epochs, 2);
    assert_string_equal(s0->train_until, "feat");
    assert_int_equal(s0->n_losses, 1);
    assert_int_equal(s0->losses[0].kind, RECIPE_LOSS_HINT);
    assert_int_equal(s0->losses[0].teacher, 0);
    assert_string_equal(s0->losses[0].student_tap, "feat");
    assert_string_equal(s0->losses[0].teacher_tap, "fc1");
    assert_int_equal(s0->losses[0].projector, RECIPE_PROJ_CONV1X1);
    assert_int_equal(s1->epochs, 5);
    assert_null(s1->train_until);
    assert_int_equal(s1->n_losses, 5);
    recipe_loss *l = s1->losses;
    assert_int_equal(l[0].kind, RECIPE_LOSS_CE);
    assert_true(l[0].weight == 0.25f);
    assert_int_equal(l[0].teacher, -1);
    assert_string_equal(l[0].head, "logits");
    assert_int_equal(l[1].kind, RECIPE_LOSS_KD);
    assert_int_equal(l[1].teacher, 1);
    assert_true(l[1].temperature == 2.0f);
    assert_string_equal(l[1].teacher_head, "out");
    assert_null(l[1].head);
    assert_int_equal(l[2].kind, RECIPE_LOSS_HINTON);
    assert_true(l[2].alpha == 0.7f);
    assert_true(l[2].temperature == 4.0f);
    assert_int_equal(l[3].kind, RECIPE_LOSS_FEATURE);
    assert_int_equal(l[3].metric, RECIPE_METRIC_COSINE);
    assert_int_equal(l[3].projector, RECIPE_PROJ_LINEAR);
    assert_string_equal(l[3].student_tap, "r1");
    assert_int_equal(l[4].kind, RECIPE_LOSS_ATTENTION);
    assert_true(l[4].weight == 100.0f);
    assert_string_equal(l[4].teacher_tap, "conv1");
    assert_true(recipe_loss_needs_teacher(RECIPE_LOSS_ATTENTION));
    assert_false(recipe_loss_needs_teacher(RECIPE_LOSS_CE));
    recipe_free(&r);
    recipe_free(&r); /* twice is safe */
}

static const char *const minimal_recipe = "data:\n"
                                          "  path: d.xds\n"
                                          "model: \"" MODEL "\"\n"
                                          "train:\n"
                                          "  epochs: 2\n"
                                          "losses:\n"
                                          "  - kind: ce\n";

static void test_defaults(void **state)
{
    (void)state;
    recipe r;
    load_ok(minimal_recipe, NULL, 0, &r);
    assert_string_equal(r.name, "r"); /* r.yaml without its extension */
    assert_int_equal(r.seed, 1);
    assert_int_equal(r.seeds, 1);
    assert_string_equal(r.data.train, "train");
    assert_string_equal(r.data.test, "test");
    assert_string_equal(r.data.label, "label");
    assert_true(r.data.label_fraction == 1.0f);
    assert_int_equal(r.data.labels_per_class, 0);
    assert_string_equal(r.data.student_view, "image");
    assert_string_equal(r.data.augment, "");
    assert_string_equal(r.data.text, "");
    assert_int_equal(r.n_teachers, 0);
    assert_null(r.teachers);
    assert_int_equal(r.train.batch, 128);
    nn_opt_config adamw = nn_opt_defaults(NN_OPT_ADAMW);
    assert_int_equal(r.train.opt.kind, NN_OPT_ADAMW);
    assert_true(r.train.opt.lr == adamw.lr);
    assert_true(r.train.opt.weight_decay == adamw.weight_decay);
    assert_true(r.train.opt.beta2 == adamw.beta2);
    assert_int_equal(r.train.sched.kind, NN_SCHED_CONSTANT);
    assert_true(r.train.sched.base_lr == adamw.lr);
    assert_int_equal(r.train.sched_auto_steps, 0);
    assert_int_equal(r.train.eval_every, 1);
    assert_int_equal(r.train.threads, 0);
    assert_int_equal(r.train.epochs, 2);
    assert_int_equal(r.n_stages, 1);
    assert_int_equal(r.stages[0].epochs, 2);
    assert_null(r.stages[0].train_until);
    assert_int_equal(r.stages[0].n_losses, 1);
    recipe_loss *l = &r.stages[0].losses[0];
    assert_int_equal(l->kind, RECIPE_LOSS_CE);
    assert_true(l->weight == 1.0f);
    assert_int_equal(l->teacher, -1);
    assert_null(l->head);
    recipe_free(&r);

    /* a single teacher is the default teacher; kd and feature defaults */
    load_ok("data: {path: d.xds}\n"
            "model: \"" MODEL "\"\n"
            "teachers: [{name: t, checkpoint: cnn.safetensors}]\n"
            "train: {epochs: 1, schedule: {kind: linear, total_steps: 500, base_lr: 0.5}}\n"
            "losses:\n"
            "  - kind: kd\n"
            "  - kind: hinton\n"
            "  - kind: feature\n"
            "    student_tap: feat\n"
            "    teacher_tap: feat\n",
            NULL, 0, &r);
    l = r.stages[0].losses;
    assert_int_equal(l[0].teacher, 0);
    assert_true(l[0].temperature == 4.0f);
    assert_true(l[1].alpha == 0.9f);
    assert_int_equal(l[2].metric, RECIPE_METRIC_MSE);
    assert_int_equal(l[2].projector, RECIPE_PROJ_AUTO);
    assert_int_equal(r.train.sched.total_steps, 500);
    assert_int_equal(r.train.sched_auto_steps, 0);
    assert_true(r.train.sched.base_lr == 0.5f); /* given: not the optimizer's */
    recipe_free(&r);

    /* a model in its own file, a text student */
    const char *text_model = "input tokens=6\nembbag vocab=50 out=4 mode=mean\n"
                             "linear out=3 name=logits head\n";
    tu_write_file("student.model", text_model, strlen(text_model));
    load_ok("data: {path: d.xds, student_view: text.ko, text: 'nmin=1 unit=codepoint'}\n"
            "model_file: student.model\n"
            "train: {epochs: 1}\n"
            "losses: [{kind: ce}]\n",
            NULL, 0, &r);
    assert_string_equal(r.model, text_model);
    assert_string_equal(r.data.student_view, "text.ko");
    recipe_free(&r);
}

static void test_overrides(void **state)
{
    (void)state;
    recipe r;
    const char *sets[] = {"train.epochs=3",         "losses.0.weight=0.5",
                          "seed=7",                 "train.optimizer.lr=0.01",
                          "data.label_fraction=0.25", "name='with-set'"};
    load_ok(minimal_recipe, sets, 6, &r);
    assert_int_equal(r.stages[0].epochs, 3);
    assert_int_equal(r.train.epochs, 3);
    assert_true(r.stages[0].losses[0].weight == 0.5f);
    assert_int_equal(r.seed, 7);
    assert_true(r.train.opt.lr == 0.01f);
    assert_true(r.train.sched.base_lr == 0.01f);
    assert_true(r.data.label_fraction == 0.25f);
    assert_string_equal(r.name, "with-set");
    recipe_free(&r);

    const char *bad1[] = {"train.epochs=ten"};
    load_bad(minimal_recipe, bad1, 1, XD_EARG,
             "--set train.epochs: key 'train.epochs': expected an integer, got 'ten'");
    const char *bad2[] = {"train.epoch=3"};
    load_bad(minimal_recipe, bad2, 1, XD_EARG,
             "--set train.epoch: unknown key 'train.epoch' (did you mean 'epochs'?)");
    const char *bad3[] = {"losses.1.weight=2"};
    load_bad(minimal_recipe, bad3, 1, XD_EARG, "--set losses.1.weight: 'losses' holds a sequence");
    const char *bad4[] = {"train=3"};
    load_bad(minimal_recipe, bad4, 1, XD_EARG, "'train' is a mapping; only scalars can be set");
    const char *bad5[] = {"losses.0.temperature=2"};
    load_bad(minimal_recipe, bad5, 1, XD_EARG,
             "--set losses.0.temperature: losses.0.temperature: does not apply to kind 'ce'");
    const char *bad6[] = {"data.label_fraction=1.5"};
    load_bad(minimal_recipe, bad6, 1, XD_EARG,
             "--set data.label_fraction: data.label_fraction: must be in [0, 1]");
}

/* A key of the optimizer or schedule set on the kind-word form (`schedule: cosine`) turns it into
 * the mapping form, the kind kept; a bad kind word is still reported at its line. */
static void test_overrides_on_kind_words(void **state)
{
    (void)state;
    const char *text = "data:\n"
                       "  path: d.xds\n"
                       "model: \"" MODEL "\"\n"
                       "train:\n"
                       "  epochs: 2\n"
                       "  optimizer: sgd\n"
                       "  schedule: cosine\n"
                       "losses:\n"
                       "  - kind: ce\n";
    recipe r;
    const char *sets[] = {"train.schedule.warmup_steps=100", "train.optimizer.momentum=0.9"};
    load_ok(text, sets, 2, &r);
    assert_int_equal(r.train.sched.kind, NN_SCHED_COSINE);
    assert_int_equal(r.train.sched.warmup_steps, 100);
    assert_int_equal(r.train.opt.kind, NN_OPT_SGD);
    assert_true(r.train.opt.momentum == 0.9f);
    assert_true(r.train.sched_auto_steps);
    recipe_free(&r);
    /* the same as the mapping form */
    const char *same[] = {"train.schedule.kind=cosine", "train.schedule.warmup_steps=100",
                          "train.optimizer.kind=sgd", "train.optimizer.momentum=0.9"};
    recipe m;
    load_ok(minimal_recipe, same, 4, &m);
    load_ok(text, sets, 2, &r);
    char *a = recipe_to_yaml(&r), *b = recipe_to_yaml(&m);
    assert_string_equal(a, b);
    free(a);
    free(b);
    recipe_free(&r);
    recipe_free(&m);
    char *typo = malloc(strlen(text) + 8);
    snprintf(typo, strlen(text) + 8, "%s", text);
    memcpy(strstr(typo, "cosine"), "cosime", 6);
    load_bad(typo, sets, 1, XD_EARG, "r.yaml:7");
    free(typo);
}

/* Recipes that continue a run: only the keys of recipe_resume_keys may differ, and the message
 * names both recipes and the line that differs. */
static void test_resume_check(void **state)
{
    (void)state;
    recipe a, b;
    const char *threads[] = {"train.threads=3", "train.eval_every=2"};
    load_ok(minimal_recipe, NULL, 0, &a);
    load_ok(minimal_recipe, threads, 2, &b);
    xd_err e;
    xd_err_clear(&e);
    TU_OK(recipe_check_resume(&b, &a, &e));
    assert_true(recipe_is_resume_key("train.threads"));
    assert_false(recipe_is_resume_key("train.epochs"));
    recipe_free(&b);
    const char *epochs[] = {"train.epochs=3"};
    load_ok(minimal_recipe, epochs, 1, &b);
    assert_int_equal(recipe_check_resume(&b, &a, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "it has 'epochs: 3' where the run has 'epochs: 2'");
    tu_assert_err(&e, XD_EARG, "r.yaml (recipe 'r')");
    recipe_free(&b);
    /* another epoch order is another run */
    const char *keyed[] = {"train.shuffle=keyed"};
    load_ok(minimal_recipe, keyed, 1, &b);
    assert_int_equal(recipe_check_resume(&b, &a, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "shuffle: keyed");
    recipe_free(&a);
    recipe_free(&b);
}

/* Each class of error, with its line and key path. */
static void test_errors(void **state)
{
    (void)state;
    char buf[2048];
#define WITH_LOSSES(extra_top, losses)                                                          \
    (snprintf(buf, sizeof buf,                                                                  \
              "data:\n  path: d.xds\nmodel: \"" MODEL "\"\n%strain:\n  epochs: 2\nlosses:\n%s",  \
              extra_top, losses),                                                               \
     buf)
    /* lines: 1 data, 2 path, 3 model, [teachers...], train, epochs, losses, items */
    const char *teacher1 = "teachers:\n  - name: cnn\n    checkpoint: cnn.safetensors\n";

    /* unknown keys, with suggestions, wherever they are */
    load_bad("data:\n  path: d.xds\nmodle: x\n", NULL, 0, XD_EARG,
             "r.yaml:3: unknown key 'modle' (did you mean 'model'?)");
    load_bad("data:\n  path: d.xds\n  lable: label\n", NULL, 0, XD_EARG,
             "r.yaml:3: unknown key 'data.lable' (did you mean 'label'?)");
    load_bad(WITH_LOSSES(teacher1, "  - kind: kd\n    temprature: 2\n"), NULL, 0, XD_EARG,
             "r.yaml:11: unknown key 'losses.0.temprature' (did you mean 'temperature'?)");
    load_bad(WITH_LOSSES("", "  - kind: ce\n    colour: red\n"), NULL, 0, XD_EARG,
             "r.yaml:8: unknown key 'losses.0.colour'");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n  bacth: 4\n"
             "losses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:5: unknown key 'train.bacth' (did you mean 'batch'?)");
    /* missing required keys name the mapping's line */
    load_bad("seed: 1\ndata:\n  test: x\n", NULL, 0, XD_EARG,
             "r.yaml:2: key 'data': missing required key 'path'");
    load_bad("data:\n  path: d.xds\n", NULL, 0, XD_EARG,
             "r.yaml:1: missing required key 'model' (or 'model_file', or 'init')");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  batch: 4\n"
             "losses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:3: key 'train': missing required key 'epochs'");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\n", NULL, 0, XD_EARG,
             "missing required key 'losses'");
    load_bad(WITH_LOSSES("", "  - weight: 2\n"), NULL, 0, XD_EARG,
             "r.yaml:7: key 'losses.0': missing required key 'kind'");
    load_bad(WITH_LOSSES(teacher1, "  - kind: feature\n    teacher_tap: x\n"), NULL, 0, XD_EARG,
             "r.yaml:10: key 'losses.0': missing required key 'student_tap'");
    /* paths that do not exist */
    load_bad("data:\n  train: t\n  path: nope/x.xds\n", NULL, 0, XD_EARG,
             "r.yaml:3: data.path: nope/x.xds: no such file");
    load_bad(WITH_LOSSES("teachers:\n  - name: cnn\n    checkpoint: gone.safetensors\n",
                         "  - kind: kd\n"),
             NULL, 0, XD_EARG, "r.yaml:6: teachers.0.checkpoint: gone.safetensors: no such file");
    load_bad("data:\n  path: .\n", NULL, 0, XD_EARG, "r.yaml:2: data.path: .: is a folder");
    load_bad("data:\n  path: ''\n", NULL, 0, XD_EARG, "r.yaml:2: data.path: the path is empty");
    load_bad("seed: 9223372036854775807\nseeds: 2\n", NULL, 0, XD_EARG,
             "r.yaml:1: seed: seed + seeds - 1 overflows");
    /* values out of range */
    load_bad(WITH_LOSSES(teacher1, "  - kind: ce\n  - kind: kd\n    temperature: 0\n"), NULL, 0,
             XD_EARG, "r.yaml:12: losses.1.temperature: must be > 0");
    load_bad(WITH_LOSSES(teacher1, "  - kind: hinton\n    alpha: 1.5\n"), NULL, 0, XD_EARG,
             "r.yaml:11: losses.0.alpha: must be in [0, 1]");
    load_bad(WITH_LOSSES("", "  - kind: ce\n    weight: -1\n"), NULL, 0, XD_EARG,
             "r.yaml:8: losses.0.weight: must be >= 0");
    load_bad("seeds: 0\ndata: {path: d.xds}\n", NULL, 0, XD_EARG,
             "r.yaml:1: key 'seeds': 0 is out of range (expected 1 to 64)");
    load_bad("name: 'has space'\n", NULL, 0, XD_EARG,
             "r.yaml:1: name: 'has space' is not a usable");
    load_bad("data:\n  path: d.xds\n  label_fraction: 0.5\n  labels_per_class: 10\n", NULL, 0,
             XD_EARG, "r.yaml:4: data.labels_per_class: give label_fraction or labels_per_class");
    load_bad("data:\n  path: d.xds\n  label: labels\n", NULL, 0, XD_EARG,
             "r.yaml:3: data.label: 'labels' is not a label section");
    load_bad("data:\n  path: d.xds\n  train: a/b\n", NULL, 0, XD_EARG,
             "r.yaml:3: data.train: 'a/b' is not a split name");
    /* enum words */
    load_bad(WITH_LOSSES("", "  - kind: kl\n"), NULL, 0, XD_EARG,
             "r.yaml:7: losses.0.kind: unknown value 'kl' (expected ce, kd, hinton, feature, hint, "
             "attention, dense, contrastive, rationale, dkd, rkd, sp, pkt, cc, nst, fsp, vid, crd, "
             "ab or ofd)");
    load_bad(WITH_LOSSES(teacher1, "  - kind: feature\n    student_tap: feat\n    teacher_tap: x\n"
                                   "    metric: l1\n"),
             NULL, 0, XD_EARG,
             "r.yaml:13: losses.0.metric: unknown value 'l1' (expected mse or cosine)");
    load_bad("data:\n  path: d.xds\n  student_view: video\n", NULL, 0, XD_EARG,
             "r.yaml:3: data.student_view: unknown view 'video'");
    load_bad("data:\n  path: d.xds\n  student_view: text.\n", NULL, 0, XD_EARG,
             "unknown view 'text.'");
    /* keys that do not apply to the kind */
    load_bad(WITH_LOSSES(teacher1, "  - kind: kd\n    alpha: 0.5\n"), NULL, 0, XD_EARG,
             "r.yaml:11: losses.0.alpha: does not apply to kind 'kd' (only to hinton or dkd)");
    load_bad(WITH_LOSSES(teacher1, "  - kind: attention\n    student_tap: r1\n    teacher_tap: x\n"
                                   "    projector: linear\n"),
             NULL, 0, XD_EARG,
             "r.yaml:13: losses.0.projector: does not apply to kind 'attention' (only to feature, "
             "hint, contrastive, cc, vid, ab or ofd)");
    /* teachers */
    load_bad(WITH_LOSSES("", "  - kind: kd\n"), NULL, 0, XD_EARG,
             "r.yaml:7: losses.0: kind 'kd' needs a teacher, and the recipe lists none");
    load_bad(WITH_LOSSES("teachers:\n  - {name: a, checkpoint: cnn.safetensors}\n"
                         "  - {name: b, checkpoint: txt.safetensors}\n",
                         "  - kind: kd\n"),
             NULL, 0, XD_EARG,
             "r.yaml:10: losses.0: kind 'kd' needs 'teacher': the recipe lists 2");
    load_bad(WITH_LOSSES(teacher1, "  - kind: kd\n    teacher: cn\n"), NULL, 0, XD_EARG,
             "r.yaml:11: losses.0.teacher: no teacher named 'cn' (teachers: cnn)");
    load_bad(WITH_LOSSES("teachers:\n  - {name: a, checkpoint: cnn.safetensors}\n"
                         "  - {name: a, checkpoint: txt.safetensors}\n",
                         "  - kind: kd\n"),
             NULL, 0, XD_EARG,
             "r.yaml:6: teachers.1.name: teacher name 'a' is already used by teachers.0 "
             "(r.yaml:5)");
    load_bad(WITH_LOSSES(teacher1, "  - kind: ce\n"), NULL, 0, XD_EARG,
             "r.yaml:5: teachers.0: no loss uses teacher 'cnn'");
    load_bad(WITH_LOSSES("teachers: {name: a}\n", "  - kind: ce\n"), NULL, 0, XD_EARG,
             "r.yaml:4: teachers: expected a list of teachers, got a mapping");
    /* node names the student does not have */
    load_bad(WITH_LOSSES(teacher1, "  - kind: hint\n    student_tap: feet\n    teacher_tap: x\n"),
             NULL, 0, XD_EARG,
             "r.yaml:11: losses.0.student_tap: the student model has no node 'feet'");
    load_bad(WITH_LOSSES("", "  - kind: ce\n    head: logit\n"), NULL, 0, XD_EARG,
             "r.yaml:8: losses.0.head: the student model has no node 'logit'");
    /* stages */
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
             "stages:\n  - epochs: 1\n    train_until: fet\n    losses: [{kind: ce}]\n",
             NULL, 0, XD_EARG,
             "r.yaml:5: stages.0.train_until: the student model has no node 'fet'");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 3}\n"
             "stages:\n  - epochs: 1\n    losses: [{kind: ce}]\n",
             NULL, 0, XD_EARG,
             "r.yaml:3: train.epochs: not allowed together with stages (each stage has its own");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nlosses: [{kind: ce}]\n"
             "stages:\n  - epochs: 1\n    losses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:3: losses: not allowed together with stages");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nstages:\n  - epochs: 1\n", NULL, 0,
             XD_EARG, "r.yaml:4: key 'stages.0': missing required key 'losses'");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nstages: []\n", NULL, 0, XD_EARG,
             "r.yaml:3: stages: the list of stages is empty");
    load_bad(WITH_LOSSES("", ""), NULL, 0, XD_EARG, "r.yaml:6: key 'losses': a value is required");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\nlosses: []\n", NULL, 0,
             XD_EARG, "r.yaml:4: losses: the list of losses is empty");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\nlosses: ce\n", NULL, 0,
             XD_EARG, "r.yaml:4: losses: expected a list of losses, got a scalar");
    /* optimizer and schedule keys go through nn/optim's tables */
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
             "  optimizer:\n    kind: adamw\n    lrr: 0.1\nlosses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:7: train.optimizer.lrr: unknown optimizer key 'lrr'");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
             "  optimizer: {momentum: 0.9}\nlosses: [{kind: ce}]\n",
             NULL, 0, XD_EARG,
             "r.yaml:5: train.optimizer.momentum: optimizer key 'momentum' does not apply to "
             "adamw");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
             "  optimizer: {lr: -1}\nlosses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:5: train.optimizer.lr: optimizer key 'lr': bad value '-1'");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
             "  schedule: {kind: step}\nlosses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:5: train.schedule: schedule step: step_size must be set");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
             "  schedule: adam\nlosses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:5: train.schedule: schedule key 'kind': unknown schedule");
    /* the model */
    load_bad("data: {path: d.xds}\nmodel: \"input h=4 w=4 c=1; linear out=0\"\n", NULL, 0,
             XD_ESHAPE, "r.yaml:2: model: model description: layer 1 'linear'");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nmodel_file: m.txt\n", NULL, 0, XD_EARG,
             "r.yaml:3: model_file: give model or model_file, not both");
    load_bad("data: {path: d.xds}\nmodel_file: missing.model\n", NULL, 0, XD_EIO,
             "r.yaml:2: model_file: missing.model: cannot open");
    load_bad("data: {path: d.xds, student_view: text.en}\nmodel: \"" MODEL "\"\n", NULL, 0,
             XD_EARG, "r.yaml:2: model: the model reads images but data.student_view is 'text.en'");
    /* preprocessing words are checked by their own modules */
    load_bad("data: {path: d.xds, augment: 'pad=2 spin=1'}\n", NULL, 0, XD_EARG,
             "r.yaml:1: data.augment: ");
    load_bad("data:\n  path: d.xds\n  text: 'buckets=-3'\n", NULL, 0, XD_EARG,
             "r.yaml:3: data.text: ");
    load_bad("data:\n  path: d.xds\n  text: 'nmin=4 nmax=2'\n", NULL, 0, XD_EARG,
             "r.yaml:3: data.text: ");
    /* the document itself */
    load_bad("- a\n- b\n", NULL, 0, XD_EARG, "r.yaml:1: a recipe is a mapping of keys");
    load_bad("data: {path: d.xds}\ndata: {path: d.xds}\n", NULL, 0, XD_EFORMAT,
             "r.yaml:2:1: duplicate key 'data' (first at line 1)");
    load_bad("data: [\n", NULL, 0, XD_EFORMAT, "r.yaml:2:1: ");
    recipe r;
    xd_err e;
    assert_int_equal(recipe_load("absent.yaml", NULL, 0, &r, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "absent.yaml: cannot open");
#undef WITH_LOSSES
}

/* Field-by-field equality (the structs hold pointers and padding). */
static void assert_same(const recipe *a, const recipe *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->seed, b->seed);
    assert_int_equal(a->seeds, b->seeds);
    assert_string_equal(a->data.path, b->data.path);
    assert_string_equal(a->data.train, b->data.train);
    assert_string_equal(a->data.test, b->data.test);
    assert_string_equal(a->data.label, b->data.label);
    assert_true(a->data.label_fraction == b->data.label_fraction);
    assert_int_equal(a->data.labels_per_class, b->data.labels_per_class);
    assert_string_equal(a->data.student_view, b->data.student_view);
    assert_string_equal(a->data.augment, b->data.augment);
    assert_string_equal(a->data.text, b->data.text);
    assert_true(a->data.val_fraction == b->data.val_fraction);
    assert_int_equal(a->data.val == NULL, b->data.val == NULL);
    if (a->data.val) assert_string_equal(a->data.val, b->data.val);
    assert_int_equal(a->data.n_eval_sets, b->data.n_eval_sets);
    for (int i = 0; i < a->data.n_eval_sets; i++) {
        assert_string_equal(a->data.eval_sets[i].name, b->data.eval_sets[i].name);
        assert_string_equal(a->data.eval_sets[i].path, b->data.eval_sets[i].path);
        assert_string_equal(a->data.eval_sets[i].split, b->data.eval_sets[i].split);
    }
    assert_string_equal(a->model, b->model);
    assert_int_equal(a->n_teachers, b->n_teachers);
    for (int i = 0; i < a->n_teachers; i++) {
        assert_string_equal(a->teachers[i].name, b->teachers[i].name);
        assert_string_equal(a->teachers[i].checkpoint, b->teachers[i].checkpoint);
        assert_string_equal(a->teachers[i].view, b->teachers[i].view);
        assert_int_equal(a->teachers[i].cache, b->teachers[i].cache);
        assert_int_equal(a->teachers[i].languages, b->teachers[i].languages);
    }
    const recipe_train *x = &a->train, *y = &b->train;
    assert_int_equal(x->epochs, y->epochs);
    assert_int_equal(x->batch, y->batch);
    assert_int_equal(x->shuffle, y->shuffle);
    assert_int_equal(x->opt.kind, y->opt.kind);
    assert_true(x->opt.lr == y->opt.lr);
    assert_true(x->opt.momentum == y->opt.momentum);
    assert_true(x->opt.weight_decay == y->opt.weight_decay);
    assert_true(x->opt.beta1 == y->opt.beta1);
    assert_true(x->opt.beta2 == y->opt.beta2);
    assert_true(x->opt.eps == y->opt.eps);
    assert_int_equal(x->opt.nesterov, y->opt.nesterov);
    assert_true(x->opt.clip_norm == y->opt.clip_norm);
    assert_int_equal(x->sched.kind, y->sched.kind);
    assert_true(x->sched.base_lr == y->sched.base_lr);
    assert_int_equal(x->sched.step_size, y->sched.step_size);
    assert_true(x->sched.gamma == y->sched.gamma);
    assert_int_equal(x->sched.total_steps, y->sched.total_steps);
    assert_true(x->sched.min_lr == y->sched.min_lr);
    assert_int_equal(x->sched.warmup_steps, y->sched.warmup_steps);
    assert_true(x->sched.warmup_start == y->sched.warmup_start);
    assert_int_equal(x->sched_auto_steps, y->sched_auto_steps);
    assert_int_equal(x->eval_every, y->eval_every);
    assert_int_equal(x->threads, y->threads);
    assert_int_equal(a->n_stages, b->n_stages);
    for (int i = 0; i < a->n_stages; i++) {
        const recipe_stage *s = &a->stages[i], *t = &b->stages[i];
        assert_int_equal(s->epochs, t->epochs);
        assert_true((s->train_until == NULL) == (t->train_until == NULL));
        if (s->train_until) assert_string_equal(s->train_until, t->train_until);
        assert_int_equal(s->n_losses, t->n_losses);
        for (int j = 0; j < s->n_losses; j++) {
            const recipe_loss *l = &s->losses[j], *m = &t->losses[j];
            assert_int_equal(l->kind, m->kind);
            assert_true(l->weight == m->weight);
            assert_int_equal(l->teacher, m->teacher);
            assert_true(l->temperature == m->temperature);
            assert_true(l->alpha == m->alpha);
            const char *la[] = {l->head, l->teacher_head, l->student_tap, l->teacher_tap};
            const char *ma[] = {m->head, m->teacher_head, m->student_tap, m->teacher_tap};
            for (int k = 0; k < 4; k++) {
                assert_true((la[k] == NULL) == (ma[k] == NULL));
                if (la[k]) assert_string_equal(la[k], ma[k]);
            }
            assert_int_equal(l->metric, m->metric);
            assert_int_equal(l->projector, m->projector);
            assert_int_equal(l->projector_init, m->projector_init);
            assert_int_equal(l->projector_frozen, m->projector_frozen);
            assert_int_equal(l->learn_temperature, m->learn_temperature);
            assert_true((l->label_map == NULL) == (m->label_map == NULL));
            if (l->label_map) assert_string_equal(l->label_map, m->label_map);
            assert_int_equal(l->n_label_table, m->n_label_table);
            for (int k = 0; k < l->n_label_table; k++)
                assert_int_equal(l->label_table[k], m->label_table[k]);
        }
    }
}

static void round_trip(const char *text, const char *const *sets, int n_sets);

/* Cross-modal keys: a text teacher averaged over languages, a contrastive loss with a learned
 * temperature and a fitted projector, label maps by name and by list. */
static const char *const align_recipe =
    "data: {path: d.xds, label_fraction: 0}\n"
    "model: \"" MODEL "\"\n"
    "teachers:\n"
    "  - {name: txt, checkpoint: txt.safetensors, view: text.*, languages: average}\n"
    "  - {name: cnn, checkpoint: cnn.safetensors}\n"
    "train: {epochs: 1}\n"
    "losses:\n"
    "  - {kind: contrastive, teacher: txt, student_tap: feat, teacher_tap: emb,\n"
    "     temperature: 0.1, learn_temperature: true, projector_init: cca, projector_frozen: yes}\n"
    "  - {kind: kd, teacher: txt, label_map: label.subgroup}\n"
    "  - {kind: hinton, teacher: cnn, label_map: [0, 0, 1, 2]}\n";

static void test_alignment_keys(void **state)
{
    (void)state;
    recipe r;
    load_ok(align_recipe, NULL, 0, &r);
    assert_true(r.data.label_fraction == 0.0f);
    assert_int_equal(r.teachers[0].languages, RECIPE_LANGS_AVERAGE);
    assert_int_equal(r.teachers[1].languages, RECIPE_LANGS_SAMPLE);
    const recipe_loss *l = r.stages[0].losses;
    assert_int_equal(l[0].kind, RECIPE_LOSS_CONTRASTIVE);
    assert_true(l[0].temperature == 0.1f);
    assert_int_equal(l[0].learn_temperature, 1);
    assert_int_equal(l[0].projector_init, RECIPE_INIT_CCA);
    assert_int_equal(l[0].projector_frozen, 1);
    assert_string_equal(l[1].label_map, "label.subgroup");
    assert_null(l[1].label_table);
    assert_int_equal(l[2].n_label_table, 4);
    assert_int_equal(l[2].label_table[3], 2);
    recipe_free(&r);
    /* the contrastive temperature defaults to CLIP's 0.07 */
    load_ok("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
            "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1}\n"
            "losses:\n  - {kind: contrastive, student_tap: feat, teacher_tap: feat}\n",
            NULL, 0, &r);
    assert_true(r.stages[0].losses[0].temperature == 0.07f);
    recipe_free(&r);
    round_trip(align_recipe, NULL, 0);
#define ALIGN_BAD(loss, want)                                                                    \
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"                                      \
             "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1}\n"          \
             "losses:\n  - " loss "\n",                                                        \
             NULL, 0, XD_EARG, want)
    ALIGN_BAD("{kind: feature, student_tap: feat, teacher_tap: feat, label_map: label.x}",
              "r.yaml:6: losses.0.label_map: does not apply to kind 'feature' (only to kd or hinton)");
    ALIGN_BAD("{kind: kd, learn_temperature: true}",
              "r.yaml:6: losses.0.learn_temperature: does not apply to kind 'kd'");
    ALIGN_BAD("{kind: kd, label_map: subgroup}",
              "r.yaml:6: losses.0.label_map: 'subgroup': expected a label section");
    ALIGN_BAD("{kind: kd, label_map: [0, -1]}", "r.yaml:6: key 'losses.0.label_map.1': -1 is out of range");
    ALIGN_BAD("{kind: kd, label_map: []}", "r.yaml:6: losses.0.label_map: 0 entries");
    ALIGN_BAD("{kind: feature, student_tap: feat, teacher_tap: feat, projector_init: pca}",
              "r.yaml:6: losses.0.projector_init: ");
    ALIGN_BAD("{kind: hint, student_tap: feat, teacher_tap: feat, projector_frozen: true}",
              "r.yaml:6: losses.0.projector_frozen: a frozen projector needs projector_init");
    ALIGN_BAD("{kind: hint, student_tap: feat, teacher_tap: feat, projector: none, "
              "projector_init: cca, projector_frozen: true}",
              "r.yaml:6: losses.0.projector_frozen: there is no projector");
    ALIGN_BAD("{kind: feature, student_tap: feat, teacher_tap: feat, projector: mlp, "
              "projector_init: procrustes}",
              "r.yaml:6: losses.0: projector_init procrustes fits a linear map");
#undef ALIGN_BAD
    /* no label and nothing that reads a teacher; a contrastive loss on batches of 1 */
    load_bad("data: {path: d.xds, label_fraction: 0}\nmodel: \"" MODEL "\"\n"
             "train: {epochs: 1}\nlosses:\n  - {kind: ce}\n",
             NULL, 0, XD_EARG, "r.yaml:1: data.label_fraction: no label is kept");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
             "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1, batch: 1}\n"
             "losses:\n  - {kind: contrastive, student_tap: feat, teacher_tap: feat}\n",
             NULL, 0, XD_EARG, "r.yaml:6: losses.0: a contrastive loss needs batches of 2");
    /* a segment run reads the scenes at the model's size */
    load_bad("task: segment\ndata: {path: d.xds, augment: \"size=8\"}\nmodel: \"" MODEL "\"\n"
             "train: {epochs: 1}\nlosses:\n  - {kind: ce}\n",
             NULL, 0, XD_EARG, "r.yaml:2: data.augment: task: segment reads the scenes at the model's");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
             "teachers: [{name: t, checkpoint: cnn.safetensors, languages: average}]\n"
             "train: {epochs: 1}\nlosses:\n  - {kind: kd}\n",
             NULL, 0, XD_EARG,
             "r.yaml:3: teachers.0.languages: 'average' needs the view text.* (this teacher reads "
             "'image')");
}

static void round_trip(const char *text, const char *const *sets, int n_sets)
{
    recipe a, b;
    load_ok(text, sets, n_sets, &a);
    char *yaml = recipe_to_yaml(&a);
    xd_err e;
    if (recipe_parse("printed.yaml", yaml, strlen(yaml), NULL, 0, 0, &b, &e) != XD_OK)
        fail_msg("printed recipe does not load: %s\n%s", e.msg, yaml);
    assert_same(&a, &b);
    /* printing is a fixed point */
    char *again = recipe_to_yaml(&b);
    assert_string_equal(yaml, again);
    free(again);
    free(yaml);
    recipe_free(&a);
    recipe_free(&b);
}

/* A wrong head name is found from the description alone: the student's parameters (here 2^28 -
 * 2^20 floats, once 2 GiB taken and filled before the check) are never allocated, so the answer
 * comes at once; a model past the limits is refused by its size. */
static void test_model_checked_without_memory(void **state)
{
    (void)state;
    const char *big = "name: big\ndata: {path: d.xds}\n"
                      "model: \"input h=1 w=1 c=255; linear out=1048576 bias=0 name=logits head\"\n"
                      "train: {epochs: 1}\nlosses: [{kind: ce, head: logit}]\n";
    alarm(2);
    load_bad(big, NULL, 0, XD_EARG, "r.yaml:5: losses.0.head: the student model has no node 'logit'");
    alarm(0);
    const char *huge = "name: huge\ndata: {path: d.xds}\n"
                       "model: \"input h=1 w=1 c=1000; linear out=1000000 name=logits head\"\n"
                       "train: {epochs: 1}\nlosses: [{kind: ce, head: logit}]\n";
    load_bad(huge, NULL, 0, XD_ESHAPE, "r.yaml:3: model: model description: layer 1 'linear' "
                                       "(logits): its weight passes the limit");
}

/* data.text is cut into items the one way the feed cuts it (blanks of every kind, ';', ','):
 * once the recipe took "a=1\nb=2" that the feed refused, and refused "a=1;b=2" that it took. */
static void test_text_items_cut_like_the_feed(void **state)
{
    (void)state;
    static const char *const texts[] = {"buckets=1024;nmax=3", "buckets=1024\\nnmax=3",
                                        "buckets=1024,\\fnmax=3\\v"};
    for (int i = 0; i < 3; i++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml,
                 "name: t\ndata: {path: d.xds, student_view: text.en, text: \"%s\"}\n"
                 "model: \"input tokens=8; embbag vocab=1040 out=4; linear out=3 head\"\n"
                 "train: {epochs: 1}\nlosses: [{kind: ce}]\n", texts[i]);
        recipe r;
        load_ok(yaml, NULL, 0, &r);
        txt_config c = txt_config_default();
        xd_err e;
        TU_OK(txt_config_parse_words(&c, r.data.text, &e));
        assert_int_equal(c.buckets, 1024);
        assert_int_equal(c.nmax, 3);
        recipe_free(&r);
    }
    load_bad("name: t\ndata: {path: d.xds, student_view: text.en, text: \"buckets=1024\\nnmax\"}\n"
             "model: \"input tokens=8; embbag vocab=1040 out=4; linear out=3 head\"\n"
             "train: {epochs: 1}\nlosses: [{kind: ce}]\n",
             NULL, 0, XD_EARG, "r.yaml:2: data.text: text option 'nmax': expected key=value");
}

/* A 4 MiB one-line value: the message quotes a short excerpt and still gives line and reason. */
static void test_huge_value_short_message(void **state)
{
    (void)state;
    size_t n = (size_t)4 << 20;
    char *yaml = malloc(n + 64);
    memcpy(yaml, "name: ", 6);
    memset(yaml + 6, 'x', n - 100);
    strcpy(yaml + 6 + n - 100, "\ndata: {path: d.xds}\n");
    char want[128];
    snprintf(want, sizeof want, "r.yaml:1: name: '%.*s...' is not a usable name", XD_EXCERPT_MAX,
             yaml + 6);
    load_bad(yaml, NULL, 0, XD_EARG, want);
    free(yaml);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(full_recipe, NULL, 0);
    round_trip(minimal_recipe, NULL, 0);
    const char *sets[] = {"train.schedule.kind=step", "train.schedule.step_size=1000",
                          "train.optimizer.clip_norm=1.5", "data.augment='size=8 flip=0.25'",
                          "name=x.y"};
    round_trip(minimal_recipe, sets, 5);
    /* train.shuffle prints only when not the default, so the recipes of stored runs read as before */
    const char *keyed[] = {"train.shuffle=keyed"}, *stored[] = {"train.shuffle=stored"};
    round_trip(minimal_recipe, keyed, 1);
    recipe k, st;
    load_ok(minimal_recipe, keyed, 1, &k);
    load_ok(minimal_recipe, stored, 1, &st);
    assert_int_equal(k.train.shuffle, RECIPE_SHUFFLE_KEYED);
    char *yk = recipe_to_yaml(&k), *ys = recipe_to_yaml(&st);
    assert_non_null(strstr(yk, "\n  shuffle: keyed\n"));
    assert_null(strstr(ys, "shuffle"));
    free(yk);
    free(ys);
    recipe_free(&k);
    recipe_free(&st);
    load_bad(minimal_recipe, (const char *[]){"train.shuffle=random"}, 1, XD_EARG, "stored");
    /* strings that need escapes in YAML, and a model over several lines */
    round_trip("name: quoted\n"
               "data: {path: d.xds, augment: \"pad=1\"}\n"
               "model: |\n"
               "  input h=4 w=4 c=1\n"
               "  flatten\n"
               "  linear out=3 name=logits head\n"
               "train: {epochs: 1, optimizer: {kind: adamw, lr: 3e-4, weight_decay: 0.05}}\n"
               "losses: [{kind: ce, weight: 0.1}]\n",
               NULL, 0);
    /* the printed text is plain YAML with the values in it */
    recipe r;
    load_ok(minimal_recipe, NULL, 0, &r);
    char *yaml = recipe_to_yaml(&r);
    assert_non_null(strstr(yaml, "\nname: \"r\"\n"));
    assert_non_null(strstr(yaml, "  epochs: 2\n"));
    assert_non_null(strstr(yaml, "optimizer: {kind: adamw, lr: 0.001, weight_decay: 0.01, "));
    assert_non_null(strstr(yaml, "losses:\n  - kind: ce\n    weight: 1\n"));
    free(yaml);
    /* recipe_save writes it; loading the saved file gives the same recipe */
    xd_err e;
    TU_OK(recipe_save(&r, "saved.yaml", &e));
    recipe s;
    TU_OK(recipe_load("saved.yaml", NULL, 0, &s, &e));
    assert_same(&r, &s);
    recipe_free(&s);
    /* metadata from another machine: paths need not exist there */
    yaml = recipe_to_yaml(&r);
    char *moved = malloc(strlen(yaml) + 16);
    char *at = strstr(yaml, "d.xds");
    assert_non_null(at);
    sprintf(moved, "%.*sgone.xds%s", (int)(at - yaml), yaml, at + 5);
    assert_int_equal(recipe_parse("meta", moved, strlen(moved), NULL, 0, 0, &s, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "meta:7: data.path: gone.xds: no such file");
    TU_OK(recipe_parse("meta", moved, strlen(moved), NULL, 0, RECIPE_NO_FILE_CHECKS, &s, &e));
    assert_string_equal(s.data.path, "gone.xds");
    recipe_free(&s);
    free(moved);
    free(yaml);
    recipe_free(&r);
}

/* The validation keys: bound, printed only when given (a recipe without them prints what it
 * always did), read back the same; their errors name the key. */
static void test_validation_keys(void **state)
{
    (void)state;
    const char *text = "data:\n  path: d.xds\n  val_fraction: 0.1\n  eval_sets:\n"
                       "    - {name: other, path: d.xds}\n    - {name: b-2, path: d.xds, split: s2}\n"
                       "model: \"" MODEL "\"\ntrain: {epochs: 1}\nlosses: [{kind: ce}]\n";
    recipe r;
    load_ok(text, NULL, 0, &r);
    assert_true(r.data.val_fraction == 0.1f);
    assert_null(r.data.val);
    assert_int_equal(r.data.n_eval_sets, 2);
    assert_string_equal(r.data.eval_sets[0].split, "test");
    assert_string_equal(r.data.eval_sets[1].split, "s2");
    recipe_free(&r);
    round_trip(text, NULL, 0);
    const char *named = "data: {path: d.xds, val: dev}\nmodel: \"" MODEL "\"\n"
                        "train: {epochs: 1}\nlosses: [{kind: ce}]\n";
    round_trip(named, NULL, 0);
    load_ok(minimal_recipe, NULL, 0, &r);
    char *yaml = recipe_to_yaml(&r);
    assert_null(strstr(yaml, "val_fraction"));
    assert_null(strstr(yaml, "\n  val:"));
    assert_null(strstr(yaml, "eval_sets"));
    free(yaml);
    recipe_free(&r);
    char buf[512];
#define WITH_DATA(extra)                                                                        \
    (snprintf(buf, sizeof buf, "data:\n  path: d.xds\n%smodel: \"" MODEL "\"\n"                 \
              "train: {epochs: 1}\nlosses: [{kind: ce}]\n", extra), buf)
    load_bad(WITH_DATA("  val_fraction: 1\n"), NULL, 0, XD_EARG,
             "r.yaml:3: data.val_fraction: must be below 1");
    load_bad(WITH_DATA("  val_fraction: 0.1\n  val: dev\n"), NULL, 0, XD_EARG,
             "r.yaml:4: data.val: give val (a split) or val_fraction");
    load_bad(WITH_DATA("  val: test\n"), NULL, 0, XD_EARG,
             "r.yaml:3: data.val: the validation split must be neither the training nor the test");
    load_bad(WITH_DATA("  val: \"a b\"\n"), NULL, 0, XD_EARG, "'a b' is not a split name");
    load_bad(WITH_DATA("  eval_sets: [{name: a.b, path: d.xds}]\n"), NULL, 0, XD_EARG,
             "'a.b' is not a usable name");
    load_bad(WITH_DATA("  eval_sets: [{name: a, path: d.xds}, {name: a, path: d.xds}]\n"), NULL, 0,
             XD_EARG, "eval set name 'a' is already used by data.eval_sets.0");
    load_bad(WITH_DATA("  eval_sets: [{name: a}]\n"), NULL, 0, XD_EARG, "missing required key 'path'");
    load_bad(WITH_DATA("  eval_sets: [{name: a, path: nowhere.xds}]\n"), NULL, 0, XD_EARG,
             "nowhere.xds: no such file");
    load_bad(WITH_DATA("  eval_sets: [{name: a, path: d.xds, splt: x}]\n"), NULL, 0, XD_EARG,
             "unknown key 'data.eval_sets.0.splt' (did you mean 'split'?)");
#undef WITH_DATA
}

/* class_weight: on ce, kd and hinton only, printed only when set, read back the same; not for a
 * segment task. */
static void test_class_weight(void **state)
{
    (void)state;
    const char *text = "data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
                       "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1}\n"
                       "losses:\n  - {kind: ce, class_weight: balanced}\n"
                       "  - {kind: hinton, class_weight: balanced}\n  - {kind: kd}\n";
    recipe r;
    load_ok(text, NULL, 0, &r);
    const recipe_loss *l = r.stages[0].losses;
    assert_int_equal(l[0].class_weight, RECIPE_CLASS_WEIGHT_BALANCED);
    assert_int_equal(l[1].class_weight, RECIPE_CLASS_WEIGHT_BALANCED);
    assert_int_equal(l[2].class_weight, RECIPE_CLASS_WEIGHT_NONE);
    char *yaml = recipe_to_yaml(&r);
    const char *first = strstr(yaml, "class_weight: balanced");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "class_weight: balanced"));
    assert_null(strstr(yaml, "class_weight: none"));
    free(yaml);
    recipe_free(&r);
    round_trip(text, NULL, 0);
    load_ok(minimal_recipe, NULL, 0, &r);
    yaml = recipe_to_yaml(&r);
    assert_null(strstr(yaml, "class_weight"));
    free(yaml);
    recipe_free(&r);
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
             "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1}\n"
             "losses:\n  - {kind: feature, student_tap: feat, teacher_tap: feat, "
             "class_weight: balanced}\n",
             NULL, 0, XD_EARG,
             "r.yaml:6: losses.0.class_weight: does not apply to kind 'feature' (only to ce, kd or "
             "hinton)");
    load_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\n"
             "losses:\n  - {kind: ce, class_weight: inverse}\n",
             NULL, 0, XD_EARG, "r.yaml:5: losses.0.class_weight: ");
    load_bad("task: segment\ndata: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\n"
             "losses:\n  - {kind: ce,\n     class_weight: balanced}\n",
             NULL, 0, XD_EARG,
             "r.yaml:7: losses.0.class_weight: does not apply to task: segment");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_full_recipe, fixture_setup),
        cmocka_unit_test_setup(test_defaults, fixture_setup),
        cmocka_unit_test_setup(test_overrides, fixture_setup),
        cmocka_unit_test_setup(test_overrides_on_kind_words, fixture_setup),
        cmocka_unit_test_setup(test_resume_check, fixture_setup),
        cmocka_unit_test_setup(test_errors, fixture_setup),
        cmocka_unit_test_setup(test_round_trip, fixture_setup),
        cmocka_unit_test_setup(test_model_checked_without_memory, fixture_setup),
        cmocka_unit_test_setup(test_text_items_cut_like_the_feed, fixture_setup),
        cmocka_unit_test_setup(test_huge_value_short_message, fixture_setup),
        cmocka_unit_test_setup(test_alignment_keys, fixture_setup),
        cmocka_unit_test_setup(test_validation_keys, fixture_setup),
        cmocka_unit_test_setup(test_class_weight, fixture_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
