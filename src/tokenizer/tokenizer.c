#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"

lb_tokenizer *lb_tokenizer_new(const lb_tokenizer_ops *ops, void *impl, int32_t n_vocab) {
    lb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ops = ops;
    t->impl = impl;
    t->n_vocab = n_vocab;
    t->bos_id = t->eos_id = t->unk_id = t->pad_id = t->eot_id = -1;
    return t;
}

void lb_tokenizer_free(lb_tokenizer *t) {
    if (!t) return;
    if (t->ops && t->ops->free) t->ops->free(t->impl);
    free(t->chat_template);
    free(t);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* present (not a folder): a FIFO or device named like a model file is opened and refused with
 * a message naming it, never silently skipped */
static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

lb_status lb_tokenizer_load_path(const char *path, int32_t n_vocab, lb_tokenizer **out, lb_error *err) {
    struct stat st;
    if (stat(path, &st) != 0) return lb_fail(err, LB_ERR_IO, "%s: no such file or folder", path);
    if (S_ISDIR(st.st_mode)) {
        static const char *names[] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin", "tok512.bin"};
        size_t n = strlen(path);
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            char *p = malloc(n + strlen(names[i]) + 2);
            if (!p) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
            strcpy(p, path);
            strcat(p, "/");
            strcat(p, names[i]);
            if (is_file(p)) {
                lb_status s = lb_tokenizer_load_path(p, n_vocab, out, err);
                free(p);
                return s;
            }
            free(p);
        }
        return lb_fail(err, LB_ERR_FORMAT, "%s: no tokenizer.json, tokenizer.model or tokenizer.bin in this folder", path);
    }
    if (ends_with(path, ".json")) return lb_bpe_load_json(path, out, err);
    if (ends_with(path, ".model")) return lb_spm_load_model(path, out, err);
    if (ends_with(path, ".bin")) return lb_spm_load_llama2c(path, n_vocab, out, err);
    return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: unknown tokenizer file (expected tokenizer.json, *.model or llama2.c *.bin)", path);
}

lb_status lb_tokenizer_open(const char *path, lb_tokenizer **out, lb_error *err) {
    return lb_tokenizer_load_path(path, 0, out, err);
}

lb_status lb_tokenize(const lb_tokenizer *t, const char *text, size_t len, int add_special,
                      int32_t **ids, size_t *n_ids, lb_error *err) {
    lb_ids v = {0};
    lb_status s = t->ops->encode(t, text, len, add_special, &v, err);
    if (s) {
        lb_ids_free(&v);
        return s;
    }
    *ids = v.v ? v.v : malloc(sizeof(int32_t)); /* callers may free() an empty result */
    *n_ids = v.n;
    return LB_OK;
}

lb_status lb_tokenize_file(const lb_tokenizer *t, const char *path, int add_special, int32_t **ids,
                           size_t *n_ids, lb_error *err) {
    char *text;
    size_t len;
    lb_status s = lb_read_file(path, (size_t)1 << 30, &text, &len, err);
    if (s) return s;
    s = lb_tokenize(t, text, len, add_special, ids, n_ids, err);
    free(text);
    return s;
}

lb_status lb_detokenize(const lb_tokenizer *t, const int32_t *ids, size_t n_ids, char **text,
                        size_t *len, lb_error *err) {
    size_t cap = 256, n = 0;
    char *out = malloc(cap);
    if (!out) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n_ids; i++) {
        for (;;) {
            size_t k = t->ops->decode_token(t, ids[i], n == 0, out + n, cap - n - 1); /* after BOS, still first */
            if (k < cap - n - 1) {
                n += k;
                break;
            }
            cap = cap * 2 + k;
            char *o = realloc(out, cap);
            if (!o) {
                free(out);
                return lb_fail(err, LB_ERR_NOMEM, "out of memory");
            }
            out = o;
        }
    }
    out[n] = 0;
    *text = out;
    if (len) *len = n;
    return LB_OK;
}

size_t lb_token_piece(const lb_tokenizer *t, int32_t id, char *buf, size_t cap) {
    return t->ops->decode_token(t, id, 0, buf, cap);
}

int lb_token_is_eog(const lb_tokenizer *t, int32_t id) {
    return id >= 0 && (id == t->eos_id || id == t->eot_id);
}

int lb_tokenizer_n_vocab(const lb_tokenizer *t) { return t->n_vocab; }
int32_t lb_tokenizer_bos(const lb_tokenizer *t) { return t->bos_id; }
const char *lb_tokenizer_kind(const lb_tokenizer *t) { return t->ops->kind; }
