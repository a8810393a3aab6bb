/* Text normalisation before segmentation: one canonical spelling for text that reads the same.
 *
 * Steps, in order (each documented where it happens in normalize.c):
 *   1. UTF-8 check: invalid input is an error naming the byte offset, or (replace_invalid) each
 *      bad subpart becomes U+FFFD.
 *   2. Invisible characters: white-space controls (TAB LF VT FF CR NEL) and ZERO WIDTH SPACE
 *      become a space (ZWSP separates words in Thai and Khmer); other control characters, soft
 *      hyphens, bidi marks, BOMs, word joiners and variation selectors are dropped (they only
 *      change rendering, and would make the same word hash differently). ZWJ and ZWNJ stay: they
 *      build emoji sequences and change spelling in Persian and Indic scripts. A run of more
 *      than 30 combining marks (code points of a nonzero combining class, one after another)
 *      keeps its first 30: no language needs more (UAX #15's stream-safe limit), and step 3's
 *      canonical reordering takes time quadratic in a run's length ("Zalgo" text of 40,000
 *      marks took a minute).
 *   3. utf8proc: NFKC (compat) or NFC, with Unicode full case folding (casefold): "Straße" ->
 *      "strasse", "ＡＢＣ" -> "abc", conjoining Hangul jamo -> syllables.
 *   4. strip_accents: decompose, drop combining diacritics (U+0300..036F, 1AB0..1AFF, 1DC0..1DFF,
 *      FE20..FE2F), recompose: "café" -> "cafe". Deliberately not utf8proc's STRIPMARK, which
 *      drops every mark: Devanagari vowel signs, Thai vowels and the kana voicing mark (が -> か)
 *      would be lost. Letters that are distinct in their language lose their mark too (Russian
 *      "й" -> "и"), which is why the option is off by default.
 *   5. collapse_space: runs of white space become one ' ', none at either end. */
#ifndef XD_TEXT_NORMALIZE_H
#define XD_TEXT_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct {
    bool compat;          /* NFKC (true) or NFC */
    bool casefold;        /* Unicode full case folding */
    bool strip_accents;   /* drop combining diacritics (see step 4) */
    bool collapse_space;  /* one space between words, none at the ends */
    bool replace_invalid; /* invalid UTF-8 -> U+FFFD instead of an error */
} txt_norm_opts;

/* compat, casefold and collapse_space on; accents kept; invalid UTF-8 is an error. */
txt_norm_opts txt_norm_defaults(void);

/* Normalises in[0, n) into a new NUL-terminated string *out of *out_n bytes (free with free()).
 * Errors: XD_EFORMAT "byte OFF: invalid UTF-8 (...)" (callers add the file and line with
 * xd_err_prefix), XD_EARG when n > TXT_MAX_TEXT_BYTES, XD_ENOMEM. */
xd_status txt_normalize(const char *in, size_t n, const txt_norm_opts *o, char **out, size_t *out_n,
                        xd_err *e);

#endif
