/* lowbit serve: the scheduler, continuous batching. One thread owns the engine and its slots;
 * each step it admits queued requests into free slots (when their KV blocks fit), gives the
 * prefilling slots at most one chunk of prompt ids between them (so long prompts never stall
 * running streams) and advances every decoding slot by one token, all in one engine call. Requests
 * and their text are shared with the HTTP threads under one lock; each request has its own
 * condition variable, signalled only when its handler has something new to send (more safe text,
 * or the end), so a step wakes no handler that would find nothing and sleep again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

#define SV_RATE_WINDOW 8 /* seconds over which tok/s is averaged */

#define SV_SPEC_COST 0.15 /* a verified draft's cost in plain steps (a 17-token pass costs ~3: bench/results_spec.md) */
#define SV_SPEC_PROBE 32  /* a 1-token draft after this many plain steps: does drafting pay again? */

typedef struct slot {
    sv_request *r; /* NULL when free */
    float *logits; /* 1 + spec_kmax rows: the next token's, or one per verified position */
    int32_t *ids;  /* 1 + spec_kmax: the sampled token to feed next step, then its drafts */
    size_t blocks; /* KV blocks reserved for the request: its prompt and max_tokens */
} slot;

struct sv_sched {
    sv_engine *eng;
    sv_draft *draft;    /* --draft, or NULL */
    sv_dreq *dreqs;     /* n_slots: this step's draft model requests */
    const lb_tokenizer *tok;
    int n_vocab, n_slots, queue_max, chunk, n_ctx, spec_kmax;
    size_t block_tokens, blocks_total, blocks_reserved;
    int prefill_from;   /* the slot that prefills first next step (round robin) */
    lb_engine_stats es; /* copied after every step: the handlers never touch the engine */
    slot *slots;
    sv_eval *items;
    sv_request **queue; /* FIFO ring */
    int q_head, q_len;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work; /* the thread waits for requests */
    int quit, accepting, started;
    sv_metrics m;
    uint64_t rate_tokens[SV_RATE_WINDOW];
    long long rate_sec[SV_RATE_WINDOW];
};

const char *sv_finish_name(sv_finish f) {
    switch (f) {
    case SV_FIN_STOP: return "stop";
    case SV_FIN_LENGTH: return "length";
    case SV_FIN_CANCELLED: return "cancelled";
    case SV_FIN_ERROR: return "error";
    case SV_RUNNING: break;
    }
    return NULL;
}

/* Drops one reference (lock held); frees the request with the last one. */
static void unref(sv_request *r) {
    if (--r->refs == 0) sv_request_free(r);
}

/* Wakes r's handler if it waits and now has something to take (lock held). */
static void notify(sv_request *r) {
    if (r->waiting && (r->finish || r->text_safe > r->wait_sent)) pthread_cond_signal(&r->cv);
}

static void finish(sv_sched *s, sv_request *r, sv_finish f) {
    if (r->finish) return;
    r->finish = f;
    r->text_safe = r->text_len; /* everything left is final now */
    if (f == SV_FIN_CANCELLED) s->m.requests_cancelled++;
    if (f == SV_FIN_ERROR) s->m.requests_failed++;
    notify(r);
}

static void count_rate(sv_sched *s, uint64_t n) {
    long long sec = (long long)cli_now();
    int i = (int)(sec % SV_RATE_WINDOW);
    if (s->rate_sec[i] != sec) {
        s->rate_sec[i] = sec;
        s->rate_tokens[i] = 0;
    }
    s->rate_tokens[i] += n;
}

/* OpenAI's penalties: each id's logit drops by frequency x its count in the completion plus
 * presence when it occurs at all. */
static void apply_penalties(const sv_request *r, float *logits, int n_vocab, int *counts) {
    if (r->presence_penalty == 0 && r->frequency_penalty == 0) return;
    for (size_t i = 0; i < r->n_gen; i++)
        if (r->gen[i] >= 0 && r->gen[i] < n_vocab) counts[r->gen[i]]++;
    for (size_t i = 0; i < r->n_gen; i++) {
        int32_t id = r->gen[i];
        if (id < 0 || id >= n_vocab || !counts[id]) continue;
        logits[id] -= r->frequency_penalty * (float)counts[id] + r->presence_penalty;
        counts[id] = 0;
    }
}

/* ---- one step ------------------------------------------------------------------------------- */

/* KV blocks a request may come to hold: its prompt and every token it may generate. */
static size_t blocks_for(const sv_sched *s, const sv_request *r) {
    size_t n = r->n_prompt + (size_t)r->max_tokens;
    if (n > (size_t)s->n_ctx) n = (size_t)s->n_ctx;
    return (n + s->block_tokens - 1) / s->block_tokens;
}

/* A speculative request drafts from its prompt and what it generates, kept in one array. */
static int start_spec(sv_request *r) {
    if (!(r->ctx = malloc((r->n_prompt + (size_t)r->max_tokens) * sizeof *r->ctx))) return 0;
    memcpy(r->ctx, r->prompt, r->n_prompt * sizeof *r->ctx);
    r->tried = 2, r->kept = 1; /* no evidence yet: even odds */
    return 1;
}

/* First come, first served: the queue's head waits until a slot is free and its blocks fit
 * beside the reservations of those running (shared prefix blocks are counted in each, so the
 * pool can only be fuller on paper than in fact). */
static void admit(sv_sched *s) {
    for (int i = 0; i < s->n_slots && s->q_len; i++) {
        if (s->slots[i].r) continue;
        sv_request *r = s->queue[s->q_head];
        size_t need = blocks_for(s, r);
        int gone = r->cancelled || r->finish;
        if (!gone && s->blocks_reserved + need > s->blocks_total) return;
        s->q_head = (s->q_head + 1) % s->queue_max;
        s->q_len--;
        if (gone) { /* gone before it started */
            finish(s, r, SV_FIN_CANCELLED);
            unref(r);
            i--;
            continue;
        }
        size_t reused = 0;
        lb_error err = {0};
        r->slot = i;
        s->slots[i].r = r;
        s->slots[i].blocks = need;
        s->blocks_reserved += need;
        if (sv_engine_begin(s->eng, i, r->ft, r->prompt, r->n_prompt, &reused, &err)) {
            snprintf(r->error, sizeof r->error, "%s", err.msg);
            finish(s, r, SV_FIN_ERROR); /* its slot is released by the next build_items */
        }
        r->fed = reused;
        s->m.prompt_tokens_cached_total += reused;
        if ((r->lookup || r->draft) && !r->finish && !start_spec(r)) {
            snprintf(r->error, sizeof r->error, "out of memory");
            finish(s, r, SV_FIN_ERROR);
        }
    }
}

static void release_slot(sv_sched *s, int i) {
    sv_request *r = s->slots[i].r;
    s->slots[i].r = NULL;
    s->blocks_reserved -= s->slots[i].blocks;
    s->slots[i].blocks = 0;
    sv_engine_end(s->eng, i);
    sv_draft_end(s->draft, i);
    r->slot = -1;
    unref(r);
}

/* Drafts to verify after a decoding slot's sampled token: as many as pay at the acceptance the
 * request has seen (lb_spec_best_k at SV_SPEC_COST), within max_tokens and the context; 0 for a
 * plain step. Lookup drafts are written now; a draft model's are asked for (k) and written by
 * draft_all once the lock is released. */
static int draft_slot(sv_sched *s, int i) {
    sv_request *r = s->slots[i].r;
    if (!r->ctx) return 0;
    size_t n = r->n_prompt + r->n_gen; /* the context, the token fed this step included */
    long room = (long)r->max_tokens - (long)r->n_gen - 1, end = (long)s->n_ctx - (long)n;
    int cap = (int)(room < end ? room : end);
    if (cap > r->draft_max) cap = r->draft_max;
    if (cap <= 0) return 0;
    int k = lb_spec_best_k(r->kept / r->tried, SV_SPEC_COST, cap);
    if (!k && ++r->idle < SV_SPEC_PROBE) return 0;
    r->idle = 0;
    if (!r->lookup) return k ? k : 1;
    return lb_lookup_draft(r->ctx, n, r->lookup, k ? k : 1, s->slots[i].ids + 1);
}

/* Builds this step's items (lock held): the last sampled token of every decoding slot, then
 * prompt ids for the prefilling slots, at most `chunk` in all, starting from a rotating slot so
 * several long prompts take turns. Cancelled and finished requests leave their slot here. */
static int build_items(sv_sched *s) {
    int n = 0;
    for (int i = 0; i < s->n_slots; i++) {
        sv_request *r = s->slots[i].r;
        if (!r) continue;
        if (r->cancelled && !r->finish) finish(s, r, SV_FIN_CANCELLED);
        if (r->finish) {
            release_slot(s, i);
            continue;
        }
        if (r->fed < r->n_prompt) continue;
        int k = draft_slot(s, i);
        s->items[n++] = (sv_eval){i, s->slots[i].ids, 1 + (size_t)k, s->slots[i].logits, LB_OK, k > 0};
    }
    size_t budget = (size_t)s->chunk;
    for (int k = 0; k < s->n_slots && budget; k++) {
        int i = (s->prefill_from + k) % s->n_slots;
        sv_request *r = s->slots[i].r;
        if (!r || r->fed >= r->n_prompt) continue;
        size_t left = r->n_prompt - r->fed, take = left < budget ? left : budget;
        budget -= take;
        s->items[n++] = (sv_eval){i, r->prompt + r->fed, take, take == left ? s->slots[i].logits : NULL, LB_OK, 0};
        if (take < left) s->prefill_from = i; /* it goes on first next step */
    }
    return n;
}

/* Samples a slot's next token from one row of logits (lock held); returns it, or -1 when the
 * request ended without one (end of generation, out of memory). */
static int32_t sample_slot(sv_sched *s, int i, float *logits, int *counts) {
    slot *sl = &s->slots[i];
    sv_request *r = sl->r;
    apply_penalties(r, logits, s->n_vocab, counts);
    const int32_t *hist = r->n_gen ? r->gen : r->prompt;
    size_t n_hist = r->n_gen ? r->n_gen : r->n_prompt;
    int32_t id = lb_sampler_sample(r->sampler, logits, hist, n_hist);
    if (lb_token_is_eog(s->tok, id)) {
        finish(s, r, SV_FIN_STOP);
        return -1;
    }
    int32_t *g = realloc(r->gen, (r->n_gen + 1) * sizeof *g);
    if (!g) {
        snprintf(r->error, sizeof r->error, "out of memory");
        finish(s, r, SV_FIN_ERROR);
        return -1;
    }
    r->gen = g;
    r->gen[r->n_gen++] = id;
    if (r->ctx) r->ctx[r->n_prompt + r->n_gen - 1] = id;
    sl->ids[0] = id;
    s->m.generated_tokens_total++;
    count_rate(s, 1);
    if (r->n_gen == 1) r->t_first = cli_now();
    char buf[512];
    size_t len = lb_token_piece(s->tok, id, buf, sizeof buf); /* longer pieces are dropped */
    int hit = sv_text_append(r, buf, len < sizeof buf ? len : 0);
    if (hit < 0) {
        snprintf(r->error, sizeof r->error, "out of memory");
        finish(s, r, SV_FIN_ERROR);
    } else if (hit) {
        finish(s, r, SV_FIN_STOP);
    } else if ((int)r->n_gen >= r->max_tokens || r->n_prompt + r->n_gen - 1 >= (size_t)s->n_ctx) {
        finish(s, r, SV_FIN_LENGTH); /* positions held once this token is fed: n_prompt + n_gen - 1 */
    }
    return id;
}

/* A speculative slot's verified rows: each row is sampled in turn as plain decoding would (the
 * same sampler stream, history and penalties, so greedy and seeded output are plain decoding's,
 * and the output keeps the target's distribution), a draft stays while it is the token sampled,
 * and the KV positions of the drafts after the first mismatch are dropped. */
static void accept_slot(sv_sched *s, const sv_eval *it, int *counts) {
    slot *sl = &s->slots[it->slot];
    sv_request *r = sl->r;
    int k = (int)it->n_ids - 1, kept = 0;
    for (int j = 0; j <= k; j++) {
        int32_t id = sample_slot(s, it->slot, sl->logits + (size_t)j * (size_t)s->n_vocab, counts);
        if (id < 0 || r->finish || j == k || id != sl->ids[1 + j]) break;
        kept++;
    }
    r->n_drafted += (size_t)k;
    r->n_accepted += (size_t)kept;
    s->m.drafted_tokens_total += (uint64_t)k;
    s->m.accepted_tokens_total += (uint64_t)kept;
    r->tried = 0.9 * r->tried + kept + (kept < k);
    r->kept = 0.9 * r->kept + kept;
    lb_error err = {0};
    int n = sv_engine_n_past(s->eng, it->slot) - (k - kept);
    if (!r->finish && sv_engine_truncate(s->eng, it->slot, n, &err)) {
        snprintf(r->error, sizeof r->error, "%s", err.msg);
        finish(s, r, SV_FIN_ERROR);
    }
}

/* The draft model's drafts for this step's drafting items (lock released: only this thread
 * touches the slots, and the requests' ids); an item the draft gives fewer runs fewer. */
static void draft_all(sv_sched *s, int n_items) {
    int n = 0;
    for (int k = 0; k < n_items; k++) {
        sv_eval *it = &s->items[k];
        sv_request *r = s->slots[it->slot].r;
        if (!it->all_rows || r->lookup) continue;
        s->dreqs[n++] = (sv_dreq){it->slot, r->ctx, r->n_prompt + r->n_gen, (int)it->n_ids - 1, r->p_min,
                                  s->slots[it->slot].ids + 1, 0, 0};
    }
    lb_error err = {0};
    if (n && sv_draft_run(s->draft, s->dreqs, n, &err)) fprintf(stderr, "lowbit: serve: draft model: %s\n", err.msg);
    for (int k = 0, j = 0; k < n_items && j < n; k++) {
        sv_eval *it = &s->items[k];
        if (it->all_rows && !s->slots[it->slot].r->lookup) {
            it->n_ids = 1 + (size_t)s->dreqs[j++].got;
            it->all_rows = it->n_ids > 1;
        }
    }
}

static void step(sv_sched *s, int *counts) {
    int n = build_items(s);
    if (!n) return;
    pthread_mutex_unlock(&s->mu);
    lb_error err = {0};
    if (s->draft) draft_all(s, n);
    double t0 = cli_now();
    sv_engine_eval(s->eng, s->items, n, &err);
    double t1 = cli_now();
    pthread_mutex_lock(&s->mu);
    s->m.engine_seconds += t1 - t0;
    sv_engine_stats(s->eng, &s->es);
    size_t ids = 0;
    for (int k = 0; k < n; k++) ids += s->items[k].n_ids;
    s->m.steps_total++;
    s->m.batch_tokens_total += ids;
    if ((int)ids > s->m.batch_max) s->m.batch_max = (int)ids;
    for (int k = 0; k < n; k++) {
        sv_eval *it = &s->items[k];
        sv_request *r = s->slots[it->slot].r;
        if (it->status) {
            snprintf(r->error, sizeof r->error, "%s", err.msg);
            finish(s, r, SV_FIN_ERROR);
            continue;
        }
        if (r->fed < r->n_prompt) {
            r->fed += it->n_ids;
            s->m.prompt_tokens_total += it->n_ids;
            if (r->fed < r->n_prompt) continue;
        }
        if (!r->cancelled && it->all_rows) accept_slot(s, it, counts);
        else if (!r->cancelled) sample_slot(s, it->slot, s->slots[it->slot].logits, counts);
        notify(r);
    }
}

static int busy(const sv_sched *s) {
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].r) return 1;
    return 0;
}

static void *sched_main(void *arg) {
    sv_sched *s = arg;
    int *counts = calloc((size_t)s->n_vocab, sizeof *counts);
    pthread_mutex_lock(&s->mu);
    while (!s->quit || busy(s) || s->q_len) {
        admit(s);
        if (!busy(s)) {
            if (s->quit) break;
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        if (counts) step(s, counts);
    }
    pthread_mutex_unlock(&s->mu);
    free(counts);
    return NULL;
}

/* ---- the handlers' side ------------------------------------------------------------------------ */

lb_status sv_sched_new(sv_engine *e, const lb_tokenizer *tok, int n_vocab, int n_slots, int queue_max,
                       int prefill_chunk, int spec_kmax, sv_draft *draft, sv_sched **out, lb_error *err) {
    *out = NULL;
    sv_sched *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->eng = e;
    s->tok = tok;
    s->n_vocab = n_vocab;
    s->n_slots = n_slots;
    s->queue_max = queue_max;
    s->chunk = prefill_chunk;
    s->spec_kmax = spec_kmax;
    s->draft = draft;
    s->n_ctx = sv_engine_n_ctx(e);
    sv_engine_stats(e, &s->es);
    s->block_tokens = (size_t)s->es.block_tokens;
    s->blocks_total = s->es.n_blocks;
    s->accepting = 1;
    s->slots = calloc((size_t)n_slots, sizeof *s->slots);
    s->items = calloc((size_t)n_slots, sizeof *s->items);
    s->queue = calloc((size_t)queue_max, sizeof *s->queue);
    s->dreqs = calloc((size_t)n_slots, sizeof *s->dreqs);
    if (!s->slots || !s->items || !s->queue || !s->dreqs) goto nomem;
    for (int i = 0; i < n_slots; i++)
        if (!(s->slots[i].logits = malloc((size_t)(1 + spec_kmax) * (size_t)n_vocab * sizeof(float))) ||
            !(s->slots[i].ids = malloc((size_t)(1 + spec_kmax) * sizeof(int32_t))))
            goto nomem;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    if (pthread_create(&s->thread, NULL, sched_main, s)) {
        if (err) *err = (lb_error){LB_ERR_NOMEM, "serve: cannot start the scheduler thread"};
        s->started = 0;
        sv_sched_free(s);
        return LB_ERR_NOMEM;
    }
    s->started = 1;
    *out = s;
    return LB_OK;
nomem:
    sv_sched_free(s);
    if (err) *err = (lb_error){LB_ERR_NOMEM, "serve: out of memory for the scheduler"};
    return LB_ERR_NOMEM;
}

void sv_sched_free(sv_sched *s) {
    if (!s) return;
    if (s->started) {
        sv_sched_stop_admitting(s);
        sv_sched_cancel_all(s);
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work);
    }
    if (s->slots)
        for (int i = 0; i < s->n_slots; i++) free(s->slots[i].logits), free(s->slots[i].ids);
    free(s->slots);
    free(s->items);
    free(s->queue);
    free(s->dreqs);
    free(s);
}

int sv_sched_submit(sv_sched *s, sv_request *r) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (!r->cv_ready && pthread_cond_init(&r->cv, NULL) == 0) r->cv_ready = 1;
    if (!r->cv_ready) rc = 503;
    else if (!s->accepting) rc = 503;
    else if (s->q_len >= s->queue_max) rc = 429;
    else {
        r->refs = 2;
        r->slot = -1;
        r->t_submit = cli_now();
        s->queue[(s->q_head + s->q_len) % s->queue_max] = r;
        s->q_len++;
        s->m.requests_total++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sv_sched_cancel(sv_sched *s, sv_request *r) {
    pthread_mutex_lock(&s->mu);
    r->cancelled = 1;
    if (r->slot < 0 && !r->finish) finish(s, r, SV_FIN_CANCELLED); /* still queued: done now */
    pthread_mutex_unlock(&s->mu);
}

void sv_sched_wait(sv_sched *s, sv_request *r, size_t sent, int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    r->waiting = 1;
    r->wait_sent = sent;
    while (!r->finish && r->text_safe <= sent) {
        if (pthread_cond_timedwait(&r->cv, &s->mu, &ts) == ETIMEDOUT) break;
        s->m.handler_wakeups++;
        if (!r->finish && r->text_safe <= sent) s->m.handler_wakeups_idle++;
    }
    r->waiting = 0;
    pthread_mutex_unlock(&s->mu);
}

char *sv_sched_take(sv_sched *s, sv_request *r, size_t from, size_t *len, sv_finish *fin) {
    pthread_mutex_lock(&s->mu);
    size_t n = r->text_safe > from ? r->text_safe - from : 0;
    char *out = malloc(n + 1);
    if (out) {
        if (n) memcpy(out, r->text + from, n);
        out[n] = 0;
    }
    *len = out ? n : 0;
    *fin = r->finish;
    pthread_mutex_unlock(&s->mu);
    return out;
}

void sv_sched_error(sv_sched *s, sv_request *r, char *buf, size_t cap) {
    pthread_mutex_lock(&s->mu);
    snprintf(buf, cap, "%s", r->error[0] ? r->error : "generation failed");
    pthread_mutex_unlock(&s->mu);
}

void sv_sched_release(sv_sched *s, sv_request *r) {
    pthread_mutex_lock(&s->mu);
    if (!r->finish) {
        r->cancelled = 1;
        if (r->slot < 0) finish(s, r, SV_FIN_CANCELLED);
    }
    unref(r);
    pthread_mutex_unlock(&s->mu);
}

void sv_sched_stop_admitting(sv_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->accepting = 0;
    pthread_mutex_unlock(&s->mu);
}

int sv_sched_in_flight(sv_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->q_len;
    for (int i = 0; i < s->n_slots; i++) n += s->slots[i].r != NULL;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sv_sched_cancel_all(sv_sched *s) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].r) s->slots[i].r->cancelled = 1;
    for (int k = 0; k < s->q_len; k++) {
        sv_request *r = s->queue[(s->q_head + k) % s->queue_max];
        r->cancelled = 1;
        finish(s, r, SV_FIN_CANCELLED);
    }
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sv_sched_metrics(sv_sched *s, sv_metrics *m) {
    pthread_mutex_lock(&s->mu);
    *m = s->m;
    m->queue_depth = s->q_len;
    m->queue_max = s->queue_max;
    m->slots_total = s->n_slots;
    m->slots_busy = 0;
    m->kv_tokens_used = 0;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].r) {
            m->slots_busy++;
            m->kv_tokens_used += s->slots[i].r->fed + s->slots[i].r->n_gen;
        }
    m->kv_tokens_total = (uint64_t)s->es.n_blocks * s->block_tokens;
    m->kv_bytes = s->es.pool_bytes;
    m->kv_blocks_used = s->es.blocks_in_use;
    m->kv_blocks_cached = s->es.blocks_cached;
    m->kv_blocks_reserved = s->blocks_reserved;
    m->kv_blocks_total = s->es.n_blocks;
    m->accepting = s->accepting;
    long long now = (long long)cli_now();
    uint64_t tok = 0;
    for (int i = 0; i < SV_RATE_WINDOW; i++) /* the last full seconds */
        if (s->rate_sec[i] < now && s->rate_sec[i] >= now - (SV_RATE_WINDOW - 1)) tok += s->rate_tokens[i];
    m->tokens_per_second = (double)tok / (SV_RATE_WINDOW - 1);
    pthread_mutex_unlock(&s->mu);
}
