/* Process set-up (see runtime.h). */
#include "core/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/mem.h"

/* OpenBLAS's own extensions (declared in its cblas.h; repeated here so this file needs no BLAS
 * header). */
char *openblas_get_corename(void);
char *openblas_get_config(void);
void openblas_set_num_threads(int n);

#define REEXEC_MARK "XDISTILL_BLAS_CHOSEN"

static int name_in(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(name, *list) == 0) return 1;
    return 0;
}

const char *xd_blas_choose(const char *user_coretype, const char *lib_kernel, xd_cpu_caps caps)
{
    static const char *const avx512_kernels[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2_kernels[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                               "SapphireRapids", NULL};
    if (user_coretype && *user_coretype) return NULL; /* the user decided */
    if (!lib_kernel) return NULL;
    if (caps.avx512 && !name_in(lib_kernel, avx512_kernels)) return "SkylakeX";
    if (caps.avx2_fma && !name_in(lib_kernel, avx2_kernels)) return "Haswell";
    return NULL;
}

xd_cpu_caps xd_cpu_detect(void)
{
    xd_cpu_caps c = {0, 0};
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    c.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    c.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    return c;
}

static char kernel_desc[160];
static const char *kernel_source = "library default";

void xd_runtime_init(int argc, char **argv)
{
    (void)argc;
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *keep = getenv("XDISTILL_BLAS");
    const char *mark = getenv(REEXEC_MARK);
    if (mark) {
        kernel_source = "chosen by xdistill for this CPU";
    } else if (user && *user) {
        kernel_source = "set by OPENBLAS_CORETYPE";
    } else if (!(keep && strcmp(keep, "keep") == 0)) {
        const char *choice = xd_blas_choose(user, openblas_get_corename(), xd_cpu_detect());
        if (choice) {
            setenv("OPENBLAS_CORETYPE", choice, 1);
            setenv(REEXEC_MARK, choice, 1);
            fflush(NULL);
            execv("/proc/self/exe", argv);
            /* exec failed (no /proc?): go on with the library's own choice */
            unsetenv("OPENBLAS_CORETYPE");
            unsetenv(REEXEC_MARK);
        }
    }
    snprintf(kernel_desc, sizeof kernel_desc, "%s", openblas_get_corename());
    xd_threads_set(xd_threads_get());
}

const char *xd_blas_kernel(void)
{
    if (!kernel_desc[0]) snprintf(kernel_desc, sizeof kernel_desc, "%s", openblas_get_corename());
    return kernel_desc;
}

const char *xd_blas_source(void) { return kernel_source; }

const char *xd_blas_config(void) { return openblas_get_config(); }

const char *xd_blas_better(void)
{
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (!user || !*user || getenv(REEXEC_MARK)) return NULL;
    /* what would be chosen if the library had picked the user's kernel by itself */
    return xd_blas_choose(NULL, xd_blas_kernel(), xd_cpu_detect());
}

int xd_threads_set(int n)
{
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    /* Training's products do not go through OpenBLAS (nn/gemm.c spreads them over our threads).
     * OpenBLAS's OpenMP build sizes its team from the OpenMP count at each call made outside a
     * parallel region (the decompositions, the benchmark baseline); its own count is set to one
     * first, since in that build it also sets the OpenMP count. */
    openblas_set_num_threads(1);
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    n = 1;
#endif
    return n;
}

int xd_threads_get(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int xd_threads_split(int big)
{
#ifdef _OPENMP
    return big && omp_get_max_threads() > 1 &&
           omp_get_active_level() < omp_get_max_active_levels();
#else
    (void)big;
    return 0;
#endif
}

int xd_threads_in_team(void)
{
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

void xd_threads_each(int T, void (*fn)(void *ctx, int t), void *ctx)
{
    if (T <= 1) {
        if (T == 1) fn(ctx, 0);
        return;
    }
#pragma omp parallel for schedule(static, 1) num_threads(T)
    for (int t = 0; t < T; t++) fn(ctx, t);
}

int xd_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int xd_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static int run_start(int g, int T, int n) { return (int)((long long)n * g / T); }

static xd_run_counter *run_counters(xd_runs *r) { return r->heap ? r->heap : r->room; }

void xd_runs_init(xd_runs *r, int T, int n)
{
    r->T = T;
    r->n = n;
    r->heap = T > XD_RUNS_ROOM ? xd_xmalloc_aligned(sizeof *r->heap * (size_t)T) : NULL;
    xd_run_counter *c = run_counters(r);
    for (int g = 0; g < T; g++) c[g].next = run_start(g, T, n);
}

int xd_runs_take(xd_runs *r, int t, int *k)
{
    xd_run_counter *runs = run_counters(r);
    for (; *k < r->T; ++*k) {
        const int g = (t + *k) % r->T;
        int c;
#pragma omp atomic capture
        c = runs[g].next++;
        if (c < run_start(g + 1, r->T, r->n)) return c;
    }
    return -1;
}

void xd_runs_free(xd_runs *r)
{
    free(r->heap);
    r->heap = NULL;
}
