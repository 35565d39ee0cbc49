/* Matmul kernels: matrix-vector GB/s of weight bytes (F32/F16/BF16, 1 and 2 threads),
 * matrix-matrix GFLOP/s for 64 tokens, and the cost of an empty lb_pool_run.
 * Matrix-vector cycles through enough copies of the weights (>= 256 MiB) that they come from
 * memory, not the last-level cache, as in generation. Medians of several runs.
 * Usage: bench_matmul [quick]   ("quick": one shape, fewer runs) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/dtype.h"
#include "core/threads.h"
#include "kernels/cpu/matmul.h"

static void empty_fn(void *arg, int ith, int nth) {
    (void)arg; (void)ith; (void)nth;
}

static void fill(lb_dtype t, uint8_t *dst, size_t n) {
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float v = (float)((int)(s >> 9) - (1 << 22)) / (float)(1 << 22);
        if (t == LB_F32) memcpy(dst + 4 * i, &v, 4);
        else {
            uint16_t h = t == LB_F16 ? lb_f32_to_fp16(v) : lb_f32_to_bf16(v);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    lb_pool *pool = lb_pool_new(2);
    lb_error err;
    if (!pool) return 1;

    /* Pool overhead. */
    for (int nth = 1; nth <= 2; nth++) {
        double us[7];
        const int runs = 200000;
        for (int rep = 0; rep < 7; rep++) {
            double t0 = bench_now();
            for (int i = 0; i < runs; i++) lb_pool_run_n(pool, empty_fn, NULL, nth);
            us[rep] = (bench_now() - t0) / runs * 1e6;
        }
        double best = bench_min(us, 7);
        printf("empty lb_pool_run, %d thread%s: %.3f us median, %.3f best (7 x %d runs)\n", nth, nth > 1 ? "s" : "",
               bench_median(us, 7), best, runs);
    }

    /* Tiny matrix-vector products (stories260K: dim 64, hidden 172, vocab 512), per call. */
    {
        static const int64_t tiny[][2] = {{64, 64}, {172, 64}, {64, 172}, {512, 64}};
        printf("\ntiny matrix-vector, F32, per lb_matmul call (auto threads), median of 7\n");
        for (int s = 0; s < 4; s++) {
            int64_t rows = tiny[s][0], k = tiny[s][1];
            float *w = malloc((size_t)(rows * k) * 4), *x = malloc((size_t)k * 4), *y = malloc((size_t)rows * 4);
            if (!w || !x || !y) return 1;
            fill(LB_F32, (uint8_t *)w, (size_t)(rows * k));
            for (int64_t i = 0; i < k; i++) x[i] = 0.01f * (float)i;
            lb_tensor t = {"tiny", LB_F32, 2, {k, rows, 1, 1}, w, (size_t)(rows * k) * 4};
            double us[7];
            const int runs = 20000;
            for (int rep = 0; rep < 7; rep++) {
                double t0 = bench_now();
                for (int i = 0; i < runs; i++) lb_matmul(pool, &t, x, 1, y, &err);
                us[rep] = (bench_now() - t0) / runs * 1e6;
            }
            double best = bench_min(us, 7);
            printf("  %4lld x %-4lld %8.3f us median, %8.3f best\n", (long long)rows, (long long)k, bench_median(us, 7), best);
            free(w); free(x); free(y);
        }
    }

    static const int64_t shapes[][2] = {{2048, 2048}, {2048, 8192}, {4096, 11008}}; /* rows x k */
    static const lb_dtype types[] = {LB_F32, LB_F16, LB_BF16};
    int n_shapes = quick ? 1 : 3, reps = quick ? 5 : 9;
    printf("\nmatrix-vector (1 token), GB/s of weight bytes, median (best) of %d\n", reps);
    printf("%-6s %-12s %16s %16s\n", "type", "rows x k", "1 thread", "2 threads");
    for (int s = 0; s < n_shapes; s++)
        for (int ti = 0; ti < 3; ti++) {
            lb_dtype t = types[ti];
            int64_t rows = shapes[s][0], k = shapes[s][1];
            size_t wbytes = lb_dtype_row_size(t, k) * (size_t)rows;
            int copies = (int)((256u << 20) / wbytes) + 1;
            uint8_t *w = malloc(wbytes * copies + 1);
            float *x = malloc((size_t)k * 4), *y = malloc((size_t)rows * 4);
            if (!w || !x || !y) return 1;
            for (int c = 0; c < copies; c++) fill(t, w + 1 + c * wbytes, (size_t)(rows * k)); /* unaligned by 1 */
            for (int64_t i = 0; i < k; i++) x[i] = (float)(i % 7) * 0.1f;
            double res[2], top[2];
            for (int nth = 1; nth <= 2; nth++) {
                double gbs[15];
                for (int rep = 0; rep < reps; rep++) {
                    double t0 = bench_now();
                    for (int c = 0; c < copies; c++)
                        lb_matmul_with(pool, lb_matmul_kernel_get(t), t, w + 1 + c * wbytes, rows, k, x, 1, y, nth, &err);
                    gbs[rep] = (double)wbytes * copies / (bench_now() - t0) / 1e9;
                }
                top[nth - 1] = bench_max(gbs, reps);
                res[nth - 1] = bench_median(gbs, reps);
            }
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)k);
            printf("%-6s %-12s %8.1f (%5.1f) %8.1f (%5.1f)\n", lb_dtype_name(t), shape, res[0], top[0], res[1], top[1]);
            free(w); free(x); free(y);
        }

    const int64_t n_tok = 64;
    printf("\nmatrix-matrix (%lld tokens), GFLOP/s, 2 threads, median (best) of %d\n", (long long)n_tok, quick ? 3 : 5);
    printf("%-6s %-12s %16s\n", "type", "rows x k", "GFLOP/s");
    for (int s = 0; s < n_shapes; s++)
        for (int ti = 0; ti < 3; ti++) {
            lb_dtype t = types[ti];
            int64_t rows = shapes[s][0], k = shapes[s][1];
            size_t wbytes = lb_dtype_row_size(t, k) * (size_t)rows;
            uint8_t *w = malloc(wbytes + 1);
            float *x = malloc((size_t)(k * n_tok) * 4), *y = malloc((size_t)(rows * n_tok) * 4);
            if (!w || !x || !y) return 1;
            fill(t, w + 1, (size_t)(rows * k));
            for (int64_t i = 0; i < k * n_tok; i++) x[i] = (float)(i % 13) * 0.05f;
            double gf[5];
            int r = quick ? 3 : 5;
            for (int rep = 0; rep < r; rep++) {
                double t0 = bench_now();
                lb_matmul_with(pool, lb_matmul_kernel_get(t), t, w + 1, rows, k, x, n_tok, y, 2, &err);
                gf[rep] = 2.0 * rows * k * n_tok / (bench_now() - t0) / 1e9;
            }
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)k);
            double best = bench_max(gf, r);
            printf("%-6s %-12s %8.1f (%5.1f)\n", lb_dtype_name(t), shape, bench_median(gf, r), best);
            free(w); free(x); free(y);
        }
    lb_pool_free(pool);
    return 0;
}
