/* JPEG decode and encode through libjpeg-turbo (see jpeg.h).
 *
 * libjpeg reports errors through error_exit, which here keeps the formatted message and longjmps
 * back to the setjmp in jpeg_decode / jpeg_encode; warnings go through emit_message, which never
 * prints and turns the warnings that mean lost pixels into errors. All state used after setjmp
 * lives in the reader/writer struct owned by the caller, which destroys the libjpeg object in one
 * place whatever happened. Encoded bytes go through our own destination manager straight into
 * io_atomic, so a failed encode leaves nothing behind. */
#include "io/jpeg.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "core/mem.h"
#include "io/file.h"

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us cinfo->err */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX + 64];
    int io_failed;   /* the error is io_atomic's, already in the caller's xd_err */
    int out_of_mem;  /* libjpeg could not allocate */
} jpeg_errmgr;

static _Noreturn void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_errmgr *m = (jpeg_errmgr *)cinfo->err;
    m->pub.format_message(cinfo, m->msg);
    m->out_of_mem = m->pub.msg_code == JERR_OUT_OF_MEMORY;
    longjmp(m->jb, 1);
}

/* Warnings after which the decoded pixels are incomplete or garbage (libjpeg fills the gap and
 * carries on). The others (extraneous bytes between markers, unknown JFIF revision, bad Adobe or
 * ICC marker) leave the pixels intact and are ignored. */
static const int jpeg_fatal_warnings[] = {
    JWRN_JPEG_EOF,       JWRN_HIT_MARKER,      JWRN_HUFF_BAD_CODE, JWRN_ARITH_BAD_CODE,
    JWRN_MUST_RESYNC,    JWRN_BOGUS_PROGRESSION, JWRN_NOT_SEQUENTIAL,
};

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0) return; /* trace output */
    size_t n = sizeof jpeg_fatal_warnings / sizeof jpeg_fatal_warnings[0];
    for (size_t i = 0; i < n; i++)
        if (cinfo->err->msg_code == jpeg_fatal_warnings[i]) cinfo->err->error_exit(cinfo);
    cinfo->err->num_warnings++;
}

static void jpeg_no_output(j_common_ptr cinfo)
{
    (void)cinfo;
}

static void jpeg_errmgr_init(jpeg_errmgr *m)
{
    jpeg_std_error(&m->pub);
    m->pub.error_exit = jpeg_on_error;
    m->pub.emit_message = jpeg_on_message;
    m->pub.output_message = jpeg_no_output;
}

// ---------------------------------------------------------------------------------------------
// decoding

typedef struct {
    jpeg_errmgr err;
    struct jpeg_progress_mgr progress;
    struct jpeg_decompress_struct cinfo;
    const char *name;
    const uint8_t *data; /* (n) the encoded file */
    size_t n;
    const io_image_opts *opt;
    io_image out;
    xd_err *e;
} jpeg_reader;

/* Called by libjpeg while it consumes input: refuses files made of absurdly many scans. */
static void jpeg_on_progress(j_common_ptr cinfo)
{
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > IO_JPEG_MAX_SCANS) {
        jpeg_errmgr *m = (jpeg_errmgr *)cinfo->err;
        snprintf(m->msg, sizeof m->msg, "more than %d scans", IO_JPEG_MAX_SCANS);
        longjmp(m->jb, 1);
    }
}

/* The EXIF orientation (TIFF tag 0x0112) that an APP1 "Exif" marker holds in its first image
 * directory: 1..8, or 1 (as stored) when there is none or it cannot be read. Every offset is
 * checked against the marker's length: the marker is input like the rest of the file. */
static int exif_orientation(const struct jpeg_decompress_struct *ci)
{
    for (jpeg_saved_marker_ptr m = ci->marker_list; m; m = m->next) {
        const uint8_t *p = m->data;
        const size_t n = m->data_length;
        if (m->marker != JPEG_APP0 + 1 || n < 14 || memcmp(p, "Exif\0\0", 6) != 0) continue;
        const uint8_t *t = p + 6; /* the TIFF header: byte order, 42, first directory */
        const size_t tn = n - 6;
        int big;
        if (t[0] == 'M' && t[1] == 'M') big = 1;
        else if (t[0] == 'I' && t[1] == 'I') big = 0;
        else return 1;
#define EXIF_U16(q) ((big ? (uint32_t)(q)[0] << 8 | (q)[1] : (uint32_t)(q)[1] << 8 | (q)[0]))
#define EXIF_U32(q) ((big ? EXIF_U16(q) << 16 | EXIF_U16((q) + 2) : EXIF_U16((q) + 2) << 16 | EXIF_U16(q)))
        if (EXIF_U16(t + 2) != 42) return 1;
        const uint32_t ifd = EXIF_U32(t + 4);
        if (ifd > tn || tn - ifd < 2) return 1;
        const uint32_t count = EXIF_U16(t + ifd);
        for (uint32_t k = 0; k < count; k++) {
            const size_t at = (size_t)ifd + 2 + (size_t)k * 12;
            if (at + 12 > tn) return 1;
            const uint8_t *en = t + at;
            /* SHORT, one value, held in the entry itself */
            if (EXIF_U16(en) == 0x0112 && EXIF_U16(en + 2) == 3 && EXIF_U32(en + 4) == 1) {
                const uint32_t v = EXIF_U16(en + 8);
                return v >= 1 && v <= 8 ? (int)v : 1;
            }
        }
#undef EXIF_U16
#undef EXIF_U32
        return 1;
    }
    return 1;
}

/* img turned as EXIF orientation o (2..8) says to show it: mirrored, turned a half, a quarter
 * either way, or about a diagonal. XD_ENOMEM leaves img as it was. */
static xd_status orient(io_image *img, int o, const char *name, xd_err *e)
{
    const int W = img->w, H = img->h, c = img->c, turned = o >= 5;
    io_image out;
    xd_status s = io_image_alloc(&out, turned ? H : W, turned ? W : H, c, name, e);
    if (s != XD_OK) return s;
    for (int y = 0; y < out.h; y++)
        for (int x = 0; x < out.w; x++) {
            int sx = x, sy = y; /* the stored pixel shown at (x, y) */
            switch (o) {
            case 2: sx = W - 1 - x; break;                 /* mirrored left to right */
            case 3: sx = W - 1 - x, sy = H - 1 - y; break; /* turned a half */
            case 4: sy = H - 1 - y; break;                 /* mirrored top to bottom */
            case 5: sx = y, sy = x; break;                 /* about the main diagonal */
            case 6: sx = y, sy = H - 1 - x; break;         /* a quarter clockwise */
            case 7: sx = W - 1 - y, sy = H - 1 - x; break; /* about the other diagonal */
            case 8: sx = W - 1 - y, sy = x; break;         /* a quarter anticlockwise */
            default: break;
            }
            memcpy(out.px + ((size_t)y * out.w + x) * c, img->px + ((size_t)sy * W + sx) * c,
                   (size_t)c);
        }
    io_image_free(img);
    *img = out;
    return XD_OK;
}

/* Byte offset libjpeg has reached in our buffer (the end, once it has run past it). */
static size_t jpeg_offset(const jpeg_reader *r)
{
    const struct jpeg_source_mgr *src = r->cinfo.src;
    if (!src || !src->next_input_byte) return 0;
    const uint8_t *p = src->next_input_byte;
    if (p < r->data || p > r->data + r->n) return r->n;
    return (size_t)(p - r->data);
}

static xd_status jpeg_decode(jpeg_reader *r)
{
    r->cinfo.err = &r->err.pub;
    if (setjmp(r->err.jb)) {
        xd_status code = r->err.out_of_mem ? XD_ENOMEM : XD_EFORMAT;
        return xd_fail(r->e, code, "%s: bad JPEG near byte %zu: %s", r->name, jpeg_offset(r),
                       r->err.msg);
    }
    jpeg_create_decompress(&r->cinfo);
    r->progress.progress_monitor = jpeg_on_progress;
    r->cinfo.progress = &r->progress;
    jpeg_mem_src(&r->cinfo, r->data, (unsigned long)r->n);
    jpeg_save_markers(&r->cinfo, JPEG_APP0 + 1, 0xFFFF); /* EXIF, for its orientation */
    jpeg_read_header(&r->cinfo, TRUE);
    /* read now: the saved markers go with the image's memory when decompression finishes */
    const int o = exif_orientation(&r->cinfo);

    xd_status s = io_image_check_size(r->name, r->cinfo.image_width, r->cinfo.image_height, r->opt,
                                      r->e);
    if (s != XD_OK) return s;
    int stored;
    switch (r->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: stored = 1; break;
    case JCS_YCbCr:
    case JCS_RGB: stored = 3; break;
    default:
        return xd_fail(r->e, XD_EUNSUPPORTED, "%s: JPEG colour space with %d components (CMYK?) is "
                       "not supported", r->name, r->cinfo.num_components);
    }
    int want = (r->opt && r->opt->channels) ? r->opt->channels : stored;
    r->cinfo.out_color_space = want == 1 ? JCS_GRAYSCALE : want == 3 ? JCS_RGB : JCS_EXT_RGBA;
    jpeg_start_decompress(&r->cinfo);
    if (r->cinfo.output_components != want || r->cinfo.output_width != r->cinfo.image_width ||
        r->cinfo.output_height != r->cinfo.image_height)
        return xd_fail(r->e, XD_EFORMAT, "%s: JPEG decoder produced %ux%ux%d, expected %ux%ux%d",
                       r->name, r->cinfo.output_width, r->cinfo.output_height,
                       r->cinfo.output_components, r->cinfo.image_width, r->cinfo.image_height,
                       want);

    s = io_image_alloc(&r->out, (int)r->cinfo.output_width, (int)r->cinfo.output_height, want,
                       r->name, r->e);
    if (s != XD_OK) return s;
    size_t stride = (size_t)r->out.w * (size_t)want;
    while (r->cinfo.output_scanline < r->cinfo.output_height) {
        JSAMPROW row = r->out.px + (size_t)r->cinfo.output_scanline * stride;
        if (jpeg_read_scanlines(&r->cinfo, &row, 1) != 1)
            return xd_fail(r->e, XD_EFORMAT, "%s: JPEG decoder stopped at row %u", r->name,
                           r->cinfo.output_scanline);
    }
    /* reads up to EOI, so a file cut after its last scan is still reported */
    jpeg_finish_decompress(&r->cinfo);
    return o > 1 ? orient(&r->out, o, r->name, r->e) : XD_OK;
}

xd_status io_jpeg_read_mem(const void *data, size_t n, const char *name, const io_image_opts *opt,
                           io_image *img, xd_err *e)
{
    if (!name) name = "<memory>";
    memset(img, 0, sizeof *img);
    xd_status s = io_image_check_opts(name, opt, e);
    if (s != XD_OK) return s;
    if (n == 0) return xd_fail(e, XD_EFORMAT, "%s: empty file, not a JPEG", name);
    const uint8_t *p = data;
    if (n < 3 || p[0] != 0xff || p[1] != 0xd8 || p[2] != 0xff)
        return xd_fail(e, XD_EFORMAT, "%s: not a JPEG (no SOI marker at byte 0)", name);

    jpeg_reader *r = xd_xcalloc(1, sizeof *r);
    jpeg_errmgr_init(&r->err);
    r->name = name;
    r->data = data;
    r->n = n;
    r->opt = opt;
    r->e = e;
    s = jpeg_decode(r);
    jpeg_destroy_decompress(&r->cinfo); /* safe on a half-created object */
    if (s == XD_OK) *img = r->out;
    else io_image_free(&r->out);
    free(r);
    return s;
}

xd_status io_jpeg_read(const char *path, const io_image_opts *opt, io_image *img, xd_err *e)
{
    return io_image_read_with(path, io_jpeg_read_mem, opt, img, e);
}

// ---------------------------------------------------------------------------------------------
// encoding

typedef struct {
    struct jpeg_destination_mgr pub; /* first: libjpeg hands us cinfo->dest */
    io_atomic *out;
    xd_err *e;
    JOCTET buf[16384];
} jpeg_sink;

typedef struct {
    jpeg_errmgr err;
    jpeg_sink sink;
    struct jpeg_compress_struct cinfo;
    io_atomic out;
} jpeg_writer;

static _Noreturn void jpeg_sink_fail(j_compress_ptr cinfo)
{
    jpeg_errmgr *m = (jpeg_errmgr *)cinfo->err;
    m->io_failed = 1;
    longjmp(m->jb, 1);
}

static void jpeg_sink_init(j_compress_ptr cinfo)
{
    jpeg_sink *s = (jpeg_sink *)cinfo->dest;
    s->pub.next_output_byte = s->buf;
    s->pub.free_in_buffer = sizeof s->buf;
}

/* libjpeg calls this when the buffer is full; the whole buffer is to be written. */
static boolean jpeg_sink_empty(j_compress_ptr cinfo)
{
    jpeg_sink *s = (jpeg_sink *)cinfo->dest;
    if (io_atomic_write(s->out, s->buf, sizeof s->buf, s->e) != XD_OK) jpeg_sink_fail(cinfo);
    jpeg_sink_init(cinfo);
    return TRUE;
}

static void jpeg_sink_term(j_compress_ptr cinfo)
{
    jpeg_sink *s = (jpeg_sink *)cinfo->dest;
    size_t n = sizeof s->buf - s->pub.free_in_buffer;
    if (io_atomic_write(s->out, s->buf, n, s->e) != XD_OK) jpeg_sink_fail(cinfo);
}

static xd_status jpeg_encode(jpeg_writer *w, const io_image *img, int quality, xd_err *e)
{
    w->cinfo.err = &w->err.pub;
    if (setjmp(w->err.jb)) {
        if (w->err.io_failed) return e ? e->code : XD_EIO;
        return xd_fail(e, w->err.out_of_mem ? XD_ENOMEM : XD_EARG, "%s: cannot encode JPEG: %s",
                       w->out.path, w->err.msg);
    }
    jpeg_create_compress(&w->cinfo);
    w->sink.out = &w->out;
    w->sink.e = e;
    w->sink.pub.init_destination = jpeg_sink_init;
    w->sink.pub.empty_output_buffer = jpeg_sink_empty;
    w->sink.pub.term_destination = jpeg_sink_term;
    w->cinfo.dest = &w->sink.pub;

    w->cinfo.image_width = (JDIMENSION)img->w;
    w->cinfo.image_height = (JDIMENSION)img->h;
    w->cinfo.input_components = img->c;
    w->cinfo.in_color_space = img->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&w->cinfo);
    jpeg_set_quality(&w->cinfo, quality, TRUE);
    jpeg_start_compress(&w->cinfo, TRUE);
    size_t stride = (size_t)img->w * (size_t)img->c;
    while (w->cinfo.next_scanline < w->cinfo.image_height) {
        /* libjpeg's row type is not const, but compression only reads the rows */
        JSAMPROW row = (JSAMPROW)(img->px + (size_t)w->cinfo.next_scanline * stride);
        jpeg_write_scanlines(&w->cinfo, &row, 1);
    }
    jpeg_finish_compress(&w->cinfo);
    return XD_OK;
}

xd_status io_jpeg_write(const char *path, const io_image *img, int quality, xd_err *e)
{
    if (!img || !img->px || img->w <= 0 || img->h <= 0)
        return xd_fail(e, XD_EARG, "%s: cannot write an empty image as JPEG", path);
    if (img->c != 1 && img->c != 3)
        return xd_fail(e, XD_EARG, "%s: JPEG needs 1 or 3 channels, not %d (JPEG has no alpha)",
                       path, img->c);
    if (quality < 1 || quality > 100)
        return xd_fail(e, XD_EARG, "%s: JPEG quality %d is outside 1..100", path, quality);

    jpeg_writer *w = xd_xcalloc(1, sizeof *w);
    jpeg_errmgr_init(&w->err);
    xd_status s = io_atomic_open(&w->out, path, e);
    if (s == XD_OK) {
        s = jpeg_encode(w, img, quality, e);
        jpeg_destroy_compress(&w->cinfo);
        if (s == XD_OK) s = io_atomic_commit(&w->out, e);
        else io_atomic_abort(&w->out);
    }
    free(w);
    return s;
}
