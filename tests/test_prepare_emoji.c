/* modalities/sets: `xdistill prepare emoji` on a fake emoji package tree the tests write
 * themselves: the key and texts, layouts, labels, the split-by-emoji rule, styles from other
 * packages, file:line errors and no outputs after a failure. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/png.h"
#include "modalities/sets/common.h"
#include "tests/support/dsread.h"

// ----------------------------------------------------------------------------------------------
// fake emoji packages

#define IMG_DIR "cache/emoji-datasource-google-16.0.0"
#define TXT_DIR "cache/emojibase-data-17.0.0"

/* A uniform 64x64 RGBA image of colour (r, g, b, a). */
static void write_emoji_png(const char *name, int r, int g, int b, int a)
{
    io_image img = {.w = 64, .h = 64, .c = 4};
    img.px = malloc(64 * 64 * 4);
    for (int i = 0; i < 64 * 64; i++) {
        img.px[4 * i] = (uint8_t)r;
        img.px[4 * i + 1] = (uint8_t)g;
        img.px[4 * i + 2] = (uint8_t)b;
        img.px[4 * i + 3] = (uint8_t)a;
    }
    char p[256];
    snprintf(p, sizeof p, IMG_DIR "/img/google/64/%s", name);
    xd_err e;
    TU_OK(io_png_write(p, &img, &e));
    free(img.px);
}

/* Six emoji in four groups (plus a Component that is left out); waving hand has two skin tones,
 * thumbs up one. emoji.json is deliberately not in sort order. */
static const char *emoji_json =
    "[\n"
    " {\"unified\":\"1F44B\",\"image\":\"1f44b.png\",\"category\":\"People & Body\","
    "\"subcategory\":\"hand-fingers-open\",\"sort_order\":10,\"skin_variations\":{"
    "\"1F3FC\":{\"unified\":\"1F44B-1F3FC\",\"image\":\"1f44b-1f3fc.png\"},"
    "\"1F3FB\":{\"unified\":\"1F44B-1F3FB\",\"image\":\"1f44b-1f3fb.png\"}}},\n"
    " {\"unified\":\"1F600\",\"image\":\"1f600.png\",\"category\":\"Smileys & Emotion\","
    "\"subcategory\":\"face-smiling\",\"sort_order\":1},\n"
    " {\"unified\":\"1F3FB\",\"image\":\"1f3fb.png\",\"category\":\"Component\","
    "\"subcategory\":\"skin-tone\",\"sort_order\":50},\n"
    " {\"unified\":\"2764-FE0F\",\"image\":\"2764-fe0f.png\",\"category\":\"Symbols\","
    "\"subcategory\":\"heart\",\"sort_order\":5},\n"
    " {\"unified\":\"1F44D\",\"image\":\"1f44d.png\",\"category\":\"People & Body\","
    "\"subcategory\":\"hand-fingers-closed\",\"sort_order\":11,\"skin_variations\":{"
    "\"1F3FB\":{\"unified\":\"1F44D-1F3FB\",\"image\":\"1f44d-1f3fb.png\"}}},\n"
    " {\"unified\":\"1F603\",\"image\":\"1f603.png\",\"category\":\"Smileys & Emotion\","
    "\"subcategory\":\"face-smiling\",\"sort_order\":2},\n"
    " {\"unified\":\"1F34E\",\"image\":\"1f34e.png\",\"category\":\"Food & Drink\","
    "\"subcategory\":\"food-fruit\",\"sort_order\":20}\n"
    "]\n";

static const char *en_json =
    "[\n"
    " {\"label\":\"grinning face\",\"hexcode\":\"1F600\",\"tags\":[\"face\",\"grin\"]},\n"
    " {\"label\":\"grinning face with big eyes\",\"hexcode\":\"1F603\",\"tags\":[\"mouth\"]},\n"
    " {\"label\":\"waving hand\",\"hexcode\":\"1F44B\",\"tags\":[\"hand\",\"wave\"],\"skins\":["
    "{\"label\":\"waving hand: light skin tone\",\"hexcode\":\"1F44B-1F3FB\"}]},\n"
    " {\"label\":\"thumbs up\",\"hexcode\":\"1F44D\"},\n"
    " {\"label\":\"red heart\",\"hexcode\":\"2764\",\"tags\":[\"heart\"]},\n"
    " {\"label\":\"red apple\",\"hexcode\":\"1F34E\",\"tags\":[\"apple\",\"fruit\"]}\n"
    "]\n";

static const char *ko_json =
    "[\n"
    " {\"label\":\"\xEC\x9B\x83\xEB\x8A\x94 \xEC\x96\xBC\xEA\xB5\xB4\",\"hexcode\":\"1F600\","
    "\"tags\":[\"\xEC\x96\xBC\xEA\xB5\xB4\"]},\n"
    " {\"label\":\"\xEC\x86\x90\",\"hexcode\":\"1f44b\",\"skins\":[{\"label\":\"\xEC\x86\x90: "
    "\xEB\xB0\x9D\xEC\x9D\x80\",\"hexcode\":\"1f44b-1f3fc\",\"tags\":[\"\xED\x94\xBC\xEB\xB6\x80\"]}]}\n"
    "]\n";

static void write_emoji_tree(void)
{
    mkdir("cache", 0777);
    mkdir(IMG_DIR, 0777);
    mkdir(IMG_DIR "/img", 0777);
    mkdir(IMG_DIR "/img/google", 0777);
    mkdir(IMG_DIR "/img/google/64", 0777);
    mkdir(TXT_DIR, 0777);
    mkdir(TXT_DIR "/en", 0777);
    mkdir(TXT_DIR "/ko", 0777);
    mkdir(TXT_DIR "/meta", 0777); /* no data.json: not a language */
    tu_write_text(IMG_DIR "/emoji.json", emoji_json);
    tu_write_text(TXT_DIR "/en/data.json", en_json);
    tu_write_text(TXT_DIR "/ko/data.json", ko_json);
    write_emoji_png("1f44b.png", 200, 0, 0, 255);
    write_emoji_png("1f44b-1f3fb.png", 210, 0, 0, 255);
    write_emoji_png("1f44b-1f3fc.png", 220, 0, 0, 255);
    write_emoji_png("1f600.png", 0, 100, 0, 128);
    write_emoji_png("1f3fb.png", 1, 1, 1, 255);
    write_emoji_png("2764-fe0f.png", 0, 0, 60, 255);
    write_emoji_png("1f44d.png", 10, 10, 10, 255);
    write_emoji_png("1f44d-1f3fb.png", 20, 20, 20, 255);
    write_emoji_png("1f603.png", 30, 30, 30, 0);
    write_emoji_png("1f34e.png", 40, 40, 40, 255);
}

static int emoji_setup(void **state)
{
    (void)state;
    write_emoji_tree();
    return 0;
}

/* Index of the example with code `code` in a split's code table, or -1. */
static long find_code(const io_strings *codes, const char *code)
{
    size_t len;
    for (size_t i = 0; i < codes->n; i++)
        if (strcmp(io_strings_get(codes, i, &len), code) == 0) return (long)i;
    return -1;
}

static void test_emoji_key_and_text(void **state)
{
    (void)state;
    char k[64];
    assert_int_equal(sets_emoji_key("2764-fe0f", k, sizeof k), 0);
    assert_string_equal(k, "2764");
    assert_int_equal(sets_emoji_key("1f469-200D-2764-FE0F-200d-1F468", k, sizeof k), 0);
    assert_string_equal(k, "1F469-200D-2764-200D-1F468");
    assert_int_equal(sets_emoji_key("FE0F", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("12G4", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("1234567", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("1F600--1F3FB", k, sizeof k), -1);
    assert_int_equal(sets_emoji_key("", k, sizeof k), -1);
    const char *tags[] = {"face", "grin"};
    char *t = sets_emoji_text("grinning face", tags, 2);
    assert_string_equal(t, "grinning face; face, grin");
    free(t);
    t = sets_emoji_text("thumbs up", NULL, 0);
    assert_string_equal(t, "thumbs up");
    free(t);
    t = sets_emoji_text("", tags, 2);
    assert_string_equal(t, "");
    free(t);
}

static void test_emoji_set(void **state)
{
    (void)state;
    sets_emoji_opts o = sets_emoji_defaults();
    o.out = "emo_out";
    o.cache = "cache";
    o.size = 8;
    o.test_fraction = 0.5;
    sets_summary sum;
    xd_err e;
    xd_status s = sets_emoji(&o, &sum, &e);
    if (s) fail_msg("%s", e.msg);
    assert_int_equal(sum.n[0] + sum.n[1], 9); /* 6 emoji + 3 skin variants, no Component */
    assert_int_equal(sum.n_classes, 4);
    /* groups ordered by their first sort_order */
    assert_string_equal(sum.classes[0], "Smileys & Emotion");
    assert_string_equal(sum.classes[1], "Symbols");
    assert_string_equal(sum.classes[2], "People & Body");
    assert_string_equal(sum.classes[3], "Food & Drink");
    assert_int_equal(sum.n_langs, 2);
    assert_string_equal(sum.langs[0], "en");
    assert_string_equal(sum.langs[1], "ko");
    /* ko lacks 1F603, 2764, 1F44D (+ skin), 1F34E: 5 of 9 missing */
    assert_int_equal(sum.missing[1 * 2 + 0] + sum.missing[1 * 2 + 1], 5);
    assert_int_equal(sum.missing[0 * 2 + 0] + sum.missing[0 * 2 + 1], 0);
    assert_int_equal(sum.n_extra_classes, 5);
    sets_summary_free(&sum);

    io_dataset *ds = tu_open_ds("emo_out/dataset.xds");
    assert_string_equal(io_dataset_meta(ds, "kind"), "paired");
    assert_string_equal(io_dataset_meta(ds, "languages"), "en,ko");
    assert_string_equal(io_dataset_meta(ds, "size"), "8");
    int found[16] = {0};
    size_t len, n_test_emoji = 0;
    int in_split[2000];
    memset(in_split, -1, sizeof in_split);
    for (int split = 0; split < 2; split++) {
        const char *sp = split ? "test" : "train";
        char nm[64];
        snprintf(nm, sizeof nm, "%s/code", sp);
        const io_strings *codes = tu_need_str(ds, nm);
        snprintf(nm, sizeof nm, "%s/text.en", sp);
        const io_strings *en = tu_need_str(ds, nm);
        snprintf(nm, sizeof nm, "%s/text.ko", sp);
        const io_strings *ko = tu_need_str(ds, nm);
        snprintf(nm, sizeof nm, "%s/image", sp);
        const io_tensor *img = tu_need(ds, nm, IO_U8, 4);
        snprintf(nm, sizeof nm, "%s/id", sp);
        const int32_t *id = tu_need(ds, nm, IO_I32, 1)->data;
        snprintf(nm, sizeof nm, "%s/label", sp);
        const int32_t *y = tu_need(ds, nm, IO_I32, 1)->data;
        snprintf(nm, sizeof nm, "%s/label.subgroup", sp);
        const int32_t *sub = tu_need(ds, nm, IO_I32, 1)->data;
        assert_int_equal(img->shape[1], 8);
        assert_int_equal(img->shape[2], 8);
        assert_int_equal(img->shape[3], 3);
        assert_int_equal((size_t)img->shape[0], codes->n);
        const uint8_t *px = img->data;
        for (size_t i = 0; i < codes->n; i++) {
            /* the split-by-emoji rule: an emoji id lives in one split only */
            if (in_split[id[i]] == -1) {
                in_split[id[i]] = split;
                if (split) n_test_emoji++;
            }
            assert_int_equal(in_split[id[i]], split);
        }
        long k;
        if ((k = find_code(codes, "1F600")) >= 0) {
            found[0]++;
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "grinning face; face, grin");
            assert_string_equal(io_strings_get(ko, (size_t)k, &len),
                                "\xEC\x9B\x83\xEB\x8A\x94 \xEC\x96\xBC\xEA\xB5\xB4; "
                                "\xEC\x96\xBC\xEA\xB5\xB4");
            assert_int_equal(y[k], 0);
            assert_int_equal(id[k], 1);
            /* (0,100,0) at alpha 128 over white: (128 c + 127 * 255) / 255, rounded */
            const uint8_t *p = px + (size_t)k * 192;
            assert_int_equal(p[0], 127);
            assert_int_equal(p[1], 177);
            assert_int_equal(p[2], 127);
            assert_int_equal(p[191], 127);
        }
        if ((k = find_code(codes, "1F603")) >= 0) {
            found[1]++;
            assert_string_equal(io_strings_get(ko, (size_t)k, &len), "");
            assert_int_equal(px[(size_t)k * 192 + 100], 255); /* fully transparent: white */
        }
        if ((k = find_code(codes, "1F44B-1F3FB")) >= 0) {
            found[2]++;
            /* the skin's own label, with the base's tags */
            assert_string_equal(io_strings_get(en, (size_t)k, &len),
                                "waving hand: light skin tone; hand, wave");
            assert_string_equal(io_strings_get(ko, (size_t)k, &len), "\xEC\x86\x90");
            assert_int_equal(y[k], 2);
            assert_int_equal(id[k], 0);
            assert_int_equal(px[(size_t)k * 192], 210);
        }
        if ((k = find_code(codes, "1F44B-1F3FC")) >= 0) {
            found[3]++;
            /* no en skin entry: the base emoji's text; ko has the skin with its own tags */
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "waving hand; hand, wave");
            assert_string_equal(io_strings_get(ko, (size_t)k, &len),
                                "\xEC\x86\x90: \xEB\xB0\x9D\xEC\x9D\x80; \xED\x94\xBC\xEB\xB6\x80");
            assert_int_equal(px[(size_t)k * 192], 220);
        }
        if ((k = find_code(codes, "2764-FE0F")) >= 0) {
            found[4]++; /* joined with emojibase's 2764 */
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "red heart; heart");
            assert_int_equal(y[k], 1);
        }
        if ((k = find_code(codes, "1F44D")) >= 0) {
            found[5]++;
            assert_string_equal(io_strings_get(en, (size_t)k, &len), "thumbs up");
        }
        if ((k = find_code(codes, "1F34E")) >= 0) {
            found[6]++;
            assert_int_equal(y[k], 3);
            const io_strings *subs = tu_need_str(ds, "classes.subgroup");
            assert_string_equal(io_strings_get(subs, (size_t)sub[k], &len), "food-fruit");
        }
        assert_int_equal(find_code(codes, "1F3FB"), -1); /* Component left out */
    }
    for (int i = 0; i < 7; i++) assert_int_equal(found[i], 1);
    /* stratified at 0.5: 1 of 2 smileys, 1 of 1 symbol, 1 of 2 hands, 1 of 1 food */
    assert_int_equal(n_test_emoji, 4);
    io_dataset_close(ds);

    /* same seed: same bytes (run in the existing folder too) */
    sets_emoji_opts o2 = o;
    o2.out = "emo_out2";
    TU_OK(sets_emoji(&o2, &sum, &e));
    sets_summary_free(&sum);
    assert_true(tu_same_file("emo_out/dataset.xds", "emo_out2/dataset.xds"));
    TU_OK(sets_emoji(&o2, &sum, &e));
    sets_summary_free(&sum);
    assert_true(tu_same_file("emo_out/dataset.xds", "emo_out2/dataset.xds"));

    /* other options never silently replace a data set (the README's 3-language command once
     * overwrote the 28-language set): an error naming the folder and the option, untouched
     * file; --force replaces it */
    o2.langs = "ko";
    assert_int_equal(sets_emoji(&o2, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "emo_out2: holds a data set made with languages=");
    tu_assert_err(&e, XD_EARG, "this run makes languages=ko; give another --out, or --force");
    assert_true(tu_same_file("emo_out/dataset.xds", "emo_out2/dataset.xds"));
    o2.langs = NULL;
    o2.size = 4;
    assert_int_equal(sets_emoji(&o2, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "made with size=8, this run makes size=4");
    o2.size = o.size;
    sets_manifest_opts mo = sets_manifest_defaults();
    tu_write_text("emo_pairs.tsv", "image_path\ttext\tlabel\n");
    mo.manifest = "emo_pairs.tsv";
    mo.out = "emo_out2";
    assert_int_equal(sets_manifest(&mo, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "emo_out2: holds the 'emoji' data set, this run makes 'emo_pairs'");
    o2.force = 1;

    /* other seeds keep every emoji in one split, and do change the split */
    int grinning_in[2] = {0, 0};
    for (uint64_t seed = 2; seed < 12; seed++) {
        o2.seed = seed;
        o2.langs = "ko";
        TU_OK(sets_emoji(&o2, &sum, &e));
        assert_int_equal(sum.n_langs, 1);
        sets_summary_free(&sum);
        ds = tu_open_ds("emo_out2/dataset.xds");
        const io_tensor *a = tu_need(ds, "train/id", IO_I32, 1), *b = tu_need(ds, "test/id", IO_I32, 1);
        const int32_t *ia = a->data, *ib = b->data;
        for (int64_t i = 0; i < a->shape[0]; i++)
            for (int64_t j = 0; j < b->shape[0]; j++) assert_int_not_equal(ia[i], ib[j]);
        for (int64_t j = 0; j < b->shape[0]; j++)
            if (ib[j] == 1) grinning_in[1]++; /* 1F600 is entry 1 of emoji.json */
        for (int64_t i = 0; i < a->shape[0]; i++)
            if (ia[i] == 1) grinning_in[0]++;
        assert_true(b->shape[0] > 0);
        assert_null(io_dataset_find_strings(ds, "train/text.en"));
        io_dataset_close(ds);
    }
    assert_int_equal(grinning_in[0] + grinning_in[1], 10);
    assert_true(grinning_in[0] > 0 && grinning_in[1] > 0);
}

static void test_emoji_errors(void **state)
{
    (void)state;
    sets_emoji_opts o = sets_emoji_defaults();
    o.out = "emo_bad";
    o.cache = "cache";
    sets_summary sum;
    xd_err e;

    o.langs = "en,xx";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "no language 'xx'");
    o.langs = "en,en";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "twice");
    o.langs = NULL;

    /* invalid UTF-8 in a language file: file, line and byte */
    tu_write_text(TXT_DIR "/ko/data.json", "[\n {\"label\":\"\xC3\x28\",\"hexcode\":\"1F600\"}\n]\n");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, TXT_DIR "/ko/data.json:2: byte 11");
    /* broken JSON: line and column */
    tu_write_text(TXT_DIR "/ko/data.json", "[\n {\"label\":\"x\",\n \"hexcode\" 1F600}\n]\n");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, TXT_DIR "/ko/data.json:3:");
    /* a tag that is not a string */
    tu_write_text(TXT_DIR "/ko/data.json", "[{\"label\":\"x\",\"hexcode\":\"1F600\",\"tags\":[1]}]");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "tag 0 is not a string");
    tu_write_text(TXT_DIR "/ko/data.json", ko_json);

    /* an image name that leaves the folder */
    tu_write_text(IMG_DIR "/emoji.json",
               "[{\"unified\":\"1F600\",\"image\":\"../x.png\",\"category\":\"A\","
               "\"subcategory\":\"b\"}]");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "not a plain .png file name");
    /* one code twice: two examples with one code could land in both train and test */
    tu_write_text(IMG_DIR "/emoji.json",
               "[{\"unified\":\"1F600\",\"image\":\"1f600.png\",\"category\":\"A\","
               "\"subcategory\":\"b\"},"
               "{\"unified\":\"1F34E\",\"image\":\"1f34e.png\",\"category\":\"A\","
               "\"subcategory\":\"b\"},"
               "{\"unified\":\"1f600\",\"image\":\"1f603.png\",\"category\":\"A\","
               "\"subcategory\":\"c\"}]");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, IMG_DIR "/emoji.json: emoji 1F600 is listed twice");
    /* a skin variant that is also listed as an emoji of its own */
    char *dup = malloc(strlen(emoji_json) + 200);
    strcpy(dup, "[{\"unified\":\"1F44D-1F3FB\",\"image\":\"1f44d-1f3fb.png\","
                "\"category\":\"A\",\"subcategory\":\"b\"},");
    strcat(dup, strchr(emoji_json, '[') + 1);
    tu_write_text(IMG_DIR "/emoji.json", dup);
    free(dup);
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "emoji 1F44D-1F3FB is listed twice");
    tu_write_text(IMG_DIR "/emoji.json", emoji_json);

    /* a truncated PNG: the emoji is named */
    size_t n;
    void *png = tu_read_file(IMG_DIR "/img/google/64/1f34e.png", &n);
    tu_write_file(IMG_DIR "/img/google/64/1f34e.png", png, n / 2);
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "emoji 1F34E");
    tu_assert_err(&e, XD_EFORMAT, "1f34e.png");
    tu_write_file(IMG_DIR "/img/google/64/1f34e.png", png, n);
    free(png);
    tu_assert_nothing_left(".", "emo_bad");

    /* nothing in the cache and no way to fetch: we never reach the network in tests */
    o.cache = "empty_cache";
    mkdir("empty_cache", 0777);
    mkdir("empty_cache/" SETS_EMOJI_IMAGES_PKG "-" SETS_EMOJI_IMAGES_VERSION, 0777);
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "emoji.json");
}

// ----------------------------------------------------------------------------------------------
// emoji styles

#define APPLE_DIR "cache/emoji-datasource-apple-16.0.0"

/* emoji_json where apple lacks 1F603 and the 1F44B-1F3FC skin (has_img_apple false), as every
 * package of the family ships it. */
static char *styled_emoji_json(void)
{
    const char *miss[] = {"\"image\":\"1f44b-1f3fc.png\"", "\"image\":\"1f603.png\""}; /* file order */
    const char *add = ",\"has_img_apple\":false";
    size_t cap = strlen(emoji_json) + 2 * strlen(add) + 1, at = 0;
    char *out = malloc(cap);
    const char *r = emoji_json;
    for (int i = 0; i < 2; i++) {
        const char *hit = strstr(r, miss[i]);
        assert_non_null(hit);
        size_t upto = (size_t)(hit - r) + strlen(miss[i]);
        at += (size_t)snprintf(out + at, cap - at, "%.*s%s", (int)upto, r, add);
        r += upto;
    }
    snprintf(out + at, cap - at, "%s", r);
    return out;
}

/* The apple package: the same emoji.json, every image it has in (77, 10 + i, 0). */
static void write_apple_tree(void)
{
    char *json = styled_emoji_json();
    mkdir(APPLE_DIR, 0777);
    mkdir(APPLE_DIR "/img", 0777);
    mkdir(APPLE_DIR "/img/apple", 0777);
    mkdir(APPLE_DIR "/img/apple/64", 0777);
    tu_write_text(APPLE_DIR "/emoji.json", json);
    tu_write_text(IMG_DIR "/emoji.json", json);
    free(json);
    const char *have[] = {"1f44b.png", "1f44b-1f3fb.png", "1f600.png", "1f3fb.png",
                          "2764-fe0f.png", "1f44d.png", "1f44d-1f3fb.png", "1f34e.png"};
    io_image img = {.w = 64, .h = 64, .c = 3};
    img.px = malloc(64 * 64 * 3);
    for (int i = 0; i < 8; i++) {
        for (int p = 0; p < 64 * 64; p++) {
            img.px[3 * p] = 77;
            img.px[3 * p + 1] = (uint8_t)(10 + i);
            img.px[3 * p + 2] = 0;
        }
        char path[256];
        snprintf(path, sizeof path, APPLE_DIR "/img/apple/64/%s", have[i]);
        xd_err e;
        TU_OK(io_png_write(path, &img, &e));
    }
    free(img.px);
}

/* One split of a made set, by emoji code point: split, style and first pixel of each example. */
typedef struct {
    const io_strings *code, *en;
    const int32_t *id, *y, *style;
    const uint8_t *px, *mask;
    size_t n;
} style_split;

static style_split read_style_split(const io_dataset *ds, const char *sp)
{
    char nm[64];
    style_split r;
    snprintf(nm, sizeof nm, "%s/code", sp);
    r.code = tu_need_str(ds, nm);
    snprintf(nm, sizeof nm, "%s/text.en", sp);
    r.en = tu_need_str(ds, nm);
    snprintf(nm, sizeof nm, "%s/id", sp);
    r.id = tu_need(ds, nm, IO_I32, 1)->data;
    snprintf(nm, sizeof nm, "%s/label", sp);
    r.y = tu_need(ds, nm, IO_I32, 1)->data;
    snprintf(nm, sizeof nm, "%s/label_mask", sp);
    r.mask = tu_need(ds, nm, IO_U8, 1)->data;
    snprintf(nm, sizeof nm, "%s/label.style", sp);
    const io_tensor *st = io_dataset_find(ds, nm);
    r.style = st ? st->data : NULL;
    snprintf(nm, sizeof nm, "%s/image", sp);
    r.px = tu_need(ds, nm, IO_U8, 4)->data;
    r.n = r.code->n;
    return r;
}

static void test_emoji_styles(void **state)
{
    (void)state;
    write_apple_tree();
    sets_emoji_opts o = sets_emoji_defaults();
    o.cache = "cache";
    o.size = 4;
    o.test_fraction = 0.5;
    o.langs = "en";
    sets_summary sum;
    xd_err e;
    size_t len;

    /* google (the default) and apple alone */
    o.out = "st_google";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 9);
    assert_int_equal(sum.n_no_image, 0);
    sets_summary_free(&sum);
    o.out = "st_apple";
    o.styles = "apple";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 7); /* 9 less the two apple lacks, counted */
    assert_int_equal(sum.n_no_image, 2);
    sets_summary_free(&sum);
    o.out = "st_both";
    o.styles = "google,apple";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 16);
    assert_int_equal(sum.n_styles, 2);
    assert_int_equal(sum.n_unlabelled[0], 0);
    sets_summary_free(&sum);

    io_dataset *g = tu_open_ds("st_google/dataset.xds"), *a = tu_open_ds("st_apple/dataset.xds"),
               *b = tu_open_ds("st_both/dataset.xds");
    assert_string_equal(io_dataset_meta(a, "source.images"), "emoji-datasource-apple@16.0.0");
    assert_string_equal(io_dataset_meta(b, "source.images"),
                        "emoji-datasource-google@16.0.0,emoji-datasource-apple@16.0.0");
    assert_null(io_dataset_find(g, "train/label.style"));
    assert_null(io_dataset_find_strings(a, "classes.style"));
    const io_strings *names = tu_need_str(b, "classes.style");
    assert_int_equal(names->n, 2);
    assert_string_equal(io_strings_get(names, 0, &len), "google");
    assert_string_equal(io_strings_get(names, 1, &len), "apple");
    int split_of[16];
    memset(split_of, -1, sizeof split_of);
    for (int k = 0; k < 2; k++) {
        style_split sg = read_style_split(g, sets_split_names[k]);
        for (size_t i = 0; i < sg.n; i++) split_of[sg.id[i]] = k;
    }
    for (int k = 0; k < 2; k++) {
        style_split sg = read_style_split(g, sets_split_names[k]);
        style_split sa = read_style_split(a, sets_split_names[k]);
        style_split sb = read_style_split(b, sets_split_names[k]);
        /* --style apple: apple's pictures only, none of the two it lacks */
        for (size_t i = 0; i < sa.n; i++) {
            assert_int_equal(sa.px[i * 48], 77);
            assert_int_equal(split_of[sa.id[i]], k); /* the same split by emoji */
        }
        assert_int_equal(find_code(sa.code, "1F603"), -1);
        assert_int_equal(find_code(sa.code, "1F44B-1F3FC"), -1);
        /* --styles google,apple: each (emoji, style) once, the same texts and labels */
        assert_non_null(sb.style);
        size_t per_style[2] = {0, 0};
        for (size_t i = 0; i < sb.n; i++) {
            const char *code = io_strings_get(sb.code, i, &len);
            assert_int_equal(split_of[sb.id[i]], k);
            assert_true(sb.style[i] == 0 || sb.style[i] == 1);
            per_style[sb.style[i]]++;
            style_split *one = sb.style[i] ? &sa : &sg;
            long j = find_code(one->code, code);
            assert_true(j >= 0);
            assert_string_equal(io_strings_get(sb.en, i, &len),
                                io_strings_get(one->en, (size_t)j, &len));
            assert_int_equal(sb.y[i], one->y[j]);
            assert_memory_equal(sb.px + i * 48, one->px + (size_t)j * 48, 48);
            for (size_t i2 = 0; i2 < i; i2++)
                if (strcmp(io_strings_get(sb.code, i2, &len), code) == 0)
                    assert_int_not_equal(sb.style[i2], sb.style[i]);
        }
        assert_int_equal(per_style[0], sg.n);
        assert_int_equal(per_style[1], sa.n);
    }
    io_dataset_close(g);
    io_dataset_close(a);
    io_dataset_close(b);

    /* --split-from: another seed and two styles keep google's split, emoji by emoji */
    o.out = "st_from";
    o.seed = 9;
    o.split_from = "st_google/dataset.xds";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n[0] + sum.n[1], 16);
    sets_summary_free(&sum);
    b = tu_open_ds("st_from/dataset.xds");
    assert_string_equal(io_dataset_meta(b, "split_from"), "st_google/dataset.xds");
    for (int k = 0; k < 2; k++) {
        style_split sb = read_style_split(b, sets_split_names[k]);
        for (size_t i = 0; i < sb.n; i++) assert_int_equal(split_of[sb.id[i]], k);
    }
    io_dataset_close(b);
    o.seed = sets_emoji_defaults().seed;
    o.split_from = NULL;

    /* labels of google only: apple's training examples lose theirs, the test keeps every one */
    o.out = "st_lab";
    o.labelled_styles = "google";
    TU_OK(sets_emoji(&o, &sum, &e));
    assert_int_equal(sum.n_unlabelled[1], 0);
    size_t n_unlab = sum.n_unlabelled[0];
    sets_summary_free(&sum);
    b = tu_open_ds("st_lab/dataset.xds");
    assert_string_equal(io_dataset_meta(b, "labelled_styles"), "google");
    for (int k = 0; k < 2; k++) {
        style_split sb = read_style_split(b, sets_split_names[k]);
        size_t n_apple = 0;
        for (size_t i = 0; i < sb.n; i++) {
            assert_int_equal(sb.mask[i], k == 1 || sb.style[i] == 0);
            n_apple += sb.style[i] == 1;
        }
        if (k == 0) assert_int_equal(n_unlab, n_apple);
    }
    io_dataset_close(b);
    /* other styles never silently replace a data set */
    o.labelled_styles = NULL;
    o.out = "st_apple";
    o.styles = NULL;
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "made with source.images=emoji-datasource-apple@16.0.0");

    /* unknown, repeated and unmade styles: clear errors, nothing written, nothing fetched */
    o.out = "st_bad";
    o.styles = "google,comic";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "unknown emoji style 'comic' (known: google, apple, facebook, "
                               "twitter)");
    assert_int_equal(sets_emoji_fetch("st_no_cache", "comic", NULL, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "unknown emoji style 'comic'");
    assert_false(tu_exists("st_no_cache"));
    o.styles = "apple,apple";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "emoji style 'apple' is asked for twice");
    o.styles = "google";
    o.labelled_styles = "apple";
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EARG);
    tu_assert_err(&e, XD_EARG, "labelled style 'apple' is not one of the styles made");
    /* a has_img flag that is not a boolean names the entry */
    o.labelled_styles = NULL;
    tu_write_text(IMG_DIR "/emoji.json",
               "[{\"unified\":\"1F600\",\"image\":\"1f600.png\",\"category\":\"A\","
               "\"subcategory\":\"b\",\"has_img_google\":1}]");
    assert_int_equal(sets_emoji(&o, &sum, &e), XD_EFORMAT);
    tu_assert_err(&e, XD_EFORMAT, "'has_img_google' must be true or false");
    tu_assert_nothing_left(".", "st_bad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emoji_key_and_text),
        cmocka_unit_test_setup(test_emoji_set, emoji_setup),
        cmocka_unit_test_setup(test_emoji_errors, emoji_setup),
        cmocka_unit_test_setup(test_emoji_styles, emoji_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
