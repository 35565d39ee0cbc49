/* Int8 deltas with symmetric per-block scales (definition in lowbit.h). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "delta/sparse.h"

size_t lb_delta_int8_quant_scalar(const float *x, size_t n, size_t block, int8_t *q, float *scales) {
    for (size_t b = 0, i0 = 0; i0 < n; b++, i0 += block) {
        size_t m = n - i0 < block ? n - i0 : block;
        uint32_t amax = lb_delta_absbits_max(x + i0, m, 0);
        if (amax >= 0x7f800000u) return b;
        float inv;
        scales[b] = lb_delta_int8_scale(amax, &inv);
        lb_delta_int8_round(x + i0, m, inv, q + i0);
    }
    return SIZE_MAX;
}

void lb_delta_int8_dequant_scalar(const int8_t *q, const float *scales, size_t n, size_t block, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = (float)q[i] * scales[i / block];
}

lb_status lb_compress_delta_int8(const float *delta, size_t n, size_t block, int8_t *q, float *scales, lb_error *err) {
    if (block == 0) return lb_fail(err, LB_ERR_ARG, "int8 delta: block size 0");
    if (n && (!delta || !q || !scales)) return lb_fail(err, LB_ERR_ARG, "int8 delta: NULL buffer");
    size_t bad = lb_cpu_has_avx2() ? lb_delta_int8_quant_avx2(delta, n, block, q, scales)
                                      : lb_delta_int8_quant_scalar(delta, n, block, q, scales);
    if (bad != SIZE_MAX)
        return lb_fail(err, LB_ERR_ARG, "int8 delta: non-finite value in block %zu (elements %zu..)", bad, bad * block);
    return LB_OK;
}

lb_status lb_decompress_delta_int8(const int8_t *q, const float *scales, size_t n, size_t block, float *out,
                                   lb_error *err) {
    if (block == 0) return lb_fail(err, LB_ERR_ARG, "int8 delta: block size 0");
    if (n && (!q || !scales || !out)) return lb_fail(err, LB_ERR_ARG, "int8 delta: NULL buffer");
    if (lb_cpu_has_avx2()) lb_delta_int8_dequant_avx2(q, scales, n, block, out);
    else lb_delta_int8_dequant_scalar(q, scales, n, block, out);
    return LB_OK;
}
