/* AVX-512 VNNI matmul kernels for Q4_0 and Q8_0 weights (vpdpbusd on 512-bit registers).
 *
 * vpdpbusd multiplies unsigned bytes by signed bytes, four products per int32 lane. Both weight
 * formats are made unsigned by an offset: Q4_0 codes q = w + 8 are already 0..15, Q8_0 bytes
 * become w + 128 (xor 0x80). The offset's contribution, offset * sum(x), depends only on the
 * activations, so the preparation step computes it once per token and stores it, negated, as
 * the accumulator's starting value: each block's integer sum then comes out exactly.
 *
 * Activations are prepared once per call in a layout made for this kernel, per pair of blocks
 * (64 elements, 192 bytes): the 64 int8 codes (Q8_0 quantization, the same codes the scalar
 * twin uses), 16 int32 starting values (-offset * sum of the 4 codes of each lane) and 16 float
 * scales (lanes 0-7 the first block's, 8-15 the second's). A weight pair is unpacked into the
 * same element order, so one vpdpbusd covers 64 multiply-adds of a (row, token) pair.
 *
 * Register tile: RT = 4 rows x TT = 4 tokens of 16-lane float accumulators (16 of the 32 zmm):
 * each unpacked weight vector serves four tokens, each activation vector four rows. Prompt
 * batches are blocked: TB tokens x KP pairs of activations (384 KiB) stay in L2 while every row
 * tile passes over them, a row tile's KP pairs (2.3 KiB of Q4_0) stay in L1 across the tokens,
 * so each weight byte comes from memory once per TB tokens. Only called after
 * lb_cpu_has_avx512_vnni(). */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/tile_avx512.h"
#include "quant/blocks.h"
#include "quant/matmul_quant_avx512.h"
#include "quant/quant.h"

#define LB_AI static inline __attribute__((always_inline))
/* Unrolled early, the tile loops let GCC keep the accumulators in registers. */
#define LB_UNROLL _Pragma("GCC unroll 8")

#define PAIR_BYTES 192 /* 64 codes, 16 int32 starting values, 16 float scales */
#define TB 64          /* tokens per block */
#define KP 32          /* block pairs (64 elements each) per k chunk */
#define RT 4           /* rows per register tile */
#define TT 4           /* tokens per register tile */
#define PF 1024        /* one token: prefetch distance on the weight row, bytes */

size_t lb_matmul_prep_size_vnni(int64_t k) {
    return (size_t)((k / LB_QK + 1) / 2) * PAIR_BYTES;
}

/* The prepared pair p of x: codes of blocks 2p, 2p+1 (zero when 2p+1 is past the row), the
 * starting values for a weight offset `off`, and the scales. */
static void prep_pair(const float *x, int two, int off, uint8_t *dst) {
    lb_block_q8_0 q[2];
    memset(q, 0, sizeof q);
    lb_quantize_row_q8_0_avx2(x, q, two ? 2 * LB_QK : LB_QK);
    __m512i codes = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q[0].qs)),
                                       _mm256_loadu_si256((const __m256i *)q[1].qs), 1);
    __m512i lane_sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), codes);
    __m512i start = _mm512_mullo_epi32(lane_sum, _mm512_set1_epi32(-off));
    __m512 d = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(lb_fp16_to_f32(q[0].d)),
                                    _mm512_set1_ps(two ? lb_fp16_to_f32(q[1].d) : 0.0f));
    _mm512_storeu_si512(dst, codes);
    _mm512_storeu_si512(dst + 64, start);
    _mm512_storeu_ps(dst + 128, d);
}

static void prep_row(const float *x, int64_t k, void *dst, int off) {
    int64_t nb = k / LB_QK;
    uint8_t *o = dst;
    for (int64_t b = 0; b < nb; b += 2, o += PAIR_BYTES) prep_pair(x + b * LB_QK, b + 1 < nb, off, o);
}

void lb_matmul_prep_q4_0_vnni(const float *x, int64_t k, void *dst) { prep_row(x, k, dst, 8); }
void lb_matmul_prep_q8_0_vnni(const float *x, int64_t k, void *dst) { prep_row(x, k, dst, 128); }

/* Weight pair at block b as unsigned bytes in the activation order (block b's 32 elements,
 * then block b+1's; zero for the missing second block when two == 0) and its scales. */
LB_AI __m512i load_w(int q4, const uint8_t *b, int two) {
    if (q4) {
        const lb_block_q4_0 *w = (const lb_block_q4_0 *)(const void *)b;
        __m128i lo = _mm_loadu_si128((const __m128i *)w[0].qs);
        /* [qs0, qs0, qs1, qs1]; the second copy of each is shifted to its high nibbles */
        __m512i z = two ? _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(lo), 0xFF00,
                                                      _mm_loadu_si128((const __m128i *)w[1].qs))
                        : _mm512_maskz_broadcast_i32x4(0x00FF, lo);
        z = _mm512_srlv_epi64(z, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
        return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    }
    const lb_block_q8_0 *w = (const lb_block_q8_0 *)(const void *)b;
    __m256i lo = _mm256_loadu_si256((const __m256i *)w[0].qs);
    __m512i z = two ? _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)w[1].qs), 1)
                    : _mm512_zextsi256_si512(lo);
    /* the missing half becomes 128, multiplied by zero codes */
    return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
}

LB_AI __m512 load_dw(int q4, const uint8_t *b, int two) {
    uint16_t d0, d1 = 0;
    size_t bs = q4 ? sizeof(lb_block_q4_0) : sizeof(lb_block_q8_0);
    memcpy(&d0, b, 2);
    if (two) memcpy(&d1, b + bs, 2);
    /* both halves converted at once, then lane 0 to lanes 0-7 and lane 1 to lanes 8-15 */
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)d0 | (uint32_t)d1 << 16)));
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(f));
}

/* One pair step of an R x T tile: acc[r][t] += sum over lanes of start + w . x, scaled; rows
 * pf + q * wrb, q < npf, prefetched as far in as pair p is past p0 (see tokens). */
LB_AI void step(int q4, int R, int T, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb,
                int64_t p, int two, __m512 acc[RT][TT], const uint8_t *pf, int npf, int64_t p0) {
    size_t bs = q4 ? sizeof(lb_block_q4_0) : sizeof(lb_block_q8_0);
    for (int q = 0; q < npf; q++) _mm_prefetch((const char *)pf + q * wrb + (size_t)(p - p0) * 2 * bs, _MM_HINT_T0);
    __m512i wv[RT];
    __m512 dw[RT];
    LB_UNROLL
    for (int r = 0; r < R; r++) {
        const uint8_t *b = w + r * wrb + (size_t)(2 * p) * bs;
        if (T == 1) _mm_prefetch((const char *)b + PF, _MM_HINT_T1);
        wv[r] = load_w(q4, b, two);
        dw[r] = load_dw(q4, b, two);
    }
    LB_UNROLL
    for (int t = 0; t < T; t++) {
        const uint8_t *xp = x + t * xrb + (size_t)p * PAIR_BYTES;
        __m512i xa = _mm512_loadu_si512(xp), st = _mm512_loadu_si512(xp + 64);
        __m512 dx = _mm512_loadu_ps((const float *)(const void *)(xp + 128));
        LB_UNROLL
        for (int r = 0; r < R; r++) {
            __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st, wv[r], xa));
            acc[r][t] = _mm512_fmadd_ps(s, _mm512_mul_ps(dw[r], dx), acc[r][t]);
        }
    }
}

/* y[t * ldy + r] (+)= rows r < R of w against tokens t < T of x over pairs [p0, p1) of a row
 * of nb blocks (the last pair is half when nb is odd). */
LB_AI void tile(int q4, int R, int T, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb,
                int64_t p0, int64_t p1, int64_t nb, float *y, int64_t ldy, int add, const uint8_t *pf, int npf) {
    __m512 acc[RT][TT];
    LB_UNROLL
    for (int r = 0; r < R; r++)
        LB_UNROLL
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t full = nb / 2 < p1 ? nb / 2 : p1, p = p0;
    for (; p < full; p++) step(q4, R, T, w, wrb, x, xrb, p, 1, acc, pf, npf, p0);
    if (p < p1) step(q4, R, T, w, wrb, x, xrb, p, 0, acc, pf, npf, p0);
    float v[4 * TT] = {0}; /* lanes of rows past R stay unstored */
    LB_UNROLL
    for (int t = 0; t < T; t++)
        LB_UNROLL
        for (int r = 0; r < R; r++) v[4 * t + r] = _mm512_reduce_add_ps(acc[r][t]);
    lb_tile_store4(y, ldy, R, T, v, add);
}

/* Tokens [t0, t1) against R rows at w (row r of the output), pairs [p0, p1); the token tiles
 * prefetch the next row tile's chunk from pf (lb_tile_pf: why and which rows). */
LB_AI void tokens(int q4, int R, const lb_matmul_args *a, int64_t r, int64_t t0, int64_t t1, int64_t p0,
                  int64_t p1, int add, const uint8_t *pf) {
    const uint8_t *w = a->w + (size_t)r * a->w_row_bytes, *x = a->x;
    const size_t wrb = a->w_row_bytes, xrb = a->x_row_bytes;
    const int64_t nb = a->k / LB_QK;
    const int n_tiles = (int)((t1 - t0 + TT - 1) / TT);
    int64_t t = t0;
    int j = 0, n;
    const uint8_t *q;
    for (; t + TT <= t1; t += TT, j++) {
        q = lb_tile_pf(pf, wrb, j, n_tiles, RT, &n);
        tile(q4, R, TT, w, wrb, x + t * xrb, xrb, p0, p1, nb, a->y + t * a->rows + r, a->rows, add, q, n);
    }
    const uint8_t *xt = x + t * xrb;
    float *yt = a->y + t * a->rows + r;
    q = lb_tile_pf(pf, wrb, j, n_tiles, RT, &n);
    switch (t1 - t) { /* constant widths, so each tile is fully unrolled */
    case 3: tile(q4, R, 3, w, wrb, xt, xrb, p0, p1, nb, yt, a->rows, add, q, n); break;
    case 2: tile(q4, R, 2, w, wrb, xt, xrb, p0, p1, nb, yt, a->rows, add, q, n); break;
    case 1: tile(q4, R, 1, w, wrb, xt, xrb, p0, p1, nb, yt, a->rows, add, q, n); break;
    default: break;
    }
}

/* Every path sums a (row, token) value in the same order (pairs in order within KP-pair chunks,
 * chunks added in order), so a token's result does not depend on the rest of its batch. */
LB_AI void rows_any(int q4, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const int64_t np = (a->k / LB_QK + 1) / 2;
    const size_t pair = 2 * (q4 ? sizeof(lb_block_q4_0) : sizeof(lb_block_q8_0));
    if (a->n_tok == 1) { /* one row at a time: a single prefetched stream (measured faster from
                          * memory than four interleaved ones), each row read once */
        for (int64_t r = r0; r < r1; r++)
            for (int64_t p0 = 0; p0 < np; p0 += KP)
                tokens(q4, 1, a, r, 0, 1, p0, p0 + KP < np ? p0 + KP : np, p0 > 0, NULL);
        return;
    }
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        int64_t te = tb + TB < a->n_tok ? tb + TB : a->n_tok;
        for (int64_t p0 = 0; p0 < np; p0 += KP) {
            int64_t p1 = p0 + KP < np ? p0 + KP : np;
            int64_t r = r0;
            for (; r + RT <= r1; r += RT) {
                const uint8_t *pf = lb_tile_next(a->w, a->w_row_bytes, r, r0, r1, RT, p0 * pair, p1 * pair, p1 < np,
                                                 te < a->n_tok);
                tokens(q4, RT, a, r, tb, te, p0, p1, p0 > 0, pf);
            }
            for (; r < r1; r++) tokens(q4, 1, a, r, tb, te, p0, p1, p0 > 0, NULL);
        }
    }
}

void lb_matmul_rows_q4_0_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_any(1, a, r0, r1); }
void lb_matmul_rows_q8_0_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_any(0, a, r0, r1); }
