/* AVX2 byte-plane split/merge: 32 (2-byte) or 32 (4-byte) elements per step, scalar tail. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "compress/byteplane.h"

#define LD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define ST(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), v)

static void split2(const uint8_t *s, uint8_t *d, size_t n) {
    /* per 128-bit lane: even bytes to the low 8, odd bytes to the high 8 */
    const __m256i sh = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    uint8_t *p0 = d, *p1 = d + n;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(LD(s + 2 * i), sh), 0xD8);
        __m256i b = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(LD(s + 2 * i + 32), sh), 0xD8);
        ST(p0 + i, _mm256_permute2x128_si256(a, b, 0x20));
        ST(p1 + i, _mm256_permute2x128_si256(a, b, 0x31));
    }
    for (; i < n; i++) {
        p0[i] = s[2 * i];
        p1[i] = s[2 * i + 1];
    }
}

static void merge2(const uint8_t *s, uint8_t *d, size_t n) {
    const uint8_t *p0 = s, *p1 = s + n;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i e = LD(p0 + i), o = LD(p1 + i);
        __m256i lo = _mm256_unpacklo_epi8(e, o), hi = _mm256_unpackhi_epi8(e, o);
        ST(d + 2 * i, _mm256_permute2x128_si256(lo, hi, 0x20));
        ST(d + 2 * i + 32, _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    for (; i < n; i++) {
        d[2 * i] = p0[i];
        d[2 * i + 1] = p1[i];
    }
}

static void split4(const uint8_t *s, uint8_t *d, size_t n) {
    /* per lane: [b0 x4, b1 x4, b2 x4, b3 x4]; then dword permute so each 64-bit quarter holds
     * one plane's 8 bytes; then a 4x4 transpose of quarters across four vectors. */
    const __m256i sh = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    uint8_t *p0 = d, *p1 = d + n, *p2 = d + 2 * n, *p3 = d + 3 * n;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v0 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(LD(s + 4 * i), sh), perm);
        __m256i v1 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(LD(s + 4 * i + 32), sh), perm);
        __m256i v2 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(LD(s + 4 * i + 64), sh), perm);
        __m256i v3 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(LD(s + 4 * i + 96), sh), perm);
        __m256i lo01 = _mm256_unpacklo_epi64(v0, v1), hi01 = _mm256_unpackhi_epi64(v0, v1);
        __m256i lo23 = _mm256_unpacklo_epi64(v2, v3), hi23 = _mm256_unpackhi_epi64(v2, v3);
        ST(p0 + i, _mm256_permute2x128_si256(lo01, lo23, 0x20));
        ST(p1 + i, _mm256_permute2x128_si256(hi01, hi23, 0x20));
        ST(p2 + i, _mm256_permute2x128_si256(lo01, lo23, 0x31));
        ST(p3 + i, _mm256_permute2x128_si256(hi01, hi23, 0x31));
    }
    for (; i < n; i++) {
        p0[i] = s[4 * i];
        p1[i] = s[4 * i + 1];
        p2[i] = s[4 * i + 2];
        p3[i] = s[4 * i + 3];
    }
}

static void merge4(const uint8_t *s, uint8_t *d, size_t n) {
    const uint8_t *p0 = s, *p1 = s + n, *p2 = s + 2 * n, *p3 = s + 3 * n;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = LD(p0 + i), b = LD(p1 + i), c = LD(p2 + i), e = LD(p3 + i);
        __m256i lo01 = _mm256_unpacklo_epi8(a, b), hi01 = _mm256_unpackhi_epi8(a, b);
        __m256i lo23 = _mm256_unpacklo_epi8(c, e), hi23 = _mm256_unpackhi_epi8(c, e);
        /* A = elements 0-3|16-19, B = 4-7|20-23, C = 8-11|24-27, D = 12-15|28-31 */
        __m256i A = _mm256_unpacklo_epi16(lo01, lo23), B = _mm256_unpackhi_epi16(lo01, lo23);
        __m256i C = _mm256_unpacklo_epi16(hi01, hi23), D = _mm256_unpackhi_epi16(hi01, hi23);
        ST(d + 4 * i, _mm256_permute2x128_si256(A, B, 0x20));
        ST(d + 4 * i + 32, _mm256_permute2x128_si256(C, D, 0x20));
        ST(d + 4 * i + 64, _mm256_permute2x128_si256(A, B, 0x31));
        ST(d + 4 * i + 96, _mm256_permute2x128_si256(C, D, 0x31));
    }
    for (; i < n; i++) {
        d[4 * i] = p0[i];
        d[4 * i + 1] = p1[i];
        d[4 * i + 2] = p2[i];
        d[4 * i + 3] = p3[i];
    }
}

void lb_byteplane_split_avx2(const void *src, void *dst, size_t n, size_t e) {
    if (e == 2) split2(src, dst, n);
    else if (e == 4) split4(src, dst, n);
    else lb_byteplane_split_scalar(src, dst, n, e);
}

void lb_byteplane_merge_avx2(const void *planes, void *dst, size_t n, size_t e) {
    if (e == 2) merge2(planes, dst, n);
    else if (e == 4) merge4(planes, dst, n);
    else lb_byteplane_merge_scalar(planes, dst, n, e);
}
