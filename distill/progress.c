/* Progress display (see progress.h). */
#include "distill/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A plain line this often when the output is not a terminal: often enough to show life, rare
 * enough for a log file. */
#define PROGRESS_PLAIN_SECONDS 5.0

double progress_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The job's start comes from another process, so its clock is the wall clock. */
static double wall_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int progress_span_parse(const char *s, progress_span *out)
{
    char *end;
    double v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = strtod(s, &end);
        if (end == s || !isfinite(v[i]) || *end != (i < 2 ? ',' : '\0')) return -1;
        s = end + 1;
    }
    if (!(v[0] >= 0.0 && v[0] < v[1] && v[1] <= 1.0 && v[2] > 0.0)) return -1;
    *out = (progress_span){.from = v[0], .to = v[1], .t0 = v[2]};
    return 0;
}

void progress_init(progress *p, FILE *out, int quiet, const progress_span *span)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->quiet = quiet;
    p->span = span;
    p->tty = isatty(fileno(out));
    p->every = p->tty ? 0.1 : PROGRESS_PLAIN_SECONDS;
}

void progress_epoch(progress *p, const char *label, int epoch, int epochs, int steps)
{
    snprintf(p->label, sizeof p->label, "%s", label);
    p->epoch = epoch;
    p->epochs = epochs;
    p->steps = steps;
    p->t0 = progress_now();
    p->last_draw = p->t0;
}

static void clock_text(char *buf, size_t n, double seconds)
{
    int s = seconds > 0 && seconds < 1e7 ? (int)(seconds + 0.5) : 0;
    if (s >= 3600) snprintf(buf, n, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%d:%02d", s / 60, s % 60);
}

void progress_step(progress *p, int step, double loss, double images)
{
    if (p->quiet) return;
    double now = progress_now();
    if (!(p->tty && step == p->steps) && now - p->last_draw < p->every) return;
    p->last_draw = now;
    double el = now - p->t0, rate = el > 0 ? images / el : 0.0;
    /* the share of the bar: this epoch, or the whole job's share done so far */
    double frac = p->steps ? (double)step / p->steps : 1.0, eta;
    if (p->span) {
        double run = p->epochs ? ((p->epoch - 1) + frac) / p->epochs : 1.0;
        frac = p->span->from + (p->span->to - p->span->from) * run;
        double job_el = wall_now() - p->span->t0;
        eta = frac > 0 ? job_el * (1.0 - frac) / frac : 0.0;
    } else {
        eta = step > 0 ? el * (p->steps - step) / step : 0.0;
    }
    char eta_s[16];
    clock_text(eta_s, sizeof eta_s, eta);
    const char *whole = p->span ? " (whole run)" : "";
    if (!p->tty) {
        fprintf(p->out, "%s: epoch %d/%d step %d/%d, loss %.4f, %.0f img/s, %.0f%% done, ETA %s%s\n",
                p->label, p->epoch, p->epochs, step, p->steps, loss, rate, 100.0 * frac, eta_s,
                whole);
        fflush(p->out);
        return;
    }
    enum { WIDTH = 24 };
    int fill = (int)((double)WIDTH * frac);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[WIDTH] = '\0';
    if (p->span)
        fprintf(p->out, "\r[%s] %3.0f%% %s epoch %d/%d loss %.4f %.0f img/s ETA %s%s  ", bar,
                100.0 * frac, p->label, p->epoch, p->epochs, loss, rate, eta_s, whole);
    else
        fprintf(p->out, "\r%s epoch %d/%d [%s] step %d/%d loss %.4f %.0f img/s ETA %s  ", p->label,
                p->epoch, p->epochs, bar, step, p->steps, loss, rate, eta_s);
    fflush(p->out);
}

void progress_done(progress *p, const char *summary)
{
    if (p->quiet) return;
    if (p->tty) fprintf(p->out, "\r\033[K");
    /* within a job the bar goes on; the job prints its own stage lines */
    if (!p->span) fprintf(p->out, "%s\n", summary);
    fflush(p->out);
}
