/* The fine-tune's own GGUF metadata in a delta (docs/delta.md, "target_gguf"): the key/values
 * of the fine-tune that the base lacks or holds with another type or value, as a GGUF image
 * without tensors (hex in the delta's __metadata__), and the base's keys the fine-tune lacks
 * (a JSON array, "target_gguf_drop"). Apply parses the image with the GGUF reader (so a damaged
 * one is refused like any bad GGUF) and copies its values over the base's. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include "core/error.h"
#include "delta/deltafile.h"

typedef struct growbuf {
    unsigned char *p;
    size_t n, cap;
} growbuf;

static int put(growbuf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) return 0;
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return 1;
}

static int put_le(growbuf *b, uint64_t v, int bytes) {
    unsigned char le[8];
    for (int i = 0; i < bytes; i++) le[i] = (unsigned char)(v >> (8 * i));
    return put(b, le, (size_t)bytes);
}

/* 1: key i of ft has the same type and encoded value in base. */
static int same_kv(const lb_gguf *base, const lb_gguf *ft, size_t i) {
    int64_t j = lb_gguf_find_key(base, lb_gguf_kv_key(ft, i));
    if (j < 0 || lb_gguf_kv_type(base, (size_t)j) != lb_gguf_kv_type(ft, i)) return 0;
    const void *a, *b;
    size_t na, nb;
    lb_gguf_kv_raw(ft, i, &a, &na);
    lb_gguf_kv_raw(base, (size_t)j, &b, &nb);
    return na == nb && !memcmp(a, b, na);
}

lb_status lb_delta_gguf_meta_encode(const lb_gguf *base, const lb_gguf *ft, char **image_hex, char **drop_json,
                                    lb_error *err) {
    *image_hex = *drop_json = NULL;
    growbuf b = {0};
    size_t n_kv = 0;
    for (size_t i = 0; i < lb_gguf_kv_count(ft); i++) n_kv += !same_kv(base, ft, i);
    cJSON *drop = cJSON_CreateArray();
    int ok = drop != NULL;
    for (size_t i = 0; ok && i < lb_gguf_kv_count(base); i++)
        if (lb_gguf_find_key(ft, lb_gguf_kv_key(base, i)) < 0)
            ok = cJSON_AddItemToArray(drop, cJSON_CreateString(lb_gguf_kv_key(base, i)));
    if (ok && n_kv) {
        ok = put(&b, "GGUF", 4) && put_le(&b, 3, 4) && put_le(&b, 0, 8) && put_le(&b, n_kv, 8);
        for (size_t i = 0; ok && i < lb_gguf_kv_count(ft); i++) {
            if (same_kv(base, ft, i)) continue;
            const char *k = lb_gguf_kv_key(ft, i);
            const void *raw;
            size_t nraw;
            lb_gguf_kv_raw(ft, i, &raw, &nraw);
            ok = put_le(&b, strlen(k), 8) && put(&b, k, strlen(k)) && put_le(&b, (uint64_t)lb_gguf_kv_type(ft, i), 4) &&
                 put(&b, raw, nraw);
        }
        if (ok && (ok = (*image_hex = malloc(2 * b.n + 1)) != NULL)) {
            static const char digits[] = "0123456789abcdef";
            for (size_t i = 0; i < b.n; i++) {
                (*image_hex)[2 * i] = digits[b.p[i] >> 4];
                (*image_hex)[2 * i + 1] = digits[b.p[i] & 15];
            }
            (*image_hex)[2 * b.n] = 0;
        }
    }
    if (ok && cJSON_GetArraySize(drop) > 0) ok = (*drop_json = cJSON_PrintUnformatted(drop)) != NULL;
    cJSON_Delete(drop);
    free(b.p);
    if (!ok) {
        free(*image_hex), free(*drop_json);
        *image_hex = *drop_json = NULL;
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for the fine-tune's GGUF metadata");
    }
    return LB_OK;
}

static int unhex(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

static int in_drop(const cJSON *drop, const char *key) {
    for (const cJSON *e = drop ? drop->child : NULL; e; e = e->next)
        if (cJSON_IsString(e) && !strcmp(e->valuestring, key)) return 1;
    return 0;
}

lb_status lb_delta_gguf_meta_write(lb_gguf_writer *w, const lb_gguf *base, const char *image_hex, const char *drop_json,
                                   const char *delta_path, lb_error *err) {
    size_t len = image_hex ? strlen(image_hex) : 0;
    unsigned char *img = NULL;
    lb_gguf *ov = NULL;
    cJSON *drop = NULL;
    lb_status s = LB_OK;
    if (len % 2) s = lb_fail(err, LB_ERR_CORRUPT, "%s: target_gguf has an odd number of hex digits", delta_path);
    if (!s && len && !(img = malloc(len / 2))) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !s && i < len / 2; i++) {
        int hi = unhex(image_hex[2 * i]), lo = unhex(image_hex[2 * i + 1]);
        if (hi < 0 || lo < 0) s = lb_fail(err, LB_ERR_CORRUPT, "%s: target_gguf is not lower-case hex (at digit %zu)", delta_path, 2 * i);
        else img[i] = (unsigned char)(hi << 4 | lo);
    }
    if (!s && len) {
        char name[512];
        snprintf(name, sizeof name, "%s (target_gguf)", delta_path);
        s = lb_gguf_parse(img, len / 2, name, &ov, err);
    }
    if (!s && drop_json && !cJSON_IsArray(drop = cJSON_Parse(drop_json)))
        s = lb_fail(err, LB_ERR_CORRUPT, "%s: target_gguf_drop is not a JSON array", delta_path);
    /* the base's keys in its order, the fine-tune's value in place of the base's, then the keys
     * only the fine-tune has */
    for (size_t i = 0; !s && i < lb_gguf_kv_count(base); i++) {
        const char *k = lb_gguf_kv_key(base, i);
        int64_t j = ov ? lb_gguf_find_key(ov, k) : -1;
        if (j >= 0) s = lb_gguf_copy_kv(w, ov, (size_t)j, err);
        else if (!in_drop(drop, k)) s = lb_gguf_copy_kv(w, base, i, err);
    }
    for (size_t j = 0; !s && ov && j < lb_gguf_kv_count(ov); j++)
        if (lb_gguf_find_key(base, lb_gguf_kv_key(ov, j)) < 0) s = lb_gguf_copy_kv(w, ov, j, err);
    cJSON_Delete(drop);
    lb_gguf_close(ov);
    free(img);
    return s;
}
