/* FNV-1a 64: a fast, stable, non-cryptographic hash for cache keys and change stamps.
 *
 * h = (h ^ byte) * prime, from the offset basis. Structured inputs are hashed as fields: a tag
 * byte, the field's length as a little-endian u64, then its bytes, so that field boundaries cannot
 * shift ("ab" + "c" hashes differently from "a" + "bc") and a field cannot pass for another. */
#ifndef XD_CORE_HASH_H
#define XD_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define XD_FNV_OFFSET 0xcbf29ce484222325ull
#define XD_FNV_PRIME 0x100000001b3ull

uint64_t xd_fnv_bytes(uint64_t h, const void *p, size_t n);
/* tag, length, bytes */
uint64_t xd_fnv_field(uint64_t h, char tag, const void *p, size_t n);
uint64_t xd_fnv_str(uint64_t h, char tag, const char *s);
/* v as 8 little-endian bytes, as a field */
uint64_t xd_fnv_u64(uint64_t h, char tag, uint64_t v);

#endif
