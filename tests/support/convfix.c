/* A 3 x 3 convolution's case for the bf16 convolution tests (see convfix.h). */
#include "tests/support/convfix.h"

#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "nn/conv_wino.h"

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

void conv3_check_threads(conv3_forward fwd, const char *what)
{
    const int threads = xd_threads_get();
    conv3_case k = conv3_case_make(7, 10, 10, 32, 32, 1, 1, 77);
    float *one = xd_xmalloc(sizeof(float) * k.n_out), *more = xd_xmalloc(sizeof(float) * k.n_out);
    xd_threads_set(1);
    fwd(one, &k, NULL);
    for (int t = 2; t <= 3; t++) {
        xd_threads_set(t);
        fwd(more, &k, NULL);
        if (memcmp(one, more, sizeof(float) * k.n_out) != 0)
            fail_msg("%s: %d threads' bits differ from one thread's", what, t);
    }
    xd_threads_set(threads);
    free(one);
    free(more);
    conv3_case_free(&k);
}

void conv3_check_pooled(conv3_forward fwd, const char *what)
{
    const int threads = xd_threads_get();
    for (int oc = 16; oc <= 44; oc += 28) {
        conv3_case k = conv3_case_make(3, 8, 6, 32, oc, 1, 1, 90 + (uint64_t)oc);
        k.inp[5 * 32 + 3] = NAN; /* a window of image 0 all NaN through the transforms */
        for (int c = 0; c < oc; c++) k.b[c] = c % 3 == 0 ? -8.0f : k.b[c]; /* negative */
        nn_pool_shape ps = {.B = 3, .H = k.s.OH, .W = k.s.OW, .C = oc, .k = 2, .stride = 2};
        assert_int_equal(nn_pool_shape_init(&ps), 0);
        const size_t np = (size_t)3 * ps.OH * ps.OW * oc;
        float *out = xd_xmalloc(sizeof(float) * k.n_out), *plain = xd_xmalloc(sizeof(float) * k.n_out);
        float *pooled = xd_xmalloc(sizeof(float) * np), *want = xd_xmalloc(sizeof(float) * np);
        const nn_relu_pool pool = {NULL, pooled, NULL, out, &ps};
        assert_true(nn_bwino_pools(&k.s, &pool));
        fwd(plain, &k, NULL);
        nn_relu_maxpool_forward(NULL, want, NULL, plain, &ps);
        for (int t = 1; t <= 2; t++) {
            xd_threads_set(t);
            memset(pooled, 0xff, sizeof(float) * np);
            fwd(out, &k, &pool);
            assert_memory_equal(out, plain, sizeof(float) * k.n_out);
            if (memcmp(pooled, want, sizeof(float) * np) != 0)
                fail_msg("%s, %d outputs, %d threads: the pool's bits differ", what, oc, t);
            /* the outputs not kept (out NULL): the same pool */
            memset(pooled, 0xff, sizeof(float) * np);
            fwd(NULL, &k, &pool);
            assert_memory_equal(pooled, want, sizeof(float) * np);
        }
        xd_threads_set(threads);
        int32_t am[1];
        nn_relu_pool other = pool;
        other.argmax = am;
        assert_false(nn_bwino_pools(&k.s, &other));
        other = pool;
        other.relu_out = plain;
        assert_false(nn_bwino_pools(&k.s, &other));
        nn_pool_shape p3 = ps;
        p3.k = p3.stride = 3;
        other = pool;
        other.s = &p3;
        assert_false(nn_bwino_pools(&k.s, &other));
        nn_conv_shape odd = k.s;
        odd.OH = 7;
        assert_false(nn_bwino_pools(&odd, &pool));
        free(out);
        free(plain);
        free(pooled);
        free(want);
        conv3_case_free(&k);
    }
}
