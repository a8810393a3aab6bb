/* Training progress: a bar with step, loss, images/s and ETA on a terminal; otherwise plain lines
 * (one every few seconds while an epoch runs, one per epoch), so logs stay readable and hold no
 * control characters.
 *
 * A run can also be one share of a longer job (make demo: several trainings one after another).
 * Given that share and when the job began, the bar and the ETA cover the whole job, and the
 * per-epoch lines are left out: the job's driver prints its own stage lines. */
#ifndef XD_DISTILL_PROGRESS_H
#define XD_DISTILL_PROGRESS_H

#include <stdio.h>

/* This run is the [from, to) share (0 <= from < to <= 1) of a job that began at t0 (seconds since
 * 1970, as `date +%s` prints). */
typedef struct {
    double from, to, t0;
} progress_span;

/* Parses "FROM,TO,START" (e.g. "0.25,0.5,1764000000"); 0 on success. */
int progress_span_parse(const char *s, progress_span *out);

typedef struct {
    FILE *out;
    int tty, quiet;
    double every;              /* seconds between plain lines when out is not a terminal */
    const progress_span *span; /* NULL: progress of this run alone */
    int epoch, epochs, steps;
    double t0, last_draw;
    char label[64];
} progress;

void progress_init(progress *p, FILE *out, int quiet, const progress_span *span);
void progress_epoch(progress *p, const char *label, int epoch, int epochs, int steps);
/* Redraws at most ten times a second on a terminal, else writes a line every few seconds. */
void progress_step(progress *p, int step, double loss, double images);
/* Ends the epoch's bar with a summary line (already formatted by the caller). */
void progress_done(progress *p, const char *summary);
double progress_now(void);

#endif
