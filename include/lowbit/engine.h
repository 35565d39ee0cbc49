/* lowbit public API, part: the generation loop, the batched engine, synthetic models. Included by lowbit.h only (it relies on what lowbit.h
 * and the parts before it declare); include <lowbit.h>, never this file. */
#ifndef LOWBIT_ENGINE_H
#define LOWBIT_ENGINE_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

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
    /* Speculative decoding (src/engine/spec.c): drafted tokens are verified by the target in one
     * batched call, so greedy output is identical to plain decoding and sampled output has the
     * target's distribution (rejection sampling); only the speed changes. */
    lb_session *draft;         /* optional: a session of a smaller model with the same vocabulary
                                * (LB_ERR_ARG otherwise) that drafts tokens; lb_generate keeps it
                                * in step with s (what it holds is reused when it agrees) */
    int lookup;                /* > 0: draft by prompt lookup instead (lb_lookup_draft): the tokens
                                * that followed the longest earlier match of the context's end, a
                                * match of at least `lookup` tokens (1 to 64) */
    int draft_max;             /* most tokens drafted per step (0: 16); fewer while drafts fail */
    float draft_min_p;         /* stop drafting when the draft model gives its next token less
                                * than this probability (0: off) */
} lb_generate_params;
LB_API lb_generate_params lb_generate_default_params(void);

/* Prompt lookup drafting, as lb_generate's lookup mode does it (for callers that verify drafts
 * themselves, such as lowbit serve): finds the earlier occurrence of the end of ctx[0..n) that
 * matches it longest (compared up to 64 tokens back; the latest one on ties), and writes to out
 * the tokens that followed it: at most k, and no more than the match is long (past the end of
 * ctx a match repeats itself, so a loop goes on). Returns how many (0: no match of at least
 * min_match tokens). The context holds the generated tokens too, so output that repeats itself
 * drafts from itself. */
LB_API int lb_lookup_draft(const int32_t *ctx, size_t n, int min_match, int k, int32_t *out);
/* How many tokens to draft (0 to k_max; 0: a plain step pays more) when each draft is kept with
 * probability accept (given the ones before it were) and verifying one more token costs `cost`
 * plain steps: the k with the most expected tokens per unit of time. */
LB_API int lb_spec_best_k(double accept, double cost, int k_max);
/* LB_ERR_ARG, naming the first difference, unless draft shares target's vocabulary (the same
 * size, and the same bytes for all but 1% of the tokens: converters write special tokens such as
 * <unk> differently). lb_generate checks its draft session so; lowbit serve its --draft. */
LB_API lb_status lb_draft_check_vocab(const lb_model *target, const lb_model *draft, lb_error *err);

typedef struct lb_generate_result {
    int32_t *prompt_ids, *ids;   /* the prompt as run, the generated ids (with the tokens of a stop
                                  * string, without an end-of-generation token) */
    size_t n_prompt_ids, n_ids;
    char *text;                  /* the generated text, NUL-terminated, up to a stop string */
    size_t text_len;
    lb_stop_reason stop;
    double prompt_seconds, gen_seconds; /* wall time of the prompt, of the generated tokens */
    size_t n_drafted, n_accepted; /* speculative decoding: tokens drafted, drafted tokens accepted */
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
    int stream_window;  /* 0: off; N: weights streamed through N layers (lb_session_params) */
} lb_engine_params;
LB_API lb_engine_params lb_engine_default_params(void);
LB_API lb_status lb_engine_new(lb_model *m, const lb_engine_params *p, lb_engine **out, lb_error *err);
LB_API void lb_engine_free(lb_engine *e);
/* Loads a delta file (lowbit delta create) made against the engine's model as a fine-tune the
 * sequences can name; *ft_id is 1, 2, ... (0 is the base model). */
LB_API lb_status lb_engine_add_finetune(lb_engine *e, const char *delta_path, int *ft_id, lb_error *err);
/* For memory planning, before any engine exists: what lb_engine_add_finetune(delta_path) adds to
 * an engine of m. *resident: the corrections it keeps (F32, every element of every tensor the
 * delta changes); *load_extra: what its load holds besides, for a moment (the patched second
 * load of the base: another mapping of the base's files, the changed tensors at their own type,
 * one tensor's floats); *scratch: the engine's correction buffers for p->max_batch entries, held
 * once however many fine-tunes are loaded. The delta is opened and checked (lb_delta_open), not
 * matched to the base: a delta made for another base still fails at lb_engine_add_finetune. */
LB_API lb_status lb_engine_finetune_plan(const lb_model *m, const char *delta_path, const lb_engine_params *p,
                                         uint64_t *resident, uint64_t *load_extra, uint64_t *scratch, lb_error *err);
/* Sequences: ids are >= 0; a freed id may be handed out again. */
LB_API lb_status lb_engine_seq_new(lb_engine *e, int ft_id, int *seq, lb_error *err);
/* A new sequence holding everything src holds (same fine-tune), sharing its KV blocks. */
LB_API lb_status lb_engine_seq_fork(lb_engine *e, int src, int *seq, lb_error *err);
LB_API lb_status lb_engine_seq_free(lb_engine *e, int seq, lb_error *err);
/* Keeps the first n positions of seq (speculative decoding rolls rejected drafts back);
 * blocks shared with forks or the prefix cache stay intact. */
LB_API lb_status lb_engine_seq_truncate(lb_engine *e, int seq, int n, lb_error *err);
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
/* For memory planning: the bytes an engine made with p for m holds besides its KV pool and the
 * weights: *fixed for the forward pass's scratch of p->max_batch entries, *per_ctx_token for the
 * attention rows, times the longest sequence (p->n_ctx). A loaded fine-tune adds its own. */
LB_API void lb_engine_scratch_plan(const lb_model *m, const lb_engine_params *p, size_t *fixed, size_t *per_ctx_token);
LB_API int lb_engine_n_threads(const lb_engine *e);

/* ---- synthetic models (src/io/synth.c) --------------------------------------------------- */
/* Writes a GGUF model with the real shapes of a known model (preset: tiny, stories15m, llama-1b,
 * llama-7b, llama-8b) and random weights, for speed and memory benchmarks. dtype: "f32", "f16",
 * "bf16". tokenizer_path: a tokenizer to embed (padded to the vocabulary size); NULL embeds a
 * generated byte-fallback vocabulary. */
LB_API lb_status lb_synth_write(const char *preset, const char *dtype, const char *tokenizer_path, uint64_t seed,
                         const char *out_path, lb_progress_fn progress, void *user, lb_error *err);
/* Changes to a preset (zero fields keep it): n_layers; sliding_window (Mistral-style attention
 * over the last W positions, written as <arch>.attention.sliding_window). */
typedef struct lb_synth_opts {
    int n_layers, sliding_window;
} lb_synth_opts;
LB_API lb_status lb_synth_write_ex(const char *preset, const char *dtype, const char *tokenizer_path, uint64_t seed,
                                   const lb_synth_opts *opts, const char *out_path, lb_progress_fn progress, void *user,
                                   lb_error *err);
/* The preset names, NULL-terminated. */
LB_API const char *const *lb_synth_presets(void);

#endif
