/* Early exits: the heads of one model (nodes marked `head`, nn/model.h) read at intermediate
 * layers, e.g. a network whose deepest exit teaches its shallow ones (self-distillation). An exit
 * is scored, evaluated and timed with only the layers it reads (nn_model_forward_some).
 *
 * The trainer scores every exit of a model with several at each evaluation (metrics.jsonl
 * `test_acc.EXIT`, or `test_acc.MODEL.EXIT` in a run of several models; summary.json `exits`
 * with each exit's final and best score), next to the default head's score that picks the best
 * checkpoint. */
#ifndef XD_DISTILL_EXITS_H
#define XD_DISTILL_EXITS_H

#include <stddef.h>

#include "core/status.h"
#include "nn/model.h"

/* Most exits a run scores (the first ones, model by model). */
#define EXITS_MAX 16

/* "a, b or c": the names of m's exits (default head first) into buf. */
const char *exits_names(const nn_model *m, char *buf, size_t size);

/* The node of m's exit `name` into *node; XD_EARG naming file (the checkpoint m came from) and
 * the exits there are when m has no such node or the node is not a head. */
xd_status exits_find(const nn_model *m, const char *file, const char *name, int *node, xd_err *e);

#endif
