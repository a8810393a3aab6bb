/* The report tests' fixtures (see reportfix.h). */
#include "tests/support/reportfix.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/png.h"
#include "tests/support/runcli.h"
#include "tests/support/testutil.h"
#include "tests/support/tinyset.h"

#define TEACHER                                                                                  \
    "name: tiny-teacher\ndata: {path: toy.xds}\nmodel: \"" RP_MLP_MODEL "\"\n"                   \
    "train: {epochs: 3, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"            \
    "losses:\n  - kind: ce\n"
#define STUDENT                                                                                  \
    "name: tiny-student\ndata: {path: toy.xds, label_fraction: 0.05}\n"                          \
    "model: \"" RP_MLP_MODEL "\"\n"                                                              \
    "teachers:\n  - {name: t, checkpoint: \"runs/x<i>&'q/teacher/seed-1/best.safetensors\"}\n"   \
    "train: {epochs: 2, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.001}}\n"           \
    "losses:\n  - kind: ce\n  - {kind: kd, teacher: t, temperature: 2}\n"

/* runs `xdistill ARGS > out 2> err`; returns the exit status */
int rp_xd(const char *args)
{
    char *cmd = tu_fmt("'%s' %s > out.txt 2> err.txt", tu_cli_bin(), args);
    int rc = system(cmd);
    free(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

char *rp_slurp(const char *path)
{
    size_t n;
    return tu_read_file(path, &n);
}

int rp_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* data-mean / data-std of the table row of run name */
void rp_row_figures(const char *page, const char *name, double *mean, double *std)
{
    char *tag = tu_fmt("<tr data-run=\"%s\"", name);
    const char *p = strstr(page, tag);
    if (!p) {
        free(tag);
        tag = tu_fmt("<tr class=\"best\" data-run=\"%s\"", name);
        p = strstr(page, tag);
    }
    if (!p) fail_msg("no table row for %s", name);
    p = strstr(p, "data-mean=\"");
    assert_non_null(p);
    *mean = strtod(p + 11, NULL);
    p = strstr(p, "data-std=\"");
    assert_non_null(p);
    *std = strtod(p + 10, NULL);
    free(tag);
}

/* the <figure> of a chart key, as a new string */
char *rp_figure(const char *page, const char *key)
{
    char *tag = tu_fmt("<figure class=\"chart\" data-key=\"%s\">", key);
    const char *p = strstr(page, tag);
    free(tag);
    if (!p) return NULL;
    const char *end = strstr(p, "</figure>");
    assert_non_null(end);
    return strndup(p, (size_t)(end - p));
}

/* the page in headless Chromium: a screenshot that is not blank, and no console message (the page
 * has no script, so any message, an error or a failed load, is a fault); a page with a script
 * error must be caught the same way, or the check would prove nothing */
static int chromium_console(const char *page, const char *png, int expected)
{
    char *cmd = tu_fmt("chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                    "--disable-background-networking --disable-component-update --disable-sync "
                    "--user-data-dir=\"$PWD/chrome-profile\" --enable-logging=stderr --v=0 "
                    "--window-size=1200,2000 --screenshot='%s' 'file://%s' > chrome.out "
                    "2> chrome.err", png, page);
    int rc = system(cmd);
    free(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    char *err = rp_slurp("chrome.err");
    int found = 0;
    for (char *l = strtok(err, "\n"); l; l = strtok(NULL, "\n"))
        if (strstr(l, "CONSOLE") || strstr(l, "Uncaught")) {
            print_message("chromium console%s: %s\n", expected ? " (expected)" : "", l);
            found++;
        }
    free(err);
    return found;
}

void rp_check_render(const char *name)
{
    if (system("command -v chromium > /dev/null 2>&1") != 0) {
        print_message("SKIPPED: rendering the report needs Debian's chromium "
                      "(scripts/setup.sh installs it); not found on PATH\n");
        return;
    }
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *page = tu_fmt("%s/%s", cwd, name), *bad = tu_fmt("%s/broken.html", cwd);
    const char *broken = "<!DOCTYPE html><html><body><p>x</p><script>no_such_function();"
                         "</script></body></html>";
    tu_write_file("broken.html", broken, strlen(broken));
    assert_true(chromium_console(bad, "broken.png", 1) > 0);
    assert_int_equal(chromium_console(page, "shot.png", 0), 0);
    io_image img;
    TU_OK(io_png_read("shot.png", NULL, &img, NULL));
    assert_true(img.w >= 1000 && img.h >= 1000);
    /* not blank: a good share of the pixels are not the background's colour */
    size_t n = (size_t)img.w * img.h, ink = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img.px + i * (size_t)img.c;
        ink += p[0] < 235 || p[1] < 235 || p[2] < 235;
    }
    print_message("screenshot %dx%d: %.1f%% of the pixels drawn\n", img.w, img.h, 100.0 * ink / n);
    assert_true(ink > n / 50);
    io_image_free(&img);
    free(page);
    free(bad);
}

void rp_classify_runs(void)
{
    static int done;
    if (done) return;
    tiny_spec sp = tiny_default();
    tiny_write("toy.xds", &sp);
    tu_write_file("teacher.yaml", TEACHER, strlen(TEACHER));
    tu_write_file("student.yaml", STUDENT, strlen(STUDENT));
    assert_int_equal(rp_xd("train teacher.yaml --seeds 2 --quiet --out \"runs/x<i>&'q/teacher\""),
                     0);
    assert_int_equal(rp_xd("train student.yaml --seeds 2 --quiet --out \"runs/x<i>&'q/student\""),
                     0);
    done = 1;
}
