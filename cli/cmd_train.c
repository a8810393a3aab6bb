/* `xdistill train`: runs a recipe, once or over several seeds, and `xdistill eval`: scores a
 * checkpoint on a data set split. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "distill/recipe.h"
#include "distill/segment.h"
#include "distill/trainer.h"
#include "io/file.h"

static void train_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill train RECIPE.yaml [--out DIR] [--set key.path=value ...]\n"
            "                      [--seed N] [--seeds K] [--stop-after N] [--quiet]\n"
            "       xdistill train [RECIPE.yaml] --resume DIR\n\n"
            "Trains what the recipe describes (a teacher, a student, any distillation, several\n"
            "models learning together; see docs/RECIPES.md). Writes DIR/metrics.jsonl (one line\n"
            "per epoch), DIR/summary.json, DIR/last.safetensors, DIR/best.safetensors and\n"
            "DIR/resume.safetensors; with several models DIR/NAME.last.safetensors and\n"
            "DIR/NAME.best.safetensors for each.\n\n"
            "options:\n"
            "  --out DIR        output folder (default runs/NAME, NAME from the recipe)\n"
            "  --set K=V        override a recipe key, e.g. --set train.epochs=3 (repeatable)\n"
            "  --seed N         seed of the run (default: the recipe's)\n"
            "  --seeds K        K runs with seeds N, N+1, ... in DIR/seed-N; summary.json gives\n"
            "                   mean and standard deviation\n"
            "  --resume DIR     continue an interrupted run in DIR exactly where its last\n"
            "                   finished epoch left it (the recipe defaults to DIR/recipe.yaml)\n"
            "  --stop-after N   stop once N epochs are done (continue later with --resume)\n"
            "  --quiet          no progress output\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* "final_test_acc", "best_test_miou", ...: the summary key of a run's score */
static const char *score_key(const train_result *res, const char *which)
{
    static char key[32];
    snprintf(key, sizeof key, "%s_test_%s", which, res->segment ? "miou" : "acc");
    return key;
}

/* A finished seed's numbers from its summary.json (for resuming a multi-seed run). */
static int read_finished(const char *dir, train_result *res)
{
    char *path = io_path_join(dir, "summary.json");
    json_t *j = json_load_file(path, 0, NULL);
    free(path);
    if (!j) return 0;
    int ok = json_is_true(json_object_get(j, "finished"));
    if (ok) {
        /* a segment run's scores are its mIoU, with the pixel accuracy beside them */
        res->segment = json_object_get(j, "final_test_miou") != NULL;
        res->final_acc = json_real_value(json_object_get(j, score_key(res, "final")));
        res->best_acc = json_real_value(json_object_get(j, score_key(res, "best")));
        res->final_pixel_acc = json_real_value(json_object_get(j, "final_test_pixel_acc"));
        res->best_epoch = (int)json_integer_value(json_object_get(j, "best_epoch"));
        res->seconds = json_real_value(json_object_get(j, "train_seconds"));
        res->images_per_s = json_real_value(json_object_get(j, "images_per_s"));
        res->epochs_done = (int)json_integer_value(json_object_get(j, "epochs"));
        res->finished = 1;
        /* a run of several models: each one's scores */
        const char *name;
        json_t *o;
        res->n_models = 0;
        json_object_foreach(json_object_get(j, "models"), name, o) {
            if (res->n_models == RECIPE_MAX_MODELS) break;
            train_model_result *mr = &res->models[res->n_models++];
            snprintf(mr->name, sizeof mr->name, "%s", name);
            mr->final_acc = json_real_value(json_object_get(o, score_key(res, "final")));
            mr->best_acc = json_real_value(json_object_get(o, score_key(res, "best")));
            mr->best_epoch = (int)json_integer_value(json_object_get(o, "best_epoch"));
        }
    }
    json_decref(j);
    return ok;
}

static void mean_std(const double *v, int n, double *mean, double *std)
{
    double s = 0.0, q = 0.0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *std = n > 1 ? sqrt(q / (n - 1)) : 0.0; /* sample standard deviation */
}

/* "models": mean and standard deviation of each model's final and best score over the seeds. */
static void seeds_summary_models(json_t *j, const train_result *res, int n)
{
    json_t *all = json_object();
    for (int k = 0; k < res[0].n_models; k++) {
        json_t *o = json_object();
        for (int which = 0; which < 2; which++) {
            double v[64], m, sd;
            for (int i = 0; i < n; i++)
                v[i] = which ? res[i].models[k].best_acc : res[i].models[k].final_acc;
            mean_std(v, n, &m, &sd);
            json_t *ms = json_object();
            json_object_set_new(ms, "mean", json_real(m));
            json_object_set_new(ms, "std", json_real(sd));
            json_object_set_new(o, score_key(&res[0], which ? "best" : "final"), ms);
        }
        json_object_set_new(all, res[0].models[k].name, o);
    }
    json_object_set_new(j, "models", all);
}

/* One line per finished seed of a run of several models: each model's final and best accuracy. */
static void print_models(const recipe *r, long seed, const train_result *res)
{
    printf("%s seed %ld:", r->name, seed);
    for (int k = 0; k < res->n_models; k++)
        printf("%s %s test accuracy %.2f%% (best %.2f%% at epoch %d)", k ? "," : "",
               res->models[k].name, 100.0 * res->models[k].final_acc,
               100.0 * res->models[k].best_acc, res->models[k].best_epoch);
    printf(", %.1f s, %.0f img/s\n", res->seconds, res->images_per_s);
}

static xd_status write_seeds_summary(const char *dir, const recipe *r, const train_result *res,
                                     int n, xd_err *e)
{
    double fin[64], best[64], pix[64], mf, sf, mb, sb, mp, sp;
    json_t *runs = json_array();
    for (int i = 0; i < n; i++) {
        fin[i] = res[i].final_acc;
        best[i] = res[i].best_acc;
        pix[i] = res[i].final_pixel_acc;
        json_t *o = json_object();
        json_object_set_new(o, "seed", json_integer(res[i].seed));
        json_object_set_new(o, score_key(&res[i], "final"), json_real(res[i].final_acc));
        if (res[i].segment)
            json_object_set_new(o, "final_test_pixel_acc", json_real(res[i].final_pixel_acc));
        json_object_set_new(o, score_key(&res[i], "best"), json_real(res[i].best_acc));
        json_object_set_new(o, "best_epoch", json_integer(res[i].best_epoch));
        json_object_set_new(o, "train_seconds", json_real(res[i].seconds));
        json_array_append_new(runs, o);
    }
    mean_std(fin, n, &mf, &sf);
    mean_std(best, n, &mb, &sb);
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(r->name));
    json_object_set_new(j, "seeds", json_integer(n));
    json_object_set_new(j, "runs", runs);
    json_t *f = json_object(), *b = json_object();
    json_object_set_new(f, "mean", json_real(mf));
    json_object_set_new(f, "std", json_real(sf));
    json_object_set_new(b, "mean", json_real(mb));
    json_object_set_new(b, "std", json_real(sb));
    json_object_set_new(j, score_key(&res[0], "final"), f);
    json_object_set_new(j, score_key(&res[0], "best"), b);
    if (res[0].segment) {
        mean_std(pix, n, &mp, &sp);
        json_t *p = json_object();
        json_object_set_new(p, "mean", json_real(mp));
        json_object_set_new(p, "std", json_real(sp));
        json_object_set_new(j, "final_test_pixel_acc", p);
    }
    if (res[0].n_models > 1) seeds_summary_models(j, res, n);
    char *yaml = recipe_to_yaml(r);
    json_object_set_new(j, "recipe", json_string(yaml));
    free(yaml);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    json_decref(j);
    char *path = io_path_join(dir, "summary.json");
    io_atomic w;
    xd_status s = io_atomic_open(&w, path, e);
    if (s == XD_OK && (s = io_atomic_write(&w, text, strlen(text), e)) == XD_OK &&
        (s = io_atomic_write(&w, "\n", 1, e)) == XD_OK)
        s = io_atomic_commit(&w, e);
    else if (s != XD_OK && w.f)
        io_atomic_abort(&w);
    free(path);
    free(text);
    return s;
}

int cmd_train(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        train_usage(stdout);
        return 0;
    }
    const char *recipe_path = NULL, *out = NULL;
    const char **sets = xd_xcalloc((size_t)argc, sizeof *sets);
    int n_sets = 0, quiet = 0, resume = 0;
    long seed = -1, seeds = 0, stop_after = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--out") == 0 && has_val) out = argv[++i];
        else if (strcmp(a, "--set") == 0 && has_val) sets[n_sets++] = argv[++i];
        else if (strcmp(a, "--resume") == 0 && has_val) {
            out = argv[++i];
            resume = 1;
        } else if (strcmp(a, "--seed") == 0 && has_val) {
            if (parse_long(argv[++i], 0, 1L << 40, &seed)) rc = cli_usage_error("train", "--seed takes a number >= 0");
        } else if (strcmp(a, "--seeds") == 0 && has_val) {
            if (parse_long(argv[++i], 1, 64, &seeds)) rc = cli_usage_error("train", "--seeds takes 1..64");
        } else if (strcmp(a, "--stop-after") == 0 && has_val) {
            if (parse_long(argv[++i], 1, 1 << 20, &stop_after)) rc = cli_usage_error("train", "--stop-after takes a number of epochs >= 1");
        } else if (strcmp(a, "--quiet") == 0) quiet = 1;
        else if (a[0] == '-') rc = cli_usage_error("train", "unknown option '%s'", a);
        else if (!recipe_path) recipe_path = a;
        else rc = cli_usage_error("train", "one recipe at a time ('%s' and '%s')", recipe_path, a);
        if (rc) break;
    }
    char *resume_recipe = NULL;
    if (!rc && !recipe_path && resume) recipe_path = resume_recipe = io_path_join(out, "recipe.yaml");
    if (!rc && !recipe_path) rc = cli_usage_error("train", "give a recipe file");
    if (rc) {
        free(sets);
        return rc;
    }
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load(recipe_path, sets, n_sets, &r, &e) != XD_OK) {
        free(sets);
        free(resume_recipe);
        return cli_report("train", &e);
    }
    char *def_out = NULL;
    if (!out) {
        def_out = io_path_join("runs", r.name);
        out = def_out;
    }
    if (seed < 0) seed = r.seed;
    if (!seeds) seeds = r.seeds;
    train_result res[64] = {0};
    xd_status s = XD_OK;
    r.seed = seed;
    r.seeds = (int)seeds;
    if (seeds > 1 && !resume) {
        /* the whole multi-seed run's recipe (first seed, count), so that --resume DIR finds it */
        char *ypath = io_path_join(out, "recipe.yaml");
        if ((s = io_mkdir_p(out, &e)) == XD_OK) s = recipe_save(&r, ypath, &e);
        free(ypath);
    }
    for (long k = 0; k < seeds && s == XD_OK; k++) {
        char sub[64];
        snprintf(sub, sizeof sub, "seed-%ld", seed + k);
        char *dir = seeds > 1 ? io_path_join(out, sub) : xd_xstrdup(out);
        struct stat st;
        int have_state = stat(dir, &st) == 0;
        if (resume && seeds > 1 && read_finished(dir, &res[k])) {
            res[k].seed = seed + k;
        } else {
            char *rpath = io_path_join(dir, "resume.safetensors");
            int can_resume = resume && have_state && stat(rpath, &st) == 0;
            free(rpath);
            train_opts o = {.out_dir = dir, .resume = can_resume, .stop_after = (int)stop_after,
                            .quiet = quiet, .log = stderr};
            if (resume && !can_resume && seeds == 1)
                s = xd_fail(&e, XD_EIO, "%s: no resume.safetensors to continue from", dir);
            else
                s = trainer_run(&r, seed + k, &o, &res[k], &e);
        }
        free(dir);
        if (s == XD_OK && res[k].finished && res[k].segment)
            printf("%s seed %ld: test mIoU %.2f%%, pixel accuracy %.2f%% (best mIoU %.2f%% at epoch "
                   "%d), %.1f s, %.0f img/s\n", r.name, seed + k, 100.0 * res[k].final_acc,
                   100.0 * res[k].final_pixel_acc, 100.0 * res[k].best_acc, res[k].best_epoch,
                   res[k].seconds, res[k].images_per_s);
        else if (s == XD_OK && res[k].finished && res[k].n_models > 1)
            print_models(&r, seed + k, &res[k]);
        else if (s == XD_OK && res[k].finished)
            printf("%s seed %ld: test accuracy %.2f%% (best %.2f%% at epoch %d), %.1f s, %.0f img/s\n",
                   r.name, seed + k, 100.0 * res[k].final_acc, 100.0 * res[k].best_acc,
                   res[k].best_epoch, res[k].seconds, res[k].images_per_s);
        if (s == XD_OK && !res[k].finished) break; /* stopped early on request */
    }
    int all_done = 1;
    for (long k = 0; k < seeds; k++) all_done &= res[k].finished;
    if (s == XD_OK && seeds > 1 && all_done) {
        s = write_seeds_summary(out, &r, res, (int)seeds, &e);
        double v[64], m, sd;
        for (long k = 0; k < seeds; k++) v[k] = res[k].final_acc;
        mean_std(v, (int)seeds, &m, &sd);
        if (s == XD_OK && res[0].segment) {
            double pv[64], pm, psd;
            for (long k = 0; k < seeds; k++) pv[k] = res[k].final_pixel_acc;
            mean_std(pv, (int)seeds, &pm, &psd);
            printf("%s: test mIoU %.2f +- %.2f%%, pixel accuracy %.2f +- %.2f%% over %ld seeds\n",
                   r.name, 100.0 * m, 100.0 * sd, 100.0 * pm, 100.0 * psd, seeds);
        } else if (s == XD_OK && res[0].n_models > 1) {
            for (int i = 0; i < res[0].n_models; i++) {
                for (long k = 0; k < seeds; k++) v[k] = res[k].models[i].final_acc;
                mean_std(v, (int)seeds, &m, &sd);
                printf("%s %s: test accuracy %.2f +- %.2f%% over %ld seeds\n", r.name,
                       res[0].models[i].name, 100.0 * m, 100.0 * sd, seeds);
            }
        } else if (s == XD_OK) {
            printf("%s: test accuracy %.2f +- %.2f%% over %ld seeds\n", r.name, 100.0 * m, 100.0 * sd, seeds);
        }
    }
    recipe_free(&r);
    free(def_out);
    free(sets);
    free(resume_recipe);
    return s == XD_OK ? 0 : cli_report("train", &e);
}

// ----------------------------------------------------------------------------------------------
// eval

static void eval_usage(FILE *f)
{
    fprintf(f, "usage: xdistill eval --model M.safetensors --data DATASET.xds [--split test]\n"
               "                     [--view image|text.LANG|text.*] [--label label] [--json]\n\n"
               "Accuracy of a checkpoint's default head on a split of a prepared data set (text.*:\n"
               "over every (example, language) pair that has a text); for a\n"
               "head that is a map (H, W, classes) on a data set with masks (S/mask), the mIoU and\n"
               "pixel accuracy.\n");
}

int cmd_eval(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        eval_usage(stdout);
        return 0;
    }
    const char *model = NULL, *data = NULL, *split = "test", *view = NULL, *label = "label";
    int json = 0;
    for (int i = 1; i < argc; i++) {
        int v = i + 1 < argc;
        if (strcmp(argv[i], "--model") == 0 && v) model = argv[++i];
        else if (strcmp(argv[i], "--data") == 0 && v) data = argv[++i];
        else if (strcmp(argv[i], "--split") == 0 && v) split = argv[++i];
        else if (strcmp(argv[i], "--view") == 0 && v) view = argv[++i];
        else if (strcmp(argv[i], "--label") == 0 && v) label = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else return cli_usage_error("eval", "unknown argument '%s'", argv[i]);
    }
    if (!model || !data) return cli_usage_error("eval", "give --model and --data");
    xd_err e;
    xd_err_clear(&e);
    nn_model m;
    io_dataset *ds = NULL;
    feed f;
    memset(&f, 0, sizeof f);
    void *input = NULL;
    double acc = 0.0;
    seg_scores sc = {0};
    int segment = 0;
    char *aug = NULL, *text = NULL;
    xd_status s = ckpt_load(model, 256, &m, &e);
    if (s != XD_OK) return cli_report("eval", &e);
    if (!view) view = m.tokens ? "text.en" : "image";
    /* the model reads its inputs the way it was trained */
    if ((s = ckpt_preprocessing(model, &aug, &text, &e)) == XD_OK &&
        (s = io_dataset_open(data, &ds, &e)) == XD_OK &&
        (s = feed_open(&f, ds, split, view, &m, aug ? aug : "", text ? text : "", &e)) == XD_OK) {
        char name[IO_DATASET_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s/%s", split, label);
        const io_tensor *t;
        int head = nn_model_default_head(&m);
        const nn_node *hn = nn_model_node(&m, head);
        char mname[IO_DATASET_NAME_MAX + 1];
        snprintf(mname, sizeof mname, "%s/mask", split);
        if ((hn->h > 1 || hn->w > 1) && io_dataset_find(ds, mname)) {
            /* a map-shaped head on a data set with masks: scored per pixel */
            const uint8_t *masks;
            int n_classes;
            segment = 1;
            if ((s = seg_masks(ds, split, f.n, hn->h, hn->w, &masks, &n_classes, &e)) == XD_OK) {
                input = xd_xmalloc_aligned(feed_example_bytes(&f) * 256);
                s = seg_evaluate(&m, head, &f, masks, n_classes, input, &sc, &e);
            }
        } else if ((s = io_dataset_require(ds, name, IO_I32, 1, &t, &e)) == XD_OK) {
            const int32_t *y = t->data;
            const size_t K = nn_model_node(&m, head)->act_n;
            if ((size_t)t->shape[0] != f.n)
                s = xd_fail(&e, XD_EFORMAT, "%s: %s has %lld labels for %zu examples", data, name,
                            (long long)t->shape[0], f.n);
            for (size_t i = 0; i < f.n && s == XD_OK; i++)
                if (y[i] < 0 || (size_t)y[i] >= K)
                    s = xd_fail(&e, XD_EFORMAT, "%s: %s[%zu] = %d is not one of the model's %zu classes",
                                data, name, i, y[i], K);
            if (s == XD_OK) {
                input = xd_xmalloc_aligned(feed_example_bytes(&f) * 256);
                s = trainer_evaluate(&m, head, &f, y, input, &acc, &e);
            }
        }
    }
    if (s == XD_OK && segment) {
        if (json)
            printf("{\"model\":\"%s\",\"split\":\"%s\",\"view\":\"%s\",\"examples\":%zu,"
                   "\"miou\":%.6f,\"pixel_accuracy\":%.6f}\n", model, split, view, f.n, sc.miou,
                   sc.pixel_acc);
        else
            printf("%s on %s (%s, %s): mIoU %.2f%%, pixel accuracy %.2f%% over %zu examples\n",
                   model, data, split, view, 100.0 * sc.miou, 100.0 * sc.pixel_acc, f.n);
    } else if (s == XD_OK) {
        if (json)
            printf("{\"model\":\"%s\",\"split\":\"%s\",\"view\":\"%s\",\"examples\":%zu,\"accuracy\":%.6f}\n",
                   model, split, view, f.n, acc);
        else
            printf("%s on %s (%s, %s): accuracy %.2f%% over %zu examples%s\n", model, data, split,
                   view, 100.0 * acc, f.n,
                   f.kind == FEED_TEXT && f.n_langs > 1 ? " in every language they have" : "");
    }
    free(input);
    free(aug);
    free(text);
    feed_close(&f);
    if (ds) io_dataset_close(ds);
    nn_model_free(&m);
    return s == XD_OK ? 0 : cli_report("eval", &e);
}
