/* The emoji image-text set: emoji images (Google's by default, or other renderings) paired with
 * their names and keywords in up to 28 languages, labelled by category (group) and subcategory.
 *
 * Sources (versions pinned in sets.h): emoji-datasource-STYLE (emoji.json: unified code points,
 * image file, category, subcategory, sort_order, skin_variations, has_img_STYLE; one 64x64 PNG per
 * image in img/STYLE/64) and emojibase-data (<lang>/data.json: hexcode, label, tags, skins with
 * their own hexcode and label). The two are joined by code points with FE0F left out
 * (sets_emoji_key). Every skin-tone variant is an example of its own; all variants of an emoji go
 * to the same split, chosen per emoji by a seeded shuffle stratified by group.
 *
 * Styles: every package of the family ships the same emoji.json (the first style's is read), and
 * the split is drawn over every emoji in it, whatever has an image, so an emoji is held out in
 * every style or in none. An image a style lacks (has_img_STYLE false) is left out and counted.
 * With several styles, each (emoji, style) is an example with the emoji's texts and labels, in the
 * order emoji, style, variant, and label.style says which rendering it is.
 *
 * Speed: the language files are parsed in parallel (one per thread) and the PNGs decoded and
 * resized in parallel; every parallel step records its errors per item, and the first item's
 * error is the one returned, so the message does not depend on the thread count. */
#include <assert.h>
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
#include "io/png.h"
#include "modalities/image/resize.h"
#include "modalities/sets/common.h"
#include "modalities/text/utf8.h"

/* Largest JSON file read (emoji.json is 1.6 MB, a language file about 1 MB). */
#define EMOJI_MAX_JSON ((size_t)256 << 20)
/* Longest code-point key: sequences have at most ~10 code points of up to 6 hex digits. */
#define EMOJI_KEY_MAX 128
/* what the rationale option records: how S/rationale is made */
#define EMOJI_RATIONALE "subgroup; en keywords"
#define EMOJI_LANG_MAX 16
#define EMOJI_MAX_SIZE 1024
/* The category of skin-tone and hair modifiers: parts of other emoji, not pictures of their own. */
#define EMOJI_SKIP_CATEGORY "Component"

const char *const sets_emoji_style_names[] = {"google", "apple", "facebook", "twitter"};
static_assert(sizeof sets_emoji_style_names / sizeof sets_emoji_style_names[0] ==
                  SETS_EMOJI_STYLE_COUNT,
              "sets_emoji_style_names must name every style");

/* Styles in the order a comma-separated list gives them. */
typedef struct {
    size_t n;
    sets_emoji_style id[SETS_EMOJI_STYLE_COUNT];
} emo_styles;

/* list NULL or "": google alone. Unknown or repeated names are XD_EARG. */
static xd_status parse_styles(const char *list, emo_styles *st, xd_err *e)
{
    st->n = 0;
    if (!list || !*list) list = sets_emoji_style_names[SETS_EMOJI_GOOGLE];
    for (const char *p = list;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        int k = 0;
        while (k < SETS_EMOJI_STYLE_COUNT && (strlen(sets_emoji_style_names[k]) != len ||
                                              strncmp(sets_emoji_style_names[k], p, len) != 0))
            k++;
        if (k == SETS_EMOJI_STYLE_COUNT) {
            char known[128] = "";
            for (int i = 0, at = 0; i < SETS_EMOJI_STYLE_COUNT; i++)
                at += snprintf(known + at, sizeof known - (size_t)at, "%s%s", i ? ", " : "",
                               sets_emoji_style_names[i]);
            return xd_fail(e, XD_EARG, "unknown emoji style '%.*s' (known: %s)", (int)len, p,
                           known);
        }
        for (size_t i = 0; i < st->n; i++)
            if (st->id[i] == (sets_emoji_style)k)
                return xd_fail(e, XD_EARG, "emoji style '%s' is asked for twice",
                               sets_emoji_style_names[k]);
        st->id[st->n++] = (sets_emoji_style)k;
        if (!c) return XD_OK;
        p = c + 1;
    }
}

sets_emoji_opts sets_emoji_defaults(void)
{
    return (sets_emoji_opts){.size = 32, .test_fraction = 0.2, .seed = 1};
}

int sets_emoji_key(const char *hex, char *key, size_t n)
{
    size_t k = 0;
    const char *p = hex;
    if (!p || !*p) return -1;
    for (;;) {
        const char *q = p;
        while (isxdigit((unsigned char)*q)) q++;
        size_t len = (size_t)(q - p);
        if (len < 1 || len > 6 || (*q && *q != '-')) return -1;
        int fe0f = len == 4 && strncasecmp(p, "FE0F", 4) == 0;
        if (!fe0f) {
            if (k + len + 2 > n) return -1;
            if (k) key[k++] = '-';
            for (size_t i = 0; i < len; i++) key[k++] = (char)toupper((unsigned char)p[i]);
        }
        if (!*q) break;
        p = q + 1;
    }
    if (k == 0) return -1; /* FE0F alone */
    key[k] = '\0';
    return 0;
}

char *sets_emoji_text(const char *label, const char *const *tags, size_t n_tags)
{
    if (!label || !*label) return xd_xstrdup("");
    size_t len = strlen(label) + 1;
    for (size_t i = 0; i < n_tags; i++) len += strlen(tags[i]) + 2;
    char *s = xd_xmalloc(len + 2), *p = s;
    p = stpcpy(p, label);
    for (size_t i = 0; i < n_tags; i++) {
        p = stpcpy(p, i ? ", " : "; ");
        p = stpcpy(p, tags[i]);
    }
    return s;
}

// ----------------------------------------------------------------------------------------------
// fetching

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *pkg_dir(const char *cache, const char *name, const char *version)
{
    char leaf[128];
    snprintf(leaf, sizeof leaf, "%s-%s", name, version);
    return io_path_join(cache, leaf);
}

static xd_status fetch_one(const char *cache, const char *name, const char *version, int *fetched,
                           xd_err *e)
{
    char *dir = pkg_dir(cache, name, version);
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

/* The image package of a style: "emoji-datasource-NAME" into pkg. */
static void style_pkg(sets_emoji_style st, char *pkg, size_t n)
{
    snprintf(pkg, n, SETS_EMOJI_IMAGES_PREFIX "%s", sets_emoji_style_names[st]);
}

xd_status sets_emoji_fetch(const char *cache, const char *styles, int *fetched, xd_err *e)
{
    cache = sets_cache_dir(cache);
    if (fetched) *fetched = 0;
    emo_styles st;
    xd_status s = parse_styles(styles, &st, e);
    for (size_t i = 0; i < st.n && !s; i++) {
        char pkg[64];
        style_pkg(st.id[i], pkg, sizeof pkg);
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

typedef struct {
    char key[EMOJI_KEY_MAX];
    const char *unified; /* as written in emoji.json */
    const char *image;
    uint8_t has[SETS_EMOJI_STYLE_COUNT]; /* has_img_STYLE: absent counts as true */
} emo_var;

typedef struct {
    int32_t id;   /* index in emoji.json */
    long long sort;
    int cat, sub; /* indices into the name lists (sorted by first appearance at the end) */
    size_t n_var; /* the base image, then its skin variants in key order */
    emo_var *var;
} emo_base;

typedef struct {
    size_t n;
    char **names;
    long long *first; /* smallest sort_order of a member */
} name_list;

typedef struct {
    json_t *root; /* owns the strings the bases point to */
    emo_base *base;
    size_t n_base, n_examples; /* examples of one style that has every image */
    name_list cats, subs;
} emo_images;

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

static void emo_images_free(emo_images *m)
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

static xd_status parse_emoji_json(const char *path, emo_images *m, xd_err *e)
{
    memset(m, 0, sizeof *m);
    xd_status s = json_read(path, &m->root, e);
    if (s) return s;
    if (!json_is_array(m->root)) {
        emo_images_free(m);
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
    if (s) {
        emo_images_free(m);
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

/* The languages to use: every present one, or the comma-separated choice (in its order). */
static xd_status choose_languages(const char *tdir, const char *want, char ***out, size_t *n_out,
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

/* texts[x] for every example x of m (in example order) in one language. */
static xd_status language_texts(const char *path, const emo_images *m, char **texts, xd_err *e)
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

// ----------------------------------------------------------------------------------------------
// the set

typedef struct {
    size_t n_langs;
    char **langs;
    char ***texts;   /* (n_langs)(n_examples) */
    uint8_t *pixels; /* (n_styles, n_examples, size, size, 3); images a style lacks are unset */
} emo_data;

static void emo_data_free(emo_data *d, size_t n_examples)
{
    for (size_t l = 0; l < d->n_langs; l++) {
        if (d->texts && d->texts[l])
            for (size_t x = 0; x < n_examples; x++) free(d->texts[l][x]);
        if (d->texts) free(d->texts[l]);
        free(d->langs[l]);
    }
    free(d->texts);
    free(d->langs);
    free(d->pixels);
    memset(d, 0, sizeof *d);
}

static xd_status load_texts(const char *tdir, const char *want, const emo_images *m, emo_data *d,
                            xd_err *e)
{
    xd_status s = choose_languages(tdir, want, &d->langs, &d->n_langs, e);
    if (s) return s;
    d->texts = xd_xcalloc(d->n_langs, sizeof *d->texts);
    xd_status *st = xd_xcalloc(d->n_langs, sizeof *st);
    xd_err *errs = xd_xcalloc(d->n_langs, sizeof *errs);
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t l = 0; l < d->n_langs; l++) {
        char *sub = io_path_join(tdir, d->langs[l]), *path = io_path_join(sub, "data.json");
        d->texts[l] = xd_xcalloc(m->n_examples + 1, sizeof **d->texts);
        st[l] = language_texts(path, m, d->texts[l], &errs[l]);
        free(sub);
        free(path);
    }
    for (size_t l = 0; l < d->n_langs && !s; l++)
        if (st[l]) {
            s = st[l];
            *e = errs[l];
        }
    free(st);
    free(errs);
    return s;
}

/* The images of style number k of st into d->pixels (allocated for every style when k is 0). */
static xd_status load_images(const char *cache, const emo_styles *st, size_t k,
                             const emo_images *m, int size, emo_data *d, xd_err *e)
{
    size_t px = (size_t)size * (size_t)size * 3;
    if (k == 0) d->pixels = xd_try_alloc(st->n * m->n_examples * px + 1);
    if (!d->pixels) return xd_fail(e, XD_ENOMEM, "no memory for %zu images", st->n * m->n_examples);
    sets_emoji_style style = st->id[k];
    char pkg[64], sub[64];
    style_pkg(style, pkg, sizeof pkg);
    snprintf(sub, sizeof sub, "img/%s/64", sets_emoji_style_names[style]);
    char *root = pkg_dir(cache, pkg, SETS_EMOJI_IMAGES_VERSION), *idir = io_path_join(root, sub);
    uint8_t *pixels = d->pixels + k * m->n_examples * px;
    const emo_var **vars = xd_xmalloc((m->n_examples + 1) * sizeof *vars);
    for (size_t b = 0, x = 0; b < m->n_base; b++)
        for (size_t v = 0; v < m->base[b].n_var; v++) vars[x++] = &m->base[b].var[v];
    size_t first_bad = m->n_examples;
    xd_err bad_err;
    xd_err_clear(&bad_err);
    io_image_opts opt = {.channels = 3, .bg = {255, 255, 255}, .max_pixels = (size_t)1 << 22,
                         .max_dim = 2048};
#pragma omp parallel for schedule(dynamic, 8)
    for (size_t x = 0; x < m->n_examples; x++) {
        if (!vars[x]->has[style]) continue;
        xd_err err;
        io_image img = {0};
        char *path = io_path_join(idir, vars[x]->image);
        xd_status s = io_png_read(path, &opt, &img, &err);
        if (!s && img.w == size && img.h == size)
            memcpy(pixels + x * px, img.px, px);
        else if (!s)
            s = img_resize_u8(img.px, img.h, img.w, 3, pixels + x * px, size, size, &err);
        if (s) {
            xd_err_prefix(&err, "emoji %s", vars[x]->unified);
#pragma omp critical(emoji_first_error)
            if (x < first_bad) {
                first_bad = x;
                bad_err = err;
            }
        }
        io_image_free(&img);
        free(path);
    }
    free(vars);
    free(idir);
    free(root);
    if (first_bad < m->n_examples) {
        *e = bad_err;
        return bad_err.code ? bad_err.code : XD_EFORMAT;
    }
    return XD_OK;
}

/* The options a data set records as metadata pairs: the image packages (written as source.images,
 * ahead of source.texts), size, test fraction, languages, and with several styles the labelled
 * ones. A one-style set records what it always did. */
typedef struct {
    char images[SETS_EMOJI_STYLE_COUNT * 64], size[16], frac[32], langs[EMOJI_LANG_MAX * 64 + 64];
    char labelled[SETS_EMOJI_STYLE_COUNT * 16];
    io_kv kv[7];
    size_t n_kv;
} emo_options;

static void emoji_options(const sets_emoji_opts *o, const emo_styles *st, const uint8_t *labelled,
                          const emo_data *d, emo_options *p)
{
    p->images[0] = p->labelled[0] = '\0';
    for (size_t k = 0, at = 0, al = 0; k < st->n; k++) {
        char pkg[64];
        style_pkg(st->id[k], pkg, sizeof pkg);
        at += (size_t)snprintf(p->images + at, sizeof p->images - at, "%s%s@%s", k ? "," : "", pkg,
                               SETS_EMOJI_IMAGES_VERSION);
        if (labelled[k])
            al += (size_t)snprintf(p->labelled + al, sizeof p->labelled - al, "%s%s",
                                   al ? "," : "", sets_emoji_style_names[st->id[k]]);
    }
    snprintf(p->size, sizeof p->size, "%d", o->size);
    snprintf(p->frac, sizeof p->frac, "%g", o->test_fraction);
    p->langs[0] = '\0';
    for (size_t l = 0, at = 0; l < d->n_langs && at + EMOJI_LANG_MAX + 2 < sizeof p->langs; l++)
        at += (size_t)snprintf(p->langs + at, sizeof p->langs - at, "%s%s", l ? "," : "",
                               d->langs[l]);
    p->kv[0] = (io_kv){"source.images", p->images};
    p->kv[1] = (io_kv){"size", p->size};
    p->kv[2] = (io_kv){"test_fraction", p->frac};
    p->kv[3] = (io_kv){"languages", p->langs};
    p->n_kv = 4;
    if (st->n > 1) p->kv[p->n_kv++] = (io_kv){"labelled_styles", p->labelled};
    if (o->split_from) p->kv[p->n_kv++] = (io_kv){"split_from", o->split_from};
    if (o->rationales) p->kv[p->n_kv++] = (io_kv){"rationale", EMOJI_RATIONALE};
}

/* An emoji's rationale for its group: its subgroup's name, then its English CLDR keywords (the
 * part of the English text after "label; ", or the label when it has none), the name first so
 * that a rationale cut to a length limit keeps it. A new string. */
static char *emoji_rationale(const char *en, const char *subgroup)
{
    const char *tags = strstr(en, "; ");
    const char *kw = tags ? tags + 2 : en;
    char *r = xd_xmalloc(strlen(kw) + strlen(subgroup) + 3);
    sprintf(r, "%s%s%s", subgroup, *kw ? "; " : "", kw);
    return r;
}

typedef struct {
    const emo_options *opt;
    const emo_styles *st;
    const emo_images *m;
    const emo_data *d;
} emo_meta_ctx;

static xd_status emoji_meta(io_dataset_writer *w, const void *ctx, xd_err *e)
{
    const emo_meta_ctx *c = ctx;
    xd_status s = io_dataset_set_meta(w, c->opt->kv[0].key, c->opt->kv[0].value, e);
    if (!s) s = io_dataset_set_meta(w, "source.texts",
                                    SETS_EMOJI_TEXTS_PKG "@" SETS_EMOJI_TEXTS_VERSION, e);
    if (!s) s = sets_write_meta_kv(w, c->opt->kv + 1, c->opt->n_kv - 1, e);
    if (!s) s = io_dataset_set_meta(w, "text_format", "label; tag, tag, ...", e);
    if (!s) s = io_dataset_add_strings(w, "languages", (const char *const *)c->d->langs,
                                       c->d->n_langs, e);
    if (!s) s = io_dataset_add_strings(w, "classes.subgroup", (const char *const *)c->m->subs.names,
                                       c->m->subs.n, e);
    if (!s && c->st->n > 1) {
        const char *names[SETS_EMOJI_STYLE_COUNT];
        for (size_t k = 0; k < c->st->n; k++) names[k] = sets_emoji_style_names[c->st->id[k]];
        s = io_dataset_add_strings(w, "classes.style", names, c->st->n, e);
    }
    return s;
}

/* One split's arrays, gathered from the example order. */
typedef struct {
    uint8_t *image, *mask;
    int32_t *label, *sub, *style, *id;
    const char **code;
    const char ***texts;
    char **rationale; /* (n) with --rationales, else NULL */
} emo_split;

static void emo_split_free(emo_split *p, size_t n_langs)
{
    free(p->image);
    free(p->mask);
    free(p->label);
    free(p->sub);
    free(p->style);
    free(p->id);
    free(p->code);
    for (size_t i = 0; p->rationale && p->rationale[i]; i++) free(p->rationale[i]);
    free(p->rationale);
    if (p->texts)
        for (size_t l = 0; l < n_langs; l++) free(p->texts[l]);
    free(p->texts);
}

/* Checks the options; st gets the styles, labelled[k] whether st's k-th keeps its train labels. */
static xd_status emoji_check(const sets_emoji_opts *o, emo_styles *st, uint8_t *labelled,
                             xd_err *e)
{
    if (o->size < 1 || o->size > EMOJI_MAX_SIZE)
        return xd_fail(e, XD_EARG, "size %d is not in 1..%d", o->size, EMOJI_MAX_SIZE);
    if (!(o->test_fraction >= 0.0 && o->test_fraction <= 1.0))
        return xd_fail(e, XD_EARG, "test fraction %g is not in 0..1", o->test_fraction);
    xd_status s = parse_styles(o->styles, st, e);
    emo_styles lab;
    for (size_t k = 0; k < st->n; k++) labelled[k] = 1;
    if (s || !o->labelled_styles || !*o->labelled_styles) return s;
    if ((s = parse_styles(o->labelled_styles, &lab, e)) != XD_OK) return s;
    for (size_t k = 0; k < st->n; k++) labelled[k] = 0;
    for (size_t i = 0; i < lab.n; i++) {
        size_t k = 0;
        while (k < st->n && st->id[k] != lab.id[i]) k++;
        if (k == st->n)
            return xd_fail(e, XD_EARG, "labelled style '%s' is not one of the styles made",
                           sets_emoji_style_names[lab.id[i]]);
        labelled[k] = 1;
    }
    return XD_OK;
}

xd_status sets_emoji(const sets_emoji_opts *o, sets_summary *sum, xd_err *e)
{
    memset(sum, 0, sizeof *sum);
    emo_styles st;
    uint8_t labelled[SETS_EMOJI_STYLE_COUNT];
    xd_status s = emoji_check(o, &st, labelled, e);
    if (s) return s;
    double t0 = sets_now();
    const char *cache = sets_cache_dir(o->cache);
    char pkg[64];
    style_pkg(st.id[0], pkg, sizeof pkg);
    char *idir0 = pkg_dir(cache, pkg, SETS_EMOJI_IMAGES_VERSION);
    char *tdir = pkg_dir(cache, SETS_EMOJI_TEXTS_PKG, SETS_EMOJI_TEXTS_VERSION);
    char *ejson = io_path_join(idir0, "emoji.json");
    emo_images m;
    emo_data d = {0};
    s = parse_emoji_json(ejson, &m, e);
    if (s) goto out_paths;
    s = load_texts(tdir, o->langs, &m, &d, e);
    /* before the images: a data set made with other options stays unless forced */
    emo_options opt;
    if (!s) {
        emoji_options(o, &st, labelled, &d, &opt);
        s = sets_check_replace(o->out, NULL, "emoji", o->seed, opt.kv, opt.n_kv, o->force, e);
    }
    size_t en = 0; /* the English texts, which rationales are made of */
    while (!s && o->rationales && en < d.n_langs && strcmp(d.langs[en], "en") != 0) en++;
    if (!s && o->rationales && en == d.n_langs)
        s = xd_fail(e, XD_EARG, "--rationales needs the English texts; add en to --langs");
    double t1 = sets_now();
    for (size_t k = 0; k < st.n && !s; k++) s = load_images(cache, &st, k, &m, o->size, &d, e);
    double t2 = sets_now();
    if (s) goto out;

    /* split by emoji (every emoji of emoji.json, so the same in every style), stratified by group */
    int32_t *strata = xd_xmalloc((m.n_base + 1) * sizeof *strata);
    uint8_t *base_test = xd_xmalloc(m.n_base + 1);
    for (size_t b = 0; b < m.n_base; b++) strata[b] = m.base[b].cat;
    sets_split_stratified(strata, m.n_base, (int)m.cats.n, o->test_fraction, o->seed, base_test);
    free(strata);

    size_t px = (size_t)o->size * (size_t)o->size * 3, cnt[SETS_SPLIT_COUNT] = {0}, no_image = 0;
    for (size_t b = 0; b < m.n_base; b++)
        for (size_t k = 0; k < st.n; k++)
            for (size_t v = 0; v < m.base[b].n_var; v++) {
                int has = m.base[b].var[v].has[st.id[k]];
                cnt[base_test[b]] += has;
                no_image += !has;
            }
    emo_split ps[SETS_SPLIT_COUNT];
    sets_split sp[SETS_SPLIT_COUNT];
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        size_t n = cnt[k] + 1;
        ps[k] = (emo_split){.image = xd_xmalloc(n * px), .mask = xd_xmalloc(n),
                            .label = xd_xmalloc(n * sizeof(int32_t)),
                            .sub = xd_xmalloc(n * sizeof(int32_t)),
                            .style = xd_xmalloc(n * sizeof(int32_t)),
                            .id = xd_xmalloc(n * sizeof(int32_t)),
                            .code = xd_xmalloc(n * sizeof(char *)),
                            .texts = xd_xcalloc(d.n_langs + 1, sizeof(char **)),
                            .rationale = o->rationales ? xd_xcalloc(n, sizeof(char *)) : NULL};
        for (size_t l = 0; l < d.n_langs; l++) ps[k].texts[l] = xd_xmalloc(n * sizeof(char *));
        cnt[k] = 0;
    }
    for (size_t b = 0, x0 = 0; b < m.n_base; x0 += m.base[b].n_var, b++) {
        const emo_base *eb = &m.base[b];
        emo_split *p = &ps[base_test[b]];
        for (size_t k = 0; k < st.n; k++)
            for (size_t v = 0, x = x0; v < eb->n_var; v++, x++) {
                if (!eb->var[v].has[st.id[k]]) continue;
                size_t i = cnt[base_test[b]]++;
                memcpy(p->image + i * px, d.pixels + (k * m.n_examples + x) * px, px);
                p->mask[i] = base_test[b] == SETS_TEST || labelled[k];
                p->label[i] = eb->cat;
                p->sub[i] = eb->sub;
                p->style[i] = (int32_t)k;
                p->id[i] = eb->id;
                p->code[i] = eb->var[v].unified;
                for (size_t l = 0; l < d.n_langs; l++) p->texts[l][i] = d.texts[l][x];
                if (p->rationale)
                    p->rationale[i] = emoji_rationale(d.texts[en][x], m.subs.names[eb->sub]);
            }
    }
    free(base_test);
    for (int k = 0; k < SETS_SPLIT_COUNT; k++)
        sp[k] = (sets_split){.n = cnt[k], .h = o->size, .w = o->size, .c = 3,
                             .image = ps[k].image, .label = ps[k].label,
                             .label_mask = ps[k].mask, .id = ps[k].id,
                             .extra_name = {"subgroup", st.n > 1 ? "style" : NULL},
                             .extra = {ps[k].sub, ps[k].style}, .code = ps[k].code,
                             .rationale = (const char *const *)ps[k].rationale,
                             .n_langs = d.n_langs, .langs = (const char *const *)d.langs,
                             .texts = (const char *const *const *)ps[k].texts};

    sets_regroup rg = {0};
    if (o->split_from) s = sets_split_from(o->split_from, sp, &rg, e);
    sets_outdir od;
    if (!s) s = sets_outdir_open(&od, o->out, e);
    if (!s) {
        char *file = sets_outdir_path(&od, SETS_DATASET_FILE);
        emo_meta_ctx ctx = {&opt, &st, &m, &d};
        sets_write wr = {"emoji", SETS_PAIRED, o->seed, sp, m.cats.n,
                         (const char *const *)m.cats.names};
        s = sets_write_dataset(file, &wr, emoji_meta, &ctx, e);
        if (!s) s = sets_outdir_commit(&od, e);
        else sets_outdir_abort(&od);
        free(file);
    }
    if (!s) {
        char *final = io_path_join(o->out, SETS_DATASET_FILE);
        sum->t_read = t1 - t0;
        sum->t_decode = t2 - t1;
        sum->t_write = sets_now() - t2;
        sum->n_extra_classes = m.subs.n;
        sets_summary_fill(sum, SETS_PAIRED, final, sp, m.cats.n, (const char *const *)m.cats.names);
        sum->n_styles = st.n;
        sum->n_no_image = no_image;
        free(final);
    }
    sets_regroup_free(&rg);
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) emo_split_free(&ps[k], d.n_langs);
out:
    emo_data_free(&d, m.n_examples);
    emo_images_free(&m);
out_paths:
    free(ejson);
    free(idir0);
    free(tdir);
    return s;
}
