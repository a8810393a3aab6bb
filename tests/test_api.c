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

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/xdistill/xdistill.h"
#include "io/png.h"
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

/* status s with a message that holds what */
static void expect(xdistill_status s, const xdistill_error *e, xdistill_status want,
                   const char *what)
{
    assert_int_equal(s, want);
    assert_int_equal(e->code, want);
    if (!strstr(e->message, what)) fail_msg("'%s' is not in '%s'", what, e->message);
    assert_null(strchr(e->message, '\n'));
}

static void test_null_arguments(void **state)
{
    (void)state;
    xdistill_error e;
    xdistill_model *m = load("img/best.safetensors", 2), *t = load("txt/best.safetensors", 1);
    xdistill_model *out = m;
    expect(xdistill_load(NULL, 1, &out, &e), &e, XDISTILL_EARG, "path");
    assert_null(out);
    expect(xdistill_load("img/best.safetensors", 1, NULL, &e), &e, XDISTILL_EARG, "out");
    expect(xdistill_use_exit(NULL, "x", &e), &e, XDISTILL_EARG, "model");
    expect(xdistill_use_exit(m, NULL, &e), &e, XDISTILL_EARG, "name");
    assert_int_equal(xdistill_reads(NULL), XDISTILL_READS_IMAGES);
    assert_int_equal(xdistill_task_of(NULL), XDISTILL_CLASSIFY);
    assert_int_equal(xdistill_max_batch(NULL), 0);
    assert_int_equal(xdistill_num_classes(NULL), 0);
    assert_null(xdistill_class_name(NULL, 0));
    int h = -1, w = -1;
    xdistill_map_size(NULL, &h, &w);
    assert_int_equal(h, 0);
    assert_int_equal(w, 0);
    xdistill_map_size(m, NULL, NULL);
    assert_int_equal(xdistill_outputs(NULL), 0);
    assert_null(xdistill_batch_new(NULL));
    xdistill_batch *b = xdistill_batch_new(m), *tb = xdistill_batch_new(t);
    assert_non_null(b);
    assert_non_null(tb);
    expect(xdistill_batch_set_image_file(NULL, 0, "img0.png", &e), &e, XDISTILL_EARG, "batch");
    expect(xdistill_batch_set_image_file(b, 0, NULL, &e), &e, XDISTILL_EARG, "path");
    expect(xdistill_batch_set_image(NULL, 0, (const unsigned char *)"", 1, 1, 1, "p", &e), &e,
           XDISTILL_EARG, "batch");
    expect(xdistill_batch_set_image(b, 0, NULL, 1, 1, 1, "p", &e), &e, XDISTILL_EARG, "pixels");
    expect(xdistill_batch_set_text(NULL, 0, "a", 1, "t", &e), &e, XDISTILL_EARG, "batch");
    expect(xdistill_batch_set_text(tb, 0, NULL, 1, "t", &e), &e, XDISTILL_EARG, "text");
    float probs[4096];
    expect(xdistill_predict(NULL, b, 1, probs, &e), &e, XDISTILL_EARG, "model");
    expect(xdistill_predict(m, NULL, 1, probs, &e), &e, XDISTILL_EARG, "batch");
    expect(xdistill_predict(m, b, 1, NULL, &e), &e, XDISTILL_EARG, "probs");
    expect(xdistill_use_rationale(NULL, "x", &e), &e, XDISTILL_EARG, "model");
    expect(xdistill_use_rationale(m, NULL, &e), &e, XDISTILL_EARG, "path");
    char buf[8];
    assert_int_equal(xdistill_rationale(NULL, 0, buf, sizeof buf), -1);
    h = w = -1;
    xdistill_batch_image_size(NULL, 0, &h, &w);
    assert_int_equal(h, 0);
    assert_int_equal(w, 0);
    xdistill_batch_image_size(b, 0, NULL, NULL);
    unsigned char mask[1];
    expect(xdistill_mask(NULL, 0, probs, mask, &e), &e, XDISTILL_EARG, "batch");
    assert_int_equal(xdistill_top(NULL, 1, 1, (int[1]){0}), 0);
    /* err may be NULL */
    assert_int_equal(xdistill_predict(NULL, NULL, 1, NULL, NULL), XDISTILL_EARG);
    xdistill_batch_free(b);
    xdistill_batch_free(tb);
    xdistill_free(m);
    xdistill_free(t);
}

static void no_break(const xdistill_error *e, const char *escaped)
{
    for (const char *c = e->message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) fail_msg("control byte in '%s'", e->message);
    if (!strstr(e->message, escaped)) fail_msg("'%s' is not in '%s'", escaped, e->message);
}

static void test_messages_one_line(void **state)
{
    (void)state;
    xdistill_error e;
    xdistill_model *m = NULL;
    assert_int_equal(xdistill_load("no\nsuch\x01.safetensors", 1, &m, &e), XDISTILL_EIO);
    no_break(&e, "no\\nsuch\\x01.safetensors");
    m = load("img/best.safetensors", 1);
    xdistill_batch *b = xdistill_batch_new(m);
    assert_int_not_equal(xdistill_batch_set_image_file(b, 0, "a\nb.png", &e), XDISTILL_OK);
    no_break(&e, "a\\nb.png");
    unsigned char px[3] = {0};
    assert_int_equal(xdistill_batch_set_image(b, 0, px, 0, 1, 3, "line1\r\nline2\t", &e),
                     XDISTILL_EARG);
    no_break(&e, "line1\\r\\nline2\\t");
    assert_int_not_equal(xdistill_use_exit(m, "a\nb", &e), XDISTILL_OK);
    no_break(&e, "a\\nb");
    /* escaped, a message longer than the buffer is cut before an escape, never inside one */
    char name[300];
    memset(name, '\n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_int_not_equal(xdistill_batch_set_image_file(b, 0, name, &e), XDISTILL_OK);
    no_break(&e, "\\n\\n");
    const size_t len = strlen(e.message);
    assert_true(len >= XDISTILL_ERROR_LEN - 2 && len < XDISTILL_ERROR_LEN);
    size_t slashes = 0;
    while (slashes < len && e.message[len - 1 - slashes] == '\\') slashes++;
    assert_int_equal(slashes % 2, 0);
    xdistill_batch_free(b);
    xdistill_free(m);
}

static void test_top_nan(void **state)
{
    (void)state;
    const float p[5] = {0.2f, NAN, 0.5f, NAN, 0.2f};
    int c[5] = {-1, -1, -1, -1, -1};
    assert_int_equal(xdistill_top(p, 5, 5, c), 5);
    const int want[5] = {2, 0, 4, 1, 3};
    assert_memory_equal(c, want, sizeof want);
    int c2[2];
    assert_int_equal(xdistill_top(p, 5, 2, c2), 2);
    assert_int_equal(c2[0], 2);
    assert_int_equal(c2[1], 0);
    const float q[3] = {NAN, NAN, 0.0f};
    assert_int_equal(xdistill_top(q, 3, 3, c), 3);
    assert_int_equal(c[0], 2);
    assert_int_equal(c[1], 0);
    assert_int_equal(c[2], 1);
}

/* An exit's class names depend on that exit alone: the stored names when it has as many classes
 * as the default head, else its numbers, whichever head was in use before (as export --exit
 * names them). */
static void test_exit_class_names(void **state)
{
    (void)state;
    tu_save_model("ex0.safetensors",
                  "input h=4 w=4 c=1; flatten name=f; linear out=3 name=main head; "
                  "linear from=f out=3 name=same head; linear from=f out=5 name=aux head",
                  2, 3);
    tu_rewrite_meta("ex0.safetensors", "ex.safetensors", "xdistill.classes",
                    "[\"ant\",\"bee\",\"cat\"]");
    xdistill_model *m = load("ex.safetensors", 2);
    xdistill_error e;
    assert_string_equal(xdistill_class_name(m, 2), "cat");
    static const char *const order[] = {"aux", "same", "aux", "main"};
    static const char *const last[] = {"4", "cat", "4", "cat"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(xdistill_use_exit(m, order[i], &e), XDISTILL_OK);
        const int K = xdistill_num_classes(m);
        assert_string_equal(xdistill_class_name(m, K - 1), last[i]);
    }
    xdistill_free(m);
}

static void test_wide_image_file(void **state)
{
    (void)state;
    xdistill_model *m = load("img/best.safetensors", 1);
    xdistill_batch *b = xdistill_batch_new(m);
    xdistill_error e;
    xd_err xe;
    for (int w = 16384; w <= 16385; w++) {
        io_image img = {.w = w, .h = 1, .c = 1, .px = calloc((size_t)w, 1)};
        assert_non_null(img.px);
        TU_OK(io_png_write("wide.png", &img, &xe));
        free(img.px);
        const xdistill_status s = xdistill_batch_set_image_file(b, 0, "wide.png", &e);
        if (w == 16384) {
            assert_int_equal(s, XDISTILL_OK);
        } else {
            expect(s, &e, XDISTILL_EUNSUPPORTED, "wide.png");
            int h, ww;
            xdistill_batch_image_size(b, 0, &h, &ww);
            assert_int_equal(ww, 0);
        }
    }
    xdistill_batch_free(b);
    xdistill_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_unset_slots, setup),
        cmocka_unit_test_setup(test_null_arguments, setup),
        cmocka_unit_test_setup(test_messages_one_line, setup),
        cmocka_unit_test_setup(test_top_nan, setup),
        cmocka_unit_test_setup(test_exit_class_names, setup),
        cmocka_unit_test_setup(test_wide_image_file, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
