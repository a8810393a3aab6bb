/* The trainable models of a run (see models.h). */
#include "distill/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "distill/checkpoint.h"

uint64_t models_seed(long seed, int k)
{
    /* model 0 keeps the run's seed: the one-student form initialises as it always has */
    if (k == 0) return (uint64_t)seed;
    return xd_mix64((uint64_t)seed + 0x9E3779B97F4A7C15ull * (uint64_t)k);
}

xd_status models_build(model_rt *mr, const recipe *r, int k, long seed, xd_err *e)
{
    mr->rm = &r->models[k];
    mr->seed = models_seed(seed, k);
    xd_status s = nn_model_build(&mr->m, mr->rm->model, r->train.batch, mr->seed, e);
    mr->m.precision = r->train.precision;
    /* a resumed run's values come from its resume state after this */
    if (s == XD_OK && mr->rm->init) s = ckpt_load_init(mr->rm->init, &mr->m, e);
    if (s == XD_OK) return XD_OK;
    if (r->n_models > 1) return xd_err_prefix(e, "model '%s'", mr->rm->name);
    return xd_err_prefix(e, "model");
}

xd_status models_open_feed(const model_rt *mr, const recipe *r, const io_dataset *ds,
                           const char *split, feed *f, xd_err *e)
{
    /* images of another size or colour are read only where data.augment says so (size=,
     * channels=), as a teacher's and eval's are; a segment task reads its scenes at the model's
     * size */
    const recipe_data *d = &r->data;
    xd_status s = XD_OK;
    if (strcmp(mr->rm->view, "image") == 0 && r->task != RECIPE_TASK_SEGMENT)
        s = ckpt_check_images(r->file ? r->file : "the recipe", &mr->m, ds, split, d->augment, e);
    return s == XD_OK ? feed_open(f, ds, split, mr->rm->view, &mr->m, d->augment, d->text, e) : s;
}

xd_status models_open_feeds(model_rt *mr, const recipe *r, const io_dataset *ds, xd_err *e)
{
    const recipe_data *d = &r->data;
    xd_status s = models_open_feed(mr, r, ds, d->train, &mr->train, e);
    /* the same preprocessing as training; feed_fill without augmentation takes the centre window
     * and never flips, so evaluation sees the plain, normalised images */
    if (s == XD_OK) s = models_open_feed(mr, r, ds, d->test, &mr->test, e);
    if (s == XD_OK && d->val) s = models_open_feed(mr, r, ds, d->val, &mr->val, e);
    if (s != XD_OK) {
        if (r->n_models > 1) xd_err_prefix(e, "model '%s'", mr->rm->name);
        return s;
    }
    const size_t B = (size_t)r->train.batch;
    mr->input = xd_xmalloc_aligned(feed_example_bytes(&mr->train) * B);
    mr->eval_input = xd_xmalloc_aligned(feed_example_bytes(&mr->test) * B);
    mr->segs = xd_xcalloc((size_t)(mr->m.n_segs ? mr->m.n_segs : 1), sizeof *mr->segs);
    return XD_OK;
}

void models_close(model_rt *mr)
{
    nn_model_free(&mr->m);
    feed_close(&mr->train);
    feed_close(&mr->test);
    feed_close(&mr->val);
    for (int i = 0; mr->eval_feeds && i < mr->n_eval; i++) feed_close(&mr->eval_feeds[i]);
    free(mr->eval_feeds);
    free(mr->eval_acc);
    free(mr->eval_bacc);
    nn_opt_free(&mr->opt);
    free(mr->input);
    free(mr->eval_input);
    free(mr->segs);
}

char *models_file(const recipe *r, int k, const char *what)
{
    char name[RECIPE_MAX_NAME + 48];
    if (r->n_models > 1)
        snprintf(name, sizeof name, "%s.%s.safetensors", r->models[k].name, what);
    else
        snprintf(name, sizeof name, "%s.safetensors", what);
    return xd_xstrdup(name);
}
