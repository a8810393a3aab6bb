/* Sets of examples as bits (see bits.h). */
#include "core/bits.h"

#include <stdlib.h>

#include "core/mem.h"
#include "core/status.h"

uint64_t *xd_bits_new(size_t n)
{
    const size_t w = xd_bits_words(n);
    return xd_xcalloc(w ? w : 1, sizeof(uint64_t));
}

/* word w of the set, without its bits past n */
static uint64_t word_at(const xd_select *s, size_t w)
{
    uint64_t v = s->b[w] ^ s->flip;
    if (w == s->n / 64 && s->n % 64) v &= (1ull << (s->n % 64)) - 1;
    return v;
}

/* The place of the bit that is member k (0-based) of v, k < popcount(v): whole bytes skipped by
 * their counts, then the lowest members of the one that holds it dropped. */
static unsigned select_in_word(uint64_t v, unsigned k)
{
    unsigned at = 0;
    for (;; at += 8, v >>= 8) {
        unsigned c = (unsigned)__builtin_popcountll(v & 0xff);
        if (k < c) break;
        k -= c;
    }
    for (; k; k--) v &= v - 1;
    return at + (unsigned)__builtin_ctzll(v);
}

void xd_select_init(xd_select *s, const uint64_t *b, size_t n, int complement)
{
    XD_ASSERT(n <= (size_t)UINT32_MAX + 1);
    const size_t words = xd_bits_words(n);
    s->b = b;
    s->flip = complement ? ~0ull : 0;
    s->n = n;
    s->blocks = (words + XD_SELECT_WORDS - 1) / XD_SELECT_WORDS;
    s->before = xd_xmalloc(sizeof(uint32_t) * (s->blocks + 1));
    size_t c = 0;
    for (size_t k = 0; k < s->blocks; k++) {
        s->before[k] = (uint32_t)c;
        for (size_t w = k * XD_SELECT_WORDS; w < words && w < (k + 1) * XD_SELECT_WORDS; w++)
            c += (size_t)__builtin_popcountll(word_at(s, w));
    }
    s->before[s->blocks] = (uint32_t)c;
    s->members = c;
}

size_t xd_select_at(const xd_select *s, size_t r)
{
    XD_ASSERT(r < s->members);
    /* the last block with fewer than r + 1 members before it */
    size_t lo = 0, hi = s->blocks; /* before[lo] <= r < before[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->before[mid] <= r) lo = mid;
        else hi = mid;
    }
    size_t left = r - s->before[lo], w = lo * XD_SELECT_WORDS;
    for (;; w++) {
        uint64_t v = word_at(s, w);
        size_t c = (size_t)__builtin_popcountll(v);
        if (left < c) return w * 64 + select_in_word(v, (unsigned)left);
        left -= c;
    }
}

void xd_select_free(xd_select *s)
{
    free(s->before);
    s->before = NULL;
}
