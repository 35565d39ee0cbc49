/* Matrix multiplication y = x W^T on the CPU, the one op that moves the weight bytes.
 *
 * w: [rows = ne[1]][k = ne[0]] of any registered dtype (F32, F16, BF16 built in; block formats
 * registered by src/quant), data possibly unaligned. x: F32 [n_tok][k]. y: F32 [n_tok][rows],
 * y[t][r] = dot(w[r], x[t]). x and y must not overlap. Rows are handed out to the pool's
 * threads in chunks (multiples of the kernel's row_align) from a shared counter.
 *
 * Plugging in a dtype (e.g. Q8_0):
 *   static const lb_matmul_kernel k = {prep_row_bytes, prepare, rows_fn, 16};
 *   lb_matmul_register_level(LB_Q8_0, LB_CPU_AVX2, &k);   // at initialisation, per CPU level
 * lb_matmul then, per call:
 *   1. if k.prepare: converts each token row of x once into a scratch buffer owned by the
 *      pool (prep_row_bytes(k) bytes per token, 64-byte aligned rows start at multiples of
 *      prep_row_bytes), e.g. int8 blocks with scales; in parallel over tokens when n_tok > 1;
 *   2. runs k.rows(&args, r0, r1) on each thread for its chunk [r0, r1) of rows, chunk starts
 *      being multiples of row_align. args.x is then the prepared buffer and args.x_row_bytes
 *      its per-token stride; without prepare, args.x is the float x with stride 4*k. */
#ifndef LB_KERNELS_CPU_MATMUL_H
#define LB_KERNELS_CPU_MATMUL_H
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/cpu/cpu.h"
#include "lowbit.h"

typedef struct lb_matmul_args {
    const uint8_t *w;   /* row 0 of the weights; any alignment */
    size_t w_row_bytes; /* bytes per weight row (lb_dtype_row_size(type, k)) */
    int64_t k;          /* elements per row */
    int64_t rows;
    const void *x;      /* float [n_tok][k], or the prepared activations */
    size_t x_row_bytes; /* stride of x between tokens */
    int64_t n_tok;
    float *y;           /* [n_tok][rows]: row r of token t at y[t * rows + r] */
} lb_matmul_args;

/* Computes y[t][r] for all t < n_tok and r0 <= r < r1. Must not write other rows of y. */
typedef void (*lb_matmul_rows_fn)(const lb_matmul_args *a, int64_t r0, int64_t r1);
/* Bytes of prepared activations for one token row of k elements. */
typedef size_t (*lb_matmul_prep_size_fn)(int64_t k);
/* Converts one token row x[0..k) into dst (prep_row_bytes(k) bytes, 64-byte aligned). */
typedef void (*lb_matmul_prep_fn)(const float *x, int64_t k, void *dst);

typedef struct lb_matmul_kernel {
    lb_matmul_prep_size_fn prep_row_bytes; /* NULL together with prepare: rows reads float x */
    lb_matmul_prep_fn prepare;
    lb_matmul_rows_fn rows;
    int row_align; /* thread chunk starts are multiples of this (>= 1) */
} lb_matmul_kernel;

/* Sets the kernel lb_matmul uses for a dtype (the pointer must stay valid), replacing the one
 * the CPU level chose (plug-ins, tests). NULL unregisters. */
void lb_matmul_register(lb_dtype t, const lb_matmul_kernel *k);
/* Declares the kernel of a dtype for one CPU level (lb_cpu_level, kernels/cpu/cpu.h); called
 * during the table's initialisation only. lb_matmul then uses the highest level <= the CPU's. */
void lb_matmul_register_level(lb_dtype t, int level, const lb_matmul_kernel *k);
/* Registers the block formats of src/quant at every level (called once by the table's
 * initialisation). */
void lb_quant_register_matmul(void);
/* Ternary kernels with BitNet's per-token absmax int8 activations (NULL for other types). */
const lb_matmul_kernel *lb_quant_kernel_per_token(lb_dtype t);

/* The kernel lb_matmul uses for a dtype, or NULL when none is registered. */
const lb_matmul_kernel *lb_matmul_kernel_get(lb_dtype t);
/* The kernel a process running at CPU level `level` would use for t: NULL when that level is
 * above the one in use (lb_cpu_level_get) or nothing is registered. Tests loop over the levels
 * and compare each with LB_CPU_SCALAR; benchmarks compare their speed. */
const lb_matmul_kernel *lb_matmul_kernel_at(lb_dtype t, int level);
/* Shorthands: the scalar reference and the AVX2 kernel (NULL when the level is not available). */
const lb_matmul_kernel *lb_matmul_kernel_scalar(lb_dtype t);
const lb_matmul_kernel *lb_matmul_kernel_avx2(lb_dtype t);

/* y = x w^T for a 2-D (or higher: all dims past ne[0] are rows) tensor. pool may be NULL
 * (single thread). Small products run on fewer threads than the pool has: waking a thread
 * costs more than a few thousand multiply-adds. */
lb_status lb_matmul(lb_pool *pool, const lb_tensor *w, const float *x, int64_t n_tok, float *y,
                    lb_error *err);
/* Same on raw row-major weights: rows x k elements of type at w (e.g. a slice of rows). */
lb_status lb_matmul_raw(lb_pool *pool, lb_dtype type, const void *w, int64_t rows, int64_t k,
                        const float *x, int64_t n_tok, float *y, lb_error *err);
/* Same with an explicit kernel and thread count (0 = choose by size; else min(n, pool size)). */
lb_status lb_matmul_with(lb_pool *pool, const lb_matmul_kernel *kern, lb_dtype type, const void *w,
                         int64_t rows, int64_t k, const float *x, int64_t n_tok, float *y,
                         int n_threads, lb_error *err);


/* ---- products sharing one input (q/k/v, gate/up) ---------------------------------------- */

#define LB_MATMUL_SHARED_MAX 8
typedef struct lb_matmul_job {
    const lb_matmul_kernel *kern;
    lb_dtype type;
    const void *w; /* rows x k of type */
    int64_t rows;
    float *y;      /* [n_tok][rows] */
} lb_matmul_job;

/* The n_jobs (<= LB_MATMUL_SHARED_MAX) products of one x [n_tok][k]: x is prepared once per
 * distinct preparation (same prepare and prep_row_bytes functions, e.g. Q8_K blocks for Q4_K and
 * Q5_K, or the VNNI layout of Q4_0) and that copy serves every job of the format, so projections
 * reading the same activations quantize them once per batch (docs/design.md). Each y is bit for
 * bit what lb_matmul_with(..., 0) gives: the preparation is per token and deterministic, and
 * each product runs as it would alone. On failure *failed (if not NULL) is the job at fault
 * (-1: none); outputs of other jobs may be written. */
lb_status lb_matmul_shared(lb_pool *pool, const lb_matmul_job *jobs, int n_jobs, int64_t k, const float *x,
                           int64_t n_tok, int *failed, lb_error *err);
/* The same on tensors that all have ws[0]->ne[0] columns: ys[i] = ws[i] x, with kern[i] (kern
 * NULL, or kern[i] NULL: the registered kernel of ws[i]'s type). Errors name the tensor. */
lb_status lb_matmul_tensors(lb_pool *pool, int n, const lb_tensor *const *ws, const lb_matmul_kernel *const *kern,
                            const float *x, int64_t n_tok, float *const *ys, lb_error *err);

#endif
