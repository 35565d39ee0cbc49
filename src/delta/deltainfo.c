/* Public read-only view of an opened delta (lowbit delta info), so front ends need not see
 * the file's internal layout. */
#include <string.h>

#include "core/error.h"
#include "delta/deltafile.h"

void lb_delta_get_info(const lb_delta *d, lb_delta_info *out) {
    memset(out, 0, sizeof *out);
    out->mode = d->mode;
    out->version = d->version;
    out->lossless = d->mode == LB_DELTA_XOR || d->mode == LB_DELTA_ZDIFF;
    out->n_tensors = d->n;
    out->data_bytes = d->data_bytes;
    out->base_format = d->base_format;
    out->base_fingerprint = d->base_fp;
    for (size_t i = 0; i < d->n; i++) {
        const lb_delta_entry *e = &d->e[i];
        out->n_changed += e->kept > 0;
        out->weight_bytes += e->n * e->es;
        if (e->max_err > out->max_err) out->max_err = e->max_err;
    }
}

static const char *encoding(const lb_delta_entry *e) {
    if (!e->kept) return "same";
    if (e->enc == 'z') return "zstd";
    if (e->enc == 'r') return e->n8 ? "mixed" : "sign";
    return e->dense ? "dense" : "sparse";
}

lb_status lb_delta_get_tensor(const lb_delta *d, size_t i, lb_delta_tensor_info *out, lb_error *err) {
    if (i >= d->n) return lb_fail(err, LB_ERR_RANGE, "%s: tensor %zu asked of a delta with %zu", d->path, i, d->n);
    const lb_delta_entry *e = &d->e[i];
    *out = (lb_delta_tensor_info){.name = e->name, .dtype = e->dtype, .encoding = encoding(e),
                                  .data_bytes = lb_delta_entry_bytes(d, e), .weight_bytes = e->n * e->es,
                                  .max_err = e->max_err, .rms_err = e->rms_err};
    return LB_OK;
}
