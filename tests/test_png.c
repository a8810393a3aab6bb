/* io/png and io/image: exact round trips; every PNG colour type written with raw libpng calls
 * (palette + tRNS, grey + alpha, 16-bit, 1/2/4-bit, Adam7) decoded to hand-computed values,
 * alpha compositing included; lying, truncated, corrupt and foreign files; atomic writes. */
#include "tests/support/testutil.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

#include "io/image.h"
#include "io/png.h"
#include "tests/support/imgfix.h"

// ---------------------------------------------------------------------------------------------
// raw libpng writer for fixtures (independent of io_png_write)

typedef struct {
    int w, h, depth, ctype, interlace;
    const uint8_t *data; /* (h, rowbytes) packed samples as PNG stores them (16-bit big-endian) */
    size_t rowbytes;
    const png_color *pal;
    int npal;
    const uint8_t *trans; /* palette alphas */
    int ntrans;
    const png_color_16 *trans_color; /* grey / RGB colour that is transparent */
    int with_text;                   /* add a tEXt chunk */
} raw_png;

static void raw_png_write(const char *path, const raw_png *p)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc((size_t)p->h * sizeof *rows);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)p->w, (png_uint_32)p->h, p->depth, p->ctype, p->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (p->pal) png_set_PLTE(png, info, p->pal, p->npal);
    if (p->trans || p->trans_color) png_set_tRNS(png, info, p->trans, p->ntrans, p->trans_color);
    if (p->with_text) {
        static char key[] = "Comment", text[] = "a fixture with a text chunk";
        png_text t = {.compression = PNG_TEXT_COMPRESSION_NONE, .key = key, .text = text};
        png_set_text(png, info, &t, 1);
    }
    png_write_info(png, info);
    for (int y = 0; y < p->h; y++) rows[y] = (png_bytep)(p->data + (size_t)y * p->rowbytes);
    png_write_image(png, rows); /* does the Adam7 passes itself when interlaced */
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

static io_image decode_ok(const char *path, int channels, uint8_t r, uint8_t g, uint8_t b)
{
    io_image_opts opt = {.channels = channels, .bg = {r, g, b}};
    io_image img;
    xd_err e;
    xd_err_clear(&e);
    xd_status s = io_png_read(path, &opt, &img, &e);
    if (s != XD_OK) fail_msg("io_png_read(%s, %d channels): %s", path, channels, e.msg);
    if (channels) assert_int_equal(img.c, channels);
    return img;
}

static void assert_px(const io_image *img, int x, int y, const uint8_t *want)
{
    const uint8_t *p = img->px + ((size_t)y * img->w + x) * img->c;
    for (int k = 0; k < img->c; k++)
        if (p[k] != want[k])
            fail_msg("pixel (%d,%d) channel %d of %d: got %d, expected %d", x, y, k, img->c, p[k],
                     want[k]);
}

// ---------------------------------------------------------------------------------------------
// round trips and colour types

static void test_roundtrip_exact(void **state)
{
    (void)state;
    const int w = 37, h = 23;
    for (int c = 1; c <= 4; c++) {
        if (c == 2) continue;
        io_image src = {w, h, c, malloc((size_t)w * h * c)};
        ifx_noise(src.px, (size_t)w * h * c, (uint32_t)c);
        xd_err e;
        TU_OK(io_png_write("rt.png", &src, &e));
        io_image got;
        assert_int_equal(io_png_read("rt.png", NULL, &got, &e), XD_OK);
        assert_int_equal(got.w, w);
        assert_int_equal(got.h, h);
        assert_int_equal(got.c, c);
        assert_memory_equal(got.px, src.px, (size_t)w * h * c);
        io_image_free(&got);
        /* the dispatcher gives the same pixels */
        assert_int_equal(io_image_read("rt.png", NULL, &got, &e), XD_OK);
        assert_int_equal(got.c, c);
        assert_memory_equal(got.px, src.px, (size_t)w * h * c);
        io_image_free(&got);
        assert_null(got.px);
        free(src.px);
    }
}

static void test_rgb_to_grey_and_rgba(void **state)
{
    (void)state;
    uint8_t px[2 * 3] = {200, 100, 50, 10, 20, 30};
    io_image src = {2, 1, 3, px};
    xd_err e;
    TU_OK(io_png_write("rgb.png", &src, &e));
    /* Rec.601: 0.299*200 + 0.587*100 + 0.114*50 = 124.2 -> 124; 2.99 + 11.74 + 3.42 = 18.15 -> 18 */
    io_image g = decode_ok("rgb.png", 1, 0, 0, 0);
    assert_int_equal(g.px[0], 124);
    assert_int_equal(g.px[1], 18);
    io_image_free(&g);
    io_image a = decode_ok("rgb.png", 4, 0, 0, 0);
    assert_px(&a, 0, 0, (const uint8_t[]){200, 100, 50, 255});
    assert_px(&a, 1, 0, (const uint8_t[]){10, 20, 30, 255});
    io_image_free(&a);

    uint8_t gp[3] = {0, 77, 255};
    io_image gs = {3, 1, 1, gp};
    TU_OK(io_png_write("grey.png", &gs, &e));
    io_image rgb = decode_ok("grey.png", 3, 9, 9, 9);
    assert_px(&rgb, 1, 0, (const uint8_t[]){77, 77, 77});
    assert_px(&rgb, 2, 0, (const uint8_t[]){255, 255, 255});
    io_image_free(&rgb);
}

static void test_palette_trns(void **state)
{
    (void)state;
    /* 2-bit palette, 5x2 (a row does not fill its last byte); entry 3 has no tRNS: opaque */
    static const png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
    static const uint8_t trans[3] = {0, 128, 255};
    /* row 0: 0 1 2 3 0 ; row 1: 3 2 1 0 1 ; four 2-bit indices per byte, first in the high bits */
    static const uint8_t data[2][2] = {{0x1b, 0x00}, {0xe4, 0x40}};
    raw_png p = {.w = 5, .h = 2, .depth = 2, .ctype = PNG_COLOR_TYPE_PALETTE, .data = &data[0][0],
                 .rowbytes = 2, .pal = pal, .npal = 4, .trans = trans, .ntrans = 3};
    raw_png_write("pal.png", &p);

    io_image img = decode_ok("pal.png", 0, 0, 0, 0);
    assert_int_equal(img.c, 4); /* as stored: tRNS makes it RGBA */
    const int idx[2][5] = {{0, 1, 2, 3, 0}, {3, 2, 1, 0, 1}};
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 5; x++) {
            int i = idx[y][x];
            uint8_t want[4] = {pal[i].red, pal[i].green, pal[i].blue, i < 3 ? trans[i] : 255};
            assert_px(&img, x, y, want);
        }
    io_image_free(&img);

    /* over bg (50,100,150): out = (a*fg + (255-a)*bg + 127) / 255
     * index 0, a=0:   bg itself
     * index 1, a=128: r = (0 + 127*50 + 127)/255 = 25, g = (128*255 + 127*100 + 127)/255 = 178,
     *                 b = (0 + 127*150 + 127)/255 = 75
     * index 2, a=255: (0,0,255); index 3 opaque: (10,20,30) */
    img = decode_ok("pal.png", 3, 50, 100, 150);
    assert_px(&img, 0, 0, (const uint8_t[]){50, 100, 150});
    assert_px(&img, 1, 0, (const uint8_t[]){25, 178, 75});
    assert_px(&img, 2, 0, (const uint8_t[]){0, 0, 255});
    assert_px(&img, 3, 0, (const uint8_t[]){10, 20, 30});
    assert_px(&img, 4, 1, (const uint8_t[]){25, 178, 75});
    io_image_free(&img);

    /* grey = Rec.601 of the composited colour:
     * index 1: (299*25 + 587*178 + 114*75 + 500)/1000 = 121; index 0: bg -> 91;
     * index 2: (114*255 + 500)/1000 = 29 */
    img = decode_ok("pal.png", 1, 50, 100, 150);
    assert_px(&img, 0, 0, (const uint8_t[]){91});
    assert_px(&img, 1, 0, (const uint8_t[]){121});
    assert_px(&img, 2, 0, (const uint8_t[]){29});
    io_image_free(&img);
}

static void test_grey_alpha(void **state)
{
    (void)state;
    static const uint8_t data[6] = {200, 255, 200, 0, 100, 51};
    raw_png p = {.w = 3, .h = 1, .depth = 8, .ctype = PNG_COLOR_TYPE_GRAY_ALPHA, .data = data,
                 .rowbytes = 6};
    raw_png_write("ga.png", &p);
    io_image img = decode_ok("ga.png", 0, 0, 0, 0);
    assert_int_equal(img.c, 4); /* grey + alpha as stored -> RGBA */
    assert_px(&img, 0, 0, (const uint8_t[]){200, 200, 200, 255});
    assert_px(&img, 1, 0, (const uint8_t[]){200, 200, 200, 0});
    assert_px(&img, 2, 0, (const uint8_t[]){100, 100, 100, 51});
    io_image_free(&img);

    /* over white: (51*100 + 204*255 + 127)/255 = 224 */
    img = decode_ok("ga.png", 1, 255, 255, 255);
    assert_px(&img, 0, 0, (const uint8_t[]){200});
    assert_px(&img, 1, 0, (const uint8_t[]){255});
    assert_px(&img, 2, 0, (const uint8_t[]){224});
    io_image_free(&img);

    /* over red: r = 224, g = b = (51*100 + 127)/255 = 20; grey = (299*224 + 701*20 + 500)/1000 = 81 */
    img = decode_ok("ga.png", 3, 255, 0, 0);
    assert_px(&img, 1, 0, (const uint8_t[]){255, 0, 0});
    assert_px(&img, 2, 0, (const uint8_t[]){224, 20, 20});
    io_image_free(&img);
    img = decode_ok("ga.png", 1, 255, 0, 0);
    assert_px(&img, 2, 0, (const uint8_t[]){81});
    io_image_free(&img);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void test_16bit(void **state)
{
    (void)state;
    /* v8 = round(v16 * 255 / 65535) = round(v16 / 257) */
    static const unsigned v16[4][3] = {
        {0, 65535, 25700}, {385, 386, 32896}, {1000, 65000, 128}, {65535, 0, 1}};
    static const uint8_t v8[4][3] = {{0, 255, 100}, {1, 2, 128}, {4, 253, 0}, {255, 0, 0}};
    uint8_t data[4 * 6];
    for (int x = 0; x < 4; x++)
        for (int k = 0; k < 3; k++) put16(data + x * 6 + k * 2, v16[x][k]);
    raw_png p = {.w = 4, .h = 1, .depth = 16, .ctype = PNG_COLOR_TYPE_RGB, .data = data,
                 .rowbytes = sizeof data};
    raw_png_write("rgb16.png", &p);
    io_image img = decode_ok("rgb16.png", 0, 0, 0, 0);
    assert_int_equal(img.c, 3);
    for (int x = 0; x < 4; x++) assert_px(&img, x, 0, v8[x]);
    io_image_free(&img);

    /* 16-bit grey + alpha: (65535, 32896) -> (255, a=128); over black: (128*255 + 127)/255 = 128;
     * (12850, 65535) -> 50 opaque */
    uint8_t ga[8];
    put16(ga, 65535);
    put16(ga + 2, 32896);
    put16(ga + 4, 12850);
    put16(ga + 6, 65535);
    raw_png q = {.w = 2, .h = 1, .depth = 16, .ctype = PNG_COLOR_TYPE_GRAY_ALPHA, .data = ga,
                 .rowbytes = sizeof ga};
    raw_png_write("ga16.png", &q);
    img = decode_ok("ga16.png", 4, 0, 0, 0);
    assert_px(&img, 0, 0, (const uint8_t[]){255, 255, 255, 128});
    assert_px(&img, 1, 0, (const uint8_t[]){50, 50, 50, 255});
    io_image_free(&img);
    img = decode_ok("ga16.png", 1, 0, 0, 0);
    assert_px(&img, 0, 0, (const uint8_t[]){128});
    assert_px(&img, 1, 0, (const uint8_t[]){50});
    io_image_free(&img);
}

static void test_low_bit_grey_and_trns_colour(void **state)
{
    (void)state;
    /* 1-bit grey 10x1: 1 0 1 0 0 1 1 1 0 0 -> 255 or 0 */
    static const uint8_t bits[2] = {0xa7, 0x00};
    raw_png p1 = {.w = 10, .h = 1, .depth = 1, .ctype = PNG_COLOR_TYPE_GRAY, .data = bits,
                  .rowbytes = 2};
    raw_png_write("g1.png", &p1);
    io_image img = decode_ok("g1.png", 0, 0, 0, 0);
    assert_int_equal(img.c, 1);
    static const uint8_t want1[10] = {255, 0, 255, 0, 0, 255, 255, 255, 0, 0};
    assert_memory_equal(img.px, want1, 10);
    io_image_free(&img);

    /* 4-bit grey: 0, 7, 15 -> v * 17 = 0, 119, 255 */
    static const uint8_t nib[2] = {0x07, 0xf0};
    raw_png p4 = {.w = 3, .h = 1, .depth = 4, .ctype = PNG_COLOR_TYPE_GRAY, .data = nib,
                  .rowbytes = 2};
    raw_png_write("g4.png", &p4);
    img = decode_ok("g4.png", 0, 0, 0, 0);
    assert_memory_equal(img.px, ((const uint8_t[]){0, 119, 255}), 3);
    io_image_free(&img);

    /* grey with a transparent value (tRNS): 50 -> alpha 0, 51 -> opaque */
    static const uint8_t g8[2] = {50, 51};
    png_color_16 tg = {.gray = 50};
    raw_png pt = {.w = 2, .h = 1, .depth = 8, .ctype = PNG_COLOR_TYPE_GRAY, .data = g8,
                  .rowbytes = 2, .trans_color = &tg};
    raw_png_write("gt.png", &pt);
    img = decode_ok("gt.png", 0, 0, 0, 0);
    assert_int_equal(img.c, 4);
    assert_px(&img, 0, 0, (const uint8_t[]){50, 50, 50, 0});
    assert_px(&img, 1, 0, (const uint8_t[]){51, 51, 51, 255});
    io_image_free(&img);
    img = decode_ok("gt.png", 3, 7, 8, 9);
    assert_px(&img, 0, 0, (const uint8_t[]){7, 8, 9});
    io_image_free(&img);

    /* RGB with a transparent colour */
    static const uint8_t rgb[6] = {1, 2, 3, 1, 2, 4};
    png_color_16 tc = {.red = 1, .green = 2, .blue = 3};
    raw_png pr = {.w = 2, .h = 1, .depth = 8, .ctype = PNG_COLOR_TYPE_RGB, .data = rgb,
                  .rowbytes = 6, .trans_color = &tc};
    raw_png_write("rt.png", &pr);
    img = decode_ok("rt.png", 0, 0, 0, 0);
    assert_px(&img, 0, 0, (const uint8_t[]){1, 2, 3, 0});
    assert_px(&img, 1, 0, (const uint8_t[]){1, 2, 4, 255});
    io_image_free(&img);
}

static void test_interlaced(void **state)
{
    (void)state;
    enum { W = 13, H = 11 };
    uint8_t data[H][W * 4];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *q = &data[y][x * 4];
            q[0] = (uint8_t)(x * 19 + y * 7);
            q[1] = (uint8_t)(x * y);
            q[2] = (uint8_t)(255 - x - y * 3);
            q[3] = (uint8_t)(x * 20);
        }
    raw_png p = {.w = W, .h = H, .depth = 8, .ctype = PNG_COLOR_TYPE_RGB_ALPHA,
                 .interlace = PNG_INTERLACE_ADAM7, .data = &data[0][0], .rowbytes = W * 4};
    raw_png_write("adam7.png", &p);
    io_image img = decode_ok("adam7.png", 0, 0, 0, 0);
    assert_int_equal(img.w, W);
    assert_int_equal(img.h, H);
    assert_memory_equal(img.px, data, sizeof data);
    io_image_free(&img);
    /* x = 3, y = 2: (71, 6, 246, a=60) over black: (60*71 + 127)/255 = 17, (360+127)/255 = 1,
     * (60*246 + 127)/255 = 58 */
    img = decode_ok("adam7.png", 3, 0, 0, 0);
    assert_px(&img, 3, 2, (const uint8_t[]){17, 1, 58});
    io_image_free(&img);
}

static void test_ancillary_crc_is_silent(void **state)
{
    (void)state;
    static const uint8_t g[4] = {1, 2, 3, 4};
    raw_png p = {.w = 2, .h = 2, .depth = 8, .ctype = PNG_COLOR_TYPE_GRAY, .data = g,
                 .rowbytes = 2, .with_text = 1};
    raw_png_write("text.png", &p);
    size_t n;
    uint8_t *buf = tu_read_file("text.png", &n);
    uint8_t *t = memmem(buf, n, "tEXt", 4);
    assert_non_null(t);
    t[6] ^= 0x20; /* a byte of the keyword: the chunk's CRC no longer matches */
    ifx_stderr_begin();
    io_image img;
    xd_err e;
    xd_status s = io_png_read_mem(buf, n, "text.png", NULL, &img, &e);
    long printed = ifx_stderr_end();
    assert_int_equal(s, XD_OK); /* libpng drops a bad ancillary chunk with a warning */
    assert_memory_equal(img.px, g, 4);
    assert_int_equal(printed, 0);
    io_image_free(&img);
    free(buf);
}

// ---------------------------------------------------------------------------------------------
// bad input

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends one chunk (length, type, data, CRC over type + data) at out; returns its size. */
static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t len)
{
    be32(out, len);
    memcpy(out + 4, type, 4);
    if (len) memcpy(out + 8, data, len);
    uLong crc = crc32(0L, out + 4, 4 + len);
    be32(out + 8 + len, (uint32_t)crc);
    return 12 + len;
}

static size_t lying_png(uint8_t *out, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    size_t n = 8;
    uint8_t ihdr[13];
    be32(ihdr, w);
    be32(ihdr + 4, h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 6;  /* RGBA */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* not interlaced */
    n += put_chunk(out + n, "IHDR", ihdr, 13);
    uint8_t raw[64] = {0}, z[128];
    uLongf zn = sizeof z;
    assert_int_equal(compress(z, &zn, raw, sizeof raw), Z_OK);
    n += put_chunk(out + n, "IDAT", z, (uint32_t)zn);
    n += put_chunk(out + n, "IEND", NULL, 0);
    return n;
}

static void test_huge_header_rejected(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t n = lying_png(buf, 100000, 100000);
    tu_write_file("huge.png", buf, n);
    io_image img;
    xd_err e;
    ifx_assert_fail(io_png_read("huge.png", NULL, &img, &e), &e, XD_EFORMAT, "huge.png",
                    "100000x100000");
    assert_null(img.px);
    ifx_assert_fail(io_image_read("huge.png", NULL, &img, &e), &e, XD_EFORMAT, "huge.png",
                    "100000x100000");
    /* one side too long although the pixel count would fit */
    n = lying_png(buf, 40000, 1);
    ifx_assert_fail(io_png_read_mem(buf, n, "wide.png", NULL, &img, &e), &e, XD_EFORMAT,
                    "wide.png", "40000x1");
    /* a zero width is refused by libpng's IHDR check */
    n = lying_png(buf, 0, 5);
    ifx_assert_fail(io_png_read_mem(buf, n, "zero.png", NULL, &img, &e), &e, XD_EFORMAT,
                    "zero.png", NULL);
    /* the caller's own, tighter limits */
    uint8_t px[37 * 23];
    ifx_noise(px, sizeof px, 5);
    io_image src = {37, 23, 1, px};
    TU_OK(io_png_write("small.png", &src, &e));
    io_image_opts lim = {.max_dim = 30};
    ifx_assert_fail(io_png_read("small.png", &lim, &img, &e), &e, XD_EFORMAT, "small.png", "37x23");
    io_image_opts lim2 = {.max_pixels = 37 * 23 - 1};
    ifx_assert_fail(io_png_read("small.png", &lim2, &img, &e), &e, XD_EFORMAT, "37x23", NULL);
    io_image_opts lim3 = {.max_dim = 37, .max_pixels = 37 * 23};
    assert_int_equal(io_png_read("small.png", &lim3, &img, &e), XD_OK);
    io_image_free(&img);
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A text chunk whose header claims far more bytes than the file holds is a truncated file, found
 * without first allocating and clearing what the header claims (libpng does that for the
 * ancillary chunks it parses, so they are skipped). */
static void test_lying_chunk_length(void **state)
{
    (void)state;
    uint8_t buf[512];
    lying_png(buf, 2, 2);
    size_t n = 8 + 25; /* signature and IHDR */
    be32(buf + n, 256u << 20);
    memcpy(buf + n + 4, "zTXt", 4);
    memset(buf + n + 8, 'x', 16);
    n += 24;
    long before = peak_rss_kb();
    io_image img;
    xd_err e;
    ifx_assert_fail(io_png_read_mem(buf, n, "ztxt.png", NULL, &img, &e), &e, XD_EFORMAT,
                    "ztxt.png", "truncated");
    assert_true(peak_rss_kb() - before < 64 * 1024);
}

/* A 2x2 grey PNG whose one deflate stream holds its rows, then extra zero bytes; *n its size. */
static uint8_t *padded_png(size_t extra, size_t *n)
{
    static const uint8_t rows[6] = {0, 10, 20, 0, 30, 40}; /* filter byte 0, then two pixels */
    z_stream z = {0};
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15, 9, Z_RLE), Z_OK);
    size_t cap = 4096 + extra / 256;
    uint8_t *out = malloc(cap + 64), *idat = malloc(cap), zeros[1 << 16] = {0};
    z.next_out = idat;
    z.avail_out = (uInt)cap;
    z.next_in = (Bytef *)rows;
    z.avail_in = sizeof rows;
    assert_int_equal(deflate(&z, Z_NO_FLUSH), Z_OK);
    for (size_t left = extra; left;) {
        size_t k = left < sizeof zeros ? left : sizeof zeros;
        z.next_in = zeros;
        z.avail_in = (uInt)k;
        assert_int_equal(deflate(&z, Z_NO_FLUSH), Z_OK);
        left -= k;
    }
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0, 0, 0, 2, 0, 0, 0, 2, 8, 0, 0, 0, 0}; /* 2x2, 8-bit grey */
    *n = 8 + put_chunk(out + 8, "IHDR", ihdr, 13);
    *n += put_chunk(out + *n, "IDAT", idat, (uint32_t)z.total_out);
    *n += put_chunk(out + *n, "IEND", NULL, 0);
    deflateEnd(&z);
    free(idat);
    return out;
}

/* Image data after the last row: a few bytes pass as they did, more is refused without being
 * inflated to its end (the 64 KiB here would be 64 MB; a file of 2 MB, 2 GB). */
static void test_image_data_after_rows(void **state)
{
    (void)state;
    size_t n;
    io_image img;
    xd_err e;
    uint8_t *buf = padded_png(1000, &n);
    TU_OK(io_png_read_mem(buf, n, "pad.png", NULL, &img, &e));
    assert_memory_equal(img.px, ((const uint8_t[]){10, 20, 30, 40}), 4);
    io_image_free(&img);
    free(buf);
    buf = padded_png((size_t)64 << 20, &n);
    assert_true(n > (20 << 10));
    ifx_assert_fail(io_png_read_mem(buf, n, "bomb.png", NULL, &img, &e), &e, XD_EFORMAT,
                    "bomb.png", "after the last row");
    assert_null(img.px);
    free(buf);
}

static void test_bad_files(void **state)
{
    (void)state;
    io_image img;
    xd_err e;
    tu_write_file("empty.png", "", 0);
    ifx_assert_fail(io_png_read("empty.png", NULL, &img, &e), &e, XD_EFORMAT, "empty.png", "empty");
    ifx_assert_fail(io_image_read("empty.png", NULL, &img, &e), &e, XD_EFORMAT, "empty.png", NULL);

    uint8_t noise[1000];
    ifx_noise(noise, sizeof noise, 99);
    tu_write_file("noise.png", noise, sizeof noise);
    ifx_assert_fail(io_png_read("noise.png", NULL, &img, &e), &e, XD_EFORMAT, "noise.png",
                    "not a PNG");
    ifx_assert_fail(io_image_read("noise.png", NULL, &img, &e), &e, XD_EFORMAT, "noise.png",
                    "not a PNG or JPEG");
    /* random bytes behind a valid signature reach libpng, which must fail cleanly */
    memcpy(noise, "\x89PNG\r\n\x1a\n", 8);
    ifx_assert_fail(io_png_read_mem(noise, sizeof noise, "sig.png", NULL, &img, &e), &e,
                    XD_EFORMAT, "sig.png", "bad PNG");

    tu_write_file("text.txt", "hello, not an image\n", 20);
    ifx_assert_fail(io_image_read("text.txt", NULL, &img, &e), &e, XD_EFORMAT, "text.txt",
                    "not a PNG or JPEG");
    ifx_assert_fail(io_png_read("missing.png", NULL, &img, &e), &e, XD_EIO, "missing.png", NULL);
    ifx_assert_fail(io_image_read("missing.png", NULL, &img, &e), &e, XD_EIO, "missing.png", NULL);
    ifx_assert_fail(io_png_read_mem(noise, sizeof noise, NULL, NULL, &img, &e), &e, XD_EFORMAT,
                    "<memory>", NULL);

    /* a bad request is an argument error, not a file error */
    uint8_t px[4] = {1, 2, 3, 4};
    io_image src = {2, 2, 1, px};
    TU_OK(io_png_write("ok.png", &src, &e));
    io_image_opts two = {.channels = 2};
    ifx_assert_fail(io_png_read("ok.png", &two, &img, &e), &e, XD_EARG, "ok.png", "2 channels");
}

static void test_truncated(void **state)
{
    (void)state;
    enum { W = 16, H = 12 };
    uint8_t px[W * H * 4];
    ifx_noise(px, sizeof px, 3);
    xd_err e;
    io_image src = {W, H, 4, px};
    TU_OK(io_png_write("full.png", &src, &e));
    uint8_t data[H][W * 4];
    memcpy(data, px, sizeof data);
    raw_png p = {.w = W, .h = H, .depth = 8, .ctype = PNG_COLOR_TYPE_RGB_ALPHA,
                 .interlace = PNG_INTERLACE_ADAM7, .data = &data[0][0], .rowbytes = W * 4};
    raw_png_write("full7.png", &p);

    const char *names[2] = {"full.png", "full7.png"};
    ifx_stderr_begin();
    for (int f = 0; f < 2; f++) {
        size_t n;
        uint8_t *buf = tu_read_file(names[f], &n);
        for (size_t len = 0; len < n; len++) {
            io_image img;
            xd_status s = io_png_read_mem(buf, len, names[f], NULL, &img, &e);
            if (s != XD_EFORMAT)
                fail_msg("%s cut to %zu of %zu bytes: status %s (%s)", names[f], len, n,
                         xd_status_name(s), e.msg);
            assert_null(img.px);
            assert_non_null(strstr(e.msg, names[f]));
        }
        io_image img;
        assert_int_equal(io_png_read_mem(buf, n, names[f], NULL, &img, &e), XD_OK);
        assert_memory_equal(img.px, px, sizeof px);
        io_image_free(&img);
        /* through a file, cut in the middle of the pixel data */
        tu_write_file("cut.png", buf, n / 2);
        ifx_assert_fail(io_png_read("cut.png", NULL, &img, &e), &e, XD_EFORMAT, "cut.png", NULL);
        free(buf);
    }
    assert_int_equal(ifx_stderr_end(), 0);
}

static void test_corrupt_never_crashes(void **state)
{
    (void)state;
    enum { W = 9, H = 7 };
    uint8_t px[W * H * 3];
    ifx_noise(px, sizeof px, 11);
    xd_err e;
    io_image src = {W, H, 3, px};
    TU_OK(io_png_write("c.png", &src, &e));
    size_t n;
    uint8_t *good = tu_read_file("c.png", &n);
    uint8_t *bad = malloc(n);
    uint8_t r[4];
    int failed = 0;
    ifx_stderr_begin();
    for (uint32_t t = 0; t < 400; t++) {
        memcpy(bad, good, n);
        ifx_noise(r, sizeof r, t);
        size_t at = 8 + (((size_t)r[0] << 8) | r[1]) % (n - 8);
        bad[at] ^= (uint8_t)(r[2] | 1);
        io_image img;
        xd_status s = io_png_read_mem(bad, n, "c.png", NULL, &img, &e);
        if (s != XD_OK && s != XD_EFORMAT) fail_msg("flip at %zu: status %s", at, xd_status_name(s));
        failed += s != XD_OK;
        io_image_free(&img);
    }
    assert_int_equal(ifx_stderr_end(), 0);
    assert_true(failed > 300); /* CRCs catch nearly every flipped byte */
    free(bad);
    free(good);
}

// ---------------------------------------------------------------------------------------------
// writing

static void test_write_failures_leave_nothing(void **state)
{
    (void)state;
    uint8_t px[6 * 4 * 4];
    ifx_noise(px, sizeof px, 1);
    io_image img = {6, 4, 3, px};
    xd_err e;
    ifx_assert_fail(io_png_write("no/such/dir/x.png", &img, &e), &e, XD_EIO, "no/such/dir/x.png",
                    NULL);
    assert_false(ifx_exists("no"));

    assert_int_equal(mkdir("out", 0777), 0);
    io_image two = {6, 4, 2, px};
    ifx_assert_fail(io_png_write("out/x.png", &two, &e), &e, XD_EARG, "out/x.png", "channels");
    io_image five = {6, 4, 5, px};
    ifx_assert_fail(io_png_write("out/x.png", &five, &e), &e, XD_EARG, "out/x.png", NULL);
    io_image empty = {0, 4, 3, px};
    ifx_assert_fail(io_png_write("out/x.png", &empty, &e), &e, XD_EARG, "out/x.png", NULL);
    assert_int_equal(ifx_dir_count("out"), 0);

    /* libpng refuses a width above its limit after the temporary file exists: it must go */
    enum { WIDE = 2000000 };
    uint8_t *wide = calloc(WIDE, 1);
    io_image line = {WIDE, 1, 1, wide};
    ifx_stderr_begin();
    xd_status s = io_png_write("out/wide.png", &line, &e);
    assert_int_equal(ifx_stderr_end(), 0);
    ifx_assert_fail(s, &e, XD_EARG, "out/wide.png", "cannot encode PNG");
    assert_int_equal(ifx_dir_count("out"), 0);
    free(wide);

    /* a successful write replaces an existing file */
    TU_OK(io_png_write("out/x.png", &img, &e));
    io_image g = {6, 4, 4, px};
    TU_OK(io_png_write("out/x.png", &g, &e));
    assert_int_equal(ifx_dir_count("out"), 1);
    io_image back;
    assert_int_equal(io_png_read("out/x.png", NULL, &back, &e), XD_OK);
    assert_int_equal(back.c, 4);
    assert_memory_equal(back.px, px, sizeof px);
    io_image_free(&back);
}

static void test_write_io_error_leaves_nothing(void **state)
{
    (void)state;
    enum { W = 200, H = 150 };
    uint8_t *px = malloc(W * H * 3);
    ifx_noise(px, W * H * 3, 8); /* noise does not compress: the file would be ~90 KB */
    io_image img = {W, H, 3, px};
    xd_err e;
    assert_int_equal(mkdir("full", 0777), 0);
    ifx_file_size_limit(16384);
    xd_status s = io_png_write("full/big.png", &img, &e);
    ifx_file_size_unlimit();
    ifx_assert_fail(s, &e, XD_EIO, "full/big.png", NULL);
    assert_int_equal(ifx_dir_count("full"), 0);
    TU_OK(io_png_write("full/big.png", &img, &e)); /* and works once there is room */
    assert_int_equal(ifx_dir_count("full"), 1);
    free(px);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_exact),
        cmocka_unit_test(test_rgb_to_grey_and_rgba),
        cmocka_unit_test(test_palette_trns),
        cmocka_unit_test(test_grey_alpha),
        cmocka_unit_test(test_16bit),
        cmocka_unit_test(test_low_bit_grey_and_trns_colour),
        cmocka_unit_test(test_interlaced),
        cmocka_unit_test(test_ancillary_crc_is_silent),
        cmocka_unit_test(test_huge_header_rejected),
        cmocka_unit_test(test_lying_chunk_length),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_image_data_after_rows),
        cmocka_unit_test(test_corrupt_never_crashes),
        cmocka_unit_test(test_write_failures_leave_nothing),
        cmocka_unit_test(test_write_io_error_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
