/* Decoded images (see image.h): limits, channel conversion with alpha compositing, and the
 * reader that dispatches to the PNG or JPEG decoder by magic bytes. */
#include "io/image.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/file.h"
#include "io/jpeg.h"
#include "io/png.h"

static const char *const image_kind_names[] = {
    [IO_IMAGE_UNKNOWN] = "unknown",
    [IO_IMAGE_PNG] = "PNG",
    [IO_IMAGE_JPEG] = "JPEG",
};
static_assert(sizeof image_kind_names / sizeof image_kind_names[0] == IO_IMAGE_KIND_COUNT,
              "image_kind_names must name every io_image_kind");

const char *io_image_kind_name(io_image_kind k)
{
    return (k >= 0 && k < IO_IMAGE_KIND_COUNT) ? image_kind_names[k] : "unknown";
}

void io_image_free(io_image *img)
{
    if (!img) return;
    free(img->px);
    memset(img, 0, sizeof *img);
}

io_image_kind io_image_sniff(const void *data, size_t n)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *p = data;
    if (n >= sizeof png_sig && memcmp(p, png_sig, sizeof png_sig) == 0) return IO_IMAGE_PNG;
    /* SOI followed by the first byte of any marker */
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return IO_IMAGE_JPEG;
    return IO_IMAGE_UNKNOWN;
}

xd_status io_image_check_opts(const char *name, const io_image_opts *opt, xd_err *e)
{
    if (!opt) return XD_OK;
    int c = opt->channels;
    if (c != 0 && c != 1 && c != 3 && c != 4)
        return xd_fail(e, XD_EARG, "%s: cannot decode to %d channels (use 0 = as stored, 1, 3 or 4)",
                       name, c);
    if (opt->max_dim < 0)
        return xd_fail(e, XD_EARG, "%s: negative image size limit %d", name, opt->max_dim);
    return XD_OK;
}

xd_status io_image_check_size(const char *name, uint64_t w, uint64_t h, const io_image_opts *opt,
                              xd_err *e)
{
    uint64_t max_dim = (opt && opt->max_dim > 0) ? (uint64_t)opt->max_dim : IO_IMAGE_MAX_DIM;
    uint64_t max_px = (opt && opt->max_pixels > 0) ? (uint64_t)opt->max_pixels : IO_IMAGE_MAX_PIXELS;
    if (w == 0 || h == 0)
        return xd_fail(e, XD_EFORMAT, "%s: header claims an empty image (%llux%llu)", name,
                       (unsigned long long)w, (unsigned long long)h);
    /* w and h come from 32-bit header fields, so w * h cannot overflow 64 bits */
    if (w > max_dim || h > max_dim || w * h > max_px)
        return xd_fail(e, XD_EFORMAT,
                       "%s: header claims %llux%llu pixels, more than the limit (%llu per side, "
                       "%llu in all)",
                       name, (unsigned long long)w, (unsigned long long)h,
                       (unsigned long long)max_dim, (unsigned long long)max_px);
    return XD_OK;
}

xd_status io_image_alloc(io_image *img, int w, int h, int c, const char *name, xd_err *e)
{
    memset(img, 0, sizeof *img);
    size_t bytes;
    if (w <= 0 || h <= 0 || c <= 0 || xd_mul3_size((size_t)w, (size_t)h, (size_t)c, &bytes) != 0)
        return xd_fail(e, XD_EARG, "%s: bad image size %dx%dx%d", name, w, h, c);
    img->px = xd_try_alloc(bytes);
    if (!img->px) return xd_fail(e, XD_ENOMEM, "%s: cannot allocate %zu bytes for pixels", name, bytes);
    img->w = w;
    img->h = h;
    img->c = c;
    return XD_OK;
}

/* out = (a * fg + (255 - a) * bg) / 255, rounded to nearest */
static inline uint8_t over(uint8_t fg, uint8_t a, uint8_t bg)
{
    return (uint8_t)((a * (unsigned)fg + (255u - a) * bg + 127u) / 255u);
}

/* Not parallelised: the data pipeline decodes many small images at once, one per thread. */
void io_pixels_convert(const uint8_t *src, int src_c, uint8_t *dst, int dst_c, size_t n,
                       const uint8_t bg[3])
{
    XD_ASSERT(src_c >= 1 && src_c <= 4 && (dst_c == 1 || dst_c == 3 || dst_c == 4));
    static const uint8_t black[3] = {0, 0, 0};
    if (!bg) bg = black;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = src + i * (size_t)src_c;
        uint8_t *d = dst + i * (size_t)dst_c;
        uint8_t r, g, b, a;
        switch (src_c) {
        case 1: r = g = b = s[0]; a = 255; break;
        case 2: r = g = b = s[0]; a = s[1]; break;
        case 3: r = s[0]; g = s[1]; b = s[2]; a = 255; break;
        default: r = s[0]; g = s[1]; b = s[2]; a = s[3]; break;
        }
        if (dst_c == 4) {
            d[0] = r; d[1] = g; d[2] = b; d[3] = a;
            continue;
        }
        if (a != 255) {
            r = over(r, a, bg[0]);
            g = over(g, a, bg[1]);
            b = over(b, a, bg[2]);
        }
        if (dst_c == 3) {
            d[0] = r; d[1] = g; d[2] = b;
        } else {
            d[0] = io_luma601(r, g, b);
        }
    }
}

xd_status io_image_read_mem(const void *data, size_t n, const char *name, const io_image_opts *opt,
                            io_image *img, xd_err *e)
{
    if (!name) name = "<memory>";
    memset(img, 0, sizeof *img);
    if (n == 0) return xd_fail(e, XD_EFORMAT, "%s: empty file, not a PNG or JPEG", name);
    switch (io_image_sniff(data, n)) {
    case IO_IMAGE_PNG: return io_png_read_mem(data, n, name, opt, img, e);
    case IO_IMAGE_JPEG: return io_jpeg_read_mem(data, n, name, opt, img, e);
    default: return xd_fail(e, XD_EFORMAT, "%s: not a PNG or JPEG (unknown magic bytes)", name);
    }
}

xd_status io_image_read_with(const char *path, io_image_decoder dec, const io_image_opts *opt,
                             io_image *img, xd_err *e)
{
    memset(img, 0, sizeof *img);
    void *data;
    size_t n;
    xd_status s = io_read_all(path, IO_IMAGE_MAX_FILE_BYTES, &data, &n, e);
    if (s != XD_OK) return s;
    s = dec(data, n, path, opt, img, e);
    free(data);
    return s;
}

xd_status io_image_read(const char *path, const io_image_opts *opt, io_image *img, xd_err *e)
{
    return io_image_read_with(path, io_image_read_mem, opt, img, e);
}
