/* YAML documents as a small tree with positions, for recipes and other configuration files.
 *
 * io_yaml_load parses one YAML document with libyaml's event parser into mapping, sequence and
 * scalar nodes, each knowing its 1-based line and column; mapping keys stay in file order. What a
 * configuration file has no use for is refused with its position rather than half-supported:
 * anchors, aliases and explicit tags, keys that are not scalars, several documents in one file.
 * Duplicate keys are an error naming both lines. Bytes that are not UTF-8 and YAML syntax errors
 * give "FILE:LINE:COL: reason".
 *
 * Readers address nodes by dotted paths ("train.optimizer.lr"; a sequence item by its index from
 * 0, "losses.1.weight"), so a key that itself holds a '.' cannot be addressed. The typed getters
 * turn a scalar into a number, a boolean or a string and fail with the file, the line and the
 * key path: "recipe.yaml:12: key 'train.epochs': expected an integer, got 'ten'".
 *
 * Every node a getter reads is marked used, and every key a reader looks up (found or not) is
 * remembered by its mapping. io_yaml_check_unused then reports the first key in file order that
 * nothing read, with the closest known key of the same mapping as a suggestion:
 * "recipe.yaml:14: unknown key 'train.epoch' (did you mean 'epochs'?)".
 *
 * Overrides (the command line's --set key.path=value) replace a scalar or create the missing
 * mapping keys along the path; the nodes they make carry the override's path instead of a line,
 * so messages about them say "--set train.epochs" where a file position would stand.
 *
 * Scalars are kept as text and typed only when read, so a plain `1.0` is a number to the float
 * getter and a string to the string getter. A plain empty scalar, `~` and `null` are null: the
 * optional getters treat null like an absent key. */
#ifndef XD_IO_YAML_H
#define XD_IO_YAML_H

#include <stddef.h>

#include "core/status.h"

/* Largest file io_yaml_load reads, most nodes in one document, deepest nesting. */
#define IO_YAML_MAX_BYTES ((size_t)4 << 20)
#define IO_YAML_MAX_NODES 100000
#define IO_YAML_MAX_DEPTH 64

typedef enum { IO_YAML_SCALAR, IO_YAML_MAPPING, IO_YAML_SEQUENCE, IO_YAML_KIND_COUNT } io_yaml_kind;

extern const char *const io_yaml_kind_names[IO_YAML_KIND_COUNT]; /* "scalar", "mapping", ... */

typedef struct io_yaml_node io_yaml_node;

typedef struct {
    char *key;
    int line, col;      /* of the key; 0 when an override created it */
    char *origin;       /* NULL, or the --set path that created the key */
    io_yaml_node *value;
} io_yaml_pair;

struct io_yaml_node {
    io_yaml_kind kind;
    int line, col;        /* 1-based start in the file; 0 when the node came from an override */
    char *origin;         /* NULL for file nodes; else the --set path that made or replaced it */
    int used;             /* a reader took this node (set for its ancestors too) */
    /* scalar */
    char *str;            /* the text, NUL-terminated (a NUL inside a scalar is refused) */
    int plain;            /* 1 = unquoted, so null, numbers and booleans are possible */
    /* mapping (pairs) or sequence (items) */
    int n, cap;
    io_yaml_pair *pairs;
    io_yaml_node **items;
    /* mapping: keys that readers looked up, for "did you mean" */
    char **asked;
    int n_asked, cap_asked;
    /* where the node hangs: parent and the index of its pair or item there (-1 for the root) */
    io_yaml_node *parent;
    int index;
};

typedef struct {
    char *file;         /* name used in messages */
    io_yaml_node *root; /* never NULL after a successful load: an empty file is an empty mapping */
    int n_nodes;
} io_yaml_doc;

/* Reads and parses a file (at most IO_YAML_MAX_BYTES). On failure d is left empty (safe to
 * io_yaml_free) and e says "FILE:LINE:COL: reason" for anything wrong inside the file. */
xd_status io_yaml_load(io_yaml_doc *d, const char *path, xd_err *e);
/* The same from memory: n bytes of text, `name` standing for the file in messages. */
xd_status io_yaml_parse(io_yaml_doc *d, const char *name, const char *text, size_t n, xd_err *e);
void io_yaml_free(io_yaml_doc *d);

/* ---- overrides */

/* Sets the scalar at path to value, which is read as a YAML scalar (so `"a b"` is the string
 * a b, and an empty value is null). Missing mapping keys along the path are created; a null
 * scalar in the middle of the path becomes a mapping; sequence items must exist. Replacing a
 * mapping or a sequence, or going through a scalar, is an XD_EARG naming the path. */
xd_status io_yaml_set(io_yaml_doc *d, const char *path, const char *value, xd_err *e);
/* The same for one "key.path=value" word, split at the first '='. */
xd_status io_yaml_set_arg(io_yaml_doc *d, const char *arg, xd_err *e);

/* ---- lookup */

/* The node at path below base (NULL = the root), or NULL. Each mapping on the way remembers the
 * key asked for. Does not mark anything used. */
io_yaml_node *io_yaml_find(io_yaml_doc *d, io_yaml_node *base, const char *path);
/* Like io_yaml_find, for a key that must be there and not null: XD_EARG "FILE:LINE: key 'train':
 * missing required key 'epochs'", naming the line of the mapping's own key, and pointing at a
 * present key of similar spelling if there is one. Marks the node used. */
xd_status io_yaml_require(io_yaml_doc *d, io_yaml_node *base, const char *path,
                          io_yaml_node **out, xd_err *e);
/* Remembers `key` as a key that readers of the mapping know (for suggestions), without a lookup. */
void io_yaml_know(io_yaml_node *map, const char *key);

int io_yaml_is_null(const io_yaml_node *n);
/* Marks a node and its ancestors used; io_yaml_mark_tree marks the whole subtree too. */
void io_yaml_mark_used(io_yaml_node *n);
void io_yaml_mark_tree(io_yaml_node *n);

/* ---- typed values of a node (mark it used; XD_EARG naming file, line and key path) */

xd_status io_yaml_as_long(const io_yaml_doc *d, io_yaml_node *n, long lo, long hi, long *out,
                          xd_err *e);
xd_status io_yaml_as_int(const io_yaml_doc *d, io_yaml_node *n, int lo, int hi, int *out,
                         xd_err *e);
/* A finite number (also one that fits a float, for io_yaml_as_float). */
xd_status io_yaml_as_double(const io_yaml_doc *d, io_yaml_node *n, double *out, xd_err *e);
xd_status io_yaml_as_float(const io_yaml_doc *d, io_yaml_node *n, float *out, xd_err *e);
/* true/false, yes/no, on/off (any case), 1/0. */
xd_status io_yaml_as_bool(const io_yaml_doc *d, io_yaml_node *n, int *out, xd_err *e);
/* Any scalar's text (null is ""); a mapping or sequence is an error. *out points into d. */
xd_status io_yaml_as_str(const io_yaml_doc *d, io_yaml_node *n, const char **out, xd_err *e);

/* ---- optional values by path: *inout holds the default, kept when the key is absent or null */

xd_status io_yaml_get_long(io_yaml_doc *d, io_yaml_node *base, const char *path, long lo, long hi,
                           long *inout, xd_err *e);
xd_status io_yaml_get_int(io_yaml_doc *d, io_yaml_node *base, const char *path, int lo, int hi,
                          int *inout, xd_err *e);
xd_status io_yaml_get_double(io_yaml_doc *d, io_yaml_node *base, const char *path,
                             double *inout, xd_err *e);
xd_status io_yaml_get_float(io_yaml_doc *d, io_yaml_node *base, const char *path, float *inout,
                            xd_err *e);
xd_status io_yaml_get_bool(io_yaml_doc *d, io_yaml_node *base, const char *path, int *inout,
                           xd_err *e);
xd_status io_yaml_get_str(io_yaml_doc *d, io_yaml_node *base, const char *path,
                          const char **inout, xd_err *e);

/* ---- unread keys */

/* XD_OK when every key was read; else XD_EARG for the first unread key in file order:
 * "FILE:LINE: unknown key 'train.epoch' (did you mean 'epochs'?)" (sequence items that nothing
 * read: "FILE:LINE: unused item 'losses.3'"). */
xd_status io_yaml_check_unused(const io_yaml_doc *d, xd_err *e);

/* Checks a mapping's keys against the keys its reader knows, before reading it, so that a typo
 * is reported as such rather than as the missing key it was meant to be: XD_EARG for the first
 * key (in file order) not in known, in the words of io_yaml_check_unused. Remembers known as
 * looked-up keys. A node that is not a mapping passes (the reader reports its type). */
xd_status io_yaml_check_keys(const io_yaml_doc *d, io_yaml_node *map, const char *const *known,
                             int n_known, xd_err *e);

/* ---- positions and messages */

/* The dotted path of a node from the root ("" for the root). Returns the length snprintf would. */
int io_yaml_path(const io_yaml_node *n, char *buf, size_t size);
/* "FILE:LINE" for a file node (for a mapping or sequence, the line of the key that holds it),
 * "--set PATH" for one an override made. */
int io_yaml_where(const io_yaml_doc *d, const io_yaml_node *n, char *buf, size_t size);
/* The line of the key that holds n (for a mapping: the line a reader sees as its start), else
 * n's own line. */
int io_yaml_key_line(const io_yaml_node *n);
/* xd_fail with "WHERE: " (as io_yaml_where) in front of the formatted reason. */
xd_status io_yaml_fail(const io_yaml_doc *d, const io_yaml_node *n, xd_err *e, xd_status code,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Optimal-string-alignment edit distance (insert, delete, substitute, swap neighbours), capped:
 * returns cap + 1 as soon as the distance exceeds cap. */
int io_yaml_edit_distance(const char *a, const char *b, int cap);

#endif
