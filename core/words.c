/* Option words (see words.h). */
#include "core/words.h"

#include <string.h>

size_t xd_word_key_len(const char *word) { return strcspn(word, "="); }

int xd_word_key_repeats(const char *const *before, int n, const char *word)
{
    const size_t k = xd_word_key_len(word);
    for (int i = 0; i < n; i++)
        if (xd_word_key_len(before[i]) == k && memcmp(before[i], word, k) == 0) return i + 1;
    return 0;
}
