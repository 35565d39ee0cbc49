/* Tokenizer from GGUF metadata (tokenizer.ggml.*): gathers the vocabulary into an
 * lb_vocab_desc and hands it to the SentencePiece ("llama") or byte-level BPE ("gpt2")
 * constructor. Token strings point into the file; the constructors copy what they keep. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

typedef struct vocab_buf {
    const char **tokens, **merges;
    size_t *token_lens, *merge_lens;
    float *scores;
    int32_t *types;
    char *pre;
} vocab_buf;

static void vocab_buf_free(vocab_buf *b) {
    free(b->tokens);
    free(b->merges);
    free(b->token_lens);
    free(b->merge_lens);
    free(b->scores);
    free(b->types);
    free(b->pre);
}

/* Optional string array: *n = 0 when the key is absent. */
static lb_status str_array(const lb_gguf *g, const char *key, const char ***strs, size_t **lens, size_t *n,
                           lb_error *err) {
    lb_gguf_arr a;
    *n = 0;
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    lb_status s = lb_gguf_get_arr(g, key, &a, err);
    if (s) return s;
    if (a.type != LB_GGUF_STRING)
        return lb_fail(err, LB_ERR_FORMAT, "%s: key %s: array of %s, expected strings", lb_gguf_name(g), key,
                       lb_gguf_type_name(a.type));
    *strs = malloc((a.n ? a.n : 1) * sizeof **strs);
    *lens = malloc((a.n ? a.n : 1) * sizeof **lens);
    if (!*strs || !*lens) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory for %s", lb_gguf_name(g), key);
    for (size_t i = 0; i < a.n; i++)
        if ((s = lb_gguf_arr_str(&a, i, &(*strs)[i], &(*lens)[i], err))) return s;
    *n = a.n;
    return LB_OK;
}

/* Optional per-token numeric array; must have one entry per token when present. */
static lb_status num_array(const lb_gguf *g, const char *key, size_t n_tokens, float **f, int32_t **ints,
                           lb_error *err) {
    lb_gguf_arr a;
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    lb_status s = lb_gguf_get_arr(g, key, &a, err);
    if (s) return s;
    if (a.n != n_tokens)
        return lb_fail(err, LB_ERR_FORMAT, "%s: key %s has %zu entries for %zu tokens", lb_gguf_name(g), key, a.n,
                       n_tokens);
    if (f) *f = malloc((a.n ? a.n : 1) * sizeof **f);
    if (ints) *ints = malloc((a.n ? a.n : 1) * sizeof **ints);
    if ((f && !*f) || (ints && !*ints)) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory for %s", lb_gguf_name(g), key);
    for (size_t i = 0; i < a.n; i++) {
        if (f) {
            double d;
            if ((s = lb_gguf_arr_float(&a, i, &d, err))) return s;
            (*f)[i] = (float)d;
        } else {
            int64_t v;
            if ((s = lb_gguf_arr_int(&a, i, &v, err))) return s;
            if (v < INT32_MIN || v > INT32_MAX)
                return lb_fail(err, LB_ERR_FORMAT, "%s: key %s: entry %zu (%lld) out of range", lb_gguf_name(g), key, i,
                               (long long)v);
            (*ints)[i] = (int32_t)v;
        }
    }
    return LB_OK;
}

/* Special token id: absent, -1 and 0xffffffff (written by some converters for "none") give -1;
 * an id outside the vocabulary is dropped with a warning, as published models carry some. */
static lb_status special_id(const lb_gguf *g, const char *key, size_t n_tokens, int32_t *out, lb_error *err) {
    int64_t v;
    *out = -1;
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    lb_status s = lb_gguf_get_int(g, key, &v, err);
    if (s) return s;
    if (v == -1 || v == 0xffffffffLL) return LB_OK;
    if (v < 0 || (uint64_t)v >= n_tokens) {
        lb_warn("%s: %s = %lld is outside the vocabulary of %zu tokens (ignored)", lb_gguf_name(g), key, (long long)v,
                n_tokens);
        return LB_OK;
    }
    *out = (int32_t)v;
    return LB_OK;
}

static lb_status flag(const lb_gguf *g, const char *key, int *out, lb_error *err) {
    bool b;
    *out = -1;
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    lb_status s = lb_gguf_get_bool(g, key, &b, err);
    if (!s) *out = b;
    return s;
}

static lb_status fill_desc(const lb_gguf *g, lb_vocab_desc *d, vocab_buf *b, lb_error *err) {
    lb_status s;
    const char *pre;
    size_t pre_len;
    if ((s = str_array(g, "tokenizer.ggml.tokens", &b->tokens, &b->token_lens, &d->n_tokens, err))) return s;
    if (!d->n_tokens)
        return lb_fail(err, LB_ERR_FORMAT, "%s: key tokenizer.ggml.tokens is missing or empty", lb_gguf_name(g));
    if (d->n_tokens > INT32_MAX)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %zu tokens is too many", lb_gguf_name(g), d->n_tokens);
    if ((s = num_array(g, "tokenizer.ggml.scores", d->n_tokens, &b->scores, NULL, err))) return s;
    if ((s = num_array(g, "tokenizer.ggml.token_type", d->n_tokens, NULL, &b->types, err))) return s;
    if ((s = str_array(g, "tokenizer.ggml.merges", &b->merges, &b->merge_lens, &d->n_merges, err))) return s;
    if ((s = special_id(g, "tokenizer.ggml.bos_token_id", d->n_tokens, &d->bos_id, err))) return s;
    if ((s = special_id(g, "tokenizer.ggml.eos_token_id", d->n_tokens, &d->eos_id, err))) return s;
    if ((s = special_id(g, "tokenizer.ggml.unknown_token_id", d->n_tokens, &d->unk_id, err))) return s;
    if ((s = special_id(g, "tokenizer.ggml.padding_token_id", d->n_tokens, &d->pad_id, err))) return s;
    if ((s = special_id(g, "tokenizer.ggml.eot_token_id", d->n_tokens, &d->eot_id, err))) return s;
    if ((s = flag(g, "tokenizer.ggml.add_bos_token", &d->add_bos, err))) return s;
    if ((s = flag(g, "tokenizer.ggml.add_eos_token", &d->add_eos, err))) return s;
    if (lb_gguf_find_key(g, "tokenizer.ggml.pre") >= 0) {
        if ((s = lb_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pre_len, err))) return s;
        if (!(b->pre = strndup(pre, pre_len))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    d->tokens = b->tokens;
    d->token_lens = b->token_lens;
    d->scores = b->scores;
    d->types = b->types;
    d->merges = b->merges;
    d->merge_lens = b->merge_lens;
    d->pre = b->pre;
    return LB_OK;
}

static lb_status attach_template(const lb_gguf *g, lb_tokenizer *t, lb_error *err) {
    const char *s;
    size_t len;
    if (lb_gguf_find_key(g, "tokenizer.chat_template") < 0) return LB_OK;
    lb_status st = lb_gguf_get_str(g, "tokenizer.chat_template", &s, &len, err);
    if (st) return st;
    if (!(t->chat_template = strndup(s, len))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    return LB_OK;
}

lb_status lb_gguf_load_tokenizer(const lb_gguf *g, lb_tokenizer **out, lb_error *err) {
    const char *model;
    size_t model_len;
    *out = NULL;
    lb_status s = lb_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len, err);
    if (s) return s; /* LB_ERR_RANGE: the file carries no tokenizer */
    int spm = model_len == 5 && memcmp(model, "llama", 5) == 0;
    int bpe = model_len == 4 && memcmp(model, "gpt2", 4) == 0;
    if (!spm && !bpe)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (llama, gpt2)",
                       lb_gguf_name(g), (int)(model_len > 64 ? 64 : model_len), model);
    lb_vocab_desc d = {.bos_id = -1, .eos_id = -1, .unk_id = -1, .pad_id = -1, .eot_id = -1, .add_bos = -1, .add_eos = -1};
    vocab_buf b = {0};
    s = fill_desc(g, &d, &b, err);
    if (!s && bpe && !d.n_merges)
        s = lb_fail(err, LB_ERR_FORMAT, "%s: tokenizer.ggml.model is gpt2 but tokenizer.ggml.merges is missing",
                    lb_gguf_name(g));
    if (!s) s = spm ? lb_spm_from_vocab(&d, out, err) : lb_bpe_from_vocab(&d, out, err);
    vocab_buf_free(&b);
    if (!s && (s = attach_template(g, *out, err))) {
        lb_tokenizer_free(*out);
        *out = NULL;
    }
    return s;
}
