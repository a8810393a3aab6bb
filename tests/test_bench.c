/* The speed suites of `xdistill bench` run in their quick form, and each prints the rows it
 * promises: smoke tests of the suites' plumbing, with no timing checked (the figures only there,
 * finite, positive and in order where an order holds). */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "tests/support/runcli.h"
#include "tests/support/trainrun.h"

/* One run of a suite: what it printed on standard output and error (freed by teardown) */
typedef struct {
    char *out, *err;
} bench_out;

static int setup(void **state)
{
    *state = xd_xcalloc(1, sizeof(bench_out));
    return 0;
}

static int teardown(void **state)
{
    bench_out *r = *state;
    free(r->out);
    free(r->err);
    free(r);
    return 0;
}

/* `xdistill bench SUITE --quick --json` (at threads, when not NULL): its exit status 0, its
 * outputs kept in the test's state */
static bench_out *bench_quick(void **state, const char *suite, const char *threads)
{
    bench_out *r = *state;
    if (threads)
        assert_int_equal(tu_run_cli(&r->out, &r->err, "bench", suite, "--quick", "--threads",
                                    threads, "--json", NULL), 0);
    else
        assert_int_equal(tu_run_cli(&r->out, &r->err, "bench", suite, "--quick", "--json", NULL),
                         0);
    return r;
}

/* `bench infer --quick` runs every model at both batch sizes (a smoke test: no timing checked). */
static void test_bench_infer_runs(void **state)
{
    bench_out *r = bench_quick(state, "infer", "1");
    char *out = r->out, *err = r->err;
    /* the float students, then their int8 forms (QDQ models for ONNX Runtime) */
    static const char *const models[] = {"fashion_mlp",      "fashion_cnn",      "emoji_cnn",
                                         "fashion_mlp_int8", "fashion_cnn_int8", "emoji_cnn_int8"};
    for (int k = 0; k < 6; k++)
        for (int b = 1; b <= 64; b += 63) {
            char *row = tu_fmt("{\"suite\":\"infer\",\"model\":\"%s\",\"batch\":%d,\"threads\":1,"
                               "\"ours_images_per_s\":", models[k], b);
            if (!strstr(out, row)) fail_msg("no row %s in: %s%s", row, out, err);
            free(row);
        }
}

/* `bench train --quick` at 1 and 2 threads: a row for every model, precision and thread count,
 * each with at least the 20 steps a row takes over its rounds, and where two cores run, the
 * 2-thread rows with the capacity of two one-thread copies side by side, the speed-up of two
 * threads in the same rounds and the cores' handoff (a smoke test of the rounds taken in turn: no
 * timing checked, the figures only there, positive and in order). */
static void test_bench_train_rounds(void **state)
{
    bench_out *r = bench_quick(state, "train", "1,2");
    char *out = r->out, *err = r->err;
    static const char *const cases[] = {"mlp_student", "mlp_student_bf16", "teacher_cnn",
                                        "teacher_cnn_bf16", "teacher_cnn_fwd",
                                        "teacher_cnn_fwd_bf16"};
    enum { CASES = sizeof cases / sizeof cases[0] };
    const int two_cores = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
    int seen[CASES][2] = {{0}};
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *row = line[0] == '{' ? json_loads(line, 0, NULL) : NULL;
        const char *suite = json_string_value(json_object_get(row, "suite")),
                   *name = json_string_value(json_object_get(row, "case"));
        int k = 0;
        while (suite && name && k < CASES && strcmp(name, cases[k]) != 0) k++;
        if (!suite || strcmp(suite, "train") != 0 || !name || k == CASES) {
            json_decref(row);
            continue;
        }
        const int th = (int)num(row, "threads");
        assert_true(th == 1 || th == 2);
        seen[k][th - 1]++;
        if (num(row, "reps") < 20)
            fail_msg("%s at %d threads: %g steps, fewer than 20", name, th, num(row, "reps"));
        if (th == 2 && two_cores) {
            const double cap = num(row, "capacity"), sp = num(row, "capacity_threads_speedup");
            if (!(isfinite(cap) && cap > 0.0 && isfinite(sp) && sp > 0.0))
                fail_msg("%s: capacity %g, two threads %g", name, cap, sp);
            /* the cores' handoff: a round trip within its rounds' range, both read rates (a
             * read that did not return what the other thread wrote leaves them out) */
            const double n = num(row, "handoff_rounds"), rt = num(row, "handoff_round_trip_ns"),
                         lo = num(row, "handoff_round_trip_min_ns"),
                         hi = num(row, "handoff_round_trip_max_ns");
            if (!(n >= 1 && n <= 5 && lo > 0.0 && lo <= rt && rt <= hi && isfinite(hi) &&
                  num(row, "handoff_other_gbs") > 0.0 && num(row, "handoff_own_gbs") > 0.0 &&
                  isfinite(num(row, "handoff_other_gbs")) && isfinite(num(row, "handoff_own_gbs"))))
                fail_msg("%s: handoff over %g rounds: round trip %g ns [%g-%g], reads %g and %g "
                         "GB/s", name, n, rt, lo, hi, num(row, "handoff_other_gbs"),
                         num(row, "handoff_own_gbs"));
        } else if (json_object_get(row, "capacity") || json_object_get(row, "handoff_rounds")) {
            fail_msg("%s at %d thread(s): a capacity or handoff where none was measured", name, th);
        }
        json_decref(row);
    }
    for (int k = 0; k < CASES; k++)
        for (int th = 1; th <= 2; th++)
            if (seen[k][th - 1] != 1)
                fail_msg("%d rows of %s at %d threads in: %s", seen[k][th - 1], cases[k], th, err);
}

/* `bench grow --quick`: each size is prepared and trained in its own process, one whole epoch
 * (every example trained once) with each epoch order, and the sweeps run (a smoke test: no
 * timing checked). */
static void test_bench_grow_runs(void **state)
{
    bench_out *r = bench_quick(state, "grow", "1");
    char *out = r->out, *err = r->err;
    static const long sizes[] = {500, 1000, 2000};
    static const char *const orders[] = {"stored", "keyed"};
    for (int q = 0; q < 6; q++) {
        const int k = q % 3;
        char *row = tu_fmt("{\"suite\":\"grow\",\"case\":\"examples\",\"shuffle\":\"%s\","
                           "\"examples\":%ld,\"test_examples\":%ld,\"threads\":1,", orders[q / 3],
                           sizes[k], sizes[k] / 10);
        char *trained = tu_fmt("\"trained_examples\":%ld,", sizes[k]);
        const char *at = strstr(out, row);
        if (!at) fail_msg("no row %s in: %s%s", row, out, err);
        const char *end = strchr(at, '\n'), *t = strstr(at, trained);
        if (!t || t > end) fail_msg("row for %ld examples did not train %s: %.*s", sizes[k],
                                    trained, (int)(end - at), at);
        const char *h = strstr(at, "\"peak_mapped_huge_mib\":");
        if (!h || h > end) fail_msg("row for %ld examples has no huge-page figure: %.*s", sizes[k],
                                    (int)(end - at), at);
        free(row);
        free(trained);
    }
    if (!strstr(out, "\"mapped_huge_pct_last\":")) fail_msg("no huge-page share in: %s", out);
    static const char *const cases[] = {"examples_check\",\"shuffle\":\"stored",
                                        "examples_check\",\"shuffle\":\"keyed", "batch_knee",
                                        "width_knee"};
    for (int k = 0; k < 4; k++) {
        char *row = tu_fmt("{\"suite\":\"grow\",\"case\":\"%s\",", cases[k]);
        if (!strstr(out, row)) fail_msg("no row %s in: %s%s", row, out, err);
        free(row);
    }
}

/* `bench int8 --quick` runs the int8 rows alone: every student (the emoji CNN among them) at both
 * batch sizes, and none of the float rows against ONNX Runtime. */
static void test_bench_int8_runs(void **state)
{
    bench_out *r = bench_quick(state, "int8", NULL);
    char *out = r->out, *err = r->err;
    static const char *const models[] = {"fashion_mlp", "zoo_cnn", "emoji_cnn"};
    for (int k = 0; k < 3; k++)
        for (int b = 1; b <= 64; b += 63) {
            char *row = tu_fmt("\"int8\":true,\"model\":\"%s\",", models[k]);
            char *batch = tu_fmt("\"batch\":%d,\"threads\":1,\"float_images_per_s\":", b);
            const char *at = strstr(out, row);
            const char *line_end = at ? strchr(at, '\n') : NULL;
            while (at && !(strstr(at, batch) && strstr(at, batch) < line_end)) {
                at = strstr(at + 1, row);
                line_end = at ? strchr(at, '\n') : NULL;
            }
            if (!at) fail_msg("no int8 row of %s at batch %d in: %s%s", models[k], b, out, err);
            free(row);
            free(batch);
        }
    if (strstr(out, "ours_images_per_s")) fail_msg("bench int8 ran the float rows: %s", out);
}

/* `bench gemm --quick` at 1 and 2 threads: a row for every layer at each count, and for the
 * second convolution by Winograd's: its bare products at one thread (ours and cblas_sgemm's) and
 * its forward at both, the shares of the FMA peak consistent with the rates they come from. */
static void test_bench_gemm_rows(void **state)
{
    bench_out *r = bench_quick(state, "gemm", "1,2");
    char *out = r->out, *err = r->err;
    static const char *const cases[] = {"sgemm1024", "conv1", "conv2", "fc1", "fc2",
                                        "conv_total", "conv2_winograd"};
    enum { CASES = sizeof cases / sizeof cases[0] };
    int seen[CASES][2] = {{0}};
    double peak[2] = {0};
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *row = line[0] == '{' ? json_loads(line, 0, NULL) : NULL;
        const char *name = json_string_value(json_object_get(row, "case"));
        int k = 0;
        while (name && k < CASES && strcmp(name, cases[k]) != 0) k++;
        if (json_object_get(row, "machine")) { /* the machine's line */
            json_decref(row);
            continue;
        }
        if (!name || k == CASES) fail_msg("a line of no known row: %s", line);
        const int th = (int)num(row, "threads");
        assert_true(th == 1 || th == 2);
        seen[k][th - 1]++;
        if (k == 0) peak[th - 1] = num(row, "fma_peak_gflops");
        if (k == CASES - 1) {
            assert_true(num(row, "M") == 98 && num(row, "N") == 64 && num(row, "K") == 32);
            const double f = num(row, "forward_products_gflops"), d = num(row, "forward_direct_gflops");
            /* the direct count is 9 / 4 of the products' for these tiles (16 products of 4
             * outputs each, where the direct sum takes 9 per output); both printed to 0.01 */
            if (!(isfinite(f) && f > 0.0 && fabs(d - 2.25 * f) < 0.02))
                fail_msg("Winograd's forward at %d threads: %g and %g GFLOP/s", th, f, d);
            if (!(peak[th - 1] > 0.0 && fabs(num(row, "forward_over_peak") - f / peak[th - 1]) < 1e-3 &&
                  num(row, "forward_min_ms") <= num(row, "forward_ms") &&
                  num(row, "forward_ms") <= num(row, "forward_max_ms")))
                fail_msg("Winograd's forward at %d threads: %s", th, line);
            const int bare = json_object_get(row, "ours_gflops") != NULL;
            if (bare != (th == 1)) fail_msg("bare products at %d threads: %s", th, line);
            if (bare && !(num(row, "sgemm_gflops") > 0.0 && num(row, "ours_gflops") > 0.0 &&
                          fabs(num(row, "ours_over_peak") - num(row, "ours_gflops") / peak[0]) < 1e-3))
                fail_msg("Winograd's products: %s", line);
        }
        json_decref(row);
    }
    for (int k = 0; k < CASES; k++)
        for (int th = 1; th <= 2; th++)
            if (seen[k][th - 1] != 1)
                fail_msg("%d rows of %s at %d threads in: %s", seen[k][th - 1], cases[k], th, err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bench_infer_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_train_rounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_grow_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_int8_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_gemm_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
