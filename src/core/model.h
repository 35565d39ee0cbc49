/* The loaded model: hyperparameters, named tensors (GGUF naming), bound layer weights,
 * tokenizer, and the resources that back them (mappings and owned buffers). Loaders in io/
 * fill cfg and the tensor table; lb_model_bind() checks shapes and fills the weight slots. */
#ifndef LB_CORE_MODEL_H
#define LB_CORE_MODEL_H
#include <stdbool.h>
#include "core/mapfile.h"
#include "core/tensor.h"
#include "lowbit.h"

typedef enum lb_arch { LB_ARCH_LLAMA = 0, LB_ARCH_QWEN2, LB_ARCH_MISTRAL, LB_ARCH_BITNET } lb_arch;
const char *lb_arch_name(lb_arch a);

/* LB_ROPE_NORM rotates adjacent pairs (x[2i], x[2i+1]): GGUF llama and llama2.c layout.
 * LB_ROPE_NEOX rotates (x[i], x[i + d/2]): the Hugging Face layout (rotate_half). */
typedef enum lb_rope_layout { LB_ROPE_NORM = 0, LB_ROPE_NEOX = 1 } lb_rope_layout;
typedef enum lb_rope_scaling { LB_ROPE_SCALE_NONE = 0, LB_ROPE_SCALE_LINEAR, LB_ROPE_SCALE_LLAMA3 } lb_rope_scaling;
typedef enum lb_act { LB_ACT_SILU = 0, LB_ACT_RELU2, LB_ACT_GELU } lb_act;

typedef struct lb_config {
    lb_arch arch;
    int32_t n_vocab, dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim;
    int32_t ctx_train; /* trained context length (0 unknown) */
    /* Mistral-style sliding-window attention: a query at position p attends to positions
     * p - sliding_window + 1 .. p only (0: no window, every earlier position) */
    int32_t sliding_window;
    float norm_eps;
    float rope_theta;
    lb_rope_layout rope_layout;
    lb_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_orig_ctx;
    /* transformers computes the RoPE frequencies in f32 and then casts them with the model's
     * buffers to the checkpoint dtype; HF folders set this to F16/BF16 to compute the same. */
    lb_dtype rope_freq_type;
    lb_act act;
    bool qkv_bias;  /* Qwen2 */
    bool sub_norms; /* BitNet attn_sub_norm / ffn_sub_norm */
    /* BitLinear inputs quantized per token to int8 (absmax, round half away from zero) before
     * every block matmul, as ak42 BitNet models were trained (GGUF key lowbit.act_quant_int8) */
    bool act_quant_int8;
} lb_config;

typedef struct lb_layer_weights {
    const lb_tensor *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *attn_sub_norm;
    const lb_tensor *ffn_norm, *w_gate, *w_up, *w_down, *ffn_sub_norm;
    /* optional one-element F32 tensors (blk.N.attn_q.scale, ...) multiplying the matmul's output,
     * as llama.cpp's bitnet arch reads them: ternary weights keep their exact absmean there */
    const lb_tensor *wq_s, *wk_s, *wv_s, *wo_s, *w_gate_s, *w_up_s, *w_down_s;
} lb_layer_weights;

typedef struct lb_model_buffer {
    void *ptr;
    size_t size;
    const char *why; /* shown in the memory report: "bf16->f32 norms", ... */
} lb_model_buffer;

struct lb_model {
    lb_config cfg;
    char format[24];    /* "gguf", "hf", "llama2c", ... */
    char *path;

    /* all tensors, named as in GGUF llama files: token_embd.weight, blk.N.attn_q.weight ... */
    lb_tensor *tensors;
    size_t n_tensors, cap_tensors;

    const lb_tensor *tok_embd, *output_norm, *output; /* output == tok_embd when tied */
    /* GGUF rope_freqs.weight: per-dimension divisors of the RoPE frequencies (llama.cpp's way of
     * storing llama3 scaling; lowbit also stores checkpoint-dtype rounding in it). NULL if absent. */
    const lb_tensor *rope_freqs;
    lb_layer_weights *layers;

    lb_tokenizer *tok;     /* may be NULL (synthetic reference folders have none) */
    char *chat_template;   /* Jinja text from the model's metadata, may be NULL */

    lb_mapfile *maps;
    size_t n_maps;
    lb_model_buffer *bufs;
    size_t n_bufs;
    char **strings;        /* owned strings (tensor names) */
    size_t n_strings;
    bool no_repack;        /* lb_model_set_repack(m, 0): CPU engines keep Q4_0 plain */
    uint64_t proc_baseline; /* the process's RSS (statm) when the model was made: its cost before any model part */
};

/* Resource helpers used by loaders; all return NULL/error on allocation failure. */
lb_status lb_model_add_map(lb_model *m, const char *path, const lb_mapfile **out, lb_error *err);
void *lb_model_alloc(lb_model *m, size_t size, const char *why);
const char *lb_model_strdup(lb_model *m, const char *s, size_t len);
/* Appends a tensor (the name is copied). Fails on duplicate names. */
lb_status lb_model_add_tensor(lb_model *m, const char *name, lb_dtype type, int n_dims,
                              const int64_t *ne, const void *data, size_t nbytes, lb_error *err);
const lb_tensor *lb_model_find_tensor(const lb_model *m, const char *name);

/* Checks the tensor table against cfg (shapes, presence) and fills tok_embd/layers; converts
 * small 1-D tensors (norms, biases) to F32 buffers. */
lb_status lb_model_bind(lb_model *m, lb_error *err);

lb_model *lb_model_new(void);

/* Format loaders (src/io/). Each fills cfg, format, tensors, tok (when found), chat_template. */
lb_status lb_load_gguf(lb_model *m, const char *path, lb_error *err);
lb_status lb_load_hf(lb_model *m, const char *dir, lb_error *err);
/* A folder's config and tokenizer with the weights of one given file (a .safetensors or .lbz). */
lb_status lb_load_hf_weights(lb_model *m, const char *dir, const char *weights, lb_error *err);
/* Patches the loaded (not yet bound) weights with a delta file made against this model
 * (src/delta/delta_model.c): changed tensors move to owned buffers. */
lb_status lb_model_apply_delta(lb_model *m, const char *delta_path, lb_error *err);
lb_status lb_load_llama2c(lb_model *m, const char *path, const char *tokenizer_path, lb_error *err);
int lb_llama2c_bad_field(const unsigned char head[28]); /* index of the first field out of range, -1 if none */
lb_status lb_load_ak42(lb_model *m, const char *path, const char *tokenizer_path, lb_error *err); /* BitNet ak42 v1 */

#endif
