/* Shared pieces of the libFuzzer harnesses (see fuzz.h). */
#include "tests/fuzz/fuzz.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

void *fz_copy(const uint8_t *data, size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) fz_fail("out of memory copying %zu bytes", n);
    if (n) memcpy(p, data, n);
    return p;
}

char *fz_copy_str(const uint8_t *data, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) fz_fail("out of memory copying %zu bytes", n);
    if (n) memcpy(p, data, n);
    p[n] = '\0';
    return p;
}

static char fz_folder[PATH_MAX];

static void fz_cleanup(void)
{
    if (fz_folder[0]) io_remove_tree(fz_folder);
}

const char *fz_dir(void)
{
    if (fz_folder[0]) return fz_folder;
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_folder, sizeof fz_folder, "%s/xdistill-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fz_folder)) fz_fail("cannot make a temporary folder %s", fz_folder);
    atexit(fz_cleanup);
    return fz_folder;
}

const char *fz_write(const char *name, const uint8_t *data, size_t n)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", fz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0)
        fz_fail("cannot write %s", path);
    return path;
}

FILE *fz_null(void)
{
    static FILE *f;
    if (!f) f = fopen("/dev/null", "w");
    if (!f) fz_fail("cannot open /dev/null");
    return f;
}

void fz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz check failed: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

// ---------------------------------------------------------------------------------------------
// shared by two harnesses each

void fz_image(io_image_decoder dec, const uint8_t *data, size_t size)
{
    uint8_t *buf = fz_copy(data, size);
    io_image_opts o = {.max_pixels = (size_t)1 << 22, .max_dim = 4096, .bg = {20, 200, 90}};
    io_image img;
    xd_err e;
    if (dec(buf, size, "fuzz-image", &o, &img, &e) == XD_OK) {
        int w = img.w, h = img.h;
        if (w <= 0 || h <= 0 || !img.px || (img.c != 1 && img.c != 3 && img.c != 4))
            fz_fail("decoded an image of %dx%dx%d", img.w, img.h, img.c);
        io_image_free(&img);
        static const int channels[] = {1, 3, 4};
        for (size_t k = 0; k < sizeof channels / sizeof channels[0]; k++) {
            o.channels = channels[k];
            if (dec(buf, size, "fuzz-image", &o, &img, &e) != XD_OK)
                fz_fail("decodes as stored but not to %d channels: %s", o.channels, e.msg);
            if (img.w != w || img.h != h || img.c != o.channels)
                fz_fail("%dx%d as stored, %dx%dx%d when asked for %d channels", w, h, img.w,
                        img.h, img.c, o.channels);
            io_image_free(&img);
        }
    }
    free(buf);
}

void fz_manifest(fz_manifest_reader read, const char *name, const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        xd_err e;
        char *img = io_path_join(fz_dir(), "img"), *dir = io_path_join(fz_dir(), "dir");
        if (io_mkdir_p(img, &e) != XD_OK || io_mkdir_p(dir, &e) != XD_OK) fz_fail("%s", e.msg);
        free(img);
        free(dir);
        fz_write("a.png", NULL, 0);
        fz_write("b.jpg", NULL, 0);
        fz_write("img/c.png", NULL, 0);
        ready = 1;
    }
    const char *path = fz_write(name, data, size);
    io_manifest m;
    xd_err e;
    if (read(path, NULL, &m, &e) == XD_OK) {
        for (size_t i = 0; i < m.n; i++) {
            if (!m.paths[i] || !m.texts[i]) fz_fail("row %zu has no path or text", i);
            if (m.labels[i] < 0 || (size_t)m.labels[i] >= m.n_classes)
                fz_fail("row %zu has label %d of %zu classes", i, (int)m.labels[i], m.n_classes);
        }
        for (size_t c = 0; c < m.n_classes; c++)
            if (!m.class_names[c]) fz_fail("class %zu has no name", c);
    }
    io_manifest_free(&m);
}
