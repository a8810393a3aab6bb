/* Winograd F(2x2, 3x3) convolutions in bf16 for evaluation forwards (see conv_wino.h).
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
#include "nn/mm.h"

enum { COLS = 32, E = 16 }; /* a panel's columns; transformed positions */

static int round_up(int n, int r) { return (n + r - 1) / r * r; }

/* the bf16 kernel in use is the one Winograd's products run on */
static int wino_isa(void) { return nn_bgemm_isa() == NN_BISA_AVX512BF16; }

int nn_bwino_takes(const nn_conv_shape *s)
{
    return s->winograd && nn_mm_precision() == NN_PREC_BF16 && wino_isa() && s->KH == 3 &&
           s->KW == 3 && s->stride == 1 && s->C >= 16 && s->C % 2 == 0 && s->OC >= 16;
}

const char *nn_bwino_eval_convolutions(void)
{
    /* both run on AVX512_BF16 alone (nn_bfirst_shape) */
    return wino_isa() ? "winograd F(2x2, 3x3) v1; one channel by pairs v1" : "direct";
}

/* The transforms as conv_wino.h writes them; the loops below inline them, so the bits are the
 * same wherever they run. */
static inline void input_tf(float v[16], const float d[16])
{
    float t[16]; /* B' d */
    for (int j = 0; j < 4; j++) {
        t[j] = d[j] - d[8 + j];
        t[4 + j] = d[4 + j] + d[8 + j];
        t[8 + j] = d[8 + j] - d[4 + j];
        t[12 + j] = d[4 + j] - d[12 + j];
    }
    for (int i = 0; i < 4; i++) { /* (B' d) B */
        const float *r = t + 4 * i;
        v[4 * i] = r[0] - r[2];
        v[4 * i + 1] = r[1] + r[2];
        v[4 * i + 2] = r[2] - r[1];
        v[4 * i + 3] = r[1] - r[3];
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

static inline void output_tf(float y[4], const float m[16])
{
    float s[8]; /* A' m: 2 x 4 */
    for (int j = 0; j < 4; j++) {
        s[j] = m[j] + m[4 + j] + m[8 + j];
        s[4 + j] = m[4 + j] - m[8 + j] - m[12 + j];
    }
    for (int i = 0; i < 2; i++) {
        const float *r = s + 4 * i;
        y[2 * i] = r[0] + r[1] + r[2];
        y[2 * i + 1] = r[1] - r[2] - r[3];
    }
}

void nn_bwino_input_transform(float v[16], const float d[16]) { input_tf(v, d); }
void nn_bwino_weight_transform(float u[16], const float g[9]) { weight_tf(u, g); }
void nn_bwino_output_transform(float y[4], const float m[16]) { output_tf(y, m); }

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
    for (; c + 16 <= C; c += 16) { /* 8 words of pairs per position */
        __m512 d[16], t[16];
        for (int i = 0; i < 16; i++) d[i] = _mm512_loadu_ps(src[i] + c);
        for (int j = 0; j < 4; j++) { /* as input_tf */
            t[j] = _mm512_sub_ps(d[j], d[8 + j]);
            t[4 + j] = _mm512_add_ps(d[4 + j], d[8 + j]);
            t[8 + j] = _mm512_sub_ps(d[8 + j], d[4 + j]);
            t[12 + j] = _mm512_sub_ps(d[4 + j], d[12 + j]);
        }
        for (int i = 0; i < 4; i++) {
            const __m512 *r = t + 4 * i;
            d[4 * i] = _mm512_sub_ps(r[0], r[2]);
            d[4 * i + 1] = _mm512_add_ps(r[1], r[2]);
            d[4 * i + 2] = _mm512_sub_ps(r[2], r[1]);
            d[4 * i + 3] = _mm512_sub_ps(r[1], r[3]);
        }
        store_halves(v + c / 2, ldv, d);
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

/* The 2 x 2 max pool of a tile's ReLUs as nn_relu_maxpool_image computes it: each value's ReLU
 * (x > 0 ? x : 0, so NaN gives 0), and the largest in the window's order */
static inline float relu_pool(const float y[4])
{
    float best = y[0] > 0.0f ? y[0] : 0.0f;
    for (int i = 1; i < 4; i++) {
        const float v = y[i] > 0.0f ? y[i] : 0.0f;
        best = v > best ? v : best;
    }
    return best;
}

void nn_bwino_output_tile(float *const dst[4], float *pooled, const float *m, size_t estride,
                          const float *bias, int OC)
{
    int n = 0;
#if defined(__AVX512F__)
    for (; n < OC; n += 16) {
        const __mmask16 k = OC - n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (OC - n)) - 1);
        __m512 v[16], s[8];
        for (int e = 0; e < E; e++) v[e] = _mm512_maskz_loadu_ps(k, m + (size_t)e * estride + n);
        for (int j = 0; j < 4; j++) { /* as output_tf */
            s[j] = _mm512_add_ps(_mm512_add_ps(v[j], v[4 + j]), v[8 + j]);
            s[4 + j] = _mm512_sub_ps(_mm512_sub_ps(v[4 + j], v[8 + j]), v[12 + j]);
        }
        const __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + n) : _mm512_setzero_ps();
        for (int i = 0; i < 2; i++) {
            const __m512 *r = s + 4 * i;
            __m512 y0 = _mm512_add_ps(_mm512_add_ps(r[0], r[1]), r[2]);
            __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(r[1], r[2]), r[3]);
            if (bias) {
                y0 = _mm512_add_ps(y0, b);
                y1 = _mm512_add_ps(y1, b);
            }
            _mm512_mask_storeu_ps(dst[2 * i] + n, k, y0);
            _mm512_mask_storeu_ps(dst[2 * i + 1] + n, k, y1);
            s[2 * i] = y0;
            s[2 * i + 1] = y1;
        }
        if (pooled) { /* as relu_pool: the ReLUs (NaN to 0), then the maximum in window order */
            const __m512 zero = _mm512_setzero_ps();
            __m512 best = _mm512_max_ps(s[0], zero);
            for (int i = 1; i < 4; i++) best = _mm512_max_ps(_mm512_max_ps(s[i], zero), best);
            _mm512_mask_storeu_ps(pooled + n, k, best);
        }
    }
#endif
    for (; n < OC; n++) {
        float v[16], y[4];
        for (int e = 0; e < E; e++) v[e] = m[(size_t)e * estride + n];
        output_tf(y, v);
        for (int k = 0; k < 4; k++) y[k] = dst[k][n] = bias ? y[k] + bias[n] : y[k];
        if (pooled) pooled[n] = relu_pool(y);
    }
}

typedef struct {
    int TH, TW, tiles; /* tiles down, across, in all */
    int cp;            /* pairs of input channels */
    int ldm;           /* M's rows, floats apart: OC rounded up to a panel */
} wino_geom;

static wino_geom geometry(const nn_conv_shape *s)
{
    const int TH = (s->OH + 1) / 2, TW = (s->OW + 1) / 2;
    return (wino_geom){TH, TW, TH * TW, s->C / 2, round_up(s->OC, COLS)};
}

size_t nn_bwino_packed_size(const nn_conv_shape *s)
{
    const wino_geom g = geometry(s);
    return (size_t)E * g.ldm * g.cp;
}

void nn_bwino_pack(uint32_t *wpk, const float *w, const nn_conv_shape *s)
{
    const wino_geom geo = geometry(s);
    const int cp = geo.cp, ldm = geo.ldm;
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

/* Images per round: their tiles make the rows of one product (two 7 x 7 images, 98 rows: seven
 * tiles of 14, whose rows the tile reads at a constant distance, its fastest case). Two where
 * both images' V and M fit in GROUP_BYTES (half a 1 MiB L2), else one. */
enum { GROUP = 2 };
#define GROUP_BYTES ((size_t)512 << 10)

static int group_of(const wino_geom *g)
{
    const size_t per_image = sizeof(float) * (size_t)E * g->tiles * ((size_t)g->cp + g->ldm);
    return GROUP * per_image <= GROUP_BYTES ? GROUP : 1;
}

/* The thread's scratch for a round: V (E blocks of group_of * tiles rows of cp words), M (as
 * many rows of ldm floats), a row of ldm floats where outputs past the edge go and a row of C
 * zeros (the padding). */
typedef struct {
    uint32_t *V;
    float *M, *past, *zero;
    size_t rows; /* of each e's block */
} wino_scratch;

static wino_scratch scratch(const wino_geom *g, int C)
{
    const size_t rows = (size_t)group_of(g) * g->tiles;
    const size_t nv = (E * rows * g->cp + 15) / 16 * 16, nm = E * rows * g->ldm;
    char *p = nn_thread_buf(NN_BUF_BCONV_GRID,
                            sizeof(float) * (nv + nm + (size_t)g->ldm + (size_t)C));
    wino_scratch w = {(uint32_t *)p, (float *)(p + sizeof(float) * nv), NULL, NULL, rows};
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
            const size_t r = r0 + (size_t)ty * g->TW + tx;
            nn_bwino_input_tile(ws->V + r * g->cp, ws->rows * g->cp, src, s->C);
        }
}

/* M_e = V_e U_e over rows 0..n for every e, in tiles of NN_BTILE_ROWS rows and one of the rest */
static void products(const wino_scratch *ws, int n, const uint32_t *wpk, const nn_conv_shape *s,
                     const wino_geom *g)
{
    static const size_t zero_off = 0;
    const nn_btile_seg seg = {1,  g->cp, &zero_off, &zero_off, (size_t)g->cp, COLS, 16,
                              (size_t)g->ldm, 0, NULL, 0};
    for (int e = 0; e < E; e++)
        for (int r0 = 0; r0 < n; r0 += NN_BTILE_ROWS) {
            const int mr = n - r0 < NN_BTILE_ROWS ? n - r0 : NN_BTILE_ROWS;
            const uint32_t *a = ws->V + ((size_t)e * ws->rows + r0) * g->cp;
            float *m = ws->M + ((size_t)e * ws->rows + r0) * g->ldm;
            for (int j0 = 0; j0 < s->OC; j0 += COLS) {
                const int nr = s->OC - j0 < COLS ? s->OC - j0 : COLS;
                nn_btile_segments(mr, nr, a, wpk + ((size_t)e * g->ldm + j0) * g->cp, &seg,
                                  m + j0);
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
    const uint32_t *wpk;
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

void nn_bwino_forward(float *out, const float *inp, const float *w, const uint32_t *wpk,
                      const float *b, const nn_conv_shape *s, void (*image)(void *, int),
                      void *image_ctx, const nn_relu_pool *pool)
{
    XD_ASSERT(s->KH == 3 && s->KW == 3 && s->stride == 1 && s->C % 2 == 0 &&
              (b != NULL) == (s->bias != 0) && (!pool || nn_bwino_pools(s, pool)));
    const wino_geom g = geometry(s);
    uint32_t *own = NULL;
    if (!wpk) {
        own = xd_xmalloc_aligned(sizeof(uint32_t) * nn_bwino_packed_size(s));
        nn_bwino_pack(own, w, s);
    }
    int T = xd_threads_split(s->B > 1) ? xd_threads_get() : 1;
    if (T > s->B) T = s->B;
    wino_job job = {.s = s, .g = &g, .inp = inp, .bias = b, .wpk = wpk ? wpk : own, .out = out,
                    .T = T, .image = image, .image_ctx = image_ctx, .pool = pool};
    xd_threads_each(T, wino_run, &job);
    free(own);
}
