/* Which weights a prompt tile prefetches while it computes: plain integer arithmetic shared by
 * the register tiles of every ISA (matmul_avx2.c, matmul_avx512.c, src/quant/matmul_*avx512.c). */
#ifndef LB_KERNELS_CPU_TILE_PF_H
#define LB_KERNELS_CPU_TILE_PF_H
#include <stddef.h>
#include <stdint.h>

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
