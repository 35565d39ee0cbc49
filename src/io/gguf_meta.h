/* Writing a model's description into GGUF metadata, the inverse of load_gguf.c / gguf_vocab.c:
 * shared by synth, convert and quantize so every file lowbit writes reads back the same way
 * and follows the conventions of GGUF `llama` models. */
#ifndef LB_IO_GGUF_META_H
#define LB_IO_GGUF_META_H
#include "core/model.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

/* general.architecture and ARCH.* hyperparameters (context, dims, heads, eps, rope). */
lb_status lb_gguf_set_config(lb_gguf_writer *w, const lb_config *c, const char *name, lb_error *err);
/* The rope_freqs.weight tensor when cfg's RoPE frequencies differ from the plain ones (llama3
 * scaling, frequencies rounded to a checkpoint dtype). factors: head_dim/2 floats that must
 * stay valid until the file is written. Adds nothing when not needed. */
lb_status lb_gguf_add_rope_freqs(lb_gguf_writer *w, const lb_config *c, float *factors, lb_error *err);
/* tokenizer.ggml.* from an exported vocabulary. */
lb_status lb_gguf_set_vocab(lb_gguf_writer *w, const lb_vocab_export *v, lb_error *err);
#endif
