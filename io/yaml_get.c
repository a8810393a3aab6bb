/* Reading a YAML document tree (see yaml.h): lookups by dotted path, typed getters, overrides
 * (--set key.path=value) and the report of keys that nothing read. The tree itself, parsing,
 * positions and messages are in yaml.c. */
#include "io/yaml.h"
#include "io/yaml_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/mem.h"

// ----------------------------------------------------------------------------------------------
// lookup

static io_yaml_pair *map_find(const io_yaml_node *map, const char *key, size_t len)
{
    for (int i = 0; i < map->n; i++) {
        const char *k = map->pairs[i].key;
        if (strncmp(k, key, len) == 0 && k[len] == '\0') return &map->pairs[i];
    }
    return NULL;
}

static void know_n(io_yaml_node *map, const char *key, size_t len)
{
    char buf[PATH_MAX_LEN];
    if (len >= sizeof buf) return;
    memcpy(buf, key, len);
    buf[len] = '\0';
    io_yaml_know(map, buf);
}

/* Length of the path segment at s (up to '.' or the end). */
static size_t seg_len(const char *s)
{
    size_t n = 0;
    while (s[n] && s[n] != '.') n++;
    return n;
}

/* A sequence index: decimal digits only, below n; -1 otherwise. */
static int seg_index(const char *s, size_t len, int n)
{
    if (len == 0 || len > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < n ? (int)v : -1;
}

io_yaml_node *io_yaml_find(io_yaml_doc *d, io_yaml_node *base, const char *path)
{
    io_yaml_node *n = base ? base : d->root;
    if (!path || !path[0]) return n;
    for (const char *s = path; n;) {
        size_t len = seg_len(s);
        if (n->kind == IO_YAML_MAPPING) {
            know_n(n, s, len);
            io_yaml_pair *p = map_find(n, s, len);
            n = p ? p->value : NULL;
        } else if (n->kind == IO_YAML_SEQUENCE) {
            int i = seg_index(s, len, n->n);
            n = i >= 0 ? n->items[i] : NULL;
        } else {
            return NULL;
        }
        if (!s[len]) break;
        s += len + 1;
    }
    return n;
}

/* Close enough to suggest: up to a third of the candidate's length, at least 1, at most 3. */
static int suggest_cap(const char *candidate)
{
    int c = (int)(strlen(candidate) / 3);
    return c < 1 ? 1 : c > 3 ? 3 : c;
}

/* The mapping that holds the last segment of path below base, and that segment; NULL when a
 * step before it is missing. */
static io_yaml_node *find_holder(io_yaml_doc *d, io_yaml_node *base, const char *path,
                                 const char **last)
{
    const char *dot = strrchr(path, '.');
    *last = dot ? dot + 1 : path;
    if (!dot) return base ? base : d->root;
    char head[PATH_MAX_LEN];
    size_t len = (size_t)(dot - path);
    if (len >= sizeof head) return NULL;
    memcpy(head, path, len);
    head[len] = '\0';
    return io_yaml_find(d, base, head);
}

xd_status io_yaml_require(io_yaml_doc *d, io_yaml_node *base, const char *path,
                          io_yaml_node **out, xd_err *e)
{
    io_yaml_node *n = io_yaml_find(d, base, path);
    *out = n;
    if (n && !io_yaml_is_null(n)) {
        io_yaml_mark_used(n);
        return XD_OK;
    }
    char full[PATH_MAX_LEN];
    if (n) {
        io_yaml_mark_used(n);
        io_yaml_path(n, full, sizeof full);
        return io_yaml_fail(d, n, e, XD_EARG, "key '%s': a value is required", full);
    }
    const char *last;
    io_yaml_node *holder = find_holder(d, base, path, &last);
    if (!holder) holder = base ? base : d->root;
    char where[PATH_MAX_LEN];
    io_yaml_path(holder, where, sizeof where);
    char hint[PATH_MAX_LEN + 64] = "";
    if (holder->kind == IO_YAML_MAPPING) {
        /* a present key of similar spelling is most likely a typo for the missing one */
        for (int i = 0; i < holder->n; i++) {
            const io_yaml_pair *p = &holder->pairs[i];
            if (p->value->used) continue;
            if (io_yaml_edit_distance(p->key, last, suggest_cap(last)) <= suggest_cap(last)) {
                if (p->origin)
                    snprintf(hint, sizeof hint, " (is '%s' from --set %s a typo?)", p->key,
                             p->origin);
                else
                    snprintf(hint, sizeof hint, " (is '%s' at line %d a typo?)", p->key,
                             p->line);
                break;
            }
        }
    }
    if (!where[0])
        return io_yaml_fail(d, holder, e, XD_EARG, "missing required key '%s'%s", path, hint);
    return io_yaml_fail(d, holder, e, XD_EARG, "key '%s': missing required key '%s'%s", where,
                        last, hint);
}

// ----------------------------------------------------------------------------------------------
// typed values

/* "key 'PATH': expected WANT, got 'TEXT'" (or "got a mapping"). */
static xd_status type_error(const io_yaml_doc *d, const io_yaml_node *n, const char *want,
                            xd_err *e)
{
    char path[PATH_MAX_LEN], buf[XD_EXCERPT_BUF];
    io_yaml_path(n, path, sizeof path);
    if (n->kind != IO_YAML_SCALAR)
        return io_yaml_fail(d, n, e, XD_EARG, "key '%s': expected %s, got a %s", path, want,
                            io_yaml_kind_names[n->kind]);
    return io_yaml_fail(d, n, e, XD_EARG, "key '%s': expected %s, got '%s'", path, want,
                        xd_excerpt(n->str, buf));
}

xd_status io_yaml_as_long(const io_yaml_doc *d, io_yaml_node *n, long lo, long hi, long *out,
                          xd_err *e)
{
    io_yaml_mark_used(n);
    if (n->kind != IO_YAML_SCALAR) return type_error(d, n, "an integer", e);
    const char *s = n->str;
    const char *digits = (*s == '+' || *s == '-') ? s + 1 : s;
    /* strtol alone would take blanks, hex prefixes and a trailing ".0" silently */
    if (*digits < '0' || *digits > '9') return type_error(d, n, "an integer", e);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno == ERANGE) return type_error(d, n, "an integer", e);
    if (v < lo || v > hi) {
        char path[PATH_MAX_LEN];
        io_yaml_path(n, path, sizeof path);
        if (hi == LONG_MAX)
            return io_yaml_fail(d, n, e, XD_EARG, "key '%s': %ld is out of range (expected >= %ld)",
                                path, v, lo);
        return io_yaml_fail(d, n, e, XD_EARG,
                            "key '%s': %ld is out of range (expected %ld to %ld)", path, v, lo, hi);
    }
    *out = v;
    return XD_OK;
}

xd_status io_yaml_as_int(const io_yaml_doc *d, io_yaml_node *n, int lo, int hi, int *out,
                         xd_err *e)
{
    long v;
    xd_status s = io_yaml_as_long(d, n, lo, hi, &v, e);
    if (s == XD_OK) *out = (int)v;
    return s;
}

xd_status io_yaml_as_double(const io_yaml_doc *d, io_yaml_node *n, double *out, xd_err *e)
{
    io_yaml_mark_used(n);
    if (n->kind != IO_YAML_SCALAR) return type_error(d, n, "a number", e);
    const char *s = n->str;
    const char *body = (*s == '+' || *s == '-') ? s + 1 : s;
    /* digits or a leading '.', so that "inf", "nan" and blanks are not numbers here */
    if (!((*body >= '0' && *body <= '9') || (*body == '.' && body[1] >= '0' && body[1] <= '9')))
        return type_error(d, n, "a finite number", e);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || (errno == ERANGE && fabs(v) > 1.0))
        return type_error(d, n, "a finite number", e);
    *out = v;
    return XD_OK;
}

xd_status io_yaml_as_float(const io_yaml_doc *d, io_yaml_node *n, float *out, xd_err *e)
{
    double v = 0; /* gcc cannot see from this file that a failure is never XD_OK */
    xd_status s = io_yaml_as_double(d, n, &v, e);
    if (s != XD_OK) return s;
    if (!isfinite((float)v)) return type_error(d, n, "a number within float range", e);
    *out = (float)v;
    return XD_OK;
}

xd_status io_yaml_as_bool(const io_yaml_doc *d, io_yaml_node *n, int *out, xd_err *e)
{
    static const char *const words[] = {"false", "true", "no", "yes", "off", "on", "0", "1"};
    io_yaml_mark_used(n);
    if (n->kind == IO_YAML_SCALAR) {
        for (int i = 0; i < (int)(sizeof words / sizeof words[0]); i++) {
            if (strcasecmp(n->str, words[i]) == 0) {
                *out = i & 1;
                return XD_OK;
            }
        }
    }
    return type_error(d, n, "true or false", e);
}

xd_status io_yaml_as_str(const io_yaml_doc *d, io_yaml_node *n, const char **out, xd_err *e)
{
    io_yaml_mark_used(n);
    if (n->kind != IO_YAML_SCALAR) return type_error(d, n, "a string", e);
    *out = io_yaml_is_null(n) ? "" : n->str;
    return XD_OK;
}

/* The node for an optional getter: NULL when absent or null (marked used if null). */
static io_yaml_node *optional(io_yaml_doc *d, io_yaml_node *base, const char *path)
{
    io_yaml_node *n = io_yaml_find(d, base, path);
    if (n && io_yaml_is_null(n)) {
        io_yaml_mark_used(n);
        return NULL;
    }
    return n;
}

xd_status io_yaml_get_long(io_yaml_doc *d, io_yaml_node *base, const char *path, long lo, long hi,
                           long *inout, xd_err *e)
{
    io_yaml_node *n = optional(d, base, path);
    return n ? io_yaml_as_long(d, n, lo, hi, inout, e) : XD_OK;
}

xd_status io_yaml_get_int(io_yaml_doc *d, io_yaml_node *base, const char *path, int lo, int hi,
                          int *inout, xd_err *e)
{
    io_yaml_node *n = optional(d, base, path);
    return n ? io_yaml_as_int(d, n, lo, hi, inout, e) : XD_OK;
}

xd_status io_yaml_get_double(io_yaml_doc *d, io_yaml_node *base, const char *path,
                             double *inout, xd_err *e)
{
    io_yaml_node *n = optional(d, base, path);
    return n ? io_yaml_as_double(d, n, inout, e) : XD_OK;
}

xd_status io_yaml_get_float(io_yaml_doc *d, io_yaml_node *base, const char *path, float *inout,
                            xd_err *e)
{
    io_yaml_node *n = optional(d, base, path);
    return n ? io_yaml_as_float(d, n, inout, e) : XD_OK;
}

xd_status io_yaml_get_bool(io_yaml_doc *d, io_yaml_node *base, const char *path, int *inout,
                           xd_err *e)
{
    io_yaml_node *n = optional(d, base, path);
    return n ? io_yaml_as_bool(d, n, inout, e) : XD_OK;
}

xd_status io_yaml_get_str(io_yaml_doc *d, io_yaml_node *base, const char *path,
                          const char **inout, xd_err *e)
{
    io_yaml_node *n = optional(d, base, path);
    return n ? io_yaml_as_str(d, n, inout, e) : XD_OK;
}

// ----------------------------------------------------------------------------------------------
// overrides

/* Empties a node's contents so it can become another kind (an override turning null into a
 * mapping). */
static void node_clear(io_yaml_node *n)
{
    free(n->str);
    n->str = NULL;
    n->plain = 0;
}

xd_status io_yaml_set(io_yaml_doc *d, const char *path, const char *value, xd_err *e)
{
    if (!path || !path[0]) return xd_fail(e, XD_EARG, "--set: empty key path");
    if (strlen(path) >= PATH_MAX_LEN)
        return xd_fail(e, XD_EARG, "--set %.40s...: key path longer than %d characters", path,
                       PATH_MAX_LEN - 1);
    for (const char *s = path;; s += seg_len(s) + 1) {
        if (seg_len(s) == 0) return xd_fail(e, XD_EARG, "--set %s: empty key in the path", path);
        if (!s[seg_len(s)]) break;
    }
    /* the value as YAML, so quoting works as in the file */
    char name[PATH_MAX_LEN + 8];
    snprintf(name, sizeof name, "--set %s", path);
    io_yaml_doc v;
    const char *text = value ? value : "";
    xd_status st = io_yaml_parse_text(&v, name, text, strlen(text), e);
    if (st != XD_OK) {
        io_yaml_free(&v);
        return st;
    }
    if (v.root && v.root->kind != IO_YAML_SCALAR) {
        io_yaml_free(&v);
        char q[XD_EXCERPT_BUF];
        return xd_fail(e, XD_EARG, "--set %s: the value '%s' is a %s, not a scalar (quote it)",
                       path, xd_excerpt(text, q), "mapping or sequence");
    }
    char *str = v.root ? v.root->str : NULL;
    int plain = v.root ? v.root->plain : 1;
    if (v.root) v.root->str = NULL;
    io_yaml_free(&v);
    if (!str) str = xd_xstrdup("");

    if (!d->root) d->root = io_yaml_node_new(IO_YAML_MAPPING, 1, 1);
    io_yaml_node *n = d->root;
    for (const char *s = path;;) {
        size_t len = seg_len(s);
        int last = s[len] == '\0';
        size_t done = (size_t)(s - path); /* path[0..done) leads to n */
        if (io_yaml_is_null(n)) { /* `train:` with nothing under it can take keys */
            node_clear(n);
            n->kind = IO_YAML_MAPPING;
            free(n->origin);
            n->origin = xd_xstrdup(path);
        }
        if (n->kind == IO_YAML_MAPPING) {
            io_yaml_pair *p = map_find(n, s, len);
            if (!p) {
                io_yaml_node *child =
                    io_yaml_node_new(last ? IO_YAML_SCALAR : IO_YAML_MAPPING, 0, 0);
                child->origin = xd_xstrdup(path);
                if (last) child->str = xd_xstrdup("");
                char *key = xd_xmalloc(len + 1);
                memcpy(key, s, len);
                key[len] = '\0';
                p = io_yaml_map_add(n, key, 0, 0, child);
                p->origin = xd_xstrdup(path);
                d->n_nodes++;
            }
            n = p->value;
        } else if (n->kind == IO_YAML_SEQUENCE) {
            int i = seg_index(s, len, n->n);
            if (i < 0) {
                free(str);
                return xd_fail(e, XD_EARG,
                               "--set %s: '%.*s' holds a sequence of %d items; '%.*s' is not an "
                               "index into it (items count from 0)",
                               path, done ? (int)done - 1 : 0, path, n->n, (int)len, s);
            }
            n = n->items[i];
        } else {
            free(str);
            return xd_fail(e, XD_EARG, "--set %s: '%.*s' is a scalar, it has no key '%.*s'", path,
                           done ? (int)done - 1 : 0, path, (int)len, s);
        }
        if (last) break;
        s += len + 1;
    }
    if (n->kind != IO_YAML_SCALAR) {
        free(str);
        return xd_fail(e, XD_EARG, "--set %s: '%s' is a %s; only scalars can be set", path, path,
                       io_yaml_kind_names[n->kind]);
    }
    free(n->str);
    n->str = str;
    n->plain = plain;
    n->line = n->col = 0;
    free(n->origin);
    n->origin = xd_xstrdup(path);
    return XD_OK;
}

xd_status io_yaml_set_arg(io_yaml_doc *d, const char *arg, xd_err *e)
{
    const char *eq = arg ? strchr(arg, '=') : NULL;
    if (!eq || eq == arg)
        return xd_fail(e, XD_EARG, "--set '%s': expected key.path=value", arg ? arg : "");
    size_t len = (size_t)(eq - arg);
    if (len >= PATH_MAX_LEN)
        return xd_fail(e, XD_EARG, "--set: key path longer than %d characters", PATH_MAX_LEN - 1);
    char path[PATH_MAX_LEN];
    memcpy(path, arg, len);
    path[len] = '\0';
    return io_yaml_set(d, path, eq + 1, e);
}

// ----------------------------------------------------------------------------------------------
// unread keys

/* The nearest known key of map for an unread key, or NULL: keys readers asked for, and present
 * keys that were read. */
static const char *suggest(const io_yaml_node *map, const char *key)
{
    const char *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; i < map->n_asked; i++) {
        const char *c = map->asked[i];
        int cap = suggest_cap(c);
        int dist = io_yaml_edit_distance(key, c, cap);
        if (dist <= cap && dist < best_d && strcmp(c, key) != 0) {
            best = c;
            best_d = dist;
        }
    }
    for (int i = 0; i < map->n; i++) {
        const char *c = map->pairs[i].key;
        if (!map->pairs[i].value->used) continue;
        int cap = suggest_cap(c);
        int dist = io_yaml_edit_distance(key, c, cap);
        if (dist <= cap && dist < best_d && strcmp(c, key) != 0) {
            best = c;
            best_d = dist;
        }
    }
    return best;
}

/* "WHERE: unknown key 'PATH' (did you mean 'KEY'?)" for pair i of map. */
static xd_status unknown_key(const io_yaml_doc *d, const io_yaml_node *map, int i, xd_err *e)
{
    char path[PATH_MAX_LEN], where[PATH_MAX_LEN + 64];
    const io_yaml_pair *p = &map->pairs[i];
    io_yaml_child_path(map, p->key, path, sizeof path);
    io_yaml_where_at(d, p->line, p->origin, where, sizeof where);
    const char *s = suggest(map, p->key);
    if (s) return xd_fail(e, XD_EARG, "%s: unknown key '%s' (did you mean '%s'?)", where, path, s);
    return xd_fail(e, XD_EARG, "%s: unknown key '%s'", where, path);
}

xd_status io_yaml_check_keys(const io_yaml_doc *d, io_yaml_node *map, const char *const *known,
                             int n_known, xd_err *e)
{
    if (!map || map->kind != IO_YAML_MAPPING) return XD_OK;
    for (int k = 0; k < n_known; k++) io_yaml_know(map, known[k]);
    for (int i = 0; i < map->n; i++) {
        int found = 0;
        for (int k = 0; k < n_known && !found; k++)
            found = strcmp(map->pairs[i].key, known[k]) == 0;
        if (!found) return unknown_key(d, map, i, e);
    }
    return XD_OK;
}

static xd_status unused_rec(const io_yaml_doc *d, const io_yaml_node *n, xd_err *e)
{
    for (int i = 0; i < n->n; i++) {
        char path[PATH_MAX_LEN], where[PATH_MAX_LEN + 64];
        if (n->kind == IO_YAML_MAPPING) {
            const io_yaml_pair *p = &n->pairs[i];
            if (!p->value->used) return unknown_key(d, n, i, e);
            xd_status st = unused_rec(d, p->value, e);
            if (st != XD_OK) return st;
        } else if (n->kind == IO_YAML_SEQUENCE) {
            const io_yaml_node *it = n->items[i];
            if (!it->used) {
                io_yaml_path(it, path, sizeof path);
                io_yaml_where(d, it, where, sizeof where);
                return xd_fail(e, XD_EARG, "%s: unused item '%s'", where, path);
            }
            xd_status st = unused_rec(d, it, e);
            if (st != XD_OK) return st;
        }
    }
    return XD_OK;
}

xd_status io_yaml_check_unused(const io_yaml_doc *d, xd_err *e)
{
    return d->root ? unused_rec(d, d->root, e) : XD_OK;
}
