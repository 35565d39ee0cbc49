/* AVX-512 VNNI kernel of the 8-row interleaved Q4_0 layout (repack.h). One 512-bit register
 * holds two row groups side by side (lanes 0-7 group g, lanes 8-15 group g + 1), so a chunk
 * load covers 16 rows and one vpdpbusd with a broadcast activation word adds 4 products to each
 * of the 16 (row, token) sums: unsigned codes 0..15 times signed activations, summed exactly in
 * int32 (no int16 step as in the AVX2 kernel). A single last group fills both halves and
 * stores only the low one.
 *
 * The activations get their own layout (lb_repack_prep_avx512): per token the 32 codes of
 * every block back to back, then per block -8 sum x (the offset of the codes, the sum's
 * starting value) and the scale as a float, so each is one broadcast operand in memory.
 *
 * The float steps are those of the scalar twin: per (row, token), block by block in K order,
 * d = dw * dx, sum += d * (float)s, multiply then add (built with -ffp-contract=off). Splitting
 * K into chunks stores a sum to y and reloads it, which changes no bit: bit for bit the scalar
 * results, whatever the tile or the batch. Only called after lb_cpu_has_avx512_vnni(). */
#include <immintrin.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/repack.h"

#define TT 8    /* tokens per register tile: 8 unpacked chunks + 8 sums + temporaries of 32 zmm */
#define KB 64   /* blocks per k chunk: two groups' chunk is 18 KiB, resident in L1 across tokens */
#define TB 64   /* tokens per block: their prepared activations stay in L2 */
#define PF 2048 /* generation: prefetch distance on each group's stream, bytes */
#define AI static inline __attribute__((always_inline))

/* ---- activations ---- */

size_t lb_repack_prep_size_avx512(int64_t k) {
    return (size_t)(k / LB_QK) * (LB_QK + 2 * sizeof(int32_t));
}

static inline int32_t *prep_neg(void *prep, int64_t nb) { return (int32_t *)(void *)((uint8_t *)prep + nb * LB_QK); }
static inline float *prep_d(void *prep, int64_t nb) { return (float *)(void *)((uint8_t *)prep + nb * (LB_QK + 4)); }

/* The codes and scales of lb_quantize_row_q8_0_avx2 (bit-equal to the scalar quantizer). */
void lb_repack_prep_avx512(const float *x, int64_t k, void *dst) {
    int64_t nb = k / LB_QK;
    int8_t *qs = dst;
    int32_t *neg = prep_neg(dst, nb);
    float *d = prep_d(dst, nb);
    for (int64_t b = 0; b < nb; b++) {
        lb_block_q8_0 q;
        lb_quantize_row_q8_0_avx2(x + b * LB_QK, &q, LB_QK);
        memcpy(qs + b * LB_QK, q.qs, LB_QK);
        int32_t s = 0;
        for (int j = 0; j < LB_QK; j++) s += q.qs[j];
        neg[b] = -8 * s;
        d[b] = lb_fp16_to_f32(q.d);
    }
}

/* ---- kernel ---- */

AI __m512i bcast_word(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* One prepared token: its codes, starting values and scales. */
typedef struct tok {
    const int8_t *qs;
    const int32_t *neg;
    const float *d;
} tok;

/* ys[t][0..16) (or [0..8) when half) for the nt tokens xs[t] against blocks [b0, b1) of groups
 * w0, w1, continuing the sums already in ys when add. */
AI void tile(const lb_block_q4_0x8 *w0, const lb_block_q4_0x8 *w1, const tok *xs, int64_t b0, int64_t b1, int nt,
             float *const *ys, int half, int add, int pf) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __mmask16 keep = half ? 0x00FF : 0xFFFF;
    __m512 acc[TT];
    for (int t = 0; t < nt; t++) acc[t] = add ? _mm512_maskz_loadu_ps(keep, ys[t]) : _mm512_setzero_ps();
    for (int64_t b = b0; b < b1; b++) {
        if (pf) {
            /* a block is 144 bytes: three lines from its start cover it with the next one's */
            for (int l = 0; l < 3; l++) {
                _mm_prefetch((const char *)&w0[b] + PF + 64 * l, _MM_HINT_T0);
                if (!half) _mm_prefetch((const char *)&w1[b] + PF + 64 * l, _MM_HINT_T0);
            }
        }
        __m512i lo[4], hi[4];
        for (int c = 0; c < 4; c++) {
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)w0[b].qs[c])),
                                           _mm256_loadu_si256((const __m256i *)(const void *)w1[b].qs[c]), 1);
            lo[c] = _mm512_and_si512(v, m4);
            hi[c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        __m256i dh = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)w0[b].d)),
                                             _mm_loadu_si128((const __m128i *)(const void *)w1[b].d), 1);
        __m512 dw = _mm512_cvtph_ps(dh);
        for (int t = 0; t < nt; t++) {
            const int8_t *x = xs[t].qs + b * LB_QK;
            /* two chains of four: the latency of one chain of eight held the tile back */
            __m512i s = _mm512_set1_epi32(xs[t].neg[b]), s2 = _mm512_setzero_si512();
            for (int c = 0; c < 4; c++) {
                s = _mm512_dpbusd_epi32(s, lo[c], bcast_word(x + 4 * c));
                s2 = _mm512_dpbusd_epi32(s2, hi[c], bcast_word(x + 16 + 4 * c));
            }
            s = _mm512_add_epi32(s, s2);
            __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(xs[t].d[b]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(d, _mm512_cvtepi32_ps(s)));
        }
    }
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(ys[t], keep, acc[t]);
}

typedef void (*tile_fn)(const lb_block_q4_0x8 *w0, const lb_block_q4_0x8 *w1, const tok *xs, int64_t b0, int64_t b1,
                        float *const *ys, int half, int add, int pf);
/* one function per token count so the token loops unroll with constant bounds */
#define SHAPE(NT)                                                                                                  \
    static void tile_##NT(const lb_block_q4_0x8 *w0, const lb_block_q4_0x8 *w1, const tok *xs, int64_t b0,         \
                          int64_t b1, float *const *ys, int half, int add, int pf) {                               \
        tile(w0, w1, xs, b0, b1, NT, ys, half, add, pf);                                                           \
    }
SHAPE(1) SHAPE(2) SHAPE(3) SHAPE(4) SHAPE(5) SHAPE(6) SHAPE(7) SHAPE(8)
#undef SHAPE
static const tile_fn g_shapes[TT] = {tile_1, tile_2, tile_3, tile_4, tile_5, tile_6, tile_7, tile_8};

/* Tokens [t0, t1) against the group pair at row g, blocks [b0, b1). */
static void tokens(const lb_matmul_args *a, int64_t g, int64_t r1, int64_t t0, int64_t t1, int64_t b0, int64_t b1,
                   int pf) {
    const int64_t nb = a->k / LB_QK;
    const lb_block_q4_0x8 *w0 = (const lb_block_q4_0x8 *)(const void *)(a->w + (size_t)g * a->w_row_bytes);
    int half = g + 2 * LB_R8 > r1;
    const lb_block_q4_0x8 *w1 = half ? w0 : w0 + nb;
    for (int64_t t = t0; t < t1; t += TT) {
        int nt = t1 - t < TT ? (int)(t1 - t) : TT;
        tok xs[TT];
        float *ys[TT];
        for (int j = 0; j < nt; j++) {
            uint8_t *p = (uint8_t *)(uintptr_t)a->x + (size_t)(t + j) * a->x_row_bytes;
            xs[j] = (tok){(const int8_t *)p, prep_neg(p, nb), prep_d(p, nb)};
            ys[j] = a->y + (t + j) * a->rows + g;
        }
        g_shapes[nt - 1](w0, w1, xs, b0, b1, ys, half, b0 > 0, pf);
    }
}

/* Generation (up to one tile of tokens): each pair of groups over the whole K in one pass, its
 * two weight streams prefetched. Prompts: token blocks, then group pairs, then k chunks, so a
 * pair's chunk stays in L1 while every token tile passes over it. */
void lb_matmul_rows_q4_0x8_avx512(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->k / LB_QK;
    if (a->n_tok <= TT) {
        for (int64_t g = r0; g < r1; g += 2 * LB_R8) tokens(a, g, r1, 0, a->n_tok, 0, nb, 1);
        return;
    }
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        int64_t te = tb + TB < a->n_tok ? tb + TB : a->n_tok;
        for (int64_t g = r0; g < r1; g += 2 * LB_R8)
            for (int64_t b0 = 0; b0 < nb; b0 += KB) tokens(a, g, r1, tb, te, b0, b0 + KB < nb ? b0 + KB : nb, 0);
    }
}
