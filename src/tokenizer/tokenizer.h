/* Internal tokenizer interface. A tokenizer is an ops table plus the special ids every
 * implementation shares. Implementations: spm.c (SentencePiece BPE), bpe.c (Hugging Face
 * tokenizer.json BPE). */
#ifndef LB_TOKENIZER_TOKENIZER_H
#define LB_TOKENIZER_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "core/vec.h"
#include "lowbit.h"

typedef struct lb_tokenizer_ops {
    const char *kind; /* "sentencepiece", "bpe" */
    /* Appends the ids of text to out; add_special adds BOS/EOS etc. exactly as the tokenizer
     * itself would (SentencePiece add_bos, Hugging Face post-processor). */
    lb_status (*encode)(const lb_tokenizer *t, const char *text, size_t len, int add_special,
                        lb_ids *out, lb_error *err);
    /* Writes the bytes that id decodes to into buf (up to cap) and returns their count (which
     * may exceed cap: call again with a larger buffer). first: id is the first token of the
     * text being decoded, so a leading space added by the encoder is dropped. Control tokens
     * (BOS, EOS) decode to nothing. Ids out of range decode to nothing. */
    size_t (*decode_token)(const lb_tokenizer *t, int32_t id, int first, char *buf, size_t cap);
    void (*free)(void *impl);
} lb_tokenizer_ops;

struct lb_tokenizer {
    const lb_tokenizer_ops *ops;
    void *impl;
    int32_t n_vocab;
    int32_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int32_t eot_id;    /* extra end-of-turn id for chat (e.g. <|eot_id|>, <|im_end|>), -1 if none */
    char *chat_template; /* owned, may be NULL */
};

/* Allocates the common part; impl is owned and freed with ops->free. */
lb_tokenizer *lb_tokenizer_new(const lb_tokenizer_ops *ops, void *impl, int32_t n_vocab);

/* Vocabulary as stored in GGUF (tokenizer.ggml.*) or other containers. Strings are not
 * NUL-terminated: lengths are given. */
typedef struct lb_vocab_desc {
    size_t n_tokens;
    const char *const *tokens;
    const size_t *token_lens;
    const float *scores;       /* NULL when absent */
    const int32_t *types;      /* GGUF token types: 1 normal, 2 unknown, 3 control, 4 user, 6 byte; NULL absent */
    size_t n_merges;           /* BPE merges "a b" */
    const char *const *merges;
    const size_t *merge_lens;
    int32_t bos_id, eos_id, unk_id, pad_id, eot_id; /* -1 when absent */
    int add_bos, add_eos;      /* -1 when not stated */
    const char *pre;           /* GGUF tokenizer.ggml.pre, NULL when absent */
} lb_vocab_desc;

/* SentencePiece (spm.c) */
lb_status lb_spm_load_model(const char *path, lb_tokenizer **out, lb_error *err);           /* tokenizer.model (protobuf) */
lb_status lb_spm_parse_model(const void *data, size_t size, const char *name, lb_tokenizer **out, lb_error *err);
lb_status lb_spm_load_llama2c(const char *path, int32_t n_vocab, lb_tokenizer **out, lb_error *err); /* tokenizer.bin; n_vocab 0: to EOF */
lb_status lb_spm_from_vocab(const lb_vocab_desc *v, lb_tokenizer **out, lb_error *err);      /* GGUF model "llama" */

/* Hugging Face tokenizer.json BPE (bpe.c) */
lb_status lb_bpe_load_json(const char *path, lb_tokenizer **out, lb_error *err);
lb_status lb_bpe_parse_json(const char *json, size_t len, const char *name, lb_tokenizer **out, lb_error *err);
lb_status lb_bpe_from_vocab(const lb_vocab_desc *v, lb_tokenizer **out, lb_error *err);      /* GGUF model "gpt2" */

/* A vocabulary exported for writing into GGUF (tokenizer.ggml.*): d's arrays are owned here. */
typedef struct lb_vocab_export {
    const char *model; /* "llama" (SentencePiece) or "gpt2" (byte-level BPE) */
    lb_vocab_desc d;
    void *own[8];
} lb_vocab_export;
/* Exports t; pad_to > n_vocab appends unused pieces "<unused_N>" so the vocabulary matches a
 * model's embedding rows. */
lb_status lb_tokenizer_export(const lb_tokenizer *t, int32_t pad_to, lb_vocab_export *out, lb_error *err);
void lb_vocab_export_free(lb_vocab_export *v);

/* Picks the loader by file name/content: tokenizer.json, *.model, llama2.c *.bin, or a folder
 * holding one of them. n_vocab is only used for llama2.c .bin files (0: read to EOF). */
lb_status lb_tokenizer_load_path(const char *path, int32_t n_vocab, lb_tokenizer **out, lb_error *err);

#endif
