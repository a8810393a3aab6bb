/* Vocabulary: the tokens that get their own id, counted over a corpus.
 *
 * Building: a txt_counter counts the tokens of many texts (normalised and segmented with the same
 * txt_config the encoder uses); txt_vocab_from_counts keeps those seen at least min_count times
 * and orders them by count (descending), ties by their bytes (memcmp order, a prefix first), so
 * the same corpus gives the same ids in any text order. Then the first max_size are kept.
 *
 * File format (UTF-8 text, written atomically):
 *   line 1      "# xdistill text vocabulary v1"
 *   line 2+k    token k, one TAB, its count (decimal, >= 1)    -- token k gets id k
 * Tokens are non-empty, at most TXT_MAX_TOKEN_BYTES, valid UTF-8, without white space or control
 * characters, and unique. A final newline is optional; CRLF line ends are accepted. Loading checks
 * all of it and names the line of the first problem. Order on load is taken as is, so a
 * hand-edited file keeps its ids. */
#ifndef XD_TEXT_VOCAB_H
#define XD_TEXT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "modalities/text/config.h"

/* Longer tokens are never counted nor given an id (they still get hashed n-grams). */
#define TXT_MAX_TOKEN_BYTES 256
/* Most distinct tokens a counter holds before it reports the corpus as too varied. */
#define TXT_COUNTER_MAX ((size_t)1 << 26)
#define TXT_VOCAB_HEADER "# xdistill text vocabulary v1"

typedef struct {
    uint32_t n;        /* entries; ids 0 .. n-1 */
    char *blob;        /* (bytes) tokens back to back, each followed by a NUL */
    size_t *offset;    /* (n + 1) token i is blob[offset[i], offset[i+1] - 1) */
    uint64_t *count;   /* (n) */
    uint32_t *slots;   /* (cap) open-addressing index: 0 empty, else id + 1 */
    size_t cap;        /* power of two, >= 2n */
} txt_vocab;

typedef struct txt_counter txt_counter;

txt_counter *txt_counter_new(void);
void txt_counter_free(txt_counter *c);
/* Normalises text with cfg and counts its tokens. */
xd_status txt_counter_add(txt_counter *c, const txt_config *cfg, const char *text, size_t len,
                          xd_err *e);
size_t txt_counter_size(const txt_counter *c);

/* Vocabulary of tokens counted >= min_count, in count order, at most max_size (0: TXT_VOCAB_MAX). */
xd_status txt_vocab_from_counts(const txt_counter *c, uint64_t min_count, size_t max_size,
                                txt_vocab *v, xd_err *e);

/* Counts texts[0, n) (lens NULL: NUL-terminated) and keeps cfg->min_count, cfg->max_vocab.
 * An error names the text by index: "text 12: byte 3: invalid UTF-8 (...)". */
xd_status txt_vocab_build(const txt_config *cfg, const char *const *texts, const size_t *lens,
                          size_t n, txt_vocab *v, xd_err *e);

/* Id of a token, or -1. */
int32_t txt_vocab_find(const txt_vocab *v, const char *tok, size_t len);
/* Token of an id (NUL-terminated), its length in *len (may be NULL). */
const char *txt_vocab_token(const txt_vocab *v, uint32_t id, size_t *len);

/* The file's text (a new string), which txt_vocab_parse reads back. */
char *txt_vocab_text(const txt_vocab *v);
xd_status txt_vocab_save(const txt_vocab *v, const char *path, xd_err *e);
xd_status txt_vocab_load(const char *path, txt_vocab *v, xd_err *e);
/* The same on n bytes of file contents in memory, path standing for the file in messages. */
xd_status txt_vocab_parse(const char *path, const char *data, size_t n, txt_vocab *v, xd_err *e);
void txt_vocab_free(txt_vocab *v);

#endif
