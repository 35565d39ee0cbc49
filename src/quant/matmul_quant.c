/* Plugs the block formats into lb_matmul: activations are quantized once per call (Q8_0 for
 * the 32-element formats, Q8_K for K-quants and ternary), then each thread runs integer dot
 * products over its rows. Rows are the outer loop so a weight row is read from memory once
 * and reused from cache for every token of a prompt batch. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/matmul.h"
#include "quant/blocks.h"
#include "quant/matmul_quant_avx2.h"
#include "quant/matmul_quant_avx512.h"
#include "quant/quant.h"
#include "quant/repack.h"

static size_t prep_q8_0(int64_t k) { return lb_quant_act_size(LB_Q8_0, k); }
static size_t prep_q8_K(int64_t k) { return lb_quant_act_size(LB_Q4_K, k); }
static void act_q8_0_scalar(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_0_scalar(x, dst, k); }
static void act_q8_K_scalar(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_K_scalar(x, dst, k); }
static void act_q8_0_avx2(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_0_avx2(x, dst, k); }
static void act_q8_K_avx2(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_K_avx2(x, dst, k); }

static inline void rows_generic(lb_vec_dot_fn dot, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const uint8_t *x = a->x;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
        for (int64_t t = 0; t < a->n_tok; t++)
            a->y[t * a->rows + r] = dot((int)a->k, w, x + (size_t)t * a->x_row_bytes);
    }
}

/* One rows function per (type, level): the dot product is a direct call, not a dispatch. */
#define ROWS(T, L)                                                                                 \
    static void rows_##T##_##L(const lb_matmul_args *a, int64_t r0, int64_t r1) {                 \
        rows_generic(lb_vec_dot_##T##_q8_##L, a, r0, r1);                                          \
    }
#define ROWS_BOTH(T) ROWS(T, scalar) ROWS(T, avx2)
ROWS(q4_0, scalar) ROWS(q8_0, scalar) /* AVX2: matmul_quant_avx2.c */
ROWS_BOTH(q4_1) ROWS_BOTH(q5_0) ROWS_BOTH(q5_1) ROWS_BOTH(q2_K) ROWS_BOTH(q3_K) ROWS(q4_K, scalar)
ROWS_BOTH(q5_K) ROWS(q6_K, scalar) ROWS_BOTH(tq1_0) ROWS_BOTH(tq2_0) ROWS_BOTH(iq4_nl) ROWS_BOTH(iq4_xs)
#undef ROWS_BOTH
#undef ROWS

#define K32(T, L) {prep_q8_0, act_q8_0_##L, rows_##T##_##L, 4}
#define K256(T, L) {prep_q8_K, act_q8_K_##L, rows_##T##_##L, 4}
/* IQ4_NL pairs with Q8_0 activations, IQ4_XS with Q8_K */
static const lb_dtype g_types[] = {LB_Q4_0, LB_Q4_1, LB_Q5_0, LB_Q5_1, LB_Q8_0,  LB_Q2_K,   LB_Q3_K,
                                   LB_Q4_K, LB_Q5_K, LB_Q6_K, LB_TQ1_0, LB_TQ2_0, LB_IQ4_NL, LB_IQ4_XS};
static const lb_matmul_kernel k_scalar[] = {
    K32(q4_0, scalar), K32(q4_1, scalar), K32(q5_0, scalar), K32(q5_1, scalar), K32(q8_0, scalar),
    K256(q2_K, scalar), K256(q3_K, scalar), K256(q4_K, scalar), K256(q5_K, scalar), K256(q6_K, scalar),
    K256(tq1_0, scalar), K256(tq2_0, scalar), K32(iq4_nl, scalar), K256(iq4_xs, scalar),
};
/* Q4_0, Q8_0, Q4_K and Q6_K at AVX2: prompt batches unpack each weight block once for several
 * tokens (matmul_quant_avx2.c, matmul_kquant_avx2.c). */
static const lb_matmul_kernel k_avx2[] = {
    {prep_q8_0, act_q8_0_avx2, lb_matmul_rows_q4_0_avx2, 4}, K32(q4_1, avx2), K32(q5_0, avx2),
    K32(q5_1, avx2), {prep_q8_0, act_q8_0_avx2, lb_matmul_rows_q8_0_avx2, 4},
    K256(q2_K, avx2), K256(q3_K, avx2), {prep_q8_K, act_q8_K_avx2, lb_matmul_rows_q4_K_avx2, 4},
    K256(q5_K, avx2), {prep_q8_K, act_q8_K_avx2, lb_matmul_rows_q6_K_avx2, 4}, K256(tq1_0, avx2), K256(tq2_0, avx2),
    K32(iq4_nl, avx2), K256(iq4_xs, avx2),
};
#undef K32
#undef K256
/* Q4_0 and Q8_0 at AVX-512 with VNNI: their own activation layout; chunks of 16 rows keep each
 * thread's outputs on their own cache lines. */
static const lb_matmul_kernel k_q4_0_vnni = {lb_matmul_prep_size_vnni, lb_matmul_prep_q4_0_vnni,
                                             lb_matmul_rows_q4_0_vnni, 16};
static const lb_matmul_kernel k_q8_0_vnni = {lb_matmul_prep_size_vnni, lb_matmul_prep_q8_0_vnni,
                                             lb_matmul_rows_q8_0_vnni, 16};
static const lb_matmul_kernel k_q4_K_vnni = {lb_matmul_prep_size_k_vnni, lb_matmul_prep_q4_K_vnni,
                                             lb_matmul_rows_q4_K_vnni, 16};
static const lb_matmul_kernel k_q6_K_vnni = {lb_matmul_prep_size_k_vnni, lb_matmul_prep_q6_K_vnni,
                                             lb_matmul_rows_q6_K_vnni, 16};

/* The 8-row interleaved Q4_0 layout (repack.h); at AVX-512 two groups share a register, so
 * thread chunks start at multiples of 16 rows. */
static const lb_matmul_kernel k_q4_0x8[] = {
    {lb_repack_prep_size, lb_repack_prep_scalar, lb_matmul_rows_q4_0x8_scalar, LB_R8},
    {lb_repack_prep_size, lb_repack_prep_avx2, lb_matmul_rows_q4_0x8_avx2, LB_R8},
    {lb_repack_prep_size_avx512, lb_repack_prep_avx512, lb_matmul_rows_q4_0x8_avx512, 2 * LB_R8}};

/* Called once from the matmul table's initialisation. */
void lb_quant_register_matmul(void) {
    for (size_t i = 0; i < sizeof g_types / sizeof *g_types; i++) {
        lb_matmul_register_level(g_types[i], LB_CPU_SCALAR, &k_scalar[i]);
        if (lb_cpu_has_avx2()) lb_matmul_register_level(g_types[i], LB_CPU_AVX2, &k_avx2[i]);
    }
    lb_matmul_register_level(LB_Q4_0_R8, LB_CPU_SCALAR, &k_q4_0x8[0]);
    if (lb_cpu_has_avx2()) lb_matmul_register_level(LB_Q4_0_R8, LB_CPU_AVX2, &k_q4_0x8[1]);
    if (lb_cpu_has_avx512_vnni()) {
        lb_matmul_register_level(LB_Q4_0, LB_CPU_AVX512, &k_q4_0_vnni);
        lb_matmul_register_level(LB_Q8_0, LB_CPU_AVX512, &k_q8_0_vnni);
        lb_matmul_register_level(LB_Q4_K, LB_CPU_AVX512, &k_q4_K_vnni);
        lb_matmul_register_level(LB_Q6_K, LB_CPU_AVX512, &k_q6_K_vnni);
        lb_matmul_register_level(LB_Q4_0_R8, LB_CPU_AVX512, &k_q4_0x8[2]);
    }
}

/* BitNet b1.58 quantizes each token's activations to int8 with one absmax scale for the whole
 * row (scale 127 / max|x|, round half to even, clamp to [-128, 127]). Writing those codes into
 * Q8_K blocks that all share the row's scale lets the ternary dot products compute exactly
 * the model's own integer product. */
static void act_q8_K_per_token(const float *x, int64_t k, void *dst) {
    float amax = 0;
    int nan = 0;
    for (int64_t i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[i])), nan |= isnan(x[i]);
    lb_block_q8_K *b = dst;
    if (nan) { /* NaN scales and zero codes, so the NaN reaches the logits (lb_quantize_row_q8_0_scalar) */
        memset(b, 0, (size_t)(k / LB_QK_K) * sizeof *b);
        for (int64_t i = 0; i < k / LB_QK_K; i++) b[i].d = NAN;
        return;
    }
    if (amax < 1e-5f) amax = 1e-5f; /* the same floor transformers applies */
    float scale = 127.0f / amax;
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

static const lb_matmul_kernel k_tq1_per_token[] = {{prep_q8_K, act_q8_K_per_token, rows_tq1_0_scalar, 4},
                                                    {prep_q8_K, act_q8_K_per_token, rows_tq1_0_avx2, 4}};
static const lb_matmul_kernel k_tq2_per_token[] = {{prep_q8_K, act_q8_K_per_token, rows_tq2_0_scalar, 4},
                                                    {prep_q8_K, act_q8_K_per_token, rows_tq2_0_avx2, 4}};

const lb_matmul_kernel *lb_quant_kernel_per_token(lb_dtype t) {
    int simd = lb_cpu_has_avx2();
    return t == LB_TQ1_0 ? &k_tq1_per_token[simd] : t == LB_TQ2_0 ? &k_tq2_per_token[simd] : NULL;
}
