/* Prompt-batch kernels for Q4_K and Q6_K at AVX2: one weight row x up to KT tokens. Each
 * super-block's codes and scales are unpacked once for the KT tokens instead of once per token.
 * Generation (one token) runs 4 rows at a time (q4_vec4, q6_vec4). The integers of a super-block
 * (isum, msum, bias) are exact in any order and the float steps are the one-token kernels' own
 * (kq_accum / kq_add, one super-block after another), so a token's result is bitwise what
 * lb_vec_dot_q{4,6}_K_q8_avx2 gives it alone. */
#include <immintrin.h>

#include "quant/blocks.h"
#include "quant/kq_avx2.h"
#include "quant/matmul_quant_avx2.h"
#include "quant/quant.h"

#define KT 4
#define AI static inline __attribute__((always_inline))

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

AI void tile_q4_K(const lb_block_q4_K *w, const lb_block_q8_K *const *x, int nb, int nt, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m128 sum[KT];
    for (int t = 0; t < nt; t++) sum[t] = _mm_setzero_ps();
    for (int i = 0; i < nb; i++) {
        __m128i sc128, mn;
        k4_unpack(w[i].scales, &sc128, &mn);
        __m256i sc = _mm256_broadcastsi128_si256(sc128), acc[KT];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i b = loadu256(w[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            __m256i slo = bcast16(sc, 2 * c), shi = bcast16(sc, 2 * c + 1);
            for (int t = 0; t < nt; t++) {
                const int8_t *xq = x[t][i].qs + 64 * c;
                __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, loadu256(xq)), slo);
                __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, loadu256(xq + 32)), shi);
                acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(plo, phi));
            }
        }
        float d = _cvtsh_ss(w[i].d), dmin = _cvtsh_ss(w[i].dmin);
        for (int t = 0; t < nt; t++)
            sum[t] = kq_accum(sum[t], d, dmin, x[t][i].d, hsum_i32(acc[t]), k4_msum(mn, x[t][i].bsums));
    }
    for (int t = 0; t < nt; t++) out[t] = _mm_cvtss_f32(sum[t]);
}

/* The 8 scales of half h of a Q6_K block (sc = scales + 8h) as int16 for bcast16: lane g of the
 * low 128 bits holds sc[2g], of the high 128 bits sc[2g + 1], the pair group g's two halves of 16
 * codes use. One shuffle per group instead of building the pair from two broadcasts. */
AI __m256i q6_half_scales(const int8_t *sc) {
    __m128i s = _mm_loadl_epi64((const __m128i *)(const void *)sc);
    s = _mm_shuffle_epi8(s, _mm_setr_epi8(0, 2, 4, 6, -1, -1, -1, -1, 1, 3, 5, 7, -1, -1, -1, -1));
    return _mm256_cvtepi8_epi16(s);
}

/* 32 x sum scales[j] bsums[j] (the offset of the codes) in 8 lanes, to subtract from the lanes of
 * the code products before their one horizontal sum (exact: |total| < 2^28). */
AI __m256i q6_bias32(const lb_block_q6_K *w, const int16_t *bsums) {
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)w->scales));
    return _mm256_slli_epi32(_mm256_madd_epi16(sc16, loadu256(bsums)), 5);
}

/* The integer dot product of one Q6_K block with one Q8_K block, in 8 lanes (their sum is the
 * isum lb_vec_dot_q6_K_q8_avx2 computes). */
AI __m256i q6_block_lanes(const lb_block_q6_K *w, const lb_block_q8_K *x) {
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i q[4], sc = q6_half_scales(w->scales + 8 * h);
        q6_codes(w, h, q);
        for (int g = 0; g < 4; g++) {
            __m256i p = _mm256_maddubs_epi16(q[g], loadu256(x->qs + 128 * h + 32 * g));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, bcast16(sc, g)));
            __asm__("" : "+x"(acc)); /* one running sum: GCC's add tree spilled 4 rows' products */
        }
    }
    return _mm256_sub_epi32(acc, q6_bias32(w, x->bsums));
}

/* the lane sums of a, b, c, d in lanes 0..3 */
AI __m128i hsum4_i32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

AI void tile_q6_K(const lb_block_q6_K *w, const lb_block_q8_K *const *x, int nb, int nt, float *out) {
    float sum[KT] = {0};
    for (int i = 0; i < nb; i++) {
        __m256i acc[KT];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q[4], sc = q6_half_scales(w[i].scales + 8 * h);
            q6_codes(&w[i], h, q);
            for (int g = 0; g < 4; g++) {
                __m256i sv = bcast16(sc, g);
                for (int t = 0; t < nt; t++) {
                    __m256i p = _mm256_maddubs_epi16(q[g], loadu256(x[t][i].qs + 128 * h + 32 * g));
                    acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p, sv));
                }
            }
        }
        float d = lb_fp16_to_f32(w[i].d);
        for (int t = 0; t < nt; t++) {
            int isum = hsum_i32(_mm256_sub_epi32(acc[t], q6_bias32(&w[i], x[t][i].bsums)));
            sum[t] = kq_add(sum[t], d, 0, x[t][i].d, isum, 0);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = sum[t];
}

/* Prefetch distance on each weight row of a Q4_K / Q6_K matrix-vector product, in blocks (144 /
 * 210 bytes, about 9-10 KiB ahead): with four row streams the hardware prefetcher alone left the
 * 4-row Q6_K kernel below the 1-row one from memory; 1.7 KiB ahead did not help, 5-10 KiB did
 * (one thread, 65536 x 2048, loaded machine: 6.0 -> 7.3 GB/s Q6_K, Q4_K unchanged at ~8). */
#define Q4_PF 64
#define Q6_PF 48

/* One token, 4 rows: the activation block is loaded once for the 4 rows' codes, the 4 integer
 * sums share one reduction, and each row's float steps are its own, in block order. */
AI void q6_vec4(const uint8_t *w, size_t wrb, const lb_block_q8_K *x, int nb, float *y) {
    const lb_block_q6_K *r0 = (const void *)w, *r1 = (const void *)(w + wrb), *r2 = (const void *)(w + 2 * wrb),
                        *r3 = (const void *)(w + 3 * wrb);
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < nb; i++) {
        for (int o = 0; o < (int)sizeof *r0; o += 64) {
            _mm_prefetch((const char *)(r0 + i + Q6_PF) + o, _MM_HINT_T0);
            _mm_prefetch((const char *)(r1 + i + Q6_PF) + o, _MM_HINT_T0);
            _mm_prefetch((const char *)(r2 + i + Q6_PF) + o, _MM_HINT_T0);
            _mm_prefetch((const char *)(r3 + i + Q6_PF) + o, _MM_HINT_T0);
        }
        __m128i is = hsum4_i32(q6_block_lanes(&r0[i], &x[i]), q6_block_lanes(&r1[i], &x[i]),
                               q6_block_lanes(&r2[i], &x[i]), q6_block_lanes(&r3[i], &x[i]));
        float dx = x[i].d;
        s0 = kq_add(s0, lb_fp16_to_f32(r0[i].d), 0, dx, _mm_cvtsi128_si32(is), 0);
        s1 = kq_add(s1, lb_fp16_to_f32(r1[i].d), 0, dx, _mm_extract_epi32(is, 1), 0);
        s2 = kq_add(s2, lb_fp16_to_f32(r2[i].d), 0, dx, _mm_extract_epi32(is, 2), 0);
        s3 = kq_add(s3, lb_fp16_to_f32(r3[i].d), 0, dx, _mm_extract_epi32(is, 3), 0);
    }
    y[0] = s0, y[1] = s1, y[2] = s2, y[3] = s3;
}

AI float q6_vec1(const lb_block_q6_K *w, const lb_block_q8_K *x, int nb) {
    float s = 0;
    for (int i = 0; i < nb; i++) s = kq_add(s, lb_fp16_to_f32(w[i].d), 0, x[i].d, hsum_i32(q6_block_lanes(&w[i], &x[i])), 0);
    return s;
}

/* The integer dot product of one Q4_K block's codes (scales sc from k4_unpack, broadcast to both
 * halves) with one Q8_K block, in 8 lanes: the isum of lb_vec_dot_q4_K_q8_avx2. */
AI __m256i q4_block_lanes(const lb_block_q4_K *w, __m256i sc, const lb_block_q8_K *x) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i b = loadu256(w->qs + 32 * c);
        __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
        __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, loadu256(x->qs + 64 * c)), bcast16(sc, 2 * c));
        __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, loadu256(x->qs + 64 * c + 32)), bcast16(sc, 2 * c + 1));
        acc = _mm256_add_epi32(acc, _mm256_add_epi32(plo, phi));
        __asm__("" : "+x"(acc)); /* one running sum (see q6_block_lanes) */
    }
    return acc;
}

/* One token, 4 Q4_K rows: the activation block and its pairwise sums shared by the 4 rows, their
 * 4 code sums and 4 min sums reduced together, each row's float steps its own (kq_accum). */
AI void q4_vec4(const uint8_t *w, size_t wrb, const lb_block_q8_K *x, int nb, float *y) {
    const lb_block_q4_K *r[4];
    for (int j = 0; j < 4; j++) r[j] = (const void *)(w + (size_t)j * wrb);
    __m128 s[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
    for (int i = 0; i < nb; i++) {
        __m256i lanes[4];
        __m128i mp[4];
        __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(const void *)x[i].bsums),
                                    _mm_loadu_si128((const __m128i *)(const void *)(x[i].bsums + 8)));
        for (int j = 0; j < 4; j++) {
            for (int o = 0; o < (int)sizeof *r[j]; o += 64) _mm_prefetch((const char *)(r[j] + i + Q4_PF) + o, _MM_HINT_T0);
            __m128i sc, mn;
            k4_unpack(r[j][i].scales, &sc, &mn);
            mp[j] = _mm_madd_epi16(mn, bs); /* the mins weighted by the pair sums, as k4_msum */
            lanes[j] = q4_block_lanes(&r[j][i], _mm256_broadcastsi128_si256(sc), &x[i]);
        }
        __m128i is = hsum4_i32(lanes[0], lanes[1], lanes[2], lanes[3]);
        __m128i ms = _mm_hadd_epi32(_mm_hadd_epi32(mp[0], mp[1]), _mm_hadd_epi32(mp[2], mp[3]));
        int isum[4], msum[4];
        _mm_storeu_si128((__m128i *)(void *)isum, is);
        _mm_storeu_si128((__m128i *)(void *)msum, ms);
        for (int j = 0; j < 4; j++)
            s[j] = kq_accum(s[j], _cvtsh_ss(r[j][i].d), _cvtsh_ss(r[j][i].dmin), x[i].d, isum[j], msum[j]);
    }
    for (int j = 0; j < 4; j++) y[j] = _mm_cvtss_f32(s[j]);
}

typedef void (*ktile_fn)(const void *w, const lb_block_q8_K *const *x, int nb, float *out);

#define SHAPE(NAME, WBLOCK, NT)                                                                      \
    static void NAME##_##NT(const void *w, const lb_block_q8_K *const *x, int nb, float *out) {    \
        NAME((const WBLOCK *)w, x, nb, NT, out);                                                   \
    }
#define SHAPES(NAME, WBLOCK)                                                                         \
    SHAPE(NAME, WBLOCK, 1) SHAPE(NAME, WBLOCK, 2) SHAPE(NAME, WBLOCK, 3) SHAPE(NAME, WBLOCK, 4)    \
    static const ktile_fn NAME##_shapes[KT] = {NAME##_1, NAME##_2, NAME##_3, NAME##_4};
SHAPES(tile_q4_K, lb_block_q4_K)
SHAPES(tile_q6_K, lb_block_q6_K)
#undef SHAPES
#undef SHAPE

/* rows outer so a weight row stays in L1 while every group of tokens passes over it */
static void rows_ktiled(const ktile_fn *shapes, lb_vec_dot_fn dot, const lb_matmul_args *a, int64_t r0,
                        int64_t r1) {
    const uint8_t *x = a->x;
    int nb = (int)(a->k / LB_QK_K);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
        if (a->n_tok == 1) { /* generation: the plain dot product */
            a->y[r] = dot((int)a->k, w, x);
            continue;
        }
        for (int64_t t = 0; t < a->n_tok; t += KT) {
            int nt = a->n_tok - t < KT ? (int)(a->n_tok - t) : KT;
            const lb_block_q8_K *xs[KT];
            float out[KT];
            for (int j = 0; j < nt; j++) xs[j] = (const lb_block_q8_K *)(x + (size_t)(t + j) * a->x_row_bytes);
            shapes[nt - 1](w, xs, nb, out);
            for (int j = 0; j < nt; j++) a->y[(t + j) * a->rows + r] = out[j];
        }
    }
}

static void rows_q4_vec(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) q4_vec4(a->w + (size_t)r * a->w_row_bytes, a->w_row_bytes, a->x, (int)(a->k / LB_QK_K), a->y + r);
    for (; r < r1; r++) a->y[r] = lb_vec_dot_q4_K_q8_avx2((int)a->k, a->w + (size_t)r * a->w_row_bytes, a->x);
}

void lb_matmul_rows_q4_K_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    if (a->n_tok == 1) rows_q4_vec(a, r0, r1);
    else rows_ktiled(tile_q4_K_shapes, lb_vec_dot_q4_K_q8_avx2, a, r0, r1);
}

/* Generation: every weight row streamed once, four at a time (more misses in flight, the
 * activation block decoded once per four rows). */
static void rows_q6_vec(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const lb_block_q8_K *x = a->x;
    int nb = (int)(a->k / LB_QK_K);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) q6_vec4(a->w + (size_t)r * a->w_row_bytes, a->w_row_bytes, x, nb, a->y + r);
    for (; r < r1; r++) a->y[r] = q6_vec1((const void *)(a->w + (size_t)r * a->w_row_bytes), x, nb);
}

void lb_matmul_rows_q6_K_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    if (a->n_tok == 1) rows_q6_vec(a, r0, r1);
    else rows_ktiled(tile_q6_K_shapes, lb_vec_dot_q6_K_q8_avx2, a, r0, r1);
}
