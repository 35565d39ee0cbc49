/* The CPU backend: fills the op table (kernels/backend.h) from the kernels of src/kernels/cpu
 * and the block formats src/quant registers. Host buffers come from a memory tracker. */
#include <math.h>
#include <string.h>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/vec.h"
#include "mem/arena.h"
#include "quant/blocks.h"
#include "quant/quant.h"

static lb_status cpu_alloc(void *ctx, size_t bytes, const char *tag, lb_buf *out, lb_error *err) {
    out->data = lb_mem_alloc((lb_mem_tracker *)ctx, bytes ? bytes : 1, tag);
    out->bytes = bytes;
    out->loc = LB_BUF_HOST;
    if (!out->data) return lb_fail(err, LB_ERR_NOMEM, "cannot allocate %zu bytes for %s", bytes, tag);
    return LB_OK;
}

static void cpu_free(void *ctx, lb_buf *b) {
    if (!b->data) return;
    lb_mem_free((lb_mem_tracker *)ctx, b->data);
    b->data = NULL;
    b->bytes = 0;
}

static lb_status cpu_matmul(lb_pool *pool, const lb_tensor *w, int per_token_act, const float *x, int n_tok, float *y,
                            lb_error *err) {
    const lb_matmul_kernel *k;
    if (per_token_act && (k = lb_quant_kernel_per_token(w->type)))
        return lb_matmul_with(pool, k, w->type, w->data, w->ne[1], w->ne[0], x, n_tok, y, 0, err);
    return lb_matmul(pool, w, x, n_tok, y, err);
}

/* Each weight's kernel as cpu_matmul picks it; lb_matmul_tensors then quantizes x once per
 * activation format among them. */
static lb_status cpu_matmul_shared(lb_pool *pool, int n_w, const lb_tensor *const *ws, int per_token_act,
                                   const float *x, int n_tok, float *const *ys, lb_error *err) {
    const lb_matmul_kernel *kern[LB_MATMUL_SHARED_MAX] = {0};
    for (int i = 0; i < n_w && i < LB_MATMUL_SHARED_MAX; i++)
        kern[i] = per_token_act && ws[i] ? lb_quant_kernel_per_token(ws[i]->type) : NULL;
    return lb_matmul_tensors(pool, n_w, ws, kern, x, n_tok, ys, err);
}

static lb_status cpu_matmul_raw(lb_pool *pool, lb_dtype type, const void *w, int64_t rows, int64_t k, const float *x,
                                int n_tok, float *y, lb_error *err) {
    return lb_matmul_raw(pool, type, w, rows, k, x, n_tok, y, err);
}

static void cpu_rmsnorm(float *out, const float *x, const float *w, int n_tok, int n, float eps) {
    for (int t = 0; t < n_tok; t++) lb_rmsnorm(out + (size_t)t * n, x + (size_t)t * n, w, n, eps);
}

static void cpu_rope(float *x, int n_tok, int n_heads, int hd, size_t row_stride, const float *cs_all, int layout) {
    int half = hd / 2;
    for (int t = 0; t < n_tok; t++) {
        const float *cs = cs_all + (size_t)t * hd, *sn = cs + half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * row_stride + (size_t)h * hd;
            if (layout) { /* halves (NEOX) */
                for (int i = 0; i < half; i++) {
                    float x0 = v[i], x1 = v[i + half];
                    v[i] = x0 * cs[i] - x1 * sn[i];
                    v[i + half] = x0 * sn[i] + x1 * cs[i];
                }
            } else { /* adjacent pairs */
                for (int i = 0; i < half; i++) {
                    float x0 = v[2 * i], x1 = v[2 * i + 1];
                    v[2 * i] = x0 * cs[i] - x1 * sn[i];
                    v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
                }
            }
        }
    }
}

static void store_row(int kv_type, const float *src, uint8_t *dst, int n) {
    if (kv_type == LB_KV_Q8_0) {
        lb_quantize_row_q8_0(src, dst, n); /* heads are consecutive and whole blocks */
    } else if (kv_type == LB_KV_Q4_0) {
        lb_kv_quantize_q4_0(src, dst, n);
    } else if (kv_type == LB_KV_F16) {
        uint16_t *d = (uint16_t *)(void *)dst;
        for (int i = 0; i < n; i++) d[i] = lb_f32_to_fp16(src[i]);
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

static void cpu_kv_store(const lb_kv_view *kv, const float *k, const float *v, int n_tok, int kv_dim,
                         const int32_t *blk, const int32_t *off) {
    for (int t = 0; t < n_tok; t++) {
        uint8_t *b = kv->base + (size_t)blk[t] * kv->block_bytes + (size_t)off[t] * kv->row_bytes;
        store_row(kv->kv_type, k + (size_t)t * kv_dim, b + kv->k_off, kv_dim);
        store_row(kv->kv_type, v + (size_t)t * kv_dim, b + kv->v_off, kv_dim);
    }
}

/* One (token, head) pair at a time: scores against the sequence's positions block by block,
 * one softmax over all of them, then the weighted values block by block. A sliding window
 * starts the walk at its first position (mid-block); without one, or while the window still
 * covers position 0, the runs and sums are exactly those of plain causal attention. */
static void attn_worker(void *arg, int ith, int nth) {
    const lb_attn_batch *a = arg;
    const lb_kv_view *kv = &a->kv;
    int hd = a->head_dim, q_dim = a->n_heads * hd, group = a->n_heads / a->n_kv_heads, bt = kv->block_tokens;
    float scale = 1.0f / sqrtf((float)hd);
    float *att = a->att + (size_t)ith * a->att_stride;
    float *tmp = a->tmp + (size_t)ith * hd;
    const lb_vec_ops *ops = lb_vec_ops_get();
    int total = a->n_tok * a->n_heads;
    for (int w = ith; w < total; w += nth) {
        int t = w / a->n_heads, h = w % a->n_heads, kvh = h / group;
        int n_pos = a->pos[t] + 1, lo = lb_attn_first(a->pos[t], a->window);
        const int32_t *blocks = a->blocks[t];
        const float *q = a->q + (size_t)t * q_dim + (size_t)h * hd;
        float *out = a->out + (size_t)t * q_dim + (size_t)h * hd;
        size_t head = (size_t)kvh * kv->head_bytes;
        /* att[i] is position lo + i; a run is the rest of one block */
        for (int p0 = lo, n; p0 < n_pos; p0 += n) {
            n = bt - p0 % bt < n_pos - p0 ? bt - p0 % bt : n_pos - p0;
            const uint8_t *b = kv->base + (size_t)blocks[p0 / bt] * kv->block_bytes + (size_t)(p0 % bt) * kv->row_bytes;
            ops->attn_scores(att + (p0 - lo), q, b + kv->k_off + head, kv->kv_type, kv->row_bytes, n, hd, scale);
        }
        lb_softmax(att, n_pos - lo);
        for (int p0 = lo, n; p0 < n_pos; p0 += n) {
            n = bt - p0 % bt < n_pos - p0 ? bt - p0 % bt : n_pos - p0;
            const uint8_t *b = kv->base + (size_t)blocks[p0 / bt] * kv->block_bytes + (size_t)(p0 % bt) * kv->row_bytes;
            const uint8_t *vb = b + kv->v_off + head;
            const float *w = att + (p0 - lo);
            if (p0 == lo) {
                lb_attn_values(out, w, vb, kv->kv_type, kv->row_bytes, n, hd);
            } else if (kv->kv_type == LB_KV_F32) { /* the same sums as one contiguous run */
                for (int p = 0; p < n; p++) ops->axpy(out, w[p], (const float *)(const void *)(vb + p * kv->row_bytes), hd);
            } else if (kv->kv_type == LB_KV_F16) {
                for (int p = 0; p < n; p++)
                    ops->axpy_f16(out, w[p], (const uint16_t *)(const void *)(vb + p * kv->row_bytes), hd);
            } else {
                lb_attn_values(tmp, w, vb, kv->kv_type, kv->row_bytes, n, hd);
                lb_vec_add(out, tmp, hd);
            }
        }
    }
}

static void cpu_attention(lb_pool *pool, const lb_attn_batch *a) {
    /* waking a thread costs about as much as a few thousand multiply-adds */
    double work = 0;
    for (int t = 0; t < a->n_tok; t++) work += (double)(a->pos[t] + 1 - lb_attn_first(a->pos[t], a->window));
    work *= (double)a->n_heads * a->head_dim * 2;
    int nth = work < 65536 ? 1 : lb_pool_size(pool);
    lb_pool_run_n(pool, attn_worker, (void *)a, nth);
}

static void cpu_glu(float *gate, const float *up, size_t n, int act) {
    if (act == 1) lb_relu2_mul(gate, up, (int64_t)n);
    else lb_silu_mul(gate, up, (int64_t)n);
}

static void cpu_add(float *y, const float *x, size_t n) { lb_vec_add(y, x, (int64_t)n); }
static void cpu_scale(float *y, float a, size_t n) { lb_vec_scale(y, a, (int64_t)n); }
static lb_status cpu_embed(const lb_tensor *t, int64_t r, float *out, lb_error *err) {
    return lb_tensor_row_to_float(t, r, out, err);
}
static void cpu_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }

static const lb_backend g_cpu = {"cpu",        LB_BUF_HOST, cpu_alloc,     cpu_free, cpu_matmul, cpu_matmul_raw,
                                 cpu_rmsnorm,  cpu_rope,    cpu_kv_store,  cpu_attention, cpu_glu, cpu_add,
                                 cpu_scale,    cpu_embed,   cpu_copy,      NULL,          cpu_matmul_shared};

const lb_backend *lb_backend_cpu(void) { return &g_cpu; }
