/* Progress display (see progress.h). */
#include "distill/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

double progress_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void progress_init(progress *p, FILE *out, int quiet)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->quiet = quiet;
    p->tty = isatty(fileno(out));
}

void progress_epoch(progress *p, const char *label, int epoch, int epochs, int steps)
{
    snprintf(p->label, sizeof p->label, "%s", label);
    p->epoch = epoch;
    p->epochs = epochs;
    p->steps = steps;
    p->t0 = progress_now();
    p->last_draw = 0.0;
}

void progress_step(progress *p, int step, double loss, double images)
{
    if (p->quiet || !p->tty) return;
    double now = progress_now();
    if (step < p->steps && now - p->last_draw < 0.1) return;
    p->last_draw = now;
    double el = now - p->t0, rate = el > 0 ? images / el : 0.0;
    double eta = step > 0 ? el * (p->steps - step) / step : 0.0;
    enum { WIDTH = 24 };
    int fill = p->steps ? (int)((double)WIDTH * step / p->steps) : WIDTH;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[WIDTH] = '\0';
    fprintf(p->out, "\r%s epoch %d/%d [%s] step %d/%d loss %.4f %.0f img/s ETA %d:%02d  ", p->label,
            p->epoch, p->epochs, bar, step, p->steps, loss, rate, (int)eta / 60, (int)eta % 60);
    fflush(p->out);
}

void progress_done(progress *p, const char *summary)
{
    if (p->quiet) return;
    if (p->tty) fprintf(p->out, "\r\033[K");
    fprintf(p->out, "%s\n", summary);
    fflush(p->out);
}
