/* FNV-1a 64 (see hash.h). */
#include "core/hash.h"

#include <string.h>

uint64_t xd_fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * XD_FNV_PRIME;
    return h;
}

static void put_u64(unsigned char b[8], uint64_t v)
{
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

uint64_t xd_fnv_field(uint64_t h, char tag, const void *p, size_t n)
{
    unsigned char len[8];
    put_u64(len, (uint64_t)n);
    h = xd_fnv_bytes(h, &tag, 1);
    h = xd_fnv_bytes(h, len, sizeof len);
    return xd_fnv_bytes(h, p, n);
}

uint64_t xd_fnv_str(uint64_t h, char tag, const char *s)
{
    return xd_fnv_field(h, tag, s, strlen(s));
}

uint64_t xd_fnv_u64(uint64_t h, char tag, uint64_t v)
{
    unsigned char b[8];
    put_u64(b, v);
    return xd_fnv_field(h, tag, b, sizeof b);
}
