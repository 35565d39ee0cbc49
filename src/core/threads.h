/* Persistent thread pool for the compute kernels.
 *
 * lb_pool_run(p, fn, arg) runs fn(arg, ith, nth) on every thread of the pool (the caller is
 * thread 0) and returns when all are done. Workers spin briefly on a generation counter after
 * each job, so back-to-back runs (hundreds per token for tiny models) cost about a microsecond,
 * then sleep on a futex so idle pools do not burn CPU between tokens.
 *
 * A pool is driven by one caller thread at a time (runs are not re-entrant). */
#ifndef LB_CORE_THREADS_H
#define LB_CORE_THREADS_H
#include <stddef.h>
#include <stdint.h>

typedef struct lb_pool lb_pool;
typedef void (*lb_pool_fn)(void *arg, int ith, int nth);

/* n_threads: total threads including the caller; 0 = number of online CPUs.
 * Returns NULL on allocation or thread-creation failure. */
/* Monotonic seconds, for timings the engine reports (prompt / generation time). */
double lb_clock_seconds(void);

/* The threads a pool made with n_threads has: all online CPUs for n_threads <= 0, capped. */
int lb_pool_threads_for(int n_threads);
lb_pool *lb_pool_new(int n_threads);
void lb_pool_free(lb_pool *p);
/* Total threads (>= 1). A NULL pool has size 1. */
int lb_pool_size(const lb_pool *p);

/* Runs fn on all threads. A NULL pool or a pool of 1 runs fn(arg, 0, 1) inline. */
void lb_pool_run(lb_pool *p, lb_pool_fn fn, void *arg);
/* Runs fn on the first nth threads only (1 <= nth; clamped to the pool size). nth == 1 runs
 * inline with no synchronization at all: use it for work too small to share. */
void lb_pool_run_n(lb_pool *p, lb_pool_fn fn, void *arg, int nth);

/* How long idle workers spin before sleeping (microseconds; default 200). */
void lb_pool_set_spin_us(lb_pool *p, int us);

/* Scratch memory owned by the pool, 64-byte aligned, valid until the next call that asks for
 * more or lb_pool_free. Grows, never shrinks. Used by kernels within one call (lb_matmul keeps
 * its prepared activations there): any kernel call may reuse or move it, so never hold the
 * pointer across kernel calls. Caller thread only. Returns NULL on allocation failure. */
void *lb_pool_scratch(lb_pool *p, size_t bytes);

/* Splits [0, n) into nth contiguous chunks whose boundaries are multiples of align (except the
 * end n); thread ith gets [*i0, *i1), possibly empty. */
static inline void lb_split_range(int64_t n, int64_t align, int ith, int nth, int64_t *i0, int64_t *i1) {
    if (align < 1) align = 1;
    int64_t blocks = (n + align - 1) / align;
    int64_t per = blocks / nth, extra = blocks % nth;
    int64_t b0 = ith * per + (ith < extra ? ith : extra);
    int64_t b1 = b0 + per + (ith < extra ? 1 : 0);
    int64_t s = b0 * align, e = b1 * align;
    *i0 = s < n ? s : n;
    *i1 = e < n ? e : n;
}

#endif
