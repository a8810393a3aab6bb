/* Counter-based RNG (see rng.h). */
#include "core/rng.h"

#include <math.h>

#include "core/status.h"

#define GOLDEN 0x9E3779B97F4A7C15ull

uint64_t xd_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

xd_rng xd_rng_make(uint64_t seed, uint64_t example, uint64_t purpose)
{
    /* Chain the keys through the mixer so (a, b, c) and (b, a, c) give unrelated streams. */
    uint64_t k = xd_mix64(seed + GOLDEN);
    k = xd_mix64(k ^ (example + 0x632BE59BD9B4E019ull));
    k = xd_mix64(k ^ (purpose * GOLDEN + 0x8CB92BA72F3D8DD7ull));
    return (xd_rng){.key = k, .ctr = 0};
}

uint64_t xd_rng_u64(xd_rng *r)
{
    r->ctr++;
    return xd_mix64(r->key + r->ctr * GOLDEN);
}

uint32_t xd_rng_u32(xd_rng *r) { return (uint32_t)(xd_rng_u64(r) >> 32); }

float xd_rng_uniform(xd_rng *r) { return (float)(xd_rng_u64(r) >> 40) * 0x1.0p-24f; }

float xd_rng_normal(xd_rng *r)
{
    /* u1 in (0, 1] so log() is finite */
    double u1 = ((double)(xd_rng_u64(r) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(xd_rng_u64(r) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint32_t xd_rng_below(xd_rng *r, uint32_t n)
{
    uint64_t m = (uint64_t)xd_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)xd_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void xd_rng_shuffle(xd_rng *r, uint32_t *idx, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = xd_rng_below(r, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

xd_perm xd_perm_make(uint64_t n, uint64_t seed, uint64_t example, uint64_t purpose)
{
    XD_ASSERT(n >= 1 && n <= (1ull << 62));
    xd_perm p = {.n = n, .half = 1};
    while (p.half < 31 && (1ull << (2 * p.half)) < n) p.half++;
    xd_rng r = xd_rng_make(seed, example, purpose);
    for (int k = 0; k < XD_PERM_ROUNDS; k++) p.key[k] = xd_rng_u64(&r);
    return p;
}

uint64_t xd_perm_at(const xd_perm *p, uint64_t i)
{
    XD_ASSERT(i < p->n);
    const uint64_t mask = (1ull << p->half) - 1;
    uint64_t x = i;
    do {
        uint64_t l = x >> p->half, r = x & mask;
        for (int k = 0; k < XD_PERM_ROUNDS; k++) {
            uint64_t t = l ^ (xd_mix64(r ^ p->key[k]) & mask);
            l = r;
            r = t;
        }
        x = (l << p->half) | r;
    } while (x >= p->n);
    return x;
}
