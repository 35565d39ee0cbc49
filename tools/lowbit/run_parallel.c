/* lowbit run --parallel N -f PROMPTS: one prompt per line, generated N at a time through one
 * lb_engine (each decode step runs one token of every live sequence in one weight pass); a
 * finished sequence's slot takes the next prompt at once, and outputs are printed in prompt
 * order. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine_util.h"
#include "run.h"

typedef struct par_seq {
    int seq, done;
    int32_t *ids;   /* the prompt */
    size_t n_ids, start;
    lb_sampler *smp;
    int32_t *hist;  /* prompt then generated ids, for the repetition penalty */
    size_t n_hist;
    char *text;
    size_t text_len;
} par_seq;

static int append_piece(const lb_tokenizer *t, par_seq *p, int32_t id) {
    size_t n = lb_token_piece(t, id, NULL, 0);
    char *s = realloc(p->text, p->text_len + n + 1);
    if (!s) return 0;
    p->text = s;
    lb_token_piece(t, id, s + p->text_len, n + 1);
    p->text_len += n;
    s[p->text_len] = 0;
    return 1;
}

/* Splits text into its non-empty lines (in place); returns their count, *lines malloc'ed. */
static int split_lines(char *text, char ***lines) {
    int n = 0, cap = 16;
    char **v = malloc((size_t)cap * sizeof *v);
    for (char *s = text; v && *s;) {
        char *e = s + strcspn(s, "\n");
        int more = *e != 0;
        *e = 0;
        if (e > s && e[-1] == '\r') e[-1] = 0;
        if (*s) {
            if (n == cap) {
                char **w = realloc(v, (size_t)(cap *= 2) * sizeof *v);
                if (!w) { free(v); return -1; }
                v = w;
            }
            v[n++] = s;
        }
        s = more ? e + 1 : e;
    }
    *lines = v;
    return v ? n : -1;
}

/* With --chat each line is the user's message of a conversation of its own. */
static lb_status tokenize_all(const run_opts *o, const lb_tokenizer *tok, const char *style, char **lines,
                              par_seq *ps, int n, lb_error *err) {
    for (int i = 0; i < n; i++) {
        char *text = lines[i];
        lb_chat_message msgs[2] = {{"system", o->system}, {"user", lines[i]}};
        int sys = o->system != NULL;
        if (o->chat && lb_chat_format(style, msgs + !sys, 1 + (size_t)sys, &text, err)) return err->status;
        lb_status st = lb_tokenize(tok, text, strlen(text), 1, &ps[i].ids, &ps[i].n_ids, err);
        if (o->chat) free(text);
        if (st) return st;
        if (!ps[i].n_ids) return lb_fail(err, LB_ERR_ARG, "%s: prompt %d encodes to no tokens", o->file, i + 1);
    }
    return LB_OK;
}

/* The scheduler of one run: --parallel slots over all prompts. A slot whose sequence stops is
 * refilled with the next prompt at once (continuous batching), so one long answer does not hold
 * back the prompts behind it; outputs are printed in prompt order as soon as they can be. */
typedef struct par_run {
    const run_opts *o;
    lb_engine *e;
    const lb_tokenizer *tok;
    char **lines;
    par_seq *ps;
    int n, nv, n_ctx, max_batch;
    int n_slots, *slot;  /* slot k runs prompt slot[k], or -1 when free */
    int *fresh;          /* slot k's logits row is new and not sampled yet */
    int next, printed;   /* the next prompt to start, to print */
    int live, peak;      /* sequences in the engine now, at most */
    float *logits, *rows; /* n_slots rows each: latest logits per slot, decode output */
    lb_batch_entry *b;
    int *bslot, nb;      /* the next decode step's entries and their slots */
    int *a_seq, *a_slot; /* the prompts admitted together, for cli_engine_prefill */
    int32_t **a_ids;
    size_t *a_len, *a_start, n_gen, n_steps; /* generated ids fed back, decode steps */
} par_run;

/* Gives prompt i an engine sequence (reusing cached blocks of an equal start) and its sampler. */
static lb_status start_prompt(par_run *r, int i, lb_error *err) {
    par_seq *p = &r->ps[i];
    size_t hist_cap = p->n_ids + (size_t)(r->o->n_predict < r->n_ctx ? r->o->n_predict : r->n_ctx) + 1;
    lb_status st = lb_engine_seq_new(r->e, 0, &p->seq, err);
    if (st) return st;
    r->live++;
    if (r->live > r->peak) r->peak = r->live;
    /* a prompt starting like an earlier one (a shared system line) reuses its blocks */
    st = lb_engine_seq_reuse_prefix(r->e, p->seq, p->ids, p->n_ids, &p->start, err);
    if (!st) st = lb_sampler_new(&r->o->sp, r->nv, &p->smp, err);
    if (!st && !(p->hist = malloc(hist_cap * sizeof(int32_t)))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (st) return st;
    memcpy(p->hist, p->ids, p->n_ids * sizeof(int32_t));
    p->n_hist = p->n_ids;
    return LB_OK;
}

/* Fills every free slot with the next prompts and runs those prompts together. */
static lb_status admit(par_run *r, lb_error *err) {
    int na = 0;
    for (int k = 0; k < r->n_slots && r->next < r->n; k++) {
        if (r->slot[k] >= 0) continue;
        int i = r->next++;
        lb_status st = start_prompt(r, i, err);
        if (st) return st;
        r->slot[k] = i;
        r->a_seq[na] = r->ps[i].seq, r->a_ids[na] = r->ps[i].ids, r->a_len[na] = r->ps[i].n_ids;
        r->a_start[na] = r->ps[i].start, r->a_slot[na++] = k;
    }
    if (!na) return LB_OK;
    lb_status st = cli_engine_prefill(r->e, r->a_seq, r->a_ids, r->a_len, r->a_start, na, r->max_batch, r->nv,
                                      r->rows, err);
    for (int j = 0; !st && j < na; j++) {
        int k = r->a_slot[j];
        memcpy(r->logits + (size_t)k * r->nv, r->rows + (size_t)j * r->nv, (size_t)r->nv * sizeof(float));
        r->fresh[k] = 1;
    }
    return st;
}

/* Slot k's sequence stopped: its blocks go back to the pool (the prefix cache keeps full ones). */
static lb_status finish(par_run *r, int k, lb_error *err) {
    par_seq *p = &r->ps[r->slot[k]];
    p->done = 1;
    r->slot[k] = -1;
    r->fresh[k] = 0;
    r->live--;
    return lb_engine_seq_free(r->e, p->seq, err);
}

/* Samples each slot with new logits: its next id joins the decode batch, or the slot stops. */
static lb_status sample_fresh(par_run *r, lb_error *err) {
    lb_status st = LB_OK;
    for (int k = 0; !st && k < r->n_slots; k++) {
        if (!r->fresh[k]) continue;
        par_seq *p = &r->ps[r->slot[k]];
        r->fresh[k] = 0;
        if (r->o->n_predict <= 0) { st = finish(r, k, err); continue; }
        int32_t id = lb_sampler_sample(p->smp, r->logits + (size_t)k * r->nv, p->hist, p->n_hist);
        if (lb_token_is_eog(r->tok, id) || !append_piece(r->tok, p, id)) { st = finish(r, k, err); continue; }
        p->hist[p->n_hist++] = id;
        int len = lb_engine_seq_len(r->e, p->seq);
        if ((long long)(p->n_hist - p->n_ids) >= r->o->n_predict || len >= r->n_ctx) { st = finish(r, k, err); continue; }
        r->bslot[r->nb] = k;
        r->b[r->nb++] = (lb_batch_entry){.seq = p->seq, .pos = len, .token = id, .logits = 1};
    }
    return st;
}

static void print_one(const run_opts *o, const char *line, const par_seq *p, int index) {
    if (o->json) {
        printf("{\"index\": %d, \"prompt_ids\": ", index);
        cli_json_ids(stdout, p->ids, p->n_ids);
        fputs(", \"ids\": ", stdout);
        cli_json_ids(stdout, p->hist ? p->hist + p->n_ids : NULL, p->hist ? p->n_hist - p->n_ids : 0);
        fputs(", \"text\": ", stdout);
        cli_json_string(stdout, p->text ? p->text : "", p->text_len);
        fputs("}\n", stdout);
    } else {
        printf("--- %d: %s\n%s\n", index, line, p->text ? p->text : "");
    }
}

/* Prints the finished prompts that no unfinished one precedes. */
static void print_ready(par_run *r) {
    int any = 0;
    for (; r->printed < r->n && r->ps[r->printed].done; r->printed++, any = 1)
        print_one(r->o, r->lines[r->printed], &r->ps[r->printed], r->printed + 1);
    if (any) fflush(stdout);
}

/* Admits, samples and decodes until every prompt has stopped (or the memory guard stops all). */
static lb_status schedule(par_run *r, lb_mem_guard *guard, lb_error *err) {
    lb_status st = LB_OK;
    for (;;) {
        if ((st = admit(r, err)) || (st = sample_fresh(r, err))) return st;
        print_ready(r);
        if (r->live < r->n_slots && r->next < r->n) continue; /* refill before the next step */
        if (r->nb == 0) return LB_OK;
        if (guard && lb_mem_guard_step(guard) == LB_MEM_GUARD_STOP) {
            fprintf(stderr, "lowbit: memory pressure critical (%s); stopping generation early\n", lb_mem_guard_reason(guard));
            for (int i = 0; i < r->n; i++) r->ps[i].done = 1; /* print what there is */
            print_ready(r);
            return LB_OK;
        }
        if ((st = lb_engine_decode(r->e, r->b, (size_t)r->nb, r->rows, err))) return st;
        for (int j = 0; j < r->nb; j++) {
            int k = r->bslot[j];
            memcpy(r->logits + (size_t)k * r->nv, r->rows + (size_t)j * r->nv, (size_t)r->nv * sizeof(float));
            r->fresh[k] = 1;
        }
        r->n_gen += (size_t)r->nb;
        r->n_steps++;
        r->nb = 0;
    }
}

static int by_size_desc(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The engine's shape: a context for the longest prompt plus answer, a pool for the n_slots
 * largest sequences that can be live at once (each with a partly filled last block). */
static lb_status engine_params(const run_opts *o, const par_seq *ps, int n, int n_slots, int n_ctx_train,
                               lb_engine_params *ep, lb_error *err) {
    *ep = lb_engine_default_params();
    size_t longest = 0, pool = 0, *need = malloc((size_t)n * sizeof *need);
    if (!need) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        need[i] = ps[i].n_ids + (size_t)o->n_predict;
        if (need[i] > longest) longest = need[i];
    }
    ep->n_ctx = o->n_ctx ? (int)o->n_ctx
                         : (int)(n_ctx_train > 0 && longest > (size_t)n_ctx_train ? (size_t)n_ctx_train : longest);
    for (int i = 0; i < n; i++) {
        if (ps[i].n_ids >= (size_t)ep->n_ctx) {
            free(need);
            return lb_fail(err, LB_ERR_RANGE, "%s: prompt %d has %zu tokens; the context holds %d", o->file, i + 1,
                           ps[i].n_ids, ep->n_ctx);
        }
        if (need[i] > (size_t)ep->n_ctx) need[i] = (size_t)ep->n_ctx;
    }
    qsort(need, (size_t)n, sizeof *need, by_size_desc);
    for (int i = 0; i < n_slots; i++) pool += need[i] + 16;
    free(need);
    ep->n_threads = (int)o->threads;
    ep->kv_type = o->kv;
    ep->n_kv_tokens = pool > (1u << 26) ? 1 << 26 : (int)pool;
    ep->max_batch = n_slots > 64 ? n_slots : 64;
    return LB_OK;
}

static void report(const par_run *r, double seconds) {
    lb_engine_stats es;
    lb_engine_get_stats(r->e, &es);
    /* prompts and answers interleave, so one rate covers both */
    fprintf(stderr, "lowbit: %d prompts, at most %d at a time | prompt %llu tok computed, %llu reused | generated %zu "
            "tok in %zu decode steps | %.1f tok/s in all | %d threads\n", r->n, r->peak,
            (unsigned long long)(es.tokens_computed - r->n_gen), (unsigned long long)es.tokens_reused, r->n_gen, r->n_steps,
            seconds > 0 ? (double)es.tokens_computed / seconds : 0, lb_engine_n_threads(r->e));
}

static void free_run(par_run *r) {
    free(r->logits), free(r->rows), free(r->slot), free(r->fresh), free(r->bslot), free(r->b);
    free(r->a_seq), free(r->a_slot), free(r->a_ids), free(r->a_len), free(r->a_start);
}

/* The per-slot buffers, all slots free. */
static lb_status alloc_run(par_run *r, lb_error *err) {
    size_t k = (size_t)r->n_slots, rows = k * (size_t)r->nv;
    r->logits = malloc(rows * sizeof(float)), r->rows = malloc(rows * sizeof(float));
    r->slot = malloc(k * sizeof(int)), r->fresh = calloc(k, sizeof(int));
    r->bslot = malloc(k * sizeof(int)), r->b = malloc(k * sizeof *r->b);
    r->a_seq = malloc(k * sizeof(int)), r->a_slot = malloc(k * sizeof(int)), r->a_ids = malloc(k * sizeof(int32_t *));
    r->a_len = malloc(k * sizeof(size_t)), r->a_start = malloc(k * sizeof(size_t));
    if (!r->logits || !r->rows || !r->slot || !r->fresh || !r->bslot || !r->b || !r->a_seq || !r->a_slot || !r->a_ids ||
        !r->a_len || !r->a_start)
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t j = 0; j < k; j++) r->slot[j] = -1;
    return LB_OK;
}

/* Runs all n prompts through one engine, o->parallel at a time. */
static lb_status run_engine(const run_opts *o, lb_model *m, char **lines, par_seq *ps, int n, lb_error *err) {
    const char *style = o->chat ? lb_chat_template_style(lb_model_chat_template(m)) : NULL;
    if (o->chat && !style) return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: --chat needs a chat template lowbit knows", o->model);
    par_run r = {.o = o, .tok = lb_model_tokenizer(m), .lines = lines, .ps = ps, .n = n, .nv = lb_model_n_vocab(m)};
    r.n_slots = n < o->parallel ? n : (int)o->parallel;
    lb_engine_params ep;
    lb_status st = tokenize_all(o, r.tok, style, lines, ps, n, err);
    if (!st) st = engine_params(o, ps, n, r.n_slots, lb_model_n_ctx_train(m), &ep, err);
    if (st) return st;
    r.n_ctx = ep.n_ctx, r.max_batch = ep.max_batch;
    if (!st) st = alloc_run(&r, err);
    if (!st) st = lb_engine_new(m, &ep, &r.e, err);
    lb_mem_guard *guard = st ? NULL : cli_mem_guard_open();
    double t0 = cli_now();
    if (!st) st = schedule(&r, guard, err);
    if (!st) report(&r, cli_now() - t0);
    lb_mem_guard_close(guard);
    lb_engine_free(r.e);
    free_run(&r);
    return st;
}

int cli_run_parallel(const run_opts *o) {
    char **lines = NULL;
    char *text = (char *)o->prompt;
    int n = split_lines(text, &lines);
    if (n < 0) return cli_fail("out of memory");
    if (n == 0) {
        free(lines);
        return cli_fail("%s: no prompts (one a line; empty lines are skipped)", o->file);
    }
    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.tokenizer_path = o->tokenizer;
    mp.delta_path = o->delta;
    mp.n_threads = (int)o->threads;
    lb_model *m = NULL;
    par_seq *ps = calloc((size_t)n, sizeof *ps);
    lb_status st = ps ? lb_model_load(o->model, &mp, &m, &err) : lb_fail(&err, LB_ERR_NOMEM, "out of memory");
    if (!st && o->no_repack) lb_model_set_repack(m, 0);
    if (!st && !lb_model_tokenizer(m)) st = lb_fail(&err, LB_ERR_ARG, "%s: the model has no tokenizer; give one with --tokenizer", o->model);
    if (!st) st = run_engine(o, m, lines, ps, n, &err);
    for (int i = 0; ps && i < n; i++) {
        free(ps[i].ids);
        free(ps[i].hist);
        free(ps[i].text);
        lb_sampler_free(ps[i].smp);
    }
    free(ps);
    free(lines);
    lb_model_free(m);
    return st ? cli_error(&err) : CLI_OK;
}
