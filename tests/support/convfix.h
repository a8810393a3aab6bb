/* A 3 x 3 stride-1 convolution's case for the bf16 convolution tests (test_conv_wino,
 * test_conv_bfirst): its shape as an evaluation forward's (winograd set), and its input, weights
 * and bias filled from a seed. */
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

#endif
