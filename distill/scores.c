/* Confusion matrices and per-row predictions (see scores.h). */
#include "distill/scores.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "modalities/text/utf8.h"

void scores_init(scores *s, int K)
{
    memset(s, 0, sizeof *s);
    s->K = K;
    s->count = xd_xcalloc((size_t)K * (size_t)K, sizeof *s->count);
}

void scores_free(scores *s)
{
    free(s->count);
    memset(s, 0, sizeof *s);
}

void scores_add(scores *s, const int32_t *pred, const int32_t *truth, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (pred[i] < 0 || pred[i] >= s->K || truth[i] < 0 || truth[i] >= s->K) continue;
        s->count[(size_t)truth[i] * (size_t)s->K + (size_t)pred[i]]++;
        s->total++;
        s->correct += pred[i] == truth[i];
    }
}

/* The calibration bin of a confidence: (b/M, (b+1)/M], 0 in the first. */
static int ece_bin(float conf)
{
    int b = (int)ceil((double)conf * SCORES_ECE_BINS) - 1;
    return b < 0 ? 0 : b >= SCORES_ECE_BINS ? SCORES_ECE_BINS - 1 : b;
}

void scores_add_conf(scores *s, const int32_t *pred, const float *conf, const int32_t *truth,
                     size_t n)
{
    scores_add(s, pred, truth, n);
    for (size_t i = 0; i < n; i++) {
        if (pred[i] < 0 || pred[i] >= s->K || truth[i] < 0 || truth[i] >= s->K) continue;
        const int b = ece_bin(conf[i]);
        s->bin_n[b]++;
        s->bin_correct[b] += pred[i] == truth[i];
        s->bin_conf[b] += (double)conf[i];
    }
}

double scores_ece(const scores *s)
{
    uint64_t rows = 0;
    for (int b = 0; b < SCORES_ECE_BINS; b++) rows += s->bin_n[b];
    if (!rows) return -1.0;
    double ece = 0.0;
    for (int b = 0; b < SCORES_ECE_BINS; b++) {
        if (!s->bin_n[b]) continue;
        const double n = (double)s->bin_n[b];
        ece += n / (double)rows * fabs((double)s->bin_correct[b] / n - s->bin_conf[b] / n);
    }
    return ece;
}

double scores_accuracy(const scores *s)
{
    return s->total ? (double)s->correct / (double)s->total : 0.0;
}

uint64_t scores_support(const scores *s, int k)
{
    uint64_t n = 0;
    for (int p = 0; p < s->K; p++) n += s->count[(size_t)k * (size_t)s->K + (size_t)p];
    return n;
}

double scores_class_accuracy(const scores *s, int k)
{
    uint64_t n = scores_support(s, k);
    return n ? (double)s->count[(size_t)k * (size_t)s->K + (size_t)k] / (double)n : -1.0;
}

double scores_class_precision(const scores *s, int k)
{
    uint64_t predicted = 0;
    for (int t = 0; t < s->K; t++) predicted += s->count[(size_t)t * (size_t)s->K + (size_t)k];
    return predicted ? (double)s->count[(size_t)k * (size_t)s->K + (size_t)k] / (double)predicted
                     : -1.0;
}

double scores_class_iou(const scores *s, int k)
{
    uint64_t tp = s->count[(size_t)k * (size_t)s->K + (size_t)k], uni = 0;
    for (int j = 0; j < s->K; j++)
        uni += s->count[(size_t)k * (size_t)s->K + (size_t)j] +
               s->count[(size_t)j * (size_t)s->K + (size_t)k];
    uni -= tp; /* counted in the row and the column */
    return uni ? (double)tp / (double)uni : -1.0;
}

double scores_balanced_accuracy(const scores *s)
{
    double sum = 0.0;
    int present = 0;
    for (int k = 0; k < s->K; k++) {
        double a = scores_class_accuracy(s, k);
        if (a < 0) continue;
        sum += a;
        present++;
    }
    return present ? sum / present : 0.0;
}

/* a figure, or null where it is undefined (< 0) */
static json_t *figure(double v) { return v < 0 ? json_null() : json_real(v); }

json_t *scores_json(const scores *s, const char *const *names)
{
    json_t *j = json_object(), *classes = json_array(), *confusion = json_array();
    json_object_set_new(j, "rows", json_integer((json_int_t)s->total));
    json_object_set_new(j, "accuracy", json_real(scores_accuracy(s)));
    json_object_set_new(j, "balanced_accuracy", json_real(scores_balanced_accuracy(s)));
    json_object_set_new(j, "ece", figure(scores_ece(s)));
    for (int k = 0; k < s->K; k++) {
        json_t *c = json_object(), *row = json_array();
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        json_object_set_new(c, "name", txt_json_string(names ? names[k] : num));
        json_object_set_new(c, "support", json_integer((json_int_t)scores_support(s, k)));
        json_object_set_new(c, "precision", figure(scores_class_precision(s, k)));
        json_object_set_new(c, "recall", figure(scores_class_accuracy(s, k)));
        json_array_append_new(classes, c);
        for (int p = 0; p < s->K; p++)
            json_array_append_new(row, json_integer((json_int_t)s->count[(size_t)k * (size_t)s->K + (size_t)p]));
        json_array_append_new(confusion, row);
    }
    json_object_set_new(j, "classes", classes);
    json_object_set_new(j, "confusion", confusion);
    return j;
}

static int multi_lang(const feed *f, int all_langs)
{
    return all_langs && f->kind == FEED_TEXT && f->n_langs > 1;
}

size_t scores_rows_at(const nn_model *m, int head, const feed *f, size_t n, int all_langs)
{
    const nn_node *hn = nn_model_node(m, head);
    return n * (size_t)(multi_lang(f, all_langs) ? f->n_langs : 1) * (size_t)hn->h * (size_t)hn->w;
}

size_t scores_rows(const nn_model *m, int head, const feed *f, int all_langs)
{
    return scores_rows_at(m, head, f, f->n, all_langs);
}

/* argmax (ties: the lower class) and its softmax probability of each of n rows of K scores;
 * prob (n, K), when not NULL, the whole softmax */
static void argmax_rows(const float *s, size_t n, int K, int32_t *pred, float *conf, float *prob)
{
    for (size_t r = 0; r < n; r++) {
        const float *x = s + r * (size_t)K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (x[k] > x[best]) best = k;
        pred[r] = best;
        if (!conf && !prob) continue;
        double z = 0.0;
        for (int k = 0; k < K; k++) z += exp((double)x[k] - (double)x[best]);
        if (conf) conf[r] = (float)(1.0 / z);
        for (int k = 0; prob && k < K; k++)
            prob[r * (size_t)K + (size_t)k] = (float)(exp((double)x[k] - (double)x[best]) / z);
    }
}

xd_status scores_predict_at(nn_model *m, int head, feed *f, const uint32_t *idx, size_t n_ex,
                            int all_langs, void *input, int32_t *pred, float *conf, float *prob,
                            xd_err *e)
{
    const int B = m->max_batch;
    const nn_node *hn = nn_model_node(m, head);
    const int K = hn->c;
    const size_t pos = (size_t)hn->h * (size_t)hn->w;
    const int multi = multi_lang(f, all_langs);
    const int passes = multi ? f->n_langs : 1;
    uint32_t *bidx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
    uint8_t *present = xd_xmalloc((size_t)B);
    /* only the layers the head reads: an early exit is scored without the ones after it */
    uint8_t *need = xd_xcalloc((size_t)m->n_nodes, 1);
    nn_model_needs(m, head, need);
    xd_status s = XD_OK;
    for (int lang = 0; lang < passes && s == XD_OK; lang++) {
        for (size_t i0 = 0; i0 < n_ex && s == XD_OK; i0 += (size_t)B) {
            int n = n_ex - i0 < (size_t)B ? (int)(n_ex - i0) : B;
            for (int b = 0; b < n; b++) bidx[b] = idx ? idx[i0 + (size_t)b] : (uint32_t)(i0 + (size_t)b);
            if (multi)
                s = feed_fill_lang(f, bidx, n, lang, input, present, e);
            else
                s = feed_fill(f, bidx, n, 0, 0, 0, input, e);
            if (s != XD_OK) break;
            nn_model_forward_some(m, input, n, NULL, need);
            s = nn_check_finite(nn_model_out(m, head), (size_t)n, pos * (size_t)K, bidx, 0,
                                "the model's output", e);
            if (s != XD_OK) break;
            size_t row0 = ((size_t)lang * n_ex + i0) * pos;
            argmax_rows(nn_model_out(m, head), (size_t)n * pos, K, pred + row0,
                        conf ? conf + row0 : NULL, prob ? prob + row0 * (size_t)K : NULL);
            for (int b = 0; multi && b < n; b++)
                if (!present[b])
                    for (size_t p = 0; p < pos; p++) pred[row0 + (size_t)b * pos + p] = -1;
        }
    }
    free(need);
    free(present);
    free(bidx);
    return s;
}

xd_status scores_predict(nn_model *m, int head, feed *f, int all_langs, void *input,
                         int32_t *pred, float *conf, xd_err *e)
{
    return scores_predict_at(m, head, f, NULL, f->n, all_langs, input, pred, conf, NULL, e);
}

void scores_row_truth(const nn_model *m, int head, const feed *f, const uint32_t *idx, size_t n,
                      int all_langs, const int32_t *labels, int32_t *truth)
{
    const nn_node *hn = nn_model_node(m, head);
    const size_t pos = (size_t)hn->h * (size_t)hn->w, rows = scores_rows_at(m, head, f, n, all_langs);
    for (size_t r = 0; r < rows; r++) {
        const size_t j = r / pos % n;
        truth[r] = labels[idx ? idx[j] : j];
    }
}
