/* Layers (see layers.h for the conventions) but convolutions (nn/conv.c) and pools (nn/pool.c).
 * Products go to our kernel (nn/gemm.h), in bf16 (nn/gemm_bf16.h) while a model that trains in
 * bf16 runs them, except those with weights packed for inference; everything else is plain C with
 * OpenMP over independent outputs. */
#include "nn/layers.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/runtime.h"
#include "nn/gemm.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"

// ----------------------------------------------------------------------------------------------
// linear

/* each of out's B rows = b (OC), where there is a bias */
static void bias_rows(float *out, const float *b, int B, int OC)
{
    if (b && xd_threads_split((size_t)B * OC > NN_PAR_MIN)) {
#pragma omp parallel for
        for (int i = 0; i < B; i++) memcpy(out + (size_t)i * OC, b, sizeof(float) * OC);
    } else if (b) {
        for (int i = 0; i < B; i++) memcpy(out + (size_t)i * OC, b, sizeof(float) * OC);
    }
}

void nn_linear_forward(float *out, const float *inp, const float *w, const float *wp,
                       const float *b, int B, int C, int OC)
{
    bias_rows(out, b, B, OC);
    if (wp) nn_sgemm_packed(0, B, OC, C, 1.0f, inp, C, wp, b ? 1.0f : 0.0f, out, OC);
    else nn_mm(0, 1, B, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

size_t nn_linear_bpacked_size(int C, int OC) { return nn_bgemm_packed_size(OC, C); }

void nn_linear_bpack(uint32_t *wpb, const float *w, int C, int OC)
{
    nn_bgemm_pack_b(1, OC, C, w, C, wpb);
}

void nn_linear_forward_bpacked(float *out, const float *inp, const uint32_t *wpb, const float *b,
                               int B, int C, int OC)
{
    bias_rows(out, b, B, OC);
    nn_bgemm_packed(B, OC, C, 1.0f, inp, C, wpb, b ? 1.0f : 0.0f, out, OC);
}

size_t nn_linear_packed_size(int C, int OC) { return nn_sgemm_packed_size(OC, C); }

void nn_linear_pack(float *wp, const float *w, int C, int OC)
{
    nn_sgemm_pack_b(1, OC, C, w, C, wp);
}

/* gbeta: 1 adds into dw and db, 0 writes them */
static void linear_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int B, int C, int OC, float gbeta)
{
    if (dinp) /* dinp (B, C) += dout (B, OC) @ w (OC, C) */
        nn_mm(0, 0, B, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw) /* dw (OC, C) += dout^T (OC, B) @ inp (B, C), its rows on the threads that own them */
        nn_mm_param_rows(1, 0, OC, C, B, 1.0f, dout, OC, inp, C, gbeta, dw, C);
    if (db && gbeta == 0.0f) nn_bias_grad_first(db, dout, B, OC);
    else if (db) nn_bias_grad(db, dout, B, OC);
}

void nn_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int B, int C, int OC)
{
    linear_backward(dinp, dw, db, dout, inp, w, B, C, OC, 1.0f);
}

void nn_linear_backward_wfirst(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, int B, int C, int OC)
{
    linear_backward(dinp, dw, db, dout, inp, w, B, C, OC, 0.0f);
}

/* Runs of output channels, each channel's sum running down its column in row order while the run
 * is summed side by side along the rows (one chain per channel, as a loop per channel gives, but
 * without waiting on each add); runs are independent: no shared writes. first: db = 0 + sums.
 * Runs are BIAS_RUN channels long, or shorter where that splits the channels among the threads
 * (whole vectors of BIAS_VEC, at most one run a thread): a convolution's 32 or 64 channels over a
 * batch's positions (1.6M values for the teacher's second) would otherwise be summed by one
 * thread. Each channel's chain is the same whatever the runs, so the bits do not depend on the
 * threads. */
enum { BIAS_RUN = 64, BIAS_VEC = 16 };
static void bias_grad_run(float *db, const float *dout, int B, int OC, int o0, int n, int first)
{
    float s[BIAS_RUN] = {0};
    for (int i = 0; i < B; i++) {
        const float *d = dout + (size_t)i * OC + o0;
        for (int o = 0; o < n; o++) s[o] += d[o];
    }
    for (int o = 0; o < n; o++) db[o0 + o] = (first ? 0.0f : db[o0 + o]) + s[o];
}

static void bias_grad(float *db, const float *dout, int B, int OC, int first)
{
    const int par = xd_threads_split((size_t)B * OC > NN_PAR_MIN);
    int run = BIAS_RUN;
    if (par) {
        const int T = xd_threads_get(), each = (OC + T - 1) / T;
        const int vec = (each + BIAS_VEC - 1) / BIAS_VEC * BIAS_VEC;
        if (vec < run) run = vec;
    }
    const int runs = (OC + run - 1) / run;
    if (!(par && runs > 1)) { /* no region: see xd_threads_split */
        for (int o0 = 0; o0 < OC; o0 += run)
            bias_grad_run(db, dout, B, OC, o0, OC - o0 < run ? OC - o0 : run, first);
        return;
    }
#pragma omp parallel for
    for (int r = 0; r < runs; r++) {
        const int o0 = r * run;
        bias_grad_run(db, dout, B, OC, o0, OC - o0 < run ? OC - o0 : run, first);
    }
}

void nn_bias_grad(float *db, const float *dout, int B, int OC) { bias_grad(db, dout, B, OC, 0); }

void nn_bias_grad_first(float *db, const float *dout, int B, int OC)
{
    bias_grad(db, dout, B, OC, 1);
}

// ----------------------------------------------------------------------------------------------
// activations

void nn_relu_forward(float *out, const float *inp, size_t n)
{
    if (!xd_threads_split(n > NN_PAR_MIN)) {
        for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
        return;
    }
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* g where x > 0, else +0: g's bits and a mask of the comparison, so that the loops below select
 * in vectors (gcc made the select a load under a condition, which kept them scalar and
 * branching on the signs: 15 us for the MLP's 16384 values) */
static inline float relu_pass(float x, float g)
{
    uint32_t b;
    memcpy(&b, &g, sizeof b);
    b &= 0u - (uint32_t)(x > 0.0f);
    memcpy(&g, &b, sizeof g);
    return g;
}

/* dinp[lo..hi) = (first ? 0 : dinp) + relu_pass: a loop for each case, so that neither loads
 * dinp under a condition */
static void relu_backward_range(float *restrict dinp, const float *restrict dout,
                                const float *restrict inp, size_t lo, size_t hi, int first)
{
    if (first)
        for (size_t i = lo; i < hi; i++) dinp[i] = 0.0f + relu_pass(inp[i], dout[i]);
    else
        for (size_t i = lo; i < hi; i++) dinp[i] += relu_pass(inp[i], dout[i]);
}

/* first: dinp holds nothing yet this step. It is written as 0 + g, the very bits that zeroing it
 * and adding g would give (+0 for a gradient of -0), without the separate zeroing pass. */
static void relu_backward(float *dinp, const float *dout, const float *inp, size_t n, int first)
{
    if (!xd_threads_split(n > NN_PAR_MIN)) {
        relu_backward_range(dinp, dout, inp, 0, n, first);
        return;
    }
#pragma omp parallel
    {
        const size_t t = (size_t)xd_thread_num(), T = (size_t)xd_team_size();
        relu_backward_range(dinp, dout, inp, n * t / T, n * (t + 1) / T, first);
    }
}

void nn_relu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    relu_backward(dinp, dout, inp, n, 0);
}

void nn_relu_backward_first(float *dinp, const float *dout, const float *inp, size_t n)
{
    relu_backward(dinp, dout, inp, n, 1);
}

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT2PI 0.39894228040143268f

void nn_gelu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2));
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        float pdf = INV_SQRT2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void nn_tanh_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

/* d tanh = 1 - y^2 */
void nn_tanh_backward(float *dinp, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

void nn_sigmoid_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        /* never exp of a large positive number */
        if (x >= 0.0f) {
            out[i] = 1.0f / (1.0f + expf(-x));
        } else {
            float z = expf(x);
            out[i] = z / (1.0f + z);
        }
    }
}

/* d sigmoid = y (1 - y) */
void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

/* exp(v) for v in [EXP_LO, EXP_HI], in a loop the compiler turns into vector code: v = k ln 2 + r
 * with k = round(v / ln 2) and |r| <= ln 2 / 2 (ln 2 in two parts, so k ln 2 is exact to double
 * precision), exp(r) by its Taylor series to r^13 / 13! (the first term left out is below 5e-18
 * of the sum) in Horner's scheme with fused steps, times 2^k built from its bits. Within about
 * one ulp of the correctly rounded value, so a float made from it is libm's but for a value
 * within that of a rounding boundary between two floats (one in about 10^8). 2^k's bits come
 * from the rounding sum's: its low bits hold k, so adding the bias and shifting it to the exponent
 * are integer adds and shifts, which AVX2 has (it has no conversion of doubles to 64-bit integers,
 * and with one the loop stayed scalar there: 12.8 ns a logit in the loss's softmax). */
#define EXP_LO -708.0 /* the result is a normal double: 2^k in range */
#define EXP_HI 709.0
#define EXP_CHUNK 64

static inline double exp_core(double v)
{
    const double shifter = 0x1.8p52, ln2_hi = 0x1.62e42fefa39efp-1, ln2_lo = 0x1.abc9e3b39803fp-56;
    const double t = fma(v, 0x1.71547652b82fep0, shifter); /* 1.5 2^52 + round(v / ln 2) */
    const double k = t - shifter;
    const double r = fma(-k, ln2_lo, fma(-k, ln2_hi, v));
    double p = 1.0 / 6227020800.0; /* 1 / 13! */
    p = fma(p, r, 1.0 / 479001600.0);
    p = fma(p, r, 1.0 / 39916800.0);
    p = fma(p, r, 1.0 / 3628800.0);
    p = fma(p, r, 1.0 / 362880.0);
    p = fma(p, r, 1.0 / 40320.0);
    p = fma(p, r, 1.0 / 5040.0);
    p = fma(p, r, 1.0 / 720.0);
    p = fma(p, r, 1.0 / 120.0);
    p = fma(p, r, 1.0 / 24.0);
    p = fma(p, r, 1.0 / 6.0);
    p = fma(p, r, 0.5);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    uint64_t bits; /* t's bits are those of 1.5 2^52 plus k, whose high bits the shift drops */
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* e[j] = exp(v[j]) for j < n: the vector loop over every value, clamped to its range, then libm
 * for the few outside it (underflow, overflow, NaN) */
static void exp_chunk_n(double *restrict e, const double *restrict v, int n)
{
    for (int j = 0; j < n; j++) { /* NaN clamped too: exp_core's k must be in range */
        const double c = !(v[j] >= EXP_LO) ? EXP_LO : v[j] > EXP_HI ? EXP_HI : v[j];
        e[j] = exp_core(c);
    }
    int out = 0; /* a vector reduction, and the scalar loop only where it finds one */
    for (int j = 0; j < n; j++) out |= !(v[j] >= EXP_LO && v[j] <= EXP_HI);
    for (int j = 0; out && j < n; j++)
        if (!(v[j] >= EXP_LO && v[j] <= EXP_HI)) e[j] = exp(v[j]);
}

/* e[j] = exp(x[k0 + j] / T - shift) for the chunk of n values at k0 */
static void exp_shifted(double *e, const float *x, int k0, int n, double T, double shift)
{
    double v[EXP_CHUNK];
    if (T == 1.0) /* x / 1 is x: the same values without a division each */
        for (int j = 0; j < n; j++) v[j] = (double)x[k0 + j] - shift;
    else
        for (int j = 0; j < n; j++) v[j] = (double)x[k0 + j] / T - shift;
    exp_chunk_n(e, v, n);
}

void nn_exp_many(double *e, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i += EXP_CHUNK)
        exp_chunk_n(e + i, v + i, n - i < EXP_CHUNK ? (int)(n - i) : EXP_CHUNK);
}

double nn_logsumexp(const float *x, int K, double T)
{
    double m = -INFINITY, s = 0.0, e[EXP_CHUNK];
    if (T == 1.0)
        for (int k = 0; k < K; k++) m = fmax(m, (double)x[k]);
    else
        for (int k = 0; k < K; k++) m = fmax(m, (double)x[k] / T);
    for (int k0 = 0; k0 < K; k0 += EXP_CHUNK) {
        const int n = K - k0 < EXP_CHUNK ? K - k0 : EXP_CHUNK;
        exp_shifted(e, x, k0, n, T, m);
        for (int j = 0; j < n; j++) s += e[j]; /* in order, one chain */
    }
    return m + log(s);
}

double nn_softmax_row(float *p, const float *x, int K, double T)
{
    const double lse = nn_logsumexp(x, K, T);
    double e[EXP_CHUNK];
    for (int k0 = 0; k0 < K; k0 += EXP_CHUNK) {
        const int n = K - k0 < EXP_CHUNK ? K - k0 : EXP_CHUNK;
        exp_shifted(e, x, k0, n, T, lse);
        for (int j = 0; j < n; j++) p[k0 + j] = (float)e[j];
    }
    return lse;
}

/* Rows of a few values each (K at most EXP_GROUP) go a group at a time, so the vector exp runs
 * over a group's values at once rather than over each short row with a scalar remainder. */
#define EXP_GROUP 256

/* d = v less its row's m[r], g rows of K */
static void shift_rows(double *restrict d, const double *restrict v, const double *restrict m,
                       int g, int K)
{
    for (int r = 0; r < g; r++)
        for (int k = 0; k < K; k++) d[r * K + k] = v[r * K + k] - m[r];
}

void nn_softmax_rows(float *p, double *lse, const float *x, int R, int K, double T)
{
    if (K <= 0) { /* nn_softmax_row's: the log of an empty sum */
        for (int r = 0; lse && r < R; r++) lse[r] = -INFINITY;
        return;
    }
    if (K > EXP_GROUP) {
        for (int r = 0; r < R; r++) {
            const double l = nn_softmax_row(p + (size_t)r * K, x + (size_t)r * K, K, T);
            if (lse) lse[r] = l;
        }
        return;
    }
    const int G = EXP_GROUP / K; /* rows per group */
    double v[EXP_GROUP], d[EXP_GROUP], e[EXP_GROUP], m[EXP_GROUP];
    for (int r0 = 0; r0 < R; r0 += G) {
        const int g = R - r0 < G ? R - r0 : G, n = g * K;
        const float *xs = x + (size_t)r0 * K;
        /* each row's values over T, less the row's maximum (nn_logsumexp's terms) */
        if (T == 1.0)
            for (int i = 0; i < n; i++) v[i] = (double)xs[i];
        else
            for (int i = 0; i < n; i++) v[i] = (double)xs[i] / T;
        for (int r = 0; r < g; r++) {
            double mx = -INFINITY;
            for (int k = 0; k < K; k++) mx = v[r * K + k] > mx ? v[r * K + k] : mx; /* fmax's */
            m[r] = mx;
        }
        shift_rows(d, v, m, g, K);
        exp_chunk_n(e, d, n);
        for (int r = 0; r < g; r++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) s += e[r * K + k]; /* in order, as nn_logsumexp */
            m[r] += log(s);
            if (lse) lse[r0 + r] = m[r];
        }
        shift_rows(d, v, m, g, K);
        exp_chunk_n(e, d, n);
        float *ps = p + (size_t)r0 * K;
        for (int i = 0; i < n; i++) ps[i] = (float)e[i];
    }
}

/* y = x - log sum exp(x), in double so that it stays exact to float rounding for |x| ~ 1000 */
void nn_logsoftmax_forward(float *out, const float *inp, int R, int K)
{
#pragma omp parallel for if ((size_t)R * K > NN_PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * K;
        float *y = out + (size_t)r * K;
        double lse = nn_logsumexp(x, K, 1.0);
        for (int k = 0; k < K; k++) y[k] = (float)((double)x[k] - lse);
    }
}

/* dx = dy - softmax(x) * sum(dy) */
void nn_logsoftmax_backward(float *dinp, const float *dout, const float *out, int R, int K)
{
#pragma omp parallel for if ((size_t)R * K > NN_PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *dy = dout + (size_t)r * K, *y = out + (size_t)r * K;
        float *dx = dinp + (size_t)r * K;
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += dy[k];
        for (int k = 0; k < K; k++) dx[k] += dy[k] - expf(y[k]) * s;
    }
}

int nn_softmax_piece(int R, int par)
{
    enum { PIECE = 64 };
    const int T = par ? xd_threads_get() : 1, share = (R + T - 1) / T;
    return share < PIECE ? (share > 0 ? share : 1) : PIECE;
}

void nn_softmax_forward(float *out, const float *inp, int R, int K)
{
    const int par = xd_threads_split((size_t)R * K > NN_PAR_MIN), piece = nn_softmax_piece(R, par);
#pragma omp parallel for if (par)
    for (int r = 0; r < R; r += piece)
        nn_softmax_rows(out + (size_t)r * K, NULL, inp + (size_t)r * K,
                        R - r < piece ? R - r : piece, K, 1.0);
}

void nn_softmax_infer(float *out, const float *inp, int R, int K)
{
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * K;
        float *y = out + (size_t)r * K, mx = x[0], s = 0.0f;
        for (int k = 1; k < K; k++) mx = x[k] > mx ? x[k] : mx;
        for (int k = 0; k < K; k++) s += y[k] = expf(x[k] - mx);
        const float inv = 1.0f / s;
        for (int k = 0; k < K; k++) y[k] *= inv;
    }
}

/* dx = y * (dy - sum(dy * y)) */
void nn_softmax_backward(float *dinp, const float *dout, const float *out, int R, int K)
{
#pragma omp parallel for if ((size_t)R * K > NN_PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *dy = dout + (size_t)r * K, *y = out + (size_t)r * K;
        float *dx = dinp + (size_t)r * K;
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += dy[k] * y[k];
        for (int k = 0; k < K; k++) dx[k] += y[k] * (dy[k] - s);
    }
}

// ----------------------------------------------------------------------------------------------
// normalisation

/* Channel sums walk the rows in order for every channel, so they are the same at any thread
 * count; threads split the channels. */
void nn_batchnorm_forward_train(float *out, float *mean, float *rstd, float *run_mean,
                                float *run_var, const float *inp, const float *gamma,
                                const float *beta, int N, int C, float eps, float momentum)
{
#pragma omp parallel for if ((size_t)N * C > NN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) s += inp[(size_t)i * C + c];
        double mu = s / N, v = 0.0;
        for (int i = 0; i < N; i++) {
            double d = inp[(size_t)i * C + c] - mu;
            v += d * d;
        }
        double var = v / N;
        mean[c] = (float)mu;
        rstd[c] = (float)(1.0 / sqrt(var + eps));
        if (run_mean) {
            double unbiased = N > 1 ? v / (N - 1) : var;
            run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * (float)mu;
            run_var[c] = (1.0f - momentum) * run_var[c] + momentum * (float)unbiased;
        }
    }
#pragma omp parallel for if ((size_t)N * C > NN_PAR_MIN)
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) {
            size_t k = (size_t)i * C + c;
            out[k] = gamma[c] * (inp[k] - mean[c]) * rstd[c] + beta[c];
        }
}

static void batchnorm_eval_row(float *out, const float *inp, const float *gamma,
                               const float *beta, const float *run_mean, const float *run_var,
                               int C, float eps)
{
    for (int c = 0; c < C; c++)
        out[c] = gamma[c] * (inp[c] - run_mean[c]) / sqrtf(run_var[c] + eps) + beta[c];
}

void nn_batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                               const float *run_mean, const float *run_var, int N, int C,
                               float eps)
{
    if (!xd_threads_split((size_t)N * C > NN_PAR_MIN)) { /* no region: an image's rows at a time
                                                           * in inference */
        for (int i = 0; i < N; i++)
            batchnorm_eval_row(out + (size_t)i * C, inp + (size_t)i * C, gamma, beta, run_mean,
                               run_var, C, eps);
        return;
    }
#pragma omp parallel for
    for (int i = 0; i < N; i++)
        batchnorm_eval_row(out + (size_t)i * C, inp + (size_t)i * C, gamma, beta, run_mean,
                           run_var, C, eps);
}

/* xhat = (x - mean) rstd; dxhat = dy gamma;
 * dx = rstd/N * (N dxhat - sum(dxhat) - xhat sum(dxhat xhat)) */
void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *gamma, int N, int C)
{
#pragma omp parallel for if ((size_t)N * C > NN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int i = 0; i < N; i++) {
            size_t k = (size_t)i * C + c;
            double xhat = (inp[k] - mean[c]) * rstd[c];
            sdy += dout[k];
            sdyx += dout[k] * xhat;
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        if (dinp) {
            double g = gamma[c], r = rstd[c];
            double a = g * sdy / N, bcoef = g * sdyx / N;
            for (int i = 0; i < N; i++) {
                size_t k = (size_t)i * C + c;
                double xhat = (inp[k] - mean[c]) * r;
                dinp[k] += (float)(r * (g * dout[k] - a - xhat * bcoef));
            }
        }
    }
}

void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int R, int C, float eps)
{
#pragma omp parallel for if ((size_t)R * C > NN_PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * C;
        float *y = out + (size_t)r * C;
        double s = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) s += x[c];
        double mu = s / C;
        for (int c = 0; c < C; c++) v += (x[c] - mu) * (x[c] - mu);
        float rs = (float)(1.0 / sqrt(v / C + eps));
        mean[r] = (float)mu;
        rstd[r] = rs;
        for (int c = 0; c < C; c++) y[c] = gamma[c] * ((x[c] - (float)mu) * rs) + beta[c];
    }
}

/* per row: dxhat = dy gamma; dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
 * dgamma/dbeta sum over rows: a second loop over channels, so no two threads write one place. */
void nn_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *gamma, int R, int C)
{
    if (dinp) {
#pragma omp parallel for if ((size_t)R * C > NN_PAR_MIN)
        for (int r = 0; r < R; r++) {
            const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
            float *dx = dinp + (size_t)r * C;
            double s1 = 0.0, s2 = 0.0;
            for (int c = 0; c < C; c++) {
                double xhat = (x[c] - mean[r]) * rstd[r];
                double g = (double)dy[c] * gamma[c];
                s1 += g;
                s2 += g * xhat;
            }
            s1 /= C;
            s2 /= C;
            for (int c = 0; c < C; c++) {
                double xhat = (x[c] - mean[r]) * rstd[r];
                dx[c] += (float)(rstd[r] * ((double)dy[c] * gamma[c] - s1 - xhat * s2));
            }
        }
    }
#pragma omp parallel for if ((size_t)R * C > NN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        double sg = 0.0, sb = 0.0;
        for (int r = 0; r < R; r++) {
            size_t k = (size_t)r * C + c;
            sg += (double)dout[k] * (inp[k] - mean[r]) * rstd[r];
            sb += dout[k];
        }
        if (dgamma) dgamma[c] += (float)sg;
        if (dbeta) dbeta[c] += (float)sb;
    }
}

// ----------------------------------------------------------------------------------------------
// dropout

void nn_dropout_forward(float *out, float *mask, const float *inp, int B, int D, float p,
                        uint64_t seed, const uint64_t *example, uint64_t step, uint32_t salt)
{
    const float keep = 1.0f - p, scale = p < 1.0f ? 1.0f / keep : 0.0f;
#pragma omp parallel for if ((size_t)B * D > NN_PAR_MIN / 4)
    for (int b = 0; b < B; b++) {
        uint64_t ex = example ? example[b] : (uint64_t)b;
        xd_rng r = xd_rng_make(seed ^ xd_mix64(step * 0x100000001ull + salt), ex, XD_RNG_DROPOUT);
        for (int d = 0; d < D; d++) {
            size_t k = (size_t)b * D + d;
            mask[k] = xd_rng_uniform(&r) < keep ? scale : 0.0f;
            out[k] = inp[k] * mask[k];
        }
    }
}

void nn_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * mask[i];
}

// ----------------------------------------------------------------------------------------------
// embedding bag

static float bag_scale(const int32_t *ids, int L, nn_bag_mode mode)
{
    if (mode == NN_BAG_SUM) return 1.0f;
    int cnt = 0;
    for (int l = 0; l < L; l++) cnt += ids[l] >= 0;
    return cnt ? 1.0f / (float)cnt : 0.0f;
}

void nn_embbag_forward(float *out, const int32_t *ids, const float *table, int B, int L, int D,
                       nn_bag_mode mode)
{
#pragma omp parallel for if ((size_t)B * L * D > NN_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const int32_t *row = ids + (size_t)b * L;
        float *o = out + (size_t)b * D;
        float sc = bag_scale(row, L, mode);
        for (int d = 0; d < D; d++) o[d] = 0.0f;
        for (int l = 0; l < L; l++) {
            if (row[l] < 0) continue;
            const float *t = table + (size_t)row[l] * D;
            for (int d = 0; d < D; d++) o[d] += t[d];
        }
        for (int d = 0; d < D; d++) o[d] *= sc;
    }
}

/* Rows of the table are shared between examples, so threads split the embedding columns: every
 * thread walks all examples in order for its own columns. */
void nn_embbag_backward(float *dtable, const float *dout, const int32_t *ids, int B, int L, int D,
                        nn_bag_mode mode)
{
    enum { COLS = 16 };
    const int blocks = (D + COLS - 1) / COLS;
#pragma omp parallel for if ((size_t)B * L * D > NN_PAR_MIN)
    for (int blk = 0; blk < blocks; blk++) {
        int d0 = blk * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
        for (int b = 0; b < B; b++) {
            const int32_t *row = ids + (size_t)b * L;
            float sc = bag_scale(row, L, mode);
            const float *g = dout + (size_t)b * D;
            for (int l = 0; l < L; l++) {
                if (row[l] < 0) continue;
                float *t = dtable + (size_t)row[l] * D;
                for (int d = d0; d < d1; d++) t[d] += g[d] * sc;
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// bilinear upsampling

/* Source coordinate of output index o at factor f with half-pixel centres, clamped at 0 like
 * PyTorch: src = max(0, (o + 0.5) / f - 0.5); i0 = floor(src), i1 = min(i0 + 1, n - 1). */
static void up_coord(int o, int f, int n, int *i0, int *i1, float *w1)
{
    float src = ((float)o + 0.5f) / (float)f - 0.5f;
    if (src < 0.0f) src = 0.0f;
    int a = (int)src;
    if (a > n - 1) a = n - 1;
    *i0 = a;
    *i1 = a + 1 < n ? a + 1 : n - 1;
    *w1 = src - (float)a;
}

void nn_upsample_forward(float *out, const float *inp, int B, int H, int W, int C, int f)
{
    const int OH = H * f, OW = W * f;
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < OH; oy++) {
            int y0, y1, x0, x1;
            float wy, wx;
            up_coord(oy, f, H, &y0, &y1, &wy);
            const float *img = inp + (size_t)b * H * W * C;
            for (int ox = 0; ox < OW; ox++) {
                up_coord(ox, f, W, &x0, &x1, &wx);
                const float *p00 = img + ((size_t)y0 * W + x0) * C, *p01 = img + ((size_t)y0 * W + x1) * C;
                const float *p10 = img + ((size_t)y1 * W + x0) * C, *p11 = img + ((size_t)y1 * W + x1) * C;
                float *o = out + (((size_t)b * OH + oy) * OW + ox) * C;
                for (int c = 0; c < C; c++)
                    o[c] = (1 - wy) * ((1 - wx) * p00[c] + wx * p01[c]) +
                           wy * ((1 - wx) * p10[c] + wx * p11[c]);
            }
        }
}

void nn_upsample_backward(float *dinp, const float *dout, int B, int H, int W, int C, int f)
{
    const int OH = H * f, OW = W * f;
#pragma omp parallel for
    for (int b = 0; b < B; b++) {
        float *img = dinp + (size_t)b * H * W * C;
        for (int oy = 0; oy < OH; oy++) {
            int y0, y1, x0, x1;
            float wy, wx;
            up_coord(oy, f, H, &y0, &y1, &wy);
            for (int ox = 0; ox < OW; ox++) {
                up_coord(ox, f, W, &x0, &x1, &wx);
                const float *d = dout + (((size_t)b * OH + oy) * OW + ox) * C;
                float *p00 = img + ((size_t)y0 * W + x0) * C, *p01 = img + ((size_t)y0 * W + x1) * C;
                float *p10 = img + ((size_t)y1 * W + x0) * C, *p11 = img + ((size_t)y1 * W + x1) * C;
                for (int c = 0; c < C; c++) {
                    p00[c] += d[c] * (1 - wy) * (1 - wx);
                    p01[c] += d[c] * (1 - wy) * wx;
                    p10[c] += d[c] * wy * (1 - wx);
                    p11[c] += d[c] * wy * wx;
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// fake quantisation

float nn_fakequant_forward(float *out, const float *inp, size_t n, int bits)
{
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(inp[i]);
        amax = a > amax ? a : amax;
    }
    const float levels = (float)((1 << (bits - 1)) - 1);
    const float scale = amax > 0.0f ? amax / levels : 1.0f;
#pragma omp parallel for if (n > NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = scale * nearbyintf(inp[i] / scale);
    return scale;
}

void nn_fakequant_backward(float *dinp, const float *dout, size_t n)
{
    nn_add_inplace(dinp, dout, n);
}

void nn_add_inplace(float *dst, const float *src, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void nn_add_first(float *dst, const float *src, size_t n)
{
#pragma omp parallel for if (n > NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = 0.0f + src[i];
}
