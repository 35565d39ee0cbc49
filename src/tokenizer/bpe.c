/* Hugging Face BPE tokenizer: encode and decode. Added tokens are cut out of the raw text
 * first (leftmost, longest), the text between them is normalized, pre-tokenized and merged
 * piece by piece, and add_special wraps the result in the post-processor's ids. Decoding is a
 * table lookup: the decoder chain runs over every token once, at load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/bpe_model.h"

lb_bpe *lb_bpe_new(const char *name) {
    lb_bpe *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->name = strdup(name ? name : "tokenizer.json");
    if (!b->name) {
        free(b);
        return NULL;
    }
    b->unk_id = -1;
    return b;
}

void lb_bpe_free(void *impl) {
    lb_bpe *b = impl;
    if (!b) return;
    lb_bpe_vocab_free(&b->vocab);
    for (size_t i = 0; i < b->n_added; i++) free(b->added[i].content);
    free(b->added);
    free(b->is_special);
    for (size_t i = 0; i < b->n_norms; i++) {
        lb_bpe_pattern_free(&b->norms[i].pat);
        free(b->norms[i].text);
    }
    free(b->norms);
    for (size_t i = 0; i < b->n_pres; i++) lb_bpe_pattern_free(&b->pres[i].pat);
    free(b->pres);
    if (b->word_re) pcre2_code_free(b->word_re);
    if (b->space_re) pcre2_code_free(b->space_re);
    if (b->mctx) pcre2_match_context_free(b->mctx);
    free(b->prefix);
    free(b->suffix);
    free(b->dec_blob);
    free(b->dec);
    free(b->name);
    free(b);
}

lb_status lb_bpe_add_added(lb_bpe *b, const char *s, size_t len, int32_t id, int special, int lstrip, int rstrip,
                           int single_word, lb_error *err) {
    if (len == 0) return lb_fail(err, LB_ERR_FORMAT, "%s: added token %d has empty content", b->name, (int)id);
    lb_bpe_added *a = realloc(b->added, (b->n_added + 1) * sizeof *a);
    if (!a) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    b->added = a;
    char *c = malloc(len + 1);
    if (!c) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    b->added[b->n_added++] = (lb_bpe_added){c, len, id, special, lstrip, rstrip, single_word};
    return LB_OK;
}

static int added_cmp(const void *pa, const void *pb) {
    const lb_bpe_added *a = pa, *b = pb;
    unsigned ca = (unsigned char)a->content[0], cb = (unsigned char)b->content[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return a->id < b->id ? -1 : a->id > b->id;
}

static pcre2_code *compile_small(const char *pat) {
    int code;
    PCRE2_SIZE at;
    return pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_ANCHORED,
                         &code, &at, NULL);
}

lb_status lb_bpe_finish(lb_bpe *b, lb_error *err) {
    int32_t n = b->vocab.n;
    if (b->n_added) qsort(b->added, b->n_added, sizeof *b->added, added_cmp);
    size_t k = 0;
    for (unsigned c = 0; c < 256; c++) {
        b->added_start[c] = (uint32_t)k;
        while (k < b->n_added && (unsigned char)b->added[k].content[0] == c) k++;
    }
    b->added_start[256] = (uint32_t)k;
    b->is_special = calloc(n > 0 ? (size_t)n : 1, 1);
    if (!b->is_special) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    int need_re = 0;
    for (size_t i = 0; i < b->n_added; i++) {
        if (b->added[i].id < 0 || b->added[i].id >= n)
            return lb_fail(err, LB_ERR_FORMAT, "%s: added token id %d outside the vocabulary", b->name, (int)b->added[i].id);
        if (b->added[i].special) b->is_special[b->added[i].id] = 1;
        need_re |= b->added[i].lstrip | b->added[i].rstrip | b->added[i].single_word;
    }
    if (need_re) {
        b->word_re = compile_small("\\w");
        b->space_re = compile_small("\\s");
        if (!b->word_re || !b->space_re) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    for (unsigned c = 0; c < 256; c++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", c);
        b->byte_ids[c] = lb_bpe_vocab_find(&b->vocab, s, 6);
    }
    /* Bound the regex engine on hostile patterns from the file. */
    b->mctx = pcre2_match_context_create(NULL);
    if (!b->mctx) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    pcre2_set_match_limit(b->mctx, 10000000);
    pcre2_set_depth_limit(b->mctx, 100000);
    pcre2_set_heap_limit(b->mctx, 64 * 1024);
    return LB_OK;
}

/* ---- decoding ---- */
typedef struct dbuf { char *p; size_t n, cap; } dbuf;

static int dbuf_put(dbuf *d, const char *s, size_t n) {
    if (d->n + n > d->cap) {
        size_t c = d->cap ? d->cap : 64;
        while (c < d->n + n) c *= 2;
        char *p = realloc(d->p, c);
        if (!p) return 0;
        d->p = p;
        d->cap = c;
    }
    if (n) memcpy(d->p + d->n, s, n);
    d->n += n;
    return 1;
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One decoder step over one token: src -> dst. */
static int dec_step(const lb_bpe_dec *d, int first, int fused, const dbuf *src, dbuf *dst) {
    const char *s = src->p;
    size_t n = src->n;
    dst->n = 0;
    switch (d->kind) {
    case LB_DEC_FUSE: return dbuf_put(dst, s, n);
    case LB_DEC_SPACE_JOIN: return (first || dbuf_put(dst, " ", 1)) && dbuf_put(dst, s, n);
    case LB_DEC_BYTELEVEL:
        for (size_t i = 0; i < n;) {
            size_t l;
            uint32_t cp = lb_utf8_decode((const unsigned char *)s + i, n - i, &l);
            int byte = lb_bpe_char_byte(cp);
            char c = (char)byte;
            if (!(byte >= 0 ? dbuf_put(dst, &c, 1) : dbuf_put(dst, s + i, l))) return 0;
            i += l;
        }
        return 1;
    case LB_DEC_BYTEFALLBACK:
        if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hexv(s[3]) >= 0 && hexv(s[4]) >= 0) {
            char c = (char)(hexv(s[3]) * 16 + hexv(s[4]));
            return dbuf_put(dst, &c, 1);
        }
        return dbuf_put(dst, s, n);
    case LB_DEC_REPLACE:
    case LB_DEC_METASPACE:
        for (size_t i = 0; i < n;) {
            if (d->pat_len && n - i >= d->pat_len && memcmp(s + i, d->pat, d->pat_len) == 0) {
                int drop = d->kind == LB_DEC_METASPACE && first && d->strip_first;
                const char *rep = d->kind == LB_DEC_METASPACE ? " " : d->content;
                size_t rl = d->kind == LB_DEC_METASPACE ? 1 : d->content_len;
                if (!drop && !dbuf_put(dst, rep, rl)) return 0;
                i += d->pat_len;
            } else {
                if (!dbuf_put(dst, s + i, 1)) return 0;
                i++;
            }
        }
        return 1;
    case LB_DEC_STRIP: {
        size_t a = 0, e = n;
        int cut_start = !fused || first;
        for (int k = 0; cut_start && k < d->start && d->pat_len && e - a >= d->pat_len &&
                        memcmp(s + a, d->pat, d->pat_len) == 0; k++)
            a += d->pat_len;
        for (int k = 0; !fused && k < d->stop && d->pat_len && e - a >= d->pat_len &&
                        memcmp(s + e - d->pat_len, d->pat, d->pat_len) == 0; k++)
            e -= d->pat_len;
        return dbuf_put(dst, s + a, e - a);
    }
    }
    return 0;
}

static int dec_run(const lb_bpe_dec *chain, size_t n_chain, int first, const char *tok, size_t len, dbuf *a, dbuf *b) {
    a->n = 0;
    if (!dbuf_put(a, tok, len)) return 0;
    int fused = 0;
    for (size_t i = 0; i < n_chain; i++) {
        if (!dec_step(&chain[i], first, fused, a, b)) return 0;
        dbuf t = *a;
        *a = *b;
        *b = t;
        if (chain[i].kind == LB_DEC_FUSE || chain[i].kind == LB_DEC_BYTELEVEL) fused = 1;
    }
    return 1;
}

static const lb_bpe_added *added_by_id(const lb_bpe *b, int32_t id) {
    for (size_t i = 0; i < b->n_added; i++)
        if (b->added[i].id == id) return &b->added[i];
    return NULL;
}

lb_status lb_bpe_build_decoder(lb_bpe *b, const lb_bpe_dec *chain, size_t n_chain, lb_error *err) {
    int32_t n = b->vocab.n;
    const char **added_str = calloc(n > 0 ? (size_t)n : 1, sizeof *added_str);
    size_t *added_len = calloc(n > 0 ? (size_t)n : 1, sizeof *added_len);
    b->dec = calloc(n > 0 ? (size_t)n : 1, sizeof *b->dec);
    dbuf blob = {0}, x = {0}, y = {0};
    lb_status st = LB_OK;
    if (!added_str || !added_len || !b->dec) goto nomem;
    for (size_t i = 0; i < b->n_added; i++) {
        const lb_bpe_added *a = added_by_id(b, b->added[i].id); /* the first listed wins */
        added_str[a->id] = a->content;
        added_len[a->id] = a->len;
    }
    for (int32_t id = 0; id < n; id++) {
        const char *s = added_str[id];
        size_t len = added_len[id];
        if (!s) {
            if (b->vocab.len[id] == UINT32_MAX) continue;
            s = b->vocab.blob + b->vocab.off[id];
            len = b->vocab.len[id];
        }
        if (!dec_run(chain, n_chain, 0, s, len, &x, &y)) goto nomem;
        size_t off = blob.n;
        if (!dbuf_put(&blob, x.p, x.n)) goto nomem;
        size_t dlen = x.n;
        if (!dec_run(chain, n_chain, 1, s, len, &x, &y)) goto nomem;
        size_t foff = off;
        if (x.n != dlen || memcmp(x.p, blob.p + off, dlen) != 0) {
            foff = blob.n;
            if (!dbuf_put(&blob, x.p, x.n)) goto nomem;
        }
        if (blob.n >= UINT32_MAX) {
            st = lb_fail(err, LB_ERR_FORMAT, "%s: decoded vocabulary too large", b->name);
            goto out;
        }
        b->dec[id] = (lb_bpe_decoded){(uint32_t)off, (uint32_t)dlen, (uint32_t)foff, (uint32_t)x.n};
    }
    b->dec_blob = blob.p;
    blob.p = NULL;
    goto out;
nomem:
    st = lb_fail(err, LB_ERR_NOMEM, "out of memory building the decoder");
out:
    free(blob.p);
    free(x.p);
    free(y.p);
    free(added_str);
    free(added_len);
    return st;
}

size_t lb_bpe_decode_token_ex(const lb_tokenizer *t, int32_t id, int first, int render_special, char *buf, size_t cap) {
    const lb_bpe *b = t->impl;
    if (id < 0 || id >= b->vocab.n || !b->dec) return 0;
    if (b->is_special[id] && !render_special) return 0;
    const lb_bpe_decoded *d = &b->dec[id];
    size_t off = first ? d->first_off : d->off, len = first ? d->first_len : d->len;
    if (buf && cap) memcpy(buf, b->dec_blob + off, len < cap ? len : cap);
    return len;
}

static size_t bpe_decode_token(const lb_tokenizer *t, int32_t id, int first, char *buf, size_t cap) {
    return lb_bpe_decode_token_ex(t, id, first, 0, buf, cap);
}

/* ---- encoding ---- */
typedef struct enc_ctx {
    const lb_bpe *b;
    pcre2_match_data *md;
    lb_bpe_work work;
    lb_bpe_plist a, c;
} enc_ctx;

static lb_status encode_text(enc_ctx *e, const char *s, size_t len, int at_start, lb_ids *out, lb_error *err) {
    const lb_bpe *b = e->b;
    if (len == 0) return LB_OK;
    char *norm = NULL;
    lb_status st = LB_OK;
    if (b->n_norms) {
        st = lb_bpe_normalize(b->norms, b->n_norms, e->md, b->mctx, s, len, &norm, &len, err);
        if (st) return st;
        s = norm;
    }
    e->a.n = e->a.n_buf = 0;
    if (!lb_bpe_plist_push(&e->a, s, len, at_start)) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < b->n_pres && !st; i++) {
        st = lb_bpe_pretokenize(&b->pres[i], e->md, b->mctx, &e->a, &e->c, err);
        lb_bpe_plist t = e->a;
        e->a = e->c;
        e->c = t;
    }
    for (size_t i = 0; i < e->a.n && !st; i++)
        st = lb_bpe_model_encode(b, &e->work, e->a.buf + e->a.p[i].off, e->a.p[i].len, out, err);
    free(norm);
    return st;
}

static int re_at(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t len, size_t pos) {
    return pos < len && pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, md, NULL) > 0;
}

static size_t prev_char(const char *s, size_t pos) {
    size_t p = pos - 1;
    for (int k = 0; k < 3 && p > 0 && ((unsigned char)s[p] & 0xc0) == 0x80; k++) p--;
    return p;
}

/* Is the match [ms, me) of a single_word token bounded by non-word characters? */
static int word_bounded(const lb_bpe *b, pcre2_match_data *md, const char *s, size_t len, size_t ms, size_t me) {
    if (ms > 0 && re_at(b->word_re, md, s, len, prev_char(s, ms))) return 0;
    return !re_at(b->word_re, md, s, len, me);
}

/* Finds the next added token at or after pos: leftmost, then longest. */
static const lb_bpe_added *next_added(const lb_bpe *b, const char *s, size_t len, size_t pos, size_t *at) {
    for (size_t i = pos; i < len; i++) {
        unsigned c = (unsigned char)s[i];
        for (uint32_t k = b->added_start[c]; k < b->added_start[c + 1]; k++) {
            const lb_bpe_added *a = &b->added[k];
            if (a->len <= len - i && memcmp(s + i, a->content, a->len) == 0) {
                *at = i;
                return a;
            }
        }
    }
    return NULL;
}

static lb_status bpe_encode(const lb_tokenizer *t, const char *text, size_t len, int add_special, lb_ids *out,
                            lb_error *err) {
    const lb_bpe *b = t->impl;
    enc_ctx e = {.b = b};
    lb_status st = LB_OK;
    e.md = pcre2_match_data_create(1, NULL);
    if (!e.md) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; add_special && i < b->n_prefix; i++)
        if (!lb_ids_push(out, b->prefix[i])) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    size_t seg = 0, pos = 0, ms;
    const lb_bpe_added *a;
    while (!st && (a = next_added(b, text, len, pos, &ms))) {
        size_t me = ms + a->len;
        if (a->single_word && !word_bounded(b, e.md, text, len, ms, me)) {
            pos = me;
            continue;
        }
        while (a->lstrip && ms > seg && re_at(b->space_re, e.md, text, len, prev_char(text, ms))) ms = prev_char(text, ms);
        while (a->rstrip && re_at(b->space_re, e.md, text, len, me)) me += lb_utf8_len((const unsigned char *)text + me, len - me);
        st = encode_text(&e, text + seg, ms - seg, seg == 0, out, err);
        if (!st && !lb_ids_push(out, a->id)) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        seg = pos = me;
    }
    if (!st) st = encode_text(&e, text + seg, len - seg, seg == 0, out, err);
    for (size_t i = 0; !st && add_special && i < b->n_suffix; i++)
        if (!lb_ids_push(out, b->suffix[i])) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    pcre2_match_data_free(e.md);
    lb_bpe_work_free(&e.work);
    lb_bpe_plist_free(&e.a);
    lb_bpe_plist_free(&e.c);
    return st;
}

const lb_tokenizer_ops lb_bpe_ops = {"bpe", bpe_encode, bpe_decode_token, lb_bpe_free};

lb_status lb_bpe_wrap(lb_bpe *b, lb_tokenizer **out, lb_error *err) {
    lb_tokenizer *t = lb_tokenizer_new(&lb_bpe_ops, b, b->vocab.n);
    if (!t) {
        lb_bpe_free(b);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    *out = t;
    return LB_OK;
}

/* The GPT-2 pattern (ByteLevel pre-tokenizer), and those of Llama 3 and Qwen2 for GGUF files,
 * whose tokenizer.ggml.pre only names them. */
const char lb_bpe_re_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char lb_bpe_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char lb_bpe_re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
