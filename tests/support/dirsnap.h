/* Test helper: what a folder holds (names, sizes, modification times and bytes of its files), to
 * assert that something left it exactly as it was. */
#ifndef XD_TESTS_DIRSNAP_H
#define XD_TESTS_DIRSNAP_H

typedef struct dirsnap dirsnap;

/* Fails the test when the folder cannot be read. */
dirsnap *dirsnap_take(const char *dir);
/* Fails the test naming the first entry that appeared, went, or changed in size, time or bytes. */
void dirsnap_assert_same(const dirsnap *before, const char *dir);
void dirsnap_free(dirsnap *s);

#endif
