/* GPTQ factor (Cholesky of the inverse second moment) and the compensated row quantizer
 * (quant/gptq.h). All factor arithmetic is in double; rows run in float as GPTQ does. */
#include "quant/gptq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cpu/cpu.h"
#include "quant/quant.h"

double lb_gptq_dot_d(const double *a, const double *b, int64_t n) {
    if (lb_cpu_has_avx2()) return lb_gptq_dot_d_avx2(a, b, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void lb_gptq_axpy_d(double *y, double a, const double *x, int64_t n) {
    if (lb_cpu_has_avx2()) {
        lb_gptq_axpy_d_avx2(y, a, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void lb_gptq_axpy_f(float *y, float a, const float *x, int64_t n) {
    if (lb_cpu_has_avx2()) {
        lb_gptq_axpy_f_avx2(y, a, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void lb_gptq_acc4(double *h, const double *a, const float *const *x, int64_t n) {
    if (lb_cpu_has_avx2()) {
        lb_gptq_acc4_avx2(h, a, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) h[i] += a[0] * x[0][i] + a[1] * x[1][i] + a[2] * x[2][i] + a[3] * x[3][i];
}

void lb_gptq_key(const char *name, char *key, size_t cap) {
    int l = -1, n = 0;
    const char *what = NULL;
    if (sscanf(name, "blk.%d.%n", &l, &n) == 1 && n > 0) what = name + n;
    if (what && (!strcmp(what, "attn_q.weight") || !strcmp(what, "attn_k.weight") || !strcmp(what, "attn_v.weight")))
        snprintf(key, cap, "blk.%d.attn_qkv", l);
    else if (what && (!strcmp(what, "ffn_gate.weight") || !strcmp(what, "ffn_up.weight")))
        snprintf(key, cap, "blk.%d.ffn_gate_up", l);
    else snprintf(key, cap, "%s", name);
}

const lb_gptq_in *lb_gptq_get(const lb_gptq *g, const char *name) {
    if (!g || !name) return NULL;
    char key[256];
    lb_gptq_key(name, key, sizeof key);
    for (size_t i = 0; i < g->n; i++)
        if (!strcmp(g->in[i].key, key)) return &g->in[i];
    return NULL;
}

int lb_gptq_applies(lb_dtype ty) {
    return lb_quant_can_write(ty) && ty != LB_TQ1_0 && ty != LB_TQ2_0;
}

/* In-place lower Cholesky of the k x k row-major A (upper part left as is); 0 when A is not
 * positive definite. Row i's dot products run over contiguous rows. */
static int chol_lower(double *A, int64_t k) {
    for (int64_t i = 0; i < k; i++) {
        double *ri = A + (size_t)i * (size_t)k;
        for (int64_t j = 0; j <= i; j++) {
            const double *rj = A + (size_t)j * (size_t)k;
            double s = ri[j] - lb_gptq_dot_d(ri, rj, j);
            if (j == i) {
                if (!(s > 0) || !isfinite(s)) return 0;
                ri[i] = sqrt(s);
            } else ri[j] = s / rj[j];
        }
    }
    return 1;
}

lb_status lb_gptq_factor(const double *H, int64_t k, double damp, float *U, const char *name, lb_error *err) {
    size_t kk = (size_t)k * (size_t)k;
    double *A = malloc(kk * sizeof *A), *X = calloc(kk, sizeof *X);
    if (!A || !X) {
        free(A), free(X);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for the GPTQ factor of %s (%lld columns)", name, (long long)k);
    }
    double mean = 0;
    for (int64_t j = 0; j < k; j++) mean += H[(size_t)j * (size_t)k + (size_t)j];
    mean = mean > 0 ? mean / (double)k : 1;
    /* In reversed column order (J H J, J the reversal), H + lambda I = L L^T; then R = J L J is
     * upper with H + lambda I = R R^T, so (H + lambda I)^-1 = R^-T R^-1 and U = R^-1 = J L^-1 J:
     * one Cholesky and one triangular inverse, no explicit inverse of H. */
    int ok = 0;
    for (int attempt = 0; attempt < 4 && !ok; attempt++, damp *= 10) {
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                A[(size_t)i * (size_t)k + (size_t)j] = H[(size_t)(k - 1 - i) * (size_t)k + (size_t)(k - 1 - j)];
        for (int64_t j = 0; j < k; j++) {
            double *d = A + (size_t)j * (size_t)k + (size_t)j;
            if (!(*d > 0)) *d = 1; /* a dead input: its column's error costs nothing */
            *d += damp * mean;
        }
        ok = chol_lower(A, k);
    }
    if (!ok) {
        free(A), free(X);
        return lb_fail(err, LB_ERR_RANGE, "GPTQ: the input second moment of %s is not positive definite even damped "
                       "(non-finite activations?)", name);
    }
    /* X = L^-1 (lower), row by row: X_i = (e_i - sum_{t<i} L_it X_t) / L_ii */
    for (int64_t i = 0; i < k; i++) {
        double *xi = X + (size_t)i * (size_t)k;
        const double *li = A + (size_t)i * (size_t)k;
        for (int64_t t = 0; t < i; t++) lb_gptq_axpy_d(xi, -li[t], X + (size_t)t * (size_t)k, t + 1);
        xi[i] += 1;
        double inv = 1 / li[i];
        for (int64_t c = 0; c <= i; c++) xi[c] *= inv;
    }
    ok = 1;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            double v = X[(size_t)(k - 1 - i) * (size_t)k + (size_t)(k - 1 - j)];
            ok &= isfinite(v);
            U[(size_t)i * (size_t)k + (size_t)j] = j >= i ? (float)v : 0.0f;
        }
    free(A), free(X);
    if (!ok) return lb_fail(err, LB_ERR_RANGE, "GPTQ: the factor of %s is not finite (ill-conditioned; try more "
                            "calibration text)", name);
    return LB_OK;
}

/* The columns that share one scale inside a super-block: the unit fixed at a time. */
static int64_t sub_block(lb_dtype ty, int64_t B) {
    switch (ty) {
    case LB_Q2_K: case LB_Q3_K: case LB_Q6_K: return 16;
    case LB_Q4_K: case LB_Q5_K: case LB_IQ4_XS: return 32;
    default: return B;
    }
}

void lb_gptq_quantize_row(lb_dtype ty, const float *U, int64_t k, float *w, void *y, const float *im, float *scratch) {
    const lb_dtype_traits *tr = lb_dtype_get(ty);
    int64_t B = tr->block_size, S = sub_block(ty, B);
    size_t bb = lb_dtype_row_size(ty, B);
    float *q = scratch, *x = scratch + B, *e = scratch + 2 * B;
    for (int64_t b = 0; b < k; b += B) {
        uint8_t *yb = (uint8_t *)y + (size_t)(b / B) * bb;
        /* super-blocks: the sub-blocks are fixed one at a time; each fit sees the values already
         * fixed (on the grid of the previous fit, so the next fit keeps them nearly) and the
         * moved weights of the rest. The last fit is what is written. */
        for (int64_t s0 = 0; s0 < B; s0 += S) {
            for (int64_t i = 0; i < B; i++) x[i] = i < s0 ? q[i] : w[b + i];
            lb_quantize(ty, x, yb, 1, B, im ? im + b : NULL);
            tr->to_float(yb, q, B);
            /* the sub-block's own columns and the rest of the super-block: sequential moves */
            for (int64_t i = s0; i < s0 + S; i++) {
                const float *u = U + (size_t)(b + i) * (size_t)k;
                float ei = (w[b + i] - q[i]) / u[b + i];
                lb_gptq_axpy_f(w + b + i + 1, -ei, u + b + i + 1, B - i - 1);
            }
        }
        /* the errors of the values written, onto the later columns: one lazy update per block */
        for (int64_t i = 0; i < B; i++) e[i] = (w[b + i] - q[i]) / U[(size_t)(b + i) * (size_t)k + (size_t)(b + i)];
        float *rest = w + b + B;
        int64_t nr = k - b - B;
        for (int64_t i = 0; i < B && nr > 0; i++) {
            const float *u = U + (size_t)(b + i) * (size_t)k + (size_t)(b + B);
            lb_gptq_axpy_f(rest, -e[i], u, nr);
        }
    }
}
