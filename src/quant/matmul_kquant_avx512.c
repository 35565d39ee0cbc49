/* AVX-512 VNNI matmul kernels for Q4_K and Q6_K weights: register tiles of 4 rows x 4 tokens.
 *
 * A Q4_K super-block (256 elements) holds 8 sub-blocks of 32 with a 6-bit scale and min each.
 * Per (row, token) and super-block the kernel computes the scalar twin's two integers exactly:
 * isum = sum_j scale_j * (codes_j . x_j) and msum = sum_j min_j * (sum of x_j), then the same
 * float expression d dx isum - dmin dx msum added in block order, so its results equal the
 * scalar kernel's bit for bit, whatever the batch. Q6_K (16 sub-blocks of 16, signed int8
 * scales, codes q + 32) is the same tile with isum = sum scale_j (codes_j . x_j) - 32 sum
 * scale_j bsum_j and no min term.
 *
 * Inner step, 64 elements of a (row, token) pair: vpmaddubsw (unsigned 4-bit codes x signed
 * int8 activations, pairs to int16: |2 x 63 x 128| fits) then vpdpwssd with the sub-block
 * scales as int16 (pairs to int32, accumulated): two instructions, the scale multiply fused.
 * At the end of a super-block the 16 int32 accumulators of the tile are reduced into one
 * vector whose lane 4t + r is (row r, token t), and the tile's 16 float sums live in one
 * register.
 *
 * Weights are decoded once per row tile and k chunk into a panel (unpacked codes, scale
 * vectors, mins, d) that every token tile of the token block reuses from L1. Activations are
 * prepared once per call: the Q8_K blocks (for the one-token path, the AVX2 dot product) and a
 * copy made for the tile (64-byte aligned codes, pair sums of bsums, d). */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/tile_avx512.h"
#include "quant/blocks.h"
#include "quant/matmul_quant_avx512.h"
#include "quant/quant.h"

#define LB_AI static inline __attribute__((always_inline))
/* An empty asm the compiler cannot see through: keeps a product from being fused into an FMA,
 * so the float expression rounds as the scalar twin's does. */
#define LB_OPAQUE(v) __asm__("" : "+v"(v))

#define XB 320   /* tile copy of one activation block: 256 codes, 32 bytes of sums, d, padding */
#define XS_OFF 256
#define XD_OFF 288
#define PB 2240  /* panel bytes per super-block of a row tile (see decode_block) */
#define P_SC 1024
#define P_MIN 2048
#define P_D 2176
#define P_DMIN 2192
#define KB 8     /* super-blocks per k chunk: a 17 KiB panel */
#define TB 64    /* tokens per block: 64 x 8 x 320 bytes = 160 KiB of L2 */

static size_t head_bytes(int64_t nb) { return ((size_t)nb * sizeof(lb_block_q8_K) + 63) / 64 * 64; }

size_t lb_matmul_prep_size_k_vnni(int64_t k) {
    int64_t nb = k / LB_QK_K;
    return head_bytes(nb) + (size_t)nb * XB;
}

/* Q4_K's tile takes the 8 sums of sub-block pairs (the mins cover 32 elements), Q6_K's the 16
 * bsums (its scales cover 16). */
static void prep(int q6, const float *x, int64_t k, void *dst) {
    int64_t nb = k / LB_QK_K;
    lb_quantize_row_q8_K_avx2(x, dst, k);
    const lb_block_q8_K *q = dst;
    uint8_t *o = (uint8_t *)dst + head_bytes(nb);
    for (int64_t b = 0; b < nb; b++, o += XB) {
        memcpy(o, q[b].qs, LB_QK_K);
        int16_t s[16] = {0};
        for (int j = 0; j < 16; j++) s[j] = q6 ? q[b].bsums[j] : j < 8 ? (int16_t)(q[b].bsums[2 * j] + q[b].bsums[2 * j + 1]) : 0;
        memcpy(o + XS_OFF, s, sizeof s); /* pair sums: |.| <= 4096 */
        memcpy(o + XD_OFF, &q[b].d, 4);
    }
}
void lb_matmul_prep_q4_K_vnni(const float *x, int64_t k, void *dst) { prep(0, x, k, dst); }
void lb_matmul_prep_q6_K_vnni(const float *x, int64_t k, void *dst) { prep(1, x, k, dst); }

/* Panel of one super-block for rows r < R (rows R..3 zero: their lanes come out 0, unstored):
 * [0, 1024) codes, row r chunk c at 256r + 64c, elements 64c..64c+63 in the activation order;
 * [1024, 2048) the int16 scale of each code pair's sub-block, same places; [2048, 2176) the
 * integer correction's row factors, 16 bytes per pair i, dword r = two int16 of row r (Q4_K: mins
 * 2i and 2i + 1, pairs 0-3; Q6_K: scales 2i and 2i + 1, pairs 0-7); then d and dmin of the 4 rows
 * as floats (Q6_K: dmin 0). */
static void decode_q4_K(const lb_block_q4_K *b, int r, uint8_t *p) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    int16_t *mins = (int16_t *)(void *)(p + P_MIN);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) lb_kq_get_scale_min(j, b->scales, &sc[j], &mn[j]);
    for (int c = 0; c < 4; c++) { /* low nibbles of qs[32c..32c+32) are elements 64c + l, high 64c + 32 + l */
        __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(b->qs + 32 * c));
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, m4)),
                                       _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), 1);
        _mm512_store_si512(p + 256 * r + 64 * c, z);
        __m512i s = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(sc[2 * c]), _mm512_set1_epi16(sc[2 * c + 1]));
        _mm512_store_si512(p + P_SC + 256 * r + 64 * c, s);
    }
    for (int i = 0; i < 4; i++) {
        mins[8 * i + 2 * r] = mn[2 * i];
        mins[8 * i + 2 * r + 1] = mn[2 * i + 1];
    }
    ((float *)(void *)(p + P_D))[r] = lb_fp16_to_f32(b->d);
    ((float *)(void *)(p + P_DMIN))[r] = lb_fp16_to_f32(b->dmin);
}

/* Q6_K element e = 128h + 32g + l: nibble g / 2 of ql[64h + 32(g & 1) + l], bits 2g of
 * qh[32h + l] on top; chunk 2h + 0 holds g = 0, 1 and chunk 2h + 1 holds g = 2, 3. */
static void decode_q6_K(const lb_block_q6_K *b, int r, uint8_t *p) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x30);
    int16_t *fac = (int16_t *)(void *)(p + P_MIN);
    __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)b->scales)));
    for (int h = 0; h < 2; h++) {
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b->qh + 32 * h));
        __m256i g0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
        __m256i g1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
        __m256i g2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3));
        __m256i g3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                     _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
        _mm512_store_si512(p + 256 * r + 128 * h, _mm512_inserti64x4(_mm512_castsi256_si512(g0), g1, 1));
        _mm512_store_si512(p + 256 * r + 128 * h + 64, _mm512_inserti64x4(_mm512_castsi256_si512(g2), g3, 1));
    }
    for (int c = 0; c < 4; c++) { /* int16 lane k of chunk c: sub-block 4c + k / 8 */
        __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * c)),
                                       _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20,
                                                                          19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8,
                                                                          7, 6, 5, 4, 3, 2, 1, 0), 3));
        _mm512_store_si512(p + P_SC + 256 * r + 64 * c, _mm512_permutexvar_epi16(idx, sc16));
    }
    for (int i = 0; i < 8; i++) {
        fac[8 * i + 2 * r] = b->scales[2 * i];
        fac[8 * i + 2 * r + 1] = b->scales[2 * i + 1];
    }
    ((float *)(void *)(p + P_D))[r] = lb_fp16_to_f32(b->d);
}

static void decode_block(int q6, int R, const uint8_t *w, size_t wrb, uint8_t *p) {
    memset(p, 0, PB);
    for (int r = 0; r < R; r++) {
        if (q6) decode_q6_K((const lb_block_q6_K *)(const void *)(w + r * wrb), r, p);
        else decode_q4_K((const lb_block_q4_K *)(const void *)(w + r * wrb), r, p);
    }
}

/* Lane sums of a[0..3] (rows of one token) as 4 int32 partials per 128-bit lane: lane L, dword r
 * holds the sum of a[r]'s dwords in lane L. */
LB_AI __m512i sum4(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
    __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
    __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
}

/* Two vectors of 4 lanes each -> lane pairs summed: [a0+a1, a2+a3, b0+b1, b2+b3]. */
LB_AI __m512i fold(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* One super-block of the tile: returns the float terms d dx isum - dmin dx msum, lane 4t + r.
 * x[t] points at token t's tile copy of this block. */
LB_AI __m512 block(int q6, const uint8_t *p, const uint8_t *const x[4]) {
    __m512i acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < 4; t++) acc[r][t] = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
        __m512i wv[4], sc[4];
        for (int r = 0; r < 4; r++) {
            wv[r] = _mm512_load_si512(p + 256 * r + 64 * c);
            sc[r] = _mm512_load_si512(p + P_SC + 256 * r + 64 * c);
        }
        for (int t = 0; t < 4; t++) {
            __m512i xv = _mm512_load_si512(x[t] + 64 * c);
            for (int r = 0; r < 4; r++)
                acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], _mm512_maddubs_epi16(wv[r], xv), sc[r]);
        }
    }
    __m512i s[4];
    for (int t = 0; t < 4; t++) s[t] = sum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
    __m512i isum = fold(fold(s[0], s[1]), fold(s[2], s[3]));
    /* the correction: 128-bit lane t of bs holds token t's sums (Q4_K 8 pair sums, Q6_K 8 of
     * its 16 bsums); dword i broadcast meets the row factors of pair i of the 4 rows */
    __m512i msum = _mm512_setzero_si512();
    const __m128i *mp = (const __m128i *)(const void *)(p + P_MIN);
    for (int h = 0; h < (q6 ? 2 : 1); h++) {
        __m512i bs = _mm512_castsi128_si512(_mm_load_si128((const __m128i *)(const void *)(x[0] + XS_OFF + 16 * h)));
        bs = _mm512_inserti32x4(bs, _mm_load_si128((const __m128i *)(const void *)(x[1] + XS_OFF + 16 * h)), 1);
        bs = _mm512_inserti32x4(bs, _mm_load_si128((const __m128i *)(const void *)(x[2] + XS_OFF + 16 * h)), 2);
        bs = _mm512_inserti32x4(bs, _mm_load_si128((const __m128i *)(const void *)(x[3] + XS_OFF + 16 * h)), 3);
        msum = _mm512_dpwssd_epi32(msum, _mm512_broadcast_i32x4(_mm_load_si128(mp + 4 * h)), _mm512_shuffle_epi32(bs, 0x00));
        msum = _mm512_dpwssd_epi32(msum, _mm512_broadcast_i32x4(_mm_load_si128(mp + 4 * h + 1)), _mm512_shuffle_epi32(bs, 0x55));
        msum = _mm512_dpwssd_epi32(msum, _mm512_broadcast_i32x4(_mm_load_si128(mp + 4 * h + 2)), _mm512_shuffle_epi32(bs, 0xAA));
        msum = _mm512_dpwssd_epi32(msum, _mm512_broadcast_i32x4(_mm_load_si128(mp + 4 * h + 3)), _mm512_shuffle_epi32(bs, 0xFF));
    }
    if (q6) { /* codes are q + 32: isum = sum scale (codes . x) - 32 sum scale bsum, dmin term 0 */
        isum = _mm512_sub_epi32(isum, _mm512_slli_epi32(msum, 5));
        msum = _mm512_setzero_si512();
    }
    float dx[4];
    for (int t = 0; t < 4; t++) memcpy(&dx[t], x[t] + XD_OFF, 4);
    __m512 vdx = _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                                       _mm512_castps128_ps512(_mm_loadu_ps(dx)));
    __m512 d = _mm512_broadcast_f32x4(_mm_load_ps((const float *)(const void *)(p + P_D)));
    __m512 dm = _mm512_broadcast_f32x4(_mm_load_ps((const float *)(const void *)(p + P_DMIN)));
    __m512 a = _mm512_mul_ps(_mm512_mul_ps(d, vdx), _mm512_cvtepi32_ps(isum));
    __m512 b = _mm512_mul_ps(_mm512_mul_ps(dm, vdx), _mm512_cvtepi32_ps(msum));
    LB_OPAQUE(a);
    LB_OPAQUE(b);
    return _mm512_sub_ps(a, b);
}

/* Rows [r, r + R) x tokens [t, t + T) (R, T <= 4) over the nblk panel blocks from block b0;
 * add: continue the sums already in y (the earlier k chunks), as the scalar loop does. */
LB_AI void tile(int q6, const lb_matmul_args *a, const uint8_t *panel, int64_t nblk, int64_t b0, int64_t r, int R,
                 int64_t t, int T, int add) {
    const uint8_t *xt[4];
    const size_t tail = head_bytes(a->k / LB_QK_K);
    for (int i = 0; i < 4; i++) /* missing tokens repeat the last one, unstored */
        xt[i] = (const uint8_t *)a->x + (size_t)(t + (i < T ? i : T - 1)) * a->x_row_bytes + tail + (size_t)b0 * XB;
    float *y = a->y + t * a->rows + r;
    _Alignas(64) float buf[16] = {0}; /* lanes 4i..4i+3: token t + i, rows r..r+3 */
    if (add) lb_tile_load4(y, a->rows, R, T, buf);
    __m512 acc = _mm512_load_ps(buf);
    for (int64_t b = 0; b < nblk; b++) {
        acc = _mm512_add_ps(acc, block(q6, panel + b * PB, xt));
        for (int i = 0; i < 4; i++) xt[i] += XB;
    }
    _mm512_store_ps(buf, acc);
    lb_tile_store4(y, a->rows, R, T, buf, 0);
}

/* Token tile j's share of the next row tile's weights (lb_tile_pf: why), `bytes` per row: the
 * next panel is then decoded from cache instead of waiting on memory. */
LB_AI void prefetch_share(const uint8_t *pf, size_t wrb, int j, int n_tiles, size_t bytes) {
    int n;
    const uint8_t *q = lb_tile_pf(pf, wrb, j, n_tiles, 4, &n);
    for (int i = 0; i < n; i++)
        for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)q + i * wrb + o, _MM_HINT_T0);
}

LB_AI void rows_any(int q6, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->k / LB_QK_K;
    const size_t bsz = q6 ? sizeof(lb_block_q6_K) : sizeof(lb_block_q4_K);
    if (a->n_tok == 1) { /* generation: the plain AVX2 dot product streams each row once */
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
            a->y[r] = q6 ? lb_vec_dot_q6_K_q8_avx2((int)a->k, w, a->x) : lb_vec_dot_q4_K_q8_avx2((int)a->k, w, a->x);
        }
        return;
    }
    _Alignas(64) uint8_t panel[KB * PB];
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        int64_t te = tb + TB < a->n_tok ? tb + TB : a->n_tok;
        for (int64_t b0 = 0; b0 < nb; b0 += KB) {
            int64_t nblk = b0 + KB < nb ? KB : nb - b0;
            for (int64_t r = r0; r < r1; r += 4) {
                int R = r1 - r < 4 ? (int)(r1 - r) : 4;
                const uint8_t *w = a->w + (size_t)r * a->w_row_bytes + (size_t)b0 * bsz;
                for (int64_t b = 0; b < nblk; b++) decode_block(q6, R, w + (size_t)b * bsz, a->w_row_bytes, panel + b * PB);
                const uint8_t *pf = R < 4 ? NULL
                                          : lb_tile_next(a->w, a->w_row_bytes, r, r0, r1, 4, (size_t)b0 * bsz,
                                                         (size_t)(b0 + KB) * bsz, b0 + KB < nb, te < a->n_tok);
                int n_tiles = (int)((te - tb + 3) / 4), j = 0;
                for (int64_t t = tb; t < te; t += 4, j++) {
                    prefetch_share(pf, a->w_row_bytes, j, n_tiles, (size_t)nblk * bsz);
                    tile(q6, a, panel, nblk, b0, r, R, t, te - t < 4 ? (int)(te - t) : 4, b0 > 0);
                }
            }
        }
    }
}

void lb_matmul_rows_q4_K_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_any(0, a, r0, r1); }
void lb_matmul_rows_q6_K_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_any(1, a, r0, r1); }
