/* ONNX checks for tests (see onnxrun.h). */
#include "tests/support/onnxrun.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/testutil.h"

#define PYTHON "/usr/bin/python3"

/* Runs a shell command; on failure fails the test with what it wrote to log. */
static void run_or_fail(const char *cmd, const char *log, const char *what)
{
    if (system(cmd) == 0) return;
    size_t n;
    char *text = tu_read_file(log, &n);
    fail_msg("%s: %.*s", what, (int)n, text);
}

void tu_onnx_check(const char *onnx)
{
    char *cmd = tu_fmt(PYTHON " -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), "
                       "full_check=True)' %s > check.log 2>&1", onnx);
    char *what = tu_fmt("onnx.checker refuses %s", onnx);
    run_or_fail(cmd, "check.log", what);
    free(what);
    free(cmd);
}

/* The folder of onnxruntime-node's node_modules, or NULL. */
static char *ort_modules(void)
{
    const char *cache = getenv("XDISTILL_CACHE");
    char *dir = cache && *cache ? tu_fmt("%s/onnxruntime/node_modules", cache)
                                : tu_fmt("%s", tu_src_path("cache/onnxruntime/node_modules"));
    char *pkg = tu_fmt("%s/onnxruntime-node", dir);
    struct stat st;
    int ok = stat(pkg, &st) == 0 && system("node --version > /dev/null 2>&1") == 0;
    free(pkg);
    if (!ok) free(dir);
    return ok ? dir : NULL;
}

/* Whether ONNX Runtime's fused int8 products give the QDQ graph's values on this CPU: without an
 * 8-bit dot product into int32 (VNNI), its x86 kernels multiply the uint8 codes by the int8
 * weights with vpmaddubsw, whose sum of two products saturates at 16 bits (2 x 255 x 127 is
 * 64770), so a layer's sums can be off by thousands of codes. */
static int ort_int8_exact(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
#else
    return 1;
#endif
}

/* Whether the ONNX file holds a QuantizeLinear node (an int8 model's QDQ form) */
static int has_qdq(const char *onnx)
{
    size_t len;
    char *bytes = tu_read_file(onnx, &len);
    static const char op[] = "QuantizeLinear";
    const int found = memmem(bytes, len, op, sizeof op - 1) != NULL;
    free(bytes);
    return found;
}

int tu_onnx_compare(const char *onnx, const char *input, const char *dims, const float *want,
                    size_t n)
{
    char *modules = ort_modules();
    if (!modules) {
        print_message("onnxruntime-node or node missing (scripts/setup.sh installs it): %s is "
                      "not run in ONNX Runtime\n", onnx);
        return -1;
    }
    /* where its fused int8 kernels saturate, the graph's nodes one by one (its optimisations
     * off): what the QDQ form means, which is what the export must get right */
    const int unfused = !ort_int8_exact() && has_qdq(onnx);
    if (unfused)
        print_message("%s: ONNX Runtime with its graph optimisations off (this CPU has no VNNI: "
                      "its fused int8 products saturate)\n", onnx);
    char *cmd = tu_fmt("NODE_PATH=%s XDISTILL_ORT_UNFUSED=%d node %s %s %s %s > ort.out 2> ort.err",
                       modules, unfused, tu_src_path("tests/support/ort_run.js"), onnx, input,
                       dims);
    char *what = tu_fmt("ONNX Runtime on %s", onnx);
    run_or_fail(cmd, "ort.err", what);
    free(what);
    free(cmd);
    free(modules);
    size_t len;
    char *out = tu_read_file("ort.out", &len);
    out = realloc(out, len + 1);
    out[len] = '\0';
    const char *p = out + 1;
    for (size_t i = 0; i < n; i++) {
        char *end;
        double got = strtod(p, &end);
        if (end == p) fail_msg("%s: ONNX Runtime gave %zu values, not %zu", onnx, i, n);
        if (fabs(got - want[i]) > 1e-4 * fabs(want[i]) + 1e-7)
            fail_msg("%s: probability %zu: ONNX Runtime %.8g, ours %.8g", onnx, i, got,
                     (double)want[i]);
        p = end + 1;
    }
    assert_int_equal(p[-1], ']');
    free(out);
    return 0;
}
