/* GGUF "gpt2"-type vocabularies (tokenizer.ggml.*) -> lb_bpe. GGUF stores no pipeline, only
 * the name of the pre-tokenizer (tokenizer.ggml.pre); each name maps to the pipeline of the
 * tokenizer.json it was converted from. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe.h"

#define NAME "GGUF vocabulary"

static lb_status add_pre(lb_bpe *b, lb_bpe_pre_kind kind, const char *re, lb_split_behavior beh, lb_error *err) {
    lb_bpe_pre *v = realloc(b->pres, (b->n_pres + 1) * sizeof *v);
    if (!v) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    b->pres = v;
    lb_bpe_pre pr = {.kind = kind, .behavior = beh};
    lb_status st = re ? lb_bpe_pattern_compile(&pr.pat, re, strlen(re), 1, NAME, "tokenizer.ggml.pre", err) : LB_OK;
    if (st) return st;
    v[b->n_pres++] = pr;
    return LB_OK;
}

static lb_status set_pipeline(lb_bpe *b, const char *pre, lb_error *err) {
    lb_status st;
    if (!pre || !strcmp(pre, "default") || !strcmp(pre, "gpt2") || !strcmp(pre, "gpt-2"))
        return add_pre(b, LB_PRE_BYTELEVEL, lb_bpe_re_gpt2, 0, err);
    if (!strcmp(pre, "smollm")) {
        if ((st = add_pre(b, LB_PRE_SPLIT, "\\p{N}", LB_SPLIT_ISOLATED, err))) return st;
        return add_pre(b, LB_PRE_BYTELEVEL, lb_bpe_re_gpt2, 0, err);
    }
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3")) {
        b->ignore_merges = 1; /* as Llama 3's tokenizer.json says */
        if ((st = add_pre(b, LB_PRE_SPLIT, lb_bpe_re_llama3, LB_SPLIT_ISOLATED, err))) return st;
        return add_pre(b, LB_PRE_BYTELEVEL, NULL, 0, err);
    }
    if (!strcmp(pre, "qwen2")) {
        if ((st = add_pre(b, LB_PRE_SPLIT, lb_bpe_re_qwen2, LB_SPLIT_ISOLATED, err))) return st;
        return add_pre(b, LB_PRE_BYTELEVEL, NULL, 0, err);
    }
    return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%.60s\" not supported (known: default, gpt2, llama-bpe, smollm, qwen2)", NAME, pre);
}

static lb_status add_merges(lb_bpe *b, const lb_vocab_desc *v, lb_error *err) {
    char *tmp = NULL;
    size_t cap = 0;
    lb_status st = LB_OK;
    for (size_t i = 0; i < v->n_merges && !st; i++) {
        const char *s = v->merges[i];
        size_t n = v->merge_lens[i];
        int found = 0;
        if (!s) return lb_fail(err, LB_ERR_FORMAT, "%s: tokenizer.ggml.merges[%zu] missing", NAME, i);
        if (n > cap) {
            char *t = realloc(tmp, n);
            if (!t) {
                st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
                break;
            }
            tmp = t, cap = n;
        }
        /* "a b": try each space until both halves and their concatenation are tokens. */
        for (size_t k = 0; k < n && !found; k++) {
            if (s[k] != ' ') continue;
            int32_t ia = lb_bpe_vocab_find(&b->vocab, s, k), ib = lb_bpe_vocab_find(&b->vocab, s + k + 1, n - k - 1);
            if (ia < 0 || ib < 0) continue;
            memcpy(tmp, s, k);
            memcpy(tmp + k, s + k + 1, n - k - 1);
            int32_t im = lb_bpe_vocab_find(&b->vocab, tmp, n - 1);
            if (im < 0) continue;
            found = 1;
            st = lb_bpe_vocab_add_merge(&b->vocab, ia, ib, (uint32_t)i, im, err);
        }
        if (!st && !found)
            st = lb_fail(err, LB_ERR_FORMAT, "%s: tokenizer.ggml.merges[%zu]: \"%.*s\" does not name two tokens whose concatenation is one too",
                         NAME, i, (int)(n < 80 ? n : 80), s);
    }
    free(tmp);
    return st;
}

static int32_t checked_id(const lb_vocab_desc *v, int32_t id, const char *what) {
    if (id < -1 || id >= (int64_t)v->n_tokens) {
        lb_warn("%s: %s id %d outside the vocabulary, ignored", NAME, what, (int)id);
        return -1;
    }
    return id;
}

lb_status lb_bpe_from_vocab(const lb_vocab_desc *v, lb_tokenizer **out, lb_error *err) {
    if (!v || !v->tokens || !v->token_lens || v->n_tokens == 0 || v->n_tokens > (1u << 22))
        return lb_fail(err, LB_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or of a bad size", NAME);
    if (v->n_merges && (!v->merges || !v->merge_lens))
        return lb_fail(err, LB_ERR_FORMAT, "%s: tokenizer.ggml.merges missing", NAME);
    lb_bpe *b = lb_bpe_new(NAME);
    if (!b) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_status st = lb_bpe_vocab_init(&b->vocab, (int32_t)v->n_tokens, v->n_merges, err);
    for (size_t i = 0; i < v->n_tokens && !st; i++) {
        if (!v->tokens[i]) {
            st = lb_fail(err, LB_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] missing", NAME, i);
            break;
        }
        st = lb_bpe_vocab_set(&b->vocab, (int32_t)i, v->tokens[i], v->token_lens[i], err);
        int type = v->types ? v->types[i] : 1;
        if (!st && (type == 3 || type == 4) && v->token_lens[i] > 0) /* control, user-defined */
            st = lb_bpe_add_added(b, v->tokens[i], v->token_lens[i], (int32_t)i, type == 3, 0, 0, 0, err);
        if (type == 2 && b->unk_id < 0) b->unk_id = (int32_t)i;
    }
    if (!st) st = add_merges(b, v, err);
    if (!st) st = lb_bpe_finish(b, err);
    if (!st) st = set_pipeline(b, v->pre, err);
    int32_t bos = checked_id(v, v->bos_id, "BOS"), eos = checked_id(v, v->eos_id, "EOS");
    if (!st && v->add_bos == 1 && bos >= 0) {
        if (!(b->prefix = malloc(sizeof *b->prefix))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        else b->prefix[0] = bos, b->n_prefix = 1;
    }
    if (!st && v->add_eos == 1 && eos >= 0) {
        if (!(b->suffix = malloc(sizeof *b->suffix))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        else b->suffix[0] = eos, b->n_suffix = 1;
    }
    lb_bpe_dec dec = {.kind = LB_DEC_BYTELEVEL};
    if (!st) st = lb_bpe_build_decoder(b, &dec, 1, err);
    if (st) {
        lb_bpe_free(b);
        return st;
    }
    int32_t unk = checked_id(v, v->unk_id, "UNK");
    if (unk >= 0) b->unk_id = unk;
    if ((st = lb_bpe_wrap(b, out, err))) return st;
    (*out)->bos_id = bos;
    (*out)->eos_id = eos;
    (*out)->unk_id = b->unk_id;
    (*out)->pad_id = checked_id(v, v->pad_id, "PAD");
    (*out)->eot_id = checked_id(v, v->eot_id, "EOT");
    return LB_OK;
}
