/* io/jpeg and io/image: lossy round trips within tight error bounds, progressive and grey JPEGs
 * written with raw libjpeg calls, Rec.601 grey, channel requests; EXIF orientations; lying,
 * truncated, corrupt, CMYK and many-scan files; silence on stderr; atomic writes. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

#include "io/image.h"
#include "io/jpeg.h"
#include "io/png.h"
#include "tests/support/imgfix.h"

// ---------------------------------------------------------------------------------------------
// raw libjpeg writer for fixtures (independent of io_jpeg_write)

typedef struct {
    int w, h, comps;
    J_COLOR_SPACE cs;
    int quality;
    int progressive;               /* jpeg_simple_progression */
    const jpeg_scan_info *scans;   /* or an explicit scan script */
    int nscans;
} raw_jpeg;

static void raw_jpeg_write(const char *path, const uint8_t *px, const raw_jpeg *p)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr); /* fixtures are valid: libjpeg's default exit is fine here */
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)p->w;
    c.image_height = (JDIMENSION)p->h;
    c.input_components = p->comps;
    c.in_color_space = p->cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, p->quality, TRUE);
    if (p->progressive) jpeg_simple_progression(&c);
    if (p->scans) {
        c.scan_info = p->scans;
        c.num_scans = p->nscans;
    }
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * p->w * p->comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static io_image decode_ok(const char *path, int channels)
{
    io_image_opts opt = {.channels = channels};
    io_image img;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = io_jpeg_read(path, &opt, &img, &e);
    if (s != XD_OK) fail_msg("io_jpeg_read(%s, %d channels): %s", path, channels, e.msg);
    if (channels) assert_int_equal(img.c, channels);
    return img;
}

/* Offset of the first marker 0xFF code, or fails the test. */
static size_t find_marker(const uint8_t *buf, size_t n, uint8_t code)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (buf[i] == 0xff && buf[i + 1] == code) return i;
    fail_msg("marker FF %02X not found", code);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// round trips

static void test_roundtrip_rgb(void **state)
{
    (void)state;
    enum { W = 48, H = 40 };
    uint8_t px[W * H * 3];
    ifx_smooth(px, W, H, 3);
    io_image src = {W, H, 3, px};
    xd_err e;
    TU_OK(io_jpeg_write("q95.jpg", &src, 95, &e));
    TU_OK(io_jpeg_write("q10.jpg", &src, 10, &e));
    io_image hi = decode_ok("q95.jpg", 0);
    assert_int_equal(hi.w, W);
    assert_int_equal(hi.h, H);
    assert_int_equal(hi.c, 3);
    double mae95 = ifx_mae(hi.px, px, sizeof px);
    assert_true(mae95 < 1.5);
    assert_true(ifx_max_abs(hi.px, px, sizeof px) <= 16);
    io_image lo = decode_ok("q10.jpg", 0);
    double mae10 = ifx_mae(lo.px, px, sizeof px);
    assert_true(mae10 > 2 * mae95); /* the quality setting reaches the encoder */

    /* 4 channels: the same RGB plus opaque alpha */
    io_image rgba = decode_ok("q95.jpg", 4);
    for (size_t i = 0; i < (size_t)W * H; i++) {
        assert_memory_equal(rgba.px + 4 * i, hi.px + 3 * i, 3);
        assert_int_equal(rgba.px[4 * i + 3], 255);
    }
    io_image_free(&rgba);
    io_image_free(&lo);
    io_image_free(&hi);
}

static void test_roundtrip_grey(void **state)
{
    (void)state;
    enum { W = 33, H = 17 };
    uint8_t px[W * H];
    ifx_smooth(px, W, H, 1);
    io_image src = {W, H, 1, px};
    xd_err e;
    TU_OK(io_jpeg_write("g.jpg", &src, 95, &e));
    io_image g = decode_ok("g.jpg", 0);
    assert_int_equal(g.c, 1);
    assert_true(ifx_mae(g.px, px, sizeof px) < 1.0);
    /* grey -> RGB replicates the grey value */
    io_image rgb = decode_ok("g.jpg", 3);
    for (size_t i = 0; i < sizeof px; i++)
        for (int k = 0; k < 3; k++) assert_int_equal(rgb.px[3 * i + k], g.px[i]);
    io_image_free(&rgb);
    io_image_free(&g);
}

static void test_raw_grey_and_progressive(void **state)
{
    (void)state;
    enum { W = 40, H = 32 };
    uint8_t grey[W * H], rgb[W * H * 3];
    ifx_smooth(grey, W, H, 1);
    ifx_smooth(rgb, W, H, 3);
    raw_jpeg pg = {.w = W, .h = H, .comps = 1, .cs = JCS_GRAYSCALE, .quality = 95};
    raw_jpeg_write("raw_grey.jpg", grey, &pg);
    io_image g = decode_ok("raw_grey.jpg", 0);
    assert_int_equal(g.c, 1);
    assert_true(ifx_mae(g.px, grey, sizeof grey) < 1.0);
    io_image_free(&g);

    raw_jpeg pp = {.w = W, .h = H, .comps = 3, .cs = JCS_RGB, .quality = 95, .progressive = 1};
    raw_jpeg_write("prog.jpg", rgb, &pp);
    size_t n;
    uint8_t *buf = tu_read_file("prog.jpg", &n);
    find_marker(buf, n, 0xc2); /* SOF2: really progressive */
    free(buf);
    io_image c3 = decode_ok("prog.jpg", 0);
    assert_int_equal(c3.c, 3);
    assert_true(ifx_mae(c3.px, rgb, sizeof rgb) < 1.5);
    /* the luma channel agrees with Rec.601 of the decoded colour up to rounding and chroma
     * upsampling */
    io_image c1 = decode_ok("prog.jpg", 1);
    for (size_t i = 0; i < (size_t)W * H; i++) {
        int y = io_luma601(c3.px[3 * i], c3.px[3 * i + 1], c3.px[3 * i + 2]);
        if (abs(y - c1.px[i]) > 3) fail_msg("pixel %zu: luma %d, decoded grey %d", i, y, c1.px[i]);
    }
    io_image_free(&c1);
    io_image_free(&c3);
}

static void test_grey_uses_rec601(void **state)
{
    (void)state;
    enum { W = 16, H = 16 };
    uint8_t px[W * H * 3];
    for (size_t i = 0; i < (size_t)W * H; i++) {
        px[3 * i] = 200;
        px[3 * i + 1] = 100;
        px[3 * i + 2] = 50;
    }
    io_image src = {W, H, 3, px};
    xd_err e;
    TU_OK(io_jpeg_write("flat.jpg", &src, 95, &e));
    /* 0.299*200 + 0.587*100 + 0.114*50 = 124.2; a plain mean would give 117, Rec.709 118 */
    io_image g = decode_ok("flat.jpg", 1);
    for (size_t i = 0; i < (size_t)W * H; i++) assert_true(abs((int)g.px[i] - 124) <= 1);
    io_image_free(&g);
}

static void test_dispatch_by_magic(void **state)
{
    (void)state;
    uint8_t px[8 * 8 * 3];
    ifx_smooth(px, 8, 8, 3);
    io_image src = {8, 8, 3, px};
    xd_err e;
    /* names that lie about the format: the magic bytes decide */
    TU_OK(io_jpeg_write("really_jpeg.png", &src, 90, &e));
    TU_OK(io_png_write("really_png.jpg", &src, &e));
    io_image a, b;
    assert_int_equal(io_image_read("really_jpeg.png", NULL, &a, &e), XD_OK);
    assert_true(ifx_mae(a.px, px, sizeof px) < 3.0);
    assert_int_equal(io_image_read("really_png.jpg", NULL, &b, &e), XD_OK);
    assert_memory_equal(b.px, px, sizeof px);
    io_image_free(&a);
    io_image_free(&b);
    ifx_assert_fail(io_jpeg_read("really_png.jpg", NULL, &a, &e), &e, XD_EFORMAT,
                    "really_png.jpg", "not a JPEG");
    ifx_assert_fail(io_png_read("really_jpeg.png", NULL, &a, &e), &e, XD_EFORMAT,
                    "really_jpeg.png", "not a PNG");
    assert_int_equal(io_image_sniff("\xff\xd8\xff", 3), IO_IMAGE_JPEG);
    assert_string_equal(io_image_kind_name(IO_IMAGE_PNG), "PNG");
}

// ---------------------------------------------------------------------------------------------
// bad input

static void test_bad_files(void **state)
{
    (void)state;
    io_image img;
    xd_err e;
    ifx_stderr_begin();
    tu_write_file("empty.jpg", "", 0);
    ifx_assert_fail(io_jpeg_read("empty.jpg", NULL, &img, &e), &e, XD_EFORMAT, "empty.jpg", "empty");
    uint8_t noise[2000];
    ifx_noise(noise, sizeof noise, 42);
    tu_write_file("noise.jpg", noise, sizeof noise);
    ifx_assert_fail(io_jpeg_read("noise.jpg", NULL, &img, &e), &e, XD_EFORMAT, "noise.jpg",
                    "not a JPEG");
    ifx_assert_fail(io_image_read("noise.jpg", NULL, &img, &e), &e, XD_EFORMAT, "noise.jpg",
                    "not a PNG or JPEG");
    /* random bytes behind SOI reach libjpeg, which must fail cleanly */
    noise[0] = 0xff;
    noise[1] = 0xd8;
    noise[2] = 0xff;
    ifx_assert_fail(io_jpeg_read_mem(noise, sizeof noise, "soi.jpg", NULL, &img, &e), &e,
                    XD_EFORMAT, "soi.jpg", "bad JPEG");
    ifx_assert_fail(io_jpeg_read("missing.jpg", NULL, &img, &e), &e, XD_EIO, "missing.jpg", NULL);
    ifx_assert_fail(io_jpeg_read_mem("abc", 3, NULL, NULL, &img, &e), &e, XD_EFORMAT, "<memory>",
                    NULL);
    assert_int_equal(ifx_stderr_end(), 0);
    assert_null(img.px);
}

static void test_huge_header_rejected(void **state)
{
    (void)state;
    uint8_t px[16 * 16 * 3];
    ifx_smooth(px, 16, 16, 3);
    io_image src = {16, 16, 3, px};
    xd_err e;
    TU_OK(io_jpeg_write("base.jpg", &src, 90, &e));
    size_t n;
    uint8_t *buf = tu_read_file("base.jpg", &n);
    size_t sof = find_marker(buf, n, 0xc0);
    /* FF C0, length (2), precision (1), height (2), width (2) */
    buf[sof + 5] = 0xea, buf[sof + 6] = 0x60; /* 60000 */
    buf[sof + 7] = 0xea, buf[sof + 8] = 0x60;
    tu_write_file("huge.jpg", buf, n);
    io_image img;
    ifx_assert_fail(io_jpeg_read("huge.jpg", NULL, &img, &e), &e, XD_EFORMAT, "huge.jpg",
                    "60000x60000");
    ifx_assert_fail(io_image_read("huge.jpg", NULL, &img, &e), &e, XD_EFORMAT, "huge.jpg",
                    "60000x60000");
    assert_null(img.px);
    io_image_opts lim = {.max_dim = 15};
    ifx_assert_fail(io_jpeg_read("base.jpg", &lim, &img, &e), &e, XD_EFORMAT, "base.jpg", "16x16");
    io_image_opts two = {.channels = 2};
    ifx_assert_fail(io_jpeg_read("base.jpg", &two, &img, &e), &e, XD_EARG, "base.jpg", NULL);
    free(buf);
}

static void test_truncated(void **state)
{
    (void)state;
    enum { W = 32, H = 24 };
    uint8_t px[W * H * 3];
    ifx_smooth(px, W, H, 3);
    io_image src = {W, H, 3, px};
    xd_err e;
    TU_OK(io_jpeg_write("base.jpg", &src, 95, &e));
    raw_jpeg pp = {.w = W, .h = H, .comps = 3, .cs = JCS_RGB, .quality = 95, .progressive = 1};
    raw_jpeg_write("prog.jpg", px, &pp);
    const char *names[2] = {"base.jpg", "prog.jpg"};
    ifx_stderr_begin();
    for (int f = 0; f < 2; f++) {
        size_t n;
        uint8_t *buf = tu_read_file(names[f], &n);
        io_image img;
        assert_int_equal(io_jpeg_read_mem(buf, n, names[f], NULL, &img, &e), XD_OK);
        io_image_free(&img);
        for (size_t len = 0; len < n; len++) {
            xd_status s = io_jpeg_read_mem(buf, len, names[f], NULL, &img, &e);
            if (s != XD_EFORMAT)
                fail_msg("%s cut to %zu of %zu bytes: status %s (%s)", names[f], len, n,
                         xd_status_name(s), e.msg);
            assert_null(img.px);
            assert_non_null(strstr(e.msg, names[f]));
        }
        tu_write_file("cut.jpg", buf, n - 200);
        ifx_assert_fail(io_jpeg_read("cut.jpg", NULL, &img, &e), &e, XD_EFORMAT, "cut.jpg",
                        "Premature end");
        ifx_assert_fail(io_image_read("cut.jpg", NULL, &img, &e), &e, XD_EFORMAT, "cut.jpg", NULL);
        free(buf);
    }
    assert_int_equal(ifx_stderr_end(), 0);
}

static void test_corrupt_never_crashes(void **state)
{
    (void)state;
    enum { W = 24, H = 16 };
    uint8_t px[W * H * 3];
    ifx_smooth(px, W, H, 3);
    raw_jpeg pp = {.w = W, .h = H, .comps = 3, .cs = JCS_RGB, .quality = 80, .progressive = 1};
    raw_jpeg_write("c.jpg", px, &pp);
    size_t n;
    uint8_t *good = tu_read_file("c.jpg", &n);
    uint8_t *bad = malloc(n);
    uint8_t r[4];
    xd_err e;
    ifx_stderr_begin();
    for (uint32_t t = 0; t < 300; t++) {
        memcpy(bad, good, n);
        ifx_noise(r, sizeof r, t);
        for (int k = 0; k < 2; k++) {
            size_t at = 2 + (((size_t)r[2 * k] << 8) | r[2 * k + 1]) % (n - 2);
            bad[at] ^= (uint8_t)(0x5a + t);
        }
        io_image img;
        xd_status s = io_jpeg_read_mem(bad, n, "c.jpg", NULL, &img, &e);
        if (s != XD_OK && s != XD_EFORMAT && s != XD_EUNSUPPORTED)
            fail_msg("try %u: status %s: %s", t, xd_status_name(s), e.msg);
        io_image_free(&img);
    }
    assert_int_equal(ifx_stderr_end(), 0);
    free(bad);
    free(good);
}

/* A smooth w x h RGB image written by io_jpeg_write to path: the file's bytes (*n of them). */
static uint8_t *smooth_jpeg(const char *path, int w, int h, int quality, size_t *n)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    ifx_smooth(px, w, h, 3);
    io_image src = {w, h, 3, px};
    xd_err e;
    TU_OK(io_jpeg_write(path, &src, quality, &e));
    free(px);
    return tu_read_file(path, n);
}

static void test_harmless_warning_is_ignored(void **state)
{
    (void)state;
    xd_err e;
    size_t n;
    uint8_t *buf = smooth_jpeg("ok.jpg", 16, 16, 90, &n);
    /* three junk bytes before the SOS marker: libjpeg warns "extraneous bytes" and skips them */
    size_t sos = find_marker(buf, n, 0xda);
    uint8_t *junk = malloc(n + 3);
    memcpy(junk, buf, sos);
    memcpy(junk + sos, "xyz", 3);
    memcpy(junk + sos + 3, buf + sos, n - sos);
    io_image a, b;
    assert_int_equal(io_jpeg_read_mem(buf, n, "ok.jpg", NULL, &a, &e), XD_OK);
    ifx_stderr_begin();
    xd_status s = io_jpeg_read_mem(junk, n + 3, "junk.jpg", NULL, &b, &e);
    assert_int_equal(ifx_stderr_end(), 0);
    assert_int_equal(s, XD_OK);
    assert_memory_equal(a.px, b.px, (size_t)16 * 16 * 3);
    io_image_free(&a);
    io_image_free(&b);
    free(junk);
    free(buf);
}

static void test_cmyk_unsupported(void **state)
{
    (void)state;
    uint8_t px[8 * 8 * 4];
    ifx_smooth(px, 8, 8, 4);
    raw_jpeg p = {.w = 8, .h = 8, .comps = 4, .cs = JCS_CMYK, .quality = 90};
    raw_jpeg_write("cmyk.jpg", px, &p);
    io_image img;
    xd_err e;
    ifx_assert_fail(io_jpeg_read("cmyk.jpg", NULL, &img, &e), &e, XD_EUNSUPPORTED, "cmyk.jpg",
                    "not supported");
}

/* A grey progressive script: the DC scan, then for each AC coefficient one first scan at
 * precision Al = bits and one refinement scan per bit: 1 + 63 * (bits + 1) scans. */
static int many_scans(jpeg_scan_info *s, int bits)
{
    int n = 0;
    s[n++] = (jpeg_scan_info){.comps_in_scan = 1, .component_index = {0}, .Ss = 0, .Se = 0};
    for (int k = 1; k < 64; k++) {
        s[n++] = (jpeg_scan_info){.comps_in_scan = 1, .Ss = k, .Se = k, .Ah = 0, .Al = bits};
        for (int a = bits; a > 0; a--)
            s[n++] = (jpeg_scan_info){.comps_in_scan = 1, .Ss = k, .Se = k, .Ah = a, .Al = a - 1};
    }
    return n;
}

static void test_scan_limit(void **state)
{
    (void)state;
    enum { W = 16, H = 16 };
    uint8_t px[W * H];
    ifx_smooth(px, W, H, 1);
    static jpeg_scan_info scans[1 + 63 * 9];
    raw_jpeg p = {.w = W, .h = H, .comps = 1, .cs = JCS_GRAYSCALE, .quality = 95, .scans = scans};
    p.nscans = many_scans(scans, 6); /* 442 scans: allowed */
    assert_int_equal(p.nscans, 442);
    raw_jpeg_write("442.jpg", px, &p);
    io_image img = decode_ok("442.jpg", 0);
    assert_true(ifx_mae(img.px, px, sizeof px) < 1.0);
    io_image_free(&img);
    p.nscans = many_scans(scans, 8); /* 568 scans: refused */
    raw_jpeg_write("568.jpg", px, &p);
    xd_err e;
    ifx_assert_fail(io_jpeg_read("568.jpg", NULL, &img, &e), &e, XD_EFORMAT, "568.jpg", "scans");
}

// ---------------------------------------------------------------------------------------------
// writing

static void test_write_failures_leave_nothing(void **state)
{
    (void)state;
    uint8_t px[8 * 8 * 4];
    ifx_smooth(px, 8, 8, 4);
    io_image img = {8, 8, 3, px};
    xd_err e;
    ifx_assert_fail(io_jpeg_write("no/dir/x.jpg", &img, 90, &e), &e, XD_EIO, "no/dir/x.jpg", NULL);
    assert_false(ifx_exists("no"));

    assert_int_equal(mkdir("out", 0777), 0);
    io_image rgba = {8, 8, 4, px};
    ifx_assert_fail(io_jpeg_write("out/x.jpg", &rgba, 90, &e), &e, XD_EARG, "out/x.jpg", "alpha");
    io_image two = {8, 8, 2, px};
    ifx_assert_fail(io_jpeg_write("out/x.jpg", &two, 90, &e), &e, XD_EARG, "out/x.jpg", NULL);
    ifx_assert_fail(io_jpeg_write("out/x.jpg", &img, 0, &e), &e, XD_EARG, "out/x.jpg", "quality");
    ifx_assert_fail(io_jpeg_write("out/x.jpg", &img, 101, &e), &e, XD_EARG, "out/x.jpg", "quality");
    assert_int_equal(ifx_dir_count("out"), 0);

    /* libjpeg refuses more than 65500 pixels per side once the temporary file exists */
    enum { WIDE = 70000 };
    uint8_t *wide = calloc(WIDE, 1);
    io_image line = {WIDE, 1, 1, wide};
    ifx_stderr_begin();
    xd_status s = io_jpeg_write("out/wide.jpg", &line, 90, &e);
    assert_int_equal(ifx_stderr_end(), 0);
    ifx_assert_fail(s, &e, XD_EARG, "out/wide.jpg", "65500");
    assert_int_equal(ifx_dir_count("out"), 0);
    free(wide);

    TU_OK(io_jpeg_write("out/x.jpg", &img, 90, &e));
    assert_int_equal(ifx_dir_count("out"), 1);
}

static void test_write_io_error_leaves_nothing(void **state)
{
    (void)state;
    enum { W = 200, H = 150 };
    uint8_t *px = malloc(W * H * 3);
    ifx_noise(px, W * H * 3, 8); /* noise at quality 100: far more than the 16 KB allowed */
    io_image img = {W, H, 3, px};
    xd_err e;
    assert_int_equal(mkdir("full", 0777), 0);
    ifx_file_size_limit(16384);
    xd_status s = io_jpeg_write("full/big.jpg", &img, 100, &e);
    ifx_file_size_unlimit();
    ifx_assert_fail(s, &e, XD_EIO, "full/big.jpg", NULL);
    assert_int_equal(ifx_dir_count("full"), 0);
    TU_OK(io_jpeg_write("full/big.jpg", &img, 100, &e));
    assert_int_equal(ifx_dir_count("full"), 1);
    free(px);
}

/* base (a JPEG's bytes) with an APP1 "Exif" marker after its SOI holding one directory entry:
 * tag, type, count, the 16-bit value; count_of_entries as the directory says (may lie); written
 * in big-endian (MM) or little-endian (II) order. */
static uint8_t *with_exif(const uint8_t *base, size_t n, int big, unsigned tag, unsigned type,
                          unsigned count, unsigned value, unsigned entries, size_t *out_n)
{
    uint8_t t[26];
    size_t k = 0;
#define PUT16(v) (big ? (t[k] = (uint8_t)((v) >> 8), t[k + 1] = (uint8_t)(v)) \
                      : (t[k] = (uint8_t)(v), t[k + 1] = (uint8_t)((v) >> 8)), k += 2)
#define PUT32(v) (big ? (PUT16((v) >> 16), PUT16((v) & 0xFFFF)) : (PUT16((v) & 0xFFFF), PUT16((v) >> 16)))
    t[k++] = big ? 'M' : 'I';
    t[k++] = big ? 'M' : 'I';
    PUT16(42u);
    PUT32(8u);
    PUT16(entries);
    PUT16(tag);
    PUT16(type);
    PUT32(count);
    PUT16(value);
    PUT16(0u);
    PUT32(0u); /* no next directory */
#undef PUT16
#undef PUT32
    const size_t seg = 2 + 6 + k; /* the length field counts itself */
    uint8_t *b = malloc(n + 2 + seg);
    memcpy(b, base, 2);
    b[2] = 0xFF;
    b[3] = 0xE1;
    b[4] = (uint8_t)(seg >> 8);
    b[5] = (uint8_t)seg;
    memcpy(b + 6, "Exif\0\0", 6);
    memcpy(b + 12, t, k);
    memcpy(b + 12 + k, base + 2, n - 2);
    *out_n = n + 2 + seg;
    return b;
}

/* An EXIF orientation turns the decoded pixels as the picture is shown: each of the eight, in
 * either byte order, against the stored pixels moved where that orientation puts them; an entry
 * that cannot be read (a value out of range, another type, a directory that runs past the
 * marker) leaves the pixels as stored. */
static void test_exif_orientation(void **state)
{
    (void)state;
    enum { W = 6, H = 4 };
    xd_err e;
    size_t n;
    uint8_t *base = smooth_jpeg("plain.jpg", W, H, 95, &n);
    io_image ref;
    TU_OK(io_jpeg_read_mem(base, n, "plain.jpg", NULL, &ref, &e));
    for (int big = 0; big < 2; big++)
        for (unsigned o = 1; o <= 8; o++) {
            size_t m;
            uint8_t *b = with_exif(base, n, big, 0x0112, 3, 1, o, 1, &m);
            io_image img;
            TU_OK(io_jpeg_read_mem(b, m, "exif.jpg", NULL, &img, &e));
            assert_int_equal(img.w, o >= 5 ? H : W);
            assert_int_equal(img.h, o >= 5 ? W : H);
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    /* where orientation o shows the stored pixel (x, y) */
                    static const int to[9][2][3] = {
                        [1] = {{1, 0, 0}, {0, 1, 0}}, [2] = {{-1, 0, W - 1}, {0, 1, 0}},
                        [3] = {{-1, 0, W - 1}, {0, -1, H - 1}}, [4] = {{1, 0, 0}, {0, -1, H - 1}},
                        [5] = {{0, 1, 0}, {1, 0, 0}}, [6] = {{0, -1, H - 1}, {1, 0, 0}},
                        [7] = {{0, -1, H - 1}, {-1, 0, W - 1}}, [8] = {{0, 1, 0}, {-1, 0, W - 1}},
                    };
                    const int *a = to[o][0], *c = to[o][1];
                    const int dx = a[0] * x + a[1] * y + a[2], dy = c[0] * x + c[1] * y + c[2];
                    if (memcmp(img.px + ((size_t)dy * img.w + dx) * 3,
                               ref.px + ((size_t)y * W + x) * 3, 3) != 0)
                        fail_msg("orientation %u (%s): stored (%d, %d) is not at (%d, %d)", o,
                                 big ? "MM" : "II", x, y, dx, dy);
                }
            io_image_free(&img);
            free(b);
        }
    static const unsigned bad[][5] = {
        /* tag, type, count, value, entries */
        {0x0112, 3, 1, 9, 1},    {0x0112, 3, 1, 0, 1},    {0x0112, 4, 1, 6, 1},
        {0x0112, 3, 2, 6, 1},    {0x0110, 3, 1, 6, 1},    {0x0112, 3, 1, 6, 60000},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t m;
        const unsigned *v = bad[i];
        /* the lying directory count: its one real entry comes first, so it is found */
        const int found = v[4] > 1;
        uint8_t *b = with_exif(base, n, 1, v[0], v[1], v[2], v[3], v[4], &m);
        io_image img;
        TU_OK(io_jpeg_read_mem(b, m, "exif.jpg", NULL, &img, &e));
        assert_int_equal(img.w, found ? H : W);
        if (!found) assert_memory_equal(img.px, ref.px, (size_t)W * H * 3);
        io_image_free(&img);
        free(b);
    }
    io_image_free(&ref);
    free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_rgb),
        cmocka_unit_test(test_roundtrip_grey),
        cmocka_unit_test(test_raw_grey_and_progressive),
        cmocka_unit_test(test_grey_uses_rec601),
        cmocka_unit_test(test_dispatch_by_magic),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_huge_header_rejected),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt_never_crashes),
        cmocka_unit_test(test_harmless_warning_is_ignored),
        cmocka_unit_test(test_cmyk_unsupported),
        cmocka_unit_test(test_exif_orientation),
        cmocka_unit_test(test_scan_limit),
        cmocka_unit_test(test_write_failures_leave_nothing),
        cmocka_unit_test(test_write_io_error_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
