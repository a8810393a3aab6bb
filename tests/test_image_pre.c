/* modalities/image: resize (against hand-computed values and the plain reference), windows, flips,
 * conversions, normalisation, options parsing, augmentation draws and batch assembly. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include "core/runtime.h"
#endif

#include "core/rng.h"
#include "modalities/image/augment.h"
#include "modalities/image/ops.h"
#include "modalities/image/resize.h"

static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    xd_rng r = xd_rng_make(seed, 0, XD_RNG_USER);
    for (size_t i = 0; i < n; i++) x[i] = xd_rng_uniform(&r);
}

static void fill_bytes(uint8_t *x, size_t n, uint64_t seed)
{
    xd_rng r = xd_rng_make(seed, 0, XD_RNG_USER + 1);
    for (size_t i = 0; i < n; i++) x[i] = (uint8_t)xd_rng_below(&r, 256);
}

/* ---------------------------------------------------------------------------------------------
 * resize */

static void test_resize_constant_stays_constant(void **state)
{
    (void)state;
    /* shrink, grow, mixed, identity, to and from one pixel */
    const int sizes[][4] = {{37, 23, 16, 50}, {8, 8, 3, 3}, {5, 7, 11, 2},
                            {9, 9, 9, 9},     {1, 1, 4, 3}, {6, 4, 1, 1}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int sh = sizes[t][0], sw = sizes[t][1], dh = sizes[t][2], dw = sizes[t][3], c = 3;
        size_t ns = (size_t)sh * sw * c, nd = (size_t)dh * dw * c;
        uint8_t *su = malloc(ns), *du = malloc(nd);
        float *sf = malloc(ns * sizeof *sf), *df = malloc(nd * sizeof *df);
        for (size_t i = 0; i < ns; i++) {
            su[i] = (uint8_t)(200 + i % 3); /* a constant per channel */
            sf[i] = 0.7f + 0.1f * (float)(i % 3);
        }
        TU_OK(img_resize_u8(su, sh, sw, c, du, dh, dw, NULL));
        TU_OK(img_resize_f32(sf, sh, sw, c, df, dh, dw, NULL));
        for (size_t i = 0; i < nd; i++) {
            assert_int_equal(du[i], 200 + i % 3);
            assert_true(fabsf(df[i] - (0.7f + 0.1f * (float)(i % 3))) <= 1e-6f);
        }
        free(su), free(du), free(sf), free(df);
    }
}

static void test_resize_area_by_hand(void **state)
{
    (void)state;
    /* 4x4 -> 2x2: means of the 2x2 blocks */
    float src[16], dst[4];
    for (int i = 0; i < 16; i++) src[i] = (float)i;
    TU_OK(img_resize_f32(src, 4, 4, 1, dst, 2, 2, NULL));
    const float want[4] = {(0 + 1 + 4 + 5) / 4.0f, (2 + 3 + 6 + 7) / 4.0f, (8 + 9 + 12 + 13) / 4.0f,
                           (10 + 11 + 14 + 15) / 4.0f};
    tu_assert_close(dst, want, 4, 0, 1e-6, "4x4->2x2");

    /* the same on 8-bit RGB, with block sums that divide by 4 */
    uint8_t su[4 * 4 * 3], du[2 * 2 * 3];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int ch = 0; ch < 3; ch++)
                su[(y * 4 + x) * 3 + ch] = (uint8_t)(40 * y + 8 * x + ch);
    TU_OK(img_resize_u8(su, 4, 4, 3, du, 2, 2, NULL));
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++)
            for (int ch = 0; ch < 3; ch++) /* mean of rows 2y,2y+1 and columns 2x,2x+1 */
                assert_int_equal(du[(y * 2 + x) * 3 + ch],
                                 40 * (2 * y) + 20 + 8 * (2 * x) + 4 + ch);

    /* 3 -> 2 along x: boxes of 1.5 pixels, (3 + 0.5*6) / 1.5 = 4 and (0.5*6 + 9) / 1.5 = 8 */
    const float row[3] = {3, 6, 9};
    float out[2];
    TU_OK(img_resize_f32(row, 1, 3, 1, out, 1, 2, NULL));
    const float want_row[2] = {4, 8};
    tu_assert_close(out, want_row, 2, 0, 1e-6, "3->2");
}

static void test_resize_bilinear_by_hand(void **state)
{
    (void)state;
    /* 2x2 -> 4x4: sample positions p(d) = (d + 0.5)/2 - 0.5 clamped = {0, 0.25, 0.75, 1}; the
     * image is f(y, x) = 20 y + 10 x, which bilinear interpolation reproduces exactly. */
    const float src[4] = {0, 10, 20, 30};
    float dst[16];
    TU_OK(img_resize_f32(src, 2, 2, 1, dst, 4, 4, NULL));
    const float want[16] = {0,  2.5f,  7.5f,  10, 5,  7.5f,  12.5f, 15,
                            15, 17.5f, 22.5f, 25, 20, 22.5f, 27.5f, 30};
    tu_assert_close(dst, want, 16, 0, 1e-6, "2x2->4x4");

    /* 3 -> 5 on a non-linear row g = {0, 10, 40}: p = (d + 0.5)*0.6 - 0.5 = {-0.2->0, 0.4, 1.0,
     * 1.6, 2.2->2}, so {0, 0.6*0 + 0.4*10, 10, 0.4*10 + 0.6*40, 40} */
    const float g[3] = {0, 10, 40};
    float out[5];
    TU_OK(img_resize_f32(g, 1, 3, 1, out, 1, 5, NULL));
    const float want_row[5] = {0, 4, 10, 28, 40};
    tu_assert_close(out, want_row, 5, 0, 1e-5, "3->5");
    /* and the same as a column */
    TU_OK(img_resize_f32(g, 3, 1, 1, out, 5, 1, NULL));
    tu_assert_close(out, want_row, 5, 0, 1e-5, "3->5 column");
}

static void test_resize_area_keeps_mean(void **state)
{
    (void)state;
    enum { S = 64, C = 3 };
    float *src = malloc(S * S * C * sizeof *src), dst28[28 * 28 * C], dst32[32 * 32 * C];
    fill_uniform(src, S * S * C, 11);
    TU_OK(img_resize_f32(src, S, S, C, dst28, 28, 28, NULL));
    for (int ch = 0; ch < C; ch++) {
        double ms = 0, md = 0;
        for (int i = 0; i < S * S; i++) ms += src[i * C + ch];
        for (int i = 0; i < 28 * 28; i++) md += dst28[i * C + ch];
        ms /= S * S, md /= 28 * 28;
        if (fabs(ms - md) > 1e-5) fail_msg("channel %d: mean %.9f -> %.9f", ch, ms, md);
    }
    /* 64 -> 32 is an exact 2x2 block average */
    TU_OK(img_resize_f32(src, S, S, C, dst32, 32, 32, NULL));
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int ch = 0; ch < C; ch++) {
                double m = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++)
                        m += src[((2 * y + dy) * S + 2 * x + dx) * C + ch];
                assert_true(fabs(dst32[(y * 32 + x) * C + ch] - m / 4) <= 1e-6);
            }
    free(src);
}

static void test_resize_matches_reference(void **state)
{
    (void)state;
    const int sizes[][5] = {
        {64, 64, 28, 28, 3}, {64, 64, 32, 32, 1}, {7, 5, 3, 2, 4}, {3, 4, 8, 9, 3},
        {10, 3, 4, 7, 2},    {5, 9, 13, 4, 1},    {1, 6, 3, 1, 3}, {6, 6, 6, 6, 3},
        {17, 13, 5, 11, 3},  {2, 2, 1, 1, 1},     {1, 1, 5, 7, 2}, {28, 28, 64, 64, 1},
    };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int sh = sizes[t][0], sw = sizes[t][1], dh = sizes[t][2], dw = sizes[t][3], c = sizes[t][4];
        size_t ns = (size_t)sh * sw * c, nd = (size_t)dh * dw * c;
        float *src = malloc(ns * sizeof *src), *fast = malloc(nd * sizeof *fast);
        float *ref = malloc(nd * sizeof *ref), *fast8 = malloc(nd * sizeof *fast8);
        uint8_t *src8 = malloc(ns);
        fill_uniform(src, ns, 100 + t);
        TU_OK(img_resize_f32(src, sh, sw, c, fast, dh, dw, NULL));
        TU_OK(img_resize_ref_f32(src, sh, sw, c, ref, dh, dw, NULL));
        char what[64];
        snprintf(what, sizeof what, "%dx%dx%d->%dx%d", sh, sw, c, dh, dw);
        tu_assert_close(fast, ref, nd, 0, 2e-6, what);

        /* the 8-bit planned path against the reference on the same values */
        fill_bytes(src8, ns, 200 + t);
        for (size_t i = 0; i < ns; i++) src[i] = src8[i];
        img_resize_plan p;
        TU_OK(img_resize_plan_make(&p, sh, sw, dh, dw, NULL));
        float *scratch = malloc(img_resize_scratch_floats(&p, c) * sizeof *scratch);
        img_resize_run_u8(&p, src8, c, fast8, scratch);
        TU_OK(img_resize_ref_f32(src, sh, sw, c, ref, dh, dw, NULL));
        tu_assert_close(fast8, ref, nd, 0, 5e-4, what);
        img_resize_plan_free(&p);
        free(scratch), free(src), free(fast), free(ref), free(fast8), free(src8);
    }
}

/* ---------------------------------------------------------------------------------------------
 * windows, flips */

/* pixel (y, x) channel ch of an 5x4x2 image holds a unique value */
static uint8_t px(int y, int x, int ch) { return (uint8_t)(10 * y + 2 * x + ch + 1) * 2; }

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void test_window_crop_pad_flip(void **state)
{
    (void)state;
    enum { H = 5, W = 4, C = 2 };
    uint8_t img[H * W * C];
    float imgf[H * W * C];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int ch = 0; ch < C; ch++) {
                img[(y * W + x) * C + ch] = px(y, x, ch);
                imgf[(y * W + x) * C + ch] = (float)px(y, x, ch) + 0.5f;
            }

    /* 4x6 windows at (-1, 1) and (3, -2): zero rows/columns outside, edge copies for the edge
     * mode, on every side */
    const int offs[2][2] = {{-1, 1}, {3, -2}};
    uint8_t out[4 * 6 * C];
    float outf[4 * 6 * C];
    for (int t = 0; t < 4; t++) {
        int mode = t % 2, y0 = offs[t / 2][0], x0 = offs[t / 2][1];
        TU_OK(img_window_u8(img, H, W, C, y0, x0, 4, 6, (img_pad_mode)mode, out, NULL));
        TU_OK(img_window_f32(imgf, H, W, C, y0, x0, 4, 6, (img_pad_mode)mode, outf, NULL));
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 6; x++)
                for (int ch = 0; ch < C; ch++) {
                    int sy = y + y0, sx = x + x0, inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
                    int cy = clampi(sy, 0, H - 1), cx = clampi(sx, 0, W - 1);
                    int want = inside ? px(sy, sx, ch) : mode == IMG_PAD_EDGE ? px(cy, cx, ch) : 0;
                    assert_int_equal(out[(y * 6 + x) * C + ch], want);
                    float wantf = inside || mode == IMG_PAD_EDGE ? (float)want + 0.5f : 0.0f;
                    assert_true(outf[(y * 6 + x) * C + ch] == wantf);
                }
    }
    /* entirely outside: all padding */
    TU_OK(img_window_u8(img, H, W, C, 0, 9, 2, 2, IMG_PAD_ZERO, out, NULL));
    for (int i = 0; i < 2 * 2 * C; i++) assert_int_equal(out[i], 0);
    TU_OK(img_window_u8(img, H, W, C, 0, 9, 2, 2, IMG_PAD_EDGE, out, NULL));
    assert_int_equal(out[0], px(0, W - 1, 0));
    assert_int_equal(out[(1 * 2 + 1) * C + 1], px(1, W - 1, 1));

    /* centre crop 3x2 of 5x4: top-left at (1, 1) */
    uint8_t crop[3 * 2 * C];
    TU_OK(img_crop_centre_u8(img, H, W, C, 3, 2, crop, NULL));
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 2; x++)
            for (int ch = 0; ch < C; ch++)
                assert_int_equal(crop[(y * 2 + x) * C + ch], px(y + 1, x + 1, ch));
    /* 4x4 of 5x4: (5-4)/2 = 0 rows dropped at the top */
    uint8_t crop2[4 * 4 * C];
    TU_OK(img_crop_centre_u8(img, H, W, C, 4, 4, crop2, NULL));
    assert_memory_equal(crop2, img, sizeof crop2);

    /* pad 1 top, 0 bottom, 2 left, 1 right with zeros: 6x7 */
    uint8_t pad[6 * 7 * C];
    TU_OK(img_pad_u8(img, H, W, C, 1, 0, 2, 1, IMG_PAD_ZERO, pad, NULL));
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 7; x++) {
            int sy = y - 1, sx = x - 2, inside = sy >= 0 && sx >= 0 && sx < W;
            assert_int_equal(pad[(y * 7 + x) * C + 1], inside ? px(sy, sx, 1) : 0);
        }

    /* flip: (y, x) <-> (y, W-1-x); twice is the identity */
    uint8_t fl[H * W * C];
    float flf[H * W * C];
    memcpy(fl, img, sizeof fl);
    memcpy(flf, imgf, sizeof flf);
    TU_OK(img_flip_h_u8(fl, H, W, C, NULL));
    TU_OK(img_flip_h_f32(flf, H, W, C, NULL));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int ch = 0; ch < C; ch++) {
                assert_int_equal(fl[(y * W + x) * C + ch], px(y, W - 1 - x, ch));
                assert_true(flf[(y * W + x) * C + ch] == (float)px(y, W - 1 - x, ch) + 0.5f);
            }
    TU_OK(img_flip_h_u8(fl, H, W, C, NULL));
    assert_memory_equal(fl, img, sizeof fl);
    /* odd width: the middle column stays */
    uint8_t odd[3] = {1, 2, 3};
    TU_OK(img_flip_h_u8(odd, 1, 3, 1, NULL));
    assert_int_equal(odd[0], 3), assert_int_equal(odd[1], 2), assert_int_equal(odd[2], 1);
}

/* ---------------------------------------------------------------------------------------------
 * conversions, normalisation */

static void test_convert(void **state)
{
    (void)state;
    /* grey -> RGB repeats */
    const uint8_t grey[2] = {0, 77};
    uint8_t rgb[6];
    TU_OK(img_convert_u8(grey, 2, 1, rgb, 3, NULL, NULL));
    const uint8_t want_rgb[6] = {0, 0, 0, 77, 77, 77};
    assert_memory_equal(rgb, want_rgb, 6);

    /* RGB -> grey: 0.299*255 = 76.2, 0.587*255 = 149.7, 0.114*255 = 29.1, white stays white,
     * (10, 20, 30): 2.99 + 11.74 + 3.42 = 18.15 */
    const uint8_t colours[15] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 10, 20, 30};
    uint8_t g[5];
    TU_OK(img_convert_u8(colours, 5, 3, g, 1, NULL, NULL));
    const uint8_t want_g[5] = {76, 150, 29, 255, 18};
    assert_memory_equal(g, want_g, 5);

    /* RGBA over a background: a = 255 keeps the colour, a = 0 gives the background,
     * a = 128: (128*200 + 127*250) / 255 = 224.9 -> 225, (128*100 + 127*10) / 255 = 55.2 -> 55,
     * (128*0 + 127*90) / 255 = 44.8 -> 45 */
    const uint8_t rgba[12] = {200, 100, 0, 255, 200, 100, 0, 0, 200, 100, 0, 128};
    const uint8_t bg[3] = {250, 10, 90};
    uint8_t out[9];
    TU_OK(img_convert_u8(rgba, 3, 4, out, 3, bg, NULL));
    const uint8_t want_out[9] = {200, 100, 0, 250, 10, 90, 225, 55, 45};
    assert_memory_equal(out, want_out, 9);
    /* RGBA -> grey: composite, then luma; opaque red -> 76 */
    TU_OK(img_convert_u8(rgba, 1, 4, g, 1, bg, NULL));
    assert_int_equal(g[0], (299 * 200 + 587 * 100 + 500) / 1000);
    /* grey + alpha over white (luma 255): (128*0 + 127*255) / 255 = 127 */
    const uint8_t ga[4] = {0, 128, 90, 255};
    const uint8_t white[3] = {255, 255, 255};
    TU_OK(img_convert_u8(ga, 2, 2, g, 1, white, NULL));
    assert_int_equal(g[0], 127), assert_int_equal(g[1], 90);
    TU_OK(img_convert_u8(ga, 2, 2, rgb, 3, white, NULL));
    assert_int_equal(rgb[0], 127), assert_int_equal(rgb[2], 127), assert_int_equal(rgb[5], 90);

    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(img_convert_u8(colours, 5, 3, out, 2, NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "cannot make 2 channels from 3");
    assert_int_equal(img_convert_u8(colours, 5, 5, out, 3, NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "input channel count 5");
}

static void test_normalise(void **state)
{
    (void)state;
    const uint8_t src[6] = {0, 128, 255, 255, 51, 0};
    const float mean[2] = {0.5f, 0.2860f}, std[2] = {0.25f, 0.3530f};
    float out[6], outf[6];
    TU_OK(img_normalise_u8(src, 3, 2, mean, std, out, NULL));
    for (int i = 0; i < 6; i++) outf[i] = src[i];
    TU_OK(img_normalise_f32(outf, 3, 2, mean, std, NULL));
    float want[6];
    for (int i = 0; i < 6; i++) want[i] = (float)((src[i] / 255.0 - mean[i % 2]) / std[i % 2]);
    tu_assert_close(out, want, 6, 0, 1e-6, "normalise u8");
    tu_assert_close(outf, want, 6, 0, 1e-6, "normalise f32");
    /* spot values, channel 0: 0 -> (0 - 0.5)/0.25 = -2, 255 -> (1 - 0.5)/0.25 = 2, 51 ->
     * (0.2 - 0.5)/0.25 = -1.2; channel 1: 128 -> (0.501961 - 0.286)/0.353 = 0.611787,
     * 255 -> (1 - 0.286)/0.353 = 2.022663, 0 -> -0.286/0.353 = -0.810198 */
    const float spot[6] = {-2.0f, 0.611787f, 2.0f, 2.022663f, -1.2f, -0.810198f};
    tu_assert_close(out, spot, 6, 0, 2e-6, "normalise spot values");

    xd_err e;
    xd_err_clear(&e);
    const float bad_std[2] = {1.0f, 0.0f}, nan_mean[2] = {NAN, 0.0f};
    assert_int_equal(img_normalise_u8(src, 3, 2, mean, bad_std, out, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "std[1]");
    assert_int_equal(img_normalise_f32(outf, 3, 2, nan_mean, std, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "mean[0]");
    assert_int_equal(img_normalise_u8(src, 0, 2, mean, std, out, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no pixels");
}

/* ---------------------------------------------------------------------------------------------
 * options */

static void test_opts_parse(void **state)
{
    (void)state;
    img_opts o;
    img_opts_default(&o);
    assert_int_equal(o.pad, 4);
    assert_true(o.flip == 0.5f && o.pad_mode == IMG_PAD_ZERO && o.size_h == 0 && o.channels == 0);
    TU_OK(img_opts_check(&o, NULL));

    TU_OK(img_opts_parse(&o,
                         " size=32;crop=28x30  pad=2 pad_mode=edge flip=0.25 channels=3 "
                         "mean=0.5,0.4,0.3 std=0.2 background=0,10,255\n",
                         NULL));
    assert_int_equal(o.size_h, 32), assert_int_equal(o.size_w, 32);
    assert_int_equal(o.crop_h, 28), assert_int_equal(o.crop_w, 30);
    assert_int_equal(o.pad, 2), assert_int_equal(o.pad_mode, IMG_PAD_EDGE);
    assert_true(o.flip == 0.25f);
    assert_int_equal(o.channels, 3);
    assert_int_equal(o.n_mean, 3), assert_int_equal(o.n_std, 1);
    assert_true(o.mean[0] == 0.5f && o.mean[1] == 0.4f && o.mean[2] == 0.3f);
    assert_true(o.std[0] == 0.2f && o.std[2] == 0.2f);
    assert_int_equal(o.background[0], 0), assert_int_equal(o.background[1], 10);
    assert_int_equal(o.background[2], 255);
    assert_string_equal(img_opts_key(0), "size");
    assert_null(img_opts_key(99));

    /* each bad word is refused with the key in the message and leaves the options unchanged */
    /* clang-format off */
    const char *bad[][2] = {
        {"flp=0.5", "unknown image option 'flp' (known: size, crop, channels"},
        {"flip=1.5", "flip"},       {"flip=nan", "flip"},       {"pad=-1", "pad"},
        {"pad=4.5", "pad"},         {"size=32y", "size"},       {"size=0x5", "size"},
        {"crop=", "crop"},          {"mean=1,2,3,4", "mean"},   {"mean=1,,2", "mean"},
        {"std=0", "std"},           {"std=1,-1,1", "std"},      {"channels=2", "channels"},
        {"channels=4", "channels"}, {"pad_mode=mirror", "pad_mode"},
        {"background=1,2", "background"}, {"background=1,2,256", "background"},
        {"pad", "not key=value"},   {"=3", "not key=value"},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        img_opts before = o;
        xd_err e;
        xd_err_clear(&e);
        if (img_opts_parse(&o, bad[i][0], &e) != XD_EARG) fail_msg("'%s' was accepted", bad[i][0]);
        tu_assert_err(&e, XD_EARG, bad[i][1]);
        assert_memory_equal(&o, &before, sizeof o);
    }
}

/* ---------------------------------------------------------------------------------------------
 * augmentation draws */

static void test_aug_determinism_and_coverage(void **state)
{
    (void)state;
    img_opts o;
    img_opts_default(&o); /* pad 4, flip 0.5 */
    enum { N = 9000 };
    int cy[9] = {0}, cx[9] = {0}, flips = 0, same_next_epoch = 0;
    for (int i = 0; i < N; i++) {
        img_aug a = img_aug_sample(&o, 28, 28, 28, 28, 42, (uint64_t)i, 3);
        img_aug b = img_aug_sample(&o, 28, 28, 28, 28, 42, (uint64_t)i, 3);
        assert_true(a.y0 == b.y0 && a.x0 == b.x0 && a.flip == b.flip);
        assert_true(a.y0 >= -4 && a.y0 <= 4 && a.x0 >= -4 && a.x0 <= 4);
        cy[a.y0 + 4]++, cx[a.x0 + 4]++, flips += a.flip;
        img_aug c = img_aug_sample(&o, 28, 28, 28, 28, 42, (uint64_t)i, 4);
        same_next_epoch += a.y0 == c.y0 && a.x0 == c.x0 && a.flip == c.flip;
    }
    /* every offset reached, about N/9 = 1000 times each */
    for (int k = 0; k < 9; k++) {
        if (cy[k] < 850 || cy[k] > 1150 || cx[k] < 850 || cx[k] > 1150)
            fail_msg("offset %d: %d rows, %d columns of %d", k - 4, cy[k], cx[k], N);
    }
    assert_true(flips > N / 2 - 300 && flips < N / 2 + 300);
    /* another epoch is a fresh draw: a repeat has chance 1/162 */
    assert_true(same_next_epoch < N / 162 * 2 + 20);

    /* a smaller crop of a larger image without padding stays inside */
    o.pad = 0;
    o.flip = 0.0f;
    int seen[5] = {0};
    for (int i = 0; i < 500; i++) {
        img_aug a = img_aug_sample(&o, 36, 30, 32, 30, 1, (uint64_t)i, 0);
        assert_true(a.y0 >= 0 && a.y0 <= 4 && a.x0 == 0 && a.flip == 0);
        seen[a.y0]++;
    }
    for (int k = 0; k < 5; k++) assert_true(seen[k] > 0);
    o.flip = 1.0f;
    assert_int_equal(img_aug_sample(&o, 8, 8, 8, 8, 1, 0, 0).flip, 1);

    img_aug c = img_aug_centre(36, 30, 32, 27);
    assert_int_equal(c.y0, 2), assert_int_equal(c.x0, 1), assert_int_equal(c.flip, 0);
    c = img_aug_centre(28, 28, 31, 30); /* larger than the image: the padding splits evenly */
    assert_int_equal(c.y0, -2), assert_int_equal(c.x0, -1);
}

/* ---------------------------------------------------------------------------------------------
 * batch assembly */

/* One example by hand from the public pieces; the batcher must match it bit for bit. */
static void expect_example(const uint8_t *src, int h, int w, int c, const img_opts *o, int oc,
                           int rh, int rw, int ch, int cw, img_aug a, float *want)
{
    uint8_t *conv = malloc((size_t)h * w * oc);
    TU_OK(img_convert_u8(src, (size_t)h * w, c, conv, oc, o->background, NULL));
    float *resized = malloc((size_t)rh * rw * oc * sizeof *resized);
    img_resize_plan p;
    TU_OK(img_resize_plan_make(&p, h, w, rh, rw, NULL));
    float *scratch = malloc(img_resize_scratch_floats(&p, oc) * sizeof *scratch);
    img_resize_run_u8(&p, conv, oc, resized, scratch);
    TU_OK(img_window_f32(resized, rh, rw, oc, a.y0, a.x0, ch, cw, o->pad_mode, want, NULL));
    if (a.flip) TU_OK(img_flip_h_f32(want, ch, cw, oc, NULL));
    TU_OK(img_normalise_f32(want, (size_t)ch * cw, oc, o->mean, o->std, NULL));
    img_resize_plan_free(&p);
    free(conv), free(resized), free(scratch);
}

static void test_batch_matches_pipeline(void **state)
{
    (void)state;
    enum { N = 5, H = 12, W = 10, C = 4 };
    uint8_t *images = malloc(N * H * W * C);
    fill_bytes(images, N * H * W * C, 9);
    img_opts o;
    img_opts_default(&o);
    TU_OK(img_opts_parse(&o,
                         "channels=3 size=8x6 crop=6x5 pad=2 pad_mode=edge flip=0.5 "
                         "mean=0.5,0.4,0.3 std=0.2,0.25,0.3 background=20,200,90",
                         NULL));
    img_batcher *b;
    TU_OK(img_batcher_make(&b, H, W, C, &o, NULL));
    int oh, ow, oc;
    img_batcher_shape(b, &oh, &ow, &oc);
    assert_int_equal(oh, 6), assert_int_equal(ow, 5), assert_int_equal(oc, 3);
    const uint32_t idx[7] = {4, 0, 2, 2, 1, 3, 4};
    const size_t per = 6 * 5 * 3;
    float out[7 * 6 * 5 * 3], want[6 * 5 * 3];
    for (int augment = 0; augment <= 1; augment++) {
        TU_OK(img_batcher_fill(b, images, N, idx, 7, augment, 77, 5, out, NULL));
        for (int i = 0; i < 7; i++) {
            img_aug a = augment ? img_aug_sample(&o, 8, 6, 6, 5, 77, idx[i], 5)
                                : img_aug_centre(8, 6, 6, 5);
            expect_example(images + (size_t)idx[i] * H * W * C, H, W, C, &o, 3, 8, 6, 6, 5, a,
                           want);
            if (memcmp(out + i * per, want, sizeof want))
                fail_msg("augment %d entry %d differs from the hand-made pipeline", augment, i);
        }
    }
    img_batcher_free(b);

    /* grey source, no resize, no augmentation: exactly x/255 centre-cropped */
    img_opts_default(&o);
    TU_OK(img_opts_parse(&o, "crop=8 pad=0", NULL));
    TU_OK(img_batcher_make(&b, H, W, 1, &o, NULL));
    float g[2 * 8 * 8];
    const uint32_t gi[2] = {3, 0};
    TU_OK(img_batcher_fill(b, images, N * C, gi, 2, 0, 1, 0, g, NULL));
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            assert_true(g[y * 8 + x] == images[3 * H * W + (y + 2) * W + x + 1] * (1.0f / 255.0f));
    img_batcher_free(b);

    /* the image as it is (no resize, crop or flip, as at inference), normalised in one pass from
     * the 8-bit pixels: the bits of the hand-made pipeline, grey and converted to three channels */
    for (int oc3 = 0; oc3 <= 1; oc3++) {
        const int sc = oc3 ? C : 1, n = oc3 ? N : N * C, occ = oc3 ? 3 : 1;
        img_opts_default(&o);
        TU_OK(img_opts_parse(&o, oc3 ? "channels=3 mean=0.5,0.4,0.3 std=0.2,0.25,0.3"
                                     : "mean=0.286 std=0.353", NULL));
        TU_OK(img_batcher_make(&b, H, W, sc, &o, NULL));
        float as_is[2 * H * W * 3], want_as_is[H * W * 3];
        TU_OK(img_batcher_fill(b, images, (size_t)n, gi, 2, 0, 1, 0, as_is, NULL));
        for (int i = 0; i < 2; i++) {
            expect_example(images + (size_t)gi[i] * H * W * sc, H, W, sc, &o, occ, H, W, H, W,
                           img_aug_centre(H, W, H, W), want_as_is);
            if (memcmp(as_is + (size_t)i * H * W * occ, want_as_is, sizeof(float) * H * W * occ))
                fail_msg("%d channels as they are: entry %d differs from the hand-made pipeline",
                         occ, i);
        }
        img_batcher_free(b);
    }
    free(images);
}

static void test_batch_threads_seed_epoch(void **state)
{
    (void)state;
    enum { N = 64, H = 28, W = 28, B = 48 };
    uint8_t *images = malloc(N * H * W);
    fill_bytes(images, N * H * W, 3);
    img_opts o;
    img_opts_default(&o);
    TU_OK(img_opts_parse(&o, "mean=0.286 std=0.353 size=32", NULL));
    img_batcher *b;
    TU_OK(img_batcher_make(&b, H, W, 1, &o, NULL));
    uint32_t idx[B];
    for (int i = 0; i < B; i++) idx[i] = (uint32_t)((i * 37) % N);
    const size_t n = (size_t)B * 32 * 32;
    float *a1 = malloc(n * sizeof *a1), *a2 = malloc(n * sizeof *a2), *a3 = malloc(n * sizeof *a3);
#ifdef _OPENMP
    int threads = xd_threads_get();
    xd_threads_set(1);
#endif
    TU_OK(img_batcher_fill(b, images, N, idx, B, 1, 123, 7, a1, NULL));
#ifdef _OPENMP
    xd_threads_set(2);
#endif
    TU_OK(img_batcher_fill(b, images, N, idx, B, 1, 123, 7, a2, NULL));
    assert_memory_equal(a1, a2, n * sizeof *a1);
    TU_OK(img_batcher_fill(b, images, N, idx, B, 1, 123, 7, a3, NULL));
    assert_memory_equal(a1, a3, n * sizeof *a1);

    /* another epoch or seed changes most examples */
    int changed_epoch = 0, changed_seed = 0;
    TU_OK(img_batcher_fill(b, images, N, idx, B, 1, 123, 8, a2, NULL));
    TU_OK(img_batcher_fill(b, images, N, idx, B, 1, 124, 7, a3, NULL));
    for (int i = 0; i < B; i++) {
        changed_epoch += memcmp(a1 + i * 1024, a2 + i * 1024, 1024 * sizeof *a1) != 0;
        changed_seed += memcmp(a1 + i * 1024, a3 + i * 1024, 1024 * sizeof *a1) != 0;
    }
    assert_true(changed_epoch > B * 3 / 4);
    assert_true(changed_seed > B * 3 / 4);
    /* the evaluation view ignores seed and epoch */
    TU_OK(img_batcher_fill(b, images, N, idx, B, 0, 1, 1, a2, NULL));
    TU_OK(img_batcher_fill(b, images, N, idx, B, 0, 2, 9, a3, NULL));
    assert_memory_equal(a2, a3, n * sizeof *a2);
#ifdef _OPENMP
    xd_threads_set(threads);
#endif
    img_batcher_free(b);
    free(images), free(a1), free(a2), free(a3);
}

/* ---------------------------------------------------------------------------------------------
 * bad arguments */

#define EXPECT_EARG(call, substr)                                                                  \
    do {                                                                                           \
        xd_err e_;                                                                                 \
        xd_err_clear(&e_);                                                                         \
        xd_err *e = &e_;                                                                           \
        if ((call) != XD_EARG) fail_msg("%s did not fail with XD_EARG", #call);                    \
        tu_assert_err(e, XD_EARG, substr);                                                         \
    } while (0)

static void test_bad_arguments(void **state)
{
    (void)state;
    uint8_t u[64] = {0};
    float f[64] = {0};
    EXPECT_EARG(img_resize_u8(u, 4, 4, 1, u, 0, 2, e), "output height 0");
    EXPECT_EARG(img_resize_f32(f, 4, 0, 1, f, 2, 2, e), "source width 0");
    EXPECT_EARG(img_resize_f32(NULL, 4, 4, 1, f, 2, 2, e), "NULL input");
    EXPECT_EARG(img_resize_f32(f, 4, 4, 1, NULL, 2, 2, e), "NULL output");
    EXPECT_EARG(img_resize_f32(f, 4, 4, 0, f, 2, 2, e), "channel count 0");
    EXPECT_EARG(img_resize_ref_f32(f, 4, 4, 1, f, -1, 2, e), "output height -1");
    img_resize_plan p;
    EXPECT_EARG(img_resize_plan_make(&p, IMG_MAX_SIDE + 1, 4, 2, 2, e), "source height");

    EXPECT_EARG(img_crop_centre_u8(u, 4, 4, 1, 5, 4, u + 32, e), "crop 5x4 larger than image 4x4");
    EXPECT_EARG(img_crop_centre_f32(f, 4, 4, 1, 2, 5, f + 32, e), "larger than image");
    EXPECT_EARG(img_window_u8(u, 4, 4, 1, 0, 0, 0, 2, IMG_PAD_ZERO, u + 32, e), "output size 0x2");
    EXPECT_EARG(img_window_u8(u, 4, 4, 1, 0, 0, 2, 2, IMG_PAD_COUNT, u + 32, e), "pad mode");
    EXPECT_EARG(img_window_f32(f, 4, 4, 1, 0, 0, 2, 2, IMG_PAD_ZERO, NULL, e), "NULL output");
    EXPECT_EARG(img_window_f32(f, 4, 4, 1, -IMG_MAX_SIDE - 1, 0, 2, 2, IMG_PAD_ZERO, f + 32, e),
                "offset");
    EXPECT_EARG(img_pad_u8(u, 2, 2, 1, -1, 0, 0, 0, IMG_PAD_ZERO, u + 32, e), "top -1");
    EXPECT_EARG(img_flip_h_u8(u, 4, 0, 1, e), "image size 4x0");
    EXPECT_EARG(img_flip_h_f32(NULL, 4, 4, 1, e), "NULL image");
    EXPECT_EARG(img_convert_u8(NULL, 4, 3, u, 1, NULL, e), "NULL input");
    EXPECT_EARG(img_normalise_f32(f, 4, 1, NULL, f, e), "NULL mean");

    img_opts o;
    img_opts_default(&o);
    img_batcher *b = NULL;
    EXPECT_EARG(img_batcher_make(&b, 0, 28, 1, &o, e), "source size 0x28");
    EXPECT_EARG(img_batcher_make(&b, 28, 28, 5, &o, e), "channel count 5");
    TU_OK(img_opts_parse(&o, "crop=37", NULL)); /* 28 + 2*4 = 36 */
    EXPECT_EARG(img_batcher_make(&b, 28, 28, 1, &o, e), "crop 37x37 larger than the image 28x28");
    img_opts_default(&o);
    TU_OK(img_opts_parse(&o, "mean=0.1,0.2,0.3", NULL));
    EXPECT_EARG(img_batcher_make(&b, 28, 28, 1, &o, e), "mean has 3 values for 1 output channels");
    o.flip = 2.0f; /* set in code, past the parser */
    EXPECT_EARG(img_opts_check(&o, e), "flip");
    EXPECT_EARG(img_batcher_make(&b, 28, 28, 3, &o, e), "flip");
    assert_null(b);

    img_opts_default(&o);
    TU_OK(img_batcher_make(&b, 4, 4, 1, &o, NULL));
    const uint32_t idx[2] = {0, 9};
    EXPECT_EARG(img_batcher_fill(b, u, 4, idx, 2, 1, 0, 0, f, e),
                "entry 1: example index 9 out of range (4 images)");
    EXPECT_EARG(img_batcher_fill(b, NULL, 4, idx, 1, 1, 0, 0, f, e), "NULL images");
    EXPECT_EARG(img_batcher_fill(b, u, 4, idx, 0, 1, 0, 0, f, e), "batch size 0");
    EXPECT_EARG(img_batcher_fill(b, u, 4, idx, 1, 1, 0, 0, NULL, e), "NULL output");
    EXPECT_EARG(img_batcher_fill(b, u, 0, idx, 1, 1, 0, 0, f, e), "no source images");
    img_batcher_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_constant_stays_constant),
        cmocka_unit_test(test_resize_area_by_hand),
        cmocka_unit_test(test_resize_bilinear_by_hand),
        cmocka_unit_test(test_resize_area_keeps_mean),
        cmocka_unit_test(test_resize_matches_reference),
        cmocka_unit_test(test_window_crop_pad_flip),
        cmocka_unit_test(test_convert),
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_opts_parse),
        cmocka_unit_test(test_aug_determinism_and_coverage),
        cmocka_unit_test(test_batch_matches_pipeline),
        cmocka_unit_test(test_batch_threads_seed_epoch),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
