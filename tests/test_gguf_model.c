/* lb_load_gguf on the real stories260K.gguf: hyperparameters as published (README of the
 * shared models), tensors bound, and the tokenizer from GGUF metadata encoding the greedy
 * reference prompts to the reference ids. Needs the SentencePiece and BPE tokenizers
 * (lb_spm_from_vocab, lb_bpe_from_vocab) linked in. Also: a GGUF written by our writer with a
 * qwen2 config and no tokenizer, and an unknown architecture. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "core/model.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")
#define GREEDY SHARED("reference/stories260K/greedy.json")

static void test_stories(void) {
    lb_model *m = lb_model_new();
    lb_error err;
    lb_status s = lb_load_gguf(m, STORIES, &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (s) {
        lb_model_free(m);
        return;
    }
    const lb_config *c = &m->cfg;
    CHECK(strcmp(m->format, "gguf") == 0, "");
    CHECK(c->arch == LB_ARCH_LLAMA && c->rope_layout == LB_ROPE_NORM && !c->qkv_bias, "");
    CHECK(c->dim == 64 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4, "");
    CHECK(c->n_vocab == 512 && c->hidden_dim == 172, "vocab %d hidden %d", c->n_vocab, c->hidden_dim);
    CHECK(c->norm_eps > 0.99e-5f && c->norm_eps < 1.01e-5f && c->rope_theta == 10000.0f, "");
    CHECK(m->n_tensors == 48, "%zu", m->n_tensors);
    CHECK(lb_model_bind(m, &err) == LB_OK, "%s", err.msg);
    CHECK(c->head_dim == 8, "");
    /* weights stay in the mapping */
    CHECK(m->n_maps == 1 && m->tok_embd && (const unsigned char *)m->tok_embd->data > m->maps[0].data &&
              (const unsigned char *)m->tok_embd->data + m->tok_embd->nbytes <= m->maps[0].data + m->maps[0].size, "");

    CHECK(m->tok != NULL, "tokenizer from tokenizer.ggml.*");
    char *json;
    size_t len;
    if (m->tok && lb_read_file(GREEDY, 1 << 20, &json, &len, &err) == LB_OK) {
        cJSON *root = cJSON_Parse(json);
        int n_cases = 0;
        cJSON *item;
        cJSON_ArrayForEach(item, root) {
            const char *prompt = cJSON_GetStringValue(cJSON_GetObjectItem(item, "prompt"));
            cJSON *ref = cJSON_GetObjectItem(item, "prompt_ids");
            int32_t *ids = NULL;
            size_t n = 0;
            s = lb_tokenize(m->tok, prompt, strlen(prompt), 1, &ids, &n, &err);
            int same = s == LB_OK && (int)n == cJSON_GetArraySize(ref);
            for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(ref, (int)i)->valueint;
            CHECK(same, "prompt \"%s\" encodes differently", prompt);
            free(ids);
            n_cases++;
        }
        CHECK(n_cases == 5, "%d prompts", n_cases);
        cJSON_Delete(root);
        free(json);
    }
    if (m->tok) CHECK(m->tok->bos_id == 1 && m->tok->eos_id == 2 && m->tok->n_vocab == 512, "");
    lb_model_free(m);
}

static void test_written(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/lb_test_gguf_model_%d.gguf", (int)getpid());
    lb_error err;
    lb_gguf_writer *w = lb_gguf_writer_new();
    float data[32 * 16] = {0};
    int64_t emb[2] = {16, 32};
    CHECK(lb_gguf_set_str(w, "general.architecture", "qwen2", 5, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u32(w, "qwen2.embedding_length", 16, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u32(w, "qwen2.feed_forward_length", 40, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u32(w, "qwen2.block_count", 1, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u32(w, "qwen2.attention.head_count", 4, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u32(w, "qwen2.attention.head_count_kv", 2, &err) == LB_OK, "");
    CHECK(lb_gguf_set_f32(w, "qwen2.rope.freq_base", 1e6f, &err) == LB_OK, "");
    CHECK(lb_gguf_set_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u32(w, "qwen2.context_length", 4096, &err) == LB_OK, "");
    CHECK(lb_gguf_add_tensor(w, "token_embd.weight", LB_F32, 2, emb, data, &err) == LB_OK, "");
    CHECK(lb_gguf_write(w, path, &err) == LB_OK, "%s", err.msg);
    lb_model *m = lb_model_new();
    CHECK(lb_load_gguf(m, path, &err) == LB_OK, "%s", err.msg);
    CHECK(m->cfg.arch == LB_ARCH_QWEN2 && m->cfg.rope_layout == LB_ROPE_NEOX && m->cfg.qkv_bias, "");
    CHECK(m->cfg.n_vocab == 32 && m->cfg.n_kv_heads == 2 && m->cfg.rope_theta == 1e6f && m->cfg.ctx_train == 4096, "");
    CHECK(m->tok == NULL && m->chat_template == NULL, "no tokenizer in the file");
    CHECK(m->cfg.sliding_window == 0, "no window without the key");
    lb_model_free(m);

    /* <arch>.attention.sliding_window: any integer type, 0 none, a bad one names the key */
    const char *swk = "qwen2.attention.sliding_window";
    for (int i = 0; i < 4; i++) {
        if (i == 0) lb_gguf_set_u16(w, swk, 64, &err);
        else if (i == 1) lb_gguf_set_u32(w, swk, 0, &err);
        else if (i == 2) lb_gguf_set_i32(w, swk, -1, &err);
        else lb_gguf_set_str(w, swk, "64", 2, &err);
        CHECK(lb_gguf_write(w, path, &err) == LB_OK, "%s", err.msg);
        m = lb_model_new();
        lb_status st = lb_load_gguf(m, path, &err);
        if (i < 2) CHECK(st == LB_OK && m->cfg.sliding_window == (i ? 0 : 64), "%d: %s", i, err.msg);
        else CHECK(st == LB_ERR_FORMAT && strstr(err.msg, swk), "%d: %d %s", i, st, err.msg);
        lb_model_free(m);
    }
    lb_gguf_set_u32(w, swk, 0, &err);

    CHECK(lb_gguf_set_str(w, "general.architecture", "gptx", 4, &err) == LB_OK, "");
    CHECK(lb_gguf_write(w, path, &err) == LB_OK, "%s", err.msg);
    m = lb_model_new();
    CHECK(lb_load_gguf(m, path, &err) == LB_ERR_UNSUPPORTED && strstr(err.msg, "gptx"), "%s", err.msg);
    lb_model_free(m);
    lb_gguf_writer_free(w);
    unlink(path);
}

int main(void) {
    test_stories();
    test_written();
    return test_summary();
}
