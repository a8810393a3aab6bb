/* Run folder locks (see runlock.h). */
#include "distill/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "io/file.h"

xd_status runlock_take(runlock *l, const char *dir, xd_err *e)
{
    l->fd = -1;
    char *path = io_path_join(dir, RUNLOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
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
        close(fd);
        free(path);
        if (err != EWOULDBLOCK)
            return xd_fail(e, XD_EIO, "%s: cannot lock the run folder: %s", dir, strerror(err));
        return xd_fail(e, XD_EIO, "%s: another run (pid %s) is using this folder; wait for it to end "
                                  "or give another folder", dir, pid[0] ? pid : "unknown");
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        xd_status s = xd_fail(e, XD_EIO, "%s: cannot write: %s", path, strerror(errno));
        close(fd);
        free(path);
        return s;
    }
    free(path);
    l->fd = fd;
    return XD_OK;
}

void runlock_release(runlock *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}
