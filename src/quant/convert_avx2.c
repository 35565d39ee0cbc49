/* F16 -> F32 rows with F16C for the quantizer's input (the scalar bit-twiddling conversion was
 * 6% of F16 -> Q4_K time). Call only when lb_quant_have_f16c() says so. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"

void lb_f16_row_to_f32_avx2(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = lb_fp16_to_f32(h);
    }
}
