/* NumPy .npy files: one array, read and written the way numpy.save / numpy.load do.
 *
 * Layout: "\x93NUMPY", major and minor version bytes, the header length (2 bytes little-endian in
 * version 1, 4 bytes in versions 2 and 3), then the header: a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and ending in '\n' so the data starts at a multiple of 64, then the raw data.
 *
 * The reader parses that header strictly as the literal it is (the three keys, each once, in any
 * order; Python spacing and trailing commas allowed; nothing else) and checks it against the file
 * size. It takes little-endian types of the dtype table in C order only; big-endian data and
 * fortran_order True are refused with a message. Teacher-output caches and exported features use
 * this format (version 1, '<f4'). */
#ifndef XD_IO_NPY_H
#define XD_IO_NPY_H

#include <stdio.h>

#include "core/status.h"
#include "io/dtype.h"
#include "io/file.h"

typedef struct {
    io_tensor t;        /* t.name is the path; t.data points into the bytes (or an aligned copy) */
    char *path;         /* our copy of the path, which t.name points to */
    int version;        /* major version of the file: 1, 2 or 3 */
    size_t data_offset; /* where the data starts in the file */
    io_map map;         /* the mapped file (empty when the bytes are the caller's) */
    void *owned; /* aligned copy when the data in the file is not aligned to the element size */
} io_npy;

/* Maps and validates path. On failure *a is left empty (closing it is safe). */
xd_status io_npy_open(const char *path, io_npy *a, xd_err *e);
/* The same on n bytes in memory, name standing for the file (and t.name). The bytes are
 * borrowed: t.data may point into them, so they must outlive a (until io_npy_close). */
xd_status io_npy_open_mem(const void *data, size_t n, const char *name, io_npy *a, xd_err *e);
void io_npy_close(io_npy *a);

/* Writes t (t->name is ignored) to path through io_atomic, as numpy.save does: version 1 (our
 * headers never need the 4-byte length of version 2), header padded with spaces and ended by '\n'
 * so the data starts at a multiple of 64. */
xd_status io_npy_write(const char *path, const io_tensor *t, xd_err *e);

/* Prints a human-readable summary of an open .npy file (version, dtype, shape, size, value
 * range), for `xdistill inspect`. */
void io_npy_describe(const io_npy *a, FILE *out);

#endif
