/* Status names and the error-message helpers (see status.h). */
#include "core/status.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {
    [XD_OK] = "ok",
    [XD_EIO] = "i/o error",
    [XD_EFORMAT] = "bad format",
    [XD_EARG] = "bad argument",
    [XD_ESHAPE] = "shape mismatch",
    [XD_ENUM] = "numerical error",
    [XD_ENOMEM] = "out of memory",
    [XD_EUNSUPPORTED] = "unsupported",
};
static_assert(sizeof status_names / sizeof status_names[0] == XD_STATUS_COUNT,
              "status_names must name every xd_status");

const char *xd_status_name(xd_status s)
{
    return (s >= 0 && s < XD_STATUS_COUNT) ? status_names[s] : "unknown status";
}

/* Is byte c the start of a UTF-8 character (not a continuation byte)? */
static int char_start(char c) { return ((unsigned char)c & 0xC0) != 0x80; }

size_t xd_escape_control(unsigned char c, char out[5])
{
    if (c >= 0x20 && c != 0x7f) {
        out[0] = (char)c;
        out[1] = '\0';
        return 1;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        out[0] = '\\';
        out[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        out[2] = '\0';
        return 2;
    }
    return (size_t)snprintf(out, 5, "\\x%02x", c);
}

/* put_msg's cut, of text with nothing left to escape */
static void put_line(char msg[XD_ERR_LEN], const char *text, size_t len)
{
    static const char mark[] = " [...] ";
    if (len < XD_ERR_LEN) {
        memcpy(msg, text, len);
        msg[len] = '\0';
        return;
    }
    size_t room = XD_ERR_LEN - 1 - (sizeof mark - 1), head = room / 2, tail = room - head;
    while (head && !char_start(text[head])) head--;
    size_t from = len - tail;
    while (from < len && !char_start(text[from])) from++;
    memcpy(msg, text, head);
    memcpy(msg + head, mark, sizeof mark - 1);
    memcpy(msg + head + sizeof mark - 1, text + from, len - from);
    msg[head + sizeof mark - 1 + len - from] = '\0';
}

/* Puts text (len bytes) into msg on one line (control characters escaped): whole when it fits,
 * else its head and its tail, cut at character starts, around a marker, so that where (the
 * start) and why (the end) both stay. */
static void put_msg(char msg[XD_ERR_LEN], const char *text, size_t len)
{
    size_t controls = 0;
    for (size_t i = 0; i < len; i++) controls += (unsigned char)text[i] < 0x20 || text[i] == 0x7f;
    char *esc = controls ? malloc(len + 3 * controls + 1) : NULL;
    if (!esc) {
        put_line(msg, text, len); /* nothing to escape, or no memory to escape it in */
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += xd_escape_control((unsigned char)text[i], esc + n);
    put_line(msg, esc, n);
    free(esc);
}

void xd_vformat(char out[XD_ERR_LEN], const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    char first[XD_ERR_LEN];
    int n = vsnprintf(first, sizeof first, fmt, ap);
    char *whole = n >= XD_ERR_LEN ? malloc((size_t)n + 1) : NULL;
    if (whole) vsnprintf(whole, (size_t)n + 1, fmt, again);
    va_end(again);
    if (whole) put_msg(out, whole, (size_t)n);
    else put_msg(out, first, n < 0 ? 0 : strnlen(first, sizeof first - 1));
    free(whole);
}

xd_status xd_fail(xd_err *e, xd_status code, const char *fmt, ...)
{
    if (!e) return code;
    va_list ap;
    va_start(ap, fmt);
    xd_vformat(e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}

xd_status xd_err_prefix(xd_err *e, const char *fmt, ...)
{
    if (!e) return XD_OK;
    char joined[2 * XD_ERR_LEN + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(joined, XD_ERR_LEN, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if (n > XD_ERR_LEN - 1) n = XD_ERR_LEN - 1;
    joined[n] = ':';
    joined[n + 1] = ' ';
    size_t len = strnlen(e->msg, XD_ERR_LEN - 1);
    memcpy(joined + n + 2, e->msg, len);
    put_msg(e->msg, joined, (size_t)n + 2 + len);
    return e->code;
}

const char *xd_excerpt(const char *s, char *buf)
{
    size_t n = strlen(s);
    if (n <= XD_EXCERPT_MAX) return s;
    n = XD_EXCERPT_MAX;
    while (n && !char_start(s[n])) n--;
    memcpy(buf, s, n);
    memcpy(buf + n, "...", 4);
    return buf;
}

void xd_err_clear(xd_err *e)
{
    if (e) {
        e->code = XD_OK;
        e->msg[0] = '\0';
    }
}

void xd_assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "xdistill: internal error: %s:%d: assertion failed: %s\n", file, line, what);
    abort();
}
