/* io/yaml: the document tree with positions, refused constructs, paths, overrides, typed getters
 * and the report of keys nothing read. */
#include "tests/support/testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/yaml.h"

/* Parses text named "t.yaml"; fails the test on error. */
static void parse_ok(io_yaml_doc *d, const char *text)
{
    xd_err e;
    xd_err_clear(&e);
    xd_status s = io_yaml_parse(d, "t.yaml", text, strlen(text), &e);
    if (s != XD_OK) fail_msg("parse failed: %s", e.msg);
}

/* Parses text that must fail with code and a message holding want. */
static void parse_bad(const char *text, size_t n, xd_status code, const char *want)
{
    io_yaml_doc d;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = io_yaml_parse(&d, "t.yaml", text, n, &e);
    assert_int_equal(s, code);
    tu_assert_err(&e, code, want);
    assert_null(d.root); /* nothing half-built is handed out */
    io_yaml_free(&d);
}

static void test_positions_and_order(void **state)
{
    (void)state;
    io_yaml_doc d;
    parse_ok(&d, "# header\n"
                 "name: demo\n"
                 "train:\n"
                 "  zeta: 1\n"
                 "  alpha: 'two'\n"
                 "  mid: {x: 1, y: [a, b]}\n"
                 "losses:\n"
                 "  - kind: ce\n"
                 "    weight: 0.5\n"
                 "  - kind: kd\n");
    io_yaml_node *r = d.root;
    assert_int_equal(r->kind, IO_YAML_MAPPING);
    assert_int_equal(r->n, 3);
    assert_string_equal(r->pairs[0].key, "name");
    assert_int_equal(r->pairs[0].line, 2);
    assert_int_equal(r->pairs[0].col, 1);
    assert_int_equal(r->pairs[0].value->line, 2);
    assert_int_equal(r->pairs[0].value->col, 7);
    /* file order, not sorted */
    io_yaml_node *train = r->pairs[1].value;
    assert_int_equal(train->kind, IO_YAML_MAPPING);
    assert_string_equal(train->pairs[0].key, "zeta");
    assert_string_equal(train->pairs[1].key, "alpha");
    assert_string_equal(train->pairs[2].key, "mid");
    assert_int_equal(train->line, 4); /* a block mapping starts at its first key */
    assert_int_equal(io_yaml_key_line(train), 3);
    io_yaml_node *alpha = train->pairs[1].value;
    assert_string_equal(alpha->str, "two");
    assert_int_equal(alpha->plain, 0);
    assert_int_equal(train->pairs[0].value->plain, 1);
    assert_int_equal(alpha->line, 5);
    assert_int_equal(alpha->col, 10);
    io_yaml_node *y = io_yaml_find(&d, NULL, "train.mid.y");
    assert_non_null(y);
    assert_int_equal(y->kind, IO_YAML_SEQUENCE);
    assert_int_equal(y->n, 2);
    assert_int_equal(y->items[1]->line, 6);
    assert_int_equal(y->items[1]->col, 22);
    io_yaml_node *w = io_yaml_find(&d, NULL, "losses.0.weight");
    assert_non_null(w);
    assert_string_equal(w->str, "0.5");
    assert_int_equal(w->line, 9);
    assert_int_equal(w->col, 13);
    char path[64];
    io_yaml_path(w, path, sizeof path);
    assert_string_equal(path, "losses.0.weight");
    io_yaml_path(y->items[0], path, sizeof path);
    assert_string_equal(path, "train.mid.y.0");
    /* relative lookups, missing keys, indexes out of range or not numbers */
    io_yaml_node *l1 = io_yaml_find(&d, NULL, "losses.1");
    assert_non_null(l1);
    assert_string_equal(io_yaml_find(&d, l1, "kind")->str, "kd");
    assert_null(io_yaml_find(&d, NULL, "losses.2"));
    assert_null(io_yaml_find(&d, NULL, "losses.x"));
    assert_null(io_yaml_find(&d, NULL, "losses.-1"));
    assert_null(io_yaml_find(&d, NULL, "train.zeta.deeper"));
    assert_null(io_yaml_find(&d, NULL, "train.nope"));
    assert_ptr_equal(io_yaml_find(&d, NULL, ""), r);
    char where[64];
    io_yaml_where(&d, w, where, sizeof where);
    assert_string_equal(where, "t.yaml:9");
    io_yaml_where(&d, train, where, sizeof where);
    assert_string_equal(where, "t.yaml:3");
    io_yaml_free(&d);
}

static void test_scalars_and_empty(void **state)
{
    (void)state;
    io_yaml_doc d;
    parse_ok(&d, "a:\nb: ~\nc: null\nd: ''\ne: |\n  two\n  lines\nf: \"tab\\there\"\n");
    assert_true(io_yaml_is_null(io_yaml_find(&d, NULL, "a")));
    assert_true(io_yaml_is_null(io_yaml_find(&d, NULL, "b")));
    assert_true(io_yaml_is_null(io_yaml_find(&d, NULL, "c")));
    assert_false(io_yaml_is_null(io_yaml_find(&d, NULL, "d"))); /* quoted: an empty string */
    assert_string_equal(io_yaml_find(&d, NULL, "e")->str, "two\nlines\n");
    assert_string_equal(io_yaml_find(&d, NULL, "f")->str, "tab\there");
    io_yaml_free(&d);
    /* empty files and comment-only files are empty mappings; a UTF-8 BOM is fine */
    parse_ok(&d, "");
    assert_int_equal(d.root->kind, IO_YAML_MAPPING);
    assert_int_equal(d.root->n, 0);
    io_yaml_free(&d);
    parse_ok(&d, "# nothing\n\n");
    assert_int_equal(d.root->n, 0);
    io_yaml_free(&d);
    parse_ok(&d, "\xEF\xBB\xBFk: \xED\x95\x9C\xEA\xB8\x80\n");
    assert_string_equal(io_yaml_find(&d, NULL, "k")->str, "\xED\x95\x9C\xEA\xB8\x80");
    io_yaml_free(&d);
    /* a BOM before a mapping of several keys; columns on the first line count from after it */
    parse_ok(&d, "\xEF\xBB\xBFname: x\ndata: {path: p}\n");
    assert_string_equal(io_yaml_find(&d, NULL, "name")->str, "x");
    io_yaml_free(&d);
    const char *t = "\xEF\xBB\xBF" "a: b: c\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:1:5: mapping values are not allowed");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    const char *t = "train:\n  lr: 1\n  epochs: 2\n  lr: 3\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:4:3: duplicate key 'train.lr' (first at line 2)");
    /* the repeat that comes first in the file is reported, with its own first line */
    t = "b: 1\na: 1\nb: 2\na: 2\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:3:1: duplicate key 'b' (first at line 1)");
    t = "l:\n  - {x: 1, x: 2}\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:2:12: duplicate key 'l.0.x' (first at line 2)");
    /* the same key in different mappings is fine */
    io_yaml_doc d;
    parse_ok(&d, "a: {x: 1}\nb: {x: 2}\n");
    io_yaml_free(&d);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    const char *t = "a: [1, 2\nb: 3\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:2:2: did not find expected ',' or ']'");
    t = "a: 1\n\tb: 2\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:2:1: found a tab character");
    t = "a: b: c\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:1:5: mapping values are not allowed");
    t = "a: \"open\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:2:1: found unexpected end of stream");
    t = "a: 1\nb: 2\x01\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:2:5: control characters are not allowed");
}

static void test_bad_utf8(void **state)
{
    (void)state;
    const char t1[] = "a: ok\nb: x\xC3\x28\n";
    parse_bad(t1, sizeof t1 - 1, XD_EFORMAT, "t.yaml:2:5: invalid UTF-8 (byte 0xC3 at offset 10)");
    const char t2[] = "a: \xC0\xAF\n"; /* overlong '/' */
    parse_bad(t2, sizeof t2 - 1, XD_EFORMAT, "t.yaml:1:4: invalid UTF-8");
    const char t3[] = "k: \xED\x95\x9C \xED\xA0\x80\n"; /* a surrogate after a valid Hangul */
    parse_bad(t3, sizeof t3 - 1, XD_EFORMAT, "t.yaml:1:6: invalid UTF-8 (byte 0xED at offset 7)");
    const char t4[] = "a: \xF0\x9F\x98"; /* cut in the middle of a character */
    parse_bad(t4, sizeof t4 - 1, XD_EFORMAT, "t.yaml:1:4: invalid UTF-8");
    const char t5[] = "\xFF\xFE" "a\0:\0"; /* UTF-16 is not accepted */
    parse_bad(t5, sizeof t5 - 1, XD_EFORMAT, "t.yaml:1:1: invalid UTF-8");
}

static void test_refused_constructs(void **state)
{
    (void)state;
    const char *t = "a: &x 1\nb: *x\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:1:4: anchors (&x) are not supported");
    t = "a: 1\nb: *x\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:2:4: aliases (*x) are not supported");
    t = "a: !!str 1\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:1:4: tags");
    t = "? [a]\n: 1\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:1:3: a sequence as a mapping key");
    t = "x: 1\n---\ny: 2\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:2:1: a second YAML document");
    t = "a: \"x\\0y\"\n";
    parse_bad(t, strlen(t), XD_EFORMAT, "t.yaml:1:4: a NUL character inside a value");
    /* nesting is bounded */
    char deep[2 * IO_YAML_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i < IO_YAML_MAX_DEPTH + 1; i++) deep[n++] = '[';
    for (int i = 0; i < IO_YAML_MAX_DEPTH + 1; i++) deep[n++] = ']';
    parse_bad(deep, n, XD_EFORMAT, "nested deeper than 64 levels");
    /* and so is the node count */
    size_t big = 3 * (size_t)IO_YAML_MAX_NODES + 16;
    char *many = malloc(big);
    n = 0;
    many[n++] = '[';
    for (int i = 0; i < IO_YAML_MAX_NODES + 1; i++) {
        many[n++] = '1';
        many[n++] = ',';
    }
    many[n++] = ']';
    parse_bad(many, n, XD_EFORMAT, "more than 100000 nodes");
    free(many);
}

static void test_load_file(void **state)
{
    (void)state;
    const char *t = "train:\n  epochs: 3\n";
    tu_write_file("r.yaml", t, strlen(t));
    io_yaml_doc d;
    xd_err e;
    TU_OK(io_yaml_load(&d, "r.yaml", &e));
    assert_string_equal(d.file, "r.yaml");
    long v = 0;
    TU_OK(io_yaml_get_long(&d, NULL, "train.epochs", 1, 100, &v, &e));
    assert_int_equal(v, 3);
    io_yaml_free(&d);
    assert_int_equal(io_yaml_load(&d, "missing.yaml", &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "missing.yaml: cannot open");
    io_yaml_free(&d);
    tu_write_file("bad.yaml", "a: [\n", 5);
    assert_int_equal(io_yaml_load(&d, "bad.yaml", &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "bad.yaml:2:1: ");
    io_yaml_free(&d);
}

static void test_getters(void **state)
{
    (void)state;
    io_yaml_doc d;
    xd_err e;
    parse_ok(&d, "train:\n"
                 "  epochs: ten\n"
                 "  batch: 64\n"
                 "  big: 99999999999999999999\n"
                 "  lr: 1e-3\n"
                 "  bad_lr: inf\n"
                 "  huge: 1e300\n"
                 "  flag: Yes\n"
                 "  off: off\n"
                 "  maybe: perhaps\n"
                 "  name: 12\n"
                 "  sub: {a: 1}\n"
                 "  none:\n"
                 "  frac: 1.5\n"
                 "  spaced: ' 3'\n");
    long v = 7;
    assert_int_equal(io_yaml_get_long(&d, NULL, "train.epochs", 1, 100, &v, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "t.yaml:2: key 'train.epochs': expected an integer, got 'ten'");
    assert_int_equal(v, 7);
    int b = 0;
    TU_OK(io_yaml_get_int(&d, NULL, "train.batch", 1, 1024, &b, &e));
    assert_int_equal(b, 64);
    assert_int_equal(io_yaml_get_int(&d, NULL, "train.batch", 1, 32, &b, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG,
                  "t.yaml:3: key 'train.batch': 64 is out of range (expected 1 to 32)");
    assert_int_equal(io_yaml_get_int(&d, NULL, "train.batch", 100, INT_MAX, &b, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "64 is out of range (expected 100 to");
    assert_int_equal(io_yaml_get_long(&d, NULL, "train.batch", 100, LONG_MAX, &v, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "key 'train.batch': 64 is out of range (expected >= 100)");
    assert_int_equal(io_yaml_get_long(&d, NULL, "train.big", 0, LONG_MAX, &v, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "t.yaml:4: key 'train.big': expected an integer");
    assert_int_equal(io_yaml_get_long(&d, NULL, "train.lr", 0, LONG_MAX, &v, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "expected an integer, got '1e-3'");
    assert_int_equal(io_yaml_get_long(&d, NULL, "train.spaced", 0, 9, &v, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "got ' 3'");
    float f = 0;
    TU_OK(io_yaml_get_float(&d, NULL, "train.lr", &f, &e));
    assert_true(f == 1e-3f);
    assert_int_equal(io_yaml_get_float(&d, NULL, "train.bad_lr", &f, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "t.yaml:6: key 'train.bad_lr': expected a finite number, got 'inf'");
    double x = 0;
    TU_OK(io_yaml_get_double(&d, NULL, "train.huge", &x, &e));
    assert_true(x == 1e300);
    assert_int_equal(io_yaml_get_float(&d, NULL, "train.huge", &f, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "within float range");
    assert_int_equal(io_yaml_get_float(&d, NULL, "train.sub", &f, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "t.yaml:12: key 'train.sub': expected a number, got a mapping");
    int flag = 0;
    TU_OK(io_yaml_get_bool(&d, NULL, "train.flag", &flag, &e));
    assert_int_equal(flag, 1);
    TU_OK(io_yaml_get_bool(&d, NULL, "train.off", &flag, &e));
    assert_int_equal(flag, 0);
    assert_int_equal(io_yaml_get_bool(&d, NULL, "train.maybe", &flag, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "key 'train.maybe': expected true or false, got 'perhaps'");
    const char *s = "dflt";
    TU_OK(io_yaml_get_str(&d, NULL, "train.name", &s, &e));
    assert_string_equal(s, "12");
    /* absent and null keys keep the default */
    s = "dflt";
    TU_OK(io_yaml_get_str(&d, NULL, "train.none", &s, &e));
    assert_string_equal(s, "dflt");
    v = 5;
    TU_OK(io_yaml_get_long(&d, NULL, "train.absent", 0, 9, &v, &e));
    assert_int_equal(v, 5);
    TU_OK(io_yaml_get_long(&d, NULL, "nowhere.at.all", 0, 9, &v, &e));
    assert_int_equal(v, 5);
    /* a long value is cut in the message */
    io_yaml_free(&d);
    char t[300];
    snprintf(t, sizeof t, "n: %0200d\n", 7);
    t[4] = 'x';
    parse_ok(&d, t);
    assert_int_equal(io_yaml_get_long(&d, NULL, "n", 0, 9, &v, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "...'");
    assert_true(strlen(e.msg) < 120);
    io_yaml_free(&d);
}

static void test_require(void **state)
{
    (void)state;
    io_yaml_doc d;
    xd_err e;
    parse_ok(&d, "name: x\n"
                 "train:\n"
                 "  epoch: 3\n"
                 "  batch: 8\n"
                 "data:\n"
                 "  path:\n");
    io_yaml_node *n;
    assert_int_equal(io_yaml_require(&d, NULL, "train.epochs", &n, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG,
                  "t.yaml:2: key 'train': missing required key 'epochs' (is 'epoch' at line 3 a "
                  "typo?)");
    assert_int_equal(io_yaml_require(&d, NULL, "data.path", &n, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "t.yaml:6: key 'data.path': a value is required");
    assert_int_equal(io_yaml_require(&d, NULL, "model", &n, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "t.yaml:1: missing required key 'model'");
    TU_OK(io_yaml_require(&d, NULL, "train.batch", &n, &e));
    assert_string_equal(n->str, "8");
    assert_true(n->used);
    io_yaml_free(&d);
}

static void test_overrides(void **state)
{
    (void)state;
    io_yaml_doc d;
    xd_err e;
    parse_ok(&d, "train:\n"
                 "  epochs: 10\n"
                 "  optimizer: {kind: adamw}\n"
                 "empty:\n"
                 "losses:\n"
                 "  - kind: ce\n"
                 "  - kind: kd\n");
    TU_OK(io_yaml_set(&d, "train.epochs", "3", &e));
    io_yaml_node *n = io_yaml_find(&d, NULL, "train.epochs");
    assert_string_equal(n->str, "3");
    assert_int_equal(n->line, 0);
    assert_string_equal(n->origin, "train.epochs");
    int v = 0;
    TU_OK(io_yaml_get_int(&d, NULL, "train.epochs", 1, 100, &v, &e));
    assert_int_equal(v, 3);
    /* created keys, through a new mapping */
    TU_OK(io_yaml_set_arg(&d, "train.optimizer.lr=0.01", &e));
    TU_OK(io_yaml_set(&d, "train.schedule.kind", "cosine", &e));
    n = io_yaml_find(&d, NULL, "train.schedule");
    assert_non_null(n);
    assert_int_equal(n->kind, IO_YAML_MAPPING);
    assert_string_equal(io_yaml_find(&d, NULL, "train.schedule.kind")->str, "cosine");
    assert_string_equal(io_yaml_find(&d, NULL, "train.optimizer.lr")->str, "0.01");
    /* file order kept, new keys at the end */
    io_yaml_node *train = io_yaml_find(&d, NULL, "train");
    assert_int_equal(train->n, 3);
    assert_string_equal(train->pairs[2].key, "schedule");
    /* sequence items by index; a null value turns into a mapping */
    TU_OK(io_yaml_set(&d, "losses.1.weight", "0.5", &e));
    assert_string_equal(io_yaml_find(&d, NULL, "losses.1.weight")->str, "0.5");
    TU_OK(io_yaml_set(&d, "empty.x", "1", &e));
    assert_int_equal(io_yaml_find(&d, NULL, "empty")->kind, IO_YAML_MAPPING);
    /* values are YAML scalars: quotes, comments, empty values */
    TU_OK(io_yaml_set(&d, "name", "'a: b'", &e));
    n = io_yaml_find(&d, NULL, "name");
    assert_string_equal(n->str, "a: b");
    assert_int_equal(n->plain, 0);
    TU_OK(io_yaml_set(&d, "name", "plain words # comment", &e));
    assert_string_equal(io_yaml_find(&d, NULL, "name")->str, "plain words");
    TU_OK(io_yaml_set(&d, "name", "", &e));
    assert_true(io_yaml_is_null(io_yaml_find(&d, NULL, "name")));
    /* errors name the path */
    assert_int_equal(io_yaml_set(&d, "train.optimizer", "sgd", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG,
                  "--set train.optimizer: 'train.optimizer' is a mapping; only scalars");
    assert_int_equal(io_yaml_set(&d, "losses", "x", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'losses' is a sequence");
    assert_int_equal(io_yaml_set(&d, "train.epochs.x", "1", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG,
                  "--set train.epochs.x: 'train.epochs' is a scalar, it has no key 'x'");
    assert_int_equal(io_yaml_set(&d, "losses.2.weight", "1", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "'losses' holds a sequence of 2 items; '2' is not an index");
    assert_int_equal(io_yaml_set(&d, "a..b", "1", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "empty key in the path");
    assert_int_equal(io_yaml_set(&d, "x", "a: b", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "not a scalar (quote it)");
    assert_int_equal(io_yaml_set(&d, "x", "*ref", &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "aliases");
    assert_int_equal(io_yaml_set_arg(&d, "noequals", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "expected key.path=value");
    /* getters name the override instead of a line */
    TU_OK(io_yaml_set(&d, "train.epochs", "ten", &e));
    assert_int_equal(io_yaml_get_int(&d, NULL, "train.epochs", 1, 100, &v, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG,
                  "--set train.epochs: key 'train.epochs': expected an integer, got 'ten'");
    io_yaml_free(&d);
}

static void test_unused_keys(void **state)
{
    (void)state;
    io_yaml_doc d;
    xd_err e;
    parse_ok(&d, "train:\n"
                 "  epoch: 3\n"
                 "  batch: 8\n"
                 "seed: 1\n");
    int v = 1;
    TU_OK(io_yaml_get_int(&d, NULL, "train.epochs", 1, 100, &v, &e)); /* absent: default */
    TU_OK(io_yaml_get_int(&d, NULL, "train.batch", 1, 100, &v, &e));
    assert_int_equal(io_yaml_check_unused(&d, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "t.yaml:2: unknown key 'train.epoch' (did you mean 'epochs'?)");
    TU_OK(io_yaml_get_int(&d, NULL, "train.epoch", 1, 100, &v, &e));
    /* seed was never asked for and nothing near it is known: no suggestion */
    assert_int_equal(io_yaml_check_unused(&d, &e), XD_EARG);
    assert_string_equal(e.msg, "t.yaml:4: unknown key 'seed'");
    TU_OK(io_yaml_get_int(&d, NULL, "seed", 0, 100, &v, &e));
    TU_OK(io_yaml_check_unused(&d, &e));
    /* a key an override created */
    TU_OK(io_yaml_set(&d, "train.bacth", "4", &e));
    assert_int_equal(io_yaml_check_unused(&d, &e), XD_EARG);
    assert_string_equal(e.msg,
                        "--set train.bacth: unknown key 'train.bacth' (did you mean 'batch'?)");
    io_yaml_free(&d);
    /* suggestions from io_yaml_know; unread sequence items; the first in file order wins */
    parse_ok(&d, "opt: {lr: 1, mometum: 0.9}\nlist: [a, b]\nzzz: 1\n");
    io_yaml_node *opt = io_yaml_find(&d, NULL, "opt");
    io_yaml_know(opt, "momentum");
    io_yaml_mark_used(io_yaml_find(&d, NULL, "opt.lr"));
    io_yaml_mark_used(io_yaml_find(&d, NULL, "list.0"));
    io_yaml_mark_used(io_yaml_find(&d, NULL, "zzz"));
    assert_int_equal(io_yaml_check_unused(&d, &e), XD_EARG);
    assert_string_equal(e.msg, "t.yaml:1: unknown key 'opt.mometum' (did you mean 'momentum'?)");
    io_yaml_mark_tree(opt);
    assert_int_equal(io_yaml_check_unused(&d, &e), XD_EARG);
    assert_string_equal(e.msg, "t.yaml:2: unused item 'list.1'");
    io_yaml_free(&d);
}

static void test_check_keys(void **state)
{
    (void)state;
    io_yaml_doc d;
    xd_err e;
    parse_ok(&d, "data:\n  path: x\n  trian: y\nlist: [1]\n");
    static const char *const known[] = {"path", "train", "test"};
    io_yaml_node *data = io_yaml_find(&d, NULL, "data");
    assert_int_equal(io_yaml_check_keys(&d, data, known, 3, &e), XD_EARG);
    assert_string_equal(e.msg, "t.yaml:3: unknown key 'data.trian' (did you mean 'train'?)");
    static const char *const all[] = {"path", "trian"};
    TU_OK(io_yaml_check_keys(&d, data, all, 2, &e));
    /* not a mapping: nothing to check here */
    TU_OK(io_yaml_check_keys(&d, io_yaml_find(&d, NULL, "list"), known, 3, &e));
    io_yaml_free(&d);
}

static void test_edit_distance(void **state)
{
    (void)state;
    assert_int_equal(io_yaml_edit_distance("epochs", "epochs", 3), 0);
    assert_int_equal(io_yaml_edit_distance("epoch", "epochs", 3), 1);
    assert_int_equal(io_yaml_edit_distance("bacth", "batch", 3), 1); /* a swap counts once */
    assert_int_equal(io_yaml_edit_distance("lr", "rate", 5), 4);
    assert_int_equal(io_yaml_edit_distance("kitten", "sitting", 3), 3);
    assert_int_equal(io_yaml_edit_distance("kitten", "sitting", 2), 3); /* capped: cap + 1 */
    assert_int_equal(io_yaml_edit_distance("", "abc", 5), 3);
    assert_int_equal(io_yaml_edit_distance("a", "abcdefgh", 2), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positions_and_order),
        cmocka_unit_test(test_scalars_and_empty),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_refused_constructs),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_require),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_unused_keys),
        cmocka_unit_test(test_check_keys),
        cmocka_unit_test(test_edit_distance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
