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

xd_status xd_fail(xd_err *e, xd_status code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
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
    memcpy(joined + n + 2, e->msg, XD_ERR_LEN);
    joined[n + 2 + XD_ERR_LEN - 1] = '\0';
    memcpy(e->msg, joined, XD_ERR_LEN - 1);
    e->msg[XD_ERR_LEN - 1] = '\0';
    return e->code;
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
