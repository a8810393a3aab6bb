/* Fake quantisation, the quantised form of a model's description, and the integer engine (see
 * quant.h). */
#include "nn/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "nn/layers.h"
#include "nn/model_internal.h"

#define PAR_MIN 32768

// ----------------------------------------------------------------------------------------------
// fake quantisation

/* The levels lo..hi of a bits-bit activation and its zero point as a code. */
static void act_levels(int bits, int usign, float *lo, float *hi, int *zero)
{
    const int half = 1 << (bits - 1);
    *lo = usign ? 0.0f : (float)-half;
    *hi = usign ? (float)(2 * half - 1) : (float)(half - 1);
    *zero = usign ? 0 : half;
}

static inline uint8_t act_code(float x, float s, float lo, float hi, int zero)
{
    return (uint8_t)((int)nn_quant_level(x, s, lo, hi) + zero);
}

float nn_quant_act_scale(float range, int bits, int usign)
{
    float lo, hi;
    int zero;
    act_levels(bits, usign, &lo, &hi, &zero);
    return range / hi;
}

void nn_quant_act(uint8_t *codes, float *out, const float *inp, size_t n, float range, int bits,
                  int usign)
{
    if (!(range > 0.0f)) {
        if (out && out != inp) memcpy(out, inp, sizeof(float) * n);
        return;
    }
    XD_ASSERT(!codes || bits == 8);
    float lo, hi;
    int zero;
    act_levels(bits, usign, &lo, &hi, &zero);
    const float s = range / hi;
    /* two loops, each plain enough to vectorise; out may be NULL when only codes are wanted */
    if (out) {
        if (n > PAR_MIN) {
#pragma omp parallel for
            for (size_t i = 0; i < n; i++) out[i] = s * nn_quant_level(inp[i], s, lo, hi);
        } else {
            for (size_t i = 0; i < n; i++) out[i] = s * nn_quant_level(inp[i], s, lo, hi);
        }
    }
    if (codes) { /* small inputs (inference's chunks) never enter a parallel region: its cost
                  * (even of one thread, inside another region) is more than their work */
        if (n > PAR_MIN) {
#pragma omp parallel for
            for (size_t i = 0; i < n; i++) codes[i] = act_code(inp[i], s, lo, hi, zero);
        } else {
            for (size_t i = 0; i < n; i++) codes[i] = act_code(inp[i], s, lo, hi, zero);
        }
    }
}

void nn_quant_act_backward(float *dinp, const float *dout, const float *inp, size_t n,
                           float range, int bits, int usign)
{
    if (!(range > 0.0f)) {
        nn_add_inplace(dinp, dout, n);
        return;
    }
    float lo, hi;
    int zero;
    act_levels(bits, usign, &lo, &hi, &zero);
    const float s = range / hi, a = lo * s, b = hi * s;
#pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++)
        if (inp[i] >= a && inp[i] <= b) dinp[i] += dout[i];
}

float nn_quant_range_update(float range, const float *x, size_t n, float ema)
{
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    if (ema == 0.0f) return fmaxf(range, amax);
    return range == 0.0f ? amax : range + ema * (amax - range);
}

/* Row r's scale: max|w_r| over the largest level (1 for a zero row, whose q are all 0). */
static float row_scale(const float *w, int cols, float qmax)
{
    float amax = 0.0f;
    for (int j = 0; j < cols; j++) amax = fmaxf(amax, fabsf(w[j]));
    return amax > 0.0f ? amax / qmax : 1.0f;
}

static float weight_level(float w, float s, float qmax) { return nn_quant_level(w, s, -qmax, qmax); }

void nn_quant_weights(int8_t *q, float *scale, const float *w, int rows, int cols, int bits)
{
    const float qmax = (float)((1 << (bits - 1)) - 1);
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * cols;
        const float s = row_scale(wr, cols, qmax);
        scale[r] = s;
        for (int j = 0; j < cols; j++) q[(size_t)r * cols + j] = (int8_t)weight_level(wr[j], s, qmax);
    }
}

void nn_quant_weights_fake(float *wq, const float *w, int rows, int cols, int bits)
{
    const float qmax = (float)((1 << (bits - 1)) - 1);
#pragma omp parallel for if ((size_t)rows * cols > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * cols;
        const float s = row_scale(wr, cols, qmax);
        for (int j = 0; j < cols; j++) wq[(size_t)r * cols + j] = s * weight_level(wr[j], s, qmax);
    }
}

// ----------------------------------------------------------------------------------------------
// the quantised description

static int is_layer(nn_kind k) { return k == NN_LINEAR || k == NN_CONV2D; }

static int moving_fq(const nn_node *nd) { return nd->kind == NN_FAKEQUANT && nd->ema > 0.0f; }

int nn_quant_model_has(const nn_model *m)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].wbits || moving_fq(&m->nodes[i])) return 1;
    return 0;
}

/* Whether node idx's output is >= 0 by construction: a relu's (or sigmoid's), possibly through
 * layers that keep the sign. */
static int non_negative(const nn_model *m, int idx)
{
    while (idx != NN_INPUT) {
        const nn_node *nd = &m->nodes[idx];
        switch (nd->kind) {
        case NN_RELU: case NN_SIGMOID: return 1;
        case NN_MAXPOOL: case NN_AVGPOOL: case NN_GAP: case NN_FLATTEN: case NN_DROPOUT:
        case NN_UPSAMPLE:
            idx = nd->in;
            break;
        case NN_FAKEQUANT: return nd->usign;
        default: return 0;
        }
    }
    return 0;
}

static int name_taken(const nn_node *nodes, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(nodes[i].name, name) == 0) return 1;
    return 0;
}

xd_status nn_quant_desc(const char *desc, float ema, char **out, xd_err *e)
{
    *out = NULL;
    if (!(ema > 0.0f && ema <= 1.0f))
        return xd_fail(e, XD_EARG, "quantize: ema must be in (0, 1], not %g", (double)ema);
    nn_model m;
    xd_status s = nn_model_plan(&m, desc, 1, e);
    if (s != XD_OK) return s;
    int layers = 0, done = 0;
    for (int i = 0; i < m.n_nodes; i++) {
        const nn_node *nd = &m.nodes[i];
        if (!is_layer(nd->kind)) continue;
        layers++;
        done += nd->wbits && nd->in >= 0 && moving_fq(&m.nodes[nd->in]);
    }
    if (!layers || (done && done < layers) || (!done && nn_quant_model_has(&m))) {
        s = xd_fail(e, XD_EARG, !layers ? "quantize: the model has no linear or conv2d layer"
                                        : "quantize: the model is quantised in part already "
                                          "(some layers have wbits or a moving-range fakequant)");
        nn_model_free(&m);
        return s;
    }
    if (done) {
        *out = xd_xstrdup(m.desc);
        nn_model_free(&m);
        return XD_OK;
    }
    const int n = m.n_nodes + layers;
    nn_node *nodes = xd_xcalloc((size_t)n, sizeof *nodes);
    int *at = xd_xcalloc((size_t)m.n_nodes, sizeof *at); /* old index -> new */
    int j = 0;
    for (int i = 0; i < m.n_nodes; i++) {
        const nn_node *nd = &m.nodes[i];
        const int src = nd->in == NN_INPUT ? NN_INPUT : at[nd->in];
        if (is_layer(nd->kind)) {
            nn_node *q = &nodes[j];
            q->kind = NN_FAKEQUANT;
            q->in = src;
            q->in2 = -2;
            q->bits = 8;
            q->ema = ema;
            q->usign = non_negative(&m, nd->in);
            snprintf(q->name, sizeof q->name, "%.*s_in", NN_NAME_LEN - 8, nd->name);
            for (int k = 2; name_taken(m.nodes, m.n_nodes, q->name) || name_taken(nodes, j, q->name); k++)
                snprintf(q->name, sizeof q->name, "%.*s_in%d", NN_NAME_LEN - 16, nd->name, k);
            j++;
        }
        nodes[j] = *nd;
        nodes[j].in = is_layer(nd->kind) ? j - 1 : src;
        if (nd->kind == NN_ADD && nd->in2 >= 0) nodes[j].in2 = at[nd->in2];
        if (is_layer(nd->kind)) nodes[j].wbits = 8;
        at[i] = j++;
    }
    nn_model tmp = m;
    tmp.nodes = nodes;
    tmp.n_nodes = n;
    *out = nn_model_describe(&tmp);
    free(at);
    free(nodes);
    nn_model_free(&m);
    /* the new description must build as it is */
    s = nn_model_plan(&m, *out, 1, e);
    if (s == XD_OK) {
        nn_model_free(&m);
    } else {
        free(*out);
        *out = NULL;
    }
    return s;
}

xd_status nn_quant_build(nn_model *q, nn_model *src, float ema, int max_batch, xd_err *e)
{
    char *desc;
    xd_status s = nn_quant_desc(src->desc, ema, &desc, e);
    if (s == XD_OK) s = nn_model_build(q, desc, max_batch, 0, e);
    free(desc);
    if (s != XD_OK) return s;
    for (int i = 0; i < src->n_params; i++) {
        const nn_param *p = &src->params[i], *to = nn_model_param(q, p->name);
        XD_ASSERT(to && to->n == p->n);
        memcpy(nn_model_param_data(q, to), nn_model_param_data(src, p), sizeof(float) * p->n);
    }
    return XD_OK;
}

// ----------------------------------------------------------------------------------------------
// the integer engine

typedef struct {
    int on;              /* runs on integers */
    nn_qweights w;
    float *scale;        /* (OC) the weights' scales */
    float *mult;         /* (OC) s_x * s_w[oc]: an int32 sum's value */
    float *bias;         /* (OC) the layer's bias, or zeros */
    /* conv2d: the weights with each window row's k * ic rounded up to a multiple of 4 (zeros), as
     * nn_qgemm_conv reads them from a zero-point padded copy of the image (padded: its bytes
     * per image); the windows (offsets in it of each output pixel's, in order; rowoff_pool: of
     * each pooling window's pixels, window after window, when the pool after it is fused) */
    nn_qweights wwin;
    uint8_t *padded;     /* (max_batch * padded + 64) */
    size_t padded_n;
    nn_qwindows win, win_pool;
    int32_t *rowoff, *rowoff_pool;
    nn_qfirst first;     /* k > 0: the 2 x 2 pool's windows go to nn_qgemm_conv_first */
    /* inference (plan_codes): > 0: the fakequant node whose codes this layer writes itself, its
     * output reaching it through a batch norm (bn, first), relu, one maxpool (pool), flatten or
     * dropout, which all commute with the monotone quantisation (the batch norm per channel, in
     * the direction of its gamma's sign, see nn_qepilogue.falls), so they run on codes or not at
     * all; else fout > 0: the node (the batch norm, or the relu right after it) whose floats this
     * layer writes itself, or (gap > 0, a convolution) the global average pool that alone reads
     * them, whose sums its requantisation makes (fout's floats then not written) */
    int emit, pool, relu, bn, fout, gap;
    float *bn_sd;        /* (OC) sqrtf(var + eps) of the batch norm bn */
    uint16_t *falls;     /* (OC / 16 rounded up) bn's outputs that fall as the sum grows */
    int32_t *acc;        /* a pool after it that the windows do not take: (max_batch * rows, OC)
                          * the sums, pooled before the requantisation (nn_qpool_requant) */
} qlayer;

struct nn_qengine {
    int n;               /* the model's nodes */
    qlayer *layer;       /* (n_nodes) */
    uint8_t **codes;     /* (n_nodes) a fakequant node's codes (max_batch * act_n), else NULL */
    uint8_t *float_read; /* (n_nodes) a node other than a quantised layer reads its output */
    int *writer;         /* (n_nodes) at inference, the node that computes this one's output */
    /* pixels in (nn_qengine_pixels): the fakequant node reading the input, its table (pix_c x
     * 256 codes), and whether the input is pixels now */
    int pix_node, pix_c, pix_on;
    uint8_t *pix_lut;
};


/* The input scale of quantised layer i (its fakequant node's), and the zero point of its codes. */
static float layer_input_scale(const nn_model *m, int i, int *zero)
{
    const nn_node *fq = &m->nodes[m->nodes[i].in];
    *zero = fq->usign ? 0 : 128;
    return nn_quant_act_scale(m->state[fq->s_off], fq->bits, fq->usign);
}

static void set_mult(nn_model *m, int i)
{
    qlayer *L = &m->qengine->layer[i];
    int zero;
    const float sx = layer_input_scale(m, i, &zero);
    for (int o = 0; o < m->nodes[i].units; o++) L->mult[o] = sx * L->scale[o];
}

/* Packs conv node nd's weights L->w for nn_qgemm_conv: each window row's k * ic weights, then
 * zeros up to a multiple of 4. */
static void pack_windows(qlayer *L, const nn_node *nd)
{
    const int row = nd->k * nd->ic, KR = (row + 3) / 4 * 4, OC = nd->units;
    int8_t *w = xd_xcalloc((size_t)OC * nd->k * KR, 1);
    for (int o = 0; o < OC; o++)
        for (int ky = 0; ky < nd->k; ky++)
            memcpy(w + ((size_t)o * nd->k + ky) * KR, L->w.w + ((size_t)o * nd->k + ky) * row,
                   (size_t)row);
    nn_qweights_free(&L->wwin);
    nn_qweights_pack(&L->wwin, w, OC, nd->k * KR);
    free(w);
}

/* Conv layer i's windows read in place (nn_qgemm_conv) from an image copied, a chunk at a
 * time, into the interior of a buffer whose border holds the zero point's code: the weights, the
 * buffer, the offsets of each output pixel's window, and where its rows lie. */
static void plan_windows(nn_model *m, int i)
{
    const nn_node *nd = &m->nodes[i];
    qlayer *L = &m->qengine->layer[i];
    const int C = nd->ic, k = nd->k, PW = nd->iw + 2 * nd->pad;
    int zero;
    layer_input_scale(m, i, &zero);
    pack_windows(L, nd);
    /* a window row's rounding to 4 reads up to 3 bytes past the image's end, a first
     * convolution's loads (nn_qgemm_conv_first) up to 64: 64 spare bytes of its own (never
     * written), so no read reaches the next image, which another thread may be writing; 64
     * after the last image for the vector loads */
    L->padded_n = (size_t)(nd->ih + 2 * nd->pad) * PW * C + 64;
    const size_t n = (size_t)m->max_batch * L->padded_n + 64;
    L->padded = xd_xmalloc(n);
    memset(L->padded, zero, n);
    L->rowoff = xd_xmalloc(sizeof(int32_t) * (size_t)nd->h * nd->w);
    for (int oy = 0; oy < nd->h; oy++)
        for (int ox = 0; ox < nd->w; ox++)
            L->rowoff[oy * nd->w + ox] = ((oy * nd->stride) * PW + ox * nd->stride) * C;
    L->win = (nn_qwindows){.rowoff = L->rowoff, .krows = k, .kstride = PW * C, .pool = 1};
}

/* Conv layer i's windows in the order of the pooling windows of the max pool node pool (k x k,
 * stride k) that reads it (through a relu, a batch norm), when nn_qgemm_conv can pool them. */
static void plan_pool_windows(nn_model *m, int i, const nn_node *pool)
{
    const nn_node *nd = &m->nodes[i];
    qlayer *L = &m->qengine->layer[i];
    const int k = pool->k, P = k * k, PW = nd->iw + 2 * nd->pad, S = nd->stride;
    if (pool->stride != k || (P != 2 && P != 4 && P != 8) || !L->rowoff) return;
    const int OH = (nd->h - k) / k + 1, OW = (nd->w - k) / k + 1;
    L->rowoff_pool = xd_xmalloc(sizeof(int32_t) * (size_t)OH * OW * P);
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                    L->rowoff_pool[(oy * OW + ox) * P + ky * k + kx] =
                        (((oy * k + ky) * S) * PW + (ox * k + kx) * S) * nd->ic;
    L->win_pool = L->win;
    L->win_pool.rowoff = L->rowoff_pool;
    L->win_pool.pool = P;
    const nn_qfirst f = {.ic = nd->ic, .k = nd->k, .h = nd->h, .w = nd->w, .row_bytes = PW * nd->ic};
    if (k == 2 && S == 1 && L->emit && nn_qfirst_fits(&f, nd->units)) {
        L->first = f;
        nn_qfirst_pack(&L->first, &L->w);
    }
}

/* Batch norm node bn's part in layer i's epilogue: its sqrtf(var + eps), and the outputs whose
 * gamma < 0 (falling as the sum grows). */
static void plan_norm(nn_model *m, int i, int bn)
{
    const nn_node *b = &m->nodes[bn];
    qlayer *L = &m->qengine->layer[i];
    const int OC = m->nodes[i].units;
    const float *gamma = m->param + b->w_off, *var = m->state + b->s_off + b->ic;
    L->bn = bn;
    L->bn_sd = xd_xmalloc(sizeof(float) * (size_t)OC);
    L->falls = xd_xcalloc(((size_t)OC + 15) / 16, sizeof *L->falls);
    for (int o = 0; o < OC; o++) {
        L->bn_sd[o] = sqrtf(var[o] + b->eps);
        if (gamma[o] < 0.0f) L->falls[o / 16] |= (uint16_t)(1u << (o % 16));
    }
}

void nn_qengine_free(nn_qengine *q)
{
    if (!q) return;
    for (int i = 0; i < q->n; i++) {
        qlayer *L = &q->layer[i];
        nn_qweights_free(&L->w);
        nn_qweights_free(&L->wwin);
        free(L->padded);
        free(L->rowoff);
        free(L->rowoff_pool);
        nn_qfirst_free(&L->first);
        free(L->bn_sd);
        free(L->falls);
        free(L->scale);
        free(L->mult);
        free(L->bias);
        free(L->acc);
        free(q->codes[i]);
    }
    free(q->float_read);
    free(q->writer);
    free(q->pix_lut);
    free(q->layer);
    free(q->codes);
    free(q);
}

/* Finds, for each integer layer, whether its output only goes (through a batch norm of its
 * outputs right after it, relu, at most one maxpool, flatten, dropout: each the only reader of
 * the one before, none a head) to a fakequant node that only integer layers read; at inference
 * the layer then writes that node's codes itself and the nodes between do nothing (see
 * nn_qengine_forward_node). Else a batch norm right after it, and a relu after that, run in its
 * epilogue on floats (not a relu fused with its pool, which reads the norm's output). */
static void plan_codes(nn_model *m)
{
    nn_qengine *q = m->qengine;
    q->writer = xd_xmalloc(sizeof(int) * (size_t)m->n_nodes);
    for (int i = 0; i < m->n_nodes; i++) q->writer[i] = i;
    for (int i = 0; i < m->n_nodes; i++) {
        qlayer *L = &q->layer[i];
        if (!L->on || m->nodes[i].head) continue;
        int j = i, pool = 0, relu = 0, bn = 0, fout = 0;
        for (;;) {
            const int r = nn_node_only_reader(m, j);
            if (r < 0 || m->nodes[r].head) break;
            const nn_kind k = m->nodes[r].kind;
            if (k == NN_FAKEQUANT && q->codes[r] && !q->float_read[r]) {
                L->emit = r;
                break;
            }
            if (k == NN_MAXPOOL && !pool && m->nodes[r].ih == m->nodes[i].h &&
                m->nodes[r].iw == m->nodes[i].w)
                pool = r;
            else if (k == NN_RELU) relu = 1;
            else if (k == NN_BATCHNORM && j == i && m->nodes[r].ic == m->nodes[i].units) bn = r;
            else if (k != NN_FLATTEN && k != NN_DROPOUT) break;
            j = r;
            /* not a ReLU fused with its pool (relu_pool): the pool reads the norm's output */
            if (bn && !pool &&
                (k == NN_BATCHNORM || (k == NN_RELU && fout == bn && !m->nodes[r].relu_pool)))
                fout = r;
        }
        if (bn) plan_norm(m, i, bn);
        L->relu = relu;
        if (L->emit) {
            L->pool = pool;
            for (j = i; j != L->emit;) q->writer[j = nn_node_only_reader(m, j)] = i;
        } else if (fout) {
            L->fout = fout;
            L->relu = m->nodes[fout].kind == NN_RELU;
            for (j = i; j != fout;) q->writer[j = nn_node_only_reader(m, j)] = i;
            const int g = nn_node_only_reader(m, fout);
            if (m->nodes[i].kind == NN_CONV2D && g > 0 && m->nodes[g].kind == NN_GAP)
                q->writer[L->gap = g] = i;
        }
        const int p = L->emit ? pool : m->nodes[i].pool_in_conv;
        if (p) plan_pool_windows(m, i, &m->nodes[p]);
        if (p && !L->rowoff_pool)
            L->acc = xd_xmalloc(sizeof(int32_t) * (size_t)m->max_batch * m->nodes[i].act_n);
    }
}

int nn_quant_runs_int(const nn_model *m, int i)
{
    const nn_node *nd = &m->nodes[i];
    return is_layer(nd->kind) && nd->wbits == 8 && nd->in >= 0 && moving_fq(&m->nodes[nd->in]) &&
           m->nodes[nd->in].bits == 8;
}

xd_status nn_qengine_attach(nn_model *m, xd_err *e)
{
    XD_ASSERT(!m->qengine && m->param);
    nn_qengine *q = xd_xcalloc(1, sizeof *q);
    q->n = m->n_nodes;
    q->layer = xd_xcalloc((size_t)m->n_nodes, sizeof *q->layer);
    q->codes = xd_xcalloc((size_t)m->n_nodes, sizeof *q->codes);
    q->float_read = xd_xcalloc((size_t)m->n_nodes, 1);
    m->qengine = q;
    int on = 0;
    xd_status s = XD_OK;
    for (int i = 0; i < m->n_nodes && s == XD_OK; i++) {
        const nn_node *nd = &m->nodes[i];
        if (!nn_quant_runs_int(m, i)) continue;
        const nn_node *fq = &m->nodes[nd->in];
        const int K = (int)(nd->w_n / (size_t)nd->units);
        const float range = m->state[fq->s_off];
        if (!(range > 0.0f && isfinite(range))) {
            s = xd_fail(e, XD_EARG, "layer '%s': its input '%s' has no calibrated range (%g)",
                        nd->name, fq->name, (double)range);
            break;
        }
        if (K > NN_QGEMM_MAX_K) {
            s = xd_fail(e, XD_EUNSUPPORTED, "layer '%s': %d inputs per output, more than the %d "
                        "an int32 sum of int8 products holds", nd->name, K, NN_QGEMM_MAX_K);
            break;
        }
        qlayer *L = &q->layer[i];
        int8_t *w8 = xd_xmalloc(nd->w_n);
        L->scale = xd_xmalloc(sizeof(float) * (size_t)nd->units);
        L->mult = xd_xmalloc(sizeof(float) * (size_t)nd->units);
        L->bias = xd_xcalloc((size_t)nd->units, sizeof(float));
        nn_quant_weights(w8, L->scale, m->param + nd->w_off, nd->units, K, 8);
        nn_qweights_pack(&L->w, w8, nd->units, K);
        free(w8);
        if (nd->kind == NN_CONV2D) plan_windows(m, i);
        if (!q->codes[nd->in]) q->codes[nd->in] = xd_xmalloc((size_t)m->max_batch * fq->act_n);
        L->on = 1;
        set_mult(m, i);
        on++;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (nd->in >= 0 && !q->layer[i].on) q->float_read[nd->in] = 1;
        if (nd->kind == NN_ADD && nd->in2 >= 0) q->float_read[nd->in2] = 1;
        if (nd->head) q->float_read[i] = 1;
    }
    if (s == XD_OK && !on)
        s = xd_fail(e, XD_EARG, "no layer can run on integers: none has wbits=8 and reads a "
                                "fakequant bits=8 ema=M node");
    if (s == XD_OK) plan_codes(m);
    if (s != XD_OK) {
        nn_qengine_free(q);
        m->qengine = NULL;
    }
    return s;
}

const int8_t *nn_qengine_weights(const nn_model *m, int i, const float **scale)
{
    if (!m->qengine || !m->qengine->layer[i].on) return NULL;
    *scale = m->qengine->layer[i].scale;
    return m->qengine->layer[i].w.w;
}

void nn_qengine_set_weights(nn_model *m, int i, const int8_t *q, const float *scale)
{
    qlayer *L = &m->qengine->layer[i];
    const nn_node *nd = &m->nodes[i];
    XD_ASSERT(L->on);
    const int K = L->w.K;
    nn_qweights_free(&L->w);
    nn_qweights_pack(&L->w, q, nd->units, K);
    if (nd->kind == NN_CONV2D) pack_windows(L, nd);
    if (L->first.k) nn_qfirst_pack(&L->first, &L->w);
    memcpy(L->scale, scale, sizeof(float) * (size_t)nd->units);
    float *w = m->param + nd->w_off;
    for (int o = 0; o < nd->units; o++)
        for (int k = 0; k < K; k++) w[(size_t)o * K + k] = scale[o] * (float)q[(size_t)o * K + k];
    set_mult(m, i);
}

/* Integer layer nd's product over B images, through the epilogue ep (its outputs for the first
 * image): a linear layer's rows x, or a convolution's windows in the padded copies. */
static void layer_product(const qlayer *L, const nn_node *nd, const uint8_t *x,
                          const uint8_t *padded, int B, const nn_qepilogue *ep)
{
    if (!padded) {
        nn_qgemm_requant(x, L->w.K, B * nd->h * nd->w, &L->w, ep);
        return;
    }
    nn_qepilogue e = *ep;
    for (int b = 0; b < B; b++) {
        nn_qgemm_conv(NULL, padded + b * L->padded_n, &L->win, nd->h * nd->w, &L->wwin, &e);
        if (e.codes) e.codes += nd->act_n;
        else e.y += nd->act_n;
    }
}

/* layer_product followed by the max pool node pool, pooling the int32 sums before the epilogue
 * (ep's outputs are the pooled ones): in the windows' product when it takes that pool, else in
 * L->acc from row sr. */
static void pooled_product(const qlayer *L, const nn_node *nd, const nn_node *pool,
                           const uint8_t *x, const uint8_t *padded, int B, int sr,
                           const nn_qepilogue *ep)
{
    nn_qepilogue e = *ep;
    if (L->first.k && padded && nn_qgemm_conv_first(padded, &L->first, &L->w, &e)) {
        for (int b = 1; b < B; b++) {
            e.codes += pool->act_n;
            nn_qgemm_conv_first(padded + b * L->padded_n, &L->first, &L->w, &e);
        }
        return;
    }
    if (L->rowoff_pool) {
        for (int b = 0; b < B; b++) {
            nn_qgemm_conv(NULL, padded + b * L->padded_n, &L->win_pool,
                          pool->h * pool->w * L->win_pool.pool, &L->wwin, &e);
            if (e.codes) e.codes += pool->act_n;
            else e.y += pool->act_n;
        }
        return;
    }
    int32_t *acc = L->acc + (size_t)sr * nd->act_n;
    const int per = nd->h * nd->w;
    if (!padded) nn_qgemm(acc, nd->units, x, L->w.K, B * per, &L->w);
    for (int b = 0; b < B; b++) {
        int32_t *a = acc + (size_t)b * nd->act_n;
        if (padded) nn_qgemm_conv(a, padded + b * L->padded_n, &L->win, per, &L->wwin, NULL);
        nn_qpool_requant(a, nd->h, nd->w, pool->k, pool->stride, &L->w, &e);
        if (e.codes) e.codes += pool->act_n;
        else e.y += pool->act_n;
    }
}

int nn_qengine_writer(const nn_model *m, int i) { return m->qengine ? m->qengine->writer[i] : i; }

int nn_qengine_writes(const nn_model *m, int i)
{
    const nn_qengine *q = m->qengine;
    if (!q) return 1;
    const int w = q->writer[i];
    const qlayer *L = &q->layer[w];
    if (w != i) return (L->fout == i && !L->gap) || L->gap == i;
    if (q->codes[i]) return q->float_read[i]; /* a fakequant node: its codes only */
    const int pool = m->nodes[i].pool_in_conv;
    /* a layer whose values go on through its epilogue, or into a pool's (relu not a head) */
    return !(L->on && (L->emit || L->fout || (pool && !m->nodes[m->nodes[pool].in].head)));
}

int nn_qengine_pixels(nn_model *m, int c, const float *values)
{
    nn_qengine *q = m->qengine;
    if (!q) return 0;
    free(q->pix_lut); /* a table from an earlier call goes whatever this one finds */
    q->pix_lut = NULL;
    q->pix_on = 0;
    if (c < 1 || c > 4 || m->c != c || m->tokens) return 0;
    int node = -1;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (nd->wbits && !nn_quant_runs_int(m, i)) return 0; /* inference in float then */
        if (nd->in == NN_INPUT || (nd->kind == NN_ADD && nd->in2 == NN_INPUT)) {
            if (node >= 0) return 0;
            node = i;
        }
    }
    const nn_node *fq = node >= 0 ? &m->nodes[node] : NULL;
    if (!fq || !q->codes[node] || q->float_read[node] || fq->head ||
        fq->act_n != (size_t)m->h * m->w * c)
        return 0;
    q->pix_lut = xd_xmalloc((size_t)256 * c);
    for (int ch = 0; ch < c; ch++)
        for (int p = 0; p < 256; p++) /* each through the node's own quantisation */
            nn_quant_act(q->pix_lut + 256 * ch + p, NULL, values + (size_t)p * c + ch, 1,
                         m->state[fq->s_off], fq->bits, fq->usign);
    q->pix_node = node;
    q->pix_c = c;
    return 1;
}

void nn_qengine_pixels_in(nn_model *m, int on)
{
    XD_ASSERT(!on || (m->qengine && m->qengine->pix_lut));
    if (m->qengine) m->qengine->pix_on = on;
}

int nn_qengine_forward_node(nn_model *m, int i, int b0, int B, const int *at, int sr, int infer)
{
    nn_qengine *q = m->qengine;
    nn_node *nd = &m->nodes[i];
    if (infer && q->writer[i] != i) return 1; /* done by the layer that writes its codes */
    const size_t row = (size_t)nn_node_row(at, i, b0), row_in = (size_t)nn_node_row(at, nd->in, b0);
    if (q->pix_on && i == q->pix_node) { /* 8-bit pixels in: their codes by table */
        nn_qpixel_codes(q->codes[i] + row * nd->act_n,
                        (const uint8_t *)m->input + row_in * nd->act_n, (size_t)B * nd->act_n,
                        q->pix_lut, q->pix_c);
        return 1;
    }
    if (q->codes[i]) { /* a fakequant node a quantised layer reads */
        const float *x = nn_node_input(m, nd->in) + row_in * nd->act_n;
        nn_quant_act(q->codes[i] + row * nd->act_n, q->float_read[i] ? nd->out + row * nd->act_n : NULL,
                     x, (size_t)B * nd->act_n, m->state[nd->s_off], nd->bits, nd->usign);
        return 1;
    }
    qlayer *L = &q->layer[i];
    if (!L->on) return 0;
    nn_qepilogue ep = {.mult = L->mult, .bias = nd->b_n ? m->param + nd->b_off : L->bias};
    layer_input_scale(m, i, &ep.zero);
    const uint8_t *x = q->codes[nd->in] + row_in * m->nodes[nd->in].act_n;
    const int OC = nd->units;
    uint8_t *padded = NULL;
    if (nd->kind == NN_CONV2D) { /* the images into the padded buffer's interior */
        padded = L->padded + (size_t)sr * L->padded_n;
        const size_t line = (size_t)nd->iw * nd->ic, PW = (size_t)(nd->iw + 2 * nd->pad) * nd->ic;
        for (int b = 0; b < B; b++)
            for (int y = 0; y < nd->ih; y++)
                memcpy(padded + b * L->padded_n + (size_t)(y + nd->pad) * PW + (size_t)nd->pad * nd->ic,
                       x + ((size_t)b * nd->ih + y) * line, line);
    }
    if (infer && L->bn) {
        const nn_node *bn = &m->nodes[L->bn];
        ep.bn_mean = m->state + bn->s_off;
        ep.bn_gamma = m->param + bn->w_off;
        ep.bn_beta = m->param + bn->b_off;
        ep.bn_sd = L->bn_sd;
        ep.falls = L->falls;
    }
    if (infer && L->emit) {
        const nn_node *f = &m->nodes[L->emit];
        float lo, hi;
        act_levels(8, f->usign, &lo, &hi, &ep.code_zero);
        ep.scale = nn_quant_act_scale(m->state[f->s_off], 8, f->usign);
        ep.lo = lo;
        ep.hi = hi;
        ep.floor = L->relu ? ep.code_zero : 0;
        uint8_t *codes = q->codes[L->emit] + (size_t)nn_node_row(at, L->emit, b0) * f->act_n;
        ep.codes = codes;
        ep.ldc = OC;
        if (L->pool) pooled_product(L, nd, &m->nodes[L->pool], x, padded, B, sr, &ep);
        else layer_product(L, nd, x, padded, B, &ep);
        return 1;
    }
    if (infer && L->gap) { /* the global average pool reading them: its sums, image by image */
        const nn_node *g = &m->nodes[L->gap];
        float *out = g->out + (size_t)nn_node_row(at, L->gap, b0) * g->act_n;
        const float inv = 1.0f / (float)(nd->h * nd->w); /* as nn_gap_forward's */
        ep.relu = L->relu;
        ep.ldy = OC;
        for (int b = 0; b < B; b++, out += OC) {
            memset(out, 0, sizeof(float) * (size_t)OC);
            ep.gap_sum = out;
            nn_qgemm_conv(NULL, padded + b * L->padded_n, &L->win, nd->h * nd->w, &L->wwin, &ep);
            for (int n = 0; n < OC; n++) out[n] *= inv;
        }
        return 1;
    }
    if (infer && L->fout) { /* the batch norm (and relu) after it: their floats */
        const nn_node *f = &m->nodes[L->fout];
        ep.y = f->out + (size_t)nn_node_row(at, L->fout, b0) * f->act_n;
        ep.ldy = OC;
        ep.relu = L->relu;
        layer_product(L, nd, x, padded, B, &ep);
        return 1;
    }
    if (infer && nd->pool_in_conv && !m->nodes[m->nodes[nd->pool_in_conv].in].head) {
        /* relu and pool: the epilogue's floats of the pooled sums, then the relu */
        const nn_node *pool = &m->nodes[nd->pool_in_conv];
        ep.y = pool->out + (size_t)nn_node_row(at, nd->pool_in_conv, b0) * pool->act_n;
        ep.ldy = OC;
        ep.relu = 1;
        pooled_product(L, nd, pool, x, padded, B, sr, &ep);
        return 1;
    }
    ep.y = nd->out + row * nd->act_n;
    ep.ldy = OC;
    layer_product(L, nd, x, padded, B, &ep);
    if (nd->pool_in_conv) { /* the relu and pool the float conv does in its product */
        nn_node *pool = &m->nodes[nd->pool_in_conv], *relu = &m->nodes[pool->in];
        const nn_pool_shape ps = nn_node_pool_shape(pool, B);
        nn_relu_maxpool_forward(
            infer && !relu->head ? NULL : relu->out + (size_t)nn_node_row(at, pool->in, b0) * relu->act_n,
            pool->out + (size_t)nn_node_row(at, nd->pool_in_conv, b0) * pool->act_n,
            infer ? NULL : pool->isave + (size_t)sr * pool->act_n, ep.y, &ps);
    }
    return 1;
}
