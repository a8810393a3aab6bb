/* `xdistill train`: runs a recipe, once or over several seeds, and `xdistill eval`: scores a
 * checkpoint on a data set split. */
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
#include "distill/runs.h"
#include "distill/segment.h"
#include "distill/trainer.h"
#include "io/file.h"

static void train_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill train RECIPE.yaml [--out DIR] [--set key.path=value ...]\n"
            "                      [--seed N] [--seeds K] [--stop-after N] [--quiet]\n"
            "       xdistill train [RECIPE.yaml] --resume DIR\n\n"
            "Trains what the recipe describes (a teacher, a student, any distillation; see\n"
            "docs/RECIPES.md). Writes DIR/metrics.jsonl (one line per epoch), DIR/summary.json,\n"
            "DIR/last.safetensors, DIR/best.safetensors and DIR/resume.safetensors.\n\n"
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
            if (cli_parse_long(argv[++i], 0, 1L << 40, &seed)) rc = cli_usage_error("train", "--seed takes a number >= 0");
        } else if (strcmp(a, "--seeds") == 0 && has_val) {
            if (cli_parse_long(argv[++i], 1, 64, &seeds)) rc = cli_usage_error("train", "--seeds takes 1..64");
        } else if (strcmp(a, "--stop-after") == 0 && has_val) {
            if (cli_parse_long(argv[++i], 1, 1 << 20, &stop_after)) rc = cli_usage_error("train", "--stop-after takes a number of epochs >= 1");
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
        if (resume && seeds > 1 && runs_read_finished(dir, &res[k])) {
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
        if (s == XD_OK && res[k].finished) runs_print_result(stdout, r.name, &res[k]);
        if (s == XD_OK && !res[k].finished) break; /* stopped early on request */
    }
    int all_done = 1;
    for (long k = 0; k < seeds; k++) all_done &= res[k].finished;
    if (s == XD_OK && seeds > 1 && all_done) {
        s = runs_write_seeds_summary(out, &r, res, (int)seeds, &e);
        if (s == XD_OK) runs_print_seeds(stdout, r.name, res, (int)seeds);
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
