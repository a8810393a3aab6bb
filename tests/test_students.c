/* distill/trainer, students: they learn from the teacher (KD, Hinton, feature losses with
 * projectors, FitNets hint stages with frozen upper layers, attention transfer, two teachers),
 * through the teacher-output cache, with contrastive alignment and fitted projector
 * initialisation. Across modalities, label maps and languages: test_students_modal.c. */
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

static void test_kd_students(void **state)
{
    (void)state;
    ensure_teacher();
    const char *few = "  labels_per_class: 2\n";
    char *ce = student_recipe(few, MLP_MODEL, "", 3, "{kind: adamw, lr: 0.01}", "  - kind: ce\n");
    char *kd = student_recipe(few, MLP_MODEL, TEACHERS, 3, "{kind: adamw, lr: 0.01}",
                              "  - kind: ce\n  - {kind: kd, temperature: 4}\n");
    char *hin = student_recipe(few, MLP_MODEL, TEACHERS, 3, "{kind: adamw, lr: 0.01}",
                               "  - {kind: hinton, alpha: 0.9, temperature: 4}\n");
    train_result rce = run_ok("kd-ce", ce, "kd-ce", 2, 0, 0);
    train_result rkd = run_ok("kd-kd", kd, "kd-kd", 2, 0, 0);
    train_result rhin = run_ok("kd-hinton", hin, "kd-hinton", 2, 0, 0);

    /* the loss components are logged per epoch, finite and of the right sizes */
    json_t *m = read_metrics("kd-kd");
    assert_int_equal(json_array_size(m), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *l = json_array_get(m, i);
        double c = num(l, "loss.0.ce"), k = num(l, "loss.1.kd");
        assert_true(isfinite(c) && c >= 0.0 && isfinite(k) && k >= 0.0);
        assert_true(fabs(num(l, "loss") - (c + k)) < 1e-5 * (1.0 + c + k));
    }
    /* KD is learnt: the student's KD loss falls */
    assert_true(num(json_array_get(m, 2), "loss.1.kd") < num(json_array_get(m, 0), "loss.1.kd"));
    json_decref(m);
    m = read_metrics("kd-hinton");
    for (size_t i = 0; i < 3; i++) {
        double h = num(json_array_get(m, i), "loss.0.hinton");
        assert_true(isfinite(h) && h > 0.0);
    }
    assert_null(json_object_get(json_array_get(m, 0), "loss.0.ce"));
    json_decref(m);

    /* 8 labels: the KD students see all 200 examples through the teacher, CE only its 8 */
    json_error_t je;
    json_t *s = json_load_file("kd-kd/summary.json", 0, &je);
    assert_non_null(s);
    assert_int_equal((int)num(s, "labels_used"), 2 * TINY_CLASSES);
    json_decref(s);
    json_t *mce = read_metrics("kd-ce"), *mkd = read_metrics("kd-kd");
    assert_int_equal((long)num(json_array_get(mce, 2), "step"), 3); /* 8 examples: 1 step/epoch */
    assert_int_equal((long)num(json_array_get(mkd, 2), "step"), 3 * STEPS);
    json_decref(mce);
    json_decref(mkd);

    print_message("low-label accuracy: ce %.3f, kd %.3f, hinton %.3f (teacher %.3f)\n",
                  rce.final_acc, rkd.final_acc, rhin.final_acc, teacher_res.final_acc);
    assert_true(rkd.final_acc >= 0.9);
    assert_true(rhin.final_acc >= 0.9);
    assert_true(rkd.final_acc > rce.final_acc + 0.1);
    assert_true(rhin.final_acc > rce.final_acc + 0.1);
    free(ce);
    free(kd);
    free(hin);
}

/* Files in dir whose name ends in suffix; the last one found goes to last (may be NULL). */
static int count_files(const char *dir, const char *suffix, char **last)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    size_t ls = strlen(suffix);
    for (struct dirent *de; (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l >= ls && strcmp(de->d_name + l - ls, suffix) == 0) {
            n++;
            if (last) {
                free(*last);
                *last = path2(dir, de->d_name);
            }
        }
    }
    closedir(d);
    return n;
}

static void test_teacher_cache(void **state)
{
    (void)state;
    ensure_teacher();
    if (mkdir("c5", 0777) != 0) fail_msg("cannot create the folder c5");
    tiny_spec sp = tiny_default();
    tiny_write("c5/toy.xds", &sp);
    const char *losses = "  - kind: ce\n  - {kind: kd, temperature: 2}\n";
    char *cached = tu_fmt("data: {path: c5/toy.xds, labels_per_class: 5}\nmodel: \"" MLP_MODEL "\"\n"
                       TEACHERS "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n%s", losses);
    char *online = tu_fmt("data: {path: c5/toy.xds, labels_per_class: 5}\nmodel: \"" MLP_MODEL "\"\n"
                       "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT ", cache: false}\n"
                       "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                       "losses:\n%s", losses);
    assert_false(exists("c5/cache"));
    train_result a = run_ok("cache", cached, "cache-a", 3, 0, 0);
    char *npy = NULL;
    assert_int_equal(count_files("c5/cache", ".logits.npy", &npy), 1);
    assert_int_equal(count_files("c5/cache", ".sum", NULL), 1);
    /* the second run reads the files: they are not written again */
    struct stat s1, s2;
    assert_int_equal(stat(npy, &s1), 0);
    train_result b = run_ok("cache", cached, "cache-b", 3, 0, 0);
    assert_int_equal(stat(npy, &s2), 0);
    assert_true(s1.st_ino == s2.st_ino && s1.st_mtim.tv_sec == s2.st_mtim.tv_sec &&
                s1.st_mtim.tv_nsec == s2.st_mtim.tv_nsec);
    assert_int_equal(count_files("c5/cache", ".logits.npy", NULL), 1);
    free(npy);
    assert_true(tu_same_file("cache-a/last.safetensors", "cache-b/last.safetensors"));
    assert_true(a.final_acc == b.final_acc);
    assert_same_metrics("cache-a", "cache-b");

    /* the cache holds what the teacher computes: a run without it trains the same student (up to
     * the rounding of other batch compositions in the teacher's forward) */
    train_result c = run_ok("cache-off", online, "cache-c", 3, 0, 0);
    nn_model x, y;
    load_ckpt("cache-a/last.safetensors", &x);
    load_ckpt("cache-c/last.safetensors", &y);
    tu_assert_close(y.param, x.param, x.n_param, 1e-3, 1e-4, "student without cache");
    nn_model_free(&x);
    nn_model_free(&y);
    assert_true(fabs(c.final_acc - a.final_acc) <= 0.011);
    free(cached);
    free(online);
}

static void test_feature_loss_projector(void **state)
{
    (void)state;
    ensure_teacher();
    const char *metrics[] = {"mse", "cosine"};
    for (int k = 0; k < 2; k++) {
        char *losses = tu_fmt("  - kind: ce\n"
                           "  - {kind: feature, student_tap: feat, teacher_tap: feat, metric: %s}\n",
                           metrics[k]);
        char *text = student_recipe("", MLP_MODEL, TEACHERS, 4, "{kind: adamw, lr: 0.01}", losses);
        char *dir = tu_fmt("feat-%s", metrics[k]);
        train_result r = run_ok(dir, text, dir, 2, 0, 0);
        print_message("feature (%s) student: accuracy %.3f\n", metrics[k], r.final_acc);
        assert_true(r.final_acc >= 0.9);
        json_t *m = read_metrics(dir);
        double f1 = num(json_array_get(m, 0), "loss.1.feature"),
               f3 = num(json_array_get(m, 2), "loss.1.feature");
        print_message("feature (%s): %.4f -> %.4f\n", metrics[k], f1, f3);
        assert_true(isfinite(f1) && f1 > 0.0);
        if (k == 1) assert_true(f1 <= 2.0);
        if (!(f3 < 0.8 * f1)) fail_msg("feature loss (%s) %.4f -> %.4f did not fall", metrics[k], f1, f3);
        json_decref(m);
        /* the projector (16 -> 32 channels) is part of the resume state */
        char *rp = path2(dir, "resume.safetensors");
        io_st_file *f;
        xd_err e;
        xd_err_clear(&e);
        if (io_st_open(rp, &f, &e) != XD_OK) fail_msg("%s", e.msg);
        const io_tensor *t = io_st_find(f, "proj1.param");
        assert_non_null(t);
        assert_int_equal(t->shape[0], 16 * 32 + 32);
        io_st_close(f);
        free(rp);
        free(dir);
        free(text);
        free(losses);
    }
    /* feature maps through a 1x1 convolution projector: student r1 (8x8x4), teacher r1 (8x8x8) */
    char *text = student_recipe("", CNN_MODEL, TEACHERS, 2, "{kind: adamw, lr: 0.01}",
                                "  - {kind: hint, student_tap: r1, teacher_tap: r1, "
                                "projector: conv1x1}\n");
    run_ok("feat-conv", text, "feat-conv", 2, 0, 0);
    json_t *m = read_metrics("feat-conv");
    assert_true(num(json_array_get(m, 1), "loss.0.hint") < num(json_array_get(m, 0), "loss.0.hint"));
    json_decref(m);
    free(text);
}

static int node_of_param(const char *pname, const char *node)
{
    size_t n = strlen(node);
    return strncmp(pname, node, n) == 0 && pname[n] == '.';
}

static void test_hint_stage_freezes_upper_layers(void **state)
{
    (void)state;
    ensure_teacher();
    /* adamw with weight decay: a frozen layer must not even decay */
    char *text = tu_fmt("data: {path: toy.xds}\n"
                     "model: \"" MLP_MODEL "\"\n" TEACHERS
                     "train:\n"
                     "  batch: 16\n"
                     "  optimizer: {kind: adamw, lr: 0.01, weight_decay: 0.1}\n"
                     "stages:\n"
                     "  - epochs: 1\n"
                     "    train_until: feat\n"
                     "    losses:\n"
                     "      - {kind: hint, student_tap: feat, teacher_tap: feat}\n"
                     "  - epochs: 1\n"
                     "    losses:\n"
                     "      - kind: ce\n");
    const long seed = 9;
    train_result r = run_ok("hint", text, "hint", seed, 1, 0);
    assert_int_equal(r.epochs_done, 1);
    recipe rc;
    load_recipe("hint", text, &rc);
    nn_model init, after;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&init, rc.model, BATCH, (uint64_t)seed, &e) != XD_OK) fail_msg("%s", e.msg);
    load_ckpt("hint/last.safetensors", &after);
    assert_int_equal(init.n_params, after.n_params);
    for (int i = 0; i < init.n_params; i++) {
        const nn_param *p = &init.params[i];
        const nn_param *q = nn_model_param(&after, p->name);
        assert_non_null(q);
        const float *x = nn_model_param_data(&init, p), *y = nn_model_param_data(&after, q);
        size_t diff = 0;
        for (size_t j = 0; j < p->n; j++) diff += x[j] != y[j];
        if (node_of_param(p->name, "logits") && diff)
            fail_msg("stage 1 trains up to 'feat', but %zu values of %s changed", diff, p->name);
        if (node_of_param(p->name, "fc1") && diff < p->n / 2)
            fail_msg("%s should have been trained in stage 1 (%zu of %zu changed)", p->name, diff, p->n);
    }
    nn_model_free(&init);
    nn_model_free(&after);
    /* the second stage then trains the head too */
    r = run_ok("hint", text, "hint", seed, 0, 1);
    assert_int_equal(r.finished, 1);
    json_t *m = read_metrics("hint");
    assert_int_equal(json_array_size(m), 2);
    assert_int_equal((int)num(json_array_get(m, 0), "stage"), 1);
    assert_int_equal((int)num(json_array_get(m, 1), "stage"), 2);
    assert_true(json_is_number(json_object_get(json_array_get(m, 0), "loss.0.hint")));
    assert_true(json_is_number(json_object_get(json_array_get(m, 1), "loss.0.ce")));
    json_decref(m);
    recipe_free(&rc);
    free(text);
}

/* Mean attention-transfer distance between the student's and the teacher's r1 maps over the test
 * split. */
static double at_distance(nn_model *s, nn_model *t)
{
    split_feed sf;
    open_split(&sf, "toy.xds", "test", "image", s, "", "");
    int ns = nn_model_find(s, "r1"), nt = nn_model_find(t, "r1");
    assert_true(ns >= 0 && nt >= 0);
    const nn_node *a = nn_model_node(s, ns), *b = nn_model_node(t, nt);
    double sum = 0.0;
    int batches = 0;
    xd_err e;
    xd_err_clear(&e);
    for (size_t i0 = 0; i0 < sf.f.n; i0 += BATCH) {
        uint32_t idx[BATCH];
        int n = sf.f.n - i0 < BATCH ? (int)(sf.f.n - i0) : BATCH;
        for (int i = 0; i < n; i++) idx[i] = (uint32_t)(i0 + (size_t)i);
        TU_OK(feed_fill(&sf.f, idx, n, 0, 0, 0, sf.input, &e));
        nn_model_forward(s, sf.input, n, NULL);
        nn_model_forward(t, sf.input, n, NULL);
        sum += kd_at_forward(nn_model_out(s, ns), nn_model_out(t, nt), NULL, n, a->h * a->w, a->c,
                             b->c);
        batches++;
    }
    close_split(&sf);
    return sum / batches;
}

static void test_attention_transfer(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = student_recipe("", CNN_MODEL, TEACHERS, 2, "{kind: adamw, lr: 0.01}",
                                "  - {kind: attention, student_tap: r1, teacher_tap: r1, weight: 10}\n");
    const long seed = 4;
    run_ok("att", text, "att", seed, 0, 0);
    json_t *m = read_metrics("att");
    double a1 = num(json_array_get(m, 0), "loss.0.attention"),
           a2 = num(json_array_get(m, 1), "loss.0.attention");
    assert_true(isfinite(a1) && a1 > 0.0 && a1 <= 2.0); /* unit maps: distance at most 2 */
    assert_true(a2 < a1);
    json_decref(m);
    recipe rc;
    load_recipe("att", text, &rc);
    nn_model init, after, teacher;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&init, rc.model, BATCH, (uint64_t)seed, &e) != XD_OK) fail_msg("%s", e.msg);
    load_ckpt("att/last.safetensors", &after);
    load_ckpt(TEACHER_CKPT, &teacher);
    double before = at_distance(&init, &teacher), now = at_distance(&after, &teacher);
    print_message("attention distance to the teacher: %.4f -> %.4f\n", before, now);
    if (!(now < 0.5 * before)) fail_msg("attention distance %.4f -> %.4f: not halved", before, now);
    nn_model_free(&init);
    nn_model_free(&after);
    nn_model_free(&teacher);
    recipe_free(&rc);
    free(text);
}

/* Two teachers in one stage: one cached for KD, one run online for a hint. */
static void test_two_teachers(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = tu_fmt("data: {path: toy.xds, labels_per_class: 5}\nmodel: \"" MLP_MODEL "\"\n"
                     "teachers:\n"
                     "  - {name: a, checkpoint: " TEACHER_CKPT "}\n"
                     "  - {name: b, checkpoint: teacher/last.safetensors}\n"
                     "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                     "losses:\n"
                     "  - {kind: kd, teacher: a}\n"
                     "  - {kind: hint, teacher: b, student_tap: feat, teacher_tap: feat, weight: 0.5}\n");
    train_result r = run_ok("two", text, "two", 1, 0, 0);
    assert_true(r.final_acc >= 0.9);
    json_t *m = read_metrics("two");
    json_t *l = json_array_get(m, 1);
    double kd = num(l, "loss.0.kd"), hint = num(l, "loss.1.hint");
    assert_true(fabs(num(l, "loss") - (kd + 0.5 * hint)) < 1e-5 * (1.0 + kd + hint));
    json_decref(m);
    free(text);
}

/* Two KD losses on two heads of one teacher read each head's outputs, cached or not. */
static void test_cache_two_teacher_heads(void **state)
{
    (void)state;
    ensure_data();
    nn_model two;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(nn_model_build(&two, "input h=8 w=8 c=1; flatten; linear out=16 name=fc; relu name=f; "
                               "linear out=4 name=early head; linear out=4 name=late from=f head",
                         16, 5, &e));
    TU_OK(ckpt_save("twoheads.safetensors", &two, NULL, 0, &e));
    nn_model_free(&two);
    const char *losses = "losses:\n"
                         "  - {kind: kd, teacher_head: early, temperature: 1}\n"
                         "  - {kind: kd, teacher_head: late, temperature: 1}\n";
    char *on = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: t, checkpoint: twoheads.safetensors}\n"
                   "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n%s", losses);
    char *off = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                    "teachers:\n  - {name: t, checkpoint: twoheads.safetensors, cache: false}\n"
                    "train: {epochs: 1, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n%s", losses);
    run_ok("heads-on", on, "heads-on", 1, 0, 0);
    run_ok("heads-off", off, "heads-off", 1, 0, 0);
    json_t *a = read_metrics("heads-on"), *b = read_metrics("heads-off");
    for (int l = 0; l < 2; l++) {
        char key[32];
        snprintf(key, sizeof key, "loss.%d.kd", l);
        double x = num(json_array_get(a, 0), key), y = num(json_array_get(b, 0), key);
        if (fabs(x - y) > 1e-3 * (1.0 + fabs(y)))
            fail_msg("%s: %.6f with the cache, %.6f without", key, x, y);
    }
    json_decref(a);
    json_decref(b);
    free(on);
    free(off);
}

static float resume_scalar(const char *dir, const char *name)
{
    char *rp = path2(dir, "resume.safetensors");
    io_st_file *f;
    xd_err e;
    xd_err_clear(&e);
    if (io_st_open(rp, &f, &e) != XD_OK) fail_msg("%s", e.msg);
    const io_tensor *t = io_st_find(f, name);
    if (!t) fail_msg("%s: no '%s'", rp, name);
    float v = ((const float *)t->data)[0];
    io_st_close(f);
    free(rp);
    return v;
}

/* Contrastive alignment of the student's features with the teacher's, with a learned
 * temperature: the loss falls, the temperature moves and is clamped, a resumed run is exact. */
static void test_contrastive(void **state)
{
    (void)state;
    ensure_teacher();
    const char *losses = "  - kind: ce\n"
                         "  - {kind: contrastive, student_tap: feat, teacher_tap: feat, "
                         "temperature: 0.2, learn_temperature: true}\n";
    char *text = student_recipe("  labels_per_class: 5\n", MLP_MODEL, TEACHERS, 3,
                                "{kind: adamw, lr: 0.01}", losses);
    train_result r = run_ok("clip", text, "clip", 1, 0, 0);
    json_t *m = read_metrics("clip");
    double c1 = num(json_array_get(m, 0), "loss.1.contrastive"),
           c3 = num(json_array_get(m, 2), "loss.1.contrastive");
    print_message("contrastive %.4f -> %.4f, accuracy %.3f\n", c1, c3, r.final_acc);
    /* B = 16: a batch of unrelated pairs starts near log 16 = 2.77 */
    assert_true(c1 > 0.5 && c1 < 3.5);
    if (!(c3 < 0.8 * c1)) fail_msg("contrastive loss %.4f -> %.4f did not fall", c1, c3);
    json_decref(m);
    float theta = resume_scalar("clip", "loss1.theta");
    print_message("theta %.4f (start %.4f)\n", theta, log(1.0 / 0.2));
    assert_true(fabs(theta - log(1.0 / 0.2)) > 1e-3);
    assert_true(theta >= 0.0f && theta <= (float)ALIGN_CLIP_THETA_MAX);
    int stops[] = {1};
    check_resume("clip-resume", text, 3, stops, 1);
    /* a fixed temperature stays out of the resume state */
    char *fixed = student_recipe("  labels_per_class: 5\n", MLP_MODEL, TEACHERS, 1,
                                 "{kind: adamw, lr: 0.01}",
                                 "  - {kind: contrastive, student_tap: feat, teacher_tap: feat}\n");
    run_ok("clip-fixed", fixed, "clip-fixed", 1, 0, 0);
    char *rp = path2("clip-fixed", "resume.safetensors");
    io_st_file *f;
    xd_err e;
    xd_err_clear(&e);
    if (io_st_open(rp, &f, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_null(io_st_find(f, "loss0.theta"));
    io_st_close(f);
    free(rp);
    free(fixed);
    /* a fixed temperature is used as given, outside CLIP's clamp too */
    double at[2];
    const char *temps[2] = {"1", "2"};
    for (int k = 0; k < 2; k++) {
        char *losses_t = tu_fmt("  - {kind: contrastive, student_tap: feat, teacher_tap: feat, "
                             "temperature: %s}\n", temps[k]);
        char *tt = student_recipe("  labels_per_class: 5\n", MLP_MODEL, TEACHERS, 1,
                                  "{kind: adamw, lr: 0.01}", losses_t);
        char *dir = tu_fmt("clip-t%s", temps[k]);
        run_ok(dir, tt, dir, 1, 0, 0);
        json_t *mt = read_metrics(dir);
        at[k] = num(json_array_get(mt, 0), "loss.0.contrastive");
        json_decref(mt);
        free(dir);
        free(tt);
        free(losses_t);
    }
    print_message("contrastive at T=1 %.5f, T=2 %.5f\n", at[0], at[1]);
    assert_true(fabs(at[0] - at[1]) > 1e-3);
    free(text);
}

/* A projector started from a map fitted on the two models' taps (Procrustes, CCA) matches the
 * teacher's features better at once than a random one; a frozen one keeps its map. */
static void test_projector_init(void **state)
{
    (void)state;
    ensure_teacher();
    const char *inits[3] = {"random", "procrustes", "cca"};
    double first[3];
    for (int k = 0; k < 3; k++) {
        /* lr so small that the first epoch's loss is the starting map's */
        char *losses = tu_fmt("  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                           "projector: linear, projector_init: %s, projector_frozen: %s}\n",
                           inits[k], k ? "true" : "false");
        char *text = student_recipe("", MLP_MODEL, TEACHERS, 2, "{kind: sgd, lr: 0.000001}", losses);
        char *dir = tu_fmt("pinit-%s", inits[k]);
        run_ok(dir, text, dir, 1, 0, 0);
        json_t *m = read_metrics(dir);
        first[k] = num(json_array_get(m, 0), "loss.0.feature");
        json_decref(m);
        if (k) {
            /* frozen: the map in the resume state after 1 and after 2 epochs is the same */
            char *d1 = tu_fmt("%s-1", dir);
            run_ok(dir, text, d1, 1, 1, 0);
            char *a = path2(d1, "resume.safetensors"), *b = path2(dir, "resume.safetensors");
            io_st_file *fa = NULL, *fb = NULL;
            xd_err e;
            xd_err_clear(&e);
            if (io_st_open(a, &fa, &e) != XD_OK || io_st_open(b, &fb, &e) != XD_OK)
                fail_msg("%s", e.msg);
            const io_tensor *ta = io_st_find(fa, "proj0.param"), *tb = io_st_find(fb, "proj0.param");
            assert_non_null(ta);
            assert_non_null(tb);
            assert_memory_equal(ta->data, tb->data, sizeof(float) * (size_t)ta->shape[0]);
            io_st_close(fa);
            io_st_close(fb);
            free(a);
            free(b);
            free(d1);
        }
        free(dir);
        free(text);
        free(losses);
    }
    print_message("first-epoch feature loss: random %.4f, procrustes %.4f, cca %.4f\n", first[0],
                  first[1], first[2]);
    assert_true(first[1] < 0.7 * first[0]);
    assert_true(first[2] < 0.7 * first[0]);
    /* cca is a least-squares fit: no worse than the rotation */
    assert_true(first[2] <= first[1] * 1.05);
    char *bad = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: sgd, lr: 0.1}",
                               "  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                               "projector_frozen: true}\n");
    expect_recipe_error("pinit-frozen", bad, "losses.0.projector_frozen: a frozen projector needs "
                                             "projector_init");
    free(bad);
    /* an MLP projector learns; it has no closed-form start */
    char *mlp = student_recipe("", MLP_MODEL, TEACHERS, 3, "{kind: adamw, lr: 0.01}",
                               "  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                               "projector: mlp}\n");
    run_ok("pmlp", mlp, "pmlp", 1, 0, 0);
    json_t *m = read_metrics("pmlp");
    double f1 = num(json_array_get(m, 0), "loss.0.feature"), f3 = num(json_array_get(m, 2), "loss.0.feature");
    print_message("mlp projector: feature loss %.4f -> %.4f\n", f1, f3);
    assert_true(f3 < 0.8 * f1);
    json_decref(m);
    char *mlp_init = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: sgd, lr: 0.1}",
                                    "  - {kind: feature, student_tap: feat, teacher_tap: feat, "
                                    "projector: mlp, projector_init: cca}\n");
    expect_recipe_error("pmlp-init", mlp_init, "losses.0: projector_init cca fits a linear map");
    free(mlp);
    free(mlp_init);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kd_students),
        cmocka_unit_test(test_teacher_cache),
        cmocka_unit_test(test_feature_loss_projector),
        cmocka_unit_test(test_hint_stage_freezes_upper_layers),
        cmocka_unit_test(test_attention_transfer),
        cmocka_unit_test(test_two_teachers),
        cmocka_unit_test(test_cache_two_teacher_heads),
        cmocka_unit_test(test_contrastive),
        cmocka_unit_test(test_projector_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
