/* Hugging Face model folder: config.json, model.safetensors or a sharded
 * model.safetensors.index.json, optional tokenizer and chat template. Tensors are renamed to
 * GGUF names and point into the mapped shards (no copies). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/model.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

#define HF_MAX_JSON ((size_t)64 << 20)

/* present (not a folder): a FIFO or device named like a model file is opened and refused with
 * a message naming it, never silently skipped */
static int is_file(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

static int file_in(const char *dir, const char *name) {
    char *p = lb_path_join(dir, name);
    int ok = is_file(p);
    free(p);
    return ok;
}

/* HF suffix under model.layers.N. -> GGUF suffix under blk.N. (NULL: refuse the tensor). */
static const struct {
    const char *hf, *gguf;
} g_layer_names[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.attn_sub_norm.weight", "attn_sub_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.ffn_sub_norm.weight", "ffn_sub_norm.weight"},
    /* present in some checkpoints, but the graph has no slot: refusing beats ignoring */
    {"self_attn.o_proj.bias", NULL},
    {"mlp.gate_proj.bias", NULL},
    {"mlp.up_proj.bias", NULL},
    {"mlp.down_proj.bias", NULL},
};

typedef enum { MAP_SKIP = 0, MAP_OK, MAP_REFUSE, MAP_BAD_LAYER } map_result;

/* Renames an HF tensor; unknown names (rotary inv_freq, ...) are skipped. */
static map_result hf_to_gguf(const char *hf, int n_layers, int tied, char *out, size_t cap) {
    if (strcmp(hf, "model.embed_tokens.weight") == 0) return snprintf(out, cap, "token_embd.weight"), MAP_OK;
    if (strcmp(hf, "model.norm.weight") == 0) return snprintf(out, cap, "output_norm.weight"), MAP_OK;
    if (strcmp(hf, "lm_head.weight") == 0) return tied ? MAP_SKIP : (snprintf(out, cap, "output.weight"), MAP_OK);
    static const char pre[] = "model.layers.";
    if (strncmp(hf, pre, sizeof pre - 1) != 0) return MAP_SKIP;
    const char *p = hf + sizeof pre - 1;
    long layer = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 7; p++, digits++) layer = layer * 10 + (*p - '0');
    if (!digits || *p != '.') return MAP_SKIP;
    p++;
    for (size_t i = 0; i < sizeof g_layer_names / sizeof *g_layer_names; i++) {
        if (strcmp(p, g_layer_names[i].hf) != 0) continue;
        if (!g_layer_names[i].gguf) return MAP_REFUSE;
        if (layer >= n_layers) return MAP_BAD_LAYER;
        snprintf(out, cap, "blk.%ld.%s", layer, g_layer_names[i].gguf);
        return MAP_OK;
    }
    return MAP_SKIP;
}

/* Maps one safetensors file and adds its (renamed) tensors to the model. With an index
 * (wm), only the tensors it assigns to this shard (file name shard) are taken. */
static lb_status add_shard(lb_model *m, const char *path, int tied, const cJSON *wm, const char *shard, lb_error *err) {
    const lb_mapfile *mf;
    lb_status s = lb_model_add_map(m, path, &mf, err);
    if (s) return s;
    lb_safetensors *st;
    if ((s = lb_safetensors_parse(mf->data, mf->size, path, &st, err))) return s;
    for (size_t i = 0; i < lb_safetensors_count(st) && !s; i++) {
        const lb_st_tensor *info = lb_safetensors_info(st, i);
        if (wm) {
            const cJSON *owner = cJSON_GetObjectItemCaseSensitive(wm, info->name);
            if (!cJSON_IsString(owner) || strcmp(owner->valuestring, shard) != 0) continue;
        }
        char name[96];
        switch (hf_to_gguf(info->name, m->cfg.n_layers, tied, name, sizeof name)) {
        case MAP_SKIP: continue;
        case MAP_REFUSE:
            s = lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tensor %s: this bias is not supported", path, info->name);
            continue;
        case MAP_BAD_LAYER:
            s = lb_fail(err, LB_ERR_FORMAT, "%s: tensor %s: layer beyond num_hidden_layers %d in config.json", path,
                        info->name, m->cfg.n_layers);
            continue;
        case MAP_OK: break;
        }
        lb_tensor t;
        if ((s = lb_safetensors_get(st, i, &t, err))) continue;
        s = lb_model_add_tensor(m, name, t.type, t.n_dims, t.ne, t.data, t.nbytes, err);
    }
    lb_safetensors_close(st);
    return s;
}

/* A shard file name from an index must stay inside the model folder. */
static int safe_shard_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static lb_status load_sharded(lb_model *m, const char *dir, const char *index_path, int tied, lb_error *err) {
    char *txt;
    size_t len;
    lb_status s = lb_read_file(index_path, HF_MAX_JSON, &txt, &len, err);
    if (s) return s;
    cJSON *root = cJSON_ParseWithLength(txt, len);
    free(txt);
    if (!root) return lb_fail(err, LB_ERR_FORMAT, "%s: invalid JSON", index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        cJSON_Delete(root);
        return lb_fail(err, LB_ERR_FORMAT, "%s: weight_map is missing, empty or not an object", index_path);
    }
    for (const cJSON *e = wm->child; e && !s; e = e->next) {
        if (!cJSON_IsString(e) || !safe_shard_name(e->valuestring)) {
            s = lb_fail(err, LB_ERR_FORMAT, "%s: weight_map entry %.128s is not a file name in this folder", index_path,
                        e->string);
            break;
        }
        int seen = 0; /* load each shard once, in first-mention order */
        for (const cJSON *f = wm->child; f != e && !seen; f = f->next) seen = strcmp(f->valuestring, e->valuestring) == 0;
        if (seen) continue;
        char *shard = lb_path_join(dir, e->valuestring);
        s = shard ? add_shard(m, shard, tied, wm, e->valuestring, err) : lb_fail(err, LB_ERR_NOMEM, "out of memory");
        free(shard);
    }
    /* every tensor the index promises must have been found in its shard */
    for (const cJSON *e = wm->child; e && !s; e = e->next) {
        char name[96];
        map_result r = hf_to_gguf(e->string, m->cfg.n_layers, tied, name, sizeof name);
        if (r == MAP_BAD_LAYER)
            s = lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: layer beyond num_hidden_layers %d in config.json",
                        index_path, e->string, m->cfg.n_layers);
        else if (r == MAP_OK && !lb_model_find_tensor(m, name))
            s = lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s is not in its shard %.128s", index_path, e->string,
                        e->valuestring);
    }
    cJSON_Delete(root);
    return s;
}

/* chat_template from tokenizer_config.json (a string, or a list of {name, template}), else
 * from chat_template.jinja, where newer transformers versions keep it. */
static lb_status load_chat_template(lb_model *m, const char *dir, lb_error *err) {
    char *path = lb_path_join(dir, "tokenizer_config.json"), *txt = NULL;
    size_t len;
    lb_status s = LB_OK;
    if (!path) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (is_file(path)) {
        if ((s = lb_read_file(path, HF_MAX_JSON, &txt, &len, err))) goto out;
        cJSON *root = cJSON_ParseWithLength(txt, len);
        if (!root || !cJSON_IsObject(root)) {
            cJSON_Delete(root);
            s = lb_fail(err, LB_ERR_FORMAT, "%s: invalid JSON or not an object", path);
            goto out;
        }
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
        const char *tpl = NULL;
        if (cJSON_IsString(ct)) tpl = ct->valuestring;
        for (const cJSON *e = cJSON_IsArray(ct) ? ct->child : NULL; e; e = e->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name"), *t = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (!cJSON_IsString(t)) continue;
            if (!tpl || (cJSON_IsString(nm) && strcmp(nm->valuestring, "default") == 0)) tpl = t->valuestring;
        }
        if (tpl && !(m->chat_template = strdup(tpl))) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        cJSON_Delete(root);
        if (s || m->chat_template) goto out;
    }
    free(path);
    path = lb_path_join(dir, "chat_template.jinja");
    if (is_file(path)) s = lb_read_file(path, HF_MAX_JSON, &m->chat_template, &len, err);
out:
    free(txt);
    free(path);
    return s;
}

lb_status lb_load_hf(lb_model *m, const char *dir, lb_error *err) { return lb_load_hf_weights(m, dir, NULL, err); }

/* weights: a single weights file to use instead of the folder's own (e.g. a .lbz of it). */
lb_status lb_load_hf_weights(lb_model *m, const char *dir, const char *weights, lb_error *err) {
    snprintf(m->format, sizeof m->format, "hf");
    if (!m->path && !(m->path = strdup(dir))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    char *cfg_path = lb_path_join(dir, "config.json"), *txt = NULL;
    if (!cfg_path) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    size_t len;
    lb_hf_extra extra;
    lb_status s = lb_read_file(cfg_path, HF_MAX_JSON, &txt, &len, err);
    if (!s) s = lb_hf_parse_config_ex(txt, len, cfg_path, &m->cfg, &extra, err);
    free(txt);
    free(cfg_path);
    if (s) return s;

    char *index = lb_path_join(dir, "model.safetensors.index.json"), *single = lb_path_join(dir, "model.safetensors");
    if (single && !weights && !is_file(single) && !is_file(index)) { /* a compressed copy in its place */
        free(single);
        single = lb_path_join(dir, "model.safetensors.lbz");
    }
    if (!index || !single) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    else if (weights) s = add_shard(m, weights, extra.tie_word_embeddings, NULL, NULL, err);
    else if (is_file(index)) s = load_sharded(m, dir, index, extra.tie_word_embeddings, err);
    else if (is_file(single)) s = add_shard(m, single, extra.tie_word_embeddings, NULL, NULL, err);
    else s = lb_fail(err, LB_ERR_IO, "%s: no model.safetensors (or .lbz) or model.safetensors.index.json", dir);
    free(index);
    free(single);
    if (s) return s;
    if (!extra.tie_word_embeddings && !lb_model_find_tensor(m, "output.weight"))
        return lb_fail(err, LB_ERR_FORMAT, "%s: lm_head.weight is missing and config.json sets tie_word_embeddings false", dir);

    /* A folder without tokenizer files is fine (the synth-* references); a broken one is not. */
    if (file_in(dir, "tokenizer.json") || file_in(dir, "tokenizer.model")) {
        if ((s = lb_tokenizer_load_path(dir, m->cfg.n_vocab, &m->tok, err))) return s;
    }
    return load_chat_template(m, dir, err);
}
