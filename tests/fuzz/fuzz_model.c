/* Fuzz target: model descriptions (nn_model_build, as recipes and checkpoints use it). A model that
 * builds must build again from its canonical description, to the same description and sizes. */
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *desc = fz_copy_str(data, size);
    nn_model m, m2;
    xd_err e;
    if (nn_model_build(&m, desc, 1, 1, &e) == XD_OK) {
        if (nn_model_build(&m2, m.desc, 1, 1, &e) != XD_OK)
            fz_fail("the canonical description does not build: %s\n%s", e.msg, m.desc);
        if (strcmp(m.desc, m2.desc) != 0 || m.n_param != m2.n_param || m.n_nodes != m2.n_nodes)
            fz_fail("built twice differently:\n%s\n%s", m.desc, m2.desc);
        nn_model_free(&m2);
        nn_model_free(&m);
    }
    free(desc);
    return 0;
}
