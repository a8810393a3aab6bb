/* Suite `exits`: what an early exit saves at inference. For a model with several heads (early
 * exits), the forward time per image (eval mode) of each exit run with only the layers it reads
 * (nn_model_forward_some), next to the whole model's forward (every layer and head) in the same
 * run, at batch 1 and 64 and each thread count, with the CPU time per image beside it.
 *
 * The model is `--model` (a checkpoint, or a file holding a model description) or, by default,
 * recipes/byot/cnn-exits.model: the Fashion-MNIST CNN with an exit after each block. Its weights
 * do not change the time (a description gets seeded random ones). Inputs are the images of the
 * `train` suite's pool (bench/train.h), pixels / 255. */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/train.h"
#include "core/mem.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/exits.h"
#include "io/file.h"

#define EXITS_DEFAULT_MODEL "recipes/byot/cnn-exits.model"
/* Largest model description file read. */
#define EXITS_MAX_DESC ((size_t)1 << 20)

enum { MAX_BATCH = 64, MIN_REPS = 20 };

typedef struct {
    nn_model *m;
    const bench_images *d;
    const uint8_t *need; /* NULL: the whole model */
    int B, next;
} exits_ctx;

static void exits_forward(void *ctx)
{
    exits_ctx *c = ctx;
    if (c->next + c->B > c->d->n) c->next = 0;
    nn_model_forward_some(c->m, c->d->x + (size_t)c->next * BENCH_PIXELS, c->B, NULL, c->need);
    c->next += c->B;
}

/* The model: a checkpoint (.safetensors) or a description file. */
static xd_status open_model(const char *path, nn_model *m, xd_err *e)
{
    size_t len = strlen(path);
    if (len > 12 && strcmp(path + len - 12, ".safetensors") == 0)
        return ckpt_load(path, MAX_BATCH, m, e);
    void *text;
    size_t n;
    xd_status s = io_read_all(path, EXITS_MAX_DESC, &text, &n, e);
    if (s != XD_OK) return s;
    char *desc = xd_xmalloc(n + 1);
    memcpy(desc, text, n);
    desc[n] = '\0';
    free(text);
    s = nn_model_build(m, desc, MAX_BATCH, 1, e);
    free(desc);
    return s == XD_OK ? XD_OK : xd_err_prefix(e, "%s", path);
}

int bench_exits(const bench_opts *o)
{
    FILE *f = o->out;
    const char *path = o->model ? o->model : EXITS_DEFAULT_MODEL;
    xd_err e;
    nn_model m;
    if (open_model(path, &m, &e) != XD_OK) {
        fprintf(stderr, "xdistill bench: %s\n", e.msg);
        return 1;
    }
    if (m.tokens || m.h * m.w * m.c != BENCH_PIXELS) {
        fprintf(stderr, "xdistill bench: %s: the exits suite reads 28x28x1 images; the model's "
                        "input is %dx%dx%d\n", path, m.h, m.w, m.c);
        nn_model_free(&m);
        return 1;
    }
    bench_images d;
    if (bench_images_open(&d)) {
        nn_model_free(&m);
        return 1;
    }
    int *heads = xd_xmalloc(sizeof(int) * (size_t)m.n_nodes);
    const int n_heads = nn_model_heads(&m, heads);
    uint8_t *need = xd_xcalloc((size_t)n_heads * (size_t)m.n_nodes, 1);
    for (int h = 0; h < n_heads; h++) nn_model_needs(&m, heads[h], need + (size_t)h * m.n_nodes);
    if (!o->json) {
        fprintf(f, "\nearly exits of %s: forward per image (eval mode), median [min-max] of "
                   "repeated batches (CPU time: all threads; at one thread, the cost without the waits for a "
                   "free core); each exit runs only the layers it reads\n", path);
        bench_images_note(&d, f);
        fprintf(f, "%-12s %3s %5s %26s %8s %12s\n", "exit", "thr", "batch", "us/image", "x whole",
                "cpu us/image");
    } else if (!d.real) {
        bench_images_note(&d, stderr);
    }
    static const int batches[] = {1, MAX_BATCH};
    for (int ti = 0; ti < o->n_threads; ti++) {
        const int th = o->threads[ti];
        xd_threads_set(th);
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            const int B = batches[bi];
            double full = 0.0;
            /* case -1: the whole model (every layer, every head), then each exit */
            for (int h = -1; h < n_heads; h++) {
                exits_ctx c = {.m = &m, .d = &d, .B = B,
                               .need = h < 0 ? NULL : need + (size_t)h * m.n_nodes};
                bench_time t = bench_run(exits_forward, &c, o->min_seconds, MIN_REPS, 1000000);
                const double us = 1e6 * t.median / B;
                const double cpu = 1e6 * t.cpu_median / B;
                if (h < 0) full = us;
                const char *name = h < 0 ? "(whole)" : nn_model_node(&m, heads[h])->name;
                if (o->json) {
                    fprintf(f, "{\"suite\":\"exits\",\"model\":\"%s\",\"exit\":\"%s\","
                               "\"threads\":%d,\"batch\":%d,\"us_per_image\":%.3f,"
                               "\"min_us\":%.3f,\"max_us\":%.3f,\"cpu_us_per_image\":%.3f,"
                               "\"reps\":%d,\"over_whole\":%.4f}\n",
                            path, h < 0 ? "" : name, th, B, us, 1e6 * t.min / B,
                            1e6 * t.max / B, cpu, t.reps, us / full);
                } else {
                    char r[64];
                    snprintf(r, sizeof r, "%.1f [%.1f-%.1f]", us, 1e6 * t.min / B, 1e6 * t.max / B);
                    fprintf(f, "%-12s %3d %5d %26s %7.2fx %12.1f\n", name, th, B, r, us / full,
                            cpu);
                }
            }
        }
    }
    free(need);
    free(heads);
    bench_images_free(&d);
    nn_model_free(&m);
    return 0;
}
