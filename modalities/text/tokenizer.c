/* Token ids for embedding bags: vocabulary words plus hashed character n-grams (see tokenizer.h). */
#include "modalities/text/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "modalities/text/hash.h"
#include "modalities/text/normalize.h"
#include "modalities/text/segment.h"

/* A word's n-grams come from its first TXT_MAX_WORD_UNITS units; a longer word (a URL, a run of
 * digits) then has no end marker. This bounds the work per word and keeps the scratch on the
 * stack, so encoding allocates nothing but the normalised string. */
#define TXT_MAX_WORD_UNITS 256

xd_status txt_tokenizer_init(txt_tokenizer *t, const txt_config *cfg, const txt_vocab *vocab,
                             xd_err *e)
{
    xd_status st = txt_config_check(cfg, e);
    if (st) return st;
    if (vocab && vocab->n > TXT_VOCAB_MAX)
        return xd_fail(e, XD_EARG, "vocabulary of %u entries is larger than the limit %u",
                       (unsigned)vocab->n, (unsigned)TXT_VOCAB_MAX);
    t->cfg = *cfg;
    t->vocab = vocab;
    return XD_OK;
}

uint32_t txt_num_ids(const txt_tokenizer *t)
{
    return t->cfg.buckets + (t->vocab ? t->vocab->n : 0);
}

typedef struct {
    const txt_tokenizer *t;
    int32_t *ids; /* (max) */
    size_t max, n;
    bool truncated;
} enc_ctx;

/* Returns nonzero (stop) when the row is full. */
static int emit(enc_ctx *c, uint32_t id)
{
    if (c->n == c->max) {
        c->truncated = true;
        return 1;
    }
    c->ids[c->n++] = (int32_t)id;
    return 0;
}

/* End offsets of the first units of tok; returns how many (<= cap) and whether that was all. */
static size_t split_units(const char *tok, size_t len, txt_unit unit, size_t *end, size_t cap,
                          bool *whole)
{
    size_t m = 0, pos = 0;
    while (pos < len && m < cap) {
        if (unit == TXT_UNIT_GRAPHEME) {
            pos = txt_grapheme_next(tok, len, pos);
        } else {
            int32_t cp;
            utf8proc_ssize_t k =
                utf8proc_iterate((const uint8_t *)tok + pos, (utf8proc_ssize_t)(len - pos), &cp);
            pos += k > 0 ? (size_t)k : 1;
        }
        end[m++] = pos;
    }
    *whole = pos >= len;
    return m;
}

/* id of "<" tok ">" */
static uint32_t bracket_bucket(const char *tok, size_t len, uint32_t buckets)
{
    uint32_t h = txt_fnv1a_update(TXT_FNV_OFFSET, "<", 1);
    h = txt_fnv1a_update(h, tok, len);
    return txt_fnv1a_update(h, ">", 1) % buckets;
}

/* The n-grams of "<" word ">": bracketed unit 0 is "<", units 1..m are the word's, unit m+1 is
 * ">" (when the word was not cut). Returns nonzero when the row filled up; *count gets how many
 * were emitted. */
static int emit_word_ngrams(enc_ctx *c, const char *tok, size_t len, size_t *count)
{
    const txt_config *cfg = &c->t->cfg;
    size_t end[TXT_MAX_WORD_UNITS]; /* end[j-1] = byte end of word unit j */
    bool whole;
    size_t m = split_units(tok, len, cfg->unit, end, TXT_MAX_WORD_UNITS, &whole);
    size_t total = m + 1 + (whole ? 1 : 0);
    *count = 0;
    for (size_t s = 0; s < total; s++) {
        for (size_t n = cfg->nmin; n <= cfg->nmax && s + n <= total; n++) {
            bool at_end = whole && s + n == total;
            if (n == 1 && (s == 0 || at_end)) continue; /* a lone marker says nothing */
            size_t a = s == 0 ? 1 : s, b = at_end ? m : s + n - 1; /* word units a..b */
            size_t from = a == 1 ? 0 : end[a - 2], to = end[b - 1];
            uint32_t h = TXT_FNV_OFFSET;
            if (s == 0) h = txt_fnv1a_update(h, "<", 1);
            h = txt_fnv1a_update(h, tok + from, to - from);
            if (at_end) h = txt_fnv1a_update(h, ">", 1);
            if (emit(c, h % cfg->buckets)) return 1;
            ++*count;
        }
    }
    return 0;
}

static int encode_token(void *ctx, const char *tok, size_t len, txt_tok_kind kind)
{
    enc_ctx *c = ctx;
    uint32_t buckets = c->t->cfg.buckets;
    int32_t word = txt_vocab_find(c->t->vocab, tok, len);
    if (word >= 0 && emit(c, buckets + (uint32_t)word)) return 1;
    if (buckets == 0) return 0;
    if (kind == TXT_TOK_WORD) {
        size_t count;
        if (emit_word_ngrams(c, tok, len, &count)) return 1;
        if (count > 0 || word >= 0) return 0;
    }
    return emit(c, bracket_bucket(tok, len, buckets));
}

xd_status txt_encode(const txt_tokenizer *t, const char *text, size_t len, int32_t *ids,
                     size_t max_ids, size_t *n_ids, bool *truncated, xd_err *e)
{
    *n_ids = 0;
    if (truncated) *truncated = false;
    char *norm;
    size_t norm_n;
    xd_status st = txt_normalize(text ? text : "", text ? len : 0, &t->cfg.norm, &norm, &norm_n, e);
    if (st) return st;
    enc_ctx c = {.t = t, .ids = ids, .max = max_ids};
    txt_segment(norm, norm_n, &t->cfg.seg, encode_token, &c);
    free(norm);
    *n_ids = c.n;
    if (truncated) *truncated = c.truncated;
    return XD_OK;
}

void txt_pad_row(int32_t *row, size_t n_ids, size_t L)
{
    for (size_t j = n_ids; j < L; j++) row[j] = TXT_PAD;
}

void txt_pad_rows(int32_t *ids, size_t N, size_t L, const size_t *n_ids)
{
    for (size_t i = 0; i < N; i++) txt_pad_row(ids + i * L, n_ids[i] < L ? n_ids[i] : L, L);
}

xd_status txt_encode_batch(const txt_tokenizer *t, const char *const *texts, const size_t *lens,
                           size_t N, size_t L, int32_t *ids, size_t *n_truncated, xd_err *e)
{
    size_t first_bad = N, cut_rows = 0;
    /* each iteration writes its own row only; errors are reduced to the lowest failing index and
     * that text is encoded again below, so the message does not depend on thread timing */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 16) reduction(min : first_bad) reduction(+ : cut_rows)
#endif
    for (size_t i = 0; i < N; i++) {
        const char *text = texts[i];
        size_t len = lens ? lens[i] : text ? strlen(text) : 0, n_ids = 0;
        bool cut = false;
        int32_t *row = ids + i * L;
        if (txt_encode(t, text, len, row, L, &n_ids, &cut, NULL) != XD_OK) {
            if (i < first_bad) first_bad = i;
            n_ids = 0;
        }
        txt_pad_row(row, n_ids, L);
        cut_rows += cut;
    }
    if (n_truncated) *n_truncated = cut_rows;
    if (first_bad < N) {
        const char *text = texts[first_bad];
        size_t len = lens ? lens[first_bad] : text ? strlen(text) : 0, n_ids;
        xd_status st = txt_encode(t, text, len, ids + first_bad * L, L, &n_ids, NULL, e);
        txt_pad_row(ids + first_bad * L, 0, L);
        xd_err_prefix(e, "text %zu", first_bad);
        return st;
    }
    return XD_OK;
}
