/* Allocation helpers (see mem.h for the policy). */
#include "core/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void oom(size_t bytes)
{
    fprintf(stderr, "xdistill: out of memory allocating %zu bytes\n", bytes);
    abort();
}

void *xd_xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) oom(bytes);
    return p;
}

void *xd_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *xd_xrealloc(void *p, size_t bytes)
{
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) oom(bytes);
    return q;
}

char *xd_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xd_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

void *xd_try_alloc(size_t bytes)
{
    return malloc(bytes ? bytes : 1);
}

void *xd_try_alloc_aligned(size_t bytes)
{
    if (bytes > SIZE_MAX - 63) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

void *xd_xmalloc_aligned(size_t bytes)
{
    void *p = xd_try_alloc_aligned(bytes);
    if (!p) oom(bytes);
    return p;
}

int xd_mul_size(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

int xd_mul3_size(size_t a, size_t b, size_t c, size_t *out)
{
    size_t ab;
    if (xd_mul_size(a, b, &ab)) return -1;
    return xd_mul_size(ab, c, out);
}
