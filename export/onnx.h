/* ONNX export: a checkpoint as an ONNX model (opset 17, IR version 8), written with protobuf-c
 * over the onnx.proto that python3-onnx ships.
 *
 * The model takes "input", float32 (batch, height, width, channels) after the checkpoint's
 * preprocessing (what the engine feeds its forward pass), or int32 token ids (batch, tokens) for a
 * text model (-1 pads), and gives "logits" (batch, classes) or (batch, height, width, classes) for
 * a segmentation head, and "probabilities", their softmax over the classes. Its metadata
 * properties state the preprocessing (xdistill.augment, the recipe's data.augment;
 * xdistill.text, its text settings; xdistill.images, the size of the training images), the class
 * names and the model description. Every layer kind is exported; a kind without an export would
 * be XD_EUNSUPPORTED naming the layer. */
#ifndef XD_EXPORT_ONNX_H
#define XD_EXPORT_ONNX_H

#include "core/status.h"

/* Writes the checkpoint at ckpt as an ONNX file at out_path (atomically), its outputs those of
 * the head named exit (an early exit: the layers after it are left out), or of the default head
 * when exit is NULL. A name that is no head is XD_EARG listing the heads. */
xd_status ex_onnx_write(const char *ckpt, const char *exit, const char *out_path, xd_err *e);

#endif
