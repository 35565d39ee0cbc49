/* tokenizer.json (Hugging Face tokenizers) -> lb_bpe. Every field is type-checked; errors
 * name the file and the JSON path of the field. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "tokenizer/bpe.h"

#define MAX_ID (1 << 22)

typedef struct jctx {
    lb_bpe *b;
    const char *name;
    lb_error *err;
} jctx;

static lb_status bad(jctx *c, const char *field, const char *what) {
    return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s: %s", c->name, field, what);
}

/* Optional bool: absent or null keeps *out. */
static lb_status get_bool(jctx *c, const cJSON *o, const char *key, const char *path, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return LB_OK;
    if (!cJSON_IsBool(v)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s.%s: expected true or false", c->name, path, key);
    *out = cJSON_IsTrue(v);
    return LB_OK;
}

/* Optional string: absent or null gives NULL. */
static lb_status get_str(jctx *c, const cJSON *o, const char *key, const char *path, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return LB_OK;
    if (!cJSON_IsString(v)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s.%s: expected a string", c->name, path, key);
    *out = v->valuestring;
    return LB_OK;
}

static lb_status get_int(jctx *c, const cJSON *v, const char *path, long lo, long hi, long *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s: expected an integer in %ld..%ld", c->name, path, lo, hi);
    *out = (long)v->valuedouble;
    return LB_OK;
}

static const char *type_of(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* {"String": "..."} or {"Regex": "..."} */
static lb_status get_pattern(jctx *c, const cJSON *o, const char *path, lb_bpe_pattern *p) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *v = s ? s : r;
    if (!cJSON_IsObject(pat) || !cJSON_IsString(v))
        return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", c->name, path);
    return lb_bpe_pattern_compile(p, v->valuestring, strlen(v->valuestring), v == r, c->name, path, c->err);
}

static void *grow(void *p, size_t n, size_t size) { return realloc(p, (n + 1) * size); }

/* ---- normalizer ---- */
static lb_status parse_normalizer(jctx *c, const cJSON *o, const char *path, int depth) {
    if (!o || cJSON_IsNull(o)) return LB_OK;
    const char *t = type_of(o);
    if (!cJSON_IsObject(o) || !t) return bad(c, path, "expected an object with a \"type\"");
    if (depth > 8) return bad(c, path, "nested too deeply");
    if (!strcmp(t, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "normalizers"), *e;
        if (!cJSON_IsArray(a)) return bad(c, path, "Sequence without a \"normalizers\" array");
        cJSON_ArrayForEach(e, a) {
            lb_status st = parse_normalizer(c, e, path, depth + 1);
            if (st) return st;
        }
        return LB_OK;
    }
    lb_bpe_norm nm = {0};
    lb_status st = LB_OK;
    const char *text = NULL;
    if (!strcmp(t, "Prepend")) {
        nm.kind = LB_NORM_PREPEND;
        if ((st = get_str(c, o, "prepend", path, &text))) return st;
        if (!text) return bad(c, path, "Prepend without \"prepend\"");
    } else if (!strcmp(t, "Replace")) {
        nm.kind = LB_NORM_REPLACE;
        if ((st = get_str(c, o, "content", path, &text))) return st;
        if (!text) return bad(c, path, "Replace without \"content\"");
        if ((st = get_pattern(c, o, path, &nm.pat))) return st;
    } else if (!strcmp(t, "NFC")) {
        /* Text from files and keyboards is almost always already NFC; composing needs Unicode
         * tables we do not carry. */
        lb_warn("%s: NFC normalizer applied as identity (decomposed input may tokenize differently)", c->name);
        nm.kind = LB_NORM_IDENTITY;
    } else {
        return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: %s: normalizer type \"%s\" not supported", c->name, path, t);
    }
    if (text && !(nm.text = strdup(text))) st = lb_fail(c->err, LB_ERR_NOMEM, "out of memory");
    nm.text_len = text ? strlen(text) : 0;
    lb_bpe_norm *v = st ? NULL : grow(c->b->norms, c->b->n_norms, sizeof *v);
    if (!v) {
        lb_bpe_pattern_free(&nm.pat);
        free(nm.text);
        return st ? st : lb_fail(c->err, LB_ERR_NOMEM, "out of memory");
    }
    c->b->norms = v;
    v[c->b->n_norms++] = nm;
    return LB_OK;
}

/* ---- pre-tokenizer ---- */
static lb_status push_pre(jctx *c, lb_bpe_pre *pr) {
    lb_bpe_pre *v = grow(c->b->pres, c->b->n_pres, sizeof *v);
    if (!v) {
        lb_bpe_pattern_free(&pr->pat);
        return lb_fail(c->err, LB_ERR_NOMEM, "out of memory");
    }
    c->b->pres = v;
    v[c->b->n_pres++] = *pr;
    return LB_OK;
}

static lb_status split_re(jctx *c, const char *re, lb_split_behavior beh, int invert, const char *path) {
    lb_bpe_pre pr = {.kind = LB_PRE_SPLIT, .behavior = beh, .invert = invert};
    lb_status st = lb_bpe_pattern_compile(&pr.pat, re, strlen(re), 1, c->name, path, c->err);
    return st ? st : push_pre(c, &pr);
}

static lb_status parse_behavior(jctx *c, const cJSON *o, const char *path, lb_split_behavior *out) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *s;
    lb_status st = get_str(c, o, "behavior", path, &s);
    if (st) return st;
    for (int i = 0; s && i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (lb_split_behavior)i;
            return LB_OK;
        }
    return bad(c, path, "Split \"behavior\" must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

static lb_status parse_metaspace_opts(jctx *c, const cJSON *o, const char *path, char *rep, size_t *rep_len,
                                      lb_prepend_scheme *scheme) {
    const char *r, *ps;
    lb_status st = get_str(c, o, "replacement", path, &r);
    if (!st) st = get_str(c, o, "prepend_scheme", path, &ps);
    if (st) return st;
    size_t l = r ? strlen(r) : 0;
    if (!r || l == 0 || l > 4 || lb_utf8_len((const unsigned char *)r, l) != l)
        return bad(c, path, "Metaspace \"replacement\" must be one character");
    memcpy(rep, r, l);
    *rep_len = l;
    int add_prefix_space = 1; /* the older spelling */
    if ((st = get_bool(c, o, "add_prefix_space", path, &add_prefix_space))) return st;
    *scheme = add_prefix_space ? LB_PREPEND_ALWAYS : LB_PREPEND_NEVER;
    if (ps) {
        if (!strcmp(ps, "always")) *scheme = LB_PREPEND_ALWAYS;
        else if (!strcmp(ps, "first")) *scheme = LB_PREPEND_FIRST;
        else if (!strcmp(ps, "never")) *scheme = LB_PREPEND_NEVER;
        else return bad(c, path, "Metaspace \"prepend_scheme\" must be always, first or never");
    }
    return LB_OK;
}

static lb_status parse_pre(jctx *c, const cJSON *o, const char *path, int depth) {
    if (!o || cJSON_IsNull(o)) return LB_OK;
    const char *t = type_of(o);
    if (!cJSON_IsObject(o) || !t) return bad(c, path, "expected an object with a \"type\"");
    if (depth > 8) return bad(c, path, "nested too deeply");
    lb_status st = LB_OK;
    if (!strcmp(t, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"), *e;
        if (!cJSON_IsArray(a)) return bad(c, path, "Sequence without a \"pretokenizers\" array");
        cJSON_ArrayForEach(e, a) if ((st = parse_pre(c, e, path, depth + 1))) return st;
        return LB_OK;
    }
    lb_bpe_pre pr = {0};
    if (!strcmp(t, "ByteLevel")) {
        int use_regex = 1;
        pr.kind = LB_PRE_BYTELEVEL;
        pr.add_prefix_space = 1;
        if ((st = get_bool(c, o, "add_prefix_space", path, &pr.add_prefix_space)) ||
            (st = get_bool(c, o, "use_regex", path, &use_regex)))
            return st;
        if (use_regex && (st = lb_bpe_pattern_compile(&pr.pat, lb_bpe_re_gpt2, strlen(lb_bpe_re_gpt2), 1, c->name, path, c->err)))
            return st;
        return push_pre(c, &pr);
    }
    if (!strcmp(t, "Split")) {
        pr.kind = LB_PRE_SPLIT;
        if ((st = parse_behavior(c, o, path, &pr.behavior)) || (st = get_bool(c, o, "invert", path, &pr.invert)))
            return st;
        if ((st = get_pattern(c, o, path, &pr.pat))) return st;
        return push_pre(c, &pr);
    }
    if (!strcmp(t, "Metaspace")) {
        pr.kind = LB_PRE_METASPACE;
        pr.split = 1;
        if ((st = parse_metaspace_opts(c, o, path, pr.rep, &pr.rep_len, &pr.scheme)) ||
            (st = get_bool(c, o, "split", path, &pr.split)))
            return st;
        return push_pre(c, &pr);
    }
    if (!strcmp(t, "Digits")) {
        int individual = 0;
        if ((st = get_bool(c, o, "individual_digits", path, &individual))) return st;
        return split_re(c, "\\p{N}", individual ? LB_SPLIT_ISOLATED : LB_SPLIT_CONTIGUOUS, 0, path);
    }
    if (!strcmp(t, "Whitespace")) return split_re(c, "\\w+|[^\\w\\s]+", LB_SPLIT_REMOVED, 1, path);
    if (!strcmp(t, "WhitespaceSplit")) return split_re(c, "\\s+", LB_SPLIT_REMOVED, 0, path);
    return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: %s: pre-tokenizer type \"%s\" not supported", c->name, path, t);
}

/* ---- post-processor ---- */
typedef struct idlist { int32_t *v; size_t n; } idlist;

static lb_status ids_add(jctx *c, idlist *l, long id, const char *path) {
    if (id < 0 || id >= c->b->vocab.n) return bad(c, path, "special token id outside the vocabulary");
    int32_t *v = grow(l->v, l->n, sizeof *v);
    if (!v) return lb_fail(c->err, LB_ERR_NOMEM, "out of memory");
    l->v = v;
    v[l->n++] = (int32_t)id;
    return LB_OK;
}

static lb_status template_ids(jctx *c, const cJSON *o, const char *path, idlist *pre, idlist *suf) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single"), *sp = cJSON_GetObjectItemCaseSensitive(o, "special_tokens"), *e;
    if (!cJSON_IsArray(single)) return bad(c, path, "TemplateProcessing without a \"single\" array");
    int seen_a = 0;
    cJSON_ArrayForEach(e, single) {
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
            seen_a = 1;
            continue;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tok, "id");
        if (!cJSON_IsString(name)) return bad(c, path, "\"single\" item is neither SpecialToken nor Sequence");
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(sp, name->valuestring);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids"), *x;
        if (!cJSON_IsArray(ids)) return bad(c, path, "special token of the template missing from \"special_tokens\"");
        cJSON_ArrayForEach(x, ids) {
            long id = 0;
            lb_status st = get_int(c, x, path, 0, MAX_ID, &id);
            if (!st) st = ids_add(c, seen_a ? suf : pre, id, path);
            if (st) return st;
        }
    }
    return LB_OK;
}

static lb_status pair_id(jctx *c, const cJSON *o, const char *key, const char *path, idlist *l) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    long id = 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2) return bad(c, path, "cls/sep must be [token, id]");
    lb_status st = get_int(c, cJSON_GetArrayItem(a, 1), path, 0, MAX_ID, &id);
    return st ? st : ids_add(c, l, id, path);
}

static lb_status parse_post(jctx *c, const cJSON *o, const char *path, idlist *pre, idlist *suf, int depth) {
    if (!o || cJSON_IsNull(o)) return LB_OK;
    const char *t = type_of(o);
    if (!cJSON_IsObject(o) || !t) return bad(c, path, "expected an object with a \"type\"");
    if (depth > 8) return bad(c, path, "nested too deeply");
    lb_status st = LB_OK;
    idlist p = {0}, s = {0};
    if (!strcmp(t, "ByteLevel")) return LB_OK; /* offsets only */
    if (!strcmp(t, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "processors"), *e;
        if (!cJSON_IsArray(a)) return bad(c, path, "Sequence without a \"processors\" array");
        cJSON_ArrayForEach(e, a) if ((st = parse_post(c, e, path, pre, suf, depth + 1))) return st;
        return LB_OK;
    }
    if (!strcmp(t, "TemplateProcessing")) st = template_ids(c, o, path, &p, &s);
    else if (!strcmp(t, "RobertaProcessing") || !strcmp(t, "BertProcessing")) {
        st = pair_id(c, o, "cls", path, &p);
        if (!st) st = pair_id(c, o, "sep", path, &s);
    } else
        return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: %s: post-processor type \"%s\" not supported", c->name, path, t);
    /* A later processor wraps what the earlier ones produced. */
    for (size_t i = 0; !st && i < pre->n; i++) st = ids_add(c, &p, pre->v[i], path);
    for (size_t i = 0; !st && i < s.n; i++) st = ids_add(c, suf, s.v[i], path);
    if (!st) {
        free(pre->v);
        *pre = p;
        p.v = NULL;
    }
    free(p.v);
    free(s.v);
    return st;
}

/* ---- decoder ---- */
typedef struct declist { lb_bpe_dec *v; size_t n; } declist;

static void declist_free(declist *d) {
    for (size_t i = 0; i < d->n; i++) free(d->v[i].pat), free(d->v[i].content);
    free(d->v);
}

static lb_status dec_push(jctx *c, declist *d, lb_bpe_dec *x, const char *pat, const char *content) {
    lb_bpe_dec *v = grow(d->v, d->n, sizeof *v);
    if (v) d->v = v;
    x->pat = pat ? strdup(pat) : NULL;
    x->content = content ? strdup(content) : NULL;
    if (!v || (pat && !x->pat) || (content && !x->content)) {
        free(x->pat), free(x->content);
        return lb_fail(c->err, LB_ERR_NOMEM, "out of memory");
    }
    x->pat_len = pat ? strlen(pat) : 0;
    x->content_len = content ? strlen(content) : 0;
    d->v[d->n++] = *x;
    return LB_OK;
}

static lb_status parse_decoder(jctx *c, const cJSON *o, const char *path, declist *d, int depth) {
    if (!o || cJSON_IsNull(o)) return LB_OK;
    const char *t = type_of(o);
    if (!cJSON_IsObject(o) || !t) return bad(c, path, "expected an object with a \"type\"");
    if (depth > 8) return bad(c, path, "nested too deeply");
    lb_status st = LB_OK;
    lb_bpe_dec x = {0};
    if (!strcmp(t, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "decoders"), *e;
        if (!cJSON_IsArray(a)) return bad(c, path, "Sequence without a \"decoders\" array");
        cJSON_ArrayForEach(e, a) if ((st = parse_decoder(c, e, path, d, depth + 1))) return st;
        return LB_OK;
    }
    if (!strcmp(t, "ByteLevel")) return x.kind = LB_DEC_BYTELEVEL, dec_push(c, d, &x, NULL, NULL);
    if (!strcmp(t, "ByteFallback")) return x.kind = LB_DEC_BYTEFALLBACK, dec_push(c, d, &x, NULL, NULL);
    if (!strcmp(t, "Fuse")) return x.kind = LB_DEC_FUSE, dec_push(c, d, &x, NULL, NULL);
    if (!strcmp(t, "Replace")) {
        const char *content;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
        if ((st = get_str(c, o, "content", path, &content))) return st;
        if (!cJSON_IsString(s) || !content)
            return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: %s: Replace decoder needs a String pattern and content", c->name, path);
        x.kind = LB_DEC_REPLACE;
        return dec_push(c, d, &x, s->valuestring, content);
    }
    if (!strcmp(t, "Strip")) {
        const char *content;
        long start = 0, stop = 0;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "start"), *b = cJSON_GetObjectItemCaseSensitive(o, "stop");
        if ((st = get_str(c, o, "content", path, &content))) return st;
        if (!content || !*content) return bad(c, path, "Strip without \"content\"");
        if ((a && (st = get_int(c, a, path, 0, 1 << 20, &start))) || (b && (st = get_int(c, b, path, 0, 1 << 20, &stop))))
            return st;
        if (stop) lb_warn("%s: %s: Strip decoder \"stop\" not applied (tokens are decoded one at a time)", c->name, path);
        x.kind = LB_DEC_STRIP;
        x.start = (int)start;
        x.stop = (int)stop;
        return dec_push(c, d, &x, content, NULL);
    }
    if (!strcmp(t, "Metaspace")) {
        char rep[8] = {0};
        size_t rep_len;
        lb_prepend_scheme scheme;
        if ((st = parse_metaspace_opts(c, o, path, rep, &rep_len, &scheme))) return st;
        x.kind = LB_DEC_METASPACE;
        x.strip_first = scheme != LB_PREPEND_NEVER;
        return dec_push(c, d, &x, rep, NULL);
    }
    return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: %s: decoder type \"%s\" not supported", c->name, path, t);
}

/* ---- model ---- */
static lb_status max_ids(jctx *c, const cJSON *vocab, const cJSON *added, long *max_id) {
    const cJSON *e;
    long m = -1, count = 0;
    char path[64];
    cJSON_ArrayForEach(e, vocab) {
        long id = 0;
        lb_status st = get_int(c, e, "model.vocab", 0, MAX_ID - 1, &id);
        if (st) return st;
        if (id > m) m = id;
        count++;
    }
    size_t i = 0;
    cJSON_ArrayForEach(e, added) {
        long id = 0;
        snprintf(path, sizeof path, "added_tokens[%zu].id", i++);
        lb_status st = get_int(c, cJSON_GetObjectItemCaseSensitive(e, "id"), path, 0, MAX_ID - 1, &id);
        if (st) return st;
        if (id > m) m = id;
        count++;
    }
    /* Ids are dense in real files; a few holes are fine, a lone huge id is not. */
    if (m >= 2 * count + 65536) return bad(c, "model.vocab", "token ids far beyond the number of tokens");
    *max_id = m;
    return LB_OK;
}

static lb_status add_merge(jctx *c, size_t rank, const char *a, size_t la, const char *b, size_t lb_, char **tmp,
                           size_t *tmp_cap, int *found) {
    lb_bpe_vocab *v = &c->b->vocab;
    int32_t ia = lb_bpe_vocab_find(v, a, la), ib = lb_bpe_vocab_find(v, b, lb_);
    *found = 0;
    if (ia < 0 || ib < 0) return LB_OK;
    if (la + lb_ > *tmp_cap) {
        char *t = realloc(*tmp, la + lb_);
        if (!t) return lb_fail(c->err, LB_ERR_NOMEM, "out of memory");
        *tmp = t;
        *tmp_cap = la + lb_;
    }
    memcpy(*tmp, a, la);
    memcpy(*tmp + la, b, lb_);
    int32_t im = lb_bpe_vocab_find(v, *tmp, la + lb_);
    if (im < 0) return LB_OK;
    *found = 1;
    return lb_bpe_vocab_add_merge(v, ia, ib, (uint32_t)rank, im, c->err);
}

static lb_status parse_merges(jctx *c, const cJSON *merges) {
    const cJSON *e;
    size_t i = 0;
    char *tmp = NULL, path[64];
    size_t tmp_cap = 0;
    lb_status st = LB_OK;
    cJSON_ArrayForEach(e, merges) {
        int found = 0;
        snprintf(path, sizeof path, "model.merges[%zu]", i);
        if (cJSON_IsString(e)) {
            /* "a b": a token may itself hold a space, so try each space until both halves exist. */
            const char *s = e->valuestring;
            size_t n = strlen(s);
            for (const char *sp = strchr(s, ' '); sp && !found && !st; sp = strchr(sp + 1, ' '))
                st = add_merge(c, i, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1, &tmp, &tmp_cap, &found);
            if (!st && !found) st = lb_fail(c->err, LB_ERR_FORMAT, "%s: %s: \"%.80s\" does not name two tokens of the vocabulary whose concatenation is one too", c->name, path, s);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            const char *a = cJSON_GetArrayItem(e, 0)->valuestring, *b = cJSON_GetArrayItem(e, 1)->valuestring;
            st = add_merge(c, i, a, strlen(a), b, strlen(b), &tmp, &tmp_cap, &found);
            if (!st && !found) st = lb_fail(c->err, LB_ERR_FORMAT, "%s: %s: [\"%.40s\", \"%.40s\"]: a token or their concatenation is not in the vocabulary", c->name, path, a, b);
        } else {
            st = bad(c, path, "expected \"a b\" or [\"a\", \"b\"]");
        }
        if (st) break;
        i++;
    }
    free(tmp);
    return st;
}

static lb_status parse_added(jctx *c, const cJSON *added) {
    const cJSON *e;
    size_t i = 0;
    char path[64];
    cJSON_ArrayForEach(e, added) {
        snprintf(path, sizeof path, "added_tokens[%zu]", i++);
        const char *content;
        int special = 0, lstrip = 0, rstrip = 0, single_word = 0;
        long id = 0;
        lb_status st = get_str(c, e, "content", path, &content);
        if (!st) st = get_int(c, cJSON_GetObjectItemCaseSensitive(e, "id"), path, 0, MAX_ID - 1, &id);
        if (!st) st = get_bool(c, e, "special", path, &special);
        if (!st) st = get_bool(c, e, "lstrip", path, &lstrip);
        if (!st) st = get_bool(c, e, "rstrip", path, &rstrip);
        if (!st) st = get_bool(c, e, "single_word", path, &single_word);
        if (!st && (!content || !*content)) st = bad(c, path, "added token without \"content\"");
        if (!st) st = lb_bpe_add_added(c->b, content, strlen(content), (int32_t)id, special, lstrip, rstrip, single_word, c->err);
        if (st) return st;
    }
    return LB_OK;
}

static lb_status parse_model(jctx *c, const cJSON *root, const cJSON *added) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(m)) return bad(c, "model", "missing or not an object");
    const char *type, *unk, *prefix, *suffix;
    lb_status st = get_str(c, m, "type", "model", &type);
    if (st) return st;
    if (type && strcmp(type, "BPE"))
        return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: model.type: \"%s\" models are not supported (only BPE)", c->name, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab)) return bad(c, "model.vocab", "missing or not an object");
    if (!cJSON_IsArray(merges)) return bad(c, "model.merges", "missing or not an array");
    if (added && !cJSON_IsArray(added)) return bad(c, "added_tokens", "not an array");
    if ((st = get_str(c, m, "unk_token", "model", &unk)) || (st = get_str(c, m, "continuing_subword_prefix", "model", &prefix)) ||
        (st = get_str(c, m, "end_of_word_suffix", "model", &suffix)) ||
        (st = get_bool(c, m, "byte_fallback", "model", &c->b->byte_fallback)) ||
        (st = get_bool(c, m, "fuse_unk", "model", &c->b->fuse_unk)) ||
        (st = get_bool(c, m, "ignore_merges", "model", &c->b->ignore_merges)))
        return st;
    if ((prefix && *prefix) || (suffix && *suffix))
        return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: model: continuing_subword_prefix / end_of_word_suffix not supported", c->name);
    long max_id = 0;
    if ((st = max_ids(c, vocab, added, &max_id))) return st;
    if ((st = lb_bpe_vocab_init(&c->b->vocab, (int32_t)(max_id + 1), (size_t)cJSON_GetArraySize(merges), c->err))) return st;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if ((st = lb_bpe_vocab_set(&c->b->vocab, (int32_t)e->valuedouble, e->string, strlen(e->string), c->err))) return st;
    }
    if ((st = parse_merges(c, merges))) return st;
    if (unk) {
        c->b->unk_id = lb_bpe_vocab_find(&c->b->vocab, unk, strlen(unk));
        if (c->b->unk_id < 0) lb_warn("%s: model.unk_token \"%.40s\" is not in the vocabulary", c->name, unk);
    }
    return added ? parse_added(c, added) : LB_OK;
}

/* ---- special ids ---- */
static int32_t find_token(const lb_bpe *b, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < b->n_added; i++)
        if (b->added[i].len == n && !memcmp(b->added[i].content, s, n)) return b->added[i].id;
    return lb_bpe_vocab_find(&b->vocab, s, n);
}

static int32_t first_of(const lb_bpe *b, const char *const *names, int32_t skip) {
    for (size_t i = 0; names[i]; i++) {
        int32_t id = find_token(b, names[i]);
        if (id >= 0 && id != skip) return id;
    }
    return -1;
}

static void guess_special_ids(lb_tokenizer *t, const lb_bpe *b) {
    static const char *eos[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<|im_end|>", "<|eot_id|>", NULL};
    static const char *eot[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|eot|>", NULL};
    static const char *pad[] = {"<pad>", "<|pad|>", "[PAD]", NULL};
    t->bos_id = b->n_prefix ? b->prefix[0] : -1;
    t->eos_id = first_of(b, eos, -1);
    t->eot_id = first_of(b, eot, t->eos_id);
    t->pad_id = first_of(b, pad, -1);
    t->unk_id = b->unk_id;
}

lb_status lb_bpe_parse_json(const char *json, size_t len, const char *name, lb_tokenizer **out, lb_error *err) {
    if (!name) name = "tokenizer.json";
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return lb_fail(err, LB_ERR_FORMAT, "%s: invalid JSON near byte %zu", name, at);
    }
    lb_bpe *b = lb_bpe_new(name);
    if (!b) {
        cJSON_Delete(root);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    jctx c = {b, b->name, err};
    idlist pre = {0}, suf = {0};
    declist dec = {0};
    lb_status st = LB_OK;
    if (!cJSON_IsObject(root)) st = bad(&c, "(root)", "not a JSON object");
    if (!st) st = parse_model(&c, root, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    if (!st) st = lb_bpe_finish(b, err);
    if (!st) st = parse_normalizer(&c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer", 0);
    if (!st) st = parse_pre(&c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer", 0);
    if (!st) st = parse_post(&c, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "post_processor", &pre, &suf, 0);
    if (!st) st = parse_decoder(&c, cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoder", &dec, 0);
    if (!st && dec.n == 0) {
        lb_bpe_dec x = {.kind = LB_DEC_SPACE_JOIN};
        st = dec_push(&c, &dec, &x, NULL, NULL);
    }
    if (!st) st = lb_bpe_build_decoder(b, dec.v, dec.n, err);
    b->prefix = pre.v, b->n_prefix = pre.n;
    b->suffix = suf.v, b->n_suffix = suf.n;
    declist_free(&dec);
    cJSON_Delete(root);
    if (st) {
        lb_bpe_free(b);
        return st;
    }
    if ((st = lb_bpe_wrap(b, out, err))) return st;
    guess_special_ids(*out, b);
    return LB_OK;
}

/* ---- tokenizer_config.json beside tokenizer.json ---- */
static int32_t config_token(const lb_bpe *b, const cJSON *cfg, const char *key, int32_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return dflt;
    int32_t id = find_token(b, v->valuestring);
    return id >= 0 ? id : dflt;
}

static char *config_template(const cJSON *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    const char *first = NULL;
    const cJSON *list = cJSON_IsArray(v) ? v : NULL;
    cJSON_ArrayForEach(e, list) { /* [{"name": ..., "template": ...}] */
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name"), *t = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsString(t)) continue;
        if (cJSON_IsString(n) && !strcmp(n->valuestring, "default")) return strdup(t->valuestring);
        if (!first) first = t->valuestring;
    }
    return first ? strdup(first) : NULL;
}

static char *sibling(const char *path, const char *file) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    char *p = malloc(dir + strlen(file) + 1);
    if (!p) return NULL;
    memcpy(p, path, dir);
    strcpy(p + dir, file);
    return p;
}

/* The config is optional and only refines the special ids: problems with it are warnings. */
static void apply_config(lb_tokenizer *t, const char *path) {
    const lb_bpe *b = t->impl;
    char *cfg_path = sibling(path, "tokenizer_config.json"), *json = NULL;
    size_t len;
    lb_error e;
    if (cfg_path && lb_read_file(cfg_path, 16u << 20, &json, &len, &e) == LB_OK) {
        cJSON *cfg = cJSON_ParseWithLength(json, len);
        if (cJSON_IsObject(cfg)) {
            if (!b->n_prefix) t->bos_id = config_token(b, cfg, "bos_token", t->bos_id);
            t->eos_id = config_token(b, cfg, "eos_token", t->eos_id);
            t->pad_id = config_token(b, cfg, "pad_token", t->pad_id);
            t->unk_id = config_token(b, cfg, "unk_token", t->unk_id);
            if (t->eot_id == t->eos_id) t->eot_id = -1;
            t->chat_template = config_template(cfg);
        } else {
            lb_warn("%s: not a JSON object, ignored", cfg_path);
        }
        cJSON_Delete(cfg);
    }
    free(json);
    free(cfg_path);
    if (!t->chat_template) { /* newer transformers save the template on its own */
        char *tp = sibling(path, "chat_template.jinja");
        if (tp && lb_read_file(tp, 16u << 20, &json, &len, &e) == LB_OK) t->chat_template = json;
        free(tp);
    }
}

lb_status lb_bpe_load_json(const char *path, lb_tokenizer **out, lb_error *err) {
    char *json;
    size_t len;
    lb_status st = lb_read_file(path, 64u << 20, &json, &len, err);
    if (st) return st;
    st = lb_bpe_parse_json(json, len, path, out, err);
    free(json);
    if (!st) apply_config(*out, path);
    return st;
}
