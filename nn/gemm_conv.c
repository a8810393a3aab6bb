/* Our float32 kernels for convolutions with few input channels (see gemm.h): the rows of the
 * forward with the windows read from the padded image, and the weight gradient of a convolution
 * on one channel without unfolding its windows. */
#include "nn/gemm.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#include "core/status.h"
#include "nn/gemm_simd.h"

// ----------------------------------------------------------------------------------------------
// the rows of a convolution with few input channels
//
// With K = 3 x 3 x C for a small C, a tile of nn_sgemm_gather does one multiply-add per value it
// broadcasts (C <= 3) and spends as long on its set-up as on its few k. Here a tile is R pixels
// of an output row, and each input value of the window's row ky is broadcast once for the (up to)
// 3 pixels whose windows hold it (input pixel ix is kx = ix - ox of pixel ox), with row ky's 3 C
// weight vectors in registers. For each pixel the products still come in k order, kx-major and
// c within, then the bias: the chains of nn_sgemm_gather, so the same bits. Only 3 x 3 windows:
// with the window's height a constant too the tile runs some 15% faster than with it a variable
// (its loop unrolled with the rest; other heights go to nn_sgemm_gather).

#define CONV_ROW_MAX_C 4
static_assert(3 * 3 * CONV_ROW_MAX_C + 1 <= KC, "a window and the bias fit one K block");

/* R pixels of one output row: pixel i's window row ky starts at a[ky * row + i * C] (a
 * zero-padded image, stride 1); its n outputs (V vectors hold them) to out[i * ldo]. */
static inline __attribute__((always_inline)) void
conv_row_tile(int R, int V, int C, const float *restrict a, size_t row, int bias,
              const float *restrict bp, int n, float *restrict out, size_t ldo)
{
    enum { KH = 3, KW = 3 };
    vf c0[16], c1[16];
    for (int i = 0; i < R; i++) c0[i] = c1[i] = (vf){0};
    for (int ky = 0; ky < KH; ky++, a += row, bp += (size_t)KW * C * NR) {
        vf w0[KW * CONV_ROW_MAX_C], w1[KW * CONV_ROW_MAX_C];
        for (int k = 0; k < KW * C; k++) {
            w0[k] = vload(bp + (size_t)k * NR);
            w1[k] = V == 2 ? vload(bp + (size_t)k * NR + VW) : w0[k];
        }
        /* unrolled, so that every index is a constant and the tile stays in registers */
#pragma GCC unroll 32
        for (int ix = 0; ix < R + KW - 1; ix++)
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                const vf x = vset1(a[ix * C + c]);
#pragma GCC unroll 3
                for (int kx = 0; kx < KW; kx++) {
                    const int o = ix - kx;
                    if (o < 0 || o >= R) continue;
                    c0[o] = vfma(x, w0[kx * C + c], c0[o]);
                    if (V == 2) c1[o] = vfma(x, w1[kx * C + c], c1[o]);
                }
            }
    }
    const vf one = vset1(1.0f), b0 = bias ? vload(bp) : one,
             b1 = bias && V == 2 ? vload(bp + VW) : one;
    for (int i = 0; i < R; i++) {
        if (bias) c0[i] = vfma(one, b0, c0[i]);
        if (V == 2 && bias) c1[i] = vfma(one, b1, c1[i]);
        float *d = out + (size_t)i * ldo;
        if (n == V * VW) { /* whole vectors */
            vstore(d, c0[i]);
            if (V == 2) vstore(d + VW, c1[i]);
        } else { /* the n columns there are, no further */
            memcpy(d, &c0[i], sizeof(float) * (size_t)(V == 2 ? VW : n));
            if (V == 2) memcpy(d + VW, &c1[i], sizeof(float) * (size_t)(n - VW));
        }
    }
}

/* Tiles of R pixels along the row; the last one ends at the row's end, overlapping the one
 * before when R does not divide OW (those pixels are computed twice, to the same bits). */
#define CONV_ROW(R, V, C)                                                                         \
    for (int ox = 0;; ox += (R)) {                                                                \
        const int o = ox + (R) > OW ? OW - (R) : ox;                                              \
        conv_row_tile((R), (V), (C), A + (size_t)o * (C), row, bias, Bp, OC,                     \
                      out + (size_t)o * ldo, (size_t)ldo);                                        \
        if (o + (R) >= OW) break;                                                                 \
    }

#if defined(__AVX512F__)
/* The tile's pixels, with 32 vector registers: 16 when the outputs fit one vector, else 7 or 8
 * (whichever divides OW) */
static int conv_row_pixels(int OW, int n) { return n <= VW ? 16 : OW % 7 == 0 ? 7 : 8; }
#else
/* With 16 vector registers, the tile's sums and a window row's weights of one channel in them
 * beside the value broadcast (2 R + 6 + 1 of them for two vectors of outputs): 8 pixels when the
 * outputs fit one vector, else 4 */
static int conv_row_pixels(int OW, int n)
{
    (void)OW;
    return n <= VW ? 8 : 4;
}
#endif

int nn_sgemm_conv_row_takes(int OW, int OC, int C, int KH, int KW)
{
    /* every panel's tile fits the row: the whole ones' and a last narrower one's */
    const int last = OC % NR ? OC % NR : NR;
    return KH == 3 && KW == 3 && C >= 1 && C <= CONV_ROW_MAX_C && OC >= 1 &&
           OW >= conv_row_pixels(OW, OC < NR ? OC : NR) && OW >= conv_row_pixels(OW, last);
}

/* one panel's outputs (n <= NR of them) of the row */
static void conv_row_panel(int OW, int n, int C, const float *A, size_t row, int bias,
                           const float *Bp, float *out, int ldo)
{
    const int V = n <= VW ? 1 : 2, R = conv_row_pixels(OW, n), OC = n;
#if defined(__AVX512F__)
    switch ((V == 1 ? 0 : R == 7 ? 1 : 2) * CONV_ROW_MAX_C + C - 1) {
    case 0: CONV_ROW(16, 1, 1) break;
    case 1: CONV_ROW(16, 1, 2) break;
    case 2: CONV_ROW(16, 1, 3) break;
    case 3: CONV_ROW(16, 1, 4) break;
    case 4: CONV_ROW(7, 2, 1) break;
    case 5: CONV_ROW(7, 2, 2) break;
    case 6: CONV_ROW(7, 2, 3) break;
    case 7: CONV_ROW(7, 2, 4) break;
    case 8: CONV_ROW(8, 2, 1) break;
    case 9: CONV_ROW(8, 2, 2) break;
    case 10: CONV_ROW(8, 2, 3) break;
    case 11: CONV_ROW(8, 2, 4) break;
    default: XD_ASSERT(0);
    }
#else
    switch ((V - 1) * CONV_ROW_MAX_C + C - 1) {
    case 0: CONV_ROW(8, 1, 1) break;
    case 1: CONV_ROW(8, 1, 2) break;
    case 2: CONV_ROW(8, 1, 3) break;
    case 3: CONV_ROW(8, 1, 4) break;
    case 4: CONV_ROW(4, 2, 1) break;
    case 5: CONV_ROW(4, 2, 2) break;
    case 6: CONV_ROW(4, 2, 3) break;
    case 7: CONV_ROW(4, 2, 4) break;
    default: XD_ASSERT(0);
    }
    (void)R;
#endif
}

int nn_sgemm_conv_row(int OW, int OC, int C, int KH, int KW, const float *A, size_t row,
                      int bias, const float *Bp, float *out, int ldo)
{
    if (!nn_sgemm_conv_row_takes(OW, OC, C, KH, KW)) return 0;
    /* panel by panel: each NR columns of the packed weights, K = 9 C (+ the bias) rows of them
     * (one K block), one after the other */
    const size_t k = (size_t)KH * KW * C + !!bias;
    for (int j = 0; j < OC; j += NR)
        conv_row_panel(OW, OC - j < NR ? OC - j : NR, C, A, row, bias, Bp + (size_t)j * k,
                       out + j, ldo);
    return 1;
}
#undef CONV_ROW

// ----------------------------------------------------------------------------------------------
// the weight gradient of a convolution on one channel
//
// [dw | db] = dout^T @ [cols | 1] with cols' rows 9 values of the padded image: each element one
// chain fma(cols[p][k], dout[p][o], acc) over the pixels p of a K block in order (the chains
// gemm.c gives it), here with the pixel's 9 values broadcast straight from the image and dout's
// row loaded once for all 10 sums, instead of an unfolded copy of the windows to read.

/* n pixels, V vectors of channels: sums (10 rows of ld, a row per k: the window's 9 then the
 * bias) loaded, carried over the pixels in named registers and stored back */
#define DW_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8)
#define DW_LOAD(k)                                                                                 \
    vf s##k##_0 = vload(acc + (size_t)(k) * ld),                                                   \
       s##k##_1 = V == 2 ? vload(acc + (size_t)(k) * ld + VW) : s##k##_0;
#define DW_FMA(k)                                                                                  \
    {                                                                                              \
        const vf x = vset1(a[(k) / 3 * row + (k) % 3]);                                            \
        s##k##_0 = vfma(x, d0, s##k##_0);                                                          \
        if (V == 2) s##k##_1 = vfma(x, d1, s##k##_1);                                              \
    }
#define DW_STORE(k)                                                                                \
    vstore(acc + (size_t)(k) * ld, s##k##_0);                                                      \
    if (V == 2) vstore(acc + (size_t)(k) * ld + VW, s##k##_1);
static inline __attribute__((always_inline)) void
conv_dw_tile(int V, int n, const float *restrict a, size_t row, const float *restrict dy,
             size_t ldy, int bias, float *restrict acc, size_t ld)
{
    DW_EACH(DW_LOAD)
    vf b0 = (vf){0}, b1 = (vf){0};
    if (bias) {
        b0 = vload(acc + 9 * ld);
        b1 = V == 2 ? vload(acc + 9 * ld + VW) : b0;
    }
    const vf one = vset1(1.0f);
    for (int i = 0; i < n; i++, a++, dy += ldy) {
        const vf d0 = vload(dy), d1 = V == 2 ? vload(dy + VW) : d0;
        DW_EACH(DW_FMA)
        if (bias) {
            b0 = vfma(one, d0, b0);
            if (V == 2) b1 = vfma(one, d1, b1);
        }
    }
    DW_EACH(DW_STORE)
    if (bias) {
        vstore(acc + 9 * ld, b0);
        if (V == 2) vstore(acc + 9 * ld + VW, b1);
    }
}
#undef DW_EACH
#undef DW_LOAD
#undef DW_FMA
#undef DW_STORE

int nn_sgemm_conv_dw_takes(int OC, int C, int KH, int KW)
{
    return C == 1 && KH == 3 && KW == 3 && OC > 0 && OC % VW == 0;
}

void nn_sgemm_conv_dw_row(int n, int OC, const float *a, size_t row, const float *dy, size_t ldy,
                          int bias, float *acc)
{
    XD_ASSERT(OC % VW == 0);
    for (int o = 0; o < OC; o += 2 * VW) {
        const int V = OC - o >= 2 * VW ? 2 : 1;
        if (V == 2 && bias) conv_dw_tile(2, n, a, row, dy + o, ldy, 1, acc + o, (size_t)OC);
        else if (V == 2) conv_dw_tile(2, n, a, row, dy + o, ldy, 0, acc + o, (size_t)OC);
        else if (bias) conv_dw_tile(1, n, a, row, dy + o, ldy, 1, acc + o, (size_t)OC);
        else conv_dw_tile(1, n, a, row, dy + o, ldy, 0, acc + o, (size_t)OC);
    }
}
