/* Recipe binding of teacher ensembles (see recipe_bind.h, docs/RECIPES.md): a kd / hinton loss
 * whose target combines several teachers, `teachers: [a, {name: b, label_map: label.NAME}]`,
 * `combine: mean | weights | entropy`, `weights: [...]` (fixed weights, normalised when the run
 * starts), `entropy_tau` (the temperature of entropy weights). The per-example combination itself
 * is distill/ensemble.h; the trainer's side is distill/train_ensemble.c. */
#include "distill/recipe_bind.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/yaml.h"

static const char *const member_keys[] = {"name", "label_map"};

/* The entropy weights' default temperature, in nats of entropy: a teacher one nat less certain
 * than another on an example gets e^-1 of its weight. */
#define DEFAULT_ENTROPY_TAU 1.0f

/* One item of `teachers`: a teacher's name, or {name, label_map}. */
static xd_status bind_member(binder *b, io_yaml_node *n, recipe_member *m)
{
    xd_status s;
    io_yaml_node *name = n;
    io_yaml_mark_used(n);
    if (n->kind == IO_YAML_MAPPING) {
        if ((s = io_yaml_check_keys(b->d, n, member_keys, 2, b->e)) != XD_OK) return s;
        if ((s = io_yaml_require(b->d, n, "name", &name, b->e)) != XD_OK) return s;
        io_yaml_node *map = rb_present(b, n, "label_map");
        if (map && (s = rb_bind_label_map(b, map, &m->label_map, &m->label_table,
                                          &m->n_label_table)) != XD_OK)
            return s;
    } else if ((s = rb_need_kind(b, n, IO_YAML_SCALAR, "a teacher's name or {name, label_map}"))) {
        return s;
    }
    const char *text;
    if ((s = io_yaml_as_str(b->d, name, &text, b->e)) != XD_OK) return s;
    return rb_find_teacher(b, name, text, &m->teacher);
}

/* `weights`: one float >= 0 per member, not all 0. */
static xd_status bind_weights(binder *b, io_yaml_node *n, recipe_loss *l)
{
    io_yaml_mark_used(n);
    xd_status s = rb_need_kind(b, n, IO_YAML_SEQUENCE, "a list of weights, one per teacher");
    if (s != XD_OK) return s;
    if (n->n != l->n_members)
        return rb_bad(b, n, "%d weights for %d teachers (one weight per teacher)", n->n,
                      l->n_members);
    double sum = 0.0;
    for (int i = 0; i < n->n; i++) {
        io_yaml_node *w = n->items[i];
        if ((s = io_yaml_as_float(b->d, w, &l->members[i].weight, b->e)) != XD_OK) return s;
        if (!(l->members[i].weight >= 0.0f))
            return rb_bad(b, w, "must be >= 0 (got %s)", w->str);
        sum += l->members[i].weight;
    }
    if (!(sum > 0.0)) return rb_bad(b, n, "the weights add up to 0: at least one must be > 0");
    return XD_OK;
}

xd_status rb_bind_ensemble(binder *b, io_yaml_node *it, io_yaml_node *fn, recipe_loss *l)
{
    io_yaml_node *list = rb_present(b, it, "teachers"), *n;
    static const char *const keys[] = {"combine", "weights", "entropy_tau"};
    xd_status s;
    l->combine = RECIPE_COMBINE_MEAN;
    l->entropy_tau = DEFAULT_ENTROPY_TAU;
    if (!list) {
        for (int k = 0; k < COUNT_OF(keys); k++)
            if ((n = rb_present(b, it, keys[k]))) {
                io_yaml_mark_used(n);
                return rb_bad(b, n, "applies to an ensemble only (teachers: [A, B, ...])");
            }
        return XD_OK;
    }
    io_yaml_mark_used(list);
    /* an ensemble's members are frozen teachers, each read at its own head */
    static const char *const single[] = {"teacher", "from", "label_map"};
    for (int k = 0; k < COUNT_OF(single); k++)
        if ((n = k == 1 ? fn : rb_present(b, it, single[k]))) {
            io_yaml_mark_used(n);
            return rb_bad(b, n, k == 2 ? "with teachers, each teacher gives its own label_map: "
                                         "teachers: [{name: NAME, label_map: ...}, ...]"
                                       : "give teachers or %s, not both", single[k]);
        }
    if ((s = rb_need_kind(b, list, IO_YAML_SEQUENCE, "a list of teachers"))) return s;
    if (list->n < 1 || list->n > RECIPE_MAX_TEACHERS)
        return rb_bad(b, list, "%d teachers; an ensemble lists 1 to %d", list->n,
                      RECIPE_MAX_TEACHERS);
    l->members = xd_xcalloc((size_t)list->n, sizeof *l->members);
    for (int i = 0; i < list->n; i++) {
        l->n_members = i + 1;
        recipe_member *m = &l->members[i];
        m->weight = 1.0f;
        if ((s = bind_member(b, list->items[i], m)) != XD_OK) return s;
        for (int j = 0; j < i; j++)
            if (l->members[j].teacher == m->teacher)
                return rb_bad(b, list->items[i], "teacher '%s' is listed twice",
                              b->r->teachers[m->teacher].name);
    }
    int detach = 1;
    if ((s = io_yaml_get_bool(b->d, it, "detach", &detach, b->e)) != XD_OK) return s;
    if (!detach)
        return rb_bad(b, rb_present(b, it, "detach"), "an ensemble's teachers are frozen: "
                      "detach: false needs a trainable model at the from end");
    int v = l->combine;
    if ((s = rb_get_enum(b, it, "combine", recipe_combine_names, RECIPE_COMBINE_COUNT, &v)))
        return s;
    io_yaml_node *cn = rb_present(b, it, "combine"), *wn = rb_present(b, it, "weights");
    /* weights alone say how to combine */
    l->combine = !cn && wn ? RECIPE_COMBINE_WEIGHTS : (recipe_combine)v;
    if (wn && l->combine != RECIPE_COMBINE_WEIGHTS) {
        io_yaml_mark_used(wn);
        return rb_bad(b, wn, "applies to combine: weights (combine is %s)",
                      recipe_combine_names[l->combine]);
    }
    if (l->combine == RECIPE_COMBINE_WEIGHTS && !wn)
        return rb_bad(b, cn, "combine: weights needs weights: [w1, w2, ...], one per teacher");
    if (wn && (s = bind_weights(b, wn, l)) != XD_OK) return s;
    if ((n = rb_present(b, it, "entropy_tau")) && l->combine != RECIPE_COMBINE_ENTROPY) {
        io_yaml_mark_used(n);
        return rb_bad(b, n, "applies to combine: entropy (combine is %s)",
                      recipe_combine_names[l->combine]);
    }
    return rb_get_float(b, it, "entropy_tau", R_GT0, &l->entropy_tau);
}
