/* The 4-bit non-linear formats IQ4_NL and IQ4_XS: each 4-bit code picks one of 16 fixed int8
 * levels (closer together near zero, where trained weights cluster), times a block scale.
 * Dequantize, scalar dot products with Q8_0 / Q8_K activations, and the quantizer.
 *
 * The quantizer minimises the weighted squared error over the level table. For a given
 * assignment of levels q, the best scale is sum w q x / sum w q^2 and lowers the error by
 * (sum w q x)^2 / sum w q^2, so each candidate scale is scored by that gain. */
#include <math.h>
#include <string.h>

#include "quant/k_search.h"
#include "quant/quant.h"

#define F16(h) lb_fp16_to_f32(h)

/* The GGUF table of IQ4_NL / IQ4_XS levels. */
const int8_t lb_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Midpoints between neighbouring levels: v rounds to level i when mid[i - 1] < v <= mid[i]. */
static const float k_mid[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                7.0f,    19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f};

/* Index of the level nearest v: a branch-free binary search over the 15 midpoints. NaN -> 0. */
static inline int nearest_level(float v) {
    int i = (v > k_mid[7]) * 8;
    i += (v > k_mid[i + 3]) * 4;
    i += (v > k_mid[i + 1]) * 2;
    i += (v > k_mid[i]);
    return i;
}

/* ---- dequantize ---- */

static void dequant_32(const uint8_t *qs, float d, float *y) {
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)lb_iq4_values[qs[j] & 0xF];
        y[j + 16] = d * (float)lb_iq4_values[qs[j] >> 4];
    }
}

void lb_dequantize_row_iq4_nl(const void *src, float *dst, int64_t n) {
    const lb_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / LB_QK; i++) dequant_32(b[i].qs, F16(b[i].d), dst + i * LB_QK);
}

void lb_dequantize_row_iq4_xs(const void *src, float *dst, int64_t n) {
    const lb_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = F16(b[i].d);
        for (int j = 0; j < 8; j++)
            dequant_32(b[i].qs + 16 * j, d * (float)lb_iq4xs_get_scale(&b[i], j), dst + i * LB_QK_K + 32 * j);
    }
}

/* ---- dot products: exact integer sums per block, then the same float steps as AVX2 ---- */

static int isum_32(const uint8_t *qs, const int8_t *x) {
    int s = 0;
    for (int j = 0; j < 16; j++)
        s += lb_iq4_values[qs[j] & 0xF] * x[j] + lb_iq4_values[qs[j] >> 4] * x[j + 16];
    return s;
}

float lb_vec_dot_iq4_nl_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_iq4_nl *w = w_row;
    const lb_block_q8_0 *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK; i++) sum += F16(w[i].d) * F16(x[i].d) * (float)isum_32(w[i].qs, x[i].qs);
    return sum;
}

float lb_vec_dot_iq4_xs_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_iq4_xs *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int isum = 0; /* |isum| <= 256 * 127 * 127 * 32 < 2^31 */
        for (int j = 0; j < 8; j++) isum += lb_iq4xs_get_scale(&w[i], j) * isum_32(w[i].qs + 16 * j, x[i].qs + 32 * j);
        sum += lb_kq_block_sum(F16(w[i].d), 0, x[i].d, isum, 0);
    }
    return sum;
}

/* ---- quantize ---- */

/* Levels of x * is into L (NULL: not kept); returns sum w q x and sets *q2 = sum w q^2. */
static float assign(const float *x, const float *w, float is, uint8_t *L, float *q2) {
    float qx = 0, qq = 0;
    for (int j = 0; j < LB_QK; j++) {
        int l = nearest_level(x[j] * is);
        if (L) L[j] = (uint8_t)l;
        float q = lb_iq4_values[l];
        qx += w[j] * q * x[j];
        qq += w[j] * q * q;
    }
    *q2 = qq;
    return qx;
}

/* Weighted error of 32 values at scale d, with the levels nearest x / d written to L. */
static float error_at(const float *x, const float *w, float d, uint8_t *L) {
    float is = d != 0 ? 1.0f / d : 0, e = 0;
    for (int j = 0; j < LB_QK; j++) {
        L[j] = (uint8_t)nearest_level(x[j] * is);
        float r = x[j] - d * (float)lb_iq4_values[L[j]];
        e += w[j] * r * r;
    }
    return e;
}

/* The scale (signed: the table is not symmetric) for 32 values. Candidates put the value of
 * largest magnitude at or near either end of the table; the best is refined by alternating
 * least-squares fits and re-rounding while the gain grows. 0 for an all-zero (or NaN) group. */
static float fit_32(const float *x, const float *w) {
    float amax = 0, max = 0;
    for (int j = 0; j < LB_QK; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    if (!(amax > 1e-30f)) return 0;
    float best = 0, d = 0, q2;
    for (int end = 0; end < 2; end++)
        for (int t = -6; t <= 6; t++) {
            float is = ((float)lb_iq4_values[end ? 15 : 0] + (float)t) / max;
            float qx = assign(x, w, is, NULL, &q2);
            if (q2 > 0 && qx * qx > best * q2) best = qx * qx / q2, d = qx / q2;
        }
    for (int it = 0; it < 4 && d != 0; it++) {
        float qx = assign(x, w, 1.0f / d, NULL, &q2);
        if (!(q2 > 0 && qx * qx > best * q2)) break;
        best = qx * qx / q2, d = qx / q2;
    }
    return d;
}

static void pack_32(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
}

void lb_quantize_row_iq4_nl_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_iq4_nl *b = dst;
    float w[LB_QK];
    uint8_t L[LB_QK];
    for (int64_t i = 0; i < n / LB_QK; i++, x += LB_QK) {
        lb_qs_weights(LB_QK, x, imatrix ? imatrix + i * LB_QK : NULL, w);
        b[i].d = lb_f32_to_fp16(fit_32(x, w));
        error_at(x, w, F16(b[i].d), L); /* levels for the scale as stored */
        pack_32(L, b[i].qs);
    }
}

/* The best 6-bit sub-scale near s / d for one sub-block (levels into L); returns its error. */
static float pick_sub_scale(const float *x, const float *w, float s, float d, int *sc, uint8_t *L) {
    int l0 = d != 0 ? lb_qs_round_clamp(s / d, -32, 31) : 0;
    float best = INFINITY;
    uint8_t tmp[LB_QK];
    for (int l = l0 - 1; l <= l0 + 1; l++) {
        if (l < -32 || l > 31) continue;
        float e = error_at(x, w, d * (float)l, tmp);
        if (e < best) best = e, *sc = l, memcpy(L, tmp, LB_QK);
    }
    return best;
}

static void quantize_xs_block(const float *x, const float *w, lb_block_iq4_xs *b) {
    float s[8], smax = 0;
    for (int j = 0; j < 8; j++) {
        s[j] = fit_32(x + 32 * j, w + 32 * j);
        if (fabsf(s[j]) > fabsf(smax)) smax = s[j];
    }
    /* the largest sub-scale maps to -32 or to 31; keep whichever super-scale errs less */
    int best_sc[8] = {0}, sc[8];
    uint8_t best_L[LB_QK_K], L[LB_QK_K];
    float best = INFINITY;
    uint16_t best_d = 0;
    memset(best_L, 0, sizeof best_L);
    for (int c = 0; c < 2 && smax != 0; c++) {
        uint16_t dh = lb_f32_to_fp16(c ? smax / 31 : -smax / 32);
        float d = F16(dh), e = 0;
        for (int j = 0; j < 8; j++) e += pick_sub_scale(x + 32 * j, w + 32 * j, s[j], d, &sc[j], L + 32 * j);
        if (e < best) best = e, best_d = dh, memcpy(best_sc, sc, sizeof sc), memcpy(best_L, L, sizeof L);
    }
    b->d = best_d;
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int j = 0; j < 8; j++) {
        int u = best_sc[j] + 32;
        b->scales_l[j / 2] |= (uint8_t)((u & 0xF) << 4 * (j % 2));
        b->scales_h |= (uint16_t)((u >> 4) << 2 * j);
        pack_32(best_L + 32 * j, b->qs + 16 * j);
    }
}

void lb_quantize_row_iq4_xs_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_iq4_xs *b = dst;
    float w[LB_QK_K];
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        lb_qs_weights(LB_QK_K, x, imatrix ? imatrix + i * LB_QK_K : NULL, w);
        quantize_xs_block(x, w, &b[i]);
    }
}
