/* modalities/text/: UTF-8 validation and repair, normalisation, graphemes and tokens in many
 * scripts. Vocabularies, hashed n-gram ids, settings and encoding rows: test_text_tokenizer.c. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modalities/text/normalize.h"
#include "modalities/text/segment.h"
#include "modalities/text/utf8.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers */

static void assert_norm(const char *in, size_t n, const txt_norm_opts *o, const char *want)
{
    char *out = NULL;
    size_t out_n = 0;
    xd_err e;
    xd_err_clear(&e);
    if (txt_normalize(in, n, o, &out, &out_n, &e) != XD_OK)
        fail_msg("normalising '%s' failed: %s", in, e.msg);
    if (strcmp(out, want) != 0 || out_n != strlen(want))
        fail_msg("normalising '%s': got '%s' (%zu bytes), expected '%s'", in, out, out_n, want);
    free(out);
}

static void norm_default(const char *in, const char *want)
{
    txt_norm_opts o = txt_norm_defaults();
    assert_norm(in, strlen(in), &o, want);
}

typedef struct {
    char buf[4096];
    size_t used;
} tok_list;

static int collect(void *ctx, const char *tok, size_t len, txt_tok_kind kind)
{
    tok_list *l = ctx;
    int w = snprintf(l->buf + l->used, sizeof l->buf - l->used, "%s%s:%.*s", l->used ? "|" : "",
                     txt_tok_kind_names[kind], (int)len, tok);
    assert_true(w > 0 && (size_t)w < sizeof l->buf - l->used);
    l->used += (size_t)w;
    return 0;
}

/* Normalises with the defaults, segments with o, and compares "kind:token|..." with want. */
static void assert_tokens(const char *text, const txt_seg_opts *o, const char *want)
{
    txt_norm_opts no = txt_norm_defaults();
    char *norm;
    size_t n;
    xd_err e;
    if (txt_normalize(text, strlen(text), &no, &norm, &n, &e) != XD_OK) fail_msg("%s", e.msg);
    tok_list l = {.used = 0};
    l.buf[0] = '\0';
    assert_int_equal(txt_segment(norm, n, o, collect, &l), 0);
    if (strcmp(l.buf, want) != 0) fail_msg("tokens of '%s':\n got  %s\n want %s", text, l.buf, want);
    free(norm);
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8 */

static void test_validate_faults(void **state)
{
    (void)state;
    static const struct {
        const char *bad;
        size_t n;
        txt_utf8_fault fault;
        bool at_end; /* the case needs the text to end right after it */
    } cases[] = {
        {"\xC0\xAF", 2, TXT_UTF8_OVERLONG, false},         /* '/' in two bytes */
        {"\xC1\xBF", 2, TXT_UTF8_OVERLONG, false},
        {"\xE0\x80\xAF", 3, TXT_UTF8_OVERLONG, false},
        {"\xE0\x9F\xBF", 3, TXT_UTF8_OVERLONG, false},     /* U+07FF in three bytes */
        {"\xF0\x80\x80\xAF", 4, TXT_UTF8_OVERLONG, false},
        {"\xF0\x8F\xBF\xBF", 4, TXT_UTF8_OVERLONG, false}, /* U+FFFF in four bytes */
        {"\x80", 1, TXT_UTF8_LONE_CONT, false},
        {"\xBF\x80", 2, TXT_UTF8_LONE_CONT, false},
        {"\xC3", 1, TXT_UTF8_TRUNCATED, true},
        {"\xE2\x82", 2, TXT_UTF8_TRUNCATED, true},         /* euro sign cut short */
        {"\xF0\x9F\x98", 3, TXT_UTF8_TRUNCATED, true},     /* emoji cut short */
        {"\xE2\x82", 2, TXT_UTF8_INCOMPLETE, false},       /* followed by 'o' below */
        {"\xC3 ", 2, TXT_UTF8_INCOMPLETE, false},
        {"\xED\xA0\x80", 3, TXT_UTF8_SURROGATE, false},    /* U+D800 */
        {"\xED\xBF\xBF", 3, TXT_UTF8_SURROGATE, false},    /* U+DFFF */
        {"\xF4\x90\x80\x80", 4, TXT_UTF8_TOO_LARGE, false}, /* U+110000 */
        {"\xF5\x80\x80\x80", 4, TXT_UTF8_TOO_LARGE, false},
        {"\xF7\xBF\xBF\xBF", 4, TXT_UTF8_TOO_LARGE, false},
        {"\xF8\x88\x80\x80\x80", 5, TXT_UTF8_BAD_LEAD, false},
        {"\xFE", 1, TXT_UTF8_BAD_LEAD, false},
        {"\xFF", 1, TXT_UTF8_BAD_LEAD, false},
    };
    const char *prefix = "é한"; /* 2 + 3 bytes, so the bad sequence starts at byte 5 */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        size_t n = 0;
        memcpy(buf, prefix, 5);
        n = 5;
        memcpy(buf + n, cases[i].bad, cases[i].n);
        n += cases[i].n;
        if (!cases[i].at_end) buf[n++] = 'o';
        txt_utf8_fault f = TXT_UTF8_OK;
        size_t off = txt_validate(buf, n, &f);
        if (off != 5 || f != cases[i].fault)
            fail_msg("case %zu: offset %zu fault %s, expected 5 and %s", i, off,
                     txt_utf8_fault_names[f], txt_utf8_fault_names[cases[i].fault]);
    }
    /* the boundaries of each well-formed range, an embedded NUL, and real text */
    static const char *const good[] = {
        "\x7F", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF", "\xEE\x80\x80",
        "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF",
        "Straße, 東京, 한국어, Привет, สวัสดี, नमस्ते, مرحبا, 👨‍👩‍👧",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        txt_utf8_fault f = TXT_UTF8_BAD_LEAD;
        size_t n = strlen(good[i]);
        assert_int_equal(txt_validate(good[i], n, &f), n);
        assert_int_equal(f, TXT_UTF8_OK);
    }
    assert_int_equal(txt_validate("a\0b", 3, NULL), 3);
    assert_int_equal(txt_validate("", 0, NULL), 0);
}

static void test_check_messages(void **state)
{
    (void)state;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(txt_utf8_check("ab\xC0\xAF", 4, "data.tsv:17", &e), XD_EFORMAT);
    assert_string_equal(e.msg, "data.tsv:17: byte 2: invalid UTF-8 (overlong encoding; bytes c0)");
    assert_int_equal(txt_utf8_check("x\xF0\x9F\x98", 4, NULL, &e), XD_EFORMAT);
    assert_string_equal(e.msg,
                        "byte 1: invalid UTF-8 (sequence truncated by the end of the text; bytes f0 9f 98)");
    xd_err_clear(&e);
    assert_int_equal(txt_utf8_check("ok 한국어", strlen("ok 한국어"), "x", &e), XD_OK);
    assert_string_equal(e.msg, "");

    const char file[] = "id\ttext\n1\tok\n2\tbad \xE2\x82\n3\tfine\n";
    assert_int_equal(txt_utf8_check_lines(file, sizeof file - 1, "data.tsv", &e), XD_EFORMAT);
    assert_string_equal(e.msg, "data.tsv:3: byte 6 (file offset 19): invalid UTF-8 "
                               "(incomplete sequence; bytes e2 82)");
    /* a surrogate on the first line */
    assert_int_equal(txt_utf8_check_lines("\xED\xA0\x80z", 4, "s.txt", &e), XD_EFORMAT);
    assert_string_equal(e.msg, "s.txt:1: byte 0 (file offset 0): invalid UTF-8 "
                               "(encoded UTF-16 surrogate; bytes ed)");
}

static void assert_replaced(const char *in, size_t n, const char *want, size_t want_count)
{
    char *out;
    size_t out_n, count = 99;
    xd_err e;
    if (txt_utf8_replace(in, n, &out, &out_n, &count, &e) != XD_OK) fail_msg("%s", e.msg);
    if (strcmp(out, want) != 0 || out_n != strlen(want) || count != want_count)
        fail_msg("replacing: got '%s' (%zu replaced), expected '%s' (%zu)", out, count, want,
                 want_count);
    free(out);
}

static void test_replace_invalid(void **state)
{
    (void)state;
#define R "\xEF\xBF\xBD" /* U+FFFD */
    assert_replaced("a\xC0\xAF" "b", 4, "a" R R "b", 2);
    assert_replaced("x\xE2\x82", 3, "x" R, 1);
    assert_replaced("\xF0\x9F\x98x", 4, R "x", 1);
    assert_replaced("\xED\xA0\x80", 3, R R R, 3);
    assert_replaced("\xF4\x90\x80\x80", 4, R R R R, 4);
    assert_replaced("\xE0\x80", 2, R R, 2);
    /* the example of the Unicode standard (section 3.9, maximal subparts) */
    assert_replaced("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64", 13,
                    "a" R R R "b" R "c" R R "d", 6);
    assert_replaced("한국어 ok", strlen("한국어 ok"), "한국어 ok", 0);

    /* through normalisation: an error by default, U+FFFD when asked */
    txt_norm_opts o = txt_norm_defaults();
    char *out = NULL;
    size_t out_n;
    xd_err e;
    assert_int_equal(txt_normalize("Caf\xC3", 4, &o, &out, &out_n, &e), XD_EFORMAT);
    assert_null(out);
    xd_err_prefix(&e, "labels.tsv:4");
    assert_string_equal(e.msg, "labels.tsv:4: byte 3: invalid UTF-8 "
                               "(sequence truncated by the end of the text; bytes c3)");
    o.replace_invalid = true;
    assert_norm("Caf\xC3", 4, &o, "caf" R);
    assert_norm("\xFF" "A\xC0", 3, &o, R "a" R);
#undef R
}

/* ---------------------------------------------------------------------------------------------
 * Normalisation */

static void test_normalize_nfkc_casefold(void **state)
{
    (void)state;
    norm_default("Straße", "strasse"); /* full case folding: ß -> ss */
    norm_default("STRASSE", "strasse");
    norm_default("ẞ", "ss");
    norm_default("İstanbul", "i\xCC\x87stanbul"); /* İ folds to i + COMBINING DOT ABOVE */
    norm_default("ΟΔΥΣΣΕΥΣ ς", "οδυσσευσ σ");
    norm_default("ПРИВЕТ Мир", "привет мир");
    norm_default("ＡＢＣ１２３", "abc123"); /* fullwidth -> ASCII by NFKC */
    norm_default("ﬁ①㍻", "fi1平成");
    norm_default("ｶﾀｶﾅ", "カタカナ"); /* halfwidth katakana */
    norm_default("\xEF\xBB\xBB", "\xD9\x84\xD8\xA7"); /* Arabic ligature lam-alef -> two letters */
    /* conjoining jamo compose to syllables; syllables stay syllables */
    norm_default("\u1112\u1161\u11AB\u1100\u1173\u11AF", "한글");
    norm_default("한국어", "한국어");
    norm_default("cafe\u0301", "caf\xC3\xA9"); /* composed */
    norm_default("", "");
    /* white space: tabs, newlines, ideographic space, NBSP, line separator, NEL */
    norm_default("  a\t\n b\u3000c\u00A0d\u2028e\xC2\x85" "f  ", "a b c d e f");
    /* invisible characters: controls and NUL dropped, soft hyphen and BOM dropped */
    txt_norm_opts o = txt_norm_defaults();
    assert_norm("a\0b\x07" "c\x7F", 6, &o, "abc");
    norm_default("co\u00ADop", "coop");
    norm_default("\uFEFFbom", "bom");
    norm_default("ไทย\u200Bภาษา", "ไทย ภาษา"); /* ZWSP separates words */
    norm_default("❤\uFE0F", "❤");              /* emoji presentation selector dropped */
    norm_default("👁\uFE0F\u200D🗨\uFE0F", "👁\u200D🗨"); /* ...but the ZWJ stays */
    norm_default("👨\u200D👩\u200D👧", "👨\u200D👩\u200D👧");
    norm_default("می\u200Cخواهم", "می\u200Cخواهم"); /* Persian ZWNJ stays */

    /* each step can be turned off on its own */
    o.collapse_space = false;
    assert_norm(" a  b ", 6, &o, " a  b ");
    o = txt_norm_defaults();
    o.casefold = false;
    assert_norm("Straße", strlen("Straße"), &o, "Straße");
    assert_norm("ＡＢ", strlen("ＡＢ"), &o, "AB");
    o = txt_norm_defaults();
    o.compat = false; /* NFC + casefold: fullwidth stays fullwidth, only its case changes */
    assert_norm("Ａ①", strlen("Ａ①"), &o, "ａ①");
}

static void test_strip_accents(void **state)
{
    (void)state;
    txt_norm_opts o = txt_norm_defaults();
    o.strip_accents = true;
    const struct {
        const char *in, *want;
    } cases[] = {
        {"café", "cafe"},
        {"cafe\u0301", "cafe"},
        {"Ångström \u212B", "angstrom a"}, /* the ANGSTROM SIGN too */
        {"Tiếng Việt", "tieng viet"},
        {"naïve façade", "naive facade"},
        {"ά", "α"},
        {"ø", "ø"},                 /* no decomposition: nothing to strip */
        {"й", "и"},                 /* documented: distinct Russian letters lose the breve */
        {"が", "が"},                /* kana voicing mark is not an accent */
        {"हिन्दी", "हिन्दी"},       /* Devanagari vowel signs stay */
        {"ภาษาไทย", "ภาษาไทย"},     /* Thai vowels stay */
        {"한국어", "한국어"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_norm(cases[i].in, strlen(cases[i].in), &o, cases[i].want);
    norm_default("café", "café"); /* kept by default */
}

/* "a" followed by n copies of each mark in marks (UTF-8), in a new string. */
static char *with_marks(const char *base, const char *const *marks, int n_marks, int n)
{
    size_t len = strlen(base) + 1;
    for (int k = 0; k < n_marks; k++) len += strlen(marks[k]) * (size_t)n;
    char *s = malloc(len), *p = s;
    p += sprintf(p, "%s", base);
    for (int k = 0; k < n_marks; k++)
        for (int i = 0; i < n; i++) p += sprintf(p, "%s", marks[k]);
    return s;
}

/* A run of combining marks keeps its first 30 (stream-safe text); a starter begins a new run. */
static void test_marks_in_a_row(void **state)
{
    (void)state;
    txt_norm_opts o = txt_norm_defaults();
    const char *acute[] = {"\u0301"}, *two[] = {"\u0301", "\u0316"};
    char *want = with_marks("\u00e1", acute, 1, 29); /* a + U+0301 composes */
    for (int n = 30; n <= 31; n++) {
        char *in = with_marks("a", acute, 1, n);
        assert_norm(in, strlen(in), &o, want);
        free(in);
    }
    /* 2000 of each, the grave below (class 220) after the acute (230): the first 30 stay */
    char *in = with_marks("a", two, 2, 2000);
    assert_norm(in, strlen(in), &o, want);
    free(in);
    /* 29 marks, then 29 more after a letter: both runs whole */
    char *a = with_marks("a", acute, 1, 29), *b = with_marks("b", acute, 1, 29);
    char *ab = malloc(strlen(a) + strlen(b) + 1);
    sprintf(ab, "%s%s", a, b);
    char *wa = with_marks("\u00e1", acute, 1, 28), *wb = with_marks("b", acute, 1, 29);
    char *wab = malloc(strlen(wa) + strlen(wb) + 1);
    sprintf(wab, "%s%s", wa, wb);
    assert_norm(ab, strlen(ab), &o, wab);
    free(a);
    free(b);
    free(ab);
    free(wa);
    free(wb);
    free(wab);
    free(want);
}

/* ---------------------------------------------------------------------------------------------
 * Segmentation */

static void test_graphemes(void **state)
{
    (void)state;
    const struct {
        const char *s;
        size_t clusters;
    } cases[] = {
        {"👨\u200D👩\u200D👧\u200D👦", 1}, /* ZWJ family */
        {"🇰🇷", 1},
        {"🇰🇷🇯🇵", 2}, /* two flags, not a flag and two halves */
        {"🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F", 1}, /* Scotland */
        {"👍🏽", 1},   /* skin tone modifier */
        {"1\uFE0F\u20E3", 1}, /* keycap */
        {"e\u0301", 1},
        {"a\u0301\u0323b", 2}, /* two marks stay with their base */
        {"กี่", 1},            /* Thai consonant + vowel + tone mark */
        {"\u1112\u1161\u11AB", 1}, /* Hangul L V T jamo */
        {"\r\n", 1},
        {"abc", 3},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = txt_grapheme_count(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].clusters)
            fail_msg("case %zu '%s': %zu clusters, expected %zu", i, cases[i].s, got,
                     cases[i].clusters);
    }
    assert_int_equal(txt_grapheme_next("e\u0301x", 4, 0), 3);
    assert_int_equal(txt_grapheme_next("e\u0301x", 4, 3), 4);
    assert_int_equal(txt_grapheme_count("\xFF" "a\x80", 3), 3); /* stray bytes: no crash */
}

static void test_segment_words(void **state)
{
    (void)state;
    txt_seg_opts o = {.bigrams = true, .keep_punct = false};
    assert_tokens("Hello, Wörld! 123abc don't", &o,
                  "word:hello|word:wörld|word:123abc|word:don|word:t");
    assert_tokens("snake_case well-known", &o, "word:snake|word:case|word:well|word:known");
    assert_tokens("$100 + 5%", &o, "symbol:$|word:100|symbol:+|word:5");
    assert_tokens("I ❤️ NY 👨\u200D👩\u200D👧!", &o,
                  "word:i|symbol:❤|word:ny|symbol:👨\u200D👩\u200D👧");
    assert_tokens("🇰🇷🇯🇵 👍🏽", &o, "symbol:🇰🇷|symbol:🇯🇵|symbol:👍🏽");
    assert_tokens("한국어 문장입니다.", &o, "word:한국어|word:문장입니다");
    assert_tokens("नमस्ते दुनिया", &o, "word:नमस्ते|word:दुनिया");
    assert_tokens("Привет, мир", &o, "word:привет|word:мир");
    assert_tokens("مرحبا بالعالم", &o, "word:مرحبا|word:بالعالم");
    o.keep_punct = true;
    assert_tokens("Hi, there!", &o, "word:hi|punct:,|word:there|punct:!");

    /* marks stay with their base in a word even without normalisation */
    tok_list l = {.used = 0};
    const char *raw = "re\u0301sume\u0301 x";
    txt_segment(raw, strlen(raw), &o, collect, &l);
    assert_string_equal(l.buf, "word:re\u0301sume\u0301|word:x");
}

static void test_segment_unspaced(void **state)
{
    (void)state;
    txt_seg_opts o = {.bigrams = true, .keep_punct = false};
    assert_tokens("東京タワー", &o,
                  "char:東|char:京|bigram:東京|char:タ|bigram:京タ|char:ワ|bigram:タワ|char:ー|bigram:ワー");
    assert_tokens("東京2020年", &o, "char:東|char:京|bigram:東京|word:2020|char:年");
    assert_tokens("こんにちは、世界。", &o,
                  "char:こ|char:ん|bigram:こん|char:に|bigram:んに|char:ち|bigram:にち|char:は|"
                  "bigram:ちは|char:世|char:界|bigram:世界");
    assert_tokens("ภาษาไทย", &o,
                  "char:ภ|char:า|bigram:ภา|char:ษ|bigram:าษ|char:า|bigram:ษา|char:ไ|bigram:าไ|"
                  "char:ท|bigram:ไท|char:ย|bigram:ทย");
    assert_tokens("กี่นี้", &o, "char:กี่|char:นี้|bigram:กี่นี้"); /* marks stay in the cluster */
    assert_tokens("ｶﾀ", &o, "char:カ|char:タ|bigram:カタ");
    /* Lao: the vowel sign I (U+0EB5) is a mark and joins its consonant; AA (U+0EB2) is a letter */
    assert_tokens("ສີລາວ", &o, "char:ສີ|char:ລ|bigram:ສີລ|char:າ|bigram:ລາ|char:ວ|bigram:າວ");
    o.bigrams = false;
    assert_tokens("我爱北京 ok", &o, "char:我|char:爱|char:北|char:京|word:ok");

    assert_false(txt_cp_unspaced('a'));
    assert_false(txt_cp_unspaced(0xAC00)); /* Hangul syllable */
    assert_false(txt_cp_unspaced(0x0915)); /* Devanagari */
    assert_false(txt_cp_unspaced(0x0627)); /* Arabic */
    assert_false(txt_cp_unspaced(0x3001)); /* ideographic comma */
    assert_true(txt_cp_unspaced(0x4E00));
    assert_true(txt_cp_unspaced(0x9FFF));
    assert_true(txt_cp_unspaced(0x3042));
    assert_true(txt_cp_unspaced(0x30FC)); /* prolonged sound mark */
    assert_true(txt_cp_unspaced(0x0E01));
    assert_true(txt_cp_unspaced(0x0E81));
    assert_true(txt_cp_unspaced(0x1780));
    assert_true(txt_cp_unspaced(0x1000));
    assert_true(txt_cp_unspaced(0x20000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_faults),
        cmocka_unit_test(test_check_messages),
        cmocka_unit_test(test_replace_invalid),
        cmocka_unit_test(test_normalize_nfkc_casefold),
        cmocka_unit_test(test_strip_accents),
        cmocka_unit_test(test_marks_in_a_row),
        cmocka_unit_test(test_graphemes),
        cmocka_unit_test(test_segment_words),
        cmocka_unit_test(test_segment_unspaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
