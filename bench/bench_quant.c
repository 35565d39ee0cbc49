/* Quantization speed, one thread: quantize throughput (MB/s of F32 input; Q4_K also from F16
 * input, conversion included) and dot-product throughput (GB/s of weight bytes read), scalar
 * and AVX2. Usage: bench_quant [n_elements_millions] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/dtype.h"
#include "quant/quant.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t g_rng = 12345;
static float rnd_gauss(void) {
    double u[2];
    for (int k = 0; k < 2; k++) {
        g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
        u[k] = ((g_rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static const lb_dtype k_types[] = {LB_Q8_0, LB_Q4_0, LB_Q4_1, LB_Q5_0, LB_Q5_1, LB_Q2_K, LB_Q3_K,
                                   LB_Q4_K, LB_Q5_K, LB_Q6_K, LB_TQ1_0, LB_TQ2_0};

int main(int argc, char **argv) {
    const int cols = 4096;
    double mil = argc > 1 ? atof(argv[1]) : 2;
    int rows = (int)(mil * 1e6 / cols);
    if (rows < 1) rows = 1;
    size_t n = (size_t)rows * cols;
    float *x = malloc(n * sizeof *x), *act = malloc(cols * sizeof *act);
    uint16_t *xh = malloc(n * sizeof *xh);
    void *q = malloc(n * 2), *aq = malloc(cols * 2);
    for (size_t i = 0; i < n; i++) {
        x[i] = rnd_gauss() * 0.02f;
        xh[i] = lb_f32_to_fp16(x[i]);
    }
    for (int i = 0; i < cols; i++) act[i] = rnd_gauss();
    printf("%d x %d weights, AVX2 %s\n\n", rows, cols, lb_cpu_has_avx2() ? "yes" : "no");
    printf("| type | bpw | quantize MB/s (F32 in) | dot scalar GB/s | dot AVX2 GB/s |\n");
    printf("|---|---|---|---|---|\n");
    for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++) {
        lb_dtype t = k_types[k];
        const lb_quant_ops *ops = lb_quant_get_ops(t);
        size_t row_bytes = lb_dtype_row_size(t, cols);
        double tq = 1e30, t0; /* best of 3: the machine is shared */
        for (int r = 0; r < 3; r++) {
            t0 = now();
            lb_quantize(t, x, q, rows, cols, NULL);
            double d = now() - t0;
            tq = d < tq ? d : tq;
        }

        ops->quantize_act(act, aq, cols);
        double gbs[2] = {0, 0};
        volatile float sink = 0;
        for (int v = 0; v < 2; v++) {
            lb_vec_dot_fn f = v == 0 ? ops->vec_dot_scalar : ops->vec_dot;
            if (v == 1 && !lb_cpu_has_avx2()) break;
            for (int r = 0; r < 3; r++) {
                t0 = now();
                for (int i = 0; i < rows; i++) sink += f(cols, (const uint8_t *)q + (size_t)i * row_bytes, aq);
                double g = (double)rows * row_bytes / (now() - t0) / 1e9;
                gbs[v] = g > gbs[v] ? g : gbs[v];
            }
        }
        (void)sink;
        printf("| %s | %.4g | %.1f | %.2f | %.2f |\n", lb_dtype_name(t), 8.0 * row_bytes / cols,
               n * 4 / tq / 1e6, gbs[0], gbs[1]);
    }

    /* the requirement: F16 -> Q4_K, conversion included, MB/s of F16 input */
    float *row = malloc(cols * sizeof *row);
    double dt = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) row[j] = lb_fp16_to_f32(xh[(size_t)i * cols + j]);
            lb_quantize(LB_Q4_K, row, (uint8_t *)q + (size_t)i * lb_dtype_row_size(LB_Q4_K, cols), 1, cols, NULL);
        }
        double d = now() - t0;
        dt = d < dt ? d : dt;
    }
    printf("\nQ4_K from F16: %.1f MB/s of F16 input per thread (target > 100)\n", n * 2 / dt / 1e6);

    double t0 = now();
    for (int r = 0; r < 200; r++) lb_quantize_row_q8_K(act, aq, cols);
    double a1 = now() - t0;
    t0 = now();
    for (int r = 0; r < 200; r++) lb_quantize_row_q8_0(act, aq, cols);
    double a2 = now() - t0;
    printf("activation quantize: Q8_K %.0f MB/s, Q8_0 %.0f MB/s of F32\n", 200.0 * cols * 4 / a1 / 1e6,
           200.0 * cols * 4 / a2 / 1e6);
    free(row);
    free(x);
    free(xh);
    free(q);
    free(act);
    free(aq);
    return 0;
}
