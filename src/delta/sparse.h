/* Sparse and int8 deltas: internal kernels behind the public lb_*_delta_* functions (lowbit.h).
 * Scalar references and AVX2 versions (call the AVX2 ones only when lb_cpu_has_avx2()). */
#ifndef LB_DELTA_SPARSE_H
#define LB_DELTA_SPARSE_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "lowbit.h"

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

/* Scalar steps shared by both int8 quantizers (the AVX2 one uses them for its tails).
 * amax joined with the largest |x| bit pattern of x[0..m): patterns order like the values,
 * NaN/inf sort above finite. */
static inline uint32_t lb_delta_absbits_max(const float *x, size_t m, uint32_t amax) {
    for (size_t i = 0; i < m; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u &= 0x7fffffffu;
        if (u > amax) amax = u;
    }
    return amax;
}

/* The block scale for the finite |x| bit pattern amax; *inv = 1/scale, or 0 when scale is 0. */
static inline float lb_delta_int8_scale(uint32_t amax, float *inv) {
    float a;
    memcpy(&a, &amax, 4);
    float scale = a / 127.0f;
    *inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    return scale;
}

/* q[i] = x[i] * inv rounded to nearest, clamped to [-127, 127], for i in [0, m). */
static inline void lb_delta_int8_round(const float *x, size_t m, float inv, int8_t *q) {
    for (size_t i = 0; i < m; i++) {
        float r = nearbyintf(x[i] * inv);
        q[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
    }
}

#endif
