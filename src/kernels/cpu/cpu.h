/* The one place that asks the CPU what it can do. cpuid (and xgetbv, for the OS's consent to
 * save the wider registers) run once; every dispatch site then reads the cached level.
 *
 * Levels are cumulative: avx2 = AVX2 + FMA + F16C; avx512 = avx2 + AVX-512 F, BW, VL, DQ.
 * The environment variable LOWBIT_CPU=scalar|avx2|avx512, read at the first query, lowers the
 * level (never raises it above what the CPU has), so tests and benchmarks can run every path
 * on one machine. Files named *_avx2.c / *_avx512.c are built with those instruction sets and
 * may only be called once lb_cpu_level() says so. */
#ifndef LB_KERNELS_CPU_CPU_H
#define LB_KERNELS_CPU_CPU_H
#include "core/dtype.h"

typedef enum lb_cpu_level {
    LB_CPU_SCALAR = 0,
    LB_CPU_AVX2 = 1,
    LB_CPU_AVX512 = 2,
    LB_CPU_LEVEL_COUNT
} lb_cpu_level;

typedef struct lb_cpu_info {
    lb_cpu_level hw;    /* what the CPU and OS support */
    lb_cpu_level level; /* what the kernels use: hw, lowered by LOWBIT_CPU */
    int forced;         /* 1 when LOWBIT_CPU lowered the level */
    int vnni;           /* AVX512-VNNI (vpdpbusd on zmm) */
    int avx512_bf16;
    int avx_vnni;       /* VEX-encoded VNNI (reported, not used by any kernel) */
} lb_cpu_info;

/* Detected once; the pointer is to a process-wide constant after the first call. */
const lb_cpu_info *lb_cpu_info_get(void);
/* The level in use (cheap: one relaxed load after the first call). */
lb_cpu_level lb_cpu_level_get(void);
/* "scalar", "avx2", "avx512". */
const char *lb_cpu_level_name(lb_cpu_level l);
/* One line such as "avx512 (vnni bf16 avx-vnni)" or "avx2 (forced by LOWBIT_CPU; cpu avx512)". */
void lb_cpu_describe(char *buf, size_t size);
/* level >= avx2 */
int lb_cpu_has_avx2(void);
/* level >= avx512 and AVX512-VNNI present: what the *_avx512.c integer kernels need. */
int lb_cpu_has_avx512_vnni(void);

struct lb_matmul_kernel;
struct lb_vec_ops;
/* Built-in AVX2 matmul kernel for F32/F16/BF16, else NULL (matmul_avx2.c). */
const struct lb_matmul_kernel *lb_matmul_avx2_builtin(lb_dtype t);
/* Built-in AVX-512 matmul kernel for F32/F16/BF16, else NULL (matmul_avx512.c). */
const struct lb_matmul_kernel *lb_matmul_avx512_builtin(lb_dtype t);
/* AVX2 vector ops table (vec_avx2.c). */
const struct lb_vec_ops *lb_vec_avx2_table(void);

#endif
