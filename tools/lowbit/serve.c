/* lowbit serve: an OpenAI-compatible HTTP server (chat and text completions, streamed as
 * server-sent events), a chat page at /, metrics and tokenizer endpoints. This file parses the
 * options, loads the model, plans the slots' KV cache within --mem-budget and runs until SIGTERM
 * or SIGINT, then stops admitting, lets in-flight requests finish (or cancels them after
 * --shutdown-timeout) and exits cleanly. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "serve.h"

static void usage(FILE *f) {
    fputs("usage: lowbit serve -m MODEL [options]\n\n"
          "Serves MODEL over HTTP with OpenAI's API: POST /v1/chat/completions, /v1/completions\n"
          "(\"stream\": true for server-sent events), GET /v1/models, /health, /metrics (Prometheus),\n"
          "POST /tokenize, /detokenize, and a chat page at /. Stops cleanly on SIGTERM or Ctrl-C.\n\n"
          "  -m, --model PATH        GGUF file, llama2.c checkpoint or Hugging Face folder\n"
          "      --alias NAME        the model's name in the API (default: the file name without extension)\n"
          "      --host ADDR         address to listen on (default 127.0.0.1: this machine only)\n"
          "      --port N            port (default 8080; 0: any free port, printed at start)\n"
          "  -np, --parallel N       requests generating at once, decoded together in one batch (default 4)\n"
          "  -c, --ctx N             longest request in tokens (default: the model's, at most 4096); the\n"
          "                          KV pool, shared by all requests, holds N x --parallel positions\n"
          "      --kv-tokens N       KV pool positions instead (requests wait for room in it; a\n"
          "                          request is never longer than the pool)\n"
          "      --kv-type f32|f16|q8_0|q4_0  KV cache element type (default f16; --mem-budget may lower\n"
          "                          it to q8_0, with a note)\n"
          "      --mem-budget SIZE   plan every slot's KV cache to fit SIZE (6G = 6 GiB) before starting;\n"
          "                          refuse to start when the slots cannot fit\n"
          "  -t, --threads N         threads per forward pass (default: all cores)\n"
          "      --tokenizer PATH    tokenizer file (llama2.c models, or to override)\n"
          "      --api-key KEY       require \"Authorization: Bearer KEY\" on every endpoint but /health\n"
          "                          and the page (default: $LOWBIT_API_KEY, else none)\n"
          "      --queue N           requests waiting for a slot before answering 429 (default 64)\n"
          "      --prefill-chunk N   prompt tokens per step, all requests together, so streams keep\n"
          "                          flowing (default 64)\n"
          "      --max-body SIZE     largest request body (default 1M); larger ones get 413\n"
          "      --timeout S         seconds a client has to send a whole request (default 30)\n"
          "      --idle-timeout S    seconds an idle connection stays open (default 60)\n"
          "      --max-connections N open connections at most (default 256)\n"
          "      --shutdown-timeout S  seconds in-flight requests may finish after SIGTERM (default 10)\n"
          "      --delta NAME=PATH   also serve the fine-tune in delta file PATH (lowbit delta create) as\n"
          "                          model NAME; repeatable (up to 16); the request's \"model\" picks it;\n"
          "                          --mem-budget counts its corrections and the moment it loads\n"
          "      --lookup N          speculative decoding by prompt lookup for every request: the tokens\n"
          "                          that followed the longest earlier match (at least N tokens) of the\n"
          "                          context's end, prompt and output, are drafted and verified in the\n"
          "                          same batched pass; output identical to plain decoding (greedy and\n"
          "                          seeded), faster when it copies. A request may set \"speculative\":\n"
          "                          {\"lookup\": N, \"n_max\": K} or false (llama-server's\n"
          "                          \"speculative.n_max\" too); /metrics counts drafted / accepted tokens\n"
          "      --draft MODEL       speculative decoding with a draft model instead: MODEL (the same\n"
          "                          vocabulary, smaller or quantized harder) drafts every request's\n"
          "                          tokens, all requests batched, in an engine of its own\n"
          "      --draft-min-p P     stop drafting at a token the draft gives probability below P (default 0)\n"
          "      --draft-max K       tokens drafted per step at most (default 16, up to 63; fewer while\n"
          "                          drafts fail); alone, it lets requests turn lookup on themselves\n"
          "  -h, --help              this help\n", f);
}

#define SV_MAX_DELTAS 16

typedef struct serve_opts {
    const char *delta_name[SV_MAX_DELTAS], *delta_path[SV_MAX_DELTAS];
    char delta_buf[SV_MAX_DELTAS][128];
    int n_delta;
    const char *model, *alias, *host, *tokenizer, *api_key, *draft;
    double draft_min_p;
    long long lookup, draft_max;
    long long port, parallel, ctx, kv_tokens, threads, queue, chunk, timeout, idle, max_conn, shutdown;
    uint64_t mem_budget, max_body;
    lb_kv_type kv;
    int kv_given;
} serve_opts;

static int opt_int(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", opt), 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || n < lo || n > hi)
        return fprintf(stderr, "lowbit: %s must be an integer in [%lld, %lld], not '%s'\n", opt, lo, hi, v), 0;
    *out = n;
    return 1;
}

static int opt_size(const char *opt, const char *v, uint64_t *out) {
    lb_error err = {0};
    if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", opt), 0;
    if (lb_size_parse(v, out, &err)) return fprintf(stderr, "lowbit: %s: %s\n", opt, err.msg), 0;
    return 1;
}

/* NAME=PATH: a name that is not empty, not the base's and not given twice (checked later for
 * the base, whose name is known only once the model is). */
static int parse_delta(const char *v, serve_opts *o) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1] || eq - v >= 128)
        return fprintf(stderr, "lowbit: --delta must be NAME=PATH (a name of 1 to 127 characters), not '%s'\n", v), 0;
    if (o->n_delta == SV_MAX_DELTAS) return fprintf(stderr, "lowbit: at most %d --delta options\n", SV_MAX_DELTAS), 0;
    char *name = o->delta_buf[o->n_delta];
    snprintf(name, sizeof o->delta_buf[0], "%.*s", (int)(eq - v), v);
    for (int k = 0; k < o->n_delta; k++)
        if (!strcmp(o->delta_name[k], name)) return fprintf(stderr, "lowbit: --delta name '%s' is given twice\n", name), 0;
    o->delta_name[o->n_delta] = name;
    o->delta_path[o->n_delta++] = eq + 1;
    return 1;
}

static int parse(int argc, char **argv, serve_opts *o) {
    *o = (serve_opts){.host = "127.0.0.1", .port = 8080, .parallel = 4, .queue = 64, .chunk = 64, .timeout = 30,
                      .idle = 60, .max_conn = 256, .shutdown = 10, .max_body = 1 << 20,
                      .kv = LB_KV_F16 /* as run and llama.cpp */};
    o->api_key = getenv("LOWBIT_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(x) (!strcmp(a, x))
#define STR(dst) do { if (!v) goto missing; dst = v; i++; } while (0)
#define INT(dst, lo, hi) do { if (!opt_int(a, v, lo, hi, &dst)) return 2; i++; } while (0)
        if (IS("-h") || IS("--help")) return usage(stdout), -1;
        else if (IS("-m") || IS("--model")) STR(o->model);
        else if (IS("--alias")) STR(o->alias);
        else if (IS("--host")) STR(o->host);
        else if (IS("--tokenizer")) STR(o->tokenizer);
        else if (IS("--api-key")) STR(o->api_key);
        else if (IS("--port")) INT(o->port, 0, 65535);
        else if (IS("-np") || IS("--parallel")) INT(o->parallel, 1, 256);
        else if (IS("-c") || IS("--ctx")) INT(o->ctx, 16, 1 << 20);
        else if (IS("--kv-tokens")) INT(o->kv_tokens, 16, 1 << 26);
        else if (IS("-t") || IS("--threads")) INT(o->threads, 1, 512);
        else if (IS("--queue")) INT(o->queue, 1, 1 << 16);
        else if (IS("--prefill-chunk")) INT(o->chunk, 1, 4096);
        else if (IS("--timeout")) INT(o->timeout, 1, 86400);
        else if (IS("--idle-timeout")) INT(o->idle, 1, 86400);
        else if (IS("--max-connections")) INT(o->max_conn, 4, 1 << 16);
        else if (IS("--shutdown-timeout")) INT(o->shutdown, 0, 86400);
        else if (IS("--lookup")) INT(o->lookup, 1, 64);
        else if (IS("--draft-max")) INT(o->draft_max, 1, 63);
        else if (IS("--draft")) STR(o->draft);
        else if (IS("--draft-min-p")) { if (!cli_float_in(a, v, 0, 1, &o->draft_min_p)) return 2; i++; }
        else if (IS("--mem-budget")) { if (!opt_size(a, v, &o->mem_budget)) return 2; i++; }
        else if (IS("--max-body")) { if (!opt_size(a, v, &o->max_body) || o->max_body > (1u << 30)) return 2; i++; }
        else if (IS("--kv-type")) {
            if (!v) goto missing;
            if (!cli_kv_type("--kv-type", v, &o->kv)) return 2;
            o->kv_given = 1;
            i++;
        } else if (IS("--delta")) {
            if (!v) goto missing;
            if (!parse_delta(v, o)) return 2;
            i++;
        } else return fprintf(stderr, "lowbit: serve: unknown option '%s' (see lowbit serve --help)\n", a), 2;
        continue;
    missing:
        fprintf(stderr, "lowbit: %s needs a value\n", a);
        return 2;
#undef IS
#undef STR
#undef INT
    }
    if (!o->model) return fprintf(stderr, "lowbit: serve: -m MODEL is required (see lowbit serve --help)\n"), 2;
    if (o->api_key && !*o->api_key) o->api_key = NULL;
    if (o->draft && o->lookup) return fprintf(stderr, "lowbit: serve: give --draft or --lookup, not both\n"), 2;
    if (o->kv_tokens && o->mem_budget)
        return fprintf(stderr, "lowbit: serve: give --kv-tokens or --mem-budget, not both (the plan sizes the pool)\n"), 2;
    return 0;
}

/* The name /v1/models lists: the file (or folder) name without its extension. */
static void model_name(const char *path, char *out, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *b = path;
    for (size_t i = 0; i < n; i++)
        if (path[i] == '/') b = path + i + 1;
    size_t len = (size_t)(path + n - b);
    const char *dot = memchr(b, '.', len);
    if (dot && dot > b) len = (size_t)(dot - b);
    snprintf(out, cap, "%.*s", (int)len, b);
}

/* The most drafts a request verifies per step: --draft-max, 16 with --lookup or --draft alone,
 * else none (then no request may speculate). */
static int spec_kmax_of(const serve_opts *o) { return o->draft_max ? (int)o->draft_max : o->lookup || o->draft ? 16 : 0; }

/* The target engine's shape: every decoding slot with its drafts, plus one prompt chunk. */
static lb_engine_params target_params(lb_model *m, const serve_opts *o) {
    lb_engine_params ep = lb_engine_default_params();
    int tr = lb_model_n_ctx_train(m);
    ep.n_ctx = o->ctx ? (int)o->ctx : tr > 0 && tr < 4096 ? tr : 4096;
    ep.n_kv_tokens = o->kv_tokens ? (int)o->kv_tokens : ep.n_ctx * (int)o->parallel; /* what the plan sized */
    ep.max_batch = (int)o->parallel * (1 + spec_kmax_of(o)) + (int)o->chunk;
    ep.n_threads = (int)o->threads;
    ep.kv_type = o->kv;
    return ep;
}

/* Everything the server allocates, within the budget. The planner sees the costs of all slots
 * together per context token, so the context it picks is per slot: every slot's KV, the
 * engine's scratch for its whole batch (every slot's token with its drafts, plus a prompt
 * chunk), the logits rows of every slot (1 + drafts each, held twice: the engine's and the
 * scheduler's), each request's ids, and with --draft the draft model's weights, KV and scratch
 * (sv_draft_plan). */
static int plan_slots(lb_model *m, lb_model *dm, serve_opts *o) {
    lb_mem_plan_in in;
    lb_model_mem_plan_input(m, (int)o->threads, &in);
    uint64_t np = (uint64_t)o->parallel, rows = np * (uint64_t)(1 + spec_kmax_of(o));
    uint64_t vocab_bytes = (uint64_t)lb_model_n_vocab(m) * sizeof(float);
    for (int t = 0; t < LB_MEM_KV_COUNT; t++) in.kv_bytes_per_token[t] *= np;
    lb_engine_params ep = target_params(m, o);
    size_t fixed, per_token;
    lb_engine_scratch_plan(m, &ep, &fixed, &per_token);
    in.scratch_bytes = fixed + 2 * rows * vocab_bytes + vocab_bytes; /* + the penalties' counts */
    /* prompt, generated ids and (speculating) their copy as drafting context, per slot */
    in.scratch_bytes_per_token = per_token + np * 3 * sizeof(int32_t);
    uint64_t target_total = in.weight_bytes;
    if (dm) sv_draft_plan(dm, (int)o->parallel, &ep, &in);
    /* --delta: each fine-tune's corrections stay resident beside the base, the correction
     * buffers come once, and loading one holds a second, patched load of the base for a moment */
    uint64_t ft_resident = 0, ft_scratch = 0, ft_load = 0;
    int ft_load_k = -1;
    for (int k = 0; k < o->n_delta; k++) {
        uint64_t res, extra, scr;
        lb_error e = {0};
        if (lb_engine_finetune_plan(m, o->delta_path[k], &ep, &res, &extra, &scr, &e)) {
            fprintf(stderr, "lowbit: --delta %s=%s: %s\n", o->delta_name[k], o->delta_path[k], e.msg);
            return 0;
        }
        ft_resident += res;
        ft_scratch = scr;
        if (extra > ft_load) ft_load = extra, ft_load_k = k;
    }
    in.scratch_bytes += ft_resident + ft_scratch;
    in.budget = o->mem_budget;
    in.n_ctx_requested = (uint32_t)o->ctx;
    in.ctx_strict = o->ctx > 0;
    in.kv_forced = o->kv_given ? (int)o->kv : -1;
    if (!in.n_ctx_requested && in.n_ctx_train > 4096) in.n_ctx_requested = 4096;
    /* what speculation adds, named: a budget that fits plain serving may not fit it */
    char what[448] = "", dw[64] = "";
    if (dm) snprintf(dw, sizeof dw, ", --draft weights %.2f MiB + its KV", (double)(in.weight_bytes - target_total) / (1 << 20));
    if (spec_kmax_of(o))
        snprintf(what, sizeof what, " with speculative decoding (--draft-max %d: %llu logits rows%s)", spec_kmax_of(o),
                 (unsigned long long)rows, dw);
    if (o->n_delta) /* in the plan's scratch, so named here */
        snprintf(what + strlen(what), sizeof what - strlen(what), " and %d --delta fine-tune%s (corrections %.2f MiB + their buffers %.2f MiB, in the scratch)",
                 o->n_delta, o->n_delta > 1 ? "s" : "", (double)ft_resident / (1 << 20), (double)ft_scratch / (1 << 20));
    lb_mem_plan p;
    lb_error err = {0};
    if (lb_mem_plan_make(&in, &p, &err)) {
        fprintf(stderr, "lowbit: serve: %lld slots%s do not fit --mem-budget: %s\n", o->parallel, what,
                err.msg[0] ? err.msg : p.summary);
        return 0;
    }
    /* the KV pool's pages are not yet touched while the deltas load, but the weights, the runtime,
     * the scratch and the corrections loaded before are */
    uint64_t at_load = in.weight_bytes + in.overhead_bytes + in.scratch_bytes + ft_load;
    if (ft_load_k >= 0 && at_load > o->mem_budget) {
        fprintf(stderr, "lowbit: serve: --delta %s=%s does not fit --mem-budget while it loads: weights %.2f MiB + runtime and "
                        "tokenizer %.2f MiB + scratch with every delta's corrections %.2f MiB + its load (a patched second load "
                        "of the base) %.2f MiB = %.2f MiB > budget %.2f MiB\n",
                o->delta_name[ft_load_k], o->delta_path[ft_load_k], (double)in.weight_bytes / (1 << 20),
                (double)in.overhead_bytes / (1 << 20), (double)in.scratch_bytes / (1 << 20), (double)ft_load / (1 << 20),
                (double)at_load / (1 << 20), (double)o->mem_budget / (1 << 20));
        return 0;
    }
    char load[96] = "";
    if (ft_load_k >= 0) snprintf(load, sizeof load, "; loading the deltas peaks at %.2f MiB", (double)at_load / (1 << 20));
    fprintf(stderr, "lowbit: memory plan for %lld slots%s: %s%s\n", o->parallel, what, p.summary, load);
    if (in.repack_bytes && !p.repack) { /* no room for the repack's transient copy */
        lb_model_set_repack(m, 0);
        fprintf(stderr, "lowbit: note: no room in --mem-budget to repack the Q4_0 weights; the plain layout is used\n");
    }
    o->ctx = p.n_ctx;
    if ((lb_kv_type)p.kv_dtype != o->kv) /* the budget may change the default KV type, but never silently */
        fprintf(stderr, "lowbit: note: --mem-budget changes the KV cache from %s to %s (pass --kv-type to choose)\n",
                lb_mem_kv_dtype_name((lb_mem_kv_dtype)o->kv) /* same numbering as lb_kv_type */,
                lb_mem_kv_dtype_name(p.kv_dtype));
    o->kv = (lb_kv_type)p.kv_dtype;
    return 1;
}

/* --draft: the draft model, checked against the target's vocabulary (its engine comes later,
 * once the plan has sized the context). */
static int load_draft(lb_model *m, const serve_opts *o, lb_model **dm) {
    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.n_threads = (int)o->threads;
    if (lb_model_load(o->draft, &mp, dm, &err) || lb_draft_check_vocab(m, *dm, &err)) {
        fprintf(stderr, "lowbit: --draft %s: %s\n", o->draft, err.msg);
        lb_model_free(*dm);
        *dm = NULL;
        return 0;
    }
    return 1;
}

/* dm: the --draft model or NULL, freed here. */
static int run_server(lb_model *m, lb_model *dm, serve_opts *o, const char *name, const sigset_t *sigs) {
    lb_error err = {0};
    lb_engine_params ep = target_params(m, o);
    int spec_kmax = spec_kmax_of(o);
    sv_engine *eng = NULL;
    int ft_ids[SV_MAX_DELTAS];
    sv_server sv = {.model = m, .tok = lb_model_tokenizer(m), .model_name = name, .api_key = o->api_key,
                    .lookup = (int)o->lookup, .draft_max = spec_kmax, .spec_kmax = spec_kmax,
                    .draft = o->draft != NULL, .p_min = (float)o->draft_min_p,
                    .max_body = (size_t)o->max_body, .request_timeout = (int)o->timeout, .t_start = cli_now()};
    const char *style = lb_chat_template_style(lb_model_chat_template(m));
    sv.chat_style = style ? style : "chatml"; /* what other servers fall back to */
    sv_draft *draft = NULL;
    if (dm && sv_draft_new(dm, (int)o->parallel, &ep, &draft, &err)) {
        fprintf(stderr, "lowbit: --draft %s: %s\n", o->draft, err.msg);
        lb_model_free(dm);
        return 1;
    }
    if (sv_engine_new(m, (int)o->parallel, 1 + spec_kmax, &ep, &eng, &err)) {
        sv_draft_free(draft);
        lb_model_free(dm);
        return fprintf(stderr, "lowbit: %s\n", err.msg), 1;
    }
    for (int k = 0; k < o->n_delta; k++) {
        if (!strcmp(o->delta_name[k], name) || sv_engine_add_delta(eng, o->delta_path[k], &ft_ids[k], &err)) {
            if (!strcmp(o->delta_name[k], name))
                fprintf(stderr, "lowbit: --delta name '%s' is the base model's name; choose another\n", name);
            else fprintf(stderr, "lowbit: --delta %s=%s: %s\n", o->delta_name[k], o->delta_path[k], err.msg);
            sv_engine_free(eng);
            sv_draft_free(draft);
            lb_model_free(dm);
            return 1;
        }
        fprintf(stderr, "lowbit: serving delta %s as model '%s'\n", o->delta_path[k], o->delta_name[k]);
    }
    sv.ft_names = o->delta_name;
    sv.ft_ids = ft_ids;
    sv.n_ft = o->n_delta;
    sv.n_ctx = sv_engine_n_ctx(eng);
    if (sv_sched_new(eng, sv.tok, lb_model_n_vocab(m), (int)o->parallel, (int)o->queue, (int)o->chunk, spec_kmax, draft,
                     &sv.sched, &err)) {
        sv_engine_free(eng);
        sv_draft_free(draft);
        lb_model_free(dm);
        return fprintf(stderr, "lowbit: %s\n", err.msg), 1;
    }
    sv_http_opts ho = {.host = o->host, .port = (int)o->port, .max_connections = (int)o->max_conn, .idle_timeout = (int)o->idle};
    sv_http *http = NULL;
    if (sv_http_start(&sv, &ho, &http, &err)) {
        sv_sched_free(sv.sched);
        sv_engine_free(eng);
        sv_draft_free(draft);
        lb_model_free(dm);
        return fprintf(stderr, "lowbit: %s\n", err.msg), 1;
    }
    char spec[96] = "";
    if (spec_kmax)
        snprintf(spec, sizeof spec, ", speculative: %s%.0lld, up to %d drafts",
                 o->draft ? "draft model" : o->lookup ? "lookup " : "on request", o->lookup, spec_kmax);
    fprintf(stderr, "lowbit: serving %s on http://%s:%d (%lld slots batched, %d tokens each, a KV pool of %d, %s chat template%s%s)\n",
            name, o->host, sv_http_port(http), o->parallel, sv.n_ctx, ep.n_kv_tokens, sv.chat_style,
            o->api_key ? ", API key required" : "", spec);
    int sig = 0;
    sigwait(sigs, &sig);
    fprintf(stderr, "lowbit: %s: no new requests; finishing %d in flight\n", sig == SIGINT ? "interrupt" : "terminated",
            sv_sched_in_flight(sv.sched));
    sv_sched_stop_admitting(sv.sched);
    double end = cli_now() + (double)o->shutdown;
    while (sv_sched_in_flight(sv.sched) && cli_now() < end) usleep(20000);
    sv_sched_cancel_all(sv.sched);
    while (sv_sched_in_flight(sv.sched)) usleep(10000);
    sv_http_drain(http, 2.0);
    sv_http_stop(http);
    sv_sched_free(sv.sched);
    sv_engine_free(eng);
    sv_draft_free(draft);
    lb_model_free(dm);
    fprintf(stderr, "lowbit: stopped\n");
    return 0;
}

int cmd_serve(int argc, char **argv) {
    serve_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    /* the signals are taken by sigwait in this thread only: block them before any thread starts */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.tokenizer_path = o.tokenizer;
    mp.n_threads = (int)o.threads;
    lb_model *m;
    if (o.mem_budget && cli_mem_precheck(o.model, (uint64_t)o.mem_budget)) return 1;
    if (lb_model_load(o.model, &mp, &m, &err)) return fprintf(stderr, "lowbit: %s\n", err.msg), 1;
    if (!lb_model_tokenizer(m)) {
        lb_model_free(m);
        return fprintf(stderr, "lowbit: %s: the model has no tokenizer; give one with --tokenizer\n", o.model), 1;
    }
    int tr = lb_model_n_ctx_train(m);
    if (o.ctx && tr > 0 && o.ctx > tr) {
        lb_model_free(m);
        return fprintf(stderr, "lowbit: --ctx %lld is larger than the model's trained context of %d tokens\n", o.ctx, tr), 1;
    }
    lb_model *dm = NULL;
    if ((o.draft && !load_draft(m, &o, &dm)) || (o.mem_budget && !plan_slots(m, dm, &o))) {
        lb_model_free(dm);
        lb_model_free(m);
        return 1;
    }
    char name[128];
    if (o.alias) snprintf(name, sizeof name, "%s", o.alias);
    else model_name(o.model, name, sizeof name);
    rc = run_server(m, dm, &o, name, &sigs);
    lb_model_free(m);
    return rc;
}
