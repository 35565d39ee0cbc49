/* AVX-512 matmul kernels for F32, F16 and BF16 weights.
 *
 * Same plan as the AVX2 kernels (matmul_avx2.c), on 16-lane registers and with the 32 zmm
 * registers allowing a larger tile: MR = 4 rows x NR = 6 tokens of accumulators (24), each
 * converted weight vector (vcvtph2ps for F16, a 16-bit shift for BF16) reused for six tokens.
 * Row tails of k are masked loads instead of a scalar loop. Prompt batches are blocked over
 * tokens (TB) and k (KC) so a row tile's weight chunk stays in L1 and the activation block in
 * L2; one token streams each row once, four rows at a time with prefetch, in the tile's order
 * and chunks (vec4), so a token's sums are bitwise the same for any batch size.
 *
 * BF16 weights are widened to F32 here rather than multiplied with vdpbf16ps: that instruction
 * needs the activations rounded to BF16 too, which would move results far outside the scalar
 * twin's (and the model's F32 reference's) rounding. */
#include <immintrin.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/tile_avx512.h"

#define LB_AI static inline __attribute__((always_inline))
/* Keeps a loaded vector in a register: otherwise GCC folds the load into every FMA using it,
 * one load per FMA instead of one per vector ("v": any of the 32 zmm). */
#define LB_IN_REG(v) __asm__("" : "+v"(v))
/* Unrolls the tile loops before GCC would give up on their size (its complete-peeling limit):
 * only unrolled early do the accumulators live in registers, not in memory with a store per FMA. */
#define LB_UNROLL _Pragma("GCC unroll 8")

enum { DT_F32, DT_F16, DT_BF16 };

#define KC 2048 /* k elements per pass (multiple of 16) */
#define TB 64   /* tokens per block: TB x KC floats = 512 KiB of L2 */
#define MR 4
#define NR 6
#define PF 2048 /* prefetch distance on each row of a matrix-vector product, bytes */

/* Elements [i, i + 16) of a row (lanes at and past `m`'s first zero read nothing). */
LB_AI __m512 wload(int dt, const uint8_t *row, int64_t i, __mmask16 m) {
    if (dt == DT_F32) return _mm512_maskz_loadu_ps(m, row + 4 * i);
    __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * i);
    if (dt == DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

LB_AI size_t esize(int dt) { return dt == DT_F32 ? 4 : 2; }

/* y[t * ldy + r] (+)= dot(w row r, x row t) over [k0, k1), r < R, t < T. One loop whose last
 * step masks the tail. Rows pf + q * wrb, q < npf, are prefetched as far in as k is (see tokens). */
LB_AI void tile(int dt, int R, int T, const uint8_t *w, size_t wrb, const float *x, int64_t xs, int64_t k0,
                int64_t k1, float *y, int64_t ldy, int add, const uint8_t *pf, int npf) {
    __m512 acc[MR][NR];
    LB_UNROLL
    for (int r = 0; r < R; r++)
        LB_UNROLL
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = k0; i < k1; i += 16) {
        __mmask16 m = k1 - i >= 16 ? 0xFFFF : (__mmask16)((1u << (k1 - i)) - 1);
        for (int q = 0; q < npf; q++) _mm_prefetch((const char *)pf + q * wrb + (i - k0) * esize(dt), _MM_HINT_T0);
        __m512 wv[MR];
        LB_UNROLL
        for (int r = 0; r < R; r++) {
            wv[r] = wload(dt, w + r * wrb, i, m);
            LB_IN_REG(wv[r]);
        }
        LB_UNROLL
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + t * xs + i);
            LB_IN_REG(xv);
            LB_UNROLL
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    float v[4 * NR] = {0}; /* lanes of rows past R stay unstored */
    LB_UNROLL
    for (int t = 0; t < T; t++)
        LB_UNROLL
        for (int r = 0; r < R; r++) v[4 * t + r] = _mm512_reduce_add_ps(acc[r][t]);
    lb_tile_store4(y, ldy, R, T, v, add);
}

/* acc[r] += w row r [i, i + 16) * x [i, i + 16), r < MR, lanes past m's first zero adding 0 (the
 * tile's step for one token). */
LB_AI void vstep(int dt, __m512 *acc, const uint8_t *w, size_t wrb, const float *x, int64_t i, __mmask16 m) {
    __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    LB_IN_REG(xv);
    LB_UNROLL
    for (int r = 0; r < MR; r++) acc[r] = _mm512_fmadd_ps(wload(dt, w + r * wrb, i, m), xv, acc[r]);
}

/* One token, MR rows over [k0, k1) in the tile's order (one accumulator per row, 16 elements a
 * step, the same masked last step and store), two steps a trip so that each row gets one
 * prefetch per 64 bytes of F16. Row q is prefetched PF ahead; once that passes the row's end it goes on
 * at the start of row q + MR (hop = (MR - 1) rows), the row that continues this stream in the
 * next tile. Without the hop the overshoot landed in row q + 1, already being read, and the next
 * tile's rows started cold: with 4 KiB rows (k = 2048, F16) that was a miss stall on three of
 * its four streams at every tile start, the hardware prefetcher starting over on each new page. */
LB_AI void vec4(int dt, const uint8_t *w, size_t wrb, const float *x, int64_t k0, int64_t k1, float *y, int add,
                size_t hop) {
    const size_t es = esize(dt);
    __m512 acc[MR];
    LB_UNROLL
    for (int r = 0; r < MR; r++) acc[r] = _mm512_setzero_ps();
    int64_t i = k0;
    for (; i + 32 <= k1; i += 32) {
        size_t o = (size_t)i * es + PF;
        const char *p = (const char *)w + o + (o >= wrb ? hop : 0);
        LB_UNROLL
        for (int r = 0; r < MR; r++)
            for (size_t b = 0; b < 32 * es; b += 64) _mm_prefetch(p + r * wrb + b, _MM_HINT_T0);
        vstep(dt, acc, w, wrb, x, i, 0xFFFF);
        vstep(dt, acc, w, wrb, x, i + 16, 0xFFFF);
    }
    for (; i < k1; i += 16) vstep(dt, acc, w, wrb, x, i, k1 - i >= 16 ? 0xFFFF : (__mmask16)((1u << (k1 - i)) - 1));
    float v[4];
    LB_UNROLL
    for (int r = 0; r < MR; r++) v[r] = _mm512_reduce_add_ps(acc[r]);
    lb_tile_store4(y, 0, MR, 1, v, add);
}

/* One token: each row tile streamed start to end through the same KC chunks as a prompt batch,
 * so a token's sums do not depend on the batch (ARCHITECTURE.md). The first tile's first PF bytes
 * are prefetched up front (nothing before it did), the rest by vec4 (past the matrix's last row
 * tile a prefetch overshoots the rows: harmless, prefetch never faults). */
LB_AI void rows_vec(int dt, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const size_t wrb = a->w_row_bytes, es = esize(dt);
    int64_t r = r0;
    for (int q = 0; q < MR && r0 + q < r1; q++)
        for (size_t b = 0; b < PF && b < wrb; b += 64)
            _mm_prefetch((const char *)a->w + (size_t)(r0 + q) * wrb + b, _MM_HINT_T0);
    for (; r < r1; r += MR) {
        const uint8_t *w = a->w + (size_t)r * wrb;
        const size_t hop = r + 2 * MR <= a->rows ? (MR - 1) * wrb : 0;
        for (int64_t k0 = 0; k0 < a->k; k0 += KC) {
            int64_t k1 = k0 + KC < a->k ? k0 + KC : a->k;
            if (r + MR <= r1) vec4(dt, w, wrb, a->x, k0, k1, a->y + r, k0 > 0, hop);
            else
                for (int64_t q = r; q < r1; q++)
                    tile(dt, 1, 1, w + (size_t)(q - r) * wrb, wrb, a->x, a->k, k0, k1, a->y + q, a->rows, k0 > 0,
                         w + (size_t)(q - r) * wrb + (size_t)k0 * es + PF, 1);
        }
    }
}

/* Tokens [t0, t1) against R rows from row r, over [k0, k1); the token tiles prefetch the next
 * row tile's chunk from pf (lb_tile_pf: why and which rows). */
LB_AI void tokens(int dt, int R, const lb_matmul_args *a, int64_t r, int64_t t0, int64_t t1, int64_t k0, int64_t k1,
                  int add, const uint8_t *pf) {
    const float *x = a->x;
    const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
    const int64_t xs = a->k, ldy = a->rows;
    const size_t wrb = a->w_row_bytes;
    const int n_tiles = (int)((t1 - t0 + NR - 1) / NR);
    int64_t t = t0;
    int j = 0, n;
    const uint8_t *q;
    for (; t + NR <= t1; t += NR, j++) {
        q = lb_tile_pf(pf, wrb, j, n_tiles, MR, &n);
        tile(dt, R, NR, w, wrb, x + t * xs, xs, k0, k1, a->y + t * ldy + r, ldy, add, q, n);
    }
    const float *xt = x + t * xs;
    float *yt = a->y + t * ldy + r;
    q = lb_tile_pf(pf, wrb, j, n_tiles, MR, &n);
    switch (t1 - t) { /* constant widths, so each tile is fully unrolled */
    case 5: tile(dt, R, 5, w, wrb, xt, xs, k0, k1, yt, ldy, add, q, n); break;
    case 4: tile(dt, R, 4, w, wrb, xt, xs, k0, k1, yt, ldy, add, q, n); break;
    case 3: tile(dt, R, 3, w, wrb, xt, xs, k0, k1, yt, ldy, add, q, n); break;
    case 2: tile(dt, R, 2, w, wrb, xt, xs, k0, k1, yt, ldy, add, q, n); break;
    case 1: tile(dt, R, 1, w, wrb, xt, xs, k0, k1, yt, ldy, add, q, n); break;
    default: break;
    }
}

LB_AI void rows_any(int dt, const lb_matmul_args *a, int64_t r0, int64_t r1) {
    const size_t wrb = a->w_row_bytes;
    if (a->n_tok == 1) {
        rows_vec(dt, a, r0, r1);
        return;
    }
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        int64_t te = tb + TB < a->n_tok ? tb + TB : a->n_tok;
        for (int64_t k0 = 0; k0 < a->k; k0 += KC) {
            int64_t k1 = k0 + KC < a->k ? k0 + KC : a->k;
            int64_t r = r0;
            for (; r + MR <= r1; r += MR) {
                const size_t es = esize(dt);
                const uint8_t *pf = lb_tile_next(a->w, wrb, r, r0, r1, MR, k0 * es, k1 * es, k1 < a->k, te < a->n_tok);
                tokens(dt, MR, a, r, tb, te, k0, k1, k0 > 0, pf);
            }
            for (; r < r1; r++) tokens(dt, 1, a, r, tb, te, k0, k1, k0 > 0, NULL);
        }
    }
}

static void rows_f32(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_any(DT_F32, a, r0, r1); }
static void rows_f16(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_any(DT_F16, a, r0, r1); }
static void rows_bf16(const lb_matmul_args *a, int64_t r0, int64_t r1) { rows_any(DT_BF16, a, r0, r1); }

/* Chunks of 16 rows keep each thread's outputs on their own cache lines. */
static const lb_matmul_kernel k_f32 = {NULL, NULL, rows_f32, 16};
static const lb_matmul_kernel k_f16 = {NULL, NULL, rows_f16, 16};
static const lb_matmul_kernel k_bf16 = {NULL, NULL, rows_bf16, 16};

const lb_matmul_kernel *lb_matmul_avx512_builtin(lb_dtype t) {
    switch (t) {
    case LB_F32: return &k_f32;
    case LB_F16: return &k_f16;
    case LB_BF16: return &k_bf16;
    default: return NULL;
    }
}
