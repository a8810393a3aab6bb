/* Data-parallel training under mpirun (core/dist.h): 2 ranks on this machine, each with one
 * thread. The same seed gives the same bytes run to run, the same step as one process (the loss
 * is the mean over the global batch), evaluation summed over the ranks, a teacher-output cache
 * built by both ranks, --resume with the same rank count (and a clear refusal with another),
 * and a rank killed mid-run: the job fails naming it, nothing half-written, --resume continues.
 * Skipped in a build without MPI (make MPI=0) or without mpirun. */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/bits.h"
#include "core/dist.h"
#include "core/mem.h"
#include "distill/checkpoint.h"
#include "distill/labels.h"
#include "distill/train_run.h"
#include "nn/model.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"
#include "tests/support/trainrun.h"

/* mpirun on the PATH and this build able to join a job; else the test is skipped. */
static void need_mpi(void)
{
    if (!dist_built() || system("command -v mpirun >/dev/null 2>&1") != 0) skip();
    /* as root (containers, CI) Open MPI asks for an explicit yes; a sanitizer build must not
     * count the MPI runtime's own allocations as our leaks */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
}

/* Starts `mpirun -np N xdistill ARGS...` (NULL-terminated), its output in mpi.out / mpi.err. */
static pid_t start_mpi(int np, char *const *args)
{
    char n[16];
    snprintf(n, sizeof n, "%d", np);
    /* shared memory between the ranks without cross-process reads, which containers forbid */
    char *argv[48] = {"mpirun", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism",
                      "none", "-np", n, (char *)tu_cli_bin()};
    int argc = 8;
    for (int i = 0; args[i] && argc < 47; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "mpi.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, "mpi.err", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    extern char **environ;
    pid_t pid;
    if (posix_spawnp(&pid, "mpirun", &fa, NULL, argv, environ) != 0) fail_msg("cannot run mpirun");
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* Waits for it; returns its exit status and its output (stdout then stderr, caller frees). */
static int wait_mpi(pid_t pid, char **text)
{
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    size_t n1, n2;
    char *o = tu_read_file("mpi.out", &n1), *e = tu_read_file("mpi.err", &n2);
    *text = xd_xmalloc(n1 + n2 + 1);
    memcpy(*text, o, n1);
    memcpy(*text + n1, e, n2);
    (*text)[n1 + n2] = '\0';
    free(o);
    free(e);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* `mpirun -np N xdistill ARGS...`, waited for; fails the test unless it exits with `want`. */
static char *run_mpi(int np, int want, char *const *args)
{
    char *text;
    int rc = wait_mpi(start_mpi(np, args), &text);
    if (rc != want) fail_msg("mpirun -np %d exited with %d, expected %d:\n%s", np, rc, want, text);
    return text;
}

/* A student (an MLP: no batch statistics) taught by the cached teacher with Hinton KD, by plain
 * SGD, whose step is proportional to the gradient: a gradient summed instead of averaged over the
 * ranks would show at once. The last batch of each epoch (200 = 12 * 16 + 8) is short. */
static void write_student(int epochs)
{
    ensure_teacher();
    char *text = student_recipe("", MLP_MODEL, TEACHERS, epochs,
                                "{kind: sgd, lr: 0.05}\n  threads: 1",
                                "  - {kind: hinton, alpha: 0.5, temperature: 2}\n");
    tu_write_file("s.yaml", text, strlen(text));
    free(text);
}

/* Every parameter of two checkpoints within tol. */
static void assert_ckpt_close(const char *a, const char *b, double tol)
{
    nn_model ma, mb;
    load_ckpt(a, &ma);
    load_ckpt(b, &mb);
    assert_int_equal(ma.n_param, mb.n_param);
    double worst = 0.0;
    for (size_t i = 0; i < ma.n_param; i++) worst = fmax(worst, fabs(ma.param[i] - mb.param[i]));
    print_message("largest parameter difference between 1 process and 2 ranks: %g\n", worst);
    if (!(worst <= tol)) fail_msg("%s and %s differ by %g (> %g)", a, b, worst, tol);
    nn_model_free(&ma);
    nn_model_free(&mb);
}

/* Every file of folder a is in folder b with the same bytes (and there is one at least). */
static void assert_same_folders(const char *a, const char *b)
{
    DIR *d = opendir(a);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char *pa = path2(a, de->d_name), *pb = path2(b, de->d_name);
        if (!tu_same_file(pa, pb)) fail_msg("%s and %s differ", pa, pb);
        free(pa);
        free(pb);
        files++;
    }
    closedir(d);
    assert_true(files > 0);
}

static void test_two_ranks_deterministic_and_like_one(void **state)
{
    (void)state;
    need_mpi();
    write_student(3);
    char *a[] = {"train", "s.yaml", "--out", "np2-a", "--quiet", NULL};
    char *b[] = {"train", "s.yaml", "--out", "np2-b", "--quiet", NULL};
    free(run_mpi(2, 0, a));
    /* the teacher-output cache was built by both ranks, then read back */
    assert_true(exists("cache"));
    free(run_mpi(2, 0, b));
    assert_true(tu_same_file("np2-a/last.safetensors", "np2-b/last.safetensors"));
    assert_true(tu_same_file("np2-a/best.safetensors", "np2-b/best.safetensors"));
    /* one process, building the cache again: the same cache bytes, the same steps up to the
     * order of the sums */
    assert_int_equal(rename("cache", "cache-np2"), 0);
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "s.yaml", "--out", "np1", "--quiet", NULL), 0);
    assert_same_folders("cache-np2", "cache");
    assert_ckpt_close("np2-a/last.safetensors", "np1/last.safetensors", 1e-5);
    /* the evaluation summed over the ranks is the whole test split's */
    json_t *j = load_json("np2-a/summary.json");
    nn_model m;
    load_ckpt("np2-a/last.safetensors", &m);
    assert_float_equal(num(j, "final_test_acc"), accuracy(&m, "toy.xds", "image", NULL, NULL), 1e-12);
    nn_model_free(&m);
    json_decref(j);
}

/* A run on two ranks whose validation score one process checks: the run's first val_acc, and
 * its last checkpoint with data's split opened for it. */
typedef struct {
    double val_acc;
    nn_model model;
    split_feed sf;
} val_run;

static void val_run_start(val_run *v, const char *text, const char *out, const char *data,
                          const char *split)
{
    tu_write_file("val.yaml", text, strlen(text));
    char *a[] = {"train", "val.yaml", "--out", (char *)out, "--quiet", NULL};
    free(run_mpi(2, 0, a));
    json_t *m = read_metrics(out);
    assert_int_equal(json_array_size(m), 1); /* one epoch: its score is the last checkpoint's */
    v->val_acc = num(json_array_get(m, 0), "val_acc");
    json_decref(m);
    char *ckpt = path2(out, "last.safetensors");
    load_ckpt(ckpt, &v->model);
    free(ckpt);
    open_split(&v->sf, data, split, "image", &v->model, NULL, NULL);
}

/* The run's val_acc must be this process's score of its examples x. */
static void val_run_check(val_run *v, const ex_set *x)
{
    double acc = -1.0;
    xd_err e;
    TU_OK(train_score(&v->model, nn_model_default_head(&v->model), &v->sf.f, x, v->sf.y,
                      v->sf.input, &acc, NULL, &e));
    print_message("validation accuracy over %zu examples: %g (2 ranks), %g (1)\n", x->members,
                  v->val_acc, acc);
    assert_true(acc > 0.0 && acc < 1.0); /* a score a wrong slice would move */
    assert_float_equal(v->val_acc, acc, 1e-12);
    close_split(&v->sf);
    nn_model_free(&v->model);
}

/* Validation held out of the training split (a set of bits) scored by two ranks, each from the
 * first member of its slice, under a keyed epoch order: the summed score is the one process's
 * score of the same checkpoint on the same held-out examples, to the last digit. */
static void test_two_ranks_score_held_out_validation(void **state)
{
    (void)state;
    need_mpi();
    ensure_teacher();
    char *text = student_recipe("  val_fraction: 0.3\n", MLP_MODEL, TEACHERS, 1,
                                "{kind: sgd, lr: 0.05}\n  threads: 1\n  shuffle: keyed",
                                "  - {kind: hinton, alpha: 0.5, temperature: 2}\n");
    val_run v;
    val_run_start(&v, text, "np2-val", "toy.xds", "train");
    free(text);
    /* the held-out examples as the trainer chose them: every label, then 30% of each class */
    const size_t n = v.sf.f.n;
    uint64_t *sel = xd_bits_new(n), *held = xd_bits_new(n);
    size_t kept, n_held;
    xd_err e;
    TU_OK(labels_select(v.sf.y, NULL, n, TINY_CLASSES, 1.0, 0, 1, sel, &kept, &e));
    TU_OK(labels_hold_out(v.sf.y, sel, n, TINY_CLASSES, 0.3, 1, held, &n_held, &e));
    const ex_set x = {.n = n, .bits = held, .members = n_held};
    val_run_check(&v, &x);
    free(sel);
    free(held);
}

/* data.val names a split whose label_mask leaves every third example out (a copy of the test
 * split): two ranks score the kept examples as one process does. The second rank's slice begins
 * at kept example 34, whose place (50) the mask leaves out: it skips to the next kept one. */
static void test_two_ranks_score_masked_val_split(void **state)
{
    (void)state;
    need_mpi();
    ensure_data();
    uint8_t mask[N_TEST];
    size_t kept = 0;
    for (int k = 0; k < N_TEST; k++) kept += mask[k] = k % 3 != 2;
    io_dataset *ds;
    xd_err e;
    TU_OK(io_dataset_open("toy.xds", &ds, &e));
    const io_tensor *img = io_dataset_find(ds, "test/image");
    const io_tensor *lab = io_dataset_find(ds, "test/label");
    io_tensor t[3];
    io_tensor_set(&t[0], "val/image", img->dtype, img->ndim, img->shape, img->data);
    io_tensor_set(&t[1], "val/label", lab->dtype, lab->ndim, lab->shape, lab->data);
    io_tensor_set(&t[2], "val/label_mask", IO_U8, 1, (const int64_t[]){N_TEST}, mask);
    copy_data_with("toy.xds", "toy-valmask.xds", t, 3);
    io_dataset_close(ds);
    char *text = tu_fmt("data: {path: toy-valmask.xds, val: val}\nmodel: \"%s\"\ntrain:\n"
                        "  epochs: 1\n  batch: 16\n  optimizer: {kind: sgd, lr: 0.05}\n"
                        "  threads: 1\nlosses:\n  - {kind: ce}\n", MLP_MODEL);
    val_run v;
    val_run_start(&v, text, "np2-valmask", "toy-valmask.xds", "val");
    free(text);
    const ex_set x = {.n = v.sf.f.n, .mask = mask, .members = kept};
    val_run_check(&v, &x);
}

/* Batches of 199 and 1 (200 examples): rank 1 has no row of every second step, and the step is
 * still the one process's. */
static void test_rank_without_rows(void **state)
{
    (void)state;
    need_mpi();
    ensure_teacher();
    char *text = tu_fmt("data: {path: toy.xds}\nmodel: \"%s\"\n%strain:\n  epochs: 2\n  batch: 199\n"
                        "  optimizer: {kind: sgd, lr: 0.05}\n  threads: 1\nlosses:\n"
                        "  - {kind: hinton, alpha: 0.5, temperature: 2}\n", MLP_MODEL, TEACHERS);
    tu_write_file("odd.yaml", text, strlen(text));
    free(text);
    char *args[] = {"train", "odd.yaml", "--out", "odd-np2", "--quiet", NULL};
    free(run_mpi(2, 0, args));
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "odd.yaml", "--out", "odd-np1", "--quiet",
                                NULL), 0);
    assert_ckpt_close("odd-np2/last.safetensors", "odd-np1/last.safetensors", 1e-5);
}

static void test_two_ranks_resume(void **state)
{
    (void)state;
    need_mpi();
    write_student(3);
    char *full[] = {"train", "s.yaml", "--out", "full", "--quiet", NULL};
    char *stop[] = {"train", "s.yaml", "--out", "part", "--quiet", "--stop-after", "1", NULL};
    char *resume[] = {"train", "--resume", "part", "--quiet", NULL};
    free(run_mpi(2, 0, full));
    free(run_mpi(2, 0, stop));
    /* another rank count would continue another run */
    char *err = NULL;
    assert_int_equal(tu_run_cli(NULL, &err, "train", "--resume", "part", NULL), 1);
    assert_non_null(strstr(err, "trained on 2 ranks, not 1"));
    free(err);
    free(run_mpi(2, 0, resume));
    assert_true(tu_same_file("full/last.safetensors", "part/last.safetensors"));
}

/* The process of rank `rank` among mpirun's children, or -1. */
static pid_t rank_pid(pid_t mpirun, int rank)
{
    char want[48];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    DIR *d = opendir("/proc");
    pid_t found = -1;
    for (struct dirent *de; d && found < 0 && (de = readdir(d));) {
        const pid_t pid = (pid_t)atol(de->d_name);
        if (pid <= 0) continue;
        char path[64], stat_line[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        int ppid = -1;
        if (fgets(stat_line, sizeof stat_line, f)) {
            const char *close = strrchr(stat_line, ')');
            if (close) sscanf(close + 2, "%*c %d", &ppid);
        }
        fclose(f);
        if (ppid != mpirun) continue;
        /* its environment: NUL-separated, of no size that stat would tell */
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        FILE *env = fopen(path, "r");
        if (!env) continue;
        char var[4096];
        size_t at = 0;
        for (int c; found < 0 && (c = fgetc(env)) != EOF;) {
            if (c != '\0' && at + 1 < sizeof var) {
                var[at++] = (char)c;
                continue;
            }
            var[at] = '\0';
            if (strcmp(var, want) == 0) found = pid;
            at = 0;
        }
        fclose(env);
    }
    if (d) closedir(d);
    return found;
}

/* No temporary file (NAME.tmp.PID.XXXXXX) left in dir. */
static void assert_no_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));)
        if (strstr(de->d_name, ".tmp")) fail_msg("%s/%s was left behind", dir, de->d_name);
    closedir(d);
}

static void test_rank_killed(void **state)
{
    (void)state;
    need_mpi();
    write_student(100000); /* far more than it runs before the kill */
    char *args[] = {"train", "s.yaml", "--out", "k", "--quiet", NULL};
    const pid_t job = start_mpi(2, args);
    /* once an epoch is complete, rank 1 dies */
    struct stat st;
    for (int i = 0; i < 6000 && stat("k/resume.safetensors", &st) != 0; i++) usleep(10000);
    assert_int_equal(stat("k/resume.safetensors", &st), 0);
    const pid_t victim = rank_pid(job, 1);
    if (victim <= 0) kill(job, SIGTERM);
    assert_true(victim > 0);
    assert_int_equal(kill(victim, SIGKILL), 0);
    char *text;
    const int rc = wait_mpi(job, &text);
    print_message("mpirun exited with %d:\n%s", rc, text);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(text, "rank 1"));
    free(text);
    assert_no_temporaries("k");
    assert_checkpoints_load("k");
    /* --resume continues from the last complete epoch: one more, then a stop */
    json_t *lines = read_metrics("k");
    const size_t done = json_array_size(lines);
    json_decref(lines);
    assert_true(done >= 1);
    char stop[24];
    snprintf(stop, sizeof stop, "%zu", done + 1);
    char *resume[] = {"train", "--resume", "k", "--quiet", "--stop-after", stop, NULL};
    free(run_mpi(2, 0, resume));
    lines = read_metrics("k");
    assert_int_equal(json_array_size(lines), done + 1);
    json_decref(lines);
}

/* A gradient that overflows on both ranks: the ranks sum it, reach the same verdict from the
 * same bytes, and the run stops with the message once (rank 0's, without a rank's prefix) and
 * nothing saved */
static void test_nonfinite_gradient(void **state)
{
    (void)state;
    need_mpi();
    ensure_data();
    /* inputs scaled by 1000 and a loss weight near the float limit: the loss (summed in double)
     * stays finite, the first layer's weight gradient overflows */
    char *text = student_recipe("  augment: \"std=0.001\"\n", MLP_MODEL, "", 1,
                                "{kind: sgd, lr: 0.001}\n  threads: 1",
                                "  - {kind: ce, weight: 3e38}\n");
    tu_write_file("nf.yaml", text, strlen(text));
    free(text);
    char *args[] = {"train", "nf.yaml", "--out", "nf", "--quiet", NULL};
    char *out;
    const int rc = wait_mpi(start_mpi(2, args), &out);
    print_message("mpirun exited with %d:\n%s", rc, out);
    assert_int_not_equal(rc, 0);
    const char *want = "epoch 1, step 1: the gradient of the student's 'fc1.weight' (layer 'fc1', "
                       "linear) is not finite";
    const char *at = strstr(out, want);
    assert_non_null(at);
    assert_null(strstr(at + 1, want));
    assert_null(strstr(out, "rank 1:"));
    struct stat st;
    assert_int_not_equal(stat("nf/last.safetensors", &st), 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_deterministic_and_like_one),
        cmocka_unit_test(test_two_ranks_score_held_out_validation),
        cmocka_unit_test(test_two_ranks_score_masked_val_split),
        cmocka_unit_test(test_rank_without_rows),
        cmocka_unit_test(test_two_ranks_resume),
        cmocka_unit_test(test_rank_killed),
        cmocka_unit_test(test_nonfinite_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
