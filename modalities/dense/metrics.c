/* Confusion matrix, pixel accuracy and mean IoU (see metrics.h). */
#include "modalities/dense/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void dense_confusion_init(dense_confusion *c, int n_classes)
{
    XD_ASSERT(n_classes >= 1 && n_classes <= 256);
    c->n_classes = n_classes;
    c->counts = xd_xcalloc((size_t)n_classes * (size_t)n_classes, sizeof *c->counts);
}

void dense_confusion_reset(dense_confusion *c)
{
    memset(c->counts, 0, (size_t)c->n_classes * (size_t)c->n_classes * sizeof *c->counts);
}

void dense_confusion_free(dense_confusion *c)
{
    free(c->counts);
    c->counts = NULL;
    c->n_classes = 0;
}

xd_status dense_confusion_add(dense_confusion *c, const uint8_t *pred, const uint8_t *truth,
                              size_t n, xd_err *e)
{
    int C = c->n_classes;
    for (size_t i = 0; i < n; i++) {
        if (truth[i] >= C)
            return xd_fail(e, XD_EARG, "true label %u at pixel %zu is not a class in 0..%d",
                           truth[i], i, C - 1);
        if (pred[i] >= C)
            return xd_fail(e, XD_EARG, "predicted label %u at pixel %zu is not a class in 0..%d",
                           pred[i], i, C - 1);
    }
    uint64_t *counts = c->counts;
    size_t cells = (size_t)C * (size_t)C;
    (void)cells; /* only the pragma reads it */
    /* each thread counts into its own copy, summed at the end: no shared writes */
#pragma omp parallel for reduction(+ : counts[:cells]) schedule(static) if (n > ((size_t)1 << 16))
    for (size_t i = 0; i < n; i++) counts[(size_t)truth[i] * (size_t)C + pred[i]]++;
    return XD_OK;
}

double dense_pixel_accuracy(const dense_confusion *c)
{
    int C = c->n_classes;
    uint64_t total = 0, right = 0;
    for (int t = 0; t < C; t++)
        for (int p = 0; p < C; p++) {
            total += c->counts[(size_t)t * C + p];
            if (t == p) right += c->counts[(size_t)t * C + p];
        }
    return total ? (double)right / (double)total : 0.0;
}

double dense_mean_iou(const dense_confusion *c, double *iou, int *n_present)
{
    int C = c->n_classes, present = 0;
    double sum = 0.0;
    for (int k = 0; k < C; k++) {
        uint64_t tp = c->counts[(size_t)k * C + k], row = 0, col = 0;
        for (int j = 0; j < C; j++) {
            row += c->counts[(size_t)k * C + j]; /* true k: TP + FN */
            col += c->counts[(size_t)j * C + k]; /* predicted k: TP + FP */
        }
        uint64_t uni = row + col - tp;
        double v = uni ? (double)tp / (double)uni : NAN;
        if (iou) iou[k] = v;
        if (uni) {
            sum += v;
            present++;
        }
    }
    if (n_present) *n_present = present;
    return present ? sum / present : 0.0;
}
