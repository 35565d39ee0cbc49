/* GGUF v3 writer. Metadata is encoded in memory as it is set; tensor data is streamed at
 * write time (from a pointer or a fill callback) through a buffered sink into an atomic file,
 * so only one buffer's worth of tensor data is ever held here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "io/gguf.h"

#define SINK_BUF (1u << 20)
#define MAX_NAME 63 /* GGUF readers keep tensor names in 64-byte fields */

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
    int oom;
} bytes;

static void b_put(bytes *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void b_le(bytes *b, uint64_t v, int size) {
    uint8_t t[8];
    for (int i = 0; i < size; i++) t[i] = (uint8_t)(v >> (8 * i));
    b_put(b, t, (size_t)size);
}

static void b_str(bytes *b, const char *s, size_t len) {
    b_le(b, len, 8);
    b_put(b, s, len);
}

typedef struct wkv {
    char *key;
    uint32_t type;
    bytes val;
} wkv;

typedef struct wtensor {
    lb_tensor t; /* t.name owned */
    const void *data;
    lb_gguf_fill_fn fill;
    void *user;
} wtensor;

struct lb_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

struct lb_gguf_sink {
    lb_atomic_file *f;
    uint8_t *buf;
    size_t n;
    size_t left; /* bytes the current tensor still owes */
    const char *tensor, *path;
};

lb_gguf_writer *lb_gguf_writer_new(void) { return calloc(1, sizeof(lb_gguf_writer)); }

void lb_gguf_writer_free(lb_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    for (size_t i = 0; i < w->n_t; i++) free((char *)w->t[i].t.name);
    free(w->kv);
    free(w->t);
    free(w);
}

static wkv *find_kv(lb_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return &w->kv[i];
    return NULL;
}

int lb_gguf_unset(lb_gguf_writer *w, const char *key) {
    wkv *e = find_kv(w, key);
    if (!e) return 0;
    free(e->key);
    free(e->val.p);
    size_t i = (size_t)(e - w->kv);
    memmove(e, e + 1, (w->n_kv - i - 1) * sizeof *e);
    w->n_kv--;
    return 1;
}

/* Takes ownership of val (freed on failure). */
static lb_status set_kv(lb_gguf_writer *w, const char *key, uint32_t type, bytes val, lb_error *err) {
    if (val.oom) {
        free(val.p);
        return lb_fail(err, LB_ERR_NOMEM, "gguf writer: out of memory for key %s", key);
    }
    if (!key || !*key) {
        free(val.p);
        return lb_fail(err, LB_ERR_ARG, "gguf writer: empty key");
    }
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a = val.n == 4 ? (uint32_t)(val.p[0] | val.p[1] << 8 | val.p[2] << 16 | (uint32_t)val.p[3] << 24) : 0;
        if (type != LB_GGUF_U32 || a == 0 || (a & (a - 1)) || a > (1u << 30)) {
            free(val.p);
            return lb_fail(err, LB_ERR_ARG, "gguf writer: general.alignment must be a u32 power of two");
        }
    }
    wkv *e = find_kv(w, key);
    if (e) {
        free(e->val.p);
        e->type = type;
        e->val = val;
        return LB_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) {
            free(val.p);
            return lb_fail(err, LB_ERR_NOMEM, "gguf writer: out of memory");
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val.p);
        return lb_fail(err, LB_ERR_NOMEM, "gguf writer: out of memory");
    }
    w->kv[w->n_kv++] = (wkv){k, type, val};
    return LB_OK;
}

static lb_status set_scalar(lb_gguf_writer *w, const char *key, uint32_t type, uint64_t bits, lb_error *err) {
    bytes b = {0};
    b_le(&b, bits, (int)lb_gguf_type_size(type));
    return set_kv(w, key, type, b, err);
}

lb_status lb_gguf_set_u8(lb_gguf_writer *w, const char *key, uint8_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_U8, v, err); }
lb_status lb_gguf_set_i8(lb_gguf_writer *w, const char *key, int8_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_I8, (uint8_t)v, err); }
lb_status lb_gguf_set_u16(lb_gguf_writer *w, const char *key, uint16_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_U16, v, err); }
lb_status lb_gguf_set_i16(lb_gguf_writer *w, const char *key, int16_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_I16, (uint16_t)v, err); }
lb_status lb_gguf_set_u32(lb_gguf_writer *w, const char *key, uint32_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_U32, v, err); }
lb_status lb_gguf_set_i32(lb_gguf_writer *w, const char *key, int32_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_I32, (uint32_t)v, err); }
lb_status lb_gguf_set_u64(lb_gguf_writer *w, const char *key, uint64_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_U64, v, err); }
lb_status lb_gguf_set_i64(lb_gguf_writer *w, const char *key, int64_t v, lb_error *err) { return set_scalar(w, key, LB_GGUF_I64, (uint64_t)v, err); }
lb_status lb_gguf_set_bool(lb_gguf_writer *w, const char *key, bool v, lb_error *err) { return set_scalar(w, key, LB_GGUF_BOOL, v ? 1 : 0, err); }

lb_status lb_gguf_set_f32(lb_gguf_writer *w, const char *key, float v, lb_error *err) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    return set_scalar(w, key, LB_GGUF_F32, bits, err);
}

lb_status lb_gguf_set_f64(lb_gguf_writer *w, const char *key, double v, lb_error *err) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    return set_scalar(w, key, LB_GGUF_F64, bits, err);
}

lb_status lb_gguf_set_str(lb_gguf_writer *w, const char *key, const char *s, size_t len, lb_error *err) {
    bytes b = {0};
    b_str(&b, s, len);
    return set_kv(w, key, LB_GGUF_STRING, b, err);
}

/* Reads one native value of a fixed-size type as its little-endian bit pattern. */
static uint64_t native_bits(const uint8_t *p, size_t size) {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (size) {
    case 1: memcpy(&u8, p, 1); return u8;
    case 2: memcpy(&u16, p, 2); return u16;
    case 4: memcpy(&u32, p, 4); return u32;
    default: memcpy(&u64, p, 8); return u64;
    }
}

lb_status lb_gguf_set_arr(lb_gguf_writer *w, const char *key, lb_gguf_type type, const void *data, size_t n,
                          lb_error *err) {
    size_t esz = lb_gguf_type_size(type);
    if (!esz) return lb_fail(err, LB_ERR_ARG, "gguf writer: key %s: arrays of %s need their own setter", key, lb_gguf_type_name(type));
    bytes b = {0};
    b_le(&b, type, 4);
    b_le(&b, n, 8);
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = native_bits(p + i * esz, esz);
        if (type == LB_GGUF_BOOL) v = v != 0;
        b_le(&b, v, (int)esz);
    }
    return set_kv(w, key, LB_GGUF_ARRAY, b, err);
}

lb_status lb_gguf_set_arr_str(lb_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                              size_t n, lb_error *err) {
    bytes b = {0};
    b_le(&b, LB_GGUF_STRING, 4);
    b_le(&b, n, 8);
    for (size_t i = 0; i < n; i++) b_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    return set_kv(w, key, LB_GGUF_ARRAY, b, err);
}

lb_status lb_gguf_copy_kv(lb_gguf_writer *w, const lb_gguf *g, size_t i, lb_error *err) {
    if (i >= lb_gguf_kv_count(g)) return lb_fail(err, LB_ERR_ARG, "gguf writer: metadata index %zu out of range", i);
    const void *raw;
    size_t size;
    lb_gguf_kv_raw(g, i, &raw, &size);
    bytes b = {0};
    b_put(&b, raw, size);
    return set_kv(w, lb_gguf_kv_key(g, i), lb_gguf_kv_type(g, i), b, err);
}

static lb_status add_tensor(lb_gguf_writer *w, const char *name, lb_dtype type, int n_dims, const int64_t *ne,
                            const void *data, lb_gguf_fill_fn fill, void *user, lb_error *err) {
    size_t len = name ? strlen(name) : 0;
    if (!len || len > MAX_NAME)
        return lb_fail(err, LB_ERR_ARG, "gguf writer: tensor name \"%s\" must be 1 to %d bytes", name ? name : "", MAX_NAME);
    if (n_dims < 1 || n_dims > LB_MAX_DIMS)
        return lb_fail(err, LB_ERR_ARG, "gguf writer: tensor %s: %d dimensions (must be 1 to %d)", name, n_dims, LB_MAX_DIMS);
    if (!data && !fill) return lb_fail(err, LB_ERR_ARG, "gguf writer: tensor %s has neither data nor a fill callback", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].t.name, name) == 0)
            return lb_fail(err, LB_ERR_ARG, "gguf writer: tensor %s added twice", name);
    char what[128];
    snprintf(what, sizeof what, "gguf writer: tensor %s", name);
    size_t nbytes;
    lb_status s = lb_tensor_nbytes(type, n_dims, ne, &nbytes, what, err);
    if (s) {
        if (err) err->status = LB_ERR_ARG; /* the caller's shape, not a file, is wrong */
        return LB_ERR_ARG;
    }
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return lb_fail(err, LB_ERR_NOMEM, "gguf writer: out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    char *nm = strdup(name);
    if (!nm) return lb_fail(err, LB_ERR_NOMEM, "gguf writer: out of memory");
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->t.name = nm;
    t->t.type = type;
    t->t.n_dims = n_dims;
    for (int d = 0; d < LB_MAX_DIMS; d++) t->t.ne[d] = d < n_dims ? ne[d] : 1;
    t->t.data = data;
    t->t.nbytes = nbytes;
    t->data = data;
    t->fill = fill;
    t->user = user;
    return LB_OK;
}

lb_status lb_gguf_add_tensor(lb_gguf_writer *w, const char *name, lb_dtype type, int n_dims, const int64_t *ne,
                             const void *data, lb_error *err) {
    if (!data) return lb_fail(err, LB_ERR_ARG, "gguf writer: tensor %s: NULL data", name ? name : "");
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL, err);
}

lb_status lb_gguf_add_tensor_lazy(lb_gguf_writer *w, const char *name, lb_dtype type, int n_dims, const int64_t *ne,
                                  lb_gguf_fill_fn fill, void *user, lb_error *err) {
    if (!fill) return lb_fail(err, LB_ERR_ARG, "gguf writer: tensor %s: NULL fill callback", name ? name : "");
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, user, err);
}

size_t lb_gguf_writer_tensor_count(const lb_gguf_writer *w) { return w->n_t; }

/* ---- output ------------------------------------------------------------------------------- */
static lb_status sink_flush(lb_gguf_sink *s, lb_error *err) {
    lb_status st = s->n ? lb_atomic_write(s->f, s->buf, s->n, err) : LB_OK;
    s->n = 0;
    return st;
}

static lb_status sink_put(lb_gguf_sink *s, const void *data, size_t n, lb_error *err) {
    if (n >= SINK_BUF) { /* large chunks bypass the buffer */
        lb_status st = sink_flush(s, err);
        return st ? st : lb_atomic_write(s->f, data, n, err);
    }
    if (s->n + n > SINK_BUF) {
        lb_status st = sink_flush(s, err);
        if (st) return st;
    }
    memcpy(s->buf + s->n, data, n);
    s->n += n;
    return LB_OK;
}

lb_status lb_gguf_sink_write(lb_gguf_sink *s, const void *data, size_t n, lb_error *err) {
    if (n > s->left)
        return lb_fail(err, LB_ERR_ARG, "%s: tensor %s: fill wrote %zu bytes more than the tensor's size", s->path,
                       s->tensor, n - s->left);
    s->left -= n;
    return sink_put(s, data, n, err);
}

static lb_status sink_pad(lb_gguf_sink *s, uint64_t pos, size_t align, lb_error *err) {
    static const uint8_t zeros[64];
    size_t pad = (size_t)((align - pos % align) % align);
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        lb_status st = sink_put(s, zeros, k, err);
        if (st) return st;
        pad -= k;
    }
    return LB_OK;
}

static size_t writer_alignment(lb_gguf_writer *w) {
    wkv *e = find_kv(w, "general.alignment");
    if (!e) return LB_GGUF_DEFAULT_ALIGNMENT;
    return (size_t)(e->val.p[0] | e->val.p[1] << 8 | e->val.p[2] << 16 | (uint32_t)e->val.p[3] << 24);
}

static lb_status build_header(lb_gguf_writer *w, size_t align, bytes *h, lb_error *err) {
    b_put(h, "GGUF", 4);
    b_le(h, 3, 4);
    b_le(h, w->n_t, 8);
    b_le(h, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        b_str(h, w->kv[i].key, strlen(w->kv[i].key));
        b_le(h, w->kv[i].type, 4);
        b_put(h, w->kv[i].val.p, w->kv[i].val.n);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const lb_tensor *t = &w->t[i].t;
        b_str(h, t->name, strlen(t->name));
        b_le(h, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++) b_le(h, (uint64_t)t->ne[d], 8);
        b_le(h, t->type, 4);
        b_le(h, off, 8);
        off += t->nbytes;
        off += (align - off % align) % align;
    }
    if (h->oom) return lb_fail(err, LB_ERR_NOMEM, "gguf writer: out of memory for the header");
    return LB_OK;
}

static lb_status write_tensors(lb_gguf_writer *w, lb_gguf_sink *s, size_t align, lb_error *err) {
    uint64_t pos = 0;
    lb_status st;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        s->tensor = t->t.name;
        s->left = t->t.nbytes;
        if (t->data) st = lb_gguf_sink_write(s, t->data, t->t.nbytes, err);
        else st = t->fill(t->user, &t->t, s, err);
        if (st) return st;
        if (s->left)
            return lb_fail(err, LB_ERR_ARG, "%s: tensor %s: fill wrote %zu bytes less than the tensor's %zu", s->path,
                           t->t.name, s->left, t->t.nbytes);
        pos += t->t.nbytes;
        if ((st = sink_pad(s, pos, align, err))) return st;
        pos += (align - pos % align) % align;
    }
    return sink_flush(s, err);
}

lb_status lb_gguf_write(lb_gguf_writer *w, const char *path, lb_error *err) {
    size_t align = writer_alignment(w);
    bytes h = {0};
    lb_status st = build_header(w, align, &h, err);
    lb_gguf_sink s = {.path = path};
    if (!st && !(s.buf = malloc(SINK_BUF))) st = lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", path);
    if (!st) st = lb_atomic_open(path, &s.f, err);
    if (!st) {
        st = sink_put(&s, h.p, h.n, err);
        if (!st) st = sink_pad(&s, h.n, align, err);
        if (!st) st = write_tensors(w, &s, align, err);
        if (!st) st = lb_atomic_commit(s.f, err);
        else lb_atomic_abort(s.f);
    }
    free(h.p);
    free(s.buf);
    return st;
}
