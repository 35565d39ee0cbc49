/* Memory module costs: monitor snapshot (p50/p99 over 10,000), pressure level, and the tracked
 * allocator / arena / pool against malloc+free (ns per alloc+free pair).
 * usage: bench_mem [n_snapshots] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem/arena.h"
#include "mem/monitor.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += t[i];
    printf("| %-32s | %8.2f | %8.2f | %8.2f | %8.2f |\n", what, t[n / 2] / 1e3, t[n * 99 / 100] / 1e3, sum / n / 1e3,
           t[0] / 1e3);
}

static volatile uintptr_t g_sink; /* keeps the compiler from dropping allocations */

#define BATCH 1024
enum { R = 200 };

/* ns per alloc+free pair: BATCH allocations, then their frees, R times */
#define PAIR_BENCH(label, ALLOC, FREE)                                            \
    do {                                                                          \
        static void *ptrs[BATCH];                                                 \
        double best = 1e30;                                                       \
        for (int rep = 0; rep < 5; rep++) {                                       \
            double t0 = now_ns();                                                 \
            for (int r = 0; r < R; r++) {                                         \
                for (int i = 0; i < BATCH; i++) {                                 \
                    ptrs[i] = ALLOC;                                              \
                    g_sink += (uintptr_t)ptrs[i];                                 \
                }                                                                 \
                for (int i = BATCH - 1; i >= 0; i--) FREE;                        \
            }                                                                     \
            double dt = (now_ns() - t0) / ((double)R * BATCH);                    \
            if (dt < best) best = dt;                                             \
        }                                                                         \
        printf("| %-44s | %8.1f |\n", label, best);                               \
    } while (0)

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    if (n < 100) n = 100;
    lb_error err;
    lb_memmon *m;
    if (lb_memmon_open(&m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lb_mem_snapshot s;
    lb_memmon_snapshot(m, &s, &err);
    printf("cgroup: %s (v%d, limit %s, memory.stat read: %s), PSI: %s\n\n",
           s.cgroup_present ? lb_memmon_cgroup_path(m) : "none", s.cgroup_version,
           s.cgroup_limit == UINT64_MAX ? "none" : "set", s.cgroup_stat_present ? "yes" : "no",
           s.psi_present ? "yes" : "no");
    double *t = malloc(sizeof(double) * (size_t)n);
    if (!t) return 1;
    for (int i = 0; i < 100; i++) lb_memmon_snapshot(m, &s, &err); /* warm up */
    printf("| %-32s | p50 us   | p99 us   | mean us  | min us   |\n|---|---|---|---|---|\n", "operation");
    for (int i = 0; i < n; i++) {
        double t0 = now_ns();
        lb_memmon_snapshot(m, &s, &err);
        t[i] = now_ns() - t0;
    }
    char label[64];
    snprintf(label, sizeof label, "snapshot (x%d)", n);
    report(label, t, n);
    int nd = n / 10;
    for (int i = 0; i < nd; i++) {
        double t0 = now_ns();
        lb_memmon_snapshot_detailed(m, &s, &err);
        t[i] = now_ns() - t0;
    }
    snprintf(label, sizeof label, "snapshot_detailed (x%d)", nd);
    report(label, t, nd);
    for (int i = 0; i < nd; i++) {
        double t0 = now_ns();
        lb_memmon_poll(m, NULL, &err);
        t[i] = now_ns() - t0;
    }
    snprintf(label, sizeof label, "poll (x%d)", nd);
    report(label, t, nd);
    double t0 = now_ns();
    unsigned acc = 0;
    for (int i = 0; i < 1000000; i++) {
        s.sys_available = (uint64_t)i * 997 % s.sys_total;
        acc += (unsigned)lb_mem_pressure_level(&s);
    }
    printf("\npressure_level: %.1f ns per call (%u)\n\n", (now_ns() - t0) / 1e6, acc);
    free(t);
    lb_memmon_close(m);

    lb_mem_tracker *tr;
    lb_mem_tracker_new(0, &tr, &err);
    printf("| %-44s | ns/pair  |\n|---|---|\n", "alloc+free (batches of 1024, best of 5)");
    size_t sizes[2] = {256, 16384};
    for (int k = 0; k < 2; k++) {
        size_t sz = sizes[k];
        snprintf(label, sizeof label, "malloc/free %zu B", sz);
        PAIR_BENCH(label, malloc(sz), free(ptrs[i]));
        snprintf(label, sizeof label, "posix_memalign(64)/free %zu B", sz);
        PAIR_BENCH(label, (posix_memalign(&ptrs[i], 64, sz) ? NULL : ptrs[i]), free(ptrs[i]));
        snprintf(label, sizeof label, "lb_mem_alloc/lb_mem_free %zu B", sz);
        PAIR_BENCH(label, lb_mem_alloc(tr, sz, "bench"), lb_mem_free(tr, ptrs[i]));
        lb_blockpool *p;
        lb_blockpool_new(tr, sz, BATCH, "kv", &p, &err);
        snprintf(label, sizeof label, "lb_blockpool_alloc/lb_blockpool_free %zu B", sz);
        PAIR_BENCH(label, lb_blockpool_alloc(p), lb_blockpool_free(p, ptrs[i], NULL));
        lb_blockpool_destroy(p);
        lb_arena *a;
        lb_arena_new(tr, sz * BATCH, "scratch", &a, &err);
        snprintf(label, sizeof label, "lb_arena_alloc + reset per batch %zu B", sz);
        PAIR_BENCH(label, lb_arena_alloc(a, sz), (i == 0 ? lb_arena_reset(a, 0) : (void)0));
        lb_arena_destroy(a);
    }
    lb_mem_tracker *dbg;
    lb_mem_tracker_new(LB_MEM_TRACK_DEBUG, &dbg, &err);
    PAIR_BENCH("lb_mem_alloc/free 256 B, debug mode (LIFO)", lb_mem_alloc(dbg, 256, "bench"), lb_mem_free(dbg, ptrs[i]));
    lb_mem_tracker_free(dbg);
    lb_mem_tracker_free(tr);
    return 0;
}
