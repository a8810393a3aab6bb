/* Counter-based random numbers.
 *
 * A stream is keyed by (seed, example, purpose) and indexed by a counter, so the numbers an example
 * gets (its augmentation, its dropout mask) depend only on those keys, never on which thread ran it
 * or in what order. Same seed -> same run, at any thread count.
 *
 * value(key, i) = mix64(key + (i+1) * golden), mix64 = the SplitMix64 finaliser (a bijection with
 * full avalanche), key = mix of seed, example and purpose. */
#ifndef XD_CORE_RNG_H
#define XD_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t key;
    uint64_t ctr;
} xd_rng;

/* Purposes keep streams of one example apart. Add new ones at the end. */
enum {
    XD_RNG_INIT = 1,     /* parameter initialisation (example = parameter index) */
    XD_RNG_SHUFFLE,      /* epoch order (example = epoch) */
    XD_RNG_AUGMENT,      /* image augmentation */
    XD_RNG_DROPOUT,      /* dropout masks (example = global example index, mixed with step) */
    XD_RNG_SPLIT,        /* data-set splits */
    XD_RNG_SCENE,        /* synthetic scene layout */
    XD_RNG_TEXT,         /* sampling among several texts of one example */
    XD_RNG_BANK,         /* a memory bank's start and its negative draws (distill/crd.h) */
    XD_RNG_VALID,        /* validation examples held out of a training split */
    XD_RNG_USER = 100    /* first value free for callers */
};

uint64_t xd_mix64(uint64_t x);
xd_rng xd_rng_make(uint64_t seed, uint64_t example, uint64_t purpose);
uint64_t xd_rng_u64(xd_rng *r);
uint32_t xd_rng_u32(xd_rng *r);
/* uniform in [0, 1) with 24 random bits */
float xd_rng_uniform(xd_rng *r);
/* standard normal (Box-Muller, one value per call) */
float xd_rng_normal(xd_rng *r);
/* uniform integer in [0, n), unbiased (Lemire's method); n > 0 */
uint32_t xd_rng_below(xd_rng *r, uint32_t n);
/* Fisher-Yates shuffle of idx[0..n) */
void xd_rng_shuffle(xd_rng *r, uint32_t *idx, uint32_t n);

/* A keyed permutation of [0, n) that needs no storage: xd_perm_at(p, i) is the i-th element of a
 * shuffled [0, n), computed on its own in O(1). A balanced Feistel network of XD_PERM_ROUNDS rounds
 * (round function: mix64 of the half under a round key) permutes the smallest domain of 4^h >= n
 * values; an index that lands past n is sent through again (cycle walking), which keeps it a
 * bijection on [0, n) and costs under 4 networks on average. Not Fisher-Yates: the same key gives
 * another order than xd_rng_shuffle. */
enum { XD_PERM_ROUNDS = 8 };
typedef struct {
    uint64_t n;
    unsigned half;                 /* bits of each half */
    uint64_t key[XD_PERM_ROUNDS];
} xd_perm;

/* n >= 1 and n <= 2^62 */
xd_perm xd_perm_make(uint64_t n, uint64_t seed, uint64_t example, uint64_t purpose);
uint64_t xd_perm_at(const xd_perm *p, uint64_t i);

#endif
