/* `xdistill prepare SET --out ...`: turns real sources into a dataset file.
 *
 * Only options and printing live here; the builders are library code in modalities/sets/ (so the
 * tests can run them). Options come from one table that says which sets take them, so a typo or
 * an option of another set is an error, never silently ignored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "modalities/sets/sets.h"

typedef enum { SET_FMNIST, SET_EMOJI, SET_SCENES, SET_MANIFEST, SET_RATIONALES, SET_COUNT } set_id;

static const struct {
    const char *name;
    const char *usage;
} sets[SET_COUNT] = {
    [SET_FMNIST] = {"fashion-mnist", "prepare fashion-mnist --out DIR [--source DIR] [--force]"},
    [SET_EMOJI] = {"emoji", "prepare emoji --out DIR [--langs en,ko,...] [--size 32] [--cache DIR] "
                            "[--style NAME | --styles A,B] [--labelled-styles A] "
                            "[--test-fraction 0.2] [--seed N] [--split-from OTHER.xds] "
                            "[--rationales] [--force]"},
    [SET_SCENES] = {"fashion-scenes", "prepare fashion-scenes --out DIR [--canvas 64] [--items 1-4] "
                                      "[--train 20000] [--test 2000] [--threshold 25] [--seed N] "
                                      "[--source DIR] [--force]"},
    [SET_MANIFEST] = {"manifest", "prepare manifest FILE.tsv|FILE.jsonl --out FILE [--size 32] "
                                  "[--test-fraction 0.2] [--lang und] [--seed N] [--classes FILE] "
                                  "[--split-from OTHER.xds] [--force]"},
    [SET_RATIONALES] = {"rationales", "prepare rationales FILE.jsonl --out FILE "
                                      "[--test-fraction 0.2] [--lang und] [--seed N] "
                                      "[--classes FILE] [--split-from OTHER.xds] [--skip-bad] "
                                      "[--force]"},
};

typedef enum {
    OPT_OUT,
    OPT_SOURCE,
    OPT_CACHE,
    OPT_LANGS,
    OPT_LANG,
    OPT_STYLE,
    OPT_STYLES,
    OPT_LABELLED_STYLES,
    OPT_SIZE,
    OPT_TEST_FRACTION,
    OPT_SEED,
    OPT_CANVAS,
    OPT_ITEMS,
    OPT_TRAIN,
    OPT_TEST,
    OPT_THRESHOLD,
    OPT_CLASSES,
    OPT_SPLIT_FROM,
    OPT_SKIP_BAD,
    OPT_RATIONALES,
    OPT_FORCE,
    OPT_COUNT
} opt_id;

#define FOR(s) (1u << (s))
#define ALL_SETS ((1u << SET_COUNT) - 1)

static const struct {
    const char *name;
    unsigned sets; /* FOR(set) bits of the sets that take it */
    const char *help;
    int flag;      /* takes no value */
} opts[OPT_COUNT] = {
    [OPT_OUT] = {"--out", ALL_SETS, "output folder (a file for manifest, rationales); required"},
    [OPT_SOURCE] = {"--source", FOR(SET_FMNIST) | FOR(SET_SCENES),
                    "folder with the Fashion-MNIST IDX files (default: the Debian package)"},
    [OPT_CACHE] = {"--cache", FOR(SET_EMOJI), "package cache (default $XDISTILL_CACHE or ./cache)"},
    [OPT_LANGS] = {"--langs", FOR(SET_EMOJI), "comma-separated languages (default: all present)"},
    [OPT_LANG] = {"--lang", FOR(SET_MANIFEST) | FOR(SET_RATIONALES),
                  "language tag of the texts (default und)"},
    [OPT_STYLE] = {"--style", FOR(SET_EMOJI),
                   "rendering: google (default), apple, facebook or twitter"},
    [OPT_STYLES] = {"--styles", FOR(SET_EMOJI),
                    "several renderings, an example per (emoji, style) and label.style"},
    [OPT_LABELLED_STYLES] = {"--labelled-styles", FOR(SET_EMOJI),
                             "styles whose train examples keep their label (default: all)"},
    [OPT_SIZE] = {"--size", FOR(SET_EMOJI) | FOR(SET_MANIFEST), "image side in pixels (default 32)"},
    [OPT_TEST_FRACTION] = {"--test-fraction", FOR(SET_EMOJI) | FOR(SET_MANIFEST) | FOR(SET_RATIONALES),
                           "share held out for test (default 0.2)"},
    [OPT_SEED] = {"--seed", ALL_SETS, "seed of splits and layouts (default 1)"},
    [OPT_CANVAS] = {"--canvas", FOR(SET_SCENES), "scene side in pixels (default 64)"},
    [OPT_ITEMS] = {"--items", FOR(SET_SCENES), "items per scene, K or MIN-MAX (default 1-4)"},
    [OPT_TRAIN] = {"--train", FOR(SET_SCENES), "train scenes (default 20000)"},
    [OPT_TEST] = {"--test", FOR(SET_SCENES), "test scenes (default 2000)"},
    [OPT_THRESHOLD] = {"--threshold", FOR(SET_SCENES),
                       "item pixels above this are foreground (default 25)"},
    [OPT_CLASSES] = {"--classes", FOR(SET_MANIFEST) | FOR(SET_RATIONALES),
                     "file of class names, one a line: the classes and their order"},
    [OPT_SPLIT_FROM] = {"--split-from", FOR(SET_EMOJI) | FOR(SET_MANIFEST) | FOR(SET_RATIONALES),
                        "reuse the train/test split of OTHER.xds, matching examples by code or id"},
    [OPT_SKIP_BAD] = {"--skip-bad", FOR(SET_RATIONALES),
                      "leave out bad records (counted, the first named) instead of stopping", 1},
    [OPT_RATIONALES] = {"--rationales", FOR(SET_EMOJI),
                        "add S/rationale: the English CLDR keywords and the subgroup name", 1},
    [OPT_FORCE] = {"--force", ALL_SETS,
                   "replace a data set at --out made by another set or with other options", 1},
};

static void usage(FILE *f, int only)
{
    fprintf(f, "usage:\n");
    for (int s = 0; s < SET_COUNT; s++)
        if (only < 0 || only == s) fprintf(f, "  xdistill %s\n", sets[s].usage);
    fprintf(f, "\nWrites one dataset file (DIR/dataset.xds; see docs/DATASETS.md) and prints counts per\n"
               "split, class and language. The same seed gives byte-identical files.\n\noptions:\n");
    for (int i = 0; i < OPT_COUNT; i++)
        if (only < 0 || (opts[i].sets & FOR(only)))
            fprintf(f, "  %-16s %s\n", opts[i].name, opts[i].help);
    if (only < 0 || only == SET_EMOJI)
        fprintf(f, "\nemoji fetches %sSTYLE@%s (each style asked for) and\n%s@%s with npm into "
                   "the cache the first time.\n",
                SETS_EMOJI_IMAGES_PREFIX, SETS_EMOJI_IMAGES_VERSION, SETS_EMOJI_TEXTS_PKG,
                SETS_EMOJI_TEXTS_VERSION);
}

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        cli_usage_error("prepare", "%s takes a whole number in %ld..%ld, not '%s'", opt, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_double(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        cli_usage_error("prepare", "%s takes a number in %g..%g, not '%s'", opt, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static void print_summary(const char *set, const sets_summary *s)
{
    printf("%s: wrote %s (%s, images %dx%dx%d)\n", set, s->path, sets_kind_names[s->kind], s->h,
           s->w, s->c);
    printf("  %-22s %8s %8s\n", "", "train", "test");
    printf("  %-22s %8zu %8zu\n", "examples", s->n[SETS_TRAIN], s->n[SETS_TEST]);
    if (s->n_unlabelled[SETS_TRAIN] || s->n_unlabelled[SETS_TEST])
        printf("  %-22s %8zu %8zu\n", "without label", s->n_unlabelled[SETS_TRAIN],
               s->n_unlabelled[SETS_TEST]);
    printf("  class (%zu):\n", s->n_classes);
    for (size_t k = 0; k < s->n_classes; k++)
        printf("    %-20s %8zu %8zu\n", s->classes[k], s->class_n[k * SETS_SPLIT_COUNT + SETS_TRAIN],
               s->class_n[k * SETS_SPLIT_COUNT + SETS_TEST]);
    if (s->n_extra_classes) printf("  subgroups: %zu (label.subgroup)\n", s->n_extra_classes);
    if (s->n_styles > 1) printf("  styles: %zu (label.style)\n", s->n_styles);
    if (s->n_no_image)
        printf("  left out: %zu emoji images the style does not have\n", s->n_no_image);
    if (s->n_langs) {
        printf("  texts per language (missing train / test):\n   ");
        for (size_t l = 0; l < s->n_langs; l++)
            printf("%s %s %zu/%zu", l && l % 7 == 0 ? "\n   " : "", s->langs[l],
                   s->missing[l * SETS_SPLIT_COUNT + SETS_TRAIN],
                   s->missing[l * SETS_SPLIT_COUNT + SETS_TEST]);
        printf("\n");
    }
    if (s->n_previews) printf("  previews: %zu PNGs in preview/\n", s->n_previews);
    if (s->n_skipped)
        printf("  left out: %zu bad record%s, the first: %s\n", s->n_skipped,
               s->n_skipped == 1 ? "" : "s", s->first_skipped ? s->first_skipped : "?");
    printf("  time: read %.2f s, images %.2f s, write %.2f s\n", s->t_read, s->t_decode, s->t_write);
}

int cmd_prepare(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout, -1);
        return argc < 2 ? 2 : 0;
    }
    int set = 0;
    while (set < SET_COUNT && strcmp(argv[1], sets[set].name) != 0) set++;
    if (set == SET_COUNT)
        return cli_usage_error("prepare", "unknown set '%s' (fashion-mnist, emoji, fashion-scenes, "
                               "manifest, rationales)", argv[1]);
    if (cli_wants_help(argc - 1, argv + 1)) {
        usage(stdout, set);
        return 0;
    }
    const char *val[OPT_COUNT] = {0}, *positional = NULL;
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] != '-' || !argv[i][1]) {
            if ((set != SET_MANIFEST && set != SET_RATIONALES) || positional)
                return cli_usage_error("prepare", "unexpected argument '%s'", argv[i]);
            positional = argv[i];
            continue;
        }
        int o = 0;
        while (o < OPT_COUNT && strcmp(argv[i], opts[o].name) != 0) o++;
        if (o == OPT_COUNT) return cli_usage_error("prepare", "unknown option '%s'", argv[i]);
        if (!(opts[o].sets & FOR(set)))
            return cli_usage_error("prepare", "%s is not an option of prepare %s", argv[i],
                                   sets[set].name);
        if (opts[o].flag) {
            val[o] = argv[i];
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("prepare", "%s needs a value", argv[i]);
        val[o] = argv[++i];
    }
    if (!val[OPT_OUT]) return cli_usage_error("prepare", "--out is required");
    if (set == SET_MANIFEST && !positional)
        return cli_usage_error("prepare", "prepare manifest needs a FILE.tsv or FILE.jsonl");
    if (set == SET_RATIONALES && !positional)
        return cli_usage_error("prepare", "prepare rationales needs a FILE.jsonl");
    long seed = 1, v;
    const int force = val[OPT_FORCE] != NULL;
    if (val[OPT_SEED] && parse_long("--seed", val[OPT_SEED], 0, 2147483647L, &seed)) return 2;

    sets_summary sum;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = XD_OK;
    switch ((set_id)set) {
    case SET_FMNIST: {
        sets_fmnist_opts o = {.out = val[OPT_OUT], .source = val[OPT_SOURCE], .seed = (uint64_t)seed,
                              .force = force};
        s = sets_fashion_mnist(&o, &sum, &e);
        break;
    }
    case SET_SCENES: {
        sets_scenes_opts o = sets_scenes_defaults();
        o.out = val[OPT_OUT];
        o.source = val[OPT_SOURCE];
        o.seed = (uint64_t)seed;
        o.force = force;
        if (val[OPT_CANVAS] && parse_long("--canvas", val[OPT_CANVAS], 28, 4096, &v)) return 2;
        if (val[OPT_CANVAS]) o.canvas = (int)v;
        if (val[OPT_THRESHOLD] && parse_long("--threshold", val[OPT_THRESHOLD], 0, 255, &v)) return 2;
        if (val[OPT_THRESHOLD]) o.threshold = (int)v;
        if (val[OPT_TRAIN] && parse_long("--train", val[OPT_TRAIN], 0, 10000000, &v)) return 2;
        if (val[OPT_TRAIN]) o.n_train = (size_t)v;
        if (val[OPT_TEST] && parse_long("--test", val[OPT_TEST], 0, 10000000, &v)) return 2;
        if (val[OPT_TEST]) o.n_test = (size_t)v;
        if (val[OPT_ITEMS]) {
            int a, b, n = 0;
            char c;
            if (sscanf(val[OPT_ITEMS], "%d-%d%n%c", &a, &b, &n, &c) == 2 && n)
                ;
            else if (sscanf(val[OPT_ITEMS], "%d%n%c", &a, &n, &c) == 1 && n)
                b = a;
            else
                return cli_usage_error("prepare", "--items takes K or MIN-MAX, not '%s'",
                                       val[OPT_ITEMS]);
            o.kmin = a;
            o.kmax = b;
        }
        s = sets_fashion_scenes(&o, &sum, &e);
        break;
    }
    case SET_EMOJI: {
        sets_emoji_opts o = sets_emoji_defaults();
        o.out = val[OPT_OUT];
        o.cache = sets_cache_dir(val[OPT_CACHE]);
        o.langs = val[OPT_LANGS];
        if (val[OPT_STYLE] && val[OPT_STYLES])
            return cli_usage_error("prepare", "give --style or --styles, not both");
        if (val[OPT_STYLE] && strchr(val[OPT_STYLE], ','))
            return cli_usage_error("prepare", "--style takes one style; --styles takes several");
        o.styles = val[OPT_STYLE] ? val[OPT_STYLE] : val[OPT_STYLES];
        o.labelled_styles = val[OPT_LABELLED_STYLES];
        o.split_from = val[OPT_SPLIT_FROM];
        o.rationales = val[OPT_RATIONALES] != NULL;
        o.seed = (uint64_t)seed;
        o.force = force;
        if (val[OPT_SIZE] && parse_long("--size", val[OPT_SIZE], 1, 1024, &v)) return 2;
        if (val[OPT_SIZE]) o.size = (int)v;
        if (val[OPT_TEST_FRACTION] &&
            parse_double("--test-fraction", val[OPT_TEST_FRACTION], 0.0, 1.0, &o.test_fraction))
            return 2;
        int fetched = 0;
        s = sets_emoji_fetch(o.cache, o.styles, &fetched, &e);
        if (!s && fetched)
            printf("emoji: fetched %d package%s into %s\n", fetched, fetched == 1 ? "" : "s",
                   o.cache);
        if (!s) s = sets_emoji(&o, &sum, &e);
        break;
    }
    case SET_MANIFEST:
    case SET_RATIONALES: {
        sets_manifest_opts o = sets_manifest_defaults();
        o.manifest = positional;
        o.out = val[OPT_OUT];
        o.seed = (uint64_t)seed;
        o.force = force;
        if (val[OPT_LANG]) o.lang = val[OPT_LANG];
        o.classes = val[OPT_CLASSES];
        o.split_from = val[OPT_SPLIT_FROM];
        if (val[OPT_SIZE] && parse_long("--size", val[OPT_SIZE], 1, 1024, &v)) return 2;
        if (val[OPT_SIZE]) o.size = (int)v;
        if (val[OPT_TEST_FRACTION] &&
            parse_double("--test-fraction", val[OPT_TEST_FRACTION], 0.0, 1.0, &o.test_fraction))
            return 2;
        o.skip_bad = val[OPT_SKIP_BAD] != NULL;
        s = set == SET_MANIFEST ? sets_manifest(&o, &sum, &e) : sets_rationales(&o, &sum, &e);
        break;
    }
    case SET_COUNT:
        break;
    }
    if (s) return cli_report("prepare", &e);
    print_summary(sets[set].name, &sum);
    sets_summary_free(&sum);
    return 0;
}
