/* Attention over a KV cache row by row, instantiated once per vector ISA (vec.c, vec_avx2.c)
 * so the per-position dot and axpy inline into the loop: with small heads (8 wide in
 * stories260K) a call per cached position cost more than the arithmetic. */
#ifndef LB_KERNELS_CPU_ATTN_IMPL_H
#define LB_KERNELS_CPU_ATTN_IMPL_H
#include <string.h>

#define LB_ATTN_FNS(SUF, DOT, DOT_F16, AXPY, AXPY_F16)                                                  \
    static void attn_scores_##SUF(float *s, const float *q, const void *k, int f16, size_t stride,      \
                                  int64_t n_pos, int64_t hd, float scale) {                             \
        if (f16)                                                                                        \
            for (int64_t p = 0; p < n_pos; p++) s[p] = DOT_F16((const uint16_t *)k + p * stride, q, hd) * scale; \
        else                                                                                            \
            for (int64_t p = 0; p < n_pos; p++) s[p] = DOT((const float *)k + p * stride, q, hd) * scale; \
    }                                                                                                   \
    static void attn_values_##SUF(float *out, const float *a, const void *v, int f16, size_t stride,    \
                                  int64_t n_pos, int64_t hd) {                                          \
        memset(out, 0, (size_t)hd * sizeof *out);                                                       \
        if (f16)                                                                                        \
            for (int64_t p = 0; p < n_pos; p++) AXPY_F16(out, a[p], (const uint16_t *)v + p * stride, hd); \
        else                                                                                            \
            for (int64_t p = 0; p < n_pos; p++) AXPY(out, a[p], (const float *)v + p * stride, hd);     \
    }
#endif
