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

/* The library is built with -fvisibility=hidden: only what this header declares with LB_API is
 * exported from liblowbit.so (tests/cli_layers.sh checks with nm -D). */
#if defined(__GNUC__) || defined(__clang__)
#define LB_API __attribute__((visibility("default")))
#else
#define LB_API
#endif

#define LOWBIT_VERSION_MAJOR 0
#define LOWBIT_VERSION_MINOR 1
#define LOWBIT_VERSION_PATCH 0
LB_API const char *lb_version(void);
/* The CPU kernel level in use, detected once: "scalar", "avx2" or "avx512", then the extra
 * features in parentheses, e.g. "avx512 (vnni bf16 avx-vnni)". The environment variable
 * LOWBIT_CPU=scalar|avx2|avx512 lowers it (never above what the CPU has), which the text then
 * says. Writes at most cap bytes into buf and returns buf. */
LB_API const char *lb_cpu_kernels(char *buf, size_t cap);

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

LB_API const char *lb_status_name(lb_status s);

/* Filled by fallible calls when non-NULL. msg is a single line. */
typedef struct lb_error {
    lb_status status;
    char msg[512];
} lb_error;

/* Sets err (when non-NULL) to s and the formatted message, and returns s, so a caller can
 * `return lb_fail(err, ...)`; front ends and callbacks fill errors the library's way. */
#if defined(__GNUC__) || defined(__clang__)
LB_API lb_status lb_fail(lb_error *err, lb_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#else
LB_API lb_status lb_fail(lb_error *err, lb_status s, const char *fmt, ...);
#endif

/* Progress of long work (quantize, compress, synth): what is being done, bytes done of total. */
typedef void (*lb_progress_fn)(void *user, const char *what, uint64_t done, uint64_t total);

/* ---- output paths (src/core/outpath.c) ---------------------------------------------------- */
/* Every writer calls this before its work starts: OUT must not be empty, end in '/', or be an
 * existing folder (unless LB_OUT_FOLDER: a folder output such as a patched HF folder); its folder
 * must exist and be writable; and OUT must not be any input (NULL entries are skipped), judged by
 * device and inode, so another name, a hard link or a symlink for an input is refused too; for a
 * folder input, no file directly inside it. */
#define LB_OUT_FOLDER 1
LB_API lb_status lb_output_check(const char *out, const char *const *inputs, size_t n_inputs, int flags, lb_error *err);
/* A whole regular file into a NUL-terminated malloc'ed buffer; one over max_size is refused. */
LB_API lb_status lb_read_file(const char *path, size_t max_size, char **out, size_t *len, lb_error *err);
/* Atomic output: bytes go to a temp file beside path, renamed over it (fsynced) at commit; abort
 * or an interrupted process leaves path as it was. commit and abort free f. */
typedef struct lb_atomic_file lb_atomic_file;
LB_API lb_status lb_atomic_open(const char *path, lb_atomic_file **out, lb_error *err);
LB_API lb_status lb_atomic_write(lb_atomic_file *f, const void *data, size_t n, lb_error *err);
LB_API lb_status lb_atomic_commit(lb_atomic_file *f, lb_error *err);
LB_API void lb_atomic_abort(lb_atomic_file *f);

/* ---- logging ---------------------------------------------------------------------------- */
typedef enum lb_log_level { LB_LOG_ERROR = 0, LB_LOG_WARN, LB_LOG_INFO, LB_LOG_DEBUG } lb_log_level;
LB_API void lb_log_set_level(lb_log_level level);

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

/* Q8_0: GGUF Q8_0 blocks (32 int8 + fp16 scale, 34 bytes) per head row; needs head_dim % 32 == 0. */
typedef enum lb_kv_type { LB_KV_F32 = 0, LB_KV_F16 = 1, LB_KV_Q8_0 = 2 } lb_kv_type;

/* Where the forward pass runs. LB_DEVICE_CUDA needs a build with -DLOWBIT_CUDA=ON and a CUDA
 * device (else LB_ERR_UNSUPPORTED saying which): weights are uploaded once, the KV cache and
 * activations live on the device, logits come back to host memory. */
typedef enum lb_device { LB_DEVICE_CPU = 0, LB_DEVICE_CUDA = 1 } lb_device;
typedef struct lb_session_params {
    int n_ctx;          /* 0: the model's training context, capped at 4096 */
    int n_threads;      /* 0: all cores */
    lb_kv_type kv_type; /* LB_KV_F16 by default (as llama.cpp); LB_KV_F32 for bit-exact references */
    lb_device device;   /* LB_DEVICE_CPU by default */
} lb_session_params;

LB_API lb_session_params lb_session_default_params(void);
/* The CUDA device's name and memory in bytes; LB_ERR_UNSUPPORTED without CUDA or a device. */
LB_API lb_status lb_cuda_device(char *name, size_t cap, size_t *total_bytes, lb_error *err);
LB_API lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out, lb_error *err);
LB_API void lb_session_free(lb_session *s);
LB_API void lb_session_reset(lb_session *s);
LB_API int lb_session_n_past(const lb_session *s);
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

/* ---- the generation loop (src/engine/generate.c) --------------------------------------- */
/* Why lb_generate stopped. */
typedef enum lb_stop_reason {
    LB_STOP_LENGTH = 0, /* max_tokens generated */
    LB_STOP_EOG,        /* an end-of-generation token (not part of the output) */
    LB_STOP_STRING,     /* a stop string appeared (the text ends before it) */
    LB_STOP_CONTEXT,    /* the session's context is full */
    LB_STOP_CALLER,     /* the token callback returned nonzero */
    LB_STOP_MEMORY      /* the memory guard saw CRITICAL pressure */
} lb_stop_reason;
LB_API const char *lb_stop_reason_name(lb_stop_reason r); /* "length", "eog", "stop", ... */

typedef struct lb_mem_guard lb_mem_guard; /* the memory guard (memory section below) */

/* Called once per generated token with the output text that is now certain (bytes; possibly
 * none while a stop string may be starting, or bytes held from earlier tokens) and the token's
 * id; once more with id -1 for held bytes when generation ends otherwise. Nonzero stops
 * generation after this token (LB_STOP_CALLER). */
typedef int (*lb_token_fn)(void *user, int32_t id, const char *text, size_t len);
/* Called with a one-line notice: memory pressure high or critical, the context full. */
typedef void (*lb_notice_fn)(void *user, const char *msg);

typedef struct lb_generate_params {
    lb_sampler_params sampling;
    lb_sampler *sampler;       /* optional: used instead of one made from sampling, so its random
                                * state carries over calls (the turns of a chat) */
    int max_tokens;            /* at most this many tokens (default 256); 0: only the prompt runs */
    const char *const *stop;   /* n_stop stop strings (non-empty): the output ends before the first
                                * one that appears, and no byte of it is streamed */
    size_t n_stop;
    int chat;                  /* the prompt is the user's message, formatted with the model's chat
                                * template (LB_ERR_UNSUPPORTED when lowbit knows no style for it) */
    const char *system;        /* with chat: the system message of the conversation's first turn */
    int keep;                  /* 0: the session is reset first; 1: continue after what it holds
                                * (a conversation's next turn: the last sampled token, such as the
                                * end-of-turn token that ended the previous answer, is fed first) */
    const int32_t *prompt_ids; /* used when prompt is NULL: ids instead of text */
    size_t n_prompt_ids;
    lb_mem_guard *guard;       /* optional: one step per token; CRITICAL stops (LB_STOP_MEMORY) */
    lb_token_fn on_token;      /* optional streaming */
    lb_notice_fn on_notice;    /* optional; NULL: notices go to the library's log (warning) */
    void *user;                /* passed to both callbacks */
} lb_generate_params;
LB_API lb_generate_params lb_generate_default_params(void);

typedef struct lb_generate_result {
    int32_t *prompt_ids, *ids;   /* the prompt as run, the generated ids (with the tokens of a stop
                                  * string, without an end-of-generation token) */
    size_t n_prompt_ids, n_ids;
    char *text;                  /* the generated text, NUL-terminated, up to a stop string */
    size_t text_len;
    lb_stop_reason stop;
    double prompt_seconds, gen_seconds; /* wall time of the prompt, of the generated tokens */
} lb_generate_result;
LB_API void lb_generate_result_free(lb_generate_result *r);

/* Runs the whole loop: tokenizes the prompt (special tokens such as BOS only at the start of the
 * session; chat templating when asked), runs it, then samples, streams and feeds tokens until
 * max_tokens, an end-of-generation token, a stop string, a full context, the callback or the
 * memory guard ends it. On error nothing is left in *out (already streamed text stays sent). */
LB_API lb_status lb_generate(lb_session *s, const char *prompt, const lb_generate_params *p, lb_generate_result *out,
                             lb_error *err);

/* ---- the batched engine (src/engine) --------------------------------------------------- */
/* One engine serves many sequences at once: it owns a paged KV cache (one pool of fixed-size
 * blocks shared by every sequence), the threads and the scratch. A decode call runs one
 * forward pass over a batch of (sequence, position, token) entries: each weight matrix is read
 * once for every token of the batch. Sequences fork (sharing their blocks, copy-on-write), a
 * new sequence can reuse the blocks of a prefix already computed (a system prompt), and each
 * sequence may run one of the engine's fine-tunes (deltas over the base weights held once).
 * A sequence's results do not depend on what else is in the batch (docs/design.md says where
 * a kernel rounds differently for one token than for several). lb_session is one sequence of
 * an engine of its own. */
typedef struct lb_engine lb_engine;
typedef struct lb_engine_params {
    int n_threads;      /* 0: all cores */
    lb_kv_type kv_type; /* LB_KV_F16 by default */
    int n_ctx;          /* longest sequence; 0: the model's training context, capped at 4096 */
    int n_kv_tokens;    /* pool capacity in tokens, shared by all sequences; 0: n_ctx */
    int max_batch;      /* most entries in one decode call (scratch); 0: 64 */
    int block_tokens;   /* positions per KV block; 0: 16 */
    int prefix_cache;   /* remember full blocks by their token chain for reuse (1 by default) */
    lb_device device;   /* LB_DEVICE_CPU by default */
} lb_engine_params;
LB_API lb_engine_params lb_engine_default_params(void);
LB_API lb_status lb_engine_new(lb_model *m, const lb_engine_params *p, lb_engine **out, lb_error *err);
LB_API void lb_engine_free(lb_engine *e);
/* Loads a delta file (lowbit delta create) made against the engine's model as a fine-tune the
 * sequences can name; *ft_id is 1, 2, ... (0 is the base model). */
LB_API lb_status lb_engine_add_finetune(lb_engine *e, const char *delta_path, int *ft_id, lb_error *err);
/* Sequences: ids are >= 0; a freed id may be handed out again. */
LB_API lb_status lb_engine_seq_new(lb_engine *e, int ft_id, int *seq, lb_error *err);
/* A new sequence holding everything src holds (same fine-tune), sharing its KV blocks. */
LB_API lb_status lb_engine_seq_fork(lb_engine *e, int src, int *seq, lb_error *err);
LB_API lb_status lb_engine_seq_free(lb_engine *e, int seq, lb_error *err);
/* Positions stored, or -1 for an unknown sequence. */
LB_API int lb_engine_seq_len(const lb_engine *e, int seq);
/* For an empty sequence: attaches the cached blocks that hold the longest run of whole blocks
 * at the start of ids (always leaving at least the last id to compute); *n_reused positions
 * are then stored, and decoding continues at that position. */
LB_API lb_status lb_engine_seq_reuse_prefix(lb_engine *e, int seq, const int32_t *ids, size_t n_ids, size_t *n_reused,
                                     lb_error *err);
typedef struct lb_batch_entry {
    int32_t seq;    /* a live sequence */
    int32_t pos;    /* its next position: entries of one sequence are consecutive positions */
    int32_t token;
    int32_t logits; /* nonzero: a row of logits for this entry */
} lb_batch_entry;
/* Runs the batch. logits (may be NULL when no entry wants any) receives n_vocab floats per
 * entry with logits set, in batch order. On any error no sequence changes. */
LB_API lb_status lb_engine_decode(lb_engine *e, const lb_batch_entry *batch, size_t n, float *logits, lb_error *err);
typedef struct lb_engine_stats {
    int n_seqs, n_finetunes, block_tokens, max_batch, n_ctx;
    size_t n_blocks, blocks_in_use, blocks_cached; /* pool size, held by anything, by the prefix cache */
    size_t block_bytes, pool_bytes, bytes_in_use;  /* bytes_in_use = blocks_in_use x block_bytes */
    uint64_t tokens_computed, tokens_reused;       /* positions run through the model / taken from the cache */
} lb_engine_stats;
LB_API void lb_engine_get_stats(const lb_engine *e, lb_engine_stats *out);
LB_API int lb_engine_n_threads(const lb_engine *e);

/* ---- synthetic models (src/io/synth.c) --------------------------------------------------- */
/* Writes a GGUF model with the real shapes of a known model (preset: tiny, stories15m, llama-1b,
 * llama-7b, llama-8b) and random weights, for speed and memory benchmarks. dtype: "f32", "f16",
 * "bf16". tokenizer_path: a tokenizer to embed (padded to the vocabulary size); NULL embeds a
 * generated byte-fallback vocabulary. */
LB_API lb_status lb_synth_write(const char *preset, const char *dtype, const char *tokenizer_path, uint64_t seed,
                         const char *out_path, lb_progress_fn progress, void *user, lb_error *err);
/* The preset names, NULL-terminated. */
LB_API const char *const *lb_synth_presets(void);

/* ---- conversion and evaluation (src/io/convert.c, src/graph/perplexity.c) --------------- */
typedef struct lb_convert_params {
    const char *tokenizer_path; /* NULL: the model's own (found beside it) */
    const char *dtype;          /* NULL or "keep": each tensor keeps its type; "f32", "f16", "bf16":
                                   every matrix in that type. Norms and biases are always F32. */
    int no_tokenizer;           /* 1: a model without a tokenizer is written without one (logits
                                   only); 0: it is refused before any work (run could not use it) */
} lb_convert_params;
LB_API lb_convert_params lb_convert_default_params(void);
/* Writes any model lb_model_load reads (GGUF, HF folder, llama2.c, ak42 BitNet) as GGUF
 * (atomically), following the conventions of GGUF files of its architecture (docs/convert.md). */
LB_API lb_status lb_convert(const char *in, const char *out, const lb_convert_params *p, lb_progress_fn progress,
                     void *user, lb_error *err);
LB_API lb_status lb_convert_model(const lb_model *m, const char *out, const char *dtype, lb_progress_fn progress,
                           void *user, lb_error *err);

/* Perplexity over ids in non-overlapping windows of n_ctx tokens; the first id of each window
 * is replaced by bos_id (when >= 0), and positions n_ctx/2 .. n_ctx-2 of each window are scored
 * (log-softmax of the id that follows). With a base model: mean KL(base || model) over the
 * scored positions and the share where both argmax agree. */
typedef struct lb_ppl_result {
    double ppl, nll;       /* exp(mean NLL), mean NLL (nats) */
    double kl, top1;       /* only when has_base */
    int has_base;
    size_t n_windows, n_scored;
} lb_ppl_result;
LB_API lb_status lb_perplexity(lb_model *m, lb_model *base, const int32_t *ids, size_t n_ids, int32_t bos_id, int n_ctx,
                        int n_threads, lb_progress_fn progress, void *user, lb_ppl_result *out, lb_error *err);

/* ---- quantization (src/quant) ---------------------------------------------------------- */
/* Writes any model lb_model_load reads as GGUF (atomically, streaming one tensor at a time)
 * with quantized matrices; metadata, tokenizer and Q/K row order as `lowbit convert` writes them.
 * type: a block format (q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k tq1_0 tq2_0), a float
 * type (f16 bf16 f32) or a mixed recipe (q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m). Norms and
 * biases stay F32; rows that do not fit the type's block get a named fallback (on_tensor). */
typedef struct lb_quantize_params {
    const char *type;
    int pure;            /* every matrix in the type: no higher-precision head, no recipe mix */
    int keep_output_f16; /* the output head (output.weight, or tied token_embd) in F16 */
    int n_threads;       /* 0: all cores */
    const char *tokenizer_path; /* NULL: the model's own */
    /* optional: called once per tensor before writing; note is NULL or why type differs */
    void (*on_tensor)(void *user, const char *name, const char *type, const char *note);
    void *on_tensor_user;
    int no_tokenizer;    /* as lb_convert_params.no_tokenizer */
} lb_quantize_params;
LB_API lb_quantize_params lb_quantize_default_params(void);
/* The accepted type names, NULL-terminated. */
LB_API const char *const *lb_quantize_type_names(void);
LB_API lb_status lb_quantize_file(const char *in, const char *out, const lb_quantize_params *p, lb_progress_fn progress,
                           void *user, lb_error *err);
LB_API lb_status lb_quantize_model(const lb_model *m, const char *out, const lb_quantize_params *p, lb_progress_fn progress,
                            void *user, lb_error *err);

/* ---- compression (src/compress) -------------------------------------------------------- */
/* Typed regions of a model file (GGUF, safetensors, a Hugging Face folder's model.safetensors,
 * or the kept header of a .lbz), for lb_lbz_compress, and the tensor at an offset. */
typedef struct lb_model_regions lb_model_regions;
LB_API lb_status lb_model_regions_open(const char *path, lb_model_regions **out, lb_error *err);
LB_API void lb_model_regions_free(lb_model_regions *r);
/* Sorted, non-overlapping: F32 -> 4, F16/BF16 (and 16/32-bit ints) -> 2/4, other dtypes 1. */
LB_API const struct lb_lbz_region *lb_model_regions_get(const lb_model_regions *r, size_t *n);
/* Byte offset of the tensor data section (keep this much verbatim as the container header). */
LB_API uint64_t lb_model_regions_header_len(const lb_model_regions *r);
/* An lb_lbz_name_fn: ud is the lb_model_regions; the tensor holding offset, or NULL. */
LB_API const char *lb_model_regions_name_at(uint64_t offset, void *ud);
/* The file the regions describe (for a folder: its model.safetensors), its format ("gguf",
 * "safetensors", or "gguf.lbz" / "safetensors.lbz" for a container) and tensor count. */
LB_API const char *lb_model_regions_file(const lb_model_regions *r);
LB_API const char *lb_model_regions_format(const lb_model_regions *r);
LB_API size_t lb_model_regions_n_tensors(const lb_model_regions *r);

/* Progress of a long operation: done and total bytes (of the original file). */
/* Maps an offset of the original file to a name (e.g. the tensor there) for error messages;
 * may return NULL. */
typedef const char *(*lb_lbz_name_fn)(uint64_t offset, void *ud);

typedef enum lb_codec { LB_CODEC_STORED = 0, LB_CODEC_ZSTD = 1, LB_CODEC_LZ4 = 2 } lb_codec;

/* A byte range of the input file and the size of its elements: 1 = opaque bytes (headers,
 * quantized blocks), 2 = F16/BF16, 4 = F32. length must be a multiple of elem_size. Regions are
 * sorted, non-overlapping; bytes no region covers are stored as opaque. */
typedef struct lb_lbz_region {
    uint64_t offset, length;
    uint32_t elem_size;
} lb_lbz_region;

#define LB_LBZ_HEADER_AUTO UINT64_MAX
typedef struct lb_lbz_options {
    lb_codec codec;      /* LB_CODEC_ZSTD (default) or LB_CODEC_LZ4 */
    int level;           /* zstd level (default 1: best on float planes); lz4: <= 1 fast, >= 2 HC */
    int n_threads;       /* >= 1 */
    uint32_t chunk_size; /* bytes of original data per chunk, 4 KiB..64 MiB, default 1 MiB */
    /* Leading bytes kept verbatim (uncompressed) in the container so a reader can parse the
     * model's header without decompressing. AUTO: the start of the first region with
     * elem_size > 1 (0 when there is none). */
    uint64_t header_len;
    lb_lbz_name_fn name_at; /* optional, used in messages */
    void *name_ud;
} lb_lbz_options;

LB_API lb_lbz_options lb_lbz_default_options(void);

/* Writes OUT (atomically) as the .lbz container of IN; see docs/lbz.md. */
LB_API lb_status lb_lbz_compress(const char *in, const char *out, const lb_lbz_region *regions,
                          size_t n_regions, const lb_lbz_options *opt, lb_progress_fn progress,
                          void *ud, lb_error *err);
/* Restores the original file bit for bit (atomically), verifying every checksum. */
LB_API lb_status lb_lbz_decompress(const char *in, const char *out, int n_threads,
                            lb_progress_fn progress, void *ud, lb_error *err);
/* Restores the original file into a 4096-byte aligned buffer (free with free()). */
LB_API lb_status lb_lbz_decompress_to_memory(const char *in, int n_threads, void **buf, size_t *size,
                                      lb_error *err);

/* Random access. A handle is not safe for concurrent lb_lbz_read calls from several threads. */
typedef struct lb_lbz lb_lbz;
LB_API lb_status lb_lbz_open(const char *path, lb_lbz_name_fn name_at, void *name_ud, lb_lbz **out,
                      lb_error *err);
LB_API void lb_lbz_close(lb_lbz *z);
LB_API void lb_lbz_set_name_fn(lb_lbz *z, lb_lbz_name_fn name_at, void *name_ud);
LB_API uint64_t lb_lbz_original_size(const lb_lbz *z);
/* The original file's first header_len bytes (verified at open); valid until close. */
LB_API const void *lb_lbz_header(const lb_lbz *z, size_t *header_len);
LB_API size_t lb_lbz_n_chunks(const lb_lbz *z);
/* Copies original bytes [offset, offset+len) into dst, decoding only the chunks needed. */
LB_API lb_status lb_lbz_read(lb_lbz *z, uint64_t offset, size_t len, void *dst, lb_error *err);
/* Whole-file restores from an open handle (the name callback is used in messages). */
LB_API lb_status lb_lbz_extract(lb_lbz *z, const char *out, int n_threads, lb_progress_fn progress,
                         void *ud, lb_error *err);
LB_API lb_status lb_lbz_extract_to_memory(lb_lbz *z, int n_threads, lb_progress_fn progress, void *ud,
                                   void **buf, size_t *size, lb_error *err);

/* ---- deltas (src/delta) ---------------------------------------------------------------- */
/* Delta files between a base model and a fine-tune of it (docs/delta.md): a safetensors file
 * with, per changed tensor, gap-encoded u32 indices and values, and metadata naming every base
 * tensor (dtype, shape, xxh64) so that a delta is never applied to another base. Inputs: GGUF
 * files, safetensors files, or Hugging Face folders with one model.safetensors. Tensors are
 * streamed one at a time (bounded memory). */
typedef enum lb_delta_mode {
    LB_DELTA_XOR = 0,   /* lossless: raw-bit XOR of the changed elements */
    LB_DELTA_FLOAT = 1, /* |fine - base| > threshold kept as f32 differences */
    LB_DELTA_INT8 = 2,  /* the same, as int8 with per-block scales */
    LB_DELTA_ZDIFF = 3, /* lossless, the default: bit-pattern differences as zstd-coded byte planes */
    LB_DELTA_SIGN = 4,  /* 1 bit per element: sign of fine - base, one scale (mean |d|) per row */
    LB_DELTA_MIXED = 5  /* sign rows, and int8 rows (per-row absmax scale) for the rows that need it */
} lb_delta_mode;

typedef struct lb_delta_tensor_report {
    const char *name, *dtype;
    uint64_t n, n_kept, bytes; /* elements, kept elements, delta bytes (idx + values + scales) */
    int dense;                 /* stored without indices (most elements changed) */
    double max_abs_err, rms_err; /* reconstructed - fine-tune, over all elements */
} lb_delta_tensor_report;
typedef void (*lb_delta_report_fn)(void *ud, const lb_delta_tensor_report *r);

typedef struct lb_delta_options {
    float threshold;     /* 0 and !int8: lossless (XOR) */
    int int8;            /* int8 values with per-block scales */
    int raw;             /* lossless as plain XOR values (format version 1) instead of zstd planes */
    int level;           /* zstd level of the lossless planes (0: 3) */
    float bits;          /* 0: off; 1: 1-bit sign deltas; > 1: mixed sign/int8 rows averaging about
                          * this many bits per element of the matrices (1 + 8 * int8-row fraction) */
    lb_delta_report_fn report; /* per tensor, optional */
    void *report_ud;
    lb_progress_fn progress;   /* bytes of the base processed, optional */
    void *progress_ud;
} lb_delta_options;
LB_API lb_delta_options lb_delta_default_options(void);

typedef struct lb_delta_summary {
    uint64_t n_tensors, n_changed, n_elements, n_kept;
    uint64_t dense_bytes;  /* the fine-tune's tensor bytes */
    uint64_t delta_bytes;  /* size of the written delta file */
    double max_abs_err, rms_err;
} lb_delta_summary;

/* Writes OUT (atomically). Base and fine-tune must have the same tensor names, dtypes, shapes. */
LB_API lb_status lb_delta_create(const char *base, const char *finetuned, const char *out,
                          const lb_delta_options *opt, lb_delta_summary *sum, lb_error *err);
/* Writes the patched model in the base's format: a GGUF (metadata copied), a safetensors file,
 * or for a folder base a folder OUT with model.safetensors and the base's other small files
 * (config, tokenizer, generation config). A base whose bytes differ from the one the delta was
 * made for is refused (LB_ERR_MISMATCH); nothing is left at OUT on any failure. */
LB_API lb_status lb_delta_apply(const char *base, const char *delta, const char *out, lb_progress_fn progress,
                         void *ud, lb_error *err);
/* Inspection (lowbit delta info): open fully checks the file (structure, sizes, every tensor's
 * checksum); the info strings point into d. */
typedef struct lb_delta lb_delta;
LB_API lb_status lb_delta_open(const char *path, lb_delta **out, lb_error *err);
LB_API void lb_delta_close(lb_delta *d);
LB_API const char *lb_delta_mode_name(lb_delta_mode m);
typedef struct lb_delta_info {
    lb_delta_mode mode;
    int version, lossless;             /* version 1: xor/float/int8, 2: zdiff/sign/mixed */
    size_t n_tensors, n_changed;
    uint64_t data_bytes, weight_bytes; /* delta data, and the fine-tune weights it stands for */
    double max_err;                    /* largest |error| of any tensor (0 when lossless) */
    const char *base_format;
    uint64_t base_fingerprint;
} lb_delta_info;
LB_API void lb_delta_get_info(const lb_delta *d, lb_delta_info *out);
typedef struct lb_delta_tensor_info {
    const char *name, *dtype, *encoding; /* same, zstd, mixed, sign, dense or sparse */
    uint64_t data_bytes, weight_bytes;
    double max_err, rms_err;
} lb_delta_tensor_info;
LB_API lb_status lb_delta_get_tensor(const lb_delta *d, size_t i, lb_delta_tensor_info *out, lb_error *err);

/* Sparse: keeps the elements with |x| > threshold (threshold >= 0; NaNs are kept). *indices and
 * *values are malloc'ed (free with free(); NULL when nothing is kept), indices ascending.
 * ratio = dense bytes / sparse bytes = (n * 4) / (n_kept * (4 + 4)), u32 index + f32 value
 * per kept element; +inf when n_kept == 0. n must fit u32 indices (n <= 2^32). */
LB_API lb_status lb_compress_delta_sparse(const float *delta, size_t n, float threshold,
                                   uint32_t **indices, float **values, size_t *n_kept,
                                   double *ratio, lb_error *err);
/* out[0..n) = 0 except out[indices[i]] = values[i]; an index >= n -> LB_ERR_RANGE. */
LB_API lb_status lb_decompress_delta_sparse(const uint32_t *indices, const float *values, size_t n_kept,
                                     float *out, size_t n, lb_error *err);

/* Int8 with symmetric per-block scales: block b covers elements [b*block, (b+1)*block) (the last
 * block may be shorter); scales[b] = absmax_b / 127, q[i] = round_half_even(x * (1/scale))
 * clamped to [-127, 127] (0 when the block is all zero); decoding gives q[i] * scales[b].
 * q holds n bytes, scales ceil(n / block) floats. Non-finite input -> LB_ERR_ARG. */
#define LB_DELTA_INT8_BLOCK 64
LB_API lb_status lb_compress_delta_int8(const float *delta, size_t n, size_t block, int8_t *q,
                                 float *scales, lb_error *err);
LB_API lb_status lb_decompress_delta_int8(const int8_t *q, const float *scales, size_t n, size_t block,
                                   float *out, lb_error *err);

/* Lossless mode: out = a XOR b on the raw bit patterns of n elements of elem_size 2 or 4 bytes.
 * Applying the same XOR to the base restores the fine-tune bit for bit. out may alias a or b. */
LB_API lb_status lb_delta_xor(const void *a, const void *b, void *out, size_t n, size_t elem_size,
                       lb_error *err);
/* The non-zero bit patterns of n elements of elem_size 2 or 4 (e.g. an XOR delta): *indices
 * (ascending u32) and *values (n_kept elements of elem_size bytes), malloc'ed, NULL when none.
 * Exact: unlike a float threshold it also keeps patterns such as a lone sign bit. */
LB_API lb_status lb_delta_sparse_bits(const void *x, size_t n, size_t elem_size, uint32_t **indices,
                               void **values, size_t *n_kept, lb_error *err);

/* Index gaps for the delta file: gaps[0] = idx[0], gaps[i] = idx[i] - idx[i-1] - 1 (indices
 * strictly ascending, else LB_ERR_ARG). Decoding checks every index < limit (LB_ERR_RANGE) and
 * never overflows; gaps and idx may be the same array. */
LB_API lb_status lb_delta_indices_encode(const uint32_t *idx, size_t n, uint32_t *gaps, lb_error *err);
LB_API lb_status lb_delta_indices_decode(const uint32_t *gaps, size_t n, uint64_t limit, uint32_t *idx,
                                  lb_error *err);

/* ---- memory (src/mem) ------------------------------------------------------------------ */
/* Monitor: system (/proc/meminfo), cgroup (v2, or the v1 memory controller on hybrid hosts),
 * pressure stall information (/proc/pressure/memory) and this process (/proc/self/status,
 * statm; smaps_rollup on request). The files stay open and are re-read with pread, so a snapshot
 * is a few syscalls. All byte counts are bytes. A missing source (no cgroup, no PSI, an old
 * kernel) clears its *_present flag; it is never an error. Not thread-safe: one monitor per
 * thread, or lock around it. */
typedef struct lb_memmon lb_memmon;

typedef struct lb_psi_avg {
    double avg10, avg60, avg300; /* percent of wall time stalled, 0..100 */
} lb_psi_avg;

typedef struct lb_mem_snapshot {
    uint64_t time_ns; /* CLOCK_MONOTONIC when taken */
    /* system */
    uint64_t sys_total, sys_available, sys_free, sys_cached, sys_swap_total, sys_swap_free;
    /* cgroup: the process's own group; limit is the smallest of it and its ancestors */
    int cgroup_present;        /* 0 when not in a memory-controlled cgroup */
    int cgroup_version;        /* 2, or 1 for the legacy memory controller */
    uint64_t cgroup_limit;     /* UINT64_MAX when unlimited ("max") */
    uint64_t cgroup_usage;     /* memory.current (v1: memory.usage_in_bytes) */
    int cgroup_peak_present;   /* memory.peak (v1: memory.max_usage_in_bytes) exists */
    uint64_t cgroup_peak;
    /* memory.stat costs as much as the rest of a snapshot together, so it is read only when
     * the cgroup has a limit (the working set matters then) or for a detailed snapshot */
    int cgroup_stat_present;
    uint64_t cgroup_anon, cgroup_file, cgroup_inactive_file;
    /* pressure stall information */
    int psi_present;
    lb_psi_avg psi_some, psi_full;
    /* process (statm, getrusage): rss = anon + file; file counts shared memory too (RssFile +
     * RssShmem); peak_rss is ru_maxrss, the number /usr/bin/time -v reports (>= VmHWM) */
    uint64_t proc_rss, proc_anon, proc_file, proc_peak_rss, proc_vm_size;
    /* only from lb_memmon_snapshot_detailed (/proc/self/status and smaps_rollup; 0 when a file
     * is missing); detailed_present says so */
    int detailed_present;
    uint64_t proc_shmem, proc_swap, proc_hwm; /* RssShmem, VmSwap, VmHWM */
    uint64_t proc_pss, proc_pss_anon, proc_pss_file, proc_pss_shmem, proc_private_dirty,
        proc_locked;
} lb_mem_snapshot;

LB_API lb_status lb_memmon_open(lb_memmon **out, lb_error *err);
LB_API void lb_memmon_close(lb_memmon *m);
/* The cgroup directory in use ("" when none). */
LB_API const char *lb_memmon_cgroup_path(const lb_memmon *m);
LB_API lb_status lb_memmon_snapshot(lb_memmon *m, lb_mem_snapshot *out, lb_error *err);
/* Adds /proc/self/smaps_rollup (PSS, locked): about ten times slower than a plain snapshot. */
LB_API lb_status lb_memmon_snapshot_detailed(lb_memmon *m, lb_mem_snapshot *out, lb_error *err);

/* Pressure levels. The level is the highest that any one signal reaches:
 *                      LOW      MEDIUM   HIGH     CRITICAL
 *   available/total    < 25%    < 15%    < 8%     < 3%
 *   cgroup working set > 75%    > 85%    > 92%    > 97%   of the limit (working set = usage
 *                                                           minus inactive file cache, which
 *                                                           the kernel reclaims first)
 *   PSI some avg10     > 1%     > 10%    > 25%    > 50%
 *   PSI full avg10     -        > 1%     > 5%     > 20%
 * CRITICAL means the kernel is about to reclaim hot pages or OOM-kill: stop growing now. */
typedef enum lb_mem_pressure {
    LB_MEM_PRESSURE_NONE = 0,
    LB_MEM_PRESSURE_LOW,
    LB_MEM_PRESSURE_MEDIUM,
    LB_MEM_PRESSURE_HIGH,
    LB_MEM_PRESSURE_CRITICAL
} lb_mem_pressure;

LB_API lb_mem_pressure lb_mem_pressure_level(const lb_mem_snapshot *s);
LB_API const char *lb_mem_pressure_name(lb_mem_pressure p); /* "none", "low", ... */
/* Writes which signal set the level ("cgroup working set 93% of limit") into buf. */
LB_API const char *lb_mem_pressure_reason(const lb_mem_snapshot *s, char *buf, size_t cap);

/* The memory guard of generation loops: polls a monitor every few tokens. HIGH pressure warns
 * once; CRITICAL says stop now (the kernel is about to reclaim hot pages, our mmapped weights,
 * or OOM-kill: a stopped run is better than a thrashing machine). */
typedef enum lb_mem_guard_action {
    LB_MEM_GUARD_CONTINUE = 0,
    LB_MEM_GUARD_WARN, /* first time the level reached HIGH */
    LB_MEM_GUARD_STOP  /* CRITICAL */
} lb_mem_guard_action;
/* root: NULL or "" for the real /proc and /sys, else a fake tree (tests).
 * every: poll once per this many steps (0: 8); the first step polls. */
LB_API lb_status lb_mem_guard_open(const char *root, unsigned every, lb_mem_guard **out, lb_error *err);
LB_API void lb_mem_guard_close(lb_mem_guard *g);
/* One call per generated token. A failed snapshot counts as no pressure (logged once). */
LB_API lb_mem_guard_action lb_mem_guard_step(lb_mem_guard *g);
/* Level and the signal that set it at the last change ("available memory 2.1% of total"). */
LB_API lb_mem_pressure lb_mem_guard_level(const lb_mem_guard *g);
LB_API const char *lb_mem_guard_reason(const lb_mem_guard *g);
LB_API unsigned long lb_mem_guard_polls(const lb_mem_guard *g);

/* Called from lb_memmon_poll when the level changes (the first poll counts as a change from
 * NONE only when the level is not NONE). */
typedef void (*lb_mem_pressure_cb)(lb_mem_pressure old_level, lb_mem_pressure new_level,
                                   const lb_mem_snapshot *s, void *userdata);
LB_API lb_status lb_memmon_on_pressure(lb_memmon *m, lb_mem_pressure_cb cb, void *userdata, lb_error *err);
/* Takes a snapshot, calls the callbacks if the level changed; *level (may be NULL) gets it. */
LB_API lb_status lb_memmon_poll(lb_memmon *m, lb_mem_pressure *level, lb_error *err);

/* Tracked allocation (runtime buffers: KV cache, activations, scratch). A tracker counts the
 * bytes it hands out, in total and per tag ("kv", "scratch", "logits"); the allocation calls
 * themselves are internal (src/mem/arena.h). In debug mode (LB_MEM_TRACK_DEBUG, or the
 * environment variable LOWBIT_DEBUG_ALLOC=1) it records each allocation's file:line and reports
 * what was never freed. Not thread-safe. */
typedef struct lb_mem_tracker lb_mem_tracker;

#define LB_MEM_TRACK_DEBUG 1u
#define LB_MEM_MAX_TAGS 32

typedef struct lb_mem_tag_stats {
    char name[24];
    uint64_t live_bytes, peak_bytes, n_allocs;
} lb_mem_tag_stats;

typedef struct lb_mem_stats {
    uint64_t live_bytes, peak_bytes; /* requested bytes (arenas and pools count their whole chunk) */
    uint64_t n_allocs, n_frees, n_live;
    int n_tags;
    lb_mem_tag_stats tags[LB_MEM_MAX_TAGS]; /* tags past the last slot are counted as "other" */
} lb_mem_stats;

LB_API lb_status lb_mem_tracker_new(unsigned flags, lb_mem_tracker **out, lb_error *err);
/* In debug mode, logs a leak report (a warning) when allocations are still live. */
LB_API void lb_mem_tracker_free(lb_mem_tracker *t);
LB_API void lb_mem_tracker_stats(const lb_mem_tracker *t, lb_mem_stats *out);
/* Writes one line per live allocation ("kv 4096 bytes at src/x.c:12") into buf (truncated to
 * cap, always NUL-terminated when cap > 0) and returns the number of live allocations. Sites are
 * known only in debug mode ("?:0" otherwise). */
LB_API size_t lb_mem_tracker_leaks(const lb_mem_tracker *t, char *buf, size_t cap);

/* Sizes. Binary units: 6G = 6GiB = 6GB = 6 x 2^30 bytes. Accepts an integer or decimal number
 * ("1.5G") with an optional unit B, K, M, G, T, P (each optionally followed by "iB" or "B",
 * any case). Refuses empty, garbage, negative, zero, fractional byte counts and sizes > 1 PiB. */
LB_API lb_status lb_size_parse(const char *s, uint64_t *out, lb_error *err);
/* "3.56 GiB", "512 B"; returns buf. */
LB_API const char *lb_size_format(uint64_t n, char *buf, size_t cap);

/* Budget planner: the largest context and KV cache type that fit a memory budget. Pure. */
typedef enum lb_mem_kv_dtype { LB_MEM_KV_F32 = 0, LB_MEM_KV_F16, LB_MEM_KV_Q8_0, LB_MEM_KV_COUNT } lb_mem_kv_dtype;
LB_API const char *lb_mem_kv_dtype_name(lb_mem_kv_dtype t); /* "f32", "f16", "q8_0" */

typedef struct lb_mem_plan_in {
    uint64_t budget;                             /* bytes; required */
    uint64_t weight_bytes;                       /* resident weights (mmapped or loaded) */
    uint64_t kv_bytes_per_token[LB_MEM_KV_COUNT]; /* all layers, K and V; 0: type not available */
    uint64_t scratch_bytes;                      /* activations, logits: fixed part */
    uint64_t scratch_bytes_per_token;            /* the part that grows with the context */
    uint64_t overhead_bytes;                     /* tokenizer, runtime, code */
    uint32_t n_ctx_requested;                    /* 0: the trained context */
    uint32_t n_ctx_train;                        /* 0: unknown (then n_ctx_requested is needed) */
    uint32_t n_ctx_min;                          /* smallest useful context when shrinking; 0: 16 */
    uint32_t n_ctx_align;                        /* a shrunk context is a multiple of this; 0: 1 */
    int ctx_strict;                              /* 1: never shrink (the user asked for --ctx) */
    int kv_forced;                               /* -1: choose; else an lb_mem_kv_dtype to use */
    uint64_t memlock_limit;                      /* RLIMIT_MEMLOCK; 0: never lock the weights */
} lb_mem_plan_in;

typedef struct lb_mem_plan {
    uint32_t n_ctx;
    lb_mem_kv_dtype kv_dtype;
    uint64_t weight_bytes, kv_bytes, scratch_bytes, overhead_bytes, total_bytes, budget;
    int shrunk;       /* n_ctx < the requested context */
    int kv_fallback;  /* Q8_0 (or F32) chosen instead of F16 */
    int lock_weights; /* the weights fit RLIMIT_MEMLOCK and the plan fits: mlock them */
    char summary[512]; /* the plan, or why nothing fits, as one line */
} lb_mem_plan;

/* Order: F16 at the requested context, then Q8_0 at it, then (unless ctx_strict) the largest
 * context with Q8_0 (or the forced type). LB_OK with out filled when something fits;
 * LB_ERR_BUDGET with out->summary and err naming every part ("weights 3.56 GiB + KV cache (4096
 * tokens, f16) 2.00 GiB + scratch 0.10 GiB = 5.66 GiB > budget 4.00 GiB"); LB_ERR_RANGE when
 * the requested context exceeds the trained one; LB_ERR_ARG for a zero budget or no KV type. */
LB_API lb_status lb_mem_plan_make(const lb_mem_plan_in *in, lb_mem_plan *out, lb_error *err);

/* Per-model accounting (src/mem/report.c): what a loaded model and (optionally) its session
 * hold, from the tensor table, the mappings (mincore) and the session's tracker. */
#define LB_MEM_REPORT_MAX_DTYPES 8

typedef struct lb_mem_dtype_bytes {
    char dtype[12];     /* "F16", "Q4_0"; "other" collects types past the last slot */
    uint64_t bytes;
    uint32_t n_tensors;
} lb_mem_dtype_bytes;

typedef struct lb_mem_report {
    /* weights: weight_bytes = mapped_weight_bytes + owned_weight_bytes = sum of the tensors' sizes */
    uint64_t weight_bytes, n_tensors;
    int n_dtypes;                                   /* by_dtype entries used, largest first */
    lb_mem_dtype_bytes by_dtype[LB_MEM_REPORT_MAX_DTYPES];
    uint64_t mapped_weight_bytes;   /* tensors used in place from the mmapped file (zero-copy) */
    uint64_t owned_weight_bytes;    /* tensors converted or copied at load into owned buffers */
    uint64_t mapped_bytes;          /* all file mappings: weights plus headers and vocabulary */
    uint64_t mapped_resident_bytes; /* pages of the mappings in RAM now (mincore) */
    int mapped_resident_known;      /* 0 when mincore failed */
    uint64_t owned_bytes;           /* every buffer the loader allocated (lb_model->bufs) */
    uint32_t n_owned;
    uint64_t tokenizer_bytes;       /* estimate: piece bytes + 40 bytes of tables per entry */
    /* session (zero when none was given) */
    int has_session;
    int n_ctx, n_past, n_threads;
    char kv_type[8];                /* "f32", "f16", "q8_0" */
    uint64_t kv_bytes_per_token;    /* all layers, K and V */
    uint64_t kv_bytes;              /* allocated: n_ctx positions */
    uint64_t kv_used_bytes;         /* filled: n_past positions */
    uint64_t kv_resident_bytes;     /* pages of the cache in RAM now (mincore; the cache is not
                                     * zeroed, so pages become resident as positions fill) */
    uint64_t scratch_bytes;         /* activations (tag "scratch") */
    uint64_t logits_bytes;          /* tag "logits" */
    uint64_t attention_bytes;       /* attention scores, n_threads x n_ctx (tag "attention") */
    lb_mem_stats runtime;           /* the session's tracker: live and peak per tag */
    /* weights + tokenizer + KV + scratch + logits + attention: the model's cost with every
     * page resident */
    uint64_t total_bytes;
    /* this process now, for comparison (statm, getrusage) */
    uint64_t proc_rss, proc_peak_rss;
    /* anonymous RSS - owned buffers - kv_resident: what else is resident besides weights and KV
     * (scratch, tokenizer, heap, thread stacks, the caller's own buffers); 0 if negative */
    uint64_t overhead_bytes;
    /* a .lbz restored at load: its buffer (in owned_bytes, not mapped_bytes) and the tensors in
     * it (in owned_weight_bytes, never mapped_weight_bytes) */
    uint64_t restored_bytes, restored_weight_bytes;
} lb_mem_report;

/* s may be NULL (then only the model's part is filled). */
LB_API lb_status lb_model_mem_report(const lb_model *m, const lb_session *s, lb_mem_report *out, lb_error *err);

/* Fills the model's part of a plan request: weight_bytes (all tensors), kv_bytes_per_token for
 * the KV cache types the engine has (F32, F16, Q8_0; Q8_0 stays 0 when head_dim % 32 != 0),
 * scratch fixed and per token for n_threads (0: all online CPUs), overhead (tokenizer estimate
 * + LB_MEM_RUNTIME_ALLOWANCE for code, libc, thread stacks) and n_ctx_train; kv_forced = -1.
 * The caller sets budget, n_ctx_requested, ctx_strict (and kv_forced to pin a type). */
#define LB_MEM_RUNTIME_ALLOWANCE (24ull << 20)
LB_API void lb_model_mem_plan_input(const lb_model *m, int n_threads, lb_mem_plan_in *in);
/* Locks the model's mapped weights in RAM (mlock), so memory pressure cannot evict them and
 * make every token re-read them from disk; what a plan with lock_weights asks for. */
LB_API lb_status lb_model_lock_weights(lb_model *m, lb_error *err);

#ifdef __cplusplus
}
#endif
#endif
