/* Shared test helpers (see testutil.h). */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mem.h"
#include "distill/checkpoint.h"
#include "io/safetensors.h"
#include "nn/model.h"

void tu_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if (n && fwrite(data, 1, n, f) != n) fail_msg("cannot write %s", path);
    if (fclose(f) != 0) fail_msg("cannot close %s", path);
}

void tu_write_text(const char *path, const char *s) { tu_write_file(path, s, strlen(s)); }

int tu_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

void tu_assert_nothing_left(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    const size_t n = strlen(name);
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, name, n) == 0 && (de->d_name[n] == '\0' || de->d_name[n] == '.'))
            fail_msg("left behind: %s/%s", dir, de->d_name);
    closedir(d);
}

void tu_limit_file_size(long bytes)
{
    static struct rlimit old;
    static void (*old_sig)(int);
    static int limited;
    if (bytes < 0) {
        if (!limited) return;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, old_sig);
        limited = 0;
        return;
    }
    if (!limited) {
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        old_sig = signal(SIGXFSZ, SIG_IGN);
    }
    struct rlimit small = old;
    small.rlim_cur = (rlim_t)bytes;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    limited = 1;
}

void *tu_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) fail_msg("cannot read %s", path);
    buf[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return buf;
}

void tu_copy_file(const char *src, const char *dst)
{
    size_t n;
    void *bytes = tu_read_file(src, &n);
    tu_write_file(dst, bytes, n);
    free(bytes);
}

void tu_rewrite_meta(const char *src, const char *dst, const char *key, const char *value)
{
    io_st_file *f;
    xd_err e;
    TU_OK(io_st_open(src, &f, &e));
    size_t n = io_st_count(f), nm = io_st_meta_count(f), k = 0;
    io_tensor *t = xd_xcalloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = *io_st_tensor(f, i);
    io_kv *meta = xd_xcalloc(nm + 1, sizeof *meta);
    int done = 0;
    for (size_t i = 0; i < nm; i++) {
        io_kv kv = *io_st_meta_at(f, i);
        if (strcmp(kv.key, key) == 0) {
            done = 1;
            if (!value) continue;
            kv.value = value;
        }
        meta[k++] = kv;
    }
    if (!done && value) meta[k++] = (io_kv){key, value};
    TU_OK(io_st_write(dst, t, n, meta, k, &e));
    free(meta);
    free(t);
    io_st_close(f);
}

void tu_rewrite_value(const char *src, const char *dst, const char *name, size_t i, float value)
{
    io_st_file *f;
    xd_err e;
    TU_OK(io_st_open(src, &f, &e));
    const size_t n = io_st_count(f), nm = io_st_meta_count(f);
    io_tensor *t = xd_xcalloc(n, sizeof *t);
    io_kv *meta = xd_xcalloc(nm, sizeof *meta);
    float *copy = NULL;
    for (size_t k = 0; k < n; k++) {
        t[k] = *io_st_tensor(f, k);
        size_t ne;
        if (strcmp(t[k].name, name) != 0) continue;
        assert_int_equal(t[k].dtype, IO_F32);
        assert_int_equal(io_tensor_elements(&t[k], &ne), 0);
        assert_true(i < ne || i == TU_ALL);
        copy = xd_xmalloc(sizeof(float) * ne);
        memcpy(copy, t[k].data, sizeof(float) * ne);
        for (size_t j = 0; j < ne; j++)
            if (j == i || i == TU_ALL) copy[j] = value;
        t[k].data = copy;
    }
    if (!copy) fail_msg("%s: no tensor '%s'", src, name);
    for (size_t k = 0; k < nm; k++) meta[k] = *io_st_meta_at(f, k);
    TU_OK(io_st_write(dst, t, n, meta, nm, &e));
    free(copy);
    free(meta);
    free(t);
    io_st_close(f);
}

int tu_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

void tu_assert_near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.9g, want %.9g (tol %.3g)", what, got, want, tol);
}

void tu_assert_close(const float *a, const float *b, size_t n, double rtol, double atol,
                     const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i])))
            fail_msg("%s[%zu]: got %.9g, expected %.9g (|diff| %.3g > atol %.3g + rtol %.3g)", what,
                     i, (double)a[i], (double)b[i], d, atol, rtol);
    }
}

void tu_assert_err(const xd_err *e, xd_status code, const char *substr)
{
    if (e->code != code)
        fail_msg("expected status %s, got %s: %s", xd_status_name(code), xd_status_name(e->code),
                 e->msg);
    if (substr && !strstr(e->msg, substr))
        fail_msg("error message '%s' does not mention '%s'", e->msg, substr);
}

char *tu_fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) fail_msg("out of memory");
    va_end(ap);
    return s;
}

const char *tu_src_path(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("XDISTILL_ROOT");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}

#include "core/rng.h"

void tu_check_grad(const char *what, float *x, size_t n, const float *analytic,
                   double (*loss)(void *ctx), void *ctx, double h, double rtol, double atol)
{
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = (float)(keep + h);
        double lp = loss(ctx);
        x[i] = (float)(keep - h);
        double lm = loss(ctx);
        /* the step actually taken in float, not the one asked for */
        double step = (double)(float)(keep + h) - (double)(float)(keep - h);
        x[i] = keep;
        double num = (lp - lm) / step, a = analytic[i];
        double tol = atol + rtol * fmax(fabs(a), fabs(num));
        if (!(fabs(a - num) <= tol))
            fail_msg("%s: gradient[%zu] analytic %.7g vs numerical %.7g (|diff| %.3g > %.3g)", what,
                     i, a, num, fabs(a - num), tol);
    }
}

void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed)
{
    xd_rng r = xd_rng_make(seed, 0, XD_RNG_USER);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * xd_rng_uniform(&r);
}

double tu_dot(const float *out, const float *r, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * r[i];
    return s;
}

double tu_fd_along(double (*loss)(void *ctx), void *ctx, float *x, size_t n, const float *d,
                   double h)
{
    float *x0 = malloc(sizeof(float) * n);
    assert_non_null(x0);
    memcpy(x0, x, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = x0[i] + (float)h * d[i];
    double up = loss(ctx);
    for (size_t i = 0; i < n; i++) x[i] = x0[i] - (float)h * d[i];
    double down = loss(ctx);
    memcpy(x, x0, sizeof(float) * n);
    free(x0);
    return (up - down) / (2.0 * h);
}

int tu_count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    const size_t ls = strlen(suffix);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        const size_t l = strlen(de->d_name);
        n += l > ls && strcmp(de->d_name + l - ls, suffix) == 0;
    }
    closedir(d);
    return n;
}

int tu_next_bisa(int *i, const nn_bisa *kernels, int n, const char **name)
{
    while (*i < n) {
        const nn_bisa isa = kernels[(*i)++];
        if (nn_bgemm_use(isa) == isa) {
            *name = nn_bisa_name(isa);
            return 1;
        }
    }
    nn_bgemm_use(NN_BISA_COUNT);
    return 0;
}

pid_t tu_fork_ready(int sig, void (*work)(void *ctx, int ready_fd), void *ctx)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct sigaction cur;
        if (sigaction(sig, NULL, &cur) == 0 && cur.sa_handler == SIG_IGN) signal(sig, SIG_DFL);
        work(ctx, fds[1]);
        _exit(6);
    }
    close(fds[1]);
    char c;
    const int ready = read(fds[0], &c, 1) == 1;
    close(fds[0]);
    if (!ready) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("the child process ended before it was ready for the signal");
    }
    return pid;
}

void tu_ready_wait(int ready_fd)
{
    if (write(ready_fd, "r", 1) != 1) _exit(5);
    for (;;) pause();
}

void tu_kill_check(pid_t pid, int sig)
{
    assert_int_equal(kill(pid, sig), 0);
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFSIGNALED(ws));
    assert_int_equal(WTERMSIG(ws), sig);
}

void tu_save_model(const char *path, const char *desc, int max_batch, uint64_t seed)
{
    nn_model m;
    xd_err e;
    if (nn_model_build(&m, desc, max_batch, seed, &e) != XD_OK) fail_msg("%s: %s", desc, e.msg);
    if (ckpt_save(path, &m, NULL, 0, &e) != XD_OK) fail_msg("%s: %s", path, e.msg);
    nn_model_free(&m);
}
