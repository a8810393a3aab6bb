/* Integer matrix products for int8 inference: C (int32) = A (uint8) @ W^T (int8), exact.
 *
 * Activations come as unsigned 8-bit codes (a zero point turns them back into signed values, see
 * nn/quant.h) and weights as signed 8-bit values, which is what the CPU's 8-bit dot-product
 * instruction (AVX-512 VNNI's vpdpbusd: four u8 x s8 products summed into each int32 lane) takes.
 * Which kernel runs is decided at run time (__builtin_cpu_supports), whatever the build's -march:
 * the VNNI kernel when the CPU has it (and AVX-512 BW and VL), else a portable C loop. Every kernel
 * gives the exact integer result, so they agree bit for bit (the tests force each one). Sums are
 * exact in int32 as long as K <= NN_QGEMM_MAX_K (255 * 127 * K < 2^31). */
#ifndef XD_NN_QGEMM_H
#define XD_NN_QGEMM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define NN_QGEMM_MAX_K 65536

typedef enum { NN_QISA_PORTABLE, NN_QISA_AVX512VNNI, NN_QISA_COUNT } nn_qisa;

const char *nn_qisa_name(nn_qisa isa);
/* The best kernel this CPU runs. */
nn_qisa nn_qgemm_best(void);
/* The kernel in use: nn_qgemm_best unless nn_qgemm_use chose another. */
nn_qisa nn_qgemm_isa(void);
/* Makes nn_qgemm run kernel isa (one the CPU cannot run falls back to the portable one); returns
 * the one it will run. NN_QISA_COUNT goes back to the best. */
nn_qisa nn_qgemm_use(nn_qisa isa);

/* The weights (N rows of K), as given and packed for the VNNI kernel: blocks of 16 rows, each
 * K rounded up to a multiple of 4 with zeros, laid out [K/4][16][4]; wsum[n] = sum_k w[n][k]
 * (what a zero point multiplies). N <= 8: also twice over in one block (rows 8.. repeat rows
 * 0..), for products of two rows of A at once. */
typedef struct {
    int N, K;
    int8_t *w;       /* (N, K) */
    int8_t *packed;  /* (ceil(N/16), ceil(K/4), 16, 4) */
    int8_t *twice;   /* N <= 8: (ceil(K/4), 16, 4), else NULL */
    int32_t *wsum;   /* (N) */
} nn_qweights;

/* Copies and packs w (N, K); K in 1..NN_QGEMM_MAX_K. */
void nn_qweights_pack(nn_qweights *p, const int8_t *w, int N, int K);
void nn_qweights_free(nn_qweights *p);

/* C[m][n] = sum_k A[m][k] * W.w[n][k] for m < M; A rows lda bytes apart (lda >= K), C rows ldc
 * apart (ldc >= N). Rows are spread over the OpenMP threads for large products. */
void nn_qgemm(int32_t *C, int ldc, const uint8_t *A, int lda, int M, const nn_qweights *W);

/* x's level on a quantisation of step s: round(x / s) (to even, as nearbyintf in the default
 * rounding mode) clamped to lo..hi (compares rather than fminf/fmaxf, which are calls unless NaN
 * need not be kept). The vector epilogue below computes the same operations. */
static inline float nn_quant_level(float x, float s, float lo, float hi)
{
    const float q = nearbyintf(x / s);
    return q < lo ? lo : q > hi ? hi : q;
}

/* What nn_qgemm_requant does with each int32 sum: its value in float, y = (float)(acc - zero *
 * wsum[n]) * mult[n] + bias[n] (a multiply, then an add: the same bits in every kernel), then,
 * when bn_mean is set, the batch norm that follows the layer at evaluation, y = bn_gamma[n] * (y -
 * bn_mean[n]) / bn_sd[n] + bn_beta[n] (nn_batchnorm_forward_eval's operations, in its order; bn_sd
 * = sqrtf(var + eps)), written as floats (y, rows ldy apart; relu: max(y, 0)) or, when codes is
 * set, as the codes of the next quantisation (step scale, levels lo..hi, zero point code_zero):
 * max(level(y) + code_zero, floor), floor being the code of 0 when a ReLU lies between (which
 * commutes with the monotone quantisation), else 0. With gap_sum set, floats are summed into it
 * rather than written (see below). */
typedef struct {
    const float *mult, *bias; /* (N) */
    int zero;                 /* the input codes' zero point */
    const float *bn_mean, *bn_gamma, *bn_sd, *bn_beta; /* (N) each, or NULL */
    /* pooled sums: bit o % 16 of falls[o / 16] set where the output falls as its sum grows (a
     * batch norm's gamma < 0), whose window then gives its smallest sum; NULL: none falls */
    const uint16_t *falls;
    float *y;
    int ldy, relu;
    /* floats out: set, each row's values are added to it (gap_sum[n] += y[m][n], rows in
     * increasing order, as global average pooling sums them) instead of stored */
    float *gap_sum;
    uint8_t *codes;
    int ldc;
    float scale, lo, hi;
    int code_zero, floor;
} nn_qepilogue;

/* nn_qgemm with the sums turned into floats or codes as ep says, in registers (no int32 matrix
 * is written). Rows are not spread over threads: the callers run a chunk of images per thread. */
void nn_qgemm_requant(const uint8_t *A, int lda, int M, const nn_qweights *W,
                      const nn_qepilogue *ep);

/* A convolution's windows, read in place from a padded image: row m's window starts at img +
 * rowoff[m] and is krows runs of W.K / krows bytes (a multiple of 4: each window row's k *
 * channels codes, rounded up by the bytes after them, which zero weights ignore, so they must be
 * readable), kstride bytes apart. pool > 1 (the VNNI kernel takes 2, 4 or 8): each pool
 * consecutive rows are one max-pooling window, whose largest sum (smallest where ep->falls says)
 * alone goes through the epilogue (the pooled value, since the epilogue is monotone in the sum
 * for each output: every mult > 0) as output row m / pool. */
typedef struct {
    const int32_t *rowoff;
    int krows, kstride, pool;
} nn_qwindows;

/* The product of M windows of img with W: the int32 sums into C (N apart; ep NULL, pool 1), or
 * through the epilogue ep. */
void nn_qgemm_conv(int32_t *C, const uint8_t *img, const nn_qwindows *win, int M,
                   const nn_qweights *W, const nn_qepilogue *ep);
/* A first convolution for nn_qgemm_conv_first: ic input channels, a padded image whose rows are
 * row_bytes apart (pixels ic bytes apart, channels side by side), k x k windows at stride 1, an
 * h x w output; w4 (nn_qfirst_pack): its weights in the kernel's groups of four bytes, (window
 * row, group, output). */
typedef struct {
    int ic, k, h, w, row_bytes;
    int32_t *w4;
    /* the kernel's byte permutations (nn_qfirst_pack): each lane's pixel bytes from a row's
     * load, and the codes output-major to pixel-major */
    uint8_t lanes[64], pixel_major[128];
} nn_qfirst;
/* Whether nn_qgemm_conv_first takes shape f with N outputs: ic 1..4, k 1..7, N 8 or 16. */
int nn_qfirst_fits(const nn_qfirst *f, int N);
/* f->w4 from W (again when W changes); f must fit W.N outputs, W.K be k * k * ic. */
void nn_qfirst_pack(nn_qfirst *f, const nn_qweights *W);
void nn_qfirst_free(nn_qfirst *f);
/* The convolution of a few-channel image (W.K = k * k * ic, in (ky, kx, c) order, as W.w holds
 * it) with every 2 x 2 max-pooling window (stride 2) of its output through the epilogue ep, which
 * writes codes (ldc == N): the codes nn_qgemm_conv gives with those pooling windows, as output
 * row (y / 2) * (w / 2) + x / 2. Pixels in lanes: each window row's codes of 16 neighbouring
 * output pixels are one load and a byte permutation, each output a register of their sums, the
 * weights broadcast; no window is gathered, and a few channels' zero padding costs less. Reads
 * up to 64 bytes past the image's last row. Returns 0, doing nothing, where it does not apply:
 * f not packed, floats out, or not the VNNI kernel on a CPU with AVX-512 VBMI. */
int nn_qgemm_conv_first(const uint8_t *img, const nn_qfirst *f, const nn_qweights *W,
                        const nn_qepilogue *ep);
/* dst[k] = lut[(k % c) * 256 + src[k]] for k < n: 8-bit values of c (1..4) interleaved channels
 * through a table per channel (256 bytes each). AVX-512 VBMI byte permutations (64 values a
 * step) when the VNNI kernel runs on a CPU that has them, else a plain loop: the same bytes. */
void nn_qpixel_codes(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *lut, int c);
/* Max pooling (k x k windows, stride, no padding) of the sums C of an H x Wd map (rows of W.N),
 * then the epilogue on each pooled sum (its output rows are the pooled positions): the pooled
 * values of the epilogue's, since the epilogue is monotone in the sum, with the epilogue run
 * once per window instead of k * k times (the pooling windows nn_qgemm_conv cannot take). */
void nn_qpool_requant(const int32_t *C, int H, int Wd, int k, int stride, const nn_qweights *W,
                      const nn_qepilogue *ep);

#endif
