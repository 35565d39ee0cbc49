/* GPTQ-style error compensation (Frantar et al., 2022) for the block quantizers.
 *
 * A matrix W (rows = output channels, columns = inputs) quantized to Q errs on the outputs by
 * sum_t ||(W - Q) a_t||^2 = sum_r d_r^T H d_r, with H = sum_t a_t a_t^T the inputs' second
 * moment and d_r = w_r - q_r. GPTQ walks the columns in order and, once a column's value is fixed,
 * moves the columns not yet fixed so as to cancel its error in that norm; with the upper Cholesky
 * factor U of H^-1 (H^-1 = U^T U) the move for column j is w_k -= (w_j - q_j) / U_jj * U_jk, k > j.
 * Here whole blocks (the type's block: 32 columns for legacy/IQ4_NL, 256 for K-quants/IQ4_XS) are
 * fitted at once on the current (already moved) weights by the type's own weighted search, then
 * their columns' errors are pushed on in order (the columns of the block itself only change the
 * errors that follow, since the block's values are fixed; the later blocks get them in one lazy
 * update per block).
 *
 * lb_gptq (lowbit.h) holds H per distinct matmul input: q/k/v of a layer share one, gate/up too. */
#ifndef LB_QUANT_GPTQ_H
#define LB_QUANT_GPTQ_H
#include "core/dtype.h"
#include "lowbit.h"

typedef struct lb_gptq_in {
    char *key;   /* "blk.3.attn_qkv", "blk.3.ffn_gate_up", or the tensor name */
    int64_t k;   /* columns */
    double *H;   /* k x k, row-major, symmetric: sum over tokens of a a^T */
    int64_t n_tok;
} lb_gptq_in;

struct lb_gptq {
    lb_gptq_in *in;
    size_t n, cap;
    int n_chunks;
};

/* The input key of tensor name: q/k/v of a block share "blk.N.attn_qkv", gate/up share
 * "blk.N.ffn_gate_up"; every other tensor is its own. Writes at most cap bytes. */
void lb_gptq_key(const char *name, char *key, size_t cap);
/* The input that tensor name reads, NULL when g has none. */
const lb_gptq_in *lb_gptq_get(const lb_gptq *g, const char *name);

/* The GPTQ factor of H (k x k): U upper with U^T U = (H + lambda I)^-1, lambda = damp x mean of
 * diag(H) (columns with H_jj = 0 get H_jj = 1 first); U as float, row-major, k x k (lower part
 * zero). Raises lambda tenfold (up to three times) when H + lambda I is not positive definite.
 * LB_ERR_RANGE names the tensor when it stays so. */
lb_status lb_gptq_factor(const double *H, int64_t k, double damp, float *U, const char *name, lb_error *err);

/* Quantizes one row w (k values, changed in place: the compensated weights) to type ty (block
 * type lb_quantize writes) into y, block by block, with the factor U and importance weights im
 * (NULL: the type's default weights). scratch: 3 x (block size) floats. */
void lb_gptq_quantize_row(lb_dtype ty, const float *U, int64_t k, float *w, void *y, const float *im, float *scratch);

/* The inner loops, scalar or AVX2 (chosen by lb_cpu_has_avx2): dot product, y += a x in double and
 * float, and h += sum_{i<4} a_i x_i (float rows into a double row; H accumulation). */
double lb_gptq_dot_d(const double *a, const double *b, int64_t n);
void lb_gptq_axpy_d(double *y, double a, const double *x, int64_t n);
void lb_gptq_axpy_f(float *y, float a, const float *x, int64_t n);
void lb_gptq_acc4(double *h, const double *a, const float *const *x, int64_t n);
double lb_gptq_dot_d_avx2(const double *a, const double *b, int64_t n);
void lb_gptq_axpy_d_avx2(double *y, double a, const double *x, int64_t n);
void lb_gptq_axpy_f_avx2(float *y, float a, const float *x, int64_t n);
void lb_gptq_acc4_avx2(double *h, const double *a, const float *const *x, int64_t n);

/* 1 when ty is a type GPTQ applies to (every block type lb_quantize writes except the ternary). */
int lb_gptq_applies(lb_dtype ty);
#endif
