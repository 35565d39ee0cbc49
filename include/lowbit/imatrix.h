/* lowbit public API, part: importance matrices (src/io/imatrix.c, src/engine/imatrix.c). Included by
 * lowbit.h only (it relies on what lowbit.h and the parts before it declare); include <lowbit.h>,
 * never this file.
 *
 * An importance matrix holds, for every matrix of a model's blocks (blk.N.*.weight), the mean
 * square of each input column's activation over a calibration text: the weight the quantizer
 * gives that column's rounding error (lb_quantize_params.imatrix). Files use llama.cpp's imatrix
 * .dat layout, so matrices move between the two tools both ways (docs/imatrix.md). */
#ifndef LOWBIT_IMATRIX_H
#define LOWBIT_IMATRIX_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

typedef struct lb_imatrix lb_imatrix;

/* Reads a file (at most 1 GiB); every count, length and value is checked against the file:
 * a truncated or hostile file gives LB_ERR_FORMAT naming the entry, field and offset. */
LB_API lb_status lb_imatrix_load(const char *path, lb_imatrix **out, lb_error *err);
/* The same over bytes in memory; name labels the messages. */
LB_API lb_status lb_imatrix_parse(const void *data, size_t size, const char *name, lb_imatrix **out, lb_error *err);
/* Writes atomically (temp file, fsync, rename). */
LB_API lb_status lb_imatrix_save(const lb_imatrix *im, const char *path, lb_error *err);
LB_API void lb_imatrix_free(lb_imatrix *im);

LB_API size_t lb_imatrix_n_entries(const lb_imatrix *im);
/* Entry i: its matrix name, and its values as stored (mean square x ncall; nval of them). */
LB_API const char *lb_imatrix_name(const lb_imatrix *im, size_t i);
LB_API const float *lb_imatrix_values(const lb_imatrix *im, size_t i, int *nval, int *ncall);
/* The index of matrix name, -1 when absent. */
LB_API long lb_imatrix_find(const lb_imatrix *im, const char *name);
LB_API int lb_imatrix_n_chunks(const lb_imatrix *im);     /* chunks it was computed over */
LB_API const char *lb_imatrix_dataset(const lb_imatrix *im); /* the calibration file's name, "" if none */

typedef struct lb_imatrix_params {
    int n_ctx;     /* tokens per chunk (default 512, as llama-imatrix) */
    int n_chunks;  /* 0: every whole chunk of the text */
    int n_threads; /* 0: all cores */
    const char *dataset; /* recorded in the file (NULL: "") */
} lb_imatrix_params;
LB_API lb_imatrix_params lb_imatrix_default_params(void);
/* Runs m over ids in non-overlapping chunks of n_ctx tokens (each chunk's first id replaced by
 * bos_id when >= 0, the KV cache cleared between chunks, as llama-imatrix does) and accumulates,
 * for every block matrix, the sum of squared activations of each input column. progress gets
 * ("chunks", done, total). */
LB_API lb_status lb_imatrix_compute(lb_model *m, const int32_t *ids, size_t n_ids, int32_t bos_id,
                                    const lb_imatrix_params *p, lb_progress_fn progress, void *user, lb_imatrix **out,
                                    lb_error *err);

/* ---- GPTQ statistics (src/engine/gptq.c): the full second moment H = sum_t a_t a_t^T of every
 * distinct matmul input (q/k/v of a layer share one, gate/up too; attn_output, ffn_down and the
 * output head each their own), in double, for lb_quantize_params.gptq (docs/imatrix.md, GPTQ). */
typedef struct lb_gptq lb_gptq;
typedef struct lb_gptq_params {
    int n_ctx;          /* tokens per chunk (default 512) */
    int n_chunks;       /* 0: every whole chunk of the text */
    int n_threads;      /* 0: all cores */
    uint64_t max_bytes; /* refuse (LB_ERR_NOMEM, naming the bytes) when the matrices need more;
                           0: 4 GiB */
} lb_gptq_params;
LB_API lb_gptq_params lb_gptq_default_params(void);
/* Bytes the matrices of m need (8 x k^2 per distinct input). */
LB_API uint64_t lb_gptq_bytes_needed(const lb_model *m);
/* Runs m over ids as lb_imatrix_compute does (same chunks, BOS, fresh cache per chunk) and sums
 * a a^T per input. progress gets ("chunks", done, total). */
LB_API lb_status lb_gptq_compute(lb_model *m, const int32_t *ids, size_t n_ids, int32_t bos_id, const lb_gptq_params *p,
                                 lb_progress_fn progress, void *user, lb_gptq **out, lb_error *err);
LB_API void lb_gptq_free(lb_gptq *g);
LB_API size_t lb_gptq_n_inputs(const lb_gptq *g);
/* Input i: its key ("blk.0.attn_qkv", "blk.0.ffn_gate_up", or the tensor's name), columns k,
 * tokens summed, and H (k x k, row-major). */
LB_API const double *lb_gptq_input(const lb_gptq *g, size_t i, const char **key, int64_t *k, int64_t *n_tok);
#endif
