/* `xdistill report`: one HTML page for a set of runs (report/page.h), with what an evaluation
 * of each recipe's best checkpoint finds on its data set's test split (distill/scores.h); and
 * `xdistill report --compare`: the comparison table as text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "distill/labels.h"
#include "distill/models.h"
#include "distill/recipe.h"
#include "distill/scores.h"
#include "distill/segment.h"
#include "io/dataset.h"
#include "io/file.h"
#include "io/png.h"
#include "modalities/dense/metrics.h"
#include "report/page.h"
#include "report/runs.h"

/* Mistakes shown per recipe. */
#define REPORT_MISTAKES 12
/* Batch of the evaluation's forward passes. */
#define REPORT_BATCH 256
/* Largest recipe.yaml read back. */
#define REPORT_MAX_RECIPE (1u << 20)

static void report_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill report RUN_DIR... [--out report.html] [--title TEXT] [--no-eval]\n"
            "       xdistill report --compare RUN_DIR RUN_DIR...\n\n"
            "Writes one self-contained HTML page (inline SVG and CSS, images embedded; no\n"
            "script, no network) for the runs found under the folders given: a run folder, a\n"
            "--seeds folder (its seed-N runs), a pipeline folder (its steps in the pipeline's\n"
            "order) or any folder holding run folders. The page has a comparison table (one\n"
            "row per recipe: final test score mean +- std over its seeds, best epochs,\n"
            "images/s, training time; the best row marked), the learning curves (mean over\n"
            "the seeds with a min..max band) and, per run, an evaluation of its\n"
            "best.safetensors on the data set's test split (a recipe's first seed shown, the\n"
            "others folded): confusion matrix, per-class and balanced accuracy (per pixel,\n"
            "with mIoU and per-class IoU, for segment runs), the student's most confident\n"
            "mistakes beside its teacher's answers, segmentation overlays. Each model of a\n"
            "run of several (models:) is a recipe of its own, RECIPE/MODEL, taught by its\n"
            "peer. Runs of one recipe name whose recipes differ in more than the seed (say\n"
            "one trained with a --set) are rows of their own, named \"NAME (FOLDER)\" after\n"
            "their --seeds folder.\n"
            "The data sets and teacher checkpoints are found at the paths the recipes name,\n"
            "relative to the current folder.\n\n"
            "options:\n"
            "  --out FILE    the page (default report.html)\n"
            "  --title TEXT  its heading (default: the folders given)\n"
            "  --no-eval     table and curves only (no checkpoint is run)\n"
            "  --compare     print the comparison table as text instead of writing a page\n");
}

static char *dup_or_null(const char *s) { return s ? xd_xstrdup(s) : NULL; }

/* "NOTE; NOTE" in d->note */
static void add_note(rp_details *d, const char *fmt, const char *arg)
{
    char line[XD_ERR_LEN + 128];
    snprintf(line, sizeof line, fmt, arg);
    if (!d->note) {
        d->note = xd_xstrdup(line);
        return;
    }
    size_t n = strlen(d->note) + strlen(line) + 3;
    d->note = xd_xrealloc(d->note, n);
    strcat(d->note, "; ");
    strcat(d->note, line);
}

/* names of the K classes of checkpoint ckpt's model m: those it stores (ckpt_class_names), else
 * the data set's of its label set (labels_class_table) when as many, else the class number; a
 * damaged list of stored names is noted in d */
static char **class_names(const char *ckpt, const nn_model *m, const io_dataset *ds,
                          const char *label, int K, rp_details *d)
{
    char **out;
    xd_err e;
    if (ckpt_class_names(ckpt, m, &out, &e) != XD_OK) add_note(d, "%s", e.msg);
    else if (out) return out;
    const io_strings *t = labels_class_table(ds, label);
    out = xd_xcalloc((size_t)K, sizeof *out);
    for (int k = 0; k < K; k++) {
        char num[24];
        snprintf(num, sizeof num, "class %d", k);
        out[k] = xd_xstrdup(t && t->n == (size_t)K ? io_strings_get(t, (size_t)k, NULL) : num);
    }
    return out;
}

/* The text example i has in language lang of a text view (text.LANG, or text.* with the data
 * set's languages table); lang < 0: the first language that has one. NULL when none. */
static const char *example_text(const io_dataset *ds, const char *split, const char *view,
                                int lang, size_t i)
{
    const io_strings *langs = io_dataset_find_strings(ds, "languages");
    int star = strcmp(view, "text.*") == 0;
    size_t nl = star ? (langs ? langs->n : 0) : 1;
    for (size_t l = 0; l < nl; l++) {
        if (lang >= 0 && l != (size_t)lang) continue;
        char name[IO_DATASET_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s/text.%s", split,
                 star ? io_strings_get(langs, l, NULL) : view + 5);
        const io_strings *t = io_dataset_find_strings(ds, name);
        const char *s = t ? io_strings_get(t, i, NULL) : NULL;
        if (s && *s) return s;
    }
    return NULL;
}

/* example i of an image split as a PNG */
static xd_status thumbnail(const io_dataset *ds, const char *split, size_t i, rp_example *x,
                           xd_err *e)
{
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/image", split);
    const io_tensor *t;
    xd_status s = io_dataset_require(ds, name, IO_U8, 4, &t, e);
    if (s != XD_OK) return s;
    io_image img = {.w = (int)t->shape[2], .h = (int)t->shape[1], .c = (int)t->shape[3]};
    size_t bytes = (size_t)img.w * img.h * img.c;
    img.px = xd_xmalloc(bytes);
    memcpy(img.px, (const uint8_t *)t->data + i * bytes, bytes);
    s = io_png_encode(&img, name, &x->png, &x->png_n, e);
    free(img.px);
    return s;
}

typedef struct {
    int32_t *pred;
    float *conf;
    size_t rows;
    int K;
    char **classes;
    const char *view;
} answers;

/* a checkpoint's answers on the test split: one row per example (or pair, or pixel) */
static xd_status run_model(const char *ckpt, const io_dataset *ds, const char *split,
                           const char *view, int all_langs, nn_model *m, feed *f, answers *a,
                           xd_err *e)
{
    char *aug = NULL, *text = NULL;
    xd_status s = ckpt_load(ckpt, REPORT_BATCH, m, e);
    if (s != XD_OK) return s;
    if ((s = ckpt_preprocessing(ckpt, &aug, &text, e)) == XD_OK &&
        (s = feed_open(f, ds, split, view, m, aug ? aug : "", text ? text : "", e)) == XD_OK) {
        int head = nn_model_default_head(m);
        a->rows = scores_rows(m, head, f, all_langs);
        a->K = nn_model_node(m, head)->c;
        a->view = view;
        a->pred = xd_xmalloc(sizeof(int32_t) * (a->rows ? a->rows : 1));
        a->conf = xd_xmalloc(sizeof(float) * (a->rows ? a->rows : 1));
        void *input = xd_xmalloc_aligned(feed_example_bytes(f) * REPORT_BATCH);
        s = scores_predict(m, head, f, all_langs, input, a->pred, a->conf, e);
        /* an output that is not finite (XD_ENUM, naming the example) is the checkpoint's fault */
        if (s == XD_ENUM) xd_err_prefix(e, "%s on %s (%s)", ckpt, io_dataset_path(ds), split);
        free(input);
    }
    free(aug);
    free(text);
    return s;
}

static void answers_free(answers *a)
{
    for (int k = 0; a->classes && k < a->K; k++) free(a->classes[k]);
    free(a->classes);
    free(a->pred);
    free(a->conf);
    memset(a, 0, sizeof *a);
}

/* The end that taught model k of a recipe, whose answers stand beside the model's mistakes: the
 * from end of the first loss (stages in order) that learns into model k from a teacher or from
 * another model of the run (a peer, read from the run folder), else the recipe's first teacher. */
typedef struct {
    const char *name, *view;
    char *checkpoint;
    int peer;
} teaching_end;

static int find_teacher(const recipe *r, const char *dir, int k, teaching_end *t)
{
    memset(t, 0, sizeof *t);
    for (int s = 0; s < r->n_stages; s++)
        for (int l = 0; l < r->stages[s].n_losses; l++) {
            const recipe_loss *L = &r->stages[s].losses[l];
            if (L->model != k || (L->teacher < 0 && L->from_model < 0)) continue;
            if (L->teacher >= 0) {
                const recipe_teacher *rt = &r->teachers[L->teacher];
                t->name = rt->name;
                t->view = rt->view ? rt->view : r->data.student_view;
                t->checkpoint = xd_xstrdup(rt->checkpoint);
            } else {
                const recipe_model *rm = &r->models[L->from_model];
                char *file = models_file(r, L->from_model, "best");
                t->name = rm->name;
                t->view = rm->view;
                t->checkpoint = io_path_join(dir, file);
                t->peer = 1;
                free(file);
            }
            return 1;
        }
    if (r->n_teachers == 0) return 0;
    t->name = r->teachers[0].name;
    t->view = r->teachers[0].view ? r->teachers[0].view : r->data.student_view;
    t->checkpoint = xd_xstrdup(r->teachers[0].checkpoint);
    return 1;
}

/* The teacher's answers on the same test examples, beside the student's mistakes. */
static void teacher_answers(const recipe *r, const rp_run *run, const io_dataset *ds,
                            const char *student_label, size_t n, rp_details *d, answers *ta)
{
    char line[XD_ERR_LEN + 256];
    teaching_end t;
    if (!find_teacher(r, run->dir, run->model_index, &t)) {
        d->teacher_note = xd_xstrdup("The recipe has no teacher.");
        return;
    }
    const char *who = t.peer ? "Peer" : "Teacher";
    d->teacher_peer = t.peer;
    if (r->task == RECIPE_TASK_SEGMENT) {
        snprintf(line, sizeof line, "%s '%s' (%s) labels windows of the scenes, not whole "
                 "scenes: the overlays show what the student made of it.", who, t.name, t.checkpoint);
        d->teacher_note = xd_xstrdup(line);
        free(t.checkpoint);
        return;
    }
    nn_model m;
    feed f;
    memset(&f, 0, sizeof f);
    xd_err e;
    xd_err_clear(&e);
    xd_status s = run_model(t.checkpoint, ds, r->data.test, t.view, 0, &m, &f, ta, &e);
    if (s == XD_OK && f.n != n)
        s = xd_fail(&e, XD_ESHAPE, "view %s has %zu test examples, the student's %zu", t.view, f.n, n);
    if (s == XD_OK && ta->rows != n)
        s = xd_fail(&e, XD_ESHAPE, "its default head is not a classifier's");
    if (s != XD_OK) {
        snprintf(line, sizeof line, "%s '%s' (%s): not run: %s", who, t.name, t.checkpoint, e.msg);
        d->teacher_note = xd_xstrdup(line);
        answers_free(ta);
    } else {
        char *label;
        if (ckpt_trained_label(t.checkpoint, &label, &e) != XD_OK) label = xd_xstrdup("label");
        ta->classes = class_names(t.checkpoint, &m, ds, label, ta->K, d);
        int o = snprintf(line, sizeof line, "%s '%s' (%s) reading %s%s", who, t.name,
                         t.checkpoint, t.view, strcmp(t.view, "text.*") == 0 ?
                         " (each example's first language)" : "");
        if (strcmp(label, student_label) != 0)
            snprintf(line + o, sizeof line - (size_t)o, "; its classes are %s", label);
        else
            snprintf(line + o, sizeof line - (size_t)o, ".");
        d->teacher_note = xd_xstrdup(line);
        free(label);
    }
    feed_close(&f);
    nn_model_free(&m);
    free(t.checkpoint);
}

/* index order of the wrong rows, most confident first */
static const float *sort_conf;
static int by_conf(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (sort_conf[x] != sort_conf[y]) return sort_conf[x] < sort_conf[y] ? 1 : -1;
    return (x > y) - (x < y);
}

static void mistakes(const recipe *r, const io_dataset *ds, const feed *f, const answers *sa,
                     const int32_t *truth, const answers *ta, rp_details *d, xd_err *e)
{
    size_t *wrong = xd_xmalloc(sizeof(size_t) * (sa->rows ? sa->rows : 1)), nw = 0;
    for (size_t row = 0; row < sa->rows; row++)
        if (sa->pred[row] >= 0 && sa->pred[row] != truth[row]) wrong[nw++] = row;
    sort_conf = sa->conf;
    qsort(wrong, nw, sizeof *wrong, by_conf);
    int n = nw < REPORT_MISTAKES ? (int)nw : REPORT_MISTAKES;
    d->examples = xd_xcalloc((size_t)(n ? n : 1), sizeof *d->examples);
    const char *sview = sa->view;
    const int multi = strcmp(sview, "text.*") == 0 && f->n_langs > 1;
    for (int k = 0; k < n; k++) {
        rp_example *x = &d->examples[d->n_examples++];
        size_t row = wrong[k], i = row % f->n;
        x->index = i;
        if (f->kind == FEED_IMAGE) {
            if (thumbnail(ds, r->data.test, i, x, e) != XD_OK) break;
        } else {
            x->text = dup_or_null(example_text(ds, r->data.test, sview,
                                               multi ? (int)(row / f->n) : -1, i));
        }
        x->truth = d->classes[truth[row]];
        x->student = d->classes[sa->pred[row]];
        x->student_conf = sa->conf[row];
        if (ta->pred) {
            x->teacher = ta->classes[ta->pred[i]];
            x->teacher_conf = ta->conf[i];
            if (strncmp(ta->view, "text.", 5) == 0 && f->kind == FEED_IMAGE)
                x->teacher_text = dup_or_null(example_text(ds, r->data.test, ta->view, -1, i));
        }
    }
    free(wrong);
}

/* The test rows' true classes, in scores_predict's row order. */
static xd_status truths(const recipe *r, const io_dataset *ds, const feed *f, const nn_node *hn,
                        const answers *sa, int32_t **out, int *K, xd_err *e)
{
    const size_t pos = (size_t)hn->h * hn->w;
    int32_t *t = xd_xmalloc(sizeof(int32_t) * (sa->rows ? sa->rows : 1));
    xd_status s;
    if (r->task == RECIPE_TASK_SEGMENT) {
        const uint8_t *masks;
        if ((s = seg_masks(ds, r->data.test, f->n, hn->h, hn->w, &masks, K, e)) == XD_OK)
            for (size_t q = 0; q < sa->rows; q++) t[q] = masks[q];
    } else {
        char name[IO_DATASET_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s/%s", r->data.test, r->data.label);
        const io_tensor *lt;
        *K = sa->K;
        if ((s = io_dataset_require(ds, name, IO_I32, 1, &lt, e)) == XD_OK &&
            (size_t)lt->shape[0] != f->n)
            s = xd_fail(e, XD_EFORMAT, "%s: %s has %lld labels for %zu examples",
                        io_dataset_path(ds), name, (long long)lt->shape[0], f->n);
        for (size_t q = 0; s == XD_OK && q < sa->rows; q++)
            t[q] = ((const int32_t *)lt->data)[(q / pos) % f->n];
    }
    if (s != XD_OK) free(t);
    else *out = t;
    return s;
}

static void read_overlays(const rp_run *run, rp_details *d)
{
    d->images = xd_xcalloc(SEG_OVERLAYS, sizeof *d->images);
    d->image_n = xd_xcalloc(SEG_OVERLAYS, sizeof *d->image_n);
    for (int k = 0; k < SEG_OVERLAYS; k++) {
        char name[32];
        snprintf(name, sizeof name, "overlays/scene_%d.png", k);
        char *path = io_path_join(run->dir, name);
        xd_err e;
        void *data;
        size_t n;
        if (io_read_all(path, 16u << 20, &data, &n, &e) == XD_OK) {
            d->images[d->n_images] = data;
            d->image_n[d->n_images++] = n;
        }
        free(path);
    }
}

/* What a run's best checkpoint (its model's, in a run of several) does on the test split.
 * Whatever cannot be evaluated (a data set or checkpoint not found here) becomes a note on the
 * page. */
static void evaluate_run(const rp_run *run, rp_details *d)
{
    char *ckpt = NULL;
    char *ypath = io_path_join(run->dir, "recipe.yaml");
    void *yaml = NULL;
    size_t yn;
    recipe r;
    memset(&r, 0, sizeof r);
    io_dataset *ds = NULL;
    nn_model m;
    memset(&m, 0, sizeof m);
    feed f;
    memset(&f, 0, sizeof f);
    answers sa = {0}, ta = {0};
    int32_t *truth = NULL;
    xd_err e;
    xd_err_clear(&e);
    d->segment = run->segment;
    xd_status s = io_read_all(ypath, REPORT_MAX_RECIPE, &yaml, &yn, &e);
    if (s == XD_OK) s = recipe_parse(ypath, yaml, yn, NULL, 0, RECIPE_NO_FILE_CHECKS, &r, &e);
    if (s == XD_OK) s = io_dataset_open(r.data.path, &ds, &e);
    const int mk = run->model_index;
    if (s == XD_OK && mk >= r.n_models)
        s = xd_fail(&e, XD_EFORMAT, "%s: no model %d", ypath, mk + 1);
    if (s == XD_OK) {
        /* a model of several: its own checkpoint, in its own view */
        char *name = models_file(&r, mk, "best");
        ckpt = io_path_join(run->dir, name);
        free(name);
        d->source = xd_xstrdup(ckpt);
        s = run_model(ckpt, ds, r.data.test, r.models[mk].view, 1, &m, &f, &sa, &e);
    }
    int K = 0;
    if (s == XD_OK)
        s = truths(&r, ds, &f, nn_model_node(&m, nn_model_default_head(&m)), &sa, &truth, &K, &e);
    if (s == XD_OK && K != sa.K)
        s = xd_fail(&e, XD_ESHAPE, "%s: the head has %d classes, the data set %d", ckpt, sa.K, K);
    if (s == XD_OK) {
        scores sc;
        scores_init(&sc, K);
        scores_add(&sc, sa.pred, truth, sa.rows);
        d->K = K;
        d->classes = class_names(ckpt, &m, ds, r.task == RECIPE_TASK_SEGMENT ? "label.mask"
                                                                              : r.data.label, K, d);
        d->confusion = xd_xmalloc(sizeof(uint64_t) * (size_t)K * K);
        memcpy(d->confusion, sc.count, sizeof(uint64_t) * (size_t)K * K);
        d->support = xd_xmalloc(sizeof(uint64_t) * (size_t)K);
        d->class_acc = xd_xmalloc(sizeof(double) * (size_t)K);
        if (r.task == RECIPE_TASK_SEGMENT) d->class_iou = xd_xmalloc(sizeof(double) * (size_t)K);
        for (int k = 0; k < K; k++) {
            d->support[k] = scores_support(&sc, k);
            d->class_acc[k] = scores_class_accuracy(&sc, k);
            if (d->class_iou) d->class_iou[k] = scores_class_iou(&sc, k);
        }
        d->accuracy = scores_accuracy(&sc);
        if (r.task == RECIPE_TASK_SEGMENT) {
            /* the mean over the classes present, as the trainer's evaluation takes it */
            dense_confusion dc = {.n_classes = K, .counts = sc.count};
            d->miou = dense_mean_iou(&dc, NULL, NULL);
        }
        d->balanced_accuracy = scores_balanced_accuracy(&sc);
        d->rows = sc.total;
        d->lang_pairs = r.task != RECIPE_TASK_SEGMENT && sa.rows > f.n;
        scores_free(&sc);
        teacher_answers(&r, run, ds, r.data.label, f.n, d, &ta);
        if (r.task == RECIPE_TASK_SEGMENT) read_overlays(run, d);
        else mistakes(&r, ds, &f, &sa, truth, &ta, d, &e);
        /* the mistakes point at the teacher's class names: the page owns them now */
        d->teacher_classes = ta.classes;
        d->n_teacher_classes = ta.classes ? ta.K : 0;
        ta.classes = NULL;
    }
    if (e.msg[0]) add_note(d, "Not evaluated: %s", e.msg);
    free(truth);
    answers_free(&sa);
    answers_free(&ta);
    feed_close(&f);
    nn_model_free(&m);
    if (ds) io_dataset_close(ds);
    recipe_free(&r);
    free(yaml);
    free(ypath);
    free(ckpt);
}

/* The page may go to a new path or over a page written before, never over another file (a run's
 * checkpoint, say). */
static xd_status page_or_new(const char *out, xd_err *e)
{
    static const char start[] = "<!DOCTYPE html>";
    char head[sizeof start - 1];
    struct stat st;
    int fd;
    if (stat(out, &st) != 0) return XD_OK;
    xd_status s = io_open_regular(out, &fd, NULL, e);
    if (s != XD_OK) return s;
    const ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n == (ssize_t)sizeof head && memcmp(head, start, sizeof head) == 0) return XD_OK;
    return xd_fail(e, XD_EARG, "%s: exists and is no report page; give --out a new path", out);
}

int cmd_report(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        report_usage(stdout);
        return 0;
    }
    const char *out = "report.html", *title = NULL;
    const char **dirs = xd_xcalloc((size_t)argc, sizeof *dirs);
    int n_dirs = 0, compare = 0, no_eval = 0, rc = 0, noted = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (strcmp(a, "--out") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--title") == 0 && v) title = argv[++i];
        else if (strcmp(a, "--compare") == 0) compare = 1;
        else if (strcmp(a, "--no-eval") == 0) no_eval = 1;
        else if (a[0] == '-') rc = cli_usage_error("report", "unknown option '%s'", a);
        else dirs[n_dirs++] = a;
    }
    if (!rc && n_dirs == 0) rc = cli_usage_error("report", "give one or more run folders");
    if (!rc && compare && n_dirs < 2) rc = cli_usage_error("report", "--compare takes two or more run folders");
    if (rc) {
        free(dirs);
        return rc;
    }
    rp_set set;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = compare ? XD_OK : page_or_new(out, &e);
    if (s == XD_OK) s = rp_set_load(dirs, n_dirs, &set, &e);
    if (s == XD_OK && compare) {
        rp_write_compare(stdout, &set);
    } else if (s == XD_OK) {
        rp_details *det = xd_xcalloc((size_t)set.n_runs, sizeof *det);
        for (int i = 0; i < set.n_runs && !no_eval; i++) {
            const rp_run *run = &set.runs[i];
            evaluate_run(run, &det[i]);
            if (det[i].note) {
                fprintf(stderr, "xdistill report: %s (%s): %s\n", run->name, run->dir, det[i].note);
                noted++;
            }
        }
        char deftitle[256];
        int o = snprintf(deftitle, sizeof deftitle, "xdistill report:");
        for (int i = 0; i < n_dirs && o < (int)sizeof deftitle; i++)
            o += snprintf(deftitle + o, sizeof deftitle - (size_t)o, " %s", dirs[i]);
        s = rp_write_page(out, title ? title : deftitle, &set, no_eval ? NULL : det, &e);
        for (int i = 0; i < set.n_runs; i++) rp_details_free(&det[i]);
        free(det);
        if (s == XD_OK)
            printf("report: %s (%d runs of %d recipes)\n", out, set.n_runs, set.n_groups);
    }
    if (s == XD_OK) rp_set_free(&set);
    free(dirs);
    if (s != XD_OK) return cli_report("report", &e);
    /* the page is whole and says what it could not show; the exit status says it too */
    if (noted)
        fprintf(stderr, "xdistill report: %d run%s with a problem (above; the page shows it)\n",
                noted, noted == 1 ? "" : "s");
    return noted ? 1 : 0;
}
