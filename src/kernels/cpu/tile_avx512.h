/* The output side of the AVX-512 register tiles (matmul_avx512.c, src/quant/matmul_*avx512.c):
 * every tile covers at most 4 rows, and moving its sums between y and a [token][4 rows] array
 * is the same masked code for all of them. Include only from files built with AVX-512 VL. */
#ifndef LB_KERNELS_CPU_TILE_AVX512_H
#define LB_KERNELS_CPU_TILE_AVX512_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

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

/* Prefetching the next row tile while this one computes: in a model the weights come from
 * memory once per token block, and left to the hardware the first token tile of each row tile
 * waits on them (it reads as fast as the multiply-adds go, several times one core's share of
 * the bandwidth). Token tile j of n_tiles prefetches rows [lo, lo + *n) of the next row tile
 * of `rows` rows (spread so each tile issues a share), starting at pf (NULL: nothing). */
static inline const uint8_t *lb_tile_pf(const uint8_t *pf, size_t wrb, int j, int n_tiles, int rows, int *n) {
    int lo = (j * rows + n_tiles - 1) / n_tiles, hi = ((j + 1) * rows + n_tiles - 1) / n_tiles;
    *n = pf ? hi - lo : 0;
    return pf ? pf + (size_t)lo * wrb : NULL;
}

/* Where the chunk of the row tile computed after row tile r (of `rows` rows, in [r0, r1)) starts,
 * the loops going row tiles, then k chunks, then token blocks: `at` is this chunk's byte offset
 * in a row, `next_at` the next k chunk's. NULL when the next is a single-row remainder or none. */
static inline const uint8_t *lb_tile_next(const uint8_t *w, size_t wrb, int64_t r, int64_t r0, int64_t r1, int rows,
                                          size_t at, size_t next_at, int more_k, int more_tok) {
    if (r + 2 * rows <= r1) return w + (size_t)(r + rows) * wrb + at;
    if (r0 + rows > r1) return NULL;
    if (more_k) return w + (size_t)r0 * wrb + next_at;
    return more_tok ? w + (size_t)r0 * wrb : NULL;
}

#endif
