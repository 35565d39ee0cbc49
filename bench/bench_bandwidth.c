/* Read bandwidth: 1 and 2 threads summing a large buffer (default 1 GiB; argv[1] = GiB),
 * median of 5 passes, GB/s (1e9 bytes/s). The generation floor is this bandwidth divided by
 * the weight bytes read per token. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/threads.h"

typedef struct bw_task {
    const uint64_t *buf;
    int64_t n;
    uint64_t sums[64];
} bw_task;

static void sum_part(void *arg, int ith, int nth) {
    bw_task *t = arg;
    int64_t i0, i1;
    lb_split_range(t->n, 8, ith, nth, &i0, &i1);
    /* Independent integer lanes: the compiler vectorizes this, and no FP dependence chain
     * limits the load rate. */
    uint64_t s[8] = {0};
    for (int64_t i = i0; i < i1; i += 8)
        for (int j = 0; j < 8; j++) s[j] += t->buf[i + j];
    t->sums[ith] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

int main(int argc, char **argv) {
    double gib = argc > 1 ? atof(argv[1]) : 1.0;
    if (gib <= 0 || gib > 64) gib = 1.0;
    size_t bytes = (size_t)(gib * 1073741824.0) / 64 * 64;
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
        printf("  %d thread%s: %6.1f GB/s   (checksum %llx)\n", nth, nth > 1 ? "s" : " ", bench_median(gbs, 5),
               (unsigned long long)check);
        lb_pool_free(pool);
    }
    free(buf);
    return 0;
}
