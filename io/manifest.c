/* TSV and JSONL manifests of image-text pairs (see manifest.h for the format and the label rule).
 *
 * Both readers load the whole file (bounded), walk it line by line and hand each example to one
 * row builder, which checks the path and keeps the raw label text; the label rule is applied once
 * all rows are in, because whether labels are ids or names depends on every label of the file. */
#include "io/manifest.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "io/file.h"
#include "modalities/text/normalize.h"
#include "modalities/text/utf8.h"

typedef enum { MF_COL_IMAGE, MF_COL_TEXT, MF_COL_LABEL, MF_COL_COUNT } mf_col;

static const char *const tsv_col_names[] = {
    [MF_COL_IMAGE] = "image_path",
    [MF_COL_TEXT] = "text",
    [MF_COL_LABEL] = "label",
};
static_assert(sizeof tsv_col_names / sizeof tsv_col_names[0] == MF_COL_COUNT,
              "tsv_col_names must name every column");

/* JSONL keys: the manifest's columns, then a rationale record's own two */
enum { MF_KEY_INPUT = MF_COL_COUNT, MF_KEY_RATIONALE, MF_KEY_COUNT };
static const char *const jsonl_keys[] = {
    [MF_COL_IMAGE] = "image",
    [MF_COL_TEXT] = "text",
    [MF_COL_LABEL] = "label",
    [MF_KEY_INPUT] = "input",
    [MF_KEY_RATIONALE] = "rationale",
};
static_assert(sizeof jsonl_keys / sizeof jsonl_keys[0] == MF_KEY_COUNT,
              "jsonl_keys must name every key");

/* Open-addressing table from class name to id (names are the strings in class_names). */
typedef struct {
    int32_t *slot; /* (mask + 1) class id, or -1 if empty */
    size_t mask;
} name_table;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* An empty table with room for n names. */
static name_table name_table_new(size_t n)
{
    size_t size = 16;
    while (size < 2 * n) size *= 2;
    name_table t = {xd_xmalloc(size * sizeof *t.slot), size - 1};
    for (size_t i = 0; i < size; i++) t.slot[i] = -1;
    return t;
}

/* The slot that holds name, or the empty slot where it goes. */
static size_t name_table_slot(const name_table *t, char *const *names, const char *name)
{
    size_t h = (size_t)hash_str(name) & t->mask;
    while (t->slot[h] >= 0 && strcmp(names[t->slot[h]], name) != 0) h = (h + 1) & t->mask;
    return h;
}

/* How the raw labels are to be read once all rows are in. */
typedef enum {
    MF_LABELS_AUTO,  /* TSV: ids if every label is an integer, else names */
    MF_LABELS_IDS,   /* JSONL integers */
    MF_LABELS_NAMES, /* JSONL strings */
} mf_label_mode;

io_manifest_limits io_manifest_default_limits(void)
{
    return (io_manifest_limits){
        .max_bytes = (size_t)1 << 30, .max_line = (size_t)64 << 10, .max_rows = 10000000};
}

void io_manifest_free(io_manifest *m)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->paths) free(m->paths[i]);
        if (m->texts) free(m->texts[i]);
        if (m->rationales) free(m->rationales[i]);
    }
    free(m->rationales);
    free(m->first_skipped);
    for (size_t i = 0; i < m->n_classes; i++) free(m->class_names[i]);
    free(m->paths);
    free(m->texts);
    free(m->labels);
    free(m->class_names);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------------------------
// shared pieces: errors, UTF-8, lines, rows

typedef struct {
    const char *path; /* the manifest */
    char *dir;        /* its folder, for relative image paths */
    io_manifest_limits lim;
    io_manifest *m;
    size_t cap;       /* room in every per-row array */
    char **label_raw; /* (cap) label text as written */
    size_t *lines;    /* (cap) line number of each row */
    const io_manifest_classes *fixed; /* a classes file, or NULL */
    name_table fixed_t;               /* its names' ids (slot NULL without one) */
    int rationales;   /* rationale records (input, label, rationale), not image-text pairs */
    int skip_bad;     /* rationale records: a bad line is counted and left out */
    xd_err *e;
} mf_build;

static xd_status mf_fail(const mf_build *b, xd_status code, size_t line, const char *col,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static xd_status mf_fail(const mf_build *b, xd_status code, size_t line, const char *col,
                         const char *fmt, ...)
{
    char why[XD_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    xd_vformat(why, fmt, ap);
    va_end(ap);
    if (col) return xd_fail(b->e, code, "%s:%zu: column %s: %s", b->path, line, col, why);
    return xd_fail(b->e, code, "%s:%zu: %s", b->path, line, why);
}

/* Offset of the first byte that is not part of valid UTF-8 (txt_validate's rule; a NUL byte is
 * invalid here too), or n if all of s is valid. */
static size_t utf8_bad_offset(const char *s, size_t n)
{
    const char *nul = memchr(s, 0, n);
    return txt_validate(s, nul ? (size_t)(nul - s) : n, NULL);
}

xd_status io_manifest_check_line(const char *where, size_t line, const char *s, size_t n,
                                 xd_err *e)
{
    size_t bad = utf8_bad_offset(s, n);
    if (bad < n)
        return xd_fail(e, XD_EFORMAT, "%s:%zu: invalid UTF-8 at byte %zu of the line (0x%02x)",
                       where, line, bad, (unsigned char)s[bad]);
    return XD_OK;
}

static xd_status check_utf8(const mf_build *b, size_t line, const char *col, const char *s,
                            size_t n)
{
    if (!col) return io_manifest_check_line(b->path, line, s, n, b->e);
    size_t bad = utf8_bad_offset(s, n);
    if (bad < n)
        return mf_fail(b, XD_EFORMAT, line, col, "invalid UTF-8 at byte %zu of the field (0x%02x)",
                       bad, (unsigned char)s[bad]);
    return XD_OK;
}

/* Next line of buf starting at *off: its start and length without "\n" or "\r\n". Returns 0 at
 * the end of the buffer. */
static int next_line(char *buf, size_t n, size_t *off, char **line, size_t *len)
{
    if (*off >= n) return 0;
    char *s = buf + *off;
    char *nl = memchr(s, '\n', n - *off);
    size_t k = nl ? (size_t)(nl - s) : n - *off;
    *off += k + (nl ? 1 : 0);
    if (k && s[k - 1] == '\r') k--;
    s[k] = '\0'; /* the '\n', the '\r' or the buffer's terminating NUL */
    *line = s;
    *len = k;
    return 1;
}

static size_t count_lines(const char *buf, size_t n)
{
    size_t lines = 1;
    for (const char *p = buf; (p = memchr(p, '\n', n - (size_t)(p - buf))) != NULL; p++) lines++;
    return lines;
}

static xd_status build_start(mf_build *b, const char *path, io_manifest *m, size_t lines, xd_err *e)
{
    b->path = path;
    b->dir = io_path_dir(path);
    b->m = m;
    b->e = e;
    b->cap = lines < b->lim.max_rows ? lines : b->lim.max_rows;
    m->paths = b->rationales ? NULL : xd_try_alloc(b->cap * sizeof *m->paths);
    m->rationales = b->rationales ? xd_try_alloc(b->cap * sizeof *m->rationales) : NULL;
    m->texts = xd_try_alloc(b->cap * sizeof *m->texts);
    m->labels = xd_try_alloc(b->cap * sizeof *m->labels);
    b->label_raw = xd_try_alloc(b->cap * sizeof *b->label_raw);
    b->lines = xd_try_alloc(b->cap * sizeof *b->lines);
    if (!(m->paths || m->rationales) || !m->texts || !m->labels || !b->label_raw || !b->lines)
        return xd_fail(e, XD_ENOMEM, "%s: cannot allocate room for %zu examples", path, b->cap);
    return XD_OK;
}

static void build_end(mf_build *b)
{
    if (b->label_raw)
        for (size_t i = 0; i < b->m->n; i++) free(b->label_raw[i]);
    free(b->label_raw);
    free(b->lines);
    free(b->dir);
    free(b->fixed_t.slot);
    b->fixed_t.slot = NULL;
    b->label_raw = NULL;
    b->lines = NULL;
    b->dir = NULL;
}

/* A label or class name (valid UTF-8) in one spelling, new in *out: NFC, invisible characters
 * dropped, each run of white space one space and none at the ends (modalities/text/normalize.h),
 * so that "Café" typed composed or decomposed, or "cat " and "cat", are one class; case and
 * accents are kept. Nothing but white space and invisible characters gives "". */
static xd_status label_spelling(const char *s, size_t n, char **out, xd_err *e)
{
    const txt_norm_opts o = {.collapse_space = true};
    size_t len;
    return txt_normalize(s, n, &o, out, &len, e);
}

/* Adds one example: image path resolved and checked, text and label (label_spelling) copied. */
static xd_status build_row(mf_build *b, size_t line, const char *const cols[MF_COL_COUNT],
                           const char *image, const char *text, const char *label)
{
    io_manifest *m = b->m;
    if (m->n >= b->lim.max_rows)
        return mf_fail(b, XD_EFORMAT, line, NULL, "more than the %zu examples allowed",
                       b->lim.max_rows);
    char *name;
    xd_err bad;
    if (label_spelling(label, strlen(label), &name, &bad) != XD_OK)
        return mf_fail(b, bad.code, line, cols[MF_COL_LABEL], "%s", bad.msg);
    /* blank (nothing but Unicode white space, which the spelling drops) is empty */
    if (!*name) {
        free(name);
        return mf_fail(b, XD_EFORMAT, line, cols[MF_COL_LABEL], "empty label");
    }
    if (b->rationales) { /* image holds the rationale, checked by jsonl_row */
        size_t i = m->n++;
        m->rationales[i] = xd_xstrdup(image);
        m->texts[i] = xd_xstrdup(text);
        b->label_raw[i] = name;
        b->lines[i] = line;
        return XD_OK;
    }
    if (image[0] == '\0') {
        free(name);
        return mf_fail(b, XD_EFORMAT, line, cols[MF_COL_IMAGE], "empty image path");
    }
    char *resolved = (image[0] == '/' || strcmp(b->dir, ".") == 0) ? xd_xstrdup(image)
                                                                   : io_path_join(b->dir, image);
    struct stat st;
    const char *why = NULL;
    if (stat(resolved, &st) != 0)
        why = errno == ENOENT ? "does not exist" : strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "is not a regular file";
    if (why) {
        char q[XD_EXCERPT_BUF];
        xd_status s = mf_fail(b, XD_EIO, line, cols[MF_COL_IMAGE], "image file '%s': %s",
                              xd_excerpt(resolved, q), why);
        free(resolved);
        free(name);
        return s;
    }
    size_t i = m->n++;
    m->paths[i] = resolved;
    m->texts[i] = xd_xstrdup(text);
    b->label_raw[i] = name;
    b->lines[i] = line;
    return XD_OK;
}

// ----------------------------------------------------------------------------------------------
// labels

typedef enum { LBL_ID, LBL_NUMBER, LBL_WORD } lbl_kind;

/* An id is decimal digits with a value below IO_MANIFEST_MAX_CLASSES; a "number" is anything else
 * strtod reads completely that starts like a number (-1, 2.5, 1e3, 99999999999). */
static lbl_kind label_kind(const char *s, long *id)
{
    size_t n = strlen(s);
    if (n && strspn(s, "0123456789") == n) {
        if (n > 9) return LBL_NUMBER;
        long v = strtol(s, NULL, 10);
        if (v >= IO_MANIFEST_MAX_CLASSES) return LBL_NUMBER;
        *id = v;
        return LBL_ID;
    }
    if (strchr("+-.0123456789", s[0])) {
        char *end;
        strtod(s, &end);
        if (end != s && *end == '\0') return LBL_NUMBER;
    }
    return LBL_WORD;
}

static int cmp_class(const void *a, const void *b, void *names)
{
    char **n = names;
    return strcmp(n[*(const int32_t *)a], n[*(const int32_t *)b]);
}

/* Class names in byte order (strcmp), ids renumbered to match: the ids then depend on the set of
 * names only, not on the order of the rows. */
static void sort_classes(io_manifest *m)
{
    size_t k = m->n_classes;
    int32_t *order = xd_xmalloc((k + 1) * sizeof *order), *rank = xd_xmalloc((k + 1) * sizeof *rank);
    char **names = xd_xmalloc((k + 1) * sizeof *names);
    for (size_t c = 0; c < k; c++) order[c] = (int32_t)c;
    qsort_r(order, k, sizeof *order, cmp_class, m->class_names);
    for (size_t c = 0; c < k; c++) {
        rank[order[c]] = (int32_t)c;
        names[c] = m->class_names[order[c]];
    }
    memcpy(m->class_names, names, k * sizeof *names);
    for (size_t i = 0; i < m->n; i++) m->labels[i] = rank[m->labels[i]];
    free(names);
    free(rank);
    free(order);
}

static xd_status labels_from_names(mf_build *b)
{
    io_manifest *m = b->m;
    size_t most = m->n < IO_MANIFEST_MAX_CLASSES ? m->n : IO_MANIFEST_MAX_CLASSES;
    name_table t = name_table_new(most);
    m->class_names = xd_xmalloc(most * sizeof *m->class_names + 1);
    xd_status s = XD_OK;
    for (size_t i = 0; i < m->n && s == XD_OK; i++) {
        const char *name = b->label_raw[i];
        size_t h = name_table_slot(&t, m->class_names, name);
        if (t.slot[h] < 0) {
            if (m->n_classes >= IO_MANIFEST_MAX_CLASSES) {
                s = mf_fail(b, XD_EFORMAT, b->lines[i], "label", "more than %d class names",
                            IO_MANIFEST_MAX_CLASSES);
                break;
            }
            t.slot[h] = (int32_t)m->n_classes;
            m->class_names[m->n_classes++] = xd_xstrdup(name);
        }
        m->labels[i] = t.slot[h];
    }
    free(t.slot);
    m->labels_are_names = 1;
    if (s == XD_OK) sort_classes(m);
    return s;
}

static xd_status labels_from_ids(mf_build *b, const char *col)
{
    io_manifest *m = b->m;
    long top = -1;
    size_t top_row = 0;
    for (size_t i = 0; i < m->n; i++) {
        long id = -1;
        char q[XD_EXCERPT_BUF];
        if (label_kind(b->label_raw[i], &id) != LBL_ID)
            return mf_fail(b, XD_EFORMAT, b->lines[i], col,
                           "'%s' is not a class id in 0..%d (the labels of this file are "
                           "numbers, so they are read as ids)",
                           xd_excerpt(b->label_raw[i], q), IO_MANIFEST_MAX_CLASSES - 1);
        m->labels[i] = (int32_t)id;
        if (id > top) {
            top = id;
            top_row = i;
        }
    }
    /* ids name classes 0..K-1, each used: an id past a gap would make classes no example has */
    uint8_t *used = xd_xcalloc((size_t)top + 2, 1);
    for (size_t i = 0; i < m->n; i++) used[m->labels[i]] = 1;
    long missing = 0;
    while (missing < top && used[missing]) missing++;
    free(used);
    if (missing < top)
        return mf_fail(b, XD_EFORMAT, b->lines[top_row], col,
                       "class id %ld, but no example has id %ld: numeric labels must be the ids "
                       "0..K-1 with every id used (write class names to have other labels)",
                       top, missing);
    m->n_classes = (size_t)(top + 1);
    m->class_names = xd_xmalloc(m->n_classes * sizeof *m->class_names + 1);
    for (size_t c = 0; c < m->n_classes; c++) {
        char num[24];
        snprintf(num, sizeof num, "%zu", c);
        m->class_names[c] = xd_xstrdup(num);
    }
    m->labels_are_names = 0;
    return XD_OK;
}

/* raw's class id in the classes file: a name among its names, an id below its count; else an
 * error on line (as mf_fail). */
static xd_status fixed_label(mf_build *b, mf_label_mode mode, const char *raw, size_t line,
                             const char *col, int32_t *id)
{
    const io_manifest_classes *f = b->fixed;
    char q[XD_EXCERPT_BUF];
    if (!b->fixed_t.slot) {
        b->fixed_t = name_table_new(f->n);
        for (size_t c = 0; c < f->n; c++)
            b->fixed_t.slot[name_table_slot(&b->fixed_t, f->names, f->names[c])] = (int32_t)c;
    }
    *id = -1;
    if (mode == MF_LABELS_IDS) {
        long v = strtol(raw, NULL, 10);
        if ((size_t)v < f->n) *id = (int32_t)v;
        else
            return mf_fail(b, XD_EFORMAT, line, col,
                           "class id %ld, but the classes file %s has %zu classes", v, f->path,
                           f->n);
    } else if ((*id = b->fixed_t.slot[name_table_slot(&b->fixed_t, f->names, raw)]) < 0) {
        return mf_fail(b, XD_EFORMAT, line, col, "'%s' is not a class of %s", xd_excerpt(raw, q),
                       f->path);
    }
    return XD_OK;
}

/* Labels against a classes file: names (TSV always; JSONL strings) must be among its names, JSONL
 * integer ids must be below its count. The classes are the file's, in its order. */
static xd_status labels_from_fixed(mf_build *b, mf_label_mode mode, const char *col)
{
    io_manifest *m = b->m;
    const io_manifest_classes *f = b->fixed;
    xd_status s = XD_OK;
    for (size_t i = 0; i < m->n && s == XD_OK; i++)
        s = fixed_label(b, mode, b->label_raw[i], b->lines[i], col, &m->labels[i]);
    if (s) return s;
    m->n_classes = f->n;
    m->class_names = xd_xmalloc(f->n * sizeof *m->class_names + 1);
    for (size_t c = 0; c < f->n; c++) m->class_names[c] = xd_xstrdup(f->names[c]);
    m->labels_are_names = mode != MF_LABELS_IDS;
    return XD_OK;
}

static xd_status build_labels(mf_build *b, mf_label_mode mode, const char *col)
{
    /* with a classes file, TSV labels are names whatever they look like */
    if (b->fixed) return labels_from_fixed(b, mode == MF_LABELS_AUTO ? MF_LABELS_NAMES : mode, col);
    if (mode == MF_LABELS_AUTO) {
        mode = MF_LABELS_IDS;
        for (size_t i = 0; i < b->m->n; i++) {
            long id;
            if (label_kind(b->label_raw[i], &id) == LBL_WORD) mode = MF_LABELS_NAMES;
        }
    }
    return mode == MF_LABELS_NAMES ? labels_from_names(b) : labels_from_ids(b, col);
}

// ----------------------------------------------------------------------------------------------
// TSV

/* The i-th NUL-separated field of a header line that was split in place. */
static const char *header_field(const char *h, size_t i)
{
    while (i--) h += strlen(h) + 1;
    return h;
}

static xd_status tsv_rows(mf_build *b, char *buf, size_t n)
{
    size_t off = 0, lineno = 0, len;
    char *line;
    if (n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) off = 3; /* byte-order mark */

    /* header */
    const char *header = NULL;
    size_t n_fields = 0, hline = 0;
    size_t col_at[MF_COL_COUNT];
    while (!header && next_line(buf, n, &off, &line, &len)) {
        lineno++;
        if (len == 0) continue;
        if (len > b->lim.max_line)
            return mf_fail(b, XD_EFORMAT, lineno, NULL,
                           "line of %zu bytes, more than the %zu allowed", len, b->lim.max_line);
        xd_status s = check_utf8(b, lineno, NULL, line, len);
        if (s != XD_OK) return s;
        for (int c = 0; c < MF_COL_COUNT; c++) col_at[c] = SIZE_MAX;
        char *f = line;
        for (;;) {
            char *tab = strchr(f, '\t');
            if (tab) *tab = '\0';
            for (int c = 0; c < MF_COL_COUNT; c++) {
                if (strcmp(f, tsv_col_names[c]) != 0) continue;
                if (col_at[c] != SIZE_MAX)
                    return mf_fail(b, XD_EFORMAT, lineno, tsv_col_names[c],
                                   "named twice in the header");
                col_at[c] = n_fields;
            }
            n_fields++;
            if (!tab) break;
            f = tab + 1;
        }
        header = line;
        hline = lineno;
    }
    if (!header) return xd_fail(b->e, XD_EFORMAT, "%s: empty manifest, no header line", b->path);
    for (int c = 0; c < MF_COL_COUNT; c++)
        if (col_at[c] == SIZE_MAX)
            return mf_fail(b, XD_EFORMAT, hline, NULL,
                           "the header has no '%s' column (it needs image_path, text and label)",
                           tsv_col_names[c]);

    /* examples */
    while (next_line(buf, n, &off, &line, &len)) {
        lineno++;
        if (len == 0) continue;
        if (len > b->lim.max_line)
            return mf_fail(b, XD_EFORMAT, lineno, NULL,
                           "line of %zu bytes, more than the %zu allowed", len, b->lim.max_line);
        size_t fields = 1;
        for (const char *p = line; (p = memchr(p, '\t', len - (size_t)(p - line))) != NULL; p++)
            fields++;
        if (fields != n_fields)
            return mf_fail(b, XD_EFORMAT, lineno, NULL, "%zu field%s, the header has %zu", fields,
                           fields == 1 ? "" : "s", n_fields);
        const char *val[MF_COL_COUNT] = {0};
        char *f = line, *end = line + len;
        for (size_t j = 0; j < n_fields; j++) {
            /* memchr, not strchr: a NUL byte inside a field must reach the UTF-8 check */
            char *tab = memchr(f, '\t', (size_t)(end - f));
            size_t flen = tab ? (size_t)(tab - f) : (size_t)(end - f);
            f[flen] = '\0';
            xd_status s = check_utf8(b, lineno, header_field(header, j), f, flen);
            if (s != XD_OK) return s;
            for (int c = 0; c < MF_COL_COUNT; c++)
                if (col_at[c] == j) val[c] = f;
            f = tab ? tab + 1 : f + flen;
        }
        xd_status s = build_row(b, lineno, tsv_col_names, val[MF_COL_IMAGE], val[MF_COL_TEXT],
                                val[MF_COL_LABEL]);
        if (s != XD_OK) return s;
    }
    return build_labels(b, MF_LABELS_AUTO, tsv_col_names[MF_COL_LABEL]);
}

// ----------------------------------------------------------------------------------------------
// JSONL

static xd_status jsonl_string(const mf_build *b, size_t line, json_t *obj, int c,
                              const char **out)
{
    json_t *v = json_object_get(obj, jsonl_keys[c]);
    if (!v) return mf_fail(b, XD_EFORMAT, line, jsonl_keys[c], "missing key");
    if (!json_is_string(v)) return mf_fail(b, XD_EFORMAT, line, jsonl_keys[c], "must be a string");
    *out = json_string_value(v);
    return XD_OK;
}

static xd_status jsonl_row(mf_build *b, size_t line, json_t *obj, mf_label_mode *mode,
                           size_t *mode_line)
{
    if (!json_is_object(obj))
        return mf_fail(b, XD_EFORMAT, line, NULL, "a line must hold one JSON object");
    const char *image = NULL, *text = NULL;
    /* a rationale record's input and rationale take the places of the text and the image */
    const int ki = b->rationales ? MF_KEY_RATIONALE : MF_COL_IMAGE,
              kt = b->rationales ? MF_KEY_INPUT : MF_COL_TEXT;
    xd_status s = jsonl_string(b, line, obj, ki, &image);
    if (s == XD_OK) s = jsonl_string(b, line, obj, kt, &text);
    if (s != XD_OK) return s;
    if (b->rationales && txt_is_blank(image))
        return mf_fail(b, XD_EFORMAT, line, jsonl_keys[ki], "empty rationale");
    if (b->rationales && txt_is_blank(text))
        return mf_fail(b, XD_EFORMAT, line, jsonl_keys[kt], "empty input");
    const char *key = jsonl_keys[MF_COL_LABEL];
    json_t *lv = json_object_get(obj, key);
    if (!lv) return mf_fail(b, XD_EFORMAT, line, key, "missing key");
    char num[24];
    const char *label;
    mf_label_mode kind;
    if (json_is_integer(lv)) {
        json_int_t v = json_integer_value(lv);
        if (v < 0 || v >= IO_MANIFEST_MAX_CLASSES)
            return mf_fail(b, XD_EFORMAT, line, key, "class id %lld is not in 0..%d", (long long)v,
                           IO_MANIFEST_MAX_CLASSES - 1);
        snprintf(num, sizeof num, "%lld", (long long)v);
        label = num;
        kind = MF_LABELS_IDS;
    } else if (json_is_string(lv)) {
        label = json_string_value(lv);
        kind = MF_LABELS_NAMES;
    } else {
        return mf_fail(b, XD_EFORMAT, line, key,
                       "must be an integer class id or a string class name");
    }
    if (*mode == MF_LABELS_AUTO) {
        *mode = kind;
        *mode_line = line;
    } else if (*mode != kind) {
        return mf_fail(b, XD_EFORMAT, line, key,
                       "a %s, but line %zu gave %s; one file uses one kind of label",
                       kind == MF_LABELS_IDS ? "class id" : "class name", *mode_line,
                       *mode == MF_LABELS_IDS ? "a class id" : "a class name");
    }
    /* against a classes file now, so that skip_bad can leave the record out */
    int32_t id;
    s = b->fixed ? fixed_label(b, kind, label, line, key, &id) : XD_OK;
    if (s != XD_OK) return s;
    return build_row(b, line, jsonl_keys, image, text, label);
}

static xd_status jsonl_rows(mf_build *b, char *buf, size_t n)
{
    size_t off = 0, lineno = 0, len, mode_line = 0;
    char *line;
    mf_label_mode mode = MF_LABELS_AUTO;
    if (n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) off = 3;
    while (next_line(buf, n, &off, &line, &len)) {
        lineno++;
        if (len == 0) continue;
        if (len > b->lim.max_line)
            return mf_fail(b, XD_EFORMAT, lineno, NULL,
                           "line of %zu bytes, more than the %zu allowed", len, b->lim.max_line);
        xd_status s = check_utf8(b, lineno, NULL, line, len);
        if (s == XD_OK) {
            json_error_t je;
            json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
            if (!obj)
                s = mf_fail(b, XD_EFORMAT, lineno, NULL, "invalid JSON at character %d: %s",
                            je.column, je.text);
            else
                s = jsonl_row(b, lineno, obj, &mode, &mode_line);
            json_decref(obj);
        }
        if (s == XD_EFORMAT && b->skip_bad && b->m->n < b->lim.max_rows) {
            if (!b->m->skipped++) b->m->first_skipped = xd_xstrdup(b->e->msg);
            xd_err_clear(b->e);
            continue;
        }
        if (s != XD_OK) return s;
    }
    if (mode == MF_LABELS_AUTO) mode = MF_LABELS_IDS; /* no rows */
    return build_labels(b, mode, jsonl_keys[MF_COL_LABEL]);
}

// ----------------------------------------------------------------------------------------------
// classes file

void io_manifest_classes_free(io_manifest_classes *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) free(c->names[i]);
    free(c->names);
    free(c->path);
    memset(c, 0, sizeof *c);
}

xd_status io_manifest_classes_read(const char *path, io_manifest_classes *c, xd_err *e)
{
    memset(c, 0, sizeof *c);
    void *data;
    size_t n;
    xd_status s = io_read_all(path, (size_t)IO_MANIFEST_MAX_CLASSES * 4096, &data, &n, e);
    if (s != XD_OK) return s;
    char *buf = data;
    size_t off = n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, lineno = 0, len;
    char *line, q[XD_EXCERPT_BUF];
    const size_t most = count_lines(buf, n);
    size_t *lines = xd_xmalloc((most + 1) * sizeof *lines);
    c->path = xd_xstrdup(path);
    c->names = xd_xmalloc((most + 1) * sizeof *c->names);
    name_table t = name_table_new(most);
    while (s == XD_OK && next_line(buf, n, &off, &line, &len)) {
        lineno++;
        size_t bad = utf8_bad_offset(line, len);
        char *name = NULL; /* the line in a label's spelling, to match the labels' */
        if (bad < len)
            s = xd_fail(e, XD_EFORMAT, "%s:%zu: invalid UTF-8 at byte %zu (0x%02x)", path, lineno,
                        bad, (unsigned char)line[bad]);
        else if ((s = label_spelling(line, len, &name, e)) != XD_OK)
            xd_err_prefix(e, "%s:%zu", path, lineno);
        const int blank = s == XD_OK && !*name; /* nothing but white space */
        size_t h = s != XD_OK || blank ? 0 : name_table_slot(&t, c->names, name);
        if (blank)
            s = xd_fail(e, XD_EFORMAT, "%s:%zu: empty class name (one name per line, no blank "
                                       "lines)", path, lineno);
        else if (s == XD_OK && t.slot[h] >= 0)
            s = xd_fail(e, XD_EFORMAT, "%s:%zu: class '%s' is already on line %zu", path, lineno,
                        xd_excerpt(line, q), lines[t.slot[h]]);
        else if (s == XD_OK && c->n >= IO_MANIFEST_MAX_CLASSES)
            s = xd_fail(e, XD_EFORMAT, "%s:%zu: more than %d class names", path, lineno,
                        IO_MANIFEST_MAX_CLASSES);
        if (s != XD_OK) {
            free(name);
            break;
        }
        t.slot[h] = (int32_t)c->n;
        lines[c->n] = lineno;
        c->names[c->n++] = name;
    }
    if (s == XD_OK && c->n == 0) s = xd_fail(e, XD_EFORMAT, "%s: no class names", path);
    free(t.slot);
    free(lines);
    free(data);
    if (s != XD_OK) io_manifest_classes_free(c);
    return s;
}

// ----------------------------------------------------------------------------------------------
// entry points

typedef xd_status (*mf_rows_fn)(mf_build *b, char *buf, size_t n);

static xd_status read_with(const char *path, const io_manifest_limits *lim,
                           const io_manifest_classes *fixed, io_manifest *m, mf_rows_fn rows,
                           int rationales, int skip_bad, xd_err *e)
{
    memset(m, 0, sizeof *m);
    mf_build b = {.lim = lim ? *lim : io_manifest_default_limits(), .fixed = fixed,
                  .rationales = rationales, .skip_bad = skip_bad};
    void *data;
    size_t n;
    xd_status s = io_read_all(path, b.lim.max_bytes, &data, &n, e);
    if (s != XD_OK) return s;
    s = build_start(&b, path, m, count_lines(data, n), e);
    if (s == XD_OK) s = rows(&b, data, n);
    if (s == XD_OK && m->n == 0)
        s = xd_fail(e, XD_EFORMAT, "%s: no examples (nothing but %s)", path,
                    rows == tsv_rows ? "the header"
                    : m->skipped     ? "bad records"
                                     : "blank lines");
    build_end(&b);
    free(data);
    if (s != XD_OK) io_manifest_free(m);
    return s;
}

xd_status io_manifest_read_tsv(const char *path, const io_manifest_limits *lim, io_manifest *m,
                               xd_err *e)
{
    return read_with(path, lim, NULL, m, tsv_rows, 0, 0, e);
}

xd_status io_manifest_read_jsonl(const char *path, const io_manifest_limits *lim, io_manifest *m,
                                 xd_err *e)
{
    return read_with(path, lim, NULL, m, jsonl_rows, 0, 0, e);
}

static const struct {
    const char *suffix;
    mf_rows_fn rows;
} manifest_kinds[] = {{".tsv", tsv_rows}, {".jsonl", jsonl_rows}};

xd_status io_manifest_read(const char *path, const io_manifest_limits *lim, io_manifest *m,
                           xd_err *e)
{
    return io_manifest_read_classes(path, lim, NULL, m, e);
}

xd_status io_manifest_read_classes(const char *path, const io_manifest_limits *lim,
                                   const io_manifest_classes *classes, io_manifest *m, xd_err *e)
{
    memset(m, 0, sizeof *m);
    for (size_t k = 0; k < sizeof manifest_kinds / sizeof manifest_kinds[0]; k++)
        if (io_path_has_suffix(path, manifest_kinds[k].suffix))
            return read_with(path, lim, classes, m, manifest_kinds[k].rows, 0, 0, e);
    return xd_fail(e, XD_EARG, "%s: unknown manifest kind, the name must end in .tsv or .jsonl",
                   path);
}

xd_status io_manifest_read_rationales(const char *path, const io_manifest_limits *lim,
                                      const io_manifest_classes *classes, int skip_bad,
                                      io_manifest *m, xd_err *e)
{
    return read_with(path, lim, classes, m, jsonl_rows, 1, skip_bad, e);
}
