/* Suite `zoo`: what one call of each standard method (distill/zoo.h, distill/crd.h) costs at
 * batch 128, the value and the gradient together as a training step calls it, on random inputs
 * of the shapes a Fashion-MNIST student and teacher give (embeddings of 128, 14x14 maps of 16 and
 * 64 channels, 10 classes; CRD with a bank of 60000 examples, width 128, at the paper's 16384
 * negatives and at the 256 of recipes/zoo/crd.yaml). The
 * methods that relate the examples of a batch (RKD's angles above all: B^3 D) and CRD's scores
 * against its negatives are the ones that could dominate a step. */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "distill/crd.h"
#include "distill/zoo.h"

enum { B = 128, D = 128, HW = 196, CS = 16, CT = 64, K = 10, MIN_REPS = 5 };
enum { CRD_N = 60000, CRD_K = 16384, CRD_K_SMALL = 256, CRD_F = 128 };

typedef struct {
    float *fs, *ft, *ms, *mt, *mt2, *ds, *ds2, *ls, *dls, *margin;
    float *s, *t;
    int32_t *y, *ex, *idx;
    double *work;
    kd_crd_bank bank[2]; /* CRD_K and CRD_K_SMALL negatives */
    int which;
} zoo_ctx;

enum { Z_DKD, Z_RKD, Z_SP, Z_PKT, Z_CC, Z_NST, Z_FSP, Z_VID, Z_AB, Z_OFD, Z_CRD, Z_CRD_SMALL,
       Z_COUNT };
static const char *const zoo_names[Z_COUNT] = {"dkd", "rkd", "sp",  "pkt", "cc",  "nst",
                                               "fsp", "vid", "ab",  "ofd", "crd", "crd256"};
static const char *const zoo_shapes[Z_COUNT] = {
    "10 classes",         "128 vs 128 values",  "128 vs 128 values",       "128 vs 128 values",
    "128 values",         "14x14, 16 vs 64 ch", "14x14 maps of 64 and 64", "14x14x64",
    "14x14x64",           "14x14x64",           "bank 60000 x 128, 16384 negatives",
    "bank 60000 x 128, 256 negatives"};

static void zoo_call(void *p)
{
    zoo_ctx *c = p;
    switch (c->which) {
    case Z_DKD: kd_dkd_backward(c->ds, c->s, c->t, c->y, NULL, B, K, 4.0f, 1.0f, 8.0f, 1.0f); break;
    case Z_RKD: kd_rkd_backward(c->ds, c->work, c->fs, c->ft, B, D, D, 25.0f, 50.0f, 1.0f); break;
    case Z_SP: kd_sp_backward(c->ds, c->work, c->fs, c->ft, B, D, D, 1.0f); break;
    case Z_PKT: kd_pkt_backward(c->ds, c->work, c->fs, c->ft, B, D, D, 1.0f); break;
    case Z_CC: kd_cc_backward(c->ds, c->fs, c->ft, B, D, 1.0f); break;
    case Z_NST: kd_nst_backward(c->ds, c->work, c->ms, c->mt, B, HW, CS, CT, 1.0f); break;
    case Z_FSP:
        kd_fsp_backward(c->ds, c->ds2, c->work, c->mt, c->mt2, c->mt2, c->mt, B, HW, CT, CT, 1.0f);
        break;
    case Z_VID: kd_vid_backward(c->ds, c->dls, c->mt, c->mt2, c->ls, (int64_t)B * HW, CT, 1.0f); break;
    case Z_AB: kd_ab_backward(c->ds, c->mt, c->mt2, B, (int64_t)HW * CT, 1.0f, 1.0f); break;
    case Z_OFD:
        kd_ofd_margin(c->margin, c->mt2, (int64_t)B * HW, CT);
        kd_ofd_backward(c->ds, c->mt, c->mt2, c->margin, B, HW, CT, 1.0f);
        break;
    case Z_CRD:
    case Z_CRD_SMALL: {
        kd_crd_bank *bk = &c->bank[c->which == Z_CRD_SMALL];
        xd_rng r = xd_rng_make(1, 0, XD_RNG_USER);
        kd_crd_sample(c->idx, c->ex, B, bk, &r);
        kd_crd_forward(c->work, bk, c->fs, c->ft, c->idx, B);
        kd_crd_backward(c->ds, c->ds2, c->work, bk, c->idx, B, 1.0f);
        break;
    }
    }
}

static float *rand_floats(size_t n, uint64_t seed)
{
    float *x = xd_xmalloc(sizeof(float) * n);
    xd_rng r = xd_rng_make(seed, 0, XD_RNG_USER);
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * xd_rng_uniform(&r) - 1.0f;
    return x;
}

int bench_zoo(const bench_opts *o)
{
    FILE *f = o->out;
    zoo_ctx c = {0};
    const size_t map = (size_t)B * HW * CT;
    c.fs = rand_floats((size_t)B * D, 1);
    c.ft = rand_floats((size_t)B * D, 2);
    c.ms = rand_floats((size_t)B * HW * CS, 3);
    c.mt = rand_floats(map, 4);
    c.mt2 = rand_floats(map, 5);
    c.s = rand_floats((size_t)B * K, 6);
    c.t = rand_floats((size_t)B * K, 7);
    c.ls = rand_floats(CT, 8);
    c.ds = xd_xcalloc(map, sizeof(float));
    c.ds2 = xd_xcalloc(map, sizeof(float));
    c.dls = xd_xcalloc(CT, sizeof(float));
    c.margin = xd_xmalloc(sizeof(float) * CT);
    c.y = xd_xmalloc(sizeof(int32_t) * B);
    c.ex = xd_xmalloc(sizeof(int32_t) * B);
    for (int b = 0; b < B; b++) c.y[b] = b % K, c.ex[b] = b * 97;
    c.idx = xd_xmalloc(sizeof(int32_t) * (size_t)B * (CRD_K + 1));
    size_t wl = kd_rkd_work_len(B, D, D);
    const size_t more[] = {kd_sp_work_len(B, D, D), kd_pkt_work_len(B, D, D),
                           kd_nst_work_len(HW, CS, CT), kd_fsp_work_len(HW, CT, CT),
                           kd_crd_save_len(B, CRD_F, CRD_K)};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) wl = more[i] > wl ? more[i] : wl;
    c.work = xd_xmalloc(sizeof(double) * wl);
    xd_err e;
    const int crd_k[2] = {CRD_K, CRD_K_SMALL};
    for (int i = 0; i < 2; i++)
        if (kd_crd_bank_init(&c.bank[i], CRD_N, CRD_F, crd_k[i], 0.07f, 0.5f, 1, &e) != XD_OK) {
            fprintf(stderr, "xdistill bench: %s\n", e.msg);
            return 1;
        }
    if (!o->json) {
        fprintf(f, "\nstandard distillation methods, one call (value and gradient) at batch %d; "
                   "ms median [min-max]; cpu ms = CPU time of all threads\n", B);
        fprintf(f, "%-6s %3s %22s %9s  %s\n", "case", "thr", "ms", "cpu ms", "shapes");
    }
    for (int ti = 0; ti < o->n_threads; ti++) {
        const int th = o->threads[ti];
        xd_threads_set(th);
        for (int k = 0; k < Z_COUNT; k++) {
            c.which = k;
            bench_time t = bench_run(zoo_call, &c, o->min_seconds, MIN_REPS, 10000);
            if (o->json) {
                fprintf(f, "{\"suite\":\"zoo\",\"case\":\"%s\",\"batch\":%d,\"threads\":%d,"
                           "\"call_s\":%.6f,\"min_s\":%.6f,\"max_s\":%.6f,\"cpu_s\":%.6f,"
                           "\"reps\":%d}\n",
                        zoo_names[k], B, th, t.median, t.min, t.max, t.cpu_median, t.reps);
            } else {
                char r[48];
                snprintf(r, sizeof r, "%.2f [%.2f-%.2f]", 1e3 * t.median, 1e3 * t.min,
                         1e3 * t.max);
                fprintf(f, "%-6s %3d %22s %9.2f  %s\n", zoo_names[k], th, r, 1e3 * t.cpu_median,
                        zoo_shapes[k]);
            }
        }
    }
    kd_crd_bank_free(&c.bank[0]);
    kd_crd_bank_free(&c.bank[1]);
    float *fl[] = {c.fs, c.ft, c.ms, c.mt, c.mt2, c.s, c.t, c.ls, c.ds, c.ds2, c.dls, c.margin};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) free(fl[i]);
    free(c.y);
    free(c.ex);
    free(c.idx);
    free(c.work);
    return 0;
}
