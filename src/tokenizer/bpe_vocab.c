/* BPE vocabulary: strings by id, a string -> id hash index and a (left, right) -> rank map. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    return k ^ (k >> 33);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

lb_status lb_bpe_vocab_init(lb_bpe_vocab *v, int32_t n, size_t n_merges_hint, lb_error *err) {
    memset(v, 0, sizeof *v);
    v->n = n;
    size_t nn = n > 0 ? (size_t)n : 1;
    v->off = malloc(nn * sizeof *v->off);
    v->len = malloc(nn * sizeof *v->len);
    size_t hcap = pow2_at_least(nn * 2);
    v->ht = malloc(hcap * sizeof *v->ht);
    size_t mcap = pow2_at_least(n_merges_hint * 2 + 2);
    v->mk = malloc(mcap * sizeof *v->mk);
    v->mrank = malloc(mcap * sizeof *v->mrank);
    v->mnew = malloc(mcap * sizeof *v->mnew);
    v->blob_cap = 1024;
    v->blob = malloc(v->blob_cap);
    if (!v->off || !v->len || !v->ht || !v->mk || !v->mrank || !v->mnew || !v->blob) {
        lb_bpe_vocab_free(v);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for a vocabulary of %d tokens", (int)n);
    }
    for (size_t i = 0; i < nn; i++) v->len[i] = UINT32_MAX, v->off[i] = 0;
    memset(v->ht, 0xff, hcap * sizeof *v->ht);
    v->ht_mask = hcap - 1;
    memset(v->mk, 0xff, mcap * sizeof *v->mk);
    v->m_mask = mcap - 1;
    return LB_OK;
}

void lb_bpe_vocab_free(lb_bpe_vocab *v) {
    free(v->blob);
    free(v->off);
    free(v->len);
    free(v->ht);
    free(v->mk);
    free(v->mrank);
    free(v->mnew);
    memset(v, 0, sizeof *v);
}

static int str_eq(const lb_bpe_vocab *v, int32_t id, const char *s, size_t len) {
    return v->len[id] == len && memcmp(v->blob + v->off[id], s, len) == 0;
}

int32_t lb_bpe_vocab_find(const lb_bpe_vocab *v, const char *s, size_t len) {
    for (size_t i = hash_bytes(s, len) & v->ht_mask;; i = (i + 1) & v->ht_mask) {
        int32_t id = v->ht[i];
        if (id < 0) return -1;
        if (str_eq(v, id, s, len)) return id;
    }
}

lb_status lb_bpe_vocab_set(lb_bpe_vocab *v, int32_t id, const char *s, size_t len, lb_error *err) {
    if (id < 0 || id >= v->n) return lb_fail(err, LB_ERR_RANGE, "token id %d outside 0..%d", (int)id, (int)v->n - 1);
    if (v->len[id] != UINT32_MAX) return LB_OK; /* an id named twice: the first string stays */
    if (len >= UINT32_MAX / 2 || v->blob_len + len >= UINT32_MAX / 2)
        return lb_fail(err, LB_ERR_FORMAT, "vocabulary strings too long");
    if (v->blob_len + len > v->blob_cap) {
        size_t cap = v->blob_cap * 2 + len;
        char *b = realloc(v->blob, cap);
        if (!b) return lb_fail(err, LB_ERR_NOMEM, "out of memory for vocabulary strings");
        v->blob = b;
        v->blob_cap = cap;
    }
    memcpy(v->blob + v->blob_len, s, len);
    v->off[id] = (uint32_t)v->blob_len;
    v->len[id] = (uint32_t)len;
    v->blob_len += len;
    for (size_t i = hash_bytes(s, len) & v->ht_mask;; i = (i + 1) & v->ht_mask) {
        int32_t o = v->ht[i];
        if (o < 0) {
            v->ht[i] = id;
            return LB_OK;
        }
        if (str_eq(v, o, s, len)) return LB_OK; /* duplicate string: first id wins */
    }
}

static lb_status merge_grow(lb_bpe_vocab *v, lb_error *err) {
    size_t cap = (v->m_mask + 1) * 2;
    uint64_t *mk = malloc(cap * sizeof *mk);
    uint32_t *mr = malloc(cap * sizeof *mr);
    int32_t *mn = malloc(cap * sizeof *mn);
    if (!mk || !mr || !mn) {
        free(mk), free(mr), free(mn);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for merges");
    }
    memset(mk, 0xff, cap * sizeof *mk);
    for (size_t i = 0; i <= v->m_mask; i++) {
        if (v->mk[i] == UINT64_MAX) continue;
        size_t j = hash_pair(v->mk[i]) & (cap - 1);
        while (mk[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
        mk[j] = v->mk[i], mr[j] = v->mrank[i], mn[j] = v->mnew[i];
    }
    free(v->mk), free(v->mrank), free(v->mnew);
    v->mk = mk, v->mrank = mr, v->mnew = mn;
    v->m_mask = cap - 1;
    return LB_OK;
}

lb_status lb_bpe_vocab_add_merge(lb_bpe_vocab *v, int32_t a, int32_t b, uint32_t rank, int32_t merged, lb_error *err) {
    if ((v->m_count + 1) * 2 > v->m_mask + 1) {
        lb_status s = merge_grow(v, err);
        if (s) return s;
    }
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = hash_pair(k) & v->m_mask;
    while (v->mk[i] != UINT64_MAX && v->mk[i] != k) i = (i + 1) & v->m_mask;
    if (v->mk[i] == UINT64_MAX) v->m_count++;
    v->mk[i] = k, v->mrank[i] = rank, v->mnew[i] = merged;
    return LB_OK;
}

int lb_bpe_vocab_merge(const lb_bpe_vocab *v, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = hash_pair(k) & v->m_mask;; i = (i + 1) & v->m_mask) {
        if (v->mk[i] == k) {
            *rank = v->mrank[i];
            *merged = v->mnew[i];
            return 1;
        }
        if (v->mk[i] == UINT64_MAX) return 0;
    }
}
