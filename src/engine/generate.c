/* lb_generate: the generation loop of one session (sampling, stop conditions, chat turns,
 * streaming, the memory guard), so the CLI and other front ends do not each write it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "engine/generate.h"
#include "graph/chat.h"

const char *lb_stop_reason_name(lb_stop_reason r) {
    static const char *names[] = {"length", "eog", "stop", "context", "caller", "memory"};
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "unknown";
}

lb_generate_params lb_generate_default_params(void) {
    lb_generate_params p = {0};
    p.sampling = lb_sampler_default_params();
    p.max_tokens = 256;
    return p;
}

void lb_generate_result_free(lb_generate_result *r) {
    if (!r) return;
    free(r->prompt_ids);
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

static void notice(const lb_gen *g, const char *fmt, ...) LB_PRINTF(2, 3);
static void notice(const lb_gen *g, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g->p->on_notice) g->p->on_notice(g->p->user, msg);
    else lb_warn("%s", msg);
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *b = realloc(*buf, c * elem);
    if (!b) return 0;
    *buf = b;
    *cap = c;
    return 1;
}

/* Appends id and its piece to the output. */
static lb_status add_token(lb_gen *g, int32_t id, lb_error *err) {
    lb_generate_result *r = g->r;
    size_t n = g->tok ? lb_token_piece(g->tok, id, NULL, 0) : 0;
    if (!grow((void **)&r->ids, &g->ids_cap, r->n_ids + 1, sizeof(int32_t)) ||
        !grow((void **)&r->text, &g->text_cap, r->text_len + n + 1, 1))
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    r->ids[r->n_ids++] = id;
    if (g->tok) lb_token_piece(g->tok, id, r->text + r->text_len, n + 1);
    r->text_len += n;
    r->text[r->text_len] = 0;
    return LB_OK;
}

/* After a token: cuts the text at a stop string (1) or finds how many trailing bytes could
 * start one and must wait (*hold). */
static int find_stop(const lb_gen *g, size_t added, size_t *hold) {
    lb_generate_result *r = g->r;
    size_t best = r->text_len, from0 = r->text_len - added;
    *hold = 0;
    for (size_t k = 0; k < g->p->n_stop; k++) {
        const char *st = g->p->stop[k];
        size_t n = strlen(st), from = from0 + 1 > n ? from0 + 1 - n : 0;
        for (size_t at = from; at + n <= r->text_len && at < best; at++)
            if (!memcmp(r->text + at, st, n)) best = at;
        for (size_t h = n - 1; h > *hold; h--) /* longest text suffix that is a prefix of st */
            if (h <= r->text_len - g->sent && !memcmp(r->text + r->text_len - h, st, h)) {
                *hold = h;
                break;
            }
    }
    if (best == r->text_len) return 0;
    r->text_len = best;
    r->text[best] = 0;
    *hold = 0;
    return 1;
}

/* Streams what is certain; returns the callback's answer. */
static int emit(lb_gen *g, int32_t id, size_t hold) {
    lb_generate_result *r = g->r;
    size_t upto = r->text_len - hold, from = g->sent;
    g->sent = upto;
    if (!g->p->on_token || (id < 0 && upto == from)) return 0;
    return g->p->on_token(g->p->user, id, r->text + from, upto - from);
}

/* The prompt as ids (text tokenized, chat formatted when asked) into r->prompt_ids. */
static lb_status prompt_ids(lb_gen *g, const char *prompt, int first, lb_error *err) {
    const lb_generate_params *p = g->p;
    lb_generate_result *r = g->r;
    if (!prompt) {
        if (!(r->prompt_ids = malloc((p->n_prompt_ids ? p->n_prompt_ids : 1) * sizeof(int32_t))))
            return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        if (p->n_prompt_ids) memcpy(r->prompt_ids, p->prompt_ids, p->n_prompt_ids * sizeof(int32_t));
        r->n_prompt_ids = p->n_prompt_ids;
        return LB_OK;
    }
    if (!g->tok) return lb_fail(err, LB_ERR_ARG, "the model has no tokenizer: give prompt ids, or load one");
    char *text = (char *)prompt;
    if (p->chat) {
        const char *tpl = lb_model_chat_template(g->s->m);
        lb_chat_style style = lb_chat_detect(tpl);
        if (style == LB_CHAT_NONE)
            return lb_fail(err, LB_ERR_UNSUPPORTED, "%s; chat needs a ChatML, Llama 3, Llama 2 or Mistral template",
                           tpl ? "the model's chat template is not one lowbit knows" : "the model has no chat template");
        if (!(text = lb_chat_format_turn(style, p->system, prompt, first)))
            return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    lb_status st = lb_tokenize(g->tok, text, strlen(text), first, &r->prompt_ids, &r->n_prompt_ids, err);
    if (text != prompt) free(text);
    return st;
}

/* Feeds the pending token (keep) and the prompt; logits of the last id into g->logits. */
static lb_status run_prompt(lb_gen *g, lb_error *err) {
    lb_session *s = g->s;
    size_t n = g->r->n_prompt_ids, extra = s->pending >= 0;
    int n_past = lb_session_n_past(s);
    if (n == 0) return lb_fail(err, LB_ERR_ARG, "the prompt encodes to no tokens");
    if (!n_past && !extra && n > (size_t)s->n_ctx) /* say which number to raise */
        return lb_fail(err, LB_ERR_RANGE, "the prompt has %zu tokens, more than the context of %d tokens "
                       "(a larger context or a shorter prompt is needed)", n, s->n_ctx);
    if ((size_t)n_past + extra + n > (size_t)s->n_ctx)
        return lb_fail(err, LB_ERR_RANGE, "context is full: %d + %zu tokens exceed the context of %d", n_past,
                       n + extra, s->n_ctx);
    lb_status st = extra ? lb_session_eval(s, &s->pending, 1, NULL, 0, err) : LB_OK;
    if (st) return st;
    s->pending = -1;
    return lb_session_eval(s, g->r->prompt_ids, n, g->logits, 0, err);
}

int lb_gen_take(lb_gen *g, int32_t id, lb_status *st, lb_error *err) {
    lb_generate_result *r = g->r;
    g->s->pending = id; /* what the model has not seen yet, until it is fed */
    if (g->tok && lb_token_is_eog(g->tok, id)) return r->stop = LB_STOP_EOG, 1;
    size_t before = r->text_len, hold;
    if ((*st = add_token(g, id, err))) return 1;
    int cut = find_stop(g, r->text_len - before, &hold);
    int quit = emit(g, id, hold);
    if (cut) return r->stop = LB_STOP_STRING, 1;
    if (quit) return r->stop = LB_STOP_CALLER, 1;
    if (r->n_ids >= (size_t)g->p->max_tokens) return r->stop = LB_STOP_LENGTH, 1;
    return 0;
}

int lb_gen_must_stop(lb_gen *g) {
    lb_session *s = g->s;
    lb_mem_guard *guard = g->p->guard;
    lb_mem_guard_action a = guard ? lb_mem_guard_step(guard) : LB_MEM_GUARD_CONTINUE;
    if (a == LB_MEM_GUARD_WARN)
        notice(g, "memory pressure high (%s); continuing, will stop if it becomes critical", lb_mem_guard_reason(guard));
    if (a == LB_MEM_GUARD_STOP) {
        notice(g, "memory pressure critical (%s); stopping generation early at %d tokens of context",
               lb_mem_guard_reason(guard), lb_session_n_past(s));
        return g->r->stop = LB_STOP_MEMORY, 1;
    }
    if (lb_session_n_past(s) >= s->n_ctx) {
        notice(g, "context of %d tokens is full; stopping", s->n_ctx);
        s->pending = -1; /* no room to feed it */
        return g->r->stop = LB_STOP_CONTEXT, 1;
    }
    return 0;
}

/* Samples, streams and feeds tokens until a stop condition. */
static lb_status loop(lb_gen *g, lb_sampler *smp, lb_error *err) {
    lb_session *s = g->s;
    lb_status st = LB_OK;
    if (g->p->max_tokens == 0) return g->r->stop = LB_STOP_LENGTH, LB_OK;
    int32_t id = lb_sampler_sample(smp, g->logits, s->ids, (size_t)lb_session_n_past(s));
    if (lb_gen_take(g, id, &st, err)) return st;
    if (g->p->draft || g->p->lookup) return lb_spec_loop(g, smp, err);
    while (!lb_gen_must_stop(g)) {
        if ((st = lb_session_eval(s, &id, 1, g->logits, 0, err))) return st;
        s->pending = -1;
        id = lb_sampler_sample(smp, g->logits, s->ids, (size_t)lb_session_n_past(s));
        if (lb_gen_take(g, id, &st, err)) return st;
    }
    return LB_OK;
}

static lb_status check_params(const lb_generate_params *p, lb_error *err) {
    if (p->max_tokens < 0) return lb_fail(err, LB_ERR_ARG, "max_tokens is %d; it must be >= 0", p->max_tokens);
    if (p->n_stop && !p->stop) return lb_fail(err, LB_ERR_ARG, "n_stop is %zu but stop is NULL", p->n_stop);
    for (size_t k = 0; k < p->n_stop; k++)
        if (!p->stop[k] || !p->stop[k][0]) return lb_fail(err, LB_ERR_ARG, "stop string %zu is empty", k);
    if (p->n_prompt_ids && !p->prompt_ids) return lb_fail(err, LB_ERR_ARG, "n_prompt_ids is %zu but prompt_ids is NULL", p->n_prompt_ids);
    return LB_OK;
}

lb_status lb_generate(lb_session *s, const char *prompt, const lb_generate_params *p, lb_generate_result *out,
                      lb_error *err) {
    lb_generate_params d = lb_generate_default_params();
    if (!p) p = &d;
    memset(out, 0, sizeof *out);
    lb_status st = check_params(p, err);
    if (!st) st = lb_spec_check(s, p, err);
    if (st) return st;
    if (!p->keep) lb_session_reset(s);
    int first = lb_session_n_past(s) == 0 && s->pending < 0;
    lb_gen g = {.s = s, .p = p, .tok = lb_model_tokenizer(s->m), .r = out};
    lb_sampler *own = NULL;
    if (!(g.logits = malloc((size_t)lb_model_n_vocab(s->m) * sizeof(float))))
        st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st && !p->sampler) st = lb_sampler_new(&p->sampling, lb_model_n_vocab(s->m), &own, err);
    if (!st) st = prompt_ids(&g, prompt, first, err);
    double t0 = lb_clock_seconds();
    if (!st) st = run_prompt(&g, err);
    double t1 = lb_clock_seconds();
    if (!st && !(out->text = calloc(1, 1))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st) st = loop(&g, p->sampler ? p->sampler : own, err);
    if (!st) emit(&g, -1, 0); /* bytes held for a stop string that never came */
    out->prompt_seconds = t1 - t0;
    out->gen_seconds = lb_clock_seconds() - t1;
    lb_sampler_free(own);
    free(g.logits);
    if (st) lb_generate_result_free(out);
    return st;
}
