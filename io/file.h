/* Files: atomic writes, whole-file reads with a size limit, read-only memory maps, folders.
 *
 * Every file xdistill writes goes through io_atomic: the bytes go to a temporary file beside the
 * target, which is renamed over the target only when complete, so a crash or an error never leaves
 * a half-written output under the real name. */
#ifndef XD_IO_FILE_H
#define XD_IO_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

typedef struct {
    char *path;     /* final name */
    char *tmp_path; /* temporary name in the same folder (same file system, so rename is atomic) */
    FILE *f;
} io_atomic;

xd_status io_atomic_open(io_atomic *w, const char *path, xd_err *e);
xd_status io_atomic_write(io_atomic *w, const void *data, size_t n, xd_err *e);
/* Flushes, syncs, closes and renames; on failure the temporary file is removed. */
xd_status io_atomic_commit(io_atomic *w, xd_err *e);
/* Closes and removes the temporary file; safe to call after a failed commit or twice. */
void io_atomic_abort(io_atomic *w);

/* Reads a whole file into a new buffer (NUL-terminated for convenience, not counted in *n).
 * Fails with XD_EFORMAT if the file is larger than max_bytes. Caller frees *data. */
xd_status io_read_all(const char *path, size_t max_bytes, void **data, size_t *n, xd_err *e);

typedef struct {
    void *data;
    size_t size;
} io_map;

/* Maps a whole file read-only. An empty file maps to data == NULL, size == 0. */
xd_status io_map_open(const char *path, io_map *m, xd_err *e);
void io_map_close(io_map *m);

/* mkdir -p */
xd_status io_mkdir_p(const char *path, xd_err *e);
/* rm -r of a folder (or file) we made; links are removed, never followed. */
void io_remove_tree(const char *path);
/* Joins dir and name with one '/', into a new string. */
char *io_path_join(const char *dir, const char *name);
/* The folder part of a path ("." if none), into a new string. */
char *io_path_dir(const char *path);

#endif
