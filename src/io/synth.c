/* Synthetic models: real shapes, random weights, a working tokenizer. No large real model can
 * be had on the machines lowbit is measured on, so speed and memory at 1B-8B scale are
 * measured on these. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf_meta.h"
#include "quant/quant.h"
#include "tokenizer/spm.h"

typedef struct preset {
    const char *name;
    int dim, hidden, layers, heads, kv_heads, vocab, ctx;
    float theta;
    int llama3_factor, orig_ctx; /* llama3 rope scaling when factor > 0 */
    int tied;
} preset;

static const preset g_presets[] = {
    {"tiny", 64, 128, 2, 4, 2, 512, 512, 10000.0f, 0, 0, 1},
    {"stories15m", 288, 768, 6, 6, 6, 32000, 256, 10000.0f, 0, 0, 1},
    {"llama-1b", 2048, 8192, 16, 32, 8, 128256, 131072, 500000.0f, 32, 8192, 0}, /* Llama 3.2 1B, untied head */
    {"llama-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f, 0, 0, 0},     /* Llama 2 7B */
    {"llama-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f, 8, 8192, 0}, /* Llama 3 8B */
};
#define N_PRESETS (sizeof g_presets / sizeof *g_presets)

const char *const *lb_synth_presets(void) {
    static const char *const names[] = {"tiny", "stories15m", "llama-1b", "llama-7b", "llama-8b", NULL};
    return names;
}

typedef struct fill_ctx {
    uint64_t seed;
    lb_dtype type;
    float *f;
    void *conv;
    lb_progress_fn progress;
    void *user;
    uint64_t done, total;
} fill_ctx;

enum { CHUNK = 1 << 16 };

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* Uniform values with the standard deviation of typical initialisations (0.02); norms are 1. */
static lb_status fill(void *user, const lb_tensor *t, lb_gguf_sink *sink, lb_error *err) {
    fill_ctx *c = user;
    int is_norm = t->n_dims == 1;
    uint64_t x = c->seed ^ hash_name(t->name);
    const float amp = 0.02f * 1.7320508f;
    int64_t n = lb_tensor_nelements(t);
    int quant = !lb_dtype_get(t->type)->is_float;
    /* block formats quantize whole rows: chunks are a whole number of rows */
    int64_t step = quant ? (CHUNK / t->ne[0] > 0 ? CHUNK / t->ne[0] : 1) * t->ne[0] : CHUNK;
    for (int64_t i = 0; i < n; i += step) {
        int64_t m = n - i < step ? n - i : step;
        for (int64_t j = 0; j < m; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            c->f[j] = is_norm ? 1.0f : ((float)(x >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * amp;
        }
        const void *out = c->f;
        size_t bytes = (size_t)m * 4;
        if (t->type == LB_F16 || t->type == LB_BF16) {
            uint16_t *h = c->conv;
            for (int64_t j = 0; j < m; j++) h[j] = t->type == LB_F16 ? lb_f32_to_fp16(c->f[j]) : lb_f32_to_bf16(c->f[j]);
            out = h;
            bytes = (size_t)m * 2;
        } else if (quant) {
            bytes = lb_quantize(t->type, c->f, c->conv, m / t->ne[0], t->ne[0], NULL);
            if (!bytes) return lb_fail(err, LB_ERR_ARG, "%s: cannot quantize rows of %lld to %s", t->name,
                                       (long long)t->ne[0], lb_dtype_name(t->type));
            out = c->conv;
        }
        lb_status s = lb_gguf_sink_write(sink, out, bytes, err);
        if (s) return s;
        c->done += bytes;
        if (c->progress) c->progress(c->user, t->name, c->done, c->total);
    }
    return LB_OK;
}

/* A byte-fallback SentencePiece vocabulary: control tokens, the 256 byte pieces, "▁" and the
 * printable ASCII characters, padded with unused pieces to the model's vocabulary size. */
static lb_status generated_vocab(int32_t n_vocab, lb_vocab_export *v, lb_error *err) {
    memset(v, 0, sizeof *v);
    const char **tok = calloc((size_t)n_vocab, sizeof *tok);
    size_t *lens = calloc((size_t)n_vocab, sizeof *lens);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    char *pool = malloc((size_t)n_vocab * 24);
    v->own[0] = tok, v->own[1] = lens, v->own[2] = scores, v->own[3] = types, v->own[4] = pool;
    if (!tok || !lens || !scores || !types || !pool) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (n_vocab < 3 + 256 + 1 + 94) return lb_fail(err, LB_ERR_ARG, "vocabulary of %d is too small for a generated tokenizer", n_vocab);
    char *p = pool;
    for (int32_t i = 0; i < n_vocab; i++) {
        int k, type = LB_SPM_NORMAL;
        if (i == 0) k = sprintf(p, "<unk>"), type = LB_SPM_UNKNOWN;
        else if (i <= 2) k = sprintf(p, i == 1 ? "<s>" : "</s>"), type = LB_SPM_CONTROL;
        else if (i < 3 + 256) k = sprintf(p, "<0x%02X>", i - 3), type = LB_SPM_BYTE;
        else if (i == 259) k = sprintf(p, "\xe2\x96\x81");
        else if (i < 260 + 94) k = sprintf(p, "%c", 0x21 + (i - 260));
        else k = sprintf(p, "<unused_%d>", i), type = LB_SPM_UNUSED;
        tok[i] = p, lens[i] = (size_t)k, types[i] = type, scores[i] = type == LB_SPM_NORMAL ? -(float)i : 0;
        p += k + 1;
    }
    v->model = "llama";
    v->d = (lb_vocab_desc){.n_tokens = (size_t)n_vocab, .tokens = tok, .token_lens = lens, .scores = scores, .types = types,
                           .bos_id = 1, .eos_id = 2, .unk_id = 0, .pad_id = -1, .eot_id = -1, .add_bos = 1, .add_eos = 0};
    return LB_OK;
}

lb_status lb_synth_write(const char *name, const char *dtype, const char *tokenizer_path, uint64_t seed,
                         const char *out_path, lb_progress_fn progress, void *user, lb_error *err) {
    return lb_synth_write_ex(name, dtype, tokenizer_path, seed, NULL, out_path, progress, user, err);
}

lb_status lb_synth_write_ex(const char *name, const char *dtype, const char *tokenizer_path, uint64_t seed,
                            const lb_synth_opts *o, const char *out_path, lb_progress_fn progress, void *user,
                            lb_error *err) {
    const preset *p = NULL;
    for (size_t i = 0; i < N_PRESETS; i++)
        if (!strcmp(g_presets[i].name, name)) p = &g_presets[i];
    lb_status s0 = lb_output_check(out_path, &tokenizer_path, 1, 0, err);
    if (s0) return s0;
    if (!p) return lb_fail(err, LB_ERR_ARG, "unknown preset '%s' (tiny, stories15m, llama-1b, llama-7b, llama-8b)", name);
    int t = lb_dtype_from_name(dtype);
    if (t < 0 || (t != LB_F32 && t != LB_F16 && t != LB_BF16 && !lb_quant_can_write((lb_dtype)t)))
        return lb_fail(err, LB_ERR_ARG, "synth writes f32, f16, bf16 or a writable block format (q8_0, q4_0, q4_k, ...), not '%s'", dtype);

    lb_config c = {.arch = LB_ARCH_LLAMA, .n_vocab = p->vocab, .dim = p->dim, .hidden_dim = p->hidden, .n_layers = p->layers,
                   .n_heads = p->heads, .n_kv_heads = p->kv_heads, .head_dim = p->dim / p->heads, .ctx_train = p->ctx,
                   .norm_eps = 1e-5f, .rope_theta = p->theta};
    if (o && (o->n_layers < 0 || o->n_layers > 4096 || o->sliding_window < 0))
        return lb_fail(err, LB_ERR_ARG, "synth: %d layers / a sliding window of %d is out of range", o->n_layers,
                       o->sliding_window);
    if (o && o->n_layers) c.n_layers = o->n_layers;
    if (o) c.sliding_window = o->sliding_window;
    if (p->llama3_factor) {
        c.rope_scaling = LB_ROPE_SCALE_LLAMA3;
        c.rope_factor = (float)p->llama3_factor;
        c.rope_low_freq_factor = 1.0f;
        c.rope_high_freq_factor = 4.0f;
        c.rope_orig_ctx = p->orig_ctx;
    }
    lb_vocab_export v;
    lb_tokenizer *tok = NULL;
    lb_status s;
    if (tokenizer_path) {
        s = lb_tokenizer_load_path(tokenizer_path, 0, &tok, err);
        if (s == LB_OK && tok->n_vocab > p->vocab)
            s = lb_fail(err, LB_ERR_MISMATCH, "%s: %d tokens do not fit the %s vocabulary of %d", tokenizer_path, tok->n_vocab,
                        name, p->vocab);
        if (s == LB_OK) s = lb_tokenizer_export(tok, p->vocab, &v, err);
        lb_tokenizer_free(tok);
        if (s) return s;
    } else if ((s = generated_vocab(p->vocab, &v, err))) {
        lb_vocab_export_free(&v);
        return s;
    }

    lb_gguf_writer *w = lb_gguf_writer_new();
    size_t buf = (size_t)(CHUNK > p->hidden ? CHUNK : p->hidden) * sizeof(float); /* at least one row */
    fill_ctx fc = {seed, (lb_dtype)t, malloc(buf), malloc(buf), progress, user, 0, 0};
    if (!w || !fc.f || !fc.conv) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    char full[64];
    snprintf(full, sizeof full, "lowbit synth %s", name);
    if (!s) s = lb_gguf_set_config(w, &c, full, err);
    if (!s) s = lb_gguf_set_vocab(w, &v, err);
    if (!s && t <= LB_BF16) s = lb_gguf_set_u32(w, "general.file_type", t == LB_F32 ? 0 : t == LB_F16 ? 1 : 32, err);

    int64_t qd = (int64_t)c.n_heads * c.head_dim, kvd = (int64_t)c.n_kv_heads * c.head_dim;
    struct { const char *fmt; int64_t ne0, ne1; } per_layer[] = {
        {"blk.%d.attn_norm.weight", c.dim, 0}, {"blk.%d.attn_q.weight", c.dim, qd}, {"blk.%d.attn_k.weight", c.dim, kvd},
        {"blk.%d.attn_v.weight", c.dim, kvd}, {"blk.%d.attn_output.weight", qd, c.dim}, {"blk.%d.ffn_norm.weight", c.dim, 0},
        {"blk.%d.ffn_gate.weight", c.dim, c.hidden_dim}, {"blk.%d.ffn_up.weight", c.dim, c.hidden_dim},
        {"blk.%d.ffn_down.weight", c.hidden_dim, c.dim}};
#define ADD(nm, a, b)                                                                                     \
    do {                                                                                                  \
        int64_t ne[2] = {a, b};                                                                           \
        int nd = b ? 2 : 1;                                                                               \
        lb_dtype dt = nd == 1 ? LB_F32 : (lb_dtype)t;                                                     \
        if (!s) s = lb_gguf_add_tensor_lazy(w, nm, dt, nd, ne, fill, &fc, err);                           \
        fc.total += (uint64_t)lb_dtype_row_size(dt, a) * (b ? b : 1);                                     \
    } while (0)
    float rope_factors[2048];
    if (!s) s = lb_gguf_add_rope_freqs(w, &c, rope_factors, err);
    ADD("token_embd.weight", c.dim, c.n_vocab);
    ADD("output_norm.weight", c.dim, 0);
    if (!p->tied) ADD("output.weight", c.dim, c.n_vocab);
    for (int l = 0; l < c.n_layers; l++)
        for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, per_layer[i].fmt, l);
            ADD(nm, per_layer[i].ne0, per_layer[i].ne1);
        }
#undef ADD
    if (!s) s = lb_gguf_write(w, out_path, err);
    lb_gguf_writer_free(w);
    lb_vocab_export_free(&v);
    free(fc.f);
    free(fc.conv);
    return s;
}
