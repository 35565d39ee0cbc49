/* Scalar reference: activation quantization to Q8_0 / Q8_K and dot products of each weight
 * format with them. Integer sums per block (per super-block for the 256 formats) are exact,
 * and the float arithmetic applied to them is the same in the AVX2 kernels, so the K-quant
 * and ternary kernels agree bit for bit. */
#include <math.h>
#include <string.h>

#include "quant/k_search.h"
#include "quant/quant.h"

#define F16(h) lb_fp16_to_f32(h)

/* Lives in this file (built without FMA) so the AVX2 kernels, which call it too, round the
 * same way. */
float lb_kq_block_sum(float d, float dmin, float dx, int isum, int msum) {
    return d * dx * (float)isum - dmin * dx * (float)msum;
}

/* fmaxf drops a NaN, and a NaN code is rounded to -127: a NaN activation would vanish into a
 * finite product. A block holding one gets a NaN scale and zero codes instead, so the NaN
 * reaches the logits (which the engine refuses) at every CPU level alike. */
static int has_nan(const float *x, int n) {
    int bad = 0;
    for (int j = 0; j < n; j++) bad |= isnan(x[j]);
    return bad;
}

void lb_quantize_row_q8_0_scalar(const float *x, void *dst, int64_t n) {
    lb_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / LB_QK; i++, x += LB_QK) {
        if (has_nan(x, LB_QK)) {
            b[i].d = LB_FP16_NAN;
            memset(b[i].qs, 0, sizeof b[i].qs);
            continue;
        }
        float amax = 0;
        for (int j = 0; j < LB_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        b[i].d = lb_f32_to_fp16(amax / 127);
        float d = F16(b[i].d), id = d > 0 ? 1.0f / d : 0;
        for (int j = 0; j < LB_QK; j++) b[i].qs[j] = (int8_t)lb_qs_round_clamp(x[j] * id, -127, 127);
    }
}

void lb_quantize_row_q8_K_scalar(const float *x, void *dst, int64_t n) {
    lb_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        if (has_nan(x, LB_QK_K)) {
            memset(&b[i], 0, sizeof b[i]);
            b[i].d = NAN;
            continue;
        }
        float amax = 0;
        for (int j = 0; j < LB_QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127, id = d > 0 ? 1.0f / d : 0;
        b[i].d = d;
        for (int j = 0; j < LB_QK_K; j++) b[i].qs[j] = (int8_t)lb_qs_round_clamp(x[j] * id, -127, 127);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += b[i].qs[16 * g + j];
            b[i].bsums[g] = (int16_t)s;
        }
    }
}

/* ---- 32-element formats with Q8_0 activations: sum over blocks of dw * dx * isum ---- */

float lb_vec_dot_q8_0_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q8_0 *w = w_row, *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK; i++) {
        int s = 0;
        for (int j = 0; j < LB_QK; j++) s += w[i].qs[j] * x[i].qs[j];
        sum += F16(w[i].d) * F16(x[i].d) * (float)s;
    }
    return sum;
}

float lb_vec_dot_q4_0_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q4_0 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += ((w[i].qs[j] & 0xF) - 8) * x[i].qs[j] + ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + 16];
        sum += F16(w[i].d) * F16(x[i].d) * (float)s;
    }
    return sum;
}

/* x = d q + m: dot = dw dx sum(q qx) + m dx sum(qx) */
float lb_vec_dot_q4_1_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q4_1 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK; i++) {
        int s = 0, sx = 0;
        for (int j = 0; j < 16; j++) {
            s += (w[i].qs[j] & 0xF) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + 16];
            sx += x[i].qs[j] + x[i].qs[j + 16];
        }
        float dx = F16(x[i].d);
        sum += F16(w[i].d) * dx * (float)s + F16(w[i].m) * dx * (float)sx;
    }
    return sum;
}

static inline void q5_codes(const uint8_t *qs, const uint8_t *qhb, int *q) {
    uint32_t qh = (uint32_t)qhb[0] | (uint32_t)qhb[1] << 8 | (uint32_t)qhb[2] << 16 | (uint32_t)qhb[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
}

float lb_vec_dot_q5_0_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q5_0 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK; i++) {
        int q[LB_QK], s = 0;
        q5_codes(w[i].qs, w[i].qh, q);
        for (int j = 0; j < LB_QK; j++) s += (q[j] - 16) * x[i].qs[j];
        sum += F16(w[i].d) * F16(x[i].d) * (float)s;
    }
    return sum;
}

float lb_vec_dot_q5_1_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q5_1 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK; i++) {
        int q[LB_QK], s = 0, sx = 0;
        q5_codes(w[i].qs, w[i].qh, q);
        for (int j = 0; j < LB_QK; j++) {
            s += q[j] * x[i].qs[j];
            sx += x[i].qs[j];
        }
        float dx = F16(x[i].d);
        sum += F16(w[i].d) * dx * (float)s + F16(w[i].m) * dx * (float)sx;
    }
    return sum;
}

/* ---- 256-element formats with Q8_K activations: per super-block, integer sums weighted by
 * the sub-block scales, then d * dx * isum - dmin * dx * msum ---- */

float lb_vec_dot_q2_K_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q2_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int e = 16 * j; e < 16 * j + 16; e++)
                s += ((w[i].qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3) * x[i].qs[e];
            isum += (w[i].scales[j] & 0xF) * s;
            msum += (w[i].scales[j] >> 4) * x[i].bsums[j];
        }
        sum += lb_kq_block_sum(F16(w[i].d), F16(w[i].dmin), x[i].d, isum, msum);
    }
    return sum;
}

/* codes taken as q' = q + 4 in 0..7, the bias removed with bsums */
float lb_vec_dot_q3_K_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q3_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int e = 16 * j; e < 16 * j + 16; e++) {
                int q = (w[i].qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
                q |= ((w[i].hmask[e & 31] >> (e >> 5)) & 1) << 2;
                s += q * x[i].qs[e];
            }
            isum += lb_q3k_get_scale(j, w[i].scales) * (s - 4 * x[i].bsums[j]);
        }
        sum += lb_kq_block_sum(F16(w[i].d), 0, x[i].d, isum, 0);
    }
    return sum;
}

float lb_vec_dot_q4_K_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q4_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            lb_kq_get_scale_min(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + 32 * (j >> 1);
            int shift = 4 * (j & 1), s = 0;
            for (int l = 0; l < 32; l++) s += ((q[l] >> shift) & 0xF) * x[i].qs[32 * j + l];
            isum += sc * s;
            msum += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        sum += lb_kq_block_sum(F16(w[i].d), F16(w[i].dmin), x[i].d, isum, msum);
    }
    return sum;
}

float lb_vec_dot_q5_K_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q5_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            lb_kq_get_scale_min(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + 32 * (j >> 1);
            int shift = 4 * (j & 1), s = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0xF) | ((w[i].qh[l] >> j) & 1) << 4;
                s += v * x[i].qs[32 * j + l];
            }
            isum += sc * s;
            msum += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        sum += lb_kq_block_sum(F16(w[i].d), F16(w[i].dmin), x[i].d, isum, msum);
    }
    return sum;
}

float lb_vec_dot_q6_K_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_q6_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int e = 16 * j; e < 16 * j + 16; e++) {
                int h = e >> 7, g = (e >> 5) & 3, l = e & 31;
                uint8_t ql = w[i].ql[64 * h + 32 * (g & 1) + l];
                int q = (g < 2 ? (ql & 0xF) : (ql >> 4)) | ((w[i].qh[32 * h + l] >> (2 * g)) & 3) << 4;
                s += q * x[i].qs[e];
            }
            isum += w[i].scales[j] * (s - 32 * x[i].bsums[j]);
        }
        sum += lb_kq_block_sum(F16(w[i].d), 0, x[i].d, isum, 0);
    }
    return sum;
}

static inline int tq1_trit(uint8_t byte, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    return ((uint8_t)(byte * pow3[k]) * 3) >> 8;
}

/* trits t in 0..2: dot = d dx (sum t qx - sum qx) */
float lb_vec_dot_tq1_0_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_tq1_0 *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        const int8_t *q = x[i].qs;
        int s = 0, sx = 0;
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 32; m++) s += tq1_trit(w[i].qs[m], t) * q[32 * t + m];
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 16; m++) s += tq1_trit(w[i].qs[32 + m], t) * q[160 + 16 * t + m];
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++) s += tq1_trit(w[i].qh[j], t) * q[240 + 4 * t + j];
        for (int g = 0; g < 16; g++) sx += x[i].bsums[g];
        sum += lb_kq_block_sum(F16(w[i].d), 0, x[i].d, s - sx, 0);
    }
    return sum;
}

float lb_vec_dot_tq2_0_q8_scalar(int n, const void *w_row, const void *x_q) {
    const lb_block_tq2_0 *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int s = 0, sx = 0;
        for (int e = 0; e < LB_QK_K; e++)
            s += ((w[i].qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3) * x[i].qs[e];
        for (int g = 0; g < 16; g++) sx += x[i].bsums[g];
        sum += lb_kq_block_sum(F16(w[i].d), 0, x[i].d, s - sx, 0);
    }
    return sum;
}
