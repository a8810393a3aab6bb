/* CRD, contrastive representation distillation (Tian, Krishnan & Isola, ICLR 2020), as in its
 * reference code (RepDistiller's CRDLoss, ContrastMemory and ContrastLoss).
 *
 * Two embedding heads (linear layers the caller owns) map the student's and the teacher's
 * features to the same width F; their outputs es, et (B, F) are L2-normalised here. A memory bank
 * keeps an embedding of each of the N training examples per side: mem_s (the student's) and
 * mem_t (the teacher's), each (N, F). For the example ex_b at row b of a batch
 * (its index in the training set, not its label), the caller draws K + 1 bank rows
 * idx_b (idx_b0 = ex_b, the positive; K uniform negatives, kd_crd_sample) and
 *   P^s_bj = exp(mem_t[idx_bj] . es^_b / T) / Z_s      (the student's embedding against the
 *   P^t_bj = exp(mem_s[idx_bj] . et^_b / T) / Z_t       teacher's bank, and the reverse)
 * with Z fixed at the first batch (the mean of its exp(. / T) times N) and kept in the bank. Each
 * side is NCE with the uniform noise distribution, m = K, Pn = 1 / N, c = m Pn + 1e-7:
 *   L = -(1/B) sum_b [ log(P_b0 / (P_b0 + c)) + sum_{j >= 1} log(m Pn / (P_bj + c)) ]
 * and CRD = L_s + L_t. After the step the bank moves towards the batch (kd_crd_bank_update):
 *   mem[ex_b] = normalise(momentum mem[ex_b] + (1 - momentum) e^_b).
 * Published defaults: F = 128, K = 16384, T = 0.07, momentum 0.5 (and a loss weight of 0.8 next
 * to CE and KD in the paper's runs).
 *
 * Batch of one: CRD's negatives come from the bank, not from the batch, so a single example is an
 * ordinary batch (loss and gradients as for any other).
 *
 * Gradients reach both heads: the student's through es and the teacher's through et (the
 * teacher's network stays frozen, its head learns). Z and the bank are constants for the
 * gradient, as in the reference code. Everything past the float inputs is double; the scores go
 * through cblas_dgemm (dense, below) or run example by example in parallel with serial sums. The bank is state of the run: kd_crd_bank_tensors and kd_crd_bank_load put it in
 * and take it out of a resume file (named F32 tensors), so a resumed run continues exactly. */
#ifndef XD_DISTILL_CRD_H
#define XD_DISTILL_CRD_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/status.h"
#include "io/dtype.h"
#include "io/safetensors.h"

#define KD_CRD_DIM 128
#define KD_CRD_NEGATIVES 16384
#define KD_CRD_T 0.07
#define KD_CRD_MOMENTUM 0.5

typedef struct {
    int n, dim;      /* examples, embedding width F */
    int k;           /* negatives per example */
    float T;         /* temperature */
    float momentum;  /* share of the old bank row in an update */
    float *mem_s;    /* (n, dim) the student's unit embeddings */
    float *mem_t;    /* (n, dim) the teacher's */
    float z[2];      /* Z_s, Z_t; < 0 until the first update sets them */
    /* How the scores are computed. Dense (when one example's K + 1 draws are at least 1/16 of
     * the bank, so a batch's draws cover most of it): one cblas_dgemm of the batch against the
     * whole bank, the drawn entries read from it, and backward's sum over the drawn rows as one
     * dgemm of a sparse-filled (B, N) coefficient matrix with the bank; reading the bank in
     * order costs far less than gathering B (K + 1) scattered rows. Else row by row over the
     * drawn rows. Both give the same values to rounding. */
    int dense;
    double *md[2];   /* dense: mem_t and mem_s as doubles, refreshed by each forward */
    double *sc;      /* dense: (B, N) scores, then backward's coefficients; grown to the largest
                      * batch at its first call */
    int sc_rows;
} kd_crd_bank;

/* Allocates the bank, each row uniform in +-1/sqrt(dim/3) from seed (the reference code's start),
 * Z unset. n, dim, k >= 1, T > 0, momentum in [0, 1) (else XD_EARG); XD_ENOMEM when the bank
 * does not fit. */
xd_status kd_crd_bank_init(kd_crd_bank *bk, int n, int dim, int k, float T, float momentum,
                           uint64_t seed, xd_err *e);
void kd_crd_bank_free(kd_crd_bank *bk);

/* idx (B, K + 1): idx_b0 = ex_b, then K indices uniform in [0, N) (with replacement, so a
 * negative may be the example itself, as in the reference code). Draw from a stream keyed by the
 * run's seed and step, so a resumed run draws the same. */
void kd_crd_sample(int32_t *idx, const int32_t *ex, int B, const kd_crd_bank *bk, xd_rng *r);

/* Doubles of the save buffer: 2 B F (unit embeddings) + 2 B (norms) + 2 B (K + 1) (P) + 2 (Z)
 * + B F (backward's scratch). */
size_t kd_crd_save_len(int B, int dim, int k);

/* CRD as above; es, et (B, F) the heads' outputs; idx (B, K + 1) from kd_crd_sample. save is
 * filled for backward and for the update (with the Z this batch sets when the bank has none). The
 * bank's dense scratch grows to B at the first call of a larger batch. */
double kd_crd_forward(double *save, kd_crd_bank *bk, const float *es, const float *et,
                      const int32_t *idx, int B);
/* des += weight dCRD/des, det += weight dCRD/det (either may be NULL). With
 * g_bj = dL/dP_bj = (1/B) (-c / (P_b0 (P_b0 + c)) for j = 0, 1 / (P_bj + c) otherwise):
 *   de^_b = sum_j g_bj P_bj / T mem[idx_bj], then through the normalisation. */
void kd_crd_backward(float *des, float *det, double *save, const kd_crd_bank *bk,
                     const int32_t *idx, int B, float weight);

/* After the step: moves the rows ex_b of both banks towards the batch's unit embeddings and
 * sets Z when it is unset. An example twice in one batch: the later row wins. */
void kd_crd_bank_update(kd_crd_bank *bk, const double *save, const int32_t *ex, int B);

/* The bank as named tensors for a resume file: PREFIX.mem_s and PREFIX.mem_t (N, F), PREFIX.z
 * (2), F32, pointing into the bank. names holds their storage. */
enum { KD_CRD_TENSORS = 3 };
void kd_crd_bank_tensors(const kd_crd_bank *bk, const char *prefix, io_tensor *t,
                         char names[KD_CRD_TENSORS][64]);
/* Copies those tensors from f into a bank of the same n and dim. A missing tensor, another dtype
 * or shape, or a non-finite value is XD_EFORMAT naming the file and the tensor; the bank is left
 * as it was. */
xd_status kd_crd_bank_load(kd_crd_bank *bk, const io_st_file *f, const char *prefix, xd_err *e);

#endif
