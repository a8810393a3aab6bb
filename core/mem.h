/* Allocation policy.
 *
 * xd_xmalloc/xd_xcalloc abort with a message when memory runs out: they are for buffers whose size
 * the program chose or that stated limits keep small (tables, names, per-step scratch), where
 * there is nothing sensible to do on failure. Sizes that input decides (a file's counts, a model
 * description's widths times the batch: parameters, activations) are checked against their limits
 * first, with overflow-safe arithmetic (xd_mul_size), and then allocated with xd_try_alloc or
 * xd_try_alloc_aligned, which return NULL so the caller can report XD_ENOMEM naming the file and
 * the size. */
#ifndef XD_CORE_MEM_H
#define XD_CORE_MEM_H

#include <stddef.h>
#include <stdint.h>

void *xd_xmalloc(size_t bytes);
void *xd_xcalloc(size_t count, size_t size);
void *xd_xrealloc(void *p, size_t bytes);
char *xd_xstrdup(const char *s);
void *xd_try_alloc(size_t bytes);

/* 64-byte aligned, for float buffers used by SIMD kernels and BLAS; free with free(). */
void *xd_xmalloc_aligned(size_t bytes);
void *xd_try_alloc_aligned(size_t bytes);

/* a*b (and a*b*c) with overflow detection: returns 0 and sets *out, or -1 on overflow. */
int xd_mul_size(size_t a, size_t b, size_t *out);
int xd_mul3_size(size_t a, size_t b, size_t c, size_t *out);

#endif
