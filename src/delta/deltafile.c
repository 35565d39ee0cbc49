/* Reading delta files: open + full validation, and the sequential patcher used by apply and by
 * lb_model_apply_delta. */
#include "delta/deltafile.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "core/dtype.h"
#include "core/error.h"
#include "delta/zdiff.h"

const char *lb_delta_mode_name(lb_delta_mode m) {
    switch (m) {
    case LB_DELTA_XOR: return "xor";
    case LB_DELTA_FLOAT: return "float";
    case LB_DELTA_INT8: return "int8";
    case LB_DELTA_ZDIFF: return "zdiff";
    case LB_DELTA_SIGN: return "sign";
    case LB_DELTA_MIXED: return "mixed";
    }
    return "?";
}

uint64_t lb_delta_fingerprint_add(uint64_t acc, const char *name, uint64_t tensor_hash) {
    XXH64_state_t st;
    XXH64_reset(&st, acc);
    XXH64_update(&st, name, strlen(name) + 1);
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(tensor_hash >> (8 * i));
    XXH64_update(&st, b, 8);
    return XXH64_digest(&st);
}

void lb_delta_close(lb_delta *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free(d->e[i].name), free(d->e[i].zoff);
    free(d->e);
    if (d->st) lb_safetensors_close(d->st);
    free(d->path);
    lb_pool_free(d->pool);
    free(d->perr);
    free(d);
}

lb_status lb_delta_use_threads(lb_delta *d, int n_threads, lb_error *err) {
    if (d->pool) return LB_OK;
    d->pool = lb_pool_new(n_threads); /* NULL and 1 thread on a 1-CPU machine: sequential */
    if (lb_pool_size(d->pool) > 1 && !(d->perr = calloc((size_t)lb_pool_size(d->pool), sizeof *d->perr))) {
        lb_pool_free(d->pool), d->pool = NULL;
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    return LB_OK;
}

static int parse_hex(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 16);
    if (*end) return 0;
    *out = v;
    return 1;
}

static int json_u64(const cJSON *o, const char *k, uint64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (uint64_t)v->valuedouble;
    return 1;
}

static int json_hex(const cJSON *o, const char *k, uint64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && parse_hex(v->valuestring, out);
}

/* One data tensor of entry e: must exist with dtype dt and count elements (or be absent when
 * count is 0 and it is optional). */
static lb_status part(lb_delta *d, const lb_delta_entry *e, const char *suffix, lb_st_dtype dt, uint64_t count,
                      const uint8_t **out, uint64_t *h, size_t *used, lb_error *err) {
    char nm[1024];
    snprintf(nm, sizeof nm, "%s::%s", e->name, suffix);
    long i = lb_safetensors_find(d->st, nm);
    *out = NULL;
    if (i < 0) return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: data %s is missing", d->path, e->name, nm);
    const lb_st_tensor *t = lb_safetensors_info(d->st, (size_t)i);
    uint64_t want = count * lb_st_dtype_size(dt);
    if (t->dtype != dt || t->nbytes != want)
        return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: %s is %s with %zu bytes, expected %s with %" PRIu64, d->path,
                       e->name, nm, lb_st_dtype_name(t->dtype), t->nbytes, lb_st_dtype_name(dt), want);
    *out = t->data;
    *h = lb_delta_fingerprint_add(*h, suffix, XXH64(t->data, t->nbytes, 0));
    lb_tsrc_release(t->data, t->nbytes); /* read again, in order, when applied */
    (*used)++;
    d->data_bytes += t->nbytes;
    return LB_OK;
}

/* Walks the chunks of a 'z' entry: each header in bounds, the right count, no bytes left over. */
static lb_status check_z(const lb_delta *d, lb_delta_entry *e, lb_error *err) {
    uint64_t off = 0, nc = (e->n + LB_ZD_CHUNK - 1) / LB_ZD_CHUNK;
    /* every chunk has a header of at least 12 bytes: a count the data cannot hold is refused
     * before the offset table is allocated */
    if (nc > e->zbytes / (4u * e->es + 8u))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: %" PRIu64 " bytes cannot hold %" PRIu64 " chunks", d->path, e->name,
                       e->zbytes, nc);
    if (!(e->zoff = malloc((size_t)(nc ? nc : 1) * sizeof *e->zoff))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < e->n; i += LB_ZD_CHUNK) {
        uint32_t m = (uint32_t)(e->n - i < LB_ZD_CHUNK ? e->n - i : LB_ZD_CHUNK);
        e->zoff[i / LB_ZD_CHUNK] = off;
        size_t len = lb_zd_chunk_len(e->z + off, (size_t)(e->zbytes - off), e->es, m);
        if (!len)
            return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: chunk at element %" PRIu64 " (byte %" PRIu64 ") is malformed",
                           d->path, e->name, i, off);
        off += len;
    }
    if (off != e->zbytes)
        return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: %" PRIu64 " bytes after the last chunk", d->path, e->name, e->zbytes - off);
    return LB_OK;
}

/* Rows: popcount of the int8-row bitmap must be n8, with no bits past the last row. */
static lb_status check_rows(const lb_delta *d, const lb_delta_entry *e, lb_error *err) {
    uint64_t c = 0;
    for (uint64_t r = 0; r < (e->rows + 7) / 8 * 8; r++) {
        int bit = (e->rowbits[r / 8] >> (r % 8)) & 1;
        if (bit && r >= e->rows) return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: row bitmap past the last row", d->path, e->name);
        c += (uint64_t)bit;
    }
    return c == e->n8 ? LB_OK : lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: %" PRIu64 " int8 rows marked, metadata says %" PRIu64,
                                        d->path, e->name, c, e->n8);
}

static lb_status part(lb_delta *d, const lb_delta_entry *e, const char *suffix, lb_st_dtype dt, uint64_t count,
                      const uint8_t **out, uint64_t *h, size_t *used, lb_error *err);

static lb_status parse_entry_v2(lb_delta *d, const cJSON *o, lb_delta_entry *e, size_t *used, lb_error *err) {
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "enc");
    if (!e->kept) return e->data_hash == 0 ? LB_OK : lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: bad data checksum", d->path, e->name);
    if (!cJSON_IsString(en) || (strcmp(en->valuestring, "z") && strcmp(en->valuestring, "r")) || !e->dense)
        return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: unknown encoding", d->path, e->name);
    e->enc = en->valuestring[0];
    uint64_t h = 0;
    lb_status s;
    if (e->enc == 'z') {
        if (!json_u64(o, "zbytes", &e->zbytes)) return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: metadata lacks zbytes", d->path, e->name);
        s = part(d, e, "z", LB_ST_U8, e->zbytes, &e->z, &h, used, err);
        if (!s) s = check_z(d, e, err);
    } else {
        if (!json_u64(o, "rows", &e->rows) || !json_u64(o, "cols", &e->cols) || !json_u64(o, "n8", &e->n8) || !e->rows ||
            e->rows * e->cols != e->n || e->n8 > e->rows)
            return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: bad rows, cols or n8 in metadata", d->path, e->name);
        s = part(d, e, "rowbits", LB_ST_U8, (e->rows + 7) / 8, &e->rowbits, &h, used, err);
        if (!s) s = part(d, e, "val", LB_ST_U8, e->rows * lb_delta_sign_bytes(e->cols) + e->n8 * e->cols, &e->val, &h, used, err);
        if (!s) s = part(d, e, "scale", LB_ST_F32, e->rows, &e->scale, &h, used, err);
        if (!s) s = check_rows(d, e, err);
    }
    if (!s && h != e->data_hash)
        s = lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: the delta's data fails its checksum (corrupted file)", d->path, e->name);
    return s;
}

static lb_status parse_entry(lb_delta *d, const cJSON *o, lb_delta_entry *e, size_t *used, lb_error *err) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name"), *dt = cJSON_GetObjectItemCaseSensitive(o, "dtype"),
                *sh = cJSON_GetObjectItemCaseSensitive(o, "shape");
    if (!cJSON_IsString(nm) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || strlen(dt->valuestring) >= sizeof e->dtype ||
        strlen(nm->valuestring) > 900)
        return lb_fail(err, LB_ERR_CORRUPT, "%s: metadata tensors: an entry lacks name, dtype or shape", d->path);
    if (!(e->name = strdup(nm->valuestring))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    snprintf(e->dtype, sizeof e->dtype, "%s", dt->valuestring);
    e->n_dims = cJSON_GetArraySize(sh);
    if (e->n_dims > 8) return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: too many dims", d->path, e->name);
    uint64_t n = 1, v;
    int i = 0;
    for (const cJSON *x = sh->child; x; x = x->next, i++) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9007199254740992.0)
            return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: bad shape", d->path, e->name);
        e->shape[i] = (int64_t)x->valuedouble;
        if (e->shape[i] && n > UINT64_MAX / (uint64_t)e->shape[i])
            return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: shape overflows", d->path, e->name);
        n *= (uint64_t)e->shape[i];
    }
    int lt = lb_dtype_from_name(e->dtype);
    e->type = (lt == LB_F32 || lt == LB_F16 || lt == LB_BF16) ? lt : -1;
    e->es = e->type == LB_F32 ? 4 : e->type >= 0 ? 2 : 0;
    e->n = n;
    if (!json_hex(o, "base", &e->base_hash) || !json_hex(o, "data", &e->data_hash) || !json_u64(o, "kept", &e->kept) ||
        !json_u64(o, "dense", &v) || v > 1)
        return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: metadata lacks base, data, kept or dense", d->path, e->name);
    e->dense = (int)v;
    if (d->has_target && !json_hex(o, "target", &e->target_hash))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: metadata lacks target", d->path, e->name);
    const cJSON *me = cJSON_GetObjectItemCaseSensitive(o, "max_err"), *re = cJSON_GetObjectItemCaseSensitive(o, "rms_err");
    e->max_err = cJSON_IsNumber(me) ? me->valuedouble : 0;
    e->rms_err = cJSON_IsNumber(re) ? re->valuedouble : 0;
    if (e->kept && e->type < 0) {
        /* a quantized tensor's changes are its bytes' ('z' with 1-byte elements, nbytes of them) */
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "enc");
        uint64_t nb;
        if (d->version < 2 || !cJSON_IsString(en) || strcmp(en->valuestring, "z") || !json_u64(o, "nbytes", &nb) || !nb ||
            e->kept > nb)
            return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: changes to a %s tensor without a byte-coded ('z', nbytes) entry",
                           d->path, e->name, e->dtype);
        e->es = 1, e->n = nb;
    }
    if (e->kept > e->n || (e->dense && e->kept == 0))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: kept %" PRIu64 " of %" PRIu64 " elements", d->path, e->name,
                       e->kept, e->n);
    if (!e->kept) return e->data_hash == 0 ? LB_OK
                                                          : lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: bad data checksum", d->path, e->name);
    if (d->version >= 2) return parse_entry_v2(d, o, e, used, err);
    uint64_t h = 0, count = e->dense ? n : e->kept;
    lb_status s = LB_OK;
    if (!e->dense) s = part(d, e, "idx", LB_ST_U32, e->kept, &e->idx, &h, used, err);
    lb_st_dtype vt = d->mode == LB_DELTA_FLOAT ? LB_ST_F32 : d->mode == LB_DELTA_INT8 ? LB_ST_I8 : e->es == 4 ? LB_ST_U32 : LB_ST_U16;
    if (!s) s = part(d, e, "val", vt, count, &e->val, &h, used, err);
    if (!s && d->mode == LB_DELTA_INT8) s = part(d, e, "scale", LB_ST_F32, (count + d->block - 1) / d->block, &e->scale, &h, used, err);
    if (!s && h != e->data_hash)
        s = lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s: the delta's data fails its checksum (corrupted file)", d->path,
                    e->name);
    return s;
}

static lb_status parse_meta(lb_delta *d, lb_error *err) {
    const lb_safetensors *st = d->st;
    const char *fmt = lb_safetensors_meta_get(st, "format"), *ver = lb_safetensors_meta_get(st, "version"),
               *mode = lb_safetensors_meta_get(st, "mode"), *th = lb_safetensors_meta_get(st, "threshold"),
               *bl = lb_safetensors_meta_get(st, "block"), *bf = lb_safetensors_meta_get(st, "base_format"),
               *fp = lb_safetensors_meta_get(st, "base_fingerprint"), *tfp = lb_safetensors_meta_get(st, "target_fingerprint"),
               *ts = lb_safetensors_meta_get(st, "tensors");
    if (!fmt || strcmp(fmt, "lowbit.delta") != 0)
        return lb_fail(err, LB_ERR_FORMAT, "%s: not a lowbit delta file (metadata format is not lowbit.delta)", d->path);
    if (!ver || (strcmp(ver, "1") != 0 && strcmp(ver, "2") != 0))
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: delta version %s (this build reads 1 and 2)", d->path, ver ? ver : "?");
    d->version = ver[0] - '0';
    if (!mode || !th || !bl || !bf || !ts || !parse_hex(fp, &d->base_fp))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: delta metadata incomplete", d->path);
    if (!strcmp(mode, "xor")) d->mode = LB_DELTA_XOR;
    else if (!strcmp(mode, "float")) d->mode = LB_DELTA_FLOAT;
    else if (!strcmp(mode, "int8")) d->mode = LB_DELTA_INT8;
    else if (!strcmp(mode, "zdiff") && d->version == 2) d->mode = LB_DELTA_ZDIFF;
    else if (!strcmp(mode, "sign") && d->version == 2) d->mode = LB_DELTA_SIGN;
    else if (!strcmp(mode, "mixed") && d->version == 2) d->mode = LB_DELTA_MIXED;
    else return lb_fail(err, LB_ERR_CORRUPT, "%s: unknown delta mode %s", d->path, mode);
    char *end;
    d->threshold = strtof(th, &end);
    unsigned long b = strtoul(bl, NULL, 10);
    if (d->version == 2 && d->mode < LB_DELTA_ZDIFF) return lb_fail(err, LB_ERR_CORRUPT, "%s: mode %s in a version 2 delta", d->path, mode);
    if (*end || !(d->threshold >= 0) || b < 1 || b > (1u << 20))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: bad threshold or block in metadata", d->path);
    d->block = (uint32_t)b;
    snprintf(d->base_format, sizeof d->base_format, "%s", bf);
    d->has_target = tfp != NULL;
    if (tfp && !parse_hex(tfp, &d->target_fp)) return lb_fail(err, LB_ERR_CORRUPT, "%s: bad target_fingerprint", d->path);
    cJSON *root = cJSON_Parse(ts);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return lb_fail(err, LB_ERR_CORRUPT, "%s: metadata tensors is not a JSON array", d->path);
    }
    int n = cJSON_GetArraySize(root);
    lb_status s = LB_OK;
    if (!(d->e = calloc(n ? (size_t)n : 1, sizeof *d->e))) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    size_t used = 0;
    uint64_t fpa = 0;
    for (const cJSON *o = root->child; o && !s; o = o->next) {
        s = parse_entry(d, o, &d->e[d->n], &used, err);
        /* checked: drop the pages its checksum read now, not after the whole file (peak RSS
         * would be the delta's size) */
        if (!s) lb_delta_entry_release(d, &d->e[d->n]);
        d->n++;
        if (!s) fpa = lb_delta_fingerprint_add(fpa, d->e[d->n - 1].name, d->e[d->n - 1].base_hash);
    }
    cJSON_Delete(root);
    if (!s && fpa != d->base_fp) s = lb_fail(err, LB_ERR_CORRUPT, "%s: base_fingerprint does not match the tensor list", d->path);
    if (!s && used != lb_safetensors_count(d->st))
        s = lb_fail(err, LB_ERR_CORRUPT, "%s: %zu data tensors, but the metadata accounts for %zu", d->path,
                    lb_safetensors_count(d->st), used);
    for (size_t i = 0; i < d->n && !s; i++)
        for (size_t j = 0; j < i && !s; j++)
            if (!strcmp(d->e[i].name, d->e[j].name)) s = lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s listed twice", d->path, d->e[i].name);
    return s;
}

lb_status lb_delta_open(const char *path, lb_delta **out, lb_error *err) {
    *out = NULL;
    lb_delta *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    lb_status s = lb_safetensors_open(path, &d->st, err);
    if (s) lb_fail(err, s == LB_ERR_FORMAT ? LB_ERR_CORRUPT : s, "%s (truncated or not a delta file?)", err->msg);
    if (!s) s = parse_meta(d, err);
    if (s) {
        lb_delta_close(d);
        return s == LB_ERR_FORMAT && strstr(err->msg, "truncated") ? LB_ERR_CORRUPT : s;
    }
    *out = d;
    return LB_OK;
}

static void shape_str(const int64_t *sh, int n, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%lld", i ? ", " : "", (long long)sh[i]);
    }
}

lb_status lb_delta_match_base(const lb_delta *d, const lb_tsrc *base, lb_error *err) {
    if (base->n != d->n)
        return lb_fail(err, LB_ERR_MISMATCH, "%s: the base has %zu tensors, the delta was made for a base with %zu", base->file,
                       base->n, d->n);
    for (size_t i = 0; i < d->n; i++) {
        const lb_delta_entry *e = &d->e[i];
        const lb_tsrc_tensor *t = lb_tsrc_find(base, e->name);
        if (!t) return lb_fail(err, LB_ERR_MISMATCH, "%s: tensor %s of the delta's base is missing", base->file, e->name);
        int same = t->n_dims == e->n_dims && strcmp(t->dtype, e->dtype) == 0;
        for (int k = 0; same && k < t->n_dims; k++) same = t->shape[k] == e->shape[k];
        if (same && e->type < 0 && e->kept && e->n != t->nbytes)
            return lb_fail(err, LB_ERR_MISMATCH, "%s: tensor %s holds %" PRIu64 " bytes, the delta's base had %" PRIu64,
                           base->file, e->name, t->nbytes, e->n);
        if (!same) {
            char a[128], b[128];
            shape_str(t->shape, t->n_dims, a, sizeof a);
            shape_str(e->shape, e->n_dims, b, sizeof b);
            return lb_fail(err, LB_ERR_MISMATCH, "%s: tensor %s is %s [%s], the delta's base had %s [%s]", base->file, e->name,
                           t->dtype, a, e->dtype, b);
        }
    }
    return LB_OK;
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static lb_status advance(const lb_delta *d, const lb_delta_entry *e, lb_delta_cursor *c, lb_error *err) {
    if (c->k >= e->kept) {
        c->next = UINT64_MAX;
        return LB_OK;
    }
    uint64_t gap = rd32(e->idx + 4 * c->k), nx = c->k == 0 ? gap : c->next + 1 + gap;
    if (nx >= e->n)
        return lb_fail(err, LB_ERR_RANGE, "%s: tensor %s: delta entry %" PRIu64 " has index %" PRIu64 ", out of range (%" PRIu64 " elements)",
                       d->path, e->name, c->k, nx, e->n);
    c->next = nx;
    return LB_OK;
}

lb_status lb_delta_cursor_init(const lb_delta *d, const lb_delta_entry *e, lb_delta_cursor *c, lb_error *err) {
    c->k = 0;
    c->next = e->enc ? 0 : UINT64_MAX;
    return e->dense ? LB_OK : advance(d, e, c, err);
}

/* 'z': the chunks overlapping [start, end); the cursor keeps (chunk index, byte offset) of the
 * last chunk touched, so sequential calls never rescan, and an earlier range restarts at 0. */
static lb_status patch_z(const lb_delta *d, const lb_delta_entry *e, lb_delta_cursor *c, uint8_t *buf, uint64_t start,
                         uint64_t end, lb_error *err) {
    (void)c; /* the chunk offsets found at open (e->zoff) make any range start anywhere */
    char what[1024];
    for (uint64_t k = start / LB_ZD_CHUNK; k * LB_ZD_CHUNK < end && k * LB_ZD_CHUNK < e->n; k++) {
        uint64_t cs = k * LB_ZD_CHUNK;
        uint32_t m = (uint32_t)(e->n - cs < LB_ZD_CHUNK ? e->n - cs : LB_ZD_CHUNK);
        uint64_t from = start > cs ? start - cs : 0, to = end < cs + m ? end - cs : m;
        snprintf(what, sizeof what, "%s: tensor %s, chunk %" PRIu64, d->path, e->name, k);
        lb_status s = lb_zd_apply(e->z + e->zoff[k], e->es, m, (uint32_t)from, (uint32_t)to, buf + e->es * (cs + from - start),
                                  what, err);
        if (s) return s;
    }
    return LB_OK;
}

/* 'r': value of element col of row r (rank: int8 rows before r). */
static inline float row_value(const lb_delta_entry *e, uint64_t r, uint64_t rank, uint64_t col, float scale) {
    if ((e->rowbits[r / 8] >> (r % 8)) & 1)
        return (float)(int8_t)e->val[e->rows * lb_delta_sign_bytes(e->cols) + rank * e->cols + col] * scale;
    return (e->val[r * lb_delta_sign_bytes(e->cols) + col / 8] >> (col % 8)) & 1 ? scale : -scale;
}

/* The cursor caches (row, int8 rows before it). */
static void patch_rows(const lb_delta_entry *e, lb_delta_cursor *c, uint8_t *buf, uint64_t start, uint64_t end) {
    uint64_t r = start / e->cols;
    if (c->k > r) c->k = 0, c->next = 0;
    for (; c->k < r; c->k++) c->next += (e->rowbits[c->k / 8] >> (c->k % 8)) & 1;
    for (uint64_t g = start; g < end;) {
        uint64_t row = g / e->cols, col = g % e->cols, stop = (row + 1) * e->cols < end ? (row + 1) * e->cols : end;
        for (; c->k < row; c->k++) c->next += (e->rowbits[c->k / 8] >> (c->k % 8)) & 1;
        float sc;
        memcpy(&sc, e->scale + 4 * row, 4);
        for (; g < stop; g++, col++) {
            uint8_t *p = buf + e->es * (g - start);
            float v = row_value(e, row, c->next, col, sc);
            if (v != 0) lb_store_float(e->type, p, lb_load_float(e->type, p) + v);
        }
    }
}

/* Applies value k of e to the element at p. */
static inline void apply_one(const lb_delta *d, const lb_delta_entry *e, uint64_t k, uint8_t *p) {
    if (d->mode == LB_DELTA_XOR) {
        if (e->es == 4) {
            uint32_t a = rd32(p) ^ rd32(e->val + 4 * k);
            memcpy(p, &a, 4);
        } else {
            uint16_t a, x;
            memcpy(&a, p, 2);
            memcpy(&x, e->val + 2 * k, 2);
            a ^= x;
            memcpy(p, &a, 2);
        }
        return;
    }
    float v;
    if (d->mode == LB_DELTA_FLOAT) memcpy(&v, e->val + 4 * k, 4);
    else {
        float s;
        memcpy(&s, e->scale + 4 * (k / d->block), 4);
        v = (float)(int8_t)e->val[k] * s;
    }
    if (v != 0) lb_store_float(e->type, p, lb_load_float(e->type, p) + v);
}

/* 'z' / 'r' ranges split across d->pool: pieces aligned to chunks (or rows), each piece with a
 * cursor of its own (these encodings take ranges in any order). */
typedef struct par_job {
    const lb_delta *d;
    const lb_delta_entry *e;
    uint8_t *buf;
    uint64_t start, count;
    lb_status st[64];
} par_job;

static lb_status patch_one(const lb_delta *d, const lb_delta_entry *e, lb_delta_cursor *c, uint8_t *buf, uint64_t start,
                           uint64_t end, lb_error *err) {
    if (e->enc == 'z') return patch_z(d, e, c, buf, start, end, err);
    return patch_rows(e, c, buf, start, end), LB_OK;
}

static void par_piece(void *arg, int ith, int nth) {
    par_job *j = arg;
    int64_t align = j->e->enc == 'z' ? LB_ZD_CHUNK : (int64_t)(j->e->cols ? j->e->cols : 1), i0, i1;
    lb_split_range((int64_t)j->count, align, ith, nth, &i0, &i1);
    lb_delta_cursor c;
    j->st[ith] = lb_delta_cursor_init(j->d, j->e, &c, &j->d->perr[ith]);
    if (!j->st[ith] && i1 > i0)
        j->st[ith] = patch_one(j->d, j->e, &c, j->buf + j->e->es * (uint64_t)i0, j->start + (uint64_t)i0, j->start + (uint64_t)i1,
                               &j->d->perr[ith]);
}

static lb_status patch_par(const lb_delta *d, const lb_delta_entry *e, uint8_t *buf, uint64_t start, uint64_t count,
                           lb_error *err) {
    par_job j = {d, e, buf, start, count, {0}};
    int nth = lb_pool_size(d->pool);
    if (nth > 64) nth = 64;
    lb_pool_run_n(d->pool, par_piece, &j, nth);
    for (int i = 0; i < nth; i++)
        if (j.st[i]) {
            if (err) *err = d->perr[i];
            return j.st[i];
        }
    return LB_OK;
}

lb_status lb_delta_patch(const lb_delta *d, const lb_delta_entry *e, lb_delta_cursor *c, uint8_t *buf, uint64_t start,
                         uint64_t count, lb_error *err) {
    if (!e->kept) return LB_OK;
    if (start > e->n || count > e->n - start)
        return lb_fail(err, LB_ERR_RANGE, "%s: tensor %s: patch range past its %" PRIu64 " elements", d->path, e->name, e->n);
    if (e->enc && d->perr && count >= 2 * LB_ZD_CHUNK) return patch_par(d, e, buf, start, count, err);
    if (e->enc) return patch_one(d, e, c, buf, start, start + count, err);
    if (e->dense) {
        if (d->mode == LB_DELTA_XOR && e->es == 4) {
            for (uint64_t i = 0; i < count; i++) {
                uint32_t a = rd32(buf + 4 * i) ^ rd32(e->val + 4 * (start + i));
                memcpy(buf + 4 * i, &a, 4);
            }
        } else {
            for (uint64_t i = 0; i < count; i++) apply_one(d, e, start + i, buf + e->es * i);
        }
        return LB_OK;
    }
    uint64_t end = start + count;
    while (c->next < end) {
        if (c->next < start) return lb_fail(err, LB_ERR_RANGE, "%s: tensor %s: indices out of order", d->path, e->name);
        apply_one(d, e, c->k, buf + e->es * (c->next - start));
        c->k++;
        lb_status s = advance(d, e, c, err);
        if (s) return s;
    }
    return LB_OK;
}

lb_status lb_delta_patch_end(const lb_delta *d, const lb_delta_entry *e, const lb_delta_cursor *c, lb_error *err) {
    if (!e->dense && e->kept && c->k != e->kept)
        return lb_fail(err, LB_ERR_RANGE, "%s: tensor %s: %" PRIu64 " delta entries lie beyond the tensor", d->path, e->name,
                       e->kept - c->k);
    return LB_OK;
}

void lb_delta_entry_release(const lb_delta *d, const lb_delta_entry *e) {
    if (e->enc == 'z') lb_tsrc_release(e->z, e->zbytes);
    else if (e->enc == 'r') lb_tsrc_release(e->val, e->rows * lb_delta_sign_bytes(e->cols) + e->n8 * e->cols);
    else if (e->kept) {
        uint64_t cnt = e->dense ? e->n : e->kept;
        if (e->idx) lb_tsrc_release(e->idx, cnt * 4);
        lb_tsrc_release(e->val, cnt * (d->mode == LB_DELTA_INT8 ? 1 : d->mode == LB_DELTA_FLOAT ? 4 : e->es));
        if (e->scale) lb_tsrc_release(e->scale, 4 * ((cnt + d->block - 1) / d->block));
    }
}

uint64_t lb_delta_entry_bytes(const lb_delta *d, const lb_delta_entry *e) {
    if (!e->kept) return 0;
    if (e->enc == 'z') return e->zbytes;
    if (e->enc == 'r') return (e->rows + 7) / 8 + e->rows * lb_delta_sign_bytes(e->cols) + e->n8 * e->cols + 4 * e->rows;
    uint64_t cnt = e->dense ? e->n : e->kept, b = e->dense ? 0 : 4 * cnt;
    if (d->mode == LB_DELTA_INT8) return b + cnt + 4 * ((cnt + d->block - 1) / d->block);
    return b + cnt * (d->mode == LB_DELTA_FLOAT ? 4 : e->es);
}
