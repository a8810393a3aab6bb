/* Option words ("size=32 pad=4", "out=8 name=fc1 head"): a key given twice in one list is an
 * error the parsers report, rather than letting the last one win unseen. */
#ifndef XD_CORE_WORDS_H
#define XD_CORE_WORDS_H

#include <stddef.h>

/* The length of word's key: the bytes before its '=' (all of a bare flag). */
size_t xd_word_key_len(const char *word);

/* Whether one of the n words before has the same key as word: 0, else 1 + the index of the first
 * that has. */
int xd_word_key_repeats(const char *const *before, int n, const char *word);

#endif
