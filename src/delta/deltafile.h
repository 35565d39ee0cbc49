/* Delta files (docs/delta.md): a safetensors file holding, per changed tensor of the base,
 *   NAME::idx   U32 [kept]   index gaps (lb_delta_indices_encode), absent when dense
 *   NAME::val   xor: U16/U32 raw-bit XOR (base ^ fine); float: F32 (fine - base); int8: I8
 *               [kept], or [n] when dense
 *   NAME::scale F32 [ceil(count / block)]   int8 only: per-block scales
 * and __metadata__ {"format": "lowbit.delta", "version": "1", "mode", "threshold", "block",
 * "base_format", "base_fingerprint", "target_fingerprint" (xor mode), "target_metadata" /
 * "target_gguf" / "target_gguf_drop" (the fine-tune's own metadata), "tensors": JSON array of
 * {name, dtype, shape, base, target, kept, dense, data, max_err, rms_err}} describing EVERY
 * base tensor (base/target/data: xxh64 hex of the base tensor's bytes, the fine-tune's, and the
 * delta's own idx+val+scale bytes). */
#ifndef LB_DELTA_DELTAFILE_H
#define LB_DELTA_DELTAFILE_H
#include <stdint.h>

#include "core/threads.h"
#include "delta/tensorsrc.h"
#include "io/safetensors.h"
#include "lowbit.h"

#define LB_DELTA_CHUNK ((uint64_t)1 << 20) /* elements per streaming step */

typedef struct lb_delta_entry {
    char *name;
    char dtype[16];
    int type;          /* LB_F32/F16/BF16, or -1 (then kept must be 0) */
    uint32_t es;
    int n_dims;
    int64_t shape[8];
    uint64_t n;        /* elements */
    uint64_t base_hash, target_hash, data_hash;
    uint64_t kept;
    int dense;
    double max_err, rms_err;
    const uint8_t *idx, *val, *scale; /* into the delta's mapping; NULL when unchanged */
    /* version 2: enc 'z' (zstd planes, data z of zbytes) or 'r' (rows: rows x cols, per-row
     * scale, rowbits = bitmap of int8 rows, n8 of them; val = sign bits of every row, then the
     * int8 rows); 0 for the version 1 encodings above */
    char enc;
    const uint8_t *z, *rowbits;
    uint64_t zbytes, rows, cols, n8;
    uint64_t *zoff; /* 'z': byte offset of each chunk (found at open), so a range starts anywhere */
} lb_delta_entry;

struct lb_delta { /* lb_delta in lowbit.h */
    char *path;
    lb_safetensors *st;
    lb_delta_mode mode;
    int version;       /* 1: xor/float/int8; 2: zdiff/sign/mixed */
    float threshold;
    uint32_t block;
    char base_format[16];
    uint64_t base_fp, target_fp;
    int has_target;
    lb_delta_entry *e;
    size_t n;
    uint64_t data_bytes; /* idx + val + scale over all tensors */
    lb_pool *pool;       /* lb_delta_use_threads: 'z' / 'r' ranges patched across threads */
    lb_error *perr;      /* [pool size] */
};

/* Patches 'z' and 'r' entries on n_threads threads (0: online CPUs) from now on; a version 1
 * delta stays sequential. LB_ERR_NOMEM when the pool cannot be made. */
lb_status lb_delta_use_threads(lb_delta *d, int n_threads, lb_error *err);

/* lb_delta_open / _close / _mode_name and the info accessors (deltainfo.c) are public. */

/* Checks that base has exactly the delta's tensors with the same dtypes and shapes (not the
 * bytes: those are hashed while streaming). */
lb_status lb_delta_match_base(const lb_delta *d, const lb_tsrc *base, lb_error *err);

/* Sequential patching of one tensor: call lb_delta_patch on consecutive element ranges that
 * hold the base's bytes; lb_delta_patch_end checks every entry was used. Encodings 'z' and 'r'
 * also take ranges in any order (random access); k/next then cache a chunk or row position. */
typedef struct lb_delta_cursor {
    uint64_t k, next;
} lb_delta_cursor;

/* The bytes of a row-encoded entry's sign bits per row. */
static inline uint64_t lb_delta_sign_bytes(uint64_t cols) { return (cols + 7) / 8; }
lb_status lb_delta_cursor_init(const lb_delta *d, const lb_delta_entry *e, lb_delta_cursor *c, lb_error *err);
lb_status lb_delta_patch(const lb_delta *d, const lb_delta_entry *e, lb_delta_cursor *c, uint8_t *buf,
                         uint64_t start, uint64_t count, lb_error *err);
lb_status lb_delta_patch_end(const lb_delta *d, const lb_delta_entry *e, const lb_delta_cursor *c, lb_error *err);

/* Streams base tensor t (bytes in its mapping) patched by the delta: through emit(sink) in
 * chunks (buf: LB_DELTA_CHUNK * 4 bytes of scratch), or into dst (t->nbytes) when emit is NULL;
 * checks t's hash against the delta's base (LB_ERR_MISMATCH) and, for lossless deltas, the
 * result's against the fine-tune's (LB_ERR_CORRUPT). release: drop mapped pages once read. */
typedef lb_status (*lb_delta_emit_fn)(void *sink, const void *data, size_t n, lb_error *err);
lb_status lb_delta_stream_tensor(const lb_delta *d, const lb_tsrc_tensor *t, const lb_tsrc *b, uint8_t *buf,
                                 lb_delta_emit_fn emit, void *sink, uint8_t *dst, int release, lb_error *err);

/* Drops the mapped pages of entry e's data (read again from the page cache when touched). */
void lb_delta_entry_release(const lb_delta *d, const lb_delta_entry *e);

/* Bytes of entry e's data in the delta file. */
uint64_t lb_delta_entry_bytes(const lb_delta *d, const lb_delta_entry *e);

/* The fine-tune's GGUF metadata (deltameta.c): *image_hex (a tensorless GGUF image, in hex, of
 * the fine-tune's key/values that the base lacks or holds otherwise) and *drop_json (a JSON array
 * of the base's keys the fine-tune lacks), each NULL when empty; free() both. */
lb_status lb_delta_gguf_meta_encode(const lb_gguf *base, const lb_gguf *ft, char **image_hex, char **drop_json,
                                    lb_error *err);
/* Sets w's metadata: the base's key/values with the fine-tune's from image_hex / drop_json
 * applied (both may be NULL: the base's metadata as it is). */
lb_status lb_delta_gguf_meta_write(lb_gguf_writer *w, const lb_gguf *base, const char *image_hex, const char *drop_json,
                                   const char *delta_path, lb_error *err);

/* Hash helpers shared by create/apply. */
uint64_t lb_delta_fingerprint_add(uint64_t acc, const char *name, uint64_t tensor_hash);

#endif
