#include "compress/byteplane.h"

#include <stdint.h>
#include <string.h>

void lb_byteplane_split_scalar(const void *src, void *dst, size_t n, size_t e) {
    const uint8_t *s = src;
    uint8_t *d = dst;
    if (e == 1) {
        memcpy(d, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < e; b++) d[b * n + i] = s[i * e + b];
}

void lb_byteplane_merge_scalar(const void *planes, void *dst, size_t n, size_t e) {
    const uint8_t *s = planes;
    uint8_t *d = dst;
    if (e == 1) {
        memcpy(d, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < e; b++) d[i * e + b] = s[b * n + i];
}

void lb_byteplane_split(const void *src, void *dst, size_t n, size_t e) {
    if (e > 1 && lb_cpu_has_avx2()) lb_byteplane_split_avx2(src, dst, n, e);
    else lb_byteplane_split_scalar(src, dst, n, e);
}

void lb_byteplane_merge(const void *planes, void *dst, size_t n, size_t e) {
    if (e > 1 && lb_cpu_has_avx2()) lb_byteplane_merge_avx2(planes, dst, n, e);
    else lb_byteplane_merge_scalar(planes, dst, n, e);
}
