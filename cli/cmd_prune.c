/* `xdistill prune`: a checkpoint with fewer convolution channels, those of smallest filter L1
 * norm, written as a smaller model (structured pruning, see nn/prune.h). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "distill/checkpoint.h"
#include "io/file.h"
#include "nn/prune.h"

typedef enum { PO_OUT, PO_CHANNELS, PO_COUNT } prune_opt;
static const cli_option prune_options[] = {[PO_OUT] = {"--out", 1}, [PO_CHANNELS] = {"--channels", 1}};
static_assert(sizeof prune_options / sizeof prune_options[0] == PO_COUNT, "name every option");

static void prune_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill prune MODEL.safetensors --channels F --out SMALL.safetensors\n\n"
            "Writes the checkpoint without the share F (0 < F < 1) of the output channels of\n"
            "each conv2d layer, those whose filters have the smallest L1 norm (at least one\n"
            "kept), as a smaller model: the layer that reads them loses the matching input\n"
            "weights, a batchnorm between them those channels. A conv2d whose output also\n"
            "reaches a head, an add, a layernorm or a second reader is left whole. The result\n"
            "answers as the original does with those input weights set to zero. Prints each\n"
            "layer's channels before and after.\n\n"
            "options:\n"
            "  --channels F   the share of channels to remove\n"
            "  --out FILE     the checkpoint to write\n");
}

int cmd_prune(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        prune_usage(stdout);
        return 0;
    }
    const char *model = NULL, *val[PO_COUNT] = {0};
    for (int i = 1; i < argc; i++) {
        const char *v = "";
        int rc = 0, o = cli_next_option("prune", prune_options, PO_COUNT, argc, argv, &i, &v, &rc);
        if (o == -1 && model) return cli_usage_error("prune", "one checkpoint at a time");
        if (o == -1) model = argv[i];
        else if (o < 0) return rc;
        else val[o] = v;
    }
    double share;
    if (!model || !val[PO_OUT] || !val[PO_CHANNELS])
        return cli_usage_error("prune", "give a checkpoint, --channels F and --out SMALL.safetensors");
    if (cli_parse_double(val[PO_CHANNELS], 0.0, 1.0, &share) || !(share > 0.0 && share < 1.0))
        return cli_usage_error("prune", "--channels takes a share in (0, 1), not '%s'", val[PO_CHANNELS]);
    xd_err e;
    xd_err_clear(&e);
    nn_model src, out;
    memset(&out, 0, sizeof out);
    int layers = 0;
    const char *in[] = {model};
    xd_status s = io_check_output(val[PO_OUT], in, 1, &e);
    if (s == XD_OK) s = ckpt_load(model, 1, &src, &e);
    if (s != XD_OK) return cli_report("prune", &e);
    if (src.qengine)
        s = xd_fail(&e, XD_EARG, "%s: an int8 checkpoint; prune its float checkpoint, then quantize",
                    model);
    else if ((s = nn_prune_channels(&out, &src, (float)share, 1, &layers, &e)) != XD_OK)
        xd_err_prefix(&e, "%s", model);
    else if (!layers)
        s = xd_fail(&e, XD_EARG, "%s: no conv2d layer whose channels can go (see --help)", model);
    else
        s = ckpt_save_like(val[PO_OUT], &out, model, &e);
    if (s == XD_OK) {
        for (int i = 0; i < src.n_nodes; i++)
            if (src.nodes[i].units != out.nodes[i].units)
                printf("%s: %d -> %d channels\n", src.nodes[i].name, src.nodes[i].units,
                       out.nodes[i].units);
        printf("%s: %zu parameters (%s: %zu)\n", val[PO_OUT], out.n_param, model, src.n_param);
    }
    nn_model_free(&out);
    nn_model_free(&src);
    return s == XD_OK ? 0 : cli_report("prune", &e);
}
