/* The emoji set's sources (the set itself is made in emoji.c): the pinned npm packages fetched
 * into the cache, emoji.json read into its emoji, their skin variants, groups and subgroups, and
 * the language files of emojibase-data read into each example's text. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "io/file.h"
#include "modalities/sets/common.h"
#include "modalities/sets/emoji_internal.h"
#include "modalities/text/utf8.h"

/* Largest JSON file read (emoji.json is 1.6 MB, a language file about 1 MB). */
#define EMOJI_MAX_JSON ((size_t)256 << 20)
/* The category of skin-tone and hair modifiers: parts of other emoji, not pictures of their own. */
#define EMOJI_SKIP_CATEGORY "Component"

// ----------------------------------------------------------------------------------------------
// fetching

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *emoji_pkg_dir(const char *cache, const char *name, const char *version)
{
    char leaf[128];
    snprintf(leaf, sizeof leaf, "%s-%s", name, version);
    return io_path_join(cache, leaf);
}

static xd_status fetch_one(const char *cache, const char *name, const char *version, int *fetched,
                           xd_err *e)
{
    char *dir = emoji_pkg_dir(cache, name, version);
    if (is_dir(dir)) {
        free(dir);
        return XD_OK;
    }
    size_t n = strlen(dir) + 32;
    char *tgz = xd_xmalloc(n), *log = xd_xmalloc(n), *tmp = xd_xmalloc(n), spec[128];
    snprintf(tgz, n, "%s.tgz", dir);
    snprintf(log, n, "%s.log", dir);
    snprintf(tmp, n, "%s.tmp-%ld", dir, (long)getpid());
    snprintf(spec, sizeof spec, "%s@%s", name, version);
    char *pack[] = {"npm", "pack", spec, "--pack-destination", (char *)cache, NULL};
    char *untar[] = {"tar", "-xzf", tgz, "-C", tmp, "--strip-components=1", NULL};
    xd_status s = io_mkdir_p(cache, e);
    if (!s) io_temp_clean_stale(cache, NULL); /* unpacking folders of killed runs */
    if (!s) s = sets_run(pack, log, NULL, e);
    if (!s) {
        struct stat st;
        if (stat(tgz, &st) != 0)
            s = xd_fail(e, XD_EIO, "npm pack did not leave %s", tgz);
    }
    int slot = -1;
    if (!s) {
        io_remove_tree(tmp);
        slot = io_temp_add(tmp, 1);
        if (mkdir(tmp, 0777) != 0) s = xd_fail(e, XD_EIO, "cannot create %s: %s", tmp, strerror(errno));
    }
    if (!s) s = sets_run(untar, log, NULL, e);
    if (!s && rename(tmp, dir) != 0)
        s = xd_fail(e, XD_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    if (s) io_remove_tree(tmp);
    io_temp_drop(slot);
    if (s) {
        xd_err_prefix(e, "%s: cannot fetch %s (log in %s)", dir, spec, log);
    } else {
        remove(tgz);
        remove(log);
        if (fetched) (*fetched)++;
    }
    free(tgz);
    free(log);
    free(tmp);
    free(dir);
    return s;
}

void emoji_style_pkg(sets_emoji_style st, char *pkg, size_t n)
{
    snprintf(pkg, n, SETS_EMOJI_IMAGES_PREFIX "%s", sets_emoji_style_names[st]);
}

xd_status sets_emoji_fetch(const char *cache, const char *styles, int *fetched, xd_err *e)
{
    cache = sets_cache_dir(cache);
    if (fetched) *fetched = 0;
    emo_styles st;
    xd_status s = emoji_parse_styles(styles, &st, e);
    for (size_t i = 0; i < st.n && !s; i++) {
        char pkg[64];
        emoji_style_pkg(st.id[i], pkg, sizeof pkg);
        s = fetch_one(cache, pkg, SETS_EMOJI_IMAGES_VERSION, fetched, e);
    }
    if (!s) s = fetch_one(cache, SETS_EMOJI_TEXTS_PKG, SETS_EMOJI_TEXTS_VERSION, fetched, e);
    return s;
}

// ----------------------------------------------------------------------------------------------
// JSON

/* Reads, checks the UTF-8 of and parses a JSON file; errors name the line and column. */
static xd_status json_read(const char *path, json_t **out, xd_err *e)
{
    *out = NULL;
    void *buf;
    size_t n;
    xd_status s = io_read_all(path, EMOJI_MAX_JSON, &buf, &n, e);
    if (s) return s;
    s = txt_utf8_check_lines(buf, n, path, e);
    if (!s) {
        json_error_t je;
        *out = json_loadb(buf, n, 0, &je);
        if (!*out)
            s = xd_fail(e, XD_EFORMAT, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column,
                        je.text);
    }
    free(buf);
    return s;
}

/* A string member; NULL (and *bad set) when present but not a string. */
static const char *json_str(json_t *obj, const char *key, int *bad)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

// ----------------------------------------------------------------------------------------------
// emoji.json

static int name_index(name_list *l, const char *name, long long sort)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0) {
            if (sort < l->first[i]) l->first[i] = sort;
            return (int)i;
        }
    l->names = xd_xrealloc(l->names, (l->n + 1) * sizeof *l->names);
    l->first = xd_xrealloc(l->first, (l->n + 1) * sizeof *l->first);
    l->names[l->n] = xd_xstrdup(name);
    l->first[l->n] = sort;
    return (int)l->n++;
}

static void name_list_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->first);
    memset(l, 0, sizeof *l);
}

/* Orders the names by their first sort_order (the Unicode order of groups) and renumbers. */
static void name_list_order(name_list *l, int *remap)
{
    size_t *ord = xd_xmalloc((l->n + 1) * sizeof *ord);
    for (size_t i = 0; i < l->n; i++) ord[i] = i;
    for (size_t i = 1; i < l->n; i++) /* insertion sort: at most ~100 names */
        for (size_t j = i; j > 0 && l->first[ord[j]] < l->first[ord[j - 1]]; j--) {
            size_t t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    char **names = xd_xmalloc((l->n + 1) * sizeof *names);
    long long *first = xd_xmalloc((l->n + 1) * sizeof *first);
    for (size_t r = 0; r < l->n; r++) {
        names[r] = l->names[ord[r]];
        first[r] = l->first[ord[r]];
        remap[ord[r]] = (int)r;
    }
    free(l->names);
    free(l->first);
    l->names = names;
    l->first = first;
    free(ord);
}

void emoji_images_free(emo_images *m)
{
    for (size_t i = 0; i < m->n_base; i++) free(m->base[i].var);
    free(m->base);
    name_list_free(&m->cats);
    name_list_free(&m->subs);
    if (m->root) json_decref(m->root);
    memset(m, 0, sizeof *m);
}

/* A plain file name: letters, digits, '-', '_', '.', not starting with '.', ending in .png. */
static int plain_png_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 5 || n > 255 || s[0] == '.' || strcmp(s + n - 4, ".png") != 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return 0;
    return 1;
}

static xd_status parse_var(const char *path, size_t i, json_t *obj, emo_var *v, xd_err *e)
{
    int bad = 0;
    if (!json_is_object(obj)) return xd_fail(e, XD_EFORMAT, "%s: entry %zu: not an object", path, i);
    v->unified = json_str(obj, "unified", &bad);
    v->image = json_str(obj, "image", &bad);
    if (!v->unified || !v->image)
        return xd_fail(e, XD_EFORMAT, "%s: entry %zu: needs the strings 'unified' and 'image'", path,
                       i);
    if (sets_emoji_key(v->unified, v->key, sizeof v->key) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: entry %zu: '%s' is not a list of code points", path, i,
                       v->unified);
    if (!plain_png_name(v->image))
        return xd_fail(e, XD_EFORMAT, "%s: entry %zu (%s): image '%s' is not a plain .png file name",
                       path, i, v->unified, v->image);
    for (int k = 0; k < SETS_EMOJI_STYLE_COUNT; k++) {
        char key[32];
        snprintf(key, sizeof key, "has_img_%s", sets_emoji_style_names[k]);
        json_t *h = json_object_get(obj, key);
        if (h && !json_is_boolean(h))
            return xd_fail(e, XD_EFORMAT, "%s: entry %zu (%s): '%s' must be true or false", path,
                           i, v->unified, key);
        v->has[k] = !json_is_false(h);
    }
    return XD_OK;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_base(const void *a, const void *b)
{
    const emo_base *x = a, *y = b;
    if (x->sort != y->sort) return x->sort < y->sort ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_var_key(const void *a, const void *b)
{
    return strcmp((*(const emo_var *const *)a)->key, (*(const emo_var *const *)b)->key);
}

/* One code listed twice (as two emoji, or as an emoji and a skin variant) would be two examples
 * with one code, which the split by emoji can put in both train and test. */
static xd_status check_unique_codes(const char *path, const emo_images *m, xd_err *e)
{
    const emo_var **all = xd_xmalloc((m->n_examples + 1) * sizeof *all);
    size_t n = 0;
    for (size_t i = 0; i < m->n_base; i++)
        for (size_t j = 0; j < m->base[i].n_var; j++) all[n++] = &m->base[i].var[j];
    qsort(all, n, sizeof *all, cmp_var_key);
    xd_status s = XD_OK;
    for (size_t i = 1; i < n && !s; i++)
        if (strcmp(all[i - 1]->key, all[i]->key) == 0)
            s = xd_fail(e, XD_EFORMAT, "%s: emoji %s is listed twice ('%s' and '%s')", path,
                        all[i]->key, all[i - 1]->unified, all[i]->unified);
    free(all);
    return s;
}

xd_status emoji_parse_json(const char *path, emo_images *m, xd_err *e)
{
    memset(m, 0, sizeof *m);
    xd_status s = json_read(path, &m->root, e);
    if (s) return s;
    if (!json_is_array(m->root)) {
        emoji_images_free(m);
        return xd_fail(e, XD_EFORMAT, "%s: expected a JSON array of emoji", path);
    }
    size_t n = json_array_size(m->root);
    if (n > INT32_MAX) n = INT32_MAX;
    m->base = xd_xcalloc(n + 1, sizeof *m->base);
    for (size_t i = 0; i < n && !s; i++) {
        json_t *obj = json_array_get(m->root, i);
        int bad = 0;
        const char *cat = json_is_object(obj) ? json_str(obj, "category", &bad) : NULL;
        const char *sub = json_is_object(obj) ? json_str(obj, "subcategory", &bad) : NULL;
        if (!cat || !sub) {
            s = xd_fail(e, XD_EFORMAT, "%s: entry %zu: needs the strings 'category' and "
                        "'subcategory'", path, i);
            break;
        }
        if (strcmp(cat, EMOJI_SKIP_CATEGORY) == 0) continue;
        emo_base *b = &m->base[m->n_base];
        b->id = (int32_t)i;
        b->sort = (long long)i;
        json_t *so = json_object_get(obj, "sort_order");
        if (json_is_integer(so)) b->sort = json_integer_value(so);
        json_t *skins = json_object_get(obj, "skin_variations");
        if (skins && !json_is_object(skins)) {
            s = xd_fail(e, XD_EFORMAT, "%s: entry %zu: 'skin_variations' must be an object", path, i);
            break;
        }
        size_t n_skin = skins ? json_object_size(skins) : 0;
        b->var = xd_xcalloc(n_skin + 1, sizeof *b->var);
        m->n_base++;
        s = parse_var(path, i, obj, &b->var[0], e);
        b->n_var = 1;
        if (!s && n_skin) {
            /* skin keys in sorted order ("1F3FB" ... "1F3FF-1F3FE"), whatever the object's order */
            const char **keys = xd_xmalloc(n_skin * sizeof *keys);
            const char *k;
            json_t *v;
            size_t j = 0;
            json_object_foreach(skins, k, v) keys[j++] = k;
            qsort(keys, n_skin, sizeof *keys, cmp_cstr);
            for (j = 0; j < n_skin && !s; j++) {
                s = parse_var(path, i, json_object_get(skins, keys[j]), &b->var[b->n_var], e);
                if (!s) b->n_var++;
            }
            free(keys);
        }
        if (!s) {
            b->cat = name_index(&m->cats, cat, b->sort);
            b->sub = name_index(&m->subs, sub, b->sort);
            m->n_examples += b->n_var;
        }
    }
    if (!s && m->n_base == 0) s = xd_fail(e, XD_EFORMAT, "%s: no emoji outside '%s'", path,
                                          EMOJI_SKIP_CATEGORY);
    if (!s) s = check_unique_codes(path, m, e);
    if (s) {
        emoji_images_free(m);
        return s;
    }
    int *rc = xd_xmalloc((m->cats.n + 1) * sizeof *rc), *rs = xd_xmalloc((m->subs.n + 1) * sizeof *rs);
    name_list_order(&m->cats, rc);
    name_list_order(&m->subs, rs);
    for (size_t i = 0; i < m->n_base; i++) {
        m->base[i].cat = rc[m->base[i].cat];
        m->base[i].sub = rs[m->base[i].sub];
    }
    free(rc);
    free(rs);
    qsort(m->base, m->n_base, sizeof *m->base, cmp_base);
    return XD_OK;
}

// ----------------------------------------------------------------------------------------------
// languages

/* The languages present: sub-folders of the text package that hold a data.json, sorted. */
static xd_status list_languages(const char *tdir, char ***out, size_t *n_out, xd_err *e)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(tdir);
    if (!d) return xd_fail(e, XD_EIO, "%s: cannot open folder: %s", tdir, strerror(errno));
    char **v = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (nm[0] == '.' || len > EMOJI_LANG_MAX) continue;
        int ok = 1;
        for (size_t i = 0; i < len; i++)
            if (!isalnum((unsigned char)nm[i]) && nm[i] != '-' && nm[i] != '_') ok = 0;
        if (!ok) continue;
        char *sub = io_path_join(tdir, nm), *file = io_path_join(sub, "data.json");
        struct stat st;
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            v = xd_xrealloc(v, (n + 1) * sizeof *v);
            v[n++] = xd_xstrdup(nm);
        }
        free(sub);
        free(file);
    }
    closedir(d);
    if (n == 0) return xd_fail(e, XD_EFORMAT, "%s: no <language>/data.json inside", tdir);
    qsort(v, n, sizeof *v, cmp_cstr);
    *out = v;
    *n_out = n;
    return XD_OK;
}

xd_status emoji_choose_languages(const char *tdir, const char *want, char ***out, size_t *n_out,
                           xd_err *e)
{
    char **have;
    size_t n_have;
    xd_status s = list_languages(tdir, &have, &n_have, e);
    if (s) return s;
    if (!want || !*want) {
        *out = have;
        *n_out = n_have;
        return XD_OK;
    }
    char **v = NULL;
    size_t n = 0;
    for (const char *p = want; !s;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        size_t k = 0;
        while (k < n_have && (strlen(have[k]) != len || strncmp(have[k], p, len) != 0)) k++;
        if (k == n_have) {
            char list[1024] = "";
            for (size_t i = 0, at = 0; i < n_have && at + 24 < sizeof list; i++)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? "," : "", have[i]);
            s = xd_fail(e, XD_EARG, "%s: no language '%.*s' (present: %s)", tdir, (int)len, p, list);
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i], have[k]) == 0)
                s = xd_fail(e, XD_EARG, "language '%s' is asked for twice", have[k]);
        if (s) break;
        v = xd_xrealloc(v, (n + 1) * sizeof *v);
        v[n++] = xd_xstrdup(have[k]);
        if (!c) break;
        p = c + 1;
    }
    for (size_t i = 0; i < n_have; i++) free(have[i]);
    free(have);
    if (s) {
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        return s;
    }
    *out = v;
    *n_out = n;
    return XD_OK;
}

typedef struct {
    char key[EMOJI_KEY_MAX];
    const char *label;
    json_t *tags;        /* array or NULL */
    json_t *parent_tags; /* a skin's base tags, used when the skin has none */
    size_t order;        /* position in the file, for ties */
} txt_entry;

static int cmp_entry(const void *a, const void *b)
{
    const txt_entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static const txt_entry *find_entry(const txt_entry *t, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) { /* first entry with key >= key, so duplicates resolve to the first one */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && strcmp(t[lo].key, key) == 0 ? &t[lo] : NULL;
}

static xd_status add_entry(const char *path, size_t i, json_t *obj, json_t *parent_tags,
                           txt_entry *t, size_t *n, xd_err *e)
{
    if (!json_is_object(obj)) return xd_fail(e, XD_EFORMAT, "%s: entry %zu: not an object", path, i);
    int bad = 0;
    const char *hex = json_str(obj, "hexcode", &bad);
    const char *label = json_str(obj, "label", &bad);
    json_t *tags = json_object_get(obj, "tags");
    if (!hex || bad)
        return xd_fail(e, XD_EFORMAT, "%s: entry %zu: needs a string 'hexcode' (and 'label' must "
                       "be a string)", path, i);
    if (tags && !json_is_array(tags))
        return xd_fail(e, XD_EFORMAT, "%s: entry %zu (%s): 'tags' must be an array", path, i, hex);
    for (size_t k = 0; tags && k < json_array_size(tags); k++)
        if (!json_is_string(json_array_get(tags, k)))
            return xd_fail(e, XD_EFORMAT, "%s: entry %zu (%s): tag %zu is not a string", path, i,
                           hex, k);
    txt_entry *en = &t[*n];
    if (sets_emoji_key(hex, en->key, sizeof en->key) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: entry %zu: hexcode '%s' is not a list of code points",
                       path, i, hex);
    en->label = label;
    en->tags = tags && json_array_size(tags) ? tags : NULL;
    en->parent_tags = parent_tags;
    en->order = *n;
    (*n)++;
    return XD_OK;
}

static char *entry_text(const txt_entry *en)
{
    json_t *tags = en->tags ? en->tags : en->parent_tags;
    size_t nt = tags ? json_array_size(tags) : 0;
    const char **tv = xd_xmalloc((nt + 1) * sizeof *tv);
    for (size_t k = 0; k < nt; k++) tv[k] = json_string_value(json_array_get(tags, k));
    char *s = sets_emoji_text(en->label, tv, nt);
    free(tv);
    return s;
}

xd_status emoji_language_texts(const char *path, const emo_images *m, char **texts, xd_err *e)
{
    json_t *root;
    xd_status s = json_read(path, &root, e);
    if (s) return s;
    if (!json_is_array(root)) {
        json_decref(root);
        return xd_fail(e, XD_EFORMAT, "%s: expected a JSON array of emoji", path);
    }
    size_t n = json_array_size(root), cap = n + 1, nt = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *sk = json_object_get(json_array_get(root, i), "skins");
        if (json_is_array(sk)) cap += json_array_size(sk);
    }
    txt_entry *t = xd_xmalloc(cap * sizeof *t);
    for (size_t i = 0; i < n && !s; i++) {
        json_t *obj = json_array_get(root, i);
        s = add_entry(path, i, obj, NULL, t, &nt, e);
        if (s) break;
        json_t *sk = json_object_get(obj, "skins");
        if (sk && !json_is_array(sk)) {
            s = xd_fail(e, XD_EFORMAT, "%s: entry %zu: 'skins' must be an array", path, i);
            break;
        }
        json_t *base_tags = t[nt - 1].tags;
        for (size_t k = 0; sk && k < json_array_size(sk) && !s; k++)
            s = add_entry(path, i, json_array_get(sk, k), base_tags, t, &nt, e);
    }
    if (!s) {
        qsort(t, nt, sizeof *t, cmp_entry);
        size_t x = 0;
        for (size_t b = 0; b < m->n_base && !s; b++) {
            const emo_base *eb = &m->base[b];
            for (size_t v = 0; v < eb->n_var; v++, x++) {
                const txt_entry *en = find_entry(t, nt, eb->var[v].key);
                if (!en && v > 0) en = find_entry(t, nt, eb->var[0].key); /* the base's text */
                texts[x] = en ? entry_text(en) : xd_xstrdup("");
                char where[EMOJI_KEY_MAX + 256];
                snprintf(where, sizeof where, "%s: emoji %s", path, eb->var[v].unified);
                if (!s) s = txt_utf8_check(texts[x], strlen(texts[x]), where, e);
            }
        }
    }
    free(t);
    json_decref(root);
    return s;
}
