/* The teacher-output cache tests' fixtures (see cachefix.h). */
#include "tests/support/cachefix.h"

#include <string.h>

#include "io/dataset.h"
#include "tests/support/testutil.h"

static const char *const DESC =
    "input h=1 w=1 c=4; linear out=6 name=hid; relu name=feat; linear out=5 name=logits head";

void cf_write_dataset(const char *path, const char *seed)
{
    io_dataset_writer *w;
    xd_err e;
    xd_err_clear(&e);
    if (io_dataset_writer_open(path, 4, &w, &e)) fail_msg("%s", e.msg);
    int32_t label[N] = {0};
    const int64_t shape[1] = {N};
    io_tensor t;
    io_tensor_set(&t, "train/label", IO_I32, 1, shape, label);
    TU_OK(io_dataset_add(w, &t, &e));
    TU_OK(io_dataset_set_meta(w, "name", "tiny", &e));
    TU_OK(io_dataset_set_meta(w, "seed", seed, &e));
    if (io_dataset_finish(w, &e)) fail_msg("%s", e.msg);
}

xd_status cf_fill(void *ctx, size_t i0, size_t i1, void *input, xd_err *e)
{
    cf_feeder *f = ctx;
    if (f->forbid) fail_msg("the teacher ran although the cache should have been used");
    assert_true(i0 == f->next && i1 > i0 && i1 - i0 <= MB && i1 <= N);
    f->next = i1 == N ? 0 : i1;
    f->calls++;
    if (f->fail_with) return xd_fail(e, f->fail_with, "feeder: example %zu cannot be decoded", i0);
    memcpy(input, f->x + i0 * IN, sizeof(float) * (i1 - i0) * IN);
    return XD_OK;
}

void cf_make_feeder(cf_feeder *f)
{
    memset(f, 0, sizeof *f);
    tu_fill_uniform(f->x, N * IN, -2.0f, 2.0f, 5);
}

void cf_build_teacher(nn_model *m, uint64_t seed)
{
    xd_err e;
    xd_err_clear(&e);
    if (nn_model_build(m, DESC, MB, seed, &e)) fail_msg("%s", e.msg);
}

kd_cache_spec cf_base_spec(void)
{
    return (kd_cache_spec){.dataset_path = "d.xds", .split = "train", .view = "image", .n = N,
                           .head = NULL, .topk = 0, .tap = "feat"};
}

void cf_fixture(const char *tag, nn_model *m, cf_feeder *f, kd_cache_spec *sp)
{
    cf_write_dataset("d.xds", tag);
    cf_build_teacher(m, 3);
    cf_make_feeder(f);
    *sp = cf_base_spec();
}

void cf_reference(nn_model *m, const cf_feeder *f, float *logits, float *feat)
{
    int head = nn_model_find(m, "logits"), tap = nn_model_find(m, "feat");
    for (int i = 0; i < N; i++) {
        nn_model_forward(m, f->x + i * IN, 1, NULL);
        memcpy(logits + i * KC, nn_model_out(m, head), sizeof(float) * KC);
        if (feat) memcpy(feat + i * HID, nn_model_out(m, tap), sizeof(float) * HID);
    }
}

void cf_open_ok(const kd_cache_spec *sp, nn_model *m, cf_feeder *f, kd_cache *c)
{
    xd_err e;
    xd_err_clear(&e);
    if (kd_cache_load_or_build(sp, m, cf_fill, f, c, &e)) fail_msg("%s", e.msg);
}
void cf_expect_new_key(const kd_cache_spec *sp, nn_model *m, const char *old, const char *why)
{
    char key[17];
    xd_err e;
    xd_err_clear(&e);
    if (kd_cache_key(sp, m, key, &e)) fail_msg("%s", e.msg);
    if (strcmp(key, old) == 0) fail_msg("the key did not change with %s", why);
}
