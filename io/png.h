/* PNG decode and encode through libpng.
 *
 * Decoding takes every PNG colour type (grey, grey+alpha, RGB, RGBA, palette with or without
 * tRNS), bit depths 1 to 16 (16-bit is scaled to 8 with rounding: v8 = round(v16 * 255 / 65535))
 * and Adam7 interlacing, and returns 8-bit pixels in the channel count the caller asks for (see
 * io_image_opts). libpng's errors and warnings never reach the terminal: errors become one
 * XD_EFORMAT message naming the file, the byte offset reached and libpng's reason. The file must
 * be complete up to IEND; a truncated file is an error, and so is one whose compressed image data
 * goes on after the last row (more than twice the row's bytes and 16 KiB), which libpng would
 * inflate to its end however long (a 2 MB file of it is 2 GB). */
#ifndef XD_IO_PNG_H
#define XD_IO_PNG_H

#include <stddef.h>

#include "core/status.h"
#include "io/image.h"

/* Reads path (errors name it). opt may be NULL. On failure img is left empty. */
xd_status io_png_read(const char *path, const io_image_opts *opt, io_image *img, xd_err *e);
/* Same decoder on a buffer; name (may be NULL) stands for the source in error messages. */
xd_status io_png_read_mem(const void *data, size_t n, const char *name, const io_image_opts *opt,
                          io_image *img, xd_err *e);

/* Writes an 8-bit PNG of img->c = 1 (grey), 3 (RGB) or 4 (RGBA) channels, atomically: nothing is
 * left under path or beside it when writing fails. */
xd_status io_png_write(const char *path, const io_image *img, xd_err *e);
/* The same encoding into a new buffer (*data, *n bytes; caller frees); name (may be NULL) stands
 * for the image in error messages. */
xd_status io_png_encode(const io_image *img, const char *name, void **data, size_t *n, xd_err *e);

#endif
