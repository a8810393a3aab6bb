/* The standard distillation methods beyond KD, hints and attention (the ones the public benchmark
 * suites RepDistiller and mdistiller compare): DKD, RKD, SP, PKT, CC, NST, FSP, VID, AB and OFD.
 * CRD, which keeps a memory bank, is in distill/crd.h.
 *
 * Each method is a forward/backward pair in the style of kd.h: inputs are float buffers, every
 * value past them is double and every reduction runs serially in a fixed order (values match
 * float64 references to float precision and do not depend on the thread count); forward returns
 * the loss; backward ADDS weight * d(loss)/d(input) into the gradient buffers it is given (NULL:
 * not needed), computing the loss on the way, and returns it too: a training step calls backward
 * alone, so nothing is computed twice and no state is kept between calls. Gram
 * matrices go through cblas_dgemm. Methods that need scratch take a caller-owned `work` buffer
 * of kd_*_work_len doubles, so a training step allocates nothing.
 *
 * The definitions are those of the methods' reference code (RepDistiller for RKD, SP, PKT, CC,
 * NST, FSP, VID, AB; mdistiller for DKD; the OFD authors' code), with the same normalisations and
 * the same denominators in the means; PyTorch's float64 values of DKD, RKD, SP, PKT, CC, NST and
 * FSP are the tests' golden values. Features of a batch are rows (B, D) (a tap flattened per
 * example); maps are NHWC, (B, HW, C) with HW = H * W.
 *
 * Batch of one: the relational losses compare examples with each other (RKD, SP, PKT, CC), and a
 * single example has nothing to compare with: they return 0 and add no gradient for B = 1 (the
 * reference code's means over empty sets would be NaN). */
#ifndef XD_DISTILL_ZOO_H
#define XD_DISTILL_ZOO_H

#include <stddef.h>
#include <stdint.h>

/* The backward of x^ = x / max(|x|, 1e-12) (F.normalize) for a vector of n values `stride`
 * apart, norm = |x| before the clamp: dx = (g - x^ (x^ . g)) / |x|, or g / 1e-12 where the clamp
 * holds. dx may be g. */
void kd_unit_backward(double *dx, const double *xn, const double *g, double norm, int n,
                      int stride);

/* ---------------------------------------------------------------------------------------------
 * DKD, decoupled KD (Zhao et al., CVPR 2022). Per row, z = s / T, v = t / T, g = the label:
 *   TCKD = KL(b(v) || b(z)),  b(x) = (softmax(x)_g, 1 - softmax(x)_g)   (target vs the rest)
 *   NCKD = KL(softmax(v without g) || softmax(z without g))            (among the non-targets)
 *   DKD  = T^2 (1/M) sum_{rows in mask} (alpha TCKD + beta NCKD)
 * s, t (B, K) logits; y (B) labels in [0, K); mask (B) or NULL = every row (rows without a label
 * have no target class and do not count). Published defaults: alpha 1, beta 8, T 4. */
double kd_dkd_forward(const float *s, const float *t, const int32_t *y, const uint8_t *mask, int B,
                      int K, float T, float alpha, float beta);
/* ds += weight dDKD/ds; per row (1/T) of dTCKD/dz_k = (p_g - q_g)(1[k=g] - p_k) / (1 - p_g)
 * plus dNCKD/dz_k = p'_k - q'_k off the target, p' and q' the non-target softmaxes. */
double kd_dkd_backward(float *ds, const float *s, const float *t, const int32_t *y,
                     const uint8_t *mask, int B, int K, float T, float alpha, float beta,
                     float weight);

/* ---------------------------------------------------------------------------------------------
 * RKD, relational KD (Park et al., CVPR 2019). With d_ij = sqrt(max(|e_i - e_j|^2, 1e-12)) off
 * the diagonal (0 on it), each side divided by its mean off-diagonal distance, and
 * a_ijk = u_ij . u_ik, u_ij = (e_j - e_i) / max(|e_j - e_i|, 1e-12) (the angle at e_i):
 *   RKD = w_d (1/B^2) sum_ij h(d^s_ij - d^t_ij) + w_a (1/B^3) sum_ijk h(a^s_ijk - a^t_ijk)
 * h the smooth L1 (Huber with beta 1). fs (B, Ds), ft (B, Dt). Published weights: 25 and 50.
 * The angles come from one Gram matrix per side, a_ijk = (G_jk - G_ij - G_ik + G_ii) /
 * (l_ij l_ik): B^2 D for the products (cblas_dgemm) and B^3 scalar steps for the triples, instead
 * of B^3 D for a Gram of unit differences per anchor. B = 1: 0. */
size_t kd_rkd_work_len(int B, int Ds, int Dt);
double kd_rkd_forward(double *work, const float *fs, const float *ft, int B, int Ds, int Dt,
                      float w_dist, float w_angle);
double kd_rkd_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                     int Dt, float w_dist, float w_angle, float weight);

/* ---------------------------------------------------------------------------------------------
 * SP, similarity-preserving KD (Tung & Mori, ICCV 2019). G = F F^T (B x B), each row divided by
 * max(its L2 norm, 1e-12):
 *   SP = (1/B^2) |G^t - G^s|_F^2
 * fs (B, Ds), ft (B, Dt). B = 1: 0. */
size_t kd_sp_work_len(int B, int Ds, int Dt);
double kd_sp_forward(double *work, const float *fs, const float *ft, int B, int Ds, int Dt);
double kd_sp_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                    int Dt, float weight);

/* ---------------------------------------------------------------------------------------------
 * PKT, probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018). With x^_i = x_i / (|x_i| +
 * eps), S = x^ x^^T, P_ij = (S_ij + 1) / sum_k (S_ik + 1) (a distribution per row), eps = 1e-7:
 *   PKT = (1/B^2) sum_ij Q_ij log((Q_ij + eps) / (P_ij + eps))      (Q from the teacher)
 * fs (B, Ds), ft (B, Dt). B = 1: 0. */
size_t kd_pkt_work_len(int B, int Ds, int Dt);
double kd_pkt_forward(double *work, const float *fs, const float *ft, int B, int Ds, int Dt);
double kd_pkt_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int Ds,
                     int Dt, float weight);

/* ---------------------------------------------------------------------------------------------
 * CC, correlation congruence (Peng et al., ICCV 2019), in RepDistiller's form: with
 * delta = |fs - ft| (B, D), consecutive examples of the batch correlated,
 *   CC = (1/(B-1)) sum_{b < B-1} delta_b . delta_{b+1}
 * fs, ft (B, D) (an embedding of the same width on both sides). B = 1: 0. */
double kd_cc_forward(const float *fs, const float *ft, int B, int D);
/* d|x|/dx = sign(x), 0 at 0 (as PyTorch) */
double kd_cc_backward(float *dfs, const float *fs, const float *ft, int B, int D, float weight);

/* ---------------------------------------------------------------------------------------------
 * NST, neuron selectivity transfer (Huang & Wang, 2017): the maximum mean discrepancy between
 * the channels of the two maps, each channel a vector over the HW positions, L2-normalised
 * (max(|f|, 1e-12)), with the polynomial kernel k(a, b) = (a . b)^2:
 *   NST = mean_{b,i,j} k(t_i, t_j) + mean_{b,i,j} k(s_i, s_j) - 2 mean_{b,i,j} k(s_i, t_j)
 * each mean over B and its pairs of channels. fs (B, HW, Cs), ft (B, HW, Ct). */
size_t kd_nst_work_len(int HW, int Cs, int Ct);
double kd_nst_forward(double *work, const float *fs, const float *ft, int B, int HW, int Cs,
                      int Ct);
double kd_nst_backward(float *dfs, double *work, const float *fs, const float *ft, int B, int HW,
                     int Cs, int Ct, float weight);

/* ---------------------------------------------------------------------------------------------
 * FSP, flow of solution procedure (Yim et al., CVPR 2017): the Gram matrix between two maps of
 * one network at the same spatial size, G_ij = (1/HW) sum_p top_pi bot_pj (C2 x C1), and
 *   FSP = (1/(B C1 C2)) sum_b |G^s_b - G^t_b|_F^2
 * s1, t1 (B, HW, C1) the first (lower) maps; s2, t2 (B, HW, C2) the second. */
size_t kd_fsp_work_len(int HW, int C1, int C2);
double kd_fsp_forward(double *work, const float *s1, const float *s2, const float *t1,
                      const float *t2, int B, int HW, int C1, int C2);
/* ds1 += weight dFSP/ds1, ds2 += weight dFSP/ds2 (either may be NULL) */
double kd_fsp_backward(float *ds1, float *ds2, double *work, const float *s1, const float *s2,
                     const float *t1, const float *t2, int B, int HW, int C1, int C2,
                     float weight);

/* ---------------------------------------------------------------------------------------------
 * VID, variational information distillation (Ahn et al., CVPR 2019). The teacher's features t
 * are modelled as a Gaussian with mean mu (a learned regressor's output on the student's
 * features) and a learned variance per channel, var_c = softplus(log_scale_c) + 1e-5:
 *   VID = (1/N) sum_{n,c} 0.5 ((mu_nc - t_nc)^2 / var_c + log var_c),  N = rows * C
 * mu, t (rows, C) (a map's B * HW positions are rows); log_scale (C). */
#define KD_VID_INIT_VAR 5.0
/* log_scale_c = softplus^-1(init_var - 1e-5), the reference code's start (init_var 5) */
void kd_vid_init(float *log_scale, int C, double init_var);
double kd_vid_forward(const float *mu, const float *t, const float *log_scale, int64_t rows,
                      int C);
/* dmu += weight dVID/dmu; dlog_scale += weight dVID/dlog_scale (either may be NULL) */
double kd_vid_backward(float *dmu, float *dlog_scale, const float *mu, const float *t,
                     const float *log_scale, int64_t rows, int C, float weight);

/* ---------------------------------------------------------------------------------------------
 * AB, activation boundaries (Heo et al., AAAI 2019): the student's pre-ReLU values s (through a
 * connector) are pushed to the same side of 0 as the teacher's pre-ReLU values t, by a margin m:
 *   AB = (1/B) sum (s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0]
 * s, t (B, n) (n values per example). Published margin: 1. */
double kd_ab_forward(const float *s, const float *t, int B, int64_t n, float margin);
double kd_ab_backward(float *ds, const float *s, const float *t, int B, int64_t n, float margin,
                    float weight);

/* ---------------------------------------------------------------------------------------------
 * OFD, overhaul of feature distillation (Heo et al., ICCV 2019): the teacher's pre-ReLU features
 * t through a margin ReLU, r = max(t, m_c) with m_c < 0 per channel, and a partial L2 that skips
 * the positions where the student is already below a negative target:
 *   OFD = (1/B) sum (s - r)^2 [s > r or r > 0]
 * s, t (B, HW, C) (the student's through its connector). */
double kd_ofd_forward(const float *s, const float *t, const float *margin, int B, int HW, int C);
double kd_ofd_backward(float *ds, const float *s, const float *t, const float *margin, int B,
                     int HW, int C, float weight);
/* The margin of each channel, E[x | x < 0] for x ~ N(mean_c, std_c^2):
 *   m_c = mean - std phi(mean/std) / Phi(-mean/std)   when Phi(-mean/std) > 0.001, else -3 std
 * (the reference code reads mean and std from the teacher's batch norm before the ReLU; here they
 * are the teacher features' own per-channel mean and standard deviation over rows = B * HW
 * positions, which is what that batch norm's shift and scale approximate). A channel of constant
 * value gets min(mean, 0). */
void kd_ofd_margin(float *margin, const float *t, int64_t rows, int C);

#endif
