/* UTF-8 validation and repair (see utf8.h). */
#include "modalities/text/utf8.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/mem.h"

const char *const txt_utf8_fault_names[] = {
    [TXT_UTF8_OK] = "valid",
    [TXT_UTF8_BAD_LEAD] = "byte never used in UTF-8",
    [TXT_UTF8_LONE_CONT] = "continuation byte without a lead byte",
    [TXT_UTF8_TRUNCATED] = "sequence truncated by the end of the text",
    [TXT_UTF8_INCOMPLETE] = "incomplete sequence",
    [TXT_UTF8_OVERLONG] = "overlong encoding",
    [TXT_UTF8_SURROGATE] = "encoded UTF-16 surrogate",
    [TXT_UTF8_TOO_LARGE] = "code point above U+10FFFF",
};
static_assert(sizeof txt_utf8_fault_names / sizeof txt_utf8_fault_names[0] == TXT_UTF8_FAULT_COUNT,
              "txt_utf8_fault_names must name every fault");

/* One step of the decoder at s[i] (i < n). Returns the length of the well-formed sequence there
 * (*fault = OK), or the length of the maximal subpart of the ill-formed one (>= 1) and its fault.
 * The second byte has a narrower range after E0, ED, F0 and F4 (Table 3-7); a continuation byte
 * outside that range says which rule was broken. */
static size_t utf8_step(const uint8_t *s, size_t n, size_t i, txt_utf8_fault *fault)
{
    uint8_t b = s[i];
    if (b < 0x80) { *fault = TXT_UTF8_OK; return 1; }
    if (b < 0xC0) { *fault = TXT_UTF8_LONE_CONT; return 1; }
    if (b < 0xC2) { *fault = TXT_UTF8_OVERLONG; return 1; }
    if (b > 0xF4) { *fault = b < 0xF8 ? TXT_UTF8_TOO_LARGE : TXT_UTF8_BAD_LEAD; return 1; }
    size_t need = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint8_t lo = 0x80, hi = 0xBF;
    txt_utf8_fault range_fault = TXT_UTF8_INCOMPLETE;
    switch (b) {
    case 0xE0: lo = 0xA0; range_fault = TXT_UTF8_OVERLONG; break;
    case 0xED: hi = 0x9F; range_fault = TXT_UTF8_SURROGATE; break;
    case 0xF0: lo = 0x90; range_fault = TXT_UTF8_OVERLONG; break;
    case 0xF4: hi = 0x8F; range_fault = TXT_UTF8_TOO_LARGE; break;
    default: break;
    }
    for (size_t k = 1; k < need; k++) {
        if (i + k >= n) { *fault = TXT_UTF8_TRUNCATED; return k; }
        uint8_t c = s[i + k];
        bool cont = c >= 0x80 && c <= 0xBF;
        if (k == 1 && cont && (c < lo || c > hi)) { *fault = range_fault; return 1; }
        if (!cont) { *fault = TXT_UTF8_INCOMPLETE; return k; }
    }
    *fault = TXT_UTF8_OK;
    return need;
}

size_t txt_validate(const void *s, size_t n, txt_utf8_fault *fault)
{
    const uint8_t *p = s;
    size_t i = 0;
    txt_utf8_fault f = TXT_UTF8_OK;
    while (i < n) {
        if (p[i] < 0x80) { i++; continue; }
        size_t k = utf8_step(p, n, i, &f);
        if (f != TXT_UTF8_OK) break;
        i += k;
    }
    if (fault) *fault = f;
    return i;
}

/* "c0 af" for the bytes of the bad subpart (at most 4), for the error message. */
static void hex_bytes(const uint8_t *p, size_t n, size_t off, char *buf, size_t cap)
{
    txt_utf8_fault f;
    size_t k = utf8_step(p, n, off, &f);
    size_t used = 0;
    buf[0] = '\0';
    for (size_t j = 0; j < k && used + 4 < cap; j++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%02x", j ? " " : "", p[off + j]);
}

xd_status txt_utf8_check(const void *s, size_t n, const char *where, xd_err *e)
{
    txt_utf8_fault f;
    size_t off = txt_validate(s, n, &f);
    if (off == n) return XD_OK;
    char hex[16];
    hex_bytes(s, n, off, hex, sizeof hex);
    if (where)
        return xd_fail(e, XD_EFORMAT, "%s: byte %zu: invalid UTF-8 (%s; bytes %s)", where, off,
                       txt_utf8_fault_names[f], hex);
    return xd_fail(e, XD_EFORMAT, "byte %zu: invalid UTF-8 (%s; bytes %s)", off,
                   txt_utf8_fault_names[f], hex);
}

xd_status txt_utf8_check_lines(const void *buf, size_t n, const char *path, xd_err *e)
{
    txt_utf8_fault f;
    size_t off = txt_validate(buf, n, &f);
    if (off == n) return XD_OK;
    const uint8_t *p = buf;
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < off; i++)
        if (p[i] == '\n') { line++; line_start = i + 1; }
    char hex[16];
    hex_bytes(p, n, off, hex, sizeof hex);
    return xd_fail(e, XD_EFORMAT, "%s:%zu: byte %zu (file offset %zu): invalid UTF-8 (%s; bytes %s)",
                   path ? path : "text", line, off - line_start, off, txt_utf8_fault_names[f], hex);
}

xd_status txt_utf8_replace(const void *s, size_t n, char **out, size_t *out_n, size_t *n_replaced,
                           xd_err *e)
{
    *out = NULL;
    *out_n = 0;
    if (n > TXT_MAX_TEXT_BYTES)
        return xd_fail(e, XD_EARG, "text of %zu bytes is longer than the limit of %zu", n,
                       TXT_MAX_TEXT_BYTES);
    /* worst case: every byte is its own bad subpart and grows to the 3 bytes of U+FFFD */
    char *dst = xd_try_alloc(3 * n + 1);
    if (!dst) return xd_fail(e, XD_ENOMEM, "no memory to repair %zu bytes of text", n);
    const uint8_t *p = s;
    size_t i = 0, j = 0, fixed = 0;
    while (i < n) {
        txt_utf8_fault f;
        size_t k = utf8_step(p, n, i, &f);
        if (f == TXT_UTF8_OK) {
            memcpy(dst + j, p + i, k);
            j += k;
        } else {
            j += txt_utf8_put(dst + j, 0xFFFD);
            fixed++;
        }
        i += k;
    }
    dst[j] = '\0';
    *out = dst;
    *out_n = j;
    if (n_replaced) *n_replaced = fixed;
    return XD_OK;
}

json_t *txt_json_string(const char *s)
{
    if (!s) return NULL;
    const size_t n = strlen(s);
    if (txt_validate(s, n, NULL) == n) return json_string(s);
    char *fixed;
    size_t fixed_n;
    xd_err e;
    if (txt_utf8_replace(s, n, &fixed, &fixed_n, NULL, &e) != XD_OK) return NULL;
    json_t *j = json_stringn(fixed, fixed_n);
    free(fixed);
    return j;
}

size_t txt_utf8_put(char *dst, int32_t cp)
{
    return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)dst);
}

bool txt_cp_is_space(int32_t cp)
{
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return true;
    if (cp < 0x80) return false;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

bool txt_is_blank(const char *s)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    while (*p) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, -1, &cp);
        if (k <= 0 || !txt_cp_is_space(cp)) return false;
        p += k;
    }
    return true;
}
