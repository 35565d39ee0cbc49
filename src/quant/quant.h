/* GGUF block formats: dequantize, quantize (error-minimizing scale search), and dot products
 * of a quantized weight row with activations quantized on the fly to Q8_0 or Q8_K. */
#ifndef LB_QUANT_QUANT_H
#define LB_QUANT_QUANT_H
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "kernels/cpu/cpu.h"
#include "lowbit.h"
#include "quant/blocks.h"

/* ---- dequantize: n must be a multiple of the type's block size ---- */
void lb_dequantize_row_q8_0(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q4_0(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q4_1(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q5_0(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q5_1(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q2_K(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q3_K(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q4_K(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q5_K(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q6_K(const void *src, float *dst, int64_t n);
void lb_dequantize_row_q8_K(const void *src, float *dst, int64_t n);
void lb_dequantize_row_tq1_0(const void *src, float *dst, int64_t n);
void lb_dequantize_row_tq2_0(const void *src, float *dst, int64_t n);
void lb_dequantize_row_iq4_nl(const void *src, float *dst, int64_t n);
void lb_dequantize_row_iq4_xs(const void *src, float *dst, int64_t n);

/* ---- quantize one row: n a multiple of the block size. imatrix (NULL or n floats): the
 * importance of each column (mean squared activation), weighting the error the scale search
 * minimizes. ---- */
void lb_quantize_row_q8_0_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q4_0_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q4_1_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q5_0_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q5_1_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q2_K_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q3_K_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q4_K_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q5_K_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q6_K_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_q8_K_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_iq4_nl_ref(const float *x, void *dst, int64_t n, const float *imatrix);
void lb_quantize_row_iq4_xs_ref(const float *x, void *dst, int64_t n, const float *imatrix);

/* Plain absmax / min-max rounding with no search, for comparison in tests and benches. */
void lb_quantize_row_q4_K_absmax(const float *x, void *dst, int64_t n);

/* Ternary (BitNet b1.58): scale = mean |w| over the whole tensor; each value becomes
 * clamp(round(w / scale), -1, 1) and every block stores d = scale. */
float lb_ternary_absmean(const float *x, int64_t n);
void lb_quantize_row_tq1_0(const float *x, void *dst, int64_t n, float scale);
void lb_quantize_row_tq2_0(const float *x, void *dst, int64_t n, float scale);

/* ---- driver ---- */
/* 1 when lb_quantize can write type. */
LB_API int lb_quant_can_write(lb_dtype type);
/* Quantizes n_rows rows of n_per_row floats; TQ types use the absmean of all rows. Returns the
 * bytes written, 0 on a bad type or a row length that is not a multiple of the block size
 * (nothing is written then). */
size_t lb_quantize(lb_dtype type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                   const float *imatrix);
/* The same with a status and message. */
LB_API lb_status lb_quantize_checked(lb_dtype type, const float *src, void *dst, int64_t n_rows,
                                     int64_t n_per_row, const float *imatrix, size_t *written,
                                     lb_error *err);
/* n elements of any type with a to_float (blocks, F16, BF16, F32); LB_ERR_ARG when n is not a
 * multiple of the block size or the type cannot be read. */
LB_API lb_status lb_dequantize(lb_dtype type, const void *src, float *dst, int64_t n);

/* ---- activations and dot products ---- */
/* Quantize n floats (multiple of 32 / 256) of activations. Dispatch to AVX2 when present. */
void lb_quantize_row_q8_0(const float *x, void *dst, int64_t n);
void lb_quantize_row_q8_K(const float *x, void *dst, int64_t n);
void lb_quantize_row_q8_0_scalar(const float *x, void *dst, int64_t n);
void lb_quantize_row_q8_K_scalar(const float *x, void *dst, int64_t n);

/* Dot of one weight row (n elements, type T) with activations x (Q8_0 or Q8_K, n elements). */
typedef float (*lb_vec_dot_fn)(int n, const void *w_row, const void *x_q);
typedef void (*lb_quantize_act_fn)(const float *x, void *dst, int64_t n);

#define LB_DECLARE_DOT(t)                                                                    \
    float lb_vec_dot_##t##_q8(int n, const void *w_row, const void *x_q);                    \
    float lb_vec_dot_##t##_q8_scalar(int n, const void *w_row, const void *x_q);             \
    float lb_vec_dot_##t##_q8_avx2(int n, const void *w_row, const void *x_q);
LB_DECLARE_DOT(q8_0)
LB_DECLARE_DOT(q4_0)
LB_DECLARE_DOT(q4_1)
LB_DECLARE_DOT(q5_0)
LB_DECLARE_DOT(q5_1)
LB_DECLARE_DOT(q2_K)
LB_DECLARE_DOT(q3_K)
LB_DECLARE_DOT(q4_K)
LB_DECLARE_DOT(q5_K)
LB_DECLARE_DOT(q6_K)
LB_DECLARE_DOT(tq1_0)
LB_DECLARE_DOT(tq2_0)
LB_DECLARE_DOT(iq4_nl)
LB_DECLARE_DOT(iq4_xs)
#undef LB_DECLARE_DOT

void lb_quantize_row_q8_0_avx2(const float *x, void *dst, int64_t n);
void lb_quantize_row_q8_K_avx2(const float *x, void *dst, int64_t n);

/* What the matmul dispatcher needs per weight type. */
typedef struct lb_quant_ops {
    lb_dtype act_type;            /* LB_Q8_0 or LB_Q8_K */
    int act_block;                /* 32 or 256: row lengths must be a multiple */
    size_t act_block_bytes;       /* bytes of one activation block */
    lb_quantize_act_fn quantize_act; /* best for this CPU */
    lb_vec_dot_fn vec_dot;           /* best for this CPU */
    lb_vec_dot_fn vec_dot_scalar;    /* reference */
} lb_quant_ops;

/* NULL for types without a quantized dot (F32, F16, BF16, Q8_K, unknown). The pointers are
 * resolved for the running CPU (AVX2+FMA when present). */
const lb_quant_ops *lb_quant_get_ops(lb_dtype type);
/* Bytes of n activations quantized for weight type t (0 when n does not fit). */
size_t lb_quant_act_size(lb_dtype weight_type, int64_t n);

/* The 16 int8 levels of IQ4_NL / IQ4_XS (GGUF's table). */
extern const int8_t lb_iq4_values[16];

/* Internal: d * dx * isum - dmin * dx * msum, shared by the scalar and AVX2 K-quant kernels
 * so both round identically. */
float lb_kq_block_sum(float d, float dmin, float dx, int isum, int msum);

#endif
