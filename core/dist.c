/* Several processes of one job (see dist.h): Open MPI when built with it (XD_MPI) and started by
 * mpirun, else a job of one. */
#include "core/dist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void dist_slice(size_t n, int rank, size_t *lo, size_t *hi)
{
    const size_t N = (size_t)dist_size(), r = (size_t)rank;
    *lo = n / N * r + (r < n % N ? r : n % N);
    *hi = *lo + n / N + (r < n % N ? 1 : 0);
}

#ifdef XD_MPI
#include <mpi.h>

static int g_rank, g_size = 1, g_joined, g_failed;

void dist_init(int *argc, char ***argv)
{
    /* only a launch by mpirun joins a job: a plain start stays a plain process (no singleton
     * start-up of the MPI runtime, no change in behaviour) */
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n || !*n) return;
    int provided;
    /* OpenMP threads run inside a rank, MPI is only called from the main thread */
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_joined = 1;
}

void dist_finalize(void)
{
    if (g_joined) MPI_Finalize();
    g_joined = 0;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
int dist_built(void) { return 1; }

/* The sum in pieces of at most CHUNK values per rank (N * CHUNK per piece), so that its buffers
 * stay small whatever the model. */
enum { CHUNK = 1 << 20 };

/* A reduce-scatter then an allgather, both in fixed order: the piece is cut into N parts, rank j
 * receives every rank's part j (MPI_Alltoall) and adds them in rank order, then every rank
 * receives every summed part (MPI_Allgather). Each value is added by one rank in rank order, so
 * the bytes do not depend on the network, and each rank sends and receives 2 (N - 1) / N of the
 * piece, as a ring allreduce does. */
void dist_sum_floats(float *x, size_t n, float share)
{
    if (g_size == 1 || n == 0) return;
    const size_t N = (size_t)g_size, piece_max = CHUNK * N;
    const size_t part_max = (n < piece_max ? n : piece_max) / N + 1;
    float *send = xd_xmalloc(sizeof(float) * part_max * N * 2), *recv = send + part_max * N;
    for (size_t off = 0; off < n; off += piece_max) {
        const size_t len = n - off < piece_max ? n - off : piece_max, part = (len + N - 1) / N;
        /* the piece weighed by this rank's share, padded with zeros to N parts */
        for (size_t i = 0; i < part * N; i++) send[i] = i < len ? share * x[off + i] : 0.0f;
        MPI_Alltoall(send, (int)part, MPI_FLOAT, recv, (int)part, MPI_FLOAT, MPI_COMM_WORLD);
        for (size_t i = 0; i < part; i++) {
            float sum = recv[i];
            for (size_t r = 1; r < N; r++) sum += recv[r * part + i];
            send[i] = sum;
        }
        MPI_Allgather(send, (int)part, MPI_FLOAT, recv, (int)part, MPI_FLOAT, MPI_COMM_WORLD);
        memcpy(x + off, recv, sizeof(float) * len);
    }
    free(send);
}

void dist_sum_doubles(double *x, size_t n)
{
    if (g_size == 1 || n == 0) return;
    double *all = xd_xmalloc(sizeof(double) * n * (size_t)g_size);
    MPI_Allgather(x, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, MPI_COMM_WORLD);
    for (size_t i = 0; i < n; i++) {
        double s = all[i];
        for (int r = 1; r < g_size; r++) s += all[(size_t)r * n + i];
        x[i] = s;
    }
    free(all);
}

void dist_bcast_floats(float *x, size_t n, int root)
{
    for (size_t off = 0; g_size > 1 && off < n; off += CHUNK)
        MPI_Bcast(x + off, (int)(n - off < CHUNK ? n - off : CHUNK), MPI_FLOAT, root, MPI_COMM_WORLD);
}

void dist_sum_counts(uint64_t *x, size_t n)
{
    if (g_size == 1 || n == 0) return;
    MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
}

void dist_gather_rows(void *buf, size_t row_bytes, size_t n_rows, size_t block, int root)
{
    if (g_size == 1 || row_bytes == 0) return;
    int *count = xd_xmalloc(sizeof(int) * (size_t)g_size * 2), *displ = count + g_size;
    for (int r = 0; r < g_size; r++) {
        size_t lo, hi;
        dist_slice((n_rows + block - 1) / block, r, &lo, &hi);
        lo = lo * block < n_rows ? lo * block : n_rows;
        hi = hi * block < n_rows ? hi * block : n_rows;
        count[r] = (int)(hi - lo);
        displ[r] = (int)lo;
    }
    /* one row is one element: counts stay small whatever the rows hold */
    MPI_Datatype row;
    MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
    MPI_Type_commit(&row);
    char *mine = (char *)buf + (size_t)displ[g_rank] * row_bytes;
    MPI_Gatherv(g_rank == root ? MPI_IN_PLACE : mine, count[g_rank], row, buf, count, displ, row,
                root, MPI_COMM_WORLD);
    MPI_Type_free(&row);
    free(count);
}

xd_status dist_agree(xd_status s, xd_err *e)
{
    if (g_size == 1) return s;
    int *all = xd_xmalloc(sizeof(int) * (size_t)g_size), mine = (int)s, first = -1;
    MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD);
    for (int r = 0; r < g_size && first < 0; r++)
        if (all[r] != XD_OK) first = r;
    xd_status agreed = first < 0 ? XD_OK : (xd_status)all[first];
    free(all);
    if (first < 0) return XD_OK;
    g_failed = 1;
    char msg[XD_ERR_LEN];
    if (g_rank == first) memcpy(msg, e->msg, sizeof msg);
    MPI_Bcast(msg, XD_ERR_LEN, MPI_CHAR, first, MPI_COMM_WORLD);
    if (g_rank != first) xd_fail(e, agreed, "rank %d: %s", first, msg);
    return agreed;
}

xd_status dist_same(xd_status s)
{
    if (s != XD_OK && g_size > 1) g_failed = 1;
    return s;
}

int dist_failed_together(void) { return g_failed; }

#else /* a build without MPI: a job of one */

void dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
}
void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
int dist_built(void) { return 0; }
void dist_sum_floats(float *x, size_t n, float share)
{
    (void)x;
    (void)n;
    (void)share;
}
void dist_sum_doubles(double *x, size_t n)
{
    (void)x;
    (void)n;
}
void dist_bcast_floats(float *x, size_t n, int root)
{
    (void)x;
    (void)n;
    (void)root;
}
void dist_sum_counts(uint64_t *x, size_t n)
{
    (void)x;
    (void)n;
}
void dist_gather_rows(void *buf, size_t row_bytes, size_t n_rows, size_t block, int root)
{
    (void)buf;
    (void)row_bytes;
    (void)n_rows;
    (void)block;
    (void)root;
}
xd_status dist_agree(xd_status s, xd_err *e)
{
    (void)e;
    return s;
}
xd_status dist_same(xd_status s) { return s; }
int dist_failed_together(void) { return 0; }

#endif
