/* Plugs IQ4_NL (Q8_0 activations) and IQ4_XS (Q8_K activations) into lb_matmul at the scalar
 * and AVX2 levels. Each (row, token) value is one call of the type's dot product, whatever the
 * batch, so a token's output never depends on the other tokens of its batch. */
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

static size_t prep_nl(int64_t k) { return lb_quant_act_size(LB_IQ4_NL, k); }
static size_t prep_xs(int64_t k) { return lb_quant_act_size(LB_IQ4_XS, k); }
static void act_nl_scalar(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_0_scalar(x, dst, k); }
static void act_xs_scalar(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_K_scalar(x, dst, k); }
static void act_nl_avx2(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_0_avx2(x, dst, k); }
static void act_xs_avx2(const float *x, int64_t k, void *dst) { lb_quantize_row_q8_K_avx2(x, dst, k); }

/* Rows outer: a weight row is read from memory once and reused from cache for every token. */
#define IQ4_ROWS(T, L)                                                                             \
    static void rows_##T##_##L(const lb_matmul_args *a, int64_t r0, int64_t r1) {                 \
        const uint8_t *x = a->x;                                                                   \
        for (int64_t r = r0; r < r1; r++)                                                          \
            for (int64_t t = 0; t < a->n_tok; t++)                                                 \
                a->y[t * a->rows + r] = lb_vec_dot_##T##_q8_##L((int)a->k, a->w + (size_t)r * a->w_row_bytes, \
                                                                x + (size_t)t * a->x_row_bytes);  \
    }
IQ4_ROWS(iq4_nl, scalar) IQ4_ROWS(iq4_nl, avx2) IQ4_ROWS(iq4_xs, scalar) IQ4_ROWS(iq4_xs, avx2)
#undef IQ4_ROWS

static const lb_matmul_kernel k_nl[2] = {{prep_nl, act_nl_scalar, rows_iq4_nl_scalar, 4},
                                         {prep_nl, act_nl_avx2, rows_iq4_nl_avx2, 4}};
static const lb_matmul_kernel k_xs[2] = {{prep_xs, act_xs_scalar, rows_iq4_xs_scalar, 4},
                                         {prep_xs, act_xs_avx2, rows_iq4_xs_avx2, 4}};

void lb_iq4_register_matmul(void) {
    lb_matmul_register_level(LB_IQ4_NL, LB_CPU_SCALAR, &k_nl[0]);
    lb_matmul_register_level(LB_IQ4_XS, LB_CPU_SCALAR, &k_xs[0]);
    if (!lb_cpu_has_avx2()) return;
    lb_matmul_register_level(LB_IQ4_NL, LB_CPU_AVX2, &k_nl[1]);
    lb_matmul_register_level(LB_IQ4_XS, LB_CPU_AVX2, &k_xs[1]);
}
