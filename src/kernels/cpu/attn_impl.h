/* Attention over a KV cache row by row, instantiated once per vector ISA (vec.c, vec_avx2.c)
 * so the per-position dot and axpy inline into the loop: with small heads (8 wide in
 * stories260K) a call per cached position cost more than the arithmetic. Rows are `stride`
 * bytes apart; a Q8_0 or Q4_0 row is hd / 32 consecutive blocks. */
#ifndef LB_KERNELS_CPU_ATTN_IMPL_H
#define LB_KERNELS_CPU_ATTN_IMPL_H
#include <string.h>

#include "quant/blocks.h"

#define LB_ATTN_ROW(base, p, stride) ((const void *)((const char *)(base) + (size_t)(p) * (stride)))

#define LB_ATTN_FNS(SUF, DOT, DOT_F16, DOT_Q8, DOT_Q4, AXPY, AXPY_F16, AXPY_Q8, AXPY_Q4)                \
    static void attn_scores_##SUF(float *s, const float *q, const void *k, int kv_type, size_t stride,  \
                                  int64_t n_pos, int64_t hd, float scale) {                             \
        if (kv_type == LB_ATTN_Q8_0)                                                                    \
            for (int64_t p = 0; p < n_pos; p++)                                                         \
                s[p] = DOT_Q8((const lb_block_q8_0 *)LB_ATTN_ROW(k, p, stride), q, hd / LB_QK) * scale; \
        else if (kv_type == LB_ATTN_Q4_0)                                                               \
            for (int64_t p = 0; p < n_pos; p++)                                                         \
                s[p] = DOT_Q4((const lb_block_q4_0 *)LB_ATTN_ROW(k, p, stride), q, hd / LB_QK) * scale; \
        else if (kv_type == LB_ATTN_F16)                                                                \
            for (int64_t p = 0; p < n_pos; p++)                                                         \
                s[p] = DOT_F16((const uint16_t *)LB_ATTN_ROW(k, p, stride), q, hd) * scale;             \
        else                                                                                            \
            for (int64_t p = 0; p < n_pos; p++)                                                         \
                s[p] = DOT((const float *)LB_ATTN_ROW(k, p, stride), q, hd) * scale;                    \
    }                                                                                                   \
    static void attn_values_##SUF(float *out, const float *a, const void *v, int kv_type, size_t stride, \
                                  int64_t n_pos, int64_t hd) {                                          \
        memset(out, 0, (size_t)hd * sizeof *out);                                                       \
        if (kv_type == LB_ATTN_Q8_0)                                                                    \
            for (int64_t p = 0; p < n_pos; p++)                                                         \
                AXPY_Q8(out, a[p], (const lb_block_q8_0 *)LB_ATTN_ROW(v, p, stride), hd / LB_QK);       \
        else if (kv_type == LB_ATTN_Q4_0)                                                               \
            for (int64_t p = 0; p < n_pos; p++)                                                         \
                AXPY_Q4(out, a[p], (const lb_block_q4_0 *)LB_ATTN_ROW(v, p, stride), hd / LB_QK);       \
        else if (kv_type == LB_ATTN_F16)                                                                \
            for (int64_t p = 0; p < n_pos; p++)                                                         \
                AXPY_F16(out, a[p], (const uint16_t *)LB_ATTN_ROW(v, p, stride), hd);                   \
        else                                                                                            \
            for (int64_t p = 0; p < n_pos; p++) AXPY(out, a[p], (const float *)LB_ATTN_ROW(v, p, stride), hd); \
    }
#endif
