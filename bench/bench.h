/* Benchmark harness: repeated timing with medians, a table for people and JSON for machines.
 * Each suite measures a thing next to its baseline in the same run, at one or more thread counts. */
#ifndef XD_BENCH_H
#define XD_BENCH_H

#include <stdio.h>

#include "core/status.h"

typedef struct {
    double median, min, max; /* seconds per call */
    double cpu_median;       /* CPU seconds per call, all threads: on a shared machine, at one
                              * thread, the cost of a call without the waits for a free core */
    int reps;
} bench_time;

/* Calls fn(ctx) once to warm up, then repeatedly until min_seconds have passed and at least
 * min_reps samples were taken (at most max_reps); a sample is one call, or for calls shorter than
 * 50 us a group of calls lasting about that long (the clock's cost kept out of short calls'
 * times), its time divided by the group's calls. reps: the samples. */
bench_time bench_run(void (*fn)(void *ctx), void *ctx, double min_seconds, int min_reps,
                     int max_reps);

/* The samples of one measurement gathered over several rounds: a suite that compares several
 * measurements on a shared machine, whose speed drifts by tens of percent from one minute to the
 * next, takes them in turn, a round of each at a time, so that each is timed over the same spells. */
typedef struct {
    double *t, *cpu; /* seconds per call: wall, and CPU of all threads */
    int n, cap;
} bench_samples;

/* One round into s, as bench_run times it: a warm-up call, then samples until min_seconds have
 * passed and at least min_reps were taken, at most max_reps in this round. */
void bench_samples_run(bench_samples *s, void (*fn)(void *ctx), void *ctx, double min_seconds,
                       int min_reps, int max_reps);
/* The median, extremes and count of all the rounds' samples (zeros when there are none). */
bench_time bench_samples_time(const bench_samples *s);
void bench_samples_free(bench_samples *s);
double bench_now(void);
/* Sorts v (n > 0 values) in place and returns their median. */
double bench_median(double *v, int n);
/* Peak resident set size of this process so far, in MiB. */
double bench_max_rss_mib(void);

typedef struct {
    int json;          /* print JSON lines instead of a table */
    int threads[4];    /* thread counts to run at */
    int n_threads;
    double min_seconds;
    int quick;         /* a short check that a suite runs: few calls, figures that mean little */
    FILE *out;
    const char *model; /* --model: the exits suite's model (NULL: its default) */
} bench_opts;

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(const bench_opts *o);
} bench_suite;

int bench_gemm(const bench_opts *o);
int bench_data(const bench_opts *o);
int bench_train(const bench_opts *o);
int bench_distill(const bench_opts *o);
int bench_scale(const bench_opts *o);
int bench_infer(const bench_opts *o);
/* The infer suite's int8 rows alone. */
int bench_int8(const bench_opts *o);
int bench_zoo(const bench_opts *o);
int bench_exits(const bench_opts *o);
int bench_grow(const bench_opts *o);
/* The grow suite's steps, each run in a process of its own as `xdistill bench BENCH_GROW_CHILD
 * ...` (not in the help): argv from BENCH_GROW_CHILD on. */
#define BENCH_GROW_CHILD "--grow-child"
int bench_grow_child(int argc, char **argv);
/* The infer suite's int8 rows (bench/infer_int8.c), in its temporary folder tmp. */
int bench_infer_int8(const bench_opts *o, const char *tmp);
/* The int8 form of the float checkpoint ckpt, as `xdistill quantize` makes it (calibrated on
 * random inputs: speed does not depend on the values), written to out. */
xd_status bench_make_int8(const char *ckpt, const char *out, xd_err *e);
/* The checkpoint bench infer measures for a recipe (key names its files in tmp) into *ckpt (a new
 * string): the recipe's trained one (runs/NAME/seed-N/best.safetensors) when present, else one
 * with random weights written into tmp (*trained = 0). Also the model's input (h, w, c). */
xd_status bench_infer_model(const char *recipe_path, const char *key, const char *tmp, char **ckpt,
                            int *trained, int *h, int *w, int *c, xd_err *e);

/* Makes a new folder $TMPDIR/xdistill-bench-NAME.XXXXXX (TMPDIR unset: the system's) into out;
 * on failure prints the command's one-line error and returns 1. */
int bench_temp_dir(const char *name, char *out, size_t n);

/* The cost of handing data from one core to another, as two threads of this process see it: the
 * median round trip of a cache line between them (each thread writing it in turn), and the rates
 * at which one thread reads a 512 KiB block that the other has just written (its lines come from
 * the other core's cache) and one that it wrote itself (from its own). On a virtual machine these
 * follow where the host runs the two virtual cores, which may change from one minute to the next.
 * bench_handoff_measure: 0; or zeros and -1 where no team of two threads ran, -2 where a read did
 * not return what the other thread wrote. quick: a tenth of the round trips. */
typedef struct {
    double round_trip_ns;
    double other_gbs, own_gbs;
} bench_handoff;
int bench_handoff_measure(bench_handoff *h, int quick);

/* Prints the machine header (CPU, BLAS kernel, threads) once per run. */
void bench_header(const bench_opts *o);

#endif
