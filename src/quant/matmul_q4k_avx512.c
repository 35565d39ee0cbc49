/* AVX-512 VNNI matmul kernel for Q4_K weights: register tiles of 4 rows x 4 tokens.
 *
 * A Q4_K super-block (256 elements) holds 8 sub-blocks of 32 with a 6-bit scale and min each.
 * Per (row, token) and super-block the kernel computes the scalar twin's two integers exactly:
 * isum = sum_j scale_j * (codes_j . x_j) and msum = sum_j min_j * (sum of x_j), then the same
 * float expression d dx isum - dmin dx msum added in block order, so its results equal the
 * scalar kernel's bit for bit, whatever the batch.
 *
 * Inner step, 64 elements of a (row, token) pair: vpmaddubsw (unsigned 4-bit codes x signed
 * int8 activations, pairs to int16: |2 x 15 x 128| fits) then vpdpwssd with the sub-block
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

#include "quant/blocks.h"
#include "quant/matmul_quant_avx512.h"
#include "quant/quant.h"

#define LB_AI static inline __attribute__((always_inline))
/* An empty asm the compiler cannot see through: keeps a product from being fused into an FMA,
 * so the float expression rounds as the scalar twin's does. */
#define LB_OPAQUE(v) __asm__("" : "+v"(v))

#define XB 320   /* tile copy of one activation block: 256 codes, 8 int16 pair sums, d, padding */
#define XS_OFF 256
#define XD_OFF 272
#define PB 2176  /* panel bytes per super-block of a row tile (see decode_block) */
#define P_SC 1024
#define P_MIN 2048
#define P_D 2112
#define P_DMIN 2128
#define KB 8     /* super-blocks per k chunk: a 17 KiB panel */
#define TB 64    /* tokens per block: 64 x 8 x 320 bytes = 160 KiB of L2 */

static size_t head_bytes(int64_t nb) { return ((size_t)nb * sizeof(lb_block_q8_K) + 63) / 64 * 64; }

size_t lb_matmul_prep_size_q4_K_vnni(int64_t k) {
    int64_t nb = k / LB_QK_K;
    return head_bytes(nb) + (size_t)nb * XB;
}

void lb_matmul_prep_q4_K_vnni(const float *x, int64_t k, void *dst) {
    int64_t nb = k / LB_QK_K;
    lb_quantize_row_q8_K_avx2(x, dst, k);
    const lb_block_q8_K *q = dst;
    uint8_t *o = (uint8_t *)dst + head_bytes(nb);
    for (int64_t b = 0; b < nb; b++, o += XB) {
        memcpy(o, q[b].qs, LB_QK_K);
        int16_t s[8];
        for (int j = 0; j < 8; j++) s[j] = (int16_t)(q[b].bsums[2 * j] + q[b].bsums[2 * j + 1]); /* |.| <= 4096 */
        memcpy(o + XS_OFF, s, sizeof s);
        memcpy(o + XD_OFF, &q[b].d, 4);
    }
}

/* Panel of one super-block for rows r < R (rows R..3 zero: their lanes come out 0, unstored):
 * [0, 1024) codes, row r chunk c at 256r + 64c: the low nibbles of qs[32c..32c+32) (elements
 * 64c + l), then the high nibbles (64c + 32 + l), the activation order; [1024, 2048) int16
 * scales, row r chunk c: 16 x scale 2c then 16 x scale 2c + 1; [2048, 2112) mins, 16 bytes per
 * pair i, dword r = (min 2i, min 2i + 1) of row r; then d and dmin of the 4 rows as floats. */
static void decode_block(int R, const uint8_t *w, size_t wrb, uint8_t *p) {
    memset(p, 0, PB);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    int16_t *mins = (int16_t *)(void *)(p + P_MIN);
    float *d = (float *)(void *)(p + P_D), *dmin = (float *)(void *)(p + P_DMIN);
    for (int r = 0; r < R; r++) {
        const lb_block_q4_K *b = (const lb_block_q4_K *)(const void *)(w + r * wrb);
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) lb_kq_get_scale_min(j, b->scales, &sc[j], &mn[j]);
        for (int c = 0; c < 4; c++) {
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
        d[r] = lb_fp16_to_f32(b->d);
        dmin[r] = lb_fp16_to_f32(b->dmin);
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
LB_AI __m512 block(const uint8_t *p, const uint8_t *const x[4]) {
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
    /* msum: 128-bit lane t of bs holds token t's 8 pair sums; dword i broadcast meets the
     * mins of pair i of the 4 rows */
    __m512i bs = _mm512_castsi128_si512(_mm_load_si128((const __m128i *)(const void *)(x[0] + XS_OFF)));
    bs = _mm512_inserti32x4(bs, _mm_load_si128((const __m128i *)(const void *)(x[1] + XS_OFF)), 1);
    bs = _mm512_inserti32x4(bs, _mm_load_si128((const __m128i *)(const void *)(x[2] + XS_OFF)), 2);
    bs = _mm512_inserti32x4(bs, _mm_load_si128((const __m128i *)(const void *)(x[3] + XS_OFF)), 3);
    const __m128i *mp = (const __m128i *)(const void *)(p + P_MIN);
    __m512i msum = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_broadcast_i32x4(_mm_load_si128(mp)),
                                       _mm512_shuffle_epi32(bs, 0x00));
    msum = _mm512_dpwssd_epi32(msum, _mm512_broadcast_i32x4(_mm_load_si128(mp + 1)), _mm512_shuffle_epi32(bs, 0x55));
    msum = _mm512_dpwssd_epi32(msum, _mm512_broadcast_i32x4(_mm_load_si128(mp + 2)), _mm512_shuffle_epi32(bs, 0xAA));
    msum = _mm512_dpwssd_epi32(msum, _mm512_broadcast_i32x4(_mm_load_si128(mp + 3)), _mm512_shuffle_epi32(bs, 0xFF));
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
static void tile(const lb_matmul_args *a, const uint8_t *panel, int64_t nblk, int64_t b0, int64_t r, int R,
                 int64_t t, int T, int add) {
    const uint8_t *xt[4];
    const size_t tail = head_bytes(a->k / LB_QK_K);
    for (int i = 0; i < 4; i++) /* missing tokens repeat the last one, unstored */
        xt[i] = (const uint8_t *)a->x + (size_t)(t + (i < T ? i : T - 1)) * a->x_row_bytes + tail + (size_t)b0 * XB;
    __mmask8 rm = (__mmask8)((1u << R) - 1);
    float *y = a->y + t * a->rows + r;
    _Alignas(64) float buf[16] = {0}; /* lanes 4i..4i+3: token t + i, rows r..r+3 */
    if (add)
        for (int i = 0; i < T; i++) _mm_store_ps(buf + 4 * i, _mm_maskz_loadu_ps(rm, y + i * a->rows));
    __m512 acc = _mm512_load_ps(buf);
    for (int64_t b = 0; b < nblk; b++) {
        acc = _mm512_add_ps(acc, block(panel + b * PB, xt));
        for (int i = 0; i < 4; i++) xt[i] += XB;
    }
    _mm512_store_ps(buf, acc);
    for (int i = 0; i < T; i++) _mm_mask_storeu_ps(y + i * a->rows, rm, _mm_load_ps(buf + 4 * i));
}

void lb_matmul_rows_q4_K_vnni(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->k / LB_QK_K;
    if (a->n_tok == 1) { /* generation: the plain AVX2 dot product streams each row once */
        for (int64_t r = r0; r < r1; r++) a->y[r] = lb_vec_dot_q4_K_q8_avx2((int)a->k, a->w + (size_t)r * a->w_row_bytes, a->x);
        return;
    }
    _Alignas(64) uint8_t panel[KB * PB];
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        int64_t te = tb + TB < a->n_tok ? tb + TB : a->n_tok;
        for (int64_t b0 = 0; b0 < nb; b0 += KB) {
            int64_t nblk = b0 + KB < nb ? KB : nb - b0;
            for (int64_t r = r0; r < r1; r += 4) {
                int R = r1 - r < 4 ? (int)(r1 - r) : 4;
                const uint8_t *w = a->w + (size_t)r * a->w_row_bytes + (size_t)b0 * sizeof(lb_block_q4_K);
                for (int64_t b = 0; b < nblk; b++)
                    decode_block(R, w + (size_t)b * sizeof(lb_block_q4_K), a->w_row_bytes, panel + b * PB);
                for (int64_t t = tb; t < te; t += 4)
                    tile(a, panel, nblk, b0, r, R, t, te - t < 4 ? (int)(te - t) : 4, b0 > 0);
            }
        }
    }
}
