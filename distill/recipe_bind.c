/* The helpers of recipe binding (see recipe_bind.h): messages with file:line and key path, typed
 * reads of a mapping's keys, name tables, and checks of files and node names. */
#include "distill/recipe_bind.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "io/file.h"
#include "io/yaml.h"
#include "nn/model.h"

int rb_name_index(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0) return i;
    return -1;
}

/* "a, b or c" into buf. */
const char *rb_name_list(const char *const *names, int n, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && at < size; i++) {
        const char *sep = i == 0 ? "" : i == n - 1 ? " or " : ", ";
        int w = snprintf(buf + at, size - at, "%s%s", sep, names[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
    return buf;
}

/* Letters, digits and the characters in extra; 1 to RECIPE_MAX_NAME - 1 bytes. */
int rb_word_ok(const char *s, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n >= RECIPE_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i])) return 0;
    return 1;
}

/* "image", "text.LANG" or "text.*". */
int rb_view_ok(const char *s)
{
    const char *dot = strchr(s, '.');
    size_t len = dot ? (size_t)(dot - s) : strlen(s);
    char kind[16];
    if (len >= sizeof kind) return 0;
    memcpy(kind, s, len);
    kind[len] = '\0';
    switch ((recipe_view_kind)rb_name_index(recipe_view_kind_names, RECIPE_VIEW_COUNT, kind)) {
    case RECIPE_VIEW_IMAGE: return dot == NULL;
    case RECIPE_VIEW_TEXT: return dot && (strcmp(dot + 1, "*") == 0 || rb_word_ok(dot + 1, "-_"));
    default: return 0;
    }
}


/* "FILE:LINE: PATH: reason" */
xd_status rb_bad(binder *b, const io_yaml_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
xd_status rb_bad(binder *b, const io_yaml_node *n, const char *fmt, ...)
{
    char path[256], reason[XD_ERR_LEN];
    io_yaml_path(n, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    xd_vformat(reason, fmt, ap);
    va_end(ap);
    if (!path[0]) return io_yaml_fail(b->d, n, b->e, XD_EARG, "%s", reason);
    return io_yaml_fail(b->d, n, b->e, XD_EARG, "%s: %s", path, reason);
}

/* Puts "FILE:LINE: PATH: " before a message another module wrote into b->e. */
xd_status rb_wrap(binder *b, const io_yaml_node *n, xd_status s)
{
    char where[320], path[256];
    io_yaml_where(b->d, n, where, sizeof where);
    io_yaml_path(n, path, sizeof path);
    if (path[0])
        xd_err_prefix(b->e, "%s: %s", where, path);
    else
        xd_err_prefix(b->e, "%s", where);
    return s;
}

/* The value at key of map when it is there and not null (marked used), else NULL. */
io_yaml_node *rb_present(binder *b, io_yaml_node *map, const char *key)
{
    io_yaml_node *n = map ? io_yaml_find(b->d, map, key) : NULL;
    if (n && io_yaml_is_null(n)) {
        io_yaml_mark_used(n);
        return NULL;
    }
    return n;
}

xd_status rb_need_kind(binder *b, io_yaml_node *n, io_yaml_kind kind, const char *what)
{
    if (n->kind == kind) return XD_OK;
    io_yaml_mark_used(n);
    return rb_bad(b, n, "expected %s, got a %s", what, io_yaml_kind_names[n->kind]);
}

xd_status rb_get_float(binder *b, io_yaml_node *map, const char *key, frange range,
                           float *inout)
{
    io_yaml_node *n = rb_present(b, map, key);
    if (!n) return XD_OK;
    float v;
    xd_status s = io_yaml_as_float(b->d, n, &v, b->e);
    if (s != XD_OK) return s;
    switch (range) {
    case R_GT0:
        if (!(v > 0)) return rb_bad(b, n, "must be > 0 (got %s)", n->str);
        break;
    case R_GE0:
        if (!(v >= 0)) return rb_bad(b, n, "must be >= 0 (got %s)", n->str);
        break;
    case R_UNIT:
        if (!(v >= 0 && v <= 1)) return rb_bad(b, n, "must be in [0, 1] (got %s)", n->str);
        break;
    }
    *inout = v;
    return XD_OK;
}

/* A copy of the string at key (or of def when absent); *node gets the value's node or NULL. */
xd_status rb_get_string(binder *b, io_yaml_node *map, const char *key, const char *def,
                            char **out, io_yaml_node **node)
{
    io_yaml_node *n = rb_present(b, map, key);
    if (node) *node = n;
    const char *s = def;
    if (n) {
        xd_status st = io_yaml_as_str(b->d, n, &s, b->e);
        if (st != XD_OK) return st;
    }
    free(*out);
    *out = s ? xd_xstrdup(s) : NULL;
    return XD_OK;
}

xd_status rb_get_enum(binder *b, io_yaml_node *map, const char *key, const char *const *names,
                          int n_names, int *inout)
{
    io_yaml_node *n = rb_present(b, map, key);
    if (!n) return XD_OK;
    const char *s;
    xd_status st = io_yaml_as_str(b->d, n, &s, b->e);
    if (st != XD_OK) return st;
    int i = rb_name_index(names, n_names, s);
    if (i < 0) {
        char list[256];
        return rb_bad(b, n, "unknown value '%s' (expected %s)", s,
                   rb_name_list(names, n_names, list, sizeof list));
    }
    *inout = i;
    return XD_OK;
}

xd_status rb_check_file(binder *b, const io_yaml_node *n, const char *path)
{
    if (!path[0]) return rb_bad(b, n, "the path is empty");
    if (b->flags & RECIPE_NO_FILE_CHECKS) return XD_OK;
    struct stat st;
    char q[XD_EXCERPT_BUF];
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return rb_bad(b, n, "%s: no such file", xd_excerpt(path, q));
        return rb_bad(b, n, "%s: %s", xd_excerpt(path, q), strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return rb_bad(b, n, "%s: is a folder, not a file", xd_excerpt(path, q));
    return XD_OK;
}

/* name must be a node of trainable model k ("the student model" in the one-student form). */
xd_status rb_check_model_node(binder *b, const io_yaml_node *n, int k, const char *name)
{
    if (nn_model_find(&b->nets[k], name) >= 0) return XD_OK;
    if (!b->r->listed) return rb_bad(b, n, "the student model has no node '%s'", name);
    return rb_bad(b, n, "model '%s' has no node '%s'", b->r->models[k].name, name);
}


xd_status rb_find_teacher(binder *b, const io_yaml_node *n, const char *name, int *index)
{
    const recipe *r = b->r;
    for (int j = 0; j < r->n_teachers; j++)
        if (strcmp(r->teachers[j].name, name) == 0) {
            *index = j;
            return XD_OK;
        }
    if (!r->n_teachers)
        return rb_bad(b, n, "no teacher named '%s' (the recipe lists no teachers)", name);
    char list[256];
    const char *names[RECIPE_MAX_TEACHERS];
    for (int j = 0; j < r->n_teachers; j++) names[j] = r->teachers[j].name;
    return rb_bad(b, n, "no teacher named '%s' (teachers: %s)", name,
                  rb_name_list(names, r->n_teachers, list, sizeof list));
}
