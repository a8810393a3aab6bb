/* Building HTML text: a growing buffer, printf into it, escaping and data: URIs.
 *
 * Every string that comes from outside the program (run names, class names, texts, paths) goes
 * through rp_escape before it is put into the page, so no data can open a tag or end an
 * attribute. */
#ifndef XD_REPORT_HTML_H
#define XD_REPORT_HTML_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *s;
    size_t n, cap; /* s[n] is always NUL */
} rp_buf;

void rp_buf_free(rp_buf *b);
void rp_put(rp_buf *b, const char *s);
void rp_putn(rp_buf *b, const char *s, size_t n);
void rp_printf(rp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s with & < > " ' replaced by entities (text and attribute values alike). */
void rp_escape(rp_buf *b, const char *s);
/* A count in at most four characters, for a cell of a drawing: "7720", "134k", "1.6M", "12G"
 * (rounded; exact below 10000). */
void rp_short_count(rp_buf *b, uint64_t c);
/* "data:MIME;base64,..." of n bytes. */
void rp_data_uri(rp_buf *b, const char *mime, const void *data, size_t n);

#endif
