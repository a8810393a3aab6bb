/* `xdistill bench`: the harness and the suite table (see bench.h). */
#include "bench/bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "core/dist.h"
#include "core/mem.h"
#include "core/runtime.h"
#include "nn/gemm.h"

static const bench_suite suites[] = {
    {"gemm", "the cores' FMA peak; cblas_sgemm at the Fashion-MNIST teacher's shapes vs our conv2d/linear forward+backward, float32 and bf16; conv2 by Winograd's (products, forward)",
     bench_gemm},
    {"data", "PNG decode, batch assembly, fashion scenes and prepare emoji at 1 and more threads", bench_data},
    {"train", "teacher CNN and MLP student training step: s/epoch, images/s, speed-up, the "
              "cores' capacity and handoff, memory", bench_train},
    {"distill", "MLP student: CE step vs KD with the teacher online vs KD from cached logits", bench_distill},
    {"scale", "teacher CNN training step images/s at batch 32 to 512 (under mpirun: over the ranks)", bench_scale},
    {"infer", "predict's engine vs ONNX Runtime, float and int8 students, batch 1 and 64; then float vs int8", bench_infer},
    {"int8", "infer's last rows alone: float vs int8 vs channel-pruned students at 1 thread", bench_int8},
    {"zoo", "standard methods (DKD ... CRD): ms per call, value and gradient, at batch 128", bench_zoo},
    {"exits", "forward per image at each early exit of a model vs the whole model, batch 1 and 64",
     bench_exits},
    {"grow", "10^4 to 10^6 synthetic examples: prepare, one epoch, us/example, peak memory; "
             "step vs batch and width", bench_grow},
};

static double clock_seconds(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double bench_now(void) { return clock_seconds(CLOCK_MONOTONIC); }

static double median_sorted(const double *t, int n)
{
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return median_sorted(v, n);
}

void bench_samples_run(bench_samples *s, void (*fn)(void *ctx), void *ctx, double min_seconds,
                       int min_reps, int max_reps)
{
    /* A call shorter than BENCH_SAMPLE_MIN is timed in groups of calls lasting about that long
     * (the warm-up call's time decides how many): reading a clock here costs a microsecond or
     * more (a system call), which would otherwise count in every short call's time. */
    static const double BENCH_SAMPLE_MIN = 50e-6;
    if (s->cap < s->n + max_reps) {
        s->cap = s->n + max_reps;
        s->t = xd_xrealloc(s->t, sizeof(double) * (size_t)s->cap);
        s->cpu = xd_xrealloc(s->cpu, sizeof(double) * (size_t)s->cap);
    }
    const double w0 = bench_now();
    fn(ctx);
    const double warm = bench_now() - w0;
    const int group = warm >= BENCH_SAMPLE_MIN ? 1
                      : warm <= BENCH_SAMPLE_MIN / 64 ? 64
                                                       : (int)(BENCH_SAMPLE_MIN / warm) + 1;
    int n = 0;
    double start = bench_now();
    while (n < max_reps && (n < min_reps || bench_now() - start < min_seconds)) {
        /* the wall interval inside the CPU one: reading the process's CPU clock is the slower
         * system call */
        const double c0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID), t0 = bench_now();
        for (int g = 0; g < group; g++) fn(ctx);
        s->t[s->n] = (bench_now() - t0) / group;
        s->cpu[s->n++] = (clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0) / group;
        n++;
    }
}

bench_time bench_samples_time(const bench_samples *s)
{
    bench_time r = {0};
    if (s->n == 0) return r;
    double *t = xd_xmalloc(sizeof(double) * (size_t)s->n);
    double *cpu = xd_xmalloc(sizeof(double) * (size_t)s->n);
    memcpy(t, s->t, sizeof(double) * (size_t)s->n);
    memcpy(cpu, s->cpu, sizeof(double) * (size_t)s->n);
    qsort(t, (size_t)s->n, sizeof(double), cmp_double);
    qsort(cpu, (size_t)s->n, sizeof(double), cmp_double);
    r = (bench_time){.median = median_sorted(t, s->n), .min = t[0], .max = t[s->n - 1],
                     .cpu_median = median_sorted(cpu, s->n), .reps = s->n};
    free(t);
    free(cpu);
    return r;
}

void bench_samples_free(bench_samples *s)
{
    free(s->t);
    free(s->cpu);
    memset(s, 0, sizeof *s);
}

bench_time bench_run(void (*fn)(void *ctx), void *ctx, double min_seconds, int min_reps,
                     int max_reps)
{
    bench_samples s = {0};
    bench_samples_run(&s, fn, ctx, min_seconds, min_reps, max_reps);
    const bench_time r = bench_samples_time(&s);
    bench_samples_free(&s);
    return r;
}

int bench_temp_dir(const char *name, char *out, size_t n)
{
    const char *td = getenv("TMPDIR");
    snprintf(out, n, "%s/xdistill-bench-%s.XXXXXX", td && *td ? td : P_tmpdir, name);
    if (mkdtemp(out)) return 0;
    fprintf(stderr, "xdistill bench: cannot make a temporary folder %s: %s\n", out,
            strerror(errno));
    return 1;
}

double bench_max_rss_mib(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / 1024.0;
}

static void cpu_name(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = '\0';
                snprintf(buf, n, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

void bench_header(const bench_opts *o)
{
    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    if (o->json)
        fprintf(o->out,
                "{\"machine\":{\"cpu\":\"%s\",\"gemm_kernel\":\"%s\",\"blas_kernel\":\"%s\","
                "\"blas_source\":\"%s\"}}\n",
                cpu, nn_sgemm_kernel(), xd_blas_kernel(), xd_blas_source());
    else
        fprintf(o->out, "machine: %s; our products: %s; OpenBLAS kernel %s (%s)%s\n", cpu,
                nn_sgemm_kernel(), xd_blas_kernel(), xd_blas_source(),
                xd_blas_better() ? "; this CPU could run a faster one (unset OPENBLAS_CORETYPE)"
                                 : "");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: xdistill bench [SUITE ...] [--threads 1,2] [--json] [--seconds S]\n"
               "                      [--model M] [--quick]\n\n"
               "Measures speed, each figure next to its baseline in the same run; medians of\n"
               "repeated runs with min and max. Suites (default: all):\n");
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++)
        fprintf(f, "  %-8s %s\n", suites[i].name, suites[i].summary);
    fprintf(f, "\noptions:\n"
               "  --threads LIST  thread counts to run at (default 1 and all cores)\n"
               "  --json          one JSON object per line instead of a table\n"
               "  --seconds S     minimum time per measurement (default 0.5)\n"
               "  --model M       the exits suite's model: a checkpoint or a model description\n"
               "                  file (default recipes/byot/cnn-exits.model)\n"
               "  --quick         a few short calls per measurement: checks that the suites run\n"
               "                  (their figures mean little)\n");
}

int cmd_bench(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], BENCH_GROW_CHILD) == 0)
        return bench_grow_child(argc - 1, argv + 1);
    bench_opts o = {.json = 0, .min_seconds = 0.5, .out = stdout};
    int all = xd_threads_set(0);
    o.threads[o.n_threads++] = 1;
    if (all > 1) o.threads[o.n_threads++] = all;
    const bench_suite *chosen[16];
    int n_chosen = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            o.json = 1;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            o.n_threads = 0;
            char *s = argv[++i], *end;
            while (*s && o.n_threads < 4) {
                long v = strtol(s, &end, 10);
                if (end == s || v < 1 || v > 1024)
                    return cli_usage_error("bench", "--threads takes a list like 1,2");
                o.threads[o.n_threads++] = (int)v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') return cli_usage_error("bench", "--threads takes a list like 1,2");
            }
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            char *end;
            o.min_seconds = strtod(argv[++i], &end);
            if (*end || !(o.min_seconds > 0.0 && o.min_seconds < 600.0))
                return cli_usage_error("bench", "--seconds takes a number of seconds");
        } else if (strcmp(argv[i], "--quick") == 0) {
            o.quick = 1;
            o.min_seconds = 0.01;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            o.model = argv[++i];
        } else if (argv[i][0] == '-') {
            return cli_usage_error("bench", "unknown option '%s'", argv[i]);
        } else {
            size_t k = 0;
            while (k < sizeof suites / sizeof suites[0] && strcmp(suites[k].name, argv[i]) != 0) k++;
            if (k == sizeof suites / sizeof suites[0])
                return cli_usage_error("bench", "unknown suite '%s'", argv[i]);
            if (n_chosen < 16) chosen[n_chosen++] = &suites[k];
        }
    }
    if (!n_chosen) /* every suite (int8's rows are infer's last) */
        for (size_t k = 0; k < sizeof suites / sizeof suites[0]; k++)
            if (suites[k].run != bench_int8) chosen[n_chosen++] = &suites[k];
    /* under mpirun: the scale suite's data-parallel rows, printed by rank 0 */
    if (dist_size() > 1 && (n_chosen != 1 || chosen[0]->run != bench_scale))
        return cli_usage_error("bench", "under mpirun only the scale suite runs (its rows over "
                                        "the ranks)");
    FILE *quiet = NULL;
    if (dist_rank() > 0 && !(o.out = quiet = fopen("/dev/null", "w")))
        return cli_usage_error("bench", "cannot open /dev/null");
    bench_header(&o);
    int rc = 0;
    for (int i = 0; i < n_chosen && rc == 0; i++) rc = chosen[i]->run(&o);
    xd_threads_set(all);
    if (quiet) fclose(quiet);
    return rc;
}
