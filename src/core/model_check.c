/* lb_model_tensor_check: counts the weights that are not finite (inspect --check). Loading does
 * not scan: reading every weight of a mapped multi-GiB file would cost what zero-copy loading
 * saves, so run catches the damage where it shows (non-finite logits, src/engine/engine.c). */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/model.h"

lb_status lb_model_tensor_check(const lb_model *m, size_t i, lb_tensor_check *out, lb_error *err) {
    if (i >= m->n_tensors) return lb_fail(err, LB_ERR_RANGE, "tensor index %zu out of range", i);
    const lb_tensor *t = &m->tensors[i];
    out->n_bad = 0;
    out->first = -1;
    out->first_value = 0;
    int64_t n = t->n_dims ? t->ne[0] : 1, rows = lb_tensor_nrows(t);
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) return lb_fail(err, LB_ERR_NOMEM, "tensor %s: out of memory for a row of %lld values", t->name, (long long)n);
    lb_status s = LB_OK;
    for (int64_t r = 0; r < rows && !s; r++) {
        if ((s = lb_tensor_row_to_float(t, r, x, err))) break;
        for (int64_t j = 0; j < n; j++) {
            if (isfinite(x[j])) continue;
            if (!out->n_bad++) {
                out->first = r * n + j;
                out->first_value = x[j];
            }
        }
    }
    free(x);
    return s;
}
