/* lb_model_load: picks the loader from the path (folder, GGUF magic, llama2.c header). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compress/model_regions.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "core/model.h"
#include "tokenizer/tokenizer.h"

lb_model_params lb_model_default_params(void) {
    lb_model_params p = {NULL, 0, NULL};
    return p;
}


/* A .lbz: the loaders restore it in memory (lb_model_add_map); the kept header says which. */
static lb_status load_lbz(lb_model *m, const char *path, lb_error *err) {
    lb_lbz *z;
    lb_status s = lb_lbz_open(path, NULL, NULL, &z, err);
    if (s) return s;
    size_t hl;
    const unsigned char *h = lb_lbz_header(z, &hl);
    int gguf = hl >= 4 && memcmp(h, "GGUF", 4) == 0, st = hl >= 9 && h[8] == '{';
    lb_lbz_close(z);
    if (gguf) return lb_load_gguf(m, path, err);
    if (!st) return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: a .lbz of neither a GGUF nor a safetensors file", path);
    char *dir = strdup(path);
    if (!dir) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    s = lb_load_hf_weights(m, slash ? (*dir ? dir : "/") : ".", path, err);
    free(dir);
    return s;
}

lb_status lb_model_load_bytes(const char *path, uint64_t *bytes, lb_error *err) {
    *bytes = 0;
    struct stat st;
    if (stat(path, &st) != 0) return lb_fail(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    char *file = NULL;
    if (S_ISDIR(st.st_mode)) { /* a folder restores only a model.safetensors.lbz in place of its weights */
        char *plain = lb_path_join(path, "model.safetensors");
        file = lb_path_join(path, "model.safetensors.lbz");
        int use = plain && file && stat(plain, &st) != 0 && stat(file, &st) == 0;
        free(plain);
        if (!use) {
            free(file);
            return LB_OK;
        }
    } else if (!(file = strdup(path))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    unsigned char head[8];
    size_t n = 0;
    lb_status s = lb_read_head(file, head, sizeof head, &n, err);
    if (!s && lb_lbz_is_container(head, n)) {
        lb_model_regions *r;
        if (!(s = lb_lbz_restore_check(file, &r, bytes, err))) lb_model_regions_free(r);
    }
    free(file);
    return s;
}

/* The format is told from the first bytes before any loader reads a field, so a file of no known
 * format says so (with its first bytes) instead of failing a llama2.c header check. */
static lb_status load_file(lb_model *m, const char *path, const char *tokenizer_path, lb_error *err) {
    unsigned char head[28];
    size_t n = 0;
    lb_status s = lb_read_head(path, head, sizeof head, &n, err);
    if (s) return s;
    if (lb_lbz_is_container(head, n)) return load_lbz(m, path, err);
    if (n >= 4 && memcmp(head, "GGUF", 4) == 0) return lb_load_gguf(m, path, err);
    if (n >= 4 && memcmp(head, "24ka", 4) == 0) return lb_load_ak42(m, path, tokenizer_path, err);
    if (n >= 9 && head[8] == '{' && head[5] == 0 && head[6] == 0 && head[7] == 0)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: a safetensors file alone is not a model: give the folder holding "
                       "it with config.json and the tokenizer", path);
    if (n == sizeof head && lb_llama2c_bad_field(head) < 0) return lb_load_llama2c(m, path, tokenizer_path, err);
    char hex[40];
    return lb_fail(err, LB_ERR_FORMAT, "%s: not a GGUF, safetensors, llama2.c or .lbz file (first bytes %s)", path,
                   lb_head_hex(head, n, hex));
}

lb_status lb_model_load(const char *path, const lb_model_params *params, lb_model **out, lb_error *err) {
    lb_model_params d = lb_model_default_params();
    if (!params) params = &d;
    struct stat st;
    if (stat(path, &st) != 0) return lb_fail(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    lb_model *m = lb_model_new();
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    lb_status s;
    if (S_ISDIR(st.st_mode)) {
        s = lb_load_hf(m, path, err);
    } else {
        s = load_file(m, path, params->tokenizer_path, err);
    }
    /* an explicit tokenizer overrides whatever the model carried */
    if (s == LB_OK && params->tokenizer_path && strcmp(m->format, "llama2c") != 0 && strcmp(m->format, "ak42") != 0) {
        lb_tokenizer *t = NULL;
        s = lb_tokenizer_load_path(params->tokenizer_path, m->cfg.n_vocab, &t, err);
        if (s == LB_OK) {
            lb_tokenizer_free(m->tok);
            m->tok = t;
        }
    }
    if (s == LB_OK && params->delta_path) s = lb_model_apply_delta(m, params->delta_path, err);
    if (s == LB_OK) s = lb_model_bind(m, err);
    if (s == LB_OK && m->tok && m->tok->n_vocab > m->cfg.n_vocab)
        lb_warn("%s: the tokenizer has %d tokens but the model only %d; ids past %d cannot be evaluated", path,
                m->tok->n_vocab, m->cfg.n_vocab, m->cfg.n_vocab - 1);
    if (s == LB_OK && !m->chat_template && m->tok && m->tok->chat_template) m->chat_template = strdup(m->tok->chat_template);
    if (s != LB_OK) {
        lb_model_free(m);
        return s;
    }
    *out = m;
    return LB_OK;
}
