/* Prepared data sets: builders that turn real sources into one dataset container each.
 *
 * `xdistill prepare` is a thin layer over these functions; the tests call them directly on tiny
 * data they make themselves. Every builder reads untrusted files, checks them fully, assembles the
 * examples in memory (decoding in parallel), and writes one dataset file (io/dataset.h) whose
 * layout docs/DATASETS.md describes and the trainer relies on:
 *
 *   S/image u8 (N, H, W, C), S/label i32 (N), S/label_mask u8 (N), S/id i32 (N) for S in
 *   {train, test}, the string table `classes`, and per set: label.NAME + classes.NAME, text.LANG +
 *   `languages` (paired sets), mask / boxes / items / n_items (scenes).
 *
 * Builders never print: they return a status with one message naming the file and the position,
 * and fill a sets_summary (counts per split, class and language, phase times) for the caller to
 * show. Outputs are never half-written: a folder output is built in a temporary sibling folder and
 * moved into place at the end; a file output goes through io_atomic. A data set already at the
 * output that another set or other options made (name, seed and the options its metadata
 * records) is not replaced unless `force` is set: an error names the option that differs.
 *
 * Randomness (splits, scene layouts) comes from counter-based streams keyed by the seed, so the
 * same seed gives byte-identical files at any thread count. */
#ifndef XD_SETS_SETS_H
#define XD_SETS_SETS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The one file inside an output folder. */
#define SETS_DATASET_FILE "dataset.xds"

typedef enum { SETS_TRAIN, SETS_TEST, SETS_SPLIT_COUNT } sets_split_id;
/* "train", "test" */
extern const char *const sets_split_names[SETS_SPLIT_COUNT];

typedef enum { SETS_CLASSIFICATION, SETS_PAIRED, SETS_SCENES, SETS_KIND_COUNT } sets_kind;
/* "classification", "paired", "scenes" (the `kind` metadata value) */
extern const char *const sets_kind_names[SETS_KIND_COUNT];

/* The pinned source packages of the emoji set (the only place their versions are written). The
 * images come in several renderings (styles), one package each, SETS_EMOJI_IMAGES_PREFIX + style
 * name, all at SETS_EMOJI_IMAGES_VERSION; SETS_EMOJI_IMAGES_PKG is the default one's. */
#define SETS_EMOJI_IMAGES_PREFIX "emoji-datasource-"
#define SETS_EMOJI_IMAGES_PKG SETS_EMOJI_IMAGES_PREFIX "google"
#define SETS_EMOJI_IMAGES_VERSION "16.0.0"
#define SETS_EMOJI_TEXTS_PKG "emojibase-data"
#define SETS_EMOJI_TEXTS_VERSION "17.0.0"

/* What a builder made, for the caller to print. Free with sets_summary_free. */
typedef struct {
    char *path;                   /* the dataset file, under its final name */
    sets_kind kind;
    size_t n[SETS_SPLIT_COUNT];   /* examples per split */
    int h, w, c;                  /* image shape */
    size_t n_classes;
    char **classes;               /* (n_classes) main label names */
    size_t *class_n;              /* (n_classes, SETS_SPLIT_COUNT) examples per class */
    size_t n_unlabelled[SETS_SPLIT_COUNT]; /* label_mask 0 */
    size_t n_extra_classes;       /* classes of label.NAME (emoji subgroups), else 0 */
    size_t n_styles;              /* emoji renderings (label.style when more than one), else 0 */
    size_t n_no_image;            /* (emoji, style) pairs left out: no image in that style */
    size_t n_langs;
    char **langs;                 /* (n_langs) */
    size_t *missing;              /* (n_langs, SETS_SPLIT_COUNT) empty texts */
    size_t n_previews;            /* preview PNGs written (scenes) */
    size_t n_skipped;             /* rationale records left out as bad (skip_bad) */
    char *first_skipped;          /* the first one's message, or NULL */
    double t_read, t_decode, t_write; /* seconds: sources parsed, images decoded/made, written */
} sets_summary;

void sets_summary_free(sets_summary *s);

/* The cache folder: dir if given, else $XDISTILL_CACHE if set and non-empty, else "cache". */
const char *sets_cache_dir(const char *dir);

/* ---------------------------------------------------------------------------------- Fashion-MNIST */

/* The four files, in the order train images, train labels, test images, test labels. */
typedef struct {
    char *path[4];
} sets_fmnist_files;

/* Finds the files: in source (NAME.gz or NAME) if given, else through `dpkg -L
 * dataset-fashion-mnist`, else in /usr/share/datasets/fashion-mnist. */
xd_status sets_fmnist_find(const char *source, sets_fmnist_files *f, xd_err *e);
void sets_fmnist_files_free(sets_fmnist_files *f);

typedef struct {
    const char *out;    /* output folder */
    const char *source; /* NULL: find the Debian package */
    uint64_t seed;      /* recorded (this set has no randomness) */
    int force;          /* replace a data set made with other options (see sets_check_replace) */
} sets_fmnist_opts;

/* 60000 train / 10000 test, (N, 28, 28, 1), the 10 Fashion-MNIST class names. */
xd_status sets_fashion_mnist(const sets_fmnist_opts *o, sets_summary *sum, xd_err *e);

/* --------------------------------------------------------------------------------- fashion scenes */

typedef struct {
    const char *out;
    const char *source;
    int canvas;          /* S */
    int kmin, kmax;      /* items per scene */
    size_t n_train, n_test;
    int threshold;       /* item pixel > threshold is foreground */
    uint64_t seed;
    int previews;        /* preview PNGs of the first train scenes */
    int force;           /* replace a data set made with other options */
} sets_scenes_opts;

/* canvas 64, 1-4 items, 20000 / 2000 scenes, threshold 25, seed 1, 8 previews */
sets_scenes_opts sets_scenes_defaults(void);
/* Train scenes from train items only, test scenes from test items only (scene.h). */
xd_status sets_fashion_scenes(const sets_scenes_opts *o, sets_summary *sum, xd_err *e);

/* ------------------------------------------------------------------------------------------ emoji */

/* The renderings of the emoji-datasource family (the package emoji-datasource-NAME). */
typedef enum {
    SETS_EMOJI_GOOGLE,
    SETS_EMOJI_APPLE,
    SETS_EMOJI_FACEBOOK,
    SETS_EMOJI_TWITTER,
    SETS_EMOJI_STYLE_COUNT
} sets_emoji_style;
/* "google", "apple", "facebook", "twitter" */
extern const char *const sets_emoji_style_names[SETS_EMOJI_STYLE_COUNT];

typedef struct {
    const char *out;
    const char *cache;   /* NULL: sets_cache_dir(NULL) */
    const char *langs;   /* comma-separated, NULL or "": every language present */
    const char *styles;  /* comma-separated renderings, NULL or "": google. Every (emoji, style)
                          * with an image is an example with the emoji's texts and labels; several
                          * styles add label.style */
    const char *labelled_styles; /* the styles whose training examples keep their label (the
                                  * others get label_mask 0); NULL or "": every style */
    const char *split_from; /* NULL, or a data set whose split to reuse (matched by emoji code) */
    int size;            /* output side */
    double test_fraction;
    uint64_t seed;
    int force;           /* replace a data set made with other options */
    int rationales;      /* S/rationale: each emoji's English keywords and its subgroup's name, a
                          * rationale for its group (needs en among the languages) */
} sets_emoji_opts;

/* size 32, test fraction 0.2, seed 1, all languages */
sets_emoji_opts sets_emoji_defaults(void);

/* Makes sure the texts' and each style's image package (styles as in sets_emoji_opts) are unpacked
 * in CACHE/NAME-VERSION/: when a folder is missing, runs `npm pack NAME@VERSION
 * --pack-destination CACHE` and `tar -xzf` into a temporary folder that is renamed when complete.
 * *fetched (may be NULL) counts the packages fetched now. An unknown style is XD_EARG listing the
 * known ones. */
xd_status sets_emoji_fetch(const char *cache, const char *styles, int *fetched, xd_err *e);
/* Builds the set from the unpacked packages (never fetches; call sets_emoji_fetch first). */
xd_status sets_emoji(const sets_emoji_opts *o, sets_summary *sum, xd_err *e);

/* The text of one emoji in one language: "label; tag, tag, ..." ("label" without tags, "" when
 * the label is empty). Into a new string. */
char *sets_emoji_text(const char *label, const char *const *tags, size_t n_tags);

/* Code points as matched between the packages: uppercase hex, '-' separated, FE0F left out
 * ("2764-fe0f" -> "2764"). -1 when hex is not a '-' separated list of 1..6 hex digit groups. */
int sets_emoji_key(const char *hex, char *key, size_t n);

/* --------------------------------------------------------------------------------------- manifest */

typedef struct {
    const char *manifest; /* .tsv or .jsonl (io/manifest.h) */
    const char *out;      /* output file; an existing folder gets SETS_DATASET_FILE inside */
    const char *lang;     /* text section text.LANG; default "und" */
    int size;             /* side of the square RGB images */
    double test_fraction;
    uint64_t seed;
    int force;            /* replace a data set made with other options */
    const char *classes;  /* NULL, or a classes file (io_manifest_classes_read): the class names
                           * and their order; every label must be one of them */
    const char *split_from; /* NULL, or a data set file whose split to reuse (ids are the 0-based
                             * manifest rows; test_fraction is then unused) */
    int skip_bad;           /* rationales: bad records are left out and counted */
} sets_manifest_opts;

/* size 32, test fraction 0.2, seed 1, lang "und" */
sets_manifest_opts sets_manifest_defaults(void);
/* Images are centre-cropped to a square, then resized to size x size (area averaging when
 * shrinking, bilinear when growing) as RGB over white. Errors name the manifest and its line. */
xd_status sets_manifest(const sets_manifest_opts *o, sets_summary *sum, xd_err *e);
/* Rationale records (io_manifest_read_rationales: input, label, rationale, as a large model
 * answers) as a text set: the inputs in text.LANG, the rationales in S/rationale, labels and
 * split as a manifest's; each example holds a 1x1 blank image (size is unused). */
xd_status sets_rationales(const sets_manifest_opts *o, sets_summary *sum, xd_err *e);

#endif
