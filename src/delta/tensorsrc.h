/* The tensors of a model file as stored (names, dtypes and shapes of the file itself, data in the
 * mapping), for deltas: a GGUF file, a safetensors file or a Hugging Face folder's single
 * model.safetensors. */
#ifndef LB_DELTA_TENSORSRC_H
#define LB_DELTA_TENSORSRC_H
#include <stddef.h>
#include <stdint.h>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "lowbit.h"

typedef struct lb_tsrc_tensor {
    const char *name;
    char dtype[16];        /* "F32", "BF16", "Q4_K", ... */
    int type;              /* LB_F32 / LB_F16 / LB_BF16 for element-wise deltas, else -1 */
    uint32_t es;           /* element size of those (4 or 2), else 0 */
    int n_dims;
    int64_t shape[8];      /* outermost first, as in safetensors */
    int64_t ne[4];         /* GGUF order (innermost first), GGUF sources only */
    const uint8_t *data;
    uint64_t nbytes, n;    /* n: elements (nbytes for opaque tensors) */
} lb_tsrc_tensor;

typedef struct lb_tsrc {
    char kind;             /* 'g' GGUF, 's' safetensors */
    char *file;            /* the weights file */
    char *dir;             /* the Hugging Face folder, or NULL */
    lb_gguf *g;
    lb_safetensors *st;
    lb_tsrc_tensor *t;
    size_t n;
} lb_tsrc;

lb_status lb_tsrc_open(const char *path, lb_tsrc **out, lb_error *err);
/* Over an image the caller keeps alive (e.g. a model's mapping). */
lb_status lb_tsrc_parse(const void *data, size_t size, const char *name, lb_tsrc **out, lb_error *err);
void lb_tsrc_close(lb_tsrc *s);
const lb_tsrc_tensor *lb_tsrc_find(const lb_tsrc *s, const char *name);
/* Drops the pages of [p, p+n) of a read-only file mapping from this process (they stay in the
 * page cache), so streaming a model through keeps the resident set small. */
void lb_tsrc_release(const void *p, size_t n);
/* Reads ahead sequentially. */
void lb_tsrc_advise_sequential(const lb_tsrc *s);

#endif
