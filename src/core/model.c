#include "core/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/model_regions.h"
#include "core/error.h"

const char *lb_arch_name(lb_arch a) {
    switch (a) {
    case LB_ARCH_LLAMA: return "llama";
    case LB_ARCH_QWEN2: return "qwen2";
    case LB_ARCH_MISTRAL: return "mistral";
    case LB_ARCH_BITNET: return "bitnet";
    }
    return "unknown";
}

/* Resident bytes of this process now (/proc/self/statm), 0 when unreadable. */
static uint64_t proc_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, rss = 0;
    int n = f ? fscanf(f, "%llu %llu", &size, &rss) : 0;
    if (f) fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t)rss * (uint64_t)page : 0;
}

/* The process's RSS when its first model was made, read once, before that model mapped or
 * allocated anything. Every later model of the process plans with the same baseline: what its
 * RSS gained since is the earlier models' own (counted in their plans) or memory they freed and
 * malloc kept, and reading it anew made a second load's plan differ from the first's by
 * whatever the process did in between (a Python test suite: 60 -> 220 MiB). */
static uint64_t first_baseline(void) {
    static uint64_t v;
    uint64_t b = __atomic_load_n(&v, __ATOMIC_ACQUIRE);
    if (b) return b;
    b = proc_rss();
    uint64_t none = 0;
    if (!__atomic_compare_exchange_n(&v, &none, b, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return none;
    return b;
}

lb_model *lb_model_new(void) {
    lb_model *m = calloc(1, sizeof *m);
    if (m) m->proc_baseline = first_baseline();
    return m;
}

lb_status lb_model_add_map(lb_model *m, const char *path, const lb_mapfile **out, lb_error *err) {
    lb_mapfile *maps = realloc(m->maps, (m->n_maps + 1) * sizeof *maps);
    if (!maps) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", path);
    m->maps = maps;
    lb_mapfile *mf = &m->maps[m->n_maps];
    lb_status s = lb_mapfile_open(path, mf, err);
    if (s) return s;
    if (lb_lbz_is_container(mf->data, mf->size)) { /* a .lbz: restore it in memory, in parallel */
        void *buf;
        size_t size;
        lb_mapfile_close(mf);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if ((s = lb_lbz_restore_named(path, ncpu > 0 ? (int)ncpu : 1, NULL, NULL, &buf, &size, err))) return s;
        if ((s = lb_mapfile_from_heap(buf, size, path, mf, err))) return s;
    }
    *out = &m->maps[m->n_maps++];
    return LB_OK;
}

void lb_model_set_repack(lb_model *m, int on) {
    if (m) m->no_repack = !on;
}

void *lb_model_alloc(lb_model *m, size_t size, const char *why) {
    lb_model_buffer *b = realloc(m->bufs, (m->n_bufs + 1) * sizeof *b);
    if (!b) return NULL;
    m->bufs = b;
    void *p = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (!p) return NULL;
    m->bufs[m->n_bufs++] = (lb_model_buffer){p, size, why};
    return p;
}

const char *lb_model_strdup(lb_model *m, const char *s, size_t len) {
    char **strs = realloc(m->strings, (m->n_strings + 1) * sizeof *strs);
    if (!strs) return NULL;
    m->strings = strs;
    char *c = malloc(len + 1);
    if (!c) return NULL;
    memcpy(c, s, len);
    c[len] = 0;
    m->strings[m->n_strings++] = c;
    return c;
}

const lb_tensor *lb_model_find_tensor(const lb_model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

lb_status lb_model_add_tensor(lb_model *m, const char *name, lb_dtype type, int n_dims,
                              const int64_t *ne, const void *data, size_t nbytes, lb_error *err) {
    if (lb_model_find_tensor(m, name))
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %s appears twice", m->path ? m->path : "model", name);
    if (m->n_tensors == m->cap_tensors) {
        size_t cap = m->cap_tensors ? m->cap_tensors * 2 : 64;
        lb_tensor *t = realloc(m->tensors, cap * sizeof *t);
        if (!t) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        m->tensors = t;
        m->cap_tensors = cap;
    }
    const char *nm = lb_model_strdup(m, name, strlen(name));
    if (!nm) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_tensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims && i < LB_MAX_DIMS; i++) t->ne[i] = ne[i];
    t->data = data;
    t->nbytes = nbytes;
    return LB_OK;
}

/* Finds a tensor and checks its shape (ne0 x ne1; ne1 < 0 means 1-D). */
static lb_status need(lb_model *m, const char *name, int64_t ne0, int64_t ne1, int optional,
                      const lb_tensor **out, lb_error *err) {
    const lb_tensor *t = lb_model_find_tensor(m, name);
    *out = NULL;
    if (!t) {
        if (optional) return LB_OK;
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %s is missing", m->path, name);
    }
    int dims = ne1 < 0 ? 1 : 2;
    int ok = t->n_dims == dims && t->ne[0] == ne0 && (dims == 1 || t->ne[1] == ne1);
    /* some exporters store 1-D tensors as [1, n] */
    if (!ok && dims == 1 && t->n_dims == 2 && t->ne[0] == ne0 && t->ne[1] == 1) ok = 1;
    if (!ok) {
        char got[96] = "";
        for (int i = 0; i < t->n_dims; i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%lld", i ? " x " : "", (long long)t->ne[i]);
        }
        if (dims == 1)
            return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%lld]", m->path, name, got,
                           (long long)ne0);
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %s has shape [%s] (inner first), expected [%lld x %lld]",
                       m->path, name, got, (long long)ne0, (long long)ne1);
    }
    if (!t->data) return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %s has no data", m->path, name);
    const lb_dtype_traits *tr = lb_dtype_get(t->type);
    if (!tr || !tr->to_float)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which this build cannot compute with",
                       m->path, name, lb_dtype_name(t->type));
    *out = t;
    return LB_OK;
}

/* Vectors (norms, biases) are tiny: keep them as aligned F32 so kernels need no conversion. */
static lb_status to_f32(lb_model *m, const lb_tensor **slot, lb_error *err) {
    const lb_tensor *t = *slot;
    if (!t || (t->type == LB_F32 && ((uintptr_t)t->data & 3) == 0)) return LB_OK;
    int64_t n = lb_tensor_nelements(t);
    float *buf = lb_model_alloc(m, (size_t)n * 4, "f32 copies of norms and biases");
    if (!buf) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_dtype_get(t->type)->to_float(t->data, buf, n);
    lb_tensor *w = (lb_tensor *)t; /* the table entry is ours */
    w->data = buf;
    w->type = LB_F32;
    w->nbytes = (size_t)n * 4;
    return LB_OK;
}

lb_status lb_model_bind(lb_model *m, lb_error *err) {
    lb_config *c = &m->cfg;
    if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_vocab <= 0 || c->hidden_dim <= 0)
        return lb_fail(err, LB_ERR_FORMAT, "%s: missing or invalid hyperparameters (dim %d, layers %d, heads %d, vocab %d, ffn %d)",
                       m->path, c->dim, c->n_layers, c->n_heads, c->n_vocab, c->hidden_dim);
    if (c->n_kv_heads <= 0) c->n_kv_heads = c->n_heads;
    if (c->head_dim <= 0) {
        if (c->dim % c->n_heads) return lb_fail(err, LB_ERR_FORMAT, "%s: dim %d is not divisible by %d heads", m->path, c->dim, c->n_heads);
        c->head_dim = c->dim / c->n_heads;
    }
    if (c->n_heads % c->n_kv_heads)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %d heads are not divisible by %d kv heads", m->path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2) return lb_fail(err, LB_ERR_FORMAT, "%s: head dimension %d is odd", m->path, c->head_dim);
    if (c->n_layers > 4096 || c->dim > (1 << 20) || c->n_vocab > (1 << 24) || c->hidden_dim > (1 << 22) || c->head_dim > 4096)
        return lb_fail(err, LB_ERR_FORMAT, "%s: implausible hyperparameters", m->path);
    if (c->norm_eps <= 0) c->norm_eps = 1e-5f;
    if (c->rope_theta <= 0) c->rope_theta = 10000.0f;

    int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    lb_status s;
    if ((s = need(m, "token_embd.weight", c->dim, c->n_vocab, 0, &m->tok_embd, err))) return s;
    if ((s = need(m, "output_norm.weight", c->dim, -1, 0, &m->output_norm, err))) return s;
    if ((s = need(m, "output.weight", c->dim, c->n_vocab, 1, &m->output, err))) return s;
    if (!m->output) m->output = m->tok_embd;
    if ((s = to_f32(m, &m->output_norm, err))) return s;
    if ((s = need(m, "rope_freqs.weight", c->head_dim / 2, -1, 1, &m->rope_freqs, err))) return s;
    if ((s = to_f32(m, &m->rope_freqs, err))) return s;

    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        lb_layer_weights *w = &m->layers[l];
        char nm[96];
#define NEED(slot, suffix, a, b, opt)                                        \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);                              \
    if ((s = need(m, nm, a, b, opt, &w->slot, err))) return s;
        NEED(attn_norm, "attn_norm.weight", c->dim, -1, 0)
        NEED(wq, "attn_q.weight", c->dim, q_dim, 0)
        NEED(wk, "attn_k.weight", c->dim, kv_dim, 0)
        NEED(wv, "attn_v.weight", c->dim, kv_dim, 0)
        NEED(wo, "attn_output.weight", q_dim, c->dim, 0)
        NEED(bq, "attn_q.bias", q_dim, -1, !c->qkv_bias)
        NEED(bk, "attn_k.bias", kv_dim, -1, !c->qkv_bias)
        NEED(bv, "attn_v.bias", kv_dim, -1, !c->qkv_bias)
        NEED(attn_sub_norm, "attn_sub_norm.weight", q_dim, -1, !c->sub_norms)
        NEED(ffn_norm, "ffn_norm.weight", c->dim, -1, 0)
        NEED(w_gate, "ffn_gate.weight", c->dim, c->hidden_dim, 0)
        NEED(w_up, "ffn_up.weight", c->dim, c->hidden_dim, 0)
        NEED(w_down, "ffn_down.weight", c->hidden_dim, c->dim, 0)
        NEED(ffn_sub_norm, "ffn_sub_norm.weight", c->hidden_dim, -1, !c->sub_norms)
        NEED(wq_s, "attn_q.scale", 1, -1, 1)
        NEED(wk_s, "attn_k.scale", 1, -1, 1)
        NEED(wv_s, "attn_v.scale", 1, -1, 1)
        NEED(wo_s, "attn_output.scale", 1, -1, 1)
        NEED(w_gate_s, "ffn_gate.scale", 1, -1, 1)
        NEED(w_up_s, "ffn_up.scale", 1, -1, 1)
        NEED(w_down_s, "ffn_down.scale", 1, -1, 1)
#undef NEED
        const lb_tensor **vecs[] = {&w->attn_norm, &w->bq, &w->bk, &w->bv, &w->attn_sub_norm, &w->ffn_norm, &w->ffn_sub_norm,
                                    &w->wq_s, &w->wk_s, &w->wv_s, &w->wo_s, &w->w_gate_s, &w->w_up_s, &w->w_down_s};
        for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++)
            if ((s = to_f32(m, vecs[i], err))) return s;
    }
    return LB_OK;
}

void lb_model_free(lb_model *m) {
    if (!m) return;
    if (m->tok) lb_tokenizer_free(m->tok);
    for (size_t i = 0; i < m->n_maps; i++) lb_mapfile_close(&m->maps[i]);
    for (size_t i = 0; i < m->n_bufs; i++) free(m->bufs[i].ptr);
    for (size_t i = 0; i < m->n_strings; i++) free(m->strings[i]);
    free(m->maps);
    free(m->bufs);
    free(m->strings);
    free(m->tensors);
    free(m->layers);
    free(m->chat_template);
    free(m->path);
    free(m);
}

int lb_model_n_vocab(const lb_model *m) { return m->cfg.n_vocab; }
int lb_model_n_ctx_train(const lb_model *m) { return m->cfg.ctx_train; }
const lb_tokenizer *lb_model_tokenizer(const lb_model *m) { return m->tok; }
const char *lb_model_chat_template(const lb_model *m) { return m->chat_template; }

void lb_model_get_info(const lb_model *m, lb_model_info *o) {
    const lb_config *c = &m->cfg;
    static const char *scal[] = {"none", "linear", "llama3"};
    static const char *act[] = {"silu", "relu2", "gelu"};
    memset(o, 0, sizeof *o);
    o->format = m->format;
    o->arch = lb_arch_name(c->arch);
    o->n_vocab = c->n_vocab, o->dim = c->dim, o->hidden_dim = c->hidden_dim, o->n_layers = c->n_layers;
    o->n_heads = c->n_heads, o->n_kv_heads = c->n_kv_heads, o->head_dim = c->head_dim, o->ctx_train = c->ctx_train;
    o->sliding_window = c->sliding_window;
    o->norm_eps = c->norm_eps, o->rope_theta = c->rope_theta, o->rope_factor = c->rope_factor;
    o->rope_layout = c->rope_layout == LB_ROPE_NEOX ? "neox (rotate half)" : "normal (adjacent pairs)";
    o->rope_scaling = scal[c->rope_scaling <= LB_ROPE_SCALE_LLAMA3 ? c->rope_scaling : 0];
    o->activation = act[c->act <= LB_ACT_GELU ? c->act : 0];
    o->tied_embeddings = m->output == m->tok_embd;
    o->qkv_bias = c->qkv_bias, o->sub_norms = c->sub_norms;
    o->n_tensors = m->n_tensors;
    for (size_t i = 0; i < m->n_tensors; i++) o->weight_bytes += m->tensors[i].nbytes;
    for (size_t i = 0; i < m->n_bufs; i++) o->converted_bytes += m->bufs[i].size;
}

lb_status lb_model_tensor_info(const lb_model *m, size_t i, lb_tensor_info *o, lb_error *err) {
    if (i >= m->n_tensors) return lb_fail(err, LB_ERR_RANGE, "tensor index %zu out of range", i);
    const lb_tensor *t = &m->tensors[i];
    memset(o, 0, sizeof *o);
    o->name = t->name;
    o->dtype = lb_dtype_name(t->type);
    o->n_dims = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) o->shape[d] = t->ne[d];
    o->nbytes = t->nbytes;
    return LB_OK;
}
