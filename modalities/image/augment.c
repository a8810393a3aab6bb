/* Preprocessing options, augmentation draws and batch assembly (see augment.h).
 *
 * Options are a table of keys (name, kind, where in img_opts): setting one parses the value by
 * its kind into a copy, checks the whole copy, and only then commits, so a bad word leaves the
 * options as they were. The batcher checks everything once per batch before its parallel loop,
 * after which nothing can fail: each thread works in its own scratch slot and writes only its
 * examples' outputs. */
#include "modalities/image/augment.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "core/words.h"
#include "modalities/image/resize.h"

/* ---------------------------------------------------------------------------------------------
 * options */

void img_opts_default(img_opts *o)
{
    *o = (img_opts){
        .background = {255, 255, 255},
        .n_mean = 1,
        .n_std = 1,
        .pad = 4,
        .pad_mode = IMG_PAD_ZERO,
        .flip = 0.5f,
    };
    for (int i = 0; i < IMG_OPTS_MAX_CH; i++) {
        o->mean[i] = 0.0f;
        o->std[i] = 1.0f;
    }
}

static xd_status check_hw(const char *key, int h, int w, xd_err *e)
{
    if (h < 0 || w < 0 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG, "image option %s: %dx%d outside [0, %d]", key, h, w,
                       IMG_MAX_SIDE);
    if ((h == 0) != (w == 0))
        return xd_fail(e, XD_EARG,
                       "image option %s: %dx%d has one zero side (0 means 'keep' for both)", key, h,
                       w);
    return XD_OK;
}

static xd_status check_floats(const char *key, const float *v, int n, int positive, xd_err *e)
{
    if (n < 1 || n > IMG_OPTS_MAX_CH)
        return xd_fail(e, XD_EARG, "image option %s: %d values (want 1 to %d)", key, n,
                       IMG_OPTS_MAX_CH);
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return xd_fail(e, XD_EARG, "image option %s: value %d is not finite", key, i + 1);
        if (positive && !(v[i] > 0))
            return xd_fail(e, XD_EARG, "image option %s: value %d = %g must be positive", key,
                           i + 1, (double)v[i]);
    }
    return XD_OK;
}

xd_status img_opts_check(const img_opts *o, xd_err *e)
{
    if (!o) return xd_fail(e, XD_EARG, "image options: NULL");
    xd_status s;
    if ((s = check_hw("size", o->size_h, o->size_w, e)) ||
        (s = check_hw("crop", o->crop_h, o->crop_w, e)))
        return s;
    if (o->channels != 0 && o->channels != 1 && o->channels != 3)
        return xd_fail(e, XD_EARG, "image option channels: %d (want 0 = as source, 1 or 3)",
                       o->channels);
    if ((s = check_floats("mean", o->mean, o->n_mean, 0, e)) ||
        (s = check_floats("std", o->std, o->n_std, 1, e)))
        return s;
    if (o->pad < 0 || o->pad > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG, "image option pad: %d outside [0, %d]", o->pad, IMG_MAX_SIDE);
    if (o->pad_mode < 0 || o->pad_mode >= IMG_PAD_COUNT)
        return xd_fail(e, XD_EARG, "image option pad_mode: unknown mode %d", (int)o->pad_mode);
    if (!(o->flip >= 0.0f && o->flip <= 1.0f))
        return xd_fail(e, XD_EARG, "image option flip: %g is not a probability in [0, 1]",
                       (double)o->flip);
    return XD_OK;
}

/* ---- the key table */

typedef enum {
    KIND_HW,       /* "N" or "HxW" into two ints */
    KIND_INT,      /* one int in [lo, hi] */
    KIND_RGB,      /* "R,G,B" bytes */
    KIND_FLOATS,   /* "v" or "v,v,v" into a float array, count into an int */
    KIND_PAD_MODE, /* a pad mode name */
    KIND_PROB,     /* a float in [0, 1] */
} opt_kind;

typedef enum {
    OPT_SIZE,
    OPT_CROP,
    OPT_CHANNELS,
    OPT_BACKGROUND,
    OPT_MEAN,
    OPT_STD,
    OPT_PAD,
    OPT_PAD_MODE,
    OPT_FLIP,
    OPT_COUNT
} opt_id;

typedef struct {
    const char *key;
    opt_kind kind;
    size_t off, off2; /* field, and second field (width, or value count) */
    int lo, hi;       /* range for KIND_INT */
} opt_def;

#define F(field) offsetof(img_opts, field)
static const opt_def opt_defs[] = {
    [OPT_SIZE] = {"size", KIND_HW, F(size_h), F(size_w), 0, 0},
    [OPT_CROP] = {"crop", KIND_HW, F(crop_h), F(crop_w), 0, 0},
    [OPT_CHANNELS] = {"channels", KIND_INT, F(channels), 0, 0, 3},
    [OPT_BACKGROUND] = {"background", KIND_RGB, F(background), 0, 0, 0},
    [OPT_MEAN] = {"mean", KIND_FLOATS, F(mean), F(n_mean), 0, 0},
    [OPT_STD] = {"std", KIND_FLOATS, F(std), F(n_std), 0, 0},
    [OPT_PAD] = {"pad", KIND_INT, F(pad), 0, 0, IMG_MAX_SIDE},
    [OPT_PAD_MODE] = {"pad_mode", KIND_PAD_MODE, F(pad_mode), 0, 0, 0},
    [OPT_FLIP] = {"flip", KIND_PROB, F(flip), 0, 0, 0},
};
#undef F
static_assert(sizeof opt_defs / sizeof opt_defs[0] == OPT_COUNT, "opt_defs must list every key");

const char *img_opts_key(int i) { return (i >= 0 && i < OPT_COUNT) ? opt_defs[i].key : NULL; }

/* Whole-string decimal int; 0 on success. */
static int parse_int(const char *s, const char *end, long lo, long hi, int *out)
{
    if (s == end || !((*s >= '0' && *s <= '9') || *s == '-' || *s == '+')) return -1;
    char *stop;
    errno = 0;
    long v = strtol(s, &stop, 10);
    if (errno || stop != end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Whole-string finite float; 0 on success. */
static int parse_float(const char *s, const char *end, float *out)
{
    if (s == end) return -1;
    char *stop;
    errno = 0;
    float v = strtof(s, &stop);
    if (errno || stop != end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* Splits "a,b,c" (at most max items) into [start, end) pairs; returns the count or -1. */
static int split_list(const char *s, int max, const char **starts, const char **ends)
{
    int n = 0;
    for (const char *p = s;;) {
        const char *q = strchr(p, ',');
        if (!q) q = p + strlen(p);
        if (n == max) return -1;
        starts[n] = p;
        ends[n++] = q;
        if (!*q) return n;
        p = q + 1;
    }
}

static xd_status parse_value(const opt_def *d, const char *v, img_opts *o, xd_err *e)
{
    char *base = (char *)o;
    const char *vend = v + strlen(v);
    switch (d->kind) {
    case KIND_HW: {
        int *h = (int *)(base + d->off), *w = (int *)(base + d->off2);
        const char *x = strchr(v, 'x');
        if (!x) x = strchr(v, 'X');
        if (x ? parse_int(v, x, 0, IMG_MAX_SIDE, h) || parse_int(x + 1, vend, 0, IMG_MAX_SIDE, w)
              : parse_int(v, vend, 0, IMG_MAX_SIDE, h))
            return xd_fail(e, XD_EARG,
                           "image option %s: '%s' is not N or HxW with sides in [0, %d]", d->key, v,
                           IMG_MAX_SIDE);
        if (!x) *w = *h;
        return XD_OK;
    }
    case KIND_INT:
        if (parse_int(v, vend, d->lo, d->hi, (int *)(base + d->off)))
            return xd_fail(e, XD_EARG, "image option %s: '%s' is not an integer in [%d, %d]",
                           d->key, v, d->lo, d->hi);
        return XD_OK;
    case KIND_RGB: {
        const char *st[3], *en[3];
        int rgb[3];
        if (split_list(v, 3, st, en) != 3 || parse_int(st[0], en[0], 0, 255, &rgb[0]) ||
            parse_int(st[1], en[1], 0, 255, &rgb[1]) || parse_int(st[2], en[2], 0, 255, &rgb[2]))
            return xd_fail(e, XD_EARG, "image option %s: '%s' is not R,G,B with values in [0, 255]",
                           d->key, v);
        uint8_t *bg = (uint8_t *)(base + d->off);
        for (int i = 0; i < 3; i++) bg[i] = (uint8_t)rgb[i];
        return XD_OK;
    }
    case KIND_FLOATS: {
        const char *st[IMG_OPTS_MAX_CH], *en[IMG_OPTS_MAX_CH];
        float *dst = (float *)(base + d->off);
        int n = split_list(v, IMG_OPTS_MAX_CH, st, en);
        if (n < 0)
            return xd_fail(e, XD_EARG, "image option %s: '%s' has more than %d values", d->key, v,
                           IMG_OPTS_MAX_CH);
        for (int i = 0; i < n; i++)
            if (parse_float(st[i], en[i], &dst[i]))
                return xd_fail(e, XD_EARG,
                               "image option %s: value %d of '%s' is not a finite number", d->key,
                               i + 1, v);
        for (int i = n; i < IMG_OPTS_MAX_CH; i++) dst[i] = n == 1 ? dst[0] : 0.0f;
        *(int *)(base + d->off2) = n;
        return XD_OK;
    }
    case KIND_PAD_MODE:
        for (int m = 0; m < IMG_PAD_COUNT; m++)
            if (!strcmp(v, img_pad_name((img_pad_mode)m))) {
                *(img_pad_mode *)(base + d->off) = (img_pad_mode)m;
                return XD_OK;
            }
        return xd_fail(e, XD_EARG, "image option %s: '%s' is not a pad mode (zero, edge)", d->key,
                       v);
    case KIND_PROB: {
        float p;
        if (parse_float(v, vend, &p) || p < 0.0f || p > 1.0f)
            return xd_fail(e, XD_EARG, "image option %s: '%s' is not a probability in [0, 1]",
                           d->key, v);
        *(float *)(base + d->off) = p;
        return XD_OK;
    }
    }
    return xd_fail(e, XD_EARG, "image option %s: no parser for its kind", d->key);
}

xd_status img_opts_set(img_opts *o, const char *key, const char *value, xd_err *e)
{
    if (!o || !key || !value) return xd_fail(e, XD_EARG, "image option: NULL argument");
    const opt_def *d = NULL;
    for (int i = 0; i < OPT_COUNT && !d; i++)
        if (!strcmp(opt_defs[i].key, key)) d = &opt_defs[i];
    if (!d) {
        char known[256] = "";
        size_t len = 0;
        for (int i = 0; i < OPT_COUNT && len < sizeof known; i++)
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "",
                                    opt_defs[i].key);
        return xd_fail(e, XD_EARG, "unknown image option '%s' (known: %s)", key, known);
    }
    img_opts tmp = *o;
    xd_status s = parse_value(d, value, &tmp, e);
    if (!s) s = img_opts_check(&tmp, e);
    if (!s) *o = tmp;
    return s;
}

xd_status img_opts_parse(img_opts *o, const char *text, xd_err *e)
{
    if (!o || !text) return xd_fail(e, XD_EARG, "image options: NULL argument");
    const char *seps = " \t\r\n;";
    char *copy = xd_xstrdup(text);
    const char **words = NULL; /* the words read so far, in copy, for keys given twice */
    int n_words = 0;
    xd_status s = XD_OK;
    for (char *p = copy + strspn(copy, seps); *p && !s; p += strspn(p, seps)) {
        size_t n = strcspn(p, seps);
        const size_t at = (size_t)(p - copy);
        char *eq = memchr(p, '=', n);
        const int last = !p[n];
        p[n] = '\0';
        if (n >= 256)
            s = xd_fail(e, XD_EARG, "image options: word at offset %zu is longer than %d bytes",
                        at, 255);
        else if (!eq || eq == p)
            s = xd_fail(e, XD_EARG, "image options: '%s' at offset %zu is not key=value", p, at);
        else if (xd_word_key_repeats(words, n_words, p))
            s = xd_fail(e, XD_EARG, "image options: '%.*s' given twice", (int)(eq - p), p);
        if (s) break;
        words = xd_xrealloc(words, sizeof *words * (size_t)(n_words + 1));
        words[n_words++] = p;
        *eq = '\0';
        s = img_opts_set(o, p, eq + 1, e);
        p += n + !last;
    }
    free(words);
    free(copy);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * augmentation draws */

xd_rng img_aug_rng(uint64_t seed, uint64_t example, uint64_t epoch)
{
    /* epoch mixed into high bits too, so (example, epoch) pairs never share a stream in practice */
    return xd_rng_make(seed, example ^ xd_mix64(epoch ^ 0x243F6A8885A308D3ull), XD_RNG_AUGMENT);
}

/* uniform offset in [-pad, n + pad - k] */
static int draw_offset(xd_rng *r, int n, int k, int pad)
{
    int64_t range = (int64_t)n + 2 * (int64_t)pad - k + 1;
    if (range < 1) range = 1;
    return (int)xd_rng_below(r, (uint32_t)range) - pad;
}

img_aug img_aug_sample(const img_opts *o, int h, int w, int ch, int cw, uint64_t seed,
                       uint64_t example, uint64_t epoch)
{
    xd_rng r = img_aug_rng(seed, example, epoch);
    img_aug a;
    /* always three draws in this order, so the stream's use does not depend on the options */
    a.y0 = draw_offset(&r, h, ch, o->pad);
    a.x0 = draw_offset(&r, w, cw, o->pad);
    a.flip = xd_rng_uniform(&r) < o->flip;
    return a;
}

img_aug img_aug_centre(int h, int w, int ch, int cw)
{
    /* floor division, also for a crop larger than the image (negative offsets) */
    int dy = h - ch, dx = w - cw;
    return (img_aug){.y0 = dy >= 0 ? dy / 2 : -((1 - dy) / 2),
                     .x0 = dx >= 0 ? dx / 2 : -((1 - dx) / 2),
                     .flip = 0};
}

/* ---------------------------------------------------------------------------------------------
 * batch assembly */

struct img_batcher {
    int h, w, c; /* source */
    int oc;      /* channels after conversion */
    int rh, rw;  /* after resize */
    int ch, cw;  /* output window */
    img_opts o;
    float mean[IMG_OPTS_MAX_CH], std[IMG_OPTS_MAX_CH]; /* per output channel */
    int resize;
    img_resize_plan plan;
    /* per-thread scratch, slot = [resized (rh, rw, oc) floats | resize scratch | converted u8] */
    size_t n_resized, n_rscratch, n_conv, slot_bytes;
    int n_slots;
    unsigned char *slots;
};

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static xd_status batcher_grow(img_batcher *b, int n_slots, xd_err *e)
{
    if (n_slots <= b->n_slots) return XD_OK;
    size_t bytes;
    if (xd_mul_size(b->slot_bytes, (size_t)n_slots, &bytes))
        return xd_fail(e, XD_ENOMEM, "image batcher: scratch size overflows");
    unsigned char *p = xd_try_alloc(bytes);
    if (!p)
        return xd_fail(e, XD_ENOMEM, "image batcher: no memory for %d scratch slots of %zu bytes",
                       n_slots, b->slot_bytes);
    free(b->slots);
    b->slots = p;
    b->n_slots = n_slots;
    return XD_OK;
}

xd_status img_batcher_make(img_batcher **out, int h, int w, int c, const img_opts *o, xd_err *e)
{
    if (!out) return xd_fail(e, XD_EARG, "image batcher: NULL output");
    *out = NULL;
    xd_status s = img_opts_check(o, e);
    if (s) return s;
    if (h < 1 || w < 1 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE)
        return xd_fail(e, XD_EARG, "image batcher: source size %dx%d outside [1, %d]", h, w,
                       IMG_MAX_SIDE);
    if (c < 1 || c > 4)
        return xd_fail(e, XD_EARG, "image batcher: source channel count %d not in 1..4", c);
    /* 0 = as the source, with any alpha composited away */
    int oc = o->channels ? o->channels : (c == 2 ? 1 : c == 4 ? 3 : c);
    if (o->n_mean != 1 && o->n_mean != oc)
        return xd_fail(e, XD_EARG, "image batcher: mean has %d values for %d output channels",
                       o->n_mean, oc);
    if (o->n_std != 1 && o->n_std != oc)
        return xd_fail(e, XD_EARG, "image batcher: std has %d values for %d output channels",
                       o->n_std, oc);
    int rh = o->size_h ? o->size_h : h, rw = o->size_w ? o->size_w : w;
    int ch = o->crop_h ? o->crop_h : rh, cw = o->crop_w ? o->crop_w : rw;
    if (ch > rh + 2 * o->pad || cw > rw + 2 * o->pad)
        return xd_fail(e, XD_EARG,
                       "image batcher: crop %dx%d larger than the image %dx%d plus padding %d", ch,
                       cw, rh, rw, o->pad);

    img_batcher *b = xd_xcalloc(1, sizeof *b);
    *b = (img_batcher){
        .h = h, .w = w, .c = c, .oc = oc, .rh = rh, .rw = rw, .ch = ch, .cw = cw, .o = *o};
    for (int i = 0; i < oc; i++) {
        b->mean[i] = o->mean[o->n_mean == 1 ? 0 : i];
        b->std[i] = o->std[o->n_std == 1 ? 0 : i];
    }
    b->resize = rh != h || rw != w;
    if (b->resize && (s = img_resize_plan_make(&b->plan, h, w, rh, rw, e))) {
        img_batcher_free(b);
        return s;
    }
    b->n_resized = (size_t)rh * rw * oc;
    b->n_rscratch = b->resize ? img_resize_scratch_floats(&b->plan, oc) : 0;
    b->n_conv = c != oc ? (size_t)h * w * oc : 0;
    b->slot_bytes = round64((b->n_resized + b->n_rscratch) * sizeof(float)) + round64(b->n_conv);
    s = batcher_grow(b, xd_threads_get(), e);
    if (s) {
        img_batcher_free(b);
        return s;
    }
    *out = b;
    return XD_OK;
}

void img_batcher_free(img_batcher *b)
{
    if (!b) return;
    if (b->resize) img_resize_plan_free(&b->plan);
    free(b->slots);
    free(b);
}

void img_batcher_shape(const img_batcher *b, int *oh, int *ow, int *oc)
{
    if (oh) *oh = b->ch;
    if (ow) *ow = b->cw;
    if (oc) *oc = b->oc;
}

/* One example into dst (ch, cw, oc). Arguments were checked by the caller, so the calls below
 * cannot fail; XD_ASSERT guards that invariant. */
static void prepare_one(const img_batcher *b, const uint8_t *src, img_aug a, unsigned char *slot,
                        float *dst)
{
    float *resized = (float *)slot;
    float *rscratch = resized + b->n_resized;
    uint8_t *conv = slot + round64((b->n_resized + b->n_rscratch) * sizeof(float));
    const size_t npix = (size_t)b->h * b->w;
    xd_status s = XD_OK;
    if (b->c != b->oc) {
        s = img_convert_u8(src, npix, b->c, conv, b->oc, b->o.background, NULL);
        XD_ASSERT(s == XD_OK);
        src = conv;
    }
    if (!b->resize && !a.flip && a.y0 == 0 && a.x0 == 0 && b->ch == b->rh && b->cw == b->rw) {
        /* the image as it is (a model's own input size, as at inference): the same arithmetic
         * in one pass from the 8-bit pixels, not three over floats */
        s = img_normalise_u8(src, npix, b->oc, b->mean, b->std, dst, NULL);
        XD_ASSERT(s == XD_OK);
        return;
    }
    if (b->resize) {
        img_resize_run_u8(&b->plan, src, b->oc, resized, rscratch);
    } else {
        for (size_t i = 0; i < b->n_resized; i++) resized[i] = (float)src[i];
    }
    s = img_window_f32(resized, b->rh, b->rw, b->oc, a.y0, a.x0, b->ch, b->cw, b->o.pad_mode, dst,
                       NULL);
    XD_ASSERT(s == XD_OK);
    if (a.flip) {
        s = img_flip_h_f32(dst, b->ch, b->cw, b->oc, NULL);
        XD_ASSERT(s == XD_OK);
    }
    s = img_normalise_f32(dst, (size_t)b->ch * b->cw, b->oc, b->mean, b->std, NULL);
    XD_ASSERT(s == XD_OK);
}

int img_batcher_pixel_values(const img_batcher *b, float *values)
{
    /* prepare_one's pass for an image as it is, with no channel conversion before */
    if (b->resize || b->c != b->oc || b->ch != b->rh || b->cw != b->rw) return 0;
    uint8_t ramp[256 * IMG_MAX_CHANNELS];
    for (int p = 0; p < 256; p++)
        for (int ch = 0; ch < b->oc; ch++) ramp[p * b->oc + ch] = (uint8_t)p;
    const xd_status s = img_normalise_u8(ramp, 256, b->oc, b->mean, b->std, values, NULL);
    XD_ASSERT(s == XD_OK);
    return 1;
}

/* One image of img_batcher_fill: source image number k into out, in the calling thread's slot. */
static void fill_one(const img_batcher *cb, const uint8_t *images, uint32_t k, int augment,
                     uint64_t seed, uint64_t epoch, float *out)
{
    const size_t in_size = (size_t)cb->h * cb->w * cb->c;
    img_aug a = augment ? img_aug_sample(&cb->o, cb->rh, cb->rw, cb->ch, cb->cw, seed, k, epoch)
                        : img_aug_centre(cb->rh, cb->rw, cb->ch, cb->cw);
    int t = xd_thread_num();
    XD_ASSERT(t < cb->n_slots);
    prepare_one(cb, images + k * in_size, a, cb->slots + (size_t)t * cb->slot_bytes, out);
}

/* Reading ahead. A shuffled epoch reads its examples at random, and on a data set larger than the
 * caches each image would wait for memory, and for its page's address translation, when its turn
 * came (BENCHMARKS.md, `bench grow`). So the batch loop first asks for the first line of every
 * image of its run (into the outer caches: the translations and first lines arrive side by side,
 * not one image after another), then, PREFETCH_AHEAD images ahead of the one it prepares, for all
 * of an image's first PREFETCH_BYTES (beyond those the core's own prefetcher follows a large
 * image). */
#define PREFETCH_AHEAD 8
#define PREFETCH_BYTES 4096

static void prefetch_image(const uint8_t *p, size_t bytes)
{
    if (bytes > PREFETCH_BYTES) bytes = PREFETCH_BYTES;
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
    __builtin_prefetch(p + bytes - 1);
}

/* Entries lo..hi of img_batcher_fill's batch, in order, on the calling thread */
static void fill_range(const img_batcher *cb, const uint8_t *images, const uint32_t *idx, int lo,
                       int hi, int augment, uint64_t seed, uint64_t epoch, float *out)
{
    const size_t in_size = (size_t)cb->h * cb->w * cb->c;
    const size_t out_size = (size_t)cb->ch * cb->cw * cb->oc;
    for (int i = lo; i < hi; i++) __builtin_prefetch(images + idx[i] * in_size, 0, 1);
    for (int i = lo; i < hi && i - lo < PREFETCH_AHEAD; i++)
        prefetch_image(images + idx[i] * in_size, in_size);
    for (int i = lo; i < hi; i++) {
        if (hi - i > PREFETCH_AHEAD)
            prefetch_image(images + idx[i + PREFETCH_AHEAD] * in_size, in_size);
        fill_one(cb, images, idx[i], augment, seed, epoch, out + (size_t)i * out_size);
    }
}

xd_status img_batcher_fill(img_batcher *b, const uint8_t *images, size_t n, const uint32_t *idx,
                           int count, int augment, uint64_t seed, uint64_t epoch, float *out,
                           xd_err *e)
{
    if (!b || !images || !idx || !out)
        return xd_fail(e, XD_EARG, "image batch: NULL %s",
                       !b        ? "batcher"
                       : !images ? "images"
                       : !idx    ? "index list"
                                 : "output");
    if (count < 1) return xd_fail(e, XD_EARG, "image batch: batch size %d (want >= 1)", count);
    if (n == 0) return xd_fail(e, XD_EARG, "image batch: no source images");
    for (int i = 0; i < count; i++)
        if (idx[i] >= n)
            return xd_fail(e, XD_EARG,
                           "image batch: entry %d: example index %u out of range (%zu images)", i,
                           idx[i], n);
    xd_status s = batcher_grow(b, xd_threads_get(), e);
    if (s) return s;

    const img_batcher *cb = b;
    if (!xd_threads_split(count > 1)) {
        fill_range(cb, images, idx, 0, count, augment, seed, epoch, out);
        return XD_OK;
    }
    /* each thread a run of the entries (an image's values do not depend on which thread) */
#pragma omp parallel
    {
        const int t = xd_thread_num(), nt = xd_team_size();
        fill_range(cb, images, idx, (int)((long)count * t / nt), (int)((long)count * (t + 1) / nt),
                   augment, seed, epoch, out);
    }
    return XD_OK;
}
