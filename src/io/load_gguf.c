/* Model from a GGUF file: the model owns the mapping; hyperparameters come from ARCH.* keys,
 * tensors point into the mapping, the tokenizer from tokenizer.ggml.*. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/model.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

typedef struct arch_info {
    const char *name;
    lb_arch arch;
    lb_rope_layout rope;
    bool qkv_bias, sub_norms;
    lb_act act;
} arch_info;

/* GGUF llama/mistral files store Q and K rows permuted for adjacent-pair rotation; qwen2 and
 * bitnet keep the Hugging Face (rotate_half) order, as llama.cpp reads them. */
static const arch_info g_archs[] = {
    {"llama", LB_ARCH_LLAMA, LB_ROPE_NORM, false, false, LB_ACT_SILU},
    {"mistral", LB_ARCH_MISTRAL, LB_ROPE_NORM, false, false, LB_ACT_SILU},
    {"qwen2", LB_ARCH_QWEN2, LB_ROPE_NEOX, true, false, LB_ACT_SILU},
    {"bitnet", LB_ARCH_BITNET, LB_ROPE_NEOX, false, true, LB_ACT_RELU2},
};

typedef struct keyctx {
    const lb_gguf *g;
    char arch[32];
    lb_error *err;
} keyctx;

/* Reads ARCH.suffix as a positive int32; absent: *out = dflt, or an error when required. */
static lb_status arch_int(keyctx *k, const char *suffix, int required, int32_t dflt, int32_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", k->arch, suffix);
    int64_t v;
    lb_status s = lb_gguf_get_int(k->g, key, &v, k->err);
    if (s == LB_ERR_RANGE && lb_gguf_find_key(k->g, key) < 0) {
        if (required) return lb_fail(k->err, LB_ERR_FORMAT, "%s: key %s is missing", lb_gguf_name(k->g), key);
        *out = dflt;
        return LB_OK;
    }
    if (s) return s;
    if (v <= 0 || v > INT32_MAX)
        return lb_fail(k->err, LB_ERR_FORMAT, "%s: key %s = %lld is out of range", lb_gguf_name(k->g), key, (long long)v);
    *out = (int32_t)v;
    return LB_OK;
}

static lb_status arch_float(keyctx *k, const char *suffix, float dflt, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", k->arch, suffix);
    double v;
    *out = dflt;
    if (lb_gguf_find_key(k->g, key) < 0) return LB_OK;
    lb_status s = lb_gguf_get_float(k->g, key, &v, k->err);
    if (s) return s;
    if (!(v > 0) || v > 1e30)
        return lb_fail(k->err, LB_ERR_FORMAT, "%s: key %s = %g is out of range", lb_gguf_name(k->g), key, v);
    *out = (float)v;
    return LB_OK;
}

/* <arch>.attention.sliding_window: absent or 0 is no window (some writers store 0) */
static lb_status read_window(keyctx *k, lb_config *c) {
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window", k->arch);
    if (lb_gguf_find_key(k->g, key) < 0) return LB_OK;
    int64_t v;
    lb_status s = lb_gguf_get_int(k->g, key, &v, k->err);
    if (s) return s;
    if (v < 0 || v > INT32_MAX)
        return lb_fail(k->err, LB_ERR_FORMAT, "%s: key %s = %lld is out of range", lb_gguf_name(k->g), key, (long long)v);
    c->sliding_window = (int32_t)v;
    return LB_OK;
}

static lb_status read_rope_scaling(keyctx *k, lb_config *c) {
    char key[128];
    const char *type;
    size_t len;
    snprintf(key, sizeof key, "%s.rope.scaling.type", k->arch);
    c->rope_scaling = LB_ROPE_SCALE_NONE;
    if (lb_gguf_find_key(k->g, key) < 0) return LB_OK;
    lb_status s = lb_gguf_get_str(k->g, key, &type, &len, k->err);
    if (s) return s;
    if (len == 4 && memcmp(type, "none", 4) == 0) return LB_OK;
    if (len == 6 && memcmp(type, "linear", 6) == 0) c->rope_scaling = LB_ROPE_SCALE_LINEAR;
    else if (len == 6 && memcmp(type, "llama3", 6) == 0) c->rope_scaling = LB_ROPE_SCALE_LLAMA3;
    else
        return lb_fail(k->err, LB_ERR_UNSUPPORTED, "%s: %s \"%.*s\" is not supported (none, linear, llama3)",
                       lb_gguf_name(k->g), key, (int)(len > 32 ? 32 : len), type);
    if ((s = arch_float(k, "rope.scaling.factor", 1.0f, &c->rope_factor))) return s;
    if ((s = arch_int(k, "rope.scaling.original_context_length", 0, 0, &c->rope_orig_ctx))) return s;
    /* not standard GGUF keys: lowbit writes them for llama3 scaling; defaults are Llama 3.1's */
    if ((s = arch_float(k, "rope.scaling.low_freq_factor", 1.0f, &c->rope_low_freq_factor))) return s;
    if ((s = arch_float(k, "rope.scaling.high_freq_factor", 4.0f, &c->rope_high_freq_factor))) return s;
    if (c->rope_scaling == LB_ROPE_SCALE_LLAMA3 && !c->rope_orig_ctx)
        return lb_fail(k->err, LB_ERR_FORMAT, "%s: llama3 rope scaling needs %s.rope.scaling.original_context_length",
                       lb_gguf_name(k->g), k->arch);
    return LB_OK;
}

/* lowbit.* keys: what an architecture name alone does not say (written by lowbit convert). */
static lb_status read_lowbit_keys(const lb_gguf *g, lb_config *c, lb_error *err) {
    const char *a;
    size_t len;
    lb_status s;
    if (lb_gguf_find_key(g, "lowbit.act_quant_int8") >= 0 && (s = lb_gguf_get_bool(g, "lowbit.act_quant_int8", &c->act_quant_int8, err)))
        return s;
    if (lb_gguf_find_key(g, "lowbit.ffn_activation") < 0) return LB_OK;
    if ((s = lb_gguf_get_str(g, "lowbit.ffn_activation", &a, &len, err))) return s;
    if (len == 4 && !memcmp(a, "silu", 4)) c->act = LB_ACT_SILU;
    else if (len == 5 && !memcmp(a, "relu2", 5)) c->act = LB_ACT_RELU2;
    else if (len == 4 && !memcmp(a, "gelu", 4)) c->act = LB_ACT_GELU;
    else return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: lowbit.ffn_activation \"%.*s\" is not known (silu, relu2, gelu)", lb_gguf_name(g),
                        (int)(len > 32 ? 32 : len), a);
    return LB_OK;
}

static lb_status read_arch(const lb_gguf *g, const arch_info **out, char *name, size_t cap, lb_error *err) {
    const char *a;
    size_t len;
    lb_status s = lb_gguf_get_str(g, "general.architecture", &a, &len, err);
    if (s == LB_ERR_RANGE) return lb_fail(err, LB_ERR_FORMAT, "%s: key general.architecture is missing", lb_gguf_name(g));
    if (s) return s;
    for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++)
        if (strlen(g_archs[i].name) == len && memcmp(g_archs[i].name, a, len) == 0) {
            *out = &g_archs[i];
            snprintf(name, cap, "%s", g_archs[i].name);
            return LB_OK;
        }
    return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: architecture \"%.*s\" is not supported (llama, mistral, qwen2, bitnet)",
                   lb_gguf_name(g), (int)(len > 64 ? 64 : len), a);
}

static lb_status read_config(const lb_gguf *g, lb_config *c, lb_error *err) {
    const arch_info *ai = NULL;
    keyctx k = {.g = g, .err = err};
    lb_status s = read_arch(g, &ai, k.arch, sizeof k.arch, err);
    if (s) return s;
    memset(c, 0, sizeof *c);
    c->arch = ai->arch;
    c->rope_layout = ai->rope;
    c->qkv_bias = ai->qkv_bias;
    c->sub_norms = ai->sub_norms;
    c->act = ai->act;
    int32_t rope_dims, val_len;
    if ((s = arch_int(&k, "embedding_length", 1, 0, &c->dim))) return s;
    if ((s = arch_int(&k, "feed_forward_length", 1, 0, &c->hidden_dim))) return s;
    if ((s = arch_int(&k, "block_count", 1, 0, &c->n_layers))) return s;
    if ((s = arch_int(&k, "attention.head_count", 1, 0, &c->n_heads))) return s;
    if ((s = arch_int(&k, "attention.head_count_kv", 0, c->n_heads, &c->n_kv_heads))) return s;
    if ((s = arch_int(&k, "context_length", 0, 0, &c->ctx_train))) return s;
    if ((s = arch_int(&k, "attention.key_length", 0, 0, &c->head_dim))) return s;
    if ((s = arch_int(&k, "attention.value_length", 0, 0, &val_len))) return s;
    if ((s = arch_int(&k, "rope.dimension_count", 0, 0, &rope_dims))) return s;
    if ((s = arch_float(&k, "attention.layer_norm_rms_epsilon", 1e-5f, &c->norm_eps))) return s;
    if ((s = arch_float(&k, "rope.freq_base", 10000.0f, &c->rope_theta))) return s;
    if ((s = read_rope_scaling(&k, c)) || (s = read_window(&k, c))) return s;
    if ((s = read_lowbit_keys(g, c, err))) return s;
    int32_t head_dim = c->head_dim ? c->head_dim : (c->dim % c->n_heads ? 0 : c->dim / c->n_heads);
    if (val_len && head_dim && val_len != head_dim)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: value length %d differs from key length %d", lb_gguf_name(g), val_len,
                       head_dim);
    if (rope_dims && head_dim && rope_dims != head_dim)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: partial rotary embeddings (%s.rope.dimension_count %d, head size %d)",
                       lb_gguf_name(g), k.arch, rope_dims, head_dim);
    return LB_OK;
}

/* The embedding's row count is the model's vocabulary; the tokenizer may list fewer tokens
 * (padded embeddings) and that is only worth a warning. */
static lb_status read_vocab_size(const lb_gguf *g, lb_config *c, lb_error *err) {
    const lb_tensor *e = lb_gguf_find_tensor(g, "token_embd.weight");
    lb_gguf_arr toks;
    int have_toks = lb_gguf_find_key(g, "tokenizer.ggml.tokens") >= 0 &&
                    lb_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks, NULL) == LB_OK;
    int64_t n = e && e->n_dims >= 2 ? e->ne[1] : have_toks ? (int64_t)toks.n : 0;
    if (n <= 0 || n > INT32_MAX)
        return lb_fail(err, LB_ERR_FORMAT, "%s: cannot tell the vocabulary size (no token_embd.weight or tokenizer.ggml.tokens)",
                       lb_gguf_name(g));
    if (have_toks && (int64_t)toks.n != n)
        lb_warn("%s: tokenizer has %zu tokens, token_embd.weight %lld rows", lb_gguf_name(g), toks.n, (long long)n);
    c->n_vocab = (int32_t)n;
    return LB_OK;
}

static lb_status copy_tensors(lb_model *m, const lb_gguf *g, lb_error *err) {
    for (size_t i = 0; i < lb_gguf_tensor_count(g); i++) {
        const lb_tensor *t = lb_gguf_tensor(g, i);
        lb_status s = lb_model_add_tensor(m, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes, err);
        if (s) return s;
    }
    return LB_OK;
}

static lb_status load_tokenizer(lb_model *m, const lb_gguf *g, lb_error *err) {
    lb_status s = lb_gguf_load_tokenizer(g, &m->tok, err);
    if (s == LB_ERR_RANGE && lb_gguf_find_key(g, "tokenizer.ggml.model") < 0) {
        lb_error_clear(err);
        m->tok = NULL; /* a GGUF without a vocabulary still runs on ids */
        return LB_OK;
    }
    if (s) return s;
    const char *tpl;
    size_t len;
    if (lb_gguf_find_key(g, "tokenizer.chat_template") >= 0 &&
        lb_gguf_get_str(g, "tokenizer.chat_template", &tpl, &len, NULL) == LB_OK) {
        free(m->chat_template);
        if (!(m->chat_template = strndup(tpl, len))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    return LB_OK;
}

lb_status lb_load_gguf(lb_model *m, const char *path, lb_error *err) {
    const lb_mapfile *mf;
    lb_status s = lb_model_add_map(m, path, &mf, err);
    if (s) return s;
    lb_gguf *g;
    /* lb_model_add_map may move the table later; the mapping itself stays put */
    if ((s = lb_gguf_parse(mf->data, mf->size, path, &g, err))) return s;
    if (!m->path && !(m->path = strdup(path))) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    snprintf(m->format, sizeof m->format, "gguf");
    if (!s) s = read_config(g, &m->cfg, err);
    if (!s) s = read_vocab_size(g, &m->cfg, err);
    if (!s) s = copy_tensors(m, g, err);
    if (!s) s = load_tokenizer(m, g, err);
    lb_gguf_close(g);
    return s;
}
