/* Label selection (see labels.h). */
#include "distill/labels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"

xd_status labels_select(const int32_t *labels, const uint8_t *mask_in, size_t n, int n_classes,
                        double fraction, int per_class, uint64_t seed, uint8_t *mask_out,
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
    memset(mask_out, 0, n);
    uint32_t *idx = xd_xmalloc(sizeof(uint32_t) * (n ? n : 1));
    size_t total = 0;
    for (int c = 0; c < n_classes; c++) {
        uint32_t cnt = 0;
        for (size_t i = 0; i < n; i++)
            if (labels[i] == c && (!mask_in || mask_in[i])) idx[cnt++] = (uint32_t)i;
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
        for (uint32_t j = 0; j < k; j++) mask_out[idx[j]] = 1;
        total += k;
    }
    free(idx);
    if (kept) *kept = total;
    return XD_OK;
}
