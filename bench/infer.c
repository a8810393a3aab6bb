/* Suite `infer`: images/s of the inference API (include/xdistill/infer.h, what `predict` runs)
 * against ONNX Runtime on the same model exported by `xdistill export`, for the float students of
 * the recipes: the Fashion MLP student, the Fashion teacher CNN and the emoji image CNN; then the
 * same three in int8 (as `xdistill quantize` makes them, bench_make_int8), exported with
 * QuantizeLinear / DequantizeLinear around each integer layer, which ONNX Runtime runs with its
 * own integer kernels.
 *
 * A model is the recipe's trained checkpoint (runs/NAME/seed-N/best.safetensors) when there is
 * one, else the recipe's architecture with random weights (the output says which): speed does not
 * depend on the values. Both sides are timed alike: the input already in memory (our engine's
 * batch filled with 8-bit pixels once, ONNX Runtime's float tensor made once; no file decoding),
 * one warm-up call, then calls until the time is up, median per call. Ours is a call of
 * xdistill_predict (the preprocessing's normalisation, the forward pass, the softmax); ONNX
 * Runtime's a session.run of the "probabilities" output through onnxruntime-node (its per-call
 * cost in Node.js included), intraOpNumThreads as our OpenMP threads, graph optimisation "all".
 * It works in the source folder (recipes/, bench/ort_infer.js, runs/): the working folder when it
 * holds the recipes, else the nearest folder above the program's own that does. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/recipe.h"
#include "export/onnx.h"
#include "include/xdistill/xdistill.h"
#include "io/file.h"
#include "modalities/sets/sets.h"
#include "nn/model.h"

#define ORT_SCRIPT "bench/ort_infer.js"

typedef struct {
    const char *key, *what, *recipe;
    int int8; /* the model's int8 form (bench_make_int8), exported with QDQ operators */
} infer_case;

static const infer_case cases[] = {
    {"fashion_mlp", "Fashion MLP student 784-128-10", "recipes/fashion/student.yaml", 0},
    {"fashion_cnn", "Fashion teacher CNN", "recipes/fashion/teacher.yaml", 0},
    {"emoji_cnn", "emoji image CNN", "recipes/emoji/image-full.yaml", 0},
    {"fashion_mlp_int8", "the Fashion MLP student in int8", "recipes/fashion/student.yaml", 1},
    {"fashion_cnn_int8", "the Fashion teacher CNN in int8", "recipes/fashion/teacher.yaml", 1},
    {"emoji_cnn_int8", "the emoji image CNN in int8", "recipes/emoji/image-full.yaml", 1},
};

static const int batches[] = {1, 64};
enum { N_BATCHES = sizeof batches / sizeof batches[0], MAX_BATCH = 64, MIN_REPS = 10,
       MAX_REPS = 100000 };

typedef struct {
    xdistill_model *m;
    xdistill_batch *b;
    float *probs;
    int count;
    int failed;
} predict_ctx;

static void run_predict(void *p)
{
    predict_ctx *c = p;
    if (xdistill_predict(c->m, c->b, c->count, c->probs, NULL) != XDISTILL_OK) c->failed = 1;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

xd_status bench_infer_model(const char *recipe_path, const char *key, const char *tmp, char **ckpt,
                            int *trained, int *h, int *w, int *c, xd_err *e)
{
    void *yaml;
    size_t n;
    xd_status s = io_read_all(recipe_path, 1 << 20, &yaml, &n, e);
    if (s != XD_OK) {
        xd_err_prefix(e, "bench infer reads the recipes from the source folder");
        return s;
    }
    recipe r;
    s = recipe_parse(recipe_path, yaml, n, NULL, 0, RECIPE_NO_FILE_CHECKS, &r, e);
    if (s != XD_OK) {
        free(yaml);
        return s;
    }
    char run[512];
    snprintf(run, sizeof run, "runs/%s/seed-%ld/best.safetensors", r.name, r.seed);
    nn_model m;
    *trained = exists(run);
    if (*trained) {
        *ckpt = xd_xstrdup(run);
        s = nn_model_plan(&m, r.models[0].model, 1, e);
    } else {
        char file[64];
        snprintf(file, sizeof file, "%s.safetensors", key);
        *ckpt = io_path_join(tmp, file);
        const io_kv meta[] = {{"xdistill.recipe", yaml}};
        s = nn_model_build(&m, r.models[0].model, 1, (uint64_t)r.seed, e);
        if (s == XD_OK) s = ckpt_save(*ckpt, &m, meta, 1, e);
    }
    if (s == XD_OK) {
        *h = m.h;
        *w = m.w;
        *c = m.c;
        nn_model_free(&m);
    }
    recipe_free(&r);
    free(yaml);
    return s;
}

/* ONNX Runtime's time per call of onnx on input (dims "B H W C") at th threads; 0 after a message
 * on failure. */
static bench_time ort_time(const bench_opts *o, const char *modules, const char *onnx,
                           const char *input, const char *dims, int th, int *ok)
{
    bench_time t = {0};
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "NODE_PATH='%s' node " ORT_SCRIPT " '%s' '%s' %d %g %d %d %s", modules,
             onnx, input, th, o->min_seconds, o->quick ? 1 : MIN_REPS, MAX_REPS, dims);
    FILE *p = popen(cmd, "r");
    char line[512] = "";
    if (p && !fgets(line, sizeof line, p)) line[0] = '\0';
    const int rc = p ? pclose(p) : -1;
    json_t *j = rc == 0 ? json_loads(line, 0, NULL) : NULL;
    *ok = j && json_unpack(j, "{s:F,s:F,s:F,s:F,s:i}", "median", &t.median, "min", &t.min, "max",
                           &t.max, "cpu_median", &t.cpu_median, "reps", &t.reps) == 0;
    if (!*ok) fprintf(stderr, "xdistill bench: ONNX Runtime failed on %s (%s)\n", onnx, cmd);
    json_decref(j);
    return t;
}

/* One model: our engine and ONNX Runtime at every batch size and thread count. */
static int bench_case(const bench_opts *o, const infer_case *k, const char *tmp,
                      const char *modules)
{
    xd_err e;
    xd_err_clear(&e);
    char *ckpt = NULL, file[64];
    int trained, h, w, c;
    xd_status s = bench_infer_model(k->recipe, k->key, tmp, &ckpt, &trained, &h, &w, &c, &e);
    char *qfile = NULL; /* the int8 form, which is what runs then */
    if (s == XD_OK && k->int8) {
        snprintf(file, sizeof file, "%s-q.safetensors", k->key);
        qfile = io_path_join(tmp, file);
        s = bench_make_int8(ckpt, qfile, &e);
    }
    const char *model = qfile ? qfile : ckpt;
    snprintf(file, sizeof file, "%s.onnx", k->key);
    char *onnx = io_path_join(tmp, file);
    if (s == XD_OK) s = ex_onnx_write(model, NULL, onnx, &e);
    xdistill_error err;
    predict_ctx pc = {0};
    if (s == XD_OK && xdistill_load(model, MAX_BATCH, &pc.m, &err) != XDISTILL_OK)
        s = xd_fail(&e, XD_EFORMAT, "%s", err.message);
    if (s != XD_OK) {
        fprintf(stderr, "xdistill bench: %s\n", e.msg);
        free(ckpt);
        free(qfile);
        free(onnx);
        return 1;
    }
    pc.b = xdistill_batch_new(pc.m);
    pc.probs = xd_xmalloc(sizeof(float) * MAX_BATCH * xdistill_outputs(pc.m));
    /* the same random image in every slot kind: 8-bit pixels for us, floats for ONNX Runtime */
    const size_t px = (size_t)h * (size_t)w * (size_t)c;
    uint8_t *pixels = xd_xmalloc(px);
    float *x = xd_xmalloc(sizeof(float) * px * MAX_BATCH);
    xd_rng rng = xd_rng_make(1, 0, XD_RNG_USER);
    for (int i = 0; i < MAX_BATCH; i++) {
        for (size_t j = 0; j < px; j++) pixels[j] = (uint8_t)xd_rng_below(&rng, 256);
        for (size_t j = 0; j < px; j++) x[(size_t)i * px + j] = (float)pixels[j] / 255.0f;
        xdistill_batch_set_image(pc.b, i, pixels, h, w, c, k->key, NULL);
    }
    const char *weights = trained ? ckpt : "random weights (no trained run)";
    if (o->json)
        fprintf(o->out, "{\"suite\":\"infer\",\"model\":\"%s\",\"what\":\"%s\",\"weights\":\"%s\"}\n",
                k->key, k->what, weights);
    else
        fprintf(o->out, "%s (%s): %s\n", k->what, k->key, weights);
    int rc = 0;
    for (int bi = 0; bi < N_BATCHES && !rc; bi++) {
        const int B = batches[bi];
        char in_file[64], dims[64];
        snprintf(in_file, sizeof in_file, "%s-%d.f32", k->key, B);
        snprintf(dims, sizeof dims, "%d %d %d %d", B, h, w, c);
        char *input = io_path_join(tmp, in_file);
        FILE *f = fopen(input, "wb");
        if (!f || fwrite(x, sizeof(float) * px, (size_t)B, f) != (size_t)B) rc = 1;
        if (f && fclose(f) != 0) rc = 1;
        if (rc) fprintf(stderr, "xdistill bench: %s: cannot write\n", input);
        pc.count = B;
        for (int ti = 0; ti < o->n_threads && !rc; ti++) {
            const int th = o->threads[ti];
            xd_threads_set(th);
            bench_time ours = bench_run(run_predict, &pc, o->min_seconds, o->quick ? 1 : MIN_REPS,
                                        MAX_REPS);
            int ok = 0;
            bench_time ort = modules ? ort_time(o, modules, onnx, input, dims, th, &ok)
                                     : (bench_time){0};
            if (pc.failed) {
                fprintf(stderr, "xdistill bench: xdistill_predict failed on %s\n", model);
                rc = 1;
                break;
            }
            const double r_ours = B / ours.median, r_ort = ok ? B / ort.median : 0.0;
            if (o->json)
                fprintf(o->out,
                        "{\"suite\":\"infer\",\"model\":\"%s\",\"batch\":%d,\"threads\":%d,"
                        "\"ours_images_per_s\":%.1f,\"ours_median_s\":%.7f,\"ours_min_s\":%.7f,"
                        "\"ours_max_s\":%.7f,\"ours_reps\":%d,\"ort_images_per_s\":%.1f,"
                        "\"ort_median_s\":%.7f,\"ort_min_s\":%.7f,\"ort_max_s\":%.7f,"
                        "\"ort_reps\":%d,\"ours_over_ort\":%.3f,\"ours_cpu_s\":%.7f,"
                        "\"ort_cpu_s\":%.7f,\"cpu_ort_over_ours\":%.3f}\n",
                        k->key, B, th, r_ours, ours.median, ours.min, ours.max, ours.reps, r_ort,
                        ort.median, ort.min, ort.max, ort.reps, ok ? r_ours / r_ort : 0.0,
                        ours.cpu_median, ort.cpu_median,
                        ok ? ort.cpu_median / ours.cpu_median : 0.0);
            else if (ok)
                fprintf(o->out, "  %-16s %5d %3d %12.0f %12.0f %7.2fx %7.2fx\n", k->key, B, th,
                        r_ours, r_ort, r_ours / r_ort, ort.cpu_median / ours.cpu_median);
            else
                fprintf(o->out, "  %-16s %5d %3d %12.0f %12s %8s %8s\n", k->key, B, th, r_ours,
                        "-", "-", "-");
        }
        free(input);
    }
    free(pixels);
    free(x);
    free(pc.probs);
    xdistill_batch_free(pc.b);
    xdistill_free(pc.m);
    free(ckpt);
    free(qfile);
    free(onnx);
    return rc;
}

/* Moves into the source folder (see the top); 0, or -1 when none is found. */
static int enter_source_folder(void)
{
    const char *mark = cases[0].recipe;
    if (exists(mark)) return 0;
    char dir[4096];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) return -1;
    dir[n] = '\0';
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) return -1;
        *slash = '\0';
        if (chdir(dir) == 0 && exists(mark)) return 0;
    }
    return -1;
}

/* The suite's rows (the float students against ONNX Runtime unless int8_only, then the int8
 * ones) from the source folder, with a temporary folder for the files. */
static int infer_rows(const bench_opts *o, int int8_only)
{
    const int here = open(".", O_RDONLY | O_DIRECTORY);
    if (here < 0 || enter_source_folder() != 0) {
        fprintf(stderr, "xdistill bench: infer needs the source folder (its recipes/): run it there\n");
        if (here >= 0) close(here);
        return 1;
    }
    const int all = xd_threads_get();
    char *modules = io_path_join(sets_cache_dir(NULL), "onnxruntime/node_modules");
    char *pkg = io_path_join(modules, "onnxruntime-node");
    const int have_ort = !int8_only && exists(pkg) && exists(ORT_SCRIPT) &&
                         system("node --version > /dev/null 2>&1") == 0;
    free(pkg);
    if (!have_ort && !int8_only)
        fprintf(stderr, "xdistill bench: ONNX Runtime is not run: it needs node, %s/onnxruntime-node "
                        "(scripts/setup.sh installs it) and %s (run from the source folder)\n",
                modules, ORT_SCRIPT);
    char tmp[256];
    if (bench_temp_dir("infer", tmp, sizeof tmp)) {
        free(modules);
        close(here);
        return 1;
    }
    const int slot = io_temp_add(tmp, 1);
    if (!o->json && !int8_only)
        fprintf(o->out, "\ninference: images/s, median of repeated calls, input in memory; ours = "
                        "xdistill_predict, ORT = ONNX Runtime (onnxruntime-node) on the exported "
                        "model; cpu = ORT's CPU seconds per call over ours\n"
                        "  %-16s %5s %3s %12s %12s %8s %8s\n",
                "model", "batch", "thr", "ours", "ORT", "ours/ORT", "cpu");
    int rc = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] && !rc && !int8_only; k++)
        rc = bench_case(o, &cases[k], tmp, have_ort ? modules : NULL);
    if (!rc) rc = bench_infer_int8(o, tmp);
    io_remove_tree(tmp);
    io_temp_drop(slot);
    free(modules);
    xd_threads_set(all);
    if (fchdir(here) != 0) rc = 1;
    close(here);
    return rc;
}

int bench_infer(const bench_opts *o) { return infer_rows(o, 0); }

int bench_int8(const bench_opts *o) { return infer_rows(o, 1); }
