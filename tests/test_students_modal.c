/* distill/trainer, students across modalities and label sets: a text student taught by an image
 * teacher without a single label, an image student taught by a text teacher, label maps (a list,
 * or from how two label sets co-occur), averaged languages and text scored in every language.
 * The image students of the image teacher: test_students.c. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "distill/kd.h"
#include "nn/model.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

static void test_text_student_from_image_teacher(void **state)
{
    (void)state;
    ensure_teacher();
    if (!exists("unlab.xds")) {
        tiny_spec sp = tiny_default();
        sp.unlabelled = 1;
        tiny_write("unlab.xds", &sp);
    }
    /* no training label at all: the image teacher's outputs on each example's image are the only
     * signal for the text student reading the same example's English text */
    char *text = tu_fmt("data:\n  path: unlab.xds\n  student_view: text.en\n  text: \"buckets=512\"\n"
                     "model: \"" TEXT_MODEL "\"\n"
                     "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT ", view: image}\n"
                     "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.05}}\n"
                     "losses:\n  - {kind: kd, temperature: 2}\n");
    train_result r = run_ok("xmodal", text, "xmodal", 1, 0, 0);
    print_message("text student taught by the image teacher: %.3f (chance 0.25)\n", r.final_acc);
    assert_true(r.final_acc >= 0.8);
    json_error_t je;
    json_t *s = json_load_file("xmodal/summary.json", 0, &je);
    assert_non_null(s);
    assert_int_equal((int)num(s, "labels_used"), 0);
    json_decref(s);
    /* and the German texts work the same way */
    char *de = tu_fmt("data:\n  path: unlab.xds\n  student_view: text.de\n  text: \"buckets=512\"\n"
                   "model: \"" TEXT_MODEL "\"\n"
                   "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT ", view: image}\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.05}}\n"
                   "losses:\n  - {kind: kd, temperature: 2}\n");
    r = run_ok("xmodal-de", de, "xmodal-de", 1, 0, 0);
    assert_true(r.final_acc >= 0.8);
    free(text);
    free(de);
}

/* A text teacher (trained with its own text settings) teaches an image student whose recipe says
 * nothing about text: the teacher must read the ids it was trained on. */
static void test_image_student_from_text_teacher(void **state)
{
    (void)state;
    train_text_teacher("textteacher", "text.de");
    char *st = tu_fmt("data: {path: toy.xds, labels_per_class: 2}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: txt, checkpoint: textteacher/best.safetensors, "
                   "view: text.de}\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                   "losses:\n  - kind: ce\n  - {kind: kd, temperature: 2}\n");
    train_result r = run_ok("fromtext", st, "fromtext", 1, 0, 0);
    assert_true(r.final_acc >= 0.9);
    free(st);
}

/* A label map moves the teacher's probability onto the student's classes: with no student label
 * at all, a student taught through the map [1, 2, 3, 0] learns the shifted classes (so it is
 * wrong on almost every test example), through the identity the right ones. */
static void test_label_map_list(void **state)
{
    (void)state;
    ensure_teacher();
    const char *maps[2] = {"[0, 1, 2, 3]", "[1, 2, 3, 0]"};
    double acc[2];
    for (int k = 0; k < 2; k++) {
        char *losses = tu_fmt("  - {kind: kd, temperature: 2, label_map: %s}\n", maps[k]);
        char *text = student_recipe("  label_fraction: 0\n", MLP_MODEL, TEACHERS, 3,
                                    "{kind: adamw, lr: 0.01}", losses);
        char *dir = tu_fmt("lmap-%d", k);
        acc[k] = run_ok(dir, text, dir, 1, 0, 0).final_acc;
        free(dir);
        free(text);
        free(losses);
    }
    print_message("label map: identity %.3f, shifted %.3f\n", acc[0], acc[1]);
    assert_true(acc[0] >= 0.9);
    assert_true(acc[1] <= 0.1);
    /* a list that does not fit the teacher, and a class the student does not have */
    char *t1 = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: adamw, lr: 0.01}",
                              "  - {kind: kd, label_map: [0, 1, 2]}\n");
    expect_error("lmap-short", t1, "label_map lists 3 teacher classes", "has 4");
    char *t2 = student_recipe("", MLP_MODEL, TEACHERS, 1, "{kind: adamw, lr: 0.01}",
                              "  - {kind: kd, label_map: [0, 1, 2, 4]}\n");
    expect_error("lmap-range", t2, "label_map", "4");
    free(t1);
    free(t2);
}

/* label_map: label — the teacher knows the 4 quadrants, the student (no label of its own) the 2
 * rows of the data set's label.row; the map comes from how the two label sets co-occur. */
static void test_label_map_from_data(void **state)
{
    (void)state;
    ensure_teacher();
    const char *row_model = "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu name=feat; "
                            "linear out=2 name=logits head";
    char *text = student_recipe("  label: label.row\n  label_fraction: 0\n", row_model, TEACHERS, 3,
                                "{kind: adamw, lr: 0.01}",
                                "  - {kind: kd, temperature: 2, label_map: label}\n");
    train_result r = run_ok("lmap-data", text, "lmap-data", 1, 0, 0);
    print_message("rows learnt from a quadrant teacher: %.3f (chance 0.5)\n", r.final_acc);
    assert_true(r.final_acc >= 0.9);
    /* a run that cannot start leaves the folder's earlier results alone */
    char *missing = student_recipe("  label: label.row\n  label_fraction: 0\n", row_model, TEACHERS, 3,
                                   "{kind: adamw, lr: 0.01}",
                                   "  - {kind: kd, temperature: 2, label_map: label.nosuch}\n");
    train_result rr;
    xd_err e;
    assert_int_not_equal(run_text("lmap-missing", missing, "lmap-data", 1, 0, 0, &rr, &e), XD_OK);
    print_message("lmap-missing: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "label.nosuch"));
    assert_true(exists("lmap-data/summary.json"));
    assert_true(exists("lmap-data/best.safetensors"));
    free(missing);
    /* without the map the widths differ, and the message says what would fix it */
    char *bad = student_recipe("  label: label.row\n", row_model, TEACHERS, 1,
                               "{kind: adamw, lr: 0.01}", "  - {kind: kd}\n");
    expect_error("lmap-none", bad, "2 outputs", "label_map");
    free(text);
    free(bad);
}

/* A text teacher that reads every language of an example and averages its outputs teaches an image
 * student without labels; `average` needs the text.* view. */
static void test_languages_average(void **state)
{
    (void)state;
    train_text_teacher("avgteacher", "text.*");
    char *st = tu_fmt("data: {path: toy.xds, label_fraction: 0}\nmodel: \"" MLP_MODEL "\"\n"
                   "teachers:\n  - {name: txt, checkpoint: avgteacher/best.safetensors, "
                   "view: text.*, languages: average}\n"
                   "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
                   "losses:\n  - {kind: kd, temperature: 2}\n"
                   "  - {kind: feature, student_tap: feat, teacher_tap: emb, weight: 0.1}\n");
    train_result a = run_ok("avgstudent", st, "avgstudent", 1, 0, 0);
    run_ok("avgstudent", st, "avgstudent-2", 1, 0, 0);
    print_message("image student from the averaged text teacher: %.3f\n", a.final_acc);
    assert_true(a.final_acc >= 0.9);
    assert_true(tu_same_file("avgstudent/last.safetensors", "avgstudent-2/last.safetensors"));
    char *bad = tu_fmt("data: {path: toy.xds}\nmodel: \"" MLP_MODEL "\"\n"
                    "teachers:\n  - {name: txt, checkpoint: avgteacher/best.safetensors, "
                    "view: text.de, languages: average}\n"
                    "train: {epochs: 1, batch: 16, optimizer: sgd}\n"
                    "losses:\n  - {kind: kd}\n");
    expect_recipe_error("avg-view", bad, "teachers.0.languages: 'average' needs the view text.*");
    free(st);
    free(bad);

    /* The targets are the mean of the teacher's logits over the languages: with a learning rate so
     * small that the student stays where it starts, the first epoch's KD loss is the KD of the
     * untrained student against those means, which the test recomputes from both languages'
     * logits. Batches of 20 split the 200 examples evenly, so the order does not matter. */
    enum { B20 = 20 };
    char *probe = tu_fmt("data: {path: toy.xds, label_fraction: 0}\nmodel: \"" MLP_MODEL "\"\n"
                      "teachers:\n  - {name: txt, checkpoint: avgteacher/best.safetensors, "
                      "view: text.*, languages: average}\n"
                      "train: {epochs: 1, batch: %d, optimizer: {kind: sgd, lr: 0.000000001}}\n"
                      "losses:\n  - {kind: kd, temperature: 2}\n", B20);
    run_ok("avgprobe", probe, "avgprobe", 1, 0, 0);
    json_t *m = read_metrics("avgprobe");
    const double got = num(json_array_get(m, 0), "loss.0.kd");
    json_decref(m);
    nn_model t, stu;
    xd_err e;
    xd_err_clear(&e);
    if (ckpt_load("avgteacher/best.safetensors", B20, &t, &e) != XD_OK) fail_msg("%s", e.msg);
    if (nn_model_build(&stu, MLP_MODEL, B20, 1, &e) != XD_OK) fail_msg("%s", e.msg);
    split_feed tf, sf;
    open_split(&tf, "toy.xds", "train", "text.*", &t, "", "buckets=512");
    open_split(&sf, "toy.xds", "train", "image", &stu, "", "");
    const int K = TINY_CLASSES;
    float avg[B20 * TINY_CLASSES], en[B20 * TINY_CLASSES], q[B20 * TINY_CLASSES], ps[B20 * TINY_CLASSES];
    uint8_t present[B20];
    uint32_t idx[B20];
    double want = 0.0, want_en = 0.0;
    for (int i0 = 0; i0 < N_TRAIN; i0 += B20) {
        for (int b = 0; b < B20; b++) idx[b] = (uint32_t)(i0 + b);
        memset(avg, 0, sizeof avg);
        for (int lang = 0; lang < 2; lang++) {
            TU_OK(feed_fill_lang(&tf.f, idx, B20, lang, tf.input, present, &e));
            nn_model_forward(&t, tf.input, B20, NULL);
            const float *out = nn_model_out(&t, nn_model_default_head(&t));
            for (int j = 0; j < B20 * K; j++) avg[j] += 0.5f * out[j];
            if (lang == 0) memcpy(en, out, sizeof en);
        }
        TU_OK(feed_fill(&sf.f, idx, B20, 0, 0, 0, sf.input, &e));
        nn_model_forward(&stu, sf.input, B20, NULL);
        const float *s_out = nn_model_out(&stu, nn_model_default_head(&stu));
        kd_soft_targets(q, avg, B20, K, 2.0f);
        want += kd_forward(ps, s_out, q, NULL, B20, K, 2.0f);
        kd_soft_targets(q, en, B20, K, 2.0f);
        want_en += kd_forward(ps, s_out, q, NULL, B20, K, 2.0f);
    }
    want /= N_TRAIN / B20;
    want_en /= N_TRAIN / B20;
    print_message("first-epoch KD %.6f; from averaged logits %.6f, from English alone %.6f\n", got,
                  want, want_en);
    assert_true(fabs(got - want) <= 1e-4 * fabs(want));
    assert_true(fabs(want_en - want) > 1e-2 * fabs(want));
    close_split(&tf);
    close_split(&sf);
    nn_model_free(&t);
    nn_model_free(&stu);
    free(probe);
}

/* A text.* feed is scored on every (example, language) pair: with both languages present for every
 * example, exactly the mean of the two single-language accuracies. A model trained on English only
 * scores differently on German, so the two parts are not the same number. */
static void test_text_eval_every_language(void **state)
{
    (void)state;
    train_text_teacher("en-only", "text.en");
    nn_model m;
    load_ckpt("en-only/best.safetensors", &m);
    const char *text = "buckets=512";
    double en = accuracy(&m, "toy.xds", "text.en", "", text),
           de = accuracy(&m, "toy.xds", "text.de", "", text),
           all = accuracy(&m, "toy.xds", "text.*", "", text);
    print_message("english-trained text model: en %.3f, de %.3f, every language %.3f\n", en, de, all);
    assert_true(en >= 0.9);
    assert_true(fabs(en - de) > 0.05);
    assert_true(fabs(all - 0.5 * (en + de)) < 1e-12);
    nn_model_free(&m);
    /* feed_fill_lang: a row per example in the language asked for, and which ones have a text */
    split_feed sf;
    nn_model t;
    load_ckpt("en-only/best.safetensors", &t);
    open_split(&sf, "toy.xds", "test", "text.*", &t, "", text);
    uint32_t idx[3] = {0, 5, 99};
    int32_t rows[3 * 64];
    uint8_t present[3];
    xd_err e;
    xd_err_clear(&e);
    TU_OK(feed_fill_lang(&sf.f, idx, 3, 1, rows, present, &e));
    for (int b = 0; b < 3; b++) {
        assert_int_equal(present[b], 1);
        assert_memory_equal(rows + b * sf.f.L, sf.f.ids + ((size_t)sf.f.n + idx[b]) * sf.f.L,
                            sizeof(int32_t) * (size_t)sf.f.L);
    }
    assert_int_equal(feed_fill_lang(&sf.f, idx, 3, 2, rows, present, &e), XD_EARG);
    idx[1] = 100;
    assert_int_equal(feed_fill_lang(&sf.f, idx, 3, 0, rows, present, &e), XD_EARG);
    close_split(&sf);
    nn_model_free(&t);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_student_from_image_teacher),
        cmocka_unit_test(test_image_student_from_text_teacher),
        cmocka_unit_test(test_label_map_list),
        cmocka_unit_test(test_label_map_from_data),
        cmocka_unit_test(test_languages_average),
        cmocka_unit_test(test_text_eval_every_language),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
