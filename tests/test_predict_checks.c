/* predict and eval on what must not give an answer, each refused in one line that names the file
 * and the problem, with a non-zero exit and nothing on standard output:
 *   - a checkpoint whose weights are finite but overflow float in the forward pass (its output
 *     Inf or NaN): predict names it and the input, eval it, the data set and the example;
 *   - a checkpoint holding a negative batch-norm running variance (checksums recomputed). */
#include "tests/support/testutil.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_output_not_finite, setup),
        cmocka_unit_test_setup(test_negative_running_variance, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
