/* lowbit: run and compress large language models in little memory.
 * The whole public C API. Handles are opaque; every fallible call returns lb_status (0 = ok)
 * and, when given an lb_error, fills it with a one-line message naming the file and field. */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOWBIT_VERSION_MAJOR 0
#define LOWBIT_VERSION_MINOR 1
#define LOWBIT_VERSION_PATCH 0
const char *lb_version(void);

/* ---- status and errors ---------------------------------------------------------------- */
typedef enum lb_status {
    LB_OK = 0,
    LB_ERR_IO,          /* open/read/write/mmap failed */
    LB_ERR_FORMAT,      /* file contents malformed or truncated */
    LB_ERR_UNSUPPORTED, /* valid but not (yet) handled: architecture, dtype, version */
    LB_ERR_NOMEM,       /* allocation failed or would exceed a limit */
    LB_ERR_ARG,         /* bad argument from the caller */
    LB_ERR_RANGE,       /* index, id or size out of range */
    LB_ERR_BUDGET,      /* does not fit the memory budget */
    LB_ERR_CORRUPT,     /* checksum mismatch */
    LB_ERR_MISMATCH     /* two inputs that must agree do not (e.g. delta and base) */
} lb_status;

const char *lb_status_name(lb_status s);

/* Filled by fallible calls when non-NULL. msg is a single line. */
typedef struct lb_error {
    lb_status status;
    char msg[512];
} lb_error;

/* Progress of long work (quantize, compress, synth): what is being done, bytes done of total. */
typedef void (*lb_progress_fn)(void *user, const char *what, uint64_t done, uint64_t total);

/* ---- logging ---------------------------------------------------------------------------- */
typedef enum lb_log_level { LB_LOG_ERROR = 0, LB_LOG_WARN, LB_LOG_INFO, LB_LOG_DEBUG } lb_log_level;
void lb_log_set_level(lb_log_level level);

/* ---- models ----------------------------------------------------------------------------- */
typedef struct lb_model lb_model;

typedef struct lb_model_params {
    const char *tokenizer_path; /* NULL: found beside or inside the model */
    int n_threads;              /* 0: all cores */
} lb_model_params;

lb_model_params lb_model_default_params(void);
/* path: a GGUF file, a llama2.c checkpoint or a Hugging Face folder. */
lb_status lb_model_load(const char *path, const lb_model_params *params, lb_model **out, lb_error *err);
void lb_model_free(lb_model *m);

int lb_model_n_vocab(const lb_model *m);
int lb_model_n_ctx_train(const lb_model *m);
const char *lb_model_chat_template(const lb_model *m); /* NULL when none */

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
} lb_model_info;
void lb_model_get_info(const lb_model *m, lb_model_info *out);

typedef struct lb_tensor_info {
    const char *name, *dtype;
    int n_dims;
    int64_t shape[4]; /* innermost first, as in GGUF */
    uint64_t nbytes;
} lb_tensor_info;
lb_status lb_model_tensor_info(const lb_model *m, size_t i, lb_tensor_info *out, lb_error *err);

/* ---- tokenizer (through a model, or standalone from a tokenizer file) ------------------- */
typedef struct lb_tokenizer lb_tokenizer;

lb_status lb_tokenizer_open(const char *path, lb_tokenizer **out, lb_error *err);
void lb_tokenizer_free(lb_tokenizer *t);
const lb_tokenizer *lb_model_tokenizer(const lb_model *m); /* NULL when the model has none */
/* Encodes text; add_special adds BOS/EOS etc. exactly as the tokenizer itself does.
 * *ids is malloc'ed (free with free()). */
lb_status lb_tokenize(const lb_tokenizer *t, const char *text, size_t len, int add_special,
                      int32_t **ids, size_t *n_ids, lb_error *err);
/* Writes the bytes of one token as it reads after earlier text (control tokens give nothing);
 * returns their count, which may exceed cap (then call again with a larger buffer). */
size_t lb_token_piece(const lb_tokenizer *t, int32_t id, char *buf, size_t cap);
/* 1 when id ends generation (EOS, or an end-of-turn token such as <|eot_id|>). */
int lb_token_is_eog(const lb_tokenizer *t, int32_t id);
int lb_tokenizer_n_vocab(const lb_tokenizer *t);
const char *lb_tokenizer_kind(const lb_tokenizer *t);
/* Decodes ids to text; *text is malloc'ed and NUL-terminated. */
lb_status lb_detokenize(const lb_tokenizer *t, const int32_t *ids, size_t n_ids, char **text,
                        size_t *len, lb_error *err);

/* ---- generation ------------------------------------------------------------------------- */
typedef struct lb_session lb_session;

typedef enum lb_kv_type { LB_KV_F32 = 0, LB_KV_F16 = 1 } lb_kv_type;

typedef struct lb_session_params {
    int n_ctx;          /* 0: the model's training context, capped at 4096 */
    int n_threads;      /* 0: all cores */
    lb_kv_type kv_type;
} lb_session_params;

lb_session_params lb_session_default_params(void);
lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out, lb_error *err);
void lb_session_free(lb_session *s);
void lb_session_reset(lb_session *s);
int lb_session_n_past(const lb_session *s);
int lb_session_n_ctx(const lb_session *s);
int lb_session_n_threads(const lb_session *s);
size_t lb_session_kv_bytes(const lb_session *s);      /* allocated KV cache */
size_t lb_session_scratch_bytes(const lb_session *s); /* activations and other buffers */
/* Runs ids through the model at the next positions. logits (may be NULL) receives
 * n_ids x n_vocab floats when all_logits, else n_vocab floats for the last position. */
lb_status lb_session_eval(lb_session *s, const int32_t *ids, size_t n_ids, float *logits,
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

lb_sampler_params lb_sampler_default_params(void);
typedef struct lb_sampler lb_sampler;
lb_status lb_sampler_new(const lb_sampler_params *p, int n_vocab, lb_sampler **out, lb_error *err);
void lb_sampler_free(lb_sampler *s);
/* history: the ids so far (for the repetition penalty). logits are modified. */
int32_t lb_sampler_sample(lb_sampler *s, float *logits, const int32_t *history, size_t n_history);

/* ---- synthetic models (src/io/synth.c) --------------------------------------------------- */
/* Writes a GGUF model with the real shapes of a known model (preset: tiny, stories15m, llama-1b,
 * llama-7b, llama-8b) and random weights, for speed and memory benchmarks. dtype: "f32", "f16",
 * "bf16". tokenizer_path: a tokenizer to embed (padded to the vocabulary size); NULL embeds a
 * generated byte-fallback vocabulary. */
lb_status lb_synth_write(const char *preset, const char *dtype, const char *tokenizer_path, uint64_t seed,
                         const char *out_path, lb_progress_fn progress, void *user, lb_error *err);
/* The preset names, NULL-terminated. */
const char *const *lb_synth_presets(void);

/* ---- quantization (src/quant) ---------------------------------------------------------- */

/* ---- compression (src/compress) -------------------------------------------------------- */

/* ---- deltas (src/delta) ---------------------------------------------------------------- */

/* ---- memory (src/mem) ------------------------------------------------------------------ */

#ifdef __cplusplus
}
#endif
#endif
