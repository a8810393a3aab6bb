/* The infer suite's rows of compressed students: for the students (the Fashion MLP student, the
 * small CNN of the zoo benchmark and the emoji image CNN), images/s of xdistill_predict on the float checkpoint,
 * on its int8 form (the integer kernel this CPU has, and the portable kernel forced) and on its
 * channel-pruned form (half of each conv2d's filters removed, as `xdistill prune --channels 0.5`
 * does; a model without a conv2d has none) at one thread, batch 1 and 64, and the bytes of the
 * files. A magnitude-pruned model is the float one with zeros in it, and runs at its speed. The
 * int8 form is made as `xdistill quantize` makes it, calibrated on random inputs (speed does not
 * depend on the values); timing as the rest of the suite (input in memory, median of repeated
 * calls). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "include/xdistill/xdistill.h"
#include "io/file.h"
#include "nn/prune.h"
#include "nn/quant.h"

static const struct {
    const char *key, *what, *recipe;
} qcases[] = {
    {"fashion_mlp", "Fashion MLP student 784-128-10", "recipes/fashion/student.yaml"},
    {"zoo_cnn", "zoo benchmark's small student CNN", "recipes/zoo/labels.yaml"},
    {"emoji_cnn", "emoji image student CNN", "recipes/emoji/image-full.yaml"},
};

static const int qbatches[] = {1, 64};
enum { QMAX_BATCH = 64, QMIN_REPS = 10, QMAX_REPS = 100000 };

typedef struct {
    xdistill_model *m;
    xdistill_batch *b;
    float *probs;
    int count, failed;
} qctx;

static void run_q(void *p)
{
    qctx *c = p;
    if (xdistill_predict(c->m, c->b, c->count, c->probs, NULL) != XDISTILL_OK) c->failed = 1;
}

/* xdistill_predict's time per call on ckpt for batches of B random images; -1 on failure. */
static double predict_seconds(const bench_opts *o, const char *ckpt, int B, int h, int w, int c)
{
    qctx q = {0};
    xdistill_error err;
    if (xdistill_load(ckpt, QMAX_BATCH, &q.m, &err) != XDISTILL_OK) {
        fprintf(stderr, "xdistill bench: %s\n", err.message);
        return -1.0;
    }
    q.b = xdistill_batch_new(q.m);
    q.probs = xd_xmalloc(sizeof(float) * QMAX_BATCH * xdistill_outputs(q.m));
    q.count = B;
    const size_t px = (size_t)h * w * c;
    uint8_t *pixels = xd_xmalloc(px);
    xd_rng rng = xd_rng_make(1, 0, XD_RNG_USER);
    for (int i = 0; i < B; i++) {
        for (size_t j = 0; j < px; j++) pixels[j] = (uint8_t)xd_rng_below(&rng, 256);
        xdistill_batch_set_image(q.b, i, pixels, h, w, c, "bench", NULL);
    }
    bench_time t = bench_run(run_q, &q, o->min_seconds, o->quick ? 1 : QMIN_REPS, QMAX_REPS);
    free(pixels);
    free(q.probs);
    xdistill_batch_free(q.b);
    xdistill_free(q.m);
    return q.failed ? -1.0 : t.median;
}

xd_status bench_make_int8(const char *ckpt, const char *out, xd_err *e)
{
    nn_model src, q;
    memset(&q, 0, sizeof q);
    xd_status s = ckpt_load(ckpt, QMAX_BATCH, &src, e);
    if (s != XD_OK) return s;
    if ((s = nn_quant_build(&q, &src, 0.01f, QMAX_BATCH, e)) == XD_OK) {
        const size_t n = (size_t)QMAX_BATCH * q.h * q.w * q.c;
        float *x = xd_xmalloc(sizeof(float) * n);
        xd_rng rng = xd_rng_make(2, 0, XD_RNG_USER);
        for (size_t i = 0; i < n; i++) x[i] = 3.0f * xd_rng_uniform(&rng) - 1.0f;
        const nn_run cal = {.calibrate = 1};
        nn_model_forward(&q, x, QMAX_BATCH, &cal);
        free(x);
        if ((s = nn_qengine_attach(&q, e)) == XD_OK) s = ckpt_save_int8_like(out, &q, ckpt, e);
    }
    nn_model_free(&q);
    nn_model_free(&src);
    return s;
}

/* The channel-pruned form (half the filters) of ckpt, written to out; *none when ckpt has no
 * conv2d whose channels can go (nothing written). */
static xd_status make_pruned(const char *ckpt, const char *out, int *none, xd_err *e)
{
    nn_model src, small;
    memset(&small, 0, sizeof small);
    xd_status s = ckpt_load(ckpt, 1, &src, e);
    if (s != XD_OK) return s;
    int layers = 0;
    if ((s = nn_prune_channels(&small, &src, 0.5f, 1, &layers, e)) == XD_OK && layers > 0)
        s = ckpt_save_like(out, &small, ckpt, e);
    *none = layers == 0;
    nn_model_free(&small);
    nn_model_free(&src);
    return s;
}

static long long bytes_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int bench_infer_int8(const bench_opts *o, const char *tmp)
{
    const nn_qisa best = nn_qgemm_best();
    xd_threads_set(1);
    if (!o->json)
        fprintf(o->out, "\ncompressed students: images/s at 1 thread, xdistill_predict on the "
                        "float checkpoint, its int8 form (xdistill quantize; kernel %s, and the "
                        "portable one forced) and its channel-pruned form (half the conv2d "
                        "filters); file sizes in bytes\n"
                        "  %-12s %5s %10s %10s %10s %8s %10s %8s %9s %8s %8s\n",
                nn_qisa_name(best), "model", "batch", "float", "int8", "portable", "int8/fl",
                "pruned", "prn/fl", "float B", "int8 B", "prn B");
    int rc = 0;
    for (size_t k = 0; k < sizeof qcases / sizeof qcases[0] && !rc; k++) {
        xd_err e;
        xd_err_clear(&e);
        char *ckpt = NULL, file[64];
        int trained, h, w, c;
        snprintf(file, sizeof file, "%s-int8.safetensors", qcases[k].key);
        char *q8 = io_path_join(tmp, file);
        snprintf(file, sizeof file, "%s-ch50.safetensors", qcases[k].key);
        char *ch = io_path_join(tmp, file);
        int no_conv = 1;
        xd_status s = bench_infer_model(qcases[k].recipe, qcases[k].key, tmp, &ckpt, &trained, &h,
                                        &w, &c, &e);
        if (s == XD_OK) s = bench_make_int8(ckpt, q8, &e);
        if (s == XD_OK) s = make_pruned(ckpt, ch, &no_conv, &e);
        if (s != XD_OK) {
            fprintf(stderr, "xdistill bench: %s\n", e.msg);
            rc = 1;
        }
        for (size_t bi = 0; bi < sizeof qbatches / sizeof qbatches[0] && !rc; bi++) {
            const int B = qbatches[bi];
            const double tf = predict_seconds(o, ckpt, B, h, w, c);
            const double tq = predict_seconds(o, q8, B, h, w, c);
            nn_qgemm_use(NN_QISA_PORTABLE);
            const double tp = predict_seconds(o, q8, B, h, w, c);
            nn_qgemm_use(NN_QISA_COUNT);
            const double tc = no_conv ? 0.0 : predict_seconds(o, ch, B, h, w, c);
            if (tf <= 0 || tq <= 0 || tp <= 0 || tc < 0) {
                rc = 1;
                break;
            }
            const long long fb = bytes_of(ckpt), qb = bytes_of(q8), cb = no_conv ? 0 : bytes_of(ch);
            char pruned[48] = "null", ratio[16] = "-", prn[16] = "-", cbs[24] = "-", cbj[24] = "null";
            if (!no_conv) {
                snprintf(pruned, sizeof pruned, "%.1f", B / tc);
                snprintf(ratio, sizeof ratio, "%.2fx", tf / tc);
                snprintf(prn, sizeof prn, "%.0f", B / tc);
                snprintf(cbs, sizeof cbs, "%lld", cb);
                snprintf(cbj, sizeof cbj, "%lld", cb);
            }
            if (o->json)
                fprintf(o->out,
                        "{\"suite\":\"infer\",\"int8\":true,\"model\":\"%s\",\"weights\":\"%s\","
                        "\"batch\":%d,\"threads\":1,\"float_images_per_s\":%.1f,"
                        "\"int8_images_per_s\":%.1f,\"int8_portable_images_per_s\":%.1f,"
                        "\"pruned_images_per_s\":%s,\"kernel\":\"%s\",\"float_bytes\":%lld,"
                        "\"int8_bytes\":%lld,\"pruned_bytes\":%s}\n",
                        qcases[k].key, trained ? ckpt : "random", B, B / tf, B / tq, B / tp,
                        pruned, nn_qisa_name(best), fb, qb, cbj);
            else
                fprintf(o->out, "  %-12s %5d %10.0f %10.0f %10.0f %7.2fx %10s %8s %9lld %8lld %8s%s\n",
                        qcases[k].key, B, B / tf, B / tq, B / tp, tf / tq, prn, ratio, fb, qb, cbs,
                        trained || bi ? "" : "  (random weights)");
        }
        free(ckpt);
        free(q8);
        free(ch);
    }
    return rc;
}
