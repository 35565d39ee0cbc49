/* SentencePiece BPE: normalizer (identity rules: whitespace handling and UTF-8 repair), the
 * score-ordered merge loop of SentencePiece's BPE model, byte fallback, and decoding.
 * Behaviour follows the SentencePiece library, so that ids equal its output. */
#include "tokenizer/spm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define SPACE_SYMBOL "\xe2\x96\x81" /* U+2581, SentencePiece's escaped space */

static lb_status spm_encode(const lb_tokenizer *t, const char *text, size_t len, int add_special, lb_ids *out,
                            lb_error *err);
static size_t spm_decode_token(const lb_tokenizer *t, int32_t id, int first, char *buf, size_t cap);
static const lb_tokenizer_ops spm_ops = {"sentencepiece", spm_encode, spm_decode_token, lb_spm_free};

/* ---- piece table ----------------------------------------------------------------------- */

static int is_reserved(int type) {
    return type == LB_SPM_CONTROL || type == LB_SPM_UNKNOWN || type == LB_SPM_BYTE;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static const char *piece_str(const lb_spm *m, int32_t id) { return m->pool + m->pieces[id].off; }

static int piece_eq(const lb_spm *m, int32_t id, const char *s, size_t len) {
    return m->pieces[id].len == len && memcmp(piece_str(m, id), s, len) == 0;
}

/* First id with this text in the reserved (control/unknown/byte) or the ordinary class. */
static int32_t lookup(const lb_spm *m, const char *s, size_t len, int reserved) {
    for (size_t i = hash_bytes(s, len) & m->hash_mask;; i = (i + 1) & m->hash_mask) {
        int32_t id = m->hash[i];
        if (id < 0) return -1;
        if (is_reserved(m->pieces[id].type) == reserved && piece_eq(m, id, s, len)) return id;
    }
}

/* PieceToId without the unk fallback: -1 when absent. */
static int32_t find_id(const lb_spm *m, const char *s, size_t len) {
    int32_t id = lookup(m, s, len, 1);
    return id < 0 ? lookup(m, s, len, 0) : id;
}

int32_t lb_spm_piece_to_id(const lb_spm *m, const char *s, size_t len) {
    int32_t id = find_id(m, s, len);
    return id < 0 ? m->unk_id : id;
}

int lb_spm_byte_piece(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

lb_spm *lb_spm_new(size_t n_pieces, size_t pool_bytes) {
    if (n_pieces > INT32_MAX / 2 || pool_bytes > UINT32_MAX) return NULL;
    lb_spm *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->pieces = malloc((n_pieces ? n_pieces : 1) * sizeof *m->pieces);
    m->pool = malloc(pool_bytes ? pool_bytes : 1);
    if (!m->pieces || !m->pool) {
        lb_spm_free(m);
        return NULL;
    }
    m->cap = (int32_t)n_pieces;
    m->pool_cap = pool_bytes;
    m->add_dummy_prefix = m->escape_ws = 1;
    m->add_bos = 1;
    m->unk_id = -1;
    strcpy(m->unk_surface, " \xe2\x81\x87 ");
    return m;
}

void lb_spm_free(void *p) {
    lb_spm *m = p;
    if (!m) return;
    free(m->pool);
    free(m->pieces);
    free(m->hash);
    free(m);
}

lb_status lb_spm_add(lb_spm *m, const char *s, size_t len, float score, int type, const char *name, lb_error *err) {
    if (m->n >= m->cap || len > m->pool_cap - m->pool_len)
        return lb_fail(err, LB_ERR_FORMAT, "%s: piece %d does not fit the reserved table", name, (int)m->n);
    if (type < LB_SPM_NORMAL || type > LB_SPM_BYTE)
        return lb_fail(err, LB_ERR_FORMAT, "%s: piece %d has unknown type %d", name, (int)m->n, type);
    lb_spm_piece *p = &m->pieces[m->n++];
    p->off = (uint32_t)m->pool_len;
    p->len = (uint32_t)len;
    p->score = score;
    p->type = (uint8_t)type;
    p->byte = -1;
    if (len) memcpy(m->pool + m->pool_len, s, len);
    m->pool_len += len;
    return LB_OK;
}

static int32_t checked_id(const lb_spm *m, int32_t id, const char *what, const char *name) {
    if (id < 0) return -1;
    if (id >= m->n) {
        lb_warn("%s: %s id %d is outside the vocabulary (%d pieces); ignored", name, what, (int)id, (int)m->n);
        return -1;
    }
    return id;
}

lb_status lb_spm_finish(lb_spm *m, const char *name, int dup_strict, int32_t bos, int32_t eos, int32_t pad,
                        lb_tokenizer **out, lb_error *err) {
    lb_status st = LB_OK;
    size_t size = 16;
    while (size < 2 * (size_t)m->n) size *= 2;
    m->hash = malloc(size * sizeof *m->hash);
    if (!m->hash) {
        st = lb_fail(err, LB_ERR_NOMEM, "%s: out of memory for the piece index", name);
        goto fail;
    }
    memset(m->hash, 0xff, size * sizeof *m->hash);
    m->hash_mask = size - 1;
    if (m->unk_id >= m->n) m->unk_id = -1;
    for (int32_t id = 0; id < m->n; id++) {
        lb_spm_piece *p = &m->pieces[id];
        const char *s = piece_str(m, id);
        if (p->type == LB_SPM_BYTE) {
            p->byte = (int16_t)lb_spm_byte_piece(s, p->len);
            if (p->byte < 0 && dup_strict) {
                st = lb_fail(err, LB_ERR_FORMAT, "%s: byte piece %d is not of the form <0xAB>", name, (int)id);
                goto fail;
            }
        }
        if (p->type == LB_SPM_UNKNOWN && (m->unk_id < 0 || m->pieces[m->unk_id].type != LB_SPM_UNKNOWN)) m->unk_id = id;
        if (p->type == LB_SPM_USER_DEFINED && p->len > m->max_user_len) m->max_user_len = p->len;
        if (p->type == LB_SPM_UNUSED) m->has_unused = 1;
        if (lookup(m, s, p->len, is_reserved(p->type)) >= 0) {
            if (dup_strict) {
                st = lb_fail(err, LB_ERR_FORMAT, "%s: piece %d (\"%.*s\") is already defined", name, (int)id,
                             (int)(p->len > 40 ? 40 : p->len), s);
                goto fail;
            }
            lb_warn("%s: piece %d is a duplicate; the first one wins", name, (int)id);
            continue;
        }
        size_t i = hash_bytes(s, p->len) & m->hash_mask;
        while (m->hash[i] >= 0) i = (i + 1) & m->hash_mask;
        m->hash[i] = id;
    }
    for (int b = 0; b < 256; b++) {
        char tmp[8];
        snprintf(tmp, sizeof tmp, "<0x%02X>", b);
        m->byte_id[b] = lb_spm_piece_to_id(m, tmp, 6);
    }
    /* allocated here rather than by lb_tokenizer_new so that spm.o links without the other
     * tokenizers (tests of this module alone) */
    lb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        st = lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    t->ops = &spm_ops;
    t->impl = m;
    t->n_vocab = m->n;
    t->eot_id = -1;
    t->bos_id = checked_id(m, bos, "BOS", name);
    t->eos_id = checked_id(m, eos, "EOS", name);
    t->pad_id = checked_id(m, pad, "PAD", name);
    t->unk_id = m->unk_id;
    *out = t;
    return LB_OK;
fail:
    lb_spm_free(m);
    return st;
}

/* ---- normalizer ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 character at s (strict, as SentencePiece decodes), 0 if invalid. */
static size_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return 0;
    return len;
}

static void put_space(const lb_spm *m, char *out, size_t *n) {
    if (m->escape_ws) {
        memcpy(out + *n, SPACE_SYMBOL, 3);
        *n += 3;
    } else {
        out[(*n)++] = ' ';
    }
}

/* Writes the normalized text into out (room for 3 * len + 6 bytes) and returns its length.
 * The precompiled character map (NFKC and the like) is not applied: see spm_load.c. */
static size_t normalize(const lb_spm *m, const uint8_t *s, size_t len, char *out) {
    size_t pos = 0, n = 0;
    if (m->remove_extra_ws)
        while (pos < len && s[pos] == ' ') pos++;
    if (pos == len) return 0;
    if (m->add_dummy_prefix && !m->ws_suffix) put_space(m, out, &n);
    int prev_space = m->remove_extra_ws;
    while (pos < len) {
        size_t k = utf8_valid_len(s + pos, len - pos);
        if (k == 0) { /* malformed byte: U+FFFD, one byte consumed */
            memcpy(out + n, "\xef\xbf\xbd", 3);
            n += 3;
            prev_space = 0;
            pos++;
        } else if (s[pos] == ' ') {
            if (!prev_space) put_space(m, out, &n);
            prev_space = 1;
            pos++;
        } else {
            memcpy(out + n, s + pos, k);
            n += k;
            prev_space = 0;
            pos += k;
        }
        if (!m->remove_extra_ws) prev_space = 0;
    }
    if (m->remove_extra_ws) {
        size_t w = m->escape_ws ? 3 : 1;
        while (n >= w && memcmp(out + n - w, m->escape_ws ? SPACE_SYMBOL : " ", w) == 0) n -= w;
    }
    if (m->add_dummy_prefix && m->ws_suffix) put_space(m, out, &n);
    return n;
}

/* ---- BPE ------------------------------------------------------------------------------- */

typedef struct sym {
    uint32_t off, len;
    int32_t prev, next;
    int freeze; /* user-defined piece: never merged */
} sym;

typedef struct pair {
    float score;
    int32_t left, right;
    uint32_t size;
} pair;

typedef struct split { /* how an UNUSED piece was formed, to undo it afterwards */
    int32_t id;
    uint32_t loff, llen, roff, rlen;
} split;

typedef struct bpe {
    const lb_spm *m;
    const char *text;
    sym *syms;
    pair *heap;
    size_t n_heap;
    split *splits; /* open addressing by id; NULL when the vocabulary has no UNUSED piece */
    size_t split_mask;
} bpe;

/* Higher score first; on ties the leftmost pair. */
static int pair_before(const pair *a, const pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(bpe *b, pair p) {
    size_t i = b->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &b->heap[up])) break;
        b->heap[i] = b->heap[up];
        i = up;
    }
    b->heap[i] = p;
}

static pair heap_pop(bpe *b) {
    pair top = b->heap[0], last = b->heap[--b->n_heap];
    size_t i = 0, n = b->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&b->heap[c + 1], &b->heap[c])) c++;
        if (!pair_before(&b->heap[c], &last)) break;
        b->heap[i] = b->heap[c];
        i = c;
    }
    if (n) b->heap[i] = last;
    return top;
}

static void record_split(bpe *b, int32_t id, const sym *l, const sym *r) {
    size_t i = ((uint32_t)id * 2654435761u) & b->split_mask;
    while (b->splits[i].id >= 0 && b->splits[i].id != id) i = (i + 1) & b->split_mask;
    split s = {id, l->off, l->len, r->off, r->len};
    b->splits[i] = s; /* the latest candidate wins, as in SentencePiece */
}

static const split *find_split(const bpe *b, int32_t id) {
    if (!b->splits) return NULL;
    size_t i = ((uint32_t)id * 2654435761u) & b->split_mask;
    for (; b->splits[i].id >= 0; i = (i + 1) & b->split_mask)
        if (b->splits[i].id == id) return &b->splits[i];
    return NULL;
}

static void maybe_add_pair(bpe *b, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const sym *l = &b->syms[left], *r = &b->syms[right];
    if (l->freeze || r->freeze) return;
    int32_t id = lookup(b->m, b->text + l->off, (size_t)l->len + r->len, 0);
    if (id < 0) return;
    pair p = {b->m->pieces[id].score, left, right, l->len + r->len};
    heap_push(b, p);
    if (b->m->pieces[id].type == LB_SPM_UNUSED && b->splits) record_split(b, id, l, r);
}

static lb_status emit(lb_ids *out, int32_t id, lb_error *err) {
    if (id >= 0 && !lb_ids_push(out, id)) return lb_fail(err, LB_ERR_NOMEM, "out of memory for token ids");
    return LB_OK;
}

/* Emits the ids of one final symbol: UNUSED pieces are split back into their parts, unknown
 * ones become byte pieces under byte fallback. */
static lb_status emit_piece(const bpe *b, uint32_t off, uint32_t len, lb_ids *out, lb_error *err) {
    const lb_spm *m = b->m;
    const char *s = b->text + off;
    int32_t id = find_id(m, s, len);
    if (id >= 0 && m->pieces[id].type == LB_SPM_UNUSED) {
        const split *sp = find_split(b, id);
        if (sp) {
            split copy = *sp;
            lb_status st = emit_piece(b, copy.loff, copy.llen, out, err);
            return st ? st : emit_piece(b, copy.roff, copy.rlen, out, err);
        }
    }
    if (id < 0 || m->pieces[id].type == LB_SPM_UNKNOWN) {
        if (!m->byte_fallback) return emit(out, m->unk_id, err);
        for (uint32_t i = 0; i < len; i++) {
            lb_status st = emit(out, m->byte_id[(uint8_t)s[i]], err);
            if (st) return st;
        }
        return LB_OK;
    }
    return emit(out, id, err);
}

static size_t one_char_len(uint8_t c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

/* Longest USER_DEFINED piece at the start of s, 0 when none. */
static size_t match_user(const lb_spm *m, const char *s, size_t n) {
    for (size_t k = n < m->max_user_len ? n : m->max_user_len; k > 0; k--) {
        int32_t id = lookup(m, s, k, 0);
        if (id >= 0 && m->pieces[id].type == LB_SPM_USER_DEFINED) return k;
    }
    return 0;
}

static lb_status encode_normalized(const lb_spm *m, const char *text, size_t n, lb_ids *out, lb_error *err) {
    bpe b = {m, text, NULL, NULL, 0, NULL, 0};
    lb_status st = LB_OK;
    b.syms = malloc((n ? n : 1) * sizeof *b.syms);
    b.heap = malloc((3 * n + 1) * sizeof *b.heap); /* n - 1 initial pairs + 2 per merge */
    int has_unused = m->has_unused;
    if (has_unused) {
        size_t cap = 16;
        while (cap < 6 * n) cap *= 2;
        b.splits = malloc(cap * sizeof *b.splits);
        b.split_mask = cap - 1;
        if (b.splits)
            for (size_t i = 0; i < cap; i++) b.splits[i].id = -1;
    }
    if (!b.syms || !b.heap || (has_unused && !b.splits)) {
        st = lb_fail(err, LB_ERR_NOMEM, "out of memory encoding %zu bytes", n);
        goto done;
    }
    int32_t count = 0;
    for (size_t pos = 0; pos < n; count++) {
        size_t k = m->max_user_len ? match_user(m, text + pos, n - pos) : 0;
        sym s = {(uint32_t)pos, 0, count - 1, -1, k > 0};
        if (!k) k = one_char_len((uint8_t)text[pos]);
        if (k > n - pos) k = n - pos;
        s.len = (uint32_t)k;
        pos += k;
        s.next = pos < n ? count + 1 : -1;
        b.syms[count] = s;
    }
    for (int32_t i = 1; i < count; i++) maybe_add_pair(&b, i - 1, i);
    while (b.n_heap) {
        pair p = heap_pop(&b);
        sym *l = &b.syms[p.left], *r = &b.syms[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.size) continue; /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) b.syms[r->next].prev = p.left;
        r->len = 0;
        maybe_add_pair(&b, l->prev, p.left);
        maybe_add_pair(&b, p.left, l->next);
    }
    for (int32_t i = count ? 0 : -1; i >= 0 && !st; i = b.syms[i].next)
        st = emit_piece(&b, b.syms[i].off, b.syms[i].len, out, err);
done:
    free(b.syms);
    free(b.heap);
    free(b.splits);
    return st;
}

/* ---- ops ------------------------------------------------------------------------------- */

static lb_status spm_encode(const lb_tokenizer *t, const char *text, size_t len, int add_special, lb_ids *out,
                            lb_error *err) {
    const lb_spm *m = t->impl;
    lb_status st;
    if (add_special && m->add_bos && t->bos_id >= 0 && (st = emit(out, t->bos_id, err))) return st;
    size_t cap;
    if (!lb_mul_ok(len, 3, &cap) || !lb_add_ok(cap, 8, &cap) || len > UINT32_MAX / 4)
        return lb_fail(err, LB_ERR_RANGE, "text of %zu bytes is too long to encode in one call", len);
    char *norm = malloc(cap);
    if (!norm) return lb_fail(err, LB_ERR_NOMEM, "out of memory encoding %zu bytes", len);
    size_t n = normalize(m, (const uint8_t *)text, len, norm);
    st = encode_normalized(m, norm, n, out, err);
    free(norm);
    if (st) return st;
    if (add_special && m->add_eos && t->eos_id >= 0) return emit(out, t->eos_id, err);
    return LB_OK;
}

static size_t put(char *buf, size_t cap, size_t at, const char *s, size_t n) {
    if (at < cap) memcpy(buf + at, s, n < cap - at ? n : cap - at);
    return at + n;
}

static size_t spm_decode_token(const lb_tokenizer *t, int32_t id, int first, char *buf, size_t cap) {
    const lb_spm *m = t->impl;
    if (id < 0 || id >= m->n) return 0;
    const lb_spm_piece *p = &m->pieces[id];
    if (p->type == LB_SPM_CONTROL) return 0;
    if (p->type == LB_SPM_BYTE && p->byte >= 0) {
        char c = (char)p->byte;
        return put(buf, cap, 0, &c, 1);
    }
    if (p->type == LB_SPM_UNKNOWN) return put(buf, cap, 0, m->unk_surface, strlen(m->unk_surface));
    const char *s = piece_str(m, id);
    size_t i = 0, n = 0;
    if (first && (m->add_dummy_prefix || m->remove_extra_ws) && p->len >= 3 && memcmp(s, SPACE_SYMBOL, 3) == 0) i = 3;
    while (i < p->len) {
        if (p->len - i >= 3 && memcmp(s + i, SPACE_SYMBOL, 3) == 0) {
            n = put(buf, cap, n, " ", 1);
            i += 3;
        } else {
            n = put(buf, cap, n, s + i, 1);
            i++;
        }
    }
    return n;
}
