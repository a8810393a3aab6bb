/* Label selection and validation hold-out (see labels.h). */
#include "distill/labels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bits.h"
#include "core/mem.h"
#include "core/rng.h"

/* Whether example i is in the byte mask (NULL: all) and in the bit set (NULL: all) */
static int in_pool(const uint8_t *mask, const uint64_t *bits, size_t i)
{
    return (!mask || mask[i]) && (!bits || xd_bit(bits, i));
}

/* The examples of class c in the pool (in_pool) into idx; returns their number. */
static uint32_t class_members(const int32_t *labels, const uint8_t *mask, const uint64_t *bits,
                              size_t n, int c, uint32_t *idx)
{
    uint32_t cnt = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] == c && in_pool(mask, bits, i)) idx[cnt++] = (uint32_t)i;
    return cnt;
}

/* An index array for the largest class in the pool (at least one entry):
 * what a per-class shuffle needs, a tenth of the examples with ten even classes. */
static uint32_t *class_index(const int32_t *labels, const uint8_t *mask, const uint64_t *bits,
                             size_t n, int n_classes)
{
    size_t *cnt = xd_xcalloc((size_t)n_classes, sizeof *cnt), most = 1;
    for (size_t i = 0; i < n; i++)
        if (in_pool(mask, bits, i) && labels[i] >= 0 && labels[i] < n_classes) cnt[labels[i]]++;
    for (int c = 0; c < n_classes; c++) most = cnt[c] > most ? cnt[c] : most;
    free(cnt);
    return xd_xmalloc(sizeof(uint32_t) * most);
}

xd_status labels_select(const int32_t *labels, const uint8_t *mask_in, size_t n, int n_classes,
                        double fraction, int per_class, uint64_t seed, uint64_t *mask_out,
                        size_t *kept, xd_err *e)
{
    if (!(fraction >= 0.0 && fraction <= 1.0))
        return xd_fail(e, XD_EARG, "label fraction %g is not in [0, 1]", fraction);
    if (per_class < 0) return xd_fail(e, XD_EARG, "labels per class %d is negative", per_class);
    if (n_classes <= 0) return xd_fail(e, XD_EARG, "no classes");
    if (n > UINT32_MAX) return xd_fail(e, XD_EARG, "too many examples (%zu)", n);
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return xd_fail(e, XD_EFORMAT, "example %zu has label %d, outside 0..%d", i, labels[i],
                           n_classes - 1);
    memset(mask_out, 0, sizeof(uint64_t) * xd_bits_words(n));
    size_t total = 0;
    if (per_class == 0 && fraction >= 1.0) {
        /* no selection: every labelled example */
        for (size_t i = 0; i < n; i++)
            if (!mask_in || mask_in[i]) {
                xd_bit_set(mask_out, i);
                total++;
            }
        if (kept) *kept = total;
        return XD_OK;
    }
    uint32_t *idx = class_index(labels, mask_in, NULL, n, n_classes);
    for (int c = 0; c < n_classes; c++) {
        uint32_t cnt = class_members(labels, mask_in, NULL, n, c, idx);
        uint32_t k = cnt;
        if (per_class > 0) {
            k = (uint32_t)per_class < cnt ? (uint32_t)per_class : cnt;
        } else if (fraction < 1.0) {
            k = (uint32_t)llround(fraction * cnt);
            if (k == 0 && cnt > 0 && fraction > 0.0) k = 1;
        }
        if (k < cnt) {
            xd_rng r = xd_rng_make(seed, (uint64_t)c, XD_RNG_SPLIT);
            xd_rng_shuffle(&r, idx, cnt);
        }
        for (uint32_t j = 0; j < k; j++) xd_bit_set(mask_out, idx[j]);
        total += k;
    }
    free(idx);
    if (kept) *kept = total;
    return XD_OK;
}

void labels_balanced_weights(const int32_t *labels, const uint64_t *sel, size_t n, int n_classes,
                             float *w)
{
    size_t *cnt = xd_xcalloc((size_t)n_classes + 1, sizeof *cnt), total = 0;
    for (size_t i = 0; i < n; i++)
        if (!sel || xd_bit(sel, i)) {
            cnt[labels[i]]++;
            total++;
        }
    int present = 0;
    for (int c = 0; c < n_classes; c++) present += cnt[c] > 0;
    for (int c = 0; c < n_classes; c++)
        w[c] = cnt[c] ? (float)((double)total / ((double)present * (double)cnt[c])) : 0.0f;
    free(cnt);
}

xd_status labels_hold_out(const int32_t *labels, uint64_t *sel, size_t n, int n_classes,
                          double fraction, uint64_t seed, uint64_t *val, size_t *n_val, xd_err *e)
{
    if (!(fraction >= 0.0 && fraction < 1.0))
        return xd_fail(e, XD_EARG, "validation fraction %g is not in [0, 1)", fraction);
    if (n > UINT32_MAX) return xd_fail(e, XD_EARG, "too many examples (%zu)", n);
    memset(val, 0, sizeof(uint64_t) * xd_bits_words(n));
    uint32_t *idx = class_index(labels, NULL, sel, n, n_classes);
    size_t total = 0;
    for (int c = 0; c < n_classes; c++) {
        uint32_t cnt = class_members(labels, NULL, sel, n, c, idx);
        uint32_t k = (uint32_t)llround(fraction * cnt);
        if (k == 0 && cnt >= 2 && fraction > 0.0) k = 1;
        if (cnt > 0 && k > cnt - 1) k = cnt - 1;
        xd_rng r = xd_rng_make(seed, (uint64_t)c, XD_RNG_VALID);
        xd_rng_shuffle(&r, idx, cnt);
        for (uint32_t j = 0; j < k; j++) {
            xd_bit_set(val, idx[j]);
            xd_bit_clear(sel, idx[j]);
        }
        total += k;
    }
    free(idx);
    *n_val = total;
    return XD_OK;
}

const io_strings *labels_class_table(const io_dataset *ds, const char *label)
{
    /* "label" -> "classes", "label.NAME" -> "classes.NAME" */
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "classes%s", strncmp(label, "label", 5) == 0 ? label + 5 : "");
    return io_dataset_find_strings(ds, name);
}

const char **labels_table_names(const io_strings *t)
{
    const char **names = xd_xmalloc(sizeof *names * (t->n ? t->n : 1));
    for (size_t i = 0; i < t->n; i++) names[i] = io_strings_get(t, i, NULL);
    return names;
}

/* "a, b, c" of n names (the first 40, then "..."), in a new string. */
static char *name_list(const char *const *names, size_t n)
{
    size_t len = 8;
    for (size_t i = 0; i < n && i < 40; i++) len += strlen(names[i]) + 2;
    char *out = xd_xmalloc(len);
    size_t at = 0;
    for (size_t i = 0; i < n && i < 40; i++)
        at += (size_t)snprintf(out + at, len - at, "%s%s", i ? ", " : "", names[i]);
    if (n > 40) snprintf(out + at, len - at, ", ...");
    if (!n) snprintf(out, len, "none");
    return out;
}

xd_status labels_match_names(const char *const *from, size_t n_from, const char *what_from,
                             const char *const *to, size_t n_to, const char *what_to,
                             int32_t *map, int *same, xd_err *e)
{
    if (same) *same = n_from == n_to;
    for (size_t i = 0; i < n_from; i++) {
        map[i] = -1;
        for (size_t j = 0; j < n_to && map[i] < 0; j++)
            if (strcmp(from[i], to[j]) == 0) map[i] = (int32_t)j;
        if (same && map[i] != (int32_t)i) *same = 0;
        if (map[i] >= 0) continue;
        char *a = name_list(from, n_from), *b = name_list(to, n_to);
        xd_status s = xd_fail(e, XD_EARG, "%s: class '%s' is not one of %s (%s has %zu: %s; %s has "
                                          "%zu: %s)", what_from, from[i], what_to, what_from,
                              n_from, a, what_to, n_to, b);
        free(a);
        free(b);
        return s;
    }
    return XD_OK;
}
