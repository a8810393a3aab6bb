/* A 3 x 3 convolution's case for the bf16 convolution tests (see convfix.h). */
#include "tests/support/convfix.h"

#include "tests/support/testutil.h"

#include <stdlib.h>

#include "core/mem.h"

conv3_case conv3_case_make(int B, int H, int W, int C, int OC, int pad, int bias, uint64_t seed)
{
    conv3_case k = {.s = {.B = B, .H = H, .W = W, .C = C, .OC = OC, .KH = 3, .KW = 3,
                          .stride = 1, .pad = pad, .bias = bias, .winograd = 1}};
    assert_int_equal(nn_conv_shape_init(&k.s), 0);
    const size_t n_in = (size_t)B * H * W * C, n_w = (size_t)OC * 9 * C;
    k.n_out = (size_t)B * k.s.OH * k.s.OW * OC;
    k.inp = xd_xmalloc(sizeof(float) * n_in);
    k.w = xd_xmalloc(sizeof(float) * n_w);
    k.b = bias ? xd_xmalloc(sizeof(float) * OC) : NULL;
    tu_fill_uniform(k.inp, n_in, -1.0f, 1.0f, seed);
    tu_fill_uniform(k.w, n_w, -0.5f, 0.5f, seed + 1);
    if (bias) tu_fill_uniform(k.b, OC, -0.5f, 0.5f, seed + 2);
    return k;
}

void conv3_case_free(conv3_case *k)
{
    free(k->inp);
    free(k->w);
    free(k->b);
}

float conv3_in_at(const conv3_case *k, int b, int y, int x, int c)
{
    const nn_conv_shape *s = &k->s;
    if (y < 0 || y >= s->H || x < 0 || x >= s->W) return 0.0f;
    return k->inp[(((size_t)b * s->H + y) * s->W + x) * s->C + c];
}
