/* Sparse and int8 delta speed on N floats (default 100M), ns per element, AVX2 and scalar.
 * usage: bench_delta [millions of elements, default 100] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delta/sparse.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    size_t n = (argc > 1 ? (size_t)atoi(argv[1]) : 100) * 1000000;
    float *d = malloc(n * 4), *out = malloc(n * 4);
    uint64_t s = 1;
    for (size_t i = 0; i < n; i++) { /* Laplace-like delta: many tiny, few large */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        d[i] = (float)((u < 0.5 ? -1 : 1) * 1e-3 * log(1 / (1 - fabs(2 * u - 1) + 1e-12)));
    }
    memset(out, 0, n * 4);
    lb_error err;
    printf("%zu elements (%.0f MB), avx2 %s\n\n| op | threshold | kept | ratio | ns/element | GB/s in |\n|---|---|---|---|---|---|\n",
           n, n * 4 / 1e6, lb_cpu_has_avx2() ? "yes" : "no");
    float ths[] = {1e-2f, 5e-3f, 1e-3f, 0.0f};
    for (int t = 0; t < 4; t++) {
        uint32_t *idx;
        float *val;
        size_t k;
        double ratio, t0 = now();
        if (lb_compress_delta_sparse(d, n, ths[t], &idx, &val, &k, &ratio, &err)) return printf("%s\n", err.msg), 1;
        double t1 = now();
        printf("| compress_delta_sparse | %g | %.2f%% | %.2f | %.3f | %.2f |\n", ths[t], 100.0 * k / n, ratio, (t1 - t0) * 1e9 / n,
               n * 4 / 1e9 / (t1 - t0));
        t0 = now();
        lb_decompress_delta_sparse(idx, val, k, out, n, &err);
        t1 = now();
        printf("| decompress_delta_sparse | %g | | | %.3f | |\n", ths[t], (t1 - t0) * 1e9 / n);
        size_t cap = k + 8;
        uint32_t *i2 = realloc(idx, cap * 4);
        float *v2 = realloc(val, cap * 4);
        t0 = now();
        size_t k2 = lb_delta_sparse_count_scalar(d, n, ths[t]);
        lb_delta_sparse_gather_scalar(d, n, ths[t], i2, v2);
        t1 = now();
        printf("| sparse, scalar kernels | %g | %zu | | %.3f | |\n", ths[t], k2, (t1 - t0) * 1e9 / n);
        free(i2), free(v2);
    }
    int8_t *q = malloc(n);
    float *sc = malloc((n / LB_DELTA_INT8_BLOCK + 1) * 4);
    double t0 = now();
    lb_compress_delta_int8(d, n, LB_DELTA_INT8_BLOCK, q, sc, &err);
    double t1 = now();
    lb_decompress_delta_int8(q, sc, n, LB_DELTA_INT8_BLOCK, out, &err);
    double t2 = now();
    double maxe = 0;
    for (size_t i = 0; i < n; i++) maxe = fmax(maxe, fabs((double)out[i] - d[i]));
    printf("| compress_delta_int8 (block %d) | | | %.2f | %.3f | %.2f |\n", LB_DELTA_INT8_BLOCK, 4.0 / (1 + 4.0 / LB_DELTA_INT8_BLOCK),
           (t1 - t0) * 1e9 / n, n * 4 / 1e9 / (t1 - t0));
    printf("| decompress_delta_int8 | | | | %.3f | |\n", (t2 - t1) * 1e9 / n);
    t0 = now();
    lb_delta_int8_quant_scalar(d, n, LB_DELTA_INT8_BLOCK, q, sc);
    t1 = now();
    printf("| int8, scalar kernel | | | | %.3f | |\n\nint8 max |error| %.3g\n", (t1 - t0) * 1e9 / n, maxe);
    free(q), free(sc), free(d), free(out);
    return 0;
}
