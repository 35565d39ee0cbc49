#include "io/hf_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

/* transformers' defaults for keys a config may leave out */
typedef struct arch_defaults {
    const char *model_type, *class_name;
    lb_arch arch;
    int32_t max_pos;
    float eps, theta;
    lb_act act;
} arch_defaults;

static const arch_defaults g_archs[] = {
    {"llama", "LlamaForCausalLM", LB_ARCH_LLAMA, 2048, 1e-6f, 10000.0f, LB_ACT_SILU},
    {"mistral", "MistralForCausalLM", LB_ARCH_MISTRAL, 4096 * 32, 1e-6f, 10000.0f, LB_ACT_SILU},
    {"qwen2", "Qwen2ForCausalLM", LB_ARCH_QWEN2, 32768, 1e-6f, 10000.0f, LB_ACT_SILU},
    {"bitnet", "BitNetForCausalLM", LB_ARCH_BITNET, 2048, 1e-5f, 500000.0f, LB_ACT_RELU2},
};

typedef struct ctx {
    const char *name;
    lb_error *err;
} ctx;

/* NULL for a key that is absent or null: both mean "use the default". */
static const cJSON *item(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Integer key in [lo, hi]; required keys fail when absent, optional ones keep *out. */
static lb_status get_int(ctx *c, const cJSON *o, const char *prefix, const char *key, int required, int64_t lo,
                         int64_t hi, int32_t *out) {
    const cJSON *v = item(o, key);
    if (!v) {
        if (!required) return LB_OK;
        return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s%s is missing", c->name, prefix, key);
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s%s must be an integer from %lld to %lld", c->name, prefix, key,
                       (long long)lo, (long long)hi);
    *out = (int32_t)d;
    return LB_OK;
}

/* Positive finite float key, below hi. */
static lb_status get_float(ctx *c, const cJSON *o, const char *prefix, const char *key, int required, double hi,
                           float *out) {
    const cJSON *v = item(o, key);
    if (!v) {
        if (!required) return LB_OK;
        return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s%s is missing", c->name, prefix, key);
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d > 0 && d < hi) || !((float)d > 0))
        return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s%s must be a positive number below %g", c->name, prefix, key, hi);
    *out = (float)d;
    return LB_OK;
}

static lb_status get_bool(ctx *c, const cJSON *o, const char *key, bool *out) {
    const cJSON *v = item(o, key);
    if (!v) return LB_OK;
    if (!cJSON_IsBool(v)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s must be true or false", c->name, key);
    *out = cJSON_IsTrue(v);
    return LB_OK;
}

static lb_status find_arch(ctx *c, const cJSON *root, const arch_defaults **out) {
    const cJSON *mt = item(root, "model_type");
    if (mt) {
        if (!cJSON_IsString(mt)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: model_type is not a string", c->name);
        for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++)
            if (strcmp(mt->valuestring, g_archs[i].model_type) == 0) return *out = &g_archs[i], LB_OK;
        return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: model_type \"%.64s\" is not supported (llama, mistral, qwen2, bitnet)",
                       c->name, mt->valuestring);
    }
    const cJSON *ar = item(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(ar) ? ar->child : NULL;
    if (!a0) return lb_fail(c->err, LB_ERR_FORMAT, "%s: model_type is missing (and no architectures list)", c->name);
    if (!cJSON_IsString(a0)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: architectures[0] is not a string", c->name);
    for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++)
        if (strcmp(a0->valuestring, g_archs[i].class_name) == 0) return *out = &g_archs[i], LB_OK;
    return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: architectures[0] \"%.64s\" is not supported", c->name, a0->valuestring);
}

/* Reads rope type and scaling parameters from rope_parameters (new) or rope_scaling (old). */
static lb_status parse_rope_params(ctx *c, const cJSON *rp, const char *prefix, lb_config *cfg) {
    const cJSON *ty = item(rp, "rope_type");
    char key[48];
    snprintf(key, sizeof key, "%srope_type", prefix);
    if (!ty) {
        ty = item(rp, "type");
        snprintf(key, sizeof key, "%stype", prefix);
    }
    const char *type = "default";
    if (ty) {
        if (!cJSON_IsString(ty)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: %s is not a string", c->name, key);
        type = ty->valuestring;
    }
    lb_status s;
    if (strcmp(type, "default") == 0) {
        cfg->rope_scaling = LB_ROPE_SCALE_NONE;
        return LB_OK;
    }
    if (strcmp(type, "linear") == 0) {
        cfg->rope_scaling = LB_ROPE_SCALE_LINEAR;
        return get_float(c, rp, prefix, "factor", 1, 1e6, &cfg->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        cfg->rope_scaling = LB_ROPE_SCALE_LLAMA3;
        if ((s = get_float(c, rp, prefix, "factor", 1, 1e6, &cfg->rope_factor)) ||
            (s = get_float(c, rp, prefix, "low_freq_factor", 1, 1e6, &cfg->rope_low_freq_factor)) ||
            (s = get_float(c, rp, prefix, "high_freq_factor", 1, 1e6, &cfg->rope_high_freq_factor)) ||
            (s = get_int(c, rp, prefix, "original_max_position_embeddings", 1, 1, INT32_MAX, &cfg->rope_orig_ctx)))
            return s;
        if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
            return lb_fail(c->err, LB_ERR_FORMAT, "%s: %shigh_freq_factor must be greater than low_freq_factor", c->name, prefix);
        return LB_OK;
    }
    return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: %s \"%.32s\" is not supported (default, linear, llama3)", c->name, key, type);
}

static lb_status parse_rope(ctx *c, const cJSON *root, lb_config *cfg) {
    lb_status s;
    if ((s = get_float(c, root, "", "rope_theta", 0, 1e12, &cfg->rope_theta))) return s;
    const cJSON *rp = item(root, "rope_parameters");
    if (rp) {
        if (!cJSON_IsObject(rp)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: rope_parameters is not an object", c->name);
        if ((s = get_float(c, rp, "rope_parameters.", "rope_theta", 0, 1e12, &cfg->rope_theta))) return s;
        return parse_rope_params(c, rp, "rope_parameters.", cfg);
    }
    const cJSON *rs = item(root, "rope_scaling");
    if (!rs) return LB_OK;
    if (!cJSON_IsObject(rs)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: rope_scaling is not an object", c->name);
    return parse_rope_params(c, rs, "rope_scaling.", cfg);
}

static lb_status parse_act(ctx *c, const cJSON *root, lb_config *cfg) {
    const cJSON *v = item(root, "hidden_act");
    if (!v) return LB_OK;
    if (!cJSON_IsString(v)) return lb_fail(c->err, LB_ERR_FORMAT, "%s: hidden_act is not a string", c->name);
    const char *a = v->valuestring;
    if (strcmp(a, "silu") == 0 || strcmp(a, "swish") == 0) cfg->act = LB_ACT_SILU;
    else if (strcmp(a, "relu2") == 0) cfg->act = LB_ACT_RELU2;
    else if (strcmp(a, "gelu") == 0) cfg->act = LB_ACT_GELU;
    else return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: hidden_act \"%.32s\" is not supported (silu, relu2, gelu)", c->name, a);
    return LB_OK;
}

/* bos/eos: an id, a list of ids (first taken) or null. Bad values warn and read as absent:
 * published configs carry ids outside their vocabulary. */
static int32_t special_id(ctx *c, const cJSON *root, const char *key, int32_t n_vocab) {
    const cJSON *v = item(root, key);
    if (v && cJSON_IsArray(v)) v = v->child;
    if (!v) return -1;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= 0 && d < n_vocab) || d != floor(d)) {
        lb_warn("%s: %s is not an id in the vocabulary of %d; ignored", c->name, key, n_vocab);
        return -1;
    }
    return (int32_t)d;
}

/* sliding_window (null or absent: none), as transformers reads it: Mistral always; Qwen2 only
 * with use_sliding_window true (false by default; its configs carry a window they do not use),
 * and then from layer max_window_layers on: a window on some layers but not others is refused
 * rather than run wrong; Llama and BitNet have no window. */
static lb_status parse_window(ctx *c, const cJSON *root, lb_config *cfg) {
    bool use = cfg->arch == LB_ARCH_MISTRAL;
    lb_status s = cfg->arch == LB_ARCH_QWEN2 ? get_bool(c, root, "use_sliding_window", &use) : LB_OK;
    if (s || !use) return s;
    if ((s = get_int(c, root, "", "sliding_window", 0, 1, INT32_MAX, &cfg->sliding_window)) || !cfg->sliding_window) return s;
    int32_t from = 0;
    if (cfg->arch == LB_ARCH_QWEN2 && (s = get_int(c, root, "", "max_window_layers", 0, 0, INT32_MAX, &from))) return s;
    if (from >= cfg->n_layers) cfg->sliding_window = 0; /* no layer reaches it */
    else if (from > 0)
        return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: sliding_window on layers %d.. only (max_window_layers) is not supported",
                       c->name, from);
    return LB_OK;
}

static lb_status parse_root(ctx *c, const cJSON *root, lb_config *cfg, lb_hf_extra *extra) {
    const arch_defaults *ad = NULL;
    lb_status s;
    if ((s = find_arch(c, root, &ad))) return s;
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = ad->arch;
    cfg->ctx_train = ad->max_pos;
    cfg->norm_eps = ad->eps;
    cfg->rope_theta = ad->theta;
    cfg->rope_layout = LB_ROPE_NEOX; /* HF checkpoints use rotate_half */
    cfg->rope_freq_type = LB_F32;
    for (int i = 0; i < 2; i++) { /* "dtype" (transformers 5) or "torch_dtype" */
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, i ? "torch_dtype" : "dtype");
        if (!cJSON_IsString(dt)) continue;
        if (!strcmp(dt->valuestring, "bfloat16")) cfg->rope_freq_type = LB_BF16;
        else if (!strcmp(dt->valuestring, "float16")) cfg->rope_freq_type = LB_F16;
        break;
    }
    cfg->act = ad->act;
    cfg->rope_factor = cfg->rope_low_freq_factor = cfg->rope_high_freq_factor = 1.0f;
    if ((s = get_int(c, root, "", "hidden_size", 1, 1, 1 << 20, &cfg->dim)) ||
        (s = get_int(c, root, "", "intermediate_size", 1, 1, 1 << 22, &cfg->hidden_dim)) ||
        (s = get_int(c, root, "", "num_hidden_layers", 1, 1, 4096, &cfg->n_layers)) ||
        (s = get_int(c, root, "", "num_attention_heads", 1, 1, 4096, &cfg->n_heads)) ||
        (s = get_int(c, root, "", "vocab_size", 1, 1, 1 << 24, &cfg->n_vocab)) ||
        (s = get_int(c, root, "", "max_position_embeddings", 0, 1, INT32_MAX, &cfg->ctx_train)) ||
        (s = get_float(c, root, "", "rms_norm_eps", 0, 1, &cfg->norm_eps)))
        return s;
    cfg->n_kv_heads = cfg->n_heads;
    if ((s = get_int(c, root, "", "num_key_value_heads", 0, 1, cfg->n_heads, &cfg->n_kv_heads))) return s;
    if (cfg->n_heads % cfg->n_kv_heads)
        return lb_fail(c->err, LB_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                       c->name, cfg->n_heads, cfg->n_kv_heads);
    if ((s = get_int(c, root, "", "head_dim", 0, 2, 4096, &cfg->head_dim))) return s;
    if (!cfg->head_dim) {
        if (cfg->dim % cfg->n_heads)
            return lb_fail(c->err, LB_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d (and no head_dim)",
                           c->name, cfg->dim, cfg->n_heads);
        cfg->head_dim = cfg->dim / cfg->n_heads;
    }
    if (cfg->head_dim % 2) return lb_fail(c->err, LB_ERR_FORMAT, "%s: head_dim %d is odd", c->name, cfg->head_dim);
    if ((s = parse_act(c, root, cfg)) || (s = parse_rope(c, root, cfg)) || (s = parse_window(c, root, cfg))) return s;

    bool attn_bias = false, mlp_bias = false, tied = false; /* every supported architecture defaults to untied */
    if ((s = get_bool(c, root, "attention_bias", &attn_bias)) || (s = get_bool(c, root, "mlp_bias", &mlp_bias)) ||
        (s = get_bool(c, root, "tie_word_embeddings", &tied)))
        return s;
    if (mlp_bias) return lb_fail(c->err, LB_ERR_UNSUPPORTED, "%s: mlp_bias true is not supported", c->name);
    cfg->qkv_bias = ad->arch == LB_ARCH_QWEN2 || (attn_bias && ad->arch != LB_ARCH_MISTRAL);
    cfg->sub_norms = ad->arch == LB_ARCH_BITNET;

    int32_t bos = special_id(c, root, "bos_token_id", cfg->n_vocab);
    int32_t eos = special_id(c, root, "eos_token_id", cfg->n_vocab);
    if (extra) {
        extra->tie_word_embeddings = tied;
        extra->bos_id = bos;
        extra->eos_id = eos;
    }
    return LB_OK;
}

lb_status lb_hf_parse_config_ex(const char *json, size_t len, const char *name, lb_config *cfg, lb_hf_extra *extra,
                                lb_error *err) {
    ctx c = {name ? name : "config.json", err};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return lb_fail(err, LB_ERR_FORMAT, "%s: invalid JSON near byte offset %zu", c.name, at);
    }
    lb_status s = cJSON_IsObject(root) ? parse_root(&c, root, cfg, extra)
                                       : lb_fail(err, LB_ERR_FORMAT, "%s: not a JSON object", c.name);
    cJSON_Delete(root);
    return s;
}

lb_status lb_hf_parse_config(const char *json, size_t len, const char *name, lb_config *cfg, lb_error *err) {
    return lb_hf_parse_config_ex(json, len, name, cfg, NULL, err);
}
