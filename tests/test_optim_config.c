/* nn/optim: learning-rate schedules against their formulas, the optimizers' and schedules' names,
 * and the key=value configuration (nn/optim_config.c) with its errors. */
#include "tests/support/testutil.h"

#include <math.h>
#include <string.h>

#include "nn/optim.h"

// ----------------------------------------------------------------------------------------------
// schedules

static void expect_lr(const nn_sched_config *c, long step, double want)
{
    float got = nn_sched_lr(c, step);
    if (!(fabs(got - want) <= 1e-6 * fabs(want) + 1e-12))
        fail_msg("%s schedule at step %ld: got %.9g, expected %.9g", nn_sched_kind_names[c->kind],
                 step, (double)got, want);
}

static void test_schedules(void **state)
{
    (void)state;
    xd_err e;
    nn_sched_config c = nn_sched_defaults(NN_SCHED_COSINE);
    c.base_lr = 0.1f;
    c.min_lr = 0.001f;
    c.warmup_steps = 10;
    c.total_steps = 110;
    TU_OK(nn_sched_config_check(&c, &e));
    double base = (double)0.1f, lo = (double)0.001f;
    expect_lr(&c, -3, 0.0);
    expect_lr(&c, 0, 0.0);              /* warm-up starts at 0 */
    expect_lr(&c, 5, base * 0.5);       /* half way up */
    expect_lr(&c, 10, base);            /* end of warm-up = start of the cosine */
    expect_lr(&c, 35, lo + (base - lo) * (1 + sqrt(0.5)) / 2); /* a quarter: cos(pi/4) */
    expect_lr(&c, 60, (base + lo) / 2); /* middle of the cosine */
    expect_lr(&c, 109, lo + (base - lo) * (1 + cos(M_PI * 99 / 100)) / 2);
    expect_lr(&c, 110, lo);             /* end */
    expect_lr(&c, 5000, lo);            /* and after */

    c.warmup_start = 0.1f;
    double s = (double)0.1f;
    expect_lr(&c, 0, base * s);
    expect_lr(&c, 5, base * (s + (1 - s) * 0.5));
    expect_lr(&c, 10, base);

    nn_sched_config st = nn_sched_defaults(NN_SCHED_STEP);
    st.base_lr = 0.1f;
    st.step_size = 30;
    st.gamma = 0.1f;
    TU_OK(nn_sched_config_check(&st, &e));
    double gm = (double)0.1f;
    expect_lr(&st, 0, base);
    expect_lr(&st, 29, base);
    expect_lr(&st, 30, base * gm);
    expect_lr(&st, 59, base * gm);
    expect_lr(&st, 60, base * gm * gm);
    expect_lr(&st, 95, base * gm * gm * gm);
    st.warmup_steps = 5; /* the decay counts steps after the warm-up */
    expect_lr(&st, 2, base * 0.4);
    expect_lr(&st, 34, base);
    expect_lr(&st, 35, base * gm);

    nn_sched_config li = nn_sched_defaults(NN_SCHED_LINEAR);
    li.base_lr = 1.0f;
    li.total_steps = 100;
    TU_OK(nn_sched_config_check(&li, &e));
    expect_lr(&li, 0, 1.0);
    expect_lr(&li, 25, 0.75);
    expect_lr(&li, 100, 0.0);

    nn_sched_config k = nn_sched_defaults(NN_SCHED_CONSTANT);
    k.base_lr = 0.1f;
    k.warmup_steps = 4;
    TU_OK(nn_sched_config_check(&k, &e));
    expect_lr(&k, 2, base * 0.5);
    expect_lr(&k, 4, base);
    expect_lr(&k, 1000000, base);

    /* checks: missing lengths, warm-up as long as the run, floor above the base */
    nn_sched_config bad = nn_sched_defaults(NN_SCHED_COSINE);
    assert_int_equal(nn_sched_config_check(&bad, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "total_steps");
    bad.total_steps = 10;
    bad.warmup_steps = 10;
    assert_int_equal(nn_sched_config_check(&bad, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "warmup_steps");
    bad.warmup_steps = 0;
    bad.min_lr = 1.0f;
    assert_int_equal(nn_sched_config_check(&bad, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "min_lr");
    bad = nn_sched_defaults(NN_SCHED_STEP);
    assert_int_equal(nn_sched_config_check(&bad, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "step_size");
    bad.step_size = 3;
    bad.gamma = NAN;
    assert_int_equal(nn_sched_config_check(&bad, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "gamma");
}

// ----------------------------------------------------------------------------------------------
// names and key=value configuration

static void test_kind_names(void **state)
{
    (void)state;
    xd_err e;
    nn_opt_kind k;
    nn_sched_kind s;
    for (int i = 0; i < NN_OPT_COUNT; i++) {
        TU_OK(nn_opt_kind_from_name(nn_opt_kind_names[i], &k, &e));
        assert_int_equal(k, i);
    }
    for (int i = 0; i < NN_SCHED_COUNT; i++) {
        TU_OK(nn_sched_kind_from_name(nn_sched_kind_names[i], &s, &e));
        assert_int_equal(s, i);
    }
    assert_int_equal(nn_opt_kind_from_name("adam", &k, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "unknown optimizer 'adam' (valid: sgd, adamw)");
    assert_int_equal(nn_sched_kind_from_name("Cosine", &s, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "constant, step, cosine, linear");
}

static void test_config_parse(void **state)
{
    (void)state;
    xd_err e;
    /* kind applies first wherever it stands, then the rest in order */
    nn_opt_config c = nn_opt_defaults(NN_OPT_ADAMW);
    TU_OK(nn_opt_config_parse(&c, " lr=0.25, momentum=0.9  nesterov=true,kind=sgd ", &e));
    assert_int_equal(c.kind, NN_OPT_SGD);
    assert_true(c.lr == 0.25f && c.momentum == 0.9f && c.nesterov == 1);
    assert_true(c.weight_decay == 0.0f); /* sgd's default, not adamw's */
    TU_OK(nn_opt_config_check(&c, &e));
    TU_OK(nn_opt_config_set(&c, "clip_norm", "1e1", &e));
    assert_true(c.clip_norm == 10.0f);

    c = nn_opt_defaults(NN_OPT_SGD);
    TU_OK(nn_opt_config_parse(&c, "kind=adamw lr=3e-4 beta2=0.98 weight_decay=0.05", &e));
    assert_int_equal(c.kind, NN_OPT_ADAMW);
    assert_true(c.lr == 3e-4f && c.beta2 == 0.98f && c.weight_decay == 0.05f &&
                c.beta1 == 0.9f && c.eps == 1e-8f);

    /* format reads back to the same config */
    char text[512];
    int len = nn_opt_config_format(&c, text, sizeof text);
    assert_int_equal(len, (int)strlen(text));
    assert_non_null(strstr(text, "kind=adamw"));
    assert_null(strstr(text, "momentum")); /* sgd's keys are not written for adamw */
    nn_opt_config back = nn_opt_defaults(NN_OPT_SGD);
    TU_OK(nn_opt_config_parse(&back, text, &e));
    assert_memory_equal(&back, &c, sizeof c);
    /* cut output is still terminated and reports the full length */
    char small[8];
    assert_int_equal(nn_opt_config_format(&c, small, sizeof small), len);
    assert_int_equal(strlen(small), sizeof small - 1);

    nn_sched_config s = nn_sched_defaults(NN_SCHED_CONSTANT);
    TU_OK(nn_sched_config_parse(&s, "warmup_steps=100 kind=cosine total_steps=1000 "
                                    "min_lr=1e-5 base_lr=0.01 warmup_start=0.1", &e));
    assert_int_equal(s.kind, NN_SCHED_COSINE);
    assert_true(s.warmup_steps == 100 && s.total_steps == 1000 && s.min_lr == 1e-5f &&
                s.base_lr == 0.01f && s.warmup_start == 0.1f);
    TU_OK(nn_sched_config_check(&s, &e));
    len = nn_sched_config_format(&s, text, sizeof text);
    nn_sched_config sback = nn_sched_defaults(NN_SCHED_STEP);
    TU_OK(nn_sched_config_parse(&sback, text, &e));
    assert_memory_equal(&sback, &s, sizeof s);
    TU_OK(nn_sched_config_parse(&s, "", &e)); /* nothing to do */
}

/* Each bad setting is XD_EARG with a message that names the key (and says why). */
static void test_config_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want1, *want2;
    } opt_bad[] = {
        {"lr_rate=0.1", "unknown optimizer key 'lr_rate'", "valid: kind, lr,"},
        {"lr=abc", "'lr': bad value 'abc'", "a finite number >= 0"},
        {"lr=", "'lr': bad value ''", NULL},
        {"lr=0.1x", "'lr'", "0.1x"},
        {"lr=-1", "'lr'", ">= 0"},
        {"lr=nan", "'lr'", NULL},
        {"lr=inf", "'lr'", NULL},
        {"lr=1e39", "'lr'", NULL}, /* fits a double, not a float */
        {"lr=1e999", "'lr'", NULL},
        {"kind=sgd momentum=1", "'momentum'", "[0, 1)"},
        {"kind=sgd nesterov=2", "'nesterov'", "true or false"},
        {"beta1=1", "'beta1'", "[0, 1)"},
        {"eps=0", "'eps'", "> 0"},
        {"momentum=0.9", "key 'momentum' does not apply to adamw", "only to: sgd"},
        {"kind=sgd beta2=0.9", "'beta2' does not apply to sgd", NULL},
        {"kind=adam", "key 'kind': unknown optimizer 'adam'", "sgd, adamw"},
        {"kind=sgd kind=adamw", "'kind' given twice", NULL},
        {"lr 0.1", "setting 'lr': expected key=value", NULL},
        {"=0.1", "expected key=value", NULL},
    };
    for (size_t i = 0; i < sizeof opt_bad / sizeof opt_bad[0]; i++) {
        nn_opt_config c = nn_opt_defaults(NN_OPT_ADAMW);
        xd_err e;
        xd_err_clear(&e);
        xd_status st = nn_opt_config_parse(&c, opt_bad[i].text, &e);
        if (st != XD_EARG) fail_msg("'%s' was accepted", opt_bad[i].text);
        tu_assert_err(&e, XD_EARG, opt_bad[i].want1);
        if (opt_bad[i].want2) tu_assert_err(&e, XD_EARG, opt_bad[i].want2);
    }
    /* a failed set leaves the field as it was */
    nn_opt_config c = nn_opt_defaults(NN_OPT_ADAMW);
    xd_err e;
    assert_int_equal(nn_opt_config_set(&c, "lr", "-3", &e), XD_EARG);
    assert_true(c.lr == 1e-3f);
    assert_int_equal(nn_opt_config_set(&c, "lr", NULL, &e), XD_EARG);
    assert_int_equal(nn_opt_config_set(&c, "lr", " 0.1", &e), XD_EARG); /* blanks are typos */
    tu_assert_err(&e, XD_EARG, "'lr': bad value ' 0.1'");
    assert_true(c.lr == 1e-3f);
    /* a word too long for the buffer */
    char longword[400];
    memset(longword, 'x', sizeof longword - 1);
    longword[sizeof longword - 1] = '\0';
    assert_int_equal(nn_opt_config_parse(&c, longword, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "too long");

    static const struct {
        const char *text, *want;
    } sched_bad[] = {
        {"kind=step step_size=0", "'step_size': bad value '0'"},
        {"kind=step step_size=1.5", "'step_size'"},
        {"kind=step step_size=99999999999999999999999", "'step_size'"},
        {"kind=step gamma=0", "'gamma'"},
        {"kind=step gamma=1.5", "'gamma'"},
        {"kind=cosine total_steps=abc", "'total_steps'"},
        {"kind=cosine warmup_start=2", "'warmup_start'"},
        {"kind=cosine warmup_steps=-1", "'warmup_steps'"},
        {"kind=cosine gamma=0.5", "'gamma' does not apply to cosine"},
        {"step_size=10", "'step_size' does not apply to constant"},
        {"kind=exp", "unknown schedule 'exp'"},
        {"min_lr=0.1", "does not apply to constant (only to: cosine, linear)"},
        {"warmup=10", "unknown schedule key 'warmup'"},
    };
    for (size_t i = 0; i < sizeof sched_bad / sizeof sched_bad[0]; i++) {
        nn_sched_config s = nn_sched_defaults(NN_SCHED_CONSTANT);
        xd_err_clear(&e);
        xd_status st = nn_sched_config_parse(&s, sched_bad[i].text, &e);
        if (st != XD_EARG) fail_msg("'%s' was accepted", sched_bad[i].text);
        tu_assert_err(&e, XD_EARG, sched_bad[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
