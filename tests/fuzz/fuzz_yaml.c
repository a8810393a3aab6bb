/* Fuzz target: YAML documents (io_yaml_parse, which io_yaml_load uses), then every node through
 * the typed getters, the positions and paths messages use, lookups by path and the unused-key
 * check, which must pass once the whole tree is marked used. */
#include <limits.h>
#include <stdlib.h>

#include "io/yaml.h"
#include "tests/fuzz/fuzz.h"

static void visit(io_yaml_doc *d, io_yaml_node *n, int depth)
{
    if (depth > IO_YAML_MAX_DEPTH + 2) fz_fail("tree deeper than %d", IO_YAML_MAX_DEPTH);
    char path[512], where[512];
    io_yaml_path(n, path, sizeof path);
    io_yaml_where(d, n, where, sizeof where);
    xd_err e;
    if (n->kind == IO_YAML_SCALAR) {
        long l;
        double x;
        float f;
        int b;
        const char *s;
        io_yaml_as_long(d, n, LONG_MIN, LONG_MAX, &l, &e);
        io_yaml_as_double(d, n, &x, &e);
        io_yaml_as_float(d, n, &f, &e);
        io_yaml_as_bool(d, n, &b, &e);
        if (io_yaml_as_str(d, n, &s, &e) != XD_OK) fz_fail("scalar without text: %s", e.msg);
        return;
    }
    for (int i = 0; i < n->n; i++) {
        if (n->kind == IO_YAML_MAPPING) {
            io_yaml_find(d, n, n->pairs[i].key);
            visit(d, n->pairs[i].value, depth + 1);
        } else {
            visit(d, n->items[i], depth + 1);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_copy(data, size);
    io_yaml_doc d;
    xd_err e;
    if (io_yaml_parse(&d, "fuzz.yaml", text, size, &e) == XD_OK) {
        if (!d.root) fz_fail("parsed without a root");
        io_yaml_check_unused(&d, &e);
        visit(&d, d.root, 0);
        io_yaml_mark_tree(d.root);
        if (io_yaml_check_unused(&d, &e) != XD_OK) fz_fail("unused after marking all: %s", e.msg);
        io_yaml_set_arg(&d, "train.epochs=3", &e);
        io_yaml_free(&d);
    }
    free(text);
    return 0;
}
