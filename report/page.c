/* The report page and the text comparison (see page.h). */
#include "report/page.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/file.h"
#include "io/png.h"
#include "report/html.h"

/* Line colours, one per recipe (repeating past ten): a colour-blind-safe palette. */
static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
#define PALETTE_N (sizeof palette / sizeof palette[0])

/* Confusion matrices with more classes than this are drawn as an image, one pixel per cell. */
#define HEAT_SVG_MAX 30
/* Counts are written into the cells up to this many classes. */
#define HEAT_TEXT_MAX 12
/* Width of a character of the matrix's labels (11 px system-ui), a little over the average, for
 * the room they get. */
#define HEAT_CHAR_W 6.5

void rp_details_free(rp_details *d)
{
    for (int k = 0; d->classes && k < d->K; k++) free(d->classes[k]);
    for (int k = 0; d->teacher_classes && k < d->n_teacher_classes; k++) free(d->teacher_classes[k]);
    for (int i = 0; i < d->n_examples; i++) {
        free(d->examples[i].png);
        free(d->examples[i].text);
        free(d->examples[i].teacher_text);
    }
    for (int i = 0; i < d->n_images; i++) free(d->images[i]);
    free(d->images);
    free(d->image_n);
    free(d->examples);
    free(d->teacher_classes);
    free(d->classes);
    free(d->confusion);
    free(d->support);
    free(d->class_acc);
    free(d->class_iou);
    free(d->source);
    free(d->note);
    free(d->teacher_note);
    memset(d, 0, sizeof *d);
}

// ----------------------------------------------------------------------------------------------
// learning curves

typedef struct {
    const char *key, *title;
    int percent;
} chart_kind;

/* The charts every page draws when a run has the key; loss components ("loss.N.KIND") follow. */
static const chart_kind fixed_charts[] = {
    {"test_acc", "test accuracy", 1},         {"test_miou", "test mIoU", 1},
    {"test_pixel_acc", "test pixel accuracy", 1}, {"train_acc", "train accuracy", 1},
    {"loss", "training loss (weighted sum)", 0},
};

/* a round step of about range / 5: 1, 2 or 5 times a power of ten */
static double nice_step(double range)
{
    double raw = range / 5.0, p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * p;
}

/* mean, lowest and highest over a group's runs of key at each epoch (NAN where none has it) */
static int group_curve(const rp_group *g, const char *key, int n, double *mid, double *lo,
                       double *hi)
{
    int any = 0;
    for (int t = 0; t < n; t++) {
        double s = 0.0, a = INFINITY, b = -INFINITY;
        int c = 0;
        for (int i = 0; i < g->n_runs; i++) {
            const rp_series *sr = rp_run_series(g->runs[i], key);
            if (!sr || t >= g->runs[i]->n_epochs || !isfinite(sr->v[t])) continue;
            double v = sr->v[t];
            s += v;
            a = v < a ? v : a;
            b = v > b ? v : b;
            c++;
        }
        mid[t] = c ? s / c : NAN;
        lo[t] = c ? a : NAN;
        hi[t] = c ? b : NAN;
        any |= c > 0;
    }
    return any;
}

static void chart(rp_buf *b, const rp_set *set, const char *key, const char *title, int percent)
{
    const double W = 360, H = 230, L = 52, R = 12, T = 12, B = 38;
    int n = 0;
    for (int i = 0; i < set->n_runs; i++)
        if (rp_run_series(&set->runs[i], key) && set->runs[i].n_epochs > n) n = set->runs[i].n_epochs;
    if (n == 0) return;
    double *mid = xd_xmalloc(sizeof(double) * (size_t)n * 3 * (size_t)set->n_groups);
    int *has = xd_xcalloc((size_t)set->n_groups, sizeof *has);
    double ymin = INFINITY, ymax = -INFINITY;
    for (int g = 0; g < set->n_groups; g++) {
        double *m = mid + (size_t)g * 3 * (size_t)n;
        has[g] = group_curve(&set->groups[g], key, n, m, m + n, m + 2 * n);
        for (int t = 0; t < n; t++)
            if (isfinite(m[n + t])) {
                ymin = fmin(ymin, m[n + t]);
                ymax = fmax(ymax, m[2 * n + t]);
            }
    }
    if (!isfinite(ymin)) {
        free(mid);
        free(has);
        return;
    }
    if (ymax - ymin < 1e-9) {
        double pad = fabs(ymax) > 1e-9 ? fabs(ymax) * 0.05 : 0.5;
        ymin -= pad;
        ymax += pad;
    }
    double step = nice_step(ymax - ymin);
    /* as many decimals of a percentage as the step needs, so that no two ticks read the same */
    int decimals = 0;
    while (decimals < 6 && step * 100 * pow(10, decimals) < 0.999) decimals++;
    ymin = floor(ymin / step) * step;
    ymax = ceil(ymax / step) * step;
    const double pw = W - L - R, ph = H - T - B;
#define X(t) (L + (n > 1 ? pw * (double)(t) / (n - 1) : pw / 2))
#define Y(v) (T + ph * (1.0 - ((v) - ymin) / (ymax - ymin)))
    rp_put(b, "<figure class=\"chart\" data-key=\"");
    rp_escape(b, key);
    rp_put(b, "\"><figcaption>");
    rp_escape(b, title);
    rp_printf(b, "</figcaption><svg viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
                 "role=\"img\">", W, H, W, H);
    for (double v = ymin; v <= ymax + step * 1e-6; v += step) {
        rp_printf(b, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", L,
                  W - R, Y(v), Y(v));
        if (percent)
            rp_printf(b, "<text class=\"ytick\" x=\"%.1f\" y=\"%.1f\">%.*f%%</text>", L - 6,
                      Y(v) + 4, decimals, 100 * v);
        else
            rp_printf(b, "<text class=\"ytick\" x=\"%.1f\" y=\"%.1f\">%.4g</text>", L - 6,
                      Y(v) + 4, fabs(v) < step * 1e-6 ? 0.0 : v);
    }
    int xstep = n <= 10 ? 1 : (int)ceil(nice_step((double)n));
    for (int t = 0; t < n; t += xstep)
        rp_printf(b, "<text class=\"xtick\" x=\"%.1f\" y=\"%.1f\">%d</text>", X(t), H - B + 16, t + 1);
    rp_printf(b, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\">epoch</text>", L + pw / 2, H - 6);
    rp_printf(b, "<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", L,
              T, pw, ph);
    for (int g = 0; g < set->n_groups; g++) {
        if (!has[g]) continue;
        const double *m = mid + (size_t)g * 3 * (size_t)n, *lo = m + n, *hi = m + 2 * n;
        const char *col = palette[(size_t)g % PALETTE_N];
        if (set->groups[g].n_runs > 1) {
            /* the band: along the highest values, back along the lowest */
            rp_printf(b, "<path class=\"band\" fill=\"%s\" d=\"", col);
            char op = 'M';
            for (int t = 0; t < n; t++)
                if (isfinite(hi[t])) {
                    rp_printf(b, "%c%.1f %.1f", op, X(t), Y(hi[t]));
                    op = 'L';
                }
            for (int t = n - 1; t >= 0; t--)
                if (isfinite(lo[t])) rp_printf(b, "L%.1f %.1f", X(t), Y(lo[t]));
            rp_put(b, "Z\"/>");
        }
        rp_printf(b, "<path class=\"line\" stroke=\"%s\" data-run=\"", col);
        rp_escape(b, set->groups[g].name);
        rp_put(b, "\" d=\"");
        char op = 'M';
        for (int t = 0; t < n; t++)
            if (isfinite(m[t])) {
                rp_printf(b, "%c%.1f %.1f", op, X(t), Y(m[t]));
                op = 'L';
            }
        rp_put(b, "\"><title>");
        rp_escape(b, set->groups[g].name);
        rp_put(b, "</title></path>");
        for (int t = 0; t < n; t++)
            if (isfinite(m[t])) {
                rp_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.2\" fill=\"%s\"><title>", X(t),
                          Y(m[t]), col);
                rp_escape(b, set->groups[g].name);
                if (percent) rp_printf(b, ", epoch %d: %.2f%%</title></circle>", t + 1, 100 * m[t]);
                else rp_printf(b, ", epoch %d: %.4g</title></circle>", t + 1, m[t]);
            }
    }
#undef X
#undef Y
    rp_put(b, "</svg></figure>\n");
    free(mid);
    free(has);
}

static int fixed_key(const char *key)
{
    for (size_t i = 0; i < sizeof fixed_charts / sizeof fixed_charts[0]; i++)
        if (strcmp(fixed_charts[i].key, key) == 0) return 1;
    return 0;
}

/* A chart for every key "PREFIX..." of the runs, in the order first met, titled "WHAT ...". */
static void prefixed_charts(rp_buf *b, const rp_set *set, const char *prefix, const char *what,
                            int percent)
{
    const size_t len = strlen(prefix);
    for (int i = 0; i < set->n_runs; i++)
        for (int k = 0; k < set->runs[i].n_series; k++) {
            const char *key = set->runs[i].series[k].key;
            if (strncmp(key, prefix, len) != 0 || fixed_key(key)) continue;
            int seen = 0;
            for (int j = 0; j < i && !seen; j++) seen = rp_run_series(&set->runs[j], key) != NULL;
            for (int q = 0; q < k && !seen; q++) seen = strcmp(set->runs[i].series[q].key, key) == 0;
            if (seen) continue;
            char title[160];
            snprintf(title, sizeof title, "%s %s", what, key + len);
            chart(b, set, key, title, percent);
        }
}

static void curves(rp_buf *b, const rp_set *set)
{
    rp_put(b, "<h2 id=\"curves\">Learning curves</h2>\n<p class=\"legend\">");
    for (int g = 0; g < set->n_groups; g++) {
        rp_printf(b, "<span><i style=\"background:%s\"></i>", palette[(size_t)g % PALETTE_N]);
        rp_escape(b, set->groups[g].name);
        rp_put(b, "</span> ");
    }
    rp_put(b, "</p>\n<p class=\"hint\">One line per recipe: the mean over its seeds, with a band "
              "from the lowest to the highest seed.");
    int models = 0;
    for (int i = 0; i < set->n_runs; i++) models |= set->runs[i].model != NULL;
    if (models)
        rp_put(b, " Each model of a run of several (RECIPE/MODEL) has lines of its own: its "
                  "accuracy, the loss components it learns from, and their weighted sum as its "
                  "training loss.");
    rp_put(b, "</p>\n<div class=\"charts\">\n");
    for (size_t i = 0; i < sizeof fixed_charts / sizeof fixed_charts[0]; i++)
        chart(b, set, fixed_charts[i].key, fixed_charts[i].title, fixed_charts[i].percent);
    /* each model's and each early exit's test accuracy, then every loss component */
    prefixed_charts(b, set, "test_acc.", "test accuracy of", 1);
    prefixed_charts(b, set, "loss.", "loss component", 0);
    rp_put(b, "</div>\n");
}

// ----------------------------------------------------------------------------------------------
// comparison table

/* index of the group with the highest mean score among those of this kind, or -1 */
static int best_group(const rp_set *set, int segment)
{
    int best = -1;
    for (int g = 0; g < set->n_groups; g++) {
        const rp_group *G = &set->groups[g];
        if (G->segment != segment || !G->n_finished) continue;
        if (best < 0 || G->mean > set->groups[best].mean) best = g;
    }
    return best;
}

static void best_epochs(rp_buf *b, const rp_group *g)
{
    for (int i = 0; i < g->n_runs; i++) rp_printf(b, "%s%d", i ? ", " : "", g->runs[i]->best_epoch);
}

static void table(rp_buf *b, const rp_set *set)
{
    int any_seg = 0, any_cls = 0;
    for (int g = 0; g < set->n_groups; g++) {
        any_seg |= set->groups[g].segment;
        any_cls |= !set->groups[g].segment;
    }
    const int best_c = best_group(set, 0), best_s = best_group(set, 1);
    rp_printf(b, "<h2 id=\"table\">Comparison</h2>\n<table class=\"cmp\"><thead><tr><th>recipe</th>"
                 "<th>seeds</th><th>%s<br>mean &#177; std</th>%s<th>best epoch<br>per seed</th>"
                 "<th>images/s</th><th>training time<br>per run</th></tr></thead><tbody>\n",
              any_seg && any_cls ? "final test score" : any_seg ? "final test mIoU" : "final test accuracy",
              any_seg ? "<th>pixel accuracy<br>mean &#177; std</th>" : "");
    for (int g = 0; g < set->n_groups; g++) {
        const rp_group *G = &set->groups[g];
        int best = g == best_c || g == best_s;
        rp_printf(b, "<tr%s data-run=\"", best ? " class=\"best\"" : "");
        rp_escape(b, G->name);
        rp_printf(b, "\"><td><i style=\"background:%s\"></i><a href=\"#run-%d\">",
                  palette[(size_t)g % PALETTE_N], g);
        rp_escape(b, G->name);
        rp_printf(b, "</a>%s</td><td>", best ? " <b class=\"star\">&#9733; best</b>" : "");
        for (int i = 0; i < G->n_runs; i++) rp_printf(b, "%s%ld", i ? ", " : "", G->runs[i]->seed);
        if (G->n_finished)
            rp_printf(b, "</td><td class=\"score\" data-mean=\"%.10g\" data-std=\"%.10g\">%.2f "
                         "&#177; %.2f%%%s</td>", G->mean, G->std, 100 * G->mean, 100 * G->std,
                      any_seg && any_cls ? (G->segment ? " mIoU" : " acc.") : "");
        else
            rp_put(b, "</td><td class=\"score\">unfinished</td>");
        if (any_seg && G->segment && G->n_finished)
            rp_printf(b, "<td data-mean=\"%.10g\" data-std=\"%.10g\">%.2f &#177; %.2f%%</td>",
                      G->pixel_mean, G->pixel_std, 100 * G->pixel_mean, 100 * G->pixel_std);
        else if (any_seg)
            rp_put(b, "<td></td>");
        rp_put(b, "<td>");
        best_epochs(b, G);
        rp_printf(b, "</td><td>%.0f</td><td>%.1f s</td></tr>\n", G->images_per_s, G->seconds);
    }
    rp_put(b, "</tbody></table>\n<p class=\"hint\">Final test score: after the last epoch; the "
              "standard deviation is the sample one over the seeds. &#9733;: the highest mean. "
              "Best epoch: the one a validation split chose, or without one the last evaluated "
              "(the test split chooses nothing).</p>\n");
}

// ----------------------------------------------------------------------------------------------
// per-recipe details

static void png_img(rp_buf *b, const void *png, size_t n, const char *cls, const char *alt)
{
    rp_printf(b, "<img class=\"%s\" alt=\"", cls);
    rp_escape(b, alt);
    rp_put(b, "\" src=\"");
    rp_data_uri(b, "image/png", png, n);
    rp_put(b, "\">");
}

/* white to blue by the share of a true class's rows */
static void heat_rgb(double f, int *r, int *g, int *bl)
{
    *r = (int)lround(255 - f * (255 - 33));
    *g = (int)lround(255 - f * (255 - 102));
    *bl = (int)lround(255 - f * (255 - 172));
}

static void heatmap(rp_buf *b, const rp_details *d, xd_err *e)
{
    const int K = d->K;
    if (K > HEAT_SVG_MAX) {
        /* too many classes for cells a person can read: one pixel per cell, enlarged */
        io_image img = {.w = K, .h = K, .c = 3, .px = xd_xmalloc((size_t)K * K * 3)};
        for (int t = 0; t < K; t++)
            for (int p = 0; p < K; p++) {
                double f = d->support[t] ? (double)d->confusion[(size_t)t * K + p] / d->support[t] : 0;
                int r, g, bl;
                heat_rgb(sqrt(f), &r, &g, &bl);
                uint8_t *px = img.px + ((size_t)t * K + p) * 3;
                px[0] = (uint8_t)r;
                px[1] = (uint8_t)g;
                px[2] = (uint8_t)bl;
            }
        void *png;
        size_t n;
        if (io_png_encode(&img, "confusion matrix", &png, &n, e) == XD_OK) {
            rp_printf(b, "<p class=\"hint\">%d classes: rows are the true classes, columns the "
                         "predicted ones, in the data set's order (share of the row, square "
                         "root scale).</p>", K);
            png_img(b, png, n, "heatbig", "confusion matrix");
            free(png);
        }
        free(img.px);
        return;
    }
    /* room for the labels: the row labels end at the cells, the column labels rise at 60
     * degrees from the top of their column (and lean to the right past the last one) */
    double text = 0;
    for (int k = 0; k < K; k++) text = fmax(text, HEAT_CHAR_W * (double)strlen(d->classes[k]));
    const double cell = K <= 12 ? 34 : 18, lab = fmax(118, fmax(text + 8, 0.87 * text + 24));
    const double W = fmax(lab + cell * K + 8, lab + cell * (K - 0.5) + 8 + 0.5 * text);
    const double H = lab + cell * K + 8;
    rp_printf(b, "<svg class=\"heat\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
                 "role=\"img\">", W, H, W, H);
    rp_printf(b, "<text class=\"axis\" x=\"%.0f\" y=\"12\">predicted &#8594;</text>", lab);
    for (int k = 0; k < K; k++) {
        rp_printf(b, "<text class=\"rowlab\" x=\"%.0f\" y=\"%.1f\">", lab - 4,
                  lab + cell * k + cell / 2 + 4);
        rp_escape(b, d->classes[k]);
        rp_printf(b, "</text><text class=\"collab\" transform=\"translate(%.1f %.0f) rotate(-60)\">",
                  lab + cell * k + cell / 2 + 4, lab - 4);
        rp_escape(b, d->classes[k]);
        rp_put(b, "</text>");
    }
    for (int t = 0; t < K; t++)
        for (int p = 0; p < K; p++) {
            uint64_t c = d->confusion[(size_t)t * K + p];
            double f = d->support[t] ? (double)c / d->support[t] : 0;
            int r, g, bl;
            heat_rgb(f, &r, &g, &bl);
            rp_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                         "fill=\"rgb(%d,%d,%d)\"><title>", lab + cell * p, lab + cell * t, cell,
                      cell, r, g, bl);
            rp_escape(b, d->classes[t]);
            rp_put(b, " as ");
            rp_escape(b, d->classes[p]);
            rp_printf(b, ": %llu</title></rect>", (unsigned long long)c);
            if (K <= HEAT_TEXT_MAX && c) {
                /* pixel counts run to millions: short forms fit the cell, the title is exact */
                rp_printf(b, "<text class=\"count%s\" x=\"%.1f\" y=\"%.1f\">",
                          f > 0.5 ? " light" : "", lab + cell * p + cell / 2,
                          lab + cell * t + cell / 2 + 3.5);
                rp_short_count(b, c);
                rp_put(b, "</text>");
            }
        }
    rp_put(b, "</svg>");
}

/* what a row of the evaluation is */
static const char *rows_unit(const rp_details *d)
{
    return d->segment ? "pixels" : d->lang_pairs ? "(example, language) pairs" : "examples";
}

static void per_class(rp_buf *b, const rp_details *d)
{
    rp_printf(b, "<table class=\"pc\"><thead><tr><th>class</th><th>%s</th><th>accuracy</th>%s"
                 "</tr></thead><tbody>", rows_unit(d),
              d->class_iou ? "<th>IoU</th>" : "");
    for (int k = 0; k < d->K; k++) {
        rp_put(b, "<tr><td>");
        rp_escape(b, d->classes[k]);
        rp_printf(b, "</td><td>%llu</td>", (unsigned long long)d->support[k]);
        if (d->class_acc[k] < 0)
            rp_put(b, "<td>-</td>");
        else
            rp_printf(b, "<td><span class=\"bar\" style=\"width:%.0fpx\"></span> %.1f%%</td>",
                      60 * d->class_acc[k], 100 * d->class_acc[k]);
        if (d->class_iou) {
            if (d->class_iou[k] < 0) rp_put(b, "<td>-</td>");
            else rp_printf(b, "<td>%.1f%%</td>", 100 * d->class_iou[k]);
        }
        rp_put(b, "</tr>");
    }
    rp_put(b, "</tbody></table>");
}

static void gallery(rp_buf *b, const rp_details *d)
{
    rp_put(b, "<div class=\"gallery\">");
    for (int i = 0; i < d->n_examples; i++) {
        const rp_example *x = &d->examples[i];
        rp_printf(b, "<div class=\"ex\"><div class=\"in\">");
        if (x->png) png_img(b, x->png, x->png_n, "thumb", "test example");
        if (x->text) {
            rp_put(b, "<p class=\"txt\">");
            rp_escape(b, x->text);
            rp_put(b, "</p>");
        }
        rp_printf(b, "</div><p>#%zu true: <b>", x->index);
        rp_escape(b, x->truth);
        rp_put(b, "</b></p><p class=\"wrong\">student: ");
        rp_escape(b, x->student);
        rp_printf(b, " (%.0f%%)</p>", 100 * x->student_conf);
        if (x->teacher) {
            rp_printf(b, "<p class=\"%s\">%s: ", strcmp(x->teacher, x->truth) == 0 ? "right" : "wrong",
                      d->teacher_peer ? "peer" : "teacher");
            rp_escape(b, x->teacher);
            rp_printf(b, " (%.0f%%)</p>", 100 * x->teacher_conf);
        }
        if (x->teacher_text) {
            rp_printf(b, "<p class=\"txt small\">%s read: ", d->teacher_peer ? "peer" : "teacher");
            rp_escape(b, x->teacher_text);
            rp_put(b, "</p>");
        }
        rp_put(b, "</div>");
    }
    rp_put(b, "</div>\n");
}

/* <p class="CLS">text</p> */
static void para(rp_buf *b, const char *cls, const char *text)
{
    rp_printf(b, "<p class=\"%s\">", cls);
    rp_escape(b, text);
    rp_put(b, "</p>\n");
}

/* "seed N: mIoU ..., pixel accuracy ..." / "seed N: accuracy ..., balanced accuracy ..." */
static void run_scores(rp_buf *b, const rp_run *run, const rp_details *d)
{
    rp_printf(b, "seed %ld: ", run->seed);
    if (!d->K)
        rp_put(b, "not evaluated");
    else if (d->segment)
        rp_printf(b, "mIoU %.2f%%, pixel accuracy %.2f%%", 100 * d->miou, 100 * d->accuracy);
    else
        rp_printf(b, "accuracy %.2f%%, balanced accuracy %.2f%%", 100 * d->accuracy,
                  100 * d->balanced_accuracy);
}

/* what the evaluation of one run's best checkpoint found */
static void run_details(rp_buf *b, const rp_run *run, const rp_details *d, xd_err *e)
{
    if (d->source) {
        rp_printf(b, "<p>Evaluated (seed %ld): <code>", run->seed);
        rp_escape(b, d->source);
        rp_printf(b, "</code> (epoch %d) on the test split.", run->best_epoch);
        if (d->K && d->segment) rp_printf(b, " mIoU %.2f%%.", 100 * d->miou);
        if (d->K)
            rp_printf(b, " Accuracy %.2f%%, balanced accuracy (mean of the per-class accuracies) "
                         "%.2f%% over %llu %s.", 100 * d->accuracy, 100 * d->balanced_accuracy,
                      (unsigned long long)d->rows, rows_unit(d));
        rp_put(b, "</p>\n");
    }
    if (d->note) para(b, "note", d->note);
    if (d->K) {
        rp_put(b, "<div class=\"pair\"><div><h4>Confusion matrix</h4>");
        heatmap(b, d, e);
        rp_put(b, "</div><div><h4>Per class</h4>");
        per_class(b, d);
        rp_put(b, "</div></div>\n");
    }
    if (d->teacher_note) para(b, "hint", d->teacher_note);
    if (d->n_examples) {
        rp_put(b, "<h4>Mistakes (the student's most confident wrong answers)</h4>\n");
        gallery(b, d);
    }
    if (d->n_images) {
        rp_put(b, "<h4>Overlays: the scene, the true mask, the predicted mask</h4>\n"
                  "<div class=\"overlays\">");
        for (int i = 0; i < d->n_images; i++) png_img(b, d->images[i], d->image_n[i], "ov", "overlay");
        rp_put(b, "</div>\n");
    }
}

/* a recipe's section: its runs, the first one's evaluation, each other seed's in <details> */
static void details(rp_buf *b, int g, const rp_set *set, const rp_details *det, xd_err *e)
{
    const rp_group *G = &set->groups[g];
    rp_printf(b, "<section class=\"run\" id=\"run-%d\" data-run=\"", g);
    rp_escape(b, G->name);
    rp_printf(b, "\"><h3><i style=\"background:%s\"></i>", palette[(size_t)g % PALETTE_N]);
    rp_escape(b, G->name);
    rp_put(b, "</h3>\n<p class=\"hint\">Runs: ");
    for (int i = 0; i < G->n_runs; i++) {
        if (i) rp_put(b, ", ");
        rp_put(b, "<code>");
        rp_escape(b, G->runs[i]->dir);
        rp_put(b, "</code>");
    }
    rp_put(b, "</p>\n");
    for (int i = 0; det && i < G->n_runs; i++) {
        const rp_run *run = G->runs[i];
        const rp_details *d = &det[run - set->runs];
        if (i == 0) {
            run_details(b, run, d, e);
            continue;
        }
        rp_put(b, "<details class=\"seed\"><summary>");
        run_scores(b, run, d);
        rp_put(b, "</summary>\n");
        run_details(b, run, d, e);
        rp_put(b, "</details>\n");
    }
    rp_put(b, "</section>\n");
}

static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;"
    "padding:0 12px}h1{font-size:22px}h2{margin-top:28px;border-bottom:1px solid #ddd}"
    "h3 i,td i,.legend i{display:inline-block;width:12px;height:12px;margin-right:6px;"
    "border-radius:2px}.legend span{margin-right:14px;white-space:nowrap}.hint{color:#666;"
    "font-size:12px}.note{background:#fff6e0;padding:6px 10px;border-left:3px solid #e0a800}"
    "table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #e4e4e4;"
    "text-align:left;vertical-align:top}th{background:#f4f4f4}.cmp td.score{font-weight:600}"
    "tr.best{background:#eaf5e4}.star{color:#3a7d24;font-size:12px}.charts{display:flex;"
    "flex-wrap:wrap;gap:8px}figure.chart{margin:0;border:1px solid #eee;padding:4px}"
    "figcaption{font-weight:600;font-size:13px;padding-left:6px}svg text{font:11px system-ui,"
    "sans-serif;fill:#444}.ytick{text-anchor:end}.xtick,.xlabel{text-anchor:middle}"
    ".grid{stroke:#eee}.frame{fill:none;stroke:#bbb}.line{fill:none;stroke-width:2}"
    ".band{opacity:.18;stroke:none}.run{border-top:1px solid #ddd;margin-top:18px}"
    ".pair{display:flex;flex-wrap:wrap;gap:24px}.rowlab{text-anchor:end}.count{text-anchor:middle;"
    "font-size:10px}.count.light{fill:#fff}.heatbig{width:392px;height:392px;"
    "image-rendering:pixelated;border:1px solid #ccc}.bar{display:inline-block;height:9px;"
    "background:#4e79a7}.gallery{display:flex;flex-wrap:wrap;gap:8px}.ex{width:150px;border:"
    "1px solid #e4e4e4;padding:6px;font-size:12px}.ex p{margin:2px 0}.ex .in{min-height:56px}"
    ".thumb{width:56px;height:56px;image-rendering:pixelated;border:1px solid #ccc}.txt{"
    "font-size:11px;max-height:64px;overflow:hidden}.small{color:#666}.wrong{color:#b3261e}"
    ".right{color:#3a7d24}.overlays img{max-width:100%;margin:4px 0;image-rendering:pixelated;"
    "display:block}code{font-size:12px}details.seed{margin:8px 0;border:1px solid #e4e4e4;"
    "padding:4px 10px}details.seed summary{cursor:pointer;font-weight:600}";

xd_status rp_write_page(const char *path, const char *title, const rp_set *set,
                        const rp_details *det, xd_err *e)
{
    rp_buf b = {0};
    rp_put(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    rp_escape(&b, title);
    rp_printf(&b, "</title><style>%s</style></head><body>\n<h1>", css);
    rp_escape(&b, title);
    rp_printf(&b, "</h1>\n<p class=\"hint\">%d run%s of %d recipe%s, written by xdistill "
                  "report.</p>\n", set->n_runs, set->n_runs == 1 ? "" : "s", set->n_groups,
              set->n_groups == 1 ? "" : "s");
    table(&b, set);
    curves(&b, set);
    rp_put(&b, "<h2 id=\"runs\">Recipes</h2>\n");
    xd_err pe;
    xd_err_clear(&pe);
    for (int g = 0; g < set->n_groups; g++) details(&b, g, set, det, &pe);
    rp_put(&b, "</body></html>\n");
    xd_status s = pe.code;
    io_atomic w;
    if (s != XD_OK) *e = pe;
    else if ((s = io_atomic_open(&w, path, e)) == XD_OK) {
        if ((s = io_atomic_write(&w, b.s, b.n, e)) == XD_OK) s = io_atomic_commit(&w, e);
        else io_atomic_abort(&w);
    }
    rp_buf_free(&b);
    return s;
}

void rp_write_compare(FILE *out, const rp_set *set)
{
    int w = 6;
    for (int g = 0; g < set->n_groups; g++) {
        int l = (int)strlen(set->groups[g].name);
        w = l > w ? l : w;
    }
    const rp_group *ref = set->n_groups ? &set->groups[0] : NULL;
    fprintf(out, "%-*s  %5s  %-18s  %-9s  %-10s  %9s  %10s\n", w, "recipe", "seeds",
            "final test score", "vs first", "best epoch", "images/s", "s per run");
    for (int g = 0; g < set->n_groups; g++) {
        const rp_group *G = &set->groups[g];
        char score[40], diff[24] = "", epochs[64] = "";
        if (G->n_finished)
            snprintf(score, sizeof score, "%.2f +- %.2f%% %s", 100 * G->mean, 100 * G->std,
                     G->segment ? "mIoU" : "acc");
        else
            snprintf(score, sizeof score, "unfinished");
        if (g > 0 && G->n_finished && ref->n_finished && G->segment == ref->segment)
            snprintf(diff, sizeof diff, "%+.2f", 100 * (G->mean - ref->mean));
        for (int i = 0, o = 0; i < G->n_runs && o < (int)sizeof epochs - 8; i++)
            o += snprintf(epochs + o, sizeof epochs - (size_t)o, "%s%d", i ? "," : "",
                          G->runs[i]->best_epoch);
        fprintf(out, "%-*s  %5d  %-18s  %-9s  %-10s  %9.0f  %10.1f\n", w, G->name, G->n_runs, score,
                diff, epochs, G->images_per_s, G->seconds);
    }
}
