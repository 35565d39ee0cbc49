/* Prompt-batch kernels for Q4_0 and Q8_0 at AVX2: register tiles of TR weight rows x TT tokens.
 * Each weight block is unpacked once per tile and each activation block loaded once per tile,
 * with one accumulator per (row, token) held in registers. Generation (one token) runs the same
 * tile as GR rows x 1 token, so each activation block (and its 8 sum x) is loaded once for GR rows.
 *
 * Bitwise equal to the one-token dot products (lb_vec_dot_*_avx2), whatever the batch: those
 * sum block i into accumulator i % NACC (the tail after the last whole group of NACC into the
 * first) and add them (0 + 1) + (2 + 3). A tile makes NACC passes over the row, pass p visiting
 * exactly the blocks of accumulator p in the same order, so it needs TR x TT registers, not
 * TR x TT x NACC (the older 1 x 4 kernel with 16 accumulators spilled them). The integer part
 * of a block is exact in any grouping of lanes; the scale is the same float product. */
#include <immintrin.h>

#include "quant/blocks.h"
#include "quant/matmul_quant_avx2.h"
#include "quant/quant.h"

#define TR 2 /* rows per prompt tile */
#define TT 4 /* tokens per prompt tile */
#define GR 4 /* rows per generation (one-token) tile: one activation block load serves GR rows */
#define RMAX 4 /* the most rows of any tile */
#define AI static inline __attribute__((always_inline))

static inline float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
/* the fp16 h in all 8 lanes: broadcast as 16-bit, then one conversion (fewer uops than
 * converting a scalar and broadcasting the float; the same value) */
static inline __m256 f16_bcast(uint16_t h) { return _mm256_cvtph_ps(_mm_set1_epi16((short)h)); }

/* Q4_0 codes 0..15 as unsigned bytes (low nibbles = elements 0..15, high = 16..31): the 16
 * bytes in both halves, the upper half shifted, one mask */
static inline __m256i q4_0_codes(const lb_block_q4_0 *b) {
    __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
    t = _mm256_blend_epi32(t, _mm256_srli_epi16(t, 4), 0xF0);
    return _mm256_and_si256(t, _mm256_set1_epi8(0xF));
}

/* Q4_0, block i of every row and token of the tile: sum (q - 8) x = sum q x - 8 sum x in int16
 * pairs (as lb_vec_dot_q4_0_q8_avx2); the 8 sum x term is per token, shared by the rows. */
AI void q4_0_step(const lb_block_q4_0 *const *w, const lb_block_q8_0 *const *x, int i, int nr,
                  int nt, __m256 acc[RMAX][TT]) {
    const __m256i one16 = _mm256_set1_epi16(1);
    __m256i q[RMAX];
    __m256 dw[RMAX];
    for (int r = 0; r < nr; r++) q[r] = q4_0_codes(&w[r][i]), dw[r] = f16_bcast(w[r][i].d);
    for (int t = 0; t < nt; t++) {
        __m256i xv = loadu256(x[t][i].qs), m8 = _mm256_maddubs_epi16(_mm256_set1_epi8(8), xv);
        __m256 dx = f16_bcast(x[t][i].d);
        for (int r = 0; r < nr; r++) {
            __m256i p = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q[r], xv), m8), one16);
            acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), _mm256_cvtepi32_ps(p), acc[r][t]);
        }
    }
}

/* Q8_0: |w| . sign(x, w) (as lb_vec_dot_q8_0_q8_avx2); the pair sums fit: |w| <= 128, |x| <= 127 */
AI void q8_0_step(const lb_block_q8_0 *const *w, const lb_block_q8_0 *const *x, int i, int nr,
                  int nt, __m256 acc[RMAX][TT]) {
    const __m256i one16 = _mm256_set1_epi16(1);
    __m256i wv[RMAX], aw[RMAX];
    __m256 dw[RMAX];
    for (int r = 0; r < nr; r++)
        wv[r] = loadu256(w[r][i].qs), aw[r] = _mm256_sign_epi8(wv[r], wv[r]), dw[r] = f16_bcast(w[r][i].d);
    for (int t = 0; t < nt; t++) {
        __m256i xv = loadu256(x[t][i].qs);
        __m256 dx = f16_bcast(x[t][i].d);
        for (int r = 0; r < nr; r++) {
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(xv, wv[r])), one16);
            acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), _mm256_cvtepi32_ps(p), acc[r][t]);
        }
    }
}

/* One tile: NACC passes, pass p over blocks p, p + NACC, ... of the whole groups, pass 0 then
 * the tail; the pass sums are combined as the one-token kernel combines its accumulators. */
#define TILE(NAME, WBLOCK, STEP, NACC)                                                            \
    AI void NAME(const WBLOCK *const *w, const lb_block_q8_0 *const *x, int nb, int nr, int nt, \
                 float out[RMAX][TT]) {                                                            \
        __m256 part[NACC][RMAX][TT];                                                               \
        int whole = nb / NACC * NACC;                                                            \
        for (int p = 0; p < NACC; p++) {                                                         \
            __m256 acc[RMAX][TT];                                                                \
            for (int r = 0; r < nr; r++)                                                         \
                for (int t = 0; t < nt; t++) acc[r][t] = _mm256_setzero_ps();                    \
            for (int i = p; i < whole; i += NACC) STEP(w, x, i, nr, nt, acc);                    \
            if (p == 0)                                                                          \
                for (int i = whole; i < nb; i++) STEP(w, x, i, nr, nt, acc);                     \
            for (int r = 0; r < nr; r++)                                                         \
                for (int t = 0; t < nt; t++) part[p][r][t] = acc[r][t];                          \
        }                                                                                        \
        for (int r = 0; r < nr; r++)                                                             \
            for (int t = 0; t < nt; t++) {                                                       \
                __m256 s = part[0][r][t];                                                        \
                if (NACC == 4)                                                                   \
                    s = _mm256_add_ps(_mm256_add_ps(part[0][r][t], part[NACC > 1][r][t]),        \
                                      _mm256_add_ps(part[NACC > 2 ? 2 : 0][r][t],                \
                                                    part[NACC > 3 ? 3 : 0][r][t]));              \
                out[r][t] = hsum_f32(s);                                                         \
            }                                                                                    \
    }
TILE(tile_q4_0, lb_block_q4_0, q4_0_step, 4)
TILE(tile_q8_0, lb_block_q8_0, q8_0_step, 1)
#undef TILE

typedef void (*tile_fn)(const void *const *w, const lb_block_q8_0 *const *x, int nb, float out[RMAX][TT]);

/* one function per tile shape so the row and token loops unroll with constant bounds */
#define SHAPE(NAME, WBLOCK, NR, NT)                                                                \
    static void NAME##_##NR##x##NT(const void *const *w, const lb_block_q8_0 *const *x, int nb,  \
                                   float out[RMAX][TT]) {                                          \
        NAME((const WBLOCK *const *)w, x, nb, NR, NT, out);                                      \
    }
#define SHAPES(NAME, WBLOCK)                                                                       \
    SHAPE(NAME, WBLOCK, 1, 1) SHAPE(NAME, WBLOCK, 1, 2) SHAPE(NAME, WBLOCK, 1, 3)                \
    SHAPE(NAME, WBLOCK, 1, 4) SHAPE(NAME, WBLOCK, 2, 1) SHAPE(NAME, WBLOCK, 2, 2)                \
    SHAPE(NAME, WBLOCK, 2, 3) SHAPE(NAME, WBLOCK, 2, 4)                                          \
    static const tile_fn NAME##_shapes[TR][TT] = {                                               \
        {NAME##_1x1, NAME##_1x2, NAME##_1x3, NAME##_1x4},                                        \
        {NAME##_2x1, NAME##_2x2, NAME##_2x3, NAME##_2x4}};                                       \
    SHAPE(NAME, WBLOCK, 4, 1) /* GR x 1 */
SHAPES(tile_q4_0, lb_block_q4_0)
SHAPES(tile_q8_0, lb_block_q8_0)
#undef SHAPES
#undef SHAPE

/* Row tiles outer, so TR weight rows stay in L1 while every group of tokens passes over them. */
static void rows_tiled(const tile_fn shapes[TR][TT], tile_fn gen, lb_vec_dot_fn dot, const lb_matmul_args *a,
                       int64_t r0, int64_t r1) {
    const uint8_t *x = a->x;
    int nb = (int)(a->k / LB_QK);
    if (a->n_tok == 1) { /* generation: GR rows x 1 token tiles, the rest the plain dot product */
        const lb_block_q8_0 *xs[TT] = {(const lb_block_q8_0 *)x};
        int64_t r = r0;
        for (; r + GR <= r1; r += GR) {
            const void *ws[RMAX];
            float out[RMAX][TT];
            for (int i = 0; i < GR; i++) ws[i] = a->w + (size_t)(r + i) * a->w_row_bytes;
            gen(ws, xs, nb, out);
            for (int i = 0; i < GR; i++) a->y[r + i] = out[i][0];
        }
        for (; r < r1; r++) a->y[r] = dot((int)a->k, a->w + (size_t)r * a->w_row_bytes, x);
        return;
    }
    for (int64_t r = r0; r < r1; r += TR) {
        int nr = r1 - r < TR ? (int)(r1 - r) : TR;
        const void *ws[RMAX];
        for (int i = 0; i < nr; i++) ws[i] = a->w + (size_t)(r + i) * a->w_row_bytes;
        for (int64_t t = 0; t < a->n_tok; t += TT) {
            int nt = a->n_tok - t < TT ? (int)(a->n_tok - t) : TT;
            const lb_block_q8_0 *xs[TT];
            float out[RMAX][TT];
            for (int j = 0; j < nt; j++) xs[j] = (const lb_block_q8_0 *)(x + (size_t)(t + j) * a->x_row_bytes);
            shapes[nr - 1][nt - 1](ws, xs, nb, out);
            for (int i = 0; i < nr; i++)
                for (int j = 0; j < nt; j++) a->y[(t + j) * a->rows + r + i] = out[i][j];
        }
    }
}

void lb_matmul_rows_q4_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    rows_tiled(tile_q4_0_shapes, tile_q4_0_4x1, lb_vec_dot_q4_0_q8_avx2, a, r0, r1);
}

void lb_matmul_rows_q8_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    rows_tiled(tile_q8_0_shapes, tile_q8_0_4x1, lb_vec_dot_q8_0_q8_avx2, a, r0, r1);
}
