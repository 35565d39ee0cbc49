/* GGUF reader. The file is walked once: every length, count and offset is checked against the
 * bytes that remain before it is used or drives an allocation, and every allocation is bounded
 * by a constant times the file size. Values stay in the file; the handle keeps only offsets
 * (plus per-element offsets for arrays of strings or arrays, so element access is O(1)). */
#include "io/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapfile.h"

typedef struct kv_ent {
    size_t key;       /* pool offset while parsing */
    const char *name; /* set when parsing is done */
    uint32_t type;
    size_t val, end;  /* encoded value bytes [val, end) */
    size_t node;      /* array node, when type is array */
} kv_ent;

typedef struct arr_node {
    uint32_t type; /* element type */
    size_t n;
    size_t data;   /* file offset of the first element */
    size_t idx;    /* strings: first entry in offs; arrays: first child node */
} arr_node;

struct lb_gguf {
    char *name;
    lb_mapfile map;
    int owns_map;
    const uint8_t *base;
    size_t size;
    uint32_t version;
    size_t alignment, data_off;
    kv_ent *kv;
    size_t n_kv;
    arr_node *nodes;
    size_t n_nodes, cap_nodes;
    size_t *offs;
    size_t n_offs, cap_offs;
    lb_tensor *tensors;
    uint64_t *toff;
    size_t *tname; /* pool offsets of tensor names while parsing */
    size_t n_tensors;
    char *pool;
    size_t pool_len, pool_cap;
    uint32_t *kv_hash, *t_hash; /* open addressing, entries are index + 1 */
    size_t kv_hcap, t_hcap;
};

/* ---- little-endian loads ------------------------------------------------------------------ */
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

const char *lb_gguf_type_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return t < LB_GGUF_TYPE_COUNT ? names[t] : "unknown";
}

size_t lb_gguf_type_size(uint32_t t) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < LB_GGUF_TYPE_COUNT ? sizes[t] : 0;
}

/* ---- parse cursor ------------------------------------------------------------------------- */
typedef struct cur {
    lb_gguf *g;
    size_t pos;
    lb_error *err;
    char ctx[160]; /* "key general.name", "tensor blk.0.attn_q.weight", ... */
} cur;

static lb_status bad_at(cur *c, lb_status s, size_t at, const char *fmt, ...) LB_PRINTF(4, 5);
static lb_status bad_at(cur *c, lb_status s, size_t at, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->ctx[0]) return lb_fail(c->err, s, "%s: offset %zu: %s: %s", c->g->name, at, c->ctx, msg);
    return lb_fail(c->err, s, "%s: offset %zu: %s", c->g->name, at, msg);
}
#define BAD(c, at, ...) bad_at(c, LB_ERR_FORMAT, at, __VA_ARGS__)

static size_t left(const cur *c) { return c->g->size - c->pos; }

static lb_status need(cur *c, size_t n, const char *what) {
    if (n > left(c))
        return BAD(c, c->pos, "%s (%zu bytes) runs past end of file (size %zu)", what, n, c->g->size);
    return LB_OK;
}

static lb_status rd_u32(cur *c, uint32_t *v, const char *what) {
    lb_status s = need(c, 4, what);
    if (s) return s;
    *v = le32(c->g->base + c->pos);
    c->pos += 4;
    return LB_OK;
}

static lb_status rd_u64(cur *c, uint64_t *v, const char *what) {
    lb_status s = need(c, 8, what);
    if (s) return s;
    *v = le64(c->g->base + c->pos);
    c->pos += 8;
    return LB_OK;
}

/* Reads a string header and skips its bytes; off and len locate the bytes in the file. */
static lb_status rd_str(cur *c, size_t *off, size_t *len, const char *what) {
    size_t at = c->pos;
    uint64_t n;
    lb_status s = rd_u64(c, &n, what);
    if (s) return s;
    if (n > left(c))
        return BAD(c, at, "%s length %llu runs past end of file (size %zu)", what, (unsigned long long)n, c->g->size);
    *off = c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return LB_OK;
}

/* ---- growable tables ---------------------------------------------------------------------- */
static int grow(void **p, size_t *cap, size_t need_n, size_t elem) {
    if (need_n <= *cap) return 1;
    size_t cap2 = *cap ? *cap * 2 : 16;
    if (cap2 < need_n) cap2 = need_n;
    size_t bytes;
    if (!lb_mul_ok(cap2, elem, &bytes)) return 0;
    void *q = realloc(*p, bytes);
    if (!q) return 0;
    *p = q;
    *cap = cap2;
    return 1;
}

static lb_status oom(cur *c) { return lb_fail(c->err, LB_ERR_NOMEM, "%s: out of memory while parsing", c->g->name); }

/* Copies a name into the pool, NUL-terminated; refuses embedded NULs, which would make two
 * different names compare equal. */
static lb_status pool_add(cur *c, size_t off, size_t len, size_t *out, const char *what) {
    lb_gguf *g = c->g;
    if (memchr(g->base + off, 0, len)) return BAD(c, off, "%s contains a NUL byte", what);
    if (!grow((void **)&g->pool, &g->pool_cap, g->pool_len + len + 1, 1)) return oom(c);
    memcpy(g->pool + g->pool_len, g->base + off, len);
    g->pool[g->pool_len + len] = 0;
    *out = g->pool_len;
    g->pool_len += len + 1;
    return LB_OK;
}

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Inserts index i whose name is names(i); returns the clashing index + 1, or 0. */
static size_t hash_insert(uint32_t *tab, size_t cap, const char *name, size_t i, const char *(*names)(const lb_gguf *, size_t),
                          const lb_gguf *g) {
    size_t h = hash_str(name) & (cap - 1);
    while (tab[h]) {
        if (strcmp(names(g, tab[h] - 1), name) == 0) return tab[h];
        h = (h + 1) & (cap - 1);
    }
    tab[h] = (uint32_t)(i + 1);
    return 0;
}

static size_t hash_find(const uint32_t *tab, size_t cap, const char *name, const char *(*names)(const lb_gguf *, size_t),
                        const lb_gguf *g) {
    if (!cap) return 0;
    size_t h = hash_str(name) & (cap - 1);
    while (tab[h]) {
        if (strcmp(names(g, tab[h] - 1), name) == 0) return tab[h];
        h = (h + 1) & (cap - 1);
    }
    return 0;
}

static const char *kv_name_parsing(const lb_gguf *g, size_t i) { return g->pool + g->kv[i].key; }
static const char *t_name_parsing(const lb_gguf *g, size_t i) { return g->pool + g->tname[i]; }
static const char *kv_name_done(const lb_gguf *g, size_t i) { return g->kv[i].name; }
static const char *t_name_done(const lb_gguf *g, size_t i) { return g->tensors[i].name; }

static int alloc_hash(uint32_t **tab, size_t *cap, size_t n) {
    size_t c = 16;
    while (c < 2 * n) c *= 2;
    *tab = calloc(c, sizeof **tab);
    *cap = c;
    return *tab != NULL;
}

/* ---- values ------------------------------------------------------------------------------- */
static lb_status parse_array(cur *c, size_t slot, int depth);

static lb_status skip_value(cur *c, uint32_t type, size_t *node, int depth) {
    if (type == LB_GGUF_STRING) {
        size_t off, len;
        return rd_str(c, &off, &len, "string");
    }
    if (type == LB_GGUF_ARRAY) {
        lb_gguf *g = c->g;
        if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes)) return oom(c);
        *node = g->n_nodes++;
        return parse_array(c, *node, depth + 1);
    }
    size_t n = lb_gguf_type_size(type);
    if (!n) return BAD(c, c->pos - 4, "unknown value type id %u", type);
    lb_status s = need(c, n, lb_gguf_type_name(type));
    if (s) return s;
    if (type == LB_GGUF_BOOL && c->g->base[c->pos] > 1)
        lb_warn("%s: offset %zu: %s: bool value %u is neither 0 nor 1 (read as true)", c->g->name, c->pos, c->ctx,
                c->g->base[c->pos]);
    c->pos += n;
    return LB_OK;
}

/* Reads an array (element type, count, elements) into nodes[slot]. */
static lb_status parse_array(cur *c, size_t slot, int depth) {
    lb_gguf *g = c->g;
    size_t at = c->pos;
    if (depth > LB_GGUF_MAX_ARRAY_DEPTH) return BAD(c, at, "arrays nested more than %d deep", LB_GGUF_MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    lb_status s;
    if ((s = rd_u32(c, &et, "array element type"))) return s;
    if (et >= LB_GGUF_TYPE_COUNT) return BAD(c, at, "unknown array element type id %u", et);
    if ((s = rd_u64(c, &n, "array count"))) return s;
    /* the smallest encoding of one element bounds the count before anything is allocated */
    size_t esz = lb_gguf_type_size(et), min = esz ? esz : et == LB_GGUF_STRING ? 8 : 12;
    if (n > left(c) / min)
        return BAD(c, at + 4, "array count %llu of %s runs past end of file (size %zu, %zu bytes left)",
                   (unsigned long long)n, lb_gguf_type_name(et), g->size, left(c));
    arr_node nd = {et, (size_t)n, c->pos, 0};
    if (esz) {
        if (et == LB_GGUF_BOOL)
            for (size_t i = 0; i < nd.n; i++)
                if (g->base[c->pos + i] > 1) {
                    lb_warn("%s: offset %zu: %s: bool element %zu is %u (read as true)", g->name, c->pos + i, c->ctx, i,
                            g->base[c->pos + i]);
                    break;
                }
        c->pos += nd.n * esz;
    } else if (et == LB_GGUF_STRING) {
        nd.idx = g->n_offs;
        if (!grow((void **)&g->offs, &g->cap_offs, g->n_offs + nd.n, sizeof *g->offs)) return oom(c);
        g->n_offs += nd.n;
        for (size_t i = 0; i < nd.n; i++) {
            g->offs[nd.idx + i] = c->pos;
            size_t off, len;
            if ((s = rd_str(c, &off, &len, "string element"))) return s;
        }
    } else {
        /* children are contiguous so element i is node idx + i */
        nd.idx = g->n_nodes;
        if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + nd.n, sizeof *g->nodes)) return oom(c);
        g->n_nodes += nd.n;
        for (size_t i = 0; i < nd.n; i++)
            if ((s = parse_array(c, nd.idx + i, depth + 1))) return s;
    }
    g->nodes[slot] = nd;
    return LB_OK;
}

/* ---- header, metadata, tensor infos --------------------------------------------------------- */
static lb_status parse_header(cur *c, uint64_t *n_tensors, uint64_t *n_kv) {
    lb_gguf *g = c->g;
    if (g->size < 4) return BAD(c, 0, "file is %zu bytes, too short for a GGUF header", g->size);
    if (memcmp(g->base, "GGUF", 4) != 0) {
        const uint8_t *m = g->base;
        return BAD(c, 0, "not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")", m[0], m[1], m[2], m[3]);
    }
    c->pos = 4;
    uint32_t v;
    lb_status s;
    if ((s = rd_u32(c, &v, "version"))) return s;
    if (v == 0x02000000u || v == 0x03000000u)
        return bad_at(c, LB_ERR_UNSUPPORTED, 4, "big-endian GGUF files are not supported");
    if (v == 1) return bad_at(c, LB_ERR_UNSUPPORTED, 4, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (v != 2 && v != 3) return bad_at(c, LB_ERR_UNSUPPORTED, 4, "unknown GGUF version %u (supported: 2 and 3)", v);
    g->version = v;
    if ((s = rd_u64(c, n_tensors, "tensor count"))) return s;
    if ((s = rd_u64(c, n_kv, "metadata count"))) return s;
    /* smallest encodings: key (8) + type (4) + u8 (1); name (8) + n_dims (4) + ne (8) + type (4) + offset (8) */
    if (*n_kv > left(c) / 13 || *n_kv >= UINT32_MAX)
        return BAD(c, 16, "metadata count %llu cannot fit in the %zu bytes left (file size %zu)",
                   (unsigned long long)*n_kv, left(c), g->size);
    if (*n_tensors > left(c) / 32 || *n_tensors >= UINT32_MAX)
        return BAD(c, 8, "tensor count %llu cannot fit in the %zu bytes left (file size %zu)",
                   (unsigned long long)*n_tensors, left(c), g->size);
    return LB_OK;
}

static lb_status parse_kvs(cur *c, size_t n) {
    lb_gguf *g = c->g;
    g->kv = calloc(n ? n : 1, sizeof *g->kv);
    if (!g->kv || !alloc_hash(&g->kv_hash, &g->kv_hcap, n)) return oom(c);
    lb_status s;
    for (size_t i = 0; i < n; i++) {
        kv_ent *e = &g->kv[i];
        snprintf(c->ctx, sizeof c->ctx, "metadata entry %zu", i);
        size_t off, len;
        if ((s = rd_str(c, &off, &len, "key"))) return s;
        if ((s = pool_add(c, off, len, &e->key, "key"))) return s;
        snprintf(c->ctx, sizeof c->ctx, "key %.100s", g->pool + e->key);
        g->n_kv = i + 1;
        size_t dup = hash_insert(g->kv_hash, g->kv_hcap, g->pool + e->key, i, kv_name_parsing, g);
        if (dup) return BAD(c, off - 8, "appears twice (first as entry %zu)", dup - 1);
        size_t at = c->pos;
        if ((s = rd_u32(c, &e->type, "value type"))) return s;
        if (e->type >= LB_GGUF_TYPE_COUNT) return BAD(c, at, "unknown value type id %u", e->type);
        e->val = c->pos;
        if ((s = skip_value(c, e->type, &e->node, 0))) return s;
        e->end = c->pos;
    }
    c->ctx[0] = 0;
    return LB_OK;
}

static lb_status read_alignment(cur *c) {
    lb_gguf *g = c->g;
    g->alignment = LB_GGUF_DEFAULT_ALIGNMENT;
    size_t i = hash_find(g->kv_hash, g->kv_hcap, "general.alignment", kv_name_parsing, g);
    if (!i) return LB_OK;
    const kv_ent *e = &g->kv[i - 1];
    snprintf(c->ctx, sizeof c->ctx, "key general.alignment");
    uint64_t a;
    switch (e->type) {
    case LB_GGUF_U8: a = g->base[e->val]; break;
    case LB_GGUF_U16: a = le16(g->base + e->val); break;
    case LB_GGUF_U32: a = le32(g->base + e->val); break;
    case LB_GGUF_U64: a = le64(g->base + e->val); break;
    case LB_GGUF_I32: a = (uint64_t)(int64_t)(int32_t)le32(g->base + e->val); break;
    case LB_GGUF_I64: a = le64(g->base + e->val); break;
    default: return BAD(c, e->val, "has type %s, expected u32", lb_gguf_type_name(e->type));
    }
    if (e->type != LB_GGUF_U32)
        lb_warn("%s: key general.alignment has type %s, expected u32 (value used)", g->name, lb_gguf_type_name(e->type));
    if (a == 0 || (a & (a - 1)) || a > (1u << 30))
        return BAD(c, e->val, "alignment %llu is not a power of two between 1 and 2^30", (unsigned long long)a);
    g->alignment = (size_t)a;
    c->ctx[0] = 0;
    return LB_OK;
}

static lb_status parse_tensor_info(cur *c, size_t i) {
    lb_gguf *g = c->g;
    lb_tensor *t = &g->tensors[i];
    lb_status s;
    snprintf(c->ctx, sizeof c->ctx, "tensor info %zu", i);
    size_t off, len;
    if ((s = rd_str(c, &off, &len, "tensor name"))) return s;
    if ((s = pool_add(c, off, len, &g->tname[i], "tensor name"))) return s;
    const char *name = g->pool + g->tname[i];
    snprintf(c->ctx, sizeof c->ctx, "tensor %.100s", name);
    g->n_tensors = i + 1;
    size_t dup = hash_insert(g->t_hash, g->t_hcap, name, i, t_name_parsing, g);
    if (dup) return BAD(c, off - 8, "tensor name appears twice (first as tensor %zu)", dup - 1);
    size_t at = c->pos;
    uint32_t nd, type;
    if ((s = rd_u32(c, &nd, "n_dims"))) return s;
    if (nd < 1 || nd > LB_MAX_DIMS) return BAD(c, at, "n_dims %u (must be 1 to %d)", nd, LB_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t elems = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        at = c->pos;
        if ((s = rd_u64(c, &v, "dimension"))) return s;
        if (v > (uint64_t)INT64_MAX) return BAD(c, at, "dimension %u is %llu, too large", d, (unsigned long long)v);
        if (v && elems > (uint64_t)INT64_MAX / v)
            return BAD(c, at, "element count overflows at dimension %u (%llu)", d, (unsigned long long)v);
        elems *= v;
        t->ne[d] = (int64_t)v;
    }
    for (int d = (int)nd; d < LB_MAX_DIMS; d++) t->ne[d] = 1;
    at = c->pos;
    if ((s = rd_u32(c, &type, "tensor type"))) return s;
    if (!lb_dtype_get(type) || type == LB_Q4_0_R8) return BAD(c, at, "unknown tensor type id %u", type);
    t->type = (lb_dtype)type;
    char what[256];
    snprintf(what, sizeof what, "%s: offset %zu: tensor %.100s", g->name, at, name);
    if ((s = lb_tensor_nbytes(t->type, t->n_dims, t->ne, &t->nbytes, what, c->err))) return s;
    if ((s = rd_u64(c, &g->toff[i], "tensor data offset"))) return s;
    return LB_OK;
}

typedef struct span {
    uint64_t off, end;
    size_t i;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* No two tensors share bytes: no writer makes such a file, and a delta or an in-place
 * conversion of one would silently change the other. Sorted by offset, an overlap shows
 * between neighbours (zero-size tensors cover nothing and are left out). */
static lb_status check_overlaps(cur *c, size_t start) {
    lb_gguf *g = c->g;
    if (g->n_tensors < 2) return LB_OK;
    span *s = malloc(g->n_tensors * sizeof *s);
    if (!s) return lb_fail(c->err, LB_ERR_NOMEM, "%s: out of memory for %zu tensor ranges", g->name, g->n_tensors);
    size_t n = 0;
    for (size_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].nbytes) s[n++] = (span){g->toff[i], g->toff[i] + g->tensors[i].nbytes, i};
    qsort(s, n, sizeof *s, cmp_span);
    lb_status st = LB_OK;
    for (size_t k = 1; k < n && !st; k++)
        if (s[k].off < s[k - 1].end)
            st = BAD(c, start + (size_t)s[k].off, "tensor %.100s: data [%llu, %llu) overlaps tensor %.100s [%llu, %llu)",
                     g->pool + g->tname[s[k].i], (unsigned long long)s[k].off, (unsigned long long)s[k].end,
                     g->pool + g->tname[s[k - 1].i], (unsigned long long)s[k - 1].off, (unsigned long long)s[k - 1].end);
    free(s);
    return st;
}

/* With the data section located, every tensor must lie inside it at an aligned offset, apart
 * from every other. */
static lb_status place_tensors(cur *c, size_t infos_end) {
    lb_gguf *g = c->g;
    size_t start;
    if (!lb_add_ok(infos_end, g->alignment - 1, &start))
        return BAD(c, infos_end, "data section offset overflows");
    start &= ~(g->alignment - 1);
    g->data_off = start;
    if (start > g->size) {
        if (g->n_tensors)
            return BAD(c, infos_end, "data section would start at offset %zu, past end of file (size %zu)", start, g->size);
        g->data_off = g->size;
        return LB_OK;
    }
    size_t avail = g->size - start;
    for (size_t i = 0; i < g->n_tensors; i++) {
        lb_tensor *t = &g->tensors[i];
        uint64_t off = g->toff[i];
        snprintf(c->ctx, sizeof c->ctx, "tensor %.100s", g->pool + g->tname[i]);
        if (off % g->alignment)
            return BAD(c, start, "data offset %llu is not a multiple of the alignment %zu", (unsigned long long)off, g->alignment);
        if (off > avail || t->nbytes > avail - off)
            return BAD(c, start, "data [%llu, +%zu) runs past end of file: the data section holds %zu bytes (file size %zu)",
                       (unsigned long long)off, t->nbytes, avail, g->size);
        t->data = g->base + start + off;
    }
    c->ctx[0] = 0;
    lb_status s = check_overlaps(c, start);
    if (s) return s;
    size_t trailing = 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        size_t end = (size_t)g->toff[i] + g->tensors[i].nbytes;
        if (end > trailing) trailing = end;
    }
    if (g->n_tensors && avail - trailing >= g->alignment)
        lb_info("%s: %zu bytes after the last tensor's data are unused", g->name, avail - trailing);
    return LB_OK;
}

static lb_status parse_all(lb_gguf *g, lb_error *err) {
    cur c = {.g = g, .err = err};
    uint64_t n_tensors, n_kv;
    lb_status s;
    if ((s = parse_header(&c, &n_tensors, &n_kv))) return s;
    if ((s = parse_kvs(&c, (size_t)n_kv))) return s;
    if ((s = read_alignment(&c))) return s;
    if (n_tensors > left(&c) / 32)
        return BAD(&c, 8, "tensor count %llu cannot fit in the %zu bytes left after the metadata (file size %zu)",
                   (unsigned long long)n_tensors, left(&c), g->size);
    size_t nt = (size_t)n_tensors;
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    g->toff = calloc(nt ? nt : 1, sizeof *g->toff);
    g->tname = calloc(nt ? nt : 1, sizeof *g->tname);
    if (!g->tensors || !g->toff || !g->tname || !alloc_hash(&g->t_hash, &g->t_hcap, nt)) return oom(&c);
    for (size_t i = 0; i < nt; i++)
        if ((s = parse_tensor_info(&c, i))) return s;
    c.ctx[0] = 0;
    if ((s = place_tensors(&c, c.pos))) return s;
    /* names are final now that the pool no longer moves */
    if (!g->pool && !grow((void **)&g->pool, &g->pool_cap, 1, 1)) return oom(&c);
    for (size_t i = 0; i < g->n_kv; i++) g->kv[i].name = g->pool + g->kv[i].key;
    for (size_t i = 0; i < g->n_tensors; i++) g->tensors[i].name = g->pool + g->tname[i];
    return LB_OK;
}

static lb_status parse_into(lb_gguf *g, const char *name, lb_gguf **out, lb_error *err) {
    g->name = strdup(name ? name : "gguf");
    if (!g->name) {
        lb_gguf_close(g);
        return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", name ? name : "gguf");
    }
    lb_status s = parse_all(g, err);
    if (s) {
        lb_gguf_close(g);
        return s;
    }
    *out = g;
    return LB_OK;
}

lb_status lb_gguf_parse(const void *data, size_t size, const char *name, lb_gguf **out, lb_error *err) {
    *out = NULL;
    lb_gguf *g = calloc(1, sizeof *g);
    if (!g) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", name ? name : "gguf");
    static const uint8_t empty[1];
    g->base = data ? data : empty;
    g->size = data ? size : 0;
    return parse_into(g, name, out, err);
}

lb_status lb_gguf_open(const char *path, lb_gguf **out, lb_error *err) {
    *out = NULL;
    lb_gguf *g = calloc(1, sizeof *g);
    if (!g) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", path);
    lb_status s = lb_mapfile_open(path, &g->map, err);
    if (s) {
        free(g);
        return s;
    }
    g->owns_map = 1;
    g->base = g->map.data;
    g->size = g->map.size;
    return parse_into(g, path, out, err);
}

void lb_gguf_close(lb_gguf *g) {
    if (!g) return;
    if (g->owns_map) lb_mapfile_close(&g->map);
    free(g->name);
    free(g->kv);
    free(g->nodes);
    free(g->offs);
    free(g->tensors);
    free(g->toff);
    free(g->tname);
    free(g->pool);
    free(g->kv_hash);
    free(g->t_hash);
    free(g);
}

/* ---- accessors ---------------------------------------------------------------------------- */
const char *lb_gguf_name(const lb_gguf *g) { return g->name; }
uint32_t lb_gguf_version(const lb_gguf *g) { return g->version; }
size_t lb_gguf_alignment(const lb_gguf *g) { return g->alignment; }
size_t lb_gguf_data_offset(const lb_gguf *g) { return g->data_off; }
size_t lb_gguf_file_size(const lb_gguf *g) { return g->size; }
const void *lb_gguf_file_data(const lb_gguf *g) { return g->base; }
size_t lb_gguf_kv_count(const lb_gguf *g) { return g->n_kv; }
const char *lb_gguf_kv_key(const lb_gguf *g, size_t i) { return i < g->n_kv ? g->kv[i].name : NULL; }
lb_gguf_type lb_gguf_kv_type(const lb_gguf *g, size_t i) {
    return i < g->n_kv ? (lb_gguf_type)g->kv[i].type : LB_GGUF_TYPE_COUNT;
}

int64_t lb_gguf_find_key(const lb_gguf *g, const char *key) {
    return (int64_t)hash_find(g->kv_hash, g->kv_hcap, key, kv_name_done, g) - 1;
}

void lb_gguf_kv_raw(const lb_gguf *g, size_t i, const void **data, size_t *size) {
    if (i >= g->n_kv) {
        *data = NULL;
        *size = 0;
        return;
    }
    *data = g->base + g->kv[i].val;
    *size = g->kv[i].end - g->kv[i].val;
}

size_t lb_gguf_tensor_count(const lb_gguf *g) { return g->n_tensors; }
const lb_tensor *lb_gguf_tensor(const lb_gguf *g, size_t i) { return i < g->n_tensors ? &g->tensors[i] : NULL; }
uint64_t lb_gguf_tensor_offset(const lb_gguf *g, size_t i) { return i < g->n_tensors ? g->toff[i] : 0; }

const lb_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name) {
    size_t i = hash_find(g->t_hash, g->t_hcap, name, t_name_done, g);
    return i ? &g->tensors[i - 1] : NULL;
}

/* Scalar decoding shared by the key getters and the array element getters. */
static int dec_int(const uint8_t *p, uint32_t type, int64_t *out) {
    switch (type) {
    case LB_GGUF_U8: case LB_GGUF_BOOL: *out = p[0]; return 0;
    case LB_GGUF_I8: *out = (int8_t)p[0]; return 0;
    case LB_GGUF_U16: *out = le16(p); return 0;
    case LB_GGUF_I16: *out = (int16_t)le16(p); return 0;
    case LB_GGUF_U32: *out = le32(p); return 0;
    case LB_GGUF_I32: *out = (int32_t)le32(p); return 0;
    case LB_GGUF_U64: {
        uint64_t v = le64(p);
        if (v > (uint64_t)INT64_MAX) return 2;
        *out = (int64_t)v;
        return 0;
    }
    case LB_GGUF_I64: *out = (int64_t)le64(p); return 0;
    }
    return 1;
}

static int dec_float(const uint8_t *p, uint32_t type, double *out) {
    if (type == LB_GGUF_F32) {
        uint32_t b = le32(p);
        float f;
        memcpy(&f, &b, 4);
        *out = f;
        return 0;
    }
    if (type == LB_GGUF_F64) {
        uint64_t b = le64(p);
        memcpy(out, &b, 8);
        return 0;
    }
    if (type == LB_GGUF_U64) {
        *out = (double)le64(p);
        return 0;
    }
    int64_t v;
    if (type == LB_GGUF_BOOL || dec_int(p, type, &v)) return 1;
    *out = (double)v;
    return 0;
}

static lb_status lookup(const lb_gguf *g, const char *key, size_t *i, lb_error *err) {
    int64_t k = lb_gguf_find_key(g, key);
    if (k < 0) return lb_fail(err, LB_ERR_RANGE, "%s: key %s is missing", g->name, key);
    *i = (size_t)k;
    return LB_OK;
}

static lb_status wrong_type(const lb_gguf *g, size_t i, const char *want, lb_error *err) {
    return lb_fail(err, LB_ERR_FORMAT, "%s: offset %zu: key %s has type %s, expected %s", g->name, g->kv[i].val,
                   g->kv[i].name, lb_gguf_type_name(g->kv[i].type), want);
}

lb_status lb_gguf_get_int(const lb_gguf *g, const char *key, int64_t *out, lb_error *err) {
    size_t i = 0;
    lb_status s = lookup(g, key, &i, err);
    if (s) return s;
    int r = dec_int(g->base + g->kv[i].val, g->kv[i].type, out);
    if (r == 2) return lb_fail(err, LB_ERR_RANGE, "%s: key %s: value does not fit in int64", g->name, key);
    return r ? wrong_type(g, i, "an integer", err) : LB_OK;
}

lb_status lb_gguf_get_float(const lb_gguf *g, const char *key, double *out, lb_error *err) {
    size_t i = 0;
    lb_status s = lookup(g, key, &i, err);
    if (s) return s;
    return dec_float(g->base + g->kv[i].val, g->kv[i].type, out) ? wrong_type(g, i, "a number", err) : LB_OK;
}

lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, bool *out, lb_error *err) {
    size_t i = 0;
    lb_status s = lookup(g, key, &i, err);
    if (s) return s;
    int64_t v;
    if (dec_int(g->base + g->kv[i].val, g->kv[i].type, &v)) return wrong_type(g, i, "bool", err);
    *out = v != 0;
    return LB_OK;
}

lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, const char **str, size_t *len, lb_error *err) {
    size_t i = 0;
    lb_status s = lookup(g, key, &i, err);
    if (s) return s;
    if (g->kv[i].type != LB_GGUF_STRING) return wrong_type(g, i, "string", err);
    *len = (size_t)le64(g->base + g->kv[i].val);
    *str = (const char *)g->base + g->kv[i].val + 8;
    /* a NUL inside would cut the value short wherever it is printed or compared as C text, so a
     * message would name a value ("gpt2") other than the one the file holds ("gpt2\0") */
    const char *nul = memchr(*str, 0, *len);
    if (nul)
        return lb_fail(err, LB_ERR_FORMAT, "%s: offset %zu: key %s: the %zu-byte string has a NUL at byte %zu (file offset %zu)",
                       g->name, g->kv[i].val, g->kv[i].name, *len, (size_t)(nul - *str), g->kv[i].val + 8 + (size_t)(nul - *str));
    return LB_OK;
}

static void make_arr(const lb_gguf *g, size_t node, size_t kv, lb_gguf_arr *out) {
    out->type = (lb_gguf_type)g->nodes[node].type;
    out->n = g->nodes[node].n;
    out->g = g;
    out->node = node;
    out->kv = kv;
}

lb_status lb_gguf_kv_arr(const lb_gguf *g, size_t i, lb_gguf_arr *out, lb_error *err) {
    if (i >= g->n_kv) return lb_fail(err, LB_ERR_RANGE, "%s: metadata index %zu out of range", g->name, i);
    if (g->kv[i].type != LB_GGUF_ARRAY) return wrong_type(g, i, "array", err);
    make_arr(g, g->kv[i].node, i, out);
    return LB_OK;
}

lb_status lb_gguf_get_arr(const lb_gguf *g, const char *key, lb_gguf_arr *out, lb_error *err) {
    size_t i = 0;
    lb_status s = lookup(g, key, &i, err);
    return s ? s : lb_gguf_kv_arr(g, i, out, err);
}

/* Locates element i of a, checking index and element kind. */
static lb_status elem(const lb_gguf_arr *a, size_t i, const char *want, int ok, lb_error *err) {
    const lb_gguf *g = a->g;
    if (i >= a->n)
        return lb_fail(err, LB_ERR_RANGE, "%s: key %s: element %zu out of range (%zu elements)", g->name,
                       g->kv[a->kv].name, i, a->n);
    if (!ok)
        return lb_fail(err, LB_ERR_FORMAT, "%s: key %s: array of %s, expected %s", g->name, g->kv[a->kv].name,
                       lb_gguf_type_name(a->type), want);
    return LB_OK;
}

static const uint8_t *elem_ptr(const lb_gguf_arr *a, size_t i) {
    const arr_node *nd = &a->g->nodes[a->node];
    return a->g->base + nd->data + i * lb_gguf_type_size(nd->type);
}

lb_status lb_gguf_arr_int(const lb_gguf_arr *a, size_t i, int64_t *out, lb_error *err) {
    int64_t v;
    int isint = a->type != LB_GGUF_F32 && a->type != LB_GGUF_F64 && lb_gguf_type_size(a->type);
    lb_status s = elem(a, i, "integers", isint, err);
    if (s) return s;
    if (dec_int(elem_ptr(a, i), a->type, &v))
        return lb_fail(err, LB_ERR_RANGE, "%s: key %s: element %zu does not fit in int64", a->g->name,
                       a->g->kv[a->kv].name, i);
    *out = v;
    return LB_OK;
}

lb_status lb_gguf_arr_float(const lb_gguf_arr *a, size_t i, double *out, lb_error *err) {
    lb_status s = elem(a, i, "numbers", lb_gguf_type_size(a->type) && a->type != LB_GGUF_BOOL, err);
    if (s) return s;
    dec_float(elem_ptr(a, i), a->type, out);
    return LB_OK;
}

lb_status lb_gguf_arr_bool(const lb_gguf_arr *a, size_t i, bool *out, lb_error *err) {
    int64_t v = 0; /* set on success; gcc cannot see that once it inlines the call */
    lb_status s = lb_gguf_arr_int(a, i, &v, err);
    if (s) return s;
    *out = v != 0;
    return LB_OK;
}

lb_status lb_gguf_arr_str(const lb_gguf_arr *a, size_t i, const char **str, size_t *len, lb_error *err) {
    lb_status s = elem(a, i, "strings", a->type == LB_GGUF_STRING, err);
    if (s) return s;
    size_t off = a->g->offs[a->g->nodes[a->node].idx + i];
    *len = (size_t)le64(a->g->base + off);
    *str = (const char *)a->g->base + off + 8;
    return LB_OK;
}

lb_status lb_gguf_arr_arr(const lb_gguf_arr *a, size_t i, lb_gguf_arr *out, lb_error *err) {
    lb_status s = elem(a, i, "arrays", a->type == LB_GGUF_ARRAY, err);
    if (s) return s;
    make_arr(a->g, a->g->nodes[a->node].idx + i, a->kv, out);
    return LB_OK;
}

const void *lb_gguf_arr_data(const lb_gguf_arr *a) {
    return lb_gguf_type_size(a->type) ? elem_ptr(a, 0) : NULL;
}
