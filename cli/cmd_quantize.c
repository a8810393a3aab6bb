/* `xdistill quantize`: a float checkpoint as an int8 one (post-training quantisation), or a
 * checkpoint trained under `quantize:` (its ranges learned) as the int8 model it was trained to
 * be. See nn/quant.h for the scheme and distill/checkpoint.h for the file. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/feed.h"
#include "io/dataset.h"
#include "io/file.h"
#include "nn/quant.h"

#define CALIB_BATCH 64

typedef enum { QO_OUT, QO_CALIB, QO_SPLIT, QO_VIEW, QO_BATCHES, QO_COUNT } quantize_opt;
static const cli_option quantize_options[] = {
    [QO_OUT] = {"--out", 1},   [QO_CALIB] = {"--calib", 1},     [QO_SPLIT] = {"--split", 1},
    [QO_VIEW] = {"--view", 1}, [QO_BATCHES] = {"--batches", 1},
};
static_assert(sizeof quantize_options / sizeof quantize_options[0] == QO_COUNT, "name every option");

static void quantize_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill quantize MODEL.safetensors --out Q.safetensors [--calib DATA.xds]\n"
            "                         [--split train] [--batches 8] [--view image]\n\n"
            "Writes the checkpoint as an int8 one, which eval, predict and bench run on integers\n"
            "(int8 weights per output channel and activations per tensor, int32 sums, AVX-512\n"
            "VNNI where the CPU has it). A float checkpoint is quantised after training: every\n"
            "activation a linear or conv2d layer reads gets the largest |value| it takes on\n"
            "--batches batches of %d examples spread over the split of --calib as its range\n"
            "(calibration; no training). A checkpoint trained with quantize: in its recipe\n"
            "keeps the ranges it learned and needs no --calib. Prints the file's size.\n\n"
            "options:\n"
            "  --out FILE     the int8 checkpoint to write\n"
            "  --calib DATA   the data set to calibrate on (float checkpoints)\n"
            "  --split NAME   its split (default train)\n"
            "  --batches N    calibration batches (default 8)\n"
            "  --view VIEW    what the model reads (default: image, text.en for a text model)\n",
            CALIB_BATCH);
}

/* The ranges of m's fakequant nodes from `batches` batches spread over split of data. */
static xd_status calibrate(nn_model *m, const char *model, const char *data, const char *split,
                           const char *view, int batches, size_t *n_seen, xd_err *e)
{
    char *aug = NULL, *text = NULL;
    io_dataset *ds = NULL;
    feed f;
    memset(&f, 0, sizeof f);
    void *input = NULL;
    uint32_t *idx = NULL;
    xd_status s;
    if ((s = ckpt_preprocessing(model, &aug, &text, e)) == XD_OK &&
        (s = io_dataset_open_verified(data, &ds, e)) == XD_OK &&
        (strcmp(view, "image") != 0 ||
         (s = ckpt_check_images(model, m, ds, split, aug, e)) == XD_OK) &&
        (s = feed_open(&f, ds, split, view, m, aug ? aug : "", text ? text : "", e)) == XD_OK) {
        size_t want = (size_t)batches * CALIB_BATCH;
        *n_seen = want < f.n ? want : f.n;
        if (!*n_seen) s = xd_fail(e, XD_EARG, "%s: split '%s' has no examples to calibrate on", data, split);
        input = xd_xmalloc_aligned(feed_example_bytes(&f) * CALIB_BATCH);
        idx = xd_xmalloc(sizeof *idx * CALIB_BATCH);
        const nn_run run = {.calibrate = 1};
        for (size_t b = 0; b < *n_seen && s == XD_OK; b += CALIB_BATCH) {
            const int n = (int)(*n_seen - b < CALIB_BATCH ? *n_seen - b : CALIB_BATCH);
            for (int j = 0; j < n; j++) idx[j] = (uint32_t)((b + (size_t)j) * f.n / *n_seen);
            if ((s = feed_fill(&f, idx, n, 0, 0, 0, input, e)) == XD_OK) nn_model_forward(m, input, n, &run);
        }
    }
    free(idx);
    free(input);
    feed_close(&f);
    if (ds) io_dataset_close(ds);
    free(aug);
    free(text);
    return s;
}

static long file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

int cmd_quantize(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        quantize_usage(stdout);
        return 0;
    }
    const char *model = NULL, *val[QO_COUNT] = {[QO_SPLIT] = "train", [QO_BATCHES] = "8"};
    for (int i = 1; i < argc; i++) {
        const char *v = "";
        int rc = 0, o = cli_next_option("quantize", quantize_options, QO_COUNT, argc, argv, &i, &v, &rc);
        if (o == -1 && model) return cli_usage_error("quantize", "one checkpoint at a time");
        if (o == -1) model = argv[i];
        else if (o < 0) return rc;
        else val[o] = v;
    }
    long batches;
    if (!model || !val[QO_OUT]) return cli_usage_error("quantize", "give a checkpoint and --out Q.safetensors");
    if (cli_parse_long(val[QO_BATCHES], 1, 1 << 20, &batches))
        return cli_usage_error("quantize", "--batches takes a whole number >= 1, not '%s'", val[QO_BATCHES]);
    xd_err e;
    xd_err_clear(&e);
    nn_model src, q;
    memset(&q, 0, sizeof q);
    size_t n_seen = 0;
    const char *in[] = {model, val[QO_CALIB]};
    xd_status s = io_check_output(val[QO_OUT], in, 2, &e);
    if (s == XD_OK) s = ckpt_load(model, CALIB_BATCH, &src, &e);
    if (s != XD_OK) return cli_report("quantize", &e);
    const int trained = nn_quant_model_has(&src);
    const char *view = val[QO_VIEW] ? val[QO_VIEW] : src.tokens ? "text.en" : "image";
    if (src.qengine)
        s = xd_fail(&e, XD_EARG, "%s: an int8 checkpoint already", model);
    else if (trained && val[QO_CALIB])
        s = xd_fail(&e, XD_EARG, "%s: trained with quantize: its ranges are learned; drop --calib",
                    model);
    else if (!trained && !val[QO_CALIB])
        s = xd_fail(&e, XD_EARG, "%s: a float checkpoint: give --calib DATA to calibrate its "
                                 "activation ranges on", model);
    else if ((s = nn_quant_build(&q, &src, 0.01f, CALIB_BATCH, &e)) != XD_OK)
        xd_err_prefix(&e, "%s", model);
    else {
        if (!trained) s = calibrate(&q, model, val[QO_CALIB], val[QO_SPLIT], view, (int)batches, &n_seen, &e);
        if (s == XD_OK && (s = nn_qengine_attach(&q, &e)) != XD_OK) xd_err_prefix(&e, "%s", model);
        if (s == XD_OK) s = ckpt_save_int8_like(val[QO_OUT], &q, model, &e);
    }
    if (s == XD_OK) {
        int on = 0, layers = 0;
        for (int i = 0; i < q.n_nodes; i++) {
            const float *scale;
            on += nn_qengine_weights(&q, i, &scale) != NULL;
            layers += q.nodes[i].kind == NN_LINEAR || q.nodes[i].kind == NN_CONV2D;
        }
        const long qb = file_bytes(val[QO_OUT]), fb = file_bytes(model);
        printf("%s: int8, %ld bytes (%s: %ld bytes, %.1fx); %d of %d layers on integers (%s); ",
               val[QO_OUT], qb, model, fb, qb > 0 ? (double)fb / (double)qb : 0.0, on, layers,
               nn_qisa_name(nn_qgemm_isa()));
        if (trained) printf("ranges as trained\n");
        else printf("ranges calibrated on %zu examples of %s (%s)\n", n_seen, val[QO_CALIB], val[QO_SPLIT]);
    }
    nn_model_free(&q);
    nn_model_free(&src);
    return s == XD_OK ? 0 : cli_report("quantize", &e);
}
