/* NumPy .npy reader and writer (see npy.h).
 *
 * The header is read with a small recursive-descent parser for exactly the Python literal numpy
 * writes, rather than a general evaluator: anything else is an error that names the byte offset
 * in the file where the header stopped making sense. */
#include "io/npy.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
/* The data starts at a multiple of this (numpy's ARRAY_ALIGN). */
enum { NPY_ALIGN = 64 };
/* numpy leaves room in the header so the first dimension can grow to this many digits. */
enum { NPY_GROWTH_DIGITS = 21 };
/* A real header is well under a kilobyte; anything this large is not an .npy header. */
#define NPY_MAX_HEADER (1u << 20)

/* ---------------------------------------------------------------- header parsing */

typedef enum { KEY_DESCR, KEY_FORTRAN_ORDER, KEY_SHAPE, KEY_COUNT } npy_key;
static const char *const npy_key_names[] = {
    [KEY_DESCR] = "descr",
    [KEY_FORTRAN_ORDER] = "fortran_order",
    [KEY_SHAPE] = "shape",
};
static_assert(sizeof npy_key_names / sizeof npy_key_names[0] == KEY_COUNT,
              "npy_key_names must name every key");

typedef struct {
    const char *path;
    const char *s; /* header text (not NUL-terminated) */
    size_t n;      /* its length */
    size_t pos;    /* parse position in s */
    size_t base;   /* file offset of s[0], so messages give file offsets */
    xd_err *e;
} hdr_parser;

typedef struct {
    char descr[32];
    size_t descr_at; /* file offset of the descr value, for messages */
    int fortran;
    size_t fortran_at;
    int ndim;
    int64_t shape[IO_MAX_DIMS];
} npy_header;

static xd_status hdr_fail(const hdr_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static xd_status hdr_fail(const hdr_parser *p, const char *fmt, ...)
{
    char why[XD_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return xd_fail(p->e, XD_EFORMAT, "%s: offset %zu: %s", p->path, p->base + p->pos, why);
}

/* The character at the parse position, printable for a message. */
static const char *hdr_char(const hdr_parser *p, char *buf, size_t n)
{
    if (p->pos >= p->n) snprintf(buf, n, "the end of the header");
    else {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c >= 0x20 && c < 0x7f) snprintf(buf, n, "'%c'", c);
        else snprintf(buf, n, "byte 0x%02x", c);
    }
    return buf;
}

static void hdr_skip_ws(hdr_parser *p)
{
    while (p->pos < p->n &&
           (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static xd_status hdr_expect(hdr_parser *p, char c, const char *what)
{
    hdr_skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == c) {
        p->pos++;
        return XD_OK;
    }
    char b[32];
    return hdr_fail(p, "expected %s in the header, found %s", what, hdr_char(p, b, sizeof b));
}

/* A quoted Python string without escapes: 'abc' or "abc". */
static xd_status hdr_string(hdr_parser *p, char *out, size_t cap)
{
    hdr_skip_ws(p);
    char b[32];
    if (p->pos >= p->n || (p->s[p->pos] != '\'' && p->s[p->pos] != '"'))
        return hdr_fail(p, "expected a quoted string in the header, found %s",
                        hdr_char(p, b, sizeof b));
    char q = p->s[p->pos++];
    size_t k = 0;
    for (;;) {
        if (p->pos >= p->n) return hdr_fail(p, "unterminated string in the header");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == (unsigned char)q) break;
        if (c == '\\' || c < 0x20 || c >= 0x7f)
            return hdr_fail(p, "unexpected %s inside a string in the header",
                            hdr_char(p, b, sizeof b));
        if (k + 1 >= cap) return hdr_fail(p, "string in the header is longer than %zu bytes", cap - 1);
        out[k++] = (char)c;
        p->pos++;
    }
    p->pos++;
    out[k] = '\0';
    return XD_OK;
}

static int hdr_is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static xd_status hdr_bool(hdr_parser *p, int *v)
{
    hdr_skip_ws(p);
    static const char *const words[2] = {"False", "True"};
    for (int i = 0; i < 2; i++) {
        size_t len = strlen(words[i]);
        if (p->n - p->pos >= len && memcmp(p->s + p->pos, words[i], len) == 0 &&
            (p->pos + len == p->n || !hdr_is_ident(p->s[p->pos + len]))) {
            p->pos += len;
            *v = i;
            return XD_OK;
        }
    }
    char b[32];
    return hdr_fail(p, "expected True or False for 'fortran_order', found %s",
                    hdr_char(p, b, sizeof b));
}

/* A non-negative decimal integer as Python writes it (no sign, no leading zeros). */
static xd_status hdr_dim(hdr_parser *p, int64_t *v)
{
    hdr_skip_ws(p);
    char b[32];
    if (p->pos < p->n && p->s[p->pos] == '-')
        return hdr_fail(p, "negative dimension in 'shape'");
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return hdr_fail(p, "expected a dimension in 'shape', found %s", hdr_char(p, b, sizeof b));
    size_t start = p->pos;
    uint64_t x = 0;
    int overflow = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        unsigned d = (unsigned)(p->s[p->pos] - '0');
        if (x > ((uint64_t)INT64_MAX - d) / 10) overflow = 1;
        else x = x * 10 + d;
        p->pos++;
    }
    if (p->pos < p->n && hdr_is_ident(p->s[p->pos]))
        return hdr_fail(p, "expected a dimension in 'shape', found %s", hdr_char(p, b, sizeof b));
    if (p->pos - start > 1 && p->s[start] == '0') {
        p->pos = start;
        return hdr_fail(p, "dimension with a leading zero in 'shape'");
    }
    if (overflow) {
        size_t digits = p->pos - start;
        p->pos = start;
        return hdr_fail(p, "dimension %.*s%s in 'shape' does not fit in 64 bits",
                        (int)(digits < 40 ? digits : 40), p->s + start, digits > 40 ? "..." : "");
    }
    *v = (int64_t)x;
    return XD_OK;
}

/* A tuple of dimensions: (), (5,), (3, 4), (3, 4,). */
static xd_status hdr_shape(hdr_parser *p, npy_header *h)
{
    xd_status s = hdr_expect(p, '(', "'(' to start the shape tuple");
    if (s) return s;
    h->ndim = 0;
    hdr_skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ')') {
        p->pos++;
        return XD_OK;
    }
    for (;;) {
        if (h->ndim == IO_MAX_DIMS)
            return hdr_fail(p, "shape has more than %d dimensions", IO_MAX_DIMS);
        if ((s = hdr_dim(p, &h->shape[h->ndim]))) return s;
        h->ndim++;
        hdr_skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            hdr_skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == ')') break;
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == ')') {
            if (h->ndim == 1)
                return hdr_fail(p, "'shape' (%lld) is a number, not a tuple (a 1-d shape is "
                                   "written (%lld,))",
                                (long long)h->shape[0], (long long)h->shape[0]);
            break;
        }
        char b[32];
        return hdr_fail(p, "expected ',' or ')' in 'shape', found %s", hdr_char(p, b, sizeof b));
    }
    p->pos++; /* ')' */
    return XD_OK;
}

static xd_status hdr_parse(hdr_parser *p, npy_header *h)
{
    int seen[KEY_COUNT] = {0};
    xd_status s = hdr_expect(p, '{', "'{' at the start of the header");
    if (s) return s;
    for (;;) {
        hdr_skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == '}') break;
        size_t key_at = p->pos;
        char key[32];
        if ((s = hdr_string(p, key, sizeof key))) return s;
        int k = 0;
        while (k < KEY_COUNT && strcmp(key, npy_key_names[k]) != 0) k++;
        if (k == KEY_COUNT) {
            p->pos = key_at;
            return hdr_fail(p, "unexpected key '%s' in the header (expected only 'descr', "
                               "'fortran_order' and 'shape')", key);
        }
        if (seen[k]) {
            p->pos = key_at;
            return hdr_fail(p, "key '%s' appears twice in the header", key);
        }
        seen[k] = 1;
        if ((s = hdr_expect(p, ':', "':' after a key"))) return s;
        hdr_skip_ws(p);
        switch ((npy_key)k) {
        case KEY_DESCR:
            h->descr_at = p->base + p->pos;
            if (p->pos < p->n && p->s[p->pos] == '[')
                return hdr_fail(p, "structured dtypes (a list as 'descr') are not supported");
            s = hdr_string(p, h->descr, sizeof h->descr);
            break;
        case KEY_FORTRAN_ORDER:
            h->fortran_at = p->base + p->pos;
            s = hdr_bool(p, &h->fortran);
            break;
        case KEY_SHAPE: s = hdr_shape(p, h); break;
        case KEY_COUNT: break;
        }
        if (s) return s;
        hdr_skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == '}') break;
        char b[32];
        return hdr_fail(p, "expected ',' or '}' in the header, found %s", hdr_char(p, b, sizeof b));
    }
    p->pos++; /* '}' */
    hdr_skip_ws(p);
    if (p->pos != p->n) {
        char b[32];
        return hdr_fail(p, "unexpected %s after the end of the header dict", hdr_char(p, b, sizeof b));
    }
    for (int k = 0; k < KEY_COUNT; k++)
        if (!seen[k]) return hdr_fail(p, "the header has no '%s' key", npy_key_names[k]);
    return XD_OK;
}

/* ---------------------------------------------------------------- reading */

void io_npy_close(io_npy *a)
{
    io_map_close(&a->map);
    free(a->owned);
    free(a->path);
    memset(a, 0, sizeof *a);
}

/* Validates b[0, size) (the mapped file or the caller's buffer) and points a at its data. */
static xd_status npy_parse(const char *path, const unsigned char *b, size_t size, io_npy *a,
                           xd_err *e)
{
    xd_status s;
    if (size < 10)
        return xd_fail(e, XD_EFORMAT, "%s: file is %zu bytes, too short for the 10-byte NPY preamble",
                       path, size);
    if (memcmp(b, npy_magic, sizeof npy_magic) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: offset 0: not an NPY file (bad magic)", path);
    int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return xd_fail(e, XD_EUNSUPPORTED, "%s: offset 6: unsupported NPY version %d.%d", path,
                       major, minor);
    size_t pre = major == 1 ? 10 : 12;
    if (size < pre)
        return xd_fail(e, XD_EFORMAT, "%s: file is %zu bytes, too short for the %zu-byte NPY %d.0 "
                       "preamble", path, size, pre, major);
    size_t hlen = major == 1 ? (size_t)(b[8] | (b[9] << 8)) : (size_t)io_le_u32(b + 8);
    if (hlen > NPY_MAX_HEADER)
        return xd_fail(e, XD_EFORMAT, "%s: offset 8: header length %zu is over the %u-byte limit",
                       path, hlen, NPY_MAX_HEADER);
    if (hlen > size - pre)
        return xd_fail(e, XD_EFORMAT, "%s: offset 8: header length %zu runs past the end of the "
                       "file (%zu bytes)", path, hlen, size);

    npy_header h;
    memset(&h, 0, sizeof h);
    hdr_parser p = {path, (const char *)b + pre, hlen, 0, pre, e};
    if ((s = hdr_parse(&p, &h))) return s;

    io_dtype dt;
    if (io_dtype_from_npy_descr(h.descr, &dt) != 0) {
        if (h.descr[0] == '>')
            return xd_fail(e, XD_EUNSUPPORTED, "%s: offset %zu: big-endian data ('%s') is not "
                           "supported; save it little-endian", path, h.descr_at, h.descr);
        return xd_fail(e, XD_EUNSUPPORTED, "%s: offset %zu: unsupported dtype '%s'", path,
                       h.descr_at, h.descr);
    }
    if (h.fortran)
        return xd_fail(e, XD_EUNSUPPORTED, "%s: offset %zu: fortran_order True (column-major data) "
                       "is not supported; save a C-ordered array (numpy.ascontiguousarray)", path,
                       h.fortran_at);

    char shape_txt[256];
    io_shape_format(h.ndim, h.shape, shape_txt, sizeof shape_txt);
    size_t bytes;
    if (io_shape_bytes(dt, h.ndim, h.shape, &bytes) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: offset %zu: shape %s of '%s' is too large (more bytes "
                       "than fit in 64 bits)", path, pre, shape_txt, h.descr);
    size_t off = pre + hlen, have = size - off;
    if (have < bytes)
        return xd_fail(e, XD_EFORMAT, "%s: offset %zu: truncated: shape %s of '%s' needs %zu bytes "
                       "of data, the file has %zu", path, off, shape_txt, h.descr, bytes, have);
    if (have > bytes)
        return xd_fail(e, XD_EFORMAT, "%s: offset %zu: %zu bytes after the data of shape %s of "
                       "'%s' (the header does not describe the whole file)", path, off + bytes,
                       have - bytes, shape_txt, h.descr);

    const void *data = b + off;
    /* Headers numpy writes keep the data aligned; copy when a hand-made file does not. */
    if (off % io_dtype_size(dt) != 0) {
        a->owned = xd_try_alloc(bytes ? bytes : 1);
        if (!a->owned)
            return xd_fail(e, XD_ENOMEM, "%s: cannot allocate %zu bytes", path, bytes);
        memcpy(a->owned, data, bytes);
        data = a->owned;
    }
    a->path = xd_xstrdup(path);
    io_tensor_set(&a->t, a->path, dt, h.ndim, h.shape, data);
    a->version = major;
    a->data_offset = off;
    return XD_OK;
}

xd_status io_npy_open(const char *path, io_npy *a, xd_err *e)
{
    memset(a, 0, sizeof *a);
    xd_status s = io_map_open(path, &a->map, e);
    if (!s) s = npy_parse(path, a->map.data, a->map.size, a, e);
    if (s) io_npy_close(a);
    return s;
}

xd_status io_npy_open_mem(const void *data, size_t n, const char *name, io_npy *a, xd_err *e)
{
    memset(a, 0, sizeof *a);
    xd_status s = npy_parse(name, data, n, a, e);
    if (s) io_npy_close(a);
    return s;
}

/* ---------------------------------------------------------------- writing */

xd_status io_npy_write(const char *path, const io_tensor *t, xd_err *e)
{
    const char *descr = io_dtype_npy_descr(t->dtype);
    if (!descr)
        return xd_fail(e, XD_EUNSUPPORTED, "%s: NumPy has no type for %s data", path,
                       io_dtype_name(t->dtype));
    size_t bytes;
    if (io_tensor_bytes(t, &bytes) != 0)
        return xd_fail(e, XD_EARG, "%s: invalid shape (ndim %d) for an .npy array", path, t->ndim);
    if (bytes && !t->data) return xd_fail(e, XD_EARG, "%s: tensor has no data", path);

    /* The dict as numpy writes it: keys sorted, each followed by ", ". */
    char shape_txt[256];
    io_shape_format(t->ndim, t->shape, shape_txt, sizeof shape_txt);
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                       descr, shape_txt);
    XD_ASSERT(len > 0 && (size_t)len < sizeof dict);
    size_t hlen = (size_t)len;
    if (t->ndim > 0) {
        int digits = snprintf(NULL, 0, "%lld", (long long)t->shape[0]);
        if (digits < NPY_GROWTH_DIGITS) hlen += (size_t)(NPY_GROWTH_DIGITS - digits);
    }
    /* numpy moves to version 2 only for headers over 65535 bytes; with at most IO_MAX_DIMS
     * dimensions ours stay under 300, so version 1 (10-byte preamble) always suffices. Padding
     * is 1..64 spaces and a '\n', so the data starts at a multiple of 64. */
    const size_t pre = 10;
    size_t pad = NPY_ALIGN - (pre + hlen + 1) % NPY_ALIGN;
    size_t total = hlen + pad + 1;
    XD_ASSERT(total <= 65535);
    unsigned char *head = xd_xmalloc(pre + total);
    memcpy(head, npy_magic, sizeof npy_magic);
    head[6] = 1;
    head[7] = 0;
    head[8] = (unsigned char)(total & 0xff);
    head[9] = (unsigned char)(total >> 8);
    memcpy(head + pre, dict, (size_t)len);
    memset(head + pre + len, ' ', total - 1 - (size_t)len);
    head[pre + total - 1] = '\n';

    io_atomic w;
    xd_status s = io_atomic_open(&w, path, e);
    /* a large array (a teacher cache) is mapped and read a row at a time, at random */
    if (!s && bytes >= IO_HUGE_BLOCK) io_atomic_blocks(&w, IO_HUGE_BLOCK);
    if (!s) s = io_atomic_write(&w, head, pre + total, e);
    if (!s) s = io_atomic_write(&w, t->data, bytes, e);
    free(head);
    if (s) {
        io_atomic_abort(&w);
        return s;
    }
    return io_atomic_commit(&w, e);
}

/* ---------------------------------------------------------------- describe */

void io_npy_describe(const io_npy *a, FILE *out)
{
    char shape_txt[256];
    io_shape_format(a->t.ndim, a->t.shape, shape_txt, sizeof shape_txt);
    size_t n = 0, bytes = 0;
    io_tensor_elements(&a->t, &n);
    io_tensor_bytes(&a->t, &bytes);
    fprintf(out, "%s: NumPy array (.npy version %d.0)\n", a->t.name, a->version);
    fprintf(out, "  dtype %s (%s), shape %s, %zu elements, %zu bytes of data at offset %zu\n",
            io_dtype_npy_descr(a->t.dtype), io_dtype_name(a->t.dtype), shape_txt, n, bytes,
            a->data_offset);
    io_tensor_print_values(&a->t, out, "  ");
}
