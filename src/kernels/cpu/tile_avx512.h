/* The output side of the AVX-512 register tiles (matmul_avx512.c, src/quant/matmul_*avx512.c):
 * every tile covers at most 4 rows, and moving its sums between y and a [token][4 rows] array
 * is the same masked code for all of them. Include only from files built with AVX-512 VL. */
#ifndef LB_KERNELS_CPU_TILE_AVX512_H
#define LB_KERNELS_CPU_TILE_AVX512_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/tile_pf.h"

/* y[t * ldy + r] = v[4t + r] (add: y[t * ldy + r] + v[4t + r]) for r < R <= 4, t < T. The add
 * is y + v, the scalar twins' order. */
static inline __attribute__((always_inline)) void lb_tile_store4(float *y, int64_t ldy, int R, int T, const float *v,
                                                                 int add) {
    __mmask8 m = (__mmask8)((1u << R) - 1);
    for (int t = 0; t < T; t++) {
        __m128 s = _mm_loadu_ps(v + 4 * t);
        if (add) s = _mm_add_ps(_mm_maskz_loadu_ps(m, y + t * ldy), s);
        _mm_mask_storeu_ps(y + t * ldy, m, s);
    }
}

/* v[4t + r] = y[t * ldy + r] for r < R, t < T; the other lanes of the T rows of v become 0
 * (a tile that continues the sums already in y, in order). */
static inline __attribute__((always_inline)) void lb_tile_load4(const float *y, int64_t ldy, int R, int T, float *v) {
    __mmask8 m = (__mmask8)((1u << R) - 1);
    for (int t = 0; t < T; t++) _mm_storeu_ps(v + 4 * t, _mm_maskz_loadu_ps(m, y + t * ldy));
}

#endif
