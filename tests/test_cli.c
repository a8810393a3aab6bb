/* The xdistill program itself, run as a user would (the binary next to this test's folder):
 * what inspect says about the files a run writes, truncated files and folders. */
#include "tests/support/testutil.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs `xdistill ARGS` (ARGS as shell words), stdout and stderr together into out; returns the
 * exit status. */
static int run(const char *args, char *out, size_t cap)
{
    char exe[PATH_MAX], cmd[2 * PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    char *tests_dir = dirname(exe); /* BUILD/tests */
    snprintf(cmd, sizeof cmd, "'%s/../xdistill' %s 2>&1", tests_dir, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, cap - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void expect(const char *args, int rc, const char *want)
{
    char out[8192];
    int got = run(args, out, sizeof out);
    if (got != rc || !strstr(out, want))
        fail_msg("xdistill %s: exit %d, output:\n%s\nexpected exit %d and '%s'", args, got, out,
                 rc, want);
}

/* inspect shows what a run writes (it once said "unknown format"), names a truncated
 * safetensors file with its sizes, and a folder as a folder (it once said "empty file"). */
static void test_inspect_run_files(void **state)
{
    (void)state;
    const char *summary = "{\n  \"name\": \"t\",\n  \"epochs\": 2,\n  \"final_test_acc\": 0.5,\n"
                          "  \"best_epoch\": 1,\n  \"recipe\": \"name: t\\nseed: 1\\n\"\n}\n";
    const char *metrics = "{\"epoch\": 1, \"loss\": 0.5, \"test_acc\": null}\n"
                          "{\"epoch\": 2, \"loss\": 0.25, \"test_acc\": 0.75}\n";
    const char *recipe = "name: r\ndata: {path: nowhere.xds}\n"
                         "model: \"input h=2 w=2 c=1; flatten; linear out=3 name=logits head\"\n"
                         "train: {epochs: 4, batch: 8}\nlosses: [{kind: ce}]\n";
    mkdir("run", 0777);
    tu_write_file("run/summary.json", summary, strlen(summary));
    tu_write_file("run/metrics.jsonl", metrics, strlen(metrics));
    tu_write_file("run/recipe.yaml", recipe, strlen(recipe));
    expect("inspect run/summary.json", 0, "run/summary.json: JSON object (run summary)");
    expect("inspect run/summary.json", 0, "final_test_acc         0.5");
    expect("inspect run/summary.json", 0, "recipe                 (text of 16 bytes)");
    expect("inspect run/metrics.jsonl", 0, "2 records (metrics, one per epoch)");
    expect("inspect run/metrics.jsonl", 0, "test_acc               0.75");
    expect("inspect run/recipe.yaml", 0, "run/recipe.yaml: recipe 'r', valid");
    expect("inspect run/recipe.yaml", 0, "model     2 nodes, 15 parameters, default head 'logits'");
    expect("inspect run/recipe.yaml", 0, "stage 1   4 epochs: ce");
    tu_write_file("run/bad.yaml", "name: r\nmodel: 3\n", 17);
    expect("inspect run/bad.yaml", 1, "not a valid recipe: run/bad.yaml");

    /* a safetensors file cut short: 500 bytes of header announced, 8 + 7 there */
    unsigned char cut[15] = {0xF4, 0x01, 0, 0, 0, 0, 0, 0, '{', '"', 'a', '"', ':', '1', '}'};
    tu_write_file("cut.safetensors", cut, sizeof cut);
    expect("inspect cut.safetensors", 1, "cut.safetensors: truncated safetensors file: its header "
                                         "says 500 bytes of JSON follow the 8-byte length, the "
                                         "file has 15 bytes in all");
    expect("inspect run", 1, "run: is a run folder; inspect one of its files: summary.json, "
                             "metrics.jsonl, recipe.yaml");
    mkdir("empty", 0777);
    expect("inspect empty", 1, "empty: is a folder");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect_run_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
