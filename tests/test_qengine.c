/* The integer engine and int8 checkpoints: the engine against the fake-quant forward on random
 * layers and whole models, int8 checkpoints (round trip, damaged scales and ranges, wrong dtypes),
 * the recipe's quantize: section, resuming a quantised run, and `xdistill quantize` with eval. The
 * fake quantisation and the kernels alone: test_quant.c. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/recipe.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "modalities/image/augment.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/qgemm.h"
#include "nn/quant.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"
// ----------------------------------------------------------------------------------------------
// the integer engine against the fake-quant forward

/* Builds desc (quantised), random weights (and batch norms: gamma of either sign, so that some
 * outputs fall as their sum grows), calibrates on x (B rows), and returns the fake-quant eval
 * outputs of the default head in fake (B * width). */
static void build_calibrated(nn_model *m, const char *desc, const float *x, int B, float *fake,
                             size_t width, uint64_t seed)
{
    xd_err e;
    char *q;
    TU_OK(nn_quant_desc(desc, 0.1f, &q, &e));
    TU_OK(nn_model_build(m, q, B, seed, &e));
    free(q);
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (nd->kind != NN_BATCHNORM) continue;
        const size_t C = (size_t)nd->ic;
        tu_fill_uniform(m->param + nd->w_off, C, -1.5f, 1.5f, seed + 10 + (uint64_t)i);
        tu_fill_uniform(m->param + nd->b_off, C, -0.5f, 0.5f, seed + 20 + (uint64_t)i);
        tu_fill_uniform(m->state + nd->s_off, C, -0.3f, 0.3f, seed + 30 + (uint64_t)i);
        tu_fill_uniform(m->state + nd->s_off + C, C, 0.5f, 2.0f, seed + 40 + (uint64_t)i);
    }
    const nn_run cal = {.calibrate = 1};
    nn_model_forward(m, x, B, &cal);
    nn_model_forward(m, x, B, NULL);
    memcpy(fake, nn_model_out(m, nn_model_default_head(m)), sizeof(float) * (size_t)B * width);
}

/* The engine's outputs against the fake-quant ones: every value within tol of its twin, and the
 * number of values further than 1e-4 apart (a requantisation that rounded the other way). */
static int compare_engine(nn_model *m, const float *x, int B, const float *fake, size_t width,
                          float tol, const char *what)
{
    int far = 0;
    for (int isa = 0; isa < NN_QISA_COUNT; isa++) {
        if (nn_qgemm_use((nn_qisa)isa) != (nn_qisa)isa) continue;
        nn_model_forward(m, x, B, NULL);
        const float *y = nn_model_out(m, nn_model_default_head(m));
        int f = 0;
        for (size_t i = 0; i < (size_t)B * width; i++) {
            const float d = fabsf(y[i] - fake[i]);
            if (d > tol) fail_msg("%s (%s): output %zu is %g, fake-quant %g", what,
                                  nn_qisa_name((nn_qisa)isa), i, (double)y[i], (double)fake[i]);
            f += d > 1e-4f;
        }
        far = f > far ? f : far;
    }
    nn_qgemm_use(NN_QISA_COUNT);
    return far;
}

/* A quantised form of desc with random weights, calibrated on B random inputs in [lo, hi) (*x),
 * its fake-quant outputs (*fake, B * *width), the engine attached and compared (compare_engine,
 * whose count it returns). */
static int engine_case(const char *desc, int B, float lo, float hi, uint64_t seed, float tol,
                       nn_model *m, float **x, float **fake, size_t *width)
{
    xd_err e;
    TU_OK(nn_model_plan(m, desc, 1, &e));
    const size_t in = (size_t)m->h * m->w * m->c;
    *width = m->nodes[m->n_nodes - 1].act_n;
    nn_model_free(m);
    *x = xd_xmalloc(sizeof(float) * in * (size_t)B);
    *fake = xd_xmalloc(sizeof(float) * *width * (size_t)B);
    tu_fill_uniform(*x, in * (size_t)B, lo, hi, seed);
    build_calibrated(m, desc, *x, B, *fake, *width, seed + 1);
    TU_OK(nn_qengine_attach(m, &e));
    return compare_engine(m, *x, B, *fake, *width, tol, desc);
}

static void test_engine_random_layers(void **state)
{
    (void)state;
    const char *layers[] = {
        "input h=1 w=1 c=37; flatten; linear out=19 head",
        "input h=1 w=1 c=784; flatten; linear out=128 head",
        "input h=7 w=6 c=3; conv2d out=5 k=3 pad=1 head",
        "input h=9 w=9 c=2; conv2d out=17 k=3 stride=2 head",
        "input h=8 w=8 c=8; conv2d out=16 k=1 head",
        "input h=6 w=6 c=4; conv2d out=8 k=5 pad=2 head",
    };
    for (size_t t = 0; t < sizeof layers / sizeof layers[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        /* one layer: the same input codes, an exact integer sum; only float rounding differs */
        engine_case(layers[t], 5, -3.0f, 3.0f, 100 + t, 1e-4f, &m, &x, &fake, &width);
        nn_model_free(&m);
        free(x);
        free(fake);
    }
}

/* the zoo benchmark's student CNN and the Fashion MLP student, as the recipes describe them */
#define ZOO_CNN                                                                                   \
    "input h=28 w=28 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu name=r1; maxpool k=2; "         \
    "conv2d name=conv2 out=16 k=3 pad=1; relu name=map; maxpool k=2; gap; linear out=10 head"
#define FASHION_MLP                                                                               \
    "input h=28 w=28 c=1; flatten; linear name=fc1 out=128; relu name=feat; linear out=10 head"

static void test_engine_whole_models(void **state)
{
    (void)state;
    const char *models[] = {
        ZOO_CNN,
        FASHION_MLP,
        "input h=8 w=8 c=3; conv2d out=8 k=3 pad=1; batchnorm; relu; avgpool k=2; flatten; "
        "dropout p=0.2; linear out=6; tanh; linear out=4 head",
    };
    for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        const int B = 64;
        /* a value that crosses a rounding boundary of a later requantisation moves by one level
         * there, which the next layers pass on: small, and rare */
        int far = engine_case(models[t], B, -1.5f, 2.5f, 200 + t, 0.05f, &m, &x, &fake, &width);
        nn_model_forward(&m, x, B, NULL);
        const float *y = nn_model_out(&m, nn_model_default_head(&m));
        int agree = 0;
        for (int b = 0; b < B; b++) {
            int ai = 0, af = 0;
            for (size_t k = 1; k < width; k++) {
                if (y[b * width + k] > y[b * width + ai]) ai = (int)k;
                if (fake[b * width + k] > fake[b * width + af]) af = (int)k;
            }
            agree += ai == af;
        }
        print_message("model %zu: %d of %zu outputs more than 1e-4 from fake-quant, argmax agrees on "
                      "%d of %d\n", t, far, (size_t)B * width, agree, B);
        assert_true(agree >= B - 1);
        assert_true((size_t)far * 20 <= (size_t)B * width);
        nn_model_free(&m);
        free(x);
        free(fake);
    }
}

/* check(m, B, ctx) with each kernel the CPU runs, for batches of 1, 5 and 64, at 1 and 2 threads
 * (then the best kernel and the thread count as they were); it fails naming the setting. */
typedef void (*infer_check)(nn_model *m, int B, const char *setting, void *ctx);

static void each_setting(nn_model *m, infer_check check, void *ctx)
{
    const int threads = xd_threads_get(), batches[] = {1, 5, 64};
    for (int isa = 0; isa < NN_QISA_COUNT; isa++) {
        if (nn_qgemm_use((nn_qisa)isa) != (nn_qisa)isa) continue;
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
            for (int th = 1; th <= 2; th++) {
                char setting[96];
                snprintf(setting, sizeof setting, "%s, batch %d, %d threads",
                         nn_qisa_name((nn_qisa)isa), batches[bi], th);
                xd_threads_set(th);
                check(m, batches[bi], setting, ctx);
            }
    }
    nn_qgemm_use(NN_QISA_COUNT);
    xd_threads_set(threads);
}

/* test_engine_infer_same_bits' check: each head by nn_model_infer against the forward's */
typedef struct {
    const float *x;
    float *ref;
    const uint8_t *need;
    int exit;
    size_t model;
} heads_ctx;

static void same_heads(nn_model *m, int B, const char *setting, void *p)
{
    heads_ctx *c = p;
    for (int i = 0; i < m->n_nodes; i++) {
        if (!m->nodes[i].head) continue;
        const size_t n = (size_t)B * m->nodes[i].act_n;
        nn_model_forward(m, c->x, B, NULL);
        memcpy(c->ref, m->nodes[i].out, sizeof(float) * n);
        memset(m->nodes[i].out, 0, sizeof(float) * n);
        nn_model_infer(m, c->x, B, i == c->exit ? c->need : NULL);
        if (memcmp(c->ref, m->nodes[i].out, sizeof(float) * n) != 0)
            fail_msg("model %zu (%s): head %s differs", c->model, setting, m->nodes[i].name);
    }
}

/* Inference (nn_model_infer: chunks of images, codes written by the layer before, relu and
 * max pooling on codes, requantisation in the kernel) gives every head's output bit for bit as
 * the node by node integer forward does, with each kernel, at 1 and 2 threads, for batches of
 * one, a few and many: the zoo CNN, the MLP, a model whose codes go through maxpool then relu,
 * flatten and dropout to signed levels (the relu's floor is then the code of 0), batch norm and avgpool
 * between (floats there), and an early exit read alone; batch norms in the epilogue, with
 * gammas of either sign, on codes through a max pool the product pools (k 2, odd sizes), one it
 * does not (stride 1), after a linear layer, before a tanh, and on floats (relu, then gap); and
 * convolutions of 8 outputs or fewer (two rows to a register), pooled and not, an odd number of
 * pooling windows; first convolutions of 1-4 channels, 8 or 16 outputs, pooled 2 x 2; global
 * average pools summed in the requantisation (batch norm, relu, gap). */
static void test_engine_infer_same_bits(void **state)
{
    (void)state;
    const char *models[] = {
        ZOO_CNN,
        FASHION_MLP,
        "input h=9 w=8 c=3; fakequant name=c1_in bits=8 ema=0.1; conv2d name=c1 out=20 k=3 "
        "pad=1 wbits=8; maxpool k=2 stride=1; relu; flatten; dropout p=0.3; fakequant name=l1_in "
        "bits=8 ema=0.1; linear name=l1 out=6 wbits=8; tanh; fakequant name=l2_in bits=8 ema=0.1; "
        "linear out=5 wbits=8 head",
        "input h=8 w=8 c=3; conv2d out=8 k=3 pad=1; batchnorm; relu; avgpool k=2; "
        "conv2d out=12 k=3 stride=2 name=c2; relu; conv2d out=6 k=1 name=exit head; "
        "flatten from=c2; linear out=4 head",
        "input h=10 w=10 c=3; conv2d out=20 k=3 pad=1; batchnorm; relu; maxpool k=2; "
        "conv2d out=12 k=3 pad=1; batchnorm; maxpool k=2 stride=1; relu; flatten; linear out=8; "
        "batchnorm; relu; linear out=6; batchnorm; tanh; linear out=5 head",
        "input h=10 w=7 c=2; conv2d out=6 k=3 pad=1; relu; maxpool k=2; "
        "conv2d out=24 k=3 pad=1 stride=2; batchnorm; relu; gap; linear out=3 head",
        "input h=6 w=6 c=1; conv2d out=5 k=3 pad=1; batchnorm; maxpool k=2 stride=2 name=p; "
        "relu; conv2d out=7 k=1; relu; flatten; linear out=2 head",
        /* first convolutions with pixels in lanes (nn_qgemm_conv_first): 3 channels, 16
         * outputs, a batch norm, rows of 16 + 16 + 2 pixels; 2 channels, 5 x 5, 8 outputs, odd
         * sizes; 4 channels, no padding, a row of 16 + 2 */
        "input h=9 w=34 c=3; conv2d out=16 k=3 pad=1; batchnorm; relu; maxpool k=2; "
        "conv2d out=8 k=3 pad=1; relu; gap; linear out=4 head",
        "input h=7 w=13 c=2; conv2d out=8 k=5 pad=2; relu; maxpool k=2; flatten; linear out=3 head",
        "input h=6 w=20 c=4; conv2d out=16 k=3; batchnorm; relu; maxpool k=2; flatten; "
        "linear out=3 head",
        /* a global average pool summed in the requantisation (read as a head): 4-row tiles of
         * four blocks and rows left over (36), paired rows (6 outputs, 35 rows) */
        "input h=6 w=6 c=4; conv2d out=64 k=3 pad=1; batchnorm; relu; gap name=g head; "
        "linear out=3 head",
        "input h=5 w=7 c=3; conv2d out=6 k=3 pad=1; batchnorm; relu; gap name=g head; "
        "linear out=2 head",
        "input h=5 w=7 c=3; conv2d out=20 k=3 pad=1; batchnorm; gap name=g head; "
        "linear out=2 head",
        /* a batch norm and a ReLU whose pool reads it fused (relu_pool), not followed by codes:
         * the pool reads the norm's output, which the convolution writes then */
        "input h=8 w=8 c=3; conv2d out=8 k=3 pad=1; batchnorm; relu; maxpool k=2; gap; "
        "linear out=4 head",
    };
    for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        engine_case(models[t], 64, -1.5f, 2.5f, 300 + t, 0.05f, &m, &x, &fake, &width);
        size_t most = 0;
        for (int i = 0; i < m.n_nodes; i++)
            if (m.nodes[i].head && m.nodes[i].act_n > most) most = m.nodes[i].act_n;
        float *ref = xd_xmalloc(sizeof(float) * 64 * most);
        uint8_t *need = xd_xcalloc((size_t)m.n_nodes, 1);
        const int exit = nn_model_find(&m, "exit");
        if (exit >= 0) nn_model_needs(&m, exit, need);
        heads_ctx c = {.x = x, .ref = ref, .need = need, .exit = exit, .model = t};
        each_setting(&m, same_heads, &c);
        free(ref);
        free(need);
        nn_model_free(&m);
        free(x);
        free(fake);
    }
}

/* test_engine_pixels_in's check: the default head from the pixels against that from floats */
typedef struct {
    const float *x;
    const uint8_t *px;
    float *ref;
    size_t width, model;
} pixels_ctx;

static void same_pixels(nn_model *m, int B, const char *setting, void *p)
{
    pixels_ctx *c = p;
    const int head = nn_model_default_head(m);
    const size_t n = (size_t)B * c->width;
    nn_model_infer(m, c->x, B, NULL);
    memcpy(c->ref, nn_model_out(m, head), sizeof(float) * n);
    memset(m->nodes[head].out, 0, sizeof(float) * n);
    nn_qengine_pixels_in(m, 1);
    nn_model_infer(m, c->px, B, NULL);
    nn_qengine_pixels_in(m, 0);
    if (memcmp(c->ref, nn_model_out(m, head), sizeof(float) * n) != 0)
        fail_msg("model %zu (%s): pixels in differ", c->model, setting);
}

/* Pixels in (nn_qengine_pixels): the 8-bit pixels' codes by table give every output bit for bit
 * as the image batcher's floats do (each kernel, batches of 1, 5 and 64, 1 and 2 threads), for
 * RGB and grey images whose values cover all 256 in every channel; a model whose input goes
 * anywhere but a fakequant node, one with a float layer, an image that is resized, or channels
 * that differ: no table. */
static void test_engine_pixels_in(void **state)
{
    (void)state;
    static const struct {
        const char *desc, *opts;
    } cases[] = {
        {"input h=9 w=34 c=3; conv2d out=16 k=3 pad=1; batchnorm; relu; maxpool k=2; "
         "conv2d out=8 k=3 pad=1; relu; gap; linear out=4 head",
         "mean=0.4,0.5,0.3 std=0.25,0.3,0.2"},
        {ZOO_CNN, "mean=0.4 std=0.25"},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        engine_case(cases[t].desc, 64, -1.5f, 2.5f, 400 + t, 0.05f, &m, &x, &fake, &width);
        const int C = m.c;
        const size_t per = (size_t)m.h * m.w * C;
        uint8_t *px = xd_xmalloc(64 * per);
        for (size_t k = 0; k < 64 * per; k++) px[k] = (uint8_t)(k * 7 + k / 5);
        img_opts o;
        img_opts_default(&o);
        TU_OK(img_opts_parse(&o, cases[t].opts, NULL));
        img_batcher *b;
        TU_OK(img_batcher_make(&b, m.h, m.w, C, &o, NULL));
        float values[256 * 4];
        assert_int_equal(img_batcher_pixel_values(b, values), 1);
        assert_int_equal(nn_qengine_pixels(&m, C, values), 1);
        uint32_t idx[64];
        for (int i = 0; i < 64; i++) idx[i] = (uint32_t)i;
        TU_OK(img_batcher_fill(b, px, 64, idx, 64, 0, 0, 0, x, NULL));
        float *ref = xd_xmalloc(sizeof(float) * 64 * width);
        pixels_ctx c = {.x = x, .px = px, .ref = ref, .width = width, .model = t};
        each_setting(&m, same_pixels, &c);
        assert_int_equal(nn_qengine_pixels(&m, C == 1 ? 3 : 1, values), 0);
        img_batcher_free(b);
        /* resized: not one pixel at a time */
        TU_OK(img_opts_parse(&o, "size=5x6", NULL));
        TU_OK(img_batcher_make(&b, m.h, m.w, C, &o, NULL));
        assert_int_equal(img_batcher_pixel_values(b, values), 0);
        img_batcher_free(b);
        free(ref);
        free(px);
        nn_model_free(&m);
        free(x);
        free(fake);
    }
    /* the input read by a flatten, or a float layer in the model */
    const char *refused[] = {FASHION_MLP, "input h=4 w=4 c=1; fakequant bits=8 ema=0.1; "
                                          "conv2d out=2 k=3 wbits=8; relu; flatten; "
                                          "linear out=2 wbits=8 head"};
    for (size_t t = 0; t < 2; t++) {
        nn_model m;
        xd_err e;
        float values[256];
        for (int p = 0; p < 256; p++) values[p] = (float)p / 255.0f;
        if (t == 0) {
            float *x, *fake;
            size_t width;
            engine_case(refused[t], 4, -1.0f, 1.0f, 500, 0.05f, &m, &x, &fake, &width);
            free(x);
            free(fake);
        } else {
            TU_OK(nn_model_build(&m, refused[t], 4, 1, &e));
            float x[64];
            tu_fill_uniform(x, 64, -1.0f, 1.0f, 3);
            const nn_run cal = {.calibrate = 1};
            nn_model_forward(&m, x, 4, &cal);
            TU_OK(nn_qengine_attach(&m, &e));
        }
        assert_int_equal(nn_qengine_pixels(&m, 1, values), 0);
        nn_model_free(&m);
    }
}

/* nn_qpixel_codes: the table's bytes, for 1-4 channels and runs that end inside or at the end of
 * a vector, with each kernel. */
static void test_qpixel_codes(void **state)
{
    (void)state;
    enum { MAXN = 1000 };
    uint8_t lut[4 * 256], src[MAXN], dst[MAXN + 64];
    for (int i = 0; i < 4 * 256; i++) lut[i] = (uint8_t)(i * 29 + i / 7);
    for (int i = 0; i < MAXN; i++) src[i] = (uint8_t)(i * 13 + i / 3);
    const size_t ns[] = {1, 63, 64, 65, 191, 192, 200, MAXN};
    for (int isa = 0; isa < NN_QISA_COUNT; isa++) {
        if (nn_qgemm_use((nn_qisa)isa) != (nn_qisa)isa) continue;
        for (int c = 1; c <= 4; c++)
            for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
                memset(dst, 0xA5, sizeof dst);
                nn_qpixel_codes(dst, src, ns[t], lut, c);
                for (size_t k = 0; k < ns[t]; k++)
                    if (dst[k] != lut[(k % (size_t)c) * 256 + src[k]])
                        fail_msg("%s, %d channels, n %zu: byte %zu is %d", nn_qisa_name((nn_qisa)isa),
                                 c, ns[t], k, dst[k]);
                for (size_t k = ns[t]; k < sizeof dst; k++)
                    if (dst[k] != 0xA5)
                        fail_msg("%s, %d channels, n %zu: wrote byte %zu",
                                 nn_qisa_name((nn_qisa)isa), c, ns[t], k);
            }
    }
    nn_qgemm_use(NN_QISA_COUNT);
}

/* Which nodes' floats inference writes (nn_qengine_writes): a layer whose batch norm and relu go
 * into a global average pool it sums writes only the pool; one whose relu an average pool reads
 * writes the relu; one whose relu goes through a flatten to the next layer writes that layer's
 * codes (no floats of those between); a fakequant node read by integer layers alone, none. */
static void test_engine_writes(void **state)
{
    (void)state;
    static const struct {
        const char *desc;
        const char *written, *not_written;
    } cases[] = {
        {"input h=5 w=7 c=3; conv2d name=c out=6 k=3 pad=1; batchnorm name=n; relu name=r; "
         "gap name=g; linear out=2 head",
         "g", "c_in c n r"},
        {"input h=6 w=8 c=3; conv2d name=c out=6 k=3 pad=1; batchnorm name=n; relu name=r; "
         "avgpool k=2; flatten; linear out=2 head",
         "r", "c_in c n"},
        {"input h=5 w=7 c=3; conv2d name=c out=6 k=3 pad=1; batchnorm name=n; relu name=r; "
         "flatten name=f; linear name=l out=2 head",
         "l", "c_in c n r f l_in"},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        nn_model m;
        float *x, *fake;
        size_t width;
        engine_case(cases[t].desc, 4, -1.0f, 1.0f, 600 + t, 0.05f, &m, &x, &fake, &width);
        for (int k = 0; k < 2; k++) {
            char *names = xd_xstrdup(k ? cases[t].not_written : cases[t].written), *save = NULL;
            for (char *w = strtok_r(names, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                const int i = nn_model_find(&m, w);
                if (i < 0) fail_msg("case %zu: no node %s", t, w);
                if (nn_qengine_writes(&m, i) != !k)
                    fail_msg("case %zu: node %s %s", t, w, k ? "written" : "not written");
            }
            free(names);
        }
        nn_model_free(&m);
        free(x);
        free(fake);
    }
}

static void test_engine_refuses(void **state)
{
    (void)state;
    nn_model m;
    xd_err e;
    /* not calibrated: the range is still 0 */
    TU_OK(nn_model_build(&m, "input h=1 w=1 c=4; fakequant name=q bits=8 ema=0.1; linear name=fc "
                             "out=2 wbits=8", 2, 1, &e));
    assert_int_equal(nn_qengine_attach(&m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'q' has no calibrated range");
    assert_null(m.qengine);
    nn_model_free(&m);
    /* a float model has nothing to run on integers */
    TU_OK(nn_model_build(&m, "input h=1 w=1 c=4; linear out=2", 2, 1, &e));
    assert_int_equal(nn_qengine_attach(&m, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no layer can run on integers");
    nn_model_free(&m);
}

// ----------------------------------------------------------------------------------------------
// int8 checkpoints

#define CK_MODEL "input h=8 w=8 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu; maxpool k=2; flatten; " \
                 "linear name=fc1 out=32; relu; linear name=logits out=4 head"

static void make_int8(nn_model *m, float *x, int B)
{
    float *fake = xd_xmalloc(sizeof(float) * 4 * (size_t)B);
    tu_fill_uniform(x, (size_t)64 * B, -1.0f, 2.0f, 77);
    build_calibrated(m, CK_MODEL, x, B, fake, 4, 13);
    free(fake);
    xd_err e;
    TU_OK(nn_qengine_attach(m, &e));
}

static void test_int8_round_trip(void **state)
{
    (void)state;
    nn_model a, b;
    xd_err e;
    float x[8 * 64], ya[8 * 4];
    make_int8(&a, x, 8);
    nn_model_forward(&a, x, 8, NULL);
    memcpy(ya, nn_model_out(&a, nn_model_default_head(&a)), sizeof ya);
    io_kv meta[1] = {{"epoch", "3"}};
    TU_OK(ckpt_save_int8("q.safetensors", &a, meta, 1, &e));
    TU_OK(ckpt_save("f.safetensors", &a, NULL, 0, &e));
    TU_OK(ckpt_load("q.safetensors", 8, &b, &e));
    assert_non_null(b.qengine);
    assert_string_equal(a.desc, b.desc);
    nn_model_forward(&b, x, 8, NULL);
    assert_memory_equal(nn_model_out(&b, nn_model_default_head(&b)), ya, sizeof ya);
    for (int i = 0; i < a.n_nodes; i++) {
        const float *sa, *sb;
        const int8_t *qa = nn_qengine_weights(&a, i, &sa), *qb = nn_qengine_weights(&b, i, &sb);
        assert_true((qa == NULL) == (qb == NULL));
        if (!qa) continue;
        assert_memory_equal(qa, qb, a.nodes[i].w_n);
        assert_memory_equal(sa, sb, sizeof(float) * (size_t)a.nodes[i].units);
    }
    /* plain safetensors: I8 weights with their F32 scales, the ranges, the marker */
    io_st_file *f;
    TU_OK(io_st_open("q.safetensors", &f, &e));
    assert_int_equal(io_st_find(f, "fc1.weight")->dtype, IO_I8);
    assert_int_equal(io_st_find(f, "fc1.weight_scale")->shape[0], 32);
    assert_int_equal(io_st_find(f, "fc1.bias")->dtype, IO_F32);
    assert_int_equal(io_st_find(f, "fc1_in.range")->dtype, IO_F32);
    assert_string_equal(io_st_meta(f, CKPT_META_QUANT), "int8");
    assert_string_equal(io_st_meta(f, "epoch"), "3");
    io_st_close(f);
    /* fc1 (8 x 16 x 32 weights) dominates: nearly four times smaller */
    struct stat sq, sf;
    assert_int_equal(stat("q.safetensors", &sq), 0);
    assert_int_equal(stat("f.safetensors", &sf), 0);
    print_message("int8 checkpoint %lld bytes, float %lld\n", (long long)sq.st_size, (long long)sf.st_size);
    assert_true(sq.st_size * 2 < sf.st_size);
    nn_model_free(&a);
    nn_model_free(&b);
}

/* q.safetensors rewritten to dst with tensor `name` replaced by (dtype, data) of the same shape. */
static void rewrite_tensor(const char *dst, const char *name, io_dtype dtype, const void *data)
{
    io_st_file *f;
    xd_err e;
    TU_OK(io_st_open("q.safetensors", &f, &e));
    const size_t n = io_st_count(f), nm = io_st_meta_count(f);
    io_tensor *t = xd_xcalloc(n, sizeof *t);
    io_kv *meta = xd_xcalloc(nm, sizeof *meta);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        t[i] = *io_st_tensor(f, i);
        if (strcmp(t[i].name, name) == 0) {
            t[i].dtype = dtype;
            t[i].data = data;
            found = 1;
        }
    }
    assert_true(found);
    for (size_t i = 0; i < nm; i++) meta[i] = *io_st_meta_at(f, i);
    TU_OK(io_st_write(dst, t, n, meta, nm, &e));
    free(t);
    free(meta);
    io_st_close(f);
}

static void expect_load_error(const char *path, xd_status code, const char *want, const char *want2)
{
    nn_model m;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(ckpt_load(path, 4, &m, &e), code);
    tu_assert_err(&e, code, path);
    tu_assert_err(&e, code, want);
    tu_assert_err(&e, code, want2);
}

static void test_int8_damaged(void **state)
{
    (void)state;
    nn_model a;
    xd_err e;
    float x[8 * 64];
    make_int8(&a, x, 8);
    TU_OK(ckpt_save_int8("q.safetensors", &a, NULL, 0, &e));
    float scales[32];
    for (int i = 0; i < 32; i++) scales[i] = 0.01f;
    const float bad[3] = {0.0f, -0.5f, NAN};
    for (int k = 0; k < 3; k++) {
        scales[7] = bad[k];
        rewrite_tensor("bad_scale.safetensors", "fc1.weight_scale", IO_F32, scales);
        expect_load_error("bad_scale.safetensors", XD_EFORMAT, "'fc1.weight_scale'",
                          "index 7; a scale must be a finite number > 0");
    }
    const float zero_range = 0.0f;
    rewrite_tensor("bad_range.safetensors", "logits_in.range", IO_F32, &zero_range);
    expect_load_error("bad_range.safetensors", XD_EFORMAT, "'logits_in.range'", "finite number > 0");
    /* weights stored as floats, or scales as bytes: the dtype is named */
    float *wf = xd_xcalloc(32 * 128, sizeof *wf);
    rewrite_tensor("f32_weight.safetensors", "fc1.weight", IO_F32, wf);
    free(wf);
    expect_load_error("f32_weight.safetensors", XD_ESHAPE, "'fc1.weight'", "expected I8");
    int8_t w8[4 * 32];
    memset(w8, 1, sizeof w8);
    w8[5] = -128;
    rewrite_tensor("w128.safetensors", "logits.weight", IO_I8, w8);
    expect_load_error("w128.safetensors", XD_EFORMAT, "'logits.weight'", "-128");
    nn_model_free(&a);
    /* another quantisation is named */
    tu_rewrite_meta("q.safetensors", "int4.safetensors", CKPT_META_QUANT, "int4");
    expect_load_error("int4.safetensors", XD_EUNSUPPORTED, "'int4'", "int8");
}

// ----------------------------------------------------------------------------------------------
// recipes, training, the command line

static void test_recipe_quantize(void **state)
{
    (void)state;
    ensure_data();
    recipe r;
    char *text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                                "  - {kind: ce}\nquantize: {ema: 0.05}\n");
    load_recipe("rq", text, &r);
    assert_non_null(strstr(r.model, "fakequant name=fc1_in bits=8 ema=0.0500000007; linear name=fc1"));
    assert_non_null(strstr(r.models[0].model, "wbits=8"));
    /* the effective recipe reads back as the same recipe */
    char *yaml = stable_yaml(&r);
    assert_non_null(strstr(yaml, "quantize: {ema: 0.0500000007}"));
    free(yaml);
    recipe_free(&r);
    free(text);
    /* without the section nothing is said about it */
    text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}", "  - {kind: ce}\n");
    load_recipe("rf", text, &r);
    yaml = recipe_to_yaml(&r);
    assert_null(strstr(yaml, "quantize"));
    assert_null(strstr(yaml, "fakequant"));
    free(yaml);
    recipe_free(&r);
    free(text);
    text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                          "  - {kind: ce}\nquantize: {ema: 2}\n");
    expect_recipe_error("rbad", text, "quantize.ema");
    free(text);
    text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}",
                          "  - {kind: ce}\nquantize: {bits: 4}\n");
    expect_recipe_error("rbad2", text, "bits");
    free(text);
}

#define QAT_RECIPE(epochs)                                                                       \
    student_recipe("  augment: \"pad=1 flip=0.5\"\n", CNN_MODEL, "", epochs,                     \
                   "{kind: adamw, lr: 0.01}", "  - {kind: ce}\nquantize: {ema: 0.1}\n")

/* The moving ranges are state: a quantised run stopped and resumed ends byte for byte where the
 * straight run does. */
static void test_qat_resume(void **state)
{
    (void)state;
    ensure_data();
    char *text = QAT_RECIPE(3);
    const int stops[] = {1, 2};
    check_resume("qat", text, 3, stops, 2);
    free(text);
}

static void test_cli_quantize_eval(void **state)
{
    (void)state;
    ensure_data();
    /* a quantised run learns the toy task; its int8 form scores what its fake-quant form does */
    char *text = student_recipe("", CNN_MODEL, "", 5, "{kind: adamw, lr: 0.01}",
                                "  - {kind: ce}\nquantize: {ema: 0.1}\n");
    train_result res = run_ok("qcli", text, "qat-run", 3, 0, 0);
    free(text);
    print_message("quantised run: test accuracy %.2f\n", res.final_acc);
    assert_true(res.final_acc > 0.6);
    char *out = NULL, *err = NULL;
    xd_err e;
    int rc = tu_run_cli(&out, &err, "quantize", "qat-run/last.safetensors", "--out", "qat8.safetensors", NULL);
    if (rc) fail_msg("quantize: %s", err);
    assert_non_null(strstr(out, "qat8.safetensors: int8, "));
    assert_non_null(strstr(out, "2 of 2 layers on integers"));
    assert_non_null(strstr(out, "ranges as trained"));
    free(out);
    free(err);
    char *fq = NULL, *i8 = NULL;
    assert_int_equal(tu_run_cli(&fq, NULL, "eval", "--model", "qat-run/last.safetensors", "--data", "toy.xds", "--json", NULL), 0);
    assert_int_equal(tu_run_cli(&i8, NULL, "eval", "--model", "qat8.safetensors", "--data", "toy.xds", "--json", NULL), 0);
    /* the same answers (the confidences differ in their last digits) */
    assert_non_null(strstr(fq, "\"accuracy\":"));
    assert_string_equal(strstr(fq, "\"confusion\":"), strstr(i8, "\"confusion\":"));
    *strstr(fq, ",\"ece\"") = *strstr(i8, ",\"ece\"") = '\0';
    assert_string_equal(strstr(fq, "\"accuracy\":"), strstr(i8, "\"accuracy\":"));
    free(fq);
    free(i8);
    /* predict reads the int8 file too: the same top classes for images of each class */
    char *args[4];
    for (int k = 0; k < 4; k++) {
        uint8_t px[64] = {0};
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 3; x++) px[(1 + 4 * (k / 2) + y) * 8 + 1 + 4 * (k % 2) + x] = 230;
        io_image img = {.w = 8, .h = 8, .c = 1, .px = px};
        args[k] = tu_fmt("q%d.png", k);
        TU_OK(io_png_write(args[k], &img, &e));
    }
    char *pf = NULL, *p8 = NULL;
    assert_int_equal(tu_run_cli(&pf, NULL, "predict", "qat-run/last.safetensors", args[0], args[1], args[2], args[3], "--top", "1", NULL), 0);
    assert_int_equal(tu_run_cli(&p8, NULL, "predict", "qat8.safetensors", args[0], args[1], args[2], args[3], "--top", "1", NULL), 0);
    const char *a = pf, *b = p8;
    for (int k = 0; k < 4; k++) {
        a = strstr(a, "\"class\":");
        b = strstr(b, "\"class\":");
        assert_true(a && b);
        assert_int_equal(atoi(a + 8), atoi(b + 8));
        assert_int_equal(atoi(b + 8), k); /* the square's quadrant */
        a++;
        b++;
        free(args[k]);
    }
    free(pf);
    free(p8);
    /* post-training: a float run calibrated on its training split */
    text = student_recipe("", CNN_MODEL, "", 3, "{kind: adamw, lr: 0.01}", "  - {kind: ce}\n");
    run_ok("fcli", text, "float-run", 3, 0, 0);
    free(text);
    rc = tu_run_cli(&out, &err, "quantize", "float-run/last.safetensors", "--calib", "toy.xds",
                    "--batches", "2", "--out", "ptq.safetensors", NULL);
    if (rc) fail_msg("quantize: %s", err);
    assert_non_null(strstr(out, "ranges calibrated on 128 examples of toy.xds (train)"));
    free(out);
    free(err);
    assert_int_equal(tu_run_cli(&out, NULL, "eval", "--model", "ptq.safetensors", "--data", "toy.xds", NULL), 0);
    assert_non_null(strstr(out, "accuracy"));
    free(out);
    /* mistakes: one line naming the file, exit 1, nothing written */
    assert_int_equal(tu_run_cli(NULL, &err, "quantize", "float-run/last.safetensors", "--out", "x.safetensors", NULL), 1);
    assert_non_null(strstr(err, "float-run/last.safetensors: a float checkpoint: give --calib"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "quantize", "qat8.safetensors", "--out", "x.safetensors", NULL), 1);
    assert_non_null(strstr(err, "an int8 checkpoint already"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "quantize", "qat-run/last.safetensors", "--calib", "toy.xds", "--out", "x.safetensors", NULL), 1);
    assert_non_null(strstr(err, "drop --calib"));
    free(err);
    assert_false(exists("x.safetensors"));
    /* both forms export (QDQ; tests/test_export.c runs them in ONNX Runtime) */
    assert_int_equal(tu_run_cli(NULL, NULL, "export", "qat-run/last.safetensors", "--onnx", "x.onnx", NULL), 0);
    assert_int_equal(tu_run_cli(NULL, NULL, "export", "qat8.safetensors", "--onnx", "y.onnx", NULL), 0);
    assert_true(exists("x.onnx") && exists("y.onnx"));
}
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_random_layers),
        cmocka_unit_test(test_engine_whole_models),
        cmocka_unit_test(test_engine_infer_same_bits),
        cmocka_unit_test(test_engine_pixels_in),
        cmocka_unit_test(test_qpixel_codes),
        cmocka_unit_test(test_engine_writes),
        cmocka_unit_test(test_engine_refuses),
        cmocka_unit_test(test_int8_round_trip),
        cmocka_unit_test(test_int8_damaged),
        cmocka_unit_test(test_recipe_quantize),
        cmocka_unit_test(test_qat_resume),
        cmocka_unit_test(test_cli_quantize_eval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
