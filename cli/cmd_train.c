/* `xdistill train`: runs a recipe, once or over several seeds, and `xdistill eval`: scores a
 * checkpoint on a data set split. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/dist.h"
#include "core/mem.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/exits.h"
#include "distill/feed.h"
#include "distill/labels.h"
#include "distill/recipe.h"
#include "distill/runlock.h"
#include "distill/runs.h"
#include "distill/scores.h"
#include "distill/segment.h"
#include "distill/trainer.h"
#include "io/file.h"
#include "modalities/text/utf8.h"

typedef enum {
    TO_OUT, TO_SET, TO_RESUME, TO_SEED, TO_SEEDS, TO_STOP_AFTER, TO_QUIET, TO_SPAN, TO_COUNT
} train_opt;
static const cli_option train_options[] = {
    [TO_OUT] = {"--out", 1},     [TO_SET] = {"--set", 1, 1},
    [TO_RESUME] = {"--resume", 1}, [TO_SEED] = {"--seed", 1},
    [TO_SEEDS] = {"--seeds", 1}, [TO_STOP_AFTER] = {"--stop-after", 1},
    [TO_QUIET] = {"--quiet", 0}, [TO_SPAN] = {"--progress-span", 1},
};
static_assert(sizeof train_options / sizeof train_options[0] == TO_COUNT, "name every option");

static void train_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill train RECIPE.yaml [--out DIR] [--set key.path=value ...]\n"
            "                      [--seed N] [--seeds K] [--stop-after N] [--quiet]\n"
            "       xdistill train [RECIPE.yaml] --resume DIR [--set KEY=V ...]\n\n"
            "Trains what the recipe describes (a teacher, a student, any distillation, several\n"
            "models learning together; see docs/RECIPES.md). Writes DIR/metrics.jsonl (one line\n"
            "per epoch), DIR/summary.json, DIR/last.safetensors, DIR/best.safetensors,\n"
            "DIR/resume.safetensors and DIR/recipe.yaml (with several models\n"
            "DIR/NAME.last.safetensors and DIR/NAME.best.safetensors for each; with a\n"
            "rationale loss its decoder in DIR/last.rationale.safetensors and\n"
            "DIR/best.rationale.safetensors); DIR/run.lock\n"
            "keeps a second run out of DIR while this one lives. The best checkpoint is the\n"
            "epoch with the best score on the validation split (data.val_fraction, data.val);\n"
            "without one nothing is chosen and it is the last evaluated epoch (the test split\n"
            "chooses nothing). Under mpirun -np N it runs data-parallel over\n"
            "the N ranks (rank 0 writes; --resume needs the same N; see README.md).\n\n"
            "options:\n"
            "  --out DIR        output folder, exactly (default runs/NAME/seed-N, NAME from the\n"
            "                   recipe, N the seed)\n"
            "  --set K=V        override a recipe key, e.g. --set train.epochs=3 (repeatable)\n"
            "  --seed N         seed of the run (default: the recipe's)\n"
            "  --seeds K        K runs with seeds N, N+1, ... in DIR/seed-N; DIR/summary.json\n"
            "                   gives mean and standard deviation\n"
            "  --resume DIR     continue an interrupted run in DIR exactly where its last\n"
            "                   finished epoch left it (the recipe defaults to DIR/recipe.yaml; a\n"
            "                   recipe given must be the run's); a finished run is left as it is.\n"
            "                   With --resume, --set may only change");
    for (int i = 0; i < recipe_n_resume_keys; i++)
        fprintf(f, "%s %s", i ? "," : "", recipe_resume_keys[i]);
    fprintf(f,
            "\n"
            "  --stop-after N   stop once N epochs are done (continue later with --resume)\n"
            "  --quiet          no progress output\n"
            "  --progress-span FROM,TO,START\n"
            "                   this run is the FROM..TO share (0..1) of a longer job that began\n"
            "                   at START (seconds since 1970, as date +%%s prints): the bar and\n"
            "                   its ETA cover the whole job, and epoch lines are left out\n");
}

/* "--set K=V" words with --resume: only the keys that may change on resume. */
static int check_resume_sets(const char *const *sets, int n)
{
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(sets[i], '=');
        char key[128];
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - sets[i]) : (int)strlen(sets[i]), sets[i]);
        if (recipe_is_resume_key(key)) continue;
        char list[256] = "";
        for (int k = 0; k < recipe_n_resume_keys; k++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "",
                     recipe_resume_keys[k]);
        return cli_usage_error("train", "--set %s: '%s' cannot change when a run is resumed (it "
                               "would make another run of the first epochs); only %s can", sets[i],
                               key, list);
    }
    return 0;
}

/* A multi-seed run's recipe in its folder (first seed, count, so that --resume DIR finds it),
 * written with the first seed's first files; the folder is kept once a seed has an epoch to
 * resume from: a run that fails or is stopped by a signal before leaves it as it found it. */
typedef struct {
    const recipe *r;
    const char *base;
    int needed; /* a new run, or a resume whose resume keys changed, not yet written */
    int kept;   /* a seed's run has an epoch to resume from */
    int temp;   /* what SIGINT/SIGTERM remove until then (runlock_temp_add) */
} seeds_recipe;

static xd_status write_seeds_recipe(void *ctx, xd_err *e)
{
    seeds_recipe *sr = ctx;
    if (!sr->needed) return XD_OK;
    char *ypath = io_path_join(sr->base, "recipe.yaml");
    xd_status s = recipe_save(sr->r, ypath, e);
    free(ypath);
    sr->needed = s != XD_OK;
    return s;
}

static void keep_seeds_folder(void *ctx)
{
    seeds_recipe *sr = ctx;
    sr->kept = 1;
    io_temp_drop(sr->temp);
    sr->temp = -1;
}

int cmd_train(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        train_usage(stdout);
        return 0;
    }
    const char *recipe_path = NULL, *out = NULL, *resume_dir = NULL;
    const char **sets = xd_xcalloc((size_t)argc, sizeof *sets);
    int n_sets = 0, quiet = 0;
    progress_span span = {0}, *spanp = NULL;
    long seed = -1, seeds = 0, stop_after = 0;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *v = NULL;
        int o = cli_next_option("train", train_options, TO_COUNT, argc, argv, &i, &v, &rc);
        if (o == -1 && recipe_path)
            rc = cli_usage_error("train", "one recipe at a time ('%s' and '%s')", recipe_path,
                                 argv[i]);
        else if (o == -1)
            recipe_path = argv[i];
        if (o < 0) continue;
        switch ((train_opt)o) {
        case TO_OUT: out = v; break;
        case TO_SET: sets[n_sets++] = v; break;
        case TO_RESUME: resume_dir = v; break;
        case TO_SEED:
            if (cli_parse_long(v, 0, 1L << 40, &seed))
                rc = cli_usage_error("train", "--seed takes a number in 0..%ld", 1L << 40);
            break;
        case TO_SEEDS:
            if (cli_parse_long(v, 1, 64, &seeds)) rc = cli_usage_error("train", "--seeds takes 1..64");
            break;
        case TO_STOP_AFTER:
            if (cli_parse_long(v, 1, 1 << 20, &stop_after))
                rc = cli_usage_error("train", "--stop-after takes a number of epochs >= 1");
            break;
        case TO_QUIET: quiet = 1; break;
        case TO_SPAN:
            if (progress_span_parse(v, &span))
                rc = cli_usage_error("train", "--progress-span takes FROM,TO,START with "
                                     "0 <= FROM < TO <= 1 and START > 0");
            spanp = &span;
            break;
        case TO_COUNT: break;
        }
    }
    if (!rc && out && resume_dir)
        rc = cli_usage_error("train", "--resume DIR continues the run in DIR; --out does not "
                                      "apply");
    if (!rc && !recipe_path && !resume_dir) rc = cli_usage_error("train", "give a recipe file");
    if (!rc) rc = cli_sets_once("train", sets, n_sets);
    if (!rc && resume_dir) rc = check_resume_sets(sets, n_sets);
    if (rc) {
        free(sets);
        return rc;
    }
    recipe r, stored;
    memset(&stored, 0, sizeof stored);
    xd_err e;
    xd_err_clear(&e);
    char *stored_path = resume_dir ? io_path_join(resume_dir, "recipe.yaml") : NULL;
    xd_status s = XD_OK;
    if (resume_dir && (s = recipe_load(stored_path, NULL, 0, &stored, &e)) != XD_OK)
        xd_err_prefix(&e, "%s: not a run folder to resume", resume_dir);
    if (s == XD_OK) s = recipe_load(recipe_path ? recipe_path : stored_path, sets, n_sets, &r, &e);
    if (s != XD_OK) {
        recipe_free(&stored);
        free(stored_path);
        free(sets);
        return cli_report("train", &e);
    }
    /* under mpirun, rank 0 alone prints and writes the run's files */
    const int root = dist_rank() == 0;
    if (!root) quiet = 1;
    /* a resumed run keeps its seeds unless the command line names them */
    if (seed < 0) seed = resume_dir ? stored.seed : r.seed;
    if (!seeds) seeds = resume_dir ? stored.seeds : r.seeds;
    /* the recipe checks its own seed and seeds; the command line may pair its seed with a count */
    if (seed > LONG_MAX - (seeds - 1)) {
        recipe_free(&r);
        recipe_free(&stored);
        free(stored_path);
        free(sets);
        return cli_usage_error("train", "seed %ld with --seeds %ld: the last seed, seed + seeds "
                                        "- 1, overflows", seed, seeds);
    }
    r.seed = seed;
    r.seeds = (int)seeds;
    int recipe_changed = 0;
    if (resume_dir && (s = recipe_check_resume(&r, &stored, &e)) == XD_OK) {
        char *a = recipe_to_yaml(&r), *b = recipe_to_yaml(&stored);
        recipe_changed = strcmp(a, b) != 0;
        free(a);
        free(b);
    }
    if (s == XD_OK && !quiet && !r.data.val && r.data.val_fraction <= 0.0f)
        fprintf(stderr, "note: no validation split, so nothing chooses an epoch: best.safetensors "
                        "is the last evaluated one; set data.val_fraction (e.g. 0.1) to choose it "
                        "on held-out training examples\n");
    /* without --out, every seed has its folder runs/NAME/seed-N, as --seeds makes them */
    char *def_out = NULL;
    const char *base = resume_dir ? resume_dir : out;
    if (!base) base = def_out = io_path_join("runs", r.name);
    const int per_seed = seeds > 1 || (!out && !resume_dir);
    train_result res[64] = {0};
    runlock parent = {.fd = -1};
    /* a multi-seed run whose seeds all finished is left as it is, its lock too */
    int all_finished = resume_dir && seeds > 1;
    for (long k = 0; k < seeds && all_finished; k++) {
        char sub[64], *dir;
        snprintf(sub, sizeof sub, "seed-%ld", seed + k);
        dir = io_path_join(base, sub);
        all_finished = res[k].unchanged = runs_read_finished(dir, &res[k]);
        free(dir);
    }
    char *base_made = NULL; /* the outermost folder made for base, if any */
    seeds_recipe sr = {.r = &r, .base = base, .needed = !resume_dir || recipe_changed, .temp = -1};
    if (s == XD_OK && seeds > 1 && !all_finished) {
        if (root && (s = io_mkdir_made(base, &base_made, &e)) == XD_OK &&
            (s = runlock_take(&parent, base, &e)) == XD_OK)
            sr.temp = runlock_temp_add(&parent, base_made);
        s = dist_agree(s, &e);
    }
    for (long k = 0; k < seeds && s == XD_OK; k++) {
        char sub[64];
        snprintf(sub, sizeof sub, "seed-%ld", seed + k);
        char *dir = per_seed ? io_path_join(base, sub) : xd_xstrdup(base);
        char *rpath = io_path_join(dir, "resume.safetensors");
        char *spath = io_path_join(dir, "summary.json");
        struct stat st;
        int can_resume = resume_dir && (stat(rpath, &st) == 0 || stat(spath, &st) == 0);
        free(rpath);
        free(spath);
        /* each seed is its own share of the job's span */
        progress_span sk = span;
        if (spanp) {
            double w = (span.to - span.from) / (double)seeds;
            sk.from = span.from + w * (double)k;
            sk.to = sk.from + w;
        }
        train_opts o = {.out_dir = dir, .resume = can_resume, .stop_after = (int)stop_after,
                        .quiet = quiet, .log = stderr, .span = spanp ? &sk : NULL,
                        .before_write = seeds > 1 ? write_seeds_recipe : NULL,
                        .kept = seeds > 1 ? keep_seeds_folder : NULL, .ctx = &sr};
        if (resume_dir && !can_resume && seeds == 1)
            s = xd_fail(&e, XD_EIO, "%s: no resume.safetensors to continue from", dir);
        else
            s = trainer_run(&r, seed + k, &o, &res[k], &e);
        if (s == XD_OK && root && res[k].unchanged && seeds == 1)
            printf("%s: already finished (%d epochs, %s %.2f%%); nothing to do\n", dir,
                   res[k].epochs_done, res[k].segment ? "test mIoU" : "test accuracy",
                   100.0 * res[k].final_acc);
        else if (s == XD_OK && root && res[k].finished && !res[k].unchanged)
            runs_print_result(stdout, r.name, &res[k]);
        free(dir);
        if (s == XD_OK && !res[k].finished) break; /* stopped early on request */
    }
    int all_done = 1, none_ran = 1;
    for (long k = 0; k < seeds; k++) {
        all_done &= res[k].finished;
        none_ran &= res[k].unchanged;
    }
    char *parent_summary = io_path_join(base, "summary.json");
    struct stat st;
    if (s == XD_OK && root && seeds > 1 && all_done && none_ran && stat(parent_summary, &st) == 0) {
        printf("%s: already finished (%ld seeds); nothing to do\n", base, seeds);
    } else if (s == XD_OK && root && seeds > 1 && all_done) {
        s = runs_write_seeds_summary(base, &r, res, (int)seeds, &e);
        if (s == XD_OK) runs_print_seeds(stdout, r.name, res, (int)seeds);
    }
    io_temp_drop(sr.temp);
    /* no seed's run has an epoch to keep (a failed one leaves nothing): neither does the whole
     * run */
    if (s != XD_OK && parent.fd >= 0 && !sr.kept) {
        if (base_made) io_unmake_dir(base, base_made);
        else runlock_give_back(&parent);
    }
    runlock_release(&parent);
    free(base_made);
    free(parent_summary);
    recipe_free(&r);
    recipe_free(&stored);
    free(stored_path);
    free(def_out);
    free(sets);
    return s == XD_OK ? 0 : cli_report("train", &e);
}

// ----------------------------------------------------------------------------------------------
// eval

static void eval_usage(FILE *f)
{
    fprintf(f, "usage: xdistill eval --model M.safetensors --data DATASET.xds [--split test]\n"
               "                     [--view image|text.LANG|text.*] [--label label] [--json]\n"
               "                     [--predictions FILE.jsonl] [--exit NAME]\n"
               "                     [--precision float32|bf16]\n\n"
               "Scores a checkpoint's default head on a split of a prepared data set (text.*:\n"
               "over every (example, language) pair that has a text): accuracy, balanced accuracy\n"
               "(the mean of the per-class recalls), each class's precision and recall, the\n"
               "confusion matrix and the expected calibration error (15 equal-width bins of the\n"
               "predicted class's probability; the rows' share in each bin times the gap between\n"
               "its accuracy and its mean confidence, summed). For a head that is a map (H, W,\n"
               "classes) on a data set with masks (S/mask), the mIoU and pixel accuracy.\n"
               "--label defaults to the label set the model was trained on. A checkpoint that\n"
               "names its classes is matched to the data set's by name (in any order; a class the\n"
               "model does not know is an error); one without names must have as many classes.\n"
               "The model must fit the data: image size and channels (unless its recipe resizes\n"
               "with size= or converts with channels=) and task. The data set's checksums are\n"
               "verified once per change of the file. An int8 checkpoint (xdistill quantize) runs\n"
               "on integers.\n\n"
               "  --exit NAME            score another head (an early exit) instead, running only\n"
               "                         the layers it reads\n"
               "  --json                 every figure as one JSON object\n"
               "  --predictions FILE     one JSON line per scored row: index (the example), label,\n"
               "                         prediction, probabilities (and language, position where\n"
               "                         the view or the head has several)\n"
               "  --precision P          the products' precision: float32 (default) or bf16, as a\n"
               "                         teacher with precision: bf16 runs them (README, Mixed\n"
               "                         precision)\n");
}

typedef enum {
    EO_MODEL, EO_DATA, EO_SPLIT, EO_VIEW, EO_LABEL, EO_JSON, EO_PREDICTIONS, EO_EXIT,
    EO_PRECISION, EO_COUNT
} eval_opt;
static const cli_option eval_options[] = {
    [EO_MODEL] = {"--model", 1}, [EO_DATA] = {"--data", 1}, [EO_SPLIT] = {"--split", 1},
    [EO_VIEW] = {"--view", 1},   [EO_LABEL] = {"--label", 1}, [EO_JSON] = {"--json", 0},
    [EO_PREDICTIONS] = {"--predictions", 1}, [EO_EXIT] = {"--exit", 1},
    [EO_PRECISION] = {"--precision", 1},
};
static_assert(sizeof eval_options / sizeof eval_options[0] == EO_COUNT, "name every option");

/* A classifier's answers on a split: each row's prediction, confidence and probabilities (K
 * each), its true class, and the scores over them. */
typedef struct {
    size_t rows, pos; /* pos: rows of one example in one language (the head's positions) */
    int K;
    int32_t *pred, *truth;
    float *conf, *prob;
    scores sc;
} eval_rows;

static xd_status eval_classifier(nn_model *m, int head, feed *f, const int32_t *y, void *input,
                                 eval_rows *ev, xd_err *e)
{
    const int all_langs = f->kind == FEED_TEXT && f->n_langs > 1;
    const nn_node *hn = nn_model_node(m, head);
    ev->rows = scores_rows(m, head, f, all_langs);
    ev->pos = (size_t)hn->h * (size_t)hn->w;
    ev->K = hn->c;
    const size_t r = ev->rows ? ev->rows : 1;
    ev->pred = xd_xmalloc(sizeof(int32_t) * r);
    ev->truth = xd_xmalloc(sizeof(int32_t) * r);
    ev->conf = xd_xmalloc(sizeof(float) * r);
    ev->prob = xd_xmalloc(sizeof(float) * r * (size_t)ev->K);
    scores_init(&ev->sc, ev->K);
    xd_status s = scores_predict_at(m, head, f, NULL, f->n, all_langs, input, ev->pred, ev->conf,
                                    ev->prob, e);
    if (s != XD_OK) return s;
    scores_row_truth(m, head, f, NULL, f->n, all_langs, y, ev->truth);
    scores_add_conf(&ev->sc, ev->pred, ev->conf, ev->truth, ev->rows);
    return XD_OK;
}

static void eval_rows_free(eval_rows *ev)
{
    free(ev->pred);
    free(ev->truth);
    free(ev->conf);
    free(ev->prob);
    scores_free(&ev->sc);
}

/* FILE.jsonl, atomically: one line per row that has a prediction. */
static xd_status write_predictions(const char *path, const eval_rows *ev, const feed *f,
                                   const char *const *names, xd_err *e)
{
    io_atomic w;
    xd_status s = io_atomic_open(&w, path, e);
    for (size_t r = 0; r < ev->rows && s == XD_OK; r++) {
        if (ev->pred[r] < 0) continue; /* a pair without text */
        const size_t ex = r / ev->pos % f->n, lang = r / ev->pos / f->n;
        json_t *j = json_object(), *p = json_array();
        json_object_set_new(j, "index", json_integer((json_int_t)ex));
        if (f->kind == FEED_TEXT && f->n_langs > 1) json_object_set_new(j, "language", json_integer((json_int_t)lang));
        if (ev->pos > 1) json_object_set_new(j, "position", json_integer((json_int_t)(r % ev->pos)));
        json_object_set_new(j, "label", json_integer(ev->truth[r]));
        json_object_set_new(j, "prediction", json_integer(ev->pred[r]));
        if (names) {
            json_object_set_new(j, "label_name", txt_json_string(names[ev->truth[r]]));
            json_object_set_new(j, "prediction_name", txt_json_string(names[ev->pred[r]]));
        }
        for (int k = 0; k < ev->K; k++)
            json_array_append_new(p, json_real(ev->prob[r * (size_t)ev->K + (size_t)k]));
        json_object_set_new(j, "probabilities", p);
        char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        s = io_atomic_write(&w, line, strlen(line), e);
        if (s == XD_OK) s = io_atomic_write(&w, "\n", 1, e);
        free(line);
        json_decref(j);
    }
    if (s == XD_OK) return io_atomic_commit(&w, e);
    if (w.f) io_atomic_abort(&w);
    return s;
}

/* The figures for a person: accuracy, balanced accuracy, calibration, per class, the matrix. */
static void print_classifier(const eval_rows *ev, const char *const *names)
{
    const scores *sc = &ev->sc;
    printf("balanced accuracy %.2f%% (mean per-class recall), expected calibration error %.4f "
           "(%d bins)\n", 100.0 * scores_balanced_accuracy(sc), scores_ece(sc), SCORES_ECE_BINS);
    int width = 5;
    char num[16];
    for (int k = 0; k < ev->K; k++) {
        int len = names ? (int)strlen(names[k]) : snprintf(num, sizeof num, "%d", k);
        width = len > width ? (len < 32 ? len : 32) : width;
    }
    printf("  %-*s %8s %10s %8s\n", width, "class", "support", "precision", "recall");
    for (int k = 0; k < ev->K; k++) {
        snprintf(num, sizeof num, "%d", k);
        double p = scores_class_precision(sc, k), r = scores_class_accuracy(sc, k);
        char pt[16] = "-", rt[16] = "-";
        if (p >= 0) snprintf(pt, sizeof pt, "%.2f%%", 100.0 * p);
        if (r >= 0) snprintf(rt, sizeof rt, "%.2f%%", 100.0 * r);
        printf("  %-*.*s %8llu %10s %8s\n", width, width, names ? names[k] : num,
               (unsigned long long)scores_support(sc, k), pt, rt);
    }
    printf("confusion matrix (row: true class, column: predicted, both in the order above):\n");
    for (int t = 0; t < ev->K; t++) {
        printf(" ");
        for (int p = 0; p < ev->K; p++)
            printf(" %5llu", (unsigned long long)sc->count[(size_t)t * (size_t)ev->K + (size_t)p]);
        printf("\n");
    }
}

/* The model's class names: the checkpoint's, else the data set's when they are as many (a new
 * array of pointers into either; NULL when neither names them). */
static const char **class_names(char **stored, const io_dataset *ds, const char *label, int K)
{
    const io_strings *cls = labels_class_table(ds, label);
    if (stored) {
        const char **names = xd_xmalloc(sizeof *names * (size_t)K);
        memcpy(names, stored, sizeof *names * (size_t)K);
        return names;
    }
    return cls && cls->n == (size_t)K ? labels_table_names(cls) : NULL;
}

int cmd_eval(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        eval_usage(stdout);
        return 0;
    }
    const char *val[EO_COUNT] = {[EO_SPLIT] = "test"};
    for (int i = 1; i < argc; i++) {
        const char *v = "";
        int rc = 0, o = cli_next_option("eval", eval_options, EO_COUNT, argc, argv, &i, &v, &rc);
        if (o == -1) return cli_usage_error("eval", "unexpected argument '%s'", argv[i]);
        if (o < 0) return rc;
        val[o] = v;
    }
    const char *model = val[EO_MODEL], *data = val[EO_DATA], *split = val[EO_SPLIT],
               *view = val[EO_VIEW], *label = val[EO_LABEL], *pred_path = val[EO_PREDICTIONS];
    const int json = val[EO_JSON] != NULL;
    if (!model || !data) return cli_usage_error("eval", "give --model and --data");
    int prec = NN_PREC_FLOAT32;
    if (val[EO_PRECISION]) {
        for (prec = 0; prec < NN_PREC_COUNT; prec++)
            if (!strcmp(val[EO_PRECISION], nn_precision_names[prec])) break;
        if (prec == NN_PREC_COUNT)
            return cli_usage_error("eval", "--precision: unknown value '%s' (expected float32 or "
                                           "bf16)", val[EO_PRECISION]);
    }
    xd_err e;
    xd_err_clear(&e);
    nn_model m;
    io_dataset *ds = NULL;
    feed f;
    memset(&f, 0, sizeof f);
    void *input = NULL;
    seg_scores sc = {0};
    eval_rows ev;
    memset(&ev, 0, sizeof ev);
    int segment = 0;
    char *aug = NULL, *text = NULL, *trained_label = NULL, **stored = NULL;
    const char **names = NULL;
    int32_t *map = NULL, *y = NULL;
    const char *in[] = {model, data};
    xd_status s = io_check_output(pred_path, in, 2, &e);
    if (s == XD_OK) s = ckpt_load(model, 256, &m, &e);
    if (s != XD_OK) return cli_report("eval", &e);
    m.eval_precision = (nn_precision)prec;
    int head = nn_model_default_head(&m);
    if (val[EO_EXIT] && (s = exits_find(&m, model, val[EO_EXIT], &head, &e)) != XD_OK) {
        nn_model_free(&m);
        return cli_report("eval", &e);
    }
    if (!view) view = m.tokens ? "text.en" : "image";
    /* the model reads its inputs the way it was trained, and must fit the data */
    if ((s = ckpt_preprocessing(model, &aug, &text, &e)) == XD_OK &&
        (s = ckpt_trained_label(model, &trained_label, &e)) == XD_OK &&
        (s = io_dataset_open_verified(data, &ds, &e)) == XD_OK &&
        (s = ckpt_check_fit(model, &m, ds, split, view, aug, label ? label : trained_label,
                            &e)) == XD_OK &&
        (s = feed_open(&f, ds, split, view, &m, aug ? aug : "", text ? text : "", &e)) == XD_OK &&
        (f.n > 0 || (s = xd_fail(&e, XD_EARG, "%s: split '%s' has no examples, nothing to score",
                                  data, split)) == XD_OK)) {
        if (!label) label = trained_label;
        char name[IO_DATASET_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s/%s", split, label);
        const io_tensor *t;
        const nn_node *hn = nn_model_node(&m, head);
        char mname[IO_DATASET_NAME_MAX + 1];
        snprintf(mname, sizeof mname, "%s/mask", split);
        if (nn_node_is_map(hn) && io_dataset_find(ds, mname)) {
            /* a map-shaped head on a data set with masks: scored per pixel */
            const uint8_t *masks;
            int n_classes;
            segment = 1;
            if (pred_path)
                s = xd_fail(&e, XD_EARG, "%s: --predictions writes a classifier's answers; this "
                                         "model segments (head '%s' is a %dx%d map)", model,
                            hn->name, hn->h, hn->w);
            else if ((s = seg_masks(ds, split, f.n, hn->h, hn->w, &masks, &n_classes, &e)) == XD_OK) {
                input = xd_xmalloc_aligned(feed_example_bytes(&f) * 256);
                s = seg_evaluate(&m, head, &f, masks, n_classes, input, &sc, &e);
                /* an output that is not finite (XD_ENUM, naming the example): the model's fault */
                if (s == XD_ENUM) xd_err_prefix(&e, "%s on %s (%s)", model, data, split);
            }
        } else if ((s = io_dataset_require(ds, name, IO_I32, 1, &t, &e)) == XD_OK &&
                   (s = ckpt_class_map(model, &m, ds, label, &map, &e)) == XD_OK &&
                   (s = ckpt_class_names(model, &m, &stored, &e)) == XD_OK) {
            /* the data set's classes as the model's outputs (the same unless matched by name) */
            const size_t K = hn->act_n;
            if ((size_t)t->shape[0] != f.n)
                s = xd_fail(&e, XD_EFORMAT, "%s: %s has %lld labels for %zu examples", data, name,
                            (long long)t->shape[0], f.n);
            const io_strings *cls = labels_class_table(ds, label);
            y = xd_xmalloc(sizeof(int32_t) * f.n);
            for (size_t i = 0; i < f.n && s == XD_OK; i++) {
                const int32_t yi = ((const int32_t *)t->data)[i];
                if (map && (yi < 0 || (size_t)yi >= cls->n))
                    s = xd_fail(&e, XD_EFORMAT, "%s: %s[%zu] = %d is not one of its %zu classes",
                                data, name, i, yi, cls->n);
                else if ((y[i] = map ? map[yi] : yi) < 0 || (size_t)y[i] >= K)
                    s = xd_fail(&e, XD_EFORMAT, "%s: %s[%zu] = %d is not one of the model's %zu classes",
                                data, name, i, yi, K);
            }
            if (s == XD_OK) {
                input = xd_xmalloc_aligned(feed_example_bytes(&f) * 256);
                names = class_names(stored, ds, label, (int)K);
                s = eval_classifier(&m, head, &f, y, input, &ev, &e);
                if (s == XD_ENUM) xd_err_prefix(&e, "%s on %s (%s)", model, data, split);
            }
            if (s == XD_OK && pred_path) s = write_predictions(pred_path, &ev, &f, names, &e);
        }
    }
    if (s == XD_OK && json) {
        /* paths and names as JSON strings: bytes that are not UTF-8 become U+FFFD */
        json_t *j = json_object();
        json_object_set_new(j, "model", txt_json_string(model));
        if (val[EO_EXIT])
            json_object_set_new(j, "exit", txt_json_string(nn_model_node(&m, head)->name));
        json_object_set_new(j, "data", txt_json_string(data));
        json_object_set_new(j, "split", txt_json_string(split));
        json_object_set_new(j, "view", txt_json_string(view));
        json_object_set_new(j, "examples", json_integer((json_int_t)f.n));
        if (segment) {
            json_object_set_new(j, "miou", json_real(sc.miou));
            json_object_set_new(j, "pixel_accuracy", json_real(sc.pixel_acc));
        } else {
            json_object_set_new(j, "precision", json_string(nn_precision_names[prec]));
            json_object_update_new(j, scores_json(&ev.sc, names));
        }
        char *out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
        printf("%s\n", out);
        free(out);
        json_decref(j);
    } else if (s == XD_OK && segment) {
        printf("%s on %s (%s, %s): mIoU %.2f%%, pixel accuracy %.2f%% over %zu examples\n", model,
               data, split, view, 100.0 * sc.miou, 100.0 * sc.pixel_acc, f.n);
    } else if (s == XD_OK) {
        const char *exit_name = nn_model_node(&m, head)->name;
        printf("%s%s%s%s on %s (%s, %s%s): accuracy %.2f%% over %zu examples%s\n", model,
               val[EO_EXIT] ? " (exit '" : "", val[EO_EXIT] ? exit_name : "",
               val[EO_EXIT] ? "')" : "", data, split, view,
               prec == NN_PREC_BF16 ? ", bf16 products" : "", 100.0 * scores_accuracy(&ev.sc),
               f.n, f.kind == FEED_TEXT && f.n_langs > 1 ? " in every language they have" : "");
        print_classifier(&ev, names);
    }
    eval_rows_free(&ev);
    free(names);
    ckpt_class_names_free(stored);
    free(map);
    free(y);
    free(input);
    free(aug);
    free(text);
    free(trained_label);
    feed_close(&f);
    if (ds) io_dataset_close(ds);
    nn_model_free(&m);
    return s == XD_OK ? 0 : cli_report("eval", &e);
}
