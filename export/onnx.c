/* ONNX export of a checkpoint (see onnx.h).
 *
 * The graph is built node by node in the model's own order. Our activations are NHWC and ONNX's
 * convolutions, pools and batch norms work on NCHW, so every value is kept in one of two forms:
 * a 4-D NCHW tensor (a map) or a 2-D (batch, features) one (a vector). The input comes in NHWC,
 * as the engine feeds it, and is transposed once; a map becomes a vector the way our flatten reads
 * it (back to NHWC, then flattened), and a map output goes back to NHWC, so every output has our
 * layout. Weights are reordered where the layouts differ (conv: (OC, KH, KW, C) -> (OC, C, KH,
 * KW)). Messages are protobuf-c's, generated from the onnx.proto that python3-onnx ships; every
 * allocation of a graph is kept on one list and freed together. */
#include "export/onnx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/exits.h"
#include "io/file.h"
#include "nn/model.h"
#include "nn/quant.h"
#include "onnx.pb-c.h"

#define EX_OPSET 17
#define EX_IR_VERSION 8

typedef enum { EX_MAP, EX_VEC } ex_form;

typedef struct {
    void **owned;
    size_t n_owned, cap_owned;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    int serial; /* for the names of helper values */
} ex_graph;

static void *own(ex_graph *g, void *p)
{
    if (g->n_owned == g->cap_owned) {
        g->cap_owned = g->cap_owned ? 2 * g->cap_owned : 256;
        g->owned = xd_xrealloc(g->owned, g->cap_owned * sizeof *g->owned);
    }
    g->owned[g->n_owned++] = p;
    return p;
}

static void *ex_alloc(ex_graph *g, size_t n) { return own(g, xd_xcalloc(1, n ? n : 1)); }
static char *ex_str(ex_graph *g, const char *s) { return own(g, xd_xstrdup(s)); }

static void ex_graph_free(ex_graph *g)
{
    for (size_t i = 0; i < g->n_owned; i++) free(g->owned[i]);
    free(g->owned);
    free(g->nodes);
    free(g->inits);
}

/* A fresh value name "BASE.N". */
static char *ex_name(ex_graph *g, const char *base)
{
    char buf[NN_NAME_LEN + 32];
    snprintf(buf, sizeof buf, "%s.%d", base, g->serial++);
    return ex_str(g, buf);
}

/* An attribute of the given type; the caller sets its value. */
static Onnx__AttributeProto *attr_new(ex_graph *g, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = ex_alloc(g, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = ex_str(g, name);
    a->has_type = 1;
    a->type = type;
    return a;
}

static Onnx__AttributeProto *attr_int(ex_graph *g, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr_new(g, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(ex_graph *g, const char *name, float v)
{
    Onnx__AttributeProto *a = attr_new(g, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
    return a;
}

static Onnx__AttributeProto *attr_ints(ex_graph *g, const char *name, const int64_t *v, size_t n)
{
    Onnx__AttributeProto *a = attr_new(g, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = n;
    a->ints = ex_alloc(g, n * sizeof *a->ints);
    memcpy(a->ints, v, n * sizeof *v);
    return a;
}

static Onnx__AttributeProto *attr_string(ex_graph *g, const char *name, const char *v)
{
    Onnx__AttributeProto *a = attr_new(g, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)ex_str(g, v);
    return a;
}

/* A node op(inputs) -> out, with up to 4 attributes (NULL-terminated list). */
static void ex_node(ex_graph *g, const char *op, const char *const *in, size_t n_in,
                    const char *out, Onnx__AttributeProto *a0, Onnx__AttributeProto *a1,
                    Onnx__AttributeProto *a2, Onnx__AttributeProto *a3)
{
    Onnx__NodeProto *nd = ex_alloc(g, sizeof *nd);
    onnx__node_proto__init(nd);
    nd->op_type = ex_str(g, op);
    nd->name = ex_str(g, out);
    nd->n_input = n_in;
    nd->input = ex_alloc(g, n_in * sizeof *nd->input);
    for (size_t i = 0; i < n_in; i++) nd->input[i] = ex_str(g, in[i]);
    nd->n_output = 1;
    nd->output = ex_alloc(g, sizeof *nd->output);
    nd->output[0] = ex_str(g, out);
    Onnx__AttributeProto *as[4] = {a0, a1, a2, a3};
    nd->attribute = ex_alloc(g, sizeof as);
    for (int i = 0; i < 4 && as[i]; i++) nd->attribute[nd->n_attribute++] = as[i];
    if (g->n_nodes == g->cap_nodes) {
        g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 64;
        g->nodes = xd_xrealloc(g->nodes, g->cap_nodes * sizeof *g->nodes);
    }
    g->nodes[g->n_nodes++] = nd;
}

/* A one-input node without attributes, to a fresh name; returns it. */
static const char *ex_unary(ex_graph *g, const char *op, const char *in, const char *base)
{
    const char *out = ex_name(g, base);
    ex_node(g, op, &in, 1, out, NULL, NULL, NULL, NULL);
    return out;
}

/* A float or int64 initializer of the given shape; returns its name. */
static const char *ex_init(ex_graph *g, const char *name, int dtype, const int64_t *dims,
                           int ndim, const void *data, size_t bytes)
{
    Onnx__TensorProto *t = ex_alloc(g, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = ex_str(g, name);
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = (size_t)ndim;
    t->dims = ex_alloc(g, (size_t)ndim * sizeof *t->dims);
    memcpy(t->dims, dims, (size_t)ndim * sizeof *dims);
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = ex_alloc(g, bytes);
    memcpy(t->raw_data.data, data, bytes);
    if (g->n_inits == g->cap_inits) {
        g->cap_inits = g->cap_inits ? 2 * g->cap_inits : 64;
        g->inits = xd_xrealloc(g->inits, g->cap_inits * sizeof *g->inits);
    }
    g->inits[g->n_inits++] = t;
    return t->name;
}

static const char *ex_floats(ex_graph *g, const char *name, const float *v, const int64_t *dims,
                             int ndim)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
    return ex_init(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, ndim, v, n * sizeof *v);
}

static const char *ex_transpose(ex_graph *g, const char *in, const int64_t perm[4])
{
    const char *out = ex_name(g, in);
    ex_node(g, "Transpose", &in, 1, out, attr_ints(g, "perm", perm, 4), NULL, NULL, NULL);
    return out;
}

static const int64_t to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};

/* in (a map or a vector) as a vector in our (h, w, c) order. */
static const char *as_vec(ex_graph *g, const char *in, ex_form f)
{
    if (f == EX_VEC) return in;
    const char *t = ex_transpose(g, in, to_nhwc), *out = ex_name(g, in);
    ex_node(g, "Flatten", &t, 1, out, attr_int(g, "axis", 1), NULL, NULL, NULL);
    return out;
}

/* in as a map of shape (h, w, c): a vector (B, h*w*c) in our order becomes NCHW. */
static const char *as_map(ex_graph *g, const char *in, ex_form f, int h, int w, int c)
{
    if (f == EX_MAP) return in;
    const int64_t shape[4] = {0, h, w, c};
    char nm[NN_NAME_LEN + 48];
    snprintf(nm, sizeof nm, "%s.shape%d", in, g->serial++);
    const char *s = ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, (const int64_t[]){4}, 1,
                            shape, sizeof shape);
    const char *ins[2] = {in, s}, *r = ex_name(g, in);
    ex_node(g, "Reshape", ins, 2, r, NULL, NULL, NULL, NULL);
    return ex_transpose(g, r, to_nchw);
}

/* A parameter of node nd ("NAME.suffix") as a float initializer; dims NULL: its own shape. */
static const char *ex_param(ex_graph *g, nn_model *m, const nn_node *nd, const char *suffix)
{
    char nm[NN_NAME_LEN + 24];
    snprintf(nm, sizeof nm, "%s.%s", nd->name, suffix);
    const nn_param *p = nn_model_param(m, nm);
    return ex_floats(g, nm, nn_model_param_data(m, p), p->shape, p->ndim);
}

/* The weight of layer i (linear: dims NULL, its own shape, or on a map the (O, I, 1, 1) dims[4]
 * of a 1x1 convolution; conv2d: the OIHW dims[4], reordered from our (O, KH, KW, C)):
 * a float initializer, or with wbits=8 its int8 values and per-output scales behind a
 * DequantizeLinear (axis 0): the values the integer engine multiplies (its own when attached,
 * else quantised as the fake-quant forward does). */
static const char *ex_weight(ex_graph *g, nn_model *m, int i, const int64_t *dims, int ndim)
{
    const nn_node *nd = &m->nodes[i];
    char nm[NN_NAME_LEN + 24];
    snprintf(nm, sizeof nm, "%s.weight", nd->name);
    const nn_param *p = nn_model_param(m, nm);
    const float *w = nn_model_param_data(m, p);
    const int rows = (int)p->shape[0], cols = (int)(p->n / (size_t)rows);
    const int conv = ndim == 4;
    if (!dims) dims = p->shape;
    const float *scale = NULL;
    const int8_t *q = nd->wbits ? nn_qengine_weights(m, i, &scale) : NULL;
    if (nd->wbits && !q) {
        int8_t *own_q = ex_alloc(g, p->n);
        float *own_s = ex_alloc(g, sizeof(float) * (size_t)rows);
        nn_quant_weights(own_q, own_s, w, rows, cols, nd->wbits);
        q = own_q;
        scale = own_s;
    }
    /* our (O, KH, KW, C) as ONNX's (O, C, KH, KW) */
    const int K = nd->kind == NN_CONV2D ? nd->k : 1, C = conv ? nd->ic : cols;
    float *wf = q ? NULL : ex_alloc(g, sizeof(float) * p->n);
    int8_t *wq = q ? ex_alloc(g, p->n) : NULL;
    for (int o = 0; o < rows; o++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++)
                for (int c = 0; c < C; c++) {
                    const size_t to = (((size_t)o * C + c) * K + ky) * K + kx,
                                 from = (((size_t)o * K + ky) * K + kx) * C + c;
                    if (q) wq[to] = q[from];
                    else wf[to] = w[from];
                }
    if (!q) return ex_floats(g, nm, wf, dims, ndim);
    const int64_t oc[1] = {rows};
    const char *ins[3] = {ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, dims, ndim, wq, p->n),
                          NULL, NULL};
    snprintf(nm, sizeof nm, "%s.weight_scale", nd->name);
    ins[1] = ex_floats(g, nm, scale, oc, 1);
    snprintf(nm, sizeof nm, "%s.weight_zero", nd->name);
    ins[2] = ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, oc, 1, ex_alloc(g, (size_t)rows),
                     (size_t)rows);
    const char *wd = ex_name(g, nd->name);
    ex_node(g, "DequantizeLinear", ins, 3, wd, attr_int(g, "axis", 0), NULL, NULL, NULL);
    return wd;
}

/* A fakequant node with a moving range as QuantizeLinear -> DequantizeLinear: uint8 codes with
 * our scale and zero point (0 unsigned, 128 signed; both saturate to 0..255 and round halves to
 * even, as nn_quant_act does); an uncalibrated range (0) passes x through. */
static void ex_qdq(ex_graph *g, nn_model *m, const nn_node *nd, const char *x, const char *out)
{
    char nm[NN_NAME_LEN + 24];
    snprintf(nm, sizeof nm, "%s.range", nd->name);
    const float range = *nn_model_param_data(m, nn_model_param(m, nm));
    if (!(range > 0.0f)) {
        ex_node(g, "Identity", &x, 1, out, NULL, NULL, NULL, NULL);
        return;
    }
    const float sc = nn_quant_act_scale(range, nd->bits, nd->usign);
    const uint8_t zero = nd->usign ? 0 : 128;
    const int64_t none[1] = {0}; /* a scalar: no dims */
    snprintf(nm, sizeof nm, "%s.scale", nd->name);
    const char *ks = ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, none, 0, &sc, sizeof sc);
    snprintf(nm, sizeof nm, "%s.zero_point", nd->name);
    const char *kz = ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, none, 0, &zero, 1);
    const char *qi[3] = {x, ks, kz}, *codes = ex_name(g, nd->name);
    ex_node(g, "QuantizeLinear", qi, 3, codes, NULL, NULL, NULL, NULL);
    const char *di[3] = {codes, ks, kz};
    ex_node(g, "DequantizeLinear", di, 3, out, NULL, NULL, NULL, NULL);
}

/* One node of the model: its value's name and form, or XD_EUNSUPPORTED. */
static xd_status ex_layer(ex_graph *g, nn_model *m, int i, const char **names, ex_form *forms,
                          const char *input, ex_form input_form, xd_err *e)
{
    const nn_node *nd = &m->nodes[i];
    const char *x = nd->in == NN_INPUT ? input : names[nd->in];
    const ex_form xf = nd->in == NN_INPUT ? input_form : forms[nd->in];
    /* "layer/NAME": clear of the graph's own names (input, logits, probabilities) */
    char vname[NN_NAME_LEN + 8];
    snprintf(vname, sizeof vname, "layer/%s", nd->name);
    const char *out = ex_str(g, vname);
    ex_form of = xf;
    if ((nd->wbits && nd->wbits != 8) || (nd->kind == NN_FAKEQUANT && nd->ema > 0.0f && nd->bits != 8))
        return xd_fail(e, XD_EUNSUPPORTED, "layer '%s' (%s) is quantised to other than 8 bits: no "
                       "ONNX export", nd->name, nn_kind_name(nd->kind));
    if (nd->kind == NN_FAKEQUANT && nd->ema > 0.0f) {
        ex_qdq(g, m, nd, x, out);
        names[i] = out;
        forms[i] = of;
        return XD_OK;
    }
    switch (nd->kind) {
    case NN_LINEAR: {
        if (nd->ih * nd->iw > 1) {
            /* on a map: the same weights at every position, a 1x1 convolution ([out][in] is
             * the kernel's (out, in, 1, 1) in the same order) */
            const int64_t dims[4] = {nd->units, nd->ic, 1, 1};
            const char *ins[3] = {as_map(g, x, xf, nd->ih, nd->iw, nd->ic),
                                  ex_weight(g, m, i, dims, 4), NULL};
            if (nd->bias) ins[2] = ex_param(g, m, nd, "bias");
            const int64_t one[2] = {1, 1};
            ex_node(g, "Conv", ins, nd->bias ? 3 : 2, out, attr_ints(g, "kernel_shape", one, 2),
                    NULL, NULL, NULL);
            of = EX_MAP;
            break;
        }
        const char *ins[3] = {as_vec(g, x, xf), ex_weight(g, m, i, NULL, 2), NULL};
        if (nd->bias) ins[2] = ex_param(g, m, nd, "bias");
        ex_node(g, "Gemm", ins, nd->bias ? 3 : 2, out, attr_int(g, "transB", 1), NULL, NULL, NULL);
        of = EX_VEC;
        break;
    }
    case NN_CONV2D: {
        const int K = nd->k;
        const int64_t dims[4] = {nd->c, nd->ic, K, K};
        const char *ins[3] = {as_map(g, x, xf, nd->ih, nd->iw, nd->ic), ex_weight(g, m, i, dims, 4),
                              NULL};
        if (nd->bias) ins[2] = ex_param(g, m, nd, "bias");
        const int64_t k2[2] = {K, K}, s2[2] = {nd->stride, nd->stride},
                      p4[4] = {nd->pad, nd->pad, nd->pad, nd->pad};
        ex_node(g, "Conv", ins, nd->bias ? 3 : 2, out, attr_ints(g, "kernel_shape", k2, 2),
                attr_ints(g, "strides", s2, 2), attr_ints(g, "pads", p4, 4), NULL);
        of = EX_MAP;
        break;
    }
    case NN_MAXPOOL:
    case NN_AVGPOOL: {
        const int64_t k2[2] = {nd->k, nd->k}, s2[2] = {nd->stride, nd->stride};
        const char *in = as_map(g, x, xf, nd->ih, nd->iw, nd->ic);
        ex_node(g, nd->kind == NN_MAXPOOL ? "MaxPool" : "AveragePool", &in, 1, out,
                attr_ints(g, "kernel_shape", k2, 2), attr_ints(g, "strides", s2, 2), NULL, NULL);
        of = EX_MAP;
        break;
    }
    case NN_GAP: {
        const char *p = ex_unary(g, "GlobalAveragePool", as_map(g, x, xf, nd->ih, nd->iw, nd->ic),
                                 nd->name);
        ex_node(g, "Flatten", &p, 1, out, attr_int(g, "axis", 1), NULL, NULL, NULL);
        of = EX_VEC;
        break;
    }
    case NN_RELU: ex_node(g, "Relu", &x, 1, out, NULL, NULL, NULL, NULL); break;
    case NN_TANH: ex_node(g, "Tanh", &x, 1, out, NULL, NULL, NULL, NULL); break;
    case NN_SIGMOID: ex_node(g, "Sigmoid", &x, 1, out, NULL, NULL, NULL, NULL); break;
    case NN_DROPOUT: ex_node(g, "Identity", &x, 1, out, NULL, NULL, NULL, NULL); break;
    case NN_GELU: {
        /* x * (1 + erf(x / sqrt 2)) / 2, the exact form our layer computes */
        char nm[NN_NAME_LEN + 16];
        const int64_t one[1] = {1};
        snprintf(nm, sizeof nm, "%s.sqrt2", nd->name);
        const float r2 = (float)M_SQRT2, c1 = 1.0f, ch = 0.5f;
        const char *k2 = ex_floats(g, nm, &r2, one, 1);
        snprintf(nm, sizeof nm, "%s.one", nd->name);
        const char *k1 = ex_floats(g, nm, &c1, one, 1);
        snprintf(nm, sizeof nm, "%s.half", nd->name);
        const char *kh = ex_floats(g, nm, &ch, one, 1);
        const char *d[2] = {x, k2}, *dv = ex_name(g, nd->name);
        ex_node(g, "Div", d, 2, dv, NULL, NULL, NULL, NULL);
        const char *er = ex_unary(g, "Erf", dv, nd->name);
        const char *a[2] = {er, k1}, *ad = ex_name(g, nd->name);
        ex_node(g, "Add", a, 2, ad, NULL, NULL, NULL, NULL);
        const char *mu[2] = {x, ad}, *mv = ex_name(g, nd->name);
        ex_node(g, "Mul", mu, 2, mv, NULL, NULL, NULL, NULL);
        const char *hf[2] = {mv, kh};
        ex_node(g, "Mul", hf, 2, out, NULL, NULL, NULL, NULL);
        break;
    }
    case NN_SOFTMAX:
    case NN_LOGSOFTMAX:
        /* over the channels: axis 1 of both forms */
        ex_node(g, nd->kind == NN_SOFTMAX ? "Softmax" : "LogSoftmax", &x, 1, out,
                attr_int(g, "axis", 1), NULL, NULL, NULL);
        break;
    case NN_BATCHNORM: {
        const char *ins[5] = {x, ex_param(g, m, nd, "weight"), ex_param(g, m, nd, "bias"),
                              ex_param(g, m, nd, "running_mean"), ex_param(g, m, nd, "running_var")};
        ex_node(g, "BatchNormalization", ins, 5, out, attr_float(g, "epsilon", nd->eps), NULL,
                NULL, NULL);
        break;
    }
    case NN_FLATTEN:
        ex_node(g, "Identity", (const char *[]){as_vec(g, x, xf)}, 1, out, NULL, NULL, NULL, NULL);
        of = EX_VEC;
        break;
    case NN_ADD: {
        const char *y = nd->in2 == NN_INPUT ? input : names[nd->in2];
        const ex_form yf = nd->in2 == NN_INPUT ? input_form : forms[nd->in2];
        const char *ins[2] = {x, xf == yf ? y : xf == EX_MAP ? as_map(g, y, yf, nd->h, nd->w, nd->c)
                                                             : as_vec(g, y, yf)};
        ex_node(g, "Add", ins, 2, out, NULL, NULL, NULL, NULL);
        break;
    }
    case NN_UPSAMPLE: {
        /* bilinear at half-pixel centres, clamped at the edges: Resize's linear, half_pixel */
        char nm[NN_NAME_LEN + 16];
        snprintf(nm, sizeof nm, "%s.scales", nd->name);
        const float sc[4] = {1.0f, 1.0f, (float)nd->factor, (float)nd->factor};
        const int64_t four[1] = {4};
        const char *ins[3] = {as_map(g, x, xf, nd->ih, nd->iw, nd->ic), "",
                              ex_floats(g, nm, sc, four, 1)};
        ex_node(g, "Resize", ins, 3, out, attr_string(g, "mode", "linear"),
                attr_string(g, "coordinate_transformation_mode", "half_pixel"), NULL, NULL);
        of = EX_MAP;
        break;
    }
    case NN_LAYERNORM: {
        /* over the channels, the last axis in our layout */
        const char *in = xf == EX_MAP ? ex_transpose(g, x, to_nhwc) : x;
        const char *ins[3] = {in, ex_param(g, m, nd, "weight"), ex_param(g, m, nd, "bias")};
        const char *ln = xf == EX_MAP ? ex_name(g, nd->name) : out;
        ex_node(g, "LayerNormalization", ins, 3, ln, attr_int(g, "axis", -1),
                attr_float(g, "epsilon", nd->eps), NULL, NULL);
        if (xf == EX_MAP)
            ex_node(g, "Transpose", &ln, 1, out, attr_ints(g, "perm", to_nchw, 4), NULL, NULL, NULL);
        break;
    }
    case NN_EMBBAG: {
        /* ids < 0 are padding: rows gathered at max(id, 0), masked, summed (and averaged over
         * the ids present; a row without any stays 0) */
        char nm[NN_NAME_LEN + 16];
        const int64_t one[1] = {1};
        const int32_t zero = 0;
        const float fone = 1.0f;
        snprintf(nm, sizeof nm, "%s.zero", nd->name);
        const char *z = ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__INT32, one, 1, &zero,
                                sizeof zero);
        snprintf(nm, sizeof nm, "%s.axis1", nd->name);
        const char *ax = ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, one, 1, one,
                                 sizeof one);
        snprintf(nm, sizeof nm, "%s.axis2", nd->name);
        const int64_t two[1] = {2};
        const char *ax2 = ex_init(g, nm, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, one, 1, two,
                                  sizeof two);
        const char *ge[2] = {x, z}, *present = ex_name(g, nd->name);
        ex_node(g, "GreaterOrEqual", ge, 2, present, NULL, NULL, NULL, NULL);
        const char *mask = ex_name(g, nd->name);
        ex_node(g, "Cast", &present, 1, mask, attr_int(g, "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT),
                NULL, NULL, NULL);
        const char *mx[2] = {x, z}, *idx = ex_name(g, nd->name);
        ex_node(g, "Max", mx, 2, idx, NULL, NULL, NULL, NULL);
        const char *ga[2] = {ex_param(g, m, nd, "weight"), idx}, *rows = ex_name(g, nd->name);
        ex_node(g, "Gather", ga, 2, rows, attr_int(g, "axis", 0), NULL, NULL, NULL);
        const char *us[2] = {mask, ax2}, *m3 = ex_name(g, nd->name);
        ex_node(g, "Unsqueeze", us, 2, m3, NULL, NULL, NULL, NULL);
        const char *mu[2] = {rows, m3}, *kept = ex_name(g, nd->name);
        ex_node(g, "Mul", mu, 2, kept, NULL, NULL, NULL, NULL);
        const char *rs[2] = {kept, ax};
        const char *sum = nd->mode == NN_BAG_SUM ? out : ex_name(g, nd->name);
        ex_node(g, "ReduceSum", rs, 2, sum, attr_int(g, "keepdims", 0), NULL, NULL, NULL);
        if (nd->mode != NN_BAG_SUM) {
            const char *rc[2] = {mask, ax}, *cnt = ex_name(g, nd->name);
            ex_node(g, "ReduceSum", rc, 2, cnt, attr_int(g, "keepdims", 1), NULL, NULL, NULL);
            snprintf(nm, sizeof nm, "%s.one", nd->name);
            const char *cm[2] = {cnt, ex_floats(g, nm, &fone, one, 1)}, *den = ex_name(g, nd->name);
            ex_node(g, "Max", cm, 2, den, NULL, NULL, NULL, NULL);
            const char *dv[2] = {sum, den};
            ex_node(g, "Div", dv, 2, out, NULL, NULL, NULL, NULL);
        }
        of = EX_VEC;
        break;
    }
    case NN_FAKEQUANT: {
        /* one scale for the whole batch, as our layer: max |x| / (2^(bits-1) - 1), 1 for zeros;
         * Round, like nearbyintf, rounds halves to even */
        char nm[NN_NAME_LEN + 16];
        const int64_t one[1] = {1};
        const float zero = 0.0f, fone = 1.0f, levels = (float)((1 << (nd->bits - 1)) - 1);
        snprintf(nm, sizeof nm, "%s.zero", nd->name);
        const char *kz = ex_floats(g, nm, &zero, one, 1);
        snprintf(nm, sizeof nm, "%s.one", nd->name);
        const char *k1 = ex_floats(g, nm, &fone, one, 1);
        snprintf(nm, sizeof nm, "%s.levels", nd->name);
        const char *kl = ex_floats(g, nm, &levels, one, 1);
        const char *ab = ex_unary(g, "Abs", x, nd->name), *amax = ex_name(g, nd->name);
        ex_node(g, "ReduceMax", &ab, 1, amax, attr_int(g, "keepdims", 1), NULL, NULL, NULL);
        const char *gt[2] = {amax, kz}, *pos = ex_name(g, nd->name);
        ex_node(g, "Greater", gt, 2, pos, NULL, NULL, NULL, NULL);
        const char *dv[2] = {amax, kl}, *sc = ex_name(g, nd->name);
        ex_node(g, "Div", dv, 2, sc, NULL, NULL, NULL, NULL);
        const char *wh[3] = {pos, sc, k1}, *scale = ex_name(g, nd->name);
        ex_node(g, "Where", wh, 3, scale, NULL, NULL, NULL, NULL);
        const char *xs[2] = {x, scale}, *r = ex_name(g, nd->name);
        ex_node(g, "Div", xs, 2, r, NULL, NULL, NULL, NULL);
        const char *mu[2] = {ex_unary(g, "Round", r, nd->name), scale};
        ex_node(g, "Mul", mu, 2, out, NULL, NULL, NULL, NULL);
        break;
    }
    default:
        return xd_fail(e, XD_EUNSUPPORTED, "layer '%s' (%s) has no ONNX export yet", nd->name,
                       nn_kind_name(nd->kind));
    }
    names[i] = out;
    forms[i] = of;
    return XD_OK;
}

static Onnx__ValueInfoProto *ex_value_info(ex_graph *g, const char *name, int elem_type,
                                           const int64_t *dims, int ndim)
{
    Onnx__ValueInfoProto *v = ex_alloc(g, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = ex_str(g, name);
    Onnx__TypeProto *t = ex_alloc(g, sizeof *t);
    onnx__type_proto__init(t);
    Onnx__TypeProto__Tensor *tt = ex_alloc(g, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem_type;
    Onnx__TensorShapeProto *sh = ex_alloc(g, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)ndim;
    sh->dim = ex_alloc(g, (size_t)ndim * sizeof *sh->dim);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = ex_alloc(g, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = ex_str(g, "batch");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        sh->dim[i] = d;
    }
    tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->type = t;
    return v;
}

/* Metadata properties: what to feed the model. The stored class names are the default head's:
 * an exit of another number of classes gets its class numbers, as predict gives them. */
static xd_status ex_metadata(ex_graph *g, const char *path, const nn_model *m, int head,
                             Onnx__ModelProto *mp, xd_err *e)
{
    char *augment, *text, buf[128], **names = NULL, *classes = NULL;
    int h, w, c;
    xd_status s = ckpt_preprocessing(path, &augment, &text, e);
    if (s != XD_OK) return s;
    /* the stored class names, checked against the model's classes, in the checkpoint's form */
    if ((s = ckpt_trained_images(path, &h, &w, &c, e)) == XD_OK)
        s = ckpt_head_class_names(path, m, head, &names, e);
    if (s == XD_OK && names) {
        size_t k = 0;
        while (names[k]) k++;
        if (!(classes = ckpt_classes_json((const char *const *)names, k)))
            s = xd_fail(e, XD_ENOMEM, "%s: no memory for the class names", path);
    }
    ckpt_class_names_free(names);
    if (s != XD_OK) {
        free(augment);
        free(text);
        return s;
    }
    const char *keys[6], *vals[6];
    int n = 0;
    keys[n] = "xdistill.input";
    vals[n++] = "float32 NHWC (batch, height, width, channels): the image after the "
                "preprocessing below, or int32 token ids (batch, tokens) for a text model";
    keys[n] = CKPT_META_MODEL;
    vals[n++] = m->desc;
    if (augment) {
        keys[n] = "xdistill.augment";
        vals[n++] = augment;
        keys[n] = "xdistill.text";
        vals[n++] = text;
    }
    if (h) {
        snprintf(buf, sizeof buf, "%dx%dx%d", h, w, c);
        keys[n] = "xdistill.images";
        vals[n++] = buf;
    }
    if (classes) {
        keys[n] = CKPT_META_CLASSES;
        vals[n++] = classes;
    }
    mp->n_metadata_props = (size_t)n;
    mp->metadata_props = ex_alloc(g, (size_t)n * sizeof *mp->metadata_props);
    for (int i = 0; i < n; i++) {
        Onnx__StringStringEntryProto *kv = ex_alloc(g, sizeof *kv);
        onnx__string_string_entry_proto__init(kv);
        kv->key = ex_str(g, keys[i]);
        kv->value = ex_str(g, vals[i]);
        mp->metadata_props[i] = kv;
    }
    free(augment);
    free(text);
    free(classes);
    return XD_OK;
}

xd_status ex_onnx_write(const char *ckpt, const char *exit, const char *out_path, xd_err *e)
{
    nn_model m;
    int head;
    xd_status s = ckpt_load(ckpt, 1, &m, e);
    if (s != XD_OK) return s;
    head = nn_model_default_head(&m);
    if (exit && (s = exits_find(&m, ckpt, exit, &head, e)) != XD_OK) {
        nn_model_free(&m);
        return s;
    }
    ex_graph g = {0};
    const char **names = xd_xcalloc((size_t)m.n_nodes, sizeof *names);
    ex_form *forms = xd_xcalloc((size_t)m.n_nodes, sizeof *forms);
    /* token ids go to the embedding bags as they are; images to NCHW */
    const char *input = m.tokens ? "input" : ex_transpose(&g, "input", to_nchw);
    /* up to the head: list order is evaluation order, so nothing it reads comes later */
    for (int i = 0; i <= head && s == XD_OK; i++)
        s = ex_layer(&g, &m, i, names, forms, input, m.tokens ? EX_VEC : EX_MAP, e);
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    if (s == XD_OK) {
        const nn_node *hn = &m.nodes[head];
        const int map = nn_node_is_map(hn);
        /* the outputs in our layout: logits (B, K) or (B, H, W, K), and their softmax */
        const char *lg = map ? ex_transpose(&g, names[head], to_nhwc) : as_vec(&g, names[head], forms[head]);
        ex_node(&g, "Identity", &lg, 1, "logits", NULL, NULL, NULL, NULL);
        ex_node(&g, "Softmax", (const char *[]){"logits"}, 1, "probabilities",
                attr_int(&g, "axis", -1), NULL, NULL, NULL);
        const int64_t in_dims[4] = {0, m.tokens ? m.tokens : m.h, m.w, m.c};
        const int64_t out_dims[4] = {0, map ? hn->h : (int64_t)hn->act_n, hn->w, hn->c};
        graph.name = ex_str(&g, "xdistill");
        graph.n_node = g.n_nodes;
        graph.node = g.nodes;
        graph.n_initializer = g.n_inits;
        graph.initializer = g.inits;
        graph.n_input = 1;
        graph.input = ex_alloc(&g, sizeof *graph.input);
        graph.input[0] = m.tokens ? ex_value_info(&g, "input", ONNX__TENSOR_PROTO__DATA_TYPE__INT32,
                                                  in_dims, 2)
                                  : ex_value_info(&g, "input", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                                                  in_dims, 4);
        graph.n_output = 2;
        graph.output = ex_alloc(&g, 2 * sizeof *graph.output);
        graph.output[0] = ex_value_info(&g, "logits", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                                        out_dims, map ? 4 : 2);
        graph.output[1] = ex_value_info(&g, "probabilities", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                                        out_dims, map ? 4 : 2);
        opset.has_version = 1;
        opset.version = EX_OPSET;
        opset.domain = ex_str(&g, "");
        model.has_ir_version = 1;
        model.ir_version = EX_IR_VERSION;
        model.n_opset_import = 1;
        model.opset_import = ex_alloc(&g, sizeof *model.opset_import);
        model.opset_import[0] = &opset;
        model.producer_name = ex_str(&g, "xdistill");
        model.producer_version = ex_str(&g, XD_VERSION);
        model.graph = &graph;
        s = ex_metadata(&g, ckpt, &m, head, &model, e);
    }
    if (s == XD_OK) {
        size_t n = onnx__model_proto__get_packed_size(&model);
        uint8_t *buf = xd_try_alloc(n ? n : 1);
        if (!buf) {
            s = xd_fail(e, XD_ENOMEM, "%s: no memory for %zu bytes", out_path, n);
        } else {
            onnx__model_proto__pack(&model, buf);
            io_atomic w;
            s = io_atomic_open(&w, out_path, e);
            if (s == XD_OK) s = io_atomic_write(&w, buf, n, e);
            if (s == XD_OK) s = io_atomic_commit(&w, e);
            else io_atomic_abort(&w);
            free(buf);
        }
    } else if (s == XD_EUNSUPPORTED) {
        xd_err_prefix(e, "%s", ckpt);
    }
    free(names);
    free(forms);
    ex_graph_free(&g);
    nn_model_free(&m);
    return s;
}
