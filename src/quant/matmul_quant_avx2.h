/* AVX2 rows kernels for prompt batches (n_tok > 1) of Q4_0, Q8_0, Q4_K and Q6_K weights: each
 * weight block is unpacked once and dotted with several tokens' activation blocks. For n_tok == 1
 * Q4_0 and Q8_0 run the same tile over 4 rows (one activation block load for 4 rows), Q4_K and
 * Q6_K the plain AVX2 dot product. Only called after lb_cpu_has_avx2(). */
#ifndef LB_QUANT_MATMUL_QUANT_AVX2_H
#define LB_QUANT_MATMUL_QUANT_AVX2_H
#include "kernels/cpu/matmul.h"

void lb_matmul_rows_q4_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1);
void lb_matmul_rows_q8_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1);
/* Q4_K and Q6_K (matmul_kquant_avx2.c): one row x up to four tokens, Q8_K activations */
void lb_matmul_rows_q4_K_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1);
void lb_matmul_rows_q6_K_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1);

#endif
