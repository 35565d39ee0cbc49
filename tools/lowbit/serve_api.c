/* lowbit serve: OpenAI's JSON out. Responses, stream chunks, /v1/models and the Prometheus text
 * of /metrics (request parsing and error bodies are in serve_parse.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "serve.h"

/* ---- responses ---------------------------------------------------------------------------------- */

static cJSON *base_object(const sv_request *r, const char *object) {
    cJSON *o = cJSON_CreateObject();
    char id[48];
    snprintf(id, sizeof id, "%s-%lld", r->chat ? "chatcmpl" : "cmpl", r->id);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model);
    return o;
}

static void add_usage(cJSON *o, const sv_request *r) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->n_prompt + r->n_gen));
    if (!r->lookup && !r->draft) return;
    cJSON *sp = cJSON_AddObjectToObject(o, "speculative"); /* lowbit's own: what the drafts did */
    cJSON_AddNumberToObject(sp, "drafted", (double)r->n_drafted);
    cJSON_AddNumberToObject(sp, "accepted", (double)r->n_accepted);
}

static void add_finish(cJSON *c, sv_finish fin) {
    const char *f = fin == SV_FIN_LENGTH ? "length" : fin ? "stop" : NULL;
    if (f) cJSON_AddStringToObject(c, "finish_reason", f);
    else cJSON_AddNullToObject(c, "finish_reason");
}

/* One choice: {"index": 0, "message"/"delta"/"text": ..., "finish_reason": ...}. */
static cJSON *choice(const sv_request *r, const char *text, int role, int delta, sv_finish fin) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (r->chat) {
        cJSON *m = cJSON_AddObjectToObject(c, delta ? "delta" : "message");
        if (role) cJSON_AddStringToObject(m, "role", "assistant");
        if (text) cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    cJSON_AddNullToObject(c, "logprobs");
    add_finish(c, fin);
    return c;
}

char *sv_api_response_json(const sv_server *sv, const sv_request *r, const char *text, size_t len, sv_finish fin) {
    char *clean = sv_utf8_clean(text, len);
    if (!clean) return NULL;
    cJSON *o = base_object(r, r->chat ? "chat.completion" : "text_completion");
    cJSON *cs = cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToArray(cs, choice(r, clean, 1, 0, fin));
    add_usage(o, r);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(clean);
    return out;
}

static char *sse(cJSON *o) {
    char *j = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!j) return NULL;
    size_t n = strlen(j);
    char *out = malloc(n + 9);
    if (out) snprintf(out, n + 9, "data: %s\n\n", j);
    free(j);
    return out;
}

char *sv_api_stream_chunk(const sv_server *sv, const sv_request *r, const char *text, size_t len, int first) {
    char *clean = sv_utf8_clean(text, len);
    if (!clean) return NULL;
    cJSON *o = base_object(r, r->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice(r, clean, r->chat && first, 1, SV_RUNNING));
    free(clean);
    return sse(o);
}

char *sv_api_stream_final(const sv_server *sv, const sv_request *r, sv_finish fin) {
    cJSON *o = base_object(r, r->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice(r, r->chat ? NULL : "", 0, 1, fin));
    char *a = sse(o), *b = NULL;
    if (r->include_usage) { /* OpenAI: a last chunk with no choices and the usage */
        cJSON *u = base_object(r, r->chat ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(u, "choices");
        add_usage(u, r);
        b = sse(u);
    }
    size_t na = a ? strlen(a) : 0, nb = b ? strlen(b) : 0;
    char *out = malloc(na + nb + 16);
    if (out) snprintf(out, na + nb + 16, "%s%sdata: [DONE]\n\n", a ? a : "", b ? b : "");
    free(a);
    free(b);
    return out;
}

char *sv_api_models_json(const sv_server *sv) {
    cJSON *o = cJSON_CreateObject(), *d;
    cJSON_AddStringToObject(o, "object", "list");
    d = cJSON_AddArrayToObject(o, "data");
    for (int k = -1; k < sv->n_ft; k++) { /* the base, then each delta */
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", k < 0 ? sv->model_name : sv->ft_names[k]);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "lowbit");
        cJSON_AddNumberToObject(m, "n_ctx", sv->n_ctx);
        if (k >= 0) cJSON_AddStringToObject(m, "parent", sv->model_name); /* a delta over the base */
        cJSON_AddItemToArray(d, m);
    }
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

/* ---- /metrics ------------------------------------------------------------------------------------ */

char *sv_api_metrics_text(sv_server *sv) {
    sv_metrics m;
    sv_sched_metrics(sv->sched, &m);
    struct {
        const char *name, *type, *help;
        double v;
    } rows[] = {
        {"requests_total", "counter", "generation requests accepted", (double)m.requests_total},
        {"requests_cancelled_total", "counter", "requests cancelled (client gone, shutdown)", (double)m.requests_cancelled},
        {"requests_failed_total", "counter", "requests that failed in the engine", (double)m.requests_failed},
        {"http_requests_total", "counter", "HTTP requests answered", (double)sv->http_requests},
        {"http_responses_4xx_total", "counter", "HTTP client errors", (double)sv->http_errors_4xx},
        {"http_responses_5xx_total", "counter", "HTTP server errors", (double)sv->http_errors_5xx},
        {"prompt_tokens_total", "counter", "prompt tokens evaluated", (double)m.prompt_tokens_total},
        {"generated_tokens_total", "counter", "tokens generated", (double)m.generated_tokens_total},
        {"queue_depth", "gauge", "requests waiting for a slot", m.queue_depth},
        {"queue_capacity", "gauge", "requests the queue holds before answering 429", m.queue_max},
        {"slots_busy", "gauge", "slots running a request", m.slots_busy},
        {"slots_total", "gauge", "slots (--parallel)", m.slots_total},
        {"kv_tokens_used", "gauge", "KV cache positions filled, all slots", (double)m.kv_tokens_used},
        {"kv_tokens_total", "gauge", "KV pool positions, all slots together", (double)m.kv_tokens_total},
        {"kv_bytes", "gauge", "KV cache bytes allocated", (double)m.kv_bytes},
        {"kv_blocks_used", "gauge", "KV pool blocks held (sequences and prefix cache)", (double)m.kv_blocks_used},
        {"kv_blocks_cached", "gauge", "KV pool blocks remembered by the prefix cache", (double)m.kv_blocks_cached},
        {"kv_blocks_reserved", "gauge", "KV pool blocks reserved by admitted requests", (double)m.kv_blocks_reserved},
        {"kv_blocks_total", "gauge", "KV pool blocks", (double)m.kv_blocks_total},
        {"engine_steps_total", "counter", "batched forward passes (one per step, all requests together)", (double)m.steps_total},
        {"engine_batch_tokens_total", "counter", "ids those passes ran", (double)m.batch_tokens_total},
        {"engine_batch_max", "gauge", "the most ids one pass ran", m.batch_max},
        {"engine_seconds_total", "counter", "wall seconds inside those passes", m.engine_seconds},
        {"handler_wakeups_total", "counter", "waiting HTTP handlers woken by the scheduler", (double)m.handler_wakeups},
        {"handler_wakeups_idle_total", "counter", "of them, woken with nothing new to send", (double)m.handler_wakeups_idle},
        {"prompt_tokens_cached_total", "counter", "prompt tokens taken from the prefix cache", (double)m.prompt_tokens_cached_total},
        {"speculative_drafted_tokens_total", "counter", "tokens drafted for speculative verification", (double)m.drafted_tokens_total},
        {"speculative_accepted_tokens_total", "counter", "drafted tokens the model kept", (double)m.accepted_tokens_total},
        {"tokens_per_second", "gauge", "generated tokens per second, last seconds", m.tokens_per_second},
        {"accepting", "gauge", "1 while admitting requests (0 during shutdown)", m.accepting},
        {"uptime_seconds", "gauge", "seconds since start", cli_now() - sv->t_start},
    };
    size_t cap = 8192, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    for (size_t i = 0; i < sizeof rows / sizeof *rows && n < cap; i++) /* a cut row ends the text */
        n += (size_t)snprintf(out + n, cap - n, "# HELP lowbit_%s %s\n# TYPE lowbit_%s %s\nlowbit_%s %.17g\n", rows[i].name,
                              rows[i].help, rows[i].name, rows[i].type, rows[i].name, rows[i].v);
    return out;
}

