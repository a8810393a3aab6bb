/* io/file and the commands that write files: an input that is no regular file (a FIFO, which
 * opening would wait on, a folder) is refused at once; an output that names a folder, a device or
 * a pipe is refused before anything is written; an output that names one of the command's own
 * inputs (the same path, another path to it, a hard link) is refused and the input left as it
 * was: export, quantize, prune, eval --predictions, report --out, predict's masks, prepare
 * manifest and rationales (over the manifest, an image, the classes file or the --split-from
 * set), and train into the folder of its own teacher or init checkpoint. A command
 * whose answer cannot be written to standard output (a full disk) fails. Calibration and training
 * images that are not the model's input size are refused, as eval refuses them, unless the
 * recipe's data.augment converts them. */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "distill/checkpoint.h"
#include "io/file.h"
#include "io/png.h"
#include "nn/model.h"
#include "tests/support/runcli.h"
#include "tests/support/tinyset.h"

/* Opening a FIFO for reading waits for a writer: a test that hangs is ended by the alarm. */
enum { NO_HANG_SECONDS = 20 };

static void test_fifo_input_refused(void **state)
{
    (void)state;
    assert_int_equal(mkfifo("pipe", 0600), 0);
    alarm(NO_HANG_SECONDS);
    xd_err e;
    int fd;
    assert_int_equal(io_open_regular("pipe", &fd, NULL, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "pipe: not a regular file");
    assert_int_equal(fd, -1);
    void *data;
    size_t n;
    assert_int_equal(io_read_all("pipe", 1024, &data, &n, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "pipe: not a regular file");
    io_map m;
    assert_int_equal(io_map_open("pipe", &m, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "pipe: not a regular file");
    assert_int_equal(mkdir("folder", 0755), 0);
    assert_int_equal(io_map_open("folder", &m, &e), XD_EIO);
    tu_assert_err(&e, XD_EIO, "folder: not a regular file");
    /* the commands read through these: one line, exit 1, no wait */
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "inspect", "pipe", NULL), 1);
    assert_non_null(strstr(err, "pipe: not a regular file"));
    free(err);
    assert_int_equal(tu_run_cli(NULL, &err, "export", "pipe", "--onnx", "o.onnx", NULL), 1);
    assert_non_null(strstr(err, "pipe: not a regular file"));
    free(err);
    alarm(0);
    assert_false(tu_exists("o.onnx"));
    /* a regular file opens, blocking as usual */
    tu_write_text("plain.txt", "abc");
    struct stat st;
    TU_OK(io_open_regular("plain.txt", &fd, &st, &e));
    assert_int_equal(st.st_size, 3);
    char buf[4] = {0};
    assert_int_equal(read(fd, buf, 3), 3);
    assert_string_equal(buf, "abc");
    close(fd);
}

static void expect_atomic_refused(const char *path, const char *what)
{
    io_atomic w;
    xd_err e;
    assert_int_equal(io_atomic_open(&w, path, &e), XD_EARG);
    char *want = tu_fmt("%s: exists and is not a regular file (a %s)", path, what);
    tu_assert_err(&e, XD_EARG, want);
    free(want);
}

static void test_special_output_refused(void **state)
{
    (void)state;
    assert_int_equal(mkdir("out.d", 0755), 0);
    expect_atomic_refused("out.d", "folder");
    assert_int_equal(mkfifo("out.pipe", 0600), 0);
    expect_atomic_refused("out.pipe", "pipe");
    expect_atomic_refused("/dev/null", "device or other special file");
    struct stat st;
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode)); /* still the device */
    tu_assert_nothing_left(".", "out.d.tmp");
    tu_assert_nothing_left(".", "out.pipe.tmp");
    /* a regular file, or a new name, is written as before */
    tu_write_text("old.txt", "old");
    const char *paths[] = {"old.txt", "new.txt"};
    for (int i = 0; i < 2; i++) {
        io_atomic w;
        xd_err e;
        TU_OK(io_atomic_open(&w, paths[i], &e));
        TU_OK(io_atomic_write(&w, "new", 3, &e));
        TU_OK(io_atomic_commit(&w, &e));
        size_t n;
        char *got = tu_read_file(paths[i], &n);
        assert_int_equal(n, 3);
        assert_memory_equal(got, "new", 3);
        free(got);
    }
}

static void test_check_output(void **state)
{
    (void)state;
    tu_write_text("in.bin", "x");
    tu_write_text("other.bin", "y");
    assert_int_equal(link("in.bin", "hard.bin"), 0);
    assert_int_equal(mkdir("sub", 0755), 0);
    const char *in[] = {NULL, "other.bin", "in.bin"};
    xd_err e;
    TU_OK(io_check_output("new.bin", in, 3, &e));  /* not there yet */
    TU_OK(io_check_output("sub/in.bin", in, 3, &e)); /* another file of that name */
    TU_OK(io_check_output(NULL, in, 3, &e));
    const char *same[] = {"in.bin", "./in.bin", "sub/../in.bin", "hard.bin"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(io_check_output(same[i], in, 3, &e), XD_EARG);
        char *want = tu_fmt("%s: is also an input of this command (in.bin)", same[i]);
        tu_assert_err(&e, XD_EARG, want);
        free(want);
    }
}

#define RECIPE                                                                                   \
    "name: o\ndata: {path: toy.xds}\n"                                                           \
    "model: \"input h=8 w=8 c=1; conv2d name=conv1 out=4 k=3 pad=1; relu; maxpool k=2; "        \
    "flatten; linear out=4 name=logits head\"\n"                                                 \
    "train: {epochs: 1, batch: 16, threads: 1, optimizer: {kind: adamw, lr: 0.01}}\n"            \
    "losses:\n  - kind: ce\n"

/* `xdistill ARGS...` fails with exit 1 and a message holding want, and the file at keep still
 * holds the bytes it held before. */
#define EXPECT_REFUSED(keep, want, ...)                                                          \
    do {                                                                                         \
        size_t n0, n1;                                                                           \
        char *before = tu_read_file(keep, &n0), *err;                                            \
        assert_int_equal(tu_run_cli(NULL, &err, __VA_ARGS__, NULL), 1);                          \
        if (!strstr(err, want)) fail_msg("'%s' does not say '%s'", err, want);                   \
        free(err);                                                                               \
        char *after = tu_read_file(keep, &n1);                                                   \
        assert_int_equal(n0, n1);                                                                \
        assert_memory_equal(before, after, n0);                                                  \
        free(before);                                                                            \
        free(after);                                                                             \
    } while (0)

static void test_commands_keep_their_inputs(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    sp.texts = 0;
    tiny_write("toy.xds", &sp);
    tu_write_text("o.yaml", RECIPE);
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "o.yaml", "--quiet", "--out", "run", NULL),
                     0);
    const char *ck = "run/best.safetensors";
    const char *same = "is also an input of this command";
    EXPECT_REFUSED(ck, same, "export", ck, "--onnx", ck);
    EXPECT_REFUSED(ck, same, "quantize", ck, "--calib", "toy.xds", "--out",
                   "run/./best.safetensors");
    EXPECT_REFUSED("toy.xds", same, "quantize", ck, "--calib", "toy.xds", "--out", "toy.xds");
    EXPECT_REFUSED(ck, same, "prune", ck, "--channels", "0.5", "--out", ck);
    EXPECT_REFUSED(ck, same, "eval", "--model", ck, "--data", "toy.xds", "--predictions", ck);
    EXPECT_REFUSED("toy.xds", same, "eval", "--model", ck, "--data", "toy.xds", "--predictions",
                   "toy.xds");
    EXPECT_REFUSED(ck, "exists and is no report page", "report", "run", "--out", ck);
    /* a run trained into the folder of its own teacher or init checkpoint */
    tu_write_text("kd.yaml", RECIPE "  - kind: kd\n    teacher: t\n"
                                    "teachers:\n  - {name: t, checkpoint: run/best.safetensors}\n");
    EXPECT_REFUSED(ck, "run/best.safetensors: is also an input of this command", "train",
                   "kd.yaml", "--quiet", "--out", "run");
    EXPECT_REFUSED(ck, same, "train", "kd.yaml", "--quiet", "--out", "run/.");
    tu_write_text("init.yaml", RECIPE "init: run/best.safetensors\n");
    EXPECT_REFUSED(ck, same, "train", "init.yaml", "--quiet", "--out", "run");
    /* the same commands write a new path, and report writes over its own page again */
    assert_int_equal(tu_run_cli(NULL, NULL, "export", ck, "--onnx", "o.onnx", NULL), 0);
    assert_int_equal(
        tu_run_cli(NULL, NULL, "prune", ck, "--channels", "0.5", "--out", "p.st", NULL), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tu_run_cli(NULL, NULL, "report", "run", "--no-eval", "--out", "r.html",
                                    NULL),
                         0);
    assert_true(tu_exists("o.onnx") && tu_exists("p.st") && tu_exists("r.html"));
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "kd.yaml", "--quiet", "--out", "kd", NULL),
                     0);
}

/* prepare manifest and rationales: --out over the manifest, one of its images (by another path
 * too), the classes file, or the set --split-from reads is refused, even with --force. */
static void test_prepare_keeps_its_inputs(void **state)
{
    (void)state;
    mkdir("pm", 0777);
    io_image img = {.w = 2, .h = 2, .c = 3, .px = (uint8_t[12]){0}};
    xd_err e;
    TU_OK(io_png_write("pm/i.png", &img, &e));
    TU_OK(io_png_write("pm/j.png", &img, &e));
    tu_write_text("pm/m.tsv", "image_path\ttext\tlabel\n"
                              "j.png\tx\ta\nj.png\tx\ta\ni.png\tx\tb\nj.png\tx\tb\n");
    tu_write_text("pm/cls.txt", "a\nb\n");
    tu_write_text("pm/r.jsonl", "{\"input\": \"x\", \"label\": \"a\", \"rationale\": \"y\"}\n"
                                "{\"input\": \"x\", \"label\": \"b\", \"rationale\": \"y\"}\n");
    assert_int_equal(tu_run_cli(NULL, NULL, "prepare", "manifest", "pm/m.tsv", "--out", "pm/o.xds",
                                "--size", "2", "--test-fraction", "0.5", NULL),
                     0);
    mkdir("pm/d", 0777);
    assert_int_equal(link("pm/m.tsv", "pm/d/dataset.xds"), 0);
    const char *same = "is also an input of this command";
    const char *size[] = {"--size", "2", "--test-fraction", "0.5", "--force"};
#define PREP(...) "prepare", "manifest", "pm/m.tsv", size[0], size[1], size[2], size[3], size[4], \
                  __VA_ARGS__
    EXPECT_REFUSED("pm/m.tsv", same, PREP("--out", "pm/m.tsv"));
    EXPECT_REFUSED("pm/m.tsv", same, PREP("--out", "pm/./m.tsv"));
    EXPECT_REFUSED("pm/m.tsv", same, PREP("--out", "pm/d/"));
    EXPECT_REFUSED("pm/i.png", same, PREP("--out", "pm/i.png"));
    EXPECT_REFUSED("pm/i.png", "pm/m.tsv:4: column image_path", PREP("--out", "pm/../pm/i.png"));
    EXPECT_REFUSED("pm/cls.txt", same, PREP("--classes", "pm/cls.txt", "--out", "pm/cls.txt"));
    EXPECT_REFUSED("pm/o.xds", same, PREP("--split-from", "pm/o.xds", "--out", "pm/o.xds"));
#undef PREP
    EXPECT_REFUSED("pm/r.jsonl", same, "prepare", "rationales", "pm/r.jsonl", "--out",
                   "pm/r.jsonl", "--test-fraction", "0", "--force");
    /* another output is written */
    assert_int_equal(tu_run_cli(NULL, NULL, "prepare", "manifest", "pm/m.tsv", "--out", "pm/p.xds",
                                "--size", "2", "--classes", "pm/cls.txt", "--split-from",
                                "pm/o.xds", NULL),
                     0);
}

/* A segmentation model's mask goes to --out DIR under its image's name: not over the image. */
static void test_mask_keeps_its_image(void **state)
{
    (void)state;
    xd_err e;
    tu_save_model("seg.safetensors",
                  "input h=8 w=8 c=1; conv2d out=4 k=3 pad=1; relu; conv2d name=logits out=3 k=1 head",
                  2, 5);
    assert_int_equal(mkdir("in", 0755), 0);
    uint8_t px[64];
    for (int i = 0; i < 64; i++) px[i] = (uint8_t)(i * 4);
    const io_image img = {.w = 8, .h = 8, .c = 1, .px = px};
    TU_OK(io_png_write("in/a.png", &img, &e));
    size_t n0, n1;
    char *before = tu_read_file("in/a.png", &n0), *err;
    assert_int_not_equal(
        tu_run_cli(NULL, &err, "predict", "seg.safetensors", "in/a.png", "--out", "in", NULL), 0);
    if (!strstr(err, "in/a.png: is also an input of this command")) fail_msg("stderr '%s'", err);
    free(err);
    char *after = tu_read_file("in/a.png", &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
    /* another folder takes the mask */
    assert_int_equal(
        tu_run_cli(NULL, NULL, "predict", "seg.safetensors", "in/a.png", "--out", "masks", NULL),
        0);
    assert_true(tu_exists("masks/a.png"));
}

static void test_images_fit(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    sp.texts = 0;
    tiny_write("toy.xds", &sp);
    const char *descs[] = {"input h=4 w=4 c=1; flatten; linear out=4 name=logits head",
                           "input h=8 w=8 c=1; flatten; linear out=4 name=logits head"};
    const char *paths[] = {"m4.safetensors", "m8.safetensors"};
    for (int i = 0; i < 2; i++) tu_save_model(paths[i], descs[i], 2, 5);
    char *err;
    assert_int_equal(tu_run_cli(NULL, &err, "quantize", paths[0], "--calib", "toy.xds", "--out",
                                "q4.safetensors", NULL),
                     1);
    const char *want = "m4.safetensors: the model reads 4x4x1 images; toy.xds: train/image holds "
                       "8x8x1";
    if (!strstr(err, want)) fail_msg("'%s' does not say '%s'", err, want);
    free(err);
    assert_false(tu_exists("q4.safetensors"));
    assert_int_equal(tu_run_cli(NULL, NULL, "quantize", paths[1], "--calib", "toy.xds", "--out",
                                "q8.safetensors", NULL),
                     0);
    assert_true(tu_exists("q8.safetensors"));
    /* a student of 4x4 images on the 8x8 set: refused, nothing left; with size=4x4, trained */
    const char *recipe = "name: s\ndata: {path: toy.xds%s}\n"
                         "model: \"input h=4 w=4 c=1; flatten; linear out=4 name=logits head\"\n"
                         "train: {epochs: 1, batch: 16, threads: 1}\nlosses:\n  - kind: ce\n";
    char *text = tu_fmt(recipe, "");
    tu_write_text("s.yaml", text);
    free(text);
    assert_int_equal(
        tu_run_cli(NULL, &err, "train", "s.yaml", "--quiet", "--out", "s-run", NULL), 1);
    want = "s.yaml: the model reads 4x4x1 images; toy.xds: train/image holds 8x8x1";
    if (!strstr(err, want)) fail_msg("'%s' does not say '%s'", err, want);
    free(err);
    assert_false(tu_exists("s-run"));
    text = tu_fmt(recipe, ", augment: \"size=4x4\"");
    tu_write_text("s.yaml", text);
    free(text);
    assert_int_equal(tu_run_cli(NULL, NULL, "train", "s.yaml", "--quiet", "--out", "s-run", NULL),
                     0);
}

static void test_stdout_full(void **state)
{
    (void)state;
    tiny_spec sp = tiny_default();
    sp.texts = 0;
    tiny_write("toy.xds", &sp);
    /* the same command succeeds where its output can go */
    char *cmd = tu_fmt("'%s' inspect toy.xds > out.txt 2> err.txt", tu_cli_bin());
    int rc = system(cmd);
    free(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    cmd = tu_fmt("'%s' inspect toy.xds > /dev/full 2> err.txt", tu_cli_bin());
    rc = system(cmd);
    free(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    size_t n;
    char *err = tu_read_file("err.txt", &n);
    if (!strstr(err, "xdistill inspect: cannot write to standard output"))
        fail_msg("stderr '%s'", err);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_input_refused),
        cmocka_unit_test(test_special_output_refused),
        cmocka_unit_test(test_check_output),
        cmocka_unit_test(test_commands_keep_their_inputs),
        cmocka_unit_test(test_prepare_keeps_its_inputs),
        cmocka_unit_test(test_mask_keeps_its_image),
        cmocka_unit_test(test_images_fit),
        cmocka_unit_test(test_stdout_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
