/* Shared pieces of the libFuzzer harnesses (one fuzz_NAME.c per reader of outside bytes).
 *
 * Every harness hands the reader an exact-size heap copy of the input, so AddressSanitizer sees a
 * read one byte past the end; frees everything it got (LeakSanitizer runs too); and keeps no
 * state from one input to the next. Readers that only take a path get the bytes as a file in a
 * folder of their own process, removed at exit. Property checks that fail call fz_fail, which
 * aborts: libFuzzer then keeps the input as a crash. */
#ifndef XD_TESTS_FUZZ_H
#define XD_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/image.h"
#include "io/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* malloc(n) (at least one byte, never read) holding data[0, n). */
void *fz_copy(const uint8_t *data, size_t n);
/* The same with a NUL after the n bytes: for readers of NUL-terminated text. */
char *fz_copy_str(const uint8_t *data, size_t n);

/* This process's temporary folder (made on first use, removed at exit). */
const char *fz_dir(void);
/* Writes data to fz_dir()/name, replacing it; returns the path (a static buffer). */
const char *fz_write(const char *name, const uint8_t *data, size_t n);

/* A stream that discards what describe functions print. */
FILE *fz_null(void);

/* Prints why and aborts, so that libFuzzer records the input. */
_Noreturn void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- shared by two harnesses each */

/* Decodes the bytes with dec as stored and, when that works, to 1, 3 and 4 channels (alpha over
 * a background), checking that every decode agrees on the size. Images are limited to 4096 per
 * side and 2^22 pixels, so that a valid but large image does not pass for a hang. */
void fz_image(io_image_decoder dec, const uint8_t *data, size_t size);

typedef xd_status (*fz_manifest_reader)(const char *path, const io_manifest_limits *lim,
                                        io_manifest *m, xd_err *e);
/* Writes the bytes as fz_dir()/name and reads them with read; the folder holds the image files
 * "a.png", "b.jpg" and "img/c.png" (empty: they are not decoded) and a folder "dir". Checks that
 * a manifest that loads has labels in range and every field set. */
void fz_manifest(fz_manifest_reader read, const char *name, const uint8_t *data, size_t size);

#endif
