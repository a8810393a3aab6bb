/* IDX arrays (the MNIST / Fashion-MNIST container), plain or gzip-compressed.
 *
 * Layout (all integers big-endian):
 *   bytes 0-1  zero
 *   byte  2    type code: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
 *   byte  3    number of dimensions (1..IO_IDX_MAX_DIMS here)
 *   then one u32 per dimension, then the elements in row-major order.
 * So 0x00000803 is "u8, 3 dims" (images: n, rows, cols) and 0x00000801 "u8, 1 dim" (labels).
 *
 * The reader trusts nothing in the header: the element count must stay under a limit before any
 * allocation, it must be possible for the file (plain: exact size; gzip: what deflate can expand
 * to at most), and the (decompressed) data must be exactly as long as announced. A gzip file is
 * recognised by its magic 1f 8b, not by its name; a truncated or corrupt gzip stream is an error.
 * Elements come back in host byte order. */
#ifndef XD_IO_IDX_H
#define XD_IO_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define IO_IDX_MAX_DIMS 4
/* Default element limit when the caller passes 0: 2^28 (Fashion-MNIST train is 47M). */
#define IO_IDX_DEFAULT_MAX_ELEMS ((size_t)1 << 28)

typedef enum {
    IO_IDX_U8,
    IO_IDX_I8,
    IO_IDX_I16,
    IO_IDX_I32,
    IO_IDX_F32,
    IO_IDX_F64,
    IO_IDX_TYPE_COUNT
} io_idx_type;

typedef enum { IO_IDX_PLAIN, IO_IDX_GZIP } io_idx_compress;

typedef struct {
    io_idx_type type;
    int ndim;
    uint32_t dims[IO_IDX_MAX_DIMS]; /* unused entries are 0 */
    size_t count;                   /* product of dims */
    void *data;                     /* (dims...) of the element type, host byte order */
} io_idx;

/* "u8", "i16", ... */
const char *io_idx_type_name(io_idx_type t);
/* bytes per element */
size_t io_idx_type_size(io_idx_type t);

/* Reads path into out (which the caller frees with io_idx_free). max_elems 0 = the default.
 * On failure out is left empty and e names the file and the offset. */
xd_status io_idx_read(const char *path, size_t max_elems, io_idx *out, xd_err *e);
/* The same reader on n bytes in memory (plain or gzip); name stands for the file in messages. */
xd_status io_idx_read_mem(const void *data, size_t n, const char *name, size_t max_elems,
                          io_idx *out, xd_err *e);

/* Checks that x has the given type and number of dimensions; the message names path. */
xd_status io_idx_expect(const io_idx *x, io_idx_type type, int ndim, const char *path, xd_err *e);

/* Writes x to path (atomically), plain or gzip. count must equal the product of dims. */
xd_status io_idx_write(const char *path, const io_idx *x, io_idx_compress c, xd_err *e);

void io_idx_free(io_idx *x);

#endif
