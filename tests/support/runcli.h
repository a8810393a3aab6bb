/* Running the built `xdistill` program from a test, as a user runs it (the program next to the
 * test binary: build/tests/test_X -> build/xdistill). */
#ifndef XD_TESTS_RUNCLI_H
#define XD_TESTS_RUNCLI_H

/* The program's path (found once from /proc/self/exe). */
const char *tu_cli_bin(void);

/* Runs `xdistill ARGS...` (NULL-terminated) with stdout and stderr caught in files of the working
 * folder (stdin from stdin_path, or /dev/null when NULL); returns the exit status, *out and *err
 * the texts (caller frees; NULL not to keep them). Fails the test when the program dies. */
int tu_run_cli_in(const char *stdin_path, char **out, char **err, ...);
#define tu_run_cli(out, err, ...) tu_run_cli_in(NULL, out, err, __VA_ARGS__)

/* Fails the test unless err (a run's standard error) is one line that holds a and (when not
 * NULL) b: what a refused input or file must give. */
void tu_expect_line(const char *err, const char *a, const char *b);

#endif
