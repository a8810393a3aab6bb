/* Which training labels a run may see: the low-label settings of a recipe.
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

/* labels (n) in [0, n_classes); mask_in (n) or NULL = all labelled; fraction in [0, 1];
 * per_class >= 0 (0 = use fraction). Writes mask_out (n) and returns the number kept in *kept. */
xd_status labels_select(const int32_t *labels, const uint8_t *mask_in, size_t n, int n_classes,
                        double fraction, int per_class, uint64_t seed, uint8_t *mask_out,
                        size_t *kept, xd_err *e);

#endif
