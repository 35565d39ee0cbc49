/* Model -> GGUF conversion (convert.c): the conventions of GGUF files per architecture, shared
 * with anything else that writes GGUF from a loaded model (quantize). */
#ifndef LB_IO_CONVERT_H
#define LB_IO_CONVERT_H
#include "core/model.h"
#include "io/gguf.h"

/* The Q/K row order a GGUF file of this architecture stores, as llama.cpp defines it: llama
 * and mistral (written as llama) adjacent pairs (NORM); qwen2 and bitnet rotate_half (NEOX). */
lb_rope_layout lb_gguf_arch_rope(lb_arch a);
/* The architecture name written to GGUF (mistral is written as llama, as llama.cpp does). */
lb_arch lb_gguf_arch_out(lb_arch a);

/* Source row of destination row r when a Q or K weight (or bias) with n_heads heads of head_dim
 * rows is reordered from one RoPE layout to another. */
int64_t lb_rope_permute_row(int64_t r, int head_dim, lb_rope_layout from, lb_rope_layout to);

/* 1 when the GGUF tensor name is a Q or K weight/bias ("blk.N.attn_q.weight", ...). */
int lb_is_rope_tensor(const char *name);

/* Writes every metadata key of m (config, lowbit keys, tokenizer, chat template) to w. */
/* Loads a model to be rewritten (convert, quantize): one thread, an optional tokenizer file.
 * Unless no_tokenizer, a model without a tokenizer is refused (LB_ERR_FORMAT, naming the files
 * looked for), since `run` would refuse the output only after the whole job. */
lb_status lb_convert_load(const char *in, const char *tokenizer_path, int no_tokenizer, lb_model **out, lb_error *err);
lb_status lb_convert_set_meta(lb_gguf_writer *w, const lb_model *m, const char *name, lb_error *err);
#endif
