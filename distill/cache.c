/* Teacher-output cache (see cache.h): the key, the strict loader and the builder.
 *
 * The loader checks everything before handing out a pointer, because the files outlive the run
 * that wrote them and anything may have happened to them since; the builder writes each array
 * through io_atomic and the checksum file last, so a set is either complete or visibly not. */
#include "distill/cache.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dist.h"
#include "core/hash.h"
#include "core/mem.h"
#include "distill/progress.h"
#include "io/dataset.h"
#include "io/file.h"
#include "nn/conv_wino.h"

static const char *const part_names[] = {
    [KD_PART_LOGITS] = "logits",       [KD_PART_TOPK_VAL] = "topk_val",
    [KD_PART_TOPK_IDX] = "topk_idx",   [KD_PART_TOPK_REST] = "topk_rest",
    [KD_PART_FEAT] = "feat",
};
static_assert(sizeof part_names / sizeof part_names[0] == KD_PART_COUNT,
              "part_names must name every cache part");

const char *kd_cache_part_name(kd_cache_part p)
{
    return (unsigned)p < KD_PART_COUNT ? part_names[p] : "?";
}

#define CACHE_FORMAT "xdistill teacher cache 1"
/* A checksum file lists at most KD_PART_COUNT short lines; anything larger is not ours. */
#define CACHE_SUM_MAX 4096

/* ---------------------------------------------------------------------------------------------
 * the spec, checked and resolved against the teacher */

typedef struct {
    int head, tap;              /* node indices; tap -1 when none */
    int K, k;                   /* head outputs per example; kept (0: all) */
    int head_ndim, feat_ndim;   /* per-example shapes: (C) or (H, W, C) */
    int64_t head_shape[3], feat_shape[3];
    size_t feat_dim;
} resolved;

static void node_shape(const nn_node *nd, int *ndim, int64_t *shape)
{
    if (nd->h == 1 && nd->w == 1) {
        *ndim = 1;
        shape[0] = nd->c;
    } else {
        *ndim = 3;
        shape[0] = nd->h;
        shape[1] = nd->w;
        shape[2] = nd->c;
    }
}

static xd_status resolve(const kd_cache_spec *sp, const nn_model *m, resolved *r, xd_err *e)
{
    memset(r, 0, sizeof *r);
    if (!sp->dataset_path || !*sp->dataset_path)
        return xd_fail(e, XD_EARG, "teacher cache: no dataset path");
    if (!sp->split || !*sp->split || !sp->view || !*sp->view)
        return xd_fail(e, XD_EARG, "teacher cache for %s: the split and the view must be named",
                       sp->dataset_path);
    if (sp->n == 0)
        return xd_fail(e, XD_EARG, "teacher cache for %s: split '%s' has no examples",
                       sp->dataset_path, sp->split);
    r->head = sp->head ? nn_model_find(m, sp->head) : nn_model_default_head(m);
    if (r->head < 0)
        return xd_fail(e, XD_EARG, "teacher cache: the teacher has no node '%s' for the logits",
                       sp->head);
    const nn_node *hd = nn_model_node(m, r->head);
    if (hd->act_n > INT32_MAX)
        return xd_fail(e, XD_ESHAPE, "teacher cache: head '%s' has too many outputs", hd->name);
    r->K = (int)hd->act_n;
    node_shape(hd, &r->head_ndim, r->head_shape);
    if (sp->topk < 0 || sp->topk > r->K)
        return xd_fail(e, XD_EARG, "teacher cache: top-k %d is outside [0, %d] (head '%s')",
                       sp->topk, r->K, hd->name);
    if (sp->topk > 0 && r->head_ndim != 1)
        return xd_fail(e, XD_EARG, "teacher cache: top-k needs a (B, K) head; '%s' gives (B, %d, "
                       "%d, %d)", hd->name, hd->h, hd->w, hd->c);
    r->k = sp->topk;
    r->tap = -1;
    if (sp->tap) {
        r->tap = nn_model_find(m, sp->tap);
        if (r->tap < 0)
            return xd_fail(e, XD_EARG, "teacher cache: the teacher has no node '%s' to tap",
                           sp->tap);
        const nn_node *tp = nn_model_node(m, r->tap);
        node_shape(tp, &r->feat_ndim, r->feat_shape);
        r->feat_dim = tp->act_n;
    }
    return XD_OK;
}

static int cmp_words(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* h mixed with the words of an options string (augment's, text's: key=value words apart by
 * blanks or ';', in any order), sorted: the same options give the same hash however written */
static uint64_t hash_options(uint64_t h, char tag, const char *opts)
{
    char *copy = xd_xstrdup(opts ? opts : "");
    size_t n = 0, cap = 8;
    char **words = xd_xmalloc(sizeof *words * cap);
    for (char *save = NULL, *w = strtok_r(copy, " \t\r\n;", &save); w;
         w = strtok_r(NULL, " \t\r\n;", &save)) {
        if (n == cap) words = xd_xrealloc(words, sizeof *words * (cap *= 2));
        words[n++] = w;
    }
    qsort(words, n, sizeof *words, cmp_words);
    h = xd_fnv_u64(h, tag, n);
    for (size_t i = 0; i < n; i++) h = xd_fnv_str(h, tag, words[i]);
    free(words);
    free(copy);
    return h;
}

xd_status kd_cache_key(const kd_cache_spec *spec, const nn_model *teacher, char key[17], xd_err *e)
{
    resolved r;
    xd_status s = resolve(spec, teacher, &r, e);
    if (s) return s;
    uint64_t h = xd_fnv_str(XD_FNV_OFFSET, 'F', CACHE_FORMAT);
    h = xd_fnv_str(h, 'm', teacher->desc);
    h = xd_fnv_field(h, 'p', teacher->param, teacher->n_param * sizeof(float));
    h = xd_fnv_field(h, 'S', teacher->state, teacher->n_state * sizeof(float));
    if (spec->dataset) {
        io_dataset_identity_of(spec->dataset, &h);
    } else if ((s = io_dataset_identity(spec->dataset_path, &h, e))) {
        xd_err_prefix(e, "teacher cache");
        return s;
    }
    h = xd_fnv_str(h, 's', spec->split);
    h = xd_fnv_str(h, 'w', spec->view);
    h = xd_fnv_u64(h, 'n', spec->n);
    h = xd_fnv_str(h, 'h', teacher->nodes[r.head].name);
    h = xd_fnv_u64(h, 'K', (uint64_t)r.k);
    h = xd_fnv_str(h, 'a', r.tap >= 0 ? teacher->nodes[r.tap].name : "");
    /* what the inputs are made with (a teacher whose checkpoint does not say takes the recipe's),
     * as its options, whatever their order and separators; every key from before these fields
     * is new, so a set built while the engine kept a tap inside a run of per-image layers for
     * only its last chunk of images is not read again */
    h = hash_options(h, 'g', spec->augment);
    h = hash_options(h, 'x', spec->text);
    /* outputs from bf16 products are other numbers: their own key, and each bf16 kernel sums in
     * its own order: the one that runs is part of it */
    if (teacher->eval_precision != NN_PREC_FLOAT32) {
        h = xd_fnv_str(h, 'P', nn_precision_names[teacher->eval_precision]);
        h = xd_fnv_str(h, 'k', nn_bisa_name(nn_bgemm_isa()));
        h = xd_fnv_str(h, 'c', nn_bwino_eval_convolutions()); /* its 3 x 3 convolutions' way */
    } else { /* float32's outputs: also another sum where Winograd's computes a convolution */
        h = xd_fnv_str(h, 'c', nn_wino_eval_convolutions());
    }
    snprintf(key, 17, "%016llx", (unsigned long long)h);
    return XD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * file names and expected shapes */

static int part_used(const resolved *r, kd_cache_part p)
{
    switch (p) {
    case KD_PART_LOGITS: return r->k == 0;
    case KD_PART_TOPK_VAL:
    case KD_PART_TOPK_IDX:
    case KD_PART_TOPK_REST: return r->k > 0;
    case KD_PART_FEAT: return r->tap >= 0;
    default: return 0;
    }
}

/* "<key>.<part>" with the tap's name made safe for a file name (its key keeps taps apart) */
static void part_label(char *buf, size_t cap, const nn_model *m, const resolved *r,
                       kd_cache_part p)
{
    if (p != KD_PART_FEAT) {
        snprintf(buf, cap, "%s", part_names[p]);
        return;
    }
    int len = snprintf(buf, cap, "feat_%s", m->nodes[r->tap].name);
    for (int i = 5; i < len && (size_t)i < cap; i++) {
        char ch = buf[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '-';
        if (!ok) buf[i] = '_';
    }
}

static void part_expect(const resolved *r, size_t n, kd_cache_part p, io_dtype *dt, int *ndim,
                        int64_t *shape)
{
    *dt = p == KD_PART_TOPK_IDX ? IO_I32 : IO_F32;
    shape[0] = (int64_t)n;
    switch (p) {
    case KD_PART_LOGITS:
        *ndim = 1 + r->head_ndim;
        memcpy(shape + 1, r->head_shape, sizeof(int64_t) * (size_t)r->head_ndim);
        break;
    case KD_PART_TOPK_VAL:
    case KD_PART_TOPK_IDX:
        *ndim = 2;
        shape[1] = r->k;
        break;
    case KD_PART_TOPK_REST: *ndim = 1; break;
    case KD_PART_FEAT:
    default:
        *ndim = 1 + r->feat_ndim;
        memcpy(shape + 1, r->feat_shape, sizeof(int64_t) * (size_t)r->feat_ndim);
        break;
    }
}

/* The checksum file's text for these data hashes and sizes. */
static char *sum_text(const kd_cache *c, const nn_model *m, const resolved *r,
                      const uint64_t *hash, const size_t *bytes)
{
    size_t cap = CACHE_SUM_MAX, len = 0;
    char *t = xd_xmalloc(cap);
    len += (size_t)snprintf(t + len, cap - len, "%s\nkey %s\n", CACHE_FORMAT, c->key);
    for (int p = 0; p < KD_PART_COUNT; p++) {
        if (!part_used(r, (kd_cache_part)p)) continue;
        char label[NN_NAME_LEN + 16];
        part_label(label, sizeof label, m, r, (kd_cache_part)p);
        len += (size_t)snprintf(t + len, cap - len, "%s %zu %016llx\n", label, bytes[p],
                                (unsigned long long)hash[p]);
        XD_ASSERT(len < cap);
    }
    return t;
}

/* ---------------------------------------------------------------------------------------------
 * loading */

typedef enum { LOAD_OK, LOAD_ABSENT, LOAD_BAD } load_state;

static void close_files(kd_cache *c)
{
    for (int p = 0; p < KD_PART_COUNT; p++) io_npy_close(&c->file[p]);
    c->logits = c->topk_val = c->topk_rest = c->feat = NULL;
    c->topk_idx = NULL;
}

/* First line where the texts differ (1-based), and where that line starts in b. */
static int first_diff_line(const char *a, const char *b, const char **b_line)
{
    int line = 1;
    *b_line = b;
    for (; *a && *a == *b; a++, b++)
        if (*a == '\n') {
            line++;
            *b_line = b + 1;
        }
    return line;
}

static xd_status check_values(const kd_cache *c, const resolved *r, xd_err *e)
{
    const size_t n = c->n;
    for (int p = 0; p < KD_PART_COUNT; p++) {
        const io_npy *f = &c->file[p];
        if (!part_used(r, (kd_cache_part)p) || f->t.dtype != IO_F32) continue;
        size_t cnt = 0;
        io_tensor_elements(&f->t, &cnt);
        const float *v = f->t.data;
        size_t per = cnt / n;
        for (size_t i = 0; i < cnt; i++)
            if (!isfinite(v[i]))
                return xd_fail(e, XD_EFORMAT, "%s: value %zu (example %zu) is not finite", f->path,
                               i, i / per);
    }
    if (r->k == 0) return XD_OK;
    const int K = r->K, k = r->k;
    uint8_t *seen = xd_xcalloc((size_t)K, 1);
    xd_status s = XD_OK;
    for (size_t b = 0; b < n && !s; b++) {
        const float *v = c->topk_val + b * k;
        const int32_t *ix = c->topk_idx + b * k;
        for (int j = 0; j < k && !s; j++) {
            if (ix[j] < 0 || ix[j] >= K)
                s = xd_fail(e, XD_EFORMAT, "%s: example %zu: class index %d is outside [0, %d)",
                            c->path[KD_PART_TOPK_IDX], b, (int)ix[j], K);
            else if (seen[ix[j]])
                s = xd_fail(e, XD_EFORMAT, "%s: example %zu: class %d appears twice",
                            c->path[KD_PART_TOPK_IDX], b, (int)ix[j]);
            else if (j > 0 && !(v[j - 1] > v[j] || (v[j - 1] == v[j] && ix[j - 1] < ix[j])))
                s = xd_fail(e, XD_EFORMAT, "%s: example %zu: entries %d and %d are not in "
                            "descending order of value (ties by class)", c->path[KD_PART_TOPK_VAL],
                            b, j - 1, j);
            else
                seen[ix[j]] = 1;
        }
        for (int j = 0; j < k; j++)
            if (ix[j] >= 0 && ix[j] < K) seen[ix[j]] = 0;
        if (!s && !(c->topk_rest[b] <= v[k - 1]))
            s = xd_fail(e, XD_EFORMAT, "%s: example %zu: the dropped classes' logit %g is above "
                        "the smallest kept one %g", c->path[KD_PART_TOPK_REST], b,
                        (double)c->topk_rest[b], (double)v[k - 1]);
    }
    free(seen);
    return s;
}

/* Opens and checks every file of the set; LOAD_BAD leaves the reason in e and nothing open. */
static load_state try_load(kd_cache *c, const nn_model *m, const resolved *r, xd_err *e)
{
    struct stat st;
    if (stat(c->sum_path, &st) != 0 && errno == ENOENT) return LOAD_ABSENT;
    char *text = NULL, *want = NULL;
    size_t len;
    uint64_t hash[KD_PART_COUNT] = {0};
    size_t bytes[KD_PART_COUNT] = {0};
    xd_status s = io_read_all(c->sum_path, CACHE_SUM_MAX, (void **)&text, &len, e);
    for (int p = 0; p < KD_PART_COUNT && !s; p++) {
        if (!part_used(r, (kd_cache_part)p)) continue;
        io_npy *f = &c->file[p];
        if ((s = io_npy_open(c->path[p], f, e))) break;
        io_dtype dt;
        int ndim;
        int64_t shape[IO_MAX_DIMS];
        part_expect(r, c->n, (kd_cache_part)p, &dt, &ndim, shape);
        if (f->t.dtype != dt || f->t.ndim != ndim ||
            memcmp(f->t.shape, shape, sizeof(int64_t) * (size_t)ndim) != 0) {
            char got[128], exp[128];
            io_shape_format(f->t.ndim, f->t.shape, got, sizeof got);
            io_shape_format(ndim, shape, exp, sizeof exp);
            s = xd_fail(e, XD_ESHAPE, "%s: holds %s %s, expected %s %s", c->path[p],
                        io_dtype_npy_descr(f->t.dtype), got, io_dtype_npy_descr(dt), exp);
            break;
        }
        io_tensor_bytes(&f->t, &bytes[p]);
        hash[p] = xd_fnv_bytes(XD_FNV_OFFSET, f->t.data, bytes[p]);
    }
    if (!s) {
        want = sum_text(c, m, r, hash, bytes);
        if (strlen(text) != len || strcmp(text, want) != 0) {
            const char *wl;
            int line = first_diff_line(text, want, &wl);
            s = xd_fail(e, XD_EFORMAT, "%s: line %d: expected '%.*s': the list does not match the "
                        "cache files' data", c->sum_path, line, (int)strcspn(wl, "\n"), wl);
        }
    }
    if (!s) {
        c->logits = c->file[KD_PART_LOGITS].t.data;
        c->topk_val = c->file[KD_PART_TOPK_VAL].t.data;
        c->topk_idx = c->file[KD_PART_TOPK_IDX].t.data;
        c->topk_rest = c->file[KD_PART_TOPK_REST].t.data;
        c->feat = c->file[KD_PART_FEAT].t.data;
        s = check_values(c, r, e);
    }
    free(text);
    free(want);
    if (s) {
        close_files(c);
        return LOAD_BAD;
    }
    return LOAD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * building */

typedef struct {
    float v;
    int32_t i;
} kd_pair;

/* descending by value, ties to the lower class index: a total order, so qsort is deterministic */
static int pair_cmp(const void *pa, const void *pb)
{
    const kd_pair *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Top k of each of B rows of K (finite) logits, and the log-mean-exp of the others. */
static void topk_rows(const float *x, int B, int K, int k, kd_pair *pairs, float *val,
                      int32_t *idx, float *rest)
{
#pragma omp parallel for schedule(static) if ((size_t)B * K > 16384)
    for (int b = 0; b < B; b++) {
        kd_pair *pr = pairs + (size_t)b * K;
        for (int c = 0; c < K; c++) pr[c] = (kd_pair){x[(size_t)b * K + c], c};
        qsort(pr, (size_t)K, sizeof *pr, pair_cmp);
        for (int j = 0; j < k; j++) {
            val[(size_t)b * k + j] = pr[j].v;
            idx[(size_t)b * k + j] = pr[j].i;
        }
        if (k == K) {
            rest[b] = pr[K - 1].v;
            continue;
        }
        double m = pr[k].v, s = 0.0; /* the largest dropped logit */
        for (int c = k; c < K; c++) s += exp((double)pr[c].v - m);
        rest[b] = (float)(m + log(s / (K - k)));
    }
}

static xd_status build(kd_cache *c, const kd_cache_spec *sp, nn_model *m, const resolved *r,
                       kd_cache_fill_fn fill, void *ctx, xd_err *e)
{
    const size_t n = sp->n, K = (size_t)r->K, k = (size_t)r->k;
    size_t count[KD_PART_COUNT] = {0};
    void *buf[KD_PART_COUNT] = {0};
    count[KD_PART_LOGITS] = k ? 0 : K;
    count[KD_PART_TOPK_VAL] = count[KD_PART_TOPK_IDX] = k;
    count[KD_PART_TOPK_REST] = k ? 1 : 0;
    count[KD_PART_FEAT] = r->tap >= 0 ? r->feat_dim : 0;
    xd_status s = XD_OK;
    uint64_t hash[KD_PART_COUNT] = {0};
    size_t bytes[KD_PART_COUNT] = {0};
    const double t0 = progress_now();
    /* with several ranks each runs the teacher over its slice of the batches, rank 0 gathers
     * them and writes the files */
    const int writes = dist_rank() == 0;
    if (sp->log && writes) {
        /* a teacher pass over a whole split can take a while: say what the wait is */
        fprintf(sp->log, "teacher-output cache: running the teacher once over %zu examples (%s, "
                "split %s); later runs read %s\n", n, sp->view, sp->split, c->sum_path);
        fflush(sp->log);
    }
    for (int p = 0; p < KD_PART_COUNT && !s; p++) {
        if (!part_used(r, (kd_cache_part)p)) continue;
        if (xd_mul3_size(n, count[p], 4, &bytes[p]) != 0)
            s = xd_fail(e, XD_EARG, "teacher cache: %zu examples of %zu values do not fit in "
                        "memory", n, count[p]);
        else if (!(buf[p] = xd_try_alloc(bytes[p] ? bytes[p] : 1)))
            s = xd_fail(e, XD_ENOMEM, "teacher cache: cannot allocate %zu bytes for the %s of "
                        "%zu examples", bytes[p], part_names[p], n);
    }
    const size_t row_bytes = m->tokens > 0 ? (size_t)m->tokens * sizeof(int32_t)
                                           : (size_t)m->h * m->w * m->c * sizeof(float);
    void *input = s ? NULL : xd_xmalloc_aligned(row_bytes * (size_t)m->max_batch);
    kd_pair *pairs = (s || !k) ? NULL : xd_xmalloc(sizeof(kd_pair) * K * (size_t)m->max_batch);
    /* an interrupted rebuild must not leave the old checksums next to new data */
    if (!s && writes && unlink(c->sum_path) != 0 && errno != ENOENT)
        s = xd_fail(e, XD_EIO, "%s: cannot remove: %s", c->sum_path, strerror(errno));

    /* The teacher runs through the inference engine (nn_model_infer: weights packed once, its
     * convolutional layers image by image in cache, several threads on shares of the batch; in
     * bf16 for a teacher in bf16) with the eval forward's bits: no batch norm folded
     * (nn_model_pack_exact); the head and the tap read as heads (nn_model_infer_reading), as
     * the engine writes in full only what heads and later layers read (a ReLU it pools without
     * writing, a node inside a run of per-image layers); and the plain forward where it would
     * compute them otherwise (an int8 model's integer engine). */
    uint8_t *need = NULL;
    const int engine = !s && !m->packed && !m->qengine;
    const int reads[2] = {r->head, r->tap >= 0 ? r->tap : r->head};
    if (engine) {
        need = xd_xcalloc((size_t)m->n_nodes, 1);
        nn_model_needs(m, r->head, need);
        if (r->tap >= 0) nn_model_needs(m, r->tap, need);
        s = nn_model_pack_exact(m, e);
    }

    /* the same batches as one process runs, dealt out whole: the same bytes */
    size_t b_lo, b_hi;
    dist_slice((n + (size_t)m->max_batch - 1) / (size_t)m->max_batch, dist_rank(), &b_lo, &b_hi);
    const size_t first = b_lo * (size_t)m->max_batch, end = b_hi * (size_t)m->max_batch;
    for (size_t i0 = first; i0 < n && i0 < end && !s; i0 += (size_t)m->max_batch) {
        size_t i1 = n - i0 < (size_t)m->max_batch ? n : i0 + (size_t)m->max_batch;
        int B = (int)(i1 - i0);
        if ((s = fill(ctx, i0, i1, input, e))) break;
        if (engine) nn_model_infer_reading(m, input, B, need, reads, 2);
        else nn_model_forward(m, input, B, NULL);
        const float *out = nn_model_out(m, r->head);
        s = nn_check_finite(out, (size_t)B, K, NULL, i0, "teacher cache: the teacher's output", e);
        if (s) break;
        if (!k) memcpy((float *)buf[KD_PART_LOGITS] + i0 * K, out, sizeof(float) * B * K);
        else
            topk_rows(out, B, (int)K, (int)k, pairs, (float *)buf[KD_PART_TOPK_VAL] + i0 * k,
                      (int32_t *)buf[KD_PART_TOPK_IDX] + i0 * k,
                      (float *)buf[KD_PART_TOPK_REST] + i0);
        if (r->tap >= 0) {
            const float *f = nn_model_out(m, r->tap);
            const size_t F = r->feat_dim;
            s = nn_check_finite(f, (size_t)B, F, NULL, i0, "teacher cache: the teacher's tapped "
                                "feature", e);
            if (s) break;
            memcpy((float *)buf[KD_PART_FEAT] + i0 * F, f, sizeof(float) * B * F);
        }
    }
    if (engine) nn_model_unpack(m); /* the teacher's forward reads its parameters again */
    free(need);
    s = dist_agree(s, e);
    for (int p = 0; p < KD_PART_COUNT && !s; p++)
        if (part_used(r, (kd_cache_part)p))
            dist_gather_rows(buf[p], count[p] * 4, n, (size_t)m->max_batch, 0);
    for (int p = 0; p < KD_PART_COUNT && !s && writes; p++) {
        if (!part_used(r, (kd_cache_part)p)) continue;
        io_tensor t;
        io_dtype dt;
        int ndim;
        int64_t shape[IO_MAX_DIMS];
        part_expect(r, n, (kd_cache_part)p, &dt, &ndim, shape);
        io_tensor_set(&t, part_names[p], dt, ndim, shape, buf[p]);
        hash[p] = xd_fnv_bytes(XD_FNV_OFFSET, buf[p], bytes[p]);
        s = io_npy_write(c->path[p], &t, e);
    }
    if (!s && writes) {
        char *text = sum_text(c, m, r, hash, bytes);
        io_atomic w;
        s = io_atomic_open(&w, c->sum_path, e);
        if (!s) s = io_atomic_write(&w, text, strlen(text), e);
        if (!s) s = io_atomic_commit(&w, e);
        else io_atomic_abort(&w);
        free(text);
    }
    /* the other ranks read the files once rank 0 wrote them */
    s = dist_agree(s, e);
    if (!s && sp->log && writes)
        fprintf(sp->log, "teacher-output cache: built in %.1f s\n", progress_now() - t0);
    for (int p = 0; p < KD_PART_COUNT; p++) free(buf[p]);
    free(input);
    free(pairs);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * the entry point */

void kd_cache_close(kd_cache *c)
{
    close_files(c);
    for (int p = 0; p < KD_PART_COUNT; p++) free(c->path[p]);
    free(c->sum_path);
    memset(c, 0, sizeof *c);
}

static xd_status open_cache(const kd_cache_spec *spec, nn_model *teacher, kd_cache_fill_fn fill,
                            void *ctx, kd_cache *c, xd_err *e)
{
    resolved r;
    xd_status s = resolve(spec, teacher, &r, e);
    if (!s) s = kd_cache_key(spec, teacher, c->key, e);
    if (s) return s;
    c->n = spec->n;
    c->K = r.K;
    c->k = r.k;
    c->feat_dim = r.feat_dim;

    char *dir = spec->cache_dir ? xd_xstrdup(spec->cache_dir)
                                : io_dataset_cache_dir(spec->dataset_path);
    s = io_mkdir_p(dir, e);
    for (int p = 0; p < KD_PART_COUNT && !s; p++) {
        if (!part_used(&r, (kd_cache_part)p)) continue;
        char label[NN_NAME_LEN + 16], name[NN_NAME_LEN + 48];
        part_label(label, sizeof label, teacher, &r, (kd_cache_part)p);
        snprintf(name, sizeof name, "%s.%s.npy", c->key, label);
        c->path[p] = io_path_join(dir, name);
    }
    if (!s) {
        char name[32];
        snprintf(name, sizeof name, "%s.sum", c->key);
        c->sum_path = io_path_join(dir, name);
    }
    free(dir);
    if (s) return s;

    xd_err why;
    xd_err_clear(&why);
    load_state st = try_load(c, teacher, &r, &why);
    /* several ranks build together when any of them has no valid files */
    uint64_t missing = st != LOAD_OK;
    dist_sum_counts(&missing, 1);
    if (!missing) return XD_OK;
    if (st == LOAD_OK) close_files(c);
    if (st == LOAD_BAD) {
        c->rebuilt = 1;
        snprintf(c->warning, sizeof c->warning, "%s", why.msg);
    }
    if (!fill) return xd_fail(e, XD_EARG, "teacher cache %s: no files and no way to fill batches",
                              c->key);
    if ((s = build(c, spec, teacher, &r, fill, ctx, e))) return s;
    c->built = 1;
    xd_err_clear(&why);
    if (try_load(c, teacher, &r, &why) != LOAD_OK)
        return xd_fail(e, XD_EIO, "teacher cache: the files just written do not read back: %s",
                       why.msg);
    return XD_OK;
}

xd_status kd_cache_load_or_build(const kd_cache_spec *spec, nn_model *teacher,
                                 kd_cache_fill_fn fill, void *ctx, kd_cache *c, xd_err *e)
{
    memset(c, 0, sizeof *c);
    xd_status s = open_cache(spec, teacher, fill, ctx, c, e);
    if (s) kd_cache_close(c);
    return s;
}
