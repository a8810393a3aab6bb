/* Model: shapes, memory, initialisation and lookups (see model.h); the text description is
 * parsed and written back in model_parse.c, the forward passes (training, evaluation, inference
 * and its packing) are in model_forward.c, backward in model_backward.c. */
#include "nn/model.h"
#include "nn/model_internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "nn/quant.h"
#include "core/runtime.h"

// ----------------------------------------------------------------------------------------------
// shapes and parameters

static xd_status layer_error(xd_err *e, int i, const nn_node *nd, const char *msg)
{
    return xd_fail(e, XD_ESHAPE, "model description: layer %d '%s' (%s): %s", i + 1,
                   nn_kind_name(nd->kind), nd->name, msg);
}

nn_pool_shape nn_node_pool_shape(const nn_node *nd, int B)
{
    nn_pool_shape ps = {.B = B, .H = nd->ih, .W = nd->iw, .C = nd->ic, .k = nd->k,
                        .stride = nd->stride};
    nn_pool_shape_init(&ps);
    return ps;
}

nn_conv_shape nn_node_conv_shape(const nn_node *nd, int B)
{
    nn_conv_shape cs = {.B = B, .H = nd->ih, .W = nd->iw, .C = nd->ic, .OC = nd->units, .KH = nd->k,
                        .KW = nd->k, .stride = nd->stride, .pad = nd->pad, .bias = nd->bias};
    nn_conv_shape_init(&cs);
    return cs;
}

/* Adds a parameter (or state) entry; -1 when its size, or the model's total with it, would pass
 * NN_MAX_PARAMS (checked before any product can overflow). */
static int add_param(nn_model *m, const nn_node *nd, const char *suffix, int ndim,
                     const int64_t *shape, int decay, int state, size_t *off)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (xd_mul_size(n, (size_t)shape[d], &n) || n > NN_MAX_PARAMS) return -1;
    if (n > NN_MAX_PARAMS - m->n_param - m->n_state) return -1;
    nn_param *p = &m->params[m->n_params++];
    snprintf(p->name, sizeof p->name, "%s.%s", nd->name, suffix);
    p->ndim = ndim;
    for (int d = 0; d < ndim; d++) p->shape[d] = shape[d];
    p->n = n;
    p->decay = decay;
    p->state = state;
    if (state) {
        p->off = m->n_state;
        m->n_state += n;
    } else {
        p->off = m->n_param;
        m->n_param += n;
    }
    *off = p->off;
    return 0;
}

/* A pruning mask: state of the weight's shape (shape[0] is the output count still). */
static int add_mask(nn_model *m, nn_node *nd, int ndim, const int64_t *shape)
{
    if (add_param(m, nd, "mask", ndim, shape, 0, 1, &nd->s_off)) return -1;
    nd->s_n = nd->w_n;
    return 0;
}

/* Working memory in floats: per example of a batch (multiplied by max_batch when allocated) and
 * fixed. Every per-example figure, and their sum `example`, stays within NN_MAX_EXAMPLE. */
typedef struct {
    size_t act;     /* every node's output (and as much again for the gradients) */
    size_t save;    /* values kept for backward: conv columns, dropout masks, layernorm stats */
    size_t isave;   /* maxpool argmax indices (int32) */
    size_t scratch; /* the largest conv's column gradient, taken from the arena in backward */
    size_t fixed;   /* batchnorm statistics and conv [w | b] copies, whatever the batch */
    size_t example; /* input + 2 act + save + isave + scratch */
} model_sizes;

/* Adds n floats per example to *field and to the total; -1 past NN_MAX_EXAMPLE. */
static int add_example(model_sizes *z, size_t *field, size_t n)
{
    if (n > NN_MAX_EXAMPLE - z->example) return -1;
    z->example += n;
    *field += n;
    return 0;
}

static xd_status too_big(xd_err *e, int i, const nn_node *nd, const char *what)
{
    return xd_fail(e, XD_ESHAPE,
                   "model description: layer %d '%s' (%s): %s passes the limit (%zu parameters, "
                   "%zu floats of memory per example)",
                   i + 1, nn_kind_name(nd->kind), nd->name, what, NN_MAX_PARAMS, NN_MAX_EXAMPLE);
}

/* Room a conv2d keeps for its weights packed by each float32 forward outside inference (see
 * forward_node): none for a pointwise one, which reads its input in place anyway. */
static size_t conv_train_packed_size(const nn_conv_shape *s)
{
    return nn_conv_cols_size(s) ? nn_conv_packed_size(s) : 0;
}

/* Fills output shapes, the parameter table and the sizes of every block; checks, before anything
 * is allocated and without overflow, that everything fits the limits (model.h). */
static xd_status infer(nn_model *m, model_sizes *z, xd_err *e)
{
    memset(z, 0, sizeof *z);
    size_t in_n = m->tokens ? (size_t)m->tokens : (size_t)m->h * m->w * m->c;
    if (in_n > NN_MAX_EXAMPLE)
        return xd_fail(e, XD_ESHAPE, "model description: input: %zu values per example, more "
                                     "than the %zu allowed", in_n, NN_MAX_EXAMPLE);
    z->example = in_n;
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        if (nd->in == NN_INPUT) {
            nd->ih = m->tokens ? 1 : m->h;
            nd->iw = m->tokens ? m->tokens : m->w;
            nd->ic = m->tokens ? 1 : m->c;
            if (m->tokens && nd->kind != NN_EMBBAG)
                return layer_error(e, i, nd, "token-id input can only feed an embbag layer");
        } else {
            const nn_node *src = &m->nodes[nd->in];
            nd->ih = src->h;
            nd->iw = src->w;
            nd->ic = src->c;
        }
        if (nd->kind == NN_EMBBAG && !(nd->in == NN_INPUT && m->tokens))
            return layer_error(e, i, nd, "embbag reads the token-id input (use an 'input tokens=L' model)");
        nd->h = nd->ih;
        nd->w = nd->iw;
        nd->c = nd->ic;
        int64_t shp[4];
        if (nd->wbits && (nd->wbits < 2 || nd->wbits > 8))
            return layer_error(e, i, nd, "wbits must be 2..8");
        switch (nd->kind) {
        case NN_LINEAR:
            if (nd->units <= 0) return layer_error(e, i, nd, "needs out=N > 0");
            nd->c = nd->units;
            shp[0] = nd->units;
            shp[1] = nd->ic;
            if (add_param(m, nd, "weight", 2, shp, 1, 0, &nd->w_off))
                return too_big(e, i, nd, "its weight");
            nd->w_n = (size_t)nd->units * nd->ic;
            if (nd->bias) {
                if (add_param(m, nd, "bias", 1, shp, 0, 0, &nd->b_off))
                    return too_big(e, i, nd, "its bias");
                nd->b_n = (size_t)nd->units;
            }
            if (nd->prune && add_mask(m, nd, 2, shp)) return too_big(e, i, nd, "its mask");
            break;
        case NN_CONV2D: {
            if (nd->units <= 0 || nd->k <= 0) return layer_error(e, i, nd, "needs out=N and k=K > 0");
            nn_conv_shape cs = {.B = 1, .H = nd->ih, .W = nd->iw, .C = nd->ic, .OC = nd->units,
                                .KH = nd->k, .KW = nd->k, .stride = nd->stride, .pad = nd->pad,
                                .bias = nd->bias};
            if (nn_conv_shape_init(&cs))
                return layer_error(e, i, nd, "window, stride or padding do not fit the input");
            nd->h = cs.OH;
            nd->w = cs.OW;
            nd->c = nd->units;
            shp[0] = nd->units;
            shp[1] = shp[2] = nd->k;
            shp[3] = nd->ic;
            if (add_param(m, nd, "weight", 4, shp, 1, 0, &nd->w_off))
                return too_big(e, i, nd, "its weight");
            nd->w_n = (size_t)nd->units * nd->k * nd->k * nd->ic;
            if (nd->bias) {
                if (add_param(m, nd, "bias", 1, shp, 0, 0, &nd->b_off))
                    return too_big(e, i, nd, "its bias");
                nd->b_n = (size_t)nd->units;
            }
            if (nd->prune && add_mask(m, nd, 4, shp)) return too_big(e, i, nd, "its mask");
            /* nn_conv_cols_size computes OH * OW * (k * k * ic + bias) unchecked: this bound on
             * it must not overflow first */
            size_t row, cols;
            if (xd_mul3_size((size_t)nd->k, (size_t)nd->k, (size_t)nd->ic, &row) ||
                xd_mul3_size((size_t)cs.OH, (size_t)cs.OW, row + 1, &cols))
                return too_big(e, i, nd, "its input columns");
            cols = nn_conv_cols_size(&cs);
            if (add_example(z, &z->save, cols)) return too_big(e, i, nd, "its input columns");
            if (cols > z->scratch) {
                if (add_example(z, &z->scratch, cols - z->scratch))
                    return too_big(e, i, nd, "its column gradient");
            }
            z->fixed += nn_conv_wext_size(&cs); /* a copy of weight and bias, within the limit */
            z->fixed += conv_train_packed_size(&cs); /* the same packed, not much more */
            break;
        }
        case NN_MAXPOOL:
        case NN_AVGPOOL: {
            nn_pool_shape ps = {.B = 1, .H = nd->ih, .W = nd->iw, .C = nd->ic, .k = nd->k,
                                .stride = nd->stride};
            if (nn_pool_shape_init(&ps)) return layer_error(e, i, nd, "needs k=K that fits the input");
            nd->h = ps.OH;
            nd->w = ps.OW;
            break;
        }
        case NN_GAP:
            nd->h = nd->w = 1;
            break;
        case NN_FLATTEN:
            if ((size_t)nd->ih * nd->iw * nd->ic > NN_MAX_EXAMPLE)
                return too_big(e, i, nd, "its output");
            nd->c = nd->ih * nd->iw * nd->ic;
            nd->h = nd->w = 1;
            break;
        case NN_BATCHNORM:
        case NN_LAYERNORM:
            if (!(nd->eps > 0.0f)) return layer_error(e, i, nd, "eps must be > 0");
            shp[0] = nd->ic;
            if (add_param(m, nd, "weight", 1, shp, 0, 0, &nd->w_off) ||
                add_param(m, nd, "bias", 1, shp, 0, 0, &nd->b_off))
                return too_big(e, i, nd, "its parameters");
            nd->w_n = nd->b_n = (size_t)nd->ic;
            if (nd->kind == NN_BATCHNORM) {
                size_t dummy;
                if (add_param(m, nd, "running_mean", 1, shp, 0, 1, &nd->s_off) ||
                    add_param(m, nd, "running_var", 1, shp, 0, 1, &dummy))
                    return too_big(e, i, nd, "its running statistics");
                nd->s_n = 2 * (size_t)nd->ic;
                z->fixed += 2 * (size_t)nd->ic;
            } else if (add_example(z, &z->save, 2 * (size_t)nd->ih * nd->iw)) {
                return too_big(e, i, nd, "its statistics");
            }
            break;
        case NN_DROPOUT:
            if (!(nd->p >= 0.0f && nd->p < 1.0f)) return layer_error(e, i, nd, "p must be in [0, 1)");
            if (add_example(z, &z->save, (size_t)nd->ih * nd->iw * nd->ic))
                return too_big(e, i, nd, "its mask");
            break;
        case NN_EMBBAG:
            if (nd->vocab <= 0 || nd->units <= 0) return layer_error(e, i, nd, "needs vocab=V and out=D > 0");
            nd->h = nd->w = 1;
            nd->c = nd->units;
            shp[0] = nd->vocab;
            shp[1] = nd->units;
            if (add_param(m, nd, "weight", 2, shp, 1, 0, &nd->w_off))
                return too_big(e, i, nd, "its weight");
            nd->w_n = (size_t)nd->vocab * nd->units;
            break;
        case NN_UPSAMPLE:
            if (nd->factor < 1 || nd->factor > 64) return layer_error(e, i, nd, "factor must be 1..64");
            if ((size_t)nd->ih * nd->factor * nd->iw * nd->factor * nd->ic > NN_MAX_EXAMPLE)
                return too_big(e, i, nd, "its output");
            nd->h = nd->ih * nd->factor;
            nd->w = nd->iw * nd->factor;
            break;
        case NN_FAKEQUANT:
            if (nd->bits < 2 || nd->bits > 16) return layer_error(e, i, nd, "bits must be 2..16");
            if (!(nd->ema >= 0.0f && nd->ema <= 1.0f)) return layer_error(e, i, nd, "ema must be in [0, 1]");
            if (nd->usign && nd->ema == 0.0f) return layer_error(e, i, nd, "unsigned needs ema=M > 0");
            if (nd->ema > 0.0f) {
                shp[0] = 1;
                if (add_param(m, nd, "range", 1, shp, 0, 1, &nd->s_off))
                    return too_big(e, i, nd, "its range");
                nd->s_n = 1;
            }
            break;
        case NN_ADD: {
            if (nd->in2 == -2) return layer_error(e, i, nd, "needs with=NAME (the second input)");
            int h2 = nd->in2 == NN_INPUT ? m->h : m->nodes[nd->in2].h;
            int w2 = nd->in2 == NN_INPUT ? m->w : m->nodes[nd->in2].w;
            int c2 = nd->in2 == NN_INPUT ? m->c : m->nodes[nd->in2].c;
            if (m->tokens && nd->in2 == NN_INPUT) return layer_error(e, i, nd, "cannot add token ids");
            if (h2 != nd->ih || w2 != nd->iw || c2 != nd->ic)
                return layer_error(e, i, nd, "both inputs must have the same shape");
            break;
        }
        case NN_RELU: case NN_GELU: case NN_TANH: case NN_SIGMOID:
        case NN_SOFTMAX: case NN_LOGSOFTMAX:
            break;
        case NN_KIND_COUNT:
            XD_ASSERT(0);
        }
        z->fixed += nd->wbits ? nd->w_n : 0; /* the fake-quantised weights */
        XD_ASSERT(nd->h > 0 && nd->w > 0 && nd->c > 0);
        if (xd_mul3_size((size_t)nd->h, (size_t)nd->w, (size_t)nd->c, &nd->act_n) ||
            add_example(z, &z->act, nd->act_n) || nd->act_n > NN_MAX_EXAMPLE - z->example)
            return too_big(e, i, nd, "its output");
        z->example += nd->act_n; /* and its gradient */
        if (nd->kind == NN_MAXPOOL && add_example(z, &z->isave, nd->act_n))
            return too_big(e, i, nd, "its argmax indices");
    }
    return XD_OK;
}

int nn_node_only_reader(const nn_model *m, int idx)
{
    int readers = 0, reader = -1;
    for (int i = idx + 1; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        int reads = (nd->in == idx) + (nd->kind == NN_ADD && nd->in2 == idx);
        readers += reads;
        if (reads) reader = i;
    }
    return readers == 1 ? reader : -1;
}

/* relu -> maxpool, with nothing else reading the relu, runs as one pass per image (see
 * nn_relu_maxpool_forward): the pool reads the ReLU's output while it is in cache, and backward
 * writes the ReLU's input gradient straight from the pool's. When a conv2d feeds that relu and
 * nothing else, the pass runs inside the convolution's product, image by image as its rows come
 * out (nn_conv2d_relu_maxpool_forward). */
static void plan_fusion(nn_model *m)
{
    for (int r = 0; r < m->n_nodes; r++) {
        nn_node *relu = &m->nodes[r];
        if (relu->kind != NN_RELU) continue;
        int pool = nn_node_only_reader(m, r);
        relu->relu_pool = pool >= 0 && m->nodes[pool].kind == NN_MAXPOOL;
        if (relu->relu_pool && relu->in >= 0 && m->nodes[relu->in].kind == NN_CONV2D &&
            nn_node_only_reader(m, relu->in) == r)
            m->nodes[relu->in].pool_in_conv = pool;
    }
}

// ----------------------------------------------------------------------------------------------
// build, init, free

/* Parses, infers and checks: everything but the blocks (see nn_model_plan). */
static xd_status plan(nn_model *m, const char *desc, int max_batch, model_sizes *z, xd_err *e)
{
    memset(m, 0, sizeof *m);
    if (max_batch <= 0 || max_batch > NN_MAX_BATCH)
        return xd_fail(e, XD_EARG, "batch size %d out of range (1..%d)", max_batch, NN_MAX_BATCH);
    m->max_batch = max_batch;
    xd_status s = nn_model_parse(m, desc, e);
    if (s == XD_OK && (s = infer(m, z, e)) == XD_OK) {
        plan_fusion(m);
        m->desc = nn_model_describe(m);
    }
    if (s != XD_OK) nn_model_free(m);
    return s;
}

xd_status nn_model_plan(nn_model *m, const char *desc, int max_batch, xd_err *e)
{
    model_sizes z;
    return plan(m, desc, max_batch, &z, e);
}

/* One of the model's blocks, count * size bytes (count = per_example * max_batch + fixed),
 * 64-byte aligned; XD_ENOMEM naming the block and its size when memory cannot be had. The counts
 * are within the limits, so none of this overflows. */
static xd_status take(const nn_model *m, void **p, size_t per_example, size_t fixed, size_t size,
                      const char *what, xd_err *e)
{
    size_t bytes = (per_example * (size_t)m->max_batch + fixed) * size;
    *p = xd_try_alloc_aligned(bytes);
    if (*p) return XD_OK;
    return xd_fail(e, XD_ENOMEM, "model description: cannot allocate %zu bytes for %s (batches "
                                 "of up to %d examples)", bytes, what, m->max_batch);
}

xd_status nn_model_build(nn_model *m, const char *desc, int max_batch, uint64_t seed, xd_err *e)
{
    model_sizes z;
    xd_status s = plan(m, desc, max_batch, &z, e);
    if (s != XD_OK) return s;
    const size_t F = sizeof(float);
    if ((s = take(m, (void **)&m->param, 0, m->n_param, F, "the parameters", e)) ||
        (s = take(m, (void **)&m->grad, 0, m->n_param, F, "the gradients", e)) ||
        (s = take(m, (void **)&m->state, 0, m->n_state, F, "the running statistics", e)) ||
        (s = take(m, (void **)&m->act_block, z.act, 0, F, "the activations", e)) ||
        (s = take(m, (void **)&m->dact_block, z.act, 0, F, "the activation gradients", e)) ||
        (s = take(m, (void **)&m->save_block, z.save, z.fixed, F, "the values kept for backward", e)) ||
        (s = take(m, (void **)&m->isave_block, z.isave, 0, sizeof(int32_t), "the pooling indices", e))) {
        nn_model_free(m);
        return s;
    }
    if (xd_arena_init(&m->scratch, z.scratch * (size_t)max_batch * F)) {
        s = xd_fail(e, XD_ENOMEM, "model description: cannot allocate %zu bytes for the "
                                  "convolution scratch (batches of up to %d examples)",
                    z.scratch * (size_t)max_batch * F, max_batch);
        nn_model_free(m);
        return s;
    }
    size_t a = 0, sv = 0, isv = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        nd->out = m->act_block + a;
        nd->dout = m->dact_block + a;
        a += (size_t)max_batch * nd->act_n;
        nd->save = m->save_block + sv;
        nd->isave = m->isave_block + isv;
        switch (nd->kind) {
        case NN_CONV2D: {
            nn_conv_shape cs = nn_node_conv_shape(nd, max_batch);
            sv += nn_conv_cols_size(&cs) + nn_conv_wext_size(&cs);
            nd->wpk = conv_train_packed_size(&cs) ? m->save_block + sv : NULL;
            sv += conv_train_packed_size(&cs);
            break;
        }
        case NN_BATCHNORM: sv += 2 * (size_t)nd->ic; break;
        case NN_LAYERNORM: sv += 2 * (size_t)max_batch * nd->ih * nd->iw; break;
        case NN_DROPOUT: sv += (size_t)max_batch * nd->act_n; break;
        case NN_MAXPOOL: isv += (size_t)max_batch * nd->act_n; break;
        default: break;
        }
        if (nd->wbits) {
            nd->wq = m->save_block + sv;
            sv += nd->w_n;
        }
    }
    XD_ASSERT(sv == z.save * (size_t)max_batch + z.fixed && isv == z.isave * (size_t)max_batch);
    m->segs = xd_xcalloc((size_t)m->n_params, sizeof *m->segs);
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].state)
            m->segs[m->n_segs++] = (nn_param_seg){m->params[i].off, m->params[i].n, m->params[i].decay, 0};
    nn_model_init_params(m, seed);
    nn_model_zero_grad(m);
    return XD_OK;
}

void nn_model_init_params(nn_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        xd_rng r = xd_rng_make(seed, (uint64_t)i, XD_RNG_INIT);
        float *w = m->param + nd->w_off, *b = m->param + nd->b_off;
        switch (nd->kind) {
        case NN_LINEAR:
        case NN_CONV2D: {
            /* PyTorch default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
            float bound = 1.0f / sqrtf((float)(nd->w_n / (size_t)nd->units));
            for (size_t j = 0; j < nd->w_n; j++) w[j] = (2.0f * xd_rng_uniform(&r) - 1.0f) * bound;
            for (size_t j = 0; j < nd->b_n; j++) b[j] = (2.0f * xd_rng_uniform(&r) - 1.0f) * bound;
            for (size_t j = 0; j < nd->s_n; j++) m->state[nd->s_off + j] = 1.0f; /* nothing pruned */
            break;
        }
        case NN_BATCHNORM:
        case NN_LAYERNORM:
            for (size_t j = 0; j < nd->w_n; j++) w[j] = 1.0f;
            for (size_t j = 0; j < nd->b_n; j++) b[j] = 0.0f;
            if (nd->kind == NN_BATCHNORM) {
                float *s = m->state + nd->s_off;
                for (int c = 0; c < nd->ic; c++) {
                    s[c] = 0.0f;
                    s[nd->ic + c] = 1.0f;
                }
            }
            break;
        case NN_EMBBAG:
            for (size_t j = 0; j < nd->w_n; j++) w[j] = xd_rng_normal(&r);
            break;
        case NN_FAKEQUANT:
            if (nd->s_n) m->state[nd->s_off] = 0.0f; /* a moving range: not calibrated yet */
            break;
        default:
            break;
        }
    }
}

void nn_model_free(nn_model *m)
{
    nn_qengine_free(m->qengine);
    free(m->nodes);
    free(m->params);
    free(m->segs);
    free(m->param);
    free(m->grad);
    free(m->state);
    free(m->act_block);
    free(m->dact_block);
    free(m->save_block);
    free(m->isave_block);
    free(m->dinput);
    xd_arena_free(&m->scratch);
    free(m->packed);
    free(m->packed_bf16);
    free(m->desc);
    memset(m, 0, sizeof *m);
}

void nn_model_clear_grad(nn_model *m) { m->grad_unset = 1; }

void nn_model_zero_grad(nn_model *m)
{
    m->grad_unset = 0;
    /* each segment in about the optimizer's shares (a static share a thread, as the step's runs
     * begin: nn/optim.c), so a thread clears the lines its own cache holds from the last update */
    const nn_param_seg all = {0, m->n_param, 1, 0};
    const nn_param_seg *segs = m->n_segs ? m->segs : &all;
    const int n_segs = m->n_segs ? m->n_segs : 1;
#pragma omp parallel if (xd_threads_split(m->n_param >= NN_PAR_MIN))
    for (int s = 0; s < n_segs; s++) {
        float *g = m->grad + segs[s].offset;
        const size_t n = segs[s].count;
#pragma omp for schedule(static) nowait
        for (size_t i = 0; i < n; i++) g[i] = 0.0f;
    }
}

// ----------------------------------------------------------------------------------------------
// access

int nn_model_find(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0) return i;
    return -1;
}

int nn_model_param_node(const nn_model *m, const char *param_name)
{
    char node[NN_NAME_LEN + 16];
    snprintf(node, sizeof node, "%s", param_name);
    char *dot = strrchr(node, '.');
    if (dot) *dot = '\0';
    return nn_model_find(m, node);
}

const nn_node *nn_model_node(const nn_model *m, int idx) { return &m->nodes[idx]; }

float *nn_model_out(nn_model *m, int idx)
{
    nn_node *nd = &m->nodes[idx];
    if (nd->stale && nd->kind == NN_CONV2D) {
        nn_model_refresh(m, idx);
        return nd->out;
    }
    if (nd->stale) { /* see nn_node.stale */
        if (nd->in >= 0 && m->nodes[nd->in].stale) nn_model_out(m, nd->in); /* a fused conv's */
        const float *x = nn_node_input(m, nd->in);
        const size_t n = (size_t)m->batch * nd->act_n;
        if (nd->kind == NN_FLATTEN) memcpy(nd->out, x, sizeof(float) * n);
        else nn_relu_forward(nd->out, x, n);
        nd->stale = 0;
    }
    return nd->out;
}

float *nn_model_dout(nn_model *m, int idx)
{
    nn_node *nd = &m->nodes[idx];
    if (!nd->touched) {
        memset(nd->dout, 0, sizeof(float) * (size_t)m->batch * nd->act_n);
        nd->touched = 1;
    }
    return nd->dout;
}

int nn_model_default_head(const nn_model *m)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].head) return i;
    return m->n_nodes - 1;
}

int nn_model_heads(const nn_model *m, int *heads)
{
    int n = 0;
    const int first = nn_model_default_head(m);
    heads[n++] = first;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].head && i != first) heads[n++] = i;
    return n;
}

const nn_param *nn_model_param(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

float *nn_model_param_data(nn_model *m, const nn_param *p)
{
    return (p->state ? m->state : m->param) + p->off;
}

double nn_model_flops(const nn_model *m)
{
    double f = 0.0;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (nd->kind == NN_LINEAR) f += 2.0 * nd->ih * nd->iw * nd->ic * nd->units;
        if (nd->kind == NN_CONV2D) f += 2.0 * nd->h * nd->w * nd->units * nd->k * nd->k * nd->ic;
    }
    return f;
}

ptrdiff_t nn_nonfinite_row(const float *x, size_t n, size_t per, float *v)
{
    for (size_t i = 0; i < n * per; i++)
        if (!isfinite(x[i])) {
            *v = x[i];
            return (ptrdiff_t)(i / per);
        }
    return -1;
}

xd_status nn_check_finite(const float *x, size_t n, size_t per, const uint32_t *idx, size_t i0,
                          const char *what, xd_err *e)
{
    float v;
    const ptrdiff_t row = nn_nonfinite_row(x, n, per, &v);
    if (row < 0) return XD_OK;
    return xd_fail(e, XD_ENUM, "%s for example %zu is not finite (%g)", what,
                   idx ? (size_t)idx[row] : i0 + (size_t)row, (double)v);
}
