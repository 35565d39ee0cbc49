/* lb_generate against independent truths: the greedy references of stories260K (ids and text),
 * the full text for stop strings (cut at the first occurrence, nothing of it streamed), one
 * fresh run of the whole conversation for a continued (keep) session, and bad parameters. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ref_json.h"
#include "lowbit.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")
#define GREEDY SHARED("reference/stories260K/greedy.json")

typedef struct stream {
    char buf[8192];
    size_t len;
    int calls, stop_after; /* stop_after > 0: return 1 at that call */
} stream;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    stream *s = user;
    (void)id;
    if (s->len + len < sizeof s->buf) memcpy(s->buf + s->len, text, len), s->len += len;
    s->buf[s->len] = 0;
    return ++s->calls == s->stop_after;
}

/* Greedy generation equals the reference ids and text; the stream equals the text. */
static void test_reference(lb_session *s) {
    cJSON *ref = load_json(GREEDY);
    CHECK(ref && cJSON_GetArraySize(ref) >= 3, "%s", GREEDY);
    for (int k = 0; ref && k < cJSON_GetArraySize(ref); k++) {
        cJSON *c = cJSON_GetArrayItem(ref, k), *g = cJSON_GetObjectItem(c, "greedy_ids");
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        stream st = {0};
        lb_generate_params p = lb_generate_default_params();
        p.max_tokens = cJSON_GetArraySize(g);
        p.on_token = on_token;
        p.user = &st;
        lb_generate_result r;
        lb_error err = {0};
        CHECK(lb_generate(s, prompt, &p, &r, &err) == LB_OK, "%s", err.msg);
        CHECK(ids_equal(cJSON_GetObjectItem(c, "prompt_ids"), r.prompt_ids, r.n_prompt_ids), "prompt %d ids", k);
        CHECK(ids_equal(g, r.ids, r.n_ids) && r.stop == LB_STOP_LENGTH, "prompt %d: greedy ids, stop %s", k,
              lb_stop_reason_name(r.stop));
        size_t np = strlen(prompt);
        CHECK(!strncmp(text, prompt, np) && !strcmp(text + np, r.text), "prompt %d text: %s", k, r.text);
        CHECK(st.len == r.text_len && !strcmp(st.buf, r.text) && st.calls == (int)r.n_ids, "prompt %d stream", k);
        lb_generate_result_free(&r);
    }
    cJSON_Delete(ref);
}

/* Stop strings: the text ends before the first occurrence of any, nothing of it is streamed. */
static void test_stop(lb_session *s) {
    lb_error err = {0};
    lb_generate_params p = lb_generate_default_params();
    p.max_tokens = 64;
    lb_generate_result full, r;
    CHECK(lb_generate(s, "Once upon a time", &p, &full, &err) == LB_OK, "%s", err.msg);
    const char *cases[][2] = {{"Lily", "zzz"}, {"d. She", "little girl"}, {"mom said", "qqq"}, {"ball.", "e"}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        stream st = {0};
        p.stop = cases[k];
        p.n_stop = 2;
        p.on_token = on_token;
        p.user = &st;
        CHECK(lb_generate(s, "Once upon a time", &p, &r, &err) == LB_OK, "%s", err.msg);
        size_t cut = full.text_len;
        for (int j = 0; j < 2; j++) {
            const char *hit = strstr(full.text, cases[k][j]);
            if (hit && (size_t)(hit - full.text) < cut) cut = (size_t)(hit - full.text);
        }
        CHECK(cut < full.text_len && r.stop == LB_STOP_STRING && r.text_len == cut && !strncmp(r.text, full.text, cut),
              "stop '%s'/'%s': %s (%s)", cases[k][0], cases[k][1], r.text, lb_stop_reason_name(r.stop));
        CHECK(st.len == cut && !strncmp(st.buf, full.text, cut), "stop '%s': streamed '%s'", cases[k][0], st.buf);
        CHECK(r.n_ids <= full.n_ids && !memcmp(r.ids, full.ids, r.n_ids * sizeof(int32_t)), "stop ids are a prefix");
        lb_generate_result_free(&r);
    }
    /* a stop string that never appears: everything held back is streamed at the end */
    stream st = {0};
    const char *never[] = {"Lily's mom said no"};
    p.stop = never;
    p.n_stop = 1;
    p.user = &st;
    CHECK(lb_generate(s, "Once upon a time", &p, &r, &err) == LB_OK && r.stop == LB_STOP_LENGTH, "%s", err.msg);
    CHECK(!strcmp(r.text, full.text) && !strcmp(st.buf, full.text), "unseen stop string: streamed '%s'", st.buf);
    lb_generate_result_free(&r);
    /* the callback stops the loop */
    stream cb = {.stop_after = 3};
    p.n_stop = 0;
    p.user = &cb;
    CHECK(lb_generate(s, "Once upon a time", &p, &r, &err) == LB_OK && r.stop == LB_STOP_CALLER && r.n_ids == 3 &&
              !memcmp(r.ids, full.ids, 3 * sizeof(int32_t)), "callback stop: %zu ids", r.n_ids);
    lb_generate_result_free(&r);
    lb_generate_result_free(&full);
}

/* A continued session (keep) equals one fresh run of the whole conversation as ids. */
static void test_keep(lb_session *s) {
    lb_error err = {0};
    lb_generate_params p = lb_generate_default_params();
    p.max_tokens = 10;
    lb_generate_result a, b, whole;
    CHECK(lb_generate(s, "Lily wanted to", &p, &a, &err) == LB_OK && a.n_ids == 10, "%s", err.msg);
    int32_t next[2] = {403, 407};
    p.keep = 1;
    p.prompt_ids = next;
    p.n_prompt_ids = 2;
    CHECK(lb_generate(s, NULL, &p, &b, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_session_n_past(s) == (int)(a.n_prompt_ids + a.n_ids + 2 + b.n_ids - 1), "n_past %d", lb_session_n_past(s));
    int32_t ids[64];
    size_t n = 0;
    for (size_t i = 0; i < a.n_prompt_ids; i++) ids[n++] = a.prompt_ids[i];
    for (size_t i = 0; i < a.n_ids; i++) ids[n++] = a.ids[i];
    ids[n++] = 403, ids[n++] = 407;
    p.keep = 0;
    p.prompt_ids = ids;
    p.n_prompt_ids = n;
    CHECK(lb_generate(s, NULL, &p, &whole, &err) == LB_OK, "%s", err.msg);
    CHECK(b.n_ids == whole.n_ids && !memcmp(b.ids, whole.ids, b.n_ids * sizeof(int32_t)) && !strcmp(b.text, whole.text),
          "keep: '%s' vs fresh '%s'", b.text, whole.text);
    lb_generate_result_free(&a);
    lb_generate_result_free(&b);
    lb_generate_result_free(&whole);
}

/* Bad parameters fail before anything runs, naming what is wrong. */
static void test_bad(lb_session *s) {
    lb_error err = {0};
    lb_generate_params p = lb_generate_default_params();
    lb_generate_result r;
    const char *empty[] = {"ok", ""};
    p.stop = empty;
    p.n_stop = 2;
    CHECK(lb_generate(s, "hi", &p, &r, &err) == LB_ERR_ARG && strstr(err.msg, "stop string 1 is empty") && !r.ids, "%s", err.msg);
    p.n_stop = 0;
    p.max_tokens = -1;
    CHECK(lb_generate(s, "hi", &p, &r, &err) == LB_ERR_ARG && strstr(err.msg, "max_tokens"), "%s", err.msg);
    p.max_tokens = 4;
    static int32_t many[300];
    for (int i = 0; i < 300; i++) many[i] = 300 + i % 100;
    p.prompt_ids = many;
    p.n_prompt_ids = 300;
    CHECK(lb_generate(s, NULL, &p, &r, &err) == LB_ERR_RANGE && strstr(err.msg, "context of 256"), "%s", err.msg);
    p.n_prompt_ids = 0;
    CHECK(lb_generate(s, NULL, &p, &r, &err) == LB_ERR_ARG && strstr(err.msg, "no tokens"), "%s", err.msg);
    p.chat = 1;
    CHECK(lb_generate(s, "hi", &p, &r, &err) == LB_ERR_UNSUPPORTED && strstr(err.msg, "no chat template"), "%s", err.msg);
    /* the context fills: the loop stops and says so */
    p.chat = 0;
    p.max_tokens = 1000;
    CHECK(lb_generate(s, "Once upon a time", &p, &r, &err) == LB_OK && r.stop == LB_STOP_CONTEXT &&
              lb_session_n_past(s) == 256, "stop %s at %d", lb_stop_reason_name(r.stop), lb_session_n_past(s));
    lb_generate_result_free(&r);
}

int main(void) {
    lb_error err = {0};
    lb_model *m = NULL;
    lb_session *s = NULL;
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = 256;
    sp.n_threads = 1;
    sp.kv_type = LB_KV_F32; /* greedy ids against transformers' (an f32 cache) */
    lb_log_set_level(LB_LOG_ERROR);
    CHECK(lb_model_load(STORIES, NULL, &m, &err) == LB_OK, "%s", err.msg);
    CHECK(m && lb_session_new(m, &sp, &s, &err) == LB_OK, "%s", err.msg);
    if (s) {
        test_reference(s);
        test_stop(s);
        test_keep(s);
        test_bad(s);
    }
    lb_session_free(s);
    lb_model_free(m);
    return test_summary();
}
