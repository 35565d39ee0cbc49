/* Runtime CPU feature checks for kernel dispatch, and the entry points of the *_avx2.c files
 * (compiled with -mavx2 -mfma -mf16c: call them only when lb_cpu_has_avx2()). */
#ifndef LB_KERNELS_CPU_CPU_H
#define LB_KERNELS_CPU_CPU_H
#include "core/dtype.h"

/* AVX2 + FMA + F16C, checked by cpuid once. */
int lb_cpu_has_avx2(void);

struct lb_matmul_kernel;
struct lb_vec_ops;
/* Built-in AVX2 matmul kernel for F32/F16/BF16, else NULL (matmul_avx2.c). */
const struct lb_matmul_kernel *lb_matmul_avx2_builtin(lb_dtype t);
/* AVX2 vector ops table (vec_avx2.c). */
const struct lb_vec_ops *lb_vec_avx2_table(void);

#endif
