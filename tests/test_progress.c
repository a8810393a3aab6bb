/* distill/progress: the span of a longer job, plain lines for logs, and what each mode prints. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/progress.h"

static void test_span_parse(void **state)
{
    (void)state;
    progress_span s;
    assert_int_equal(progress_span_parse("0.25,0.5,1764000000", &s), 0);
    assert_true(s.from == 0.25 && s.to == 0.5 && s.t0 == 1764000000.0);
    assert_int_equal(progress_span_parse("0,1,1", &s), 0);
    const char *bad[] = {"", "0.5", "0.5,0.25,1", "0.2,0.2,1", "-0.1,0.5,1", "0,1.5,1",
                         "0,1,0", "0,1,1,2", "0,1,x", "0;1;1", "nan,1,1", "0,1,1 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (progress_span_parse(bad[i], &s) == 0) fail_msg("accepted '%s'", bad[i]);
}

/* Everything a progress object wrote to a temporary (not a terminal) file. */
static char *run_epoch(int quiet, const progress_span *span)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    progress p;
    progress_init(&p, f, quiet, span);
    assert_int_equal(p.tty, 0);
    p.every = 0.0; /* a line at every step, not every few seconds */
    progress_epoch(&p, "run", 2, 4, 10);
    progress_step(&p, 5, 0.5, 640.0);
    progress_done(&p, "run epoch 2/4: loss 0.5000");
    long n = ftell(f);
    char *text = calloc((size_t)n + 1, 1);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return text;
}

static void test_plain_lines(void **state)
{
    (void)state;
    char *alone = run_epoch(0, NULL);
    /* no control characters in a log: only printable text and newlines */
    for (const char *c = alone; *c; c++) assert_true(*c == '\n' || (*c >= ' ' && *c < 127));
    assert_non_null(strstr(alone, "run: epoch 2/4 step 5/10, loss 0.5000"));
    assert_non_null(strstr(alone, "50% done")); /* of this epoch */
    assert_non_null(strstr(alone, "\nrun epoch 2/4: loss 0.5000\n"));
    free(alone);

    /* a share 0.5..1 of a job: epoch 2 of 4, half done, is (1 + 0.5) / 4 of the run, so the
     * job is 0.5 + 0.5 * 0.375 = 68.75% done; the epoch line is the job's to print */
    progress_span span = {.from = 0.5, .to = 1.0, .t0 = 1.0};
    char *job = run_epoch(0, &span);
    assert_non_null(strstr(job, "69% done"));
    assert_non_null(strstr(job, "(whole run)"));
    assert_null(strstr(job, "run epoch 2/4: loss"));
    for (const char *c = job; *c; c++) assert_true(*c == '\n' || (*c >= ' ' && *c < 127));
    free(job);

    char *quiet = run_epoch(1, &span);
    assert_string_equal(quiet, "");
    free(quiet);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span_parse),
        cmocka_unit_test(test_plain_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
