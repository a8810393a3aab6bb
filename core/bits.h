/* Sets of examples as bits: one bit an example, where a byte (or a 4-byte index) each would make a
 * run's private memory grow with its data set.
 *
 * A set over n examples is ceil(n / 64) words; bit i of the set is bit i % 64 of word i / 64.
 * xd_select answers "which example is the r-th member" in O(log n): a count of the members
 * before every block of 8 words (4 bytes per 512 examples), a binary search over those counts,
 * then a popcount walk over at most 8 words. */
#ifndef XD_CORE_BITS_H
#define XD_CORE_BITS_H

#include <stddef.h>
#include <stdint.h>

/* ceil(n / 64): the words of a set over n examples */
static inline size_t xd_bits_words(size_t n) { return n / 64 + (n % 64 != 0); }
static inline int xd_bit(const uint64_t *b, size_t i) { return (int)(b[i >> 6] >> (i & 63)) & 1; }
static inline void xd_bit_set(uint64_t *b, size_t i) { b[i >> 6] |= 1ull << (i & 63); }
static inline void xd_bit_clear(uint64_t *b, size_t i) { b[i >> 6] &= ~(1ull << (i & 63)); }

/* an empty set over n examples (at least one word); free with free() */
uint64_t *xd_bits_new(size_t n);

typedef struct {
    const uint64_t *b; /* the set (not owned) */
    uint64_t flip;     /* 0, or every bit: the members are the examples not in b */
    size_t n;          /* examples [0, n) */
    size_t members;
    uint32_t *before;  /* (blocks + 1) members before each block of XD_SELECT_WORDS words */
    size_t blocks;
} xd_select;

enum { XD_SELECT_WORDS = 8 };

/* An index over b, a set over [0, n) with n <= 2^32 (b must outlive it and not change); with
 * complement set, over the examples of [0, n) that are not in b. */
void xd_select_init(xd_select *s, const uint64_t *b, size_t n, int complement);
/* The example that is member r (0-based, in increasing order) of the set; r < s->members. */
size_t xd_select_at(const xd_select *s, size_t r);
void xd_select_free(xd_select *s);

#endif
