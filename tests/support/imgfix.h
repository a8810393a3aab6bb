/* Test helpers for the image codecs: deterministic pixel patterns, error measures, a check that
 * a folder holds no leftovers, and a way to catch anything a library prints to stderr. */
#ifndef XD_TESTS_IMGFIX_H
#define XD_TESTS_IMGFIX_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Pseudo-random bytes from a seed (a tiny LCG: tests need no statistical quality). */
void ifx_noise(uint8_t *px, size_t n, uint32_t seed);
/* Smooth pattern for lossy codecs: gradients plus a gentle wave, (h, w, c). */
void ifx_smooth(uint8_t *px, int w, int h, int c);
/* mean |a - b| over n bytes */
double ifx_mae(const uint8_t *a, const uint8_t *b, size_t n);
/* max |a - b| over n bytes */
int ifx_max_abs(const uint8_t *a, const uint8_t *b, size_t n);

/* Number of entries in a folder, not counting "." and ".."; -1 if it cannot be opened. */
int ifx_dir_count(const char *dir);
/* Does path exist? */
int ifx_exists(const char *path);

/* Redirects fd 2 into a file until ifx_stderr_end, which returns how many bytes were written. */
void ifx_stderr_begin(void);
long ifx_stderr_end(void);

/* Caps the size of files this process may write (writes past it fail with EFBIG instead of
 * raising SIGXFSZ), to make a write fail half-way; ifx_file_size_unlimit restores the limit. */
void ifx_file_size_limit(long bytes);
void ifx_file_size_unlimit(void);

/* Asserts status and error: code, and each non-NULL substring appears in the message. */
void ifx_assert_fail(xd_status got, const xd_err *e, xd_status code, const char *s1,
                     const char *s2);

#endif
