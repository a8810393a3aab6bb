/* Model forward over the node list (see model.h): the forward of training and evaluation
 * (nn_model_forward_some), inference a chunk of images at a time in one parallel region
 * (nn_model_infer), and the packing that prepares a model for it (nn_model_pack: packed weights,
 * batch norms folded). */
#include "nn/model.h"
#include "nn/model_internal.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "nn/conv_bf16.h"
#include "nn/conv_bfirst.h"
#include "nn/conv_wino.h"
#include "nn/quant.h"


const float *nn_node_input(const nn_model *m, int idx)
{
    if (idx == NN_INPUT) return (const float *)m->input;
    const nn_node *nd = &m->nodes[idx];
    /* a flatten that passed its input on (nn_node.stale) */
    return nd->stale && nd->kind == NN_FLATTEN ? nn_node_input(m, nd->in) : nd->out;
}

void nn_model_forward(nn_model *m, const void *input, int B, const nn_run *run)
{
    nn_model_forward_some(m, input, B, run, NULL);
}

void nn_model_needs(const nn_model *m, int target, uint8_t *need)
{
    XD_ASSERT(target >= 0 && target < m->n_nodes);
    need[target] = 1;
    for (int i = target; i >= 0; i--) {
        const nn_node *nd = &m->nodes[i];
        if (!need[i]) continue;
        if (nd->in >= 0) need[nd->in] = 1;
        if (nd->kind == NN_ADD && nd->in2 >= 0) need[nd->in2] = 1;
    }
    /* a relu fused with its pool (plan_fusion) gets its output from the pool's pass, which
     * reads nothing but the relu */
    for (int i = 0; i < m->n_nodes; i++)
        if (need[i] && m->nodes[i].relu_pool) need[nn_node_only_reader(m, i)] = 1;
}

/* The first of B rows, for work on rows b0.. of the batch: p + b0 * per; of node idx's output
 * (NODE_ROWS): row at[idx] instead when at is given; of what a node saves (SAVE_ROWS): row sb
 * then. */
#define ROWS(p, per) ((p) + (size_t)b0 * (size_t)(per))
#define NODE_ROWS(idx, p, per) ((p) + (size_t)nn_node_row(at, idx, b0) * (size_t)(per))
#define SAVE_ROWS(p, per) ((p) + (size_t)(at ? sb : b0) * (size_t)(per))

/* The node whose product writes relu's input: a folded norm's layer, else relu's input. */
static int relu_source(const nn_model *m, const nn_node *relu)
{
    const int p = relu->in;
    return p >= 0 && m->nodes[p].in >= 0 && m->nodes[m->nodes[p].in].bn_fold == p ? m->nodes[p].in
                                                                                   : p;
}

/* A layer packed for inference that runs in bf16 now: its products are the eval forward's, on
 * the float weights (the packing wp is float32's; a convolution may have wpb, the same weights
 * packed for bf16), unless a batch norm is folded into them. */
static int unpacked_bf16(const nn_node *nd)
{
    return nd->wp && !nd->bn_fold && nn_mm_precision() == NN_PREC_BF16;
}

/* The evaluation kernel a forward of convolution s runs now (the thread's precision, s->winograd
 * for an evaluation forward), each with its own packing (nn_node.wpb_kind): in bf16 Winograd's
 * F(2x2, 3x3) (nn/conv_wino.c), nn/conv_bf16.c's direct kernels, the first convolution's pairs
 * (nn/conv_bfirst.c); in float32 Winograd's (nn_wino_takes, its float32 transformed weights in
 * the same words); or none (float32's direct kernels, or a convolution bf16 does not take) */
enum { BCONV_NONE, BCONV_DIRECT, BCONV_WINO, BCONV_FIRST, BCONV_WINO32 };
static int bconv_now(const nn_conv_shape *s)
{
    if (nn_mm_precision() != NN_PREC_BF16) return nn_wino_takes(s) ? BCONV_WINO32 : BCONV_NONE;
    return nn_bwino_takes(s)           ? BCONV_WINO
           : nn_bconv_forward_takes(s) ? BCONV_DIRECT
           : nn_bfirst_takes(s)        ? BCONV_FIRST
                                       : BCONV_NONE;
}

/* The one inference (an evaluation forward) runs under eval precision p (in bf16 a thin
 * convolution nn_precision_of_conv keeps float32: none) */
static int bconv_kind(nn_conv_shape s, nn_precision p)
{
    s.winograd = 1;
    const nn_precision outer = nn_mm_precision_set(nn_precision_of_conv(&s, p));
    const int kind = bconv_now(&s);
    nn_mm_precision_set(outer);
    return kind;
}

/* Whether inference leaves convolution nd (with a fused ReLU and pool) unwritten: in bf16 it
 * pools its windows as it makes them (nn_bfirst_pools, nn_bwino_pools: the ReLU not a head, a
 * 2 x 2 pool) */
static int pools_as_made(const nn_model *m, const nn_node *nd)
{
    nn_conv_shape cs = nn_node_conv_shape(nd, 1);
    const nn_node *pool = &m->nodes[nd->pool_in_conv], *relu = &m->nodes[pool->in];
    nn_pool_shape ps = nn_node_pool_shape(pool, 1);
    const nn_relu_pool j = {relu->head ? relu->out : NULL, pool->out, NULL, NULL, &ps};
    const int kind = bconv_kind(cs, NN_PREC_BF16);
    return (kind == BCONV_FIRST && nn_bfirst_pools(&cs, &j)) ||
           (kind == BCONV_WINO && nn_bwino_pools(&cs, &j));
}

/* Node i's forward over rows b0..b0+B of the batch (all rows: b0 0, B the batch). infer: for
 * nothing but this forward (nn_model_infer): a fused pool keeps no argmax, and its ReLU's output
 * is not written unless that is a head. at (or NULL): the row each node's output for these rows
 * starts at, sb: the row of what nodes save (see nn_model_infer). */
static void forward_node(nn_model *m, int i, int b0, int B, const nn_run *run, int infer,
                         const int *at, int sb)
{
    nn_node *nd = &m->nodes[i];
    const size_t in_n = (size_t)nd->ih * nd->iw * nd->ic;
    const float *x = NODE_ROWS(nd->in, nn_node_input(m, nd->in), in_n);
    float *y = NODE_ROWS(i, nd->out, nd->act_n), *w = m->param + nd->w_off;
    float *b = nd->b_n ? m->param + nd->b_off : NULL;
    if (nd->bn_fold) { /* it computes the folded norm's output (nn_model_pack) */
        y = NODE_ROWS(nd->bn_fold, m->nodes[nd->bn_fold].out, nd->act_n);
        b = nd->bp;
    }
    if (nd->wbits) { /* the product reads the weights as their int8 grid gives them */
        nn_quant_weights_fake(nd->wq, w, nd->units, (int)(nd->w_n / (size_t)nd->units), nd->wbits);
        w = nd->wq;
    }
    const size_t n_in = (size_t)B * in_n, n_out = (size_t)B * nd->act_n;
    switch (nd->kind) {
    case NN_LINEAR:
        if (nd->wpb && nn_mm_precision() == NN_PREC_BF16 && m->packed_bisa == nn_bgemm_isa())
            nn_linear_forward_bpacked(y, x, nd->wpb, b, B * nd->ih * nd->iw, nd->ic, nd->units);
        else
            nn_linear_forward(y, x, w, unpacked_bf16(nd) ? NULL : nd->wp, b, B * nd->ih * nd->iw,
                              nd->ic, nd->units);
        break;
    case NN_CONV2D: {
        /* save holds the cols for backward, then the [w | b] scratch */
        nn_conv_shape cs = nn_node_conv_shape(nd, B), cmax = nn_node_conv_shape(nd, m->max_batch);
        /* an evaluation forward may run nn/conv_wino.c, which reads w: not where the weights
         * that run are a norm folded into wp's packing; a training forward too in float32
         * (Winograd's in float32 is as close to the exact convolution as the direct kernel; its
         * backward reads the windows from the input), not in bf16 */
        cs.winograd = !run->training && !nd->bn_fold;
        const nn_precision outer = nn_conv_precision_enter(&cs);
        if (run->training && nn_node_trains_winograd(nd)) cs.winograd = 1;
        float *cols = SAVE_ROWS(nd->save, nn_conv_cols_size(&cmax) / (size_t)m->max_batch);
        float *wext = nd->save + nn_conv_cols_size(&cmax);
        /* packed for this call: the windows are then read in place, not unfolded into cols, as
         * backward's weight gradient reads them too (see nn/layers.h) */
        const float *wp = unpacked_bf16(nd) ? NULL : nd->wp;
        /* packed for the kernel that runs now, in its layout (Winograd's transformed weights
         * are not the direct kernels': a training forward in bf16 on a model packed for bf16
         * inference packs its own) */
        const uint32_t *wpb =
            m->packed_bisa == nn_bgemm_isa() && nd->wpb_kind == bconv_now(&cs) ? nd->wpb : NULL;
        /* (not where Winograd's runs, which does not read them) */
        if (!wp && !infer && nd->wpk && nn_mm_precision() == NN_PREC_FLOAT32 &&
            !nn_wino_takes(&cs)) {
            nn_conv_pack(nd->wpk, wext, w, b, &cs);
            wp = nd->wpk;
        }
        if (nd->pool_in_conv) {
            nn_node *pool = &m->nodes[nd->pool_in_conv], *relu = &m->nodes[pool->in];
            nn_pool_shape ps = nn_node_pool_shape(pool, B);
            if (!infer) relu->stale = !relu->head;
            /* training: the product's own output is written only when asked for (stale) */
            int written = 1;
            const int unfolded = nn_conv2d_relu_maxpool_forward(
                y, cols, wext, x, w, wp, wpb, b, &cs,
                !relu->head ? NULL : NODE_ROWS(pool->in, relu->out, relu->act_n),
                NODE_ROWS(nd->pool_in_conv, pool->out, pool->act_n),
                infer ? NULL : SAVE_ROWS(pool->isave, pool->act_n), &ps,
                infer ? !nd->stale : nd->head || nd->bn_fold || nd->asked, &written);
            if (!infer) nd->stale = !written;
            if (!infer) nd->unfolded = unfolded; /* what only backward reads: not inference's */
        } else {
            const int unfolded = nn_conv2d_forward(y, cols, wext, x, w, wp, wpb, b, &cs);
            if (!infer) nd->unfolded = unfolded;
        }
        nn_mm_precision_set(outer);
        break;
    }
    case NN_MAXPOOL:
    case NN_AVGPOOL: {
        nn_pool_shape ps = nn_node_pool_shape(nd, B);
        const nn_node *relu = nd->in >= 0 && m->nodes[nd->in].relu_pool ? &m->nodes[nd->in]
                                                                         : NULL;
        int32_t *am = nd->isave ? SAVE_ROWS(nd->isave, nd->act_n) : NULL;
        if (nd->kind == NN_AVGPOOL) nn_avgpool_forward(y, x, &ps);
        else if (!relu) nn_maxpool_forward(y, am, x, &ps);
        else if (relu_source(m, relu) < 0 || m->nodes[relu_source(m, relu)].pool_in_conv != i) {
            /* else done there */
            /* the ReLU of the model's own input is written: the caller's buffer may be gone
             * when nn_model_out asks for it */
            const int keep = relu->head || relu->in == NN_INPUT;
            if (!infer) m->nodes[nd->in].stale = !keep;
            nn_relu_maxpool_forward(
                !keep ? NULL : NODE_ROWS(nd->in, relu->out, relu->act_n), y,
                infer ? NULL : am, NODE_ROWS(relu->in, nn_node_input(m, relu->in), relu->act_n), &ps);
        }
        break;
    }
    case NN_GAP: nn_gap_forward(y, x, B, nd->ih * nd->iw, nd->ic); break;
    case NN_RELU:
        if (!nd->relu_pool) nn_relu_forward(y, x, n_out); /* else done by its pool */
        break;
    case NN_GELU: nn_gelu_forward(y, x, n_out); break;
    case NN_TANH: nn_tanh_forward(y, x, n_out); break;
    case NN_SIGMOID: nn_sigmoid_forward(y, x, n_out); break;
    case NN_SOFTMAX: nn_softmax_forward(y, x, (int)(n_out / (size_t)nd->c), nd->c); break;
    case NN_LOGSOFTMAX: nn_logsoftmax_forward(y, x, (int)(n_out / (size_t)nd->c), nd->c); break;
    case NN_BATCHNORM: {
        if (nd->in >= 0 && m->nodes[nd->in].bn_fold == i) break; /* folded into its input's */
        float *rm = m->state + nd->s_off, *rv = rm + nd->ic;
        int N = B * nd->ih * nd->iw;
        if (run->training)
            nn_batchnorm_forward_train(y, nd->save, nd->save + nd->ic, rm, rv, x, w, b, N,
                                       nd->ic, nd->eps, nd->momentum);
        else
            nn_batchnorm_forward_eval(y, x, w, b, rm, rv, N, nd->ic, nd->eps);
        break;
    }
    case NN_LAYERNORM: {
        const int R = B * nd->ih * nd->iw, per = nd->ih * nd->iw;
        nn_layernorm_forward(y, SAVE_ROWS(nd->save, per),
                             SAVE_ROWS(nd->save + (size_t)m->max_batch * per, per), x, w, b, R,
                             nd->ic, nd->eps);
        break;
    }
    case NN_DROPOUT:
        nd->masked = run->training && nd->p > 0.0f;
        if (nd->masked)
            nn_dropout_forward(y, nd->save, x, B, (int)nd->act_n, nd->p, run->seed,
                               run->example, run->step, (uint32_t)i);
        else
            memcpy(y, x, sizeof(float) * n_out);
        break;
    case NN_EMBBAG:
        nn_embbag_forward(y, ROWS((const int32_t *)m->input, m->tokens), w, B, m->tokens,
                          nd->units, nd->mode);
        break;
    case NN_UPSAMPLE: nn_upsample_forward(y, x, B, nd->ih, nd->iw, nd->ic, nd->factor); break;
    case NN_FLATTEN:
        /* the same values in the same order: readers of the whole batch take its input's
         * (a head is written, as a fused ReLU that is one is: callers read heads) */
        if (infer && nd->stale) break; /* passed on (see nn_model_infer) */
        if (!infer && !at && !nd->head) nd->stale = 1;
        else memcpy(y, x, sizeof(float) * n_in);
        break;
    case NN_FAKEQUANT:
        if (nd->ema > 0.0f) {
            float *range = m->state + nd->s_off;
            if (run->training || run->calibrate)
                *range = nn_quant_range_update(*range, x, n_out, run->training ? nd->ema : 0.0f);
            nn_quant_act(NULL, y, x, n_out, *range, nd->bits, nd->usign);
        } else {
            nn_fakequant_forward(y, x, n_out, nd->bits);
        }
        break;
    case NN_ADD: {
        const float *x2 = NODE_ROWS(nd->in2, nn_node_input(m, nd->in2), in_n);
        for (size_t j = 0; j < n_out; j++) y[j] = x[j] + x2[j];
        break;
    }
    case NN_KIND_COUNT: XD_ASSERT(0);
    }
}

void nn_model_refresh(nn_model *m, int idx)
{
    nn_node *nd = &m->nodes[idx];
    XD_ASSERT(nd->stale && nd->kind == NN_CONV2D && nd->pool_in_conv);
    static const nn_run train = {.training = 1}, eval = {.training = 0};
    const int pool = nd->pool_in_conv;
    /* as the forward that left it unwritten computed it: a training forward read its windows in
     * place in float32 (or ran Winograd's); an evaluation forward or inference ran its own kernel (in bf16 the first
     * convolution's pairs, nn/conv_bfirst.h, or Winograd's, whose pooled tiles held the same
     * values) */
    const nn_run *run = m->last_eval ? &eval : &train;
    const nn_precision prec =
        nn_mm_precision_set(m->last_eval ? m->eval_precision : NN_PREC_FLOAT32);
    nd->pool_in_conv = 0;
    forward_node(m, idx, 0, m->batch, run, 0, NULL, 0);
    nd->pool_in_conv = pool;
    nn_mm_precision_set(prec);
    nd->stale = 0;
    nd->asked = 1; /* read each step, likely: written by the forward from now on */
}

void nn_model_forward_some(nn_model *m, const void *input, int B, const nn_run *run,
                           const uint8_t *need)
{
    XD_ASSERT(B > 0 && B <= m->max_batch);
    static const nn_run eval_run = {.training = 0};
    if (!run) run = &eval_run;
    m->batch = B;
    m->last_eval = !run->training;
    m->input = input;
    if (m->dinput) memset(m->dinput, 0, sizeof(float) * (size_t)B * m->h * m->w * m->c);
    const nn_precision prec = nn_mm_precision_set(run->training ? m->precision : m->eval_precision);
    /* before the loop: a convolution sets the stale flag of the ReLU after it */
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].stale = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        m->nodes[i].touched = 0;
        if (need && !need[i]) continue;
        if (m->qengine && nn_qengine_forward_node(m, i, 0, B, NULL, 0, 0)) continue;
        forward_node(m, i, 0, B, run, 0, NULL, 0);
    }
    nn_mm_precision_set(prec);
}

/* Kinds whose forward is best run over the whole batch (or the thread's share of it) at
 * inference: a linear layer reads its weights once for all rows; fake quantisation without a
 * moving range takes its scale from the whole batch. */
static int batch_wide(const nn_node *nd)
{
    return nd->kind == NN_LINEAR || nd->kind == NN_EMBBAG ||
           (nd->kind == NN_FAKEQUANT && !(nd->ema > 0.0f));
}

/* Floats of working memory a chunk of this many per example should stay within: about half of a
 * core's L2 cache, so a run of convolutions and their pools passes an image on to the next
 * layer while it is still in cache. */
#define INFER_CACHE_FLOATS ((size_t)1 << 17)

/* Node i's inference over rows b0..b0+B (at, sb: see forward_node), on integers when the
 * integer engine runs it. */
static void infer_node(nn_model *m, int i, int b0, int B, const int *at, int sb)
{
    static const nn_run eval_run = {.training = 0};
    if (m->qengine && nn_qengine_forward_node(m, i, b0, B, at, at ? sb : b0, 1)) return;
    forward_node(m, i, b0, B, &eval_run, 1, at, sb);
}

/* The node whose output node idx's readers read: a flatten passed on (nn_node.stale) passes its
 * input's. */
static int written_by(const nn_model *m, int idx)
{
    while (idx >= 0 && m->nodes[idx].kind == NN_FLATTEN && m->nodes[idx].stale)
        idx = m->nodes[idx].in;
    return idx;
}

/* nn_model_infer of rows b0..b0+nb, on the calling thread alone; at, keep: n_nodes ints and
 * bytes of room. */
static void infer_rows(nn_model *m, int b0, int nb, const uint8_t *need, int *at, uint8_t *keep)
{
    const int dflt = nn_model_default_head(m);
    for (int s = 0, e; s < m->n_nodes; s = e) {
        /* a run of per-image nodes s..e with a convolution in it goes a chunk of images at a
         * time; anything else over all the rows */
        size_t per = 0;
        int conv = 0;
        for (e = s; e < m->n_nodes && !batch_wide(&m->nodes[e]); e++) {
            const nn_node *nd = &m->nodes[e];
            per += nd->act_n;
            if (nd->kind == NN_CONV2D) {
                nn_conv_shape cs = nn_node_conv_shape(nd, 1);
                per += nn_conv_cols_size(&cs);
                conv = 1;
            }
        }
        if (e == s) e = s + 1;
        if (!conv) {
            for (int i = s; i < e; i++)
                if (!need || need[i]) infer_node(m, i, b0, nb, NULL, 0);
            continue;
        }
        /* Only the run's results (what a later node reads, and heads; and what a node before
         * the run computes, see nn_qengine_writer) go to the images' own rows; what stays inside
         * the run goes to the rows of the first chunk (the same rows for every chunk), so it
         * stays in cache instead of filling the batch's. */
        const int chunk = per * (size_t)nb <= INFER_CACHE_FLOATS ? nb
                          : per >= INFER_CACHE_FLOATS ? 1 : (int)(INFER_CACHE_FLOATS / per);
        /* a convolution asked for (nn_node.asked) too, and the default head when no node is
         * marked one (the last node, what callers read) */
        for (int i = s; i < e; i++)
            keep[i] = m->nodes[i].head || m->nodes[i].asked || i == dflt ||
                      (m->qengine && nn_qengine_writer(m, i) < s);
        for (int j = e; j < m->n_nodes; j++) {
            const nn_node *nd = &m->nodes[j];
            const int in = written_by(m, nd->in);
            const int in2 = nd->kind == NN_ADD ? written_by(m, nd->in2) : -1;
            if (in >= s && in < e) keep[in] = 1;
            if (in2 >= s && in2 < e) keep[in2] = 1;
        }
        for (int c0 = b0; c0 < b0 + nb; c0 += chunk) {
            const int n = b0 + nb - c0 < chunk ? b0 + nb - c0 : chunk;
            for (int i = 0; i < m->n_nodes; i++) at[i] = i < s || i >= e || keep[i] ? c0 : b0;
            /* a flatten passed on is read from its input's rows */
            for (int i = s; i < e; i++)
                if (m->nodes[i].stale && m->nodes[i].kind == NN_FLATTEN)
                    at[i] = nn_node_row(at, m->nodes[i].in, c0);
            for (int i = s; i < e; i++)
                if (!need || need[i]) infer_node(m, i, c0, n, at, b0);
        }
    }
}

/* nn_model_infer's rows in shares of share rows on the calling thread. Outside a team (runs
 * NULL) it runs them all, one after the other, without a work-sharing construct (whose set-up,
 * even for one thread, allocates). In a team, the shares are taken as xd_runs_take hands them
 * out: thread t first runs its own run of consecutive rows (its images stay in its core's cache
 * from one call to the next, and the image batcher's stage 2 gives each thread the same rows),
 * then what the others have not begun. A model of up to NODE_ROOM nodes
 * keeps its row tables on the stack: a small model's call costs no more. */
static void infer_shares(nn_model *m, int B, int share, const uint8_t *need, xd_runs *runs)
{
    enum { NODE_ROOM = 256 };
    int at_room[NODE_ROOM];
    uint8_t keep_room[NODE_ROOM];
    const int room = m->n_nodes <= NODE_ROOM;
    int *at = room ? at_room : xd_xmalloc(sizeof(int) * (size_t)m->n_nodes);
    uint8_t *keep = room ? keep_room : xd_xmalloc((size_t)m->n_nodes);
    if (!runs) {
        infer_rows(m, 0, B, need, at, keep);
    } else {
        const int t = xd_thread_num();
        for (int k = 0, c; (c = xd_runs_take(runs, t, &k)) >= 0;) {
            const int b0 = c * share;
            infer_rows(m, b0, B - b0 < share ? B - b0 : share, need, at, keep);
        }
    }
    if (!room) {
        free(at);
        free(keep);
    }
}

/* A convolution of a packed model that inference in bf16 runs unpacked, as the eval forward
 * does, where nn/conv_bf16.c does not take it now: with a bias it then builds [w | b] in its
 * node's one scratch (nn_conv_wext_size), which threads must not share */
static int bf16_conv_writes_scratch(const nn_model *m, const nn_node *nd)
{
    if (nd->kind != NN_CONV2D || m->eval_precision != NN_PREC_BF16 || !nd->wp || nd->bn_fold ||
        (m->qengine && nn_quant_runs_int(m, (int)(nd - m->nodes))))
        return 0;
    nn_conv_shape cs = nn_node_conv_shape(nd, 1);
    return nn_precision_of_conv(&cs, NN_PREC_BF16) == NN_PREC_BF16 && nn_conv_wext_size(&cs) &&
           bconv_kind(cs, NN_PREC_BF16) == BCONV_NONE;
}

/* The rows a share of the batch holds at least (when there are enough for every thread):
 * a linear layer's product reads its weights once for a share's rows, and the integer kernel's
 * tiles are 16 rows. */
enum { SHARE_MIN = 16 };

void nn_model_infer(nn_model *m, const void *input, int B, const uint8_t *need)
{
    XD_ASSERT(B > 0 && B <= m->max_batch);
    int whole = 0, one = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        /* fake-quantised weights: every forward writes them to the node's one copy */
        whole |= nd->wbits && !(m->qengine && nn_quant_runs_int(m, i));
        one |= nd->kind == NN_FAKEQUANT && !(nd->ema > 0.0f); /* a scale of the whole batch */
        /* an unpacked convolution builds [w | b] in the node's one scratch at every call, a
         * dropout left masked by training resets its flag: shares on several threads would
         * write them at once */
        one |= (nd->kind == NN_CONV2D && !nd->wp && !(m->qengine && nn_quant_runs_int(m, i))) ||
               (nd->kind == NN_DROPOUT && nd->masked) || bf16_conv_writes_scratch(m, nd);
    }
    if (whole) {
        nn_model_forward_some(m, input, B, NULL, need);
        return;
    }
    m->batch = B;
    m->input = input;
    m->last_eval = 1;
    /* Left unwritten (nn_node.stale), for nn_model_out to make if asked (none a head, nor the
     * default head): a flatten is passed on, not copied (its readers take its input's output,
     * nn_node_input, which infer_rows then keeps in the images' own rows); a ReLU fused with its
     * pool (the pool reads its input) but one that reads the model's input (written then); a
     * convolution of bf16 that pools its windows as it makes them (nn/conv_bfirst.h,
     * nn/conv_wino.h; not asked for) and reads the model's input, whose rows stay whole for
     * nn_model_refresh (another layer's, inside a run, may hold only a chunk's). */
    const int dflt = nn_model_default_head(m); /* what callers read when no node is a head */
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        nd->touched = 0;
        nd->stale = !nd->head && i != dflt && !m->qengine &&
                    (nd->kind == NN_CONV2D
                         ? nd->pool_in_conv && nd->in == NN_INPUT && !nd->asked && !nd->bn_fold &&
                               m->eval_precision == NN_PREC_BF16 && pools_as_made(m, nd)
                         : nd->in >= 0 && (nd->kind == NN_FLATTEN || nd->relu_pool));
    }
    /* the products' precision is each thread's own: the team's threads set it too */
    const nn_precision prec = nn_mm_precision_set(m->eval_precision);
    /* One parallel region: the images in shares of about a quarter of a thread's, each taken
     * through the whole model by one thread, on its own (the kernels inside run on that thread
     * alone), with no wait until the end (see infer_shares). */
    const int T = one ? 1 : xd_threads_get() < B ? xd_threads_get() : B;
    if (T == 1) { /* no region: entering one costs as much as a small model's work */
        infer_shares(m, B, B, need, NULL);
        nn_mm_precision_set(prec);
        return;
    }
    const int per = (B + T - 1) / T, quarter = (B + 4 * T - 1) / (4 * T);
    const int share = quarter >= SHARE_MIN ? quarter : per < SHARE_MIN ? per : SHARE_MIN;
    const int n_shares = (B + share - 1) / share;
    xd_runs runs;
    xd_runs_init(&runs, T, n_shares);
#pragma omp parallel num_threads(T)
    {
#ifdef _OPENMP
        if (omp_get_num_threads() > 1) omp_set_num_threads(1);
#endif
        const nn_precision outer = nn_mm_precision_set(m->eval_precision);
        infer_shares(m, B, share, need, &runs);
        nn_mm_precision_set(outer);
    }
    nn_mm_precision_set(prec);
    xd_runs_free(&runs);
}

void nn_model_infer_reading(nn_model *m, const void *input, int B, const uint8_t *need,
                            const int *reads, int n_reads)
{
    XD_ASSERT(n_reads >= 0 && n_reads <= NN_READS_MOST);
    /* the default head too: marking another node would make that one the default */
    int at[NN_READS_MOST + 1], was[NN_READS_MOST + 1], n = 0;
    at[n++] = nn_model_default_head(m);
    for (int k = 0; k < n_reads; k++) {
        XD_ASSERT(reads[k] >= 0 && reads[k] < m->n_nodes);
        at[n++] = reads[k];
    }
    for (int k = 0; k < n; k++) {
        was[k] = m->nodes[at[k]].head;
        m->nodes[at[k]].head = 1;
    }
    nn_model_infer(m, input, B, need);
    for (int k = n - 1; k >= 0; k--) m->nodes[at[k]].head = was[k]; /* one twice: as it was */
}

/* The batchnorm node that alone reads layer i (a linear or convolution layer with a bias and
 * float weights, not a head), to be folded into it at packing; else 0. */
static int foldable_norm(const nn_model *m, int i)
{
    const nn_node *nd = &m->nodes[i];
    if ((nd->kind != NN_LINEAR && nd->kind != NN_CONV2D) || nd->wbits || !nd->bias || nd->head)
        return 0;
    const int r = nn_node_only_reader(m, i);
    return r > 0 && m->nodes[r].kind == NN_BATCHNORM && m->nodes[r].ic == nd->units ? r : 0;
}

/* Layer nd's weights (w, OC rows of K) and bias (b) with batch norm bn folded in. */
static void fold_norm(const nn_model *m, const nn_node *nd, const nn_node *bn, float *w, float *b)
{
    const int OC = nd->units, K = (int)(nd->w_n / (size_t)OC);
    const float *gamma = m->param + bn->w_off, *beta = m->param + bn->b_off;
    const float *mean = m->state + bn->s_off, *var = mean + bn->ic;
    for (int o = 0; o < OC; o++) {
        const float g = gamma[o] / sqrtf(var[o] + bn->eps);
        for (int k = 0; k < K; k++) w[(size_t)o * K + k] = m->param[nd->w_off + (size_t)o * K + k] * g;
        b[o] = (m->param[nd->b_off + o] - mean[o]) * g + beta[o];
    }
}

/* The words of node i's weights packed for the evaluation kernels, on unfolded weights: when the
 * model's evaluation runs in bf16 and this layer then has bf16 products, or a convolution that
 * float32's Winograd computes (bconv_now); else 0. */
static size_t eval_packed_size(const nn_model *m, int i, int fold)
{
    const nn_node *nd = &m->nodes[i];
    if (nd->wbits || (fold && foldable_norm(m, i))) return 0;
    nn_conv_shape cs = nn_node_conv_shape(nd, 1);
    if (nd->kind == NN_LINEAR && m->eval_precision == NN_PREC_BF16)
        return nn_linear_bpacked_size(nd->ic, nd->units);
    const int kind = nd->kind == NN_CONV2D ? bconv_kind(cs, m->eval_precision) : BCONV_NONE;
    if (kind == BCONV_WINO32) return nn_wino_packed_size(&cs);
    if (kind == BCONV_WINO) return nn_bwino_packed_size(&cs);
    if (kind == BCONV_DIRECT) return nn_bconv_packed_size(&cs);
    if (kind == BCONV_FIRST) return nn_bfirst_packed_size(&cs);
    return 0;
}

/* The packing of weights for the evaluation kernels (bf16 products, float32's Winograd), where
 * eval_packed_size says so */
static xd_status pack_eval(nn_model *m, int fold, xd_err *e)
{
    size_t n = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        m->nodes[i].wpb = NULL; /* nothing points into the old packing, whatever happens next */
        n += eval_packed_size(m, i, fold);
    }
    free(m->packed_bf16);
    m->packed_bf16 = n ? xd_try_alloc_aligned(sizeof(uint32_t) * n) : NULL;
    if (n && !m->packed_bf16)
        return xd_fail(e, XD_ENOMEM, "no memory for the weights packed for evaluation (%zu bytes)",
                       sizeof(uint32_t) * n);
    if (n) m->packed_bisa = nn_bgemm_isa();
    uint32_t *p = m->packed_bf16;
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        const size_t words = eval_packed_size(m, i, fold);
        nd->wpb = words ? p : NULL;
        nd->wpb_kind = BCONV_NONE;
        if (!words) continue;
        const float *w = m->param + nd->w_off;
        nn_conv_shape cs = nn_node_conv_shape(nd, 1);
        if (nd->kind == NN_LINEAR) {
            nn_linear_bpack(p, w, nd->ic, nd->units);
        } else {
            nd->wpb_kind = bconv_kind(cs, m->eval_precision);
            if (nd->wpb_kind == BCONV_WINO32) nn_wino_pack((float *)(void *)p, w, &cs);
            else if (nd->wpb_kind == BCONV_WINO) nn_bwino_pack(p, w, &cs);
            else if (nd->wpb_kind == BCONV_FIRST) nn_bfirst_pack(p, w, &cs);
            else nn_bconv_pack(p, w, &cs);
        }
        p += words;
    }
    return XD_OK;
}

/* nn_model_pack, and nn_model_pack_exact when fold is 0 */
static xd_status pack(nn_model *m, int fold, xd_err *e)
{
    size_t n = 0, w_max = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        nn_conv_shape cs = nn_node_conv_shape(nd, 1);
        if (nd->wbits) continue; /* its forward reads the weights fake-quantised */
        if (nd->kind == NN_LINEAR) n += nn_linear_packed_size(nd->ic, nd->units);
        else if (nd->kind == NN_CONV2D) n += nn_conv_packed_size(&cs);
        if (fold && foldable_norm(m, i)) n += (size_t)nd->units;
        if (nd->w_n > w_max) w_max = nd->w_n;
    }
    free(m->packed);
    m->packed = n ? xd_try_alloc_aligned(sizeof(float) * n) : NULL;
    float *wf = n ? xd_try_alloc(sizeof(float) * (w_max ? w_max : 1)) : NULL;
    if (n && (!m->packed || !wf)) {
        free(wf);
        return xd_fail(e, XD_ENOMEM, "no memory for the packed weights (%zu bytes)",
                       sizeof(float) * (n + w_max));
    }
    float *p = m->packed;
    for (int i = 0; i < m->n_nodes; i++) {
        nn_node *nd = &m->nodes[i];
        const float *w = m->param + nd->w_off, *b = nd->b_n ? m->param + nd->b_off : NULL;
        nd->wp = NULL;
        nd->bp = NULL;
        nd->bn_fold = 0;
        if (nd->wbits || (nd->kind != NN_LINEAR && nd->kind != NN_CONV2D)) continue;
        const int bn = fold ? foldable_norm(m, i) : 0;
        if (bn) {
            nd->bn_fold = bn;
            nd->bp = p;
            fold_norm(m, nd, &m->nodes[bn], wf, nd->bp);
            p += nd->units;
            w = wf;
            b = nd->bp;
            /* conv -> norm -> relu -> maxpool: the relu and pool run in the product, as
             * plan_fusion arranges without the norm */
            const int relu = nn_node_only_reader(m, bn);
            if (nd->kind == NN_CONV2D && relu > 0 && m->nodes[relu].relu_pool)
                nd->pool_in_conv = nn_node_only_reader(m, relu);
        }
        nd->wp = p;
        if (nd->kind == NN_LINEAR) {
            nn_linear_pack(p, w, nd->ic, nd->units);
            p += nn_linear_packed_size(nd->ic, nd->units);
        } else {
            nn_conv_shape cs = nn_node_conv_shape(nd, 1), cmax = nn_node_conv_shape(nd, m->max_batch);
            nn_conv_pack(p, nd->save + nn_conv_cols_size(&cmax), w, b, &cs);
            p += nn_conv_packed_size(&cs);
        }
    }
    free(wf);
    return pack_eval(m, fold, e);
}

xd_status nn_model_pack(nn_model *m, xd_err *e) { return pack(m, 1, e); }

xd_status nn_model_pack_exact(nn_model *m, xd_err *e) { return pack(m, 0, e); }

void nn_model_unpack(nn_model *m)
{
    for (int i = 0; i < m->n_nodes; i++) {
        XD_ASSERT(!m->nodes[i].bn_fold);
        m->nodes[i].wp = NULL;
        m->nodes[i].wpb = NULL;
        m->nodes[i].bp = NULL;
    }
    free(m->packed);
    free(m->packed_bf16);
    m->packed = NULL;
    m->packed_bf16 = NULL;
}

