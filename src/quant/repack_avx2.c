/* AVX2 kernel of the 8-row interleaved Q4_0 layout (repack.h): 8 rows x up to TT tokens per
 * register tile. Per block, the 4 chunks of the group are loaded and split into nibbles once for
 * all the tile's tokens; per token, each chunk meets one 32-bit word of activations broadcast to
 * the 8 row lanes (_mm256_maddubs_epi16: unsigned codes x signed activations). The 8 products
 * of a block add up in int16 (|sum| <= 16 x 15 x 127 < 32768, activations being clamped to
 * [-127, 127]) and widen once; the block's 8 sum x comes prepared with the activations.
 * The float steps are those of the scalar twin, multiply then add, one block at a time in K
 * order (built with -ffp-contract=off so no FMA fuses them): bit for bit the scalar results.
 * Only called after lb_cpu_has_avx2(). */
#include <immintrin.h>
#include <string.h>

#include "quant/repack.h"

#define TT 4 /* tokens per tile */
#define AI static inline __attribute__((always_inline))

AI __m256i bcast_word(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* y[t][0..8) for the nt tokens xs[t] (prepared rows) against the nb blocks of one group */
AI void tile(const lb_block_q4_0x8 *w, const uint8_t *const *xs, int64_t nb, int nt, float *const *ys) {
    const __m256i m4 = _mm256_set1_epi8(0xF), one16 = _mm256_set1_epi16(1);
    const int32_t *m8[TT];
    __m256 acc[TT];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps(), m8[t] = lb_repack_prep_sums(xs[t], nb);
    for (int64_t b = 0; b < nb; b++) {
        __m256i lo[4], hi[4];
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)w[b].qs[c]);
            lo[c] = _mm256_and_si256(v, m4);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)w[b].d));
        for (int t = 0; t < nt; t++) {
            const lb_block_q8_0 *x = (const lb_block_q8_0 *)(const void *)xs[t] + b;
            __m256i s = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[c], bcast_word(x->qs + 4 * c)));
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[c], bcast_word(x->qs + 16 + 4 * c)));
            }
            __m256i is = _mm256_sub_epi32(_mm256_madd_epi16(s, one16), _mm256_set1_epi32(m8[t][b]));
            __m256 d = _mm256_mul_ps(dw, _mm256_cvtph_ps(_mm_set1_epi16((short)x->d)));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(is)));
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(ys[t], acc[t]);
}

typedef void (*tile_fn)(const lb_block_q4_0x8 *w, const uint8_t *const *xs, int64_t nb, float *const *ys);
/* one function per token count so the token loops unroll with constant bounds */
#define SHAPE(NT)                                                                                  \
    static void tile_##NT(const lb_block_q4_0x8 *w, const uint8_t *const *xs, int64_t nb, float *const *ys) { \
        tile(w, xs, nb, NT, ys);                                                                   \
    }
SHAPE(1) SHAPE(2) SHAPE(3) SHAPE(4)
#undef SHAPE
static const tile_fn g_shapes[TT] = {tile_1, tile_2, tile_3, tile_4};

/* Groups outer, so one group's blocks (k / 32 x 144 bytes) stay in L1 while every tile of
 * tokens passes over them. */
void lb_matmul_rows_q4_0x8_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    int64_t nb = a->k / LB_QK;
    for (int64_t g = r0; g < r1; g += LB_R8) {
        const lb_block_q4_0x8 *w = (const lb_block_q4_0x8 *)(const void *)(a->w + (size_t)g * a->w_row_bytes);
        for (int64_t t = 0; t < a->n_tok; t += TT) {
            int nt = a->n_tok - t < TT ? (int)(a->n_tok - t) : TT;
            const uint8_t *xs[TT];
            float *ys[TT];
            for (int j = 0; j < nt; j++) {
                xs[j] = (const uint8_t *)a->x + (size_t)(t + j) * a->x_row_bytes;
                ys[j] = a->y + (t + j) * a->rows + g;
            }
            g_shapes[nt - 1](w, xs, nb, ys);
        }
    }
}
