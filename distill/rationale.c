/* Rationale words and the decoder file (see rationale.h). */
#include "distill/rationale.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/safetensors.h"
#include "modalities/text/normalize.h"
#include "modalities/text/segment.h"

#define RAT_META_SHAPE "xdistill.rationale"
#define RAT_META_TAP "xdistill.rationale.tap"
#define RAT_META_VOCAB "xdistill.rationale.vocab"

/* Words only: no hashed n-grams, no bigrams of unspaced scripts, no punctuation tokens; every
 * word of the rationales the run sees counts. */
static txt_config words_config(int max_words)
{
    txt_config c = txt_config_default();
    c.buckets = 0;
    c.seg.bigrams = false;
    c.seg.keep_punct = false;
    c.min_count = 1;
    c.max_vocab = (uint32_t)max_words;
    return c;
}

xd_status rat_vocab_build(const char *const *texts, size_t n, const uint8_t *use, int max_words,
                          rat_vocab *rv, xd_err *e)
{
    memset(rv, 0, sizeof *rv);
    rv->cfg = words_config(max_words);
    const char **sel = xd_xmalloc((n + 1) * sizeof *sel);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!use || use[i]) sel[k++] = texts[i];
    xd_status s = txt_vocab_build(&rv->cfg, sel, NULL, k, &rv->v, e);
    free(sel);
    if (s == XD_OK && rv->v.n == 0)
        s = xd_fail(e, XD_EFORMAT, "the rationales hold no word");
    return s;
}

void rat_vocab_free(rat_vocab *rv)
{
    txt_vocab_free(&rv->v);
    memset(rv, 0, sizeof *rv);
}

int rat_vocab_size(const rat_vocab *rv) { return (int)rv->v.n + NN_SEQ_SPECIALS; }

typedef struct {
    const rat_vocab *rv;
    int32_t *ids;
    int max, n;
} enc_ctx;

static int enc_word(void *ctx, const char *tok, size_t len, txt_tok_kind kind)
{
    (void)kind;
    enc_ctx *c = ctx;
    if (c->n >= c->max) return 1;
    const int32_t id = txt_vocab_find(&c->rv->v, tok, len);
    c->ids[c->n++] = id >= 0 ? id + NN_SEQ_SPECIALS : NN_SEQ_UNK;
    return 0;
}

xd_status rat_encode(const rat_vocab *rv, const char *text, int32_t *ids, int max, int *n,
                     xd_err *e)
{
    char *norm;
    size_t norm_n;
    *n = 0;
    xd_status s = txt_normalize(text, strlen(text), &rv->cfg.norm, &norm, &norm_n, e);
    if (s != XD_OK) return s;
    enc_ctx c = {rv, ids, max, 0};
    txt_segment(norm, norm_n, &rv->cfg.seg, enc_word, &c);
    free(norm);
    *n = c.n;
    return XD_OK;
}

void rat_decode(const rat_vocab *rv, const int32_t *ids, int n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && at < cap; i++) {
        const int32_t id = ids[i] - NN_SEQ_SPECIALS;
        const char *w = id >= 0 && (uint32_t)id < rv->v.n ? txt_vocab_token(&rv->v, (uint32_t)id, NULL)
                                                          : "<unk>";
        at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? " " : "", w);
    }
}

/* The decoder's tensors as io_tensors over d's parameters. */
static void decoder_tensors(const nn_seqdec *d, io_tensor *t)
{
    for (int k = 0; k < NN_SEQ_TENSORS; k++)
        io_tensor_set(&t[k], nn_seq_tensor_names[k], IO_F32, d->shape[k][1] ? 2 : 1, d->shape[k],
                      d->param + d->off[k]);
}

xd_status rat_save(const char *path, const nn_seqdec *d, const rat_vocab *rv, const char *tap,
                   xd_err *e)
{
    io_tensor t[NN_SEQ_TENSORS];
    decoder_tensors(d, t);
    char shape[96];
    snprintf(shape, sizeof shape, "%d %d %d %d %d", d->in, d->hidden, d->embed, d->vocab,
             d->max_len);
    char *vocab = txt_vocab_text(&rv->v);
    const io_kv meta[] = {{"format", "xdistill"}, {RAT_META_SHAPE, shape}, {RAT_META_TAP, tap},
                          {RAT_META_VOCAB, vocab}};
    xd_status s = io_st_write(path, t, NN_SEQ_TENSORS, meta, sizeof meta / sizeof meta[0], e);
    free(vocab);
    return s;
}

xd_status rat_load(const char *path, int max_batch, nn_seqdec *d, rat_vocab *rv, char **tap,
                   xd_err *e)
{
    memset(d, 0, sizeof *d);
    memset(rv, 0, sizeof *rv);
    *tap = NULL;
    io_st_file *f;
    xd_status s = io_st_open(path, &f, e);
    if (s != XD_OK) return s;
    const char *shape = io_st_meta(f, RAT_META_SHAPE), *node = io_st_meta(f, RAT_META_TAP);
    const char *vocab = io_st_meta(f, RAT_META_VOCAB);
    int in, hidden, embed, V, len, used = 0;
    if (!shape || !node || !vocab ||
        sscanf(shape, "%d %d %d %d %d%n", &in, &hidden, &embed, &V, &len, &used) != 5 ||
        shape[used] != '\0')
        s = xd_fail(e, XD_EFORMAT, "%s: not a rationale decoder file (no valid '%s', '%s' and "
                                   "'%s' metadata)", path, RAT_META_SHAPE, RAT_META_TAP,
                    RAT_META_VOCAB);
    if (s == XD_OK) {
        rv->cfg = words_config(V - NN_SEQ_SPECIALS);
        s = txt_vocab_parse(path, vocab, strlen(vocab), &rv->v, e);
    }
    if (s == XD_OK && rat_vocab_size(rv) != V)
        s = xd_fail(e, XD_EFORMAT, "%s: the vocabulary holds %u words, the decoder %d tokens", path,
                    rv->v.n, V);
    /* the tensors the sizes promise are in the file before any memory is taken for them: the
     * file's own bytes bound what the sizes may ask for */
    if (s == XD_OK && (in < 1 || hidden < 1 || embed < 1 || V < 1))
        s = xd_fail(e, XD_EFORMAT, "%s: decoder sizes '%s' are not positive", path, shape);
    if (s == XD_OK) {
        int64_t want[NN_SEQ_TENSORS][2];
        nn_seqdec_shapes(in, hidden, embed, V, want);
        for (int k = 0; s == XD_OK && k < NN_SEQ_TENSORS; k++) {
            const io_tensor *t = io_st_find(f, nn_seq_tensor_names[k]);
            const int nd = want[k][1] ? 2 : 1;
            if (!t || t->ndim != nd || t->shape[0] != want[k][0] || (nd == 2 && t->shape[1] != want[k][1]))
                s = xd_fail(e, XD_ESHAPE, "%s: tensor '%s' is missing or not of the shape the "
                                          "decoder sizes '%s' give", path, nn_seq_tensor_names[k],
                            shape);
        }
    }
    if (s == XD_OK) s = nn_seqdec_init_greedy(d, in, hidden, embed, V, len, max_batch, e);
    if (s == XD_OK) {
        io_tensor t[NN_SEQ_TENSORS];
        decoder_tensors(d, t);
        s = io_st_check(f, t, NN_SEQ_TENSORS, e);
        for (int k = 0; s == XD_OK && k < NN_SEQ_TENSORS; k++)
            memcpy(d->param + d->off[k], io_st_find(f, nn_seq_tensor_names[k])->data,
                   d->n[k] * sizeof(float));
    }
    if (s == XD_OK && !(*tap = strdup(node)))
        s = xd_fail(e, XD_ENOMEM, "%s: no memory for the decoder's node name", path);
    io_st_close(f);
    if (s != XD_OK) {
        if (d->param) nn_seqdec_free(d);
        rat_vocab_free(rv);
    }
    return s;
}
