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

/* Prints "xdistill CMD: message" for a failed status and returns 1. */
int cli_report(const char *cmd, const xd_err *e);
/* Prints "xdistill CMD: <formatted>" plus a hint to run --help, returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A whole decimal number in [lo, hi] into *out: 0, else -1 (nothing written). */
int cli_parse_long(const char *s, long lo, long hi, long *out);
/* True when argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);

#endif
