/* A small sequence decoder: a GRU over a token vocabulary that starts from a conditioning vector
 * (an encoder's representation of the example) and predicts a token sequence one token at a time.
 * Distilling step by step trains it on a teacher's rationale next to the label head.
 *
 *   h0 = tanh(Wz z + bz)
 *   x_t = E[y_{t-1}]  (y_{-1} = NN_SEQ_BOS: teacher forcing feeds the true previous token)
 *   r = s(Wx_r x + bx_r + Wh_r h + bh_r),  u = s(Wx_u x + bx_u + Wh_u h + bh_u)
 *   n = tanh(Wx_n x + bx_n + r * (Wh_n h + bh_n)),  h_t = (1 - u) n + u h_{t-1}
 *   logits_t = Wo h_t + bo
 *
 * (PyTorch's nn.GRU gate order and equations.) A target row is the tokens, then NN_SEQ_EOS, then
 * NN_SEQ_PAD to the length limit; the loss is the mean cross-entropy over every non-pad position
 * of the batch (a row of pads only adds nothing), so the decoder learns to stop. Greedy decoding
 * feeds back its own argmax and stops at NN_SEQ_EOS or at the length limit.
 *
 * Parameters live in one block and their gradients in another of the same layout, with optimizer
 * segments (weights decay, biases do not), as a model's do; the step's working memory is sized
 * once for max_batch rows of max_len steps. */
#ifndef XD_NN_SEQDEC_H
#define XD_NN_SEQDEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/optim.h"

/* Token ids every vocabulary starts with. */
enum { NN_SEQ_PAD = 0, NN_SEQ_BOS = 1, NN_SEQ_EOS = 2, NN_SEQ_UNK = 3, NN_SEQ_SPECIALS = 4 };

/* The parameter tensors, in block order. */
typedef enum {
    NN_SEQ_WZ, NN_SEQ_BZ, NN_SEQ_EMB, NN_SEQ_WX, NN_SEQ_BX, NN_SEQ_WH, NN_SEQ_BH, NN_SEQ_WO,
    NN_SEQ_BO, NN_SEQ_TENSORS
} nn_seq_tensor;
extern const char *const nn_seq_tensor_names[NN_SEQ_TENSORS]; /* "wz", "bz", "emb", ... */

typedef struct {
    int in, hidden, embed, vocab, max_len, max_batch;
    float *param, *grad;
    size_t n_param;
    size_t off[NN_SEQ_TENSORS], n[NN_SEQ_TENSORS];
    int64_t shape[NN_SEQ_TENSORS][2]; /* rows, columns (columns 0 for a vector) */
    nn_param_seg segs[NN_SEQ_TENSORS];
    /* the last forward: rows B, steps T */
    int B, T;
    const float *z;
    int32_t *tok;     /* (T, B) each step's input token */
    const int32_t *y; /* (B, max_len) targets */
    float *x, *hs, *gates, *hn, *logits; /* (T,B,E) (T+1,B,H) (T,B,3H) (T,B,H) (T*B,V) */
    float *dgx, *dgh, *dh_all, *dx, *dh;  /* (T,B,3H) (T,B,3H) (T,B,H) (T,B,E) (B,H) */
    float *gh;        /* (B, 3H) one step's recurrent product */
    uint8_t *done;    /* (B) greedy decoding: the rows that have ended */
    int count;        /* non-pad target positions */
} nn_seqdec;

/* The tensors' shapes (nn_seq_tensor_names order; rows, columns, 0 columns for a vector) of a
 * decoder of these sizes. */
void nn_seqdec_shapes(int in, int hidden, int embed, int vocab, int64_t shapes[NN_SEQ_TENSORS][2]);
/* A decoder reading vectors of `in` floats, with parameters initialised from seed (PyTorch's:
 * U(+-1/sqrt(H)) for the GRU, U(+-1/sqrt(fan_in)) for the two linear maps, N(0, 1) for the
 * embedding). XD_EARG when a size is out of range (vocab must exceed the special tokens). */
xd_status nn_seqdec_init(nn_seqdec *d, int in, int hidden, int embed, int vocab, int max_len,
                         int max_batch, uint64_t seed, xd_err *e);
/* A decoder for nn_seqdec_greedy only (no forward or backward): parameters zero, to be set, and
 * working memory for one step of max_batch rows (training's is for max_len steps, and its
 * gradients). XD_ENOMEM, freeing what it took, when the memory is not there. */
xd_status nn_seqdec_init_greedy(nn_seqdec *d, int in, int hidden, int embed, int vocab,
                                int max_len, int max_batch, xd_err *e);
void nn_seqdec_free(nn_seqdec *d);

/* Teacher-forced forward over B rows: z (B, in), y (B, max_len) targets as above. Returns the
 * mean token cross-entropy (0 when no position counts); *correct (may be NULL) gets how many
 * non-pad positions the argmax predicts, *count how many there are (may be NULL). z and y must
 * stay valid until nn_seqdec_backward. */
double nn_seqdec_forward(nn_seqdec *d, const float *z, const int32_t *y, int B, int *correct,
                         int *count);
/* Gradients of weight * the last forward's loss: added into d->grad and, when dz is not NULL,
 * into dz (B, in). */
void nn_seqdec_backward(nn_seqdec *d, float *dz, float weight);

/* Greedy decoding of B rows from z: out (B, max_len) token ids, len (B) tokens before the end
 * token or the length limit (the rest of a row is NN_SEQ_PAD). Uses the forward's buffers. */
void nn_seqdec_greedy(nn_seqdec *d, const float *z, int B, int32_t *out, int *len);

/* The target row of a token sequence: its first max_len - 1 tokens, NN_SEQ_EOS, NN_SEQ_PAD to
 * max_len; n < 0 (no sequence at all) gives a row of pads, which the loss skips. */
void nn_seqdec_target(const int32_t *tokens, int n, int max_len, int32_t *row);

#endif
