/* Whole-model quantization (quantize_model.c): which type each tensor gets (recipes, fallbacks)
 * and the streaming, multi-threaded writer. The GGUF conventions (metadata, tokenizer, Q/K row
 * order) come from io/convert.h, so `lowbit convert` and `lowbit quantize` write the same file
 * layout. */
#ifndef LB_QUANT_QUANTIZE_MODEL_H
#define LB_QUANT_QUANTIZE_MODEL_H
#include "core/model.h"
#include "lowbit.h"

/* One tensor's decision. note: NULL, or why the type differs from the requested one
 * ("rows of 64 do not fit Q4_K blocks of 256: Q5_0", "output head kept at Q6_K", ...). */
typedef struct lb_qplan {
    lb_dtype type;
    int ternarize; /* values rounded to {-1, 0, 1} x absmean before storing (TQ, or its fallback) */
    int scale_tensor; /* bitnet: blocks hold d = 1 and the exact absmean goes to NAME.scale (F32 [1]) */
    char note[112];
} lb_qplan;

/* The recipe behind a --type name; NULL when unknown. */
typedef struct lb_qrecipe {
    const char *name;
    lb_dtype base;
    int ftype; /* general.file_type, as llama.cpp numbers it */
    int mix;   /* internal recipe id */
} lb_qrecipe;
const lb_qrecipe *lb_qrecipe_find(const char *name);

/* Fills plan[i] for every tensor of m (m->n_tensors entries). */
lb_status lb_quantize_plan(const lb_model *m, const lb_quantize_params *p, lb_qplan *plan, lb_error *err);

/* The fallback for a type whose block does not divide a row of n elements (the type itself when
 * it fits): K-quants fall back to the nearest 32-block type at least as precise, 32-block types
 * to F16. */
lb_dtype lb_quant_fallback(lb_dtype t, int64_t n);
#endif
