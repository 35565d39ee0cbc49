/* safetensors writer: the header is built by hand (integers printed exactly, names escaped)
 * and padded with spaces so the data section starts 8-byte aligned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "io/safetensors.h"

typedef struct wtensor {
    char *name;
    lb_st_dtype dtype;
    int n_dims;
    int64_t shape[LB_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
    lb_st_stream_fn fn;
    void *user;
} wtensor;

struct lb_safetensors_writer {
    wtensor *t;
    size_t n, cap;
    char **meta; /* key, value pairs */
    size_t n_meta;
};

struct lb_st_sink {
    lb_atomic_file *f;
    const char *path, *tensor;
    size_t left;
};

lb_status lb_safetensors_writer_new(lb_safetensors_writer **out, lb_error *err) {
    *out = calloc(1, sizeof **out);
    return *out ? LB_OK : lb_fail(err, LB_ERR_NOMEM, "out of memory");
}

void lb_safetensors_writer_free(lb_safetensors_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->t);
    free(w->meta);
    free(w);
}

static lb_status add(lb_safetensors_writer *w, const char *name, lb_st_dtype dtype, int n_dims, const int64_t *shape,
                     const void *data, lb_st_stream_fn fn, void *user, lb_error *err) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return lb_fail(err, LB_ERR_ARG, "safetensors writer: invalid tensor name \"%s\"", name ? name : "(null)");
    if ((unsigned)dtype >= LB_ST_DTYPE_COUNT)
        return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s: invalid dtype %d", name, (int)dtype);
    if (n_dims < 0 || n_dims > LB_ST_MAX_DIMS)
        return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s: %d dimensions", name, n_dims);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s added twice", name);
    size_t nbytes = lb_st_dtype_size(dtype);
    for (int i = 0; i < n_dims; i++)
        if (shape[i] < 0 || !lb_mul_ok(nbytes, (size_t)shape[i], &nbytes))
            return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s: invalid or overflowing shape", name);
    if (!data && !fn && nbytes)
        return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s has no data", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        w->t = t;
        w->cap = cap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->data = data;
    t->fn = fn;
    t->user = user;
    w->n++;
    return LB_OK;
}

lb_status lb_safetensors_writer_add(lb_safetensors_writer *w, const char *name, lb_st_dtype dtype, int n_dims,
                                    const int64_t *shape, const void *data, lb_error *err) {
    return add(w, name, dtype, n_dims, shape, data, NULL, NULL, err);
}

lb_status lb_safetensors_writer_add_stream(lb_safetensors_writer *w, const char *name, lb_st_dtype dtype,
                                           int n_dims, const int64_t *shape, lb_st_stream_fn fn, void *user,
                                           lb_error *err) {
    if (!fn) return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s: no stream function", name ? name : "(null)");
    return add(w, name, dtype, n_dims, shape, NULL, fn, user, err);
}

lb_status lb_safetensors_writer_add_tensor(lb_safetensors_writer *w, const lb_tensor *t, lb_error *err) {
    int d = lb_st_dtype_from_lb(t->type);
    if (d < 0)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "safetensors writer: tensor %s: %s has no safetensors dtype", t->name,
                       lb_dtype_name(t->type));
    if (t->n_dims < 0 || t->n_dims > LB_MAX_DIMS)
        return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s: %d dimensions", t->name, t->n_dims);
    int64_t shape[LB_MAX_DIMS];
    for (int i = 0; i < t->n_dims; i++) shape[i] = t->ne[t->n_dims - 1 - i];
    lb_status s = add(w, t->name, (lb_st_dtype)d, t->n_dims, shape, t->data, NULL, NULL, err);
    if (!s && w->t[w->n - 1].nbytes != t->nbytes) {
        free(w->t[--w->n].name);
        return lb_fail(err, LB_ERR_ARG, "safetensors writer: tensor %s: nbytes %zu does not match its shape", t->name,
                       t->nbytes);
    }
    return s;
}

lb_status lb_safetensors_writer_set_meta(lb_safetensors_writer *w, const char *key, const char *value, lb_error *err) {
    if (!key || !value) return lb_fail(err, LB_ERR_ARG, "safetensors writer: NULL metadata key or value");
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            char *v = strdup(value);
            if (!v) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return LB_OK;
        }
    char **m = realloc(w->meta, 2 * (w->n_meta + 1) * sizeof *m);
    if (!m) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    w->meta = m;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    m[2 * w->n_meta] = k;
    m[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return LB_OK;
}

/* ---- header text ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control bytes escaped; UTF-8 passes through. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void sb_u64(sbuf *b, unsigned long long v) {
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", v);
    sb_put(b, num, (size_t)n);
}

lb_status lb_safetensors_writer_header(lb_safetensors_writer *w, char **out, size_t *len, lb_error *err) {
    sbuf b = {0};
    sb_put(&b, "\0\0\0\0\0\0\0\0{", 9);
    int first = 1;
    if (w->n_meta) {
        sb_str(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&b, ",");
            sb_json_string(&b, w->meta[2 * i]);
            sb_str(&b, ":");
            sb_json_string(&b, w->meta[2 * i + 1]);
        }
        sb_str(&b, "}");
        first = 0;
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        if (!first) sb_str(&b, ",");
        first = 0;
        sb_json_string(&b, t->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, lb_st_dtype_name(t->dtype));
        sb_str(&b, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) {
            if (d) sb_str(&b, ",");
            sb_u64(&b, (unsigned long long)t->shape[d]);
        }
        sb_str(&b, "],\"data_offsets\":[");
        sb_u64(&b, off);
        sb_str(&b, ",");
        if (!lb_add_ok(off, t->nbytes, &off)) {
            free(b.p);
            return lb_fail(err, LB_ERR_ARG, "safetensors writer: total data size overflows");
        }
        sb_u64(&b, off);
        sb_str(&b, "]}");
    }
    sb_str(&b, "}");
    while (b.n % 8) sb_str(&b, " ");
    if (b.oom) {
        free(b.p);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    uint64_t hlen = b.n - 8;
    for (int i = 0; i < 8; i++) b.p[i] = (char)(hlen >> (8 * i) & 0xff);
    *out = b.p;
    *len = b.n;
    return LB_OK;
}

lb_status lb_st_sink_write(lb_st_sink *sink, const void *data, size_t n, lb_error *err) {
    if (n > sink->left)
        return lb_fail(err, LB_ERR_ARG, "%s: tensor %s: stream wrote more than the tensor's byte size", sink->path,
                       sink->tensor);
    sink->left -= n;
    return lb_atomic_write(sink->f, data, n, err);
}

lb_status lb_safetensors_writer_write(lb_safetensors_writer *w, const char *path, lb_error *err) {
    char *hdr;
    size_t hlen;
    lb_status s = lb_safetensors_writer_header(w, &hdr, &hlen, err);
    if (s) return s;
    lb_atomic_file *f;
    if ((s = lb_atomic_open(path, &f, err))) {
        free(hdr);
        return s;
    }
    s = lb_atomic_write(f, hdr, hlen, err);
    free(hdr);
    for (size_t i = 0; i < w->n && !s; i++) {
        const wtensor *t = &w->t[i];
        if (!t->fn) {
            s = lb_atomic_write(f, t->data, t->nbytes, err);
            continue;
        }
        lb_st_sink sink = {f, path, t->name, t->nbytes};
        s = t->fn(t->user, &sink, err);
        if (!s && sink.left)
            s = lb_fail(err, LB_ERR_ARG, "%s: tensor %s: stream wrote %zu bytes of %zu", path, t->name,
                        t->nbytes - sink.left, t->nbytes);
    }
    if (s) {
        lb_atomic_abort(f);
        return s;
    }
    return lb_atomic_commit(f, err);
}
