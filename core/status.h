/* Status codes and error messages.
 *
 * Library code never prints and never exits: it returns an xd_status and fills an xd_err with one
 * line that names what failed (file, position) and why. Only main() prints it and exits non-zero.
 * Invalid input is always a status, never an assert; XD_ASSERT is for our own invariants. */
#ifndef XD_CORE_STATUS_H
#define XD_CORE_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    XD_OK = 0,
    XD_EIO,          /* cannot open, read, write or rename a file */
    XD_EFORMAT,      /* a file's contents are malformed, truncated or lie about their size */
    XD_EARG,         /* a bad argument, option or configuration value */
    XD_ESHAPE,       /* tensor shapes or sizes that do not fit together */
    XD_ENUM,         /* NaN / Inf or another numerical failure */
    XD_ENOMEM,       /* an allocation a caller asked for (sized by input) failed */
    XD_EUNSUPPORTED, /* valid input that this build does not handle */
    XD_STATUS_COUNT
} xd_status;

/* Room for one message line. A longer message keeps its start (the file and position) and its
 * end (the reason) around a " [...] " in the middle; it never overflows. Quote input with
 * xd_excerpt so that it does not come to that. */
#define XD_ERR_LEN 512

typedef struct {
    xd_status code;
    char msg[XD_ERR_LEN];
} xd_err;

/* c as it is written in one line of text: a control character as \n, \r, \t or \xNN, any other
 * byte as itself; returns the length written to out (at most 4, NUL-terminated). */
size_t xd_escape_control(unsigned char c, char out[5]);

/* Fills e (if not NULL) with code and a printf-style message; returns code. A message is one
 * line: a control character in it (a line break in a file name) is written as xd_escape_control
 * writes it, here and in xd_vformat and xd_err_prefix. */
xd_status xd_fail(xd_err *e, xd_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* vsnprintf into a message-sized buffer, long text cut in the middle as for xd_fail: for
 * helpers that format a reason before adding a position to it. */
void xd_vformat(char out[XD_ERR_LEN], const char *fmt, va_list ap);

/* Puts "prefix: " before the message already in e (for adding a file name or context). */
xd_status xd_err_prefix(xd_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void xd_err_clear(xd_err *e);

/* Longest piece of input a message quotes whole: longer text becomes its first XD_EXCERPT_MAX
 * bytes (whole UTF-8 characters) and "...". Returns s itself when short enough, else buf, which
 * holds XD_EXCERPT_BUF bytes. */
#define XD_EXCERPT_MAX 60
#define XD_EXCERPT_BUF (XD_EXCERPT_MAX + 4)
const char *xd_excerpt(const char *s, char *buf);
const char *xd_status_name(xd_status s);

/* Invariant checks that stay on in release builds and say where they fired. Not for input. */
#define XD_ASSERT(cond)                                                                         \
    do {                                                                                        \
        if (!(cond)) xd_assert_fail(#cond, __FILE__, __LINE__);                                 \
    } while (0)
_Noreturn void xd_assert_fail(const char *what, const char *file, int line);

#endif
