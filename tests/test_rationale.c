/* Distilling step by step end to end on a tiny rationale set: the words of the training
 * rationales only, a run with a rationale loss (rationale_acc, the decoder files, an exact
 * resume), the decoder in the inference library, and the errors of a set without rationales. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mem.h"
#include "distill/rationale.h"
#include "io/safetensors.h"
#include "nn/seqdec.h"
#include "include/xdistill/xdistill.h"
#include "modalities/sets/sets.h"
#include "tests/support/trainrun.h"

/* 48 records of two classes; each rationale says which, in words of its class. */
static void make_set(void)
{
    static const char *const words[2][4] = {{"purr", "whiskers", "meow", "paws"},
                                            {"bark", "tail", "fetch", "woof"}};
    FILE *f = fopen("r.jsonl", "w");
    assert_non_null(f);
    for (int i = 0; i < 48; i++) {
        const int c = i % 2;
        fprintf(f, "{\"input\": \"%s %s number %d\", \"label\": \"%s\", \"rationale\": \"%s %s "
                   "means %s\"}\n", words[c][i % 4], words[c][(i / 2) % 4], i, c ? "dog" : "cat",
                words[c][(i + 1) % 4], words[c][(i / 3) % 4], c ? "dog" : "cat");
    }
    fclose(f);
    sets_manifest_opts o = sets_manifest_defaults();
    o.manifest = "r.jsonl";
    o.out = "r.xds";
    o.test_fraction = 0.25;
    sets_summary sum;
    xd_err e;
    TU_OK(sets_rationales(&o, &sum, &e));
    sets_summary_free(&sum);
}

static int setup(void **state)
{
    (void)state;
    make_set();
    return 0;
}

#define RAT_RECIPE(loss)                                                                         \
    "data:\n  path: r.xds\n  student_view: text.und\n  text: \"buckets=512\"\n"                  \
    "model: \"input tokens=64; embbag vocab=512 out=16 mode=mean name=emb; linear out=16 "        \
    "name=fc1; relu name=feat; linear out=2 name=logits head\"\n"                                 \
    "train:\n  epochs: 4\n  batch: 8\n  optimizer: {kind: adamw, lr: 0.01}\n"                     \
    "losses:\n  - {kind: ce}\n" loss

#define RAT_LOSS                                                                                 \
    "  - {kind: rationale, student_tap: feat, weight: 0.5, hidden: 12, embed: 6, max_len: 5}\n"

/* Only the words of the rationales in use get an id; the others are the unknown token. */
static void test_vocab_from_used_texts(void **state)
{
    (void)state;
    const char *texts[] = {"Cats purr", "dogs, BARK!", "unseen words"};
    const uint8_t use[] = {1, 1, 0};
    rat_vocab rv;
    xd_err e;
    TU_OK(rat_vocab_build(texts, 3, use, 100, &rv, &e));
    assert_int_equal(rat_vocab_size(&rv), NN_SEQ_SPECIALS + 4);
    int32_t ids[8];
    int n;
    TU_OK(rat_encode(&rv, "bark cats unseen", ids, 8, &n, &e));
    assert_int_equal(n, 3);
    assert_true(ids[0] >= NN_SEQ_SPECIALS && ids[1] >= NN_SEQ_SPECIALS);
    assert_int_equal(ids[2], NN_SEQ_UNK);
    char buf[64];
    rat_decode(&rv, ids, n, buf, sizeof buf);
    assert_string_equal(buf, "bark cats <unk>");
    TU_OK(rat_encode(&rv, "purr purr purr purr", ids, 2, &n, &e));
    assert_int_equal(n, 2);
    rat_vocab_free(&rv);
}

/* A run: rationale_acc at each evaluation, the decoder files, the decoder in the library. */
static void test_run_and_predict(void **state)
{
    (void)state;
    train_result res = run_ok("rat", RAT_RECIPE(RAT_LOSS), "rat-run", 3, 0, 0);
    assert_int_equal(res.epochs_done, 4);
    json_t *m = read_metrics("rat-run");
    for (size_t i = 0; i < json_array_size(m); i++) {
        const double acc = num(json_array_get(m, i), "rationale_acc");
        assert_true(acc >= 0.0 && acc <= 1.0);
        assert_true(num(json_array_get(m, i), "loss.1.rationale") > 0.0);
    }
    json_decref(m);
    assert_true(exists("rat-run/last.rationale.safetensors"));
    assert_true(exists("rat-run/best.rationale.safetensors"));

    xdistill_model *x;
    xdistill_error err;
    assert_int_equal(xdistill_load("rat-run/best.safetensors", 4, &x, &err), XDISTILL_OK);
    char words[256];
    assert_int_equal(xdistill_rationale(x, 0, words, sizeof words), -1); /* no decoder yet */
    assert_int_equal(xdistill_use_rationale(x, "rat-run/best.safetensors", &err), XDISTILL_EFORMAT);
    assert_non_null(strstr(err.message, "not a rationale decoder file"));
    assert_int_equal(xdistill_use_rationale(x, "rat-run/best.rationale.safetensors", &err),
                     XDISTILL_OK);
    xdistill_batch *b = xdistill_batch_new(x);
    const char *in = "purr whiskers";
    assert_int_equal(xdistill_batch_set_text(b, 0, in, strlen(in), "in", &err), XDISTILL_OK);
    float probs[4 * 2];
    assert_int_equal(xdistill_predict(x, b, 1, probs, &err), XDISTILL_OK);
    const int n = xdistill_rationale(x, 0, words, sizeof words);
    assert_true(n >= 0 && n <= 4); /* max_len 5: at most 4 words before the end token */
    /* as many words as spaces + 1 */
    int spaces = 0;
    for (const char *p = words; *p; p++) spaces += *p == ' ';
    assert_int_equal(n ? spaces + 1 : 0, n);
    xdistill_batch_free(b);
    /* a decoder file whose sizes ask for far more than its tensors hold: refused, no abort */
    xd_err e;
    io_st_file *f;
    TU_OK(io_st_open("rat-run/best.rationale.safetensors", &f, &e));
    io_tensor t[NN_SEQ_TENSORS];
    for (int k = 0; k < NN_SEQ_TENSORS; k++) t[k] = *io_st_find(f, nn_seq_tensor_names[k]);
    const size_t nm = io_st_meta_count(f);
    io_kv *meta = xd_xcalloc(nm, sizeof *meta);
    char *sizes = NULL;
    for (size_t i = 0; i < nm; i++) {
        meta[i] = *io_st_meta_at(f, i);
        if (strcmp(meta[i].key, "xdistill.rationale") == 0) {
            int w_in, hid, emb, V, len;
            assert_int_equal(sscanf(meta[i].value, "%d %d %d %d %d", &w_in, &hid, &emb, &V, &len), 5);
            meta[i].value = sizes = tu_fmt("%d 65536 %d %d %d", w_in, emb, V, len);
        }
    }
    TU_OK(io_st_write("huge.rationale.safetensors", t, NN_SEQ_TENSORS, meta, nm, &e));
    io_st_close(f);
    assert_int_not_equal(xdistill_use_rationale(x, "huge.rationale.safetensors", &err), XDISTILL_OK);
    if (!strstr(err.message, "huge.rationale.safetensors: tensor 'wz' is missing or not of the shape"))
        fail_msg("'%s'", err.message);
    free(meta);
    free(sizes);
    xdistill_free(x);
}

/* Taking a decoder under an address space limit (in a child, 0 to 300 MiB above what the process
 * holds): a status, never a signal, and XDISTILL_OK from under 100 MiB for batches of 65536:
 * decoding needs the memory of one step of the batch, not training's max_len steps and gradients
 * (some 230 MiB here). */
static void test_decoder_memory(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* the sanitizer's shadow memory takes more address space than any limit here */
#endif
    if (!exists("rat-run/best.rationale.safetensors"))
        run_ok("rat", RAT_RECIPE(RAT_LOSS), "rat-run", 3, 0, 0);
    xdistill_model *x;
    xdistill_error err;
    assert_int_equal(xdistill_load("rat-run/best.safetensors", 65536, &x, &err), XDISTILL_OK);
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    unsigned long pages;
    assert_int_equal(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    const size_t held = pages * (size_t)sysconf(_SC_PAGESIZE);
    long first_ok = -1;
    for (long mib = 0; mib <= 300; mib += 4) {
        fflush(NULL);
        const pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            const struct rlimit r = {(rlim_t)((long)held + mib * (1L << 20)), RLIM_INFINITY};
            if (setrlimit(RLIMIT_AS, &r) != 0) _exit(9);
            const xdistill_status s =
                xdistill_use_rationale(x, "rat-run/best.rationale.safetensors", &err);
            _exit((int)s);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!WIFEXITED(st))
            fail_msg("a limit of %ld MiB more: signal %d", mib, WTERMSIG(st));
        if (first_ok < 0 && WEXITSTATUS(st) == 0) first_ok = mib;
    }
    if (first_ok < 0 || first_ok > 100) fail_msg("the decoder needs %ld MiB", first_ok);
    xdistill_free(x);
}

/* Stopped and resumed runs end byte for byte like a straight one (the decoder's parameters and
 * moments are in the resume state). */
static void test_resume_exact(void **state)
{
    (void)state;
    const int stops[] = {1, 2};
    check_resume("ratres", RAT_RECIPE(RAT_LOSS), 4, stops, 2);
    assert_true(tu_same_file("ratres-full/last.rationale.safetensors",
                             "ratres-1/last.rationale.safetensors"));
}

static void test_errors(void **state)
{
    (void)state;
    train_result res;
    xd_err e;
    xd_err_clear(&e);
    ensure_data(); /* toy.xds: an image set without rationales */
    const char *no_rat =
        "data:\n  path: toy.xds\n"
        "model: \"" MLP_MODEL "\"\n"
        "train:\n  epochs: 1\n  batch: 16\n"
        "losses:\n  - {kind: ce}\n  - {kind: rationale, student_tap: feat}\n";
    assert_int_equal(run_text("norat", no_rat, "norat-run", 1, 0, 0, &res, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "toy.xds has no train/rationale");
    /* a key of another kind, a length limit without room for a word */
    const char *bad[][2] = {
        {RAT_RECIPE("  - {kind: rationale, student_tap: feat, temperature: 2}\n"),
         "r.yaml:12: losses.1.temperature: does not apply to kind 'rationale'"},
        {RAT_RECIPE("  - {kind: rationale, student_tap: feat, max_len: 1}\n"),
         "r.yaml:12: key 'losses.1.max_len': 1 is out of range"},
        {RAT_RECIPE("  - {kind: rationale, student_tap: nope}\n"), "'nope'"},
        {RAT_RECIPE("  - {kind: rationale}\n"), "student_tap"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        recipe r;
        xd_err_clear(&e);
        if (recipe_parse("r.yaml", bad[i][0], strlen(bad[i][0]), NULL, 0, 0, &r, &e) == XD_OK)
            fail_msg("accepted, expected '%s'", bad[i][1]);
        tu_assert_err(&e, XD_EARG, bad[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_from_used_texts),
        cmocka_unit_test(test_run_and_predict),
        cmocka_unit_test(test_decoder_memory),
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
