/* Convolutions in bf16 on AMX tiles, AVX512_BF16 or AVX2, their windows read in place (see
 * conv_bf16.h).
 *
 * One product serves the forward and the input gradient: over an image copied into rows of
 * channel pairs (a row for each position of a zero-padded grid Wp wide, cp words of pairs each,
 * cp a multiple of 16), output row q (position q of the grid, kept when q % Wp < OW) is the sum
 * over taps t and pairs of row q + toff[t] times the taps' packed weights. A block of 32 rows by
 * 32 output channels is four C tiles, fed per tap and tile step by two A tiles loaded straight
 * from the copy (16 rows, one position apart) and two B tiles of the packed weights (the B panel
 * layout of nn/gemm_bf16.c: per pair, 32 words of columns). On AMX, rows of the grid past the
 * image (its right margin, and the last block's tail) are computed and dropped. With AVX512_BF16
 * (or AVX2, the same tile's chains in float32 FMAs) a tile of up to 14 positions of one output
 * row by 32 columns takes the same operands from the same places (nn_btile_segments, a segment
 * per tap, over the pairs that hold channels), and no margin is computed. Its weight gradient
 * sums over pairs of output positions: with AVX512_BF16 or AVX2 a segment per output row, the
 * margins skipped, where OW and Wp are even; else (and on AMX) a segment per image, over the
 * grid's positions, the margins' zeros included. */
#include "nn/conv_bf16.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "core/status.h"
#include "nn/bf16.h"
#include "nn/gemm.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
#include "nn/transpose.h"

enum { ROWS = 32, COLS = 32, STEP = 16 }; /* a block of C; pairs per tile step */

typedef struct {
    int M;           /* grid rows computed per image */
    int Wp, OW;      /* row q is output position (q / Wp, q % Wp), kept when q % Wp < OW */
    int taps;        /* tap t reads grid row q + toff[t] */
    const int *toff;
    int cp;          /* pairs per grid row, a multiple of STEP */
    int pairs;       /* of them, those with a channel: (channels + 1) / 2 */
    int N;           /* output channels */
    size_t rows;     /* grid rows of the copy, the last ones zero: M rounded up + the last toff */
} bconv_geom;

static int round_up(int n, int r) { return (n + r - 1) / r * r; }

/* bf16 products now, on AMX tiles, AVX512_BF16's dot products or AVX2's FMAs (not the portable
 * kernel: its tiles are slower than unfolding the windows for the packed product) */
static int bf16_now(void)
{
    const nn_bisa isa = nn_bgemm_isa();
    return nn_mm_precision() == NN_PREC_BF16 && isa != NN_BISA_PORTABLE;
}

int nn_bconv_forward_takes(const nn_conv_shape *s)
{
    return bf16_now() && s->stride == 1 && s->KH * s->KW > 1 && s->C >= 16;
}

int nn_bconv_dw_takes(const nn_conv_shape *s) { return nn_bconv_forward_takes(s); }

int nn_bconv_dinp_takes(const nn_conv_shape *s)
{
    /* AVX512_BF16's (and AVX2's) tiles are 16 of the input's channels wide at least: on fewer
     * the unfolded product (9 C columns for a 3 x 3 kernel) wastes less */
    return bf16_now() && s->stride == 1 && s->KH * s->KW > 1 && s->OC >= 16 &&
           s->pad < s->KH && s->pad < s->KW && (nn_bgemm_amx() || s->C >= 16);
}

/* The grid of one image: src (H, W, C) at rows top.. and columns left.. of a grid Wp wide, zero
 * around and past it up to g->rows rows; each position C values rounded to bf16 in pairs (c,
 * c + 1), zero pairs up to cp. Only the image's positions are written, and of them only the halves
 * with a channel: the caller zeroes dst once (g->rows rows of cp words) for the images of a call,
 * which all place theirs alike. */
static void grid_image(uint32_t *dst, const float *src, int H, int W, int C, int top, int left,
                       const bconv_geom *g)
{
    for (int y = 0; y < H; y++) {
        uint32_t *d = dst + ((size_t)(y + top) * g->Wp + left) * g->cp;
        const float *s = src + (size_t)y * W * C;
        if (2 * g->cp == C) { /* the row's pairs lie as its values do: one narrowing pass */
            nn_bf16_halves((uint16_t *)d, s, (size_t)W * C);
            continue;
        }
        for (int x = 0; x < W; x++)
            nn_bf16_halves((uint16_t *)(d + (size_t)x * g->cp), s + (size_t)x * C, (size_t)C);
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

/* words of the packed taps: panels of COLS outputs, each taps x cp pairs */
static size_t taps_size(int taps, int cp, int N) { return (size_t)round_up(N, COLS) * taps * cp; }

static void pack_taps_into(uint32_t *wpk, const float *w, const nn_conv_shape *s, tap_fn at,
                           int nc, const bconv_geom *g)
{
    const size_t kq = (size_t)g->taps * g->cp;
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
}

static uint32_t *pack_taps(const float *w, const nn_conv_shape *s, tap_fn at, int nc,
                           const bconv_geom *g)
{
    uint32_t *wpk = xd_xmalloc_aligned(sizeof(uint32_t) * taps_size(g->taps, g->cp, g->N));
    pack_taps_into(wpk, w, s, at, nc, g);
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
            nn_amx_zero_block();
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
            nn_amx_store_block(acc, COLS, r2, c2);
            put_block(out, acc, g, q0, j0, bias, add);
        }
    }
}
#endif

/* A tile's sums (acc: mr rows of COLS, nr of them kept) into out's rows, ldo apart: + bias, or
 * added to out (add) */
static void put_rows(float *restrict out, size_t ldo, const float *restrict acc, int mr, int nr,
                     const float *restrict bias, int add)
{
    for (int r = 0; r < mr; r++) {
        float *restrict o = out + (size_t)r * ldo;
        const float *restrict a = acc + (size_t)r * COLS;
        if (add)
            for (int j = 0; j < nr; j++) o[j] += a[j];
        else if (bias)
            for (int j = 0; j < nr; j++) o[j] = a[j] + bias[j];
        else
            memcpy(o, a, sizeof(float) * (size_t)nr);
    }
}

/* The segments of grid_product_dot's tiles, one per tap (its rows in the grid, its pairs in the
 * packed weights), over the pairs that hold channels (the rest of a grid row is zero); aoff,
 * boff: g->taps each, filled. */
static nn_btile_seg grid_segments(const bconv_geom *g, size_t *aoff, size_t *boff)
{
    for (int t = 0; t < g->taps; t++) {
        aoff[t] = (size_t)g->toff[t] * g->cp;
        boff[t] = (size_t)t * g->cp * COLS;
    }
    return (nn_btile_seg){g->taps, g->pairs, aoff, boff, (size_t)g->cp, COLS, 16, COLS, 0, NULL, 0};
}

/* As grid_product, with AVX512_BF16 (or AVX2): tiles of up to NN_BTILE_ROWS positions of
 * one output row by COLS outputs, each the sum over seg's segments (grid_segments). The grid's
 * margins are not computed. A tile whose columns are whole vectors (16 or 32 of them), not added
 * to out, is stored straight into out's rows with its bias; the others go through acc. */
static void grid_product_dot(const bconv_geom *g, const nn_btile_seg *seg, const uint32_t *grid,
                             const uint32_t *wpk, const float *bias, int add, float *out)
{
    float acc[NN_BTILE_ROWS * COLS] __attribute__((aligned(64)));
    const size_t kq = (size_t)g->taps * g->cp;
    nn_btile_seg direct = *seg;
    direct.ldc = (size_t)g->N;
    /* each output row in tiles of about equal size, none over its margin */
    const int tiles = (g->OW + NN_BTILE_ROWS - 1) / NN_BTILE_ROWS;
    for (int y = 0; y < g->M / g->Wp; y++)
        for (int i = 0; i < tiles; i++) {
            const int x0 = g->OW * i / tiles, mr = g->OW * (i + 1) / tiles - x0;
            const int q0 = y * g->Wp + x0;
            for (int j0 = 0; j0 < g->N; j0 += COLS) {
                const int nr = g->N - j0 < COLS ? g->N - j0 : COLS;
                float *o = out + ((size_t)y * g->OW + x0) * g->N + j0;
                if (!add && (nr == 16 || nr == COLS)) {
                    direct.bias = bias ? bias + j0 : NULL;
                    nn_btile_segments(mr, nr, grid + (size_t)q0 * g->cp, wpk + (size_t)j0 * kq,
                                      &direct, o);
                    continue;
                }
                nn_btile_segments(mr, nr, grid + (size_t)q0 * g->cp, wpk + (size_t)j0 * kq, seg,
                                  acc);
                put_rows(o, (size_t)g->N, acc, mr, nr, bias ? bias + j0 : NULL, add);
            }
        }
}

/* grid_images' arguments, for its runs of images */
typedef struct {
    const bconv_geom *g;
    const nn_btile_seg *seg;
    const float *src;
    int B, H, W, C, top, left, add, T;
    const uint32_t *wpk;
    const float *bias;
    float *out;
    size_t out_image;
    void (*image)(void *, int);
    void *image_ctx;
} grid_job;

/* run t of T: its images through the thread's grid (kept between calls, nn_thread_buf), zeroed
 * once for the call (grid_image) */
static void grid_run(void *ctx, int t)
{
    const grid_job *j = ctx;
    const bconv_geom *g = j->g;
    int b0, b1;
    nn_sgemm_block_range(j->B, j->T, t, &b0, &b1);
    uint32_t *grid = nn_thread_buf(NN_BUF_BCONV_GRID, sizeof(uint32_t) * g->rows * g->cp);
    memset(grid, 0, sizeof(uint32_t) * g->rows * g->cp);
#ifdef NN_AMX
    const int amx = nn_bgemm_amx();
    if (amx) nn_amx_configure();
#endif
    for (int b = b0; b < b1; b++) {
        float *o = j->out + (size_t)b * j->out_image;
        grid_image(grid, j->src + (size_t)b * j->H * j->W * j->C, j->H, j->W, j->C, j->top,
                   j->left, g);
#ifdef NN_AMX
        if (amx) grid_product(g, grid, j->wpk, j->bias, j->add, o);
        else
#endif
            grid_product_dot(g, j->seg, grid, j->wpk, j->bias, j->add, o);
        if (j->image) j->image(j->image_ctx, b);
    }
#ifdef NN_AMX
    if (amx) nn_amx_release();
#endif
}

/* Images in runs, one run per thread, each with its own grid: src image b (H, W, C) placed at
 * (top, left), out image b (rows of g->N) from it; image(ctx, b) after each. */
static void grid_images(const bconv_geom *g, const float *src, int B, int H, int W, int C, int top,
                        int left, const uint32_t *wpk, const float *bias, int add, float *out,
                        size_t out_image, void (*image)(void *, int), void *image_ctx)
{
    size_t *off = xd_xmalloc(sizeof(size_t) * 2 * (size_t)g->taps); /* the threads share seg */
    const nn_btile_seg seg = grid_segments(g, off, off + g->taps);
    int T = xd_threads_split(B > 1) ? xd_threads_get() : 1;
    if (T > B) T = B;
    grid_job job = {.g = g, .seg = &seg, .src = src, .B = B, .H = H, .W = W, .C = C, .top = top,
                    .left = left, .add = add, .T = T, .wpk = wpk, .bias = bias, .out = out,
                    .out_image = out_image, .image = image, .image_ctx = image_ctx};
    xd_threads_each(T, grid_run, &job);
    free(off);
}

/* toff[t]: how far tap t = ky * KW + kx reads from its output's position on a grid Wp wide */
static void tap_offsets(int *toff, int KH, int KW, int Wp)
{
    for (int ky = 0; ky < KH; ky++)
        for (int kx = 0; kx < KW; kx++) toff[ky * KW + kx] = ky * Wp + kx;
}

/* The geometry over a grid Wp wide for a KH x KW kernel and M rows; toff filled (taps of them) */
static bconv_geom geometry(int M, int Wp, int OW, int KH, int KW, int channels, int N, int *toff)
{
    tap_offsets(toff, KH, KW, Wp);
    bconv_geom g = {M,    Wp, OW, KH * KW, toff, round_up((channels + 1) / 2, STEP),
                    (channels + 1) / 2, N, 0};
    g.rows = (size_t)round_up(M, ROWS) + (size_t)toff[KH * KW - 1];
    return g;
}

/* the forward's geometry of s; toff: KH * KW ints */
static bconv_geom forward_geometry(const nn_conv_shape *s, int *toff)
{
    const int Wp = s->W + 2 * s->pad;
    return geometry(s->OH * Wp, Wp, s->OW, s->KH, s->KW, s->C, s->OC, toff);
}

size_t nn_bconv_packed_size(const nn_conv_shape *s)
{
    return taps_size(s->KH * s->KW, round_up((s->C + 1) / 2, STEP), s->OC);
}

void nn_bconv_pack(uint32_t *wpk, const float *w, const nn_conv_shape *s)
{
    int *toff = xd_xmalloc(sizeof(int) * (size_t)s->KH * s->KW);
    const bconv_geom g = forward_geometry(s, toff);
    pack_taps_into(wpk, w, s, tap_forward, s->C, &g);
    free(toff);
}

void nn_bconv_forward(float *out, const float *inp, const float *w, const uint32_t *wpk,
                      const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                      void *image_ctx)
{
    XD_ASSERT(nn_bconv_forward_takes(s) && (b != NULL) == (s->bias != 0));
    int *toff = xd_xmalloc(sizeof(int) * (size_t)s->KH * s->KW);
    const bconv_geom g = forward_geometry(s, toff);
    uint32_t *own = wpk ? NULL : pack_taps(w, s, tap_forward, s->C, &g);
    grid_images(&g, inp, s->B, s->H, s->W, s->C, s->pad, s->pad, wpk ? wpk : own, b, 0, out,
                (size_t)s->OH * s->OW * s->OC, image, image_ctx);
    free(own);
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

// ----------------------------------------------------------------------------------------------
// the weight gradient

typedef struct {
    int Wp, M, OW;      /* output positions on the grid: q < M, kept when q % Wp < OW */
    int taps;
    const int *toff;
    int Cp, OCp;        /* channels, output channels, rounded up to 16 */
    int NP;             /* position pairs per image, a multiple of 16 */
    int rp;             /* pairs per output row where the pairs skip the margins, else 0 */
    size_t g2rows;      /* rows of an image's position-pair grid */
    size_t img_words;   /* an image's grid and output gradient pairs */
} dw_geom;

/* The output gradient's row of slot q of an image (img): NULL past the image or its row. The
 * slots are the positions in order where the pairs skip the grid's margins (d->rp), else the grid
 * positions. */
static const float *dw_row(const float *img, int q, const nn_conv_shape *s, const dw_geom *d)
{
    if (d->rp) return q < s->OH * s->OW ? img + (size_t)q * s->OC : NULL;
    const int x = q % d->Wp;
    return q < d->M && x < d->OW ? img + ((size_t)(q / d->Wp) * d->OW + x) * s->OC : NULL;
}

/* An image's output gradient img as dt: OCp rows of NP words, word (oc, j) = channel oc at slots
 * 2j and 2j + 1 (dw_row; zero where it has none, and in rows past OC). With AVX-512, 16
 * pairs of 16 channels at a time, turned in registers. The positions' rows are read in order, a
 * group of up to DW_GROUP blocks of 16 channels at a time, their pairs kept in L1 until turned:
 * read a block of 16 channels down 32 rows at a time, a batch's output gradient (which does not
 * fit the L2) comes at a fraction of the rate (the teacher's conv2 at batch 128 on an AMD EPYC of
 * family 25: 1.0-1.2 ms of its weight gradient so, 0.7 in order; BENCHMARKS.md). */
enum { DW_GROUP = 8 };
static void dw_pairs(uint32_t *dt, const float *img, const nn_conv_shape *s, const dw_geom *d)
{
    memset(dt + (size_t)s->OC * d->NP, 0, sizeof(uint32_t) * (size_t)(d->OCp - s->OC) * d->NP);
#if defined(__AVX512F__)
    __m512i w[DW_GROUP][16];
    for (int j0 = 0; j0 < d->NP; j0 += 16) { /* NP is a multiple of 16 */
        for (int g0 = 0; g0 < s->OC; g0 += 16 * DW_GROUP) {
            const int ng = (s->OC - g0 + 15) / 16 < DW_GROUP ? (s->OC - g0 + 15) / 16 : DW_GROUP;
            for (int i = 0; i < 16; i++) {
                const float *r0 = dw_row(img, 2 * (j0 + i), s, d);
                const float *r1 = dw_row(img, 2 * (j0 + i) + 1, s, d);
                for (int b = 0; b < ng; b++) {
                    const int o0 = g0 + 16 * b, no = s->OC - o0 < 16 ? s->OC - o0 : 16;
                    const __mmask16 m = (__mmask16)((1u << no) - 1);
                    const __m512i zero = _mm512_setzero_si512();
                    const __m512i x0 = r0 ? _mm512_maskz_loadu_epi32(m, r0 + o0) : zero;
                    const __m512i x1 = r1 ? _mm512_maskz_loadu_epi32(m, r1 + o0) : zero;
                    w[b][i] = nn_bf16_pair16(x0, x1);
                }
            }
            for (int b = 0; b < ng; b++) {
                const int o0 = g0 + 16 * b, no = s->OC - o0 < 16 ? s->OC - o0 : 16;
                nn_transpose_16x16(w[b]);
                for (int o = 0; o < no; o++)
                    _mm512_storeu_si512((void *)(dt + (size_t)(o0 + o) * d->NP + j0), w[b][o]);
            }
        }
    }
#else
    for (int j = 0; j < d->NP; j++) {
        const float *r0 = dw_row(img, 2 * j, s, d), *r1 = dw_row(img, 2 * j + 1, s, d);
        for (int o = 0; o < s->OC; o++)
            dt[(size_t)o * d->NP + j] = nn_bf16_pair(r0 ? r0[o] : 0.0f, r1 ? r1[o] : 0.0f);
    }
#endif
}

/* Image b's operands into dst: its position-pair grid (g2rows rows of Cp words: word (q, c) =
 * channel c at grid positions q and q + 1) and then its output gradient as OCp rows of NP words
 * (word (oc, j) = channel oc at slots 2j and 2j + 1 of dw_row, zero where it has none). tmp:
 * (g2rows + 1) Cp halves of scratch for the image on its grid. */
static void dw_image(uint32_t *dst, uint16_t *tmp, const float *inp, const float *dout,
                     const nn_conv_shape *s, const dw_geom *d, int b)
{
    bconv_geom grid = {0};
    grid.Wp = d->Wp;
    grid.cp = d->Cp / 2;
    grid_image((uint32_t *)tmp, inp + (size_t)b * s->H * s->W * s->C, s->H, s->W, s->C, s->pad,
               s->pad, &grid);
    const size_t n = d->g2rows * d->Cp, cp = (size_t)d->Cp;
    uint32_t *restrict g2 = dst;
    const uint16_t *restrict h = tmp;
    for (size_t i = 0; i < n; i++) g2[i] = h[i] | (uint32_t)h[i + cp] << 16;
    dw_pairs(dst + n, dout + (size_t)b * s->OH * s->OW * s->OC, s, d);
}

#ifdef NN_AMX
/* Block blk of the sums (two row tiles of output channels by two column tiles of (tap, 16
 * channels), fewer at the edges) over the n images of a chunk at imgs; acc (OCp rows of ld) holds
 * the sums so far (first: none). The calling thread's tiles are configured. */
NN_AMX_TARGET static void dw_block(float *acc, size_t ld, const uint32_t *imgs, int n,
                                   const dw_geom *d, int blk, int first)
{
    const int rts = d->OCp / 16, per_tap = d->Cp / 16, cts = d->taps * per_tap;
    const int rb = blk / ((cts + 1) / 2), cb = blk % ((cts + 1) / 2);
    const int r2 = 2 * rb + 1 < rts, c2 = 2 * cb + 1 < cts;
    float *c00 = acc + (size_t)(2 * rb) * 16 * ld + (size_t)(2 * cb) * 16;
    const size_t rc = sizeof(float) * ld, ra = sizeof(uint32_t) * d->NP,
                 rb2 = sizeof(uint32_t) * 2 * d->Cp;
    if (first) {
        nn_amx_zero_block();
    } else {
        _tile_loadd(0, c00, rc);
        if (c2) _tile_loadd(1, c00 + 16, rc);
        if (r2) _tile_loadd(2, c00 + 16 * ld, rc);
        if (r2 && c2) _tile_loadd(3, c00 + 16 * ld + 16, rc);
    }
    /* the two column tiles: their taps' offsets and first channels */
    const int t0 = 2 * cb / per_tap, t1 = (2 * cb + 1) / per_tap;
    const size_t b0 = (size_t)d->toff[t0] * d->Cp + (size_t)(2 * cb % per_tap) * 16;
    const size_t b1 = c2 ? (size_t)d->toff[t1] * d->Cp + (size_t)((2 * cb + 1) % per_tap) * 16 : 0;
    for (int i = 0; i < n; i++) {
        const uint32_t *g2 = imgs + (size_t)i * d->img_words;
        const uint32_t *dt = g2 + d->g2rows * d->Cp + (size_t)(2 * rb) * 16 * d->NP;
        for (int q = 0; q < d->NP; q += STEP) {
            const uint32_t *g = g2 + (size_t)2 * q * d->Cp; /* grid row 2q: position pair q */
            _tile_loadd(6, g + b0, rb2);
            if (c2) _tile_loadd(7, g + b1, rb2);
            _tile_loadd(4, dt + q, ra);
            _tile_dpbf16ps(0, 4, 6);
            if (c2) _tile_dpbf16ps(1, 4, 7);
            if (r2) {
                _tile_loadd(5, dt + (size_t)16 * d->NP + q, ra);
                _tile_dpbf16ps(2, 5, 6);
                if (c2) _tile_dpbf16ps(3, 5, 7);
            }
        }
    }
    nn_amx_store_block(c00, ld, r2, c2);
}
#endif

/* the segments of an image: an output row each where the pairs skip the margins, else one */
static int dw_segments(const dw_geom *d) { return d->rp ? d->M / d->Wp : 1; }

/* Where the segments of a chunk's first n images start, from the chunk's start: in a, the first
 * output channel's pairs; in b, the grid's first pair (output row y's pairs: its positions y Wp
 * on). The same for every block of sums, which add their row and column offsets to the bases. */
static void dw_offsets(const dw_geom *d, int n, size_t *aoff, size_t *boff)
{
    const int rows = dw_segments(d);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < rows; y++) {
            const size_t img = (size_t)i * d->img_words;
            aoff[i * rows + y] = img + d->g2rows * d->Cp + (size_t)y * d->rp;
            boff[i * rows + y] = img + (size_t)y * d->Wp * d->Cp;
        }
}

static int dw_row_tiles(int OC) { return (OC + NN_BTILE_ROWS - 1) / NN_BTILE_ROWS; }

/* As dw_block, with AVX512_BF16 (or AVX2): block blk of the sums, a tile of rows of output
 * channels (the OC rows cut into tiles of about equal size, NN_BTILE_ROWS at most) by two
 * vectors of 16 (tap, channel) columns (one at the right edge), over the n images of a chunk:
 * a segment an image, or an output row of one where the pairs skip the margins (d->rp; aoff,
 * boff: dw_offsets' for the chunk). A margin's pairs are zero in dt, so its products, skipped,
 * would have added only zeros: the sums are the same (but where an input the margin reaches is
 * not finite: it would have made them NaN). */
static void dw_block_dot(float *acc, size_t ld, const uint32_t *imgs, int n, const dw_geom *d,
                         int OC, int blk, int first, const size_t *aoff, const size_t *boff)
{
    const int rts = dw_row_tiles(OC), per_tap = d->Cp / 16, cts = d->taps * per_tap;
    const int rb = blk / ((cts + 1) / 2), cb = blk % ((cts + 1) / 2);
    const int r0 = OC * rb / rts, r1 = OC * (rb + 1) / rts, c2 = 2 * cb + 1 < cts;
    /* the two vectors of columns: their taps' offsets and first channels */
    const int t0 = 2 * cb / per_tap, t1 = (2 * cb + 1) / per_tap;
    const size_t o0 = (size_t)d->toff[t0] * d->Cp + (size_t)(2 * cb % per_tap) * 16;
    const size_t o1 = c2 ? (size_t)d->toff[t1] * d->Cp + (size_t)((2 * cb + 1) % per_tap) * 16 : o0;
    /* the position pairs that hold a position of the image's rows (the rest are zero) */
    const nn_btile_seg seg = {n * dw_segments(d), d->rp ? d->rp : (d->M + 1) / 2, aoff, boff,
                              (size_t)d->NP, (size_t)2 * d->Cp, o1 - o0, ld, !first, NULL, 0};
    nn_btile_segments(r1 - r0, c2 ? COLS : 16, imgs + (size_t)r0 * d->NP, imgs + o0, &seg,
                      acc + (size_t)r0 * ld + 32 * cb);
}

/* The batch's images in two fixed halves (the first floor(B / 2) images, then the rest), each
 * half's sums in its own accumulator, chunk by chunk in image order, and the two added at the end:
 * the bits do not depend on the threads. Each step takes a chunk of each half, side by side, so at
 * two threads, where a step's halves hold as many images, each thread prepares one half's images
 * and runs that half's blocks, reading only images it wrote itself (a step with one half's images
 * alone shares that half's blocks among the threads). With one chunk shared by all, each core read
 * the other's half of every chunk into its own cache: the teacher's conv2 at batch 128 took
 * 2.7-3.6 ms at two threads against 3.7-4.9 at one; now 2.1-2.7 ms (BENCHMARKS.md). */
enum { DW_HALVES = 2 };
enum { DW_CHUNK_BYTES = 1 << 19 }; /* a half's chunk of images' operands: half of a 1 MiB L2 */

void nn_bconv_dw(float *C, int N, float beta, const float *dout, const float *inp,
                 const nn_conv_shape *s)
{
    XD_ASSERT(nn_bconv_dw_takes(s) && (beta == 0.0f || beta == 1.0f));
    const int K = s->KH * s->KW * s->C, taps = s->KH * s->KW;
    XD_ASSERT(N == K + !!s->bias);
    int *toff = xd_xmalloc(sizeof(int) * (size_t)taps);
    const int Wp = s->W + 2 * s->pad;
    tap_offsets(toff, s->KH, s->KW, Wp);
    const int amx = nn_bgemm_amx(), grid_pairs = round_up((s->OH * Wp + 1) / 2, STEP);
    dw_geom d = {Wp, s->OH * Wp, s->OW, taps, toff, round_up(s->C, 16), round_up(s->OC, 16),
                 grid_pairs, 0, 0, 0};
    /* On dot products, where OW and Wp are both even (KW odd), the pairs skip the margins: the
     * same pairs of positions as the grid's, in the same order, less the margins'. AMX's dw_block
     * loads 16 consecutive pairs of dt against one stride of the grid, which would cross output
     * rows. */
    if (!amx && s->OW % 2 == 0 && Wp % 2 == 0 && Wp > s->OW) {
        d.rp = s->OW / 2;
        d.NP = round_up(s->OH * d.rp, 16);
    }
    d.g2rows = (size_t)2 * grid_pairs + (size_t)toff[taps - 1];
    d.img_words = d.g2rows * d.Cp + (size_t)d.OCp * d.NP;
    const size_t ld = (size_t)taps * d.Cp;
    const int cts = taps * d.Cp / 16;
    const int blocks = (amx ? (d.OCp / 16 + 1) / 2 : dw_row_tiles(s->OC)) * ((cts + 1) / 2);
    int h0[DW_HALVES + 1]; /* half h: images h0[h] .. h0[h + 1] */
    for (int h = 0; h <= DW_HALVES; h++) h0[h] = (int)((long)s->B * h / DW_HALVES);
    const int most = h0[DW_HALVES] - h0[DW_HALVES - 1]; /* the largest half: the last */
    int chunk = (int)(DW_CHUNK_BYTES / (sizeof(uint32_t) * d.img_words));
    if (chunk < 1) chunk = 1;
    if (chunk > most) chunk = most;
    const size_t acc_n = (size_t)d.OCp * ld, half_words = (size_t)chunk * d.img_words;
    float *acc = xd_xmalloc_aligned(sizeof(float) * DW_HALVES * acc_n);
    uint32_t *imgs = xd_xmalloc_aligned(sizeof(uint32_t) * DW_HALVES * half_words);
    int T = xd_threads_split(1) ? xd_threads_get() : 1;
    if (T > DW_HALVES * blocks) T = DW_HALVES * blocks;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        uint16_t *tmp = xd_xmalloc(sizeof(uint16_t) * (d.g2rows + 1) * d.Cp);
        memset(tmp, 0, sizeof(uint16_t) * (d.g2rows + 1) * d.Cp); /* see grid_image */
        const size_t segs = (size_t)chunk * dw_segments(&d);
        size_t *off = xd_xmalloc(sizeof(size_t) * 2 * segs);
        dw_offsets(&d, chunk, off, off + segs);
#ifdef NN_AMX
        if (amx) nn_amx_configure();
#endif
        for (int c0 = 0; c0 < most; c0 += chunk) {
            int n[DW_HALVES], all = 0; /* each half's images in this step */
            for (int h = 0; h < DW_HALVES; h++) {
                const int left = h0[h + 1] - h0[h] - c0;
                n[h] = left < 0 ? 0 : left < chunk ? left : chunk;
                all += n[h];
            }
#pragma omp for schedule(static)
            for (int i = 0; i < all; i++) {
                int h = 0, j = i;
                while (j >= n[h]) j -= n[h++];
                dw_image(imgs + h * half_words + (size_t)j * d.img_words, tmp, inp, dout, s, &d,
                         h0[h] + c0 + j);
            }
            int with[DW_HALVES], nw = 0; /* the halves with images in this step */
            for (int h = 0; h < DW_HALVES; h++)
                if (n[h]) with[nw++] = h;
#pragma omp for schedule(static)
            for (int k = 0; k < nw * blocks; k++) {
                const int h = with[k / blocks], blk = k % blocks;
                float *a = acc + h * acc_n;
                const uint32_t *im = imgs + h * half_words;
#ifdef NN_AMX
                if (amx) dw_block(a, ld, im, n[h], &d, blk, c0 == 0);
                else
#endif
                    dw_block_dot(a, ld, im, n[h], &d, s->OC, blk, c0 == 0, off, off + segs);
            }
        }
#ifdef NN_AMX
        if (amx) nn_amx_release();
#endif
        free(off);
        free(tmp);
    }
    for (int o = 0; o < s->OC; o++)
        for (int t = 0; t < taps; t++) {
            float *c = C + (size_t)o * N + (size_t)t * s->C;
            for (int k = 0; k < s->C; k++) {
                const size_t at = (size_t)o * ld + (size_t)t * d.Cp + (size_t)k;
                float g = 0.0f;
                for (int h = 0, any = 0; h < DW_HALVES; h++) /* halves with images, in order */
                    if (h0[h + 1] > h0[h]) {
                        g = any ? g + acc[h * acc_n + at] : acc[h * acc_n + at];
                        any = 1;
                    }
                c[k] = beta == 0.0f ? g : c[k] + g;
            }
        }
    if (s->bias) { /* the bias column: dout's column sums, position by position */
        float *sum = xd_xcalloc((size_t)s->OC, sizeof(float));
        nn_bias_grad(sum, dout, s->B * s->OH * s->OW, s->OC);
        for (int o = 0; o < s->OC; o++) {
            float *c = C + (size_t)o * N + K;
            *c = beta == 0.0f ? sum[o] : *c + sum[o];
        }
        free(sum);
    }
    free(imgs);
    free(acc);
    free(toff);
}
