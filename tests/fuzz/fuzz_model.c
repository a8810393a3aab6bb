/* Fuzz target: model descriptions (nn_model_build, as recipes and checkpoints use it). A model that
 * builds must build again from its canonical description, to the same description and sizes. */
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"
#include "tests/fuzz/fuzz.h"

/* Largest model built, in parameters and in activations per example (16 MiB of floats each, a
 * few times over with gradients and the second build). */
#define FZ_MODEL_MAX ((size_t)1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *desc = fz_copy_str(data, size);
    nn_model m, m2;
    xd_err e;
    /* every check runs in the plan; only models small enough to build twice within the fuzzer's
     * memory and time limits are built (the limits allow 2^28 parameters and as many activations, gigabytes) */
    int small = 0;
    if (nn_model_plan(&m, desc, 1, &e) == XD_OK) {
        size_t acts = 0; /* activations of one example */
        for (int i = 0; i < m.n_nodes; i++) acts += nn_model_node(&m, i)->act_n;
        small = m.n_param <= FZ_MODEL_MAX && acts <= FZ_MODEL_MAX;
        nn_model_free(&m);
    }
    if (small && nn_model_build(&m, desc, 1, 1, &e) == XD_OK) {
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
