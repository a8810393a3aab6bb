/* Confusion matrices and per-row predictions (see scores.h). */
#include "distill/scores.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void scores_init(scores *s, int K)
{
    s->K = K;
    s->count = xd_xcalloc((size_t)K * (size_t)K, sizeof *s->count);
    s->total = s->correct = 0;
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

static int multi_lang(const feed *f, int all_langs)
{
    return all_langs && f->kind == FEED_TEXT && f->n_langs > 1;
}

size_t scores_rows(const nn_model *m, int head, const feed *f, int all_langs)
{
    const nn_node *hn = nn_model_node(m, head);
    return f->n * (size_t)(multi_lang(f, all_langs) ? f->n_langs : 1) * (size_t)hn->h * (size_t)hn->w;
}

/* argmax (ties: the lower class) and its softmax probability of each of n rows of K scores */
static void argmax_rows(const float *s, size_t n, int K, int32_t *pred, float *conf)
{
    for (size_t r = 0; r < n; r++) {
        const float *x = s + r * (size_t)K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (x[k] > x[best]) best = k;
        pred[r] = best;
        if (!conf) continue;
        double z = 0.0;
        for (int k = 0; k < K; k++) z += exp((double)x[k] - (double)x[best]);
        conf[r] = (float)(1.0 / z);
    }
}

xd_status scores_predict(nn_model *m, int head, feed *f, int all_langs, void *input,
                         int32_t *pred, float *conf, xd_err *e)
{
    const int B = m->max_batch;
    const nn_node *hn = nn_model_node(m, head);
    const int K = hn->c;
    const size_t pos = (size_t)hn->h * (size_t)hn->w;
    const int multi = multi_lang(f, all_langs);
    const int passes = multi ? f->n_langs : 1;
    uint32_t *idx = xd_xmalloc(sizeof(uint32_t) * (size_t)B);
    uint8_t *present = xd_xmalloc((size_t)B);
    /* only the layers the head reads: an early exit is scored without the ones after it */
    uint8_t *need = xd_xcalloc((size_t)m->n_nodes, 1);
    nn_model_needs(m, head, need);
    xd_status s = XD_OK;
    for (int lang = 0; lang < passes && s == XD_OK; lang++) {
        for (size_t i0 = 0; i0 < f->n && s == XD_OK; i0 += (size_t)B) {
            int n = f->n - i0 < (size_t)B ? (int)(f->n - i0) : B;
            for (int b = 0; b < n; b++) idx[b] = (uint32_t)(i0 + (size_t)b);
            if (multi)
                s = feed_fill_lang(f, idx, n, lang, input, present, e);
            else
                s = feed_fill(f, idx, n, 0, 0, 0, input, e);
            if (s != XD_OK) break;
            nn_model_forward_some(m, input, n, NULL, need);
            size_t row0 = ((size_t)lang * f->n + i0) * pos;
            argmax_rows(nn_model_out(m, head), (size_t)n * pos, K, pred + row0,
                        conf ? conf + row0 : NULL);
            for (int b = 0; multi && b < n; b++)
                if (!present[b])
                    for (size_t p = 0; p < pos; p++) pred[row0 + (size_t)b * pos + p] = -1;
        }
    }
    free(need);
    free(present);
    free(idx);
    return s;
}
