/* Golden-file reader (see golden.h): a line-based scan, strict enough that a change in the file's
 * layout fails loudly instead of comparing against nothing. */
#include "tests/support/golden.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"

typedef struct {
    char section[32], key[32];
    double *v;
    int n, cap;
} entry;

struct golden {
    entry *e;
    int n, cap;
};

static entry *new_entry(golden *g, const char *section, const char *key)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 32;
        g->e = realloc(g->e, (size_t)g->cap * sizeof *g->e);
    }
    entry *e = &g->e[g->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->section, sizeof e->section, "%s", section);
    snprintf(e->key, sizeof e->key, "%s", key);
    return e;
}

static void add_numbers(entry *e, const char *s)
{
    char *end;
    for (;;) {
        while (*s && isspace((unsigned char)*s)) s++;
        if (!*s) break;
        double v = strtod(s, &end); /* also reads C99 hex floats exactly */
        if (end == s) fail_msg("golden: cannot read a number at '%.20s'", s);
        if (e->n == e->cap) {
            e->cap = e->cap ? 2 * e->cap : 64;
            e->v = realloc(e->v, (size_t)e->cap * sizeof *e->v);
            if (!e->v) fail_msg("golden: out of memory");
        }
        e->v[e->n++] = v;
        s = end;
    }
}

golden *golden_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("golden: cannot open %s", path);
    golden *g = calloc(1, sizeof *g);
    char line[4096], section[32] = "", key[32];
    entry *rows = NULL; /* entry that indented number rows go to */
    int gi, bits;
    char c;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "## INPUTS", 9) == 0) {
            snprintf(section, sizeof section, "INPUTS");
            rows = NULL;
        } else if (strncmp(line, "## STABILITY", 12) == 0) {
            snprintf(section, sizeof section, "STABILITY");
            rows = NULL;
        } else if (strncmp(line, "## ", 3) == 0) {
            snprintf(section, sizeof section, "OTHER");
            rows = NULL;
        } else if (strncmp(line, "### ", 4) == 0) {
            snprintf(section, sizeof section, "%.31s", line + 4);
            rows = NULL;
        } else if (strcmp(section, "INPUTS") == 0) {
            if (strncmp(line, "  hex:", 6) == 0) {
                if (!rows) fail_msg("golden: hex line outside an array");
                add_numbers(rows, line + 6);
            } else if (line[0] && line[0] != ' ' && line[0] != '#') {
                if (sscanf(line, "%31s", key) != 1) continue;
                const char *eq = strstr(line, ") = ");
                if (eq && !strstr(line, "shape")) {
                    add_numbers(new_entry(g, section, key), eq + 4);
                    rows = NULL;
                } else {
                    rows = new_entry(g, section, key);
                }
            }
        } else if (strcmp(section, "OTHER") == 0 || !section[0]) {
            continue;
        } else if (line[0] == ' ' && rows) {
            add_numbers(rows, line);
        } else {
            rows = NULL;
            const char *eq = strstr(line, " = ");
            if (strncmp(line, "loss [float32] = ", 17) == 0)
                add_numbers(new_entry(g, section, "loss32"), line + 17);
            else if (strncmp(line, "loss [float64] = ", 17) == 0)
                add_numbers(new_entry(g, section, "loss64"), line + 17);
            else if (strncmp(line, "grad [float32] shape", 20) == 0)
                rows = new_entry(g, section, "grad32");
            else if (strncmp(line, "grad [float64] shape", 20) == 0)
                rows = new_entry(g, section, "grad64");
            else if (sscanf(line, "grad[%d] [float%d] shap%c", &gi, &bits, &c) == 3) {
                /* the gradient of the loss's i-th student tensor: "grad64", "grad64.1", ... */
                if (gi) snprintf(key, sizeof key, "grad%d.%d", bits, gi);
                else snprintf(key, sizeof key, "grad%d", bits);
                rows = new_entry(g, section, key);
            }
            else if (strcmp(section, "STABILITY") == 0 && strstr(line, " shape (")) {
                sscanf(line, "%31s", key);
                rows = new_entry(g, section, key);
            } else if (strcmp(section, "STABILITY") == 0 && eq) {
                sscanf(line, "%31s", key);
                add_numbers(new_entry(g, section, key), eq + 3);
            }
        }
    }
    fclose(f);
    if (g->n < 10) fail_msg("golden: %s holds only %d entries", path, g->n);
    return g;
}

void golden_free(golden *g)
{
    for (int i = 0; i < g->n; i++) free(g->e[i].v);
    free(g->e);
    free(g);
}

static const entry *find(const golden *g, const char *section, const char *key)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->e[i].section, section) == 0 && strcmp(g->e[i].key, key) == 0) return &g->e[i];
    fail_msg("golden: no entry %s/%s", section, key);
    return NULL;
}

int golden_get(const golden *g, const char *section, const char *key, float *out, int max)
{
    const entry *e = find(g, section, key);
    if (e->n > max) fail_msg("golden: %s/%s has %d values, room for %d", section, key, e->n, max);
    for (int i = 0; i < e->n; i++) out[i] = (float)e->v[i];
    return e->n;
}

double golden_scalar(const golden *g, const char *section, const char *key)
{
    const entry *e = find(g, section, key);
    if (e->n != 1) fail_msg("golden: %s/%s is not a scalar", section, key);
    return e->v[0];
}
