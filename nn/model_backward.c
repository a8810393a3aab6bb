/* Model backward: propagates the head and tap gradients down the node list to the parameters and,
 * when asked, the input (see model.h). */
#include "nn/model.h"
#include "nn/model_internal.h"

#include <string.h>

#include "core/mem.h"
#include "nn/gemm_bf16.h"
#include "nn/quant.h"

static int source_grad_used(const nn_model *m, int idx)
{
    return idx == NN_INPUT ? m->dinput != NULL : m->nodes[idx].grad_used;
}

/* A gradient is worth computing only where it can reach a parameter or the input gradient:
 * e.g. the flatten in front of an MLP's first layer needs none, so that layer skips its dinp
 * product. */
static void mark_grad_used(nn_model *m)
{
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        nd->grad_used = nd->w_n || nd->b_n || source_grad_used(m, nd->in) ||
                        (nd->kind == NN_ADD && source_grad_used(m, nd->in2));
    }
}

/* Where the gradient for producer idx goes, or NULL when nothing uses it. *fresh = 1 when the
 * buffer holds nothing yet this step: it is not zeroed here, the caller writes all of it (a
 * `_first` backward) or zeroes it. */
static float *grad_target(nn_model *m, int idx, int *fresh)
{
    *fresh = 0;
    if (idx == NN_INPUT) return m->dinput; /* NULL unless input gradients were asked for */
    nn_node *nd = &m->nodes[idx];
    if (!nd->grad_used) return NULL;
    *fresh = !nd->touched;
    nd->touched = 1;
    return nd->dout;
}

/* grad_target for a reader of idx, through a flatten (its gradient is its input's, element for
 * element) that holds nothing yet: the reader then writes its input's gradient straight away and
 * the flatten, left untouched, skips its own backward (a copy). The same sums: the copy added
 * the gradient to zero. */
static float *reader_grad_target(nn_model *m, int idx, int *fresh)
{
    while (idx >= 0 && m->nodes[idx].kind == NN_FLATTEN && m->nodes[idx].grad_used &&
           !m->nodes[idx].touched)
        idx = m->nodes[idx].in;
    return grad_target(m, idx, fresh);
}

/* The pool of a fused relu -> maxpool pair (see plan_fusion) writes the ReLU's input gradient
 * itself when both gradients are still empty (nothing else wrote into either); the ReLU, left
 * untouched, then skips its own backward. Returns 0, having done nothing, otherwise. */
static int relu_pool_backward(nn_model *m, int pool, const float *dout, const int32_t *argmax,
                              const nn_pool_shape *ps)
{
    nn_node *r = &m->nodes[m->nodes[pool].in];
    if (!r->relu_pool || r->in == NN_INPUT) return 0;
    nn_node *src = &m->nodes[r->in];
    if (!src->grad_used || src->touched) return 0;
    r->touched = 0; /* grad_target marked it for the pool's own gradient, which is not written */
    int fresh;
    float *dx = grad_target(m, r->in, &fresh);
    /* a convolution read by this ReLU alone (no other reader to add into its gradient) that
     * needs its gradient for its weights alone takes it from the pool's */
    if (src->kind == NN_CONV2D && !source_grad_used(m, src->in) &&
        nn_node_only_reader(m, r->in) == m->nodes[pool].in) {
        nn_conv_shape cs = nn_node_conv_shape(src, m->batch);
        const nn_precision outer = nn_conv_precision_enter(&cs);
        const int takes = nn_conv2d_takes_pooled(&cs, ps);
        nn_mm_precision_set(outer);
        if (takes) {
            src->pooled = pool;
            return 1;
        }
    }
    nn_relu_maxpool_backward_first(dx, dout, argmax, ps);
    return 1;
}

/* Kinds whose backward writes its whole dinp when asked to (the `_first` variants). */
static int writes_whole_dinp(nn_kind k)
{
    return k == NN_CONV2D || k == NN_MAXPOOL || k == NN_RELU || k == NN_FLATTEN || k == NN_ADD;
}

void nn_model_enable_input_grad(nn_model *m)
{
    XD_ASSERT(!m->tokens);
    if (!m->dinput)
        m->dinput = xd_xmalloc_aligned(sizeof(float) * (size_t)m->max_batch * m->h * m->w * m->c);
}

const float *nn_model_dinput(const nn_model *m) { return m->dinput; }

void nn_model_backward(nn_model *m)
{
    const int B = m->batch;
    xd_arena_reset(&m->scratch);
    mark_grad_used(m);
    const nn_precision prec = nn_mm_precision_set(m->precision);
    const int unset = m->grad_unset; /* nn_model_clear_grad: each node's gradients written */
    m->grad_unset = 0;
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        nn_node *nd = &m->nodes[i];
        /* a layer that writes its parameters' gradients whole does so; the others add */
        const int writes = unset && nd->kind == NN_LINEAR && nd->touched;
        if (unset && !writes && (nd->w_n || nd->b_n)) {
            memset(m->grad + nd->w_off, 0, sizeof(float) * nd->w_n);
            memset(m->grad + nd->b_off, 0, sizeof(float) * nd->b_n);
        }
        if (!nd->touched) continue; /* nothing downstream asked for this node's gradient */
        /* a fused convolution's output that its pool did not keep, for a ReLU's own backward */
        if (nd->in >= 0 && m->nodes[nd->in].stale && m->nodes[nd->in].kind == NN_CONV2D)
            nn_model_refresh(m, nd->in);
        const float *x = nn_node_input(m, nd->in), *dy = nd->dout, *y = nd->out;
        const float *w = nd->wbits ? nd->wq : m->param + nd->w_off; /* as forward read them */
        float *dw = m->grad + nd->w_off, *db = nd->b_n ? m->grad + nd->b_off : NULL;
        const size_t n_out = (size_t)B * nd->act_n;
        int fresh = 0;
        float *dx = nd->kind == NN_EMBBAG ? NULL : reader_grad_target(m, nd->in, &fresh);
        if (fresh && !writes_whole_dinp(nd->kind))
            memset(dx, 0, sizeof(float) * (size_t)B * m->nodes[nd->in].act_n);
        switch (nd->kind) {
        case NN_LINEAR:
            if (writes)
                nn_linear_backward_wfirst(dx, dw, db, dy, x, w, B * nd->ih * nd->iw, nd->ic,
                                          nd->units);
            else
                nn_linear_backward(dx, dw, db, dy, x, w, B * nd->ih * nd->iw, nd->ic, nd->units);
            break;
        case NN_CONV2D: {
            nn_conv_shape cs = nn_node_conv_shape(nd, B), cmax = nn_node_conv_shape(nd, m->max_batch);
            const nn_precision outer = nn_conv_precision_enter(&cs);
            /* both gradients by Winograd's where the training forward may run it */
            cs.winograd = nn_node_trains_winograd(nd);
            if (nd->pooled) { /* its gradient is still the pool's (relu_pool_backward) */
                const nn_node *pool = &m->nodes[nd->pooled];
                const nn_pool_shape ps = nn_node_pool_shape(pool, B);
                const nn_pool_grad g = {pool->dout, pool->isave, &ps, 1};
                nn_conv2d_backward_pooled(dw, db, nd->save + nn_conv_cols_size(&cmax), &g, x, &cs);
                nd->pooled = 0;
                nn_mm_precision_set(outer);
                break;
            }
            float *dcols = dx ? xd_arena_floats(&m->scratch, nn_conv_cols_size(&cs)) : NULL;
            float *wext = nd->save + nn_conv_cols_size(&cmax);
            if (fresh)
                nn_conv2d_backward_first(dx, dw, db, dcols, wext, dy, nd->save, nd->unfolded, x,
                                         w, &cs);
            else
                nn_conv2d_backward(dx, dw, db, dcols, wext, dy, nd->save, nd->unfolded, x, w, &cs);
            nn_mm_precision_set(outer);
            break;
        }
        case NN_MAXPOOL:
        case NN_AVGPOOL: {
            if (!dx) break;
            nn_pool_shape ps = nn_node_pool_shape(nd, B);
            if (nd->kind == NN_AVGPOOL) nn_avgpool_backward(dx, dy, &ps);
            else if (fresh && !relu_pool_backward(m, i, dy, nd->isave, &ps))
                nn_maxpool_backward_first(dx, dy, nd->isave, &ps);
            else if (!fresh) nn_maxpool_backward(dx, dy, nd->isave, &ps);
            break;
        }
        case NN_GAP: if (dx) nn_gap_backward(dx, dy, B, nd->ih * nd->iw, nd->ic); break;
        case NN_RELU:
            if (fresh) nn_relu_backward_first(dx, dy, x, n_out);
            else if (dx) nn_relu_backward(dx, dy, x, n_out);
            break;
        case NN_GELU: if (dx) nn_gelu_backward(dx, dy, x, n_out); break;
        case NN_TANH: if (dx) nn_tanh_backward(dx, dy, y, n_out); break;
        case NN_SIGMOID: if (dx) nn_sigmoid_backward(dx, dy, y, n_out); break;
        case NN_SOFTMAX:
            if (dx) nn_softmax_backward(dx, dy, y, (int)(n_out / (size_t)nd->c), nd->c);
            break;
        case NN_LOGSOFTMAX:
            if (dx) nn_logsoftmax_backward(dx, dy, y, (int)(n_out / (size_t)nd->c), nd->c);
            break;
        case NN_BATCHNORM:
            nn_batchnorm_backward(dx, dw, db, dy, x, nd->save, nd->save + nd->ic, w,
                                  B * nd->ih * nd->iw, nd->ic);
            break;
        case NN_LAYERNORM:
            nn_layernorm_backward(dx, dw, db, dy, x, nd->save,
                                  nd->save + (size_t)m->max_batch * nd->ih * nd->iw, w,
                                  B * nd->ih * nd->iw, nd->ic);
            break;
        case NN_DROPOUT:
            if (!dx) break;
            if (nd->masked) nn_dropout_backward(dx, dy, nd->save, n_out);
            else nn_add_inplace(dx, dy, n_out);
            break;
        case NN_EMBBAG:
            nn_embbag_backward(dw, dy, (const int32_t *)m->input, B, m->tokens, nd->units, nd->mode);
            break;
        case NN_UPSAMPLE: if (dx) nn_upsample_backward(dx, dy, B, nd->ih, nd->iw, nd->ic, nd->factor); break;
        case NN_FLATTEN:
            if (fresh) nn_add_first(dx, dy, n_out);
            else if (dx) nn_add_inplace(dx, dy, n_out);
            break;
        case NN_FAKEQUANT:
            if (dx && nd->ema > 0.0f)
                nn_quant_act_backward(dx, dy, x, n_out, m->state[nd->s_off], nd->bits, nd->usign);
            else if (dx)
                nn_fakequant_backward(dx, dy, n_out);
            break;
        case NN_ADD: {
            if (fresh) nn_add_first(dx, dy, n_out);
            else if (dx) nn_add_inplace(dx, dy, n_out);
            /* after dx: when both inputs are one node, the second adds to what the first wrote */
            int fresh2;
            float *dx2 = grad_target(m, nd->in2, &fresh2);
            if (fresh2) nn_add_first(dx2, dy, n_out);
            else if (dx2) nn_add_inplace(dx2, dy, n_out);
            break;
        }
        case NN_KIND_COUNT: XD_ASSERT(0);
        }
    }
    nn_mm_precision_set(prec);
}
