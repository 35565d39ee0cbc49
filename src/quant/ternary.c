/* Ternary formats TQ1_0 (base-3, 1.6875 bits) and TQ2_0 (2 bits) for BitNet b1.58 weights. */
#include <math.h>
#include <string.h>

#include "quant/k_search.h"
#include "quant/quant.h"

/* Top trit of (byte * 3^k mod 256): the k-th stored trit, 0..2. */
static inline int trit_at(uint8_t byte, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t v = (uint8_t)(byte * pow3[k]);
    return (v * 3) >> 8;
}

void lb_dequantize_row_tq1_0(const void *src, float *dst, int64_t n) {
    const lb_block_tq1_0 *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++, dst += LB_QK_K) {
        float d = lb_fp16_to_f32(b[i].d);
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 32; m++) dst[32 * t + m] = d * (float)(trit_at(b[i].qs[m], t) - 1);
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 16; m++)
                dst[160 + 16 * t + m] = d * (float)(trit_at(b[i].qs[32 + m], t) - 1);
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++) dst[240 + 4 * t + j] = d * (float)(trit_at(b[i].qh[j], t) - 1);
    }
}

void lb_dequantize_row_tq2_0(const void *src, float *dst, int64_t n) {
    const lb_block_tq2_0 *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++, dst += LB_QK_K) {
        float d = lb_fp16_to_f32(b[i].d);
        for (int e = 0; e < LB_QK_K; e++) {
            int q = (b[i].qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
            dst[e] = d * (float)(q - 1);
        }
    }
}

float lb_ternary_absmean(const float *x, int64_t n) {
    double s = 0; /* tensors reach 10^8 elements: a float sum would drift */
    for (int64_t i = 0; i < n; i++) s += fabs((double)x[i]);
    return n > 0 ? (float)(s / (double)n) : 0;
}

/* round(w / scale) clipped to {-1, 0, 1}, shifted to a trit 0..2 */
static inline int ternary_code(float x, float inv) { return lb_qs_round_clamp(x * inv, -1, 1) + 1; }

/* Packs trits t[0..k-1] most significant first, left-aligned to 5 trits, so the decoder's
 * top-trit extraction returns them in order. */
static uint8_t pack_trits(const int *t, int k) {
    int v = 0;
    for (int i = 0; i < 5; i++) v = v * 3 + (i < k ? t[i] : 0);
    return (uint8_t)((v * 256 + 242) / 243); /* ceil(v * 256 / 243) */
}

void lb_quantize_row_tq1_0(const float *x, void *dst, int64_t n, float scale) {
    lb_block_tq1_0 *b = dst;
    float inv = scale > 0 ? 1.0f / scale : 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        int t[5];
        for (int m = 0; m < 32; m++) {
            for (int k = 0; k < 5; k++) t[k] = ternary_code(x[32 * k + m], inv);
            b[i].qs[m] = pack_trits(t, 5);
        }
        for (int m = 0; m < 16; m++) {
            for (int k = 0; k < 5; k++) t[k] = ternary_code(x[160 + 16 * k + m], inv);
            b[i].qs[32 + m] = pack_trits(t, 5);
        }
        for (int j = 0; j < 4; j++) {
            for (int k = 0; k < 4; k++) t[k] = ternary_code(x[240 + 4 * k + j], inv);
            b[i].qh[j] = pack_trits(t, 4);
        }
        b[i].d = lb_f32_to_fp16(scale);
    }
}

void lb_quantize_row_tq2_0(const float *x, void *dst, int64_t n, float scale) {
    lb_block_tq2_0 *b = dst;
    float inv = scale > 0 ? 1.0f / scale : 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < LB_QK_K; e++)
            b[i].qs[32 * (e >> 7) + (e & 31)] |= (uint8_t)(ternary_code(x[e], inv) << (2 * ((e >> 5) & 3)));
        b[i].d = lb_f32_to_fp16(scale);
    }
}
