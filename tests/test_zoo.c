/* distill/zoo and distill/crd (and the attention-transfer and InfoNCE losses that were there
 * before): losses and gradients against PyTorch's values in tests/golden/zoo_golden_seed7.txt,
 * float64 and float32, within 1e-5 relative; every backward against central finite differences
 * of its forward (VID's variance, CRD's embeddings and both its heads included); what the
 * relational losses and CRD do with a batch of one; CRD's bank update and its resume state. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align/clip.h"
#include "distill/crd.h"
#include "distill/kd.h"
#include "distill/zoo.h"
#include "io/safetensors.h"
#include "nn/layers.h"
#include "tests/support/golden.h"

/* the golden file's shapes: rows, classes, feature width, map size and channels */
enum { B = 6, K = 7, D = 5, HW = 12, C = 4, C2 = 6 };

static golden *load(void) { return golden_load(tu_src_path("tests/golden/zoo_golden_seed7.txt")); }

/* loss and gradient of one section against both of its precisions: the float64 values are the
 * exact ones, the float32 ones what PyTorch reached in float */
static void check_golden(const golden *g, const char *section, double loss, const char *grad_key,
                         const float *grad, int n)
{
    static const char *loss_keys[2] = {"loss64", "loss32"};
    for (int i = 0; i < 2; i++) {
        const double ref = golden_scalar(g, section, loss_keys[i]);
        if (!(fabs(loss - ref) <= 1e-5 * fabs(ref)))
            fail_msg("%s: loss %.12g, golden %s %.12g", section, loss, loss_keys[i], ref);
    }
    float *want = malloc(sizeof(float) * (size_t)n);
    for (int bits = 64; bits >= 32; bits -= 32) {
        char key[32], what[64];
        snprintf(key, sizeof key, "%.4s%d%s", grad_key, bits, grad_key + 4);
        assert_int_equal(golden_get(g, section, key, want, n), n);
        /* the atol covers entries that are 0 up to rounding */
        double top = 0.0;
        for (int k = 0; k < n; k++) top = fmax(top, fabs(want[k]));
        snprintf(what, sizeof what, "%s %s", section, key);
        tu_assert_close(grad, want, (size_t)n, 1e-5, 1e-7 * top, what);
    }
    free(want);
}

static void get_input(const golden *g, const char *name, float *out, int n)
{
    assert_int_equal(golden_get(g, "INPUTS", name, out, n), n);
}

// ----------------------------------------------------------------------------------------------
// golden values

static void test_dkd_golden(void **state)
{
    (void)state;
    golden *g = load();
    float s[B * K], t[B * K], yf[B], ds[B * K] = {0};
    int32_t y[B];
    get_input(g, "s", s, B * K);
    get_input(g, "t", t, B * K);
    get_input(g, "y", yf, B);
    for (int i = 0; i < B; i++) y[i] = (int32_t)yf[i];
    double loss = kd_dkd_forward(s, t, y, NULL, B, K, 4.0f, 1.0f, 8.0f);
    kd_dkd_backward(ds, s, t, y, NULL, B, K, 4.0f, 1.0f, 8.0f, 1.0f);
    check_golden(g, "DKD_T4_a1_b8", loss, "grad", ds, B * K);
    golden_free(g);
}

/* The losses between rows of features, fs (B, Ds) and ft (B, Dt), behind one signature. */
typedef struct {
    const char *section; /* in the golden file */
    int same_width;      /* Ds must equal Dt */
    size_t (*work_len)(int B, int Ds, int Dt);
    double (*forward)(double *work, const float *fs, const float *ft, int B, int Ds, int Dt);
    double (*backward)(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                       int Dt, float weight);
} rows_loss;

/* the golden file's RKD weights, the published ones */
static double rkd_fw(double *w, const float *fs, const float *ft, int n, int ds, int dt)
{
    return kd_rkd_forward(w, fs, ft, n, ds, dt, 25.0f, 50.0f);
}
static double rkd_bw(float *d, double *w, const float *fs, const float *ft, int n, int ds, int dt,
                     float weight)
{
    return kd_rkd_backward(d, w, fs, ft, n, ds, dt, 25.0f, 50.0f, weight);
}
static size_t cc_len(int n, int ds, int dt) { return (void)n, (void)ds, (void)dt, 1; }
static double cc_fw(double *w, const float *fs, const float *ft, int n, int ds, int dt)
{
    return (void)w, (void)dt, kd_cc_forward(fs, ft, n, ds);
}
static double cc_bw(float *d, double *w, const float *fs, const float *ft, int n, int ds, int dt,
                    float weight)
{
    (void)w, (void)dt;
    return kd_cc_backward(d, fs, ft, n, ds, weight);
}

static const rows_loss rows_losses[] = {
    {"RKD_wd25_wa50", 0, kd_rkd_work_len, rkd_fw, rkd_bw},
    {"SP", 0, kd_sp_work_len, kd_sp_forward, kd_sp_backward},
    {"PKT", 0, kd_pkt_work_len, kd_pkt_forward, kd_pkt_backward},
    {"CC", 1, cc_len, cc_fw, cc_bw},
};
enum { N_ROWS_LOSSES = sizeof rows_losses / sizeof rows_losses[0] };

static void test_rows_golden(void **state)
{
    (void)state;
    golden *g = load();
    float fs[B * D], ft[B * D];
    get_input(g, "fs", fs, B * D);
    get_input(g, "ft", ft, B * D);
    for (int i = 0; i < N_ROWS_LOSSES; i++) {
        const rows_loss *l = &rows_losses[i];
        float d[B * D] = {0};
        double *w = malloc(sizeof(double) * l->work_len(B, D, D));
        double loss = l->forward(w, fs, ft, B, D, D);
        l->backward(d, w, fs, ft, B, D, D, 1.0f);
        check_golden(g, l->section, loss, "grad", d, B * D);
        free(w);
    }
    golden_free(g);
}

static void test_nst_golden(void **state)
{
    (void)state;
    golden *g = load();
    float ms[B * HW * C], mt[B * HW * C], d[B * HW * C] = {0};
    get_input(g, "ms", ms, B * HW * C);
    get_input(g, "mt", mt, B * HW * C);
    double *w = malloc(sizeof(double) * kd_nst_work_len(HW, C, C));
    double loss = kd_nst_forward(w, ms, mt, B, HW, C, C);
    kd_nst_backward(d, w, ms, mt, B, HW, C, C, 1.0f);
    check_golden(g, "NST", loss, "grad", d, B * HW * C);
    free(w);
    golden_free(g);
}

static void test_fsp_golden(void **state)
{
    (void)state;
    golden *g = load();
    float s1[B * HW * C], s2[B * HW * C2], t1[B * HW * C], t2[B * HW * C2];
    float d1[B * HW * C] = {0}, d2[B * HW * C2] = {0};
    get_input(g, "ms", s1, B * HW * C);
    get_input(g, "s2", s2, B * HW * C2);
    get_input(g, "t1", t1, B * HW * C);
    get_input(g, "t2", t2, B * HW * C2);
    double *w = malloc(sizeof(double) * kd_fsp_work_len(HW, C, C2));
    double loss = kd_fsp_forward(w, s1, s2, t1, t2, B, HW, C, C2);
    kd_fsp_backward(d1, d2, w, s1, s2, t1, t2, B, HW, C, C2, 1.0f);
    check_golden(g, "FSP", loss, "grad", d1, B * HW * C);
    check_golden(g, "FSP", loss, "grad.1", d2, B * HW * C2);
    free(w);
    golden_free(g);
}

static void test_at_golden(void **state)
{
    (void)state;
    golden *g = load();
    float ms[B * HW * C], mt[B * HW * C], d[B * HW * C] = {0};
    get_input(g, "ms", ms, B * HW * C);
    get_input(g, "mt", mt, B * HW * C);
    /* kd_at is the squared distance summed over the HW positions (kd.h); the reference code's
     * mean also divides by them */
    double loss = kd_at_forward(ms, mt, NULL, B, HW, C, C) / HW;
    kd_at_backward(d, ms, mt, NULL, B, HW, C, C, 1.0f / HW);
    check_golden(g, "AT_p2", loss, "grad", d, B * HW * C);
    golden_free(g);
}

static void test_clip_golden(void **state)
{
    (void)state;
    golden *g = load();
    float fs[B * D], ft[B * D], d[B * D] = {0};
    get_input(g, "fs", fs, B * D);
    get_input(g, "ft", ft, B * D);
    double *save = malloc(sizeof(double) * align_clip_save_len(B, D));
    const float theta = (float)align_clip_theta(0.1);
    double loss = align_clip_forward(save, fs, ft, B, D, theta);
    align_clip_backward(d, NULL, NULL, save, B, D, 1.0f);
    check_golden(g, "CLIP_T0.1", loss, "grad", d, B * D);
    free(save);
    golden_free(g);
}

// ----------------------------------------------------------------------------------------------
// finite differences: every backward against its own forward, at a weight other than 1

#define WEIGHT 0.7f
#define FD_H 1e-4
#define FD_RTOL 1e-4
#define FD_ATOL 1e-7

typedef struct {
    const rows_loss *l;
    const float *fs, *ft;
    double *work;
    int n, ds, dt;
} rows_ctx;

static double rows_eval(void *p)
{
    rows_ctx *c = p;
    return WEIGHT * c->l->forward(c->work, c->fs, c->ft, c->n, c->ds, c->dt);
}

static void test_rows_fd(void **state)
{
    (void)state;
    enum { N = 5, DS = 4, DT = 6 };
    for (int i = 0; i < N_ROWS_LOSSES; i++) {
        const rows_loss *l = &rows_losses[i];
        const int dt = l->same_width ? DS : DT;
        float fs[N * DS], ft[N * DT], d[N * DS] = {0};
        tu_fill_uniform(fs, N * DS, -1.5f, 1.5f, 11);
        tu_fill_uniform(ft, (size_t)N * dt, -1.5f, 1.5f, 12);
        double *w = malloc(sizeof(double) * l->work_len(N, DS, dt));
        const double v = l->backward(d, w, fs, ft, N, DS, dt, WEIGHT);
        /* backward returns the loss forward gives, so a step calls it alone */
        assert_true(v == l->forward(w, fs, ft, N, DS, dt));
        rows_ctx c = {l, fs, ft, w, N, DS, dt};
        tu_check_grad(l->section, fs, N * DS, d, rows_eval, &c, FD_H, FD_RTOL, FD_ATOL);
        free(w);
    }
}

/* A single example has nothing to relate to: loss 0 and no gradient (zoo.h). */
static void test_rows_batch_of_one(void **state)
{
    (void)state;
    float fs[D] = {0.3f, -1.0f, 2.0f, 0.5f, 0.1f}, ft[D] = {1.0f, 0.2f, -0.4f, 0.0f, 0.7f};
    for (int i = 0; i < N_ROWS_LOSSES; i++) {
        const rows_loss *l = &rows_losses[i];
        float d[D] = {0};
        double *w = malloc(sizeof(double) * l->work_len(1, D, D));
        assert_true(l->forward(w, fs, ft, 1, D, D) == 0.0);
        l->backward(d, w, fs, ft, 1, D, D, 1.0f);
        for (int k = 0; k < D; k++) assert_true(d[k] == 0.0f);
        free(w);
    }
}

typedef struct {
    const float *s, *t;
    const int32_t *y;
    const uint8_t *mask;
    int n, k;
} dkd_ctx;

static double dkd_eval(void *p)
{
    dkd_ctx *c = p;
    return WEIGHT * kd_dkd_forward(c->s, c->t, c->y, c->mask, c->n, c->k, 2.0f, 1.0f, 8.0f);
}

static void test_dkd_fd(void **state)
{
    (void)state;
    enum { N = 4, KK = 5 };
    float s[N * KK], t[N * KK], d[N * KK] = {0};
    const int32_t y[N] = {0, 3, 4, 1};
    const uint8_t mask[N] = {1, 1, 0, 1}; /* row 2 has no label: it must not count */
    tu_fill_uniform(s, N * KK, -3.0f, 3.0f, 21);
    tu_fill_uniform(t, N * KK, -3.0f, 3.0f, 22);
    kd_dkd_backward(d, s, t, y, mask, N, KK, 2.0f, 1.0f, 8.0f, WEIGHT);
    for (int k = 0; k < KK; k++) assert_true(d[2 * KK + k] == 0.0f);
    dkd_ctx c = {s, t, y, mask, N, KK};
    tu_check_grad("DKD", s, N * KK, d, dkd_eval, &c, FD_H, FD_RTOL, FD_ATOL);

    /* logits of +-1000: a target probability of 1 or 0 on either side stays finite */
    const float hs[2 * 3] = {1000, 0, -1000, -1000, 1000, 0},
                ht[2 * 3] = {-1000, 1000, 0, 1000, -1000, 0};
    const int32_t hy[2] = {0, 0};
    float hd[2 * 3] = {0};
    const double hl = kd_dkd_forward(hs, ht, hy, NULL, 2, 3, 4.0f, 1.0f, 8.0f);
    kd_dkd_backward(hd, hs, ht, hy, NULL, 2, 3, 4.0f, 1.0f, 8.0f, 1.0f);
    assert_true(isfinite(hl) && hl > 0.0);
    for (int k = 0; k < 2 * 3; k++) assert_true(isfinite(hd[k]));
}

/* maps (B, HW, C): NST with other channel counts on the two sides, FSP's two student maps */
enum { MB = 2, MHW = 6, MC1 = 3, MC2 = 5 };

typedef struct {
    const float *s1, *s2, *t1, *t2;
    double *work;
} maps_ctx;

static double nst_eval(void *p)
{
    maps_ctx *c = p;
    return WEIGHT * kd_nst_forward(c->work, c->s1, c->t2, MB, MHW, MC1, MC2);
}

static double fsp_eval(void *p)
{
    maps_ctx *c = p;
    return WEIGHT * kd_fsp_forward(c->work, c->s1, c->s2, c->t1, c->t2, MB, MHW, MC1, MC2);
}

static void test_maps_fd(void **state)
{
    (void)state;
    float s1[MB * MHW * MC1], s2[MB * MHW * MC2], t1[MB * MHW * MC1], t2[MB * MHW * MC2];
    float d1[MB * MHW * MC1] = {0}, d2[MB * MHW * MC2] = {0}, dn[MB * MHW * MC1] = {0};
    tu_fill_uniform(s1, sizeof s1 / sizeof *s1, -1.0f, 1.0f, 31);
    tu_fill_uniform(s2, sizeof s2 / sizeof *s2, -1.0f, 1.0f, 32);
    tu_fill_uniform(t1, sizeof t1 / sizeof *t1, -1.0f, 1.0f, 33);
    tu_fill_uniform(t2, sizeof t2 / sizeof *t2, -1.0f, 1.0f, 34);
    double *w = malloc(sizeof(double) * (kd_nst_work_len(MHW, MC1, MC2) +
                                         kd_fsp_work_len(MHW, MC1, MC2)));
    maps_ctx c = {s1, s2, t1, t2, w};
    kd_nst_backward(dn, w, s1, t2, MB, MHW, MC1, MC2, WEIGHT);
    tu_check_grad("NST", s1, sizeof s1 / sizeof *s1, dn, nst_eval, &c, FD_H, FD_RTOL, FD_ATOL);
    kd_fsp_backward(d1, d2, w, s1, s2, t1, t2, MB, MHW, MC1, MC2, WEIGHT);
    tu_check_grad("FSP first map", s1, sizeof s1 / sizeof *s1, d1, fsp_eval, &c, FD_H, FD_RTOL,
                  FD_ATOL);
    tu_check_grad("FSP second map", s2, sizeof s2 / sizeof *s2, d2, fsp_eval, &c, FD_H, FD_RTOL,
                  FD_ATOL);
    free(w);
}

/* VID, AB and OFD on the same shapes: rows of C values */
enum { VR = 8, VC = 3 };

typedef struct {
    const float *s, *t, *p; /* p: VID's log-scales, OFD's margins */
} elem_ctx;

static double vid_eval(void *p)
{
    elem_ctx *c = p;
    return WEIGHT * kd_vid_forward(c->s, c->t, c->p, VR, VC);
}

static void test_vid(void **state)
{
    (void)state;
    float mu[VR * VC], t[VR * VC], ls[VC], dmu[VR * VC] = {0}, dls[VC] = {0};
    /* the reference code's start: a variance of 5 (softplus(ls) + 1e-5) */
    kd_vid_init(ls, VC, KD_VID_INIT_VAR);
    assert_true(fabs(log1p(exp((double)ls[0])) + 1e-5 - 5.0) < 1e-6);
    tu_fill_uniform(mu, VR * VC, -2.0f, 2.0f, 41);
    tu_fill_uniform(t, VR * VC, -2.0f, 2.0f, 42);
    tu_fill_uniform(ls, VC, -1.0f, 1.5f, 43); /* variances of every size, around 1 */
    kd_vid_backward(dmu, dls, mu, t, ls, VR, VC, WEIGHT);
    elem_ctx c = {mu, t, ls};
    tu_check_grad("VID regressor output", mu, VR * VC, dmu, vid_eval, &c, FD_H, FD_RTOL, FD_ATOL);
    tu_check_grad("VID variance", ls, VC, dls, vid_eval, &c, FD_H, FD_RTOL, FD_ATOL);
}

static double ab_eval(void *p)
{
    elem_ctx *c = p;
    return WEIGHT * kd_ab_forward(c->s, c->t, VR, VC, 1.0f);
}

static double ofd_eval(void *p)
{
    elem_ctx *c = p;
    return WEIGHT * kd_ofd_forward(c->s, c->t, c->p, VR, 1, VC);
}

static void test_ab_ofd(void **state)
{
    (void)state;
    float s[VR * VC], t[VR * VC], d[VR * VC] = {0}, m[VC] = {-0.5f, -0.2f, -1.0f};
    tu_fill_uniform(s, VR * VC, -2.0f, 2.0f, 51);
    tu_fill_uniform(t, VR * VC, -2.0f, 2.0f, 52);
    elem_ctx c = {s, t, m};
    kd_ab_backward(d, s, t, VR, VC, 1.0f, WEIGHT);
    tu_check_grad("AB", s, VR * VC, d, ab_eval, &c, FD_H, FD_RTOL, FD_ATOL);
    memset(d, 0, sizeof d);
    kd_ofd_backward(d, s, t, m, VR, 1, VC, WEIGHT);
    tu_check_grad("OFD", s, VR * VC, d, ofd_eval, &c, FD_H, FD_RTOL, FD_ATOL);

    /* the cases by hand (margin 1 for AB, -0.5 for OFD): a student on the teacher's side of 0
     * by more than the margin costs nothing, else the squared distance to the margin */
    const float as[4] = {-1.5f, -0.5f, 2.0f, 0.5f}, at[4] = {-1.0f, -1.0f, 1.0f, 1.0f};
    assert_true(fabs(kd_ab_forward(as, at, 1, 4, 1.0f) - (0.25 + 0.25)) < 1e-12);
    /* OFD: target max(t, -0.5); a student below a negative target costs nothing */
    const float os[4] = {-2.0f, 0.0f, 1.0f, -1.0f}, ot[4] = {-3.0f, -3.0f, 2.0f, -0.2f},
                om[1] = {-0.5f};
    assert_true(fabs(kd_ofd_forward(os, ot, om, 1, 4, 1) - (0.0 + 0.25 + 1.0 + 0.0)) < 1e-12);
}

/* the margin is E[x | x < 0] of the channel's normal: -sqrt(2/pi) for mean 0 and std 1 */
static void test_ofd_margin(void **state)
{
    (void)state;
    /* channel 0: +-1 (mean 0, std 1); 1: constant -2; 2: constant 3; 3: mean 10, std 1 */
    const float t[2 * 4] = {1.0f, -2.0f, 3.0f, 11.0f, -1.0f, -2.0f, 3.0f, 9.0f};
    float m[4];
    kd_ofd_margin(m, t, 2, 4);
    assert_true(fabsf(m[0] - (float)-sqrt(2.0 / M_PI)) < 1e-6f);
    assert_true(m[1] == -2.0f && m[2] == 0.0f);
    assert_true(fabsf(m[3] - -3.0f) < 1e-6f); /* Phi(-10) is below 0.001: -3 std */
}

// ----------------------------------------------------------------------------------------------
// CRD: the loss through both embedding heads, the bank's update and its resume state

enum { CN = 20, CF = 4, CK = 6, CIS = 5, CIT = 3 }; /* bank rows, width, negatives, head inputs */

typedef struct {
    kd_crd_bank bk;
    int n;
    float xs[3 * CIS], xt[3 * CIT];     /* the features the heads read */
    float ws[CF * CIS], bs[CF], wt[CF * CIT], bt[CF];
    float es[3 * CF], et[3 * CF];
    int32_t y[3], idx[3 * (CK + 1)];
    double *save;
} crd_ctx;

/* the loss of the heads' outputs es, et */
static double crd_eval_emb(void *p)
{
    crd_ctx *c = p;
    return WEIGHT * kd_crd_forward(c->save, &c->bk, c->es, c->et, c->idx, c->n);
}

/* the same through the heads */
static double crd_eval(void *p)
{
    crd_ctx *c = p;
    nn_linear_forward(c->es, c->xs, c->ws, NULL, c->bs, c->n, CIS, CF);
    nn_linear_forward(c->et, c->xt, c->wt, NULL, c->bt, c->n, CIT, CF);
    return crd_eval_emb(p);
}

static void crd_setup(crd_ctx *c, int n, float T)
{
    memset(c, 0, sizeof *c);
    xd_err e;
    if (kd_crd_bank_init(&c->bk, CN, CF, CK, T, 0.5f, 7, &e) != XD_OK) fail_msg("%s", e.msg);
    c->n = n;
    tu_fill_uniform(c->xs, sizeof c->xs / sizeof *c->xs, -1.0f, 1.0f, 61);
    tu_fill_uniform(c->xt, sizeof c->xt / sizeof *c->xt, -1.0f, 1.0f, 62);
    tu_fill_uniform(c->ws, sizeof c->ws / sizeof *c->ws, -1.0f, 1.0f, 63);
    tu_fill_uniform(c->bs, CF, -0.5f, 0.5f, 64);
    tu_fill_uniform(c->wt, sizeof c->wt / sizeof *c->wt, -1.0f, 1.0f, 65);
    tu_fill_uniform(c->bt, CF, -0.5f, 0.5f, 66);
    const int32_t y[3] = {4, 17, 9};
    memcpy(c->y, y, sizeof y);
    xd_rng r = xd_rng_make(7, 0, XD_RNG_USER);
    kd_crd_sample(c->idx, c->y, n, &c->bk, &r);
    c->save = malloc(sizeof(double) * kd_crd_save_len(n, CF, CK));
}

static void crd_teardown(crd_ctx *c)
{
    kd_crd_bank_free(&c->bk);
    free(c->save);
}

/* finite differences w.r.t. the embeddings and, with heads, through both heads' weights and
 * biases (the gradients the trainer gives them), before Z is set (it is then this batch's, a
 * constant) and after */
static void crd_fd(int n, float T, int heads)
{
    crd_ctx c;
    crd_setup(&c, n, T);
    for (int pass = 0; pass < 2; pass++) {
        float des[3 * CF] = {0}, det[3 * CF] = {0}, dws[CF * CIS] = {0}, dbs[CF] = {0},
              dwt[CF * CIT] = {0}, dbt[CF] = {0};
        const double loss = crd_eval(&c);
        assert_true(isfinite(loss) && loss > 0.0);
        kd_crd_backward(des, det, c.save, &c.bk, c.idx, n, WEIGHT);
        nn_linear_backward(NULL, dws, dbs, des, c.xs, c.ws, n, CIS, CF);
        nn_linear_backward(NULL, dwt, dbt, det, c.xt, c.wt, n, CIT, CF);
        if (pass == 0) {
            /* the first batch sets Z, a constant for backward: hold it for the differences
             * (the update's Z, with the bank's rows as they were) */
            float *keep = malloc(2 * sizeof(float) * CN * CF);
            memcpy(keep, c.bk.mem_s, sizeof(float) * CN * CF);
            memcpy(keep + CN * CF, c.bk.mem_t, sizeof(float) * CN * CF);
            kd_crd_bank_update(&c.bk, c.save, c.y, n);
            memcpy(c.bk.mem_s, keep, sizeof(float) * CN * CF);
            memcpy(c.bk.mem_t, keep + CN * CF, sizeof(float) * CN * CF);
            free(keep);
            assert_true(c.bk.z[0] > 0.0f && c.bk.z[1] > 0.0f);
        }
        tu_check_grad("CRD student embedding", c.es, (size_t)n * CF, des, crd_eval_emb, &c, FD_H,
                      FD_RTOL, FD_ATOL);
        tu_check_grad("CRD teacher embedding", c.et, (size_t)n * CF, det, crd_eval_emb, &c, FD_H,
                      FD_RTOL, FD_ATOL);
        /* through the heads the embeddings are rounded to float: larger steps, looser check, at
         * a temperature where the loss is smooth enough for such steps */
        if (heads) {
            tu_check_grad("CRD student head weight", c.ws, CF * CIS, dws, crd_eval, &c, 3e-3, 2e-3,
                          5e-6);
            tu_check_grad("CRD student head bias", c.bs, CF, dbs, crd_eval, &c, 3e-3, 2e-3, 5e-6);
            tu_check_grad("CRD teacher head weight", c.wt, CF * CIT, dwt, crd_eval, &c, 3e-3, 2e-3,
                          5e-6);
            tu_check_grad("CRD teacher head bias", c.bt, CF, dbt, crd_eval, &c, 3e-3, 2e-3, 5e-6);
        }
        /* the second pass with a bank that has learned from a batch */
        crd_eval(&c);
        kd_crd_bank_update(&c.bk, c.save, c.y, n);
    }
    crd_teardown(&c);
}

static void test_crd_fd(void **state)
{
    (void)state;
    crd_fd(3, 0.5f, 1);
    crd_fd(3, (float)KD_CRD_T, 0);
}

/* the dense scores (one GEMM against the whole bank) and the row-by-row ones give the same loss
 * and gradients to rounding; the finite-difference tests above run the dense path (this bank's
 * draws cover it), so this ties the row path to them */
static void test_crd_dense_matches_rows(void **state)
{
    (void)state;
    crd_ctx c;
    crd_setup(&c, 3, 0.5f);
    assert_int_equal(c.bk.dense, 1);
    double loss[2];
    float des[2][3 * CF] = {{0}}, det[2][3 * CF] = {{0}};
    for (int dense = 1; dense >= 0; dense--) {
        c.bk.dense = dense;
        loss[dense] = crd_eval(&c);
        kd_crd_backward(des[dense], det[dense], c.save, &c.bk, c.idx, 3, WEIGHT);
    }
    c.bk.dense = 1; /* its buffers are freed with it */
    assert_true(fabs(loss[0] - loss[1]) <= 1e-12 * fabs(loss[0]));
    tu_assert_close(des[0], des[1], 3 * CF, 1e-6, 1e-7, "CRD student gradient, dense vs rows");
    tu_assert_close(det[0], det[1], 3 * CF, 1e-6, 1e-7, "CRD teacher gradient, dense vs rows");
    crd_teardown(&c);
}

/* negatives come from the bank: one example is an ordinary batch */
static void test_crd_batch_of_one(void **state)
{
    (void)state;
    crd_fd(1, 0.5f, 1);
}

static void test_crd_bank(void **state)
{
    (void)state;
    crd_ctx c;
    crd_setup(&c, 3, 0.5f);
    /* the draws: the positive first, negatives in range, the same from the same stream */
    int32_t again[3 * (CK + 1)];
    xd_rng r = xd_rng_make(7, 0, XD_RNG_USER);
    kd_crd_sample(again, c.y, 3, &c.bk, &r);
    assert_memory_equal(again, c.idx, sizeof again);
    for (int b = 0; b < 3; b++) {
        assert_int_equal(c.idx[b * (CK + 1)], c.y[b]);
        for (int j = 1; j <= CK; j++) assert_true(c.idx[b * (CK + 1) + j] < CN);
    }
    /* the update: rows y move to normalise(m old + (1 - m) e^), the others stay; Z once */
    float before_s[CN * CF], before_t[CN * CF];
    memcpy(before_s, c.bk.mem_s, sizeof before_s);
    memcpy(before_t, c.bk.mem_t, sizeof before_t);
    const double first = crd_eval(&c);
    kd_crd_bank_update(&c.bk, c.save, c.y, 3);
    const float z0 = c.bk.z[0];
    for (int i = 0; i < CN; i++) {
        int used = i == c.y[0] || i == c.y[1] || i == c.y[2];
        if (!used) {
            assert_memory_equal(c.bk.mem_s + i * CF, before_s + i * CF, CF * sizeof(float));
            continue;
        }
        const int b = i == c.y[0] ? 0 : i == c.y[1] ? 1 : 2;
        double v[CF], ss = 0.0, n2 = 0.0;
        for (int d = 0; d < CF; d++) n2 += (double)c.es[b * CF + d] * c.es[b * CF + d];
        for (int d = 0; d < CF; d++) {
            v[d] = 0.5 * before_s[i * CF + d] + 0.5 * c.es[b * CF + d] / sqrt(n2);
            ss += v[d] * v[d];
        }
        for (int d = 0; d < CF; d++)
            assert_true(fabs(c.bk.mem_s[i * CF + d] - v[d] / sqrt(ss)) < 1e-6);
    }
    assert_memory_not_equal(c.bk.mem_t, before_t, sizeof before_t);
    /* the first batch's loss used the Z it set: the same batch on the same bank agrees */
    memcpy(c.bk.mem_s, before_s, sizeof before_s);
    memcpy(c.bk.mem_t, before_t, sizeof before_t);
    assert_true(fabs(crd_eval(&c) - first) <= 1e-12 * fabs(first));
    kd_crd_bank_update(&c.bk, c.save, c.y, 3);
    assert_true(c.bk.z[0] == z0);
    crd_teardown(&c);
}

/* the bank through a resume file and back, bit for bit; a file that does not fit is refused */
static void test_crd_bank_resume(void **state)
{
    (void)state;
    crd_ctx c;
    crd_setup(&c, 3, 0.5f);
    crd_eval(&c);
    kd_crd_bank_update(&c.bk, c.save, c.y, 3);
    io_tensor t[KD_CRD_TENSORS];
    char names[KD_CRD_TENSORS][64];
    kd_crd_bank_tensors(&c.bk, "loss3.crd", t, names);
    xd_err e;
    if (io_st_write("resume.safetensors", t, KD_CRD_TENSORS, NULL, 0, &e)) fail_msg("%s", e.msg);
    io_st_file *f;
    if (io_st_open("resume.safetensors", &f, &e)) fail_msg("%s", e.msg);

    kd_crd_bank other, narrow;
    TU_OK(kd_crd_bank_init(&other, CN, CF, CK, 0.5f, 0.5f, 99, &e));
    assert_memory_not_equal(other.mem_s, c.bk.mem_s, sizeof(float) * CN * CF);
    TU_OK(kd_crd_bank_load(&other, f, "loss3.crd", &e));
    assert_memory_equal(other.mem_s, c.bk.mem_s, sizeof(float) * CN * CF);
    assert_memory_equal(other.mem_t, c.bk.mem_t, sizeof(float) * CN * CF);
    assert_memory_equal(other.z, c.bk.z, sizeof other.z);

    assert_int_equal(kd_crd_bank_load(&other, f, "loss2.crd", &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "resume.safetensors: no tensor 'loss2.crd.mem_s'");
    TU_OK(kd_crd_bank_init(&narrow, CN, CF + 1, CK, 0.5f, 0.5f, 99, &e));
    assert_int_equal(kd_crd_bank_load(&narrow, f, "loss3.crd", &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "tensor 'loss3.crd.mem_s' is F32 (20, 4), expected F32 (20, 5)");
    kd_crd_bank_free(&narrow);
    assert_int_equal(kd_crd_bank_init(&narrow, CN, CF, 0, 0.5f, 0.5f, 1, &e), XD_EARG);
    io_st_close(f);
    kd_crd_bank_free(&other);
    kd_crd_bank_free(&narrow);
    crd_teardown(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dkd_golden), cmocka_unit_test(test_rows_golden),
        cmocka_unit_test(test_nst_golden),
        cmocka_unit_test(test_fsp_golden), cmocka_unit_test(test_at_golden),
        cmocka_unit_test(test_clip_golden), cmocka_unit_test(test_rows_fd),
        cmocka_unit_test(test_rows_batch_of_one), cmocka_unit_test(test_dkd_fd),
        cmocka_unit_test(test_maps_fd), cmocka_unit_test(test_vid),
        cmocka_unit_test(test_ab_ofd), cmocka_unit_test(test_ofd_margin),
        cmocka_unit_test(test_crd_fd), cmocka_unit_test(test_crd_dense_matches_rows),
        cmocka_unit_test(test_crd_batch_of_one),
        cmocka_unit_test(test_crd_bank), cmocka_unit_test(test_crd_bank_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
