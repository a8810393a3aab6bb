/* JPEG decode and encode through libjpeg-turbo.
 *
 * Decoding takes baseline and progressive JPEGs, grey or colour (YCbCr or RGB), and returns 8-bit
 * pixels in the channel count the caller asks for (see io_image_opts): 0 = as stored (grey -> 1,
 * colour -> 3), 1 = the luma channel (Rec.601 weights, as JFIF defines Y), 3 = RGB, 4 = RGB with
 * alpha 255. CMYK / YCCK files are XD_EUNSUPPORTED.
 *
 * libjpeg never prints: its errors become one XD_EFORMAT message naming the file, the byte offset
 * reached and libjpeg's reason. Warnings that mean pixels are missing or wrong (premature end of
 * file, corrupt entropy-coded data) are errors too, since libjpeg would otherwise fill the gap
 * with grey and call the image good. Files with more than IO_JPEG_MAX_SCANS scans are refused:
 * thousands of tiny progressive scans make a small file take minutes to decode. An EXIF
 * orientation (a camera's APP1 marker: the picture was taken turned or mirrored) is applied, so
 * the pixels come as the picture is shown: orientations 5..8 swap width and height. */
#ifndef XD_IO_JPEG_H
#define XD_IO_JPEG_H

#include <stddef.h>

#include "core/status.h"
#include "io/image.h"

#define IO_JPEG_MAX_SCANS 500

/* Reads path (errors name it). opt may be NULL. On failure img is left empty. */
xd_status io_jpeg_read(const char *path, const io_image_opts *opt, io_image *img, xd_err *e);
/* Same decoder on a buffer; name (may be NULL) stands for the source in error messages. */
xd_status io_jpeg_read_mem(const void *data, size_t n, const char *name, const io_image_opts *opt,
                           io_image *img, xd_err *e);

/* Writes a baseline JPEG of img->c = 1 (grey) or 3 (RGB) channels at quality 1..100 (4:2:0
 * chroma), atomically: nothing is left under path or beside it when writing fails. */
xd_status io_jpeg_write(const char *path, const io_image *img, int quality, xd_err *e);

#endif
