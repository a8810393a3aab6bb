/* A user's own image-text pairs (io/manifest.h: TSV or JSONL) as a paired dataset file, and
 * rationale records (io_manifest_read_rationales) as a text set with S/rationale.
 *
 * Each image (PNG or JPEG of any size, chosen by its magic bytes) is composited over white as RGB,
 * centre-cropped to a square of its shorter side, and resized to size x size: area averaging when
 * shrinking, bilinear when growing. Images are decoded in parallel; when several are bad, the one
 * on the lowest manifest line is reported, "FILE:LINE: column image_path: reason", whatever the
 * thread count. Texts go to text.LANG ("und" unless told), labels and class names as the manifest
 * gives them, or (with a classes file) the file's names in its order. The split is per example,
 * seeded and stratified by label (decided before any image is decoded; rows of one image, the same
 * bytes, are one example and land on one side), or taken from another data set by example id (the
 * 0-based row of the example in the manifest). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/hash.h"
#include "core/mem.h"
#include "io/file.h"
#include "io/image.h"
#include "io/manifest.h"
#include "modalities/image/ops.h"
#include "modalities/image/resize.h"
#include "modalities/sets/common.h"

#define MANIFEST_MAX_SIZE 1024
#define MANIFEST_LANG_MAX 16

sets_manifest_opts sets_manifest_defaults(void)
{
    return (sets_manifest_opts){.lang = "und", .size = 32, .test_fraction = 0.2, .seed = 1};
}

/* The line number of each example, counted the way io_manifest reads the file: lines end at '\n'
 * (a '\r' before it is dropped), empty lines are skipped, and in a .tsv the first non-empty line
 * is the header. NULL when the file cannot be read again or the count differs. */
static size_t *row_lines(const char *path, size_t n_rows)
{
    void *buf;
    size_t n;
    xd_err ignored;
    if (io_read_all(path, (size_t)1 << 30, &buf, &n, &ignored) != XD_OK) return NULL;
    int tsv = io_path_has_suffix(path, ".tsv"), header = tsv;
    size_t *lines = xd_xmalloc((n_rows + 1) * sizeof *lines), k = 0, lineno = 0;
    const char *p = buf, *end = p + n;
    if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len && p[len - 1] == '\r') len--;
        lineno++;
        if (len) {
            if (header)
                header = 0;
            else if (k < n_rows)
                lines[k++] = lineno;
            else
                k = n_rows + 1;
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(buf);
    if (k != n_rows) {
        free(lines);
        return NULL;
    }
    return lines;
}

/* src (h, w, 3) -> dst (size, size, 3): centre square of the shorter side, then resized. */
static xd_status square_resize(const io_image *img, int size, uint8_t *dst, xd_err *e)
{
    int side = img->w < img->h ? img->w : img->h;
    if (img->w == side && img->h == side)
        return side == size ? (memcpy(dst, img->px, (size_t)size * (size_t)size * 3), XD_OK)
                            : img_resize_u8(img->px, side, side, 3, dst, size, size, e);
    uint8_t *sq = xd_try_alloc((size_t)side * (size_t)side * 3);
    if (!sq) return xd_fail(e, XD_ENOMEM, "no memory for a %dx%d crop", side, side);
    xd_status s = img_crop_centre_u8(img->px, img->h, img->w, 3, side, side, sq, e);
    if (!s) s = img_resize_u8(sq, side, side, 3, dst, size, size, e);
    free(sq);
    return s;
}

static xd_status manifest_check(const sets_manifest_opts *o, xd_err *e)
{
    if (!o->manifest || !*o->manifest) return xd_fail(e, XD_EARG, "no manifest file given");
    if (!o->out || !*o->out) return xd_fail(e, XD_EARG, "no output file given (--out FILE)");
    if (o->size < 1 || o->size > MANIFEST_MAX_SIZE)
        return xd_fail(e, XD_EARG, "size %d is not in 1..%d", o->size, MANIFEST_MAX_SIZE);
    if (!(o->test_fraction >= 0.0 && o->test_fraction <= 1.0))
        return xd_fail(e, XD_EARG, "test fraction %g is not in 0..1", o->test_fraction);
    const char *l = o->lang ? o->lang : "und";
    size_t n = strlen(l);
    int ok = n >= 1 && n <= MANIFEST_LANG_MAX;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)l[i]) && l[i] != '-' && l[i] != '_') ok = 0;
    if (!ok)
        return xd_fail(e, XD_EARG, "language '%s' must be 1 to %d letters, digits, '-' or '_'", l,
                       MANIFEST_LANG_MAX);
    return XD_OK;
}

/* The options a manifest set records, as metadata pairs. */
typedef struct {
    char size[16], frac[32];
    const char *lang;
    io_kv kv[6];
    size_t n;
    int rationales;
} mf_options;

static void manifest_options(const sets_manifest_opts *o, const char *lang, int rationales,
                             mf_options *p)
{
    snprintf(p->size, sizeof p->size, "%d", o->size);
    snprintf(p->frac, sizeof p->frac, "%g", o->test_fraction);
    p->lang = lang;
    p->rationales = rationales;
    p->n = 0;
    p->kv[p->n++] = (io_kv){"source", o->manifest};
    if (!rationales) p->kv[p->n++] = (io_kv){"size", p->size}; /* rationale sets have no images */
    p->kv[p->n++] = (io_kv){"test_fraction", p->frac};
    p->kv[p->n++] = (io_kv){"languages", lang};
    /* recorded only when given, so that sets made without them keep their bytes */
    if (o->classes) p->kv[p->n++] = (io_kv){"classes_file", o->classes};
    if (o->split_from) p->kv[p->n++] = (io_kv){"split_from", o->split_from};
}

static xd_status manifest_meta(io_dataset_writer *w, const void *ctx, xd_err *e)
{
    const mf_options *p = ctx;
    xd_status s = sets_write_meta_kv(w, p->kv, p->n, e);
    if (!s && !p->rationales) s = io_dataset_set_meta(w, "crop", "centre square", e);
    if (!s) s = io_dataset_add_strings(w, "languages", &p->lang, 1, e);
    return s;
}

/* The dataset name: the manifest's file name without its extension. */
static char *set_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *s = xd_xstrdup(*b ? b : "manifest");
    char *dot = strrchr(s, '.');
    if (dot && dot != s) *dot = '\0';
    return s;
}

typedef struct {
    uint64_t h;
    size_t row;
} row_key;

static int cmp_row_key(const void *a, const void *b)
{
    const row_key *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* The rows of m that show the same example, as group[i] = the group of row i, groups numbered in
 * the order of their first rows; returns their count. The same example is an image file of the
 * same bytes (one file named twice, or two copies: several captions of one picture), or in a
 * rationale set the same input text: the FNV-1a 64 of the bytes, read once here (files of
 * different bytes with one hash would land in one group, which only keeps them on one side). */
static xd_status example_groups(const char *manifest, const io_manifest *m, size_t *group,
                                size_t *n_groups, xd_err *e)
{
    row_key *k = xd_xmalloc((m->n + 1) * sizeof *k);
    for (size_t i = 0; i < m->n; i++) {
        k[i].row = i;
        if (m->paths) {
            xd_status s = io_file_hash(m->paths[i], &k[i].h, e);
            if (s != XD_OK) {
                free(k);
                return xd_err_prefix(e, "%s", manifest);
            }
        } else {
            k[i].h = xd_fnv_bytes(XD_FNV_OFFSET, m->texts[i], strlen(m->texts[i]));
        }
    }
    qsort(k, m->n, sizeof *k, cmp_row_key);
    /* each row to its group's first row, then the first rows numbered in row order */
    for (size_t i = 0, first = 0; i < m->n; i++) {
        if (i == 0 || k[i].h != k[i - 1].h) first = k[i].row;
        group[k[i].row] = first;
    }
    free(k);
    size_t g = 0;
    for (size_t i = 0; i < m->n; i++) group[i] = group[i] == i ? g++ : group[group[i]];
    *n_groups = g;
    return XD_OK;
}

/* The split of m's examples (is_test: m->n), which needs only their labels (and the bytes of
 * their images): decided before any image is decoded, so that a split without test examples is
 * refused at once. Rows that show the same example (example_groups) are one for the split,
 * stratified by the label of its first row, and land on one side: a copy of a training image in
 * the test split would score as seen. A split taken from another set (sets_split_from, which
 * regroups the examples by id whichever side they start on) needs none: all start in train. */
static xd_status split_examples(const sets_manifest_opts *o, const io_manifest *m, uint8_t *is_test,
                                xd_err *e)
{
    if (o->split_from) {
        memset(is_test, SETS_TRAIN, m->n);
        return XD_OK;
    }
    size_t *group = xd_xmalloc((m->n + 1) * sizeof *group), n_groups = 0;
    xd_status s = example_groups(o->manifest, m, group, &n_groups, e);
    if (s != XD_OK) {
        free(group);
        return s;
    }
    int32_t *labels = xd_xmalloc((n_groups + 1) * sizeof *labels);
    uint8_t *test = xd_xmalloc(n_groups + 1);
    for (size_t i = m->n; i-- > 0;) labels[group[i]] = m->labels[i]; /* the first row's last */
    sets_split_stratified(labels, n_groups, (int)m->n_classes, o->test_fraction, o->seed, test);
    for (size_t i = 0; i < m->n; i++) is_test[i] = test[group[i]];
    free(test);
    free(labels);
    free(group);
    size_t n_test = 0;
    for (size_t i = 0; i < m->n; i++) n_test += is_test[i] == SETS_TEST;
    /* a score on no test examples would be a made-up number: only an explicit 0 gives none */
    char shown[64] = "";
    if (n_groups < m->n)
        snprintf(shown, sizeof shown, " (%zu different %s)", n_groups,
                 m->paths ? "images" : "inputs");
    if (o->test_fraction > 0.0 && n_test == 0)
        return xd_fail(e, XD_EARG,
                       "%s: %zu examples%s in %zu classes give no test example at test fraction %g "
                       "(each class sends round(n x fraction) of its n examples to test, rows of "
                       "one image or input counting once); add examples, raise --test-fraction, "
                       "or give --test-fraction 0 for a set without test split",
                       o->manifest, m->n, shown, m->n_classes, o->test_fraction);
    return XD_OK;
}

/* The data set file of m's examples, split by is_test: pixels (size x size RGB each), or NULL for
 * rationale records, whose examples get a 1x1 blank image so that every reader of the container
 * finds its images, and the rationale section. */
static xd_status write_set(const sets_manifest_opts *o, const char *lang, const io_manifest *m,
                           const uint8_t *is_test, const uint8_t *pixels, const char *path,
                           const char *name, const mf_options *mopt, double t2, sets_summary *sum,
                           xd_err *e)
{
    const int side = pixels ? o->size : 1;
    const size_t px = (size_t)side * (size_t)side * (pixels ? 3 : 1);
    sets_split sp[SETS_SPLIT_COUNT];
    uint8_t *img[SETS_SPLIT_COUNT] = {0}, *mask[SETS_SPLIT_COUNT] = {0};
    int32_t *lab[SETS_SPLIT_COUNT] = {0}, *ids[SETS_SPLIT_COUNT] = {0};
    const char **txt[SETS_SPLIT_COUNT] = {0}, **rat[SETS_SPLIT_COUNT] = {0};
    const char *const *txt_tables[SETS_SPLIT_COUNT][1];
    size_t cnt[SETS_SPLIT_COUNT] = {0};
    sets_regroup rg = {0};
    xd_status s = XD_OK;
    for (size_t i = 0; i < m->n; i++) cnt[is_test[i]]++;
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        size_t n = cnt[k] + 1;
        img[k] = xd_xmalloc(n * px);
        mask[k] = xd_xmalloc(n);
        lab[k] = xd_xmalloc(n * sizeof(int32_t));
        ids[k] = xd_xmalloc(n * sizeof(int32_t));
        txt[k] = xd_xmalloc(n * sizeof(char *));
        rat[k] = xd_xmalloc(n * sizeof(char *));
        cnt[k] = 0;
    }
    for (size_t i = 0; i < m->n; i++) {
        int k = is_test[i];
        size_t j = cnt[k]++;
        if (pixels)
            memcpy(img[k] + j * px, pixels + i * px, px);
        else
            img[k][j] = 0;
        if (m->rationales) rat[k][j] = m->rationales[i];
        mask[k][j] = 1;
        lab[k][j] = m->labels[i];
        ids[k][j] = (int32_t)i;
        txt[k][j] = m->texts[i];
    }
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        txt_tables[k][0] = txt[k];
        sp[k] = (sets_split){.n = cnt[k], .h = side, .w = side, .c = pixels ? 3 : 1,
                             .image = img[k], .rationale = m->rationales ? rat[k] : NULL,
                             .label = lab[k], .label_mask = mask[k], .id = ids[k],
                             .n_langs = 1, .langs = &lang,
                             .texts = (const char *const *const *)txt_tables[k]};
    }
    if (o->split_from) s = sets_split_from(o->split_from, sp, &rg, e);
    char *parent = io_path_dir(path), *made = NULL;
    if (!s) s = io_mkdir_made(parent, &made, e);
    sets_write wr = {name, SETS_PAIRED, o->seed, sp, m->n_classes,
                     (const char *const *)m->class_names};
    if (!s) s = sets_write_dataset(path, &wr, manifest_meta, mopt, e);
    if (!s) {
        sum->t_write = sets_now() - t2;
        sets_summary_fill(sum, SETS_PAIRED, path, sp, m->n_classes,
                          (const char *const *)m->class_names);
    } else if (made) { /* the folders this run made go again */
        io_unmake_dir(parent, made);
    }
    free(made);
    free(parent);
    for (int k = 0; k < SETS_SPLIT_COUNT; k++) {
        free(img[k]);
        free(mask[k]);
        free(lab[k]);
        free(ids[k]);
        free(txt[k]);
        free(rat[k]);
    }
    sets_regroup_free(&rg);
    return s;
}

/* A manifest's pairs, or (rationales) rationale records, as a data set file. */
static xd_status build_set(const sets_manifest_opts *o, int rationales, sets_summary *sum,
                           xd_err *e)
{
    memset(sum, 0, sizeof *sum);
    xd_status s = manifest_check(o, e);
    if (s) return s;
    const char *lang = o->lang ? o->lang : "und";
    double t0 = sets_now();
    /* a folder, existing or named by a final '/', gets the data set file inside */
    struct stat out_st;
    const size_t out_len = strlen(o->out);
    const int folder = (out_len > 0 && o->out[out_len - 1] == '/') ||
                       (stat(o->out, &out_st) == 0 && S_ISDIR(out_st.st_mode));
    char *path = folder ? io_path_join(o->out, SETS_DATASET_FILE) : xd_xstrdup(o->out);
    char *name = set_name(o->manifest);
    mf_options mopt;
    manifest_options(o, lang, rationales, &mopt);
    io_manifest m = {0};
    io_manifest_classes classes = {0};
    /* an output over the manifest, the classes file or the other set would destroy it */
    const char *inputs[] = {o->manifest, o->classes, o->split_from};
    s = io_check_output(path, inputs, 3, e);
    if (!s) s = sets_check_replace(o->out, path, name, o->seed, mopt.kv, mopt.n, o->force, e);
    if (!s && o->classes) s = io_manifest_classes_read(o->classes, &classes, e);
    const io_manifest_classes *fixed = o->classes ? &classes : NULL;
    if (!s && rationales)
        s = io_manifest_read_rationales(o->manifest, NULL, fixed, o->skip_bad, &m, e);
    else if (!s)
        s = io_manifest_read_classes(o->manifest, NULL, fixed, &m, e);
    io_manifest_classes_free(&classes);
    if (!s && o->split_from) { /* before the images: a wrong OTHER fails at once */
        int32_t *rows = xd_xmalloc((m.n + 1) * sizeof *rows);
        for (size_t i = 0; i < m.n; i++) rows[i] = (int32_t)i;
        s = sets_split_from_check(o->split_from, rows, NULL, m.n, e);
        free(rows);
    }
    uint8_t *is_test = xd_xmalloc(m.n + 1);
    if (!s) s = split_examples(o, &m, is_test, e);
    if (s) {
        free(is_test);
        io_manifest_free(&m);
        free(path);
        free(name);
        return s;
    }
    double t1 = sets_now();
    size_t *lines = rationales ? NULL : row_lines(o->manifest, m.n);
    size_t px = (size_t)o->size * (size_t)o->size * 3;
    uint8_t *pixels = rationales ? NULL : xd_try_alloc(m.n * px + 1);
    if (!pixels && !rationales)
        s = xd_fail(e, XD_ENOMEM, "%s: no memory for %zu images", o->manifest, m.n);
    size_t first_bad = m.n;
    xd_err bad_err;
    xd_err_clear(&bad_err);
    io_image_opts opt = {.channels = 3, .bg = {255, 255, 255}};
    if (!s && pixels) {
#pragma omp parallel for schedule(dynamic, 4)
        for (size_t i = 0; i < m.n; i++) {
            xd_err err;
            io_image img = {0};
            /* nor over an image (a path that does not exist yet passes at once) */
            xd_status st = io_check_output(path, (const char *const *)&m.paths[i], 1, &err);
            if (!st) st = io_image_read(m.paths[i], &opt, &img, &err);
            if (!st) st = square_resize(&img, o->size, pixels + i * px, &err);
            io_image_free(&img);
            if (st) {
#pragma omp critical(manifest_first_error)
                if (i < first_bad) {
                    first_bad = i;
                    bad_err = err;
                }
            }
        }
    }
    if (!s && first_bad < m.n) {
        *e = bad_err;
        s = bad_err.code ? bad_err.code : XD_EFORMAT;
        const char *col = io_path_has_suffix(o->manifest, ".jsonl") ? "image" : "image_path";
        if (lines)
            xd_err_prefix(e, "%s:%zu: column %s", o->manifest, lines[first_bad], col);
        else
            xd_err_prefix(e, "%s: example %zu: column %s", o->manifest, first_bad + 1, col);
    }
    double t2 = sets_now();
    if (!s) {
        s = write_set(o, lang, &m, is_test, pixels, path, name, &mopt, t2, sum, e);
        sum->t_read = t1 - t0;
        sum->t_decode = t2 - t1;
        sum->n_skipped = m.skipped;
        sum->first_skipped = m.first_skipped;
        m.first_skipped = NULL;
    }
    free(path);
    free(name);
    free(pixels);
    free(lines);
    free(is_test);
    io_manifest_free(&m);
    return s;
}

xd_status sets_manifest(const sets_manifest_opts *o, sets_summary *sum, xd_err *e)
{
    return build_set(o, 0, sum, e);
}

xd_status sets_rationales(const sets_manifest_opts *o, sets_summary *sum, xd_err *e)
{
    return build_set(o, 1, sum, e);
}
