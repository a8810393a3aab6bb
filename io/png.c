/* PNG decode and encode through libpng (see png.h).
 *
 * libpng reports errors by calling our error function, which keeps the message and longjmps back
 * to the setjmp in png_decode / png_encode. Everything those functions touch after setjmp lives
 * in the reader/writer struct owned by the caller, so nothing is lost to the longjmp; the caller
 * frees it in one place whatever happened. Decoding reads from memory: the file is read whole
 * first (bounded by IO_IMAGE_MAX_FILE_BYTES), so the same core serves paths and buffers. */
#include "io/png.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/dtype.h"
#include "io/file.h"

/* libpng's last error message; the error pointer of both read and write structs points here. */
typedef struct {
    char msg[256];
} png_errbuf;

/* Compressed image data that libpng may read from the start of the last row on, besides twice
 * the row's bytes: the end of the deflate stream (a few bytes) with room to spare. More is
 * refused unread: libpng inflates all of it, within the last row's read, to find the stream's end
 * (a 2 MB IDAT of zeros after the rows is 2 GB to inflate). */
#define PNG_TAIL_MAX ((size_t)16 << 10)

typedef struct {
    png_errbuf err;
    const char *name;
    const uint8_t *data; /* (n) the encoded file */
    size_t n, pos;       /* pos: bytes handed to libpng so far */
    int last_row;        /* the last row is being read: IDAT bytes read now count in tail */
    size_t chunk, tail;  /* chunk: offset of the chunk that holds pos (once last_row) */
    size_t tail_max;     /* tail allowed: twice the row's bytes and PNG_TAIL_MAX */
    const io_image_opts *opt;
    png_structp png;
    png_infop info;
    io_image out;
    uint8_t *tmp;    /* (h, w, stored channels) when a conversion is needed */
    png_bytep *rows; /* (h) row pointers into the decode buffer */
    xd_err *e;
} png_reader;

typedef struct {
    png_errbuf err;
    const char *name; /* the target, for messages */
    io_atomic out;    /* a file target */
    uint8_t *mem;     /* a memory target (when to_mem): mem[0..mem_n) of mem_cap bytes */
    size_t mem_n, mem_cap;
    int to_mem;
    xd_err *e;
    int io_failed; /* the error is io_atomic's, already in *e */
} png_writer;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_errbuf *eb = png_get_error_ptr(png);
    snprintf(eb->msg, sizeof eb->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

/* Warnings (bad ancillary CRC, unknown sRGB profile, ...) do not change the pixels: dropped. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

// ---------------------------------------------------------------------------------------------
// decoding

/* Counts the len bytes libpng reads at r->pos for the last row and after it when they are IDAT
 * data, found by walking the chunks from r->chunk (reads come in file order); refuses more than
 * r->tail_max. A chunk that runs past the file ends the walk: libpng finds the file cut itself. */
static void png_count_tail(png_reader *r, size_t len)
{
    while (r->chunk + 8 <= r->n) {
        const size_t data = r->chunk + 8, size = io_be_u32(r->data + r->chunk);
        if (size > r->n - data || r->pos < data + size + 4) {
            if (memcmp(r->data + r->chunk + 4, "IDAT", 4) == 0 && r->pos >= data &&
                r->pos < data + size) {
                r->tail += len;
                if (r->tail > r->tail_max)
                    png_error(r->png, "the image data goes on after the last row");
            }
            return;
        }
        r->chunk = data + size + 4;
    }
}

static void png_read_cb(png_structp png, png_bytep dst, size_t len)
{
    png_reader *r = png_get_io_ptr(png);
    if (len > r->n - r->pos) {
        char why[96];
        snprintf(why, sizeof why, "truncated file (needs %zu more bytes, %zu left)", len,
                 r->n - r->pos);
        png_error(png, why);
    }
    if (r->last_row) png_count_tail(r, len);
    memcpy(dst, r->data + r->pos, len);
    r->pos += len;
}

/* Stored channels after png_set_expand -> channels returned for "as stored" (grey+alpha -> RGBA,
 * since io_image has no two-channel layout). */
static int png_as_stored(int stored_c)
{
    return stored_c == 2 ? 4 : stored_c;
}

static xd_status png_decode(png_reader *r)
{
    if (setjmp(png_jmpbuf(r->png)))
        return xd_fail(r->e, XD_EFORMAT, "%s: bad PNG near byte %zu: %s", r->name, r->pos,
                       r->err.msg);

    png_set_read_fn(r->png, r, png_read_cb);
    /* libpng's own size limit would refuse with a message that does not say the size; ours does,
     * and it runs right after IHDR, before anything image-sized is allocated. */
    png_set_user_limits(r->png, 0x7fffffffu, 0x7fffffffu);
    /* Only IHDR, PLTE, tRNS, IDAT and IEND change the pixels we return; every other chunk is
     * skipped unread. libpng would otherwise allocate and clear a text or profile chunk whole,
     * as long as its header claims (a gigabyte from a 75-byte file), before the read runs out. */
    png_set_keep_unknown_chunks(r->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_read_info(r->png, r->info);

    png_uint_32 w = png_get_image_width(r->png, r->info);
    png_uint_32 h = png_get_image_height(r->png, r->info);
    xd_status s = io_image_check_size(r->name, w, h, r->opt, r->e);
    if (s != XD_OK) return s;

    /* palette -> RGB, tRNS -> alpha, 1/2/4-bit grey -> 8-bit; 16-bit -> 8-bit rounded */
    png_set_expand(r->png);
    png_set_scale_16(r->png);
    const int passes = png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);

    int stored_c = png_get_channels(r->png, r->info);
    size_t rowbytes = png_get_rowbytes(r->png, r->info);
    if (stored_c < 1 || stored_c > 4 || png_get_bit_depth(r->png, r->info) != 8 ||
        rowbytes != (size_t)w * (size_t)stored_c)
        return xd_fail(r->e, XD_EFORMAT, "%s: PNG layout not understood (%d channels, %zu bytes per row)",
                       r->name, stored_c, rowbytes);

    int want = (r->opt && r->opt->channels) ? r->opt->channels : png_as_stored(stored_c);
    s = io_image_alloc(&r->out, (int)w, (int)h, want, r->name, r->e);
    if (s != XD_OK) return s;
    uint8_t *dst = r->out.px;
    if (want != stored_c) {
        r->tmp = xd_try_alloc((size_t)w * h * (size_t)stored_c);
        if (!r->tmp) return xd_fail(r->e, XD_ENOMEM, "%s: cannot allocate a %ux%u decode buffer",
                                    r->name, (unsigned)w, (unsigned)h);
        dst = r->tmp;
    }
    r->rows = xd_try_alloc((size_t)h * sizeof *r->rows);
    if (!r->rows) return xd_fail(r->e, XD_ENOMEM, "%s: cannot allocate row pointers", r->name);
    for (png_uint_32 y = 0; y < h; y++) r->rows[y] = dst + (size_t)y * rowbytes;

    /* as png_read_image, but the last row's read (which inflates the image data to its end) may
     * read no more than r->tail_max of it */
    for (int p = 0; p < passes; p++)
        for (png_uint_32 y = 0; y < h; y++) {
            if (p == passes - 1 && y == h - 1) {
                r->last_row = 1;
                r->chunk = 8;
                r->tail_max = 2 * (rowbytes + 1) + PNG_TAIL_MAX;
            }
            png_read_row(r->png, r->rows[y], NULL);
        }
    /* reads the chunks after the image up to IEND: a file cut after its pixels is still cut */
    png_read_end(r->png, NULL);

    if (r->tmp) {
        const uint8_t *bg = r->opt ? r->opt->bg : NULL;
        io_pixels_convert(r->tmp, stored_c, r->out.px, want, (size_t)w * h, bg);
    }
    return XD_OK;
}

xd_status io_png_read_mem(const void *data, size_t n, const char *name, const io_image_opts *opt,
                          io_image *img, xd_err *e)
{
    if (!name) name = "<memory>";
    memset(img, 0, sizeof *img);
    xd_status s = io_image_check_opts(name, opt, e);
    if (s != XD_OK) return s;
    if (n == 0) return xd_fail(e, XD_EFORMAT, "%s: empty file, not a PNG", name);
    if (n < 8 || png_sig_cmp(data, 0, 8) != 0)
        return xd_fail(e, XD_EFORMAT, "%s: not a PNG (bad signature at byte 0)", name);

    png_reader r;
    memset(&r, 0, sizeof r);
    r.name = name;
    r.data = data;
    r.n = n;
    r.opt = opt;
    r.e = e;
    r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r.err, png_on_error, png_on_warning);
    if (r.png) r.info = png_create_info_struct(r.png);
    if (!r.png || !r.info) {
        png_destroy_read_struct(r.png ? &r.png : NULL, NULL, NULL);
        return xd_fail(e, XD_ENOMEM, "%s: cannot allocate the PNG decoder", name);
    }
    s = png_decode(&r);
    png_destroy_read_struct(&r.png, &r.info, NULL);
    free(r.rows);
    free(r.tmp);
    if (s != XD_OK) {
        io_image_free(&r.out);
        return s;
    }
    *img = r.out;
    return XD_OK;
}

xd_status io_png_read(const char *path, const io_image_opts *opt, io_image *img, xd_err *e)
{
    return io_image_read_with(path, io_png_read_mem, opt, img, e);
}

// ---------------------------------------------------------------------------------------------
// encoding

static void png_write_cb(png_structp png, png_bytep src, size_t len)
{
    png_writer *w = png_get_io_ptr(png);
    if (w->to_mem) {
        if (w->mem_n + len > w->mem_cap) {
            w->mem_cap = 2 * (w->mem_n + len);
            w->mem = xd_xrealloc(w->mem, w->mem_cap);
        }
        memcpy(w->mem + w->mem_n, src, len);
        w->mem_n += len;
        return;
    }
    if (io_atomic_write(&w->out, src, len, w->e) != XD_OK) {
        w->io_failed = 1;
        png_error(png, "write failed");
    }
}

/* io_atomic_commit flushes and syncs (a memory target needs nothing); nothing to do per flush. */
static void png_flush_cb(png_structp png)
{
    (void)png;
}

static xd_status png_encode(png_writer *w, png_structp png, png_infop info, const io_image *img)
{
    if (setjmp(png_jmpbuf(png))) {
        if (w->io_failed) return w->e ? w->e->code : XD_EIO;
        return xd_fail(w->e, XD_EARG, "%s: cannot encode PNG: %s", w->name, w->err.msg);
    }
    static const int color_type[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB,
                                      PNG_COLOR_TYPE_RGB_ALPHA};
    png_set_write_fn(png, w, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, color_type[img->c],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)img->w * (size_t)img->c;
    for (int y = 0; y < img->h; y++) png_write_row(png, img->px + (size_t)y * stride);
    png_write_end(png, info);
    return XD_OK;
}

static xd_status png_check(const io_image *img, const char *name, xd_err *e)
{
    if (!img || !img->px || img->w <= 0 || img->h <= 0)
        return xd_fail(e, XD_EARG, "%s: cannot write an empty image as PNG", name);
    if (img->c != 1 && img->c != 3 && img->c != 4)
        return xd_fail(e, XD_EARG, "%s: PNG needs 1, 3 or 4 channels, not %d", name, img->c);
    return XD_OK;
}

/* The encoder on a prepared writer (file or memory target) for a checked image. */
static xd_status png_write_to(png_writer *w, const io_image *img, xd_err *e)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w->err, png_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        return xd_fail(e, XD_ENOMEM, "%s: cannot allocate the PNG encoder", w->name);
    }
    xd_status s = png_encode(w, png, info, img);
    png_destroy_write_struct(&png, &info);
    return s;
}

xd_status io_png_write(const char *path, const io_image *img, xd_err *e)
{
    png_writer w;
    memset(&w, 0, sizeof w);
    w.e = e;
    w.name = path;
    /* the image is checked before anything is created */
    xd_status s = png_check(img, path, e);
    if (s == XD_OK) s = io_atomic_open(&w.out, path, e);
    if (s != XD_OK) return s;
    if ((s = png_write_to(&w, img, e)) != XD_OK) {
        io_atomic_abort(&w.out);
        return s;
    }
    return io_atomic_commit(&w.out, e);
}

xd_status io_png_encode(const io_image *img, const char *name, void **data, size_t *n, xd_err *e)
{
    png_writer w;
    memset(&w, 0, sizeof w);
    w.e = e;
    w.name = name ? name : "PNG";
    w.to_mem = 1;
    *data = NULL;
    *n = 0;
    xd_status s = png_check(img, w.name, e);
    if (s == XD_OK) s = png_write_to(&w, img, e);
    if (s != XD_OK) {
        free(w.mem);
        return s;
    }
    *data = w.mem;
    *n = w.mem_n;
    return XD_OK;
}
