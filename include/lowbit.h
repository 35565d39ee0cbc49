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

lb_lbz_options lb_lbz_default_options(void);

/* Writes OUT (atomically) as the .lbz container of IN; see docs/lbz.md. */
lb_status lb_lbz_compress(const char *in, const char *out, const lb_lbz_region *regions,
                          size_t n_regions, const lb_lbz_options *opt, lb_progress_fn progress,
                          void *ud, lb_error *err);
/* Restores the original file bit for bit (atomically), verifying every checksum. */
lb_status lb_lbz_decompress(const char *in, const char *out, int n_threads,
                            lb_progress_fn progress, void *ud, lb_error *err);
/* Restores the original file into a 4096-byte aligned buffer (free with free()). */
lb_status lb_lbz_decompress_to_memory(const char *in, int n_threads, void **buf, size_t *size,
                                      lb_error *err);

/* Random access. A handle is not safe for concurrent lb_lbz_read calls from several threads. */
typedef struct lb_lbz lb_lbz;
lb_status lb_lbz_open(const char *path, lb_lbz_name_fn name_at, void *name_ud, lb_lbz **out,
                      lb_error *err);
void lb_lbz_close(lb_lbz *z);
void lb_lbz_set_name_fn(lb_lbz *z, lb_lbz_name_fn name_at, void *name_ud);
uint64_t lb_lbz_original_size(const lb_lbz *z);
/* The original file's first header_len bytes (verified at open); valid until close. */
const void *lb_lbz_header(const lb_lbz *z, size_t *header_len);
size_t lb_lbz_n_chunks(const lb_lbz *z);
/* Copies original bytes [offset, offset+len) into dst, decoding only the chunks needed. */
lb_status lb_lbz_read(lb_lbz *z, uint64_t offset, size_t len, void *dst, lb_error *err);
/* Whole-file restores from an open handle (the name callback is used in messages). */
lb_status lb_lbz_extract(lb_lbz *z, const char *out, int n_threads, lb_progress_fn progress,
                         void *ud, lb_error *err);
lb_status lb_lbz_extract_to_memory(lb_lbz *z, int n_threads, lb_progress_fn progress, void *ud,
                                   void **buf, size_t *size, lb_error *err);

/* ---- deltas (src/delta) ---------------------------------------------------------------- */
/* Sparse: keeps the elements with |x| > threshold (threshold >= 0; NaNs are kept). *indices and
 * *values are malloc'ed (free with free(); NULL when nothing is kept), indices ascending.
 * ratio = dense bytes / sparse bytes = (n * 4) / (n_kept * (4 + 4)), u32 index + f32 value
 * per kept element; +inf when n_kept == 0. n must fit u32 indices (n <= 2^32). */
lb_status lb_compress_delta_sparse(const float *delta, size_t n, float threshold,
                                   uint32_t **indices, float **values, size_t *n_kept,
                                   double *ratio, lb_error *err);
/* out[0..n) = 0 except out[indices[i]] = values[i]; an index >= n -> LB_ERR_RANGE. */
lb_status lb_decompress_delta_sparse(const uint32_t *indices, const float *values, size_t n_kept,
                                     float *out, size_t n, lb_error *err);

/* Int8 with symmetric per-block scales: block b covers elements [b*block, (b+1)*block) (the last
 * block may be shorter); scales[b] = absmax_b / 127, q[i] = round_half_even(x * (1/scale))
 * clamped to [-127, 127] (0 when the block is all zero); decoding gives q[i] * scales[b].
 * q holds n bytes, scales ceil(n / block) floats. Non-finite input -> LB_ERR_ARG. */
#define LB_DELTA_INT8_BLOCK 64
lb_status lb_compress_delta_int8(const float *delta, size_t n, size_t block, int8_t *q,
                                 float *scales, lb_error *err);
lb_status lb_decompress_delta_int8(const int8_t *q, const float *scales, size_t n, size_t block,
                                   float *out, lb_error *err);

/* Lossless mode: out = a XOR b on the raw bit patterns of n elements of elem_size 2 or 4 bytes.
 * Applying the same XOR to the base restores the fine-tune bit for bit. out may alias a or b. */
lb_status lb_delta_xor(const void *a, const void *b, void *out, size_t n, size_t elem_size,
                       lb_error *err);
/* The non-zero bit patterns of n elements of elem_size 2 or 4 (e.g. an XOR delta): *indices
 * (ascending u32) and *values (n_kept elements of elem_size bytes), malloc'ed, NULL when none.
 * Exact: unlike a float threshold it also keeps patterns such as a lone sign bit. */
lb_status lb_delta_sparse_bits(const void *x, size_t n, size_t elem_size, uint32_t **indices,
                               void **values, size_t *n_kept, lb_error *err);

/* Index gaps for the delta file: gaps[0] = idx[0], gaps[i] = idx[i] - idx[i-1] - 1 (indices
 * strictly ascending, else LB_ERR_ARG). Decoding checks every index < limit (LB_ERR_RANGE) and
 * never overflows; gaps and idx may be the same array. */
lb_status lb_delta_indices_encode(const uint32_t *idx, size_t n, uint32_t *gaps, lb_error *err);
lb_status lb_delta_indices_decode(const uint32_t *gaps, size_t n, uint64_t limit, uint32_t *idx,
                                  lb_error *err);

/* ---- memory (src/mem) ------------------------------------------------------------------ */

#ifdef __cplusplus
}
#endif
#endif
