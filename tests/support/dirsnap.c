/* Folder snapshots for tests (see dirsnap.h). */
#include "tests/support/dirsnap.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/testutil.h"

typedef struct {
    char *name;
    struct stat st;
    char *bytes; /* regular files only */
    size_t n;
} entry;

struct dirsnap {
    entry *e;
    int n;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

dirsnap *dirsnap_take(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) fail_msg("%s: cannot open the folder", dir);
    dirsnap *s = calloc(1, sizeof *s);
    for (struct dirent *de; (de = readdir(d));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        s->e = realloc(s->e, sizeof *s->e * (size_t)(s->n + 1));
        entry *x = &s->e[s->n++];
        memset(x, 0, sizeof *x);
        x->name = strdup(de->d_name);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &x->st) != 0) fail_msg("%s: cannot stat", path);
        if (S_ISREG(x->st.st_mode)) x->bytes = tu_read_file(path, &x->n);
    }
    closedir(d);
    if (s->n > 1) qsort(s->e, (size_t)s->n, sizeof *s->e, by_name); /* s->e NULL when empty */
    return s;
}

void dirsnap_assert_same(const dirsnap *before, const char *dir)
{
    dirsnap *now = dirsnap_take(dir);
    for (int i = 0; i < before->n || i < now->n; i++) {
        const entry *a = i < before->n ? &before->e[i] : NULL, *b = i < now->n ? &now->e[i] : NULL;
        if (!a || (b && strcmp(a->name, b->name) > 0)) fail_msg("%s/%s appeared", dir, b->name);
        if (!b || strcmp(a->name, b->name) < 0) fail_msg("%s/%s went", dir, a->name);
        if (a->st.st_size != b->st.st_size || a->st.st_mtim.tv_sec != b->st.st_mtim.tv_sec ||
            a->st.st_mtim.tv_nsec != b->st.st_mtim.tv_nsec || a->st.st_ino != b->st.st_ino)
            fail_msg("%s/%s changed (size, time or inode)", dir, a->name);
        if (a->n != b->n || (a->n && memcmp(a->bytes, b->bytes, a->n) != 0))
            fail_msg("%s/%s changed its bytes", dir, a->name);
    }
    dirsnap_free(now);
}

void dirsnap_free(dirsnap *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->e[i].name);
        free(s->e[i].bytes);
    }
    free(s->e);
    free(s);
}
