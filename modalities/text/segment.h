/* Segmentation of normalised text into grapheme clusters and tokens.
 *
 * Grapheme clusters are the extended clusters of UAX #29 (utf8proc_grapheme_break_stateful):
 * an emoji ZWJ sequence, a flag, a base letter with its combining marks, a Hangul L+V+T jamo
 * sequence are each one cluster. Every cluster is classed by its first code point:
 *   word      Unicode categories L*, M*, N* outside the unspaced scripts below; consecutive word
 *             clusters form one TXT_TOK_WORD ("hello", "한국어", "नमस्ते", "123abc")
 *   unspaced  L*, M*, N* in a script written without spaces between words (txt_cp_unspaced);
 *             a run of them yields each cluster as TXT_TOK_CHAR and each adjacent pair as
 *             TXT_TOK_BIGRAM, in the order  c0, c1, c0c1, c2, c1c2, ...
 *   symbol    S*, Co, Cn, Cs (emoji, currency, maths, U+FFFD): one TXT_TOK_SYMBOL per cluster
 *   punct     P*: a separator, also a TXT_TOK_PUNCT when keep_punct is set
 *   space     Z*, Cc, Cf: a separator only
 * So words split at white space and punctuation ("don't" -> "don", "t"); letters, marks and
 * digits stay together. */
#ifndef XD_TEXT_SEGMENT_H
#define XD_TEXT_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TXT_TOK_WORD,
    TXT_TOK_CHAR,
    TXT_TOK_BIGRAM,
    TXT_TOK_SYMBOL,
    TXT_TOK_PUNCT,
    TXT_TOK_KIND_COUNT
} txt_tok_kind;

extern const char *const txt_tok_kind_names[TXT_TOK_KIND_COUNT];

typedef struct {
    bool bigrams;    /* TXT_TOK_BIGRAM for unspaced runs (unigrams alone when off) */
    bool keep_punct; /* punctuation clusters become TXT_TOK_PUNCT tokens */
} txt_seg_opts;

/* Receives each token (bytes tok[0, len), within the segmented string); a nonzero return stops
 * the segmentation and is passed back by txt_segment. */
typedef int (*txt_token_fn)(void *ctx, const char *tok, size_t len, txt_tok_kind kind);

/* End (exclusive byte offset) of the grapheme cluster that starts at pos < n. Bytes that are not
 * valid UTF-8 are clusters of one byte (normalised text has none). */
size_t txt_grapheme_next(const char *s, size_t n, size_t pos);
size_t txt_grapheme_count(const char *s, size_t n);

/* True for code points of scripts written without spaces between words. The ranges:
 *   Han       2E80..2FDF (radicals), 3005..3007, 3021..3029, 3038..303B, 3400..4DBF,
 *             4E00..9FFF, F900..FAFF, 20000..3FFFF (extensions B..H, compatibility supplement)
 *   Kana      3040..309F Hiragana, 30A0..30FF Katakana (with the prolonged sound mark),
 *             31F0..31FF, FF66..FF9F halfwidth, 1AFF0..1B16F (kana supplements and extensions)
 *   Bopomofo  3100..312F, 31A0..31BF
 *   Thai 0E00..0E7F, Lao 0E80..0EFF, Myanmar 1000..109F A9E0..A9FF AA60..AA7F,
 *   Khmer 1780..17FF 19E0..19FF, Tai Le 1950..197F, New Tai Lue 1980..19DF,
 *   Tai Tham 1A20..1AAF, Tai Viet AA80..AADF
 * Hangul is not among them: Korean puts spaces between words. */
bool txt_cp_unspaced(int32_t cp);

/* Calls fn for each token of s[0, n) in text order. Returns 0, or fn's nonzero value if it
 * stopped early. */
int txt_segment(const char *s, size_t n, const txt_seg_opts *o, txt_token_fn fn, void *ctx);

#endif
