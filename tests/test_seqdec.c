/* nn/seqdec: the decoder's gradients (every parameter tensor and the conditioning input) against
 * central finite differences, teacher forcing fitting a tiny set exactly, and greedy decoding
 * stopping at the end token and at the length limit. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/optim.h"
#include "nn/seqdec.h"

enum { IN = 5, HID = 6, EMB = 4, VOCAB = 9, LEN = 5, BATCH = 3 };

typedef struct {
    nn_seqdec d;
    float *z;
    int32_t *y;
} seq_ctx;

static double seq_loss(void *p)
{
    seq_ctx *c = p;
    return nn_seqdec_forward(&c->d, c->z, c->y, BATCH, NULL, NULL);
}

static void test_gradients(void **state)
{
    (void)state;
    seq_ctx c;
    xd_err e;
    TU_OK(nn_seqdec_init(&c.d, IN, HID, EMB, VOCAB, LEN, BATCH, 7, &e));
    c.z = calloc(BATCH * IN, sizeof(float));
    tu_fill_uniform(c.z, BATCH * IN, -1, 1, 3);
    c.y = calloc(BATCH * LEN, sizeof(int32_t));
    /* rows of 3 tokens, of 4 (cut to LEN - 1 before the end token), and none at all */
    const int32_t r0[] = {4, 5, 6}, r1[] = {7, 8, 4, 5, 6};
    nn_seqdec_target(r0, 3, LEN, c.y);
    nn_seqdec_target(r1, 5, LEN, c.y + LEN);
    nn_seqdec_target(NULL, -1, LEN, c.y + 2 * LEN);
    assert_int_equal(c.y[LEN + LEN - 1], NN_SEQ_EOS);
    assert_int_equal(c.y[2 * LEN], NN_SEQ_PAD);
    /* the gradient of 0.7 * loss */
    float *dz = calloc(BATCH * IN, sizeof(float));
    int count = 0;
    nn_seqdec_forward(&c.d, c.z, c.y, BATCH, NULL, &count);
    assert_int_equal(count, 4 + 5);
    nn_seqdec_backward(&c.d, dz, 0.7f);
    float *grad = malloc(c.d.n_param * sizeof(float));
    for (size_t i = 0; i < c.d.n_param; i++) grad[i] = c.d.grad[i] / 0.7f;
    for (int i = 0; i < BATCH * IN; i++) dz[i] /= 0.7f;
    for (int k = 0; k < NN_SEQ_TENSORS; k++)
        tu_check_grad(nn_seq_tensor_names[k], c.d.param + c.d.off[k], c.d.n[k], grad + c.d.off[k],
                      seq_loss, &c, 2e-3, 2e-2, 1e-4);
    tu_check_grad("z", c.z, BATCH * IN, dz, seq_loss, &c, 2e-3, 2e-2, 1e-4);
    /* the row without a sequence gets no gradient */
    for (int i = 2 * IN; i < 3 * IN; i++) assert_true(dz[i] == 0.0f);
    free(grad), free(dz), free(c.z), free(c.y);
    nn_seqdec_free(&c.d);
}

/* Teacher forcing on four rows with different sequences (one empty): AdamW fits them until the
 * token accuracy is exact, and greedy decoding then gives back each sequence. */
static void test_fits_tiny_set(void **state)
{
    (void)state;
    enum { N = 4, L = 6 };
    nn_seqdec d;
    xd_err e;
    TU_OK(nn_seqdec_init(&d, 3, 16, 8, 10, L, N, 1, &e));
    float z[N * 3];
    tu_fill_uniform(z, N * 3, -1, 1, 5);
    const int32_t seqs[N][4] = {{4, 5, 6, 7}, {8, 9, 4, 0}, {5, 5, 0, 0}, {0}};
    const int lens[N] = {4, 3, 2, 0};
    int32_t y[N * L];
    for (int i = 0; i < N; i++) nn_seqdec_target(seqs[i], lens[i], L, y + i * L);
    nn_optimizer o;
    nn_opt_config cfg = nn_opt_defaults(NN_OPT_ADAMW);
    cfg.weight_decay = 0.0f;
    TU_OK(nn_opt_init(&o, &cfg, d.n_param, &e));
    int correct = 0, count = 0;
    double first = nn_seqdec_forward(&d, z, y, N, NULL, NULL), loss = first;
    for (int step = 0; step < 400; step++) {
        memset(d.grad, 0, d.n_param * sizeof(float));
        loss = nn_seqdec_forward(&d, z, y, N, &correct, &count);
        nn_seqdec_backward(&d, NULL, 1.0f);
        nn_opt_step(&o, d.param, d.grad, d.segs, NN_SEQ_TENSORS, 0.02f);
    }
    loss = nn_seqdec_forward(&d, z, y, N, &correct, &count);
    assert_int_equal(count, 4 + 1 + 3 + 1 + 2 + 1 + 0 + 1);
    assert_int_equal(correct, count);
    assert_true(loss < 0.05 && loss < first / 20);
    int32_t out[N * L];
    int len[N];
    nn_seqdec_greedy(&d, z, N, out, len);
    for (int i = 0; i < N; i++) {
        assert_int_equal(len[i], lens[i]);
        assert_memory_equal(out + i * L, seqs[i], (size_t)lens[i] * sizeof(int32_t));
        for (int t = len[i]; t < L; t++) assert_int_equal(out[i * L + t], NN_SEQ_PAD);
    }
    nn_opt_free(&o);
    nn_seqdec_free(&d);
}

/* Greedy decoding with the output bias set by hand: an end token that always wins gives empty
 * sequences; a word that always wins runs to the length limit. */
static void test_greedy_stops(void **state)
{
    (void)state;
    nn_seqdec d;
    xd_err e;
    TU_OK(nn_seqdec_init(&d, IN, HID, EMB, VOCAB, LEN, BATCH, 2, &e));
    float z[BATCH * IN];
    tu_fill_uniform(z, BATCH * IN, -1, 1, 9);
    memset(d.param + d.off[NN_SEQ_WO], 0, d.n[NN_SEQ_WO] * sizeof(float));
    float *bo = d.param + d.off[NN_SEQ_BO];
    int32_t out[BATCH * LEN];
    int len[BATCH];
    bo[NN_SEQ_EOS] = 5.0f;
    nn_seqdec_greedy(&d, z, BATCH, out, len);
    for (int b = 0; b < BATCH; b++) {
        assert_int_equal(len[b], 0);
        for (int t = 0; t < LEN; t++) assert_int_equal(out[b * LEN + t], NN_SEQ_PAD);
    }
    bo[NN_SEQ_EOS] = 0.0f;
    bo[6] = 5.0f;
    nn_seqdec_greedy(&d, z, BATCH, out, len);
    for (int b = 0; b < BATCH; b++) {
        assert_int_equal(len[b], LEN);
        for (int t = 0; t < LEN; t++) assert_int_equal(out[b * LEN + t], 6);
    }
    nn_seqdec_free(&d);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    nn_seqdec d;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(nn_seqdec_init(&d, IN, HID, EMB, NN_SEQ_SPECIALS, LEN, 1, 1, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "vocabulary of 4 tokens");
    assert_int_equal(nn_seqdec_init(&d, IN, HID, EMB, VOCAB, 0, 1, 1, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "length limit 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_fits_tiny_set),
        cmocka_unit_test(test_greedy_stops),
        cmocka_unit_test(test_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
