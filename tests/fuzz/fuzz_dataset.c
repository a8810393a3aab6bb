/* Fuzz target: the data set container (io_dataset_open_mem, which io_dataset_open uses), then
 * every section's view, every string and what `xdistill inspect` prints. */
#include <stdlib.h>
#include <string.h>

#include "io/dataset.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fz_copy(data, size);
    io_dataset *ds;
    xd_err e;
    if (io_dataset_open_mem(buf, size, "fuzz.xds", &ds, &e) == XD_OK) {
        for (size_t i = 0; i < io_dataset_count(ds); i++) {
            const char *name = io_dataset_section_name(ds, i);
            if (io_dataset_section_kind(ds, i) == IO_SECTION_ARRAY) {
                const io_tensor *t = io_dataset_find(ds, name), *r;
                if (!t || io_dataset_require(ds, name, t->dtype, t->ndim, &r, &e) != XD_OK ||
                    r != t)
                    fz_fail("array '%s' is not found by name", name);
                continue;
            }
            const io_strings *s;
            if (io_dataset_require_strings(ds, name, &s, &e) != XD_OK)
                fz_fail("string table '%s' is not found by name", name);
            for (size_t k = 0; k < s->n; k++) {
                size_t len;
                const char *str = io_strings_get(s, k, &len);
                if (strlen(str) != len) fz_fail("string %zu of '%s' has a wrong length", k, name);
            }
        }
        for (size_t i = 0; i < io_dataset_meta_count(ds); i++) {
            const io_kv *kv = io_dataset_meta_at(ds, i);
            if (io_dataset_meta(ds, kv->key) != kv->value)
                fz_fail("metadata '%s' is not found", kv->key);
        }
        io_dataset_describe(ds, fz_null());
        io_dataset_close(ds);
    }
    free(buf);
    return 0;
}
