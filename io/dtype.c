/* Element type table, shape arithmetic and value printing (see dtype.h). */
#include "io/dtype.h"

#include <assert.h>
#include <math.h>
#include <zlib.h>

#include "core/status.h"

typedef struct {
    size_t size;
    const char *name;  /* safetensors */
    const char *descr; /* NumPy, little-endian; NULL if NumPy has no such type */
    int is_float;
} dtype_info;

static const dtype_info dtype_table[] = {
    [IO_F32] = {4, "F32", "<f4", 1},   [IO_F64] = {8, "F64", "<f8", 1},
    [IO_I32] = {4, "I32", "<i4", 0},   [IO_I64] = {8, "I64", "<i8", 0},
    [IO_U8] = {1, "U8", "|u1", 0},     [IO_I8] = {1, "I8", "|i1", 0},
    [IO_U16] = {2, "U16", "<u2", 0},   [IO_I16] = {2, "I16", "<i2", 0},
    [IO_U32] = {4, "U32", "<u4", 0},   [IO_U64] = {8, "U64", "<u8", 0},
    [IO_F16] = {2, "F16", "<f2", 1},   [IO_BF16] = {2, "BF16", NULL, 1},
    [IO_BOOL] = {1, "BOOL", "|b1", 0},
};
static_assert(sizeof dtype_table / sizeof dtype_table[0] == IO_DTYPE_COUNT,
              "dtype_table must describe every io_dtype");

static int dtype_valid(io_dtype t) { return (int)t >= 0 && t < IO_DTYPE_COUNT; }

size_t io_dtype_size(io_dtype t) { return dtype_valid(t) ? dtype_table[t].size : 0; }

const char *io_dtype_name(io_dtype t) { return dtype_valid(t) ? dtype_table[t].name : "?"; }

const char *io_dtype_npy_descr(io_dtype t) { return dtype_valid(t) ? dtype_table[t].descr : NULL; }

int io_dtype_is_float(io_dtype t) { return dtype_valid(t) && dtype_table[t].is_float; }

int io_dtype_from_name(const char *name, io_dtype *t)
{
    for (int i = 0; i < IO_DTYPE_COUNT; i++)
        if (strcmp(dtype_table[i].name, name) == 0) {
            *t = (io_dtype)i;
            return 0;
        }
    return -1;
}

int io_dtype_from_npy_descr(const char *descr, io_dtype *t)
{
    for (int i = 0; i < IO_DTYPE_COUNT; i++) {
        const char *d = dtype_table[i].descr;
        if (!d) continue;
        /* NumPy writes '|' for one-byte types but reads '<' and '=' there too. */
        if (strcmp(d, descr) == 0 ||
            (d[0] == '|' && (descr[0] == '<' || descr[0] == '=') && strcmp(d + 1, descr + 1) == 0)) {
            *t = (io_dtype)i;
            return 0;
        }
    }
    return -1;
}

int io_shape_elements(int ndim, const int64_t *shape, size_t *n)
{
    if (ndim < 0 || ndim > IO_MAX_DIMS) return -1;
    size_t count = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] == 0) count = 0;
    }
    if (count == 0) {
        *n = 0;
        return 0;
    }
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (d > SIZE_MAX || count > SIZE_MAX / d) overflow = 1;
        else count *= (size_t)d;
    }
    if (overflow || count > (size_t)INT64_MAX) return -1;
    *n = count;
    return 0;
}

int io_shape_bytes(io_dtype t, int ndim, const int64_t *shape, size_t *bytes)
{
    size_t n, size = io_dtype_size(t);
    if (size == 0 || io_shape_elements(ndim, shape, &n) != 0) return -1;
    if (n > (size_t)INT64_MAX / size) return -1;
    *bytes = n * size;
    return 0;
}

int io_tensor_elements(const io_tensor *t, size_t *n) { return io_shape_elements(t->ndim, t->shape, n); }

int io_tensor_bytes(const io_tensor *t, size_t *bytes)
{
    return io_shape_bytes(t->dtype, t->ndim, t->shape, bytes);
}

void io_tensor_set(io_tensor *t, const char *name, io_dtype dtype, int ndim, const int64_t *shape,
                   const void *data)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim && i < IO_MAX_DIMS; i++) t->shape[i] = shape[i];
    t->data = data;
}

void io_shape_format(int ndim, const int64_t *shape, char *buf, size_t n)
{
    if (n == 0) return;
    size_t k = 0;
    buf[0] = '\0';
#define SHAPE_PUT(...)                                                                          \
    do {                                                                                        \
        if (k < n) {                                                                            \
            int w_ = snprintf(buf + k, n - k, __VA_ARGS__);                                     \
            k = (w_ < 0) ? n : k + (size_t)w_;                                                  \
        }                                                                                       \
    } while (0)
    SHAPE_PUT("(");
    for (int i = 0; i < ndim && i < IO_MAX_DIMS; i++)
        SHAPE_PUT("%s%lld", i ? ", " : "", (long long)shape[i]);
    SHAPE_PUT(ndim == 1 ? ",)" : ")");
#undef SHAPE_PUT
}

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static double half_to_double(uint16_t h)
{
    int sign = h >> 15, ex = (h >> 10) & 31, man = h & 1023;
    double v;
    if (ex == 0) v = ldexp(man, -24);
    else if (ex == 31) v = man ? NAN : INFINITY;
    else v = ldexp(man + 1024, ex - 25);
    return sign ? -v : v;
}

double io_dtype_load(io_dtype t, const void *data, size_t i)
{
    const unsigned char *p = (const unsigned char *)data + i * io_dtype_size(t);
    switch (t) {
    case IO_F32: { float v; memcpy(&v, p, 4); return v; }
    case IO_F64: { double v; memcpy(&v, p, 8); return v; }
    case IO_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case IO_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case IO_U8: case IO_BOOL: return *p;
    case IO_I8: return (int8_t)*p;
    case IO_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case IO_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case IO_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case IO_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    case IO_F16: { uint16_t v; memcpy(&v, p, 2); return half_to_double(v); }
    case IO_BF16: {
        /* bfloat16 is the top half of a float32 */
        uint16_t v;
        memcpy(&v, p, 2);
        uint32_t bits = (uint32_t)v << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    case IO_DTYPE_COUNT: break;
    }
    return NAN;
}

void io_tensor_print_values(const io_tensor *t, FILE *out, const char *indent)
{
    size_t n;
    if (!t->data || io_tensor_elements(t, &n) != 0) return;
    if (n == 0) {
        fprintf(out, "%s(no elements)\n", indent);
        return;
    }
    double lo = INFINITY, hi = -INFINITY, sum = 0.0;
    size_t bad = 0, finite = 0;
    for (size_t i = 0; i < n; i++) {
        double v = io_dtype_load(t->dtype, t->data, i);
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        finite++;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        sum += v;
    }
    /* integers print in full (up to 2^53); floats with 6 significant digits */
    int digits = io_dtype_is_float(t->dtype) ? 6 : 16;
    if (finite)
        fprintf(out, "%smin %.*g, max %.*g, mean %.6g", indent, digits, lo, digits, hi,
                sum / (double)finite);
    else
        fprintf(out, "%sno finite values", indent);
    if (io_dtype_is_float(t->dtype)) fprintf(out, ", %zu NaN/Inf", bad);
    fprintf(out, "\n%sfirst values:", indent);
    size_t show = n < 8 ? n : 8;
    for (size_t i = 0; i < show; i++)
        fprintf(out, " %.*g", digits, io_dtype_load(t->dtype, t->data, i));
    fprintf(out, "%s\n", show < n ? " ..." : "");
}

void io_print_text(FILE *out, const char *s, size_t len, size_t max_bytes)
{
    size_t show = len < max_bytes ? len : max_bytes;
    /* do not cut a UTF-8 sequence in half: back up over continuation bytes */
    while (show < len && show > 0 && ((unsigned char)s[show] & 0xc0) == 0x80) show--;
    for (size_t i = 0; i < show; i++) {
        char esc[5];
        xd_escape_control((unsigned char)s[i], esc);
        fputs(esc, out);
    }
    if (show < len) fprintf(out, "... (%zu bytes)", len);
}

uint32_t io_crc32(uint32_t crc, const void *data, size_t n)
{
    return n ? (uint32_t)crc32_z(crc, data, n) : crc;
}

const char *const io_sum_names[IO_SUM_COUNT] = {
    [IO_SUM_OK] = "ok", [IO_SUM_DAMAGED] = "damaged", [IO_SUM_NONE] = "no checksum"};
