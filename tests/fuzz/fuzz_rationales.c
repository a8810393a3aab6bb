/* Fuzz target: rationale records (io_manifest_read_rationales), stopping at the first bad record
 * and with bad records skipped. Every record read has an input and a rationale that are not
 * blank and a label among the classes; a skipped count comes with its first message. */
#include <string.h>

#include "io/manifest.h"
#include "modalities/text/utf8.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("fuzz.jsonl", data, size);
    for (int skip = 0; skip < 2; skip++) {
        io_manifest m;
        xd_err e;
        if (io_manifest_read_rationales(path, NULL, NULL, skip, &m, &e) == XD_OK) {
            if (m.paths) fz_fail("rationale records have no image paths");
            for (size_t i = 0; i < m.n; i++) {
                if (txt_is_blank(m.texts[i]) || txt_is_blank(m.rationales[i]))
                    fz_fail("record %zu has a blank input or rationale", i);
                if (m.labels[i] < 0 || (size_t)m.labels[i] >= m.n_classes)
                    fz_fail("record %zu has label %d of %zu classes", i, (int)m.labels[i],
                            m.n_classes);
            }
            if (m.skipped && !m.first_skipped) fz_fail("%zu skipped, no message", m.skipped);
            if (!skip && m.skipped) fz_fail("records skipped without skip_bad");
        }
        io_manifest_free(&m);
    }
    return 0;
}
