/* Test helpers for the image codecs (see imgfix.h). */
#include "tests/support/imgfix.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/testutil.h"

void ifx_noise(uint8_t *px, size_t n, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        px[i] = (uint8_t)(s >> 24);
    }
}

void ifx_smooth(uint8_t *px, int w, int h, int c)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                double v = 128.0 + 60.0 * sin(0.15 * x + 0.7 * k) + 50.0 * cos(0.11 * y - 0.4 * k) +
                           (k == 0 ? x : -y) * 0.5;
                if (v < 0) v = 0;
                if (v > 255) v = 255;
                px[((size_t)y * w + x) * c + k] = (uint8_t)lround(v);
            }
}

double ifx_mae(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
    return n ? s / (double)n : 0.0;
}

int ifx_max_abs(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

int ifx_dir_count(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL)
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

int ifx_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int saved_stderr = -1;
static const char capture_path[] = "stderr.capture";

void ifx_stderr_begin(void)
{
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(capture_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (saved_stderr < 0 || fd < 0) fail_msg("cannot redirect stderr");
    dup2(fd, 2);
    close(fd);
}

long ifx_stderr_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
    struct stat st;
    long n = stat(capture_path, &st) == 0 ? (long)st.st_size : -1;
    unlink(capture_path);
    return n;
}

static struct rlimit saved_fsize;

void ifx_file_size_limit(long bytes)
{
    if (getrlimit(RLIMIT_FSIZE, &saved_fsize) != 0) fail_msg("getrlimit failed");
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {(rlim_t)bytes, saved_fsize.rlim_max};
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) fail_msg("setrlimit failed");
}

void ifx_file_size_unlimit(void)
{
    setrlimit(RLIMIT_FSIZE, &saved_fsize);
    signal(SIGXFSZ, SIG_DFL);
}

void ifx_assert_fail(xd_status got, const xd_err *e, xd_status code, const char *s1,
                     const char *s2)
{
    if (got != code)
        fail_msg("expected status %s, got %s: %s", xd_status_name(code), xd_status_name(got), e->msg);
    tu_assert_err(e, code, s1);
    if (s2) tu_assert_err(e, code, s2);
}
