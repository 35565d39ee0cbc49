#include "core/dtype.h"
#include "quant/quant.h"

#include <strings.h>

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2); /* safetensors data may be unaligned */
        dst[i] = lb_fp16_to_f32(h);
    }
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = lb_bf16_to_f32(h);
    }
}
static void f64_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        double d;
        memcpy(&d, p + 8 * i, 8);
        dst[i] = (float)d;
    }
}

/* Block sizes and byte sizes follow the GGUF specification. */
static lb_dtype_traits g_traits[LB_DTYPE_COUNT] = {
    [LB_F32] = {"F32", 1, 4, 1, f32_to_float},
    [LB_F16] = {"F16", 1, 2, 1, f16_to_float},
    [LB_Q4_0] = {"Q4_0", 32, 18, 0, lb_dequantize_row_q4_0},
    [LB_Q4_1] = {"Q4_1", 32, 20, 0, lb_dequantize_row_q4_1},
    [LB_Q5_0] = {"Q5_0", 32, 22, 0, lb_dequantize_row_q5_0},
    [LB_Q5_1] = {"Q5_1", 32, 24, 0, lb_dequantize_row_q5_1},
    [LB_Q8_0] = {"Q8_0", 32, 34, 0, lb_dequantize_row_q8_0},
    [LB_Q8_1] = {"Q8_1", 32, 36, 0, NULL},
    [LB_Q2_K] = {"Q2_K", 256, 84, 0, lb_dequantize_row_q2_K},
    [LB_Q3_K] = {"Q3_K", 256, 110, 0, lb_dequantize_row_q3_K},
    [LB_Q4_K] = {"Q4_K", 256, 144, 0, lb_dequantize_row_q4_K},
    [LB_Q5_K] = {"Q5_K", 256, 176, 0, lb_dequantize_row_q5_K},
    [LB_Q6_K] = {"Q6_K", 256, 210, 0, lb_dequantize_row_q6_K},
    [LB_Q8_K] = {"Q8_K", 256, 292, 0, lb_dequantize_row_q8_K},
    [LB_IQ4_NL] = {"IQ4_NL", 32, 18, 0, lb_dequantize_row_iq4_nl},
    [LB_IQ4_XS] = {"IQ4_XS", 256, 136, 0, lb_dequantize_row_iq4_xs},
    [LB_I8] = {"I8", 1, 1, 0, NULL},
    [LB_I16] = {"I16", 1, 2, 0, NULL},
    [LB_I32] = {"I32", 1, 4, 0, NULL},
    [LB_I64] = {"I64", 1, 8, 0, NULL},
    [LB_F64] = {"F64", 1, 8, 1, f64_to_float},
    [LB_BF16] = {"BF16", 1, 2, 1, bf16_to_float},
    [LB_TQ1_0] = {"TQ1_0", 256, 54, 0, lb_dequantize_row_tq1_0},
    [LB_TQ2_0] = {"TQ2_0", 256, 66, 0, lb_dequantize_row_tq2_0},
    /* rows are interleaved by 8, so no single row converts on its own: no to_float */
    [LB_Q4_0_R8] = {"Q4_0_R8", 32, 18, 0, NULL},
};

const lb_dtype_traits *lb_dtype_get(uint32_t type) {
    if (type >= LB_DTYPE_COUNT || !g_traits[type].name) return NULL;
    return &g_traits[type];
}

const char *lb_dtype_name(uint32_t type) {
    const lb_dtype_traits *t = lb_dtype_get(type);
    return t ? t->name : "unknown";
}

int lb_dtype_from_name(const char *name) {
    for (int i = 0; i < LB_DTYPE_COUNT; i++)
        if (g_traits[i].name && strcasecmp(g_traits[i].name, name) == 0) return i;
    return -1;
}

void lb_dtype_set_to_float(lb_dtype t, lb_to_float_fn fn) {
    if ((unsigned)t < LB_DTYPE_COUNT) g_traits[t].to_float = fn;
}

size_t lb_dtype_row_size(lb_dtype t, int64_t n) {
    const lb_dtype_traits *tr = lb_dtype_get(t);
    if (!tr || n < 0 || n % tr->block_size) return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}
