/* llama2.c legacy checkpoint: 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len; a negative vocab_size means an unshared classifier follows), then f32
 * arrays in a fixed order. Adjacent-pair RoPE (LB_ROPE_NORM). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/model.h"
#include "tokenizer/tokenizer.h"

#define L2C_HEADER 28

typedef struct l2c_cursor {
    const unsigned char *base;
    size_t pos; /* bytes; the size check up front guarantees every step stays in range */
} l2c_cursor;

static const void *take(l2c_cursor *c, size_t floats) {
    const void *p = c->base + c->pos;
    c->pos += floats * 4;
    return p;
}

/* Adds `count` consecutive [ne1][ne0] f32 tensors (one per layer, or one when layer < 0). */
static lb_status add_f32(lb_model *m, l2c_cursor *c, const char *fmt, int layers, int64_t ne0, int64_t ne1,
                         lb_error *err) {
    int n_dims = ne1 > 0 ? 2 : 1;
    int64_t ne[2] = {ne0, ne1};
    size_t floats = (size_t)ne0 * (size_t)(ne1 > 0 ? ne1 : 1);
    for (int l = 0; l < (layers < 0 ? 1 : layers); l++) {
        char name[64];
        snprintf(name, sizeof name, fmt, l);
        lb_status s = lb_model_add_tensor(m, name, LB_F32, n_dims, ne, take(c, floats), floats * 4, err);
        if (s) return s;
    }
    return LB_OK;
}

/* present (not a folder): a FIFO named like a tokenizer is opened and refused, never skipped */
static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

/* tokenizer.bin or tok<vocab>.bin beside the checkpoint; NULL when neither exists. */
static char *find_tokenizer(const char *path, int32_t n_vocab) {
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char name[32];
    for (int k = 0; k < 2; k++) {
        if (k == 0) snprintf(name, sizeof name, "tokenizer.bin");
        else snprintf(name, sizeof name, "tok%d.bin", (int)n_vocab);
        char *p = malloc(dl + strlen(name) + 1);
        if (!p) return NULL;
        memcpy(p, path, dl);
        strcpy(p + dl, name);
        if (is_file(p)) return p;
        free(p);
    }
    return NULL;
}

/* Total float count of the checkpoint after the header, overflow-checked. */
static int l2c_floats(const int32_t h[7], int shared, size_t *out) {
    size_t dim = (size_t)h[0], hid = (size_t)h[1], L = (size_t)h[2], heads = (size_t)h[3];
    size_t kv_dim = dim / heads * (size_t)h[4], V = (size_t)(h[5] < 0 ? -(int64_t)h[5] : h[5]), seq = (size_t)h[6];
    size_t hs2 = dim / heads / 2;
    size_t parts[][2] = {
        {V, dim},                                  /* token_embedding */
        {L, dim},           {L, dim * dim},        /* rms_att, wq */
        {L, kv_dim * dim},  {L, kv_dim * dim},     /* wk, wv */
        {L, dim * dim},     {L, dim},              /* wo, rms_ffn */
        {L, hid * dim},     {L, hid * dim},        /* w1, w2 */
        {L, hid * dim},     {1, dim},              /* w3, rms_final */
        {seq, hs2},         {seq, hs2},            /* freq_cis_real, freq_cis_imag */
        {shared ? 0 : V, dim},                     /* wcls */
    };
    size_t total = 0, x;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        if (!lb_mul_ok(parts[i][0], parts[i][1], &x) || !lb_add_ok(total, x, &total)) return 0;
    *out = total;
    return 1;
}

static const char *l2c_fields[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
static const int32_t l2c_caps[] = {1 << 20, 1 << 22, 4096, 4096, 4096, 1 << 24, 1 << 24};

/* The llama2.c header has no magic: seven fields all in range is the only sign a file is one,
 * which lb_model_load asks before it calls anything else a llama2.c header. */
int lb_llama2c_bad_field(const unsigned char head[L2C_HEADER]) {
    int32_t h[7];
    memcpy(h, head, sizeof h);
    for (int i = 0; i < 7; i++) {
        int32_t v = i == 5 && h[i] < 0 && h[i] != INT32_MIN ? -h[i] : h[i];
        if (v <= 0 || v > l2c_caps[i]) return i;
    }
    return -1;
}

lb_status lb_load_llama2c(lb_model *m, const char *path, const char *tokenizer_path, lb_error *err) {
    snprintf(m->format, sizeof m->format, "llama2c");
    if (!m->path && !(m->path = strdup(path))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    const lb_mapfile *mf;
    lb_status s = lb_model_add_map(m, path, &mf, err);
    if (s) return s;
    if (mf->size < L2C_HEADER)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes, too short for the 28-byte llama2.c header", path, mf->size);
    int32_t h[7];
    memcpy(h, mf->data, sizeof h); /* little-endian hosts only, as llama2.c itself */
    int i = lb_llama2c_bad_field(mf->data);
    if (i >= 0)
        return lb_fail(err, LB_ERR_FORMAT, "%s: header field %s = %d at byte offset %d is out of range (1..%d)", path,
                       l2c_fields[i], (int)h[i], 4 * i, (int)l2c_caps[i]);
    int shared = h[5] > 0;
    int32_t dim = h[0], heads = h[3], kv = h[4], vocab = shared ? h[5] : -h[5];
    if (dim % heads || (dim / heads) % 2)
        return lb_fail(err, LB_ERR_FORMAT, "%s: dim %d does not split into %d heads of even size", path, dim, heads);
    if (kv > heads || heads % kv)
        return lb_fail(err, LB_ERR_FORMAT, "%s: n_heads %d is not a multiple of n_kv_heads %d", path, heads, kv);
    size_t floats, need;
    if (!l2c_floats(h, shared, &floats) || !lb_mul_ok(floats, 4, &need) || !lb_add_ok(need, L2C_HEADER, &need))
        return lb_fail(err, LB_ERR_FORMAT, "%s: header sizes overflow", path);
    if (mf->size < need)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes, but the header (dim %d, %d layers, vocab %d%s) needs %zu; truncated?",
                       path, mf->size, dim, h[2], vocab, shared ? "" : ", unshared classifier", need);
    if (mf->size > need) lb_warn("%s: %zu bytes after the weights are ignored", path, mf->size - need);

    lb_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    c->arch = LB_ARCH_LLAMA;
    c->dim = dim;
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = heads;
    c->n_kv_heads = kv;
    c->head_dim = dim / heads;
    c->n_vocab = vocab;
    c->ctx_train = h[6];
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_layout = LB_ROPE_NORM;
    c->rope_scaling = LB_ROPE_SCALE_NONE;
    c->rope_factor = c->rope_low_freq_factor = c->rope_high_freq_factor = 1.0f;
    c->act = LB_ACT_SILU;

    int L = h[2];
    int64_t kv_dim = (int64_t)c->head_dim * kv, hid = h[1];
    l2c_cursor cur = {mf->data, L2C_HEADER};
    if ((s = add_f32(m, &cur, "token_embd.weight", -1, dim, vocab, err)) ||
        (s = add_f32(m, &cur, "blk.%d.attn_norm.weight", L, dim, 0, err)) ||
        (s = add_f32(m, &cur, "blk.%d.attn_q.weight", L, dim, dim, err)) ||
        (s = add_f32(m, &cur, "blk.%d.attn_k.weight", L, dim, kv_dim, err)) ||
        (s = add_f32(m, &cur, "blk.%d.attn_v.weight", L, dim, kv_dim, err)) ||
        (s = add_f32(m, &cur, "blk.%d.attn_output.weight", L, dim, dim, err)) ||
        (s = add_f32(m, &cur, "blk.%d.ffn_norm.weight", L, dim, 0, err)) ||
        (s = add_f32(m, &cur, "blk.%d.ffn_gate.weight", L, dim, hid, err)) || /* w1 */
        (s = add_f32(m, &cur, "blk.%d.ffn_down.weight", L, hid, dim, err)) || /* w2 */
        (s = add_f32(m, &cur, "blk.%d.ffn_up.weight", L, dim, hid, err)) ||   /* w3 */
        (s = add_f32(m, &cur, "output_norm.weight", -1, dim, 0, err)))
        return s;
    take(&cur, (size_t)h[6] * (size_t)(c->head_dim / 2) * 2); /* RoPE tables: recomputed at run time */
    if (!shared && (s = add_f32(m, &cur, "output.weight", -1, dim, vocab, err))) return s;

    /* tokenizer: given, else beside the checkpoint; none found is not an error */
    char *tp = tokenizer_path ? strdup(tokenizer_path) : find_tokenizer(path, vocab);
    if (tokenizer_path && !tp) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (tp) {
        if (!is_file(tp)) s = lb_fail(err, LB_ERR_IO, "%s: tokenizer file not found", tp);
        else s = lb_spm_load_llama2c(tp, vocab, &m->tok, err);
        free(tp);
    }
    return s;
}
