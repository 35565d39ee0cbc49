/* Activations quantized once per batch (issue 10): the products of one layer that read the same
 * input (q/k/v: 2048, 512, 512 rows; gate/up: 8192, 8192 rows; k 2048, Llama 3.2 1B's shapes),
 * one thread, as separate lb_matmul_with calls (each prepares x) and as one lb_matmul_shared call
 * (x prepared once per format), for 64 tokens and 1 token. Each value is the fastest of the runs
 * in thread CPU time (time other jobs take from this thread does not count), the two ways
 * alternating run by run, so the ratio holds on a loaded machine.
 * Usage: bench_act_shared [RUNS]   (default 15) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"
#include "quant/repack.h"

enum { K = 2048, MAXJ = 3 };

static double thread_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const lb_error *e) {
    fprintf(stderr, "bench_act_shared: %s\n", e->msg);
    exit(1);
}

/* rows x K weights of type t (Q4_0_R8: Q4_0 repacked, as a Q4_0 model is at load) */
static uint8_t *weights(lb_dtype t, int64_t rows, uint32_t *s) {
    lb_dtype q = t == LB_Q4_0_R8 ? LB_Q4_0 : t;
    float *wf = malloc(sizeof(float) * (size_t)rows * K);
    size_t bytes = lb_dtype_row_size(q, K) * (size_t)rows;
    uint8_t *w = malloc(bytes), *r = malloc(bytes);
    if (!wf || !w || !r) exit(1);
    for (int64_t i = 0; i < rows * K; i++) wf[i] = (float)((*s = *s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    if (lb_quantize(q, wf, w, rows, K, NULL) != bytes) exit(1);
    free(wf);
    if (t != LB_Q4_0_R8) return free(r), w;
    lb_repack_q4_0_x8(w, r, rows, K);
    free(w);
    return r;
}

/* one group: n products of the same x; prints separate / shared times and their ratio */
static void group(const char *name, int n, const lb_dtype *types, const int64_t *rows, int runs, uint32_t *s) {
    static float x[64 * K];
    for (int i = 0; i < 64 * K; i++) x[i] = (float)((*s = *s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    lb_matmul_job jobs[MAXJ];
    for (int j = 0; j < n; j++) {
        float *y = malloc(sizeof(float) * 64 * (size_t)rows[j]);
        if (!y) exit(1);
        jobs[j] = (lb_matmul_job){lb_matmul_kernel_get(types[j]), types[j], weights(types[j], rows[j], s), rows[j], y};
    }
    static const int ntoks[] = {64, 1};
    for (int c = 0; c < 2; c++) {
        int nt = ntoks[c];
        double best[2] = {1e30, 1e30};
        lb_error err;
        for (int r = 0; r < runs; r++)
            for (int way = 0; way < 2; way++) {
                int shared = (r + way) % 2; /* the order swaps every run */
                double t0 = thread_now();
                if (shared) {
                    if (lb_matmul_shared(NULL, jobs, n, K, x, nt, NULL, &err)) die(&err);
                } else {
                    for (int j = 0; j < n; j++)
                        if (lb_matmul_with(NULL, jobs[j].kern, jobs[j].type, jobs[j].w, jobs[j].rows, K, x, nt,
                                           jobs[j].y, 1, &err))
                            die(&err);
                }
                double dt = thread_now() - t0;
                if (dt < best[shared]) best[shared] = dt;
            }
        printf("%-22s %2d token%s  separate %8.3f ms  shared %8.3f ms  shared/separate %.4f\n", name, nt,
               nt > 1 ? "s" : " ", 1e3 * best[0], 1e3 * best[1], best[1] / best[0]);
    }
    for (int j = 0; j < n; j++) free((void *)jobs[j].w), free(jobs[j].y);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 15;
    if (runs < 1) {
        fprintf(stderr, "usage: bench_act_shared [RUNS]\n");
        return 1;
    }
    uint32_t s = 1;
    const int64_t qkv[] = {2048, 512, 512}, gu[] = {8192, 8192};
    const lb_dtype q8[] = {LB_Q8_0, LB_Q8_0, LB_Q8_0}, q4[] = {LB_Q4_0_R8, LB_Q4_0_R8, LB_Q4_0_R8};
    const lb_dtype km[] = {LB_Q4_K, LB_Q4_K, LB_Q6_K}, k4[] = {LB_Q4_K, LB_Q4_K};
    printf("CPU level %s, one thread, k %d, fastest of %d runs (thread CPU time)\n", lb_cpu_level_name(lb_cpu_level_get()),
           K, runs);
    group("Q8_0 q/k/v", 3, q8, qkv, runs, &s);
    group("Q8_0 gate/up", 2, q8, gu, runs, &s);
    group("Q4_0_R8 q/k/v", 3, q4, qkv, runs, &s);
    group("Q4_0_R8 gate/up", 2, q4, gu, runs, &s);
    group("Q4_K_M q/k/v (K,K,6K)", 3, km, qkv, runs, &s);
    group("Q4_K gate/up", 2, k4, gu, runs, &s);
    return 0;
}
