/* Feeds (see feed.h). */
#include "distill/feed.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"

xd_status feed_image_opts(img_opts *o, const char *augment, const nn_model *m, xd_err *e)
{
    img_opts_default(o);
    o->pad = 0;
    o->flip = 0.0f;
    xd_status s;
    if (augment && *augment && (s = img_opts_parse(o, augment, e)) != XD_OK)
        return xd_err_prefix(e, "data.augment");
    /* the model's input decides the output size and channels */
    if (!o->size_h) {
        o->size_h = m->h;
        o->size_w = m->w;
    }
    o->crop_h = m->h;
    o->crop_w = m->w;
    o->channels = m->c;
    if (m->c != 1 && m->c != 3)
        return xd_fail(e, XD_ESHAPE, "model input has %d channels; images give 1 or 3", m->c);
    return XD_OK;
}

static xd_status open_image(feed *f, const io_dataset *ds, const char *split, const nn_model *m,
                            const char *augment, xd_err *e)
{
    char name[IO_DATASET_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/image", split);
    const io_tensor *t;
    xd_status s = io_dataset_require(ds, name, IO_U8, 4, &t, e);
    if (s != XD_OK) return s;
    if (m->tokens)
        return xd_fail(e, XD_ESHAPE, "%s: view 'image' feeds images, but the model reads token ids",
                       io_dataset_path(ds));
    f->kind = FEED_IMAGE;
    f->n = (size_t)t->shape[0];
    f->h = (int)t->shape[1];
    f->w = (int)t->shape[2];
    f->c = (int)t->shape[3];
    f->images = t->data;
    img_opts o;
    if ((s = feed_image_opts(&o, augment, m, e)) != XD_OK) return s;
    if ((s = img_batcher_make(&f->batcher, f->h, f->w, f->c, &o, e)) != XD_OK)
        return xd_err_prefix(e, "%s: %s", io_dataset_path(ds), name);
    f->in_size = (size_t)m->h * m->w * m->c;
    return XD_OK;
}

xd_status feed_text_tokenizer(txt_tokenizer *tok, const char *text, const nn_model *m, xd_err *e)
{
    txt_config cfg = txt_config_default();
    xd_status s = txt_config_parse_words(&cfg, text, e);
    if (s != XD_OK) return s;
    cfg.max_ids = (uint32_t)m->tokens;
    /* the model's embedding table must cover every id the tokenizer can produce */
    if ((s = txt_tokenizer_init(tok, &cfg, NULL, e)) != XD_OK) return s;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == NN_EMBBAG && (uint32_t)m->nodes[i].vocab < txt_num_ids(tok))
            return xd_fail(e, XD_ESHAPE, "model layer '%s' has vocab=%d, the text settings give %u ids "
                                         "(buckets); make them equal", m->nodes[i].name,
                           m->nodes[i].vocab, txt_num_ids(tok));
    return XD_OK;
}

static xd_status open_text(feed *f, const io_dataset *ds, const char *split, const char *lang,
                           const nn_model *m, const char *text, xd_err *e)
{
    if (!m->tokens)
        return xd_fail(e, XD_ESHAPE, "%s: view 'text.%s' feeds token ids, but the model reads images",
                       io_dataset_path(ds), lang);
    f->kind = FEED_TEXT;
    f->L = m->tokens;
    txt_tokenizer tok;
    xd_status s = feed_text_tokenizer(&tok, text, m, e);
    if (s != XD_OK) return s;
    /* which languages */
    const char *single[1] = {lang};
    const char **langs = single;
    size_t n_langs = 1;
    const io_strings *all = NULL;
    if (strcmp(lang, "*") == 0) {
        if ((s = io_dataset_require_strings(ds, "languages", &all, e)) != XD_OK) return s;
        n_langs = all->n;
        langs = xd_xcalloc(n_langs ? n_langs : 1, sizeof *langs);
        for (size_t l = 0; l < n_langs; l++) langs[l] = io_strings_get(all, l, NULL);
    }
    f->n_langs = (int)n_langs;
    for (size_t l = 0; l < n_langs && s == XD_OK; l++) {
        char name[IO_DATASET_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s/text.%s", split, langs[l]);
        const io_strings *strs;
        if ((s = io_dataset_require_strings(ds, name, &strs, e)) != XD_OK) break;
        if (l == 0) {
            f->n = strs->n;
            f->ids = xd_xmalloc(sizeof(int32_t) * n_langs * f->n * (size_t)f->L);
            f->present = xd_xcalloc(n_langs * f->n, 1);
        } else if (strs->n != f->n) {
            s = xd_fail(e, XD_EFORMAT, "%s: %s has %zu texts, the first language %zu",
                        io_dataset_path(ds), name, strs->n, f->n);
            break;
        }
        const char **texts = xd_xmalloc(sizeof(char *) * (f->n ? f->n : 1));
        size_t *lens = xd_xmalloc(sizeof(size_t) * (f->n ? f->n : 1));
        for (size_t i = 0; i < f->n; i++) {
            texts[i] = io_strings_get(strs, i, &lens[i]);
            f->present[l * f->n + i] = lens[i] > 0;
        }
        s = txt_encode_batch(&tok, texts, lens, f->n, (size_t)f->L, f->ids + l * f->n * f->L, NULL, e);
        if (s != XD_OK) xd_err_prefix(e, "%s: %s", io_dataset_path(ds), name);
        free(texts);
        free(lens);
    }
    if (langs != single) free(langs);
    f->in_size = (size_t)f->L;
    return s;
}

xd_status feed_open(feed *f, const io_dataset *ds, const char *split, const char *view,
                    const nn_model *m, const char *augment, const char *text, xd_err *e)
{
    memset(f, 0, sizeof *f);
    xd_status s;
    if (strcmp(view, "image") == 0)
        s = open_image(f, ds, split, m, augment, e);
    else if (strncmp(view, "text.", 5) == 0 && view[5])
        s = open_text(f, ds, split, view + 5, m, text, e);
    else
        s = xd_fail(e, XD_EARG, "unknown view '%s' (valid: image, text.LANG, text.*)", view);
    if (s != XD_OK) feed_close(f);
    return s;
}

void feed_close(feed *f)
{
    if (f->batcher) img_batcher_free(f->batcher);
    free(f->ids);
    free(f->present);
    memset(f, 0, sizeof *f);
}

size_t feed_example_bytes(const feed *f)
{
    return f->in_size * (f->kind == FEED_IMAGE ? sizeof(float) : sizeof(int32_t));
}

/* Row b of out = the ids of example i in language lang. */
static void copy_ids(const feed *f, size_t i, int lang, int32_t *out, int b)
{
    memcpy(out + (size_t)b * f->L, f->ids + ((size_t)lang * f->n + i) * f->L,
           sizeof(int32_t) * f->L);
}

xd_status feed_fill_lang(feed *f, const uint32_t *idx, int count, int lang, int32_t *out,
                         uint8_t *present, xd_err *e)
{
    if (f->kind != FEED_TEXT || lang < 0 || lang >= f->n_langs)
        return xd_fail(e, XD_EARG, "language %d of a feed with %d", lang, f->n_langs);
    for (int b = 0; b < count; b++) {
        size_t i = idx[b];
        if (i >= f->n) return xd_fail(e, XD_EARG, "example %zu out of range (%zu)", i, f->n);
        present[b] = f->present[(size_t)lang * f->n + i];
        copy_ids(f, i, lang, out, b);
    }
    return XD_OK;
}

xd_status feed_fill(feed *f, const uint32_t *idx, int count, int augment, uint64_t seed,
                    uint64_t epoch, void *out, xd_err *e)
{
    if (f->kind == FEED_IMAGE)
        return img_batcher_fill(f->batcher, f->images, f->n, idx, count, augment, seed, epoch, out, e);
    int32_t *dst = out;
    for (int b = 0; b < count; b++) {
        size_t i = idx[b];
        if (i >= f->n) return xd_fail(e, XD_EARG, "example %zu out of range (%zu)", i, f->n);
        int lang = 0;
        if (f->n_langs > 1) {
            /* a language that has this example's text: drawn when augmenting, else the first */
            int have[64], n_have = 0;
            for (int l = 0; l < f->n_langs && n_have < 64; l++)
                if (f->present[(size_t)l * f->n + i]) have[n_have++] = l;
            if (n_have) {
                lang = have[0];
                if (augment) {
                    xd_rng r = xd_rng_make(seed ^ xd_mix64(epoch + 0x51ull), i, XD_RNG_TEXT);
                    lang = have[xd_rng_below(&r, (uint32_t)n_have)];
                }
            }
        }
        copy_ids(f, i, lang, dst, b);
    }
    return XD_OK;
}
