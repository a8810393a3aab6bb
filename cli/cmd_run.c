/* `xdistill run`: runs a pipeline of recipes (distill/pipeline.h), each step taught by earlier
 * steps' checkpoints, skipping the steps whose inputs have not changed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "distill/pipeline.h"

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill run PIPELINE.yaml [--out DIR] [--set key.path=value ...]\n"
            "                    [--seed N] [--seeds K] [--stop-after N] [--check] [--quiet]\n\n"
            "Runs the pipeline's steps in order, each an ordinary training run of its recipe in\n"
            "DIR/seed-N/STEP/; a step's recipe reads an earlier step's checkpoint of the same seed\n"
            "as a teacher with `checkpoint: step:NAME` (its best; step:NAME/last for the last).\n"
            "A step whose recipe, data set, teachers' and init checkpoints, eval sets and seed are\n"
            "unchanged since it finished is skipped; an interrupted one resumes where it stopped.\n"
            "DIR/summary.json gives each step's mean and standard deviation over the seeds. See\n"
            "docs/RECIPES.md.\n\n"
            "options:\n"
            "  --out DIR        output folder (default runs/NAME, NAME from the pipeline)\n"
            "  --set K=V        override a key in every step's recipe (after the step's own\n"
            "                   set:), e.g. --set train.threads=1 (repeatable); not seed, seeds\n"
            "                   or name, which the pipeline decides (--seed, --seeds, --out)\n"
            "  --seed N         first seed (default: the pipeline's)\n"
            "  --seeds K        run the whole chain for seeds N, N+1, ..., N+K-1\n"
            "  --stop-after N   stop a step once it has done N epochs (run again to continue)\n"
            "  --check          check the pipeline and every recipe, print the steps, run nothing\n"
            "  --quiet          no training progress\n");
}

/* "teacher, assistant (reads teacher), student (reads assistant/last)" */
static void print_steps(const pipeline *p)
{
    printf("%s: %d step%s:", p->file, p->n_steps, p->n_steps == 1 ? "" : "s");
    for (int i = 0; i < p->n_steps; i++) {
        const pipeline_step *st = &p->steps[i];
        printf("%s %s (%s", i ? "," : "", st->name, st->recipe_path);
        for (int k = 0; k < st->n_refs; k++)
            printf("%s%s%s%s", k ? ", " : "; reads ", p->steps[st->refs[k].step].name,
                   st->refs[k].which == PIPELINE_CKPT_BEST ? "" : "/",
                   st->refs[k].which == PIPELINE_CKPT_BEST ? "" : pipeline_ckpt_names[st->refs[k].which]);
        printf(")");
    }
    printf("\n");
}

typedef enum {
    RO_OUT, RO_SET, RO_SEED, RO_SEEDS, RO_STOP_AFTER, RO_CHECK, RO_QUIET, RO_COUNT
} run_opt;
static const cli_option run_options[RO_COUNT] = {
    [RO_OUT] = {"--out", 1},   [RO_SET] = {"--set", 1, 1},
    [RO_SEED] = {"--seed", 1}, [RO_SEEDS] = {"--seeds", 1},
    [RO_STOP_AFTER] = {"--stop-after", 1}, [RO_CHECK] = {"--check", 0},
    [RO_QUIET] = {"--quiet", 0},
};

int cmd_run(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        run_usage(stdout);
        return 0;
    }
    const char *path = NULL;
    pipeline_opts o = {.seed = -1, .log = stderr, .out = stdout};
    long v = 0;
    int check = 0, rc = 0, n_sets = 0;
    const char **sets = xd_xcalloc((size_t)argc, sizeof *sets);
    for (int i = 1; i < argc && !rc; i++) {
        const char *val = NULL;
        const int k = cli_next_option("run", run_options, RO_COUNT, argc, argv, &i, &val, &rc);
        if (k == -1 && path)
            rc = cli_usage_error("run", "one pipeline at a time ('%s' and '%s')", path, argv[i]);
        else if (k == -1)
            path = argv[i];
        if (k < 0) continue;
        switch ((run_opt)k) {
        case RO_OUT: o.out_dir = val; break;
        case RO_SET: {
            const char *why = pipeline_fixed_key(val);
            if (why) rc = cli_usage_error("run", "--set %s: %s", val, why);
            sets[n_sets++] = val;
            break;
        }
        case RO_SEED:
            if (cli_parse_long(val, 0, 1L << 40, &o.seed))
                rc = cli_usage_error("run", "--seed takes a number in 0..%ld", 1L << 40);
            break;
        case RO_SEEDS:
            if (cli_parse_long(val, 1, PIPELINE_MAX_SEEDS, &v))
                rc = cli_usage_error("run", "--seeds takes 1..%d", PIPELINE_MAX_SEEDS);
            o.seeds = (int)v;
            break;
        case RO_STOP_AFTER:
            if (cli_parse_long(val, 1, 1 << 20, &v))
                rc = cli_usage_error("run", "--stop-after takes a number of epochs >= 1");
            o.stop_after = (int)v;
            break;
        case RO_CHECK: check = 1; break;
        case RO_QUIET: o.quiet = 1; break;
        case RO_COUNT: break;
        }
    }
    if (!rc && !path) rc = cli_usage_error("run", "give a pipeline file");
    if (!rc) rc = cli_sets_once("run", sets, n_sets);
    pipeline p;
    xd_err e;
    xd_err_clear(&e);
    if (!rc && pipeline_load(path, sets, n_sets, &p, &e) != XD_OK) rc = cli_report("run", &e);
    free(sets);
    if (rc) return rc;
    xd_status s = XD_OK;
    if (check) {
        print_steps(&p);
    } else {
        pipeline_result res;
        s = pipeline_run(&p, &o, &res, &e);
        pipeline_result_free(&res);
    }
    pipeline_free(&p);
    return s == XD_OK ? 0 : cli_report("run", &e);
}
