/* classify: the most probable classes of one image, with the installed xdistill library.
 *
 *   cc classify.c $(pkg-config --cflags --libs xdistill) -o classify
 *   ./classify runs/emoji-image/seed-1/best.safetensors face.png 3
 *
 * prints one line per class, most probable first: its name, a tab, its probability. */
#include <stdio.h>
#include <stdlib.h>

#include <xdistill/xdistill.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.safetensors IMAGE [K]\n", argv[0]);
        return 2;
    }
    int k = argc == 4 ? atoi(argv[3]) : 1;
    xdistill_error err;
    xdistill_model *model;
    if (xdistill_load(argv[1], 1, &model, &err) != XDISTILL_OK) {
        fprintf(stderr, "classify: %s\n", err.message);
        return 1;
    }
    const int n = xdistill_num_classes(model);
    if (k < 1 || k > n) k = n;
    xdistill_batch *batch = xdistill_batch_new(model);
    float *probs = malloc(sizeof *probs * xdistill_outputs(model));
    int *top = malloc(sizeof *top * (size_t)n);
    int rc = 1;
    if (!batch || !probs || !top)
        fprintf(stderr, "classify: out of memory\n");
    else if (xdistill_task_of(model) != XDISTILL_CLASSIFY)
        fprintf(stderr, "classify: %s is not a classifier\n", argv[1]);
    else if (xdistill_batch_set_image_file(batch, 0, argv[2], &err) != XDISTILL_OK ||
             xdistill_predict(model, batch, 1, probs, &err) != XDISTILL_OK)
        fprintf(stderr, "classify: %s\n", err.message);
    else
        rc = 0;
    for (int i = 0; !rc && i < xdistill_top(probs, n, k, top); i++)
        printf("%s\t%.6f\n", xdistill_class_name(model, top[i]), probs[top[i]]);
    free(top);
    free(probs);
    xdistill_batch_free(batch);
    xdistill_free(model);
    return rc;
}
