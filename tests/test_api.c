/* The inference API (include/xdistill/infer.h) called directly, on the image and text models of
 * tests/support/predictfix.h, where its contract is about the calls rather than the answers:
 *   - a slot never filled predicts as the blank input a failed fill leaves, whatever the memory
 *     the batch was made in held before;
 *   - a NULL pointer argument is XDISTILL_EARG (or the documented failure value), never a crash,
 *     with a message naming the argument;
 *   - every message is one line, even for names holding line breaks;
 *   - xdistill_top puts NaN last;
 *   - an image file wider than the library handles is XDISTILL_EUNSUPPORTED. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/xdistill/xdistill.h"
#include "tests/support/predictfix.h"

static int setup(void **state)
{
    (void)state;
    pf_setup();
    return 0;
}

static xdistill_model *load(const char *path, int max_batch)
{
    xdistill_model *m = NULL;
    xdistill_error e;
    if (xdistill_load(path, max_batch, &m, &e) != XDISTILL_OK) fail_msg("%s", e.message);
    return m;
}

/* probs of a batch of 3 of m: slot 0 filled, slots 1 and 2 never filled (failed 0) or failed
 * fills (failed 1); the batch is made in memory that holds no zeros. */
static void three(xdistill_model *m, int texts, int failed, float *probs)
{
    /* the batch's inputs are 192 bytes for both models (3 slots of 16 token ids, of 8x8 grey
     * pixels): freed blocks of that size, which malloc hands out again, hold 0x7f bytes */
    void *p[7];
    for (int k = 0; k < 7; k++) memset(p[k] = malloc(192), 0x7f, 192);
    for (int k = 0; k < 7; k++) free(p[k]);
    xdistill_batch *b = xdistill_batch_new(m);
    assert_non_null(b);
    xdistill_error e;
    if (texts)
        assert_int_equal(xdistill_batch_set_text(b, 0, "a text", 6, "t", &e), XDISTILL_OK);
    else
        assert_int_equal(xdistill_batch_set_image_file(b, 0, "img0.png", &e), XDISTILL_OK);
    for (int slot = 1; failed && slot < 3; slot++) {
        if (texts)
            assert_int_equal(xdistill_batch_set_text(b, slot, "\xff", 1, "bad", &e),
                             XDISTILL_EFORMAT);
        else
            assert_int_not_equal(xdistill_batch_set_image_file(b, slot, "missing.png", &e),
                                 XDISTILL_OK);
    }
    int h = -1, w = -1;
    xdistill_batch_image_size(b, 1, &h, &w);
    assert_int_equal(h, 0);
    assert_int_equal(w, 0);
    assert_int_equal(xdistill_predict(m, b, 3, probs, &e), XDISTILL_OK);
    xdistill_batch_free(b);
}

static void test_unset_slots(void **state)
{
    (void)state;
    const char *const ckpt[2] = {"img/best.safetensors", "txt/best.safetensors"};
    for (int texts = 0; texts < 2; texts++) {
        xdistill_model *m = load(ckpt[texts], 3);
        const size_t n = xdistill_outputs(m);
        float *unset = calloc(3 * n, sizeof *unset), *blank = calloc(3 * n, sizeof *blank);
        float *again = calloc(3 * n, sizeof *again);
        three(m, texts, 1, blank);
        three(m, texts, 0, unset);
        three(m, texts, 0, again);
        assert_memory_equal(unset, blank, 3 * n * sizeof *unset);
        assert_memory_equal(again, blank, 3 * n * sizeof *unset);
        free(unset);
        free(blank);
        free(again);
        xdistill_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_unset_slots, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
