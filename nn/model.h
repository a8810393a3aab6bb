/* A model: layers (nodes) in a list, each reading the output of an earlier node (by default the one
 * before it), plus named taps and heads. Described in data, as text, so recipes and checkpoints
 * can build it:
 *
 *   input h=28 w=28 c=1; conv2d name=conv1 out=32 k=3 pad=1; relu; maxpool k=2;
 *   flatten; linear out=128; relu name=feat; linear out=10 name=logits head
 *
 * Statements are separated by ';' or newlines; the first is `input` (an image h/w/c, or
 * `tokens=L` for rows of L token ids). Every node has a name (given, or kind + index, e.g.
 * "relu2"); any node is a tap: its output can be read and can receive gradient. `from=NAME` reads
 * another node (or "input"); `head` marks an output. Several heads (early exits), branches and
 * `add` (residual) nodes make the graph a DAG; list order is the evaluation order.
 *
 * Memory: parameters in one block, their gradients in another with the same layout (so an
 * optimizer step is one loop), non-trainable state (batch-norm running stats) in a third, all
 * activations and their gradients in one block each, sized for max_batch. Nothing is allocated
 * per step: per-step scratch comes from the model's arena. */
#ifndef XD_NN_MODEL_H
#define XD_NN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"
#include "nn/gemm_bf16.h"
#include "nn/mm.h"
#include "nn/layers.h"
#include "nn/optim.h"

typedef enum {
    NN_LINEAR,
    NN_CONV2D,
    NN_MAXPOOL,
    NN_AVGPOOL,
    NN_GAP,
    NN_RELU,
    NN_GELU,
    NN_TANH,
    NN_SIGMOID,
    NN_SOFTMAX,
    NN_LOGSOFTMAX,
    NN_BATCHNORM,
    NN_LAYERNORM,
    NN_DROPOUT,
    NN_EMBBAG,
    NN_UPSAMPLE,
    NN_FLATTEN,
    NN_FAKEQUANT,
    NN_ADD,
    NN_KIND_COUNT
} nn_kind;

const char *nn_kind_name(nn_kind k);

#define NN_NAME_LEN 48
#define NN_INPUT (-1) /* node index meaning "the model input" */

/* Size limits, checked with overflow-safe arithmetic before anything is allocated (the error
 * names the layer): a model holds at most NN_MAX_PARAMS floats of parameters and running
 * statistics (1 GiB; training adds as much again for gradients and twice that for Adam), and
 * needs at most NN_MAX_EXAMPLE floats of working memory per example of a batch (the input, every
 * node's output and its gradient, what backward keeps: convolution columns, dropout masks, norm
 * statistics, pooling indices). Integer options (out, k, stride, pad, vocab, ...) are in
 * 0..NN_MAX_OPTION, input sizes (h, w, c, tokens) in 1..NN_MAX_INPUT, batches in
 * 1..NN_MAX_BATCH, and a description holds at most NN_MAX_NODES layers (checking each new name
 * against the earlier ones, a description of a million layers would parse for hours). */
#define NN_MAX_NODES 4096
#define NN_MAX_PARAMS ((size_t)1 << 28)
#define NN_MAX_EXAMPLE ((size_t)1 << 28)
#define NN_MAX_OPTION (1 << 28)
#define NN_MAX_INPUT (1 << 20)
#define NN_MAX_BATCH (1 << 20)

typedef struct {
    nn_kind kind;
    char name[NN_NAME_LEN];
    int in, in2;         /* producers (NN_INPUT = model input; in2 only for add) */
    int h, w, c;         /* output shape per example */
    int ih, iw, ic;      /* input shape per example */
    /* options (only those that apply to the kind are used) */
    int units, k, stride, pad, bias, bits, factor, vocab, head;
    int wbits;           /* linear, conv2d: > 0: weights fake-quantised per output channel */
    int prune;           /* linear, conv2d: weights carry a pruning mask (state), see nn/prune.h */
    int usign;           /* fakequant with a moving range: levels 0..2^bits-1 (after a relu) */
    nn_bag_mode mode;
    float p, eps, momentum;
    float ema;           /* fakequant: > 0: a moving range (state "NAME.range"), see nn/quant.h */
    /* parameters and state: offsets into the model's blocks (counts 0 when absent) */
    size_t w_off, w_n, b_off, b_n, s_off, s_n;
    /* activations (max_batch rows of h*w*c) and saved values for backward */
    size_t act_n;
    float *out, *dout;
    float *save;      /* conv cols (or their room), dropout mask, norm mean/rstd */
    float *wq;        /* wbits: the fake-quantised weights of the last forward (w_n) */
    int32_t *isave;   /* maxpool argmax */
    float *wp;        /* weights packed for inference (nn_model_pack), or NULL */
    uint32_t *wpb;    /* the same for bf16 products (a model packed with eval_precision bf16;
                       * layers bf16 computes: see nn_model_infer), and for a float32
                       * convolution Winograd's computes (nn_wino_pack's floats), or NULL */
    int wpb_kind;     /* conv2d: the kernel wpb is packed for (nn_bwino_pack's transformed
                       * weights, nn_bfirst_pack's pairs or nn_bconv_pack's, or nn_wino_pack's;
                       * model_forward.c's bconv_now): only a forward that runs it reads wpb */
    float *wpk;       /* conv2d: room for the weights packed by a float32 forward outside
                       * inference, which then reads the windows in place (or NULL) */
    int unfolded;     /* conv2d: its last forward left the unfolded windows in save */
    int pooled;       /* conv2d: its gradient this step is still its pool's, that node's index
                       * (backward; see relu_pool_backward), or 0 */
    int asked;        /* conv2d: its output was asked for while stale: from then on its fused
                       * pool's forward writes it (rather than run its product again each time) */
    int stale;        /* out not written by the last forward (or inference), but when
                       * nn_model_out asks for it: a relu_pool ReLU (not a head) whose pool took
                       * it straight from its input; a convolution (not a head, not asked)
                       * whose fused ReLU and pool took each image's rows from scratch, or made
                       * their windows as it went (inference in bf16; its product runs again
                       * then, nn_model_refresh, as that forward ran it, on the weights and
                       * input as they are: ask before the optimizer's step); or a flatten (not
                       * a head), whose readers take its input's values (nn_node_input). The
                       * model's input, then, must stay as it was until backward and the last
                       * nn_model_out of the step, as a first convolution's or linear layer's
                       * weight gradient needs anyway. */
    int bn_fold;      /* packed: the batchnorm node folded into wp (it writes that node's output) */
    float *bp;        /* its bias with the norm folded in, or NULL */
    int touched;      /* dout received gradient this step */
    int grad_used;    /* a parameter or the input gradient lies upstream: dout is worth filling */
    int relu_pool;    /* a relu read by one maxpool and nothing else: the pool's pass does both */
    int pool_in_conv; /* a conv2d read only by such a relu: index of the pool, done in its product */
    int masked;       /* dropout applied a mask in the last forward */
} nn_node;

typedef struct {
    char name[NN_NAME_LEN + 16];
    int ndim;
    int64_t shape[4];
    size_t off, n;
    int decay;        /* 1 for weights, 0 for biases and norm parameters */
    int state;        /* 1: lives in the state block (not trained) */
} nn_param;

typedef struct {
    int training;             /* batch-norm batch stats, dropout on */
    uint64_t seed;            /* dropout streams */
    uint64_t step;
    const uint64_t *example;  /* global example index of each row, or NULL (row index) */
    int calibrate;            /* not training: fakequant ranges grow to each batch's max|x| */
} nn_run;

typedef struct {
    int tokens;               /* > 0: input rows are `tokens` int32 ids; else an image h*w*c */
    int h, w, c;
    int n_nodes;
    nn_node *nodes;
    int n_params;
    nn_param *params;
    nn_param_seg *segs;       /* trainable parameters as optimizer segments, in block order */
    int n_segs;
    float *param, *grad;      /* (n_param) each */
    size_t n_param;
    int grad_unset;           /* nn_model_clear_grad: the next backward writes grad whole */
    float *state;             /* (n_state) */
    size_t n_state;
    int max_batch, batch;
    const void *input;        /* last forward's input (kept for backward) */
    float *dinput;            /* (max_batch, h*w*c) gradient w.r.t. a float input, when enabled */
    float *act_block, *dact_block, *save_block;
    int32_t *isave_block;
    float *packed;            /* the nodes' wp (nn_model_pack), or NULL */
    uint32_t *packed_bf16;    /* the nodes' wpb, or NULL; packed for bf16 kernel packed_bisa
                               * (and float32's Winograd) */
    nn_bisa packed_bisa;
    xd_arena scratch;
    char *desc;               /* canonical description (round-trips through nn_model_parse) */
    struct nn_qengine *qengine; /* not NULL: its quantised layers run on integers (nn/quant.h) */
    nn_precision precision;   /* of the products of training forwards and of backward (bf16:
                               * nn/gemm_bf16.h) */
    nn_precision eval_precision; /* of evaluation forwards' and inference's (nn_model_infer)
                                  * products: float32 unless set (a teacher in bf16) */
    int last_eval;            /* the last forward was an evaluation forward or inference: what it
                               * left stale is made as it runs (nn_model_refresh) */
} nn_model;

/* Parses and builds a model for batches of up to max_batch rows; parameters initialised from seed
 * (PyTorch's defaults: U(+-1/sqrt(fan_in)) for linear/conv, N(0,1) for embeddings, 1/0 for norms).
 * Errors name the statement ("layer 3 'conv2d': ..."). Every check of nn_model_plan comes first;
 * memory that cannot be had is XD_ENOMEM naming the block and its size, never an abort. */
xd_status nn_model_build(nn_model *m, const char *desc, int max_batch, uint64_t seed, xd_err *e);
/* Everything nn_model_build checks, without the memory: parses, works out shapes, names, heads and
 * the parameter table, checks the limits for batches of max_batch. The result answers the
 * lookups (nn_model_find, nn_model_node, nn_model_param, default head, desc, n_param) but cannot
 * run; free it with nn_model_free. */
xd_status nn_model_plan(nn_model *m, const char *desc, int max_batch, xd_err *e);
void nn_model_free(nn_model *m);
/* The canonical description of m's node list (a new string): what m->desc holds; a caller may
 * describe a node list of its own making in a copy of a planned model (nn/quant.c does). */
char *nn_model_describe(const nn_model *m);

/* Makes backward also compute the gradient w.r.t. the (float) input, e.g. for a projector whose
 * input is another model's tap. Read it with nn_model_dinput after backward. */
void nn_model_enable_input_grad(nn_model *m);
const float *nn_model_dinput(const nn_model *m);

/* Re-initialises the parameters and state from a seed. */
void nn_model_init_params(nn_model *m, uint64_t seed);

/* input: float (B, h, w, c) or int32 (B, tokens). B <= max_batch. Zeroes all activation
 * gradients, ready for losses to add into nn_model_dout. The model reads input again after it
 * returns (backward, and nn_model_out of an output not written, nn_node.stale): keep it as it is
 * until the step is done. */
void nn_model_forward(nn_model *m, const void *input, int B, const nn_run *run);
/* Marks in need (n_nodes entries, 0 or 1; others already marked stay) the nodes whose forward
 * node `target`'s output needs: target, every node it reads from, directly or not, and a pool
 * that computes a needed relu's output with its own (a fused relu -> maxpool). */
void nn_model_needs(const nn_model *m, int target, uint8_t *need);
/* nn_model_forward of the nodes need marks (NULL: all), e.g. an early exit without the layers
 * after it. A marked node's output is bit for bit what the whole forward gives (in eval mode
 * batch norm reads its running statistics; in training mode only marked norms update theirs);
 * the other nodes' outputs are left as they were and must not be read, nor backward run through
 * them. */
void nn_model_forward_some(nn_model *m, const void *input, int B, const nn_run *run,
                           const uint8_t *need);
/* Inference: packs every linear and convolution weight once into the matrix kernel's layout
 * (with the bias column a convolution's product carries); forward passes then read the packed
 * copies, with the same bits. A batch norm that alone reads a linear or convolution layer with a
 * bias is folded into its packed weights and bias (w * g, (b - mean) * g + beta, g = gamma /
 * sqrt(var + eps)), as ONNX Runtime does: the layer then writes the norm's output and the norm
 * does nothing; the same values within float rounding, not the same bits. With eval_precision
 * bf16, the layers nn_model_infer then runs in bf16 (linear layers, and the convolutions that
 * nn/conv_bf16.c takes, on AMX, AVX512_BF16 or AVX2, or nn/conv_wino.c, by Winograd's transformed
 * weights, or nn/conv_bfirst.c, in its pairs; not those with a folded norm) are also packed for
 * the bf16 kernel that runs now (wpb); with eval_precision float32, the 3 x 3 convolutions
 * nn/conv_wino.c computes in float32 (nn_wino_takes; not those with a folded norm), in their
 * transformed weights. The
 * parameters must not change afterwards, and the model serves inference only (training does not
 * call this). */
xd_status nn_model_pack(nn_model *m, xd_err *e);
/* nn_model_pack without folding any batch norm: nn_model_infer then gives the eval forward's
 * bits everywhere (what the teacher-output cache needs). nn_model_unpack undoes it (forward
 * passes read the parameters again, which may then change). */
xd_status nn_model_pack_exact(nn_model *m, xd_err *e);
void nn_model_unpack(nn_model *m);
/* nn_model_forward_some in eval mode, bit for bit (but for a batch norm nn_model_pack folded),
 * arranged for inference: a run of per-image layers with a convolution in it (convolutions,
 * norms, activations, pools) goes a few images at a time, so each image stays in cache from
 * layer to layer; linear layers run over all the images of a share. With several threads, shares
 * of the batch go through the whole model on whichever thread is free, in one parallel region.
 * With the integer engine attached (nn/quant.h) its layers run on codes the short way. With
 * eval_precision bf16, the products are bf16 as the eval forward's are, with the same bits: on
 * the weights packed for the bf16 kernels when the model was packed (nn_model_pack), or on the
 * float weights where nothing was packed for the kernel that runs now; a convolution with fewer
 * than 16 input channels keeps float32 (nn_precision_of_conv) but one of one channel that
 * nn/conv_bfirst.h takes, and so does a layer with a batch norm folded in (its float32 packing
 * holds the folded weights). What only backward reads is not kept: a max pool's argmax. What
 * nothing after it reads (not a head, nor the default head) is left unwritten where that saves a
 * pass (nn_node.stale: nn_model_out makes it when asked, from what its input holds then): a
 * flatten's copy, the output of a ReLU fused with its pool (plan_fusion), and that of a bf16
 * convolution of the model's input that pools its windows as it makes them (nn/conv_bfirst.h,
 * nn/conv_wino.h; made then with the bits the forward would have written).
 * Afterwards nn_model_out gives the heads' outputs (the last node's when none is marked a
 * head), and what the layers after a run of per-image layers read from it; another node inside
 * such a run may hold only its last chunk of images (nn_model_infer_reading has it whole). */
void nn_model_infer(nn_model *m, const void *input, int B, const uint8_t *need);
/* nn_model_infer for a caller that reads nodes reads[0..n_reads) afterwards (at most
 * NN_READS_MOST; a node may come twice): each is written whole, as a head is, marked one for the
 * while, and so is the default head (the marks are as they were after: the default head and the
 * exits stay the same). */
#define NN_READS_MOST 4
void nn_model_infer_reading(nn_model *m, const void *input, int B, const uint8_t *need,
                            const int *reads, int n_reads);
/* Propagates the gradients written into head/tap douts down to the parameters (adds into grad;
 * after nn_model_clear_grad, writes all of it). */
void nn_model_backward(nn_model *m);
void nn_model_zero_grad(nn_model *m);
/* For a step whose nn_model_backward follows before anything reads or adds to grad: the
 * gradients are not cleared now, and that backward writes every parameter's (a linear layer's
 * product writes its weight gradient rather than adding to a cleared one: the same values, but
 * that a zero the product's sum underflows to keeps its sign, -0 where 0 + g gave +0, which no
 * update, check or sum of gradients tells apart; its bias gradient is 0 + the sums; other
 * layers' are cleared just before they add, and those of layers no gradient reaches are
 * cleared). One pass over the gradients fewer than nn_model_zero_grad, and the largest ones are
 * not read. Until that backward, grad holds garbage; where it may not run (nothing to train on
 * this step), nn_model_zero_grad. */
void nn_model_clear_grad(nn_model *m);

int nn_model_find(const nn_model *m, const char *name); /* node index or -1 */
/* The node a parameter or state entry "NODE.what" belongs to (node names may hold dots; the part
 * after the last one is the entry's own name), or -1. */
int nn_model_param_node(const nn_model *m, const char *param_name);
const nn_node *nn_model_node(const nn_model *m, int idx);
/* Whether node n's output is a map (H, W, C) more than one position wide, such as a segmenter's
 * head (its classes its channels), rather than a vector (its outputs act_n). */
static inline int nn_node_is_map(const nn_node *n) { return n->h > 1 || n->w > 1; }
/* Output of node idx for the last batch: (batch, act_n). Read node outputs through it: a ReLU
 * fused with its max pool, and a convolution fused with both, are written only when asked for
 * (nn_node.stale), between the forward and the optimizer's step. */
float *nn_model_out(nn_model *m, int idx);
/* Gradient buffer of node idx, to add into; marks the node as needing backward. */
float *nn_model_dout(nn_model *m, int idx);
/* The first node marked head, or the last node when none is. */
int nn_model_default_head(const nn_model *m);
/* The model's heads (its exits) into heads (room for n_nodes): the default head first, then the
 * other nodes marked head in list order; returns their count (1 when none or one is marked). */
int nn_model_heads(const nn_model *m, int *heads);

const nn_param *nn_model_param(const nn_model *m, const char *name);
/* Pointer to the values of a parameter or state entry. */
float *nn_model_param_data(nn_model *m, const nn_param *p);
/* Counts trainable floats; flops of one forward pass per example (multiply-adds * 2). */
double nn_model_flops(const nn_model *m);

/* The first of the n rows of `per` floats of x (a node's outputs of n examples) that holds a
 * value that is not finite: its index, that value in *v; -1 when every value is finite. Weights
 * whose products overflow float give Inf, then NaN, which softmax and argmax would still turn
 * into an answer: outputs are checked so before anything is made of them. */
ptrdiff_t nn_nonfinite_row(const float *x, size_t n, size_t per, float *v);
/* nn_nonfinite_row as an error: XD_ENUM "WHAT for example I is not finite (V)", I the example of
 * the row: idx[row] (idx not NULL) or i0 + row. */
xd_status nn_check_finite(const float *x, size_t n, size_t per, const uint32_t *idx, size_t i0,
                          const char *what, xd_err *e);

#endif
