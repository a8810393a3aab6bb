/* Fuzz target: IDX arrays, plain or gzip (io_idx_read_mem, which io_idx_read uses). The element
 * limit is 2^20 so that an honest header of a large array does not spend the run allocating. */
#include <stdlib.h>

#include "io/idx.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fz_copy(data, size);
    io_idx x;
    xd_err e;
    if (io_idx_read_mem(buf, size, "fuzz.idx", (size_t)1 << 20, &x, &e) == XD_OK) {
        size_t count = 1;
        for (int d = 0; d < x.ndim; d++) count *= x.dims[d];
        if (x.ndim < 1 || x.ndim > IO_IDX_MAX_DIMS || count != x.count)
            fz_fail("%d dimensions, %zu elements for a product of %zu", x.ndim, x.count, count);
        if (io_idx_expect(&x, x.type, x.ndim, "fuzz.idx", &e) != XD_OK)
            fz_fail("does not match its own type: %s", e.msg);
        io_idx_free(&x);
    }
    free(buf);
    return 0;
}
