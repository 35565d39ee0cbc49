/* Error-minimizing scale search shared by the quantizers (internal).
 * Each fit tries a fan of candidate inverse scales around the absmax / min-max one, rounds
 * the block with each, solves the weighted least-squares scale (and offset) for that
 * rounding, keeps the best, then alternates rounding and re-fitting until it stops improving. */
#ifndef LB_QUANT_K_SEARCH_H
#define LB_QUANT_K_SEARCH_H
#include <stdint.h>

#define LB_QS_MAX_CAND 64

/* For each candidate k: L = clamp(nearbyint(iscale[k] * (x - xmin)), 0, nmax);
 * sums[3k] = sum w L, sums[3k+1] = sum w L^2, sums[3k+2] = sum w L x. n is a multiple of 8. */
void lb_qs_scan_asym(int n, const float *x, const float *w, float xmin, int nmax,
                     const float *iscale, int ncand, float *sums);
void lb_qs_scan_asym_avx2(int n, const float *x, const float *w, float xmin, int nmax,
                          const float *iscale, int ncand, float *sums);
/* As lb_qs_scan_asym_avx2 with its own xmin per candidate (xmins[k]). */
void lb_qs_scan_asym_offs_avx2(int n, const float *x, const float *w, const float *xmins,
                               int nmax, const float *iscale, int ncand, float *sums);
/* Consecutive blocks of n: candidate k scans x + k n, w + k n with xmins[k], iscale[k]. */
void lb_qs_scan_asym_blocks_avx2(int n, const float *x, const float *w, const float *xmins,
                                 int nmax, const float *iscale, int nblk, float *sums);
/* For each candidate k: L = clamp(nearbyint(iscale[k] * x), lo, hi);
 * sums[2k] = sum w L x, sums[2k+1] = sum w L^2. n is a multiple of 8. */
void lb_qs_scan_sym(int n, const float *x, const float *w, int lo, int hi, const float *iscale,
                    int ncand, float *sums);
void lb_qs_scan_sym_avx2(int n, const float *x, const float *w, int lo, int hi,
                         const float *iscale, int ncand, float *sums);

/* Among candidates (sums as from lb_qs_scan_asym), the least-squares line with the lowest
 * weighted error; returns its index (-1 if none is valid) and sets s, off. */
int lb_qs_pick_asym(int ncand, const float *sums, float sw, float sx, int free_offset, float *s,
                    float *off);
int lb_qs_pick_asym_avx2(int ncand, const float *sums, float sw, float sx, int free_offset,
                         float *s, float *off);

/* x ~ s * L + off with L in [0, nmax]. When free_offset is 0, off <= 0 (GGUF K-quants store
 * a subtracted, non-negative min) and s >= 0. Returns s and sets *off; fills L. */
float lb_qs_fit_asym(int n, const float *x, const float *w, int nmax, int free_offset, int simd,
                     uint8_t *L, float *off);
/* lb_qs_fit_asym that also returns sum w and sum w x (summed in index order). */
float lb_qs_fit_asym_sums(int n, const float *x, const float *w, int nmax, int free_offset,
                          int simd, uint8_t *L, float *off, float *sw, float *sx);
/* Fused lb_qs_scan_asym_avx2 + lb_qs_pick_asym_avx2; best[3] gets the winner's sums. */
int lb_qs_search_asym_avx2(int n, const float *x, const float *w, float xmin, int nmax,
                           const float *iscale, int ncand, float sw, float sx, int free_offset,
                           float *s, float *off, float *best);
/* L = clamp(round((x - off) * is), 0, nmax) (n % 8 == 0); min and max of x (n % 8 == 0). */
void lb_qs_round_asym_avx2(int n, const float *x, float off, float is, int nmax, uint8_t *L);
void lb_qs_minmax_avx2(int n, const float *x, float *mn, float *mx);
/* x ~ s * L with L in [lo, hi] (lo <= 0 < hi); s may be negative when lo < 0. Returns s. */
float lb_qs_fit_sym(int n, const float *x, const float *w, int lo, int hi, int simd, int8_t *L);

/* Weights for the error: sqrt(rms^2 + x^2) (larger values matter more), times imatrix. */
void lb_qs_weights(int n, const float *x, const float *imatrix, float *w);
void lb_qs_weights_avx2(int n, const float *x, const float *imatrix, float *w); /* n % 8 == 0 */

/* Round half to even (as nearbyintf and _mm256_round_ps do) after clamping, so NaN or huge
 * values never reach the int conversion. Adding and removing 1.5 * 2^23 rounds |v| < 2^22 in
 * the default rounding mode without the libm call (which saves and restores the FP
 * environment and dominated quantization time). */
static inline int lb_qs_round_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v > (float)hi) return hi;
    const float magic = 12582912.0f; /* not folded: IEEE arithmetic without -ffast-math */
    return (int)((v + magic) - magic);
}
#endif
