/* Training progress: a bar with step, loss, images/s and ETA on a terminal; otherwise one plain
 * line per epoch, so logs stay readable. */
#ifndef XD_DISTILL_PROGRESS_H
#define XD_DISTILL_PROGRESS_H

#include <stdio.h>

typedef struct {
    FILE *out;
    int tty, quiet;
    int epoch, epochs, steps;
    double t0, last_draw;
    char label[64];
} progress;

void progress_init(progress *p, FILE *out, int quiet);
void progress_epoch(progress *p, const char *label, int epoch, int epochs, int steps);
/* Redraws at most ten times a second. */
void progress_step(progress *p, int step, double loss, double images);
/* Ends the epoch's bar with a summary line (already formatted by the caller). */
void progress_done(progress *p, const char *summary);
double progress_now(void);

#endif
