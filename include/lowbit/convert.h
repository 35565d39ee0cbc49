/* lowbit public API, part: conversion, evaluation and quantization. Included by lowbit.h only (it relies on what lowbit.h
 * and the parts before it declare); include <lowbit.h>, never this file. */
#ifndef LOWBIT_CONVERT_H
#define LOWBIT_CONVERT_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

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
 * scored positions and the share where both argmax agree. kv_type: the model's KV cache
 * (LB_KV_F32 to compare weights alone; another type measures that cache's cost); the base's
 * cache is always F32. */
typedef struct lb_ppl_result {
    double ppl, nll;       /* exp(mean NLL), mean NLL (nats) */
    double kl, top1;       /* only when has_base */
    int has_base;
    size_t n_windows, n_scored;
} lb_ppl_result;
LB_API lb_status lb_perplexity(lb_model *m, lb_model *base, const int32_t *ids, size_t n_ids, int32_t bos_id, int n_ctx,
                        lb_kv_type kv_type, int n_threads, lb_progress_fn progress, void *user, lb_ppl_result *out, lb_error *err);

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
    /* NULL, or the importance matrix (lb_imatrix_load / lb_imatrix_compute) whose entry for a
     * matrix weights each column's rounding error in the scale search of every type that has
     * one (all block types but TQ1_0/TQ2_0); a matrix without an entry is quantized without. An
     * entry whose length differs from the matrix's rows is refused (another model's file). */
    const lb_imatrix *imatrix;
    /* NULL, or a GGUF file whose tensor types are copied tensor by tensor (same names and shapes
     * required): a fine-tune quantized exactly as its quantized base was, so the two differ only
     * where the weights do (`lowbit delta create`). type NULL: the file's general.file_type. */
    const char *like;
    /* NULL, or the inputs' second moments (lb_gptq_compute): every matrix of a block type whose
     * input it holds is quantized with GPTQ error compensation (the block's scale search weights
     * column j by H_jj / tokens, or by imatrix when that is given too). A tied embedding (also
     * the head) is compensated only with gptq_tied: its rows are looked up too. */
    const lb_gptq *gptq;
    double gptq_damp;    /* GPTQ dampening lambda = gptq_damp x mean diag(H); 0: 0.01 */
    int gptq_tied;       /* 1: compensate a tied embedding too, as the head it also is (lower KL on
                            tinystories-512d; its looked-up rows err more) */
} lb_quantize_params;
LB_API lb_quantize_params lb_quantize_default_params(void);
/* The accepted type names, NULL-terminated. */
LB_API const char *const *lb_quantize_type_names(void);
LB_API lb_status lb_quantize_file(const char *in, const char *out, const lb_quantize_params *p, lb_progress_fn progress,
                           void *user, lb_error *err);
LB_API lb_status lb_quantize_model(const lb_model *m, const char *out, const lb_quantize_params *p, lb_progress_fn progress,
                            void *user, lb_error *err);

#endif
