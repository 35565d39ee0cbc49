/* The CUDA backend: fills the op table (kernels/backend.h) with the kernels of
 * src/kernels/cuda (the .cu files). The forward pass hands every op device buffers it allocated through
 * this table, plus host pointers to the model's constant data (weights, norms, biases, a
 * fine-tune's corrections) and to small per-call tables (RoPE cos/sin, KV slots, block
 * tables). Constant data is uploaded the first time a pointer is seen and kept (weights in
 * their block formats, repacked so blocks load aligned); per-call tables are copied to a
 * staging buffer on the stream. Logits land in host memory: the one synchronising copy.
 *
 * There is one device context per process (stream, cuBLAS handle, upload cache) and the table
 * is used from one thread at a time, as the engine does; ops that cannot return an error keep
 * the first CUDA error, and the next matmul reports it. Device buffers are written only through
 * the table's ops (each counts an epoch, which is how a product knows its input is unchanged). */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_dev.h"
#include "kernels/cuda/cuda_kernels.h"

lb_cu_state lb_cu_g;

void lb_cu_check(cudaError_t e) {
    if (e != cudaSuccess && lb_cu_g.err == cudaSuccess) lb_cu_g.err = e;
}

lb_status lb_cu_status(lb_error *err) {
    lb_cu_check(cudaGetLastError());
    if (lb_cu_g.err == cudaSuccess && lb_cu_g.blas_err == 0) return LB_OK;
    if (lb_cu_g.blas_err) return lb_fail(err, LB_ERR_IO, "cuBLAS failed with status %d", lb_cu_g.blas_err);
    return lb_fail(err, LB_ERR_IO, "CUDA: %s", cudaGetErrorString(lb_cu_g.err));
}

/* ---- device buffers the forward pass owns ------------------------------------------------ */

static lb_status cu_alloc(void *ctx, size_t bytes, const char *tag, lb_buf *out, lb_error *err) {
    memset(out, 0, sizeof *out);
    lb_cu_g.epoch++; /* an address may come back with other contents */
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) return lb_fail(err, LB_ERR_NOMEM, "cannot allocate %zu bytes of GPU memory for %s: %s", bytes, tag, cudaGetErrorString(e));
    if (lb_cu_reg_add(p, bytes ? bytes : 1)) {
        cudaFree(p);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    out->data = p;
    out->bytes = bytes;
    out->loc = LB_BUF_DEVICE;
    return LB_OK;
}

static void cu_free(void *ctx, lb_buf *b) {
    if (!b->data) return;
    lb_cu_flush(); /* recorded ops may still name the buffer */
    lb_cu_reg_del(b->data);
    lb_cu_check(cudaFree(b->data));
    b->data = NULL;
    b->bytes = 0;
}

/* ---- ops: each fills a record (cuda_graph.c) that is launched now or with the step ------- */

static lb_cu_rec rec_of(int op) {
    lb_cu_rec r;
    memset(&r, 0, sizeof r);
    r.op = op;
    return r;
}

/* While recording, x += add right before the norm of x is one launch (the residual add and
 * the next block's norm). */
static void cu_rmsnorm(float *out, const float *x, const float *w, int n_tok, int n, float eps) {
    const float *dw = w ? lb_cu_const(w, (size_t)n * sizeof(float)) : NULL;
    if (w && !dw) return;
    lb_cu_g.epoch++;
    lb_cu_rec r = rec_of(LB_CU_OP_NORM);
    r.p[0] = out, r.p[1] = x, r.p[3] = dw, r.i[0] = n_tok, r.i[1] = n, r.f = eps;
    const lb_cu_rec *last = lb_cu_last_rec();
    if (last && last->op == LB_CU_OP_ADD && last->p[0] == x && last->z == (size_t)n_tok * n) {
        r.p[2] = last->p[1];
        lb_cu_replace_last(&r);
        return;
    }
    lb_cu_submit(&r);
}

static void cu_rope(float *x, int n_tok, int n_heads, int hd, size_t row_stride, const float *cs, int layout) {
    const float *dcs = lb_cu_stage(cs, (size_t)n_tok * hd * sizeof(float));
    lb_cu_g.epoch++;
    if (!dcs) return;
    lb_cu_rec r = rec_of(LB_CU_OP_ROPE);
    r.p[0] = x, r.p[1] = dcs, r.i[0] = n_tok, r.i[1] = n_heads, r.i[2] = hd, r.i[3] = layout, r.z = row_stride;
    lb_cu_submit(&r);
}

static lb_cu_kv kv_of(const lb_kv_view *v) {
    lb_cu_kv k = {v->base, v->block_bytes, v->k_off, v->v_off, v->row_bytes, v->head_bytes, v->block_tokens, v->kv_type};
    return k;
}

static void cu_kv_store(const lb_kv_view *kv, const float *k, const float *v, int n_tok, int kv_dim, const int32_t *blk,
                        const int32_t *off) {
    int32_t *slot = lb_cu_host_tmp((size_t)n_tok * 2 * sizeof(int32_t));
    if (!slot) return;
    for (int t = 0; t < n_tok; t++) slot[2 * t] = blk[t], slot[2 * t + 1] = off[t];
    const int32_t *ds = lb_cu_stage(slot, (size_t)n_tok * 2 * sizeof(int32_t));
    lb_cu_g.epoch++;
    if (!ds) return;
    lb_cu_rec r = rec_of(LB_CU_OP_KV_STORE);
    r.kv = kv_of(kv), r.p[0] = k, r.p[1] = v, r.p[2] = ds, r.i[0] = n_tok, r.i[1] = kv_dim;
    lb_cu_submit(&r);
}

#define SCORES_MAX ((size_t)64 << 20) /* bytes of attention scores one launch may use */
/* positions the scores' capacity grows by: the launch's arguments (score rows, table lengths)
 * stay the same for this many decode steps, so one graph serves them */
#define SCORES_STEP 256

/* The block tables travel with each call: pos[n_tok], offsets[n_tok], then each token's table,
 * every one cap_blocks long (the blocks of the capacity, the unused tail zero). */
/* A prompt chunk (PREFILL_MIN or more consecutive positions of one sequence) takes the tiled
 * kernel (lb_cu_attention_prefill) with LOWBIT_CUDA_ATTN=1; unset or 0 keeps the per-token
 * kernel. PREFILL_DEFAULT flips to on once test_cuda has passed with it on a GPU (it was written
 * in a session whose device time ran out before it could run: 2026-12-08). */
#define PREFILL_MIN 8
#define PREFILL_DEFAULT 0
static int prefill_batch(const lb_attn_batch *a) {
    static int off = -1;
    if (off < 0) {
        const char *e = getenv("LOWBIT_CUDA_ATTN");
        off = e && *e ? !strcmp(e, "0") : !PREFILL_DEFAULT;
    }
    if (off || a->n_tok < PREFILL_MIN || !lb_cu_attention_prefill_ok(a->head_dim)) return 0;
    for (int t = 1; t < a->n_tok; t++)
        if (a->blocks[t] != a->blocks[0] || a->pos[t] != a->pos[0] + t) return 0;
    return 1;
}

static void cu_attention(lb_pool *pool, const lb_attn_batch *a) {
    int n = a->n_tok, bt = a->kv.block_tokens, max_pos = 1;
    for (int t = 0; t < n; t++)
        if (a->pos[t] + 1 > max_pos) max_pos = a->pos[t] + 1;
    int cap = (max_pos + SCORES_STEP - 1) / SCORES_STEP * SCORES_STEP, cap_blocks = (cap - 1) / bt + 1;
    size_t words = 2 * (size_t)n + (size_t)n * cap_blocks;
    /* a long prompt chunk over a long context runs in slices of tokens, so the scores stay bounded */
    size_t per_tok = (size_t)a->n_heads * cap * sizeof(float);
    int slice = per_tok * n <= SCORES_MAX ? n : (int)(SCORES_MAX / per_tok > 0 ? SCORES_MAX / per_tok : 1);
    int32_t *idx = lb_cu_host_tmp(words * sizeof(int32_t));
    float *scores = lb_cu_scratch(LB_CU_SCRATCH_SCORES, (size_t)slice * per_tok);
    if (!idx || !scores) return;
    memset(idx, 0, words * sizeof(int32_t));
    for (int t = 0; t < n; t++) {
        idx[t] = a->pos[t];
        idx[n + t] = t * cap_blocks;
        memcpy(idx + 2 * (size_t)n + (size_t)t * cap_blocks, a->blocks[t], (size_t)(a->pos[t] / bt + 1) * sizeof(int32_t));
    }
    const int32_t *didx = lb_cu_stage(idx, words * sizeof(int32_t));
    lb_cu_g.epoch++;
    if (didx && prefill_batch(a)) {
        lb_cu_rec r = rec_of(LB_CU_OP_ATTN_PREFILL);
        r.kv = kv_of(&a->kv), r.p[0] = a->q, r.p[1] = a->out, r.p[2] = didx;
        int run[8] = {n, 0, n, a->n_heads, a->n_kv_heads, a->head_dim, cap, a->window};
        memcpy(r.i, run, sizeof run);
        lb_cu_submit(&r);
        return;
    }
    for (int t0 = 0; didx && t0 < n; t0 += slice) {
        lb_cu_rec r = rec_of(LB_CU_OP_ATTN);
        r.kv = kv_of(&a->kv), r.p[0] = a->q, r.p[1] = a->out, r.p[2] = didx, r.p[3] = scores;
        int run[8] = {n, t0, n - t0 < slice ? n - t0 : slice, a->n_heads, a->n_kv_heads, a->head_dim, cap, a->window};
        memcpy(r.i, run, sizeof run);
        lb_cu_submit(&r);
    }
}

static void cu_glu(float *gate, const float *up, size_t n, int act) {
    lb_cu_g.epoch++;
    lb_cu_rec r = rec_of(LB_CU_OP_GLU);
    r.p[0] = gate, r.p[1] = up, r.z = n, r.i[0] = act;
    if (n) lb_cu_submit(&r);
}

static void cu_add(float *y, const float *x, size_t n) {
    const float *dx = lb_cu_const(x, n * sizeof(float));
    lb_cu_g.epoch++;
    lb_cu_rec r = rec_of(LB_CU_OP_ADD);
    r.p[0] = y, r.p[1] = dx, r.z = n;
    if (dx && n) lb_cu_submit(&r);
}

static void cu_scale(float *y, float a, size_t n) {
    lb_cu_g.epoch++;
    lb_cu_rec r = rec_of(LB_CU_OP_SCALE);
    r.p[0] = y, r.f = a, r.z = n;
    if (n) lb_cu_submit(&r);
}

/* the forward pass's first op: a step starts here (cuda_graph.c) */
static lb_status cu_embed(const lb_tensor *t, int64_t r, float *out, lb_error *err) {
    lb_cu_step_begin();
    size_t bytes = (size_t)t->ne[0] * sizeof(float);
    float *row = lb_cu_host_tmp(bytes);
    if (!row) return lb_cu_status(err);
    lb_status st = lb_tensor_row_to_float(t, r, row, err);
    if (st) return st;
    lb_cu_g.epoch++;
    lb_cu_stage_to(out, row, bytes); /* a failure is kept in the state, reported below */
    return lb_cu_status(err);
}

static void cu_copy(void *dst, const void *src, size_t n) {
    lb_cu_g.epoch++;
    lb_cu_rec r = rec_of(LB_CU_OP_COPY);
    r.p[0] = dst, r.p[1] = src, r.z = n;
    if (n) lb_cu_submit(&r);
}

static const lb_backend g_cuda = {"cuda",     LB_BUF_DEVICE, cu_alloc,    cu_free, lb_cu_matmul, lb_cu_matmul_raw,
                                  cu_rmsnorm, cu_rope,       cu_kv_store, cu_attention, cu_glu, cu_add,
                                  cu_scale,   cu_embed,      cu_copy,     lb_cu_forget,
                                  NULL /* no matmul_shared: the graph makes one matmul per product */};

lb_status lb_backend_cuda(const lb_backend **out, lb_error *err) {
    *out = NULL;
    if (!lb_cu_g.ready) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess || n < 1)
            return lb_fail(err, LB_ERR_UNSUPPORTED, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaStreamCreate(&lb_cu_g.stream)) != cudaSuccess)
            return lb_fail(err, LB_ERR_IO, "CUDA: %s", cudaGetErrorString(e));
        if (cublasCreate(&lb_cu_g.blas) != CUBLAS_STATUS_SUCCESS) return lb_fail(err, LB_ERR_IO, "cannot start cuBLAS");
        cublasSetStream(lb_cu_g.blas, lb_cu_g.stream);
        lb_cu_g.ready = 1;
    }
    if (lb_cu_g.err != cudaSuccess) return lb_cu_status(err);
    *out = &g_cuda;
    return LB_OK;
}

lb_status lb_cuda_device_info(char *name, size_t cap, size_t *total_bytes, lb_error *err) {
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, 0);
    if (e != cudaSuccess) return lb_fail(err, LB_ERR_UNSUPPORTED, "no CUDA device: %s", cudaGetErrorString(e));
    if (name && cap) snprintf(name, cap, "%s", p.name);
    if (total_bytes) *total_bytes = p.totalGlobalMem;
    return LB_OK;
}
