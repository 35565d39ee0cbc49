/* GGUF block formats as plain structs. Field order and sizes are the on-disk layout (all
 * little-endian); fp16 fields are raw IEEE half bits. Every struct has only uint8/uint16/
 * int8/int16/float members in an order with no padding, so sizeof equals the GGUF size. */
#ifndef LB_QUANT_BLOCKS_H
#define LB_QUANT_BLOCKS_H
#include <assert.h>
#include <stdint.h>

#define LB_QK 32   /* elements per block of the 32-element formats */
#define LB_QK_K 256 /* elements per super-block of the K-quants and ternary formats */
#define LB_FP16_NAN 0x7e00 /* the scale of an activation block that holds a NaN */

/* x = d * q */
typedef struct lb_block_q8_0 {
    uint16_t d;
    int8_t qs[LB_QK];
} lb_block_q8_0;

/* x = d * (q - 8); qs[j] low nibble = element j, high nibble = element j + 16 */
typedef struct lb_block_q4_0 {
    uint16_t d;
    uint8_t qs[LB_QK / 2];
} lb_block_q4_0;

/* x = d * q + m; nibbles as Q4_0 */
typedef struct lb_block_q4_1 {
    uint16_t d, m;
    uint8_t qs[LB_QK / 2];
} lb_block_q4_1;

/* x = d * (q - 16); low 4 bits as Q4_0, bit 4 of element j is bit j of the
 * little-endian 32-bit word qh */
typedef struct lb_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[LB_QK / 2];
} lb_block_q5_0;

/* x = d * q + m; bits as Q5_0 */
typedef struct lb_block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[LB_QK / 2];
} lb_block_q5_1;

/* 16 sub-blocks of 16: x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q 2 bits.
 * Per 128-half h, byte qs[32h + l] holds, at bits 2s..2s+1, element 128h + 32s + l. */
typedef struct lb_block_q2_K {
    uint8_t scales[LB_QK_K / 16];
    uint8_t qs[LB_QK_K / 4];
    uint16_t d, dmin;
} lb_block_q2_K;

/* 16 sub-blocks of 16: x = d * (sc_j - 32) * (q2 - (hbit ? 0 : 4)). Low 2 bits as Q2_K;
 * hmask[l] bit k is the high bit of element 32k + l. sc_j: 6 bits, low 4 in nibbles of
 * scales[0..7] (j < 8: low nibble of byte j, else high nibble of byte j - 8), high 2 bits
 * at bits 2*(j/4) of scales[8 + j%4]. */
typedef struct lb_block_q3_K {
    uint8_t hmask[LB_QK_K / 8];
    uint8_t qs[LB_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} lb_block_q3_K;

/* 8 sub-blocks of 32: x = d * sc_j * q - dmin * m_j, 6-bit sc/m packed in 12 bytes (see
 * lb_kq_get_scale_min); per 64-chunk c, qs[32c + l] low nibble = element 64c + l, high
 * nibble = element 64c + 32 + l. */
typedef struct lb_block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[LB_QK_K / 2];
} lb_block_q4_K;

/* As Q4_K plus a fifth bit: element 64c + l takes bit 2c of qh[l], element 64c + 32 + l
 * takes bit 2c + 1. */
typedef struct lb_block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[LB_QK_K / 8];
    uint8_t qs[LB_QK_K / 2];
} lb_block_q5_K;

/* 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q 6 bits. Per 128-half h (ql + 64h,
 * qh + 32h), for l < 32: element l = ql[l] low | qh[l] bits 0-1; element 32 + l = ql[32 + l]
 * low | bits 2-3; element 64 + l = ql[l] high | bits 4-5; element 96 + l = ql[32 + l] high |
 * bits 6-7. */
typedef struct lb_block_q6_K {
    uint8_t ql[LB_QK_K / 2];
    uint8_t qh[LB_QK_K / 4];
    int8_t scales[LB_QK_K / 16];
    uint16_t d;
} lb_block_q6_K;

/* Activation format: x = d * q, bsums[j] = sum of qs[16j .. 16j + 15]. */
typedef struct lb_block_q8_K {
    float d;
    int8_t qs[LB_QK_K];
    int16_t bsums[LB_QK_K / 16];
} lb_block_q8_K;

/* Ternary, base 3: a byte holds 5 trits (t in {0,1,2} = value + 1), the first trit most
 * significant, stored as ceil(v * 256 / 243) so that trit k is the top trit of
 * (byte * 3^k mod 256), i.e. floor(3 * (byte * 3^k mod 256) / 256). Elements 0..159: trit
 * n of qs[m] = element 32n + m (m < 32); elements 160..239: trit n of qs[32 + m] = element
 * 160 + 16n + m (m < 16); elements 240..255: trit n (n < 4) of qh[j] = element 240 + 4n + j. */
typedef struct lb_block_tq1_0 {
    uint8_t qs[(LB_QK_K - 4 * LB_QK_K / 64) / 5];
    uint8_t qh[LB_QK_K / 64];
    uint16_t d;
} lb_block_tq1_0;

/* Ternary, 2 bits (0,1,2 = -1,0,+1): per 128-half h, bits 2s..2s+1 of qs[32h + l] are
 * element 128h + 32s + l. */
typedef struct lb_block_tq2_0 {
    uint8_t qs[LB_QK_K / 4];
    uint16_t d;
} lb_block_tq2_0;

/* IQ4_NL: x = d * lb_iq4_values[q]; nibbles as Q4_0 (low = element j, high = element j + 16). */
typedef struct lb_block_iq4_nl {
    uint16_t d;
    uint8_t qs[LB_QK / 2];
} lb_block_iq4_nl;

/* IQ4_XS: 8 sub-blocks of 32, x = d * (sc_j - 32) * lb_iq4_values[q]; sc_j is 6 bits, low 4
 * in nibble j % 2 of scales_l[j / 2], high 2 at bits 2j of scales_h; sub-block j's nibbles
 * in qs[16j .. 16j + 15] as IQ4_NL. */
typedef struct lb_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[LB_QK_K / 64];
    uint8_t qs[LB_QK_K / 2];
} lb_block_iq4_xs;

static_assert(sizeof(lb_block_q8_0) == 34, "Q8_0 block size");
static_assert(sizeof(lb_block_q4_0) == 18, "Q4_0 block size");
static_assert(sizeof(lb_block_q4_1) == 20, "Q4_1 block size");
static_assert(sizeof(lb_block_q5_0) == 22, "Q5_0 block size");
static_assert(sizeof(lb_block_q5_1) == 24, "Q5_1 block size");
static_assert(sizeof(lb_block_q2_K) == 84, "Q2_K block size");
static_assert(sizeof(lb_block_q3_K) == 110, "Q3_K block size");
static_assert(sizeof(lb_block_q4_K) == 144, "Q4_K block size");
static_assert(sizeof(lb_block_q5_K) == 176, "Q5_K block size");
static_assert(sizeof(lb_block_q6_K) == 210, "Q6_K block size");
static_assert(sizeof(lb_block_q8_K) == 292, "Q8_K block size");
static_assert(sizeof(lb_block_tq1_0) == 54, "TQ1_0 block size");
static_assert(sizeof(lb_block_tq2_0) == 66, "TQ2_0 block size");
static_assert(sizeof(lb_block_iq4_nl) == 18, "IQ4_NL block size");
static_assert(sizeof(lb_block_iq4_xs) == 136, "IQ4_XS block size");

/* 6-bit scale and min j (0..7) of Q4_K/Q5_K: j < 4: low 6 bits of bytes j and j + 4;
 * j >= 4: low / high nibble of byte j + 4, top 2 bits from the top of bytes j - 4 / j. */
static inline void lb_kq_get_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* 6-bit scale j (0..15) of Q3_K, unbiased (-32..31). */
static inline int lb_q3k_get_scale(int j, const uint8_t *s) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Signed scale of IQ4_XS sub-block j (0..7): -32..31. */
static inline int lb_iq4xs_get_scale(const lb_block_iq4_xs *b, int j) {
    int lo = (b->scales_l[j / 2] >> 4 * (j % 2)) & 0xF, hi = (b->scales_h >> 2 * j) & 3;
    return (lo | hi << 4) - 32;
}
#endif
