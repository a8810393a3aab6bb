/* Suite `grow`: cost as work grows.
 *
 * Examples: for N = 10^4, 10^5 and 10^6 (--quick: 500, 1000, 2000) a synthetic classification set
 * of N 28x28x1 training images and N/10 test images (pixels and labels drawn from the seed and
 * the example's index; the pixels of class k are brighter on the k-th of ten bands, so the set
 * can be learnt) is written through the data set writer (io/dataset.h), streamed a chunk at a
 * time so that the writer never holds more than GROW_CHUNK images; then the MLP student
 * 784-128-10 trains one epoch on it (CE, batch 128, AdamW) through the trainer `xdistill train`
 * runs, from a recipe naming the set, which maps the file, verifies it once, walks the epoch and
 * evaluates on the test split, at the first thread count of --threads: once with the epoch's
 * order from a stored shuffle (train.shuffle stored, the default: 4 bytes an example) and once
 * from a keyed permutation (train.shuffle keyed: a bit an example). Each step runs
 * in a process of its own (this program,
 * `xdistill bench --grow-child ...`), so that its peak memory is its own: the kernel's high-water
 * mark of the child (getrusage of the child reaped by wait4), and, sampled every few
 * milliseconds while it runs, its peak private memory (RssAnon: heap, stacks, buffers) and peak
 * mapped-file memory (RssFile, and RssShmem where the temporary folder is a tmpfs: the pages of
 * the program, its libraries and the data set file it touched, page cache shared with the system
 * and dropped under memory pressure without being written anywhere), and, less often, how much
 * of the mapped pages it reached through 2 MiB pages (FilePmdMapped, ShmemPmdMapped): the set's
 * pages in the page cache are huge where the kernel keeps large files so and the writer wrote
 * whole 2 MiB blocks (io_atomic_blocks), and without them a shuffled epoch over a large set pays
 * an address translation per example. Time per example and memory are set against the first
 * size.
 *
 * Width and batch: images/s and GFLOP/s (3 x the forward's flops: forward and backward) of the
 * training step of bench/train.h (forward, CE, backward, AdamW on images in memory) for the MLP
 * student at batch 16 to 1024, and for MLPs 784-H-10 with H = 64 to 2048 at batch 128, at each
 * thread count: where the products are too small to keep the cores busy, and where the rate
 * stops rising. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/train.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/recipe.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "io/file.h"
#include "modalities/sets/common.h"

enum {
    GROW_SIZES = 3,
    GROW_CHUNK = 4096,    /* images generated and written at a time */
    GROW_TEST_DIV = 10,   /* test images: N / 10 */
    GROW_BATCH = 128,     /* the recipes' batch */
    GROW_HIDDEN = 128,    /* the student's hidden width */
    GROW_SAMPLE_US = 2000, /* memory sampling period of a child */
    GROW_HUGE_EVERY = 10   /* ... and of its huge-page count, in those periods */
};

static const long sizes[GROW_SIZES] = {10000, 100000, 1000000};
static const long quick_sizes[GROW_SIZES] = {500, 1000, 2000};

static const int batches[] = {16, 32, 64, 128, 256, 512, 1024};
static const int widths[] = {64, 128, 256, 512, 1024, 2048};

#define GROW_SEED 1
#define GROW_MODEL                                                                                 \
    "input h=28 w=28 c=1; flatten; linear name=fc1 out=%d; relu name=feat; "                       \
    "linear name=logits out=10 head"

// ----------------------------------------------------------------------------------------------
// the synthetic set

static int32_t grow_label(uint64_t seed, uint64_t i)
{
    xd_rng r = xd_rng_make(seed, i, XD_RNG_USER);
    return (int32_t)xd_rng_below(&r, BENCH_CLASSES);
}

/* Image i (784 bytes): noise 0..127 (its own stream), plus 96 on rows [2.8 y, 2.8 (y + 1)). */
static void grow_image(uint64_t seed, uint64_t i, int32_t y, uint8_t *px)
{
    xd_rng r = xd_rng_make(seed, i, XD_RNG_USER + 1);
    for (int p = 0; p < BENCH_PIXELS; p += 8) {
        uint64_t v = xd_rng_u64(&r);
        for (int k = 0; k < 8; k++) px[p + k] = (uint8_t)((v >> (8 * k)) & 127);
    }
    for (int row = 28 * y / 10; row < 28 * (y + 1) / 10; row++)
        for (int x = 0; x < 28; x++) px[row * 28 + x] += 96;
}

/* One split's sections, streamed: S/image, S/label, S/label_mask, S/id; examples first..first+n
 * of the seed's sequence. */
static xd_status grow_split(io_dataset_writer *w, const char *split, uint64_t seed, uint64_t first,
                            int64_t n, xd_err *e)
{
    uint8_t *buf = xd_xmalloc((size_t)GROW_CHUNK * BENCH_PIXELS);
    char name[IO_DATASET_NAME_MAX + 1];
    int64_t img[4] = {n, 28, 28, 1};
    snprintf(name, sizeof name, "%s/image", split);
    xd_status s = io_dataset_begin(w, name, IO_U8, 4, img, e);
    for (int64_t i0 = 0; i0 < n && !s; i0 += GROW_CHUNK) {
        const int64_t m = n - i0 < GROW_CHUNK ? n - i0 : GROW_CHUNK;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            const uint64_t ex = first + (uint64_t)(i0 + i);
            grow_image(seed, ex, grow_label(seed, ex), buf + (size_t)i * BENCH_PIXELS);
        }
        s = io_dataset_write(w, buf, (size_t)m * BENCH_PIXELS, e);
    }
    if (!s) s = io_dataset_end(w, e);
    /* the per-example columns, a chunk at a time through the same buffer */
    static const char *const parts[3] = {"label", "label_mask", "id"};
    static const io_dtype types[3] = {IO_I32, IO_U8, IO_I32};
    for (int c = 0; c < 3 && !s; c++) {
        snprintf(name, sizeof name, "%s/%s", split, parts[c]);
        s = io_dataset_begin(w, name, types[c], 1, &n, e);
        for (int64_t i0 = 0; i0 < n && !s; i0 += GROW_CHUNK) {
            const int64_t m = n - i0 < GROW_CHUNK ? n - i0 : GROW_CHUNK;
            int32_t *v = (int32_t *)(void *)buf;
            for (int64_t i = 0; i < m; i++) {
                const uint64_t ex = first + (uint64_t)(i0 + i);
                if (c == 0) v[i] = grow_label(seed, ex);
                else if (c == 1) buf[i] = 1;
                else v[i] = (int32_t)(i0 + i);
            }
            s = io_dataset_write(w, buf, (size_t)m * (c == 1 ? 1 : sizeof(int32_t)), e);
        }
        if (!s) s = io_dataset_end(w, e);
    }
    free(buf);
    return s;
}

/* The set at path: n training and n / GROW_TEST_DIV test examples, classes "0" to "9". */
static xd_status grow_write_set(const char *path, int64_t n, uint64_t seed, xd_err *e)
{
    static const char *const classes[BENCH_CLASSES] = {"0", "1", "2", "3", "4",
                                                       "5", "6", "7", "8", "9"};
    io_dataset_writer *w;
    xd_status s = io_dataset_writer_open(path, 0, &w, e);
    if (s) return s;
    s = sets_write_meta(w, "synthetic", SETS_CLASSIFICATION, seed, e);
    if (!s) s = io_dataset_add_strings(w, "classes", classes, BENCH_CLASSES, e);
    if (!s) s = grow_split(w, "train", seed, 0, n, e);
    if (!s) s = grow_split(w, "test", seed, (uint64_t)n, n / GROW_TEST_DIV, e);
    if (s) {
        io_dataset_writer_abort(w);
        return s;
    }
    return io_dataset_finish(w, e);
}

// ----------------------------------------------------------------------------------------------
// the children

static int child_fail(const char *what, const xd_err *e)
{
    fprintf(stderr, "xdistill bench grow: %s: %s\n", what, e->msg);
    return 1;
}

static int child_prepare(const char *path, long n)
{
    xd_err e;
    double t0 = bench_now();
    if (grow_write_set(path, n, GROW_SEED, &e) != XD_OK) return child_fail("prepare", &e);
    printf("prepare_s %.6f\n", bench_now() - t0);
    return 0;
}

static int child_train(const char *path, const char *out_dir, const char *shuffle)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: grow\nseed: %d\ndata:\n  path: \"%s\"\n"
             "  augment: \"mean=0.286 std=0.353\"\n"
             "model: \"" GROW_MODEL "\"\n"
             "train:\n  epochs: 1\n  batch: %d\n  shuffle: %s\n"
             "  optimizer: {kind: adamw, lr: 0.001, weight_decay: 0}\n"
             "losses:\n  - {kind: ce}\n",
             GROW_SEED, path, GROW_HIDDEN, GROW_BATCH, shuffle);
    recipe r;
    xd_err e;
    xd_status s = recipe_parse("grow.yaml", text, strlen(text), NULL, 0, 0, &r, &e);
    if (s != XD_OK) return child_fail("recipe", &e);
    train_opts o = {.out_dir = out_dir, .quiet = 1, .log = stderr};
    train_result res;
    memset(&res, 0, sizeof res);
    double t0 = bench_now();
    s = trainer_run(&r, GROW_SEED, &o, &res, &e);
    double secs = bench_now() - t0;
    recipe_free(&r);
    if (s != XD_OK) return child_fail("train", &e);
    printf("train_s %.6f steps_s %.6f images %.0f accuracy %.6f\n", secs, res.seconds,
           res.images_per_s * res.seconds, res.final_acc);
    return 0;
}

/* argv: BENCH_GROW_CHILD, then "prepare FILE N THREADS" or "train FILE DIR THREADS SHUFFLE". */
int bench_grow_child(int argc, char **argv)
{
    char *end = NULL;
    long th = argc >= 5 ? strtol(argv[4], &end, 10) : 0;
    if (argc >= 5 && *end == '\0' && th > 0 && th <= 1024) {
        xd_threads_set((int)th);
        long n = strtol(argv[3], &end, 10);
        if (argc == 5 && strcmp(argv[1], "prepare") == 0 && *end == '\0' && n > 0 && n <= INT32_MAX)
            return child_prepare(argv[2], n);
        if (argc == 6 && strcmp(argv[1], "train") == 0)
            return child_train(argv[2], argv[3], argv[5]);
    }
    fprintf(stderr, "xdistill bench: " BENCH_GROW_CHILD " prepare FILE N THREADS | train FILE "
                    "DIR THREADS stored|keyed (the grow suite's steps)\n");
    return 2;
}

// ----------------------------------------------------------------------------------------------
// running a child and watching its memory

typedef struct {
    double seconds;       /* wall time of the process */
    double cpu_s;         /* its CPU time, user and system, all threads */
    double max_rss_mib;   /* the kernel's high-water mark (ru_maxrss) */
    double anon_mib;      /* sampled peak RssAnon */
    double file_mib;      /* sampled peak RssFile */
    double huge_mib;      /* sampled peak of those in 2 MiB pages (-1: not known) */
    char line[256];       /* what it printed */
} child_run;

/* Fields of /proc/PID/NAME (status, smaps_rollup), in kB, summed by group: field i adds to
 * group[i]'s sum (groups 0 and 1), and each group's sum (in MiB) goes into peak[group] when
 * above it. Returns whether any field was there (0 when the file is gone). One read of the file
 * for all groups. */
static int sample_sum(pid_t pid, const char *name, const char *const *fields, const int *group,
                      int n, double *peak)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long kb, sum[2] = {0, 0};
    int found = 0;
    while (fgets(line, sizeof line, f))
        for (int i = 0; i < n; i++) {
            const size_t len = strlen(fields[i]);
            if (strncmp(line, fields[i], len) == 0 && sscanf(line + len, ": %lu", &kb) == 1) {
                sum[group[i]] += kb;
                found = 1;
            }
        }
    fclose(f);
    for (int i = 0; found && i < n; i++)
        if (sum[group[i]] / 1024.0 > peak[group[i]]) peak[group[i]] = sum[group[i]] / 1024.0;
    return found;
}

/* Private memory (RssAnon) and mapped files (RssFile, and RssShmem: the set when the temporary
 * folder is a tmpfs) from the status. */
static void sample_rss(pid_t pid, child_run *c)
{
    static const char *const fields[] = {"RssAnon", "RssFile", "RssShmem"};
    static const int group[] = {0, 1, 1};
    double peak[2] = {c->anon_mib, c->file_mib};
    sample_sum(pid, "status", fields, group, 3, peak);
    c->anon_mib = peak[0];
    c->file_mib = peak[1];
}

/* How much of the mapped files, the data set above all, the process reaches through huge pages
 * (FilePmdMapped, and ShmemPmdMapped on a tmpfs). Reading smaps_rollup walks the process's page
 * tables, so it is sampled less often than the status; huge_mib stays -1 when it was never read
 * (a kernel without it, or a child too short to sample). */
static void sample_huge(pid_t pid, child_run *c)
{
    static const char *const fields[] = {"FilePmdMapped", "ShmemPmdMapped"};
    static const int group[] = {0, 0};
    double peak = c->huge_mib < 0 ? 0.0 : c->huge_mib;
    if (sample_sum(pid, "smaps_rollup", fields, group, 2, &peak)) c->huge_mib = peak;
}

static int run_child(char *const args[], child_run *c)
{
    extern char **environ;
    memset(c, 0, sizeof *c);
    c->huge_mib = -1.0;
    int fds[2];
    if (pipe(fds) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    fflush(NULL);
    pid_t pid;
    double t0 = bench_now();
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return -1;
    }
    int status = 0;
    struct rusage ru;
    const struct timespec nap = {0, GROW_SAMPLE_US * 1000L};
    long samples = 0;
    for (;;) {
        pid_t r = wait4(pid, &status, WNOHANG, &ru);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) {
            close(fds[0]);
            return -1;
        }
        sample_rss(pid, c);
        if (++samples % GROW_HUGE_EVERY == 0) sample_huge(pid, c);
        nanosleep(&nap, NULL);
    }
    c->seconds = bench_now() - t0;
    c->max_rss_mib = (double)ru.ru_maxrss / 1024.0;
    c->cpu_s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
               (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    ssize_t got = read(fds[0], c->line, sizeof c->line - 1);
    close(fds[0]);
    c->line[got > 0 ? got : 0] = '\0';
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

// ----------------------------------------------------------------------------------------------
// examples

/* each size trains with every epoch order (train.shuffle) */
enum { GROW_ORDERS = RECIPE_SHUFFLE_COUNT };

typedef struct {
    double train_s, steps_s, images, acc;
    child_run train;
} grow_train;

typedef struct {
    long n;
    double prep_s;
    child_run prep;
    grow_train t[GROW_ORDERS];
} grow_row;

static int grow_size(const char *tmp, long n, int threads, grow_row *g)
{
    memset(g, 0, sizeof *g);
    g->n = n;
    char *path = io_path_join(tmp, "dataset.xds"), *out = io_path_join(tmp, "run");
    char num[32], thr[16];
    snprintf(num, sizeof num, "%ld", n);
    snprintf(thr, sizeof thr, "%d", threads);
    char *prep[] = {"xdistill", "bench", BENCH_GROW_CHILD, "prepare", path, num, thr, NULL};
    char *cache = io_dataset_cache_dir(path);
    int rc = run_child(prep, &g->prep);
    if (!rc && sscanf(g->prep.line, "prepare_s %lf", &g->prep_s) != 1) rc = -1;
    /* each order's run opens the set as a first one does: the record of its verified checksums
     * (in the set's cache folder) goes with the run before */
    for (int k = 0; k < GROW_ORDERS && !rc; k++) {
        char *train[] = {"xdistill", "bench", BENCH_GROW_CHILD, "train", path, out, thr,
                         (char *)recipe_shuffle_names[k], NULL};
        grow_train *t = &g->t[k];
        rc = run_child(train, &t->train);
        if (!rc && sscanf(t->train.line, "train_s %lf steps_s %lf images %lf accuracy %lf",
                          &t->train_s, &t->steps_s, &t->images, &t->acc) != 4)
            rc = -1;
        io_remove_tree(out);
        io_remove_tree(cache);
    }
    io_remove_tree(path);
    io_remove_tree(out);
    io_remove_tree(cache);
    free(cache);
    free(path);
    free(out);
    if (rc) fprintf(stderr, "xdistill bench: grow: the run on %ld examples failed\n", n);
    return rc;
}

/* Size g trained with order k, against the first size with the same order. */
static void grow_print(const bench_opts *o, const grow_row *row, const grow_row *first, int k,
                       int threads)
{
    const grow_train *g = &row->t[k], *f0 = &first->t[k];
    const double n = (double)row->n, n0 = (double)first->n;
    const double pe = row->prep_s / n, te = g->train_s / n, se = g->steps_s / n;
    /* the huge-page figure, or null / - when it could not be read */
    char huge_json[32] = "null", huge_text[32] = "-";
    if (g->train.huge_mib >= 0) {
        snprintf(huge_json, sizeof huge_json, "%.1f", g->train.huge_mib);
        snprintf(huge_text, sizeof huge_text, "%.1f", g->train.huge_mib);
    }
    if (o->json) {
        fprintf(o->out,
                "{\"suite\":\"grow\",\"case\":\"examples\",\"shuffle\":\"%s\",\"examples\":%ld,"
                "\"test_examples\":%ld,\"threads\":%d,\"batch\":%d,\"prepare_s\":%.4f,"
                "\"prepare_us_per_example\":%.4f,"
                "\"prepare_peak_rss_mib\":%.1f,\"prepare_peak_private_mib\":%.1f,\"train_s\":%.4f,"
                "\"train_us_per_example\":%.4f,\"train_cpu_s\":%.4f,\"steps_s\":%.4f,"
                "\"steps_us_per_example\":%.4f,"
                "\"trained_examples\":%.0f,\"test_accuracy\":%.4f,\"peak_rss_mib\":%.1f,"
                "\"peak_private_mib\":%.1f,\"peak_mapped_mib\":%.1f,\"peak_mapped_huge_mib\":%s,"
                "\"train_us_per_example_vs_first\":%.3f,\"steps_us_per_example_vs_first\":%.3f,"
                "\"prepare_us_per_example_vs_first\":%.3f,\"peak_rss_vs_first\":%.3f,"
                "\"peak_private_vs_first\":%.3f}\n",
                recipe_shuffle_names[k], row->n, row->n / GROW_TEST_DIV, threads, GROW_BATCH,
                row->prep_s,
                1e6 * pe, row->prep.max_rss_mib, row->prep.anon_mib, g->train_s, 1e6 * te,
                g->train.cpu_s, g->steps_s, 1e6 * se,
                g->images, g->acc, g->train.max_rss_mib, g->train.anon_mib, g->train.file_mib,
                huge_json, te / (f0->train_s / n0), se / (f0->steps_s / n0),
                pe / (first->prep_s / n0),
                g->train.max_rss_mib / f0->train.max_rss_mib,
                g->train.anon_mib / f0->train.anon_mib);
        return;
    }
    fprintf(o->out, "%-6s %8ld %8.2f %6.2f %7.1f %8.2f %6.2f %6.2f %8.2f %6.2f %9.1f %8.1f %8.1f "
                    "%7s %5.2fx %5.2fx %5.2fx %5.2fx\n",
            recipe_shuffle_names[k], row->n, row->prep_s, 1e6 * pe, row->prep.max_rss_mib,
            g->train_s,
            1e6 * te, g->train.cpu_s, g->steps_s,
            1e6 * se, g->train.max_rss_mib, g->train.anon_mib, g->train.file_mib, huge_text,
            te / (f0->train_s / n0), se / (f0->steps_s / n0),
            g->train.max_rss_mib / f0->train.max_rss_mib,
            g->train.anon_mib / f0->train.anon_mib);
}

/* The largest |x_i / x_0 - 1| over the rows, as a percentage. */
static double spread(const double *x, int n)
{
    double m = 0.0;
    for (int i = 1; i < n; i++) m = fmax(m, fabs(x[i] / x[0] - 1.0));
    return 100.0 * m;
}

/* The checks over the sizes for order k. */
static void grow_checks(const bench_opts *o, const grow_row *g, int n, int k)
{
    double prep[GROW_SIZES], train[GROW_SIZES], steps[GROW_SIZES], rss[GROW_SIZES],
        anon[GROW_SIZES], prss[GROW_SIZES];
    for (int i = 0; i < n; i++) {
        prep[i] = g[i].prep_s / (double)g[i].n;
        train[i] = g[i].t[k].train_s / (double)g[i].n;
        steps[i] = g[i].t[k].steps_s / (double)g[i].n;
        rss[i] = g[i].t[k].train.max_rss_mib;
        anon[i] = g[i].t[k].train.anon_mib;
        prss[i] = g[i].prep.max_rss_mib;
    }
    /* the cost of the examples added from one size to the next: fixed costs (start-up, set-up,
     * checkpoints) cancel out */
    double marg[GROW_SIZES] = {0};
    for (int i = 1; i < n; i++)
        marg[i] = 1e6 * (g[i].t[k].train_s - g[i - 1].t[k].train_s) / (double)(g[i].n - g[i - 1].n);
    /* private bytes added per example from the first size to the last */
    const double per_ex = (anon[n - 1] - anon[0]) * 1048576.0 / (double)(g[n - 1].n - g[0].n);
    const double file_ex = (g[n - 1].t[k].train.file_mib - g[0].t[k].train.file_mib) * 1048576.0 /
                           (double)(g[n - 1].n - g[0].n);
    /* the share of the largest set's mapped pages that the epoch reached through huge pages: a
     * shuffled epoch over a set beyond the caches pays an address translation per example
     * without them (the data set writer's 2 MiB blocks give them where the kernel can) */
    const child_run *last = &g[n - 1].t[k].train;
    char huge_json[32] = "null", huge_text[64] = "not known (no smaps_rollup read)";
    if (last->huge_mib >= 0 && last->file_mib > 0) {
        const double pct = 100.0 * last->huge_mib / last->file_mib;
        snprintf(huge_json, sizeof huge_json, "%.1f", pct);
        snprintf(huge_text, sizeof huge_text, "%.0f%%", pct);
    }
    if (o->json) {
        fprintf(o->out, "{\"suite\":\"grow\",\"case\":\"examples_check\",\"shuffle\":\"%s\","
                        "\"prepare_us_per_example_"
                        "spread_pct\":%.1f,\"train_us_per_example_spread_pct\":%.1f,\"steps_us_"
                        "per_example_spread_pct\":%.1f,\"prepare_peak_rss_spread_pct\":%.1f,"
                        "\"peak_rss_spread_pct\":%.1f,\"peak_private_spread_pct\":%.1f,"
                        "\"private_bytes_per_example\":%.1f,\"mapped_bytes_per_example\":%.1f,"
                        "\"mapped_huge_pct_last\":%s,"
                        "\"train_marginal_us_per_example\":[%.4f,%.4f]}\n",
                recipe_shuffle_names[k], spread(prep, n), spread(train, n), spread(steps, n),
                spread(prss, n), spread(rss, n), spread(anon, n), per_ex, file_ex, huge_json,
                marg[1], marg[n - 1]);
        return;
    }
    fprintf(o->out,
            "train.shuffle %s, time per example against N = %ld: prepare within %.1f%%, train "
            "within %.1f%%, epoch steps within %.1f%% (0%% = exactly linear in N); train time of "
            "the added examples %.2f us each from N = %ld to %ld, %.2f from %ld to %ld\n"
            "memory against N = %ld: prepare peak RSS within %.1f%%; train peak RSS within "
            "%.1f%%, of it private within %.1f%% (+%.1f bytes per example) and mapped +%.1f "
            "bytes per example (the data set file is %d bytes per training example, %.1f with "
            "its test share); at N = %ld, of the mapped pages in huge pages: %s\n",
            recipe_shuffle_names[k], g[0].n, spread(prep, n), spread(train, n), spread(steps, n),
            marg[1], g[0].n, g[1].n, marg[n - 1], g[n - 2].n, g[n - 1].n, g[0].n, spread(prss, n),
            spread(rss, n), spread(anon, n), per_ex, file_ex, BENCH_PIXELS + 9,
            (BENCH_PIXELS + 9) * (1.0 + 1.0 / GROW_TEST_DIV), g[n - 1].n, huge_text);
}

static int grow_examples(const bench_opts *o)
{
    FILE *f = o->out;
    const long *ns = o->quick ? quick_sizes : sizes;
    const int threads = o->threads[0];
    char tmp[1024];
    if (bench_temp_dir("grow", tmp, sizeof tmp)) return 1;
    const int slot = io_temp_add(tmp, 1);
    if (!o->json)
        fprintf(f, "\ncost as work grows: a synthetic set of N 28x28x1 training images (+N/10 "
                   "test) written through the data set writer (prepare), then one epoch of the "
                   "MLP student 784-128-10 (CE, batch %d, AdamW) through the trainer of `xdistill "
                   "train` at %d thread%s (train: open and verify the set, the epoch, the test "
                   "evaluation, the checkpoints; cpu s: its CPU time; steps: the epoch alone); "
                   "each step a process of "
                   "its own; memory: its kernel peak RSS (MiB), and sampled peaks of its private "
                   "memory and of the mapped files it touched (huge: of those, reached through "
                   "2 MiB pages); order: the epoch's, train.shuffle stored (an array of the "
                   "examples) or keyed (computed where it is read)\n"
                   "%-6s %8s %8s %6s %7s %8s %6s %6s %8s %6s %9s %8s %8s %7s %6s %6s %6s %6s\n",
                GROW_BATCH, threads, threads > 1 ? "s" : "", "order", "N", "prep s", "us/ex", "RSS",
                "train s", "us/ex", "cpu s", "steps s",
                "us/ex", "peak RSS", "private", "mapped", "huge", "train", "steps", "RSS", "priv");
    grow_row g[GROW_SIZES];
    int rc = 0;
    for (int i = 0; i < GROW_SIZES && !rc; i++) {
        rc = grow_size(tmp, ns[i], threads, &g[i]);
        for (int k = 0; k < GROW_ORDERS && !rc; k++) grow_print(o, &g[i], &g[0], k, threads);
    }
    for (int k = 0; k < GROW_ORDERS && !rc; k++) grow_checks(o, g, GROW_SIZES, k);
    io_remove_tree(tmp);
    io_temp_drop(slot);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// width and batch

/* Times the step of t at batch B for each thread count; one row each, GFLOP/s into gf[thread]. */
static void grow_steps(const bench_opts *o, bench_trainer *t, const char *what, int hidden, int B,
                       double *gf)
{
    const double flops = nn_model_flops(&t->m);
    double first = 0.0;
    t->B = B;
    for (int ti = 0; ti < o->n_threads; ti++) {
        const int th = o->threads[ti];
        xd_threads_set(th);
        bench_time tm = bench_run(bench_train_step, t, o->min_seconds, o->quick ? 3 : 10, 100000);
        const double ips = B / tm.median;
        gf[ti] = 3.0 * flops * ips / 1e9;
        if (ti == 0) first = ips;
        if (o->json)
            fprintf(o->out, "{\"suite\":\"grow\",\"case\":\"%s\",\"hidden\":%d,\"batch\":%d,"
                            "\"threads\":%d,\"params\":%zu,\"step_s\":%.6f,\"min_s\":%.6f,"
                            "\"max_s\":%.6f,\"reps\":%d,\"images_per_s\":%.1f,"
                            "\"approx_gflops\":%.2f,"
                            "\"speedup_vs_first\":%.3f,\"first_threads\":%d}\n",
                    what, hidden, B, th, t->m.n_param, tm.median, tm.min, tm.max, tm.reps, ips,
                    gf[ti], ips / first, o->threads[0]);
        else
            fprintf(o->out, "%-6s %6d %5d %3d %10.3f %10.0f %8.1f %7.2fx\n", what, hidden, B, th,
                    1e3 * tm.median, ips, gf[ti], ips / first);
    }
}

/* Where a sweep stops scaling: per thread count, its best GFLOP/s and the first point (batch or
 * width, at[k]) that reaches 90% of it. gf: (n, threads). */
static void grow_knee(const bench_opts *o, const char *what, const int *at, size_t n,
                      const double *gf)
{
    for (int ti = 0; ti < o->n_threads; ti++) {
        double best = 0.0;
        for (size_t k = 0; k < n; k++) best = fmax(best, gf[k * 4 + (size_t)ti]);
        size_t knee = 0;
        while (knee + 1 < n && gf[knee * 4 + (size_t)ti] < 0.9 * best) knee++;
        if (o->json)
            fprintf(o->out, "{\"suite\":\"grow\",\"case\":\"%s_knee\",\"threads\":%d,"
                            "\"best_gflops\":%.2f,\"from\":%d}\n",
                    what, o->threads[ti], best, at[knee]);
        else
            fprintf(o->out, "  %s at %d thread%s: best %.1f GFLOP/s; within 10%% of it from %s %d "
                            "on\n", what, o->threads[ti], o->threads[ti] > 1 ? "s" : "", best,
                    what, at[knee]);
    }
}

static int grow_kernel(const bench_opts *o)
{
    bench_images d;
    if (bench_images_open(&d)) return 1;
    if (!o->json) {
        fprintf(o->out, "\ntraining step (forward + CE + backward + AdamW, images in memory) of "
                        "the "
                        "MLP 784-H-10 against batch (H = 128) and width (batch %d); median step; "
                        "GFLOP/s = 3 x forward flops x images/s\n",
                GROW_BATCH);
        bench_images_note(&d, o->out);
        fprintf(o->out, "%-6s %6s %5s %3s %10s %10s %8s %8s\n", "sweep", "H", "batch", "thr",
                "step ms", "images/s", "GFLOP/s", "speed-up");
    } else if (!d.real) {
        bench_images_note(&d, stderr);
    }
    const size_t nb = o->quick ? 2 : sizeof batches / sizeof batches[0];
    const size_t nw = o->quick ? 2 : sizeof widths / sizeof widths[0];
    int rc = 0;
    xd_err e;
    bench_trainer t;
    char desc[256];
    snprintf(desc, sizeof desc, GROW_MODEL, GROW_HIDDEN);
    if (bench_trainer_make(&t, desc, batches[nb - 1], &d, &e) != XD_OK) {
        fprintf(stderr, "xdistill bench: grow: %s\n", e.msg);
        bench_images_free(&d);
        return 1;
    }
    double gf[sizeof widths / sizeof widths[0] + sizeof batches / sizeof batches[0]][4];
    for (size_t b = 0; b < nb; b++) grow_steps(o, &t, "batch", GROW_HIDDEN, batches[b], gf[b]);
    bench_trainer_free(&t);
    grow_knee(o, "batch", batches, nb, gf[0]);
    for (size_t k = 0; k < nw && !rc; k++) {
        snprintf(desc, sizeof desc, GROW_MODEL, widths[k]);
        if (bench_trainer_make(&t, desc, GROW_BATCH, &d, &e) != XD_OK) {
            fprintf(stderr, "xdistill bench: grow: %s\n", e.msg);
            rc = 1;
            break;
        }
        grow_steps(o, &t, "width", widths[k], GROW_BATCH, gf[k]);
        bench_trainer_free(&t);
    }
    if (!rc) grow_knee(o, "width", widths, nw, gf[0]);
    bench_images_free(&d);
    return rc;
}

int bench_grow(const bench_opts *o)
{
    int all = xd_threads_get();
    int rc = grow_examples(o);
    if (!rc) rc = grow_kernel(o);
    xd_threads_set(all);
    return rc;
}
