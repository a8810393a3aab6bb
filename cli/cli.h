/* The xdistill command line: one function per subcommand, wired up in main.c's table.
 * Each returns the process exit status (0 ok, 1 failure, 2 usage error) after printing at most one
 * error line "xdistill CMD: message" to stderr. */
#ifndef XD_CLI_H
#define XD_CLI_H

#include "core/status.h"

int cmd_bench(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_prune(int argc, char **argv);

/* Prints "xdistill CMD: message" for a failed status and returns 1. */
int cli_report(const char *cmd, const xd_err *e);
/* Prints "xdistill CMD: <formatted>" plus a hint to run --help, returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A whole decimal number in [lo, hi] into *out: 0, else -1 (nothing written). */
int cli_parse_long(const char *s, long lo, long hi, long *out);
/* A finite decimal number in [lo, hi] into *out: 0, else -1 (nothing written). */
int cli_parse_double(const char *s, double lo, double hi, double *out);
/* The options of a command: their words, whether the next word is the value, and whether it
 * may be given more than once (--set). */
typedef struct {
    const char *name;
    int takes_value;
    int many;
} cli_option;
/* Looks argv[*i] up in opts: its index, with *val its value (the next word, *i moved onto it) for
 * an option that takes one; -1 for a word that is no option; -2 after printing the usage error
 * (*rc its exit status) for an unknown option, one whose value is missing, or one that takes a
 * value, given a second time (`--seed 1 --seed 2`: which one was meant?) unless it is many. */
int cli_next_option(const char *cmd, const cli_option *opts, int n, int argc, char **argv, int *i,
                    const char **val, int *rc);
/* 0, or the usage error's exit status (printed) when two of the n "KEY=VALUE" words of --set
 * name the same key. */
int cli_sets_once(const char *cmd, const char *const *sets, int n);
/* True when argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);

#endif
