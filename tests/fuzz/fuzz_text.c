/* Fuzz target: UTF-8 checking, repair and normalisation of text from outside (txt_validate,
 * txt_utf8_check_lines, txt_utf8_replace, txt_normalize), then segmentation of the normalised
 * text. The first byte picks the normalisation and segmentation options, the rest is the text.
 * Checks: repaired and normalised text is valid UTF-8 without NUL bytes; with collapse_space it
 * has no space at either end and never two in a row; tokens lie inside the text. */
#include <stdlib.h>
#include <string.h>

#include "modalities/text/normalize.h"
#include "modalities/text/segment.h"
#include "modalities/text/utf8.h"
#include "tests/fuzz/fuzz.h"

typedef struct {
    const char *s;
    size_t n;
} span;

static int on_token(void *ctx, const char *tok, size_t len, txt_tok_kind kind)
{
    const span *t = ctx;
    if (len == 0 || tok < t->s || tok + len > t->s + t->n || kind >= TXT_TOK_KIND_COUNT)
        fz_fail("token outside the text or empty");
    return 0;
}

static void check_text(const char *what, const char *s, size_t n)
{
    if (txt_validate(s, n, NULL) != n) fz_fail("%s is not valid UTF-8", what);
    if (strlen(s) != n) fz_fail("%s holds a NUL byte or has a wrong length", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned flags = data[0];
    char *text = fz_copy(data + 1, size - 1);
    size_t n = size - 1;
    xd_err e;
    txt_utf8_fault fault;
    size_t bad = txt_validate(text, n, &fault);
    if ((bad == n) != (fault == TXT_UTF8_OK)) fz_fail("offset and fault disagree");
    if ((txt_utf8_check_lines(text, n, "fuzz.txt", &e) == XD_OK) != (bad == n))
        fz_fail("line check and validation disagree");

    char *out;
    size_t out_n, replaced;
    if (txt_utf8_replace(text, n, &out, &out_n, &replaced, &e) == XD_OK) {
        if (txt_validate(out, out_n, NULL) != out_n) fz_fail("repaired text is not valid UTF-8");
        if ((replaced == 0) != (bad == n)) fz_fail("%zu replacements in %s text", replaced,
                                                   bad == n ? "valid" : "invalid");
        free(out);
    }

    txt_norm_opts o = {
        .compat = flags & 1,
        .casefold = flags & 2,
        .strip_accents = flags & 4,
        .collapse_space = flags & 8,
        .replace_invalid = flags & 16,
    };
    if (txt_normalize(text, n, &o, &out, &out_n, &e) == XD_OK) {
        check_text("normalised text", out, out_n);
        if (o.collapse_space && out_n &&
            (out[0] == ' ' || out[out_n - 1] == ' ' || strstr(out, "  ")))
            fz_fail("spaces left after collapsing: '%s'", out);
        txt_seg_opts so = {.bigrams = flags & 32, .keep_punct = flags & 64};
        span t = {out, out_n};
        txt_segment(out, out_n, &so, on_token, &t);
        if (txt_grapheme_count(out, out_n) > out_n) fz_fail("more graphemes than bytes");
        free(out);
    } else if (bad == n || o.replace_invalid) {
        fz_fail("valid (or repaired) text does not normalise: %s", e.msg);
    }
    free(text);
    return 0;
}
