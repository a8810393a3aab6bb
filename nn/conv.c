/* The convolution layer (see layers.h for the conventions): unfolding and folding back, the
 * direct forms that read the windows in place, and the convolution followed by ReLU and max pool,
 * which runs the pool (nn/pool.c) on each image as its rows come out of the product. Products go
 * to our kernel (nn/gemm.h), in bf16 (nn/gemm_bf16.h) while a model that trains in bf16 runs
 * them, except those with weights packed for inference. The weight gradient's product is in
 * nn/conv_dw.c. */
#include "nn/layers.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/mem.h"
#include "core/runtime.h"
#include "core/status.h"
#include "nn/conv_bf16.h"
#include "nn/conv_bfirst.h"
#include "nn/conv_internal.h"
#include "nn/conv_wino.h"
#include "nn/gemm.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
// ----------------------------------------------------------------------------------------------
// conv2d

int nn_conv_shape_init(nn_conv_shape *s)
{
    if (s->B <= 0 || s->H <= 0 || s->W <= 0 || s->C <= 0 || s->OC <= 0 || s->KH <= 0 ||
        s->KW <= 0 || s->stride <= 0 || s->pad < 0)
        return -1;
    /* The padded extent must fit an int: then so does every index im2col forms
     * (ox * stride - pad + kx lies in [-pad, W + pad)). */
    int64_t ph = (int64_t)s->H + 2 * (int64_t)s->pad, pw = (int64_t)s->W + 2 * (int64_t)s->pad;
    if (ph > INT_MAX || pw > INT_MAX || ph < s->KH || pw < s->KW) return -1;
    s->OH = (int)(ph - s->KH) / s->stride + 1;
    s->OW = (int)(pw - s->KW) / s->stride + 1;
    return 0;
}

static int conv_is_pointwise(const nn_conv_shape *s)
{
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

int nn_precision_of_conv(const nn_conv_shape *s, int p)
{
    return p == NN_PREC_BF16 && !conv_is_pointwise(s) && s->C < NN_CONV_BF16_MIN_C &&
                   !nn_bfirst_shape(s)
               ? NN_PREC_FLOAT32
               : p;
}

size_t nn_conv_cols_size(const nn_conv_shape *s)
{
    if (conv_is_pointwise(s)) return 0;
    return (size_t)s->B * s->OH * s->OW * ((size_t)s->KH * s->KW * s->C + (s->bias ? 1 : 0));
}

size_t nn_conv_wext_size(const nn_conv_shape *s)
{
    if (conv_is_pointwise(s) || !s->bias) return 0;
    return (size_t)s->OC * ((size_t)s->KH * s->KW * s->C + 1);
}

/* dst[0..n] = src[0..n]: a window's run of a few values (3 floats for a 3 x 3 window on one
 * channel), one masked load and store where AVX-512 has them, instead of a call or a loop */
static inline void copy_floats(float *restrict dst, const float *restrict src, int n)
{
#if defined(__AVX512F__)
    if (n <= 16) {
        const __mmask16 k = (__mmask16)((1u << n) - 1u);
        _mm512_mask_storeu_ps(dst, k, _mm512_maskz_loadu_ps(k, src));
        return;
    }
#endif
    memcpy(dst, src, sizeof(float) * (size_t)n);
}

/* Columns j0..j1 of the row of cols of output pixel (oy, ox) of image img, to dst[0..j1-j0]. The
 * row is laid out (ky, kx, c) to match w's (OC, KH, KW, C), then the bias column's 1. For a fixed
 * ky the window's pixels are neighbours in memory, so each ky is one copy of the in-range part
 * (kx0..kx1) and zeros for what hangs over the edge. */
static void im2col_row(float *restrict dst, const float *restrict img, const nn_conv_shape *s,
                       int oy, int ox, int j0, int j1)
{
    const int C = s->C, KWC = s->KW * C, K = s->KH * KWC, x0 = ox * s->stride - s->pad;
    const int y0 = oy * s->stride - s->pad;
    if (j0 == 0 && j1 >= K && x0 >= 0 && x0 + s->KW <= s->W && y0 >= 0 && y0 + s->KH <= s->H) {
        /* the whole row of a window inside the image: KH runs of KW * C values */
        for (int ky = 0; ky < s->KH; ky++)
            copy_floats(dst + ky * KWC, img + ((size_t)(y0 + ky) * s->W + x0) * C, KWC);
        if (j1 > K) dst[K] = 1.0f;
        return;
    }
    const int kx0 = x0 < 0 ? -x0 : 0;
    int kx1 = s->W - x0 < s->KW ? s->W - x0 : s->KW;
    if (kx1 < kx0) kx1 = kx0;
    for (int ky = j0 / KWC; ky < s->KH && ky * KWC < j1; ky++) {
        const int iy = oy * s->stride - s->pad + ky, at = ky * KWC - j0; /* dst of (ky, t): at + t */
        const int t0 = j0 > ky * KWC ? j0 - ky * KWC : 0, t1 = j1 - ky * KWC < KWC ? j1 - ky * KWC : KWC;
        int lo = t1, hi = t1; /* the part [lo, hi) read from the image */
        const float *src = img; /* (ky, t) at src[t - kx0 * C] */
        if (iy >= 0 && iy < s->H) {
            lo = kx0 * C < t0 ? t0 : kx0 * C > t1 ? t1 : kx0 * C;
            hi = kx1 * C < lo ? lo : kx1 * C > t1 ? t1 : kx1 * C;
            src = img + ((size_t)iy * s->W + x0 + kx0) * C;
        }
        for (int t = t0; t < lo; t++) dst[at + t] = 0.0f;
        for (int t = lo; t < hi; t++) dst[at + t] = src[t - kx0 * C];
        for (int t = hi; t < t1; t++) dst[at + t] = 0.0f;
    }
    if (s->bias && j0 <= K && K < j1) dst[K - j0] = 1.0f;
}

/* Rows r0..r1, columns j0..j1 of cols (the whole batch's unfolded windows, nn_im2col) into dst,
 * row r at dst + (r - r0) * ld. */
static void unfold_rows(float *dst, size_t ld, const float *inp, const nn_conv_shape *s, int r0,
                        int r1, int j0, int j1)
{
    int b = r0 / (s->OH * s->OW), oy = r0 / s->OW % s->OH, ox = r0 % s->OW;
    for (int m = r0; m < r1; m++, dst += ld) {
        im2col_row(dst, inp + (size_t)b * s->H * s->W * s->C, s, oy, ox, j0, j1);
        if (++ox == s->OW) {
            ox = 0;
            if (++oy == s->OH) {
                oy = 0;
                b++;
            }
        }
    }
}

static int cols_width(const nn_conv_shape *s) { return s->KH * s->KW * s->C + (s->bias ? 1 : 0); }

void nn_im2col(float *cols, const float *inp, const nn_conv_shape *s)
{
    const int ld = cols_width(s), P = s->OH * s->OW;
#pragma omp parallel for
    for (int b = 0; b < s->B; b++)
        unfold_rows(cols + (size_t)b * P * ld, (size_t)ld, inp, s, b * P, (b + 1) * P, 0, ld);
}

/* Rows r0..r1 of cols, as nn_im2col makes them; used block by block just before the product
 * that reads them (nn_sgemm_rows). */
typedef struct {
    float *cols;
    const float *inp;
    const nn_conv_shape *s;
} im2col_job;

static void im2col_rows(void *p, int r0, int r1)
{
    const im2col_job *job = p;
    const int ld = cols_width(job->s);
    unfold_rows(job->cols + (size_t)r0 * ld, (size_t)ld, job->inp, job->s, r0, r1, 0, ld);
}

/* Scatter-add of image b's rows of dcols back onto the image. first: the image is zeroed just
 * before, while it is in cache (see nn_relu_backward_first). */
static void col2im_image(float *dinp, const float *rows, const nn_conv_shape *s, int b, int first)
{
    const int K = s->KH * s->KW * s->C, C = s->C;
    float *img = dinp + (size_t)b * s->H * s->W * C;
    if (first) memset(img, 0, sizeof(float) * s->H * s->W * C);
    for (int oy = 0; oy < s->OH; oy++)
        for (int ox = 0; ox < s->OW; ox++) {
            const float *row = rows + ((size_t)oy * s->OW + ox) * K;
            int x0 = ox * s->stride - s->pad;
            int kx0 = x0 < 0 ? -x0 : 0, kx1 = s->W - x0 < s->KW ? s->W - x0 : s->KW;
            for (int ky = 0; ky < s->KH; ky++) {
                int iy = oy * s->stride - s->pad + ky;
                if (iy < 0 || iy >= s->H || kx1 <= kx0) continue;
                const float *src = row + ((size_t)ky * s->KW + kx0) * C;
                float *dst = img + ((size_t)iy * s->W + x0 + kx0) * C;
                for (int j = 0; j < (kx1 - kx0) * C; j++) dst[j] += src[j];
            }
        }
}

/* Image b's rows of the batch's dcols */
static const float *image_rows(const float *dcols, const nn_conv_shape *s, int b)
{
    return dcols + (size_t)b * s->OH * s->OW * s->KH * s->KW * s->C;
}

/* A product whose rows of C are images of P rows each, with work per image as soon as its rows
 * are final: by the thread of the row block that holds the whole image, while the rows are in
 * cache, or after the product for an image cut by a block boundary. Each image is handled by one
 * thread, the same way either way, so no result depends on where it was done. rows (or NULL)
 * fills rows r0..r1 of A just before their product (nn_sgemm_rows). */
typedef struct {
    void (*image)(void *ctx, int b);
    void *image_ctx;
    nn_sgemm_rows_fn rows;
    void *rows_ctx;
    int P;
} image_job;

static void image_job_rows(void *p, int r0, int r1)
{
    const image_job *j = p;
    j->rows(j->rows_ctx, r0, r1);
}

static void image_job_whole(void *p, int r0, int r1)
{
    const image_job *j = p;
    for (int b = (r0 + j->P - 1) / j->P; b < r1 / j->P; b++) j->image(j->image_ctx, b);
}

/* C (M, N) = op(A) (M, K) @ op(B) (K, N), as nn_sgemm, with the job's work around it */
static void sgemm_images(int trans_b, int M, int N, int K, const float *A, int lda,
                         const float *B, int ldb, const float *Bp, float *C, int ldc,
                         image_job *j)
{
    nn_mm_rows(0, trans_b, M, N, K, 1.0f, A, lda, B, ldb, Bp, 0.0f, C, ldc,
               j->rows ? image_job_rows : NULL, j->image ? image_job_whole : NULL, j);
    if (!j->image) return;
    const int nb = nn_sgemm_row_blocks(M, N, K);
    int cut[64], n_cut = 0;
    XD_ASSERT(nb <= (int)(sizeof cut / sizeof cut[0]));
    for (int i = 1; i < nb; i++) {
        int r0, r1;
        nn_sgemm_block_range(M, nb, i, &r0, &r1);
        if (r0 % j->P && (n_cut == 0 || cut[n_cut - 1] != r0 / j->P)) cut[n_cut++] = r0 / j->P;
    }
#pragma omp parallel for if (n_cut > 1)
    for (int i = 0; i < n_cut; i++) j->image(j->image_ctx, cut[i]);
}

typedef struct {
    float *dinp;
    const float *dcols;
    const nn_conv_shape *s;
    int first;
} col2im_job;

static void col2im_job_image(void *p, int b)
{
    const col2im_job *j = p;
    col2im_image(j->dinp, image_rows(j->dcols, j->s, b), j->s, b, j->first);
}

/* Floats of scratch per image the direct convolution needs: the zero-padded image, then the ones
 * its bias column reads (one per row of an output row); for bf16's first convolution (first),
 * the image's pairs */
static size_t conv_direct_scratch(const nn_conv_shape *s, int first)
{
    if (first) return nn_bfirst_scratch(s);
    return (size_t)(s->H + 2 * s->pad) * (s->W + 2 * s->pad) * s->C +
           (size_t)(s->OW - 1) * s->stride * s->C + 1;
}

/* Images b0..b1 of the convolution with packed weights, on the calling thread, their windows read
 * in place from a zero-padded copy of each image (pad_image, into scratch) instead of unfolded
 * into cols: element (ox, k) of output row oy lies at P[(oy * stride * Wp + ox * stride) * C +
 * koff[k]], and the bias column reads ones laid after the image. The same values in the same
 * order as the unfolded rows, so the same bits, without writing and reading K floats per output
 * pixel. The offsets and the ones are for the gathering kernel alone (the few-channel one reads
 * the windows and the bias itself), set up once for all the images. The sizes are copied out of
 * s first, as in pad_image. wpb (packed by nn_bfirst_pack), not wp: bf16's first convolution
 * (nn/conv_bfirst.h), each image rounded into its pairs instead of padded, bias its bias. */
static void conv2d_direct_images(float *out, float *scratch, const float *inp, const float *wp,
                                 const uint32_t *wpb, const float *bias,
                                 const nn_conv_shape *s, int b0, int b1,
                                 void (*image)(void *, int), void *image_ctx,
                                 const nn_relu_pool *pool_only, int add)
{
    const int C = s->C, H = s->H, W = s->W, pad = s->pad, KH = s->KH, KW = s->KW, OC = s->OC;
    const int OH = s->OH, OW = s->OW, Wp = W + 2 * pad, K = KH * KW * C, nk = K + !!s->bias;
    const size_t n_img = (size_t)(H + 2 * pad) * Wp * C, si = (size_t)s->stride * C;
    const size_t rp = (size_t)Wp * C; /* a padded row */
    float *P = scratch;
    /* pool_only, or add: each image's rows go after the padded image and its ones, and are pooled
     * there, or added from there to what out holds */
    float *mine = pool_only || add ? scratch + conv_direct_scratch(s, wpb != NULL) : NULL;
    const int row_kernel = s->stride == 1 && nn_sgemm_conv_row_takes(OW, OC, C, KH, KW);
    int *koff = row_kernel || wpb ? NULL : xd_xmalloc(sizeof(int) * (size_t)nk);
    if (koff) {
        float *ones = scratch + n_img;
        for (size_t i = 0; i <= (size_t)(OW - 1) * si; i++) ones[i] = 1.0f;
        window_offsets(koff, s);
    }
    /* pooled row by row, as soon as the rows under a pool row's windows are out (in the L1
     * cache still), where the ReLU is not written (see nn_relu_maxpool_rows_at) */
    const nn_pool_shape *ps = pool_only && !pool_only->relu_out ? pool_only->s : NULL;
    /* bf16's first convolution pools its windows as it makes them (the rows are not kept) */
    const int pooled_rows = wpb && nn_bfirst_pools(s, pool_only);
    for (int b = b0; b < b1; b++) {
        if (wpb) nn_bfirst_image(P, inp, s, b);
        else pad_image(P, inp, s, b);
        if (pooled_rows) {
            for (int py = 0; py < ps->OH; py++)
                nn_bfirst_pooled_row(pool_only->out + ((size_t)b * ps->OH + py) * ps->OW * OC, P,
                                     wpb, bias, s, 2 * py);
            continue;
        }
        for (int oy = 0, pooled = 0; oy < OH; oy++) {
            const float *A = P + (size_t)oy * s->stride * rp;
            float *o = (mine ? mine : out + (size_t)b * OH * OW * OC) + (size_t)oy * OW * OC;
            if (wpb) {
                nn_bfirst_row(o, P, wpb, bias, s, oy);
            } else if (row_kernel) { /* few input channels: each value reused over its windows */
                nn_sgemm_conv_row(OW, OC, C, KH, KW, A, rp, s->bias, wp, o, OC);
            } else {
                if (s->bias) koff[K] = (int)(scratch + n_img - A);
                nn_sgemm_gather(OW, OC, nk, A, (int)si, koff, wp, o, OC);
            }
            const int done = ps && oy + 1 >= ps->k ? (oy + 1 - ps->k) / ps->stride + 1 : 0;
            if (done > pooled) { /* ps->H is OH: the last row ends the pool's last */
                nn_relu_maxpool_rows_at(pool_only, b, mine, pooled, done);
                pooled = done;
            }
        }
        if (pool_only && !ps) {
            nn_relu_maxpool_image_at(pool_only, b, mine);
        } else if (add) {
            float *o = out + (size_t)b * OH * OW * OC;
            for (size_t j = 0; j < (size_t)OH * OW * OC; j++) o[j] += mine[j];
        }
        if (image) image(image_ctx, b);
    }
    free(koff);
}

/* conv2d_direct_images on thread t's run of images of T, its scratch share floats of scratch */
typedef struct {
    float *out, *scratch;
    size_t share;
    const float *inp, *wp;
    const uint32_t *wpb; /* conv2d_direct_images' */
    const float *bias;
    const nn_conv_shape *s;
    int T, add;
    void (*image)(void *, int);
    void *image_ctx;
    const nn_relu_pool *pool_only;
} direct_job;

static void direct_run(void *ctx, int t)
{
    const direct_job *j = ctx;
    int b0, b1;
    nn_sgemm_block_range(j->s->B, j->T, t, &b0, &b1);
    conv2d_direct_images(j->out, j->scratch + (size_t)t * j->share, j->inp, j->wp, j->wpb,
                         j->bias, j->s, b0, b1,
                         j->image, j->image_ctx, j->pool_only, j->add);
}

/* The input gradient of a stride-1 convolution with square windows is a forward convolution of
 * the output gradient, zero-padded by KH - 1 - pad, with the turned kernel: dinp[iy][ix][c] = the
 * sum over (ky, kx, o) of dpad[iy + ky][ix + kx][o] w[o][KH - 1 - ky][KW - 1 - kx][c]. It runs
 * as the forward does (conv2d_direct_images), its windows, K = KH KW OC long, read in place from
 * a padded copy of each image's output gradient, instead of a product with K = OC into dcols
 * whose rows are then folded back onto the image. Taken in float32; its scratch is dcols, or
 * its own where dcols is too small for the turned weights packed and a thread's images. Where
 * s->winograd and dinp is written (not added into), the turned convolution is Winograd's
 * (nn_wino_forward; BENCHMARKS.md measures it). */
static nn_conv_shape turned_shape(const nn_conv_shape *s)
{
    nn_conv_shape d = {.B = s->B, .H = s->OH, .W = s->OW, .C = s->OC, .OC = s->C, .KH = s->KH,
                       .KW = s->KW, .stride = 1, .pad = s->KH - 1 - s->pad};
    const int bad = nn_conv_shape_init(&d);
    XD_ASSERT(!bad && d.OH == s->H && d.OW == s->W);
    return d;
}

static int dinp_turned_takes(const nn_conv_shape *s)
{
    if (nn_mm_precision() != NN_PREC_FLOAT32 || s->stride != 1 || s->KH != s->KW ||
        s->pad > s->KH - 1)
        return 0;
    const nn_conv_shape d = turned_shape(s);
    return conv_direct_scratch(&d, 0) < INT_MAX;
}

static void conv2d_dinp_turned(float *dinp, float *dcols, size_t room, const float *dout,
                               const float *w, const nn_conv_shape *s, int first, int T)
{
    const nn_conv_shape d = turned_shape(s);
    const int C = s->C, OC = s->OC, KH = s->KH, KW = s->KW, K = KH * KW * OC;
    /* scratch: the packed turned weights, then each thread's padded image and image of dinp,
     * where the turned weights lie unpacked until they are packed */
    const size_t packed = nn_conv_packed_size(&d);
    const size_t share = conv_direct_scratch(&d, 0) + (size_t)d.OH * d.OW * d.OC;
    const size_t shares = (size_t)T * share, turned = (size_t)C * K;
    /* Winograd's where the forward may run it (s->winograd) and takes the turned shape, when
     * dinp is written, not added to (its forward writes its output); its scratch: the turned
     * weights, then their transforms packed */
    nn_conv_shape dwino = d;
    dwino.winograd = s->winograd;
    const int wino = first && nn_wino_takes(&dwino);
    const size_t at = (turned + 15) / 16 * 16; /* the transforms' place, on a whole line */
    const size_t need = wino ? at + nn_wino_packed_size(&dwino)
                             : packed + (shares > turned ? shares : turned);
    float *own = need > room ? xd_xmalloc_aligned(sizeof(float) * need) : NULL;
    if (own) dcols = own;
    /* the turned weights, (C, KH KW OC): row c's (ky, kx, o) is
     * w[o][KH - 1 - ky][KW - 1 - kx][c] */
    float *wt = wino ? dcols : dcols + packed;
    for (int ky = 0, k = 0; ky < KH; ky++)
        for (int kx = 0; kx < KW; kx++)
            for (int o = 0; o < OC; o++, k++) {
                const float *src = w + (((size_t)o * KH + (KH - 1 - ky)) * KW + (KW - 1 - kx)) * C;
                for (int c = 0; c < C; c++) wt[(size_t)c * K + k] = src[c];
            }
    if (wino) {
        nn_wino_pack(wt + at, wt, &dwino);
        nn_wino_forward(dinp, dout, wt, wt + at, NULL, &dwino, NULL, NULL, NULL);
        free(own);
        return;
    }
    nn_conv_pack(dcols, NULL, wt, NULL, &d);
    direct_job job = {.out = dinp, .scratch = dcols + packed, .share = share, .inp = dout,
                      .wp = dcols, .s = &d, .T = T, .add = !first};
    xd_threads_each(T, direct_run, &job);
    free(own);
}

/* The input gradient: in bf16 (AMX, AVX512_BF16 or AVX2) nn_bconv_dinp; in float32 at stride 1 the
 * turned kernel (conv2d_dinp_turned); else dcols (M, K) = dout (M, OC) @ w (OC, K), folded back
 * onto dinp image by image as its rows come out of the product. In float32, where dcols has the
 * room, image by image: w packed once, each image's rows into its thread's part of dcols and
 * folded back from there, in cache, instead of the whole batch's rows written to memory and read
 * back (the same products and sums, so the same bits). */
static void conv2d_dinp(float *dinp, float *dcols, const float *dout, const float *w,
                        const nn_conv_shape *s, int first)
{
    if (nn_bconv_dinp_takes(s)) { /* bf16: no dcols, no folding back */
        nn_bconv_dinp(dinp, dout, w, s, first);
        return;
    }
    const int M = s->B * s->OH * s->OW, K = s->KH * s->KW * s->C, P = s->OH * s->OW;
    int T = xd_threads_split(s->B > 1) ? xd_threads_get() : 1;
    if (T > s->B) T = s->B;
    if (dinp_turned_takes(s)) {
        conv2d_dinp_turned(dinp, dcols, (size_t)M * K, dout, w, s, first, T);
        return;
    }
    const size_t packed = nn_sgemm_packed_size(K, s->OC), per = (size_t)P * K;
    if (nn_mm_precision() == NN_PREC_FLOAT32 && packed + (size_t)T * per <= (size_t)M * K) {
        nn_sgemm_pack_b(0, K, s->OC, w, K, dcols);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
        for (int b = 0; b < s->B; b++) {
            float *rows = dcols + packed + (size_t)xd_thread_num() * per;
            nn_sgemm_packed_serial(0, P, K, s->OC, 1.0f, dout + (size_t)b * P * s->OC, s->OC,
                                   dcols, 0.0f, rows, K);
            col2im_image(dinp, rows, s, b, first);
        }
        return;
    }
    col2im_job c = {dinp, dcols, s, first};
    image_job job = {col2im_job_image, &c, NULL, NULL, s->OH * s->OW};
    sgemm_images(0, M, K, s->OC, dout, s->OC, w, K, NULL, dcols, K, &job);
}

/* Parallel over images, since windows of one image overlap each other but never another
 * image's pixels. */
void nn_col2im(float *dinp, const float *dcols, const nn_conv_shape *s)
{
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) col2im_image(dinp, image_rows(dcols, s, b), s, b, 0);
}

size_t nn_conv_packed_size(const nn_conv_shape *s)
{
    return nn_sgemm_packed_size(s->OC, s->KH * s->KW * s->C + (s->bias && !conv_is_pointwise(s)));
}

/* The operand the forward product reads: w, or [w | b] when the bias is a column of it */
void nn_conv_pack(float *wp, float *wext, const float *w, const float *b, const nn_conv_shape *s)
{
    const int K = s->KH * s->KW * s->C;
    if (!s->bias || conv_is_pointwise(s)) {
        nn_sgemm_pack_b(1, s->OC, K, w, K, wp);
        return;
    }
    for (int o = 0; o < s->OC; o++) {
        memcpy(wext + (size_t)o * (K + 1), w + (size_t)o * K, sizeof(float) * K);
        wext[(size_t)o * (K + 1) + K] = b[o];
    }
    nn_sgemm_pack_b(1, s->OC, K + 1, wext, K + 1, wp);
}

/* image: work on each image of out once its rows are final (see image_job), or NULL; wp: the
 * weights packed by nn_conv_pack, or NULL. pool_only (or NULL): the relu and max pool that image
 * runs, when nothing else reads out: where the windows are read in place and cols has the room,
 * each image's rows are then pooled from a thread's scratch instead of written to out, and
 * *written (or NULL) says 0. Returns whether cols hold the unfolded windows (backward's
 * `unfolded`). */
static int conv2d_forward(float *out, float *cols, float *wext, const float *inp, const float *w,
                           const float *wp, const uint32_t *wpb, const float *b,
                           const nn_conv_shape *s, void (*image)(void *, int), void *image_ctx,
                           const nn_relu_pool *pool_only, int *written)
{
    if (written) *written = 1;
    XD_ASSERT((b != NULL) == (s->bias != 0));
    const int M = s->B * s->OH * s->OW, K = s->KH * s->KW * s->C;
    if (conv_is_pointwise(s)) {
        nn_linear_forward(out, inp, w, wp, b, M, K, s->OC);
        if (image) {
#pragma omp parallel for
            for (int i = 0; i < s->B; i++) image(image_ctx, i);
        }
        return 1; /* nothing to unfold: backward reads inp */
    }
    if ((wpb || !wp) && nn_bwino_takes(s)) { /* bf16, an evaluation forward: Winograd's */
        nn_bwino_forward(out, inp, w, wpb, b, s, image, image_ctx, NULL);
        return 0;
    }
    if (nn_wino_takes(s)) { /* float32, an evaluation forward: Winograd's */
        nn_wino_forward(out, inp, w, (const float *)(const void *)wpb, b, s, image, image_ctx,
                        NULL);
        return 0;
    }
    if ((wpb || !wp) && nn_bconv_forward_takes(s)) { /* bf16: windows read in place too */
        nn_bconv_forward(out, inp, w, wpb, b, s, image, image_ctx);
        return 0;
    }
    /* with packed weights, the windows read in place: each thread a run of images, its scratch
     * an image's share of cols; so bf16's first convolution too, on its own scratch where cols
     * has not the room, its weights packed for the call where they are not */
    const size_t per_image = (size_t)s->OH * s->OW * (K + !!s->bias);
    const int first = (wpb || !wp) && nn_bfirst_takes(s);
    if ((wp && conv_direct_scratch(s, 0) <= per_image) || first) {
        int T = xd_threads_split(s->B > 1) ? xd_threads_get() : 1;
        if (T > s->B) T = s->B;
        /* a thread's share of cols: an image's, or the padded image and one image's rows (none
         * where bf16's first convolution pools as it goes) */
        size_t share = per_image;
        const size_t pooled_share =
            conv_direct_scratch(s, first) +
            (first && nn_bfirst_pools(s, pool_only) ? 0 : (size_t)s->OH * s->OW * s->OC);
        if (pool_only && (size_t)T * pooled_share <= (size_t)s->B * per_image) {
            share = pooled_share;
            if (written) *written = 0;
        } else {
            pool_only = NULL;
        }
        float *own = first && conv_direct_scratch(s, 1) > share
                         ? xd_xmalloc(sizeof(float) * T * (share = conv_direct_scratch(s, 1)))
                         : NULL;
        uint32_t *own_wpb = first && !wpb
                                ? xd_xmalloc(sizeof(uint32_t) * nn_bfirst_packed_size(s))
                                : NULL;
        if (own_wpb) nn_bfirst_pack(own_wpb, w, s);
        direct_job job = {.out = out, .scratch = own ? own : cols, .share = share, .inp = inp,
                          .wp = wp, .wpb = first ? (own_wpb ? own_wpb : wpb) : NULL, .bias = b,
                          .s = s, .T = T, .image = pool_only ? NULL : image,
                          .image_ctx = image_ctx, .pool_only = pool_only};
        xd_threads_each(T, direct_run, &job);
        free(own);
        free(own_wpb);
        return 0;
    }
    /* each block of cols is unfolded just before its product reads it */
    im2col_job unfold = {cols, inp, s};
    image_job job = {image, image_ctx, im2col_rows, &unfold, s->OH * s->OW};
    if (!b || wp) {
        sgemm_images(1, M, s->OC, K + (b != NULL), cols, K + (b != NULL), w, K, wp, out, s->OC,
                     &job);
        return 1;
    }
    for (int o = 0; o < s->OC; o++) {
        memcpy(wext + (size_t)o * (K + 1), w + (size_t)o * K, sizeof(float) * K);
        wext[(size_t)o * (K + 1) + K] = b[o];
    }
    sgemm_images(1, M, s->OC, K + 1, cols, K + 1, wext, K + 1, NULL, out, s->OC, &job);
    return 1;
}

int nn_conv2d_forward(float *out, float *cols, float *wext, const float *inp, const float *w,
                      const float *wp, const uint32_t *wpb, const float *b,
                      const nn_conv_shape *s)
{
    return conv2d_forward(out, cols, wext, inp, w, wp, wpb, b, s, NULL, NULL, NULL, NULL);
}

/* dout, or (pg) the pool's gradient it comes from (no dinp then) */
static void conv2d_backward(float *dinp, float *dw, float *db, float *dcols, float *wext,
                            const float *dout, const nn_pool_grad *pg, float *cols, int unfolded,
                            const float *inp, const float *w, const nn_conv_shape *s, int first)
{
    const int M = s->B * s->OH * s->OW, K = s->KH * s->KW * s->C;
    if (conv_is_pointwise(s)) {
        if (first && dinp) memset(dinp, 0, sizeof(float) * M * K);
        nn_linear_backward(dinp, dw, db, dout, inp, w, M, K, s->OC);
        return;
    }
    if (s->bias) {
        /* [dw | db] (OC, K+1) = dout^T (OC, M) @ [cols | 1] (M, K+1), then added in */
        nn_conv2d_dw(wext, K + 1, 0.0f, dout, pg, cols, unfolded, inp, s);
        for (int o = 0; o < s->OC; o++) {
            const float *g = wext + (size_t)o * (K + 1);
            for (int k = 0; k < K; k++) dw[(size_t)o * K + k] += g[k];
            if (db) db[o] += g[K];
        }
    } else {
        nn_conv2d_dw(dw, K, 1.0f, dout, pg, cols, unfolded, inp, s);
    }
    if (dinp) conv2d_dinp(dinp, dcols, dout, w, s, first);
}

void nn_conv2d_backward(float *dinp, float *dw, float *db, float *dcols, float *wext,
                        const float *dout, float *cols, int unfolded, const float *inp,
                        const float *w, const nn_conv_shape *s)
{
    conv2d_backward(dinp, dw, db, dcols, wext, dout, NULL, cols, unfolded, inp, w, s, 0);
}

void nn_conv2d_backward_first(float *dinp, float *dw, float *db, float *dcols, float *wext,
                              const float *dout, float *cols, int unfolded, const float *inp,
                              const float *w, const nn_conv_shape *s)
{
    conv2d_backward(dinp, dw, db, dcols, wext, dout, NULL, cols, unfolded, inp, w, s, 1);
}

int nn_conv2d_takes_pooled(const nn_conv_shape *s, const nn_pool_shape *ps)
{
    return dw_from_image(s) && ps->k == ps->stride && ps->H == s->OH && ps->W == s->OW &&
           ps->C == s->OC && ps->B == s->B;
}

void nn_conv2d_backward_pooled(float *dw, float *db, float *wext, const nn_pool_grad *g,
                               const float *inp, const nn_conv_shape *s)
{
    XD_ASSERT(nn_conv2d_takes_pooled(s, g->ps));
    conv2d_backward(NULL, dw, db, NULL, wext, NULL, g, NULL, 0, inp, NULL, s, 0);
}

void nn_conv2d_forward_ref(float *out, const float *inp, const float *w, const float *b,
                           const nn_conv_shape *s)
{
    for (int n = 0; n < s->B; n++)
        for (int oy = 0; oy < s->OH; oy++)
            for (int ox = 0; ox < s->OW; ox++)
                for (int o = 0; o < s->OC; o++) {
                    double acc = b ? b[o] : 0.0;
                    for (int ky = 0; ky < s->KH; ky++)
                        for (int kx = 0; kx < s->KW; kx++) {
                            int iy = oy * s->stride - s->pad + ky, ix = ox * s->stride - s->pad + kx;
                            if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W) continue;
                            for (int c = 0; c < s->C; c++)
                                acc += (double)w[((o * s->KH + ky) * s->KW + kx) * s->C + c] *
                                       inp[(((size_t)n * s->H + iy) * s->W + ix) * s->C + c];
                        }
                    out[(((size_t)n * s->OH + oy) * s->OW + ox) * s->OC + o] = (float)acc;
                }
}

/* the pool of one image, once the product has finished its rows */
static void relu_pool_image(void *p, int b) { nn_relu_maxpool_image(p, b); }

int nn_conv2d_relu_maxpool_forward(float *out, float *cols, float *wext, const float *inp,
                                   const float *w, const float *wp, const uint32_t *wpb,
                                   const float *b, const nn_conv_shape *s,
                                   float *relu_out, float *pool_out, int32_t *argmax,
                                   const nn_pool_shape *ps, int keep_out, int *out_written)
{
    XD_ASSERT(ps->B == s->B && ps->H == s->OH && ps->W == s->OW && ps->C == s->OC);
    nn_relu_pool j = {relu_out, pool_out, argmax, out, ps};
    if ((wpb || !wp) && nn_bwino_takes(s) && nn_bwino_pools(s, &j)) { /* pooled tile by tile */
        nn_bwino_forward(keep_out ? out : NULL, inp, w, wpb, b, s, NULL, NULL, &j);
        if (out_written) *out_written = keep_out;
        return 0;
    }
    if (nn_wino_takes(s) && nn_bwino_pools(s, &j)) { /* float32, pooled tile by tile */
        nn_wino_forward(keep_out ? out : NULL, inp, w, (const float *)(const void *)wpb, b, s,
                        NULL, NULL, &j);
        if (out_written) *out_written = keep_out;
        return 0;
    }
    return conv2d_forward(out, cols, wext, inp, w, wp, wpb, b, s, relu_pool_image, &j,
                          keep_out ? NULL : &j, out_written);
}
