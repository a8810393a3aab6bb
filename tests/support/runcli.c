/* Running the built program from tests (see runcli.h). */
#include "tests/support/runcli.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/testutil.h"

const char *tu_cli_bin(void)
{
    static char bin[PATH_MAX];
    if (bin[0]) return bin;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) fail_msg("cannot read /proc/self/exe");
    self[n] = '\0';
    snprintf(bin, sizeof bin, "%s/../xdistill", dirname(self));
    return bin;
}

int tu_run_cli_in(const char *stdin_path, char **out, char **err, ...)
{
    const char *bin = tu_cli_bin();
    char *argv[32] = {(char *)bin};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) && argc < 31;) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, stdin_path ? stdin_path : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "cli.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, "cli.err", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    extern char **environ;
    pid_t pid;
    if (posix_spawn(&pid, bin, &fa, NULL, argv, environ) != 0) fail_msg("cannot run %s", bin);
    posix_spawn_file_actions_destroy(&fa);
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    if (!WIFEXITED(ws)) fail_msg("xdistill %s died (signal %d)", argv[1], WTERMSIG(ws));
    const char *names[2] = {"cli.out", "cli.err"};
    char **texts[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        size_t n;
        char *t = tu_read_file(names[i], &n);
        t = realloc(t, n + 1);
        t[n] = '\0';
        if (texts[i]) *texts[i] = t;
        else free(t);
    }
    return WEXITSTATUS(ws);
}

void tu_expect_line(const char *err, const char *a, const char *b)
{
    const char *nl = strchr(err, '\n');
    if (!nl || nl[1]) fail_msg("not one line: '%s'", err);
    if (!strstr(err, a) || (b && !strstr(err, b)))
        fail_msg("'%s' does not name '%s'%s%s", err, a, b ? " and say " : "", b ? b : "");
}
