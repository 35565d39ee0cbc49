/* Loaders with the tokenizers found beside the weights (needs the SentencePiece code from
 * src/tokenizer): the HF folder's tokenizer.model and the llama2.c tok512.bin give a
 * 512-piece tokenizer that encodes the reference prompts as the reference says. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#ifdef __clang__ /* CHECK(cond) with no message is intended */
#pragma clang diagnostic ignored "-Wgnu-zero-variadic-macro-arguments"
#endif
#include "core/error.h"
#include "core/model.h"
#include "tokenizer/tokenizer.h"

/* The first prompt of the stories260K greedy reference and its ids. */
static int reference_prompt(char **text, int32_t **ids, size_t *n) {
    char *t;
    size_t len;
    lb_error err;
    if (lb_read_file(SHARED("reference/stories260K/greedy.json"), 1 << 22, &t, &len, &err)) return 0;
    cJSON *j = cJSON_Parse(t);
    free(t);
    const cJSON *p = cJSON_IsArray(j) ? j->child : cJSON_GetObjectItemCaseSensitive(j, "prompts");
    if (cJSON_IsArray(p)) p = p->child;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(p, "prompt"), *pid = cJSON_GetObjectItemCaseSensitive(p, "prompt_ids");
    if (!cJSON_IsString(pt) || !cJSON_IsArray(pid)) {
        cJSON_Delete(j);
        return 0;
    }
    *text = strdup(pt->valuestring);
    *n = (size_t)cJSON_GetArraySize(pid);
    *ids = malloc(*n * sizeof **ids);
    size_t i = 0;
    for (const cJSON *v = pid->child; v; v = v->next) (*ids)[i++] = v->valueint;
    cJSON_Delete(j);
    return 1;
}

static void check_tok(lb_model *m, const char *what) {
    CHECK(m->tok != NULL && m->tok->n_vocab == 512, "%s: tokenizer loaded", what);
    char *text;
    int32_t *want;
    size_t n_want;
    if (!m->tok || !reference_prompt(&text, &want, &n_want)) {
        CHECK(0, "%s: no reference prompt", what);
        return;
    }
    int32_t *ids;
    size_t n;
    lb_error err;
    CHECK(lb_tokenize(m->tok, text, strlen(text), 1, &ids, &n, &err) == LB_OK && n == n_want &&
              memcmp(ids, want, n * sizeof *ids) == 0,
          "%s: prompt ids", what);
    free(ids);
    free(want);
    free(text);
}

int main(void) {
    lb_error err;
    lb_model *m = lb_model_new();
    lb_status s = lb_load_hf(m, SHARED("models/stories260K-hf"), &err);
    if (!s) s = lb_model_bind(m, &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (!s) check_tok(m, "hf");
    lb_model_free(m);

    m = lb_model_new();
    s = lb_load_llama2c(m, SHARED("models/stories260K-llama2c/stories260K.bin"), NULL, &err);
    if (!s) s = lb_model_bind(m, &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (!s) check_tok(m, "llama2c beside");
    lb_model_free(m);

    m = lb_model_new();
    s = lb_load_llama2c(m, SHARED("models/stories260K-llama2c/stories260K.bin"),
                        SHARED("models/stories260K-llama2c/tok512.bin"), &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (!s) check_tok(m, "llama2c explicit");
    lb_model_free(m);
    return test_summary();
}
