/* A run folder's lock: one training process per folder.
 *
 * The lock is an exclusive flock on DIR/run.lock, held from before the run writes anything in DIR
 * until it ends (the kernel drops it when the process dies, so a killed run never leaves a stale
 * lock). The file holds the pid of the process that took it last, so a second run into the same
 * folder stops with a message naming the first. The file stays when the run ends: removing it
 * would let a waiting process lock a file that another one is creating anew. */
#ifndef XD_DISTILL_RUNLOCK_H
#define XD_DISTILL_RUNLOCK_H

#include "core/status.h"

#define RUNLOCK_FILE "run.lock"

typedef struct {
    int fd; /* -1 when not held */
} runlock;

/* Takes the lock of the existing folder dir, without waiting: XD_EIO "DIR: another run (pid N)
 * is using this folder ..." when a process holds it. */
xd_status runlock_take(runlock *l, const char *dir, xd_err *e);
/* Releases a held lock (nothing for one never taken). */
void runlock_release(runlock *l);

#endif
