/* Hugging Face folders and llama2.c checkpoints: config.json parsing against the values the
 * shared models are documented to have, old and new rope spellings agreeing, broken configs
 * naming their key, folders (single, sharded, tied, untied) accepted by lb_model_bind, the
 * same weights from the HF and llama2.c copies of stories260K, and truncated checkpoints.
 * Tokenizer files are kept out of the temp folders here (see test_load_tokenizers.c). */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#ifdef __clang__ /* CHECK(cond) with no message is intended */
#pragma clang diagnostic ignored "-Wgnu-zero-variadic-macro-arguments"
#endif
#include "core/error.h"
#include "core/model.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

/* ---- temp folders ---- */

static char g_tmp[256];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *dir) { nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

/* A fresh empty folder under g_tmp. */
static const char *fresh_dir(const char *tag) {
    static char d[320];
    snprintf(d, sizeof d, "%s/%s", g_tmp, tag);
    rm_rf(d);
    mkdir(d, 0755);
    return d;
}

static void link_in(const char *dir, const char *src, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (symlink(src, p) != 0) CHECK(0, "symlink %s", p);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        CHECK(0, "cannot write %s", p);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    char *t = NULL;
    size_t n;
    lb_error err;
    if (lb_read_file(path, 1 << 20, &t, &n, &err)) CHECK(0, "%s", err.msg);
    return t;
}

/* ---- config parsing ---- */

static lb_status parse_str(const char *json, lb_config *c, lb_hf_extra *x, lb_error *err) {
    return lb_hf_parse_config_ex(json, strlen(json), "dir/config.json", c, x, err);
}

static lb_status parse_cfg_file(const char *model, lb_config *c, lb_hf_extra *x, lb_error *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s/config.json", LB_SHARED_DIR "/models", model);
    char *t = read_text(p);
    if (!t) return LB_ERR_IO;
    lb_status s = lb_hf_parse_config_ex(t, strlen(t), p, c, x, err);
    free(t);
    return s;
}

static int cfg_equal(const lb_config *a, const lb_config *b) {
    return a->arch == b->arch && a->n_vocab == b->n_vocab && a->dim == b->dim && a->hidden_dim == b->hidden_dim &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->ctx_train == b->ctx_train && a->norm_eps == b->norm_eps &&
           a->rope_theta == b->rope_theta && a->rope_layout == b->rope_layout && a->rope_scaling == b->rope_scaling &&
           a->rope_factor == b->rope_factor && a->rope_low_freq_factor == b->rope_low_freq_factor &&
           a->rope_high_freq_factor == b->rope_high_freq_factor && a->rope_orig_ctx == b->rope_orig_ctx &&
           a->act == b->act && a->qkv_bias == b->qkv_bias && a->sub_norms == b->sub_norms;
}

static void check_shared_configs(void) {
    lb_config c;
    lb_hf_extra x;
    lb_error err;
    /* values from ../shared/models/README.md and the model cards */
    CHECK(parse_cfg_file("stories260K-hf", &c, &x, &err) == LB_OK, "%s", err.msg);
    CHECK(c.arch == LB_ARCH_LLAMA && c.dim == 64 && c.hidden_dim == 172 && c.n_layers == 5 && c.n_heads == 8 &&
          c.n_kv_heads == 4 && c.n_vocab == 512 && c.head_dim == 8 && c.ctx_train == 512);
    CHECK(c.rope_theta == 10000.0f && c.rope_scaling == LB_ROPE_SCALE_NONE && c.rope_layout == LB_ROPE_NEOX &&
          c.act == LB_ACT_SILU && !c.qkv_bias && !c.sub_norms && fabsf(c.norm_eps - 1e-5f) < 1e-12f);
    CHECK(x.tie_word_embeddings && x.bos_id == 1 && x.eos_id == 2);

    CHECK(parse_cfg_file("synth-llama3-gqa", &c, &x, &err) == LB_OK, "%s", err.msg);
    CHECK(c.arch == LB_ARCH_LLAMA && c.dim == 128 && c.n_layers == 4 && c.n_heads == 4 && c.n_kv_heads == 2 &&
          c.head_dim == 32 && c.n_vocab == 32000 && c.hidden_dim == 384 && c.ctx_train == 4096);
    CHECK(c.rope_theta == 500000.0f && c.rope_scaling == LB_ROPE_SCALE_LLAMA3 && c.rope_factor == 8.0f &&
          c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f && c.rope_orig_ctx == 1024);
    CHECK(x.tie_word_embeddings);

    CHECK(parse_cfg_file("synth-qwen2-bias", &c, &x, &err) == LB_OK, "%s", err.msg);
    CHECK(c.arch == LB_ARCH_QWEN2 && c.qkv_bias && c.rope_theta == 1e6f && c.dim == 192 && c.n_heads == 6 &&
          c.head_dim == 32 && c.n_kv_heads == 2 && c.rope_scaling == LB_ROPE_SCALE_NONE);
    CHECK(!x.tie_word_embeddings && x.bos_id == -1 && x.eos_id == -1, "null special ids read as absent");

    CHECK(parse_cfg_file("synth-bitnet", &c, &x, &err) == LB_OK, "out-of-vocab bos/eos only warn: %s", err.msg);
    CHECK(c.arch == LB_ARCH_BITNET && c.sub_norms && c.act == LB_ACT_RELU2 && c.rope_theta == 500000.0f && !c.qkv_bias &&
          c.dim == 256 && c.hidden_dim == 512 && c.n_layers == 3);
    CHECK(x.tie_word_embeddings && x.bos_id == -1 && x.eos_id == -1, "128000/128001 are outside vocab 512");

    CHECK(parse_cfg_file("tinystories-512d", &c, &x, &err) == LB_OK, "%s", err.msg);
    CHECK(c.dim == 512 && c.hidden_dim == 1536 && c.n_layers == 6 && c.n_heads == 8 && c.n_kv_heads == 4 &&
          c.head_dim == 64 && c.n_vocab == 512 && x.tie_word_embeddings);
}

/* Rewrites a config in the pre-rope_parameters spelling (top-level rope_theta + rope_scaling). */
static char *to_old_spelling(const char *json, const char *type_key) {
    cJSON *j = cJSON_Parse(json);
    cJSON *rp = cJSON_DetachItemFromObjectCaseSensitive(j, "rope_parameters");
    cJSON *theta = cJSON_DetachItemFromObjectCaseSensitive(rp, "rope_theta");
    cJSON *type = cJSON_DetachItemFromObjectCaseSensitive(rp, "rope_type");
    cJSON_AddItemToObject(j, "rope_theta", theta);
    if (strcmp(type->valuestring, "default") == 0) {
        cJSON_AddNullToObject(j, "rope_scaling");
        cJSON_Delete(type);
    } else {
        cJSON_AddItemToObject(rp, type_key, type);
        cJSON_AddItemToObject(j, "rope_scaling", cJSON_Duplicate(rp, 1));
    }
    cJSON_Delete(rp);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

static void check_old_spelling(void) {
    const char *models[] = {"synth-llama3-gqa", "synth-qwen2-bias", "synth-bitnet", "tinystories-512d"};
    for (size_t i = 0; i < 4; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s/config.json", LB_SHARED_DIR "/models", models[i]);
        char *t = read_text(p);
        if (!t) continue;
        lb_config a, b;
        lb_hf_extra xa, xb;
        lb_error err;
        CHECK(parse_str(t, &a, &xa, &err) == LB_OK, "%s", err.msg);
        for (int k = 0; k < 2; k++) {
            char *old = to_old_spelling(t, k ? "type" : "rope_type");
            CHECK(strstr(old, "rope_parameters") == NULL && strstr(old, "\"rope_theta\""));
            CHECK(parse_str(old, &b, &xb, &err) == LB_OK, "%s: %s", models[i], err.msg);
            CHECK(cfg_equal(&a, &b) && xa.tie_word_embeddings == xb.tie_word_embeddings, "%s: old spelling (%s) differs",
                  models[i], k ? "type" : "rope_type");
            free(old);
        }
        free(t);
    }
    /* linear scaling in both spellings */
    const char *base = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                       "\"num_attention_heads\":4,\"vocab_size\":100,";
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":2.0,\"rope_theta\":20000}}", base);
    snprintf(b, sizeof b, "%s\"rope_theta\":20000,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}", base);
    lb_config ca, cb;
    lb_error err;
    CHECK(parse_str(a, &ca, NULL, &err) == LB_OK && parse_str(b, &cb, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(cfg_equal(&ca, &cb) && ca.rope_scaling == LB_ROPE_SCALE_LINEAR && ca.rope_factor == 2.0f &&
          ca.rope_theta == 20000.0f);
    /* transformers' defaults for what a minimal llama config leaves out */
    snprintf(a, sizeof a, "%s\"x\":0}", base);
    lb_hf_extra x;
    CHECK(parse_str(a, &ca, &x, &err) == LB_OK, "%s", err.msg);
    CHECK(ca.n_kv_heads == 4 && ca.head_dim == 16 && ca.ctx_train == 2048 && fabsf(ca.norm_eps - 1e-6f) < 1e-13f &&
          ca.rope_theta == 10000.0f && ca.act == LB_ACT_SILU && !x.tie_word_embeddings && x.bos_id == -1);
    /* architectures names the model when model_type is absent */
    CHECK(parse_str("{\"architectures\":[\"BitNetForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}", &ca, NULL, &err) == LB_OK &&
          ca.arch == LB_ARCH_BITNET && ca.act == LB_ACT_RELU2 && ca.rope_theta == 500000.0f && ca.sub_norms);
    /* llama attention_bias turns on q/k/v biases; eos as a list takes its first id */
    snprintf(a, sizeof a, "%s\"attention_bias\":true,\"eos_token_id\":[7,9]}", base);
    CHECK(parse_str(a, &ca, &x, &err) == LB_OK && ca.qkv_bias && x.eos_id == 7);
}

/* Replaces (or with val NULL removes) one key of the llama3 config and expects an error. */
static void bad_key(const char *json, const char *key, const char *val, lb_status want, const char *needle) {
    cJSON *j = cJSON_Parse(json);
    cJSON *target = j;
    const char *k = key, *dot = strchr(key, '.');
    char parent[64];
    if (dot) {
        snprintf(parent, sizeof parent, "%.*s", (int)(dot - key), key);
        target = cJSON_GetObjectItemCaseSensitive(j, parent);
        k = dot + 1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(target, k);
    if (val) cJSON_AddItemToObject(target, k, cJSON_Parse(val));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    lb_config c;
    lb_error err = {0};
    lb_status st = parse_str(s, &c, NULL, &err);
    CHECK(st == want && strstr(err.msg, "dir/config.json") && strstr(err.msg, needle), "%s=%s -> %d: %s", key,
          val ? val : "(removed)", st, err.msg);
    free(s);
}

static void check_bad_configs(void) {
    char *t = read_text(LB_SHARED_DIR "/models/synth-llama3-gqa/config.json");
    if (!t) return;
    const char *required[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"};
    for (int i = 0; i < 5; i++) {
        bad_key(t, required[i], NULL, LB_ERR_FORMAT, required[i]);
        bad_key(t, required[i], "\"12\"", LB_ERR_FORMAT, required[i]);
        bad_key(t, required[i], "-4", LB_ERR_FORMAT, required[i]);
        bad_key(t, required[i], "1e300", LB_ERR_FORMAT, required[i]);
        bad_key(t, required[i], "2.5", LB_ERR_FORMAT, required[i]);
    }
    bad_key(t, "num_key_value_heads", "3", LB_ERR_FORMAT, "num_key_value_heads");
    bad_key(t, "num_key_value_heads", "8", LB_ERR_FORMAT, "num_key_value_heads");
    bad_key(t, "head_dim", "33", LB_ERR_FORMAT, "head_dim");
    bad_key(t, "head_dim", "[32]", LB_ERR_FORMAT, "head_dim");
    bad_key(t, "rms_norm_eps", "-1", LB_ERR_FORMAT, "rms_norm_eps");
    bad_key(t, "rms_norm_eps", "\"x\"", LB_ERR_FORMAT, "rms_norm_eps");
    bad_key(t, "max_position_embeddings", "0", LB_ERR_FORMAT, "max_position_embeddings");
    bad_key(t, "tie_word_embeddings", "\"yes\"", LB_ERR_FORMAT, "tie_word_embeddings");
    bad_key(t, "hidden_act", "\"tanh\"", LB_ERR_UNSUPPORTED, "hidden_act");
    bad_key(t, "hidden_act", "3", LB_ERR_FORMAT, "hidden_act");
    bad_key(t, "model_type", "\"gpt2\"", LB_ERR_UNSUPPORTED, "model_type");
    bad_key(t, "model_type", "1", LB_ERR_FORMAT, "model_type");
    bad_key(t, "mlp_bias", "true", LB_ERR_UNSUPPORTED, "mlp_bias");
    bad_key(t, "rope_parameters", "7", LB_ERR_FORMAT, "rope_parameters");
    bad_key(t, "rope_parameters.rope_type", "\"yarn\"", LB_ERR_UNSUPPORTED, "rope_parameters.rope_type");
    bad_key(t, "rope_parameters.factor", NULL, LB_ERR_FORMAT, "rope_parameters.factor");
    bad_key(t, "rope_parameters.original_max_position_embeddings", "-1", LB_ERR_FORMAT,
            "rope_parameters.original_max_position_embeddings");
    bad_key(t, "rope_parameters.high_freq_factor", "0.5", LB_ERR_FORMAT, "high_freq_factor");
    bad_key(t, "rope_parameters.rope_theta", "0", LB_ERR_FORMAT, "rope_parameters.rope_theta");
    bad_key(t, "rope_parameters.rope_theta", "1e-60", LB_ERR_FORMAT, "rope_parameters.rope_theta");
    free(t);
    lb_config c;
    lb_error err;
    CHECK(parse_str("{\"model_type\":", &c, NULL, &err) == LB_ERR_FORMAT && strstr(err.msg, "invalid JSON"));
    CHECK(parse_str("[1]", &c, NULL, &err) == LB_ERR_FORMAT && strstr(err.msg, "not a JSON object"));
    CHECK(parse_str("{}", &c, NULL, &err) == LB_ERR_FORMAT && strstr(err.msg, "model_type"));
    CHECK(lb_hf_parse_config("{\"model_type\":\"llama\"}", 5, "dir/config.json", &c, &err) == LB_ERR_FORMAT,
          "length is honoured");
}

/* ---- folders ---- */

static const char *shared_model(const char *model, const char *file) {
    static char p[4][512];
    static int k;
    char *r = p[k++ & 3];
    snprintf(r, 512, "%s/%s/%s", LB_SHARED_DIR "/models", model, file);
    return r;
}

/* A temp folder holding only config.json and model.safetensors of a shared model. */
static const char *weights_only(const char *model) {
    const char *d = fresh_dir(model);
    link_in(d, shared_model(model, "config.json"), "config.json");
    link_in(d, shared_model(model, "model.safetensors"), "model.safetensors");
    return d;
}

static lb_model *load_hf_bound(const char *dir, lb_error *err) {
    lb_model *m = lb_model_new();
    lb_status s = lb_load_hf(m, dir, err);
    if (!s) s = lb_model_bind(m, err);
    if (s) {
        lb_model_free(m);
        return NULL;
    }
    return m;
}

static void check_folders(void) {
    lb_error err;
    struct {
        const char *model;
        size_t n_tensors;
        int tied, bias, sub;
    } cases[] = {
        {"stories260K-hf", 47, 1, 0, 0},  {"synth-llama3-gqa", 38, 1, 0, 0}, {"synth-qwen2-bias", 39, 0, 1, 0},
        {"synth-bitnet", 35, 1, 0, 1},    {"tinystories-512d", 56, 1, 0, 0}, {"stories260K-ft-dogs", 47, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lb_model *m = load_hf_bound(weights_only(cases[i].model), &err);
        CHECK(m != NULL, "%s: %s", cases[i].model, err.msg);
        if (!m) continue;
        CHECK(strcmp(m->format, "hf") == 0 && m->tok == NULL && m->n_tensors == cases[i].n_tensors, "%s: %zu tensors",
              cases[i].model, m->n_tensors);
        CHECK((m->output == m->tok_embd) == cases[i].tied, "%s: tied", cases[i].model);
        CHECK((m->layers[0].bq != NULL && m->layers[0].bv != NULL) == cases[i].bias, "%s: biases", cases[i].model);
        CHECK((m->layers[0].attn_sub_norm && m->layers[m->cfg.n_layers - 1].ffn_sub_norm) == cases[i].sub, "%s: sub norms",
              cases[i].model);
        /* tensors point into the mapping, byte-identical to the file's */
        lb_safetensors *st;
        if (lb_safetensors_open(shared_model(cases[i].model, "model.safetensors"), &st, &err) == LB_OK) {
            const lb_st_tensor *e = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "model.layers.1.mlp.down_proj.weight"));
            const lb_tensor *t = lb_model_find_tensor(m, "blk.1.ffn_down.weight");
            CHECK(t && e && t->nbytes == e->nbytes && memcmp(t->data, e->data, e->nbytes) == 0 &&
                      t->ne[0] == m->cfg.hidden_dim && t->ne[1] == m->cfg.dim,
                  "%s: ffn_down", cases[i].model);
            lb_safetensors_close(st);
        }
        lb_model_free(m);
    }

    /* tie_word_embeddings absent means untied (transformers' default): lm_head is required */
    const char *d = fresh_dir("untied");
    char *t = read_text(shared_model("synth-llama3-gqa", "config.json"));
    cJSON *j = cJSON_Parse(t);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "tie_word_embeddings");
    char *js = cJSON_Print(j);
    write_text(d, "config.json", js);
    link_in(d, shared_model("synth-llama3-gqa", "model.safetensors"), "model.safetensors");
    lb_model *m = lb_model_new();
    CHECK(lb_load_hf(m, d, &err) == LB_ERR_FORMAT && strstr(err.msg, "lm_head.weight"), "%s", err.msg);
    lb_model_free(m);
    free(js);
    cJSON_Delete(j);

    /* a config with fewer layers than the file holds */
    cJSON_ReplaceItemInObjectCaseSensitive(j = cJSON_Parse(t), "num_hidden_layers", cJSON_CreateNumber(2));
    js = cJSON_Print(j);
    d = fresh_dir("fewer");
    write_text(d, "config.json", js);
    link_in(d, shared_model("synth-llama3-gqa", "model.safetensors"), "model.safetensors");
    m = lb_model_new();
    CHECK(lb_load_hf(m, d, &err) == LB_ERR_FORMAT && strstr(err.msg, "num_hidden_layers"), "%s", err.msg);
    lb_model_free(m);
    free(js);
    cJSON_Delete(j);
    free(t);

    /* missing pieces */
    d = fresh_dir("empty");
    m = lb_model_new();
    CHECK(lb_load_hf(m, d, &err) == LB_ERR_IO && strstr(err.msg, "config.json"), "%s", err.msg);
    lb_model_free(m);
    link_in(d, shared_model("synth-llama3-gqa", "config.json"), "config.json");
    m = lb_model_new();
    CHECK(lb_load_hf(m, d, &err) == LB_ERR_IO && strstr(err.msg, "model.safetensors"), "%s", err.msg);
    lb_model_free(m);

    /* chat templates: tokenizer_config.json string, list form, and chat_template.jinja */
    d = weights_only("stories260K-hf");
    write_text(d, "tokenizer_config.json", "{\"chat_template\":\"{% for m in messages %}{{ m.content }}{% endfor %}\"}");
    m = load_hf_bound(d, &err);
    CHECK(m && m->chat_template && strcmp(m->chat_template, "{% for m in messages %}{{ m.content }}{% endfor %}") == 0);
    lb_model_free(m);
    write_text(d, "tokenizer_config.json",
               "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},{\"name\":\"default\",\"template\":\"D\"}]}");
    m = load_hf_bound(d, &err);
    CHECK(m && m->chat_template && strcmp(m->chat_template, "D") == 0);
    lb_model_free(m);
    write_text(d, "tokenizer_config.json", "{\"add_bos_token\":true}");
    write_text(d, "chat_template.jinja", "J{{ x }}");
    m = load_hf_bound(d, &err);
    CHECK(m && m->chat_template && strcmp(m->chat_template, "J{{ x }}") == 0);
    lb_model_free(m);
    write_text(d, "tokenizer_config.json", "{\"chat_template\":");
    m = lb_model_new();
    CHECK(lb_load_hf(m, d, &err) == LB_ERR_FORMAT && strstr(err.msg, "tokenizer_config.json"), "%s", err.msg);
    lb_model_free(m);
}

/* Splits stories260K-hf into two shards with our writer and loads them through an index. */
static void check_sharded(void) {
    lb_error err;
    lb_safetensors *st;
    if (lb_safetensors_open(shared_model("stories260K-hf", "model.safetensors"), &st, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const char *d = fresh_dir("sharded");
    link_in(d, shared_model("stories260K-hf", "config.json"), "config.json");
    lb_safetensors_writer *w[2];
    lb_safetensors_writer_new(&w[0], &err);
    lb_safetensors_writer_new(&w[1], &err);
    const char *shard[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
    size_t n = lb_safetensors_count(st);
    for (size_t i = 0; i < n; i++) {
        const lb_st_tensor *t = lb_safetensors_info(st, i);
        int k = i * 2 >= n;
        lb_safetensors_writer_add(w[k], t->name, t->dtype, t->n_dims, t->shape, t->data, &err);
        cJSON_AddStringToObject(wm, t->name, shard[k]);
    }
    for (int k = 0; k < 2; k++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", d, shard[k]);
        CHECK(lb_safetensors_writer_write(w[k], p, &err) == LB_OK, "%s", err.msg);
        lb_safetensors_writer_free(w[k]);
    }
    char *js = cJSON_Print(idx);
    write_text(d, "model.safetensors.index.json", js);
    free(js);

    lb_model *a = load_hf_bound(d, &err), *b = load_hf_bound(weights_only("stories260K-hf"), &err);
    CHECK(a && b, "%s", err.msg);
    if (a && b) {
        CHECK(a->n_maps == 2 && a->n_tensors == b->n_tensors);
        int same = 1;
        for (size_t i = 0; i < b->n_tensors; i++) {
            const lb_tensor *x = &b->tensors[i], *y = lb_model_find_tensor(a, x->name);
            if (!y || y->nbytes != x->nbytes || memcmp(x->data, y->data, x->nbytes) != 0) same = 0;
        }
        CHECK(same, "sharded and single-file models hold the same tensors");
    }
    lb_model_free(a);
    lb_model_free(b);

    /* an index promising a tensor its shard lacks; a shard outside the folder; a missing shard */
    d = "sharded";
    struct {
        const char *name, *file, *needle;
        lb_status want;
    } bad[] = {
        {"model.layers.9.mlp.up_proj.weight", NULL, "num_hidden_layers", LB_ERR_FORMAT},
        {"model.norm.weight", "../x.safetensors", "not a file name", LB_ERR_FORMAT},
        {"model.norm.weight", "missing.safetensors", "missing.safetensors", LB_ERR_IO},
        {"model.layers.0.self_attn.q_proj.weight", "model-00002-of-00002.safetensors", "not in its shard", LB_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cJSON *copy = cJSON_Duplicate(idx, 1);
        cJSON *cwm = cJSON_GetObjectItemCaseSensitive(copy, "weight_map");
        cJSON_DeleteItemFromObjectCaseSensitive(cwm, bad[i].name);
        cJSON_AddStringToObject(cwm, bad[i].name, bad[i].file ? bad[i].file : shard[0]);
        js = cJSON_Print(copy);
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", g_tmp, d);
        write_text(dir, "model.safetensors.index.json", js);
        free(js);
        cJSON_Delete(copy);
        lb_model *m = lb_model_new();
        lb_status s = lb_load_hf(m, dir, &err);
        CHECK(s == bad[i].want && strstr(err.msg, bad[i].needle), "bad index %zu: %d %s", i, s, err.msg);
        lb_model_free(m);
    }
    cJSON_Delete(idx);
    lb_safetensors_close(st);
}

/* ---- llama2.c ---- */

static void check_llama2c(void) {
    lb_error err;
    const char *bin = shared_model("stories260K-llama2c", "stories260K.bin");
    const char *d = fresh_dir("l2c");
    char path[512];
    snprintf(path, sizeof path, "%s/stories260K.bin", d);
    link_in(d, bin, "stories260K.bin"); /* no tokenizer beside it */
    lb_model *m = lb_model_new();
    lb_status s = lb_load_llama2c(m, path, NULL, &err);
    if (!s) s = lb_model_bind(m, &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (!s) {
        const lb_config *c = &m->cfg;
        CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4 &&
              c->n_vocab == 512 && c->ctx_train == 512 && c->head_dim == 8 && c->rope_layout == LB_ROPE_NORM &&
              c->rope_theta == 10000.0f && c->act == LB_ACT_SILU);
        CHECK(strcmp(m->format, "llama2c") == 0 && m->tok == NULL && m->output == m->tok_embd && m->n_tensors == 2 + 9 * 5);
        CHECK(m->layers[2].wk->ne[0] == 64 && m->layers[2].wk->ne[1] == 32 && m->layers[4].w_down->ne[0] == 172);
        /* the same weights as the HF copy, apart from the permuted q/k rows */
        lb_model *h = load_hf_bound(weights_only("stories260K-hf"), &err);
        if (h) {
            const char *names[] = {"token_embd.weight", "blk.3.ffn_gate.weight", "blk.3.ffn_up.weight", "blk.4.ffn_down.weight",
                                   "blk.0.attn_v.weight", "blk.2.attn_output.weight", "blk.1.attn_norm.weight", "output_norm.weight"};
            for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
                const lb_tensor *x = lb_model_find_tensor(m, names[i]), *y = lb_model_find_tensor(h, names[i]);
                CHECK(x && y && x->nbytes == y->nbytes && x->ne[0] == y->ne[0] && x->ne[1] == y->ne[1] &&
                          memcmp(x->data, y->data, x->nbytes) == 0,
                      "%s equals the HF copy", names[i]);
            }
            lb_model_free(h);
        }
    }
    lb_model_free(m);

    /* an explicit tokenizer that does not exist */
    m = lb_model_new();
    CHECK(lb_load_llama2c(m, path, "/nonexistent/tok.bin", &err) == LB_ERR_IO && strstr(err.msg, "/nonexistent/tok.bin"));
    lb_model_free(m);

    /* truncated copies: inside the header, and one byte short of each section's end */
    lb_mapfile mf;
    if (lb_mapfile_open(bin, &mf, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    size_t cuts[64], nc = 0, dim = 64, L = 5, kv = 32, hid = 172, V = 512, seq = 512;
    size_t sec[] = {V * dim, L * dim, L * dim * dim, L * kv * dim, L * kv * dim, L * dim * dim, L * dim,
                    L * hid * dim, L * hid * dim, L * hid * dim, dim, seq * 4, seq * 4};
    for (size_t k = 0; k < 28; k += 3) cuts[nc++] = k;
    size_t off = 28;
    for (size_t i = 0; i < sizeof sec / sizeof *sec; i++) {
        off += sec[i] * 4;
        cuts[nc++] = off - 1;
    }
    CHECK(off == mf.size, "section sizes add up to the file (%zu vs %zu)", off, mf.size);
    snprintf(path, sizeof path, "%s/cut.bin", d);
    int bad = 0;
    for (size_t i = 0; i < nc; i++) {
        FILE *f = fopen(path, "wb");
        fwrite(mf.data, 1, cuts[i], f);
        fclose(f);
        m = lb_model_new();
        s = lb_load_llama2c(m, path, NULL, &err);
        if (s != LB_ERR_FORMAT || !strstr(err.msg, "cut.bin")) bad++, fprintf(stderr, "cut %zu: %d %s\n", cuts[i], s, err.msg);
        lb_model_free(m);
    }
    CHECK(bad == 0, "%d truncated checkpoints accepted", bad);

    /* negative vocab: an unshared classifier follows the RoPE tables */
    FILE *f = fopen(path, "wb");
    int32_t hdr[7];
    memcpy(hdr, mf.data, 28);
    hdr[5] = -hdr[5];
    fwrite(hdr, 4, 7, f);
    fwrite(mf.data + 28, 1, mf.size - 28, f);
    fwrite(mf.data + 28, 1, V * dim * 4, f); /* wcls = a copy of the embedding */
    fclose(f);
    m = lb_model_new();
    s = lb_load_llama2c(m, path, NULL, &err);
    if (!s) s = lb_model_bind(m, &err);
    CHECK(s == LB_OK && m->output != m->tok_embd && m->cfg.n_vocab == 512 &&
              memcmp(m->output->data, m->tok_embd->data, V * dim * 4) == 0, "%s", err.msg);
    lb_model_free(m);
    /* ... and without it the file is short */
    f = fopen(path, "wb");
    fwrite(hdr, 4, 7, f);
    fwrite(mf.data + 28, 1, mf.size - 28, f);
    fclose(f);
    m = lb_model_new();
    CHECK(lb_load_llama2c(m, path, NULL, &err) == LB_ERR_FORMAT && strstr(err.msg, "unshared"), "%s", err.msg);
    lb_model_free(m);
    /* absurd header values */
    int32_t evil[][7] = {{0, 1, 1, 1, 1, 1, 1}, {64, 172, 5, 8, 4, INT32_MIN, 512}, {64, 172, 5, 7, 7, 512, 512},
                         {64, 172, 5, 8, 3, 512, 512}, {1 << 20, 1 << 22, 4096, 1, 1, 1 << 24, 1 << 24}};
    for (size_t i = 0; i < sizeof evil / sizeof *evil; i++) {
        f = fopen(path, "wb");
        fwrite(evil[i], 4, 7, f);
        fwrite(mf.data + 28, 1, 4096, f);
        fclose(f);
        m = lb_model_new();
        CHECK(lb_load_llama2c(m, path, NULL, &err) == LB_ERR_FORMAT, "evil header %zu: %s", i, err.msg);
        lb_model_free(m);
    }
    lb_mapfile_close(&mf);
}

/* sliding_window as transformers reads it: Mistral's always (null: none), Qwen2's only with
 * use_sliding_window and on every layer, never Llama's. */
static void check_sliding_window(void) {
    static const struct { const char *extra; int want; lb_status st; } cases[] = {
        {"\"model_type\":\"mistral\",\"sliding_window\":4096", 4096, LB_OK},
        {"\"model_type\":\"mistral\",\"sliding_window\":null", 0, LB_OK},
        {"\"model_type\":\"mistral\"", 0, LB_OK},
        {"\"model_type\":\"mistral\",\"sliding_window\":0", 0, LB_ERR_FORMAT},
        {"\"model_type\":\"mistral\",\"sliding_window\":\"4096\"", 0, LB_ERR_FORMAT},
        {"\"model_type\":\"llama\",\"sliding_window\":4096", 0, LB_OK},
        {"\"model_type\":\"qwen2\",\"sliding_window\":4096", 0, LB_OK},
        {"\"model_type\":\"qwen2\",\"sliding_window\":4096,\"use_sliding_window\":false", 0, LB_OK},
        {"\"model_type\":\"qwen2\",\"sliding_window\":4096,\"use_sliding_window\":true,\"max_window_layers\":0", 4096, LB_OK},
        {"\"model_type\":\"qwen2\",\"sliding_window\":4096,\"use_sliding_window\":true,\"max_window_layers\":2", 0, LB_OK},
        {"\"model_type\":\"qwen2\",\"sliding_window\":4096,\"use_sliding_window\":true,\"max_window_layers\":1", 0,
         LB_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char js[512];
        snprintf(js, sizeof js, "{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                 "\"num_attention_heads\":4,\"vocab_size\":512,%s}", cases[i].extra);
        lb_config c;
        lb_error err = {0};
        lb_status st = parse_str(js, &c, NULL, &err);
        CHECK(st == cases[i].st && (st || c.sliding_window == cases[i].want) && (!st || strstr(err.msg, "sliding_window")),
              "%s -> %d (window %d): %s", cases[i].extra, st, st ? -1 : c.sliding_window, err.msg);
    }
}

int main(void) {
    lb_log_set_level(LB_LOG_ERROR);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lb_test_hf_%d", (int)getpid());
    mkdir(g_tmp, 0755);
    check_shared_configs();
    check_old_spelling();
    check_bad_configs();
    check_sliding_window();
    check_folders();
    check_sharded();
    check_llama2c();
    rm_rf(g_tmp);
    return test_summary();
}
