/* Element types and the tensor descriptor shared by the container formats (NPY, safetensors,
 * the dataset file).
 *
 * One enum names every element type the toolkit stores; a single table gives each its size, its
 * safetensors name ("F32") and its NumPy descr ("<f4"), so the three formats cannot disagree.
 * The enum values are written into dataset files: append new types at the end, never renumber.
 *
 * io_tensor describes an array without owning it: name, type, C-order shape and a pointer to
 * little-endian data. Readers hand out io_tensor views into their mapped files; writers take a
 * list of them. Element and byte counts are computed with overflow checks, because the shapes
 * usually come from files. */
#ifndef XD_IO_DTYPE_H
#define XD_IO_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the container formats store raw little-endian data; this host is big-endian"
#endif

typedef enum {
    IO_F32,
    IO_F64,
    IO_I32,
    IO_I64,
    IO_U8,
    IO_I8,
    IO_U16,
    IO_I16,
    IO_U32,
    IO_U64,
    IO_F16,
    IO_BF16,
    IO_BOOL,
    IO_DTYPE_COUNT
} io_dtype;

/* Most dimensions any container stores (NumPy allows more; we never need them). */
#define IO_MAX_DIMS 8

typedef struct {
    const char *name;
    io_dtype dtype;
    int ndim;
    int64_t shape[IO_MAX_DIMS]; /* C order: the last index varies fastest */
    const void *data;           /* little-endian elements; NULL when only the shape matters */
} io_tensor;

/* A string key/value pair (metadata of safetensors and dataset files). */
typedef struct {
    const char *key;
    const char *value;
} io_kv;

size_t io_dtype_size(io_dtype t);
/* Safetensors name: "F32", "I64", "U8", ... */
const char *io_dtype_name(io_dtype t);
/* NumPy descr: "<f4", "|u1", ...; NULL when NumPy has no such type (BF16). */
const char *io_dtype_npy_descr(io_dtype t);
/* Table look-ups; return 0 and set *t, or -1 for an unknown word. */
int io_dtype_from_name(const char *name, io_dtype *t);
int io_dtype_from_npy_descr(const char *descr, io_dtype *t);
/* Whether the type is a (binary) floating-point type. */
int io_dtype_is_float(io_dtype t);

/* prod(shape) into *n. Returns -1 if ndim is outside [0, IO_MAX_DIMS], a dimension is negative,
 * or the product (or product * element size for the bytes variant) does not fit in size_t or
 * int64_t. A zero dimension gives 0 elements, whatever the others are. */
int io_shape_elements(int ndim, const int64_t *shape, size_t *n);
int io_shape_bytes(io_dtype t, int ndim, const int64_t *shape, size_t *bytes);
int io_tensor_elements(const io_tensor *t, size_t *n);
int io_tensor_bytes(const io_tensor *t, size_t *bytes);
/* Sets t to a named tensor of up to IO_MAX_DIMS dimensions (extra entries zeroed). */
void io_tensor_set(io_tensor *t, const char *name, io_dtype dtype, int ndim, const int64_t *shape,
                   const void *data);

/* Python-style shape text into buf: "(128, 784)", "(5,)", "()". Always NUL-terminated. */
void io_shape_format(int ndim, const int64_t *shape, char *buf, size_t n);
/* Reads element i as a double (F16 and BF16 converted); for statistics and printing. */
double io_dtype_load(io_dtype t, const void *data, size_t i);
/* Prints "min .. max, mean m" (and the NaN/Inf count for float types) of a tensor's data, then
 * the first few values; for the describe functions behind `xdistill inspect`. */
void io_tensor_print_values(const io_tensor *t, FILE *out, const char *indent);

/* Prints len bytes of text on one line: control characters escaped (\n, \x01), cut after
 * max_bytes with "... (N bytes)". For metadata and string tables in the describe output. */
void io_print_text(FILE *out, const char *s, size_t len, size_t max_bytes);

/* Checksums of stored data: CRC-32 as zlib, PNG and Python's zlib.crc32 compute it (zlib's own
 * code, about 2 GB/s on one core), continuing from crc (0 to start). Safetensors files keep one
 * per tensor, dataset files one per section; see their headers. */
uint32_t io_crc32(uint32_t crc, const void *data, size_t n);

/* What a stored checksum says about its data. */
typedef enum { IO_SUM_OK, IO_SUM_DAMAGED, IO_SUM_NONE, IO_SUM_COUNT } io_sum;
/* "ok", "damaged", "no checksum" */
extern const char *const io_sum_names[IO_SUM_COUNT];

/* Unaligned little-endian loads and stores of header fields. */
static inline uint32_t io_le_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint64_t io_le_u64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void io_le_put_u32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }
/* A big-endian 32-bit field (IDX headers, PNG chunk lengths). */
static inline uint32_t io_be_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void io_le_put_u64(void *p, uint64_t v) { memcpy(p, &v, sizeof v); }

#endif
