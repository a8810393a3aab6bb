/* Grapheme clusters, script classes and tokens (see segment.h for the rules). */
#include "modalities/text/segment.h"

#include <assert.h>
#include <utf8proc.h>

const char *const txt_tok_kind_names[] = {
    [TXT_TOK_WORD] = "word",
    [TXT_TOK_CHAR] = "char",
    [TXT_TOK_BIGRAM] = "bigram",
    [TXT_TOK_SYMBOL] = "symbol",
    [TXT_TOK_PUNCT] = "punct",
};
static_assert(sizeof txt_tok_kind_names / sizeof txt_tok_kind_names[0] == TXT_TOK_KIND_COUNT,
              "txt_tok_kind_names must name every token kind");

/* Decodes one code point at s[pos]; -1 with length 1 for a byte that is not valid UTF-8. */
static int32_t decode_at(const char *s, size_t n, size_t pos, size_t *len)
{
    int32_t cp;
    utf8proc_ssize_t k =
        utf8proc_iterate((const uint8_t *)s + pos, (utf8proc_ssize_t)(n - pos), &cp);
    if (k <= 0) {
        *len = 1;
        return -1;
    }
    *len = (size_t)k;
    return cp;
}

size_t txt_grapheme_next(const char *s, size_t n, size_t pos)
{
    size_t len;
    int32_t prev = decode_at(s, n, pos, &len);
    pos += len;
    if (prev < 0) return pos;
    /* a break resets the state, so starting at any cluster boundary with 0 is exact */
    int32_t state = 0;
    while (pos < n) {
        int32_t cp = decode_at(s, n, pos, &len);
        if (cp < 0 || utf8proc_grapheme_break_stateful(prev, cp, &state)) break;
        prev = cp;
        pos += len;
    }
    return pos;
}

size_t txt_grapheme_count(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t pos = 0; pos < n; pos = txt_grapheme_next(s, n, pos)) count++;
    return count;
}

typedef struct {
    int32_t lo, hi;
} cp_range;

/* Sorted and disjoint, for the binary search (the list is in segment.h). */
static const cp_range unspaced_ranges[] = {
    {0x0E00, 0x0E7F},   {0x0E80, 0x0EFF},   {0x1000, 0x109F},   {0x1780, 0x17FF},
    {0x1950, 0x197F},   {0x1980, 0x19DF},   {0x19E0, 0x19FF},   {0x1A20, 0x1AAF},
    {0x2E80, 0x2FDF},   {0x3005, 0x3007},   {0x3021, 0x3029},   {0x3038, 0x303B},
    {0x3040, 0x309F},   {0x30A0, 0x30FF},   {0x3100, 0x312F},   {0x31A0, 0x31BF},
    {0x31F0, 0x31FF},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA9E0, 0xA9FF},
    {0xAA60, 0xAA7F},   {0xAA80, 0xAADF},   {0xF900, 0xFAFF},   {0xFF66, 0xFF9F},
    {0x1AFF0, 0x1B16F}, {0x20000, 0x3FFFF},
};

bool txt_cp_unspaced(int32_t cp)
{
    size_t lo = 0, hi = sizeof unspaced_ranges / sizeof unspaced_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < unspaced_ranges[mid].lo) hi = mid;
        else if (cp > unspaced_ranges[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

typedef enum { CLS_SPACE, CLS_WORD, CLS_UNSPACED, CLS_SYMBOL, CLS_PUNCT } cluster_class;

static cluster_class classify(int32_t cp)
{
    if (cp < 0) return CLS_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return txt_cp_unspaced(cp) ? CLS_UNSPACED : CLS_WORD;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return CLS_PUNCT;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF:
        return CLS_SPACE;
    default: /* S*, Co, Cn, Cs */
        return CLS_SYMBOL;
    }
}

int txt_segment(const char *s, size_t n, const txt_seg_opts *o, txt_token_fn fn, void *ctx)
{
    const size_t none = (size_t)-1;
    size_t word_start = none, prev_char = none;
    int r = 0;
    for (size_t pos = 0; pos < n && !r;) {
        size_t end = txt_grapheme_next(s, n, pos), len;
        cluster_class c = classify(decode_at(s, n, pos, &len));
        if (c != CLS_WORD && word_start != none) {
            r = fn(ctx, s + word_start, pos - word_start, TXT_TOK_WORD);
            word_start = none;
            if (r) break;
        }
        if (c != CLS_UNSPACED) prev_char = none;
        switch (c) {
        case CLS_WORD:
            if (word_start == none) word_start = pos;
            break;
        case CLS_UNSPACED:
            r = fn(ctx, s + pos, end - pos, TXT_TOK_CHAR);
            if (!r && o->bigrams && prev_char != none)
                r = fn(ctx, s + prev_char, end - prev_char, TXT_TOK_BIGRAM);
            prev_char = pos;
            break;
        case CLS_SYMBOL:
            r = fn(ctx, s + pos, end - pos, TXT_TOK_SYMBOL);
            break;
        case CLS_PUNCT:
            if (o->keep_punct) r = fn(ctx, s + pos, end - pos, TXT_TOK_PUNCT);
            break;
        case CLS_SPACE:
            break;
        }
        pos = end;
    }
    if (!r && word_start != none) r = fn(ctx, s + word_start, n - word_start, TXT_TOK_WORD);
    return r;
}
