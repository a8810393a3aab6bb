/* distill/kd: KD at T = 1, 2, 4, Hinton's total, cosine embedding loss and the +-1000 stability
 * case against PyTorch's golden values (tests/golden/kd_golden_seed7.txt, float32 within 1e-5
 * relative); top-k KD, soft-target CE and attention transfer against central finite differences,
 * hand-computed values and their defining identities. */
#include "tests/support/testutil.h"

#include <math.h>
#include <string.h>

#include "distill/kd.h"
#include "nn/loss.h"
#include "tests/support/golden.h"

enum { B = 4, K = 5, D = 6 };

static golden *load(void) { return golden_load(tu_src_path("tests/golden/kd_golden_seed7.txt")); }

static void load_logits(const golden *g, float *s, float *t)
{
    assert_int_equal(golden_get(g, "INPUTS", "s", s, B * K), B * K);
    assert_int_equal(golden_get(g, "INPUTS", "t", t, B * K), B * K);
}

static void assert_loss(double got, const golden *g, const char *section)
{
    double ref = golden_scalar(g, section, "loss32");
    if (!(fabs(got - ref) <= 1e-5 * fabs(ref)))
        fail_msg("%s: loss %.9g, golden %.9g", section, got, ref);
}

/* ---------------------------------------------------------------------------------------------
 * golden values */

static void test_kd_golden(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], t[B * K], q[B * K], ps[B * K], want[B * K];
    load_logits(g, s, t);
    const float temps[3] = {1.0f, 2.0f, 4.0f};
    const char *sections[3] = {"KD_T1", "KD_T2", "KD_T4"};
    for (int i = 0; i < 3; i++) {
        float ds[B * K];
        for (int j = 0; j < B * K; j++) ds[j] = 0.0f;
        kd_soft_targets(q, t, B, K, temps[i]);
        assert_loss(kd_forward(ps, s, q, NULL, B, K, temps[i]), g, sections[i]);
        kd_backward(ds, ps, q, NULL, B, K, temps[i], 1.0f);
        assert_int_equal(golden_get(g, sections[i], "grad32", want, B * K), B * K);
        tu_assert_close(ds, want, B * K, 1e-5, 1e-7, sections[i]);
        golden_get(g, sections[i], "grad64", want, B * K);
        tu_assert_close(ds, want, B * K, 1e-5, 1e-7, sections[i]);
    }
    /* the soft targets themselves: softmax(t/4) from the auxiliary section, row 0 */
    kd_soft_targets(q, t, B, K, 4.0f);
    const float pt4[K] = {0.44743071280453589f, 0.13285979972822931f, 0.11725558811840327f,
                          0.13857820995967227f, 0.16387568938915914f};
    tu_assert_close(q, pt4, K, 1e-6, 1e-8, "softmax(t/4)");
    golden_free(g);
}

static void test_kd_weight_accumulates(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], t[B * K], q[B * K], ps[B * K], ds[B * K], want[B * K];
    load_logits(g, s, t);
    kd_soft_targets(q, t, B, K, 2.0f);
    kd_forward(ps, s, q, NULL, B, K, 2.0f);
    /* backward adds: start from 1 and add 0.5 * gradient */
    for (int j = 0; j < B * K; j++) ds[j] = 1.0f;
    kd_backward(ds, ps, q, NULL, B, K, 2.0f, 0.5f);
    golden_get(g, "KD_T2", "grad64", want, B * K);
    for (int j = 0; j < B * K; j++) want[j] = 1.0f + 0.5f * want[j];
    tu_assert_close(ds, want, B * K, 1e-6, 1e-7, "1 + 0.5 dKD/ds");
    golden_free(g);
}

static void test_hinton_golden(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], t[B * K], q[B * K], ps[B * K], probs[B * K], yf[B], want[B * K];
    float ds[B * K] = {0};
    int32_t y[B];
    load_logits(g, s, t);
    golden_get(g, "INPUTS", "y", yf, B);
    for (int i = 0; i < B; i++) y[i] = (int32_t)yf[i];
    kd_soft_targets(q, t, B, K, 4.0f);
    float loss = kd_hinton_forward(ps, probs, s, q, y, NULL, B, K, 4.0f, 0.9f);
    assert_loss(loss, g, "HINTON_T4_A0.9");
    kd_hinton_backward(ds, ps, probs, q, y, NULL, B, K, 4.0f, 0.9f, 1.0f);
    assert_int_equal(golden_get(g, "HINTON_T4_A0.9", "grad32", want, B * K), B * K);
    tu_assert_close(ds, want, B * K, 1e-5, 1e-7, "dHinton/ds");
    golden_free(g);
}

static void test_hinton_label_mask(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], t[B * K], q[B * K], ps[B * K], probs[B * K], yf[B];
    int32_t y[B];
    load_logits(g, s, t);
    golden_get(g, "INPUTS", "y", yf, B);
    for (int i = 0; i < B; i++) y[i] = (int32_t)yf[i];
    kd_soft_targets(q, t, B, K, 4.0f);
    /* the label mask selects CE rows only; KD keeps all four rows */
    const uint8_t lm[B] = {1, 0, 1, 0};
    float loss = kd_hinton_forward(ps, probs, s, q, y, lm, B, K, 4.0f, 0.9f);
    double kd = golden_scalar(g, "KD_T4", "loss64");
    double ce = (1.5099210064440927 + 7.1193607848770899) / 2; /* per-sample CE of rows 0, 2 */
    assert_true(fabs(loss - (0.9 * kd + 0.1 * ce)) <= 1e-5 * (0.9 * kd + 0.1 * ce));
    golden_free(g);
}

static void test_kd_stability(void **state)
{
    (void)state;
    golden *g = load();
    const float s[6] = {1000, 0, -1000, 50, 50, 50}, t[6] = {0, 1000, 0, 1, 2, 3};
    float q[6], ps[6], ds[6] = {0}, want[6];
    kd_soft_targets(q, t, 2, 3, 4.0f);
    float loss = kd_forward(ps, s, q, NULL, 2, 3, 4.0f);
    assert_true(isfinite(loss));
    double ref = golden_scalar(g, "STABILITY", "KD_T4");
    if (!(fabs(loss - ref) <= 1e-5 * fabs(ref)))
        fail_msg("KD_T4 at +-1000: %.9g vs %.9g", loss, ref);
    kd_backward(ds, ps, q, NULL, 2, 3, 4.0f, 1.0f);
    assert_int_equal(golden_get(g, "STABILITY", "dKD_T4/ds", want, 6), 6);
    tu_assert_close(ds, want, 6, 1e-5, 1e-7, "dKD_T4/ds at +-1000");
    /* T = 1 too: no overflow, loss = KL of a point mass = 1000 for row 0 (plus row 1) */
    kd_soft_targets(q, t, 2, 3, 1.0f);
    loss = kd_forward(ps, s, q, NULL, 2, 3, 1.0f);
    assert_true(isfinite(loss) && loss > 499.0f && loss < 502.0f);
    golden_free(g);
}

static void test_cos_golden(void **state)
{
    (void)state;
    golden *g = load();
    float fs[B * D], ft[B * D], tf[B], want[B * D];
    int32_t tgt[B], pos[B] = {1, 1, 1, 1};
    golden_get(g, "INPUTS", "fs", fs, B * D);
    golden_get(g, "INPUTS", "ft", ft, B * D);
    assert_int_equal(golden_get(g, "INPUTS", "cos_target", tf, B), B);
    for (int i = 0; i < B; i++) tgt[i] = (int32_t)tf[i];

    /* all positive, margin 0; NULL targets mean the same */
    float da[B * D] = {0};
    assert_loss(kd_cos_forward(fs, ft, pos, NULL, B, D, 0.0f), g, "COS_pos_margin0");
    assert_loss(kd_cos_forward(fs, ft, NULL, NULL, B, D, 0.0f), g, "COS_pos_margin0");
    kd_cos_backward(da, NULL, fs, ft, pos, NULL, B, D, 0.0f, 1.0f);
    assert_int_equal(golden_get(g, "COS_pos_margin0", "grad32", want, B * D), B * D);
    tu_assert_close(da, want, B * D, 1e-5, 1e-7, "dCOS_pos/dfs");

    /* mixed +1/-1 with margin 0.1 */
    float dm[B * D] = {0};
    assert_loss(kd_cos_forward(fs, ft, tgt, NULL, B, D, 0.1f), g, "COS_mixed_margin0.1");
    kd_cos_backward(dm, NULL, fs, ft, tgt, NULL, B, D, 0.1f, 1.0f);
    golden_get(g, "COS_mixed_margin0.1", "grad32", want, B * D);
    tu_assert_close(dm, want, B * D, 1e-5, 1e-7, "dCOS_mixed/dfs");
    golden_free(g);
}

/* ---------------------------------------------------------------------------------------------
 * masks */

static void test_kd_mask(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], t[B * K], q[B * K], ps[B * K], dfull[B * K] = {0}, dm[B * K] = {0};
    load_logits(g, s, t);
    kd_soft_targets(q, t, B, K, 4.0f);
    /* per-sample KL at T=4 from the golden file's auxiliary section */
    const double kl[B] = {0.35492796483297678, 0.19810454150100498, 0.71715635934554511,
                          0.38567998020238115};
    const uint8_t mask[B] = {0, 1, 0, 1};
    float loss = kd_forward(ps, s, q, mask, B, K, 4.0f);
    double want = 16.0 * (kl[1] + kl[3]) / 2;
    assert_true(fabs(loss - want) <= 1e-5 * want);
    kd_backward(dm, ps, q, mask, B, K, 4.0f, 1.0f);
    kd_forward(ps, s, q, NULL, B, K, 4.0f);
    kd_backward(dfull, ps, q, NULL, B, K, 4.0f, 1.0f);
    for (int k = 0; k < K; k++) {
        assert_true(dm[0 * K + k] == 0.0f && dm[2 * K + k] == 0.0f);
        assert_true(fabsf(dm[1 * K + k] - 2.0f * dfull[1 * K + k]) < 1e-6f);
        assert_true(fabsf(dm[3 * K + k] - 2.0f * dfull[3 * K + k]) < 1e-6f);
    }
    const uint8_t none[B] = {0};
    float dz[B * K] = {0};
    assert_true(kd_forward(ps, s, q, none, B, K, 4.0f) == 0.0f);
    kd_backward(dz, ps, q, none, B, K, 4.0f, 1.0f);
    for (int i = 0; i < B * K; i++) assert_true(dz[i] == 0.0f);
    golden_free(g);
}

/* ---------------------------------------------------------------------------------------------
 * finite differences: a loss of the student tensor with everything else fixed */

typedef struct {
    float *s, *q, *scratch;
    const uint8_t *mask;
    int B, K;
    float T;
} kd_ctx;

static double kd_loss(void *p)
{
    kd_ctx *c = p;
    return kd_forward(c->scratch, c->s, c->q, c->mask, c->B, c->K, c->T);
}

static double soft_ce_loss(void *p)
{
    kd_ctx *c = p;
    return kd_soft_ce_forward(c->scratch, c->s, c->q, c->mask, c->B, c->K);
}

enum { TB = 3, TK = 7, TKK = 3 };

/* log-mean-exp of the row's logits outside the given top-k set, in double */
static float rest_of(const float *row, const int32_t *idx, int k)
{
    double m = -INFINITY, s = 0.0;
    int n = 0;
    for (int c = 0; c < TK; c++) {
        int kept = 0;
        for (int j = 0; j < k; j++) kept |= idx[j] == c;
        if (!kept) m = fmax(m, row[c]);
    }
    for (int c = 0; c < TK; c++) {
        int kept = 0;
        for (int j = 0; j < k; j++) kept |= idx[j] == c;
        if (!kept) {
            s += exp(row[c] - m);
            n++;
        }
    }
    return (float)(m + log(s / n));
}

/* top-k of a row by value, ties to the lower index (a plain selection, the tests' own) */
static void topk_of(const float *row, int k, float *val, int32_t *idx)
{
    int used[TK] = {0};
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < TK; c++)
            if (!used[c] && (best < 0 || row[c] > row[best])) best = c;
        used[best] = 1;
        val[j] = row[best];
        idx[j] = best;
    }
}

static void test_topk_full_equals_kd(void **state)
{
    (void)state;
    float t[TB * TK], s[TB * TK], val[TB * TK], qf[TB * TK], qk[TB * TK], ps[TB * TK];
    int32_t idx[TB * TK];
    tu_fill_uniform(t, TB * TK, -6.0f, 6.0f, 11);
    tu_fill_uniform(s, TB * TK, -6.0f, 6.0f, 12);
    t[3] = 1000.0f; /* and a huge logit */
    for (int b = 0; b < TB; b++) topk_of(t + b * TK, TK, val + b * TK, idx + b * TK);
    const float temps[2] = {1.0f, 4.0f};
    for (int i = 0; i < 2; i++) {
        kd_soft_targets(qf, t, TB, TK, temps[i]);
        kd_topk_targets(qk, val, idx, NULL, TB, TK, TK, temps[i]);
        assert_memory_equal(qf, qk, sizeof qf);
        float lf = kd_forward(ps, s, qf, NULL, TB, TK, temps[i]);
        float lk = kd_forward(ps, s, qk, NULL, TB, TK, temps[i]);
        assert_true(lf == lk);
    }
}

static void test_topk_targets(void **state)
{
    (void)state;
    float t[TB * TK], val[TB * TKK], rest[TB], q[TB * TK], full[TB * TK];
    int32_t idx[TB * TKK];
    tu_fill_uniform(t, TB * TK, -3.0f, 3.0f, 21);
    for (int b = 0; b < TB; b++) {
        topk_of(t + b * TK, TKK, val + b * TKK, idx + b * TKK);
        rest[b] = rest_of(t + b * TK, idx + b * TKK, TKK);
    }
    /* at T = 1 the rebuilt distribution keeps the kept classes' exact probabilities and spreads
     * the true remaining mass evenly */
    kd_soft_targets(full, t, TB, TK, 1.0f);
    kd_topk_targets(q, val, idx, rest, TB, TK, TKK, 1.0f);
    for (int b = 0; b < TB; b++) {
        double other = 0.0, sum = 0.0;
        for (int c = 0; c < TK; c++) sum += q[b * TK + c];
        assert_true(fabs(sum - 1.0) < 1e-6);
        for (int j = 0; j < TKK; j++) {
            int c = idx[b * TKK + j];
            assert_true(fabsf(q[b * TK + c] - full[b * TK + c]) <= 1e-6f * full[b * TK + c]);
        }
        for (int c = 0; c < TK; c++) {
            int kept = 0;
            for (int j = 0; j < TKK; j++) kept |= idx[b * TKK + j] == c;
            if (!kept) other += full[b * TK + c];
        }
        for (int c = 0; c < TK; c++) {
            int kept = 0;
            for (int j = 0; j < TKK; j++) kept |= idx[b * TKK + j] == c;
            if (!kept) assert_true(fabs(q[b * TK + c] - other / (TK - TKK)) < 1e-7);
        }
    }
    /* without rest, the dropped classes take the smallest kept logit: q_c = q of that class */
    kd_topk_targets(q, val, idx, NULL, TB, TK, TKK, 2.0f);
    for (int b = 0; b < TB; b++) {
        int last = idx[b * TKK + TKK - 1];
        for (int c = 0; c < TK; c++) {
            int kept = 0;
            for (int j = 0; j < TKK; j++) kept |= idx[b * TKK + j] == c;
            if (!kept) assert_true(q[b * TK + c] == q[b * TK + last]);
        }
        /* and kept classes at T = 2: ratio of q = exp((v0 - v1) / 2) */
        double r = (double)q[b * TK + idx[b * TKK]] / q[b * TK + idx[b * TKK + 1]];
        assert_true(fabs(r - exp((val[b * TKK] - val[b * TKK + 1]) / 2.0)) < 1e-5 * r);
    }
}

static void test_topk_kd_fd(void **state)
{
    (void)state;
    float t[TB * TK], s[TB * TK], val[TB * TKK], rest[TB], q[TB * TK], ps[TB * TK];
    float ds[TB * TK] = {0}, scratch[TB * TK];
    int32_t idx[TB * TKK];
    tu_fill_uniform(t, TB * TK, -3.0f, 3.0f, 31);
    tu_fill_uniform(s, TB * TK, -3.0f, 3.0f, 32);
    for (int b = 0; b < TB; b++) {
        topk_of(t + b * TK, TKK, val + b * TKK, idx + b * TKK);
        rest[b] = rest_of(t + b * TK, idx + b * TKK, TKK);
    }
    kd_topk_targets(q, val, idx, rest, TB, TK, TKK, 2.0f);
    const uint8_t mask[TB] = {1, 0, 1};
    kd_forward(ps, s, q, mask, TB, TK, 2.0f);
    kd_backward(ds, ps, q, mask, TB, TK, 2.0f, 1.0f);
    kd_ctx c = {s, q, scratch, mask, TB, TK, 2.0f};
    tu_check_grad("top-k KD T=2", s, TB * TK, ds, kd_loss, &c, 1e-2, 2e-3, 2e-5);
    for (int k = 0; k < TK; k++) assert_true(ds[TK + k] == 0.0f); /* masked row */
}

static void test_soft_ce(void **state)
{
    (void)state;
    float s[TB * TK], q[TB * TK], p[TB * TK], ds[TB * TK] = {0}, scratch[TB * TK];
    tu_fill_uniform(s, TB * TK, -4.0f, 4.0f, 41);
    tu_fill_uniform(q, TB * TK, 0.0f, 0.5f, 42); /* rows that do not sum to 1 */
    kd_soft_ce_forward(p, s, q, NULL, TB, TK);
    kd_soft_ce_backward(ds, p, q, NULL, TB, TK, 1.0f);
    kd_ctx c = {s, q, scratch, NULL, TB, TK, 1.0f};
    tu_check_grad("soft CE", s, TB * TK, ds, soft_ce_loss, &c, 1e-2, 2e-3, 2e-5);

    /* one-hot targets: exactly the hard-label cross-entropy of nn/loss */
    const int32_t y[TB] = {2, 0, 6};
    float d1[TB * TK] = {0}, d2[TB * TK] = {0}, probs[TB * TK];
    for (int i = 0; i < TB * TK; i++) q[i] = 0.0f;
    for (int b = 0; b < TB; b++) q[b * TK + y[b]] = 1.0f;
    float l1 = kd_soft_ce_forward(p, s, q, NULL, TB, TK);
    float l2 = nn_ce_forward(probs, s, y, NULL, TB, TK);
    assert_true(fabsf(l1 - l2) <= 1e-6f * l2);
    kd_soft_ce_backward(d1, p, q, NULL, TB, TK, 1.0f);
    nn_ce_backward(d2, probs, y, NULL, TB, TK, 1.0f);
    tu_assert_close(d1, d2, TB * TK, 1e-6, 1e-8, "soft CE one-hot vs CE");

    /* mask: only row 1 counts */
    const uint8_t mask[TB] = {0, 1, 0};
    float l3 = kd_soft_ce_forward(p, s, q, mask, TB, TK);
    double lse = 0.0, m = -INFINITY;
    for (int k = 0; k < TK; k++) m = fmax(m, s[TK + k]);
    for (int k = 0; k < TK; k++) lse += exp(s[TK + k] - m);
    assert_true(fabs(l3 - (m + log(lse) - s[TK + 0])) < 1e-5);
}

/* ---------------------------------------------------------------------------------------------
 * cosine: finite differences for both inputs away from the margin's kink */

typedef struct {
    float *a, *b;
    const int32_t *tgt;
    float margin;
} cos_ctx;

static double cos_loss(void *p)
{
    cos_ctx *c = p;
    return kd_cos_forward(c->a, c->b, c->tgt, NULL, TB, TK, c->margin);
}

static void test_cos_fd(void **state)
{
    (void)state;
    float a[TB * TK], b[TB * TK], da[TB * TK] = {0}, db[TB * TK] = {0};
    tu_fill_uniform(a, TB * TK, -1.0f, 1.0f, 51);
    tu_fill_uniform(b, TB * TK, -1.0f, 1.0f, 52);
    const int32_t tgt[TB] = {1, -1, -1};
    cos_ctx c = {a, b, tgt, -0.9f}; /* margin -0.9: every -1 row is active */
    kd_cos_backward(da, db, a, b, tgt, NULL, TB, TK, c.margin, 1.0f);
    tu_check_grad("cos da", a, TB * TK, da, cos_loss, &c, 1e-2, 2e-3, 2e-5);
    tu_check_grad("cos db", b, TB * TK, db, cos_loss, &c, 1e-2, 2e-3, 2e-5);
    /* margin above every cos: the -1 rows give neither loss nor gradient */
    float dz[TB * TK] = {0};
    kd_cos_backward(dz, NULL, a, b, tgt, NULL, TB, TK, 1.5f, 1.0f);
    for (int i = TK; i < TB * TK; i++) assert_true(dz[i] == 0.0f);
    const int32_t neg[TB] = {-1, -1, -1};
    assert_true(kd_cos_forward(a, b, neg, NULL, TB, TK, 1.5f) == 0.0f);
    /* parallel vectors: cos 1, loss 0 for +1 */
    assert_true(fabsf(kd_cos_forward(a, a, NULL, NULL, TB, TK, 0.0f)) < 1e-6f);
}

/* ---------------------------------------------------------------------------------------------
 * attention transfer */

enum { AB = 2, AHW = 6, ACS = 3, ACT = 5 };

typedef struct {
    float *fs, *ft;
    const uint8_t *mask;
} at_ctx;

static double at_loss(void *p)
{
    at_ctx *c = p;
    return kd_at_forward(c->fs, c->ft, c->mask, AB, AHW, ACS, ACT);
}

static void test_at_values(void **state)
{
    (void)state;
    /* one example, two positions, one channel: A_s = (1, 0), A_t = (0, 1), |diff|^2 = 2 */
    const float fs[2] = {3.0f, 0.0f}, ft[2] = {0.0f, -0.5f};
    assert_true(fabsf(kd_at_forward(fs, ft, NULL, 1, 2, 1, 1) - 2.0f) < 1e-7f);
    /* Q = (1, 1) from two channels vs Q = (2, 0) from one: A = (1,1)/sqrt2 vs (1, 0):
     * |diff|^2 = (1/sqrt2 - 1)^2 + 1/2 = 2 - sqrt2 */
    const float f2[4] = {1.0f, 0.0f, 0.0f, -1.0f}, f1[2] = {-1.5f, 0.0f};
    assert_true(fabs(kd_at_forward(f2, f1, NULL, 1, 2, 2, 1) - (2.0 - sqrt(2.0))) < 1e-6);
    /* scale invariance: AT(c F, F) = 0 */
    float a[AHW * ACS], b2[AHW * ACS], d[AHW * ACS] = {0};
    tu_fill_uniform(a, AHW * ACS, -1.0f, 1.0f, 61);
    for (int i = 0; i < AHW * ACS; i++) b2[i] = -3.0f * a[i];
    assert_true(kd_at_forward(b2, a, NULL, 1, AHW, ACS, ACS) < 1e-12f);
    kd_at_backward(d, b2, a, NULL, 1, AHW, ACS, ACS, 1.0f);
    for (int i = 0; i < AHW * ACS; i++) assert_true(fabsf(d[i]) < 1e-6f);
    /* all-zero maps: finite, no NaN */
    float z[AHW * ACS] = {0}, dz[AHW * ACS] = {0};
    float l = kd_at_forward(z, a, NULL, 1, AHW, ACS, ACS);
    kd_at_backward(dz, z, a, NULL, 1, AHW, ACS, ACS, 1.0f);
    assert_true(fabsf(l - 1.0f) < 1e-6f); /* |0 - A_t|^2 = 1 */
    for (int i = 0; i < AHW * ACS; i++) assert_true(dz[i] == 0.0f);
}

static void test_at_fd(void **state)
{
    (void)state;
    float fs[AB * AHW * ACS], ft[AB * AHW * ACT], dfs[AB * AHW * ACS] = {0};
    tu_fill_uniform(fs, AB * AHW * ACS, -1.0f, 1.0f, 71);
    tu_fill_uniform(ft, AB * AHW * ACT, -1.0f, 1.0f, 72);
    at_ctx c = {fs, ft, NULL};
    kd_at_backward(dfs, fs, ft, NULL, AB, AHW, ACS, ACT, 1.0f);
    tu_check_grad("AT", fs, AB * AHW * ACS, dfs, at_loss, &c, 1e-2, 3e-3, 3e-5);
    /* masked: example 0 only -> gradient of example 1 is zero, example 0's doubles */
    const uint8_t mask[AB] = {1, 0};
    float dm[AB * AHW * ACS] = {0};
    kd_at_backward(dm, fs, ft, mask, AB, AHW, ACS, ACT, 1.0f);
    for (int i = 0; i < AHW * ACS; i++) {
        assert_true(fabsf(dm[i] - 2.0f * dfs[i]) <= 1e-6f + 1e-5f * fabsf(dm[i]));
        assert_true(dm[AHW * ACS + i] == 0.0f);
    }
    c.mask = mask;
    tu_check_grad("AT masked", fs, AB * AHW * ACS, dm, at_loss, &c, 1e-2, 3e-3, 3e-5);
}

/* ---------------------------------------------------------------------------------------------
 * row (class) weights: CE, KD, Hinton and the peer's target gradient */

typedef struct {
    float *s, *t, *q, *a, *b;
    const int32_t *y;
    const uint8_t *mask;
    const float *rw;
    float T, alpha;
    int which; /* 0 CE, 1 KD, 2 Hinton, 3 KD as a function of t */
} w_ctx;

static double w_loss(void *p)
{
    w_ctx *c = p;
    switch (c->which) {
    case 0: return nn_ce_forward_w(c->a, c->s, c->y, c->mask, c->rw, TB, TK);
    case 1: return kd_forward_w(c->a, c->s, c->q, c->mask, c->rw, TB, TK, c->T);
    case 2:
        return kd_hinton_forward_w(c->a, c->b, c->s, c->q, c->y, c->mask, c->rw, TB, TK, c->T,
                                   c->alpha);
    default:
        kd_soft_targets(c->q, c->t, TB, TK, c->T);
        return kd_forward_w(c->a, c->s, c->q, NULL, c->rw, TB, TK, c->T);
    }
}

/* The weighted mean by hand: each row's own loss (a batch of one), weighted by rw over the sum of
 * the counted rows' weights; rw of ones is the plain loss bit for bit; gradients by finite
 * differences. */
static void test_row_weights(void **state)
{
    (void)state;
    float s[TB * TK], t[TB * TK], q[TB * TK], a[TB * TK], b[TB * TK], ds[TB * TK];
    tu_fill_uniform(s, TB * TK, -3.0f, 3.0f, 51);
    tu_fill_uniform(t, TB * TK, -3.0f, 3.0f, 52);
    const float T = 2.0f, alpha = 0.7f, rw[TB] = {2.5f, 0.5f, 1.25f}, ones[TB] = {1, 1, 1};
    const int32_t y[TB] = {4, 0, 6};
    const uint8_t mask[TB] = {1, 0, 1};
    kd_soft_targets(q, t, TB, TK, T);
    double ce[TB], kd[TB];
    for (int r = 0; r < TB; r++) {
        ce[r] = nn_ce_forward(a, s + r * TK, y + r, NULL, 1, TK);
        kd[r] = kd_forward(a, s + r * TK, q + r * TK, NULL, 1, TK, T);
    }
    const double ce_w = (rw[0] * ce[0] + rw[2] * ce[2]) / (rw[0] + rw[2]);
    const double kd_w = (rw[0] * kd[0] + rw[1] * kd[1] + rw[2] * kd[2]) / (rw[0] + rw[1] + rw[2]);
    assert_float_equal(nn_ce_forward_w(a, s, y, mask, rw, TB, TK), ce_w, 1e-5 * ce_w);
    assert_float_equal(kd_forward_w(a, s, q, NULL, rw, TB, TK, T), kd_w, 1e-5 * kd_w);
    const double h_w = alpha * kd_w + (1 - alpha) * ce_w;
    assert_float_equal(kd_hinton_forward_w(a, b, s, q, y, mask, rw, TB, TK, T, alpha), h_w,
                       1e-5 * h_w);
    /* weights of one: the unweighted functions exactly */
    assert_true(nn_ce_forward_w(a, s, y, mask, ones, TB, TK) == nn_ce_forward(a, s, y, mask, TB, TK));
    assert_true(kd_forward_w(a, s, q, NULL, ones, TB, TK, T) == kd_forward(a, s, q, NULL, TB, TK, T));
    /* weights of 0 on every counted row: nothing */
    const float zero[TB] = {0, 1, 0};
    assert_true(nn_ce_forward_w(a, s, y, mask, zero, TB, TK) == 0.0f);

    static const char *const what[4] = {"weighted CE", "weighted KD", "weighted Hinton",
                                        "weighted KD, target"};
    for (int which = 0; which < 4; which++) {
        w_ctx c = {s, t, q, a, b, y, which == 3 ? NULL : mask, rw, T, alpha, which};
        memset(ds, 0, sizeof ds);
        w_loss(&c);
        if (which == 0) nn_ce_backward_w(ds, a, y, mask, rw, TB, TK, 1.0f);
        if (which == 1) kd_backward_w(ds, a, q, mask, rw, TB, TK, T, 1.0f);
        if (which == 2) kd_hinton_backward_w(ds, a, b, q, y, mask, rw, TB, TK, T, alpha, 1.0f);
        if (which == 3) kd_backward_target_w(ds, t, s, NULL, rw, TB, TK, T, 1.0f);
        tu_check_grad(what[which], which == 3 ? t : s, TB * TK, ds, w_loss, &c, 1e-2, 2e-3, 2e-5);
        if (which < 2)
            for (int k = 0; k < TK; k++) assert_true(ds[TK + k] == 0.0f); /* masked row */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kd_golden),          cmocka_unit_test(test_kd_weight_accumulates),
        cmocka_unit_test(test_hinton_golden),      cmocka_unit_test(test_hinton_label_mask),
        cmocka_unit_test(test_kd_stability),       cmocka_unit_test(test_cos_golden),
        cmocka_unit_test(test_kd_mask),            cmocka_unit_test(test_topk_full_equals_kd),
        cmocka_unit_test(test_topk_targets),       cmocka_unit_test(test_topk_kd_fd),
        cmocka_unit_test(test_soft_ce),            cmocka_unit_test(test_cos_fd),
        cmocka_unit_test(test_at_values),          cmocka_unit_test(test_at_fd),
        cmocka_unit_test(test_row_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
