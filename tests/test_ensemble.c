/* Teacher ensembles (distill/ensemble.h, a kd / hinton loss with `teachers:`): the combined target
 * of each combine mode (mean, fixed weights, entropy weights) against values worked out by hand,
 * a teacher of another label set joining through its label map, the loss's gradient with respect
 * to the student's logits against central finite differences (the members' outputs are constants
 * of the loss), recipe mistakes with their file:line and key path, the effective recipe printed
 * back, and whole runs on the tiny data set of tests/support/tinyset.h: an ensemble of copies of
 * one teacher trains exactly the student that teacher alone trains (every mode, through the
 * teacher-output cache), each member gets its own cache, and a student of the 2 rows of the toy
 * set learns with no label at all from a 4-quadrant teacher (through its label map) and a row
 * teacher together. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "align/labelmap.h"
#include "distill/checkpoint.h"
#include "distill/ensemble.h"
#include "distill/kd.h"
#include "distill/recipe.h"
#include "distill/trainer.h"
#include "nn/model.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

/* ---------------------------------------------------------------------------------------------
 * the combined target by hand */

enum { HB = 2, HK = 3 };

/* Two teachers on two examples over three classes:
 *   example 0: p1 = (1/2, 1/4, 1/4), H1 = 1.5 ln 2;   p2 = (1/3, 1/3, 1/3), H2 = ln 3
 *   example 1: p1 = (1, 0, 0),       H1 = 0;          p2 = (0, 1/2, 1/2),   H2 = ln 2 */
static const float P1[HB * HK] = {0.5f, 0.25f, 0.25f, 1.0f, 0.0f, 0.0f};
static const float P2[HB * HK] = {1.0f / 3, 1.0f / 3, 1.0f / 3, 0.0f, 0.5f, 0.5f};

static void combine(float *q, float *w, recipe_combine c, const float *fixed, float tau)
{
    const float *p[2] = {P1, P2};
    ensemble_weights(w, c, fixed, p, tau, 2, HB, HK);
    ensemble_combine(q, p, w, 2, HB, HK);
}

static void test_combine_by_hand(void **state)
{
    (void)state;
    float q[HB * HK], w[2 * HB];
    /* mean: (p1 + p2) / 2 */
    combine(q, w, RECIPE_COMBINE_MEAN, NULL, 1.0f);
    const float mean[HB * HK] = {5.0f / 12, 7.0f / 24, 7.0f / 24, 0.5f, 0.25f, 0.25f};
    tu_assert_close(q, mean, HB * HK, 1e-6, 1e-7, "mean");

    /* weights 3 and 1: 3/4 p1 + 1/4 p2 on every example */
    const float fixed[2] = {3.0f, 1.0f};
    combine(q, w, RECIPE_COMBINE_WEIGHTS, fixed, 1.0f);
    const float wq[HB * HK] = {11.0f / 24, 13.0f / 48, 13.0f / 48, 0.75f, 0.125f, 0.125f};
    tu_assert_close(q, wq, HB * HK, 1e-6, 1e-7, "weights");
    const float ww[2 * HB] = {0.75f, 0.75f, 0.25f, 0.25f};
    tu_assert_close(w, ww, 2 * HB, 1e-7, 0.0, "fixed weights");

    /* entropy, tau = 1: w1 / w2 = exp(H2 - H1).
     * example 0: exp(ln 3 - 1.5 ln 2) = 3 / 2^1.5, so w1 = 3 / (3 + 2 sqrt 2);
     * example 1: exp(ln 2) = 2, so w1 = 2/3 and q = (2/3, 1/6, 1/6) */
    combine(q, w, RECIPE_COMBINE_ENTROPY, NULL, 1.0f);
    const double a = 3.0 / (3.0 + 2.0 * sqrt(2.0));
    const float ew[2 * HB] = {(float)a, 2.0f / 3, (float)(1.0 - a), 1.0f / 3};
    tu_assert_close(w, ew, 2 * HB, 1e-6, 1e-7, "entropy weights");
    const float eq[HB * HK] = {(float)(a / 2 + (1 - a) / 3), (float)(a / 4 + (1 - a) / 3),
                               (float)(a / 4 + (1 - a) / 3), 2.0f / 3, 1.0f / 6, 1.0f / 6};
    tu_assert_close(q, eq, HB * HK, 1e-6, 1e-7, "entropy");

    /* tau = 1/2 doubles the exponent: example 1's w1 / w2 = 4, w1 = 4/5 */
    combine(q, w, RECIPE_COMBINE_ENTROPY, NULL, 0.5f);
    assert_true(fabs(w[1] - 0.8) < 1e-6 && fabs(w[HB + 1] - 0.2) < 1e-6);
    /* a tiny tau is the most certain teacher alone, and stays finite */
    combine(q, w, RECIPE_COMBINE_ENTROPY, NULL, 1e-6f);
    const float hard[HB * HK] = {0.5f, 0.25f, 0.25f, 1.0f, 0.0f, 0.0f};
    tu_assert_close(q, hard, HB * HK, 1e-6, 1e-7, "entropy, tiny tau");
    /* a large tau is the mean */
    combine(q, w, RECIPE_COMBINE_ENTROPY, NULL, 1e6f);
    tu_assert_close(q, mean, HB * HK, 1e-5, 1e-6, "entropy, large tau");
}

/* From logits: teacher 1's (ln 2, 0, 0) is p1 = (1/2, 1/4, 1/4) at T = 1 and
 * (sqrt 2, 1, 1) / (2 + sqrt 2) at T = 2; teacher 2's zeros are uniform at any T. The entropy
 * weights read the teachers at T = 1 whatever T is (3 / (3 + 2 sqrt 2) for teacher 1, as above),
 * and weigh their distributions at T. */
static void test_target_from_logits(void **state)
{
    (void)state;
    const float z1[HK] = {(float)log(2.0), 0.0f, 0.0f}, z2[HK] = {0.0f, 0.0f, 0.0f};
    const ensemble_member m[2] = {{z1, HK, NULL}, {z2, HK, NULL}};
    ensemble_buf eb;
    ensemble_buf_init(&eb, 2, 1, HK, HK);
    float q[HK];
    ensemble_target(q, m, 1, 2.0f, RECIPE_COMBINE_ENTROPY, NULL, 1.0f, &eb);
    const double a = 3.0 / (3.0 + 2.0 * sqrt(2.0)), r2 = sqrt(2.0);
    const float want[HK] = {(float)(a * r2 / (2 + r2) + (1 - a) / 3),
                            (float)(a / (2 + r2) + (1 - a) / 3), (float)(a / (2 + r2) + (1 - a) / 3)};
    tu_assert_close(q, want, HK, 1e-6, 1e-7, "entropy at T = 2");
    assert_true(fabs(eb.w[0] - a) < 1e-6);
    /* the mean at T = 2 */
    ensemble_target(q, m, 1, 2.0f, RECIPE_COMBINE_MEAN, NULL, 1.0f, &eb);
    const float mean[HK] = {(float)((r2 / (2 + r2) + 1.0 / 3) / 2),
                            (float)((1 / (2 + r2) + 1.0 / 3) / 2), (float)((1 / (2 + r2) + 1.0 / 3) / 2)};
    tu_assert_close(q, mean, HK, 1e-6, 1e-7, "mean at T = 2");
    ensemble_buf_free(&eb);
}

/* A teacher of 4 classes joins through the map (0, 0, 1, 2): its (0.1, 0.2, 0.3, 0.4) becomes
 * (0.3, 0.3, 0.4) on the student's classes, and is combined with the others there. */
static void test_mapped_member_by_hand(void **state)
{
    (void)state;
    const int32_t table[4] = {0, 0, 1, 2};
    align_labelmap lm;
    xd_err e;
    TU_OK(align_labelmap_from_table(&lm, table, 4, HK, &e));
    const float pt[HB * 4] = {0.1f, 0.2f, 0.3f, 0.4f, 0.25f, 0.25f, 0.5f, 0.0f};
    float p3[HB * HK], q[HB * HK], w[3 * HB];
    align_labelmap_apply(p3, pt, &lm, HB);
    const float mapped[HB * HK] = {0.3f, 0.3f, 0.4f, 0.5f, 0.5f, 0.0f};
    tu_assert_close(p3, mapped, HB * HK, 1e-6, 1e-7, "mapped");
    const float *p[3] = {P1, P2, p3};
    ensemble_weights(w, RECIPE_COMBINE_MEAN, NULL, p, 1.0f, 3, HB, HK);
    ensemble_combine(q, p, w, 3, HB, HK);
    /* per class, the mean of the three rows */
    const float want[HB * HK] = {(0.5f + 1.0f / 3 + 0.3f) / 3, (0.25f + 1.0f / 3 + 0.3f) / 3,
                                 (0.25f + 1.0f / 3 + 0.4f) / 3, (1.0f + 0.0f + 0.5f) / 3,
                                 (0.0f + 0.5f + 0.5f) / 3, (0.0f + 0.5f + 0.0f) / 3};
    tu_assert_close(q, want, HB * HK, 1e-6, 1e-7, "mean with a mapped teacher");
    align_labelmap_free(&lm);
}

/* ---------------------------------------------------------------------------------------------
 * the loss's gradient */

enum { GB = 3, GK = 4, GT = 3 };

typedef struct {
    const float *s;
    const float *z[GT]; /* the members' logits: the third has 5 classes, mapped */
    const align_labelmap *lm;
    recipe_combine c;
    float T, alpha;
    const int32_t *y;
    const uint8_t *mask;
} grad_ctx;

/* The combined target of the members' logits, as the trainer makes it. */
static void target(const grad_ctx *c, float *q)
{
    const ensemble_member m[GT] = {{c->z[0], GK, NULL}, {c->z[1], GK, NULL}, {c->z[2], 5, c->lm}};
    const float fixed[GT] = {1.0f, 2.0f, 0.5f};
    ensemble_buf eb;
    ensemble_buf_init(&eb, GT, GB, GK, 5);
    ensemble_target(q, m, GB, c->T, c->c, fixed, 0.7f, &eb);
    ensemble_buf_free(&eb);
}

/* The hinton loss of the student's logits against the target, recomputed from the members'
 * logits at every evaluation: they do not depend on the student. */
static double loss(void *ctx)
{
    const grad_ctx *c = ctx;
    float q[GB * GK], ps[GB * GK], probs[GB * GK];
    target(c, q);
    return kd_hinton_forward(ps, probs, c->s, q, c->y, c->mask, GB, GK, c->T, c->alpha);
}

static void test_gradient_fd(void **state)
{
    (void)state;
    float s[GB * GK], z0[GB * GK], z1[GB * GK], z2[GB * 5];
    tu_fill_uniform(s, GB * GK, -2.0f, 2.0f, 11);
    tu_fill_uniform(z0, GB * GK, -3.0f, 3.0f, 12);
    tu_fill_uniform(z1, GB * GK, -3.0f, 3.0f, 13);
    tu_fill_uniform(z2, GB * 5, -3.0f, 3.0f, 14);
    const int32_t table[5] = {0, 1, 2, 3, 3}, y[GB] = {1, 3, 0};
    const uint8_t mask[GB] = {1, 0, 1};
    align_labelmap lm;
    xd_err e;
    TU_OK(align_labelmap_from_table(&lm, table, 5, GK, &e));
    const float temps[2] = {1.0f, 3.0f};
    for (int c = 0; c < RECIPE_COMBINE_COUNT; c++)
        for (int ti = 0; ti < 2; ti++) {
            grad_ctx ctx = {s, {z0, z1, z2}, &lm, (recipe_combine)c, temps[ti], 0.7f, y, mask};
            float q[GB * GK], ps[GB * GK], probs[GB * GK], ds[GB * GK] = {0};
            target(&ctx, q);
            kd_hinton_forward(ps, probs, s, q, y, mask, GB, GK, ctx.T, ctx.alpha);
            kd_hinton_backward(ds, ps, probs, q, y, mask, GB, GK, ctx.T, ctx.alpha, 1.0f);
            char what[64];
            snprintf(what, sizeof what, "combine %s, T = %g", recipe_combine_names[c], ctx.T);
            tu_check_grad(what, s, GB * GK, ds, loss, &ctx, 1e-2, 2e-3, 2e-5);
            /* the target is a distribution on every example */
            for (int b = 0; b < GB; b++) {
                double sum = 0.0;
                for (int k = 0; k < GK; k++) sum += q[b * GK + k];
                assert_true(fabs(sum - 1.0) < 1e-5);
            }
        }
    align_labelmap_free(&lm);
}

/* ---------------------------------------------------------------------------------------------
 * recipes */

#define HEAD                                                                                     \
    "data: {path: toy.xds}\n"                                                                    \
    "model: \"input h=8 w=8 c=1; flatten; linear out=4 name=logits head\"\n"                     \
    "teachers:\n"                                                                                \
    "  - {name: a, checkpoint: a.safetensors}\n"                                                 \
    "  - {name: b, checkpoint: b.safetensors}\n"                                                 \
    "  - {name: c, checkpoint: c.safetensors}\n"                                                 \
    "train: {epochs: 1}\n"                                                                       \
    "losses:\n"                                                                                  \
    "  - kind: kd\n"
/* HEAD's loss item starts on line 9; its keys follow from line 10 */

static xd_status parse(const char *name, const char *text, recipe *r, xd_err *e)
{
    xd_err_clear(e);
    return recipe_parse(name, text, strlen(text), NULL, 0, RECIPE_NO_FILE_CHECKS, r, e);
}

/* The loss keys `keys` after HEAD must not load; the message starts with want. */
static void bad(const char *keys, const char *want, const char *want2)
{
    char *text = tu_fmt(HEAD "%s", keys);
    recipe r;
    xd_err e;
    if (parse("ens.yaml", text, &r, &e) == XD_OK) fail_msg("loaded: %s", keys);
    print_message("%s\n", e.msg);
    if (strncmp(e.msg, want, strlen(want)) != 0 || (want2 && !strstr(e.msg, want2)))
        fail_msg("message '%s' does not start with '%s'%s%s", e.msg, want, want2 ? " or lacks " : "",
                 want2 ? want2 : "");
    recipe_free(&r);
    free(text);
}

static void test_recipe_errors(void **state)
{
    (void)state;
    bad("    teachers: [a, b, c]\n    weights: [1, 2]\n",
        "ens.yaml:11: losses.0.weights: 2 weights for 3 teachers", NULL);
    bad("    teachers: [a, b, nosuch]\n",
        "ens.yaml:10: losses.0.teachers.2: no teacher named 'nosuch'", "teachers: a, b or c");
    bad("    teachers: [a, b]\n    combine: weights\n    weights: [1, -0.5]\n",
        "ens.yaml:12: losses.0.weights.1: must be >= 0", NULL);
    bad("    teachers: [a, b]\n    weights: [0, 0]\n", "ens.yaml:11: losses.0.weights: the weights add up to 0",
        NULL);
    bad("    from: a\n    teachers: [a, b]\n", "ens.yaml:10: losses.0.from: give teachers or from, not both",
        NULL);
    bad("    teacher: a\n    teachers: [a, b]\n",
        "ens.yaml:10: losses.0.teacher: give teachers or teacher, not both", NULL);
    bad("    teachers: [a, b, a]\n", "ens.yaml:10: losses.0.teachers.2: teacher 'a' is listed twice",
        NULL);
    bad("    teachers: [a, b]\n    combine: weights\n",
        "ens.yaml:11: losses.0.combine: combine: weights needs weights", NULL);
    bad("    teachers: [a, b]\n    combine: entropy\n    weights: [1, 2]\n",
        "ens.yaml:12: losses.0.weights: applies to combine: weights (combine is entropy)", NULL);
    bad("    teachers: [a, b]\n    entropy_tau: 2\n",
        "ens.yaml:11: losses.0.entropy_tau: applies to combine: entropy", NULL);
    bad("    teachers: [a, b]\n    combine: entropy\n    entropy_tau: 0\n",
        "ens.yaml:12: losses.0.entropy_tau: must be > 0", NULL);
    bad("    teachers: [a, b]\n    combine: vote\n", "ens.yaml:11: losses.0.combine: unknown value 'vote'",
        "mean, weights or entropy");
    bad("    teacher: a\n    combine: mean\n",
        "ens.yaml:11: losses.0.combine: applies to an ensemble only", NULL);
    bad("    teachers: [a, b]\n    label_map: [0, 1, 2, 3]\n",
        "ens.yaml:11: losses.0.label_map: with teachers, each teacher gives its own label_map", NULL);
    bad("    teachers: [a, {name: b, label_map: label.x y}]\n",
        "ens.yaml:10: losses.0.teachers.1.label_map: 'label.x y': expected a label section", NULL);
    bad("    teachers: [a, {name: b, map: label}]\n", "ens.yaml:10: unknown key 'losses.0.teachers.1.map'",
        NULL);
    bad("    teachers: [a, b]\n    detach: false\n",
        "ens.yaml:11: losses.0.detach: an ensemble's teachers are frozen", NULL);
    bad("    teachers: []\n", "ens.yaml:10: losses.0.teachers: 0 teachers", NULL);
    /* a teacher that only an ensemble reads is used; one that nothing reads is not */
    bad("    teachers: [a, b]\n", "ens.yaml:6: teachers.2: no loss uses teacher 'c'", NULL);
}

/* The effective recipe of an ensemble parses back to itself, in both forms of the ends. */
static void test_recipe_round_trip(void **state)
{
    (void)state;
    const char *texts[2] = {
        HEAD "    teachers: [a, {name: b, label_map: label.row}, {name: c, label_map: [0, 0, 1, 1]}]\n"
             "    combine: weights\n    weights: [1, 0.25, 2]\n    teacher_head: logits\n",
        "data: {path: toy.xds}\n"
        "models:\n  - {name: s, model: \"input h=8 w=8 c=1; flatten; linear out=4 name=logits head\"}\n"
        "teachers:\n  - {name: a, checkpoint: a.safetensors}\n  - {name: b, checkpoint: b.safetensors}\n"
        "train: {epochs: 1}\n"
        "losses:\n  - {kind: hinton, to: s.logits, teachers: [a, b], combine: entropy, entropy_tau: 0.5, "
        "teacher_head: out}\n"};
    for (int i = 0; i < 2; i++) {
        recipe r1, r2;
        xd_err e;
        if (parse("rt.yaml", texts[i], &r1, &e) != XD_OK) fail_msg("%s", e.msg);
        const recipe_loss *l = &r1.stages[0].losses[0];
        assert_int_equal(l->teacher, -1);
        assert_int_equal(l->n_members, i ? 2 : 3);
        assert_int_equal(l->combine, i ? RECIPE_COMBINE_ENTROPY : RECIPE_COMBINE_WEIGHTS);
        char *y1 = recipe_to_yaml(&r1);
        if (parse("rt2.yaml", y1, &r2, &e) != XD_OK) fail_msg("%s\n%s", e.msg, y1);
        char *y2 = recipe_to_yaml(&r2);
        assert_string_equal(y1, y2);
        assert_non_null(strstr(y1, i ? "entropy_tau: 0.5" : "weights: [1, 0.25, 2]"));
        assert_non_null(strstr(y1, "teacher_head: \""));
        if (!i) assert_non_null(strstr(y1, "{name: \"c\", label_map: [0, 0, 1, 1]}"));
        free(y1);
        free(y2);
        recipe_free(&r1);
        recipe_free(&r2);
    }
}

/* ---------------------------------------------------------------------------------------------
 * whole runs */

#define MLP "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; linear out=4 name=logits head"

/* A teacher of the toy set: its label (", label: label.row" or "") and class count. */
static const char *const teacher_fmt =
    "data: {path: toy.xds%s}\n"
    "model: \"input h=8 w=8 c=1; conv2d out=8 k=3 pad=1; relu; maxpool k=2; flatten; "
    "linear out=32; relu; linear out=%d name=logits head\"\n"
    "train: {epochs: 4, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
    "losses: [{kind: ce}]\n";

/* The toy set, the quadrant teacher (4 classes: quad/best.safetensors) and the row teacher
 * (label.row, 2 classes: row/best.safetensors), made once. */
static void ensure_teachers(void)
{
    if (exists("row/best.safetensors")) return;
    tiny_spec s = tiny_default();
    tiny_write("toy.xds", &s);
    char *quad = tu_fmt(teacher_fmt, "", 4), *row = tu_fmt(teacher_fmt, ", label: label.row", 2);
    run_ok("quad", quad, "quad", 1, 0, 0);
    run_ok("row", row, "row", 1, 0, 0);
    free(quad);
    free(row);
}

/* A student of the toy set taught by `teachers` through the loss item `loss`. */
static char *student(const char *data, int classes, const char *teachers, const char *loss)
{
    return tu_fmt("data: {path: toy.xds%s}\n"
                  "model: \"input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu; "
                  "linear out=%d name=logits head\"\n"
                  "teachers:\n%s"
                  "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                  "losses:\n  - %s\n",
                  data, classes, teachers, loss);
}

/* Two runs trained the same parameters, bit for bit. */
static void assert_same_params(const char *dir_a, const char *dir_b)
{
    nn_model a, b;
    xd_err e;
    char *pa = tu_fmt("%s/last.safetensors", dir_a), *pb = tu_fmt("%s/last.safetensors", dir_b);
    if (ckpt_load(pa, 1, &a, &e) != XD_OK || ckpt_load(pb, 1, &b, &e) != XD_OK)
        fail_msg("load: %s", e.msg);
    assert_int_equal(a.n_param, b.n_param);
    if (memcmp(a.param, b.param, sizeof(float) * a.n_param) != 0)
        fail_msg("%s and %s trained different parameters", dir_a, dir_b);
    nn_model_free(&a);
    nn_model_free(&b);
    free(pa);
    free(pb);
}

/* The runs of two recipe texts (freed here) into folders of their names train the same student. */
static void assert_same_student(const char *a, char *text_a, const char *b, char *text_b)
{
    run_ok(a, text_a, a, 1, 0, 0);
    run_ok(b, text_b, b, 1, 0, 0);
    assert_same_params(a, b);
    free(text_a);
    free(text_b);
}

/* Copies of one teacher agree on every example, so every combination of them is that teacher's
 * own distribution, exactly: the students are the same to the bit. */
static void test_copies_are_the_teacher(void **state)
{
    (void)state;
    ensure_teachers();
    const char *one = "  - {name: q, checkpoint: quad/best.safetensors}\n";
    const char *two = "  - {name: q, checkpoint: quad/best.safetensors}\n"
                      "  - {name: q2, checkpoint: quad/best.safetensors}\n";
    char *single = student(", labels_per_class: 5", 4, one, "{kind: hinton, temperature: 2}");
    run_ok("single", single, "single", 1, 0, 0);
    const char *modes[] = {"combine: mean", "weights: [3, 1]", "combine: entropy, entropy_tau: 0.3"};
    for (int i = 0; i < 3; i++) {
        char *loss = tu_fmt("{kind: hinton, temperature: 2, teachers: [q, q2], %s}", modes[i]);
        char *text = student(", labels_per_class: 5", 4, two, loss);
        char *dir = tu_fmt("copies-%d", i);
        run_ok(dir, text, dir, 1, 0, 0);
        print_message("%s: the same student as the one teacher\n", modes[i]);
        assert_same_params("single", dir);
        free(dir);
        free(text);
        free(loss);
    }
    /* an ensemble of one teacher with its label map is that teacher through its map */
    char *mapped = student(", label: label.row, label_fraction: 0", 2, one,
                           "{kind: kd, temperature: 2, label_map: [0, 0, 1, 1]}");
    char *member = student(", label: label.row, label_fraction: 0", 2, one,
                           "{kind: kd, temperature: 2, teachers: [{name: q, label_map: [0, 0, 1, 1]}]}");
    assert_same_student("mapped", mapped, "member", member);
    free(single);
}

/* Two different teachers each get their own output cache (in the data set's folder), and the
 * cached run trains the student the teachers would train running at every step. */
static void test_cache_per_member(void **state)
{
    (void)state;
    ensure_teachers();
    char *quad = tu_fmt(teacher_fmt, "", 4); /* a second quadrant teacher, of another seed */
    run_ok("quad", quad, "quad2", 2, 0, 0);
    free(quad);
    if (mkdir("c2", 0777) != 0) fail_msg("cannot create the folder c2");
    tiny_spec s = tiny_default();
    tiny_write("c2/toy.xds", &s);
    static const char *const fmt =
        "data: {path: c2/toy.xds, labels_per_class: 5}\n"
        "model: \"" MLP "\"\n"
        "teachers:\n  - {name: a, checkpoint: quad/best.safetensors, cache: %s}\n"
        "  - {name: b, checkpoint: quad2/best.safetensors, cache: %s}\n"
        "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
        "losses:\n  - {kind: kd, teachers: [a, b], combine: entropy}\n";
    char *cached = tu_fmt(fmt, "true", "true"), *online = tu_fmt(fmt, "false", "false");
    train_result a = run_ok("cached", cached, "cached", 1, 0, 0);
    assert_int_equal(tu_count_files("c2/cache", ".logits.npy"), 2);
    train_result b = run_ok("online", online, "online", 1, 0, 0);
    print_message("cached %.3f, online %.3f\n", a.final_acc, b.final_acc);
    nn_model x, y;
    xd_err e;
    if (ckpt_load("cached/last.safetensors", 1, &x, &e) != XD_OK ||
        ckpt_load("online/last.safetensors", 1, &y, &e) != XD_OK)
        fail_msg("load: %s", e.msg);
    /* the same up to the rounding of other batch compositions in the teachers' forward */
    tu_assert_close(y.param, x.param, x.n_param, 1e-3, 1e-4, "student without the caches");
    nn_model_free(&x);
    nn_model_free(&y);
    assert_true(a.final_acc >= 0.9);
    /* two cached teachers of different widths, the second weighted 0: the student of the first
     * alone, exactly (each member's rows of a batch are its own) */
    static const char *const pair =
        "  - {name: q, checkpoint: quad/best.safetensors}\n"
        "  - {name: r, checkpoint: row/best.safetensors}\n";
    char *alone = student(", labels_per_class: 5", 4, "  - {name: q, checkpoint: quad/best.safetensors}\n",
                          "{kind: kd, temperature: 2}");
    char *zero = student(", labels_per_class: 5", 4, pair,
                         "{kind: kd, temperature: 2, teachers: [q, {name: r, label_map: [0, 2]}], "
                         "weights: [1, 0]}");
    assert_same_student("alone", alone, "zero", zero);
    free(cached);
    free(online);
}

/* The student knows the 2 rows of the toy set and has no label; its teachers are the row teacher
 * and the quadrant teacher, whose 4 classes reach the rows through `label_map: label` (the two
 * label sets' co-occurrence on the training split). */
static void test_mapped_teacher_joins(void **state)
{
    (void)state;
    ensure_teachers();
    const char *both = "  - {name: row, checkpoint: row/best.safetensors}\n"
                       "  - {name: quad, checkpoint: quad/best.safetensors}\n";
    char *text = student(", label: label.row, label_fraction: 0", 2, both,
                         "{kind: kd, temperature: 2, teachers: [row, {name: quad, label_map: label}], "
                         "combine: entropy}");
    train_result r = run_ok("joins", text, "joins", 1, 0, 0);
    print_message("rows from a row teacher and a quadrant teacher: %.3f (chance 0.5)\n", r.final_acc);
    assert_true(r.final_acc >= 0.9);
    /* without its map the quadrant teacher does not fit, and the message says what would */
    char *unmapped = student(", label: label.row", 2, both,
                             "{kind: kd, teachers: [row, quad]}");
    tu_write_file("unmapped.yaml", unmapped, strlen(unmapped));
    recipe rc;
    xd_err e;
    if (recipe_load("unmapped.yaml", NULL, 0, &rc, &e) != XD_OK) fail_msg("%s", e.msg);
    train_opts o = {.out_dir = "unmapped", .quiet = 1};
    train_result res;
    assert_int_not_equal(trainer_run(&rc, 1, &o, &res, &e), XD_OK);
    print_message("%s\n", e.msg);
    assert_non_null(strstr(e.msg, "unmapped.yaml:"));
    assert_non_null(strstr(e.msg, "teacher 'quad'"));
    assert_non_null(strstr(e.msg, "label_map"));
    assert_false(exists("unmapped/last.safetensors"));
    recipe_free(&rc);
    free(text);
    free(unmapped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_combine_by_hand),
        cmocka_unit_test(test_target_from_logits),
        cmocka_unit_test(test_mapped_member_by_hand),
        cmocka_unit_test(test_gradient_fd),
        cmocka_unit_test(test_recipe_errors),
        cmocka_unit_test(test_recipe_round_trip),
        cmocka_unit_test(test_copies_are_the_teacher),
        cmocka_unit_test(test_cache_per_member),
        cmocka_unit_test(test_mapped_teacher_joins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
