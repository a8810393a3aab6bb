/* Shared by the trainer's tests (test_trainer, test_resume, test_students, test_validation): the
 * tiny models, the toy data set (tests/support/tinyset.h) and its teacher, and helpers that run a
 * recipe text and read what the run wrote. */
#ifndef XD_TESTS_SUPPORT_TRAINRUN_H
#define XD_TESTS_SUPPORT_TRAINRUN_H

#include <jansson.h>
#include <stddef.h>

#include "core/status.h"
#include "distill/feed.h"
#include "distill/recipe.h"
#include "distill/trainer.h"
#include "io/dataset.h"
#include "nn/model.h"

#define TEACHER_MODEL                                                                            \
    "input h=8 w=8 c=1; conv2d name=conv1 out=8 k=3 pad=1; relu name=r1; maxpool k=2 name=pool1; " \
    "flatten; linear out=32 name=fc1; relu name=feat; linear out=4 name=logits head"
#define MLP_MODEL                                                                                \
    "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu name=feat; linear out=4 "          \
    "name=logits head"
#define CNN_MODEL                                                                                \
    "input h=8 w=8 c=1; conv2d name=conv1 out=4 k=3 pad=1; relu name=r1; maxpool k=2 "           \
    "name=pool1; flatten; linear out=4 name=logits head"
#define TEXT_MODEL                                                                               \
    "input tokens=64; embbag vocab=512 out=16 mode=mean name=emb; linear out=4 name=logits head"

#define TEACHER_CKPT "teacher/best.safetensors"
enum { N_TRAIN = 200, N_TEST = 100, BATCH = 16, STEPS = (N_TRAIN + BATCH - 1) / BATCH };

#define TEACHERS "teachers:\n  - {name: cnn, checkpoint: " TEACHER_CKPT "}\n"

/* A split of a data set opened for a model, with its labels and a batch buffer. */
typedef struct {
    io_dataset *ds;
    feed f;
    const int32_t *y;
    void *input;
} split_feed;

/* The teacher recipe (the CNN on toy.xds) and its run, made once per test program. */
extern const char *const teacher_recipe;
extern train_result teacher_res;

int exists(const char *path);

/* Writes text to NAME.yaml and loads it. */
void load_recipe(const char *name, const char *text, recipe *r);

/* One trainer run of a recipe text; returns the status, e holds the message. */
xd_status run_text(const char *name, const char *text, const char *out, long seed,
                   int stop_after, int resume, train_result *res, xd_err *e);

train_result run_ok(const char *name, const char *text, const char *out, long seed,
                    int stop_after, int resume);

/* "DIR/NAME", a new string. */
char *path2(const char *dir, const char *name);

/* DIR/metrics.jsonl as a JSON array of its lines (each must parse as an object). */
json_t *read_metrics(const char *dir);

double num(const json_t *obj, const char *key);

/* The metrics of two runs agree line by line on everything but the timing fields. */
void assert_same_metrics(const char *dir_a, const char *dir_b);

void load_ckpt(const char *path, nn_model *m);

void open_split(split_feed *sf, const char *data, const char *split, const char *view,
                const nn_model *m, const char *augment, const char *text);

void close_split(split_feed *sf);

double accuracy(nn_model *m, const char *data, const char *view, const char *augment,
                const char *text);

/* Copies the data set src to dst, every section and metadata entry, with n_extra more sections. */
void copy_data_with(const char *src, const char *dst, const io_tensor *extra, int n_extra);

/* The data set and the teacher, made once and shared by the tests that need them. */
void ensure_data(void);

void ensure_teacher(void);

/* A student recipe: header lines (data, model, teachers) + train + losses. */
char *student_recipe(const char *data_extra, const char *model, const char *teachers,
                     int epochs, const char *optimizer, const char *losses);

/* Runs text straight into DIR-full, and into DIR-N stopping after each N of stops (then resuming
 * to the end); every interrupted run must end byte for byte like the straight one. */
void check_resume(const char *name, const char *text, int epochs, const int *stops,
                  int n_stops);

/* A small run of 3 epochs for the tests of finished, stopped and locked runs. */
char *small_recipe(int epochs, int threads);

json_t *load_json(const char *path);

/* Every checkpoint a failed run left behind must still load (ckpt_load refuses non-finite). */
void assert_checkpoints_load(const char *dir);

/* A recipe whose run into err-NAME must fail, the message naming want (and want2 when given),
 * before its first epoch ends: the folder it made must be gone again. */
void expect_error(const char *name, const char *text, const char *want, const char *want2);

/* A text teacher on toy.xds reading `view`, trained into dir; it must learn the task. */
void train_text_teacher(const char *dir, const char *view);

/* The effective recipe r (recipe_to_yaml), a new string; it must read back as the same recipe. */
char *stable_yaml(const recipe *r);
/* A recipe that must not load; the message names the key. */
void expect_recipe_error(const char *name, const char *text, const char *want);

#endif
