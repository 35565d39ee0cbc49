/* The batched engine: sequences, one decode call over a batch of them, the prefix cache. */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/error.h"
#include "mem/arena.h"
#include "quant/repack.h"

#define DEFAULT_MAX_BATCH 64 /* entries one decode takes when the caller does not say */

lb_engine_params lb_engine_default_params(void) {
    lb_engine_params p = {0, LB_KV_F16, 0, 0, 0, 0, 1, LB_DEVICE_CPU, 0}; /* F16 KV: as lb_session_default_params */
    return p;
}

static int default_ctx(const lb_model *m) {
    int t = m->cfg.ctx_train;
    return t > 0 && t < 4096 ? t : 4096;
}

/* The CPU reads Q4_0 faster in 8-row groups (quant/repack.h), repacked once per model; the
 * CUDA backend uploads the plain layout, so a model an earlier CPU engine repacked cannot go. */
static lb_status prepare_weights(lb_model *m, lb_device device, lb_error *err) {
    if (device == LB_DEVICE_CUDA)
        return lb_repack_model_has(m) ? lb_fail(err, LB_ERR_UNSUPPORTED, "%s: its Q4_0 weights were repacked for a CPU "
                                                "engine; load the model again for CUDA (or set LOWBIT_REPACK=0)", m->path)
                                      : LB_OK;
    if (!lb_repack_enabled() || m->no_repack) return LB_OK;
    int n;
    size_t bytes;
    lb_status st = lb_repack_model(m, &n, &bytes, err);
    if (!st && n) lb_info("repacked %d Q4_0 matrices (%.1f MiB) into 8-row groups", n, (double)bytes / 1048576.0);
    return st;
}

lb_status lb_engine_new(lb_model *m, const lb_engine_params *pp, lb_engine **out, lb_error *err) {
    *out = NULL;
    lb_engine_params p = pp ? *pp : lb_engine_default_params();
    if (!m) return lb_fail(err, LB_ERR_ARG, "lb_engine_new: no model");
    if (p.n_ctx <= 0) p.n_ctx = default_ctx(m);
    if (p.block_tokens <= 0) p.block_tokens = 16;
    if (p.max_batch <= 0) p.max_batch = DEFAULT_MAX_BATCH;
    if (p.n_kv_tokens <= 0) p.n_kv_tokens = p.n_ctx;
    if (p.n_ctx > (1 << 24) || p.n_kv_tokens > (1 << 26) || p.max_batch > 65536 || p.block_tokens > 4096)
        return lb_fail(err, LB_ERR_ARG, "engine: context %d, pool of %d tokens or batch of %d is too large", p.n_ctx,
                       p.n_kv_tokens, p.max_batch);
    if (p.kv_type != LB_KV_F32 && p.kv_type != LB_KV_F16 && p.kv_type != LB_KV_Q8_0 && p.kv_type != LB_KV_Q4_0)
        return lb_fail(err, LB_ERR_ARG, "unknown KV cache type %d", (int)p.kv_type);
    if (!lb_kv_head_bytes(m->cfg.head_dim, p.kv_type))
        return lb_fail(err, LB_ERR_UNSUPPORTED, "a %s KV cache needs head_dim a multiple of 32; this model's head_dim is %d",
                       p.kv_type == LB_KV_Q4_0 ? "Q4_0" : "Q8_0", m->cfg.head_dim);
    if (p.device == LB_DEVICE_CUDA && p.stream_window > 0)
        return lb_fail(err, LB_ERR_UNSUPPORTED,
                       "streaming the weights from the file works on the CPU only, not with --device cuda: give a larger "
                       "--mem-budget or use the CPU");
    if (p.device == LB_DEVICE_CUDA && p.kv_type == LB_KV_Q4_0)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "the CUDA backend has no Q4_0 KV cache yet (use f16 or q8_0)");
    const lb_backend *be = lb_backend_cpu();
    if (p.device == LB_DEVICE_CUDA) {
        /* BitNet quantizes activations on the host between ops (graph/act_quant.c) */
        if (m->cfg.arch == LB_ARCH_BITNET || m->cfg.act_quant_int8)
            return lb_fail(err, LB_ERR_UNSUPPORTED, "the CUDA backend does not run BitNet models yet");
        lb_status bst = lb_backend_cuda(&be, err);
        if (bst) return bst;
    } else if (p.device != LB_DEVICE_CPU) {
        return lb_fail(err, LB_ERR_ARG, "unknown device %d", (int)p.device);
    }
    lb_status rst = prepare_weights(m, p.device, err);
    if (rst) return rst;
    lb_engine *e = calloc(1, sizeof *e);
    if (!e) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    e->be = be;
    e->m = m;
    e->p = p;
    e->pool = lb_pool_new(p.n_threads);
    if (!e->pool || lb_mem_tracker_new(0, &e->mem, err)) {
        lb_engine_free(e);
        return lb_fail(err, LB_ERR_NOMEM, "cannot start threads or the memory tracker");
    }
    size_t n_blocks = ((size_t)p.n_kv_tokens + p.block_tokens - 1) / p.block_tokens;
    /* a sequence never holds more positions than the pool has */
    int max_seq = p.n_ctx < (int)(n_blocks * p.block_tokens) ? p.n_ctx : (int)(n_blocks * p.block_tokens);
    lb_status st = lb_kv_cache_new(be, e->mem, &m->cfg, p.kv_type, p.block_tokens, n_blocks, &e->kv, err);
    if (!st) st = lb_fwd_init(&e->fwd, m, be, e->mem, e->pool, e->kv, p.max_batch, max_seq, err);
    if (!st && p.stream_window > 0) st = lb_stream_new(m, p.stream_window, &e->fwd.stream, err);
    if (!st && !(e->toks = calloc((size_t)p.max_batch, sizeof *e->toks)))
        st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (st) {
        lb_engine_free(e);
        return st;
    }
    *out = e;
    return LB_OK;
}

static void seq_clear(lb_engine *e, lb_engine_seq *s) {
    lb_kv_seq_release(e->kv, &s->kv);
    free(s->tokens);
    memset(s, 0, sizeof *s);
}

void lb_engine_free(lb_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_seqs; i++)
        if (e->seqs[i].used) seq_clear(e, &e->seqs[i]);
    for (size_t i = 0; i < e->n_cache; i++) lb_kv_block_unref(e->kv, e->cache[i].block);
    for (int i = 0; i < e->n_fts; i++) lb_finetune_free(&e->fts[i]);
    free(e->fts);
    free(e->seqs);
    free(e->cache);
    free(e->toks);
    lb_stream_free(e->fwd.stream);
    lb_fwd_free(&e->fwd);
    lb_kv_cache_free(e->kv);
    if (e->be && e->be->forget) e->be->forget(); /* the model's weights may be freed next */
    lb_pool_free(e->pool);
    lb_mem_tracker_free(e->mem);
    free(e);
}

int lb_engine_n_threads(const lb_engine *e) { return lb_pool_size(e->pool); }

lb_status lb_engine_add_finetune(lb_engine *e, const char *delta_path, int *ft_id, lb_error *err) {
    lb_finetune *p = realloc(e->fts, (size_t)(e->n_fts + 1) * sizeof *p);
    if (!p) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    e->fts = p;
    lb_status st = lb_fwd_enable_finetunes(&e->fwd, err);
    if (!st) st = lb_finetune_load(e->m, delta_path, &e->fts[e->n_fts], err);
    if (st) return st;
    *ft_id = ++e->n_fts;
    return LB_OK;
}

/* ---- sequences ---------------------------------------------------------------------------- */

static lb_engine_seq *seq_get(const lb_engine *e, int id) {
    return id >= 0 && id < e->n_seqs && e->seqs[id].used ? &e->seqs[id] : NULL;
}

/* The chain hash's start: cached blocks of one fine-tune only. */
static uint64_t hash_seed(int ft) { return (uint64_t)ft * 0x9e3779b97f4a7c15ull + 1; }

static lb_status seq_alloc(lb_engine *e, int ft, int *id, lb_error *err) {
    int i = 0;
    while (i < e->n_seqs && e->seqs[i].used) i++;
    if (i == e->cap_seqs) {
        int cap = e->cap_seqs ? 2 * e->cap_seqs : 16;
        lb_engine_seq *p = realloc(e->seqs, (size_t)cap * sizeof *p);
        if (!p) return lb_fail(err, LB_ERR_NOMEM, "out of memory for %d sequences", cap);
        e->seqs = p;
        e->cap_seqs = cap;
    }
    if (i == e->n_seqs) e->n_seqs++;
    memset(&e->seqs[i], 0, sizeof e->seqs[i]);
    e->seqs[i].used = 1;
    e->seqs[i].ft = ft;
    e->seqs[i].hash = hash_seed(ft);
    *id = i;
    return LB_OK;
}

lb_status lb_engine_seq_new(lb_engine *e, int ft, int *id, lb_error *err) {
    if (ft < 0 || ft > e->n_fts)
        return lb_fail(err, LB_ERR_ARG, "unknown fine-tune %d (the engine has %d)", ft, e->n_fts);
    return seq_alloc(e, ft, id, err);
}

static lb_status grow_tokens(lb_engine_seq *s, int n, lb_error *err) {
    if (n <= s->cap_tokens) return LB_OK;
    int cap = s->cap_tokens ? s->cap_tokens : 64;
    while (cap < n) cap *= 2;
    int32_t *p = realloc(s->tokens, (size_t)cap * sizeof *p);
    if (!p) return lb_fail(err, LB_ERR_NOMEM, "out of memory for a sequence of %d tokens", cap);
    s->tokens = p;
    s->cap_tokens = cap;
    return LB_OK;
}

lb_status lb_engine_seq_fork(lb_engine *e, int src, int *id, lb_error *err) {
    if (!seq_get(e, src)) return lb_fail(err, LB_ERR_ARG, "fork: unknown sequence %d", src);
    lb_status st = seq_alloc(e, e->seqs[src].ft, id, err);
    if (st) return st;
    lb_engine_seq *s = &e->seqs[src], *d = &e->seqs[*id]; /* after seq_alloc: it may move the array */
    if ((st = grow_tokens(d, s->kv.n_tokens, err)) || (st = lb_kv_seq_fork(e->kv, &s->kv, &d->kv, err))) {
        seq_clear(e, d);
        return st;
    }
    if (s->kv.n_tokens) memcpy(d->tokens, s->tokens, (size_t)s->kv.n_tokens * sizeof *s->tokens);
    d->n_hashed = s->n_hashed;
    d->hash = s->hash;
    return LB_OK;
}

lb_status lb_engine_seq_free(lb_engine *e, int id, lb_error *err) {
    lb_engine_seq *s = seq_get(e, id);
    if (!s) return lb_fail(err, LB_ERR_ARG, "free: unknown sequence %d", id);
    seq_clear(e, s);
    return LB_OK;
}

int lb_engine_seq_len(const lb_engine *e, int id) {
    const lb_engine_seq *s = seq_get(e, id);
    return s ? s->kv.n_tokens : -1;
}

/* ---- prefix cache --------------------------------------------------------------------------- */

static uint64_t chain_hash(uint64_t prev, const int32_t *ids, int n) { return XXH64(ids, (size_t)n * sizeof *ids, prev); }

static lb_prefix_entry *cache_find(lb_engine *e, uint64_t h) {
    for (size_t i = 0; i < e->n_cache; i++)
        if (e->cache[i].hash == h) return &e->cache[i];
    return NULL;
}

/* Offers the sequence's newly filled blocks to the cache (one reference each). */
static void cache_add_full(lb_engine *e, lb_engine_seq *s) {
    int bt = e->p.block_tokens;
    while (e->p.prefix_cache && (s->n_hashed + 1) * bt <= s->kv.n_tokens) {
        uint64_t h = chain_hash(s->hash, s->tokens + (size_t)s->n_hashed * bt, bt);
        if (!cache_find(e, h)) {
            if (e->n_cache == e->cap_cache) {
                size_t cap = e->cap_cache ? 2 * e->cap_cache : 64;
                lb_prefix_entry *p = realloc(e->cache, cap * sizeof *p);
                if (!p) return; /* the cache is an optimisation: go on without it */
                e->cache = p;
                e->cap_cache = cap;
            }
            int32_t b = s->kv.blocks[s->n_hashed];
            lb_kv_block_ref(e->kv, b);
            e->cache[e->n_cache++] = (lb_prefix_entry){h, b, ++e->clock};
        }
        s->hash = h;
        s->n_hashed++;
    }
}

/* Drops the least recently used cached blocks no sequence holds until `want` blocks are free. */
static void cache_evict(lb_engine *e, size_t want) {
    while (lb_kv_n_free(e->kv) < want) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < e->n_cache; i++)
            if (lb_kv_block_refs(e->kv, e->cache[i].block) == 1 &&
                (best == SIZE_MAX || e->cache[i].last_use < e->cache[best].last_use))
                best = i;
        if (best == SIZE_MAX) return;
        lb_kv_block_unref(e->kv, e->cache[best].block);
        e->cache[best] = e->cache[--e->n_cache];
    }
}

lb_status lb_engine_seq_reuse_prefix(lb_engine *e, int id, const int32_t *ids, size_t n_ids, size_t *n_reused,
                                     lb_error *err) {
    lb_engine_seq *s = seq_get(e, id);
    *n_reused = 0;
    if (!s) return lb_fail(err, LB_ERR_ARG, "reuse: unknown sequence %d", id);
    if (s->kv.n_tokens) return lb_fail(err, LB_ERR_ARG, "reuse: sequence %d already holds %d positions", id, s->kv.n_tokens);
    int bt = e->p.block_tokens;
    size_t max_blocks = n_ids ? (n_ids - 1) / (size_t)bt : 0; /* the last id is always computed */
    lb_status st = grow_tokens(s, (int)(max_blocks * bt), err);
    if (st) return st;
    for (size_t b = 0; b < max_blocks; b++) {
        uint64_t h = chain_hash(s->hash, ids + b * bt, bt);
        lb_prefix_entry *c = cache_find(e, h);
        if (!c) break;
        if ((st = lb_kv_seq_push(e->kv, &s->kv, c->block, err))) break;
        c->last_use = ++e->clock;
        memcpy(s->tokens + b * bt, ids + b * bt, (size_t)bt * sizeof *ids);
        s->kv.n_tokens += bt;
        s->hash = h;
        s->n_hashed++;
        *n_reused += (size_t)bt;
    }
    e->tokens_reused += *n_reused;
    return st;
}

lb_status lb_engine_seq_truncate(lb_engine *e, int id, int n, lb_error *err) {
    lb_engine_seq *s = seq_get(e, id);
    if (!s) return lb_fail(err, LB_ERR_ARG, "truncate: unknown sequence %d", id);
    if (n < 0 || n > s->kv.n_tokens)
        return lb_fail(err, LB_ERR_RANGE, "truncate: sequence %d holds %d positions; cannot keep %d", id, s->kv.n_tokens, n);
    lb_kv_seq_truncate(e->kv, &s->kv, n);
    int bt = e->p.block_tokens;
    if (s->n_hashed * bt > n) { /* the chain hash covers dropped positions: rebuild it over what is kept */
        s->n_hashed = 0;
        s->hash = hash_seed(s->ft);
        while ((s->n_hashed + 1) * bt <= n) s->hash = chain_hash(s->hash, s->tokens + (size_t)s->n_hashed++ * bt, bt);
    }
    return LB_OK;
}

/* ---- decode --------------------------------------------------------------------------------- */

/* Every check before anything changes: sequences, positions, ids, room in the pool. */
static lb_status validate(lb_engine *e, const lb_batch_entry *b, size_t n, float *logits, lb_error *err) {
    const lb_config *c = &e->m->cfg;
    if (!n) return lb_fail(err, LB_ERR_ARG, "decode: the batch is empty");
    if (n > (size_t)e->p.max_batch)
        return lb_fail(err, LB_ERR_ARG, "decode: a batch of %zu entries is larger than the engine's scratch of %d tokens",
                       n, e->p.max_batch);
    for (size_t i = 0; i < n; i++) {
        lb_engine_seq *s = seq_get(e, b[i].seq);
        if (s) s->pending = 0;
    }
    int want_logits = 0;
    for (size_t i = 0; i < n; i++) {
        lb_engine_seq *s = seq_get(e, b[i].seq);
        if (!s) return lb_fail(err, LB_ERR_ARG, "decode: entry %zu names unknown sequence %d", i, b[i].seq);
        int expect = s->kv.n_tokens + s->pending;
        if (b[i].pos != expect)
            return lb_fail(err, LB_ERR_RANGE, "decode: entry %zu puts sequence %d at position %d; its next position is %d",
                           i, b[i].seq, b[i].pos, expect);
        if (b[i].pos >= e->fwd.max_seq)
            return lb_fail(err, LB_ERR_RANGE, "decode: sequence %d is full: position %d exceeds the context of %d", b[i].seq,
                           b[i].pos, e->fwd.max_seq);
        if (b[i].token < 0 || b[i].token >= c->n_vocab)
            return lb_fail(err, LB_ERR_RANGE, "decode: entry %zu: token id %d is outside the vocabulary (0..%d)", i,
                           b[i].token, c->n_vocab - 1);
        s->pending++;
        want_logits |= b[i].logits != 0;
    }
    if (want_logits && !logits) return lb_fail(err, LB_ERR_ARG, "decode: entries want logits but no buffer was given");
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        lb_engine_seq *s = seq_get(e, b[i].seq);
        if (s->pending > 0) need += lb_kv_seq_blocks_needed(e->kv, &s->kv, s->pending), s->pending = -s->pending;
    }
    if (need > lb_kv_n_free(e->kv)) cache_evict(e, need);
    if (need > lb_kv_n_free(e->kv))
        return lb_fail(err, LB_ERR_NOMEM,
                       "decode: KV pool exhausted: the batch needs %zu more blocks, %zu of the pool's %zu blocks "
                       "(%d tokens each, %zu tokens) are free",
                       need, lb_kv_n_free(e->kv), lb_kv_n_blocks(e->kv), e->p.block_tokens,
                       lb_kv_n_blocks(e->kv) * (size_t)e->p.block_tokens);
    return LB_OK;
}

/* NaN or inf weights end as non-finite logits, which every sampler turns into token 0 or
 * garbage with no sign of why; one pass over the rows (n_vocab floats, nothing next to the
 * forward pass) turns that into an error naming the position. */
static lb_status check_logits(const lb_engine *e, const lb_batch_entry *b, size_t n, const float *logits, lb_error *err) {
    size_t nv = (size_t)e->fwd.m->cfg.n_vocab, row = 0;
    for (size_t i = 0; i < n; i++) {
        if (!b[i].logits) continue;
        const float *x = logits + row++ * nv;
        uint32_t bad = 0; /* all exponent bits set: inf or NaN; an OR over the row vectorises */
        for (size_t j = 0; j < nv; j++) {
            uint32_t b;
            memcpy(&b, x + j, sizeof b);
            bad |= (b & 0x7f800000u) == 0x7f800000u;
        }
        if (!bad) continue;
        for (size_t j = 0; j < nv; j++) /* the slow loop only to name the first bad logit */
            if (!isfinite(x[j]))
                return lb_fail(err, LB_ERR_FORMAT,
                               "the model produced %s logits at token %d: weights may be corrupt (logit of id %zu; "
                               "lowbit inspect --check names them)", isnan(x[j]) ? "NaN" : "infinite", b[i].pos, j);
    }
    return LB_OK;
}

lb_status lb_engine_decode(lb_engine *e, const lb_batch_entry *b, size_t n, float *logits, lb_error *err) {
    lb_status st = validate(e, b, n, logits, err);
    if (st) return st;
    /* reserve blocks and room for the tokens (pending < 0 marks a sequence not yet reserved) */
    for (size_t i = 0; i < n; i++) {
        lb_engine_seq *s = &e->seqs[b[i].seq];
        if (s->pending >= 0) continue;
        s->pending = -s->pending;
        if ((st = grow_tokens(s, s->kv.n_tokens + s->pending, err)) ||
            (st = lb_kv_seq_reserve(e->kv, &s->kv, s->pending, err)))
            return st; /* only out of heap memory: blocks stay reserved, positions unchanged */
    }
    int bt = e->p.block_tokens;
    for (size_t i = 0; i < n; i++) {
        lb_engine_seq *s = &e->seqs[b[i].seq];
        lb_fwd_tok *t = &e->toks[i];
        t->token = b[i].token;
        t->pos = b[i].pos;
        t->blocks = s->kv.blocks;
        t->blk = s->kv.blocks[b[i].pos / bt];
        t->off = b[i].pos % bt;
        t->ft = s->ft ? &e->fts[s->ft - 1] : NULL;
        t->logits = b[i].logits != 0;
    }
    if ((st = lb_fwd_run(&e->fwd, e->toks, (int)n, logits, err))) return st;
    if ((st = check_logits(e, b, n, logits, err))) return st;
    for (size_t i = 0; i < n; i++) {
        lb_engine_seq *s = &e->seqs[b[i].seq];
        s->tokens[b[i].pos] = b[i].token;
        if (b[i].pos + 1 > s->kv.n_tokens) s->kv.n_tokens = b[i].pos + 1;
    }
    for (size_t i = 0; i < n; i++) cache_add_full(e, &e->seqs[b[i].seq]);
    e->tokens_computed += n;
    return LB_OK;
}

void lb_engine_scratch_plan(const lb_model *m, const lb_engine_params *p, size_t *fixed, size_t *per_ctx_token) {
    /* the defaults lb_engine_new and lb_pool_new apply */
    int B = p->max_batch > 0 ? p->max_batch : DEFAULT_MAX_BATCH;
    lb_fwd_scratch_plan(m, lb_pool_threads_for(p->n_threads), B, fixed, per_ctx_token);
    *fixed += (size_t)B * sizeof(lb_fwd_tok); /* the batch as the forward pass takes it */
}

void lb_engine_get_stats(const lb_engine *e, lb_engine_stats *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < e->n_seqs; i++) o->n_seqs += e->seqs[i].used;
    o->n_finetunes = e->n_fts;
    o->block_tokens = e->p.block_tokens;
    o->max_batch = e->p.max_batch;
    o->n_ctx = e->fwd.max_seq;
    o->n_blocks = lb_kv_n_blocks(e->kv);
    o->blocks_in_use = o->n_blocks - lb_kv_n_free(e->kv);
    o->blocks_cached = e->n_cache;
    o->block_bytes = lb_kv_block_size(e->kv);
    o->pool_bytes = o->n_blocks * o->block_bytes;
    o->bytes_in_use = o->blocks_in_use * o->block_bytes;
    o->tokens_computed = e->tokens_computed;
    o->tokens_reused = e->tokens_reused;
}
