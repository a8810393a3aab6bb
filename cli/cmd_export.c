/* `xdistill export`: a checkpoint in another format (ONNX). */
#include <assert.h>
#include <stdio.h>

#include "cli/cli.h"
#include "export/onnx.h"
#include "io/file.h"

typedef enum { XO_ONNX, XO_EXIT, XO_COUNT } export_opt;
static const cli_option export_options[] = {[XO_ONNX] = {"--onnx", 1}, [XO_EXIT] = {"--exit", 1}};
static_assert(sizeof export_options / sizeof export_options[0] == XO_COUNT, "name every option");

static void export_usage(FILE *f)
{
    fprintf(f,
            "usage: xdistill export MODEL.safetensors --onnx OUT.onnx [--exit HEAD]\n\n"
            "Writes the checkpoint as an ONNX model (opset 17). Input \"input\": float32\n"
            "(batch, height, width, channels), the image after the preprocessing that the\n"
            "metadata properties state (xdistill.augment: the recipe's data.augment,\n"
            "xdistill.images: the training images' size), or for a text model int32 token ids\n"
            "(batch, tokens), -1 for padding (xdistill.text: the tokenizer's settings);\n"
            "outputs \"logits\" and \"probabilities\" (batch, classes), or (batch, height,\n"
            "width, classes) for a segmentation model. Class names are in xdistill.classes.\n"
            "An int8 model (xdistill quantize, or trained with quantize:) is written as\n"
            "QuantizeLinear/DequantizeLinear pairs around float operators (QDQ): int8\n"
            "weights with per-output scales, uint8 activations with their scales.\n\n"
            "options:\n"
            "  --onnx FILE  the ONNX file to write\n"
            "  --exit HEAD  the outputs of this head (an early exit: the layers after it are\n"
            "               left out); default: the model's first head\n");
}

int cmd_export(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        export_usage(stdout);
        return 0;
    }
    const char *model = NULL, *val[XO_COUNT] = {0};
    for (int i = 1; i < argc; i++) {
        const char *v = "";
        int rc = 0, o = cli_next_option("export", export_options, XO_COUNT, argc, argv, &i, &v, &rc);
        if (o == -1 && model) return cli_usage_error("export", "one checkpoint at a time");
        if (o == -1) model = argv[i];
        else if (o < 0) return rc;
        else val[o] = v;
    }
    if (!model || !val[XO_ONNX]) return cli_usage_error("export", "give a checkpoint and --onnx OUT.onnx");
    xd_err e;
    xd_err_clear(&e);
    const char *in[] = {model};
    if (io_check_output(val[XO_ONNX], in, 1, &e) != XD_OK ||
        ex_onnx_write(model, val[XO_EXIT], val[XO_ONNX], &e) != XD_OK)
        return cli_report("export", &e);
    return 0;
}
