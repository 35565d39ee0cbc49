/* safetensors reader and writer: the shared model files against their own config.json and
 * against the same weights in the llama2.c file, a writer round trip, and malformed input
 * (truncation at every boundary, bad headers) giving LB_ERR_FORMAT with a useful message. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#ifdef __clang__ /* CHECK(cond) with no message is intended */
#pragma clang diagnostic ignored "-Wgnu-zero-variadic-macro-arguments"
#endif
#include "core/error.h"
#include "core/mapfile.h"
#include "io/safetensors.h"

static cJSON *read_json(const char *path) {
    char *txt;
    size_t len;
    lb_error err;
    if (lb_read_file(path, 1 << 20, &txt, &len, &err)) return NULL;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    return j;
}
static int jint(const cJSON *j, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

static int shape_is(const lb_st_tensor *t, int n, int64_t a, int64_t b) {
    if (!t || t->n_dims != n) return 0;
    return t->shape[0] == a && (n == 1 || t->shape[1] == b);
}

/* Checks one shared model file against the hyperparameters in its config.json. */
static void check_model(const char *dir, const char *dtype, int qkv_bias, int sub_norms) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *cfg = read_json(path);
    CHECK(cfg != NULL, "%s", path);
    if (!cfg) return;
    int dim = jint(cfg, "hidden_size", 0), ffn = jint(cfg, "intermediate_size", 0), L = jint(cfg, "num_hidden_layers", 0);
    int H = jint(cfg, "num_attention_heads", 0), KV = jint(cfg, "num_key_value_heads", H), V = jint(cfg, "vocab_size", 0);
    int hd = jint(cfg, "head_dim", dim / H);
    int tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings"));
    cJSON_Delete(cfg);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lb_safetensors *st;
    lb_error err;
    lb_status s = lb_safetensors_open(path, &st, &err);
    CHECK(s == LB_OK, "%s: %s", path, err.msg);
    if (s) return;
    size_t per_layer = 9 + (qkv_bias ? 3 : 0) + (sub_norms ? 2 : 0);
    size_t expect = 2 + (tied ? 0 : 1) + per_layer * (size_t)L;
    CHECK(lb_safetensors_count(st) == expect, "%s: %zu tensors, expected %zu", path, lb_safetensors_count(st), expect);

    /* every tensor: dtype as stored, data inside the file, sizes add up to the file */
    size_t total = 0;
    int dtype_ok = 1, ptr_ok = 1;
    for (size_t i = 0; i < lb_safetensors_count(st); i++) {
        const lb_st_tensor *t = lb_safetensors_info(st, i);
        if (strcmp(lb_st_dtype_name(t->dtype), dtype) != 0) dtype_ok = 0;
        total += t->nbytes;
        lb_tensor lt;
        if (lb_safetensors_get(st, i, &lt, &err) || lt.n_dims != t->n_dims || lt.ne[0] != t->shape[t->n_dims - 1] ||
            lt.data != t->data || t->offset < lb_safetensors_data_offset(st))
            ptr_ok = 0;
    }
    CHECK(dtype_ok, "%s: all tensors %s", path, dtype);
    CHECK(ptr_ok, "%s: lb_tensor views agree", path);
    {
        lb_mapfile mf;
        if (lb_mapfile_open(path, &mf, &err) == LB_OK) {
            CHECK(lb_safetensors_data_offset(st) + total == mf.size, "%s: data packed to the end", path);
            CHECK(lb_safetensors_data_offset(st) % 8 == 0, "%s: data section aligned", path);
            lb_mapfile_close(&mf);
        }
    }
    CHECK(lb_safetensors_meta_get(st, "format") && strcmp(lb_safetensors_meta_get(st, "format"), "pt") == 0, "%s", path);

    const lb_st_tensor *t;
    t = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "model.embed_tokens.weight"));
    CHECK(shape_is(t, 2, V, dim), "%s embed", path);
    t = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "model.norm.weight"));
    CHECK(shape_is(t, 1, dim, 0), "%s norm", path);
    CHECK((lb_safetensors_find(st, "lm_head.weight") >= 0) == !tied, "%s lm_head iff untied", path);
    for (int l = 0; l < L; l++) {
        char nm[128];
#define SHAPE(suffix, n, a, b)                                                                          \
    snprintf(nm, sizeof nm, "model.layers.%d." suffix, l);                                              \
    t = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, nm));                                   \
    CHECK(shape_is(t, n, a, b), "%s: %s", path, nm);
        SHAPE("self_attn.q_proj.weight", 2, H * hd, dim)
        SHAPE("self_attn.k_proj.weight", 2, KV * hd, dim)
        SHAPE("self_attn.v_proj.weight", 2, KV * hd, dim)
        SHAPE("self_attn.o_proj.weight", 2, dim, H * hd)
        SHAPE("mlp.gate_proj.weight", 2, ffn, dim)
        SHAPE("mlp.up_proj.weight", 2, ffn, dim)
        SHAPE("mlp.down_proj.weight", 2, dim, ffn)
        SHAPE("input_layernorm.weight", 1, dim, 0)
        SHAPE("post_attention_layernorm.weight", 1, dim, 0)
        if (qkv_bias) {
            SHAPE("self_attn.q_proj.bias", 1, H * hd, 0)
            SHAPE("self_attn.k_proj.bias", 1, KV * hd, 0)
        }
        if (sub_norms) {
            SHAPE("self_attn.attn_sub_norm.weight", 1, H * hd, 0)
            SHAPE("mlp.ffn_sub_norm.weight", 1, ffn, 0)
        }
#undef SHAPE
    }
    CHECK(lb_safetensors_find(st, "no.such.tensor") == -1);
    lb_safetensors_close(st);
}

/* stories260K-hf holds the llama2.c weights: the embedding and the FFN must be the same bytes. */
static void check_against_llama2c(void) {
    lb_safetensors *st;
    lb_mapfile bin;
    lb_error err;
    if (lb_safetensors_open(SHARED("models/stories260K-hf/model.safetensors"), &st, &err) ||
        lb_mapfile_open(SHARED("models/stories260K-llama2c/stories260K.bin"), &bin, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    const int dim = 64, L = 5, kv = 32, hid = 172, V = 512;
    const lb_st_tensor *e = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "model.embed_tokens.weight"));
    const unsigned char *p = bin.data + 28;
    CHECK(e && e->nbytes == (size_t)V * dim * 4 && memcmp(e->data, p, e->nbytes) == 0, "embedding equals llama2.c's");
    /* skip embedding, rms_att, wq, wk, wv, wo, rms_ffn to reach w1 (= gate_proj) of layer 0 */
    size_t w1 = ((size_t)V * dim + (size_t)L * dim + (size_t)L * dim * dim * 2 + (size_t)L * kv * dim * 2 + (size_t)L * dim) * 4;
    const lb_st_tensor *g = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "model.layers.0.mlp.gate_proj.weight"));
    CHECK(g && memcmp(g->data, p + w1, (size_t)hid * dim * 4) == 0, "layer 0 gate_proj equals llama2.c w1");
    lb_mapfile_close(&bin);
    lb_safetensors_close(st);
}

/* ---- writer round trip ---- */

typedef struct stream_ctx {
    const unsigned char *src;
    size_t n, piece, stop_early;
} stream_ctx;

static lb_status stream_pieces(void *user, lb_st_sink *sink, lb_error *err) {
    stream_ctx *c = user;
    size_t end = c->n - c->stop_early;
    for (size_t o = 0; o < end; o += c->piece) {
        size_t k = end - o < c->piece ? end - o : c->piece;
        lb_status s = lb_st_sink_write(sink, c->src + o, k, err);
        if (s) return s;
    }
    return LB_OK;
}

static char *tmp_path(const char *tag) {
    static char buf[4][256];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 256, "/tmp/lb_st_%s_%d.safetensors", tag, (int)getpid());
    return p;
}

static void check_roundtrip(void) {
    lb_error err;
    unsigned char u8[3] = {1, 2, 255};
    float f32[2][5];
    uint16_t bf[7];
    double f64 = 3.25;
    unsigned char big[10007];
    for (int i = 0; i < 10; i++) f32[i / 5][i % 5] = (float)i * 0.5f - 1;
    for (int i = 0; i < 7; i++) bf[i] = lb_f32_to_bf16((float)i);
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 31 + 7);

    lb_safetensors_writer *w;
    CHECK(lb_safetensors_writer_new(&w, &err) == LB_OK);
    int64_t s_u8[1] = {3}, s_f32[2] = {2, 5}, s_empty[2] = {0, 4}, s_big[3] = {1, 10007, 1};
    CHECK(lb_safetensors_writer_add(w, "u8 \"odd\" name\\", LB_ST_U8, 1, s_u8, u8, &err) == LB_OK);
    CHECK(lb_safetensors_writer_add(w, "f32", LB_ST_F32, 2, s_f32, f32, &err) == LB_OK); /* lands at offset 3 */
    lb_tensor lt = {.name = "bf16", .type = LB_BF16, .n_dims = 1, .ne = {7}, .data = bf, .nbytes = 14};
    CHECK(lb_safetensors_writer_add_tensor(w, &lt, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_safetensors_writer_add(w, "scalar", LB_ST_F64, 0, NULL, &f64, &err) == LB_OK);
    CHECK(lb_safetensors_writer_add(w, "empty", LB_ST_I32, 2, s_empty, NULL, &err) == LB_OK);
    stream_ctx sc = {big, sizeof big, 1000, 0};
    CHECK(lb_safetensors_writer_add_stream(w, "streamed", LB_ST_U8, 3, s_big, stream_pieces, &sc, &err) == LB_OK);
    CHECK(lb_safetensors_writer_add(w, "f32", LB_ST_F32, 2, s_f32, f32, &err) == LB_ERR_ARG, "duplicate refused");
    CHECK(lb_safetensors_writer_add(w, "__metadata__", LB_ST_F32, 2, s_f32, f32, &err) == LB_ERR_ARG);
    CHECK(lb_safetensors_writer_set_meta(w, "format", "pt", &err) == LB_OK);
    CHECK(lb_safetensors_writer_set_meta(w, "note", "quote\" back\\ nl\n tab\t caf\xc3\xa9", &err) == LB_OK);
    CHECK(lb_safetensors_writer_set_meta(w, "format", "lowbit", &err) == LB_OK, "replace");
    const char *path = tmp_path("rt");
    CHECK(lb_safetensors_writer_write(w, path, &err) == LB_OK, "%s", err.msg);

    lb_safetensors *st;
    lb_status s = lb_safetensors_open(path, &st, &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (!s) {
        CHECK(lb_safetensors_count(st) == 6);
        CHECK(lb_safetensors_data_offset(st) % 8 == 0);
        const lb_st_tensor *t = lb_safetensors_info(st, 0);
        CHECK(strcmp(t->name, "u8 \"odd\" name\\") == 0 && t->dtype == LB_ST_U8 && memcmp(t->data, u8, 3) == 0);
        lb_tensor g;
        CHECK(lb_safetensors_get(st, 0, &g, &err) == LB_ERR_UNSUPPORTED, "U8 has no lb_dtype");
        long i = lb_safetensors_find(st, "f32");
        CHECK(i == 1 && lb_safetensors_get(st, 1, &g, &err) == LB_OK);
        CHECK(g.type == LB_F32 && g.n_dims == 2 && g.ne[0] == 5 && g.ne[1] == 2 && memcmp(g.data, f32, 40) == 0);
        CHECK(lb_safetensors_info(st, 1)->offset == lb_safetensors_data_offset(st) + 3, "unaligned offset kept");
        float row[5];
        CHECK(lb_tensor_row_to_float(&g, 1, row, &err) == LB_OK && row[0] == f32[1][0] && row[4] == f32[1][4],
              "unaligned F32 rows read back");
        CHECK(lb_safetensors_get(st, (size_t)lb_safetensors_find(st, "bf16"), &g, &err) == LB_OK && g.type == LB_BF16 &&
              g.ne[0] == 7 && memcmp(g.data, bf, 14) == 0);
        t = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "scalar"));
        double d;
        memcpy(&d, t->data, 8);
        CHECK(t->n_dims == 0 && t->dtype == LB_ST_F64 && t->nbytes == 8 && d == 3.25);
        t = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "empty"));
        CHECK(t->n_dims == 2 && t->shape[0] == 0 && t->shape[1] == 4 && t->nbytes == 0);
        t = lb_safetensors_info(st, (size_t)lb_safetensors_find(st, "streamed"));
        CHECK(t->n_dims == 3 && t->shape[1] == 10007 && t->nbytes == sizeof big && memcmp(t->data, big, sizeof big) == 0);
        CHECK(lb_safetensors_n_meta(st) == 2);
        CHECK(strcmp(lb_safetensors_meta_get(st, "format"), "lowbit") == 0);
        CHECK(strcmp(lb_safetensors_meta_get(st, "note"), "quote\" back\\ nl\n tab\t caf\xc3\xa9") == 0);
        CHECK(lb_safetensors_meta_get(st, "nope") == NULL);
        lb_safetensors_close(st);
    }
    /* the header we write is what the writer reports, padded with spaces */
    char *hdr;
    size_t hlen;
    CHECK(lb_safetensors_writer_header(w, &hdr, &hlen, &err) == LB_OK && hlen % 8 == 0);
    lb_mapfile mf;
    if (lb_mapfile_open(path, &mf, &err) == LB_OK) {
        CHECK(mf.size >= hlen && memcmp(mf.data, hdr, hlen) == 0);
        CHECK(hdr[hlen - 1] == ' ' || hdr[hlen - 1] == '}');
        lb_mapfile_close(&mf);
    }
    free(hdr);
    unlink(path);
    /* a stream that under-delivers fails the write and leaves no file */
    sc.stop_early = 5;
    CHECK(lb_safetensors_writer_write(w, path, &err) == LB_ERR_ARG && strstr(err.msg, "streamed"), "%s", err.msg);
    CHECK(access(path, F_OK) != 0, "no output left after a failed write");
    lb_safetensors_writer_free(w);
}

/* ---- malformed input ---- */

/* Parses exactly n bytes from a fresh heap copy, so the sanitizer sees any over-read. */
static lb_status parse_copy(const void *data, size_t n, lb_error *err) {
    void *copy = malloc(n ? n : 1);
    memcpy(copy, data, n);
    lb_safetensors *st = NULL;
    lb_status s = lb_safetensors_parse(copy, n, "bad.safetensors", &st, err);
    if (!s) {
        /* touch every tensor's bytes: they must lie inside the copy */
        unsigned sum = 0;
        for (size_t i = 0; i < lb_safetensors_count(st); i++) {
            const lb_st_tensor *t = lb_safetensors_info(st, i);
            for (size_t k = 0; k < t->nbytes; k++) sum += ((const unsigned char *)t->data)[k];
        }
        (void)sum;
        lb_safetensors_close(st);
    }
    free(copy);
    return s;
}

/* Header from JSON text plus `data` zero bytes. */
static lb_status parse_json(const char *json, size_t data, lb_error *err) {
    size_t j = strlen(json), n = 8 + j + data;
    unsigned char *b = calloc(1, n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)j >> (8 * i));
    memcpy(b + 8, json, j);
    lb_status s = parse_copy(b, n, err);
    free(b);
    return s;
}

#define BAD(json, data, needle)                                                                          \
    do {                                                                                                 \
        lb_error e_ = {0};                                                                               \
        lb_status s_ = parse_json(json, data, &e_);                                                      \
        CHECK(s_ == LB_ERR_FORMAT && strstr(e_.msg, "bad.safetensors") && strstr(e_.msg, needle),        \
              "%s -> %d %s", json, s_, e_.msg);                                                          \
    } while (0)

static void check_bad_headers(void) {
    lb_error err;
    CHECK(parse_json("{}", 0, &err) == LB_OK, "empty header is valid");
    CHECK(parse_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ", 8, &err) == LB_OK, "%s", err.msg);
    CHECK(parse_json("{\"__metadata__\":{\"a\":\"b\"},\"w\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[3,4]}}", 9, &err) == LB_OK,
          "holes and scalars are fine: %s", err.msg);
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"3\"],\"data_offsets\":[0,12]}}", 12, "shape[0]");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576,1048576,1048576],\"data_offsets\":[0,4]}}", 4, "overflows");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", 12, "shape");
    BAD("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,12]}}", 12, "shape");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12, "needs 12");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 11, "past the data");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 12, "end before");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 12, "data_offsets");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 12, "data_offsets");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 12, "data_offsets");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551615,4]}}", 12, "data_offsets");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9007199254740000,9007199254740004]}}", 12, "past the data");
    BAD("{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "F33");
    BAD("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "f32");
    BAD("{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    BAD("{\"w\":5}", 4, "not a JSON object");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
        "twice");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
        "overlaps");
    BAD("{\"__metadata__\":[1]}", 0, "__metadata__");
    BAD("{\"__metadata__\":{\"a\":1}}", 0, "__metadata__");
    BAD("{\"w\":", 0, "invalid");
    BAD("{\"w\":{}} garbage", 0, "after the header");
    BAD("[1,2]", 0, "not a JSON object");
    BAD("\"str\"", 0, "not a JSON object");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "invalid");
    BAD("", 4, "not a JSON object");
    /* deep nesting must not recurse without bound */
    size_t depth = 100000;
    char *deep = malloc(depth + 16);
    strcpy(deep, "{\"a\":");
    memset(deep + 5, '[', depth);
    strcpy(deep + 5 + depth, "}");
    BAD(deep, 0, "invalid");
    free(deep);

    /* header length fields that lie */
    unsigned char b[16] = {0};
    CHECK(parse_copy(b, 4, &err) == LB_ERR_FORMAT && strstr(err.msg, "too short"));
    b[0] = 9; /* claims 9 header bytes, 8 present */
    CHECK(parse_copy(b, 16, &err) == LB_ERR_FORMAT && strstr(err.msg, "runs past"), "%s", err.msg);
    memset(b, 0xff, 8);
    CHECK(parse_copy(b, 16, &err) == LB_ERR_FORMAT && strstr(err.msg, "limit"), "%s", err.msg);
    memset(b, 0, 8);
    b[7] = 0x80; /* 2^63: "negative" as a signed length */
    CHECK(parse_copy(b, 16, &err) == LB_ERR_FORMAT);
}

/* Truncates a valid file at every byte (small file) or at every section boundary (big file). */
static void check_truncation(void) {
    lb_error err;
    /* small file from the writer: every prefix must fail */
    lb_safetensors_writer *w;
    float a[3] = {1, 2, 3};
    uint16_t h[5] = {1, 2, 3, 4, 5};
    int64_t sa[1] = {3}, sh[2] = {5, 1};
    lb_safetensors_writer_new(&w, &err);
    lb_safetensors_writer_set_meta(w, "format", "pt", &err);
    lb_safetensors_writer_add(w, "a", LB_ST_F32, 1, sa, a, &err);
    lb_safetensors_writer_add(w, "h", LB_ST_F16, 2, sh, h, &err);
    const char *path = tmp_path("trunc");
    CHECK(lb_safetensors_writer_write(w, path, &err) == LB_OK);
    lb_safetensors_writer_free(w);
    lb_mapfile mf;
    if (lb_mapfile_open(path, &mf, &err) == LB_OK) {
        CHECK(parse_copy(mf.data, mf.size, &err) == LB_OK, "%s", err.msg);
        int bad = 0;
        for (size_t n = 0; n < mf.size; n++)
            if (parse_copy(mf.data, n, &err) != LB_ERR_FORMAT) bad++;
        CHECK(bad == 0, "%d truncated prefixes were accepted", bad);
        lb_mapfile_close(&mf);
    }
    unlink(path);

    /* a real model: cut at the header length, inside and at the end of the JSON, and at the
     * start, middle and end of every tensor's data */
    const char *real = SHARED("models/stories260K-hf/model.safetensors");
    lb_safetensors *st;
    if (lb_mapfile_open(real, &mf, &err) || lb_safetensors_open(real, &st, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    size_t d0 = lb_safetensors_data_offset(st);
    size_t cuts[] = {0, 3, 7, 8, 9, d0 / 2, d0 - 1, d0};
    int bad = 0, n_cuts = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++, n_cuts++)
        if (parse_copy(mf.data, cuts[i], &err) != LB_ERR_FORMAT) bad++;
    for (size_t i = 0; i < lb_safetensors_count(st); i++) {
        const lb_st_tensor *t = lb_safetensors_info(st, i);
        size_t end = t->offset + t->nbytes;
        if (end == mf.size) { /* the last tensor: any cut inside it must fail */
            size_t c[] = {t->offset, t->offset + t->nbytes / 2, end - 1};
            for (size_t k = 0; k < 3; k++, n_cuts++)
                if (parse_copy(mf.data, c[k], &err) != LB_ERR_FORMAT || !strstr(err.msg, t->name)) bad++;
        } else {
            /* cutting at the end of an inner tensor strands the ones after it */
            n_cuts++;
            if (parse_copy(mf.data, end, &err) != LB_ERR_FORMAT) bad++;
            n_cuts++;
            if (parse_copy(mf.data, end - 1, &err) != LB_ERR_FORMAT) bad++;
        }
    }
    CHECK(bad == 0 && n_cuts > 90, "%d of %d cuts accepted", bad, n_cuts);
    lb_safetensors_close(st);
    lb_mapfile_close(&mf);
}

int main(void) {
    lb_log_set_level(LB_LOG_ERROR);
    check_model(SHARED("models/stories260K-hf"), "F32", 0, 0);
    check_model(SHARED("models/stories260K-ft-dogs"), "F32", 0, 0);
    check_model(SHARED("models/synth-llama3-gqa"), "BF16", 0, 0);
    check_model(SHARED("models/synth-qwen2-bias"), "F16", 1, 0);
    check_model(SHARED("models/synth-bitnet"), "BF16", 0, 1);
    check_model(SHARED("models/tinystories-512d"), "BF16", 0, 0);
    check_against_llama2c();
    check_roundtrip();
    check_bad_headers();
    check_truncation();
    return test_summary();
}
