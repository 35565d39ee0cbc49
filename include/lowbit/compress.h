/* lowbit public API, part: lossless compression (.lbz). Included by lowbit.h only (it relies on what lowbit.h
 * and the parts before it declare); include <lowbit.h>, never this file. */
#ifndef LOWBIT_COMPRESS_H
#define LOWBIT_COMPRESS_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

/* ---- compression (src/compress) -------------------------------------------------------- */
/* Typed regions of a model file (GGUF, safetensors, a Hugging Face folder's model.safetensors,
 * or the kept header of a .lbz), for lb_lbz_compress, and the tensor at an offset. */
typedef struct lb_model_regions lb_model_regions;
LB_API lb_status lb_model_regions_open(const char *path, lb_model_regions **out, lb_error *err);
LB_API void lb_model_regions_free(lb_model_regions *r);
/* Sorted, non-overlapping: F32 -> 4, F16/BF16 (and 16/32-bit ints) -> 2/4, other dtypes 1. */
LB_API const struct lb_lbz_region *lb_model_regions_get(const lb_model_regions *r, size_t *n);
/* Byte offset of the tensor data section (keep this much verbatim as the container header). */
LB_API uint64_t lb_model_regions_header_len(const lb_model_regions *r);
/* An lb_lbz_name_fn: ud is the lb_model_regions; the tensor holding offset, or NULL. */
LB_API const char *lb_model_regions_name_at(uint64_t offset, void *ud);
/* The file the regions describe (for a folder: its model.safetensors), its format ("gguf",
 * "safetensors", or "gguf.lbz" / "safetensors.lbz" for a container) and tensor count. */
LB_API const char *lb_model_regions_file(const lb_model_regions *r);
LB_API const char *lb_model_regions_format(const lb_model_regions *r);
LB_API size_t lb_model_regions_n_tensors(const lb_model_regions *r);

/* Progress of a long operation: done and total bytes (of the original file). */
/* Maps an offset of the original file to a name (e.g. the tensor there) for error messages;
 * may return NULL. */
typedef const char *(*lb_lbz_name_fn)(uint64_t offset, void *ud);

typedef enum lb_codec { LB_CODEC_STORED = 0, LB_CODEC_ZSTD = 1, LB_CODEC_LZ4 = 2 } lb_codec;

/* A byte range of the input file and the size of its elements: 1 = opaque bytes (headers,
 * quantized blocks), 2 = F16/BF16, 4 = F32. length must be a multiple of elem_size. Regions are
 * sorted, non-overlapping; bytes no region covers are stored as opaque. */
typedef struct lb_lbz_region {
    uint64_t offset, length;
    uint32_t elem_size;
} lb_lbz_region;

#define LB_LBZ_HEADER_AUTO UINT64_MAX
typedef struct lb_lbz_options {
    lb_codec codec;      /* LB_CODEC_ZSTD (default) or LB_CODEC_LZ4 */
    int level;           /* zstd level (default 1: best on float planes); lz4: <= 1 fast, >= 2 HC */
    int n_threads;       /* >= 1 */
    uint32_t chunk_size; /* bytes of original data per chunk, 4 KiB..64 MiB, default 1 MiB */
    /* Leading bytes kept verbatim (uncompressed) in the container so a reader can parse the
     * model's header without decompressing. AUTO: the start of the first region with
     * elem_size > 1 (0 when there is none). */
    uint64_t header_len;
    lb_lbz_name_fn name_at; /* optional, used in messages */
    void *name_ud;
} lb_lbz_options;

LB_API lb_lbz_options lb_lbz_default_options(void);

/* Writes OUT (atomically) as the .lbz container of IN; see docs/lbz.md. */
LB_API lb_status lb_lbz_compress(const char *in, const char *out, const lb_lbz_region *regions,
                          size_t n_regions, const lb_lbz_options *opt, lb_progress_fn progress,
                          void *ud, lb_error *err);
/* Restores the original file bit for bit (atomically), verifying every checksum. */
LB_API lb_status lb_lbz_decompress(const char *in, const char *out, int n_threads,
                            lb_progress_fn progress, void *ud, lb_error *err);
/* Restores the original file into a 4096-byte aligned buffer (free with free()). */
LB_API lb_status lb_lbz_decompress_to_memory(const char *in, int n_threads, void **buf, size_t *size,
                                      lb_error *err);

/* Random access. A handle is not safe for concurrent lb_lbz_read calls from several threads. */
typedef struct lb_lbz lb_lbz;
LB_API lb_status lb_lbz_open(const char *path, lb_lbz_name_fn name_at, void *name_ud, lb_lbz **out,
                      lb_error *err);
LB_API void lb_lbz_close(lb_lbz *z);
LB_API void lb_lbz_set_name_fn(lb_lbz *z, lb_lbz_name_fn name_at, void *name_ud);
LB_API uint64_t lb_lbz_original_size(const lb_lbz *z);
/* The original file's first header_len bytes (verified at open); valid until close. */
LB_API const void *lb_lbz_header(const lb_lbz *z, size_t *header_len);
LB_API size_t lb_lbz_n_chunks(const lb_lbz *z);
/* Copies original bytes [offset, offset+len) into dst, decoding only the chunks needed. */
LB_API lb_status lb_lbz_read(lb_lbz *z, uint64_t offset, size_t len, void *dst, lb_error *err);
/* Whole-file restores from an open handle (the name callback is used in messages). */
LB_API lb_status lb_lbz_extract(lb_lbz *z, const char *out, int n_threads, lb_progress_fn progress,
                         void *ud, lb_error *err);
LB_API lb_status lb_lbz_extract_to_memory(lb_lbz *z, int n_threads, lb_progress_fn progress, void *ud,
                                   void **buf, size_t *size, lb_error *err);

#endif
