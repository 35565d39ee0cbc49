/* Importance matrices (lowbit.h: lb_imatrix_*): per matrix, the per-input-column statistics of
 * the activations it multiplied, in llama.cpp's legacy imatrix .dat layout (b4747):
 *
 *   int32 n_entries
 *   n_entries x { int32 name_len, name bytes, int32 ncall, int32 nval, float32 values[nval] }
 *   int32 n_chunks, int32 dataset_len, dataset bytes      (optional trailer; older files end before)
 *
 * all little-endian. values[j] is the mean of a_j^2 over every token seen, times ncall (llama.cpp
 * stores it so; readers divide by ncall, and merging files adds values and ncalls). */
#ifndef LB_IO_IMATRIX_H
#define LB_IO_IMATRIX_H
#include "lowbit.h"

typedef struct lb_imatrix_entry {
    char *name;
    int32_t ncall, nval;
    float *values;
} lb_imatrix_entry;

struct lb_imatrix {
    lb_imatrix_entry *e;
    size_t n, cap;
    int32_t n_chunks;
    char *dataset; /* never NULL once made: "" when the file has none */
};

/* An empty matrix (no entries) to fill with lb_imatrix_add. */
lb_status lb_imatrix_new(lb_imatrix **out, lb_error *err);
/* Appends an entry (copies name and values); LB_ERR_ARG for a duplicate name. */
lb_status lb_imatrix_add(lb_imatrix *im, const char *name, int32_t ncall, int32_t nval, const float *values,
                         lb_error *err);
/* The entry of matrix NAME, NULL when absent. */
const lb_imatrix_entry *lb_imatrix_get(const lb_imatrix *im, const char *name);
#endif
