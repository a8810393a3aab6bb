/* align/: the contrastive (CLIP) loss, its values computed independently here in double and its
 * gradients against central finite differences, label-space maps, and dense targets on a
 * hand-made 8x8 scene fed to distill's per-row soft CE. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>

#include "align/clip.h"
#include "align/densemap.h"
#include "align/labelmap.h"
#include "core/mem.h"
#include "distill/kd.h"

/* ---------------------------------------------------------------------------------------------
 * contrastive (CLIP) loss */

/* independent reference: L = (1/2B) sum_i [-log softmax_j(z_i.)_i - log softmax_i(z_.i)_i] */
static double clip_ref(const float *a, const float *b, int B, int D, double theta)
{
    double an[64], bn[64], z[64];
    for (int i = 0; i < B; i++) {
        double na = 0.0, nb = 0.0;
        for (int d = 0; d < D; d++) {
            na += (double)a[i * D + d] * a[i * D + d];
            nb += (double)b[i * D + d] * b[i * D + d];
        }
        for (int d = 0; d < D; d++) {
            an[i * D + d] = a[i * D + d] / sqrt(na);
            bn[i * D + d] = b[i * D + d] / sqrt(nb);
        }
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double s = 0.0;
            for (int d = 0; d < D; d++) s += an[i * D + d] * bn[j * D + d];
            z[i * B + j] = exp(theta) * s;
        }
    double L = 0.0;
    for (int i = 0; i < B; i++) {
        double row = 0.0, col = 0.0;
        for (int j = 0; j < B; j++) {
            row += exp(z[i * B + j]);
            col += exp(z[j * B + i]);
        }
        L += -log(exp(z[i * B + i]) / row) - log(exp(z[i * B + i]) / col);
    }
    return L / (2.0 * B);
}

static void test_clip_values(void **state)
{
    (void)state;
    double save[64];
    /* by hand: a = b = I (2 x 2), s = 1: z = I, each of the four CEs is log(1 + e^-1) */
    const float I2[4] = {1, 0, 0, 1};
    assert_true(align_clip_save_len(2, 2) <= 64);
    tu_assert_near(align_clip_forward(save, I2, I2, 2, 2, 0.0f), 0.31326168751822286, 1e-15,
                   "identity");
    /* same, rows scaled (normalisation) and tau = 0.5 (s = 2): log(1 + e^-2) */
    const float a2[4] = {3, 0, 0, 0.25f};
    tu_assert_near(align_clip_forward(save, a2, I2, 2, 2, (float)align_clip_theta(0.5)),
                   0.12692801104297263, 1e-7, "tau 0.5");
    /* an asymmetric 3 x 2 case against the independent reference */
    const float a[6] = {1, 2, -1, 0.5f, 0.3f, -2}, b[6] = {0.5f, 1, 2, -1, 1, 1};
    assert_true(align_clip_save_len(3, 2) <= 64);
    const float th = 1.3f;
    double L = align_clip_forward(save, a, b, 3, 2, th);
    tu_assert_near(L, clip_ref(a, b, 3, 2, th), 1e-12, "3 x 2 case");
    /* symmetric in a and b */
    tu_assert_near(align_clip_forward(save, b, a, 3, 2, th), L, 1e-12, "swap a, b");
    /* one pair is zero loss */
    tu_assert_near(align_clip_forward(save, a, b, 1, 2, th), 0.0, 0.0, "B = 1");
}

typedef struct {
    float *a, *b, *theta;
    int B, D;
    double *save;
} clip_ctx;

static double clip_loss(void *p)
{
    clip_ctx *c = p;
    return align_clip_forward(c->save, c->a, c->b, c->B, c->D, *c->theta);
}

static void test_clip_fd(void **state)
{
    (void)state;
    enum { B = 5, D = 4 };
    float a[B * D], b[B * D];
    tu_fill_uniform(a, B * D, -1.0f, 1.0f, 60);
    tu_fill_uniform(b, B * D, -1.0f, 1.0f, 61);
    for (int t = 0; t < B * D; t++) b[t] += 0.5f * a[t]; /* partly aligned pairs */
    double *save = xd_xmalloc(align_clip_save_len(B, D) * sizeof(double));
    const float thetas[2] = {0.5f, (float)ALIGN_CLIP_THETA_INIT};
    for (int k = 0; k < 2; k++) {
        float theta = thetas[k], da[B * D] = {0}, db[B * D] = {0}, dth = 0.0f;
        clip_ctx c = {a, b, &theta, B, D, save};
        align_clip_forward(save, a, b, B, D, theta);
        align_clip_backward(da, db, &dth, save, B, D, 1.0f);
        tu_check_grad("clip da", a, B * D, da, clip_loss, &c, 1e-3, 1e-3, 1e-6);
        tu_check_grad("clip db", b, B * D, db, clip_loss, &c, 1e-3, 1e-3, 1e-6);
        tu_check_grad("clip dtheta", &theta, 1, &dth, clip_loss, &c, 1e-3, 1e-3, 1e-6);
        /* the gradient of a normalised row is orthogonal to the row */
        for (int i = 0; i < B; i++) {
            double s = 0.0;
            for (int d = 0; d < D; d++) s += (double)da[i * D + d] * a[i * D + d];
            tu_assert_near(s, 0.0, 1e-6, "a_i . da_i");
        }
        /* backward adds weight * gradient; NULL outputs are skipped (forward again: the checks
         * above left the save buffer at a perturbed input) */
        align_clip_forward(save, a, b, B, D, theta);
        float acc[B * D], th2 = 1.0f;
        for (int t = 0; t < B * D; t++) acc[t] = 1.0f;
        align_clip_backward(acc, NULL, &th2, save, B, D, 0.5f);
        for (int t = 0; t < B * D; t++)
            tu_assert_near(acc[t], 1.0 + 0.5 * da[t], 1e-6, "accumulate");
        tu_assert_near(th2, 1.0 + 0.5 * dth, 1e-6, "accumulate dtheta");
    }
    free(save);
}

static void test_clip_edges(void **state)
{
    (void)state;
    enum { B = 3, D = 3 };
    double save[64];
    float a[B * D] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, da[B * D] = {0}, db[B * D] = {0}, dth = 0.0f;
    /* aligned pairs at CLIP's largest scale: loss near 0 */
    assert_true(align_clip_forward(save, a, a, B, D, (float)ALIGN_CLIP_THETA_MAX) < 1e-6);
    /* a zero row stays finite, in value and gradient */
    float z[B * D] = {0, 0, 0, 0, 1, 0, 1, 1, 0};
    double L = align_clip_forward(save, z, a, B, D, 1.0f);
    assert_true(isfinite(L));
    align_clip_backward(da, db, &dth, save, B, D, 1.0f);
    for (int t = 0; t < B * D; t++) assert_true(isfinite(da[t]) && isfinite(db[t]));
    assert_true(isfinite(dth));
    /* clamp */
    float t1 = 10.0f, t2 = -1.0f, t3 = NAN, t4 = 2.0f;
    align_clip_clamp_theta(&t1);
    align_clip_clamp_theta(&t2);
    align_clip_clamp_theta(&t3);
    align_clip_clamp_theta(&t4);
    tu_assert_near(t1, log(100.0), 1e-6, "clamp high");
    assert_true(t2 == 0.0f && t3 == 0.0f && t4 == 2.0f);
    tu_assert_near(align_clip_theta(0.07), ALIGN_CLIP_THETA_INIT, 1e-12, "theta(0.07)");
}

/* ---------------------------------------------------------------------------------------------
 * label maps */

static void test_labelmap_table(void **state)
{
    (void)state;
    /* five subgroups -> two groups */
    const int32_t table[5] = {0, 0, 1, 1, 0};
    const float p[2 * 5] = {0.1f, 0.2f, 0.3f, 0.15f, 0.25f, 0.0f, 0.0f, 0.5f, 0.5f, 0.0f};
    const float want[2 * 2] = {0.55f, 0.45f, 0.0f, 1.0f};
    float q[4], qm[4];
    align_labelmap lm, mm;
    xd_err e;
    TU_OK(align_labelmap_from_table(&lm, table, 5, 2, &e));
    align_labelmap_apply(q, p, &lm, 2);
    tu_assert_close(q, want, 4, 1e-6, 1e-7, "q = p M (table)");
    /* the same map as a dense matrix gives the same q */
    TU_OK(align_labelmap_from_matrix(&mm, lm.m, 5, 2, 1e-6f, &e));
    align_labelmap_apply(qm, p, &mm, 2);
    tu_assert_close(qm, want, 4, 1e-6, 1e-7, "q = p M (matrix)");
    /* hard labels */
    const int32_t yt[4] = {4, 2, -1, 9};
    int32_t ys[4];
    TU_OK(align_labelmap_labels(ys, yt, 4, &lm, &e));
    assert_int_equal(ys[0], 0);
    assert_int_equal(ys[1], 1);
    assert_int_equal(ys[2], -1);
    assert_int_equal(ys[3], -1);
    assert_int_equal(align_labelmap_labels(ys, yt, 4, &mm, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "many-to-one");
    align_labelmap_free(&lm);
    align_labelmap_free(&mm);
    /* bad tables */
    const int32_t bad[5] = {0, 1, 1, 7, 0}, neg[2] = {0, -1};
    assert_int_equal(align_labelmap_from_table(&lm, bad, 5, 2, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "table[3] = 7");
    assert_int_equal(align_labelmap_from_table(&lm, neg, 2, 2, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "table[1] = -1");
    assert_int_equal(align_labelmap_from_table(&lm, table, 0, 2, &e), XD_EARG);
    assert_null(lm.m);
}

static void test_labelmap_matrix(void **state)
{
    (void)state;
    /* teacher class 1 is half of each student class */
    float M[3 * 2] = {1, 0, 0.5f, 0.5f, 0, 1};
    const float p[3] = {0.2f, 0.4f, 0.4f}, want[2] = {0.4f, 0.6f};
    float q[2];
    align_labelmap lm;
    xd_err e;
    TU_OK(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e));
    align_labelmap_apply(q, p, &lm, 1);
    tu_assert_close(q, want, 2, 1e-6, 1e-7, "q = p M");
    align_labelmap_free(&lm);
    M[2] = 0.4f; /* row 1 sums to 0.9 */
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "row 1 (teacher class 1) sums to 0.9");
    M[2] = 1.5f;
    M[3] = -0.5f;
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "M[1][1] = -0.5 is negative");
    M[2] = 0.5f;
    M[3] = NAN;
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, 1e-4f, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "M[1][1]");
    M[3] = 0.5f;
    assert_int_equal(align_labelmap_from_matrix(&lm, M, 3, 2, NAN, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "tolerance");
}

/* ---------------------------------------------------------------------------------------------
 * dense maps */

enum { DH = 8, DW = 8, DK = 2, DK1 = DK + 1 };

/* Two 5x5 windows on an 8x8 canvas overlapping in the 2x2 block x, y in {3, 4}:
 *   A at (0, 0): p = (0.8, 0.2);   B at (3, 3): p = (0.1, 0.9)
 * Foreground (value 200, threshold 25): the 3x3 block x, y in 2..4 (in A, the overlap), the
 * pixel (6, 6) (in B only), the pixel (7, 0) (in no window); value 25 at (0, 0) is not above
 * the threshold, so background. */
static void dense_scene(float *fg, align_box *win, float *probs)
{
    for (int t = 0; t < DH * DW; t++) fg[t] = 0.0f;
    for (int y = 2; y <= 4; y++)
        for (int x = 2; x <= 4; x++) fg[y * DW + x] = 200.0f;
    fg[6 * DW + 6] = 200.0f;
    fg[0 * DW + 7] = 200.0f;
    fg[0] = 25.0f;
    win[0] = (align_box){0, 0, 5, 5};
    win[1] = (align_box){3, 3, 5, 5};
    probs[0] = 0.8f;
    probs[1] = 0.2f;
    probs[2] = 0.1f;
    probs[3] = 0.9f;
}

static const float *px(const float *t, int x, int y) { return t + ((size_t)y * DW + x) * DK1; }

static void test_dense_targets(void **state)
{
    (void)state;
    float fg[DH * DW], probs[2 * DK], t[DH * DW * DK1];
    uint8_t mask[DH * DW];
    align_box win[2];
    dense_scene(fg, win, probs);
    align_dense_opts o = align_dense_default_opts();
    xd_err e;
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e));
    const float bg[DK1] = {0, 0, 1}, inA[DK1] = {0.8f, 0.2f, 0}, inB[DK1] = {0.1f, 0.9f, 0};
    const float both[DK1] = {0.45f, 0.55f, 0}, none[DK1] = {0, 0, 0};
    tu_assert_close(px(t, 0, 0), bg, DK1, 0, 0, "(0,0) at the threshold: background");
    tu_assert_close(px(t, 5, 1), bg, DK1, 0, 0, "(5,1) background");
    tu_assert_close(px(t, 2, 2), inA, DK1, 1e-6, 1e-7, "(2,2) in A");
    tu_assert_close(px(t, 4, 2), inA, DK1, 1e-6, 1e-7, "(4,2) in A");
    tu_assert_close(px(t, 3, 3), both, DK1, 1e-6, 1e-7, "(3,3) in A and B");
    tu_assert_close(px(t, 4, 4), both, DK1, 1e-6, 1e-7, "(4,4) in A and B");
    tu_assert_close(px(t, 6, 6), inB, DK1, 1e-6, 1e-7, "(6,6) in B");
    tu_assert_close(px(t, 7, 0), none, DK1, 0, 0, "(7,0) foreground in no window");
    int masked = 0;
    for (int p = 0; p < DH * DW; p++) {
        masked += mask[p];
        const float *r = t + (size_t)p * DK1;
        double s = (double)r[0] + r[1] + r[2];
        if (mask[p]) tu_assert_near(s, 1.0, 1e-6, "masked-in rows sum to 1");
    }
    assert_int_equal(mask[0 * DW + 7], 0);
    assert_int_equal(masked, DH * DW - 1);

    /* confidence weighting: c_A = 0.8, c_B = 0.9 in the overlap */
    o.weight = ALIGN_DENSE_CONFIDENCE;
    o.min_conf = 0.6f;
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e));
    const float conf[DK1] = {(float)((0.8 * 0.8 + 0.9 * 0.1) / 1.7),
                             (float)((0.8 * 0.2 + 0.9 * 0.9) / 1.7), 0};
    tu_assert_close(px(t, 3, 4), conf, DK1, 1e-6, 1e-7, "(3,4) confidence-weighted");
    tu_assert_close(px(t, 2, 3), inA, DK1, 1e-6, 1e-7, "(2,3) in A only");
    /* top probability 0.5706 < 0.6: the overlap is masked out, A-only pixels (0.8) stay */
    assert_int_equal(mask[3 * DW + 3], 0);
    assert_int_equal(mask[4 * DW + 4], 0);
    assert_int_equal(mask[2 * DW + 2], 1);
    assert_int_equal(mask[6 * DW + 6], 1);
    assert_int_equal(mask[1 * DW + 1], 1); /* background stays certain */

    /* no windows: every foreground pixel is unknown */
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 0, DK, &o, &e));
    assert_int_equal(mask[2 * DW + 2], 0);
    tu_assert_close(px(t, 2, 2), none, DK1, 0, 0, "no windows");
}

static void test_dense_bad_inputs(void **state)
{
    (void)state;
    float fg[DH * DW], probs[2 * DK], t[DH * DW * DK1];
    uint8_t mask[DH * DW];
    align_box win[2];
    dense_scene(fg, win, probs);
    align_dense_opts o = align_dense_default_opts();
    xd_err e;
    win[1] = (align_box){5, 5, 5, 5};
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "window 1 (x=5 y=5 w=5 h=5)");
    win[1] = (align_box){3, 3, 0, 5};
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    win[1] = (align_box){3, 3, 5, 5};
    probs[3] = NAN;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "window 1: probability of class 1");
    probs[3] = 0.4f;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "window 1: probabilities sum to 0.5");
    probs[2] = -0.1f;
    probs[3] = 1.1f;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "negative");
    probs[2] = 0.1f;
    probs[3] = 0.9f;
    fg[5 * DW + 2] = NAN;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_ENUM);
    tu_assert_err(&e, XD_ENUM, "(x=2, y=5)");
    fg[5 * DW + 2] = 0.0f;
    o.min_conf = 1.5f;
    assert_int_equal(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "min_conf");
    /* config words */
    align_dense_weight w;
    TU_OK(align_dense_weight_parse("confidence", &w, &e));
    assert_int_equal(w, ALIGN_DENSE_CONFIDENCE);
    assert_int_equal(align_dense_weight_parse("confident", &w, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'confident'");
}

static void test_dense_grid_crop(void **state)
{
    (void)state;
    align_box b[32];
    /* 64 wide, 28 windows, stride 12: offsets 0 12 24 36 */
    assert_int_equal(align_dense_grid(NULL, 0, 64, 64, 28, 28, 12), 16);
    assert_int_equal(align_dense_grid(b, 32, 64, 64, 28, 28, 12), 16);
    assert_int_equal(b[3].x, 36);
    assert_int_equal(b[3].y, 0);
    assert_int_equal(b[15].x, 36);
    assert_int_equal(b[15].y, 36);
    /* stride 20: 0 20, then 36 flush with the edge */
    assert_int_equal(align_dense_grid(b, 32, 64, 64, 28, 28, 20), 9);
    assert_int_equal(b[1].x, 20);
    assert_int_equal(b[2].x, 36);
    assert_int_equal(b[8].y, 36);
    assert_true(b[8].w == 28 && b[8].h == 28);
    /* a window as big as the canvas, a window too big, a bad stride */
    assert_int_equal(align_dense_grid(b, 32, 28, 28, 28, 28, 5), 1);
    assert_int_equal(align_dense_grid(b, 32, 20, 64, 28, 28, 5), -1);
    assert_int_equal(align_dense_grid(b, 32, 64, 64, 28, 28, 0), -1);
    /* cap smaller than the count: only cap written, full count returned */
    b[2].x = -5;
    assert_int_equal(align_dense_grid(b, 2, 64, 64, 28, 28, 20), 9);
    assert_int_equal(b[2].x, -5);
    /* crop of a 2-channel 4x5 image */
    float img[4 * 5 * 2], out[2 * 3 * 2];
    for (int t = 0; t < 40; t++) img[t] = (float)t;
    xd_err e;
    TU_OK(align_dense_crop(out, img, 4, 5, 2, (align_box){2, 1, 3, 2}, &e));
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++)
            for (int ch = 0; ch < 2; ch++)
                assert_true(out[(r * 3 + c) * 2 + ch] == img[((1 + r) * 5 + 2 + c) * 2 + ch]);
    assert_int_equal(align_dense_crop(out, img, 4, 5, 2, (align_box){3, 1, 3, 2}, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "does not fit the 5x4 image");
}

/* The per-pixel loss is distill's soft CE with rows = pixels and the dense mask: zero logits give
 * log(K+1) on every masked-in pixel, and no gradient reaches masked-out pixels. */
static void test_dense_targets_with_soft_ce(void **state)
{
    (void)state;
    float fg[DH * DW], probs[2 * DK], t[DH * DW * DK1], s[DH * DW * DK1] = {0};
    float p[DH * DW * DK1], ds[DH * DW * DK1] = {0};
    uint8_t mask[DH * DW];
    align_box win[2];
    dense_scene(fg, win, probs);
    align_dense_opts o = align_dense_default_opts();
    xd_err e;
    TU_OK(align_dense_targets(t, mask, fg, DH, DW, win, probs, 2, DK, &o, &e));
    tu_assert_near(kd_soft_ce_forward(p, s, t, mask, DH * DW, DK1), log(3.0), 1e-6, "zero logits");
    kd_soft_ce_backward(ds, p, t, mask, DH * DW, DK1, 1.0f);
    const float *d7 = ds + (size_t)(0 * DW + 7) * DK1;
    assert_true(d7[0] == 0.0f && d7[1] == 0.0f && d7[2] == 0.0f);
    /* a background pixel: gradient (1/3 - onehot) / M */
    const int M = DH * DW - 1;
    const float *d1 = ds + (size_t)(1 * DW + 1) * DK1;
    tu_assert_near(d1[2], (1.0 / 3 - 1.0) / M, 1e-7, "background pixel gradient");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_values),
        cmocka_unit_test(test_clip_fd),
        cmocka_unit_test(test_clip_edges),
        cmocka_unit_test(test_labelmap_table),
        cmocka_unit_test(test_labelmap_matrix),
        cmocka_unit_test(test_dense_targets),
        cmocka_unit_test(test_dense_bad_inputs),
        cmocka_unit_test(test_dense_grid_crop),
        cmocka_unit_test(test_dense_targets_with_soft_ce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
