/* Fuzz target: recipes (recipe_parse, which recipe_load uses), without the checks that named
 * files exist. A recipe that loads is printed back (recipe_to_yaml) and must load again and print
 * the same, as checkpoints rely on. */
#include <stdlib.h>
#include <string.h>

#include "distill/recipe.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_copy(data, size);
    recipe r;
    xd_err e;
    if (recipe_parse("fuzz.yaml", text, size, NULL, 0, RECIPE_NO_FILE_CHECKS, &r, &e) == XD_OK) {
        char *y = recipe_to_yaml(&r);
        recipe r2;
        unsigned flags = RECIPE_NO_FILE_CHECKS;
        if (recipe_parse("fuzz.yaml", y, strlen(y), NULL, 0, flags, &r2, &e) != XD_OK)
            fz_fail("the printed recipe does not load: %s\n%s", e.msg, y);
        char *y2 = recipe_to_yaml(&r2);
        if (strcmp(y, y2) != 0) fz_fail("printed twice differently:\n%s\n---\n%s", y, y2);
        free(y2);
        free(y);
        recipe_free(&r2);
    }
    recipe_free(&r);
    free(text);
    return 0;
}
