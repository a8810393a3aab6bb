/* Suite `gemm`: how close our layers get to the BLAS.
 *
 * For each layer of the Fashion-MNIST teacher CNN at batch 128 (conv3x3 1->32 on 28x28,
 * conv3x3 32->64 on 14x14, fc 3136->128, fc 128->10) it times, in one run and at each thread
 * count: the three GEMMs a forward+backward pass needs, called straight through cblas_sgemm (with
 * OpenBLAS's own threading) and through our own kernel (nn_sgemm); and our whole layer forward+backward
 * (im2col, bias, col2im, all the products). GFLOP/s count only the GEMM flops (3 x 2MNK; 2 x for
 * the first layer, which needs no input gradient), so the layer's figure shows what its extra
 * work costs against the bare products. Then the second convolution as a float32 model computes
 * it, by Winograd's F(2x2, 3x3) (nn/conv_wino.c): its products at their own shape, and its
 * forward. The same products and layers in bf16 (nn/gemm_bf16.h, train.precision: bf16) follow,
 * with their speed against float32. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "nn/conv_wino.h"
#include "nn/gemm.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
#include "nn/layers.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    const char *name;
    int conv;                 /* 1: conv layer, 0: linear */
    int H, W, C, OC, K, pad;  /* conv */
    int in, out;              /* linear */
    int first;                /* first layer: no input gradient, so two products instead of three */
} layer_case;

static const layer_case cases[] = {
    {"conv1", 1, 28, 28, 1, 32, 3, 1, 0, 0, 1},
    {"conv2", 1, 14, 14, 32, 64, 3, 1, 0, 0, 0},
    {"fc1", 0, 0, 0, 0, 0, 0, 0, 3136, 128, 0},
    {"fc2", 0, 0, 0, 0, 0, 0, 0, 128, 10, 0},
};

enum { BATCH = 128 };

typedef struct {
    int M, N, K;                /* forward product: (M, K) @ (N, K)^T */
    nn_conv_shape cs;
    int conv, first;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db, *cols, *dcols, *wext, *wp;
    float *a, *bm, *c1, *c2, *c3; /* buffers for the bare products */
} gemm_ctx;

static void fill(float *p, size_t n, uint64_t seed)
{
    xd_rng r = xd_rng_make(seed, 0, XD_RNG_USER);
    for (size_t i = 0; i < n; i++) p[i] = xd_rng_uniform(&r) - 0.5f;
}

/* The three products of a forward+backward pass, as our layers issue them. */
static void run_openblas(void *p)
{
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->M, g->N, g->K, 1.0f, g->a, g->K, g->bm,
                g->K, 0.0f, g->c1, g->N);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->N, g->K, g->M, 1.0f, g->c1, g->N, g->a,
                g->K, 0.0f, g->c2, g->K);
    if (!g->first)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->M, g->K, g->N, 1.0f, g->c1, g->N,
                g->bm, g->K, 0.0f, g->c3, g->K);
}

/* in the thread's precision (nn_mm), as the layers issue them */
static void run_ours(void *p)
{
    gemm_ctx *g = p;
    nn_mm(0, 1, g->M, g->N, g->K, 1.0f, g->a, g->K, g->bm, g->K, 0.0f, g->c1, g->N);
    nn_mm(1, 0, g->N, g->K, g->M, 1.0f, g->c1, g->N, g->a, g->K, 0.0f, g->c2, g->K);
    if (!g->first)
        nn_mm(0, 0, g->M, g->K, g->N, 1.0f, g->c1, g->N, g->bm, g->K, 0.0f, g->c3, g->K);
}

static void run_layer(void *p)
{
    gemm_ctx *g = p;
    size_t nx = g->conv ? (size_t)BATCH * g->cs.H * g->cs.W * g->cs.C : (size_t)BATCH * g->K;
    float *dx = g->first ? NULL : g->dx;
    if (dx) memset(dx, 0, sizeof(float) * nx);
    memset(g->dw, 0, sizeof(float) * (size_t)g->N * g->K);
    memset(g->db, 0, sizeof(float) * (size_t)g->N);
    if (g->conv) {
        /* as a model's training step does: in float32 the weights packed for the forward, which
         * then reads the windows in place (see nn/layers.h) */
        const float *wp = NULL;
        if (nn_mm_precision() == NN_PREC_FLOAT32) {
            nn_conv_pack(g->wp, g->wext, g->w, g->b, &g->cs);
            wp = g->wp;
        }
        const int unfolded = nn_conv2d_forward(g->y, g->cols, g->wext, g->x, g->w, wp, NULL, g->b, &g->cs);
        nn_conv2d_backward(dx, g->dw, g->db, g->dcols, g->wext, g->dy, g->cols, unfolded, g->x,
                           g->w, &g->cs);
    } else {
        nn_linear_forward(g->y, g->x, g->w, NULL, g->b, BATCH, g->K, g->N);
        nn_linear_backward(dx, g->dw, g->db, g->dy, g->x, g->w, BATCH, g->K, g->N);
    }
}

static void ctx_init(gemm_ctx *g, const layer_case *lc)
{
    memset(g, 0, sizeof *g);
    g->conv = lc->conv;
    g->first = lc->first;
    size_t nx;
    if (lc->conv) {
        g->cs = (nn_conv_shape){.B = BATCH, .H = lc->H, .W = lc->W, .C = lc->C, .OC = lc->OC,
                                .KH = lc->K, .KW = lc->K, .stride = 1, .pad = lc->pad,
                                .bias = 1};
        nn_conv_shape_init(&g->cs);
        g->M = BATCH * g->cs.OH * g->cs.OW;
        g->N = lc->OC;
        g->K = lc->K * lc->K * lc->C;
        nx = (size_t)BATCH * lc->H * lc->W * lc->C;
        g->cols = malloc(sizeof(float) * nn_conv_cols_size(&g->cs));
        g->dcols = malloc(sizeof(float) * nn_conv_cols_size(&g->cs));
        g->wext = malloc(sizeof(float) * nn_conv_wext_size(&g->cs));
        g->wp = malloc(sizeof(float) * nn_conv_packed_size(&g->cs));
    } else {
        g->M = BATCH;
        g->N = lc->out;
        g->K = lc->in;
        nx = (size_t)BATCH * lc->in;
    }
    size_t MN = (size_t)g->M * g->N, MK = (size_t)g->M * g->K, NK = (size_t)g->N * g->K;
    g->x = malloc(sizeof(float) * nx);
    g->dx = malloc(sizeof(float) * nx);
    g->w = malloc(sizeof(float) * NK);
    g->dw = malloc(sizeof(float) * NK);
    g->b = malloc(sizeof(float) * g->N);
    g->db = malloc(sizeof(float) * g->N);
    g->y = malloc(sizeof(float) * MN);
    g->dy = malloc(sizeof(float) * MN);
    g->a = malloc(sizeof(float) * MK);
    g->bm = malloc(sizeof(float) * NK);
    g->c1 = malloc(sizeof(float) * MN);
    g->c2 = malloc(sizeof(float) * NK);
    g->c3 = malloc(sizeof(float) * MK);
    fill(g->x, nx, 1);
    fill(g->w, NK, 2);
    fill(g->b, (size_t)g->N, 3);
    fill(g->dy, MN, 4);
    fill(g->a, MK, 5);
    fill(g->bm, NK, 6);
}

static void ctx_free(gemm_ctx *g)
{
    float *bufs[] = {g->x, g->w, g->b, g->y, g->dy, g->dx, g->dw, g->db, g->cols, g->dcols, g->wext,
                     g->wp, g->a, g->bm, g->c1, g->c2, g->c3};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* OpenBLAS's OpenMP build follows omp_get_max_threads() for calls outside parallel regions. */
static void set_threads(int t)
{
    xd_threads_set(t);
}

typedef struct {
    float *a, *b, *c;
    int n;
} peak_ctx;

static void run_peak(void *p)
{
    peak_ctx *k = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k->n, k->n, k->n, 1.0f, k->a, k->n, k->b,
                k->n, 0.0f, k->c, k->n);
}

static void run_peak_ours(void *p)
{
    peak_ctx *k = p;
    nn_mm(0, 0, k->n, k->n, k->n, 1.0f, k->a, k->n, k->b, k->n, 0.0f, k->c, k->n);
}

/* The cores' arithmetic ceiling: each thread runs chains of the kernel's vector FMA (and of the
 * bf16 dot product) with nothing to load (nn_sgemm_peak_run); flops per thread per call. */
enum { PEAK_ROUNDS = 2000000 };

typedef struct {
    int bf16;
    double flops; /* one thread's flops per call */
    float sink;
} fma_ctx;

static void run_fma(void *p)
{
    fma_ctx *k = p;
    float sink = 0.0f;
    double flops = 0.0;
#pragma omp parallel reduction(+ : sink)
    {
        double f;
        sink += k->bf16 ? nn_bgemm_peak_run(PEAK_ROUNDS, &f) : nn_sgemm_peak_run(PEAK_ROUNDS, &f);
#pragma omp master
        flops = f;
    }
    k->flops = flops;
    k->sink += sink;
}

/* GFLOP/s of run_fma at the current thread count (0 where the bf16 kernel has no instruction) */
static double fma_peak(int bf16, int threads, double min_seconds)
{
    fma_ctx k = {.bf16 = bf16};
    bench_time t = bench_run(run_fma, &k, min_seconds, 3, 1000);
    return k.flops * threads / t.median / 1e9;
}

/* The bf16 dot product's ceiling (AVX512_BF16, the vector FMA of bf16 pairs) when the kernel in
 * use is another (the AMX tiles) and the CPU has it, else the kernel's own (peak16) */
static double dot_peak(double peak16, int threads, double min_seconds)
{
    const nn_bisa was = nn_bgemm_isa();
    if (was != NN_BISA_AMX) return peak16;
    double g = 0.0;
    if (nn_bgemm_use(NN_BISA_AVX512BF16) == NN_BISA_AVX512BF16)
        g = fma_peak(1, threads, min_seconds);
    nn_bgemm_use(was);
    return g;
}

/* The teacher's second convolution by Winograd's F(2x2, 3x3), as a float32 model's forward and
 * input gradient run it: per round of two images, 16 products of their 98 tiles' transformed
 * inputs (98 x C) by the transformed weights (C x OC). */
enum { WINO_ROUND = 98 };

typedef struct {
    nn_conv_shape cs;
    float *x, *w, *b, *y, *wpk; /* the forward, its weights packed once (nn_wino_pack) */
    float *v, *u, *up, *m;      /* one round's V_e, U_e (and packed), M_e: 16 of each */
    size_t panel;               /* floats of one packed U_e */
} wino_ctx;

static void run_wino_forward(void *p)
{
    wino_ctx *k = p;
    nn_wino_forward(k->y, k->x, k->w, k->wpk, k->b, &k->cs, NULL, NULL, NULL);
}

/* the batch's products, one round after another, each on the float32 kernel (as the forward's
 * threads each run theirs) or through cblas_sgemm */
static void wino_products(wino_ctx *k, int blas)
{
    const int C = k->cs.C, OC = k->cs.OC;
    for (int r = 0; r < k->cs.B / 2; r++)
        for (int e = 0; e < 16; e++) {
            const float *v = k->v + (size_t)e * WINO_ROUND * C;
            float *m = k->m + (size_t)e * WINO_ROUND * OC;
            if (blas)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, WINO_ROUND, OC, C, 1.0f, v,
                            C, k->u + (size_t)e * C * OC, OC, 0.0f, m, OC);
            else
                nn_sgemm_packed_serial(0, WINO_ROUND, OC, C, 1.0f, v, C, k->up + e * k->panel,
                                       0.0f, m, OC);
        }
}
static void run_wino_ours(void *p) { wino_products(p, 0); }
static void run_wino_blas(void *p) { wino_products(p, 1); }

/* One line (or JSON object) per thread count: the bare products at one thread, the forward at
 * each count; GFLOP/s of the products' flops, and of the direct convolution's count for the
 * forward (what the layer rows above count). */
static void bench_wino(const bench_opts *o, const double *peak32)
{
    const layer_case *lc = &cases[1];
    wino_ctx k = {.cs = {.B = BATCH, .H = lc->H, .W = lc->W, .C = lc->C, .OC = lc->OC, .KH = 3,
                         .KW = 3, .stride = 1, .pad = lc->pad, .bias = 1, .winograd = 1}};
    nn_conv_shape_init(&k.cs);
    const int C = k.cs.C, OC = k.cs.OC, tiles = (k.cs.OH + 1) / 2 * ((k.cs.OW + 1) / 2);
    XD_ASSERT(nn_wino_takes(&k.cs) && 2 * tiles == WINO_ROUND);
    const size_t nx = (size_t)BATCH * k.cs.H * k.cs.W * C, ny = (size_t)BATCH * k.cs.OH * k.cs.OW * OC;
    k.panel = nn_sgemm_packed_size(OC, C);
    k.x = malloc(sizeof(float) * nx);
    k.w = malloc(sizeof(float) * (size_t)9 * C * OC);
    k.b = malloc(sizeof(float) * OC);
    k.y = malloc(sizeof(float) * ny);
    k.wpk = xd_xmalloc_aligned(sizeof(float) * nn_wino_packed_size(&k.cs));
    k.v = malloc(sizeof(float) * 16 * WINO_ROUND * C);
    k.u = malloc(sizeof(float) * 16 * (size_t)C * OC);
    k.up = malloc(sizeof(float) * 16 * k.panel);
    k.m = malloc(sizeof(float) * 16 * WINO_ROUND * OC);
    fill(k.x, nx, 11);
    fill(k.w, (size_t)9 * C * OC, 12);
    fill(k.b, OC, 13);
    fill(k.v, (size_t)16 * WINO_ROUND * C, 14);
    fill(k.u, (size_t)16 * C * OC, 15);
    nn_wino_pack(k.wpk, k.w, &k.cs);
    for (int e = 0; e < 16; e++)
        nn_sgemm_pack_b(0, OC, C, k.u + (size_t)e * C * OC, OC, k.up + e * k.panel);
    const double pflops = 16.0 * 2.0 * BATCH * tiles * OC * C,
                 direct = 2.0 * BATCH * k.cs.OH * k.cs.OW * OC * 9.0 * C;
    if (!o->json)
        fprintf(o->out, "\nconv2 by Winograd's F(2x2, 3x3), as float32 models run it (forward, "
                         "input gradient), batch %d; products: 16 per two images of %dx%dx%d\n",
                BATCH, WINO_ROUND, OC, C);
    for (int ti = 0; ti < o->n_threads; ti++) {
        const int th = o->threads[ti];
        set_threads(th);
        double gb = 0.0, gk = 0.0;
        bench_time tk = {0};
        if (th == 1) {
            bench_time tb = bench_run(run_wino_blas, &k, o->min_seconds, 5, 100000);
            tk = bench_run(run_wino_ours, &k, o->min_seconds, 5, 100000);
            gb = pflops / tb.median / 1e9;
            gk = pflops / tk.median / 1e9;
        }
        const bench_time tf = bench_run(run_wino_forward, &k, o->min_seconds, 5, 100000);
        const double gf = pflops / tf.median / 1e9, gd = direct / tf.median / 1e9;
        if (o->json) {
            fprintf(o->out, "{\"suite\":\"gemm\",\"case\":\"conv2_winograd\",\"threads\":%d,"
                            "\"M\":%d,\"N\":%d,\"K\":%d,\"products\":16,", th, WINO_ROUND, OC, C);
            if (th == 1)
                fprintf(o->out, "\"sgemm_gflops\":%.2f,\"ours_gflops\":%.2f,\"ours_min_s\":%.6f,"
                                "\"ours_max_s\":%.6f,\"ours_over_peak\":%.3f,", gb, gk, tk.min,
                        tk.max, gk / peak32[ti]);
            fprintf(o->out, "\"forward_ms\":%.4f,\"forward_min_ms\":%.4f,"
                            "\"forward_max_ms\":%.4f,\"forward_products_gflops\":%.2f,"
                            "\"forward_over_peak\":%.3f,\"forward_direct_gflops\":%.2f}\n",
                    tf.median * 1e3, tf.min * 1e3, tf.max * 1e3, gf, gf / peak32[ti], gd);
            continue;
        }
        if (th == 1)
            fprintf(o->out, "products, 1 thread: cblas_sgemm %.1f GFLOP/s, ours %.1f GFLOP/s "
                            "[%.1f-%.1f] (%.0f%% of the FMA peak)\n",
                    gb, gk, pflops / tk.max / 1e9, pflops / tk.min / 1e9, 100.0 * gk / peak32[ti]);
        fprintf(o->out, "forward (transforms, products, bias), %d thread%s: %.2f ms [%.2f-%.2f]; "
                        "its products at %.1f GFLOP/s over it (%.0f%% of the FMA peak), the direct "
                        "count's %.1f GFLOP/s\n",
                th, th > 1 ? "s" : "", tf.median * 1e3, tf.min * 1e3, tf.max * 1e3, gf,
                100.0 * gf / peak32[ti], gd);
    }
    float *bufs[] = {k.x, k.w, k.b, k.y, k.wpk, k.v, k.u, k.up, k.m};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* fn in bf16 */
static bench_time run_bf16(void (*fn)(void *), void *ctx, double min_seconds, int min_reps)
{
    nn_mm_precision_set(NN_PREC_BF16);
    bench_time t = bench_run(fn, ctx, min_seconds, min_reps, 100000);
    nn_mm_precision_set(NN_PREC_FLOAT32);
    return t;
}

int bench_gemm(const bench_opts *o)
{
    FILE *f = o->out;
    /* both kernels' peak on a large square product, for scale */
    peak_ctx pk = {.n = 1024};
    size_t nn = (size_t)pk.n * pk.n;
    pk.a = malloc(sizeof(float) * nn);
    pk.b = malloc(sizeof(float) * nn);
    pk.c = malloc(sizeof(float) * nn);
    fill(pk.a, nn, 7);
    fill(pk.b, nn, 8);
    double peak32[4] = {0}, peak16[4] = {0}, peakdot[4] = {0};
    for (int ti = 0; ti < o->n_threads; ti++) {
        set_threads(o->threads[ti]);
        peak32[ti] = fma_peak(0, o->threads[ti], o->min_seconds);
        peak16[ti] = fma_peak(1, o->threads[ti], o->min_seconds);
        peakdot[ti] = dot_peak(peak16[ti], o->threads[ti], o->min_seconds);
        bench_time tb = bench_run(run_peak, &pk, o->min_seconds, 3, 1000);
        bench_time to = bench_run(run_peak_ours, &pk, o->min_seconds, 3, 1000);
        bench_time th = run_bf16(run_peak_ours, &pk, o->min_seconds, 3);
        double gb = 2.0 * nn * pk.n / tb.median / 1e9, go = 2.0 * nn * pk.n / to.median / 1e9,
               gh = 2.0 * nn * pk.n / th.median / 1e9;
        if (o->json)
            fprintf(f, "{\"suite\":\"gemm\",\"case\":\"sgemm1024\",\"threads\":%d,"
                       "\"sgemm_gflops\":%.2f,\"ours_gflops\":%.2f,\"ours_min_s\":%.6f,"
                       "\"ours_max_s\":%.6f,\"reps\":%d,\"bf16_gflops\":%.2f,"
                       "\"bf16_kernel\":\"%s\",\"fma_peak_gflops\":%.2f,"
                       "\"bf16_peak_gflops\":%.2f,\"bf16_dot_peak_gflops\":%.2f}\n",
                    o->threads[ti], gb, go, to.min, to.max, to.reps, gh,
                    nn_bisa_name(nn_bgemm_isa()), peak32[ti], peak16[ti], peakdot[ti]);
        else {
            fprintf(f, "sgemm 1024^3, %d thread%s: cblas_sgemm %.1f GFLOP/s, ours %.1f GFLOP/s, "
                       "ours in bf16 (%s) %.1f GFLOP/s; FMA peak %.1f GFLOP/s (ours at %.0f%%)",
                    o->threads[ti], o->threads[ti] > 1 ? "s" : "", gb, go,
                    nn_bisa_name(nn_bgemm_isa()), gh, peak32[ti], 100.0 * go / peak32[ti]);
            if (peak16[ti] > 0)
                fprintf(f, ", %s peak %.1f GFLOP/s (bf16 at %.0f%%)", nn_bisa_name(nn_bgemm_isa()),
                        peak16[ti], 100.0 * gh / peak16[ti]);
            else /* the portable kernel: no instruction whose peak to measure */
                fprintf(f, ", no bf16 peak (the %s kernel)", nn_bisa_name(nn_bgemm_isa()));
            if (nn_bgemm_isa() == NN_BISA_AMX && peakdot[ti] > 0)
                fprintf(f, ", bf16 dot-product FMA peak %.1f GFLOP/s (bf16 at %.0f%%)", peakdot[ti],
                        100.0 * gh / peakdot[ti]);
            fprintf(f, "\n");
        }
    }
    free(pk.a);
    free(pk.b);
    free(pk.c);

    if (!o->json)
        fprintf(f, "\nteacher CNN layers, batch %d, forward+backward GEMMs; GFLOP/s, median "
                   "[min-max] of repeated runs; our products and layer against the FMA peak above\n"
                   "%-6s %-17s %3s %22s %22s %22s %7s %8s %8s\n",
                BATCH, "layer", "GEMM MxNxK", "thr", "cblas_sgemm", "our sgemm", "our layer",
                "layer/best", "gemm/pk", "layer/pk");
    /* the teacher's convolutions together: flops and median times summed per thread count */
    double conv_flops = 0.0, conv_best[4] = {0}, conv_ours[4] = {0};
    /* per thread count and layer: bf16 products, bf16 layer, float32 products, float32 layer
     * (GFLOP/s), the bf16 products' slowest and fastest run (GFLOP/s), and the speed-ups over
     * float32 of products and layer in CPU time (on a shared machine, at one thread, the costs
     * without the waits for a free core) */
    double bf16_rows[4][sizeof cases / sizeof cases[0]][10];
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        gemm_ctx g;
        ctx_init(&g, &cases[ci]);
        double flops = (g.first ? 2.0 : 3.0) * 2.0 * g.M * g.N * g.K, layer1 = 0.0;
        for (int ti = 0; ti < o->n_threads; ti++) {
            int th = o->threads[ti];
            set_threads(th);
            bench_time tb = bench_run(run_openblas, &g, o->min_seconds, 5, 100000);
            bench_time tk = bench_run(run_ours, &g, o->min_seconds, 5, 100000);
            bench_time tl = bench_run(run_layer, &g, o->min_seconds, 5, 100000);
            bench_time hk = run_bf16(run_ours, &g, o->min_seconds, 5);
            bench_time hl = run_bf16(run_layer, &g, o->min_seconds, 5);
            double gb = flops / tb.median / 1e9, gk = flops / tk.median / 1e9,
                   gl = flops / tl.median / 1e9, best = gb > gk ? gb : gk,
                   hgk = flops / hk.median / 1e9, hgl = flops / hl.median / 1e9;
            bf16_rows[ti][ci][0] = hgk;
            bf16_rows[ti][ci][1] = hgl;
            bf16_rows[ti][ci][2] = gk;
            bf16_rows[ti][ci][3] = gl;
            bf16_rows[ti][ci][4] = flops / hk.max / 1e9;
            bf16_rows[ti][ci][5] = flops / hk.min / 1e9;
            bf16_rows[ti][ci][6] = tk.cpu_median / hk.cpu_median;
            bf16_rows[ti][ci][7] = tl.cpu_median / hl.cpu_median;
            bf16_rows[ti][ci][8] = peak16[ti];
            bf16_rows[ti][ci][9] = peakdot[ti];
            if (ti == 0) layer1 = gl;
            if (cases[ci].conv) {
                if (ti == 0) conv_flops += flops;
                conv_best[ti] += flops / (best * 1e9);
                conv_ours[ti] += tl.median;
            }
            if (o->json) {
                fprintf(f, "{\"suite\":\"gemm\",\"case\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,"
                           "\"threads\":%d,\"sgemm_gflops\":%.2f,\"ours_gflops\":%.2f,"
                           "\"layer_gflops\":%.2f,\"layer_over_best\":%.3f,\"layer_min_s\":%.6f,"
                           "\"layer_max_s\":%.6f,\"speedup_vs_1\":%.3f,\"bf16_gflops\":%.2f,"
                           "\"bf16_layer_gflops\":%.2f,\"bf16_cpu_speedup\":%.3f,"
                           "\"bf16_layer_cpu_speedup\":%.3f,\"ours_over_peak\":%.3f,"
                           "\"layer_over_peak\":%.3f,\"bf16_over_peak\":%.3f,"
                           "\"bf16_over_dot_peak\":%.3f,\"bf16_layer_over_dot_peak\":%.3f}\n",
                        cases[ci].name, g.M, g.N, g.K, th, gb, gk, gl, gl / best, tl.min, tl.max,
                        gl / layer1, hgk, hgl, tk.cpu_median / hk.cpu_median,
                        tl.cpu_median / hl.cpu_median, gk / peak32[ti], gl / peak32[ti],
                        peak16[ti] > 0 ? hgk / peak16[ti] : 0.0,
                        peakdot[ti] > 0 ? hgk / peakdot[ti] : 0.0,
                        peakdot[ti] > 0 ? hgl / peakdot[ti] : 0.0);
            } else {
                char mnk[32], sb[32], sk[32], sl[32];
                snprintf(mnk, sizeof mnk, "%dx%dx%d", g.M, g.N, g.K);
                snprintf(sb, sizeof sb, "%.1f [%.1f-%.1f]", gb, flops / tb.max / 1e9, flops / tb.min / 1e9);
                snprintf(sk, sizeof sk, "%.1f [%.1f-%.1f]", gk, flops / tk.max / 1e9, flops / tk.min / 1e9);
                snprintf(sl, sizeof sl, "%.1f [%.1f-%.1f]", gl, flops / tl.max / 1e9, flops / tl.min / 1e9);
                fprintf(f, "%-6s %-17s %3d %22s %22s %22s %6.0f%% %7.0f%% %7.0f%%", cases[ci].name,
                        mnk, th, sb, sk, sl, 100.0 * gl / best, 100.0 * gk / peak32[ti],
                        100.0 * gl / peak32[ti]);
                if (ti > 0) fprintf(f, "  (layer %.2fx vs 1 thread)", gl / layer1);
                fprintf(f, "\n");
            }
        }
        ctx_free(&g);
    }
    for (int ti = 0; ti < o->n_threads; ti++) {
        double gb = conv_flops / conv_best[ti] / 1e9, gl = conv_flops / conv_ours[ti] / 1e9;
        double speedup = conv_ours[0] / conv_ours[ti];
        if (o->json)
            fprintf(f, "{\"suite\":\"gemm\",\"case\":\"conv_total\",\"threads\":%d,"
                       "\"best_gflops\":%.2f,\"layer_gflops\":%.2f,\"layer_over_best\":%.3f,"
                       "\"speedup_vs_1\":%.3f}\n",
                    o->threads[ti], gb, gl, gl / gb, speedup);
        else
            fprintf(f, "%-6s %-17s %3d %22.1f %22s %22.1f %6.0f%%%s", "convs", "conv1+conv2",
                    o->threads[ti], gb, "(best of both)", gl, 100.0 * gl / gb, ti ? "" : "\n");
        if (!o->json && ti > 0) fprintf(f, "  (convolutions %.2fx vs 1 thread)\n", speedup);
    }
    bench_wino(o, peak32);
    if (!o->json) {
        fprintf(f, "\nthe same in bf16 products with float32 sums (%s kernel); GFLOP/s of the "
                   "float32 flops count, median; speed against float32 in time and in CPU time; "
                   "products against the kernel's peak, products and layer against the bf16 "
                   "dot-product FMA peak\n"
                   "%-6s %3s %22s %10s %10s %10s %10s %10s %8s %8s %9s\n",
                nn_bisa_name(nn_bgemm_isa()), "layer", "thr", "bf16 products [min-max]",
                "vs float32", "(cpu)", "bf16 layer", "vs float32", "(cpu)", "gemm/pk", "gemm/dot",
                "layer/dot");
        for (int ti = 0; ti < o->n_threads; ti++)
            for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
                const double *r = bf16_rows[ti][ci];
                char sk[40];
                snprintf(sk, sizeof sk, "%.1f [%.1f-%.1f]", r[0], r[4], r[5]);
                /* the portable kernel has no peak to measure */
                char of[16] = "-", od[16] = "-", ol[16] = "-";
                if (r[8] > 0) snprintf(of, sizeof of, "%.0f%%", 100.0 * r[0] / r[8]);
                if (r[9] > 0) snprintf(od, sizeof od, "%.0f%%", 100.0 * r[0] / r[9]);
                if (r[9] > 0) snprintf(ol, sizeof ol, "%.0f%%", 100.0 * r[1] / r[9]);
                fprintf(f, "%-6s %3d %22s %9.2fx %9.2fx %10.1f %9.2fx %9.2fx %8s %8s %9s\n",
                        cases[ci].name, o->threads[ti], sk, r[0] / r[2], r[6], r[1], r[1] / r[3],
                        r[7], of, od, ol);
            }
    }
    return 0;
}
