/* Quantisation: int8 fake quantisation for training and evaluation, and the integer engine that
 * runs the same model on int8 values.
 *
 * A quantised model is an ordinary model (nn/model.h) whose description says where values are
 * quantised, so training, evaluation, checkpoints and resuming need nothing of their own:
 *  - every linear and conv2d layer has `wbits=8`: its forward and backward read its weights
 *    fake-quantised per output channel (symmetric: s = max|w_row| / 127, w -> s * round(w / s)),
 *    and the gradient passes straight through to the float weights;
 *  - every linear and conv2d layer reads a `fakequant bits=8 ema=M` node, which quantises its
 *    input per tensor with a moving range r (state "NAME.range", saved like batch-norm
 *    statistics): in training r follows the batches' max|x| (r += M * (max|x| - r), the first
 *    batch sets it), in calibration (nn_run.calibrate) it grows to the largest max|x| seen, in
 *    evaluation it stays. The levels are 0..255 with s = r / 255 (`unsigned`: the input is
 *    non-negative by construction, e.g. after a relu) or -128..127 with s = r / 127; x ->
 *    s * clamp(round(x / s)). Backward passes the gradient where x lies inside the levels' range
 *    and stops it outside (a clipped straight-through estimator).
 * nn_quant_desc rewrites a float model's description into that form.
 *
 * The integer engine (nn_qengine_attach) runs such a model's quantised layers on integers: the
 * fakequant node in front of a layer writes uint8 codes (q + zero point: 0 unsigned, 128 signed;
 * its float values only when a node other than such a layer reads them), the layer multiplies
 * codes by int8 weights with int32 sums (nn/qgemm.h: AVX-512 VNNI when the CPU has it) and
 * requantises: y = (acc - zero * sum_k w) * (s_x * s_w[oc]) + bias, in float, which the next
 * fakequant node turns into the next codes. Everything between (relu, pooling, batch norm,
 * flatten, ...) runs as in the float model. The fake-quant forward computes the same quantities
 * in float, so the two differ only where the order of a float sum
 * moves a value across a rounding boundary of the next quantisation.
 * At inference (nn_model_infer) the same codes come by a shorter way: a convolution reads its
 * windows in place from a padded copy of its input codes, the requantisation runs in the
 * kernel's registers, a max pool after a layer pools its int32 sums (the requantisation is
 * monotone in the sum; a k x k pool of stride k inside the convolution's product) and
 * requantises once per window, a batch norm right after a layer runs in its requantisation (the
 * batch norm node's float operations; monotone per channel, falling where gamma < 0, whose
 * windows then pool their smallest sum), and a layer whose output reaches the next fakequant
 * node only through batch norm, relu, maxpool, flatten or dropout writes that node's codes itself
 * (relu: codes below the code of 0 raised to it), so nothing between runs in float. */
#ifndef XD_NN_QUANT_H
#define XD_NN_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/model.h"
#include "nn/qgemm.h"

typedef struct nn_qengine nn_qengine;

/* The scale of a bits-bit activation of range r: r / 255 (usign) or r / 127 at 8 bits. */
float nn_quant_act_scale(float range, int bits, int usign);
/* out = s * q with q = clamp(round(x / s)) on the levels (see above); codes (bits must be 8) =
 * q + zero point; either may be NULL when not wanted. range 0 (not calibrated yet): out = x, no
 * codes. */
void nn_quant_act(uint8_t *codes, float *out, const float *inp, size_t n, float range, int bits,
                  int usign);
/* The clipped straight-through gradient: dinp += dout where inp lies within the range. */
void nn_quant_act_backward(float *dinp, const float *dout, const float *inp, size_t n,
                           float range, int bits, int usign);
/* The range after a batch x: ema > 0 moves it towards max|x| (0 takes max|x|), ema 0 takes the
 * larger of the two (calibration). */
float nn_quant_range_update(float range, const float *x, size_t n, float ema);

/* Per output row of w (rows, cols): scale[r] = max|w_r| / (2^(bits-1) - 1) (1 for a zero row) and
 * q = clamp(round(w / scale)); the fake form writes scale * q as floats. */
void nn_quant_weights(int8_t *q, float *scale, const float *w, int rows, int cols, int bits);
void nn_quant_weights_fake(float *wq, const float *w, int rows, int cols, int bits);

/* The quantised form of a float model's description (a new string in *out): a `fakequant bits=8
 * ema=EMA` node (named after its layer, "NAME_in", `unsigned` when what it reads is a relu's
 * output, possibly through pooling, flatten or dropout) in front of every linear and conv2d,
 * which get `wbits=8`. Parameter names stay as they were, so a float checkpoint's values load
 * into it by name. A description already in that form comes back unchanged; one in part is an
 * error. */
xd_status nn_quant_desc(const char *desc, float ema, char **out, xd_err *e);
/* The quantised form of src (nn_quant_desc) built into q for batches of max_batch, with src's
 * values copied by name: the moving ranges are src's when src is quantised already, else 0 (to be
 * calibrated: forward batches with nn_run.calibrate). */
xd_status nn_quant_build(nn_model *q, nn_model *src, float ema, int max_batch, xd_err *e);
/* Whether a model's description has quantisation in it (wbits or a moving-range fakequant). */
int nn_quant_model_has(const nn_model *m);

/* Whether node i is a layer the engine runs on integers: a linear or conv2d with wbits=8 that
 * reads a fakequant bits=8 ema=M node. */
int nn_quant_runs_int(const nn_model *m, int i);
/* Attaches the integer engine to a built quantised model: its linear and conv2d layers with
 * wbits=8 that read a fakequant bits=8 node with a range > 0 then run on integers (weights
 * quantised from the model's float ones; nn_qengine_set_weights replaces them), everything else
 * as before. Fails (XD_EARG, naming the node) when a quantised layer's range is not calibrated or
 * when no layer can run on integers. */
xd_status nn_qengine_attach(nn_model *m, xd_err *e);
/* Called by the model's forward for node i over B rows: runs it on integers and returns 1, or
 * returns 0 when the node is not the engine's. Rows as the model's forward has them: node j's
 * output (and codes) for these rows start at row at[j] (at NULL: row b0 for every node), the
 * layers' scratch at row sr. infer (nn_model_infer): an integer layer whose output reaches a
 * fakequant node only through nodes that commute with quantisation (batch norm, relu, maxpool)
 * writes that node's codes straight from its sums, pooled on codes, and the nodes between do
 * nothing: the same codes as the node by node forward; one followed by a batch norm (and a relu)
 * that reach no such node writes their floats; and a fused pool keeps no argmax. The batch
 * norm's values (gamma's signs, its deviations) are read at nn_qengine_attach. */
int nn_qengine_forward_node(nn_model *m, int i, int b0, int B, const int *at, int sr, int infer);
/* At inference: the node that computes node i's output (i, or the integer layer that writes
 * codes for it, see nn_qengine_forward_node). */
int nn_qengine_writer(const nn_model *m, int i);
/* At inference: whether node i's floats are written, so that something else may read them (a
 * rationale decoder's tap): not those of an integer layer whose values go on through its
 * epilogue, of the nodes its pass skips (but the batch norm or relu whose floats it writes, or a
 * global average pool it sums), or of a fakequant node that only integer layers read. */
int nn_qengine_writes(const nn_model *m, int i);
void nn_qengine_free(nn_qengine *q);
/* Pixels in: when attached model m takes images of c channels (1..4) whose input goes to nothing
 * but a fakequant node whose codes integer layers alone read (an int8 image student, every
 * layer with int8 weights on integers), that node's codes of values[p * c + ch] (what the input pipeline makes of
 * 8-bit value p in channel ch: 256 * c floats) go into a table, and 1 is returned; else 0. Then
 * nn_qengine_pixels_in lets nn_model_infer take the 8-bit pixels themselves, (B, h, w, c): the
 * codes by table, bit for bit those of the floats, without the floats. */
int nn_qengine_pixels(nn_model *m, int c, const float *values);
/* Whether nn_model_infer's input is 8-bit pixels (on: only after nn_qengine_pixels gave 1) or
 * floats (the default). */
void nn_qengine_pixels_in(nn_model *m, int on);
/* Node i's int8 weights (its weight's shape) and scales (one per output) when it runs on
 * integers, else NULL. */
const int8_t *nn_qengine_weights(const nn_model *m, int i, const float **scale);
/* Replaces node i's integer weights and scales (it runs on integers); the model's float weights
 * become scale * q, so its fake-quant forward reads the same grid. */
void nn_qengine_set_weights(nn_model *m, int i, const int8_t *q, const float *scale);

#endif
