/* Magnitude pruning: masks that hold chosen weights of linear and conv2d layers at exactly zero.
 *
 * A pruned model is an ordinary model (nn/model.h) whose linear and conv2d layers carry the
 * `prune` flag: each such layer has a state entry "NAME.mask" of its weight's shape (1 = kept,
 * 0 = pruned; all 1 when built), saved like batch-norm statistics, so checkpoints and the resume
 * state hold the masks with nothing of their own. The masks change only at nn_prune_update; after
 * it and after every optimizer step nn_prune_apply sets the pruned weights, and their optimizer
 * moments, to zero, so a pruned weight neither moves nor drifts back through its momentum. The
 * forward pass needs no mask: what it reads is zero already.
 *
 * A schedule (nn_prune_plan) prunes in steps at the start of chosen epochs, the sparsity rising to
 * its target on the cubic ramp of Zhu & Gupta (2017), s_j = S * (1 - (1 - j / N)^3) at step
 * j = 1..N, so the early steps take most and the later ones, when fewer small weights are left,
 * take less. */
#ifndef XD_NN_PRUNE_H
#define XD_NN_PRUNE_H

#include "core/status.h"
#include "nn/model.h"
#include "nn/optim.h"

typedef enum {
    NN_PRUNE_LAYER,  /* each layer loses the same share of its weights */
    NN_PRUNE_GLOBAL, /* one magnitude threshold over all masked weights */
    NN_PRUNE_SCOPE_COUNT
} nn_prune_scope;

extern const char *const nn_prune_scope_names[]; /* "layer", "global" */

typedef struct {
    float sparsity;       /* the target share of pruned weights, in (0, 1); 0: no pruning */
    nn_prune_scope scope;
    int steps;            /* pruning steps, >= 1 */
    int start_epoch;      /* the first step at the start of this epoch (1-based) */
    int end_epoch;        /* the last step at the start of this one; steps spread evenly between */
} nn_prune_plan;

/* The sparsity to prune to at the start of epoch (0-based), or -1 when no step falls there. Step
 * j = 1..N comes at epoch start + round((j - 1) * (end - start) / (N - 1)) (start when N = 1);
 * N <= end - start + 1, so no two steps share an epoch. */
float nn_prune_at(const nn_prune_plan *p, int epoch);

/* The description with the `prune` flag on every linear and conv2d layer (a new string in *out);
 * parameter names stay, so a checkpoint without masks loads into it by name. */
xd_status nn_prune_desc(const char *desc, char **out, xd_err *e);
/* Whether any layer of m carries a mask. */
int nn_prune_model_has(const nn_model *m);

/* New masks: the round(sparsity * n) weights of smallest magnitude are pruned, n counting each
 * layer's weights (scope layer) or all masked weights (global); weights pruned already come
 * first, so masks only grow while the sparsity does. Ties go to the earlier weight (in layer and
 * then element order), so the count is exact. Pruned weights become zero. */
void nn_prune_update(nn_model *m, float sparsity, nn_prune_scope scope);
/* Pruned weights to zero, and with o (its state covering m's parameter block) their moments. */
void nn_prune_apply(nn_model *m, nn_optimizer *o);
/* The share of masked weights that are pruned (0 when m has no mask). */
double nn_prune_sparsity(const nn_model *m);

/* Structured pruning: into out (built for batches of max_batch), src without round(fraction *
 * OC) of the output channels (at least one kept) of each conv2d whose channels can go, those of
 * smallest filter L1 norm (sum of |w| over the filter; ties go to the later channel). A conv2d's
 * channels can go when its output reaches, through nodes that work channel by channel (relu and
 * the other activations, pooling, gap, batchnorm, dropout, upsample, fakequant) or a flatten, one
 * conv2d or linear and nothing else (no head, tap that is read twice, add or layernorm on the
 * way). That reader loses the matching input weights, a batchnorm on the way those channels'
 * parameters and statistics; all else is copied by name. out computes what src computes with the
 * reader's weights of the removed channels set to zero. *n_pruned gets the number of conv2d
 * layers that shrank. */
xd_status nn_prune_channels(nn_model *out, const nn_model *src, float fraction, int max_batch,
                            int *n_pruned, xd_err *e);

#endif
