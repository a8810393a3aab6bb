/* modalities/text/: UTF-8 validation and repair, normalisation, graphemes and tokens in many
 * scripts, vocabulary building and files, hashed n-gram ids, settings, parallel encoding. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include "core/runtime.h"
#endif

#include "modalities/text/config.h"
#include "modalities/text/normalize.h"
#include "modalities/text/segment.h"
#include "modalities/text/tokenizer.h"
#include "modalities/text/utf8.h"
#include "modalities/text/vocab.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers */

/* Reference FNV-1a 32, written independently of hash.h: 64-bit arithmetic, masked. */
static uint32_t ref_fnv(const char *s)
{
    uint64_t h = 0x811C9DC5u;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h = (h * 0x01000193u) & 0xFFFFFFFFu;
    }
    return (uint32_t)h;
}

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

static void init_tok(txt_tokenizer *t, const txt_config *c, const txt_vocab *v)
{
    xd_err e;
    if (txt_tokenizer_init(t, c, v, &e) != XD_OK) fail_msg("%s", e.msg);
}

/* Encodes text and compares with the ids of the given strings under the reference hash. */
static void assert_bucket_ids(const txt_tokenizer *t, const char *text, const char *const *grams,
                              size_t n_grams)
{
    int32_t ids[64];
    size_t n = 0;
    bool cut = true;
    xd_err e;
    if (txt_encode(t, text, strlen(text), ids, 64, &n, &cut, &e) != XD_OK) fail_msg("%s", e.msg);
    assert_false(cut);
    if (n != n_grams) fail_msg("'%s': %zu ids, expected %zu", text, n, n_grams);
    for (size_t i = 0; i < n; i++) {
        int32_t want = (int32_t)(ref_fnv(grams[i]) % t->cfg.buckets);
        if (ids[i] != want)
            fail_msg("'%s': id %zu is %d, expected %d for n-gram '%s'", text, i, ids[i], want, grams[i]);
    }
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

/* ---------------------------------------------------------------------------------------------
 * Ids */

static void test_hash_ids(void **state)
{
    (void)state;
    /* the published FNV-1a 32 test vectors pin the reference itself */
    assert_int_equal(ref_fnv(""), 0x811c9dc5u);
    assert_int_equal(ref_fnv("a"), 0xe40c292cu);
    assert_int_equal(ref_fnv("foobar"), 0xbf9cf968u);

    txt_config c = txt_config_default();
    c.buckets = 1000; /* not a power of two: the mod must be a real mod */
    c.nmin = 2;
    c.nmax = 3;
    c.unit = TXT_UNIT_CODEPOINT;
    txt_tokenizer t;
    init_tok(&t, &c, NULL);
    assert_int_equal(txt_num_ids(&t), 1000);
    const char *ab[] = {"<a", "<ab", "ab", "ab>", "b>"};
    assert_bucket_ids(&t, "ab", ab, 5);
    assert_bucket_ids(&t, "AB", ab, 5);
    const char *ki_cp[] = {"<क", "<कि", "कि", "कि>", "ि>"};
    assert_bucket_ids(&t, "कि", ki_cp, 5);
    const char *two[] = {"<a", "<a>", "a>", "<b", "<b>", "b>"};
    assert_bucket_ids(&t, "a, b", two, 6);

    c.unit = TXT_UNIT_GRAPHEME; /* क + ि is one cluster */
    init_tok(&t, &c, NULL);
    const char *ki_gc[] = {"<कि", "<कि>", "कि>"};
    assert_bucket_ids(&t, "कि", ki_gc, 3);
    const char *tokyo[] = {"<東>", "<京>", "<東京>"};
    assert_bucket_ids(&t, "東京", tokyo, 3);
    const char *heart[] = {"<❤>"};
    assert_bucket_ids(&t, "❤️", heart, 1);

    /* too short for any n-gram: the bracketed word is still hashed */
    c.nmin = c.nmax = 4;
    init_tok(&t, &c, NULL);
    const char *a4[] = {"<a>", "<ab>"};
    assert_bucket_ids(&t, "a ab", a4, 2);

    /* a word longer than 256 units: n-grams of its first 256 units, without the end marker */
    c.nmin = c.nmax = 2;
    c.unit = TXT_UNIT_CODEPOINT;
    init_tok(&t, &c, NULL);
    char longword[301];
    memset(longword, 'a', 300);
    longword[300] = '\0';
    int32_t many[400];
    size_t n_many;
    TU_OK(txt_encode(&t, longword, 300, many, 400, &n_many, NULL, NULL));
    assert_int_equal(n_many, 256); /* "<a" and 255 times "aa" */
    assert_int_equal(many[0], ref_fnv("<a") % 1000);
    for (size_t i = 1; i < n_many; i++) assert_int_equal(many[i], ref_fnv("aa") % 1000);

    /* no buckets and no vocabulary: nothing */
    c.buckets = 0;
    init_tok(&t, &c, NULL);
    int32_t ids[4];
    size_t n = 9;
    assert_int_equal(txt_encode(&t, "hello", 5, ids, 4, &n, NULL, NULL), XD_OK);
    assert_int_equal(n, 0);
}

static void assert_vocab(const txt_vocab *v, const char *const *want, size_t n)
{
    if (v->n != n) fail_msg("vocabulary has %u entries, expected %zu", (unsigned)v->n, n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *tok = txt_vocab_token(v, (uint32_t)i, &len);
        if (strcmp(tok, want[i]) != 0 || len != strlen(want[i]))
            fail_msg("vocabulary entry %zu is '%s', expected '%s'", i, tok, want[i]);
        assert_int_equal(txt_vocab_find(v, want[i], strlen(want[i])), (int32_t)i);
    }
}

static void test_vocab_build_save_load(void **state)
{
    (void)state;
    txt_config c = txt_config_default();
    txt_vocab v;
    xd_err e;
    const char *texts[] = {"b a A c", "a B d", "c c e"};
    const char *texts_rev[] = {"c c e", "a B d", "b a A c"};
    const char *want[] = {"a", "c", "b"}; /* a=3 c=3 (tie: bytes), b=2; d, e below min_count 2 */
    TU_OK(txt_vocab_build(&c, texts, NULL, 3, &v, &e));
    assert_vocab(&v, want, 3);
    assert_int_equal(v.count[0], 3);
    assert_int_equal(v.count[2], 2);
    assert_int_equal(txt_vocab_find(&v, "d", 1), -1);
    txt_vocab_free(&v);
    TU_OK(txt_vocab_build(&c, texts_rev, NULL, 3, &v, &e)); /* order of texts does not matter */
    assert_vocab(&v, want, 3);
    txt_vocab_free(&v);
    c.max_vocab = 2;
    TU_OK(txt_vocab_build(&c, texts, NULL, 3, &v, &e));
    assert_vocab(&v, want, 2);
    txt_vocab_free(&v);
    c.max_vocab = 0;
    c.min_count = 1;
    const char *all[] = {"a", "c", "b", "d", "e"};
    TU_OK(txt_vocab_build(&c, texts, NULL, 3, &v, &e));
    assert_vocab(&v, all, 5);
    txt_vocab_free(&v);

    /* unspaced scripts count characters and bigrams; ties sorted by UTF-8 bytes */
    c = txt_config_default();
    const char *ja[] = {"東京 東京", "東京"};
    const char *ja_want[] = {"京", "東", "東京"}; /* e4 ba ac < e6 9d b1 < e6 9d b1 e4 ... */
    TU_OK(txt_vocab_build(&c, ja, NULL, 2, &v, &e));
    assert_vocab(&v, ja_want, 3);
    txt_vocab_free(&v);

    /* a bad text is named by index */
    const char *bad[] = {"ok", "fine", "bro\xC3(ken"};
    assert_int_equal(txt_vocab_build(&c, bad, NULL, 3, &v, &e), XD_EFORMAT);
    assert_string_equal(e.msg, "text 2: byte 3: invalid UTF-8 (incomplete sequence; bytes c3)");
    assert_int_equal(v.n, 0);

    /* word ids follow the buckets; the word's n-grams follow its id */
    TU_OK(txt_vocab_build(&c, texts, NULL, 3, &v, &e));
    c.buckets = 1000;
    txt_tokenizer t;
    init_tok(&t, &c, &v);
    assert_int_equal(txt_num_ids(&t), 1003);
    int32_t ids[32];
    size_t n;
    TU_OK(txt_encode(&t, "C zz", 4, ids, 32, &n, NULL, &e));
    const char *grams[] = {"<c", "<c>", "c>", "<z", "<zz", "<zz>", "zz", "zz>", "z>"};
    assert_int_equal(n, 10);
    assert_int_equal(ids[0], 1000 + 1);
    for (size_t i = 1; i < n; i++) assert_int_equal(ids[i], ref_fnv(grams[i - 1]) % 1000);

    /* save: exact bytes; load: same entries */
    TU_OK(txt_vocab_save(&v, "vocab.txt", &e));
    size_t fn;
    char *file = tu_read_file("vocab.txt", &fn);
    assert_string_equal(file, "# xdistill text vocabulary v1\na\t3\nc\t3\nb\t2\n");
    free(file);
    txt_vocab w;
    TU_OK(txt_vocab_load("vocab.txt", &w, &e));
    assert_vocab(&w, want, 3);
    assert_int_equal(w.count[1], 3);
    txt_vocab_free(&w);
    txt_vocab_free(&v);
    /* the same bytes from memory, the given name in messages */
    const char *mem = "# xdistill text vocabulary v1\nx\t2\ny\t1\n";
    TU_OK(txt_vocab_parse("buffer", mem, strlen(mem), &w, &e));
    const char *mem_want[] = {"x", "y"};
    assert_vocab(&w, mem_want, 2);
    txt_vocab_free(&w);
    assert_int_equal(txt_vocab_parse("buffer", mem, strlen(mem) - 3, &w, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "buffer:3");

    /* multilingual round trip, CRLF and no final newline */
    const char *ml = "# xdistill text vocabulary v1\r\n東京\t9\r\n한국어\t5\r\nпривет\t2\r\n👍🏽\t1";
    tu_write_file("ml.txt", ml, strlen(ml));
    TU_OK(txt_vocab_load("ml.txt", &w, &e));
    const char *ml_want[] = {"東京", "한국어", "привет", "👍🏽"};
    assert_vocab(&w, ml_want, 4);
    assert_int_equal(w.count[0], 9);
    txt_vocab_free(&w);
}

static void test_vocab_load_rejects(void **state)
{
    (void)state;
#define H "# xdistill text vocabulary v1\n"
    char longtok[300 + 64];
    memset(longtok, 0, sizeof longtok);
    strcpy(longtok, H);
    memset(longtok + strlen(H), 'x', 300);
    strcat(longtok, "\t1\n");
    const struct {
        const char *content, *msg;
    } cases[] = {
        {"", "bad.txt: empty file"},
        {"hello\t1\n", "bad.txt:1: not a vocabulary file"},
        {H "a\t1\nb\t2\xC3(\n", "bad.txt:3: byte 3 (file offset 37): invalid UTF-8"},
        {H "a\t1\n\t4\n", "bad.txt:3: byte 0: empty token"},
        {H "a b\t1\n", "bad.txt:2: byte 1: white space or control character in token"},
        {H "a\x01" "b\t1\n", "bad.txt:2: byte 1: white space or control character in token"},
        {H "a\t1\nb\t1\na\t2\n", "bad.txt:4: token 'a' repeats line 2"},
        {H "a\tx\n", "bad.txt:2: count 'x' is not a whole number >= 1"},
        {H "a\t0\n", "bad.txt:2: count '0'"},
        {H "a\t-1\n", "bad.txt:2: count '-1'"},
        {H "a\t99999999999999999999999\n", "bad.txt:2: count"},
        {H "a\t1 \n", "bad.txt:2: count '1 '"},
        {H "a\n", "bad.txt:2: expected TOKEN<TAB>COUNT"},
        {H "a\t1\n\nb\t1\n", "bad.txt:3: expected TOKEN<TAB>COUNT, got an empty line"},
        {longtok, "bad.txt:2: byte 0: token longer than 256 bytes"},
    };
#undef H
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_write_file("bad.txt", cases[i].content, strlen(cases[i].content));
        txt_vocab v;
        xd_err e;
        xd_err_clear(&e);
        if (txt_vocab_load("bad.txt", &v, &e) != XD_EFORMAT)
            fail_msg("case %zu was accepted (message '%s')", i, e.msg);
        if (!strstr(e.msg, cases[i].msg))
            fail_msg("case %zu: message '%s' does not contain '%s'", i, e.msg, cases[i].msg);
        assert_int_equal(v.n, 0);
        assert_null(v.blob);
    }
    txt_vocab v;
    xd_err e;
    assert_int_equal(txt_vocab_load("missing.txt", &v, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "missing.txt");
}

/* ---------------------------------------------------------------------------------------------
 * Settings */

static void test_config(void **state)
{
    (void)state;
    txt_config c = txt_config_default();
    assert_int_equal(c.buckets, 65536);
    assert_int_equal(c.nmin, 2);
    assert_int_equal(c.nmax, 4);
    assert_int_equal(c.min_count, 2);
    assert_true(c.norm.casefold && c.norm.compat && c.norm.collapse_space);
    assert_false(c.norm.strip_accents || c.norm.replace_invalid);
    assert_int_equal(c.unit, TXT_UNIT_GRAPHEME);

    xd_err e;
    const char *items[] = {"buckets=1024", "nmin=3", "nmax=5", "unit=codepoint",
                           "strip_accents=yes", "keep_punct=on", "bigrams=0", "max_ids=64"};
    TU_OK(txt_config_parse(&c, items, 8, &e));
    assert_int_equal(c.buckets, 1024);
    assert_int_equal(c.nmin, 3);
    assert_int_equal(c.nmax, 5);
    assert_int_equal(c.unit, TXT_UNIT_CODEPOINT);
    assert_true(c.norm.strip_accents && c.seg.keep_punct);
    assert_false(c.seg.bigrams);
    assert_int_equal(c.max_ids, 64);

    /* describe -> parse gives the same settings */
    char desc[1024];
    size_t need = txt_config_describe(&c, desc, sizeof desc);
    assert_int_equal(need, strlen(desc));
    assert_non_null(strstr(desc, "buckets=1024"));
    assert_non_null(strstr(desc, "unit=codepoint"));
    assert_non_null(strstr(desc, "strip_accents=true"));
    char first[1024];
    memcpy(first, desc, need + 1);
    const char *words[32];
    size_t nw = 0;
    for (char *tok = strtok(desc, " "); tok && nw < 32; tok = strtok(NULL, " ")) words[nw++] = tok;
    txt_config d = txt_config_default();
    TU_OK(txt_config_parse(&d, words, nw, &e));
    /* field by field through the description, which names every setting (a byte compare of the
     * structs would read their padding) */
    char again[1024];
    assert_int_equal(txt_config_describe(&d, again, sizeof again), need);
    assert_string_equal(first, again);
    assert_int_equal(d.buckets, c.buckets);
    assert_int_equal(d.max_ids, c.max_ids);
    char small[8];
    assert_int_equal(txt_config_describe(&c, small, sizeof small), need);
    assert_int_equal(strlen(small), 7);

    const struct {
        const char *item, *msg;
    } bad[] = {
        {"bukets=3", "unknown text option 'bukets' (known: nfkc, casefold,"},
        {"buckets", "text option 'buckets': expected key=value"},
        {"=3", "expected key=value"},
        {"nmin=abc", "text option nmin=abc: expected a whole number"},
        {"buckets=-1", "expected a whole number"},
        {"buckets=0x10", "expected a whole number"},
        {"buckets=", "expected a whole number"},
        {"nmax=99", "text option nmax=99: must be in [1, 16]"},
        {"buckets=99999999999999999999", "must be in [0, 268435456]"},
        {"casefold=maybe", "casefold=maybe: expected true/false"},
        {"unit=byte", "unit=byte: expected grapheme or codepoint"},
        {"nmin=5", "need 1 <= nmin <= nmax"}, /* passes alone, fails the cross check */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        txt_config x = txt_config_default();
        xd_err_clear(&e);
        if (txt_config_parse(&x, &bad[i].item, 1, &e) != XD_EARG)
            fail_msg("'%s' was accepted", bad[i].item);
        if (!strstr(e.msg, bad[i].msg))
            fail_msg("'%s': message '%s' does not contain '%s'", bad[i].item, e.msg, bad[i].msg);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Encoding rows */

static void test_truncate_and_pad(void **state)
{
    (void)state;
    txt_config c = txt_config_default();
    txt_tokenizer t;
    init_tok(&t, &c, NULL);
    const char *text = "The quick brown fox jumps over the lazy dog";
    int32_t full[512], part[7];
    size_t n_full, n_part;
    bool cut;
    xd_err e;
    TU_OK(txt_encode(&t, text, strlen(text), full, 512, &n_full, &cut, &e));
    assert_false(cut);
    assert_true(n_full > 100); /* 9 words x about 3 n-grams per character */
    TU_OK(txt_encode(&t, text, strlen(text), part, 7, &n_part, &cut, &e));
    assert_true(cut);
    assert_int_equal(n_part, 7);
    assert_memory_equal(part, full, sizeof part);
    int32_t exact[512];
    TU_OK(txt_encode(&t, text, strlen(text), exact, n_full, &n_part, &cut, &e));
    assert_false(cut); /* exactly full is not truncated */
    assert_int_equal(n_part, n_full);
    for (size_t i = 0; i < n_full; i++) assert_true(full[i] >= 0 && full[i] < 65536);

    int32_t row[6] = {5, 6, 7, 8, 9, 10};
    txt_pad_row(row, 2, 6);
    int32_t want_row[6] = {5, 6, -1, -1, -1, -1};
    assert_memory_equal(row, want_row, sizeof row);
    int32_t m[3][4] = {{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}};
    size_t counts[3] = {0, 4, 9};
    txt_pad_rows(&m[0][0], 3, 4, counts);
    int32_t want_m[3][4] = {{-1, -1, -1, -1}, {1, 2, 3, 4}, {1, 2, 3, 4}};
    assert_memory_equal(m, want_m, sizeof m);

    /* an empty text and a text of separators give no ids */
    TU_OK(txt_encode(&t, "", 0, full, 512, &n_full, &cut, &e));
    assert_int_equal(n_full, 0);
    TU_OK(txt_encode(&t, " ,. \t", 5, full, 512, &n_full, &cut, &e));
    assert_int_equal(n_full, 0);
    assert_int_equal(txt_encode(&t, "ok \xFF", 4, full, 512, &n_full, &cut, &e), XD_EFORMAT);
    assert_string_equal(e.msg, "byte 3: invalid UTF-8 (byte never used in UTF-8; bytes ff)");
}

/* Texts in many scripts, made deterministically from phrases. */
static const char *const phrases[] = {
    "Straße", "ＦＵＬＬ width", "café au lait", "東京タワーに行きました", "我爱北京天安门",
    "한국어 문장입니다", "Привет, мир!", "สวัสดีครับ ภาษาไทย", "नमस्ते दुनिया", "مرحبا بالعالم",
    "👨\u200D👩\u200D👧 family", "🇰🇷🇯🇵 flags", "❤️ love", "Ελληνικά γράμματα", "ສະບາຍດີ",
    "ážšíýé", "ខ្មែរ", "မြန်မာ", "quick brown fox", "2024年3月", "$100 + 5%", "don't stop",
};
#define N_PHRASES (sizeof phrases / sizeof phrases[0])

static char **make_texts(size_t n)
{
    char **texts = malloc(n * sizeof *texts);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        char buf[1024];
        size_t used = 0;
        size_t parts = 1 + i % 5;
        buf[0] = '\0';
        for (size_t k = 0; k < parts; k++) {
            s = s * 1664525u + 1013904223u;
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", k ? " " : "",
                                     phrases[(s >> 8) % N_PHRASES]);
        }
        texts[i] = strdup(buf);
    }
    return texts;
}

static void test_parallel_equals_serial(void **state)
{
    (void)state;
#ifdef _OPENMP
    xd_threads_set(4);
#endif
    const size_t N = 600, L = 24;
    char **texts = make_texts(N);
    txt_config c = txt_config_default();
    c.buckets = 5000;
    txt_vocab v;
    xd_err e;
    TU_OK(txt_vocab_build(&c, (const char *const *)texts, NULL, N, &v, &e));
    assert_true(v.n > 50);
    txt_tokenizer t;
    init_tok(&t, &c, &v);
    uint32_t num = txt_num_ids(&t);
    assert_int_equal(num, 5000 + v.n);

    int32_t *par = malloc(N * L * sizeof *par), *ser = malloc(N * L * sizeof *ser);
    size_t par_cut = 0, ser_cut = 0, ser_counts[600];
    TU_OK(txt_encode_batch(&t, (const char *const *)texts, NULL, N, L, par, &par_cut, &e));
    for (size_t i = 0; i < N; i++) {
        bool cut;
        TU_OK(txt_encode(&t, texts[i], strlen(texts[i]), ser + i * L, L, &ser_counts[i], &cut, &e));
        ser_cut += cut;
        assert_true(ser_counts[i] > 0);
    }
    txt_pad_rows(ser, N, L, ser_counts);
    assert_memory_equal(par, ser, N * L * sizeof *par);
    assert_int_equal(par_cut, ser_cut);
    assert_true(par_cut > 0 && par_cut < N); /* both cases occur */
    size_t words = 0;
    for (size_t i = 0; i < N * L; i++) {
        assert_true(par[i] >= -1 && par[i] < (int32_t)num);
        words += par[i] >= 5000;
    }
    assert_true(words > N); /* vocabulary words were found */
    free(par);
    free(ser);
    txt_vocab_free(&v);
    for (size_t i = 0; i < N; i++) free(texts[i]);
    free(texts);
}

static void test_batch_errors(void **state)
{
    (void)state;
    const char *texts[12];
    for (size_t i = 0; i < 12; i++) texts[i] = phrases[i];
    texts[9] = "late \xC0\xAF";
    texts[5] = "bad \xF4\x90\x80\x80 text";
    txt_config c = txt_config_default();
    c.buckets = 777;
    txt_tokenizer t;
    init_tok(&t, &c, NULL);
    int32_t ids[12 * 16];
    xd_err e;
    assert_int_equal(txt_encode_batch(&t, texts, NULL, 12, 16, ids, NULL, &e), XD_EFORMAT);
    assert_string_equal(e.msg, "text 5: byte 4: invalid UTF-8 (code point above U+10FFFF; bytes f4)");

    c.norm.replace_invalid = true;
    init_tok(&t, &c, NULL);
    size_t cut;
    TU_OK(txt_encode_batch(&t, texts, NULL, 12, 16, ids, &cut, &e));
    /* "late" then two U+FFFD symbols: each "<\uFFFD>" */
    int32_t fffd = (int32_t)(ref_fnv("<\xEF\xBF\xBD>") % 777);
    const int32_t *row = ids + 9 * 16;
    int hits = 0;
    for (size_t j = 0; j < 16; j++) hits += row[j] == fffd;
    assert_int_equal(hits, 2);
    assert_int_equal(row[15], TXT_PAD);
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
        cmocka_unit_test(test_hash_ids),
        cmocka_unit_test(test_vocab_build_save_load),
        cmocka_unit_test(test_vocab_load_rejects),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_truncate_and_pad),
        cmocka_unit_test(test_parallel_equals_serial),
        cmocka_unit_test(test_batch_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
