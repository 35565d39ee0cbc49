/* Exports a loaded tokenizer's vocabulary in the GGUF tokenizer.ggml.* shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe.h"
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

/* ---- byte-level BPE -> model "gpt2" ---------------------------------------------------- */

/* Length of the match of re at the start of s (-1: none). */
static long match_len(const pcre2_code *re, const char *s) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return -1;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    long n = rc > 0 && ov[0] == 0 ? (long)(ov[1] - ov[0]) : -1;
    pcre2_match_data_free(md);
    return n;
}

/* GGUF stores the pre-tokenizer only by name: recognise the pipelines bpe_gguf.c builds for each
 * name (the regex sources are not kept, so digits tell llama3's 1-3 grouping from qwen2's). */
static const char *pre_name(const lb_bpe *b) {
    const lb_bpe_pre *p = b->pres;
    if (b->n_norms) return NULL;
    if (b->n_pres == 1 && p[0].kind == LB_PRE_BYTELEVEL && p[0].pat.re) return "gpt2";
    if (b->n_pres != 2 || p[0].kind != LB_PRE_SPLIT || p[0].behavior != LB_SPLIT_ISOLATED || p[0].invert || !p[0].pat.re ||
        p[1].kind != LB_PRE_BYTELEVEL)
        return NULL;
    long digits = match_len(p[0].pat.re, "12345"), word = match_len(p[0].pat.re, "Hello");
    if (p[1].pat.re && digits == 1 && word < 0) return "smollm"; /* \p{N} isolated, then GPT-2 ByteLevel */
    if (!p[1].pat.re && digits == 3) return "llama-bpe";
    if (!p[1].pat.re && digits == 1 && word == 5) return "qwen2";
    return NULL;
}

typedef struct merge_ent { uint32_t rank; int32_t a, b; } merge_ent;
static int merge_cmp(const void *x, const void *y) {
    const merge_ent *a = x, *b = y;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

static lb_status export_bpe(const lb_tokenizer *t, const lb_bpe *b, int32_t n, lb_vocab_export *o, lb_error *err) {
    const lb_bpe_vocab *v = &b->vocab;
    const char *pre = pre_name(b);
    if (!pre || b->byte_fallback)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: this BPE pipeline (normalizers, pre-tokenizers, byte fallback) has no GGUF "
                       "tokenizer.ggml.pre name lowbit knows (gpt2, smollm, llama-bpe, qwen2)", b->name);
    size_t nm = v->m_count;
    const char **tok = calloc((size_t)n, sizeof *tok);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int32_t *types = calloc((size_t)n, sizeof *types);
    merge_ent *me = malloc((nm ? nm : 1) * sizeof *me);
    const char **mstr = calloc(nm ? nm : 1, sizeof *mstr);
    size_t *mlen = calloc(nm ? nm : 1, sizeof *mlen);
    char *extra = malloc((size_t)n * 16 + 1);
    o->own[0] = tok, o->own[1] = lens, o->own[2] = types, o->own[3] = me, o->own[4] = mstr, o->own[5] = mlen, o->own[6] = extra;
    size_t mpool = 0;
    for (size_t i = 0; i <= v->m_mask; i++)
        if (v->mk[i] != UINT64_MAX) mpool += v->len[(int32_t)(v->mk[i] >> 32)] + v->len[(int32_t)(uint32_t)v->mk[i]] + 1;
    char *mp = malloc(mpool + 1);
    o->own[7] = mp;
    if (!tok || !lens || !types || !me || !mstr || !mlen || !extra || !mp) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    char *x = extra;
    for (int32_t i = 0; i < n; i++) {
        types[i] = 1;
        if (i < v->n && v->len[i] != UINT32_MAX) {
            tok[i] = v->blob + v->off[i], lens[i] = v->len[i];
        } else {
            int k = snprintf(x, 16, "[PAD%d]", (int)i); /* ids no token names, as llama.cpp's converter fills them */
            tok[i] = x, lens[i] = (size_t)k, types[i] = 5;
            x += k;
        }
    }
    for (size_t i = 0; i < b->n_added; i++) {
        int32_t id = b->added[i].id;
        if (id < 0 || id >= n) continue;
        tok[id] = b->added[i].content, lens[id] = b->added[i].len;
        types[id] = b->added[i].special ? 3 : 4;
    }
    size_t k = 0;
    for (size_t i = 0; i <= v->m_mask; i++)
        if (v->mk[i] != UINT64_MAX) me[k++] = (merge_ent){v->mrank[i], (int32_t)(v->mk[i] >> 32), (int32_t)(uint32_t)v->mk[i]};
    qsort(me, k, sizeof *me, merge_cmp);
    for (size_t i = 0; i < k; i++) {
        size_t la = v->len[me[i].a], lb_ = v->len[me[i].b];
        memcpy(mp, v->blob + v->off[me[i].a], la);
        mp[la] = ' ';
        memcpy(mp + la + 1, v->blob + v->off[me[i].b], lb_);
        mstr[i] = mp, mlen[i] = la + 1 + lb_;
        mp += la + 1 + lb_;
    }
    o->model = "gpt2";
    lb_vocab_desc *d = &o->d;
    d->n_tokens = (size_t)n;
    d->tokens = tok, d->token_lens = lens, d->types = types;
    d->n_merges = k, d->merges = mstr, d->merge_lens = mlen;
    d->pre = pre;
    d->bos_id = t->bos_id, d->eos_id = t->eos_id, d->unk_id = t->unk_id, d->pad_id = t->pad_id, d->eot_id = t->eot_id;
    d->add_bos = b->n_prefix == 1 && b->prefix[0] == t->bos_id;
    d->add_eos = b->n_suffix == 1 && b->suffix[0] == t->eos_id;
    if (b->n_prefix > 1 || b->n_suffix > 1 || (b->n_prefix && !d->add_bos) || (b->n_suffix && !d->add_eos))
        lb_warn("%s: the post-processor adds more than BOS/EOS; GGUF keeps only add_bos/add_eos", b->name);
    return LB_OK;
}

lb_status lb_tokenizer_export(const lb_tokenizer *t, int32_t pad_to, lb_vocab_export *out, lb_error *err) {
    memset(out, 0, sizeof *out);
    int32_t n = t->n_vocab > pad_to ? t->n_vocab : pad_to;
    lb_status s;
    if (!strcmp(t->ops->kind, "sentencepiece")) s = export_spm(t, t->impl, n, out, err);
    else if (!strcmp(t->ops->kind, "bpe")) s = export_bpe(t, t->impl, n, out, err);
    else s = lb_fail(err, LB_ERR_UNSUPPORTED, "exporting a %s vocabulary to GGUF is not supported yet", t->ops->kind);
    if (s) lb_vocab_export_free(out);
    return s;
}
