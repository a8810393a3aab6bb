/* The dataset container's writer (see dataset.h; the reader is in dataset.c).
 *
 * The writer reserves the header and a table of max_sections + 1 entries (one for the metadata)
 * at the start of the temporary file, streams section data after it, and at the end seeks back
 * to fill in the header and the table before the rename. */
#include "io/dataset.h"
#include "io/dataset_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/file.h"

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
    /* a data set is mapped and read at random: huge pages, where the file system has them, spare
     * a shuffled epoch an address translation per example (BENCHMARKS.md, `bench grow`) */
    io_atomic_blocks(&w->out, IO_HUGE_BLOCK);
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
        s = io_atomic_seek(&w->out, 0, e);
        if (!s) s = io_atomic_write(&w->out, head, head_len, e);
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
