/* The inference engine behind the public API (include/xdistill/infer.h).
 *
 * A loaded model keeps what its checkpoint says about its inputs: the size of its training images
 * ("xdistill.images") and the recipe's data.augment and data.text. An image goes through two
 * stages, so that a data set image saved as a file gives the very floats `xdistill eval` feeds:
 *   1. what `prepare` does to a source file: channels over white, centre square (when the
 *      training images are square), resize to the training size, 8 bits (batch_set_image);
 *   2. what a feed does to a data set image: the batcher of img_opts from feed_image_opts
 *      (resize, centre crop, normalisation), run over the whole batch in xdistill_predict.
 * Checkpoints without "xdistill.images" take the size stage 2 resizes to (the model's input
 * unless data.augment says size=) and the model's channels. Texts go through the feed's own
 * tokenizer (feed_text_tokenizer). */
#include "include/xdistill/xdistill.h"

#include <assert.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/runtime.h"
#include "distill/checkpoint.h"
#include "distill/rationale.h"
#include "distill/exits.h"
#include "distill/feed.h"
#include "io/image.h"
#include "modalities/image/augment.h"
#include "modalities/image/ops.h"
#include "modalities/image/resize.h"
#include "modalities/text/tokenizer.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "nn/quant.h"

static_assert((int)XDISTILL_EIO == (int)XD_EIO && (int)XDISTILL_EFORMAT == (int)XD_EFORMAT &&
                  (int)XDISTILL_EARG == (int)XD_EARG && (int)XDISTILL_ESHAPE == (int)XD_ESHAPE &&
                  (int)XDISTILL_ENUM == (int)XD_ENUM && (int)XDISTILL_ENOMEM == (int)XD_ENOMEM &&
                  (int)XDISTILL_EUNSUPPORTED == (int)XD_EUNSUPPORTED &&
                  XDISTILL_ERROR_LEN == XD_ERR_LEN,
              "the public statuses are the internal ones");

#define MAX_BATCH 65536

struct xdistill_model {
    char *path;
    nn_model m;
    int head, K, map_h, map_w;
    double flops;             /* of one input's forward pass */
    uint8_t *need;            /* the nodes an early exit reads (xdistill_use_exit); NULL: all */
    char **names;             /* (K) class names, stored or decimal */
    /* images: the training images' size, and stage 2 */
    int dh, dw, dc;
    img_batcher *batcher;
    float *input;             /* (max_batch, h, w, c) */
    int pixels_in;            /* an int8 student that takes the 8-bit pixels (nn_qengine_pixels) */
    uint32_t *slots;          /* 0..max_batch-1: the batcher's example indices, made once */
    /* texts */
    txt_tokenizer tok;
    /* a rationale decoder (xdistill_use_rationale), or NULL: the words of the last prediction */
    nn_seqdec *dec;
    rat_vocab *rv;
    int dec_node;
    int32_t *dec_out;         /* (max_batch, its length limit) */
    int *dec_len;             /* (max_batch) */
};

struct xdistill_batch {
    const xdistill_model *m;
    uint8_t *pixels;          /* (max_batch, dh, dw, dc) */
    int *sizes;               /* (max_batch, 2): each slot's image height and width as given */
    int32_t *ids;             /* (max_batch, tokens) */
    char **names;             /* (max_batch) each slot's input name as given, or NULL: messages */
};

static const uint8_t white[3] = {255, 255, 255};

/* The message, already on one line (xd_fail escapes control characters: a line break in a
 * caller's path or name). */
static xdistill_status out_err(xdistill_error *err, xd_status s, const xd_err *e)
{
    if (err) {
        err->code = (xdistill_status)s;
        snprintf(err->message, sizeof err->message, "%s", e->msg);
    }
    return (xdistill_status)s;
}

const char *xdistill_version(void) { return XD_VERSION; }

/* The class names of head (ckpt_head_class_names), else its class numbers. */
static xd_status head_names(const xdistill_model *x, int head, char ***names, xd_err *e)
{
    xd_status s = ckpt_head_class_names(x->path, &x->m, head, names, e);
    if (s != XD_OK || *names) return s;
    const int K = ckpt_head_classes(&x->m, head);
    *names = ckpt_class_numbers(K);
    return *names ? XD_OK : xd_fail(e, XD_ENOMEM, "%s: no memory for %d class names", x->path, K);
}

/* The preprocessing the checkpoint stores: stage 2's batcher and the training image size. */
static xd_status load_preprocessing(xdistill_model *x, xd_err *e)
{
    char *augment, *text;
    xd_status s = ckpt_preprocessing(x->path, &augment, &text, e);
    if (s != XD_OK) return s;
    if (x->m.tokens) {
        s = feed_text_tokenizer(&x->tok, text ? text : "", &x->m, e);
    } else {
        img_opts o;
        s = feed_image_opts(&o, augment ? augment : "", &x->m, e);
        if (s == XD_OK) s = ckpt_trained_images(x->path, &x->dh, &x->dw, &x->dc, e);
        if (s == XD_OK && !x->dh) {
            x->dh = o.size_h;
            x->dw = o.size_w;
            x->dc = x->m.c;
        }
        if (s == XD_OK) s = img_batcher_make(&x->batcher, x->dh, x->dw, x->dc, &o, e);
        size_t n = (size_t)x->m.max_batch * (size_t)x->m.h * (size_t)x->m.w * (size_t)x->m.c;
        if (s == XD_OK && (!(x->input = xd_try_alloc_aligned(sizeof(float) * n)) ||
                           !(x->slots = xd_try_alloc(sizeof(uint32_t) * (size_t)x->m.max_batch))))
            s = xd_fail(e, XD_ENOMEM, "no memory for a batch of %d inputs", x->m.max_batch);
        for (int i = 0; s == XD_OK && i < x->m.max_batch; i++) x->slots[i] = (uint32_t)i;
        float values[256 * 4]; /* a batcher gives 1-4 channels */
        if (s == XD_OK && x->m.qengine && x->dh == x->m.h && x->dw == x->m.w && x->dc == x->m.c)
            x->pixels_in = img_batcher_pixel_values(x->batcher, values) &&
                           nn_qengine_pixels(&x->m, x->m.c, values);
    }
    if (s != XD_OK) xd_err_prefix(e, "%s: the stored preprocessing", x->path);
    free(augment);
    free(text);
    return s;
}

/* Predictions read head (its classes, its map size). */
static void set_head(xdistill_model *x, int head)
{
    x->head = head;
    const nn_node *hn = nn_model_node(&x->m, head);
    const int map = nn_node_is_map(hn);
    x->K = ckpt_head_classes(&x->m, head);
    x->map_h = map ? hn->h : 1;
    x->map_w = map ? hn->w : 1;
}

xdistill_status xdistill_load(const char *path, int max_batch, xdistill_model **out,
                              xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    if (!out) return out_err(err, xd_fail(&e, XD_EARG, "xdistill_load: out is NULL"), &e);
    *out = NULL;
    if (!path) return out_err(err, xd_fail(&e, XD_EARG, "xdistill_load: path is NULL"), &e);
    if (max_batch < 1 || max_batch > MAX_BATCH)
        return out_err(err, xd_fail(&e, XD_EARG, "%s: batches of %d inputs (1..%d)", path,
                                    max_batch, MAX_BATCH), &e);
    xdistill_model *x = calloc(1, sizeof *x);
    if (!x || !(x->path = strdup(path))) {
        free(x);
        return out_err(err, xd_fail(&e, XD_ENOMEM, "%s: no memory to load it", path), &e);
    }
    xd_status s = ckpt_load(path, max_batch, &x->m, &e);
    if (s == XD_OK) {
        x->flops = nn_model_flops(&x->m);
        set_head(x, nn_model_default_head(&x->m));
        s = nn_model_pack(&x->m, &e);
        if (s != XD_OK) xd_err_prefix(&e, "%s", path);
    }
    if (s == XD_OK) {
        s = head_names(x, x->head, &x->names, &e);
    }
    if (s == XD_OK) s = load_preprocessing(x, &e);
    if (s != XD_OK) {
        xdistill_free(x);
        return out_err(err, s, &e);
    }
    *out = x;
    return XDISTILL_OK;
}

void xdistill_free(xdistill_model *x)
{
    if (!x) return;
    ckpt_class_names_free(x->names);
    if (x->batcher) img_batcher_free(x->batcher);
    free(x->input);
    free(x->slots);
    free(x->need);
    if (x->dec) {
        nn_seqdec_free(x->dec);
        rat_vocab_free(x->rv);
    }
    free(x->dec);
    free(x->rv);
    free(x->dec_out);
    free(x->dec_len);
    nn_model_free(&x->m);
    free(x->path);
    free(x);
}

/* The class names stay those of the default head when the exit has as many classes (an early
 * exit of the same task); otherwise the exit's classes are numbered. */
xdistill_status xdistill_use_exit(xdistill_model *x, const char *name, xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    if (!x) return out_err(err, xd_fail(&e, XD_EARG, "xdistill_use_exit: model is NULL"), &e);
    int head;
    xd_status s = name ? exits_find(&x->m, x->path, name, &head, &e)
                       : xd_fail(&e, XD_EARG, "%s: xdistill_use_exit: name is NULL", x->path);
    if (s != XD_OK) return out_err(err, s, &e);
    /* what the new head needs, made before anything changes: on failure m is as it was */
    const int old_head = x->head;
    set_head(x, head);
    uint8_t *need = NULL;
    char **names = NULL;
    if (head != nn_model_default_head(&x->m) && !(need = calloc((size_t)x->m.n_nodes, 1)))
        s = xd_fail(&e, XD_ENOMEM, "%s: no memory for exit '%s'", x->path, name);
    if (s == XD_OK) s = head_names(x, head, &names, &e);
    if (s != XD_OK) {
        free(need);
        set_head(x, old_head);
        return out_err(err, s, &e);
    }
    if (need) {
        nn_model_needs(&x->m, head, need);
        if (x->dec) nn_model_needs(&x->m, x->dec_node, need); /* the rationale decoder's tap */
    }
    free(x->need);
    x->need = need;
    ckpt_class_names_free(x->names);
    x->names = names;
    return XDISTILL_OK;
}

xdistill_input_kind xdistill_reads(const xdistill_model *x)
{
    return x && x->m.tokens ? XDISTILL_READS_TEXTS : XDISTILL_READS_IMAGES;
}

xdistill_task xdistill_task_of(const xdistill_model *x)
{
    return x && (x->map_h > 1 || x->map_w > 1) ? XDISTILL_SEGMENT : XDISTILL_CLASSIFY;
}

int xdistill_max_batch(const xdistill_model *x) { return x ? x->m.max_batch : 0; }
int xdistill_num_classes(const xdistill_model *x) { return x ? x->K : 0; }

const char *xdistill_class_name(const xdistill_model *x, int k)
{
    return x && k >= 0 && k < x->K ? x->names[k] : NULL;
}

void xdistill_map_size(const xdistill_model *x, int *height, int *width)
{
    if (height) *height = x ? x->map_h : 0;
    if (width) *width = x ? x->map_w : 0;
}

size_t xdistill_outputs(const xdistill_model *x)
{
    return x ? (size_t)x->map_h * (size_t)x->map_w * (size_t)x->K : 0;
}

xdistill_batch *xdistill_batch_new(const xdistill_model *x)
{
    if (!x) return NULL;
    xdistill_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->m = x;
    const size_t B = (size_t)x->m.max_batch;
    if (!(b->names = calloc(B, sizeof *b->names))) {
        free(b);
        return NULL;
    }
    /* every slot starts as the blank input a failed fill leaves (slot_failed): zero pixels of
     * no size, or a text of pad tokens only */
    if (x->m.tokens) {
        const size_t L = (size_t)x->m.tokens;
        if ((b->ids = calloc(B * L, sizeof *b->ids)))
            for (size_t i = 0; i < B; i++) txt_pad_row(b->ids + i * L, 0, L);
    } else if ((b->sizes = calloc(2 * B, sizeof *b->sizes))) {
        b->pixels = calloc(B, (size_t)x->dh * (size_t)x->dw * (size_t)x->dc);
    }
    if (!b->ids && !b->pixels) {
        free(b->sizes);
        free(b->names);
        free(b);
        return NULL;
    }
    return b;
}

void xdistill_batch_free(xdistill_batch *b)
{
    if (!b) return;
    for (int i = 0; i < b->m->m.max_batch; i++) free(b->names[i]);
    free(b->names);
    free(b->pixels);
    free(b->sizes);
    free(b->ids);
    free(b);
}

/* The slot and the kind of input are right for b's model; name (may be NULL) for messages. */
static xd_status check_slot(const xdistill_batch *b, int slot, int texts, const char *name,
                            xd_err *e)
{
    if (!name) name = texts ? "text" : "image";
    if (!b) return xd_fail(e, XD_EARG, "%s: the batch is NULL", name);
    if (slot < 0 || slot >= b->m->m.max_batch)
        return xd_fail(e, XD_EARG, "%s: slot %d of a batch of %d", name, slot, b->m->m.max_batch);
    if (texts && !b->m->m.tokens)
        return xd_fail(e, XD_ESHAPE, "%s: a text, but the model %s reads images", name,
                       b->m->path);
    if (!texts && b->m->m.tokens)
        return xd_fail(e, XD_ESHAPE, "%s: an image, but the model %s reads texts", name,
                       b->m->path);
    return XD_OK;
}

/* Stage 1: src (h, w, c) -> dst (dh, dw, dc) as `prepare` makes a data set image. */
static xd_status prepare_image(const xdistill_model *x, const uint8_t *src, int h, int w, int c,
                               uint8_t *dst, xd_err *e)
{
    const size_t npix = (size_t)h * (size_t)w;
    int side = h < w ? h : w;
    const int square = x->dh == x->dw && h != w;
    uint8_t *conv = xd_try_alloc(npix * (size_t)x->dc);
    uint8_t *sq = square ? xd_try_alloc((size_t)side * (size_t)side * (size_t)x->dc) : NULL;
    xd_status s = XD_OK;
    if (!conv || (square && !sq))
        s = xd_fail(e, XD_ENOMEM, "no memory for a %dx%d image", h, w);
    if (s == XD_OK) s = img_convert_u8(src, npix, c, conv, x->dc, white, e);
    const uint8_t *cur = conv;
    if (s == XD_OK && square) {
        s = img_crop_centre_u8(conv, h, w, x->dc, side, side, sq, e);
        cur = sq;
        h = w = side;
    }
    if (s == XD_OK && (h != x->dh || w != x->dw))
        s = img_resize_u8(cur, h, w, x->dc, dst, x->dh, x->dw, e);
    else if (s == XD_OK)
        memcpy(dst, cur, (size_t)h * (size_t)w * (size_t)x->dc);
    free(conv);
    free(sq);
    return s;
}

static uint8_t *slot_pixels(const xdistill_batch *b, int slot)
{
    const xdistill_model *x = b->m;
    return b->pixels + (size_t)slot * (size_t)x->dh * (size_t)x->dw * (size_t)x->dc;
}

/* The slot's input is called name in messages (NULL, or no memory for a copy: by its slot). */
static void slot_name(const xdistill_batch *b, int slot, const char *name)
{
    free(b->names[slot]);
    b->names[slot] = name ? strdup(name) : NULL;
}

/* A failed fill leaves a blank slot, without a name, and the message names the input. */
static xdistill_status slot_failed(const xdistill_batch *b, int slot, const char *name,
                                   xd_status s, xd_err *e, xdistill_error *err)
{
    if (b && slot >= 0 && slot < b->m->m.max_batch) {
        const xdistill_model *x = b->m;
        slot_name(b, slot, NULL);
        if (b->pixels) {
            memset(slot_pixels(b, slot), 0, (size_t)x->dh * (size_t)x->dw * (size_t)x->dc);
            b->sizes[2 * slot] = b->sizes[2 * slot + 1] = 0;
        }
        else txt_pad_row(b->ids + (size_t)slot * (size_t)x->m.tokens, 0, (size_t)x->m.tokens);
    }
    if (name && strncmp(e->msg, name, strlen(name)) != 0) xd_err_prefix(e, "%s", name);
    return out_err(err, s, e);
}

xdistill_status xdistill_batch_set_image(xdistill_batch *b, int slot, const unsigned char *pixels,
                                         int height, int width, int channels, const char *name,
                                         xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    xd_status s = check_slot(b, slot, 0, name, &e);
    if (s == XD_OK && !pixels)
        s = xd_fail(&e, XD_EARG, "%s: pixels is NULL", name ? name : "image");
    if (s == XD_OK && (height < 1 || width < 1 || channels < 1 || channels > 4))
        s = xd_fail(&e, XD_EARG, "%s: %dx%d pixels of %d channels (sides from 1, channels 1..4)",
                    name ? name : "image", height, width, channels);
    /* a valid image, decoded files included (their decoder reads sides up to 32768), that stage
     * 1's crop and resize do not take */
    else if (s == XD_OK && (height > IMG_MAX_SIDE || width > IMG_MAX_SIDE))
        s = xd_fail(&e, XD_EUNSUPPORTED, "%s: %dx%d pixels; images of up to %d pixels a side are "
                    "handled", name ? name : "image", height, width, IMG_MAX_SIDE);
    if (s == XD_OK) s = prepare_image(b->m, pixels, height, width, channels, slot_pixels(b, slot), &e);
    if (s != XD_OK) return slot_failed(b, slot, name, s, &e, err);
    b->sizes[2 * slot] = height;
    b->sizes[2 * slot + 1] = width;
    slot_name(b, slot, name);
    return XDISTILL_OK;
}

xdistill_status xdistill_batch_set_image_file(xdistill_batch *b, int slot, const char *path,
                                              xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    xd_status s = check_slot(b, slot, 0, path, &e);
    if (s == XD_OK && !path) s = xd_fail(&e, XD_EARG, "image: the path is NULL");
    io_image img = {0};
    if (s == XD_OK) s = io_image_read(path, NULL, &img, &e);
    if (s != XD_OK) return slot_failed(b, slot, path, s, &e, err);
    xdistill_status r = xdistill_batch_set_image(b, slot, img.px, img.h, img.w, img.c, path, err);
    io_image_free(&img);
    return r;
}

xdistill_status xdistill_batch_set_text(xdistill_batch *b, int slot, const char *text, size_t len,
                                        const char *name, xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    xd_status s = check_slot(b, slot, 1, name, &e);
    if (s == XD_OK && !text) s = xd_fail(&e, XD_EARG, "%s: text is NULL", name ? name : "text");
    if (s == XD_OK) {
        const size_t L = (size_t)b->m->m.tokens;
        int32_t *row = b->ids + (size_t)slot * L;
        size_t n_ids;
        s = txt_encode(&b->m->tok, text, len, row, L, &n_ids, NULL, &e);
        if (s == XD_OK) txt_pad_row(row, n_ids, L);
        if (s == XD_OK) slot_name(b, slot, name);
    }
    return s == XD_OK ? XDISTILL_OK : slot_failed(b, slot, name, s, &e, err);
}

/* A prediction's work below this many flops runs on one thread: handing such work to several
 * costs more than it saves. Each parallel region waits for every thread of the team, which takes
 * microseconds on idle cores (and up to a scheduler time slice on cores other jobs hold: give
 * such a job one thread), while one thread does 5 MFLOP in some 30 us (one image through the
 * Fashion teacher is 8.6 MFLOP, the MLP student's 64-image batch 13). An integer layer's
 * multiply-add counts half: it costs about half a float one's. */
#define SERIAL_FLOPS 5e6

/* The preprocessing's second stage, the forward pass and the softmax of count inputs. */
static xd_status predict_run(xdistill_model *x, const xdistill_batch *b, int count, float *probs,
                             xd_err *e)
{
    const void *input = b->ids;
    if (b->pixels && !x->pixels_in) {
        xd_status s = img_batcher_fill(x->batcher, b->pixels, (size_t)x->m.max_batch, x->slots,
                                       count, 0, 0, 0, x->input, e);
        if (s != XD_OK) return s;
        input = x->input;
    }
    /* read after it: the exit's output (a head, or the default one: written whole) and the
     * rationale decoder's tap */
    const int tap = x->dec ? x->dec_node : -1, taps = tap >= 0;
    if (b->pixels && x->pixels_in) { /* the first layer's codes straight from the pixels */
        nn_qengine_pixels_in(&x->m, 1);
        nn_model_infer_reading(&x->m, b->pixels, count, x->need, &tap, taps);
        nn_qengine_pixels_in(&x->m, 0);
    } else {
        nn_model_infer_reading(&x->m, input, count, x->need, &tap, taps);
    }
    /* weights whose products overflow float give Inf, then NaN: no probabilities of those. The
     * message names the first such input that was filled (a failed fill's blank slot has none) */
    const float *out = nn_model_out(&x->m, x->head);
    const size_t per = nn_model_node(&x->m, x->head)->act_n;
    int bad = -1;
    float v;
    for (int named = 1; named >= 0 && bad < 0; named--)
        for (int r = 0; r < count && bad < 0; r++)
            if ((b->names[r] || !named) && nn_nonfinite_row(out + (size_t)r * per, 1, per, &v) >= 0)
                bad = r;
    if (bad >= 0) {
        char slot[32];
        snprintf(slot, sizeof slot, "input %d of the batch", bad);
        return xd_fail(e, XD_ENUM, "%s: the model's output for %s is not finite (%g)", x->path,
                       b->names[bad] ? b->names[bad] : slot, (double)v);
    }
    nn_softmax_infer(probs, out, count * x->map_h * x->map_w, x->K);
    if (x->dec)
        nn_seqdec_greedy(x->dec, nn_model_out(&x->m, x->dec_node), count, x->dec_out, x->dec_len);
    return XD_OK;
}

xdistill_status xdistill_use_rationale(xdistill_model *x, const char *path, xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    if (!x || !path)
        return out_err(err, xd_fail(&e, XD_EARG, "xdistill_use_rationale: %s is NULL",
                                    x ? "path" : "model"), &e);
    nn_seqdec *d = calloc(1, sizeof *d);
    rat_vocab *rv = calloc(1, sizeof *rv);
    char *tap = NULL;
    int32_t *dec_out = NULL;
    int *dec_len = NULL;
    xd_status s = d && rv ? rat_load(path, x->m.max_batch, d, rv, &tap, &e)
                          : xd_fail(&e, XD_ENOMEM, "%s: no memory for a decoder", path);
    const int node = s == XD_OK ? nn_model_find(&x->m, tap) : -1;
    if (s == XD_OK && node < 0)
        s = xd_fail(&e, XD_ESHAPE, "%s: the decoder reads node '%s', which %s does not have", path,
                    tap, x->path);
    else if (s == XD_OK && nn_model_node(&x->m, node)->bn_fold)
        s = xd_fail(&e, XD_EARG, "%s: the decoder reads '%s', whose batch norm inference folds "
                    "into it (its own output is never written); train the decoder on the norm's "
                    "output", path, tap);
    else if (s == XD_OK && !nn_qengine_writes(&x->m, node))
        s = xd_fail(&e, XD_EARG, "%s: the decoder reads '%s', which the int8 inference of %s "
                    "never writes (the layer before it computes what follows in one pass); train "
                    "the decoder on a layer's output",
                    path, tap, x->path);
    else if (s == XD_OK && nn_model_node(&x->m, node)->act_n != (size_t)d->in)
        s = xd_fail(&e, XD_ESHAPE, "%s: the decoder reads %d values of '%s', %s gives %zu", path,
                    d->in, tap, x->path, nn_model_node(&x->m, node)->act_n);
    free(tap);
    if (s == XD_OK &&
        (!(dec_out = xd_try_alloc(sizeof(int32_t) * (size_t)x->m.max_batch * (size_t)d->max_len)) ||
         !(dec_len = calloc((size_t)x->m.max_batch, sizeof(int)))))
        s = xd_fail(&e, XD_ENOMEM, "%s: no memory for the rationales of %d inputs", path,
                    x->m.max_batch);
    if (s != XD_OK) {
        if (d && d->param) {
            nn_seqdec_free(d);
            rat_vocab_free(rv);
        }
        free(d);
        free(rv);
        free(dec_out);
        free(dec_len);
        return out_err(err, s, &e);
    }
    if (x->dec) {
        nn_seqdec_free(x->dec);
        rat_vocab_free(x->rv);
        free(x->dec), free(x->rv), free(x->dec_out), free(x->dec_len);
    }
    x->dec = d, x->rv = rv, x->dec_node = node;
    x->dec_out = dec_out, x->dec_len = dec_len;
    if (x->need) nn_model_needs(&x->m, node, x->need);
    return XDISTILL_OK;
}

int xdistill_rationale(const xdistill_model *x, int slot, char *buf, size_t cap)
{
    if (!x || !x->dec || slot < 0 || slot >= x->m.max_batch || !buf || !cap) return -1;
    rat_decode(x->rv, x->dec_out + (size_t)slot * x->dec->max_len, x->dec_len[slot], buf, cap);
    return x->dec_len[slot];
}

xdistill_status xdistill_predict(xdistill_model *x, const xdistill_batch *b, int count,
                                 float *probs, xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    xd_status s = XD_OK;
    if (!x || !b || !probs)
        s = xd_fail(&e, XD_EARG, "xdistill_predict: %s is NULL",
                    !x ? "the model" : !b ? "the batch" : "probs (the output buffer)");
    else if (b->m != x || count < 1 || count > x->m.max_batch)
        s = xd_fail(&e, XD_EARG, "%s: predict needs a batch of this model and 1..%d inputs",
                    x->path, x->m.max_batch);
    else if (x->flops * count * (x->m.qengine ? 0.5 : 1.0) < SERIAL_FLOPS) {
        /* one thread (this thread's count, set and put back): the layers' loops then run
         * without a parallel region (xd_threads_split) */
#ifdef _OPENMP
        const int threads = omp_get_max_threads();
        omp_set_num_threads(1);
#endif
        s = predict_run(x, b, count, probs, &e);
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
    } else {
        s = predict_run(x, b, count, probs, &e);
    }
    return s == XD_OK ? XDISTILL_OK : out_err(err, s, &e);
}

void xdistill_batch_image_size(const xdistill_batch *b, int slot, int *height, int *width)
{
    const int ok = b && b->sizes && slot >= 0 && slot < b->m->m.max_batch;
    if (height) *height = ok ? b->sizes[2 * slot] : 0;
    if (width) *width = ok ? b->sizes[2 * slot + 1] : 0;
}

/* The output map covers what stage 1 keeps of the image: its centre square when the training
 * images are square (stage 2's resize and crop of that are not undone: a crop there is rare for a
 * segmentation model, whose map is meant to cover its whole input). */
xdistill_status xdistill_mask(const xdistill_batch *b, int slot, const float *probs,
                              unsigned char *mask, xdistill_error *err)
{
    xd_err e;
    xd_err_clear(&e);
    if (!b) return out_err(err, xd_fail(&e, XD_EARG, "xdistill_mask: the batch is NULL"), &e);
    const xdistill_model *x = b->m;
    int h, w;
    xdistill_batch_image_size(b, slot, &h, &w);
    xd_status s = XD_OK;
    if (!probs || !mask)
        s = xd_fail(&e, XD_EARG, "%s: xdistill_mask: %s is NULL", x->path, probs ? "mask" : "probs");
    else if (!h)
        s = xd_fail(&e, XD_EARG, "%s: a mask needs a slot that holds an image", x->path);
    else if (x->K > 256)
        s = xd_fail(&e, XD_EUNSUPPORTED, "%s: %d classes; a mask of bytes holds 256", x->path, x->K);
    if (s != XD_OK) return out_err(err, s, &e);
    int sh = h, sw = w; /* the region the map covers, at (y0, x0) */
    if (x->dh == x->dw && h != w) sh = sw = h < w ? h : w;
    const int y0 = (h - sh) / 2, x0 = (w - sw) / 2;
    int *col = malloc(sizeof *col * (size_t)w);
    if (!col)
        return out_err(err, xd_fail(&e, XD_ENOMEM, "%s: no memory for a mask %d wide", x->path, w),
                       &e);
    for (int j = 0; j < w; j++) {
        const int u = j - x0 < 0 ? 0 : j - x0 >= sw ? sw - 1 : j - x0;
        col[j] = (int)(((int64_t)2 * u + 1) * x->map_w / (2 * (int64_t)sw));
    }
    for (int i = 0; i < h; i++) {
        const int v = i - y0 < 0 ? 0 : i - y0 >= sh ? sh - 1 : i - y0;
        const int row = (int)(((int64_t)2 * v + 1) * x->map_h / (2 * (int64_t)sh));
        for (int j = 0; j < w; j++) {
            int best = 0;
            xdistill_top(probs + ((size_t)row * (size_t)x->map_w + (size_t)col[j]) * (size_t)x->K,
                         x->K, 1, &best);
            mask[(size_t)i * (size_t)w + (size_t)j] = (unsigned char)best;
        }
    }
    free(col);
    return XDISTILL_OK;
}

/* a goes before b: the greater, a NaN after every number */
static int before(float a, float b) { return a == a && (b != b || a > b); }

int xdistill_top(const float *probs, int n, int k, int *classes)
{
    if (!probs || !classes || n < 1 || k < 1 || k > n) return 0;
    /* insertion into a sorted list of k: fine for the few classes a head has */
    int have = 0;
    for (int c = 0; c < n; c++) {
        int at = have;
        while (at > 0 && before(probs[c], probs[classes[at - 1]])) at--;
        if (at >= k) continue;
        int last = have < k ? have++ : k - 1;
        memmove(classes + at + 1, classes + at, sizeof *classes * (size_t)(last - at));
        classes[at] = c;
    }
    return k;
}
