/* Plugs the block formats into lb_matmul: activations are quantized once per call (Q8_0 for
 * the 32-element formats, Q8_K for K-quants and ternary), then each thread runs integer dot
 * products over its rows. Rows are the outer loop so a weight row is read from memory once
 * and reused from cache for every token of a prompt batch. */
#include <math.h>

#include "kernels/cpu/matmul.h"
#include "quant/blocks.h"
#include "quant/matmul_quant_avx2.h"
#include "quant/quant.h"

static size_t prep_q8_0(int64_t k) { return lb_quant_act_size(LB_Q8_0, k); }
static size_t prep_q8_K(int64_t k) { return lb_quant_act_size(LB_Q4_K, k); }
static void act_q8_0(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_0(x, dst, k); }
static void act_q8_K(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_K(x, dst, k); }

static inline void rows_generic(lb_vec_dot_fn dot, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const uint8_t *x = a->x;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
        for (int64_t t = 0; t < a->n_tok; t++)
            a->y[t * a->rows + r] = dot((int)a->k, w, x + (size_t)t * a->x_row_bytes);
    }
}

#define ROWS(T)                                                                                    \
    static lb_vec_dot_fn g_dot_##T;                                                                \
    static void rows_##T(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_generic(g_dot_##T, a, r0, r1); }
ROWS(q4_0) ROWS(q4_1) ROWS(q5_0) ROWS(q5_1) ROWS(q8_0) ROWS(q2_K) ROWS(q3_K) ROWS(q4_K) ROWS(q5_K)
ROWS(q6_K) ROWS(tq1_0) ROWS(tq2_0)
#undef ROWS

static const lb_matmul_kernel k_small[] = {
    {prep_q8_0, act_q8_0, rows_q4_0, 4}, {prep_q8_0, act_q8_0, rows_q4_1, 4}, {prep_q8_0, act_q8_0, rows_q5_0, 4},
    {prep_q8_0, act_q8_0, rows_q5_1, 4}, {prep_q8_0, act_q8_0, rows_q8_0, 4},
};
/* prompt batches: each weight block unpacked once for up to four tokens (AVX2 CPUs only) */
static const lb_matmul_kernel k_q4_0_avx2 = {prep_q8_0, act_q8_0, lb_matmul_rows_q4_0_avx2, 4};
static const lb_matmul_kernel k_q8_0_avx2 = {prep_q8_0, act_q8_0, lb_matmul_rows_q8_0_avx2, 4};
static const lb_matmul_kernel k_large[] = {
    {prep_q8_K, act_q8_K, rows_q2_K, 4}, {prep_q8_K, act_q8_K, rows_q3_K, 4}, {prep_q8_K, act_q8_K, rows_q4_K, 4},
    {prep_q8_K, act_q8_K, rows_q5_K, 4}, {prep_q8_K, act_q8_K, rows_q6_K, 4}, {prep_q8_K, act_q8_K, rows_tq1_0, 4},
    {prep_q8_K, act_q8_K, rows_tq2_0, 4},
};

/* Called once from the matmul dispatcher's initialisation. */
void lb_quant_register_matmul(void) {
    static const lb_dtype small[] = {LB_Q4_0, LB_Q4_1, LB_Q5_0, LB_Q5_1, LB_Q8_0};
    static const lb_dtype large[] = {LB_Q2_K, LB_Q3_K, LB_Q4_K, LB_Q5_K, LB_Q6_K, LB_TQ1_0, LB_TQ2_0};
    lb_vec_dot_fn *dots_small[] = {&g_dot_q4_0, &g_dot_q4_1, &g_dot_q5_0, &g_dot_q5_1, &g_dot_q8_0};
    lb_vec_dot_fn *dots_large[] = {&g_dot_q2_K, &g_dot_q3_K, &g_dot_q4_K, &g_dot_q5_K, &g_dot_q6_K, &g_dot_tq1_0, &g_dot_tq2_0};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        const lb_quant_ops *o = lb_quant_get_ops(small[i]);
        if (!o) continue;
        *dots_small[i] = o->vec_dot;
        const lb_matmul_kernel *k = &k_small[i];
        if (lb_quant_have_avx2() && small[i] == LB_Q4_0) k = &k_q4_0_avx2;
        if (lb_quant_have_avx2() && small[i] == LB_Q8_0) k = &k_q8_0_avx2;
        lb_matmul_register(small[i], k);
    }
    for (size_t i = 0; i < sizeof large / sizeof *large; i++) {
        const lb_quant_ops *o = lb_quant_get_ops(large[i]);
        if (!o) continue;
        *dots_large[i] = o->vec_dot;
        lb_matmul_register(large[i], &k_large[i]);
    }
}

/* BitNet b1.58 quantizes each token's activations to int8 with one absmax scale for the whole
 * row (scale 127 / max|x|, round half to even, clamp to [-128, 127]). Writing those codes into
 * Q8_K blocks that all share the row's scale lets the ternary dot products compute exactly
 * the model's own integer product. */
static void act_q8_K_per_token(const float *x, int64_t k, void *dst) {
    float amax = 0;
    for (int64_t i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[i]));
    if (amax < 1e-5f) amax = 1e-5f; /* the same floor transformers applies */
    float scale = 127.0f / amax;
    lb_block_q8_K *b = dst;
    for (int64_t i = 0; i < k / LB_QK_K; i++) {
        b[i].d = 1.0f / scale;
        for (int g = 0; g < LB_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) {
                float q = nearbyintf(x[i * LB_QK_K + 16 * g + j] * scale);
                int v = q < -128 ? -128 : q > 127 ? 127 : (int)q;
                b[i].qs[16 * g + j] = (int8_t)v;
                sum += v;
            }
            b[i].bsums[g] = (int16_t)sum;
        }
    }
}

static const lb_matmul_kernel k_tq1_per_token = {prep_q8_K, act_q8_K_per_token, rows_tq1_0, 4};
static const lb_matmul_kernel k_tq2_per_token = {prep_q8_K, act_q8_K_per_token, rows_tq2_0, 4};

const lb_matmul_kernel *lb_quant_kernel_per_token(lb_dtype t) {
    lb_matmul_kernel_get(t); /* makes sure the dot products are installed */
    return t == LB_TQ1_0 ? &k_tq1_per_token : t == LB_TQ2_0 ? &k_tq2_per_token : NULL;
}
