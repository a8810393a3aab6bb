/* HTML text building (see html.h). */
#include "report/html.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void rp_buf_free(rp_buf *b)
{
    free(b->s);
    b->s = NULL;
    b->n = b->cap = 0;
}

static void reserve(rp_buf *b, size_t more)
{
    if (b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more + 1) cap *= 2;
    b->s = xd_xrealloc(b->s, cap);
    b->cap = cap;
}

void rp_putn(rp_buf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void rp_put(rp_buf *b, const char *s) { rp_putn(b, s, strlen(s)); }

void rp_printf(rp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need <= 0) return;
    reserve(b, (size_t)need);
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

void rp_escape(rp_buf *b, const char *s)
{
    static const char *const entity[256] = {['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;",
                                            ['"'] = "&quot;", ['\''] = "&#39;"};
    const char *run = s;
    for (; *s; s++) {
        const char *ent = entity[(unsigned char)*s];
        if (!ent) continue;
        rp_putn(b, run, (size_t)(s - run));
        rp_put(b, ent);
        run = s + 1;
    }
    rp_putn(b, run, (size_t)(s - run));
}

void rp_short_count(rp_buf *b, uint64_t c)
{
    static const char units[] = "kMGTPE";
    if (c < 10000) {
        rp_printf(b, "%llu", (unsigned long long)c);
        return;
    }
    /* the largest unit that leaves at least 1 (rounding may carry into the next unit) */
    double v = (double)c;
    int u = -1;
    while (u < 5 && (v >= 999.5 || u < 0)) {
        v /= 1000.0;
        u++;
    }
    if (v < 9.95) rp_printf(b, "%.1f%c", v, units[u]);
    else rp_printf(b, "%.0f%c", v, units[u]);
}

void rp_data_uri(rp_buf *b, const char *mime, const void *data, size_t n)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    rp_printf(b, "data:%s;base64,", mime);
    reserve(b, (n + 2) / 3 * 4);
    const uint8_t *p = data;
    char *o = b->s + b->n;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        *o++ = digits[v >> 18];
        *o++ = digits[(v >> 12) & 63];
        *o++ = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? digits[v & 63] : '=';
    }
    b->n = (size_t)(o - b->s);
    b->s[b->n] = '\0';
}
