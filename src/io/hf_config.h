/* Hugging Face config.json -> lb_config, for the llama, mistral, qwen2 and bitnet model types.
 * Missing optional keys take transformers' per-architecture defaults; both the older
 * rope_theta + rope_scaling keys and the newer rope_parameters object are read. */
#ifndef LB_IO_HF_CONFIG_H
#define LB_IO_HF_CONFIG_H
#include <stdbool.h>
#include <stddef.h>

#include "core/model.h"

/* What config.json says beyond lb_config. */
typedef struct lb_hf_extra {
    bool tie_word_embeddings;
    int32_t bos_id, eos_id; /* first id when a list; -1 when absent, null or out of the vocabulary */
} lb_hf_extra;

/* json need not be NUL-terminated. name is the file name for messages ("dir/config.json"). */
lb_status lb_hf_parse_config(const char *json, size_t len, const char *name, lb_config *cfg, lb_error *err);
/* Same, also filling extra (may be NULL). */
lb_status lb_hf_parse_config_ex(const char *json, size_t len, const char *name, lb_config *cfg, lb_hf_extra *extra,
                                lb_error *err);

#endif
