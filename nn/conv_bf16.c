/* Convolutions in bf16 on AMX tiles, their windows read in place (see conv_bf16.h).
 *
 * One product serves the forward and the input gradient: over an image copied into rows of
 * channel pairs (a row for each position of a zero-padded grid Wp wide, cp words of pairs each,
 * cp a multiple of 16), output row q (position q of the grid, kept when q % Wp < OW) is the sum
 * over taps t and pairs of row q + toff[t] times the taps' packed weights. A block of 32 rows by
 * 32 output channels is four C tiles, fed per tap and tile step by two A tiles loaded straight
 * from the copy (16 rows, one position apart) and two B tiles of the packed weights (the B panel
 * layout of nn/gemm_bf16.c: per pair, 32 words of columns). Rows of the grid past the image (its
 * right margin, and the last block's tail) are computed and dropped. */
#include "nn/conv_bf16.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/mem.h"
#include "core/runtime.h"
#include "core/status.h"
#include "nn/bf16.h"
#include "nn/gemm.h"
#include "nn/gemm_bf16.h"

#ifdef NN_AMX
#include <immintrin.h>
#endif

enum { ROWS = 32, COLS = 32, STEP = 16 }; /* a block of C; pairs per tile step */

typedef struct {
    int M;           /* grid rows computed per image */
    int Wp, OW;      /* row q is output position (q / Wp, q % Wp), kept when q % Wp < OW */
    int taps;        /* tap t reads grid row q + toff[t] */
    const int *toff;
    int cp;          /* pairs per grid row, a multiple of STEP */
    int N;           /* output channels */
    size_t rows;     /* grid rows of the copy, the last ones zero: M rounded up + the last toff */
} bconv_geom;

static int round_up(int n, int r) { return (n + r - 1) / r * r; }

static int amx_bf16_now(void)
{
    return nn_mm_precision() == NN_PREC_BF16 && nn_bgemm_isa() == NN_BISA_AMX;
}

int nn_bconv_forward_takes(const nn_conv_shape *s)
{
    return amx_bf16_now() && s->stride == 1 && s->KH * s->KW > 1 && s->C >= 16;
}

int nn_bconv_dinp_takes(const nn_conv_shape *s)
{
    return amx_bf16_now() && s->stride == 1 && s->KH * s->KW > 1 && s->OC >= 16 &&
           s->pad < s->KH && s->pad < s->KW;
}

/* The grid of one image: src (H, W, C) at rows top.. and columns left.. of a grid Wp wide, zero
 * around and past it up to g->rows rows; each position C values rounded to bf16 in pairs (c,
 * c + 1), zero pairs up to cp. */
static void grid_image(uint32_t *dst, const float *src, int H, int W, int C, int top, int left,
                       const bconv_geom *g)
{
    memset(dst, 0, sizeof(uint32_t) * g->rows * g->cp);
    for (int y = 0; y < H; y++) {
        uint32_t *d = dst + ((size_t)(y + top) * g->Wp + left) * g->cp;
        const float *s = src + (size_t)y * W * C;
        if (2 * g->cp == C) { /* the row's pairs lie as its values do: one narrowing loop */
            uint16_t *h = (uint16_t *)d;
            for (int k = 0; k < W * C; k++) h[k] = (uint16_t)(nn_bf16_bits(s[k]) >> 16);
            continue;
        }
        for (int x = 0; x < W; x++) {
            uint16_t *h = (uint16_t *)(d + (size_t)x * g->cp);
            for (int c = 0; c < C; c++) h[c] = (uint16_t)(nn_bf16_bits(s[(size_t)x * C + c]) >> 16);
        }
    }
}

/* The weights as B panels: panel p (columns 32p..) at wpk + 32p * taps * cp, for pair k2 = t * cp
 * + q its 32 words; word (t, q, n) = the pair (at(t, 2q, n), at(t, 2q + 1, n)), zero past the
 * channels (nc) or the columns (N). at reads w for the forward or for the input gradient. */
typedef float (*tap_fn)(const float *w, const nn_conv_shape *s, int t, int c, int n);

static float tap_forward(const float *w, const nn_conv_shape *s, int t, int c, int n)
{
    return w[((size_t)n * s->KH * s->KW + t) * s->C + c]; /* w[n][t][c] */
}

static float tap_dinp(const float *w, const nn_conv_shape *s, int t, int c, int n)
{
    const int taps = s->KH * s->KW; /* tap t of the half-turned kernel; c an output channel */
    return w[((size_t)c * taps + (taps - 1 - t)) * s->C + n];
}

static uint32_t *pack_taps(const float *w, const nn_conv_shape *s, tap_fn at, int nc,
                           const bconv_geom *g)
{
    const size_t kq = (size_t)g->taps * g->cp;
    uint32_t *wpk = xd_xmalloc_aligned(sizeof(uint32_t) * (size_t)round_up(g->N, COLS) * kq);
    for (int j0 = 0; j0 < g->N; j0 += COLS)
        for (int t = 0; t < g->taps; t++)
            for (int q = 0; q < g->cp; q++) {
                uint32_t *d = wpk + (size_t)j0 * kq + ((size_t)t * g->cp + q) * COLS;
                for (int j = 0; j < COLS; j++) {
                    const int n = j0 + j, c = 2 * q;
                    const float x0 = n < g->N && c < nc ? at(w, s, t, c, n) : 0.0f;
                    const float x1 = n < g->N && c + 1 < nc ? at(w, s, t, c + 1, n) : 0.0f;
                    d[j] = nn_bf16_pair(x0, x1);
                }
            }
    return wpk;
}

/* The kept rows of a block's sums (acc: ROWS x COLS) into out (rows of N: position (y, x) at row
 * y * OW + x): + bias, or added to out (add) */
static void put_block(float *out, const float *acc, const bconv_geom *g, int q0, int j0,
                      const float *bias, int add)
{
    const int nr = g->N - j0 < COLS ? g->N - j0 : COLS;
    for (int r = 0; r < ROWS && q0 + r < g->M; r++) {
        const int q = q0 + r, x = q % g->Wp;
        if (x >= g->OW) continue;
        float *o = out + ((size_t)(q / g->Wp) * g->OW + x) * g->N + j0;
        const float *a = acc + (size_t)r * COLS;
        if (add)
            for (int j = 0; j < nr; j++) o[j] += a[j];
        else if (bias)
            for (int j = 0; j < nr; j++) o[j] = a[j] + bias[j0 + j];
        else
            memcpy(o, a, sizeof(float) * nr);
    }
}

#ifdef NN_AMX
/* One image: out's rows from its grid. The calling thread's tiles are configured. */
NN_AMX_TARGET static void grid_product(const bconv_geom *g, const uint32_t *grid,
                                       const uint32_t *wpk, const float *bias, int add, float *out)
{
    float acc[ROWS * COLS] __attribute__((aligned(64)));
    const size_t ra = sizeof(uint32_t) * (size_t)g->cp, rb = sizeof(uint32_t) * COLS;
    const size_t kq = (size_t)g->taps * g->cp;
    for (int q0 = 0; q0 < g->M; q0 += ROWS) {
        const int r2 = g->M - q0 > 16;
        for (int j0 = 0; j0 < g->N; j0 += COLS) {
            const int c2 = g->N - j0 > 16;
            const uint32_t *panel = wpk + (size_t)j0 * kq;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int t = 0; t < g->taps; t++) {
                const uint32_t *a = grid + (size_t)(q0 + g->toff[t]) * g->cp;
                const uint32_t *b = panel + (size_t)t * g->cp * COLS;
                for (int c = 0; c < g->cp; c += STEP, a += STEP, b += (size_t)STEP * COLS) {
                    _tile_loadd(6, b, rb);
                    if (c2) _tile_loadd(7, b + 16, rb);
                    _tile_loadd(4, a, ra);
                    _tile_dpbf16ps(0, 4, 6);
                    if (c2) _tile_dpbf16ps(1, 4, 7);
                    if (r2) {
                        _tile_loadd(5, a + (size_t)16 * g->cp, ra);
                        _tile_dpbf16ps(2, 5, 6);
                        if (c2) _tile_dpbf16ps(3, 5, 7);
                    }
                }
            }
            _tile_stored(0, acc, rb);
            _tile_stored(1, acc + 16, rb);
            _tile_stored(2, acc + 16 * COLS, rb);
            _tile_stored(3, acc + 16 * COLS + 16, rb);
            put_block(out, acc, g, q0, j0, bias, add);
        }
    }
}
#endif

/* Images in runs, one run per thread, each with its own grid: src image b (H, W, C) placed at
 * (top, left), out image b (rows of g->N) from it; image(ctx, b) after each. */
static void grid_images(const bconv_geom *g, const float *src, int B, int H, int W, int C, int top,
                        int left, const uint32_t *wpk, const float *bias, int add, float *out,
                        size_t out_image, void (*image)(void *, int), void *image_ctx)
{
#ifdef NN_AMX
    int T = xd_threads_split(B > 1) ? xd_threads_get() : 1;
    if (T > B) T = B;
#pragma omp parallel for num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++) {
        int b0, b1;
        nn_sgemm_block_range(B, T, t, &b0, &b1);
        uint32_t *grid = xd_xmalloc_aligned(sizeof(uint32_t) * g->rows * g->cp);
        nn_amx_configure();
        for (int b = b0; b < b1; b++) {
            grid_image(grid, src + (size_t)b * H * W * C, H, W, C, top, left, g);
            grid_product(g, grid, wpk, bias, add, out + (size_t)b * out_image);
            if (image) image(image_ctx, b);
        }
        nn_amx_release();
        free(grid);
    }
#else
    (void)g, (void)src, (void)B, (void)H, (void)W, (void)C, (void)top, (void)left, (void)wpk;
    (void)bias, (void)add, (void)out, (void)out_image, (void)image, (void)image_ctx;
    XD_ASSERT(0); /* the takes functions say no where AMX is not built */
#endif
}

/* The geometry over a grid Wp wide for a KH x KW kernel and M rows; toff filled (taps of them) */
static bconv_geom geometry(int M, int Wp, int OW, int KH, int KW, int channels, int N, int *toff)
{
    for (int ky = 0; ky < KH; ky++)
        for (int kx = 0; kx < KW; kx++) toff[ky * KW + kx] = ky * Wp + kx;
    bconv_geom g = {M, Wp, OW, KH * KW, toff, round_up((channels + 1) / 2, STEP), N, 0};
    g.rows = (size_t)round_up(M, ROWS) + (size_t)toff[KH * KW - 1];
    return g;
}

void nn_bconv_forward(float *out, const float *inp, const float *w, const float *b,
                      const nn_conv_shape *s, void (*image)(void *, int), void *image_ctx)
{
    XD_ASSERT(nn_bconv_forward_takes(s) && (b != NULL) == (s->bias != 0));
    const int Wp = s->W + 2 * s->pad;
    int *toff = xd_xmalloc(sizeof(int) * (size_t)s->KH * s->KW);
    const bconv_geom g = geometry(s->OH * Wp, Wp, s->OW, s->KH, s->KW, s->C, s->OC, toff);
    uint32_t *wpk = pack_taps(w, s, tap_forward, s->C, &g);
    grid_images(&g, inp, s->B, s->H, s->W, s->C, s->pad, s->pad, wpk, b, 0, out,
                (size_t)s->OH * s->OW * s->OC, image, image_ctx);
    free(wpk);
    free(toff);
}

void nn_bconv_dinp(float *dinp, const float *dout, const float *w, const nn_conv_shape *s,
                   int first)
{
    XD_ASSERT(nn_bconv_dinp_takes(s));
    /* dout padded by KH - 1 - pad rows and KW - 1 - pad columns: input position (y, x) is the
     * sum over the half-turned taps (ty, tx) of grid position (y + ty, x + tx) */
    const int ey = s->KH - 1 - s->pad, ex = s->KW - 1 - s->pad, Wp = s->OW + 2 * ex;
    int *toff = xd_xmalloc(sizeof(int) * (size_t)s->KH * s->KW);
    const bconv_geom g = geometry(s->H * Wp, Wp, s->W, s->KH, s->KW, s->OC, s->C, toff);
    uint32_t *wpk = pack_taps(w, s, tap_dinp, s->OC, &g);
    grid_images(&g, dout, s->B, s->OH, s->OW, s->OC, ey, ex, wpk, NULL, !first, dinp,
                (size_t)s->H * s->W * s->C, NULL, NULL);
    free(wpk);
    free(toff);
}
