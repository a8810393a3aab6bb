/* Files: atomic writes, temporary paths, whole-file reads with a size limit, read-only memory
 * maps, folders.
 *
 * Every file xdistill writes goes through io_atomic: the bytes go to a temporary file beside the
 * target, TARGET.tmp.PID.XXXXXX, which is renamed over the target only when complete, so a crash
 * or an error never leaves a half-written output under the real name.
 *
 * Temporary paths (those files, and folders such as prepare's DIR.tmp-PID) are listed in one
 * registry while they exist. SIGINT or SIGTERM removes every listed path, then the signal is
 * raised again with the action it had before, so the exit status still says "killed by the
 * signal". The handler only calls async-signal-safe functions on paths built before the signal:
 * unlink, and for a folder a walk with open/getdents64/unlinkat/rmdir (getdents64 through
 * syscall(2), which Linux runs without locks) instead of nftw, which allocates. The registry has
 * IO_TEMP_SLOTS slots of IO_TEMP_PATH_MAX bytes; a path that does not fit is simply not listed.
 * Whatever a harder kill (SIGKILL, power loss) leaves is removed by the next write into the same
 * folder: a temporary name carries its process id, and io_temp_clean_stale removes the ones
 * whose process no longer exists (kill(pid, 0) fails with ESRCH), never a live process's. */
#ifndef XD_IO_FILE_H
#define XD_IO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "core/status.h"

typedef struct {
    char *path;     /* final name */
    char *tmp_path; /* temporary name in the same folder (same file system, so rename is atomic) */
    FILE *f;
    char *buf;      /* the stream's buffer when io_atomic_blocks set one */
    size_t block;   /* its size (0: none) */
    int slot;       /* its place in the temporary-path registry, -1 if none */
} io_atomic;

/* Creates the temporary file (clearing stale temporary files of dead processes in the folder).
 * Refuses a path that names something other than a regular file (a folder, device or pipe), which
 * the rename would replace. */
xd_status io_atomic_open(io_atomic *w, const char *path, xd_err *e);
xd_status io_atomic_write(io_atomic *w, const void *data, size_t n, xd_err *e);
/* Call before the first write: every write(2) of the file then starts at a multiple of `bytes`,
 * and all are whole blocks but the one before a seek and the last (with glibc's stdio; elsewhere
 * the bytes are the same and only the writes' sizes may differ). With blocks of the huge page size
 * (2 MiB on x86-64) a large file reaches the page cache in huge pages where the kernel and file
 * system keep large folios (measured with ext4 on Linux 6.18), so that a reader which maps it
 * needs one address translation per 2 MiB instead of one per 4 KiB. */
void io_atomic_blocks(io_atomic *w, size_t bytes);
/* The blocks for a file that is mapped and read at random (a data set, a teacher cache): the huge
 * page size of x86-64, and of arm64 with 4 KiB pages. */
#define IO_HUGE_BLOCK ((size_t)2 << 20)
/* Moves to byte `at` of the file. The move first writes out what the stream holds, so a write
 * that failed there (a full disk) is reported as the failed write it is, with its reason. */
xd_status io_atomic_seek(io_atomic *w, off_t at, xd_err *e);
/* Flushes, syncs, closes and renames; on failure the temporary file is removed. */
xd_status io_atomic_commit(io_atomic *w, xd_err *e);
/* Closes and removes the temporary file; safe to call after a failed commit or twice. */
void io_atomic_abort(io_atomic *w);

#define IO_TEMP_SLOTS 64
#define IO_TEMP_PATH_MAX 1024

/* Lists a temporary file or folder (tree = 1: removed with everything in it) for removal on
 * SIGINT/SIGTERM; installs the handlers on first use (not over a signal that is ignored). Returns
 * the slot for io_temp_drop, or -1 when the registry is full or the path too long. */
int io_temp_add(const char *path, int tree);
/* Takes a path off the list (slot -1 is ignored). Call it once the path is renamed or removed. */
void io_temp_drop(int slot);
/* Removes the stale temporary entries of folder dir: NAME.tmp.PID.XXXXXX and NAME.tmp-PID whose
 * process PID no longer exists, and, when base is given, base.tmp.XXXXXX (the names of older
 * builds, without a process id) last modified more than a day ago. Failures are ignored. */
void io_temp_clean_stale(const char *dir, const char *base);

/* Opens path for reading, only if it is a regular file: a pipe, device or folder is refused at once
 * ("not a regular file"), without waiting for a writer as opening a FIFO would. *fd is a blocking
 * descriptor; *st (when not NULL) the file's status. */
xd_status io_open_regular(const char *path, int *fd, struct stat *st, xd_err *e);

/* Refuses an output path that names the same file as one of the n inputs (NULL entries skipped),
 * which writing the output would destroy: "OUT: is also an input of this command (IN); write the
 * output to another path". Paths that do not exist yet pass. */
xd_status io_check_output(const char *out, const char *const *inputs, int n, xd_err *e);

/* Reads a whole file into a new buffer (NUL-terminated for convenience, not counted in *n).
 * Fails with XD_EFORMAT if the file is larger than max_bytes. Caller frees *data. */
xd_status io_read_all(const char *path, size_t max_bytes, void **data, size_t *n, xd_err *e);

typedef struct {
    void *data;
    size_t size;
    long long mtime_s, mtime_ns; /* the file's modification time when it was mapped */
    long long ctime_s, ctime_ns; /* its status change time (which no utimes can set back) */
    unsigned long long dev, ino; /* the file itself: another file at the same path differs */
} io_map;

/* Maps a whole file read-only. An empty file maps to data == NULL, size == 0. */
xd_status io_map_open(const char *path, io_map *m, xd_err *e);
void io_map_close(io_map *m);
/* The FNV-1a 64 (core/hash.h) of a whole file's bytes, from the offset basis: the identity of a
 * checkpoint in a pipeline step's stamp and in a run's resume state. */
xd_status io_file_hash(const char *path, uint64_t *h, xd_err *e);

/* mkdir -p */
xd_status io_mkdir_p(const char *path, xd_err *e);
/* mkdir -p that says what it made: *made is the outermost folder it created (a new string), NULL
 * when path was there already; on failure it removes the folders it made. made may be NULL. */
xd_status io_mkdir_made(const char *path, char **made, xd_err *e);
/* Undoes io_mkdir_made: path with everything in it, then each folder above it up to made that is
 * empty. Only for folders this process made and no other writes into. */
void io_unmake_dir(const char *path, const char *made);
/* rm -r of a folder (or file) we made; links are removed, never followed. Async-signal-safe. */
void io_remove_tree(const char *path);
/* Joins dir and name with one '/', into a new string. */
char *io_path_join(const char *dir, const char *name);
/* The folder part of a path ("." if none), into a new string. */
char *io_path_dir(const char *path);
/* 1 when the file name of path (after its last '/') ends in suffix, in any case, with something
 * before it: "a/P.TSV" ends in ".tsv", "a.jsonl.d/x.tsv" not in ".jsonl", "a/.tsv" not at all. */
int io_path_has_suffix(const char *path, const char *suffix);

#endif
