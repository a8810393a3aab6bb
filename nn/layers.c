/* Layers (see layers.h for the conventions). Products go to our kernel (nn/gemm.h), in bf16
 * (nn/gemm_bf16.h) while a model that trains in bf16 runs them, except those with weights packed
 * for inference; everything else is plain C with OpenMP over independent outputs. */
#include "nn/layers.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "core/status.h"
#include "nn/gemm.h"
#include "nn/gemm_bf16.h"

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 32768

// ----------------------------------------------------------------------------------------------
// linear

void nn_linear_forward(float *out, const float *inp, const float *w, const float *wp,
                       const float *b, int B, int C, int OC)
{
    if (b && xd_threads_split((size_t)B * OC > PAR_MIN)) {
#pragma omp parallel for
        for (int i = 0; i < B; i++) memcpy(out + (size_t)i * OC, b, sizeof(float) * OC);
    } else if (b) {
        for (int i = 0; i < B; i++) memcpy(out + (size_t)i * OC, b, sizeof(float) * OC);
    }
    if (wp) nn_sgemm_packed(0, B, OC, C, 1.0f, inp, C, wp, b ? 1.0f : 0.0f, out, OC);
    else nn_mm(0, 1, B, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

size_t nn_linear_packed_size(int C, int OC) { return nn_sgemm_packed_size(OC, C); }

void nn_linear_pack(float *wp, const float *w, int C, int OC)
{
    nn_sgemm_pack_b(1, OC, C, w, C, wp);
}

void nn_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int B, int C, int OC)
{
    if (dinp) /* dinp (B, C) += dout (B, OC) @ w (OC, C) */
        nn_mm(0, 0, B, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw) /* dw (OC, C) += dout^T (OC, B) @ inp (B, C) */
        nn_mm(1, 0, OC, C, B, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
        /* over output channels, each summing its column in row order: no shared writes */
#pragma omp parallel for if ((size_t)B * OC > PAR_MIN)
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int i = 0; i < B; i++) s += dout[(size_t)i * OC + o];
            db[o] += s;
        }
    }
}

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

/* The row of cols of output pixel (oy, ox) of image img, laid out (ky, kx, c) to match w's
 * (OC, KH, KW, C). For a fixed ky the window's pixels are neighbours in memory, so each ky is one
 * copy of the in-range part (kx0..kx1) and zeros for what hangs over the edge. */
static void im2col_row(float *restrict row, const float *restrict img, const nn_conv_shape *s,
                       int oy, int ox)
{
    const int C = s->C, K = s->KH * s->KW * C, x0 = ox * s->stride - s->pad;
    const int kx0 = x0 < 0 ? -x0 : 0;
    int kx1 = s->W - x0 < s->KW ? s->W - x0 : s->KW;
    if (kx1 < kx0) kx1 = kx0;
    for (int ky = 0; ky < s->KH; ky++) {
        const int iy = oy * s->stride - s->pad + ky;
        float *dst = row + (size_t)ky * s->KW * C;
        if (iy < 0 || iy >= s->H) {
            for (int j = 0; j < s->KW * C; j++) dst[j] = 0.0f;
            continue;
        }
        for (int j = 0; j < kx0 * C; j++) dst[j] = 0.0f;
        const float *src = img + ((size_t)iy * s->W + x0 + kx0) * C;
        for (int j = 0; j < (kx1 - kx0) * C; j++) dst[kx0 * C + j] = src[j];
        for (int j = kx1 * C; j < s->KW * C; j++) dst[j] = 0.0f;
    }
    if (s->bias) row[K] = 1.0f;
}

void nn_im2col(float *cols, const float *inp, const nn_conv_shape *s)
{
    const int ld = s->KH * s->KW * s->C + (s->bias ? 1 : 0);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < s->B; b++)
        for (int oy = 0; oy < s->OH; oy++)
            for (int ox = 0; ox < s->OW; ox++)
                im2col_row(cols + (((size_t)b * s->OH + oy) * s->OW + ox) * ld,
                           inp + (size_t)b * s->H * s->W * s->C, s, oy, ox);
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
    const nn_conv_shape *s = job->s;
    const int ld = s->KH * s->KW * s->C + (s->bias ? 1 : 0);
    int b = r0 / (s->OH * s->OW), oy = r0 / s->OW % s->OH, ox = r0 % s->OW;
    for (int m = r0; m < r1; m++) {
        im2col_row(job->cols + (size_t)m * ld, job->inp + (size_t)b * s->H * s->W * s->C, s, oy,
                   ox);
        if (++ox == s->OW) {
            ox = 0;
            if (++oy == s->OH) {
                oy = 0;
                b++;
            }
        }
    }
}

/* Scatter-add of image b's rows of dcols back onto the image. first: the image is zeroed just
 * before, while it is in cache (see nn_relu_backward_first). */
static void col2im_image(float *dinp, const float *dcols, const nn_conv_shape *s, int b, int first)
{
    const int K = s->KH * s->KW * s->C, C = s->C;
    float *img = dinp + (size_t)b * s->H * s->W * C;
    if (first) memset(img, 0, sizeof(float) * s->H * s->W * C);
    for (int oy = 0; oy < s->OH; oy++)
        for (int ox = 0; ox < s->OW; ox++) {
            const float *row = dcols + (((size_t)b * s->OH + oy) * s->OW + ox) * K;
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

/* Parallel over images, since windows of one image overlap each other but never another
 * image's pixels. */
static void col2im(float *dinp, const float *dcols, const nn_conv_shape *s, int first)
{
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) col2im_image(dinp, dcols, s, b, first);
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
    col2im_image(j->dinp, j->dcols, j->s, b, j->first);
}

/* dcols (M, K) = dout (M, OC) @ w (OC, K), folded back onto dinp image by image as its rows come
 * out of the product. */
static void conv2d_dinp(float *dinp, float *dcols, const float *dout, const float *w,
                        const nn_conv_shape *s, int first)
{
    const int M = s->B * s->OH * s->OW, K = s->KH * s->KW * s->C;
    col2im_job c = {dinp, dcols, s, first};
    image_job job = {col2im_job_image, &c, NULL, NULL, s->OH * s->OW};
    sgemm_images(0, M, K, s->OC, dout, s->OC, w, K, NULL, dcols, K, &job);
}

void nn_col2im(float *dinp, const float *dcols, const nn_conv_shape *s)
{
    col2im(dinp, dcols, s, 0);
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

/* Floats of scratch per image the direct convolution needs: the zero-padded image, then the ones
 * its bias column reads (one per row of an output row) */
static size_t conv_direct_scratch(const nn_conv_shape *s)
{
    return (size_t)(s->H + 2 * s->pad) * (s->W + 2 * s->pad) * s->C +
           (size_t)(s->OW - 1) * s->stride * s->C + 1;
}

/* One image of the convolution with packed weights, its windows read in place from a
 * zero-padded copy of the image instead of unfolded into cols: element (ox, k) of output row oy
 * lies at P[(oy * stride * Wp + ox * stride) * C + koff[k]], and the bias column reads ones laid
 * after the image. The same values in the same order as the unfolded rows, so the same bits,
 * without writing and reading K floats per output pixel. */
static void conv2d_direct_image(float *out, float *scratch, const float *inp, const float *wp,
                                const nn_conv_shape *s, int b, void (*image)(void *, int),
                                void *image_ctx)
{
    const int C = s->C, Wp = s->W + 2 * s->pad, K = s->KH * s->KW * C, nk = K + !!s->bias;
    const size_t n_img = (size_t)(s->H + 2 * s->pad) * Wp * C, si = (size_t)s->stride * C;
    float *P = scratch, *ones = scratch + n_img;
    memset(P, 0, sizeof(float) * n_img);
    for (int y = 0; y < s->H; y++)
        memcpy(P + ((size_t)(y + s->pad) * Wp + s->pad) * C,
               inp + (((size_t)b * s->H + y) * s->W) * C, sizeof(float) * s->W * C);
    for (size_t i = 0; i <= (size_t)(s->OW - 1) * si; i++) ones[i] = 1.0f;
    int *koff = xd_xmalloc(sizeof(int) * (size_t)nk);
    for (int ky = 0; ky < s->KH; ky++)
        for (int kx = 0; kx < s->KW; kx++)
            for (int c = 0; c < C; c++) koff[(ky * s->KW + kx) * C + c] = (ky * Wp + kx) * C + c;
    for (int oy = 0; oy < s->OH; oy++) {
        const float *A = P + (size_t)oy * s->stride * Wp * C;
        float *o = out + ((size_t)b * s->OH + oy) * s->OW * s->OC;
        if (s->bias) koff[K] = (int)(ones - A);
        /* few input channels: the kernel that reuses each value over the windows it is in */
        if (s->stride != 1 || !nn_sgemm_conv_row(s->OW, s->OC, C, s->KH, s->KW, A,
                                                 (size_t)Wp * C, s->bias, wp, o, s->OC))
            nn_sgemm_gather(s->OW, s->OC, nk, A, (int)si, koff, wp, o, s->OC);
    }
    free(koff);
    if (image) image(image_ctx, b);
}

/* image: work on each image of out once its rows are final (see image_job), or NULL; wp: the
 * weights packed by nn_conv_pack, or NULL */
static void conv2d_forward(float *out, float *cols, float *wext, const float *inp, const float *w,
                           const float *wp, const float *b, const nn_conv_shape *s,
                           void (*image)(void *, int), void *image_ctx)
{
    XD_ASSERT((b != NULL) == (s->bias != 0));
    const int M = s->B * s->OH * s->OW, K = s->KH * s->KW * s->C;
    if (conv_is_pointwise(s)) {
        nn_linear_forward(out, inp, w, wp, b, M, K, s->OC);
        if (image) {
#pragma omp parallel for
            for (int i = 0; i < s->B; i++) image(image_ctx, i);
        }
        return;
    }
    /* with packed weights, the windows read in place (each image's cols hold its scratch) */
    const size_t per_image = (size_t)s->OH * s->OW * (K + !!s->bias);
    if (wp && conv_direct_scratch(s) <= per_image) {
        if (xd_threads_split(s->B > 1)) {
#pragma omp parallel for
            for (int i = 0; i < s->B; i++)
                conv2d_direct_image(out, cols + (size_t)i * per_image, inp, wp, s, i, image,
                                    image_ctx);
        } else {
            for (int i = 0; i < s->B; i++)
                conv2d_direct_image(out, cols + (size_t)i * per_image, inp, wp, s, i, image,
                                    image_ctx);
        }
        return;
    }
    /* each block of cols is unfolded just before its product reads it */
    im2col_job unfold = {cols, inp, s};
    image_job job = {image, image_ctx, im2col_rows, &unfold, s->OH * s->OW};
    if (!b || wp) {
        sgemm_images(1, M, s->OC, K + (b != NULL), cols, K + (b != NULL), w, K, wp, out, s->OC,
                     &job);
        return;
    }
    for (int o = 0; o < s->OC; o++) {
        memcpy(wext + (size_t)o * (K + 1), w + (size_t)o * K, sizeof(float) * K);
        wext[(size_t)o * (K + 1) + K] = b[o];
    }
    sgemm_images(1, M, s->OC, K + 1, cols, K + 1, wext, K + 1, NULL, out, s->OC, &job);
}

void nn_conv2d_forward(float *out, float *cols, float *wext, const float *inp, const float *w,
                       const float *wp, const float *b, const nn_conv_shape *s)
{
    conv2d_forward(out, cols, wext, inp, w, wp, b, s, NULL, NULL);
}

static void conv2d_backward(float *dinp, float *dw, float *db, float *dcols, float *wext,
                            const float *dout, const float *cols, const float *inp,
                            const float *w, const nn_conv_shape *s, int first)
{
    const int M = s->B * s->OH * s->OW, K = s->KH * s->KW * s->C;
    if (conv_is_pointwise(s)) {
        if (first && dinp) memset(dinp, 0, sizeof(float) * M * K);
        nn_linear_backward(dinp, dw, db, dout, inp, w, M, K, s->OC);
        return;
    }
    if (s->bias) {
        /* [dw | db] (OC, K+1) = dout^T (OC, M) @ [cols | 1] (M, K+1), then added in */
        nn_mm(1, 0, s->OC, K + 1, M, 1.0f, dout, s->OC, cols, K + 1, 0.0f, wext, K + 1);
        for (int o = 0; o < s->OC; o++) {
            const float *g = wext + (size_t)o * (K + 1);
            for (int k = 0; k < K; k++) dw[(size_t)o * K + k] += g[k];
            if (db) db[o] += g[K];
        }
    } else {
        nn_mm(1, 0, s->OC, K, M, 1.0f, dout, s->OC, cols, K, 1.0f, dw, K);
    }
    if (dinp) conv2d_dinp(dinp, dcols, dout, w, s, first);
}

void nn_conv2d_backward(float *dinp, float *dw, float *db, float *dcols, float *wext,
                        const float *dout, const float *cols, const float *inp, const float *w,
                        const nn_conv_shape *s)
{
    conv2d_backward(dinp, dw, db, dcols, wext, dout, cols, inp, w, s, 0);
}

void nn_conv2d_backward_first(float *dinp, float *dw, float *db, float *dcols, float *wext,
                              const float *dout, const float *cols, const float *inp,
                              const float *w, const nn_conv_shape *s)
{
    conv2d_backward(dinp, dw, db, dcols, wext, dout, cols, inp, w, s, 1);
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

// ----------------------------------------------------------------------------------------------
// pooling

int nn_pool_shape_init(nn_pool_shape *s)
{
    if (s->B <= 0 || s->H <= 0 || s->W <= 0 || s->C <= 0 || s->k <= 0 || s->stride <= 0 ||
        s->k > s->H || s->k > s->W)
        return -1;
    s->OH = (s->H - s->k) / s->stride + 1;
    s->OW = (s->W - s->k) / s->stride + 1;
    return 0;
}

/* Channels are innermost, so each window position is one contiguous row of C values and the
 * comparison runs across channels (vectorisable), not across the window. Strict '>' keeps the
 * first maximum, as PyTorch does; a NaN wins and stays (v != v). */
static void maxpool_row(float *out, int32_t *argmax, const float *inp, const nn_pool_shape *s,
                        int b, int oy)
{
    const int C = s->C;
    const float *img = inp + (size_t)b * s->H * s->W * C;
    for (int ox = 0; ox < s->OW; ox++) {
        size_t o = (((size_t)b * s->OH + oy) * s->OW + ox) * C;
        float *best = out + o;
        int32_t *at = argmax + o;
        for (int ky = 0; ky < s->k; ky++)
            for (int kx = 0; kx < s->k; kx++) {
                const int32_t base = ((oy * s->stride + ky) * s->W + ox * s->stride + kx) * C;
                const float *p = img + base;
                if (ky == 0 && kx == 0) {
                    for (int c = 0; c < C; c++) {
                        best[c] = p[c];
                        at[c] = base + c;
                    }
                    continue;
                }
                for (int c = 0; c < C; c++) {
                    float v = p[c];
                    int take = (v > best[c]) | ((v != v) & (best[c] == best[c]));
                    best[c] = take ? v : best[c];
                    at[c] = take ? base + c : at[c];
                }
            }
    }
}

void nn_maxpool_forward(float *out, int32_t *argmax, const float *inp, const nn_pool_shape *s)
{
#pragma omp parallel for collapse(2)
    for (int b = 0; b < s->B; b++)
        for (int oy = 0; oy < s->OH; oy++) maxpool_row(out, argmax, inp, s, b, oy);
}

typedef struct {
    float *relu_out, *out;
    int32_t *argmax;
    const float *inp;
    const nn_pool_shape *s;
} relu_pool_job;

/* Inference, no argmax: the maximum of the ReLU over each window, straight from the input. The
 * values pooling the ReLU's output gives: no NaN survives a ReLU, so only '>' decides. */
static void relu_maxpool_plain(const relu_pool_job *j, int b)
{
    const nn_pool_shape *s = j->s;
    const int C = s->C;
    const float *img = j->inp + (size_t)b * s->H * s->W * C;
    if (s->k == 2 && s->stride == 2) { /* the usual pool: the same steps with the window unrolled */
        for (int oy = 0; oy < s->OH; oy++) {
            const float *r0 = img + (size_t)2 * oy * s->W * C, *r1 = r0 + (size_t)s->W * C;
            float *best = j->out + ((size_t)b * s->OH + oy) * s->OW * C;
            for (int ox = 0; ox < s->OW; ox++, r0 += 2 * C, r1 += 2 * C, best += C)
                for (int c = 0; c < C; c++) {
                    const float v0 = r0[c] > 0.0f ? r0[c] : 0.0f,
                                v1 = r0[C + c] > 0.0f ? r0[C + c] : 0.0f,
                                v2 = r1[c] > 0.0f ? r1[c] : 0.0f,
                                v3 = r1[C + c] > 0.0f ? r1[C + c] : 0.0f;
                    const float m1 = v1 > v0 ? v1 : v0, m2 = v2 > m1 ? v2 : m1;
                    best[c] = v3 > m2 ? v3 : m2;
                }
        }
        return;
    }
    for (int oy = 0; oy < s->OH; oy++)
        for (int ox = 0; ox < s->OW; ox++) {
            float *best = j->out + (((size_t)b * s->OH + oy) * s->OW + ox) * C;
            for (int ky = 0; ky < s->k; ky++)
                for (int kx = 0; kx < s->k; kx++) {
                    const float *p =
                        img + ((size_t)(oy * s->stride + ky) * s->W + ox * s->stride + kx) * C;
                    if (ky == 0 && kx == 0) {
                        for (int c = 0; c < C; c++) best[c] = p[c] > 0.0f ? p[c] : 0.0f;
                        continue;
                    }
                    for (int c = 0; c < C; c++) {
                        const float v = p[c] > 0.0f ? p[c] : 0.0f;
                        best[c] = v > best[c] ? v : best[c];
                    }
                }
        }
}

/* One image: its ReLU is written and then pooled while it is still in cache, instead of the pool
 * reading the whole batch back from memory. */
static void relu_pool_image(void *p, int b)
{
    const relu_pool_job *j = p;
    const size_t per_in = (size_t)j->s->H * j->s->W * j->s->C;
    const float *x = j->inp + (size_t)b * per_in;
    if (j->relu_out) {
        float *r = j->relu_out + (size_t)b * per_in;
        for (size_t i = 0; i < per_in; i++) r[i] = x[i] > 0.0f ? x[i] : 0.0f;
    }
    if (!j->argmax) {
        relu_maxpool_plain(j, b);
        return;
    }
    for (int oy = 0; oy < j->s->OH; oy++) maxpool_row(j->out, j->argmax, j->relu_out, j->s, b, oy);
}

void nn_relu_maxpool_forward(float *relu_out, float *out, int32_t *argmax, const float *inp,
                             const nn_pool_shape *s)
{
    relu_pool_job j = {relu_out, out, argmax, inp, s};
    if (!xd_threads_split(s->B > 1)) {
        for (int b = 0; b < s->B; b++) relu_pool_image(&j, b);
        return;
    }
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) relu_pool_image(&j, b);
}

void nn_conv2d_relu_maxpool_forward(float *out, float *cols, float *wext, const float *inp,
                                    const float *w, const float *wp, const float *b,
                                    const nn_conv_shape *s,
                                    float *relu_out, float *pool_out, int32_t *argmax,
                                    const nn_pool_shape *ps)
{
    XD_ASSERT(ps->B == s->B && ps->H == s->OH && ps->W == s->OW && ps->C == s->OC);
    relu_pool_job j = {relu_out, pool_out, argmax, out, ps};
    conv2d_forward(out, cols, wext, inp, w, wp, b, s, relu_pool_image, &j);
}

/* One image of a first-write backward whose windows tile the input without overlap (k ==
 * stride): every position belongs to at most one window, so it is written once, 0 + g with g its
 * gradient or 0, in a pass over the windows that vectorises across channels; the ragged edge no
 * window covers gets zeros. y as relu_out below (or NULL). */
static void maxpool_backward_tiles(float *img, const float *d, const int32_t *am, const float *y,
                                   const nn_pool_shape *s)
{
    const int C = s->C, k = s->k;
    for (int oy = 0; oy < s->OH; oy++) {
        for (int ox = 0; ox < s->OW; ox++) {
            const size_t o = ((size_t)oy * s->OW + ox) * C;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    const int32_t base = ((oy * k + ky) * s->W + ox * k + kx) * C;
                    float *p = img + base;
                    for (int c = 0; c < C; c++) {
                        float g = am[o + c] == base + c ? d[o + c] : 0.0f;
                        if (y) g = y[o + c] > 0.0f ? g : 0.0f;
                        p[c] = 0.0f + g;
                    }
                }
        }
        if (s->OW * k < s->W) /* columns right of the last window, in this band of rows */
            for (int ky = 0; ky < k; ky++)
                memset(img + ((size_t)(oy * k + ky) * s->W + s->OW * k) * C, 0,
                       sizeof(float) * (s->W - s->OW * k) * C);
    }
    memset(img + (size_t)s->OH * k * s->W * C, 0, sizeof(float) * (s->H - s->OH * k) * s->W * C);
}

/* first: each image is zeroed just before its scatter, while it is in cache, instead of a
 * separate pass over the whole batch; the sums are the same. relu_out (or NULL): the pool read a
 * ReLU's output, and the gradient goes through that ReLU too. A window's maximum relu(x[argmax])
 * is positive exactly when x[argmax] is, so the pool's output (relu_out, (B, OH, OW, C)) tells
 * without reading x. A position whose input is not positive then adds +0 at each of its windows
 * and ends +0, as ReLU's backward would leave it; any other position gets the same sum the pool's
 * own backward would give it. */
static void maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                             const float *relu_out, const nn_pool_shape *s, int first)
{
    const size_t per_out = (size_t)s->OH * s->OW * s->C, per_in = (size_t)s->H * s->W * s->C;
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) {
        float *img = dinp + (size_t)b * per_in;
        const float *d = dout + b * per_out;
        const int32_t *am = argmax + b * per_out;
        const float *y = relu_out ? relu_out + b * per_out : NULL;
        if (first && s->k == s->stride) {
            maxpool_backward_tiles(img, d, am, y, s);
            continue;
        }
        if (first) memset(img, 0, sizeof(float) * per_in);
        if (y) {
            for (size_t i = 0; i < per_out; i++) img[am[i]] += y[i] > 0.0f ? d[i] : 0.0f;
        } else {
            for (size_t i = 0; i < per_out; i++) img[am[i]] += d[i];
        }
    }
}

void nn_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                         const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, NULL, s, 0);
}

void nn_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                               const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, NULL, s, 1);
}

void nn_relu_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                                    const float *out, const nn_pool_shape *s)
{
    maxpool_backward(dinp, dout, argmax, out, s, 1);
}

void nn_avgpool_forward(float *out, const float *inp, const nn_pool_shape *s)
{
    const float inv = 1.0f / (float)(s->k * s->k);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < s->B; b++)
        for (int oy = 0; oy < s->OH; oy++) {
            const float *img = inp + (size_t)b * s->H * s->W * s->C;
            for (int ox = 0; ox < s->OW; ox++) {
                float *o = out + (((size_t)b * s->OH + oy) * s->OW + ox) * s->C;
                for (int c = 0; c < s->C; c++) o[c] = 0.0f;
                for (int ky = 0; ky < s->k; ky++)
                    for (int kx = 0; kx < s->k; kx++) {
                        const float *p = img + ((size_t)(oy * s->stride + ky) * s->W +
                                                ox * s->stride + kx) * s->C;
                        for (int c = 0; c < s->C; c++) o[c] += p[c];
                    }
                for (int c = 0; c < s->C; c++) o[c] *= inv;
            }
        }
}

void nn_avgpool_backward(float *dinp, const float *dout, const nn_pool_shape *s)
{
    const float inv = 1.0f / (float)(s->k * s->k);
#pragma omp parallel for
    for (int b = 0; b < s->B; b++) {
        float *img = dinp + (size_t)b * s->H * s->W * s->C;
        for (int oy = 0; oy < s->OH; oy++)
            for (int ox = 0; ox < s->OW; ox++) {
                const float *d = dout + (((size_t)b * s->OH + oy) * s->OW + ox) * s->C;
                for (int ky = 0; ky < s->k; ky++)
                    for (int kx = 0; kx < s->k; kx++) {
                        float *p = img + ((size_t)(oy * s->stride + ky) * s->W + ox * s->stride + kx) *
                                             s->C;
                        for (int c = 0; c < s->C; c++) p[c] += d[c] * inv;
                    }
            }
    }
}

static void gap_one(float *o, const float *inp, int HW, int C)
{
    for (int c = 0; c < C; c++) o[c] = 0.0f;
    for (int i = 0; i < HW; i++)
        for (int c = 0; c < C; c++) o[c] += inp[(size_t)i * C + c];
    const float inv = 1.0f / (float)HW;
    for (int c = 0; c < C; c++) o[c] *= inv;
}

void nn_gap_forward(float *out, const float *inp, int B, int HW, int C)
{
    const size_t per = (size_t)HW * C;
    if (!xd_threads_split((size_t)B * per > PAR_MIN)) {
        for (int b = 0; b < B; b++) gap_one(out + (size_t)b * C, inp + b * per, HW, C);
        return;
    }
#pragma omp parallel for
    for (int b = 0; b < B; b++) gap_one(out + (size_t)b * C, inp + b * per, HW, C);
}

void nn_gap_backward(float *dinp, const float *dout, int B, int HW, int C)
{
    const float inv = 1.0f / (float)HW;
#pragma omp parallel for if ((size_t)B * HW * C > PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < HW; i++) {
            float *p = dinp + ((size_t)b * HW + i) * C;
            for (int c = 0; c < C; c++) p[c] += dout[(size_t)b * C + c] * inv;
        }
}

// ----------------------------------------------------------------------------------------------
// activations

void nn_relu_forward(float *out, const float *inp, size_t n)
{
    if (!xd_threads_split(n > PAR_MIN)) {
        for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
        return;
    }
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* first: dinp holds nothing yet this step. It is written as 0 + g, the very bits that zeroing it
 * and adding g would give (+0 for a gradient of -0), without the separate zeroing pass. */
static void relu_backward(float *dinp, const float *dout, const float *inp, size_t n, int first)
{
#pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dinp[i] = (first ? 0.0f : dinp[i]) + (inp[i] > 0.0f ? dout[i] : 0.0f);
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
#pragma omp parallel for if (n > PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2));
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for if (n > PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        float pdf = INV_SQRT2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void nn_tanh_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for if (n > PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

/* d tanh = 1 - y^2 */
void nn_tanh_backward(float *dinp, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

void nn_sigmoid_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for if (n > PAR_MIN / 8)
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
#pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

double nn_logsumexp(const float *x, int K, double T)
{
    double m = -INFINITY;
    for (int k = 0; k < K; k++) m = fmax(m, (double)x[k] / T);
    double s = 0.0;
    for (int k = 0; k < K; k++) s += exp((double)x[k] / T - m);
    return m + log(s);
}

/* y = x - log sum exp(x), in double so that it stays exact to float rounding for |x| ~ 1000 */
void nn_logsoftmax_forward(float *out, const float *inp, int R, int K)
{
#pragma omp parallel for if ((size_t)R * K > PAR_MIN)
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
#pragma omp parallel for if ((size_t)R * K > PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *dy = dout + (size_t)r * K, *y = out + (size_t)r * K;
        float *dx = dinp + (size_t)r * K;
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += dy[k];
        for (int k = 0; k < K; k++) dx[k] += dy[k] - expf(y[k]) * s;
    }
}

/* y = exp(x - log sum exp(x)) */
static void softmax_one(float *y, const float *x, int K)
{
    const double lse = nn_logsumexp(x, K, 1.0);
    for (int k = 0; k < K; k++) y[k] = (float)exp((double)x[k] - lse);
}

void nn_softmax_forward(float *out, const float *inp, int R, int K)
{
    const size_t n = (size_t)R * K;
    if (!xd_threads_split(n > PAR_MIN)) {
        for (size_t r = 0; r < n; r += K) softmax_one(out + r, inp + r, K);
        return;
    }
#pragma omp parallel for
    for (int r = 0; r < R; r++) softmax_one(out + (size_t)r * K, inp + (size_t)r * K, K);
}

/* dx = y * (dy - sum(dy * y)) */
void nn_softmax_backward(float *dinp, const float *dout, const float *out, int R, int K)
{
#pragma omp parallel for if ((size_t)R * K > PAR_MIN)
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
#pragma omp parallel for if ((size_t)N * C > PAR_MIN)
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
#pragma omp parallel for if ((size_t)N * C > PAR_MIN)
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) {
            size_t k = (size_t)i * C + c;
            out[k] = gamma[c] * (inp[k] - mean[c]) * rstd[c] + beta[c];
        }
}

void nn_batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                               const float *run_mean, const float *run_var, int N, int C,
                               float eps)
{
#pragma omp parallel for if ((size_t)N * C > PAR_MIN)
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) {
            size_t k = (size_t)i * C + c;
            out[k] = gamma[c] * (inp[k] - run_mean[c]) / sqrtf(run_var[c] + eps) + beta[c];
        }
}

/* xhat = (x - mean) rstd; dxhat = dy gamma;
 * dx = rstd/N * (N dxhat - sum(dxhat) - xhat sum(dxhat xhat)) */
void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *gamma, int N, int C)
{
#pragma omp parallel for if ((size_t)N * C > PAR_MIN)
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
#pragma omp parallel for if ((size_t)R * C > PAR_MIN)
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
#pragma omp parallel for if ((size_t)R * C > PAR_MIN)
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
#pragma omp parallel for if ((size_t)R * C > PAR_MIN)
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
#pragma omp parallel for if ((size_t)B * D > PAR_MIN / 4)
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
#pragma omp parallel for if (n > PAR_MIN)
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
#pragma omp parallel for if ((size_t)B * L * D > PAR_MIN)
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
#pragma omp parallel for if ((size_t)B * L * D > PAR_MIN)
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
#pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = scale * nearbyintf(inp[i] / scale);
    return scale;
}

void nn_fakequant_backward(float *dinp, const float *dout, size_t n)
{
    nn_add_inplace(dinp, dout, n);
}

void nn_add_inplace(float *dst, const float *src, size_t n)
{
#pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void nn_add_first(float *dst, const float *src, size_t n)
{
#pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = 0.0f + src[i];
}
