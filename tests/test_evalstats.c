/* Evaluation figures (distill/scores.h, distill/labels.h): every figure `eval` and training report
 * on a confusion matrix computed by hand (accuracy, per-class precision and recall, balanced
 * accuracy, expected calibration error, the JSON form); the validation examples held out of a
 * training split (disjoint from what training keeps, stratified, seeded); class names matched
 * by name. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/bits.h"
#include "distill/labels.h"
#include "distill/scores.h"

/* Eight rows of three classes. By hand:
 *   confusion (row true, column predicted): [2 1 0; 0 1 1; 1 0 2]
 *   accuracy 5/8; recall 2/3, 1/2, 2/3 (balanced accuracy 11/18); precision 2/3, 1/2, 2/3
 *   ECE, bins (b/15, (b+1)/15]: 0.9 and 0.92 in bin 13 (both right: |1 - 0.91| * 2/8), 0.62 in
 *   9 (wrong: 0.62 / 8), 0.95 and 0.99 in 14 (both right: |1 - 0.97| * 2/8), 0.5 in 7 (wrong:
 *   0.5 / 8), 0.7 in 10 (right: 0.3 / 8), 0.42 in 6 (wrong: 0.42 / 8): 0.26 in all (the one
 *   gap of accuracy 0.625 and mean confidence 0.75 would be 0.125). */
static const int32_t truth8[] = {0, 0, 0, 1, 1, 2, 2, 2};
static const int32_t pred8[] = {0, 0, 1, 1, 2, 2, 0, 2};
static const float conf8[] = {0.9f, 0.92f, 0.62f, 0.95f, 0.5f, 0.7f, 0.42f, 0.99f};

static void test_hand_computed_figures(void **state)
{
    (void)state;
    scores s;
    scores_init(&s, 3);
    scores_add_conf(&s, pred8, conf8, truth8, 8);
    const uint64_t want[9] = {2, 1, 0, 0, 1, 1, 1, 0, 2};
    for (int i = 0; i < 9; i++) assert_int_equal(s.count[i], want[i]);
    assert_true(fabs(scores_accuracy(&s) - 5.0 / 8.0) < 1e-12);
    const double recall[3] = {2.0 / 3.0, 0.5, 2.0 / 3.0}, precision[3] = {2.0 / 3.0, 0.5, 2.0 / 3.0};
    for (int k = 0; k < 3; k++) {
        assert_true(fabs(scores_class_accuracy(&s, k) - recall[k]) < 1e-12);
        assert_true(fabs(scores_class_precision(&s, k) - precision[k]) < 1e-12);
    }
    assert_true(fabs(scores_balanced_accuracy(&s) - 11.0 / 18.0) < 1e-12);
    if (fabs(scores_ece(&s) - 0.26) > 1e-6) fail_msg("ECE %.9f, by hand 0.26", scores_ece(&s));
    scores_free(&s);
}

/* Precision differs from recall when the predictions lean to a class; a class nothing is
 * predicted as has no precision; rows without confidence have no ECE. */
static void test_precision_and_undefined_figures(void **state)
{
    (void)state;
    /* truth 0 0 1 1, predicted 0 0 0 1: class 0 precision 2/3 recall 1, class 1 precision 1
     * recall 1/2; class 2 neither true nor predicted */
    const int32_t truth[] = {0, 0, 1, 1}, pred[] = {0, 0, 0, 1};
    scores s;
    scores_init(&s, 3);
    scores_add(&s, pred, truth, 4);
    assert_true(fabs(scores_class_precision(&s, 0) - 2.0 / 3.0) < 1e-12);
    assert_true(fabs(scores_class_accuracy(&s, 0) - 1.0) < 1e-12);
    assert_true(fabs(scores_class_precision(&s, 1) - 1.0) < 1e-12);
    assert_true(fabs(scores_class_accuracy(&s, 1) - 0.5) < 1e-12);
    assert_true(scores_class_precision(&s, 2) < 0);
    assert_true(scores_ece(&s) < 0);
    scores_free(&s);
}

/* Calibrated rows (confidence 0.75, three of four right) have ECE 0; fully confident wrong rows
 * ECE 1; confidence exactly 1 falls in the last bin and 0 in the first. */
static void test_ece_extremes(void **state)
{
    (void)state;
    const int32_t truth[] = {0, 0, 0, 0}, right3[] = {0, 0, 0, 1}, wrong[] = {1, 1, 1, 1};
    const float c75[] = {0.75f, 0.75f, 0.75f, 0.75f}, c1[] = {1.0f, 1.0f, 1.0f, 1.0f};
    const float c0[] = {0.0f, 0.0f, 0.0f, 0.0f};
    scores s;
    scores_init(&s, 2);
    scores_add_conf(&s, right3, c75, truth, 4);
    assert_true(fabs(scores_ece(&s)) < 1e-9);
    scores_free(&s);
    scores_init(&s, 2);
    scores_add_conf(&s, wrong, c1, truth, 4);
    assert_true(fabs(scores_ece(&s) - 1.0) < 1e-9);
    assert_int_equal(s.bin_n[SCORES_ECE_BINS - 1], 4);
    scores_free(&s);
    scores_init(&s, 2);
    scores_add_conf(&s, wrong, c0, truth, 4);
    assert_int_equal(s.bin_n[0], 4);
    assert_true(fabs(scores_ece(&s)) < 1e-9);
    scores_free(&s);
}

/* The JSON object has every figure, per class by name, and the matrix. */
static void test_scores_json(void **state)
{
    (void)state;
    scores s;
    scores_init(&s, 3);
    scores_add_conf(&s, pred8, conf8, truth8, 8);
    const char *names[3] = {"cat", "dog", "eel"};
    json_t *j = scores_json(&s, names);
    assert_int_equal(json_integer_value(json_object_get(j, "rows")), 8);
    assert_true(fabs(json_real_value(json_object_get(j, "accuracy")) - 0.625) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(j, "balanced_accuracy")) - 11.0 / 18.0) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(j, "ece")) - 0.26) < 1e-6);
    json_t *dog = json_array_get(json_object_get(j, "classes"), 1);
    assert_string_equal(json_string_value(json_object_get(dog, "name")), "dog");
    assert_int_equal(json_integer_value(json_object_get(dog, "support")), 2);
    assert_true(fabs(json_real_value(json_object_get(dog, "precision")) - 0.5) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(dog, "recall")) - 0.5) < 1e-12);
    json_t *row2 = json_array_get(json_object_get(j, "confusion"), 2);
    assert_int_equal(json_integer_value(json_array_get(row2, 0)), 1);
    assert_int_equal(json_integer_value(json_array_get(row2, 2)), 2);
    json_decref(j);
    /* no names: the class numbers */
    j = scores_json(&s, NULL);
    json_t *c0 = json_array_get(json_object_get(j, "classes"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "name")), "0");
    json_decref(j);
    scores_free(&s);
}

/* labels: class c has 10 + 10 c examples; the run may see the even-indexed ones */
enum { N_HOLD = 60, W_HOLD = (N_HOLD + 63) / 64 };
static void hold_fixture(int32_t *y, uint64_t *sel)
{
    int i = 0;
    memset(sel, 0, sizeof(uint64_t) * W_HOLD);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 10 + 10 * c; k++, i++) {
            y[i] = c;
            if (i % 2 == 0) xd_bit_set(sel, (size_t)i);
        }
    assert_int_equal(i, N_HOLD);
}

/* Held out: only examples the run may see, removed from what it trains on, per class
 * round(fraction * count) (at least one of two, never a class's last), the same for a seed and
 * others for another seed. */
static void test_hold_out(void **state)
{
    (void)state;
    int32_t y[N_HOLD];
    uint64_t sel0[W_HOLD], sel[W_HOLD], val[W_HOLD], sel2[W_HOLD], val2[W_HOLD];
    hold_fixture(y, sel0);
    memcpy(sel, sel0, sizeof sel);
    size_t n_val;
    xd_err e;
    TU_OK(labels_hold_out(y, sel, N_HOLD, 3, 0.2, 5, val, &n_val, &e));
    /* seen per class: 5, 10, 15 -> held 1, 2, 3 */
    int per[3] = {0}, kept[3] = {0};
    size_t total = 0;
    for (int i = 0; i < N_HOLD; i++) {
        if (xd_bit(val, (size_t)i)) {
            assert_true(xd_bit(sel0, (size_t)i)); /* a label the run may see */
            assert_false(xd_bit(sel, (size_t)i)); /* no longer a training label */
            per[y[i]]++;
            total++;
        }
        kept[y[i]] += xd_bit(sel, (size_t)i);
        if (!xd_bit(sel0, (size_t)i)) assert_false(xd_bit(sel, (size_t)i));
    }
    assert_int_equal(total, n_val);
    assert_int_equal(val[0] >> N_HOLD, 0); /* nothing past the examples */
    assert_int_equal(per[0], 1);
    assert_int_equal(per[1], 2);
    assert_int_equal(per[2], 3);
    assert_int_equal(kept[0] + kept[1] + kept[2], 30 - 6);
    /* the same seed, the same examples; another seed, others */
    memcpy(sel2, sel0, sizeof sel2);
    TU_OK(labels_hold_out(y, sel2, N_HOLD, 3, 0.2, 5, val2, &n_val, &e));
    assert_memory_equal(val, val2, sizeof val);
    assert_memory_equal(sel, sel2, sizeof sel);
    int differ = 0;
    for (uint64_t seed = 6; seed < 9; seed++) {
        memcpy(sel2, sel0, sizeof sel2);
        TU_OK(labels_hold_out(y, sel2, N_HOLD, 3, 0.2, seed, val2, &n_val, &e));
        differ += memcmp(val, val2, sizeof val) != 0;
    }
    assert_true(differ > 0);
    /* two seen examples: one held out; one seen: none (the class keeps its only label) */
    int32_t y4[3] = {0, 0, 1};
    uint64_t s4[1] = {7}, v4[1];
    TU_OK(labels_hold_out(y4, s4, 3, 2, 0.01, 1, v4, &n_val, &e));
    assert_int_equal(n_val, 1);
    assert_int_equal(xd_bit(v4, 0) + xd_bit(v4, 1), 1);
    assert_int_equal(xd_bit(v4, 2), 0);
    assert_int_equal(xd_bit(s4, 2), 1);
    assert_int_equal(labels_hold_out(y4, s4, 3, 2, 1.0, 1, v4, &n_val, &e), XD_EARG);
}

/* Names map by name in any order; equal lists say so; a name the other set lacks is an error
 * listing both sets. */
static void test_match_names(void **state)
{
    (void)state;
    const char *a[] = {"ant", "bee", "cat"}, *ba[] = {"cat", "ant"}, *z[] = {"ant", "zebra"};
    int32_t map[3];
    int same = -1;
    xd_err e;
    TU_OK(labels_match_names(a, 3, "A", a, 3, "B", map, &same, &e));
    assert_int_equal(same, 1);
    assert_int_equal(map[2], 2);
    TU_OK(labels_match_names(ba, 2, "A", a, 3, "B", map, &same, &e));
    assert_int_equal(same, 0);
    assert_int_equal(map[0], 2);
    assert_int_equal(map[1], 0);
    assert_int_equal(labels_match_names(z, 2, "the set", a, 3, "the model", map, NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'zebra'");
    tu_assert_err(&e, XD_EARG, "ant, zebra");
    tu_assert_err(&e, XD_EARG, "ant, bee, cat");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed_figures),
        cmocka_unit_test(test_precision_and_undefined_figures),
        cmocka_unit_test(test_ece_extremes),
        cmocka_unit_test(test_scores_json),
        cmocka_unit_test(test_hold_out),
        cmocka_unit_test(test_match_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
