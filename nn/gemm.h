/* Matrix products for the layers: C = alpha * op(A) @ op(B) + beta * C, row-major.
 *
 * Our own packed kernel (gemm.c), vectorised for the CPU the program is built for, so the speed
 * does not hang on which BLAS kernel the library picks. Each element of C is one fused
 * multiply-add chain over k whose blocks along K depend on K alone, so an element's bits do not
 * depend on how C is cut up: the product is split into blocks along the longer side of C, spread
 * over our OpenMP threads (one or two blocks per thread for nn_sgemm; a number fixed by the shape
 * for nn_sgemm_rows, so its callers' work runs on the same rows whatever the thread count), and
 * the results are bit-identical at 1, 2 or more threads. */
#ifndef XD_NN_GEMM_H
#define XD_NN_GEMM_H

#include <stddef.h>

void nn_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* nn_sgemm (the same bits) for a product whose rows of C are the rows of a parameter tensor, as a
 * linear layer's weight gradient: C split among the threads by its rows, even when C is wider
 * than tall, whenever each thread gets 64 of them and op(B) is untransposed with K blocks short
 * enough to be read in place (at most 256 long: a batch of up to 512 for a weight gradient);
 * otherwise as nn_sgemm, where each row block would pack all of op(B). A thread then writes the
 * gradient rows of the weights whose outputs its share of the forward computed (a linear layer's
 * forward splits its outputs' columns, the weight rows) and that its share of the optimizer's
 * update reads: the rows stay in that core's cache from one pass to the next, where a split by
 * columns had each core fetch half of them from the other's. */
void nn_sgemm_param_rows(int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc);

/* The products' packing buffers: at least bytes, 64-byte aligned, the calling thread's own in
 * each slot, kept (and grown when a call needs more) for the thread's life, so that a product
 * does not pay for fresh pages every call; freed when the thread ends. What a slot holds does
 * not outlive the next call for it on that thread. NN_BUF_BCONV_GRID: a bf16 convolution's grid
 * of images (nn/conv_bf16.c), which inference asks for an image at a time, and Winograd's
 * scratch (nn/conv_wino.c); NN_BUF_WINO_PACK: a Winograd forward's weights transformed and
 * packed for the call, where the caller has none packed (a training forward). */
enum {
    NN_BUF_SGEMM_A,
    NN_BUF_SGEMM_B,
    NN_BUF_BGEMM_A,
    NN_BUF_BGEMM_B,
    NN_BUF_BCONV_GRID,
    NN_BUF_WINO_PACK,
    NN_BUF_COUNT
};
void *nn_thread_buf(int slot, size_t bytes);

/* op(B) (K, N) packed once into the kernel's own panel layout, for an operand many products
 * reuse (a layer's weights at inference): nn_sgemm_packed_size(N, K) floats at Bp. */
size_t nn_sgemm_packed_size(int N, int K);
void nn_sgemm_pack_b(int trans_b, int N, int K, const float *B, int ldb, float *Bp);
/* nn_sgemm with op(B) given pre-packed: the same bits, without packing op(B) on every call.
 * Split over threads by rows of C only. */
void nn_sgemm_packed(int trans_a, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *Bp, float beta, float *C, int ldc);

/* nn_sgemm_packed on the calling thread alone, for callers that split the work themselves. */
void nn_sgemm_packed_serial(int trans_a, int M, int N, int K, float alpha, const float *A,
                            int lda, const float *Bp, float beta, float *C, int ldc);

/* C (M, N) = op(A) @ op(B) on one thread, with op(A) gathered: element (i, k) at
 * A[i * lda + koff[k]] (a convolution's windows read in place from its image), op(B) pre-packed.
 * The same bits as nn_sgemm over the same values laid out as a matrix. */
void nn_sgemm_gather(int M, int N, int K, const float *A, int lda, const int *koff,
                     const float *Bp, float *C, int ldc);

/* C (M + ones, N) = beta * C + op(A) @ B over one K block (K at most nn_sgemm_k_most of the
 * product's whole K), on the calling thread, with op(A) gathered by rows and columns: element
 * (i, k) at A[roff[i] + koff[k]] for i < M, then `ones` rows of ones; B (K, N) row-major, ldb
 * apart. Rows whose offsets run on (roff[i + 1] = roff[i] + 1) share a tile, so a k's values of
 * a tile lie side by side: a convolution's weight gradient computed transposed, window element by
 * output channel, with the windows read in place from the padded images (k a pixel, koff where
 * its window starts, roff where element i lies in a window). Each element is the chain nn_sgemm
 * gives inside a K block, so calls over its K blocks in order (beta 1 after the first) give
 * nn_sgemm's bits. */
void nn_sgemm_gather_rows(int M, int ones, int N, int K, const float *A, const int *roff,
                          const int *koff, const float *B, int ldb, float beta, float *C, int ldc);

/* One output row of a stride-1 convolution with 3 x 3 windows and few input channels (C <= 4),
 * a panel of the packed weights at a time: pixel ox's window row ky at A[ky * row + ox * C] (a
 * zero-padded image), its OC outputs to out[ox * ldo], with the bias (the packed operand's last
 * row, K = 9 C + bias) added. The same bits as nn_sgemm_gather over those windows with a
 * ones column for the bias. Returns 0 (nothing done) for a shape it does not take. */
int nn_sgemm_conv_row(int OW, int OC, int C, int KH, int KW, const float *A, size_t row,
                      int bias, const float *Bp, float *out, int ldo);
/* Whether nn_sgemm_conv_row takes that shape (then it does for every row of the image). */
int nn_sgemm_conv_row_takes(int OW, int OC, int C, int KH, int KW);

/* The weight gradient of a stride-1 convolution with 3 x 3 windows on one input channel, a row
 * of n output pixels at a time: for each pixel i (window row ky at a[ky * row + i], a zero-padded
 * image; its OC output gradients at dy[i * ldy]) and each k of the window, then the bias (when
 * bias), acc[k * OC + o] = fma(window value k, dy[o], acc[k * OC + o]): the chains nn_sgemm
 * gives [dw | db] = dout^T @ [cols | 1] inside one K block, the windows read in place. acc: 10 x
 * OC running sums (9 x OC without a bias), ld OC. For OC a multiple of the vector width (nn_sgemm_conv_dw_takes). */
int nn_sgemm_conv_dw_takes(int OC, int C, int KH, int KW);
void nn_sgemm_conv_dw_row(int n, int OC, const float *a, size_t row, const float *dy, size_t ldy,
                          int bias, float *acc);
/* The blocks along K of a product over K (a function of K alone): how many, and block kb's first
 * row p0 and its length kc. A kernel that sums in these blocks, C = first block's sum, then
 * C += each next one in order, gives nn_sgemm's bits. */
int nn_sgemm_k_blocks(int K);
void nn_sgemm_k_block(int K, int kb, int *p0, int *kc);
/* the longest of those blocks */
int nn_sgemm_k_most(int K);

/* What the kernel was built for, e.g. "AVX-512, 12x32 tiles" (for --version, run summaries and
 * benchmarks). */
/* A product with nothing to multiply (K <= 0 or alpha == 0): C = beta * C (0 when beta is 0; A
 * and B are not read, as BLAS does) and 1; else 0 and C untouched. Every kernel starts with it. */
int nn_gemm_trivial(int M, int N, int K, float alpha, float beta, float *C, int ldc);
/* Whether a kernel of MR x NR tiles computes an M x N product as C^T = op(B)^T @ op(A)^T: the
 * tiles cover C padded to whole MR x NR blocks, and the transposed product swaps which side is
 * padded to MR and which to NR. Taken when that saves an eighth of the work, which pays for
 * writing C across its rows (the same products per element either way, so the same bits). */
int nn_gemm_transposes(int M, int N, int MR, int NR);
const char *nn_sgemm_kernel(void);
/* The arithmetic ceiling of the kernel's vector FMA on one core: `rounds` rounds of 12 independent
 * chains of it, nothing loaded or stored; *flops gets the flops done (2 per lane per FMA). The
 * return value depends on every chain (so none is left out). Timed by `bench gemm`. */
float nn_sgemm_peak_run(long rounds, double *flops);

/* The plain product, summed in double: the reference the kernel is tested against. */
void nn_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Rows of C (or columns, when C is split by them) a block takes at least: thinner blocks are not
 * worth a thread (the splits of both kernels, float32 and bf16; nn_sgemm may halve its blocks so
 * that threads take them over from each other, see nn_gemm_split) */
#define NN_GEMM_MIN_ROWS 64

/* Blocks nn_sgemm_rows uses for an M x N x K product (nn_sgemm: one or two a thread). */
int nn_sgemm_blocks(int M, int N, int K);
/* nn_sgemm_blocks, but no more than the threads (a call whose blocks need no fixed number) */
int nn_sgemm_thread_blocks(int M, int N, int K);

/* nn_sgemm (the same blocks, so the same bits) with work on C's row blocks around the products,
 * done by the thread that owns the block while its rows are in cache: before(ctx, r0, r1) just
 * ahead of the block's product (e.g. to fill those rows of A), after(ctx, r0, r1) once rows r0..r1
 * of C are final. When C is split by columns instead, every before runs (in parallel) ahead of
 * all products and after runs once over all rows at the end. Either may be NULL. Blocks run in
 * parallel, so each call must write only what its own rows decide. Bp: op(B) pre-packed
 * (nn_sgemm_pack_b; B and ldb unused), or NULL. */
typedef void (*nn_sgemm_rows_fn)(void *ctx, int r0, int r1);
void nn_sgemm_rows(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, const float *Bp, float beta, float *C,
                   int ldc, nn_sgemm_rows_fn before, nn_sgemm_rows_fn after, void *ctx);
/* How many row blocks nn_sgemm_rows hands to after (1 when C is split by columns), and the rows
 * r0..r1 of block i of nb along a side of length len. */
int nn_sgemm_row_blocks(int M, int N, int K);
void nn_sgemm_block_range(int len, int nb, int i, int *r0, int *r1);

/* One kernel's product on one thread (C = alpha op(A) op(B) + beta C; Bp: its own pre-packed
 * op(B), or NULL), and the driver every kernel shares: the product in nb blocks of C's rows
 * (by_rows; Bp then serves every block) or columns, run in parallel, before and after as
 * nn_sgemm_rows. With more blocks than threads, each thread first takes the blocks of its own
 * share, in order, then those of a slower thread not yet begun (xd_runs_take). */
typedef void (*nn_gemm_single_fn)(int trans_a, int trans_b, int M, int N, int K, float alpha,
                                  const float *A, int lda, const float *B, int ldb, const void *Bp,
                                  float beta, float *C, int ldc);
void nn_gemm_split(nn_gemm_single_fn single, int trans_a, int trans_b, int M, int N, int K,
                   float alpha, const float *A, int lda, const float *B, int ldb, const void *Bp,
                   float beta, float *C, int ldc, int nb, int by_rows, nn_sgemm_rows_fn before,
                   nn_sgemm_rows_fn after, void *ctx);

#endif
