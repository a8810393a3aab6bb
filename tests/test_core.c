/* core/: status messages, arena, counter-based RNG, runs of work items, BLAS kernel choice. */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/bits.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "core/status.h"

static void test_status_message(void **state)
{
    (void)state;
    xd_err e;
    xd_err_clear(&e);
    assert_int_equal(xd_fail(&e, XD_EFORMAT, "offset %d: bad magic", 12), XD_EFORMAT);
    xd_err_prefix(&e, "%s", "model.safetensors");
    assert_string_equal(e.msg, "model.safetensors: offset 12: bad magic");
    assert_int_equal(e.code, XD_EFORMAT);
    assert_string_equal(xd_status_name(XD_EIO), "i/o error");
    /* a long message is cut, not overflowed */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    xd_fail(&e, XD_EARG, "%s", big);
    assert_int_equal(strlen(e.msg), XD_ERR_LEN - 1);
    /* one line: control characters of a name, in the message and in a prefix, escaped */
    xd_fail(&e, XD_EIO, "a\nb.png: cannot open%s", "\r\t\x01\x7f");
    xd_err_prefix(&e, "dir\nx");
    assert_string_equal(e.msg, "dir\\nx: a\\nb.png: cannot open\\r\\t\\x01\\x7f");
    /* a long message of line breaks is cut around its middle, the reason kept */
    memset(big, '\n', 1000);
    big[1000] = '\0';
    xd_fail(&e, XD_EARG, "%s: why", big);
    assert_null(strchr(e.msg, '\n'));
    assert_non_null(strstr(e.msg, "\\n: why"));
}

/* A message with a huge piece of input keeps where (its start) and why (its end); excerpts cut
 * long input at a character boundary. */
static void test_long_messages_keep_the_reason(void **state)
{
    (void)state;
    size_t n = (size_t)4 << 20;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    xd_err e;
    xd_fail(&e, XD_EARG, "r.yaml:7: name: '%s' is not a usable name", big);
    assert_true(strlen(e.msg) < XD_ERR_LEN);
    assert_memory_equal(e.msg, "r.yaml:7: name: 'xxx", 20);
    assert_non_null(strstr(e.msg, " [...] "));
    assert_non_null(strstr(e.msg, "xxx' is not a usable name"));
    xd_fail(&e, XD_EARG, "%s: the end", big);
    xd_err_prefix(&e, "data.xds");
    assert_memory_equal(e.msg, "data.xds: xxx", 13);
    assert_non_null(strstr(e.msg, "xxx: the end"));
    assert_true(strlen(e.msg) < XD_ERR_LEN);

    char q[XD_EXCERPT_BUF];
    assert_string_equal(xd_excerpt("short", q), "short");
    /* 59 'a' then a 2-byte character across the cut: the character is left out whole */
    char s[80];
    memset(s, 'a', 59);
    strcpy(s + 59, "\xc3\xa9tail");
    assert_string_equal(xd_excerpt(s, q) + 59, "...");
    assert_int_equal(strlen(xd_excerpt(big, q)), XD_EXCERPT_MAX + 3);
    free(big);
}

static void test_arena_grows_to_high_water(void **state)
{
    (void)state;
    xd_arena a;
    xd_arena_init(&a, 256);
    float *p = xd_arena_floats(&a, 16);
    assert_true(((uintptr_t)p & 63) == 0);
    float *q = xd_arena_zeros(&a, 1000); /* overflows the 256-byte block */
    for (int i = 0; i < 1000; i++) assert_true(q[i] == 0.0f);
    q[999] = 1.0f;
    assert_non_null(a.overflow);
    xd_arena_reset(&a);
    assert_null(a.overflow);
    assert_true(a.cap >= 64 + 4000);
    char *base = a.base;
    xd_arena_floats(&a, 16);
    xd_arena_floats(&a, 1000);
    assert_null(a.overflow); /* second step fits in one block */
    assert_ptr_equal(a.base, base);
    xd_arena_free(&a);
}

static void test_rng_streams(void **state)
{
    (void)state;
    xd_rng a = xd_rng_make(7, 3, XD_RNG_AUGMENT), b = xd_rng_make(7, 3, XD_RNG_AUGMENT);
    xd_rng c = xd_rng_make(7, 4, XD_RNG_AUGMENT), d = xd_rng_make(7, 3, XD_RNG_DROPOUT);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 64; i++) {
        uint64_t x = xd_rng_u64(&a);
        assert_true(x == xd_rng_u64(&b));
        same_c += x == xd_rng_u64(&c);
        same_d += x == xd_rng_u64(&d);
    }
    assert_int_equal(same_c, 0);
    assert_int_equal(same_d, 0);
    /* moments of uniform and normal over 200k draws */
    xd_rng r = xd_rng_make(1, 0, XD_RNG_USER);
    double su = 0, sn = 0, sn2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        float u = xd_rng_uniform(&r);
        assert_true(u >= 0.0f && u < 1.0f);
        su += u;
        double z = xd_rng_normal(&r);
        sn += z;
        sn2 += z * z;
    }
    assert_true(fabs(su / n - 0.5) < 0.005);
    assert_true(fabs(sn / n) < 0.01);
    assert_true(fabs(sn2 / n - 1.0) < 0.02);
    /* below(): every value reached, none out of range, roughly uniform */
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t v = xd_rng_below(&r, 7);
        assert_true(v < 7);
        counts[v]++;
    }
    for (int i = 0; i < 7; i++) assert_true(counts[i] > 9500 && counts[i] < 10500);
}

static void test_rng_shuffle_is_permutation(void **state)
{
    (void)state;
    uint32_t idx[100], seen[100] = {0};
    for (uint32_t i = 0; i < 100; i++) idx[i] = i;
    xd_rng r = xd_rng_make(5, 0, XD_RNG_SHUFFLE);
    xd_rng_shuffle(&r, idx, 100);
    int moved = 0;
    for (uint32_t i = 0; i < 100; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
    assert_true(moved > 80);
}

/* xd_perm is a bijection on [0, n) for every n (domains of 4^h, n at and around them), the same
 * for a key and another for another key. */
static void test_perm_is_bijection(void **state)
{
    (void)state;
    static const uint64_t ns[] = {1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 1000, 4096, 65537};
    uint8_t *seen = malloc(65537);
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        const uint64_t n = ns[c];
        xd_perm p = xd_perm_make(n, 7, 3, XD_RNG_SHUFFLE), q = xd_perm_make(n, 7, 3, XD_RNG_SHUFFLE);
        xd_perm other = xd_perm_make(n, 8, 3, XD_RNG_SHUFFLE);
        memset(seen, 0, n);
        uint64_t moved = 0, differ = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v = xd_perm_at(&p, i);
            assert_true(v < n);
            assert_int_equal(seen[v], 0);
            seen[v] = 1;
            assert_int_equal(xd_perm_at(&q, i), v);
            moved += v != i;
            differ += xd_perm_at(&other, i) != v;
        }
        if (n >= 1000) {
            assert_true(moved > n * 99 / 100);
            assert_true(differ > n * 99 / 100);
        }
    }
    free(seen);
}

/* Over 20000 keys every element of [0, 10) lands on every place about as often (2000 +- 15%,
 * seven standard deviations), and two neighbours come out in either order about as often: a
 * shuffle, not a rotation or a fixed pattern. */
static void test_perm_is_uniform(void **state)
{
    (void)state;
    enum { N = 10, KEYS = 20000 };
    int count[N][N] = {{0}}, before = 0;
    for (uint64_t k = 0; k < KEYS; k++) {
        xd_perm p = xd_perm_make(N, 11, k, XD_RNG_SHUFFLE);
        for (int i = 0; i < N; i++) count[i][xd_perm_at(&p, (uint64_t)i)]++;
        before += xd_perm_at(&p, 3) < xd_perm_at(&p, 4);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (count[i][j] < 1700 || count[i][j] > 2300)
                fail_msg("element %d at place %d %d times of %d, expected about 2000", i, j,
                         count[i][j], KEYS);
    assert_true(before > KEYS * 47 / 100 && before < KEYS * 53 / 100);
}

/* xd_select_at(r) is the r-th member, checked against a walk over the bits, for sets that are
 * empty, full, sparse, dense, with members only at the end, and sizes around words and blocks;
 * and for their complements (the bits past n never members). */
static void test_select_members(void **state)
{
    (void)state;
    static const size_t ns[] = {1, 63, 64, 65, 511, 512, 513, 5000};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        const size_t n = ns[c];
        for (int kind = 0; kind < 5; kind++) {
            uint64_t *b = xd_bits_new(n);
            xd_rng r = xd_rng_make(n, (uint64_t)kind, XD_RNG_USER);
            for (size_t i = 0; i < n; i++) {
                if (kind == 1) xd_bit_set(b, i);
                if (kind == 2 && xd_rng_below(&r, 100) < 3) xd_bit_set(b, i);
                if (kind == 3 && xd_rng_below(&r, 100) < 70) xd_bit_set(b, i);
                if (kind == 4 && i + 3 >= n) xd_bit_set(b, i);
            }
            for (int comp = 0; comp < 2; comp++) {
                xd_select s;
                xd_select_init(&s, b, n, comp);
                size_t m = 0;
                for (size_t i = 0; i < n; i++)
                    if (xd_bit(b, i) != comp) assert_int_equal(xd_select_at(&s, m++), i);
                assert_int_equal(s.members, m);
                if (kind == 1) assert_int_equal(m, comp ? 0 : n);
                xd_select_free(&s);
            }
            free(b);
        }
    }
}

/* xd_runs_take, called in turn as the threads of a team would: each thread's own run first and
 * in order, then what is left of the others'; a thread that never comes (a smaller team, or a
 * thread held up) has its run done by the others; every item exactly once, for runs of uneven
 * lengths and for more threads than items. Then real teams of four threads and of fewer than the
 * runs take every item once, also from more runs than xd_runs holds in itself. */
static void test_runs_take_each_item_once(void **state)
{
    (void)state;
    enum { ROOM = 8 };
    static const int cases[][2] = {{2, 4}, {2, 5}, {3, 10}, {4, 3}, {1, 6}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int T = cases[c][0], n = cases[c][1];
        for (int present = 1; present <= T; present++) { /* threads 0..present-1 come */
            int k[ROOM] = {0}, seen[16] = {0}, order[ROOM][16], got[ROOM] = {0};
            xd_runs runs;
            xd_runs_init(&runs, T, n);
            int left = present;
            while (left > 0)
                for (int t = 0; t < present; t++) {
                    if (k[t] > T) continue; /* done */
                    const int i = xd_runs_take(&runs, t, &k[t]);
                    if (i < 0) {
                        k[t] = T + 1;
                        left--;
                        continue;
                    }
                    assert_true(i >= 0 && i < n);
                    seen[i]++;
                    order[t][got[t]++] = i;
                }
            xd_runs_free(&runs);
            if (present == T && n % T == 0)
                for (int t = 0; t < T; t++) assert_int_equal(got[t], n / T);
            for (int i = 0; i < n; i++)
                if (seen[i] != 1)
                    fail_msg("T %d, n %d, %d threads: item %d taken %d times", T, n, present, i,
                             seen[i]);
            /* a thread takes its own run's items first, in order, and none after another's (all
             * threads present and runs of equal length: exactly its own run) */
            for (int t = 0; t < present; t++) {
                const int start = n * t / T, end = n * (t + 1) / T;
                int own = 0;
                while (own < got[t] && order[t][own] >= start && order[t][own] < end) {
                    if (own > 0 && order[t][own] != order[t][own - 1] + 1)
                        fail_msg("T %d, n %d: thread %d took %d after %d", T, n, t,
                                 order[t][own], order[t][own - 1]);
                    own++;
                }
                for (int q = own; q < got[t]; q++)
                    if (order[t][q] >= start && order[t][q] < end)
                        fail_msg("T %d, n %d: thread %d took its own %d late", T, n, t,
                                 order[t][q]);
            }
        }
    }
    /* real teams: as many threads as runs, and fewer (each thread then goes through every run);
     * and more runs than the struct holds (their counters on the heap) */
    enum { N = 1000 };
    static const int teams[][2] = {{4, 4}, {4, 3}, {4, 2}, {4, 1}, {XD_RUNS_ROOM + 3, 2}};
    for (size_t c = 0; c < sizeof teams / sizeof teams[0]; c++) {
        const int R = teams[c][0], team = teams[c][1];
        int seen[N] = {0};
        xd_runs runs;
        xd_runs_init(&runs, R, N);
#pragma omp parallel num_threads(team)
        for (int k = 0, i, t = xd_thread_num(); (i = xd_runs_take(&runs, t, &k)) >= 0;) {
#pragma omp atomic
            seen[i]++;
        }
        xd_runs_free(&runs);
        for (int i = 0; i < N; i++)
            if (seen[i] != 1)
                fail_msg("%d runs, a team of %d: item %d taken %d times", R, team, i, seen[i]);
    }
}

static void test_blas_choice(void **state)
{
    (void)state;
    xd_cpu_caps avx512 = {1, 1}, avx2 = {1, 0}, old = {0, 0};
    assert_string_equal(xd_blas_choose(NULL, "Prescott", avx512), "SkylakeX");
    assert_string_equal(xd_blas_choose("", "Prescott", avx512), "SkylakeX");
    assert_string_equal(xd_blas_choose(NULL, "Haswell", avx512), "SkylakeX");
    assert_null(xd_blas_choose(NULL, "Cooperlake", avx512));
    assert_null(xd_blas_choose(NULL, "SkylakeX", avx512));
    assert_null(xd_blas_choose("Haswell", "Haswell", avx512)); /* the user's word wins */
    assert_string_equal(xd_blas_choose(NULL, "Prescott", avx2), "Haswell");
    assert_null(xd_blas_choose(NULL, "Zen", avx2));
    assert_null(xd_blas_choose(NULL, "Prescott", old));
    assert_non_null(xd_blas_kernel());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_message),
        cmocka_unit_test(test_long_messages_keep_the_reason),
        cmocka_unit_test(test_arena_grows_to_high_water),
        cmocka_unit_test(test_rng_streams),
        cmocka_unit_test(test_rng_shuffle_is_permutation),
        cmocka_unit_test(test_perm_is_bijection),
        cmocka_unit_test(test_perm_is_uniform),
        cmocka_unit_test(test_select_members),
        cmocka_unit_test(test_runs_take_each_item_once),
        cmocka_unit_test(test_blas_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
