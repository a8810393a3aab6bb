/* Fake quantisation, the quantised form of a model's description, and the integer engine (see
 * quant.h). */
#include "nn/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "nn/layers.h"

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

/* x's level: round(x / s) clamped to lo..hi (compares rather than fminf/fmaxf, which are calls
 * unless NaN need not be kept) */
static inline float level(float x, float s, float lo, float hi)
{
    const float q = nearbyintf(x / s);
    return q < lo ? lo : q > hi ? hi : q;
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
#pragma omp parallel for if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = s * level(inp[i], s, lo, hi);
    }
    if (codes) {
#pragma omp parallel for if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)((int)level(inp[i], s, lo, hi) + zero);
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

static float weight_level(float w, float s, float qmax) { return level(w, s, -qmax, qmax); }

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
    uint8_t *cols;       /* conv2d: (max_batch * OH * OW, k * k * ic) codes */
    int32_t *acc;        /* (max_batch * rows, OC) */
} qlayer;

struct nn_qengine {
    int n;               /* the model's nodes */
    qlayer *layer;       /* (n_nodes) */
    uint8_t **codes;     /* (n_nodes) a fakequant node's codes (max_batch * act_n), else NULL */
    uint8_t *float_read; /* (n_nodes) a node other than a quantised layer reads its output */
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

void nn_qengine_free(nn_qengine *q)
{
    if (!q) return;
    for (int i = 0; i < q->n; i++) {
        qlayer *L = &q->layer[i];
        nn_qweights_free(&L->w);
        free(L->scale);
        free(L->mult);
        free(L->bias);
        free(L->cols);
        free(L->acc);
        free(q->codes[i]);
    }
    free(q->float_read);
    free(q->layer);
    free(q->codes);
    free(q);
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
        const size_t rows = (size_t)m->max_batch * nd->h * nd->w;
        if (nd->kind == NN_CONV2D) L->cols = xd_xmalloc(rows * (size_t)K);
        L->acc = xd_xmalloc(sizeof(int32_t) * rows * (size_t)nd->units);
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
    memcpy(L->scale, scale, sizeof(float) * (size_t)nd->units);
    float *w = m->param + nd->w_off;
    for (int o = 0; o < nd->units; o++)
        for (int k = 0; k < K; k++) w[(size_t)o * K + k] = scale[o] * (float)q[(size_t)o * K + k];
    set_mult(m, i);
}

/* The conv's input codes unfolded: one row of k*k*ic codes per output pixel, the zero point where
 * the window passes the border (zero padding). */
static void im2col_codes(uint8_t *cols, const uint8_t *x, const nn_node *nd, int B, uint8_t zero)
{
    const int C = nd->ic, k = nd->k, K = k * k * C;
#pragma omp parallel for if ((size_t)B * nd->h * nd->w * K > PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < nd->h; oy++)
            for (int ox = 0; ox < nd->w; ox++) {
                uint8_t *row = cols + (((size_t)b * nd->h + oy) * nd->w + ox) * K;
                const int ix0 = ox * nd->stride - nd->pad;
                for (int ky = 0; ky < k; ky++) {
                    const int iy = oy * nd->stride - nd->pad + ky;
                    uint8_t *dst = row + (size_t)ky * k * C;
                    if (iy < 0 || iy >= nd->ih) {
                        for (int j = 0; j < k * C; j++) dst[j] = zero;
                        continue;
                    }
                    const uint8_t *line = x + ((size_t)b * nd->ih + iy) * nd->iw * C;
                    if (ix0 >= 0 && ix0 + k <= nd->iw) { /* the window's row is inside */
                        for (int j = 0; j < k * C; j++) dst[j] = line[(size_t)ix0 * C + j];
                        continue;
                    }
                    for (int kx = 0; kx < k; kx++) {
                        const int ix = ix0 + kx, in = ix >= 0 && ix < nd->iw;
                        for (int j = 0; j < C; j++) dst[kx * C + j] = in ? line[(size_t)ix * C + j] : zero;
                    }
                }
            }
}

int nn_qengine_forward_node(nn_model *m, int i, int B)
{
    nn_qengine *q = m->qengine;
    nn_node *nd = &m->nodes[i];
    if (q->codes[i]) { /* a fakequant node a quantised layer reads */
        const float *x = nd->in == NN_INPUT ? (const float *)m->input : m->nodes[nd->in].out;
        nn_quant_act(q->codes[i], q->float_read[i] ? nd->out : NULL, x, (size_t)B * nd->act_n,
                     m->state[nd->s_off], nd->bits, nd->usign);
        return 1;
    }
    qlayer *L = &q->layer[i];
    if (!L->on) return 0;
    int zero;
    layer_input_scale(m, i, &zero);
    const uint8_t *x = q->codes[nd->in];
    const int K = L->w.K, OC = nd->units, M = B * nd->h * nd->w;
    if (nd->kind == NN_CONV2D) {
        im2col_codes(L->cols, x, nd, B, (uint8_t)zero);
        x = L->cols;
    }
    nn_qgemm(L->acc, OC, x, K, M, &L->w);
    const float *b = nd->b_n ? m->param + nd->b_off : L->bias, *mult = L->mult;
    const int32_t *wsum = L->w.wsum;
    float *y = nd->out;
#pragma omp parallel for if ((size_t)M * OC > PAR_MIN)
    for (int r = 0; r < M; r++) {
        const int32_t *acc = L->acc + (size_t)r * OC;
        float *yr = y + (size_t)r * OC;
        for (int o = 0; o < OC; o++) yr[o] = (float)(acc[o] - zero * wsum[o]) * mult[o] + b[o];
    }
    if (nd->pool_in_conv) { /* the relu and pool the float conv does in its product */
        nn_node *pool = &m->nodes[nd->pool_in_conv];
        nn_pool_shape ps = {.B = B, .H = pool->ih, .W = pool->iw, .C = pool->ic, .k = pool->k,
                            .stride = pool->stride};
        nn_pool_shape_init(&ps);
        nn_relu_maxpool_forward(m->nodes[pool->in].out, pool->out, pool->isave, y, &ps);
    }
    return 1;
}
