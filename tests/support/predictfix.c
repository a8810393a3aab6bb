/* The predict tests' fixtures (see predictfix.h). */
#include "tests/support/predictfix.h"

#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>

#include "io/dataset.h"
#include "io/png.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"

#define IMAGE_RECIPE                                                                             \
    "name: img\n"                                                                                \
    "data: {path: toy.xds, augment: \"mean=0.5 std=0.25\"}\n"                                    \
    "model: \"input h=8 w=8 c=1; flatten; linear out=16 name=fc1; batchnorm name=bn; relu; "     \
    "linear out=4 name=logits head\"\n"                                                          \
    "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"                        \
    "losses:\n  - kind: ce\n"

#define TEXT_RECIPE                                                                              \
    "name: txt\n"                                                                                \
    "data: {path: toy.xds, student_view: text.en, text: \"buckets=512\"}\n"                      \
    "model: \"input tokens=16; embbag vocab=512 out=8 mode=mean; linear out=4 name=logits "     \
    "head\"\n"                                                                                   \
    "train: {epochs: 2, batch: 16, optimizer: {kind: adamw, lr: 0.01}}\n"                        \
    "losses:\n  - kind: ce\n"

static void train(const char *name, const char *recipe)
{
    char *yaml = tu_fmt("%s.yaml", name), *err;
    tu_write_text(yaml, recipe);
    if (tu_run_cli(NULL, &err, "train", yaml, "--out", name, "--quiet", NULL) != 0)
        fail_msg("train %s: %s", yaml, err);
    free(err);
    free(yaml);
}

void pf_setup(void)
{
    if (tu_exists("img/best.safetensors")) return;
    tiny_spec s = tiny_default();
    tiny_write("toy.xds", &s);
    train("img", IMAGE_RECIPE);
    train("txt", TEXT_RECIPE);
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    const io_tensor *t = io_dataset_find(ds, "test/image");
    assert_non_null(t);
    for (int i = 0; i < PF_IMAGES; i++) {
        io_image img = {.w = TINY_SIDE, .h = TINY_SIDE, .c = 1,
                        .px = (uint8_t *)t->data + (size_t)i * TINY_SIDE * TINY_SIDE};
        char name[32];
        snprintf(name, sizeof name, "img%d.png", i);
        TU_OK(io_png_write(name, &img, &e));
    }
    io_dataset_close(ds);
}
