/* Fuzz target: the JPEG decoder (io_jpeg_read_mem, which io_jpeg_read and io_image_read use). */
#include "io/jpeg.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_image(io_jpeg_read_mem, data, size);
    return 0;
}
