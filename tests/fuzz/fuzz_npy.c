/* Fuzz target: NumPy .npy files (io_npy_open_mem, which io_npy_open uses), then what `xdistill
 * inspect` prints about them (every value is read). */
#include <stdlib.h>

#include "io/npy.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fz_copy(data, size);
    io_npy a;
    xd_err e;
    if (io_npy_open_mem(buf, size, "fuzz.npy", &a, &e) == XD_OK) {
        size_t bytes;
        if (io_tensor_bytes(&a.t, &bytes) != 0 || a.data_offset + bytes != size)
            fz_fail("data at %zu does not end the %zu-byte file", a.data_offset, size);
        io_npy_describe(&a, fz_null());
    }
    io_npy_close(&a);
    free(buf);
    return 0;
}
