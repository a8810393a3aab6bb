/* Pipelines (see pipeline.h): the file bound into steps, the references between steps checked,
 * and the runs with their stamps.
 *
 * Every step's recipe is bound once at load time with its `step:` checkpoints kept as text; a run
 * hands the trainer a shallow copy of that recipe whose referring teachers point at the files the
 * earlier steps wrote for the same seed. */
#include "distill/pipeline.h"

#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/hash.h"
#include "core/mem.h"
#include "distill/models.h"
#include "distill/runs.h"
#include "io/file.h"
#include "io/yaml.h"
#include "modalities/text/utf8.h"

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *const pipeline_ckpt_names[PIPELINE_CKPT_COUNT] = {
    [PIPELINE_CKPT_BEST] = "best",
    [PIPELINE_CKPT_LAST] = "last",
};
static_assert(COUNT_OF(pipeline_ckpt_names) == PIPELINE_CKPT_COUNT, "name every checkpoint");

const char *const pipeline_action_names[PIPELINE_ACTION_COUNT] = {
    [PIPELINE_RAN] = "ran",
    [PIPELINE_RESUMED] = "resumed",
    [PIPELINE_SKIPPED] = "skipped",
};
static_assert(COUNT_OF(pipeline_action_names) == PIPELINE_ACTION_COUNT, "name every action");

static const char *const top_keys[] = {"name", "seed", "seeds", "steps"};
static const char *const step_keys[] = {"name", "recipe", "set"};

/* The recipe keys a pipeline decides for its steps (see pipeline_fixed_key). */
static const struct {
    const char *key, *why;
} fixed_keys[] = {
    {"seed", "every step runs with the pipeline's seeds; give the first with the pipeline's "
             "seed: key or run --seed N"},
    {"seeds", "every step runs with the pipeline's seeds; give their number with the pipeline's "
              "seeds: key or run --seeds K"},
    {"name", "a step's run folder is its step name (OUT/seed-N/STEP, OUT from the pipeline's "
             "name: key or run --out DIR)"},
};

#define STAMP_FILE "step.json"
#define STAMP_FORMAT "xdistill step 1"

// ----------------------------------------------------------------------------------------------
// parsing

/* Letters, digits, '-', '_', '.'; 1 to RECIPE_MAX_NAME - 1 bytes (a folder name). */
static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= RECIPE_MAX_NAME || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i])) return 0;
    return 1;
}

/* "FILE:LINE: PATH: reason" for node n of d. */
static xd_status bad(const io_yaml_doc *d, const io_yaml_node *n, xd_err *e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static xd_status bad(const io_yaml_doc *d, const io_yaml_node *n, xd_err *e, const char *fmt, ...)
{
    char path[256], reason[XD_ERR_LEN];
    io_yaml_path(n, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return io_yaml_fail(d, n, e, XD_EARG, "%s: %s", path, reason);
}

static xd_status get_name(io_yaml_doc *d, io_yaml_node *n, char **out, xd_err *e)
{
    const char *s;
    xd_status st = io_yaml_as_str(d, n, &s, e);
    if (st != XD_OK) return st;
    if (!name_ok(s))
        return bad(d, n, e, "'%s' is not a usable name (letters, digits, '-', '_', '.'; up to %d)",
                   s, RECIPE_MAX_NAME - 1);
    *out = xd_xstrdup(s);
    return XD_OK;
}

/* A YAML scalar's text as `--set` reads it back: plain text as it is, anything quoted in the file
 * double-quoted again (so `"yes"` stays a string and `'a: b'` stays one scalar). */
static char *set_value(const io_yaml_node *v)
{
    if (v->plain) return xd_xstrdup(v->str);
    size_t n = strlen(v->str), at = 0;
    char *q = xd_xmalloc(4 * n + 3);
    q[at++] = '"';
    for (const unsigned char *c = (const unsigned char *)v->str; *c; c++) {
        if (*c == '"' || *c == '\\') q[at++] = '\\';
        if (*c < 0x20) {
            at += (size_t)sprintf(q + at, "\\x%02X", *c);
            continue;
        }
        q[at++] = (char)*c;
    }
    q[at++] = '"';
    q[at] = '\0';
    return q;
}

const char *pipeline_fixed_key(const char *arg)
{
    size_t len = strcspn(arg, ".=");
    for (int i = 0; i < COUNT_OF(fixed_keys); i++)
        if (strlen(fixed_keys[i].key) == len && strncmp(arg, fixed_keys[i].key, len) == 0)
            return fixed_keys[i].why;
    return NULL;
}

/* The step's `set:` mapping (map may be NULL), then the caller's overrides for every step. */
static xd_status bind_sets(io_yaml_doc *d, io_yaml_node *map, const char *const *extra,
                           int n_extra, pipeline_step *st, xd_err *e)
{
    int n = map && map->kind == IO_YAML_MAPPING ? map->n : 0;
    st->sets = xd_xcalloc((size_t)(n + n_extra + 1), sizeof *st->sets);
    st->n_sets = n + n_extra; /* the ones not made yet are NULL for pipeline_free */
    for (int i = 0; i < n_extra; i++) st->sets[n + i] = xd_xstrdup(extra[i]);
    if (!map) return XD_OK;
    io_yaml_mark_used(map);
    if (map->kind != IO_YAML_MAPPING)
        return bad(d, map, e, "expected a mapping of overrides (key.path: value), got a %s",
                   io_yaml_kind_names[map->kind]);
    for (int i = 0; i < map->n; i++) {
        io_yaml_pair *p = &map->pairs[i];
        io_yaml_mark_used(p->value);
        if (p->value->kind != IO_YAML_SCALAR)
            return bad(d, p->value, e, "an override is one value, not a %s",
                       io_yaml_kind_names[p->value->kind]);
        if (strchr(p->key, '='))
            return bad(d, p->value, e, "a key path holds no '='");
        const char *why = pipeline_fixed_key(p->key);
        if (why) return bad(d, p->value, e, "%s", why);
        char *v = set_value(p->value);
        size_t len = strlen(p->key) + strlen(v) + 2;
        st->sets[i] = xd_xmalloc(len);
        snprintf(st->sets[i], len, "%s=%s", p->key, v);
        free(v);
    }
    return XD_OK;
}

/* "PIPELINE:LINE: step 'NAME': " before the message in e. */
static xd_status in_step(const pipeline *p, const pipeline_step *st, xd_err *e, xd_status s)
{
    xd_err_prefix(e, "%s:%d: step '%s'", p->file, st->line, st->name);
    return s;
}

/* Reads and binds the step's recipe, its step references kept as text. */
static xd_status load_recipe(const pipeline *p, pipeline_step *st, xd_err *e)
{
    void *text;
    size_t n;
    xd_status s = io_read_all(st->recipe_path, IO_YAML_MAX_BYTES, &text, &n, e);
    if (s != XD_OK) return in_step(p, st, e, s);
    s = recipe_parse(st->recipe_path, text, n, (const char *const *)st->sets, st->n_sets,
                     RECIPE_STEP_REFS, &st->r, e);
    free(text);
    return s == XD_OK ? XD_OK : in_step(p, st, e, s);
}

static xd_status bind_step(io_yaml_doc *d, io_yaml_node *it, pipeline *p, int i,
                           const char *const *sets, int n_sets, xd_err *e)
{
    pipeline_step *st = &p->steps[i];
    io_yaml_mark_used(it);
    if (it->kind != IO_YAML_MAPPING)
        return bad(d, it, e, "expected a mapping (name, recipe, set), got a %s",
                   io_yaml_kind_names[it->kind]);
    xd_status s = io_yaml_check_keys(d, it, step_keys, COUNT_OF(step_keys), e);
    io_yaml_node *n;
    if (s == XD_OK) s = io_yaml_require(d, it, "name", &n, e);
    if (s == XD_OK) s = get_name(d, n, &st->name, e);
    if (s != XD_OK) return s;
    st->line = io_yaml_key_line(it);
    for (int j = 0; j < i; j++)
        if (strcmp(p->steps[j].name, st->name) == 0)
            return bad(d, n, e, "two steps named '%s' (the first at %s:%d)", st->name, p->file,
                       p->steps[j].line);
    const char *path;
    if ((s = io_yaml_require(d, it, "recipe", &n, e)) != XD_OK) return s;
    if ((s = io_yaml_as_str(d, n, &path, e)) != XD_OK) return s;
    if (!path[0]) return bad(d, n, e, "the path is empty");
    st->recipe_path = xd_xstrdup(path);
    io_yaml_node *set = io_yaml_find(d, it, "set");
    if (set && io_yaml_is_null(set)) {
        io_yaml_mark_used(set);
        set = NULL;
    }
    return bind_sets(d, set, sets, n_sets, st, e);
}

/* The pipeline's name: `name`, or the file's base name without its extension. */
static xd_status bind_name(io_yaml_doc *d, pipeline *p, xd_err *e)
{
    io_yaml_node *n = io_yaml_find(d, NULL, "name");
    if (n && !io_yaml_is_null(n)) return get_name(d, n, &p->name, e);
    if (n) io_yaml_mark_used(n);
    const char *base = strrchr(p->file, '/');
    char name[RECIPE_MAX_NAME];
    snprintf(name, sizeof name, "%s", base ? base + 1 : p->file);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    for (char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_.", *c)) *c = '-';
    p->name = xd_xstrdup(name_ok(name) ? name : "pipeline");
    return XD_OK;
}

static xd_status bind(io_yaml_doc *d, pipeline *p, const char *const *sets, int n_sets,
                      xd_err *e)
{
    io_yaml_node *root = d->root;
    if (root->kind != IO_YAML_MAPPING)
        return io_yaml_fail(d, root, e, XD_EARG,
                            "a pipeline is a mapping of keys (name, seed, seeds, steps), not a %s",
                            io_yaml_kind_names[root->kind]);
    io_yaml_mark_used(root);
    xd_status s = io_yaml_check_keys(d, root, top_keys, COUNT_OF(top_keys), e);
    if (s == XD_OK) s = bind_name(d, p, e);
    p->seed = 1;
    p->seeds = 1;
    if (s == XD_OK) s = io_yaml_get_long(d, root, "seed", 0, LONG_MAX, &p->seed, e);
    if (s == XD_OK) s = io_yaml_get_int(d, root, "seeds", 1, PIPELINE_MAX_SEEDS, &p->seeds, e);
    if (s != XD_OK) return s;
    if (p->seed > LONG_MAX - (p->seeds - 1))
        return bad(d, io_yaml_find(d, root, "seed"), e, "seed + seeds - 1 overflows");
    io_yaml_node *steps;
    if ((s = io_yaml_require(d, root, "steps", &steps, e)) != XD_OK) return s;
    if (steps->kind != IO_YAML_SEQUENCE || steps->n == 0)
        return bad(d, steps, e, "expected a list of steps (name, recipe, set)");
    if (steps->n > PIPELINE_MAX_STEPS)
        return bad(d, steps, e, "%d steps, more than the %d allowed", steps->n,
                   PIPELINE_MAX_STEPS);
    p->steps = xd_xcalloc((size_t)steps->n, sizeof *p->steps);
    for (int i = 0; i < steps->n && s == XD_OK; i++) {
        p->n_steps = i + 1;
        s = bind_step(d, steps->items[i], p, i, sets, n_sets, e);
    }
    if (s == XD_OK) s = io_yaml_check_unused(d, e);
    return s;
}

// ----------------------------------------------------------------------------------------------
// references between steps

/* Step index of "step:NAME[/best|/last]" into *step and *which; -1 when no step has the name, -2
 * when the text after '/' is neither. */
static int parse_ref(const pipeline *p, const char *ckpt, pipeline_ckpt *which)
{
    const char *name = ckpt + strlen(RECIPE_STEP_PREFIX), *slash = strchr(name, '/');
    size_t len = slash ? (size_t)(slash - name) : strlen(name);
    *which = PIPELINE_CKPT_BEST;
    if (slash) {
        int w = -1;
        for (int k = 0; k < PIPELINE_CKPT_COUNT; k++)
            if (strcmp(slash + 1, pipeline_ckpt_names[k]) == 0) w = k;
        if (w < 0) return -2;
        *which = (pipeline_ckpt)w;
    }
    for (int i = 0; i < p->n_steps; i++)
        if (strlen(p->steps[i].name) == len && strncmp(p->steps[i].name, name, len) == 0)
            return i;
    return -1;
}

/* "RECIPE:LINE: teachers.T.checkpoint" (or "--set teachers.T.checkpoint" when the step's `set:`
 * wrote it) into buf: read again for the message only. */
static void ref_where(const pipeline_step *st, int t, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "teachers.%d.checkpoint", t);
    snprintf(buf, size, "%s: %s", st->recipe_path, path);
    io_yaml_doc d;
    xd_err e;
    if (io_yaml_load(&d, st->recipe_path, &e) != XD_OK) return;
    for (int i = 0; i < st->n_sets; i++)
        if (io_yaml_set_arg(&d, st->sets[i], &e) != XD_OK) break;
    io_yaml_node *n = io_yaml_find(&d, NULL, path);
    if (n) {
        char where[320];
        io_yaml_where(&d, n, where, sizeof where);
        if (n->origin) /* "--set teachers.T.checkpoint" names the path already */
            snprintf(buf, size, "%s", where);
        else
            snprintf(buf, size, "%s: %s", where, path);
    }
    io_yaml_free(&d);
}

/* Whether step `from` reads step `to` through its references (depth-first); the chain of names
 * goes into buf ("b -> c -> a"). */
static int reaches(const pipeline *p, int from, int to, int depth, char *buf, size_t size)
{
    if (depth > p->n_steps) return 0;
    const pipeline_step *st = &p->steps[from];
    for (int k = 0; k < st->r.n_teachers; k++) {
        pipeline_ckpt w;
        const char *c = st->r.teachers[k].checkpoint;
        if (strncmp(c, RECIPE_STEP_PREFIX, strlen(RECIPE_STEP_PREFIX)) != 0) continue;
        int j = parse_ref(p, c, &w);
        if (j < 0) continue;
        size_t at = strlen(buf);
        snprintf(buf + at, size - at, " -> %s", p->steps[j].name);
        if (j == to || reaches(p, j, to, depth + 1, buf, size)) return 1;
        buf[at] = '\0';
    }
    return 0;
}

static xd_status check_refs(pipeline *p, int i, xd_err *e)
{
    pipeline_step *st = &p->steps[i];
    for (int k = 0; k < st->r.n_teachers; k++) {
        const char *c = st->r.teachers[k].checkpoint;
        if (strncmp(c, RECIPE_STEP_PREFIX, strlen(RECIPE_STEP_PREFIX)) != 0) continue;
        pipeline_ckpt w;
        int j = parse_ref(p, c, &w);
        char where[400];
        ref_where(st, k, where, sizeof where);
        if (j == -2)
            xd_fail(e, XD_EARG, "%s: '%s': expected step:NAME, step:NAME/best or step:NAME/last",
                    where, c);
        else if (j < 0)
            xd_fail(e, XD_EARG, "%s: '%s' names no step of %s", where, c, p->file);
        else if (j == i)
            xd_fail(e, XD_EARG, "%s: '%s' is this step itself", where, c);
        else if (j > i) {
            char chain[1024];
            snprintf(chain, sizeof chain, "%s -> %s", st->name, p->steps[j].name);
            if (reaches(p, j, i, 0, chain, sizeof chain))
                xd_fail(e, XD_EARG, "%s: '%s': the steps read each other in a cycle (%s)", where,
                        c, chain);
            else
                xd_fail(e, XD_EARG, "%s: '%s' names a later step (%s:%d); a step reads only "
                        "earlier steps, so list '%s' first", where, c, p->file,
                        p->steps[j].line, p->steps[j].name);
        } else {
            st->refs[st->n_refs++] = (pipeline_ref){.teacher = k, .step = j, .which = w};
            continue;
        }
        return in_step(p, st, e, XD_EARG);
    }
    return XD_OK;
}

xd_status pipeline_load(const char *path, const char *const *sets, int n_sets, pipeline *p,
                        xd_err *e)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < n_sets; i++) {
        const char *why = pipeline_fixed_key(sets[i]);
        if (why) return xd_fail(e, XD_EARG, "--set %s: %s", sets[i], why);
    }
    p->file = xd_xstrdup(path);
    io_yaml_doc d;
    xd_status s = io_yaml_load(&d, path, e);
    if (s == XD_OK) s = bind(&d, p, sets, n_sets, e);
    io_yaml_free(&d);
    for (int i = 0; i < p->n_steps && s == XD_OK; i++) s = load_recipe(p, &p->steps[i], e);
    for (int i = 0; i < p->n_steps && s == XD_OK; i++) s = check_refs(p, i, e);
    if (s != XD_OK) pipeline_free(p);
    return s;
}

void pipeline_free(pipeline *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++) {
        pipeline_step *st = &p->steps[i];
        free(st->name);
        free(st->recipe_path);
        for (int k = 0; k < st->n_sets; k++) free(st->sets[k]);
        free(st->sets);
        recipe_free(&st->r);
    }
    free(p->steps);
    free(p->file);
    free(p->name);
    memset(p, 0, sizeof *p);
}

// ----------------------------------------------------------------------------------------------
// stamps

typedef struct {
    uint64_t recipe, key;
    train_inputs in; /* the data set's, eval sets' and checkpoints' identities */
} stamp;

static void hex(uint64_t v, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)v); }

/* The hashes of what decides the result of recipe r run with seed: the recipe, and the identities
 * of the files it reads (trainer_read_inputs: the data set, the teachers' checkpoints, the
 * data.eval_sets scored beside the test split, the models' init checkpoints). The last two enter
 * the key only where the recipe has them, so that a step without them keeps the key it had before
 * they were stamped. */
static xd_status stamp_make(const recipe *r, long seed, stamp *sp, xd_err *e)
{
    memset(sp, 0, sizeof *sp);
    recipe as_run = *r;
    as_run.seed = seed;
    as_run.seeds = 1;
    as_run.train.threads = 0; /* results do not depend on the thread count */
    char *yaml = recipe_to_yaml(&as_run);
    sp->recipe = xd_fnv_str(XD_FNV_OFFSET, 'r', yaml);
    free(yaml);
    xd_status s = trainer_read_inputs(r, &sp->in, e);
    if (s != XD_OK) return s;
    const train_inputs *in = &sp->in;
    uint64_t k = xd_fnv_str(XD_FNV_OFFSET, 'F', STAMP_FORMAT);
    k = xd_fnv_u64(k, 'r', sp->recipe);
    k = xd_fnv_u64(k, 'd', in->data);
    k = xd_fnv_u64(k, 's', (uint64_t)seed);
    for (int i = 0; i < r->n_teachers; i++) k = xd_fnv_u64(k, 't', in->teacher[i]);
    for (int i = 0; i < r->data.n_eval_sets; i++) k = xd_fnv_u64(k, 'e', in->eval[i]);
    for (int i = 0; i < r->n_models; i++)
        if (r->models[i].init) k = xd_fnv_u64(xd_fnv_u64(k, 'm', (uint64_t)i), 'i', in->init[i]);
    sp->key = k;
    return XD_OK;
}

/* One file of a stamp: {who_key: who, path_key: path, id_key: id in hex}. */
static json_t *stamp_file(const char *who_key, const char *who, const char *path_key,
                          const char *path, const char *id_key, uint64_t id)
{
    char h[17];
    hex(id, h);
    json_t *o = json_object();
    json_object_set_new(o, who_key, txt_json_string(who));
    json_object_set_new(o, path_key, txt_json_string(path));
    json_object_set_new(o, id_key, json_string(h));
    return o;
}

static xd_status stamp_write(const char *dir, const char *step, const recipe *r, long seed,
                             const stamp *sp, const char *started, int finished, xd_err *e)
{
    char h[17], now[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    json_t *j = json_object();
    json_object_set_new(j, "format", json_string(STAMP_FORMAT));
    json_object_set_new(j, "step", txt_json_string(step));
    json_object_set_new(j, "seed", json_integer(seed));
    hex(sp->key, h);
    json_object_set_new(j, "key", json_string(h));
    hex(sp->recipe, h);
    json_object_set_new(j, "recipe", json_string(h));
    hex(sp->in.data, h);
    json_object_set_new(j, "data", json_string(h));
    json_object_set_new(j, "data_path", txt_json_string(r->data.path));
    json_t *ts = json_array(), *es = json_array(), *is = json_array();
    const train_inputs *in = &sp->in;
    for (int i = 0; i < r->n_teachers; i++)
        json_array_append_new(ts, stamp_file("name", r->teachers[i].name, "checkpoint",
                                             r->teachers[i].checkpoint, "hash", in->teacher[i]));
    for (int i = 0; i < r->data.n_eval_sets; i++)
        json_array_append_new(es, stamp_file("name", r->data.eval_sets[i].name, "path",
                                             r->data.eval_sets[i].path, "identity", in->eval[i]));
    for (int i = 0; i < r->n_models; i++)
        if (r->models[i].init)
            json_array_append_new(is, stamp_file("model", r->models[i].name, "checkpoint",
                                                 r->models[i].init, "hash", in->init[i]));
    json_object_set_new(j, "teachers", ts);
    json_object_set_new(j, "eval_sets", es);
    json_object_set_new(j, "inits", is);
    json_object_set_new(j, "started", json_string(started ? started : now));
    json_object_set_new(j, "finished", json_boolean(finished));
    if (finished) json_object_set_new(j, "finished_at", json_string(now));
    char *path = io_path_join(dir, STAMP_FILE);
    xd_status s = runs_write_json(path, j, e);
    free(path);
    json_decref(j);
    return s;
}

static const char *json_str(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

/* "running (why)": what differs between the stamp old and sp. */
static void stamp_diff(const json_t *old, const recipe *r, const stamp *sp, char *buf,
                       size_t size)
{
    char h[17];
    hex(sp->recipe, h);
    if (strcmp(json_str(old, "recipe"), h) != 0) {
        snprintf(buf, size, "running (the recipe changed)");
        return;
    }
    hex(sp->in.data, h);
    if (strcmp(json_str(old, "data"), h) != 0) {
        snprintf(buf, size, "running (the data set changed)");
        return;
    }
    json_t *ts = json_object_get(old, "teachers");
    for (int i = 0; i < r->n_teachers; i++) {
        hex(sp->in.teacher[i], h);
        if (strcmp(json_str(json_array_get(ts, (size_t)i), "hash"), h) != 0) {
            snprintf(buf, size, "running (teacher '%s' changed: %s)", r->teachers[i].name,
                     r->teachers[i].checkpoint);
            return;
        }
    }
    json_t *es = json_object_get(old, "eval_sets");
    for (int i = 0; i < r->data.n_eval_sets; i++) {
        hex(sp->in.eval[i], h);
        const json_t *o = json_array_get(es, (size_t)i);
        if (strcmp(json_str(o, "identity"), h) != 0) {
            snprintf(buf, size, "running (data.eval_sets '%s' changed: %s)",
                     r->data.eval_sets[i].name, r->data.eval_sets[i].path);
            return;
        }
    }
    json_t *is = json_object_get(old, "inits");
    for (int i = 0, n = 0; i < r->n_models; i++) {
        if (!r->models[i].init) continue;
        hex(sp->in.init[i], h);
        if (strcmp(json_str(json_array_get(is, (size_t)n++), "hash"), h) != 0) {
            snprintf(buf, size, "running (model '%s' init changed: %s)", r->models[i].name,
                     r->models[i].init);
            return;
        }
    }
    snprintf(buf, size, "running (the stamp is of another seed)");
}

static int exists_in(const char *dir, const char *name)
{
    char *path = io_path_join(dir, name);
    struct stat st;
    int ok = stat(path, &st) == 0;
    free(path);
    return ok;
}

// ----------------------------------------------------------------------------------------------
// running

/* The step's recipe for one seed: a shallow copy whose referring teachers read the files the
 * earlier steps wrote under seed_dir. paths[] holds the new strings (freed by the caller). */
static void resolve(const pipeline *p, const pipeline_step *st, const char *seed_dir, recipe *r,
                    recipe_teacher *teachers, char **paths)
{
    *r = st->r;
    if (st->r.n_teachers) /* a recipe without teachers has no array to copy */
        memcpy(teachers, st->r.teachers, (size_t)st->r.n_teachers * sizeof *teachers);
    r->teachers = teachers;
    for (int k = 0; k < st->n_refs; k++) {
        const pipeline_ref *ref = &st->refs[k];
        /* the step's (first) model's file, as the trainer names it */
        char *file = models_file(&p->steps[ref->step].r, 0, pipeline_ckpt_names[ref->which]);
        char *step_dir = io_path_join(seed_dir, p->steps[ref->step].name);
        paths[k] = io_path_join(step_dir, file);
        free(step_dir);
        free(file);
        teachers[ref->teacher].checkpoint = paths[k];
    }
}

static void say(const pipeline_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const pipeline_opts *o, const char *fmt, ...)
{
    if (!o->out) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->out, fmt, ap);
    va_end(ap);
    fflush(o->out);
}

/* A step's stamp, as it is while the step runs. */
typedef struct {
    const char *dir, *step;
    const recipe *r;
    long seed;
    const stamp *sp;
    const char *started;
} running_stamp;

/* The trainer's before_write: the stamp appears with the run's first files, so that a step that
 * fails before leaves no stamp of its own (nor the folders the trainer made for it). */
static xd_status write_running_stamp(void *ctx, xd_err *e)
{
    const running_stamp *c = ctx;
    return stamp_write(c->dir, c->step, c->r, c->seed, c->sp, c->started, 0, e);
}

/* Runs, resumes or skips one step of one seed. */
static xd_status run_step(const pipeline *p, const pipeline_opts *o, int i, long seed,
                          const char *seed_dir, train_result *res, pipeline_action *act,
                          xd_err *e)
{
    const pipeline_step *st = &p->steps[i];
    recipe r;
    recipe_teacher teachers[RECIPE_MAX_TEACHERS];
    char *paths[RECIPE_MAX_TEACHERS] = {0};
    resolve(p, st, seed_dir, &r, teachers, paths);
    char *dir = io_path_join(seed_dir, st->name);
    char *stamp_path = io_path_join(dir, STAMP_FILE);
    json_t *old = json_load_file(stamp_path, 0, NULL);
    stamp sp;
    xd_status s = stamp_make(&r, seed, &sp, e);
    if (s != XD_OK) {
        xd_err_prefix(e, "step '%s' (seed %ld)", st->name, seed);
        goto out;
    }
    char key[17], why[512];
    hex(sp.key, key);
    int same = old && strcmp(json_str(old, "format"), STAMP_FORMAT) == 0 &&
               strcmp(json_str(old, "key"), key) == 0;
    int finished = same && json_is_true(json_object_get(old, "finished"));
    /* a run of several models has the first one's files under its name */
    char *best = models_file(&r, 0, "best"), *last = models_file(&r, 0, "last");
    int done = finished && exists_in(dir, best) && exists_in(dir, last);
    free(best);
    free(last);
    if (done && runs_read_finished(dir, res)) {
        *act = PIPELINE_SKIPPED;
        say(o, "step %s (seed %ld): skipped, unchanged since %s (recipe, data, teachers, eval "
               "sets, init checkpoints and seed are the same)\n", st->name, seed,
            json_str(old, "finished_at"));
        goto report;
    }
    /* the resume state of a finished run resumes nothing (the trainer leaves such a run as it
     * is), so a finished step whose outputs are gone runs again from the start */
    int resume = same && !finished && exists_in(dir, "resume.safetensors");
    if (resume)
        snprintf(why, sizeof why, "resuming the interrupted run (recipe, data, teachers, eval "
                                  "sets, init checkpoints and seed are the same)");
    else if (!old)
        snprintf(why, sizeof why, "running");
    else if (!same)
        stamp_diff(old, &r, &sp, why, sizeof why);
    else
        snprintf(why, sizeof why, "running again (%s)", finished ? "the earlier run's outputs are "
                 "missing" : "the earlier run stopped before it saved a resume state");
    say(o, "step %s (seed %ld): %s\n", st->name, seed, why);
    /* the trainer makes the folder, and a fresh run removes a resume state of other inputs as it
     * writes its first files, so none is continued under this stamp */
    const char *started = resume ? json_str(old, "started") : NULL;
    running_stamp rs = {dir, st->name, &r, seed, &sp, started};
    /* the run reads the files the stamp has just hashed: it takes their identities from it */
    train_opts to = {.out_dir = dir, .resume = resume, .stop_after = o->stop_after,
                     .inputs = &sp.in, .quiet = o->quiet, .log = o->log,
                     .before_write = write_running_stamp, .ctx = &rs};
    if ((s = trainer_run(&r, seed, &to, res, e)) != XD_OK) {
        xd_err_prefix(e, "step '%s' (seed %ld)", st->name, seed);
        goto out;
    }
    *act = resume ? PIPELINE_RESUMED : PIPELINE_RAN;
    if (res->finished)
        s = stamp_write(dir, st->name, &r, seed, &sp, started, 1, e);
    else
        say(o, "step %s (seed %ld): stopped after %d of %d epochs (run again to continue)\n",
            st->name, seed, res->epochs_done, r.train.epochs);
report:
    if (s == XD_OK && res->finished) {
        res->seed = seed;
        if (o->out) runs_print_result(o->out, st->name, res);
    }
out:
    json_decref(old);
    free(stamp_path);
    free(dir);
    for (int k = 0; k < st->n_refs; k++) free(paths[k]);
    return s;
}

static xd_status write_summary(const pipeline *p, const char *out, const pipeline_result *res,
                               long seed, xd_err *e)
{
    json_t *j = json_object(), *steps = json_array();
    json_object_set_new(j, "name", txt_json_string(p->name));
    json_object_set_new(j, "pipeline", txt_json_string(p->file));
    json_object_set_new(j, "seed", json_integer(seed));
    json_object_set_new(j, "seeds", json_integer(res->n_seeds));
    train_result per[PIPELINE_MAX_SEEDS];
    for (int i = 0; i < p->n_steps; i++) {
        for (int k = 0; k < res->n_seeds; k++) per[k] = res->res[k * res->n_steps + i];
        json_t *o = runs_seeds_json(p->steps[i].name, per, res->n_seeds);
        json_object_set_new(o, "recipe", txt_json_string(p->steps[i].recipe_path));
        json_array_append_new(steps, o);
    }
    json_object_set_new(j, "steps", steps);
    char *path = io_path_join(out, "summary.json");
    xd_status s = runs_write_json(path, j, e);
    free(path);
    json_decref(j);
    return s;
}

xd_status pipeline_run(const pipeline *p, const pipeline_opts *o, pipeline_result *res,
                       xd_err *e)
{
    memset(res, 0, sizeof *res);
    const long seed = o->seed >= 0 ? o->seed : p->seed;
    const int seeds = o->seeds > 0 ? o->seeds : p->seeds;
    if (seeds > PIPELINE_MAX_SEEDS)
        return xd_fail(e, XD_EARG, "%s: %d seeds, more than the %d allowed", p->file, seeds,
                       PIPELINE_MAX_SEEDS);
    res->n_seeds = seeds;
    res->n_steps = p->n_steps;
    res->res = xd_xcalloc((size_t)seeds * (size_t)p->n_steps, sizeof *res->res);
    res->action = xd_xcalloc((size_t)seeds * (size_t)p->n_steps, sizeof *res->action);
    char *def_out = o->out_dir ? NULL : io_path_join("runs", p->name);
    const char *out = o->out_dir ? o->out_dir : def_out;
    xd_status s = XD_OK;
    int stopped = 0;
    for (int k = 0; k < seeds && s == XD_OK && !stopped; k++) {
        char sub[64];
        snprintf(sub, sizeof sub, "seed-%ld", seed + k);
        char *seed_dir = io_path_join(out, sub);
        for (int i = 0; i < p->n_steps && s == XD_OK && !stopped; i++) {
            train_result *r = &res->res[k * p->n_steps + i];
            s = run_step(p, o, i, seed + k, seed_dir, r, &res->action[k * p->n_steps + i], e);
            stopped = s == XD_OK && !r->finished; /* stop_after: continue on the next run */
        }
        free(seed_dir);
    }
    res->finished = s == XD_OK && !stopped;
    if (res->finished) s = write_summary(p, out, res, seed, e);
    if (s == XD_OK && res->finished && o->out)
        for (int i = 0; i < p->n_steps; i++) {
            train_result per[PIPELINE_MAX_SEEDS];
            for (int k = 0; k < seeds; k++) per[k] = res->res[k * p->n_steps + i];
            runs_print_seeds(o->out, p->steps[i].name, per, seeds);
        }
    free(def_out);
    return s;
}

void pipeline_result_free(pipeline_result *res)
{
    if (!res) return;
    free(res->res);
    free(res->action);
    memset(res, 0, sizeof *res);
}
