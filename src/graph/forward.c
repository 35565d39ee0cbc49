/* The decoder forward pass for Llama-family models (Llama 2/3, Mistral, Qwen2, BitNet in full
 * precision) over a batch of tokens of many sequences. Kept in the spirit of llama2.c's run.c:
 * one function per step, plain buffers; every op is a call through the backend table. */
#include "graph/forward.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "graph/act_quant.h"
#include "graph/rope.h"

static int wide_in(const lb_config *c) {
    int q_dim = c->n_heads * c->head_dim, w = c->dim;
    if (q_dim > w) w = q_dim;
    if (c->hidden_dim > w) w = c->hidden_dim;
    return w;
}

/* per batch token: the blocks and fine-tune pointers, pos, blk, off (int32); then the
 * attention's per-thread value buffers */
static size_t idx_bytes(int B, int nth, int hd) {
    return (size_t)B * (3 * sizeof(int32_t) + sizeof(int32_t *) + sizeof(lb_finetune *)) + (size_t)nth * hd * sizeof(float);
}

void lb_fwd_scratch_plan(const lb_model *m, int n_threads, int B, size_t *fixed, size_t *per_seq_token) {
    const lb_config *c = &m->cfg;
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim, nth = n_threads > 0 ? (size_t)n_threads : 1;
    /* mirrors the buffers of lb_fwd_init */
    size_t floats = (size_t)B * (2 * (size_t)c->dim + wide + 2 * q_dim + 2 * kv_dim + 2 * (size_t)c->hidden_dim) +
                    (size_t)c->head_dim / 2 + (size_t)B * c->head_dim;
    *fixed = floats * sizeof(float) + idx_bytes(B, (int)nth, c->head_dim);
    *per_seq_token = nth * sizeof(float);
}

static lb_status buf(lb_fwd *f, lb_buf *b, size_t bytes, const char *tag, lb_error *err) {
    lb_status st = f->be->alloc(f->be_ctx, bytes, tag, b, err);
    if (!st) f->scratch_bytes += bytes;
    return st;
}

/* Tables the host fills for every call (positions, slots, RoPE cos/sin) stay in host memory
 * whatever the backend: the ops that read them take host pointers. */
static lb_status host_buf(lb_fwd *f, lb_buf *b, size_t bytes, const char *tag, lb_error *err) {
    lb_status st = lb_backend_cpu()->alloc(f->be_ctx, bytes, tag, b, err);
    if (!st) f->scratch_bytes += bytes;
    return st;
}

lb_status lb_fwd_init(lb_fwd *f, lb_model *m, const lb_backend *be, void *be_ctx, lb_pool *pool, lb_kv_cache *kv,
                      int B, int max_seq, lb_error *err) {
    memset(f, 0, sizeof *f);
    const lb_config *c = &m->cfg;
    f->m = m;
    f->be = be;
    f->be_ctx = be_ctx;
    f->pool = pool;
    f->kv = kv;
    f->max_batch = B;
    f->max_seq = max_seq;
    f->n_threads = lb_pool_size(pool);
    size_t F = sizeof(float), q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim;
    f->att_stride = (size_t)max_seq;
    lb_status st;
    if ((st = buf(f, &f->x, B * c->dim * F, "scratch", err)) || (st = buf(f, &f->xb, B * wide * F, "scratch", err)) ||
        (st = buf(f, &f->xb2, B * c->dim * F, "scratch", err)) || (st = buf(f, &f->q, B * q_dim * F, "scratch", err)) ||
        (st = buf(f, &f->k, B * kv_dim * F, "scratch", err)) || (st = buf(f, &f->v, B * kv_dim * F, "scratch", err)) ||
        (st = buf(f, &f->att_out, B * q_dim * F, "scratch", err)) ||
        (st = buf(f, &f->hb, (size_t)B * c->hidden_dim * F, "scratch", err)) ||
        (st = buf(f, &f->hb2, (size_t)B * c->hidden_dim * F, "scratch", err)) ||
        (st = buf(f, &f->att, (size_t)f->n_threads * f->att_stride * F, "attention", err)) ||
        (st = host_buf(f, &f->inv_freq, (size_t)c->head_dim / 2 * F, "scratch", err)) ||
        (st = host_buf(f, &f->rope_cs, (size_t)B * c->head_dim * F, "scratch", err)) ||
        (st = host_buf(f, &f->idx, idx_bytes(B, f->n_threads, c->head_dim), "scratch", err))) {
        lb_fwd_free(f);
        return st;
    }
    /* pointers first: they need the strictest alignment */
    f->blocks = (const int32_t **)f->idx.data;
    f->ft = (const lb_finetune **)(void *)(f->blocks + B);
    f->pos = (int32_t *)(void *)(f->ft + B);
    f->blk = f->pos + B;
    f->off = f->blk + B;
    f->att_tmp = (float *)(void *)(f->off + B);
    lb_rope_inv_freq(c, m->rope_freqs ? m->rope_freqs->data : NULL, f->inv_freq.data);
    return LB_OK;
}

void lb_fwd_free(lb_fwd *f) {
    lb_buf *bufs[] = {&f->x, &f->xb, &f->xb2, &f->q, &f->k, &f->v, &f->att_out, &f->hb, &f->hb2, &f->att, &f->dx, &f->dy};
    lb_buf *host[] = {&f->inv_freq, &f->rope_cs, &f->idx};
    if (!f->be) return;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) f->be->free(f->be_ctx, bufs[i]);
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) lb_backend_cpu()->free(f->be_ctx, host[i]);
}

size_t lb_fwd_finetune_scratch_plan(const lb_model *m, int B) {
    const lb_config *c = &m->cfg;
    size_t out = (size_t)(c->n_vocab > wide_in(c) ? c->n_vocab : wide_in(c));
    return (size_t)B * ((size_t)wide_in(c) + out) * sizeof(float); /* dx and dy, as below */
}

lb_status lb_fwd_enable_finetunes(lb_fwd *f, lb_error *err) {
    if (f->dx.data) return LB_OK;
    const lb_config *c = &f->m->cfg;
    size_t out = (size_t)(c->n_vocab > wide_in(c) ? c->n_vocab : wide_in(c));
    lb_status st = f->be->alloc(f->be_ctx, (size_t)f->max_batch * wide_in(c) * sizeof(float), "finetune", &f->dx, err);
    if (!st) st = f->be->alloc(f->be_ctx, (size_t)f->max_batch * out * sizeof(float), "finetune", &f->dy, err);
    return st;
}

/* ---- fine-tune corrections ------------------------------------------------------------- */

static const float *fix_of(const lb_fwd *f, const lb_finetune *ft, const lb_tensor *w) {
    if (!ft || !w) return NULL;
    size_t i = (size_t)(w - f->m->tensors);
    return w >= f->m->tensors && i < ft->n ? ft->fix[i] : NULL;
}

/* y[t] += dW x[t] for each token whose fine-tune changes w, one product per fine-tune over its
 * own tokens (gathered into dx / dy). */
static lb_status corrections(lb_fwd *f, const lb_tensor *w, const float *x, int n, float *y, lb_error *err) {
    int64_t k = w->ne[0], rows = lb_tensor_nrows(w);
    for (int t = 0; t < n; t++) {
        const float *dw = fix_of(f, f->ft[t], w);
        int first = 1;
        for (int u = 0; u < t && first; u++) first = f->ft[u] != f->ft[t];
        if (!dw || !first) continue;
        float *dx = f->dx.data, *dy = f->dy.data;
        int cnt = 0;
        for (int u = t; u < n; u++)
            if (f->ft[u] == f->ft[t]) f->be->copy(dx + (size_t)cnt++ * k, x + (size_t)u * k, (size_t)k * sizeof(float));
        lb_status st = f->be->matmul_raw(f->pool, LB_F32, dw, rows, k, dx, cnt, dy, err);
        if (st) return st;
        cnt = 0;
        for (int u = t; u < n; u++)
            if (f->ft[u] == f->ft[t]) f->be->add(y + (size_t)u * rows, dy + (size_t)cnt++ * rows, (size_t)rows);
    }
    return LB_OK;
}

/* ---- the block ----------------------------------------------------------------------- */

/* What follows a linear layer's base product: each fine-tune's correction for its own tokens,
 * the optional one-element output scale (blk.N.*.scale), the optional bias. */
static lb_status finish(lb_fwd *f, const lb_tensor *w, const lb_tensor *scale, const lb_tensor *bias, const float *x,
                        int n, float *y, lb_error *err) {
    const lb_backend *be = f->be;
    lb_status st = f->dx.data ? corrections(f, w, x, n, y, err) : LB_OK;
    if (st) return st;
    size_t rows = (size_t)lb_tensor_nrows(w);
    if (scale) be->scale(y, ((const float *)scale->data)[0], (size_t)n * rows);
    if (bias)
        for (int t = 0; t < n; t++) {
            const float *b = fix_of(f, f->ft[t], bias);
            be->add(y + (size_t)t * rows, b ? b : bias->data, rows);
        }
    return LB_OK;
}

/* Linear layer: the base product for every token at once, then finish. BitNet's ternary layers
 * quantize their input per token, as the model was trained to. */
static lb_status linear(lb_fwd *f, const lb_tensor *w, const lb_tensor *scale, const lb_tensor *bias, const float *x,
                        int n, float *y, lb_error *err) {
    if (f->on_matmul) f->on_matmul(f->on_matmul_user, w, x, n);
    lb_status st = f->be->matmul(f->pool, w, f->m->cfg.arch == LB_ARCH_BITNET, x, n, y, err);
    return st ? st : finish(f, w, scale, bias, x, n, y, err);
}

/* The nw linear layers reading the same x (q/k/v, gate/up): one shared product, so the
 * backend quantizes x once per activation format, then each layer's finish. */
static lb_status linear_shared(lb_fwd *f, int nw, const lb_tensor *const *w, const lb_tensor *const *scale,
                               const lb_tensor *const *bias, const float *x, int n, float *const *y, lb_error *err) {
    lb_status st = LB_OK;
    if (!f->be->matmul_shared) {
        for (int i = 0; i < nw && !st; i++) st = linear(f, w[i], scale[i], bias[i], x, n, y[i], err);
        return st;
    }
    for (int i = 0; i < nw; i++)
        if (f->on_matmul) f->on_matmul(f->on_matmul_user, w[i], x, n);
    st = f->be->matmul_shared(f->pool, nw, w, f->m->cfg.arch == LB_ARCH_BITNET, x, n, y, err);
    for (int i = 0; i < nw && !st; i++) st = finish(f, w[i], scale[i], bias[i], x, n, y[i], err);
    return st;
}

/* RMSNorm of n rows; each token's fine-tune may bring its own weights */
static void norm(lb_fwd *f, float *out, const float *x, const lb_tensor *w, int n_tok, int n) {
    float eps = f->m->cfg.norm_eps;
    if (!f->dx.data) {
        f->be->rmsnorm(out, x, w->data, n_tok, n, eps);
        return;
    }
    for (int t = 0; t < n_tok; t++) {
        const float *fw = fix_of(f, f->ft[t], w);
        f->be->rmsnorm(out + (size_t)t * n, x + (size_t)t * n, fw ? fw : w->data, 1, n, eps);
    }
}

/* The projection back into the residual stream, shared by attention (wo) and the FFN (down):
 * BitNet's sub-norm (into tmp), BitLinear's int8 input, the matmul, the residual add. */
static lb_status project_add(lb_fwd *f, float *in, float *tmp, const lb_tensor *sub_norm, int n, const lb_tensor *w,
                             const lb_tensor *w_s, int n_tok, lb_error *err) {
    const lb_config *c = &f->m->cfg;
    if (sub_norm) {
        norm(f, tmp, in, sub_norm, n_tok, n);
        in = tmp;
    }
    if (c->act_quant_int8) lb_act_quant_int8_rows(in, n_tok, n);
    lb_status st = linear(f, w, w_s, NULL, in, n_tok, f->xb2.data, err);
    if (!st) f->be->add(f->x.data, f->xb2.data, (size_t)n_tok * c->dim);
    return st;
}

static lb_status layer_forward(lb_fwd *f, int l, int n_tok, lb_error *err) {
    const lb_config *c = &f->m->cfg;
    const lb_layer_weights *w = &f->m->layers[l];
    const lb_backend *be = f->be;
    int dim = c->dim, hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd, hid = c->hidden_dim;
    float *xb = f->xb.data, *q = f->q.data, *k = f->k.data, *v = f->v.data;
    lb_status st;

    norm(f, xb, f->x.data, w->attn_norm, n_tok, dim);
    if (c->act_quant_int8) lb_act_quant_int8_rows(xb, n_tok, dim);
    const lb_tensor *qkv[] = {w->wq, w->wk, w->wv}, *qkv_s[] = {w->wq_s, w->wk_s, w->wv_s};
    const lb_tensor *qkv_b[] = {w->bq, w->bk, w->bv};
    float *qkv_y[] = {q, k, v};
    if ((st = linear_shared(f, 3, qkv, qkv_s, qkv_b, xb, n_tok, qkv_y, err))) return st;
    be->rope(q, n_tok, c->n_heads, hd, (size_t)q_dim, f->rope_cs.data, c->rope_layout);
    be->rope(k, n_tok, c->n_kv_heads, hd, (size_t)kv_dim, f->rope_cs.data, c->rope_layout);
    lb_kv_view view = lb_kv_view_layer(f->kv, l);
    be->kv_store(&view, k, v, n_tok, kv_dim, f->blk, f->off);
    lb_attn_batch ab = {n_tok, c->n_heads, c->n_kv_heads, hd, q, f->att_out.data, f->pos, f->blocks,
                        view, f->att.data, f->att_stride, f->att_tmp, c->sliding_window};
    be->attention(f->pool, &ab);
    if ((st = project_add(f, f->att_out.data, xb, w->attn_sub_norm, q_dim, w->wo, w->wo_s, n_tok, err))) return st;

    norm(f, xb, f->x.data, w->ffn_norm, n_tok, dim);
    if (c->act_quant_int8) lb_act_quant_int8_rows(xb, n_tok, dim);
    const lb_tensor *gu[] = {w->w_gate, w->w_up}, *gu_s[] = {w->w_gate_s, w->w_up_s}, *gu_b[] = {NULL, NULL};
    float *gu_y[] = {f->hb.data, f->hb2.data};
    if ((st = linear_shared(f, 2, gu, gu_s, gu_b, xb, n_tok, gu_y, err))) return st;
    be->glu(f->hb.data, f->hb2.data, (size_t)n_tok * hid, c->act == LB_ACT_RELU2);
    return project_add(f, f->hb.data, f->hb2.data, w->ffn_sub_norm, hid, w->w_down, w->w_down_s, n_tok, err);
}

/* Unit u of the weights (a layer, or n_layers: the head) around its use when streaming. */
static lb_status acquire(lb_fwd *f, int u, lb_error *err) { return f->stream ? lb_stream_acquire(f->stream, u, err) : LB_OK; }
static void release(lb_fwd *f, int u) {
    if (f->stream) lb_stream_release(f->stream, u);
}

static lb_status embed(lb_fwd *f, const lb_fwd_tok *toks, int n, lb_error *err) {
    lb_model *m = f->m;
    const lb_config *c = &m->cfg;
    for (int t = 0; t < n; t++) {
        int32_t id = toks[t].token;
        if (id < 0 || id >= c->n_vocab)
            return lb_fail(err, LB_ERR_RANGE, "token id %d is outside the vocabulary (0..%d)", id, c->n_vocab - 1);
        float *row = (float *)f->x.data + (size_t)t * c->dim;
        lb_status st = f->be->embed(m->tok_embd, id, row, err);
        if (st) return st;
        const float *dw = fix_of(f, toks[t].ft, m->tok_embd);
        if (dw) f->be->add(row, dw + (size_t)id * c->dim, (size_t)c->dim);
    }
    return LB_OK;
}

lb_status lb_fwd_run(lb_fwd *f, const lb_fwd_tok *toks, int n, float *logits, lb_error *err) {
    const lb_config *c = &f->m->cfg;
    if (n < 1 || n > f->max_batch)
        return lb_fail(err, LB_ERR_ARG, "a batch of %d tokens does not fit the scratch of %d tokens", n, f->max_batch);
    for (int t = 0; t < n; t++) {
        f->pos[t] = toks[t].pos;
        f->blk[t] = toks[t].blk;
        f->off[t] = toks[t].off;
        f->blocks[t] = toks[t].blocks;
        f->ft[t] = toks[t].ft;
        lb_rope_table(f->inv_freq.data, c->head_dim / 2, toks[t].pos, (float *)f->rope_cs.data + (size_t)t * c->head_dim);
    }
    lb_status st = embed(f, toks, n, err);
    /* the looked-up rows of an untied embedding: the head's release drops a tied one */
    if (f->stream && f->m->tok_embd != f->m->output) lb_stream_drop_tensor(f->stream, f->m->tok_embd);
    for (int l = 0; l < c->n_layers && !st; l++) {
        st = acquire(f, l, err);
        if (!st) st = layer_forward(f, l, n, err);
        release(f, l);
    }
    if (!st) st = acquire(f, c->n_layers, err); /* even without logits: the window moves in order */
    if (st) return st;
    /* rows that want logits, gathered to the front (their fine-tunes with them) */
    int nw = 0;
    float *x = f->x.data, *xb = f->xb.data;
    for (int t = 0; t < n; t++) {
        if (!toks[t].logits) continue;
        if (nw != t) f->be->copy(x + (size_t)nw * c->dim, x + (size_t)t * c->dim, (size_t)c->dim * sizeof(float));
        f->ft[nw++] = toks[t].ft;
    }
    if (nw) norm(f, xb, x, f->m->output_norm, nw, c->dim);
    if (nw) st = linear(f, f->m->output, NULL, NULL, xb, nw, logits, err);
    release(f, c->n_layers);
    return st;
}
