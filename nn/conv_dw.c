/* The convolution's weight gradient (see nn/conv.c): on one channel read from the image (or the
 * pool's gradient) without unfolding, with the windows read in place from padded copies of the
 * images, in bf16 (nn/conv_bf16.h), or over the unfolded columns; the product's K blocks in runs
 * over the threads with the bits of one. */
#include "nn/conv_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "core/status.h"
#include "nn/conv_bf16.h"
#include "nn/conv_wino.h"
#include "nn/gemm.h"
#include "nn/mm.h"

/* Block kb's sums into acc (nk rows of OC): pixels p0..p0+kc, the image each lies in made padded
 * in img when it changes (*cur: the image img holds) */
static void dw_block(float *acc, float *img, float *rows, int *cur, const float *dout,
                     const nn_pool_grad *pg, const float *inp, const nn_conv_shape *s, int kb)
{
    const int OC = s->OC, P = s->OH * s->OW, M = s->B * P, nk = 9 + !!s->bias;
    const int Wp = s->W + 2 * s->pad;
    int p0, kc;
    nn_sgemm_k_block(M, kb, &p0, &kc);
    memset(acc, 0, sizeof(float) * (size_t)nk * OC);
    for (int p = p0, n; p < p0 + kc; p += n) {
        const int b = p / P, oy = p % P / s->OW, ox = p % s->OW;
        n = s->OW - ox < p0 + kc - p ? s->OW - ox : p0 + kc - p;
        if (b != *cur) {
            pad_image(img, inp, s, b);
            *cur = b;
        }
        if (pg) nn_maxpool_grad_rows(rows, pg, b, oy, ox, n, 0, OC);
        nn_sgemm_conv_dw_row(n, OC, img + (size_t)oy * Wp + ox, (size_t)Wp,
                             pg ? rows : dout + (size_t)p * OC, (size_t)OC, s->bias, acc);
    }
}

/* Threads for a weight gradient's K blocks taken in runs, one a thread (no more threads than
 * blocks), and *later, the first block of the second run (kbs on one thread): the first run adds
 * its blocks into the sum as it goes, the others keep each block's apart, added in after in
 * block order; the additions of one thread, so the bits of one. */
static int block_runs(int kbs, int *later)
{
    int T = xd_threads_split(kbs > 1) ? xd_threads_get() : 1, end;
    if (T > kbs) T = kbs;
    *later = kbs;
    if (T > 1) nn_sgemm_block_range(kbs, T, 1, later, &end);
    return T;
}

/* C (OC, N) = the block's sums (+ C unless the first block and beta 0) */
static void dw_fold(float *C, int N, const float *acc, int OC, int nk, int first)
{
    for (int o = 0; o < OC; o++)
        for (int k = 0; k < nk; k++) {
            float *d = C + (size_t)o * N + k;
            const float g = acc[(size_t)k * OC + o];
            *d = first ? g : g + *d;
        }
}

/* The weight gradient of a 3 x 3 stride-1 convolution on one channel without unfolding
 * (nn_sgemm_conv_dw_row), in the product's K blocks: C = the first block's sums (+ C when beta
 * is 1), then + each next block's, in order, the blocks in runs over the threads (block_runs).
 * beta 0 or 1. */
static void conv2d_dw_one_channel(float *C, int N, float beta, const float *dout,
                                  const nn_pool_grad *pg, const float *inp,
                                  const nn_conv_shape *s)
{
    XD_ASSERT(beta == 0.0f || beta == 1.0f);
    const int OC = s->OC, M = s->B * s->OH * s->OW, nk = 9 + !!s->bias;
    const int kbs = nn_sgemm_k_blocks(M), Hp = s->H + 2 * s->pad, Wp = s->W + 2 * s->pad;
    int later;
    const int nb = block_runs(kbs, &later);
    float *kept = nb > 1 ? xd_xmalloc(sizeof(float) * (size_t)(kbs - later) * nk * OC) : NULL;
#pragma omp parallel for if (nb > 1)
    for (int t = 0; t < nb; t++) {
        float *img = xd_xmalloc(sizeof(float) * ((size_t)Hp * Wp + (size_t)nk * OC +
                                                 (pg ? (size_t)s->OW * OC : 0)));
        float *acc = img + (size_t)Hp * Wp, *rows = acc + (size_t)nk * OC;
        int cur = -1, kb0, kb1;
        nn_sgemm_block_range(kbs, nb, t, &kb0, &kb1);
        for (int kb = kb0; kb < kb1; kb++) {
            if (t == 0) {
                dw_block(acc, img, rows, &cur, dout, pg, inp, s, kb);
                dw_fold(C, N, acc, OC, nk, kb == 0 && beta == 0.0f);
            } else {
                dw_block(kept + (size_t)(kb - later) * nk * OC, img, rows, &cur, dout, pg, inp, s,
                         kb);
            }
        }
        free(img);
    }
    for (int kb = later; nb > 1 && kb < kbs; kb++)
        dw_fold(C, N, kept + (size_t)(kb - later) * nk * OC, OC, nk, 0);
    free(kept);
}

/* Thread t's run of the gathered weight gradient's K blocks (conv2d_dw_gather): block kb's
 * product into sum when it is the first run (beta for the first block, then added), else kept
 * apart in kept[kb - later]. The images a block's pixels lie in are padded into img's slots
 * (image b in slot b % slots, padded once while it stays there). */
typedef struct {
    const float *dout, *inp;
    const nn_conv_shape *s;
    const int *roff;
    float *sum, *kept, *img;
    float beta;
    int slots, kbs, later, nthreads;
} dw_gather_job;

static void dw_gather_run(void *ctx, int t)
{
    const dw_gather_job *j = ctx;
    const nn_conv_shape *s = j->s;
    const int OC = s->OC, C = s->C, OW = s->OW, P = s->OH * OW, M = s->B * P;
    const int K = s->KH * s->KW * C, nk = K + !!s->bias, Wp = s->W + 2 * s->pad;
    const size_t n_img = (size_t)(s->H + 2 * s->pad) * Wp * C;
    float *img = j->img + (size_t)t * j->slots * n_img;
    int *koff = xd_xmalloc(sizeof(int) * ((size_t)nn_sgemm_k_most(M) + (size_t)j->slots));
    int *held = koff + nn_sgemm_k_most(M); /* the image each slot holds, or -1 */
    for (int i = 0; i < j->slots; i++) held[i] = -1;
    int kb0, kb1;
    nn_sgemm_block_range(j->kbs, j->nthreads, t, &kb0, &kb1);
    for (int kb = kb0, p0, kc; kb < kb1; kb++) {
        nn_sgemm_k_block(M, kb, &p0, &kc);
        /* pixel p0 + k is (b, oy, ox), stepped along without dividing */
        for (int k = 0, b = p0 / P, oy = p0 % P / OW, ox = p0 % OW, at = -1; k < kc; k++) {
            const int slot = b % j->slots;
            if (at < 0) { /* a new image, or the block's first pixel */
                if (held[slot] != b) {
                    pad_image(img + (size_t)slot * n_img, j->inp, s, b);
                    held[slot] = b;
                }
                at = (int)((size_t)slot * n_img);
            }
            koff[k] = at + (oy * s->stride * Wp + ox * s->stride) * C;
            if (++ox == OW && (ox = 0, ++oy == s->OH)) {
                oy = 0;
                b++;
                at = -1;
            }
        }
        float *dst = t == 0 ? j->sum : j->kept + (size_t)(kb - j->later) * nk * OC;
        const float beta = t > 0 ? 0.0f : kb == 0 ? j->beta : 1.0f;
        nn_sgemm_gather_rows(K, nk - K, OC, kc, img, j->roff, koff, j->dout + (size_t)p0 * OC,
                             OC, beta, dst, OC);
    }
    free(koff);
}

/* C (OC, N) = dout^T (OC, M) @ [cols | 1] (M, N) + beta * C with the windows read in place from
 * padded copies of the images instead of unfolded: computed transposed, window element by output
 * channel (nn_sgemm_gather_rows), a K block of pixels at a time, the blocks in runs over the
 * threads (block_runs): nn_sgemm's bits. Scratch in buf (buf_n floats): the transposed sum,
 * each thread's padded images, the kept products. Returns 0 (nothing done) when those do not
 * fit. */
static int conv2d_dw_gather(float *C, int N, float beta, const float *dout, const float *inp,
                            const nn_conv_shape *s, float *buf, size_t buf_n)
{
    const int OC = s->OC, C_ = s->C, P = s->OH * s->OW, M = s->B * P, K = s->KH * s->KW * C_;
    const int Wp = s->W + 2 * s->pad, kbs = nn_sgemm_k_blocks(M), kmost = nn_sgemm_k_most(M);
    XD_ASSERT(N == K + !!s->bias);
    const size_t n_img = (size_t)(s->H + 2 * s->pad) * Wp * C_, nsum = (size_t)N * OC;
    /* the images a run of kmost pixels can touch (no more than there are); their padded copies
     * must be addressable */
    const int slots = (kmost + P - 2) / P + 1 < s->B ? (kmost + P - 2) / P + 1 : s->B;
    if ((double)slots * (double)n_img >= (double)INT_MAX) return 0;
    int later, T = block_runs(kbs, &later);
    if (T > 1 && nsum + (size_t)T * slots * n_img + (size_t)(kbs - later) * nsum > buf_n) {
        T = 1; /* no room to keep the blocks apart: one thread */
        later = kbs;
    }
    if (nsum + (size_t)T * slots * n_img > buf_n) return 0;
    int *roff = xd_xmalloc(sizeof(int) * (size_t)K);
    window_offsets(roff, s);
    dw_gather_job job = {dout, inp, s, roff, buf, buf + nsum + (size_t)T * slots * n_img,
                         buf + nsum, beta, slots, kbs, later, T};
    if (beta != 0.0f) /* the sum starts from C, transposed */
        for (int o = 0; o < OC; o++)
            for (int i = 0; i < N; i++) buf[(size_t)i * OC + o] = C[(size_t)o * N + i];
    xd_threads_each(T, dw_gather_run, &job);
    for (int kb = later; kb < kbs; kb++) {
        const float *g = job.kept + (size_t)(kb - later) * nsum;
        for (size_t e = 0; e < nsum; e++) buf[e] = g[e] + buf[e];
    }
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < N; i++) C[(size_t)o * N + i] = buf[(size_t)i * OC + o];
    free(roff);
    return 1;
}

/* C (OC, N) = dout^T (OC, M) @ cols (M, N) + beta * C, the weight gradient's product: on one
 * channel from the image (or the pool's gradient, pg), in bf16 nn_bconv_dw, in float32
 * with the windows read in place (conv2d_dw_gather) when the forward did not unfold them; else
 * over cols unfolded (by the forward, or here first). */
void nn_conv2d_dw(float *C, int N, float beta, const float *dout, const nn_pool_grad *pg,
                  float *cols, int unfolded, const float *inp, const nn_conv_shape *s)
{
    const int M = s->B * s->OH * s->OW;
    if (dw_from_image(s)) {
        conv2d_dw_one_channel(C, N, beta, dout, pg, inp, s);
        return;
    }
    if (!pg && nn_bconv_dw_takes(s)) { /* bf16: nothing unfolded */
        nn_bconv_dw(C, N, beta, dout, inp, s);
        return;
    }
    XD_ASSERT(!pg);
    if (nn_wino_dw_takes(s)) { /* float32, where the forward may run Winograd's */
        nn_wino_dw(C, N, beta, dout, inp, s);
        return;
    }
    if (!unfolded && nn_mm_precision() == NN_PREC_FLOAT32 &&
        conv2d_dw_gather(C, N, beta, dout, inp, s, cols, nn_conv_cols_size(s)))
        return;
    if (!unfolded) nn_im2col(cols, inp, s);
    nn_mm(1, 0, s->OC, N, M, 1.0f, dout, s->OC, cols, N, beta, C, N);
}
