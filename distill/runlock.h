/* A run folder's lock: one training process per folder.
 *
 * The lock is an exclusive flock on DIR/run.lock, held from before the run writes anything in DIR
 * until it ends (the kernel drops it when the process dies, so a killed run never leaves a stale
 * lock). The file holds the pid of the process that took it last, so a second run into the same
 * folder stops with a message naming the first. The file stays when the run ends: removing it
 * would let a waiting process lock a file that another one is creating anew.
 *
 * A run that fails before it wrote anything in DIR gives the lock back instead (runlock_give_back),
 * so that the folder is left as the run found it: the file's earlier text and times, or no file
 * when the take made it. Until the run has something to keep, SIGINT and SIGTERM remove what it
 * added too (runlock_temp_add): the folders it made, or the lock file when the take made it. */
#ifndef XD_DISTILL_RUNLOCK_H
#define XD_DISTILL_RUNLOCK_H

#include <time.h>

#include "core/status.h"

#define RUNLOCK_FILE "run.lock"

typedef struct {
    int fd;                   /* -1 when not held */
    char *path;               /* DIR/run.lock while held */
    int made;                 /* the take created the file */
    char before[32];          /* else its text before the take (the earlier holder's pid), */
    int n_before;             /* that text's length, */
    struct timespec times[2]; /* and its access and modification times */
} runlock;

/* Takes the lock of the existing folder dir, without waiting: XD_EIO "DIR: another run (pid N)
 * is using this folder ..." when a process holds it. */
xd_status runlock_take(runlock *l, const char *dir, xd_err *e);
/* Releases a held lock (nothing for one never taken). */
void runlock_release(runlock *l);
/* Releases a held lock leaving its file as the take found it: removed when the take made it,
 * else its earlier text and times back (failures ignored: the file only names a pid). */
void runlock_give_back(runlock *l);
/* Lists what a run added for removal on SIGINT/SIGTERM (io_temp_add): made, the outermost folder
 * made for the held lock's folder (NULL: none), with everything in it; else the lock file when
 * the take made it. Returns the slot for io_temp_drop, -1 when nothing is listed. */
int runlock_temp_add(const runlock *l, const char *made);

#endif
