/* Small vector ops of the forward pass (float32 compute), scalar reference + AVX2.
 *
 * The implementation is chosen once, at first use, by cpuid; each call is then one indirect
 * call through a const table. All lengths n >= 0; in-place use (out == x, y == x) is allowed
 * where the names say so. F16 data (KV cache) is IEEE half stored as uint16_t. */
#ifndef LB_KERNELS_CPU_VEC_H
#define LB_KERNELS_CPU_VEC_H
#include <stddef.h>
#include <stdint.h>

typedef struct lb_vec_ops {
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    float (*dot_f16)(const uint16_t *a, const float *b, int64_t n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int64_t n);
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps);
    void (*softmax)(float *x, int64_t n);
    void (*silu_mul)(float *gate, const float *up, int64_t n);
    void (*relu2_mul)(float *gate, const float *up, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);
    void (*scale)(float *y, float a, int64_t n);
    void (*to_f16)(uint16_t *dst, const float *src, int64_t n);
    void (*attn_scores)(float *s, const float *q, const void *k, int kv_type, size_t stride, int64_t n_pos,
                        int64_t hd, float scale);
    void (*attn_values)(float *out, const float *a, const void *v, int kv_type, size_t stride, int64_t n_pos,
                        int64_t hd);
} lb_vec_ops;

/* Element types of a KV cache row for the attention kernels (same values as lb_kv_type). */
enum { LB_ATTN_F32 = 0, LB_ATTN_F16 = 1, LB_ATTN_Q8_0 = 2, LB_ATTN_Q4_0 = 3 };

/* The table in use (AVX2 when the CPU has AVX2+FMA+F16C, else scalar). */
const lb_vec_ops *lb_vec_ops_get(void);
/* The portable reference, and the AVX2 table (NULL without AVX2/FMA/F16C). For tests. */
const lb_vec_ops *lb_vec_ops_scalar(void);
const lb_vec_ops *lb_vec_ops_avx2(void);

/* sum a[i] * b[i] */
float lb_vec_dot(const float *a, const float *b, int64_t n);
/* y += a * x */
void lb_vec_axpy(float *y, float a, const float *x, int64_t n);
/* sum f16(a[i]) * b[i], and y += a * f16(x): attention over an F16 KV cache. */
float lb_vec_dot_f16(const uint16_t *a_f16, const float *b, int64_t n);
void lb_vec_axpy_f16(float *y, float a, const uint16_t *x_f16, int64_t n);
/* out[i] = (x[i] * s) * w[i], s = 1 / sqrt(mean(x^2) + eps) (w NULL: no weight), the order of
 * PyTorch's LlamaRMSNorm. The sum of squares is taken in double. out may equal x. */
void lb_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
/* In place: x = exp(x - max) / sum. n >= 1. */
void lb_softmax(float *x, int64_t n);
/* gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)) (SwiGLU FFN). */
void lb_silu_mul(float *gate, const float *up, int64_t n);
/* gate[i] = max(gate[i], 0)^2 * up[i] (BitNet's relu2 FFN). */
void lb_relu2_mul(float *gate, const float *up, int64_t n);
/* y += x */
void lb_vec_add(float *y, const float *x, int64_t n);
/* y *= a */
void lb_vec_scale(float *y, float a, int64_t n);
/* A Q4_0 KV row: per block of 32, d = the value of largest magnitude / -8 rounded to F16, codes
 * round(x / d) + 8 clamped to 0..15 (GGUF Q4_0, as llama.cpp writes its q4_0 cache: no search,
 * the cache is written once per token and layer). n % 32 == 0. */
void lb_kv_quantize_q4_0(const float *src, void *dst, int64_t n);
/* dst = f16(src), round to nearest even (writing an F16 KV cache). */
void lb_vec_to_f16(uint16_t *dst, const float *src, int64_t n);
/* Attention of one query head over n_pos cached positions; k and v hold rows of hd elements of
 * kv_type (LB_ATTN_F32, LB_ATTN_F16, or LB_ATTN_Q8_0 / LB_ATTN_Q4_0: hd / 32 GGUF blocks, hd % 32 == 0),
 * stride BYTES apart. s[p] = scale * dot(q, k[p]); out = sum_p a[p] * v[p]. */
void lb_attn_scores(float *s, const float *q, const void *k, int kv_type, size_t stride, int64_t n_pos, int64_t hd,
                    float scale);
void lb_attn_values(float *out, const float *a, const void *v, int kv_type, size_t stride, int64_t n_pos,
                    int64_t hd);

#endif
