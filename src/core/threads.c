/* Persistent thread pool: per-worker "go" words (so a run on fewer threads never touches the
 * others), a shared pending counter, spin-then-futex waiting on both sides.
 *
 * Each worker's share of a job is handed over through its state word: the caller posts it,
 * the worker claims it (POSTED -> RUNNING). A worker that has not claimed its share a while
 * after posting (descheduled on a busy machine, or still waking from the futex) has it
 * stolen (POSTED -> STOLEN) and run by the caller, so a run never waits for a thread that is
 * not running. fn(arg, ith, nth) is still called exactly once for every ith. */
#include "core/threads.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LB_POOL_MAX_THREADS 512
#define LB_POOL_DEFAULT_SPIN_US 500
#define LB_POOL_PURE_SPIN_US 20
#define LB_POOL_STEAL_US 20 /* a share unclaimed this long after posting is run by the caller */

enum { SHARE_IDLE, SHARE_POSTED, SHARE_RUNNING, SHARE_STOLEN };

typedef struct lb_worker {
    _Alignas(64) _Atomic uint32_t go; /* bumped by the caller for each job of this worker */
    _Atomic int sleeping;             /* 1 while the worker may be in futex_wait on go */
    _Atomic int share;                /* SHARE_*: who runs this worker's share of the job */
    int ith;
    lb_pool *pool;
    pthread_t thread;
} lb_worker;

struct lb_pool {
    int n;
    _Atomic int spin_us; /* read by spinning workers */
    int stop;
    /* The current job: written by the caller before the go bumps, read by its workers after. */
    lb_pool_fn fn;
    void *arg;
    int nth;
    _Alignas(64) _Atomic uint32_t pending;  /* workers of the current job not yet done */
    _Atomic int caller_sleeping;
    _Alignas(64) lb_worker *workers;   /* workers[1..n-1]; index 0 unused (the caller) */
    void *scratch;
    size_t scratch_cap;
};

static void futex_wait(void *addr, int val) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake(void *addr, int n) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double lb_clock_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Waits until *word != val, spinning for at most spin_us; 1 if it changed. After a short pure
 * spin it yields between polls: with more threads than free cores (other processes, or a pool
 * larger than the machine) the thread we wait for may need our core. */
static int spin_until_changed(_Atomic uint32_t *word, uint32_t val, int spin_us) {
    int64_t start = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != val) return 1;
        cpu_relax();
        if ((i & 63) == 0) {
            int64_t t = now_us();
            if (!start) start = t;
            if (t - start >= spin_us) return 0;
            if (t - start >= LB_POOL_PURE_SPIN_US) sched_yield();
        }
    }
}

static void *worker_main(void *arg) {
    lb_worker *w = arg;
    lb_pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        if (!spin_until_changed(&w->go, seen, atomic_load_explicit(&p->spin_us, memory_order_relaxed))) {
            /* Dekker pairing with the caller: it bumps go then reads sleeping; we set sleeping
             * then re-read go inside futex_wait, so one of us sees the other. */
            atomic_store(&w->sleeping, 1);
            while (atomic_load(&w->go) == seen) futex_wait((void *)&w->go, (int)seen);
            atomic_store(&w->sleeping, 0);
        }
        seen = atomic_load_explicit(&w->go, memory_order_acquire);
        if (p->stop) break;
        /* go is only a wake-up hint; the share word decides. A stolen share (or a second
         * wake-up for a job already done) is skipped without touching the job. */
        int posted = SHARE_POSTED;
        if (!atomic_compare_exchange_strong(&w->share, &posted, SHARE_RUNNING)) continue;
        p->fn(p->arg, w->ith, p->nth);
        atomic_store(&w->share, SHARE_IDLE);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping))
            futex_wake((void *)&p->pending, 1);
    }
    return NULL;
}

/* Runs, on the caller, every share of the job that no worker has claimed yet. */
static void steal_unclaimed(lb_pool *p, int nth) {
    for (int i = 1; i < nth; i++) {
        int posted = SHARE_POSTED;
        if (atomic_compare_exchange_strong(&p->workers[i].share, &posted, SHARE_STOLEN)) {
            p->fn(p->arg, i, nth);
            atomic_fetch_sub(&p->pending, 1);
        }
    }
}

static void wait_workers(lb_pool *p, int nth, int64_t posted_at) {
    int spin_us = atomic_load_explicit(&p->spin_us, memory_order_relaxed);
    int stole = 0;
    int64_t start = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
        cpu_relax();
        if ((i & 63) == 0) {
            int64_t t = now_us();
            if (!start) start = t;
            if (!stole && (t - posted_at >= LB_POOL_STEAL_US || t - start >= spin_us)) {
                /* Shares still unclaimed now belong to threads that are not running. */
                steal_unclaimed(p, nth);
                stole = 1;
                continue;
            }
            if (t - start >= spin_us) break;
            if (t - start >= LB_POOL_PURE_SPIN_US) sched_yield();
        }
    }
    /* Only running shares are left: sleep until the last one finishes. */
    atomic_store(&p->caller_sleeping, 1);
    uint32_t v;
    while ((v = atomic_load(&p->pending)) != 0) futex_wait((void *)&p->pending, (int)v);
    atomic_store(&p->caller_sleeping, 0);
}

static void wake_workers(lb_pool *p, int nth) {
    for (int i = 1; i < nth; i++) {
        lb_worker *w = &p->workers[i];
        atomic_fetch_add(&w->go, 1);
        if (atomic_load(&w->sleeping)) futex_wake((void *)&w->go, 1);
    }
}

int lb_pool_threads_for(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    return n_threads > LB_POOL_MAX_THREADS ? LB_POOL_MAX_THREADS : n_threads;
}

lb_pool *lb_pool_new(int n_threads) {
    n_threads = lb_pool_threads_for(n_threads);
    lb_pool *p = aligned_alloc(64, (sizeof *p + 63) / 64 * 64);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->n = 1;
    p->spin_us = LB_POOL_DEFAULT_SPIN_US;
    if (n_threads == 1) return p;
    size_t wbytes = ((size_t)n_threads * sizeof(lb_worker) + 63) / 64 * 64;
    p->workers = aligned_alloc(64, wbytes);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    memset(p->workers, 0, wbytes);
    for (int i = 1; i < n_threads; i++) {
        lb_worker *w = &p->workers[i];
        w->ith = i;
        w->pool = p;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            lb_pool_free(p); /* frees the p->n - 1 workers started so far */
            return NULL;
        }
        p->n = i + 1;
    }
    return p;
}

void lb_pool_free(lb_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        p->stop = 1;
        wake_workers(p, p->n);
        for (int i = 1; i < p->n; i++) pthread_join(p->workers[i].thread, NULL);
    }
    free(p->workers);
    free(p->scratch);
    free(p);
}

int lb_pool_size(const lb_pool *p) { return p ? p->n : 1; }

void lb_pool_set_spin_us(lb_pool *p, int us) {
    if (p) atomic_store_explicit(&p->spin_us, us < 0 ? 0 : us, memory_order_relaxed);
}

void lb_pool_run_n(lb_pool *p, lb_pool_fn fn, void *arg, int nth) {
    if (!p || nth > p->n) nth = lb_pool_size(p);
    if (nth <= 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->nth = nth;
    atomic_store_explicit(&p->pending, (uint32_t)(nth - 1), memory_order_relaxed);
    /* Release: a worker that claims its share through an earlier wake-up still sees this job. */
    for (int i = 1; i < nth; i++) atomic_store_explicit(&p->workers[i].share, SHARE_POSTED, memory_order_release);
    int64_t posted_at = now_us();
    wake_workers(p, nth); /* seq_cst bumps publish the job fields and shares above */
    fn(arg, 0, nth);
    wait_workers(p, nth, posted_at);
}

void lb_pool_run(lb_pool *p, lb_pool_fn fn, void *arg) { lb_pool_run_n(p, fn, arg, lb_pool_size(p)); }

void *lb_pool_scratch(lb_pool *p, size_t bytes) {
    if (!p) return NULL;
    if (bytes <= p->scratch_cap) return p->scratch;
    if (bytes > SIZE_MAX - 64) return NULL;
    size_t cap = (bytes + 63) / 64 * 64;
    void *s = aligned_alloc(64, cap);
    if (!s) return NULL;
    free(p->scratch);
    p->scratch = s;
    p->scratch_cap = cap;
    return s;
}
