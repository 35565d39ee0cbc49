/* K-quants Q2_K..Q6_K (256-element super-blocks with quantized sub-block scales): dequantize
 * and quantize with the scale search of k_search.c at both levels (element codes within a
 * sub-block, sub-block scales within the super-block), then a joint refit of the fp16
 * super-block scales. */
#include <math.h>
#include <string.h>

#include "quant/k_search.h"
#include "quant/quant.h"

#define F16(h) lb_fp16_to_f32(h)

/* ---- dequantize ---- */

void lb_dequantize_row_q2_K(const void *src, float *dst, int64_t n) {
    const lb_block_q2_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = F16(b[i].d), dmin = F16(b[i].dmin);
        for (int e = 0; e < LB_QK_K; e++) {
            int h = e >> 7, s = (e >> 5) & 3, l = e & 31;
            int q = (b[i].qs[32 * h + l] >> (2 * s)) & 3;
            uint8_t sc = b[i].scales[e >> 4];
            dst[e] = d * (float)(sc & 0xF) * (float)q - dmin * (float)(sc >> 4);
        }
        dst += LB_QK_K;
    }
}

void lb_dequantize_row_q3_K(const void *src, float *dst, int64_t n) {
    const lb_block_q3_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = F16(b[i].d);
        int sc[16];
        for (int j = 0; j < 16; j++) sc[j] = lb_q3k_get_scale(j, b[i].scales);
        for (int e = 0; e < LB_QK_K; e++) {
            int h = e >> 7, s = (e >> 5) & 3, l = e & 31;
            int q = (b[i].qs[32 * h + l] >> (2 * s)) & 3;
            int hb = (b[i].hmask[l] >> (e >> 5)) & 1;
            dst[e] = d * (float)sc[e >> 4] * (float)(q - (hb ? 0 : 4));
        }
        dst += LB_QK_K;
    }
}

void lb_dequantize_row_q4_K(const void *src, float *dst, int64_t n) {
    const lb_block_q4_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = F16(b[i].d), dmin = F16(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            lb_kq_get_scale_min(j, b[i].scales, &sc, &m);
            float ds = d * (float)sc, dm = dmin * (float)m;
            const uint8_t *q = b[i].qs + 32 * (j >> 1);
            int shift = 4 * (j & 1);
            for (int l = 0; l < 32; l++) dst[32 * j + l] = ds * (float)((q[l] >> shift) & 0xF) - dm;
        }
        dst += LB_QK_K;
    }
}

void lb_dequantize_row_q5_K(const void *src, float *dst, int64_t n) {
    const lb_block_q5_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = F16(b[i].d), dmin = F16(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            lb_kq_get_scale_min(j, b[i].scales, &sc, &m);
            float ds = d * (float)sc, dm = dmin * (float)m;
            const uint8_t *q = b[i].qs + 32 * (j >> 1);
            int shift = 4 * (j & 1);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0xF) | ((b[i].qh[l] >> j) & 1) << 4;
                dst[32 * j + l] = ds * (float)v - dm;
            }
        }
        dst += LB_QK_K;
    }
}

void lb_dequantize_row_q6_K(const void *src, float *dst, int64_t n) {
    const lb_block_q6_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = F16(b[i].d);
        for (int e = 0; e < LB_QK_K; e++) {
            int h = e >> 7, g = (e >> 5) & 3, l = e & 31;
            uint8_t ql = b[i].ql[64 * h + 32 * (g & 1) + l];
            int lo = g < 2 ? (ql & 0xF) : (ql >> 4);
            int hi = (b[i].qh[32 * h + l] >> (2 * g)) & 3;
            dst[e] = d * (float)b[i].scales[e >> 4] * (float)((lo | hi << 4) - 32);
        }
        dst += LB_QK_K;
    }
}

void lb_dequantize_row_q8_K(const void *src, float *dst, int64_t n) {
    const lb_block_q8_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++, dst += LB_QK_K)
        for (int e = 0; e < LB_QK_K; e++) dst[e] = b[i].d * (float)b[i].qs[e];
}

/* ---- quantize: super-block fits ---- */

/* D/DM refits after the first pass of integer scale steps. The first pass tries one step of
 * the scale or the min (5 pairs), each refit also both at once (9): measured on tinystories-512d
 * with an imatrix, the refit gives most of the gain (importance-weighted error -1% Q4_K, -1.3%
 * Q2_K) and the 5-pair first pass keeps Q4_K at 0.83x of the old speed (9 pairs: 0.75x). */
#define KQ_REFITS 1

/* Sub-block x ~ D * s * L - DM * m: among (s, m) one step from (*qs, *qm) in [0, smax] (both at
 * once too when square), the pair whose re-rounded codes err least (error without the constant
 * sum w x^2; cw, cx: sum w and sum w x). Sets *qs, *qm, returns the error, and adds the pair's
 * terms of the normal equations for (D, DM) to ne: sum s^2 w L^2, sum s m w L, sum m^2 w,
 * sum s w L x, sum m w x. */
static float pick_sub_codes(const float *x, const float *w, float cw, float cx, int sub, int nmax, int smax,
                            float D, float DM, int square, int simd, int8_t *qs, int8_t *qm, float *ne) {
    float isc[LB_QS_MAX_CAND], xmn[LB_QS_MAX_CAND], r[3 * LB_QS_MAX_CAND];
    int cs[LB_QS_MAX_CAND], cm[LB_QS_MAX_CAND], nc = 0;
    static const int step[3] = {0, -1, 1}; /* the current pair first: it wins ties */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int s = *qs + step[a], m = *qm + step[b];
            if (!square && a && b) continue;
            if (s < 0 || s > smax || m < 0 || m > smax) continue;
            float S = D * (float)s;
            cs[nc] = s, cm[nc] = m;
            isc[nc] = S > 0 ? 1.0f / S : 0;
            xmn[nc++] = -(DM * (float)m);
        }
    if (simd) lb_qs_scan_asym_offs_avx2(sub, x, w, xmn, nmax, isc, nc, r);
    else
        for (int k = 0; k < nc; k++) lb_qs_scan_asym(sub, x, w, xmn[k], nmax, &isc[k], 1, r + 3 * k);
    int best = 0;
    float be = INFINITY;
    for (int k = 0; k < nc; k++) {
        float S = D * (float)cs[k], M = DM * (float)cm[k], *rk = r + 3 * k;
        float e = S * S * rk[1] - 2 * S * M * rk[0] - 2 * S * rk[2] + M * M * cw + 2 * M * cx;
        if (e < be) be = e, best = k;
    }
    float fs = (float)cs[best], fm = (float)cm[best], *rb = r + 3 * best;
    ne[0] += fs * fs * rb[1];
    ne[1] += fs * fm * rb[0];
    ne[2] += fm * fm * cw;
    ne[3] += fs * rb[2];
    ne[4] += fm * cx;
    *qs = (int8_t)cs[best];
    *qm = (int8_t)cm[best];
    return be;
}

/* x ~ D * sc_j * L - DM * mn_j with sub-blocks of `sub` elements, L in [0, nmax] and sc, mn
 * in [0, smax]. Fills the fp16 scales, the integer scales and L. */
static void fit_super_asym(const float *x, const float *imatrix, int sub, int nmax, int smax,
                           int simd, uint16_t *dh, uint16_t *mh, uint8_t *sc, uint8_t *mn,
                           uint8_t *L) {
    const int nsub = LB_QK_K / sub;
    /* cw, cx: constant parts of the weighted error per sub-block (sum w, sum w x) */
    float w[LB_QK_K], s[16], m[16], ws[16], wm[16], cw[16], cx[16];
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * sub;
        float *wj = w + j * sub, off;
        if (simd) lb_qs_weights_avx2(sub, xj, imatrix ? imatrix + j * sub : NULL, wj);
        else lb_qs_weights(sub, xj, imatrix ? imatrix + j * sub : NULL, wj);
        s[j] = lb_qs_fit_asym_sums(sub, xj, wj, nmax, 0, simd, L + j * sub, &off, &cw[j], &cx[j]);
        m[j] = -off;
        wm[j] = cw[j];
        ws[j] = 0;
        for (int i = 0; i < sub; i++) ws[j] += wj[i] * (float)L[j * sub + i] * (float)L[j * sub + i];
        ws[j] = ws[j] > 0 ? ws[j] : 1e-6f * wm[j];
    }
    int8_t qs[16], qm[16];
    float d = lb_qs_fit_sym(nsub, s, ws, 0, smax, simd, qs);
    float dm = lb_qs_fit_sym(nsub, m, wm, 0, smax, simd, qm);
    for (int j = 0; j < nsub; j++) {
        sc[j] = (uint8_t)qs[j];
        mn[j] = (uint8_t)qm[j];
    }

    float best_e = INFINITY, bestD = 0, bestM = 0;
    for (int it = 0; it < 3; it++) {
        uint16_t hd = lb_f32_to_fp16(d), hm = lb_f32_to_fp16(dm);
        float D = F16(hd), DM = F16(hm), e = 0;
        float a = 0, bb = 0, c = 0, p = 0, q = 0, isj[16], xmj[16], rj[48];
        /* codes rounded against the stored scales; sums give error and normal equations */
        for (int j = 0; j < nsub; j++) {
            float S = D * (float)qs[j], M = DM * (float)qm[j];
            isj[j] = S > 0 ? 1.0f / S : 0;
            xmj[j] = -M;
        }
        if (simd) lb_qs_scan_asym_blocks_avx2(sub, x, w, xmj, nmax, isj, nsub, rj);
        else
            for (int j = 0; j < nsub; j++)
                lb_qs_scan_asym(sub, x + j * sub, w + j * sub, xmj[j], nmax, &isj[j], 1, rj + 3 * j);
        for (int j = 0; j < nsub; j++) {
            float S = D * (float)qs[j], M = DM * (float)qm[j], *r = rj + 3 * j;
            float sl = r[0], sll = r[1], slx = r[2], fs = (float)qs[j], fm = (float)qm[j];
            e += S * S * sll - 2 * S * M * sl - 2 * S * slx + M * M * cw[j] + 2 * M * cx[j];
            a += fs * fs * sll;
            bb += fs * fm * sl;
            c += fm * fm * cw[j];
            p += fs * slx;
            q += fm * cx[j];
        }
        if (e < best_e) {
            best_e = e;
            *dh = hd;
            *mh = hm;
            bestD = D;
            bestM = DM;
        }
        /* least squares for (D, DM) given the codes: x ~ D A - DM B */
        float det = a * c - bb * bb;
        if (det > 0) {
            d = (p * c - bb * q) / det;
            dm = (bb * p - a * q) / det;
        }
        if (!(det > 0) || dm < 0) {
            dm = det > 0 ? 0 : dm;
            d = a > 0 ? p / a : d;
        }
        if (!(d >= 0) || !isfinite(d) || !isfinite(dm)) break;
    }
    /* The integer scales were rounded one by one from the free fit: once D and DM are fixed, a
     * neighbouring pair often fits its sub-block better; and with the codes moved, D and DM
     * refit by least squares may lower the error again. Alternate while it drops. */
    float ne[5], E = 0;
    memset(ne, 0, sizeof ne);
    for (int j = 0; j < nsub; j++)
        E += pick_sub_codes(x + j * sub, w + j * sub, cw[j], cx[j], sub, nmax, smax, bestD, bestM, 0, simd,
                            &qs[j], &qm[j], ne);
    for (int it = 0; it < KQ_REFITS; it++) {
        float det = ne[0] * ne[2] - ne[1] * ne[1], nd, nm;
        if (!(det > 0)) break;
        nd = (ne[3] * ne[2] - ne[1] * ne[4]) / det;
        nm = (ne[1] * ne[3] - ne[0] * ne[4]) / det;
        if (nm < 0) nm = 0, nd = ne[3] / ne[0];
        if (!(nd > 0) || !isfinite(nd) || !isfinite(nm)) break;
        uint16_t hd = lb_f32_to_fp16(nd), hm = lb_f32_to_fp16(nm);
        float D = F16(hd), DM = F16(hm), E2 = 0, ne2[5];
        int8_t ts[16], tm[16];
        memcpy(ts, qs, (size_t)nsub);
        memcpy(tm, qm, (size_t)nsub);
        memset(ne2, 0, sizeof ne2);
        for (int j = 0; j < nsub; j++)
            E2 += pick_sub_codes(x + j * sub, w + j * sub, cw[j], cx[j], sub, nmax, smax, D, DM, 1, simd,
                                 &ts[j], &tm[j], ne2);
        if (!(E2 < E)) break;
        E = E2;
        memcpy(qs, ts, (size_t)nsub);
        memcpy(qm, tm, (size_t)nsub);
        memcpy(ne, ne2, sizeof ne);
        bestD = D, bestM = DM, *dh = hd, *mh = hm;
    }
    for (int j = 0; j < nsub; j++) {
        sc[j] = (uint8_t)qs[j];
        mn[j] = (uint8_t)qm[j];
    }
    for (int j = 0; j < nsub; j++) {
        float S = bestD * (float)qs[j], M = bestM * (float)qm[j], iS = S > 0 ? 1.0f / S : 0;
        if (simd) lb_qs_round_asym_avx2(sub, x + j * sub, -M, iS, nmax, L + j * sub);
        else
            for (int i = j * sub; i < (j + 1) * sub; i++)
                L[i] = (uint8_t)lb_qs_round_clamp((x[i] + M) * iS, 0, nmax);
    }
}

/* x ~ D * sc_j * L with sub-blocks of 16, L in [lo, hi], sc in [slo, shi]. */
static void fit_super_sym(const float *x, const float *imatrix, int lo, int hi, int slo, int shi,
                          int simd, uint16_t *dh, int8_t *sc, int8_t *L) {
    float w[LB_QK_K], s[16], ws[16];
    for (int j = 0; j < 16; j++) {
        const float *xj = x + 16 * j;
        float *wj = w + 16 * j, sw = 0;
        if (simd) lb_qs_weights_avx2(16, xj, imatrix ? imatrix + 16 * j : NULL, wj);
        else lb_qs_weights(16, xj, imatrix ? imatrix + 16 * j : NULL, wj);
        s[j] = lb_qs_fit_sym(16, xj, wj, lo, hi, simd, L + 16 * j);
        ws[j] = 0;
        for (int i = 0; i < 16; i++) {
            ws[j] += wj[i] * (float)L[16 * j + i] * (float)L[16 * j + i];
            sw += wj[i];
        }
        ws[j] = ws[j] > 0 ? ws[j] : 1e-6f * sw;
    }
    float d = lb_qs_fit_sym(16, s, ws, slo, shi, simd, sc);
    float best_e = INFINITY, bestD = 0;
    for (int it = 0; it < 3; it++) {
        uint16_t hd = lb_f32_to_fp16(d);
        float D = F16(hd), e = 0, sax = 0, saa = 0;
        for (int j = 0; j < 16; j++) {
            float S = D * (float)sc[j], iS = S != 0 ? 1.0f / S : 0, r[2], fs = (float)sc[j];
            if (simd) lb_qs_scan_sym_avx2(16, x + 16 * j, w + 16 * j, lo, hi, &iS, 1, r);
            else lb_qs_scan_sym(16, x + 16 * j, w + 16 * j, lo, hi, &iS, 1, r);
            e += S * S * r[1] - 2 * S * r[0];
            sax += fs * r[0];
            saa += fs * fs * r[1];
        }
        if (e < best_e) {
            best_e = e;
            *dh = hd;
            bestD = D;
        }
        if (!(saa > 0)) break;
        d = sax / saa;
    }
    for (int j = 0; j < 16; j++) {
        float S = bestD * (float)sc[j], iS = S != 0 ? 1.0f / S : 0;
        for (int i = 16 * j; i < 16 * j + 16; i++) L[i] = (int8_t)lb_qs_round_clamp(x[i] * iS, lo, hi);
    }
}

/* ---- quantize: packing ---- */

void lb_quantize_row_q2_K_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q2_K *b = dst;
    int simd = lb_cpu_has_avx2();
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        uint8_t L[LB_QK_K], sc[16], mn[16];
        const float *im = imatrix ? imatrix + i * LB_QK_K : NULL;
        fit_super_asym(x, im, 16, 3, 15, simd, &b[i].d, &b[i].dmin, sc, mn, L);
        for (int j = 0; j < 16; j++) b[i].scales[j] = (uint8_t)(sc[j] | mn[j] << 4);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < LB_QK_K; e++)
            b[i].qs[32 * (e >> 7) + (e & 31)] |= (uint8_t)(L[e] << (2 * ((e >> 5) & 3)));
    }
}

void lb_quantize_row_q3_K_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q3_K *b = dst;
    int simd = lb_cpu_has_avx2();
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        int8_t L[LB_QK_K], sc[16];
        const float *im = imatrix ? imatrix + i * LB_QK_K : NULL;
        fit_super_sym(x, im, -4, 3, -32, 31, simd, &b[i].d, sc, L);
        memset(b[i].scales, 0, sizeof b[i].scales);
        for (int j = 0; j < 16; j++) {
            int v = sc[j] + 32;
            if (j < 8) b[i].scales[j] |= (uint8_t)(v & 0xF);
            else b[i].scales[j - 8] |= (uint8_t)((v & 0xF) << 4);
            b[i].scales[8 + (j & 3)] |= (uint8_t)((v >> 4) << (2 * (j >> 2)));
        }
        memset(b[i].qs, 0, sizeof b[i].qs);
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        for (int e = 0; e < LB_QK_K; e++) {
            int q = L[e] + 4; /* 0..7: bit 2 goes to hmask */
            b[i].qs[32 * (e >> 7) + (e & 31)] |= (uint8_t)((q & 3) << (2 * ((e >> 5) & 3)));
            b[i].hmask[e & 31] |= (uint8_t)((q >> 2) << (e >> 5));
        }
    }
}

static void pack_scales_k4(const uint8_t *sc, const uint8_t *mn, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 4; j++) {
        s[j] |= sc[j];
        s[j + 4] |= mn[j];
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (uint8_t)((sc[j] & 0xF) | (mn[j] & 0xF) << 4);
        s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        s[j] |= (uint8_t)((mn[j] >> 4) << 6);
    }
}

void lb_quantize_row_q4_K_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q4_K *b = dst;
    int simd = lb_cpu_has_avx2();
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        uint8_t L[LB_QK_K], sc[8], mn[8];
        const float *im = imatrix ? imatrix + i * LB_QK_K : NULL;
        fit_super_asym(x, im, 32, 15, 63, simd, &b[i].d, &b[i].dmin, sc, mn, L);
        pack_scales_k4(sc, mn, b[i].scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

void lb_quantize_row_q5_K_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q5_K *b = dst;
    int simd = lb_cpu_has_avx2();
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        uint8_t L[LB_QK_K], sc[8], mn[8];
        const float *im = imatrix ? imatrix + i * LB_QK_K : NULL;
        fit_super_asym(x, im, 32, 31, 63, simd, &b[i].d, &b[i].dmin, sc, mn, L);
        pack_scales_k4(sc, mn, b[i].scales);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int a = L[64 * c + l], z = L[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((a & 0xF) | (z & 0xF) << 4);
                b[i].qh[l] |= (uint8_t)((a >> 4) << (2 * c) | (z >> 4) << (2 * c + 1));
            }
    }
}

void lb_quantize_row_q6_K_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    lb_block_q6_K *b = dst;
    int simd = lb_cpu_has_avx2();
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        int8_t L[LB_QK_K];
        const float *im = imatrix ? imatrix + i * LB_QK_K : NULL;
        fit_super_sym(x, im, -32, 31, -128, 127, simd, &b[i].d, b[i].scales, L);
        memset(b[i].ql, 0, sizeof b[i].ql);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < LB_QK_K; e++) {
            int q = L[e] + 32, h = e >> 7, g = (e >> 5) & 3, l = e & 31;
            uint8_t *ql = &b[i].ql[64 * h + 32 * (g & 1) + l];
            *ql |= (uint8_t)(g < 2 ? (q & 0xF) : (q & 0xF) << 4);
            b[i].qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * g));
        }
    }
}

void lb_quantize_row_q8_K_ref(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    lb_quantize_row_q8_K_scalar(x, dst, n);
}

/* Plain rounding: min-max per sub-block, absmax of the sub-block scales, no search. */
void lb_quantize_row_q4_K_absmax(const float *x, void *dst, int64_t n) {
    lb_block_q4_K *b = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        float s[8], m[8], smax = 0, mmax = 0;
        for (int j = 0; j < 8; j++) {
            float lo = 0, hi = x[32 * j];
            for (int l = 0; l < 32; l++) {
                lo = fminf(lo, x[32 * j + l]);
                hi = fmaxf(hi, x[32 * j + l]);
            }
            s[j] = (hi - lo) / 15;
            m[j] = -lo;
            smax = fmaxf(smax, s[j]);
            mmax = fmaxf(mmax, m[j]);
        }
        b[i].d = lb_f32_to_fp16(smax / 63);
        b[i].dmin = lb_f32_to_fp16(mmax / 63);
        float D = F16(b[i].d), DM = F16(b[i].dmin);
        uint8_t sc[8], mn[8], L[LB_QK_K];
        for (int j = 0; j < 8; j++) {
            sc[j] = (uint8_t)lb_qs_round_clamp(D > 0 ? s[j] / D : 0, 0, 63);
            mn[j] = (uint8_t)lb_qs_round_clamp(DM > 0 ? m[j] / DM : 0, 0, 63);
            float S = D * sc[j], M = DM * mn[j];
            for (int l = 0; l < 32; l++)
                L[32 * j + l] = (uint8_t)lb_qs_round_clamp(S > 0 ? (x[32 * j + l] + M) / S : 0, 0, 15);
        }
        pack_scales_k4(sc, mn, b[i].scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}
