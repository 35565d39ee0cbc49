/* Matrix products on the GPU: weights uploaded once in their block format (F32, F16, BF16,
 * Q8_0, Q4_0; every other type is dequantized to F16 at upload, which costs memory and
 * bandwidth against its own format), decode and small batches through the register kernels,
 * prompts of F16 weights through cuBLAS, of Q8_0 / Q4_0 weights through cuBLAS on an F16 copy
 * made per product (BF16 and F32 prompts: the register kernel per 8 tokens). */
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cuda/cuda_dev.h"
#include "kernels/cuda/cuda_kernels.h"
#include "quant/blocks.h"

/* the most tokens the register kernels take before cuBLAS does better for float weights */
#define GEMM_MIN_TOK 9
/* Quantized weights: the F16 copy is written and read (4 bytes an element) against the 0.56-1.06
 * bytes the register kernels read per 8 tokens, so cuBLAS pays from about 32 tokens (prompt
 * chunks; batched decode of fewer sequences stays on the register kernels). */
#define GEMM_MIN_TOK_Q 32

static lb_status up_copy(void **dst, const void *src, size_t bytes, lb_error *err) {
    cudaError_t e = cudaMalloc(dst, bytes ? bytes : 1);
    if (e == cudaSuccess) e = cudaMemcpy(*dst, src, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return lb_fail(err, LB_ERR_NOMEM, "cannot upload %zu bytes of weights: %s", bytes, cudaGetErrorString(e));
    lb_cu_g.up_bytes += bytes;
    return LB_OK;
}

/* Q8_0 / Q4_0 blocks split into values and scales, so each block's values start 16-byte aligned. */
static lb_status up_split(lb_cu_up *u, const lb_tensor *w, lb_error *err) {
    int q4 = w->type == LB_Q4_0;
    size_t nb = (size_t)(u->rows * u->k / 32), vb = q4 ? 16 : 32, bb = q4 ? sizeof(lb_block_q4_0) : sizeof(lb_block_q8_0);
    uint8_t *qs = malloc(nb * vb);
    uint16_t *d = malloc(nb * sizeof(uint16_t));
    lb_status st = LB_OK;
    if (!qs || !d) st = lb_fail(err, LB_ERR_NOMEM, "out of memory repacking %s", w->name ? w->name : "a weight");
    const uint8_t *src = w->data;
    for (size_t b = 0; !st && b < nb; b++) {
        memcpy(&d[b], src + b * bb, 2);
        memcpy(qs + b * vb, src + b * bb + 2, vb);
    }
    if (!st) st = up_copy(&u->q, qs, nb * vb, err);
    if (!st) st = up_copy((void **)&u->d, d, nb * sizeof(uint16_t), err);
    u->type = q4 ? LB_CU_Q4_0 : LB_CU_Q8_0;
    free(qs);
    free(d);
    return st;
}

static lb_status up_dequant(lb_cu_up *u, const lb_tensor *w, lb_error *err) {
    size_t n = (size_t)(u->rows * u->k);
    uint16_t *h = malloc(n * sizeof(uint16_t));
    float *row = malloc((size_t)u->k * sizeof(float));
    lb_status st = !h || !row ? lb_fail(err, LB_ERR_NOMEM, "out of memory dequantizing %s", w->name ? w->name : "a weight") : LB_OK;
    for (int64_t r = 0; !st && r < u->rows; r++) {
        st = lb_tensor_row_to_float(w, r, row, err);
        for (int64_t i = 0; !st && i < u->k; i++) h[r * u->k + i] = lb_f32_to_fp16(row[i]);
    }
    if (!st) st = up_copy(&u->q, h, n * sizeof(uint16_t), err);
    u->type = LB_CU_F16;
    free(h);
    free(row);
    return st;
}

static lb_status weight_of(const lb_tensor *w, lb_cu_up **out, lb_error *err) {
    lb_cu_up *u = lb_cu_up_find(w->data);
    if (u && u->kind == 1) {
        *out = u;
        return LB_OK;
    }
    if (u && u->kind == 2) return lb_fail(err, LB_ERR_NOMEM, "CUDA: %s could not be uploaded earlier", w->name ? w->name : "a weight");
    if (u) return lb_fail(err, LB_ERR_ARG, "CUDA: %s is used both as a vector and as a matrix", w->name ? w->name : "a tensor");
    if (!(u = lb_cu_up_insert(w->data))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    u->kind = 1;
    u->k = w->ne[0];
    u->rows = lb_tensor_nrows(w);
    u->bytes = w->nbytes;
    lb_status st;
    switch (w->type) {
    case LB_F32: u->type = LB_CU_F32; st = up_copy(&u->q, w->data, (size_t)(u->rows * u->k) * 4, err); break;
    case LB_F16: u->type = LB_CU_F16; st = up_copy(&u->q, w->data, (size_t)(u->rows * u->k) * 2, err); break;
    case LB_BF16: u->type = LB_CU_BF16; st = up_copy(&u->q, w->data, (size_t)(u->rows * u->k) * 2, err); break;
    case LB_Q8_0:
    case LB_Q4_0: st = u->k % 32 ? lb_fail(err, LB_ERR_FORMAT, "%s: rows of %lld are not whole blocks", w->name ? w->name : "weight", (long long)u->k)
                                 : up_split(u, w, err); break;
    default: st = up_dequant(u, w, err); break;
    }
    if (st) u->kind = 2; /* partly uploaded: never used, freed by forget */
    *out = u;
    return st;
}

/* cuBLAS: y (rows x n_tok, column-major) = W^T x with W row-major [rows][k] and x [n_tok][k],
 * both F16 or both BF16, accumulated in F32 on the tensor cores. */
static lb_status gemm_half(const void *wh, const uint16_t *xh, int bf, int64_t rows, int64_t k, int n_tok, float *y,
                           lb_error *err) {
    const float one = 1, zero = 0;
    cudaDataType_t t = bf ? CUDA_R_16BF : CUDA_R_16F;
    int slot = lb_cu_prof_mark();
    cublasStatus_t s = cublasGemmEx(lb_cu_g.blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, n_tok, (int)k, &one, wh, t, (int)k,
                                    xh, t, (int)k, &zero, y, CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    lb_cu_prof_done(slot, LB_CU_PROF_GEMM, bf ? LB_CU_BF16 : LB_CU_F16, (int)rows, (int)k, n_tok);
    if (s != CUBLAS_STATUS_SUCCESS && !lb_cu_g.blas_err) lb_cu_g.blas_err = (int)s;
    return lb_cu_status(err);
}

static lb_status gemm(const lb_cu_up *u, const float *x, int n_tok, float *y, lb_error *err) {
    int bf = u->type == LB_CU_BF16;
    size_t n = (size_t)n_tok * u->k;
    uint16_t *xh = lb_cu_scratch(LB_CU_SCRATCH_HALF, n * sizeof(uint16_t));
    if (!xh) return lb_cu_status(err);
    int slot = lb_cu_prof_mark();
    lb_cu_to_half(x, xh, n, bf, lb_cu_g.stream);
    lb_cu_prof_done(slot, LB_CU_PROF_ACT_HALF, u->type, 0, (int)u->k, n_tok);
    return gemm_half(u->q, xh, bf, u->rows, u->k, n_tok, y, err);
}

/* Q8_0 / Q4_0 prompts: the weight dequantized to an F16 scratch (one pass over it, amortised
 * over the tokens), the activations quantized to Q8_0 as the register kernels do and stored as
 * F16, then cuBLAS. Returns 1 (nothing launched) when the scratch cannot be had, so the caller
 * falls back to the register kernels instead of failing. */
static int gemm_quant(const lb_cu_up *u, const float *x, int n_tok, float *y, lb_status *st, lb_error *err) {
    size_t n = (size_t)(u->rows * u->k), nx = (size_t)n_tok * u->k;
    uint16_t *wh = lb_cu_scratch_try(LB_CU_SCRATCH_WHALF, n * sizeof(uint16_t));
    uint16_t *xh = wh ? lb_cu_scratch_try(LB_CU_SCRATCH_HALF, nx * sizeof(uint16_t)) : NULL;
    if (!xh) return 1;
    int slot = lb_cu_prof_mark();
    lb_cu_dequant_half(u->type, u->q, u->d, n, wh, lb_cu_g.stream);
    lb_cu_prof_done(slot, LB_CU_PROF_DEQUANT, u->type, (int)u->rows, (int)u->k, 0);
    slot = lb_cu_prof_mark();
    lb_cu_quant_act_half(x, n_tok, (int)u->k, xh, lb_cu_g.stream);
    lb_cu_prof_done(slot, LB_CU_PROF_ACT_HALF, u->type, 0, (int)u->k, n_tok);
    *st = gemm_half(wh, xh, 0, u->rows, u->k, n_tok, y, err);
    return 0;
}

/* The activations' Q8_0 copy. While recording, the RMSNorm just recorded that wrote x makes it
 * in the same launch (lb_cu_add_rmsnorm). */
static void quant_act(const float *x, int n_tok, int k, int8_t *xq, float *xd) {
    const lb_cu_rec *last = lb_cu_last_rec();
    lb_cu_rec r;
    if (last && last->op == LB_CU_OP_NORM && last->p[0] == x && !last->p[4] && last->i[0] == n_tok && last->i[1] == k &&
        k % 32 == 0) {
        memcpy(&r, last, sizeof r);
        r.p[4] = xq, r.p[5] = xd;
        lb_cu_replace_last(&r);
        return;
    }
    memset(&r, 0, sizeof r);
    r.op = LB_CU_OP_QUANT_ACT, r.p[0] = x, r.p[1] = xq, r.p[2] = xd, r.i[0] = n_tok, r.i[1] = k;
    lb_cu_submit(&r);
}

static lb_status run(const lb_cu_up *u, const float *x, int n_tok, float *y, lb_error *err) {
    int quant = u->type == LB_CU_Q8_0 || u->type == LB_CU_Q4_0;
    size_t k = (size_t)u->k, nb = k / 32;
    /* F16 only: activations rounded to BF16 would cost about 1e-3 of relative accuracy */
    /* cuBLAS is not recorded (cuda_graph.c): what was is launched first */
    if (u->type == LB_CU_F16 && n_tok >= GEMM_MIN_TOK) {
        lb_cu_flush();
        return gemm(u, x, n_tok, y, err);
    }
    lb_status st = LB_OK;
    if (quant && n_tok >= GEMM_MIN_TOK_Q) lb_cu_flush();
    if (quant && n_tok >= GEMM_MIN_TOK_Q && !gemm_quant(u, x, n_tok, y, &st, err)) {
        lb_cu_g.epoch++; /* y may overlap the input a cached Q8_0 copy was made of */
        return st;
    }
    int8_t *xq = NULL;
    float *xd = NULL;
    lb_cu_state *g = &lb_cu_g;
    if (quant) { /* activations quantized once for every chunk of tokens, and for the next product */
        int again = g->aq_x == x && g->aq_n == n_tok && g->aq_k == u->k && g->aq_epoch == g->epoch;
        xq = lb_cu_scratch(LB_CU_SCRATCH_ACT, (size_t)n_tok * (k + nb * sizeof(float)));
        if (!xq) return lb_cu_status(err);
        xd = (float *)(void *)(xq + (size_t)n_tok * k);
        if (!again) quant_act(x, n_tok, (int)k, xq, xd);
        g->aq_x = x, g->aq_n = n_tok, g->aq_k = u->k, g->aq_epoch = g->epoch;
    }
    /* a product writing over the input it quantized would leave a stale copy */
    uintptr_t y0 = (uintptr_t)y, y1 = y0 + (size_t)n_tok * u->rows * sizeof(float), x0 = (uintptr_t)g->aq_x;
    if (g->aq_x && y0 < x0 + (size_t)g->aq_n * g->aq_k * sizeof(float) && x0 < y1) g->epoch++;
    for (int t0 = 0; t0 < n_tok; t0 += LB_CU_MV_TOK) {
        int n = n_tok - t0 < LB_CU_MV_TOK ? n_tok - t0 : LB_CU_MV_TOK;
        lb_cu_rec r;
        memset(&r, 0, sizeof r);
        r.op = LB_CU_OP_MV;
        r.p[0] = u->q, r.p[1] = u->d, r.p[2] = x + (size_t)t0 * k, r.p[3] = quant ? xq + (size_t)t0 * k : NULL;
        r.p[4] = quant ? xd + (size_t)t0 * nb : NULL, r.p[5] = y + (size_t)t0 * u->rows;
        r.i[0] = u->type, r.i[1] = (int)u->rows, r.i[2] = (int)k, r.i[3] = n;
        lb_cu_submit(&r);
    }
    return lb_cu_status(err);
}

/* x and y may be host memory (logits, a caller's rows): through scratch, y copied back at once. */
static lb_status product(const lb_tensor *w, const float *x, int n_tok, float *y, lb_error *err) {
    lb_cu_up *u = NULL;
    lb_status st = weight_of(w, &u, err);
    if (st) return st;
    if ((u->rows | u->k) >> 31) return lb_fail(err, LB_ERR_UNSUPPORTED, "CUDA: %s is too large for one product", w->name ? w->name : "a weight");
    size_t xb = (size_t)n_tok * u->k * sizeof(float), yb = (size_t)n_tok * u->rows * sizeof(float);
    const float *dx = x;
    if (!lb_cu_is_dev(x)) {
        lb_cu_g.epoch++; /* a staging slot is reused with other contents */
        if (!(dx = lb_cu_stage(x, xb))) return lb_cu_status(err);
    }
    int host_y = !lb_cu_is_dev(y);
    float *dy = host_y ? lb_cu_scratch(LB_CU_SCRATCH_Y, yb) : y;
    if (!dy) return lb_cu_status(err);
    st = run(u, dx, n_tok, dy, err);
    if (host_y) { /* the step's graph, or its ops, before the result is read */
        lb_cu_step_end();
        if (st) lb_cu_check(cudaStreamSynchronize(lb_cu_g.stream)); /* the next step refills the arena */
    }
    if (!st && host_y) {
        int slot = lb_cu_prof_mark();
        float *pin = lb_cu_pinned_out(yb);
        lb_cu_check(cudaMemcpyAsync(pin ? pin : y, dy, yb, cudaMemcpyDeviceToHost, lb_cu_g.stream));
        lb_cu_prof_done(slot, LB_CU_PROF_READBACK, 0, (int)u->rows, 0, n_tok);
        lb_cu_check(cudaStreamSynchronize(lb_cu_g.stream));
        st = lb_cu_status(err);
        if (!st && pin) memcpy(y, pin, yb);
    }
    return st;
}

lb_status lb_cu_matmul(lb_pool *pool, const lb_tensor *w, int per_token_act, const float *x, int n_tok, float *y,
                       lb_error *err) {
    if (per_token_act) return lb_fail(err, LB_ERR_UNSUPPORTED, "CUDA: per-token activation quantization (BitNet) is not implemented");
    return product(w, x, n_tok, y, err);
}

lb_status lb_cu_matmul_raw(lb_pool *pool, lb_dtype type, const void *w, int64_t rows, int64_t k, const float *x,
                           int n_tok, float *y, lb_error *err) {
    lb_tensor t = {"raw", type, 2, {k, rows, 1, 1}, w, 0};
    lb_status st = lb_tensor_nbytes(type, 2, t.ne, &t.nbytes, "raw weight", err);
    if (st) return st;
    return product(&t, x, n_tok, y, err);
}
