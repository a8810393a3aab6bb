/* The teacher-output cache tests' fixtures: a tiny split of N examples of IN values, fed in
 * batches of MB to a teacher with HID hidden units and KC classes, and the cache spec over it. */
#ifndef XD_TESTS_CACHEFIX_H
#define XD_TESTS_CACHEFIX_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "distill/cache.h"
#include "nn/model.h"

enum { N = 10, IN = 4, HID = 6, KC = 5, MB = 4 };

/* A data set file at path with the split's labels, its identity from seed. */
void cf_write_dataset(const char *path, const char *seed);

/* The split's inputs, fed by cf_fill in order: calls counted, forbid fails the test if the
 * teacher runs, fail_with returns that error instead of filling. */
typedef struct {
    float x[N * IN]; /* the fake split, in memory */
    int calls;
    size_t next;         /* batches must come in order */
    int forbid;          /* fail the test if called */
    xd_status fail_with; /* return this instead of filling */
} cf_feeder;

/* The cache's feed: examples i0..i1 of the cf_feeder at ctx into input. */
xd_status cf_fill(void *ctx, size_t i0, size_t i1, void *input, xd_err *e);
/* A feeder of the split's inputs (uniform in [-2, 2]). */
void cf_make_feeder(cf_feeder *f);
/* The teacher, its weights from seed. */
void cf_build_teacher(nn_model *m, uint64_t seed);
/* The spec of the cache over d.xds's train split, tap feat, no top-k. */
kd_cache_spec cf_base_spec(void);
/* The common start of a test: the data set d.xds (its identity from tag), the teacher with seed
 * 3, its inputs and the base spec. */
void cf_fixture(const char *tag, nn_model *m, cf_feeder *f, kd_cache_spec *sp);
/* The teacher's outputs computed here, one example at a time: (N, KC) logits, (N, HID) feature
 * (NULL not to keep them). */
void cf_reference(nn_model *m, const cf_feeder *f, float *logits, float *feat);
/* kd_cache_load_or_build, failing the test on an error. */
void cf_open_ok(const kd_cache_spec *sp, nn_model *m, cf_feeder *f, kd_cache *c);
/* Fails the test unless sp's key for m differs from old (why: what changed). */
void cf_expect_new_key(const kd_cache_spec *sp, nn_model *m, const char *old, const char *why);

#endif
