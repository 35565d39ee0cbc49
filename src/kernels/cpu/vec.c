/* Scalar reference vector ops and the once-chosen dispatch table. */
#include "kernels/cpu/vec.h"
#include "kernels/cpu/attn_impl.h"

#include <math.h>
#include <stdatomic.h>

#include "core/dtype.h"
#include "kernels/cpu/cpu.h"

static float dot_scalar(const float *a, const float *b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static void axpy_scalar(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}
static float dot_f16_scalar(const uint16_t *a, const float *b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += lb_fp16_to_f32(a[i]) * b[i];
    return s;
}
static void axpy_f16_scalar(float *y, float a, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * lb_fp16_to_f32(x[i]);
}
static void rmsnorm_scalar(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float s = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
    for (int64_t i = 0; i < n; i++) out[i] = w ? (x[i] * s) * w[i] : x[i] * s;
}
static void softmax_scalar(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}
static void silu_mul_scalar(float *g, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * up[i];
}
static void relu2_mul_scalar(float *g, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float r = g[i] < 0 ? 0 : g[i]; /* NaN passes through (torch.relu keeps it) */
        g[i] = r * r * up[i];
    }
}
static void add_scalar(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
static void scale_scalar(float *y, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}
static void to_f16_scalar(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = lb_f32_to_fp16(src[i]);
}

/* Q8_0 rows: per block, the int8 sum first, then one multiply by the block scale. */
static float dot_q8_0_scalar(const lb_block_q8_0 *b, const float *q, int64_t nb) {
    float s = 0;
    for (int64_t j = 0; j < nb; j++, q += LB_QK) {
        float t = 0;
        for (int i = 0; i < LB_QK; i++) t += q[i] * (float)b[j].qs[i];
        s += lb_fp16_to_f32(b[j].d) * t;
    }
    return s;
}
static void axpy_q8_0_scalar(float *y, float a, const lb_block_q8_0 *b, int64_t nb) {
    for (int64_t j = 0; j < nb; j++, y += LB_QK) {
        float ad = a * lb_fp16_to_f32(b[j].d);
        for (int i = 0; i < LB_QK; i++) y[i] += ad * (float)b[j].qs[i];
    }
}

/* Q4_0 rows (codes 0..15 stand for code - 8; low nibbles are elements 0..15, high 16..31): the
 * same order as Q8_0, a block's sum first, then its scale. */
static float dot_q4_0_scalar(const lb_block_q4_0 *b, const float *q, int64_t nb) {
    float s = 0;
    for (int64_t j = 0; j < nb; j++, q += LB_QK) {
        float t = 0;
        for (int i = 0; i < 16; i++) t += q[i] * (float)((b[j].qs[i] & 15) - 8);
        for (int i = 0; i < 16; i++) t += q[i + 16] * (float)((b[j].qs[i] >> 4) - 8);
        s += lb_fp16_to_f32(b[j].d) * t;
    }
    return s;
}
static void axpy_q4_0_scalar(float *y, float a, const lb_block_q4_0 *b, int64_t nb) {
    for (int64_t j = 0; j < nb; j++, y += LB_QK) {
        float ad = a * lb_fp16_to_f32(b[j].d);
        for (int i = 0; i < 16; i++) {
            y[i] += ad * (float)((b[j].qs[i] & 15) - 8);
            y[i + 16] += ad * (float)((b[j].qs[i] >> 4) - 8);
        }
    }
}

void lb_kv_quantize_q4_0(const float *src, void *dst, int64_t n) {
    lb_block_q4_0 *b = dst;
    for (int64_t j = 0; j < n / LB_QK; j++, src += LB_QK) {
        float amax = 0, m = 0;
        for (int i = 0; i < LB_QK; i++)
            if (fabsf(src[i]) > amax) amax = fabsf(src[i]), m = src[i];
        b[j].d = lb_f32_to_fp16(m / -8);
        float d = lb_fp16_to_f32(b[j].d), id = d != 0 ? 1.0f / d : 0;
        for (int i = 0; i < 16; i++) {
            int lo = (int)lrintf(src[i] * id) + 8, hi = (int)lrintf(src[i + 16] * id) + 8;
            lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
            hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
            b[j].qs[i] = (uint8_t)(lo | hi << 4);
        }
    }
}

LB_ATTN_FNS(scalar, dot_scalar, dot_f16_scalar, dot_q8_0_scalar, dot_q4_0_scalar, axpy_scalar, axpy_f16_scalar,
            axpy_q8_0_scalar, axpy_q4_0_scalar)

static const lb_vec_ops g_scalar = {dot_scalar,      axpy_scalar,      dot_f16_scalar, axpy_f16_scalar,
                                    rmsnorm_scalar,  softmax_scalar,   silu_mul_scalar, relu2_mul_scalar,
                                    add_scalar,      scale_scalar,     to_f16_scalar,  attn_scores_scalar,
                                    attn_values_scalar};

const lb_vec_ops *lb_vec_ops_scalar(void) { return &g_scalar; }
const lb_vec_ops *lb_vec_ops_avx2(void) { return lb_cpu_has_avx2() ? lb_vec_avx2_table() : NULL; }

const lb_vec_ops *lb_vec_ops_get(void) {
    /* Both candidate tables are const; a racing first use just stores the same pointer. */
    static _Atomic(const lb_vec_ops *) chosen;
    const lb_vec_ops *t = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (!t) {
        t = lb_vec_ops_avx2();
        if (!t) t = &g_scalar;
        atomic_store_explicit(&chosen, t, memory_order_relaxed);
    }
    return t;
}

float lb_vec_dot(const float *a, const float *b, int64_t n) { return lb_vec_ops_get()->dot(a, b, n); }
void lb_vec_axpy(float *y, float a, const float *x, int64_t n) { lb_vec_ops_get()->axpy(y, a, x, n); }
float lb_vec_dot_f16(const uint16_t *a, const float *b, int64_t n) { return lb_vec_ops_get()->dot_f16(a, b, n); }
void lb_vec_axpy_f16(float *y, float a, const uint16_t *x, int64_t n) { lb_vec_ops_get()->axpy_f16(y, a, x, n); }
void lb_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    lb_vec_ops_get()->rmsnorm(out, x, w, n, eps);
}
void lb_softmax(float *x, int64_t n) { lb_vec_ops_get()->softmax(x, n); }
void lb_silu_mul(float *gate, const float *up, int64_t n) { lb_vec_ops_get()->silu_mul(gate, up, n); }
void lb_relu2_mul(float *gate, const float *up, int64_t n) { lb_vec_ops_get()->relu2_mul(gate, up, n); }
void lb_vec_add(float *y, const float *x, int64_t n) { lb_vec_ops_get()->add(y, x, n); }
void lb_vec_scale(float *y, float a, int64_t n) { lb_vec_ops_get()->scale(y, a, n); }
void lb_vec_to_f16(uint16_t *dst, const float *src, int64_t n) { lb_vec_ops_get()->to_f16(dst, src, n); }

void lb_attn_scores(float *s, const float *q, const void *k, int kv_type, size_t stride, int64_t n_pos, int64_t hd,
                    float scale) {
    lb_vec_ops_get()->attn_scores(s, q, k, kv_type, stride, n_pos, hd, scale);
}
void lb_attn_values(float *out, const float *a, const void *v, int kv_type, size_t stride, int64_t n_pos,
                    int64_t hd) {
    lb_vec_ops_get()->attn_values(out, a, v, kv_type, stride, n_pos, hd);
}
