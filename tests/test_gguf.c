/* GGUF reader and writer: the real stories260K.gguf against the same weights in llama2.c
 * format, a writer round trip with every value type, and bad input (every truncation point,
 * malicious counts, lengths, shapes and offsets built byte by byte) failing cleanly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "io/gguf.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")
#define LLAMA2C SHARED("models/stories260K-llama2c/stories260K.bin")

/* ---- a tiny independent GGUF byte builder ------------------------------------------------- */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, t, 4);
}
static void u64(buf *b, uint64_t v) {
    u32(b, (uint32_t)v);
    u32(b, (uint32_t)(v >> 32));
}
static void str(buf *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void pad(buf *b, size_t align) {
    while (b->n % align) put(b, "", 1);
}
static void tinfo(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    str(b, name);
    u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims && i < 4; i++) u64(b, ne[i]);
    u32(b, type);
    u64(b, off);
}

static lb_status parse(const buf *b, lb_gguf **g, lb_error *err) { return lb_gguf_parse(b->p, b->n, "t.gguf", g, err); }

/* Parses and expects failure with status want; returns 1 when it failed as expected. */
static int fails(const buf *b, lb_status want, const char *needle) {
    lb_gguf *g = NULL;
    lb_error err = {0};
    lb_status s = parse(b, &g, &err);
    if (s == LB_OK) lb_gguf_close(g);
    int ok = s == want && g == NULL && strncmp(err.msg, "t.gguf: ", 8) == 0 && (!needle || strstr(err.msg, needle));
    if (!ok) fprintf(stderr, "  got status %d, message: %s\n", s, err.msg);
    return ok;
}

/* ---- the real file ------------------------------------------------------------------------- */
static void test_stories(void) {
    lb_gguf *g;
    lb_error err;
    lb_status s = lb_gguf_open(STORIES, &g, &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (s) return;
    CHECK(lb_gguf_version(g) == 3, "");
    CHECK(lb_gguf_alignment(g) == 32, "");
    CHECK(lb_gguf_data_offset(g) % 32 == 0, "");
    /* Llama 2 layout of stories260K: embeddings, final norm, head, 9 tensors in each of 5 layers */
    CHECK(lb_gguf_tensor_count(g) == 3 + 5 * 9, "%zu tensors", lb_gguf_tensor_count(g));
    const lb_tensor *t = lb_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == LB_F32 && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 512 && t->nbytes == 64 * 512 * 4, "");
    t = lb_gguf_find_tensor(g, "blk.0.attn_k.weight"); /* 4 kv heads x head size 8 */
    CHECK(t && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 32, "");
    t = lb_gguf_find_tensor(g, "blk.4.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64 && t->type == LB_F32, "");
    CHECK(lb_gguf_find_tensor(g, "blk.5.ffn_down.weight") == NULL, "");
    const uint8_t *base = lb_gguf_file_data(g);
    size_t size = lb_gguf_file_size(g), bad = 0;
    for (size_t i = 0; i < lb_gguf_tensor_count(g); i++) {
        t = lb_gguf_tensor(g, i);
        const uint8_t *d = t->data;
        if (d < base + lb_gguf_data_offset(g) || d + t->nbytes > base + size || lb_gguf_tensor_offset(g, i) % 32) bad++;
        if (lb_gguf_find_tensor(g, t->name) != t) bad++;
    }
    CHECK(bad == 0, "%zu tensors outside the file or not found by name", bad);

    /* metadata */
    const char *sv;
    size_t len;
    int64_t iv;
    double fv;
    CHECK(lb_gguf_get_str(g, "general.architecture", &sv, &len, &err) == LB_OK && len == 5 && !memcmp(sv, "llama", 5), "");
    CHECK(lb_gguf_get_int(g, "llama.embedding_length", &iv, &err) == LB_OK && iv == 64, "");
    CHECK(lb_gguf_get_int(g, "llama.block_count", &iv, &err) == LB_OK && iv == 5, "");
    CHECK(lb_gguf_get_int(g, "llama.attention.head_count_kv", &iv, &err) == LB_OK && iv == 4, "");
    CHECK(lb_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &fv, &err) == LB_OK && fabs(fv - 1e-5) < 1e-9, "");
    lb_gguf_arr a;
    CHECK(lb_gguf_get_arr(g, "tokenizer.ggml.tokens", &a, &err) == LB_OK && a.type == LB_GGUF_STRING && a.n == 512, "");
    CHECK(lb_gguf_arr_str(&a, 1, &sv, &len, &err) == LB_OK && len == 3 && !memcmp(sv, "<s>", 3), "");
    CHECK(lb_gguf_arr_str(&a, 3, &sv, &len, &err) == LB_OK && len == 6 && !memcmp(sv, "<0x00>", 6), "");
    CHECK(lb_gguf_arr_str(&a, 512, &sv, &len, &err) == LB_ERR_RANGE, "");
    CHECK(lb_gguf_arr_int(&a, 0, &iv, &err) == LB_ERR_FORMAT, "strings are not integers");
    CHECK(lb_gguf_get_arr(g, "tokenizer.ggml.token_type", &a, &err) == LB_OK && a.type == LB_GGUF_I32 && a.n == 512, "");
    CHECK(lb_gguf_arr_int(&a, 0, &iv, &err) == LB_OK && iv == 2, "<unk> is type unknown");
    CHECK(lb_gguf_arr_int(&a, 1, &iv, &err) == LB_OK && iv == 3, "<s> is a control token");
    CHECK(lb_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &iv, &err) == LB_OK && iv == 1, "");
    CHECK(lb_gguf_get_int(g, "no.such.key", &iv, &err) == LB_ERR_RANGE && strstr(err.msg, "no.such.key"), "");
    CHECK(lb_gguf_get_int(g, "general.architecture", &iv, &err) == LB_ERR_FORMAT && strstr(err.msg, "string"), "");
    CHECK(lb_gguf_find_key(g, "llama.block_count") >= 0 && lb_gguf_find_key(g, "llama.block") < 0, "");

    /* every key is found by its own name, and formats to something non-empty */
    char line[256];
    size_t badk = 0;
    for (size_t i = 0; i < lb_gguf_kv_count(g); i++) {
        if (lb_gguf_find_key(g, lb_gguf_kv_key(g, i)) != (int64_t)i) badk++;
        lb_gguf_kv_format(g, i, line, sizeof line);
        if (!line[0]) badk++;
    }
    CHECK(badk == 0, "");
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "tokenizer.ggml.tokens"), line, sizeof line);
    CHECK(strstr(line, "\"<unk>\", \"<s>\"") && strstr(line, "(512 x string)"), "%s", line);
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "llama.block_count"), line, sizeof line);
    CHECK(strcmp(line, "5") == 0, "%s", line);
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "tokenizer.ggml.tokens"), line, 10);
    CHECK(strlen(line) == 9, "cut to the buffer");

    /* the tensor data is the same as the llama2.c export of these weights: embeddings right
     * after its 28-byte header, then the 5 attention norms */
    lb_mapfile l2;
    if (lb_mapfile_open(LLAMA2C, &l2, &err) == LB_OK) {
        t = lb_gguf_find_tensor(g, "token_embd.weight");
        CHECK(l2.size > 28 + 131072 + 5 * 256 && memcmp(t->data, l2.data + 28, 131072) == 0, "embeddings differ");
        for (int l = 0; l < 5; l++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);
            t = lb_gguf_find_tensor(g, nm);
            CHECK(t && memcmp(t->data, l2.data + 28 + 131072 + 256 * l, 256) == 0, "%s differs", nm);
        }
        lb_mapfile_close(&l2);
    } else {
        CHECK(0, "%s", err.msg);
    }
    lb_gguf_close(g);
}

/* Truncating the real file anywhere in its header, metadata, tensor infos or padding, and at
 * points inside the data, must fail as malformed. */
static void test_stories_truncated(void) {
    char *data;
    size_t size;
    lb_error err;
    if (lb_read_file(STORIES, 1 << 24, &data, &size, &err) != LB_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    lb_gguf *g;
    CHECK(lb_gguf_parse(data, size, "s.gguf", &g, &err) == LB_OK, "%s", err.msg);
    size_t doff = lb_gguf_data_offset(g), bad = 0, n = 0;
    /* ends of every kv value: section boundaries */
    for (size_t i = 0; i < lb_gguf_kv_count(g); i++) {
        const void *raw;
        size_t rs;
        lb_gguf_kv_raw(g, i, &raw, &rs);
        size_t end = (size_t)((const char *)raw - data) + rs;
        lb_gguf *h = NULL;
        if (lb_gguf_parse(data, end, "s.gguf", &h, &err) != LB_ERR_FORMAT || h) bad++;
        n++;
    }
    lb_gguf_close(g);
    for (size_t cut = 0; cut <= doff; cut++) { /* every byte up to the data section */
        lb_gguf *h = NULL;
        if (lb_gguf_parse(data, cut, "s.gguf", &h, &err) != LB_ERR_FORMAT || h) bad++;
        n++;
    }
    for (size_t cut = doff + 1; cut < size; cut += 4099) {
        lb_gguf *h = NULL;
        if (lb_gguf_parse(data, cut, "s.gguf", &h, &err) != LB_ERR_FORMAT || h) bad++;
        n++;
    }
    lb_gguf *h = NULL;
    if (lb_gguf_parse(data, size - 1, "s.gguf", &h, &err) != LB_ERR_FORMAT || h) bad++;
    CHECK(strstr(err.msg, "s.gguf: offset ") && strstr(err.msg, "runs past end of file"), "%s", err.msg);
    CHECK(bad == 0, "%zu of %zu truncations were not refused", bad, n);
    free(data);
}

/* ---- writer round trip --------------------------------------------------------------------- */
typedef struct fill_ctx {
    const uint8_t *src;
    size_t chunk;
    int calls;
    long delta; /* bytes to write more (or fewer) than asked, to test the checks */
} fill_ctx;

static lb_status fill_chunks(void *user, const lb_tensor *t, lb_gguf_sink *sink, lb_error *err) {
    fill_ctx *c = user;
    c->calls++;
    size_t total = (size_t)((long)t->nbytes + c->delta);
    for (size_t off = 0; off < total; off += c->chunk) {
        size_t n = total - off < c->chunk ? total - off : c->chunk;
        lb_status s = lb_gguf_sink_write(sink, c->src + off, n, err);
        if (s) return s;
    }
    return LB_OK;
}

static char g_tmp[256];

static void test_writer(void) {
    lb_error err;
    lb_gguf_writer *w = lb_gguf_writer_new();
    CHECK(w != NULL, "");
    CHECK(lb_gguf_set_u8(w, "t.u8", 255, &err) == LB_OK, "");
    CHECK(lb_gguf_set_i8(w, "t.i8", -128, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u16(w, "t.u16", 65535, &err) == LB_OK, "");
    CHECK(lb_gguf_set_i16(w, "t.i16", -32768, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u32(w, "t.u32", 4000000000u, &err) == LB_OK, "");
    CHECK(lb_gguf_set_i32(w, "t.i32", INT32_MIN, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u64(w, "t.u64", 1ull << 62, &err) == LB_OK, "");
    CHECK(lb_gguf_set_u64(w, "t.u64big", UINT64_MAX, &err) == LB_OK, "");
    CHECK(lb_gguf_set_i64(w, "t.i64", INT64_MIN, &err) == LB_OK, "");
    CHECK(lb_gguf_set_f32(w, "t.f32", 0.1f, &err) == LB_OK, "");
    CHECK(lb_gguf_set_f64(w, "t.f64", 0.1, &err) == LB_OK, "");
    CHECK(lb_gguf_set_bool(w, "t.bool", true, &err) == LB_OK, "");
    CHECK(lb_gguf_set_str(w, "t.str", "h\"i\n\x01", 5, &err) == LB_OK, "");
    CHECK(lb_gguf_set_str(w, "t.empty", "", 0, &err) == LB_OK, "");
    CHECK(lb_gguf_set_str(w, "t.replace", "first", 5, &err) == LB_OK, "");
    CHECK(lb_gguf_set_i32(w, "t.replace", 7, &err) == LB_OK, "a second set replaces");
    int32_t ints[100];
    for (int i = 0; i < 100; i++) ints[i] = i * i - 50;
    CHECK(lb_gguf_set_arr(w, "t.arr_i32", LB_GGUF_I32, ints, 100, &err) == LB_OK, "");
    float fl[3] = {1.5f, -2.25f, 1e-30f};
    CHECK(lb_gguf_set_arr(w, "t.arr_f32", LB_GGUF_F32, fl, 3, &err) == LB_OK, "");
    double db[2] = {3.25, -1e300};
    CHECK(lb_gguf_set_arr(w, "t.arr_f64", LB_GGUF_F64, db, 2, &err) == LB_OK, "");
    uint8_t bools[3] = {1, 0, 1};
    CHECK(lb_gguf_set_arr(w, "t.arr_bool", LB_GGUF_BOOL, bools, 3, &err) == LB_OK, "");
    int64_t i64s[2] = {INT64_MAX, -5};
    CHECK(lb_gguf_set_arr(w, "t.arr_i64", LB_GGUF_I64, i64s, 2, &err) == LB_OK, "");
    uint16_t u16s[2] = {1, 65535};
    CHECK(lb_gguf_set_arr(w, "t.arr_u16", LB_GGUF_U16, u16s, 2, &err) == LB_OK, "");
    CHECK(lb_gguf_set_arr(w, "t.arr_empty", LB_GGUF_U8, NULL, 0, &err) == LB_OK, "");
    const char *strs[3] = {"a", "", "\xe2\x96\x81hello"};
    CHECK(lb_gguf_set_arr_str(w, "t.arr_str", strs, NULL, 3, &err) == LB_OK, "");
    CHECK(lb_gguf_set_arr(w, "t.bad", LB_GGUF_STRING, strs, 3, &err) == LB_ERR_ARG, "");
    CHECK(lb_gguf_set_u32(w, "general.alignment", 48, &err) == LB_ERR_ARG, "alignment must be a power of two");

    /* tensors: F32 2-D from memory, F16 3-D and Q8_0 streamed in odd chunks, 4-D last */
    float f32[6 * 5];
    for (int i = 0; i < 30; i++) f32[i] = (float)i * 0.5f - 3;
    int64_t ne2[2] = {6, 5}, ne3[3] = {7, 3, 2}, neq[2] = {64, 3}, ne4[4] = {2, 2, 2, 4};
    uint8_t src[4096];
    for (int i = 0; i < 4096; i++) src[i] = (uint8_t)(i * 131 + 7);
    fill_ctx f16c = {src, 5, 0, 0}, q8c = {src + 100, 13, 0, 0};
    CHECK(lb_gguf_add_tensor(w, "a.weight", LB_F32, 2, ne2, f32, &err) == LB_OK, "");
    CHECK(lb_gguf_add_tensor_lazy(w, "b.weight", LB_F16, 3, ne3, fill_chunks, &f16c, &err) == LB_OK, "");
    CHECK(lb_gguf_add_tensor_lazy(w, "c.weight", LB_Q8_0, 2, neq, fill_chunks, &q8c, &err) == LB_OK, "");
    CHECK(lb_gguf_add_tensor(w, "d.weight", LB_F32, 4, ne4, src + 7, &err) == LB_OK, "");
    CHECK(lb_gguf_add_tensor(w, "a.weight", LB_F32, 2, ne2, f32, &err) == LB_ERR_ARG, "duplicate name");
    int64_t odd[2] = {33, 1};
    CHECK(lb_gguf_add_tensor(w, "e.weight", LB_Q8_0, 2, odd, src, &err) == LB_ERR_ARG, "33 is not a Q8_0 row");
    CHECK(lb_gguf_writer_tensor_count(w) == 4, "");

    snprintf(g_tmp, sizeof g_tmp, "/tmp/lb_test_gguf_%d.gguf", (int)getpid());
    CHECK(lb_gguf_write(w, g_tmp, &err) == LB_OK, "%s", err.msg);
    CHECK(f16c.calls == 1 && q8c.calls == 1, "");

    lb_gguf *g;
    lb_status s = lb_gguf_open(g_tmp, &g, &err);
    CHECK(s == LB_OK, "%s", err.msg);
    if (s) {
        lb_gguf_writer_free(w);
        return;
    }
    CHECK(lb_gguf_version(g) == 3 && lb_gguf_alignment(g) == 32 && lb_gguf_kv_count(g) == 23, "");
    int64_t iv;
    double fv;
    bool bv;
    const char *sv;
    size_t len;
    CHECK(lb_gguf_get_int(g, "t.u8", &iv, &err) == LB_OK && iv == 255 && lb_gguf_kv_type(g, 0) == LB_GGUF_U8, "");
    CHECK(lb_gguf_get_int(g, "t.i8", &iv, &err) == LB_OK && iv == -128, "");
    CHECK(lb_gguf_get_int(g, "t.u16", &iv, &err) == LB_OK && iv == 65535, "");
    CHECK(lb_gguf_get_int(g, "t.i16", &iv, &err) == LB_OK && iv == -32768, "");
    CHECK(lb_gguf_get_int(g, "t.u32", &iv, &err) == LB_OK && iv == 4000000000LL, "");
    CHECK(lb_gguf_get_int(g, "t.i32", &iv, &err) == LB_OK && iv == INT32_MIN, "");
    CHECK(lb_gguf_get_int(g, "t.u64", &iv, &err) == LB_OK && iv == 1LL << 62, "");
    CHECK(lb_gguf_get_int(g, "t.u64big", &iv, &err) == LB_ERR_RANGE, "does not fit int64");
    CHECK(lb_gguf_get_float(g, "t.u64big", &fv, &err) == LB_OK && fv == 18446744073709551615.0, "");
    CHECK(lb_gguf_get_int(g, "t.i64", &iv, &err) == LB_OK && iv == INT64_MIN, "");
    CHECK(lb_gguf_get_float(g, "t.f32", &fv, &err) == LB_OK && (float)fv == 0.1f, "");
    CHECK(lb_gguf_get_float(g, "t.f64", &fv, &err) == LB_OK && fv == 0.1, "");
    CHECK(lb_gguf_get_float(g, "t.i32", &fv, &err) == LB_OK && fv == INT32_MIN, "");
    CHECK(lb_gguf_get_int(g, "t.f32", &iv, &err) == LB_ERR_FORMAT, "");
    CHECK(lb_gguf_get_bool(g, "t.bool", &bv, &err) == LB_OK && bv, "");
    CHECK(lb_gguf_get_str(g, "t.str", &sv, &len, &err) == LB_OK && len == 5 && !memcmp(sv, "h\"i\n\x01", 5), "");
    CHECK(lb_gguf_get_str(g, "t.empty", &sv, &len, &err) == LB_OK && len == 0, "");
    CHECK(lb_gguf_get_int(g, "t.replace", &iv, &err) == LB_OK && iv == 7, "");
    CHECK(lb_gguf_get_str(g, "t.i32", &sv, &len, &err) == LB_ERR_FORMAT && strstr(err.msg, "t.i32"), "");
    lb_gguf_arr a;
    int badv = 0;
    CHECK(lb_gguf_get_arr(g, "t.arr_i32", &a, &err) == LB_OK && a.type == LB_GGUF_I32 && a.n == 100, "");
    for (int i = 0; i < 100; i++)
        if (lb_gguf_arr_int(&a, (size_t)i, &iv, &err) != LB_OK || iv != ints[i]) badv++;
    CHECK(badv == 0, "");
    CHECK(lb_gguf_arr_int(&a, 100, &iv, &err) == LB_ERR_RANGE, "");
    CHECK(lb_gguf_get_arr(g, "t.arr_f32", &a, &err) == LB_OK && a.n == 3, "");
    for (int i = 0; i < 3; i++) CHECK(lb_gguf_arr_float(&a, (size_t)i, &fv, &err) == LB_OK && (float)fv == fl[i], "");
    CHECK(lb_gguf_get_arr(g, "t.arr_f64", &a, &err) == LB_OK && a.type == LB_GGUF_F64, "");
    CHECK(lb_gguf_arr_float(&a, 1, &fv, &err) == LB_OK && fv == -1e300, "");
    CHECK(lb_gguf_get_arr(g, "t.arr_bool", &a, &err) == LB_OK && a.type == LB_GGUF_BOOL, "");
    CHECK(lb_gguf_arr_bool(&a, 0, &bv, &err) == LB_OK && bv && lb_gguf_arr_bool(&a, 1, &bv, &err) == LB_OK && !bv, "");
    CHECK(lb_gguf_get_arr(g, "t.arr_i64", &a, &err) == LB_OK && lb_gguf_arr_int(&a, 0, &iv, &err) == LB_OK && iv == INT64_MAX, "");
    CHECK(lb_gguf_get_arr(g, "t.arr_u16", &a, &err) == LB_OK && lb_gguf_arr_int(&a, 1, &iv, &err) == LB_OK && iv == 65535, "");
    CHECK(lb_gguf_get_arr(g, "t.arr_empty", &a, &err) == LB_OK && a.n == 0 && a.type == LB_GGUF_U8, "");
    CHECK(lb_gguf_get_arr(g, "t.arr_str", &a, &err) == LB_OK && a.n == 3, "");
    for (int i = 0; i < 3; i++)
        CHECK(lb_gguf_arr_str(&a, (size_t)i, &sv, &len, &err) == LB_OK && len == strlen(strs[i]) && !memcmp(sv, strs[i], len), "");

    /* formatting */
    char line[200];
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "t.i8"), line, sizeof line);
    CHECK(strcmp(line, "-128") == 0, "%s", line);
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "t.str"), line, sizeof line);
    CHECK(strcmp(line, "\"h\\\"i\\n\\x01\"") == 0, "%s", line);
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "t.arr_i32"), line, sizeof line);
    CHECK(strcmp(line, "[-50, -49, -46, -41, -34, -25, -14, -1, ...] (100 x i32)") == 0, "%s", line);
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "t.bool"), line, sizeof line);
    CHECK(strcmp(line, "true") == 0, "%s", line);
    lb_gguf_kv_format(g, (size_t)lb_gguf_find_key(g, "t.f32"), line, sizeof line);
    CHECK(strtof(line, NULL) == 0.1f, "%s", line);

    /* tensors and their data */
    CHECK(lb_gguf_tensor_count(g) == 4, "");
    const lb_tensor *t = lb_gguf_find_tensor(g, "a.weight");
    CHECK(t && t->type == LB_F32 && t->n_dims == 2 && t->ne[0] == 6 && t->ne[1] == 5 && !memcmp(t->data, f32, sizeof f32), "");
    t = lb_gguf_find_tensor(g, "b.weight");
    CHECK(t && t->type == LB_F16 && t->n_dims == 3 && t->ne[2] == 2 && t->nbytes == 7 * 3 * 2 * 2 && !memcmp(t->data, src, t->nbytes), "");
    t = lb_gguf_find_tensor(g, "c.weight");
    CHECK(t && t->type == LB_Q8_0 && t->nbytes == 2 * 34 * 3 && !memcmp(t->data, src + 100, t->nbytes), "");
    t = lb_gguf_find_tensor(g, "d.weight");
    CHECK(t && t->n_dims == 4 && t->ne[3] == 4 && t->nbytes == 32 * 4 && !memcmp(t->data, src + 7, t->nbytes), "");
    for (size_t i = 0; i < 4; i++) CHECK(lb_gguf_tensor_offset(g, i) % 32 == 0, "");
    CHECK(lb_gguf_file_size(g) == lb_gguf_data_offset(g) + lb_gguf_tensor_offset(g, 3) + 128, "no trailing bytes");

    /* copying every kv into a new writer reproduces the encoded values exactly */
    lb_gguf_writer *w2 = lb_gguf_writer_new();
    for (size_t i = 0; i < lb_gguf_kv_count(g); i++) CHECK(lb_gguf_copy_kv(w2, g, i, &err) == LB_OK, "");
    CHECK(lb_gguf_unset(w2, "t.u8") == 1 && lb_gguf_unset(w2, "t.u8") == 0, "");
    CHECK(lb_gguf_set_u32(w2, "general.alignment", 64, &err) == LB_OK, "");
    CHECK(lb_gguf_add_tensor(w2, "x", LB_F32, 2, ne2, f32, &err) == LB_OK, "");
    CHECK(lb_gguf_add_tensor(w2, "y", LB_F32, 2, ne2, f32, &err) == LB_OK, "");
    char tmp2[300];
    snprintf(tmp2, sizeof tmp2, "%s.2", g_tmp);
    CHECK(lb_gguf_write(w2, tmp2, &err) == LB_OK, "%s", err.msg);
    lb_gguf *g2;
    if (lb_gguf_open(tmp2, &g2, &err) == LB_OK) {
        CHECK(lb_gguf_alignment(g2) == 64 && lb_gguf_tensor_offset(g2, 1) == 128 && lb_gguf_data_offset(g2) % 64 == 0, "");
        CHECK(lb_gguf_kv_count(g2) == lb_gguf_kv_count(g), "one removed, alignment added");
        size_t diff = 0;
        for (size_t i = 1; i < lb_gguf_kv_count(g); i++) {
            int64_t j = lb_gguf_find_key(g2, lb_gguf_kv_key(g, i));
            const void *r1, *r2;
            size_t n1, n2;
            lb_gguf_kv_raw(g, i, &r1, &n1);
            if (j < 0) {
                diff++;
                continue;
            }
            lb_gguf_kv_raw(g2, (size_t)j, &r2, &n2);
            if (n1 != n2 || memcmp(r1, r2, n1) || lb_gguf_kv_type(g, i) != lb_gguf_kv_type(g2, (size_t)j)) diff++;
        }
        CHECK(diff == 0, "%zu values differ after copying", diff);
        lb_gguf_close(g2);
    } else {
        CHECK(0, "%s", err.msg);
    }
    lb_gguf_writer_free(w2);
    lb_gguf_close(g);

    /* a fill that writes too little or too much fails and leaves no file behind */
    unlink(tmp2);
    lb_gguf_writer *w3 = lb_gguf_writer_new();
    fill_ctx shortc = {src, 7, 0, -1}, longc = {src, 7, 0, 1};
    CHECK(lb_gguf_add_tensor_lazy(w3, "s", LB_F32, 2, ne2, fill_chunks, &shortc, &err) == LB_OK, "");
    CHECK(lb_gguf_write(w3, tmp2, &err) != LB_OK && strstr(err.msg, "less"), "%s", err.msg);
    CHECK(access(tmp2, F_OK) != 0, "nothing under the final name");
    lb_gguf_writer_free(w3);
    w3 = lb_gguf_writer_new();
    CHECK(lb_gguf_add_tensor_lazy(w3, "s", LB_F32, 2, ne2, fill_chunks, &longc, &err) == LB_OK, "");
    CHECK(lb_gguf_write(w3, tmp2, &err) != LB_OK && strstr(err.msg, "more"), "%s", err.msg);
    CHECK(access(tmp2, F_OK) != 0, "");
    lb_gguf_writer_free(w3);
    lb_gguf_writer_free(w);
}

/* Every truncation of a small written file (no trailing padding) is refused as malformed. */
static void test_truncate_written(void) {
    lb_error err;
    char *data;
    size_t size;
    if (lb_read_file(g_tmp, 1 << 20, &data, &size, &err) != LB_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    size_t bad = 0;
    for (size_t cut = 0; cut < size; cut++) {
        lb_gguf *g = NULL;
        lb_status s = lb_gguf_parse(data, cut, "w.gguf", &g, &err);
        if (s != LB_ERR_FORMAT || g || strncmp(err.msg, "w.gguf: offset ", 15) != 0) {
            if (bad++ < 3) fprintf(stderr, "cut %zu: status %d: %s\n", cut, s, err.msg);
        }
        if (g) lb_gguf_close(g);
    }
    CHECK(bad == 0, "%zu of %zu truncations not refused", bad, size);
    lb_gguf *g;
    CHECK(lb_gguf_parse(data, size, "w.gguf", &g, &err) == LB_OK, "");
    if (g) lb_gguf_close(g);
    free(data);
    unlink(g_tmp);
}

/* ---- nested arrays and hand-built malicious files ------------------------------------------ */
static void test_nested(void) {
    buf b = {0};
    header(&b, 2, 0, 2);
    str(&b, "n.arr"); /* [[1, 2, 3], [], [-7]] of i32 */
    u32(&b, LB_GGUF_ARRAY);
    u32(&b, LB_GGUF_ARRAY);
    u64(&b, 3);
    u32(&b, LB_GGUF_I32); u64(&b, 3); u32(&b, 1); u32(&b, 2); u32(&b, 3);
    u32(&b, LB_GGUF_I32); u64(&b, 0);
    u32(&b, LB_GGUF_I32); u64(&b, 1); u32(&b, (uint32_t)-7);
    str(&b, "n.strs"); /* [["x", "yz"]] */
    u32(&b, LB_GGUF_ARRAY);
    u32(&b, LB_GGUF_ARRAY);
    u64(&b, 1);
    u32(&b, LB_GGUF_STRING); u64(&b, 2); str(&b, "x"); str(&b, "yz");
    lb_gguf *g;
    lb_error err;
    CHECK(parse(&b, &g, &err) == LB_OK, "%s", err.msg);
    if (g) {
        CHECK(lb_gguf_version(g) == 2, "");
        lb_gguf_arr a, s;
        int64_t iv;
        const char *sv;
        size_t len;
        CHECK(lb_gguf_get_arr(g, "n.arr", &a, &err) == LB_OK && a.type == LB_GGUF_ARRAY && a.n == 3, "");
        CHECK(lb_gguf_arr_arr(&a, 0, &s, &err) == LB_OK && s.n == 3 && lb_gguf_arr_int(&s, 2, &iv, &err) == LB_OK && iv == 3, "");
        CHECK(lb_gguf_arr_arr(&a, 1, &s, &err) == LB_OK && s.n == 0, "");
        CHECK(lb_gguf_arr_arr(&a, 2, &s, &err) == LB_OK && s.n == 1 && lb_gguf_arr_int(&s, 0, &iv, &err) == LB_OK && iv == -7, "");
        CHECK(lb_gguf_arr_arr(&a, 3, &s, &err) == LB_ERR_RANGE, "");
        CHECK(lb_gguf_get_arr(g, "n.strs", &a, &err) == LB_OK && lb_gguf_arr_arr(&a, 0, &s, &err) == LB_OK, "");
        CHECK(lb_gguf_arr_str(&s, 1, &sv, &len, &err) == LB_OK && len == 2 && !memcmp(sv, "yz", 2), "");
        char line[128];
        lb_gguf_kv_format(g, 0, line, sizeof line);
        CHECK(strcmp(line, "[[1, 2, 3], [] (0 x i32), [-7]]") == 0, "%s", line);
        lb_gguf_close(g);
    }
    free(b.p);

    /* nesting deeper than the limit */
    buf d = {0};
    header(&d, 3, 0, 1);
    str(&d, "deep");
    u32(&d, LB_GGUF_ARRAY);
    for (int i = 0; i < 20; i++) {
        u32(&d, LB_GGUF_ARRAY);
        u64(&d, 1);
    }
    u32(&d, LB_GGUF_U8);
    u64(&d, 0);
    CHECK(fails(&d, LB_ERR_FORMAT, "nested"), "");
    free(d.p);
}

/* A valid two-tensor file with fields the caller can change. */
typedef struct spec {
    uint32_t version, n_dims, type, kv_type, elem_type;
    uint64_t n_tensors, n_kv, str_len, arr_count, off1;
    uint64_t ne[4];
    const char *name2;
    int alignment; /* 0: no key */
} spec;

static spec good(void) {
    spec s = {3, 2, LB_F32, LB_GGUF_STRING, LB_GGUF_I32, 2, 2, 5, 3, 32, {4, 2, 1, 1}, "b", 0};
    return s;
}

static buf build(const spec *s) {
    buf b = {0};
    header(&b, s->version, s->n_tensors, s->n_kv + (s->alignment ? 1 : 0));
    str(&b, "k.str");
    u32(&b, s->kv_type);
    u64(&b, s->str_len);
    put(&b, "hello", 5);
    str(&b, "k.arr");
    u32(&b, LB_GGUF_ARRAY);
    u32(&b, s->elem_type);
    u64(&b, s->arr_count);
    u32(&b, 10); u32(&b, 20); u32(&b, 30);
    if (s->alignment) {
        str(&b, "general.alignment");
        u32(&b, LB_GGUF_U32);
        u32(&b, (uint32_t)s->alignment);
    }
    size_t align = s->alignment > 0 ? (size_t)s->alignment : 32;
    tinfo(&b, "a", s->n_dims, s->ne, s->type, 0);
    uint64_t ne1[1] = {8};
    tinfo(&b, s->name2, 1, ne1, LB_F32, s->off1);
    pad(&b, align);
    for (int i = 0; i < 32 + 32; i++) put(&b, "\x11", 1); /* a: 32 bytes at 0, b: 32 bytes at 32 */
    return b;
}

static int try(const spec *s, lb_status want, const char *needle) {
    buf b = build(s);
    int r = fails(&b, want, needle);
    free(b.p);
    return r;
}

static void test_malicious(void) {
    spec s = good();
    buf b = build(&s);
    lb_gguf *g;
    lb_error err;
    CHECK(parse(&b, &g, &err) == LB_OK, "the base case parses: %s", err.msg);
    if (g) lb_gguf_close(g);
    buf m = {0};
    put(&m, b.p, b.n);
    m.p[0] = 'X';
    CHECK(fails(&m, LB_ERR_FORMAT, "not a GGUF file"), "");
    free(m.p);
    free(b.p);
    buf empty = {0};
    CHECK(fails(&empty, LB_ERR_FORMAT, "too short"), "");

    s = good(); s.version = 1; CHECK(try(&s, LB_ERR_UNSUPPORTED, "version 1"), "");
    s = good(); s.version = 4; CHECK(try(&s, LB_ERR_UNSUPPORTED, "version 4"), "");
    s = good(); s.version = 0x03000000; CHECK(try(&s, LB_ERR_UNSUPPORTED, "big-endian"), "");
    s = good(); s.str_len = 99999999; CHECK(try(&s, LB_ERR_FORMAT, "offset 41: key k.str: string length 99999999 runs past end of file"), "");
    s = good(); s.str_len = UINT64_MAX; CHECK(try(&s, LB_ERR_FORMAT, "runs past end"), "");
    s = good(); s.arr_count = 1ull << 61; CHECK(try(&s, LB_ERR_FORMAT, "array count"), "");
    s = good(); s.arr_count = 1ull << 40; s.elem_type = LB_GGUF_STRING; CHECK(try(&s, LB_ERR_FORMAT, "array count"), "");
    s = good(); s.arr_count = 1ull << 40; s.elem_type = LB_GGUF_ARRAY; CHECK(try(&s, LB_ERR_FORMAT, "array count"), "");
    s = good(); s.elem_type = 13; CHECK(try(&s, LB_ERR_FORMAT, "element type id 13"), "");
    s = good(); s.kv_type = 99; CHECK(try(&s, LB_ERR_FORMAT, "key k.str: unknown value type id 99"), "");
    s = good(); s.n_kv = 1ull << 60; CHECK(try(&s, LB_ERR_FORMAT, "metadata count"), "");
    s = good(); s.n_kv = 3; CHECK(try(&s, LB_ERR_FORMAT, NULL), ""); /* tensor infos read as a key */
    s = good(); s.n_tensors = 1ull << 60; CHECK(try(&s, LB_ERR_FORMAT, "tensor count"), "");
    s = good(); s.n_tensors = 3; CHECK(try(&s, LB_ERR_FORMAT, NULL), "");
    s = good(); s.n_dims = 5; CHECK(try(&s, LB_ERR_FORMAT, "n_dims 5"), "");
    s = good(); s.n_dims = 0; CHECK(try(&s, LB_ERR_FORMAT, "n_dims 0"), "");
    s = good(); s.n_dims = 0xffffffffu; CHECK(try(&s, LB_ERR_FORMAT, "n_dims"), "");
    s = good(); s.ne[0] = 1ull << 40; s.ne[1] = 1ull << 40; CHECK(try(&s, LB_ERR_FORMAT, "overflows"), "");
    s = good(); s.ne[0] = UINT64_MAX; CHECK(try(&s, LB_ERR_FORMAT, "too large"), "");
    s = good(); s.n_dims = 4; s.ne[0] = 1ull << 16; s.ne[1] = 1ull << 16; s.ne[2] = 1ull << 16; s.ne[3] = 1ull << 16;
    CHECK(try(&s, LB_ERR_FORMAT, "overflows"), "");
    s = good(); s.ne[0] = 1ull << 62; s.ne[1] = 1; CHECK(try(&s, LB_ERR_FORMAT, "byte size overflows"), "");
    s = good(); s.ne[0] = 1ull << 20; CHECK(try(&s, LB_ERR_FORMAT, "tensor a: data"), "");
    s = good(); s.type = 99; CHECK(try(&s, LB_ERR_FORMAT, "tensor a: unknown tensor type id 99"), "");
    s = good(); s.type = 4; CHECK(try(&s, LB_ERR_FORMAT, "type id 4"), "a removed GGML type");
    s = good(); s.type = LB_Q4_0_R8; CHECK(try(&s, LB_ERR_FORMAT, "unknown tensor type id 40"), "lowbit's in-memory layout");
    s = good(); s.type = LB_Q8_0; s.ne[0] = 33; CHECK(try(&s, LB_ERR_FORMAT, "block size"), "");
    s = good(); s.off1 = 36; CHECK(try(&s, LB_ERR_FORMAT, "tensor b: data offset 36 is not a multiple of the alignment 32"), "");
    s = good(); s.off1 = 64; CHECK(try(&s, LB_ERR_FORMAT, "tensor b: data [64, +32) runs past end of file"), "");
    s = good(); s.off1 = UINT64_MAX - 31; CHECK(try(&s, LB_ERR_FORMAT, "runs past end"), "");
    s = good(); s.name2 = "a"; CHECK(try(&s, LB_ERR_FORMAT, "tensor a: tensor name appears twice"), "");
    s = good(); s.alignment = 3; CHECK(try(&s, LB_ERR_FORMAT, "power of two"), "");
    s = good(); s.alignment = -1; CHECK(try(&s, LB_ERR_FORMAT, "power of two"), "");
    s = good(); s.alignment = 16; s.off1 = 32;
    b = build(&s);
    CHECK(parse(&b, &g, &err) == LB_OK && lb_gguf_alignment(g) == 16, "%s", err.msg);
    if (g) lb_gguf_close(g);
    free(b.p);

    /* duplicate key, NUL inside a key, bool out of range (a warning only) */
    buf k = {0};
    header(&k, 3, 0, 2);
    str(&k, "x"); u32(&k, LB_GGUF_U8); put(&k, "\1", 1);
    str(&k, "x"); u32(&k, LB_GGUF_U8); put(&k, "\2", 1);
    CHECK(fails(&k, LB_ERR_FORMAT, "key x: appears twice"), "");
    free(k.p);
    buf z = {0};
    header(&z, 3, 0, 1);
    u64(&z, 3); put(&z, "a\0b", 3); u32(&z, LB_GGUF_U8); put(&z, "\1", 1);
    CHECK(fails(&z, LB_ERR_FORMAT, "NUL"), "");
    free(z.p);
    buf w = {0};
    header(&w, 3, 0, 1);
    str(&w, "flag"); u32(&w, LB_GGUF_BOOL); put(&w, "\7", 1);
    CHECK(parse(&w, &g, &err) == LB_OK, "a bool of 7 is read as true with a warning");
    if (g) {
        bool bv = false;
        CHECK(lb_gguf_get_bool(g, "flag", &bv, &err) == LB_OK && bv, "");
        CHECK(lb_gguf_tensor_count(g) == 0 && lb_gguf_find_tensor(g, "a") == NULL, "");
        lb_gguf_close(g);
    }
    free(w.p);

    CHECK(lb_gguf_open("/nonexistent/x.gguf", &g, &err) == LB_ERR_IO && g == NULL, "");
}

int main(void) {
    lb_log_set_level(LB_LOG_ERROR); /* the malicious cases warn on purpose */
    test_stories();
    test_stories_truncated();
    test_writer();
    test_truncate_written();
    test_nested();
    test_malicious();
    return test_summary();
}
