/* Any loaded model -> GGUF, following the conventions of GGUF files of its architecture so
 * other runtimes (llama.cpp) load the result unchanged: GGUF tensor names (the loaders already
 * use them), the Q/K row order the architecture's RoPE expects, norms and biases in F32,
 * tokenizer.ggml.* and tokenizer.chat_template. Tensors stream through the writer, one row at
 * a time, so the model never has to sit in memory twice. */
#include "io/convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf_meta.h"
#include "tokenizer/tokenizer.h"

lb_rope_layout lb_gguf_arch_rope(lb_arch a) {
    return a == LB_ARCH_QWEN2 || a == LB_ARCH_BITNET ? LB_ROPE_NEOX : LB_ROPE_NORM;
}

lb_arch lb_gguf_arch_out(lb_arch a) { return a == LB_ARCH_MISTRAL ? LB_ARCH_LLAMA : a; }

/* NORM keeps pair (x[2i], x[2i+1]) adjacent; NEOX stores it as (x[i], x[i + d/2]). */
int64_t lb_rope_permute_row(int64_t r, int head_dim, lb_rope_layout from, lb_rope_layout to) {
    if (from == to) return r;
    int64_t h = r / head_dim, k = r % head_dim, half = head_dim / 2;
    if (to == LB_ROPE_NORM) return h * head_dim + (k % 2) * half + k / 2; /* from NEOX */
    return h * head_dim + 2 * (k % half) + k / half;                      /* from NORM */
}

int lb_is_rope_tensor(const char *name) {
    const char *p = strncmp(name, "blk.", 4) ? NULL : strchr(name + 4, '.');
    if (!p) return 0;
    return !strcmp(p, ".attn_q.weight") || !strcmp(p, ".attn_k.weight") || !strcmp(p, ".attn_q.bias") ||
           !strcmp(p, ".attn_k.bias");
}

lb_convert_params lb_convert_default_params(void) {
    lb_convert_params p = {NULL, NULL, 0};
    return p;
}

lb_status lb_convert_set_meta(lb_gguf_writer *w, const lb_model *m, const char *name, lb_error *err) {
    lb_config c = m->cfg;
    c.arch = lb_gguf_arch_out(c.arch);
    lb_status s = lb_gguf_set_config(w, &c, name, err);
    /* lowbit keys for what the architecture name alone does not say (other runtimes ignore them) */
    if (!s && c.arch == LB_ARCH_BITNET) {
        const char *act = c.act == LB_ACT_SILU ? "silu" : c.act == LB_ACT_RELU2 ? "relu2" : "gelu";
        s = lb_gguf_set_str(w, "lowbit.ffn_activation", act, strlen(act), err);
    }
    if (!s && c.act_quant_int8) s = lb_gguf_set_bool(w, "lowbit.act_quant_int8", true, err);
    if (s) return s;
    if (m->tok) {
        lb_vocab_export v;
        if ((s = lb_tokenizer_export(m->tok, m->cfg.n_vocab, &v, err))) return s;
        s = lb_gguf_set_vocab(w, &v, err);
        lb_vocab_export_free(&v);
        if (s) return s;
    } else {
        lb_warn("%s: the model has no tokenizer; the GGUF file will have none (give one with --tokenizer)", m->path);
    }
    if (m->chat_template && (s = lb_gguf_set_str(w, "tokenizer.chat_template", m->chat_template, strlen(m->chat_template), err)))
        return s;
    return LB_OK;
}

/* ---- tensor data ---------------------------------------------------------------------- */
typedef struct conv_ctx {
    const lb_model *m;
    lb_rope_layout from, to;
    float *row;           /* one source row as float */
    void *out;            /* one destination row */
    size_t row_cap;
    lb_progress_fn progress;
    void *user;
    uint64_t done, total;
} conv_ctx;

typedef struct conv_tensor {
    conv_ctx *c;
    const lb_tensor *src;
} conv_tensor;

static void from_float(lb_dtype t, const float *x, void *out, int64_t n) {
    if (t == LB_F32) memcpy(out, x, (size_t)n * 4);
    else if (t == LB_F16) for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = lb_f32_to_fp16(x[i]);
    else for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = lb_f32_to_bf16(x[i]);
}

static lb_status fill(void *user, const lb_tensor *dst, lb_gguf_sink *sink, lb_error *err) {
    conv_tensor *ct = user;
    conv_ctx *c = ct->c;
    const lb_tensor *t = ct->src;
    int permute = lb_is_rope_tensor(t->name) && c->from != c->to;
    int64_t n = t->ne[0], rows = lb_tensor_nrows(t);
    size_t out_row = lb_dtype_row_size(dst->type, n), in_row = lb_dtype_row_size(t->type, n);
    const lb_dtype_traits *tr = lb_dtype_get(t->type);
    lb_status s = LB_OK;
    if (t->n_dims == 1 && permute) { /* a bias: its elements are the rows */
        n = 1, rows = t->ne[0];
        out_row = lb_dtype_row_size(dst->type, 1), in_row = lb_dtype_row_size(t->type, 1);
    }
    for (int64_t r = 0; r < rows && !s; r++) {
        int64_t src = permute ? lb_rope_permute_row(r, c->m->cfg.head_dim, c->from, c->to) : r;
        const uint8_t *p = (const uint8_t *)t->data + (size_t)src * in_row;
        if (dst->type == t->type) {
            s = lb_gguf_sink_write(sink, p, out_row, err);
        } else {
            tr->to_float(p, c->row, n);
            from_float(dst->type, c->row, c->out, n);
            s = lb_gguf_sink_write(sink, c->out, out_row, err);
        }
        c->done += out_row;
        if (c->progress && (r % 64 == 0 || r == rows - 1)) c->progress(c->user, t->name, c->done, c->total);
    }
    return s;
}

static lb_status out_type(const lb_tensor *t, int want, lb_dtype *out, const char *path, lb_error *err) {
    const lb_dtype_traits *tr = lb_dtype_get(t->type);
    lb_dtype ty = t->n_dims == 1 ? LB_F32 : want < 0 ? t->type : (lb_dtype)want;
    if (ty != t->type && (!tr || !tr->to_float))
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tensor %s: cannot convert %s to %s", path, t->name,
                       lb_dtype_name(t->type), lb_dtype_name(ty));
    *out = ty;
    return LB_OK;
}

lb_status lb_convert_model(const lb_model *m, const char *out, const char *dtype, lb_progress_fn progress, void *user,
                           lb_error *err) {
    lb_status s0 = lb_output_check(out, (const char *const *)&m->path, 1, 0, err);
    if (s0) return s0;
    int want = -1;
    if (dtype && strcmp(dtype, "keep")) {
        want = lb_dtype_from_name(dtype);
        if (want != LB_F32 && want != LB_F16 && want != LB_BF16)
            return lb_fail(err, LB_ERR_ARG, "--dtype must be f32, f16, bf16 or keep, not '%s'", dtype);
    }
    const lb_config *cfg = &m->cfg;
    conv_ctx c = {.m = m, .from = cfg->rope_layout, .to = lb_gguf_arch_rope(lb_gguf_arch_out(cfg->arch)),
                  .progress = progress, .user = user};
    int64_t widest = 1;
    for (size_t i = 0; i < m->n_tensors; i++) widest = m->tensors[i].ne[0] > widest ? m->tensors[i].ne[0] : widest;
    conv_tensor *cts = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *cts);
    c.row = malloc((size_t)widest * sizeof(float));
    c.out = malloc((size_t)widest * sizeof(float));
    lb_gguf_writer *w = lb_gguf_writer_new();
    lb_status s = LB_OK;
    if (!cts || !c.row || !c.out || !w) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    char name[256];
    const char *base = strrchr(m->path, '/');
    snprintf(name, sizeof name, "%s", base && base[1] ? base + 1 : m->path);
    if (!s) s = lb_convert_set_meta(w, m, name, err);
    float rope_factors[2048];
    if (!s && !m->rope_freqs) s = lb_gguf_add_rope_freqs(w, cfg, rope_factors, err);
    int uniform = -2;
    for (size_t i = 0; i < m->n_tensors && !s; i++) {
        const lb_tensor *t = &m->tensors[i];
        lb_dtype ty = LB_F32;
        if ((s = out_type(t, want, &ty, m->path, err))) break;
        if (t->n_dims >= 2) uniform = uniform == -2 || uniform == (int)ty ? (int)ty : -1;
        size_t nb;
        if ((s = lb_tensor_nbytes(ty, t->n_dims, t->ne, &nb, t->name, err))) break;
        c.total += nb;
        cts[i] = (conv_tensor){&c, t};
        s = lb_gguf_add_tensor_lazy(w, t->name, ty, t->n_dims, t->ne, fill, &cts[i], err);
    }
    /* general.file_type as llama.cpp numbers it, when every matrix has one plain type */
    if (!s && (uniform == LB_F32 || uniform == LB_F16 || uniform == LB_BF16))
        s = lb_gguf_set_u32(w, "general.file_type", uniform == LB_F32 ? 0 : uniform == LB_F16 ? 1 : 32, err);
    if (!s) s = lb_gguf_write(w, out, err);
    lb_gguf_writer_free(w);
    free(c.row);
    free(c.out);
    free(cts);
    return s;
}

/* What a loader of this format looks for, for the message naming what is missing. */
static const char *tokenizer_files(const char *format) {
    if (!strcmp(format, "hf")) return "a Hugging Face folder needs tokenizer.json or tokenizer.model in it";
    if (!strcmp(format, "gguf")) return "the GGUF file has no tokenizer.ggml.* metadata";
    if (!strcmp(format, "llama2c") || !strcmp(format, "ak42"))
        return "a checkpoint needs tokenizer.bin or tok<vocab>.bin beside it";
    return "none was found";
}

lb_status lb_convert_load(const char *in, const char *tokenizer_path, int no_tokenizer, lb_model **out, lb_error *err) {
    lb_model_params mp = lb_model_default_params();
    mp.tokenizer_path = tokenizer_path;
    mp.n_threads = 1;
    lb_status s = lb_model_load(in, &mp, out, err);
    if (s || (*out)->tok || no_tokenizer) return s;
    s = lb_fail(err, LB_ERR_FORMAT,
                "%s: no tokenizer (%s): `lowbit run` could not use the output; give one with --tokenizer FILE, "
                "or pass --no-tokenizer to write a GGUF without one (logits only)", in, tokenizer_files((*out)->format));
    lb_model_free(*out);
    *out = NULL;
    return s;
}

/* Names each tensor that did not get the ternary type (rows that do not fit its blocks). */
static void note_fallback(void *user, const char *name, const char *type, const char *note) {
    (void)user;
    if (note) lb_warn("%s: %s (%s)", name, note, type);
}

lb_status lb_convert(const char *in, const char *out, const lb_convert_params *p, lb_progress_fn progress, void *user,
                     lb_error *err) {
    lb_convert_params d = lb_convert_default_params();
    if (!p) p = &d;
    const char *ins[] = {in, p->tokenizer_path};
    lb_status s = lb_output_check(out, ins, 2, 0, err);
    if (s) return s;
    lb_model *m;
    if ((s = lb_convert_load(in, p->tokenizer_path, p->no_tokenizer, &m, err))) return s;
    if (!strcmp(m->format, "ak42") && (!p->dtype || !strcmp(p->dtype, "keep"))) {
        /* BitNet checkpoints keep their ternary weights exact in TQ2_0 (with the per-tensor scale
         * beside them); rows that do not fit its 256-element blocks stay in F16, named */
        lb_quantize_params qp = lb_quantize_default_params();
        qp.type = "tq2_0";
        qp.on_tensor = note_fallback;
        s = lb_quantize_model(m, out, &qp, progress, user, err);
        lb_model_free(m);
        return s;
    }
    s = lb_convert_model(m, out, p->dtype, progress, user, err);
    lb_model_free(m);
    return s;
}
