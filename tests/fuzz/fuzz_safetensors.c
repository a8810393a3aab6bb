/* Fuzz target: safetensors files (io_st_open_mem, which io_st_open uses), then the lookups, the
 * shape check against its own tensors (which must pass) and what `xdistill inspect` prints. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fz_copy(data, size);
    io_st_file *f;
    xd_err e;
    if (io_st_open_mem(buf, size, "fuzz.safetensors", &f, &e) == XD_OK) {
        size_t n = io_st_count(f);
        io_tensor *own = malloc((n ? n : 1) * sizeof *own);
        if (!own) fz_fail("out of memory");
        for (size_t i = 0; i < n; i++) {
            const io_tensor *t = io_st_tensor(f, i);
            if (io_st_find(f, t->name) != t) fz_fail("tensor '%s' is not found by name", t->name);
            own[i] = *t;
        }
        if (io_st_check(f, own, n, &e) != XD_OK) fz_fail("fails its own check: %s", e.msg);
        free(own);
        for (size_t i = 0; i < io_st_meta_count(f); i++) {
            const io_kv *kv = io_st_meta_at(f, i);
            const char *v = io_st_meta(f, kv->key);
            if (!v || strcmp(v, kv->value) != 0) fz_fail("metadata '%s' is not found", kv->key);
        }
        io_st_describe(f, fz_null());
        io_st_close(f);
    }
    free(buf);
    return 0;
}
