/* Self-distillation with early exits (Be Your Own Teacher): one network whose deepest exit
 * teaches its shallow exits, on the tiny synthetic data set (tests/support/tinyset.h).
 *
 * - An exit run with only the layers it reads (nn_model_forward_some) gives bit for bit the
 *   output the whole forward gives there, in eval mode (batch norm on its running statistics)
 *   and in training mode, also at a ReLU whose output its fused max-pool computes; the layers it
 *   does not read are not run. Scoring an exit (trainer_evaluate) matches the argmax of the whole
 *   forward's output there.
 * - The BYOT composition (CE on every exit, KD from the deepest exit to a shallow one, a hint from
 *   the deepest features to the shallow exit's through a projector) sends each parameter, and the
 *   projector's, the gradient central finite differences give, the deep end held constant in the
 *   KD and hint terms; the detached deep end receives nothing from them, and with detach: false
 *   it does.
 * - A run scores every exit each epoch (metrics test_acc.EXIT, summary exits); a stopped and
 *   resumed run ends with the same scores and bytes.
 * - Recipe mistakes in a self end are errors with file, line and key path; the effective recipe
 *   prints a self end and reads back the same. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/exits.h"
#include "distill/feed.h"
#include "distill/kd.h"
#include "distill/recipe.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/safetensors.h"
#include "nn/loss.h"
#include "nn/model.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

/* Two exits: the deep head `logits` (the default) and `exit1` after the first block. */
#define NET                                                                                      \
    "input h=8 w=8 c=1; conv2d name=c1 out=4 k=3 pad=1; relu; maxpool k=2 name=b1; flatten; "    \
    "linear out=16 name=fc; relu name=feat; linear out=4 name=logits head; "                     \
    "gap from=b1 name=f1; linear out=4 name=exit1 head"

/* The same with smooth activations and pooling, for finite differences (no kinks). */
#define SMOOTH_NET                                                                               \
    "input h=8 w=8 c=1; conv2d name=c1 out=4 k=3 pad=1; tanh; avgpool k=2 name=b1; flatten; "    \
    "linear out=16 name=fc; tanh name=feat; linear out=4 name=logits head; "                     \
    "gap from=b1 name=f1; linear out=4 name=exit1 head"

enum { SEED = 5 };

static void ensure_image_data(void)
{
    struct stat st;
    if (stat("toy.xds", &st) == 0) return;
    tiny_spec s = tiny_default();
    s.texts = 0;
    tiny_write("toy.xds", &s);
}

/* ---------------------------------------------------------------------------------------------
 * 1. an exit alone equals the whole forward there */

/* Every node's output set to NaN, so that a node the partial forward skips shows. */
static void poison(nn_model *m, int B)
{
    for (int i = 0; i < m->n_nodes; i++) {
        float *o = nn_model_out(m, i);
        for (size_t j = 0; j < (size_t)B * nn_model_node(m, i)->act_n; j++) o[j] = NAN;
    }
}

static void check_exits_of(const char *desc, int training)
{
    enum { B = 6 };
    nn_model m;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&m, desc, B, 3, &e) != XD_OK) fail_msg("%s", e.msg);
    /* running statistics away from their start, so eval mode's norm reads something */
    tu_fill_uniform(m.state, m.n_state, 0.5f, 1.5f, 11);
    float *x = xd_xmalloc(sizeof(float) * B * (size_t)(m.h * m.w * m.c));
    tu_fill_uniform(x, (size_t)B * m.h * m.w * m.c, -1.0f, 1.0f, 12);
    nn_run tr = {.training = 1, .seed = 9};
    const nn_run *run = training ? &tr : NULL;
    float *state0 = xd_xmalloc(sizeof(float) * (m.n_state ? m.n_state : 1));
    memcpy(state0, m.state, sizeof(float) * m.n_state);
    nn_model_forward(&m, x, B, run);
    /* every output of the whole forward */
    float **full = xd_xcalloc((size_t)m.n_nodes, sizeof *full);
    for (int i = 0; i < m.n_nodes; i++) {
        size_t n = (size_t)B * nn_model_node(&m, i)->act_n;
        full[i] = xd_xmalloc(sizeof(float) * n);
        memcpy(full[i], nn_model_out(&m, i), sizeof(float) * n);
    }
    int heads[64];
    const int n_heads = nn_model_heads(&m, heads);
    assert_true(n_heads >= 2);
    uint8_t *need = xd_xmalloc((size_t)m.n_nodes);
    for (int h = 0; h < n_heads; h++) {
        memcpy(m.state, state0, sizeof(float) * m.n_state); /* training mode moved them */
        memset(need, 0, (size_t)m.n_nodes);
        nn_model_needs(&m, heads[h], need);
        poison(&m, B);
        nn_model_forward_some(&m, x, B, run, need);
        const nn_node *hn = nn_model_node(&m, heads[h]);
        if (memcmp(nn_model_out(&m, heads[h]), full[heads[h]], sizeof(float) * B * hn->act_n) != 0)
            fail_msg("%s (%s mode): exit '%s' alone differs from the whole forward", desc,
                     training ? "training" : "eval", hn->name);
        int skipped = 0;
        for (int i = 0; i < m.n_nodes; i++)
            if (!need[i]) skipped += isnan(nn_model_out(&m, i)[0]) != 0;
        int unneeded = 0;
        for (int i = 0; i < m.n_nodes; i++) unneeded += !need[i];
        assert_int_equal(skipped, unneeded); /* what it does not read is not run */
    }
    for (int i = 0; i < m.n_nodes; i++) free(full[i]);
    free(full);
    free(need);
    free(state0);
    free(x);
    nn_model_free(&m);
}

static void test_exit_forward(void **state)
{
    (void)state;
    /* batch norm on every path; the second exit reads the first block */
    check_exits_of("input h=8 w=8 c=2; conv2d name=c1 out=4 k=3 pad=1; batchnorm; relu; maxpool "
                   "k=2 name=b1; conv2d out=6 k=3 pad=1; batchnorm name=bn2; relu; gap; linear "
                   "out=3 name=logits head; gap from=b1; batchnorm name=bn3; linear out=3 "
                   "name=exit1 head; dropout p=0.5 from=bn2; gap; linear out=3 name=exit2 head",
                   0);
    check_exits_of("input h=8 w=8 c=2; conv2d name=c1 out=4 k=3 pad=1; batchnorm; relu; maxpool "
                   "k=2 name=b1; conv2d out=6 k=3 pad=1; batchnorm name=bn2; relu; gap; linear "
                   "out=3 name=logits head; gap from=b1; batchnorm name=bn3; linear out=3 "
                   "name=exit1 head; dropout p=0.5 from=bn2; gap; linear out=3 name=exit2 head",
                   1);
    /* an exit at a ReLU whose only reader is a max-pool: the pool's pass writes its output, and
     * for a convolution's only reader that pass runs inside the convolution */
    check_exits_of("input h=8 w=8 c=1; conv2d name=c1 out=4 k=3 pad=1; relu name=r1 head; "
                   "maxpool k=2; flatten; linear out=3 name=logits head", 0);
    check_exits_of("input h=8 w=8 c=1; linear out=4 name=l1; relu name=r1 head; maxpool k=2; "
                   "flatten; linear out=3 name=logits head", 0);
}

/* Scoring an exit: the argmax of the whole forward's output at that exit. */
static void test_exit_scores(void **state)
{
    (void)state;
    ensure_image_data();
    nn_model m;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&m, NET, 32, 4, &e) != XD_OK) fail_msg("%s", e.msg);
    io_dataset *ds;
    feed f;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    TU_OK(feed_open(&f, ds, "test", "image", &m, "", "", &e));
    const io_tensor *y = io_dataset_find(ds, "test/label");
    void *input = xd_xmalloc_aligned(feed_example_bytes(&f) * 32);
    int node;
    TU_OK(exits_find(&m, "net.safetensors", "exit1", &node, &e));
    double acc;
    TU_OK(trainer_evaluate(&m, node, &f, y->data, input, &acc, &e));
    /* the whole model, one example at a time */
    size_t correct = 0;
    uint32_t idx;
    for (size_t i = 0; i < f.n; i++) {
        idx = (uint32_t)i;
        TU_OK(feed_fill(&f, &idx, 1, 0, 0, 0, input, &e));
        nn_model_forward(&m, input, 1, NULL);
        correct += (size_t)nn_count_correct(nn_model_out(&m, node), &((const int32_t *)y->data)[i], 1, 4);
    }
    assert_true(acc == (double)correct / (double)f.n);
    /* a name that is no node, a node that is no exit */
    assert_int_equal(exits_find(&m, "net.safetensors", "nope", &node, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "net.safetensors: the model has no node 'nope' (its exits: logits "
                               "or exit1)");
    assert_int_equal(exits_find(&m, "net.safetensors", "feat", &node, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "net.safetensors: node 'feat' is not an exit");
    free(input);
    feed_close(&f);
    io_dataset_close(ds);
    nn_model_free(&m);
}

/* ---------------------------------------------------------------------------------------------
 * 2. the BYOT composition's gradients */

enum { K = 4, T_NUM = 3 };
#define W_CE1 0.7f
#define W_KD 0.5f
#define W_HINT 0.3f
#define PROJ_DESC "input h=1 w=1 c=4; linear out=16 name=proj head"

typedef struct {
    nn_model m, proj;
    void *input;
    const int32_t *y;
    float *q;    /* the deep exit's soft targets at the start (constant: detached) */
    float *feat; /* the deep features at the start (constant) */
    int logits, exit1, f1, fe;
} byot_ctx;

static int node(const nn_model *m, const char *name)
{
    int i = nn_model_find(m, name);
    assert_true(i >= 0);
    return i;
}

/* The step's loss with the deep end held at its starting values in the KD and hint terms: CE on
 * both exits, w KD(exit1; q) and w MSE(proj(f1), feat). Its gradient is what the trainer sends. */
static double byot_loss(void *vctx)
{
    byot_ctx *c = vctx;
    nn_model_forward(&c->m, c->input, N_TRAIN, NULL);
    float *buf = xd_xmalloc(sizeof(float) * N_TRAIN * 16);
    double v = nn_ce_forward(buf, nn_model_out(&c->m, c->logits), c->y, NULL, N_TRAIN, K);
    v += W_CE1 * nn_ce_forward(buf, nn_model_out(&c->m, c->exit1), c->y, NULL, N_TRAIN, K);
    v += W_KD * kd_forward(buf, nn_model_out(&c->m, c->exit1), c->q, NULL, N_TRAIN, K, T_NUM);
    nn_model_forward(&c->proj, nn_model_out(&c->m, c->f1), N_TRAIN, NULL);
    v += W_HINT * nn_mse_forward(nn_model_out(&c->proj, nn_model_default_head(&c->proj)), c->feat,
                                 (int64_t)N_TRAIN * 16);
    free(buf);
    return v;
}

/* One SGD step of lr 1 over the whole split (one batch): the parameters move by minus their
 * gradient. */
static void run_step(const char *name, const char *losses)
{
    char *text = tu_fmt("data: {path: toy.xds}\n"
                        "model: \"" SMOOTH_NET "\"\n"
                        "train: {epochs: 1, batch: 200, optimizer: {kind: sgd, lr: 1}}\n"
                        "losses:\n%s", losses);
    run_ok(name, text, name, SEED, 0, 0);
    free(text);
}

static void load_last(const char *dir, nn_model *m)
{
    char *p = tu_fmt("%s/last.safetensors", dir);
    xd_err e;
    xd_err_clear(&e);
    if (ckpt_load(p, N_TRAIN, m, &e) != XD_OK) fail_msg("%s", e.msg);
    free(p);
}

/* The parameters of `layer` (weight and bias) in m and in t are identical (1) or not (0). */
static int layer_same(const nn_model *m, const nn_model *t, const char *layer)
{
    const nn_node *nd = nn_model_node(m, node(m, layer));
    return memcmp(m->param + nd->w_off, t->param + nd->w_off, sizeof(float) * nd->w_n) == 0 &&
           memcmp(m->param + nd->b_off, t->param + nd->b_off, sizeof(float) * nd->b_n) == 0;
}

static void test_byot_gradients(void **state)
{
    (void)state;
    ensure_image_data();
    run_step("byot", "  - {kind: ce}\n"
                     "  - {kind: ce, head: exit1, weight: 0.7}\n"
                     "  - {kind: kd, from: student.logits, head: exit1, temperature: 3, weight: 0.5}\n"
                     "  - {kind: hint, from: student.feat, student_tap: f1, weight: 0.3}\n");
    nn_model trained;
    load_last("byot", &trained);

    byot_ctx c;
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&c.m, SMOOTH_NET, N_TRAIN, SEED, &e) != XD_OK) fail_msg("%s", e.msg);
    /* the trainer's projector of loss 3: its description and seed (train_setup_losses) */
    if (nn_model_build(&c.proj, PROJ_DESC, N_TRAIN, (uint64_t)SEED * 1000003u + 7919u * 3u, &e))
        fail_msg("%s", e.msg);
    io_dataset *ds;
    feed f;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    TU_OK(feed_open(&f, ds, "train", "image", &c.m, "", "", &e));
    c.input = xd_xmalloc_aligned(feed_example_bytes(&f) * N_TRAIN);
    uint32_t idx[N_TRAIN];
    for (int i = 0; i < N_TRAIN; i++) idx[i] = (uint32_t)i;
    TU_OK(feed_fill(&f, idx, N_TRAIN, 0, 0, 0, c.input, &e));
    c.y = io_dataset_find(ds, "train/label")->data;
    c.logits = node(&c.m, "logits");
    c.exit1 = node(&c.m, "exit1");
    c.f1 = node(&c.m, "f1");
    c.fe = node(&c.m, "feat");
    nn_model_forward(&c.m, c.input, N_TRAIN, NULL);
    c.q = xd_xmalloc(sizeof(float) * N_TRAIN * K);
    kd_soft_targets(c.q, nn_model_out(&c.m, c.logits), N_TRAIN, K, T_NUM);
    c.feat = xd_xmalloc(sizeof(float) * N_TRAIN * 16);
    memcpy(c.feat, nn_model_out(&c.m, c.fe), sizeof(float) * N_TRAIN * 16);

    /* the projector after its step, from the resume state */
    io_st_file *rs;
    TU_OK(io_st_open("byot/resume.safetensors", &rs, &e));
    const io_tensor *pt = io_st_find(rs, "proj3.param");
    assert_non_null(pt);
    assert_int_equal(pt->shape[0], (int64_t)c.proj.n_param);

    nn_model *nets[2] = {&c.m, &c.proj};
    const float *after[2] = {trained.param, pt->data};
    for (int w = 0; w < 2; w++) {
        const size_t n = nets[w]->n_param;
        float *g = xd_xmalloc(sizeof(float) * n), *d = xd_xmalloc(sizeof(float) * n);
        for (size_t i = 0; i < n; i++) g[i] = nets[w]->param[i] - after[w][i];
        for (int dir = 0; dir < 3; dir++) {
            tu_fill_uniform(d, n, -1.0f, 1.0f, 200u + (uint64_t)(10 * w + dir));
            double fd = tu_fd_along(byot_loss, &c, nets[w]->param, n, d, 2e-3);
            double an = tu_dot(g, d, n);
            if (!(fabs(fd - an) <= 1e-4 + 2e-2 * fmax(fabs(fd), fabs(an))))
                fail_msg("the %s's gradient along direction %d is %g, finite differences give %g",
                         w ? "projector" : "network", dir, an, fd);
        }
        free(g);
        free(d);
    }
    io_st_close(rs);
    nn_model_free(&trained);

    /* KD and hint alone: the deep end is detached, so the layers only it reads (fc, logits) get
     * nothing, though the losses depend on them; the shallow exit's layers move */
    run_step("kd-only", "  - {kind: kd, from: student.logits, head: exit1, temperature: 3}\n");
    run_step("hint-only", "  - {kind: hint, from: student.feat, student_tap: f1}\n");
    run_step("kd-both", "  - {kind: kd, from: student.logits, head: exit1, temperature: 3, "
                        "detach: false}\n");
    const char *dirs[3] = {"kd-only", "hint-only", "kd-both"};
    for (int k = 0; k < 3; k++) {
        nn_model t;
        load_last(dirs[k], &t);
        if (k < 2) {
            assert_true(layer_same(&c.m, &t, "fc"));
            assert_true(layer_same(&c.m, &t, "logits"));
        } else {
            /* not detached: the deep head learns from the same loss */
            assert_false(layer_same(&c.m, &t, "logits"));
        }
        assert_false(layer_same(&c.m, &t, k == 1 ? "c1" : "exit1"));
        nn_model_free(&t);
    }
    free(c.q);
    free(c.feat);
    free(c.input);
    feed_close(&f);
    io_dataset_close(ds);
    nn_model_free(&c.m);
    nn_model_free(&c.proj);
}

/* ---------------------------------------------------------------------------------------------
 * 3. a run scores every exit; resume */

static const char *const run_recipe =
    "data: {path: toy.xds}\n"
    "model: \"" NET "\"\n"
    "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"
    "losses:\n"
    "  - {kind: ce}\n"
    "  - {kind: ce, head: exit1, weight: 0.7}\n"
    "  - {kind: kd, from: student.logits, head: exit1, temperature: 3, weight: 0.1}\n"
    "  - {kind: hint, from: student.feat, student_tap: f1, weight: 0.03}\n";

static train_result run_into(const char *out, int stop_after, int resume)
{
    tu_write_file("run.yaml", run_recipe, strlen(run_recipe));
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load("run.yaml", NULL, 0, &r, &e) != XD_OK) fail_msg("%s", e.msg);
    train_opts o = {.out_dir = out, .resume = resume, .stop_after = stop_after, .quiet = 1};
    train_result res;
    if (trainer_run(&r, SEED, &o, &res, &e) != XD_OK) fail_msg("%s", e.msg);
    recipe_free(&r);
    return res;
}

static void test_run_scores_exits(void **state)
{
    (void)state;
    ensure_image_data();
    train_result full = run_into("full", 0, 0);
    assert_int_equal(full.n_exits, 2);
    assert_string_equal(full.exits[0].name, "logits");
    assert_string_equal(full.exits[1].name, "exit1");
    assert_true(full.exits[0].final_acc == full.final_acc);
    /* every epoch's line has each exit's score */
    size_t n;
    char *text = tu_read_file("full/metrics.jsonl", &n);
    text = realloc(text, n + 1);
    text[n] = '\0';
    int lines = 0;
    double last_exit1 = -1.0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n"), lines++) {
        json_t *j = json_loads(l, 0, NULL);
        assert_non_null(j);
        assert_true(json_is_real(json_object_get(j, "test_acc.exit1")));
        assert_true(json_real_value(json_object_get(j, "test_acc.logits")) ==
                    json_real_value(json_object_get(j, "test_acc")));
        last_exit1 = json_real_value(json_object_get(j, "test_acc.exit1"));
        json_decref(j);
    }
    free(text);
    assert_int_equal(lines, 3);
    assert_true(fabs(last_exit1 - full.exits[1].final_acc) < 1e-7);
    /* summary.json: each exit's final score; nothing chose an exit's best epoch on the test split */
    json_error_t je;
    json_t *s = json_load_file("full/summary.json", 0, &je);
    if (!s) fail_msg("summary.json: %s", je.text);
    json_t *x1 = json_object_get(json_object_get(s, "exits"), "exit1");
    assert_non_null(x1);
    assert_true(json_real_value(json_object_get(x1, "final_test_acc")) == full.exits[1].final_acc);
    assert_null(json_object_get(x1, "best_test_acc"));
    assert_null(json_object_get(x1, "best_epoch"));
    json_decref(s);
    /* stopped after an epoch and resumed: the same bytes and scores */
    run_into("part", 1, 0);
    train_result fin = run_into("part", 0, 1);
    assert_true(tu_same_file("full/last.safetensors", "part/last.safetensors"));
    assert_int_equal(fin.n_exits, 2);
    for (int x = 0; x < 2; x++) assert_true(fin.exits[x].final_acc == full.exits[x].final_acc);
    /* a finished run resumed reads the exits back from its summary */
    train_result again = run_into("full", 0, 1);
    assert_int_equal(again.unchanged, 1);
    assert_int_equal(again.n_exits, 2);
    assert_true(fabs(again.exits[1].final_acc - full.exits[1].final_acc) < 1e-7);
}

/* A resume state of an earlier build, which kept each exit's best test score and epoch
 * (exit.KEY.best_acc, exit.KEY.best_epoch), still resumes, to the same bytes: those keys choose
 * nothing now and are not read. */
static void test_resume_state_with_exit_bests(void **state)
{
    (void)state;
    ensure_image_data();
    const train_result ref = run_into("ref", 0, 0);
    run_into("old", 1, 0);
    io_st_file *f;
    xd_err e;
    xd_err_clear(&e);
    TU_OK(io_st_open("old/resume.safetensors", &f, &e));
    const size_t nt = io_st_count(f), nm = io_st_meta_count(f);
    io_tensor *t = xd_xmalloc(sizeof *t * nt);
    io_kv *meta = xd_xmalloc(sizeof *meta * (nm + 4));
    for (size_t i = 0; i < nt; i++) t[i] = *io_st_tensor(f, i);
    for (size_t i = 0; i < nm; i++) {
        meta[i] = *io_st_meta_at(f, i);
        assert_true(strncmp(meta[i].key, "exit.", 5) != 0); /* this build writes none */
    }
    meta[nm] = (io_kv){"exit.exit1.best_acc", "0.25"};
    meta[nm + 1] = (io_kv){"exit.exit1.best_epoch", "1"};
    meta[nm + 2] = (io_kv){"exit.logits.best_acc", "0.5"};
    meta[nm + 3] = (io_kv){"exit.logits.best_epoch", "1"};
    TU_OK(io_st_write("old/resume.tmp", t, nt, meta, nm + 4, &e));
    io_st_close(f);
    assert_int_equal(rename("old/resume.tmp", "old/resume.safetensors"), 0);
    free(t);
    free(meta);
    train_result fin = run_into("old", 0, 1);
    assert_int_equal(fin.n_exits, 2);
    assert_true(tu_same_file("ref/last.safetensors", "old/last.safetensors"));
    assert_true(tu_same_file("ref/best.safetensors", "old/best.safetensors"));
    for (int x = 0; x < 2; x++) assert_true(fin.exits[x].final_acc == ref.exits[x].final_acc);
}

/* ---------------------------------------------------------------------------------------------
 * 4. recipes */

static void load_bad(const char *text, const char *want)
{
    tu_write_file("r.yaml", text, strlen(text));
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load("r.yaml", NULL, 0, &r, &e) == XD_OK) fail_msg("recipe loaded, expected '%s'", want);
    tu_assert_err(&e, XD_EARG, want);
    recipe_free(&r);
}

#define HEAD "data: {path: d.xds}\ntrain: {epochs: 1}\nmodel: \"" NET "\"\n" /* lines 1-3 */

static void test_recipe_self_ends(void **state)
{
    (void)state;
    tu_write_file("d.xds", "x", 1);
    tu_write_file("cnn.safetensors", "x", 1);
    load_bad(HEAD "losses:\n  - {kind: ce}\n  - {kind: kd, from: student.logits}\n",
             "r.yaml:6: losses.1.from: 'student.logits' is the end that learns too");
    load_bad(HEAD "losses:\n  - {kind: ce}\n  - {kind: kd, from: student, head: logits}\n",
             "r.yaml:6: losses.1.from: 'student' is the end that learns too");
    load_bad(HEAD "losses:\n  - {kind: kd, from: student.deep, head: exit1}\n",
             "r.yaml:5: losses.0.from: the student model has no node 'deep'");
    load_bad(HEAD "losses:\n  - {kind: hint, from: student.feat, student_tap: nope}\n",
             "r.yaml:5: losses.0.student_tap: the student model has no node 'nope'");
    load_bad(HEAD "teachers: [{name: student, checkpoint: cnn.safetensors}]\n"
                  "losses:\n  - {kind: kd, from: student.logits, head: exit1}\n",
             "r.yaml:6: losses.0.from: 'student.logits' names both the student and teacher "
             "'student'");
    /* the effective recipe spells the self end and reads back the same */
    const char *ok = HEAD "losses:\n  - {kind: ce}\n"
                          "  - {kind: kd, from: student.logits, head: exit1, temperature: 3}\n"
                          "  - {kind: hint, from: student.feat, student_tap: f1}\n";
    tu_write_file("ok.yaml", ok, strlen(ok));
    recipe r, back;
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load("ok.yaml", NULL, 0, &r, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_int_equal(r.stages[0].losses[1].from_model, 0);
    assert_int_equal(r.stages[0].losses[1].model, 0);
    assert_int_equal(r.stages[0].losses[1].teacher, -1);
    assert_int_equal(r.stages[0].losses[1].detach, 1);
    char *y1 = recipe_to_yaml(&r);
    tu_write_file("back.yaml", y1, strlen(y1));
    if (recipe_load("back.yaml", NULL, 0, &back, &e) != XD_OK) fail_msg("%s\n%s", e.msg, y1);
    char *y2 = recipe_to_yaml(&back);
    assert_string_equal(y1, y2);
    assert_int_equal(back.stages[0].losses[2].from_model, 0);
    assert_string_equal(back.stages[0].losses[2].teacher_tap, "feat");
    free(y1);
    free(y2);
    recipe_free(&r);
    recipe_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_forward),
        cmocka_unit_test(test_exit_scores),
        cmocka_unit_test(test_recipe_self_ends),
        cmocka_unit_test(test_byot_gradients),
        cmocka_unit_test(test_run_scores_exits),
        cmocka_unit_test(test_resume_state_with_exit_bests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
