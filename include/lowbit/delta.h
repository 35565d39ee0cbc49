/* lowbit public API, part: deltas between a base model and its fine-tunes. Included by lowbit.h only (it relies on what lowbit.h
 * and the parts before it declare); include <lowbit.h>, never this file. */
#ifndef LOWBIT_DELTA_H
#define LOWBIT_DELTA_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

/* ---- deltas (src/delta) ---------------------------------------------------------------- */
/* Delta files between a base model and a fine-tune of it (docs/delta.md): a safetensors file
 * with, per changed tensor, gap-encoded u32 indices and values, and metadata naming every base
 * tensor (dtype, shape, xxh64) so that a delta is never applied to another base. Inputs: GGUF
 * files, safetensors files, or Hugging Face folders with one model.safetensors. Tensors are
 * streamed one at a time (bounded memory). */
typedef enum lb_delta_mode {
    LB_DELTA_XOR = 0,   /* lossless: raw-bit XOR of the changed elements */
    LB_DELTA_FLOAT = 1, /* |fine - base| > threshold kept as f32 differences */
    LB_DELTA_INT8 = 2,  /* the same, as int8 with per-block scales */
    LB_DELTA_ZDIFF = 3, /* lossless, the default: bit-pattern differences as zstd-coded byte planes */
    LB_DELTA_SIGN = 4,  /* 1 bit per element: sign of fine - base, one scale (mean |d|) per row */
    LB_DELTA_MIXED = 5  /* sign rows, and int8 rows (per-row absmax scale) for the rows that need it */
} lb_delta_mode;

typedef struct lb_delta_tensor_report {
    const char *name, *dtype;
    uint64_t n, n_kept, bytes; /* elements, kept elements, delta bytes (idx + values + scales) */
    int dense;                 /* stored without indices (most elements changed) */
    double max_abs_err, rms_err; /* reconstructed - fine-tune, over all elements */
} lb_delta_tensor_report;
typedef void (*lb_delta_report_fn)(void *ud, const lb_delta_tensor_report *r);

typedef struct lb_delta_options {
    float threshold;     /* 0 and !int8: lossless (XOR) */
    int int8;            /* int8 values with per-block scales */
    int raw;             /* lossless as plain XOR values (format version 1) instead of zstd planes */
    int level;           /* zstd level of the lossless planes (0: 3) */
    float bits;          /* 0: off; 1: 1-bit sign deltas; > 1: mixed sign/int8 rows averaging about
                          * this many bits per element of the matrices (1 + 8 * int8-row fraction) */
    lb_delta_report_fn report; /* per tensor, optional */
    void *report_ud;
    lb_progress_fn progress;   /* bytes of the base processed, optional */
    void *progress_ud;
    int n_threads;             /* lossless zstd planes encoded on this many threads (0: all CPUs) */
} lb_delta_options;
LB_API lb_delta_options lb_delta_default_options(void);

typedef struct lb_delta_summary {
    uint64_t n_tensors, n_changed, n_elements, n_kept;
    uint64_t dense_bytes;  /* the fine-tune's tensor bytes */
    uint64_t delta_bytes;  /* size of the written delta file */
    double max_abs_err, rms_err;
} lb_delta_summary;

/* Writes OUT (atomically). Base and fine-tune must have the same tensor names, dtypes, shapes. */
LB_API lb_status lb_delta_create(const char *base, const char *finetuned, const char *out,
                          const lb_delta_options *opt, lb_delta_summary *sum, lb_error *err);
/* Writes the patched model in the base's format: a GGUF (the fine-tune's metadata as the delta
 * recorded it, else the base's), a safetensors file,
 * or for a folder base a folder OUT with model.safetensors and the base's other small files
 * (config, tokenizer, generation config). A base whose bytes differ from the one the delta was
 * made for is refused (LB_ERR_MISMATCH); nothing is left at OUT on any failure. */
LB_API lb_status lb_delta_apply(const char *base, const char *delta, const char *out, lb_progress_fn progress,
                         void *ud, lb_error *err);
/* Inspection (lowbit delta info): open fully checks the file (structure, sizes, every tensor's
 * checksum); the info strings point into d. */
typedef struct lb_delta lb_delta;
LB_API lb_status lb_delta_open(const char *path, lb_delta **out, lb_error *err);
LB_API void lb_delta_close(lb_delta *d);
LB_API const char *lb_delta_mode_name(lb_delta_mode m);
typedef struct lb_delta_info {
    lb_delta_mode mode;
    int version, lossless;             /* version 1: xor/float/int8, 2: zdiff/sign/mixed */
    size_t n_tensors, n_changed;
    uint64_t data_bytes, weight_bytes; /* delta data, and the fine-tune weights it stands for */
    double max_err;                    /* largest |error| of any tensor (0 when lossless) */
    const char *base_format;
    uint64_t base_fingerprint;
} lb_delta_info;
LB_API void lb_delta_get_info(const lb_delta *d, lb_delta_info *out);
typedef struct lb_delta_tensor_info {
    const char *name, *dtype, *encoding; /* same, zstd, mixed, sign, dense or sparse */
    uint64_t data_bytes, weight_bytes;
    double max_err, rms_err;
} lb_delta_tensor_info;
LB_API lb_status lb_delta_get_tensor(const lb_delta *d, size_t i, lb_delta_tensor_info *out, lb_error *err);

/* Sparse: keeps the elements with |x| > threshold (threshold >= 0; NaNs are kept). *indices and
 * *values are malloc'ed (free with free(); NULL when nothing is kept), indices ascending.
 * ratio = dense bytes / sparse bytes = (n * 4) / (n_kept * (4 + 4)), u32 index + f32 value
 * per kept element; +inf when n_kept == 0. n must fit u32 indices (n <= 2^32). */
LB_API lb_status lb_compress_delta_sparse(const float *delta, size_t n, float threshold,
                                   uint32_t **indices, float **values, size_t *n_kept,
                                   double *ratio, lb_error *err);
/* out[0..n) = 0 except out[indices[i]] = values[i]; an index >= n -> LB_ERR_RANGE. */
LB_API lb_status lb_decompress_delta_sparse(const uint32_t *indices, const float *values, size_t n_kept,
                                     float *out, size_t n, lb_error *err);

/* Int8 with symmetric per-block scales: block b covers elements [b*block, (b+1)*block) (the last
 * block may be shorter); scales[b] = absmax_b / 127, q[i] = round_half_even(x * (1/scale))
 * clamped to [-127, 127] (0 when the block is all zero); decoding gives q[i] * scales[b].
 * q holds n bytes, scales ceil(n / block) floats. Non-finite input -> LB_ERR_ARG. */
#define LB_DELTA_INT8_BLOCK 64
LB_API lb_status lb_compress_delta_int8(const float *delta, size_t n, size_t block, int8_t *q,
                                 float *scales, lb_error *err);
LB_API lb_status lb_decompress_delta_int8(const int8_t *q, const float *scales, size_t n, size_t block,
                                   float *out, lb_error *err);

/* Lossless mode: out = a XOR b on the raw bit patterns of n elements of elem_size 2 or 4 bytes.
 * Applying the same XOR to the base restores the fine-tune bit for bit. out may alias a or b. */
LB_API lb_status lb_delta_xor(const void *a, const void *b, void *out, size_t n, size_t elem_size,
                       lb_error *err);
/* The non-zero bit patterns of n elements of elem_size 2 or 4 (e.g. an XOR delta): *indices
 * (ascending u32) and *values (n_kept elements of elem_size bytes), malloc'ed, NULL when none.
 * Exact: unlike a float threshold it also keeps patterns such as a lone sign bit. */
LB_API lb_status lb_delta_sparse_bits(const void *x, size_t n, size_t elem_size, uint32_t **indices,
                               void **values, size_t *n_kept, lb_error *err);

/* Index gaps for the delta file: gaps[0] = idx[0], gaps[i] = idx[i] - idx[i-1] - 1 (indices
 * strictly ascending, else LB_ERR_ARG). Decoding checks every index < limit (LB_ERR_RANGE) and
 * never overflows; gaps and idx may be the same array. */
LB_API lb_status lb_delta_indices_encode(const uint32_t *idx, size_t n, uint32_t *gaps, lb_error *err);
LB_API lb_status lb_delta_indices_decode(const uint32_t *gaps, size_t n, uint64_t limit, uint32_t *idx,
                                  lb_error *err);

#endif
