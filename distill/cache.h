/* Teacher-output cache: the teacher's outputs for every example of a dataset split, computed once
 * and stored as .npy files beside the dataset, so that offline distillation runs (and repeated
 * runs with other students or seeds) do not run the teacher again.
 *
 * What is stored (files in the cache folder, "<dataset folder>/cache" unless set otherwise):
 *   <key>.logits.npy     f32 (n, K)              all outputs of the head (topk == 0)
 *   <key>.topk_val.npy   f32 (n, k)              or the k largest, in descending order, ties to
 *   <key>.topk_idx.npy   i32 (n, k)                the lower class index, with their classes and
 *   <key>.topk_rest.npy  f32 (n)                   the log-mean-exp of the K - k dropped logits
 *                                                  (the smallest kept logit when k == K); these
 *                                                  feed kd_topk_targets (distill/kd.h)
 *   <key>.feat_<tap>.npy f32 (n, C) or (n, H, W, C)  optionally one tapped node's output
 *   <key>.sum            text: format line, key, then one line per array with its data size and
 *                        FNV-1a 64 hash; written last, so it marks a complete set
 * Head outputs of a dense head keep their (n, H, W, C) shape too; top-k needs a (B, K) head.
 *
 * The key: 16 hex digits of FNV-1a 64 over, each field as a tag byte, a u64 length and its bytes:
 * a format string; the teacher as it is in memory (its canonical description, every parameter
 * and every state value such as batch-norm running statistics; that is exactly what decides its
 * outputs, and it needs no checkpoint file); the dataset file's identity (its base name, size and
 * modification time in nanoseconds, and its metadata pairs); the split, the view, n, the head's
 * name, k and the tap's name (with a tap, or a head the model does not mark, a note that the
 * engine keeps their rows whole); and for a teacher whose forwards run bf16 products
 * (nn_model.eval_precision, a recipe teacher's `precision: bf16`) that precision's name, the
 * bf16 kernel's (each sums in its own order) and how its 3 x 3 convolutions run
 * (nn_bwino_eval_convolutions: Winograd's and a first layer's by pairs, or the direct product);
 * for a float32 teacher how its 3 x 3 convolutions run (nn_wino_eval_convolutions: Winograd's in
 * float32, and its version). Any change there gives another key, so stale files are
 * never read (they stay in the folder for other teachers; delete the folder to reclaim the
 * space).
 *
 * Loading never trusts the files: each must open as a valid .npy, have exactly the expected dtype
 * and shape, match the data hash in <key>.sum, hold only finite values and (top-k) distinct class
 * indices in [0, K) in the stored order. A file that fails any check makes the whole set be
 * rebuilt, and the result says so (rebuilt = 1, warning = why), for the caller to print. A missing
 * <key>.sum (first run, or a build that was interrupted) is a plain build, without a warning.
 *
 * Building runs the teacher in eval mode (the inference engine with the eval forward's bits, its
 * head and tap marked heads for the while; nn_model_forward with run == NULL for a packed teacher
 * or one with an int8 engine) over the examples in order, in batches of the teacher's max_batch;
 * the caller owns data loading and fills each batch through a callback. Every file is written
 * through io_atomic. The arrays are assembled in memory before writing (n * (K + feature size)
 * floats). */
#ifndef XD_DISTILL_CACHE_H
#define XD_DISTILL_CACHE_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "core/status.h"
#include "io/dataset.h"
#include "io/npy.h"
#include "nn/model.h"

typedef enum {
    KD_PART_LOGITS,
    KD_PART_TOPK_VAL,
    KD_PART_TOPK_IDX,
    KD_PART_TOPK_REST,
    KD_PART_FEAT,
    KD_PART_COUNT
} kd_cache_part;

/* File-name part of each array ("logits", ..., "feat" + "_<tap>"). */
const char *kd_cache_part_name(kd_cache_part p);

typedef struct {
    const char *dataset_path; /* the dataset container the examples come from (its identity) */
    const io_dataset *dataset;/* that container as the fill reads it, open (its identity as it was
                               * mapped; NULL: dataset_path's as it is now) */
    const char *augment;      /* the options the teacher's inputs are made with (data.augment and */
    const char *text;         /* data.text as its feed takes them; NULL: none) */
    const char *cache_dir;    /* NULL: "cache" in the dataset's folder (created when missing) */
    const char *split;        /* e.g. "train" */
    const char *view;         /* the view the teacher sees, e.g. "image" or "text.en" */
    size_t n;                 /* examples in the split */
    const char *head;         /* teacher node giving the logits; NULL: its default head */
    int topk;                 /* 0: keep all K outputs; 1..K: keep the k largest */
    const char *tap;          /* teacher node whose output is stored too; NULL: none */
    FILE *log;                /* where to say that the cache is being built; NULL: silent */
} kd_cache_spec;

/* Fills input with the teacher's input for examples [i0, i1) of the split, in order: float
 * (i1 - i0, h, w, c) or int32 (i1 - i0, tokens), as the teacher's `input` says. A non-OK status
 * stops the build and is returned as it is. */
typedef xd_status (*kd_cache_fill_fn)(void *ctx, size_t i0, size_t i1, void *input, xd_err *e);

typedef struct {
    char key[17];
    size_t n;
    int K;                    /* outputs of the head per example */
    int k;                    /* kept per example in top-k mode (0 when all are kept) */
    const float *logits;      /* (n, K) when topk == 0, else NULL */
    const float *topk_val;    /* (n, k) in top-k mode, else NULL */
    const int32_t *topk_idx;  /* (n, k) */
    const float *topk_rest;   /* (n) */
    const float *feat;        /* (n, feat_dim) when a tap was asked for, else NULL */
    size_t feat_dim;
    int built;                /* 1: computed in this call; 0: read from the files */
    int rebuilt;              /* 1: files for this key were there but bad, and were replaced */
    char warning[XD_ERR_LEN]; /* when rebuilt: what was wrong, naming the file */
    char *path[KD_PART_COUNT];/* the file of each array in use (NULL otherwise) */
    char *sum_path;
    io_npy file[KD_PART_COUNT];
} kd_cache;

/* The 16-hex-digit key (NUL-terminated) of spec with this teacher. */
xd_status kd_cache_key(const kd_cache_spec *spec, const nn_model *teacher, char key[17],
                       xd_err *e);

/* Loads the cache for spec, or builds it with the teacher (input from fill) when it is missing or
 * bad; fill may be NULL to only load (XD_EARG when there is nothing valid to load). On success c
 * holds read-only views of the mapped files; close it with kd_cache_close. On failure c is left
 * empty (closing it is safe). */
xd_status kd_cache_load_or_build(const kd_cache_spec *spec, nn_model *teacher,
                                 kd_cache_fill_fn fill, void *ctx, kd_cache *c, xd_err *e);
void kd_cache_close(kd_cache *c);

#endif
