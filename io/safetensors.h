/* Safetensors files: the checkpoint format, loadable from Python without our code.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON header, then the raw
 * little-endian tensor data. The header maps each tensor name to
 *   {"dtype":"F32","shape":[128,784],"data_offsets":[begin,end]}
 * (offsets relative to the start of the data area) and may hold "__metadata__", an object of
 * string values (we keep the recipe and the model description there).
 *
 * The writer puts tensors contiguously in the order given, with no holes, and pads the header
 * with spaces so the data starts 8-byte aligned. The reader maps the file and validates all of
 * it before handing anything out: the header length, the JSON, each entry's dtype, shape and
 * offsets, and that the tensors tile the data area exactly (no overlaps, no gaps).
 *
 * Checksums: the writer adds one metadata entry per tensor, "crc32.NAME" = 8 lowercase hex digits
 * of the CRC-32 of the tensor's data bytes (io_crc32; Python: f"{zlib.crc32(data):08x}"), and
 * leaves the tensor bytes exactly as they were. io_st_open verifies every tensor against its entry
 * and refuses a file whose data does not match, naming the tensor. A file without any "crc32."
 * entry (older builds, other writers) opens unverified; a file with some must have one for every
 * tensor. The entries are not listed among the metadata (io_st_meta_*). */
#ifndef XD_IO_SAFETENSORS_H
#define XD_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdio.h>

#include "core/status.h"
#include "io/dtype.h"

/* Headers larger than this are refused (a header describes tensors, it never needs this). */
#define IO_ST_MAX_HEADER ((size_t)100 << 20)

typedef struct io_st_file io_st_file;

/* Writes n tensors and n_meta metadata pairs (NULL if none) to path through io_atomic, with the
 * tensors' checksums. Names must be unique; "__metadata__" and metadata keys starting with
 * "crc32." are reserved. */
xd_status io_st_write(const char *path, const io_tensor *tensors, size_t n, const io_kv *meta,
                      size_t n_meta, xd_err *e);

/* Maps and validates path and verifies the tensors' checksums; *f is NULL on failure. */
xd_status io_st_open(const char *path, io_st_file **f, xd_err *e);
/* The same without reading the tensor data (for io_st_tensor_sum, one tensor at a time). */
xd_status io_st_open_unverified(const char *path, io_st_file **f, xd_err *e);
/* Tensor i's data against its stored checksum (IO_SUM_NONE: the file has none for it). */
io_sum io_st_tensor_sum(const io_st_file *f, size_t i);
/* Whether the file stores any checksum. */
int io_st_has_sums(const io_st_file *f);
/* Checks every tensor against its checksum; the first damaged one fails (XD_EFORMAT) with
 * "FILE: tensor 'NAME': checksum does not match, the data is damaged". With report, prints one
 * line per tensor (ok, damaged, no checksum), or one line saying the file has no checksums. */
xd_status io_st_verify(const io_st_file *f, FILE *report, xd_err *e);
/* The same on n bytes in memory, name standing for the file. The bytes are borrowed: tensor data
 * points into them, so they must outlive f (until io_st_close). */
xd_status io_st_open_mem(const void *data, size_t n, const char *name, io_st_file **f, xd_err *e);
void io_st_close(io_st_file *f);

const char *io_st_path(const io_st_file *f);
/* Tensors in the order of the header. Their data points into the map, or into an aligned copy
 * when the file places a tensor at an offset that is not a multiple of its element size. */
size_t io_st_count(const io_st_file *f);
const io_tensor *io_st_tensor(const io_st_file *f, size_t i);
/* NULL when there is no tensor of that name. */
const io_tensor *io_st_find(const io_st_file *f, const char *name);

/* Metadata in header order; io_st_meta gives the value of key, or NULL. */
size_t io_st_meta_count(const io_st_file *f);
const io_kv *io_st_meta_at(const io_st_file *f, size_t i);
const char *io_st_meta(const io_st_file *f, const char *key);

/* Checks that the file holds exactly the expected tensors (their data is ignored): each present
 * with the same dtype and shape, none extra. Fails with XD_ESHAPE and a message naming the first
 * problem, e.g. "model.safetensors: tensor 'fc1.weight' has shape (128, 784), expected
 * (128, 3136)", and how many more there are. */
xd_status io_st_check(const io_st_file *f, const io_tensor *expected, size_t n, xd_err *e);

/* Prints a human-readable summary of an open file: metadata, then each tensor with dtype, shape,
 * bytes and value range, for `xdistill inspect`. */
void io_st_describe(const io_st_file *f, FILE *out);

#endif
