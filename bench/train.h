/* The training workload the `train`, `distill` and `scale` suites share.
 *
 * Two models of the Fashion-MNIST recipes, described as text like the recipes do (the teacher CNN
 * of recipes/fashion/teacher.yaml and the 784-128-10 MLP student), a pool of training images, and
 * one training step: forward, loss, backward, AdamW (lr 1e-3, no weight decay, as the recipes).
 * The pool holds the first BENCH_POOL images of the prepared Fashion-MNIST set when
 * BENCH_DATA_PATH exists, else random pixels of the same shape (and the suites say so). Images
 * are converted to floats (x/255) once, before timing, so a step measures the model and not the
 * input pipeline; the peer script (bench/peer.py) does the same for PyTorch. */
#ifndef XD_BENCH_TRAIN_H
#define XD_BENCH_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "nn/model.h"
#include "nn/optim.h"

#define BENCH_TEACHER_DESC                                                                     \
    "input h=28 w=28 c=1; conv2d name=conv1 out=32 k=3 pad=1; relu; maxpool k=2; "               \
    "conv2d name=conv2 out=64 k=3 pad=1; relu name=map; maxpool k=2; flatten; "                 \
    "linear name=fc1 out=128; relu name=feat; linear name=logits out=10 head"
#define BENCH_STUDENT_DESC                                                                     \
    "input h=28 w=28 c=1; flatten; linear name=fc1 out=128; relu name=feat; "                    \
    "linear name=logits out=10 head"

/* Where `xdistill prepare fashion-mnist --out data/fashion-mnist` puts the set. */
#define BENCH_DATA_PATH "data/fashion-mnist/dataset.xds"

enum {
    BENCH_POOL = 4096,    /* images kept for timing (the batch cycles through them) */
    BENCH_EPOCH = 60000,  /* Fashion-MNIST training images: one epoch */
    BENCH_PIXELS = 784,   /* 28 x 28 x 1 */
    BENCH_CLASSES = 10
};

typedef struct {
    float *x;   /* (n, 784) pixels / 255 */
    int32_t *y; /* (n) labels 0..9 */
    int n;
    int real;   /* 1: Fashion-MNIST training images; 0: random pixels and labels */
} bench_images;

/* Loads the pool from BENCH_DATA_PATH, or random data when the file does not exist. A file that
 * exists but is not a usable Fashion-MNIST set is an error (e names the file and the reason). */
/* bench_images_load for a suite: prints the error as the command's one line and returns 1, or 0. */
int bench_images_open(bench_images *d);
xd_status bench_images_load(bench_images *d, xd_err *e);
void bench_images_free(bench_images *d);
/* "fashion-mnist" or "random" (for JSON), and a sentence for tables. */
const char *bench_images_kind(const bench_images *d);
void bench_images_note(const bench_images *d, FILE *out);

typedef enum {
    BENCH_LOSS_CE,        /* cross-entropy on the labels */
    BENCH_LOSS_KD_ONLINE, /* Hinton KD (alpha 0.9, T 4) with a teacher forward every step */
    BENCH_LOSS_KD_CACHED, /* the same loss with teacher logits read from a precomputed array */
    BENCH_LOSS_COUNT
} bench_loss;

typedef struct {
    nn_model m;
    nn_optimizer opt;
    int head, K;
    int B;                    /* batch size of the next step (<= m.max_batch) */
    const bench_images *data;
    bench_loss loss;
    nn_model *teacher;        /* KD online: the teacher, in eval mode */
    int teacher_head;
    const float *cache;       /* KD cached: (data->n, K) teacher logits */
    float *probs, *ps, *q;    /* (max_batch, K) softmax, softened softmax, soft targets */
    int next;                 /* first pool row of the next batch */
    long step;
    double loss_sum;          /* sum of step losses, to check the run stays finite */
} bench_trainer;

/* Builds desc for batches up to max_batch (parameters seeded), an AdamW optimizer and buffers;
 * loss CE, batch max_batch. */
xd_status bench_trainer_make(bench_trainer *t, const char *desc, int max_batch,
                             const bench_images *d, xd_err *e);
void bench_trainer_free(bench_trainer *t);
/* One training step on the next t->B pool images (a bench_run callback; ctx is a bench_trainer). */
void bench_train_step(void *ctx);
/* Forward of the teacher alone on the next batch (ctx is a bench_trainer whose m is the teacher),
 * as the teacher-output cache runs it: the inference engine when m is packed (with bf16 products
 * when m.eval_precision is bf16: a teacher with precision: bf16), else the eval forward. */
void bench_forward_step(void *ctx);

/* Resident set now, in MiB; and a reset of the process's peak (Linux clear_refs "5") so that
 * bench_max_rss_mib measures from here on. Returns 0 when the reset worked. */
double bench_rss_now_mib(void);
int bench_rss_reset_peak(void);

#endif
