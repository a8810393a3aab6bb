/* The fixed hash behind every bucket id: FNV-1a, 32 bits, over UTF-8 bytes.
 *
 *   h = 2166136261;  for each byte b: h = (h ^ b) * 16777619  (mod 2^32)
 *
 * It is part of the model's contract: a checkpoint's n-gram rows are only meaningful with the
 * same hash, so it must never change. FNV-1a is streaming, so an n-gram "<" + bytes + ">" is
 * hashed piece by piece without building the string. */
#ifndef XD_TEXT_HASH_H
#define XD_TEXT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define TXT_FNV_OFFSET 2166136261u
#define TXT_FNV_PRIME 16777619u

static inline uint32_t txt_fnv1a_update(uint32_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * TXT_FNV_PRIME;
    return h;
}

static inline uint32_t txt_fnv1a(const void *p, size_t n)
{
    return txt_fnv1a_update(TXT_FNV_OFFSET, p, n);
}

#endif
