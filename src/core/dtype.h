/* Element types and block formats. Ids equal GGML's type ids so GGUF files map directly. */
#ifndef LB_CORE_DTYPE_H
#define LB_CORE_DTYPE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lowbit.h" /* LB_API */

typedef enum lb_dtype {
    LB_F32 = 0, LB_F16 = 1, LB_Q4_0 = 2, LB_Q4_1 = 3, LB_Q5_0 = 6, LB_Q5_1 = 7, LB_Q8_0 = 8,
    LB_Q8_1 = 9, LB_Q2_K = 10, LB_Q3_K = 11, LB_Q4_K = 12, LB_Q5_K = 13, LB_Q6_K = 14,
    LB_Q8_K = 15, LB_I8 = 24, LB_I16 = 25, LB_I32 = 26, LB_I64 = 27, LB_F64 = 28, LB_BF16 = 30,
    LB_IQ4_NL = 20, LB_IQ4_XS = 23, LB_TQ1_0 = 34, LB_TQ2_0 = 35,
    /* lowbit's own in-memory layout, never read from or written to a file: Q4_0 blocks of 8
     * rows interleaved at load (quant/repack.h). Past GGML's ids so no file type can be it. */
    LB_Q4_0_R8 = 40,
    LB_DTYPE_COUNT = 41
} lb_dtype;

/* Converts n elements of one row to float. NULL when not yet implemented for a dtype. */
typedef void (*lb_to_float_fn)(const void *src, float *dst, int64_t n);

typedef struct lb_dtype_traits {
    const char *name;      /* GGUF-style name: "F32", "Q4_K" */
    int block_size;        /* elements per block (1 for plain types) */
    size_t type_size;      /* bytes per block */
    int is_float;          /* F32/F16/BF16/F64 */
    lb_to_float_fn to_float;
} lb_dtype_traits;

/* NULL for an unknown id (as read from a file). */
const lb_dtype_traits *lb_dtype_get(uint32_t type);
LB_API const char *lb_dtype_name(uint32_t type);
/* Parses "q4_k", "F16", ... case-insensitively; returns -1 if unknown. */
LB_API int lb_dtype_from_name(const char *name);
/* Registers to_float for a block format (called by src/quant at first use). */
void lb_dtype_set_to_float(lb_dtype t, lb_to_float_fn fn);

/* Bytes of a row of n elements; 0 when n is not a multiple of the block size. */
LB_API size_t lb_dtype_row_size(lb_dtype t, int64_t n);

static inline float lb_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (man) { /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    } else bits = sign;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as IEEE conversions and torch do. */
static inline uint16_t lb_f32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow to inf */
    if (ax < 0x38800000u) { /* subnormal or zero in half */
        if (ax < 0x33000000u) return (uint16_t)sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

static inline float lb_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t lb_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* One F32, F16 or BF16 element at p (any alignment) as float; other types read as BF16. */
static inline float lb_load_float(int type, const uint8_t *p) {
    if (type == LB_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return type == LB_F16 ? lb_fp16_to_f32(h) : lb_bf16_to_f32(h);
}

/* Stores f at p as one F32, F16 or BF16 element (rounded to nearest even); others as BF16. */
static inline void lb_store_float(int type, uint8_t *p, float f) {
    if (type == LB_F32) memcpy(p, &f, 4);
    else {
        uint16_t h = type == LB_F16 ? lb_f32_to_fp16(f) : lb_f32_to_bf16(f);
        memcpy(p, &h, 2);
    }
}

#endif
