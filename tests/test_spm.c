/* SentencePiece BPE tokenizer: ids against the SentencePiece library's references for
 * tokenizer.model files, llama2.c tokenizer.bin files on the cases that do not hinge on the
 * normalizer flags the .bin lacks, decoding, hand-built models with known answers, and bad
 * input (every truncation, random bytes, huge lengths). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizer/spm.h"

static void tok_free(lb_tokenizer *t) {
    if (!t) return;
    t->ops->free(t->impl);
    free(t->chat_template);
    free(t);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

static lb_ids encode(const lb_tokenizer *t, const char *s, size_t len, int special) {
    lb_ids ids = {0};
    lb_error err = {0};
    lb_status st = t->ops->encode(t, s, len, special, &ids, &err);
    CHECK(st == LB_OK, "encode failed: %s", err.msg);
    return ids;
}

/* Decodes as lb_detokenize does (first = the first id given). */
static char *decode(const lb_tokenizer *t, const int32_t *ids, size_t n) {
    size_t cap = 16, len = 0;
    char *out = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        size_t k = t->ops->decode_token(t, ids[i], i == 0, out + len, cap - len - 1);
        if (k >= cap - len - 1) {
            cap = 2 * cap + k + 1;
            out = realloc(out, cap);
            k = t->ops->decode_token(t, ids[i], i == 0, out + len, cap - len - 1);
        }
        len += k;
    }
    out[len] = 0;
    return out;
}

static int ids_equal(const lb_ids *a, const cJSON *ref, size_t skip) {
    size_t n = (size_t)cJSON_GetArraySize(ref);
    if (n < skip || a->n != n - skip) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] != (int32_t)cJSON_GetArrayItem(ref, (int)(i + skip))->valuedouble) return 0;
    return 1;
}

/* Text whose tokens depend on whether whitespace runs collapse: runs of two spaces, or a
 * space at either end. */
static int hinges_on_whitespace(const char *s) {
    size_t n = strlen(s);
    return n && (s[0] == ' ' || s[n - 1] == ' ' || strstr(s, "  "));
}

/* Every case of a tokenize.json; skip_ws (a .bin without the .model's whitespace collapsing):
 * cases that hinge on it are only counted. Returns the number of cases checked. */
static int check_reference(const lb_tokenizer *t, const char *json_path, int skip_ws, const char *what) {
    char *json = slurp(json_path, NULL);
    CHECK(json != NULL, "cannot read %s", json_path);
    if (!json) return 0;
    cJSON *root = cJSON_Parse(json);
    CHECK(cJSON_IsArray(root), "%s is not a JSON array", json_path);
    int checked = 0, skipped = 0, skipped_differ = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *ref = cJSON_GetObjectItem(c, "ids_with_bos");
        const char *decoded = cJSON_GetObjectItem(c, "decoded")->valuestring;
        lb_ids with = encode(t, text, strlen(text), 1), without = encode(t, text, strlen(text), 0);
        int eq = ids_equal(&with, ref, 0) && ids_equal(&without, ref, 1);
        if (skip_ws && hinges_on_whitespace(text)) {
            skipped++;
            skipped_differ += !ids_equal(&with, ref, 0);
        } else {
            checked++;
            CHECK(eq, "%s: ids of \"%s\" differ from the reference (%zu ids vs %d)", what, text, with.n,
                  cJSON_GetArraySize(ref));
            /* decoding the reference ids, BOS removed as a caller would */
            int n = cJSON_GetArraySize(ref);
            int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
            for (int i = 1; i < n; i++) ids[i - 1] = (int32_t)cJSON_GetArrayItem(ref, i)->valuedouble;
            char *d = decode(t, ids, (size_t)(n > 0 ? n - 1 : 0));
            CHECK(strcmp(d, decoded) == 0, "%s: decode of \"%s\" gave \"%s\", reference \"%s\"", what, text, d, decoded);
            free(d);
            free(ids);
        }
        lb_ids_free(&with);
        lb_ids_free(&without);
    }
    if (skip_ws)
        printf("%s: %d cases match; %d cases with whitespace runs or edge spaces not compared (%d of them differ)\n", what,
               checked, skipped, skipped_differ);
    cJSON_Delete(root);
    free(json);
    return checked;
}

/* ---- a tiny protobuf writer for hand-built models -------------------------------------- */

typedef struct buf {
    unsigned char d[4096];
    size_t n;
} buf;

static void w_varint(buf *b, uint64_t v) {
    do {
        b->d[b->n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}
static void w_bytes(buf *b, int field, const void *p, size_t n) {
    w_varint(b, (uint64_t)field << 3 | 2);
    w_varint(b, n);
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void w_int(buf *b, int field, int64_t v) {
    w_varint(b, (uint64_t)field << 3);
    w_varint(b, (uint64_t)v);
}
static void w_piece(buf *b, const char *s, float score, int type) {
    buf p = {.n = 0};
    w_bytes(&p, 1, s, strlen(s));
    p.d[p.n++] = 2 << 3 | 5;
    memcpy(p.d + p.n, &score, 4);
    p.n += 4;
    w_int(&p, 3, type);
    w_bytes(b, 1, p.d, p.n);
}

typedef struct spec_piece {
    const char *s;
    float score;
    int type;
} spec_piece;

/* A BPE model without dummy prefix or whitespace collapsing. */
static void build_model(buf *b, const spec_piece *ps, size_t n, int model_type, int byte_fallback) {
    b->n = 0;
    for (size_t i = 0; i < n; i++) w_piece(b, ps[i].s, ps[i].score, ps[i].type);
    buf t = {.n = 0}, nz = {.n = 0};
    w_int(&t, 3, model_type);
    w_int(&t, 35, byte_fallback);
    w_int(&t, 43, -1);
    w_bytes(b, 2, t.d, t.n);
    w_bytes(&nz, 1, "identity", 8);
    w_int(&nz, 3, 0);
    w_int(&nz, 4, 0);
    w_bytes(b, 3, nz.d, nz.n);
}

static int ids_are(const lb_tokenizer *t, const char *text, const int32_t *want, size_t n) {
    lb_ids ids = encode(t, text, strlen(text), 0);
    int ok = ids.n == n && (n == 0 || memcmp(ids.v, want, n * sizeof *want) == 0);
    if (!ok) {
        fprintf(stderr, "  \"%s\" ->", text);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.v[i]);
        fputc('\n', stderr);
    }
    lb_ids_free(&ids);
    return ok;
}

static void test_hand_built(void) {
    const spec_piece ps[] = {
        {"<unk>", 0, LB_SPM_UNKNOWN}, {"<s>", 0, LB_SPM_CONTROL}, {"</s>", 0, LB_SPM_CONTROL},
        {"a", -10, 1}, {"b", -10, 1}, {"c", -10, 1}, /* 3 4 5 */
        {"ab", -1, 1}, {"bc", -1, 1},                  /* 6 7: equal scores, leftmost wins */
        {"d", -10, 1}, {"e", -10, 1}, {"f", -10, 1}, /* 8 9 10 */
        {"de", -3, 1}, {"ef", -2, 1},                  /* 11 12: higher score wins */
        {"<u>", 0, LB_SPM_USER_DEFINED},               /* 13 */
        {"x", -10, 1}, {"ca", 5, LB_SPM_UNUSED}, {"cab", -0.5f, 1}, /* 14 15 16 */
        {"\xe2\x96\x81", -10, 1},                      /* 17 */
    };
    size_t np = sizeof ps / sizeof *ps;
    buf b;
    build_model(&b, ps, np, 2, 0);
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    lb_status st = lb_spm_parse_model(b.d, b.n, "hand.model", &t, &err);
    CHECK(st == LB_OK, "hand-built model: %s", err.msg);
    if (!t) return;
    CHECK(t->bos_id == 1 && t->eos_id == 2 && t->unk_id == 0 && t->pad_id == -1 && t->n_vocab == (int32_t)np, "special ids of the hand-built model");
    CHECK(ids_are(t, "abc", (int32_t[]){6, 5}, 2), "equal scores: leftmost pair merges first");
    CHECK(ids_are(t, "def", (int32_t[]){8, 12}, 2), "the higher score merges first");
    CHECK(ids_are(t, "a<u>b", (int32_t[]){3, 13, 4}, 3), "user-defined piece matched whole");
    CHECK(ids_are(t, "ab<u>", (int32_t[]){6, 13}, 2), "user-defined piece never merged");
    CHECK(ids_are(t, "<s>", (int32_t[]){0, 0, 0}, 3), "control pieces are not matched in text; unknown chars -> unk");
    CHECK(ids_are(t, "ca", (int32_t[]){5, 3}, 2), "an UNUSED piece is split back into its parts");
    CHECK(ids_are(t, "cab", (int32_t[]){16}, 1), "an UNUSED piece is a merge step");
    CHECK(ids_are(t, "a b", (int32_t[]){3, 17, 4}, 3), "space becomes U+2581, no dummy prefix");
    CHECK(ids_are(t, "a  b", (int32_t[]){3, 17, 17, 4}, 4), "no collapsing when remove_extra_whitespaces is 0");
    CHECK(ids_are(t, "a\xff", (int32_t[]){3, 0}, 2), "malformed UTF-8 becomes U+FFFD -> unk");
    CHECK(ids_are(t, "", NULL, 0), "empty text gives no ids");
    lb_ids with = encode(t, "a", 1, 1);
    CHECK(with.n == 2 && with.v[0] == 1 && with.v[1] == 3, "add_special prepends BOS only");
    lb_ids_free(&with);
    char out[8];
    CHECK(t->ops->decode_token(t, 1, 0, out, sizeof out) == 0, "control decodes to nothing");
    CHECK(t->ops->decode_token(t, 999, 0, out, sizeof out) == 0, "out of range decodes to nothing");
    CHECK(t->ops->decode_token(t, -1, 0, out, sizeof out) == 0, "negative id decodes to nothing");
    size_t k = t->ops->decode_token(t, 0, 0, out, sizeof out);
    CHECK(k == 5 && memcmp(out, " \xe2\x81\x87 ", 5) == 0, "unk decodes to the unk surface");
    CHECK(t->ops->decode_token(t, 17, 1, out, sizeof out) == 1 && out[0] == ' ',
          "first: the space is kept when the normalizer adds no dummy prefix");
    CHECK(t->ops->decode_token(t, 16, 0, out, 2) == 3 && memcmp(out, "ca", 2) == 0, "short buffer: full length returned, cap bytes written");
    tok_free(t);

    /* refusals */
    build_model(&b, ps, np, 1, 0);
    st = lb_spm_parse_model(b.d, b.n, "uni.model", &t, &err);
    CHECK(st == LB_ERR_UNSUPPORTED && strstr(err.msg, "Unigram") && strstr(err.msg, "uni.model"), "%s", err.msg);
    spec_piece dup[] = {{"<unk>", 0, 2}, {"a", 0, 1}, {"a", 0, 1}};
    build_model(&b, dup, 3, 2, 0);
    st = lb_spm_parse_model(b.d, b.n, "dup.model", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "already defined"), "%s", err.msg);
    spec_piece nounk[] = {{"a", 0, 1}};
    build_model(&b, nounk, 1, 2, 0);
    st = lb_spm_parse_model(b.d, b.n, "nounk.model", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "UNKNOWN"), "%s", err.msg);
    spec_piece bytes[] = {{"<unk>", 0, 2}, {"<0x41>", 0, 6}};
    build_model(&b, bytes, 2, 2, 0);
    st = lb_spm_parse_model(b.d, b.n, "bytes.model", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "byte_fallback"), "%s", err.msg);
    build_model(&b, bytes, 2, 2, 1);
    st = lb_spm_parse_model(b.d, b.n, "bytes.model", &t, &err);
    CHECK(st == LB_OK, "%s", err.msg);
    if (t) {
        CHECK(ids_are(t, "A", (int32_t[]){1}, 1), "byte fallback");
        CHECK(ids_are(t, "B", (int32_t[]){0}, 1), "byte fallback without the byte piece gives unk");
        CHECK(t->ops->decode_token(t, 1, 1, out, sizeof out) == 1 && out[0] == 'A', "byte piece decodes to its byte");
        tok_free(t);
    }
}

/* ---- bad input ------------------------------------------------------------------------- */

static void test_truncations_model(void) {
    const char *path = SHARED("models/stories260K-hf/tokenizer.model");
    size_t size;
    char *data = slurp(path, &size);
    CHECK(data != NULL, "cannot read the model");
    if (!data) return;
    int n_format = 0, n_unsup = 0, n_ok = 0, bad = 0;
    for (size_t len = 0; len < size; len++) {
        char *copy = malloc(len ? len : 1); /* exact size, so the sanitizer sees over-reads */
        memcpy(copy, data, len);
        lb_tokenizer *t = NULL;
        lb_error err = {0};
        lb_status st = lb_spm_parse_model(copy, len, "cut.model", &t, &err);
        if (st == LB_ERR_FORMAT) {
            n_format++;
            if (!strstr(err.msg, "cut.model") || !(strstr(err.msg, "byte") || strstr(err.msg, "piece"))) {
                if (!bad++) fprintf(stderr, "message without file/offset: %s\n", err.msg);
            }
        } else if (st == LB_ERR_UNSUPPORTED) { /* cut between pieces: no trainer_spec, so Unigram */
            n_unsup++;
            bad += !strstr(err.msg, "cut.model");
        } else if (st == LB_OK) { /* cut between trainer_spec and normalizer_spec: defaults */
            n_ok++;
            lb_ids ids = encode(t, "Hello world", 11, 1);
            int32_t want[] = {1, 346, 306, 414, 263, 304, 341};
            bad += !(ids.n == 7 && memcmp(ids.v, want, sizeof want) == 0);
            lb_ids_free(&ids);
            tok_free(t);
        } else {
            bad++;
        }
        free(copy);
    }
    printf("tokenizer.model truncated at every byte: %d format errors, %d unsupported (cut between pieces), %d ok (cut at optional trailing field)\n",
           n_format, n_unsup, n_ok);
    CHECK(bad == 0, "%d truncations gave a wrong status or message", bad);
    CHECK(n_format > (int)size * 9 / 10, "most truncations are format errors");
    CHECK(n_ok <= 2, "only cuts at the end of trainer_spec parse: %d", n_ok);
    free(data);
}

static void test_truncations_bin(void) {
    const char *path = SHARED("models/stories260K-llama2c/tok512.bin");
    size_t size;
    char *data = slurp(path, &size);
    CHECK(data != NULL, "cannot read the .bin");
    if (!data) return;
    int bad = 0;
    for (size_t len = 0; len < size; len++) {
        char *copy = malloc(len ? len : 1);
        memcpy(copy, data, len);
        lb_tokenizer *t = NULL;
        lb_error err = {0};
        lb_status st = lb_spm_parse_llama2c(copy, len, 512, "cut.bin", &t, &err);
        if (st != LB_ERR_FORMAT || !strstr(err.msg, "cut.bin") || !strstr(err.msg, "byte")) {
            if (!bad++) fprintf(stderr, "truncation at %zu: status %d: %s\n", len, st, err.msg);
            tok_free(t);
        }
        free(copy);
    }
    CHECK(bad == 0, "%d truncations of tok512.bin (n_vocab 512) not refused with a format error", bad);
    free(data);
}

static void test_garbage(void) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int bad = 0;
    unsigned char buf[2048];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n = x % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (unsigned char)(x >> 24);
        }
        unsigned char *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        lb_tokenizer *t = NULL;
        lb_error err = {0};
        lb_status st = lb_spm_parse_model(copy, n, "rand.model", &t, &err);
        bad += !(st == LB_ERR_FORMAT || st == LB_ERR_UNSUPPORTED);
        if (st == LB_OK) tok_free(t);
        st = lb_spm_parse_llama2c(copy, n, 0, "rand.bin", &t, &err);
        if (st == LB_OK) { /* random records can be well-formed: then it must still encode */
            lb_ids ids = encode(t, "hello there", 11, 1);
            lb_ids_free(&ids);
            tok_free(t);
        } else {
            bad += st != LB_ERR_FORMAT;
        }
        free(copy);
    }
    CHECK(bad == 0, "%d random inputs gave a status other than format/unsupported", bad);

    /* huge lengths */
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    unsigned char m1[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00}; /* pieces, length 2^63-1 */
    lb_status st = lb_spm_parse_model(m1, sizeof m1, "huge.model", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "huge.model") && strstr(err.msg, "byte 0"), "%s", err.msg);
    unsigned char m2[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}; /* 11-byte varint */
    st = lb_spm_parse_model(m2, sizeof m2, "huge.model", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "varint"), "%s", err.msg);
    unsigned char m3[] = {0x0b, 0x00}; /* wire type 3 (groups) */
    st = lb_spm_parse_model(m3, sizeof m3, "grp.model", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "wire type"), "%s", err.msg);
    unsigned char b1[] = {7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 'a'}; /* token length 2^31-1 */
    st = lb_spm_parse_llama2c(b1, sizeof b1, 0, "huge.bin", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "huge.bin") && strstr(err.msg, "byte 8"), "%s", err.msg);
    unsigned char b2[] = {7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 'a'}; /* negative length */
    st = lb_spm_parse_llama2c(b2, sizeof b2, 0, "neg.bin", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "neg.bin"), "%s", err.msg);
    unsigned char b3[] = {0xff, 0xff, 0xff, 0xff}; /* negative max_token_length */
    st = lb_spm_parse_llama2c(b3, sizeof b3, 0, "neg.bin", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "max_token_length"), "%s", err.msg);
    unsigned char b4[] = {7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'a'};
    st = lb_spm_parse_llama2c(b4, sizeof b4, 1 << 30, "big.bin", &t, &err);
    CHECK(st == LB_ERR_FORMAT && strstr(err.msg, "at most"), "a huge n_vocab is refused before allocating: %s", err.msg);
    st = lb_spm_load_model("/nonexistent/tokenizer.model", &t, &err);
    CHECK(st == LB_ERR_IO && strstr(err.msg, "/nonexistent/tokenizer.model"), "%s", err.msg);
}

/* ---- real files ------------------------------------------------------------------------ */

static lb_tokenizer *load(lb_status (*fn)(const char *, lb_tokenizer **, lb_error *), const char *path) {
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    lb_status st = fn(path, &t, &err);
    CHECK(st == LB_OK, "%s: %s", path, err.msg);
    return t;
}

static lb_tokenizer *load_bin(const char *path, int32_t n_vocab) {
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    lb_status st = lb_spm_load_llama2c(path, n_vocab, &t, &err);
    CHECK(st == LB_OK, "%s: %s", path, err.msg);
    return t;
}

static void test_corpus(const lb_tokenizer *model, const lb_tokenizer *bin) {
    size_t len;
    char *text = slurp(SHARED("corpus/tinystories-sampled.txt"), &len);
    CHECK(text != NULL, "cannot read the corpus");
    if (!text) return;
    lb_ids a = encode(model, text, len, 0), b = encode(bin, text, len, 0);
    CHECK(a.n > 1000 && a.n == b.n && memcmp(a.v, b.v, a.n * sizeof *a.v) == 0,
          "32k .model and .bin agree on the corpus (%zu vs %zu ids)", a.n, b.n);
    char *d = decode(model, a.v, a.n);
    CHECK(text[0] != ' ' && strcmp(d, text) == 0, "decode(encode(corpus)) gives the corpus back");
    free(d);
    lb_ids_free(&a);
    lb_ids_free(&b);
    free(text);
}

/* A GGUF-style vocabulary (token strings, scores, types) made from a loaded .model's table. */
static lb_tokenizer *via_vocab_desc(const lb_tokenizer *src, int add_bos) {
    const lb_spm *m = src->impl;
    size_t n = (size_t)m->n;
    const char **tokens = malloc(n * sizeof *tokens);
    size_t *lens = malloc(n * sizeof *lens);
    float *scores = malloc(n * sizeof *scores);
    int32_t *types = malloc(n * sizeof *types);
    for (size_t i = 0; i < n; i++) {
        tokens[i] = m->pool + m->pieces[i].off;
        lens[i] = m->pieces[i].len;
        scores[i] = m->pieces[i].score;
        types[i] = m->pieces[i].type;
    }
    lb_vocab_desc v = {n, tokens, lens, scores, types, 0, NULL, NULL, 1, 2, 0, -1, -1, add_bos, -1, NULL};
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    lb_status st = lb_spm_from_vocab(&v, &t, &err);
    CHECK(st == LB_OK, "from_vocab: %s", err.msg);
    free(tokens);
    free(lens);
    free(scores);
    free(types);
    return t;
}

int main(void) {
    test_hand_built();

    lb_tokenizer *m512 = load(lb_spm_load_model, SHARED("models/stories260K-hf/tokenizer.model"));
    lb_tokenizer *m32k = load(lb_spm_load_model, SHARED("models/llama2-tokenizer-32k/tokenizer.model"));
    lb_tokenizer *b512 = load_bin(SHARED("models/stories260K-llama2c/tok512.bin"), 512);
    lb_tokenizer *b32k = load_bin(SHARED("models/llama2-tokenizer-32k/tokenizer.bin"), 0);
    if (m512 && m32k && b512 && b32k) {
        CHECK(m512->n_vocab == 512 && m32k->n_vocab == 32000 && b512->n_vocab == 512 && b32k->n_vocab == 32000, "vocabulary sizes");
        CHECK(m32k->bos_id == 1 && m32k->eos_id == 2 && m32k->unk_id == 0 && m32k->pad_id == -1, "special ids of the 32k .model");
        CHECK(b32k->bos_id == 1 && b32k->eos_id == 2 && b32k->unk_id == 0 && b32k->pad_id == -1, "llama2.c conventions: unk 0, BOS 1, EOS 2");
        CHECK(strcmp(m512->ops->kind, "sentencepiece") == 0, "kind");
        char out[8];
        CHECK(m32k->ops->decode_token(m32k, 29871, 1, out, sizeof out) == 0, "first: the dummy-prefix space is dropped");
        CHECK(m32k->ops->decode_token(m32k, 29871, 0, out, sizeof out) == 1 && out[0] == ' ', "not first: the space is kept");
        CHECK(b32k->ops->decode_token(b32k, 1, 0, out, sizeof out) == 0, "llama2.c BOS (\\n<s>\\n) is a control token");
        int n = check_reference(m512, SHARED("reference/stories260K/tokenize.json"), 0, "tok512 .model");
        CHECK(n == 19, "all 19 tok512 cases checked (%d)", n);
        n = check_reference(m32k, SHARED("reference/llama2-tokenizer-32k/tokenize.json"), 0, "llama2 32k .model");
        CHECK(n == 19, "all 19 llama2 cases checked (%d)", n);
        n = check_reference(b512, SHARED("reference/stories260K/tokenize.json"), 1, "tok512 .bin");
        CHECK(n == 16, "16 tok512 cases do not hinge on whitespace collapsing (%d)", n);
        n = check_reference(b32k, SHARED("reference/llama2-tokenizer-32k/tokenize.json"), 0, "llama2 32k .bin");
        CHECK(n == 19, "the 32k .model does not collapse whitespace either, so all 19 cases apply (%d)", n);
        test_corpus(m32k, b32k);
        lb_tokenizer *g32k = via_vocab_desc(m32k, -1), *g512 = via_vocab_desc(m512, 1);
        if (g32k && g512) {
            CHECK(g32k->bos_id == 1 && g32k->eos_id == 2 && g32k->unk_id == 0 && g32k->pad_id == -1, "GGUF special ids");
            n = check_reference(g32k, SHARED("reference/llama2-tokenizer-32k/tokenize.json"), 0, "llama2 32k GGUF vocab");
            CHECK(n == 19, "GGUF conventions equal the 32k .model's flags: all 19 cases (%d)", n);
            n = check_reference(g512, SHARED("reference/stories260K/tokenize.json"), 1, "tok512 GGUF vocab");
            CHECK(n == 16, "GGUF conventions keep whitespace runs: 16 tok512 cases apply (%d)", n);
        }
        tok_free(g32k);
        tok_free(g512);
    }
    tok_free(m512);
    tok_free(m32k);
    tok_free(b512);
    tok_free(b32k);

    test_truncations_model();
    test_truncations_bin();
    test_garbage();
    return test_summary();
}
