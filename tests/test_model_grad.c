/* nn/model: gradients through a whole graph with branches, heads and a residual add, against
 * finite differences, the fused ReLU and pool against them apart, taps, the flatten and the
 * input gradient. The description, learning and bit-identical runs: test_model.c. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/runtime.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/model_internal.h"

/* Its weights' gradient (the model's first parameters) against the same model with a second
 * reader of the ReLU r, which keeps the ReLU and pool apart, bit for bit, at one and two threads;
 * poison: the conv's own output gradient is filled with NaN after the forward and must stay
 * so (the gradient went straight from the pool's), or -1 to skip that check. */
static void check_grad_against_split(const char *base, int B, int poison)
{
    char split[512];
    snprintf(split, sizeof split, "%s; gap from=r", base);
    nn_model m[2];
    xd_err e;
    TU_OK(nn_model_build(&m[0], base, B, 7, &e));
    TU_OK(nn_model_build(&m[1], split, B, 7, &e));
    assert_true(m[0].nodes[1].relu_pool && !m[1].nodes[1].relu_pool);
    const size_t nx = (size_t)B * m[0].h * m[0].w, nc = (size_t)B * m[0].nodes[0].act_n;
    float *x = malloc(sizeof(float) * nx), r[64 * 3];
    XD_ASSERT(B <= 64);
    tu_fill_uniform(x, nx, -1, 1, 5);
    tu_fill_uniform(r, (size_t)B * 3, -1, 1, 6);
    const int threads0 = xd_threads_get();
    for (int threads = 1; threads <= 2; threads++) {
        xd_threads_set(threads);
        for (int k = 0; k < 2; k++) {
            nn_model_forward(&m[k], x, B, NULL);
            nn_model_zero_grad(&m[k]);
            if (k == 0 && poison >= 0)
                for (size_t i = 0; i < nc; i++) m[0].nodes[0].dout[i] = NAN;
            memcpy(nn_model_dout(&m[k], nn_model_find(&m[k], "out")), r, sizeof(float) * B * 3);
            nn_model_backward(&m[k]);
        }
        assert_int_equal(memcmp(m[0].grad, m[1].grad, sizeof(float) * m[0].n_param), 0);
        for (size_t i = 0; poison >= 0 && i < nc; i++) assert_true(isnan(m[0].nodes[0].dout[i]));
    }
    xd_threads_set(threads0);
    free(x);
    nn_model_free(&m[0]);
    nn_model_free(&m[1]);
}

/* A first convolution on one channel followed by ReLU and max pool takes its weight gradient
 * straight from the pool's (nn_conv2d_backward_pooled): the same bits as with the layers kept
 * apart. 8 images of 9 x 7: two K blocks (split over two threads), and a ragged edge no window
 * covers. With another reader of the convolution between it and the pool, whose gradient adds
 * into the convolution's, the gradient is made whole first, as before. */
static void test_conv_weight_grad_from_pool(void **state)
{
    (void)state;
    static const char *base = "input h=9 w=7 c=1; conv2d out=32 k=3 pad=1; relu name=r; maxpool k=2;"
                              "flatten; linear out=3 name=out head";
    enum { B = 8 };
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, base, B, 7, &e));
    const nn_conv_shape cs = nn_node_conv_shape(&m.nodes[0], B);
    const nn_pool_shape ps = nn_node_pool_shape(&m.nodes[2], B);
    assert_true(nn_conv2d_takes_pooled(&cs, &ps));
    nn_model_free(&m);
    check_grad_against_split(base, B, 1);
    check_grad_against_split("input h=8 w=8 c=1; conv2d name=c out=16 k=3 pad=1; relu name=r;"
                             "gap name=g from=c; maxpool k=2 from=r; gap; add with=g;"
                             "linear out=3 name=out head", 6, -1);
}

typedef struct {
    nn_model *m;
    const void *x;
    int B;
    int heads[2];
    float *r[2];
} graph_ctx;

static const nn_run train_run = {.training = 1, .seed = 9, .step = 3, .example = NULL};

static double graph_loss(void *p)
{
    graph_ctx *c = p;
    nn_model_forward(c->m, c->x, c->B, &train_run);
    double l = 0.0;
    for (int h = 0; h < 2; h++)
        if (c->r[h])
            l += tu_dot(nn_model_out(c->m, c->heads[h]), c->r[h],
                        (size_t)c->B * nn_model_node(c->m, c->heads[h])->act_n);
    return l;
}

static void check_graph(const char *desc, const char *h0, const char *h1, int tokens)
{
    nn_model m;
    xd_err e;
    const int B = 3;
    TU_OK(nn_model_build(&m, desc, B, 5, &e));
    graph_ctx c = {.m = &m, .B = B};
    float *xf = NULL;
    int32_t *xi = NULL;
    if (tokens) {
        xi = malloc(sizeof(int32_t) * B * m.tokens);
        xd_rng r = xd_rng_make(1, 2, XD_RNG_USER);
        for (int i = 0; i < B * m.tokens; i++) xi[i] = (int32_t)xd_rng_below(&r, 21) - 1;
        c.x = xi;
    } else {
        size_t n = (size_t)B * m.h * m.w * m.c;
        xf = malloc(sizeof(float) * n);
        tu_fill_uniform(xf, n, -1, 1, 3);
        c.x = xf;
    }
    const char *hn[2] = {h0, h1};
    for (int h = 0; h < 2; h++) {
        if (!hn[h]) continue;
        c.heads[h] = nn_model_find(&m, hn[h]);
        assert_true(c.heads[h] >= 0);
        size_t n = (size_t)B * nn_model_node(&m, c.heads[h])->act_n;
        c.r[h] = malloc(sizeof(float) * n);
        tu_fill_uniform(c.r[h], n, -1, 1, 10 + (uint64_t)h);
    }
    graph_loss(&c);
    nn_model_zero_grad(&m);
    for (int h = 0; h < 2; h++)
        if (c.r[h]) {
            float *d = nn_model_dout(&m, c.heads[h]);
            size_t n = (size_t)B * nn_model_node(&m, c.heads[h])->act_n;
            for (size_t i = 0; i < n; i++) d[i] += c.r[h][i];
        }
    nn_model_backward(&m);
    float *g = malloc(sizeof(float) * m.n_param);
    memcpy(g, m.grad, sizeof(float) * m.n_param);
    tu_check_grad(desc, m.param, m.n_param, g, graph_loss, &c, 1e-2, 2e-2, 2e-3);
    free(g);
    free(xf);
    free(xi);
    free(c.r[0]);
    free(c.r[1]);
    nn_model_free(&m);
}

static void test_graph_gradients(void **state)
{
    (void)state;
    /* two heads (an early exit and the final one), a residual add, every smooth layer kind */
    check_graph("input h=4 w=4 c=2; conv2d name=c1 out=3 k=3 pad=1; tanh name=t1;"
                "conv2d out=3 k=1 name=c2; add with=t1 name=res; batchnorm; gelu;"
                "avgpool k=2; flatten name=flat; linear out=4 name=exit1 head;"
                "linear from=flat out=5; sigmoid; dropout p=0.3; layernorm; linear out=6;"
                "upsample factor=1; logsoftmax name=logits head",
                "exit1", "logits", 0);
    /* convolution with stride after a pointwise layer (so conv's input gradient is checked) */
    check_graph("input h=5 w=5 c=2; linear out=3; conv2d out=2 k=3 stride=2 pad=1; gap;"
                "softmax name=out head", "out", NULL, 0);
    /* float32 training forwards by Winograd's (16 channels in and out, nn_wino_takes), and the
     * second one's input gradient by Winograd's too: the loss's differences */
    check_graph("input h=6 w=5 c=16; conv2d out=16 k=3 pad=1; tanh; avgpool k=2; "
                "conv2d out=16 k=3 pad=1; tanh; gap; linear out=3 name=logits head",
                "logits", NULL, 0);
    /* text encoder: embedding bag over token ids */
    check_graph("input tokens=6; embbag vocab=20 out=8 mode=mean; layernorm; gelu;"
                "linear out=3 name=logits head", "logits", NULL, 1);
    check_graph("input tokens=6; embbag vocab=20 out=4 mode=sum; linear out=3 name=logits head",
                "logits", NULL, 1);
}

static void test_tap_gradient_only_where_asked(void **state)
{
    (void)state;
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, "input h=1 w=1 c=3; linear out=4 name=a; relu; linear out=2 name=b head",
                         2, 1, &e));
    float x[6] = {1, 2, 3, -1, 0.5f, 2};
    nn_model_forward(&m, x, 2, NULL);
    nn_model_zero_grad(&m);
    /* gradient into the tap "a" only: the head's parameters get nothing */
    float *d = nn_model_dout(&m, nn_model_find(&m, "a"));
    for (int i = 0; i < 8; i++) d[i] = 1.0f;
    nn_model_backward(&m);
    const nn_param *bw = nn_model_param(&m, "b.weight"), *aw = nn_model_param(&m, "a.weight");
    for (size_t i = 0; i < bw->n; i++) assert_true(m.grad[bw->off + i] == 0.0f);
    /* d(sum a)/d a.weight[o][k] = sum_b x[b][k] */
    for (int o = 0; o < 4; o++)
        for (int k = 0; k < 3; k++) assert_true(fabsf(m.grad[aw->off + o * 3 + k] - (x[k] + x[3 + k])) < 1e-6f);
    nn_model_free(&m);
}

/* A relu read only by a maxpool runs inside the pool's pass, forward and backward, and so does a
 * convolution read only by that relu (its own output then not written unless asked for). The
 * same model with a second (idle) reader of the relu, which keeps them apart, must give the same
 * bits. */
static void test_relu_pool_fusion_same_bits(void **state)
{
    (void)state;
    static const char *base = "input h=7 w=6 c=2; conv2d out=4 k=3 pad=1; relu name=r; maxpool k=2;"
                              "conv2d out=3 k=3 pad=1; relu; maxpool k=3 stride=2; flatten;"
                              "linear out=3 name=out head";
    char split[512];
    snprintf(split, sizeof split, "%s; gap from=r", base);
    nn_model m[3];
    xd_err e;
    TU_OK(nn_model_build(&m[0], base, 3, 5, &e));
    TU_OK(nn_model_build(&m[1], split, 3, 5, &e));
    TU_OK(nn_model_build(&m[2], base, 3, 5, &e));
    assert_true(m[0].nodes[1].relu_pool && m[0].nodes[4].relu_pool);
    assert_true(!m[1].nodes[1].relu_pool && m[1].nodes[4].relu_pool);
    assert_true(m[0].nodes[0].pool_in_conv == 2 && m[1].nodes[0].pool_in_conv == 0);
    assert_int_equal(m[0].n_param, m[1].n_param);
    float x[3 * 7 * 6 * 2], r[3 * 3];
    tu_fill_uniform(x, sizeof x / sizeof x[0], -1, 1, 3);
    tu_fill_uniform(r, 9, -1, 1, 4);
    for (int k = 0; k < 2; k++) {
        nn_model_forward(&m[k], x, 3, NULL);
        nn_model_zero_grad(&m[k]);
        memcpy(nn_model_dout(&m[k], nn_model_find(&m[k], "out")), r, sizeof r);
        nn_model_backward(&m[k]);
    }
    /* the fused ReLUs were not written, nor the convolutions before them (pooled from scratch):
     * asked for, they come out as the unfused ones did */
    assert_true(m[0].nodes[1].stale && m[0].nodes[4].stale && !m[1].nodes[1].stale);
    assert_true(m[0].nodes[0].stale && m[0].nodes[3].stale && !m[1].nodes[0].stale);
    for (int i = 0; i < 8; i++)
        assert_int_equal(memcmp(nn_model_out(&m[0], i), nn_model_out(&m[1], i),
                                sizeof(float) * 3 * m[0].nodes[i].act_n), 0);
    assert_true(!m[0].nodes[1].stale && !m[0].nodes[4].stale && !m[0].nodes[0].stale);
    assert_int_equal(memcmp(m[0].grad, m[1].grad, sizeof(float) * m[0].n_param), 0);
    /* asked for once, a convolution's output is written by the forwards after */
    assert_true(m[0].nodes[0].asked && m[0].nodes[3].asked && !m[2].nodes[0].asked);
    memset(m[0].nodes[0].out, 0x7f, sizeof(float) * 3 * m[0].nodes[0].act_n);
    nn_model_forward(&m[0], x, 3, NULL);
    assert_false(m[0].nodes[0].stale);
    assert_int_equal(memcmp(m[0].nodes[0].out, nn_model_out(&m[1], 0),
                            sizeof(float) * 3 * m[0].nodes[0].act_n), 0);
    /* a gradient written into the relu itself (a tap) keeps the two backwards apart as well:
     * the ReLU's own backward then reads the convolution's output, written again for it (what
     * the buffer held before is wiped first); a training run on fewer rows than the batch */
    const nn_run train = {.training = 1, .seed = 1};
    for (int k = 1; k < 3; k++) {
        if (k == 2) memset(m[2].nodes[0].out, 0x7f, sizeof(float) * 3 * m[2].nodes[0].act_n);
        nn_model_forward(&m[k], x, 2, &train);
        assert_true(k == 1 || m[2].nodes[0].stale);
        nn_model_zero_grad(&m[k]);
        if (k == 2)
            memset(nn_model_dout(&m[2], nn_model_find(&m[2], "r")), 0,
                   sizeof(float) * 2 * m[2].nodes[1].act_n);
        memcpy(nn_model_dout(&m[k], nn_model_find(&m[k], "out")), r, sizeof(float) * 2 * 3);
        nn_model_backward(&m[k]);
    }
    assert_int_equal(memcmp(m[2].grad, m[1].grad, sizeof(float) * m[2].n_param), 0);
    /* training in bf16: convolutions on few channels keep float32 products and are fused the
     * same way; made again when asked for, they come out as the unfused model's */
    nn_model_free(&m[2]);
    TU_OK(nn_model_build(&m[2], base, 3, 5, &e));
    m[1].precision = m[2].precision = NN_PREC_BF16;
    for (int k = 1; k < 3; k++) nn_model_forward(&m[k], x, 3, &train);
    assert_true(m[2].nodes[0].stale && m[2].nodes[3].stale);
    for (int i = 0; i < 8; i++)
        assert_int_equal(memcmp(nn_model_out(&m[2], i), nn_model_out(&m[1], i),
                                sizeof(float) * 3 * m[2].nodes[i].act_n), 0);
    for (int k = 0; k < 3; k++) nn_model_free(&m[k]);
}

/* A flatten passes its input on without a copy (nn_node.stale): its reader takes the input's
 * values in place, forward and backward (the reader writes the input's gradient), in training
 * and evaluation, from the model's input and from a node's output; asked for, its output is
 * written then; inference passes on a node's output too. */
static void test_flatten_passes_input_on(void **state)
{
    (void)state;
    static const char *descs[] = {
        "input h=2 w=3 c=2; flatten name=f; linear out=4 name=l head",
        "input h=2 w=3 c=2; conv2d out=2 k=1 name=c; flatten name=f; linear out=4 name=l head"};
    enum { B = 3, C = 12, OC = 4 };
    float x[B * C], r[B * OC], want[B * OC], dw[OC * C], db[OC];
    tu_fill_uniform(x, B * C, -1, 1, 21);
    tu_fill_uniform(r, B * OC, -1, 1, 22);
    for (int d = 0; d < 2; d++) {
        nn_model m;
        xd_err e;
        TU_OK(nn_model_build(&m, descs[d], B, 9, &e));
        const int f = nn_model_find(&m, "f"), l = nn_model_find(&m, "l");
        const nn_node *lin = &m.nodes[l];
        for (int training = 0; training < 2; training++) {
            const nn_run run = {.training = training, .seed = 1};
            nn_model_forward(&m, x, B, &run);
            assert_true(m.nodes[f].stale);
            const float *in = d == 0 ? x : m.nodes[m.nodes[f].in].out;
            assert_ptr_equal(nn_node_input(&m, f), in);
            nn_linear_forward(want, in, m.param + lin->w_off, NULL, m.param + lin->b_off, B, C, OC);
            assert_int_equal(memcmp(nn_model_out(&m, l), want, sizeof want), 0);
            nn_model_zero_grad(&m);
            memcpy(nn_model_dout(&m, l), r, sizeof r);
            nn_model_backward(&m);
            memset(dw, 0, sizeof dw);
            memset(db, 0, sizeof db);
            nn_linear_backward(NULL, dw, db, r, in, m.param + lin->w_off, B, C, OC);
            assert_int_equal(memcmp(m.grad + lin->w_off, dw, sizeof dw), 0);
            assert_int_equal(memcmp(m.grad + lin->b_off, db, sizeof db), 0);
            if (d == 1) {
                /* backward through it too: the linear layer wrote the convolution's gradient and
                 * the flatten, untouched, copied nothing; the same bits as with a gradient kept
                 * at the flatten (a tap adding zeros), which it then copies on */
                assert_false(m.nodes[f].touched);
                float *g = malloc(sizeof(float) * m.n_param);
                memcpy(g, m.grad, sizeof(float) * m.n_param);
                nn_model_forward(&m, x, B, &run);
                nn_model_zero_grad(&m);
                memset(nn_model_dout(&m, f), 0, sizeof(float) * B * C);
                memcpy(nn_model_dout(&m, l), r, sizeof r);
                nn_model_backward(&m);
                assert_true(m.nodes[f].touched);
                assert_int_equal(memcmp(m.grad, g, sizeof(float) * m.n_param), 0);
                free(g);
            }
            /* asked for: written, the input's values, and no longer passed on */
            const float *out = nn_model_out(&m, f);
            assert_true(out != in && !m.nodes[f].stale);
            assert_int_equal(memcmp(out, in, sizeof x), 0);
            assert_ptr_equal(nn_node_input(&m, f), out);
        }
        /* inference passes it on too where it reads a node's output (that node's rows are then
         * the images' own), and gives the same outputs; asked for, it is written */
        nn_model_forward(&m, x, B, NULL);
        memcpy(want, nn_model_out(&m, l), sizeof want);
        const float *fwant = nn_model_out(&m, f);
        float fx[B * C];
        memcpy(fx, fwant, sizeof fx);
        nn_model_infer(&m, x, B, NULL);
        assert_int_equal(m.nodes[f].stale, d == 1);
        assert_int_equal(memcmp(nn_model_out(&m, l), want, sizeof want), 0);
        assert_int_equal(memcmp(nn_model_out(&m, f), fx, sizeof fx), 0);
        assert_false(m.nodes[f].stale);
        nn_model_free(&m);
    }
    /* a flatten that is a head is written, as a fused ReLU that is one is */
    nn_model m;
    xd_err e;
    TU_OK(nn_model_build(&m, "input h=2 w=3 c=2; flatten name=f head; linear out=4 name=l head", B,
                         9, &e));
    nn_model_forward(&m, x, B, NULL);
    assert_false(m.nodes[0].stale);
    assert_int_equal(memcmp(m.nodes[0].out, x, sizeof x), 0);
    nn_model_free(&m);
}

typedef struct {
    nn_model *m;
    float *x, *r;
    int B;
} input_ctx;

static double input_loss(void *p)
{
    input_ctx *c = p;
    nn_model_forward(c->m, c->x, c->B, NULL);
    return tu_dot(nn_model_out(c->m, nn_model_default_head(c->m)), c->r,
                  (size_t)c->B * nn_model_node(c->m, nn_model_default_head(c->m))->act_n);
}

static void test_input_gradient(void **state)
{
    (void)state;
    nn_model m;
    xd_err e;
    /* the input feeds two layers (a branch and an add), so its gradient sums two paths */
    TU_OK(nn_model_build(&m, "input h=3 w=3 c=2; conv2d out=2 k=3 pad=1 name=a; tanh;"
                             "add with=input; flatten; linear out=3 name=out head", 2, 4, &e));
    nn_model_enable_input_grad(&m);
    float x[36], r[6];
    tu_fill_uniform(x, 36, -1, 1, 1);
    tu_fill_uniform(r, 6, -1, 1, 2);
    input_ctx c = {&m, x, r, 2};
    input_loss(&c);
    float *d = nn_model_dout(&m, nn_model_default_head(&m));
    memcpy(d, r, sizeof r);
    nn_model_backward(&m);
    float g[36];
    memcpy(g, nn_model_dinput(&m), sizeof g);
    tu_check_grad("input gradient", x, 36, g, input_loss, &c, 1e-2, 1e-2, 1e-3);
    nn_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_gradients),
        cmocka_unit_test(test_tap_gradient_only_where_asked),
        cmocka_unit_test(test_input_gradient),
        cmocka_unit_test(test_relu_pool_fusion_same_bits),
        cmocka_unit_test(test_flatten_passes_input_on),
        cmocka_unit_test(test_conv_weight_grad_from_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
