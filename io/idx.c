/* IDX reader and writer (see idx.h).
 *
 * The file is memory-mapped; a byte source hands out either the plain bytes or the output of
 * zlib's inflate, so header, data and "is there anything after the data" are read the same way
 * for both, and every error can name the (decompressed) offset where it happened. */
#define ZLIB_CONST
#include "io/idx.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/mem.h"
#include "io/dtype.h"
#include "io/file.h"

typedef struct {
    const char *name;
    uint8_t code; /* the type byte in the magic */
    size_t size;
} idx_type_info;

static const idx_type_info idx_types[] = {
    [IO_IDX_U8] = {"u8", 0x08, 1},   [IO_IDX_I8] = {"i8", 0x09, 1},
    [IO_IDX_I16] = {"i16", 0x0B, 2}, [IO_IDX_I32] = {"i32", 0x0C, 4},
    [IO_IDX_F32] = {"f32", 0x0D, 4}, [IO_IDX_F64] = {"f64", 0x0E, 8},
};
static_assert(sizeof idx_types / sizeof idx_types[0] == IO_IDX_TYPE_COUNT,
              "idx_types must describe every io_idx_type");

/* Deflate cannot expand a byte of input into more than about 1032 bytes of output; with slack for
 * headers this bounds what a gzip file of a given size can announce honestly. */
#define IDX_GZIP_MAX_RATIO 1032u
#define IDX_GZIP_SLACK     4096u

const char *io_idx_type_name(io_idx_type t)
{
    return (t >= 0 && t < IO_IDX_TYPE_COUNT) ? idx_types[t].name : "unknown";
}

size_t io_idx_type_size(io_idx_type t)
{
    return (t >= 0 && t < IO_IDX_TYPE_COUNT) ? idx_types[t].size : 0;
}

void io_idx_free(io_idx *x)
{
    free(x->data);
    memset(x, 0, sizeof *x);
}

// ----------------------------------------------------------------------------------------------
// byte source: plain bytes or inflate over the mapped file

typedef struct {
    const char *path;
    const uint8_t *src; /* (src_n) the mapped file */
    size_t src_n;
    size_t plain_off; /* plain: next byte to hand out */
    int gz;
    z_stream zs;
    int zs_live;
    int ended;  /* gzip: the last member's trailer was read and checked */
    size_t pos; /* bytes handed out so far (decompressed offset) */
} idx_src;

static xd_status src_open(idx_src *s, const char *path, const uint8_t *data, size_t n, xd_err *e)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->src = data;
    s->src_n = n;
    s->gz = n >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (s->gz) {
        /* 15 + 16: gzip wrapper only, largest window */
        if (inflateInit2(&s->zs, 15 + 16) != Z_OK)
            return xd_fail(e, XD_ENOMEM, "%s: cannot start gzip decompression", path);
        s->zs_live = 1;
        s->zs.next_in = data;
        s->zs.avail_in = 0;
    }
    return XD_OK;
}

static void src_close(idx_src *s)
{
    if (s->zs_live) inflateEnd(&s->zs);
    s->zs_live = 0;
}

static size_t src_in_off(const idx_src *s)
{
    return (size_t)(s->zs.next_in - s->src);
}

/* Fills buf with up to n bytes; *got < n only at the true end of the data. */
static xd_status src_read(idx_src *s, uint8_t *buf, size_t n, size_t *got, xd_err *e)
{
    *got = 0;
    if (!s->gz) {
        size_t k = s->src_n - s->plain_off;
        if (k > n) k = n;
        if (k) memcpy(buf, s->src + s->plain_off, k);
        s->plain_off += k;
        s->pos += k;
        *got = k;
        return XD_OK;
    }
    size_t filled = 0;
    while (filled < n && !s->ended) {
        if (s->zs.avail_in == 0) {
            size_t left = s->src_n - src_in_off(s);
            s->zs.avail_in = (uInt)(left > UINT_MAX ? UINT_MAX : left);
        }
        size_t want = n - filled;
        if (want > (size_t)1 << 30) want = (size_t)1 << 30;
        s->zs.next_out = buf + filled;
        s->zs.avail_out = (uInt)want;
        int r = inflate(&s->zs, Z_NO_FLUSH);
        filled += want - s->zs.avail_out;
        s->pos += want - s->zs.avail_out;
        if (r == Z_STREAM_END) {
            size_t off = src_in_off(s);
            if (off == s->src_n) {
                s->ended = 1;
                break;
            }
            /* Another gzip member may follow (concatenated files are valid gzip). */
            if (s->src_n - off >= 2 && s->src[off] == 0x1f && s->src[off + 1] == 0x8b) {
                inflateReset(&s->zs);
                continue;
            }
            return xd_fail(e, XD_EFORMAT,
                           "%s: %zu bytes that are not gzip after the compressed stream "
                           "(compressed offset %zu)",
                           s->path, s->src_n - off, off);
        }
        if (r == Z_OK) continue;
        if (r == Z_BUF_ERROR && s->zs.avail_in == 0 && src_in_off(s) == s->src_n)
            return xd_fail(e, XD_EFORMAT,
                           "%s: gzip stream truncated at compressed offset %zu "
                           "(after %zu decompressed bytes)",
                           s->path, s->src_n, s->pos);
        if (r == Z_MEM_ERROR)
            return xd_fail(e, XD_ENOMEM, "%s: out of memory while decompressing", s->path);
        return xd_fail(e, XD_EFORMAT, "%s: corrupt gzip data at compressed offset %zu: %s", s->path,
                       src_in_off(s), s->zs.msg ? s->zs.msg : "inflate failed");
    }
    *got = filled;
    return XD_OK;
}

// ----------------------------------------------------------------------------------------------
// reading

/* IDX is big-endian; swap each element in place on little-endian hosts (no-op for 1 byte). */
static void swap_elements(void *data, size_t count, size_t size)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint8_t *p = data;
    if (size == 2) {
        for (size_t i = 0; i < count; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            v = __builtin_bswap16(v);
            memcpy(p + 2 * i, &v, 2);
        }
    } else if (size == 4) {
        for (size_t i = 0; i < count; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            v = __builtin_bswap32(v);
            memcpy(p + 4 * i, &v, 4);
        }
    } else if (size == 8) {
        for (size_t i = 0; i < count; i++) {
            uint64_t v;
            memcpy(&v, p + 8 * i, 8);
            v = __builtin_bswap64(v);
            memcpy(p + 8 * i, &v, 8);
        }
    }
#else
    (void)data;
    (void)count;
    (void)size;
#endif
}

static void dims_text(const io_idx *x, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int d = 0; d < x->ndim && k < cap; d++) {
        int w = snprintf(buf + k, cap - k, "%s%u", d ? "x" : "", x->dims[d]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* Reads and checks the magic and the dimensions; fills type, ndim, dims, count. */
static xd_status read_header(idx_src *s, size_t max_elems, io_idx *x, xd_err *e)
{
    uint8_t magic[4];
    size_t got;
    xd_status st = src_read(s, magic, 4, &got, e);
    if (st != XD_OK) return st;
    if (got < 4)
        return xd_fail(e, XD_EFORMAT, "%s: %zu bytes, too short for an IDX header", s->path, got);
    if (magic[0] != 0 || magic[1] != 0)
        return xd_fail(e, XD_EFORMAT,
                       "%s: offset 0: bad magic 0x%08x (an IDX file starts with two zero bytes)",
                       s->path, io_be_u32(magic));
    int type = -1;
    for (int t = 0; t < IO_IDX_TYPE_COUNT; t++)
        if (idx_types[t].code == magic[2]) type = t;
    if (type < 0)
        return xd_fail(e, XD_EFORMAT,
                       "%s: offset 2: unknown IDX type code 0x%02x (known: 08 u8, 09 i8, 0B i16, "
                       "0C i32, 0D f32, 0E f64)",
                       s->path, magic[2]);
    if (magic[3] < 1 || magic[3] > IO_IDX_MAX_DIMS)
        return xd_fail(e, XD_EFORMAT, "%s: offset 3: %u dimensions, expected 1 to %d", s->path,
                       magic[3], IO_IDX_MAX_DIMS);
    x->type = (io_idx_type)type;
    x->ndim = magic[3];

    uint8_t raw[4 * IO_IDX_MAX_DIMS];
    size_t need = 4 * (size_t)x->ndim;
    st = src_read(s, raw, need, &got, e);
    if (st != XD_OK) return st;
    if (got < need)
        return xd_fail(e, XD_EFORMAT, "%s: header ends at offset %zu, %d dimensions need %zu bytes",
                       s->path, 4 + got, x->ndim, 4 + need);
    size_t count = 1;
    int overflow = 0;
    for (int d = 0; d < x->ndim; d++) {
        x->dims[d] = io_be_u32(raw + 4 * d);
        if (xd_mul_size(count, x->dims[d], &count) != 0) overflow = 1;
    }
    char dims[96];
    dims_text(x, dims, sizeof dims);
    if (overflow || count > max_elems)
        return xd_fail(e, XD_EFORMAT,
                       "%s: header announces %s %s elements, more than the %zu allowed", s->path,
                       dims, io_idx_type_name(x->type), max_elems);
    x->count = count;
    return XD_OK;
}

/* Rejects announced sizes the file cannot hold, before allocating for them. */
static xd_status check_possible(const idx_src *s, const io_idx *x, size_t bytes, xd_err *e)
{
    size_t header = 4 + 4 * (size_t)x->ndim;
    char dims[96];
    dims_text(x, dims, sizeof dims);
    if (!s->gz) {
        if (s->src_n - header < bytes)
            return xd_fail(e, XD_EFORMAT,
                           "%s: data ends at offset %zu but the header announces %s %s "
                           "(%zu bytes, up to offset %zu)",
                           s->path, s->src_n, dims, io_idx_type_name(x->type), bytes,
                           header + bytes);
        if (s->src_n - header > bytes)
            return xd_fail(e, XD_EFORMAT,
                           "%s: %zu trailing bytes after offset %zu, where the %s %s data ends",
                           s->path, s->src_n - header - bytes, header + bytes, dims,
                           io_idx_type_name(x->type));
        return XD_OK;
    }
    size_t most;
    if (xd_mul_size(s->src_n, IDX_GZIP_MAX_RATIO, &most) != 0) return XD_OK;
    if (bytes > most + IDX_GZIP_SLACK)
        return xd_fail(e, XD_EFORMAT,
                       "%s: header announces %s %s (%zu bytes), more than a %zu-byte gzip file "
                       "can hold",
                       s->path, dims, io_idx_type_name(x->type), bytes, s->src_n);
    return XD_OK;
}

static xd_status read_src(idx_src *s, size_t max_elems, io_idx *x, xd_err *e)
{
    xd_status st = read_header(s, max_elems, x, e);
    if (st != XD_OK) return st;
    size_t esize = idx_types[x->type].size;
    size_t bytes;
    if (xd_mul_size(x->count, esize, &bytes) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: data size overflows", s->path);
    st = check_possible(s, x, bytes, e);
    if (st != XD_OK) return st;
    x->data = xd_try_alloc(bytes);
    if (!x->data) return xd_fail(e, XD_ENOMEM, "%s: cannot allocate %zu bytes", s->path, bytes);
    size_t header = 4 + 4 * (size_t)x->ndim, got;
    st = src_read(s, x->data, bytes, &got, e);
    if (st != XD_OK) return st;
    if (got < bytes)
        return xd_fail(e, XD_EFORMAT,
                       "%s: data ends at decompressed offset %zu but the header announces %zu "
                       "bytes of data (up to offset %zu)",
                       s->path, header + got, bytes, header + bytes);
    /* One more byte: drives inflate through the trailer (CRC and length check) and catches data
     * beyond what the header announced. */
    uint8_t extra;
    st = src_read(s, &extra, 1, &got, e);
    if (st != XD_OK) return st;
    if (got)
        return xd_fail(
            e, XD_EFORMAT,
            "%s: trailing bytes after decompressed offset %zu, where the data the header "
            "announces ends",
            s->path, header + bytes);
    swap_elements(x->data, x->count, esize);
    return XD_OK;
}

xd_status io_idx_read_mem(const void *data, size_t n, const char *name, size_t max_elems,
                          io_idx *out, xd_err *e)
{
    memset(out, 0, sizeof *out);
    if (max_elems == 0) max_elems = IO_IDX_DEFAULT_MAX_ELEMS;
    idx_src s;
    xd_status st = src_open(&s, name, data, n, e);
    if (st == XD_OK) st = read_src(&s, max_elems, out, e);
    src_close(&s);
    if (st != XD_OK) io_idx_free(out);
    return st;
}

xd_status io_idx_read(const char *path, size_t max_elems, io_idx *out, xd_err *e)
{
    memset(out, 0, sizeof *out);
    io_map m;
    xd_status st = io_map_open(path, &m, e);
    if (st != XD_OK) return st;
    st = io_idx_read_mem(m.data, m.size, path, max_elems, out, e);
    io_map_close(&m);
    return st;
}

xd_status io_idx_expect(const io_idx *x, io_idx_type type, int ndim, const char *path, xd_err *e)
{
    if (x->type != type || x->ndim != ndim) {
        char dims[96];
        dims_text(x, dims, sizeof dims);
        return xd_fail(e, XD_EFORMAT, "%s: holds %s %s, expected %s with %d dimension%s", path,
                       dims, io_idx_type_name(x->type), io_idx_type_name(type), ndim,
                       ndim == 1 ? "" : "s");
    }
    return XD_OK;
}

// ----------------------------------------------------------------------------------------------
// writing

typedef struct {
    io_atomic w;
    int gz;
    z_stream zs;
    uint8_t out[1 << 16];
} idx_sink;

static xd_status sink_put(idx_sink *k, const void *data, size_t n, int finish, xd_err *e)
{
    if (!k->gz) return io_atomic_write(&k->w, data, n, e);
    k->zs.next_in = data;
    k->zs.avail_in = (uInt)n; /* callers pass chunks of at most 64 KiB */
    for (;;) {
        k->zs.next_out = k->out;
        k->zs.avail_out = sizeof k->out;
        int r = deflate(&k->zs, finish ? Z_FINISH : Z_NO_FLUSH);
        if (r == Z_STREAM_ERROR)
            return xd_fail(e, XD_EIO, "%s: gzip compression failed", k->w.path);
        xd_status st = io_atomic_write(&k->w, k->out, sizeof k->out - k->zs.avail_out, e);
        if (st != XD_OK) return st;
        if (finish ? r == Z_STREAM_END : (k->zs.avail_in == 0 && k->zs.avail_out != 0)) break;
    }
    return XD_OK;
}

static xd_status write_body(idx_sink *k, const io_idx *x, xd_err *e)
{
    uint8_t header[4 + 4 * IO_IDX_MAX_DIMS] = {0, 0, idx_types[x->type].code, (uint8_t)x->ndim};
    for (int d = 0; d < x->ndim; d++) {
        uint32_t v = x->dims[d];
        uint8_t *p = header + 4 + 4 * d;
        p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
        p[3] = (uint8_t)v;
    }
    xd_status st = sink_put(k, header, 4 + 4 * (size_t)x->ndim, 0, e);
    size_t esize = idx_types[x->type].size;
    uint8_t chunk[1 << 16]; /* a whole number of elements of any type */
    const uint8_t *src = x->data;
    size_t left = x->count * esize;
    while (st == XD_OK && left) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        memcpy(chunk, src, n);
        swap_elements(chunk, n / esize, esize); /* host -> big-endian */
        st = sink_put(k, chunk, n, 0, e);
        src += n;
        left -= n;
    }
    if (st == XD_OK && k->gz) st = sink_put(k, NULL, 0, 1, e);
    return st;
}

xd_status io_idx_write(const char *path, const io_idx *x, io_idx_compress c, xd_err *e)
{
    if (x->type < 0 || x->type >= IO_IDX_TYPE_COUNT)
        return xd_fail(e, XD_EARG, "%s: unknown IDX element type %d", path, (int)x->type);
    if (x->ndim < 1 || x->ndim > IO_IDX_MAX_DIMS)
        return xd_fail(e, XD_EARG, "%s: %d dimensions, IDX here holds 1 to %d", path, x->ndim,
                       IO_IDX_MAX_DIMS);
    size_t count = 1;
    for (int d = 0; d < x->ndim; d++)
        if (xd_mul_size(count, x->dims[d], &count) != 0)
            return xd_fail(e, XD_EARG, "%s: dimensions overflow", path);
    if (count != x->count || (count && !x->data))
        return xd_fail(e, XD_ESHAPE, "%s: dimensions give %zu elements, the array has %zu", path,
                       count, x->count);

    idx_sink *k = xd_xcalloc(1, sizeof *k);
    k->gz = c == IO_IDX_GZIP;
    if (k->gz && deflateInit2(&k->zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(k);
        return xd_fail(e, XD_ENOMEM, "%s: cannot start gzip compression", path);
    }
    xd_status st = io_atomic_open(&k->w, path, e);
    if (st == XD_OK) {
        st = write_body(k, x, e);
        if (st == XD_OK)
            st = io_atomic_commit(&k->w, e);
        else
            io_atomic_abort(&k->w);
    }
    if (k->gz) deflateEnd(&k->zs);
    free(k);
    return st;
}
