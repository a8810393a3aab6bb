/* Process set-up: the OpenBLAS kernel, thread counts, version.
 *
 * Debian's OpenBLAS 0.3.21 picks its kernel when it loads and does not know some newer AVX-512
 * CPUs; it then falls back to old SSE3 "Prescott" kernels, about 4x slower. OPENBLAS_CORETYPE
 * fixes that, but only if it is set before the library loads. So xd_runtime_init, called first in
 * main(), looks at the CPU and at the kernel the library chose; when the CPU can do much better it
 * sets OPENBLAS_CORETYPE and re-executes the program once (the library is then loaded afresh).
 *
 * A user's own OPENBLAS_CORETYPE always wins; XDISTILL_BLAS=keep turns the choice off. */
#ifndef XD_CORE_RUNTIME_H
#define XD_CORE_RUNTIME_H

#define XD_VERSION "0.1.0"

typedef struct {
    int avx2_fma;   /* AVX2 and FMA */
    int avx512;     /* AVX-512 F, BW, DQ and VL */
} xd_cpu_caps;

/* Pure decision, testable on any machine: given the user's OPENBLAS_CORETYPE (NULL if unset), the
 * kernel the library picked and the CPU, return the coretype to switch to, or NULL to keep. */
const char *xd_blas_choose(const char *user_coretype, const char *lib_kernel, xd_cpu_caps caps);

xd_cpu_caps xd_cpu_detect(void);

/* May re-execute the program (never returns then). argv must be main's argv. */
void xd_runtime_init(int argc, char **argv);

/* e.g. "SkylakeX (chosen by xdistill for this AVX-512 CPU)" */
const char *xd_blas_kernel(void);
const char *xd_blas_source(void);
const char *xd_blas_config(void);
/* When the user's OPENBLAS_CORETYPE holds back a kernel this CPU could run faster, the name of
 * that faster kernel (for a note to the user); else NULL. */
const char *xd_blas_better(void);

/* Sets our OpenMP thread count and keeps OpenBLAS single-threaded (GEMMs are split over our
 * threads by nn_sgemm), so the two never oversubscribe the cores. n <= 0 means all cores.
 * Returns the count in force. xd_runtime_init applies it once with OpenMP's default. */
int xd_threads_set(int n);
int xd_threads_get(void);
/* Whether a loop that would be split over threads when big is set would get more than one: more
 * than one thread to run it, and not inside a region that already uses the levels of parallelism
 * allowed. A loop that gets one runs without a parallel region: entering one costs microseconds
 * even when its if clause is false (more when nested), as much as a small layer's work. */
int xd_threads_split(int big);
/* Whether the caller runs in a team of more than one thread (an active parallel region), where a
 * work-sharing loop would be split among that team's threads */
int xd_threads_in_team(void);
/* fn(ctx, t) for t = 0 .. T - 1: shared among a team of up to T threads when T > 1 (one t each
 * when the team is whole; fn keys its scratch by t, never by the thread's number), on the calling
 * thread without a parallel region when T is 1 (see xd_threads_split: inference would pay a
 * region's entry per image). */
void xd_threads_each(int T, void (*fn)(void *ctx, int t), void *ctx);
/* The calling thread's number in its team, and the team's size (0 and 1 outside a parallel
 * region, or without OpenMP) */
int xd_thread_num(void);
int xd_team_size(void);
/* Items 0 .. n - 1 shared among a team of T threads in runs: run g holds the consecutive items
 * g * n / T .. (g + 1) * n / T - 1, and its counter (set by xd_runs_init) is the first of them not
 * yet taken. xd_runs_take gives thread t of the team the next item to do, or -1 when none is left:
 * the items of its own run first, in order (a core keeps the items it had the call before), then
 * those of the other runs that no thread has begun. A thread that runs slower (its core shared
 * with other work) thus finds its run's last items done by the others instead of holding up the
 * call with them. *k starts at 0 and is the thread's own; every thread goes through all T runs,
 * so every item is done whatever the team's size. Each counter has a cache line of its own, so
 * that a thread taking from its own run does not take the line from the others' cores; up to
 * XD_RUNS_ROOM runs they are in the struct (on the caller's stack), more on the heap until
 * xd_runs_free. */
enum { XD_RUNS_ROOM = 8 };
typedef struct {
    _Alignas(64) int next;
} xd_run_counter;
typedef struct {
    int T, n;
    xd_run_counter *heap; /* the counters past XD_RUNS_ROOM runs, or NULL */
    xd_run_counter room[XD_RUNS_ROOM];
} xd_runs;
void xd_runs_init(xd_runs *r, int T, int n);
int xd_runs_take(xd_runs *r, int t, int *k);
void xd_runs_free(xd_runs *r);

#endif
