/* Option words given twice: a model description's layer or input, image options (data.augment)
 * and text options (data.text) refuse a key given twice with one message naming it, where the
 * last one used to win unseen; the same words once each still parse. */
#include "tests/support/testutil.h"

#include <string.h>

#include "core/words.h"
#include "modalities/image/augment.h"
#include "modalities/text/config.h"
#include "nn/model.h"

static void test_key_repeats(void **state)
{
    (void)state;
    const char *w[] = {"out=4", "name=fc1", "head", "outs=2", "o=1"};
    assert_int_equal(xd_word_key_len("out=4"), 3);
    assert_int_equal(xd_word_key_len("head"), 4);
    assert_int_equal(xd_word_key_len("=x"), 0);
    assert_true(xd_word_key_repeats(w, 5, "out=8"));
    assert_int_equal(xd_word_key_repeats(w, 5, "name=other"), 2); /* 1 + where the first is */
    assert_true(xd_word_key_repeats(w, 5, "head"));
    assert_true(xd_word_key_repeats(w, 5, "name=other"));
    assert_false(xd_word_key_repeats(w, 5, "ou=1"));  /* a prefix of a key */
    assert_true(xd_word_key_repeats(w, 5, "outs"));    /* outs=2's key, a bare word */
    assert_false(xd_word_key_repeats(w, 3, "outs=3")); /* not among the first 3 words */
    assert_false(xd_word_key_repeats(w, 1, "name=x"));
    assert_false(xd_word_key_repeats(w, 0, "out=4"));
}

static void model_bad(const char *desc, const char *want)
{
    nn_model m;
    xd_err e;
    assert_int_equal(nn_model_plan(&m, desc, 8, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, want);
}

static void test_model_key_twice(void **state)
{
    (void)state;
    model_bad("input h=4 w=4 c=1; flatten; linear out=4 out=8 name=l head",
              "model description: layer 2 'linear': 'out' given twice");
    model_bad("input h=4 w=4 c=1; flatten; linear name=a out=2 name=b head",
              "layer 2 'linear': 'name' given twice");
    model_bad("input h=4 w=4 c=1; flatten; linear out=2 head head", "'head' given twice");
    model_bad("input h=4 w=4 c=1 h=5; flatten; linear out=2 head",
              "model description: input: 'h' given twice");
    nn_model m;
    xd_err e;
    TU_OK(nn_model_plan(&m, "input h=4 w=4 c=1; flatten; linear out=2 name=l head", 8, &e));
    nn_model_free(&m);
}

static void test_image_option_twice(void **state)
{
    (void)state;
    img_opts o;
    img_opts_default(&o);
    xd_err e;
    assert_int_equal(img_opts_parse(&o, "size=8 std=0.33 pad=2; std=0.5", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "image options: 'std' given twice");
    img_opts_default(&o);
    TU_OK(img_opts_parse(&o, " size=8\tstd=0.5;pad=2 ", &e));
    assert_int_equal(o.pad, 2);
    assert_true(o.std[0] == 0.5f);
    /* the other errors still name the word and where it stands */
    assert_int_equal(img_opts_parse(&o, "size=8 flip", &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "image options: 'flip' at offset 7 is not key=value");
    char longword[300];
    memset(longword, 'x', sizeof longword - 1);
    longword[sizeof longword - 1] = '\0';
    assert_int_equal(img_opts_parse(&o, longword, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "word at offset 0 is longer than 255 bytes");
}

static void test_text_option_twice(void **state)
{
    (void)state;
    txt_config c = txt_config_default();
    xd_err e;
    assert_int_equal(txt_config_parse_words(&c, "buckets=1024 bigrams=on buckets=16", &e),
                     XD_EARG);
    tu_assert_err(&e, XD_EARG, "text option 'buckets' given twice");
    c = txt_config_default();
    TU_OK(txt_config_parse_words(&c, "buckets=1024 bigrams=on", &e));
    assert_int_equal(c.buckets, 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_repeats),
        cmocka_unit_test(test_model_key_twice),
        cmocka_unit_test(test_image_option_twice),
        cmocka_unit_test(test_text_option_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
