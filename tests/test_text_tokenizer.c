/* modalities/text/: the tokenizer: hashed n-gram ids, vocabulary building and files, settings,
 * encoding rows, parallel encoding. UTF-8, normalisation and segmentation: test_text.c. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include "core/runtime.h"
#endif

#include "modalities/text/config.h"
#include "modalities/text/tokenizer.h"
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
