/* Layers as forward/backward pairs over raw float buffers.
 *
 * Layout: images are NHWC, (B, H, W, C) with channels innermost, so a 1x1 convolution is a linear
 * layer over the last axis and im2col rows are contiguous copies. Vectors are (B, C).
 * Conventions: sizes are passed explicitly; forward saves what backward needs in
 * buffers the caller owns; backward ADDS into gradients (dinp, dweight, dbias), zeroing is a
 * separate step; a NULL gradient pointer means "not needed" (e.g. dinp of the first layer).
 * Threads: OpenMP over independent outputs only, so results do not depend on the thread count.
 * The `_first` backward variants are for a dinp that holds nothing yet this step: they write all
 * of it, with the bits that zeroing it and then adding would give (0 + g), so a model skips the
 * separate zeroing pass over its largest buffers; nn_linear_backward_wfirst and
 * nn_bias_grad_first do the same for a linear layer's weight and bias gradients
 * (nn_model_clear_grad; the weight gradient up to the sign of a zero, see there). */
#ifndef XD_NN_LAYERS_H
#define XD_NN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* Below this many elements a layer's loop runs on one thread: a parallel region costs more than
 * it saves (nn/layers.c, nn/conv.c, nn/pool.c). */
#define NN_PAR_MIN 32768

/* ---------------------------------------------------------------------------------------------
 * linear: out = inp @ w^T + b */
void nn_linear_forward(float *out, const float *inp, const float *w, const float *wp,
                       const float *b, int B, int C, int OC);
/* out (B, OC); inp (B, C); w (OC, C); b (OC) or NULL; wp: w packed once by nn_linear_pack for
 * many forward calls (inference; the same bits, without packing w on every call), or NULL */
size_t nn_linear_packed_size(int C, int OC);
void nn_linear_pack(float *wp, const float *w, int C, int OC);
/* nn_linear_forward in bf16 (the bits of nn_mm's with bf16 products) with w packed once by
 * nn_linear_bpack for the bf16 kernel that runs then (nn_bgemm_pack_b), which must still run */
size_t nn_linear_bpacked_size(int C, int OC);
void nn_linear_bpack(uint32_t *wpb, const float *w, int C, int OC);
void nn_linear_forward_bpacked(float *out, const float *inp, const uint32_t *wpb, const float *b,
                               int B, int C, int OC);
void nn_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int B, int C, int OC);
/* nn_linear_backward for dw and db that hold nothing yet this step: written whole, not added to
 * (the values of zeroing them and adding; dw's zeros keep the sign the product's sums give them,
 * where 0 + g made each +0); dinp is added to as there */
void nn_linear_backward_wfirst(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, int B, int C, int OC);
/* db (OC) += the column sums of dout (B, OC), each in row order (a linear layer's bias gradient);
 * _first: db = 0 + those sums */
void nn_bias_grad(float *db, const float *dout, int B, int OC);
void nn_bias_grad_first(float *db, const float *dout, int B, int OC);

/* ---------------------------------------------------------------------------------------------
 * conv2d (NHWC): out[b,oy,ox,oc] = b[oc] + sum_{ky,kx,c} w[oc,ky,kx,c] * inp[b, oy*s-p+ky, ox*s-p+kx, c]
 * computed as im2col + one GEMM over the whole batch: cols (B*OH*OW, KH*KW*C) @ w^T. */
typedef struct {
    int B, H, W, C;   /* input */
    int OC, KH, KW;   /* filters */
    int stride, pad;  /* same in both directions; zero padding */
    int bias;         /* 1: the layer has a bias, folded into the GEMMs as a column of ones */
    int OH, OW;       /* output, derived */
    int winograd;     /* 1: a forward that may run nn/conv_wino.c (an evaluation forward, or
                       * a float32 training forward), and a float32 backward whose gradients
                       * may (see nn/conv_wino.h) */
} nn_conv_shape;

/* Fills OH/OW; returns 0, or -1 when the window does not fit (output would be empty). */
int nn_conv_shape_init(nn_conv_shape *s);
/* The precision a convolution's products run in when the model's is p: p, except that under
 * bf16 a convolution whose windows have fewer than NN_CONV_BF16_MIN_C channels (a first layer on
 * grey or RGB pixels) keeps float32 and its direct kernels: its sums are too short (9 or 27
 * terms) for bf16 pairs and tiles to pay for rounding and packing them, and it holds a few
 * percent of a model's products; but a 3 x 3 one on one channel in an evaluation forward, which
 * nn/conv_bfirst.h computes in bf16 without unfolding it, where it runs. The model sets it around
 * the layer's forward and backward. */
#define NN_CONV_BF16_MIN_C 16
int nn_precision_of_conv(const nn_conv_shape *s, int p);
/* Elements of the cols buffer: one row of KH*KW*C (+1 for the bias column) per output pixel;
 * 0 for a 1x1/stride-1/no-pad conv, which reads its input directly. */
size_t nn_conv_cols_size(const nn_conv_shape *s);
/* Elements of the small scratch that holds [w | b] side by side (0 when not needed). */
size_t nn_conv_wext_size(const nn_conv_shape *s);
/* The plain unfolding and folding back; the convolution does both block by block in step with
 * its products (the same values), and the tests compare the two. */
void nn_im2col(float *cols, const float *inp, const nn_conv_shape *s);
/* adds; dcols rows are KH*KW*C wide (no bias column) */
void nn_col2im(float *dinp, const float *dcols, const nn_conv_shape *s);

/* out (B, OH, OW, OC); cols (nn_conv_cols_size floats) keeps the unfolded windows for backward
 * or is scratch; wext scratch (nn_conv_wext_size floats); w (OC, KH, KW, C); b (OC), NULL
 * exactly when s->bias == 0. With a bias, out = [cols | 1] @ [w | b]^T: one GEMM writes the
 * output once. wp: that operand packed by nn_conv_pack (nn_conv_packed_size floats, wext as
 * scratch), or NULL. With wp the windows are read in place from a padded copy of each image
 * where that fits cols' room per image (the same bits, without unfolding them). wpb: w packed by
 * nn_bwino_pack where nn/conv_wino.c takes s (nn_bwino_takes: Winograd's, in an evaluation
 * forward), by nn_bfirst_pack where nn/conv_bfirst.c does (one channel, an evaluation forward),
 * else by nn_bconv_pack, or NULL; where one of those bf16 convolutions takes s it runs on wpb, or
 * on w without wp (packing w for the call), and wp is not read. In float32, where nn_wino_takes
 * s (Winograd's, an evaluation forward), it runs on wpb's words as nn_wino_pack's floats, or on
 * w (packed for the call), never on wp: w must then be the weights that run. Returns whether
 * cols hold the unfolded windows afterwards: backward's `unfolded`. */
int nn_conv2d_forward(float *out, float *cols, float *wext, const float *inp, const float *w,
                       const float *wp, const uint32_t *wpb, const float *b,
                       const nn_conv_shape *s);
size_t nn_conv_packed_size(const nn_conv_shape *s);
void nn_conv_pack(float *wp, float *wext, const float *w, const float *b, const nn_conv_shape *s);
/* dcols: scratch of M * KH*KW*C floats (when dinp is wanted); wext as in forward.
 * With a bias, [dw | db] comes out of one GEMM, dout^T @ [cols | 1]. cols: what forward left
 * there; unfolded: forward's return value. When 0, the float32 product reads the windows in
 * place from padded copies of the images, using cols' room as scratch (nn_sgemm_gather_rows;
 * the same bits), so the unfolded input is never written to memory. */
void nn_conv2d_backward(float *dinp, float *dw, float *db, float *dcols, float *wext,
                        const float *dout, float *cols, int unfolded, const float *inp,
                        const float *w, const nn_conv_shape *s);
void nn_conv2d_backward_first(float *dinp, float *dw, float *db, float *dcols, float *wext,
                              const float *dout, float *cols, int unfolded, const float *inp,
                              const float *w, const nn_conv_shape *s);
/* The weight gradient (adds into dw and db, as nn_conv2d_backward with dinp NULL) of a
 * convolution followed by ReLU and a max pool whose windows tile its output, from the pool's
 * gradient: dout is made a row at a time as nn_relu_maxpool_backward_first would write it, in
 * cache, instead of the whole batch's in memory; the same bits. Taken where
 * nn_conv2d_takes_pooled says (float32, one input channel, 3 x 3, stride 1: the weight gradient
 * read from the image). ps: the pool's shape; g->dout its gradient, g->argmax its argmax; relu:
 * the gradient goes through the ReLU before the pool too. */
typedef struct {
    const float *dout;
    const int32_t *argmax;
    const struct nn_pool_shape_s *ps;
    int relu;
} nn_pool_grad;
int nn_conv2d_takes_pooled(const nn_conv_shape *s, const struct nn_pool_shape_s *ps);
/* The first-write input gradient of a max pool whose windows tile its input (k == stride), and
 * of the ReLU before it with g->relu: pixels x0..x0+n of input row y of
 * image b, channels o0..o0+oc, row i to dst + i * oc. Every position lies in at most one window:
 * 0 + the window's gradient where its maximum came from that position (and, through the ReLU,
 * was positive: a window's maximum relu(x[argmax]) is positive exactly when x[argmax] is; the
 * argmax's NN_POOL_NOT_POSITIVE bit says it), +0
 * elsewhere and on the ragged edge no window covers. What nn_maxpool_backward_first and
 * nn_relu_maxpool_backward_first write there. */
void nn_maxpool_grad_rows(float *dst, const nn_pool_grad *g, int b, int y, int x0, int n, int o0,
                          int oc);
void nn_conv2d_backward_pooled(float *dw, float *db, float *wext, const nn_pool_grad *g,
                               const float *inp, const nn_conv_shape *s);
/* Plain direct convolution, the reference the fast path is tested against. */
void nn_conv2d_forward_ref(float *out, const float *inp, const float *w, const float *b,
                           const nn_conv_shape *s);

/* ---------------------------------------------------------------------------------------------
 * pooling (NHWC, windows k x k, stride s, no padding; output (B, OH, OW, C)) */
typedef struct nn_pool_shape_s {
    int B, H, W, C, k, stride, OH, OW;
} nn_pool_shape;
int nn_pool_shape_init(nn_pool_shape *s);
/* out = max over the window; argmax (B*OH*OW*C) keeps the input offset inside the image, with
 * NN_POOL_NOT_POSITIVE set where that maximum is not positive (NaN included): a ReLU in front
 * then passes no gradient there, which its backward reads from the argmax alone instead of the
 * pool's output (4 bytes a window fewer); the offset is argmax & NN_POOL_OFFSET. */
#define NN_POOL_NOT_POSITIVE INT32_MIN
#define NN_POOL_OFFSET INT32_MAX
void nn_maxpool_forward(float *out, int32_t *argmax, const float *inp, const nn_pool_shape *s);
void nn_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                         const nn_pool_shape *s);
void nn_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                               const nn_pool_shape *s);
/* maxpool(relu(inp)) in one pass per image: relu_out = max(0, inp) (B, H, W, C) and out/argmax
 * as nn_maxpool_forward over relu_out; the same values as the two layers one after the other.
 * relu_out NULL: the ReLU is not written, the pool takes it straight from inp (the same out and
 * argmax). argmax NULL too (inference): the maximum alone. */
void nn_relu_maxpool_forward(float *relu_out, float *out, int32_t *argmax, const float *inp,
                             const nn_pool_shape *s);
/* The same for image b alone (the pass the fused convolution below runs per image). */
typedef struct {
    float *relu_out, *out;
    int32_t *argmax;
    const float *inp;
    const nn_pool_shape *s;
} nn_relu_pool;
void nn_relu_maxpool_image(const nn_relu_pool *j, int b);
/* The same with image b of the input at x (not at inp) */
void nn_relu_maxpool_image_at(const nn_relu_pool *j, int b, const float *x);
/* Its pool's rows oy0..oy1 alone, relu_out NULL (the ReLU is not written): a convolution pools
 * each row as soon as the rows under its windows are out, while they are in the L1 cache. */
void nn_relu_maxpool_rows_at(const nn_relu_pool *j, int b, const float *x, int oy0, int oy1);
/* conv2d, then relu_out = max(0, out) and pool_out/argmax = maxpool(relu_out) (shape ps), each
 * image pooled by the thread whose product block finished its rows, while they are in cache; the
 * same values as the three layers one after the other. relu_out and argmax NULL as in
 * nn_relu_maxpool_forward. keep_out 0: nothing else wants out; where the windows are read in
 * place (float32, packed weights; bf16's one-channel convolution) each image's rows are then
 * pooled from scratch in cols, or (bf16's one-channel convolution, Winograd's in either precision,
 * in inference) each window as it is made, rather than written to out, which stays as it was. *out_written (or
 * NULL): whether out was written.
 * Returns as nn_conv2d_forward. */
int nn_conv2d_relu_maxpool_forward(float *out, float *cols, float *wext, const float *inp,
                                   const float *w, const float *wp, const uint32_t *wpb,
                                   const float *b, const nn_conv_shape *s,
                                   float *relu_out, float *pool_out, int32_t *argmax,
                                   const nn_pool_shape *ps, int keep_out, int *out_written);
/* Gradient of out = maxpool(relu(inp)) w.r.t. inp, written whole into dinp (nothing there yet):
 * the bits of nn_maxpool_backward_first into the ReLU's gradient, then nn_relu_backward_first.
 * Reads the argmax alone (not inp, nor the pool's out): relu(x) at the window's maximum is
 * positive exactly when x is, which the argmax's NN_POOL_NOT_POSITIVE bit says. */
void nn_relu_maxpool_backward_first(float *dinp, const float *dout, const int32_t *argmax,
                                    const nn_pool_shape *s);
/* out = mean over the window */
void nn_avgpool_forward(float *out, const float *inp, const nn_pool_shape *s);
void nn_avgpool_backward(float *dinp, const float *dout, const nn_pool_shape *s);
/* global average pooling: out[b,c] = mean_{y,x} inp[b,y,x,c]; (B, HW, C) -> (B, C) */
void nn_gap_forward(float *out, const float *inp, int B, int HW, int C);
void nn_gap_backward(float *dinp, const float *dout, int B, int HW, int C);

/* ---------------------------------------------------------------------------------------------
 * elementwise activations over n values */
void nn_relu_forward(float *out, const float *inp, size_t n);                 /* max(0, x) */
void nn_relu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void nn_relu_backward_first(float *dinp, const float *dout, const float *inp, size_t n);
void nn_gelu_forward(float *out, const float *inp, size_t n);   /* x * Phi(x), exact (erf) form */
void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void nn_tanh_forward(float *out, const float *inp, size_t n);                  /* tanh(x) */
void nn_tanh_backward(float *dinp, const float *dout, const float *out, size_t n);
void nn_sigmoid_forward(float *out, const float *inp, size_t n);               /* 1/(1+e^-x) */
void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);

/* log sum_k exp(x_k / T) of one row, in double with the maximum taken out, so no exp overflows
 * for any finite x (softmax, log-softmax and every loss over logits use it). */
double nn_logsumexp(const float *x, int K, double T);
/* p = softmax(x / T) of one row, in floats from double exps: p_k = exp(x_k / T - lse); returns
 * lse = nn_logsumexp(x, K, T). p may be x (each value is read before it is written). */
double nn_softmax_row(float *p, const float *x, int K, double T);
/* nn_softmax_row of R rows (x and p (R, K); p may be x), each row's lse in lse[r] (or NULL): the
 * same bits, with short rows taken many at a time */
void nn_softmax_rows(float *p, double *lse, const float *x, int R, int K, double T);
/* Rows of R that a thread takes into nn_softmax_rows at a time: up to 64, fewer where that
 * leaves a thread without rows (par: the rows run on the threads) */
int nn_softmax_piece(int R, int par);
/* e = exp(v) of n doubles, in vector code (within about one ulp of libm's; libm's own outside
 * [-708, 709] and for NaN) */
void nn_exp_many(double *e, const double *v, size_t n);

/* softmax / log-softmax over the last axis of (R, K) rows, stable for any finite logits */
void nn_softmax_forward(float *out, const float *inp, int R, int K);
void nn_softmax_backward(float *dinp, const float *dout, const float *out, int R, int K);
/* nn_softmax_forward in float on the calling thread, for inference's probabilities: within a
 * few ulp of it and several times faster (no double exp). */
void nn_softmax_infer(float *out, const float *inp, int R, int K);
void nn_logsoftmax_forward(float *out, const float *inp, int R, int K);
void nn_logsoftmax_backward(float *dinp, const float *dout, const float *out, int R, int K);

/* ---------------------------------------------------------------------------------------------
 * batch norm over (N, C) where N = B*H*W (NHWC): y = gamma * (x - mean) * rstd + beta.
 * Train: batch statistics (biased variance), running stats updated with momentum and the
 * unbiased variance (PyTorch convention); saves mean and rstd (C) for backward.
 * Eval: running statistics. */
void nn_batchnorm_forward_train(float *out, float *mean, float *rstd, float *run_mean,
                                float *run_var, const float *inp, const float *gamma,
                                const float *beta, int N, int C, float eps, float momentum);
void nn_batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                               const float *run_mean, const float *run_var, int N, int C,
                               float eps);
void nn_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *gamma, int N, int C);

/* layer norm over the last axis of (R, C): y = gamma * (x - mean_r) * rstd_r + beta */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int R, int C, float eps);
void nn_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *gamma, int R, int C);

/* ---------------------------------------------------------------------------------------------
 * dropout (inverted): out = x * mask, mask = 0 with probability p else 1/(1-p). The mask of row b
 * comes from the RNG stream (seed, example[b], step), so it does not depend on threads. */
void nn_dropout_forward(float *out, float *mask, const float *inp, int B, int D, float p,
                        uint64_t seed, const uint64_t *example, uint64_t step, uint32_t salt);
void nn_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* ---------------------------------------------------------------------------------------------
 * embedding bag: out[b] = reduce_{l: ids[b,l] >= 0} table[ids[b,l]], reduce = mean or sum.
 * ids (B, L) int32 with -1 as padding; table (V, D); an empty row gives zeros. */
typedef enum { NN_BAG_MEAN, NN_BAG_SUM } nn_bag_mode;
void nn_embbag_forward(float *out, const int32_t *ids, const float *table, int B, int L, int D,
                       nn_bag_mode mode);
void nn_embbag_backward(float *dtable, const float *dout, const int32_t *ids, int B, int L, int D,
                        nn_bag_mode mode);

/* ---------------------------------------------------------------------------------------------
 * bilinear upsampling by an integer factor f (NHWC), half-pixel centres (align_corners=False):
 * (B, H, W, C) -> (B, H*f, W*f, C) */
void nn_upsample_forward(float *out, const float *inp, int B, int H, int W, int C, int f);
void nn_upsample_backward(float *dinp, const float *dout, int B, int H, int W, int C, int f);

/* ---------------------------------------------------------------------------------------------
 * fake quantisation (symmetric, per tensor, b bits): s = max|x| / (2^(b-1) - 1),
 * out = s * round(x / s); backward is the straight-through estimator (gradient passes unchanged,
 * since every x lies inside the range that sets s). */
float nn_fakequant_forward(float *out, const float *inp, size_t n, int bits);
void nn_fakequant_backward(float *dinp, const float *dout, size_t n);

/* ---------------------------------------------------------------------------------------------
 * helpers */
void nn_add_inplace(float *dst, const float *src, size_t n);   /* dst += src */
void nn_add_first(float *dst, const float *src, size_t n);     /* dst = 0 + src */

#endif
