/* The report page: one self-contained HTML file (inline CSS and SVG, images as data: URIs, no
 * script) for a set of runs, and the same comparison as plain text for a terminal.
 *
 * The page holds the comparison table (one row per recipe: final test score mean +- std over its
 * seeds, best epochs, images/s, training time; the best row of each score kind marked), the
 * learning curves (test score, train accuracy and every loss component per epoch; one line per
 * recipe, the mean over its seeds with a band from the lowest to the highest seed), and for each
 * run what an evaluation of its best checkpoint found (rp_details: confusion matrix, per-class
 * accuracy, the student's mistakes beside the teacher's answers, overlays): a recipe's first seed
 * shown, its other seeds each in a <details> element. The table cells carry the exact figures in
 * data-mean / data-std attributes. */
#ifndef XD_REPORT_PAGE_H
#define XD_REPORT_PAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "report/runs.h"

/* One test example the student got wrong. */
typedef struct {
    size_t index;          /* in the test split */
    void *png;             /* the student's input as a PNG (image views), or NULL */
    size_t png_n;
    char *text;            /* the student's input text (text views), or NULL */
    const char *truth;     /* class names (owned by rp_details.classes / teacher_classes) */
    const char *student;
    float student_conf;    /* softmax probability of the student's class */
    const char *teacher;   /* NULL: no teacher answer (the teacher's, or the peer's) */
    float teacher_conf;
    char *teacher_text;    /* the teacher's input when it reads text and the student does not */
} rp_example;

/* What an evaluation of a recipe's checkpoint found; all NULL / 0 with a note when none. */
typedef struct {
    char *source;          /* the checkpoint evaluated */
    char *note;            /* why some part is missing (no data set, no teacher), or NULL */
    char *teacher_note;    /* who the teacher is and what it reads, or why there is none */
    int teacher_peer;      /* the teacher is another model of the run (a peer) */
    int segment;           /* rows are pixels */
    int lang_pairs;        /* rows are (example, language) pairs (a text.* view) */
    int K;
    char **classes;        /* (K) */
    uint64_t *confusion;   /* (K, K) true x predicted */
    uint64_t *support;     /* (K) rows per true class */
    double *class_acc;     /* (K), -1 for a class without rows */
    double *class_iou;     /* (K) segment runs, else NULL */
    double accuracy, balanced_accuracy;
    double miou;           /* segment runs: mean IoU over the classes present */
    uint64_t rows;         /* rows scored (examples, pairs or pixels) */
    int n_examples;
    rp_example *examples;
    char **teacher_classes; /* names of the teacher's classes (n_teacher_classes) */
    int n_teacher_classes;
    int n_images;
    void **images;         /* PNG files shown as they are (segmentation overlays) */
    size_t *image_n;
} rp_details;

void rp_details_free(rp_details *d);

/* Writes the page to path atomically. details: one per run of set, in set->runs' order (NULL:
 * curves and table only). title: the page's heading. */
xd_status rp_write_page(const char *path, const char *title, const rp_set *set,
                        const rp_details *details, xd_err *e);

/* The comparison table as text (one row per group, each score's difference from the first
 * group's), for pasting into an issue. */
void rp_write_compare(FILE *out, const rp_set *set);

#endif
