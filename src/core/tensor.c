#include "core/tensor.h"

#include "core/error.h"

lb_status lb_tensor_nbytes(lb_dtype type, int n_dims, const int64_t *ne, size_t *out,
                           const char *what, lb_error *err) {
    const lb_dtype_traits *tr = lb_dtype_get(type);
    if (!tr) return lb_fail(err, LB_ERR_FORMAT, "%s: unknown tensor type id %u", what, (unsigned)type);
    if (n_dims < 0 || n_dims > LB_MAX_DIMS)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %d dimensions (at most %d)", what, n_dims, LB_MAX_DIMS);
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (ne[i] < 0) return lb_fail(err, LB_ERR_FORMAT, "%s: negative dimension %lld", what, (long long)ne[i]);
        if (!lb_mul_ok(n, (size_t)ne[i], &n))
            return lb_fail(err, LB_ERR_FORMAT, "%s: element count overflows", what);
    }
    if (n_dims > 0 && ne[0] % tr->block_size)
        return lb_fail(err, LB_ERR_FORMAT, "%s: row length %lld is not a multiple of the %s block size %d",
                       what, (long long)ne[0], tr->name, tr->block_size);
    size_t bytes;
    if (!lb_mul_ok(n / (size_t)tr->block_size, tr->type_size, &bytes))
        return lb_fail(err, LB_ERR_FORMAT, "%s: byte size overflows", what);
    *out = bytes;
    return LB_OK;
}

lb_status lb_tensor_row_to_float(const lb_tensor *t, int64_t r, float *dst, lb_error *err) {
    const lb_dtype_traits *tr = lb_dtype_get(t->type);
    if (!tr || !tr->to_float)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "tensor %s: no conversion from %s to float", t->name,
                       lb_dtype_name(t->type));
    if (r < 0 || r >= lb_tensor_nrows(t))
        return lb_fail(err, LB_ERR_RANGE, "tensor %s: row %lld out of range", t->name, (long long)r);
    size_t row = lb_dtype_row_size(t->type, t->ne[0]);
    tr->to_float((const char *)t->data + (size_t)r * row, dst, t->ne[0]);
    return LB_OK;
}
