/* `xdistill inspect FILE`: says what any file the toolkit reads or writes holds.
 *
 * The format comes from the first bytes, never the name: dataset container, safetensors, NPY, PNG,
 * JPEG, IDX (plain or gzip), and the text files a run writes: a JSON object (summary.json), JSON
 * lines (metrics.jsonl), a YAML recipe. Each is opened with its own validating reader, so a
 * corrupt file gets that reader's one-line message (file, offset, reason) and exit status 1. A
 * folder is named as one, with the files to inspect in it when it is a data set or run folder. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "distill/labels.h"
#include "distill/recipe.h"
#include "io/dataset.h"
#include "io/dtype.h"
#include "io/idx.h"
#include "io/image.h"
#include "io/npy.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "modalities/text/utf8.h"
#include "nn/model.h"

/* Largest text file (summary, metrics, recipe) inspect reads. */
#define INSPECT_MAX_TEXT ((size_t)64 << 20)

typedef enum {
    FMT_UNKNOWN,
    FMT_DATASET,
    FMT_SAFETENSORS,
    FMT_NPY,
    FMT_IMAGE,
    FMT_IDX_GZ,
    FMT_IDX,
    FMT_SAFETENSORS_CUT,
    FMT_TEXT,
    FMT_COUNT
} file_format;

/* The IDX type codes 0x08..0x0E that io/idx.h reads. */
static int idx_type_code(unsigned char c)
{
    return c == 0x08 || c == 0x09 || c == 0x0B || c == 0x0C || c == 0x0D || c == 0x0E;
}

static file_format sniff(const unsigned char *h, size_t n, size_t file_size)
{
    if (n >= 8 && memcmp(h, "XDSET\0\0\0", 8) == 0) return FMT_DATASET;
    if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0) return FMT_NPY;
    if (io_image_sniff(h, n) != IO_IMAGE_UNKNOWN) return FMT_IMAGE;
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b) return FMT_IDX_GZ;
    if (n >= 9 && h[8] == '{') {
        uint64_t len = io_le_u64(h);
        if (len >= 2 && len <= file_size - 8) return FMT_SAFETENSORS;
        if (len >= 2) return FMT_SAFETENSORS_CUT;
    }
    if (n >= 4 && h[0] == 0 && h[1] == 0 && idx_type_code(h[2]) && h[3] >= 1 &&
        h[3] <= IO_IDX_MAX_DIMS)
        return FMT_IDX;
    for (size_t i = 0; i < n; i++) /* text: no control bytes but blanks */
        if (h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r') return FMT_UNKNOWN;
    return n ? FMT_TEXT : FMT_UNKNOWN;
}

/* The scalar members of a JSON object, one per line; long strings as excerpts. */
static void show_json_members(json_t *obj, const char *indent)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        char q[XD_EXCERPT_BUF];
        const char *str = json_is_string(v) ? json_string_value(v) : NULL;
        if (str && strchr(str, '\n'))
            printf("%s%-22s (text of %zu bytes)\n", indent, key, strlen(str));
        else if (str)
            printf("%s%-22s %s\n", indent, key, xd_excerpt(str, q));
        else if (json_is_integer(v))
            printf("%s%-22s %lld\n", indent, key, (long long)json_integer_value(v));
        else if (json_is_real(v))
            printf("%s%-22s %.6g\n", indent, key, json_real_value(v));
        else if (json_is_boolean(v) || json_is_null(v))
            printf("%s%-22s %s\n", indent, key,
                   json_is_null(v) ? "null" : json_is_true(v) ? "true" : "false");
    }
}

/* JSON lines: every non-empty line an object. Prints the count and the last line's figures. */
static int show_jsonl(const char *path, char *text, size_t n)
{
    size_t lines = 0;
    json_t *last = NULL;
    for (char *p = text, *end = text + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_t *o = len ? json_loadb(p, len, 0, NULL) : NULL;
        if (len && !json_is_object(o)) {
            json_decref(o);
            json_decref(last);
            return 0;
        }
        if (o) {
            json_decref(last);
            last = o;
            lines++;
        }
        p += len + 1;
    }
    if (!last) return 0;
    printf("%s: JSON lines, %zu record%s%s; the last:\n", path, lines, lines == 1 ? "" : "s",
           json_object_get(last, "epoch") ? " (metrics, one per epoch)" : "");
    show_json_members(last, "  ");
    json_decref(last);
    return 1;
}

/* A recipe: what it trains and on what, or why it is not a valid recipe. */
static xd_status show_recipe(const char *path, const char *text, size_t n, xd_err *e)
{
    recipe r;
    xd_status s = recipe_parse(path, text, n, NULL, 0, RECIPE_NO_FILE_CHECKS, &r, e);
    if (s != XD_OK) return xd_err_prefix(e, "not a valid recipe");
    nn_model m;
    xd_err me;
    int planned = nn_model_plan(&m, r.model, 1, &me) == XD_OK;
    printf("%s: recipe '%s', valid (files it names not checked)\n", path, r.name);
    printf("  data      %s (train '%s', test '%s', %s, view %s)\n", r.data.path, r.data.train,
           r.data.test, r.data.label, r.data.student_view);
    if (planned)
        printf("  model     %d nodes, %zu parameters, default head '%s'\n", m.n_nodes, m.n_param,
               m.nodes[nn_model_default_head(&m)].name);
    printf("  teachers  %d\n  train     %d epochs, batch %d, seed %ld x %d\n", r.n_teachers,
           r.train.epochs, r.train.batch, r.seed, r.seeds);
    for (int st = 0; st < r.n_stages; st++) {
        printf("  stage %d   %d epochs:", st + 1, r.stages[st].epochs);
        for (int l = 0; l < r.stages[st].n_losses; l++)
            printf(" %s", recipe_loss_kind_names[r.stages[st].losses[l].kind]);
        printf("\n");
    }
    if (planned) nn_model_free(&m);
    recipe_free(&r);
    return XD_OK;
}

/* Text a run or its user writes: a JSON object (summary.json), JSON lines (metrics.jsonl), else
 * a YAML recipe. */
static xd_status show_text(const char *path, xd_err *e)
{
    void *data;
    size_t n;
    xd_status s = io_read_all(path, INSPECT_MAX_TEXT, &data, &n, e);
    if (s != XD_OK) return s;
    char *text = data;
    json_t *obj = json_loadb(text, n, 0, NULL);
    if (json_is_object(obj)) {
        printf("%s: JSON object%s\n", path,
               json_object_get(obj, "best_epoch") ? " (run summary)" : "");
        show_json_members(obj, "  ");
    } else if (!show_jsonl(path, text, n)) {
        s = show_recipe(path, text, n, e);
    }
    json_decref(obj);
    free(data);
    return s;
}

/* A folder: says so, and which files in it inspect reads. */
static xd_status show_folder(const char *path, xd_err *e)
{
    static const char *const known[] = {"dataset.xds", "summary.json", "metrics.jsonl",
                                        "recipe.yaml", "best.safetensors", "last.safetensors"};
    char found[256] = "";
    size_t at = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        char *f = io_path_join(path, known[i]);
        struct stat st;
        if (stat(f, &st) == 0 && S_ISREG(st.st_mode))
            at += (size_t)snprintf(found + at, sizeof found - at, "%s%s", at ? ", " : "", known[i]);
        free(f);
    }
    if (!at) return xd_fail(e, XD_EARG, "%s: is a folder; inspect reads files", path);
    return xd_fail(e, XD_EARG, "%s: is a %s folder; inspect one of its files: %s", path,
                   strstr(found, "dataset.xds") ? "data set" : "run", found);
}

/* One column of a split's listing: a per-example array (i32 or u8) or string table, and the class
 * names of a label column. */
typedef struct {
    const char *name; /* the part after "SPLIT/" */
    const io_tensor *t;
    const io_strings *str;
    const io_strings *classes;
} split_column;

/* Rows inspect --split prints without --all. */
#define SPLIT_HEAD_ROWS 20

/* The columns of split: every section SPLIT/PART that holds one number or string per example
 * (ids, codes, labels, label masks, rationales), images and texts left out but text.LANG when
 * lang names it. *n gets the split's examples. */
static int split_columns(const io_dataset *ds, const char *split, const char *lang,
                         split_column *cols, int max, size_t *n)
{
    const size_t len = strlen(split);
    int nc = 0;
    *n = 0;
    char img[IO_DATASET_NAME_MAX + 1];
    snprintf(img, sizeof img, "%s/image", split);
    const io_tensor *it = io_dataset_find(ds, img);
    if (it && it->ndim >= 1) *n = (size_t)it->shape[0];
    for (size_t i = 0; i < io_dataset_count(ds) && nc < max; i++) {
        const char *sec = io_dataset_section_name(ds, i);
        if (strncmp(sec, split, len) != 0 || sec[len] != '/') continue;
        split_column c = {.name = sec + len + 1};
        if (strncmp(c.name, "text.", 5) == 0 && (!lang || strcmp(c.name + 5, lang) != 0)) continue;
        if (io_dataset_section_kind(ds, i) == IO_SECTION_STRINGS) {
            c.str = io_dataset_find_strings(ds, sec);
        } else {
            c.t = io_dataset_find(ds, sec);
            if (c.t->ndim != 1 || (c.t->dtype != IO_I32 && c.t->dtype != IO_U8)) continue;
        }
        const size_t rows = c.str ? c.str->n : (size_t)c.t->shape[0];
        if (!*n) *n = rows;
        if (rows != *n) continue;
        if (strncmp(c.name, "label", 5) == 0 && (c.name[5] == '\0' || c.name[5] == '.'))
            c.classes = labels_class_table(ds, c.name);
        cols[nc++] = c;
    }
    return nc;
}

/* Row i's value in column c: a number, a string, or a label with its class name. */
static json_t *column_value(const split_column *c, size_t i)
{
    if (c->str) return txt_json_string(io_strings_get(c->str, i, NULL));
    return json_integer(c->t->dtype == IO_I32 ? ((const int32_t *)c->t->data)[i]
                                              : ((const uint8_t *)c->t->data)[i]);
}

static const char *class_of(const split_column *c, size_t i)
{
    if (!c->classes || !c->t || c->t->dtype != IO_I32) return NULL;
    int32_t y = ((const int32_t *)c->t->data)[i];
    return y >= 0 && (size_t)y < c->classes->n ? io_strings_get(c->classes, (size_t)y, NULL) : NULL;
}

/* The examples of a split, one row each (the first SPLIT_HEAD_ROWS unless all), as text or as
 * one JSON object {data, split, examples, rows: [{index, COLUMN: value, COLUMN_class: name}]}. */
static xd_status show_split(const io_dataset *ds, const char *split, const char *lang, int all,
                            int json, xd_err *e)
{
    split_column cols[32];
    size_t n;
    const int nc = split_columns(ds, split, lang, cols, 32, &n);
    if (nc == 0 && n == 0)
        return xd_fail(e, XD_EARG, "%s: no split '%s' (no section %s/...)", io_dataset_path(ds),
                       split, split);
    const size_t shown = all || n < SPLIT_HEAD_ROWS ? n : SPLIT_HEAD_ROWS;
    json_t *rows = json ? json_array() : NULL;
    if (!json) {
        printf("%s: split '%s', %zu examples%s\n  index", io_dataset_path(ds), split, n,
               shown < n ? " (the first listed; --all lists every one)" : "");
        for (int c = 0; c < nc; c++) printf("  %s", cols[c].name);
        printf("\n");
    }
    for (size_t i = 0; i < shown; i++) {
        json_t *row = json_object();
        json_object_set_new(row, "index", json_integer((json_int_t)i));
        if (!json) printf("  %zu", i);
        for (int c = 0; c < nc; c++) {
            json_t *v = column_value(&cols[c], i);
            const char *cls = class_of(&cols[c], i);
            if (json) {
                char key[IO_DATASET_NAME_MAX + 8];
                json_object_set(row, cols[c].name, v);
                snprintf(key, sizeof key, "%s_class", cols[c].name);
                if (cls) json_object_set_new(row, key, txt_json_string(cls));
            } else if (json_is_string(v)) {
                printf("  %s", json_string_value(v));
            } else {
                printf("  %lld%s%s%s", (long long)json_integer_value(v), cls ? " (" : "",
                       cls ? cls : "", cls ? ")" : "");
            }
            json_decref(v);
        }
        if (json) json_array_append_new(rows, row);
        else json_decref(row);
        if (!json) printf("\n");
    }
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "data", txt_json_string(io_dataset_path(ds)));
        json_object_set_new(j, "split", txt_json_string(split));
        json_object_set_new(j, "examples", json_integer((json_int_t)n));
        json_object_set_new(j, "rows", rows);
        char *text = json_dumps(j, JSON_COMPACT);
        printf("%s\n", text);
        free(text);
        json_decref(j);
    }
    return XD_OK;
}

static const char *const channel_names[5] = {"", "grey", "grey+alpha", "RGB", "RGBA"};

static xd_status show_image(const char *path, const unsigned char *h, size_t n, xd_err *e)
{
    io_image img = {0};
    xd_status s = io_image_read(path, NULL, &img, e);
    if (s) return s;
    size_t npx = (size_t)img.w * (size_t)img.h;
    printf("%s: %s image, %d x %d, %d channel%s (%s as decoded)\n", path,
           io_image_kind_name(io_image_sniff(h, n)), img.w, img.h, img.c, img.c == 1 ? "" : "s",
           img.c >= 1 && img.c <= 4 ? channel_names[img.c] : "?");
    for (int c = 0; c < img.c; c++) {
        unsigned lo = 255, hi = 0;
        double sum = 0.0;
        for (size_t i = 0; i < npx; i++) {
            unsigned v = img.px[i * (size_t)img.c + (size_t)c];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            sum += v;
        }
        printf("  channel %d: %u .. %u, mean %.2f\n", c, lo, hi, npx ? sum / (double)npx : 0.0);
    }
    io_image_free(&img);
    return XD_OK;
}

static xd_status show_idx(const char *path, int gz, xd_err *e)
{
    io_idx x;
    xd_status s = io_idx_read(path, 0, &x, e);
    if (s) return s;
    io_tensor t;
    int64_t shape[IO_IDX_MAX_DIMS];
    static const io_dtype types[IO_IDX_TYPE_COUNT] = {IO_U8, IO_I8, IO_I16, IO_I32, IO_F32, IO_F64};
    for (int d = 0; d < x.ndim; d++) shape[d] = x.dims[d];
    io_tensor_set(&t, path, types[x.type], x.ndim, shape, x.data);
    char shape_txt[128];
    io_shape_format(x.ndim, shape, shape_txt, sizeof shape_txt);
    printf("%s: IDX array%s, %s %s, %zu elements\n", path, gz ? " (gzip)" : "",
           io_idx_type_name(x.type), shape_txt, x.count);
    io_tensor_print_values(&t, stdout, "  ");
    io_idx_free(&x);
    return XD_OK;
}

typedef enum { IO_VERIFY, IO_SPLIT, IO_ALL, IO_JSON, IO_TEXT, IO_COUNT } inspect_opt;
static const char *const inspect_options[IO_COUNT] = {
    [IO_VERIFY] = "--verify", [IO_SPLIT] = "--split", [IO_ALL] = "--all", [IO_JSON] = "--json",
    [IO_TEXT] = "--text"};
static_assert(sizeof inspect_options / sizeof inspect_options[0] == IO_COUNT, "name every option");

int cmd_inspect(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: xdistill inspect FILE [--verify]\n"
               "       xdistill inspect DATASET.xds --split NAME [--all] [--json] [--text LANG]\n\n"
               "Prints what FILE holds: a dataset container (metadata, sections), safetensors\n"
               "(metadata, tensors), NPY (dtype, shape), PNG or JPEG (size, channels) or IDX\n"
               "(type, dimensions), with value ranges; a run's summary.json (its figures),\n"
               "metrics.jsonl (epochs, the last one's figures) or a recipe (what it trains, or\n"
               "why it is not valid). The format is recognised by its first bytes. A corrupt or\n"
               "unknown file gets one line naming the problem and exit 1.\n\n"
               "  --verify      for a dataset or safetensors file: check every section or tensor\n"
               "                against its stored checksum, one line each (ok, damaged); exit 1\n"
               "                when one is damaged\n"
               "  --split NAME  a data set's split, one line per example: its index, id, code,\n"
               "                labels (with class names) and label mask (the first %d)\n"
               "  --all         with --split: every example\n"
               "  --json        with --split: one JSON object {data, split, examples, rows}\n"
               "  --text LANG   with --split: the texts of language LANG too (text.LANG)\n",
               SPLIT_HEAD_ROWS);
        return 0;
    }
    const char *path = NULL, *split = NULL, *lang = NULL;
    int set[IO_COUNT] = {0};
    for (int i = 1; i < argc; i++) {
        int o = 0;
        while (o < IO_COUNT && strcmp(argv[i], inspect_options[o]) != 0) o++;
        if (o == IO_COUNT && argv[i][0] == '-' && argv[i][1])
            return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        if (o == IO_COUNT && path) return cli_usage_error("inspect", "needs exactly one FILE");
        if (o == IO_COUNT) path = argv[i];
        else set[o] = 1;
        if (o == IO_SPLIT && i + 1 >= argc) return cli_usage_error("inspect", "--split needs a value");
        if (o == IO_SPLIT) split = argv[++i];
        if (o == IO_TEXT && i + 1 >= argc) return cli_usage_error("inspect", "--text needs a value");
        if (o == IO_TEXT) lang = argv[++i];
    }
    if (!path) return cli_usage_error("inspect", "needs exactly one FILE");
    if ((set[IO_ALL] || set[IO_JSON] || lang) && !split)
        return cli_usage_error("inspect", "--all, --json and --text go with --split NAME");
    if (split && set[IO_VERIFY]) return cli_usage_error("inspect", "--verify or --split, not both");
    const int verify = set[IO_VERIFY];
    xd_err e;
    xd_err_clear(&e);
    struct stat dir;
    if (stat(path, &dir) == 0 && S_ISDIR(dir.st_mode)) {
        show_folder(path, &e);
        return cli_report("inspect", &e);
    }
    int fd;
    if (io_open_regular(path, &fd, NULL, &e) != XD_OK) return cli_report("inspect", &e);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        xd_fail(&e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return cli_report("inspect", &e);
    }
    unsigned char head[16];
    size_t n = fread(head, 1, sizeof head, f);
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fclose(f);
    xd_status s = XD_OK;
    const file_format fmt = sniff(head, n, size > 0 ? (size_t)size : 0);
    if (split && fmt != FMT_DATASET) {
        xd_fail(&e, XD_EARG, "%s: --split lists a split of a data set; this is no data set", path);
        return cli_report("inspect", &e);
    }
    switch (fmt) {
    case FMT_DATASET: {
        io_dataset *ds;
        s = io_dataset_open(path, &ds, &e);
        if (!s) {
            if (verify) s = io_dataset_verify(ds, stdout, &e);
            else if (split) s = show_split(ds, split, lang, set[IO_ALL], set[IO_JSON], &e);
            else io_dataset_describe(ds, stdout);
            io_dataset_close(ds);
        }
        break;
    }
    case FMT_SAFETENSORS: {
        io_st_file *st;
        s = verify ? io_st_open_unverified(path, &st, &e) : io_st_open(path, &st, &e);
        if (!s) {
            if (verify) s = io_st_verify(st, stdout, &e);
            else io_st_describe(st, stdout);
            io_st_close(st);
        }
        break;
    }
    case FMT_NPY: {
        io_npy a;
        s = io_npy_open(path, &a, &e);
        if (!s) io_npy_describe(&a, stdout);
        io_npy_close(&a);
        break;
    }
    case FMT_IMAGE:
        s = show_image(path, head, n, &e);
        break;
    case FMT_IDX_GZ:
        s = show_idx(path, 1, &e);
        break;
    case FMT_IDX:
        s = show_idx(path, 0, &e);
        break;
    case FMT_SAFETENSORS_CUT:
        s = xd_fail(&e, XD_EFORMAT, "%s: truncated safetensors file: its header says %llu bytes of "
                                    "JSON follow the 8-byte length, the file has %ld bytes in all",
                    path, (unsigned long long)io_le_u64(head), size);
        break;
    case FMT_TEXT:
        s = show_text(path, &e);
        break;
    case FMT_UNKNOWN:
    case FMT_COUNT:
        s = xd_fail(&e, XD_EFORMAT, "%s: %s", path,
                    n == 0 ? "empty file"
                           : "unknown format (not a dataset, safetensors, NPY, PNG, JPEG, IDX or text "
                             "file)");
        break;
    }
    return s ? cli_report("inspect", &e) : 0;
}
