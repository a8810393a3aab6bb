/* The cost of handing data from one core to another (bench.h: bench_handoff).
 *
 * Two threads of one team take part. The round trip: thread 0 writes an odd number into a cache
 * line and waits until thread 1, which answers every odd number with the next one, has written
 * it; first a few untimed, then TRIPS a round, or fewer where a round takes longer than
 * ROUND_SECONDS (a core shared with other work); each round's time over its trips. The block
 * reads: thread 1 writes a block of BLOCK_BYTES (every line then modified in its core's cache,
 * which holds it whole where its L2 is larger, as on the cores measured here); thread 0 reads
 * it once (the lines come from the other core), then writes it itself and reads it OWN_PASSES
 * times (the lines in its own cache); each read's bytes over its time, less what reading the
 * clock costs. What thread 0 read is summed and checked against what was written, so that the
 * figures are of reads of the data the other thread left. A waiting thread yields its core after
 * a while, so that two threads on one core (or one whose core the host took away) still finish. */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "core/mem.h"
#include "core/runtime.h"

#define ROUND_SECONDS 0.02 /* a round of round trips stops after this (a tenth with quick) */

enum {
    TRIPS = 2000,       /* round trips a round at most (200 with quick) */
    TRIP_ROUNDS = 5,    /* rounds of round trips (median) */
    BLOCK_BYTES = 512 * 1024,
    BLOCK_ROUNDS = 7,   /* rounds of block reads (medians) */
    OWN_PASSES = 4,
    WARM_TRIPS = 16,    /* untimed round trips first */
    SPINS = 1 << 14,    /* loads of a line that has not changed before the waiting thread yields */
};

typedef struct {
    _Alignas(64) atomic_uint ball; /* the line handed back and forth */
    _Alignas(64) atomic_uint stage; /* the round trips' end (1), then the block reads' steps */
    uint64_t *block;
    size_t words;
    int trips;
    double round_seconds;
    double clock; /* seconds a reading of the clock adds to an interval */
    double trip[TRIP_ROUNDS], other[BLOCK_ROUNDS], own[BLOCK_ROUNDS];
    int wrong; /* a read's sum was not what was written */
    int alone; /* the team was not two threads */
} handoff_job;

/* after another fruitless load of a line: every SPINS of them, the core to another thread */
static void spun(unsigned *spins)
{
    if (++*spins == SPINS) {
        *spins = 0;
        sched_yield();
    }
}

static void wait_for(atomic_uint *a, unsigned v)
{
    for (unsigned spins = 0; atomic_load_explicit(a, memory_order_acquire) != v;) spun(&spins);
}

/* word i of round r's block, as thread 1 (mine 0) or thread 0 (mine 1) writes it */
static uint64_t word(size_t i, int r, int mine)
{
    return (uint64_t)i * 0x9E3779B97F4A7C15ull + (uint64_t)(2 * r + mine + 1);
}

static void fill(uint64_t *b, size_t n, int r, int mine)
{
    for (size_t i = 0; i < n; i++) b[i] = word(i, r, mine);
}

static uint64_t sum(const uint64_t *b, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += b[i];
    return s;
}

static uint64_t expected(size_t n, int r, int mine)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += word(i, r, mine);
    return s;
}

/* the time since t0, less clock (at least a nanosecond) */
static double seconds_since(double t0, double clock)
{
    const double t = bench_now() - t0 - clock;
    return t > 1e-9 ? t : 1e-9;
}

/* what reading the clock adds to an interval: the least of a few back-to-back readings */
static double clock_cost(void)
{
    double least = 1.0;
    for (int i = 0; i < 32; i++) {
        const double t0 = bench_now(), t = bench_now() - t0;
        if (t < least) least = t;
    }
    return least;
}

/* Thread 0 throws the ball (odd values) and times the rounds; thread 1 answers each throw until
 * stage says the round trips are over (1). The stage's values then: thread 1's block of round r
 * written (2r + 3), thread 0 done with it (2r + 4). */
static void handoff_thread(void *ctx, int t)
{
    handoff_job *j = ctx;
    if (xd_team_size() != 2) { /* one thread would wait for itself */
        j->alone = 1;
        return;
    }
    if (t == 1) {
        for (unsigned spins = 0; atomic_load_explicit(&j->stage, memory_order_acquire) == 0;) {
            const unsigned v = atomic_load_explicit(&j->ball, memory_order_acquire);
            if (v & 1u) {
                atomic_store_explicit(&j->ball, v + 1u, memory_order_release);
                spins = 0;
            } else {
                spun(&spins);
            }
        }
    } else {
        const int trips = j->trips;
        const double most = j->round_seconds;
        unsigned ball = 0;
        for (int r = -1; r < TRIP_ROUNDS; r++) { /* r -1: untimed, thread 1 then answering */
            const double t0 = bench_now();
            int done = 0;
            while (done < (r < 0 ? WARM_TRIPS : trips)) { /* the clock read every 64 trips */
                atomic_store_explicit(&j->ball, ball + 1u, memory_order_release);
                wait_for(&j->ball, ball + 2u);
                ball += 2u;
                if (++done % 64 == 0 && bench_now() - t0 > most) break;
            }
            if (r >= 0) j->trip[r] = (bench_now() - t0) / done;
        }
        atomic_store_explicit(&j->stage, 1u, memory_order_release);
    }
    for (int r = 0; r < BLOCK_ROUNDS; r++) {
        if (t == 1) {
            if (r > 0) wait_for(&j->stage, (unsigned)(2 * r + 2));
            fill(j->block, j->words, r, 0);
            atomic_store_explicit(&j->stage, (unsigned)(2 * r + 3), memory_order_release);
            continue;
        }
        const double bytes = (double)(j->words * sizeof(uint64_t));
        const uint64_t theirs = expected(j->words, r, 0), mine = expected(j->words, r, 1);
        wait_for(&j->stage, (unsigned)(2 * r + 3));
        double t0 = bench_now();
        const uint64_t got = sum(j->block, j->words);
        j->other[r] = bytes / seconds_since(t0, j->clock) / 1e9;
        fill(j->block, j->words, r, 1);
        uint64_t got_own = 0;
        t0 = bench_now();
        for (int p = 0; p < OWN_PASSES; p++) {
            got_own += sum(j->block, j->words);
            __asm__ volatile("" ::: "memory"); /* each pass a read of the block */
        }
        j->own[r] = OWN_PASSES * bytes / seconds_since(t0, j->clock) / 1e9;
        if (got != theirs || got_own != OWN_PASSES * mine) j->wrong = 1;
        atomic_store_explicit(&j->stage, (unsigned)(2 * r + 4), memory_order_release);
    }
}

int bench_handoff_measure(bench_handoff *h, int quick)
{
    *h = (bench_handoff){0};
    handoff_job *j = xd_xmalloc_aligned(sizeof *j);
    *j = (handoff_job){.words = BLOCK_BYTES / sizeof(uint64_t),
                       .trips = quick ? TRIPS / 10 : TRIPS,
                       .round_seconds = quick ? ROUND_SECONDS / 10 : ROUND_SECONDS,
                       .clock = clock_cost()};
    atomic_init(&j->ball, 0);
    atomic_init(&j->stage, 0);
    j->block = xd_xmalloc_aligned(BLOCK_BYTES);
    xd_threads_each(2, handoff_thread, j);
    const int rc = j->alone ? -1 : j->wrong ? -2 : 0;
    if (rc == 0)
        *h = (bench_handoff){.round_trip_ns = 1e9 * bench_median(j->trip, TRIP_ROUNDS),
                             .other_gbs = bench_median(j->other, BLOCK_ROUNDS),
                             .own_gbs = bench_median(j->own, BLOCK_ROUNDS)};
    free(j->block);
    free(j);
    return rc;
}
