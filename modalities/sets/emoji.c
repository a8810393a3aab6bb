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
 * error is the one returned, so the message does not depend on the thread count.
 *
 * Files: this one has the options and the set's assembly (texts, images, split, writing); the
 * packages are fetched and emoji.json and the language files read in emoji_sources.c, and what the
 * two share is in emoji_internal.h. */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/file.h"
#include "io/png.h"
#include "modalities/image/resize.h"
#include "modalities/sets/common.h"
#include "modalities/sets/emoji_internal.h"

/* what the rationale option records: how S/rationale is made */
#define EMOJI_RATIONALE "subgroup; en keywords"
#define EMOJI_MAX_SIZE 1024

const char *const sets_emoji_style_names[] = {"google", "apple", "facebook", "twitter"};
static_assert(sizeof sets_emoji_style_names / sizeof sets_emoji_style_names[0] ==
                  SETS_EMOJI_STYLE_COUNT,
              "sets_emoji_style_names must name every style");

xd_status emoji_parse_styles(const char *list, emo_styles *st, xd_err *e)
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
    xd_status s = emoji_choose_languages(tdir, want, &d->langs, &d->n_langs, e);
    if (s) return s;
    d->texts = xd_xcalloc(d->n_langs, sizeof *d->texts);
    xd_status *st = xd_xcalloc(d->n_langs, sizeof *st);
    xd_err *errs = xd_xcalloc(d->n_langs, sizeof *errs);
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t l = 0; l < d->n_langs; l++) {
        char *sub = io_path_join(tdir, d->langs[l]), *path = io_path_join(sub, "data.json");
        d->texts[l] = xd_xcalloc(m->n_examples + 1, sizeof **d->texts);
        st[l] = emoji_language_texts(path, m, d->texts[l], &errs[l]);
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
    emoji_style_pkg(style, pkg, sizeof pkg);
    snprintf(sub, sizeof sub, "img/%s/64", sets_emoji_style_names[style]);
    char *root = emoji_pkg_dir(cache, pkg, SETS_EMOJI_IMAGES_VERSION);
    char *idir = io_path_join(root, sub);
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
        emoji_style_pkg(st->id[k], pkg, sizeof pkg);
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
    xd_status s = emoji_parse_styles(o->styles, st, e);
    emo_styles lab;
    for (size_t k = 0; k < st->n; k++) labelled[k] = 1;
    if (s || !o->labelled_styles || !*o->labelled_styles) return s;
    if ((s = emoji_parse_styles(o->labelled_styles, &lab, e)) != XD_OK) return s;
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
    emoji_style_pkg(st.id[0], pkg, sizeof pkg);
    char *idir0 = emoji_pkg_dir(cache, pkg, SETS_EMOJI_IMAGES_VERSION);
    char *tdir = emoji_pkg_dir(cache, SETS_EMOJI_TEXTS_PKG, SETS_EMOJI_TEXTS_VERSION);
    char *ejson = io_path_join(idir0, "emoji.json");
    emo_images m;
    emo_data d = {0};
    s = emoji_parse_json(ejson, &m, e);
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
    emoji_images_free(&m);
out_paths:
    free(ejson);
    free(idir0);
    free(tdir);
    return s;
}
