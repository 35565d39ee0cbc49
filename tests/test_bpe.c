/* Hugging Face BPE tokenizer against ids computed by the tokenizers library
 * (../shared/reference/tokenizers), round trips, split behaviors from the library's docs,
 * the GGUF-vocabulary path against the json path, and malformed files. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "tokenizer/bpe.h"

/* tokenizer.c refers to the SentencePiece loaders, which live in another branch until merged;
 * these stand-ins only satisfy the linker and are dropped when the real ones are linked. */
__attribute__((weak)) lb_status lb_spm_load_model(const char *p, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}
__attribute__((weak)) lb_status lb_spm_load_llama2c(const char *p, int32_t n, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}

static const char *NAMES[] = {"gpt2", "smollm2-135m", "mistral-7b-v0.1"};

static int ids_eq(const lb_ids *a, const cJSON *ref) {
    if ((size_t)cJSON_GetArraySize(ref) != a->n) return 0;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ref) if (a->v[i++] != (int32_t)e->valuedouble) return 0;
    return 1;
}

static void ref_ids(const cJSON *ref, lb_ids *out) {
    const cJSON *e;
    out->n = 0;
    cJSON_ArrayForEach(e, ref) lb_ids_push(out, (int32_t)e->valuedouble);
}

/* HF decode (skip_special_tokens=False): every token rendered. */
static char *decode_all(const lb_tokenizer *t, const lb_ids *ids, size_t *len) {
    size_t n = 0, cap = 64;
    char *s = malloc(cap);
    for (size_t i = 0; i < ids->n; i++) {
        size_t k = lb_bpe_decode_token_ex(t, ids->v[i], i == 0, 1, NULL, 0);
        if (n + k + 1 > cap) s = realloc(s, cap = 2 * (n + k + 1));
        lb_bpe_decode_token_ex(t, ids->v[i], i == 0, 1, s + n, k);
        n += k;
    }
    s[n] = 0;
    *len = n;
    return s;
}

static cJSON *load_ref(const char *name) {
    char path[512], *json;
    size_t len;
    snprintf(path, sizeof path, "%s/reference/tokenizers/%s/tokenize.json", LB_SHARED_DIR, name);
    if (lb_read_file(path, 1 << 24, &json, &len, NULL)) return NULL;
    cJSON *r = cJSON_ParseWithLength(json, len);
    free(json);
    return r;
}

static lb_tokenizer *load_tok(const char *name) {
    char path[512];
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", LB_SHARED_DIR, name);
    lb_status s = lb_bpe_load_json(path, &t, &err);
    CHECK(s == LB_OK, "%s: %s", name, err.msg);
    return s ? NULL : t;
}

/* Every reference case: ids with and without special tokens, the decoded text, round trip. */
static void check_cases(const char *name, const lb_tokenizer *t, const cJSON *ref, int byte_level, const char *skip1,
                        const char *skip2) {
    const cJSON *c;
    CHECK(ref && cJSON_GetArraySize(ref) > 10, "%s: reference missing", name);
    lb_ids ids = {0}, want = {0};
    lb_error err;
    cJSON_ArrayForEach(c, ref) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        if ((skip1 && strstr(text, skip1)) || (skip2 && strstr(text, skip2))) continue;
        size_t tl = strlen(text);
        ids.n = 0;
        CHECK(t->ops->encode(t, text, tl, 0, &ids, &err) == LB_OK, "%s", err.msg);
        CHECK(ids_eq(&ids, cJSON_GetObjectItem(c, "ids")), "%s: ids of \"%s\"", name, text);
        ids.n = 0;
        CHECK(t->ops->encode(t, text, tl, 1, &ids, &err) == LB_OK, "%s", err.msg);
        CHECK(ids_eq(&ids, cJSON_GetObjectItem(c, "ids_with_special")), "%s: ids_with_special of \"%s\"", name, text);
        ref_ids(cJSON_GetObjectItem(c, "ids"), &want);
        size_t dl;
        char *dec = decode_all(t, &want, &dl);
        const char *d_ref = cJSON_GetObjectItem(c, "decoded")->valuestring;
        CHECK(dl == strlen(d_ref) && !memcmp(dec, d_ref, dl), "%s: decode of \"%s\" gave \"%s\"", name, text, dec);
        free(dec);
        /* Byte-level: the text comes back, special tokens rendered, except around tokens
         * whose lstrip/rstrip swallow spaces ([NS] in a patched file). */
        if (byte_level && !strstr(text, "[NS]")) {
            ids.n = 0;
            t->ops->encode(t, text, tl, 0, &ids, &err);
            dec = decode_all(t, &ids, &dl);
            CHECK(dl == tl && !memcmp(dec, text, tl), "%s: round trip of \"%s\"", name, text);
            free(dec);
        }
        /* The public decode skips special tokens: check it where the text has none. */
        if (byte_level && !strstr(text, "<|") && !strstr(text, "[NS]")) {
            char *back;
            size_t bl;
            CHECK(lb_detokenize(t, want.v, want.n, &back, &bl, &err) == LB_OK, "%s", err.msg);
            CHECK(bl == tl && !memcmp(back, text, tl), "%s: lb_detokenize round trip of \"%s\"", name, text);
            free(back);
        }
    }
    lb_ids_free(&ids);
    lb_ids_free(&want);
}

static void check_reference(const char *name, const lb_tokenizer *t, int byte_level) {
    cJSON *ref = load_ref(name);
    check_cases(name, t, ref, byte_level, NULL, NULL);
    cJSON_Delete(ref);
}

/* tests/data/bpe/NAME.json: cases made by the tokenizers library itself (gen_hf_cases.js) on
 * a shared tokenizer.json, optionally patched to exercise other pipelines. */
static cJSON *load_hf_cases(const char *name, lb_tokenizer **t) {
    char path[1024], *json;
    size_t len;
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0), "data/bpe/%s.json", name);
    *t = NULL;
    if (lb_read_file(path, 1 << 24, &json, &len, NULL)) {
        CHECK(0, "%s unreadable", path);
        return NULL;
    }
    cJSON *data = cJSON_ParseWithLength(json, len);
    free(json);
    const char *base = cJSON_GetObjectItem(data, "base")->valuestring;
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", LB_SHARED_DIR, base);
    if (lb_read_file(path, 1 << 26, &json, &len, NULL)) {
        CHECK(0, "%s unreadable", path);
        cJSON_Delete(data);
        return NULL;
    }
    cJSON *tj = cJSON_ParseWithLength(json, len), *e, *f;
    free(json);
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(data, "patch")) {
        if (!strcmp(e->string, "model")) {
            cJSON *model = cJSON_GetObjectItem(tj, "model");
            cJSON_ArrayForEach(f, e) {
                cJSON_DeleteItemFromObjectCaseSensitive(model, f->string);
                cJSON_AddItemToObject(model, f->string, cJSON_Duplicate(f, 1));
            }
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(tj, e->string);
            cJSON_AddItemToObject(tj, e->string, cJSON_Duplicate(e, 1));
        }
    }
    char *patched = cJSON_PrintUnformatted(tj);
    lb_error err = {0};
    CHECK(lb_bpe_parse_json(patched, strlen(patched), name, t, &err) == LB_OK, "%s: %s", name, err.msg);
    free(patched);
    cJSON_Delete(tj);
    return data;
}

static void check_hf_cases(const char *name, int byte_level) {
    lb_tokenizer *t;
    cJSON *data = load_hf_cases(name, &t);
    if (t) check_cases(name, t, cJSON_GetObjectItem(data, "cases"), byte_level, NULL, NULL);
    lb_tokenizer_free(t);
    cJSON_Delete(data);
}

/* Random bytes, invalid UTF-8 included, come back unchanged from byte-level BPE. */
static void check_random_round_trip(const lb_tokenizer *t) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int bad = 0;
    char text[300];
    for (int k = 0; k < 300; k++) {
        size_t n = (size_t)(k % 290) + 1;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            text[i] = (k & 1) ? (char)(x & 0xff) : " aé\n1'x\t"[x % 8];
        }
        int32_t *ids;
        size_t n_ids, bl;
        char *back;
        lb_error err;
        if (lb_tokenize(t, text, n, 0, &ids, &n_ids, &err) || lb_detokenize(t, ids, n_ids, &back, &bl, &err)) {
            bad++;
            continue;
        }
        bad += bl != n || memcmp(back, text, n) != 0;
        free(ids);
        free(back);
    }
    CHECK(bad == 0, "%d random strings did not round-trip", bad);
}

/* The GGUF path, fed the same vocabulary and merges, gives the json path's ids. */
static void check_from_vocab(const char *name, const char *pre, const char *hf_cases, int32_t bos) {
    char path[512], *json;
    size_t len;
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", LB_SHARED_DIR, name);
    if (lb_read_file(path, 1 << 26, &json, &len, NULL)) {
        CHECK(0, "%s unreadable", path);
        return;
    }
    cJSON *root = cJSON_ParseWithLength(json, len), *e;
    free(json);
    const cJSON *model = cJSON_GetObjectItem(root, "model");
    const cJSON *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
    size_t n = (size_t)cJSON_GetArraySize(vocab), nm = (size_t)cJSON_GetArraySize(merges);
    const char **tok = calloc(n, sizeof *tok);
    size_t *tl = calloc(n, sizeof *tl);
    int32_t *types = calloc(n, sizeof *types);
    char **mg = calloc(nm, sizeof *mg);
    size_t *ml = calloc(nm, sizeof *ml);
    cJSON_ArrayForEach(e, vocab) {
        size_t id = (size_t)e->valuedouble;
        tok[id] = e->string;
        tl[id] = strlen(e->string);
        types[id] = 1;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "added_tokens")) types[(int)cJSON_GetObjectItem(e, "id")->valuedouble] = 3;
    size_t i = 0;
    cJSON_ArrayForEach(e, merges) {
        if (cJSON_IsString(e)) mg[i] = strdup(e->valuestring);
        else {
            const char *a = cJSON_GetArrayItem(e, 0)->valuestring, *b = cJSON_GetArrayItem(e, 1)->valuestring;
            mg[i] = malloc(strlen(a) + strlen(b) + 2);
            sprintf(mg[i], "%s %s", a, b);
        }
        ml[i] = strlen(mg[i]);
        i++;
    }
    lb_vocab_desc d = {.n_tokens = n, .tokens = tok, .token_lens = tl, .types = types, .n_merges = nm,
                       .merges = (const char *const *)mg, .merge_lens = ml, .bos_id = -1, .eos_id = -1, .unk_id = -1,
                       .pad_id = -1, .eot_id = -1, .add_bos = bos >= 0, .add_eos = -1, .pre = pre};
    d.bos_id = bos;
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    CHECK(lb_bpe_from_vocab(&d, &t, &err) == LB_OK, "%s: %s", name, err.msg);
    if (t && !hf_cases) check_reference(name, t, 1);
    if (t && hf_cases) { /* the patched file's extra added tokens are not in this vocabulary */
        lb_tokenizer *tj;
        cJSON *data = load_hf_cases(hf_cases, &tj);
        check_cases(hf_cases, t, cJSON_GetObjectItem(data, "cases"), 1, "<|eot_id|>", "[NS]");
        lb_tokenizer_free(tj);
        cJSON_Delete(data);
    }
    lb_tokenizer_free(t);
    d.pre = "no-such-pre";
    CHECK(lb_bpe_from_vocab(&d, &t, &err) == LB_ERR_UNSUPPORTED && strstr(err.msg, "no-such-pre"), "%s", err.msg);
    for (i = 0; i < nm; i++) free(mg[i]);
    free(mg), free(ml), free(tok), free(tl), free(types);
    cJSON_Delete(root);
}

/* Split behaviors on the example of the tokenizers documentation ("the-final--countdown"). */
static void check_split_behaviors(void) {
    static const char *want[] = {
        "the|final|countdown",         /* Removed */
        "the|-|final|-|-|countdown",   /* Isolated */
        "the-|final-|-|countdown",     /* MergedWithPrevious */
        "the|-final|-|-countdown",     /* MergedWithNext */
        "the|-|final|--|countdown",    /* Contiguous */
    };
    for (int regex = 0; regex < 2; regex++) {
        for (int b = 0; b < 5; b++) {
            lb_bpe_pre pre = {.kind = LB_PRE_SPLIT, .behavior = (lb_split_behavior)b};
            CHECK(lb_bpe_pattern_compile(&pre.pat, "-", 1, regex, "t", "f", NULL) == LB_OK, "compile");
            lb_bpe_plist in = {0}, out = {0};
            lb_bpe_plist_push(&in, "the-final--countdown", 20, 1);
            pcre2_match_data *md = pcre2_match_data_create(1, NULL);
            CHECK(lb_bpe_pretokenize(&pre, md, NULL, &in, &out, NULL) == LB_OK, "pretokenize");
            char got[128] = "";
            for (size_t i = 0; i < out.n; i++) {
                if (i) strcat(got, "|");
                strncat(got, out.buf + out.p[i].off, out.p[i].len);
            }
            CHECK(!strcmp(got, want[b]), "behavior %d (regex %d): %s", b, regex, got);
            pcre2_match_data_free(md);
            lb_bpe_plist_free(&in);
            lb_bpe_plist_free(&out);
            lb_bpe_pattern_free(&pre.pat);
        }
    }
}

static lb_status parse(const char *json, lb_tokenizer **t, lb_error *err) {
    *t = NULL;
    return lb_bpe_parse_json(json, strlen(json), "mini.json", t, err);
}

static void encode_eq(const lb_tokenizer *t, const char *text, int special, const int32_t *want, size_t n, const char *what) {
    lb_ids ids = {0};
    lb_error err;
    CHECK(t->ops->encode(t, text, strlen(text), special, &ids, &err) == LB_OK, "%s", err.msg);
    int ok = ids.n == n;
    for (size_t i = 0; ok && i < n; i++) ok = ids.v[i] == want[i];
    CHECK(ok, "%s: \"%s\" gave %zu ids (first %d)", what, text, ids.n, ids.n ? ids.v[0] : -1);
    lb_ids_free(&ids);
}

/* Small hand-made files: merges in both spellings, byte fallback, fused unk, old-style
 * Llama normalizers, added-token flags, a Roberta post-processor. */
static void check_small_files(void) {
    const char *vocab = "\"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"ab\": 3, \"abb\": 4, \"\\u2581\": 5, \"\\u2581ab\": 6, "
                        "\"<0x63>\": 7, \"<0x64>\": 8, \"<s>\": 9, \"</s>\": 10}";
    char json[2048];
    lb_tokenizer *t, *t2;
    lb_error err;
    /* pair and string spellings of the same merges agree */
    snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [[\"a\", \"b\"], [\"ab\", \"b\"], [\"\\u2581\", \"ab\"]]}}", vocab);
    CHECK(parse(json, &t, &err) == LB_OK, "%s", err.msg);
    snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"a b\", \"ab b\", \"\\u2581 ab\"]}}", vocab);
    CHECK(parse(json, &t2, &err) == LB_OK, "%s", err.msg);
    if (t && t2) {
        static const int32_t w[] = {4, 3, 1};
        encode_eq(t, "abbaba", 0, w, 3, "pairs");
        encode_eq(t2, "abbaba", 0, w, 3, "strings");
        /* no unk known and no byte fallback: unknown characters are dropped */
        static const int32_t w2[] = {3};
        encode_eq(t, "xab", 0, w2, 1, "drop unknown");
    }
    lb_tokenizer_free(t);
    lb_tokenizer_free(t2);
    /* old Llama layout: Prepend + Replace normalizer, byte fallback, fused unk, <s> template */
    snprintf(json, sizeof json,
             "{\"added_tokens\": [{\"id\": 9, \"content\": \"<s>\", \"special\": true}, {\"id\": 10, \"content\": \"</s>\", \"special\": true, \"lstrip\": true}],"
             "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\\u2581\"}, "
             "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
             "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}], "
             "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [9], \"tokens\": [\"<s>\"]}}},"
             "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" \"}, "
             "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},"
             "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true, %s, \"merges\": [\"a b\", \"\\u2581 ab\"]}}", vocab);
    CHECK(parse(json, &t, &err) == LB_OK, "%s", err.msg);
    if (t) {
        /* "ab cxyd b  </s>": Prepend + Replace give "\u2581ab\u2581cxyd\u2581b"; c and d by
         * bytes, x y fused into one unk; </s> (lstrip) swallows the spaces before it */
        static const int32_t w[] = {9, 6, 5, 7, 0, 8, 5, 2, 10};
        encode_eq(t, "ab cxyd b  </s>", 1, w, sizeof w / sizeof *w, "llama-style");
        encode_eq(t, "ab cxyd b  </s>", 0, w + 1, sizeof w / sizeof *w - 1, "llama-style, no special");
        CHECK(t->bos_id == 9 && t->eos_id == 10 && t->unk_id == 0, "special ids %d %d %d", t->bos_id, t->eos_id, t->unk_id);
        char buf[16];
        size_t k = t->ops->decode_token(t, 6, 1, buf, sizeof buf);
        CHECK(k == 2 && !memcmp(buf, "ab", 2), "first token strips the space");
        k = t->ops->decode_token(t, 6, 0, buf, sizeof buf);
        CHECK(k == 3 && !memcmp(buf, " ab", 3), "later token keeps the space");
        k = t->ops->decode_token(t, 7, 0, buf, sizeof buf);
        CHECK(k == 1 && buf[0] == 'c', "byte fallback decodes to the byte");
        CHECK(t->ops->decode_token(t, 10, 0, buf, sizeof buf) == 0, "special tokens decode to nothing");
        CHECK(t->ops->decode_token(t, 99, 0, buf, sizeof buf) == 0, "out of range decodes to nothing");
    }
    lb_tokenizer_free(t);
    /* Roberta post-processor and a single_word added token */
    snprintf(json, sizeof json,
             "{\"added_tokens\": [{\"id\": 3, \"content\": \"ab\", \"special\": false, \"single_word\": true}],"
             "\"post_processor\": {\"type\": \"RobertaProcessing\", \"cls\": [\"<s>\", 9], \"sep\": [\"</s>\", 10]},"
             "\"model\": {\"type\": \"BPE\", %s, \"merges\": []}}", vocab);
    CHECK(parse(json, &t, &err) == LB_OK, "%s", err.msg);
    if (t) {
        static const int32_t w[] = {9, 3, 3, 10};
        encode_eq(t, "ab-ab", 1, w, 4, "single words around a non-word character");
        static const int32_t w4[] = {9, 3, 10};
        encode_eq(t, "ab", 1, w4, 3, "single word alone");
        static const int32_t w5[] = {9, 1, 2, 1, 2, 10};
        encode_eq(t, "abab", 1, w5, 6, "single word inside a word is text");
    }
    lb_tokenizer_free(t);
}

/* Bad files: a clean LB_ERR_FORMAT (or UNSUPPORTED) naming the file and the field. */
static void check_bad(const char *json, lb_status want, const char *field) {
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    lb_status s = parse(json, &t, &err);
    CHECK(s == want && strstr(err.msg, "mini.json") && strstr(err.msg, field), "status %d msg \"%s\" (want %d, %s)", s,
          err.msg, want, field);
    lb_tokenizer_free(t);
}

static void check_bad_files(void) {
    check_bad("{\"model\": ", LB_ERR_FORMAT, "invalid JSON");
    check_bad("[1, 2]", LB_ERR_FORMAT, "root");
    check_bad("{\"version\": \"1.0\"}", LB_ERR_FORMAT, "model");
    check_bad("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", LB_ERR_UNSUPPORTED, "Unigram");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", LB_ERR_FORMAT, "model.vocab");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"1\"}, \"merges\": []}}", LB_ERR_FORMAT, "model.vocab");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", LB_ERR_FORMAT, "model.vocab");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", LB_ERR_FORMAT, "model.vocab");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 4000000}, \"merges\": []}}", LB_ERR_FORMAT, "model.vocab");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": 3}}", LB_ERR_FORMAT, "model.merges");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}", LB_ERR_FORMAT, "model.merges[0]");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", LB_ERR_FORMAT, "model.merges[0]");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", [\"a\"]]}}", LB_ERR_FORMAT, "model.merges[1]");
    check_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": 1}}", LB_ERR_FORMAT, "byte_fallback");
    check_bad("{\"added_tokens\": [{\"id\": \"x\", \"content\": \"a\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_FORMAT, "added_tokens[0]");
    check_bad("{\"added_tokens\": {}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_FORMAT, "added_tokens");
    check_bad("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_FORMAT, "pre_tokenizer");
    check_bad("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_FORMAT, "behavior");
    check_bad("{\"pre_tokenizer\": {\"type\": \"Punctuation\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_UNSUPPORTED, "Punctuation");
    check_bad("{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_UNSUPPORTED, "Lowercase");
    check_bad("{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {\"<s>\": {\"ids\": [7]}}}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_FORMAT, "post_processor");
    check_bad("{\"decoder\": {\"type\": \"Strip\", \"content\": \" \", \"start\": \"x\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_FORMAT, "decoder");
    check_bad("{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"ab\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LB_ERR_FORMAT, "replacement");

    /* the real gpt2 file cut at many points: never accepted, never a crash */
    char path[512], *json;
    size_t len;
    snprintf(path, sizeof path, "%s/tokenizers/gpt2/tokenizer.json", LB_SHARED_DIR);
    if (lb_read_file(path, 1 << 26, &json, &len, NULL) == LB_OK) {
        int bad = 0;
        for (int k = 1; k < 24; k++) {
            size_t cut = len / 24 * (size_t)k + (size_t)k * 7;
            lb_tokenizer *t = NULL;
            lb_error err = {0};
            lb_status s = lb_bpe_parse_json(json, cut, "cut.json", &t, &err);
            bad += s != LB_ERR_FORMAT || !strstr(err.msg, "cut.json");
            lb_tokenizer_free(t);
        }
        CHECK(bad == 0, "%d truncated files not refused cleanly", bad);
        free(json);
    }
    lb_tokenizer *t = NULL;
    lb_error err = {0};
    CHECK(lb_bpe_load_json("/nonexistent/tokenizer.json", &t, &err) == LB_ERR_IO && strstr(err.msg, "/nonexistent"), "%s", err.msg);
}

int main(void) {
    check_split_behaviors();
    check_small_files();
    check_bad_files();
    for (int i = 0; i < 3; i++) {
        lb_tokenizer *t = load_tok(NAMES[i]);
        if (!t) continue;
        check_reference(NAMES[i], t, i < 2);
        if (i == 0) {
            check_random_round_trip(t);
            CHECK(t->eos_id == 50256 && t->bos_id == 50256, "gpt2 eos %d bos %d", t->eos_id, t->bos_id);
        }
        if (i == 1) {
            /* this copy's tokenizer_config.json names <|im_end|> as EOS and carries a template */
            CHECK(t->eos_id == 2 && t->chat_template && strstr(t->chat_template, "<|im_start|>"), "smollm eos %d", t->eos_id);
        }
        if (i == 2) CHECK(t->bos_id == 1 && t->eos_id == 2 && t->unk_id == 0, "mistral %d %d %d", t->bos_id, t->eos_id, t->unk_id);
        lb_tokenizer_free(t);
    }
    static const char *hf[] = {"gpt2", "smollm2-135m", "mistral-7b-v0.1", "gpt2-llama3-style", "gpt2-prefix-digits",
                               "mistral-legacy", "mistral-metaspace-split"};
    for (int i = 0; i < 7; i++) check_hf_cases(hf[i], i == 0 || i == 1 || i == 3); /* 4 adds prefix spaces */
    check_from_vocab("gpt2", "gpt2", NULL, -1);
    check_from_vocab("smollm2-135m", "smollm", NULL, -1);
    check_from_vocab("gpt2", "llama-bpe", "gpt2-llama3-style", 50256);
    return test_summary();
}
