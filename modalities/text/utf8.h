/* UTF-8 validation and repair for untrusted text.
 *
 * Every text that enters xdistill (manifests, label files, vocabularies) passes through here
 * before anything else looks at it. The well-formed sequences are those of Unicode Table 3-7:
 *   00..7F | C2..DF 80..BF | E0 A0..BF 80..BF | E1..EC 80..BF 80..BF | ED 80..9F 80..BF
 *   | EE..EF 80..BF 80..BF | F0 90..BF 80..BF 80..BF | F1..F3 (80..BF){3} | F4 80..8F 80..BF 80..BF
 * so overlong forms, UTF-16 surrogates (U+D800..U+DFFF) and values above U+10FFFF are rejected.
 * An error names the byte offset of the first byte of the bad sequence. Repair replaces each
 * "maximal subpart" of a bad sequence with one U+FFFD, the practice the Unicode standard
 * recommends (so results match other conforming decoders byte for byte). */
#ifndef XD_TEXT_UTF8_H
#define XD_TEXT_UTF8_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Longest text (in bytes) any txt_ function accepts; longer input is an XD_EARG error. */
#define TXT_MAX_TEXT_BYTES ((size_t)1 << 26)

typedef enum {
    TXT_UTF8_OK = 0,
    TXT_UTF8_BAD_LEAD,   /* F8..FF: never part of UTF-8 */
    TXT_UTF8_LONE_CONT,  /* 80..BF where a sequence should start */
    TXT_UTF8_TRUNCATED,  /* the input ends inside a sequence */
    TXT_UTF8_INCOMPLETE, /* a sequence cut short by a byte that is not 80..BF */
    TXT_UTF8_OVERLONG,   /* C0, C1, E0 80..9F, F0 80..8F: a longer form than needed */
    TXT_UTF8_SURROGATE,  /* ED A0..BF: U+D800..U+DFFF */
    TXT_UTF8_TOO_LARGE,  /* F4 90..BF, F5..F7: above U+10FFFF */
    TXT_UTF8_FAULT_COUNT
} txt_utf8_fault;

extern const char *const txt_utf8_fault_names[TXT_UTF8_FAULT_COUNT];

/* Returns n when s[0, n) is valid UTF-8, else the byte offset where the first bad sequence starts;
 * *fault (may be NULL) says why (TXT_UTF8_OK when valid). */
size_t txt_validate(const void *s, size_t n, txt_utf8_fault *fault);

/* XD_OK, or XD_EFORMAT with "WHERE: byte OFF: invalid UTF-8 (REASON; bytes xx yy)". where names
 * the text, e.g. "data.tsv:17" (file and line); NULL leaves the prefix out. */
xd_status txt_utf8_check(const void *s, size_t n, const char *where, xd_err *e);

/* Same for a whole file held in memory: the message gives the line (1-based), the byte within
 * that line (0-based) and the offset in the file: "PATH:LINE: byte COL (file offset OFF): ...". */
xd_status txt_utf8_check_lines(const void *buf, size_t n, const char *path, xd_err *e);

/* Copies s into a new NUL-terminated buffer (free with free()) in which every maximal subpart of
 * an ill-formed sequence became U+FFFD. *n_replaced (may be NULL) counts the replacements. */
xd_status txt_utf8_replace(const void *s, size_t n, char **out, size_t *out_n, size_t *n_replaced,
                           xd_err *e);

/* A JSON string of s for what we write as JSON (a path, a name, a text: any bytes), with every
 * maximal subpart of an ill-formed sequence made U+FFFD as txt_utf8_replace does: jansson takes
 * only valid UTF-8, and its json_string of anything else is NULL, which json_object_set_new
 * drops without a word. NULL only for s NULL, no memory, or over TXT_MAX_TEXT_BYTES. */
json_t *txt_json_string(const char *s);

/* Appends the UTF-8 form of a valid code point to dst (room for 4 bytes); returns bytes written. */
size_t txt_utf8_put(char *dst, int32_t cp);

/* White space for splitting and collapsing: categories Zs, Zl, Zp and the control characters
 * TAB, LF, VT, FF, CR and NEL (U+0085). */
bool txt_cp_is_space(int32_t cp);

/* True when the NUL-terminated s holds nothing but white space (txt_cp_is_space), so a text of
 * U+3000 and U+00A0 is as blank as "" or " "; an ill-formed sequence counts as not blank. */
bool txt_is_blank(const char *s);

#endif
