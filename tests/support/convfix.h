/* A 3 x 3 stride-1 convolution's case for the evaluation convolution tests (test_conv_wino,
 * test_conv_wino32, test_conv_bfirst): its shape as an evaluation forward's (winograd set), and its
 * input, weights and bias filled from a seed; and the checks the Winograd tests share. */
#ifndef XD_TESTS_CONVFIX_H
#define XD_TESTS_CONVFIX_H

#include <stddef.h>
#include <stdint.h>

#include "nn/layers.h"

typedef struct {
    nn_conv_shape s;
    float *inp, *w, *b; /* (B, H, W, C), (OC, 3, 3, C), (OC) or NULL */
    size_t n_out;       /* outputs: B * OH * OW * OC */
} conv3_case;

/* Input uniform in [-1, 1) from seed, weights and bias in [-0.5, 0.5) from seed + 1, seed + 2 */
conv3_case conv3_case_make(int B, int H, int W, int C, int OC, int pad, int bias, uint64_t seed);
void conv3_case_free(conv3_case *k);
/* Input value (b, y, x, c): 0 in the padding */
float conv3_in_at(const conv3_case *k, int b, int y, int x, int c);

/* A forward under test of case k: out (or NULL) and pool (or NULL) as nn_bwino_forward takes them,
 * the weights packed for the call */
typedef void (*conv3_forward)(float *out, const conv3_case *k, const nn_relu_pool *pool);
/* Fails, naming what, unless fwd gives one thread's bits at 2 and 3 threads */
void conv3_check_threads(conv3_forward fwd, const char *what);
/* Fails, naming what, unless fwd's pool made tile by tile (whole vectors of outputs, and a tail
 * past them) gives the bits nn_relu_maxpool_forward gives from its output, a NaN window and
 * negative ones included, at 1 and 2 threads, with out written as without the pool or not at all;
 * and checks what nn_bwino_pools refuses (an argmax wanted, a ReLU written, other windows, odd
 * rows). */
void conv3_check_pooled(conv3_forward fwd, const char *what);

#endif
