/* Shared machinery of the set builders (private to modalities/sets/): writing one split's
 * sections, the common metadata, the stratified split, staged output folders, child processes
 * and the summary. */
#ifndef XD_SETS_COMMON_H
#define XD_SETS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/dataset.h"
#include "modalities/sets/sets.h"

/* Further label sections a split may have (label.NAME). */
#define SETS_EXTRA_MAX 2

/* One split in memory, as the builders assemble it. Optional parts are NULL. */
typedef struct {
    size_t n;
    int h, w, c;
    const uint8_t *image;      /* (n, h, w, c) */
    const int32_t *label;      /* (n) */
    const uint8_t *label_mask; /* (n) */
    const int32_t *id;         /* (n) */
    const char *extra_name[SETS_EXTRA_MAX]; /* writes label.<extra_name[k]> for each given */
    const int32_t *extra[SETS_EXTRA_MAX];   /* (n) */
    const char *const *code;   /* (n) source code of each example (emoji code points) */
    const char *const *rationale; /* (n) S/rationale: why the label is right, or NULL */
    size_t n_langs;
    const char *const *langs;         /* (n_langs) */
    const char *const *const *texts;  /* (n_langs)(n) */
    /* scenes */
    int k;                     /* box rows per scene */
    const uint8_t *mask;       /* (n, h, w) */
    const int32_t *boxes;      /* (n, k, 5) x, y, w, h, class; -1 rows when absent */
    const int32_t *items;      /* (n, k) source item index, -1 when absent */
    const uint8_t *n_items;    /* (n) */
} sets_split;

/* Sections sets_write_split adds for s. */
size_t sets_split_sections(const sets_split *s);
/* Writes the sections of one split under "<split>/...". */
xd_status sets_write_split(io_dataset_writer *w, const char *split, const sets_split *s, xd_err *e);
/* name, kind, preparer, seed. */
xd_status sets_write_meta(io_dataset_writer *w, const char *name, sets_kind kind, uint64_t seed,
                          xd_err *e);
xd_status sets_write_meta_int(io_dataset_writer *w, const char *key, long long v, xd_err *e);

/* Metadata pairs that record a set's options (size, languages, ...): written into the file by
 * sets_write_meta_kv, and compared by sets_check_replace with the data set a run would replace. */
xd_status sets_write_meta_kv(io_dataset_writer *w, const io_kv *kv, size_t n, xd_err *e);
/* Before a run replaces the data set file (NULL: out/SETS_DATASET_FILE; out: the --out given,
 * for messages, and when empty nothing is checked): when the file exists and force is 0, it must
 * be a data set made by the same set (name) with the same seed and options (kv), else XD_EARG
 * naming out and the first option that differs, so that a prepare with other options never
 * silently replaces a data set. */
xd_status sets_check_replace(const char *out, const char *file, const char *name, uint64_t seed,
                             const io_kv *kv, size_t n, int force, xd_err *e);

/* A whole dataset file: common metadata, `classes`, whatever extra() adds, then both splits. */
typedef struct {
    const char *name;
    sets_kind kind;
    uint64_t seed;
    const sets_split *sp; /* (SETS_SPLIT_COUNT) */
    size_t n_classes;
    const char *const *classes;
} sets_write;

xd_status sets_write_dataset(const char *path, const sets_write *wr,
                             xd_status (*extra)(io_dataset_writer *w, const void *ctx, xd_err *e),
                             const void *ctx, xd_err *e);

/* Counts per split and class, unlabelled and missing texts; copies the names. */
void sets_summary_fill(sets_summary *sum, sets_kind kind, const char *path,
                       const sets_split sp[SETS_SPLIT_COUNT], size_t n_classes,
                       const char *const *classes);

/* is_test[i] = 1 for round(n_s * fraction) members of each stratum s (strata[i] in
 * [0, n_strata)), chosen by a shuffle of the stratum (in index order) with the stream
 * (seed, s, XD_RNG_SPLIT). */
void sets_split_stratified(const int32_t *strata, size_t n, int n_strata, double fraction,
                           uint64_t seed, uint8_t *is_test);

/* Arrays of splits that sets_split_from regrouped (freed together). */
typedef struct {
    void **owned;
    size_t n, cap;
} sets_regroup;

/* Regroups the examples of sp (both splits) into train and test as the data set file `other` has
 * them, so that sets made from the same examples in other ways (another rendering, size or
 * source of texts) share one split. An example is matched by its code when sp and other both
 * have codes (S/code), else by its id (S/id); a source supplies them in sets_split.code and
 * sets_split.id, and all examples with one key must be in one split of other. Each split lists
 * its examples in other's order (those sharing a key in sp's order), so that the seed that drew
 * sp's own split changes nothing. sp then points into arrays that r owns (sets_regroup_free after the
 * write). Errors name other: a file that is not a verified data set or lacks S/id, a key that is
 * in both of its splits, and examples of sp it does not have (their count and the first few). */
xd_status sets_split_from(const char *other, sets_split sp[SETS_SPLIT_COUNT], sets_regroup *r,
                          xd_err *e);
void sets_regroup_free(sets_regroup *r);
/* The same checks for examples known only by their keys (code NULL: by id), so that a builder
 * fails before its slow part: sets_split_from on a split of nothing but keys. */
xd_status sets_split_from_check(const char *other, const int32_t *id, const char *const *code,
                                size_t n, xd_err *e);

/* An output folder built under a temporary sibling name and moved into place by commit. */
typedef struct {
    char *dir; /* final folder */
    char *tmp; /* DIR.tmp-PID, removed by SIGINT/SIGTERM (io_temp_add) */
    int slot;  /* its slot in the temporary-path registry */
} sets_outdir;

/* Creates DIR.tmp-PID (and removes stale DIR.tmp-PID folders of processes that are gone). */
xd_status sets_outdir_open(sets_outdir *o, const char *dir, xd_err *e);
/* Path of rel inside the temporary folder (new string). */
char *sets_outdir_path(const sets_outdir *o, const char *rel);
/* A new folder is renamed into place; into an existing one the files are renamed one by one,
 * SETS_DATASET_FILE last. Frees o. */
xd_status sets_outdir_commit(sets_outdir *o, xd_err *e);
/* Removes the temporary folder and frees o (safe twice). */
void sets_outdir_abort(sets_outdir *o);

/* Runs argv (argv[0] searched in PATH) with stdin from /dev/null. stdout is captured into a new
 * string when out is not NULL; whatever else the child prints goes to log_path (or /dev/null). A
 * child that cannot start or exits non-zero is XD_EIO, with the last line of the log. */
xd_status sets_run(char *const argv[], const char *log_path, char **out, xd_err *e);

/* Seconds on a monotonic clock. */
double sets_now(void);

#endif
