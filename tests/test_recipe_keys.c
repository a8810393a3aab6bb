/* distill/recipe: the print-back round trip (every recipe bound again from what it prints), the
 * alignment, validation and class-weight keys, a model checked without memory, text items cut as
 * the feed cuts them, and a short message for a huge value. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distill/recipe.h"
#include "modalities/text/config.h"
#include "tests/support/recipefix.h"

#define MODEL RF_MODEL

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
    rf_ok(align_recipe, NULL, 0, &r);
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
    rf_ok("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
          "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1}\n"
          "losses:\n  - {kind: contrastive, student_tap: feat, teacher_tap: feat}\n",
          NULL, 0, &r);
    assert_true(r.stages[0].losses[0].temperature == 0.07f);
    recipe_free(&r);
    round_trip(align_recipe, NULL, 0);
#define ALIGN_BAD(loss, want)                                                                    \
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"                                      \
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
    rf_bad("data: {path: d.xds, label_fraction: 0}\nmodel: \"" MODEL "\"\n"
           "train: {epochs: 1}\nlosses:\n  - {kind: ce}\n",
           NULL, 0, XD_EARG, "r.yaml:1: data.label_fraction: no label is kept");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
           "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1, batch: 1}\n"
           "losses:\n  - {kind: contrastive, student_tap: feat, teacher_tap: feat}\n",
           NULL, 0, XD_EARG, "r.yaml:6: losses.0: a contrastive loss needs batches of 2");
    /* a segment run reads the scenes at the model's size */
    rf_bad("task: segment\ndata: {path: d.xds, augment: \"size=8\"}\nmodel: \"" MODEL "\"\n"
           "train: {epochs: 1}\nlosses:\n  - {kind: ce}\n",
           NULL, 0, XD_EARG, "r.yaml:2: data.augment: task: segment reads the scenes at the model's");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
           "teachers: [{name: t, checkpoint: cnn.safetensors, languages: average}]\n"
           "train: {epochs: 1}\nlosses:\n  - {kind: kd}\n",
           NULL, 0, XD_EARG,
           "r.yaml:3: teachers.0.languages: 'average' needs the view text.* (this teacher reads "
           "'image')");
}

static void round_trip(const char *text, const char *const *sets, int n_sets)
{
    recipe a, b;
    rf_ok(text, sets, n_sets, &a);
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
    rf_bad(big, NULL, 0, XD_EARG, "r.yaml:5: losses.0.head: the student model has no node 'logit'");
    alarm(0);
    const char *huge = "name: huge\ndata: {path: d.xds}\n"
                       "model: \"input h=1 w=1 c=1000; linear out=1000000 name=logits head\"\n"
                       "train: {epochs: 1}\nlosses: [{kind: ce, head: logit}]\n";
    rf_bad(huge, NULL, 0, XD_ESHAPE, "r.yaml:3: model: model description: layer 1 'linear' "
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
        rf_ok(yaml, NULL, 0, &r);
        txt_config c = txt_config_default();
        xd_err e;
        TU_OK(txt_config_parse_words(&c, r.data.text, &e));
        assert_int_equal(c.buckets, 1024);
        assert_int_equal(c.nmax, 3);
        recipe_free(&r);
    }
    rf_bad("name: t\ndata: {path: d.xds, student_view: text.en, text: \"buckets=1024\\nnmax\"}\n"
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
    rf_bad(yaml, NULL, 0, XD_EARG, want);
    free(yaml);
    /* the name is a folder under runs/: not . or .., given or made from the file's name */
    const char *dots[] = {"name: ..\n", "name: .\n"};
    for (int i = 0; i < 2; i++) {
        char *text = tu_fmt("%s%s", dots[i], rf_minimal_recipe);
        rf_bad(text, NULL, 0, XD_EARG, "is not a usable name");
        free(text);
    }
    const char *sets[] = {"name=.."};
    rf_bad(rf_minimal_recipe, sets, 1, XD_EARG, "'..' is not a usable name");
    tu_write_text("...yaml", rf_minimal_recipe);
    recipe r;
    xd_err e;
    TU_OK(recipe_load("...yaml", NULL, 0, &r, &e));
    assert_string_equal(r.name, "recipe");
    recipe_free(&r);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(rf_full_recipe, NULL, 0);
    round_trip(rf_minimal_recipe, NULL, 0);
    const char *sets[] = {"train.schedule.kind=step", "train.schedule.step_size=1000",
                          "train.optimizer.clip_norm=1.5", "data.augment='size=8 flip=0.25'",
                          "name=x.y"};
    round_trip(rf_minimal_recipe, sets, 5);
    /* train.shuffle prints only when not the default, so the recipes of stored runs read as before */
    const char *keyed[] = {"train.shuffle=keyed"}, *stored[] = {"train.shuffle=stored"};
    round_trip(rf_minimal_recipe, keyed, 1);
    recipe k, st;
    rf_ok(rf_minimal_recipe, keyed, 1, &k);
    rf_ok(rf_minimal_recipe, stored, 1, &st);
    assert_int_equal(k.train.shuffle, RECIPE_SHUFFLE_KEYED);
    char *yk = recipe_to_yaml(&k), *ys = recipe_to_yaml(&st);
    assert_non_null(strstr(yk, "\n  shuffle: keyed\n"));
    assert_null(strstr(ys, "shuffle"));
    free(yk);
    free(ys);
    recipe_free(&k);
    recipe_free(&st);
    rf_bad(rf_minimal_recipe, (const char *[]){"train.shuffle=random"}, 1, XD_EARG, "stored");
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
    rf_ok(rf_minimal_recipe, NULL, 0, &r);
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
    rf_ok(text, NULL, 0, &r);
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
    rf_ok(rf_minimal_recipe, NULL, 0, &r);
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
    rf_bad(WITH_DATA("  val_fraction: 1\n"), NULL, 0, XD_EARG,
           "r.yaml:3: data.val_fraction: must be below 1");
    rf_bad(WITH_DATA("  val_fraction: 0.1\n  val: dev\n"), NULL, 0, XD_EARG,
           "r.yaml:4: data.val: give val (a split) or val_fraction");
    rf_bad(WITH_DATA("  val: test\n"), NULL, 0, XD_EARG,
           "r.yaml:3: data.val: the validation split must be neither the training nor the test");
    rf_bad(WITH_DATA("  val: \"a b\"\n"), NULL, 0, XD_EARG, "'a b' is not a split name");
    rf_bad(WITH_DATA("  eval_sets: [{name: a.b, path: d.xds}]\n"), NULL, 0, XD_EARG,
           "'a.b' is not a usable name");
    rf_bad(WITH_DATA("  eval_sets: [{name: a, path: d.xds}, {name: a, path: d.xds}]\n"), NULL, 0,
           XD_EARG, "eval set name 'a' is already used by data.eval_sets.0");
    rf_bad(WITH_DATA("  eval_sets: [{name: a}]\n"), NULL, 0, XD_EARG, "missing required key 'path'");
    rf_bad(WITH_DATA("  eval_sets: [{name: a, path: nowhere.xds}]\n"), NULL, 0, XD_EARG,
           "nowhere.xds: no such file");
    rf_bad(WITH_DATA("  eval_sets: [{name: a, path: d.xds, splt: x}]\n"), NULL, 0, XD_EARG,
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
    rf_ok(text, NULL, 0, &r);
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
    rf_ok(rf_minimal_recipe, NULL, 0, &r);
    yaml = recipe_to_yaml(&r);
    assert_null(strstr(yaml, "class_weight"));
    free(yaml);
    recipe_free(&r);
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\n"
           "teachers: [{name: t, checkpoint: cnn.safetensors}]\ntrain: {epochs: 1}\n"
           "losses:\n  - {kind: feature, student_tap: feat, teacher_tap: feat, "
           "class_weight: balanced}\n",
           NULL, 0, XD_EARG,
           "r.yaml:6: losses.0.class_weight: does not apply to kind 'feature' (only to ce, kd or "
           "hinton)");
    rf_bad("data: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\n"
           "losses:\n  - {kind: ce, class_weight: inverse}\n",
           NULL, 0, XD_EARG, "r.yaml:5: losses.0.class_weight: ");
    rf_bad("task: segment\ndata: {path: d.xds}\nmodel: \"" MODEL "\"\ntrain: {epochs: 1}\n"
           "losses:\n  - {kind: ce,\n     class_weight: balanced}\n",
           NULL, 0, XD_EARG,
           "r.yaml:7: losses.0.class_weight: does not apply to task: segment");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip, rf_files),
        cmocka_unit_test_setup(test_model_checked_without_memory, rf_files),
        cmocka_unit_test_setup(test_text_items_cut_like_the_feed, rf_files),
        cmocka_unit_test_setup(test_huge_value_short_message, rf_files),
        cmocka_unit_test_setup(test_alignment_keys, rf_files),
        cmocka_unit_test_setup(test_validation_keys, rf_files),
        cmocka_unit_test_setup(test_class_weight, rf_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
