/* Shared helpers for the cmocka tests: temporary files, float comparison, finite differences. */
#ifndef XD_TESTUTIL_H
#define XD_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/types.h>

#include "core/status.h"
#include "nn/gemm_bf16.h"

/* Writes bytes to path (in the test's temporary working folder); fails the test on error. */
void tu_write_file(const char *path, const void *data, size_t n);
/* Writes the string s (without its terminating zero) to path; fails the test on error. */
void tu_write_text(const char *path, const char *s);
/* Whether path names a file or folder. */
int tu_exists(const char *path);
/* Fails the test if name, or name followed by a dot and anything (a leftover temporary), stands
 * in folder dir: what a failed command must not leave behind. */
void tu_assert_nothing_left(const char *dir, const char *name);
/* Limits the files this process writes to `bytes` (SIGXFSZ ignored, so a write past the limit
 * fails with EFBIG, as one on a full disk fails with ENOSPC); bytes < 0 restores what held
 * before. */
void tu_limit_file_size(long bytes);
/* Reads a whole file; caller frees. Fails the test on error. */
void *tu_read_file(const char *path, size_t *n);
/* src copied to dst byte for byte. Fails the test on error. */
void tu_copy_file(const char *src, const char *dst);

/* The model of description desc (max_batch, seed) saved as a checkpoint at path, without
 * metadata; fails the test on any error. */
void tu_save_model(const char *path, const char *desc, int max_batch, uint64_t seed);
/* Rewrites the safetensors file src (a checkpoint) to dst with metadata key set to value (NULL:
 * left out), the tensors as they are. */
void tu_rewrite_meta(const char *src, const char *dst, const char *key, const char *value);
/* Rewrites the safetensors file src to dst with value at index i of its F32 tensor `name` (every
 * index for TU_ALL), the checksums recomputed (as whoever crafts a file can). */
#define TU_ALL SIZE_MAX
void tu_rewrite_value(const char *src, const char *dst, const char *name, size_t i, float value);

/* 1 when the two files hold the same bytes. */
int tu_same_file(const char *a, const char *b);

/* Fails the test unless |got - want| <= tol, naming what. */
void tu_assert_near(double got, double want, double tol, const char *what);
/* Asserts |a - b| <= atol + rtol * |b| elementwise, printing the first mismatch. */
void tu_assert_close(const float *a, const float *b, size_t n, double rtol, double atol,
                     const char *what);
/* Asserts a status is XD_OK, printing the expression and the status when not (the message is
 * in the xd_err the expression filled). */
#define TU_OK(expr)                                                                             \
    do {                                                                                        \
        xd_status tu_s_ = (expr);                                                               \
        if (tu_s_ != XD_OK) fail_msg("%s failed with status %d", #expr, (int)tu_s_);            \
    } while (0)
/* Asserts that err holds the code and that its message contains each of the given substrings. */
void tu_assert_err(const xd_err *e, xd_status code, const char *substr);

/* printf into a new string (free it); fails the test when out of memory. */
char *tu_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* Path to a file under the source tree (XDISTILL_ROOT, set by the test runner, else "."). */
const char *tu_src_path(const char *rel);

/* Signal tests. tu_fork_ready forks a child that runs work(ctx, ready_fd) with sig at its default
 * action (the test runner may start us with it ignored, and an ignored signal is left alone);
 * work calls tu_ready_wait(ready_fd) where the signal should find it. Returns the child's pid once
 * it is there; a child that ends before fails the test. tu_kill_check sends sig and checks that
 * the child died by it. */
pid_t tu_fork_ready(int sig, void (*work)(void *ctx, int ready_fd), void *ctx);
_Noreturn void tu_ready_wait(int ready_fd);
void tu_kill_check(pid_t pid, int sig);

#endif

/* ---- finite differences ----
 * Central-difference check of an analytic gradient: for each x[i], perturbs by +-h, evaluates
 * loss(ctx) (a scalar, summed in double by the caller) and compares (L+ - L-)/2h with analytic[i]:
 * |a - n| <= atol + rtol * max(|a|, |n|). Fails the test naming `what` and the index. */
void tu_check_grad(const char *what, float *x, size_t n, const float *analytic,
                   double (*loss)(void *ctx), void *ctx, double h, double rtol, double atol);
/* The files in dir whose names end with suffix (0 when dir does not exist). */
int tu_count_files(const char *dir, const char *suffix);
/* Fills x with uniform values in [lo, hi) from a fixed test seed. */
void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
/* sum_i out[i] * r[i] in double: the scalar whose gradient w.r.t. out is r. */
double tu_dot(const float *out, const float *r, size_t n);
/* The derivative of loss(ctx) along direction d of x (n values, restored after), by central
 * differences of step h. */
double tu_fd_along(double (*loss)(void *ctx), void *ctx, float *x, size_t n, const float *d,
                   double h);
/* The bf16 kernels of kernels (n of them) that run here, in turn: each chosen (nn_bgemm_use) and
 * its name in *name; 0 after the last, with the best chosen again. Start with *i = 0. */
int tu_next_bisa(int *i, const nn_bisa *kernels, int n, const char **name);
