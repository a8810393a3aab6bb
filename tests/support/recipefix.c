/* The recipe tests' fixtures (see recipefix.h). */
#include "tests/support/recipefix.h"

#include <string.h>

#include "tests/support/testutil.h"

int rf_files(void **state)
{
    (void)state;
    tu_write_file("d.xds", "x", 1);
    tu_write_file("cnn.safetensors", "x", 1);
    tu_write_file("txt.safetensors", "x", 1);
    return 0;
}

xd_status rf_load(const char *text, const char *const *sets, int n_sets, recipe *r, xd_err *e)
{
    tu_write_file("r.yaml", text, strlen(text));
    xd_err_clear(e);
    return recipe_load("r.yaml", sets, n_sets, r, e);
}

void rf_ok(const char *text, const char *const *sets, int n_sets, recipe *r)
{
    xd_err e;
    if (rf_load(text, sets, n_sets, r, &e) != XD_OK) fail_msg("recipe_load failed: %s", e.msg);
}

void rf_bad(const char *text, const char *const *sets, int n_sets, xd_status code,
            const char *want)
{
    recipe r;
    xd_err e;
    xd_status s = rf_load(text, sets, n_sets, &r, &e);
    if (s == XD_OK) fail_msg("recipe loaded, expected an error mentioning '%s'", want);
    tu_assert_err(&e, code, want);
    assert_null(r.name); /* nothing half-bound is handed out */
    assert_int_equal(r.n_stages, 0);
    recipe_free(&r);
}

const char *const rf_full_recipe =
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
    "model: \"" RF_MODEL "\"\n"                                /* 13 */
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

const char *const rf_minimal_recipe = "data:\n"
                                          "  path: d.xds\n"
                                          "model: \"" RF_MODEL "\"\n"
                                          "train:\n"
                                          "  epochs: 2\n"
                                          "losses:\n"
                                          "  - kind: ce\n";
