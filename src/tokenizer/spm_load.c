/* Loaders of SentencePiece BPE vocabularies: tokenizer.model (ModelProto, protobuf),
 * llama2.c tokenizer.bin, and GGUF tokenizer.ggml.* arrays.
 *
 * Not handled: Unigram/word/char models (LB_ERR_UNSUPPORTED); a normalizer's precompiled
 * character map (NFKC etc.) is ignored with a warning, so only whitespace handling and UTF-8
 * repair are applied (exact for "identity" normalizers, as in Llama 2 and tok512);
 * treat_whitespace_as_suffix is honoured when encoding but decoding does not drop the trailing
 * space it adds. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "tokenizer/protobuf.h"
#include "tokenizer/spm.h"

/* ---- tokenizer.model ------------------------------------------------------------------- */

enum { MODEL_UNIGRAM = 1, MODEL_BPE = 2, MODEL_WORD = 3, MODEL_CHAR = 4 };

typedef struct model_spec {
    int model_type, byte_fallback, ws_suffix;
    int64_t unk_id, bos_id, eos_id, pad_id;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    char norm_name[64];
    size_t charsmap_len;
    const uint8_t *unk_surface;
    size_t unk_surface_len;
} model_spec;

#define NEXT_FIELDS(r, f, more, err, st) for (; !((st) = lb_pb_next(&(r), &(f), &(more), (err))) && (more);)

static lb_status parse_trainer(lb_pb r, model_spec *ms, lb_error *err) {
    lb_pb_field f;
    int more;
    lb_status st;
    NEXT_FIELDS(r, f, more, err, st) {
        int64_t *id = NULL;
        int *flag = NULL;
        switch (f.num) {
        case 3: /* model_type */
            if ((st = lb_pb_expect(&r, &f, LB_PB_VARINT, "trainer_spec.model_type", err))) return st;
            ms->model_type = (int)lb_pb_int(&f);
            break;
        case 24: flag = &ms->ws_suffix; break;
        case 35: flag = &ms->byte_fallback; break;
        case 40: id = &ms->unk_id; break;
        case 41: id = &ms->bos_id; break;
        case 42: id = &ms->eos_id; break;
        case 43: id = &ms->pad_id; break;
        case 44:
            if ((st = lb_pb_expect(&r, &f, LB_PB_BYTES, "trainer_spec.unk_surface", err))) return st;
            ms->unk_surface = r.buf + f.off;
            ms->unk_surface_len = f.len;
            break;
        default: break;
        }
        if (flag || id) {
            if ((st = lb_pb_expect(&r, &f, LB_PB_VARINT, "trainer_spec", err))) return st;
            if (flag) *flag = f.v != 0;
            if (id) *id = (int32_t)(uint32_t)f.v; /* int32 fields are sign-extended varints */
        }
    }
    return st;
}

static lb_status parse_normalizer(lb_pb r, model_spec *ms, lb_error *err) {
    lb_pb_field f;
    int more;
    lb_status st;
    NEXT_FIELDS(r, f, more, err, st) {
        int *flag = f.num == 3 ? &ms->add_dummy_prefix : f.num == 4 ? &ms->remove_extra_ws : f.num == 5 ? &ms->escape_ws : NULL;
        if (flag) {
            if ((st = lb_pb_expect(&r, &f, LB_PB_VARINT, "normalizer_spec", err))) return st;
            *flag = f.v != 0;
        } else if (f.num == 1 || f.num == 2) {
            if ((st = lb_pb_expect(&r, &f, LB_PB_BYTES, "normalizer_spec", err))) return st;
            if (f.num == 2) {
                ms->charsmap_len = f.len;
            } else {
                size_t n = f.len < sizeof ms->norm_name - 1 ? f.len : sizeof ms->norm_name - 1;
                memcpy(ms->norm_name, r.buf + f.off, n);
                ms->norm_name[n] = 0;
            }
        }
    }
    return st;
}

static lb_status parse_piece(lb_pb r, lb_spm *m, lb_error *err) {
    lb_pb_field f;
    int more;
    lb_status st;
    size_t at = r.pos, off = 0, len = 0;
    int have = 0, type = LB_SPM_NORMAL;
    float score = 0;
    NEXT_FIELDS(r, f, more, err, st) {
        if (f.num == 1) {
            if ((st = lb_pb_expect(&r, &f, LB_PB_BYTES, "piece", err))) return st;
            off = f.off, len = f.len, have = 1;
        } else if (f.num == 2) {
            if ((st = lb_pb_expect(&r, &f, LB_PB_FIXED32, "score", err))) return st;
            score = lb_pb_float(&f);
        } else if (f.num == 3) {
            if ((st = lb_pb_expect(&r, &f, LB_PB_VARINT, "type", err))) return st;
            if (f.v < LB_SPM_NORMAL || f.v > LB_SPM_BYTE)
                return lb_fail(err, LB_ERR_FORMAT, "%s: piece %d at byte %zu has unknown type %llu", r.name, (int)m->n,
                               f.at, (unsigned long long)f.v);
            type = (int)f.v;
        }
    }
    if (st) return st;
    if (!have || len == 0)
        return lb_fail(err, LB_ERR_FORMAT, "%s: piece %d at byte %zu has an empty piece string", r.name, (int)m->n, at);
    return lb_spm_add(m, (const char *)r.buf + off, len, score, type, r.name, err);
}

static lb_status check_model(const lb_spm *m, const model_spec *ms, const char *name, lb_error *err) {
    if (ms->model_type != MODEL_BPE) {
        const char *kind = ms->model_type == MODEL_UNIGRAM ? "Unigram"
                           : ms->model_type == MODEL_WORD  ? "word"
                           : ms->model_type == MODEL_CHAR  ? "char"
                                                           : "unknown";
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: SentencePiece %s model (type %d): only BPE models are supported",
                       name, kind, ms->model_type);
    }
    int n_unk = 0;
    for (int32_t i = 0; i < m->n; i++) {
        n_unk += m->pieces[i].type == LB_SPM_UNKNOWN;
        if (m->pieces[i].type == LB_SPM_BYTE && !ms->byte_fallback)
            return lb_fail(err, LB_ERR_FORMAT, "%s: piece %d is a byte piece but trainer_spec.byte_fallback is off", name,
                           (int)i);
    }
    if (n_unk != 1)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %d pieces of type UNKNOWN (exactly one is required)", name, n_unk);
    return LB_OK;
}

lb_status lb_spm_parse_model(const void *data, size_t size, const char *name, lb_tokenizer **out, lb_error *err) {
    *out = NULL;
    if (!name) name = "tokenizer.model";
    model_spec ms = {MODEL_UNIGRAM, 0, 0, 0, 1, 2, -1, 1, 1, 1, "", 0, NULL, 0};
    lb_pb r = lb_pb_init(data, size, name), top = r;
    lb_pb_field f;
    int more;
    lb_status st;
    size_t n_pieces = 0;
    /* first pass: count pieces, read the specs */
    NEXT_FIELDS(r, f, more, err, st) {
        const char *what = f.num == 1 ? "pieces" : f.num == 2 ? "trainer_spec" : f.num == 3 ? "normalizer_spec" : NULL;
        if (!what) continue;
        if ((st = lb_pb_expect(&r, &f, LB_PB_BYTES, what, err))) return st;
        if (f.num == 1) n_pieces++;
        else if (f.num == 2 && (st = parse_trainer(lb_pb_sub(&r, &f), &ms, err))) return st;
        else if (f.num == 3 && (st = parse_normalizer(lb_pb_sub(&r, &f), &ms, err))) return st;
    }
    if (st) return st;
    if (n_pieces == 0) return lb_fail(err, LB_ERR_FORMAT, "%s: no pieces (not a SentencePiece model?)", name);
    lb_spm *m = lb_spm_new(n_pieces, size);
    if (!m) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory for %zu pieces", name, n_pieces);
    r = top;
    NEXT_FIELDS(r, f, more, err, st) {
        if (f.num == 1 && (st = parse_piece(lb_pb_sub(&r, &f), m, err))) break;
    }
    if (!st) st = check_model(m, &ms, name, err);
    if (st) {
        lb_spm_free(m);
        return st;
    }
    if (ms.charsmap_len && strcmp(ms.norm_name, "identity") != 0)
        lb_warn("%s: normalizer \"%s\" has a precompiled character map, which is not applied (only whitespace rules are)",
                name, ms.norm_name);
    m->add_dummy_prefix = ms.add_dummy_prefix;
    m->remove_extra_ws = ms.remove_extra_ws;
    m->escape_ws = ms.escape_ws;
    m->ws_suffix = ms.ws_suffix;
    m->byte_fallback = ms.byte_fallback;
    m->add_bos = 1; /* SentencePiece's encoders for Llama prepend BOS; the model has no flag */
    m->add_eos = 0;
    if (ms.unk_surface) {
        size_t n = ms.unk_surface_len < sizeof m->unk_surface - 1 ? ms.unk_surface_len : sizeof m->unk_surface - 1;
        memcpy(m->unk_surface, ms.unk_surface, n);
        m->unk_surface[n] = 0;
    }
    int32_t bos = ms.bos_id, eos = ms.eos_id, pad = ms.pad_id;
    lb_status s2 = lb_spm_finish(m, name, 1, bos, eos, pad, out, err);
    if (s2 == LB_OK && ms.unk_id != (*out)->unk_id)
        lb_warn("%s: trainer_spec.unk_id %lld differs from the UNKNOWN piece %d; the piece wins", name,
                (long long)ms.unk_id, (int)(*out)->unk_id);
    return s2;
}

lb_status lb_spm_load_model(const char *path, lb_tokenizer **out, lb_error *err) {
    lb_mapfile f;
    lb_status st = lb_mapfile_open(path, &f, err);
    if (st) return st;
    st = lb_spm_parse_model(f.data, f.size, path, out, err);
    lb_mapfile_close(&f);
    return st;
}

/* ---- llama2.c tokenizer.bin ------------------------------------------------------------ */

static int32_t rd_i32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)u;
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)rd_i32(p);
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* llama2.c's exporter wrote BOS/EOS as "\n<s>\n" / "\n</s>\n" and spaces for U+2581. */
static int llama2c_type(int32_t id, const uint8_t *s, size_t len) {
    static const char *control[] = {"<s>", "</s>", "\n<s>\n", "\n</s>\n"};
    if (id == 0) return LB_SPM_UNKNOWN;
    if (id == 1 || id == 2) return LB_SPM_CONTROL;
    for (size_t i = 0; i < sizeof control / sizeof *control; i++)
        if (strlen(control[i]) == len && memcmp(control[i], s, len) == 0) return LB_SPM_CONTROL;
    if (lb_spm_byte_piece((const char *)s, len) >= 0) return LB_SPM_BYTE;
    return LB_SPM_NORMAL;
}

static lb_status add_llama2c_piece(lb_spm *m, const uint8_t *s, size_t len, float score, char *tmp, const char *path,
                                   lb_error *err) {
    int type = llama2c_type(m->n, s, len);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' && type == LB_SPM_NORMAL) {
            memcpy(tmp + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            tmp[n++] = (char)s[i];
        }
    }
    if (type == LB_SPM_BYTE) m->byte_fallback = 1;
    return lb_spm_add(m, tmp, n, score, type, path, err);
}

lb_status lb_spm_parse_llama2c(const void *data, size_t size, int32_t n_vocab, const char *path, lb_tokenizer **out,
                               lb_error *err) {
    const uint8_t *d = data;
    *out = NULL;
    if (!path) path = "tokenizer.bin";
    if (n_vocab < 0) return lb_fail(err, LB_ERR_ARG, "%s: negative vocabulary size %d", path, (int)n_vocab);
    if (size < 4) return lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes, too short for the max_token_length header", path, size);
    int32_t max_len = rd_i32(d);
    if (max_len < 0) return lb_fail(err, LB_ERR_FORMAT, "%s: negative max_token_length %d at byte 0", path, (int)max_len);
    size_t max_records = (size - 4) / 8; /* a record is at least score + length */
    if ((size_t)n_vocab > max_records)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %d tokens expected but the file (%zu bytes) holds at most %zu", path,
                       (int)n_vocab, size, max_records);
    size_t n = n_vocab ? (size_t)n_vocab : max_records, pool;
    if (!lb_mul_ok(size, 3, &pool)) return lb_fail(err, LB_ERR_FORMAT, "%s: too large", path);
    lb_spm *m = lb_spm_new(n, pool);
    char *tmp = malloc(pool ? pool : 1);
    if (!m || !tmp) {
        free(tmp);
        lb_spm_free(m);
        return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory for %zu tokens", path, n);
    }
    lb_status st = LB_OK;
    size_t off = 4;
    for (int32_t id = 0; !st && (n_vocab ? id < n_vocab : off < size); id++) {
        if (size - off < 8) {
            st = lb_fail(err, LB_ERR_FORMAT, "%s: token %d at byte %zu: score and length truncated", path, (int)id, off);
            break;
        }
        float score = rd_f32(d + off);
        int32_t len = rd_i32(d + off + 4);
        if (len < 0 || (size_t)len > size - off - 8) {
            st = lb_fail(err, LB_ERR_FORMAT, "%s: token %d at byte %zu: length %d runs past the end of the file (%zu bytes)",
                         path, (int)id, off + 4, (int)len, size);
            break;
        }
        st = add_llama2c_piece(m, d + off + 8, (size_t)len, score, tmp, path, err);
        off += 8 + (size_t)len;
    }
    free(tmp);
    if (st) {
        lb_spm_free(m);
        return st;
    }
    m->add_dummy_prefix = 1; /* llama2.c prepends a space; it never collapses whitespace */
    m->remove_extra_ws = 0;
    m->unk_id = 0;
    int32_t n_tok = m->n; /* the conventional ids, when the file has them */
    return lb_spm_finish(m, path, 0, n_tok > 1 ? 1 : -1, n_tok > 2 ? 2 : -1, -1, out, err);
}

lb_status lb_spm_load_llama2c(const char *path, int32_t n_vocab, lb_tokenizer **out, lb_error *err) {
    *out = NULL;
    lb_mapfile f;
    lb_status st = lb_mapfile_open(path, &f, err);
    if (st) return st;
    st = lb_spm_parse_llama2c(f.data, f.size, n_vocab, path, out, err);
    lb_mapfile_close(&f);
    return st;
}

/* ---- GGUF vocabulary ------------------------------------------------------------------- */

lb_status lb_spm_from_vocab(const lb_vocab_desc *v, lb_tokenizer **out, lb_error *err) {
    const char *name = "GGUF tokenizer.ggml";
    *out = NULL;
    if (!v->n_tokens || !v->tokens || !v->token_lens)
        return lb_fail(err, LB_ERR_FORMAT, "%s: tokens: empty vocabulary", name);
    if (v->n_tokens > INT32_MAX / 2) return lb_fail(err, LB_ERR_FORMAT, "%s: tokens: %zu is too many", name, v->n_tokens);
    size_t pool = 0;
    for (size_t i = 0; i < v->n_tokens; i++)
        if (!lb_add_ok(pool, v->token_lens[i], &pool) || pool > UINT32_MAX)
            return lb_fail(err, LB_ERR_FORMAT, "%s: tokens: total length too large at token %zu", name, i);
    lb_spm *m = lb_spm_new(v->n_tokens, pool);
    if (!m) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory for %zu tokens", name, v->n_tokens);
    for (size_t i = 0; i < v->n_tokens; i++) {
        int type = v->types ? v->types[i] : LB_SPM_NORMAL;
        if (type < LB_SPM_NORMAL || type > LB_SPM_BYTE) type = LB_SPM_NORMAL; /* 0 = undefined */
        if (!v->types && lb_spm_byte_piece(v->tokens[i], v->token_lens[i]) >= 0) type = LB_SPM_BYTE;
        if (type == LB_SPM_BYTE) m->byte_fallback = 1;
        lb_status st = lb_spm_add(m, v->tokens[i], v->token_lens[i], v->scores ? v->scores[i] : 0.0f, type, name, err);
        if (st) {
            lb_spm_free(m);
            return st;
        }
    }
    m->add_dummy_prefix = 1; /* GGUF conventions: space prefix, whitespace runs kept */
    m->remove_extra_ws = 0;
    m->add_bos = v->add_bos != 0;  /* -1 (not stated): Llama prepends BOS */
    m->add_eos = v->add_eos == 1;
    m->unk_id = v->unk_id;
    lb_status st = lb_spm_finish(m, name, 0, v->bos_id, v->eos_id, v->pad_id, out, err);
    if (!st) (*out)->eot_id = v->eot_id >= 0 && v->eot_id < (int32_t)v->n_tokens ? v->eot_id : -1;
    return st;
}
