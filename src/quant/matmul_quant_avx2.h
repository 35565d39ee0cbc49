/* AVX2 rows kernels for prompt batches (n_tok > 1) of Q4_0 and Q8_0 weights: each weight block
 * is unpacked once and dotted with up to four tokens' Q8_0 activation blocks. For n_tok == 1
 * they run the plain AVX2 dot product. Only called after lb_cpu_has_avx2(). */
#ifndef LB_QUANT_MATMUL_QUANT_AVX2_H
#define LB_QUANT_MATMUL_QUANT_AVX2_H
#include "kernels/cpu/matmul.h"

void lb_matmul_rows_q4_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1);
void lb_matmul_rows_q8_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1);

#endif
