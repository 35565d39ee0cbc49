/* Read bandwidth: 1 and 2 threads summing a large buffer (default 1 GiB; argv[1] = GiB),
 * median of 5 passes, GB/s (1e9 bytes/s). The generation floor is this bandwidth divided by
 * the weight bytes read per token. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/threads.h"
#include "kernels/cpu/cpu.h"

typedef struct bw_task {
    const uint64_t *buf;
    int64_t n;
    uint64_t sums[64];
} bw_task;

/* Independent integer lanes: the compiler vectorizes this, and no FP dependence chain limits
 * the load rate. Built for AVX2 too (32-byte loads), used when the CPU has it. */
#define SUM_BODY                                                        \
    uint64_t s[16] = {0};                                               \
    for (int64_t i = i0; i < i1; i += 16)                               \
        for (int j = 0; j < 16; j++) s[j] += buf[i + j];                \
    uint64_t r = 0;                                                     \
    for (int j = 0; j < 16; j++) r += s[j];                             \
    return r;

static uint64_t sum_sse2(const uint64_t *buf, int64_t i0, int64_t i1) { SUM_BODY }
#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *buf, int64_t i0, int64_t i1) { SUM_BODY }
#endif

static void sum_part(void *arg, int ith, int nth) {
    bw_task *t = arg;
    int64_t i0, i1;
    lb_split_range(t->n, 16, ith, nth, &i0, &i1);
#if defined(__x86_64__)
    if (lb_cpu_has_avx2()) {
        t->sums[ith] = sum_avx2(t->buf, i0, i1);
        return;
    }
#endif
    t->sums[ith] = sum_sse2(t->buf, i0, i1);
}

int main(int argc, char **argv) {
    double gib = argc > 1 ? atof(argv[1]) : 1.0;
    if (gib <= 0 || gib > 64) gib = 1.0;
    size_t bytes = (size_t)(gib * 1073741824.0) / 128 * 128;
    uint64_t *buf = aligned_alloc(64, bytes);
    if (!buf) {
        fprintf(stderr, "bench_bandwidth: cannot allocate %zu bytes\n", bytes);
        return 1;
    }
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i; /* fault every page in */
    printf("read bandwidth, %.2f GiB buffer, median of 5\n", gib);
    for (int nth = 1; nth <= 2; nth++) {
        lb_pool *pool = lb_pool_new(nth);
        bw_task t = {buf, (int64_t)(bytes / 8), {0}};
        double gbs[5];
        uint64_t check = 0;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = bench_now();
            lb_pool_run(pool, sum_part, &t);
            double dt = bench_now() - t0;
            gbs[rep] = bytes / dt / 1e9;
            for (int i = 0; i < nth; i++) check += t.sums[i];
        }
        double best = bench_max(gbs, 5);
        printf("  %d thread%s: %6.1f GB/s median, %6.1f best   (checksum %llx)\n", nth, nth > 1 ? "s" : " ",
               bench_median(gbs, 5), best, (unsigned long long)check);
        lb_pool_free(pool);
    }
    free(buf);
    return 0;
}
