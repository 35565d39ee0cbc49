/* lowbit serve --draft: a smaller model of the same vocabulary drafts tokens for the speculative
 * slots. It runs in an engine of its own (one sequence per slot, its own KV pool, the same
 * context length as the target's). A step first brings every drafting slot's draft sequence up
 * to the slot's context (the prefix it already agrees with is kept, so after the first step only
 * the tokens the target kept are fed), all slots in one batched call per chunk; then each round
 * is one batched call that gives every slot still drafting its next token. Drafts are the draft
 * model's greedy tokens: the target verifies them by sampling each row as plain decoding would,
 * so they only decide the speed, never the text. Only the scheduler thread calls these. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

#define SV_DRAFT_CHUNK 32 /* context ids per slot per sync call */

typedef struct dslot {
    int32_t *held; /* the ids the slot's draft sequence holds, in order */
    int n_held;    /* -1: no sequence yet */
    float *logits; /* the draft's next-token logits once synced */
} dslot;

struct sv_draft {
    sv_engine *eng;
    int n_slots, n_vocab, n_ctx;
    dslot *slots;
    sv_eval *items;
};

static lb_status nomem(lb_error *err) {
    if (err) *err = (lb_error){LB_ERR_NOMEM, "serve: out of memory for the draft model"};
    return LB_ERR_NOMEM;
}

lb_status sv_draft_new(lb_model *dm, int n_slots, const lb_engine_params *target, sv_draft **out, lb_error *err) {
    *out = NULL;
    sv_draft *d = calloc(1, sizeof *d);
    if (!d) return nomem(err);
    d->n_slots = n_slots;
    d->n_vocab = lb_model_n_vocab(dm);
    d->n_ctx = target->n_ctx;
    d->slots = calloc((size_t)n_slots, sizeof *d->slots);
    d->items = calloc((size_t)n_slots, sizeof *d->items);
    if (!d->slots || !d->items) {
        sv_draft_free(d);
        return nomem(err);
    }
    for (int i = 0; i < n_slots; i++) {
        d->slots[i].n_held = -1;
        d->slots[i].held = malloc((size_t)d->n_ctx * sizeof(int32_t));
        d->slots[i].logits = malloc((size_t)d->n_vocab * sizeof(float));
        if (!d->slots[i].held || !d->slots[i].logits) {
            sv_draft_free(d);
            return nomem(err);
        }
    }
    lb_engine_params ep = *target;
    ep.n_kv_tokens = target->n_ctx * n_slots;
    ep.max_batch = n_slots * SV_DRAFT_CHUNK;
    lb_status st = sv_engine_new(dm, n_slots, 1, &ep, &d->eng, err);
    if (st) {
        sv_draft_free(d);
        return st;
    }
    *out = d;
    return LB_OK;
}

void sv_draft_plan(lb_model *dm, int n_slots, const lb_engine_params *target, lb_mem_plan_in *in) {
    lb_mem_plan_in din;
    lb_model_mem_plan_input(dm, target->n_threads, &din);
    uint64_t ns = (uint64_t)n_slots, vocab_bytes = (uint64_t)lb_model_n_vocab(dm) * sizeof(float);
    in->weight_bytes += din.weight_bytes;
    lb_mem_runtime rt; /* the process is counted once, with the target; the draft engine's own threads are not */
    lb_model_mem_runtime(dm, target->n_threads, &rt);
    in->overhead_bytes += din.overhead_bytes - (rt.total - rt.stacks);
    for (int t = 0; t < LB_MEM_KV_COUNT; t++) /* one sequence per slot, of the target's context and type */
        in->kv_bytes_per_token[t] = din.kv_bytes_per_token[t] ? in->kv_bytes_per_token[t] + ns * din.kv_bytes_per_token[t] : 0;
    lb_engine_params ep = *target; /* as sv_draft_new shapes it */
    ep.max_batch = n_slots * SV_DRAFT_CHUNK;
    size_t fixed, per_token;
    lb_engine_scratch_plan(dm, &ep, &fixed, &per_token);
    in->scratch_bytes += fixed + 2 * ns * vocab_bytes; /* the engine's logits rows and each slot's copy */
    in->scratch_bytes_per_token += per_token + ns * sizeof(int32_t); /* + the ids each sequence holds */
}

void sv_draft_free(sv_draft *d) {
    if (!d) return;
    sv_engine_free(d->eng);
    if (d->slots)
        for (int i = 0; i < d->n_slots; i++) free(d->slots[i].held), free(d->slots[i].logits);
    free(d->slots);
    free(d->items);
    free(d);
}

void sv_draft_end(sv_draft *d, int slot) {
    if (!d || d->slots[slot].n_held < 0) return;
    sv_engine_end(d->eng, slot);
    d->slots[slot].n_held = -1;
}

/* Keeps the prefix of the slot's draft sequence that agrees with ctx (leaving at least the last
 * id to feed, whose logits are wanted); returns the ids still to feed. */
static lb_status keep_prefix(sv_draft *d, sv_dreq *q, lb_error *err) {
    dslot *ds = &d->slots[q->slot];
    lb_status st = LB_OK;
    if (ds->n_held < 0) {
        size_t reused = 0;
        if ((st = sv_engine_begin(d->eng, q->slot, 0, q->ctx, q->n, &reused, err))) return st;
        memcpy(ds->held, q->ctx, reused * sizeof *ds->held);
        ds->n_held = (int)reused;
    }
    int c = 0;
    while (c < ds->n_held && (size_t)c + 1 < q->n && ds->held[c] == q->ctx[c]) c++;
    if (c < ds->n_held && (st = sv_engine_truncate(d->eng, q->slot, c, err))) return st;
    ds->n_held = c;
    q->left = q->n - (size_t)c;
    return LB_OK;
}

/* Runs the items (each one slot's ids) and records what each sequence now holds. */
static lb_status feed(sv_draft *d, int n, lb_error *err) {
    lb_status st = sv_engine_eval(d->eng, d->items, n, err);
    for (int i = 0; !st && i < n; i++) {
        dslot *ds = &d->slots[d->items[i].slot];
        memcpy(ds->held + ds->n_held, d->items[i].ids, d->items[i].n_ids * sizeof *ds->held);
        ds->n_held += (int)d->items[i].n_ids;
    }
    return st;
}

/* Every request's draft sequence up to its context, in chunks of SV_DRAFT_CHUNK ids a slot. */
static lb_status sync_all(sv_draft *d, sv_dreq *q, int n_q, lb_error *err) {
    lb_status st = LB_OK;
    for (int i = 0; !st && i < n_q; i++) st = keep_prefix(d, &q[i], err);
    for (int more = 1; !st && more;) {
        int n = 0;
        more = 0;
        for (int i = 0; i < n_q; i++) {
            if (!q[i].left) continue;
            size_t take = q[i].left < SV_DRAFT_CHUNK ? q[i].left : SV_DRAFT_CHUNK;
            q[i].left -= take;
            more |= q[i].left > 0;
            d->items[n++] = (sv_eval){q[i].slot, q[i].ctx + q[i].n - take - q[i].left, take,
                                      q[i].left ? NULL : d->slots[q[i].slot].logits, LB_OK, 0};
        }
        if (n) st = feed(d, n, err);
    }
    return st;
}

/* The draft's greedy token and its softmax probability (what p_min compares). */
static int32_t pick(const float *x, int n, float *prob) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - x[best]);
    *prob = (float)(1.0 / sum);
    return best;
}

/* got counts a request's drafts while it drafts and is stored as -got - 1 once it is done. */
lb_status sv_draft_run(sv_draft *d, sv_dreq *q, int n_q, lb_error *err) {
    for (int i = 0; i < n_q; i++) q[i].got = q[i].k > 0 ? 0 : -1;
    lb_status st = sync_all(d, q, n_q, err);
    for (int more = 1; !st && more;) {
        int n = 0;
        more = 0;
        for (int i = 0; i < n_q; i++) {
            if (q[i].got < 0) continue; /* done */
            float prob;
            int32_t t = pick(d->slots[q[i].slot].logits, d->n_vocab, &prob);
            if (prob < q[i].p_min) {
                q[i].got = -q[i].got - 1;
                continue;
            }
            q[i].out[q[i].got++] = t;
            if (q[i].got == q[i].k) {
                q[i].got = -q[i].got - 1;
                continue;
            }
            d->items[n++] = (sv_eval){q[i].slot, &q[i].out[q[i].got - 1], 1, d->slots[q[i].slot].logits, LB_OK, 0};
            more = 1;
        }
        if (n) st = feed(d, n, err);
    }
    for (int i = 0; i < n_q; i++) {
        q[i].got = st ? 0 : q[i].got < 0 ? -q[i].got - 1 : q[i].got;
        if (st) sv_draft_end(d, q[i].slot); /* what it holds is unknown now: start it again */
    }
    return st;
}
