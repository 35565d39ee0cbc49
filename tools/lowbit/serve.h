/* lowbit serve: the types the server's files share (engine, scheduler, OpenAI JSON, HTTP, page).
 * Like any program built on liblowbit, the server includes only the public header lowbit.h. */
#ifndef LB_SERVE_H
#define LB_SERVE_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h" /* cli_now: the tools' one monotonic clock */
#include "lowbit.h"

/* ---- engine (serve_engine.c) ------------------------------------------------------------------
 * The narrow interface the scheduler drives: n_slots sequences of one lb_engine (a shared paged
 * KV pool, the base model and its deltas), each with its own positions; one step is one
 * lb_engine_decode over every slot's ids. */
typedef struct sv_engine sv_engine;

typedef struct sv_eval {
    int slot;
    const int32_t *ids; /* fed at the slot's next positions */
    size_t n_ids;
    float *logits;      /* NULL, or n_vocab floats: the logits after the last id */
    lb_status status;   /* out: this item's result */
    int all_rows;       /* logits holds one row per id (speculative verification), not one */
} sv_eval;

/* ep->max_batch must hold every step's ids (the scheduler keeps to it); rows_per_slot: the
 * most logits rows one slot asks for in a step (1 + the most drafts it verifies). */
lb_status sv_engine_new(lb_model *m, int n_slots, int rows_per_slot, const lb_engine_params *ep, sv_engine **out,
                        lb_error *err);
void sv_engine_free(sv_engine *e);
/* Loads a delta as fine-tune *ft (1, 2, ...; 0 is the base). */
lb_status sv_engine_add_delta(sv_engine *e, const char *path, int *ft, lb_error *err);
/* Gives slot a fresh sequence on fine-tune ft, attaching the cached KV blocks of the prompt's
 * longest cached prefix: *reused prompt positions need no computing. */
lb_status sv_engine_begin(sv_engine *e, int slot, int ft, const int32_t *prompt, size_t n_prompt, size_t *reused,
                          lb_error *err);
void sv_engine_end(sv_engine *e, int slot); /* frees the slot's sequence (its full blocks stay cached) */
int sv_engine_n_ctx(const sv_engine *e);
int sv_engine_n_past(const sv_engine *e, int slot);
/* Keeps the first n positions of the slot's sequence (drafts the verification rejected go). */
lb_status sv_engine_truncate(sv_engine *e, int slot, int n, lb_error *err);
void sv_engine_stats(const sv_engine *e, lb_engine_stats *out);
/* Runs every item (a failing item does not stop the others); returns the first failure, err
 * naming it, and each item's own status. */
lb_status sv_engine_eval(sv_engine *e, sv_eval *items, int n_items, lb_error *err);

/* ---- the draft model (serve_draft.c) ----------------------------------------------------------
 * --draft: a smaller model of the target's vocabulary in an engine of its own, one sequence per
 * slot, that drafts the speculative slots' tokens, all slots batched in each call. */
typedef struct sv_draft sv_draft;

typedef struct sv_dreq {
    int slot;
    const int32_t *ctx; /* the slot's context: prompt, then generated ids, the one fed next included */
    size_t n;
    int k;              /* drafts wanted (>= 1) */
    float p_min;        /* stop at a draft token of lower probability */
    int32_t *out;       /* k ids */
    int got;            /* out: drafts written */
    size_t left;        /* scratch: context ids still to feed */
} sv_dreq;

/* target: the target's engine parameters (the draft's engine takes its context and threads). */
lb_status sv_draft_new(lb_model *dm, int n_slots, const lb_engine_params *target, sv_draft **out, lb_error *err);
void sv_draft_free(sv_draft *d);
/* Adds what sv_draft_new(dm, n_slots, target) will hold to a memory plan of the target's costs
 * (per context token, all slots together): the draft's weights, its KV for every slot (a KV type
 * the draft cannot hold is then no choice), its engine's scratch and logits. */
void sv_draft_plan(lb_model *dm, int n_slots, const lb_engine_params *target, lb_mem_plan_in *in);
void sv_draft_end(sv_draft *d, int slot); /* the slot's request is gone: so is its draft sequence */
/* Drafts for every request in one batched call per round. On failure no request has drafts (and
 * their draft sequences start again next time), so the step runs plain. */
lb_status sv_draft_run(sv_draft *d, sv_dreq *q, int n_q, lb_error *err);

/* ---- requests --------------------------------------------------------------------------------- */
#define SV_MAX_STOP 4

typedef enum sv_finish { SV_RUNNING = 0, SV_FIN_STOP, SV_FIN_LENGTH, SV_FIN_CANCELLED, SV_FIN_ERROR } sv_finish;

/* One generation request. The HTTP thread fills the parameters; after sv_sched_submit the fields
 * below "shared" change only under the scheduler's lock. */
typedef struct sv_request {
    int chat, stream, include_usage;
    char model[128];
    int ft;          /* the fine-tune (delta) the request runs on: 0 base, else sv_engine_add_delta's id */
    int32_t *prompt; /* malloc'ed */
    size_t n_prompt;
    int max_tokens;  /* >= 1 */
    int lookup;      /* speculative decoding by prompt lookup: the shortest match that drafts; 0: off */
    int draft_max;   /* most tokens drafted per step */
    int draft;       /* speculative decoding with the server's --draft model (when not lookup) */
    float p_min;     /* the draft model's drafts stop at a token it gives less probability */
    lb_sampler_params sp;
    float presence_penalty, frequency_penalty;
    char *stop[SV_MAX_STOP];
    int n_stop;
    long long id;    /* for "chatcmpl-<id>" */
    long long created;
    /* shared */
    char *text;            /* generated bytes (stop string removed once found) */
    size_t text_len, text_cap;
    size_t text_safe;      /* bytes that can be sent: whole UTF-8 characters, no partial stop string */
    int32_t *gen;          /* generated ids */
    size_t n_gen;
    sv_finish finish;
    char error[512];
    int cancelled;
    int refs;              /* the HTTP side and, once admitted or queued, the scheduler */
    int slot;              /* -1 while queued */
    size_t fed;            /* prompt ids evaluated so far */
    lb_sampler *sampler;
    int32_t *ctx;          /* with lookup: the prompt then the generated ids, what drafts come from */
    size_t n_drafted, n_accepted;
    double tried, kept;    /* drafts verified (the first rejected one included) and kept, decaying */
    int idle;              /* plain steps since the last drafting one */
    double t_submit, t_first; /* seconds (monotonic): queued, first token */
    /* The handler waits on its own condition variable for more than `wait_sent` safe bytes (or
     * the finish): the scheduler signals only requests whose text moved past that, never every
     * handler every step (a herd of 32-64 threads on one mutex between engine passes). */
    pthread_cond_t cv;
    int cv_ready, waiting;
    size_t wait_sent;
} sv_request;

void sv_request_free(sv_request *r);
const char *sv_finish_name(sv_finish f); /* "stop", "length", ... */

/* ---- scheduler (serve_sched.c) ---------------------------------------------------------------- */
typedef struct sv_sched sv_sched;

typedef struct sv_metrics {
    uint64_t requests_total, requests_cancelled, requests_failed;
    uint64_t prompt_tokens_total, generated_tokens_total;
    int queue_depth, queue_max, slots_busy, slots_total;
    uint64_t kv_tokens_used, kv_tokens_total, kv_bytes;
    uint64_t kv_blocks_used, kv_blocks_cached, kv_blocks_reserved, kv_blocks_total;
    uint64_t prompt_tokens_cached_total; /* prompt positions taken from the prefix cache */
    uint64_t steps_total, batch_tokens_total; /* engine calls and the ids they ran */
    int batch_max;                            /* the most ids one call ran */
    double engine_seconds;                    /* wall time inside those calls */
    uint64_t handler_wakeups, handler_wakeups_idle; /* handlers woken; of them, with nothing new */
    uint64_t drafted_tokens_total, accepted_tokens_total; /* speculative decoding */
    double tokens_per_second; /* generated, over the last few seconds */
    int accepting;
} sv_metrics;

/* prefill_chunk: prompt ids per step, all slots together (the engine's max_batch is n_slots x
 * (1 + spec_kmax) plus that); spec_kmax: the most drafts a request may verify per step (0: none). A request is admitted only when the blocks for its prompt and max_tokens fit in the
 * pool beside those already reserved, so a decode never runs out of KV blocks. */
lb_status sv_sched_new(sv_engine *e, const lb_tokenizer *tok, int n_vocab, int n_slots, int queue_max,
                       int prefill_chunk, int spec_kmax, sv_draft *draft, sv_sched **out, lb_error *err);
/* Stops the thread (cancelling whatever still runs) and frees the scheduler. */
void sv_sched_free(sv_sched *s);
/* 0: queued; 429: the queue is full; 503: not accepting (shutting down, memory pressure). */
int sv_sched_submit(sv_sched *s, sv_request *r);
void sv_sched_cancel(sv_sched *s, sv_request *r);
/* Waits up to timeout_ms until r has more than `sent` safe bytes or has finished. */
void sv_sched_wait(sv_sched *s, sv_request *r, size_t sent, int timeout_ms);
/* Copies text[from, text_safe) (malloc'ed, NUL-terminated) and the finish state, under the lock. */
char *sv_sched_take(sv_sched *s, sv_request *r, size_t from, size_t *len, sv_finish *fin);
/* Drops the HTTP side's reference; the request is freed when the scheduler is done with it. */
void sv_sched_release(sv_sched *s, sv_request *r);
/* Stop admitting (new requests get 503); returns the number of requests still in flight. */
void sv_sched_stop_admitting(sv_sched *s);
int sv_sched_in_flight(sv_sched *s);
void sv_sched_cancel_all(sv_sched *s);
void sv_sched_metrics(sv_sched *s, sv_metrics *m);
/* The first error message of a failed request (copied under the lock). */
void sv_sched_error(sv_sched *s, sv_request *r, char *buf, size_t cap);

/* ---- server state shared by the HTTP handlers ------------------------------------------------ */
typedef struct sv_server {
    lb_model *model;
    const lb_tokenizer *tok;
    sv_sched *sched;
    const char *model_name;  /* the id /v1/models lists */
    const char **ft_names;   /* --delta NAME=PATH names, n_ft of them; request "model" picks one */
    const int *ft_ids;       /* their engine fine-tune ids */
    int n_ft;
    const char *chat_style;  /* lb_chat_template_style of the model, "chatml" when unknown */
    const char *api_key;     /* NULL: no key */
    int n_ctx;
    int lookup, draft_max;   /* --lookup / --draft-max: the requests' defaults */
    int draft;               /* 1 with --draft: requests draft with it unless they ask for lookup */
    float p_min;             /* --draft-min-p */
    int spec_kmax;           /* the most drafts per step a request may ask for (0: no speculation) */
    size_t max_body;         /* bytes */
    int request_timeout;     /* seconds to read one request (headers and body) */
    _Atomic unsigned long long http_requests, http_errors_4xx, http_errors_5xx;
    _Atomic long long next_id;
    double t_start;
} sv_server;

/* ---- request parsing (serve_parse.c) and OpenAI JSON out (serve_api.c) ---------------------- */
/* Parses a /v1/completions (chat = 0) or /v1/chat/completions body into r. On failure returns
 * the HTTP status (400, 404) with msg, param and code (OpenAI's error fields) filled. */
int sv_api_parse(sv_server *sv, const char *body, size_t len, int chat, sv_request *r, char *msg, size_t cap,
                 const char **param, const char **code);
/* The JSON error body {"error": {"message", "type", "param", "code"}} (malloc'ed). */
char *sv_api_error_json(int status, const char *msg, const char *param, const char *code);
/* The whole non-streaming response (malloc'ed). */
char *sv_api_response_json(const sv_server *sv, const sv_request *r, const char *text, size_t len, sv_finish fin);
/* One SSE event "data: {...}\n\n" for streamed text (first: the chat role chunk comes too), the
 * final chunk with finish_reason (and usage when asked), or "data: [DONE]\n\n". malloc'ed. */
char *sv_api_stream_chunk(const sv_server *sv, const sv_request *r, const char *text, size_t len, int first);
char *sv_api_stream_final(const sv_server *sv, const sv_request *r, sv_finish fin);
char *sv_api_models_json(const sv_server *sv);
/* /tokenize {"content": "...", "add_special": bool} and /detokenize {"tokens": [...]}. */
int sv_api_tokenize(sv_server *sv, const char *body, size_t len, char **out, char *msg, size_t cap);
int sv_api_detokenize(sv_server *sv, const char *body, size_t len, char **out, char *msg, size_t cap);
/* Prometheus text. */
char *sv_api_metrics_text(sv_server *sv);

/* ---- network bytes (serve_text.c) -------------------------------------------------------------- */
/* 1 when s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int sv_utf8_valid(const char *s, size_t n);
/* Length of the longest prefix of s[0..n) that ends on a whole UTF-8 character. */
size_t sv_utf8_whole(const char *s, size_t n);
/* Deepest nesting of JSON arrays/objects in s (strings skipped). */
int sv_json_depth(const char *s, size_t n);
/* A copy of s[0..n) with every invalid sequence (and NUL) replaced by U+FFFD (malloc'ed). */
char *sv_utf8_clean(const char *s, size_t n);
/* Appends a token's bytes to r->text and moves r->text_safe; returns 1 when a stop string ended
 * the text (it is cut before the stop string that ends first), 0 when not, -1 out of memory.
 * Bytes once below text_safe are never taken back. */
int sv_text_append(sv_request *r, const char *p, size_t n);
/* 1 when no key is required or the Authorization header (NULL: absent) is "Bearer KEY" with this
 * key (the scheme in any case). */
int sv_auth_ok(const char *api_key, const char *authorization);

/* A request body assembled from the pieces the HTTP library hands over (chunked or not). */
typedef struct sv_body {
    char *data; /* NUL-terminated; NULL while empty */
    size_t len, cap;
} sv_body;
/* 0 appended; -1 the body would pass max bytes (nothing appended); -2 out of memory. */
int sv_body_append(sv_body *b, const char *data, size_t n, size_t max);
/* 1 when a Content-Length header declares more than max bytes (before any is read). */
int sv_body_too_large(const char *content_length, size_t max);

/* ---- HTTP (serve_http.c) ---------------------------------------------------------------------- */
typedef struct sv_http sv_http;
typedef struct sv_http_opts {
    const char *host;
    int port;
    int max_connections;
    int idle_timeout; /* seconds without traffic before a connection closes */
} sv_http_opts;
lb_status sv_http_start(sv_server *sv, const sv_http_opts *o, sv_http **out, lb_error *err);
int sv_http_port(const sv_http *h); /* the bound port (for --port 0) */
void sv_http_drain(sv_http *h, double seconds); /* wait for open connections to close, bounded */
void sv_http_stop(sv_http *h);

/* ---- the chat page (serve_page.html, embedded at build time) ---------------------------------- */
extern const unsigned char sv_page_html[];
extern const size_t sv_page_html_len;

#endif
