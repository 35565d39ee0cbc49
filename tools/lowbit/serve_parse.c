/* lowbit serve: request parsing. Bodies of /v1/completions and /v1/chat/completions become an
 * sv_request (every field type-checked, every range checked, unknown fields ignored as OpenAI
 * does; messages through the model's chat template, then tokenized), /tokenize and /detokenize
 * bodies are answered, and errors take OpenAI's JSON shape. Nothing here touches a socket or the
 * scheduler, so fuzz/fuzz_serve_request.c drives it directly. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "serve.h"

#define SV_JSON_MAX_DEPTH 32
#define SV_MAX_MESSAGES 1024

/* ---- errors --------------------------------------------------------------------------------- */

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "server_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

char *sv_api_error_json(int status, const char *msg, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    char *clean = sv_utf8_clean(msg, strlen(msg));
    cJSON_AddStringToObject(e, "message", clean ? clean : "error");
    cJSON_AddStringToObject(e, "type", error_type(status));
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(clean);
    return out;
}

void sv_request_free(sv_request *r) {
    if (!r) return;
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->text);
    free(r->gen);
    free(r->ctx);
    lb_sampler_free(r->sampler);
    if (r->cv_ready) pthread_cond_destroy(&r->cv);
    free(r);
}

/* ---- request parsing -------------------------------------------------------------------------- */

typedef struct perr {
    char *msg;
    size_t cap;
    const char **param, **code;
} perr;

static int bad(perr *pe, const char *param, const char *code, const char *fmt, const char *a) {
    snprintf(pe->msg, pe->cap, fmt, a);
    *pe->param = param;
    *pe->code = code;
    return 400;
}

/* The item, or NULL when absent or null (OpenAI treats both as "use the default"). */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* A number field within [lo, hi]: 0 ok (or absent), 400 otherwise. */
static int num(const cJSON *o, const char *name, double lo, double hi, float *out, perr *pe) {
    const cJSON *v = field(o, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return bad(pe, name, "invalid_type", "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi) {
        char m[160];
        snprintf(m, sizeof m, "'%s' must be between %g and %g", name, lo, hi);
        return bad(pe, name, "invalid_value", "%s", m);
    }
    *out = (float)v->valuedouble;
    return 0;
}

static int integer(const cJSON *o, const char *name, double lo, double hi, double *out, perr *pe) {
    const cJSON *v = field(o, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return bad(pe, name, "invalid_type", "'%s' must be an integer", name);
    if (v->valuedouble < lo || v->valuedouble > hi) {
        char m[160];
        snprintf(m, sizeof m, "'%s' must be between %.0f and %.0f", name, lo, hi);
        return bad(pe, name, "invalid_value", "%s", m);
    }
    *out = v->valuedouble;
    return 0;
}

static int parse_stop(const cJSON *o, sv_request *r, perr *pe) {
    const cJSON *v = field(o, "stop");
    if (!v) return 0;
    if (cJSON_IsString(v)) {
        if (!*v->valuestring) return 0;
        return (r->stop[r->n_stop++] = strdup(v->valuestring)) ? 0 : bad(pe, "stop", NULL, "%s", "out of memory");
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > SV_MAX_STOP)
        return bad(pe, "stop", "invalid_type", "%s", "'stop' must be a string or an array of at most 4 strings");
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s)) return bad(pe, "stop", "invalid_type", "%s", "'stop' must hold strings");
        if (!*s->valuestring) continue;
        if (!(r->stop[r->n_stop++] = strdup(s->valuestring))) return bad(pe, "stop", NULL, "%s", "out of memory");
    }
    return 0;
}

static int parse_sampling(const cJSON *o, sv_request *r, perr *pe) {
    double d;
    int rc;
    r->sp = lb_sampler_default_params();
    r->sp.temperature = 1.0f; /* OpenAI's default */
    if ((rc = num(o, "temperature", 0, 2, &r->sp.temperature, pe)) || (rc = num(o, "top_p", 0, 1, &r->sp.top_p, pe)) ||
        (rc = num(o, "min_p", 0, 1, &r->sp.min_p, pe)) ||
        (rc = num(o, "presence_penalty", -2, 2, &r->presence_penalty, pe)) ||
        (rc = num(o, "frequency_penalty", -2, 2, &r->frequency_penalty, pe)) ||
        (rc = num(o, "repeat_penalty", 1e-3, 100, &r->sp.repeat_penalty, pe)))
        return rc;
    if (field(o, "top_p") && r->sp.top_p <= 0) return bad(pe, "top_p", "invalid_value", "%s", "'top_p' must be > 0");
    d = 0;
    if ((rc = integer(o, "top_k", 0, 1 << 30, &d, pe))) return rc;
    r->sp.top_k = (int)d;
    d = 64;
    if ((rc = integer(o, "repeat_last_n", 0, 1 << 20, &d, pe))) return rc;
    r->sp.repeat_last_n = (int)d;
    d = -1;
    if ((rc = integer(o, "seed", 0, 9007199254740992.0, &d, pe))) return rc;
    /* no seed: a different stream per request, as OpenAI's API behaves */
    r->sp.seed = d >= 0 ? (uint64_t)d : (uint64_t)time(NULL) * 6364136223846793005ull + (uint64_t)r->id;
    d = 1;
    if ((rc = integer(o, "n", 1, 1, &d, pe))) return bad(pe, "n", "invalid_value", "%s", "only n = 1 is supported");
    const cJSON *lp = field(o, "logprobs");
    if (lp && !cJSON_IsFalse(lp) && !(cJSON_IsNumber(lp) && lp->valuedouble == 0))
        return bad(pe, "logprobs", "unsupported_value", "%s", "logprobs are not supported");
    return parse_stop(o, r, pe);
}

/* Speculative decoding per request: "speculative": {"lookup": N, "n_max": K, "p_min": P} (true:
 * the server's settings, lookup 1 if it has none; false: off; lookup N > 0 on a --draft server:
 * lookup instead of the draft model) or llama-server's flat "speculative.n_max" /
 * "speculative.n_min" / "speculative.p_min" (n_min is accepted for its clients: the number of
 * drafts adapts; p_min applies to a draft model's drafts). n_max 0 turns it off. The server's
 * --lookup / --draft / --draft-max / --draft-min-p are the defaults; its batch has room for
 * --draft-max. */
static int parse_speculative(const sv_server *sv, const cJSON *o, sv_request *r, perr *pe) {
    r->lookup = sv->lookup;
    r->draft = sv->draft;
    r->draft_max = sv->draft_max;
    r->p_min = sv->p_min;
    const cJSON *v = field(o, "speculative"), *in = v && cJSON_IsObject(v) ? v : NULL;
    if (v && !in && !cJSON_IsBool(v))
        return bad(pe, "speculative", "invalid_type", "%s", "'speculative' must be an object or a boolean");
    if (v && cJSON_IsFalse(v)) return r->lookup = r->draft = 0, 0;
    if (v && !sv->spec_kmax)
        return bad(pe, "speculative", "unsupported_value", "%s",
                   "this server runs without speculative decoding (start it with --lookup N or --draft-max K)");
    if (v && !r->lookup && !r->draft) r->lookup = 1;
    double look = r->lookup, nmax = r->draft_max, nmin = 0;
    float pmin = r->p_min;
    int rc;
    if ((in && ((rc = integer(in, "lookup", 0, 64, &look, pe)) || (rc = integer(in, "n_max", 0, sv->spec_kmax, &nmax, pe)) ||
                (rc = integer(in, "n_min", 0, sv->spec_kmax, &nmin, pe)) || (rc = num(in, "p_min", 0, 1, &pmin, pe)))) ||
        (rc = integer(o, "speculative.n_max", 0, sv->spec_kmax ? sv->spec_kmax : 64, &nmax, pe)) ||
        (rc = integer(o, "speculative.n_min", 0, 64, &nmin, pe)) || (rc = num(o, "speculative.p_min", 0, 1, &pmin, pe)))
        return rc;
    int on = nmax > 0 && sv->spec_kmax;
    r->lookup = on ? (int)look : 0;
    r->draft = on && !r->lookup && sv->draft;
    /* a server without speculation accepts llama-server's flat fields and ignores them: the
     * request keeps no draft budget the batch has no room for */
    r->draft_max = on ? (int)nmax : 0;
    r->p_min = pmin;
    return 0;
}

static int parse_stream(const cJSON *o, sv_request *r, perr *pe) {
    const cJSON *v = field(o, "stream");
    if (v && !cJSON_IsBool(v)) return bad(pe, "stream", "invalid_type", "%s", "'stream' must be a boolean");
    r->stream = v && cJSON_IsTrue(v);
    const cJSON *so = field(o, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) return bad(pe, "stream_options", "invalid_type", "%s", "'stream_options' must be an object");
        const cJSON *u = field(so, "include_usage");
        if (u && !cJSON_IsBool(u)) return bad(pe, "stream_options.include_usage", "invalid_type", "%s", "'include_usage' must be a boolean");
        r->include_usage = u && cJSON_IsTrue(u);
    }
    return 0;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts (joined). */
static char *message_content(const cJSON *c, size_t i, perr *pe, int *rc) {
    char where[64];
    snprintf(where, sizeof where, "messages[%zu].content", i);
    if (!c) return strdup("");
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) {
        *rc = bad(pe, "messages", "invalid_type", "'%s' must be a string or an array of text parts", where);
        return NULL;
    }
    size_t n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text"), *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (!cJSON_IsObject(p) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(t)) {
            *rc = bad(pe, "messages", "invalid_type", "'%s' parts must be {\"type\": \"text\", \"text\": string}", where);
            return NULL;
        }
        n += strlen(t->valuestring);
    }
    char *out = malloc(n + 1);
    if (!out) return NULL;
    out[0] = 0;
    cJSON_ArrayForEach(p, c) strcat(out, cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
    return out;
}

/* Formats "messages" with the model's chat template into *text (malloc'ed). */
static int parse_messages(sv_server *sv, const cJSON *o, char **text, perr *pe) {
    const cJSON *ms = field(o, "messages");
    if (!ms) return bad(pe, "messages", "missing_required_parameter", "%s", "'messages' is required");
    int n = cJSON_GetArraySize(ms);
    if (!cJSON_IsArray(ms) || n < 1 || n > SV_MAX_MESSAGES)
        return bad(pe, "messages", "invalid_type", "%s", "'messages' must be a non-empty array (at most 1024 messages)");
    lb_chat_message *msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs) return bad(pe, NULL, NULL, "%s", "out of memory");
    int rc = 0, k = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, ms) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            rc = bad(pe, "messages", "invalid_type", "%s", "each message must be an object with a string 'role'");
            break;
        }
        const char *rl = role->valuestring;
        if (!strcmp(rl, "developer")) rl = "system"; /* OpenAI's newer name for it */
        if (strcmp(rl, "system") && strcmp(rl, "user") && strcmp(rl, "assistant")) {
            rc = bad(pe, "messages", "invalid_value", "role '%.64s' is not supported (system, user, assistant)", rl);
            break;
        }
        msgs[k].role = rl;
        if (!(msgs[k].content = message_content(field(m, "content"), (size_t)k, pe, &rc))) {
            if (!rc) rc = bad(pe, NULL, NULL, "%s", "out of memory");
            break;
        }
        k++;
    }
    if (!rc) {
        lb_error err = {0};
        if (lb_chat_format(sv->chat_style, msgs, (size_t)k, text, &err)) rc = bad(pe, "messages", NULL, "%s", err.msg);
    }
    for (int i = 0; i < k; i++) free((char *)msgs[i].content);
    free(msgs);
    return rc;
}

/* "prompt": a string, an array of one string, or an array of token ids. */
static int parse_prompt(sv_server *sv, const cJSON *o, sv_request *r, char **text, perr *pe) {
    const cJSON *p = field(o, "prompt");
    if (!p) return bad(pe, "prompt", "missing_required_parameter", "%s", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
    if (cJSON_IsString(p)) return (*text = strdup(p->valuestring)) ? 0 : bad(pe, NULL, NULL, "%s", "out of memory");
    int n = cJSON_GetArraySize(p);
    if (!cJSON_IsArray(p) || n < 1) return bad(pe, "prompt", "invalid_type", "%s", "'prompt' must be a string, one string in an array, or token ids");
    if (!(r->prompt = malloc((size_t)n * sizeof *r->prompt))) return bad(pe, NULL, NULL, "%s", "out of memory");
    const cJSON *id;
    cJSON_ArrayForEach(id, p) {
        if (!cJSON_IsNumber(id) || id->valuedouble != floor(id->valuedouble) || id->valuedouble < 0 ||
            id->valuedouble >= lb_model_n_vocab(sv->model))
            return bad(pe, "prompt", "invalid_value", "%s", "token ids in 'prompt' must be integers below the vocabulary size");
        r->prompt[r->n_prompt++] = (int32_t)id->valuedouble;
    }
    return 0;
}

static int parse_fields(sv_server *sv, const cJSON *o, int chat, sv_request *r, perr *pe) {
    int rc;
    const cJSON *model = field(o, "model");
    if (model && !cJSON_IsString(model)) return bad(pe, "model", "invalid_type", "%s", "'model' must be a string");
    const char *name = sv->model_name;
    r->ft = 0;
    if (model && strcmp(model->valuestring, sv->model_name)) {
        int k = 0;
        while (k < sv->n_ft && strcmp(model->valuestring, sv->ft_names[k])) k++;
        if (k == sv->n_ft) {
            snprintf(pe->msg, pe->cap, "The model '%.128s' does not exist (GET /v1/models lists them; '%s' is the base)",
                     model->valuestring, sv->model_name);
            *pe->param = "model";
            *pe->code = "model_not_found";
            return 404;
        }
        name = sv->ft_names[k];
        r->ft = sv->ft_ids[k];
    }
    snprintf(r->model, sizeof r->model, "%s", name);
    if ((rc = parse_stream(o, r, pe)) || (rc = parse_sampling(o, r, pe)) || (rc = parse_speculative(sv, o, r, pe))) return rc;
    double mt = -1;
    if ((rc = integer(o, "max_tokens", 1, 1 << 24, &mt, pe)) || (rc = integer(o, "max_completion_tokens", 1, 1 << 24, &mt, pe)))
        return rc;
    char *text = NULL;
    rc = chat ? parse_messages(sv, o, &text, pe) : parse_prompt(sv, o, r, &text, pe);
    if (!rc && text) {
        lb_error err = {0};
        if (lb_tokenize(sv->tok, text, strlen(text), 1, &r->prompt, &r->n_prompt, &err)) rc = bad(pe, NULL, NULL, "%s", err.msg);
    }
    free(text);
    if (rc) return rc;
    if (r->n_prompt == 0) return bad(pe, chat ? "messages" : "prompt", "invalid_value", "%s", "the prompt encodes to no tokens");
    if ((int)r->n_prompt >= sv->n_ctx) {
        char m[200];
        snprintf(m, sizeof m, "the prompt has %zu tokens; this server's context is %d tokens per request", r->n_prompt, sv->n_ctx);
        return bad(pe, chat ? "messages" : "prompt", "context_length_exceeded", "%s", m);
    }
    int room = sv->n_ctx - (int)r->n_prompt;
    /* OpenAI's completions default to 16 tokens; a chat answer may run to the end of the context */
    r->max_tokens = mt > 0 ? (int)mt : chat ? room : 16;
    if (r->max_tokens > room) r->max_tokens = room;
    lb_error err = {0};
    if (lb_sampler_new(&r->sp, lb_model_n_vocab(sv->model), &r->sampler, &err)) return bad(pe, NULL, NULL, "%s", err.msg);
    return 0;
}

int sv_api_parse(sv_server *sv, const char *body, size_t len, int chat, sv_request *r, char *msg, size_t cap,
                 const char **param, const char **code) {
    perr pe = {msg, cap, param, code};
    *param = *code = NULL;
    if (!sv_utf8_valid(body, len)) return bad(&pe, NULL, "invalid_utf8", "%s", "the request body is not valid UTF-8");
    if (sv_json_depth(body, len) > SV_JSON_MAX_DEPTH) return bad(&pe, NULL, "invalid_json", "%s", "the request JSON is nested too deeply (at most 32 levels)");
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!o) {
        char m[96];
        snprintf(m, sizeof m, "the request body is not valid JSON (at byte %zu)", end ? (size_t)(end - body) : (size_t)0);
        return bad(&pe, NULL, "invalid_json", "%s", m);
    }
    int rc = cJSON_IsObject(o) ? parse_fields(sv, o, chat, r, &pe) : bad(&pe, NULL, "invalid_json", "%s", "the request body must be a JSON object");
    cJSON_Delete(o);
    r->chat = chat;
    return rc;
}

/* ---- /tokenize and /detokenize ------------------------------------------------------------------ */

static cJSON *parse_object(const char *body, size_t len, char *msg, size_t cap) {
    if (!sv_utf8_valid(body, len)) return snprintf(msg, cap, "the request body is not valid UTF-8"), NULL;
    if (sv_json_depth(body, len) > SV_JSON_MAX_DEPTH) return snprintf(msg, cap, "the request JSON is nested too deeply"), NULL;
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        snprintf(msg, cap, "the request body must be a JSON object");
        return NULL;
    }
    return o;
}

int sv_api_tokenize(sv_server *sv, const char *body, size_t len, char **out, char *msg, size_t cap) {
    cJSON *o = parse_object(body, len, msg, cap);
    if (!o) return 400;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content"), *sp = field(o, "add_special");
    int rc = 400;
    if (!cJSON_IsString(c)) snprintf(msg, cap, "'content' must be a string");
    else if (sp && !cJSON_IsBool(sp)) snprintf(msg, cap, "'add_special' must be a boolean");
    else {
        int32_t *ids = NULL;
        size_t n = 0;
        lb_error err = {0};
        if (lb_tokenize(sv->tok, c->valuestring, strlen(c->valuestring), sp && cJSON_IsTrue(sp), &ids, &n, &err)) {
            snprintf(msg, cap, "%s", err.msg);
        } else {
            cJSON *r = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(r, "tokens");
            for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
            *out = cJSON_PrintUnformatted(r);
            cJSON_Delete(r);
            rc = *out ? 200 : 500;
        }
        free(ids);
    }
    cJSON_Delete(o);
    return rc;
}

int sv_api_detokenize(sv_server *sv, const char *body, size_t len, char **out, char *msg, size_t cap) {
    cJSON *o = parse_object(body, len, msg, cap);
    if (!o) return 400;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "tokens"), *id;
    int n = cJSON_GetArraySize(t), rc = 400, nv = lb_model_n_vocab(sv->model);
    int32_t *ids = cJSON_IsArray(t) ? malloc((size_t)(n ? n : 1) * sizeof *ids) : NULL;
    size_t k = 0;
    if (!cJSON_IsArray(t)) snprintf(msg, cap, "'tokens' must be an array of token ids");
    else if (!ids) snprintf(msg, cap, "out of memory");
    else {
        cJSON_ArrayForEach(id, t) {
            if (!cJSON_IsNumber(id) || id->valuedouble != floor(id->valuedouble) || id->valuedouble < 0 || id->valuedouble >= nv)
                break;
            ids[k++] = (int32_t)id->valuedouble;
        }
        char *text = NULL;
        size_t tl = 0;
        lb_error err = {0};
        if (k != (size_t)n) snprintf(msg, cap, "'tokens[%zu]' is not a token id below %d", k, nv);
        else if (lb_detokenize(sv->tok, ids, k, &text, &tl, &err)) snprintf(msg, cap, "%s", err.msg);
        else {
            char *clean = sv_utf8_clean(text, tl);
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "content", clean ? clean : "");
            *out = cJSON_PrintUnformatted(r);
            cJSON_Delete(r);
            free(clean);
            rc = *out ? 200 : 500;
        }
        free(text);
    }
    free(ids);
    cJSON_Delete(o);
    return rc;
}
