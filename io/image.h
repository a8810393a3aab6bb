/* Decoded images: the 8-bit pixel buffer that PNG and JPEG decoders fill, the limits that keep a
 * lying header from making us allocate gigabytes, and a reader that picks the decoder by the
 * file's magic bytes (never by its extension).
 *
 * Pixels are 8-bit, row-major and interleaved: px[(y * w + x) * c + k], with c = 1 (grey),
 * 3 (RGB) or 4 (RGBA). Gamma and colour-profile chunks are ignored: values are returned as
 * stored in the file. */
#ifndef XD_IO_IMAGE_H
#define XD_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int w, h, c;
    uint8_t *px; /* (h, w, c) */
} io_image;

/* Default limits. A header claiming more is rejected before anything is allocated.
 * 1<<26 pixels is 256 MiB as RGBA; a side of 32768 is far beyond any training image. */
#define IO_IMAGE_MAX_PIXELS ((size_t)1 << 26)
#define IO_IMAGE_MAX_DIM 32768
/* Largest encoded file read into memory for decoding. */
#define IO_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

/* What the caller wants from a decoder. A zeroed struct (or NULL) means: channels as stored,
 * black background, default limits. */
typedef struct {
    int channels;      /* 0 = as stored (grey -> 1, grey+alpha -> 4, RGB -> 3, RGBA -> 4), or 1, 3, 4 */
    uint8_t bg[3];     /* RGB background that alpha is composited over when channels is 1 or 3 */
    size_t max_pixels; /* 0 = IO_IMAGE_MAX_PIXELS */
    int max_dim;       /* 0 = IO_IMAGE_MAX_DIM */
} io_image_opts;

typedef enum { IO_IMAGE_UNKNOWN = 0, IO_IMAGE_PNG, IO_IMAGE_JPEG, IO_IMAGE_KIND_COUNT } io_image_kind;

void io_image_free(io_image *img);

/* Which format the first bytes belong to (PNG signature, JPEG SOI + marker). */
io_image_kind io_image_sniff(const void *data, size_t n);
const char *io_image_kind_name(io_image_kind k);

/* Decodes a PNG or JPEG, chosen by magic bytes; anything else is XD_EFORMAT "not a PNG or JPEG".
 * name (may be NULL) is used in error messages of the memory version. */
/* A decoder from memory (io_png_read_mem, io_jpeg_read_mem, io_image_read_mem). */
typedef xd_status (*io_image_decoder)(const void *data, size_t n, const char *name,
                                      const io_image_opts *opt, io_image *img, xd_err *e);
/* Reads path whole (at most IO_IMAGE_MAX_FILE_BYTES) and decodes it with dec, naming path in
 * errors. */
xd_status io_image_read_with(const char *path, io_image_decoder dec, const io_image_opts *opt,
                             io_image *img, xd_err *e);
xd_status io_image_read(const char *path, const io_image_opts *opt, io_image *img, xd_err *e);
xd_status io_image_read_mem(const void *data, size_t n, const char *name, const io_image_opts *opt,
                            io_image *img, xd_err *e);

/* ---- shared by the decoders ---- */

/* XD_EARG unless opt is NULL or asks for 0, 1, 3 or 4 channels with non-negative limits. */
xd_status io_image_check_opts(const char *name, const io_image_opts *opt, xd_err *e);
/* XD_EFORMAT naming the file and the size when w x h is empty or exceeds the limits in opt. */
xd_status io_image_check_size(const char *name, uint64_t w, uint64_t h, const io_image_opts *opt,
                              xd_err *e);
/* Sets img to w x h x c with an uninitialised buffer (xd_try_alloc); XD_ENOMEM naming the file. */
xd_status io_image_alloc(io_image *img, int w, int h, int c, const char *name, xd_err *e);

/* Rec.601 luma, the weights JPEG/JFIF uses for Y: Y = 0.299 R + 0.587 G + 0.114 B, rounded. */
static inline uint8_t io_luma601(uint8_t r, uint8_t g, uint8_t b)
{
    return (uint8_t)((299u * r + 587u * g + 114u * b + 500u) / 1000u);
}

/* Converts n pixels of src_c channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) to dst_c channels
 * (1, 3 or 4). Dropping alpha composites over bg: out = (a * fg + (255 - a) * bg) / 255, rounded,
 * per RGB channel; grey output is the Rec.601 luma of the composited RGB. */
void io_pixels_convert(const uint8_t *src, int src_c, uint8_t *dst, int dst_c, size_t n,
                       const uint8_t bg[3]);

#endif
