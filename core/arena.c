/* Arena (see arena.h). */
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

struct xd_arena_block {
    xd_arena_block *next;
    char *data;
};

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

int xd_arena_init(xd_arena *a, size_t cap)
{
    memset(a, 0, sizeof *a);
    if (!cap) return 0;
    a->base = xd_try_alloc_aligned(cap);
    if (!a->base) return -1;
    a->cap = round64(cap);
    return 0;
}

static void free_overflow(xd_arena *a)
{
    xd_arena_block *b = a->overflow;
    while (b) {
        xd_arena_block *next = b->next;
        free(b->data);
        free(b);
        b = next;
    }
    a->overflow = NULL;
    a->overflow_bytes = 0;
}

void xd_arena_free(xd_arena *a)
{
    free_overflow(a);
    free(a->base);
    memset(a, 0, sizeof *a);
}

void *xd_arena_alloc(xd_arena *a, size_t bytes)
{
    bytes = round64(bytes ? bytes : 1);
    size_t total = a->used + a->overflow_bytes + bytes;
    if (total > a->high_water) a->high_water = total;
    if (a->used + bytes <= a->cap) {
        void *p = a->base + a->used;
        a->used += bytes;
        return p;
    }
    /* Does not fit: a block of its own until the next reset regrows the main block. */
    xd_arena_block *b = xd_xmalloc(sizeof *b);
    b->data = xd_xmalloc_aligned(bytes);
    b->next = a->overflow;
    a->overflow = b;
    a->overflow_bytes += bytes;
    return b->data;
}

float *xd_arena_floats(xd_arena *a, size_t n)
{
    return xd_arena_alloc(a, n * sizeof(float));
}

float *xd_arena_zeros(xd_arena *a, size_t n)
{
    float *p = xd_arena_floats(a, n);
    memset(p, 0, n * sizeof(float));
    return p;
}

void xd_arena_reset(xd_arena *a)
{
    if (a->overflow) {
        free_overflow(a);
        free(a->base);
        a->cap = round64(a->high_water);
        a->base = xd_xmalloc_aligned(a->cap);
    }
    a->used = 0;
}
