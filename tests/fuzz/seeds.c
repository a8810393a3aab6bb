/* Writes the seed corpora of the fuzz targets: small valid files of every format, made with the
 * library's own writers (and libpng / libjpeg directly for the variants our writers never make:
 * palette, 16-bit, 1-bit, interlaced PNG; progressive JPEG). Usage: fuzz-seeds FOLDER, which
 * gets one sub-folder per target (FOLDER/png, FOLDER/jpeg, ...). `make fuzz-seeds` runs it on
 * tests/fuzz/corpus; recipes come from recipes/ (copied by the make target). */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "io/dataset.h"
#include "io/file.h"
#include "io/idx.h"
#include "io/jpeg.h"
#include "io/npy.h"
#include "io/png.h"
#include "io/safetensors.h"

static const char *root;

static void check(xd_status s, const xd_err *e)
{
    if (s != XD_OK) {
        fprintf(stderr, "fuzz-seeds: %s\n", e->msg);
        exit(1);
    }
}

/* root/target/name, the folder made. */
static const char *out(const char *target, const char *name)
{
    static char path[4096];
    xd_err e;
    snprintf(path, sizeof path, "%s/%s", root, target);
    check(io_mkdir_p(path, &e), &e);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    return path;
}

static void text(const char *target, const char *name, const char *s, size_t n)
{
    const char *path = out(target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "fuzz-seeds: cannot write %s\n", path);
        exit(1);
    }
}
#define TEXT(target, name, literal) text(target, name, literal, sizeof literal - 1)

static void pattern(uint8_t *px, size_t n)
{
    for (size_t i = 0; i < n; i++) px[i] = (uint8_t)(i * 37 + 11);
}

/* ---- images */

static void png_raw(const char *name, int w, int h, int color, int depth, int interlace)
{
    FILE *f = fopen(out("png", name), "wb");
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (!f || !p || !info || setjmp(png_jmpbuf(p))) {
        fprintf(stderr, "fuzz-seeds: cannot write %s\n", name);
        exit(1);
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
        png_byte alpha[2] = {0, 128};
        png_set_PLTE(p, info, pal, 4);
        png_set_tRNS(p, info, alpha, 2, NULL);
    }
    png_write_info(p, info);
    size_t rowbytes = png_get_rowbytes(p, info);
    uint8_t *rows = malloc(rowbytes * (size_t)h);
    pattern(rows, rowbytes * (size_t)h);
    if (color == PNG_COLOR_TYPE_PALETTE)
        for (size_t i = 0; i < rowbytes * (size_t)h; i++) rows[i] &= 0x55; /* indices 0..3 */
    png_bytep *ptr = malloc(sizeof *ptr * (size_t)h);
    for (int y = 0; y < h; y++) ptr[y] = rows + (size_t)y * rowbytes;
    png_write_image(p, ptr);
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    fclose(f);
    free(ptr);
    free(rows);
}

static void png_seeds(void)
{
    xd_err e;
    uint8_t px[4 * 4 * 4];
    pattern(px, sizeof px);
    io_image img = {3, 2, 1, px};
    check(io_png_write(out("png", "grey-3x2.png"), &img, &e), &e);
    img = (io_image){2, 2, 3, px};
    check(io_png_write(out("png", "rgb-2x2.png"), &img, &e), &e);
    img = (io_image){4, 3, 4, px};
    check(io_png_write(out("png", "rgba-4x3.png"), &img, &e), &e);
    png_raw("palette-trns-2bit.png", 5, 3, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_NONE);
    png_raw("grey-alpha-16bit.png", 3, 3, PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_NONE);
    png_raw("grey-1bit.png", 9, 2, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE);
    png_raw("rgb-adam7.png", 9, 9, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7);
}

static void jpeg_progressive(const char *name)
{
    FILE *f = fopen(out("jpeg", name), "wb");
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = 16;
    c.image_height = 8;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 50, TRUE);
    jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    uint8_t row[16 * 3];
    while (c.next_scanline < c.image_height) {
        pattern(row, sizeof row);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static void jpeg_seeds(void)
{
    xd_err e;
    uint8_t px[16 * 16 * 3];
    pattern(px, sizeof px);
    io_image img = {8, 8, 1, px};
    check(io_jpeg_write(out("jpeg", "grey-8x8.jpg"), &img, 90, &e), &e);
    img = (io_image){16, 16, 3, px};
    check(io_jpeg_write(out("jpeg", "rgb-16x16.jpg"), &img, 30, &e), &e);
    jpeg_progressive("rgb-progressive.jpg");
}

/* ---- arrays */

static void idx_seeds(void)
{
    xd_err e;
    uint8_t u8[2 * 3 * 2];
    pattern(u8, sizeof u8);
    io_idx x = {IO_IDX_U8, 3, {2, 3, 2}, 12, u8};
    check(io_idx_write(out("idx", "u8-2x3x2.idx"), &x, IO_IDX_PLAIN, &e), &e);
    check(io_idx_write(out("idx", "u8-2x3x2.idx.gz"), &x, IO_IDX_GZIP, &e), &e);
    int16_t i16[3] = {-2, 0, 300};
    x = (io_idx){IO_IDX_I16, 1, {3}, 3, i16};
    check(io_idx_write(out("idx", "i16-3.idx"), &x, IO_IDX_PLAIN, &e), &e);
    float f32[4] = {0.5f, -1.0f, 2.0f, 1e-3f};
    x = (io_idx){IO_IDX_F32, 2, {2, 2}, 4, f32};
    check(io_idx_write(out("idx", "f32-2x2.idx.gz"), &x, IO_IDX_GZIP, &e), &e);
    double f64[2] = {1.0, -0.25};
    x = (io_idx){IO_IDX_F64, 1, {2}, 2, f64};
    check(io_idx_write(out("idx", "f64-2.idx"), &x, IO_IDX_PLAIN, &e), &e);
}

static void npy_seeds(void)
{
    xd_err e;
    float f32[6] = {1, -2, 3.5f, 0, 1e6f, -1e-6f};
    io_tensor t;
    io_tensor_set(&t, NULL, IO_F32, 2, (int64_t[]){2, 3}, f32);
    check(io_npy_write(out("npy", "f32-2x3.npy"), &t, &e), &e);
    uint8_t u8[4] = {0, 1, 254, 255};
    io_tensor_set(&t, NULL, IO_U8, 1, (int64_t[]){4}, u8);
    check(io_npy_write(out("npy", "u8-4.npy"), &t, &e), &e);
    int64_t i64 = -7;
    io_tensor_set(&t, NULL, IO_I64, 0, NULL, &i64);
    check(io_npy_write(out("npy", "i64-scalar.npy"), &t, &e), &e);
    uint16_t f16[3] = {0x3c00, 0x7c00, 0x7e00}; /* 1, inf, NaN */
    io_tensor_set(&t, NULL, IO_F16, 3, (int64_t[]){1, 3, 1}, f16);
    check(io_npy_write(out("npy", "f16-1x3x1.npy"), &t, &e), &e);
    io_tensor_set(&t, NULL, IO_BOOL, 2, (int64_t[]){0, 5}, NULL);
    check(io_npy_write(out("npy", "bool-empty.npy"), &t, &e), &e);
}

static void safetensors_seeds(void)
{
    xd_err e;
    float w[6] = {0.1f, 0.2f, -0.3f, 0.4f, 0.5f, 0.6f};
    float b[2] = {0, 1};
    io_tensor ts[3];
    io_tensor_set(&ts[0], "fc.weight", IO_F32, 2, (int64_t[]){2, 3}, w);
    io_tensor_set(&ts[1], "fc.bias", IO_F32, 1, (int64_t[]){2}, b);
    io_kv meta[2] = {{"model", "input h=1 w=1 c=3; linear out=2"}, {"format", "pt"}};
    check(io_st_write(out("safetensors", "linear.safetensors"), ts, 2, meta, 2, &e), &e);
    uint8_t u8[3] = {1, 2, 3};
    int32_t i32[2] = {-1, 5};
    io_tensor_set(&ts[0], "bytes", IO_U8, 1, (int64_t[]){3}, u8);
    io_tensor_set(&ts[1], "ids", IO_I32, 2, (int64_t[]){1, 2}, i32);
    io_tensor_set(&ts[2], "empty", IO_BF16, 1, (int64_t[]){0}, NULL);
    check(io_st_write(out("safetensors", "mixed.safetensors"), ts, 3, NULL, 0, &e), &e);
}

static void dataset_seeds(void)
{
    xd_err e;
    io_dataset_writer *w;
    check(io_dataset_writer_open(out("dataset", "tiny.xds"), 4, &w, &e), &e);
    uint8_t img[2 * 2 * 2];
    pattern(img, sizeof img);
    int32_t label[2] = {1, 0};
    io_tensor t;
    io_tensor_set(&t, "train/image", IO_U8, 4, (int64_t[]){2, 2, 2, 1}, img);
    check(io_dataset_add(w, &t, &e), &e);
    io_tensor_set(&t, "train/label", IO_I32, 1, (int64_t[]){2}, label);
    check(io_dataset_add(w, &t, &e), &e);
    const char *classes[2] = {"cat", "dog"};
    check(io_dataset_add_strings(w, "classes", classes, 2, &e), &e);
    check(io_dataset_set_meta(w, "name", "tiny", &e), &e);
    check(io_dataset_finish(w, &e), &e);
    check(io_dataset_writer_open(out("dataset", "empty.xds"), 1, &w, &e), &e);
    check(io_dataset_finish(w, &e), &e);
}

/* ---- text formats */

static void text_seeds(void)
{
    TEXT("yaml", "mapping.yaml", "a: 1\nb: [x, 'y', \"z\"]\nc:\n  d: ~\n  e: -2.5e3\n  f: true\n");
    TEXT("yaml", "nested.yaml", "# comment\nlist:\n  - {k: v, n: 0x1F}\n  - - deep\n    - |\n"
                                "      block\n      text\n  - >-\n    folded\nempty:\n");
    TEXT("yaml", "bad.yaml", "a: &x 1\nb: *x\n---\nc: !!str d\n");

    TEXT("model", "cnn.model", "input h=28 w=28 c=1; conv2d name=conv1 out=4 k=3 pad=1; relu; "
                               "maxpool k=2;\nflatten; linear out=8; relu name=feat; linear out=3 "
                               "name=logits head\n");
    TEXT("model", "text.model", "input tokens=8\nembbag vocab=64 out=4 mode=sum # bag\nlayernorm "
                                "eps=1e-5; dropout p=0.1; linear out=2 head");
    TEXT("model", "branches.model", "input h=4 w=4 c=2; conv2d out=2 k=1 bias=0 name=a; batchnorm "
                                    "momentum=0.2; add with=input; upsample factor=2; avgpool k=2 "
                                    "stride=1; gap; fakequant bits=4; tanh; linear out=2 name=x "
                                    "head; sigmoid from=x; softmax; logsoftmax; gelu head");

    TEXT("manifest_tsv", "names.tsv", "image_path\ttext\tlabel\na.png\ta cat\tcat\n"
                                      "img/c.png\tein Hund\tdog\n\nb.jpg\t\xea\xb0\x9c\tdog\n");
    TEXT("manifest_tsv", "ids-bom-crlf.tsv", "\xef\xbb\xbfid\tlabel\timage_path\ttext\r\n"
                                             "1\t0\ta.png\tx\r\n2\t3\tb.jpg\ty\r\n");
    TEXT("manifest_jsonl", "names.jsonl", "{\"image\": \"a.png\", \"text\": \"a cat\", \"label\": "
                                          "\"cat\"}\n{\"image\": \"img/c.png\", \"text\": \"\", "
                                          "\"label\": \"dog\", \"extra\": [1]}\n");
    TEXT("manifest_jsonl", "ids.jsonl", "{\"image\":\"b.jpg\",\"text\":\"\\u00e9t\\u00e9\","
                                        "\"label\":2}\r\n\n{\"image\":\"a.png\",\"text\":\"y\","
                                        "\"label\":0}");
    TEXT("rationales", "records.jsonl", "{\"input\": \"a grey cat\", \"label\": \"cat\", "
                                        "\"rationale\": \"whiskers; purrs\"}\n\n{\"input\": "
                                        "\"\xea\xb0\x9c\", \"label\": \"dog\", \"rationale\": "
                                        "\"\xe7\x8a\xac barks\"}\n{\"input\": \"x\"}\n");

    TEXT("vocab", "words.vocab", "# xdistill text vocabulary v1\nthe\t12\n\xed\x95\x9c\t3\n"
                                 "caf\xc3\xa9\t1\n");
    TEXT("vocab", "crlf.vocab", "# xdistill text vocabulary v1\r\n<a>\t18446744073709551615\r\n");

    /* first byte: option bits (compat, casefold, strip_accents, collapse_space, replace_invalid,
     * bigrams, keep_punct), then the text */
    TEXT("text", "mixed.txt", "\x6b" "Stra\xc3\x9f" "e  Caf\xc3\xa9\t\xef\xbc\xa1\xef\xbc\xa2 "
                              "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 don't!");
    TEXT("text", "unspaced.txt", "\x2b" "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\x8c "
                                 "\xe0\xb8\xa0\xe0\xb8\xb2\xe0\xb8\xa9\xe0\xb8\xb2 "
                                 "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb\xf0\x9f\x87\xb0"
                                 "\xf0\x9f\x87\xb7");
    TEXT("text", "invalid.txt", "\x1f" "ok \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 end"
                                "\xc2\xad\xe2\x80\x8b\x0b\x01");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz-seeds FOLDER\n");
        return 2;
    }
    root = argv[1];
    png_seeds();
    jpeg_seeds();
    idx_seeds();
    npy_seeds();
    safetensors_seeds();
    dataset_seeds();
    text_seeds();
    return 0;
}
