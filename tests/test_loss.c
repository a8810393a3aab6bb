/* nn/loss: cross-entropy (with label mask) and MSE against PyTorch's golden values
 * (tests/golden/kd_golden_seed7.txt): float32 within 1e-5 relative; logits of +-1000. */
#include "tests/support/testutil.h"

#include <math.h>
#include <string.h>

#include "core/runtime.h"
#include "nn/loss.h"
#include "tests/support/golden.h"

enum { B = 4, K = 5, D = 6 };

static golden *load(void) { return golden_load(tu_src_path("tests/golden/kd_golden_seed7.txt")); }

static void test_ce_golden(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], yf[B], grad[B * K], want[B * K], probs[B * K], dl[B * K] = {0};
    int32_t y[B];
    assert_int_equal(golden_get(g, "INPUTS", "s", s, B * K), B * K);
    assert_int_equal(golden_get(g, "INPUTS", "y", yf, B), B);
    for (int i = 0; i < B; i++) y[i] = (int32_t)yf[i];
    float loss = nn_ce_forward(probs, s, y, NULL, B, K);
    double ref = golden_scalar(g, "CE", "loss32");
    assert_true(fabs(loss - ref) <= 1e-5 * fabs(ref));
    nn_ce_backward(dl, probs, y, NULL, B, K, 1.0f);
    assert_int_equal(golden_get(g, "CE", "grad32", want, B * K), B * K);
    tu_assert_close(dl, want, B * K, 1e-5, 1e-7, "dCE/ds");
    /* the float64 reference too, to the float32 precision */
    golden_get(g, "CE", "grad64", grad, B * K);
    tu_assert_close(dl, grad, B * K, 1e-5, 1e-7, "dCE/ds vs float64");
    golden_free(g);
}

static void test_ce_mask(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], yf[B], probs[B * K], dl[B * K] = {0}, dfull[B * K] = {0}, p2[B * K];
    int32_t y[B];
    golden_get(g, "INPUTS", "s", s, B * K);
    golden_get(g, "INPUTS", "y", yf, B);
    for (int i = 0; i < B; i++) y[i] = (int32_t)yf[i];
    /* rows 1 and 3 unlabelled: loss is the mean of rows 0 and 2 only */
    const uint8_t mask[B] = {1, 0, 1, 0};
    float loss = nn_ce_forward(probs, s, y, mask, B, K);
    /* per-sample CE from the golden file's auxiliary section: 1.5099210064, 7.1193607849 */
    assert_true(fabs(loss - (1.5099210064440927 + 7.1193607848770899) / 2) < 1e-5);
    nn_ce_backward(dl, probs, y, mask, B, K, 1.0f);
    nn_ce_forward(p2, s, y, NULL, B, K);
    nn_ce_backward(dfull, p2, y, NULL, B, K, 1.0f);
    for (int k = 0; k < K; k++) {
        assert_true(dl[1 * K + k] == 0.0f && dl[3 * K + k] == 0.0f);
        /* labelled rows: mean over 2 instead of 4 -> twice the full-batch gradient */
        assert_true(fabsf(dl[k] - 2.0f * dfull[k]) < 1e-6f);
    }
    /* nothing labelled: zero loss, no gradient */
    const uint8_t none[B] = {0, 0, 0, 0};
    float dz[B * K] = {0};
    assert_true(nn_ce_forward(probs, s, y, none, B, K) == 0.0f);
    nn_ce_backward(dz, probs, y, none, B, K, 1.0f);
    for (int i = 0; i < B * K; i++) assert_true(dz[i] == 0.0f);
    golden_free(g);
}

static void test_ce_stability(void **state)
{
    (void)state;
    golden *g = load();
    const float s[6] = {1000, 0, -1000, 50, 50, 50};
    const int32_t y[2] = {0, 2};
    float probs[6], dl[6] = {0}, want[6];
    float loss = nn_ce_forward(probs, s, y, NULL, 2, 3);
    assert_true(isfinite(loss));
    double ref = golden_scalar(g, "STABILITY", "CE");
    assert_true(fabs(loss - ref) <= 1e-6 * fabs(ref));
    nn_ce_backward(dl, probs, y, NULL, 2, 3, 1.0f);
    assert_int_equal(golden_get(g, "STABILITY", "dCE/ds", want, 6), 6);
    tu_assert_close(dl, want, 6, 1e-6, 1e-8, "dCE/ds at +-1000");
    golden_free(g);
}

static void test_mse_golden(void **state)
{
    (void)state;
    golden *g = load();
    float fs[B * D], ft[B * D], want[B * D], d[B * D] = {0};
    golden_get(g, "INPUTS", "fs", fs, B * D);
    golden_get(g, "INPUTS", "ft", ft, B * D);
    float loss = nn_mse_forward(fs, ft, B * D);
    double ref = golden_scalar(g, "MSE_feat", "loss32");
    assert_true(fabs(loss - ref) <= 1e-5 * fabs(ref));
    nn_mse_backward(d, fs, ft, B * D, 1.0f);
    assert_int_equal(golden_get(g, "MSE_feat", "grad32", want, B * D), B * D);
    tu_assert_close(d, want, B * D, 1e-5, 1e-8, "dMSE/dfs");
    golden_free(g);
}

static void test_count_correct(void **state)
{
    (void)state;
    const float sc[6] = {0.1f, 0.7f, 0.2f, 0.5f, 0.5f, 0.0f};
    const int32_t y1[2] = {1, 0}, y2[2] = {1, 1};
    assert_int_equal(nn_count_correct(sc, y1, 2, 3), 2); /* tie: first maximum wins */
    assert_int_equal(nn_count_correct(sc, y2, 2, 3), 1);
}

/* Many rows run side by side on 2 threads (the parallel branch) with the bits of 1 thread: the
 * probabilities and the loss; with a mask and row weights too; and that loss is the weighted mean
 * of the rows' own -log p, so that every row is in it. (The order of the double sum is the code's
 * to keep: positive terms summed in double change the float loss in no order a test could
 * build.) */
static void test_ce_threads_same_bits(void **state)
{
    (void)state;
    enum { R = 2348, C = 10 }; /* more rows than a chunk (CE_CHUNK) */
    static float s[R * C], p1[R * C], p2[R * C], rw[R];
    int32_t y[R];
    uint8_t mask[R];
    tu_fill_uniform(s, R * C, -8.0f, 8.0f, 11);
    tu_fill_uniform(rw, R, 0.5f, 2.0f, 12);
    for (int i = 0; i < R; i++) {
        y[i] = (int32_t)(i * 7 % C);
        mask[i] = i % 3 != 1;
    }
    for (int with = 0; with < 2; with++) {
        const uint8_t *mk = with ? mask : NULL;
        const float *w = with ? rw : NULL;
        xd_threads_set(1);
        const float l1 = nn_ce_forward_w(p1, s, y, mk, w, R, C);
        xd_threads_set(2);
        const float l2 = nn_ce_forward_w(p2, s, y, mk, w, R, C);
        assert_memory_equal(&l1, &l2, sizeof l1);
        assert_memory_equal(p1, p2, sizeof p1);
        double num = 0.0, den = 0.0;
        for (int i = 0; i < R; i++)
            if (!mk || mk[i]) {
                num -= (w ? w[i] : 1.0) * log((double)p1[i * C + y[i]]);
                den += w ? w[i] : 1.0;
            }
        assert_true(fabs(l2 - num / den) <= 1e-5 * fabs(num / den));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ce_golden),   cmocka_unit_test(test_ce_mask),
        cmocka_unit_test(test_ce_stability), cmocka_unit_test(test_mse_golden),
        cmocka_unit_test(test_count_correct), cmocka_unit_test(test_ce_threads_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
