/* Q4_0 weight matrices repacked at load into groups of 8 rows (dtype LB_Q4_0_R8), so one
 * activation block, loaded once, meets the same block of 8 rows in a few 256-bit operations
 * instead of 8 separate dot products.
 *
 * Layout: rows 8g..8g+7 form group g; group g holds, for each block index b of the row, one
 * lb_block_q4_0x8. Its 16 nibble bytes of row r are cut into four 4-byte words and word c of
 * every row lands in chunk c, row r at bytes 4r..4r+3. A chunk's low nibbles are then elements
 * 4c..4c+3 of all 8 rows and its high nibbles elements 16+4c..16+4c+3, one 32-bit lane per row:
 * a chunk times one 32-bit word of activations broadcast gives the 8 rows' partial sums side by
 * side, with no shuffle. The group takes exactly the bytes of its 8 plain rows, so w_row_bytes
 * and tensor sizes stay those of Q4_0.
 *
 * Arithmetic (scalar twin, AVX2 and AVX-512 alike): per row, block by block in K order,
 * sum += (dw * dx) * (float)(sum_j q_j x_j - 8 sum_j x_j), the integer part exact. This is the
 * order of the plain scalar kernel (lb_vec_dot_q4_0_q8_scalar), so a repacked matrix gives its
 * results bit for bit, whatever the batch. */
#ifndef LB_QUANT_REPACK_H
#define LB_QUANT_REPACK_H
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "kernels/cpu/matmul.h"
#include "quant/blocks.h"

#define LB_R8 8 /* rows per interleaved group */

typedef struct lb_block_q4_0x8 {
    uint16_t d[LB_R8];               /* fp16 scale of each row */
    uint8_t qs[4][4 * LB_R8];        /* chunk c: row r's qs[4c..4c+3] at bytes 4r..4r+3 */
} lb_block_q4_0x8;
static_assert(sizeof(lb_block_q4_0x8) == LB_R8 * sizeof(lb_block_q4_0), "8 plain blocks' bytes");

/* rows (a multiple of 8) x k (a multiple of 32) Q4_0 at src into the layout above at dst (the
 * same byte size, not overlapping src), and back (tests, fine-tunes reading base weights). */
void lb_repack_q4_0_x8(const void *src, void *dst, int64_t rows, int64_t k);
void lb_unpack_q4_0_x8(const void *src, void *dst, int64_t rows, int64_t k);

/* Activations: Q8_0 blocks as for plain Q4_0, then each block's 8 sum x as int32 (the -8 offset
 * of every row's codes, computed once per token instead of once per row group). */
size_t lb_repack_prep_size(int64_t k);
void lb_repack_prep_scalar(const float *x, int64_t k, void *dst);
void lb_repack_prep_avx2(const float *x, int64_t k, void *dst);
/* AVX-512: its own layout (repack_avx512.c): codes, then -8 sum x, then float scales */
size_t lb_repack_prep_size_avx512(int64_t k);
void lb_repack_prep_avx512(const float *x, int64_t k, void *dst);
/* the 8 sum x of the nb blocks of a prepared row */
static inline const int32_t *lb_repack_prep_sums(const void *prep, int64_t nb) {
    return (const int32_t *)(const void *)((const uint8_t *)prep + ((size_t)nb * sizeof(lb_block_q8_0) + 3) / 4 * 4);
}
/* Rows kernels: r0, r1 multiples of 8 (row_align 8). */
void lb_matmul_rows_q4_0x8_scalar(const lb_matmul_args *a, int64_t r0, int64_t r1);
void lb_matmul_rows_q4_0x8_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1);
/* r0 a multiple of 16 (row_align 16: two groups per 512-bit register), r1 of 8 */
void lb_matmul_rows_q4_0x8_avx512(const lb_matmul_args *a, int64_t r0, int64_t r1);

/* LOWBIT_REPACK=0 turns the repack off, =1 on at any CPU level; unset, it is on where AVX2 or
 * AVX-512 is the level in use (both have a kernel for it that beats their plain Q4_0 one; the
 * scalar level keeps the plain layout). */
int lb_repack_enabled(void);
/* Repacks every 2-D Q4_0 matrix of m with rows % 8 == 0 except the token embedding (read row by
 * row), into model-owned heap buffers, and gives the mapped pages of the originals back to the
 * kernel (MADV_DONTNEED), so the weights are resident once. *n and *bytes (may be NULL): how many
 * tensors and bytes were repacked. Idempotent: a second call finds nothing left to do. */
lb_status lb_repack_model(lb_model *m, int *n, size_t *bytes, lb_error *err);
/* Bytes lb_repack_model would move from the mapping to the heap; *peak (may be NULL): the
 * largest of those matrices, which exists twice while it is copied. */
size_t lb_repack_model_bytes(const lb_model *m, size_t *peak);
/* 1 when some tensor of m is in the repacked layout (the CUDA backend reads only the plain one). */
int lb_repack_model_has(const lb_model *m);

#endif
