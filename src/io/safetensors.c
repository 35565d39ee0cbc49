#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapfile.h"

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
    int lb; /* lb_dtype or -1 */
} g_st_types[LB_ST_DTYPE_COUNT] = {
    [LB_ST_BOOL] = {"BOOL", 1, -1},        [LB_ST_U8] = {"U8", 1, -1},
    [LB_ST_I8] = {"I8", 1, LB_I8},         [LB_ST_F8_E5M2] = {"F8_E5M2", 1, -1},
    [LB_ST_F8_E4M3] = {"F8_E4M3", 1, -1},  [LB_ST_I16] = {"I16", 2, LB_I16},
    [LB_ST_U16] = {"U16", 2, -1},          [LB_ST_F16] = {"F16", 2, LB_F16},
    [LB_ST_BF16] = {"BF16", 2, LB_BF16},   [LB_ST_I32] = {"I32", 4, LB_I32},
    [LB_ST_U32] = {"U32", 4, -1},          [LB_ST_F32] = {"F32", 4, LB_F32},
    [LB_ST_F64] = {"F64", 8, LB_F64},      [LB_ST_I64] = {"I64", 8, LB_I64},
    [LB_ST_U64] = {"U64", 8, -1},
};

const char *lb_st_dtype_name(lb_st_dtype t) {
    return (unsigned)t < LB_ST_DTYPE_COUNT ? g_st_types[t].name : "?";
}

int lb_st_dtype_from_name(const char *s) {
    for (int i = 0; i < LB_ST_DTYPE_COUNT; i++)
        if (strcmp(g_st_types[i].name, s) == 0) return i;
    return -1;
}

size_t lb_st_dtype_size(lb_st_dtype t) { return (unsigned)t < LB_ST_DTYPE_COUNT ? g_st_types[t].size : 0; }

int lb_st_dtype_to_lb(lb_st_dtype t) { return (unsigned)t < LB_ST_DTYPE_COUNT ? g_st_types[t].lb : -1; }

int lb_st_dtype_from_lb(lb_dtype t) {
    for (int i = 0; i < LB_ST_DTYPE_COUNT; i++)
        if (g_st_types[i].lb == (int)t) return i;
    return -1;
}

/* ---- reader ---- */

struct lb_safetensors {
    const unsigned char *data;
    size_t size, data_off;
    char *name;
    lb_mapfile map;
    int owns_map;
    lb_st_tensor *t;
    size_t n;
    size_t *by_name; /* tensor indices sorted by name */
    char **meta;     /* key, value, key, value ... */
    size_t n_meta;
};

void lb_safetensors_close(lb_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((char *)st->t[i].name);
    for (size_t i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->t);
    free(st->by_name);
    if (st->owns_map) lb_mapfile_close(&st->map);
    free(st->name);
    free(st);
}

/* JSON numbers are doubles: accept only exact non-negative integers up to 2^53. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0)) return 0;
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return 0;
    *out = u;
    return 1;
}

static lb_status parse_meta(lb_safetensors *st, const cJSON *obj, lb_error *err) {
    if (st->meta) return lb_fail(err, LB_ERR_FORMAT, "%s: __metadata__ appears twice", st->name);
    if (!cJSON_IsObject(obj)) return lb_fail(err, LB_ERR_FORMAT, "%s: __metadata__ is not a JSON object", st->name);
    size_t n = (size_t)cJSON_GetArraySize(obj);
    st->meta = calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", st->name);
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return lb_fail(err, LB_ERR_FORMAT, "%s: __metadata__ value of \"%.64s\" is not a string", st->name,
                           kv->string);
        char **slot = &st->meta[2 * st->n_meta];
        slot[0] = strdup(kv->string);
        slot[1] = strdup(kv->valuestring);
        st->n_meta++; /* counted before the check so close() frees a half-made pair */
        if (!slot[0] || !slot[1]) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", st->name);
    }
    return LB_OK;
}

static lb_status parse_tensor(lb_safetensors *st, const cJSON *e, lb_st_tensor *t, lb_error *err) {
    const char *nm = e->string, *f = st->name;
    size_t avail = st->size - st->data_off;
    if (!cJSON_IsObject(e)) return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: entry is not a JSON object", f, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: dtype missing or not a string", f, nm);
    int d = lb_st_dtype_from_name(dt->valuestring);
    if (d < 0) return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: unknown dtype \"%.32s\"", f, nm, dt->valuestring);
    t->dtype = (lb_st_dtype)d;
    if (!cJSON_IsArray(sh)) return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: shape missing or not an array", f, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > LB_ST_MAX_DIMS)
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: shape has %d dimensions (at most %d)", f, nm, nd, LB_ST_MAX_DIMS);
    t->n_dims = nd;
    size_t count = 1;
    int i = 0;
    for (const cJSON *v = sh->child; v; v = v->next, i++) {
        uint64_t u;
        if (!json_uint(v, &u))
            return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: shape[%d] is not a non-negative integer", f, nm, i);
        t->shape[i] = (int64_t)u;
        if (!lb_mul_ok(count, (size_t)u, &count))
            return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: element count overflows", f, nm);
    }
    if (!lb_mul_ok(count, lb_st_dtype_size(t->dtype), &t->nbytes))
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: byte size overflows", f, nm);
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) ||
        !json_uint(off->child->next, &en))
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: data_offsets is not a pair of non-negative integers", f, nm);
    if (b > en)
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: data_offsets [%llu, %llu] end before they begin", f, nm,
                       (unsigned long long)b, (unsigned long long)en);
    if (en > avail)
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: data_offsets [%llu, %llu] run past the data section (%zu bytes; file truncated?)",
                       f, nm, (unsigned long long)b, (unsigned long long)en, avail);
    if (en - b != t->nbytes)
        return lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: data_offsets span %llu bytes but %s x shape needs %zu", f, nm,
                       (unsigned long long)(en - b), lb_st_dtype_name(t->dtype), t->nbytes);
    t->offset = st->data_off + (size_t)b;
    t->data = st->data + t->offset;
    return LB_OK;
}

/* qsort has no context argument: sort pointers into the tensor array instead of indices. */
static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const lb_st_tensor *const *)a)->name, (*(const lb_st_tensor *const *)b)->name);
}
static int cmp_offset(const void *a, const void *b) {
    const lb_st_tensor *x = *(const lb_st_tensor *const *)a, *y = *(const lb_st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Builds the name index and rejects duplicate names and overlapping data. */
static lb_status index_tensors(lb_safetensors *st, lb_error *err) {
    if (!st->n) return LB_OK;
    const lb_st_tensor **p = malloc(st->n * sizeof *p);
    st->by_name = malloc(st->n * sizeof *st->by_name);
    if (!p || !st->by_name) {
        free(p);
        return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", st->name);
    }
    for (size_t i = 0; i < st->n; i++) p[i] = &st->t[i];
    qsort(p, st->n, sizeof *p, cmp_offset);
    for (size_t i = 1; i < st->n; i++)
        if (p[i]->offset < p[i - 1]->offset + p[i - 1]->nbytes) {
            lb_status s = lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s: data overlaps tensor %.128s", st->name,
                                  p[i]->name, p[i - 1]->name);
            free(p);
            return s;
        }
    qsort(p, st->n, sizeof *p, cmp_name);
    for (size_t i = 0; i < st->n; i++) {
        if (i && strcmp(p[i]->name, p[i - 1]->name) == 0) {
            lb_status s = lb_fail(err, LB_ERR_FORMAT, "%s: tensor %.128s appears twice", st->name, p[i]->name);
            free(p);
            return s;
        }
        st->by_name[i] = (size_t)(p[i] - st->t);
    }
    free(p);
    return LB_OK;
}

static lb_status parse_header(lb_safetensors *st, lb_error *err) {
    const char *f = st->name;
    if (st->size < 8)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length", f, st->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | st->data[i];
    if (hlen > LB_ST_MAX_HEADER)
        return lb_fail(err, LB_ERR_FORMAT, "%s: header length %llu is over the %zu-byte limit (not a safetensors file?)", f,
                       (unsigned long long)hlen, LB_ST_MAX_HEADER);
    if (hlen > st->size - 8)
        return lb_fail(err, LB_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes; truncated?)", f,
                       (unsigned long long)hlen, st->size);
    st->data_off = 8 + (size_t)hlen;
    const char *json = (const char *)st->data + 8;
    if (hlen < 2 || json[0] != '{') return lb_fail(err, LB_ERR_FORMAT, "%s: header is not a JSON object", f);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= json && end <= json + hlen ? (size_t)(end - json) + 8 : 8;
        return lb_fail(err, LB_ERR_FORMAT, "%s: header JSON is invalid near byte offset %zu", f, at);
    }
    for (const char *p = end; p < json + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return lb_fail(err, LB_ERR_FORMAT, "%s: unexpected bytes after the header JSON at byte offset %zu", f,
                           (size_t)(p - json) + 8);
        }
    lb_status s = LB_OK;
    if (!cJSON_IsObject(root)) {
        s = lb_fail(err, LB_ERR_FORMAT, "%s: header is not a JSON object", f);
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    st->t = calloc(n ? n : 1, sizeof *st->t);
    if (!st->t) {
        s = lb_fail(err, LB_ERR_NOMEM, "%s: out of memory for %zu tensors", f, n);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if ((s = parse_meta(st, e, err))) goto done;
            continue;
        }
        lb_st_tensor *t = &st->t[st->n];
        if (!(t->name = strdup(e->string))) {
            s = lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", f);
            goto done;
        }
        st->n++;
        if ((s = parse_tensor(st, e, t, err))) goto done;
    }
    s = index_tensors(st, err);
done:
    cJSON_Delete(root);
    return s;
}

lb_status lb_safetensors_parse(const void *data, size_t size, const char *name, lb_safetensors **out, lb_error *err) {
    *out = NULL;
    if (!name) name = "safetensors";
    lb_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->name = strdup(name))) {
        free(st);
        return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", name);
    }
    st->data = data;
    st->size = size;
    lb_status s = parse_header(st, err);
    if (s) {
        lb_safetensors_close(st);
        return s;
    }
    *out = st;
    return LB_OK;
}

lb_status lb_safetensors_open(const char *path, lb_safetensors **out, lb_error *err) {
    *out = NULL;
    lb_mapfile map;
    lb_status s = lb_mapfile_open(path, &map, err);
    if (s) return s;
    if ((s = lb_safetensors_parse(map.data, map.size, path, out, err))) {
        lb_mapfile_close(&map);
        return s;
    }
    (*out)->map = map;
    (*out)->owns_map = 1;
    return LB_OK;
}

size_t lb_safetensors_count(const lb_safetensors *st) { return st->n; }
size_t lb_safetensors_data_offset(const lb_safetensors *st) { return st->data_off; }
const char *lb_safetensors_name(const lb_safetensors *st) { return st->name; }

const lb_st_tensor *lb_safetensors_info(const lb_safetensors *st, size_t i) { return i < st->n ? &st->t[i] : NULL; }

long lb_safetensors_find(const lb_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[st->by_name[mid]].name, name);
        if (c == 0) return (long)st->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

lb_status lb_safetensors_get(const lb_safetensors *st, size_t i, lb_tensor *out, lb_error *err) {
    if (i >= st->n) return lb_fail(err, LB_ERR_RANGE, "%s: tensor index %zu out of range (%zu tensors)", st->name, i, st->n);
    const lb_st_tensor *t = &st->t[i];
    int lb = lb_st_dtype_to_lb(t->dtype);
    if (lb < 0)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tensor %s: dtype %s is not supported here", st->name, t->name,
                       lb_st_dtype_name(t->dtype));
    if (t->n_dims > LB_MAX_DIMS)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tensor %s: %d dimensions (at most %d supported)", st->name, t->name,
                       t->n_dims, LB_MAX_DIMS);
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->type = (lb_dtype)lb;
    out->n_dims = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) out->ne[d] = t->shape[t->n_dims - 1 - d];
    out->data = t->data;
    out->nbytes = t->nbytes;
    return LB_OK;
}

size_t lb_safetensors_n_meta(const lb_safetensors *st) { return st->n_meta; }
const char *lb_safetensors_meta_key(const lb_safetensors *st, size_t i) { return i < st->n_meta ? st->meta[2 * i] : NULL; }
const char *lb_safetensors_meta_value(const lb_safetensors *st, size_t i) {
    return i < st->n_meta ? st->meta[2 * i + 1] : NULL;
}
const char *lb_safetensors_meta_get(const lb_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}
