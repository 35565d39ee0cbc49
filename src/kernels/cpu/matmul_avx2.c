/* AVX2 + FMA (+ F16C) matmul kernels for F32, F16 and BF16 weights.
 *
 * Prompts run a register tile of 4 weight rows x 3 tokens (tile43: 12 accumulators, 3
 * activation vectors, one converted weight vector: all 16 ymm), each converted weight vector
 * reused for 3 tokens; a generic tile covers the edges. One token (generation) streams every
 * weight row exactly once; several tokens are blocked over k and tokens so the weight chunk of a
 * row tile sits in L1 and the activation chunk in L2 while all tokens pass over it, every weight
 * byte still comes from memory once per token block, and the next row tile is prefetched while
 * this one computes. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/tile_pf.h"

#define LB_AI static inline __attribute__((always_inline))
/* Keeps a loaded vector in a register: without it the compiler folds the load into every FMA
 * that uses it, multiplying the loads per step by the tile size and making the loop load-bound. */
#define LB_IN_REG(v) __asm__("" : "+x"(v))

enum { DT_F32, DT_F16, DT_BF16 };

/* Prompt-processing blocking: KC elements of k per pass (multiple of 8), TB tokens per block:
 * the activation block (TB x KC floats, 256 KiB) stays in L2 with room for the weights on Zen 3
 * (512 KiB of L2; 2048 there made the block the whole L2 and the tiles read activations from L3). */
#define KC 1024
#define TB 64

LB_AI __m256 load8(int dt, const uint8_t *p) {
    if (dt == DT_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (dt == DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

LB_AI float load1(int dt, const uint8_t *p) {
    if (dt == DT_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    if (dt == DT_F16) return _cvtsh_ss(h);
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

LB_AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Software prefetch into L2, this many bytes ahead on each weight row of a matrix-vector
 * product: it adds about 10% to the one-thread F16/BF16 rate from memory on Zen 4 (four row
 * streams outrun the hardware prefetcher's distance there); F32 is unaffected. */
#define LB_PF 2048
#define LB_PF_HINT _MM_HINT_T1

/* The end of every (row, token) sum: y[r] (+)= hsum(acc[r]) + the scalar tail [i, k1), r < RT.
 * Shared by the tile and the one-token kernel, so both round the same way. */
LB_AI void finish(int dt, int RT, const __m256 *acc, const uint8_t *w, size_t wrb, const float *x, int64_t i,
                  int64_t k1, float *y, int add) {
    const size_t esz = dt == DT_F32 ? 4 : 2;
    float s[4];
    for (int r = 0; r < RT; r++) s[r] = hsum(acc[r]);
    for (int64_t j = i; j < k1; j++) {
        float xv = x[j];
        for (int r = 0; r < RT; r++) s[r] += load1(dt, w + r * wrb + (size_t)j * esz) * xv;
    }
    for (int r = 0; r < RT; r++) y[r] = add ? y[r] + s[r] : s[r];
}

/* y[t * ldy + r] (+)= dot(w row r [k0, k1), x row t [k0, k1)) for r < RT <= 4, t < TT <= 3 (the
 * edges of the prompt tiles and the one-token remainder rows).
 * k0 is a multiple of 8; only the last chunk has a tail. Every (r, t) sums in one order: one
 * 8-lane accumulator over the chunk in steps of 8, then finish. vec4 keeps that order for one
 * token, so a token's logits do not depend on N (ARCHITECTURE.md). */
LB_AI void tile(int dt, int RT, int TT, const uint8_t *w, size_t wrb, const float *x, int64_t xs,
                int64_t k0, int64_t k1, float *y, int64_t ldy, int add) {
    const size_t esz = dt == DT_F32 ? 4 : 2;
    __m256 acc[3][4];
    for (int r = 0; r < RT; r++)
        for (int t = 0; t < TT; t++) acc[t][r] = _mm256_setzero_ps();
    int64_t i = k0;
    for (; i + 8 <= k1; i += 8) {
        __m256 wv[4];
        for (int r = 0; r < RT; r++) {
            wv[r] = load8(dt, w + r * wrb + (size_t)i * esz);
            LB_IN_REG(wv[r]);
        }
        for (int t = 0; t < TT; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * xs + i);
            LB_IN_REG(xv);
            for (int r = 0; r < RT; r++) acc[t][r] = _mm256_fmadd_ps(wv[r], xv, acc[t][r]);
        }
    }
    for (int t = 0; t < TT; t++) finish(dt, RT, acc[t], w, wrb, x + t * xs, i, k1, y + t * ldy, add);
}

/* The prompt tile, 4 rows x 3 tokens, with named accumulators: GCC keeps these in registers
 * where the array form of `tile` spills at this size. Same order per (row, token) as tile.
 * Rows pf + q * wrb, q < npf, are prefetched as far in as k is (lb_tile_pf). */
#define FMA3(b, r)                                                                                  \
    c##r##0 = _mm256_fmadd_ps(b, x0v, c##r##0), c##r##1 = _mm256_fmadd_ps(b, x1v, c##r##1),      \
    c##r##2 = _mm256_fmadd_ps(b, x2v, c##r##2)
#define STEP43(i)                                                                                   \
    do {                                                                                            \
        size_t o = (size_t)(i) * esz;                                                               \
        __m256 x0v = _mm256_loadu_ps(x0 + (i)), x1v = _mm256_loadu_ps(x1 + (i)), x2v = _mm256_loadu_ps(x2 + (i)); \
        __m256 b = load8(dt, w0 + o);                                                               \
        FMA3(b, 0);                                                                                 \
        b = load8(dt, w1 + o);                                                                      \
        FMA3(b, 1);                                                                                 \
        b = load8(dt, w2 + o);                                                                      \
        FMA3(b, 2);                                                                                 \
        b = load8(dt, w3 + o);                                                                      \
        FMA3(b, 3);                                                                                 \
    } while (0)
LB_AI void tile43(int dt, const uint8_t *w, size_t wrb, const float *x, int64_t xs, int64_t k0, int64_t k1, float *y,
                  int64_t ldy, int add, const uint8_t *pf, int npf) {
    const size_t esz = dt == DT_F32 ? 4 : 2;
    const uint8_t *w0 = w, *w1 = w + wrb, *w2 = w + 2 * wrb, *w3 = w + 3 * wrb;
    const float *x0 = x, *x1 = x + xs, *x2 = x + 2 * xs;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    int64_t i = k0;
    /* four steps a trip, so the prefetch runs once per 64 bytes of F16 (per step it cost more
     * than it saved when the weights were in cache) */
    for (; i + 32 <= k1; i += 32) {
        for (int q = 0; q < npf; q++)
            for (size_t b = 0; b < 32 * esz; b += 64)
                _mm_prefetch((const char *)pf + q * wrb + (size_t)(i - k0) * esz + b, _MM_HINT_T0);
        STEP43(i);
        STEP43(i + 8);
        STEP43(i + 16);
        STEP43(i + 24);
    }
    for (; i + 8 <= k1; i += 8) STEP43(i);
    __m256 a0[4] = {c00, c10, c20, c30}, a1[4] = {c01, c11, c21, c31}, a2[4] = {c02, c12, c22, c32};
    finish(dt, 4, a0, w, wrb, x0, i, k1, y, add);
    finish(dt, 4, a1, w, wrb, x1, i, k1, y + ldy, add);
    finish(dt, 4, a2, w, wrb, x2, i, k1, y + 2 * ldy, add);
}
#undef STEP43
#undef FMA3

/* One token, four rows over [k0, k1) in the tile's order: one accumulator per row, 8 elements a
 * step in order, two steps a loop trip (fewer loop instructions; the tile's loop with RT = 4,
 * TT = 1 measured 15% slower from cache). Prefetches past a row's end are harmless. */
LB_AI void vec4(int dt, const uint8_t *w, size_t wrb, const float *x, int64_t k0, int64_t k1, float *y, int add) {
    const size_t esz = dt == DT_F32 ? 4 : 2;
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const uint8_t *w0 = w, *w1 = w + wrb, *w2 = w + 2 * wrb, *w3 = w + 3 * wrb;
    int64_t i = k0;
    for (; i + 16 <= k1; i += 16) {
        size_t o = (size_t)i * esz;
        _mm_prefetch((const char *)w0 + o + LB_PF, LB_PF_HINT);
        _mm_prefetch((const char *)w1 + o + LB_PF, LB_PF_HINT);
        _mm_prefetch((const char *)w2 + o + LB_PF, LB_PF_HINT);
        _mm_prefetch((const char *)w3 + o + LB_PF, LB_PF_HINT);
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        a[0] = _mm256_fmadd_ps(load8(dt, w0 + o), x0, a[0]);
        a[1] = _mm256_fmadd_ps(load8(dt, w1 + o), x0, a[1]);
        a[2] = _mm256_fmadd_ps(load8(dt, w2 + o), x0, a[2]);
        a[3] = _mm256_fmadd_ps(load8(dt, w3 + o), x0, a[3]);
        a[0] = _mm256_fmadd_ps(load8(dt, w0 + o + 8 * esz), x1, a[0]);
        a[1] = _mm256_fmadd_ps(load8(dt, w1 + o + 8 * esz), x1, a[1]);
        a[2] = _mm256_fmadd_ps(load8(dt, w2 + o + 8 * esz), x1, a[2]);
        a[3] = _mm256_fmadd_ps(load8(dt, w3 + o + 8 * esz), x1, a[3]);
    }
    if (i + 8 <= k1) {
        size_t o = (size_t)i * esz;
        __m256 x0 = _mm256_loadu_ps(x + i);
        a[0] = _mm256_fmadd_ps(load8(dt, w0 + o), x0, a[0]);
        a[1] = _mm256_fmadd_ps(load8(dt, w1 + o), x0, a[1]);
        a[2] = _mm256_fmadd_ps(load8(dt, w2 + o), x0, a[2]);
        a[3] = _mm256_fmadd_ps(load8(dt, w3 + o), x0, a[3]);
        i += 8;
    }
    finish(dt, 4, a, w, wrb, x, i, k1, y, add);
}

/* One token: every weight row streamed once, four rows at a time (four concurrent streams
 * measured faster from memory than one row at a time: more misses in flight), each row start to
 * end through the same KC chunks as a prompt batch so the sums are the batch's bit for bit. */
LB_AI void rows_vec(int dt, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const float *x = a->x;
    const size_t wrb = a->w_row_bytes;
    for (int64_t r = r0; r < r1; r += 4) {
        const uint8_t *w = a->w + (size_t)r * wrb;
        for (int64_t k0 = 0; k0 < a->k; k0 += KC) {
            int64_t k1 = k0 + KC < a->k ? k0 + KC : a->k;
            if (r + 4 <= r1) vec4(dt, w, wrb, x, k0, k1, a->y + r, k0 > 0);
            else
                for (int64_t q = r; q < r1; q++)
                    tile(dt, 1, 1, w + (size_t)(q - r) * wrb, wrb, x, a->k, k0, k1, a->y + q, a->rows, k0 > 0);
        }
    }
}

/* Tokens [t0, t1) x one row tile of RT (4 or 1) rows, over the k chunk [k0, k1); the 4-row
 * tiles prefetch the next row tile's chunk from pf (lb_tile_pf: why and which rows). */
LB_AI void tokens(int dt, int RT, const lb_matmul_args *a, const uint8_t *w, int64_t r, int64_t t0, int64_t t1,
                  int64_t k0, int64_t k1, int add, const uint8_t *pf) {
    const float *x = a->x;
    const int64_t xs = a->k, ldy = a->rows;
    const size_t wrb = a->w_row_bytes;
    const int n_tiles = (int)((t1 - t0 + 2) / 3);
    int64_t t = t0;
    int j = 0, n;
    for (; t + 3 <= t1; t += 3, j++) {
        float *yt = a->y + t * ldy + r;
        if (RT == 4) {
            const uint8_t *q = lb_tile_pf(pf, wrb, j, n_tiles, 4, &n);
            tile43(dt, w, wrb, x + t * xs, xs, k0, k1, yt, ldy, add, q, n);
        } else tile(dt, RT, 3, w, wrb, x + t * xs, xs, k0, k1, yt, ldy, add);
    }
    const float *xt = x + t * xs;
    float *yt = a->y + t * ldy + r;
    switch (t1 - t) { /* constant tile widths, so each case is fully unrolled */
    case 2: tile(dt, RT, 2, w, wrb, xt, xs, k0, k1, yt, ldy, add); break;
    case 1: tile(dt, RT, 1, w, wrb, xt, xs, k0, k1, yt, ldy, add); break;
    default: break;
    }
}

LB_AI void rows_mat(int dt, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const size_t wrb = a->w_row_bytes, esz = dt == DT_F32 ? 4 : 2;
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        int64_t te = tb + TB < a->n_tok ? tb + TB : a->n_tok;
        for (int64_t k0 = 0; k0 < a->k; k0 += KC) {
            int64_t k1 = k0 + KC < a->k ? k0 + KC : a->k;
            int add = k0 > 0;
            int64_t r = r0;
            for (; r + 4 <= r1; r += 4) {
                const uint8_t *pf = lb_tile_next(a->w, wrb, r, r0, r1, 4, (size_t)k0 * esz, (size_t)k1 * esz,
                                                 k1 < a->k, te < a->n_tok);
                tokens(dt, 4, a, a->w + (size_t)r * wrb, r, tb, te, k0, k1, add, pf);
            }
            for (; r < r1; r++) tokens(dt, 1, a, a->w + (size_t)r * wrb, r, tb, te, k0, k1, add, NULL);
        }
    }
}

#define LB_AVX2_ROWS(NAME, DT)                                          \
    static void NAME(const lb_matmul_args *a, int64_t r0, int64_t r1) { \
        if (a->n_tok == 1) rows_vec(DT, a, r0, r1);                     \
        else rows_mat(DT, a, r0, r1);                                   \
    }
LB_AVX2_ROWS(rows_f32_avx2, DT_F32)
LB_AVX2_ROWS(rows_f16_avx2, DT_F16)
LB_AVX2_ROWS(rows_bf16_avx2, DT_BF16)

/* Chunks of 16 rows keep each thread's outputs on their own cache lines. */
static const lb_matmul_kernel k_f32 = {NULL, NULL, rows_f32_avx2, 16};
static const lb_matmul_kernel k_f16 = {NULL, NULL, rows_f16_avx2, 16};
static const lb_matmul_kernel k_bf16 = {NULL, NULL, rows_bf16_avx2, 16};

const lb_matmul_kernel *lb_matmul_avx2_builtin(lb_dtype t) {
    switch (t) {
    case LB_F32: return &k_f32;
    case LB_F16: return &k_f16;
    case LB_BF16: return &k_bf16;
    default: return NULL;
    }
}
