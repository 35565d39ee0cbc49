/* The 32-element formats Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: dequantize and quantize. */
#include <math.h>
#include <string.h>

#include "quant/k_search.h"
#include "quant/quant.h"

#define F16(h) lb_fp16_to_f32(h)

/* ---- dequantize ---- */

void lb_dequantize_row_q8_0(const void *src, float *dst, int64_t n) {
    const lb_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / LB_QK; i++, dst += LB_QK) {
        float d = F16(b[i].d);
        for (int j = 0; j < LB_QK; j++) dst[j] = d * (float)b[i].qs[j];
    }
}

void lb_dequantize_row_q4_0(const void *src, float *dst, int64_t n) {
    const lb_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / LB_QK; i++, dst += LB_QK) {
        float d = F16(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((b[i].qs[j] & 0xF) - 8);
            dst[j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

void lb_dequantize_row_q4_1(const void *src, float *dst, int64_t n) {
    const lb_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / LB_QK; i++, dst += LB_QK) {
        float d = F16(b[i].d), m = F16(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)(b[i].qs[j] & 0xF) + m;
            dst[j + 16] = d * (float)(b[i].qs[j] >> 4) + m;
        }
    }
}

static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void lb_dequantize_row_q5_0(const void *src, float *dst, int64_t n) {
    const lb_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / LB_QK; i++, dst += LB_QK) {
        float d = F16(b[i].d);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)(lo - 16);
            dst[j + 16] = d * (float)(hi - 16);
        }
    }
}

void lb_dequantize_row_q5_1(const void *src, float *dst, int64_t n) {
    const lb_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / LB_QK; i++, dst += LB_QK) {
        float d = F16(b[i].d), m = F16(b[i].m);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)lo + m;
            dst[j + 16] = d * (float)hi + m;
        }
    }
}

/* ---- quantize ---- */

/* Stores s as fp16 and re-rounds L against the stored value; then tries the least-squares
 * scale for that rounding and keeps whichever has the lower weighted error. */
static uint16_t sym_finish(const float *x, const float *w, int lo, int hi, float s, int8_t *L) {
    uint16_t best = lb_f32_to_fp16(s);
    float best_e = INFINITY;
    for (int it = 0; it < 3; it++) {
        uint16_t h = it == 0 ? best : lb_f32_to_fp16(s);
        float d = F16(h), id = d != 0 ? 1.0f / d : 0, e = 0, slx = 0, sll = 0;
        int8_t l[LB_QK];
        for (int i = 0; i < LB_QK; i++) {
            l[i] = (int8_t)lb_qs_round_clamp(x[i] * id, lo, hi);
            float r = d * (float)l[i] - x[i];
            e += w[i] * r * r;
            slx += w[i] * (float)l[i] * x[i];
            sll += w[i] * (float)l[i] * (float)l[i];
        }
        if (e < best_e) {
            best_e = e;
            best = h;
            memcpy(L, l, LB_QK);
        }
        if (!(sll > 0)) break;
        s = slx / sll;
    }
    return best;
}

/* As sym_finish for x = d * L + m with both in fp16. */
static void asym_finish(const float *x, const float *w, int nmax, float s, float off,
                        uint16_t *dh, uint16_t *mh, uint8_t *L) {
    float best_e = INFINITY;
    *dh = lb_f32_to_fp16(s);
    *mh = lb_f32_to_fp16(off);
    for (int it = 0; it < 3; it++) {
        uint16_t hd = lb_f32_to_fp16(s), hm = lb_f32_to_fp16(off);
        float d = F16(hd), m = F16(hm), id = d != 0 ? 1.0f / d : 0, e = 0;
        float sw = 0, sx = 0, sl = 0, sll = 0, slx = 0;
        uint8_t l[LB_QK];
        for (int i = 0; i < LB_QK; i++) {
            l[i] = (uint8_t)lb_qs_round_clamp((x[i] - m) * id, 0, nmax);
            float r = d * (float)l[i] + m - x[i], wl = w[i] * (float)l[i];
            e += w[i] * r * r;
            sw += w[i];
            sx += w[i] * x[i];
            sl += wl;
            sll += wl * (float)l[i];
            slx += wl * x[i];
        }
        if (e < best_e) {
            best_e = e;
            *dh = hd;
            *mh = hm;
            memcpy(L, l, LB_QK);
        }
        float det = sw * sll - sl * sl;
        if (!(det > 0)) break;
        s = (sw * slx - sl * sx) / det;
        off = (sll * sx - sl * slx) / det;
    }
}

/* The search over scales (codes -128..127) gains a little over absmax even at 8 bits. */
void lb_quantize_row_q8_0_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q8_0 *b = dst;
    int simd = lb_cpu_has_avx2();
    for (int64_t ib = 0; ib < n / LB_QK; ib++) {
        float w[LB_QK];
        const float *xb = x + ib * LB_QK;
        if (simd) lb_qs_weights_avx2(LB_QK, xb, imatrix ? imatrix + ib * LB_QK : NULL, w);
        else lb_qs_weights(LB_QK, xb, imatrix ? imatrix + ib * LB_QK : NULL, w);
        float s = lb_qs_fit_sym(LB_QK, xb, w, -128, 127, simd, b[ib].qs);
        b[ib].d = sym_finish(xb, w, -128, 127, s, b[ib].qs);
    }
}

static void quantize_sym4or5(const float *x, int64_t n, const float *imatrix, int bits,
                             uint16_t *d, int8_t *L, int64_t ib) {
    float w[LB_QK];
    int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    const float *xb = x + ib * LB_QK;
    int simd = lb_cpu_has_avx2();
    if (simd) lb_qs_weights_avx2(LB_QK, xb, imatrix ? imatrix + ib * LB_QK : NULL, w);
    else lb_qs_weights(LB_QK, xb, imatrix ? imatrix + ib * LB_QK : NULL, w);
    float s = lb_qs_fit_sym(LB_QK, xb, w, lo, hi, simd, L);
    *d = sym_finish(xb, w, lo, hi, s, L);
    (void)n;
}

void lb_quantize_row_q4_0_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q4_0 *b = dst;
    for (int64_t ib = 0; ib < n / LB_QK; ib++) {
        int8_t L[LB_QK];
        quantize_sym4or5(x, n, imatrix, 4, &b[ib].d, L, ib);
        for (int j = 0; j < 16; j++) b[ib].qs[j] = (uint8_t)((L[j] + 8) | (L[j + 16] + 8) << 4);
    }
}

void lb_quantize_row_q5_0_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q5_0 *b = dst;
    for (int64_t ib = 0; ib < n / LB_QK; ib++) {
        int8_t L[LB_QK];
        quantize_sym4or5(x, n, imatrix, 5, &b[ib].d, L, ib);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int a = L[j] + 16, c = L[j + 16] + 16;
            b[ib].qs[j] = (uint8_t)((a & 0xF) | (c & 0xF) << 4);
            qh |= (uint32_t)(a >> 4) << j | (uint32_t)(c >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) b[ib].qh[k] = (uint8_t)(qh >> (8 * k));
    }
}

static void quantize_asym4or5(const float *x, const float *imatrix, int nmax, uint16_t *d,
                              uint16_t *m, uint8_t *L, int64_t ib) {
    float w[LB_QK], off;
    const float *xb = x + ib * LB_QK;
    int simd = lb_cpu_has_avx2();
    if (simd) lb_qs_weights_avx2(LB_QK, xb, imatrix ? imatrix + ib * LB_QK : NULL, w);
    else lb_qs_weights(LB_QK, xb, imatrix ? imatrix + ib * LB_QK : NULL, w);
    float s = lb_qs_fit_asym(LB_QK, xb, w, nmax, 1, simd, L, &off);
    asym_finish(xb, w, nmax, s, off, d, m, L);
}

void lb_quantize_row_q4_1_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q4_1 *b = dst;
    for (int64_t ib = 0; ib < n / LB_QK; ib++) {
        uint8_t L[LB_QK];
        quantize_asym4or5(x, imatrix, 15, &b[ib].d, &b[ib].m, L, ib);
        for (int j = 0; j < 16; j++) b[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

void lb_quantize_row_q5_1_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q5_1 *b = dst;
    for (int64_t ib = 0; ib < n / LB_QK; ib++) {
        uint8_t L[LB_QK];
        quantize_asym4or5(x, imatrix, 31, &b[ib].d, &b[ib].m, L, ib);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            b[ib].qs[j] = (uint8_t)((L[j] & 0xF) | (L[j + 16] & 0xF) << 4);
            qh |= (uint32_t)(L[j] >> 4) << j | (uint32_t)(L[j + 16] >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) b[ib].qh[k] = (uint8_t)(qh >> (8 * k));
    }
}
