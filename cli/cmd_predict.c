/* `xdistill predict`: a trained checkpoint on image files, manifests or lines of text, through
 * the library's inference API (include/xdistill/infer.h), one JSON line per input.
 *
 * Inputs go in batches: a batch's inputs are read and prepared in parallel, then predicted in one
 * pass. A bad input is reported on stderr and skipped (with --strict it ends the run), and the
 * exit status says whether anything was skipped. */
#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "include/xdistill/xdistill.h"
#include "io/file.h"
#include "io/image.h"
#include "io/manifest.h"
#include "io/png.h"
#include "modalities/text/utf8.h"

/* Exit statuses besides 0, 1 and 2 (cli.h). */
#define PREDICT_SKIPPED 3

typedef enum { PO_TOP, PO_OUT, PO_STRICT, PO_BATCH, PO_EXIT, PO_RATIONALE, PO_COUNT } predict_opt;
static const cli_option predict_options[] = {
    [PO_TOP] = {"--top", 1},
    [PO_OUT] = {"--out", 1},
    [PO_STRICT] = {"--strict", 0},
    [PO_BATCH] = {"--batch", 1},
    [PO_EXIT] = {"--exit", 1},
    [PO_RATIONALE] = {"--rationale", 1},
};
static_assert(sizeof predict_options / sizeof predict_options[0] == PO_COUNT, "name every option");

static void predict_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill predict MODEL.safetensors [INPUT ...] [--top K] [--out DIR]\n"
            "                        [--strict] [--batch N] [--exit HEAD] [--rationale DEC]\n\n"
            "Runs a trained checkpoint on its inputs and writes one JSON line per input to\n"
            "standard output, in the order given:\n"
            "  {\"input\": \"cat.png\", \"top\": [{\"label\": \"Animals\", \"class\": 3, \"p\": 0.93}, ...]}\n"
            "INPUT is an image file (PNG or JPEG, any size), a manifest (.tsv or .jsonl, as\n"
            "`prepare manifest` reads: its images, or its texts for a text model), or - for\n"
            "lines of standard input (one text per line; the default for a text model without\n"
            "INPUT). Images are prepared as the model's training data was: over white, in the\n"
            "channels of its training images, centre-cropped to a square when those were square,\n"
            "resized to their size, then resized, cropped and normalised as its recipe's\n"
            "data.augment says; texts are tokenised with its data.text. Labels are the class\n"
            "names stored in the checkpoint (class numbers for checkpoints without names).\n"
            "An int8 checkpoint (xdistill quantize) runs on integers.\n"
            "A segmentation model writes one mask PNG per image into DIR (--out, required),\n"
            "named after the image file (NAME.png, grey level = class number, at the image's\n"
            "own size: each pixel takes the class of the output position it falls on), and\n"
            "prints {\"input\": ..., \"mask\": \"DIR/NAME.png\"}.\n\n"
            "options:\n"
            "  --top K     the K most probable classes (default 5, at most the model's classes)\n"
            "  --out DIR   folder of the masks of a segmentation model (made when missing)\n"
            "  --strict    the first bad input ends the run (default: reported and skipped)\n"
            "  --batch N   inputs prepared and predicted together (default 64)\n"
            "  --exit HEAD the predictions of this head (an early exit: the layers after it are\n"
            "              not run); default: the model's first head\n"
            "  --rationale DEC  also decode each input's rationale (greedy) with the decoder a\n"
            "              rationale loss trained (DIR/best.rationale.safetensors beside\n"
            "              DIR/best.safetensors): \"rationale\": \"words ...\" in each line\n\n"
            "A bad input (a file that does not decode, a text given to an image model or an\n"
            "image to a text model, a mask name already used, a line of standard input that is\n"
            "not UTF-8, holds a NUL byte or is longer than 65536 bytes: <stdin>:LINE) is\n"
            "reported on standard error in one line naming it and skipped. A file name that is\n"
            "not UTF-8 is written in the JSON with U+FFFD for each invalid byte sequence.\n\n"
            "exit status: 0 every input predicted; 1 failure (the model, the output, or a bad\n"
            "input with --strict); 2 usage error; 3 done, but some inputs were skipped.\n");
}

/* One input: a file name or a text; name is what messages and the JSON line show. */
typedef struct {
    char *name;
    int text;
} item;

typedef struct {
    item *v;
    size_t n, cap;
} item_list;

static void items_add(item_list *l, const char *name, int text)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = xd_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (item){xd_xstrdup(name), text};
}

static void items_clear(item_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].name);
    l->n = 0;
}

/* What a run needs besides the model: options, the masks written, the counts. */
typedef struct {
    xdistill_model *m;
    xdistill_batch *b;
    float *probs;
    int top, strict;
    int rationale;  /* lines carry the decoder's rationale */
    const char *out_dir;
    char **masks; /* mask file names written so far */
    size_t n_masks;
    size_t skipped;
} run;

static void report_bad(run *r, const char *msg)
{
    fprintf(stderr, "xdistill predict: %s%s\n", msg, r->strict ? "" : " (skipped)");
    r->skipped++;
}

/* DIR/NAME.png for an image file; NULL (and err filled) when another input took that name. */
static char *mask_path(run *r, const char *input, xdistill_error *err)
{
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    char *stem = xd_xstrdup(base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = '\0';
    char *file = xd_xmalloc(strlen(stem) + 5);
    sprintf(file, "%s.png", stem);
    free(stem);
    for (size_t i = 0; i < r->n_masks; i++)
        if (strcmp(r->masks[i], file) == 0) {
            xd_err e; /* one line, as every message: the names may hold line breaks */
            err->code = (xdistill_status)xd_fail(&e, XD_EARG, "%s: its mask %s/%s is another "
                                                 "input's; give images of different file names",
                                                 input, r->out_dir, file);
            memcpy(err->message, e.msg, sizeof err->message);
            free(file);
            return NULL;
        }
    r->masks = xd_xrealloc(r->masks, (r->n_masks + 1) * sizeof *r->masks);
    r->masks[r->n_masks++] = file;
    return io_path_join(r->out_dir, file);
}

/* Writes a segmentation model's mask of slot's image at that image's size, from its
 * probabilities p (H, W, K). */
static xdistill_status write_mask(run *r, int slot, const char *input, const float *p, json_t *line,
                                  xdistill_error *err)
{
    char *path = mask_path(r, input, err);
    if (!path) return err->code;
    io_image img = {.c = 1};
    xdistill_batch_image_size(r->b, slot, &img.h, &img.w);
    img.px = xd_xmalloc((size_t)img.w * (size_t)img.h);
    xdistill_status s = xdistill_mask(r->b, slot, p, img.px, err);
    xd_err e;
    xd_err_clear(&e);
    const char *in[] = {input};
    if (s == XDISTILL_OK &&
        (io_check_output(path, in, 1, &e) != XD_OK || io_png_write(path, &img, &e) != XD_OK)) {
        s = err->code = (xdistill_status)e.code;
        memcpy(err->message, e.msg, sizeof err->message);
    }
    json_object_set_new(line, "mask", txt_json_string(path));
    free(img.px);
    free(path);
    return s;
}

/* The JSON line of one input's probabilities p. */
static void add_top(run *r, const float *p, json_t *line)
{
    int classes[256];
    const int k = xdistill_top(p, xdistill_num_classes(r->m), r->top, classes);
    json_t *top = json_array();
    for (int i = 0; i < k; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "label", txt_json_string(xdistill_class_name(r->m, classes[i])));
        json_object_set_new(o, "class", json_integer(classes[i]));
        json_object_set_new(o, "p", json_real(p[classes[i]]));
        json_array_append_new(top, o);
    }
    json_object_set_new(line, "top", top);
}

/* Prepares the n items in parallel, predicts the good ones and prints their lines. Returns 0, or
 * 1 after a fatal error (printed). */
static int run_batch(run *r, const item *v, int n)
{
    xdistill_error *errs = xd_xcalloc((size_t)n, sizeof *errs);
    xdistill_status *st = xd_xcalloc((size_t)n, sizeof *st);
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++)
        st[i] = v[i].text ? xdistill_batch_set_text(r->b, i, v[i].name, strlen(v[i].name),
                                                    v[i].name, &errs[i])
                          : xdistill_batch_set_image_file(r->b, i, v[i].name, &errs[i]);
    int rc = 0, good = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (st[i] == XDISTILL_OK) {
            good++;
            continue;
        }
        report_bad(r, errs[i].message);
        if (r->strict) rc = 1;
    }
    xdistill_error err;
    if (!rc && good && xdistill_predict(r->m, r->b, n, r->probs, &err) != XDISTILL_OK) {
        fprintf(stderr, "xdistill predict: %s\n", err.message);
        rc = 1;
    }
    const size_t per = xdistill_outputs(r->m);
    for (int i = 0; i < n && !rc && good; i++) {
        if (st[i] != XDISTILL_OK) continue;
        json_t *line = json_object();
        json_object_set_new(line, "input", txt_json_string(v[i].name));
        const float *p = r->probs + (size_t)i * per;
        if (xdistill_task_of(r->m) == XDISTILL_SEGMENT) {
            if (write_mask(r, i, v[i].name, p, line, &err) != XDISTILL_OK) {
                json_decref(line);
                /* a name clash is the input's fault; a failed write ends the run */
                if (err.code != XDISTILL_EARG || r->strict) {
                    fprintf(stderr, "xdistill predict: %s\n", err.message);
                    rc = 1;
                } else {
                    report_bad(r, err.message);
                }
                continue;
            }
        } else {
            add_top(r, p, line);
        }
        if (r->rationale) {
            char words[4096];
            xdistill_rationale(r->m, i, words, sizeof words);
            json_object_set_new(line, "rationale", txt_json_string(words));
        }
        char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
        json_decref(line);
        if (!text || puts(text) == EOF) {
            fprintf(stderr, "xdistill predict: standard output: cannot write\n");
            rc = 1;
        }
        free(text);
    }
    if (!rc && fflush(stdout) != 0) {
        fprintf(stderr, "xdistill predict: standard output: cannot write\n");
        rc = 1;
    }
    free(errs);
    free(st);
    return rc;
}

/* Adds a manifest's images (or texts for a text model) to l; 0, or 1 when it cannot be read. */
static int add_manifest(run *r, const char *path, item_list *l)
{
    io_manifest mf = {0};
    xd_err e;
    xd_err_clear(&e);
    if (io_manifest_read(path, NULL, &mf, &e) != XD_OK) {
        io_manifest_free(&mf);
        report_bad(r, e.msg);
        return 1;
    }
    const int texts = xdistill_reads(r->m) == XDISTILL_READS_TEXTS;
    for (size_t i = 0; i < mf.n; i++) items_add(l, texts ? mf.texts[i] : mf.paths[i], texts);
    io_manifest_free(&mf);
    return 0;
}

/* Runs the items of l in batches and empties it. */
static int run_items(run *r, item_list *l)
{
    const int B = xdistill_max_batch(r->m);
    int rc = 0;
    for (size_t i0 = 0; i0 < l->n && !rc; i0 += (size_t)B)
        rc = run_batch(r, l->v + i0, l->n - i0 < (size_t)B ? (int)(l->n - i0) : B);
    items_clear(l);
    return rc;
}

/* The next line of f without its '\n' into *buf (NUL-terminated, *cap bytes, grown as needed),
 * at most max + 1 bytes of it kept: *len is the line's whole length, the bytes past those read
 * and dropped. Returns 0 at the end of the input. */
static int read_line_max(FILE *f, size_t max, char **buf, size_t *cap, size_t *len)
{
    int c = getc_unlocked(f);
    if (c == EOF) return 0;
    size_t n = 0;
    for (; c != EOF && c != '\n'; c = getc_unlocked(f), n++) {
        if (n > max) continue;
        if (n + 1 >= *cap) {
            *cap = *cap ? 2 * *cap : 256;
            if (*cap > max + 2) *cap = max + 2;
            *buf = xd_xrealloc(*buf, *cap);
        }
        (*buf)[n] = (char)c;
    }
    if (!*buf) *buf = xd_xmalloc(*cap = 1);
    (*buf)[n > max ? max + 1 : n] = '\0';
    *len = n;
    return 1;
}

/* Lines of standard input as texts, a batch at a time (a pipeline sees answers as it goes). A
 * line that is not UTF-8, or holds a NUL byte (the text would end there), or is longer than a
 * manifest's line may be, is a bad input as a manifest's would be: "<stdin>:LINE: ...", the line
 * itself not quoted. Of a line too long, no more than the limit is kept in memory. */
static int run_stdin(run *r, item_list *l)
{
    const size_t max = io_manifest_default_limits().max_line;
    char *line = NULL;
    size_t cap = 0, lineno = 0, len;
    int rc = 0;
    while (!rc && read_line_max(stdin, max, &line, &cap, &len)) {
        lineno++;
        if (len <= max + 1)
            while (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
        xd_err e;
        xd_err_clear(&e);
        if (len > max)
            xd_fail(&e, XD_EFORMAT, "<stdin>:%zu: line of %zu bytes, more than the %zu allowed",
                    lineno, len, max);
        if (len > max || io_manifest_check_line("<stdin>", lineno, line, len, &e) != XD_OK) {
            report_bad(r, e.msg);
            rc = r->strict;
            continue;
        }
        items_add(l, line, 1);
        if (l->n == (size_t)xdistill_max_batch(r->m)) rc = run_items(r, l);
    }
    free(line);
    return rc ? rc : run_items(r, l);
}

int cmd_predict(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        predict_usage(stdout);
        return 0;
    }
    const char *val[PO_COUNT] = {0}, *model = NULL;
    const char **inputs = xd_xcalloc((size_t)argc, sizeof *inputs);
    int n_inputs = 0, rc = 0;
    long top = 5, batch = 64;
    for (int i = 1; i < argc && !rc; i++) {
        const char *v = "";
        int o = cli_next_option("predict", predict_options, PO_COUNT, argc, argv, &i, &v, &rc);
        if (o == -1 && !model) model = argv[i];
        else if (o == -1) inputs[n_inputs++] = argv[i];
        else if (o >= 0) val[o] = v;
    }
    if (!rc && !model) rc = cli_usage_error("predict", "give a checkpoint and inputs");
    if (!rc && val[PO_TOP] && cli_parse_long(val[PO_TOP], 1, 256, &top))
        rc = cli_usage_error("predict", "--top takes 1..256");
    if (!rc && val[PO_BATCH] && cli_parse_long(val[PO_BATCH], 1, 4096, &batch))
        rc = cli_usage_error("predict", "--batch takes 1..4096");
    run r = {.top = (int)top, .strict = val[PO_STRICT] != NULL, .out_dir = val[PO_OUT]};
    xdistill_error err;
    if (!rc && xdistill_load(model, (int)batch, &r.m, &err) != XDISTILL_OK) {
        fprintf(stderr, "xdistill predict: %s\n", err.message);
        rc = 1;
    }
    if (!rc && val[PO_EXIT] && xdistill_use_exit(r.m, val[PO_EXIT], &err) != XDISTILL_OK) {
        fprintf(stderr, "xdistill predict: %s\n", err.message);
        rc = 1;
    }
    if (!rc && val[PO_RATIONALE] &&
        xdistill_use_rationale(r.m, val[PO_RATIONALE], &err) != XDISTILL_OK) {
        fprintf(stderr, "xdistill predict: %s\n", err.message);
        rc = 1;
    }
    r.rationale = val[PO_RATIONALE] != NULL;
    const int texts = r.m && xdistill_reads(r.m) == XDISTILL_READS_TEXTS;
    const int segment = r.m && xdistill_task_of(r.m) == XDISTILL_SEGMENT;
    if (!rc && !n_inputs && !texts)
        rc = cli_usage_error("predict", "%s reads images: give image files or manifests", model);
    if (!rc && segment && xdistill_num_classes(r.m) > 256) {
        fprintf(stderr, "xdistill predict: %s: %d classes; a mask PNG holds 256 at most\n", model,
                xdistill_num_classes(r.m));
        rc = 1;
    }
    if (!rc && segment && !r.out_dir)
        rc = cli_usage_error("predict", "%s is a segmentation model: give --out DIR for its "
                             "masks", model);
    xd_err e;
    xd_err_clear(&e);
    if (!rc && segment && io_mkdir_p(r.out_dir, &e) != XD_OK) rc = cli_report("predict", &e);
    if (!rc) {
        if (r.top > xdistill_num_classes(r.m)) r.top = xdistill_num_classes(r.m);
        r.b = xdistill_batch_new(r.m);
        r.probs = malloc(sizeof(float) * (size_t)batch * xdistill_outputs(r.m));
        if (!r.b || !r.probs) {
            fprintf(stderr, "xdistill predict: no memory for a batch of %ld inputs\n", batch);
            rc = 1;
        }
    }
    item_list l = {0};
    for (int i = 0; i < n_inputs && !rc; i++) {
        const char *in = inputs[i];
        if (strcmp(in, "-") == 0) {
            rc = run_items(&r, &l);
            if (!rc) rc = run_stdin(&r, &l);
        } else if (io_path_has_suffix(in, ".tsv") || io_path_has_suffix(in, ".jsonl")) {
            rc = add_manifest(&r, in, &l) && r.strict;
        } else {
            items_add(&l, in, 0);
        }
        if (!rc && l.n >= (size_t)batch) rc = run_items(&r, &l);
    }
    if (!rc && !n_inputs && texts) rc = run_stdin(&r, &l);
    if (!rc) rc = run_items(&r, &l);
    items_clear(&l);
    free(l.v);
    for (size_t i = 0; i < r.n_masks; i++) free(r.masks[i]);
    free(r.masks);
    free(r.probs);
    xdistill_batch_free(r.b);
    xdistill_free(r.m);
    free(inputs);
    return rc ? rc : r.skipped ? PREDICT_SKIPPED : 0;
}
