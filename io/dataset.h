/* The dataset container: one file holding a whole prepared dataset, read through mmap.
 *
 * `xdistill prepare` writes one of these; training and evaluation map it and take typed views of
 * its sections without copying. Layout (all integers little-endian):
 *
 *   offset 0   magic "XDSET\0\0\0"            8 bytes
 *          8   u32 format version (2)
 *         12   u32 section count
 *         16   u64 total file size            (catches truncation and appended bytes)
 *         24   u32 table checksum: CRC-32 (io_crc32) of bytes [0, 24) and of the section table
 *         28   u32 reserved, 0
 *         32   section table: one 160-byte entry per section
 *                name[64] (NUL-padded)  u32 kind  u32 dtype  u32 ndim  u32 checksum (CRC-32 of
 *                the section's bytes)  i64 shape[8] (unused dimensions 0)  u64 byte offset
 *                u64 byte length
 *   then the section data, each section starting at a multiple of 64.
 *
 * Version 1 (older builds) is the same without checksums: offset 24 is a u64 0 and each entry's
 * checksum field is 0. Both are read; writers write version 2.
 *
 * Sections are named arrays ("train/image" U8 (N, 28, 28, 1), "train/label" I32 (N), ...) or
 * string tables ("classes"): n strings stored as u64 offsets[n + 1] followed by the bytes of the
 * strings, each ending in a NUL. A string table has dtype U8, ndim 1 and shape (n). The key/value
 * metadata (dataset name, preparer version, seed) is the string table "__metadata__" holding
 * key, value, key, value, ...
 *
 * io_dataset_open validates the whole table (and, in version 2, its checksum) and every string
 * table before returning, so the views it hands out can be used without further checks. The
 * sections' data is checked against their checksums only on request (io_dataset_verify, a pass
 * over the whole file at about 2 GB/s), or once per file state (io_dataset_open_verified). */
#ifndef XD_IO_DATASET_H
#define XD_IO_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "io/dtype.h"

#define IO_DATASET_VERSION 2
/* Longest section name in bytes (the table stores 64 with the NUL). */
#define IO_DATASET_NAME_MAX 63
/* More sections than this is not a dataset we wrote. */
#define IO_DATASET_MAX_SECTIONS 65536

typedef enum { IO_SECTION_ARRAY, IO_SECTION_STRINGS, IO_SECTION_KIND_COUNT } io_section_kind;

/* A view of a string table inside a mapped dataset. */
typedef struct {
    const char *name;
    size_t n;
    const uint64_t *offsets; /* n + 1 offsets into bytes; string i is [offsets[i], offsets[i+1]) */
    const char *bytes;       /* with its NUL */
} io_strings;

/* String i (NUL-terminated) and its length without the NUL; NULL if i >= n. */
const char *io_strings_get(const io_strings *s, size_t i, size_t *len);

/* ---------------------------------------------------------------- writing */

typedef struct io_dataset_writer io_dataset_writer;

/* Starts a dataset at path (through io_atomic) with room for up to max_sections sections (0 means
 * 64); the table is reserved up front so section data can be streamed straight to the file. */
xd_status io_dataset_writer_open(const char *path, size_t max_sections, io_dataset_writer **w,
                                 xd_err *e);
/* Adds a whole array in one go (t->name, dtype, shape, data). */
xd_status io_dataset_add(io_dataset_writer *w, const io_tensor *t, xd_err *e);
/* Streams an array: begin with its name, type and shape, write its bytes in any number of pieces,
 * end (which checks that exactly dtype size * elements bytes came). */
xd_status io_dataset_begin(io_dataset_writer *w, const char *name, io_dtype dtype, int ndim,
                           const int64_t *shape, xd_err *e);
xd_status io_dataset_write(io_dataset_writer *w, const void *data, size_t bytes, xd_err *e);
xd_status io_dataset_end(io_dataset_writer *w, xd_err *e);
/* Adds a string table of n NUL-terminated strings. */
xd_status io_dataset_add_strings(io_dataset_writer *w, const char *name, const char *const *strs,
                                 size_t n, xd_err *e);
/* Sets a metadata value (a later call with the same key replaces it). */
xd_status io_dataset_set_meta(io_dataset_writer *w, const char *key, const char *value, xd_err *e);
/* Writes the metadata and the table and renames the file into place. Frees w, also on failure.
 * After any failed call, finish fails too and leaves nothing behind. */
xd_status io_dataset_finish(io_dataset_writer *w, xd_err *e);
/* Drops the temporary file and frees w (NULL is fine). */
void io_dataset_writer_abort(io_dataset_writer *w);

/* ---------------------------------------------------------------- reading */

typedef struct io_dataset io_dataset;

/* Maps and validates path; *ds is NULL on failure. */
xd_status io_dataset_open(const char *path, io_dataset **ds, xd_err *e);
/* The same on n bytes in memory (aligned as malloc aligns), name standing for the file. The bytes
 * are borrowed: the views point into them, so they must outlive ds (until io_dataset_close). */
xd_status io_dataset_open_mem(const void *data, size_t n, const char *name, io_dataset **ds,
                              xd_err *e);
void io_dataset_close(io_dataset *ds);

/* Opens path like io_dataset_open and verifies every section's checksum, unless the record
 * io_dataset_cache_dir(path)/NAME.verified says that this file, at its present size and
 * modification time, was verified before. A successful verification writes that record (through
 * io_atomic); where it cannot be written (a read-only disk) the file is simply verified again next
 * time. Version-1 files have nothing to verify. */
xd_status io_dataset_open_verified(const char *path, io_dataset **ds, xd_err *e);
/* Verifies every section; the first damaged one fails (XD_EFORMAT) with "FILE: section 'NAME':
 * checksum does not match, the data is damaged". With report, prints one line per section (ok,
 * damaged), or one line saying a version-1 file has no checksums. */
xd_status io_dataset_verify(const io_dataset *ds, FILE *report, xd_err *e);
/* Section i's data against its stored checksum (IO_SUM_NONE in a version-1 file). */
io_sum io_dataset_section_sum(const io_dataset *ds, size_t i);
/* The file's format version (1: without checksums). */
int io_dataset_version(const io_dataset *ds);
/* "<the data set's folder>/cache" (new string): where what is derived from a data set is kept,
 * teacher outputs and the record of its verification. */
char *io_dataset_cache_dir(const char *path);

const char *io_dataset_path(const io_dataset *ds);
/* Sections in file order (the metadata table included). */
size_t io_dataset_count(const io_dataset *ds);
const char *io_dataset_section_name(const io_dataset *ds, size_t i);
io_section_kind io_dataset_section_kind(const io_dataset *ds, size_t i);

/* Typed view of an array section; NULL if there is no array of that name. */
const io_tensor *io_dataset_find(const io_dataset *ds, const char *name);
/* View of a string table; NULL if there is no string table of that name. */
const io_strings *io_dataset_find_strings(const io_dataset *ds, const char *name);
/* Like io_dataset_find, but a missing section, another dtype or another number of dimensions
 * (ndim < 0: any) is an error naming the file and the section. */
xd_status io_dataset_require(const io_dataset *ds, const char *name, io_dtype dtype, int ndim,
                             const io_tensor **t, xd_err *e);
xd_status io_dataset_require_strings(const io_dataset *ds, const char *name, const io_strings **s,
                                     xd_err *e);

/* Metadata value of key, or NULL; and all pairs in file order. */
const char *io_dataset_meta(const io_dataset *ds, const char *key);
size_t io_dataset_meta_count(const io_dataset *ds);
const io_kv *io_dataset_meta_at(const io_dataset *ds, size_t i);

/* Mixes the identity of the data set file at path into *h (FNV-1a fields, core/hash.h): its base
 * name, size, modification time in nanoseconds and metadata pairs, as the file opened then holds
 * them. Preparing the set again, or another set under the same name, changes it; moving the
 * folder does not. */
xd_status io_dataset_identity(const char *path, uint64_t *h, xd_err *e);
/* The same of a data set already open: the file as it was when mapped, whatever the path holds
 * now (a set prepared again under the same name while it is open is another file). */
void io_dataset_identity_of(const io_dataset *ds, uint64_t *h);

/* Prints a human-readable summary (metadata, each section's kind, dtype, shape, size and value
 * range, the first strings of each string table), for `xdistill inspect`. */
void io_dataset_describe(const io_dataset *ds, FILE *out);

#endif
