/* Byte planes: an array of n elements of e bytes becomes e planes of n bytes (all byte 0s, then
 * all byte 1s, ...). The exponent-carrying bytes of floats then sit together and entropy-code
 * well, while the near-random low mantissa bytes no longer dilute them. */
#ifndef LB_COMPRESS_BYTEPLANE_H
#define LB_COMPRESS_BYTEPLANE_H
#include <stddef.h>

#include "kernels/cpu/cpu.h"

/* elem_size 1, 2 or 4 (1 is a plain copy). src and dst must not overlap; both n*elem_size bytes.
 * dst plane p starts at dst + p*n. Dispatches to AVX2 when the CPU has it. */
void lb_byteplane_split(const void *src, void *dst, size_t n, size_t elem_size);
void lb_byteplane_merge(const void *planes, void *dst, size_t n, size_t elem_size);

/* Portable reference versions, and the AVX2 ones (call only when avx2 is supported). */
void lb_byteplane_split_scalar(const void *src, void *dst, size_t n, size_t elem_size);
void lb_byteplane_merge_scalar(const void *planes, void *dst, size_t n, size_t elem_size);
void lb_byteplane_split_avx2(const void *src, void *dst, size_t n, size_t elem_size);
void lb_byteplane_merge_avx2(const void *planes, void *dst, size_t n, size_t elem_size);

#endif
