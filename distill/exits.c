/* Early exits of a model (see exits.h). */
#include "distill/exits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

const char *exits_names(const nn_model *m, char *buf, size_t size)
{
    int *heads = xd_xmalloc(sizeof(int) * (size_t)m->n_nodes);
    const int n = nn_model_heads(m, heads);
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ",
                               nn_model_node(m, heads[i])->name);
    free(heads);
    return buf;
}

xd_status exits_find(const nn_model *m, const char *file, const char *name, int *node, xd_err *e)
{
    char list[512];
    const int i = nn_model_find(m, name);
    if (i < 0)
        return xd_fail(e, XD_EARG, "%s: the model has no node '%s' (its exits: %s)", file, name,
                       exits_names(m, list, sizeof list));
    if (!nn_model_node(m, i)->head && i != nn_model_default_head(m))
        return xd_fail(e, XD_EARG, "%s: node '%s' is not an exit (a node marked head; its exits: "
                                   "%s)", file, name, exits_names(m, list, sizeof list));
    *node = i;
    return XD_OK;
}
