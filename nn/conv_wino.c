/* Winograd F(2x2, 3x3) convolutions in bf16 for evaluation forwards and in float32 for forwards
 * and input gradients, and F(3x3, 2x2) for float32 weight gradients (see conv_wino.h; the last at
 * the end of this file).
 *
 * Per round of one or two images (group_of), on one thread: the input transform of every tile
 * into V (16 matrices, a row of cp words per tile: its transformed channels rounded to bf16 in
 * pairs), then per transformed position e the product V_e (tiles x C) U_e (C x OC) into M_e
 * (tiles x ldm floats) by the
 * AVX512_BF16 tile of nn/bf16.h (up to 14 tiles by 32 outputs, one segment of cp pairs), then the
 * output transform of each tile's 16 values of M into its 2 x 2 outputs, + the bias. The packed
 * weights are 16 B panels, one per e (the layout of nn/gemm_bf16.c: per pair, 32 words of
 * columns, panels of 32 columns). */
#include "nn/conv_wino.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "core/status.h"
#include "nn/bf16.h"
#include "nn/gemm.h"
#include "nn/gemm_bf16.h"
#include "nn/gemm_simd.h"
#include "nn/mm.h"

enum { COLS = 32, E = 16 }; /* a panel's columns; transformed positions */

static int round_up(int n, int r) { return (n + r - 1) / r * r; }

/* the bf16 kernel in use is the one Winograd's products run on */
static int wino_isa(void) { return nn_bgemm_isa() == NN_BISA_AVX512BF16; }

/* what both precisions take: an evaluation forward's 3 x 3 convolution at stride 1, 16 input
 * channels and 16 outputs at least */
static int wino_shape(const nn_conv_shape *s)
{
    return s->winograd && s->KH == 3 && s->KW == 3 && s->stride == 1 && s->C >= 16 &&
           s->OC >= 16;
}

int nn_bwino_takes(const nn_conv_shape *s)
{
    return wino_shape(s) && nn_mm_precision() == NN_PREC_BF16 && wino_isa() && s->C % 2 == 0;
}

int nn_wino_takes(const nn_conv_shape *s)
{
    return wino_shape(s) && nn_mm_precision() == NN_PREC_FLOAT32;
}

const char *nn_bwino_eval_convolutions(void)
{
    /* both run on AVX512_BF16 alone (nn_bfirst_shape) */
    return wino_isa() ? "winograd F(2x2, 3x3) v1; one channel by pairs v1" : "direct";
}

const char *nn_wino_eval_convolutions(void) { return "winograd F(2x2, 3x3) float32 v1"; }

/* The transforms as conv_wino.h writes them, on VW channels (outputs) at once, lane by lane; the
 * per-channel forms below run them on single values, so the bits are the same wherever they
 * run. The input transform, in place: */
static inline void input_tf_v(vf d[16])
{
    vf t[16];
    for (int j = 0; j < 4; j++) {
        t[j] = d[j] - d[8 + j];
        t[4 + j] = d[4 + j] + d[8 + j];
        t[8 + j] = d[8 + j] - d[4 + j];
        t[12 + j] = d[4 + j] - d[12 + j];
    }
    for (int i = 0; i < 4; i++) {
        const vf *r = t + 4 * i;
        d[4 * i] = r[0] - r[2];
        d[4 * i + 1] = r[1] + r[2];
        d[4 * i + 2] = r[2] - r[1];
        d[4 * i + 3] = r[1] - r[3];
    }
}

/* a > b ? a : b lane by lane (b where either is NaN), as the vector max instructions give it */
static inline vf vmaxf(vf a, vf b)
{
#if defined(__AVX512F__)
    return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
    return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#else
    typedef int vi __attribute__((vector_size(sizeof(vf))));
    const vi m = a > b;
    return (vf)(((vi)a & m) | ((vi)b & ~m));
#endif
}

/* The output transform of v, + the bias b when bias, into y; *best (pooled) the largest of their
 * ReLUs (x > 0 ? x : 0, so NaN gives 0) in window order */
static inline void output_tf_v(vf y[4], vf *best, const vf v[16], vf b, int bias)
{
    vf s[8];
    for (int j = 0; j < 4; j++) {
        s[j] = v[j] + v[4 + j] + v[8 + j];
        s[4 + j] = v[4 + j] - v[8 + j] - v[12 + j];
    }
    for (int i = 0; i < 2; i++) {
        const vf *r = s + 4 * i;
        y[2 * i] = r[0] + r[1] + r[2];
        y[2 * i + 1] = r[1] - r[2] - r[3];
        if (bias) {
            y[2 * i] += b;
            y[2 * i + 1] += b;
        }
    }
    if (best) {
        const vf zero = vset1(0.0f);
        *best = vmaxf(y[0], zero);
        for (int i = 1; i < 4; i++) *best = vmaxf(vmaxf(y[i], zero), *best);
    }
}

/* per channel: v = the input transform of d */
static inline void input_tf(float v[16], const float d[16])
{
    vf x[16];
    for (int i = 0; i < 16; i++) x[i] = vset1(d[i]);
    input_tf_v(x);
    for (int i = 0; i < 16; i++) v[i] = x[i][0];
}

/* y = the output transform of m + bias (when bias), *pooled (or NULL) the pool of its ReLUs */
static inline void output_tf(float y[4], float *pooled, const float m[16], float bias, int with)
{
    vf v[16], yv[4], best;
    for (int e = 0; e < E; e++) v[e] = vset1(m[e]);
    output_tf_v(yv, pooled ? &best : NULL, v, vset1(bias), with);
    for (int k = 0; k < 4; k++) y[k] = yv[k][0];
    if (pooled) *pooled = best[0];
}

/* u = A h A' of a tile's output gradients h (row-major 2 x 2; the weight gradient's, at the end
 * of this file), A' = [1 1 1 0; 0 1 -1 -1]: in place, h the first four of x */
static inline void dout_tf_v(vf x[16])
{
    const vf h[4] = {x[0], x[1], x[2], x[3]};
    vf p[8]; /* A h: 4 x 2 */
    for (int j = 0; j < 2; j++) {
        p[j] = h[j];
        p[2 + j] = h[j] + h[2 + j];
        p[4 + j] = h[j] - h[2 + j];
        p[6 + j] = -h[2 + j];
    }
    for (int a = 0; a < 4; a++) {
        const vf *r = p + 2 * a;
        x[4 * a] = r[0];
        x[4 * a + 1] = r[0] + r[1];
        x[4 * a + 2] = r[0] - r[1];
        x[4 * a + 3] = -r[1];
    }
}

/* The 16 transformed values, at v + e * ldv, of n channels from a tile's nsrc positions at src: the
 * input transform of a 4 x 4 window (nsrc 16), or the output gradients' of a 2 x 2 tile (nsrc 4);
 * whole vectors, then the rest lane by lane through the same code. */
static inline void tile_tf(float *v, size_t ldv, const float *const *src, int nsrc, int n)
{
    int c = 0;
    for (; c + VW <= n; c += VW) {
        vf d[16];
        for (int i = 0; i < nsrc; i++) d[i] = vload(src[i] + c);
        if (nsrc == 16) input_tf_v(d);
        else dout_tf_v(d);
        for (int e = 0; e < E; e++) vstore(v + e * ldv + c, d[e]);
    }
    for (; c < n; c++) {
        vf d[16];
        for (int i = 0; i < nsrc; i++) d[i] = vset1(src[i][c]);
        if (nsrc == 16) input_tf_v(d);
        else dout_tf_v(d);
        for (int e = 0; e < E; e++) v[e * ldv + c] = d[e][0];
    }
}

static inline void weight_tf(float u[16], const float g[9])
{
    float h[12]; /* G g: 4 x 3 */
    for (int j = 0; j < 3; j++) {
        const float ends = g[j] + g[6 + j];
        h[j] = g[j];
        h[3 + j] = (ends + g[3 + j]) * 0.5f;
        h[6 + j] = (ends - g[3 + j]) * 0.5f;
        h[9 + j] = g[6 + j];
    }
    for (int i = 0; i < 4; i++) { /* (G g) G' */
        const float *r = h + 3 * i, ends = r[0] + r[2];
        u[4 * i] = r[0];
        u[4 * i + 1] = (ends + r[1]) * 0.5f;
        u[4 * i + 2] = (ends - r[1]) * 0.5f;
        u[4 * i + 3] = r[2];
    }
}

void nn_bwino_input_transform(float v[16], const float d[16]) { input_tf(v, d); }
void nn_bwino_weight_transform(float u[16], const float g[9]) { weight_tf(u, g); }
void nn_bwino_output_transform(float y[4], const float m[16]) { output_tf(y, NULL, m, 0.0f, 0); }

#if defined(__AVX512F__)
/* Each of the E vectors x[e] as its 16 bf16 halves in order (nn_bf16_halves16: 8 pairs' words)
 * at v + e * ldv. AVX512_BF16's conversion where no value is subnormal (the test once for all,
 * as nn_bf16_cvt_exact's), else the integer rounding. */
static inline void store_halves(uint32_t *v, size_t ldv, const __m512 x[E])
{
#if defined(__AVX512BF16__)
    __mmask16 any = 0;
    for (int e = 0; e < E; e++) any |= nn_bf16_subnormal16(_mm512_castps_si512(x[e]));
    if (!any) {
        for (int e = 0; e < E; e++)
            _mm256_storeu_si256((__m256i *)(v + e * ldv), (__m256i)_mm512_cvtneps_pbh(x[e]));
        return;
    }
#endif
    for (int e = 0; e < E; e++)
        _mm256_storeu_si256((__m256i *)(v + e * ldv), nn_bf16_halves16(_mm512_castps_si512(x[e])));
}
#endif

void nn_bwino_input_tile(uint32_t *v, size_t ldv, const float *const src[16], int C)
{
    int c = 0;
#if defined(__AVX512F__)
    for (; c + VW <= C; c += VW) { /* 8 words of pairs per position */
        vf d[16];
        for (int i = 0; i < 16; i++) d[i] = vload(src[i] + c);
        input_tf_v(d);
        store_halves(v + c / 2, ldv, (const __m512 *)d);
    }
#endif
    for (; c < C; c += 2) {
        float d0[16], d1[16], v0[16], v1[16];
        for (int i = 0; i < 16; i++) {
            d0[i] = src[i][c];
            d1[i] = src[i][c + 1];
        }
        input_tf(v0, d0);
        input_tf(v1, d1);
        for (int e = 0; e < E; e++) v[e * ldv + c / 2] = nn_bf16_pair(v0[e], v1[e]);
    }
}

void nn_wino_input_tile(float *v, size_t ldv, const float *const src[16], int C)
{
    tile_tf(v, ldv, src, 16, C);
}

void nn_bwino_output_tile(float *const dst[4], float *pooled, const float *m, size_t estride,
                          const float *bias, int OC)
{
    int n = 0;
    for (; n + VW <= OC; n += VW) {
        vf v[16], y[4], best;
        for (int e = 0; e < E; e++) v[e] = vload(m + (size_t)e * estride + n);
        output_tf_v(y, pooled ? &best : NULL, v, bias ? vload(bias + n) : vset1(0.0f), !!bias);
        for (int k = 0; k < 4; k++) vstore(dst[k] + n, y[k]);
        if (pooled) vstore(pooled + n, best);
    }
#if defined(__AVX512F__)
    if (n < OC) { /* the last outputs in one masked vector */
        const __mmask16 k = (__mmask16)((1u << (OC - n)) - 1);
        vf v[16], y[4], best;
        for (int e = 0; e < E; e++)
            v[e] = (vf)_mm512_maskz_loadu_ps(k, m + (size_t)e * estride + n);
        output_tf_v(y, pooled ? &best : NULL, v,
                    bias ? (vf)_mm512_maskz_loadu_ps(k, bias + n) : vset1(0.0f), !!bias);
        for (int i = 0; i < 4; i++) _mm512_mask_storeu_ps(dst[i] + n, k, (__m512)y[i]);
        if (pooled) _mm512_mask_storeu_ps(pooled + n, k, (__m512)best);
        return;
    }
#endif
    for (; n < OC; n++) {
        float v[16], y[4];
        for (int e = 0; e < E; e++) v[e] = m[(size_t)e * estride + n];
        output_tf(y, pooled ? pooled + n : NULL, v, bias ? bias[n] : 0.0f, !!bias);
        for (int k = 0; k < 4; k++) dst[k][n] = y[k];
    }
}

typedef struct {
    int f32;           /* float32 products (nn_wino_*), else bf16 (nn_bwino_*) */
    int TH, TW, tiles; /* tiles down, across, in all */
    int cw;            /* 4-byte words of a V row: the channels (float32) or their pairs */
    int ldm;           /* M's rows, floats apart: OC rounded up to a panel */
} wino_geom;

static wino_geom geometry(const nn_conv_shape *s, int f32)
{
    const int TH = (s->OH + 1) / 2, TW = (s->OW + 1) / 2;
    return (wino_geom){f32, TH, TW, TH * TW, f32 ? s->C : s->C / 2, round_up(s->OC, COLS)};
}

size_t nn_bwino_packed_size(const nn_conv_shape *s)
{
    const wino_geom g = geometry(s, 0);
    return (size_t)E * g.ldm * g.cw;
}

void nn_bwino_pack(uint32_t *wpk, const float *w, const nn_conv_shape *s)
{
    const wino_geom geo = geometry(s, 0);
    const int cp = geo.cw, ldm = geo.ldm;
    memset(wpk, 0, sizeof(uint32_t) * nn_bwino_packed_size(s));
    for (int n = 0; n < s->OC; n++)
        for (int q = 0; q < cp; q++) {
            float u[2][E], g[9];
            for (int h = 0; h < 2; h++) {
                for (int t = 0; t < 9; t++) g[t] = w[((size_t)n * 9 + t) * s->C + 2 * q + h];
                weight_tf(u[h], g);
            }
            /* panel (e, n / COLS), pair q, column n % COLS */
            for (int e = 0; e < E; e++)
                wpk[((size_t)e * ldm + n / COLS * COLS) * cp + (size_t)q * COLS + n % COLS] =
                    nn_bf16_pair(u[0][e], u[1][e]);
        }
}

/* one transformed position's packed weights, floats */
static size_t panel32(const nn_conv_shape *s) { return nn_sgemm_packed_size(s->OC, s->C); }

size_t nn_wino_packed_size(const nn_conv_shape *s) { return E * panel32(s); }

void nn_wino_pack(float *wpk, const float *w, const nn_conv_shape *s)
{
    const int C = s->C, OC = s->OC;
    /* U_e (C x OC), row-major, in the thread's grid buffer: no caller holds it while packing
     * (a model's packing, forward's below before its threads start, the input gradient's) */
    float *u = nn_thread_buf(NN_BUF_BCONV_GRID, sizeof(float) * E * (size_t)C * OC);
    for (int n = 0; n < OC; n++)
        for (int c = 0; c < C; c++) {
            float ue[E], g[9];
            for (int t = 0; t < 9; t++) g[t] = w[((size_t)n * 9 + t) * C + c];
            weight_tf(ue, g);
            for (int e = 0; e < E; e++) u[((size_t)e * C + c) * OC + n] = ue[e];
        }
    for (int e = 0; e < E; e++)
        nn_sgemm_pack_b(0, OC, C, u + (size_t)e * C * OC, OC, wpk + e * panel32(s));
}

/* Images per round: their tiles make the rows of one product (two 7 x 7 images, 98 rows: seven
 * tiles of 14, whose rows the bf16 tile reads at a constant distance, its fastest case). Two where
 * both images' V and M fit in GROUP_BYTES (half a 1 MiB L2), else one. */
enum { GROUP = 2 };
#define GROUP_BYTES ((size_t)512 << 10)

static int group_of(const wino_geom *g)
{
    const size_t per_image = sizeof(float) * (size_t)E * g->tiles * ((size_t)g->cw + g->ldm);
    return GROUP * per_image <= GROUP_BYTES ? GROUP : 1;
}

/* The thread's scratch for a round: V (E blocks of group_of * tiles rows of cw words: Vb's bf16
 * pairs or Vf's floats), M (as many rows of ldm floats), a row of ldm floats where outputs past
 * the edge go and a row of C zeros (the padding). */
typedef struct {
    uint32_t *Vb;
    float *Vf, *M, *past, *zero;
    size_t rows; /* of each e's block */
} wino_scratch;

static wino_scratch scratch(const wino_geom *g, int C)
{
    const size_t rows = (size_t)group_of(g) * g->tiles;
    const size_t nv = (E * rows * g->cw + 15) / 16 * 16, nm = E * rows * g->ldm;
    char *p = nn_thread_buf(NN_BUF_BCONV_GRID,
                            sizeof(float) * (nv + nm + (size_t)g->ldm + (size_t)C));
    wino_scratch w = {NULL, NULL, (float *)(p + sizeof(float) * nv), NULL, NULL, rows};
    if (g->f32) w.Vf = (float *)p;
    else w.Vb = (uint32_t *)p;
    w.past = w.M + nm;
    w.zero = w.past + g->ldm;
    memset(w.zero, 0, sizeof(float) * (size_t)C);
    return w;
}

/* V's rows r0.. from one image (H, W, C) */
static void input_image(const wino_scratch *ws, size_t r0, const float *img,
                        const nn_conv_shape *s, const wino_geom *g)
{
    for (int ty = 0; ty < g->TH; ty++)
        for (int tx = 0; tx < g->TW; tx++) {
            const float *src[16];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const int y = 2 * ty - s->pad + i, x = 2 * tx - s->pad + j;
                    src[4 * i + j] = y >= 0 && y < s->H && x >= 0 && x < s->W
                                         ? img + ((size_t)y * s->W + x) * s->C
                                         : ws->zero;
                }
            const size_t r = (r0 + (size_t)ty * g->TW + tx) * g->cw, ldv = ws->rows * g->cw;
            if (g->f32) nn_wino_input_tile(ws->Vf + r, ldv, src, s->C);
            else nn_bwino_input_tile(ws->Vb + r, ldv, src, s->C);
        }
}

/* M_e = V_e U_e over rows 0..n for every e: in bf16 in tiles of NN_BTILE_ROWS rows and one of
 * the rest, in float32 by the float32 kernel on this thread */
static void products(const wino_scratch *ws, int n, const void *wpk, const nn_conv_shape *s,
                     const wino_geom *g)
{
    if (g->f32) {
        for (int e = 0; e < E; e++)
            nn_sgemm_packed_serial(0, n, s->OC, s->C, 1.0f, ws->Vf + (size_t)e * ws->rows * s->C,
                                   s->C, (const float *)wpk + e * panel32(s), 0.0f,
                                   ws->M + (size_t)e * ws->rows * g->ldm, g->ldm);
        return;
    }
    static const size_t zero_off = 0;
    const nn_btile_seg seg = {1,  g->cw, &zero_off, &zero_off, (size_t)g->cw, COLS, 16,
                              (size_t)g->ldm, 0, NULL, 0};
    for (int e = 0; e < E; e++)
        for (int r0 = 0; r0 < n; r0 += NN_BTILE_ROWS) {
            const int mr = n - r0 < NN_BTILE_ROWS ? n - r0 : NN_BTILE_ROWS;
            const uint32_t *a = ws->Vb + ((size_t)e * ws->rows + r0) * g->cw;
            float *m = ws->M + ((size_t)e * ws->rows + r0) * g->ldm;
            for (int j0 = 0; j0 < s->OC; j0 += COLS) {
                const int nr = s->OC - j0 < COLS ? s->OC - j0 : COLS;
                nn_btile_segments(mr, nr, a, (const uint32_t *)wpk + ((size_t)e * g->ldm + j0) * g->cw,
                                  &seg, m + j0);
            }
        }
}
/* out's image from M's rows r0..: each tile's 2 x 2 outputs (those inside OH x OW) + the bias;
 * pooled (or NULL): the image's pooled rows (OH / 2 x OW / 2, even OH and OW), a tile each; out
 * NULL (with pooled): the outputs are not kept (they go where those past the edge go) */
static void output_image(float *out, float *pooled, const wino_scratch *ws, size_t r0,
                         const float *bias, const nn_conv_shape *s, const wino_geom *g)
{
    const int OC = s->OC;
    for (int ty = 0; ty < g->TH; ty++)
        for (int tx = 0; tx < g->TW; tx++) {
            const float *mt = ws->M + (r0 + (size_t)ty * g->TW + tx) * g->ldm;
            float *dst[4];
            for (int k = 0; k < 4; k++) {
                const int y = 2 * ty + k / 2, x = 2 * tx + k % 2;
                dst[k] = out && y < s->OH && x < s->OW ? out + ((size_t)y * s->OW + x) * OC
                                                       : ws->past;
            }
            float *p = pooled ? pooled + (size_t)(ty * g->TW + tx) * OC : NULL;
            nn_bwino_output_tile(dst, p, mt, ws->rows * g->ldm, bias, OC);
        }
}

typedef struct {
    const nn_conv_shape *s;
    const wino_geom *g;
    const float *inp, *bias;
    const void *wpk; /* packed by nn_wino_pack (float32) or nn_bwino_pack */
    float *out;
    int T;
    void (*image)(void *, int);
    void *image_ctx;
    const nn_relu_pool *pool;
} wino_job;

static void wino_run(void *ctx, int t)
{
    const wino_job *j = ctx;
    const nn_conv_shape *s = j->s;
    int b0, b1;
    nn_sgemm_block_range(s->B, j->T, t, &b0, &b1);
    if (b0 >= b1) return;
    const wino_scratch ws = scratch(j->g, s->C);
    const size_t in_image = (size_t)s->H * s->W * s->C, out_image = (size_t)s->OH * s->OW * s->OC;
    const int group = (int)(ws.rows / (size_t)j->g->tiles);
    for (int r = b0; r < b1; r += group) {
        const int n = b1 - r < group ? b1 - r : group;
        for (int i = 0; i < n; i++)
            input_image(&ws, (size_t)i * j->g->tiles, j->inp + (size_t)(r + i) * in_image, s, j->g);
        products(&ws, n * j->g->tiles, j->wpk, s, j->g);
        for (int i = 0; i < n; i++) {
            float *pooled = j->pool ? j->pool->out + (size_t)(r + i) * out_image / 4 : NULL;
            output_image(j->out ? j->out + (size_t)(r + i) * out_image : NULL, pooled, &ws,
                         (size_t)i * j->g->tiles, j->bias, s, j->g);
            if (j->image) j->image(j->image_ctx, r + i);
        }
    }
}

int nn_bwino_pools(const nn_conv_shape *s, const nn_relu_pool *pool)
{
    const nn_pool_shape *ps = pool->s;
    return !pool->relu_out && !pool->argmax && ps->k == 2 && ps->stride == 2 && s->OH % 2 == 0 &&
           s->OW % 2 == 0 && ps->B == s->B && ps->H == s->OH && ps->W == s->OW && ps->C == s->OC;
}

/* nn_bwino_forward (f32 0) and nn_wino_forward (f32 1): wpk packed for that precision, or NULL
 * (w packed for the call) */
static void forward(int f32, float *out, const float *inp, const float *w, const void *wpk,
                    const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                    void *image_ctx, const nn_relu_pool *pool)
{
    XD_ASSERT(s->KH == 3 && s->KW == 3 && s->stride == 1 && (b != NULL) == (s->bias != 0) &&
              (!pool || nn_bwino_pools(s, pool)));
    const wino_geom g = geometry(s, f32);
    if (!wpk) { /* both packings are of 4-byte words; kept for the thread's next call */
        void *own = nn_thread_buf(NN_BUF_WINO_PACK,
                                  4 * (f32 ? nn_wino_packed_size(s) : nn_bwino_packed_size(s)));
        if (f32) nn_wino_pack(own, w, s);
        else nn_bwino_pack(own, w, s);
        wpk = own;
    }
    int T = xd_threads_split(s->B > 1) ? xd_threads_get() : 1;
    if (T > s->B) T = s->B;
    wino_job job = {.s = s, .g = &g, .inp = inp, .bias = b, .wpk = wpk, .out = out, .T = T,
                    .image = image, .image_ctx = image_ctx, .pool = pool};
    xd_threads_each(T, wino_run, &job);
}

void nn_bwino_forward(float *out, const float *inp, const float *w, const uint32_t *wpk,
                      const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                      void *image_ctx, const nn_relu_pool *pool)
{
    XD_ASSERT(s->C % 2 == 0);
    forward(0, out, inp, w, wpk, b, s, image, image_ctx, pool);
}

void nn_wino_forward(float *out, const float *inp, const float *w, const float *wpk,
                     const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                     void *image_ctx, const nn_relu_pool *pool)
{
    forward(1, out, inp, w, wpk, b, s, image, image_ctx, pool);
}

// ----------------------------------------------------------------------------------------------
// the float32 weight gradient by Winograd's F(3x3, 2x2)

/* The weight gradient's 3 x 3 kernel is a correlation of each 4 x 4 input window d (the forward's
 * tile) with the tile's 2 x 2 output gradients h, summed over the tiles: dW = sum over tiles of
 * G' [(A h A') . (B' d B)] G with the forward's B' and A' and G' = [1 1/2 1/2 0; 0 1/2 -1/2 0;
 * 0 1/2 1/2 1] (the forward's F(2x2, 3x3) with the roles of its kernel and output swapped).
 * The transforms are linear, so the sum goes inside: per transformed position e, M_e (OC x C) =
 * U_e' V_e over all the tiles of the batch (V_e: the tiles' transformed inputs, U_e: their
 * transformed output gradients), then dW = G' M G per output and channel: 16 products of 64 x 32
 * by the tiles (2.25 times fewer multiplications than the 9 taps' product by the positions).
 * The images go in chunks of about DW_CHUNK_TILES tiles (a count set by the shape alone), each
 * chunk on one thread, transforms and products: its partial P_e = U_e' V_e (one K block of the
 * kernel); the partials are added into M in chunk order, as one product running on over the
 * chunks would add them, and the bias's gradient is summed per image, then over the images in
 * order. So the bits are the same at any thread count, and a thread's products read only the
 * transforms it wrote (a chunk's are about 1.5 MB: read from the other core, where the two cores
 * sit far apart, at a third of the rate, they cost a 2-thread step about 1 ms). */
enum { DW_CHUNK_TILES = 256, DW_MAX_TILES = 1024 };

int nn_wino_dw_takes(const nn_conv_shape *s)
{
    return nn_wino_takes(s) && geometry(s, 1).tiles <= DW_MAX_TILES;
}

/* y (row-major 3 x 3) = G' m G of m (row-major 4 x 4) */
static inline void dw_tf_v(vf y[9], const vf m[16])
{
    const vf half = vset1(0.5f);
    vf r[12]; /* G' m: 3 x 4 */
    for (int j = 0; j < 4; j++) {
        const vf a = m[4 + j], b = m[8 + j], mid = (a + b) * half;
        r[j] = m[j] + mid;
        r[4 + j] = (a - b) * half;
        r[8 + j] = mid + m[12 + j];
    }
    for (int k = 0; k < 3; k++) {
        const vf *q = r + 4 * k, mid = (q[1] + q[2]) * half;
        y[3 * k] = q[0] + mid;
        y[3 * k + 1] = (q[1] - q[2]) * half;
        y[3 * k + 2] = mid + q[3];
    }
}

void nn_wino_dout_transform(float u[16], const float h[4])
{
    const float *src[4] = {h, h + 1, h + 2, h + 3};
    tile_tf(u, 1, src, 4, 1);
}

void nn_wino_dw_transform(float y[9], const float m[16])
{
    vf x[16], v[9];
    for (int e = 0; e < E; e++) x[e] = vset1(m[e]);
    dw_tf_v(v, x);
    for (int k = 0; k < 9; k++) y[k] = v[k][0];
}

/* A thread's share of the work, in a round: one chunk's transforms (V and U, in ws and U) and
 * its 16 products, P_e = U_e' V_e, into its own partial P */
typedef struct {
    wino_scratch ws; /* V (ws.Vf, E blocks of ws.rows rows of C floats) */
    float *U;        /* E blocks of ws.rows rows of OC floats */
    float *bp;       /* a V_e packed */
} dw_own;

typedef struct {
    const nn_conv_shape *s;
    wino_geom g;
    const float *dout, *inp, *zero; /* zero: a row of max(C, OC) zeros (the padding) */
    float *M;           /* E blocks of OC x C floats: the sums of the chunks' P in chunk order */
    float *P;           /* each thread's partial (E blocks of OC x C floats) */
    float *bsum;        /* per image, the sums of its output gradients (OC floats) */
    float *own;         /* each thread's scratch: V, U and a packed V_e (nv, nu, nbp floats) */
    size_t nv, nu, nbp;
    int per_chunk, chunks;
} dw_job;

/* U's rows r0.. and the bias's sums from one image's output gradients (OH, OW, OC) */
static void dout_image(const dw_job *j, const dw_own *w, size_t r0, const float *img,
                       float *restrict bs)
{
    const nn_conv_shape *s = j->s;
    const int OC = s->OC;
    const size_t estride = w->ws.rows * (size_t)OC;
    for (int ty = 0; ty < j->g.TH; ty++)
        for (int tx = 0; tx < j->g.TW; tx++) {
            const float *src[4];
            for (int k = 0; k < 4; k++) {
                const int y = 2 * ty + k / 2, x = 2 * tx + k % 2;
                src[k] = y < s->OH && x < s->OW ? img + ((size_t)y * s->OW + x) * OC : j->zero;
            }
            tile_tf(w->U + (r0 + (size_t)ty * j->g.TW + tx) * OC, estride, src, 4, OC);
        }
    for (int o = 0; o < OC; o++) bs[o] = 0.0f;
    for (size_t p = 0, n = (size_t)s->OH * s->OW; p < n; p++) {
        const float *restrict row = img + p * OC;
        for (int o = 0; o < OC; o++) bs[o] += row[o];
    }
}

/* Thread t of T. Round by round, chunk r + t: its images' transforms and its products into the
 * thread's P (so each thread reads what it wrote itself); then the round's partials added into
 * M in chunk order, M's cache lines shared among the threads. M is so the sum of P over the
 * chunks in order, as one product running on over them would add them (a chunk's K rows are
 * one block of the kernel): the same bits at any thread count. */
static void dw_run(const dw_job *j, int t, int T)
{
    const nn_conv_shape *s = j->s;
    const int C = s->C, OC = s->OC, tiles = j->g.tiles;
    const size_t in_image = (size_t)s->H * s->W * C, out_image = (size_t)s->OH * s->OW * OC,
                 nm = (size_t)E * OC * C;
    float *mine = j->own + (size_t)t * (j->nv + j->nu + j->nbp);
    const dw_own own = {.ws = {.Vf = mine, .rows = (size_t)j->per_chunk * tiles,
                               .zero = (float *)j->zero},
                        .U = mine + j->nv, .bp = mine + j->nv + j->nu},
                 *w = &own;
    float *P = j->P + (size_t)t * nm;
    int l0, l1; /* M's cache lines this thread adds into */
    nn_sgemm_block_range((int)(nm / 16), T, t, &l0, &l1);
    for (int r = 0; r < j->chunks; r += T) {
        const int c = r + t, c0 = c * j->per_chunk;
        if (c < j->chunks) {
            const int n = s->B - c0 < j->per_chunk ? s->B - c0 : j->per_chunk, rows = n * tiles;
            for (int i = 0; i < n; i++) {
                const int b = c0 + i;
                input_image(&w->ws, (size_t)i * tiles, j->inp + (size_t)b * in_image, s, &j->g);
                dout_image(j, w, (size_t)i * tiles, j->dout + (size_t)b * out_image,
                           j->bsum + (size_t)b * OC);
            }
            for (int e = 0; e < E; e++) {
                nn_sgemm_pack_b(0, C, rows, w->ws.Vf + (size_t)e * w->ws.rows * C, C, w->bp);
                nn_sgemm_packed_serial(1, OC, C, rows, 1.0f, w->U + (size_t)e * w->ws.rows * OC,
                                       OC, w->bp, 0.0f, P + (size_t)e * OC * C, C);
            }
        }
        if (T > 1) {
#pragma omp barrier
        }
        /* q + m, the operands in the order the kernel's write_tile adds a K block into C */
        for (int k = 0; k < T && r + k < j->chunks; k++) {
            const float *restrict q = j->P + (size_t)k * nm;
            float *restrict m = j->M;
            if (r + k == 0)
                for (size_t i = (size_t)l0 * 16; i < (size_t)l1 * 16; i++) m[i] = q[i];
            else
                for (size_t i = (size_t)l0 * 16; i < (size_t)l1 * 16; i++) m[i] = q[i] + m[i];
        }
        if (T > 1) {
#pragma omp barrier
        }
    }
}

static size_t whole_lines(size_t floats) { return (floats + 15) / 16 * 16; }

void nn_wino_dw(float *Cm, int N, float beta, const float *dout, const float *inp,
                const nn_conv_shape *s)
{
    XD_ASSERT(nn_wino_dw_takes(s) && (N == 9 * s->C || N == 9 * s->C + 1));
    const int C = s->C, OC = s->OC;
    const wino_geom g = geometry(s, 1);
    int per_chunk = DW_CHUNK_TILES / g.tiles;
    if (per_chunk < 1) per_chunk = 1;
    if (per_chunk > s->B) per_chunk = s->B;
    const int chunks = (s->B + per_chunk - 1) / per_chunk;
    const size_t rows = (size_t)per_chunk * g.tiles;
    int T = xd_threads_split(1) ? xd_threads_get() : 1;
    if (T > chunks) T = chunks;
    const size_t nm = (size_t)E * OC * C, nz = whole_lines(C > OC ? C : OC),
                 nbs = whole_lines((size_t)s->B * OC),
                 /* a thread's V, U and packed V_e */
                 nv = whole_lines(E * rows * C), nu = whole_lines(E * rows * OC),
                 nbp = whole_lines(nn_sgemm_packed_size(C, (int)rows)),
                 each = nv + nu + nbp;
    float *p = nn_thread_buf(NN_BUF_BCONV_GRID,
                             sizeof(float) * ((size_t)(1 + T) * nm + nz + nbs + (size_t)T * each));
    float *z = p + (size_t)(1 + T) * nm;
    memset(z, 0, sizeof(float) * nz);
    dw_job j = {.s = s, .g = g, .dout = dout, .inp = inp, .zero = z, .M = p, .P = p + nm,
                .bsum = z + nz, .own = z + nz + nbs, .nv = nv, .nu = nu, .nbp = nbp,
                .per_chunk = per_chunk, .chunks = chunks};
    if (T > 1) {
#pragma omp parallel num_threads(T)
        dw_run(&j, xd_thread_num(), xd_team_size());
    } else {
        dw_run(&j, 0, 1);
    }
    /* dW = G' M G, + beta * C, each output's row (ky, kx, c) */
    for (int o = 0; o < OC; o++) {
        float *row = Cm + (size_t)o * N;
        const float *m = j.M + (size_t)o * C;
        const size_t es = (size_t)OC * C;
        int c = 0;
        for (; c + VW <= C; c += VW) {
            vf v[16], y[9];
            for (int e = 0; e < E; e++) v[e] = vload(m + e * es + c);
            dw_tf_v(y, v);
            for (int k = 0; k < 9; k++) {
                float *d = row + (size_t)k * C + c;
                vstore(d, beta == 0.0f ? y[k] : y[k] + vset1(beta) * vload(d));
            }
        }
        for (; c < C; c++) {
            float v[16], y[9];
            for (int e = 0; e < E; e++) v[e] = m[e * es + c];
            nn_wino_dw_transform(y, v);
            for (int k = 0; k < 9; k++) {
                float *d = row + (size_t)k * C + c;
                *d = beta == 0.0f ? y[k] : y[k] + beta * *d;
            }
        }
        if (N > 9 * C) { /* the bias's column: the images' sums in order */
            float sum = 0.0f;
            for (int b = 0; b < s->B; b++) sum += j.bsum[(size_t)b * OC + o];
            row[9 * C] = beta == 0.0f ? sum : sum + beta * row[9 * C];
        }
    }
}
