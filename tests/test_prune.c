/* nn/prune: the pruned form of a description, masks as state, exact sparsity per layer and over
 * the whole model, pruned weights and their moments held at zero through optimizer steps, the
 * schedule, the recipe's prune: section, a pruned run with KD (sparsity reached, pruned weights
 * zero in the checkpoint) and resuming it; structured pruning (shapes shrink, the smaller network
 * answers as the masked one); a run that starts from a checkpoint (`init:`), the way a
 * channel-pruned model is fine-tuned. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "distill/recipe.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/prune.h"
#include "tests/support/runcli.h"
#include "tests/support/trainrun.h"

/* m built from desc in its pruned form. */
static void build_pruned(nn_model *m, const char *desc, uint64_t seed)
{
    xd_err e;
    char *pd;
    TU_OK(nn_prune_desc(desc, &pd, &e));
    TU_OK(nn_model_build(m, pd, 4, seed, &e));
    free(pd);
}

static size_t zeros(const float *x, size_t n)
{
    size_t z = 0;
    for (size_t j = 0; j < n; j++) z += x[j] == 0.0f;
    return z;
}

static void test_prune_desc(void **state)
{
    (void)state;
    xd_err e;
    char *pd;
    TU_OK(nn_prune_desc(CNN_MODEL, &pd, &e));
    assert_non_null(strstr(pd, "conv2d name=conv1 out=4 k=3 stride=1 pad=1 bias=1 prune;"));
    assert_non_null(strstr(pd, "linear name=logits head out=4 bias=1 prune"));
    /* the pruned form is a fixed point, and the float form says nothing of pruning */
    char *pd2;
    TU_OK(nn_prune_desc(pd, &pd2, &e));
    assert_string_equal(pd, pd2);
    free(pd2);
    nn_model m;
    TU_OK(nn_model_plan(&m, CNN_MODEL, 1, &e));
    assert_null(strstr(m.desc, "prune"));
    assert_false(nn_prune_model_has(&m));
    nn_model_free(&m);
    /* the masks are state of the weights' shapes, all ones when built */
    TU_OK(nn_model_build(&m, pd, 2, 3, &e));
    assert_true(nn_prune_model_has(&m));
    const nn_param *w = nn_model_param(&m, "conv1.weight"), *mk = nn_model_param(&m, "conv1.mask");
    assert_non_null(mk);
    assert_true(mk->state);
    assert_int_equal(mk->ndim, 4);
    assert_memory_equal(mk->shape, w->shape, sizeof w->shape);
    const float *mv = nn_model_param_data(&m, mk);
    for (size_t j = 0; j < mk->n; j++) assert_true(mv[j] == 1.0f);
    assert_true(nn_prune_sparsity(&m) == 0.0);
    /* the same weights as the float model from the same seed: masks take nothing from the stream */
    nn_model f;
    TU_OK(nn_model_build(&f, CNN_MODEL, 2, 3, &e));
    assert_int_equal(f.n_param, m.n_param);
    assert_memory_equal(f.param, m.param, sizeof(float) * m.n_param);
    nn_model_free(&f);
    nn_model_free(&m);
    free(pd);
    assert_int_equal(nn_prune_desc("input h=2 w=2 c=1; relu", &pd, &e), XD_EARG);
    assert_non_null(strstr(e.msg, "no linear or conv2d"));
    assert_null(pd);
    assert_int_equal(nn_model_plan(&m, "input h=2 w=2 c=1; relu prune", 1, &e), XD_EARG);
    assert_non_null(strstr(e.msg, "prune"));
}

/* Every layer (or the whole model) has exactly round(s * n) pruned weights, each zero. */
static void check_masks(nn_model *m, float s, nn_prune_scope scope)
{
    size_t all = 0, all_pruned = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (!nd->prune) continue;
        const float *w = m->param + nd->w_off, *mask = m->state + nd->s_off;
        const size_t pruned = zeros(mask, nd->w_n);
        if (scope == NN_PRUNE_LAYER)
            assert_int_equal(pruned, (size_t)llround((double)s * (double)nd->w_n));
        for (size_t j = 0; j < nd->w_n; j++) {
            assert_true(mask[j] == 0.0f || mask[j] == 1.0f);
            if (mask[j] == 0.0f) assert_true(w[j] == 0.0f);
        }
        all += nd->w_n;
        all_pruned += pruned;
    }
    if (scope == NN_PRUNE_GLOBAL) assert_int_equal(all_pruned, (size_t)llround((double)s * (double)all));
}

/* The magnitudes of the weights the masks are about to be cut from: |w| with pruned ones at -1. */
static float *magnitudes(const nn_model *m)
{
    float *a = xd_xmalloc(sizeof(float) * m->n_param);
    for (size_t j = 0; j < m->n_param; j++) a[j] = fabsf(m->param[j]);
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        for (size_t j = 0; nd->prune && j < nd->w_n; j++)
            if (m->state[nd->s_off + j] == 0.0f) a[nd->w_off + j] = -1.0f;
    }
    return a;
}

/* No kept weight is smaller than a pruned one (within a layer, or anywhere for global). */
static void check_order(const nn_model *m, const float *mag, nn_prune_scope scope)
{
    float max_pruned = -2.0f, min_kept = INFINITY;
    for (int i = 0; i < m->n_nodes; i++) {
        const nn_node *nd = &m->nodes[i];
        if (!nd->prune) continue;
        if (scope == NN_PRUNE_LAYER) max_pruned = -2.0f, min_kept = INFINITY;
        for (size_t j = 0; j < nd->w_n; j++) {
            const float a = mag[nd->w_off + j];
            if (m->state[nd->s_off + j] == 0.0f) max_pruned = fmaxf(max_pruned, a);
            else min_kept = fminf(min_kept, a);
        }
        if (scope == NN_PRUNE_LAYER) assert_true(max_pruned <= min_kept);
    }
    assert_true(max_pruned <= min_kept);
}

static void test_update_exact(void **state)
{
    (void)state;
    for (int sc = 0; sc < NN_PRUNE_SCOPE_COUNT; sc++) {
        nn_model m;
        build_pruned(&m, TEACHER_MODEL, 5 + (uint64_t)sc);
        const float steps[] = {0.3f, 0.5f, 0.8f, 0.9f};
        float *prev = xd_xcalloc(m.n_state, sizeof(float));
        for (int t = 0; t < 4; t++) {
            float *mag = magnitudes(&m);
            nn_prune_update(&m, steps[t], (nn_prune_scope)sc);
            check_masks(&m, steps[t], (nn_prune_scope)sc);
            check_order(&m, mag, (nn_prune_scope)sc);
            free(mag);
            /* what was pruned stays pruned */
            for (size_t j = 0; t && j < m.n_state; j++)
                if (prev[j] == 0.0f && m.nodes[0].prune) assert_true(m.state[j] == 0.0f);
            memcpy(prev, m.state, sizeof(float) * m.n_state);
            /* weights that moved a little between steps: the order changes, the counts hold */
            xd_rng r = xd_rng_make(9, (uint64_t)t, XD_RNG_INIT);
            for (size_t j = 0; j < m.n_param; j++)
                if (m.param[j] != 0.0f) m.param[j] += 0.05f * (2.0f * xd_rng_uniform(&r) - 1.0f);
        }
        free(prev);
        nn_model_free(&m);
    }
    /* ties: a layer of equal weights still loses exactly its share */
    nn_model m;
    build_pruned(&m, MLP_MODEL, 1);
    for (size_t j = 0; j < m.n_param; j++) m.param[j] = 0.5f;
    nn_prune_update(&m, 0.37f, NN_PRUNE_LAYER);
    check_masks(&m, 0.37f, NN_PRUNE_LAYER);
    nn_model_free(&m);
}

/* Random gradients through steps of an optimizer: the pruned weights and their moments stay
 * exactly zero, the kept ones move. */
static void run_steps(nn_opt_kind kind)
{
    xd_err e;
    nn_model m;
    build_pruned(&m, CNN_MODEL, 2);
    nn_opt_config cfg = nn_opt_defaults(kind);
    if (kind == NN_OPT_SGD) cfg.momentum = 0.9f;
    nn_optimizer o;
    TU_OK(nn_opt_init(&o, &cfg, m.n_param, &e));
    xd_rng r = xd_rng_make(4, 0, XD_RNG_INIT);
    for (int t = 0; t < 12; t++) {
        if (t == 4) { /* prune where the moments are not zero already */
            nn_prune_update(&m, 0.6f, NN_PRUNE_GLOBAL);
            nn_prune_apply(&m, &o);
        }
        for (size_t j = 0; j < m.n_param; j++) m.grad[j] = 2.0f * xd_rng_uniform(&r) - 1.0f;
        nn_opt_step(&o, m.param, m.grad, m.segs, m.n_segs, 0.01f);
        nn_prune_apply(&m, &o);
    }
    size_t pruned = 0, kept_moved = 0;
    for (int i = 0; i < m.n_nodes; i++) {
        const nn_node *nd = &m.nodes[i];
        if (!nd->prune) continue;
        for (size_t j = 0; j < nd->w_n; j++) {
            const size_t at = nd->w_off + j;
            if (m.state[nd->s_off + j] != 0.0f) {
                kept_moved += m.param[at] != 0.0f && o.m[at] != 0.0f;
                continue;
            }
            pruned++;
            assert_true(m.param[at] == 0.0f);
            assert_true(o.m[at] == 0.0f);
            if (o.v) assert_true(o.v[at] == 0.0f);
        }
    }
    assert_true(pruned > 0 && kept_moved > 0);
    assert_true(fabs(nn_prune_sparsity(&m) - 0.6) < 0.01);
    nn_opt_free(&o);
    nn_model_free(&m);
}

static void test_masks_survive_steps(void **state)
{
    (void)state;
    run_steps(NN_OPT_ADAMW);
    run_steps(NN_OPT_SGD);
}

static void test_schedule(void **state)
{
    (void)state;
    nn_prune_plan p = {.sparsity = 0.8f, .scope = NN_PRUNE_LAYER, .steps = 3, .start_epoch = 2,
                       .end_epoch = 6};
    const float want[] = {-1.0f, (float)(0.8 * (1.0 - 8.0 / 27.0)), -1.0f,
                          (float)(0.8 * (1.0 - 1.0 / 27.0)), -1.0f, 0.8f, -1.0f};
    for (int ep = 0; ep < 7; ep++) assert_true(nn_prune_at(&p, ep) == want[ep]);
    p.steps = 1;
    for (int ep = 0; ep < 7; ep++) assert_true(nn_prune_at(&p, ep) == (ep == 1 ? 0.8f : -1.0f));
    /* one step each epoch, uneven spacing rounded */
    p = (nn_prune_plan){.sparsity = 0.5f, .steps = 3, .start_epoch = 1, .end_epoch = 4};
    int at[3], n = 0;
    for (int ep = 0; ep < 6; ep++)
        if (nn_prune_at(&p, ep) >= 0.0f) at[n++] = ep;
    assert_int_equal(n, 3);
    assert_int_equal(at[0], 0);
    assert_int_equal(at[1], 2);
    assert_int_equal(at[2], 3);
    p.sparsity = 0.0f;
    assert_true(nn_prune_at(&p, 0) < 0.0f);
}

static void test_recipe_prune(void **state)
{
    (void)state;
    ensure_data();
    recipe r;
    char *text = student_recipe("", MLP_MODEL, "", 4, "{kind: adamw, lr: 0.01}",
                                "  - {kind: ce}\nprune: {sparsity: 0.8, scope: global, steps: 2}\n");
    load_recipe("rp", text, &r);
    assert_non_null(strstr(r.model, "linear name=fc1 out=16 bias=1 prune;"));
    assert_true(r.prune.sparsity == 0.8f);
    assert_int_equal(r.prune.scope, NN_PRUNE_GLOBAL);
    assert_int_equal(r.prune.steps, 2);
    assert_int_equal(r.prune.start_epoch, 1);
    assert_int_equal(r.prune.end_epoch, 4);
    char *yaml = stable_yaml(&r);
    assert_non_null(strstr(yaml, "prune: {sparsity: 0.800000012, scope: global, steps: 2, "
                                 "start_epoch: 1, end_epoch: 4}"));
    free(yaml);
    recipe_free(&r);
    free(text);
    /* without the section nothing is said about it */
    text = student_recipe("", MLP_MODEL, "", 1, "{kind: adamw, lr: 0.01}", "  - {kind: ce}\n");
    load_recipe("rpf", text, &r);
    assert_true(r.prune.sparsity == 0.0f);
    yaml = recipe_to_yaml(&r);
    assert_null(strstr(yaml, "prune"));
    free(yaml);
    recipe_free(&r);
    free(text);
    static const char *const bad[][2] = {
        {"prune: {sparsity: 1}\n", "prune.sparsity"},
        {"prune: {scope: global}\n", "sparsity"},
        {"prune: {sparsity: 0.5, scope: channel}\n", "prune.scope"},
        {"prune: {sparsity: 0.5, steps: 4}\n", "prune.steps"},
        {"prune: {sparsity: 0.5, start_epoch: 4}\n", "prune.start_epoch"},
        {"prune: {sparsity: 0.5, start_epoch: 2, end_epoch: 1}\n", "prune.end_epoch"},
        {"prune: {sparsity: 0.5, every: 2}\n", "every"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *losses = tu_fmt("  - {kind: ce}\n%s", bad[i][0]);
        text = student_recipe("", MLP_MODEL, "", 3, "{kind: adamw, lr: 0.01}", losses);
        expect_recipe_error("rpbad", text, bad[i][1]);
        free(text);
        free(losses);
    }
}

#define CNN_MODEL_WIDE                                                                           \
    "input h=8 w=8 c=1; conv2d name=conv1 out=6 k=3 pad=1; relu name=r1; maxpool k=2 "           \
    "name=pool1; flatten; linear out=4 name=logits head"

#define PRUNE_RECIPE(epochs, schedule)                                                           \
    student_recipe("", CNN_MODEL, TEACHERS, epochs, "{kind: adamw, lr: 0.01}",                   \
                   "  - {kind: kd, temperature: 2, weight: 0.5}\n  - {kind: ce, weight: 0.5}\n"   \
                   "prune: {sparsity: 0.75, " schedule "}\n")

/* A pruned KD run: the checkpoint's masks have the target sparsity in every layer, its pruned
 * weights are zero, and the metrics follow the ramp. */
static void test_prune_run(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = PRUNE_RECIPE(3, "steps: 3");
    train_result res = run_ok("prun", text, "prun", 3, 0, 0);
    assert_int_equal(res.finished, 1);
    nn_model m;
    load_ckpt("prun/last.safetensors", &m);
    assert_true(nn_prune_model_has(&m));
    check_masks(&m, 0.75f, NN_PRUNE_LAYER);
    json_t *lines = read_metrics("prun");
    assert_int_equal(json_array_size(lines), 3);
    double prev = 0.0;
    for (size_t i = 0; i < 3; i++) {
        const double s = num(json_array_get(lines, i), "sparsity");
        assert_true(s > prev);
        prev = s;
    }
    assert_true(fabs(prev - nn_prune_sparsity(&m)) < 1e-12);
    json_decref(lines);
    nn_model_free(&m);
    free(text);
}

/* The masks are state: a pruned run stopped and resumed ends byte for byte where the straight
 * run does. Pruning steps at the starts of epochs 1 and 3 only, so the resumed epochs 2 and 4
 * train on masks that come from the resume state alone. */
static void test_prune_resume(void **state)
{
    (void)state;
    ensure_teacher();
    char *text = PRUNE_RECIPE(4, "steps: 2, end_epoch: 3");
    const int stops[] = {1, 3};
    check_resume("pres", text, 4, stops, 2);
    free(text);
}

// ----------------------------------------------------------------------------------------------
// structured pruning

/* removed[c] = 1 for the round(f * OC) filters of conv2d `name` with the smallest L1 norm. */
static void smallest_filters(nn_model *m, const char *name, float f, uint8_t *removed)
{
    const nn_node *nd = nn_model_node(m, nn_model_find(m, name));
    if (nd->units <= 0 || nd->units > 64) { /* l1's room; also tells the compiler the range */
        fail();
        return;
    }
    const int OC = nd->units;
    const size_t per = nd->w_n / (size_t)OC;
    double l1[64];
    for (int c = 0; c < OC; c++) {
        l1[c] = 0.0;
        for (size_t j = 0; j < per; j++) l1[c] += fabsf(m->param[nd->w_off + (size_t)c * per + j]);
    }
    const int n = (int)llround((double)f * OC);
    memset(removed, 0, (size_t)OC);
    for (int t = 0; t < n; t++) {
        int best = -1;
        for (int c = 0; c < OC; c++)
            if (!removed[c] && (best < 0 || l1[c] < l1[best])) best = c;
        removed[best] = 1;
    }
}

/* Zeroes the input weights of layer `name` (weight (OC, ..., IC)) whose input index i has
 * removed[i % period]. */
static void zero_inputs(nn_model *m, const char *name, const uint8_t *removed, int period)
{
    const nn_node *nd = nn_model_node(m, nn_model_find(m, name));
    float *w = m->param + nd->w_off;
    for (size_t j = 0; j < nd->w_n; j++)
        if (removed[(j % (size_t)nd->ic) % (size_t)period]) w[j] = 0.0f;
}

/* src's copy with the given readers' weights of the removed channels zeroed (the masked network)
 * against nn_prune_channels' smaller network: the same answers; layer shapes as expected. */
static void channels_case(const char *desc, const char *const *convs, const char *const *readers,
                          const int *periods, int n, const char *const *shapes)
{
    xd_err e;
    nn_model src, masked, small;
    TU_OK(nn_model_build(&src, desc, 4, 21, &e));
    xd_rng r = xd_rng_make(22, 0, XD_RNG_INIT);
    for (size_t j = 0; j < src.n_state; j++) src.state[j] = 0.5f + xd_rng_uniform(&r); /* bn stats */
    for (size_t j = 0; j < src.n_param; j++) src.param[j] += 0.2f * (xd_rng_uniform(&r) - 0.5f);
    TU_OK(nn_model_build(&masked, desc, 4, 21, &e));
    memcpy(masked.param, src.param, sizeof(float) * src.n_param);
    memcpy(masked.state, src.state, sizeof(float) * src.n_state);
    for (int k = 0; k < n; k++) {
        uint8_t removed[64];
        smallest_filters(&src, convs[k], 0.5f, removed);
        zero_inputs(&masked, readers[k], removed, periods[k]);
    }
    int layers = 0;
    TU_OK(nn_prune_channels(&small, &src, 0.5f, 4, &layers, &e));
    assert_int_equal(layers, n);
    for (int k = 0; shapes[k]; k += 2) {
        const nn_param *p = nn_model_param(&small, shapes[k]);
        assert_non_null(p);
        char got[64];
        int at = 0;
        for (int d = 0; d < p->ndim; d++)
            at += snprintf(got + at, sizeof got - (size_t)at, "%s%lld", d ? "," : "", (long long)p->shape[d]);
        assert_string_equal(got, shapes[k + 1]);
    }
    assert_true(small.n_param < src.n_param);
    float x[4 * 8 * 8 * 3];
    for (size_t j = 0; j < sizeof x / sizeof *x; j++) x[j] = 2.0f * xd_rng_uniform(&r) - 1.0f;
    nn_model_forward(&masked, x, 4, NULL);
    nn_model_forward(&small, x, 4, NULL);
    const int hm = nn_model_default_head(&masked), hs = nn_model_default_head(&small);
    const float *ym = nn_model_out(&masked, hm), *ys = nn_model_out(&small, hs);
    const size_t K = masked.nodes[hm].act_n;
    double diff = 0.0, norm = 0.0;
    for (size_t j = 0; j < 4 * K; j++) {
        diff = fmax(diff, fabs((double)ym[j] - ys[j]));
        norm = fmax(norm, fabs((double)ym[j]));
    }
    assert_true(norm > 1e-3);
    assert_true(diff <= 1e-5 * (1.0 + norm));
    nn_model_free(&small);
    nn_model_free(&masked);
    nn_model_free(&src);
}

static void test_prune_channels(void **state)
{
    (void)state;
    /* two convolutions, a batch norm between, pooling and gap into the head */
    {
        const char *convs[] = {"c1", "c2"}, *readers[] = {"c2", "logits"};
        const int periods[] = {8, 6};
        const char *shapes[] = {"c1.weight", "4,3,3,3", "c1.bias", "4", "bn1.weight", "4",
                                "bn1.running_var", "4", "c2.weight", "3,3,3,4", "logits.weight",
                                "4,3", "logits.bias", "4", NULL};
        channels_case("input h=8 w=8 c=3; conv2d name=c1 out=8 k=3 pad=1; batchnorm name=bn1; "
                      "relu; conv2d name=c2 out=6 k=3 pad=1; relu; maxpool k=2; gap; "
                      "linear name=logits out=4 head",
                      convs, readers, periods, 2, shapes);
    }
    /* through a flatten: the linear's columns are positions x channels */
    {
        const char *convs[] = {"conv1"}, *readers[] = {"fc1"};
        const int periods[] = {8};
        const char *shapes[] = {"conv1.weight", "4,3,3,3", "fc1.weight", "32,64", NULL};
        channels_case("input h=8 w=8 c=3; conv2d name=conv1 out=8 k=3 pad=1; relu name=r1; "
                      "maxpool k=2 name=pool1; flatten; linear out=32 name=fc1; relu name=feat; "
                      "linear out=4 name=logits head",
                      convs, readers, periods, 1, shapes);
    }
    /* a node whose name extends another's with a dot ("c" and "c.fc") keeps its own parameters */
    {
        const char *convs[] = {"c", "d"}, *readers[] = {"d", "c.fc"};
        const int periods[] = {16, 8};
        const char *shapes[] = {"c.weight", "8,3,3,3", "d.weight", "4,3,3,8", "c.fc.weight", "4,4",
                                "c.fc.bias", "4", NULL};
        channels_case("input h=8 w=8 c=3; conv2d name=c out=16 k=3 pad=1; relu; "
                      "conv2d name=d out=8 k=3 pad=1; relu; gap; linear name=c.fc out=4 head",
                      convs, readers, periods, 2, shapes);
    }
    /* a convolution read twice (a residual add) or a head keeps its channels */
    xd_err e;
    nn_model src, small;
    TU_OK(nn_model_build(&src, "input h=4 w=4 c=2; conv2d name=a out=2 k=1; relu name=ra; "
                               "conv2d name=b out=2 k=1; add with=ra; gap; conv2d name=c out=2 k=1 "
                               "head", 1, 1, &e));
    int layers = -1;
    TU_OK(nn_prune_channels(&small, &src, 0.5f, 1, &layers, &e));
    assert_int_equal(layers, 0);
    assert_string_equal(small.desc, src.desc);
    assert_memory_equal(small.param, src.param, sizeof(float) * src.n_param);
    nn_model_free(&small);
    assert_int_equal(nn_prune_channels(&small, &src, 1.0f, 1, &layers, &e), XD_EARG);
    nn_model_free(&src);
}

/* the pruned KD run of test_prune_run in prun/, made once */
static void pruned_run(void)
{
    ensure_teacher();
    if (exists("prun/last.safetensors")) return;
    char *text = PRUNE_RECIPE(3, "steps: 3");
    run_ok("prun", text, "prun", 3, 0, 0);
    free(text);
}

/* xdistill prune on a checkpoint of a pruned run: the smaller file loads, its masks shrink with
 * its weights; bad input is refused with nothing written. */
static void test_cli_prune(void **state)
{
    (void)state;
    pruned_run();
    char *out = NULL, *err = NULL;
    assert_int_equal(tu_run_cli(&out, &err, "prune", "prun/last.safetensors", "--channels", "0.5",
                                "--out", "small.safetensors", NULL), 0);
    assert_non_null(strstr(out, "conv1: 4 -> 2 channels"));
    free(out);
    free(err);
    nn_model m;
    load_ckpt("small.safetensors", &m);
    assert_int_equal(nn_model_param(&m, "conv1.weight")->shape[0], 2);
    assert_int_equal(nn_model_param(&m, "conv1.mask")->shape[0], 2);
    assert_int_equal(nn_model_param(&m, "logits.mask")->shape[1], 32);
    nn_model_free(&m);
    assert_int_equal(tu_run_cli(NULL, &err, "prune", "prun/last.safetensors", "--channels", "1",
                                "--out", "x.safetensors", NULL), 2);
    assert_non_null(strstr(err, "--channels"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "prune", "nothere.safetensors", "--channels", "0.5",
                                "--out", "x.safetensors", NULL), 1);
    assert_non_null(strstr(err, "nothere.safetensors"));
    free(err);
    assert_false(exists("x.safetensors"));
}

/* A recipe of the channel-pruned model with no model: key: init gives its description and its
 * values (a run at learning rate 0 ends with them exactly), a stopped run resumes to the same
 * bytes, and an init that does not fit is refused before any folder is made. */
#define INIT_RECIPE(init, optimizer)                                                             \
    tu_fmt("data:\n  path: toy.xds\ninit: %s\n" TEACHERS "train:\n  epochs: 2\n  batch: 16\n"    \
           "  optimizer: %s\nlosses:\n  - {kind: kd, temperature: 2}\n", init, optimizer)

static void test_init(void **state)
{
    (void)state;
    pruned_run();
    assert_int_equal(tu_run_cli(NULL, NULL, "prune", "prun/last.safetensors", "--channels", "0.5",
                                "--out", "small.safetensors", NULL), 0);
    char *text = INIT_RECIPE("small.safetensors", "{kind: adamw, lr: 0}");
    run_ok("still", text, "still", 1, 0, 0);
    free(text);
    nn_model a, b;
    load_ckpt("small.safetensors", &a);
    load_ckpt("still/last.safetensors", &b);
    assert_string_equal(a.desc, b.desc);
    assert_true(a.n_param == b.n_param && memcmp(a.param, b.param, sizeof(float) * a.n_param) == 0);
    nn_model_free(&b);
    /* it learns from there, and resumes exactly */
    text = INIT_RECIPE("small.safetensors", "{kind: adamw, lr: 0.01}");
    const int stops[] = {1};
    check_resume("tune", text, 2, stops, 1);
    load_ckpt("tune-full/last.safetensors", &b);
    assert_memory_not_equal(a.param, b.param, sizeof(float) * a.n_param);
    nn_model_free(&b);
    nn_model_free(&a);
    free(text);

    assert_int_equal(tu_run_cli(NULL, NULL, "quantize", "prun/last.safetensors", "--calib", "toy.xds",
                                "--out", "q8.safetensors", NULL), 0);
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"data: {path: toy.xds}\ninit: q8.safetensors\ntrain: {epochs: 1}\nlosses:\n  - kind: ce\n",
         "q8.safetensors: an int8 checkpoint cannot start training"},
        {"data: {path: toy.xds}\ninit: prun/last.safetensors\nmodel: \"" MLP_MODEL "\"\n"
         "train: {epochs: 1}\nlosses:\n  - kind: ce\n", "no tensor 'fc1.weight'"},
        {"data: {path: toy.xds}\ninit: prun/last.safetensors\nmodel: \"" CNN_MODEL_WIDE "\"\n"
         "train: {epochs: 1}\nlosses:\n  - kind: ce\n",
         "prun/last.safetensors: tensor 'conv1.weight' is F32 (4, 3, 3, 1), the model's is F32 "
         "(6, 3, 3, 1)"},
        {"data: {path: toy.xds}\ninit: nothere.safetensors\ntrain: {epochs: 1}\nlosses:\n  - kind: ce\n",
         "nothere.safetensors"},
        {"data: {path: toy.xds}\ninit: step:a\nmodel: \"" MLP_MODEL "\"\ntrain: {epochs: 1}\n"
         "losses:\n  - kind: ce\n", "init reads a checkpoint file"},
        {"data: {path: toy.xds}\ninit: small.safetensors\nmodels:\n  - {name: a, model: \"" MLP_MODEL
         "\"}\ntrain: {epochs: 1}\nlosses:\n  - {kind: ce, model: a}\n",
         "each model gives its own init"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_write_file("bad.yaml", bad[i].text, strlen(bad[i].text));
        char *err = NULL;
        assert_int_equal(tu_run_cli(NULL, &err, "train", "bad.yaml", "--out", "badrun", NULL), 1);
        if (!strstr(err, bad[i].says)) fail_msg("case %zu: '%s'", i, err);
        free(err);
        assert_false(exists("badrun"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prune_desc),
        cmocka_unit_test(test_update_exact),
        cmocka_unit_test(test_masks_survive_steps),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_recipe_prune),
        cmocka_unit_test(test_prune_run),
        cmocka_unit_test(test_prune_resume),
        cmocka_unit_test(test_prune_channels),
        cmocka_unit_test(test_cli_prune),
        cmocka_unit_test(test_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
