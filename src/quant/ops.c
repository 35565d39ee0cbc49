/* Per-type kernel table and runtime CPU dispatch (scalar or AVX2) by lb_cpu_level_get(), a
 * cached load: these run per dot product. */
#include "quant/quant.h"

#define LB_DISPATCH_DOT(t)                                                                   \
    float lb_vec_dot_##t##_q8(int n, const void *w_row, const void *x_q) {                   \
        return lb_cpu_has_avx2() ? lb_vec_dot_##t##_q8_avx2(n, w_row, x_q)                   \
                                 : lb_vec_dot_##t##_q8_scalar(n, w_row, x_q);                \
    }
LB_DISPATCH_DOT(q8_0)
LB_DISPATCH_DOT(q4_0)
LB_DISPATCH_DOT(q4_1)
LB_DISPATCH_DOT(q5_0)
LB_DISPATCH_DOT(q5_1)
LB_DISPATCH_DOT(q2_K)
LB_DISPATCH_DOT(q3_K)
LB_DISPATCH_DOT(q4_K)
LB_DISPATCH_DOT(q5_K)
LB_DISPATCH_DOT(q6_K)
LB_DISPATCH_DOT(tq1_0)
LB_DISPATCH_DOT(tq2_0)
LB_DISPATCH_DOT(iq4_nl)
LB_DISPATCH_DOT(iq4_xs)

void lb_quantize_row_q8_0(const float *x, void *dst, int64_t n) {
    if (lb_cpu_has_avx2()) lb_quantize_row_q8_0_avx2(x, dst, n);
    else lb_quantize_row_q8_0_scalar(x, dst, n);
}

void lb_quantize_row_q8_K(const float *x, void *dst, int64_t n) {
    if (lb_cpu_has_avx2()) lb_quantize_row_q8_K_avx2(x, dst, n);
    else lb_quantize_row_q8_K_scalar(x, dst, n);
}

#define OPS_32(t)                                                                            \
    {LB_Q8_0, LB_QK, sizeof(lb_block_q8_0), lb_quantize_row_q8_0_scalar,                    \
     lb_vec_dot_##t##_q8_scalar, lb_vec_dot_##t##_q8_scalar}
#define OPS_256(t)                                                                           \
    {LB_Q8_K, LB_QK_K, sizeof(lb_block_q8_K), lb_quantize_row_q8_K_scalar,                  \
     lb_vec_dot_##t##_q8_scalar, lb_vec_dot_##t##_q8_scalar}
#define OPS_32_AVX2(t)                                                                       \
    {LB_Q8_0, LB_QK, sizeof(lb_block_q8_0), lb_quantize_row_q8_0_avx2,                      \
     lb_vec_dot_##t##_q8_avx2, lb_vec_dot_##t##_q8_scalar}
#define OPS_256_AVX2(t)                                                                      \
    {LB_Q8_K, LB_QK_K, sizeof(lb_block_q8_K), lb_quantize_row_q8_K_avx2,                    \
     lb_vec_dot_##t##_q8_avx2, lb_vec_dot_##t##_q8_scalar}

/* Two constant tables, picked per call: no mutable state. */
static const lb_quant_ops k_scalar[LB_DTYPE_COUNT] = {
    [LB_Q8_0] = OPS_32(q8_0),   [LB_Q4_0] = OPS_32(q4_0),   [LB_Q4_1] = OPS_32(q4_1),
    [LB_Q5_0] = OPS_32(q5_0),   [LB_Q5_1] = OPS_32(q5_1),   [LB_Q2_K] = OPS_256(q2_K),
    [LB_Q3_K] = OPS_256(q3_K),  [LB_Q4_K] = OPS_256(q4_K),  [LB_Q5_K] = OPS_256(q5_K),
    [LB_Q6_K] = OPS_256(q6_K),  [LB_TQ1_0] = OPS_256(tq1_0), [LB_TQ2_0] = OPS_256(tq2_0),
    [LB_IQ4_NL] = OPS_32(iq4_nl), [LB_IQ4_XS] = OPS_256(iq4_xs),
};
static const lb_quant_ops k_avx2[LB_DTYPE_COUNT] = {
    [LB_Q8_0] = OPS_32_AVX2(q8_0),   [LB_Q4_0] = OPS_32_AVX2(q4_0),
    [LB_Q4_1] = OPS_32_AVX2(q4_1),   [LB_Q5_0] = OPS_32_AVX2(q5_0),
    [LB_Q5_1] = OPS_32_AVX2(q5_1),   [LB_Q2_K] = OPS_256_AVX2(q2_K),
    [LB_Q3_K] = OPS_256_AVX2(q3_K),  [LB_Q4_K] = OPS_256_AVX2(q4_K),
    [LB_Q5_K] = OPS_256_AVX2(q5_K),  [LB_Q6_K] = OPS_256_AVX2(q6_K),
    [LB_TQ1_0] = OPS_256_AVX2(tq1_0), [LB_TQ2_0] = OPS_256_AVX2(tq2_0),
    [LB_IQ4_NL] = OPS_32_AVX2(iq4_nl), [LB_IQ4_XS] = OPS_256_AVX2(iq4_xs),
};

const lb_quant_ops *lb_quant_get_ops(lb_dtype type) {
    if ((unsigned)type >= LB_DTYPE_COUNT) return NULL;
    const lb_quant_ops *o = lb_cpu_has_avx2() ? &k_avx2[type] : &k_scalar[type];
    return o->vec_dot ? o : NULL;
}

size_t lb_quant_act_size(lb_dtype weight_type, int64_t n) {
    const lb_quant_ops *o = lb_quant_get_ops(weight_type);
    if (!o || n <= 0 || n % o->act_block) return 0;
    return (size_t)(n / o->act_block) * o->act_block_bytes;
}
