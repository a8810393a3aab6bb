/* The GRU sequence decoder of nn/seqdec.h: teacher-forced forward and backward through time, and
 * greedy decoding. The input and output products of every step go through one matrix product
 * each over all steps (the step's inputs are known up front under teacher forcing); only the
 * recurrent product runs step by step. */
#include "nn/seqdec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "nn/gemm.h"

const char *const nn_seq_tensor_names[NN_SEQ_TENSORS] = {"wz", "bz", "emb", "wx", "bx",
                                                          "wh", "bh", "wo", "bo"};

enum { SEQ_MAX_SIZE = 1 << 16, SEQ_MAX_VOCAB = 1 << 22, SEQ_MAX_LEN = 1024 };

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

static float *fbuf(size_t n) { return xd_try_alloc_aligned((n ? n : 1) * sizeof(float)); }

void nn_seqdec_shapes(int in, int hidden, int embed, int vocab, int64_t shapes[NN_SEQ_TENSORS][2])
{
    const int64_t H = hidden, G = 3 * (int64_t)hidden;
    const int64_t all[NN_SEQ_TENSORS][2] = {{H, in}, {H, 0},     {vocab, embed},
                                            {G, embed}, {G, 0}, {G, H},
                                            {G, 0},  {vocab, H}, {vocab, 0}};
    memcpy(shapes, all, sizeof all);
}

/* The sizes, the parameter layout and the memory of a decoder that trains (forward, backward and
 * greedy decoding over max_len steps at once) or only decodes greedily (one step at a time). */
static xd_status setup(nn_seqdec *d, int in, int hidden, int embed, int vocab, int max_len,
                       int max_batch, int train, xd_err *e)
{
    memset(d, 0, sizeof *d);
    if (in < 1 || in > SEQ_MAX_SIZE || hidden < 1 || hidden > SEQ_MAX_SIZE || embed < 1 ||
        embed > SEQ_MAX_SIZE)
        return xd_fail(e, XD_EARG, "decoder: input %d, hidden %d and embedding %d widths must be "
                       "in 1..%d", in, hidden, embed, SEQ_MAX_SIZE);
    if (vocab <= NN_SEQ_SPECIALS || vocab > SEQ_MAX_VOCAB)
        return xd_fail(e, XD_EARG, "decoder: vocabulary of %d tokens; it needs %d..%d (the %d "
                       "special tokens and at least one word)", vocab, NN_SEQ_SPECIALS + 1,
                       SEQ_MAX_VOCAB, NN_SEQ_SPECIALS);
    if (max_len < 1 || max_len > SEQ_MAX_LEN || max_batch < 1 || max_batch > (1 << 16))
        return xd_fail(e, XD_EARG, "decoder: length limit %d (1..%d) or batch %d out of range",
                       max_len, SEQ_MAX_LEN, max_batch);
    d->in = in, d->hidden = hidden, d->embed = embed, d->vocab = vocab;
    d->max_len = max_len, d->max_batch = max_batch;
    const int H = hidden, G = 3 * hidden;
    int64_t shapes[NN_SEQ_TENSORS][2];
    nn_seqdec_shapes(in, hidden, embed, vocab, shapes);
    size_t off = 0;
    for (int k = 0; k < NN_SEQ_TENSORS; k++) {
        d->shape[k][0] = shapes[k][0], d->shape[k][1] = shapes[k][1];
        d->n[k] = (size_t)shapes[k][0] * (size_t)(shapes[k][1] ? shapes[k][1] : 1);
        d->off[k] = off;
        d->segs[k] = (nn_param_seg){off, d->n[k], shapes[k][1] != 0 && k != NN_SEQ_EMB, 0};
        off += d->n[k];
    }
    d->n_param = off;
    /* the sizes may come from a file: worked out first, the memory is taken if it is there */
    const size_t B = (size_t)max_batch, TB = (train ? (size_t)max_len : 1) * B;
    const size_t floats = (train ? 2 : 1) * off +
                          TB * ((size_t)embed + (size_t)H * 2 + (size_t)G * 2 + (size_t)vocab) +
                          B * (size_t)(H + G) +
                          (train ? TB * ((size_t)embed + (size_t)H + (size_t)G) + B * H : 0);
    if (floats < ((size_t)1 << 40)) {
        d->param = fbuf(off);
        d->tok = xd_try_alloc(TB * sizeof(int32_t));
        d->x = fbuf(TB * (size_t)embed);
        d->hs = fbuf(TB * (size_t)H + B * H);
        d->gates = fbuf(TB * (size_t)G);
        d->hn = fbuf(TB * (size_t)H);
        d->logits = fbuf(TB * (size_t)vocab);
        d->dgx = fbuf(TB * (size_t)G);
        d->gh = fbuf(B * G);
        d->done = xd_try_alloc(B);
        if (train) {
            d->grad = fbuf(off);
            d->dgh = fbuf(TB * (size_t)G);
            d->dh_all = fbuf(TB * (size_t)H);
            d->dx = fbuf(TB * (size_t)embed);
            d->dh = fbuf(B * H);
        }
    }
    if (!d->param || !d->tok || !d->x || !d->hs || !d->gates || !d->hn || !d->logits ||
        !d->dgx || !d->gh || !d->done ||
        (train && (!d->grad || !d->dgh || !d->dh_all || !d->dx || !d->dh))) {
        nn_seqdec_free(d);
        return xd_fail(e, XD_ENOMEM, "decoder: %zu MiB of working memory (vocabulary %d, hidden "
                       "%d, length %d, batch %d) not available", floats * sizeof(float) >> 20,
                       vocab, hidden, max_len, max_batch);
    }
    memset(d->param, 0, off * sizeof(float));
    if (train) memset(d->grad, 0, off * sizeof(float));
    return XD_OK;
}

xd_status nn_seqdec_init_greedy(nn_seqdec *d, int in, int hidden, int embed, int vocab,
                                int max_len, int max_batch, xd_err *e)
{
    return setup(d, in, hidden, embed, vocab, max_len, max_batch, 0, e);
}

xd_status nn_seqdec_init(nn_seqdec *d, int in, int hidden, int embed, int vocab, int max_len,
                         int max_batch, uint64_t seed, xd_err *e)
{
    xd_status s = setup(d, in, hidden, embed, vocab, max_len, max_batch, 1, e);
    if (s != XD_OK) return s;
    const int H = hidden;
    /* PyTorch's initialisations */
    xd_rng r = xd_rng_make(seed, 0, 0x5e9decULL);
    const float bounds[NN_SEQ_TENSORS] = {
        1.0f / sqrtf((float)in), 1.0f / sqrtf((float)in), 0.0f, 1.0f / sqrtf((float)H),
        1.0f / sqrtf((float)H),  1.0f / sqrtf((float)H),  1.0f / sqrtf((float)H),
        1.0f / sqrtf((float)H),  1.0f / sqrtf((float)H)};
    for (int k = 0; k < NN_SEQ_TENSORS; k++) {
        float *p = d->param + d->off[k];
        for (size_t i = 0; i < d->n[k]; i++)
            p[i] = k == NN_SEQ_EMB ? xd_rng_normal(&r)
                                   : (2.0f * xd_rng_uniform(&r) - 1.0f) * bounds[k];
    }
    return XD_OK;
}

void nn_seqdec_free(nn_seqdec *d)
{
    free(d->param), free(d->grad), free(d->tok), free(d->x), free(d->hs), free(d->gates);
    free(d->hn), free(d->logits), free(d->dgx), free(d->dgh), free(d->dh_all), free(d->dx);
    free(d->dh), free(d->gh), free(d->done);
    memset(d, 0, sizeof *d);
}

void nn_seqdec_target(const int32_t *tokens, int n, int max_len, int32_t *row)
{
    int k = 0;
    if (n >= 0) {
        for (; k < n && k < max_len - 1; k++) row[k] = tokens[k];
        row[k++] = NN_SEQ_EOS;
    }
    for (; k < max_len; k++) row[k] = NN_SEQ_PAD;
}

/* h0 = tanh(Wz z + bz) into hs[0]. */
static void start(nn_seqdec *d, const float *z, int B)
{
    const int H = d->hidden;
    float *h0 = d->hs;
    for (int b = 0; b < B; b++) memcpy(h0 + (size_t)b * H, d->param + d->off[NN_SEQ_BZ],
                                       (size_t)H * sizeof(float));
    nn_sgemm(0, 1, B, H, d->in, 1.0f, z, d->in, d->param + d->off[NN_SEQ_WZ], d->in, 1.0f, h0, H);
    for (size_t i = 0; i < (size_t)B * H; i++) h0[i] = tanhf(h0[i]);
}

/* One GRU step of B rows: gx (B, 3H) holds Wx x + bx; h the previous state; saves the gates
 * (r, u, n) and hn = Wh_n h + bh_n; writes the new state into hnew. */
static void gru_step(nn_seqdec *d, float *gx, const float *h, float *gates, float *hn,
                     float *hnew, int B)
{
    const int H = d->hidden, G = 3 * H;
    float *ghb = d->gh;
    for (int b = 0; b < B; b++)
        memcpy(ghb + (size_t)b * G, d->param + d->off[NN_SEQ_BH], (size_t)G * sizeof(float));
    nn_sgemm(0, 1, B, G, H, 1.0f, h, H, d->param + d->off[NN_SEQ_WH], H, 1.0f, ghb, G);
    for (int b = 0; b < B; b++) {
        const float *x = gx + (size_t)b * G, *g = ghb + (size_t)b * G, *hp = h + (size_t)b * H;
        float *gt = gates + (size_t)b * G, *hv = hn + (size_t)b * H, *ho = hnew + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            const float r = sigm(x[j] + g[j]), u = sigm(x[H + j] + g[H + j]);
            const float n = tanhf(x[2 * H + j] + r * g[2 * H + j]);
            gt[j] = r, gt[H + j] = u, gt[2 * H + j] = n;
            hv[j] = g[2 * H + j];
            ho[j] = (1.0f - u) * n + u * hp[j];
        }
    }
}

/* Rows of x (n, E) from the embedding of tokens tok (n). */
static void embed(const nn_seqdec *d, const int32_t *tok, int n, float *x)
{
    const int E = d->embed;
    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * E, d->param + d->off[NN_SEQ_EMB] + (size_t)tok[i] * E,
               (size_t)E * sizeof(float));
}

/* out (n, cols) = in (n, k) W^T + b for parameter tensors w, bias. */
static void affine(const nn_seqdec *d, nn_seq_tensor w, nn_seq_tensor bias, const float *in,
                   int n, float *out)
{
    const int cols = (int)d->shape[w][0], k = (int)d->shape[w][1];
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * cols, d->param + d->off[bias], (size_t)cols * sizeof(float));
    nn_sgemm(0, 1, n, cols, k, 1.0f, in, k, d->param + d->off[w], k, 1.0f, out, cols);
}

double nn_seqdec_forward(nn_seqdec *d, const float *z, const int32_t *y, int B, int *correct,
                         int *count)
{
    const int H = d->hidden, G = 3 * H, V = d->vocab, L = d->max_len;
    XD_ASSERT(d->grad); /* a decoder made for training (not nn_seqdec_init_greedy's) */
    /* steps: up to the last non-pad target of the batch */
    int T = 0;
    for (int b = 0; b < B; b++)
        for (int t = L - 1; t >= T; t--)
            if (y[(size_t)b * L + t] != NN_SEQ_PAD) {
                T = t + 1;
                break;
            }
    d->B = B, d->T = T, d->z = z, d->y = y, d->count = 0;
    if (correct) *correct = 0;
    if (count) *count = 0;
    if (T == 0) return 0.0;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++)
            d->tok[(size_t)t * B + b] = t == 0 ? NN_SEQ_BOS : y[(size_t)b * L + t - 1];
    embed(d, d->tok, T * B, d->x);
    start(d, z, B);
    /* the input products of every step at once, into dgx (free until backward) */
    float *gx = d->dgx;
    affine(d, NN_SEQ_WX, NN_SEQ_BX, d->x, T * B, gx);
    for (int t = 0; t < T; t++) {
        const size_t o = (size_t)t * B;
        gru_step(d, gx + o * G, d->hs + o * H, d->gates + o * G, d->hn + o * H,
                 d->hs + (o + B) * H, B);
    }
    affine(d, NN_SEQ_WO, NN_SEQ_BO, d->hs + (size_t)B * H, T * B, d->logits);
    /* softmax in place, cross-entropy over the non-pad positions (a pad position's row is left
     * as it is: nothing reads it) */
    double sum = 0.0;
    int right = 0, n = 0;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const int32_t target = y[(size_t)b * L + t];
            if (target == NN_SEQ_PAD) continue;
            float *lg = d->logits + ((size_t)t * B + b) * V;
            float mx = lg[0];
            int arg = 0;
            for (int v = 1; v < V; v++)
                if (lg[v] > mx) mx = lg[v], arg = v;
            const float lt = lg[target] - mx;
            double z_ = 0.0;
            for (int v = 0; v < V; v++) {
                lg[v] = expf(lg[v] - mx);
                z_ += lg[v];
            }
            sum += log(z_) - (double)lt;
            right += arg == target;
            n++;
            const float inv = (float)(1.0 / z_);
            for (int v = 0; v < V; v++) lg[v] *= inv;
        }
    d->count = n;
    if (correct) *correct = right;
    if (count) *count = n;
    return n ? sum / n : 0.0;
}

/* grad[w] += dy^T in (dy (n, rows), in (n, cols)); grad[bias] += column sums of dy. */
static void affine_grad(nn_seqdec *d, nn_seq_tensor w, nn_seq_tensor bias, const float *dy,
                        const float *in, int n)
{
    const int rows = (int)d->shape[w][0], cols = (int)d->shape[w][1];
    nn_sgemm(1, 0, rows, cols, n, 1.0f, dy, rows, in, cols, 1.0f, d->grad + d->off[w], cols);
    float *gb = d->grad + d->off[bias];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rows; j++) gb[j] += dy[(size_t)i * rows + j];
}

void nn_seqdec_backward(nn_seqdec *d, float *dz, float weight)
{
    const int B = d->B, T = d->T, H = d->hidden, G = 3 * H, V = d->vocab, E = d->embed,
              L = d->max_len;
    XD_ASSERT(d->grad);
    if (T == 0 || d->count == 0) return;
    /* dlogits = weight (p - onehot) / count at non-pad positions, in place */
    const float scale = weight / (float)d->count;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            float *p = d->logits + ((size_t)t * B + b) * V;
            const int32_t target = d->y[(size_t)b * L + t];
            if (target == NN_SEQ_PAD) {
                memset(p, 0, (size_t)V * sizeof(float));
                continue;
            }
            for (int v = 0; v < V; v++) p[v] *= scale;
            p[target] -= scale;
        }
    const float *hout = d->hs + (size_t)B * H;
    affine_grad(d, NN_SEQ_WO, NN_SEQ_BO, d->logits, hout, T * B);
    /* dh_all = dlogits Wo */
    nn_sgemm(0, 0, T * B, H, V, 1.0f, d->logits, V, d->param + d->off[NN_SEQ_WO], H, 0.0f,
             d->dh_all, H);
    /* back through time */
    float *dh = d->dh;
    memset(dh, 0, (size_t)B * H * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        const size_t o = (size_t)t * B;
        const float *hp = d->hs + o * H;
        for (int b = 0; b < B; b++) {
            const float *gt = d->gates + (o + b) * G, *hv = d->hn + (o + b) * H;
            const float *dha = d->dh_all + (o + b) * H, *h0 = hp + (size_t)b * H;
            float *dhb = dh + (size_t)b * H;
            float *dgx = d->dgx + (o + b) * G, *dgh = d->dgh + (o + b) * G;
            for (int j = 0; j < H; j++) {
                const float r = gt[j], u = gt[H + j], n = gt[2 * H + j];
                const float g = dhb[j] + dha[j];
                const float dan = g * (1.0f - u) * (1.0f - n * n);
                const float dau = g * (h0[j] - n) * u * (1.0f - u);
                const float dar = dan * hv[j] * r * (1.0f - r);
                dgx[j] = dar, dgx[H + j] = dau, dgx[2 * H + j] = dan;
                dgh[j] = dar, dgh[H + j] = dau, dgh[2 * H + j] = dan * r;
                dhb[j] = g * u; /* the direct path h_{t-1} -> h_t */
            }
        }
        /* dh_{t-1} += dgh Wh */
        nn_sgemm(0, 0, B, H, G, 1.0f, d->dgh + o * G, G, d->param + d->off[NN_SEQ_WH], H, 1.0f,
                 dh, H);
    }
    affine_grad(d, NN_SEQ_WH, NN_SEQ_BH, d->dgh, d->hs, T * B);
    affine_grad(d, NN_SEQ_WX, NN_SEQ_BX, d->dgx, d->x, T * B);
    /* dx = dgx Wx, into the embedding rows of each step's input token */
    nn_sgemm(0, 0, T * B, E, G, 1.0f, d->dgx, G, d->param + d->off[NN_SEQ_WX], E, 0.0f, d->dx, E);
    float *gemb = d->grad + d->off[NN_SEQ_EMB];
    for (size_t i = 0; i < (size_t)T * B; i++) {
        float *row = gemb + (size_t)d->tok[i] * E;
        const float *src = d->dx + i * E;
        for (int j = 0; j < E; j++) row[j] += src[j];
    }
    /* h0 = tanh(Wz z + bz) */
    for (size_t i = 0; i < (size_t)B * H; i++) dh[i] *= 1.0f - d->hs[i] * d->hs[i];
    affine_grad(d, NN_SEQ_WZ, NN_SEQ_BZ, dh, d->z, B);
    if (dz) nn_sgemm(0, 0, B, d->in, H, 1.0f, dh, H, d->param + d->off[NN_SEQ_WZ], d->in, 1.0f,
                     dz, d->in);
}

void nn_seqdec_greedy(nn_seqdec *d, const float *z, int B, int32_t *out, int *len)
{
    const int H = d->hidden, V = d->vocab, L = d->max_len;
    start(d, z, B);
    int32_t *tok = d->tok;
    uint8_t *done = d->done;
    memset(done, 0, (size_t)B);
    for (int b = 0; b < B; b++) {
        tok[b] = NN_SEQ_BOS, len[b] = 0;
        for (int t = 0; t < L; t++) out[(size_t)b * L + t] = NN_SEQ_PAD;
    }
    float *h = d->hs, *hnew = d->hs + (size_t)B * H;
    for (int t = 0, live = B; t < L && live > 0; t++) {
        embed(d, tok, B, d->x);
        affine(d, NN_SEQ_WX, NN_SEQ_BX, d->x, B, d->dgx);
        gru_step(d, d->dgx, h, d->gates, d->hn, hnew, B);
        affine(d, NN_SEQ_WO, NN_SEQ_BO, hnew, B, d->logits);
        for (int b = 0; b < B; b++) {
            const float *lg = d->logits + (size_t)b * V;
            int arg = 0;
            for (int v = 1; v < V; v++)
                if (lg[v] > lg[arg]) arg = v;
            tok[b] = arg;
            if (done[b]) continue;
            if (arg == NN_SEQ_EOS) {
                done[b] = 1, live--;
                continue;
            }
            out[(size_t)b * L + len[b]++] = arg;
        }
        memcpy(h, hnew, (size_t)B * H * sizeof(float));
    }
}
