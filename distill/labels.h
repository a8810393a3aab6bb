/* Which training labels a run may see: the low-label settings of a recipe, and the validation
 * examples held out of them; and the names of a label set's classes, matched by name.
 *
 * Stratified and seeded: per class, the labelled examples are shuffled with the stream
 * (seed, class, XD_RNG_SPLIT) and the first k are kept, k = per_class when given, else
 * round(fraction * count) (at least one when fraction > 0 and the class has any; none at 0). So 60 labels
 * per class means the same 600 images for a seed, whatever else the recipe changes. */
#ifndef XD_DISTILL_LABELS_H
#define XD_DISTILL_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/dataset.h"

/* labels (n) in [0, n_classes); mask_in (n bytes, a data set's label_mask) or NULL = all
 * labelled; fraction in [0, 1]; per_class >= 0 (0 = use fraction). Writes mask_out (a set of n
 * bits, core/bits.h) and returns the number kept in *kept. Without a selection (fraction 1,
 * per_class 0) it needs no memory of its own; with one, an index over the largest class. */
xd_status labels_select(const int32_t *labels, const uint8_t *mask_in, size_t n, int n_classes,
                        double fraction, int per_class, uint64_t seed, uint64_t *mask_out,
                        size_t *kept, xd_err *e);

/* The validation examples of a run (data.val_fraction): per class, from the examples whose label
 * the run may see (sel), the first k of them shuffled by the stream (seed, class, XD_RNG_VALID),
 * k = round(fraction * count), at least 1 when the class has 2 or more and at most count - 1, so
 * that every class keeps a training label. They are moved from sel to val (both sets of n bits);
 * *n_val gets their number. fraction in [0, 1). */
xd_status labels_hold_out(const int32_t *labels, uint64_t *sel, size_t n, int n_classes,
                          double fraction, uint64_t seed, uint64_t *val, size_t *n_val, xd_err *e);

/* Balanced class weights (scikit-learn's class_weight="balanced"): w[c] = N / (K n_c), where
 * n_c counts the examples of class c among those of the set sel (n bits; NULL: all n), N is their
 * sum and K the number of classes with n_c > 0; w[c] = 0 for a class without examples. The weights'
 * mean over those N examples is 1. w (n_classes). */
void labels_balanced_weights(const int32_t *labels, const uint64_t *sel, size_t n, int n_classes,
                             float *w);

/* Class names. A label set "label" or "label.NAME" of a data set is named by its string table
 * "classes" or "classes.NAME"; NULL when the data set has none. */
const io_strings *labels_class_table(const io_dataset *ds, const char *label);
/* The n strings of a table as an array of pointers into it (a new array; free it). */
const char **labels_table_names(const io_strings *t);

/* Maps the classes `from` (n_from names, what_from says whose: "FILE: classes") onto `to` by
 * name: map[i] = the index in to of from[i]. A name of from that to lacks is an error (XD_EARG)
 * that lists both sets. *same (may be NULL) = 1 when the two lists are equal, order included. */
xd_status labels_match_names(const char *const *from, size_t n_from, const char *what_from,
                             const char *const *to, size_t n_to, const char *what_to,
                             int32_t *map, int *same, xd_err *e);

#endif
