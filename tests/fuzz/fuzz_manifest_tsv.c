/* Fuzz target: TSV manifests (io_manifest_read_tsv, from a file: image paths are resolved against
 * its folder). */
#include "io/manifest.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_manifest(io_manifest_read_tsv, "fuzz.tsv", data, size);
    return 0;
}
