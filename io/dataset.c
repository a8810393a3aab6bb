/* The dataset container: validating reader, describe (see dataset.h); the writer is in
 * dataset_write.c, what both need of the file format in dataset_internal.h.
 *
 * The reader checks every table entry, the placement of all sections together and every string
 * table before it returns. */
#include "io/dataset.h"
#include "io/dataset_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "core/hash.h"
#include "core/mem.h"
#include "io/file.h"

const char ds_magic[8] = {'X', 'D', 'S', 'E', 'T', 0, 0, 0};
const char ds_meta_name[] = "__metadata__";

static const char *const kind_names[] = {
    [IO_SECTION_ARRAY] = "array",
    [IO_SECTION_STRINGS] = "strings",
};
static_assert(sizeof kind_names / sizeof kind_names[0] == IO_SECTION_KIND_COUNT,
              "kind_names must name every io_section_kind");

const char *io_strings_get(const io_strings *s, size_t i, size_t *len)
{
    if (i >= s->n) return NULL;
    if (len) *len = (size_t)(s->offsets[i + 1] - s->offsets[i] - 1);
    return s->bytes + s->offsets[i];
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

#define DS_RECORD_FORMAT "xdistill dataset verified 2"
/* A file modified this recently may change again within the clock's granularity without its
 * modification time moving, so it is verified but not recorded. A file whose modification time
 * was set back after a change (touch -r, cp -p, an archive's extraction) still has a new status
 * change time, and a file put in its place another inode: the record names all three. */
#define DS_RECORD_SETTLE_S 2

/* The record's text for the file as it is mapped. */
static void ds_record_text(const io_dataset *ds, char *buf, size_t n)
{
    const unsigned char *b = ds->bytes;
    snprintf(buf, n,
             DS_RECORD_FORMAT "\nsize %zu\nmtime %lld.%09lld\nctime %lld.%09lld\nfile %llu:%llu\n"
                              "table %08x\n",
             ds->size, ds->map.mtime_s, ds->map.mtime_ns, ds->map.ctime_s, ds->map.ctime_ns,
             ds->map.dev, ds->map.ino, (unsigned)io_le_u32(b + DS_TABLE_SUM));
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
    char *rec = ds_record_path(path), text[320], *old = NULL;
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

void io_dataset_identity_of(const io_dataset *ds, uint64_t *h)
{
    const char *base = strrchr(ds->path, '/');
    uint64_t v = xd_fnv_str(*h, 'd', base ? base + 1 : ds->path);
    v = xd_fnv_u64(v, 'z', (uint64_t)ds->size);
    v = xd_fnv_u64(v, 't', (uint64_t)ds->map.mtime_s);
    v = xd_fnv_u64(v, 'T', (uint64_t)ds->map.mtime_ns);
    size_t nm = io_dataset_meta_count(ds);
    v = xd_fnv_u64(v, 'M', nm);
    for (size_t i = 0; i < nm; i++) {
        const io_kv *kv = io_dataset_meta_at(ds, i);
        v = xd_fnv_str(v, 'k', kv->key);
        v = xd_fnv_str(v, 'v', kv->value);
    }
    *h = v;
}

xd_status io_dataset_identity(const char *path, uint64_t *h, xd_err *e)
{
    io_dataset *ds;
    xd_status s = io_dataset_open(path, &ds, e);
    if (s != XD_OK) return s;
    io_dataset_identity_of(ds, h);
    io_dataset_close(ds);
    return XD_OK;
}
