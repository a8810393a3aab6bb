/* Files (see file.h). */
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"

xd_status io_atomic_open(io_atomic *w, const char *path, xd_err *e)
{
    memset(w, 0, sizeof *w);
    size_t n = strlen(path);
    w->path = xd_xstrdup(path);
    w->tmp_path = xd_xmalloc(n + 16);
    snprintf(w->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(w->tmp_path);
    if (fd < 0) {
        xd_status s = xd_fail(e, XD_EIO, "%s: cannot create: %s", path, strerror(errno));
        free(w->path);
        free(w->tmp_path);
        memset(w, 0, sizeof *w);
        return s;
    }
    /* mkstemp makes 0600; give the file the usual permissions (umask applies). */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        close(fd);
        unlink(w->tmp_path);
        xd_status s = xd_fail(e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
        free(w->path);
        free(w->tmp_path);
        memset(w, 0, sizeof *w);
        return s;
    }
    return XD_OK;
}

xd_status io_atomic_write(io_atomic *w, const void *data, size_t n, xd_err *e)
{
    if (n && fwrite(data, 1, n, w->f) != n)
        return xd_fail(e, XD_EIO, "%s: write failed: %s", w->path, strerror(errno));
    return XD_OK;
}

xd_status io_atomic_commit(io_atomic *w, xd_err *e)
{
    xd_status s = XD_OK;
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        s = xd_fail(e, XD_EIO, "%s: write failed: %s", w->path, strerror(errno));
    if (fclose(w->f) != 0 && s == XD_OK)
        s = xd_fail(e, XD_EIO, "%s: close failed: %s", w->path, strerror(errno));
    w->f = NULL;
    if (s == XD_OK && rename(w->tmp_path, w->path) != 0)
        s = xd_fail(e, XD_EIO, "%s: cannot rename into place: %s", w->path, strerror(errno));
    if (s != XD_OK) unlink(w->tmp_path);
    free(w->path);
    free(w->tmp_path);
    memset(w, 0, sizeof *w);
    return s;
}

void io_atomic_abort(io_atomic *w)
{
    if (w->f) fclose(w->f);
    if (w->tmp_path) unlink(w->tmp_path);
    free(w->path);
    free(w->tmp_path);
    memset(w, 0, sizeof *w);
}

xd_status io_read_all(const char *path, size_t max_bytes, void **data, size_t *n, xd_err *e)
{
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return xd_fail(e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return xd_fail(e, XD_EIO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return xd_fail(e, XD_EFORMAT, "%s: file is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = xd_try_alloc(size + 1);
    if (!buf) {
        fclose(f);
        return xd_fail(e, XD_ENOMEM, "%s: cannot allocate %zu bytes", path, size);
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    fclose(f);
    if (got != size) {
        free(buf);
        return xd_fail(e, XD_EIO, "%s: short read (%zu of %zu bytes)", path, got, size);
    }
    buf[size] = '\0';
    *data = buf;
    *n = size;
    return XD_OK;
}

xd_status io_map_open(const char *path, io_map *m, xd_err *e)
{
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return xd_fail(e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return xd_fail(e, XD_EIO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return xd_fail(e, XD_EIO, "%s: cannot map: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd); /* the mapping stays valid */
    return XD_OK;
}

void io_map_close(io_map *m)
{
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

xd_status io_mkdir_p(const char *path, xd_err *e)
{
    char *p = xd_xstrdup(path);
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                xd_status st = xd_fail(e, XD_EIO, "%s: cannot create folder: %s", p, strerror(errno));
                free(p);
                return st;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    if (!ok) return xd_fail(e, XD_EIO, "%s: not a folder", path);
    return XD_OK;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void io_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *io_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = xd_xmalloc(a + b + 2);
    memcpy(s, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

char *io_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return xd_xstrdup(".");
    if (slash == path) return xd_xstrdup("/");
    size_t n = (size_t)(slash - path);
    char *s = xd_xmalloc(n + 1);
    memcpy(s, path, n);
    s[n] = '\0';
    return s;
}
