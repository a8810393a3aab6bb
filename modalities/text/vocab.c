/* Vocabulary: counting, ordering, lookup, and the text file format (see vocab.h). */
#include "modalities/text/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/mem.h"
#include "io/file.h"
#include "modalities/text/hash.h"
#include "modalities/text/utf8.h"

#define TXT_STR_(x) #x
#define TXT_STR(x) TXT_STR_(x)

/* Largest vocabulary file read: TXT_VOCAB_MAX lines of ordinary words fit with room to spare. */
#define VOCAB_MAX_FILE_BYTES ((size_t)1 << 30)

/* ---------------------------------------------------------------------------------------------
 * Counter: open addressing over token bytes stored back to back. */

struct txt_counter {
    char *keys;        /* (keys_cap) token bytes back to back */
    size_t keys_len, keys_cap;
    size_t *off;       /* (n_cap) token i starts at keys[off[i]] */
    uint16_t *len;     /* (n_cap) its length, <= TXT_MAX_TOKEN_BYTES */
    uint64_t *count;   /* (n_cap) */
    size_t n, n_cap;
    uint32_t *slots;   /* (cap) 0 empty, else token index + 1 */
    size_t cap;        /* power of two, kept >= 2n */
};

txt_counter *txt_counter_new(void)
{
    txt_counter *c = xd_xcalloc(1, sizeof *c);
    c->cap = 1024;
    c->slots = xd_xcalloc(c->cap, sizeof *c->slots);
    return c;
}

void txt_counter_free(txt_counter *c)
{
    if (!c) return;
    free(c->keys);
    free(c->off);
    free(c->len);
    free(c->count);
    free(c->slots);
    free(c);
}

size_t txt_counter_size(const txt_counter *c) { return c->n; }

/* realloc that leaves *p untouched on failure */
static int grow(void **p, size_t count, size_t size)
{
    size_t bytes;
    if (xd_mul_size(count, size, &bytes)) return -1;
    void *q = realloc(*p, bytes);
    if (!q) return -1;
    *p = q;
    return 0;
}

static int counter_rehash(txt_counter *c)
{
    size_t cap = c->cap * 2;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < c->n; i++) {
        size_t h = txt_fnv1a(c->keys + c->off[i], c->len[i]) & (cap - 1);
        while (slots[h]) h = (h + 1) & (cap - 1);
        slots[h] = (uint32_t)(i + 1);
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return 0;
}

static xd_status counter_bump(txt_counter *c, const char *tok, size_t len, xd_err *e)
{
    size_t h = txt_fnv1a(tok, len) & (c->cap - 1);
    for (; c->slots[h]; h = (h + 1) & (c->cap - 1)) {
        size_t i = c->slots[h] - 1;
        if (c->len[i] == len && memcmp(c->keys + c->off[i], tok, len) == 0) {
            c->count[i]++;
            return XD_OK;
        }
    }
    if (c->n >= TXT_COUNTER_MAX)
        return xd_fail(e, XD_ENOMEM, "more than %zu distinct tokens to count", TXT_COUNTER_MAX);
    if (c->n == c->n_cap) {
        size_t cap = c->n_cap ? 2 * c->n_cap : 1024;
        if (grow((void **)&c->off, cap, sizeof *c->off) || grow((void **)&c->len, cap, sizeof *c->len) ||
            grow((void **)&c->count, cap, sizeof *c->count))
            return xd_fail(e, XD_ENOMEM, "no memory to count %zu tokens", cap);
        c->n_cap = cap;
    }
    if (c->keys_len + len > c->keys_cap) {
        size_t cap = c->keys_cap ? 2 * c->keys_cap : 1 << 16;
        while (cap < c->keys_len + len) cap *= 2;
        if (grow((void **)&c->keys, cap, 1))
            return xd_fail(e, XD_ENOMEM, "no memory for %zu bytes of tokens", cap);
        c->keys_cap = cap;
    }
    memcpy(c->keys + c->keys_len, tok, len);
    c->off[c->n] = c->keys_len;
    c->len[c->n] = (uint16_t)len;
    c->count[c->n] = 1;
    c->keys_len += len;
    c->slots[h] = (uint32_t)(++c->n);
    if (2 * c->n > c->cap && counter_rehash(c))
        return xd_fail(e, XD_ENOMEM, "no memory to index %zu tokens", c->n);
    return XD_OK;
}

typedef struct {
    txt_counter *c;
    xd_err *e;
    xd_status st;
} count_ctx;

static int count_token(void *ctx, const char *tok, size_t len, txt_tok_kind kind)
{
    (void)kind;
    count_ctx *k = ctx;
    if (len > TXT_MAX_TOKEN_BYTES) return 0;
    k->st = counter_bump(k->c, tok, len, k->e);
    return k->st != XD_OK;
}

xd_status txt_counter_add(txt_counter *c, const txt_config *cfg, const char *text, size_t len,
                          xd_err *e)
{
    char *norm;
    size_t norm_n;
    xd_status st = txt_normalize(text, len, &cfg->norm, &norm, &norm_n, e);
    if (st) return st;
    count_ctx k = {c, e, XD_OK};
    txt_segment(norm, norm_n, &cfg->seg, count_token, &k);
    free(norm);
    return k.st;
}

/* ---------------------------------------------------------------------------------------------
 * Vocabulary storage and index. */

void txt_vocab_free(txt_vocab *v)
{
    free(v->blob);
    free(v->offset);
    free(v->count);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

/* Allocates n entries and blob_bytes of token storage (sizes come from input: no abort). */
static xd_status vocab_alloc(txt_vocab *v, size_t n, size_t blob_bytes, xd_err *e)
{
    memset(v, 0, sizeof *v);
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    size_t off_bytes, count_bytes, slot_bytes;
    if (xd_mul_size(n + 1, sizeof *v->offset, &off_bytes) ||
        xd_mul_size(n ? n : 1, sizeof *v->count, &count_bytes) ||
        xd_mul_size(cap, sizeof *v->slots, &slot_bytes))
        return xd_fail(e, XD_ENOMEM, "vocabulary of %zu entries is too large", n);
    v->blob = xd_try_alloc(blob_bytes ? blob_bytes : 1);
    v->offset = xd_try_alloc(off_bytes);
    v->count = xd_try_alloc(count_bytes);
    v->slots = xd_try_alloc(slot_bytes);
    if (!v->blob || !v->offset || !v->count || !v->slots) {
        txt_vocab_free(v);
        return xd_fail(e, XD_ENOMEM, "no memory for a vocabulary of %zu entries", n);
    }
    memset(v->slots, 0, slot_bytes);
    v->cap = cap;
    v->offset[0] = 0;
    return XD_OK;
}

/* Adds token bytes as id v->n (room was allocated). Returns -1, or the id already holding it. */
static int32_t vocab_push(txt_vocab *v, const char *tok, size_t len, uint64_t count)
{
    size_t h = txt_fnv1a(tok, len) & (v->cap - 1);
    for (; v->slots[h]; h = (h + 1) & (v->cap - 1)) {
        uint32_t id = v->slots[h] - 1;
        size_t other_len = v->offset[id + 1] - v->offset[id] - 1;
        if (other_len == len && memcmp(v->blob + v->offset[id], tok, len) == 0) return (int32_t)id;
    }
    char *dst = v->blob + v->offset[v->n];
    memcpy(dst, tok, len);
    dst[len] = '\0';
    v->count[v->n] = count;
    v->offset[v->n + 1] = v->offset[v->n] + len + 1;
    v->slots[h] = ++v->n;
    return -1;
}

int32_t txt_vocab_find(const txt_vocab *v, const char *tok, size_t len)
{
    if (!v || v->n == 0 || len > TXT_MAX_TOKEN_BYTES) return -1;
    size_t h = txt_fnv1a(tok, len) & (v->cap - 1);
    for (; v->slots[h]; h = (h + 1) & (v->cap - 1)) {
        uint32_t id = v->slots[h] - 1;
        size_t other_len = v->offset[id + 1] - v->offset[id] - 1;
        if (other_len == len && memcmp(v->blob + v->offset[id], tok, len) == 0) return (int32_t)id;
    }
    return -1;
}

const char *txt_vocab_token(const txt_vocab *v, uint32_t id, size_t *len)
{
    if (id >= v->n) return NULL;
    if (len) *len = v->offset[id + 1] - v->offset[id] - 1;
    return v->blob + v->offset[id];
}

/* ---------------------------------------------------------------------------------------------
 * Building: filter by count, order, cut. */

typedef struct {
    const char *tok;
    size_t len;
    uint64_t count;
} entry;

/* count descending, then bytes ascending (a prefix before its extensions): a total order, since
 * tokens are distinct, so qsort's instability cannot show. */
static int entry_cmp(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    size_t m = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->tok, b->tok, m);
    if (r) return r;
    return (a->len > b->len) - (a->len < b->len);
}

xd_status txt_vocab_from_counts(const txt_counter *c, uint64_t min_count, size_t max_size,
                                txt_vocab *v, xd_err *e)
{
    memset(v, 0, sizeof *v);
    if (max_size == 0 || max_size > TXT_VOCAB_MAX) max_size = TXT_VOCAB_MAX;
    size_t kept = 0;
    for (size_t i = 0; i < c->n; i++) kept += c->count[i] >= min_count;
    entry *ents = xd_try_alloc((kept ? kept : 1) * sizeof *ents);
    if (!ents) return xd_fail(e, XD_ENOMEM, "no memory to sort %zu tokens", kept);
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->count[i] >= min_count) ents[k++] = (entry){c->keys + c->off[i], c->len[i], c->count[i]};
    qsort(ents, kept, sizeof *ents, entry_cmp);
    if (kept > max_size) kept = max_size;
    size_t blob = 0;
    for (size_t i = 0; i < kept; i++) blob += ents[i].len + 1;
    xd_status st = vocab_alloc(v, kept, blob, e);
    if (!st)
        for (size_t i = 0; i < kept; i++) vocab_push(v, ents[i].tok, ents[i].len, ents[i].count);
    free(ents);
    return st;
}

xd_status txt_vocab_build(const txt_config *cfg, const char *const *texts, const size_t *lens,
                          size_t n, txt_vocab *v, xd_err *e)
{
    memset(v, 0, sizeof *v);
    txt_counter *c = txt_counter_new();
    xd_status st = XD_OK;
    for (size_t i = 0; i < n && !st; i++) {
        st = txt_counter_add(c, cfg, texts[i], lens ? lens[i] : strlen(texts[i]), e);
        if (st) xd_err_prefix(e, "text %zu", i);
    }
    if (!st) st = txt_vocab_from_counts(c, cfg->min_count, cfg->max_vocab, v, e);
    txt_counter_free(c);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * File format. */

char *txt_vocab_text(const txt_vocab *v)
{
    size_t cap = sizeof TXT_VOCAB_HEADER + 1;
    for (uint32_t i = 0; i < v->n; i++) cap += v->offset[i + 1] - v->offset[i] + 24;
    char *buf = xd_xmalloc(cap), *p = buf;
    p += snprintf(p, cap, "%s\n", TXT_VOCAB_HEADER);
    for (uint32_t i = 0; i < v->n; i++)
        p += snprintf(p, cap - (size_t)(p - buf), "%s\t%llu\n", txt_vocab_token(v, i, NULL),
                      (unsigned long long)v->count[i]);
    return buf;
}

xd_status txt_vocab_save(const txt_vocab *v, const char *path, xd_err *e)
{
    io_atomic w;
    xd_status st = io_atomic_open(&w, path, e);
    if (st) return st;
    char *text = txt_vocab_text(v);
    st = io_atomic_write(&w, text, strlen(text), e);
    free(text);
    if (!st) st = io_atomic_commit(&w, e);
    if (st) io_atomic_abort(&w);
    return st;
}

/* Why a token cannot be a vocabulary entry, or NULL. Input is valid UTF-8. */
static const char *token_problem(const char *tok, size_t len, size_t *at)
{
    *at = 0;
    if (len == 0) return "empty token";
    if (len > TXT_MAX_TOKEN_BYTES) return "token longer than " TXT_STR(TXT_MAX_TOKEN_BYTES) " bytes";
    for (size_t i = 0; i < len;) {
        int32_t cp;
        utf8proc_ssize_t k =
            utf8proc_iterate((const uint8_t *)tok + i, (utf8proc_ssize_t)(len - i), &cp);
        *at = i;
        if (k <= 0) return "invalid UTF-8";
        if (txt_cp_is_space(cp) || utf8proc_category(cp) == UTF8PROC_CATEGORY_CC)
            return "white space or control character in token";
        i += (size_t)k;
    }
    return NULL;
}

/* Parses the decimal count field; -1 unless it is 1 .. 2^64-1 written with digits only. */
static int parse_count(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (v == 0) return -1;
    *out = v;
    return 0;
}

xd_status txt_vocab_parse(const char *path, const char *data, size_t n, txt_vocab *v, xd_err *e)
{
    memset(v, 0, sizeof *v);
    xd_status st = txt_utf8_check_lines(data, n, path, e);
    if (st) return st;
    /* pass 1: the number of lines bounds the entries, the file size bounds the blob */
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += data[i] == '\n';
    if (n && data[n - 1] != '\n') lines++;
    if (lines == 0) return xd_fail(e, XD_EFORMAT, "%s: empty file, expected the header '%s'", path,
                                   TXT_VOCAB_HEADER);
    if (lines - 1 > TXT_VOCAB_MAX)
        return xd_fail(e, XD_EFORMAT, "%s: %zu entries, more than the %u allowed", path, lines - 1,
                       (unsigned)TXT_VOCAB_MAX);
    st = vocab_alloc(v, lines - 1, n, e);
    if (st) return xd_err_prefix(e, "%s", path);

    size_t pos = 0, line = 0;
    while (pos < n) {
        line++;
        const char *nl = memchr(data + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - data) : n, next = nl ? end + 1 : n;
        if (end > pos && data[end - 1] == '\r') end--;
        const char *s = data + pos;
        size_t len = end - pos;
        pos = next;
        if (line == 1) {
            if (len != strlen(TXT_VOCAB_HEADER) || memcmp(s, TXT_VOCAB_HEADER, len) != 0) {
                st = xd_fail(e, XD_EFORMAT, "%s:1: not a vocabulary file (expected the header '%s')",
                             path, TXT_VOCAB_HEADER);
                goto fail;
            }
            continue;
        }
        const char *tab = memchr(s, '\t', len);
        if (!tab) {
            st = xd_fail(e, XD_EFORMAT, "%s:%zu: expected TOKEN<TAB>COUNT%s", path, line,
                         len ? "" : ", got an empty line");
            goto fail;
        }
        size_t tok_len = (size_t)(tab - s), at = 0;
        const char *why = token_problem(s, tok_len, &at);
        if (why) {
            st = xd_fail(e, XD_EFORMAT, "%s:%zu: byte %zu: %s", path, line, at, why);
            goto fail;
        }
        uint64_t count;
        if (parse_count(tab + 1, len - tok_len - 1, &count)) {
            st = xd_fail(e, XD_EFORMAT, "%s:%zu: count '%.*s' is not a whole number >= 1", path,
                         line, (int)(len - tok_len - 1 < 40 ? len - tok_len - 1 : 40), tab + 1);
            goto fail;
        }
        int32_t dup = vocab_push(v, s, tok_len, count);
        if (dup >= 0) {
            st = xd_fail(e, XD_EFORMAT, "%s:%zu: token '%.*s' repeats line %d", path, line,
                         (int)tok_len, s, dup + 2);
            goto fail;
        }
    }
    return XD_OK;
fail:
    txt_vocab_free(v);
    return st;
}

xd_status txt_vocab_load(const char *path, txt_vocab *v, xd_err *e)
{
    memset(v, 0, sizeof *v);
    void *data;
    size_t n;
    xd_status st = io_read_all(path, VOCAB_MAX_FILE_BYTES, &data, &n, e);
    if (st) return st;
    st = txt_vocab_parse(path, data, n, v, e);
    free(data);
    return st;
}
