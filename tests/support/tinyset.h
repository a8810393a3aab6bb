/* A tiny synthetic paired data set for trainer tests: 8x8 grey images of 4 classes (a bright 3x3
 * square somewhere in one of the four quadrants, over noise) and short texts per class in two
 * languages ("text.en", "text.de"), written with io_dataset_writer. A small MLP or CNN separates
 * the images after a few epochs; a bag of words separates the texts. */
#ifndef XD_TESTS_TINYSET_H
#define XD_TESTS_TINYSET_H

#include <stdint.h>

#define TINY_CLASSES 4
#define TINY_SIDE 8

typedef struct {
    int n_train, n_test;
    int n_val;       /* > 0: a third split, "val", labelled as the test split is */
    int side;        /* the images' side; 0: TINY_SIDE */
    uint64_t seed;
    int texts;       /* 1: add text.en / text.de and the `languages` table */
    int train_labels; /* 1: train/label (0: the section is left out) */
    int unlabelled;  /* 1: train/label_mask all 0 (labels present, none usable) */
    int brightness;  /* 1: the class is the image's grey level (40, 100, 160, 220, +-15 noise)
                      * instead of the square's quadrant: the absolute level matters */
    int reversed;    /* 1: the same examples with the classes stored in reverse order (class k
                      * is label TINY_CLASSES - 1 - k, and `classes` lists them so) */
    const char *class0; /* not NULL: the name of class 0 instead of "top-left" */
} tiny_spec;

/* 200 train / 100 test, seed 7, texts, train labels. */
tiny_spec tiny_default(void);

/* Class of example i of a split: i % TINY_CLASSES (balanced). Splits with labels also get
 * `label.row` (the square's row: class / 2, named by `classes.row`: top, bottom). */
int tiny_label(int i);

/* Writes the data set to path; fails the current test on any error. */
void tiny_write(const char *path, const tiny_spec *spec);

#endif
