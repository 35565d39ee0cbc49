/* GGUF v2/v3 reader (over an mmapped file or a caller's buffer) and writer (v3, streaming,
 * atomic). Everything read from a file is checked against the file's size before use; strings
 * returned by the reader point into the file and are NOT NUL-terminated (a length comes with
 * them), while key and tensor names are NUL-terminated copies owned by the handle. */
#ifndef LB_IO_GGUF_H
#define LB_IO_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "lowbit.h"

/* Metadata value type ids, as stored in the file. */
typedef enum lb_gguf_type {
    LB_GGUF_U8 = 0, LB_GGUF_I8 = 1, LB_GGUF_U16 = 2, LB_GGUF_I16 = 3, LB_GGUF_U32 = 4,
    LB_GGUF_I32 = 5, LB_GGUF_F32 = 6, LB_GGUF_BOOL = 7, LB_GGUF_STRING = 8, LB_GGUF_ARRAY = 9,
    LB_GGUF_U64 = 10, LB_GGUF_I64 = 11, LB_GGUF_F64 = 12,
    LB_GGUF_TYPE_COUNT = 13
} lb_gguf_type;

#define LB_GGUF_DEFAULT_ALIGNMENT 32
#define LB_GGUF_MAX_ARRAY_DEPTH 8 /* arrays of arrays nested deeper than this are refused */

/* "u8", "string", "array", ... ("unknown" otherwise). */
const char *lb_gguf_type_name(uint32_t t);
/* Size in bytes of one value of a fixed-size type; 0 for string, array and unknown ids. */
size_t lb_gguf_type_size(uint32_t t);

/* ---- reader ----------------------------------------------------------------------------- */
typedef struct lb_gguf lb_gguf;

/* Maps path and parses it; the handle owns the mapping. */
lb_status lb_gguf_open(const char *path, lb_gguf **out, lb_error *err);
/* Parses a GGUF image held by the caller, who keeps data alive (and unchanged) until
 * lb_gguf_close. name is used in error messages (copied). */
lb_status lb_gguf_parse(const void *data, size_t size, const char *name, lb_gguf **out, lb_error *err);
void lb_gguf_close(lb_gguf *g);

const char *lb_gguf_name(const lb_gguf *g);
uint32_t lb_gguf_version(const lb_gguf *g);
size_t lb_gguf_alignment(const lb_gguf *g);
size_t lb_gguf_data_offset(const lb_gguf *g); /* file offset of the (aligned) data section */
size_t lb_gguf_file_size(const lb_gguf *g);
const void *lb_gguf_file_data(const lb_gguf *g); /* the whole file image */

/* Key/value pairs, in file order. */
size_t lb_gguf_kv_count(const lb_gguf *g);
const char *lb_gguf_kv_key(const lb_gguf *g, size_t i);
lb_gguf_type lb_gguf_kv_type(const lb_gguf *g, size_t i); /* LB_GGUF_TYPE_COUNT when i is out of range */
/* Index of key, or -1 when absent. */
int64_t lb_gguf_find_key(const lb_gguf *g, const char *key);
/* Printable one-line rendering of value i (strings quoted and escaped, long strings and arrays
 * abbreviated with their full length/count given), always NUL-terminated when cap > 0. */
void lb_gguf_kv_format(const lb_gguf *g, size_t i, char *buf, size_t cap);
/* The encoded bytes of value i (after its type id), for copying into a writer. */
void lb_gguf_kv_raw(const lb_gguf *g, size_t i, const void **data, size_t *size);

/* Typed getters by key name. A missing key gives LB_ERR_RANGE; a value of another type gives
 * LB_ERR_FORMAT. get_int accepts every integer type (and bool), get_float every number type,
 * get_bool a bool (or an integer). Messages name the file and the key. */
lb_status lb_gguf_get_int(const lb_gguf *g, const char *key, int64_t *out, lb_error *err);
lb_status lb_gguf_get_float(const lb_gguf *g, const char *key, double *out, lb_error *err);
lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, bool *out, lb_error *err);
lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, const char **s, size_t *len, lb_error *err);

/* A view of an array value (top-level or nested); valid while the handle lives. */
typedef struct lb_gguf_arr {
    lb_gguf_type type; /* element type */
    size_t n;          /* element count */
    const lb_gguf *g;  /* internal */
    size_t node;       /* internal */
    size_t kv;         /* internal: the key it belongs to, for messages */
} lb_gguf_arr;

lb_status lb_gguf_get_arr(const lb_gguf *g, const char *key, lb_gguf_arr *out, lb_error *err);
/* Same by kv index (the value must be an array). */
lb_status lb_gguf_kv_arr(const lb_gguf *g, size_t i, lb_gguf_arr *out, lb_error *err);
/* Element i of an array. Out-of-range index: LB_ERR_RANGE; wrong element type: LB_ERR_FORMAT. */
lb_status lb_gguf_arr_int(const lb_gguf_arr *a, size_t i, int64_t *out, lb_error *err);
lb_status lb_gguf_arr_float(const lb_gguf_arr *a, size_t i, double *out, lb_error *err);
lb_status lb_gguf_arr_bool(const lb_gguf_arr *a, size_t i, bool *out, lb_error *err);
lb_status lb_gguf_arr_str(const lb_gguf_arr *a, size_t i, const char **s, size_t *len, lb_error *err);
lb_status lb_gguf_arr_arr(const lb_gguf_arr *a, size_t i, lb_gguf_arr *out, lb_error *err);
/* Raw little-endian elements of a fixed-size-type array (may be unaligned; NULL otherwise). */
const void *lb_gguf_arr_data(const lb_gguf_arr *a);

/* Tensors, in file order: name (owned by the handle), type, shape, data pointer into the file
 * image and byte size (lb_tensor_nbytes), all checked to lie inside the data section. */
size_t lb_gguf_tensor_count(const lb_gguf *g);
const lb_tensor *lb_gguf_tensor(const lb_gguf *g, size_t i);
const lb_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name); /* NULL when absent */
uint64_t lb_gguf_tensor_offset(const lb_gguf *g, size_t i); /* relative to the data section */

/* ---- writer ----------------------------------------------------------------------------- */
typedef struct lb_gguf_writer lb_gguf_writer;

lb_gguf_writer *lb_gguf_writer_new(void); /* NULL when out of memory */
void lb_gguf_writer_free(lb_gguf_writer *w);

/* Setting a key that is already set replaces its value in place (order is kept).
 * general.alignment, when set, must be a u32 power of two and is used for the file. */
lb_status lb_gguf_set_u8(lb_gguf_writer *w, const char *key, uint8_t v, lb_error *err);
lb_status lb_gguf_set_i8(lb_gguf_writer *w, const char *key, int8_t v, lb_error *err);
lb_status lb_gguf_set_u16(lb_gguf_writer *w, const char *key, uint16_t v, lb_error *err);
lb_status lb_gguf_set_i16(lb_gguf_writer *w, const char *key, int16_t v, lb_error *err);
lb_status lb_gguf_set_u32(lb_gguf_writer *w, const char *key, uint32_t v, lb_error *err);
lb_status lb_gguf_set_i32(lb_gguf_writer *w, const char *key, int32_t v, lb_error *err);
lb_status lb_gguf_set_u64(lb_gguf_writer *w, const char *key, uint64_t v, lb_error *err);
lb_status lb_gguf_set_i64(lb_gguf_writer *w, const char *key, int64_t v, lb_error *err);
lb_status lb_gguf_set_f32(lb_gguf_writer *w, const char *key, float v, lb_error *err);
lb_status lb_gguf_set_f64(lb_gguf_writer *w, const char *key, double v, lb_error *err);
lb_status lb_gguf_set_bool(lb_gguf_writer *w, const char *key, bool v, lb_error *err);
lb_status lb_gguf_set_str(lb_gguf_writer *w, const char *key, const char *s, size_t len, lb_error *err);
/* Array of a fixed-size type: data holds n native values of that type (bool: one byte each). */
lb_status lb_gguf_set_arr(lb_gguf_writer *w, const char *key, lb_gguf_type type, const void *data,
                          size_t n, lb_error *err);
/* Array of strings; lens NULL means NUL-terminated strings. */
lb_status lb_gguf_set_arr_str(lb_gguf_writer *w, const char *key, const char *const *strs,
                              const size_t *lens, size_t n, lb_error *err);
/* Copies key/value i of a reader (any type, nested arrays included). */
lb_status lb_gguf_copy_kv(lb_gguf_writer *w, const lb_gguf *g, size_t i, lb_error *err);
/* Removes a key if set; returns 1 when it was. */
int lb_gguf_unset(lb_gguf_writer *w, const char *key);

/* Streaming tensor data: a fill callback writes exactly the tensor's byte size through the
 * sink, in chunks of any size, so a large model never has to sit in memory. */
typedef struct lb_gguf_sink lb_gguf_sink;
lb_status lb_gguf_sink_write(lb_gguf_sink *s, const void *data, size_t n, lb_error *err);
typedef lb_status (*lb_gguf_fill_fn)(void *user, const lb_tensor *t, lb_gguf_sink *sink, lb_error *err);

/* data must stay valid until lb_gguf_write returns. */
lb_status lb_gguf_add_tensor(lb_gguf_writer *w, const char *name, lb_dtype type, int n_dims,
                             const int64_t *ne, const void *data, lb_error *err);
/* fill is called once, during lb_gguf_write, in tensor order. */
lb_status lb_gguf_add_tensor_lazy(lb_gguf_writer *w, const char *name, lb_dtype type, int n_dims,
                                  const int64_t *ne, lb_gguf_fill_fn fill, void *user, lb_error *err);
size_t lb_gguf_writer_tensor_count(const lb_gguf_writer *w);

/* Writes a GGUF v3 file atomically (temp file + fsync + rename). The writer can be reused. */
lb_status lb_gguf_write(lb_gguf_writer *w, const char *path, lb_error *err);

/* ---- tokenizer glue (gguf_vocab.c) ----------------------------------------------------- */
/* Builds the tokenizer described by tokenizer.ggml.* (model "llama" -> SentencePiece, "gpt2" ->
 * byte-level BPE). LB_ERR_RANGE when the file has no tokenizer.ggml.model key. */
lb_status lb_gguf_load_tokenizer(const lb_gguf *g, lb_tokenizer **out, lb_error *err);

#endif
