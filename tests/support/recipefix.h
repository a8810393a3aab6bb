/* The recipe tests' fixtures: a small model description, the files recipes name, a full and a
 * minimal recipe, and loading a recipe's text expecting success or one error. */
#ifndef XD_TESTS_RECIPEFIX_H
#define XD_TESTS_RECIPEFIX_H

#include "core/status.h"
#include "distill/recipe.h"

#define RF_MODEL                                                                                \
    "input h=4 w=4 c=1; conv2d name=conv1 out=2 k=3 pad=1; relu name=r1; flatten; "             \
    "linear out=8; relu name=feat; linear out=3 name=logits head"

/* Writes the files the recipes name (their contents do not matter at bind time); a cmocka
 * setup. */
int rf_files(void **state);
/* Writes text to r.yaml and loads it with sets. */
xd_status rf_load(const char *text, const char *const *sets, int n_sets, recipe *r, xd_err *e);
/* rf_load, failing the test if the recipe does not load. */
void rf_ok(const char *text, const char *const *sets, int n_sets, recipe *r);
/* The recipe must fail with code and a message holding want, handing out nothing half-bound. */
void rf_bad(const char *text, const char *const *sets, int n_sets, xd_status code,
            const char *want);

/* A recipe that sets every section (its lines numbered in comments), and one with the least a
 * recipe needs (RF_MODEL trained with cross-entropy on d.xds). */
extern const char *const rf_full_recipe, *const rf_minimal_recipe;

#endif
