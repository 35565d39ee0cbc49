/* Normalizers and pre-tokenizers of tokenizer.json, with the Hugging Face split semantics:
 * a pattern cuts a piece into alternating match / non-match segments, then a behavior decides
 * what becomes a piece (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous).
 * Regexes run through PCRE2 in UTF mode with Unicode properties; invalid UTF-8 in the text is
 * allowed (PCRE2_MATCH_INVALID_UTF): it never matches, so it lands in non-match segments. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe.h"

void lb_bpe_plist_free(lb_bpe_plist *l) {
    free(l->buf);
    free(l->p);
    memset(l, 0, sizeof *l);
}

static int buf_reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    char *b = realloc(*buf, c);
    if (!b) return 0;
    *buf = b;
    *cap = c;
    return 1;
}

/* Appends bytes to the buffer without starting a piece (pieces are made by plist_close). */
static int plist_append(lb_bpe_plist *l, const char *s, size_t len) {
    if (!buf_reserve(&l->buf, &l->cap_buf, l->n_buf + len + 1)) return 0;
    if (len) memcpy(l->buf + l->n_buf, s, len);
    l->n_buf += len;
    return 1;
}

/* Makes the bytes from off to the end of the buffer one piece (dropped when empty). */
static int plist_close(lb_bpe_plist *l, size_t off, int at_start) {
    if (l->n_buf == off) return 1;
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 64;
        lb_bpe_piece *p = realloc(l->p, c * sizeof *p);
        if (!p) return 0;
        l->p = p;
        l->cap = c;
    }
    l->p[l->n++] = (lb_bpe_piece){off, l->n_buf - off, at_start};
    return 1;
}

int lb_bpe_plist_push(lb_bpe_plist *l, const char *s, size_t len, int at_start) {
    size_t off = l->n_buf;
    return plist_append(l, s, len) && plist_close(l, off, at_start);
}

lb_status lb_bpe_pattern_compile(lb_bpe_pattern *p, const char *src, size_t len, int is_regex,
                                 const char *name, const char *field, lb_error *err) {
    memset(p, 0, sizeof *p);
    if (!is_regex) {
        p->lit = malloc(len + 1);
        if (!p->lit) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        memcpy(p->lit, src, len);
        p->lit[len] = 0;
        p->lit_len = len;
        return LB_OK;
    }
    int code;
    PCRE2_SIZE at;
    p->re = pcre2_compile((PCRE2_SPTR)src, len, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return lb_fail(err, LB_ERR_FORMAT, "%s: %s: regex does not compile at offset %zu: %s", name, field,
                       (size_t)at, (const char *)msg);
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter works too */
    return LB_OK;
}

void lb_bpe_pattern_free(lb_bpe_pattern *p) {
    if (p->re) pcre2_code_free(p->re);
    free(p->lit);
    memset(p, 0, sizeof *p);
}

/* ---- finding matches ---- */
typedef struct seg { size_t s, e; int m; } seg;
typedef struct segs { seg *v; size_t n, cap; } segs;

static int segs_push(segs *a, size_t s, size_t e, int m) {
    if (a->n == a->cap) {
        size_t c = a->cap ? a->cap * 2 : 32;
        seg *v = realloc(a->v, c * sizeof *v);
        if (!v) return 0;
        a->v = v;
        a->cap = c;
    }
    a->v[a->n++] = (seg){s, e, m};
    return 1;
}

/* One regex search from pos; returns 1 with [*ms, *me), 0 for no match, <0 on error. */
static int re_next(const pcre2_code *re, pcre2_match_data *md, pcre2_match_context *mctx,
                   const char *s, size_t len, size_t pos, size_t *ms, size_t *me) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, md, mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_JIT, md, mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (ov[0] < pos || ov[1] < ov[0] || ov[1] > len) return -1; /* \K games */
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

/* Cuts s into match / non-match segments covering it. */
static lb_status find_segments(const lb_bpe_pattern *p, pcre2_match_data *md, pcre2_match_context *mctx,
                               const char *s, size_t len, segs *out, lb_error *err) {
    out->n = 0;
    size_t prev = 0, pos = 0;
    while (pos <= len) {
        size_t ms, me;
        if (p->re) {
            int r = re_next(p->re, md, mctx, s, len, pos, &ms, &me);
            if (r == 0) break;
            if (r < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(r, msg, sizeof msg);
                return lb_fail(err, LB_ERR_RANGE, "pre-tokenizer regex failed on the text: %s", (const char *)msg);
            }
        } else {
            if (p->lit_len == 0 || len - pos < p->lit_len) break;
            const char *f = memmem(s + pos, len - pos, p->lit, p->lit_len);
            if (!f) break;
            ms = (size_t)(f - s);
            me = ms + p->lit_len;
        }
        if (ms > prev && !segs_push(out, prev, ms, 0)) goto nomem;
        if (!segs_push(out, ms, me, 1)) goto nomem;
        prev = me;
        if (me > ms) pos = me;
        else if (me < len) pos = me + lb_utf8_len((const unsigned char *)s + me, len - me);
        else break;
    }
    if (prev < len && !segs_push(out, prev, len, 0)) goto nomem;
    return LB_OK;
nomem:
    return lb_fail(err, LB_ERR_NOMEM, "out of memory");
}

/* Applies a split behavior in place: afterwards every segment is one piece. */
static void apply_behavior(segs *a, lb_split_behavior b, int invert) {
    if (invert)
        for (size_t i = 0; i < a->n; i++) a->v[i].m = !a->v[i].m;
    size_t k = 0;
    int prev = 0;
    switch (b) {
    case LB_SPLIT_ISOLATED: return;
    case LB_SPLIT_REMOVED:
        for (size_t i = 0; i < a->n; i++)
            if (!a->v[i].m) a->v[k++] = a->v[i];
        break;
    case LB_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < a->n; i++) {
            if (a->v[i].m && !prev && k > 0) a->v[k - 1].e = a->v[i].e;
            else a->v[k++] = a->v[i];
            prev = a->v[i].m;
        }
        break;
    case LB_SPLIT_MERGED_NEXT: /* the mirror image: walk backwards, keep the order */
        k = a->n;
        for (size_t i = a->n; i-- > 0;) {
            if (a->v[i].m && !prev && k < a->n) a->v[k].s = a->v[i].s;
            else a->v[--k] = a->v[i];
            prev = a->v[i].m;
        }
        memmove(a->v, a->v + k, (a->n - k) * sizeof *a->v);
        k = a->n - k;
        break;
    case LB_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < a->n; i++) {
            if (k > 0 && a->v[i].m == prev) a->v[k - 1].e = a->v[i].e;
            else a->v[k++] = a->v[i];
            prev = a->v[i].m;
        }
        break;
    }
    a->n = k;
}

/* Splits s with p and behavior b, pushing the pieces (bytes transformed by map when set). */
static lb_status split_push(const lb_bpe_pattern *p, lb_split_behavior b, int invert, pcre2_match_data *md,
                            pcre2_match_context *mctx, const char *s, size_t len, int at_start, int bytelevel,
                            segs *sg, lb_bpe_plist *out, lb_error *err) {
    lb_status st = find_segments(p, md, mctx, s, len, sg, err);
    if (st) return st;
    apply_behavior(sg, b, invert);
    for (size_t i = 0; i < sg->n; i++) {
        size_t off = out->n_buf;
        if (!bytelevel) {
            if (!plist_append(out, s + sg->v[i].s, sg->v[i].e - sg->v[i].s)) goto nomem;
        } else {
            for (size_t j = sg->v[i].s; j < sg->v[i].e; j++) {
                char c[2];
                if (!plist_append(out, c, (size_t)lb_bpe_byte_char((unsigned char)s[j], c))) goto nomem;
            }
        }
        if (!plist_close(out, off, at_start && sg->v[i].s == 0)) goto nomem;
    }
    return LB_OK;
nomem:
    return lb_fail(err, LB_ERR_NOMEM, "out of memory");
}

static lb_status bytelevel_piece(const lb_bpe_pre *pre, pcre2_match_data *md, pcre2_match_context *mctx,
                                 const char *s, size_t len, int at_start, segs *sg, char **tmp, size_t *tmp_cap,
                                 lb_bpe_plist *out, lb_error *err) {
    if (pre->add_prefix_space && s[0] != ' ') {
        if (!buf_reserve(tmp, tmp_cap, len + 1)) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        (*tmp)[0] = ' ';
        memcpy(*tmp + 1, s, len);
        s = *tmp;
        len++;
    }
    if (pre->pat.re) return split_push(&pre->pat, LB_SPLIT_ISOLATED, 0, md, mctx, s, len, at_start, 1, sg, out, err);
    size_t off = out->n_buf;
    for (size_t j = 0; j < len; j++) {
        char c[2];
        if (!plist_append(out, c, (size_t)lb_bpe_byte_char((unsigned char)s[j], c)))
            return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    if (!plist_close(out, off, at_start)) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    return LB_OK;
}

static lb_status metaspace_piece(const lb_bpe_pre *pre, pcre2_match_data *md, pcre2_match_context *mctx,
                                 const char *s, size_t len, int at_start, segs *sg, char **tmp, size_t *tmp_cap,
                                 lb_bpe_plist *out, lb_error *err) {
    size_t need = 0;
    if (!lb_mul_ok(len + 1, pre->rep_len, &need) || !buf_reserve(tmp, tmp_cap, need))
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') memcpy(*tmp + n, pre->rep, pre->rep_len), n += pre->rep_len;
        else (*tmp)[n++] = s[i];
    }
    int starts = n >= pre->rep_len && memcmp(*tmp, pre->rep, pre->rep_len) == 0;
    int prepend = !starts && (pre->scheme == LB_PREPEND_ALWAYS || (pre->scheme == LB_PREPEND_FIRST && at_start));
    if (prepend) {
        memmove(*tmp + pre->rep_len, *tmp, n);
        memcpy(*tmp, pre->rep, pre->rep_len);
        n += pre->rep_len;
    }
    if (!pre->split) {
        if (!lb_bpe_plist_push(out, *tmp, n, at_start)) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        return LB_OK;
    }
    lb_bpe_pattern p = {.lit = (char *)pre->rep, .lit_len = pre->rep_len};
    return split_push(&p, LB_SPLIT_MERGED_NEXT, 0, md, mctx, *tmp, n, at_start, 0, sg, out, err);
}

lb_status lb_bpe_pretokenize(const lb_bpe_pre *pre, pcre2_match_data *md, pcre2_match_context *mctx,
                             const lb_bpe_plist *in, lb_bpe_plist *out, lb_error *err) {
    segs sg = {0};
    char *tmp = NULL;
    size_t tmp_cap = 0;
    lb_status st = LB_OK;
    out->n = out->n_buf = 0;
    for (size_t i = 0; i < in->n && !st; i++) {
        const char *s = in->buf + in->p[i].off;
        size_t len = in->p[i].len;
        int at_start = in->p[i].at_start;
        switch (pre->kind) {
        case LB_PRE_SPLIT:
            st = split_push(&pre->pat, pre->behavior, pre->invert, md, mctx, s, len, at_start, 0, &sg, out, err);
            break;
        case LB_PRE_BYTELEVEL: st = bytelevel_piece(pre, md, mctx, s, len, at_start, &sg, &tmp, &tmp_cap, out, err); break;
        case LB_PRE_METASPACE: st = metaspace_piece(pre, md, mctx, s, len, at_start, &sg, &tmp, &tmp_cap, out, err); break;
        }
    }
    free(sg.v);
    free(tmp);
    return st;
}

/* ---- normalizers ---- */
static lb_status replace_all(const lb_bpe_norm *nm, pcre2_match_data *md, pcre2_match_context *mctx,
                             const char *s, size_t len, lb_bpe_plist *out, lb_error *err) {
    segs sg = {0};
    lb_status st = find_segments(&nm->pat, md, mctx, s, len, &sg, err);
    for (size_t i = 0; i < sg.n && !st; i++) {
        int ok = sg.v[i].m ? plist_append(out, nm->text, nm->text_len)
                           : plist_append(out, s + sg.v[i].s, sg.v[i].e - sg.v[i].s);
        if (!ok) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    free(sg.v);
    return st;
}

lb_status lb_bpe_normalize(const lb_bpe_norm *norms, size_t n_norms, pcre2_match_data *md, pcre2_match_context *mctx,
                           const char *s, size_t len, char **out, size_t *out_len, lb_error *err) {
    lb_bpe_plist a = {0}, b = {0};
    lb_status st = LB_OK;
    if (!plist_append(&a, s, len)) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n_norms && !st; i++) {
        const lb_bpe_norm *nm = &norms[i];
        b.n_buf = 0;
        switch (nm->kind) {
        case LB_NORM_IDENTITY: continue;
        case LB_NORM_PREPEND:
            if (a.n_buf && (!plist_append(&b, nm->text, nm->text_len) || !plist_append(&b, a.buf, a.n_buf)))
                st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
            if (!a.n_buf) continue;
            break;
        case LB_NORM_REPLACE: st = replace_all(nm, md, mctx, a.buf, a.n_buf, &b, err); break;
        }
        lb_bpe_plist t = a;
        a = b;
        b = t;
    }
    lb_bpe_plist_free(&b);
    if (st) {
        lb_bpe_plist_free(&a);
        return st;
    }
    *out = a.buf;
    *out_len = a.n_buf;
    free(a.p);
    return LB_OK;
}
