/* distill/labels: stratified, seeded label selection for low-label runs. */
#include "tests/support/testutil.h"

#include <string.h>

#include "core/bits.h"
#include "distill/labels.h"

enum { N = 1000, K = 10, W = (N + 63) / 64 };

/* member i of the set b, as 0 or 1 */
#define M(b, i) xd_bit(b, (size_t)(i))

static void make_labels(int32_t *y)
{
    for (int i = 0; i < N; i++) y[i] = (i * 7) % K; /* 100 per class */
}

static void test_per_class_and_fraction(void **state)
{
    (void)state;
    int32_t y[N];
    uint64_t m[W], m2[W];
    size_t kept;
    xd_err e;
    make_labels(y);
    TU_OK(labels_select(y, NULL, N, K, 1.0, 6, 3, m, &kept, &e));
    assert_int_equal(kept, 60);
    int per[K] = {0};
    for (int i = 0; i < N; i++) per[y[i]] += M(m, i);
    for (int c = 0; c < K; c++) assert_int_equal(per[c], 6);
    assert_int_equal(m[W - 1] >> (N % 64), 0); /* nothing past the examples */
    /* same seed, same picks; another seed, other picks */
    TU_OK(labels_select(y, NULL, N, K, 1.0, 6, 3, m2, &kept, &e));
    assert_memory_equal(m, m2, sizeof m);
    TU_OK(labels_select(y, NULL, N, K, 1.0, 6, 4, m2, &kept, &e));
    assert_memory_not_equal(m, m2, sizeof m);
    /* 5% of 100 per class */
    TU_OK(labels_select(y, NULL, N, K, 0.05, 0, 3, m, &kept, &e));
    assert_int_equal(kept, 50);
    /* everything */
    TU_OK(labels_select(y, NULL, N, K, 1.0, 0, 3, m, &kept, &e));
    assert_int_equal(kept, N);
    for (int i = 0; i < N; i++) assert_int_equal(M(m, i), 1);
    assert_int_equal(m[W - 1] >> (N % 64), 0);
    /* only examples that have a label in the data set can be picked */
    uint8_t in[N];
    for (int i = 0; i < N; i++) in[i] = i < N / 2;
    TU_OK(labels_select(y, in, N, K, 1.0, 1000, 3, m, &kept, &e));
    assert_int_equal(kept, N / 2);
    for (int i = N / 2; i < N; i++) assert_int_equal(M(m, i), 0);
    /* and without a selection, exactly those */
    TU_OK(labels_select(y, in, N, K, 1.0, 0, 3, m, &kept, &e));
    assert_int_equal(kept, N / 2);
    for (int i = 0; i < N; i++) assert_int_equal(M(m, i), in[i]);
}

static void test_errors(void **state)
{
    (void)state;
    int32_t y[N];
    uint64_t m[W];
    xd_err e;
    make_labels(y);
    assert_int_equal(labels_select(y, NULL, N, K, -0.5, 0, 1, m, NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "fraction");
    assert_int_equal(labels_select(y, NULL, N, K, 1.5, 0, 1, m, NULL, &e), XD_EARG);
    /* 0 keeps no label at all */
    size_t kept = 1;
    TU_OK(labels_select(y, NULL, N, K, 0.0, 0, 1, m, &kept, &e));
    assert_int_equal(kept, 0);
    for (int i = 0; i < N; i++) assert_int_equal(M(m, i), 0);
    y[17] = K;
    assert_int_equal(labels_select(y, NULL, N, K, 1.0, 0, 1, m, NULL, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "example 17 has label 10");
}

/* Balanced weights by hand: N / (K n_c) over the selected labels, 0 for an absent class, mean 1. */
static void test_balanced_weights(void **state)
{
    (void)state;
    const int32_t y[] = {0, 0, 0, 0, 1, 2, 2, 3, 3};
    const uint64_t sel[] = {0x7f}; /* examples 0-6: class 3 only where the run cannot see */
    float w[5];
    labels_balanced_weights(y, sel, 9, 5, w);
    /* n = 4, 1, 2, 0, 0: N = 7 over K = 3 classes */
    const float want[5] = {7.0f / 12, 7.0f / 3, 7.0f / 6, 0, 0};
    tu_assert_close(w, want, 5, 1e-6, 0, "balanced weights");
    double mean = 0;
    for (int i = 0; i < 9; i++) mean += M(sel, i) ? w[y[i]] : 0;
    assert_float_equal(mean / 7, 1.0, 1e-6);
    /* every label (sel NULL): class 3 counts too */
    labels_balanced_weights(y, NULL, 9, 5, w);
    assert_float_equal(w[3], 9.0 / (4 * 2), 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_class_and_fraction),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_balanced_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
