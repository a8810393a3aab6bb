/* Files (see file.h). */
#include "io/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/mem.h"

// ----------------------------------------------------------------------------------------------
// removing a tree with async-signal-safe calls only

/* The record getdents64 fills (the kernel's struct linux_dirent64). */
typedef struct {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
} tree_dirent;

/* Folders nested deeper than this are left in place (nothing we make comes close). */
#define TREE_DEPTH 16

/* Removes name (relative to the folder dirfd) and, for a folder, everything in it. No allocation,
 * no stdio: a fixed buffer per level on the stack. 0 when name is gone. */
static int tree_remove_at(int dirfd, const char *name, int depth)
{
    /* Linux says EISDIR for a folder (POSIX allows EPERM) */
    if (unlinkat(dirfd, name, 0) == 0) return 0;
    if (errno != EISDIR && errno != EPERM) return errno == ENOENT ? 0 : -1;
    if (depth <= 0) return -1;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    _Alignas(8) char buf[2048];
    /* removing entries while reading the folder may make a pass skip some: read it again until a
     * pass finds nothing left or can remove nothing */
    for (;;) {
        int seen = 0, gone = 0;
        long n;
        lseek(fd, 0, SEEK_SET);
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
            for (long at = 0; at < n;) {
                const tree_dirent *d = (const tree_dirent *)(const void *)(buf + at);
                at += d->reclen;
                if (d->name[0] == '.' && (!d->name[1] || (d->name[1] == '.' && !d->name[2])))
                    continue;
                seen++;
                gone += tree_remove_at(fd, d->name, depth - 1) == 0;
            }
        if (!seen || !gone) break;
    }
    close(fd);
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
}

void io_remove_tree(const char *path) { tree_remove_at(AT_FDCWD, path, TREE_DEPTH); }

// ----------------------------------------------------------------------------------------------
// the registry of temporary paths and the signal handler

enum { TEMP_FREE, TEMP_BUSY, TEMP_FILE, TEMP_TREE };

typedef struct {
    atomic_int state; /* TEMP_BUSY while its path is written or taken back: the handler skips it */
    char path[IO_TEMP_PATH_MAX];
} temp_slot;

static temp_slot temp_slots[IO_TEMP_SLOTS];
static const int temp_signals[] = {SIGINT, SIGTERM};
#define TEMP_NSIG ((int)(sizeof temp_signals / sizeof temp_signals[0]))
static struct sigaction temp_old[TEMP_NSIG];
static atomic_int temp_installed;

static void temp_on_signal(int sig)
{
    int saved = errno;
    for (int i = 0; i < IO_TEMP_SLOTS; i++) {
        int st = atomic_load(&temp_slots[i].state);
        if (st == TEMP_FILE) unlink(temp_slots[i].path);
        else if (st == TEMP_TREE) io_remove_tree(temp_slots[i].path);
    }
    /* the previous action (normally the default: terminate) takes the signal once we return, so
     * the exit status says which signal stopped the process */
    for (int k = 0; k < TEMP_NSIG; k++)
        if (temp_signals[k] == sig) sigaction(sig, &temp_old[k], NULL);
    raise(sig);
    errno = saved;
}

static void temp_install(void)
{
    if (atomic_exchange(&temp_installed, 1)) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = temp_on_signal;
    sigemptyset(&sa.sa_mask);
    for (int k = 0; k < TEMP_NSIG; k++) sigaddset(&sa.sa_mask, temp_signals[k]);
    for (int k = 0; k < TEMP_NSIG; k++) {
        if (sigaction(temp_signals[k], NULL, &temp_old[k]) != 0) continue;
        /* a signal the caller ignores (nohup, a background job) stays ignored */
        if (!(temp_old[k].sa_flags & SA_SIGINFO) && temp_old[k].sa_handler == SIG_IGN) continue;
        sigaction(temp_signals[k], &sa, NULL);
    }
}

int io_temp_add(const char *path, int tree)
{
    size_t n = strlen(path);
    if (n >= IO_TEMP_PATH_MAX) return -1;
    temp_install();
    for (int i = 0; i < IO_TEMP_SLOTS; i++) {
        int free_state = TEMP_FREE;
        if (!atomic_compare_exchange_strong(&temp_slots[i].state, &free_state, TEMP_BUSY)) continue;
        memcpy(temp_slots[i].path, path, n + 1);
        atomic_store(&temp_slots[i].state, tree ? TEMP_TREE : TEMP_FILE);
        return i;
    }
    return -1;
}

void io_temp_drop(int slot)
{
    if (slot < 0 || slot >= IO_TEMP_SLOTS) return;
    atomic_store(&temp_slots[slot].state, TEMP_FREE);
}

// ----------------------------------------------------------------------------------------------
// stale temporary files

/* Digits of s[0, n) as a process id; 0 if they are not one. */
static long temp_pid(const char *s, size_t n)
{
    if (n == 0 || n > 10) return 0;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v > 0 && v <= INT_MAX ? v : 0;
}

/* mkstemp's six characters */
static int temp_suffix(const char *s)
{
    for (int i = 0; i < 6; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return s[6] == '\0';
}

/* The process id a temporary name carries (NAME.tmp.PID.XXXXXX or NAME.tmp-PID), else 0. */
static long temp_name_pid(const char *name)
{
    size_t n = strlen(name);
    if (n > 8 && temp_suffix(name + n - 6) && name[n - 7] == '.') {
        const char *end = name + n - 7, *p = end;
        while (p > name && p[-1] >= '0' && p[-1] <= '9') p--;
        if (p - name >= 5 && memcmp(p - 5, ".tmp.", 5) == 0) return temp_pid(p, (size_t)(end - p));
    }
    const char *dash = strrchr(name, '-');
    if (dash && dash - name >= 4 && memcmp(dash - 4, ".tmp", 4) == 0)
        return temp_pid(dash + 1, strlen(dash + 1));
    return 0;
}

static int pid_gone(long pid) { return kill((pid_t)pid, 0) != 0 && errno == ESRCH; }

void io_temp_clean_stale(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t blen = base ? strlen(base) : 0;
    const long self = (long)getpid();
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        long pid = temp_name_pid(nm);
        char *path = io_path_join(dir, nm);
        if (pid && pid != self && pid_gone(pid)) {
            io_remove_tree(path);
        } else if (!pid && base && strncmp(nm, base, blen) == 0 &&
                   strncmp(nm + blen, ".tmp.", 5) == 0 && temp_suffix(nm + blen + 5)) {
            /* an older build's name, with no process id to ask: stale once it is a day old */
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_mtime < time(NULL) - 86400)
                unlink(path);
        }
        free(path);
    }
    closedir(d);
}

// ----------------------------------------------------------------------------------------------
// atomic files

/* Back to the state of a writer that holds nothing (abort and commit may follow safely). */
static void atomic_reset(io_atomic *w)
{
    free(w->buf);
    free(w->path);
    free(w->tmp_path);
    memset(w, 0, sizeof *w);
    w->slot = -1;
}

xd_status io_atomic_open(io_atomic *w, const char *path, xd_err *e)
{
    memset(w, 0, sizeof *w);
    w->slot = -1;
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return xd_fail(e, XD_EARG,
                       "%s: exists and is not a regular file (a %s); give a file's path", path,
                       S_ISDIR(st.st_mode)    ? "folder"
                       : S_ISFIFO(st.st_mode) ? "pipe"
                                              : "device or other special file");
    char *dir = io_path_dir(path);
    const char *slash = strrchr(path, '/');
    io_temp_clean_stale(dir, slash ? slash + 1 : path);
    free(dir);
    size_t n = strlen(path) + 40;
    w->path = xd_xstrdup(path);
    w->tmp_path = xd_xmalloc(n);
    snprintf(w->tmp_path, n, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
    int fd = mkstemp(w->tmp_path);
    if (fd < 0) {
        xd_status s = xd_fail(e, XD_EIO, "%s: cannot create: %s", path, strerror(errno));
        atomic_reset(w);
        return s;
    }
    w->slot = io_temp_add(w->tmp_path, 0);
    /* mkstemp makes 0600; give the file the usual permissions (umask applies). */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        close(fd);
        unlink(w->tmp_path);
        io_temp_drop(w->slot);
        xd_status s = xd_fail(e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
        atomic_reset(w);
        return s;
    }
    return XD_OK;
}

void io_atomic_blocks(io_atomic *w, size_t bytes)
{
    /* glibc's stdio fills its buffer, writes it whole, and writes a large request's whole
     * buffers' worth directly, so every write(2) starts at a multiple of the buffer's size */
    XD_ASSERT(w->f && !w->buf && bytes > 0);
    w->buf = xd_xmalloc(bytes);
    w->block = bytes;
    if (setvbuf(w->f, w->buf, _IOFBF, bytes) != 0) {
        free(w->buf);
        w->buf = NULL;
        w->block = 0;
    }
}

/* The most a piece of a write may hold with blocks set: Linux writes at most 2 GiB - 4 KiB a
 * call, and a call cut short there would leave the next one off a block boundary. */
#define ATOMIC_PIECE ((size_t)1 << 30)

xd_status io_atomic_write(io_atomic *w, const void *data, size_t n, xd_err *e)
{
    const size_t piece = w->block ? ATOMIC_PIECE / w->block * w->block : 0;
    const unsigned char *p = data;
    while (n) {
        const size_t k = piece && n > piece ? piece : n;
        if (fwrite(p, 1, k, w->f) != k)
            return xd_fail(e, XD_EIO, "%s: write failed: %s", w->path, strerror(errno));
        p += k;
        n -= k;
    }
    return XD_OK;
}

xd_status io_atomic_seek(io_atomic *w, off_t at, xd_err *e)
{
    if (fseeko(w->f, at, SEEK_SET) == 0) return XD_OK;
    if (ferror(w->f))
        return xd_fail(e, XD_EIO, "%s: write failed: %s", w->path, strerror(errno));
    return xd_fail(e, XD_EIO, "%s: cannot seek in the temporary file: %s", w->path,
                   strerror(errno));
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
    io_temp_drop(w->slot);
    atomic_reset(w);
    return s;
}

void io_atomic_abort(io_atomic *w)
{
    if (w->f) fclose(w->f);
    if (w->tmp_path) {
        unlink(w->tmp_path);
        io_temp_drop(w->slot);
    }
    atomic_reset(w);
}

xd_status io_open_regular(const char *path, int *fd, struct stat *st, xd_err *e)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer */
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0) return xd_fail(e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat own;
    if (!st) st = &own;
    const int flags = fcntl(*fd, F_GETFL);
    const int got = fstat(*fd, st) == 0 && flags >= 0;
    if (got && S_ISREG(st->st_mode) && fcntl(*fd, F_SETFL, flags & ~O_NONBLOCK) == 0) return XD_OK;
    const int err = errno;
    close(*fd);
    *fd = -1;
    if (got && !S_ISREG(st->st_mode)) return xd_fail(e, XD_EIO, "%s: not a regular file", path);
    return xd_fail(e, XD_EIO, "%s: cannot open: %s", path, strerror(err));
}

xd_status io_check_output(const char *out, const char *const *inputs, int n, xd_err *e)
{
    struct stat so, si;
    if (!out || stat(out, &so) != 0) return XD_OK;
    for (int i = 0; i < n; i++)
        if (inputs[i] && stat(inputs[i], &si) == 0 && si.st_dev == so.st_dev &&
            si.st_ino == so.st_ino)
            return xd_fail(e, XD_EARG,
                           "%s: is also an input of this command (%s); write the output to "
                           "another path",
                           out, inputs[i]);
    return XD_OK;
}

xd_status io_read_all(const char *path, size_t max_bytes, void **data, size_t *n, xd_err *e)
{
    *data = NULL;
    *n = 0;
    int fd;
    struct stat st;
    xd_status s = io_open_regular(path, &fd, &st, e);
    if (s != XD_OK) return s;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        s = xd_fail(e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return s;
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
    memset(m, 0, sizeof *m);
    int fd;
    struct stat st;
    xd_status s = io_open_regular(path, &fd, &st, e);
    if (s != XD_OK) return s;
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return xd_fail(e, XD_EIO, "%s: cannot map: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    m->mtime_s = (long long)st.st_mtim.tv_sec;
    m->mtime_ns = (long long)st.st_mtim.tv_nsec;
    m->ctime_s = (long long)st.st_ctim.tv_sec;
    m->ctime_ns = (long long)st.st_ctim.tv_nsec;
    m->dev = (unsigned long long)st.st_dev;
    m->ino = (unsigned long long)st.st_ino;
    close(fd); /* the mapping stays valid */
    return XD_OK;
}

void io_map_close(io_map *m)
{
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

xd_status io_file_hash(const char *path, uint64_t *h, xd_err *e)
{
    io_map m;
    xd_status s = io_map_open(path, &m, e);
    if (s != XD_OK) return s;
    *h = xd_fnv_bytes(XD_FNV_OFFSET, m.data, m.size);
    io_map_close(&m);
    return XD_OK;
}

/* The folders above path, from the innermost up to the one top characters long, only while
 * they are empty: another process may have put something there since. */
static void rmdir_parents(const char *path, size_t top)
{
    char *p = xd_xstrdup(path);
    for (char *slash; strlen(p) > top && (slash = strrchr(p, '/'));) {
        *slash = '\0';
        if (strlen(p) < top || (*p && rmdir(p) != 0 && errno != ENOENT)) break;
    }
    free(p);
}

xd_status io_mkdir_made(const char *path, char **made, xd_err *e)
{
    if (made) *made = NULL;
    char *p = xd_xstrdup(path);
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) == 0) {
                if (made && !*made) *made = xd_xstrdup(p);
            } else if (errno != EEXIST) {
                xd_status st = xd_fail(e, XD_EIO, "%s: cannot create folder: %s", p, strerror(errno));
                if (made && *made) { /* the folders made on the way go again */
                    rmdir_parents(p, strlen(*made));
                    free(*made);
                    *made = NULL;
                }
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

xd_status io_mkdir_p(const char *path, xd_err *e) { return io_mkdir_made(path, NULL, e); }

void io_unmake_dir(const char *path, const char *made)
{
    io_remove_tree(path);
    rmdir_parents(path, strlen(made));
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

int io_path_has_suffix(const char *path, const char *suffix)
{
    const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcasecmp(name + n - s, suffix) == 0;
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
