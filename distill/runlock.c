/* Run folder locks (see runlock.h). */
#include "distill/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"

xd_status runlock_take(runlock *l, const char *dir, xd_err *e)
{
    memset(l, 0, sizeof *l);
    l->fd = -1;
    char *path = io_path_join(dir, RUNLOCK_FILE);
    /* whether the file was there decides what giving the lock back leaves */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    const int made = fd >= 0;
    if (fd < 0 && errno == EEXIST) fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        xd_status s = xd_fail(e, XD_EIO, "%s: cannot open the run's lock: %s", path, strerror(errno));
        free(path);
        return s;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd); /* a file this take made stays: the run that locked it first holds it */
        free(path);
        if (err != EWOULDBLOCK)
            return xd_fail(e, XD_EIO, "%s: cannot lock the run folder: %s", dir, strerror(err));
        return xd_fail(e, XD_EIO, "%s: another run (pid %s) is using this folder; wait for it to end "
                                  "or give another folder", dir, pid[0] ? pid : "unknown");
    }
    struct stat st;
    l->times[0].tv_nsec = l->times[1].tv_nsec = UTIME_OMIT; /* unknown: left as they will be */
    if (!made && fstat(fd, &st) == 0) {
        l->times[0] = st.st_atim;
        l->times[1] = st.st_mtim;
        ssize_t n = pread(fd, l->before, sizeof l->before, 0);
        l->n_before = n > 0 ? (int)n : 0;
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        xd_status s = xd_fail(e, XD_EIO, "%s: cannot write: %s", path, strerror(errno));
        close(fd);
        free(path);
        return s;
    }
    l->fd = fd;
    l->path = path;
    l->made = made;
    return XD_OK;
}

void runlock_release(runlock *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    free(l->path);
    l->path = NULL;
}

void runlock_give_back(runlock *l)
{
    if (l->fd < 0) return;
    /* removed while still held, so no other run has taken it in between */
    if (l->made) {
        unlink(l->path);
    } else if (ftruncate(l->fd, 0) == 0 &&
               pwrite(l->fd, l->before, (size_t)l->n_before, 0) == l->n_before) {
        futimens(l->fd, l->times);
    }
    runlock_release(l);
}

int runlock_temp_add(const runlock *l, const char *made)
{
    if (l->fd < 0) return -1;
    if (made) return io_temp_add(made, 1);
    /* a lock file found there keeps the earlier holder's pid; being free once its holder is
     * gone, it blocks no later run */
    return l->made ? io_temp_add(l->path, 0) : -1;
}
