/* Quantization: GGUF block layouts against hand-built blocks (the spec as the truth), round-trip
 * error bounds, the scale search against plain rounding, scalar dot products against float dots
 * of the dequantized data, AVX2 against scalar, ternary exactness, row-length errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/dtype.h"
#include "quant/k_search.h"
#include "quant/quant.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}
static float rnd_unif(void) { return ((float)rnd_u32() + 0.5f) / 4294967296.0f; }
static float rnd_gauss(void) {
    return sqrtf(-2.0f * logf(rnd_unif())) * cosf(6.2831853f * rnd_unif());
}

static const lb_dtype k_all[] = {LB_Q8_0, LB_Q4_0, LB_Q4_1, LB_Q5_0, LB_Q5_1, LB_Q2_K, LB_Q3_K,
                                 LB_Q4_K, LB_Q5_K, LB_Q6_K, LB_TQ1_0, LB_TQ2_0};
#define N_ALL (int)(sizeof k_all / sizeof k_all[0])

static uint16_t h(float f) { return lb_f32_to_fp16(f); }

/* ---- known answers: blocks built by hand from the format description ---- */

static void kat_legacy(void) {
    float y[32];
    lb_block_q8_0 b8 = {h(0.5f), {0}};
    for (int j = 0; j < 32; j++) b8.qs[j] = (int8_t)(j * 8 - 128);
    lb_dequantize_row_q8_0(&b8, y, 32);
    int bad = 0;
    for (int j = 0; j < 32; j++) bad += y[j] != 0.5f * (float)(j * 8 - 128);
    CHECK(bad == 0, "Q8_0 known answer");

    /* Q4_0: byte j low nibble = element j, high nibble = element j + 16 */
    lb_block_q4_0 b4 = {h(1.0f), {0}};
    for (int j = 0; j < 16; j++) b4.qs[j] = (uint8_t)(j | (15 - j) << 4);
    lb_dequantize_row_q4_0(&b4, y, 32);
    bad = 0;
    for (int j = 0; j < 16; j++) bad += y[j] != (float)(j - 8) || y[16 + j] != (float)(7 - j);
    CHECK(bad == 0, "Q4_0 known answer: y[0]=%g y[16]=%g", y[0], y[16]);

    lb_block_q4_1 b41 = {h(2.0f), h(-1.0f), {0}};
    memcpy(b41.qs, b4.qs, 16);
    lb_dequantize_row_q4_1(&b41, y, 32);
    bad = 0;
    for (int j = 0; j < 16; j++) bad += y[j] != 2.0f * j - 1 || y[16 + j] != 2.0f * (15 - j) - 1;
    CHECK(bad == 0, "Q4_1 known answer");

    /* Q5: bit 4 of element e is bit e of the little-endian word qh */
    const uint32_t qh = 0xA5C3F00Fu;
    lb_block_q5_0 b5 = {h(0.25f), {0x0F, 0xF0, 0xC3, 0xA5}, {0}};
    memcpy(b5.qs, b4.qs, 16);
    lb_dequantize_row_q5_0(&b5, y, 32);
    bad = 0;
    for (int e = 0; e < 32; e++) {
        int lo = e < 16 ? e : 15 - (e - 16);
        int q = lo | (int)((qh >> e) & 1) << 4;
        bad += y[e] != 0.25f * (float)(q - 16);
    }
    CHECK(bad == 0, "Q5_0 known answer");

    lb_block_q5_1 b51 = {h(0.5f), h(3.0f), {0x0F, 0xF0, 0xC3, 0xA5}, {0}};
    memcpy(b51.qs, b4.qs, 16);
    lb_dequantize_row_q5_1(&b51, y, 32);
    bad = 0;
    for (int e = 0; e < 32; e++) {
        int lo = e < 16 ? e : 15 - (e - 16);
        int q = lo | (int)((qh >> e) & 1) << 4;
        bad += y[e] != 0.5f * (float)q + 3.0f;
    }
    CHECK(bad == 0, "Q5_1 known answer");
}

/* A code pattern that differs in every position of a 256 block. */
static int code_at(int e, int mod) { return (e * 7 + e / 32 + 3) % mod; }

static void kat_k(void) {
    float y[256];
    int bad = 0;

    /* Q2_K: scales byte j = scale (low) | min (high); for half hh, shift s, l < 32, element
     * 128 hh + 32 s + l sits in bits 2s of qs[32 hh + l] */
    lb_block_q2_K q2;
    memset(&q2, 0, sizeof q2);
    q2.d = h(0.5f);
    q2.dmin = h(0.25f);
    for (int j = 0; j < 16; j++) q2.scales[j] = (uint8_t)(((j + 1) & 15) | ((j * 5) & 15) << 4);
    for (int hh = 0; hh < 2; hh++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++)
                q2.qs[32 * hh + l] |= (uint8_t)(code_at(128 * hh + 32 * s + l, 4) << (2 * s));
    lb_dequantize_row_q2_K(&q2, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 16;
        float want = 0.5f * (float)((j + 1) & 15) * (float)code_at(e, 4) - 0.25f * (float)((j * 5) & 15);
        bad += y[e] != want;
    }
    CHECK(bad == 0, "Q2_K known answer (%d wrong)", bad);

    /* Q3_K: value = d * (sc - 32) * (low2 - (hmask bit set ? 0 : 4)); hmask[l] bit k holds
     * element 32 k + l; scale j: low 4 bits in scales[j % 8] (nibble j / 8), high 2 bits at
     * bit 2 (j / 4) of scales[8 + j % 4] */
    lb_block_q3_K q3;
    memset(&q3, 0, sizeof q3);
    q3.d = h(0.125f);
    int sc3[16];
    for (int j = 0; j < 16; j++) {
        sc3[j] = (j * 13 + 5) % 64; /* stored value 0..63, bias 32 */
        q3.scales[j % 8] |= (uint8_t)((sc3[j] & 15) << (4 * (j / 8)));
        q3.scales[8 + j % 4] |= (uint8_t)((sc3[j] >> 4) << (2 * (j / 4)));
    }
    for (int e = 0; e < 256; e++) {
        int c = code_at(e, 8); /* 0..7 = q + 4 */
        q3.qs[32 * (e / 128) + e % 32] |= (uint8_t)((c & 3) << (2 * ((e % 128) / 32)));
        if (c & 4) q3.hmask[e % 32] |= (uint8_t)(1 << (e / 32));
    }
    lb_dequantize_row_q3_K(&q3, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) bad += y[e] != 0.125f * (float)(sc3[e / 16] - 32) * (float)(code_at(e, 8) - 4);
    CHECK(bad == 0, "Q3_K known answer (%d wrong)", bad);

    /* Q4_K / Q5_K: 6-bit scale and min of sub-block j (32 elements): j < 4 in the low 6 bits of
     * bytes j and j + 4; j >= 4 low nibbles in byte j + 4 (scale low, min high), top bits in
     * bits 6-7 of bytes j - 4 (scale) and j (min) */
    int sc4[8], mn4[8];
    uint8_t sb[12] = {0};
    for (int j = 0; j < 8; j++) {
        sc4[j] = (j * 19 + 7) % 64;
        mn4[j] = (j * 29 + 50) % 64;
        if (j < 4) {
            sb[j] |= (uint8_t)sc4[j];
            sb[j + 4] |= (uint8_t)mn4[j];
        } else {
            sb[j + 4] = (uint8_t)((sc4[j] & 15) | (mn4[j] & 15) << 4);
            sb[j - 4] |= (uint8_t)((sc4[j] >> 4) << 6);
            sb[j] |= (uint8_t)((mn4[j] >> 4) << 6);
        }
    }
    lb_block_q4_K q4;
    memset(&q4, 0, sizeof q4);
    q4.d = h(0.5f);
    q4.dmin = h(2.0f);
    memcpy(q4.scales, sb, 12);
    for (int e = 0; e < 256; e++) /* chunk c of 64: low nibbles first 32, high nibbles next 32 */
        q4.qs[32 * (e / 64) + e % 32] |= (uint8_t)(code_at(e, 16) << (4 * ((e % 64) / 32)));
    lb_dequantize_row_q4_K(&q4, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++)
        bad += y[e] != 0.5f * (float)sc4[e / 32] * (float)code_at(e, 16) - 2.0f * (float)mn4[e / 32];
    CHECK(bad == 0, "Q4_K known answer (%d wrong)", bad);

    lb_block_q5_K q5;
    memset(&q5, 0, sizeof q5);
    q5.d = h(0.25f);
    q5.dmin = h(1.0f);
    memcpy(q5.scales, sb, 12);
    for (int e = 0; e < 256; e++) {
        int c = code_at(e, 32);
        q5.qs[32 * (e / 64) + e % 32] |= (uint8_t)((c & 15) << (4 * ((e % 64) / 32)));
        q5.qh[e % 32] |= (uint8_t)((c >> 4) << (e / 32)); /* bit (sub-block index) */
    }
    lb_dequantize_row_q5_K(&q5, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++)
        bad += y[e] != 0.25f * (float)sc4[e / 32] * (float)code_at(e, 32) - 1.0f * (float)mn4[e / 32];
    CHECK(bad == 0, "Q5_K known answer (%d wrong)", bad);

    /* Q6_K: per half hh (ql + 64 hh, qh + 32 hh), l < 32: element l = ql[l] low | qh[l] bits
     * 0-1 << 4; 32 + l = ql[32 + l] low | bits 2-3; 64 + l = ql[l] high | bits 4-5;
     * 96 + l = ql[32 + l] high | bits 6-7; value d * scales[e / 16] * (q - 32) */
    lb_block_q6_K q6;
    memset(&q6, 0, sizeof q6);
    q6.d = h(0.0625f);
    for (int j = 0; j < 16; j++) q6.scales[j] = (int8_t)(j * 17 - 128);
    for (int hh = 0; hh < 2; hh++)
        for (int l = 0; l < 32; l++) {
            int c[4];
            for (int g = 0; g < 4; g++) c[g] = code_at(128 * hh + 32 * g + l, 64);
            q6.ql[64 * hh + l] = (uint8_t)((c[0] & 15) | (c[2] & 15) << 4);
            q6.ql[64 * hh + 32 + l] = (uint8_t)((c[1] & 15) | (c[3] & 15) << 4);
            q6.qh[32 * hh + l] = (uint8_t)((c[0] >> 4) | (c[1] >> 4) << 2 | (c[2] >> 4) << 4 | (c[3] >> 4) << 6);
        }
    lb_dequantize_row_q6_K(&q6, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++)
        bad += y[e] != 0.0625f * (float)(e / 16 * 17 - 128) * (float)(code_at(e, 64) - 32);
    CHECK(bad == 0, "Q6_K known answer (%d wrong)", bad);

    /* TQ2_0: like Q2_K's packing, code 0/1/2 = -1/0/+1 */
    lb_block_tq2_0 t2;
    memset(&t2, 0, sizeof t2);
    t2.d = h(1.5f);
    for (int e = 0; e < 256; e++) t2.qs[32 * (e / 128) + e % 32] |= (uint8_t)(code_at(e, 3) << (2 * ((e % 128) / 32)));
    lb_dequantize_row_tq2_0(&t2, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) bad += y[e] != 1.5f * (float)(code_at(e, 3) - 1);
    CHECK(bad == 0, "TQ2_0 known answer");

    /* TQ1_0: byte = ceil(v * 256 / 243), v = 5 trits most significant first (qh: 4 trits and
     * a zero); qs[m] trit n = element 32 n + m, qs[32 + m] trit n = 160 + 16 n + m,
     * qh[j] trit n = 240 + 4 n + j */
    lb_block_tq1_0 t1;
    memset(&t1, 0, sizeof t1);
    t1.d = h(-0.75f);
    for (int m = 0; m < 48; m++) {
        int v = 0;
        for (int n = 0; n < 5; n++) v = v * 3 + code_at(m < 32 ? 32 * n + m : 160 + 16 * n + (m - 32), 3);
        t1.qs[m] = (uint8_t)((v * 256 + 242) / 243);
    }
    for (int j = 0; j < 4; j++) {
        int v = 0;
        for (int n = 0; n < 4; n++) v = v * 3 + code_at(240 + 4 * n + j, 3);
        t1.qh[j] = (uint8_t)((v * 3 * 256 + 242) / 243);
    }
    lb_dequantize_row_tq1_0(&t1, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) bad += y[e] != -0.75f * (float)(code_at(e, 3) - 1);
    CHECK(bad == 0, "TQ1_0 known answer (%d wrong)", bad);

    /* every 5-trit value survives the base-3 byte code */
    bad = 0;
    for (int v = 0; v < 243; v++) {
        memset(t1.qs, (uint8_t)((v * 256 + 242) / 243), 48);
        lb_dequantize_row_tq1_0(&t1, y, 256);
        int got = 0;
        for (int n = 0; n < 5; n++) got = got * 3 + (int)lrintf(y[32 * n] / -0.75f) + 1;
        bad += got != v;
    }
    CHECK(bad == 0, "TQ1_0 base-3 code: %d of 243 trit patterns wrong", bad);
}

/* ---- round trips ---- */

static double rel_rmse(const float *a, const float *b, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += (double)(a[i] - b[i]) * (a[i] - b[i]);
        s += (double)a[i] * a[i];
    }
    return sqrt(e / s);
}

static double roundtrip(lb_dtype t, const float *x, int64_t rows, int64_t cols, float *y) {
    size_t sz = lb_dtype_row_size(t, cols) * (size_t)rows;
    void *q = malloc(sz);
    size_t w = lb_quantize(t, x, q, rows, cols, NULL);
    CHECK(w == sz, "%s: wrote %zu of %zu bytes", lb_dtype_name(t), w, sz);
    CHECK(lb_dequantize(t, q, y, rows * cols) == LB_OK, "line %d", 256);
    free(q);
    return rel_rmse(x, y, rows * cols);
}

static void test_roundtrip(void) {
    const int64_t rows = 8, cols = 1024, n = rows * cols;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (int64_t i = 0; i < n; i++) x[i] = rnd_gauss() * 0.02f;
    /* bounds: measured values (printed) with head room; the theory for uniform rounding error
     * of a Gaussian block at b bits is roughly 2^-b * range / sqrt(12) */
    struct {
        lb_dtype t;
        double bound;
    } cases[] = {{LB_Q8_0, 0.0055}, {LB_Q4_0, 0.11}, {LB_Q4_1, 0.10}, {LB_Q5_0, 0.055},
                 {LB_Q5_1, 0.05},  {LB_Q2_K, 0.36}, {LB_Q3_K, 0.19}, {LB_Q4_K, 0.09},
                 {LB_Q5_K, 0.045}, {LB_Q6_K, 0.022}, {LB_Q8_K, 0.009}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double e = roundtrip(cases[c].t, x, rows, cols, y);
        printf("  %-5s relative RMSE %.4f (bound %.3f)\n", lb_dtype_name(cases[c].t), e, cases[c].bound);
        CHECK(e < cases[c].bound, "%s RMSE %.4f over %.3f", lb_dtype_name(cases[c].t), e, cases[c].bound);
    }

    /* the scale search beats plain min-max/absmax rounding in the same format */
    size_t sz = lb_dtype_row_size(LB_Q4_K, cols) * rows;
    void *q = malloc(sz);
    for (int64_t r = 0; r < rows; r++)
        lb_quantize_row_q4_K_absmax(x + r * cols, (uint8_t *)q + r * sz / rows, cols);
    lb_dequantize(LB_Q4_K, q, y, n);
    double e_abs = rel_rmse(x, y, n), e_search = roundtrip(LB_Q4_K, x, rows, cols, y);
    printf("  Q4_K absmax %.4f vs search %.4f\n", e_abs, e_search);
    CHECK(e_search < 0.95 * e_abs, "Q4_K search %.4f not below absmax %.4f", e_search, e_abs);
    free(q);

    /* importance weights: columns with a large imatrix entry get smaller error */
    float *im = malloc(cols * sizeof *im);
    for (int64_t i = 0; i < cols; i++) im[i] = (i % 7 == 0) ? 50.0f : 1.0f;
    const lb_dtype wt[] = {LB_Q4_K, LB_Q3_K, LB_Q2_K, LB_Q4_0};
    for (int k = 0; k < 4; k++) {
        size_t s2 = lb_dtype_row_size(wt[k], cols) * rows;
        void *q2 = malloc(s2);
        double e[2];
        for (int pass = 0; pass < 2; pass++) {
            lb_quantize(wt[k], x, q2, rows, cols, pass ? im : NULL);
            lb_dequantize(wt[k], q2, y, n);
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += im[i % cols] * (double)(x[i] - y[i]) * (x[i] - y[i]);
            e[pass] = s;
        }
        CHECK(e[1] < e[0], "%s imatrix-weighted error %g not below %g", lb_dtype_name(wt[k]), e[1], e[0]);
        free(q2);
    }
    free(im);

    /* values on the format's own grid come back exactly */
    float g[256], gy[256];
    for (int i = 0; i < 256; i++) g[i] = 0.5f * (float)((int)(rnd_u32() % 16) - 8);
    for (int b = 0; b < 8; b++) g[32 * b + 3] = -4.0f;
    lb_block_q4_0 b40[8];
    lb_quantize(LB_Q4_0, g, b40, 1, 256, NULL);
    lb_dequantize(LB_Q4_0, b40, gy, 256);
    CHECK(memcmp(g, gy, sizeof g) == 0, "Q4_0 grid values not exact");
    for (int i = 0; i < 256; i++) g[i] = 0.25f * (float)((int)(rnd_u32() % 255) - 127);
    for (int b = 0; b < 8; b++) g[32 * b + 5] = 0.25f * 127;
    lb_block_q8_0 b80[8];
    lb_quantize(LB_Q8_0, g, b80, 1, 256, NULL);
    lb_dequantize(LB_Q8_0, b80, gy, 256);
    CHECK(memcmp(g, gy, sizeof g) == 0, "Q8_0 grid values not exact");

    free(x);
    free(y);
}

/* ---- ternary ---- */

static void test_ternary(void) {
    const int64_t rows = 4, cols = 512, n = rows * cols;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    const float s = 0.375f; /* exact in fp16 */
    int8_t *t = malloc(n);
    for (int64_t i = 0; i < n; i++) {
        t[i] = (int8_t)((int)(rnd_u32() % 3) - 1);
        x[i] = s * t[i];
    }
    uint8_t *q = malloc(lb_dtype_row_size(LB_TQ1_0, cols) * rows + lb_dtype_row_size(LB_TQ2_0, cols) * rows);
    const lb_dtype tt[] = {LB_TQ1_0, LB_TQ2_0};
    for (int k = 0; k < 2; k++) {
        /* given the scale: {-s, 0, s} survives exactly */
        size_t rs = lb_dtype_row_size(tt[k], cols);
        for (int64_t r = 0; r < rows; r++) {
            if (tt[k] == LB_TQ1_0) lb_quantize_row_tq1_0(x + r * cols, q + r * rs, cols, s);
            else lb_quantize_row_tq2_0(x + r * cols, q + r * rs, cols, s);
        }
        lb_dequantize(tt[k], q, y, n);
        CHECK(memcmp(x, y, n * sizeof *x) == 0, "%s: ternary values not exact", lb_dtype_name(tt[k]));

        /* through lb_quantize (absmean scale): the trit pattern survives, scaled by absmean */
        float am = lb_ternary_absmean(x, n), d = lb_fp16_to_f32(lb_f32_to_fp16(am));
        CHECK(lb_quantize(tt[k], x, q, rows, cols, NULL) == rs * rows, "line %d", 354);
        lb_dequantize(tt[k], q, y, n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) bad += y[i] != d * t[i];
        CHECK(bad == 0, "%s: %d trits changed through absmean quantization", lb_dtype_name(tt[k]), bad);

        /* Gaussian input: exactly clamp(round(w / absmean)) * absmean */
        for (int64_t i = 0; i < n; i++) y[i] = rnd_gauss();
        am = lb_ternary_absmean(y, n);
        d = lb_fp16_to_f32(lb_f32_to_fp16(am));
        lb_quantize(tt[k], y, q, rows, cols, NULL);
        float *z = malloc(n * sizeof *z);
        lb_dequantize(tt[k], q, z, n);
        bad = 0;
        for (int64_t i = 0; i < n; i++) {
            float r = nearbyintf(y[i] * (1.0f / am));
            r = r > 1 ? 1 : r < -1 ? -1 : r;
            bad += z[i] != d * r;
        }
        CHECK(bad == 0, "%s: %d values differ from absmean rounding", lb_dtype_name(tt[k]), bad);
        free(z);
    }
    free(x);
    free(y);
    free(t);
    free(q);
}

/* ---- dot products ---- */

/* Random but valid blocks: every byte random, fp16 scale fields set to moderate values. */
static void random_blocks(lb_dtype t, void *dst, int n) {
    const lb_dtype_traits *tr = lb_dtype_get(t);
    int nb = n / tr->block_size;
    uint8_t *p = dst;
    for (size_t i = 0; i < nb * tr->type_size; i++) p[i] = (uint8_t)rnd_u32();
    for (int b = 0; b < nb; b++) {
        uint8_t *blk = p + b * tr->type_size;
        uint16_t d = h(0.001f + 0.01f * rnd_unif()), m = h(0.01f * (rnd_unif() - 0.5f));
        size_t off_d = 0, off_m = (size_t)-1;
        switch (t) {
        case LB_Q4_1: case LB_Q5_1: off_m = 2; break;
        case LB_Q2_K: off_d = 80; off_m = 82; break;
        case LB_Q3_K: off_d = 108; break;
        case LB_Q4_K: case LB_Q5_K: off_m = 2; break;
        case LB_Q6_K: off_d = 208; break;
        case LB_TQ1_0: off_d = 52; break;
        case LB_TQ2_0: off_d = 64; break;
        default: break;
        }
        memcpy(blk + off_d, &d, 2);
        if (off_m != (size_t)-1) memcpy(blk + off_m, &m, 2);
    }
}

static void test_dots(void) {
    const int lens32[] = {32, 64, 96, 160, 32 * 37, 4096};
    const int lens256[] = {256, 512, 768, 256 * 5, 256 * 11};
    int have_avx2 = lb_cpu_has_avx2();
    if (!have_avx2) printf("  (no AVX2 on this CPU: SIMD comparisons skipped)\n");
    for (int k = 0; k < N_ALL; k++) {
        lb_dtype t = k_all[k];
        const lb_quant_ops *ops = lb_quant_get_ops(t);
        CHECK(ops != NULL, "%s has no ops", lb_dtype_name(t));
        if (!ops) continue;
        int big = ops->act_block == 256;
        CHECK(ops->act_type == (big ? LB_Q8_K : LB_Q8_0), "line %d", 420);
        const int *lens = big ? lens256 : lens32;
        int nl = big ? 5 : 6;
        for (int li = 0; li < nl; li++) {
            int n = lens[li];
            float *x = malloc(n * sizeof *x), *wf = malloc(n * sizeof *wf), *xf = malloc(n * sizeof *xf);
            void *w = malloc(lb_dtype_row_size(t, n)), *xq = malloc(lb_quant_act_size(t, n));
            void *xq2 = malloc(lb_quant_act_size(t, n));
            for (int i = 0; i < n; i++) x[i] = rnd_gauss();

            /* quantized weights from our quantizer (or random blocks for the second pass) */
            for (int pass = 0; pass < 2; pass++) {
                if (pass == 0) {
                    for (int i = 0; i < n; i++) wf[i] = rnd_gauss() * 0.05f;
                    lb_quantize(t, wf, w, 1, n, NULL);
                } else {
                    random_blocks(t, w, n);
                }
                lb_dequantize(t, w, wf, n);
                if (big) lb_quantize_row_q8_K_scalar(x, xq, n);
                else lb_quantize_row_q8_0_scalar(x, xq, n);
                lb_dequantize(ops->act_type, xq, xf, n);
                double exact = 0, ref = 0, mag = 0, bound = 0;
                for (int i = 0; i < n; i++) {
                    exact += (double)wf[i] * xf[i];
                    ref += (double)wf[i] * x[i];
                    mag += fabs((double)wf[i] * xf[i]);
                }
                /* activation error per element: at most half a step of its block's scale */
                for (int i = 0; i < n; i++) {
                    float amax = 0;
                    int bs = ops->act_block, b0 = i / bs * bs;
                    for (int j = b0; j < b0 + bs; j++) amax = fmaxf(amax, fabsf(x[j]));
                    bound += fabs(wf[i]) * (amax / 127 * 0.5 * 1.01);
                }
                float got = ops->vec_dot_scalar(n, w, xq);
                CHECK(fabs(got - exact) <= 1e-5 * mag + 1e-6, "%s n=%d pass %d scalar %g vs dequantized %g",
                      lb_dtype_name(t), n, pass, got, exact);
                CHECK(fabs(got - ref) <= bound + 1e-5 * mag + 1e-6, "%s n=%d scalar %g vs float %g (bound %g)",
                      lb_dtype_name(t), n, got, ref, bound);
                if (have_avx2) {
                    float fast = ops->vec_dot(n, w, xq);
                    if (big) CHECK(fast == got, "%s n=%d AVX2 %.9g != scalar %.9g", lb_dtype_name(t), n, fast, got);
                    else CHECK(fabs(fast - got) <= 1e-5 * mag + 1e-6, "%s n=%d AVX2 %g vs scalar %g",
                               lb_dtype_name(t), n, fast, got);
                    /* activation quantizers: identical bytes */
                    ops->quantize_act(x, xq2, n);
                    CHECK(memcmp(xq, xq2, lb_quant_act_size(t, n)) == 0, "%s n=%d AVX2 activations differ",
                          lb_dtype_name(t), n);
                }
            }
            free(x);
            free(wf);
            free(xf);
            free(w);
            free(xq);
            free(xq2);
        }
    }
}

/* A NaN activation must reach the product at every level (issue 11): fmaxf and maxps drop it
 * from the block's absmax, and its code was clamped to -127, so the dot products came out
 * finite. The block holding it now gets a NaN scale and zero codes; the other blocks are as
 * before (their bytes equal a quantization of the same values without the NaN block). */
static void test_act_nan(void) {
    for (int k = 0; k < N_ALL; k++) {
        lb_dtype t = k_all[k];
        const lb_quant_ops *ops = lb_quant_get_ops(t);
        if (!ops) continue;
        int bs = ops->act_block, n = 3 * bs;
        float *x = malloc(n * sizeof *x), *wf = malloc(n * sizeof *wf);
        size_t asz = lb_quant_act_size(t, n);
        unsigned char *xq = malloc(asz), *xq2 = malloc(asz), *clean = malloc(asz);
        void *w = malloc(lb_dtype_row_size(t, n));
        for (int i = 0; i < n; i++) x[i] = rnd_gauss(), wf[i] = rnd_gauss() * 0.05f;
        lb_quantize(t, wf, w, 1, n, NULL);
        if (bs == 256) lb_quantize_row_q8_K_scalar(x, clean, n);
        else lb_quantize_row_q8_0_scalar(x, clean, n);
        x[bs + 5] = NAN;
        if (bs == 256) lb_quantize_row_q8_K_scalar(x, xq, n);
        else lb_quantize_row_q8_0_scalar(x, xq, n);
        size_t blk = asz / 3;
        float d;
        if (bs == 256) memcpy(&d, xq + blk, sizeof d);
        else {
            uint16_t h;
            memcpy(&h, xq + blk, sizeof h);
            d = lb_fp16_to_f32(h);
        }
        int zero = 1;
        for (size_t i = bs == 256 ? 4 : 2; i < blk; i++) zero &= xq[blk + i] == 0;
        CHECK(isnan(d) && zero, "%s: the block with a NaN has scale %g and %s codes", lb_dtype_name(t), d,
              zero ? "zero" : "non-zero");
        CHECK(!memcmp(xq, clean, blk) && !memcmp(xq + 2 * blk, clean + 2 * blk, blk),
              "%s: the blocks without a NaN are quantized as before", lb_dtype_name(t));
        float got = ops->vec_dot_scalar(n, w, xq);
        CHECK(isnan(got), "%s: scalar dot product with a NaN activation is %g, not NaN", lb_dtype_name(t), got);
        if (lb_cpu_has_avx2()) {
            ops->quantize_act(x, xq2, n);
            CHECK(!memcmp(xq, xq2, asz), "%s: AVX2 activations with a NaN differ from the scalar ones", lb_dtype_name(t));
            float fast = ops->vec_dot(n, w, xq2);
            CHECK(isnan(fast), "%s: AVX2 dot product with a NaN activation is %g, not NaN", lb_dtype_name(t), fast);
        }
        free(x), free(wf), free(xq), free(xq2), free(clean), free(w);
    }
}

/* The scale search's SIMD scans and pick agree with the scalar ones (the quantizers use
 * whichever the CPU allows, so both paths must choose alike). */
static void test_search_simd(void) {
    if (!lb_cpu_has_avx2()) return;
    float x[32], w[32], isc[21], a[63], b[63];
    int bad = 0, badpick = 0;
    for (int rep = 0; rep < 200; rep++) {
        float mn = 0, mx = 0, sw = 0, sx = 0;
        for (int i = 0; i < 32; i++) {
            x[i] = rnd_gauss();
            w[i] = 0.5f + rnd_unif();
            mn = fminf(mn, x[i]);
            mx = fmaxf(mx, x[i]);
            sw += w[i];
            sx += w[i] * x[i];
        }
        for (int k = 0; k < 21; k++) isc[k] = (15 + 0.1f * (k - 10)) / (mx - mn);
        lb_qs_scan_asym(32, x, w, mn, 15, isc, 21, a);
        lb_qs_scan_asym_avx2(32, x, w, mn, 15, isc, 21, b);
        for (int k = 0; k < 63; k++) bad += fabsf(a[k] - b[k]) > 1e-4f * (fabsf(a[k]) + 1);
        float s1, o1, s2, o2;
        int p1 = lb_qs_pick_asym(21, a, sw, sx, 0, &s1, &o1);
        int p2 = lb_qs_pick_asym_avx2(21, a, sw, sx, 0, &s2, &o2);
        badpick += p1 != p2 || fabsf(s1 - s2) > 1e-5f * fabsf(s1) || fabsf(o1 - o2) > 1e-5f * (fabsf(o1) + 1e-3f);
        lb_qs_scan_sym(32, x, w, -8, 7, isc, 21, a);
        lb_qs_scan_sym_avx2(32, x, w, -8, 7, isc, 21, b);
        for (int k = 0; k < 42; k++) bad += fabsf(a[k] - b[k]) > 1e-4f * (fabsf(a[k]) + 1);
        lb_qs_weights(32, x, NULL, a);
        lb_qs_weights_avx2(32, x, NULL, b);
        for (int k = 0; k < 32; k++) bad += fabsf(a[k] - b[k]) > 1e-5f * a[k];
    }
    CHECK(bad == 0, "%d search sums differ between scalar and AVX2", bad);
    CHECK(badpick == 0, "%d candidate picks differ between scalar and AVX2", badpick);
}

/* ---- API edges ---- */

static void test_errors(void) {
    float x[300] = {0};
    uint8_t buf[1024];
    memset(buf, 0xAB, sizeof buf);
    CHECK(lb_quantize(LB_Q4_K, x, buf, 1, 300, NULL) == 0, "300 is not a multiple of 256");
    CHECK(lb_quantize(LB_Q4_0, x, buf, 1, 48, NULL) == 0, "48 is not a multiple of 32");
    CHECK(lb_quantize(LB_TQ2_0, x, buf, 1, 128, NULL) == 0, "128 is not a multiple of 256");
    int untouched = 1;
    for (size_t i = 0; i < sizeof buf; i++) untouched &= buf[i] == 0xAB;
    CHECK(untouched, "a rejected quantize wrote to the output");
    lb_error err = {0};
    size_t written = 1;
    CHECK(lb_quantize_checked(LB_Q6_K, x, buf, 1, 300, NULL, &written, &err) == LB_ERR_ARG, "line %d", 530);
    CHECK(written == 0 && strstr(err.msg, "300") != NULL, "message: %s", err.msg);
    CHECK(lb_quantize_checked(LB_Q8_1, x, buf, 1, 32, NULL, &written, &err) == LB_ERR_UNSUPPORTED, "line %d", 532);
    CHECK(lb_quantize_checked(LB_F32, x, buf, 1, 32, NULL, &written, &err) == LB_ERR_UNSUPPORTED, "line %d", 533);
    CHECK(lb_quantize_checked((lb_dtype)99, x, buf, 1, 32, NULL, &written, &err) == LB_ERR_UNSUPPORTED, "line %d", 534);
    CHECK(lb_dequantize(LB_Q4_K, buf, x, 100) == LB_ERR_ARG, "line %d", 535);
    CHECK(lb_dequantize(LB_Q8_1, buf, x, 32) == LB_ERR_UNSUPPORTED, "line %d", 536);
    CHECK(lb_quant_get_ops(LB_F32) == NULL && lb_quant_get_ops(LB_Q8_K) == NULL, "line %d", 537);
    CHECK(lb_quant_act_size(LB_Q4_K, 100) == 0 && lb_quant_act_size(LB_Q4_K, 512) == 2 * 292, "line %d", 538);
    CHECK(lb_quant_act_size(LB_Q4_0, 64) == 2 * 34, "line %d", 539);

    /* the writable set and the to_float registration in the dtype table */
    for (int k = 0; k < N_ALL; k++) {
        CHECK(lb_quant_can_write(k_all[k]), "%s not writable", lb_dtype_name(k_all[k]));
        CHECK(lb_dtype_get(k_all[k])->to_float != NULL, "%s has no to_float", lb_dtype_name(k_all[k]));
    }
    CHECK(lb_quant_can_write(LB_Q8_K) && !lb_quant_can_write(LB_Q8_1) && !lb_quant_can_write(LB_F16), "line %d", 546);
    CHECK(lb_dtype_get(LB_Q8_K)->to_float != NULL, "line %d", 547);

    /* zero rows, constant rows and one huge value never produce NaN */
    float z[256] = {0}, y[256];
    z[17] = 1e4f;
    for (int k = 0; k < N_ALL; k++) {
        uint8_t blk[300];
        for (int pass = 0; pass < 2; pass++) {
            if (pass) memset(z, 0, sizeof z);
            lb_quantize(k_all[k], z, blk, 1, 256, NULL);
            lb_dequantize(k_all[k], blk, y, 256);
            int nan = 0;
            for (int i = 0; i < 256; i++) nan += !isfinite(y[i]);
            CHECK(nan == 0, "%s produced %d non-finite values", lb_dtype_name(k_all[k]), nan);
        }
    }
}

int main(void) {
    kat_legacy();
    kat_k();
    test_roundtrip();
    test_ternary();
    test_dots();
    test_act_nan();
    test_search_simd();
    test_errors();
    return test_summary();
}
