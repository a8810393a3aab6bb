/* Text -> token ids for embedding-bag encoders (fastText style), teacher or student.
 *
 * A text is normalised (normalize.h), segmented (segment.h), and each token gives, in order:
 *   1. its word id, B + vocab index, when the token is in the vocabulary;
 *   2. hashed ids in [0, B), B = cfg.buckets:
 *      - a word: every character n-gram of "<" word ">" with nmin <= n <= nmax, n counted in
 *        grapheme clusters or code points (cfg.unit), the markers each one unit; n-grams are
 *        listed by start, then by length; a lone "<" or ">" is never one. For "ab", 2..3:
 *        "<a", "<ab", "ab", "ab>", "b>".
 *      - a character, bigram, symbol or punctuation token: the one string "<" token ">".
 *      - a word longer than 256 units: the n-grams of its first 256 units, without ">" (this
 *        bounds the work per word: URLs, long numbers).
 *      - a word too short for any n-gram (nmin > its length + 2) and not in the vocabulary:
 *        "<" word ">" as well, so no token is silently dropped.
 *      The id of a string x is FNV-1a-32(UTF-8 bytes of x) mod B (hash.h).
 * So ids lie in [0, B + V): bucket ids first, which keeps them independent of the vocabulary,
 * then word ids. With B = 0 only vocabulary words give ids.
 *
 * Truncation: ids are written in the order above until max_ids are written; the rest are dropped
 * (the last token may be partly represented) and *truncated says so. Fixed-length rows of L ids
 * are padded with TXT_PAD = -1, which embedding bags skip.
 *
 * A tokenizer holds no mutable state: any number of threads may encode with it at once. */
#ifndef XD_TEXT_TOKENIZER_H
#define XD_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "modalities/text/config.h"
#include "modalities/text/vocab.h"

#define TXT_PAD (-1)

typedef struct {
    txt_config cfg;
    const txt_vocab *vocab; /* borrowed, may be NULL (hashed n-grams only); must outlive us */
} txt_tokenizer;

/* Checks cfg (txt_config_check) and that buckets + vocabulary fit the id range. */
xd_status txt_tokenizer_init(txt_tokenizer *t, const txt_config *cfg, const txt_vocab *vocab,
                             xd_err *e);

/* Rows of the embedding table: buckets + vocabulary size. */
uint32_t txt_num_ids(const txt_tokenizer *t);

/* Encodes text[0, len) into ids[0, *n_ids), *n_ids <= max_ids. truncated may be NULL.
 * Errors are those of txt_normalize ("byte OFF: invalid UTF-8 (...)"). */
xd_status txt_encode(const txt_tokenizer *t, const char *text, size_t len, int32_t *ids,
                     size_t max_ids, size_t *n_ids, bool *truncated, xd_err *e);

/* row[n_ids, L) = TXT_PAD. */
void txt_pad_row(int32_t *row, size_t n_ids, size_t L);
/* ids (N, L): row i keeps its first n_ids[i] ids, the rest become TXT_PAD. */
void txt_pad_rows(int32_t *ids, size_t N, size_t L, const size_t *n_ids);

/* Encodes N texts into ids (N, L), padded; texts are encoded in parallel (OpenMP, one row per
 * text, no shared writes) and the result equals encoding them one by one. lens NULL: texts are
 * NUL-terminated. *n_truncated (may be NULL) counts the rows that were cut. On error the first
 * failing text (lowest index) is named: "text 7: byte 3: invalid UTF-8 (...)". */
xd_status txt_encode_batch(const txt_tokenizer *t, const char *const *texts, const size_t *lens,
                           size_t N, size_t L, int32_t *ids, size_t *n_truncated, xd_err *e);

#endif
