/* libFuzzer over what lowbit serve reads from the network, without a socket: request bodies of
 * /v1/completions and /v1/chat/completions (JSON -> parameters, messages -> the chat template ->
 * tokens, stop strings, "speculative"), /tokenize and /detokenize bodies, the Authorization
 * check, a body assembled from upload pieces of any size, and a generation's text cut at its
 * stop strings. Each result is checked against its contract or a simple independent truth.
 *
 * Input: MODE CONFIG BYTES...; MODE picks the part, CONFIG the server's settings (speculation,
 * chat template, context). The model is stories260K from $LB_SHARED_DIR/models (default
 * ../shared beside the source tree). Seeds: fuzz/seeds_serve_request (real requests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "serve.h"
#include "shared_path.h"

static lb_model *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[1024];
    fuzz_shared_path(path, sizeof path, "models/stories260K-gguf/stories260K.gguf");
    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.n_threads = 1;
    if (lb_model_load(path, &mp, &g_model, &err)) {
        fprintf(stderr, "fuzz_serve_request: %s (set LB_SHARED_DIR)\n", err.msg);
        exit(1);
    }
    return 0;
}

/* The server's settings from one byte, as lowbit serve sets them from its options. */
static void server_of(unsigned cfg, sv_server *sv) {
    static const char *styles[] = {"chatml", "llama3", "llama2", "mistral"};
    static const char *ft_names[] = {"dogs"};
    static const int ft_ids[] = {1};
    memset(sv, 0, sizeof *sv);
    sv->model = g_model;
    sv->tok = lb_model_tokenizer(g_model);
    sv->model_name = "stories260K";
    sv->ft_names = ft_names;
    sv->ft_ids = ft_ids;
    sv->n_ft = 1;
    sv->chat_style = styles[(cfg >> 3) & 3];
    sv->n_ctx = cfg & 32 ? 64 : 512;
    sv->spec_kmax = cfg & 1 ? 16 : 0;
    sv->draft_max = sv->spec_kmax;
    sv->draft = (cfg & 3) == 3;
    sv->lookup = (cfg & 5) == 5 && !sv->draft ? 2 : 0;
    sv->p_min = 0.1f;
    sv->max_body = 1 << 20;
}

/* A body the server would send: valid JSON, valid UTF-8. */
static void check_json_out(const char *s) {
    if (!s || !sv_utf8_valid(s, strlen(s))) __builtin_trap();
    cJSON *o = cJSON_Parse(s);
    if (!cJSON_IsObject(o)) __builtin_trap();
    cJSON_Delete(o);
}

static void check_error(int st, const char *msg, const char *param, const char *code) {
    if ((st != 400 && st != 404) || !msg[0]) __builtin_trap();
    char *e = sv_api_error_json(st, msg, param, code);
    check_json_out(e);
    free(e);
}

/* /v1/completions (chat 0) or /v1/chat/completions: an accepted request is one the scheduler can
 * run as it is (tokens in the vocabulary, within the context, settings within their ranges). */
static void fuzz_generation(sv_server *sv, const char *body, size_t len, int chat) {
    sv_request *r = calloc(1, sizeof *r);
    char msg[512] = "";
    const char *param = NULL, *code = NULL;
    r->id = 1;
    int st = sv_api_parse(sv, body, len, chat, r, msg, sizeof msg, &param, &code);
    if (st) check_error(st, msg, param, code);
    else {
        int nv = lb_model_n_vocab(sv->model);
        if (!r->sampler || r->n_prompt < 1 || r->n_prompt >= (size_t)sv->n_ctx || r->max_tokens < 1 ||
            r->n_prompt + (size_t)r->max_tokens > (size_t)sv->n_ctx)
            __builtin_trap();
        for (size_t i = 0; i < r->n_prompt; i++)
            if (r->prompt[i] < 0 || r->prompt[i] >= nv) __builtin_trap();
        if (r->n_stop < 0 || r->n_stop > SV_MAX_STOP) __builtin_trap();
        for (int i = 0; i < r->n_stop; i++)
            if (!r->stop[i] || !r->stop[i][0]) __builtin_trap(); /* an empty stop string would end at once */
        if (r->draft_max < 0 || r->draft_max > sv->spec_kmax || r->lookup < 0 || r->lookup > 64) __builtin_trap();
        if (!sv->spec_kmax && (r->lookup || r->draft)) __builtin_trap();
        if (r->draft && !sv->draft) __builtin_trap();
        if (!(r->sp.temperature >= 0 && r->sp.temperature <= 2) || !(r->sp.top_p > 0 && r->sp.top_p <= 1) ||
            !(r->sp.min_p >= 0 && r->sp.min_p <= 1) || !(r->p_min >= 0 && r->p_min <= 1))
            __builtin_trap();
        if (r->ft != 0 && r->ft != 1) __builtin_trap();
        if (!memchr(r->model, 0, sizeof r->model)) __builtin_trap();
    }
    sv_request_free(r);
}

static void fuzz_tokenizer_endpoints(sv_server *sv, const char *body, size_t len, int detok) {
    char msg[512] = "", *out = NULL;
    int st = detok ? sv_api_detokenize(sv, body, len, &out, msg, sizeof msg) : sv_api_tokenize(sv, body, len, &out, msg, sizeof msg);
    if (st == 200) {
        check_json_out(out);
        if (!detok) { /* every id a token of the vocabulary */
            cJSON *o = cJSON_Parse(out), *id;
            cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(o, "tokens"))
                if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= lb_model_n_vocab(sv->model))
                    __builtin_trap();
            cJSON_Delete(o);
        }
    } else if (st != 400 || !msg[0] || out) {
        __builtin_trap();
    }
    free(out);
}

/* KEY '\0' HEADER: accepted exactly when the header is "Bearer " (any case) and then the key. */
static void fuzz_auth(const char *p, size_t n) {
    const char *z = memchr(p, 0, n);
    if (!z) return;
    char *hdr = strndup(z + 1, n - (size_t)(z + 1 - p));
    const char *key = *p ? p : NULL;
    int want = !key || (!strncasecmp(hdr, "Bearer ", 7) && !strcmp(hdr + 7, key));
    if (sv_auth_ok(key, hdr) != want || sv_auth_ok(key, NULL) != !key) __builtin_trap();
    free(hdr);
}

/* MAX LEN CHUNK LEN CHUNK ...: the body is the chunks in order until one would pass MAX bytes,
 * which is refused and leaves the body as it was. */
static void fuzz_body(const unsigned char *p, size_t n) {
    if (n < 1) return;
    size_t max = (size_t)p[0] * 3, total = 0;
    char cl[24];
    snprintf(cl, sizeof cl, "%zu", n);
    if (sv_body_too_large(cl, max) != (n > max) || sv_body_too_large(NULL, max)) __builtin_trap();
    sv_body b = {0};
    for (size_t i = 1; i < n;) {
        size_t k = p[i++];
        if (k > n - i) k = n - i;
        int rc = sv_body_append(&b, (const char *)p + i, k, max);
        if (rc == 0) {
            total += k;
            if (total > max || b.len != total || b.data[b.len] || memcmp(b.data + b.len - k, p + i, k) || b.cap > max + 1)
                __builtin_trap();
        } else if (rc != -1 || total + k <= max || b.len != total) {
            __builtin_trap();
        }
        i += k;
    }
    free(b.data);
}

/* NSTOP, then segments split at 0xFF: NSTOP stop strings (up to a NUL, as JSON strings are held),
 * then the tokens' pieces. The text must stay the pieces' bytes, never hold a complete stop
 * string, never take back a byte it let out, and end cut before the stop string that ends first. */
static void fuzz_stops(const unsigned char *p, size_t n) {
    if (n < 1) return;
    sv_request r = {0};
    int want = p[0] % (SV_MAX_STOP + 1);
    const unsigned char *s = p + 1, *end = p + n;
    char *all = malloc(n + 1);
    size_t all_len = 0, safe = 0;
    int stopped = 0;
    for (int seg = 0; s <= end; seg++) {
        const unsigned char *e = memchr(s, 0xFF, (size_t)(end - s));
        if (!e) e = end;
        if (seg < want) {
            char *st = strndup((const char *)s, (size_t)(e - s));
            if (st[0]) r.stop[r.n_stop++] = st;
            else free(st);
        } else if (!stopped) {
            memcpy(all + all_len, s, (size_t)(e - s));
            all_len += (size_t)(e - s);
            int rc = sv_text_append(&r, (const char *)s, (size_t)(e - s));
            if (rc < 0) __builtin_trap();
            stopped = rc;
            if (r.text_len < safe || (!stopped && (r.text_safe < safe || r.text_safe > r.text_len))) __builtin_trap();
            if (!stopped) safe = r.text_safe;
            if (r.text_len && memcmp(r.text, all, r.text_len)) __builtin_trap();
        }
        s = e + 1;
    }
    /* the truth, a byte at a time: the first end of any stop string, its longest one there */
    size_t cut = all_len;
    for (size_t e = 1; e <= all_len && cut == all_len; e++)
        for (int i = 0; i < r.n_stop; i++) {
            size_t ls = strlen(r.stop[i]);
            if (ls <= e && !memcmp(all + e - ls, r.stop[i], ls) && e - ls < cut) cut = e - ls;
        }
    if (stopped != (cut < all_len)) __builtin_trap();
    if (stopped && r.text_len != cut) __builtin_trap();
    if (!stopped && r.text_len != all_len) __builtin_trap();
    if (!stopped && sv_utf8_valid(all, all_len) && !sv_utf8_valid(r.text, r.text_safe)) __builtin_trap();
    for (int i = 0; i < r.n_stop; i++) free(r.stop[i]);
    free(r.text);
    free(all);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 2) return 0;
    sv_server sv;
    server_of(data[1], &sv);
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    switch (data[0] % 7) {
    case 0: fuzz_generation(&sv, body, len, 0); break;
    case 1: fuzz_generation(&sv, body, len, 1); break;
    case 2: fuzz_tokenizer_endpoints(&sv, body, len, 0); break;
    case 3: fuzz_tokenizer_endpoints(&sv, body, len, 1); break;
    case 4: fuzz_auth(body, len); break;
    case 5: fuzz_stops(data + 2, len); break;
    case 6: fuzz_body(data + 2, len); break;
    }
    return 0;
}
