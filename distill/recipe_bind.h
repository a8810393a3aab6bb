/* Recipe binding, internal to distill/recipe*.c: the context that walks a recipe's YAML tree and the
 * helpers every section uses. Messages are "FILE:LINE: KEY.PATH: reason".
 *   recipe.c         name tables, parsing, freeing, the resume check
 *   recipe_sections.c  the top-level sections (data, models, teachers, train, quantize, prune)
 *   recipe_losses.c  loss items and stages, and the checks that need the whole recipe
 *   recipe_print.c   the effective recipe as YAML
 *   recipe_ensemble.c  a loss's ensemble of teachers (teachers, combine, weights)
 *   recipe_bind.c    these helpers */
#ifndef XD_DISTILL_RECIPE_BIND_H
#define XD_DISTILL_RECIPE_BIND_H

#include <stddef.h>

#include "core/status.h"
#include "distill/recipe.h"
#include "io/yaml.h"
#include "nn/model.h"

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
/* Most epochs of a run (all stages). */
#define MAX_EPOCHS 1000000

typedef struct {
    io_yaml_doc *d;
    unsigned flags;
    recipe *r;
    nn_model nets[RECIPE_MAX_MODELS]; /* each model planned from its description once, to
                                       * check node names */
    int built;                        /* nets planned */
    io_yaml_node *model_items[RECIPE_MAX_MODELS]; /* models: items, NULL in the one-student form */
    xd_err *e;
} binder;

/* Index of s in names[0..n), or -1. */
int rb_name_index(const char *const *names, int n, const char *s);
/* "a, b or c" into buf. */
const char *rb_name_list(const char *const *names, int n, char *buf, size_t size);
/* Letters, digits and the characters in extra; 1 to RECIPE_MAX_NAME - 1 bytes. */
int rb_word_ok(const char *s, const char *extra);
/* "image", "text.LANG" or "text.*". */
int rb_view_ok(const char *s);

/* "FILE:LINE: PATH: reason" */
xd_status rb_bad(binder *b, const io_yaml_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Puts "FILE:LINE: PATH: " before a message another module wrote into b->e. */
xd_status rb_wrap(binder *b, const io_yaml_node *n, xd_status s);
/* The value at key of map when it is there and not null (marked used), else NULL. */
io_yaml_node *rb_present(binder *b, io_yaml_node *map, const char *key);
xd_status rb_need_kind(binder *b, io_yaml_node *n, io_yaml_kind kind, const char *what);

typedef enum { R_GT0, R_GE0, R_UNIT } frange; /* > 0, >= 0, [0, 1] */
xd_status rb_get_float(binder *b, io_yaml_node *map, const char *key, frange range, float *inout);
/* A copy of the string at key (or of def when absent); *node gets the value's node or NULL. */
xd_status rb_get_string(binder *b, io_yaml_node *map, const char *key, const char *def,
                        char **out, io_yaml_node **node);
xd_status rb_get_enum(binder *b, io_yaml_node *map, const char *key, const char *const *names,
                      int n_names, int *inout);
/* path names an existing file (unless RECIPE_NO_FILE_CHECKS). */
xd_status rb_check_file(binder *b, const io_yaml_node *n, const char *path);
/* name must be a node of trainable model k ("the student model" in the one-student form). */
xd_status rb_check_model_node(binder *b, const io_yaml_node *n, int k, const char *name);
/* *index of the teacher called name; an error at n listing the teachers when there is none. */
xd_status rb_find_teacher(binder *b, const io_yaml_node *n, const char *name, int *index);

/* The keys of a loss item and the kinds each applies to. Attention transfer compares
 * channel-summed maps, which have no width to project, so it takes no projector. */
typedef enum {
    LK_KIND,
    LK_WEIGHT,
    LK_TEACHER,
    LK_TEMPERATURE,
    LK_ALPHA,
    LK_HEAD,
    LK_TEACHER_HEAD,
    LK_STUDENT_TAP,
    LK_TEACHER_TAP,
    LK_METRIC,
    LK_PROJECTOR,
    LK_WINDOWS,
    LK_STRIDE,
    LK_WEIGHTING,
    LK_MIN_CONF,
    LK_THRESHOLD,
    LK_PROJECTOR_INIT,
    LK_PROJECTOR_FROZEN,
    LK_LEARN_TEMPERATURE,
    LK_LABEL_MAP,
    LK_FROM,
    LK_TO,
    LK_DETACH,
    LK_MODEL,
    LK_BETA,
    LK_DISTANCE_WEIGHT,
    LK_ANGLE_WEIGHT,
    LK_INIT_VAR,
    LK_EMBED_DIM,
    LK_NEGATIVES,
    LK_MOMENTUM,
    LK_MARGIN,
    LK_STUDENT_TAPS,
    LK_TEACHER_TAPS,
    /* teacher ensembles (recipe_ensemble.c) */
    LK_TEACHERS,
    LK_COMBINE,
    LK_WEIGHTS,
    LK_ENTROPY_TAU,
    LK_CLASS_WEIGHT,
    LK_HIDDEN,
    LK_EMBED,
    LK_MAX_LEN,
    LK_MAX_WORDS,
    LK_COUNT
} loss_key;
extern const char *const rb_loss_key_names[LK_COUNT];
/* Whether key k applies to losses of kind `kind`. */
int rb_applies(loss_key k, recipe_loss_kind kind);

/* recipe_sections.c: the whole tree, section by section (recipe_parse's binding). */
xd_status rb_bind_recipe(binder *b);

/* recipe_losses.c: `stages:` (or the one-stage form's `losses:`), then the whole-recipe checks. */
xd_status rb_bind_stages(binder *b, io_yaml_node *root);
xd_status rb_check_teachers_used(binder *b, io_yaml_node *root);
xd_status rb_check_task(binder *b, io_yaml_node *root);
xd_status rb_check_losses(binder *b, io_yaml_node *root);
/* A label_map value n (label.NAME or a list of student classes) into *map or *table. */
xd_status rb_bind_label_map(binder *b, io_yaml_node *n, char **map, int32_t **table, int *n_table);

/* recipe_ensemble.c: a kd / hinton loss's `teachers`, `combine`, `weights` and `entropy_tau`
 * (fn: the loss's `from` node or NULL); with no `teachers` the other three are errors. */
xd_status rb_bind_ensemble(binder *b, io_yaml_node *it, io_yaml_node *fn, recipe_loss *l);

#endif
