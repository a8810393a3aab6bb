/* predict and eval on what must not give an answer, each refused in one line that names the file
 * and the problem, with a non-zero exit and nothing on standard output:
 *   - a checkpoint whose weights are finite but overflow float in the forward pass (its output
 *     Inf or NaN): predict names it and the input, eval it, the data set and the example;
 *   - a checkpoint holding a negative batch-norm running variance (checksums recomputed);
 *   - a line of standard input that is not UTF-8, holds a NUL byte or is longer than 64 KiB:
 *     "<stdin>:LINE: ...", the line not quoted, skipped as any bad input.
 * And names that are not UTF-8 (a file name with the byte 0xff) keep their place in the JSON
 * that predict and eval --json print, each bad byte as U+FFFD. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/predictfix.h"
#include "tests/support/runcli.h"

static int setup(void **state)
{
    (void)state;
    pf_setup();
    return 0;
}

/* The logits' weights all 3e38 over inputs >= 0 (after the ReLU): the outputs overflow to Inf. */
static void test_output_not_finite(void **state)
{
    (void)state;
    tu_rewrite_value("img/best.safetensors", "huge.safetensors", "logits.weight", TU_ALL, 3e38f);
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "predict", "huge.safetensors", "img0.png",
                                "img1.png", NULL), 1);
    tu_expect_line(err, "predict: huge.safetensors: the model's output for img0.png is not finite",
                   NULL);
    assert_string_equal(out, "");
    free(out);
    free(err);
    /* the input named is one that was read: not the blank slot of one that was not */
    tu_write_text("broken.png", "not a picture");
    assert_int_equal(tu_run_cli(&out, &err, "predict", "huge.safetensors", "broken.png",
                                "img1.png", NULL), 1);
    assert_non_null(strstr(err, "broken.png"));
    assert_non_null(strstr(err, "huge.safetensors: the model's output for img1.png is not finite"));
    assert_string_equal(out, "");
    free(out);
    free(err);
    const char *json[2] = {NULL, "--json"};
    for (int j = 0; j < 2; j++) {
        assert_int_equal(tu_run_cli(&out, &err, "eval", "--model", "huge.safetensors", "--data",
                                    "toy.xds", json[j], NULL), 1);
        tu_expect_line(err, "eval: huge.safetensors on toy.xds (test): the model's output for "
                       "example 0 is not finite", NULL);
        assert_string_equal(out, "");
        free(out);
        free(err);
    }
}

/* A negative running variance (the batch norm's square root of it is NaN): refused at loading. */
static void test_negative_running_variance(void **state)
{
    (void)state;
    tu_rewrite_value("img/best.safetensors", "negvar.safetensors", "bn.running_var", 3, -2.0f);
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "predict", "negvar.safetensors", "img0.png", NULL), 1);
    tu_expect_line(err, "negvar.safetensors: tensor 'bn.running_var' holds -2 at index 3",
                   "a running variance must be >= 0");
    assert_string_equal(out, "");
    free(out);
    free(err);
    assert_int_equal(tu_run_cli(&out, &err, "eval", "--model", "negvar.safetensors", "--data",
                                "toy.xds", NULL), 1);
    tu_expect_line(err, "negvar.safetensors: tensor 'bn.running_var'", NULL);
    free(out);
    free(err);
}

/* The value of key in the JSON object on line `line` (0-based) of out, as a new string. */
static char *line_value(const char *out, int line, const char *key)
{
    for (int i = 0; i < line; i++) {
        out = strchr(out, '\n');
        assert_non_null(out);
        out++;
    }
    json_error_t jerr;
    json_t *j = json_loadb(out, strcspn(out, "\n"), 0, &jerr);
    if (!j) fail_msg("line %d is not JSON: %s", line, jerr.text);
    const char *v = json_string_value(json_object_get(j, key));
    if (!v) fail_msg("line %d has no string \"%s\"", line, key);
    char *copy = strdup(v);
    json_decref(j);
    return copy;
}

static void test_names_not_utf8(void **state)
{
    (void)state;
    tu_copy_file("img0.png", "bad\xff.png");
    char *out, *err;
    assert_int_equal(tu_run_cli(&out, &err, "predict", "img/best.safetensors", "img0.png",
                                "bad\xff.png", NULL), 0);
    assert_string_equal(err, "");
    char *in0 = line_value(out, 0, "input"), *in1 = line_value(out, 1, "input");
    assert_string_equal(in0, "img0.png");
    assert_string_equal(in1, "bad\xef\xbf\xbd.png");
    /* the same answer: only the name changed */
    char *top0 = strstr(out, "\"top\""), *top1 = strstr(strchr(out, '\n'), "\"top\"");
    assert_memory_equal(top0, top1, strcspn(top0, "\n"));
    free(in0);
    free(in1);
    free(out);
    free(err);
    tu_copy_file("img/best.safetensors", "model\xfe.safetensors");
    assert_int_equal(tu_run_cli(&out, &err, "eval", "--model", "model\xfe.safetensors", "--data",
                                "toy.xds", "--json", NULL), 0);
    char *model = line_value(out, 0, "model");
    assert_string_equal(model, "model\xef\xbf\xbd.safetensors");
    free(model);
    free(out);
    free(err);
}

/* Standard input's lines 1 (a NUL byte) and 3 (bytes that are no UTF-8) are bad inputs; line 2 is
 * predicted. */
static void test_stdin_lines(void **state)
{
    (void)state;
    tu_write_file("lines.txt", "grinning\0 face\nred apple\n\xff\xfe face\n", 33);
    char *out, *err;
    assert_int_equal(tu_run_cli_in("lines.txt", &out, &err, "predict", "txt/best.safetensors",
                                   NULL), 3);
    assert_string_equal(err, "xdistill predict: <stdin>:1: invalid UTF-8 at byte 8 of the line "
                             "(0x00) (skipped)\nxdistill predict: <stdin>:3: invalid UTF-8 at "
                             "byte 0 of the line (0xff) (skipped)\n");
    char *in = line_value(out, 0, "input");
    assert_string_equal(in, "red apple");
    assert_string_equal(strchr(out, '\n'), "\n"); /* that one line only */
    free(in);
    free(out);
    free(err);
    /* --strict: the first one ends the run */
    assert_int_equal(tu_run_cli_in("lines.txt", &out, &err, "predict", "txt/best.safetensors",
                                   "--strict", NULL), 1);
    tu_expect_line(err, "predict: <stdin>:1: invalid UTF-8 at byte 8 of the line (0x00)", NULL);
    assert_string_equal(out, "");
    free(out);
    free(err);
}

/* A line of standard input longer than a manifest's line may be is a bad input, of which no more
 * than the limit is kept; the lines after it are predicted. */
static void test_stdin_long_line(void **state)
{
    (void)state;
    const size_t n = 100000;
    char *text = malloc(n + 32);
    memset(text, 'a', n);
    memcpy(text + n, "\nred apple\n", 11);
    tu_write_file("long.txt", text, n + 11);
    free(text);
    char *out, *err;
    assert_int_equal(tu_run_cli_in("long.txt", &out, &err, "predict", "txt/best.safetensors",
                                   NULL), 3);
    assert_string_equal(err, "xdistill predict: <stdin>:1: line of 100000 bytes, more than the "
                             "65536 allowed (skipped)\n");
    char *in = line_value(out, 0, "input");
    assert_string_equal(in, "red apple");
    assert_string_equal(strchr(out, '\n'), "\n");
    free(in);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_output_not_finite, setup),
        cmocka_unit_test_setup(test_negative_running_variance, setup),
        cmocka_unit_test_setup(test_names_not_utf8, setup),
        cmocka_unit_test_setup(test_stdin_lines, setup),
        cmocka_unit_test_setup(test_stdin_long_line, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
