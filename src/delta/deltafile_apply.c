/* lb_delta_apply: streams the base through the patcher into a file of the base's own format,
 * checking each base tensor's hash (and, for lossless deltas, each result's) on the way; the
 * output is atomic, so a mismatch found late still leaves nothing behind. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "delta/deltafile.h"

typedef struct apply_ctx {
    const lb_delta *d;
    const lb_tsrc *b;
    size_t cur;       /* next tensor (writers call in tensor order) */
    uint8_t *buf;
    uint64_t done, total;
    lb_progress_fn progress;
    void *ud;
} apply_ctx;


static lb_status emit_gguf(void *sink, const void *data, size_t n, lb_error *err) { return lb_gguf_sink_write(sink, data, n, err); }
static lb_status emit_st(void *sink, const void *data, size_t n, lb_error *err) { return lb_st_sink_write(sink, data, n, err); }

static const lb_delta_entry *entry_for(const lb_delta *d, const char *name) {
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->e[i].name, name)) return &d->e[i];
    return NULL;
}

static lb_status hash_fail(const lb_delta *d, const lb_tsrc *b, const char *name, lb_error *err) {
    return lb_fail(err, LB_ERR_MISMATCH, "%s: tensor %s differs from the base the delta %s was made for (fingerprint mismatch)",
                   b->file, name, d->path);
}

/* Writes the patched tensor t (base bytes in memory) through emit, or into dst when emit is NULL. */
lb_status lb_delta_stream_tensor(const lb_delta *d, const lb_tsrc_tensor *t, const lb_tsrc *b, uint8_t *buf, lb_delta_emit_fn emit,
                                 void *sink, uint8_t *dst, int release, lb_error *err) {
    const lb_delta_entry *e = entry_for(d, t->name);
    if (!e) return lb_fail(err, LB_ERR_MISMATCH, "%s: tensor %s is not in the delta's base", b->file, t->name);
    lb_delta_cursor c;
    lb_status s = lb_delta_cursor_init(d, e, &c, err);
    if (s) return s;
    int check_only = !emit && !dst; /* a tensor the model does not use: only its hash matters */
    XXH64_state_t hb, ht;
    XXH64_reset(&hb, 0);
    XXH64_reset(&ht, 0);
    uint64_t unit = t->es ? t->es : 1, step = t->es ? LB_DELTA_CHUNK : LB_DELTA_CHUNK * 4;
    for (uint64_t i = 0; i < t->n && !s; i += step) {
        uint64_t m = t->n - i < step ? t->n - i : step;
        const uint8_t *src = t->data + unit * i;
        uint8_t *out = dst ? dst + unit * i : buf;
        XXH64_update(&hb, src, unit * m);
        if (check_only) continue;
        if (e->kept || dst) memcpy(out, src, unit * m);
        else out = (uint8_t *)src; /* unchanged: write straight from the mapping */
        if (e->kept) s = lb_delta_patch(d, e, &c, out, i, m, err);
        if (s) break;
        if (d->has_target) XXH64_update(&ht, out, unit * m);
        if (emit) s = emit(sink, out, unit * m, err);
        if (release) lb_tsrc_release(src, unit * m);
    }
    if (!s && !check_only) s = lb_delta_patch_end(d, e, &c, err);
    if (release) lb_delta_entry_release(d, e); /* the delta's pages for this tensor are done with too */
    if (!s && XXH64_digest(&hb) != e->base_hash) s = hash_fail(d, b, t->name, err);
    if (!s && !check_only && d->has_target && XXH64_digest(&ht) != e->target_hash)
        s = lb_fail(err, LB_ERR_CORRUPT, "%s: tensor %s does not reconstruct to the fine-tune's checksum (corrupted delta)",
                    d->path, t->name);
    return s;
}

static lb_status next_tensor(apply_ctx *c, lb_delta_emit_fn emit, void *sink, lb_error *err) {
    if (c->cur >= c->b->n) return lb_fail(err, LB_ERR_ARG, "delta apply: more tensors requested than the base has");
    const lb_tsrc_tensor *t = &c->b->t[c->cur++];
    if (c->progress) c->progress(c->ud, t->name, c->done, c->total);
    lb_status s = lb_delta_stream_tensor(c->d, t, c->b, c->buf, emit, sink, NULL, 1, err);
    c->done += t->nbytes;
    if (!s && c->progress && c->cur == c->b->n) c->progress(c->ud, "done", c->total, c->total);
    return s;
}

static lb_status fill_gguf(void *user, const lb_tensor *t, lb_gguf_sink *sink, lb_error *err) {
    (void)t;
    return next_tensor(user, emit_gguf, sink, err);
}

static lb_status fill_st(void *user, lb_st_sink *sink, lb_error *err) { return next_tensor(user, emit_st, sink, err); }

static lb_status write_gguf(apply_ctx *c, const char *out, lb_error *err) {
    const lb_gguf *g = c->b->g;
    lb_gguf_writer *w = lb_gguf_writer_new();
    if (!w) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    /* the fine-tune's own metadata when the delta carries it; a delta made before it did gives
     * the base's */
    lb_status s = lb_delta_gguf_meta_write(w, g, lb_safetensors_meta_get(c->d->st, "target_gguf"),
                                           lb_safetensors_meta_get(c->d->st, "target_gguf_drop"), c->d->path, err);
    for (size_t i = 0; i < c->b->n && !s; i++) {
        const lb_tensor *t = lb_gguf_tensor(g, i);
        s = lb_gguf_add_tensor_lazy(w, t->name, t->type, t->n_dims, t->ne, fill_gguf, c, err);
    }
    if (!s) s = lb_gguf_write(w, out, err);
    lb_gguf_writer_free(w);
    return s;
}

static lb_status write_st(apply_ctx *c, const char *out, lb_error *err) {
    const lb_safetensors *st = c->b->st;
    lb_safetensors_writer *w;
    lb_status s = lb_safetensors_writer_new(&w, err);
    if (s) return s;
    const char *tm = lb_safetensors_meta_get(c->d->st, "target_metadata");
    cJSON *root = tm ? cJSON_Parse(tm) : NULL;
    if (tm && !cJSON_IsObject(root)) s = lb_fail(err, LB_ERR_CORRUPT, "%s: target_metadata is not a JSON object", c->d->path);
    for (const cJSON *e = root ? root->child : NULL; e && !s; e = e->next)
        if (cJSON_IsString(e)) s = lb_safetensors_writer_set_meta(w, e->string, e->valuestring, err);
    cJSON_Delete(root);
    for (size_t i = 0; !tm && i < lb_safetensors_n_meta(st) && !s; i++)
        s = lb_safetensors_writer_set_meta(w, lb_safetensors_meta_key(st, i), lb_safetensors_meta_value(st, i), err);
    for (size_t i = 0; i < c->b->n && !s; i++) {
        const lb_st_tensor *t = lb_safetensors_info(st, i);
        s = lb_safetensors_writer_add_stream(w, t->name, t->dtype, t->n_dims, t->shape, fill_st, c, err);
    }
    if (!s) s = lb_safetensors_writer_write(w, out, err);
    lb_safetensors_writer_free(w);
    return s;
}

/* Copies the small regular files of a model folder (config, tokenizer, ...), not the weights. */
static lb_status copy_aux(const char *src, const char *dst, lb_error *err) {
    DIR *dir = opendir(src);
    if (!dir) return lb_fail(err, LB_ERR_IO, "%s: %s", src, strerror(errno));
    lb_status s = LB_OK;
    struct dirent *de;
    while (!s && (de = readdir(dir))) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        if (n[0] == '.' || (l >= 12 && !strcmp(n + l - 12, ".safetensors")) || !strcmp(n, "model.safetensors.index.json") ||
            (l >= 4 && !strcmp(n + l - 4, ".lbz")))
            continue;
        char *a = lb_path_join(src, n), *b = lb_path_join(dst, n), *data = NULL;
        struct stat st;
        size_t len;
        if (!a || !b) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        else if (stat(a, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (256 << 20)) {
            lb_atomic_file *f;
            if (!(s = lb_read_file(a, (size_t)256 << 20, &data, &len, err)) && !(s = lb_atomic_open(b, &f, err))) {
                if ((s = lb_atomic_write(f, data, len, err))) lb_atomic_abort(f);
                else s = lb_atomic_commit(f, err);
            }
        }
        free(data);
        free(a);
        free(b);
    }
    closedir(dir);
    return s;
}

/* Removes what a failed folder output left: the files we copied and the folder if we made it. */
static void undo_folder(const char *src, const char *dst, int made) {
    DIR *dir = opendir(src);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        if (de->d_name[0] == '.') continue;
        char *b = lb_path_join(dst, de->d_name);
        if (b) remove(b);
        free(b);
    }
    if (dir) closedir(dir);
    char *w = lb_path_join(dst, "model.safetensors");
    if (w) remove(w);
    free(w);
    if (made) rmdir(dst);
}

lb_status lb_delta_apply(const char *base, const char *delta, const char *out, lb_progress_fn progress, void *ud,
                         lb_error *err) {
    lb_delta *d = NULL;
    lb_tsrc *b = NULL;
    uint8_t *buf = NULL;
    lb_status s = lb_delta_open(delta, &d, err);
    if (!s) s = lb_tsrc_open(base, &b, err);
    if (!s && strcmp(d->base_format, b->kind == 'g' ? "gguf" : "safetensors") != 0)
        s = lb_fail(err, LB_ERR_MISMATCH, "%s: the delta was made for a %s base, this is not one", base, d->base_format);
    const char *ins[] = {base, delta};
    if (!s) s = lb_output_check(out, ins, 2, b->dir ? LB_OUT_FOLDER : 0, err);
    if (!s) s = lb_delta_match_base(d, b, err);
    if (!s) s = lb_delta_use_threads(d, 0, err);
    if (!s && !(buf = malloc(LB_DELTA_CHUNK * 4))) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (s) goto done;
    lb_tsrc_advise_sequential(b);
    apply_ctx c = {d, b, 0, buf, 0, 0, progress, ud};
    for (size_t i = 0; i < b->n; i++) c.total += b->t[i].nbytes;
    if (b->kind == 'g') s = write_gguf(&c, out, err);
    else if (!b->dir) s = write_st(&c, out, err);
    else {
        struct stat st;
        int made = 0;
        if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode)) {
            s = lb_fail(err, LB_ERR_ARG, "%s: exists and is not a folder (the base is a folder)", out);
            goto done;
        }
        if (stat(out, &st) != 0) {
            if (mkdir(out, 0777) != 0) {
                s = lb_fail(err, LB_ERR_IO, "%s: cannot create the folder: %s", out, strerror(errno));
                goto done;
            }
            made = 1;
        }
        char *w = lb_path_join(out, "model.safetensors");
        s = w ? write_st(&c, w, err) : lb_fail(err, LB_ERR_NOMEM, "out of memory");
        free(w);
        if (!s) s = copy_aux(b->dir, out, err);
        if (s) undo_folder(b->dir, out, made);
    }
done:
    free(buf);
    lb_tsrc_close(b);
    lb_delta_close(d);
    return s;
}
