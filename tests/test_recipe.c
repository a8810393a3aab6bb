/* distill/recipe: binding a full recipe, defaults, --set overrides, the resume check, and every
 * class of error with its line and key path. The keys of alignment, validation and class weights,
 * and the print-back round trip, are in test_recipe_keys.c. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/recipe.h"
#include "tests/support/recipefix.h"

#define MODEL RF_MODEL

static void test_full_recipe(void **state)
{
    (void)state;
    recipe r;
    rf_ok(rf_full_recipe, NULL, 0, &r);
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

static void test_defaults(void **state)
{
    (void)state;
    recipe r;
    rf_ok(rf_minimal_recipe, NULL, 0, &r);
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
    rf_ok("data: {path: d.xds}\n"
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
    rf_ok("data: {path: d.xds, student_view: text.ko, text: 'nmin=1 unit=codepoint'}\n"
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
    rf_ok(rf_minimal_recipe, sets, 6, &r);
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
    rf_bad(rf_minimal_recipe, bad1, 1, XD_EARG,
           "--set train.epochs: key 'train.epochs': expected an integer, got 'ten'");
    const char *bad2[] = {"train.epoch=3"};
    rf_bad(rf_minimal_recipe, bad2, 1, XD_EARG,
           "--set train.epoch: unknown key 'train.epoch' (did you mean 'epochs'?)");
    const char *bad3[] = {"losses.1.weight=2"};
    rf_bad(rf_minimal_recipe, bad3, 1, XD_EARG, "--set losses.1.weight: 'losses' holds a sequence");
    const char *bad4[] = {"train=3"};
    rf_bad(rf_minimal_recipe, bad4, 1, XD_EARG, "'train' is a mapping; only scalars can be set");
    const char *bad5[] = {"losses.0.temperature=2"};
    rf_bad(rf_minimal_recipe, bad5, 1, XD_EARG,
           "--set losses.0.temperature: losses.0.temperature: does not apply to kind 'ce'");
    const char *bad6[] = {"data.label_fraction=1.5"};
    rf_bad(rf_minimal_recipe, bad6, 1, XD_EARG,
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
    rf_ok(text, sets, 2, &r);
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
    rf_ok(rf_minimal_recipe, same, 4, &m);
    rf_ok(text, sets, 2, &r);
    char *a = recipe_to_yaml(&r), *b = recipe_to_yaml(&m);
    assert_string_equal(a, b);
    free(a);
    free(b);
    recipe_free(&r);
    recipe_free(&m);
    char *typo = malloc(strlen(text) + 8);
    snprintf(typo, strlen(text) + 8, "%s", text);
    memcpy(strstr(typo, "cosine"), "cosime", 6);
    rf_bad(typo, sets, 1, XD_EARG, "r.yaml:7");
    free(typo);
}

/* Recipes that continue a run: only the keys of recipe_resume_keys may differ, and the message
 * names both recipes and the line that differs. */
static void test_resume_check(void **state)
{
    (void)state;
    recipe a, b;
    const char *threads[] = {"train.threads=3", "train.eval_every=2"};
    rf_ok(rf_minimal_recipe, NULL, 0, &a);
    rf_ok(rf_minimal_recipe, threads, 2, &b);
    xd_err e;
    xd_err_clear(&e);
    TU_OK(recipe_check_resume(&b, &a, &e));
    assert_true(recipe_is_resume_key("train.threads"));
    assert_false(recipe_is_resume_key("train.epochs"));
    recipe_free(&b);
    const char *epochs[] = {"train.epochs=3"};
    rf_ok(rf_minimal_recipe, epochs, 1, &b);
    assert_int_equal(recipe_check_resume(&b, &a, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "it has 'epochs: 3' where the run has 'epochs: 2'");
    tu_assert_err(&e, XD_EARG, "r.yaml (recipe 'r')");
    recipe_free(&b);
    /* another epoch order is another run */
    const char *keyed[] = {"train.shuffle=keyed"};
    rf_ok(rf_minimal_recipe, keyed, 1, &b);
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
    rf_bad("data:\n  path: d.xds\nmodle: x\n", NULL, 0, XD_EARG,
           "r.yaml:3: unknown key 'modle' (did you mean 'model'?)");
    rf_bad("data:\n  path: d.xds\n  lable: label\n", NULL, 0, XD_EARG,
           "r.yaml:3: unknown key 'data.lable' (did you mean 'label'?)");
    rf_bad(WITH_LOSSES(teacher1, "  - kind: kd\n    temprature: 2\n"), NULL, 0, XD_EARG,
           "r.yaml:11: unknown key 'losses.0.temprature' (did you mean 'temperature'?)");
    rf_bad(WITH_LOSSES("", "  - kind: ce\n    colour: red\n"), NULL, 0, XD_EARG,
           "r.yaml:8: unknown key 'losses.0.colour'");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n  bacth: 4\n"
           "losses: [{kind: ce}]\n",
           NULL, 0, XD_EARG, "r.yaml:5: unknown key 'train.bacth' (did you mean 'batch'?)");
    /* missing required keys name the mapping's line */
    rf_bad("seed: 1\ndata:\n  test: x\n", NULL, 0, XD_EARG,
           "r.yaml:2: key 'data': missing required key 'path'");
    rf_bad("data:\n  path: d.xds\n", NULL, 0, XD_EARG,
           "r.yaml:1: missing required key 'model' (or 'model_file', or 'init')");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  batch: 4\n"
           "losses: [{kind: ce}]\n",
           NULL, 0, XD_EARG, "r.yaml:3: key 'train': missing required key 'epochs'");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\n", NULL, 0, XD_EARG,
           "missing required key 'losses'");
    rf_bad(WITH_LOSSES("", "  - weight: 2\n"), NULL, 0, XD_EARG,
           "r.yaml:7: key 'losses.0': missing required key 'kind'");
    rf_bad(WITH_LOSSES(teacher1, "  - kind: feature\n    teacher_tap: x\n"), NULL, 0, XD_EARG,
           "r.yaml:10: key 'losses.0': missing required key 'student_tap'");
    /* paths that do not exist */
    rf_bad("data:\n  train: t\n  path: nope/x.xds\n", NULL, 0, XD_EARG,
           "r.yaml:3: data.path: nope/x.xds: no such file");
    rf_bad(WITH_LOSSES("teachers:\n  - name: cnn\n    checkpoint: gone.safetensors\n",
                         "  - kind: kd\n"),
           NULL, 0, XD_EARG, "r.yaml:6: teachers.0.checkpoint: gone.safetensors: no such file");
    rf_bad("data:\n  path: .\n", NULL, 0, XD_EARG, "r.yaml:2: data.path: .: is a folder");
    rf_bad("data:\n  path: ''\n", NULL, 0, XD_EARG, "r.yaml:2: data.path: the path is empty");
    rf_bad("seed: 9223372036854775807\nseeds: 2\n", NULL, 0, XD_EARG,
           "r.yaml:1: seed: seed + seeds - 1 overflows");
    /* values out of range */
    rf_bad(WITH_LOSSES(teacher1, "  - kind: ce\n  - kind: kd\n    temperature: 0\n"), NULL, 0,
           XD_EARG, "r.yaml:12: losses.1.temperature: must be > 0");
    rf_bad(WITH_LOSSES(teacher1, "  - kind: hinton\n    alpha: 1.5\n"), NULL, 0, XD_EARG,
           "r.yaml:11: losses.0.alpha: must be in [0, 1]");
    rf_bad(WITH_LOSSES("", "  - kind: ce\n    weight: -1\n"), NULL, 0, XD_EARG,
           "r.yaml:8: losses.0.weight: must be >= 0");
    rf_bad("seeds: 0\ndata: {path: d.xds}\n", NULL, 0, XD_EARG,
           "r.yaml:1: key 'seeds': 0 is out of range (expected 1 to 64)");
    rf_bad("name: 'has space'\n", NULL, 0, XD_EARG,
           "r.yaml:1: name: 'has space' is not a usable");
    rf_bad("data:\n  path: d.xds\n  label_fraction: 0.5\n  labels_per_class: 10\n", NULL, 0,
           XD_EARG, "r.yaml:4: data.labels_per_class: give label_fraction or labels_per_class");
    rf_bad("data:\n  path: d.xds\n  label: labels\n", NULL, 0, XD_EARG,
           "r.yaml:3: data.label: 'labels' is not a label section");
    rf_bad("data:\n  path: d.xds\n  train: a/b\n", NULL, 0, XD_EARG,
           "r.yaml:3: data.train: 'a/b' is not a split name");
    /* enum words */
    rf_bad(WITH_LOSSES("", "  - kind: kl\n"), NULL, 0, XD_EARG,
           "r.yaml:7: losses.0.kind: unknown value 'kl' (expected ce, kd, hinton, feature, hint, "
           "attention, dense, contrastive, rationale, dkd, rkd, sp, pkt, cc, nst, fsp, vid, crd, "
           "ab or ofd)");
    rf_bad(WITH_LOSSES(teacher1, "  - kind: feature\n    student_tap: feat\n    teacher_tap: x\n"
                                   "    metric: l1\n"),
           NULL, 0, XD_EARG,
           "r.yaml:13: losses.0.metric: unknown value 'l1' (expected mse or cosine)");
    rf_bad("data:\n  path: d.xds\n  student_view: video\n", NULL, 0, XD_EARG,
           "r.yaml:3: data.student_view: unknown view 'video'");
    rf_bad("data:\n  path: d.xds\n  student_view: text.\n", NULL, 0, XD_EARG,
           "unknown view 'text.'");
    /* keys that do not apply to the kind */
    rf_bad(WITH_LOSSES(teacher1, "  - kind: kd\n    alpha: 0.5\n"), NULL, 0, XD_EARG,
           "r.yaml:11: losses.0.alpha: does not apply to kind 'kd' (only to hinton or dkd)");
    rf_bad(WITH_LOSSES(teacher1, "  - kind: attention\n    student_tap: r1\n    teacher_tap: x\n"
                                   "    projector: linear\n"),
           NULL, 0, XD_EARG,
           "r.yaml:13: losses.0.projector: does not apply to kind 'attention' (only to feature, "
           "hint, contrastive, cc, vid, ab or ofd)");
    /* teachers */
    rf_bad(WITH_LOSSES("", "  - kind: kd\n"), NULL, 0, XD_EARG,
           "r.yaml:7: losses.0: kind 'kd' needs a teacher, and the recipe lists none");
    rf_bad(WITH_LOSSES("teachers:\n  - {name: a, checkpoint: cnn.safetensors}\n"
                         "  - {name: b, checkpoint: txt.safetensors}\n",
                         "  - kind: kd\n"),
           NULL, 0, XD_EARG,
           "r.yaml:10: losses.0: kind 'kd' needs 'teacher': the recipe lists 2");
    rf_bad(WITH_LOSSES(teacher1, "  - kind: kd\n    teacher: cn\n"), NULL, 0, XD_EARG,
           "r.yaml:11: losses.0.teacher: no teacher named 'cn' (teachers: cnn)");
    rf_bad(WITH_LOSSES("teachers:\n  - {name: a, checkpoint: cnn.safetensors}\n"
                         "  - {name: a, checkpoint: txt.safetensors}\n",
                         "  - kind: kd\n"),
           NULL, 0, XD_EARG,
           "r.yaml:6: teachers.1.name: teacher name 'a' is already used by teachers.0 "
           "(r.yaml:5)");
    rf_bad(WITH_LOSSES(teacher1, "  - kind: ce\n"), NULL, 0, XD_EARG,
           "r.yaml:5: teachers.0: no loss uses teacher 'cnn'");
    rf_bad(WITH_LOSSES("teachers: {name: a}\n", "  - kind: ce\n"), NULL, 0, XD_EARG,
           "r.yaml:4: teachers: expected a list of teachers, got a mapping");
    /* node names the student does not have */
    rf_bad(WITH_LOSSES(teacher1, "  - kind: hint\n    student_tap: feet\n    teacher_tap: x\n"),
           NULL, 0, XD_EARG,
           "r.yaml:11: losses.0.student_tap: the student model has no node 'feet'");
    rf_bad(WITH_LOSSES("", "  - kind: ce\n    head: logit\n"), NULL, 0, XD_EARG,
           "r.yaml:8: losses.0.head: the student model has no node 'logit'");
    /* stages */
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
           "stages:\n  - epochs: 1\n    train_until: fet\n    losses: [{kind: ce}]\n",
           NULL, 0, XD_EARG,
           "r.yaml:5: stages.0.train_until: the student model has no node 'fet'");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 3}\n"
           "stages:\n  - epochs: 1\n    losses: [{kind: ce}]\n",
           NULL, 0, XD_EARG,
           "r.yaml:3: train.epochs: not allowed together with stages (each stage has its own");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nlosses: [{kind: ce}]\n"
           "stages:\n  - epochs: 1\n    losses: [{kind: ce}]\n",
           NULL, 0, XD_EARG, "r.yaml:3: losses: not allowed together with stages");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nstages:\n  - epochs: 1\n", NULL, 0,
           XD_EARG, "r.yaml:4: key 'stages.0': missing required key 'losses'");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nstages: []\n", NULL, 0, XD_EARG,
           "r.yaml:3: stages: the list of stages is empty");
    rf_bad(WITH_LOSSES("", ""), NULL, 0, XD_EARG, "r.yaml:6: key 'losses': a value is required");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\nlosses: []\n", NULL, 0,
           XD_EARG, "r.yaml:4: losses: the list of losses is empty");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\nlosses: ce\n", NULL, 0,
           XD_EARG, "r.yaml:4: losses: expected a list of losses, got a scalar");
    /* optimizer and schedule keys go through nn/optim's tables */
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
           "  optimizer:\n    kind: adamw\n    lrr: 0.1\nlosses: [{kind: ce}]\n",
           NULL, 0, XD_EARG, "r.yaml:7: train.optimizer.lrr: unknown optimizer key 'lrr'");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
           "  optimizer: {momentum: 0.9}\nlosses: [{kind: ce}]\n",
           NULL, 0, XD_EARG,
           "r.yaml:5: train.optimizer.momentum: optimizer key 'momentum' does not apply to "
           "adamw");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
           "  optimizer: {lr: -1}\nlosses: [{kind: ce}]\n",
           NULL, 0, XD_EARG, "r.yaml:5: train.optimizer.lr: optimizer key 'lr': bad value '-1'");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
           "  schedule: {kind: step}\nlosses: [{kind: ce}]\n",
           NULL, 0, XD_EARG, "r.yaml:5: train.schedule: schedule step: step_size must be set");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain:\n  epochs: 1\n"
           "  schedule: adam\nlosses: [{kind: ce}]\n",
           NULL, 0, XD_EARG, "r.yaml:5: train.schedule: schedule key 'kind': unknown schedule");
    /* the model */
    rf_bad("data: {path: d.xds}\nmodel: \"input h=4 w=4 c=1; linear out=0\"\n", NULL, 0,
           XD_ESHAPE, "r.yaml:2: model: model description: layer 1 'linear'");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\nmodel_file: m.txt\n", NULL, 0, XD_EARG,
           "r.yaml:3: model_file: give model or model_file, not both");
    rf_bad("data: {path: d.xds}\nmodel_file: missing.model\n", NULL, 0, XD_EIO,
           "r.yaml:2: model_file: missing.model: cannot open");
    rf_bad("data: {path: d.xds, student_view: text.en}\nmodel: \"" MODEL "\"\n", NULL, 0,
           XD_EARG, "r.yaml:2: model: the model reads images but data.student_view is 'text.en'");
    /* preprocessing words are checked by their own modules */
    rf_bad("data: {path: d.xds, augment: 'pad=2 spin=1'}\n", NULL, 0, XD_EARG,
           "r.yaml:1: data.augment: ");
    rf_bad("data:\n  path: d.xds\n  text: 'buckets=-3'\n", NULL, 0, XD_EARG,
           "r.yaml:3: data.text: ");
    rf_bad("data:\n  path: d.xds\n  text: 'nmin=4 nmax=2'\n", NULL, 0, XD_EARG,
           "r.yaml:3: data.text: ");
    /* the document itself */
    rf_bad("- a\n- b\n", NULL, 0, XD_EARG, "r.yaml:1: a recipe is a mapping of keys");
    rf_bad("data: {path: d.xds}\ndata: {path: d.xds}\n", NULL, 0, XD_EFORMAT,
           "r.yaml:2:1: duplicate key 'data' (first at line 1)");
    rf_bad("data: [\n", NULL, 0, XD_EFORMAT, "r.yaml:2:1: ");
    recipe r;
    xd_err e;
    assert_int_equal(recipe_load("absent.yaml", NULL, 0, &r, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "absent.yaml: cannot open");
#undef WITH_LOSSES
}

/* Field-by-field equality (the structs hold pointers and padding). */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_full_recipe, rf_files),
        cmocka_unit_test_setup(test_defaults, rf_files),
        cmocka_unit_test_setup(test_overrides, rf_files),
        cmocka_unit_test_setup(test_overrides_on_kind_words, rf_files),
        cmocka_unit_test_setup(test_resume_check, rf_files),
        cmocka_unit_test_setup(test_errors, rf_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
