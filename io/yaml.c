/* YAML document tree (see yaml.h): libyaml events -> nodes with positions, paths and messages,
 * and the edit distance behind "did you mean". Lookups by path, typed getters, overrides and the
 * report of keys that nothing read are in yaml_get.c.
 *
 * Memory: the file is at most IO_YAML_MAX_BYTES and the tree at most IO_YAML_MAX_NODES nodes
 * deep IO_YAML_MAX_DEPTH, so the tree's size is bounded by limits we chose and its nodes come
 * from xd_xmalloc; the file buffer itself is read with io_read_all's checked allocation. */
#include "io/yaml.h"
#include "io/yaml_internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/mem.h"
#include "io/file.h"
#include "modalities/text/utf8.h"

const char *const io_yaml_kind_names[IO_YAML_KIND_COUNT] = {
    [IO_YAML_SCALAR] = "scalar",
    [IO_YAML_MAPPING] = "mapping",
    [IO_YAML_SEQUENCE] = "sequence",
};
static_assert(sizeof io_yaml_kind_names / sizeof io_yaml_kind_names[0] == IO_YAML_KIND_COUNT,
              "io_yaml_kind_names must name every kind");

// ----------------------------------------------------------------------------------------------
// nodes

io_yaml_node *io_yaml_node_new(io_yaml_kind kind, int line, int col)
{
    io_yaml_node *n = xd_xcalloc(1, sizeof *n);
    n->kind = kind;
    n->line = line;
    n->col = col;
    n->index = -1;
    return n;
}

static void node_free(io_yaml_node *n)
{
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        if (n->kind == IO_YAML_MAPPING) {
            free(n->pairs[i].key);
            free(n->pairs[i].origin);
            node_free(n->pairs[i].value);
        } else {
            node_free(n->items[i]);
        }
    }
    for (int i = 0; i < n->n_asked; i++) free(n->asked[i]);
    free(n->asked);
    free(n->pairs);
    free(n->items);
    free(n->str);
    free(n->origin);
    free(n);
}

io_yaml_pair *io_yaml_map_add(io_yaml_node *map, char *key, int line, int col, io_yaml_node *value)
{
    if (map->n == map->cap) {
        map->cap = map->cap ? 2 * map->cap : 8;
        map->pairs = xd_xrealloc(map->pairs, (size_t)map->cap * sizeof *map->pairs);
    }
    io_yaml_pair *p = &map->pairs[map->n];
    *p = (io_yaml_pair){.key = key, .line = line, .col = col, .value = value};
    value->parent = map;
    value->index = map->n++;
    return p;
}

static void seq_add(io_yaml_node *seq, io_yaml_node *item)
{
    if (seq->n == seq->cap) {
        seq->cap = seq->cap ? 2 * seq->cap : 8;
        seq->items = xd_xrealloc(seq->items, (size_t)seq->cap * sizeof *seq->items);
    }
    item->parent = seq;
    item->index = seq->n;
    seq->items[seq->n++] = item;
}

void io_yaml_know(io_yaml_node *map, const char *key)
{
    if (!map || map->kind != IO_YAML_MAPPING) return;
    for (int i = 0; i < map->n_asked; i++)
        if (strcmp(map->asked[i], key) == 0) return;
    if (map->n_asked == map->cap_asked) {
        map->cap_asked = map->cap_asked ? 2 * map->cap_asked : 8;
        map->asked = xd_xrealloc(map->asked, (size_t)map->cap_asked * sizeof *map->asked);
    }
    map->asked[map->n_asked++] = xd_xstrdup(key);
}

int io_yaml_is_null(const io_yaml_node *n)
{
    if (!n || n->kind != IO_YAML_SCALAR || !n->plain) return 0;
    const char *s = n->str;
    return !s[0] || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

void io_yaml_mark_used(io_yaml_node *n)
{
    for (; n && !n->used; n = n->parent) n->used = 1;
}

static void mark_down(io_yaml_node *n)
{
    n->used = 1;
    for (int i = 0; i < n->n; i++)
        mark_down(n->kind == IO_YAML_MAPPING ? n->pairs[i].value : n->items[i]);
}

void io_yaml_mark_tree(io_yaml_node *n)
{
    if (!n) return;
    mark_down(n);
    io_yaml_mark_used(n);
}

// ----------------------------------------------------------------------------------------------
// positions and messages

/* Appends to a bounded buffer, counting what would have been written. */
static void cat(char *buf, size_t size, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cat(char *buf, size_t size, size_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t pos = *at < size ? *at : size;
    int w = vsnprintf(pos < size ? buf + pos : NULL, size - pos, fmt, ap);
    va_end(ap);
    if (w > 0) *at += (size_t)w;
}

static void path_rec(const io_yaml_node *n, char *buf, size_t size, size_t *at)
{
    const io_yaml_node *p = n->parent;
    if (!p) return;
    path_rec(p, buf, size, at);
    const char *dot = p->parent ? "." : "";
    if (p->kind == IO_YAML_MAPPING)
        cat(buf, size, at, "%s%s", dot, p->pairs[n->index].key);
    else
        cat(buf, size, at, "%s%d", dot, n->index);
}

int io_yaml_path(const io_yaml_node *n, char *buf, size_t size)
{
    size_t at = 0;
    if (size) buf[0] = '\0';
    path_rec(n, buf, size, &at);
    return (int)at;
}

void io_yaml_child_path(const io_yaml_node *map, const char *key, char *buf, size_t size)
{
    size_t at = 0;
    if (size) buf[0] = '\0';
    path_rec(map, buf, size, &at);
    cat(buf, size, &at, "%s%s", map->parent ? "." : "", key);
}

int io_yaml_key_line(const io_yaml_node *n)
{
    const io_yaml_node *p = n->parent;
    if (p && p->kind == IO_YAML_MAPPING && p->pairs[n->index].line > 0)
        return p->pairs[n->index].line;
    return n->line;
}

int io_yaml_where_at(const io_yaml_doc *d, int line, const char *origin, char *buf, size_t size)
{
    if (origin) return snprintf(buf, size, "--set %s", origin);
    return snprintf(buf, size, "%s:%d", d->file ? d->file : "(yaml)", line);
}

int io_yaml_where(const io_yaml_doc *d, const io_yaml_node *n, char *buf, size_t size)
{
    int line = n->kind == IO_YAML_SCALAR ? n->line : io_yaml_key_line(n);
    return io_yaml_where_at(d, line, n->origin, buf, size);
}

xd_status io_yaml_fail(const io_yaml_doc *d, const io_yaml_node *n, xd_err *e, xd_status code,
                       const char *fmt, ...)
{
    if (!e) return code;
    char where[PATH_MAX_LEN + 64], reason[XD_ERR_LEN];
    io_yaml_where(d, n, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    xd_vformat(reason, fmt, ap);
    va_end(ap);
    return xd_fail(e, code, "%s: %s", where, reason);
}

// ----------------------------------------------------------------------------------------------
// edit distance

int io_yaml_edit_distance(const char *a, const char *b, int cap)
{
    enum { MAXLEN = 64 };
    size_t na = strlen(a), nb = strlen(b);
    if (na > MAXLEN || nb > MAXLEN) return strcmp(a, b) == 0 ? 0 : cap + 1;
    if ((na > nb ? na - nb : nb - na) > (size_t)cap) return cap + 1;
    /* three rows of the OSA table: d[i][j] = distance of a[0..i) and b[0..j) */
    int rows[3][MAXLEN + 1];
    int *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= nb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = (int)i;
        int best = cur[0];
        for (size_t j = 1; j <= nb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int v = sub < del ? sub : del;
            v = v < ins ? v : ins;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            cur[j] = v;
            if (v < best) best = v;
        }
        if (best > cap) return cap + 1;
        int *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[nb] <= cap ? prev[nb] : cap + 1;
}

// ----------------------------------------------------------------------------------------------
// parsing

/* 1-based line and column (in characters) of a byte offset. */
static void offset_position(const unsigned char *s, size_t n, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < n; i++) {
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n'))) {
            l++;
            c = 1;
        } else if ((s[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

typedef struct {
    io_yaml_doc *d;
    io_yaml_node *stack[IO_YAML_MAX_DEPTH];
    int depth;
    char *key; /* a mapping's key waiting for its value */
    int key_line, key_col;
    int documents;
} builder;

static xd_status fail_mark(const io_yaml_doc *d, yaml_mark_t m, xd_err *e, xd_status code,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static xd_status fail_mark(const io_yaml_doc *d, yaml_mark_t m, xd_err *e, xd_status code,
                           const char *fmt, ...)
{
    char reason[XD_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    xd_vformat(reason, fmt, ap);
    va_end(ap);
    return xd_fail(e, code, "%s:%zu:%zu: %s", d->file, m.line + 1, m.column + 1, reason);
}

/* Refuses anchors and explicit tags: a configuration has no use for them, and supporting them
 * halfway would let a recipe mean something other than what it shows. */
static xd_status check_plain_node(const io_yaml_doc *d, const yaml_event_t *ev,
                                  const unsigned char *anchor, const unsigned char *tag,
                                  xd_err *e)
{
    if (anchor)
        return fail_mark(d, ev->start_mark, e, XD_EFORMAT,
                         "anchors (&%.40s) are not supported; write the value out", anchor);
    if (tag)
        return fail_mark(d, ev->start_mark, e, XD_EFORMAT, "tags (%.40s) are not supported",
                         tag);
    return XD_OK;
}

/* Hangs a new node under the open collection (or makes it the root). */
static xd_status attach(builder *b, io_yaml_node *n, const yaml_event_t *ev, xd_err *e)
{
    io_yaml_doc *d = b->d;
    if (++d->n_nodes > IO_YAML_MAX_NODES) {
        node_free(n);
        return fail_mark(d, ev->start_mark, e, XD_EFORMAT, "more than %d nodes",
                         IO_YAML_MAX_NODES);
    }
    if (b->depth == 0) {
        d->root = n;
        return XD_OK;
    }
    io_yaml_node *top = b->stack[b->depth - 1];
    if (top->kind == IO_YAML_SEQUENCE) {
        seq_add(top, n);
    } else {
        XD_ASSERT(b->key);
        io_yaml_map_add(top, b->key, b->key_line, b->key_col, n);
        b->key = NULL;
    }
    return XD_OK;
}

static int cmp_key_index(const void *pa, const void *pb, void *ctx)
{
    const io_yaml_node *map = ctx;
    int a = *(const int *)pa, b = *(const int *)pb;
    int c = strcmp(map->pairs[a].key, map->pairs[b].key);
    return c ? c : (a > b) - (a < b);
}

/* Duplicate keys in a finished mapping: sorting (key, position) puts repeats side by side; the
 * repeat that comes first in the file is reported with the line of its first occurrence. */
static xd_status check_duplicates(const io_yaml_doc *d, const io_yaml_node *map, xd_err *e)
{
    if (map->n < 2) return XD_OK;
    int *order = xd_xmalloc((size_t)map->n * sizeof *order);
    for (int i = 0; i < map->n; i++) order[i] = i;
    qsort_r(order, (size_t)map->n, sizeof *order, cmp_key_index, (void *)map);
    int dup = -1, first = -1;
    for (int i = 1; i < map->n; i++) {
        if (strcmp(map->pairs[order[i]].key, map->pairs[order[i - 1]].key) != 0) continue;
        int g = i - 1;
        while (g > 0 && strcmp(map->pairs[order[g - 1]].key, map->pairs[order[i]].key) == 0) g--;
        if (dup < 0 || order[i] < dup) {
            dup = order[i];
            first = order[g];
        }
    }
    free(order);
    if (dup < 0) return XD_OK;
    const io_yaml_pair *p = &map->pairs[dup];
    char path[PATH_MAX_LEN];
    io_yaml_child_path(map, p->key, path, sizeof path);
    return xd_fail(e, XD_EFORMAT, "%s:%d:%d: duplicate key '%s' (first at line %d)", d->file,
                   p->line, p->col, path, map->pairs[first].line);
}

static xd_status on_event(builder *b, const yaml_event_t *ev, xd_err *e)
{
    io_yaml_doc *d = b->d;
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    io_yaml_node *top = b->depth ? b->stack[b->depth - 1] : NULL;
    int want_key = top && top->kind == IO_YAML_MAPPING && !b->key;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1)
            return fail_mark(d, ev->start_mark, e, XD_EFORMAT,
                             "a second YAML document; one file holds one document");
        return XD_OK;
    case YAML_ALIAS_EVENT:
        return fail_mark(d, ev->start_mark, e, XD_EFORMAT,
                         "aliases (*%.40s) are not supported; write the value out",
                         ev->data.alias.anchor);
    case YAML_SCALAR_EVENT: {
        xd_status s = check_plain_node(d, ev, ev->data.scalar.anchor, ev->data.scalar.tag, e);
        if (s != XD_OK) return s;
        const char *v = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        if (memchr(v, '\0', len))
            return fail_mark(d, ev->start_mark, e, XD_EFORMAT,
                             "a NUL character inside a %s", want_key ? "key" : "value");
        if (want_key) {
            b->key = xd_xstrdup(v);
            b->key_line = line;
            b->key_col = col;
            return XD_OK;
        }
        io_yaml_node *n = io_yaml_node_new(IO_YAML_SCALAR, line, col);
        n->str = xd_xstrdup(v);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        return attach(b, n, ev, e);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        xd_status s = is_map ? check_plain_node(d, ev, ev->data.mapping_start.anchor,
                                                ev->data.mapping_start.tag, e)
                             : check_plain_node(d, ev, ev->data.sequence_start.anchor,
                                                ev->data.sequence_start.tag, e);
        if (s != XD_OK) return s;
        if (want_key)
            return fail_mark(d, ev->start_mark, e, XD_EFORMAT,
                             "a %s as a mapping key; keys must be scalars",
                             is_map ? "mapping" : "sequence");
        if (b->depth == IO_YAML_MAX_DEPTH)
            return fail_mark(d, ev->start_mark, e, XD_EFORMAT, "nested deeper than %d levels",
                             IO_YAML_MAX_DEPTH);
        io_yaml_node *n = io_yaml_node_new(is_map ? IO_YAML_MAPPING : IO_YAML_SEQUENCE, line, col);
        s = attach(b, n, ev, e);
        if (s != XD_OK) return s;
        b->stack[b->depth++] = n;
        return XD_OK;
    }
    case YAML_MAPPING_END_EVENT:
        XD_ASSERT(b->depth > 0);
        b->depth--;
        return check_duplicates(d, top, e);
    case YAML_SEQUENCE_END_EVENT:
        XD_ASSERT(b->depth > 0);
        b->depth--;
        return XD_OK;
    default: return XD_OK;
    }
}

static xd_status parser_error(const io_yaml_doc *d, const yaml_parser_t *p,
                              const unsigned char *text, size_t n, xd_err *e)
{
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_MEMORY_ERROR)
        return xd_fail(e, XD_ENOMEM, "%s: out of memory while parsing", d->file);
    if (p->error == YAML_READER_ERROR) {
        int line, col;
        offset_position(text, n, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)
            return xd_fail(e, XD_EFORMAT, "%s:%d:%d: %s (#%X)", d->file, line, col, problem,
                           (unsigned)p->problem_value);
        return xd_fail(e, XD_EFORMAT, "%s:%d:%d: %s", d->file, line, col, problem);
    }
    if (p->context)
        return xd_fail(e, XD_EFORMAT, "%s:%zu:%zu: %s (%s at line %zu)", d->file,
                       p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context,
                       p->context_mark.line + 1);
    return xd_fail(e, XD_EFORMAT, "%s:%zu:%zu: %s", d->file, p->problem_mark.line + 1,
                   p->problem_mark.column + 1, problem);
}

xd_status io_yaml_parse_text(io_yaml_doc *d, const char *name, const char *text, size_t n,
                             xd_err *e)
{
    memset(d, 0, sizeof *d);
    d->file = xd_xstrdup(name ? name : "(yaml)");
    const unsigned char *u = (const unsigned char *)text;
    /* a byte order mark is no part of the text (an editor shows none): lines and columns count
     * from after it */
    if (n >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF) {
        u += 3;
        n -= 3;
    }
    size_t bad = txt_validate(u, n, NULL);
    if (bad < n) {
        int line, col;
        offset_position(u, n, bad, &line, &col);
        return xd_fail(e, XD_EFORMAT, "%s:%d:%d: invalid UTF-8 (byte 0x%02X at offset %zu)",
                       d->file, line, col, u[bad], bad);
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return xd_fail(e, XD_ENOMEM, "%s: cannot start the YAML parser", d->file);
    yaml_parser_set_input_string(&p, u, n);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    builder b = {.d = d};
    xd_status s = XD_OK;
    for (int done = 0; !done && s == XD_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            s = parser_error(d, &p, u, n, e);
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        s = on_event(&b, &ev, e);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    free(b.key);
    return s;
}

xd_status io_yaml_parse(io_yaml_doc *d, const char *name, const char *text, size_t n, xd_err *e)
{
    xd_status s = io_yaml_parse_text(d, name, text, n, e);
    if (s != XD_OK) {
        io_yaml_free(d);
        return s;
    }
    if (!d->root) { /* nothing but comments and blanks */
        d->root = io_yaml_node_new(IO_YAML_MAPPING, 1, 1);
        d->n_nodes = 1;
    }
    return XD_OK;
}

xd_status io_yaml_load(io_yaml_doc *d, const char *path, xd_err *e)
{
    memset(d, 0, sizeof *d);
    void *data;
    size_t n;
    xd_status s = io_read_all(path, IO_YAML_MAX_BYTES, &data, &n, e);
    if (s != XD_OK) return s;
    s = io_yaml_parse(d, path, data, n, e);
    free(data);
    return s;
}

void io_yaml_free(io_yaml_doc *d)
{
    if (!d) return;
    node_free(d->root);
    free(d->file);
    memset(d, 0, sizeof *d);
}
