/* Arena for per-step scratch: bump allocation, released all at once by xd_arena_reset.
 *
 * A training step takes its temporaries here so nothing is malloc'ed in the inner loop. When a step
 * needs more than the arena holds, an overflow block is taken; the next reset grows the main block
 * to the high-water mark, so from the second step on there is exactly one block and no malloc. */
#ifndef XD_CORE_ARENA_H
#define XD_CORE_ARENA_H

#include <stddef.h>

typedef struct xd_arena_block xd_arena_block;

typedef struct {
    char *base;              /* main block, 64-byte aligned */
    size_t cap, used;
    size_t high_water;       /* most bytes any step asked for */
    xd_arena_block *overflow;
    size_t overflow_bytes;
} xd_arena;

/* The main block: -1 (and an empty arena) when cap bytes cannot be had, as cap may come from
 * input (a model's largest convolution times the batch). */
int xd_arena_init(xd_arena *a, size_t cap);
void xd_arena_free(xd_arena *a);
/* 64-byte aligned; never NULL (aborts on out of memory). Contents are uninitialised. */
void *xd_arena_alloc(xd_arena *a, size_t bytes);
float *xd_arena_floats(xd_arena *a, size_t n);
float *xd_arena_zeros(xd_arena *a, size_t n);
void xd_arena_reset(xd_arena *a);

#endif
