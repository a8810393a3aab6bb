/* Tiny synthetic data set for trainer tests (see tinyset.h). */
#include "tests/support/tinyset.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/dataset.h"
#include "tests/support/testutil.h"

/* One distinct word per class and language, plus filler words shared by every class, so that
 * only the class word carries the label. */
static const char *const class_words[2][TINY_CLASSES] = {
    {"apple", "bread", "cheese", "dates"},
    {"apfel", "brot", "k\xc3\xa4se", "datteln"},
};
static const char *const fillers[2][4] = {
    {"a", "fresh", "some", "tasty"},
    {"ein", "frisch", "etwas", "lecker"},
};

tiny_spec tiny_default(void)
{
    return (tiny_spec){.n_train = 200, .n_test = 100, .seed = 7, .texts = 1, .train_labels = 1};
}

int tiny_label(int i) { return i % TINY_CLASSES; }

/* image: noise in [0, 90), a 3x3 square in [170, 256) at a random place inside the class's
 * quadrant (quadrants: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) */
static void draw(uint8_t *img, int side, int cls, int brightness, xd_rng *r)
{
    if (brightness) {
        for (int p = 0; p < side * side; p++)
            img[p] = (uint8_t)(40 + 60 * cls - 15 + (int)xd_rng_below(r, 31));
        return;
    }
    for (int p = 0; p < side * side; p++) img[p] = (uint8_t)xd_rng_below(r, 90);
    int half = side / 2;
    int y0 = (cls / 2) * half + (int)xd_rng_below(r, (uint32_t)(half - 2));
    int x0 = (cls % 2) * half + (int)xd_rng_below(r, (uint32_t)(half - 2));
    for (int y = y0; y < y0 + 3; y++)
        for (int x = x0; x < x0 + 3; x++) img[y * side + x] = (uint8_t)(170 + xd_rng_below(r, 86));
}

static void add_split(io_dataset_writer *w, const char *split, int n, const tiny_spec *s,
                      uint64_t stream)
{
    xd_err e;
    xd_err_clear(&e);
    const int side = s->side ? s->side : TINY_SIDE;
    uint8_t *img = malloc((size_t)(n ? n : 1) * side * side);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    char **txt[2] = {calloc((size_t)(n ? n : 1), sizeof(char *)),
                     calloc((size_t)(n ? n : 1), sizeof(char *))};
    xd_rng r = xd_rng_make(s->seed, stream, XD_RNG_USER);
    for (int i = 0; i < n; i++) {
        lab[i] = tiny_label(i);
        draw(img + (size_t)i * side * side, side, lab[i], s->brightness, &r);
        for (int l = 0; l < 2; l++) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s %s %s", fillers[l][xd_rng_below(&r, 4)],
                     class_words[l][lab[i]], fillers[l][xd_rng_below(&r, 4)]);
            txt[l][i] = strdup(buf);
        }
    }
    char name[64];
    io_tensor t;
    int64_t shp[4] = {n, side, side, 1};
    snprintf(name, sizeof name, "%s/image", split);
    io_tensor_set(&t, name, IO_U8, 4, shp, img);
    if (io_dataset_add(w, &t, &e) != XD_OK) fail_msg("%s", e.msg);
    if (strcmp(split, "train") != 0 || s->train_labels) {
        int32_t *stored = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) stored[i] = s->reversed ? TINY_CLASSES - 1 - lab[i] : lab[i];
        snprintf(name, sizeof name, "%s/label", split);
        io_tensor_set(&t, name, IO_I32, 1, shp, stored);
        if (io_dataset_add(w, &t, &e) != XD_OK) fail_msg("%s", e.msg);
        free(stored);
        /* the coarser label set: the square's row (top 0, bottom 1) */
        int32_t *row = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) row[i] = lab[i] / 2;
        snprintf(name, sizeof name, "%s/label.row", split);
        io_tensor_set(&t, name, IO_I32, 1, shp, row);
        if (io_dataset_add(w, &t, &e) != XD_OK) fail_msg("%s", e.msg);
        free(row);
    }
    if (strcmp(split, "train") == 0 && s->unlabelled) {
        uint8_t *mask = calloc((size_t)(n ? n : 1), 1);
        snprintf(name, sizeof name, "%s/label_mask", split);
        io_tensor_set(&t, name, IO_U8, 1, shp, mask);
        if (io_dataset_add(w, &t, &e) != XD_OK) fail_msg("%s", e.msg);
        free(mask);
    }
    if (s->texts) {
        static const char *const langs[2] = {"en", "de"};
        for (int l = 0; l < 2; l++) {
            snprintf(name, sizeof name, "%s/text.%s", split, langs[l]);
            if (io_dataset_add_strings(w, name, (const char *const *)txt[l], (size_t)n, &e) != XD_OK)
                fail_msg("%s", e.msg);
        }
    }
    for (int l = 0; l < 2; l++) {
        for (int i = 0; i < n; i++) free(txt[l][i]);
        free(txt[l]);
    }
    free(img);
    free(lab);
}

void tiny_write(const char *path, const tiny_spec *s)
{
    xd_err e;
    xd_err_clear(&e);
    io_dataset_writer *w;
    if (io_dataset_writer_open(path, 24, &w, &e) != XD_OK) fail_msg("%s", e.msg);
    add_split(w, "train", s->n_train, s, 1);
    add_split(w, "test", s->n_test, s, 2);
    if (s->n_val > 0) add_split(w, "val", s->n_val, s, 3);
    const char *names[TINY_CLASSES] = {s->class0 ? s->class0 : "top-left", "top-right",
                                       "bottom-left", "bottom-right"};
    const char *classes[TINY_CLASSES];
    for (int k = 0; k < TINY_CLASSES; k++) classes[k] = names[s->reversed ? TINY_CLASSES - 1 - k : k];
    if (io_dataset_add_strings(w, "classes", classes, TINY_CLASSES, &e) != XD_OK)
        fail_msg("%s", e.msg);
    static const char *const rows[2] = {"top", "bottom"};
    if (io_dataset_add_strings(w, "classes.row", rows, 2, &e) != XD_OK) fail_msg("%s", e.msg);
    if (s->texts) {
        static const char *const langs[2] = {"en", "de"};
        if (io_dataset_add_strings(w, "languages", langs, 2, &e) != XD_OK) fail_msg("%s", e.msg);
    }
    if (io_dataset_set_meta(w, "name", "tiny", &e) != XD_OK) fail_msg("%s", e.msg);
    if (io_dataset_finish(w, &e) != XD_OK) fail_msg("%s", e.msg);
}
