/* safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [out, in], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value"}}, then the data section; offsets are relative to it and
 * tensors start at any byte (no alignment). The reader checks every offset and size against
 * the buffer before handing out a pointer; the writer builds a header and writes atomically. */
#ifndef LB_IO_SAFETENSORS_H
#define LB_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "lowbit.h"

/* Every dtype the format names. Not all have an lb_dtype (unsigned ints, bool, fp8). */
typedef enum lb_st_dtype {
    LB_ST_BOOL = 0, LB_ST_U8, LB_ST_I8, LB_ST_F8_E5M2, LB_ST_F8_E4M3, LB_ST_I16, LB_ST_U16,
    LB_ST_F16, LB_ST_BF16, LB_ST_I32, LB_ST_U32, LB_ST_F32, LB_ST_F64, LB_ST_I64, LB_ST_U64,
    LB_ST_DTYPE_COUNT
} lb_st_dtype;

const char *lb_st_dtype_name(lb_st_dtype t); /* "F32"; "?" when out of range */
int lb_st_dtype_from_name(const char *s);    /* exact (case-sensitive) name; -1 if unknown */
size_t lb_st_dtype_size(lb_st_dtype t);      /* bytes per element; 0 when out of range */
int lb_st_dtype_to_lb(lb_st_dtype t);        /* the lb_dtype, or -1 (U8, U16, U32, U64, BOOL, F8) */
int lb_st_dtype_from_lb(lb_dtype t);         /* the lb_st_dtype, or -1 (block formats) */

#define LB_ST_MAX_DIMS 8
#define LB_ST_MAX_HEADER ((size_t)100 << 20) /* refuse headers over 100 MB */

/* One tensor as stored: shape in the file's order (outermost first). */
typedef struct lb_st_tensor {
    const char *name;
    lb_st_dtype dtype;
    int n_dims;
    int64_t shape[LB_ST_MAX_DIMS];
    size_t offset; /* absolute byte offset of the data in the file or buffer */
    size_t nbytes;
    const void *data; /* any alignment */
} lb_st_tensor;

typedef struct lb_safetensors lb_safetensors;

/* Parses a file image. data must outlive the result (it is not copied); name is used in
 * error messages (the path). Malformed input gives LB_ERR_FORMAT naming name and the field. */
lb_status lb_safetensors_parse(const void *data, size_t size, const char *name, lb_safetensors **out,
                               lb_error *err);
/* mmaps path and parses it; the mapping is owned and closed with the handle. */
lb_status lb_safetensors_open(const char *path, lb_safetensors **out, lb_error *err);
void lb_safetensors_close(lb_safetensors *st);

size_t lb_safetensors_count(const lb_safetensors *st);
/* Tensors in header order; NULL when i is out of range. */
const lb_st_tensor *lb_safetensors_info(const lb_safetensors *st, size_t i);
/* Index of the tensor with this name, or -1. */
long lb_safetensors_find(const lb_safetensors *st, const char *name);
/* Tensor i as an lb_tensor: ne reversed (ne[0] innermost), data into the buffer. Fails with
 * LB_ERR_UNSUPPORTED for dtypes without an lb_dtype or more than LB_MAX_DIMS dims. The name
 * points into st. */
lb_status lb_safetensors_get(const lb_safetensors *st, size_t i, lb_tensor *out, lb_error *err);
size_t lb_safetensors_data_offset(const lb_safetensors *st); /* 8 + header length */
const char *lb_safetensors_name(const lb_safetensors *st);

/* __metadata__ (string to string), in header order. */
size_t lb_safetensors_n_meta(const lb_safetensors *st);
const char *lb_safetensors_meta_key(const lb_safetensors *st, size_t i);
const char *lb_safetensors_meta_value(const lb_safetensors *st, size_t i);
const char *lb_safetensors_meta_get(const lb_safetensors *st, const char *key); /* NULL if absent */

/* ---- writer ---- */
typedef struct lb_safetensors_writer lb_safetensors_writer;
typedef struct lb_st_sink lb_st_sink;
/* Streams tensor data: called once at write time, must pass exactly the tensor's byte size
 * through lb_st_sink_write (in any number of pieces). */
typedef lb_status (*lb_st_stream_fn)(void *user, lb_st_sink *sink, lb_error *err);
lb_status lb_st_sink_write(lb_st_sink *sink, const void *data, size_t n, lb_error *err);

lb_status lb_safetensors_writer_new(lb_safetensors_writer **out, lb_error *err);
void lb_safetensors_writer_free(lb_safetensors_writer *w);
/* shape is outermost first (the file's order). data is not copied: it must stay valid until
 * write. Tensors are written in the order they are added. */
lb_status lb_safetensors_writer_add(lb_safetensors_writer *w, const char *name, lb_st_dtype dtype, int n_dims,
                                    const int64_t *shape, const void *data, lb_error *err);
lb_status lb_safetensors_writer_add_stream(lb_safetensors_writer *w, const char *name, lb_st_dtype dtype,
                                           int n_dims, const int64_t *shape, lb_st_stream_fn fn, void *user,
                                           lb_error *err);
/* An lb_tensor (ne reversed into the file's shape order; dtype must have a safetensors name). */
lb_status lb_safetensors_writer_add_tensor(lb_safetensors_writer *w, const lb_tensor *t, lb_error *err);
/* Sets (or replaces) a __metadata__ pair. */
lb_status lb_safetensors_writer_set_meta(lb_safetensors_writer *w, const char *key, const char *value,
                                         lb_error *err);
/* Writes the file atomically (temp + fsync + rename); nothing is left under path on failure. */
lb_status lb_safetensors_writer_write(lb_safetensors_writer *w, const char *path, lb_error *err);
/* The header as it will be written: 8-byte length + JSON padded with spaces to a multiple of 8.
 * *out is malloc'ed. */
lb_status lb_safetensors_writer_header(lb_safetensors_writer *w, char **out, size_t *len, lb_error *err);

#endif
