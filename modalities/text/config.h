/* Text pipeline settings: normalisation, segmentation, features and vocabulary, in one struct.
 *
 * Recipes set them as key=value words ("buckets=32768", "unit=codepoint"); the parser is one
 * table (config.c), reports unknown keys by name, and checks each value's range. txt_config_describe
 * writes the settings back in the same words, for checkpoint metadata. */
#ifndef XD_TEXT_CONFIG_H
#define XD_TEXT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "modalities/text/normalize.h"
#include "modalities/text/segment.h"

/* Units that character n-grams count in. */
typedef enum { TXT_UNIT_GRAPHEME, TXT_UNIT_CODEPOINT, TXT_UNIT_COUNT } txt_unit;
extern const char *const txt_unit_names[TXT_UNIT_COUNT];

/* Most vocabulary entries; with TXT_MAX_BUCKETS, every id fits in an int32 with room to spare. */
#define TXT_VOCAB_MAX ((uint32_t)1 << 24)
#define TXT_MAX_BUCKETS ((uint32_t)1 << 28)
#define TXT_MAX_NGRAM 16u

typedef struct {
    txt_norm_opts norm;
    txt_seg_opts seg;
    uint32_t buckets;   /* hashed n-gram rows; 0: vocabulary words only */
    uint32_t nmin, nmax; /* character n-gram lengths, counted in `unit`s, markers included */
    txt_unit unit;
    uint32_t min_count; /* vocabulary: fewest occurrences to get a word id */
    uint32_t max_vocab; /* vocabulary: most entries, 0 = TXT_VOCAB_MAX */
    uint32_t max_ids;   /* ids per text in fixed-length rows (L) */
} txt_config;

/* Defaults: NFKC + casefold, accents kept, white space collapsed, invalid UTF-8 is an error,
 * bigrams on, punctuation dropped, buckets 65536, n-grams 2..4 grapheme clusters, min_count 2,
 * max_vocab 100000, max_ids 256. */
txt_config txt_config_default(void);

/* Sets one key from its text value. XD_EARG for an unknown key (the message lists the known
 * ones) or a value that does not parse or is out of range. */
xd_status txt_config_set(txt_config *c, const char *key, const char *value, xd_err *e);

/* Applies "key=value" items in order, then txt_config_check. */
xd_status txt_config_parse(txt_config *c, const char *const *items, size_t n, xd_err *e);

/* The one way to cut a recipe's `text:` setting into items: blanks (space, tab, CR, LF, FF, VT),
 * ';' or ','. */
#define TXT_CONFIG_SEPS " \t\r\n\f\v;,"
/* Applies the items of words (cut at TXT_CONFIG_SEPS) with txt_config_parse. */
xd_status txt_config_parse_words(txt_config *c, const char *words, xd_err *e);

/* Cross-field checks (nmin <= nmax). */
xd_status txt_config_check(const txt_config *c, xd_err *e);

/* "key=value key=value ..." for every key, into buf (cut to cap, always NUL-terminated);
 * returns the length the full text needs. */
size_t txt_config_describe(const txt_config *c, char *buf, size_t cap);

#endif
