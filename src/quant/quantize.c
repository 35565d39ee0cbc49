/* Quantize / dequantize driver: checks row lengths against the block size before any write. */
#include "core/error.h"
#include "quant/quant.h"

typedef void (*row_quant_fn)(const float *x, void *dst, int64_t n, const float *imatrix);

static row_quant_fn row_quantizer(lb_dtype t) {
    switch (t) {
    case LB_Q8_0: return lb_quantize_row_q8_0_ref;
    case LB_Q4_0: return lb_quantize_row_q4_0_ref;
    case LB_Q4_1: return lb_quantize_row_q4_1_ref;
    case LB_Q5_0: return lb_quantize_row_q5_0_ref;
    case LB_Q5_1: return lb_quantize_row_q5_1_ref;
    case LB_Q2_K: return lb_quantize_row_q2_K_ref;
    case LB_Q3_K: return lb_quantize_row_q3_K_ref;
    case LB_Q4_K: return lb_quantize_row_q4_K_ref;
    case LB_Q5_K: return lb_quantize_row_q5_K_ref;
    case LB_Q6_K: return lb_quantize_row_q6_K_ref;
    case LB_Q8_K: return lb_quantize_row_q8_K_ref;
    case LB_IQ4_NL: return lb_quantize_row_iq4_nl_ref;
    case LB_IQ4_XS: return lb_quantize_row_iq4_xs_ref;
    default: return NULL;
    }
}

int lb_quant_can_write(lb_dtype type) {
    return row_quantizer(type) != NULL || type == LB_TQ1_0 || type == LB_TQ2_0;
}

lb_status lb_quantize_checked(lb_dtype type, const float *src, void *dst, int64_t n_rows,
                              int64_t n_per_row, const float *imatrix, size_t *written,
                              lb_error *err) {
    if (written) *written = 0;
    const lb_dtype_traits *tr = lb_dtype_get(type);
    if (!tr || !lb_quant_can_write(type))
        return lb_fail(err, LB_ERR_UNSUPPORTED, "quantize: cannot write type %s (id %d)",
                       lb_dtype_name(type), (int)type);
    if (n_rows < 0 || n_per_row <= 0 || (n_rows > 0 && (!src || !dst)))
        return lb_fail(err, LB_ERR_ARG, "quantize: bad arguments (%lld rows of %lld)",
                       (long long)n_rows, (long long)n_per_row);
    if (n_per_row % tr->block_size)
        return lb_fail(err, LB_ERR_ARG,
                       "quantize: row length %lld is not a multiple of the %s block size %d",
                       (long long)n_per_row, tr->name, tr->block_size);
    size_t row_bytes = lb_dtype_row_size(type, n_per_row), total, n_elems;
    if (!lb_mul_ok(row_bytes, (size_t)n_rows, &total) ||
        !lb_mul_ok((size_t)n_per_row, (size_t)n_rows, &n_elems))
        return lb_fail(err, LB_ERR_RANGE, "quantize: %lld rows of %lld overflow", (long long)n_rows,
                       (long long)n_per_row);
    row_quant_fn fn = row_quantizer(type);
    float scale = fn ? 0 : lb_ternary_absmean(src, (int64_t)n_elems);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *x = src + r * n_per_row;
        void *y = (uint8_t *)dst + (size_t)r * row_bytes;
        if (fn) fn(x, y, n_per_row, imatrix);
        else if (type == LB_TQ1_0) lb_quantize_row_tq1_0(x, y, n_per_row, scale);
        else lb_quantize_row_tq2_0(x, y, n_per_row, scale);
    }
    if (written) *written = total;
    return LB_OK;
}

size_t lb_quantize(lb_dtype type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                   const float *imatrix) {
    size_t written = 0;
    if (lb_quantize_checked(type, src, dst, n_rows, n_per_row, imatrix, &written, NULL) != LB_OK)
        return 0;
    return written;
}

lb_status lb_dequantize(lb_dtype type, const void *src, float *dst, int64_t n) {
    const lb_dtype_traits *tr = lb_dtype_get(type);
    if (!tr || !tr->to_float) return LB_ERR_UNSUPPORTED;
    if (n < 0 || n % tr->block_size || (n > 0 && (!src || !dst))) return LB_ERR_ARG;
    tr->to_float(src, dst, n);
    return LB_OK;
}
