/* nn/model's inference engine (nn_model_pack, nn_model_infer) against the eval forward: the same
 * bits over the layer kinds, batch sizes and chunkings it takes, and batch norm folded at
 * packing within float rounding of it. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/model_internal.h"

/* Inference (weights packed once, per-image runs of layers in chunks, spread over threads) gives
 * every head's output bit for bit as the plain eval forward does: convolutions with and without
 * bias, pointwise and strided, batch norm (after a convolution without bias: not folded), the
 * fused relu -> pool, fake quantisation (a
 * batch-wide scale) inside a run of per-image layers, a residual add, an early exit alone, a
 * ReLU fused with its pool that is a head itself, a model with no node marked a head; batches of
 * one, a few and several chunks (an uneven last one), and models whose images are each a chunk
 * of their own; 1 and 2 threads. */
static void test_infer_same_bits(void **state)
{
    (void)state;
    static const struct {
        const char *desc;
        int h, w, c, batches[3];
    } models[] = {
        {"input h=12 w=10 c=3; conv2d out=8 k=3 pad=1 bias=0; batchnorm; relu; maxpool k=2;"
         "conv2d out=6 k=1; relu; fakequant bits=6; conv2d out=5 k=3 stride=2 pad=1 bias=0;"
         "tanh name=t; flatten; linear out=7 name=exit head; conv2d out=5 k=3 pad=1 from=t;"
         "add with=t; gap; linear out=3 head",
         12, 10, 3, {1, 3, 64}},
        {"input h=64 w=64 c=1; conv2d out=16 k=3 pad=1; relu name=r head; maxpool k=2;"
         "conv2d out=8 k=3 pad=1; relu; gap; linear out=4 head",
         64, 64, 1, {1, 2, 5}},
        /* no node marked a head: the last one is, inside the run, an image a chunk; a flatten
         * (passed on elsewhere) */
        {"input h=64 w=64 c=1; conv2d out=16 k=3 pad=1; relu; conv2d out=5 k=1", 64, 64, 1,
         {1, 2, 5}},
        {"input h=64 w=64 c=1; conv2d out=16 k=3 pad=1; relu; conv2d out=5 k=1; gap; flatten",
         64, 64, 1, {1, 2, 5}},
    };
    const int threads = xd_threads_get();
    xd_err e;
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        nn_model ref, inf;
        TU_OK(nn_model_build(&ref, models[k].desc, 64, 9, &e));
        TU_OK(nn_model_build(&inf, models[k].desc, 64, 9, &e));
        tu_fill_uniform(ref.state, ref.n_state, 0.5f, 1.5f, 10); /* running means, variances */
        memcpy(inf.state, ref.state, sizeof(float) * ref.n_state);
        TU_OK(nn_model_pack(&inf, &e));
        const size_t per = (size_t)models[k].h * models[k].w * models[k].c;
        float *x = malloc(sizeof(float) * 64 * per);
        assert_non_null(x);
        tu_fill_uniform(x, 64 * per, -1, 1, 11);
        uint8_t *need = calloc((size_t)ref.n_nodes, 1);
        assert_non_null(need);
        const int exit = nn_model_find(&ref, "exit");
        if (exit >= 0) nn_model_needs(&ref, exit, need);
        for (int bi = 0; bi < 3; bi++)
            for (int th = 1; th <= 2; th++) {
                const int B = models[k].batches[bi];
                xd_threads_set(th);
                nn_model_forward_some(&ref, x, B, NULL, NULL);
                nn_model_infer(&inf, x, B, NULL);
                const int dflt = nn_model_default_head(&ref);
                for (int i = 0; i < ref.n_nodes; i++)
                    if ((ref.nodes[i].head || i == dflt) &&
                        memcmp(nn_model_out(&ref, i), nn_model_out(&inf, i),
                               sizeof(float) * (size_t)B * ref.nodes[i].act_n) != 0)
                        fail_msg("model %zu, batch %d, %d threads: node %s differs", k, B, th,
                                 ref.nodes[i].name);
                if (exit < 0) continue;
                memset(inf.nodes[exit].out, 0, sizeof(float) * (size_t)B * ref.nodes[exit].act_n);
                nn_model_infer(&inf, x, B, need);
                assert_memory_equal(ref.nodes[exit].out, inf.nodes[exit].out,
                                    sizeof(float) * (size_t)B * ref.nodes[exit].act_n);
            }
        free(x);
        free(need);
        nn_model_free(&ref);
        nn_model_free(&inf);
    }
    xd_threads_set(threads);
}

/* Batch norm folded into the layer before it at packing (conv with bias, pointwise conv, linear;
 * then relu -> maxpool fused into the conv through the norm) gives every head's output as the
 * plain eval forward, with its separate norm, within float rounding: 1e-5 of the head's largest
 * value. Random running statistics far from 0 and 1, so a fold that drops a term fails. */
static void test_infer_folds_batchnorm(void **state)
{
    (void)state;
    static const char *models[] = {
        "input h=10 w=9 c=3; conv2d out=16 k=3 pad=1; batchnorm; relu; maxpool k=2;"
        "conv2d out=8 k=1 name=pw; batchnorm; relu name=r head; conv2d out=6 k=3 stride=2;"
        "batchnorm; tanh; flatten; linear out=12; batchnorm; relu; linear out=5 head",
        "input h=1 w=1 c=30; flatten; linear out=40; batchnorm; relu; linear out=7 head",
    };
    const int threads = xd_threads_get(), batches[] = {1, 7, 64};
    xd_err e;
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        nn_model ref, inf;
        TU_OK(nn_model_build(&ref, models[k], 64, 9, &e));
        TU_OK(nn_model_build(&inf, models[k], 64, 9, &e));
        /* gammas and betas, then running means and variances, away from the identity */
        for (int i = 0; i < ref.n_nodes; i++) {
            const nn_node *nd = &ref.nodes[i];
            if (nd->kind != NN_BATCHNORM) continue;
            tu_fill_uniform(ref.param + nd->w_off, (size_t)nd->ic, 0.5f, 2.0f, 20 + i);
            tu_fill_uniform(ref.param + nd->b_off, (size_t)nd->ic, -1.0f, 1.0f, 40 + i);
            tu_fill_uniform(ref.state + nd->s_off, (size_t)nd->ic, -0.5f, 0.5f, 60 + i);
            tu_fill_uniform(ref.state + nd->s_off + nd->ic, (size_t)nd->ic, 0.05f, 3.0f, 80 + i);
        }
        memcpy(inf.param, ref.param, sizeof(float) * ref.n_param);
        memcpy(inf.state, ref.state, sizeof(float) * ref.n_state);
        TU_OK(nn_model_pack(&inf, &e));
        int folded = 0;
        for (int i = 0; i < inf.n_nodes; i++) folded += inf.nodes[i].bn_fold != 0;
        assert_int_equal(folded, k == 0 ? 4 : 1);
        const size_t per = (size_t)ref.h * ref.w * ref.c;
        float *x = malloc(sizeof(float) * 64 * per);
        assert_non_null(x);
        tu_fill_uniform(x, 64 * per, -1, 1, 11);
        for (int bi = 0; bi < 3; bi++)
            for (int th = 1; th <= 2; th++) {
                const int B = batches[bi];
                xd_threads_set(th);
                nn_model_forward_some(&ref, x, B, NULL, NULL);
                nn_model_infer(&inf, x, B, NULL);
                for (int i = 0; i < ref.n_nodes; i++) {
                    if (!ref.nodes[i].head) continue;
                    const size_t n = (size_t)B * ref.nodes[i].act_n;
                    float most = 0.0f, worst = 0.0f;
                    for (size_t j = 0; j < n; j++) {
                        most = fmaxf(most, fabsf(ref.nodes[i].out[j]));
                        worst = fmaxf(worst, fabsf(ref.nodes[i].out[j] - inf.nodes[i].out[j]));
                    }
                    if (!(worst <= 1e-5f * most))
                        fail_msg("model %zu, batch %d, %d threads: head %s differs by %g (largest "
                                 "value %g)", k, B, th, ref.nodes[i].name, (double)worst,
                                 (double)most);
                }
            }
        free(x);
        nn_model_free(&ref);
        nn_model_free(&inf);
    }
    xd_threads_set(threads);
}

/* nn_model_infer_reading: a node read after inference (a decoder's tap, a feature inside a run
 * of per-image layers taken an image at a time) comes whole, as the eval forward gives it, and
 * so does the default head, in a model with no node marked a head, when only the tap is asked
 * for (marking it a head would have made it the default), and in one whose last node is marked;
 * the marks are as they were. */
static void infer_reading(const char *desc)
{
    enum { B = 4 };
    const int threads = xd_threads_get();
    xd_err e;
    nn_model ref, inf;
    TU_OK(nn_model_build(&ref, desc, B, 9, &e));
    TU_OK(nn_model_build(&inf, desc, B, 9, &e));
    TU_OK(nn_model_pack(&inf, &e));
    float *x = malloc(sizeof(float) * B * 64 * 64);
    assert_non_null(x);
    tu_fill_uniform(x, (size_t)B * 64 * 64, -1, 1, 12);
    const int c = nn_model_find(&ref, "c"), feat = nn_model_find(&ref, "feat");
    const int dflt = nn_model_default_head(&ref);
    assert_int_equal(dflt, ref.n_nodes - 1);
    const int marked = inf.nodes[dflt].head;
    nn_model_forward_some(&ref, x, B, NULL, NULL);
    const int asks[][2] = {{c, c}, {feat, c}, {dflt, c}};
    for (int th = 1; th <= 2; th++)
        for (int k = 0; k < 3; k++) {
            xd_threads_set(th);
            for (int i = 0; i < inf.n_nodes; i++) /* nothing left from an earlier call */
                memset(inf.nodes[i].out, 0, sizeof(float) * B * inf.nodes[i].act_n);
            nn_model_infer_reading(&inf, x, B, NULL, asks[k], k == 0 ? 1 : 2);
            for (int i = 0; i < inf.n_nodes; i++)
                assert_int_equal(inf.nodes[i].head, i == dflt ? marked : 0);
            const int want[] = {asks[k][0], asks[k][1], dflt};
            for (int w = 0; w < 3; w++)
                if (memcmp(nn_model_out(&ref, want[w]), nn_model_out(&inf, want[w]),
                           sizeof(float) * B * ref.nodes[want[w]].act_n) != 0)
                    fail_msg("%d threads, reading %s: %s differs", th, inf.nodes[asks[k][0]].name,
                             inf.nodes[want[w]].name);
        }
    free(x);
    nn_model_free(&ref);
    nn_model_free(&inf);
    xd_threads_set(threads);
}

static void test_infer_reading(void **state)
{
    (void)state;
    infer_reading("input h=64 w=64 c=1; conv2d out=16 k=3 pad=1; relu name=r; "
                  "conv2d out=8 k=3 pad=1 name=c; gap name=feat; conv2d out=5 k=1 from=c");
    infer_reading("input h=64 w=64 c=1; conv2d out=16 k=3 pad=1; relu name=r; "
                  "conv2d out=8 k=3 pad=1 name=c; gap name=feat; conv2d out=5 k=1 from=c head");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_infer_same_bits),
        cmocka_unit_test(test_infer_folds_batchnorm),
        cmocka_unit_test(test_infer_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
