/* Exports a loaded tokenizer's vocabulary in the GGUF tokenizer.ggml.* shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"

void lb_vocab_export_free(lb_vocab_export *v) {
    for (size_t i = 0; i < sizeof v->own / sizeof *v->own; i++) free(v->own[i]);
    memset(v, 0, sizeof *v);
}

static lb_status export_spm(const lb_tokenizer *t, const lb_spm *m, int32_t n, lb_vocab_export *o, lb_error *err) {
    const char **tok = calloc((size_t)n, sizeof *tok);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char *extra = malloc((size_t)(n - m->n) * 24 + 1);
    char *pool = malloc(m->pool_len + 1); /* the export outlives the tokenizer */
    o->own[0] = tok, o->own[1] = lens, o->own[2] = scores, o->own[3] = types, o->own[4] = extra, o->own[5] = pool;
    if (!tok || !lens || !scores || !types || !extra || !pool) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    memcpy(pool, m->pool, m->pool_len);
    for (int32_t i = 0; i < m->n; i++) {
        tok[i] = pool + m->pieces[i].off;
        lens[i] = m->pieces[i].len;
        scores[i] = m->pieces[i].score;
        types[i] = m->pieces[i].type;
    }
    char *p = extra;
    for (int32_t i = m->n; i < n; i++) {
        int k = snprintf(p, 24, "<unused_%d>", i - m->n);
        tok[i] = p, lens[i] = (size_t)k, scores[i] = 0, types[i] = LB_SPM_UNUSED;
        p += k;
    }
    o->model = "llama";
    lb_vocab_desc *d = &o->d;
    d->n_tokens = (size_t)n;
    d->tokens = tok, d->token_lens = lens, d->scores = scores, d->types = types;
    d->bos_id = t->bos_id, d->eos_id = t->eos_id, d->unk_id = m->unk_id, d->pad_id = t->pad_id, d->eot_id = t->eot_id;
    d->add_bos = m->add_bos, d->add_eos = m->add_eos;
    return LB_OK;
}

lb_status lb_tokenizer_export(const lb_tokenizer *t, int32_t pad_to, lb_vocab_export *out, lb_error *err) {
    memset(out, 0, sizeof *out);
    int32_t n = t->n_vocab > pad_to ? t->n_vocab : pad_to;
    lb_status s;
    if (!strcmp(t->ops->kind, "sentencepiece")) s = export_spm(t, t->impl, n, out, err);
    else s = lb_fail(err, LB_ERR_UNSUPPORTED, "exporting a %s vocabulary to GGUF is not supported yet", t->ops->kind);
    if (s) lb_vocab_export_free(out);
    return s;
}
