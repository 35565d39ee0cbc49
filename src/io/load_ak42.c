/* BitNet b1.58 "ak42" v1 checkpoints (bitllama2.c): a 256-byte header (magic 0x616b3432,
 * version 1, the seven llama2.c ints, shared_classifier), f32 final norm and embeddings, then
 * for each BitLinear (wq of every layer, then wk, wv, wo, w1, w2, w3) an f32 scale and 2-bit
 * codes, four per byte, the first weight in the two highest bits (00 = 0, 01 = +1, 11 = -1).
 *
 * Each BitLinear normalizes its input without weights, rmsnorm(x) / n, quantizes it to int8
 * per token (absmax) and multiplies by the ternary weights times the scale. That is the GGUF
 * `bitnet` block (as llama.cpp defines it: attn/ffn norms before Q/K/V and gate/up, sub-norms
 * before the output and down projections, SiLU, tied output) with every norm weight equal to
 * 1/n, so the model is loaded as exactly that: constant norm vectors, ternary values times the
 * scale as exact f32 matrices, and cfg.act_quant_int8 for the activation quantization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/model.h"
#include "tokenizer/tokenizer.h"

#define AK42_MAGIC 0x616b3432u
#define AK42_HEADER 256

static const char *const g_kinds[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"};

/* out x in of BitLinear kind k (wq, wk, wv, wo, w1, w2, w3) */
static void kind_shape(const lb_config *c, int k, int64_t *out, int64_t *in) {
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim, d = c->dim, h = c->hidden_dim;
    const int64_t shapes[7][2] = {{q, d}, {kv, d}, {kv, d}, {d, q}, {h, d}, {d, h}, {h, d}};
    *out = shapes[k][0], *in = shapes[k][1];
}

/* Decodes one BitLinear into f32 values code * scale. Returns 0 on a 10 code (not ternary). */
static int decode(const uint8_t *p, float scale, int64_t n, float *w) {
    static const float val[4] = {0.0f, 1.0f, 0.0f, -1.0f};
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        unsigned code = (p[i >> 2] >> (6 - 2 * (i & 3))) & 3;
        ok &= code != 2;
        w[i] = val[code] * scale;
    }
    return ok;
}

static float *constant(lb_model *m, int64_t n, float v) {
    float *p = lb_model_alloc(m, (size_t)n * sizeof *p, "constant norms of ak42 BitLinear inputs");
    for (int64_t i = 0; p && i < n; i++) p[i] = v;
    return p;
}

static lb_status add_norms(lb_model *m, lb_error *err) {
    const lb_config *c = &m->cfg;
    int64_t q = (int64_t)c->n_heads * c->head_dim;
    float *nd = constant(m, c->dim, 1.0f / (float)c->dim), *nq = constant(m, q, 1.0f / (float)q);
    float *nh = constant(m, c->hidden_dim, 1.0f / (float)c->hidden_dim);
    if (!nd || !nq || !nh) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    struct { const char *fmt; float *data; int64_t n; } norms[] = {
        {"blk.%d.attn_norm.weight", nd, c->dim}, {"blk.%d.ffn_norm.weight", nd, c->dim},
        {"blk.%d.attn_sub_norm.weight", nq, q}, {"blk.%d.ffn_sub_norm.weight", nh, c->hidden_dim}};
    for (int l = 0; l < c->n_layers; l++)
        for (size_t i = 0; i < 4; i++) {
            char name[64];
            snprintf(name, sizeof name, norms[i].fmt, l);
            lb_status s = lb_model_add_tensor(m, name, LB_F32, 1, &norms[i].n, norms[i].data, (size_t)norms[i].n * 4, err);
            if (s) return s;
        }
    return LB_OK;
}

static lb_status read_header(lb_model *m, const lb_mapfile *mf, const char *path, int *shared, lb_error *err) {
    if (mf->size < AK42_HEADER)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes, too short for the 256-byte ak42 header", path, mf->size);
    uint32_t magic;
    int32_t ver, h[7];
    memcpy(&magic, mf->data, 4);
    memcpy(&ver, (const char *)mf->data + 4, 4);
    memcpy(h, (const char *)mf->data + 8, sizeof h);
    if (magic != AK42_MAGIC) return lb_fail(err, LB_ERR_FORMAT, "%s: not an ak42 file (magic 0x%08x)", path, magic);
    if (ver != 1) return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: ak42 version %d at byte offset 4 (only 1 is known)", path, (int)ver);
    static const char *fields[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t caps[] = {1 << 16, 1 << 18, 1024, 1024, 1024, 1 << 20, 1 << 24};
    for (int i = 0; i < 7; i++)
        if (h[i] <= 0 || h[i] > caps[i])
            return lb_fail(err, LB_ERR_FORMAT, "%s: header field %s = %d at byte offset %d is out of range (1..%d)", path,
                           fields[i], (int)h[i], 8 + 4 * i, (int)caps[i]);
    if (h[0] % h[3] || (h[0] / h[3]) % 2 || h[3] % h[4])
        return lb_fail(err, LB_ERR_FORMAT, "%s: dim %d, %d heads, %d kv heads do not fit together", path, h[0], h[3], h[4]);
    *shared = ((const uint8_t *)mf->data)[36];
    if (*shared != 1)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: ak42 file with an unshared classifier (byte 36 = %d)", path, *shared);
    lb_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    c->arch = LB_ARCH_BITNET;
    c->dim = h[0], c->hidden_dim = h[1], c->n_layers = h[2], c->n_heads = h[3], c->n_kv_heads = h[4];
    c->n_vocab = h[5], c->ctx_train = h[6], c->head_dim = h[0] / h[3];
    /* The BitLinear norms have no epsilon and see tiny inputs (rmsnorm / n feeds the next one):
     * any epsilon near their mean square (1e-6 already) wrecks the model. The final norm's 1e-5
     * then costs about 6e-4 relative in the logits. */
    c->norm_eps = 1e-12f;
    c->rope_theta = 10000.0f;
    c->rope_layout = LB_ROPE_NORM;
    c->rope_factor = c->rope_low_freq_factor = c->rope_high_freq_factor = 1.0f;
    c->act = LB_ACT_SILU;
    c->sub_norms = true;
    c->act_quant_int8 = true;
    return LB_OK;
}

lb_status lb_load_ak42(lb_model *m, const char *path, const char *tokenizer_path, lb_error *err) {
    snprintf(m->format, sizeof m->format, "ak42");
    if (!m->path && !(m->path = strdup(path))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    const lb_mapfile *mf;
    lb_status s = lb_model_add_map(m, path, &mf, err);
    if (s) return s;
    int shared;
    if ((s = read_header(m, mf, path, &shared, err))) return s;
    const lb_config *c = &m->cfg;
    /* sizes: every count is capped above, so these products fit in 64 bits */
    uint64_t need = AK42_HEADER + 4ull * c->dim + 4ull * c->dim * c->n_vocab;
    for (int k = 0; k < 7; k++) {
        int64_t o, i;
        kind_shape(c, k, &o, &i);
        if ((o * i) % 4) return lb_fail(err, LB_ERR_FORMAT, "%s: %s has %lld weights, not a multiple of 4", path, g_kinds[k], (long long)(o * i));
        need += (uint64_t)c->n_layers * (4 + (uint64_t)(o * i) / 4);
    }
    if ((uint64_t)mf->size < need)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes, but the header (dim %d, %d layers, vocab %d) needs %llu; truncated?",
                       path, mf->size, c->dim, c->n_layers, c->n_vocab, (unsigned long long)need);
    if ((uint64_t)mf->size > need) lb_warn("%s: %llu bytes after the weights are ignored", path, (unsigned long long)(mf->size - need));

    const uint8_t *p = (const uint8_t *)mf->data + AK42_HEADER;
    int64_t ne[2] = {c->dim, c->n_vocab};
    if ((s = lb_model_add_tensor(m, "output_norm.weight", LB_F32, 1, ne, p, (size_t)c->dim * 4, err))) return s;
    p += (size_t)c->dim * 4;
    if ((s = lb_model_add_tensor(m, "token_embd.weight", LB_F32, 2, ne, p, (size_t)c->dim * c->n_vocab * 4, err))) return s;
    p += (size_t)c->dim * c->n_vocab * 4;
    if ((s = add_norms(m, err))) return s;
    for (int k = 0; k < 7; k++) {
        int64_t o, i;
        kind_shape(c, k, &o, &i);
        for (int l = 0; l < c->n_layers; l++) {
            float scale;
            memcpy(&scale, p, 4);
            float *w = lb_model_alloc(m, (size_t)(o * i) * 4, "ak42 ternary weights as f32");
            if (!w) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
            size_t off = (size_t)(p - (const uint8_t *)mf->data);
            if (!(scale >= 0) || scale > 1e30f)
                return lb_fail(err, LB_ERR_FORMAT, "%s: scale %g of blk.%d.%s at byte offset %zu is not a finite non-negative number",
                               path, scale, l, g_kinds[k], off);
            if (!decode(p + 4, scale, o * i, w))
                return lb_fail(err, LB_ERR_FORMAT, "%s: blk.%d.%s at byte offset %zu holds the code 10, which is not ternary", path, l,
                               g_kinds[k], off + 4);
            char name[64];
            int64_t wne[2] = {i, o};
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, g_kinds[k]);
            if ((s = lb_model_add_tensor(m, name, LB_F32, 2, wne, w, (size_t)(o * i) * 4, err))) return s;
            p += 4 + (size_t)(o * i) / 4;
        }
    }
    if (tokenizer_path) return lb_tokenizer_load_path(tokenizer_path, c->n_vocab, &m->tok, err);
    /* tok<vocab>.bin / tokenizer.model beside the checkpoint, as bitllama2.c ships them */
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char name[32];
    for (int k = 0; k < 2 && !m->tok; k++) {
        snprintf(name, sizeof name, k ? "tokenizer.model" : "tok%d.model", (int)c->n_vocab);
        char *tp = malloc(dl + strlen(name) + 1);
        if (!tp) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        memcpy(tp, path, dl);
        strcpy(tp + dl, name);
        struct stat sb; /* only whether it is there: the loader opens it (regular files only) */
        if (stat(tp, &sb) == 0) s = lb_tokenizer_load_path(tp, c->n_vocab, &m->tok, err);
        free(tp);
        if (s) return s;
    }
    return LB_OK;
}
