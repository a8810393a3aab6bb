/* Dense (per-pixel) metrics: a confusion matrix accumulated over label maps, pixel accuracy and
 * mean intersection-over-union.
 *
 * Mean IoU is taken over the classes present: a class with no true pixel and no predicted pixel has
 * no defined IoU and is left out of the mean (a class that is only predicted, or only true, counts
 * with IoU 0). */
#ifndef XD_DENSE_METRICS_H
#define XD_DENSE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int n_classes;    /* C, 1..256 (labels are u8) */
    uint64_t *counts; /* (C, C) row = true class, column = predicted class */
} dense_confusion;

void dense_confusion_init(dense_confusion *c, int n_classes);
void dense_confusion_reset(dense_confusion *c);
void dense_confusion_free(dense_confusion *c);

/* Adds n pixels. A label outside 0..C-1 in either map is an error and nothing is added. */
xd_status dense_confusion_add(dense_confusion *c, const uint8_t *pred, const uint8_t *truth,
                              size_t n, xd_err *e);

/* acc = sum_c counts[c][c] / sum counts; 0 when no pixel was added */
double dense_pixel_accuracy(const dense_confusion *c);

/* IoU_c = TP_c / (TP_c + FP_c + FN_c); mean over present classes (0 when none is present).
 * iou (C) gets every class's IoU, NaN for classes left out; n_present the number averaged.
 * Both may be NULL. */
double dense_mean_iou(const dense_confusion *c, double *iou, int *n_present);

#endif
