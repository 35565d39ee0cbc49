/* Prompt-batch matmul on Q4_0 and Q8_0 weights: every (row, token) value of one lb_matmul over
 * n_tok tokens must match lb_matmul of that token alone (the plain per-token dot product) bit
 * for bit, for batch sizes around the 4-token grouping and several row lengths.
 * Then the kernel of every CPU level (AVX2, AVX-512 VNNI) against the scalar twin, on sizes
 * around its register tiles and cache blocks (odd block counts, several k chunks, more tokens
 * than one token block). Q4_K and Q6_K the same, their AVX-512 tiles bit-identical to the scalar twin. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

static uint64_t g_rng = 0x2545F4914F6CDD1DULL;
static float rnd(void) { return check_rnd_pm1(&g_rng); }

static void quantize_rows(lb_dtype type, const float *wf, uint8_t *w, int64_t rows, int64_t k) {
    size_t rb = lb_dtype_row_size(type, k);
    for (int64_t r = 0; r < rows; r++) {
        if (type == LB_Q4_0) lb_quantize_row_q4_0_ref(wf + r * k, w + r * rb, k, NULL);
        else if (type == LB_Q4_K) lb_quantize_row_q4_K_ref(wf + r * k, w + r * rb, k, NULL);
        else if (type == LB_Q6_K) lb_quantize_row_q6_K_ref(wf + r * k, w + r * rb, k, NULL);
        else lb_quantize_row_q8_0_ref(wf + r * k, w + r * rb, k, NULL);
    }
}

static const char *tname(lb_dtype t) { return lb_dtype_name(t); }

static void check_case(lb_pool *pool, lb_dtype type, int64_t k, int64_t n_tok) {
    const int64_t rows = 13; /* not a multiple of the row alignment */
    size_t rb = lb_dtype_row_size(type, k);
    float *wf = malloc(sizeof(float) * (size_t)(rows * k));
    float *x = malloc(sizeof(float) * (size_t)(n_tok * k));
    float *y = malloc(sizeof(float) * (size_t)(n_tok * rows));
    float *y1 = malloc(sizeof(float) * (size_t)rows);
    uint8_t *w = malloc(rb * (size_t)rows);
    for (int64_t i = 0; i < rows * k; i++) wf[i] = rnd();
    for (int64_t i = 0; i < n_tok * k; i++) x[i] = rnd() * (1 + (float)(i % 7));
    quantize_rows(type, wf, w, rows, k);
    lb_error err;
    CHECK(lb_matmul_raw(pool, type, w, rows, k, x, n_tok, y, &err) == LB_OK, "batch matmul: %s", err.msg);
    /* every level's kernel of these four types sums in the same order for any batch:
     * bit-identical */
    const int exact = 1;
    int bad = 0;
    double worst = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        CHECK(lb_matmul_raw(pool, type, w, rows, k, x + t * k, 1, y1, &err) == LB_OK, "single: %s", err.msg);
        for (int64_t r = 0; r < rows; r++) {
            /* the summation-order error scales with sum |w x|, not with the (cancelling) result */
            double mag = 0;
            for (int64_t i = 0; i < k; i++) mag += fabs((double)wf[r * k + i] * x[t * k + i]);
            double e = fabs((double)y[t * rows + r] - y1[r]) / (mag + 1e-30);
            if (e > worst) worst = e;
            bad += !(e <= 1e-5) || !isfinite(y[t * rows + r]) || (exact && y[t * rows + r] != y1[r]);
        }
    }
    CHECK(bad == 0, "%s k=%lld n_tok=%lld: batch equals per-token (worst rel %.2g)",
          tname(type), (long long)k, (long long)n_tok, worst);
    free(wf), free(x), free(y), free(y1), free(w);
}

/* Quantized weights (13 or 37 rows: not multiples of the tiles) and float activations. */
static uint8_t *make_weights(lb_dtype type, int64_t rows, int64_t k, float *wf) {
    size_t rb = lb_dtype_row_size(type, k);
    uint8_t *w = malloc(rb * (size_t)rows);
    for (int64_t i = 0; i < rows * k; i++) wf[i] = rnd();
    quantize_rows(type, wf, w, rows, k);
    return w;
}

static void check_level(lb_pool *pool, lb_dtype type, int level, int64_t rows, int64_t k, int64_t n_tok) {
    const lb_matmul_kernel *kl = lb_matmul_kernel_at(type, level), *ks = lb_matmul_kernel_at(type, LB_CPU_SCALAR);
    if (!kl) return; /* level above this CPU's (or LOWBIT_CPU's) */
    float *wf = malloc(sizeof(float) * (size_t)(rows * k));
    float *x = malloc(sizeof(float) * (size_t)(n_tok * k));
    float *y = malloc(sizeof(float) * (size_t)(n_tok * rows)), *ys = malloc(sizeof(float) * (size_t)(n_tok * rows));
    uint8_t *w = make_weights(type, rows, k, wf);
    for (int64_t i = 0; i < n_tok * k; i++) x[i] = rnd() * (1 + (float)(i % 5));
    lb_error err;
    CHECK(lb_matmul_with(pool, kl, type, w, rows, k, x, n_tok, y, 0, &err) == LB_OK, "level %d: %s", level, err.msg);
    CHECK(lb_matmul_with(pool, ks, type, w, rows, k, x, n_tok, ys, 1, &err) == LB_OK, "scalar: %s", err.msg);
    /* the Q4_K tile computes the scalar twin's integers and float expression: the same bits */
    int exact = (type == LB_Q4_K || type == LB_Q6_K) && level == LB_CPU_AVX512 && kl != lb_matmul_kernel_at(type, LB_CPU_AVX2);
    int bad = 0, differ = 0;
    double worst = 0;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < rows; r++) {
            double mag = 0; /* summation-order error scales with sum |w x| */
            for (int64_t i = 0; i < k; i++) mag += fabs((double)wf[r * k + i] * x[t * k + i]);
            double e = fabs((double)y[t * rows + r] - ys[t * rows + r]) / (mag + 1e-30);
            if (e > worst) worst = e;
            bad += !(e <= 1e-6) || !isfinite(y[t * rows + r]);
            differ += y[t * rows + r] != ys[t * rows + r];
        }
    CHECK(!exact || differ == 0, "%s %s rows=%lld k=%lld n_tok=%lld: bit-identical to scalar (%d differ)", tname(type),
          lb_cpu_level_name((lb_cpu_level)level), (long long)rows, (long long)k, (long long)n_tok, differ);
    CHECK(bad == 0, "%s %s rows=%lld k=%lld n_tok=%lld: equals scalar (worst rel %.2g)", tname(type),
          lb_cpu_level_name((lb_cpu_level)level), (long long)rows, (long long)k, (long long)n_tok, worst);
    free(wf), free(x), free(y), free(ys), free(w);
}

int main(void) {
    static const int64_t ks[] = {32, 64, 96, 224, 4096 + 96}; /* 1, 2, 3, 7, 131 blocks */
    static const int64_t nts[] = {2, 3, 4, 5, 9, 33};
    static const lb_dtype types[] = {LB_Q4_0, LB_Q8_0};
    lb_pool *pool = lb_pool_new(2);
    for (int ti = 0; ti < 2; ti++)
        for (int ki = 0; ki < 5; ki++)
            for (int ni = 0; ni < 6; ni++) check_case(pool, types[ti], ks[ki], nts[ni]);
    static const int64_t lk[] = {32, 96, 160, 4096 + 32 * 3, 64 * 70};
    static const int64_t lt[] = {1, 2, 3, 5, 8, 67};
    for (int ti = 0; ti < 2; ti++)
        for (int level = LB_CPU_AVX2; level < LB_CPU_LEVEL_COUNT; level++)
            for (int ki = 0; ki < 5; ki++)
                for (int ni = 0; ni < 6; ni++)
                    check_level(pool, types[ti], level, ni % 2 ? 37 : 13, lk[ki], lt[ni]);
    /* Q4_K, Q6_K: one and several k chunks (8 super-blocks), odd block counts, one token block and more */
    static const int64_t kk[] = {256, 768, 256 * 11, 256 * 17};
    static const int64_t kn[] = {2, 3, 4, 5, 9, 70};
    static const lb_dtype ktypes[] = {LB_Q4_K, LB_Q6_K};
    for (int ti = 0; ti < 2; ti++) {
        for (int level = LB_CPU_AVX2; level < LB_CPU_LEVEL_COUNT; level++)
            for (int ki = 0; ki < 4; ki++)
                for (int ni = 0; ni < 6; ni++) check_level(pool, ktypes[ti], level, ni % 2 ? 37 : 14, kk[ki], lt[ni]);
        for (int ni = 0; ni < 6; ni++) check_case(pool, ktypes[ti], 256 * 9, kn[ni]);
    }
    lb_pool_free(pool);
    return test_summary();
}
