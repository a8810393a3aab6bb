/* xdistill: entry point. Sets up the BLAS kernel and threads, then hands over to a subcommand
 * found by table lookup. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/dist.h"
#include "core/runtime.h"
#include "core/words.h"
#include "nn/gemm.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    int ranks; /* 1: runs as one job over the ranks of mpirun; 0: refused there with several */
} command;

static const command commands[] = {
    {"bench", cmd_bench, "measure speed: xdistill bench [SUITE] [--threads 1,2] [--json]", 1},
    {"prepare", cmd_prepare, "make a dataset file: fashion-mnist, emoji, fashion-scenes, manifest", 0},
    {"train", cmd_train, "train a teacher or a student from a YAML recipe (any distillation)", 1},
    {"run", cmd_run, "run a pipeline of recipes, later steps taught by earlier ones; skips done steps", 0},
    {"eval", cmd_eval, "accuracy of a checkpoint on a prepared data set", 0},
    {"predict", cmd_predict, "a checkpoint's answers for image files, manifests or text lines (JSON lines)", 0},
    {"export", cmd_export, "a checkpoint as an ONNX model (--onnx OUT.onnx)", 0},
    {"quantize", cmd_quantize, "a checkpoint as an int8 one (calibrated, or as trained with quantize:)", 0},
    {"prune", cmd_prune, "a checkpoint with fewer convolution channels (filter L1 norm)", 0},
    {"report", cmd_report, "an HTML page (curves, table, mistakes) of run folders; --compare", 0},
    {"inspect", cmd_inspect, "show what a dataset, safetensors, NPY, PNG, JPEG or IDX file holds", 0},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: xdistill COMMAND [options]    (xdistill COMMAND --help for details)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --version  version, the product kernel, OpenBLAS's kernel and threads\n"
               "\nenvironment: OPENBLAS_CORETYPE=NAME forces OpenBLAS's kernel (decompositions); "
               "XDISTILL_BLAS=keep keeps\n             the library's own choice; OMP_NUM_THREADS=N "
               "sets the thread count.\n");
}

int cli_report(const char *cmd, const xd_err *e)
{
    /* a failure every rank returned together is said once, by rank 0 */
    if (dist_rank() > 0 && dist_failed_together()) return 1;
    fprintf(stderr, "xdistill %s: %s\n", cmd, e->msg[0] ? e->msg : xd_status_name(e->code));
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "xdistill %s: %s (see xdistill %s --help)\n", cmd, msg, cmd);
    return 2;
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* The option argv[i] names in opts, or -1. */
static int option_of(const cli_option *opts, int n, const char *a)
{
    for (int o = 0; o < n; o++)
        if (strcmp(a, opts[o].name) == 0) return o;
    return -1;
}

int cli_next_option(const char *cmd, const cli_option *opts, int n, int argc, char **argv, int *i,
                    const char **val, int *rc)
{
    const char *a = argv[*i];
    if (a[0] != '-' || !a[1]) return -1;
    const int o = option_of(opts, n, a);
    if (o >= 0) {
        if (!opts[o].takes_value) return o;
        if (*i + 1 >= argc) {
            *rc = cli_usage_error(cmd, "%s needs a value", a);
            return -2;
        }
        /* the words before, values skipped as the parse skipped them */
        for (int j = 1; j < *i && !opts[o].many; j++) {
            const int k = option_of(opts, n, argv[j]);
            if (k == o) {
                *rc = cli_usage_error(cmd, "%s is given twice ('%s' and '%s'); give it once", a,
                                      argv[j + 1], argv[*i + 1]);
                return -2;
            }
            if (k >= 0 && opts[k].takes_value) j++;
        }
        *val = argv[++*i];
        return o;
    }
    *rc = cli_usage_error(cmd, "unknown option '%s'", a);
    return -2;
}

int cli_sets_once(const char *cmd, const char *const *sets, int n)
{
    for (int i = 1; i < n; i++) {
        const int first = xd_word_key_repeats(sets, i, sets[i]);
        if (first)
            return cli_usage_error(cmd, "--set %.*s is given twice ('%s' and '%s'); give it once",
                                   (int)xd_word_key_len(sets[i]), sets[i], sets[first - 1],
                                   sets[i]);
    }
    return 0;
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

/* The ranks mpirun started (its launcher's variable), 1 without mpirun. */
static long mpi_ranks(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    return n ? strtol(n, NULL, 10) : 1;
}

/* 0 once everything printed on standard output has reached it; 1, said on standard error, when
 * it could not be written (a full disk, a closed pipe): a command's answer lost is a failure. */
static int stdout_written(const char *cmd)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
    fprintf(stderr, "xdistill %s: cannot write to standard output: %s\n", cmd,
            errno ? strerror(errno) : "write error");
    return 1;
}

int main(int argc, char **argv)
{
    xd_runtime_init(argc, argv);
    if (mpi_ranks() > 1 && !dist_built()) {
        fprintf(stderr, "xdistill: started by mpirun with %ld ranks, but built without MPI (make "
                        "MPI=0 or no mpicc): every rank would run the whole job\n", mpi_ranks());
        return 2;
    }
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("xdistill %s\n", XD_VERSION);
        printf("products: xdistill's own kernel, %s\n", nn_sgemm_kernel());
        printf("blas (decompositions, benchmark baseline): OpenBLAS kernel %s (%s)\n",
               xd_blas_kernel(), xd_blas_source());
        printf("blas config: %s\n", xd_blas_config());
        if (xd_blas_better())
            printf("note: this CPU can run a faster OpenBLAS kernel than %s (unset "
                   "OPENBLAS_CORETYPE); training's products do not use OpenBLAS\n",
                   xd_blas_kernel());
        printf("threads: %d\n", xd_threads_get());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        if (!commands[i].ranks && mpi_ranks() > 1) {
            fprintf(stderr, "xdistill %s: runs as one process, not over %ld ranks of mpirun "
                            "(only train and bench do)\n", argv[1], mpi_ranks());
            return 2;
        }
        dist_init(&argc, &argv);
        const int rc = commands[i].run(argc - 1, argv + 1);
        dist_finalize();
        return rc ? rc : stdout_written(argv[1]);
    }
    fprintf(stderr, "xdistill: unknown command '%s' (see xdistill --help)\n", argv[1]);
    return 2;
}
