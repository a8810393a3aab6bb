/* The dataset container: writer, validating reader, describe (see dataset.h).
 *
 * The writer reserves the header and a table of max_sections + 1 entries (one for the metadata)
 * at the start of the temporary file, streams section data after it, and at the end seeks back
 * to fill in the header and the table before the rename. The reader checks every table entry,
 * the placement of all sections together and every string table before it returns. */
#include "io/dataset.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "core/hash.h"
#include "core/mem.h"
#include "io/file.h"

static const char ds_magic[8] = {'X', 'D', 'S', 'E', 'T', 0, 0, 0};
static const char ds_meta_name[] = "__metadata__";

enum {
    DS_HEADER = 32,   /* magic, version, count, file size, table checksum, reserved */
    DS_TABLE_SUM = 24, /* offset of the table checksum (version 2) */
    DS_ENTRY = 160,   /* one table entry */
    DS_NAME = 64,     /* name field, NUL-padded */
    DS_ALIGN = 64,    /* every section starts at a multiple of this */
    DS_DEFAULT_SECTIONS = 64,
};
/* entry field offsets */
enum { E_KIND = 64, E_DTYPE = 68, E_NDIM = 72, E_SUM = 76, E_SHAPE = 80, E_OFFSET = 144, E_LENGTH = 152 };
static_assert(E_LENGTH + 8 == DS_ENTRY, "table entry layout must add up to DS_ENTRY");
static_assert(E_SHAPE + 8 * IO_MAX_DIMS == E_OFFSET, "shape must hold IO_MAX_DIMS dimensions");

static const char *const kind_names[] = {
    [IO_SECTION_ARRAY] = "array",
    [IO_SECTION_STRINGS] = "strings",
};
static_assert(sizeof kind_names / sizeof kind_names[0] == IO_SECTION_KIND_COUNT,
              "kind_names must name every io_section_kind");

/* One section as the table describes it. */
typedef struct {
    char name[DS_NAME];
    io_section_kind kind;
    io_dtype dtype;
    int ndim;
    int64_t shape[IO_MAX_DIMS];
    uint64_t offset, length;
    uint32_t sum;     /* CRC-32 of the section's bytes */
} ds_entry;

const char *io_strings_get(const io_strings *s, size_t i, size_t *len)
{
    if (i >= s->n) return NULL;
    if (len) *len = (size_t)(s->offsets[i + 1] - s->offsets[i] - 1);
    return s->bytes + s->offsets[i];
}

/* ---------------------------------------------------------------- writing */

struct io_dataset_writer {
    io_atomic out;
    size_t cap;        /* user sections allowed; one more entry is kept for the metadata */
    size_t n;
    ds_entry *entries; /* cap + 1 */
    uint64_t pos;      /* bytes written so far */
    int open;          /* a streamed section is in progress */
    uint64_t got;      /* its bytes so far */
    int failed;
    size_t n_meta, cap_meta;
    char **keys, **values;
};

static uint64_t ds_align_up(uint64_t x) { return (x + DS_ALIGN - 1) / DS_ALIGN * DS_ALIGN; }

/* The version-2 table checksum of a file's first table_end bytes: the header before the checksum,
 * then the table. */
static uint32_t ds_table_sum(const unsigned char *b, size_t table_end)
{
    return io_crc32(io_crc32(0, b, DS_TABLE_SUM), b + DS_HEADER, table_end - DS_HEADER);
}

static xd_status ds_put(io_dataset_writer *w, const void *data, size_t n, xd_err *e)
{
    xd_status s = io_atomic_write(&w->out, data, n, e);
    if (s) w->failed = 1;
    else w->pos += n;
    return s;
}

static xd_status ds_pad(io_dataset_writer *w, uint64_t to, xd_err *e)
{
    static const unsigned char zeros[256];
    while (w->pos < to) {
        size_t k = to - w->pos < sizeof zeros ? (size_t)(to - w->pos) : sizeof zeros;
        xd_status s = ds_put(w, zeros, k, e);
        if (s) return s;
    }
    return XD_OK;
}

static xd_status ds_writer_usable(io_dataset_writer *w, xd_err *e)
{
    if (w->failed)
        return xd_fail(e, XD_EARG, "%s: an earlier error stopped this dataset writer", w->out.path);
    if (w->open) {
        w->failed = 1;
        return xd_fail(e, XD_EARG, "%s: section '%s' is still open (io_dataset_end was not called)",
                       w->out.path, w->entries[w->n].name);
    }
    return XD_OK;
}

xd_status io_dataset_writer_open(const char *path, size_t max_sections, io_dataset_writer **out,
                                 xd_err *e)
{
    *out = NULL;
    if (max_sections == 0) max_sections = DS_DEFAULT_SECTIONS;
    if (max_sections >= IO_DATASET_MAX_SECTIONS)
        return xd_fail(e, XD_EARG, "%s: %zu sections is over the limit of %d", path, max_sections,
                       IO_DATASET_MAX_SECTIONS - 1);
    io_dataset_writer *w = xd_xcalloc(1, sizeof *w);
    xd_status s = io_atomic_open(&w->out, path, e);
    if (s) {
        free(w);
        return s;
    }
    w->cap = max_sections;
    w->entries = xd_xcalloc(max_sections + 1, sizeof *w->entries);
    /* room for the header and the whole table; filled in by finish */
    s = ds_pad(w, ds_align_up(DS_HEADER + (uint64_t)(max_sections + 1) * DS_ENTRY), e);
    if (s) {
        io_dataset_writer_abort(w);
        return s;
    }
    *out = w;
    return XD_OK;
}

/* Starts a section of length bytes at the next aligned offset. internal allows reserved names. */
static xd_status ds_begin(io_dataset_writer *w, const char *name, io_section_kind kind,
                          io_dtype dtype, int ndim, const int64_t *shape, uint64_t length,
                          int internal, xd_err *e)
{
    const char *path = w->out.path;
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > IO_DATASET_NAME_MAX)
        return xd_fail(e, XD_EARG, "%s: section name '%s' must have 1 to %d bytes", path,
                       name ? name : "", IO_DATASET_NAME_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20)
            return xd_fail(e, XD_EARG, "%s: section name '%s' has a control character", path, name);
    if (!internal && strcmp(name, ds_meta_name) == 0)
        return xd_fail(e, XD_EARG, "%s: '%s' is reserved for the metadata", path, ds_meta_name);
    if (w->n >= w->cap + (size_t)internal)
        return xd_fail(e, XD_EARG, "%s: more than the %zu sections the writer was opened for", path,
                       w->cap);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return xd_fail(e, XD_EARG, "%s: section '%s' added twice", path, name);
    xd_status s = ds_pad(w, ds_align_up(w->pos), e);
    if (s) return s;
    ds_entry *en = &w->entries[w->n];
    memset(en, 0, sizeof *en);
    memcpy(en->name, name, len);
    en->kind = kind;
    en->dtype = dtype;
    en->ndim = ndim;
    for (int d = 0; d < ndim; d++) en->shape[d] = shape[d];
    en->offset = w->pos;
    en->length = length;
    w->open = 1;
    w->got = 0;
    return XD_OK;
}

/* Any failed call stops the writer, so that finish cannot commit a dataset with a hole. */
static xd_status ds_poison(io_dataset_writer *w, xd_status s)
{
    if (s) w->failed = 1;
    return s;
}

xd_status io_dataset_begin(io_dataset_writer *w, const char *name, io_dtype dtype, int ndim,
                           const int64_t *shape, xd_err *e)
{
    xd_status s = ds_writer_usable(w, e);
    if (s) return s;
    size_t bytes;
    if ((int)dtype < 0 || dtype >= IO_DTYPE_COUNT || io_shape_bytes(dtype, ndim, shape, &bytes) != 0)
        return ds_poison(w, xd_fail(e, XD_EARG, "%s: section '%s' has an invalid dtype or shape",
                                    w->out.path, name ? name : ""));
    return ds_poison(w, ds_begin(w, name, IO_SECTION_ARRAY, dtype, ndim, shape, bytes, 0, e));
}

/* write and end: only between begin and end, and not after a failure */
static xd_status ds_stream_usable(io_dataset_writer *w, const char *what, xd_err *e)
{
    if (w->failed)
        return xd_fail(e, XD_EARG, "%s: an earlier error stopped this dataset writer", w->out.path);
    if (!w->open) {
        w->failed = 1;
        return xd_fail(e, XD_EARG, "%s: %s without an open section", w->out.path, what);
    }
    return XD_OK;
}

xd_status io_dataset_write(io_dataset_writer *w, const void *data, size_t bytes, xd_err *e)
{
    xd_status s = ds_stream_usable(w, "io_dataset_write", e);
    if (s) return s;
    const ds_entry *en = &w->entries[w->n];
    if (bytes > en->length - w->got) {
        w->failed = 1;
        return xd_fail(e, XD_EARG, "%s: section '%s': %llu bytes written, more than the %llu its "
                       "shape needs", w->out.path, en->name,
                       (unsigned long long)(w->got + bytes), (unsigned long long)en->length);
    }
    s = ds_put(w, data, bytes, e);
    if (!s) {
        w->got += bytes;
        w->entries[w->n].sum = io_crc32(w->entries[w->n].sum, data, bytes);
    }
    return s;
}

xd_status io_dataset_end(io_dataset_writer *w, xd_err *e)
{
    xd_status s = ds_stream_usable(w, "io_dataset_end", e);
    if (s) return s;
    const ds_entry *en = &w->entries[w->n];
    w->open = 0;
    if (w->got != en->length) {
        w->failed = 1;
        return xd_fail(e, XD_EARG, "%s: section '%s': %llu bytes written, its shape needs %llu",
                       w->out.path, en->name, (unsigned long long)w->got,
                       (unsigned long long)en->length);
    }
    w->n++;
    return XD_OK;
}

xd_status io_dataset_add(io_dataset_writer *w, const io_tensor *t, xd_err *e)
{
    size_t bytes = 0;
    if (io_tensor_bytes(t, &bytes) == 0 && bytes && !t->data)
        return ds_poison(w, xd_fail(e, XD_EARG, "%s: section '%s' has no data", w->out.path,
                                    t->name ? t->name : ""));
    xd_status s = io_dataset_begin(w, t->name, t->dtype, t->ndim, t->shape, e);
    if (!s) s = io_dataset_write(w, t->data, bytes, e);
    if (!s) s = io_dataset_end(w, e);
    return s;
}

static xd_status ds_add_strings(io_dataset_writer *w, const char *name, const char *const *strs,
                                size_t n, int internal, xd_err *e)
{
    xd_status s = ds_writer_usable(w, e);
    if (s) return s;
    uint64_t *offs = xd_xmalloc((n + 1) * sizeof *offs);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(offs);
            return xd_fail(e, XD_EARG, "%s: string table '%s': string %zu is NULL", w->out.path,
                           name ? name : "", i);
        }
        offs[i] = total;
        total += strlen(strs[i]) + 1;
    }
    offs[n] = total;
    int64_t shape[1] = {(int64_t)n};
    s = ds_begin(w, name, IO_SECTION_STRINGS, IO_U8, 1, shape, (n + 1) * sizeof *offs + total,
                 internal, e);
    if (!s) {
        s = io_dataset_write(w, offs, (n + 1) * sizeof *offs, e);
        for (size_t i = 0; i < n && !s; i++) s = io_dataset_write(w, strs[i], strlen(strs[i]) + 1, e);
        if (!s) s = io_dataset_end(w, e);
    }
    free(offs);
    return s;
}

xd_status io_dataset_add_strings(io_dataset_writer *w, const char *name, const char *const *strs,
                                 size_t n, xd_err *e)
{
    return ds_poison(w, ds_add_strings(w, name, strs, n, 0, e));
}

xd_status io_dataset_set_meta(io_dataset_writer *w, const char *key, const char *value, xd_err *e)
{
    if (!key || !*key || !value)
        return ds_poison(w, xd_fail(e, XD_EARG, "%s: metadata needs a non-empty key and a value",
                                    w->out.path));
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->keys[i], key) == 0) {
            free(w->values[i]);
            w->values[i] = xd_xstrdup(value);
            return XD_OK;
        }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 8;
        w->keys = xd_xrealloc(w->keys, w->cap_meta * sizeof *w->keys);
        w->values = xd_xrealloc(w->values, w->cap_meta * sizeof *w->values);
    }
    w->keys[w->n_meta] = xd_xstrdup(key);
    w->values[w->n_meta] = xd_xstrdup(value);
    w->n_meta++;
    return XD_OK;
}

static void ds_entry_pack(const ds_entry *en, unsigned char *p)
{
    memset(p, 0, DS_ENTRY);
    memcpy(p, en->name, DS_NAME);
    io_le_put_u32(p + E_KIND, (uint32_t)en->kind);
    io_le_put_u32(p + E_DTYPE, (uint32_t)en->dtype);
    io_le_put_u32(p + E_NDIM, (uint32_t)en->ndim);
    io_le_put_u32(p + E_SUM, en->sum);
    for (int d = 0; d < en->ndim; d++) io_le_put_u64(p + E_SHAPE + 8 * d, (uint64_t)en->shape[d]);
    io_le_put_u64(p + E_OFFSET, en->offset);
    io_le_put_u64(p + E_LENGTH, en->length);
}

static void ds_writer_free(io_dataset_writer *w)
{
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->values[i]);
    }
    free(w->keys);
    free(w->values);
    free(w->entries);
    free(w);
}

void io_dataset_writer_abort(io_dataset_writer *w)
{
    if (!w) return;
    io_atomic_abort(&w->out);
    ds_writer_free(w);
}

xd_status io_dataset_finish(io_dataset_writer *w, xd_err *e)
{
    xd_status s = ds_writer_usable(w, e);
    if (!s && w->n_meta) {
        const char **kv = xd_xmalloc(2 * w->n_meta * sizeof *kv);
        for (size_t i = 0; i < w->n_meta; i++) {
            kv[2 * i] = w->keys[i];
            kv[2 * i + 1] = w->values[i];
        }
        s = ds_add_strings(w, ds_meta_name, kv, 2 * w->n_meta, 1, e);
        free(kv);
    }
    if (!s) {
        size_t head_len = DS_HEADER + w->n * DS_ENTRY;
        unsigned char *head = xd_xcalloc(1, head_len);
        memcpy(head, ds_magic, sizeof ds_magic);
        io_le_put_u32(head + 8, IO_DATASET_VERSION);
        io_le_put_u32(head + 12, (uint32_t)w->n);
        io_le_put_u64(head + 16, w->pos);
        for (size_t i = 0; i < w->n; i++) ds_entry_pack(&w->entries[i], head + DS_HEADER + i * DS_ENTRY);
        io_le_put_u32(head + DS_TABLE_SUM, ds_table_sum(head, head_len));
        if (fseeko(w->out.f, 0, SEEK_SET) != 0)
            s = xd_fail(e, XD_EIO, "%s: cannot seek in the temporary file", w->out.path);
        else
            s = io_atomic_write(&w->out, head, head_len, e);
        free(head);
    }
    if (s) {
        io_dataset_writer_abort(w);
        return s;
    }
    s = io_atomic_commit(&w->out, e);
    ds_writer_free(w);
    return s;
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    io_tensor t; /* name points into the bytes */
    io_section_kind kind;
    uint64_t offset, length;
    size_t table_at; /* file offset of the table entry, for messages */
    uint32_t sum;    /* stored checksum (version 2) */
    io_strings strings;
} ds_section;

struct io_dataset {
    char *path;
    io_map map;                 /* the mapped file (empty when the bytes are the caller's) */
    const unsigned char *bytes; /* (size) what is read: the map or the caller's buffer */
    size_t size;
    uint32_t version;
    size_t n;
    ds_section *sec;
    ds_section **by_name;
    size_t n_meta;
    io_kv *meta; /* pointers into the bytes */
};

static int ds_cmp_name(const void *a, const void *b)
{
    return strcmp((*(const ds_section *const *)a)->t.name, (*(const ds_section *const *)b)->t.name);
}

static int ds_cmp_key(const void *key, const void *b)
{
    return strcmp((const char *)key, (*(const ds_section *const *)b)->t.name);
}

static int ds_cmp_offset(const void *a, const void *b)
{
    const ds_section *x = *(const ds_section *const *)a, *y = *(const ds_section *const *)b;
    /* an empty section may share its offset with the next one: put it first */
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->length != y->length) return x->length < y->length ? -1 : 1;
    return 0;
}

/* Table entry i: fields in range, placed inside the file after the table, length = contents. */
static xd_status ds_read_entry(io_dataset *ds, size_t i, size_t table_end, xd_err *e)
{
    const unsigned char *b = ds->bytes;
    size_t at = DS_HEADER + i * DS_ENTRY;
    const unsigned char *p = b + at;
    ds_section *sc = &ds->sec[i];
    sc->table_at = at;
    const unsigned char *nul = memchr(p, 0, DS_NAME);
    if (!nul || nul == p)
        return xd_fail(e, XD_EFORMAT, "%s: offset %zu: section %zu has %s name", ds->path, at, i,
                       nul ? "an empty" : "a non-NUL-terminated");
    for (const unsigned char *q = p; q < nul; q++)
        if (*q < 0x20)
            return xd_fail(e, XD_EFORMAT, "%s: offset %zu: section %zu name has a control "
                           "character", ds->path, at, i);
    for (const unsigned char *q = nul; q < p + DS_NAME; q++)
        if (*q)
            return xd_fail(e, XD_EFORMAT, "%s: offset %zu: section %zu name is not NUL-padded",
                           ds->path, at, i);
    const char *name = (const char *)p;
#define ENTRY_FAIL(off, ...)                                                                    \
    do {                                                                                        \
        char why_[XD_ERR_LEN];                                                                  \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                               \
        return xd_fail(e, XD_EFORMAT, "%s: offset %zu: section '%s': %s", ds->path,             \
                       at + (size_t)(off), name, why_);                                         \
    } while (0)
    uint32_t kind = io_le_u32(p + E_KIND), dtype = io_le_u32(p + E_DTYPE);
    uint32_t ndim = io_le_u32(p + E_NDIM);
    if (kind >= IO_SECTION_KIND_COUNT) ENTRY_FAIL(E_KIND, "unknown section kind %u", kind);
    if (dtype >= IO_DTYPE_COUNT) ENTRY_FAIL(E_DTYPE, "unknown dtype code %u", dtype);
    if (ndim > IO_MAX_DIMS) ENTRY_FAIL(E_NDIM, "%u dimensions, more than %d", ndim, IO_MAX_DIMS);
    if (ds->version == 1 && io_le_u32(p + E_SUM) != 0)
        ENTRY_FAIL(E_SUM, "reserved field is not zero");
    int64_t shape[IO_MAX_DIMS];
    for (uint32_t d = 0; d < IO_MAX_DIMS; d++) {
        shape[d] = (int64_t)io_le_u64(p + E_SHAPE + 8 * d);
        if (d < ndim && shape[d] < 0)
            ENTRY_FAIL(E_SHAPE + 8 * d, "dimension %u is negative (%lld)", d, (long long)shape[d]);
        if (d >= ndim && shape[d] != 0)
            ENTRY_FAIL(E_SHAPE + 8 * d, "unused dimension %u is not zero", d);
    }
    uint64_t off = io_le_u64(p + E_OFFSET), len = io_le_u64(p + E_LENGTH);
    size_t size = ds->size;
    if (off % DS_ALIGN != 0)
        ENTRY_FAIL(E_OFFSET, "data offset %llu is not a multiple of %d", (unsigned long long)off,
                   DS_ALIGN);
    if (off < table_end)
        ENTRY_FAIL(E_OFFSET, "data offset %llu is inside the header or the section table (which "
                   "ends at %zu)", (unsigned long long)off, table_end);
    if (off > size || len > size - off)
        ENTRY_FAIL(E_LENGTH, "data [%llu, +%llu) runs past the end of the file (%zu bytes)",
                   (unsigned long long)off, (unsigned long long)len, size);
    char shape_txt[256];
    io_shape_format((int)ndim, shape, shape_txt, sizeof shape_txt);
    if (kind == IO_SECTION_ARRAY) {
        size_t bytes;
        if (io_shape_bytes((io_dtype)dtype, (int)ndim, shape, &bytes) != 0)
            ENTRY_FAIL(E_SHAPE, "shape %s is too large", shape_txt);
        if (bytes != len)
            ENTRY_FAIL(E_LENGTH, "length %llu bytes, but %s %s needs %zu",
                       (unsigned long long)len, io_dtype_name((io_dtype)dtype), shape_txt, bytes);
    } else if (dtype != IO_U8 || ndim != 1) {
        ENTRY_FAIL(E_DTYPE, "a string table must be U8 with one dimension, not %s %s",
                   io_dtype_name((io_dtype)dtype), shape_txt);
    }
#undef ENTRY_FAIL
    io_tensor_set(&sc->t, name, (io_dtype)dtype, (int)ndim, shape, b + off);
    sc->kind = (io_section_kind)kind;
    sc->offset = off;
    sc->length = len;
    sc->sum = io_le_u32(p + E_SUM);
    return XD_OK;
}

/* A string table: n + 1 offsets starting at 0, increasing, the last one the end of the bytes;
 * every string NUL-terminated with no NUL inside. */
static xd_status ds_read_strings(io_dataset *ds, ds_section *sc, xd_err *e)
{
    uint64_t n = (uint64_t)sc->t.shape[0], len = sc->length;
    const char *name = sc->t.name;
    if (n >= len / 8)
        return xd_fail(e, XD_EFORMAT, "%s: offset %llu: string table '%s' of %llu strings needs "
                       "%llu bytes of offsets, the section has %llu", ds->path,
                       (unsigned long long)sc->offset, name, (unsigned long long)n,
                       (unsigned long long)(n < UINT64_MAX / 8 - 1 ? (n + 1) * 8 : UINT64_MAX),
                       (unsigned long long)len);
    const unsigned char *base = ds->bytes + sc->offset;
    const uint64_t *offs = (const uint64_t *)(const void *)base;
    const char *bytes = (const char *)base + (n + 1) * 8;
    uint64_t total = len - (n + 1) * 8;
#define STR_FAIL(k, ...)                                                                        \
    do {                                                                                        \
        char why_[XD_ERR_LEN];                                                                  \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                               \
        return xd_fail(e, XD_EFORMAT, "%s: offset %llu: string table '%s': %s", ds->path,       \
                       (unsigned long long)(sc->offset + 8 * (uint64_t)(k)), name, why_);       \
    } while (0)
    if (offs[0] != 0) STR_FAIL(0, "string 0 starts at %llu, not 0", (unsigned long long)offs[0]);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = offs[i], z = offs[i + 1];
        if (z > total)
            STR_FAIL(i + 1, "string %llu ends at byte %llu, past the %llu bytes of string data",
                     (unsigned long long)i, (unsigned long long)z, (unsigned long long)total);
        if (z <= a)
            STR_FAIL(i + 1, "string %llu ends at byte %llu, not after its start %llu",
                     (unsigned long long)i, (unsigned long long)z, (unsigned long long)a);
        if (bytes[z - 1] != '\0')
            STR_FAIL(i + 1, "string %llu is not NUL-terminated", (unsigned long long)i);
        if (memchr(bytes + a, 0, (size_t)(z - a - 1)))
            STR_FAIL(i + 1, "string %llu has a NUL byte inside", (unsigned long long)i);
    }
    if (offs[n] != total)
        STR_FAIL(n, "the strings end at byte %llu, but the section has %llu bytes of string data",
                 (unsigned long long)offs[n], (unsigned long long)total);
#undef STR_FAIL
    sc->strings.name = name;
    sc->strings.n = (size_t)n;
    sc->strings.offsets = offs;
    sc->strings.bytes = bytes;
    return XD_OK;
}

static xd_status ds_read_meta(io_dataset *ds, const ds_section *sc, xd_err *e)
{
    const io_strings *s = &sc->strings;
    if (sc->kind != IO_SECTION_STRINGS || s->n % 2 != 0)
        return xd_fail(e, XD_EFORMAT, "%s: offset %zu: section '%s' must be a string table of "
                       "key, value pairs", ds->path, sc->table_at, ds_meta_name);
    ds->n_meta = s->n / 2;
    ds->meta = xd_xcalloc(ds->n_meta + 1, sizeof *ds->meta);
    for (size_t i = 0; i < ds->n_meta; i++) {
        size_t klen = 0;
        ds->meta[i].key = io_strings_get(s, 2 * i, &klen);
        ds->meta[i].value = io_strings_get(s, 2 * i + 1, NULL);
        if (klen == 0)
            return xd_fail(e, XD_EFORMAT, "%s: offset %llu: metadata key %zu is empty", ds->path,
                           (unsigned long long)sc->offset, i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(ds->meta[j].key, ds->meta[i].key) == 0)
                return xd_fail(e, XD_EFORMAT, "%s: offset %llu: metadata key '%s' appears twice",
                               ds->path, (unsigned long long)sc->offset, ds->meta[i].key);
    }
    return XD_OK;
}

static xd_status ds_read(io_dataset *ds, xd_err *e)
{
    const unsigned char *b = ds->bytes;
    size_t size = ds->size;
    if (size < DS_HEADER)
        return xd_fail(e, XD_EFORMAT, "%s: file is %zu bytes, too short for the %d-byte dataset "
                       "header", ds->path, size, DS_HEADER);
    if (memcmp(b, ds_magic, sizeof ds_magic) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: offset 0: not an xdistill dataset file (bad magic)",
                       ds->path);
    uint32_t version = io_le_u32(b + 8), count = io_le_u32(b + 12);
    uint64_t file_size = io_le_u64(b + 16);
    if (version < 1 || version > IO_DATASET_VERSION)
        return xd_fail(e, XD_EUNSUPPORTED, "%s: offset 8: dataset format version %u is not "
                       "supported (this build reads versions 1 to %d)", ds->path, version,
                       IO_DATASET_VERSION);
    ds->version = version;
    if (count > IO_DATASET_MAX_SECTIONS)
        return xd_fail(e, XD_EFORMAT, "%s: offset 12: %u sections, more than the limit of %d",
                       ds->path, count, IO_DATASET_MAX_SECTIONS);
    if (file_size != size)
        return xd_fail(e, XD_EFORMAT, "%s: offset 16: the header says the file has %llu bytes, it "
                       "has %zu (%s)", ds->path, (unsigned long long)file_size, size,
                       size < file_size ? "truncated" : "bytes appended");
    if (version == 1 ? io_le_u64(b + 24) != 0 : io_le_u32(b + 28) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: offset %d: reserved field is not zero", ds->path,
                       version == 1 ? 24 : 28);
    size_t table_end = DS_HEADER + (size_t)count * DS_ENTRY;
    if (table_end > size)
        return xd_fail(e, XD_EFORMAT, "%s: offset 12: the table of %u sections ends at %zu, past "
                       "the end of the file (%zu bytes)", ds->path, count, table_end, size);
    if (version >= 2 && ds_table_sum(b, table_end) != io_le_u32(b + DS_TABLE_SUM))
        return xd_fail(e, XD_EFORMAT, "%s: offset %d: the section table's checksum does not "
                       "match, the header or the table is damaged", ds->path, DS_TABLE_SUM);

    ds->sec = xd_xcalloc(count ? count : 1, sizeof *ds->sec);
    ds->n = count;
    xd_status s;
    for (size_t i = 0; i < count; i++)
        if ((s = ds_read_entry(ds, i, table_end, e))) return s;

    ds_section **order = xd_xmalloc((count ? count : 1) * sizeof *order);
    for (size_t i = 0; i < count; i++) order[i] = &ds->sec[i];
    qsort(order, count, sizeof *order, ds_cmp_offset);
    s = XD_OK;
    for (size_t i = 1; i < count && !s; i++)
        if (order[i]->offset < order[i - 1]->offset + order[i - 1]->length)
            s = xd_fail(e, XD_EFORMAT, "%s: offset %llu: sections '%s' and '%s' overlap", ds->path,
                        (unsigned long long)order[i]->offset, order[i - 1]->t.name,
                        order[i]->t.name);
    free(order);
    if (s) return s;

    ds->by_name = xd_xmalloc((count ? count : 1) * sizeof *ds->by_name);
    for (size_t i = 0; i < count; i++) ds->by_name[i] = &ds->sec[i];
    qsort(ds->by_name, count, sizeof *ds->by_name, ds_cmp_name);
    for (size_t i = 1; i < count; i++)
        if (strcmp(ds->by_name[i]->t.name, ds->by_name[i - 1]->t.name) == 0)
            return xd_fail(e, XD_EFORMAT, "%s: offset %zu: section name '%s' appears twice",
                           ds->path, ds->by_name[i]->table_at, ds->by_name[i]->t.name);

    for (size_t i = 0; i < count; i++) {
        ds_section *sc = &ds->sec[i];
        if (sc->kind == IO_SECTION_STRINGS && (s = ds_read_strings(ds, sc, e))) return s;
        if (strcmp(sc->t.name, ds_meta_name) == 0 && (s = ds_read_meta(ds, sc, e))) return s;
    }
    return XD_OK;
}

/* Reads ds->bytes and hands ds out, or closes it when anything failed (s or the reading). */
static xd_status ds_open(io_dataset *ds, xd_status s, io_dataset **out, xd_err *e)
{
    if (!s) s = ds_read(ds, e);
    if (s) {
        io_dataset_close(ds);
        ds = NULL;
    }
    *out = ds;
    return s;
}

xd_status io_dataset_open(const char *path, io_dataset **out, xd_err *e)
{
    io_dataset *ds = xd_xcalloc(1, sizeof *ds);
    ds->path = xd_xstrdup(path);
    xd_status s = io_map_open(path, &ds->map, e);
    ds->bytes = ds->map.data;
    ds->size = ds->map.size;
    return ds_open(ds, s, out, e);
}

xd_status io_dataset_open_mem(const void *data, size_t n, const char *name, io_dataset **out,
                              xd_err *e)
{
    io_dataset *ds = xd_xcalloc(1, sizeof *ds);
    ds->path = xd_xstrdup(name);
    ds->bytes = data;
    ds->size = n;
    return ds_open(ds, XD_OK, out, e);
}

void io_dataset_close(io_dataset *ds)
{
    if (!ds) return;
    io_map_close(&ds->map);
    free(ds->sec);
    free(ds->by_name);
    free(ds->meta);
    free(ds->path);
    free(ds);
}

const char *io_dataset_path(const io_dataset *ds) { return ds->path; }
size_t io_dataset_count(const io_dataset *ds) { return ds->n; }

const char *io_dataset_section_name(const io_dataset *ds, size_t i)
{
    return i < ds->n ? ds->sec[i].t.name : NULL;
}

io_section_kind io_dataset_section_kind(const io_dataset *ds, size_t i)
{
    return i < ds->n ? ds->sec[i].kind : IO_SECTION_KIND_COUNT;
}

static const ds_section *ds_lookup(const io_dataset *ds, const char *name)
{
    ds_section **hit = bsearch(name, ds->by_name, ds->n, sizeof *ds->by_name, ds_cmp_key);
    return hit ? *hit : NULL;
}

const io_tensor *io_dataset_find(const io_dataset *ds, const char *name)
{
    const ds_section *sc = ds_lookup(ds, name);
    return sc && sc->kind == IO_SECTION_ARRAY ? &sc->t : NULL;
}

const io_strings *io_dataset_find_strings(const io_dataset *ds, const char *name)
{
    const ds_section *sc = ds_lookup(ds, name);
    return sc && sc->kind == IO_SECTION_STRINGS ? &sc->strings : NULL;
}

xd_status io_dataset_require(const io_dataset *ds, const char *name, io_dtype dtype, int ndim,
                             const io_tensor **t, xd_err *e)
{
    *t = NULL;
    const ds_section *sc = ds_lookup(ds, name);
    if (!sc) return xd_fail(e, XD_EFORMAT, "%s: no section '%s'", ds->path, name);
    if (sc->kind != IO_SECTION_ARRAY)
        return xd_fail(e, XD_EFORMAT, "%s: section '%s' is a %s section, not an array", ds->path,
                       name, kind_names[sc->kind]);
    if (sc->t.dtype != dtype)
        return xd_fail(e, XD_EFORMAT, "%s: section '%s' has dtype %s, expected %s", ds->path, name,
                       io_dtype_name(sc->t.dtype), io_dtype_name(dtype));
    if (ndim >= 0 && sc->t.ndim != ndim)
        return xd_fail(e, XD_EFORMAT, "%s: section '%s' has %d dimensions, expected %d", ds->path,
                       name, sc->t.ndim, ndim);
    *t = &sc->t;
    return XD_OK;
}

xd_status io_dataset_require_strings(const io_dataset *ds, const char *name, const io_strings **s,
                                     xd_err *e)
{
    *s = NULL;
    const ds_section *sc = ds_lookup(ds, name);
    if (!sc) return xd_fail(e, XD_EFORMAT, "%s: no section '%s'", ds->path, name);
    if (sc->kind != IO_SECTION_STRINGS)
        return xd_fail(e, XD_EFORMAT, "%s: section '%s' is an array, not a string table", ds->path,
                       name);
    *s = &sc->strings;
    return XD_OK;
}

const char *io_dataset_meta(const io_dataset *ds, const char *key)
{
    for (size_t i = 0; i < ds->n_meta; i++)
        if (strcmp(ds->meta[i].key, key) == 0) return ds->meta[i].value;
    return NULL;
}

size_t io_dataset_meta_count(const io_dataset *ds) { return ds->n_meta; }

const io_kv *io_dataset_meta_at(const io_dataset *ds, size_t i)
{
    return i < ds->n_meta ? &ds->meta[i] : NULL;
}

/* ---------------------------------------------------------------- checksums */

int io_dataset_version(const io_dataset *ds) { return (int)ds->version; }

io_sum io_dataset_section_sum(const io_dataset *ds, size_t i)
{
    if (ds->version < 2) return IO_SUM_NONE;
    const ds_section *sc = &ds->sec[i];
    const unsigned char *b = ds->bytes;
    return io_crc32(0, b + sc->offset, (size_t)sc->length) == sc->sum ? IO_SUM_OK : IO_SUM_DAMAGED;
}

xd_status io_dataset_verify(const io_dataset *ds, FILE *report, xd_err *e)
{
    if (ds->version < 2) {
        if (report) fprintf(report, "%s: format version %u, no checksums\n", ds->path, ds->version);
        return XD_OK;
    }
    xd_status s = XD_OK;
    for (size_t i = 0; i < ds->n && (report || !s); i++) {
        io_sum v = io_dataset_section_sum(ds, i);
        if (report) fprintf(report, "%s: section '%s': %s\n", ds->path, ds->sec[i].t.name,
                            io_sum_names[v]);
        if (!s && v == IO_SUM_DAMAGED)
            s = xd_fail(e, XD_EFORMAT, "%s: section '%s': checksum does not match, the data is "
                        "damaged", ds->path, ds->sec[i].t.name);
    }
    return s;
}

char *io_dataset_cache_dir(const char *path)
{
    char *parent = io_path_dir(path);
    char *dir = io_path_join(parent, "cache");
    free(parent);
    return dir;
}

#define DS_RECORD_FORMAT "xdistill dataset verified 1"
/* A file modified this recently may change again within the clock's granularity without its
 * modification time moving, so it is verified but not recorded. */
#define DS_RECORD_SETTLE_S 2

/* The record's text for the file as it is mapped. */
static void ds_record_text(const io_dataset *ds, char *buf, size_t n)
{
    const unsigned char *b = ds->bytes;
    snprintf(buf, n, DS_RECORD_FORMAT "\nsize %zu\nmtime %lld.%09lld\ntable %08x\n", ds->size,
             ds->map.mtime_s, ds->map.mtime_ns, (unsigned)io_le_u32(b + DS_TABLE_SUM));
}

static char *ds_record_path(const char *path)
{
    char *dir = io_dataset_cache_dir(path);
    const char *slash = strrchr(path, '/');
    char *name = xd_xmalloc(strlen(path) + 16);
    sprintf(name, "%s.verified", slash ? slash + 1 : path);
    char *rec = io_path_join(dir, name);
    free(name);
    free(dir);
    return rec;
}

/* Writes the record; any failure only means verifying again next time. */
static void ds_record_write(const io_dataset *ds, const char *rec, const char *text)
{
    if ((long long)time(NULL) - ds->map.mtime_s < DS_RECORD_SETTLE_S) return;
    char *dir = io_path_dir(rec);
    io_atomic w;
    if (io_mkdir_p(dir, NULL) == XD_OK && io_atomic_open(&w, rec, NULL) == XD_OK) {
        if (io_atomic_write(&w, text, strlen(text), NULL) == XD_OK) io_atomic_commit(&w, NULL);
        else io_atomic_abort(&w);
    }
    free(dir);
}

xd_status io_dataset_open_verified(const char *path, io_dataset **ds, xd_err *e)
{
    xd_status s = io_dataset_open(path, ds, e);
    if (s || (*ds)->version < 2) return s;
    char *rec = ds_record_path(path), text[256], *old = NULL;
    size_t len;
    ds_record_text(*ds, text, sizeof text);
    if (io_read_all(rec, sizeof text, (void **)&old, &len, NULL) != XD_OK || strcmp(old, text) != 0) {
        s = io_dataset_verify(*ds, NULL, e);
        if (!s) ds_record_write(*ds, rec, text);
    }
    free(old);
    free(rec);
    if (s) {
        io_dataset_close(*ds);
        *ds = NULL;
    }
    return s;
}

/* ---------------------------------------------------------------- describe */

static void ds_print_sum(const io_dataset *ds, const ds_section *sc, FILE *out)
{
    if (ds->version >= 2) fprintf(out, ", crc32 %08x", (unsigned)sc->sum);
    fputc('\n', out);
}

void io_dataset_describe(const io_dataset *ds, FILE *out)
{
    fprintf(out, "%s: xdistill dataset, format version %u%s, %zu section%s, %zu bytes\n",
            ds->path, ds->version, ds->version == 1 ? " (no checksums)" : "", ds->n,
            ds->n == 1 ? "" : "s", ds->size);
    if (ds->n_meta) fprintf(out, "  metadata:\n");
    for (size_t i = 0; i < ds->n_meta; i++) {
        fprintf(out, "    %s = ", ds->meta[i].key);
        io_print_text(out, ds->meta[i].value, strlen(ds->meta[i].value), 160);
        fputc('\n', out);
    }
    for (size_t i = 0; i < ds->n; i++) {
        const ds_section *sc = &ds->sec[i];
        if (strcmp(sc->t.name, ds_meta_name) == 0) continue;
        if (sc->kind == IO_SECTION_STRINGS) {
            fprintf(out, "  %s: %zu strings, %llu bytes at offset %llu", sc->t.name,
                    sc->strings.n, (unsigned long long)sc->length, (unsigned long long)sc->offset);
            ds_print_sum(ds, sc, out);
            size_t show = sc->strings.n < 5 ? sc->strings.n : 5;
            fprintf(out, "    first:");
            for (size_t k = 0; k < show; k++) {
                size_t len = 0;
                const char *str = io_strings_get(&sc->strings, k, &len);
                fprintf(out, "%s \"", k ? "," : "");
                io_print_text(out, str, len, 60);
                fputc('"', out);
            }
            fprintf(out, "%s\n", show < sc->strings.n ? ", ..." : "");
            continue;
        }
        char shape_txt[256];
        io_shape_format(sc->t.ndim, sc->t.shape, shape_txt, sizeof shape_txt);
        fprintf(out, "  %s: %s %s, %llu bytes at offset %llu", sc->t.name,
                io_dtype_name(sc->t.dtype), shape_txt, (unsigned long long)sc->length,
                (unsigned long long)sc->offset);
        ds_print_sum(ds, sc, out);
        io_tensor_print_values(&sc->t, out, "    ");
    }
}

xd_status io_dataset_identity(const char *path, uint64_t *h, xd_err *e)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return xd_fail(e, XD_EIO, "%s: cannot read the dataset: %s", path, strerror(errno));
    io_dataset *ds;
    xd_status s = io_dataset_open(path, &ds, e);
    if (s != XD_OK) return s;
    const char *base = strrchr(path, '/');
    uint64_t v = xd_fnv_str(*h, 'd', base ? base + 1 : path);
    v = xd_fnv_u64(v, 'z', (uint64_t)st.st_size);
    v = xd_fnv_u64(v, 't', (uint64_t)st.st_mtim.tv_sec);
    v = xd_fnv_u64(v, 'T', (uint64_t)st.st_mtim.tv_nsec);
    size_t nm = io_dataset_meta_count(ds);
    v = xd_fnv_u64(v, 'M', nm);
    for (size_t i = 0; i < nm; i++) {
        const io_kv *kv = io_dataset_meta_at(ds, i);
        v = xd_fnv_str(v, 'k', kv->key);
        v = xd_fnv_str(v, 'v', kv->value);
    }
    io_dataset_close(ds);
    *h = v;
    return XD_OK;
}
