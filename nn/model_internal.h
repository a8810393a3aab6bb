/* What model.c shares with model_parse.c, model_forward.c and model_backward.c: the parsed
 * description, a node's layer shapes and the tensor a node reads. Not part of the model's
 * interface. */
#ifndef XD_NN_MODEL_INTERNAL_H
#define XD_NN_MODEL_INTERNAL_H

#include "nn/layers.h"
#include "nn/model.h"

/* The statements of desc into m's input shape and nodes, options checked (m zeroed before; on
 * failure what was allocated stays in m for nn_model_free). Shapes come after (nn_model_build). */
xd_status nn_model_parse(nn_model *m, const char *desc, xd_err *e);
nn_pool_shape nn_node_pool_shape(const nn_node *nd, int B);
nn_conv_shape nn_node_conv_shape(const nn_node *nd, int B);
/* The output of node idx, or the model's input for NN_INPUT */
const float *nn_node_input(const nn_model *m, int idx);
/* Writes the output of a convolution whose fused pool did not keep it (nn_node.stale): the
 * product again, from the same input and weights, as the forward that left it computed it
 * (nn_model.last_eval), without the pool; and marks it asked. */
void nn_model_refresh(nn_model *m, int idx);
/* The node that reads node idx, when exactly one does (and reads it once); else -1. */
int nn_node_only_reader(const nn_model *m, int idx);
/* The first row of node idx's output for work on rows b0.. of the batch: at[idx] when the
 * inference's row table at is given (see nn_model_infer), else b0. */
static inline int nn_node_row(const int *at, int idx, int b0)
{
    return idx == NN_INPUT || !at ? b0 : at[idx];
}
/* Sets the calling thread's products to the precision convolution s runs in (nn_precision_of_conv
 * of the one set now) for the layer's work; returns the precision to set back after it. */
static inline nn_precision nn_conv_precision_enter(const nn_conv_shape *s)
{
    return nn_mm_precision_set((nn_precision)nn_precision_of_conv(s, nn_mm_precision()));
}
/* Whether node nd's training forward and backward, in the precision set now, may run Winograd's
 * (nn/conv_wino.h): in float32, not through a folded norm (its bf16 rounding is coarser than the
 * direct kernel's, so not in bf16) */
static inline int nn_node_trains_winograd(const nn_node *nd)
{
    return !nd->bn_fold && nn_mm_precision() == NN_PREC_FLOAT32;
}

#endif
