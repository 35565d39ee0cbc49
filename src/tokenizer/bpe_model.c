/* The BPE model on one pre-tokenized piece: characters (or byte-fallback bytes, or unk) become
 * symbols, then the lowest-ranked adjacent pair merges first, the leftmost among equal ranks.
 * A min-heap of candidate pairs keeps long pieces (Metaspace without split makes the whole
 * text one piece) at O(n log n); stale heap entries are recognised and skipped. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe_model.h"

void lb_bpe_work_free(lb_bpe_work *w) {
    free(w->id);
    free(w->prev);
    free(w->next);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

static int work_reserve(lb_bpe_work *w, size_t n) {
    if (n <= w->cap) return 1;
    size_t c = w->cap ? w->cap : 64;
    while (c < n) c *= 2;
    int32_t *id = realloc(w->id, c * sizeof *id);
    if (id) w->id = id;
    int32_t *pv = realloc(w->prev, c * sizeof *pv);
    if (pv) w->prev = pv;
    int32_t *nx = realloc(w->next, c * sizeof *nx);
    if (nx) w->next = nx;
    lb_bpe_hent *h = realloc(w->heap, c * 2 * sizeof *h);
    if (h) w->heap = h;
    if (!id || !pv || !nx || !h) return 0;
    w->cap = c;
    return 1;
}

static int hless(lb_bpe_hent a, lb_bpe_hent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

/* The heap never holds more than 2 entries per symbol: n initial pairs plus at most two new
 * pairs per merge, and there are fewer than n merges. */
static void heap_push(lb_bpe_work *w, uint32_t rank, int32_t pos) {
    size_t i = w->hn++;
    lb_bpe_hent e = {rank, pos};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(e, w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = e;
}

static lb_bpe_hent heap_pop(lb_bpe_work *w) {
    lb_bpe_hent top = w->heap[0], e = w->heap[--w->hn];
    size_t i = 0, n = w->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hless(w->heap[c + 1], w->heap[c])) c++;
        if (!hless(w->heap[c], e)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = e;
    return top;
}

static void push_pair(const lb_bpe *b, lb_bpe_work *w, int32_t pos) {
    int32_t nx = w->next[pos];
    uint32_t rank;
    int32_t merged;
    if (nx >= 0 && lb_bpe_vocab_merge(&b->vocab, w->id[pos], w->id[nx], &rank, &merged)) heap_push(w, rank, pos);
}

/* Fills w->id with the initial symbols of s; returns their count. */
static size_t initial_symbols(const lb_bpe *b, lb_bpe_work *w, const char *s, size_t len) {
    size_t n = 0;
    int last_unk = 0;
    for (size_t i = 0; i < len;) {
        size_t l = lb_utf8_len((const unsigned char *)s + i, len - i);
        int32_t id = lb_bpe_vocab_find(&b->vocab, s + i, l);
        if (id >= 0) {
            w->id[n++] = id;
            last_unk = 0;
        } else {
            int bytes_ok = b->byte_fallback;
            for (size_t j = 0; j < l && bytes_ok; j++) bytes_ok = b->byte_ids[(unsigned char)s[i + j]] >= 0;
            if (bytes_ok) {
                for (size_t j = 0; j < l; j++) w->id[n++] = b->byte_ids[(unsigned char)s[i + j]];
                last_unk = 0;
            } else if (b->unk_id >= 0) {
                if (!(b->fuse_unk && last_unk)) w->id[n++] = b->unk_id;
                last_unk = 1;
            } /* else: no way to spell it, dropped as the reference does */
        }
        i += l;
    }
    return n;
}

lb_status lb_bpe_model_encode(const lb_bpe *b, lb_bpe_work *w, const char *s, size_t len, lb_ids *out, lb_error *err) {
    if (len == 0) return LB_OK;
    if (b->ignore_merges) {
        int32_t id = lb_bpe_vocab_find(&b->vocab, s, len);
        if (id >= 0) return lb_ids_push(out, id) ? LB_OK : lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    if (len > INT32_MAX / 2 || !work_reserve(w, len)) return lb_fail(err, LB_ERR_NOMEM, "out of memory for a piece of %zu bytes", len);
    size_t n = initial_symbols(b, w, s, len);
    for (size_t i = 0; i < n; i++) {
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->hn = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(b, w, (int32_t)i);
    while (w->hn) {
        lb_bpe_hent top = heap_pop(w);
        int32_t p = top.pos, nx = w->next[p];
        uint32_t rank;
        int32_t merged;
        if (w->id[p] < 0 || nx < 0) continue; /* merged away, or now last */
        if (!lb_bpe_vocab_merge(&b->vocab, w->id[p], w->id[nx], &rank, &merged) || rank != top.rank) continue;
        w->id[p] = merged;
        w->id[nx] = -1;
        w->next[p] = w->next[nx];
        if (w->next[nx] >= 0) w->prev[w->next[nx]] = p;
        if (w->prev[p] >= 0) push_pair(b, w, w->prev[p]);
        push_pair(b, w, p);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = w->next[i])
        if (!lb_ids_push(out, w->id[i])) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    return LB_OK;
}
