/* AVX-512 VNNI rows kernels for Q4_0 and Q8_0 weights, with their own activation layout (see
 * matmul_quant_avx512.c): register-tiled 4 rows x 4 tokens, cache-blocked over tokens and k.
 * Only called after lb_cpu_has_avx512_vnni(). */
#ifndef LB_QUANT_MATMUL_QUANT_AVX512_H
#define LB_QUANT_MATMUL_QUANT_AVX512_H
#include "kernels/cpu/matmul.h"

size_t lb_matmul_prep_size_vnni(int64_t k);
void lb_matmul_prep_q4_0_vnni(const float *x, int64_t k, void *dst);
void lb_matmul_prep_q8_0_vnni(const float *x, int64_t k, void *dst);
void lb_matmul_rows_q4_0_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1);
void lb_matmul_rows_q8_0_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1);
/* Q4_K and Q6_K (matmul_kquant_avx512.c): 4 rows x 4 tokens, bit-identical to the scalar twin. */
size_t lb_matmul_prep_size_k_vnni(int64_t k);
void lb_matmul_prep_q4_K_vnni(const float *x, int64_t k, void *dst);
void lb_matmul_prep_q6_K_vnni(const float *x, int64_t k, void *dst);
void lb_matmul_rows_q4_K_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1);
void lb_matmul_rows_q6_K_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1);

#endif
