/* Optimizers, learning-rate schedules, weight decay and gradient clipping.
 *
 * A model keeps all its parameters in one flat float block and all gradients in another of the
 * same layout, so an optimizer step is one elementwise pass over n floats. A table of segments
 * (offset, count, decay) covers that block in order; segments with decay = 0 (biases, norm
 * scales and shifts) get no weight decay. The update rules follow PyTorch's torch.optim.SGD and
 * torch.optim.AdamW, and clipping follows torch.nn.utils.clip_grad_norm_, so numbers from a
 * PyTorch run carry over.
 *
 * The optimizer's state (moment buffers and step count) is a plain struct so that checkpoints can
 * save it and put it back. Schedules are pure functions of the step number: resuming a run needs
 * nothing but o->step.
 *
 * Configs can be filled from key=value words (a recipe's YAML mapping, a --set on the command
 * line) through a table of keys; an unknown key, a key that does not apply to the chosen kind, or
 * a bad value is an XD_EARG that names the key. */
#ifndef XD_NN_OPTIM_H
#define XD_NN_OPTIM_H

#include <stddef.h>

#include "core/status.h"

/* ---------------------------------------------------------------------------------------------
 * Parameter segments */

typedef struct {
    size_t offset, count; /* a range of the flat parameter block */
    int decay;            /* 0 = no weight decay (biases, norm scales/shifts) */
    int frozen;           /* 1 = not updated at all (a stage that trains part of a model) */
} nn_param_seg;

/* Checks that segs tile [0, n) in order, without gaps or overlaps (XD_ESHAPE naming the first
 * bad segment otherwise). n_segs == 0 is allowed: it means one segment with decay over all n. */
xd_status nn_param_segs_check(const nn_param_seg *segs, int n_segs, size_t n, xd_err *e);

/* ---------------------------------------------------------------------------------------------
 * Optimizers */

typedef enum { NN_OPT_SGD, NN_OPT_ADAMW, NN_OPT_COUNT } nn_opt_kind;

extern const char *const nn_opt_kind_names[]; /* NN_OPT_COUNT names: "sgd", "adamw" */

/* XD_EARG listing the valid names when name is not one of them. */
xd_status nn_opt_kind_from_name(const char *name, nn_opt_kind *out, xd_err *e);

typedef struct {
    nn_opt_kind kind;
    float lr;           /* base learning rate; schedules scale from it */
    float momentum;     /* sgd */
    float weight_decay; /* sgd: L2 added to the gradient; adamw: decoupled */
    float beta1, beta2; /* adamw */
    float eps;          /* adamw */
    int nesterov;       /* sgd, needs momentum > 0 */
    float clip_norm;    /* > 0: clip the global gradient L2 norm to this before each step */
} nn_opt_config;

/* PyTorch's defaults: sgd lr 1e-3, no momentum, no decay; adamw lr 1e-3, betas (0.9, 0.999),
 * eps 1e-8, weight decay 1e-2. No clipping. */
nn_opt_config nn_opt_defaults(nn_opt_kind kind);

/* Ranges and combinations (finite values, 0 <= beta < 1, nesterov only with momentum, ...). */
xd_status nn_opt_config_check(const nn_opt_config *cfg, xd_err *e);

typedef struct {
    nn_opt_config cfg;
    size_t n;       /* floats in the parameter block */
    float *m;       /* sgd: momentum buffer (NULL without momentum); adamw: first moment */
    float *v;       /* adamw: second moment; NULL for sgd */
    long step;      /* steps taken; the next step is number step + 1 (bias correction) */
    float grad_norm; /* global gradient norm before clipping, from the last step (0 if clip off) */
    /* The last step: a gradient it read (after clipping), or a parameter as it left it, is NaN,
     * infinite or above nn_norm_finite's bound for n values, which the step checks on its way
     * through them (a frozen segment's too). Where both are 0, nn_norm_finite would say 1 of the
     * gradients it read and of the parameters; otherwise the caller asks nn_norm_finite. */
    int grads_over, params_over;
} nn_optimizer;

/* Checks cfg and allocates zeroed state for n parameters. */
xd_status nn_opt_init(nn_optimizer *o, const nn_opt_config *cfg, size_t n, xd_err *e);
void nn_opt_free(nn_optimizer *o);
/* Back to the state of a fresh nn_opt_init (moments zero, step 0); keeps the config. */
void nn_opt_reset(nn_optimizer *o);

/* Global L2 norm, ||g||_2 = sqrt(sum g_i^2). Summed in double in fixed-size chunks combined in
 * order, so the result is bit-identical at any thread count. */
float nn_grad_norm(const float *g, size_t n);
/* Whether nn_grad_norm(g, n) is finite (no value is NaN or infinite, and the norm does not
 * overflow a float), in one pass of comparisons when every |g_i| is at most FLT_MAX / (2 sqrt(n)),
 * which bounds the norm by FLT_MAX / 2; otherwise by the norm itself. */
int nn_norm_finite(const float *g, size_t n);
/* That bound for n values: FLT_MAX / (2 sqrt(n)) (infinite for n = 0) */
float nn_norm_finite_bound(size_t n);

/* torch.nn.utils.clip_grad_norm_: c = max_norm / (||g||_2 + 1e-6); if c < 1: g *= c.
 * Returns the norm before clipping. max_norm <= 0 only measures. A non-finite norm is returned
 * as is and g is left untouched: the caller reports it (XD_ENUM) rather than train on it. */
float nn_clip_grad_norm(float *g, size_t n, float max_norm);

/* One step over params (n floats) with grads of the same layout, at learning rate lr (the one in
 * force, e.g. from nn_sched_lr; o->cfg.lr is only the base). segs must pass nn_param_segs_check
 * (an invariant of the model, asserted). When o->cfg.clip_norm > 0, grads are clipped in place
 * first and o->grad_norm holds the norm before clipping. Weight decay never writes into grads.
 *   sgd:   g = grad + wd*p;  buf = g (first step) else mu*buf + g;  g = nesterov ? g + mu*buf : buf;
 *          p -= lr*g
 *   adamw: p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
 *          p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
 * (weight decay only on decay segments.) o->grads_over and o->params_over tell whether the
 * gradients it read and the parameters it left need nn_norm_finite's check. */
void nn_opt_step(nn_optimizer *o, float *params, float *grads, const nn_param_seg *segs,
                 int n_segs, float lr);

/* ---------------------------------------------------------------------------------------------
 * Learning-rate schedules */

typedef enum {
    NN_SCHED_CONSTANT, /* base */
    NN_SCHED_STEP,     /* base * gamma^floor(t / step_size) */
    NN_SCHED_COSINE,   /* min + (base - min) * (1 + cos(pi * t / T)) / 2 */
    NN_SCHED_LINEAR,   /* min + (base - min) * (1 - t / T) */
    NN_SCHED_COUNT
} nn_sched_kind;

extern const char *const nn_sched_kind_names[]; /* NN_SCHED_COUNT: "constant", "step", ... */

xd_status nn_sched_kind_from_name(const char *name, nn_sched_kind *out, xd_err *e);

typedef struct {
    nn_sched_kind kind;
    float base_lr;
    long step_size;     /* step: steps between decays */
    float gamma;        /* step: factor per decay */
    long total_steps;   /* cosine, linear: steps of the whole run, warm-up included */
    float min_lr;       /* cosine, linear: the floor reached at total_steps */
    long warmup_steps;  /* all kinds: linear warm-up length (0 = none) */
    float warmup_start; /* all kinds: warm-up starts at base * warmup_start */
} nn_sched_config;

/* base_lr 1e-3, gamma 0.1, min_lr 0, no warm-up. step_size (step) and total_steps (cosine,
 * linear) are 0 and must be set: the check names them when they are missing. */
nn_sched_config nn_sched_defaults(nn_sched_kind kind);

xd_status nn_sched_config_check(const nn_sched_config *cfg, xd_err *e);

/* Learning rate for the step that follows `step` steps already taken (step counts from 0).
 * Warm-up, for t < W: base * (s + (1 - s) * t / W), s = warmup_start. After it the schedule runs
 * on t' = t - W, and T = total_steps - W; cosine and linear stay at min_lr from t' >= T on. */
float nn_sched_lr(const nn_sched_config *cfg, long step);

/* ---------------------------------------------------------------------------------------------
 * key=value configuration
 *
 * Optimizer keys: kind lr momentum weight_decay beta1 beta2 eps nesterov clip_norm.
 * Schedule keys:  kind base_lr step_size gamma total_steps min_lr warmup_steps warmup_start.
 * Setting "kind" resets every other field to that kind's defaults, so it must come first; a key
 * that the current kind does not use (momentum for adamw, gamma for cosine) is an error, so that
 * a misplaced setting never goes unnoticed. Numbers must be finite and in range; nesterov takes
 * 0/1/true/false. */

xd_status nn_opt_config_set(nn_opt_config *cfg, const char *key, const char *value, xd_err *e);
xd_status nn_sched_config_set(nn_sched_config *cfg, const char *key, const char *value,
                              xd_err *e);

/* A list of key=value words separated by commas or spaces ("kind=adamw,lr=3e-4"). A kind word
 * applies first wherever it stands; the other words apply in order. On error cfg may hold the
 * words before the bad one. */
xd_status nn_opt_config_parse(nn_opt_config *cfg, const char *text, xd_err *e);
xd_status nn_sched_config_parse(nn_sched_config *cfg, const char *text, xd_err *e);

/* Writes the config as key=value words that the parse functions read back to the same values
 * (only the keys its kind uses), for logs and checkpoint metadata. Returns the length that
 * snprintf would; the text is cut (and terminated) when it does not fit in size. */
int nn_opt_config_format(const nn_opt_config *cfg, char *buf, size_t size);
int nn_sched_config_format(const nn_sched_config *cfg, char *buf, size_t size);

#endif
