/* Models that learn together: recipes with a `models:` list, loss ends (`from`, `to`, `detach`)
 * and deep mutual learning, on the tiny synthetic data set (tests/support/tinyset.h).
 *
 * - One DML step of two peers of different architectures equals a step computed by hand from the
 *   library's layers and losses, with both forwards before any update; a step where the second
 *   peer would read the first one's updated predictions is measurably different.
 * - The gradient each end of a loss receives matches central finite differences of the step's loss
 *   as a function of that end's parameters (read off an SGD step with lr 1); a detached end
 *   receives exactly none although the loss depends on it.
 * - A run of image + text peers stopped and resumed ends byte for byte like the straight run; its
 *   folder holds one checkpoint per model, named after it, and a score per model.
 * - Recipe mistakes in the ends and the names are errors with file, line and key path. */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "align/clip.h"
#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "distill/kd.h"
#include "distill/models.h"
#include "distill/recipe.h"
#include "distill/runs.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "nn/loss.h"
#include "nn/model.h"
#include "tests/support/tinyset.h"

#define MLP_A                                                                                    \
    "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu name=feat; linear out=4 "          \
    "name=logits head"
#define MLP_B                                                                                    \
    "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; tanh name=feat; linear out=4 "          \
    "name=logits head"
#define CNN_B                                                                                    \
    "input h=8 w=8 c=1; conv2d name=conv1 out=4 k=3 pad=1; relu name=r1; maxpool k=2 "           \
    "name=pool1; flatten; linear out=4 name=logits head"
#define TEXT_B                                                                                   \
    "input tokens=64; embbag vocab=512 out=16 mode=mean name=emb; dropout p=0.2; linear out=4 "  \
    "name=logits head"

enum { N_TRAIN = 200, SEED = 5 };

static void ensure_data(void)
{
    struct stat st;
    if (stat("toy.xds", &st) == 0) return;
    tiny_spec s = tiny_default();
    tiny_write("toy.xds", &s);
}

/* Writes text to NAME.yaml, loads it and runs it into out. */
static train_result run_ok(const char *name, const char *text, const char *out, int stop_after,
                           int resume)
{
    char path[256];
    snprintf(path, sizeof path, "%s.yaml", name);
    tu_write_file(path, text, strlen(text));
    recipe r;
    xd_err e;
    xd_err_clear(&e);
    if (recipe_load(path, NULL, 0, &r, &e) != XD_OK) fail_msg("recipe %s: %s", path, e.msg);
    train_opts o = {.out_dir = out, .resume = resume, .stop_after = stop_after, .quiet = 1};
    train_result res;
    if (trainer_run(&r, SEED, &o, &res, &e) != XD_OK) fail_msg("run %s: %s", name, e.msg);
    recipe_free(&r);
    return res;
}

static void load_ckpt(const char *path, nn_model *m)
{
    xd_err e;
    xd_err_clear(&e);
    if (ckpt_load(path, N_TRAIN, m, &e) != XD_OK) fail_msg("ckpt_load %s: %s", path, e.msg);
}

/* A model as the trainer starts model k of a run with seed SEED, and its view of the whole
 * training split (every example in index order: one batch of N_TRAIN). */
typedef struct {
    nn_model m;
    io_dataset *ds;
    feed f;
    void *input;
} peer;

static void peer_open(peer *p, const char *desc, int k, const char *view)
{
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(&p->m, desc, N_TRAIN, models_seed(SEED, k), &e) != XD_OK)
        fail_msg("%s", e.msg);
    if (io_dataset_open("toy.xds", &p->ds, &e) != XD_OK) fail_msg("%s", e.msg);
    const char *text = strcmp(view, "image") == 0 ? "" : "buckets=512";
    if (feed_open(&p->f, p->ds, "train", view, &p->m, "", text, &e) != XD_OK) fail_msg("%s", e.msg);
    p->input = xd_xmalloc_aligned(feed_example_bytes(&p->f) * N_TRAIN);
    uint32_t idx[N_TRAIN];
    for (int i = 0; i < N_TRAIN; i++) idx[i] = (uint32_t)i;
    if (feed_fill(&p->f, idx, N_TRAIN, 0, 0, 0, p->input, &e) != XD_OK) fail_msg("%s", e.msg);
}

static void peer_close(peer *p)
{
    free(p->input);
    feed_close(&p->f);
    io_dataset_close(p->ds);
    nn_model_free(&p->m);
}

static float *peer_forward(peer *p, const char *node)
{
    nn_model_forward(&p->m, p->input, N_TRAIN, NULL);
    int i = nn_model_find(&p->m, node);
    assert_true(i >= 0);
    return nn_model_out(&p->m, i);
}

static int node_of(peer *p, const char *name)
{
    int i = nn_model_find(&p->m, name);
    assert_true(i >= 0);
    return i;
}

static const int32_t *train_labels(peer *p)
{
    const io_tensor *t = io_dataset_find(p->ds, "train/label");
    assert_non_null(t);
    return t->data;
}

/* ---------------------------------------------------------------------------------------------
 * 1. one DML step equals the hand-computed two-model step */

/* Adds into p's logits gradient the CE on the labels and KL(softmax(other) || softmax(self)),
 * T = 1, both of weight 1 (the DML loss of one peer). */
static void dml_grad(peer *p, const float *self, const float *other, const int32_t *y)
{
    const int K = 4;
    float *buf = xd_xmalloc(sizeof(float) * N_TRAIN * K), *q = xd_xmalloc(sizeof(float) * N_TRAIN * K);
    float *d = nn_model_dout(&p->m, node_of(p, "logits"));
    nn_ce_forward(buf, self, y, NULL, N_TRAIN, K);
    nn_ce_backward(d, buf, y, NULL, N_TRAIN, K, 1.0f);
    kd_soft_targets(q, other, N_TRAIN, K, 1.0f);
    kd_forward(buf, self, q, NULL, N_TRAIN, K, 1.0f);
    kd_backward(d, buf, q, NULL, N_TRAIN, K, 1.0f, 1.0f);
    free(buf);
    free(q);
}

/* p's parameters after an SGD step of lr on the gradient its logits received. */
static float *sgd_params(peer *p, float lr)
{
    nn_model_backward(&p->m);
    float *out = xd_xmalloc(sizeof(float) * p->m.n_param);
    for (size_t i = 0; i < p->m.n_param; i++) out[i] = p->m.param[i] - lr * p->m.grad[i];
    return out;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_dml_step_by_hand(void **state)
{
    (void)state;
    ensure_data();
    static const char *const text =
        "data: {path: toy.xds}\n"
        "models:\n"
        "  - {name: a, model: \"" MLP_A "\"}\n"
        "  - {name: b, model: \"" CNN_B "\"}\n"
        "train: {epochs: 1, batch: 200, optimizer: {kind: sgd, lr: 0.5}}\n"
        "losses:\n"
        "  - {kind: ce, model: a}\n"
        "  - {kind: ce, model: b}\n"
        "  - {kind: kd, from: b.logits, to: a.logits, temperature: 1}\n"
        "  - {kind: kd, from: a, to: b, temperature: 1}\n";
    run_ok("dml", text, "dml", 0, 0);
    nn_model ta, tb;
    load_ckpt("dml/a.last.safetensors", &ta);
    load_ckpt("dml/b.last.safetensors", &tb);

    peer a, b;
    peer_open(&a, MLP_A, 0, "image");
    peer_open(&b, CNN_B, 1, "image");
    const int32_t *y = train_labels(&a);
    /* both forwards first, then both losses and updates */
    const float *la = peer_forward(&a, "logits"), *lb = peer_forward(&b, "logits");
    nn_model_zero_grad(&a.m);
    nn_model_zero_grad(&b.m);
    dml_grad(&a, la, lb, y);
    dml_grad(&b, lb, la, y);
    float *pa = sgd_params(&a, 0.5f), *pb = sgd_params(&b, 0.5f);
    /* the trainer's batch is the same examples in its own order: sums differ in rounding only */
    tu_assert_close(ta.param, pa, ta.n_param, 1e-4, 1e-6, "peer a after one DML step");
    tu_assert_close(tb.param, pb, tb.n_param, 1e-4, 1e-6, "peer b after one DML step");

    /* had b read a's updated predictions, it would have ended elsewhere */
    memcpy(a.m.param, pa, sizeof(float) * a.m.n_param);
    const float *la_new = peer_forward(&a, "logits");
    const float *lb_again = peer_forward(&b, "logits");
    nn_model_zero_grad(&b.m);
    dml_grad(&b, lb_again, la_new, y);
    float *pb_seq = sgd_params(&b, 0.5f);
    double same_step = max_diff(tb.param, pb, tb.n_param);
    double sequential = max_diff(tb.param, pb_seq, tb.n_param);
    if (!(sequential > 1e-4 && sequential > 100.0 * same_step))
        fail_msg("a sequential step differs by %g, the same-step one by %g", sequential, same_step);
    free(pa);
    free(pb);
    free(pb_seq);
    peer_close(&a);
    peer_close(&b);
    nn_model_free(&ta);
    nn_model_free(&tb);
}

/* ---------------------------------------------------------------------------------------------
 * 2. gradients into both ends against finite differences */

typedef enum { END_KD, END_MSE, END_COSINE, END_CONTRASTIVE } end_loss;

typedef struct {
    peer *a, *b;
    end_loss kind;
    const char *node; /* the tap both ends read */
} fd_ctx;

/* The loss of the step (weight 1) at a's and b's current parameters. */
static double step_loss(void *vctx)
{
    fd_ctx *c = vctx;
    const float *fa = peer_forward(c->a, c->node), *fb = peer_forward(c->b, c->node);
    const int D = (int)nn_model_node(&c->a->m, node_of(c->a, c->node))->act_n;
    float *buf = xd_xmalloc(sizeof(float) * N_TRAIN * D), *q = xd_xmalloc(sizeof(float) * N_TRAIN * D);
    double v = 0.0;
    switch (c->kind) {
    case END_KD:
        kd_soft_targets(q, fb, N_TRAIN, D, 2.0f);
        v = kd_forward(buf, fa, q, NULL, N_TRAIN, D, 2.0f);
        break;
    case END_MSE:
        v = nn_mse_forward(fa, fb, (int64_t)N_TRAIN * D);
        break;
    case END_COSINE:
        v = kd_cos_forward(fa, fb, NULL, NULL, N_TRAIN, D, 0.0f);
        break;
    case END_CONTRASTIVE: {
        double *save = xd_xmalloc(sizeof(double) * align_clip_save_len(N_TRAIN, D));
        v = align_clip_forward(save, fa, fb, N_TRAIN, D, (float)align_clip_theta(0.5));
        free(save);
        break;
    }
    }
    free(buf);
    free(q);
    return v;
}

/* Runs one SGD step (lr 1, the whole split as one batch) of `loss` between a (to) and b (from)
 * and checks the gradient each received (p0 - p1) against finite differences along random
 * directions; detached: b must not move at all, though the loss depends on it. */
static void check_ends(const char *name, const char *loss, end_loss kind, const char *node,
                       int detached)
{
    char text[1024];
    snprintf(text, sizeof text, "data: {path: toy.xds}\n"
                     "models:\n"
                     "  - {name: a, model: \"" MLP_A "\"}\n"
                     "  - {name: b, model: \"" MLP_B "\"}\n"
                     "train: {epochs: 1, batch: 200, optimizer: {kind: sgd, lr: 1}}\n"
                     "losses:\n"
                     "  - %s\n"
                     "  - {kind: ce, model: b, weight: 0}\n",
                     loss);
    run_ok(name, text, name, 0, 0);
    char pa_path[256], pb_path[256];
    snprintf(pa_path, sizeof pa_path, "%s/a.last.safetensors", name);
    snprintf(pb_path, sizeof pb_path, "%s/b.last.safetensors", name);
    nn_model ta, tb;
    load_ckpt(pa_path, &ta);
    load_ckpt(pb_path, &tb);
    peer a, b;
    peer_open(&a, MLP_A, 0, "image");
    peer_open(&b, MLP_B, 1, "image");
    fd_ctx c = {.a = &a, .b = &b, .kind = kind, .node = node};
    peer *ends[2] = {&a, &b};
    const nn_model *trained[2] = {&ta, &tb};
    for (int end = 0; end < 2; end++) {
        nn_model *m = &ends[end]->m;
        const size_t n = m->n_param;
        float *g = xd_xmalloc(sizeof(float) * n), *d = xd_xmalloc(sizeof(float) * n);
        for (size_t i = 0; i < n; i++) g[i] = m->param[i] - trained[end]->param[i];
        if (end == 1 && detached) {
            /* nothing reached the detached end: its parameters did not move */
            assert_memory_equal(m->param, trained[1]->param, sizeof(float) * n);
        }
        for (int dir = 0; dir < 3; dir++) {
            tu_fill_uniform(d, n, -1.0f, 1.0f, 100u + (uint64_t)(10 * end + dir));
            double fd = tu_fd_along(step_loss, &c, m->param, n, d, 2e-3);
            double an = tu_dot(g, d, n);
            if (end == 1 && detached) {
                /* ... though the loss does depend on it */
                if (!(fabs(fd) > 1e-4))
                    fail_msg("%s: the loss does not depend on the from end (%g)", name, fd);
                continue;
            }
            if (!(fabs(fd - an) <= 1e-4 + 2e-2 * fmax(fabs(fd), fabs(an))))
                fail_msg("%s: the %s end's gradient along direction %d is %g, finite differences "
                         "give %g", name, end ? "from" : "to", dir, an, fd);
        }
        free(g);
        free(d);
    }
    peer_close(&a);
    peer_close(&b);
    nn_model_free(&ta);
    nn_model_free(&tb);
}

static void test_end_gradients(void **state)
{
    (void)state;
    ensure_data();
    check_ends("kd-detached", "{kind: kd, from: b.logits, to: a.logits, temperature: 2}", END_KD,
               "logits", 1);
    check_ends("kd-both", "{kind: kd, from: b.logits, to: a.logits, temperature: 2, detach: false}",
               END_KD, "logits", 0);
    check_ends("mse-both", "{kind: feature, from: b.fc1, to: a.fc1, detach: false}", END_MSE,
               "fc1", 0);
    check_ends("cos-both", "{kind: feature, metric: cosine, from: b.fc1, to: a.fc1, detach: false}",
               END_COSINE, "fc1", 0);
    check_ends("clip-both", "{kind: contrastive, from: b.fc1, to: a.fc1, temperature: 0.5, "
               "detach: false}", END_CONTRASTIVE, "fc1", 0);
}

/* ---------------------------------------------------------------------------------------------
 * 3. image + text peers: resume, files, scores */

static const char *const cross_recipe =
    "data: {path: toy.xds, augment: \"pad=1 flip=0.5\", text: \"buckets=512\", label_fraction: 0.2}\n"
    "models:\n"
    "  - {name: img, model: \"" MLP_A "\"}\n"
    "  - name: txt\n"
    "    model: \"" TEXT_B "\"\n"
    "    view: text.*\n"
    "    optimizer: {kind: adamw, lr: 0.02}\n"
    "train: {epochs: 3, batch: 16, optimizer: {kind: adamw, lr: 0.01}, schedule: cosine}\n"
    "losses:\n"
    "  - {kind: ce, model: img}\n"
    "  - {kind: ce, model: txt}\n"
    "  - {kind: kd, from: txt, to: img, temperature: 1}\n"
    "  - {kind: kd, from: img, to: txt, temperature: 1}\n";

static void test_cross_modal_peers_resume(void **state)
{
    (void)state;
    ensure_data();
    train_result full = run_ok("cross", cross_recipe, "cross-full", 0, 0);
    assert_int_equal(full.n_models, 2);
    assert_string_equal(full.models[1].name, "txt");
    run_ok("cross", cross_recipe, "cross-part", 1, 0);
    train_result fin = run_ok("cross", cross_recipe, "cross-part", 0, 1);
    assert_int_equal(fin.epochs_done, 3);
    static const char *const files[] = {"img.last.safetensors", "img.best.safetensors",
                                        "txt.last.safetensors", "txt.best.safetensors"};
    for (int i = 0; i < 4; i++) {
        char a[128], b[128];
        snprintf(a, sizeof a, "cross-full/%s", files[i]);
        snprintf(b, sizeof b, "cross-part/%s", files[i]);
        if (!tu_same_file(a, b)) fail_msg("%s differs after a stop and a resume", files[i]);
    }
    /* one-model names are not used */
    struct stat st;
    assert_int_not_equal(stat("cross-full/best.safetensors", &st), 0);
    for (int k = 0; k < 2; k++) {
        assert_true(fin.models[k].final_acc == full.models[k].final_acc);
        assert_true(fin.models[k].best_acc == full.models[k].best_acc);
        assert_int_equal(fin.models[k].best_epoch, full.models[k].best_epoch);
    }
    /* the summary has a score per model; the text peer's best checkpoint scores it again */
    json_error_t je;
    json_t *s = json_load_file("cross-full/summary.json", 0, &je);
    if (!s) fail_msg("summary.json: %s", je.text);
    json_t *txt = json_object_get(json_object_get(s, "models"), "txt");
    assert_non_null(txt);
    assert_true(json_real_value(json_object_get(txt, "test_acc_at_best")) == full.models[1].best_acc);
    assert_string_equal(json_string_value(json_object_get(txt, "best_on")), "last");
    json_decref(s);
    /* resuming the finished run writes nothing and reads every model's scores back, which the
     * seeds' summary (train --seeds, xdistill run) then carries */
    train_result again = run_ok("cross", cross_recipe, "cross-full", 0, 1);
    assert_int_equal(again.unchanged, 1);
    assert_int_equal(again.n_models, 2);
    assert_string_equal(again.models[1].name, "txt");
    assert_true(fabs(again.models[1].final_acc - full.models[1].final_acc) < 1e-6);
    json_t *sj = runs_seeds_json("cross", &again, 1);
    json_t *mean = json_object_get(
        json_object_get(json_object_get(json_object_get(sj, "models"), "txt"), "final_test_acc"),
        "mean");
    assert_true(fabs(json_real_value(mean) - full.models[1].final_acc) < 1e-6);
    json_decref(sj);
    nn_model m;
    load_ckpt("cross-full/txt.best.safetensors", &m);
    xd_err e;
    xd_err_clear(&e);
    char *aug = NULL, *text = NULL;
    if (ckpt_preprocessing("cross-full/txt.best.safetensors", &aug, &text, &e) != XD_OK)
        fail_msg("%s", e.msg);
    assert_non_null(text);
    assert_string_equal(text, "buckets=512");
    io_dataset *ds;
    feed f;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    TU_OK(feed_open(&f, ds, "test", "text.*", &m, aug, text, &e));
    void *input = xd_xmalloc_aligned(feed_example_bytes(&f) * N_TRAIN);
    const io_tensor *y = io_dataset_find(ds, "test/label");
    double acc = -1.0;
    TU_OK(trainer_evaluate(&m, nn_model_default_head(&m), &f, y->data, input, &acc, &e));
    assert_true(acc == full.models[1].best_acc);
    free(input);
    feed_close(&f);
    io_dataset_close(ds);
    free(aug);
    free(text);
    nn_model_free(&m);
}

/* ---------------------------------------------------------------------------------------------
 * 4. recipes */

static xd_status load(const char *text, recipe *r, xd_err *e)
{
    tu_write_file("r.yaml", text, strlen(text));
    xd_err_clear(e);
    return recipe_load("r.yaml", NULL, 0, r, e);
}

static void load_bad(const char *text, const char *want)
{
    recipe r;
    xd_err e;
    if (load(text, &r, &e) == XD_OK) fail_msg("recipe loaded, expected '%s'", want);
    tu_assert_err(&e, XD_EARG, want);
    recipe_free(&r);
}

#define HEAD "data: {path: d.xds}\ntrain: {epochs: 1}\n" /* lines 1-2 */
#define PEERS                                                                                    \
    "models:\n"                                    /* 3 */                                      \
    "  - {name: a, model: \"" MLP_A "\"}\n"        /* 4 */                                      \
    "  - {name: b, model: \"" CNN_B "\"}\n"        /* 5 */
#define CE_BOTH "losses:\n  - {kind: ce, model: a}\n  - {kind: ce, model: b}\n" /* 6-8 */

static void test_recipe_ends(void **state)
{
    (void)state;
    tu_write_file("d.xds", "x", 1);
    tu_write_file("cnn.safetensors", "x", 1);
    /* a loss end that names no model, a node a model does not have */
    load_bad(HEAD PEERS CE_BOTH "  - {kind: kd, from: c.logits, to: a}\n",
             "r.yaml:9: losses.2.from: 'c.logits' names no model or teacher (models: a or b; "
             "teachers: none)");
    load_bad(HEAD PEERS CE_BOTH "  - {kind: kd, from: b, to: a.nope}\n",
             "r.yaml:9: losses.2.to: model 'a' has no node 'nope'");
    load_bad(HEAD PEERS CE_BOTH "  - {kind: feature, from: b.logits, to: a}\n",
             "r.yaml:9: losses.2.to: kind 'feature' needs a node: MODEL.NODE");
    load_bad(HEAD PEERS "losses:\n  - {kind: ce, model: c}\n",
             "r.yaml:7: losses.0.model: 'c' names no model or teacher");
    /* two models with one name; a model named like a teacher */
    load_bad(HEAD "models:\n  - {name: a, model: \"" MLP_A "\"}\n  - {name: a, model: \"" CNN_B
                  "\"}\nlosses: [{kind: ce}]\n",
             "r.yaml:5: models.1.name: model name 'a' is already used by models.0 (r.yaml:4");
    load_bad(HEAD PEERS "teachers:\n  - {name: b, checkpoint: cnn.safetensors}\n" CE_BOTH,
             "r.yaml:7: teachers.0.name: teacher name 'b' is already the name of models.1");
    /* ends that cannot be */
    load_bad(HEAD PEERS "teachers: [{name: cnn, checkpoint: cnn.safetensors}]\n" CE_BOTH
             "  - {kind: kd, from: a, to: cnn}\n",
             "r.yaml:10: losses.2.to: 'cnn' is a teacher; the end that learns is a trainable model");
    load_bad(HEAD PEERS "teachers: [{name: cnn, checkpoint: cnn.safetensors}]\n" CE_BOTH
             "  - {kind: kd, from: cnn, to: a, detach: false}\n",
             "r.yaml:10: losses.2.detach: teacher 'cnn' is frozen");
    load_bad(HEAD PEERS CE_BOTH "  - {kind: kd, from: a.logits, to: a}\n",
             "r.yaml:9: losses.2.from: 'a.logits' is the end that learns too");
    load_bad(HEAD PEERS CE_BOTH "  - {kind: kd, from: b, teacher: x, to: a}\n",
             "r.yaml:9: losses.2.teacher: give from or teacher, not both");
    load_bad(HEAD PEERS "losses:\n  - {kind: ce, model: a}\n",
             "r.yaml:5: models.1.name: no loss trains model 'b'");
    load_bad(HEAD "model: \"" MLP_A "\"\n" PEERS "losses: [{kind: ce}]\n",
             "r.yaml:3: model: give model (one student) or models (several), not both");

    /* the effective recipe prints the ends and reads back the same */
    const char *ok = HEAD PEERS
        "  - {name: c, model: \"" MLP_B "\", optimizer: {lr: 0.05}}\n"
        "teachers: [{name: cnn.v1, checkpoint: cnn.safetensors}]\n"
        "losses:\n"
        "  - {kind: ce, model: b}\n"
        "  - {kind: kd, from: b, to: a.logits, temperature: 1}\n"
        "  - {kind: hinton, from: cnn.v1.logits, to: c, detach: true}\n"
        "  - {kind: feature, from: c.feat, to: a.feat, detach: false}\n";
    recipe r, back;
    xd_err e;
    if (load(ok, &r, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_int_equal(r.n_models, 3);
    assert_int_equal(r.stages[0].losses[1].from_model, 1);
    assert_int_equal(r.stages[0].losses[1].model, 0);
    assert_int_equal(r.stages[0].losses[2].teacher, 0); /* the longest name that fits */
    assert_string_equal(r.stages[0].losses[2].teacher_head, "logits");
    assert_int_equal(r.stages[0].losses[3].detach, 0);
    assert_true(r.models[2].own_opt && r.models[2].opt.lr == 0.05f);
    assert_true(!r.models[0].own_opt && r.models[0].opt.lr == r.train.opt.lr);
    char *y1 = recipe_to_yaml(&r);
    tu_write_file("back.yaml", y1, strlen(y1));
    if (recipe_load("back.yaml", NULL, 0, &back, &e) != XD_OK) fail_msg("%s", e.msg);
    char *y2 = recipe_to_yaml(&back);
    assert_string_equal(y1, y2);
    free(y1);
    free(y2);
    recipe_free(&r);
    recipe_free(&back);

    /* the one-student form may spell a loss's ends too, and means the same */
    const char *keys = HEAD "model: \"" MLP_A "\"\nteachers: [{name: cnn, checkpoint: cnn.safetensors}]\n"
                            "losses: [{kind: kd, teacher: cnn, teacher_head: out, head: logits}]\n";
    const char *ends = HEAD "model: \"" MLP_A "\"\nteachers: [{name: cnn, checkpoint: cnn.safetensors}]\n"
                            "losses: [{kind: kd, from: cnn.out, to: student.logits}]\n";
    if (load(keys, &r, &e) != XD_OK) fail_msg("%s", e.msg);
    y1 = recipe_to_yaml(&r);
    recipe_free(&r);
    if (load(ends, &r, &e) != XD_OK) fail_msg("%s", e.msg);
    y2 = recipe_to_yaml(&r);
    recipe_free(&r);
    assert_string_equal(y1, y2);
    free(y1);
    free(y2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recipe_ends),
        cmocka_unit_test(test_dml_step_by_hand),
        cmocka_unit_test(test_end_gradients),
        cmocka_unit_test(test_cross_modal_peers_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
