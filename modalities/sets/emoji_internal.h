/* What emoji.c (the options and the set's assembly) shares with emoji_sources.c (fetching the
 * packages and reading emoji.json and the language files): the styles asked for, the packages'
 * folders, emoji.json as read and the texts of a language. Not part of the set's interface. */
#ifndef XD_SETS_EMOJI_INTERNAL_H
#define XD_SETS_EMOJI_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "modalities/sets/sets.h"

/* Longest code-point key: sequences have at most ~10 code points of up to 6 hex digits. */
#define EMOJI_KEY_MAX 128
#define EMOJI_LANG_MAX 16

/* Styles in the order a comma-separated list gives them. */
typedef struct {
    size_t n;
    sets_emoji_style id[SETS_EMOJI_STYLE_COUNT];
} emo_styles;

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

// emoji.c

/* list NULL or "": google alone. Unknown or repeated names are XD_EARG. */
xd_status emoji_parse_styles(const char *list, emo_styles *st, xd_err *e);

// emoji_sources.c

/* The folder a package is unpacked in: CACHE/NAME-VERSION (a new string). */
char *emoji_pkg_dir(const char *cache, const char *name, const char *version);
/* The image package of a style: "emoji-datasource-NAME" into pkg. */
void emoji_style_pkg(sets_emoji_style st, char *pkg, size_t n);
/* emoji.json into m: the emoji outside its Component category, in sort order, with their skin
 * variants; on failure m is freed. */
xd_status emoji_parse_json(const char *path, emo_images *m, xd_err *e);
void emoji_images_free(emo_images *m);
/* The languages to use: every present one, or the comma-separated choice (in its order). */
xd_status emoji_choose_languages(const char *tdir, const char *want, char ***out, size_t *n_out,
                           xd_err *e);
/* texts[x] for every example x of m (in example order) in one language. */
xd_status emoji_language_texts(const char *path, const emo_images *m, char **texts, xd_err *e);

#endif
