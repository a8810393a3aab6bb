/* Shared machinery of the set builders: split sections, metadata, stratified splits, staged output
 * folders, child processes (npm, tar, dpkg) and the summary (see common.h). */
#include "modalities/sets/common.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "io/file.h"

extern char **environ;

const char *const sets_split_names[SETS_SPLIT_COUNT] = {"train", "test"};
const char *const sets_kind_names[SETS_KIND_COUNT] = {"classification", "paired", "scenes"};
static_assert(sizeof sets_kind_names / sizeof sets_kind_names[0] == SETS_KIND_COUNT,
              "a name per kind");

double sets_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

const char *sets_cache_dir(const char *dir)
{
    if (dir && *dir) return dir;
    const char *env = getenv("XDISTILL_CACHE");
    return env && *env ? env : "cache";
}

// ----------------------------------------------------------------------------------------------
// summary

static void free_strv(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void sets_summary_free(sets_summary *s)
{
    if (!s) return;
    free(s->path);
    free_strv(s->classes, s->n_classes);
    free(s->class_n);
    free_strv(s->langs, s->n_langs);
    free(s->missing);
    free(s->first_skipped);
    memset(s, 0, sizeof *s);
}

void sets_summary_fill(sets_summary *sum, sets_kind kind, const char *path,
                       const sets_split sp[SETS_SPLIT_COUNT], size_t n_classes,
                       const char *const *classes)
{
    double t_read = sum->t_read, t_decode = sum->t_decode, t_write = sum->t_write;
    size_t previews = sum->n_previews, n_extra = sum->n_extra_classes;
    sets_summary_free(sum);
    sum->t_read = t_read;
    sum->t_decode = t_decode;
    sum->t_write = t_write;
    sum->n_previews = previews;
    sum->n_extra_classes = n_extra;
    sum->kind = kind;
    sum->path = xd_xstrdup(path);
    sum->h = sp[0].h;
    sum->w = sp[0].w;
    sum->c = sp[0].c;
    sum->n_classes = n_classes;
    sum->classes = xd_xcalloc(n_classes ? n_classes : 1, sizeof *sum->classes);
    for (size_t k = 0; k < n_classes; k++) sum->classes[k] = xd_xstrdup(classes[k]);
    sum->class_n = xd_xcalloc((n_classes ? n_classes : 1) * SETS_SPLIT_COUNT, sizeof(size_t));
    sum->n_langs = sp[0].n_langs;
    sum->langs = xd_xcalloc(sum->n_langs ? sum->n_langs : 1, sizeof *sum->langs);
    for (size_t l = 0; l < sum->n_langs; l++) sum->langs[l] = xd_xstrdup(sp[0].langs[l]);
    sum->missing = xd_xcalloc((sum->n_langs ? sum->n_langs : 1) * SETS_SPLIT_COUNT, sizeof(size_t));
    for (int s = 0; s < SETS_SPLIT_COUNT; s++) {
        sum->n[s] = sp[s].n;
        for (size_t i = 0; i < sp[s].n; i++) {
            if (sp[s].label_mask && !sp[s].label_mask[i]) {
                sum->n_unlabelled[s]++;
                continue;
            }
            int32_t y = sp[s].label[i];
            if (y >= 0 && (size_t)y < n_classes) sum->class_n[(size_t)y * SETS_SPLIT_COUNT + s]++;
        }
        for (size_t l = 0; l < sp[s].n_langs && l < sum->n_langs; l++)
            for (size_t i = 0; i < sp[s].n; i++)
                if (sp[s].texts[l][i][0] == '\0') sum->missing[l * SETS_SPLIT_COUNT + s]++;
    }
}

// ----------------------------------------------------------------------------------------------
// writing

size_t sets_split_sections(const sets_split *s)
{
    size_t n_extra = 0;
    for (int k = 0; k < SETS_EXTRA_MAX; k++) n_extra += s->extra_name[k] != NULL;
    return 4 + n_extra + (s->code ? 1 : 0) + (s->rationale ? 1 : 0) + s->n_langs + (s->mask ? 4 : 0);
}

static xd_status add_array(io_dataset_writer *w, const char *split, const char *part, io_dtype t,
                           int ndim, const int64_t *shape, const void *data, xd_err *e)
{
    char name[IO_DATASET_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s/%s", split, part);
    io_tensor tt;
    io_tensor_set(&tt, name, t, ndim, shape, data);
    return io_dataset_add(w, &tt, e);
}

xd_status sets_write_split(io_dataset_writer *w, const char *split, const sets_split *s, xd_err *e)
{
    int64_t n = (int64_t)s->n;
    int64_t img[4] = {n, s->h, s->w, s->c}, one[1] = {n};
    xd_status st = add_array(w, split, "image", IO_U8, 4, img, s->image, e);
    if (!st) st = add_array(w, split, "label", IO_I32, 1, one, s->label, e);
    if (!st) st = add_array(w, split, "label_mask", IO_U8, 1, one, s->label_mask, e);
    for (int k = 0; k < SETS_EXTRA_MAX && !st; k++)
        if (s->extra_name[k]) {
            char part[IO_DATASET_NAME_MAX + 1];
            snprintf(part, sizeof part, "label.%s", s->extra_name[k]);
            st = add_array(w, split, part, IO_I32, 1, one, s->extra[k], e);
        }
    if (!st) st = add_array(w, split, "id", IO_I32, 1, one, s->id, e);
    char name[IO_DATASET_NAME_MAX + 40];
    if (!st && s->code) {
        snprintf(name, sizeof name, "%s/code", split);
        st = io_dataset_add_strings(w, name, s->code, s->n, e);
    }
    if (!st && s->rationale) {
        snprintf(name, sizeof name, "%s/rationale", split);
        st = io_dataset_add_strings(w, name, s->rationale, s->n, e);
    }
    for (size_t l = 0; l < s->n_langs && !st; l++) {
        snprintf(name, sizeof name, "%s/text.%s", split, s->langs[l]);
        st = io_dataset_add_strings(w, name, s->texts[l], s->n, e);
    }
    if (!st && s->mask) {
        int64_t mask[3] = {n, s->h, s->w}, boxes[3] = {n, s->k, 5}, items[2] = {n, s->k};
        st = add_array(w, split, "mask", IO_U8, 3, mask, s->mask, e);
        if (!st) st = add_array(w, split, "boxes", IO_I32, 3, boxes, s->boxes, e);
        if (!st) st = add_array(w, split, "items", IO_I32, 2, items, s->items, e);
        if (!st) st = add_array(w, split, "n_items", IO_U8, 1, one, s->n_items, e);
    }
    return st;
}

static void seed_text(uint64_t seed, char num[32])
{
    snprintf(num, 32, "%llu", (unsigned long long)seed);
}

xd_status sets_write_meta(io_dataset_writer *w, const char *name, sets_kind kind, uint64_t seed,
                          xd_err *e)
{
    char num[32];
    seed_text(seed, num);
    xd_status s = io_dataset_set_meta(w, "name", name, e);
    if (!s) s = io_dataset_set_meta(w, "kind", sets_kind_names[kind], e);
    if (!s) s = io_dataset_set_meta(w, "preparer", "xdistill " XD_VERSION, e);
    if (!s) s = io_dataset_set_meta(w, "seed", num, e);
    return s;
}

xd_status sets_write_meta_kv(io_dataset_writer *w, const io_kv *kv, size_t n, xd_err *e)
{
    xd_status s = XD_OK;
    for (size_t i = 0; i < n && !s; i++) s = io_dataset_set_meta(w, kv[i].key, kv[i].value, e);
    return s;
}

xd_status sets_check_replace(const char *out, const char *file, const char *name, uint64_t seed,
                             const io_kv *kv, size_t n, int force, xd_err *e)
{
    if (force || !out || !*out) return XD_OK;
    char *in_dir = file ? NULL : io_path_join(out, SETS_DATASET_FILE);
    struct stat st;
    io_dataset *ds = NULL;
    xd_err ignored;
    int exists = stat(file ? file : in_dir, &st) == 0;
    if (exists && io_dataset_open(file ? file : in_dir, &ds, &ignored) != XD_OK) {
        xd_status s = xd_fail(e, XD_EARG, "%s: %s exists and is not a data set; give another "
                                          "--out, or --force to replace it", out,
                              file ? file : in_dir);
        free(in_dir);
        return s;
    }
    free(in_dir);
    if (!ds) return XD_OK;
    char num[32];
    seed_text(seed, num);
    const char *had = io_dataset_meta(ds, "name");
    xd_status s = XD_OK;
    if (!had || strcmp(had, name) != 0) {
        s = xd_fail(e, XD_EARG, "%s: holds the '%s' data set, this run makes '%s'; give another "
                                "--out, or --force to replace it", out, had ? had : "?", name);
    } else {
        io_kv seed_kv = {"seed", num};
        for (size_t i = 0; i <= n && !s; i++) {
            const io_kv *want = i < n ? &kv[i] : &seed_kv;
            const char *old = io_dataset_meta(ds, want->key);
            char q1[XD_EXCERPT_BUF], q2[XD_EXCERPT_BUF];
            if (!old || strcmp(old, want->value) != 0)
                s = xd_fail(e, XD_EARG, "%s: holds a data set made with %s=%s, this run makes %s=%s; "
                                        "give another --out, or --force to replace it", out,
                            want->key, old ? xd_excerpt(old, q1) : "(none)", want->key,
                            xd_excerpt(want->value, q2));
        }
    }
    io_dataset_close(ds);
    return s;
}

xd_status sets_write_meta_int(io_dataset_writer *w, const char *key, long long v, xd_err *e)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    return io_dataset_set_meta(w, key, num, e);
}

xd_status sets_write_dataset(const char *path, const sets_write *wr,
                             xd_status (*extra)(io_dataset_writer *w, const void *ctx, xd_err *e),
                             const void *ctx, xd_err *e)
{
    io_dataset_writer *w;
    /* metadata, classes and a few set-wide tables besides the splits */
    size_t sections = 8 + sets_split_sections(&wr->sp[0]) + sets_split_sections(&wr->sp[1]);
    xd_status s = io_dataset_writer_open(path, sections, &w, e);
    if (s) return s;
    s = sets_write_meta(w, wr->name, wr->kind, wr->seed, e);
    if (!s && extra) s = extra(w, ctx, e);
    if (!s) s = io_dataset_add_strings(w, "classes", wr->classes, wr->n_classes, e);
    for (int sp = 0; sp < SETS_SPLIT_COUNT && !s; sp++)
        s = sets_write_split(w, sets_split_names[sp], &wr->sp[sp], e);
    if (s) {
        io_dataset_writer_abort(w);
        return s;
    }
    return io_dataset_finish(w, e);
}

// ----------------------------------------------------------------------------------------------
// splits

void sets_split_stratified(const int32_t *strata, size_t n, int n_strata, double fraction,
                           uint64_t seed, uint8_t *is_test)
{
    memset(is_test, 0, n);
    if (n == 0 || n_strata <= 0) return;
    /* members of each stratum, in index order (a counting sort) */
    size_t *start = xd_xcalloc((size_t)n_strata + 1, sizeof *start);
    for (size_t i = 0; i < n; i++) start[strata[i] + 1]++;
    for (int s = 0; s < n_strata; s++) start[s + 1] += start[s];
    uint32_t *members = xd_xmalloc(n * sizeof *members);
    size_t *fill = xd_xmalloc((size_t)n_strata * sizeof *fill);
    memcpy(fill, start, (size_t)n_strata * sizeof *fill);
    for (size_t i = 0; i < n; i++) members[fill[strata[i]]++] = (uint32_t)i;
    for (int s = 0; s < n_strata; s++) {
        size_t m = start[s + 1] - start[s];
        size_t k = (size_t)floor((double)m * fraction + 0.5);
        if (k > m) k = m;
        xd_rng r = xd_rng_make(seed, (uint64_t)s, XD_RNG_SPLIT);
        xd_rng_shuffle(&r, members + start[s], (uint32_t)m);
        for (size_t j = 0; j < k; j++) is_test[members[start[s] + j]] = 1;
    }
    free(fill);
    free(members);
    free(start);
}

// ----------------------------------------------------------------------------------------------
// a split taken from another data set

void sets_regroup_free(sets_regroup *r)
{
    for (size_t i = 0; i < r->n; i++) free(r->owned[i]);
    free(r->owned);
    memset(r, 0, sizeof *r);
}

/* p, from now on freed by sets_regroup_free(r). */
static void *regroup_own(sets_regroup *r, void *p)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->owned = xd_xrealloc(r->owned, r->cap * sizeof *r->owned);
    }
    r->owned[r->n++] = p;
    return p;
}

/* A new array (owned by r) of n elements of size bytes: element j is element g[j] of the two
 * splits' arrays a[0] (n0 elements) and a[1] taken as one. NULL when the splits have none. */
static void *regroup_gather(sets_regroup *r, const void *const a[SETS_SPLIT_COUNT], size_t n0,
                            size_t size, const size_t *g, size_t n)
{
    if (!a[0] && !a[1]) return NULL;
    uint8_t *out = xd_xmalloc(n * size + 1);
    for (size_t j = 0; j < n; j++) {
        const uint8_t *from = g[j] < n0 ? (const uint8_t *)a[0] + g[j] * size
                                        : (const uint8_t *)a[1] + (g[j] - n0) * size;
        memcpy(out + j * size, from, size);
    }
    return regroup_own(r, out);
}

/* An example's key: its code, or its id when code is NULL; split: of the other data set, or
 * SETS_SPLIT_COUNT when the key is in both; pos: its first position in that split. */
typedef struct {
    const char *code;
    int32_t id;
    int split;
    size_t pos;
} split_key;

/* Where an example goes: position pos of the other set's split, example i of this set's two
 * splits taken as one (examples sharing a key keep their order). */
typedef struct {
    size_t pos, i;
} split_ref;

static int ref_cmp(const void *a, const void *b)
{
    const split_ref *x = a, *y = b;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int key_cmp(const void *a, const void *b)
{
    const split_key *x = a, *y = b;
    if (x->code) return strcmp(x->code, y->code);
    return (x->id > y->id) - (x->id < y->id);
}

static void key_text(const split_key *k, char *buf, size_t n)
{
    char q[XD_EXCERPT_BUF];
    if (k->code) snprintf(buf, n, "code %s", xd_excerpt(k->code, q));
    else snprintf(buf, n, "id %ld", (long)k->id);
}

/* The keys of both splits of the data set ds, sorted; a key in both splits gets split
 * SETS_SPLIT_COUNT. */
static xd_status other_keys(const io_dataset *ds, int by_code, split_key **out, size_t *n_out,
                            xd_err *e)
{
    const io_tensor *id[SETS_SPLIT_COUNT];
    const io_strings *code[SETS_SPLIT_COUNT] = {0};
    size_t n = 0;
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s/id", sets_split_names[k]);
        xd_status s = io_dataset_require(ds, name, IO_I32, 1, &id[k], e);
        if (s) return s;
        if (by_code) {
            snprintf(name, sizeof name, "%s/code", sets_split_names[k]);
            code[k] = io_dataset_find_strings(ds, name);
            if (code[k]->n != (size_t)id[k]->shape[0])
                return xd_fail(e, XD_EFORMAT, "%s: %s has %zu codes for %lld examples",
                               io_dataset_path(ds), name, code[k]->n, (long long)id[k]->shape[0]);
        }
        n += (size_t)id[k]->shape[0];
    }
    split_key *keys = xd_xmalloc((n + 1) * sizeof *keys);
    size_t j = 0;
    for (int k = 0; k < SETS_SPLIT_COUNT; k++)
        for (size_t i = 0; i < (size_t)id[k]->shape[0]; i++, j++) {
            memcpy(&keys[j].id, (const int32_t *)id[k]->data + i, sizeof(int32_t));
            keys[j].code = by_code ? io_strings_get(code[k], i, NULL) : NULL;
            keys[j].split = k;
            keys[j].pos = i;
        }
    qsort(keys, n, sizeof *keys, key_cmp);
    /* one entry per key */
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u && key_cmp(&keys[u - 1], &keys[i]) == 0) {
            if (keys[u - 1].split != keys[i].split) keys[u - 1].split = SETS_SPLIT_COUNT;
            if (keys[i].pos < keys[u - 1].pos) keys[u - 1].pos = keys[i].pos;
            continue;
        }
        keys[u++] = keys[i];
    }
    *out = keys;
    *n_out = u;
    return XD_OK;
}

xd_status sets_split_from(const char *other, sets_split sp[SETS_SPLIT_COUNT], sets_regroup *r,
                          xd_err *e)
{
    memset(r, 0, sizeof *r);
    io_dataset *ds = NULL;
    xd_status s = io_dataset_open_verified(other, &ds, e);
    if (s) return xd_err_prefix(e, "--split-from");
    const int by_code = sp[0].code && sp[1].code && io_dataset_find_strings(ds, "train/code") &&
                        io_dataset_find_strings(ds, "test/code");
    split_key *keys = NULL;
    size_t n_keys = 0;
    s = other_keys(ds, by_code, &keys, &n_keys, e);
    const size_t n0 = sp[0].n, n = sp[0].n + sp[1].n;
    size_t *g = xd_xmalloc((n + 1) * sizeof *g), missing = 0;
    int *to = xd_xmalloc((n + 1) * sizeof *to);
    split_ref *ref = xd_xmalloc((n + 1) * sizeof *ref);
    const sets_split orig[SETS_SPLIT_COUNT] = {sp[0], sp[1]};
    char first[3][64 + XD_EXCERPT_BUF];
    for (size_t i = 0; i < n && !s; i++) {
        const sets_split *from = &sp[i < n0 ? 0 : 1];
        size_t at = i < n0 ? i : i - n0;
        split_key want = {by_code ? from->code[at] : NULL, from->id[at], 0, 0};
        const split_key *hit = bsearch(&want, keys, n_keys, sizeof *keys, key_cmp);
        char text[64 + XD_EXCERPT_BUF];
        key_text(&want, text, sizeof text);
        if (hit && hit->split == SETS_SPLIT_COUNT)
            s = xd_fail(e, XD_EARG, "--split-from %s: %s is in both its train and test splits, so "
                                    "it cannot give this example a split", other, text);
        else if (!hit && missing < 3)
            memcpy(first[missing++], text, sizeof text);
        else if (!hit)
            missing++;
        else {
            to[i] = hit->split;
            ref[i] = (split_ref){hit->pos, i};
        }
    }
    if (!s && missing)
        s = xd_fail(e, XD_EARG, "--split-from %s: %zu of this set's %zu examples are not in it "
                                "(%s%s%s%s%s%s); the split of another set needs them all",
                    other, missing, n, first[0], missing > 1 ? ", " : "", missing > 1 ? first[1] : "",
                    missing > 2 ? ", " : "", missing > 2 ? first[2] : "", missing > 3 ? ", ..." : "");
    for (int k = 0; k < SETS_SPLIT_COUNT && !s; k++) {
        /* in the other set's order, so both list a split's examples alike */
        size_t m = 0;
        split_ref *mine = xd_xmalloc((n + 1) * sizeof *mine);
        for (size_t i = 0; i < n; i++)
            if (to[i] == k) mine[m++] = ref[i];
        qsort(mine, m, sizeof *mine, ref_cmp);
        for (size_t j = 0; j < m; j++) g[j] = mine[j].i;
        free(mine);
        const sets_split *a = &orig[0], *b = &orig[1];
        sets_split x = *a;
        x.n = m;
#define GATHER(field, size) \
    ((void)(x.field = regroup_gather(r, (const void *const[]){a->field, b->field}, n0, size, g, m)))
        const size_t px = (size_t)a->h * (size_t)a->w;
        GATHER(image, px * (size_t)a->c);
        GATHER(label, sizeof(int32_t));
        GATHER(label_mask, 1);
        GATHER(id, sizeof(int32_t));
        for (int j = 0; j < SETS_EXTRA_MAX; j++)
            GATHER(extra[j], sizeof(int32_t));
        GATHER(code, sizeof(char *));
        GATHER(rationale, sizeof(char *));
        GATHER(mask, px);
        GATHER(boxes, (size_t)a->k * 5 * sizeof(int32_t));
        GATHER(items, (size_t)a->k * sizeof(int32_t));
        GATHER(n_items, 1);
#undef GATHER
        if (a->n_langs) {
            const char *const **texts = regroup_own(r, xd_xmalloc(a->n_langs * sizeof *texts));
            for (size_t l = 0; l < a->n_langs; l++)
                texts[l] = regroup_gather(r, (const void *const[]){a->texts[l], b->texts[l]}, n0,
                                          sizeof(char *), g, m);
            x.texts = (const char *const *const *)texts;
        }
        sp[k] = x;
    }
    free(ref);
    free(to);
    free(g);
    free(keys);
    io_dataset_close(ds);
    if (s) sets_regroup_free(r);
    return s;
}

xd_status sets_split_from_check(const char *other, const int32_t *id, const char *const *code,
                                size_t n, xd_err *e)
{
    sets_split sp[SETS_SPLIT_COUNT] = {{.n = n, .id = id, .code = code},
                                       {.n = 0, .id = id, .code = code}};
    sets_regroup r;
    xd_status s = sets_split_from(other, sp, &r, e);
    sets_regroup_free(&r);
    return s;
}

// ----------------------------------------------------------------------------------------------
// staged output folders


xd_status sets_outdir_open(sets_outdir *o, const char *dir, xd_err *e)
{
    memset(o, 0, sizeof *o);
    o->slot = -1;
    if (!dir || !*dir) return xd_fail(e, XD_EARG, "no output folder given (--out DIR)");
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    o->dir = xd_xmalloc(len + 1);
    memcpy(o->dir, dir, len);
    o->dir[len] = '\0';
    struct stat st;
    if (stat(o->dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        xd_status s = xd_fail(e, XD_EARG, "%s: exists and is not a folder", o->dir);
        sets_outdir_abort(o);
        return s;
    }
    char *parent = io_path_dir(o->dir);
    xd_status s = io_mkdir_p(parent, e);
    if (!s) io_temp_clean_stale(parent, NULL); /* left by killed runs */
    free(parent);
    if (s) {
        sets_outdir_abort(o);
        return s;
    }
    size_t n = len + 32;
    o->tmp = xd_xmalloc(n);
    snprintf(o->tmp, n, "%s.tmp-%ld", o->dir, (long)getpid());
    io_remove_tree(o->tmp); /* left over by a killed run that had our process id */
    o->slot = io_temp_add(o->tmp, 1);
    if (mkdir(o->tmp, 0777) != 0) {
        s = xd_fail(e, XD_EIO, "%s: cannot create folder: %s", o->tmp, strerror(errno));
        io_temp_drop(o->slot);
        free(o->tmp);
        o->tmp = NULL;
        sets_outdir_abort(o);
        return s;
    }
    return XD_OK;
}

char *sets_outdir_path(const sets_outdir *o, const char *rel)
{
    return io_path_join(o->tmp, rel);
}

/* Moves the files of src into dst (folders merged), SETS_DATASET_FILE of the top level last. */
static xd_status move_into(const char *src, const char *dst, int top, xd_err *e)
{
    if (mkdir(dst, 0777) != 0 && errno != EEXIST)
        return xd_fail(e, XD_EIO, "%s: cannot create folder: %s", dst, strerror(errno));
    struct dirent **names = NULL;
    int n = scandir(src, &names, NULL, alphasort);
    if (n < 0) return xd_fail(e, XD_EIO, "%s: cannot list folder: %s", src, strerror(errno));
    xd_status s = XD_OK;
    for (int pass = 0; pass < 2 && !s; pass++)
        for (int i = 0; i < n && !s; i++) {
            const char *nm = names[i]->d_name;
            if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) continue;
            int last = top && strcmp(nm, SETS_DATASET_FILE) == 0;
            if (last != pass) continue;
            char *from = io_path_join(src, nm), *to = io_path_join(dst, nm);
            struct stat st;
            if (lstat(from, &st) == 0 && S_ISDIR(st.st_mode))
                s = move_into(from, to, 0, e);
            else if (rename(from, to) != 0)
                s = xd_fail(e, XD_EIO, "%s: cannot move into place: %s", to, strerror(errno));
            free(from);
            free(to);
        }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return s;
}

xd_status sets_outdir_commit(sets_outdir *o, xd_err *e)
{
    struct stat st;
    xd_status s = XD_OK;
    if (stat(o->dir, &st) != 0) {
        if (rename(o->tmp, o->dir) != 0)
            s = xd_fail(e, XD_EIO, "%s: cannot move into place: %s", o->dir, strerror(errno));
    } else {
        s = move_into(o->tmp, o->dir, 1, e);
    }
    sets_outdir_abort(o);
    return s;
}

void sets_outdir_abort(sets_outdir *o)
{
    if (o->tmp) {
        io_remove_tree(o->tmp);
        io_temp_drop(o->slot);
    }
    free(o->tmp);
    free(o->dir);
    o->tmp = o->dir = NULL;
    o->slot = -1;
}

// ----------------------------------------------------------------------------------------------
// child processes

/* The last non-empty line of a log file, into buf ("" if none). */
static void log_last_line(const char *path, char *buf, size_t n)
{
    buf[0] = '\0';
    if (!path) return;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char tail[2048];
    long at = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        at = size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0;
    }
    fseek(f, at, SEEK_SET);
    size_t k = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    tail[k] = '\0';
    while (k && (tail[k - 1] == '\n' || tail[k - 1] == '\r' || tail[k - 1] == ' ')) tail[--k] = '\0';
    char *nl = strrchr(tail, '\n');
    const char *from = nl ? nl + 1 : tail;
    size_t len = strlen(from);
    if (len >= n) len = n - 1;
    memcpy(buf, from, len);
    buf[len] = '\0';
}

xd_status sets_run(char *const argv[], const char *log_path, char **out, xd_err *e)
{
    if (out) *out = NULL;
    int fds[2] = {-1, -1};
    if (out && pipe2(fds, O_CLOEXEC) != 0)
        return xd_fail(e, XD_EIO, "%s: cannot make a pipe: %s", argv[0], strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_path ? log_path : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out)
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    else
        posix_spawn_file_actions_adddup2(&fa, 2, 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (out) close(fds[1]);
    if (rc != 0) {
        if (out) close(fds[0]);
        return xd_fail(e, XD_EIO, "%s: cannot run: %s", argv[0], strerror(rc));
    }
    xd_status s = XD_OK;
    if (out) {
        size_t cap = 4096, len = 0;
        char *buf = xd_xmalloc(cap);
        for (;;) {
            if (len + 1 == cap) {
                if (cap >= ((size_t)64 << 20)) break; /* far more than any listing we read */
                cap *= 2;
                buf = xd_xrealloc(buf, cap);
            }
            ssize_t k = read(fds[0], buf + len, cap - 1 - len);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            len += (size_t)k;
        }
        buf[len] = '\0';
        close(fds[0]);
        *out = buf;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            status = -1;
            break;
        }
    if (status != 0) {
        char last[512];
        log_last_line(log_path, last, sizeof last);
        if (status != -1 && WIFEXITED(status))
            s = xd_fail(e, XD_EIO, "%s exited with status %d%s%s", argv[0], WEXITSTATUS(status),
                        last[0] ? ": " : "", last);
        else
            s = xd_fail(e, XD_EIO, "%s was stopped by a signal%s%s", argv[0], last[0] ? ": " : "",
                        last);
        if (out) {
            free(*out);
            *out = NULL;
        }
    }
    return s;
}
