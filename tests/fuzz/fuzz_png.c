/* Fuzz target: the PNG decoder (io_png_read_mem, which io_png_read and io_image_read use). */
#include "io/png.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_image(io_png_read_mem, data, size);
    return 0;
}
