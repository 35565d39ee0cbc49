/* Q4_0 (plain and repacked into 8-row groups) / Q8_0, Q4_K / Q6_K (k a multiple of 256) and F16, for comparison, matmul kernels of every CPU level, one thread: prompt
 * batches (64 tokens, GOP/s of multiply-adds x 2) and one token (GB/s of weight bytes; the
 * weights fit in L2/L3, so this is the kernel's compute rate, not the memory's). Medians of
 * several runs; with "cpu", the fastest of up to 300 runs (2 s) in thread CPU time, which a loaded
 * machine disturbs much less (time other jobs take from this thread does not count).
 * Usage: bench_matmul_quant [rows k [cpu|wall [TYPES]]]   (default 1024 x 4096; TYPES, e.g.
 * Q4_0,Q4_0_R8: only those) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/repack.h"
#include "quant/quant.h"

#define RUNS 7
#define CPU_RUNS 300

static int g_cpu_time; /* "cpu": min of CPU_RUNS in thread CPU time */

static double thread_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double run(const lb_matmul_kernel *kern, lb_dtype t, const void *w, int64_t rows, int64_t k,
                  const float *x, int64_t n_tok, float *y) {
    double v[CPU_RUNS];
    const int n = g_cpu_time ? CPU_RUNS : RUNS;
    lb_error err;
    int i = 0;
    for (double start = bench_now(); i < n && (i < RUNS || bench_now() - start < 2); i++) {
        double t0 = g_cpu_time ? thread_now() : bench_now();
        if (lb_matmul_with(NULL, kern, t, w, rows, k, x, n_tok, y, 1, &err) != LB_OK) {
            fprintf(stderr, "matmul: %s\n", err.msg);
            exit(1);
        }
        v[i] = (g_cpu_time ? thread_now() : bench_now()) - t0;
    }
    return g_cpu_time ? bench_min(v, i) : bench_median(v, i);
}

/* name is one of the comma-separated list */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, name, n) && (p[n] == ',' || !p[n])) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int64_t rows = argc > 2 ? atoll(argv[1]) : 1024, k = argc > 2 ? atoll(argv[2]) : 4096;
    const int64_t n_tok = 64;
    g_cpu_time = argc > 3 && !strcmp(argv[3], "cpu");
    const char *only = argc > 4 ? argv[4] : NULL;
    if (rows < 1 || k < 32 || k % 32) {
        fprintf(stderr, "usage: bench_matmul_quant [rows k]  (k a multiple of 32)\n");
        return 1;
    }
    float *wf = malloc(sizeof(float) * (size_t)(rows * k)), *x = malloc(sizeof(float) * (size_t)(n_tok * k));
    float *y = malloc(sizeof(float) * (size_t)(n_tok * rows));
    if (!wf || !x || !y) return 1;
    uint32_t s = 1;
    for (int64_t i = 0; i < rows * k; i++) wf[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (int64_t i = 0; i < n_tok * k; i++) x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    /* Q4_0_R8: the Q4_0 weights repacked into 8-row groups (quant/repack.h), rows % 8 == 0 */
    static const lb_dtype types[] = {LB_Q4_0, LB_Q4_0_R8, LB_Q8_0, LB_Q4_K, LB_Q6_K, LB_F16};
    for (int ti = 0; ti < 6; ti++) {
        lb_dtype t = types[ti];
        if ((t == LB_Q4_K || t == LB_Q6_K) && k % 256) continue;
        if (only && !listed(only, lb_dtype_name(t))) continue;
        size_t rb = lb_dtype_row_size(t, k);
        uint8_t *w = malloc(rb * (size_t)rows);
        if (!w) return 1;
        for (int64_t r = 0; r < rows; r++)
            if (t == LB_Q4_0 || t == LB_Q4_0_R8) lb_quantize_row_q4_0_ref(wf + r * k, w + r * rb, k, NULL);
            else if (t == LB_Q8_0) lb_quantize_row_q8_0_ref(wf + r * k, w + r * rb, k, NULL);
            else if (t == LB_Q4_K) lb_quantize_row_q4_K_ref(wf + r * k, w + r * rb, k, NULL);
            else if (t == LB_Q6_K) lb_quantize_row_q6_K_ref(wf + r * k, w + r * rb, k, NULL);
            else
                for (int64_t i = 0; i < k; i++) {
                    uint16_t h = lb_f32_to_fp16(wf[r * k + i]);
                    memcpy(w + r * rb + 2 * i, &h, 2);
                }
        if (t == LB_Q4_0_R8) {
            if (rows % 8) {
                free(w);
                continue;
            }
            uint8_t *plain = w;
            if (!(w = malloc(rb * (size_t)rows))) return 1;
            lb_repack_q4_0_x8(plain, w, rows, k);
            free(plain);
        }
        for (int level = 0; level < LB_CPU_LEVEL_COUNT; level++) {
            const lb_matmul_kernel *kern = lb_matmul_kernel_at(t, level);
            if (!kern || (level > 0 && kern == lb_matmul_kernel_at(t, level - 1))) continue;
            double tp = run(kern, t, w, rows, k, x, n_tok, y), tg = run(kern, t, w, rows, k, x, 1, y);
            printf("%-5s %-7s %lld x %lld: %d tokens %7.1f GOP/s   1 token %6.1f GB/s\n", lb_dtype_name(t),
                   lb_cpu_level_name((lb_cpu_level)level), (long long)rows, (long long)k, (int)n_tok,
                   2e-9 * (double)(rows * k * n_tok) / tp, 1e-9 * (double)(rb * (size_t)rows) / tg);
        }
        free(w);
    }
    free(wf), free(x), free(y);
    return 0;
}
