/* One tensor description everywhere: loaders produce it, kernels, quantizers and compressors
 * consume it. ne[0] is the innermost (row) length, as in GGUF: a PyTorch weight of shape
 * [out, in] has ne = {in, out}. Data is row-major, contiguous, and may be unaligned
 * (safetensors does not align) or live in an mmapped file. */
#ifndef LB_CORE_TENSOR_H
#define LB_CORE_TENSOR_H
#include "core/dtype.h"
#include "lowbit.h"

#define LB_MAX_DIMS 4

typedef struct lb_tensor {
    const char *name;      /* owned by whoever produced the tensor table */
    lb_dtype type;
    int n_dims;
    int64_t ne[LB_MAX_DIMS];
    const void *data;      /* NULL when absent */
    size_t nbytes;
} lb_tensor;

static inline int64_t lb_tensor_nelements(const lb_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->ne[i];
    return n;
}
static inline int64_t lb_tensor_nrows(const lb_tensor *t) {
    return t->n_dims ? lb_tensor_nelements(t) / t->ne[0] : 1;
}

/* Computes the byte size of a (type, shape), checking every multiplication and the block
 * divisibility of ne[0]. Returns LB_ERR_FORMAT with a message naming `what` on failure. */
lb_status lb_tensor_nbytes(lb_dtype type, int n_dims, const int64_t *ne, size_t *out,
                           const char *what, lb_error *err);

/* Converts row r of a 2-D tensor (any float or registered block type) to float. */
lb_status lb_tensor_row_to_float(const lb_tensor *t, int64_t r, float *dst, lb_error *err);

#endif
