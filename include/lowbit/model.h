/* lowbit public API, part: models, tokenizers, chat templates, sessions and sampling. Included by lowbit.h only (it relies on what lowbit.h
 * and the parts before it declare); include <lowbit.h>, never this file. */
#ifndef LOWBIT_MODEL_H
#define LOWBIT_MODEL_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

/* ---- models ----------------------------------------------------------------------------- */
typedef struct lb_model lb_model;

typedef struct lb_model_params {
    const char *tokenizer_path; /* NULL: found beside or inside the model */
    int n_threads;              /* 0: all cores */
    const char *delta_path;     /* NULL, or a delta file (lowbit delta create) applied at load */
} lb_model_params;

LB_API lb_model_params lb_model_default_params(void);
/* path: a GGUF file, a llama2.c checkpoint, a Hugging Face folder, or a .lbz of a GGUF (self-
 * contained) or of a safetensors file (config.json and tokenizer files in the same folder). */
LB_API lb_status lb_model_load(const char *path, const lb_model_params *params, lb_model **out, lb_error *err);
/* Bytes that loading path allocates before any session: the restored size of a .lbz (or of a
 * folder's model.safetensors.lbz), checked against its kept header; 0 for files used in place
 * from the mapping. Budgeted callers compare it with the budget before lb_model_load. */
LB_API lb_status lb_model_load_bytes(const char *path, uint64_t *bytes, lb_error *err);
LB_API void lb_model_free(lb_model *m);
/* on = 0: CPU engines keep Q4_0 matrices in the file's layout; 1 (the default): they repack them
 * into 8-row groups where it pays (LOWBIT_REPACK=0/1 overrides; see README "Q4_0 repacking").
 * Takes effect at the next lb_engine_new / lb_session_new that has not repacked yet. */
LB_API void lb_model_set_repack(lb_model *m, int on);

LB_API int lb_model_n_vocab(const lb_model *m);
LB_API int lb_model_n_ctx_train(const lb_model *m);
LB_API const char *lb_model_chat_template(const lb_model *m); /* NULL when none */

typedef struct lb_model_info {
    const char *format, *arch;   /* "gguf" / "hf" / "llama2c"; "llama" / "qwen2" / ... */
    int n_vocab, dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, ctx_train;
    float norm_eps, rope_theta;
    const char *rope_layout, *rope_scaling, *activation;
    float rope_factor;
    int tied_embeddings, qkv_bias, sub_norms;
    size_t n_tensors;
    uint64_t weight_bytes;       /* all tensors */
    uint64_t converted_bytes;    /* copies made at load (e.g. bf16 norms to f32) */
    int sliding_window;          /* positions a query attends to (itself included); 0: all */
} lb_model_info;
LB_API void lb_model_get_info(const lb_model *m, lb_model_info *out);

typedef struct lb_tensor_info {
    const char *name, *dtype;
    int n_dims;
    int64_t shape[4]; /* innermost first, as in GGUF */
    uint64_t nbytes;
} lb_tensor_info;
LB_API lb_status lb_model_tensor_info(const lb_model *m, size_t i, lb_tensor_info *out, lb_error *err);
/* Non-finite weights of tensor i (every value read as float): how many, the flat index of the
 * first and its value (NaN or inf); first = -1 when all are finite. */
typedef struct lb_tensor_check {
    uint64_t n_bad;
    int64_t first;
    float first_value;
} lb_tensor_check;
LB_API lb_status lb_model_tensor_check(const lb_model *m, size_t i, lb_tensor_check *out, lb_error *err);

/* ---- tokenizer (through a model, or standalone from a tokenizer file) ------------------- */
typedef struct lb_tokenizer lb_tokenizer;

LB_API lb_status lb_tokenizer_open(const char *path, lb_tokenizer **out, lb_error *err);
LB_API void lb_tokenizer_free(lb_tokenizer *t);
LB_API const lb_tokenizer *lb_model_tokenizer(const lb_model *m); /* NULL when the model has none */
/* Encodes text; add_special adds BOS/EOS etc. exactly as the tokenizer itself does.
 * *ids is malloc'ed (free with free()). */
LB_API lb_status lb_tokenize(const lb_tokenizer *t, const char *text, size_t len, int add_special,
                      int32_t **ids, size_t *n_ids, lb_error *err);
/* A whole text file (at most 1 GiB) tokenized as lb_tokenize does: what perplexity and imatrix
 * read before cutting it into windows. */
LB_API lb_status lb_tokenize_file(const lb_tokenizer *t, const char *path, int add_special, int32_t **ids,
                                  size_t *n_ids, lb_error *err);
/* Writes the bytes of one token as it reads after earlier text (control tokens give nothing);
 * returns their count, which may exceed cap (then call again with a larger buffer). */
LB_API size_t lb_token_piece(const lb_tokenizer *t, int32_t id, char *buf, size_t cap);
/* 1 when id ends generation (EOS, or an end-of-turn token such as <|eot_id|>). */
LB_API int lb_token_is_eog(const lb_tokenizer *t, int32_t id);
LB_API int lb_tokenizer_n_vocab(const lb_tokenizer *t);
LB_API int32_t lb_tokenizer_bos(const lb_tokenizer *t); /* the BOS id, -1 when there is none */
LB_API const char *lb_tokenizer_kind(const lb_tokenizer *t);
/* Decodes ids to text; *text is malloc'ed and NUL-terminated. */
LB_API lb_status lb_detokenize(const lb_tokenizer *t, const int32_t *ids, size_t n_ids, char **text,
                        size_t *len, lb_error *err);

/* ---- chat templates (src/graph/chat.c) -------------------------------------------------- */
typedef struct lb_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
} lb_chat_message;
/* The style lowbit formats for a model's Jinja chat template (lb_model_chat_template): "chatml",
 * "llama3", "llama2" or "mistral"; NULL when none is recognised. */
LB_API const char *lb_chat_template_style(const char *jinja);
/* Formats a conversation in style, ending with the assistant's opening; BOS is not written (the
 * tokenizer adds it with add_special). *out is malloc'ed. LB_ERR_ARG for an unknown style or role. */
LB_API lb_status lb_chat_format(const char *style, const lb_chat_message *msgs, size_t n, char **out, lb_error *err);

/* ---- generation ------------------------------------------------------------------------- */
typedef struct lb_session lb_session;

/* Q8_0: GGUF Q8_0 blocks (32 int8 + fp16 scale, 34 bytes) per head row; Q4_0: GGUF Q4_0 blocks
 * (32 4-bit codes + fp16 scale, 18 bytes: 0.28x of F16, for long contexts; CPU only). Both need
 * head_dim % 32 == 0. */
typedef enum lb_kv_type { LB_KV_F32 = 0, LB_KV_F16 = 1, LB_KV_Q8_0 = 2, LB_KV_Q4_0 = 3 } lb_kv_type;

/* Where the forward pass runs. LB_DEVICE_CUDA needs a build with -DLOWBIT_CUDA=ON and a CUDA
 * device (else LB_ERR_UNSUPPORTED saying which): weights are uploaded once, the KV cache and
 * activations live on the device, logits come back to host memory. */
typedef enum lb_device { LB_DEVICE_CPU = 0, LB_DEVICE_CUDA = 1 } lb_device;
typedef struct lb_session_params {
    int n_ctx;          /* 0: the model's training context, capped at 4096 */
    int n_threads;      /* 0: all cores */
    lb_kv_type kv_type; /* LB_KV_F16 by default (as llama.cpp); LB_KV_F32 for bit-exact references */
    lb_device device;   /* LB_DEVICE_CPU by default */
    /* 0: weights used from the mapping as they are; N > 0: streamed from the file through a
     * window of N layers (what lb_mem_plan's stream_window asks for; CPU only) */
    int stream_window;
} lb_session_params;

LB_API lb_session_params lb_session_default_params(void);
/* The CUDA device's name and memory in bytes; LB_ERR_UNSUPPORTED without CUDA or a device. */
LB_API lb_status lb_cuda_device(char *name, size_t cap, size_t *total_bytes, lb_error *err);
LB_API lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out, lb_error *err);
LB_API void lb_session_free(lb_session *s);
LB_API void lb_session_reset(lb_session *s);
LB_API int lb_session_n_past(const lb_session *s);
/* Keeps the first n positions (n <= n_past); what was sampled but not run is dropped. */
LB_API lb_status lb_session_truncate(lb_session *s, int n, lb_error *err);
LB_API int lb_session_n_ctx(const lb_session *s);
LB_API int lb_session_n_threads(const lb_session *s);
LB_API lb_kv_type lb_session_kv_type(const lb_session *s);
LB_API size_t lb_session_kv_bytes(const lb_session *s);      /* allocated KV cache */
LB_API size_t lb_session_scratch_bytes(const lb_session *s); /* activations and other buffers */
/* Runs ids through the model at the next positions. logits (may be NULL) receives
 * n_ids x n_vocab floats when all_logits, else n_vocab floats for the last position. */
LB_API lb_status lb_session_eval(lb_session *s, const int32_t *ids, size_t n_ids, float *logits,
                          int all_logits, lb_error *err);

typedef struct lb_sampler_params {
    float temperature;  /* 0: greedy */
    int top_k;          /* 0: off */
    float top_p;        /* 1: off */
    float min_p;        /* 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;
    uint64_t seed;
} lb_sampler_params;

LB_API lb_sampler_params lb_sampler_default_params(void);
typedef struct lb_sampler lb_sampler;
LB_API lb_status lb_sampler_new(const lb_sampler_params *p, int n_vocab, lb_sampler **out, lb_error *err);
LB_API void lb_sampler_free(lb_sampler *s);
/* history: the ids so far (for the repetition penalty). logits are modified. */
LB_API int32_t lb_sampler_sample(lb_sampler *s, float *logits, const int32_t *history, size_t n_history);

#endif
