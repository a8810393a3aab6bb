/* Safetensors reader, validator and writer (see safetensors.h).
 *
 * The header is parsed with jansson (duplicate keys rejected); every entry is then checked on its
 * own (dtype, shape, offsets, bytes = element size * elements) and all entries together (sorted by
 * offset, they must tile the data area exactly). Only then does the caller get the file. */
#include "io/safetensors.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/file.h"

static const char st_meta_key[] = "__metadata__";
/* metadata key of a tensor's checksum: this prefix and the tensor's name */
static const char st_sum_prefix[] = "crc32.";
#define ST_SUM_PREFIX_LEN (sizeof st_sum_prefix - 1)

typedef struct {
    io_tensor t;
    uint64_t begin, end; /* data_offsets, relative to the data area */
    void *copy;          /* aligned copy of the data, when the file's placement is not aligned */
    int has_sum;
    uint32_t sum;        /* its "crc32.NAME" entry */
} st_entry;

struct io_st_file {
    char *path;
    io_map map;        /* the mapped file (empty when the bytes are the caller's) */
    size_t header_len; /* N */
    size_t data_size;  /* bytes after the header */
    size_t n;
    st_entry *entries; /* header order */
    st_entry **by_name; /* sorted by name, for io_st_find */
    size_t n_meta;
    io_kv *meta;       /* without the checksum entries */
    size_t n_sums;
    io_kv *sums;       /* the checksum entries while parsing: tensor name, hex digits */
};

/* ---------------------------------------------------------------- writing */

/* {"dtype":..,"shape":[..],"data_offsets":[begin,end]} */
static json_t *st_entry_json(const io_tensor *t, uint64_t begin, uint64_t end)
{
    json_t *shape = json_array();
    for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
    json_t *offs = json_array();
    json_array_append_new(offs, json_integer((json_int_t)begin));
    json_array_append_new(offs, json_integer((json_int_t)end));
    json_t *o = json_object();
    json_object_set_new(o, "dtype", json_string(io_dtype_name(t->dtype)));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "data_offsets", offs);
    return o;
}

/* Builds the JSON header; returns it as a new string or NULL with e filled. */
static char *st_header_text(const char *path, const io_tensor *ts, size_t n, const io_kv *meta,
                            size_t n_meta, xd_err *e)
{
    json_t *root = json_object(), *m = json_object();
    char *text = NULL;
    json_object_set_new(root, st_meta_key, m);
    for (size_t i = 0; i < n_meta; i++) {
        const io_kv *kv = &meta[i];
        if (!kv->key || !kv->value) {
            xd_fail(e, XD_EARG, "%s: metadata entry %zu has no key or no value", path, i);
            goto done;
        }
        if (strncmp(kv->key, st_sum_prefix, ST_SUM_PREFIX_LEN) == 0) {
            xd_fail(e, XD_EARG, "%s: metadata keys starting with '%s' are reserved for "
                    "checksums ('%s')", path, st_sum_prefix, kv->key);
            goto done;
        }
        if (json_object_get(m, kv->key)) {
            xd_fail(e, XD_EARG, "%s: metadata key '%s' given twice", path, kv->key);
            goto done;
        }
        json_t *v = json_string(kv->value);
        if (!v || json_object_set_new(m, kv->key, v) != 0) {
            xd_fail(e, XD_EARG, "%s: metadata '%s' is not valid UTF-8", path, kv->key);
            goto done;
        }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const io_tensor *t = &ts[i];
        size_t bytes;
        if (!t->name) {
            xd_fail(e, XD_EARG, "%s: tensor %zu has no name", path, i);
            goto done;
        }
        if (strcmp(t->name, st_meta_key) == 0) {
            xd_fail(e, XD_EARG, "%s: '%s' is reserved and cannot name a tensor", path, st_meta_key);
            goto done;
        }
        if (json_object_get(root, t->name)) {
            xd_fail(e, XD_EARG, "%s: tensor name '%s' given twice", path, t->name);
            goto done;
        }
        if ((int)t->dtype < 0 || t->dtype >= IO_DTYPE_COUNT || io_tensor_bytes(t, &bytes) != 0 ||
            off > (uint64_t)INT64_MAX - bytes) {
            xd_fail(e, XD_EARG, "%s: tensor '%s' has an invalid dtype or shape", path, t->name);
            goto done;
        }
        if (bytes && !t->data) {
            xd_fail(e, XD_EARG, "%s: tensor '%s' has no data", path, t->name);
            goto done;
        }
        if (json_object_set_new(root, t->name, st_entry_json(t, off, off + bytes)) != 0) {
            xd_fail(e, XD_EARG, "%s: tensor name '%s' is not valid UTF-8", path, t->name);
            goto done;
        }
        char *key = xd_xmalloc(ST_SUM_PREFIX_LEN + strlen(t->name) + 1), hex[9];
        snprintf(key, ST_SUM_PREFIX_LEN + strlen(t->name) + 1, "%s%s", st_sum_prefix, t->name);
        snprintf(hex, sizeof hex, "%08x", (unsigned)io_crc32(0, t->data, bytes));
        json_object_set_new(m, key, json_string(hex));
        free(key);
        off += bytes;
    }
    if (json_object_size(m) == 0) json_object_del(root, st_meta_key);
    text = json_dumps(root, JSON_COMPACT);
    if (!text) xd_fail(e, XD_ENOMEM, "%s: cannot build the header", path);
done:
    json_decref(root);
    return text;
}

xd_status io_st_write(const char *path, const io_tensor *tensors, size_t n, const io_kv *meta,
                      size_t n_meta, xd_err *e)
{
    char *text = st_header_text(path, tensors, n, meta, n_meta, e);
    if (!text) return e ? e->code : XD_EARG;
    /* spaces after the JSON so that the data area starts at a multiple of 8 */
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    unsigned char *head = xd_xmalloc(8 + padded);
    io_le_put_u64(head, (uint64_t)padded);
    memcpy(head + 8, text, len);
    memset(head + 8 + len, ' ', padded - len);
    free(text);

    io_atomic w;
    xd_status s = io_atomic_open(&w, path, e);
    if (!s) s = io_atomic_write(&w, head, 8 + padded, e);
    free(head);
    for (size_t i = 0; i < n && !s; i++) {
        size_t bytes = 0;
        io_tensor_bytes(&tensors[i], &bytes);
        s = io_atomic_write(&w, tensors[i].data, bytes, e);
    }
    if (s) {
        io_atomic_abort(&w);
        return s;
    }
    return io_atomic_commit(&w, e);
}

/* ---------------------------------------------------------------- reading */

static int st_cmp_offset(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int st_cmp_name(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return strcmp(x->t.name, y->t.name);
}

static int st_cmp_key(const void *key, const void *b)
{
    const st_entry *y = *(const st_entry *const *)b;
    return strcmp((const char *)key, y->t.name);
}

/* A JSON integer in [0, INT64_MAX]; -1 otherwise. */
static int st_nonneg_int(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static xd_status st_parse_meta(io_st_file *f, json_t *m, xd_err *e)
{
    if (!json_is_object(m))
        return xd_fail(e, XD_EFORMAT, "%s: '%s' is not a JSON object", f->path, st_meta_key);
    f->meta = xd_xcalloc(json_object_size(m) + 1, sizeof *f->meta);
    f->sums = xd_xcalloc(json_object_size(m) + 1, sizeof *f->sums);
    const char *key;
    json_t *v;
    json_object_foreach(m, key, v) {
        if (!json_is_string(v))
            return xd_fail(e, XD_EFORMAT, "%s: metadata '%s' is not a string (all values of "
                           "'%s' must be strings)", f->path, key, st_meta_key);
        int sum = strncmp(key, st_sum_prefix, ST_SUM_PREFIX_LEN) == 0;
        io_kv *kv = sum ? &f->sums[f->n_sums++] : &f->meta[f->n_meta++];
        kv->key = xd_xstrdup(sum ? key + ST_SUM_PREFIX_LEN : key);
        kv->value = xd_xstrdup(json_string_value(v));
    }
    return XD_OK;
}

/* One tensor entry: checks fields and sizes against the data area; fills *te. */
static xd_status st_parse_entry(io_st_file *f, const char *name, json_t *o, st_entry *te, xd_err *e)
{
    if (!json_is_object(o))
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': entry is not a JSON object", f->path, name);
    json_t *jd = NULL, *js = NULL, *jo = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "dtype") == 0) jd = v;
        else if (strcmp(key, "shape") == 0) js = v;
        else if (strcmp(key, "data_offsets") == 0) jo = v;
        else
            return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': unexpected field '%s'", f->path, name,
                           key);
    }
    if (!jd || !js || !jo)
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': missing field '%s'", f->path, name,
                       !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd))
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': dtype is not a string", f->path, name);
    io_dtype dt;
    if (io_dtype_from_name(json_string_value(jd), &dt) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", f->path, name,
                       json_string_value(jd));
    if (!json_is_array(js))
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': shape is not an array", f->path, name);
    size_t ndim = json_array_size(js);
    if (ndim > IO_MAX_DIMS)
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': shape has %zu dimensions, more than %d",
                       f->path, name, ndim, IO_MAX_DIMS);
    int64_t shape[IO_MAX_DIMS] = {0};
    for (size_t d = 0; d < ndim; d++)
        if (st_nonneg_int(json_array_get(js, d), &shape[d]) != 0)
            return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': shape entry %zu is not a "
                           "non-negative integer", f->path, name, d);
    int64_t begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        st_nonneg_int(json_array_get(jo, 0), &begin) != 0 ||
        st_nonneg_int(json_array_get(jo, 1), &end) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': data_offsets is not a pair of "
                       "non-negative integers", f->path, name);
    if (begin > end || (uint64_t)end > f->data_size)
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] out of range "
                       "(the data area has %zu bytes)", f->path, name, (long long)begin,
                       (long long)end, f->data_size);
    char shape_txt[256];
    io_shape_format((int)ndim, shape, shape_txt, sizeof shape_txt);
    size_t bytes;
    if (io_shape_bytes(dt, (int)ndim, shape, &bytes) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': shape %s is too large", f->path, name,
                       shape_txt);
    if ((uint64_t)(end - begin) != bytes)
        return xd_fail(e, XD_EFORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes, "
                       "but %s %s needs %zu", f->path, name, (long long)begin, (long long)end,
                       (long long)(end - begin), io_dtype_name(dt), shape_txt, bytes);
    te->begin = (uint64_t)begin;
    te->end = (uint64_t)end;
    io_tensor_set(&te->t, xd_xstrdup(name), dt, (int)ndim, shape, NULL);
    return XD_OK;
}

/* All entries together must tile [0, data_size) exactly. */
static xd_status st_check_tiling(io_st_file *f, xd_err *e)
{
    st_entry **order = xd_xmalloc((f->n ? f->n : 1) * sizeof *order);
    for (size_t i = 0; i < f->n; i++) order[i] = &f->entries[i];
    qsort(order, f->n, sizeof *order, st_cmp_offset);
    uint64_t pos = 0;
    xd_status s = XD_OK;
    for (size_t i = 0; i < f->n && !s; i++) {
        const st_entry *t = order[i];
        if (t->begin < pos)
            s = xd_fail(e, XD_EFORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                        f->path, order[i - 1]->t.name, (unsigned long long)order[i - 1]->begin,
                        (unsigned long long)order[i - 1]->end, t->t.name,
                        (unsigned long long)t->begin, (unsigned long long)t->end);
        else if (t->begin > pos)
            s = xd_fail(e, XD_EFORMAT, "%s: data bytes [%llu, %llu) (file offset %llu) belong to no "
                        "tensor", f->path, (unsigned long long)pos, (unsigned long long)t->begin,
                        (unsigned long long)(8 + f->header_len + pos));
        pos = t->end;
    }
    if (!s && pos != f->data_size)
        s = xd_fail(e, XD_EFORMAT, "%s: the data area has %zu bytes but the tensors cover %llu "
                    "(file offset %llu on belongs to no tensor)", f->path, f->data_size,
                    (unsigned long long)pos, (unsigned long long)(8 + f->header_len + pos));
    free(order);
    return s;
}

static void st_free_kv(io_kv *kv, size_t n)
{
    for (size_t i = 0; kv && i < n; i++) {
        free((char *)kv[i].key);
        free((char *)kv[i].value);
    }
    free(kv);
}

static st_entry *st_lookup(const io_st_file *f, const char *name)
{
    st_entry **hit = bsearch(name, f->by_name, f->n, sizeof *f->by_name, st_cmp_key);
    return hit ? *hit : NULL;
}

/* Each "crc32.NAME" entry onto its tensor: 8 hex digits, a tensor of that name. */
static xd_status st_attach_sums(io_st_file *f, xd_err *e)
{
    for (size_t i = 0; i < f->n_sums; i++) {
        const char *name = f->sums[i].key, *hex = f->sums[i].value;
        st_entry *t = st_lookup(f, name);
        size_t digits = strspn(hex, "0123456789abcdefABCDEF");
        if (!t)
            return xd_fail(e, XD_EFORMAT, "%s: metadata '%s%s' is the checksum of no tensor",
                           f->path, st_sum_prefix, name);
        if (digits != 8 || hex[8])
            return xd_fail(e, XD_EFORMAT, "%s: metadata '%s%s' = '%s' is not 8 hex digits",
                           f->path, st_sum_prefix, name, hex);
        t->has_sum = 1;
        t->sum = (uint32_t)strtoul(hex, NULL, 16);
    }
    st_free_kv(f->sums, f->n_sums);
    f->sums = NULL;
    f->n_sums = 0;
    for (size_t i = 0; i < f->n; i++) f->n_sums += (size_t)f->entries[i].has_sum;
    return XD_OK;
}

/* Validates b[0, size) (the mapped file or the caller's buffer). */
static xd_status st_parse(io_st_file *f, const unsigned char *b, size_t size, xd_err *e)
{
    if (size < 8)
        return xd_fail(e, XD_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header "
                       "length", f->path, size);
    uint64_t n = io_le_u64(b);
    if (n > IO_ST_MAX_HEADER)
        return xd_fail(e, XD_EFORMAT, "%s: offset 0: header length %llu is over the %zu-byte limit",
                       f->path, (unsigned long long)n, IO_ST_MAX_HEADER);
    if (n > size - 8)
        return xd_fail(e, XD_EFORMAT, "%s: offset 0: header length %llu runs past the end of the "
                       "file (%zu bytes)", f->path, (unsigned long long)n, size);
    f->header_len = (size_t)n;
    f->data_size = size - 8 - f->header_len;
    if (n == 0 || b[8] != '{')
        return xd_fail(e, XD_EFORMAT, "%s: offset 8: the header does not start with '{'", f->path);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)b + 8, f->header_len, JSON_REJECT_DUPLICATES, &jerr);
    /* jansson's position is just past the byte where it gave up */
    if (!root)
        return xd_fail(e, XD_EFORMAT, "%s: offset %lld: invalid JSON header: %s", f->path,
                       (long long)(8 + (jerr.position > 0 ? jerr.position - 1 : 0)), jerr.text);
    xd_status s = XD_OK;
    if (!json_is_object(root)) {
        s = xd_fail(e, XD_EFORMAT, "%s: offset 8: the header is not a JSON object", f->path);
        goto done;
    }
    f->entries = xd_xcalloc(json_object_size(root) + 1, sizeof *f->entries);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, st_meta_key) == 0) s = st_parse_meta(f, v, e);
        else if (!(s = st_parse_entry(f, key, v, &f->entries[f->n], e))) f->n++;
        if (s) goto done;
    }
    if ((s = st_check_tiling(f, e))) goto done;

    const unsigned char *data = b + 8 + f->header_len;
    for (size_t i = 0; i < f->n; i++) {
        st_entry *t = &f->entries[i];
        size_t bytes = (size_t)(t->end - t->begin);
        size_t at = 8 + f->header_len + (size_t)t->begin;
        t->t.data = data + t->begin;
        /* other writers may place a tensor off its natural alignment; hand out a copy then */
        if (bytes && at % io_dtype_size(t->t.dtype) != 0) {
            t->copy = xd_try_alloc(bytes);
            if (!t->copy) {
                s = xd_fail(e, XD_ENOMEM, "%s: cannot allocate %zu bytes", f->path, bytes);
                goto done;
            }
            memcpy(t->copy, data + t->begin, bytes);
            t->t.data = t->copy;
        }
    }
    f->by_name = xd_xmalloc((f->n ? f->n : 1) * sizeof *f->by_name);
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = &f->entries[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, st_cmp_name);
    s = st_attach_sums(f, e);
done:
    json_decref(root);
    return s;
}

/* Hands f out when s is XD_OK, else closes it. */
static xd_status st_done(io_st_file *f, xd_status s, io_st_file **out)
{
    if (s) {
        io_st_close(f);
        f = NULL;
    }
    *out = f;
    return s;
}

xd_status io_st_open_unverified(const char *path, io_st_file **out, xd_err *e)
{
    io_st_file *f = xd_xcalloc(1, sizeof *f);
    f->path = xd_xstrdup(path);
    xd_status s = io_map_open(path, &f->map, e);
    if (!s) s = st_parse(f, f->map.data, f->map.size, e);
    return st_done(f, s, out);
}


io_sum io_st_tensor_sum(const io_st_file *f, size_t i)
{
    const st_entry *t = &f->entries[i];
    if (!t->has_sum) return IO_SUM_NONE;
    return io_crc32(0, t->t.data, (size_t)(t->end - t->begin)) == t->sum ? IO_SUM_OK
                                                                          : IO_SUM_DAMAGED;
}

int io_st_has_sums(const io_st_file *f) { return f->n_sums > 0; }

xd_status io_st_verify(const io_st_file *f, FILE *report, xd_err *e)
{
    if (!io_st_has_sums(f)) {
        if (report) fprintf(report, "%s: no checksums (an older build or another writer)\n", f->path);
        return XD_OK;
    }
    xd_status s = XD_OK;
    for (size_t i = 0; i < f->n && (report || !s); i++) {
        io_sum v = io_st_tensor_sum(f, i);
        const char *name = f->entries[i].t.name;
        if (report) fprintf(report, "%s: tensor '%s': %s\n", f->path, name, io_sum_names[v]);
        if (s) continue;
        if (v == IO_SUM_NONE)
            s = xd_fail(e, XD_EFORMAT, "%s: tensor '%s' has no checksum (metadata '%s%s'), the "
                        "others have", f->path, name, st_sum_prefix, name);
        else if (v == IO_SUM_DAMAGED)
            s = xd_fail(e, XD_EFORMAT, "%s: tensor '%s': checksum does not match, the data is "
                        "damaged", f->path, name);
    }
    return s;
}

/* Hands f out when it parsed (s XD_OK) and its checksums hold, else closes it. */
static xd_status st_done_verified(io_st_file *f, xd_status s, io_st_file **out, xd_err *e)
{
    if (!s) s = io_st_verify(f, NULL, e);
    return st_done(f, s, out);
}

xd_status io_st_open(const char *path, io_st_file **out, xd_err *e)
{
    io_st_file *f = xd_xcalloc(1, sizeof *f);
    f->path = xd_xstrdup(path);
    xd_status s = io_map_open(path, &f->map, e);
    if (!s) s = st_parse(f, f->map.data, f->map.size, e);
    return st_done_verified(f, s, out, e);
}

xd_status io_st_open_mem(const void *data, size_t n, const char *name, io_st_file **out,
                         xd_err *e)
{
    io_st_file *f = xd_xcalloc(1, sizeof *f);
    f->path = xd_xstrdup(name);
    return st_done_verified(f, st_parse(f, data, n, e), out, e);
}

void io_st_close(io_st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) {
        free((char *)f->entries[i].t.name);
        free(f->entries[i].copy);
    }
    st_free_kv(f->meta, f->n_meta);
    st_free_kv(f->sums, f->n_sums);
    free(f->entries);
    free(f->by_name);
    io_map_close(&f->map);
    free(f->path);
    free(f);
}

const char *io_st_path(const io_st_file *f) { return f->path; }
size_t io_st_count(const io_st_file *f) { return f->n; }
const io_tensor *io_st_tensor(const io_st_file *f, size_t i) { return i < f->n ? &f->entries[i].t : NULL; }
size_t io_st_meta_count(const io_st_file *f) { return f->n_meta; }
const io_kv *io_st_meta_at(const io_st_file *f, size_t i) { return i < f->n_meta ? &f->meta[i] : NULL; }

const io_tensor *io_st_find(const io_st_file *f, const char *name)
{
    const st_entry *t = st_lookup(f, name);
    return t ? &t->t : NULL;
}

const char *io_st_meta(const io_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

static int shapes_equal(const io_tensor *a, const io_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

xd_status io_st_check(const io_st_file *f, const io_tensor *expected, size_t n, xd_err *e)
{
    size_t problems = 0, matched = 0;
    char first[2 * XD_ERR_LEN] = "";
#define ST_PROBLEM(...)                                                                         \
    do {                                                                                        \
        if (problems++ == 0) snprintf(first, sizeof first, __VA_ARGS__);                        \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        const io_tensor *x = &expected[i];
        const io_tensor *t = io_st_find(f, x->name);
        if (!t) {
            ST_PROBLEM("tensor '%s' is missing", x->name);
            continue;
        }
        matched++;
        if (t->dtype != x->dtype)
            ST_PROBLEM("tensor '%s' has dtype %s, expected %s", x->name, io_dtype_name(t->dtype),
                       io_dtype_name(x->dtype));
        else if (!shapes_equal(t, x)) {
            char got[256], want[256];
            io_shape_format(t->ndim, t->shape, got, sizeof got);
            io_shape_format(x->ndim, x->shape, want, sizeof want);
            ST_PROBLEM("tensor '%s' has shape %s, expected %s", x->name, got, want);
        }
    }
    /* every expected name that was found matched one file tensor; the rest are extra */
    if (matched < f->n) {
        for (size_t i = 0; i < f->n; i++) {
            const char *name = f->entries[i].t.name;
            size_t j = 0;
            while (j < n && strcmp(expected[j].name, name) != 0) j++;
            if (j == n) ST_PROBLEM("unexpected tensor '%s'", name);
        }
    }
#undef ST_PROBLEM
    if (!problems) return XD_OK;
    if (problems == 1) return xd_fail(e, XD_ESHAPE, "%s: %s", f->path, first);
    return xd_fail(e, XD_ESHAPE, "%s: %s (and %zu more problem%s)", f->path, first, problems - 1,
                   problems == 2 ? "" : "s");
}

void io_st_describe(const io_st_file *f, FILE *out)
{
    fprintf(out, "%s: safetensors, %zu tensor%s, %zu bytes of data after a %zu-byte header\n",
            f->path, f->n, f->n == 1 ? "" : "s", f->data_size, f->header_len);
    if (f->n_meta) fprintf(out, "  metadata:\n");
    for (size_t i = 0; i < f->n_meta; i++) {
        fprintf(out, "    %s = ", f->meta[i].key);
        io_print_text(out, f->meta[i].value, strlen(f->meta[i].value), 160);
        fputc('\n', out);
    }
    for (size_t i = 0; i < f->n; i++) {
        const st_entry *t = &f->entries[i];
        char shape_txt[256];
        io_shape_format(t->t.ndim, t->t.shape, shape_txt, sizeof shape_txt);
        fprintf(out, "  %s: %s %s, %llu bytes at data offset %llu", t->t.name,
                io_dtype_name(t->t.dtype), shape_txt, (unsigned long long)(t->end - t->begin),
                (unsigned long long)t->begin);
        if (t->has_sum) fprintf(out, ", crc32 %08x", (unsigned)t->sum);
        fputc('\n', out);
        io_tensor_print_values(&t->t, out, "    ");
    }
}
