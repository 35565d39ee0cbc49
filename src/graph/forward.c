/* The decoder forward pass for Llama-family models (Llama 2/3, Mistral, Qwen2, BitNet in full
 * precision). Kept in the spirit of llama2.c's run.c: one function per step, plain buffers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "graph/act_quant.h"
#include "graph/rope.h"
#include "graph/session.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/vec.h"
#include "mem/arena.h"
#include "quant/blocks.h"
#include "quant/quant.h"

lb_session_params lb_session_default_params(void) {
    lb_session_params p = {0, 0, LB_KV_F32};
    return p;
}

/* Bytes of one KV head's row (head_dim elements); 0 when the type cannot hold it. */
static size_t kv_head_bytes(int head_dim, lb_kv_type t) {
    if (t == LB_KV_Q8_0) return head_dim % LB_QK ? 0 : (size_t)head_dim / LB_QK * sizeof(lb_block_q8_0);
    return (size_t)head_dim * (t == LB_KV_F16 ? 2 : 4);
}

size_t lb_session_kv_bytes_per_token(const lb_model *m, lb_kv_type t) {
    const lb_config *c = &m->cfg;
    return (size_t)2 * c->n_layers * c->n_kv_heads * kv_head_bytes(c->head_dim, t);
}

/* Activations, scores and logits need no zeroing: every element is written before it is read. */
static float *scratch(lb_session *s, size_t n, const char *tag) {
    float *p = lb_mem_alloc(s->mem, n * sizeof(float), tag);
    if (p) s->scratch_bytes += n * sizeof(float);
    return p;
}

void lb_session_scratch_plan(const lb_model *m, int n_threads, size_t *fixed, size_t *per_token) {
    const lb_config *c = &m->cfg;
    size_t B = LB_MAX_BATCH, q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim;
    /* mirrors the scratch() calls in lb_session_new */
    size_t floats = B * (2 * (size_t)c->dim + wide + 2 * q_dim + 2 * kv_dim + 2 * (size_t)c->hidden_dim) +
                    (size_t)c->n_vocab + (size_t)c->head_dim / 2 + B * (size_t)c->head_dim;
    *fixed = floats * sizeof(float);
    *per_token = (size_t)(n_threads > 0 ? n_threads : 1) * sizeof(float);
}

lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out, lb_error *err) {
    lb_session_params d = lb_session_default_params();
    if (!p) p = &d;
    const lb_config *c = &m->cfg;
    int n_ctx = p->n_ctx;
    if (n_ctx <= 0) n_ctx = c->ctx_train > 0 && c->ctx_train < 4096 ? c->ctx_train : 4096;
    if (n_ctx > (1 << 24)) return lb_fail(err, LB_ERR_ARG, "context of %d tokens is too large", n_ctx);
    if (p->kv_type != LB_KV_F32 && p->kv_type != LB_KV_F16 && p->kv_type != LB_KV_Q8_0)
        return lb_fail(err, LB_ERR_ARG, "unknown KV cache type %d", (int)p->kv_type);
    if (!kv_head_bytes(c->head_dim, p->kv_type))
        return lb_fail(err, LB_ERR_UNSUPPORTED, "a Q8_0 KV cache needs head_dim a multiple of %d; this model's head_dim is %d",
                       LB_QK, c->head_dim);
    lb_session *s = calloc(1, sizeof *s);
    if (!s) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv_type = p->kv_type;
    s->kv_head_bytes = kv_head_bytes(c->head_dim, p->kv_type);
    s->pool = lb_pool_new(p->n_threads);
    if (!s->pool || lb_mem_tracker_new(0, &s->mem, err)) {
        lb_pool_free(s->pool);
        free(s);
        return lb_fail(err, LB_ERR_NOMEM, "cannot start threads or the memory tracker");
    }
    s->n_threads = lb_pool_size(s->pool);
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    size_t kv_half = (size_t)c->n_layers * n_ctx * c->n_kv_heads * s->kv_head_bytes; /* K or V */
    s->kv_bytes = 2 * kv_half;
    /* not zeroed: attention reads only positions already stored, so pages of the cache become
     * resident as the context fills */
    s->k_cache = lb_mem_alloc(s->mem, kv_half, "kv");
    s->v_cache = lb_mem_alloc(s->mem, kv_half, "kv");
    int B = LB_MAX_BATCH, wide = q_dim > c->dim ? q_dim : c->dim;
    s->x = scratch(s, (size_t)B * c->dim, "scratch");
    s->xb = scratch(s, (size_t)B * wide, "scratch");
    s->xb2 = scratch(s, (size_t)B * c->dim, "scratch");
    s->q = scratch(s, (size_t)B * q_dim, "scratch");
    s->k = scratch(s, (size_t)B * kv_dim, "scratch");
    s->v = scratch(s, (size_t)B * kv_dim, "scratch");
    s->att_out = scratch(s, (size_t)B * q_dim, "scratch");
    s->hb = scratch(s, (size_t)B * c->hidden_dim, "scratch");
    s->hb2 = scratch(s, (size_t)B * c->hidden_dim, "scratch");
    s->logits = scratch(s, (size_t)c->n_vocab, "logits");
    s->att = scratch(s, (size_t)s->n_threads * n_ctx, "attention");
    s->inv_freq = scratch(s, (size_t)c->head_dim / 2, "scratch");
    s->rope_cs = scratch(s, (size_t)B * c->head_dim, "scratch");
    if (!s->k_cache || !s->v_cache || !s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->att_out ||
        !s->hb || !s->hb2 || !s->logits || !s->att || !s->inv_freq || !s->rope_cs) {
        lb_session_free(s);
        return lb_fail(err, LB_ERR_NOMEM, "cannot allocate the KV cache (%zu bytes) and buffers for %d tokens",
                       2 * kv_half, n_ctx);
    }
    lb_rope_inv_freq(c, m->rope_freqs ? m->rope_freqs->data : NULL, s->inv_freq);
    *out = s;
    return LB_OK;
}

void lb_session_free(lb_session *s) {
    if (!s) return;
    lb_pool_free(s->pool);
    void *bufs[] = {s->k_cache, s->v_cache, s->x, s->xb, s->xb2, s->q, s->k, s->v, s->att_out, s->hb, s->hb2, s->logits, s->att, s->inv_freq, s->rope_cs};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) lb_mem_free(s->mem, bufs[i]);
    lb_mem_tracker_free(s->mem); /* in debug mode, reports anything never freed */
    free(s);
}

void lb_session_reset(lb_session *s) { s->n_past = 0; }
int lb_session_n_past(const lb_session *s) { return s->n_past; }
int lb_session_n_ctx(const lb_session *s) { return s->n_ctx; }
int lb_session_n_threads(const lb_session *s) { return s->n_threads; }
size_t lb_session_kv_bytes(const lb_session *s) { return s->kv_bytes; }
size_t lb_session_scratch_bytes(const lb_session *s) { return s->scratch_bytes; }
const lb_mem_tracker *lb_session_mem_tracker(const lb_session *s) { return s->mem; }

/* ---- attention ------------------------------------------------------------------------ */

typedef struct attn_job {
    lb_session *s;
    int layer, n_tok, pos0;
} attn_job;

/* One (token, head) pair at a time: scores against every cached position up to the token's
 * own, softmax, weighted sum of values. */
static void attn_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    lb_session *s = j->s;
    const lb_config *c = &s->m->cfg;
    int hd = c->head_dim, q_dim = c->n_heads * hd;
    int group = c->n_heads / c->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    size_t row = (size_t)c->n_kv_heads * s->kv_head_bytes; /* one position, all KV heads */
    size_t layer_off = (size_t)j->layer * s->n_ctx * row;
    float *att = s->att + (size_t)ith * s->n_ctx;
    int total = j->n_tok * c->n_heads;
    for (int w = ith; w < total; w += nth) {
        int t = w / c->n_heads, h = w % c->n_heads, kvh = h / group;
        int pos = j->pos0 + t;
        const float *q = s->q + (size_t)t * q_dim + (size_t)h * hd;
        float *out = s->att_out + (size_t)t * q_dim + (size_t)h * hd;
        size_t off = layer_off + (size_t)kvh * s->kv_head_bytes;
        const void *kc = (const char *)s->k_cache + off, *vc = (const char *)s->v_cache + off;
        lb_attn_scores(att, q, kc, (int)s->kv_type, row, pos + 1, hd, scale);
        lb_softmax(att, pos + 1);
        lb_attn_values(out, att, vc, (int)s->kv_type, row, pos + 1, hd);
    }
}

static void store_kv(lb_session *s, int layer, int n_tok, int pos0) {
    const lb_config *c = &s->m->cfg;
    int kv_dim = c->n_kv_heads * c->head_dim;
    size_t row = (size_t)c->n_kv_heads * s->kv_head_bytes;
    for (int t = 0; t < n_tok; t++) {
        size_t off = ((size_t)layer * s->n_ctx + pos0 + t) * row; /* bytes */
        const float *k = s->k + (size_t)t * kv_dim, *v = s->v + (size_t)t * kv_dim;
        char *kb = (char *)s->k_cache + off, *vb = (char *)s->v_cache + off;
        if (s->kv_type == LB_KV_Q8_0) {
            /* heads are consecutive and each is whole blocks, so one call covers the row */
            lb_quantize_row_q8_0(k, kb, kv_dim);
            lb_quantize_row_q8_0(v, vb, kv_dim);
        } else if (s->kv_type == LB_KV_F16) {
            uint16_t *kc = (uint16_t *)(void *)kb, *vc = (uint16_t *)(void *)vb;
            for (int i = 0; i < kv_dim; i++) {
                kc[i] = lb_f32_to_fp16(k[i]);
                vc[i] = lb_f32_to_fp16(v[i]);
            }
        } else {
            memcpy(kb, k, (size_t)kv_dim * sizeof(float));
            memcpy(vb, v, (size_t)kv_dim * sizeof(float));
        }
    }
}

/* ---- the block ----------------------------------------------------------------------- */

/* Linear layer. BitNet's ternary layers quantize their input per token, as the model was
 * trained to; everything else takes the dtype's own kernel. */
static lb_status linear_raw(lb_session *s, const lb_tensor *w, const float *x, int n_tok, float *y, lb_error *err) {
    const lb_matmul_kernel *k;
    if (s->m->cfg.arch == LB_ARCH_BITNET && (k = lb_quant_kernel_per_token(w->type)))
        return lb_matmul_with(s->pool, k, w->type, w->data, w->ne[1], w->ne[0], x, n_tok, y, 0, err);
    return lb_matmul(s->pool, w, x, n_tok, y, err);
}

/* scale: NULL or the weight's one-element output scale (blk.N.*.scale) */
static lb_status linear_s(lb_session *s, const lb_tensor *w, const lb_tensor *scale, const float *x, int n_tok, float *y,
                          lb_error *err) {
    lb_status st = linear_raw(s, w, x, n_tok, y, err);
    if (st || !scale) return st;
    float g = ((const float *)scale->data)[0];
    size_t n = (size_t)n_tok * (size_t)w->ne[1];
    for (size_t i = 0; i < n; i++) y[i] *= g;
    return LB_OK;
}

static void add_bias(float *y, const lb_tensor *b, int n_tok, int n) {
    if (!b) return;
    for (int t = 0; t < n_tok; t++) lb_vec_add(y + (size_t)t * n, b->data, n);
}

static void rmsnorm_rows(float *out, const float *x, const lb_tensor *w, int n_tok, int n, float eps) {
    for (int t = 0; t < n_tok; t++) lb_rmsnorm(out + (size_t)t * n, x + (size_t)t * n, w->data, n, eps);
}

/* The projection back into the residual stream, shared by attention (wo) and the FFN (down):
 * BitNet's sub-norm (into tmp), BitLinear's int8 input, the matmul, the residual add. */
static lb_status project_add(lb_session *s, float *in, float *tmp, const lb_tensor *sub_norm, int n, const lb_tensor *w,
                             const lb_tensor *w_s, int n_tok, lb_error *err) {
    const lb_config *c = &s->m->cfg;
    if (sub_norm) {
        rmsnorm_rows(tmp, in, sub_norm, n_tok, n, c->norm_eps);
        in = tmp;
    }
    if (c->act_quant_int8) lb_act_quant_int8_rows(in, n_tok, n);
    lb_status st = linear_s(s, w, w_s, in, n_tok, s->xb2, err);
    if (st) return st;
    for (int t = 0; t < n_tok; t++) lb_vec_add(s->x + (size_t)t * c->dim, s->xb2 + (size_t)t * c->dim, c->dim);
    return LB_OK;
}

static lb_status layer_forward(lb_session *s, int l, int n_tok, int pos0, lb_error *err) {
    const lb_config *c = &s->m->cfg;
    const lb_layer_weights *w = &s->m->layers[l];
    int dim = c->dim, hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd, hid = c->hidden_dim;
    lb_status st;

    rmsnorm_rows(s->xb, s->x, w->attn_norm, n_tok, dim, c->norm_eps);
    if (c->act_quant_int8) lb_act_quant_int8_rows(s->xb, n_tok, dim);
    if ((st = linear_s(s, w->wq, w->wq_s, s->xb, n_tok, s->q, err))) return st;
    if ((st = linear_s(s, w->wk, w->wk_s, s->xb, n_tok, s->k, err))) return st;
    if ((st = linear_s(s, w->wv, w->wv_s, s->xb, n_tok, s->v, err))) return st;
    add_bias(s->q, w->bq, n_tok, q_dim);
    add_bias(s->k, w->bk, n_tok, kv_dim);
    add_bias(s->v, w->bv, n_tok, kv_dim);
    for (int t = 0; t < n_tok; t++) {
        const float *cs = s->rope_cs + (size_t)t * hd;
        lb_rope_apply(s->q + (size_t)t * q_dim, c->n_heads, hd, cs, c->rope_layout);
        lb_rope_apply(s->k + (size_t)t * kv_dim, c->n_kv_heads, hd, cs, c->rope_layout);
    }
    store_kv(s, l, n_tok, pos0);
    attn_job job = {s, l, n_tok, pos0};
    /* waking a thread costs about as much as a few thousand multiply-adds */
    double work = (double)n_tok * c->n_heads * (pos0 + n_tok) * hd * 2;
    int nth = work < 65536 ? 1 : lb_pool_size(s->pool);
    lb_pool_run_n(s->pool, attn_worker, &job, nth);
    if ((st = project_add(s, s->att_out, s->xb, w->attn_sub_norm, q_dim, w->wo, w->wo_s, n_tok, err))) return st;

    rmsnorm_rows(s->xb, s->x, w->ffn_norm, n_tok, dim, c->norm_eps);
    if (c->act_quant_int8) lb_act_quant_int8_rows(s->xb, n_tok, dim);
    if ((st = linear_s(s, w->w_gate, w->w_gate_s, s->xb, n_tok, s->hb, err))) return st;
    if ((st = linear_s(s, w->w_up, w->w_up_s, s->xb, n_tok, s->hb2, err))) return st;
    for (int t = 0; t < n_tok; t++) {
        float *g = s->hb + (size_t)t * hid, *u = s->hb2 + (size_t)t * hid;
        if (c->act == LB_ACT_RELU2) lb_relu2_mul(g, u, hid);
        else lb_silu_mul(g, u, hid);
    }
    return project_add(s, s->hb, s->hb2, w->ffn_sub_norm, hid, w->w_down, w->w_down_s, n_tok, err);
}

/* Runs up to LB_MAX_BATCH tokens; logits for the chunk's last token (or all rows into out). */
static lb_status eval_chunk(lb_session *s, const int32_t *ids, int n_tok, float *all_out, int want_last,
                            lb_error *err) {
    lb_model *m = s->m;
    const lb_config *c = &m->cfg;
    int pos0 = s->n_past;
    for (int t = 0; t < n_tok; t++) {
        if (ids[t] < 0 || ids[t] >= c->n_vocab)
            return lb_fail(err, LB_ERR_RANGE, "token id %d is outside the vocabulary (0..%d)", ids[t], c->n_vocab - 1);
        lb_status st = lb_tensor_row_to_float(m->tok_embd, ids[t], s->x + (size_t)t * c->dim, err);
        if (st) return st;
    }
    for (int t = 0; t < n_tok; t++) lb_rope_table(s->inv_freq, c->head_dim / 2, pos0 + t, s->rope_cs + (size_t)t * c->head_dim);
    for (int l = 0; l < c->n_layers; l++) {
        lb_status st = layer_forward(s, l, n_tok, pos0, err);
        if (st) return st;
    }
    s->n_past += n_tok;
    if (!all_out && !want_last) return LB_OK; /* an earlier chunk of a long prompt needs no logits */
    int first = all_out ? 0 : n_tok - 1, rows = n_tok - first;
    rmsnorm_rows(s->xb, s->x + (size_t)first * c->dim, m->output_norm, rows, c->dim, c->norm_eps);
    return lb_matmul(s->pool, m->output, s->xb, rows, all_out ? all_out : s->logits, err);
}

lb_status lb_session_eval(lb_session *s, const int32_t *ids, size_t n_ids, float *logits, int all_logits,
                          lb_error *err) {
    if (n_ids == 0) return lb_fail(err, LB_ERR_ARG, "no tokens to evaluate");
    if ((size_t)s->n_past + n_ids > (size_t)s->n_ctx)
        return lb_fail(err, LB_ERR_RANGE, "context is full: %d + %zu tokens exceed the context of %d", s->n_past,
                       n_ids, s->n_ctx);
    int nv = s->m->cfg.n_vocab;
    for (size_t i = 0; i < n_ids; i += LB_MAX_BATCH) {
        int n = n_ids - i < LB_MAX_BATCH ? (int)(n_ids - i) : LB_MAX_BATCH;
        float *rows = all_logits && logits ? logits + i * (size_t)nv : NULL;
        lb_status st = eval_chunk(s, ids + i, n, rows, logits && i + n == n_ids, err);
        if (st) return st;
    }
    if (logits && !all_logits) memcpy(logits, s->logits, (size_t)nv * sizeof(float));
    return LB_OK;
}
