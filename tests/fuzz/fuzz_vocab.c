/* Fuzz target: vocabulary files (txt_vocab_parse, which txt_vocab_load uses). Every token of a
 * vocabulary that loads must be found again under its own id. */
#include <stdlib.h>

#include "modalities/text/vocab.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_copy(data, size);
    txt_vocab v;
    xd_err e;
    if (txt_vocab_parse("fuzz.vocab", text, size, &v, &e) == XD_OK) {
        for (uint32_t i = 0; i < v.n; i++) {
            size_t len;
            const char *tok = txt_vocab_token(&v, i, &len);
            if (txt_vocab_find(&v, tok, len) != (int32_t)i) fz_fail("token %u is not found", i);
        }
        txt_vocab_free(&v);
    }
    free(text);
    return 0;
}
