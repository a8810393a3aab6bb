/* Text normalisation (see normalize.h for the steps and the reasons behind them). */
#include "modalities/text/normalize.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/mem.h"
#include "modalities/text/utf8.h"

txt_norm_opts txt_norm_defaults(void)
{
    return (txt_norm_opts){
        .compat = true,
        .casefold = true,
        .strip_accents = false,
        .collapse_space = true,
        .replace_invalid = false,
    };
}

typedef enum { INVIS_KEEP, INVIS_SPACE, INVIS_DROP } invis_action;

/* Step 2: what to do with a code point before utf8proc sees it. */
static invis_action invisible_action(int32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) /* C0 and C1 controls, DEL */
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 ? INVIS_SPACE : INVIS_DROP;
    if (cp < 0xAD) return INVIS_KEEP;
    if (cp == 0x200B) return INVIS_SPACE;
    if (cp == 0x00AD                        /* soft hyphen */
        || cp == 0x034F                     /* combining grapheme joiner */
        || cp == 0x061C                     /* Arabic letter mark */
        || (cp >= 0x180B && cp <= 0x180F)   /* Mongolian variation selectors, vowel separator */
        || cp == 0x200E || cp == 0x200F     /* left-to-right / right-to-left marks */
        || (cp >= 0x202A && cp <= 0x202E)   /* bidi embeddings and overrides */
        || (cp >= 0x2060 && cp <= 0x2064)   /* word joiner, invisible operators */
        || (cp >= 0x2066 && cp <= 0x206F)   /* bidi isolates, deprecated format characters */
        || (cp >= 0xFE00 && cp <= 0xFE0F)   /* variation selectors (emoji vs text style) */
        || cp == 0xFEFF                     /* byte order mark / zero width no-break space */
        || (cp >= 0xE0100 && cp <= 0xE01EF)) /* ideographic variation selectors */
        return INVIS_DROP;
    return INVIS_KEEP;
}

/* The most combining marks in a row that step 2 keeps (UAX #15: stream-safe text). */
#define MAX_MARKS_IN_A_ROW 30

/* Step 2 over valid UTF-8; the output is never longer than the input. */
static size_t filter_invisible(const uint8_t *s, size_t n, char *dst)
{
    size_t i = 0, j = 0, marks = 0;
    while (i < n) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) { i++; continue; } /* cannot happen after validation; skip a byte */
        /* no code point below U+0300 combines */
        marks = cp >= 0x300 && utf8proc_get_property(cp)->combining_class ? marks + 1 : 0;
        if (marks > MAX_MARKS_IN_A_ROW) {
            i += (size_t)k;
            continue;
        }
        switch (invisible_action(cp)) {
        case INVIS_KEEP: memcpy(dst + j, s + i, (size_t)k); j += (size_t)k; break;
        case INVIS_SPACE: dst[j++] = ' '; break;
        case INVIS_DROP: break;
        }
        i += (size_t)k;
    }
    dst[j] = '\0';
    return j;
}

/* Step 4: the combining diacritics that accent stripping removes. */
static bool is_accent(int32_t cp)
{
    return (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x1AB0 && cp <= 0x1AFF) ||
           (cp >= 0x1DC0 && cp <= 0x1DFF) || (cp >= 0xFE20 && cp <= 0xFE2F);
}

/* Removes accents in place from valid UTF-8; returns the new length. */
static size_t drop_accents(char *s, size_t n)
{
    size_t i = 0, j = 0;
    while (i < n) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) { i++; continue; }
        if (!is_accent(cp)) {
            memmove(s + j, s + i, (size_t)k);
            j += (size_t)k;
        }
        i += (size_t)k;
    }
    s[j] = '\0';
    return j;
}

/* Step 5 in place: the writer never overtakes the reader, since a run of spaces of >= 1 byte
 * becomes one byte. */
static size_t collapse_space(char *s, size_t n)
{
    size_t i = 0, j = 0;
    bool pending = false;
    while (i < n) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) { i++; continue; }
        if (txt_cp_is_space(cp)) {
            pending = true;
        } else {
            if (pending && j > 0) s[j++] = ' ';
            pending = false;
            memmove(s + j, s + i, (size_t)k);
            j += (size_t)k;
        }
        i += (size_t)k;
    }
    s[j] = '\0';
    return j;
}

static xd_status map_error(utf8proc_ssize_t r, xd_err *e)
{
    if (r == UTF8PROC_ERROR_NOMEM) return xd_fail(e, XD_ENOMEM, "no memory to normalise text");
    return xd_fail(e, XD_EFORMAT, "cannot normalise text: %s", utf8proc_errmsg(r));
}

/* utf8proc_map into a malloc'ed string; an empty input gives an empty string. */
static xd_status map_utf8(const char *s, size_t n, int options, char **out, size_t *out_n,
                          xd_err *e)
{
    uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      (utf8proc_option_t)options);
    if (r < 0) {
        free(dst);
        return map_error(r, e);
    }
    *out = (char *)dst;
    *out_n = (size_t)r;
    return XD_OK;
}

xd_status txt_normalize(const char *in, size_t n, const txt_norm_opts *o, char **out, size_t *out_n,
                        xd_err *e)
{
    *out = NULL;
    *out_n = 0;
    if (n > TXT_MAX_TEXT_BYTES)
        return xd_fail(e, XD_EARG, "text of %zu bytes is longer than the limit of %zu", n,
                       TXT_MAX_TEXT_BYTES);
    xd_status st = XD_OK;
    char *repaired = NULL, *visible = NULL, *mapped = NULL;
    const char *src = in;
    size_t src_n = n;

    /* 1 */
    if (txt_validate(in, n, NULL) != n) {
        if (!o->replace_invalid) return txt_utf8_check(in, n, NULL, e);
        st = txt_utf8_replace(in, n, &repaired, &src_n, NULL, e);
        if (st) return st;
        src = repaired;
    }
    /* 2 */
    visible = xd_try_alloc(src_n + 1);
    if (!visible) {
        st = xd_fail(e, XD_ENOMEM, "no memory to normalise %zu bytes of text", src_n);
        goto done;
    }
    size_t vis_n = filter_invisible((const uint8_t *)src, src_n, visible);
    /* 3 and 4: STABLE keeps results fixed across Unicode versions for assigned characters */
    int opts = UTF8PROC_STABLE | (o->compat ? UTF8PROC_COMPAT : 0) |
               (o->casefold ? UTF8PROC_CASEFOLD : 0);
    size_t mapped_n = 0;
    if (!o->strip_accents) {
        st = map_utf8(visible, vis_n, opts | UTF8PROC_COMPOSE, &mapped, &mapped_n, e);
        if (st) goto done;
    } else {
        char *decomposed = NULL;
        size_t dec_n = 0;
        st = map_utf8(visible, vis_n, opts | UTF8PROC_DECOMPOSE, &decomposed, &dec_n, e);
        if (st) goto done;
        dec_n = drop_accents(decomposed, dec_n);
        st = map_utf8(decomposed, dec_n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, &mapped, &mapped_n, e);
        free(decomposed);
        if (st) goto done;
    }
    /* 5 */
    if (o->collapse_space) mapped_n = collapse_space(mapped, mapped_n);
    *out = mapped;
    *out_n = mapped_n;
    mapped = NULL;
done:
    free(mapped);
    free(visible);
    free(repaired);
    return st;
}
