/* io/file's temporary paths: SIGINT/SIGTERM remove the live ones (a temporary file beside an
 * output, a staged output folder with files in it) and the process still dies by the signal; the
 * next write into a folder removes temporary entries of processes that are gone and keeps those
 * of live ones. Writers in whole blocks. */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/file.h"
#include "modalities/sets/common.h"

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Entries of "." whose name contains part. */
static int count_named(const char *part)
{
    DIR *d = opendir(".");
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (strstr(de->d_name, part)) n++;
    closedir(d);
    return n;
}

static void write_small(const char *path)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

/* The child: a half-written output file and a staged folder (files two levels deep), then it
 * tells the parent and waits for the signal. */
static const char *child_out, *child_set;

static void child_work(void *ctx, int ready_fd)
{
    (void)ctx;
    const char *out = child_out, *set = child_set;
    io_atomic w;
    sets_outdir o;
    xd_err e;
    if (io_atomic_open(&w, out, &e) || io_atomic_write(&w, "abc", 3, &e)) _exit(3);
    fflush(w.f);
    if (sets_outdir_open(&o, set, &e)) _exit(4);
    char *sub = sets_outdir_path(&o, "preview");
    mkdir(sub, 0777);
    char *deep = io_path_join(sub, "a.png");
    write_small(deep);
    char *top = sets_outdir_path(&o, "dataset.xds");
    write_small(top);
    tu_ready_wait(ready_fd);
}

/* out and set name the outputs */
static void signal_cleans(int sig, const char *out, const char *set)
{
    child_out = out;
    child_set = set;
    pid_t pid = tu_fork_ready(sig, child_work, NULL);
    char staged[64], tmp_prefix[64];
    snprintf(staged, sizeof staged, "%s.tmp-%ld", set, (long)pid);
    snprintf(tmp_prefix, sizeof tmp_prefix, "%s.tmp.", out);
    int had_staged = exists(staged), had_tmp = count_named(tmp_prefix);
    /* the signal is sent before the checks, so that no child outlives a failed one */
    tu_kill_check(pid, sig);
    assert_true(had_staged);
    assert_int_equal(had_tmp, 1);
    assert_false(exists(staged));
    assert_int_equal(count_named(tmp_prefix), 0);
    assert_false(exists(out));
    assert_false(exists(set));
}

static void test_sigterm_removes_temporaries(void **state)
{
    (void)state;
    signal_cleans(SIGTERM, "term.bin", "term-set");
}

static void test_sigint_removes_temporaries(void **state)
{
    (void)state;
    signal_cleans(SIGINT, "int.bin", "int-set");
}

/* A process id that was just in use and is gone now. */
static long dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    return (long)pid;
}

static void test_stale_temporaries_removed(void **state)
{
    (void)state;
    long dead = dead_pid(), live = (long)getppid();
    char dead_file[64], live_file[64], dead_dir[64], dead_inner[96], live_dir[64];
    snprintf(dead_file, sizeof dead_file, "other.bin.tmp.%ld.aB3xYz", dead);
    snprintf(live_file, sizeof live_file, "other.bin.tmp.%ld.aB3xYz", live);
    snprintf(dead_dir, sizeof dead_dir, "set.tmp-%ld", dead);
    snprintf(dead_inner, sizeof dead_inner, "%s/inner", dead_dir);
    snprintf(live_dir, sizeof live_dir, "set.tmp-%ld", live);
    write_small(dead_file);
    write_small(live_file);
    mkdir(dead_dir, 0777);
    mkdir(dead_inner, 0777);
    write_small("set.tmp-1x");        /* not a process id */
    write_small("notes.tmp.backup");  /* not one of our names */
    mkdir(live_dir, 0777);
    char inner_file[128];
    snprintf(inner_file, sizeof inner_file, "%s/f", dead_inner);
    write_small(inner_file);
    /* an older build's name (no process id): removed only when it is a day old and is a
     * temporary file of the very output being written */
    write_small("out.bin.tmp.Qw12Er");
    write_small("out.bin.tmp.Zx34Cv");
    struct timeval old[2] = {{time(NULL) - 3 * 86400, 0}, {time(NULL) - 3 * 86400, 0}};
    assert_int_equal(utimes("out.bin.tmp.Qw12Er", old), 0);

    io_atomic w;
    xd_err e;
    TU_OK(io_atomic_open(&w, "out.bin", &e));
    TU_OK(io_atomic_write(&w, "z", 1, &e));
    TU_OK(io_atomic_commit(&w, &e));
    assert_false(exists(dead_file));
    assert_false(exists(dead_dir));
    assert_false(exists("out.bin.tmp.Qw12Er"));
    assert_true(exists(live_file));
    assert_true(exists(live_dir));
    assert_true(exists("set.tmp-1x"));
    assert_true(exists("notes.tmp.backup"));
    assert_true(exists("out.bin.tmp.Zx34Cv"));
    assert_true(exists("out.bin"));
}

/* io_atomic_blocks: the bytes reach the file only in whole blocks, at multiples of the block
 * size, whatever the sizes of the writes (one within a block, one across several, one after a
 * seek back); the file is the bytes written. The block size, 3000, is not the stream's usual
 * 4096, so a writer that ignored it would show other sizes. */
static void test_atomic_blocks(void **state)
{
    (void)state;
    enum { BLOCK = 3000, TOTAL = 10007 };
    unsigned char *want = malloc(TOTAL);
    assert_non_null(want);
    for (int i = 0; i < TOTAL; i++) want[i] = (unsigned char)(i * 7 + i / 251);
    io_atomic w;
    xd_err e;
    TU_OK(io_atomic_open(&w, "blocks.bin", &e));
    io_atomic_blocks(&w, BLOCK);
    const int cuts[] = {0, 100, 2999, 3000, 9001, 9500, TOTAL};
    const long on_disk[] = {0, 0, 0, 9000, 9000, 9000};
    for (int k = 0; k + 1 < (int)(sizeof cuts / sizeof *cuts); k++) {
        TU_OK(io_atomic_write(&w, want + cuts[k], (size_t)(cuts[k + 1] - cuts[k]), &e));
        struct stat st;
        assert_int_equal(fstat(fileno(w.f), &st), 0);
        assert_int_equal((long)st.st_size, on_disk[k]);
    }
    /* a header filled in at the end, as the data set writer does */
    assert_int_equal(fseeko(w.f, 0, SEEK_SET), 0);
    for (int i = 0; i < 16; i++) want[i] = (unsigned char)(0xA0 + i);
    TU_OK(io_atomic_write(&w, want, 16, &e));
    TU_OK(io_atomic_commit(&w, &e));
    void *got;
    size_t n;
    TU_OK(io_read_all("blocks.bin", 1 << 20, &got, &n, &e));
    assert_int_equal(n, TOTAL);
    assert_memory_equal(got, want, TOTAL);
    free(got);

    /* an aborted writer with blocks leaves nothing and frees its buffer */
    TU_OK(io_atomic_open(&w, "blocks2.bin", &e));
    io_atomic_blocks(&w, BLOCK);
    TU_OK(io_atomic_write(&w, want, 5000, &e));
    io_atomic_abort(&w);
    assert_false(exists("blocks2.bin"));
    assert_int_equal(count_named("blocks2.bin.tmp"), 0);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_removes_temporaries),
        cmocka_unit_test(test_sigint_removes_temporaries),
        cmocka_unit_test(test_stale_temporaries_removed),
        cmocka_unit_test(test_atomic_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
