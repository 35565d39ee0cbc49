#include "io/gguf_meta.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "graph/rope.h"

lb_status lb_gguf_set_config(lb_gguf_writer *w, const lb_config *c, const char *name, lb_error *err) {
    const char *arch = lb_arch_name(c->arch);
    char k[96];
    lb_status s;
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, arch), k)
    if ((s = lb_gguf_set_str(w, "general.architecture", arch, strlen(arch), err))) return s;
    if (name && (s = lb_gguf_set_str(w, "general.name", name, strlen(name), err))) return s;
    if ((s = lb_gguf_set_u32(w, KEY("context_length"), (uint32_t)(c->ctx_train > 0 ? c->ctx_train : 2048), err))) return s;
    if ((s = lb_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->dim, err))) return s;
    if ((s = lb_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->hidden_dim, err))) return s;
    if ((s = lb_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers, err))) return s;
    if ((s = lb_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads, err))) return s;
    if ((s = lb_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads, err))) return s;
    if ((s = lb_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps, err))) return s;
    if ((s = lb_gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta, err))) return s;
    if ((s = lb_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim, err))) return s;
    if (c->head_dim * c->n_heads != c->dim) {
        if ((s = lb_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim, err))) return s;
        if ((s = lb_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim, err))) return s;
    }
    if ((s = lb_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->n_vocab, err))) return s;
    if (c->sliding_window > 0 && (s = lb_gguf_set_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window, err)))
        return s;
    /* llama3 scaling travels as the rope_freqs.weight tensor (lb_gguf_add_rope_freqs), as
     * llama.cpp's own files carry it; only linear scaling has keys that runtimes read */
    if (c->rope_scaling == LB_ROPE_SCALE_LINEAR) {
        if ((s = lb_gguf_set_str(w, KEY("rope.scaling.type"), "linear", 6, err))) return s;
        if ((s = lb_gguf_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor, err))) return s;
    }
#undef KEY
    return LB_OK;
}

static lb_status set_id(lb_gguf_writer *w, const char *key, int32_t id, lb_error *err) {
    return id >= 0 ? lb_gguf_set_u32(w, key, (uint32_t)id, err) : LB_OK;
}

lb_status lb_gguf_set_vocab(lb_gguf_writer *w, const lb_vocab_export *v, lb_error *err) {
    const lb_vocab_desc *d = &v->d;
    lb_status s;
    if ((s = lb_gguf_set_str(w, "tokenizer.ggml.model", v->model, strlen(v->model), err))) return s;
    if (d->pre && (s = lb_gguf_set_str(w, "tokenizer.ggml.pre", d->pre, strlen(d->pre), err))) return s;
    if ((s = lb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", d->tokens, d->token_lens, d->n_tokens, err))) return s;
    if (d->scores && (s = lb_gguf_set_arr(w, "tokenizer.ggml.scores", LB_GGUF_F32, d->scores, d->n_tokens, err))) return s;
    if (d->types && (s = lb_gguf_set_arr(w, "tokenizer.ggml.token_type", LB_GGUF_I32, d->types, d->n_tokens, err))) return s;
    if (d->n_merges && (s = lb_gguf_set_arr_str(w, "tokenizer.ggml.merges", d->merges, d->merge_lens, d->n_merges, err)))
        return s;
    if ((s = set_id(w, "tokenizer.ggml.bos_token_id", d->bos_id, err))) return s;
    if ((s = set_id(w, "tokenizer.ggml.eos_token_id", d->eos_id, err))) return s;
    if ((s = set_id(w, "tokenizer.ggml.unknown_token_id", d->unk_id, err))) return s;
    if ((s = set_id(w, "tokenizer.ggml.padding_token_id", d->pad_id, err))) return s;
    if ((s = set_id(w, "tokenizer.ggml.eot_token_id", d->eot_id, err))) return s;
    if (d->add_bos >= 0 && (s = lb_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", d->add_bos, err))) return s;
    if (d->add_eos >= 0 && (s = lb_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", d->add_eos, err))) return s;
    return LB_OK;
}

lb_status lb_gguf_add_rope_freqs(lb_gguf_writer *w, const lb_config *c, float *factors, lb_error *err) {
    if (!lb_rope_freq_factors(c, factors)) return LB_OK;
    int64_t ne[1] = {c->head_dim / 2};
    return lb_gguf_add_tensor(w, "rope_freqs.weight", LB_F32, 1, ne, factors, err);
}
