/* Sparse and int8 deltas: internal kernels behind the public lb_*_delta_* functions (lowbit.h).
 * Scalar references and AVX2 versions (call the AVX2 ones only when lb_delta_have_avx2()). */
#ifndef LB_DELTA_SPARSE_H
#define LB_DELTA_SPARSE_H
#include <stddef.h>
#include <stdint.h>

#include "lowbit.h"

int lb_delta_have_avx2(void);

/* Elements kept by threshold t: !(|x| <= t), i.e. |x| > t or NaN. */
size_t lb_delta_sparse_count_scalar(const float *x, size_t n, float t);
size_t lb_delta_sparse_count_avx2(const float *x, size_t n, float t);
/* Writes the kept indices and values, returns how many. The AVX2 version stores whole vectors:
 * idx and val need room for (kept + 8) elements. */
size_t lb_delta_sparse_gather_scalar(const float *x, size_t n, float t, uint32_t *idx, float *val);
size_t lb_delta_sparse_gather_avx2(const float *x, size_t n, float t, uint32_t *idx, float *val);

/* Int8 blocks (definition in lowbit.h). Return the index of the first block holding a
 * non-finite value, or SIZE_MAX when all are finite (q and scales then filled). */
size_t lb_delta_int8_quant_scalar(const float *x, size_t n, size_t block, int8_t *q, float *scales);
size_t lb_delta_int8_quant_avx2(const float *x, size_t n, size_t block, int8_t *q, float *scales);
void lb_delta_int8_dequant_scalar(const int8_t *q, const float *scales, size_t n, size_t block, float *out);
void lb_delta_int8_dequant_avx2(const int8_t *q, const float *scales, size_t n, size_t block, float *out);

#endif
