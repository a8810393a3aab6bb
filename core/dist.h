/* Several processes of one job (Open MPI): who this process is and the few exchanges that
 * data-parallel training needs.
 *
 * A program started by mpirun (its launcher sets OMPI_COMM_WORLD_SIZE) joins the job in dist_init;
 * any other start, and a build without MPI (make MPI=0), is one process of rank 0 in a job of
 * one, where every exchange below does nothing. The training code calls these functions the same
 * way in both cases, so a single process runs exactly the code it ran before.
 *
 * Determinism: sums run in a fixed order. Each value is summed by one rank, which receives it
 * from every rank and adds them in rank order 0, 1, ..., N-1, then sends the sum to all (a
 * reduce-scatter and an allgather: the traffic of a ring allreduce), so the bytes depend on N and
 * the data only, never on the network or the reduction tree MPI would pick, and every rank holds
 * the same bytes.
 *
 * A rank that fails returns its error through dist_agree, which every rank calls at the same
 * point; a rank that dies outright (a signal) makes mpirun end the job and name it. */
#ifndef XD_CORE_DIST_H
#define XD_CORE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Joins the job when started by mpirun (and built with MPI); call once, first thing in main. */
void dist_init(int *argc, char ***argv);
/* Leaves the job (nothing for a single process). */
void dist_finalize(void);

int dist_rank(void);
int dist_size(void);
/* 1: this build can join an MPI job (make found mpicc). */
int dist_built(void);

/* The part [*lo, *hi) of n items that rank `rank` takes: contiguous, in rank order, sizes
 * differing by at most one. */
void dist_slice(size_t n, int rank, size_t *lo, size_t *hi);

/* x[0..n) <- the sum over ranks of every rank's share * x (each rank weighs its own x by its
 * share), added in rank order: the same bytes on every rank. */
void dist_sum_floats(float *x, size_t n, float share);
void dist_sum_doubles(double *x, size_t n);
/* x[0..n) <- rank root's x on every rank. */
void dist_bcast_floats(float *x, size_t n, int root);
/* Counts summed over ranks (exact in any order). */
void dist_sum_counts(uint64_t *x, size_t n);

/* Rows of row_bytes, dealt in whole blocks of `block` rows (the last block may be shorter): rank
 * r holds blocks dist_slice(ceil(n_rows / block), r) of buf; afterwards rank root holds all
 * n_rows (the others' buffers are left as they were). */
void dist_gather_rows(void *buf, size_t row_bytes, size_t n_rows, size_t block, int root);

/* Every rank calls it at the same point with its own status: when any rank failed, every rank
 * returns the first failing rank's status, and e holds its message (prefixed by "rank R: " on
 * the other ranks). A single process returns s unchanged. */
xd_status dist_agree(xd_status s, xd_err *e);
/* A status that every rank reached from the same bytes (the summed gradients, the parameters
 * they updated): returned as it is, a failure marked as shared as dist_agree marks one, without
 * asking the other ranks. */
xd_status dist_same(xd_status s);
/* 1 once dist_agree or dist_same returned a failure: rank 0 holds the message to print. */
int dist_failed_together(void);

#endif
